"""The suite's op graphs run bit-exact on QEMU Cortex-M; every core builds; errors are clear.

Every graph of tests/codegen/cases.py (all OpKinds and in-place kinds) is compared with the
reference interpreter on Cortex-M4 and M7; the portable path runs on M0 and M3, the M33 build on
mps2-an505. A model too big for its board, a missing toolchain and the shipped Makefile are
checked too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuflow.codegen import dsp
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.render import emit_layers
from mcuflow.errors import McuflowError, ToolchainError
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.board import get_board
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain import arm, qemu
from mcuflow.toolchain.arm import build_cortexm
from mcuflow.toolchain.host import random_inputs
from mcuflow.toolchain.qemu import run_qemu, verify_cortexm
from mcuflow.toolchain.records import input_records, split_outputs
from tests.codegen.cases import FAMILIES, special_float_inputs
from tests.codegen.test_dsp_kernels import FAMILIES as FAMILIES_DSP
from tests.codegen.test_dsp_kernels import (
    PLAN_SECONDS,
    PORTABLE_CALLS,
    overscaled,
    spread_scales,
)
from tests.codegen.test_host_ops import assert_same_bits, reference
from tests.support import litert_interpreter, litert_invoke
from tests.targets.support import (
    BOARDS,
    INSTRUCTIONS_PER_TICK,
    TARGETS,
    planned_family,
    planned_model,
)

FAMILY_RUNS = 20
BUILDS = [(name, target) for name in FAMILIES for target in TARGETS]
PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


@pytest.mark.parametrize(("name", "target"), BUILDS, ids=[f"{n}-{t}" for n, t in BUILDS])
def test_family_is_bit_exact_on_qemu(name: str, target: str) -> None:
    graph, plan = planned_family(name, target)
    result = verify_cortexm(graph, plan, target, BOARDS[target], runs=FAMILY_RUNS,
                            seed=len(name))
    assert result.bit_exact and result.mismatches == 0


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0"])
def test_quantize_of_special_floats(target: str, tmp_path: Path) -> None:
    """NaN, infinities and halves through QUANTIZE: hard-float M4 and soft-float M0."""
    graph, plan = planned_family("float_edges", target)
    project = generate_project(graph, plan, tmp_path / "project", target=target,
                               board=get_board("nucleo-f767zi"))
    elf = build_cortexm(project.path, target)
    shape = graph.tensors[graph.inputs[0]].shape
    inputs = [special_float_inputs((2, *shape))]
    actual = run_qemu(elf, target, inputs, project.outputs).outputs
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")


@pytest.mark.parametrize(("target", "board", "model"), [
    ("cortex-m0", "nucleo-f091rc", "kws_ref_model.tflite"),
    ("cortex-m3", "nucleo-f207zg", "str_ww_ref_model.tflite"),
    ("cortex-m33", "nucleo-l4r5zi", "ad01_int8.tflite"),
])
def test_other_cores_are_bit_exact(target: str, board: str, model: str) -> None:
    graph, plan = planned_model(model, target)
    result = verify_cortexm(graph, plan, target, board, runs=3, seed=1)
    assert result.bit_exact and result.machine in ("mps2-an385", "mps2-an505")
    assert result.instructions_per_tick == INSTRUCTIONS_PER_TICK[target]
    assert result.ram_bytes <= get_board(board).sram_bytes


def test_counts_are_deterministic(tmp_path: Path) -> None:
    """The same input costs the same instructions on every run, to within one tick."""
    graph, plan = planned_family("mobilenet_block", "cortex-m4")
    project = generate_project(graph, plan, tmp_path / "project", target="cortex-m4",
                               board=get_board(BOARDS["cortex-m4"]))
    elf = build_cortexm(project.path, "cortex-m4")
    x = np.random.default_rng(2).integers(-128, 128, (1, *graph.tensors[graph.inputs[0]].shape),
                                          dtype=np.int8)
    report = run_qemu(elf, "cortex-m4", [np.concatenate([x] * 4)], project.outputs).report
    assert report.calibration_instructions == 2_000_000
    assert report.instructions_per_tick == 40.0
    assert len(report.run_ticks) == 4 and max(report.run_ticks) - min(report.run_ticks) <= 1


@pytest.mark.parametrize(("model", "region"), [("vww_96_int8.tflite", "SRAM"),
                                               ("ad01_int8.tflite", "flash")])
def test_model_too_big_for_the_board_fails_at_link_time(model: str, region: str) -> None:
    graph, plan = planned_model(model, "cortex-m0")
    with pytest.raises(McuflowError, match=f"does not fit nucleo-f091rc: {region}") as caught:
        verify_cortexm(graph, plan, "cortex-m0", "nucleo-f091rc", runs=1)
    assert not isinstance(caught.value, ToolchainError) and caught.value.hint


def test_cortex_m_target_needs_a_board(tmp_path: Path) -> None:
    graph, plan = planned_family("fully_connected", "cortex-m4")
    with pytest.raises(McuflowError, match="needs a board"):
        generate_project(graph, plan, tmp_path / "project", target="cortex-m4")
    assert not (tmp_path / "project").exists()


@pytest.mark.parametrize("tool", ["arm-none-eabi-gcc", "qemu-system-arm"])
def test_missing_tool_names_the_debian_packages(tool: str, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == tool else real_which(name))
    with pytest.raises(ToolchainError, match=tool) as caught:
        (arm.find_cross_compiler if tool.startswith("arm") else qemu.find_qemu)()
    assert PACKAGES in caught.value.hint


def test_shipped_makefile_builds_and_runs(tmp_path: Path) -> None:
    """`make` and `make run` in the generated directory, as a user would."""
    graph, plan = planned_family("mobilenet_block", "cortex-m4")
    board = get_board("nucleo-f429zi")
    project = generate_project(graph, plan, tmp_path / "project", target="cortex-m4",
                               board=board)
    script = (project.path / "mcuflow.ld").read_text()
    assert f"LENGTH = {board.flash_bytes}" in script and f"LENGTH = {board.sram_bytes}" in script
    inputs = [np.random.default_rng(4).integers(-128, 128, (3, *graph.tensors[n].shape),
                                                dtype=np.int8) for n in graph.inputs]
    (project.path / "input.bin").write_bytes(input_records(inputs))
    subprocess.run(["make", "-s", "run"], cwd=project.path, check=True, capture_output=True,
                   timeout=300)
    data = (project.path / "output.bin").read_bytes()
    actual = split_outputs(data, 3, project.outputs)
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    assert qemu.parse_report((project.path / "report.txt").read_text()).status == 0


def test_general_requantisation_is_bit_exact_on_qemu(tmp_path: Path) -> None:
    """Multipliers above 1/2 (no one-multiply constants) through the DSP kernels on the M4.

    CONV_2D and depthwise in TFLite's arithmetic, FULLY_CONNECTED clamped: equal to the
    reference interpreter and to LiteRT.
    """
    graph = FAMILIES_DSP["general_requant"]()
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    project = generate_project(graph, plan, tmp_path / "project", target="cortex-m4",
                               board=get_board(BOARDS["cortex-m4"]))
    source = (project.path / "mcuflow_model.c").read_text()
    assert ".mode = 1" in source and ".mode = 2" in source and ".exact = 1" in source
    assert not [call for call in PORTABLE_CALLS if call in source]
    elf = build_cortexm(project.path, "cortex-m4")
    inputs = random_inputs(graph, 8, 12)
    actual = run_qemu(elf, "cortex-m4", inputs, project.outputs).outputs
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(write_tflite(graph))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(len(inputs[0]))]
    assert_same_bits(oracle, actual, "LiteRT")


def test_double_round_fully_connected_is_bit_exact_on_qemu(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """SCALED (no clamped constants): software doubles on the M4's single-precision FPU."""
    monkeypatch.setattr(dsp, "clamped_requant", lambda *args: None)
    graph = _overscaled_layer("fc")
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    layers, _ = emit_layers(graph, plan, dsp=True)
    assert ".mode = 3" in "\n".join(layers[0].definitions)
    result = verify_cortexm(graph, plan, "cortex-m4", BOARDS["cortex-m4"], runs=3, seed=4)
    assert result.bit_exact and result.mismatches == 0


