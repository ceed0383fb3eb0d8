"""Reference kernels part A (conv, depthwise, FC, pools, MEAN, PAD, reshapes, concat, SLICE)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from mcuflow.errors import McuflowError, UnsupportedModelError
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType, Graph, Tensor
from mcuflow.ir.ops import FullyConnectedAttrs, OpKind, Pool2DAttrs, SliceAttrs
from mcuflow.ir.quantization import QuantParams
from mcuflow.quant import fixedpoint
from mcuflow.ref.common import Accumulators
from mcuflow.ref.conv2d import ConvParams, conv_requantizer
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.fully_connected import prepare_fully_connected
from mcuflow.ref.interpreter import Interpreter, run
from mcuflow.ref.mean import fold_count
from mcuflow.ref.registry import KERNELS, PREPARERS
from tests.support import litert_interpreter, litert_invoke, random_input

SEEDS = (0, 1, 2)
ACTIVATIONS = list(Activation)
PART_A = (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED,
          OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D, OpKind.MEAN, OpKind.PAD, OpKind.RESHAPE,
          OpKind.SQUEEZE, OpKind.CONCATENATION, OpKind.SLICE)


def _inputs(graph: Graph, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [random_input(graph.tensor(n).shape, graph.tensor(n).dtype.numpy, rng)
            for n in graph.inputs]


def assert_matches_litert(graph: Graph, seeds: tuple[int, ...] = SEEDS) -> None:
    """Our interpreter equals LiteRT's reference kernels to the bit, and the outputs vary."""
    oracle = litert_interpreter(write_tflite(graph))
    ours = Interpreter(graph)
    seen: list[set[int]] = [set() for _ in graph.outputs]
    for seed in seeds:
        inputs = _inputs(graph, seed)
        expected = litert_invoke(oracle, inputs)
        actual = ours.run(inputs).outputs
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert (got.dtype, got.shape) == (want.dtype, want.shape)
            wrong = np.flatnonzero(got != want)
            assert wrong.size == 0, (
                f"seed {seed}: {wrong.size}/{got.size} differ, e.g. ours "
                f"{got.ravel()[wrong[:5]]} LiteRT {want.ravel()[wrong[:5]]}")
            seen[index].update(np.unique(want).tolist())
    assert all(len(values) > 1 for values in seen), "degenerate test: constant outputs"


def _builder(seed: int, shape: tuple[int, ...], zero_points: int = 100
             ) -> tuple[GraphBuilder, str]:
    """A builder with one int8 input of random scale and zero point in +-zero_points."""
    builder = GraphBuilder(seed=seed)
    zero_point = int(builder.rng.integers(-zero_points, zero_points + 1))
    return builder, builder.input(shape, float(builder.rng.uniform(0.01, 0.1)), zero_point)


def _narrow(builder: GraphBuilder, name: str, activation: Activation) -> str:
    """Give a RELU_N1_TO_1 output a scale at which [-1, 1] spans many levels."""
    if activation is Activation.RELU_N1_TO_1:
        builder.graph.tensors[name].quant = QuantParams.per_tensor(1 / 60, 3)
    return name


# --- CONV_2D --------------------------------------------------------------------------------

@pytest.mark.parametrize(("stride", "dilation", "padding", "per_channel", "bias"),
                         list(itertools.product((1, 2, 3), (1, 2), list(Padding),
                                                (True, False), (True, False))))
