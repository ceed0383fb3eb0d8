"""Graphs the code-generation tests compile: every OpKind, in a few multi-output families.

One family costs one compiler run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import (
    ArgAttrs,
    MeanAttrs,
    NoAttrs,
    OpKind,
    ResizeNearestNeighborAttrs,
    SliceAttrs,
)
from mcuflow.ir.quantization import QuantParams

Family = Callable[[], Graph]
FAMILIES: dict[str, Family] = {}


def family(function: Family) -> Family:
    FAMILIES[function.__name__] = function
    return function


@family
def convolutions() -> Graph:
    b = GraphBuilder("convolutions", seed=11)
    x = b.input((1, 11, 9, 5), 0.04, 7)
    b.output(
        b.conv2d(x, 8, (3, 3), activation=Activation.RELU),
        b.conv2d(x, 6, (3, 3), stride=2, padding=Padding.VALID, per_channel=False),
        b.conv2d(x, 4, (5, 5), dilation=2, activation=Activation.RELU6, bias=False),
        b.conv2d(x, 7, (1, 3), activation=Activation.RELU_N1_TO_1),
        b.conv2d(x, 9, (1, 1)),
        b.conv2d(x, 5, (1, 1), stride=2, per_channel=False),
    )
    return b.build()


@family
def depthwise() -> Graph:
    b = GraphBuilder("depthwise", seed=12)
    x = b.input((1, 10, 12, 6), 0.03, -9)
    b.output(
        b.depthwise_conv2d(x, (3, 3), activation=Activation.RELU6),
        b.depthwise_conv2d(x, (3, 3), stride=2, padding=Padding.VALID, per_channel=False),
        b.depthwise_conv2d(x, (3, 3), dilation=2, bias=False),
        b.depthwise_conv2d(x, (5, 5), stride=2),
        b.depthwise_conv2d(x, (3, 3), depth_multiplier=2),
        b.depthwise_conv2d(x, (2, 4), depth_multiplier=3, activation=Activation.RELU),
    )
    return b.build()


@family
def mobilenet_block() -> Graph:
    """A chain the planner runs in place: overlapped convs, in-place depthwise, an alias."""
    b = GraphBuilder("mobilenet_block", seed=13)
    x = b.input((1, 16, 16, 3), 0.05, 3)
    y = b.conv2d(x, 8, (3, 3), stride=2, activation=Activation.RELU6)
    y = b.depthwise_conv2d(y, (3, 3), activation=Activation.RELU6)
    y = b.conv2d(y, 16, (1, 1))
    z = b.depthwise_conv2d(y, (3, 3), stride=2)
    z = b.conv2d(z, 16, (1, 1), activation=Activation.RELU)
    z = b.average_pool2d(z, 4, 4)
    z = b.reshape(z, (1, -1))
    z = b.fully_connected(z, 10)
    b.output(b.softmax(z))
    return b.build()


@family
def fully_connected() -> Graph:
    b = GraphBuilder("fully_connected", seed=14)
    x = b.input((3, 24), 0.02, 4)
    b.output(
        b.fully_connected(x, 7),
        b.fully_connected(x, 5, per_channel=True, activation=Activation.RELU),
        b.fully_connected(x, 4, bias=False, keep_num_dims=True),
        b.fully_connected(b.reshape(x, (1, 72)), 6, activation=Activation.RELU6),
    )
    return b.build()


@family
def pools_and_means() -> Graph:
    b = GraphBuilder("pools_and_means", seed=15)
    x = b.input((1, 9, 10, 4), 0.06, -5)
    b.output(
        b.average_pool2d(x, 2, 2),
        b.average_pool2d(x, 3, 1, Padding.SAME, activation=Activation.RELU),
        b.max_pool2d(x, 3, 2, Padding.SAME),
        b.max_pool2d(x, 2, 1, activation=Activation.RELU6),
        b.mean(x, (1, 2), keep_dims=True),
        b.mean(x, (3,), quant=QuantParams.per_tensor(0.03, 2)),
        b.mean(x, (0, 2), keep_dims=False),
    )
    return b.build()


@family
def elementwise() -> Graph:
    b = GraphBuilder("elementwise", seed=16)
    x = b.input((1, 5, 6, 4), 0.05, 2)
    y = b.input((1, 5, 6, 4), 0.03, -6)
    channel = b.constant_int8((1, 1, 1, 4), 0.02, 1)
    column = b.constant_int8((1, 5, 1, 1), 0.04, -3)
    scalar = b.constant_int8((1,), 0.1, 0)
    pooled = b.mean(x, (1, 2), keep_dims=True)
    b.output(
        b.add(x, y),
        b.add(x, channel, Activation.RELU),
        b.sub(column, x),
        b.sub(x, y, Activation.RELU6),
        b.mul(x, y),
        b.mul(x, scalar),
        b.mul(pooled, column, Activation.RELU_N1_TO_1),
        b.op(OpKind.MAXIMUM, [x, y], NoAttrs(), b.quant(x)),
        b.op(OpKind.MINIMUM, [column, x], NoAttrs(), b.quant(x)),
    )
    return b.build()


@family
def activations() -> Graph:
    b = GraphBuilder("activations", seed=17)
    x = b.input((2, 3, 40), 0.08, -3)
    b.output(
        b.relu(x),
        b.relu6(x, QuantParams.per_tensor(0.03, -100)),
        b.leaky_relu(x, 0.1),
        b.hard_swish(x),
        b.logistic(x),
        b.tanh(x),
        b.quantize(x, 0.05, 10),
        b.softmax(x),
        b.softmax(x, beta=0.5),
    )
    return b.build()


def _requantized_like(b: GraphBuilder, x: str, like: str) -> str:
    """`x` requantised to the scale and zero point of `like` (concatenation needs one)."""
    quant = b.quant(like)
    return b.quantize(x, quant.scale0, quant.zero_point0)


@family
def data_movement() -> Graph:
    b = GraphBuilder("data_movement", seed=18)
    x = b.input((1, 4, 6, 3), 0.05, -1)
    c1 = b.conv2d(x, 5, (1, 1))
    c2 = _requantized_like(b, b.conv2d(x, 2, (3, 3)), c1)
    b.output(
        b.pad(x, ((0, 0), (1, 2), (0, 3), (0, 0))),
        b.squeeze(b.reshape(x, (1, 72, 1))),
        b.concatenation([c1, c2], axis=3),
        b.concatenation([x, b.relu(x)], axis=1),
        *_slices(b, x, c1),
    )
    return b.build()


def _slices(b: GraphBuilder, x: str, c1: str) -> list[str]:
    """SLICEs of `x` [1, 4, 6, 3] and `c1` [1, 4, 6, 5], reshaped or not.

    Row copies (a spatial crop, one contiguous run, a cut channel under whole rows, an offset in
    dims of size 1) and mcuflow_slice_s8 (rank 3 and rank 5 after merging).
    """
    boxes = (
        (x, (1, 4, 6, 3), (0, 1, 2, 0), (1, 2, 3, 3)),
        (x, (1, 4, 6, 3), (0, 1, 0, 0), (1, 2, 6, 3)),
        (c1, (1, 4, 6, 5), (0, 1, 0, 1), (1, 3, 6, 3)),
        (c1, (1, 2, 2, 6, 5), (0, 1, 1, 0, 1), (1, 1, 1, 6, 3)),
        (c1, (1, 4, 6, 5), (0, 1, 1, 1), (1, 3, 4, 3)),
        (c1, (2, 2, 3, 2, 5), (0, 1, 1, 0, 1), (1, 1, 2, 1, 3)),
    )
    return [b.op(OpKind.SLICE, [b.reshape(source, shape)], SliceAttrs(begin, size),
                 b.quant(source)) for source, shape, begin, size in boxes]


@family
def residual_and_concat() -> Graph:
    """Branches the planner runs in place.

    An element-wise add over a dead input and a concatenation whose producers write straight
    into its slices.
    """
    b = GraphBuilder("residual_and_concat", seed=19)
    x = b.input((1, 8, 8, 4), 0.05, 0)
    y = b.conv2d(x, 4, (3, 3), activation=Activation.RELU)
    y = b.add(b.conv2d(y, 4, (3, 3)), y, Activation.RELU)
    left = b.conv2d(y, 4, (1, 1))
    right = _requantized_like(b, b.depthwise_conv2d(y, (3, 3)), left)
    b.output(b.relu(b.concatenation([left, right], axis=1)))
    return b.build()


@family
def float_edges() -> Graph:
    b = GraphBuilder("float_edges", seed=20)
    x = b.input((1, 6, 6, 2), dtype=DType.FLOAT32)
    q = b.quantize(x, 0.03, -4)
    y = b.conv2d(q, 3, (3, 3), activation=Activation.RELU)
    b.output(b.dequantize(y), b.dequantize(b.logistic(q)))
    return b.build()


@family
def reductions() -> Graph:
    """REDUCE_MAX / REDUCE_MIN over several axis sets; ARG_MAX / ARG_MIN to int32 outputs."""
    b = GraphBuilder("reductions", seed=21)
    x = b.input((1, 7, 6, 5), 0.05, -3)
    signal = b.reshape(x, (1, 42, 5))
    logits = b.fully_connected(b.reshape(x, (1, 210)), 10)

    def reduce(kind: OpKind, source: str, axes: tuple[int, ...], keep: bool) -> str:
        return b.op(kind, [source], MeanAttrs(axes, keep), b.quant(source))

    def arg(kind: OpKind, source: str, axis: int, dtype: DType = DType.INT32) -> str:
        return b.op(kind, [source], ArgAttrs(axis, dtype), None, dtype)

    b.output(
        reduce(OpKind.REDUCE_MAX, x, (1, 2), True),
        reduce(OpKind.REDUCE_MAX, signal, (1,), False),
        reduce(OpKind.REDUCE_MIN, x, (3,), False),
        reduce(OpKind.REDUCE_MIN, x, (0, 1, 2, 3), True),
        reduce(OpKind.REDUCE_MAX, x, (0, 2), False),
        arg(OpKind.ARG_MAX, logits, 1),
        arg(OpKind.ARG_MAX, x, 3),
        arg(OpKind.ARG_MIN, x, 1, DType.INT64),
        arg(OpKind.ARG_MIN, signal, 2),
        arg(OpKind.ARG_MAX, logits, 1, DType.INT64),
    )
    return b.build()


@family
def resizes() -> Graph:
    """RESIZE_NEAREST_NEIGHBOR up and down, each mode, one channel and several, two images."""
    b = GraphBuilder("resizes", seed=22)
    x = b.input((1, 5, 6, 3), 0.04, 2)
    pair = b.reshape(x, (2, 5, 3, 3))
    column = b.conv2d(x, 1, (1, 1))

    def resize(source: str, size: tuple[int, int], align: bool = False, half: bool = False
               ) -> str:
        return b.op(OpKind.RESIZE_NEAREST_NEIGHBOR, [source],
                    ResizeNearestNeighborAttrs(size, align, half), b.quant(source))

    b.output(
        resize(x, (10, 12)),
        resize(x, (7, 4), align=True),
        resize(x, (3, 9), half=True),
        resize(pair, (11, 5), half=True),
        resize(column, (15, 18)),
        resize(column, (2, 2), align=True),
    )
    return b.build()


@family
def int16x8() -> Graph:
    """LiteRT's int16x8 scheme.

    float32 -> int16, CONV_2D, DEPTHWISE_CONV_2D (multipliers, strides, dilation, activations),
    FULLY_CONNECTED (per-tensor, per-channel), RESHAPE, SQUEEZE, ADD (a residual), MUL
    (broadcast and not), AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, SOFTMAX, LOGISTIC, TANH,
    requantisation (int16 to int16, to int8 and back) and DEQUANTIZE; int16 and float32 outputs.
    """
    b = GraphBuilder("int16x8", seed=23)
    x = b.input((1, 9, 8, 3), dtype=DType.FLOAT32)
    q = b.quantize(x, 4.0 / 32768.0, 0, DType.INT16)
    c = b.conv2d(q, 6, (3, 3), activation=Activation.RELU)
    strided = b.conv2d(q, 4, (3, 2), stride=2, dilation=1, padding=Padding.VALID,
                       per_channel=False, bias=False)
    d = b.depthwise_conv2d(c, (3, 3), stride=2, activation=Activation.RELU6)
    m = b.depthwise_conv2d(strided, (2, 3), dilation=2, depth_multiplier=2, per_channel=False)
    flat = b.reshape(d, (1, -1))
    f = b.fully_connected(flat, 7)
    g = b.fully_connected(b.reshape(m, (2, -1)), 5, per_channel=True, bias=False,
                          activation=Activation.RELU)
    residual = b.add(c, b.conv2d(c, 6, (1, 1)), Activation.RELU)
    gate = b.reshape(b.fully_connected(flat, 6), (1, 1, 1, 6))
    b.output(b.dequantize(f), b.dequantize(b.quantize(g, 0.75 * b.quant(g).scale0, 0,
                                                      DType.INT16)),
             b.dequantize(residual), b.mul(d, gate), b.mul(residual, c, Activation.RELU6),
             b.average_pool2d(residual, 3, 2, Padding.SAME, Activation.RELU6),
             b.max_pool2d(d, 2, 1, Padding.SAME), b.softmax(f, 0.7),
             b.softmax(b.reshape(residual, (1, 72, 6))), b.logistic(q), b.tanh(d),
             b.quantize(b.quantize(c, 0.05, -7), 3e-4, 0, DType.INT16),
             b.mean(residual), b.mean(d, (3,), True), b.mean(q, (1, 2, 3)),
             b.fully_connected(b.squeeze(b.mean(d, (1, 2), True), (1, 2)), 3))
    return b.build()


def special_float_inputs(shape: tuple[int, ...]) -> np.ndarray:
    """Floats that stress QUANTIZE: NaN, infinities, halves, values far outside int8."""
    values = np.array([np.nan, np.inf, -np.inf, 0.5, -0.5, 1e9, -1e9, 0.015, -0.045, 3.8],
                      dtype=np.float32)
    return np.resize(values, shape).astype(np.float32)
