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
    BlockAttrs,
    BroadcastToAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    GatherAttrs,
    LstmAttrs,
    MeanAttrs,
    NoAttrs,
    OpKind,
    PackAttrs,
    ResizeBilinearAttrs,
    ResizeNearestNeighborAttrs,
    ReverseAttrs,
    SliceAttrs,
    SplitAttrs,
    StridedSliceAttrs,
    TileAttrs,
    TransposeAttrs,
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
        _conv1d_as_converted(b, x),
        b.concatenation([c1, c2], axis=3),
        b.concatenation([x, b.relu(x)], axis=1),
        *_slices(b, x, c1),
    )
    return b.build()


def _conv1d_as_converted(b: GraphBuilder, x: str) -> str:
    """A Conv1D as TensorFlow's converter writes it: EXPAND_DIMS, CONV_2D, SQUEEZE."""
    signal = b.reshape(x, (1, 24, 3))
    image = b.expand_dims(signal, 1)
    return b.squeeze(b.conv2d(image, 4, (1, 3), dilation=2), (1,))


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
def transpose_convs() -> Graph:
    """TRANSPOSE_CONV: strides 1 to 3, SAME, VALID, per-tensor and per-channel, bias or none.

    Also fused activations, non-square filters, output sizes other than stride x input, and
    two images; the 13-channel input takes the DSP kernel on cores with the DSP extension.
    """
    b = GraphBuilder("transpose_convs", seed=23)
    x = b.input((1, 5, 4, 6), 0.04, -5)
    pair = b.reshape(x, (2, 5, 2, 6))
    deep = b.input((1, 3, 4, 13), 0.03, 9)
    b.output(
        b.transpose_conv(deep, 5, (3, 3), 2, Padding.SAME, Activation.RELU),
        b.transpose_conv(deep, 8, (4, 4), 2, Padding.VALID, per_channel=False, bias=False,
                         output_hw=(9, 11)),
        b.transpose_conv(b.reshape(deep, (2, 3, 2, 13)), 3, (2, 3), 3, Padding.SAME),
    )
    b.output(
        b.transpose_conv(x, 7, (3, 3), 2, Padding.SAME, Activation.RELU),
        b.transpose_conv(x, 5, (2, 2), 2, Padding.VALID, per_channel=False),
        b.transpose_conv(x, 4, (3, 3), 1, Padding.SAME, Activation.RELU6, bias=False),
        b.transpose_conv(x, 6, (4, 3), 2, Padding.VALID, output_hw=(12, 9)),
        b.transpose_conv(x, 3, (3, 3), 2, Padding.SAME, per_channel=False, bias=False,
                         output_hw=(9, 7)),
        b.transpose_conv(pair, 8, (5, 5), 3, Padding.SAME, Activation.RELU_N1_TO_1),
        b.transpose_conv(x, 2, (1, 1), 1, Padding.VALID),
    )
    return b.build()


@family
def transpose_convs_phased() -> Graph:
    """TRANSPOSE_CONV phase by phase on DSP cores: every column gather of the DSP CONV_2D.

    Inputs of 16 channels (whole words, 1x1 phases by window rows), 3 (a zero channel added),
    2 under 4-wide filters (window rows) and 5 (value by value); odd output channels, two
    images, output sizes past stride x input, strides 1 to 3, fused activations; and filters
    shorter than their stride (phases no tap reaches), which the gathering kernels run.
    """
    b = GraphBuilder("transpose_convs_phased", seed=29)
    words = b.input((1, 4, 5, 16), 0.03, -7)
    padded = b.input((2, 3, 4, 3), 0.05, 4)
    pairs = b.input((1, 5, 3, 2), 0.04, 0)
    values = b.input((1, 4, 4, 5), 0.05, -2)
    b.output(
        b.transpose_conv(words, 7, (3, 3), 2, Padding.SAME),
        b.transpose_conv(words, 8, (3, 3), 2, Padding.VALID, Activation.RELU6,
                         output_hw=(9, 11)),
        b.transpose_conv(words, 5, (1, 1), 2, Padding.VALID, output_hw=(7, 9)),
        b.transpose_conv(padded, 6, (3, 3), 2, Padding.SAME, per_channel=False),
        b.transpose_conv(padded, 3, (4, 4), 3, Padding.SAME, Activation.RELU),
    )
    b.output(
        b.transpose_conv(pairs, 5, (4, 4), 2, Padding.SAME, bias=False),
        b.transpose_conv(pairs, 4, (2, 2), 3, Padding.VALID, output_hw=(14, 8)),
        b.transpose_conv(values, 9, (3, 2), 1, Padding.SAME),
        b.transpose_conv(values, 1, (5, 5), 2, Padding.SAME, Activation.RELU_N1_TO_1),
    )
    return b.build()

