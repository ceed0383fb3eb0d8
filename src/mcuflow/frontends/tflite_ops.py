"""Every OpKind's TFLite form: builtin code, operands, and how its options are read and written."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import flatbuffers
import numpy as np
import tflite

from mcuflow.frontends import tflite_checks as check
from mcuflow.frontends.tflite_schema import (
    DTYPE_OF_TENSOR_TYPE,
    FUSED_OF_ACTIVATION,
    TENSOR_TYPE_OF_DTYPE,
    TFLITE_OF_PADDING,
    RawOp,
    RawSubgraph,
)
from mcuflow.ir.enums import Activation
from mcuflow.ir.ops import (
    ArgAttrs,
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    ElementwiseAttrs,
    FullyConnectedAttrs,
    LeakyReluAttrs,
    MeanAttrs,
    NoAttrs,
    OpAttrs,
    OpKind,
    PadAttrs,
    Pool2DAttrs,
    ReshapeAttrs,
    ResizeNearestNeighborAttrs,
    SliceAttrs,
    SoftmaxAttrs,
    SqueezeAttrs,
)
from mcuflow.ir.registry import OpTable

OP = tflite.BuiltinOperator
Builder = flatbuffers.Builder
BIAS_INDEX = 2
"""The operand position of the bias of ops with an OptionalBias."""

Converter = Callable[[RawOp, RawSubgraph], tuple[OpAttrs, list[int]]]
"""Reads an op's options and constant inputs into (IR attributes, IR input tensor indices)."""
OptionsWriter = Callable[[Builder, OpAttrs], tuple[int, int]]
"""Writes an op's builtin options: (BuiltinOptions type, options table offset)."""
ConstantInputs = Callable[[OpAttrs], list[tuple[str, np.ndarray]]]
"""Attributes TFLite takes as int32 constant inputs: (tensor name suffix, values) each."""


@dataclass(frozen=True)
class Window:
    """The window an op slides over its NHWC input: (KH, KW) and (dilation_h, dilation_w)."""

    size: tuple[int, int]
    dilations: tuple[int, int]


WindowOf = Callable[[OpAttrs, RawOp, RawSubgraph], Window]
"""The window of an op, from its IR attributes and the decoded op."""


@dataclass(frozen=True)
class OptionalBias:
    """A bias operand (at BIAS_INDEX) the IR may omit.

    An omitted bias is written as the optional index -1, or, when `zeros_axis` is set (LiteRT's
    convolutions require a bias), as zeros for each channel along that axis of the filter.
    """

    zeros_axis: int | None = None


