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
from mcuflow.ir.graph import DType
from mcuflow.ir.ops import (
    ArgAttrs,
    BatchSpaceAttrs,
    BlockAttrs,
    BroadcastToAttrs,
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    ElementwiseAttrs,
    ExpandDimsAttrs,
    FullyConnectedAttrs,
    GatherAttrs,
    LeakyReluAttrs,
    LstmAttrs,
    MeanAttrs,
    NoAttrs,
    OpAttrs,
    OpKind,
    PackAttrs,
    PadAttrs,
    Pool2DAttrs,
    ReshapeAttrs,
    ResizeBilinearAttrs,
    ResizeNearestNeighborAttrs,
    ReverseAttrs,
    SliceAttrs,
    SoftmaxAttrs,
    SplitAttrs,
    SqueezeAttrs,
    StridedSliceAttrs,
    SvdfAttrs,
    TileAttrs,
    TransposeAttrs,
    TransposeConvAttrs,
)
from mcuflow.ir.quantization import QuantParams
from mcuflow.ir.registry import OpTable

OP = tflite.BuiltinOperator
Builder = flatbuffers.Builder
BIAS_INDEX = 2
"""The operand position of the bias of ops with an OptionalBias."""
NO_TENSOR = -1
"""The tensor index of an absent optional operand."""

Converter = Callable[[RawOp, RawSubgraph], tuple[OpAttrs, list[int]]]
"""Reads an op's options and constant inputs into (IR attributes, IR input tensor indices)."""
OptionsWriter = Callable[[Builder, OpAttrs], tuple[int, int]]
"""Writes an op's builtin options: (BuiltinOptions type, options table offset)."""
ConstantInputs = Callable[[OpAttrs], list[tuple[str, np.ndarray]]]
"""Attributes TFLite takes as int32 constant inputs: (tensor name suffix, values) each."""
Arrange = Callable[[list[int]], list[int]]
"""TFLite's operand order from the written inputs: the IR's, the bias placeholder, constants."""


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


@dataclass(frozen=True)
class HeldTensor:
    """A scalar tensor of an op's TFLite form that the IR keeps in the op's attributes.

    An LSTM's intermediates (the quantisation of its gates and hidden value).
    """

    suffix: str
    dtype: DType
    quant: QuantParams


Intermediates = Callable[[OpAttrs], list[HeldTensor]]
"""The intermediates an op's TFLite form records, from its IR attributes."""


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
    constants_first: bool = False
    """Its constant inputs come before its activations (SPLIT's axis)."""
    window: WindowOf | None = None
    """The window whose padded input the reader checks fits in RAM."""
    version: int = 1
    """The operator code version written."""
    arrange: Arrange | None = None
    """TFLite's operand order when it differs from the IR's (TRANSPOSE_CONV; LSTM, -1 at the
    operands it lacks); None keeps it."""
    optional: tuple[int, ...] = ()
    """Other operand positions that may be -1 (SVDF's bias): the reader drops an absent one,
    the writer writes -1 there when the IR has fewer inputs."""
    required: int | None = None
    """How many leading inputs must be present (not -1); None: all, or those before the bias."""
    intermediates: Intermediates | None = None
    """The intermediates it writes (LSTM); None: none."""


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


