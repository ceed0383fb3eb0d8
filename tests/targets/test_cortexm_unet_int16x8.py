"""The int16x8 U-Net of tests/models/test_unet_int16x8.py on QEMU Cortex-M4, bit-exact vs LiteRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuflow.codegen.project import generate_project
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.hw.board import get_board
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.arm import build_cortexm, cortex_m_core
from mcuflow.toolchain.qemu import run_qemu
from tests.models.test_unet_int16x8 import RUNS, litert_outputs, model_file, samples
from tests.targets.support import BOARDS, PLAN_SECONDS

TARGET = "cortex-m4"


def test_int16x8_unet_is_bit_exact_against_litert_on_cortex_m4(tmp_path: Path) -> None:
    model = model_file(tmp_path)
    graph = read_tflite(model.read_bytes())
    plan = plan_memory(graph, PLAN_SECONDS, dsp=cortex_m_core(TARGET).dsp)
    project = generate_project(graph, plan, tmp_path / "project", target=TARGET,
                               board=get_board(BOARDS[TARGET]))
    elf = build_cortexm(project.path, TARGET)
    inputs = samples()
    got = run_qemu(elf, TARGET, [inputs[:, None]], project.outputs).outputs[0]
    want = litert_outputs(model, inputs)
    assert got.shape == want.shape and got.shape[0] == RUNS
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
