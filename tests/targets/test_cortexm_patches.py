"""Patch stages run bit-exact on QEMU Cortex-M4 and M7, inside a 192 KB SRAM board's limits."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mcuflow.hw.board import get_board
from mcuflow.ir import zoo
from mcuflow.ir.graph import Graph
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.memory.patches import PatchChoice, PatchMode, find_stages, patch_graph
from mcuflow.memory.planner import plan_memory, plan_model
from mcuflow.toolchain.qemu import verify_cortexm
from tests.remap_stages import block_stage, resize_stage, transpose_conv_stage
from tests.support import keras_padded

SMALL_BOARD = "nucleo-f429zi"


def test_the_study_model_fits_a_192_kb_board_only_with_patches_and_runs_bit_exact() -> None:
    graph = zoo.mobilenet_v2_like(128, 0.35, 1000)
    board = get_board(SMALL_BOARD)
    plan, search = plan_model(graph, PatchRequest(), board.sram_bytes, "cortex-m4", dsp=True)
    assert search.baseline.peak_bytes > board.sram_bytes
    assert plan.patch is not None and plan.arena_bytes <= board.sram_bytes
    result = verify_cortexm(graph, plan, "cortex-m4", SMALL_BOARD, runs=2, seed=5)
    assert result.bit_exact and result.mismatches == 0


@pytest.mark.parametrize(("target", "board", "grid", "mode"), [
    ("cortex-m7", "nucleo-f767zi", (3, 2), PatchMode.RECOMPUTE),
    ("cortex-m4", SMALL_BOARD, (24, 1), PatchMode.CACHED),
    ("cortex-m7", "nucleo-f767zi", (12, 1), PatchMode.CACHED),
])
def test_both_modes_run_bit_exact(target: str, board: str, grid: tuple[int, int],
                                  mode: PatchMode) -> None:
    graph = zoo.mobilenet_v2_like(64, 0.35, 10)
    stage = next(s for s in find_stages(graph) if s.end == "conv_2d_20")
    patched = patch_graph(graph, stage, PatchChoice(stage.end, *grid, mode))
    plan = plan_memory(patched, 0.2, dsp=True, order=list(range(len(patched.operators))))
    plan.patch = PatchChoice(stage.end, *grid, mode)
    result = verify_cortexm(graph, plan, target, board, runs=2, seed=6)
    assert result.bit_exact and result.mismatches == 0


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
def test_a_streamed_input_runs_bit_exact(target: str) -> None:
    graph = zoo.mobilenet_v2_like(96, 0.35, 10)
    request = PatchRequest.parse("auto", 20_000, None, "streamed")
    plan, _ = plan_model(graph, request, 1 << 20, target, dsp=True)
    image = graph.tensors[graph.inputs[0]].nbytes
    assert plan.streamed and plan.arena_bytes <= 20_000 < image
    board = SMALL_BOARD if target == "cortex-m4" else "nucleo-f767zi"
    result = verify_cortexm(graph, plan, target, board, runs=2, seed=7)
    assert result.bit_exact and result.mismatches == 0


def test_a_stage_through_pads_runs_bit_exact() -> None:
    graph = keras_padded(40)
    plan, _ = plan_model(graph, PatchRequest.parse("10x1"), 1 << 20, "cortex-m4", dsp=True)
    assert plan.patch is not None
    result = verify_cortexm(graph, plan, "cortex-m4", SMALL_BOARD, runs=2, seed=3)
    assert result.bit_exact and result.mismatches == 0


@pytest.mark.parametrize(("make", "end", "grid", "mode"), [
    (transpose_conv_stage, "conv_2d_22", (3, 2), PatchMode.RECOMPUTE),
    (resize_stage, "conv_2d_19", (8, 1), PatchMode.CACHED),
    (block_stage, "conv_2d_13", (4, 4), PatchMode.RECOMPUTE),
])
def test_remap_ops_run_patch_by_patch_bit_exact(make: Callable[[], Graph], end: str,
                                                grid: tuple[int, int], mode: PatchMode) -> None:
    """TRANSPOSE_CONV (the DSP kernel), the resizes and the block ops on cropped windows."""
    graph = make()
    stage = next(s for s in find_stages(graph) if graph.operators[s.ops[-1]].name == end)
    patched = patch_graph(graph, stage, PatchChoice(stage.end, *grid, mode))
    plan = plan_memory(patched, 0.2, dsp=True, order=list(range(len(patched.operators))))
    plan.patch = PatchChoice(stage.end, *grid, mode)
    result = verify_cortexm(graph, plan, "cortex-m4", SMALL_BOARD, runs=2, seed=9)
    assert result.bit_exact and result.mismatches == 0