@family
def batch_space() -> Graph:
    """SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND: 4-D and 3-D, padded and cropped, two images.

    Also the dilated convolutions TensorFlow writes with them (unfolded: no pass runs here).
    """
    b = GraphBuilder("batch_space", seed=23)
    x = b.input((1, 7, 6, 3), 0.05, 5)
    pair = b.reshape(x, (2, 7, 3, 3))
    signal = b.reshape(x, (1, 21, 6))
    s2b = b.space_to_batch(x, (2, 3), ((1, 0), (2, 1)))
    conv = b.conv2d(b.space_to_batch(x, (2, 2), ((2, 3), (2, 2))), 4, (3, 3),
                    padding=Padding.VALID)
    dw = b.depthwise_conv2d(b.space_to_batch(x, (2, 2), ((2, 1), (2, 2))), (3, 3),
                            padding=Padding.VALID, activation=Activation.RELU)
    b.output(
        s2b,
        b.batch_to_space(s2b, (2, 3), ((0, 1), (1, 2))),
        b.space_to_batch(pair, (3, 1), ((1, 1), (0, 0))),
        b.batch_to_space(b.space_to_batch(signal, (4,), ((2, 1),)), (4,), ((1, 2),)),
        b.batch_to_space(conv, (2, 2), ((0, 1), (0, 0))),
        b.batch_to_space(dw, (2, 2), ((0, 0), (0, 0))),
    )
    return b.build()


@family
def shuffles() -> Graph:
    """Data movement: STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK, PACK, TRANSPOSE and GATHER.

    Strided slices with steps, masks, shrunk axes, negative strides and a plain box; the outputs
    of several multi-output ops; packs along a new inner and outer axis; permutations; gathers.
    """
    b = GraphBuilder("shuffles", seed=23)
    x = b.input((1, 5, 6, 4), 0.05, -2)
    y = b.conv2d(x, 3, (1, 1))
    q = b.quant(x)

    def strided(source: str, begin: tuple[int, ...], end: tuple[int, ...],
                strides: tuple[int, ...], *masks: int) -> str:
        return b.op(OpKind.STRIDED_SLICE, [source],
                    StridedSliceAttrs(begin, end, strides, *masks), b.quant(source))

    halves = b.op_outputs(OpKind.SPLIT, [x], SplitAttrs(3, (2, 2)), q)
    rows = b.op_outputs(OpKind.SPLIT_V, [x], SplitAttrs(1, (1, 3, 1)), q)
    columns = b.op_outputs(OpKind.UNPACK, [b.reshape(x, (5, 6, 4))], PackAttrs(1, 6), q)
    lines = b.op_outputs(OpKind.UNPACK, [b.reshape(b.relu(x), (5, 24))], PackAttrs(0, 5), q)
    b.output(
        strided(x, (0, 1, 0, 0), (1, 5, 6, 4), (1, 2, 2, 1)),
        strided(x, (0, -1, 5, 3), (1, 0, 0, 0), (1, -1, -2, -1), 0b0001, 0b0001),
        strided(x, (0, 2, 1, 1), (1, 3, 5, 3), (1, 1, 1, 1), 0, 0, 0b0011),
        strided(y, (0, 0, 0, 1), (0, 0, 0, 0), (1, 1, 3, 1), 0b0111, 0b0111, 0b1000),
        strided(b.relu(x), (0, 2, 0, 0), (1, -1, 6, 4), (1, 1, 1, 1)),
        *halves, rows[1], *columns[::3], lines[1], b.relu(lines[4]),
        b.op(OpKind.PACK, [rows[0], rows[2], rows[0]], PackAttrs(2, 3), q),
        b.op(OpKind.PACK, [halves[0], halves[1]], PackAttrs(0, 2), q),
        b.op(OpKind.TRANSPOSE, [x], TransposeAttrs((0, 3, 1, 2)), q),
        b.op(OpKind.TRANSPOSE, [b.reshape(x, (2, 3, 5, 4))], TransposeAttrs((2, 0, 3, 1)), q),
        b.op(OpKind.GATHER, [x], GatherAttrs(3, (3, 0, 0, 2, 1, 3), (2, 3)), q),
        b.op(OpKind.GATHER, [b.reshape(x, (30, 4))], GatherAttrs(0, (29, 0, 7), (3,)), q),
        b.op(OpKind.REVERSE_V2, [x], ReverseAttrs((1,)), q),
        b.op(OpKind.REVERSE_V2, [b.relu(x)], ReverseAttrs((1, 2, 3)), q),
        b.op(OpKind.REVERSE_V2, [b.reshape(x, (30, 4))], ReverseAttrs((1,)), q),
        *_rank5_shuffles(b, b.reshape(x, (2, 3, 5, 2, 2))),
        b.op(OpKind.GATHER, [b.constant("table", np.arange(-64, 64, 4, dtype=np.int8).reshape(
            8, 4), q)], GatherAttrs(0, (6, 1, 6), (3,)), q),
    )
    return b.build()


