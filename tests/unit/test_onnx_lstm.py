"""ONNX LSTM through UNIDIRECTIONAL_SEQUENCE_LSTM: float import and PTQ to the integer LSTM.

The float import equals onnxruntime; the quantised model is bit-exact against LiteRT and close
to onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.onnx_reader import read_onnx
from mcuflow.ir.ops import OpKind
from mcuflow.ptq import quantize_model
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from tests.support import assert_litert_bit_exact

TIME, FEATURES, HIDDEN, CLASSES = 12, 5, 8, 4


def _weights(rng: np.random.Generator, features: int) -> list:
    arrays = {"W": rng.normal(0, 0.4, (1, 4 * HIDDEN, features)),
              "R": rng.normal(0, 0.4, (1, 4 * HIDDEN, HIDDEN)),
              "B": rng.normal(0, 0.2, (1, 8 * HIDDEN))}
    return [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]


def _model(nodes: list, inputs: list, outputs: list, initialisers: list) -> bytes:
    graph = helper.make_graph(nodes, "lstm", inputs, outputs, initialisers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]
                             ).SerializeToString()


def _sequence_model(batch: int, **attributes: object) -> bytes:
    """X [time, batch, features] -> LSTM -> Y [time, 1, batch, hidden], Y_h [1, batch, hidden]."""
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["y", "y_h"], hidden_size=HIDDEN,
                            **attributes)
    value = helper.make_tensor_value_info
    return _model([node], [value("x", TensorProto.FLOAT, [TIME, batch, FEATURES])],
                  [value("y", TensorProto.FLOAT, [TIME, 1, batch, HIDDEN]),
                   value("y_h", TensorProto.FLOAT, [1, batch, HIDDEN])],
                  _weights(np.random.default_rng(batch), FEATURES))


def _classifier() -> bytes:
    """PyTorch's pattern: [1, time, features] -> Transpose -> LSTM -> Y_h -> Gemm."""
    rng = np.random.default_rng(9)
    head = [numpy_helper.from_array(rng.normal(0, 0.5, (CLASSES, HIDDEN)).astype(np.float32),
                                    "fc_w"),
            numpy_helper.from_array(rng.normal(0, 0.1, CLASSES).astype(np.float32), "fc_b")]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ["t", "W", "R", "B"], ["y", "y_h"], hidden_size=HIDDEN),
             helper.make_node("Reshape", ["y_h", "shape"], ["h"]),
             helper.make_node("Gemm", ["h", "fc_w", "fc_b"], ["logits"], transB=1)]
    shape = numpy_helper.from_array(np.array([1, HIDDEN], np.int64), "shape")
    value = helper.make_tensor_value_info
    return _model(nodes, [value("x", TensorProto.FLOAT, [1, TIME, FEATURES])],
                  [value("logits", TensorProto.FLOAT, [1, CLASSES])],
                  [*_weights(rng, FEATURES), *head, shape])


@pytest.mark.parametrize("batch", [1, 3])
def test_float_import_equals_onnxruntime(batch: int) -> None:
    model = _sequence_model(batch)
    graph = read_onnx(model)
    assert OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM in {op.kind for op in graph.operators}
    x = np.random.default_rng(4).normal(0, 1, (TIME, batch, FEATURES)).astype(np.float32)
    want = ort.InferenceSession(model).run(None, {"x": x})
    got = run_float(graph, [x]).outputs
    for expected, actual in zip(want, got, strict=True):
        np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_quantised_lstm_is_bit_exact_with_litert_and_close_to_onnxruntime(tmp_path: Path
                                                                          ) -> None:
    path = tmp_path / "lstm.onnx"
    path.write_bytes(_classifier())
    samples = np.random.default_rng(5).normal(0, 1, (24, TIME, FEATURES)).astype(np.float32)
    result = quantize_model(path, samples)
    assert_litert_bit_exact(result, samples[:4])
    x = samples[:1]
    want = ort.InferenceSession(path.read_bytes()).run(None, {"x": x})[0]
    out = Interpreter(result.graph).run([result.quantize_input(x)]).outputs[0]
    quant = result.graph.tensors[result.graph.outputs[0]].quant
    assert quant is not None
    real = quant.scale0 * (out.astype(np.float64) - quant.zero_point0)
    assert np.abs(real - want).max() < 0.05 * np.abs(want).max()


@pytest.mark.parametrize(("attributes", "message"), [
    ({"direction": "bidirectional"}, "forward"), ({"clip": 3.0}, "clips its gates"),
    ({"activations": ["Relu", "Tanh", "Tanh"]}, "activations")])
def test_unsupported_lstm_variants_are_refused(attributes: dict, message: str) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        read_onnx(_sequence_model(1, **attributes))
