"""LiteRT's int16x8 scheme: reference kernels against LiteRT, TFLite round trip, constraints."""

from __future__ import annotations

import numpy as np
import pytest

import mcuflow.ref.kernels  # noqa: F401  (registers the constraints beside the kernels)
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import FullyConnectedAttrs, OpKind, SoftmaxAttrs
from mcuflow.ir.quantization import QuantParams
from mcuflow.ref.interpreter import Interpreter
from tests.support import litert_interpreter, litert_invoke, random_input

ACTIVATIONS = [Activation.NONE, Activation.RELU, Activation.RELU6, Activation.RELU_N1_TO_1]
SEEDS = range(6)


def _weighted(kind: OpKind, seed: int) -> Graph:
    """One 16x8 layer with random geometry, scales, activation and per-channel choice."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"{kind.value.lower()}_{seed}", seed=seed)
    activation = ACTIVATIONS[seed % len(ACTIVATIONS)]
    per_channel, bias = bool(seed % 2), seed % 3 != 2
    scale = float(rng.uniform(1e-5, 1e-3))
    if kind is OpKind.FULLY_CONNECTED:
        x = b.input((int(rng.integers(1, 4)), int(rng.integers(1, 40))), scale, 0, DType.INT16)
        y = b.fully_connected(x, int(rng.integers(1, 12)), activation, per_channel, bias)
        return b.output(y).build()
    shape = (int(rng.integers(1, 3)), int(rng.integers(3, 11)), int(rng.integers(3, 11)),
             int(rng.integers(1, 6)))
    x = b.input(shape, scale, 0, DType.INT16)
    kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    stride, dilation = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    padding = Padding.SAME if seed % 2 else Padding.VALID
    if kind is OpKind.CONV_2D:
        y = b.conv2d(x, int(rng.integers(1, 9)), kernel, stride, dilation, padding, activation,
                     per_channel, bias)
    else:
        y = b.depthwise_conv2d(x, kernel, stride, dilation, int(rng.integers(1, 4)), padding,
                               activation, per_channel, bias)
    return b.output(y).build()


def _assert_litert_equal(graph: Graph, runs: int = 3) -> None:
    litert = litert_interpreter(write_tflite(graph))
    ours = Interpreter(graph)
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        inputs = [random_input(graph.tensors[name].shape, graph.tensors[name].dtype.numpy, rng)
                  for name in graph.inputs]
        want = litert_invoke(litert, inputs)
        got = ours.run(inputs).outputs
        for w, g in zip(want, got, strict=True):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", [OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D,
                                  OpKind.FULLY_CONNECTED], ids=lambda k: k.value)
def test_weighted_layers_are_bit_exact_against_litert(kind: OpKind, seed: int) -> None:
    _assert_litert_equal(_weighted(kind, seed))


@pytest.mark.parametrize("seed", range(8))
def test_add_and_mul_are_bit_exact_against_litert(seed: int) -> None:
    """Random scales (ADD's general path), activations and broadcast shapes."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"binary_{seed}", seed=seed)
    s1, s2 = (float(s) for s in rng.uniform(1e-4, 1e-2, 2))
    x = b.input((2, 3, 4), s1, 0, DType.INT16)
    y = b.input([(2, 3, 4), (3, 1), (4,), (2, 1, 4)][seed % 4], s2, 0, DType.INT16)
    activation = ACTIVATIONS[seed % 3]
    added = QuantParams.per_tensor(max(s1, s2) * float(rng.uniform(0.3, 3.0)), 0)
    product = QuantParams.per_tensor(s1 * s2 * float(rng.uniform(2e3, 4e4)), 0)
    graph = b.output(b.add(x, y, activation, added), b.mul(x, y, activation, product),
                     b.add(y, x)).build()
    _assert_litert_equal(graph)


@pytest.mark.parametrize("seed", range(6))
def test_pools_are_bit_exact_against_litert(seed: int) -> None:
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"pools_{seed}", seed=seed)
    x = b.input((int(rng.integers(1, 3)), int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3),
                float(rng.uniform(1e-4, 1e-2)), 0, DType.INT16)
    size, stride = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    padding = Padding.SAME if seed % 2 else Padding.VALID
    activation = ACTIVATIONS[seed % 3]
    graph = b.output(b.average_pool2d(x, size, stride, padding, activation),
                     b.max_pool2d(x, size, stride, padding, activation)).build()
    _assert_litert_equal(graph)