def _no_attrs(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    return NoAttrs(), list(op.inputs)


@dataclass(frozen=True)
class TfliteOp:
    """An op's TFLite form: what the reader decodes and the writer encodes for it."""

    builtin: int
    """Its BuiltinOperator code."""
    read: Converter = _no_attrs
    """Its IR attributes and inputs from the decoded op; by default NoAttrs and every input."""
    write: OptionsWriter | None = None
    """Its builtin options table; None writes none."""
    operands: tuple[int, int] = (1, 1)
    """(min, max) count of its TFLite inputs, counting -1 placeholders."""
    bias: OptionalBias | None = None
    """Its optional bias operand, if it has one."""
    constant_inputs: ConstantInputs | None = None
    """The attributes it takes as constant inputs (RESHAPE shape...), appended when written."""
    window: WindowOf | None = None
    """The window whose padded input the reader checks fits in RAM."""
    version: int = 1
    """The operator code version written."""


# --------------------------------------------------------------------------- reading


def _present(indices: list[int]) -> list[int]:
    return [i for i in indices if i >= 0]


def _conv2d(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    o = check.options(op, tflite.Conv2DOptions, required=True)
    attrs = Conv2DAttrs(
        stride_h=check.positive(op, "stride_h", o.StrideH()),
        stride_w=check.positive(op, "stride_w", o.StrideW()),
        dilation_h=check.positive(op, "dilation_h", o.DilationHFactor()),
        dilation_w=check.positive(op, "dilation_w", o.DilationWFactor()),
        padding=check.padding(op, o.Padding()),
        activation=check.activation(op, o.FusedActivationFunction()),
    )
    return attrs, _present(op.inputs)


def _filter_window(
    attrs: Conv2DAttrs | DepthwiseConv2DAttrs, op: RawOp, subgraph: RawSubgraph
) -> Window:
    """A convolution's filter [O or 1, KH, KW, C] window; 1x1 when the filter is malformed."""
    weights = subgraph.tensors[op.inputs[1]].shape
    size = (weights[1], weights[2]) if len(weights) == 4 else (1, 1)
    return Window(size, (attrs.dilation_h, attrs.dilation_w))


def _depth_multiplier(op: RawOp, subgraph: RawSubgraph, declared: int) -> int:
    """TFLite derives the multiplier from the shapes (filter channels / input channels)."""
    x, weights = (subgraph.tensors[i].shape for i in op.inputs[:2])
    if len(x) == 4 and len(weights) == 4 and x[3] > 0 and weights[3] % x[3] == 0:
        return weights[3] // x[3]
    return declared


def _depthwise_conv2d(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    o = check.options(op, tflite.DepthwiseConv2DOptions, required=True)
    attrs = DepthwiseConv2DAttrs(
        stride_h=check.positive(op, "stride_h", o.StrideH()),
        stride_w=check.positive(op, "stride_w", o.StrideW()),
        dilation_h=check.positive(op, "dilation_h", o.DilationHFactor()),
        dilation_w=check.positive(op, "dilation_w", o.DilationWFactor()),
        depth_multiplier=_depth_multiplier(op, subgraph, o.DepthMultiplier()),
        padding=check.padding(op, o.Padding()),
        activation=check.activation(op, o.FusedActivationFunction()),
    )
    return attrs, _present(op.inputs)


def _fully_connected(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    o = check.options(op, tflite.FullyConnectedOptions)
    if o is None:
        return FullyConnectedAttrs(), _present(op.inputs)
    if o.WeightsFormat() != tflite.FullyConnectedOptionsWeightsFormat.DEFAULT:
        raise check.unsupported(op, "uses shuffled weights (weights_format is not DEFAULT)")
    attrs = FullyConnectedAttrs(
        activation=check.activation(op, o.FusedActivationFunction()),
        keep_num_dims=bool(o.KeepNumDims()),
    )
    return attrs, _present(op.inputs)


def _elementwise(options_class: type) -> Converter:
    def convert(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
        o = check.options(op, options_class)
        activation = check.activation(op, o.FusedActivationFunction()) if o else Activation.NONE
        return ElementwiseAttrs(activation), list(op.inputs)

    return convert


def _pool2d(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    o = check.options(op, tflite.Pool2DOptions, required=True)
    attrs = Pool2DAttrs(
        filter_h=check.positive(op, "filter_height", o.FilterHeight()),
        filter_w=check.positive(op, "filter_width", o.FilterWidth()),
        stride_h=check.positive(op, "stride_h", o.StrideH()),
        stride_w=check.positive(op, "stride_w", o.StrideW()),
        padding=check.padding(op, o.Padding()),
        activation=check.activation(op, o.FusedActivationFunction()),
    )
    return attrs, list(op.inputs)


def _pool_window(attrs: Pool2DAttrs, op: RawOp, subgraph: RawSubgraph) -> Window:
    return Window((attrs.filter_h, attrs.filter_w), (1, 1))


def _mean(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    o = check.options(op, tflite.ReducerOptions)
    rank = len(subgraph.tensors[op.inputs[0]].shape)
    axes = check.constant_input(op, subgraph, 1, "axes").reshape(-1)
    normalised = sorted({check.axis(op, int(a), rank) for a in axes})
    keep_dims = bool(o.KeepDims()) if o else False
    return MeanAttrs(tuple(normalised), keep_dims), [op.inputs[0]]


def _reshape_target(op: RawOp, subgraph: RawSubgraph) -> list[int]:
    """RESHAPE's target: the shape input, else ReshapeOptions.new_shape, else the output shape."""
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        return [int(d) for d in check.constant_input(op, subgraph, 1, "shape").reshape(-1)]
    o = check.options(op, tflite.ReshapeOptions)
    if o is not None and not o.NewShapeIsNone():
        return check.ints(o.NewShapeAsNumpy())
    return list(subgraph.tensors[op.outputs[0]].shape)


def _reshape(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    target = _reshape_target(op, subgraph)
    size = int(np.prod(subgraph.tensors[op.inputs[0]].shape, dtype=np.int64))
    unknown = [i for i, d in enumerate(target) if d == -1]
    known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
    if len(unknown) > 1 or any(d < -1 for d in target):
        raise check.op_error(op, f"has an invalid target shape {tuple(target)}")
    if unknown:
        if known == 0 or size % known:
            raise check.op_error(op, f"cannot reshape {size} elements to {tuple(target)}")
        target[unknown[0]] = size // known
    return ReshapeAttrs(tuple(target)), [op.inputs[0]]


def _squeeze(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    o = check.options(op, tflite.SqueezeOptions)
    rank = len(subgraph.tensors[op.inputs[0]].shape)
    dims = check.ints(o.SqueezeDimsAsNumpy()) if o else []
    return SqueezeAttrs(tuple(sorted({check.axis(op, d, rank) for d in dims}))), list(op.inputs)


def _softmax(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    o = check.options(op, tflite.SoftmaxOptions, required=True)
    beta = float(o.Beta())
    if not 0.0 < beta < math.inf:
        raise check.op_error(op, f"has beta {beta}; it must be a positive finite number")
    return SoftmaxAttrs(beta), list(op.inputs)


def _pad(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    paddings = check.constant_input(op, subgraph, 1, "paddings")
    if paddings.ndim != 2 or paddings.shape[1] != 2 or np.any(paddings < 0):
        raise check.op_error(
            op, f"has paddings {paddings.tolist()}; expected non-negative [rank, 2]"
        )
    pairs = tuple((int(before), int(after)) for before, after in paddings)
    return PadAttrs(pairs), [op.inputs[0]]


def _concatenation(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    o = check.options(op, tflite.ConcatenationOptions)
    rank = len(subgraph.tensors[op.outputs[0]].shape)
    axis = check.axis(op, o.Axis(), rank) if o else 0
    activation = check.activation(op, o.FusedActivationFunction()) if o else Activation.NONE
    return ConcatenationAttrs(axis, activation), list(op.inputs)


def _slice(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    shape = subgraph.tensors[op.inputs[0]].shape
    begin = [int(b) for b in check.constant_input(op, subgraph, 1, "begin").reshape(-1)]
    size = [int(n) for n in check.constant_input(op, subgraph, 2, "size").reshape(-1)]
    if len(begin) != len(shape) or len(size) != len(shape):
        raise check.op_error(op, f"has begin {begin} and size {size} for an input of rank "
                                 f"{len(shape)}")
    resolved = [d - b if n == -1 else n for d, b, n in zip(shape, begin, size, strict=True)]
    if any(b < 0 or n < 0 or b + n > d for d, b, n in zip(shape, begin, resolved, strict=True)):
        raise check.op_error(op, f"has begin {begin} and size {size}, which do not lie inside "
                                 f"its input {shape}")
    if 0 in resolved:
        raise check.unsupported(op, f"has an empty output (size {size})")
    return SliceAttrs(tuple(begin), tuple(resolved)), [op.inputs[0]]


def _leaky_relu(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    o = check.options(op, tflite.LeakyReluOptions)
    alpha = float(o.Alpha()) if o else 0.0
    if not math.isfinite(alpha):
        raise check.op_error(op, f"has alpha {alpha}; it must be a finite number")
    return LeakyReluAttrs(alpha), list(op.inputs)


# --------------------------------------------------------------------------- writing


def _int32(values: object) -> np.ndarray:
    """A little-endian int32 array."""
    return np.asarray(values, dtype="<i4")


def _shape_input(a: ReshapeAttrs) -> list[tuple[str, np.ndarray]]:
    return [("shape", _int32(a.new_shape))]


def _paddings_input(a: PadAttrs) -> list[tuple[str, np.ndarray]]:
    return [("paddings", _int32(a.paddings).reshape(len(a.paddings), 2))]


def _axes_input(a: MeanAttrs) -> list[tuple[str, np.ndarray]]:
    return [("axes", _int32(a.axes))]


def _begin_size_inputs(a: SliceAttrs) -> list[tuple[str, np.ndarray]]:
    return [("begin", _int32(a.begin)), ("size", _int32(a.size))]


def _conv_options(builder: Builder, a: Conv2DAttrs) -> tuple[int, int]:
    tflite.Conv2DOptionsStart(builder)
    tflite.Conv2DOptionsAddPadding(builder, TFLITE_OF_PADDING[a.padding])
    tflite.Conv2DOptionsAddStrideW(builder, a.stride_w)
    tflite.Conv2DOptionsAddStrideH(builder, a.stride_h)
    tflite.Conv2DOptionsAddDilationWFactor(builder, a.dilation_w)
    tflite.Conv2DOptionsAddDilationHFactor(builder, a.dilation_h)
    tflite.Conv2DOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[a.activation])
    return tflite.BuiltinOptions.Conv2DOptions, tflite.Conv2DOptionsEnd(builder)


def _depthwise_options(builder: Builder, a: DepthwiseConv2DAttrs) -> tuple[int, int]:
    tflite.DepthwiseConv2DOptionsStart(builder)
    tflite.DepthwiseConv2DOptionsAddPadding(builder, TFLITE_OF_PADDING[a.padding])
    tflite.DepthwiseConv2DOptionsAddStrideW(builder, a.stride_w)
    tflite.DepthwiseConv2DOptionsAddStrideH(builder, a.stride_h)
    tflite.DepthwiseConv2DOptionsAddDepthMultiplier(builder, a.depth_multiplier)
    tflite.DepthwiseConv2DOptionsAddDilationWFactor(builder, a.dilation_w)
    tflite.DepthwiseConv2DOptionsAddDilationHFactor(builder, a.dilation_h)
    fused = FUSED_OF_ACTIVATION[a.activation]
    tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(builder, fused)
    return tflite.BuiltinOptions.DepthwiseConv2DOptions, tflite.DepthwiseConv2DOptionsEnd(builder)


def _fully_connected_options(builder: Builder, a: FullyConnectedAttrs) -> tuple[int, int]:
    tflite.FullyConnectedOptionsStart(builder)
    fused = FUSED_OF_ACTIVATION[a.activation]
    tflite.FullyConnectedOptionsAddFusedActivationFunction(builder, fused)
    tflite.FullyConnectedOptionsAddKeepNumDims(builder, a.keep_num_dims)
    return tflite.BuiltinOptions.FullyConnectedOptions, tflite.FullyConnectedOptionsEnd(builder)


def _add_options(builder: Builder, a: ElementwiseAttrs) -> tuple[int, int]:
    tflite.AddOptionsStart(builder)
    tflite.AddOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[a.activation])
    tflite.AddOptionsAddPotScaleInt16(builder, False)  # int16: the general path, as converted
    return tflite.BuiltinOptions.AddOptions, tflite.AddOptionsEnd(builder)


def _sub_options(builder: Builder, a: ElementwiseAttrs) -> tuple[int, int]:
    tflite.SubOptionsStart(builder)
    tflite.SubOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[a.activation])
    return tflite.BuiltinOptions.SubOptions, tflite.SubOptionsEnd(builder)


def _mul_options(builder: Builder, a: ElementwiseAttrs) -> tuple[int, int]:
    tflite.MulOptionsStart(builder)
    tflite.MulOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[a.activation])
    return tflite.BuiltinOptions.MulOptions, tflite.MulOptionsEnd(builder)


def _pool_options(builder: Builder, a: Pool2DAttrs) -> tuple[int, int]:
    tflite.Pool2DOptionsStart(builder)
    tflite.Pool2DOptionsAddPadding(builder, TFLITE_OF_PADDING[a.padding])
    tflite.Pool2DOptionsAddStrideW(builder, a.stride_w)
    tflite.Pool2DOptionsAddStrideH(builder, a.stride_h)
    tflite.Pool2DOptionsAddFilterWidth(builder, a.filter_w)
    tflite.Pool2DOptionsAddFilterHeight(builder, a.filter_h)
    tflite.Pool2DOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[a.activation])
    return tflite.BuiltinOptions.Pool2DOptions, tflite.Pool2DOptionsEnd(builder)


def _reducer_options(builder: Builder, a: MeanAttrs) -> tuple[int, int]:
    tflite.ReducerOptionsStart(builder)
    tflite.ReducerOptionsAddKeepDims(builder, a.keep_dims)
    return tflite.BuiltinOptions.ReducerOptions, tflite.ReducerOptionsEnd(builder)


def _reshape_options(builder: Builder, a: ReshapeAttrs) -> tuple[int, int]:
    new_shape = builder.CreateNumpyVector(_int32(a.new_shape))
    tflite.ReshapeOptionsStart(builder)
    tflite.ReshapeOptionsAddNewShape(builder, new_shape)
    return tflite.BuiltinOptions.ReshapeOptions, tflite.ReshapeOptionsEnd(builder)


def _squeeze_options(builder: Builder, a: SqueezeAttrs) -> tuple[int, int]:
    dims = builder.CreateNumpyVector(_int32(a.axes))
    tflite.SqueezeOptionsStart(builder)
    tflite.SqueezeOptionsAddSqueezeDims(builder, dims)
    return tflite.BuiltinOptions.SqueezeOptions, tflite.SqueezeOptionsEnd(builder)


def _softmax_options(builder: Builder, a: SoftmaxAttrs) -> tuple[int, int]:
    tflite.SoftmaxOptionsStart(builder)
    tflite.SoftmaxOptionsAddBeta(builder, a.beta)
    return tflite.BuiltinOptions.SoftmaxOptions, tflite.SoftmaxOptionsEnd(builder)



def _concatenation_options(builder: Builder, a: ConcatenationAttrs) -> tuple[int, int]:
    tflite.ConcatenationOptionsStart(builder)
    tflite.ConcatenationOptionsAddAxis(builder, a.axis)
    fused = FUSED_OF_ACTIVATION[a.activation]
    tflite.ConcatenationOptionsAddFusedActivationFunction(builder, fused)
    return tflite.BuiltinOptions.ConcatenationOptions, tflite.ConcatenationOptionsEnd(builder)



def _leaky_relu_options(builder: Builder, a: LeakyReluAttrs) -> tuple[int, int]:
    tflite.LeakyReluOptionsStart(builder)
    tflite.LeakyReluOptionsAddAlpha(builder, a.alpha)
    return tflite.BuiltinOptions.LeakyReluOptions, tflite.LeakyReluOptionsEnd(builder)





def _empty_options(table: str) -> OptionsWriter:
    """The writer of a fieldless options table, e.g. 'PadOptions'."""
    start, end = getattr(tflite, f"{table}Start"), getattr(tflite, f"{table}End")
    code = getattr(tflite.BuiltinOptions, table)

    def write(builder: Builder, _: OpAttrs) -> tuple[int, int]:
        start(builder)
        return code, end(builder)

    return write


# --- REDUCE_MAX, REDUCE_MIN (MEAN's reader and writers), ARG_MAX, ARG_MIN


def _arg(options_class: type) -> Converter:
    """ARG_MAX / ARG_MIN: the constant one-element axis input and the options' output_type."""

    def convert(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
        o = check.options(op, options_class)
        rank = len(subgraph.tensors[op.inputs[0]].shape)
        axis = check.constant_input(op, subgraph, 1, "axis").reshape(-1)
        if axis.size != 1:
            raise check.op_error(op, f"has {axis.size} axes; it takes exactly one")
        attrs = ArgAttrs(check.axis(op, int(axis[0]), rank))
        if o is not None and o.OutputType() in DTYPE_OF_TENSOR_TYPE:
            attrs = ArgAttrs(attrs.axis, DTYPE_OF_TENSOR_TYPE[o.OutputType()])
        return attrs, [op.inputs[0]]

    return convert


def _arg_axis_input(a: ArgAttrs) -> list[tuple[str, np.ndarray]]:
    return [("axis", _int32([a.axis]))]


def _arg_max_options(builder: Builder, a: ArgAttrs) -> tuple[int, int]:
    tflite.ArgMaxOptionsStart(builder)
    tflite.ArgMaxOptionsAddOutputType(builder, TENSOR_TYPE_OF_DTYPE[a.output_type])
    return tflite.BuiltinOptions.ArgMaxOptions, tflite.ArgMaxOptionsEnd(builder)


def _arg_min_options(builder: Builder, a: ArgAttrs) -> tuple[int, int]:
    tflite.ArgMinOptionsStart(builder)
    tflite.ArgMinOptionsAddOutputType(builder, TENSOR_TYPE_OF_DTYPE[a.output_type])
    return tflite.BuiltinOptions.ArgMinOptions, tflite.ArgMinOptionsEnd(builder)


# --- RESIZE_NEAREST_NEIGHBOR


def _resize_nearest(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The constant size input [new_h, new_w]; the options' align_corners, half_pixel_centers."""
    o = check.options(op, tflite.ResizeNearestNeighborOptions)
    size = [int(d) for d in check.constant_input(op, subgraph, 1, "size").reshape(-1)]
    if len(size) != 2 or min(size) < 1:
        raise check.op_error(op, f"has size {size}; it takes two positive dimensions")
    align_corners = bool(o.AlignCorners()) if o else False
    half_pixel_centers = bool(o.HalfPixelCenters()) if o else False
    return (ResizeNearestNeighborAttrs((size[0], size[1]), align_corners, half_pixel_centers),
            [op.inputs[0]])


def _resize_size_input(a: ResizeNearestNeighborAttrs) -> list[tuple[str, np.ndarray]]:
    return [("size", _int32(a.size))]


def _resize_nearest_options(builder: Builder, a: ResizeNearestNeighborAttrs) -> tuple[int, int]:
    tflite.ResizeNearestNeighborOptionsStart(builder)
    tflite.ResizeNearestNeighborOptionsAddAlignCorners(builder, a.align_corners)
    tflite.ResizeNearestNeighborOptionsAddHalfPixelCenters(builder, a.half_pixel_centers)
    return (tflite.BuiltinOptions.ResizeNearestNeighborOptions,
            tflite.ResizeNearestNeighborOptionsEnd(builder))


# --------------------------------------------------------------------------- the records


TFLITE_OPS: OpTable[TfliteOp] = OpTable("TFLite form", entries={
    OpKind.CONV_2D: TfliteOp(
        OP.CONV_2D, _conv2d, _conv_options, (2, 3), OptionalBias(zeros_axis=0),
        window=_filter_window,
    ),
    OpKind.DEPTHWISE_CONV_2D: TfliteOp(
        OP.DEPTHWISE_CONV_2D, _depthwise_conv2d, _depthwise_options, (2, 3),
        OptionalBias(zeros_axis=3), window=_filter_window,
    ),
    OpKind.FULLY_CONNECTED: TfliteOp(
        OP.FULLY_CONNECTED, _fully_connected, _fully_connected_options, (2, 3), OptionalBias(),
    ),
    OpKind.ADD: TfliteOp(OP.ADD, _elementwise(tflite.AddOptions), _add_options, (2, 2)),
    OpKind.SUB: TfliteOp(OP.SUB, _elementwise(tflite.SubOptions), _sub_options, (2, 2)),
    OpKind.MUL: TfliteOp(OP.MUL, _elementwise(tflite.MulOptions), _mul_options, (2, 2)),
    OpKind.AVERAGE_POOL_2D: TfliteOp(
        OP.AVERAGE_POOL_2D, _pool2d, _pool_options, window=_pool_window
    ),
    OpKind.MAX_POOL_2D: TfliteOp(OP.MAX_POOL_2D, _pool2d, _pool_options, window=_pool_window),
    OpKind.MEAN: TfliteOp(OP.MEAN, _mean, _reducer_options, (2, 2), constant_inputs=_axes_input),
    OpKind.RESHAPE: TfliteOp(
        OP.RESHAPE, _reshape, _reshape_options, (1, 2), constant_inputs=_shape_input
    ),
    OpKind.SQUEEZE: TfliteOp(OP.SQUEEZE, _squeeze, _squeeze_options),
    OpKind.SOFTMAX: TfliteOp(OP.SOFTMAX, _softmax, _softmax_options),
    OpKind.PAD: TfliteOp(OP.PAD, _pad, _empty_options("PadOptions"), (2, 2),
                         constant_inputs=_paddings_input),
    OpKind.CONCATENATION: TfliteOp(
        OP.CONCATENATION, _concatenation, _concatenation_options, (1, 1 << 16)
    ),
    OpKind.LOGISTIC: TfliteOp(OP.LOGISTIC),
    OpKind.TANH: TfliteOp(OP.TANH),
    OpKind.HARD_SWISH: TfliteOp(OP.HARD_SWISH, write=_empty_options("HardSwishOptions")),
    OpKind.RELU: TfliteOp(OP.RELU),
    OpKind.RELU6: TfliteOp(OP.RELU6),
    OpKind.LEAKY_RELU: TfliteOp(OP.LEAKY_RELU, _leaky_relu, _leaky_relu_options),
    OpKind.QUANTIZE: TfliteOp(OP.QUANTIZE, write=_empty_options("QuantizeOptions")),
    OpKind.DEQUANTIZE: TfliteOp(OP.DEQUANTIZE, write=_empty_options("DequantizeOptions")),
    OpKind.MAXIMUM: TfliteOp(OP.MAXIMUM, write=_empty_options("MaximumMinimumOptions"),
                             operands=(2, 2)),
    OpKind.MINIMUM: TfliteOp(OP.MINIMUM, write=_empty_options("MaximumMinimumOptions"),
                             operands=(2, 2)),
    OpKind.SLICE: TfliteOp(OP.SLICE, _slice, _empty_options("SliceOptions"), (3, 3),
                           constant_inputs=_begin_size_inputs),
    OpKind.REDUCE_MAX: TfliteOp(OP.REDUCE_MAX, _mean, _reducer_options, (2, 2),
                                constant_inputs=_axes_input),
    OpKind.REDUCE_MIN: TfliteOp(OP.REDUCE_MIN, _mean, _reducer_options, (2, 2),
                                constant_inputs=_axes_input),
    OpKind.ARG_MAX: TfliteOp(OP.ARG_MAX, _arg(tflite.ArgMaxOptions), _arg_max_options, (2, 2),
                             constant_inputs=_arg_axis_input, version=2),
    OpKind.ARG_MIN: TfliteOp(OP.ARG_MIN, _arg(tflite.ArgMinOptions), _arg_min_options, (2, 2),
                             constant_inputs=_arg_axis_input, version=2),
    OpKind.RESIZE_NEAREST_NEIGHBOR: TfliteOp(
        OP.RESIZE_NEAREST_NEIGHBOR, _resize_nearest, _resize_nearest_options, (2, 2),
        constant_inputs=_resize_size_input, version=3),
})
"""The TFLite form of every OpKind."""

KIND_OF_BUILTIN: dict[int, OpKind] = {op.builtin: kind for kind, op in TFLITE_OPS.items()}
"""The OpKind of each BuiltinOperator code mcuflow reads."""