def test_conv2d_sweep(stride: int, dilation: int, padding: Padding, per_channel: bool,
                      bias: bool) -> None:
    seed = stride * 100 + dilation * 10 + per_channel * 2 + bias
    builder, x = _builder(seed, (1, 13, 11, 3))
    kernel = ((3, 3), (2, 4), (1, 1), (5, 3))[seed % 4]
    activation = ACTIVATIONS[seed % len(ACTIVATIONS)]
    y = _narrow(builder, builder.conv2d(x, 5, kernel, stride, dilation, padding, activation,
                                        per_channel, bias), activation)
    assert_matches_litert(builder.output(y).build())


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("per_channel", [True, False])
def test_conv2d_activations_batch_and_depth(activation: Activation, per_channel: bool) -> None:
    builder, x = _builder(7, (2, 7, 9, 24))
    y = _narrow(builder, builder.conv2d(x, 17, (3, 3), 1, 1, Padding.SAME, activation,
                                        per_channel), activation)
    assert_matches_litert(builder.output(y).build())


def test_conv2d_pointwise_and_deep() -> None:
    builder, x = _builder(3, (1, 6, 5, 200))
    y = builder.conv2d(x, 33, (1, 1), padding=Padding.VALID)
    z = builder.conv2d(y, 9, (3, 3), stride=2)
    assert_matches_litert(builder.output(y, z).build())


@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_multiplier_above_one(depthwise: bool) -> None:
    """Output scale below input * weight scale: positive shifts, i.e. the left-shift path."""
    builder, x = _builder(21, (1, 9, 8, 4), zero_points=3)
    y = (builder.depthwise_conv2d(x, (2, 2), per_channel=False) if depthwise
         else builder.conv2d(x, 6, (1, 1), per_channel=False))
    weights = builder.quant(builder.graph.operators[-1].inputs[1]).scale0
    builder.graph.tensors[y].quant = QuantParams.per_tensor(
        builder.quant(x).scale0 * weights / 3.7, 2)
    assert_matches_litert(builder.output(y).build())


# --- DEPTHWISE_CONV_2D ----------------------------------------------------------------------

@pytest.mark.parametrize(("stride", "dilation", "padding", "multiplier"),
                         list(itertools.product((1, 2, 3), (1, 2), list(Padding), (1, 2, 3))))
def test_depthwise_sweep(stride: int, dilation: int, padding: Padding, multiplier: int) -> None:
    seed = stride * 100 + dilation * 10 + multiplier
    builder, x = _builder(seed, (1, 12, 9, 3))
    kernel = ((3, 3), (5, 2), (1, 3))[seed % 3]
    activation = ACTIVATIONS[seed % 4]
    y = _narrow(builder, builder.depthwise_conv2d(
        x, kernel, stride, dilation, multiplier, padding, activation, per_channel=seed % 2 == 0,
        bias=seed % 5 != 0), activation)
    assert_matches_litert(builder.output(y).build())


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("per_channel", "bias"), [(True, True), (False, True), (True, False)])
def test_depthwise_activations_and_large_outputs(activation: Activation, per_channel: bool,
                                                 bias: bool) -> None:
    builder, x = _builder(11, (1, 40, 31, 8))  # > 8192 outputs: the per-tap loop path
    y = _narrow(builder, builder.depthwise_conv2d(x, (3, 3), 1, 1, 2, Padding.SAME, activation,
                                                  per_channel, bias), activation)
    assert_matches_litert(builder.output(y).build(), seeds=(0,))


# --- FULLY_CONNECTED ------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("per_channel", "bias"), list(itertools.product((True, False),
                                                                        (True, False))))
@pytest.mark.parametrize(("shape", "keep_num_dims"), [((1, 37), False), ((3, 5, 19), False),
                                                      ((3, 5, 19), True), ((2, 1, 1, 64), True)])
def test_fully_connected(activation: Activation, per_channel: bool, bias: bool,
                         shape: tuple[int, ...], keep_num_dims: bool) -> None:
    builder, x = _builder(len(shape) * 10 + per_channel * 2 + bias, shape)
    y = _narrow(builder, builder.fully_connected(x, 23, activation, per_channel, bias,
                                                 keep_num_dims), activation)
    if bias and not per_channel:  # a per-tensor bias scale, as LiteRT's FC Prepare checks it
        op = builder.graph.operators[-1]
        scale = builder.quant(x).scale0 * builder.quant(op.inputs[1]).scale0
        builder.graph.tensors[op.inputs[2]].quant = QuantParams.per_tensor(scale, 0)
    assert_matches_litert(builder.output(y).build())


