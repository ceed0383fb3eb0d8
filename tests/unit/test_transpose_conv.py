"""TRANSPOSE_CONV against LiteRT and ONNX ConvTranspose against onnxruntime; its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from mcuflow import api
from mcuflow.errors import ModelFormatError, UnsupportedModelError
from mcuflow.frontends.onnx_reader import import_onnx
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind, TransposeConvAttrs
from mcuflow.ir.quantization import QuantParams
from mcuflow.ir.shapes import ShapeError
from mcuflow.ref.interpreter import Interpreter
from tests.support import assert_litert_bit_exact, litert_invoke, random_input
from tests.unit.test_onnx_reader import Net, assert_matches_onnxruntime

RNG = np.random.default_rng(29)
ACTIVATIONS = [Activation.NONE, Activation.RELU, Activation.RELU6, Activation.RELU_N1_TO_1]


def _random_layer(seed: int) -> Graph | None:
    """A random TRANSPOSE_CONV graph; None when LiteRT refuses the drawn output size."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("tconv", seed)
    h, w = (int(v) for v in rng.integers(1, 7, 2))
    stride = int(rng.integers(1, 4))
    kernel = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    padding = [Padding.SAME, Padding.VALID][seed % 2]
    x = b.input((int(rng.integers(1, 3)), h, w, int(rng.integers(1, 10))),
                float(rng.uniform(0.01, 0.1)), int(rng.integers(-30, 30)))
    if padding is Padding.SAME:
        out_hw = (h * stride - int(rng.integers(0, stride)), w * stride - int(
            rng.integers(0, stride)))
    else:
        out_hw = ((h - 1) * stride + kernel[0] + int(rng.integers(0, stride)),
                  (w - 1) * stride + kernel[1] + int(rng.integers(0, stride)))
    try:
        y = b.transpose_conv(x, int(rng.integers(1, 10)), kernel, stride, padding,
                             ACTIVATIONS[seed % 4], per_channel=bool(rng.integers(2)),
                             bias=bool(rng.integers(3)), output_hw=out_hw)
    except ShapeError:
        return None
    return b.output(y).build()


@pytest.mark.parametrize("seed", range(40))
def test_reference_matches_litert(seed: int) -> None:
    graph = _random_layer(seed)
    if graph is None:
        graph = _random_layer(seed + 1000)
    assert graph is not None
    model = write_tflite(graph)
    interpreter = Interpreter(graph)
    for _ in range(3):
        x = random_input(graph.tensors[graph.inputs[0]].shape, np.int8, RNG)
        np.testing.assert_array_equal(interpreter.run([x]).outputs[0],
                                      litert_invoke(model, [x])[0])


def test_tflite_round_trip_keeps_operands_and_options() -> None:
    b = GraphBuilder("round_trip", 3)
    x = b.input((1, 4, 5, 3), 0.05, 4)
    with_bias = b.transpose_conv(x, 6, (3, 2), 2, Padding.SAME, Activation.RELU6)
    b.output(with_bias, b.transpose_conv(x, 2, (2, 2), 2, Padding.VALID, bias=False,
                                         per_channel=False, output_hw=(9, 11)))
    graph = b.build()
    read = read_tflite(write_tflite(graph))
    for ours, theirs in zip(graph.operators, read.operators, strict=True):
        assert theirs.kind is OpKind.TRANSPOSE_CONV and theirs.attrs == ours.attrs
        assert len(theirs.inputs) == len(ours.inputs)
        for mine, back in zip(ours.inputs, theirs.inputs, strict=True):
            np.testing.assert_array_equal(read.tensors[back].data, graph.tensors[mine].data)
    x_data = random_input((1, 4, 5, 3), np.int8, RNG)
    for want, got in zip(Interpreter(graph).run([x_data]).outputs,
                         Interpreter(read).run([x_data]).outputs, strict=True):
        np.testing.assert_array_equal(want, got)


def test_output_size_litert_refuses_is_a_shape_error() -> None:
    b = GraphBuilder("bad", 1)
    x = b.input((1, 4, 4, 3))
    with pytest.raises(ShapeError, match="windows, not the input's 4x4"):
        b.transpose_conv(x, 2, (3, 3), 2, Padding.SAME, output_hw=(10, 8))


