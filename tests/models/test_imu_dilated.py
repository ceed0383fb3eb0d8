"""A dilated 1-D CNN IMU classifier, as TensorFlow's converter writes it, bit-exact vs LiteRT.

Its dilated Conv1D blocks (EXPAND_DIMS, SPACE_TO_BATCH_ND, CONV_2D, BATCH_TO_SPACE_ND, SQUEEZE)
are folded into dilated convolutions when the model is read; folded or not, the generated C
equals LiteRT's reference kernels to the bit. The float ONNX twin goes through mcuflow's PTQ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuflow import api
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.ops import OpKind
from mcuflow.ptq import quantize_model
from mcuflow.ref.interpreter import Interpreter
from tests.imu_models import AXES, WINDOW, imu_dilated, imu_inputs, imu_onnx
from tests.support import (
    assert_litert_bit_exact,
    host_outputs,
    litert_interpreter,
    litert_invoke,
)

RUNS = 12


def _litert(model: bytes, inputs: list[np.ndarray]) -> np.ndarray:
    interpreter = litert_interpreter(model)
    return np.stack([litert_invoke(interpreter, [x[r] for x in inputs])[0]
                     for r in range(len(inputs[0]))])


def test_folded_model_is_bit_exact_against_litert(tmp_path: Path) -> None:
    model = write_tflite(imu_dilated())
    path = tmp_path / "imu.tflite"
    path.write_bytes(model)
    graph = api.load_graph(path)
    kinds = [op.kind for op in graph.operators]
    assert OpKind.SPACE_TO_BATCH_ND not in kinds and OpKind.BATCH_TO_SPACE_ND not in kinds
    dilations = [op.attrs.dilation_w for op in graph.operators
                 if op.kind in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D)]
    assert dilations == [1, 2, 4, 2]
    inputs = imu_inputs(graph, RUNS)
    want = _litert(model, inputs)
    interpreter = Interpreter(graph)
    for r in range(RUNS):
        np.testing.assert_array_equal(interpreter.run([inputs[0][r]]).outputs[0], want[r])
    np.testing.assert_array_equal(host_outputs(graph, inputs, tmp_path / "folded")[0], want)


def test_unfolded_model_is_bit_exact_against_litert(tmp_path: Path) -> None:
    """The batch-space ops themselves, as read with no pass, run bit-exact too."""
    model = write_tflite(imu_dilated())
    graph = read_tflite(model)
    assert [op.kind for op in graph.operators].count(OpKind.SPACE_TO_BATCH_ND) == 3
    inputs = imu_inputs(graph, RUNS)
    np.testing.assert_array_equal(host_outputs(graph, inputs, tmp_path / "unfolded")[0],
                                  _litert(model, inputs))


def test_onnx_twin_quantises_and_compiles_bit_exact_against_litert(tmp_path: Path) -> None:
    """Float ONNX Conv with dilations on N x C x T, through mcuflow's PTQ (generated data)."""
    path = tmp_path / "imu.onnx"
    path.write_bytes(imu_onnx())
    samples = np.random.default_rng(5).standard_normal((40, 1, AXES, WINDOW)).astype(np.float32)
    np.save(tmp_path / "calibration.npy", samples[:, 0])
    result = quantize_model(path, tmp_path / "calibration.npy")
    dilations = sorted(op.attrs.dilation_w for op in result.graph.operators
                       if op.kind is OpKind.CONV_2D)
    assert dilations == [1, 2, 4]
    assert_litert_bit_exact(result, samples[:8, 0])
    inputs = [np.stack([result.quantize_input(x) for x in samples[8:8 + RUNS]])]
    np.testing.assert_array_equal(host_outputs(result.graph, inputs, tmp_path / "onnx")[0],
                                  _litert(result.tflite(), inputs))