@pytest.mark.parametrize("seed", range(8))
def test_softmax_is_bit_exact_against_litert(seed: int) -> None:
    """Random depth, input scale and beta; LiteRT's exp and 1/(1+x) tables (gen_lut)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"softmax_{seed}", seed=seed)
    x = b.input((2, 3, int(rng.integers(1, 50))), float(rng.uniform(1e-4, 3e-3)), 0,
                DType.INT16)
    _assert_litert_equal(b.output(b.softmax(x, float(rng.uniform(0.3, 2.0)))).build(), runs=4)


@pytest.mark.parametrize("scale", [2.0 ** -12, 2.0 ** -11, 2.0 ** -13, 1e-4, 3.3e-4, 1e-3,
                                   2.5e-5, 7e-3])
def test_logistic_and_tanh_equal_litert_on_every_int16_input(scale: float) -> None:
    """Power-of-two scales (LiteRT's multiplier-free case) and general ones, all 65536 inputs."""
    b = GraphBuilder("sigmoids")
    x = b.input((1, 1 << 16), scale, 0, DType.INT16)
    graph = b.output(b.logistic(x), b.tanh(x)).build()
    every = np.arange(-(1 << 15), 1 << 15, dtype=np.int16).reshape(1, -1)
    want = litert_invoke(litert_interpreter(write_tflite(graph)), [every])
    for w, g in zip(want, Interpreter(graph).run([every]).outputs, strict=True):
        assert g.dtype == w.dtype == np.int16
        np.testing.assert_array_equal(g, w)


def test_int16_softmax_needs_litert_output_quantisation() -> None:
    b = GraphBuilder("softmax_range")
    x = b.input((1, 10), 1e-3, 0, DType.INT16)
    y = b.op(OpKind.SOFTMAX, [x], SoftmaxAttrs(), QuantParams.per_tensor(1.0 / 256.0, 0),
             DType.INT16)
    assert "int16 output scale 1/32768 and zero point 0" in _message(b.output(y).build())


@pytest.mark.parametrize("seed", range(8))
def test_mean_is_bit_exact_against_litert(seed: int) -> None:
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"mean_{seed}", seed=seed)
    scale = float(rng.uniform(1e-4, 1e-3))
    x = b.input((int(rng.integers(1, 3)), int(rng.integers(1, 9)), int(rng.integers(1, 9)), 6),
                scale, 0, DType.INT16)
    axes = [(1, 2), (1,), (3,), (1, 2, 3), (0, 2)][seed % 5]
    out = QuantParams.per_tensor(scale * float(rng.uniform(0.3, 2.0)), 0)
    _assert_litert_equal(b.output(b.mean(x, axes, bool(seed % 2), out)).build())


def test_add_on_power_of_two_scales_is_refused() -> None:
    b = GraphBuilder("pot")
    x = b.input((1, 4), 2.0 ** -10, 0, DType.INT16)
    y = b.add(x, x, quant=QuantParams.per_tensor(2.0 ** -9, 0))
    assert "(power-of-two scales found)" in _message(b.output(y).build())


@pytest.mark.parametrize("scale", [1e-4, 3.0517578125e-05, 0.01])
def test_quantize_dequantize_and_requantize_against_litert(scale: float) -> None:
    b = GraphBuilder("edges")
    x = b.input((3, 17), dtype=DType.FLOAT32)
    q = b.quantize(x, scale, 0, DType.INT16)
    finer = b.quantize(q, scale * 0.37, 0, DType.INT16)
    coarser = b.quantize(q, scale * 5.3, 0, DType.INT16)
    graph = b.output(b.dequantize(q), b.dequantize(finer), b.dequantize(coarser), q).build()
    litert = litert_interpreter(write_tflite(graph))
    ours = Interpreter(graph)
    rng = np.random.default_rng(7)
    for spread in (0.01, 1.0, 300.0):
        x = (rng.standard_normal((3, 17)) * spread).astype(np.float32)
        # Halves, and values past int16 whose quotient stays inside int32 (beyond it C's
        # conversion is undefined: LiteRT gets INT32_MIN on x86, mcuflow saturates).
        x[0, :5] = [0.5 * scale, -0.5 * scale, 1.5 * scale, 40000.5 * scale, -1e6 * scale]
        for w, g in zip(litert_invoke(litert, [x]), ours.run([x]).outputs, strict=True):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)