def test_accumulator_overflow_is_refused_with_its_message() -> None:
    b = GraphBuilder("overflow", 2)
    x = b.input((1, 3, 3, 4), 0.05, 0)
    y = b.transpose_conv(x, 2, (3, 3), 2)
    bias = b.graph.operators[-1].inputs[2]
    b.graph.tensors[bias].data = np.full(2, 2**31 - 10, np.int32)
    with pytest.raises(UnsupportedModelError, match="int32 accumulator must not overflow"):
        check_supported(b.output(y).build())


def test_per_channel_weights_on_another_axis_are_refused() -> None:
    b = GraphBuilder("axis", 4)
    x = b.input((1, 3, 3, 4), 0.05, 0)
    y = b.transpose_conv(x, 2, (3, 3), 2)
    weights = b.graph.tensors[b.graph.operators[-1].inputs[1]]
    weights.quant = QuantParams.per_channel(np.full(4, 0.01), np.zeros(4, np.int64), 3)
    with pytest.raises(UnsupportedModelError, match="along the output-channel axis"):
        check_supported(b.output(y).build())


def test_attrs_hold_the_output_shape() -> None:
    assert TransposeConvAttrs((1, 6, 8, 3)).output_hw == (6, 8)


# --- ONNX ConvTranspose ---------------------------------------------------------------------


SHAPE = (1, 3, 5, 6)