def test_fully_connected_deep_uses_double_rounding() -> None:
    """Deep enough that fixed-point (TFLM) and double (LiteRT) requantisation would differ."""
    builder, x = _builder(5, (16, 900))
    y = builder.fully_connected(x, 64, per_channel=True)
    z = builder.fully_connected(y, 48, per_channel=False)
    assert_matches_litert(builder.output(z).build())


def test_fully_connected_flattens_rows_across_axes() -> None:
    """Rows of depth 32 cut across the input's axes (4, 4, 16) without keep_num_dims."""
    builder, x = _builder(9, (4, 4, 16))
    weights = builder.rng.integers(-127, 128, size=(11, 32), dtype=np.int8)
    w = builder.constant("weights", weights, QuantParams.per_tensor(0.004, 0))
    quant = QuantParams.per_tensor(builder.quant(x).scale0 * 0.004 * 73 * 6, 4)
    y = builder.op(OpKind.FULLY_CONNECTED, [x, w], FullyConnectedAttrs(), quant)
    assert builder.graph.tensor(y).shape == (8, 11)
    assert_matches_litert(builder.output(y).build())


# --- pools ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D])
@pytest.mark.parametrize(("filter_hw", "stride_hw"), [((1, 1), (1, 1)), ((2, 2), (2, 2)),
                                                      ((3, 3), (1, 1)), ((3, 3), (2, 2)),
                                                      ((2, 3), (3, 1)), ((5, 4), (3, 3))])
@pytest.mark.parametrize("padding", list(Padding))
def test_pools(kind: OpKind, filter_hw: tuple[int, int], stride_hw: tuple[int, int],
               padding: Padding) -> None:
    seed = filter_hw[0] * 10 + stride_hw[1]
    builder, x = _builder(seed, (2, 11, 9, 6), zero_points=10)
    attrs = Pool2DAttrs(*filter_hw, *stride_hw, padding, ACTIVATIONS[seed % 4])
    y = builder.op(kind, [x], attrs, builder.quant(x))
    assert_matches_litert(builder.output(y).build())


def test_global_average_pool_rounds_half_away_from_zero() -> None:
    builder = GraphBuilder(seed=0)
    x = builder.input((1, 2, 2, 4), 0.1, 0)
    y = builder.average_pool2d(x, size=2, stride=2)
    graph = builder.output(y).build()
    sums = np.array([2, -2, 6, -6])  # means 0.5, -0.5, 1.5, -1.5
    data = np.zeros((1, 2, 2, 4), np.int8)
    data[0, 0, 0] = sums
    expected = litert_invoke(litert_interpreter(write_tflite(graph)), [data])[0]
    np.testing.assert_array_equal(expected.ravel(), [1, -1, 2, -2])
    np.testing.assert_array_equal(run(graph, [data]).outputs[0], expected)


# --- MEAN -----------------------------------------------------------------------------------

@pytest.mark.parametrize("axes", [(1, 2), (2, 1), (1,), (3,), (0,), (1, 2, 3), (-1,), (-2, -3),
                                  (0, 1, 2, 3)])
@pytest.mark.parametrize("keep_dims", [True, False])
@pytest.mark.parametrize("requantise", [False, True])
def test_mean(axes: tuple[int, ...], keep_dims: bool, requantise: bool) -> None:
    builder, x = _builder(len(axes) + 10 * keep_dims, (2, 7, 5, 6), zero_points=20)
    scale, zero_point = builder.quant(x).scale0, builder.quant(x).zero_point0
    quant = QuantParams.per_tensor(scale * 0.37, 2 * zero_point) if requantise else None
    y = builder.mean(x, axes, keep_dims, quant)
    assert_matches_litert(builder.output(y).build())