def test_int16_input_and_output_models_run_in_litert_and_mcuflow() -> None:
    b = GraphBuilder("int16_io", seed=3)
    x = b.input((1, 6, 6, 2), 2e-4, 0, DType.INT16)
    y = b.depthwise_conv2d(b.conv2d(x, 4, (3, 3), activation=Activation.RELU), (3, 3))
    _assert_litert_equal(b.output(b.fully_connected(b.reshape(y, (1, -1)), 3)).build())


def test_tflite_round_trip_keeps_int16_activations_and_int64_bias() -> None:
    graph = _weighted(OpKind.CONV_2D, 0)
    again = read_tflite(write_tflite(graph))
    conv = again.operators[0]
    assert again.tensors[conv.inputs[0]].dtype is DType.INT16
    assert again.tensors[conv.outputs[0]].dtype is DType.INT16
    assert again.tensors[conv.inputs[2]].dtype is DType.INT64
    np.testing.assert_array_equal(again.tensors[conv.inputs[2]].data,
                                  graph.tensors[graph.operators[0].inputs[2]].data)
    check_supported(again)


def _message(graph: Graph) -> str:
    with pytest.raises(UnsupportedModelError) as caught:
        check_supported(graph)
    return caught.value.message


def test_ops_without_int16_kernels_refuse_int16() -> None:
    b = GraphBuilder("sub16")
    x = b.input((1, 4), 1e-3, 0, DType.INT16)
    y = b.sub(x, x)
    message = _message(b.output(y).build())
    assert "supported by CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED" in message
    assert "(int16 activations found)" in message


def test_int16_needs_zero_point_0_and_int64_bias() -> None:
    b = GraphBuilder("shifted")
    x = b.input((1, 5, 5, 2), 1e-3, 3, DType.INT16)
    b.output(b.conv2d(x, 2, (3, 3)))
    assert "(int16 zero point 3 found)" in _message(b.build())
    b = GraphBuilder("narrow_bias")
    x = b.input((1, 5, 5, 2), 1e-3, 0, DType.INT16)
    y = b.conv2d(x, 2, (3, 3))
    graph = b.output(y).build()
    bias = graph.tensors[graph.operators[0].inputs[2]]
    graph.tensors[bias.name] = type(bias)(bias.name, bias.shape, DType.INT32, bias.quant,
                                          bias.data.astype(np.int32))
    assert "(int32 bias found)" in _message(graph)


def test_int8_and_int16_do_not_mix_outside_quantize() -> None:
    b = GraphBuilder("mixed")
    x = b.input((1, 8), 1e-3, 0, DType.INT16)
    weights = b.constant("w", np.ones((2, 8), np.int8), QuantParams.per_tensor(0.01, 0))
    y = b.op(OpKind.FULLY_CONNECTED, [x, weights], FullyConnectedAttrs(),
             QuantParams.per_tensor(0.01, 0))
    assert "(int8 and int16 activations found)" in _message(b.output(y).build())


@pytest.mark.parametrize(("source", "target"), [((0.05, 3), (1e-3, 0)), ((0.01, -128), (3e-5, 0)),
                                                ((1e-3, 0), (0.03, -5)), ((2e-5, 0), (0.5, 7))])
def test_requantisation_between_int8_and_int16_against_litert(
        source: tuple[float, int], target: tuple[float, int]) -> None:
    """QUANTIZE int8 -> int16 and int16 -> int8 (any zero point on the int8 side)."""
    b = GraphBuilder("requantize")
    wide = source[1] == 0 and target[1] != 0 or source[0] < 1e-3
    x = b.input((1, 4096), *source, DType.INT16 if wide else DType.INT8)
    y = b.quantize(x, *target, DType.INT8 if wide else DType.INT16)
    _assert_litert_equal(b.output(y).build())