def _expand_dims(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    axis = check.constant_input(op, subgraph, 1, "axis").reshape(-1)
    if axis.size != 1:
        raise check.op_error(op, f"has {axis.size} axes; EXPAND_DIMS takes one")
    rank = len(subgraph.tensors[op.inputs[0]].shape) + 1
    return ExpandDimsAttrs(check.axis(op, int(axis[0]), rank)), [op.inputs[0]]


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


def _expand_dims_axis_input(a: ExpandDimsAttrs) -> list[tuple[str, np.ndarray]]:
    return [("axis", _int32([a.axis]))]


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


# --- L2_NORMALIZATION (its options' fused activation must be none)


def _l2_normalization(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    o = check.options(op, tflite.L2NormOptions)
    activation = check.activation(op, o.FusedActivationFunction()) if o else Activation.NONE
    if activation is not Activation.NONE:
        raise check.unsupported(op, f"fuses {activation.value}; L2_NORMALIZATION takes none")
    return NoAttrs(), list(op.inputs)


def _l2_norm_options(builder: Builder, _: OpAttrs) -> tuple[int, int]:
    tflite.L2NormOptionsStart(builder)
    tflite.L2NormOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[Activation.NONE])
    return tflite.BuiltinOptions.L2NormOptions, tflite.L2NormOptionsEnd(builder)


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


# --- TRANSPOSE_CONV


def _transpose_conv(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """Operands (output_shape, weights, input, optional bias); output_shape is folded."""
    o = check.options(op, tflite.TransposeConvOptions, required=True)
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        raise check.op_error(op, f"has inputs {op.inputs}; it lacks its input tensor")
    shape = [int(d) for d in check.constant_input(op, subgraph, 0, "output_shape").reshape(-1)]
    x, weights = (subgraph.tensors[op.inputs[i]].shape for i in (2, 1))
    if len(shape) != 4 or min(shape) < 1 or len(x) != 4 or len(weights) != 4 or (
            shape[0], shape[3]) != (x[0], weights[0]):
        raise check.op_error(op, f"has output_shape {shape} for input {x} and weights {weights}")
    attrs = TransposeConvAttrs(
        output_shape=(shape[0], shape[1], shape[2], shape[3]),
        stride_h=check.positive(op, "stride_h", o.StrideH()),
        stride_w=check.positive(op, "stride_w", o.StrideW()),
        padding=check.padding(op, o.Padding()),
        activation=check.activation(op, o.FusedActivationFunction()),
    )
    return attrs, [op.inputs[2], op.inputs[1], *_present(op.inputs[3:])]


def _transpose_conv_options(builder: Builder, a: TransposeConvAttrs) -> tuple[int, int]:
    tflite.TransposeConvOptionsStart(builder)
    tflite.TransposeConvOptionsAddPadding(builder, TFLITE_OF_PADDING[a.padding])
    tflite.TransposeConvOptionsAddStrideW(builder, a.stride_w)
    tflite.TransposeConvOptionsAddStrideH(builder, a.stride_h)
    tflite.TransposeConvOptionsAddFusedActivationFunction(builder,
                                                          FUSED_OF_ACTIVATION[a.activation])
    return tflite.BuiltinOptions.TransposeConvOptions, tflite.TransposeConvOptionsEnd(builder)


def _output_shape_input(a: TransposeConvAttrs) -> list[tuple[str, np.ndarray]]:
    return [("output_shape", _int32(a.output_shape))]


def _transpose_conv_operands(written: list[int]) -> list[int]:
    """Written (input, weights, bias or -1, output_shape) in TFLite's operand order."""
    x, weights, bias, shape = written
    return [shape, weights, x, bias]


# --- RESIZE_BILINEAR, TILE, DEPTH_TO_SPACE, SPACE_TO_DEPTH


def _resize_bilinear(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The constant size input [new_h, new_w]; the options' align_corners, half_pixel_centers."""
    o = check.options(op, tflite.ResizeBilinearOptions)
    size = [int(d) for d in check.constant_input(op, subgraph, 1, "size").reshape(-1)]
    if len(size) != 2 or min(size) < 1:
        raise check.op_error(op, f"has size {size}; it takes two positive dimensions")
    align_corners = bool(o.AlignCorners()) if o else False
    half_pixel_centers = bool(o.HalfPixelCenters()) if o else False
    return (ResizeBilinearAttrs((size[0], size[1]), align_corners, half_pixel_centers),
            [op.inputs[0]])


def _resize_bilinear_options(builder: Builder, a: ResizeBilinearAttrs) -> tuple[int, int]:
    tflite.ResizeBilinearOptionsStart(builder)
    tflite.ResizeBilinearOptionsAddAlignCorners(builder, a.align_corners)
    tflite.ResizeBilinearOptionsAddHalfPixelCenters(builder, a.half_pixel_centers)
    return tflite.BuiltinOptions.ResizeBilinearOptions, tflite.ResizeBilinearOptionsEnd(builder)


def _tile(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The constant multiples input, one positive count per axis."""
    multiples = [int(m) for m in check.constant_input(op, subgraph, 1, "multiples").reshape(-1)]
    rank = len(subgraph.tensors[op.inputs[0]].shape)
    if len(multiples) != rank or min(multiples, default=1) < 1:
        raise check.op_error(op, f"has multiples {multiples}; it takes one positive count per "
                                 f"axis of its rank-{rank} input")
    return TileAttrs(tuple(multiples)), [op.inputs[0]]


def _multiples_input(a: TileAttrs) -> list[tuple[str, np.ndarray]]:
    return [("multiples", _int32(a.multiples))]


def _broadcast_to(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The constant shape input: the output's positive dims."""
    shape = [int(d) for d in check.constant_input(op, subgraph, 1, "shape").reshape(-1)]
    if min(shape, default=1) < 1:
        raise check.op_error(op, f"has shape {shape}; it takes positive dims")
    return BroadcastToAttrs(tuple(shape)), [op.inputs[0]]


def _broadcast_shape_input(a: BroadcastToAttrs) -> list[tuple[str, np.ndarray]]:
    return [("shape", _int32(a.shape))]


def _block(options_class: type) -> Converter:
    """DEPTH_TO_SPACE / SPACE_TO_DEPTH: the options' block_size."""

    def convert(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
        o = check.options(op, options_class, required=True)
        if o.BlockSize() < 1:
            raise check.op_error(op, f"has block_size {o.BlockSize()}; it takes a positive one")
        return BlockAttrs(int(o.BlockSize())), [op.inputs[0]]

    return convert


# --- SPACE_TO_BATCH_ND, BATCH_TO_SPACE_ND


def _batch_space(edges_name: str) -> Converter:
    """The constant block_shape [S] and paddings / crops [S, 2] inputs (S spatial axes)."""

    def convert(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
        block = check.constant_input(op, subgraph, 1, "block_shape").reshape(-1)
        edges = check.constant_input(op, subgraph, 2, edges_name)
        spatial = len(subgraph.tensors[op.inputs[0]].shape) - 2
        if (spatial not in (1, 2) or block.size != spatial or edges.shape != (spatial, 2)
                or np.any(block < 1) or np.any(edges < 0)):
            raise check.op_error(op, f"has block_shape {block.tolist()} and {edges_name} "
                                     f"{edges.tolist()}; expected positive [{spatial}] and "
                                     f"non-negative [{spatial}, 2] for a 3-D or 4-D input")
        pairs = tuple((int(before), int(after)) for before, after in edges)
        return BatchSpaceAttrs(tuple(int(b) for b in block), pairs), [op.inputs[0]]

    return convert


def _depth_to_space_options(builder: Builder, a: BlockAttrs) -> tuple[int, int]:
    tflite.DepthToSpaceOptionsStart(builder)
    tflite.DepthToSpaceOptionsAddBlockSize(builder, a.block_size)
    return tflite.BuiltinOptions.DepthToSpaceOptions, tflite.DepthToSpaceOptionsEnd(builder)


def _space_to_depth_options(builder: Builder, a: BlockAttrs) -> tuple[int, int]:
    tflite.SpaceToDepthOptionsStart(builder)
    tflite.SpaceToDepthOptionsAddBlockSize(builder, a.block_size)
    return tflite.BuiltinOptions.SpaceToDepthOptions, tflite.SpaceToDepthOptionsEnd(builder)


def _batch_space_inputs(edges_name: str) -> ConstantInputs:
    def inputs(a: BatchSpaceAttrs) -> list[tuple[str, np.ndarray]]:
        return [("block_shape", _int32(a.block_shape)),
                (edges_name, _int32(a.edges).reshape(len(a.edges), 2))]

    return inputs


def _svdf(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """Rank and fused activation; the hybrid form (asymmetric_quantize_inputs) is refused."""
    o = check.options(op, tflite.SVDFOptions, required=True)
    if o.AsymmetricQuantizeInputs():
        raise check.unsupported(op, "quantises its float input on the fly "
                                "(asymmetric_quantize_inputs, the hybrid SVDF)")
    attrs = SvdfAttrs(check.positive(op, "rank", o.Rank()),
                      check.activation(op, o.FusedActivationFunction()))
    return attrs, _present(op.inputs)


def _svdf_options(builder: Builder, a: SvdfAttrs) -> tuple[int, int]:
    tflite.SVDFOptionsStart(builder)
    tflite.SVDFOptionsAddRank(builder, a.rank)
    tflite.SVDFOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[a.activation])
    return tflite.BuiltinOptions.SVDFOptions, tflite.SVDFOptionsEnd(builder)


# --- UNIDIRECTIONAL_SEQUENCE_LSTM (fully integer)


LSTM_TFLITE_INPUTS = 24
"""lstm_shared.h: input, 4 input weights, 4 recurrent weights, 3 peephole weights, 4 biases,
projection weights and bias, output and cell state, 4 layer-norm coefficients."""
_OUTPUT_STATE, _CELL_STATE = 18, 19
_LSTM_READ = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 14, 15, _OUTPUT_STATE, _CELL_STATE)
"""The TFLite positions of the IR inputs (x, weights, biases, output state, cell state)."""
_LSTM_ABSENT = {1: "CIFG (no input gate)", 9: "peephole", 10: "peephole", 11: "peephole",
                16: "projection", 17: "projection", 20: "layer norm", 21: "layer norm",
                22: "layer norm", 23: "layer norm"}
"""Optional operands mcuflow refuses when present (or, for the input gate, absent)."""
_LSTM_INTERMEDIATES = 5
_DEFAULT_GATE = LstmAttrs.gates[0]


def _lstm_refusal(op: RawOp, subgraph: RawSubgraph) -> str | None:
    """Why mcuflow cannot run this LSTM (a variant or an activation it lacks), or None."""
    o = op.options
    if o is not None and o.FusedActivationFunction() != tflite.ActivationFunctionType.TANH:
        return "an activation other than TANH"
    if o is not None and o.DiagonalRecurrentTensors():
        return "diagonal recurrent weights"
    for position, variant in _LSTM_ABSENT.items():
        if (op.inputs[position] < 0) != (position != 1):
            return variant
    x = subgraph.tensors[op.inputs[0]]
    if x.dtype is DType.INT8 and len(op.intermediates) != _LSTM_INTERMEDIATES:
        return f"{len(op.intermediates)} intermediates (LiteRT's 8x8_8 kernel)"
    return None


def _lstm(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The integer LSTM: options, the intermediates' quantisation; its states are inputs.

    CIFG, peephole, projection and layer norm are refused.
    """
    o = check.options(op, tflite.UnidirectionalSequenceLSTMOptions)
    refusal = _lstm_refusal(op, subgraph)
    if refusal is not None:
        raise check.unsupported(op, f"uses {refusal}; mcuflow runs the integer LSTM without "
                                "CIFG, peephole, projection or layer norm, activation TANH")
    if min(op.inputs[_OUTPUT_STATE], op.inputs[_CELL_STATE]) < 0:
        raise check.op_error(op, "lacks its output or cell state tensor")
    quants = [subgraph.tensors[i].quant for i in op.intermediates]
    attrs = LstmAttrs(
        time_major=bool(o.TimeMajor()) if o else False,
        cell_clip=float(o.CellClip()) if o else 0.0,
        proj_clip=float(o.ProjClip()) if o else 0.0,
        hidden=quants[-1] if quants and quants[-1] else LstmAttrs.hidden,
        gates=tuple(q or _DEFAULT_GATE for q in quants[:-1]) or LstmAttrs.gates,
    )
    return attrs, [op.inputs[i] for i in _LSTM_READ]


def _lstm_options(builder: Builder, a: LstmAttrs) -> tuple[int, int]:
    tflite.UnidirectionalSequenceLSTMOptionsStart(builder)
    tflite.UnidirectionalSequenceLSTMOptionsAddFusedActivationFunction(
        builder, tflite.ActivationFunctionType.TANH)
    tflite.UnidirectionalSequenceLSTMOptionsAddCellClip(builder, a.cell_clip)
    tflite.UnidirectionalSequenceLSTMOptionsAddProjClip(builder, a.proj_clip)
    tflite.UnidirectionalSequenceLSTMOptionsAddTimeMajor(builder, a.time_major)
    return (tflite.BuiltinOptions.UnidirectionalSequenceLSTMOptions,
            tflite.UnidirectionalSequenceLSTMOptionsEnd(builder))


def _lstm_operands(written: list[int]) -> list[int]:
    """The 15 written IR inputs at their places among the 24 TFLite operands, -1 elsewhere."""
    operands = [NO_TENSOR] * LSTM_TFLITE_INPUTS
    for index, position in zip(written, _LSTM_READ, strict=True):
        operands[position] = index
    return operands


def _lstm_intermediates(attrs: LstmAttrs) -> list[HeldTensor]:
    """The converter's 5 intermediates: the 4 gates (int16) and the hidden value (int8)."""
    gates = [HeldTensor(f"intermediate_{i}", DType.INT16, q) for i, q in enumerate(attrs.gates)]
    return [*gates, HeldTensor("hidden", DType.INT8, attrs.hidden)]


# --- STRIDED_SLICE, SPLIT, SPLIT_V, PACK, UNPACK, TRANSPOSE, GATHER


def _ints(op: RawOp, subgraph: RawSubgraph, position: int, what: str) -> tuple[int, ...]:
    return tuple(int(v) for v in check.constant_input(op, subgraph, position, what).reshape(-1))


def _strided_slice(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The constant begin, end and strides inputs and the options' masks."""
    o = check.options(op, tflite.StridedSliceOptions)
    begin, end, strides = (_ints(op, subgraph, i, what)
                           for i, what in ((1, "begin"), (2, "end"), (3, "strides")))
    shape = subgraph.tensors[op.inputs[0]].shape
    rest = shape[len(begin):] if len(begin) == len(end) == len(strides) else ()
    begin, end, strides = (begin + (0,) * len(rest), end + tuple(rest),
                           strides + (1,) * len(rest))  # LiteRT takes trailing axes whole
    masks = (o.BeginMask(), o.EndMask(), o.ShrinkAxisMask(), o.EllipsisMask(),
             o.NewAxisMask(), bool(o.Offset())) if o else (0, 0, 0, 0, 0, False)
    return StridedSliceAttrs(begin, end, strides, *masks), [op.inputs[0]]


def _strided_slice_inputs(a: StridedSliceAttrs) -> list[tuple[str, np.ndarray]]:
    return [("begin", _int32(a.begin)), ("end", _int32(a.end)), ("strides", _int32(a.strides))]


def _strided_slice_options(builder: Builder, a: StridedSliceAttrs) -> tuple[int, int]:
    tflite.StridedSliceOptionsStart(builder)
    tflite.StridedSliceOptionsAddBeginMask(builder, a.begin_mask)
    tflite.StridedSliceOptionsAddEndMask(builder, a.end_mask)
    tflite.StridedSliceOptionsAddShrinkAxisMask(builder, a.shrink_axis_mask)
    tflite.StridedSliceOptionsAddEllipsisMask(builder, a.ellipsis_mask)
    tflite.StridedSliceOptionsAddNewAxisMask(builder, a.new_axis_mask)
    tflite.StridedSliceOptionsAddOffset(builder, a.offset)
    return tflite.BuiltinOptions.StridedSliceOptions, tflite.StridedSliceOptionsEnd(builder)


def _one_axis(op: RawOp, subgraph: RawSubgraph, position: int, rank: int) -> int:
    axis = _ints(op, subgraph, position, "axis")
    if len(axis) != 1:
        raise check.op_error(op, f"has {len(axis)} axes; it takes exactly one")
    return check.axis(op, axis[0], rank)


def _split(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The constant axis (input 0) and as many equal pieces as the op has outputs."""
    shape = subgraph.tensors[op.inputs[1]].shape
    axis = _one_axis(op, subgraph, 0, len(shape))
    pieces = len(op.outputs)
    if shape[axis] % pieces:
        raise check.op_error(op, f"splits axis {axis} of {shape} into {pieces} unequal pieces")
    return SplitAttrs(axis, (shape[axis] // pieces,) * pieces), [op.inputs[1]]


def _split_v(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The constant size_splits (one -1 takes the rest) and axis inputs."""
    shape = subgraph.tensors[op.inputs[0]].shape
    axis = _one_axis(op, subgraph, 2, len(shape))
    sizes = list(_ints(op, subgraph, 1, "size_splits"))
    if sizes.count(-1) > 1 or len(sizes) != len(op.outputs):
        raise check.op_error(op, f"has size_splits {sizes} for {len(op.outputs)} outputs")
    if -1 in sizes:
        sizes[sizes.index(-1)] = shape[axis] - sum(n for n in sizes if n != -1)
    if sum(sizes) != shape[axis] or min(sizes) < 1:
        raise check.op_error(op, f"has size_splits {sizes}, which do not cut axis {axis} of "
                                 f"{shape} into non-empty pieces")
    return SplitAttrs(axis, tuple(sizes)), [op.inputs[0]]


def _split_axis_input(a: SplitAttrs) -> list[tuple[str, np.ndarray]]:
    return [("axis", _int32(a.axis))]


def _split_v_inputs(a: SplitAttrs) -> list[tuple[str, np.ndarray]]:
    return [("size_splits", _int32(a.sizes)), ("axis", _int32(a.axis))]


def _split_options(builder: Builder, a: SplitAttrs) -> tuple[int, int]:
    tflite.SplitOptionsStart(builder)
    tflite.SplitOptionsAddNumSplits(builder, len(a.sizes))
    return tflite.BuiltinOptions.SplitOptions, tflite.SplitOptionsEnd(builder)


def _split_v_options(builder: Builder, a: SplitAttrs) -> tuple[int, int]:
    tflite.SplitVOptionsStart(builder)
    tflite.SplitVOptionsAddNumSplits(builder, len(a.sizes))
    return tflite.BuiltinOptions.SplitVOptions, tflite.SplitVOptionsEnd(builder)


def _pack(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The options' axis (of the output) and values_count, which must count the inputs."""
    o = check.options(op, tflite.PackOptions, required=True)
    rank = len(subgraph.tensors[op.inputs[0]].shape) + 1
    if o.ValuesCount() != len(op.inputs):
        raise check.op_error(op, f"has values_count {o.ValuesCount()} for {len(op.inputs)} "
                                 "inputs")
    return PackAttrs(check.axis(op, o.Axis(), rank), len(op.inputs)), list(op.inputs)


def _unpack(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The options' axis and num, which must count the outputs and the axis' elements."""
    o = check.options(op, tflite.UnpackOptions, required=True)
    shape = subgraph.tensors[op.inputs[0]].shape
    axis = check.axis(op, o.Axis(), len(shape))
    if not o.Num() == len(op.outputs) == shape[axis]:
        raise check.op_error(op, f"has num {o.Num()} for {len(op.outputs)} outputs along axis "
                                 f"{axis} of {shape}")
    return PackAttrs(axis, o.Num()), [op.inputs[0]]


def _pack_options(builder: Builder, a: PackAttrs) -> tuple[int, int]:
    tflite.PackOptionsStart(builder)
    tflite.PackOptionsAddAxis(builder, a.axis)
    tflite.PackOptionsAddValuesCount(builder, a.count)
    return tflite.BuiltinOptions.PackOptions, tflite.PackOptionsEnd(builder)


def _unpack_options(builder: Builder, a: PackAttrs) -> tuple[int, int]:
    tflite.UnpackOptionsStart(builder)
    tflite.UnpackOptionsAddAxis(builder, a.axis)
    tflite.UnpackOptionsAddNum(builder, a.count)
    return tflite.BuiltinOptions.UnpackOptions, tflite.UnpackOptionsEnd(builder)


def _transpose(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The constant perm input (negative axes counted from the end)."""
    rank = len(subgraph.tensors[op.inputs[0]].shape)
    perm = tuple(check.axis(op, a, rank) for a in _ints(op, subgraph, 1, "perm"))
    return TransposeAttrs(perm), [op.inputs[0]]


def _perm_input(a: TransposeAttrs) -> list[tuple[str, np.ndarray]]:
    return [("perm", _int32(a.perm))]


def _reverse(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The constant axis input (negative axes counted from the end), in ascending order."""
    rank = len(subgraph.tensors[op.inputs[0]].shape)
    axes = tuple(sorted(check.axis(op, a, rank) for a in _ints(op, subgraph, 1, "axis")))
    return ReverseAttrs(axes), [op.inputs[0]]


def _reverse_axis_input(a: ReverseAttrs) -> list[tuple[str, np.ndarray]]:
    return [("axis", _int32(a.axes))]


def _gather(op: RawOp, subgraph: RawSubgraph) -> tuple[OpAttrs, list[int]]:
    """The options' axis and batch_dims and the constant integer indices input."""
    o = check.options(op, tflite.GatherOptions)
    rank = len(subgraph.tensors[op.inputs[0]].shape)
    indices = check.constant_input(op, subgraph, 1, "indices")
    axis = check.axis(op, o.Axis() if o else 0, rank)
    return (GatherAttrs(axis, tuple(int(i) for i in indices.reshape(-1)), indices.shape,
                        o.BatchDims() if o else 0), [op.inputs[0]])


def _indices_input(a: GatherAttrs) -> list[tuple[str, np.ndarray]]:
    return [("indices", _int32(a.indices).reshape(a.indices_shape))]


def _gather_options(builder: Builder, a: GatherAttrs) -> tuple[int, int]:
    tflite.GatherOptionsStart(builder)
    tflite.GatherOptionsAddAxis(builder, a.axis)
    tflite.GatherOptionsAddBatchDims(builder, a.batch_dims)
    return tflite.BuiltinOptions.GatherOptions, tflite.GatherOptionsEnd(builder)


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
    OpKind.EXPAND_DIMS: TfliteOp(OP.EXPAND_DIMS, _expand_dims, _empty_options("ExpandDimsOptions"),
                                 (2, 2), constant_inputs=_expand_dims_axis_input),
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
    OpKind.SQUARED_DIFFERENCE: TfliteOp(OP.SQUARED_DIFFERENCE,
                                        write=_empty_options("SquaredDifferenceOptions"),
                                        operands=(2, 2), version=2),
    OpKind.PRELU: TfliteOp(OP.PRELU, operands=(2, 2)),
    OpKind.ABS: TfliteOp(OP.ABS, write=_empty_options("AbsOptions"), version=2),
    OpKind.SUM: TfliteOp(OP.SUM, _mean, _reducer_options, (2, 2), constant_inputs=_axes_input,
                         version=2),
    OpKind.L2_NORMALIZATION: TfliteOp(OP.L2_NORMALIZATION, _l2_normalization, _l2_norm_options,
                                      version=2),
    OpKind.LOG_SOFTMAX: TfliteOp(OP.LOG_SOFTMAX, write=_empty_options("LogSoftmaxOptions"),
                                 version=2),
    OpKind.TRANSPOSE_CONV: TfliteOp(
        OP.TRANSPOSE_CONV, _transpose_conv, _transpose_conv_options, (3, 4), OptionalBias(),
        constant_inputs=_output_shape_input, version=3, arrange=_transpose_conv_operands),
    OpKind.RESIZE_BILINEAR: TfliteOp(
        OP.RESIZE_BILINEAR, _resize_bilinear, _resize_bilinear_options, (2, 2),
        constant_inputs=_resize_size_input, version=3),
    OpKind.TILE: TfliteOp(OP.TILE, _tile, _empty_options("TileOptions"), (2, 2),
                          constant_inputs=_multiples_input, version=2),
    OpKind.BROADCAST_TO: TfliteOp(OP.BROADCAST_TO, _broadcast_to,
                                  _empty_options("BroadcastToOptions"), (2, 2),
                                  constant_inputs=_broadcast_shape_input, version=2),
    OpKind.DEPTH_TO_SPACE: TfliteOp(OP.DEPTH_TO_SPACE, _block(tflite.DepthToSpaceOptions),
                                    _depth_to_space_options),
    OpKind.SPACE_TO_DEPTH: TfliteOp(OP.SPACE_TO_DEPTH, _block(tflite.SpaceToDepthOptions),
                                    _space_to_depth_options),
    OpKind.SPACE_TO_BATCH_ND: TfliteOp(
        OP.SPACE_TO_BATCH_ND, _batch_space("paddings"), _empty_options("SpaceToBatchNDOptions"),
        (3, 3), constant_inputs=_batch_space_inputs("paddings"), version=2),
    OpKind.BATCH_TO_SPACE_ND: TfliteOp(
        OP.BATCH_TO_SPACE_ND, _batch_space("crops"), _empty_options("BatchToSpaceNDOptions"),
        (3, 3), constant_inputs=_batch_space_inputs("crops"), version=2),
    OpKind.SVDF: TfliteOp(OP.SVDF, _svdf, _svdf_options, (5, 5), version=3, optional=(3,)),
    OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM: TfliteOp(
        OP.UNIDIRECTIONAL_SEQUENCE_LSTM, _lstm, _lstm_options,
        (LSTM_TFLITE_INPUTS, LSTM_TFLITE_INPUTS), arrange=_lstm_operands, required=1,
        intermediates=_lstm_intermediates),
    OpKind.STRIDED_SLICE: TfliteOp(OP.STRIDED_SLICE, _strided_slice, _strided_slice_options,
                                   (4, 4), constant_inputs=_strided_slice_inputs, version=2),
    OpKind.SPLIT: TfliteOp(OP.SPLIT, _split, _split_options, (2, 2),
                           constant_inputs=_split_axis_input, constants_first=True, version=2),
    OpKind.SPLIT_V: TfliteOp(OP.SPLIT_V, _split_v, _split_v_options, (3, 3),
                             constant_inputs=_split_v_inputs, version=2),
    OpKind.PACK: TfliteOp(OP.PACK, _pack, _pack_options, (1, 1 << 16), version=2),
    OpKind.UNPACK: TfliteOp(OP.UNPACK, _unpack, _unpack_options, version=2),
    OpKind.TRANSPOSE: TfliteOp(OP.TRANSPOSE, _transpose, _empty_options("TransposeOptions"),
                               (2, 2), constant_inputs=_perm_input, version=2),
    OpKind.GATHER: TfliteOp(OP.GATHER, _gather, _gather_options, (2, 2),
                            constant_inputs=_indices_input, version=2),
    OpKind.REVERSE_V2: TfliteOp(OP.REVERSE_V2, _reverse, _empty_options("ReverseV2Options"),
                                (2, 2), constant_inputs=_reverse_axis_input, version=2),
})
"""The TFLite form of every OpKind."""

KIND_OF_BUILTIN: dict[int, OpKind] = {op.builtin: kind for kind, op in TFLITE_OPS.items()}
"""The OpKind of each BuiltinOperator code mcuflow reads."""
