"""The int16x8 CNN of tests/models/test_int16x8.py on QEMU Cortex-M4, bit-exact vs LiteRT."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from mcuflow.codegen.project import generate_project
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.board import get_board
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.arm import build_cortexm, cortex_m_core
from mcuflow.toolchain.qemu import run_qemu, verify_cortexm
from tests.models.test_int16x8 import RUNS, inputs, int16x8_cnn, litert_outputs, model_file
from tests.targets.support import BOARDS, PLAN_SECONDS

TARGET = "cortex-m4"


@functools.cache
def planned() -> tuple[Graph, Plan]:
    """The CNN read back from its .tflite bytes and planned for the Cortex-M4 (DSP scratch)."""
    graph = read_tflite(write_tflite(int16x8_cnn()))
    return graph, plan_memory(graph, PLAN_SECONDS, dsp=cortex_m_core(TARGET).dsp)


def test_int16x8_cnn_is_bit_exact_against_litert_on_cortex_m4(tmp_path: Path) -> None:
    graph, plan = planned()
    project = generate_project(graph, plan, tmp_path / "project", target=TARGET,
                               board=get_board(BOARDS[TARGET]))
    elf = build_cortexm(project.path, TARGET)
    samples = inputs()
    got = run_qemu(elf, TARGET, [samples], project.outputs).outputs[0]
    want = litert_outputs(model_file(tmp_path), samples)
    assert got.shape == want.shape == (RUNS, 1, 10)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_int16x8_cnn_runs_its_int16_kernels_on_cortex_m4() -> None:
    graph, plan = planned()
    result = verify_cortexm(graph, plan, TARGET, BOARDS[TARGET], runs=4, profile=True)
    assert result.bit_exact and result.mismatches == 0 and result.instructions > 0
    kernels = {kernel for layer in result.layers if layer.instructions > 0
               for kernel in layer.kernels}
    assert {"mcuflow_conv2d_s16_dsp", "mcuflow_dwconv_s16_dsp", "mcuflow_binary_s16",
            "mcuflow_softmax_s16", "mcuflow_fully_connected_s16_dsp"} <= kernels
