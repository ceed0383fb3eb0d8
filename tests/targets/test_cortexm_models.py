"""Every int8 shared model runs bit-exact on QEMU Cortex-M4 and M7; its counts and sizes hold up.

Outputs are compared with the reference interpreter; instruction counts with the machine's
documented clock, with themselves (per layer) and with the cost model; ELF sizes with
binutils' own `arm-none-eabi-size`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mcuflow.analysis.metrics import analyze
from mcuflow.codegen.project import generate_project
from mcuflow.hw.board import get_board
from mcuflow.hw.costmodel import op_cost
from mcuflow.toolchain.arm import build_cortexm, elf_sizes
from mcuflow.toolchain.qemu import verify_cortexm
from tests.support import INT8_MODELS
from tests.targets.support import (
    BOARDS,
    INSTRUCTIONS_PER_TICK,
    RUNS,
    TARGETS,
    measured,
    planned_model,
)

LATENCY_TOLERANCE = 0.15


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", INT8_MODELS)
def test_shared_model_is_bit_exact_on_qemu(name: str, target: str) -> None:
    result = measured(name, target)
    assert result.bit_exact and result.mismatches == 0 and result.runs == RUNS
    assert result.instructions_per_tick == INSTRUCTIONS_PER_TICK[target]
    # A Cortex-M4/M7 retires at most one dual 16-bit MAC (SMLAD) per instruction.
    assert 0 < result.macs_per_instruction <= 2.0
    board = get_board(BOARDS[target])
    assert result.estimated_ms == pytest.approx(
        result.instructions * result.cycles_per_instruction / board.clock_hz * 1e3)


@pytest.mark.parametrize("target", TARGETS)
def test_analysis_latency_is_within_15_percent_of_qemu(target: str) -> None:
    """The kernel costs, fitted by bench/costmodel.py to layer sweeps, predict the time."""
    board = get_board(BOARDS[target])
    errors = {}
    for name in INT8_MODELS:
        graph, plan = planned_model(name, target)
        report = analyze(graph, board, order=plan.order, peak_ram_bytes=plan.arena_bytes)
        errors[name] = report.latency_ms_estimate / measured(name, target).estimated_ms - 1
    worst = max(errors, key=lambda n: abs(errors[n]))
    assert abs(errors[worst]) <= LATENCY_TOLERANCE, (
        f"{worst}: estimate off by {errors[worst]:+.1%} on {target}; rerun "
        f"`bench/costmodel.py --fit --write` ({errors})")


def _binutils_sizes(elf: Path) -> dict[str, int]:
    """Section sizes of `arm-none-eabi-size -A`."""
    text = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True,
                          text=True, check=True).stdout
    sizes = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def test_elf_sizes_agree_with_binutils(tmp_path: Path) -> None:
    graph, plan = planned_model("kws_ref_model.tflite", "cortex-m4")
    board = get_board(BOARDS["cortex-m4"])
    project = generate_project(graph, plan, tmp_path / "project", target="cortex-m4",
                               board=board)
    elf = build_cortexm(project.path, "cortex-m4")
    sizes = elf_sizes(elf)
    binutils = _binutils_sizes(elf)
    assert sizes.text == binutils[".text"]
    assert sizes.rodata == binutils[".vectors"] + binutils[".rodata"] + binutils.get(
        ".ARM.exidx", 0)
    assert sizes.data == binutils.get(".data", 0)
    assert sizes.bss == binutils[".bss"]
    assert sizes.flash_bytes == sizes.text + sizes.rodata + sizes.data <= board.flash_bytes
    assert sizes.rodata >= project.weight_bytes and sizes.bss >= project.arena_bytes
    assert 1_000 < sizes.text < 75_600  # TFLM + CMSIS-NN: 75.6 KB of .text for kws (issue 5)


@pytest.mark.parametrize("target", TARGETS)
def test_result_sizes_are_consistent(target: str) -> None:
    result = measured("vww_96_int8.tflite", target)
    board = get_board(BOARDS[target])
    assert result.flash_bytes == result.text_bytes + result.rodata_bytes + result.data_bytes
    assert result.ram_bytes == result.data_bytes + result.bss_bytes + result.stack_bytes
    assert result.weight_bytes <= result.rodata_bytes and result.flash_bytes <= board.flash_bytes
    assert result.arena_bytes <= result.bss_bytes and result.ram_bytes <= board.sram_bytes
    assert 64 < result.stack_bytes < 4096


def test_profile_per_layer_adds_up_to_the_inference() -> None:
    graph, plan = planned_model("kws_ref_model.tflite", "cortex-m4")
    result = verify_cortexm(graph, plan, "cortex-m4", BOARDS["cortex-m4"], runs=1, seed=3,
                            profile=True)
    assert result.bit_exact
    layers = result.layers
    assert [layer.index for layer in layers] == list(range(len(plan.steps)))
    for layer, step in zip(layers, plan.steps, strict=True):
        op = graph.operators[step.op_index]
        assert (layer.op, layer.name, layer.macs) == (op.kind.value, op.name,
                                                      op_cost(graph, op).macs)
    # Each layer's count includes one mark (a call and a timer read, about a tick).
    slack = (len(layers) + 1) * 3 * result.instructions_per_tick
    assert abs(sum(layer.instructions for layer in layers) - result.instructions) <= slack
    heaviest = max(layers, key=lambda layer: layer.instructions)
    assert heaviest.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and heaviest.macs > 0
    assert all(layer.instructions > 0 for layer in layers if layer.macs > 0)
