"""The SVDF keyword spotter on QEMU Cortex-M4: every frame of a sequence bit-exact vs LiteRT.

The frames run one after the other in one boot of the firmware (its record loop), so the SVDF
states, static arrays outside the arena, carry the sequence as LiteRT's variable tensors do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuflow.codegen.project import generate_project
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.hw.board import get_board
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.arm import build_cortexm, cortex_m_core
from mcuflow.toolchain.qemu import run_qemu, verify_cortexm
from tests.models.test_svdf_kws import FRAMES, litert_frames, speech_frames, svdf_kws_model
from tests.targets.support import BOARDS

TARGET = "cortex-m4"


def test_every_frame_is_bit_exact_on_qemu(tmp_path: Path) -> None:
    model = svdf_kws_model()
    graph = read_tflite(model)
    plan = plan_memory(graph, 0.5, dsp=cortex_m_core(TARGET).dsp)
    project = generate_project(graph, plan, tmp_path / "project", target=TARGET,
                               board=get_board(BOARDS[TARGET]))
    elf = build_cortexm(project.path, TARGET)
    frames = speech_frames(FRAMES, seed=9)
    run = run_qemu(elf, TARGET, [frames], project.outputs)
    expected = litert_frames(model, frames)
    for index, want in enumerate(expected):
        np.testing.assert_array_equal(run.outputs[0][index], want, err_msg=f"frame {index}")
    assert len(run.report.run_ticks) == FRAMES


def test_random_sequences_match_the_reference_on_qemu() -> None:
    graph = read_tflite(svdf_kws_model())
    plan = plan_memory(graph, 0.5, dsp=cortex_m_core(TARGET).dsp)
    result = verify_cortexm(graph, plan, TARGET, BOARDS[TARGET], runs=24, seed=2)
    assert result.bit_exact and result.mismatches == 0 and result.runs == 24