@family
def bilinear_resizes() -> Graph:
    """RESIZE_BILINEAR up and down, each mode, one channel and several, two images."""
    b = GraphBuilder("bilinear_resizes", seed=31)
    x = b.input((1, 5, 6, 3), 0.04, 2)
    pair = b.reshape(x, (2, 5, 3, 3))
    column = b.conv2d(x, 1, (1, 1))

    def resize(source: str, size: tuple[int, int], align: bool = False, half: bool = False
               ) -> str:
        return b.op(OpKind.RESIZE_BILINEAR, [source], ResizeBilinearAttrs(size, align, half),
                    b.quant(source))

    b.output(
        resize(x, (10, 12)),
        resize(x, (7, 4), align=True),
        resize(x, (9, 13), half=True),
        resize(pair, (11, 5), half=True),
        resize(column, (15, 18), align=True),
        resize(column, (2, 3)),
    )
    return b.build()


@family
def tiles_and_blocks() -> Graph:
    """TILE and BROADCAST_TO over several axes and ranks; DEPTH_TO_SPACE and SPACE_TO_DEPTH."""
    b = GraphBuilder("tiles_and_blocks", seed=32)
    x = b.input((1, 4, 6, 8), 0.05, -4)

    def tile(source: str, multiples: tuple[int, ...]) -> str:
        return b.op(OpKind.TILE, [source], TileAttrs(multiples), b.quant(source))

    def block(kind: OpKind, source: str, size: int) -> str:
        return b.op(kind, [source], BlockAttrs(size), b.quant(source))

    nine = b.conv2d(x, 9, (1, 1))
    b.output(
        tile(x, (1, 2, 1, 3)),
        tile(x, (2, 1, 1, 1)),
        tile(b.reshape(x, (1, 4, 6, 2, 4)), (1, 1, 2, 1, 2)),
        tile(b.reshape(x, (24, 8)), (1, 1)),
        tile(b.expand_dims(x, 3), (1, 1, 1, 3, 1)),
        b.op(OpKind.BROADCAST_TO, [b.expand_dims(x, 2)], BroadcastToAttrs((1, 4, 2, 6, 8)),
             b.quant(x)),
        b.op(OpKind.BROADCAST_TO, [b.reshape(x, (4, 1, 48))], BroadcastToAttrs((2, 4, 3, 48)),
             b.quant(x)),
        block(OpKind.DEPTH_TO_SPACE, x, 2),
        block(OpKind.DEPTH_TO_SPACE, nine, 3),
        block(OpKind.SPACE_TO_DEPTH, x, 2),
        block(OpKind.SPACE_TO_DEPTH, tile(b.reshape(x, (2, 4, 3, 8)), (1, 3, 2, 1)), 3),
    )
    return b.build()