def _overscaled_layer(kind: str) -> Graph:
    """A 128 -> 640 FULLY_CONNECTED or a 16 -> 32 3x3 CONV_2D on 16x16.

    Per-channel scales in * w / out spread over 0.05 .. 30 (0.05 .. 6): no one-multiply
    constants exist.
    """
    b = GraphBuilder(f"overscaled_{kind}", seed=5)
    if kind == "fc":
        name = b.fully_connected(b.input((1, 128), 0.05, 3), 640, per_channel=True)
        return b.output(overscaled(b, name, 0.05, 30.0)).build()
    name = b.conv2d(b.input((1, 16, 16, 16), 0.05, 3), 32, (3, 3))
    return b.output(overscaled(b, name, 0.05, 6.0)).build()


@pytest.mark.parametrize(("kind", "function"), [("fc", "mcuflow_fully_connected_dsp_s8("),
                                                ("conv", "mcuflow_conv2d_dsp_s8(")])
def test_general_requantisation_keeps_simd_speed(kind: str, function: str,
                                                 tmp_path: Path) -> None:
    """Such layers call the DSP kernel and keep >= 0.5 MACs/instruction on M4 (portable: ~0.15)."""
    graph = _overscaled_layer(kind)
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    project = generate_project(graph, plan, tmp_path / "project", target="cortex-m4",
                               board=get_board(BOARDS["cortex-m4"]))
    assert function in (project.path / "mcuflow_model.c").read_text()
    result = verify_cortexm(graph, plan, "cortex-m4", BOARDS["cortex-m4"], runs=2, profile=True)
    assert result.bit_exact
    rate = result.layers[0].macs / result.layers[0].instructions
    print(f"{graph.name} on QEMU M4, general requantisation: {rate:.3f} MACs/instruction")
    assert rate >= 0.5


