"""Patch stages of small NAS networks: tiles wholly in a PAD's padding plan and run bit-exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.board import get_board
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.memory.execute import run_in_arena
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.memory.patches import (
    PatchMode,
    Region,
    choices,
    find_stages,
    patch_graph,
    tiles,
)
from mcuflow.memory.planner import plan_model
from mcuflow.nas.space import Arch, arch_graph, default_space, sample
from mcuflow.planning import Build, analyze_graph
from mcuflow.ref.interpreter import run
from mcuflow.toolchain.host import verify_host
from tests.support import litert_invoke

BOARD = Path(__file__).resolve().parents[2] / "bench" / "boards" / "tiny16k.toml"
FAILING = Arch(0.35, 16, (1, 3, 1, 2), (3, 3, 7, 5, 7, 5, 3, 3, 3, 3),
               (4, 3, 6, 6, 3, 6, 3, 3, 4, 4))
"""The fit check's crash: 7x7 and 5x5 stride-2 depthwise layers behind explicit PADs."""


def _graph(arch: Arch = FAILING) -> Graph:
    return arch_graph(arch, default_space(2, 8), 1, 10)


def _inputs(graph: Graph, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, graph.tensors[name].shape, dtype=np.int8)
            for name in graph.inputs]


def _same(expected: list[np.ndarray], got: list[np.ndarray]) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def _in_padding(graph: Graph, pad: str, tile: Region) -> bool:
    """True when `tile` of PAD output `pad` holds padding only, along rows or columns."""
    op = graph.operators[graph.producer(pad)]
    _, height, width, _ = graph.tensors[op.inputs[0]].shape
    (top, _), (left, _) = op.attrs.paddings[1], op.attrs.paddings[2]
    return (tile[1] <= top or tile[0] >= top + height
            or tile[3] <= left or tile[2] >= left + width)


def test_the_fit_checks_crashing_arch_plans_on_tiny16k() -> None:
    """Was GraphInvariantError: 'depthwise_conv_2d_10#p0.0' has a negative dimension."""
    graph = _graph()
    board = get_board("tiny16k", BOARD)
    analysis = analyze_graph(graph, Build(board), PatchRequest(sram_budget=board.sram_bytes))
    assert analysis.plan.arena_bytes <= board.sram_bytes
    if analysis.plan.patch is not None:
        inputs = _inputs(graph, 3)
        expected = litert_invoke(write_tflite(graph), inputs)
        assert _same(expected, run_in_arena(analysis.plan, inputs).outputs)


@pytest.mark.parametrize("text", ["1x8@pad_18", "6x1@pad_18", "5x2@pad_48", "2x7@pad_48"])
def test_a_grid_with_tiles_in_the_padding_runs_in_its_arena(text: str) -> None:
    """Was PatchError: no buffer holds rows (0, 1) of 'conv_2d_17' (or a negative dimension)."""
    graph = _graph()
    plan, _ = plan_model(graph, PatchRequest.parse(text), 1 << 20, "cortex-m0")
    assert plan.patch is not None and plan.patch.end == text.split("@")[1]
    assert any(_in_padding(graph, plan.patch.end, tile)
               for band in tiles(graph, plan.patch) for tile in band)
    inputs = _inputs(graph, 5)
    expected = litert_invoke(write_tflite(graph), inputs)
    assert _same(expected, run_in_arena(plan, inputs).outputs)


def test_grids_of_a_stage_ending_at_a_pad_are_bit_exact() -> None:
    """Recompute grids of 1, 6 and 8 rows and columns and two cached step counts.

    The stage ends at the 12x12 PAD (2 each side); 6 and 8 cuts put tiles in its padding.
    """
    graph = _graph()
    stage = next(s for s in find_stages(graph) if s.end == "pad_48")
    assert graph.operators[stage.ops[-1]].kind is OpKind.PAD
    inputs = _inputs(graph, 7)
    expected = litert_invoke(write_tflite(graph), inputs)
    padded = 0
    for choice in choices(graph, stage):
        if choice.mode is PatchMode.RECOMPUTE and {choice.rows, choice.cols} - {1, 6, 8} or (
                choice.mode is PatchMode.CACHED and choice.rows not in (4, 12)):
            continue
        assert _same(expected, run(patch_graph(graph, stage, choice), inputs).outputs), choice
        padded += choice.mode is PatchMode.RECOMPUTE and any(
            _in_padding(graph, stage.end, tile) for band in tiles(graph, choice) for tile in band)
    assert padded >= 6


@pytest.mark.parametrize("seed", [1, 2])
def test_sampled_archs_plan_at_8_to_16_kb_and_patched_plans_are_bit_exact(seed: int) -> None:
    """Sampled networks of the NAS space at every width and the 12 and 16 resolutions."""
    space, board = default_space(2, 8), get_board("tiny16k", BOARD)
    rng = np.random.default_rng(seed)
    patched = 0
    for width in space.widths[1::2]:
        graph = arch_graph(sample(space, rng, width, 16 if seed == 1 else 12), space, 1, 10)
        inputs = _inputs(graph, seed)
        expected = litert_invoke(write_tflite(graph), inputs)
        for budget in (8 << 10, 12 << 10, 16 << 10):
            plan = analyze_graph(graph, Build(board), PatchRequest(sram_budget=budget)).plan
            if plan.patch is not None:
                patched += 1
                assert _same(expected, run_in_arena(plan, inputs).outputs), plan.patch
    assert patched >= 1



def test_the_c_of_a_grid_with_tiles_in_the_padding_is_bit_exact() -> None:
    """The generated C of a 2x7 grid over the 12x12 PAD, built by gcc with sanitisers."""
    graph = _graph()
    plan, _ = plan_model(graph, PatchRequest.parse("2x7@pad_48"), 1 << 20, "cortex-m0")
    assert plan.patch is not None
    result = verify_host(graph, plan, runs=3, seed=6)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0