@family
def uint8_edges() -> Graph:
    """QUANTIZE from uint8 graph inputs and to uint8 graph outputs (LiteRT's Requantize).

    The zero-point shift of 128 at one scale (its XOR fast path), other scales, uint8 to uint8.
    """
    b = GraphBuilder("uint8_edges", seed=24)
    image = b.input((1, 5, 4, 3), 0.02, 128, dtype=DType.UINT8)
    other = b.input((2, 7), 0.3, 17, dtype=DType.UINT8)
    x = b.quantize(image, 0.02, 0)
    y = b.relu(b.quantize(other, 0.11, -9))

    def to_uint8(source: str, scale: float, zero_point: int) -> str:
        return b.op(OpKind.QUANTIZE, [source], NoAttrs(),
                    QuantParams.per_tensor(scale, zero_point), DType.UINT8)

    b.output(to_uint8(x, 0.02, 128), to_uint8(b.conv2d(x, 2, (1, 1)), 0.05, 3),
             to_uint8(y, 0.011, 250), to_uint8(other, 0.07, 40))
    return b.build()


@family
def svdf() -> Graph:
    """SVDF of rank 1 and 2, with and without bias, one and two batches, stacked.

    The state of each layer carries over from one record to the next (records run in sequence).
    """
    b = GraphBuilder("svdf", seed=23)
    x = b.input((1, 20), 0.05, 4)
    first = b.svdf(x, 6, rank=2, memory=5)
    second = b.svdf(first, 4, rank=1, memory=3, bias=False)
    pair = b.reshape(x, (2, 10))
    b.output(second, b.svdf(pair, 3, rank=1, memory=8))
    return b.build()


@family
def svdf_shapes() -> Graph:
    """SVDF shapes the DSP kernel treats apart: memory 1, 2 (no whole pair), odd and even.

    An input of 37 features (a partial group of 4), filter counts that are not multiples of 4,
    rank 3 (units across groups of 4 filters), no bias, two batches, and an input one byte
    into the arena's words (a slice planned as an alias).
    """
    b = GraphBuilder("svdf_shapes", seed=29)
    x = b.input((1, 37), 0.04, -6)
    pair = b.input((2, 12), 0.06, 9)
    tail = b.op(OpKind.SLICE, [x], SliceAttrs((0, 1), (1, 36)), b.quant(x))
    b.output(b.svdf(x, 5, rank=3, memory=1), b.svdf(x, 7, rank=1, memory=2, bias=False),
             b.svdf(x, 4, rank=2, memory=7), b.svdf(pair, 6, rank=1, memory=6),
             b.svdf(tail, 3, rank=1, memory=4))
    return b.build()


@family
def svdf_wide() -> Graph:
    """An SVDF over 1,100 features: the DSP kernel's pair sums are split into chunks."""
    b = GraphBuilder("svdf_wide", seed=31)
    x = b.input((1, 1100), 0.03, 2)
    b.output(b.svdf(x, 3, rank=2, memory=4))
    return b.build()


@family
def lstms() -> Graph:
    """Integer LSTMs, their states carried over runs.

    Batch 2 batch-major, time-major with a cell clip, and a keyword-spotter head (last step by
    SLICE + RESHAPE, FULLY_CONNECTED, SOFTMAX).
    """
    b = GraphBuilder("lstms", seed=23)
    x = b.input((2, 6, 5), 0.05, -4)
    major = b.reshape(x, (6, 2, 5))
    sequence = b.lstm(x, 8)
    clipped = b.lstm(major, 3, LstmAttrs(True, 0.75), gain=6.0, cell_exponent=-12)
    last = b.op(OpKind.SLICE, [sequence], SliceAttrs((0, 5, 0), (2, 1, 8)), b.quant(sequence))
    logits = b.fully_connected(b.reshape(last, (2, 8)), 4)
    b.output(sequence, clipped, b.softmax(logits))
    return b.build()