def test_fold_count_matches_reduce_h() -> None:
    """QuantizedMeanOrSum: shift = min(floor(log2 n), 32, 31 + shift), multiplier << shift // n."""
    ratio = fixedpoint.QuantizedMultiplier(1 << 30, -3)
    assert fold_count(ratio, 1) == ratio
    assert fold_count(ratio, 49) == fixedpoint.QuantizedMultiplier(
        ((1 << 30) << 5) // 49, -8)
    assert fold_count(fixedpoint.QuantizedMultiplier(1 << 30, -29), 1000) == (
        fixedpoint.QuantizedMultiplier(((1 << 30) << 2) // 1000, -31))


# --- PAD, RESHAPE, SQUEEZE, CONCATENATION ---------------------------------------------------

@pytest.mark.parametrize(("shape", "paddings"), [
    ((1, 5, 4, 3), ((0, 0), (1, 1), (2, 0), (0, 0))),
    ((1, 5, 4, 3), ((0, 0), (0, 3), (1, 2), (1, 1))),
    ((2, 3, 7), ((1, 0), (0, 2), (3, 3))),
    ((6, 9), ((2, 1), (0, 4))),
])
def test_pad_uses_the_zero_point(shape: tuple[int, ...],
                                 paddings: tuple[tuple[int, int], ...]) -> None:
    builder, x = _builder(len(shape), shape)
    y = builder.pad(x, paddings)
    graph = builder.output(y).build()
    assert_matches_litert(graph)
    out = run(graph, _inputs(graph, 0)).outputs[0]
    border = np.ones(out.shape, bool)
    border[tuple(slice(before, before + d) for d, (before, _) in zip(shape, paddings,
                                                                      strict=True))] = False
    assert border.any() and np.all(out[border] == builder.quant(x).zero_point0)


def test_reshape_and_squeeze() -> None:
    builder, x = _builder(1, (1, 3, 1, 8))
    y = builder.squeeze(x)
    z = builder.squeeze(x, (2,))
    w = builder.reshape(z, (4, -1))
    v = builder.conv2d(builder.reshape(y, (1, 4, 6, 1)), 3, (2, 2))
    assert_matches_litert(builder.output(y, z, w, v).build())


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1])
@pytest.mark.parametrize("count", [2, 3, 4])
def test_concatenation(axis: int, count: int) -> None:
    builder = GraphBuilder(seed=count)
    names = []
    for index in range(count):
        shape = [2, 3, 4, 5]
        shape[axis] += index
        names.append(builder.input(tuple(shape), 0.05, 9))
    y = builder.concatenation(names, axis)
    assert_matches_litert(builder.output(y).build())


def test_concatenation_rejects_mixed_quantisation_like_litert() -> None:
    builder = GraphBuilder(seed=0)
    a, b = builder.input((1, 4, 4, 2), 0.05, 1), builder.input((1, 4, 4, 3), 0.07, 1)
    graph = builder.output(builder.concatenation([a, b])).build()
    with pytest.raises((RuntimeError, ValueError)):
        litert_interpreter(write_tflite(graph))
    with pytest.raises(UnsupportedModelError, match="share the output's scale and zero point"):
        Interpreter(graph)


SLICES = [
    ((1, 5, 4, 3), (0, 1, 2, 0), (1, 3, 2, 3)),
    ((1, 5, 4, 3), (0, 0, 0, 1), (1, 5, 4, 2)),
    ((1, 5, 4, 3), (0, 4, 3, 2), (1, 1, 1, 1)),
    ((2, 3, 7), (1, 0, 2), (1, 3, 4)),
    ((6, 9), (2, 0), (3, 9)),
    ((2, 2, 3, 2, 5), (0, 1, 1, 0, 1), (1, 1, 2, 1, 3)),
    ((7,), (3,), (4,)),
]


@pytest.mark.parametrize(("shape", "begin", "size"), SLICES, ids=str)
def test_slice(shape: tuple[int, ...], begin: tuple[int, ...], size: tuple[int, ...]) -> None:
    builder, x = _builder(len(shape), shape)
    y = builder.op(OpKind.SLICE, [x], SliceAttrs(begin, size), builder.quant(x))
    graph = builder.output(y).build()
    assert_matches_litert(graph, SEEDS if math.prod(size) > 1 else tuple(range(8)))


@pytest.mark.parametrize(("shape", "begin", "size"), SLICES, ids=str)
def test_float_slice(shape: tuple[int, ...], begin: tuple[int, ...], size: tuple[int, ...]
                     ) -> None:
    builder = GraphBuilder(seed=len(shape))
    x = builder.input(shape, dtype=DType.FLOAT32)
    y = builder.op(OpKind.SLICE, [x], SliceAttrs(begin, size), None, DType.FLOAT32)
    graph = builder.output(y).build()
    inputs = [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]
    np.testing.assert_array_equal(run_float(graph, inputs).outputs[0],
                                  litert_invoke(write_tflite(graph), inputs)[0])


def test_slice_refuses_a_change_of_quantisation() -> None:
    builder, x = _builder(0, (1, 4, 4, 2))
    y = builder.op(OpKind.SLICE, [x], SliceAttrs((0, 1, 1, 0), (1, 2, 2, 2)),
                   QuantParams.per_tensor(0.5, 0))
    with pytest.raises(UnsupportedModelError, match="share scale and zero point"):
        Interpreter(builder.output(y).build())


# --- the shared requantisation and rounding machinery ---------------------------------------

def test_requantizer_equals_multiply_by_quantized_multiplier_on_every_accumulator() -> None:
    """Bucket tables reproduce the direct fixed-point chain on every reachable accumulator."""
    rng = np.random.default_rng(0)
    weights = rng.integers(-6, 7, size=(6, 10)).astype(np.int64)
    bias = rng.integers(-500, 500, size=6)
    facts = Accumulators.of(weights, bias, input_offset=17)
    positive, negative = np.where(weights > 0, weights, 0), np.where(weights < 0, weights, 0)
    lowest = (positive * -128 + negative * 127).sum(axis=1)
    highest = (positive * 127 + negative * -128).sum(axis=1)
    span = np.arange(lowest.min(), highest.max() + 1, dtype=np.int64)[:, None]
    raw = np.clip(span, lowest, highest)  # every sum(w * x) an int8 input can produce
    params = ConvParams(
        input_offset=17, output_offset=-5,
        multipliers=tuple(int(m) for m in rng.integers(1 << 30, 1 << 31, size=6)),
        shifts=(-9, -6, -3, 0, 1, -12), act_min=-128, act_max=127, pad_h=0, pad_w=0)
    requantizer = conv_requantizer("test", params, facts, raw.shape)
    true = raw + facts.offsets
    direct = fixedpoint.multiply_by_quantized_multiplier_array(
        true, np.array(params.multipliers), np.array(params.shifts)) + params.output_offset
    expected = np.clip(direct, -128, 127)
    np.testing.assert_array_equal(requantizer(raw.astype(np.float32)), expected)
    assert len(np.unique(expected)) > 200


def test_scale_and_round_is_c_round_on_every_double() -> None:
    halfway = [k + 0.5 for k in range(-6, 6)]
    nearby = [np.nextafter(v, d) for v in halfway for d in (-np.inf, np.inf)]
    special = [0.49999999999999994, -0.49999999999999994, 0.5, -0.5, 2.0**52 + 1, -(2.0**53),
               1.5 - 2.0**-52, 2.5, -2.5, 0.0]
    values = np.array(halfway + nearby + special
                      + np.random.default_rng(0).normal(0, 300, 2000).tolist())
    got = fixedpoint.scale_and_round_array(values, 1.0)
    expected = []
    for value in values.tolist():
        exact = Fraction(value)
        whole = abs(exact.numerator) // exact.denominator + (
            1 if abs(exact) - abs(exact.numerator) // exact.denominator >= Fraction(1, 2) else 0)
        expected.append(whole if exact >= 0 else -whole)
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float64))


