"""ONNX ReduceMax, ReduceMin, ArgMax and ArgMin import as REDUCE_MAX/MIN and ARG_MAX/MIN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mcuflow import api
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.onnx_reader import import_onnx
from mcuflow.ir.graph import DType
from mcuflow.ir.ops import OpKind
from mcuflow.passes.pipeline import run_passes
from mcuflow.ref.float_kernels import run_float
from tests.support import assert_litert_bit_exact
from tests.unit.test_onnx_reader import Net, assert_matches_onnxruntime

RNG = np.random.default_rng(17)
SHAPE = (1, 3, 8, 8)


def _conv(net: Net) -> str:
    return net.node("Conv", "x", net.weights(6, 3, 3, 3))


@pytest.mark.parametrize("op_type", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize(("axes", "keepdims"), [([2, 3], 1), ([2, 3], 0), ([1], 0), ([1], 1),
                                                ([-1], 0), (None, 0), ([0, 1, 2, 3], 1)],
                         ids=str)
@pytest.mark.parametrize("opset", [17, 18])
def test_reduce_max_min(op_type: str, axes: list[int] | None, keepdims: int, opset: int
                        ) -> None:
    net = Net(SHAPE, opset)
    y = _conv(net)
    if axes is None:
        out = net.node(op_type, y, keepdims=keepdims)
    elif opset >= 18:
        out = net.node(op_type, y, net.const(np.array(axes, np.int64)), keepdims=keepdims)
    else:
        out = net.node(op_type, y, axes=axes, keepdims=keepdims)
    data = net.model(out)
    kind = OpKind.REDUCE_MAX if op_type == "ReduceMax" else OpKind.REDUCE_MIN
    assert kind in {op.kind for op in import_onnx(data).graph.operators}
    assert_matches_onnxruntime(data, SHAPE)


def test_global_max_pooling_1d_then_classifier() -> None:
    """A Keras-style GlobalMaxPooling1D (ReduceMax over time) of a 1-D conv, then Gemm."""
    shape = (1, 4, 20)
    net = Net(shape)
    y = net.node("Conv", "x", net.weights(6, 4, 3))
    pooled = net.node("ReduceMax", y, axes=[2], keepdims=0)
    assert_matches_onnxruntime(net.model(net.node("Gemm", pooled, net.weights(6, 5))), shape)


def _int_output_model(net: Net, output: str) -> bytes:
    graph = helper.make_graph(
        net.nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(net.shape))],
        [helper.make_tensor_value_info(output, TensorProto.INT64, None)], net.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", net.opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _assert_indices_match(data: bytes, shape: tuple[int, ...]) -> None:
    imported = import_onnx(data)
    session = ort.InferenceSession(data)
    (name,), (output,) = imported.graph.inputs, imported.graph.outputs
    assert imported.graph.tensor(output).dtype is DType.INT32
    for graph in (imported.graph, run_passes(imported.graph)):
        for _ in range(3):
            x = RNG.standard_normal(shape).astype(np.float32)
            expected = session.run(None, {"x": x})[0].transpose(imported.output_perms[output])
            ours = run_float(graph, [x.transpose(imported.input_perms[name])]).outputs[0]
            assert ours.dtype == np.int32
            np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("op_type", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis", [1, 2, -1, 0])
def test_arg_max_min_over_nchw(op_type: str, axis: int) -> None:
    net = Net(SHAPE)
    out = net.node(op_type, _conv(net), axis=axis, keepdims=0)
    _assert_indices_match(_int_output_model(net, out), SHAPE)


def test_classifier_ending_in_arg_max() -> None:
    net = Net(SHAPE)
    flat = net.node("Flatten", net.node("Relu", _conv(net)))
    logits = net.node("Gemm", flat, net.weights(6 * 6 * 6, 10))
    _assert_indices_match(_int_output_model(net, net.node("ArgMax", logits, axis=1, keepdims=0)),
                          SHAPE)


@pytest.mark.parametrize(("attrs", "message"), [
    ({"axis": 1}, "keepdims=1"),
    ({"axis": 1, "keepdims": 0, "select_last_index": 1}, "select_last_index=1"),
])
def test_arg_max_refusals(attrs: dict, message: str) -> None:
    net = Net(SHAPE)
    data = _int_output_model(net, net.node("ArgMax", _conv(net), **attrs))
    with pytest.raises(UnsupportedModelError, match=message):
        import_onnx(data)


def test_quantised_reduce_max_runs_in_litert_to_the_bit(tmp_path: Path) -> None:
    """PTQ of a float ONNX model with ReduceMax: the int8 model equals LiteRT to the bit."""
    net = Net(SHAPE)
    pooled = net.node("ReduceMax", net.node("Relu", _conv(net)), axes=[2, 3], keepdims=0)
    path = tmp_path / "pooled.onnx"
    path.write_bytes(net.model(net.node("Gemm", pooled, net.weights(6, 10))))
    calibration = RNG.standard_normal((8, *SHAPE[1:])).astype(np.float32)
    result = api.quantize_model(path, calibration, "affine", True, "minmax")
    assert OpKind.REDUCE_MAX in {op.kind for op in result.graph.operators}
    assert_litert_bit_exact(result, calibration[:4])


def test_quantised_arg_max_runs_in_litert_to_the_bit(tmp_path: Path) -> None:
    """PTQ of a classifier ending in ArgMax: int32 indices, equal to LiteRT's."""
    net = Net(SHAPE)
    logits = net.node("Gemm", net.node("Flatten", _conv(net)), net.weights(6 * 6 * 6, 10))
    path = tmp_path / "classifier.onnx"
    path.write_bytes(_int_output_model(net, net.node("ArgMax", logits, axis=1, keepdims=0)))
    calibration = RNG.standard_normal((8, *SHAPE[1:])).astype(np.float32)
    result = api.quantize_model(path, calibration, "affine", True, "minmax")
    assert result.graph.tensor(result.graph.outputs[0]).dtype is DType.INT32
    assert_litert_bit_exact(result, calibration[:4])