def _rank5_shuffles(b: GraphBuilder, x: str) -> list[str]:
    """Rank-5 TRANSPOSE, STRIDED_SLICE (steps both ways), GATHER and PACK of `x` [2, 3, 5, 2, 2]."""
    q = b.quant(x)
    return [
        b.op(OpKind.TRANSPOSE, [x], TransposeAttrs((4, 2, 0, 3, 1)), q),
        b.op(OpKind.STRIDED_SLICE, [x], StridedSliceAttrs(
            (1, 0, 4, 0, 1), (0, 3, 0, 2, 0), (-1, 2, -3, 1, -1), 0b00001, 0b10001), q),
        b.op(OpKind.GATHER, [x], GatherAttrs(2, (4, 4, 1, 0), (4,)), q),
        b.op(OpKind.PACK, [b.reshape(b.relu(x), (6, 5, 2, 2)), b.reshape(x, (6, 5, 2, 2))],
             PackAttrs(3, 2), q),
    ]


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


@family
def int16_depthwise() -> Graph:
    """int16x8 DEPTHWISE_CONV_2D in the shapes of the Arm DSP kernel's routines.

    3x3 at strides 1 and 2 (and 2 along the height only), 5x5, 2x2 and 1x3 kernels, odd and
    even widths, VALID and SAME padding, two images, RELU, RELU6 and no activation; a depth
    multiplier of 2 and a stride of 3 run the portable kernel.
    """
    b = GraphBuilder("int16_depthwise", seed=29)
    x = b.input((2, 9, 7, 6), 4.0 / 32768.0, 0, DType.INT16)
    y = b.input((1, 10, 12, 3), 3.0 / 32768.0, 0, DType.INT16)
    valid = b.depthwise_conv2d(y, (3, 3), padding=Padding.VALID, activation=Activation.RELU)
    tall = b.op(OpKind.DEPTHWISE_CONV_2D, list(b.graph.operators[-1].inputs),
                DepthwiseConv2DAttrs(2, 1, 1, 1, 1, Padding.SAME, Activation.NONE),
                b.quant(valid), DType.INT16)
    b.output(b.depthwise_conv2d(x, (3, 3)),
             b.depthwise_conv2d(x, (3, 3), stride=2, activation=Activation.RELU6),
             valid, tall,
             b.depthwise_conv2d(y, (5, 5), stride=2, per_channel=False),
             b.depthwise_conv2d(y, (5, 5), bias=False),
             b.depthwise_conv2d(x, (2, 2), padding=Padding.VALID),
             b.depthwise_conv2d(y, (1, 3), stride=2, activation=Activation.RELU),
             b.depthwise_conv2d(y, (3, 3), depth_multiplier=2),
             b.depthwise_conv2d(x, (3, 3), stride=3))
    return b.build()