def test_fully_connected_scales_are_double_products() -> None:
    x = Tensor("x", (1, 4), DType.INT8, QuantParams.per_tensor(0.0123, 3))
    w = Tensor("w", (2, 4), DType.INT8, QuantParams.per_tensor(0.0071, 0),
               np.zeros((2, 4), np.int8))
    out = Tensor("y", (1, 2), DType.INT8, QuantParams.per_tensor(0.09, -1))
    params = prepare_fully_connected(x, w, out, FullyConnectedAttrs())
    double = float(np.float32(0.0123)) * float(np.float32(0.0071)) / float(np.float32(0.09))
    assert double != float(np.float32(np.float32(0.0123) * np.float32(0.0071))) / float(
        np.float32(0.09))
    assert params.scales == (double, double)
    assert (params.input_offset, params.output_offset, params.weights_offset) == (-3, -1, 0)


# --- the interpreter ------------------------------------------------------------------------

def _two_branch_graph() -> Graph:
    builder, x = _builder(4, (1, 8, 8, 4))
    a = builder.conv2d(x, 6, (3, 3))
    b = builder.max_pool2d(x)
    c = builder.conv2d(b, 6, (1, 1))
    d = builder.average_pool2d(a)
    return builder.output(d, c).build()


def test_every_part_a_op_has_a_prepared_kernel() -> None:
    assert [kind for kind in PART_A if kind not in PREPARERS or kind not in KERNELS] == []