ONNX_CASES = {
    "k2s2": {"kernel": (2, 2), "attrs": {"strides": [2, 2]}},
    "k3s2_pads_output_padding": {"kernel": (3, 3), "attrs": {
        "strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}},
    "k3s1_same_pads": {"kernel": (3, 3), "attrs": {"pads": [1, 1, 1, 1]}},
    "k4s2_pads": {"kernel": (4, 4), "attrs": {"strides": [2, 2], "pads": [1, 1, 1, 1]}},
    "asymmetric_pads": {"kernel": (3, 2), "attrs": {"strides": [2, 3], "pads": [2, 0, 0, 1]}},
    "same_upper": {"kernel": (3, 3), "attrs": {"strides": [2, 2], "auto_pad": "SAME_UPPER"}},
    "same_lower": {"kernel": (4, 3), "attrs": {"strides": [2, 2], "auto_pad": "SAME_LOWER"}},
    "valid": {"kernel": (3, 3), "attrs": {"strides": [2, 1], "auto_pad": "VALID"}},
    "output_shape": {"kernel": (3, 3), "attrs": {"strides": [2, 2], "output_shape": [10, 11]}},
    "no_bias": {"kernel": (3, 3), "attrs": {"strides": [2, 2]}, "bias": False},
}


def _conv_transpose_model(case: dict) -> bytes:
    net = Net(SHAPE)
    inputs = ["x", net.weights(3, 5, *case["kernel"])]
    if case.get("bias", True):
        inputs.append(net.weights(5))
    return net.model(net.node("Relu", net.node("ConvTranspose", *inputs, **case["attrs"])))


@pytest.mark.parametrize("name", ONNX_CASES)
def test_conv_transpose_matches_onnxruntime(name: str) -> None:
    data = _conv_transpose_model(ONNX_CASES[name])
    assert OpKind.TRANSPOSE_CONV in {op.kind for op in import_onnx(data).graph.operators}
    assert_matches_onnxruntime(data, SHAPE)


@pytest.mark.parametrize("name", ["k3s2_pads_output_padding", "asymmetric_pads", "no_bias"])
def test_quantised_conv_transpose_runs_in_litert_to_the_bit(name: str, tmp_path: Path) -> None:
    path = tmp_path / "tconv.onnx"
    path.write_bytes(_conv_transpose_model(ONNX_CASES[name]))
    calibration = RNG.standard_normal((8, *SHAPE[1:])).astype(np.float32)
    result = api.quantize_model(path, calibration, "affine", True, "minmax")
    assert OpKind.TRANSPOSE_CONV in {op.kind for op in result.graph.operators}
    assert_litert_bit_exact(result, calibration[:4])


@pytest.mark.parametrize(("attrs", "weights", "error", "message"), [
    ({"group": 3}, (3, 1, 3, 3), UnsupportedModelError, "group 1"),
    ({"dilations": [2, 2]}, (3, 5, 3, 3), UnsupportedModelError, "dilations"),
    ({"strides": [2, 2], "output_padding": [2, 0]}, (3, 5, 3, 3), UnsupportedModelError,
     "output_padding or output_shape reaching"),
    ({"strides": [2, 2], "output_shape": [14, 12]}, (3, 5, 3, 3), UnsupportedModelError,
     "an output of 14x12"),
    ({}, (4, 5, 3, 3), ModelFormatError, "weights for 4 input channels"),
    ({"strides": [0, 1]}, (3, 5, 3, 3), ModelFormatError, "invalid kernel"),
    ({}, (3, 5, 0, 3), ModelFormatError, "invalid kernel"),
])
def test_conv_transpose_refusals(attrs: dict, weights: tuple[int, ...], error: type,
                                 message: str) -> None:
    net = Net(SHAPE)
    data = net.model(net.node("ConvTranspose", "x", net.weights(*weights), **attrs))
    with pytest.raises(error, match=message):
        import_onnx(data)


class _Samples(CalibrationDataReader):
    def __init__(self, count: int) -> None:
        self._samples = iter([{"x": RNG.standard_normal(SHAPE).astype(np.float32)}
                              for _ in range(count)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._samples, None)


@pytest.mark.parametrize("per_channel", [True, False])
def test_onnxruntime_quantised_conv_transpose_keeps_its_weights(per_channel: bool,
                                                                tmp_path: Path) -> None:
    """ONNX Runtime's QDQ ConvTranspose keeps its int8 weights and is LiteRT to the bit.

    Per channel, quantize_static scales the weights along axis 1, the output channels.
    """
    source, target = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    source.write_bytes(_conv_transpose_model(ONNX_CASES["k3s2_pads_output_padding"]))
    quantize_static(source, target, _Samples(8), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    result = api.quantize_model(target, None)
    op = next(op for op in result.graph.operators if op.kind is OpKind.TRANSPOSE_CONV)
    weights = result.graph.tensor(op.inputs[1])
    assert weights.quant.is_per_channel is per_channel
    stored = [numpy_helper.to_array(t) for t in onnx.load(target).graph.initializer]
    codes = [v for v in stored if v.dtype == np.int8 and v.ndim == 4]
    assert len(codes) == 1
    np.testing.assert_array_equal(weights.data, codes[0].transpose(1, 2, 3, 0))
    assert_litert_bit_exact(result, RNG.standard_normal((3, *SHAPE[1:])).astype(np.float32))


def _qdq(nodes: list[onnx.NodeProto], name: str, scale: str, zero: str) -> str:
    quantised, restored = f"{name}_q", f"{name}_dq"
    nodes += [onnx.helper.make_node("QuantizeLinear", [name, scale, zero], [quantised]),
              onnx.helper.make_node("DequantizeLinear", [quantised, scale, zero], [restored])]
    return restored


def test_weight_scales_per_input_channel_are_not_taken_for_output_channels(tmp_path: Path
                                                                           ) -> None:
    """Weights dequantised along axis 0 (input channels) are requantised per output channel.

    The model has as many input as output channels, so the scales' count alone cannot tell.
    """
    codes = RNG.integers(-127, 128, (4, 4, 3, 3), dtype=np.int8)
    scales = np.array([0.001, 0.01, 0.05, 0.2], np.float32)
    init = [numpy_helper.from_array(v, n) for n, v in (
        ("w", codes), ("w_scale", scales), ("w_zero", np.zeros(4, np.int8)),
        ("s", np.float32(0.02)), ("z", np.int8(0)), ("so", np.float32(0.05)))]
    nodes: list[onnx.NodeProto] = []
    x = _qdq(nodes, "x", "s", "z")
    nodes.append(onnx.helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wf"],
                                       axis=0))
    nodes.append(onnx.helper.make_node("ConvTranspose", [x, "wf"], ["y"], strides=[2, 2]))
    y = _qdq(nodes, "y", "so", "z")
    shape = (1, 4, 3, 3)
    graph = onnx.helper.make_graph(
        nodes, "qdq", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
        [onnx.helper.make_tensor_value_info(y, onnx.TensorProto.FLOAT, None)], init)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "qdq.onnx"
    path.write_bytes(model.SerializeToString())
    result = api.quantize_model(path, None)
    op = next(op for op in result.graph.operators if op.kind is OpKind.TRANSPOSE_CONV)
    quant = result.graph.tensor(op.inputs[1]).quant
    real = codes.astype(np.float64) * scales[:, None, None, None]
    widest = np.abs(real).max(axis=(0, 2, 3))
    np.testing.assert_allclose(np.asarray(quant.scale), widest / 127, rtol=1e-5)
    assert_litert_bit_exact(result, RNG.standard_normal((3, *shape[1:])).astype(np.float32))