@family
def int16_moves() -> Graph:
    """Data movement on int16 values (LiteRT's int16x8 scheme): 2-byte elements copied.

    CONCATENATION (channel slices written in place by int16 convolutions, and row copies), PAD,
    SLICE (row copies and mcuflow_slice_s8), STRIDED_SLICE (a box, steps, negative steps),
    TRANSPOSE, REVERSE_V2 of the last axis, TILE, BROADCAST_TO, RESIZE_NEAREST_NEIGHBOR (one
    channel and several), SPLIT, SPLIT_V, PACK, UNPACK, GATHER (of an activation and of a
    constant int16 table) and EXPAND_DIMS.
    """
    b = GraphBuilder("int16_moves", seed=37)
    x = b.input((1, 5, 6, 4), 3.0 / 32768.0, 0, DType.INT16)
    q = b.quant(x)
    left = b.conv2d(x, 3, (3, 3))
    right = b.conv2d(x, 2, (1, 1))
    right = b.quantize(right, b.quant(left).scale0, 0, DType.INT16)
    column = b.conv2d(x, 1, (1, 1))
    near = b.conv2d(x, 3, (3, 3), activation=Activation.RELU)
    far = b.op(OpKind.CONV_2D, list(b.graph.operators[-1].inputs),
               Conv2DAttrs(1, 1, 2, 2, Padding.SAME, Activation.NONE), b.quant(near), DType.INT16)

    def move(kind: OpKind, source: str, attrs: object) -> str:
        return b.op(kind, [source], attrs, b.quant(source), DType.INT16)

    def pieces(kind: OpKind, source: str, attrs: object) -> list[str]:
        return b.op_outputs(kind, [source], attrs, b.quant(source), DType.INT16)

    halves = pieces(OpKind.SPLIT, x, SplitAttrs(3, (2, 2)))
    rows = pieces(OpKind.SPLIT_V, x, SplitAttrs(1, (1, 3, 1)))
    columns = pieces(OpKind.UNPACK, b.reshape(x, (5, 6, 4)), PackAttrs(1, 6))
    b.output(
        b.concatenation([left, right], axis=3),
        b.concatenation([near, far], axis=3),
        b.concatenation([x, x], axis=1),
        b.pad(x, ((0, 0), (1, 2), (0, 3), (1, 0))),
        move(OpKind.SLICE, x, SliceAttrs((0, 1, 2, 0), (1, 2, 3, 4))),
        move(OpKind.SLICE, left, SliceAttrs((0, 1, 1, 1), (1, 3, 4, 2))),
        move(OpKind.STRIDED_SLICE, x, StridedSliceAttrs((0, 1, 0, 0), (1, 5, 6, 4),
                                                        (1, 2, 2, 1))),
        move(OpKind.STRIDED_SLICE, x, StridedSliceAttrs((0, -1, 5, 3), (1, 0, 0, 0),
                                                        (1, -1, -2, -1), 0b0001, 0b0001)),
        move(OpKind.STRIDED_SLICE, left, StridedSliceAttrs((0, 2, 1, 1), (1, 3, 5, 3),
                                                           (1, 1, 1, 1), 0, 0, 0b0011)),
        move(OpKind.TRANSPOSE, x, TransposeAttrs((0, 3, 1, 2))),
        move(OpKind.REVERSE_V2, x, ReverseAttrs((3,))),
        move(OpKind.REVERSE_V2, left, ReverseAttrs((1, 2))),
        move(OpKind.TILE, x, TileAttrs((1, 2, 1, 3))),
        move(OpKind.TILE, column, TileAttrs((2, 1, 2, 1))),
        move(OpKind.BROADCAST_TO, b.expand_dims(x, 2), BroadcastToAttrs((1, 5, 2, 6, 4))),
        move(OpKind.RESIZE_NEAREST_NEIGHBOR, x, ResizeNearestNeighborAttrs((10, 12))),
        move(OpKind.RESIZE_NEAREST_NEIGHBOR, column, ResizeNearestNeighborAttrs((7, 9), True)),
        *halves, rows[1], *columns[::3],
        b.op(OpKind.PACK, [rows[0], rows[2], rows[0]], PackAttrs(2, 3), q, DType.INT16),
        move(OpKind.GATHER, x, GatherAttrs(3, (3, 0, 0, 2, 1, 3), (2, 3))),
        move(OpKind.GATHER, b.reshape(x, (30, 4)), GatherAttrs(0, (29, 0, 7), (3,))),
        move(OpKind.GATHER, b.constant("table16", np.arange(-32000, 32000, 2000, dtype=np.int16)
                                       .reshape(8, 4), q), GatherAttrs(0, (6, 1, 6), (3,))),
    )
    return b.build()


def special_float_inputs(shape: tuple[int, ...]) -> np.ndarray:
    """Floats that stress QUANTIZE: NaN, infinities, halves, values far outside int8."""
    values = np.array([np.nan, np.inf, -np.inf, 0.5, -0.5, 1e9, -1e9, 0.015, -0.045, 3.8],
                      dtype=np.float32)
    return np.resize(values, shape).astype(np.float32)