def test_run_orders_inputs_and_keeps_intermediates() -> None:
    graph = _two_branch_graph()
    inputs = _inputs(graph, 0)
    plain = run(graph, inputs)
    by_name = run(graph, dict(zip(graph.inputs, inputs, strict=True)), keep_intermediates=True)
    for want, got in zip(plain.outputs, by_name.outputs, strict=True):
        np.testing.assert_array_equal(want, got)
    assert set(by_name.tensors) == set(graph.tensors)
    assert plain.tensors == {}
    np.testing.assert_array_equal(by_name.tensors[graph.outputs[1]], plain.outputs[1])


def test_run_follows_an_explicit_order() -> None:
    graph = _two_branch_graph()
    inputs = _inputs(graph, 1)
    reordered = run(graph, inputs, order=[1, 2, 0, 3])
    for want, got in zip(run(graph, inputs).outputs, reordered.outputs, strict=True):
        np.testing.assert_array_equal(want, got)
    with pytest.raises(McuflowError, match="before they are produced"):
        run(graph, inputs, order=[3, 0, 1, 2])
    with pytest.raises(McuflowError, match="not a permutation"):
        run(graph, inputs, order=[0, 1, 2])


@pytest.mark.parametrize(("bad", "message"), [
    ([np.zeros((1, 8, 8, 4), np.float32)], "float32"),
    ([np.zeros((1, 8, 8, 3), np.int8)], r"shape \(1, 8, 8, 3\)"),
    ([], "0 inputs given"),
    ({"nope": np.zeros((1, 8, 8, 4), np.int8)}, "do not match"),
    ([[0] * 4], "is list"),
])
def test_run_rejects_bad_inputs(bad: object, message: str) -> None:
    with pytest.raises(McuflowError, match=message):
        run(_two_branch_graph(), bad)


def test_unsupported_types_are_reported() -> None:
    builder = GraphBuilder(seed=0)
    x = builder.input((1, 4, 4, 2), dtype=DType.FLOAT32)
    builder.graph.tensors[x].quant = QuantParams.per_tensor(0.1, 0)
    y = builder.max_pool2d(x)
    with pytest.raises(UnsupportedModelError, match="must be int8.*float32 input found"):
        Interpreter(builder.output(y).build())
