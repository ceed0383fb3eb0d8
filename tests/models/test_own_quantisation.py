"""PyTorch models bring their own quantisation: PT2E programs, .pt2 files, 1-D convolutions.

Oracles: PyTorch's own converted module (its fake-quantised float definition) and ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")
pytest.importorskip("onnxscript")

from onnxruntime.quantization import QuantType  # noqa: E402

from mcuflow import api  # noqa: E402
from mcuflow.agreement import onnxruntime_agreement  # noqa: E402
from mcuflow.ir.ops import OpKind  # noqa: E402
from mcuflow.ref.interpreter import Interpreter  # noqa: E402
from tests import torch_models as tm  # noqa: E402
from tests.support import run_cli_output  # noqa: E402
from tests.unit.test_onnx_reader import assert_matches_onnxruntime  # noqa: E402

EPOCHS = 3
SAMPLES = 30


@pytest.fixture(scope="module")
def digits() -> tuple[tm.Task, torch.export.ExportedProgram]:
    task = tm.digits_task()
    model = tm.train(tm.digits_cnn(), task, EPOCHS)
    return task, tm.pt2e_quantized(model, task, task.train_x[:100])


def _torch_outputs(program: torch.export.ExportedProgram, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return program.module()(torch.from_numpy(x)).numpy()


def test_pt2e_program_keeps_its_parameters_and_matches_pytorch(
        digits: tuple[tm.Task, torch.export.ExportedProgram]) -> None:
    task, program = digits
    quantized = api.load_quantized(program)
    assert not quantized.kept.flagged
    kinds = [op.kind for op in quantized.graph.operators]
    assert OpKind.QUANTIZE not in kinds and OpKind.RELU not in kinds
    output = quantized.graph.tensor(quantized.graph.outputs[0]).quant
    interpreter = Interpreter(quantized.graph)
    for x in task.test_x[:SAMPLES]:
        ours = interpreter.run([quantized.quantize_input(x[None])]).outputs[0]
        theirs = np.round(_torch_outputs(program, x[None]) / output.scale0) + output.zero_point0
        assert np.abs(ours.astype(np.int64) - theirs).max() <= 1
    agreement = onnxruntime_agreement(tm.pt2e_onnx(program), quantized,
                                      [[x[None]] for x in task.test_x[:SAMPLES]])
    assert agreement.mcuflow.within_1lsb >= 0.95
    assert agreement.mcuflow.max_lsb <= agreement.onnxruntime_int8.max_lsb + 1


def test_pt2_file_runs_float_in_and_out_and_compiles_bit_exact(
        digits: tuple[tm.Task, torch.export.ExportedProgram], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    task, program = digits
    path = tmp_path / "digits.pt2"
    torch.export.save(program, path)
    x = task.test_x[:1]
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_cli_output(capsys, ["run", str(path), "-i", str(tmp_path / "x.npy"),
                                           "-o", str(tmp_path / "y.npy")])
    assert code == 0, err
    scale = api.load_quantized(path).graph
    step = scale.tensor(scale.outputs[0]).quant.scale0
    assert np.abs(np.load(tmp_path / "y.npy") - _torch_outputs(program, x)).max() <= step * 1.001
    assert api.verify_model(path, runs=3).bit_exact


def test_nn_modules_with_example_inputs_are_read(
        digits: tuple[tm.Task, torch.export.ExportedProgram], tmp_path: Path) -> None:
    """A PT2E-converted module keeps its parameters; a float one is quantised by mcuflow."""
    task, program = digits
    converted = api.load_graph(program.module(), example_inputs=(task.example,))
    assert converted.tensor(converted.inputs[0]).quant == api.load_quantized(
        program).graph.tensor(converted.inputs[0]).quant
    np.save(tmp_path / "calibration.npy", task.train_x[:20])
    calibrated = api.load_graph(tm.digits_cnn(), api.QuantizeOptions(tmp_path / "calibration.npy"),
                                example_inputs=(task.example,))
    assert calibrated.tensor(calibrated.inputs[0]).shape == (1, 8, 8, 1)


def test_one_d_cnn_imports_as_onnx_runtime_computes_it(tmp_path: Path) -> None:
    task = tm.series_task(samples=200)
    model = tm.train(tm.series_cnn(), task, 1)
    float_model = tm.float_onnx(model, task)
    assert_matches_onnxruntime(float_model, task.example.shape)
    qdq = tm.onnxruntime_qdq(float_model, task.train_x[:50], True, QuantType.QInt8, tmp_path)
    path = tmp_path / "series.onnx"
    path.write_bytes(qdq)
    quantized = api.load_quantized(path)
    assert [op.kind for op in quantized.graph.operators].count(OpKind.CONV_2D) == 2
    agreement = onnxruntime_agreement(qdq, quantized, [[x[None]] for x in task.test_x[:SAMPLES]])
    assert agreement.mcuflow.max_lsb <= 1
    assert api.verify_model(path, runs=3).bit_exact