@family
def arithmetic() -> Graph:
    """SQUARED_DIFFERENCE, PRELU, ABS, SUM, L2_NORMALIZATION and LOG_SOFTMAX.

    SQUARED_DIFFERENCE and PRELU broadcast (alpha a constant per channel, a scalar or a tensor);
    ABS with and without rescaling; SUM over several axis sets.

    SUM reads ABS outputs: LiteRT 2.3's reference SUM reads int8 bytes as uint8 and clamps to
    0..255, which agrees with the int8 arithmetic only on non-negative inputs and outputs
    below 128 (tests/unit/test_arith_ops.py checks SUM in general against tflite-micro).
    """
    b = GraphBuilder("arithmetic", seed=23)
    x = b.input((1, 5, 6, 4), 0.05, 2)
    y = b.input((1, 5, 6, 4), 0.03, -6)
    column = b.constant_int8((1, 5, 1, 1), 0.04, -3)
    alpha = b.constant_int8((1, 1, 4), 0.01, 3)
    scalar = b.constant_int8((1,), 0.004, -2)
    q = QuantParams.per_tensor
    magnitude = b.op(OpKind.ABS, [x], NoAttrs(), q(0.05, 0))
    shifted = b.op(OpKind.ABS, [y], NoAttrs(), q(0.03, 5))

    def total(source: str, axes: tuple[int, ...], keep: bool, scale: float, zero_point: int
              ) -> str:
        return b.op(OpKind.SUM, [source], MeanAttrs(axes, keep), q(scale, zero_point))

    def unit(source: str) -> str:
        return b.op(OpKind.L2_NORMALIZATION, [source], NoAttrs(), q(1.0 / 128.0, 0))

    b.output(
        b.op(OpKind.SQUARED_DIFFERENCE, [x, y], NoAttrs(), q(0.3, -128)),
        b.op(OpKind.SQUARED_DIFFERENCE, [column, x], NoAttrs(), q(0.2, -120)),
        b.op(OpKind.PRELU, [x, alpha], NoAttrs(), q(0.04, 10)),
        b.op(OpKind.PRELU, [y, x], NoAttrs(), q(0.06, -5)),
        b.op(OpKind.PRELU, [x, scalar], NoAttrs(), q(0.02, 0)),
        magnitude,
        b.op(OpKind.ABS, [x], NoAttrs(), q(0.05, -100)),
        b.op(OpKind.ABS, [y], NoAttrs(), q(0.02, -128)),
        total(magnitude, (1, 2), True, 1.6, 0),
        total(magnitude, (3,), False, 0.25, 0),
        total(shifted, (0, 1, 2, 3), False, 4.0, 1),
        total(shifted, (2,), True, 0.9, 0),
        unit(x),
        unit(b.reshape(y, (1, 120))),
        unit(column),
        b.op(OpKind.LOG_SOFTMAX, [x], NoAttrs(), q(16.0 / 256.0, 127)),
        b.op(OpKind.LOG_SOFTMAX, [b.reshape(y, (2, 60))], NoAttrs(), q(16.0 / 256.0, 127)),
        b.op(OpKind.LOG_SOFTMAX, [b.fully_connected(b.reshape(x, (1, 120)), 10)], NoAttrs(),
             q(16.0 / 256.0, 127)),
    )
    return b.build()


def _scaled_up(b: GraphBuilder, name: str, ratio: float) -> str:
    """Make in * w / out of the layer that made `name` `ratio`.

    Its output scale shrinks and its weights become -1..1, so that many outputs stay inside
    the int16 range.
    """
    op = b.graph.operators[-1]
    x, weights = (b.graph.tensors[n] for n in op.inputs[:2])
    weights.data = b.rng.integers(-1, 2, weights.shape).astype(np.int8)
    b.graph.tensors[name].quant = QuantParams.per_tensor(
        x.quant.scale0 * weights.quant.scale0 / ratio, 0)
    return name


