"""An SVDF keyword spotter (micro_speech's SVDF era): bit-exact against LiteRT frame by frame.

40 filterbank features per frame -> SVDF -> SVDF -> FULLY_CONNECTED -> SOFTMAX, written as a
.tflite by the project's writer and read back. Each frame is one inference; the SVDF states
carry the past frames, so every frame's output depends on the whole sequence.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mcuflow import api
from mcuflow.codegen.project import generate_project
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.host import build_host, run_host
from tests.coverage_models import SVDF_FEATURES as FEATURES
from tests.coverage_models import SVDF_LABELS as LABELS
from tests.coverage_models import svdf_kws_model
from tests.support import litert_interpreter, litert_invoke
from tests.unit.test_svdf import tflm_outputs

FRAMES = 16
STATE_BYTES = 2 * (10 * 32 + 6 * 16 * 2)  # int16 [memory x filters] of each SVDF


def speech_frames(count: int = FRAMES, seed: int = 1) -> np.ndarray:
    """`count` frames [count, 1, 40] of slowly varying int8 features, as a filterbank gives."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0.0, 12.0, size=(count, 1, FEATURES)), axis=0)
    return np.clip(walk + rng.normal(-40.0, 30.0, size=(1, 1, FEATURES)), -128, 127).astype(
        np.int8)


def litert_frames(model: bytes, frames: np.ndarray) -> list[np.ndarray]:
    """LiteRT's output for each frame, in order, on one interpreter (its state carried)."""
    litert = litert_interpreter(model)
    return [litert_invoke(litert, [frame])[0] for frame in frames]


def planned() -> tuple[Graph, Plan]:
    graph = read_tflite(svdf_kws_model())
    return graph, plan_memory(graph, 0.5)


def test_reference_is_bit_exact_every_frame() -> None:
    model = svdf_kws_model()
    frames = speech_frames()
    interpreter = Interpreter(read_tflite(model))
    for index, (frame, want) in enumerate(zip(frames, litert_frames(model, frames),
                                              strict=True)):
        np.testing.assert_array_equal(interpreter.run([frame]).outputs[0], want,
                                      err_msg=f"frame {index}")


def test_host_c_is_bit_exact_every_frame(tmp_path: Path) -> None:
    """All frames run in one process: the C keeps the states between inferences."""
    graph, plan = planned()
    assert graph.variables() and not set(graph.variables()) & set(plan.buffers)
    project = generate_project(graph, plan, tmp_path / "project")
    binary = build_host(project.path, sanitize=True, opt_level="-O1")
    frames = speech_frames()
    actual = run_host(binary, [frames], project.outputs)[0]
    expected = litert_frames(svdf_kws_model(), frames)
    for index, want in enumerate(expected):
        np.testing.assert_array_equal(actual[index], want, err_msg=f"frame {index}")
    assert len({row.tobytes() for row in actual}) > 1
    source = (project.path / "mcuflow_model.c").read_text()
    assert "mcuflow_model_reset" in source and "static int16_t mcuflow_state0[320];" in source
    readme = (project.path / "README.md").read_text()
    assert f"State: {STATE_BYTES} bytes" in readme and "`mcuflow_model_reset()`" in readme


def test_same_frame_twice_gives_what_litert_gives(tmp_path: Path) -> None:
    """A repeated frame: only the state tells the runs apart."""
    graph, plan = planned()
    project = generate_project(graph, plan, tmp_path / "project")
    binary = build_host(project.path)
    frames = np.repeat(speech_frames(1, seed=4), 6, axis=0)
    actual = run_host(binary, [frames], project.outputs)[0]
    expected = litert_frames(svdf_kws_model(), frames)
    np.testing.assert_array_equal(actual, np.stack(expected))
    assert len({row.tobytes() for row in actual}) > 1


def test_reset_starts_a_new_sequence(tmp_path: Path) -> None:
    """A driver that calls mcuflow_model_reset between two sequences sees LiteRT's fresh state."""
    graph, plan = planned()
    project = generate_project(graph, plan, tmp_path / "project")
    frames = speech_frames(8, seed=6)
    table = ", ".join("{" + ", ".join(str(int(v)) for v in frame.ravel()) + "}"
                      for frame in frames)
    (project.path / "main.c").write_text(f"""#include <stdio.h>
#include "mcuflow_model.h"
static const int8_t frames[8][{FEATURES}] = {{{table}}};
int main(void)
{{
    int8_t out[{LABELS}];
    for (int pass = 0; pass < 2; ++pass) {{
        for (int f = pass * 3; f < 8; ++f) {{
            if (mcuflow_model_invoke(frames[f], out) != MCUFLOW_OK) {{
                return 1;
            }}
            for (int i = 0; i < {LABELS}; ++i) {{
                printf("%d ", out[i]);
            }}
        }}
        mcuflow_model_reset();
    }}
    return 0;
}}
""")
    binary = build_host(project.path, sanitize=True, opt_level="-O1")
    printed = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    got = np.array([int(v) for v in printed.split()], np.int8).reshape(-1, LABELS)
    model = svdf_kws_model()
    want = litert_frames(model, frames) + litert_frames(model, frames[3:])
    np.testing.assert_array_equal(got, np.concatenate(want))


def test_verify_and_analysis_through_the_api(tmp_path: Path) -> None:
    path = tmp_path / "svdf_kws.tflite"
    path.write_bytes(svdf_kws_model())
    checked = api.verify_model(path, runs=FRAMES)
    assert checked.result.bit_exact and checked.result.litert_mismatches == 0
    report = api.analyze_model(path, target="host").report
    assert report.state_bytes == STATE_BYTES
    assert report.sram_margin_bytes == (report.sram_bytes - report.peak_ram_bytes
                                        - STATE_BYTES)
    assert [layer.op for layer in report.layers] == ["SVDF", "SVDF", "FULLY_CONNECTED",
                                                     "SOFTMAX"]


def test_model_with_another_activation_is_refused() -> None:
    """Neither LiteRT nor TFLM run an int8 SVDF with RELU6: mcuflow says so."""
    graph = read_tflite(svdf_kws_model())
    graph.operators[0].attrs = replace(graph.operators[0].attrs, activation=Activation.RELU6)
    with pytest.raises(UnsupportedModelError, match="must be RELU"):
        Interpreter(graph)


def test_tflm_style_model_without_activation_is_bit_exact_every_frame(tmp_path: Path) -> None:
    """micro_speech's SVDFs had no fused activation: LiteRT refuses them, TFLM is the oracle."""
    model = svdf_kws_model(Activation.NONE)
    graph = read_tflite(model)
    assert {op.attrs.activation for op in graph.operators[:2]} == {Activation.NONE}
    project = generate_project(graph, plan_memory(graph, 0.5), tmp_path / "project")
    binary = build_host(project.path, sanitize=True, opt_level="-O1")
    frames = speech_frames(seed=12)
    actual = run_host(binary, [frames], project.outputs)[0]
    np.testing.assert_array_equal(actual, np.stack(tflm_outputs(model, list(frames))))
