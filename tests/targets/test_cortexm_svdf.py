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
from mcuflow.ir.enums import Activation
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.arm import build_cortexm, cortex_m_core
from mcuflow.toolchain.qemu import QemuRun, run_qemu, verify_cortexm
from tests.models.test_svdf_kws import FRAMES, litert_frames, speech_frames, svdf_kws_model
from tests.targets.support import BOARDS
from tests.unit.test_svdf import tflm_outputs

TARGET = "cortex-m4"


def _qemu_frames(model: bytes, frames: np.ndarray, directory: Path) -> QemuRun:
    graph = read_tflite(model)
    plan = plan_memory(graph, 0.5, dsp=cortex_m_core(TARGET).dsp)
    project = generate_project(graph, plan, directory, target=TARGET,
                               board=get_board(BOARDS[TARGET]))
    return run_qemu(build_cortexm(project.path, TARGET), TARGET, [frames], project.outputs)


def test_every_frame_is_bit_exact_on_qemu(tmp_path: Path) -> None:
    model = svdf_kws_model()
    frames = speech_frames(FRAMES, seed=9)
    run = _qemu_frames(model, frames, tmp_path / "project")
    for index, want in enumerate(litert_frames(model, frames)):
        np.testing.assert_array_equal(run.outputs[0][index], want, err_msg=f"frame {index}")
    assert len(run.report.run_ticks) == FRAMES


def test_model_without_activation_matches_tflm_on_qemu(tmp_path: Path) -> None:
    """The TFLM-style model (no fused activation, which LiteRT refuses) against TFLM."""
    model = svdf_kws_model(Activation.NONE)
    frames = speech_frames(FRAMES, seed=10)
    run = _qemu_frames(model, frames, tmp_path / "project")
    np.testing.assert_array_equal(run.outputs[0], np.stack(tflm_outputs(model, list(frames))))


def test_random_sequences_match_the_reference_on_qemu() -> None:
    graph = read_tflite(svdf_kws_model())
    plan = plan_memory(graph, 0.5, dsp=cortex_m_core(TARGET).dsp)
    result = verify_cortexm(graph, plan, TARGET, BOARDS[TARGET], runs=24, seed=2)
    assert result.bit_exact and result.mismatches == 0 and result.runs == 24