def _ties(b: GraphBuilder, name: str) -> str:
    """Give the FULLY_CONNECTED that made `name` the exact scale 1/8.

    Its input scale is a power of two and it has no bias; weights -1..1 of scale 2^-7 make
    acc / 8 often a tie (k + 1/2).
    """
    op = b.graph.operators[-1]
    x, weights = (b.graph.tensors[n] for n in op.inputs[:2])
    weights.data = b.rng.integers(-1, 2, weights.shape).astype(np.int8)
    weights.quant = QuantParams.per_tensor(2.0 ** -7, 0)
    b.graph.tensors[name].quant = QuantParams.per_tensor(x.quant.scale0 * 2.0 ** -7 * 8.0, 0)
    return name


@family
def int16x8_dsp() -> Graph:
    """int16x8 CONV_2D and FULLY_CONNECTED through the DSP kernels (mcuflow_s16_dsp).

    CONV_2D: odd and even in_c (odd window rows padded, even ones copied by words; odd first
    and last values at the edges), odd out_c, strides, dilation (tap by tap), 1x1, 5x5,
    padding at every edge, two images and an odd pixel count, every clamp (none, RELU, RELU6,
    RELU_N1_TO_1), per-tensor and per-channel, no bias, a multiplier above 1/4 (the wide
    requantisation) and a window whose sums can leave int32 (int64 sums of int32 chunks).
    FULLY_CONNECTED: units not a multiple of 4, an odd depth, two and four rows, no bias, a
    scale above 1/4 (double-precision requantisation), the scale 1/8 whose ties take the
    double-precision path of the integer requantisation, and a depth whose sums can leave int32
    (int64 sums of int32 chunks). Depths of at most 16 (row in registers): 1 to 4 groups, odd
    depths, many rows, RELU and the whole int16 range, and ties.
    """
    b = GraphBuilder("int16x8_dsp", seed=29)
    odd = b.input((2, 7, 9, 5), 3.0 / 32768.0, 0, DType.INT16)
    even = b.input((1, 6, 6, 16), 2.0 / 32768.0, 0, DType.INT16)
    deep = b.input((1, 3, 3, 160), 1.0 / 32768.0, 0, DType.INT16)
    row = b.input((1, 1500), 1.0 / 32768.0, 0, DType.INT16)
    c = b.conv2d(odd, 7, (3, 3), activation=Activation.RELU)
    wide = _scaled_up(b, b.conv2d(even, 6, (3, 3), per_channel=False), 0.6)
    b.output(
        c,
        b.conv2d(odd, 6, (3, 3), stride=2, padding=Padding.VALID, per_channel=False, bias=False),
        b.conv2d(odd, 4, (3, 2), dilation=2),
        b.conv2d(odd, 5, (1, 1), stride=2),
        b.conv2d(odd, 3, (5, 5), activation=Activation.RELU_N1_TO_1),
        b.conv2d(even, 9, (3, 3), activation=Activation.RELU6),
        b.conv2d(even, 3, (5, 5), stride=2),
        b.conv2d(even, 8, (1, 1)),
        wide,
        b.conv2d(deep, 4, (3, 3)),
        b.fully_connected(b.reshape(c, (2, -1)), 7),
        b.fully_connected(b.reshape(even, (1, -1)), 4, per_channel=True, bias=False,
                          activation=Activation.RELU),
        _scaled_up(b, b.fully_connected(b.reshape(even, (2, -1)), 5, bias=False), 0.3),
        _ties(b, b.fully_connected(b.reshape(even, (4, -1)), 6, bias=False)),
        b.fully_connected(row, 3),
        b.fully_connected(b.reshape(odd, (-1, 7)), 10, activation=Activation.RELU),
        b.fully_connected(b.reshape(even, (-1, 16)), 9, per_channel=True),
        b.fully_connected(b.reshape(odd, (-1, 3)), 5, bias=False),
        _ties(b, b.fully_connected(b.reshape(odd, (-1, 10)), 6, bias=False)),
    )
    return b.build()