def _dense(per_channel: bool) -> Graph:
    """One 128 -> 640 FULLY_CONNECTED; per-channel scales spread over 2^-6 .. 2^3."""
    b = GraphBuilder(f"dense_{'channel' if per_channel else 'tensor'}", seed=5)
    name = b.fully_connected(b.input((1, 128), 0.05, 3), 640, per_channel=per_channel)
    b.output(spread_scales(b, name) if per_channel else name)
    return b.build()


def test_per_channel_fully_connected_runs_as_fast_as_per_tensor(tmp_path: Path) -> None:
    """Per-channel FULLY_CONNECTED calls the DSP kernel and keeps its MACs/instruction on M4."""
    rates = {}
    for per_channel in (False, True):
        graph = _dense(per_channel)
        plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
        project = generate_project(graph, plan, tmp_path / str(per_channel), target="cortex-m4",
                                   board=get_board(BOARDS["cortex-m4"]))
        assert "mcuflow_fully_connected_dsp_s8(" in (project.path / "mcuflow_model.c").read_text()
        result = verify_cortexm(graph, plan, "cortex-m4", BOARDS["cortex-m4"], runs=2,
                                profile=True)
        assert result.bit_exact
        rates[per_channel] = result.layers[0].macs / result.layers[0].instructions
    print(f"128 -> 640 FULLY_CONNECTED on QEMU M4: per-channel {rates[True]:.3f}, per-tensor "
          f"{rates[False]:.3f} MACs/instruction (ratio {rates[True] / rates[False]:.3f})")
    assert rates[True] >= 0.8 * rates[False]
