"""One definition per op: kind, attributes, operands, shape rule, MACs, quantisation, support."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from mcuflow.ir.enums import Activation, Padding, WindowPadding, along
from mcuflow.ir.graph import DType
from mcuflow.ir.quantization import QuantParams, describe_quant
from mcuflow.ir.registry import OpTable
from mcuflow.ir.shapes import Shape, ShapeError, conv_output_size, input_shape, require_rank

if TYPE_CHECKING:
    from mcuflow.ir.graph import Graph, Operator


class OpKind(Enum):
    """Every operator mcuflow knows; each has an OpDef below and a hook in every registry."""

    CONV_2D = "CONV_2D"
    DEPTHWISE_CONV_2D = "DEPTHWISE_CONV_2D"
    FULLY_CONNECTED = "FULLY_CONNECTED"
    ADD = "ADD"
    SUB = "SUB"
    MUL = "MUL"
    AVERAGE_POOL_2D = "AVERAGE_POOL_2D"
    MAX_POOL_2D = "MAX_POOL_2D"
    MEAN = "MEAN"
    RESHAPE = "RESHAPE"
    SQUEEZE = "SQUEEZE"
    SOFTMAX = "SOFTMAX"
    PAD = "PAD"
    CONCATENATION = "CONCATENATION"
    LOGISTIC = "LOGISTIC"
    TANH = "TANH"
    HARD_SWISH = "HARD_SWISH"
    RELU = "RELU"
    RELU6 = "RELU6"
    LEAKY_RELU = "LEAKY_RELU"
    QUANTIZE = "QUANTIZE"
    DEQUANTIZE = "DEQUANTIZE"
    MAXIMUM = "MAXIMUM"
    MINIMUM = "MINIMUM"
    SLICE = "SLICE"
    REDUCE_MAX = "REDUCE_MAX"
    REDUCE_MIN = "REDUCE_MIN"
    ARG_MAX = "ARG_MAX"
    ARG_MIN = "ARG_MIN"
    RESIZE_NEAREST_NEIGHBOR = "RESIZE_NEAREST_NEIGHBOR"


@dataclass(frozen=True)
class NoAttrs:
    """Ops without attributes (RELU, LOGISTIC, QUANTIZE...)."""


@dataclass(frozen=True)
class Conv2DAttrs:
    """CONV_2D. Inputs: x [N,H,W,C], filter [O,KH,KW,C], optional bias [O] int32."""

    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    padding: WindowPadding = Padding.VALID
    activation: Activation = Activation.NONE


@dataclass(frozen=True)
class DepthwiseConv2DAttrs:
    """DEPTHWISE_CONV_2D. Inputs: x [N,H,W,C], filter [1,KH,KW,C*M], optional bias [C*M]."""

    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    depth_multiplier: int = 1
    padding: WindowPadding = Padding.VALID
    activation: Activation = Activation.NONE


@dataclass(frozen=True)
class FullyConnectedAttrs:
    """FULLY_CONNECTED. Inputs: x [..., K], weights [O,K], optional bias [O]."""

    activation: Activation = Activation.NONE
    keep_num_dims: bool = False


@dataclass(frozen=True)
class ElementwiseAttrs:
    """ADD, SUB, MUL with numpy broadcasting."""

    activation: Activation = Activation.NONE


@dataclass(frozen=True)
class Pool2DAttrs:
    """AVERAGE_POOL_2D and MAX_POOL_2D."""

    filter_h: int = 1
    filter_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    padding: WindowPadding = Padding.VALID
    activation: Activation = Activation.NONE


@dataclass(frozen=True)
class MeanAttrs:
    """MEAN, REDUCE_MAX and REDUCE_MIN over `axes` (TFLite's constant axis tensor, folded into
    the attribute)."""

    axes: tuple[int, ...] = ()
    keep_dims: bool = False


@dataclass(frozen=True)
class ReshapeAttrs:
    """RESHAPE to a fully known `new_shape` (the constant shape input, folded)."""

    new_shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class SqueezeAttrs:
    """SQUEEZE of `axes` (all size-1 axes when empty)."""

    axes: tuple[int, ...] = ()


@dataclass(frozen=True)
class SoftmaxAttrs:
    """SOFTMAX along the last axis."""

    beta: float = 1.0


@dataclass(frozen=True)
class PadAttrs:
    """PAD with constant zero point; `paddings` is one (before, after) pair per axis."""

    paddings: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class SliceAttrs:
    """SLICE of `size` elements from `begin` on every axis (TFLite's constant begin and size
    inputs, folded; a size of -1 there means "to the end" and is resolved on import)."""

    begin: tuple[int, ...] = ()
    size: tuple[int, ...] = ()


@dataclass(frozen=True)
class ConcatenationAttrs:
    """CONCATENATION along `axis` (non-negative after import)."""

    axis: int = 0
    activation: Activation = Activation.NONE


@dataclass(frozen=True)
class LeakyReluAttrs:
    """LEAKY_RELU: x if x >= 0 else alpha * x."""

    alpha: float = 0.2


@dataclass(frozen=True)
class ResizeNearestNeighborAttrs:
    """RESIZE_NEAREST_NEIGHBOR of an NHWC image to `size` (new_h, new_w): TFLite's constant size
    input, folded. Each output pixel copies the input pixel LiteRT's GetNearestNeighbor picks."""

    size: tuple[int, int] = (1, 1)
    align_corners: bool = False
    half_pixel_centers: bool = False


@dataclass(frozen=True)
class ArgAttrs:
    """ARG_MAX and ARG_MIN along `axis` (TFLite's constant axis input, folded; non-negative):
    the index of the first largest (smallest) value, written as `output_type`."""

    axis: int = 0
    output_type: DType = DType.INT32


OpAttrs = (
    NoAttrs
    | Conv2DAttrs
    | DepthwiseConv2DAttrs
    | FullyConnectedAttrs
    | ElementwiseAttrs
    | Pool2DAttrs
    | MeanAttrs
    | ReshapeAttrs
    | SqueezeAttrs
    | SoftmaxAttrs
    | PadAttrs
    | ConcatenationAttrs
    | SliceAttrs
    | LeakyReluAttrs
    | ArgAttrs
    | ResizeNearestNeighborAttrs
)


ShapeRule = Callable[["Graph", "Operator"], list[Shape]]
"""The output shapes of an op from its input shapes and attributes (ShapeError when they clash)."""

MacsRule = Callable[["Graph", "Operator"], int]
"""The multiply-accumulates an op performs."""

Check = Callable[["Graph", "Operator"], str | None]
"""A support check: None when the op satisfies it, else what it found ("rank 6 found"); its
docstring is the requirement the user reads (mcuflow.ir.constraints)."""

MAX_OPERANDS = 1 << 16
"""Upper bound of a variadic op's operands (CONCATENATION)."""

MAX_RANK = 5
"""Dimensions the C kernels' shape structs hold (element-wise broadcast, MEAN, PAD, SLICE): the
C side is MCUFLOW_MAX_RANK in codegen/kernels/mcuflow_common.h (tests/codegen/test_max_rank.py)."""

BIAS_SCALE_TOLERANCE = 0.02
"""LiteRT's GetQuantizedConvolutionMultipler: |input x weight scale - bias scale| / output scale."""


def _no_macs(graph: Graph, op: Operator) -> int:
    return 0


@dataclass(frozen=True)
class OpDef:
    """Everything every stage knows of one op kind, independent of any kernel.

    `attrs` is its attribute dataclass; `inputs` the (fewest, most) operands in the IR, after
    the importers fold constant shape and axis operands into attributes; `outputs` its results.
    `shape` gives the output shapes, `macs` its multiply-accumulates and `element_ops` its
    non-MAC work per output element (requantisation, table steps, copies: an estimate for
    cores without fitted kernels). Quantisation: `weight_axis` is the output-channel axis of
    a weighted op's weights (input 1; input 2 is its int32 bias); `shared_quant` ops have one
    scale and zero point on every int8 input and output (TFLite's rule); `fixed_output` is the
    output quantisation TFLite's int8 kernel requires; only a `float_input` op may read float32
    and only a `float_output` op may write it; an `index_output` op writes integer indices
    (ARG_MAX), not int8 values. `checks` are its own support rules, in the order
    a user reads them (the rules of every op and of every weighted op are in ir.constraints).
    """

    kind: OpKind
    attrs: type
    shape: ShapeRule
    inputs: tuple[int, int] = (1, 1)
    outputs: int = 1
    macs: MacsRule = _no_macs
    element_ops: int = 0
    weight_axis: int | None = None
    shared_quant: bool = False
    fixed_output: QuantParams | None = None
    float_input: bool = False
    float_output: bool = False
    index_output: bool = False
    checks: tuple[Check, ...] = ()


# --- shape rules ------------------------------------------------------------------------------


def _window_output(h: int, w: int, kh: int, kw: int,
                   attrs: Conv2DAttrs | DepthwiseConv2DAttrs) -> tuple[int, int]:
    """(OH, OW) of a convolution's window over an H x W input."""
    return (conv_output_size(h, kh, attrs.stride_h, attrs.dilation_h, along(attrs.padding, 0)),
            conv_output_size(w, kw, attrs.stride_w, attrs.dilation_w, along(attrs.padding, 1)))


def _conv2d_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: Conv2DAttrs = op.attrs
    n, h, w, in_c = require_rank(graph, op, 0, 4)
    out_c, kh, kw, depth = require_rank(graph, op, 1, 4)
    if depth != in_c:
        raise ShapeError(f"CONV_2D '{op.name}': the filter's depth {depth} differs from the "
                         f"input's {in_c} channels")
    return [(n, *_window_output(h, w, kh, kw, attrs), out_c)]


def _depthwise_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: DepthwiseConv2DAttrs = op.attrs
    n, h, w, in_c = require_rank(graph, op, 0, 4)
    one, kh, kw, out_c = require_rank(graph, op, 1, 4)
    if one != 1 or out_c != in_c * attrs.depth_multiplier:
        raise ShapeError(f"DEPTHWISE_CONV_2D '{op.name}': filter {(one, kh, kw, out_c)} does not "
                         f"fit {in_c} input channels and depth multiplier "
                         f"{attrs.depth_multiplier}")
    return [(n, *_window_output(h, w, kh, kw, attrs), out_c)]


def _fully_connected_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: FullyConnectedAttrs = op.attrs
    x = input_shape(graph, op, 0)
    out_c, depth = require_rank(graph, op, 1, 2)
    if attrs.keep_num_dims:
        if not x or x[-1] != depth:
            raise ShapeError(f"FULLY_CONNECTED '{op.name}': input {x} does not end in the "
                             f"weights' depth {depth}")
        return [(*x[:-1], out_c)]
    size = int(np.prod(x, dtype=np.int64))
    if depth <= 0 or size % depth:
        raise ShapeError(f"FULLY_CONNECTED '{op.name}': input of {size} elements is not a "
                         f"multiple of the weights' depth {depth}")
    return [(size // depth, out_c)]


def _broadcast_shape(graph: Graph, op: Operator) -> list[Shape]:
    try:
        shape = np.broadcast_shapes(input_shape(graph, op, 0), input_shape(graph, op, 1))
    except ValueError as error:
        raise ShapeError(f"{op.kind.value} '{op.name}': {error}") from None
    return [tuple(int(d) for d in shape)]


def _pool_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: Pool2DAttrs = op.attrs
    n, h, w, c = require_rank(graph, op, 0, 4)
    oh = conv_output_size(h, attrs.filter_h, attrs.stride_h, 1, along(attrs.padding, 0))
    ow = conv_output_size(w, attrs.filter_w, attrs.stride_w, 1, along(attrs.padding, 1))
    return [(n, oh, ow, c)]


def _mean_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: MeanAttrs = op.attrs
    x = input_shape(graph, op, 0)
    axes = {a % len(x) for a in attrs.axes}
    if attrs.keep_dims:
        return [tuple(1 if i in axes else d for i, d in enumerate(x))]
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def _reshape_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: ReshapeAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if int(np.prod(attrs.new_shape, dtype=np.int64)) != int(np.prod(x, dtype=np.int64)):
        raise ShapeError(f"RESHAPE '{op.name}': cannot reshape {x} to {attrs.new_shape}")
    return [attrs.new_shape]


def _squeeze_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: SqueezeAttrs = op.attrs
    x = input_shape(graph, op, 0)
    axes = {a % len(x) for a in attrs.axes} if attrs.axes else {
        i for i, d in enumerate(x) if d == 1
    }
    if any(x[axis] != 1 for axis in axes):
        raise ShapeError(f"SQUEEZE '{op.name}': cannot squeeze axes {sorted(axes)} of {x}")
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def _pad_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: PadAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if len(attrs.paddings) != len(x):
        raise ShapeError(f"PAD '{op.name}': {len(attrs.paddings)} padding pairs for rank {len(x)}")
    return [tuple(d + before + after for d, (before, after) in zip(x, attrs.paddings, strict=True))]


def _slice_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: SliceAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if len(attrs.begin) != len(x) or len(attrs.size) != len(x) or any(
            b < 0 or n < 1 or b + n > d for b, n, d in zip(attrs.begin, attrs.size, x,
                                                           strict=True)):
        raise ShapeError(f"SLICE '{op.name}': begin {attrs.begin} and size {attrs.size} do not "
                         f"lie inside {x}")
    return [attrs.size]


def _concatenation_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: ConcatenationAttrs = op.attrs
    shapes = [graph.tensors[name].shape for name in op.inputs]
    first = shapes[0]
    for shape in shapes[1:]:
        if len(shape) != len(first) or any(
            a != b for i, (a, b) in enumerate(zip(shape, first, strict=True)) if i != attrs.axis
        ):
            raise ShapeError(f"CONCATENATION '{op.name}': shapes {shapes} differ off axis "
                             f"{attrs.axis}")
    total = sum(shape[attrs.axis] for shape in shapes)
    return [tuple(total if i == attrs.axis else d for i, d in enumerate(first))]


def _same_shape(graph: Graph, op: Operator) -> list[Shape]:
    return [input_shape(graph, op, 0)]


def _resize_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: ResizeNearestNeighborAttrs = op.attrs
    n, _, _, c = require_rank(graph, op, 0, 4)
    if len(attrs.size) != 2 or min(attrs.size) < 1:
        raise ShapeError(f"RESIZE_NEAREST_NEIGHBOR '{op.name}': size {attrs.size} is not two "
                         "positive dimensions")
    return [(n, *attrs.size, c)]


def resize_not_both_modes(graph: Graph, op: Operator) -> str | None:
    """align_corners and half_pixel_centers cannot both be set (TensorFlow refuses the pair)."""
    attrs: ResizeNearestNeighborAttrs = op.attrs
    both = attrs.align_corners and attrs.half_pixel_centers
    return "align_corners and half_pixel_centers found" if both else None


def _arg_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: ArgAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if not 0 <= attrs.axis < len(x):
        raise ShapeError(f"{op.kind.value} '{op.name}': axis {attrs.axis} outside input {x}")
    return [tuple(d for i, d in enumerate(x) if i != attrs.axis)]


# --- MACs ---------------------------------------------------------------------------------------


def _out_elems(graph: Graph, op: Operator) -> int:
    return graph.tensors[op.outputs[0]].size


def _conv2d_macs(graph: Graph, op: Operator) -> int:
    """Filter [O, KH, KW, Cin]: KH x KW x Cin MACs per output element."""
    _, kh, kw, cin = graph.tensors[op.inputs[1]].shape
    return _out_elems(graph, op) * kh * kw * cin


def _depthwise_macs(graph: Graph, op: Operator) -> int:
    """Filter [1, KH, KW, C*M]: KH x KW MACs per output element."""
    _, kh, kw, _ = graph.tensors[op.inputs[1]].shape
    return _out_elems(graph, op) * kh * kw


def _fully_connected_macs(graph: Graph, op: Operator) -> int:
    """Weights [O, K]: K MACs per output element."""
    return _out_elems(graph, op) * graph.tensors[op.inputs[1]].shape[-1]


def _pool_macs(graph: Graph, op: Operator) -> int:
    """One MAC (or compare) per window element."""
    return _out_elems(graph, op) * op.attrs.filter_h * op.attrs.filter_w


def _input_macs(graph: Graph, op: Operator) -> int:
    """Every input element is accumulated once."""
    return graph.tensors[op.inputs[0]].size


# --- support checks of particular ops -----------------------------------------------------------


def fc_bias_scale(graph: Graph, op: Operator) -> str | None:
    """With per-tensor weights, the bias scale must equal input scale x weight scale within 2 %
    of the output scale (LiteRT refuses the layer otherwise)."""
    weights = graph.tensors[op.inputs[1]].quant
    bias = graph.tensors[op.inputs[2]].quant if len(op.inputs) > 2 else None
    x, out = graph.tensors[op.inputs[0]].quant, graph.tensors[op.outputs[0]].quant
    if bias is None or weights is None or weights.is_per_channel or x is None or out is None:
        return None
    product = float(x.scale0) * float(weights.scale0)
    ratio = abs(product - float(bias.scale0)) / float(out.scale0)
    if ratio <= BIAS_SCALE_TOLERANCE:
        return None
    return f"bias scale {bias.scale0:.6g} for input x weight scale {product:.6g} found"


def same_quantisation(graph: Graph, op: Operator) -> str | None:
    """Input and output must share scale and zero point (TFLite's int8 requirement)."""
    source = graph.tensors[op.inputs[0]].quant
    target = graph.tensors[op.outputs[0]].quant
    if source is None or target is None or source == target:
        return None
    return f"input ({describe_quant(source)}) and output ({describe_quant(target)}) found"


S16_UNIT_OUTPUT = QuantParams.per_tensor(1.0 / 32768.0, 0)
"""The output quantisation of LiteRT's int16 SOFTMAX (and int16 LOGISTIC and TANH)."""


def _output_range(graph: Graph, op: Operator) -> str | None:
    quant = graph.tensors[op.outputs[0]].quant
    fixed = OP_DEFS[op.kind].fixed_output
    if graph.tensors[op.outputs[0]].dtype is DType.INT16:
        fixed = S16_UNIT_OUTPUT
    if quant is None or fixed is None or (quant.scale, quant.zero_point) == (
            fixed.scale, fixed.zero_point):
        return None
    return f"output {describe_quant(quant)} found"


def unit_output_range(graph: Graph, op: Operator) -> str | None:
    """The int8 output must use scale 1/256 and zero point -128 (TFLite's int8 requirement), an
    int16 output scale 1/32768 and zero point 0."""
    return _output_range(graph, op)


def tanh_output_range(graph: Graph, op: Operator) -> str | None:
    """The int8 output must use scale 1/128 and zero point 0 (TFLite's int8 requirement), an
    int16 output scale 1/32768 and zero point 0."""
    return _output_range(graph, op)


def concat_same_quantisation(graph: Graph, op: Operator) -> str | None:
    """Every input must share the output's scale and zero point."""
    out = graph.tensors[op.outputs[0]].quant
    if out is None:
        return None
    for index, name in enumerate(op.inputs):
        quant = graph.tensors[name].quant
        if quant is not None and quant != out:
            return (f"input {index} ({describe_quant(quant)}) and output "
                    f"({describe_quant(out)}) found")
    return None


def concat_no_activation(graph: Graph, op: Operator) -> str | None:
    """CONCATENATION cannot fuse an activation (LiteRT rejects it): apply the activation as a
    separate op."""
    activation = op.attrs.activation
    return None if activation is Activation.NONE else f"fused {activation.value} found"


def quantize_per_tensor(graph: Graph, op: Operator) -> str | None:
    """QUANTIZE must read float32, int8 or int16 and write per-tensor int8 or int16."""
    source = graph.tensors[op.inputs[0]].dtype
    if source not in (DType.FLOAT32, DType.INT8, DType.INT16):
        return f"{source.value} input found"
    quant = graph.tensors[op.outputs[0]].quant
    return "per-channel output found" if quant is not None and quant.is_per_channel else None


def dequantize_to_float(graph: Graph, op: Operator) -> str | None:
    """DEQUANTIZE must read per-tensor int8 or int16 and write float32."""
    target = graph.tensors[op.outputs[0]].dtype
    if target is not DType.FLOAT32:
        return f"{target.value} output found"
    quant = graph.tensors[op.inputs[0]].quant
    return "per-channel input found" if quant is not None and quant.is_per_channel else None


def rank_at_most_5(graph: Graph, op: Operator) -> str | None:
    """Inputs and outputs may have at most 5 dimensions (the C kernels' limit)."""
    rank = max(len(graph.tensors[name].shape) for name in (*op.inputs, *op.outputs))
    return f"rank {rank} found" if rank > MAX_RANK else None


INDEX_TYPES = (DType.INT32, DType.INT64)
"""The types ARG_MAX and ARG_MIN may write their indices as."""


def integer_indices(graph: Graph, op: Operator) -> str | None:
    """The output must hold int32 or int64 indices, of the type output_type names."""
    out = graph.tensors[op.outputs[0]].dtype
    declared = op.attrs.output_type
    if out in INDEX_TYPES and declared is out:
        return None
    return f"{out.value} output found" if out not in INDEX_TYPES else (
        f"output_type {declared.value} for an {out.value} output found")


# --- the definitions ----------------------------------------------------------------------------


_WEIGHTED_OPERANDS = (2, 3)  # input, weights, optional int32 bias
_UNIT_OUTPUT = QuantParams.per_tensor(1.0 / 256.0, -128)

_DEFINITIONS = (
    OpDef(OpKind.CONV_2D, Conv2DAttrs, _conv2d_shape, _WEIGHTED_OPERANDS, macs=_conv2d_macs,
          element_ops=1, weight_axis=0),
    OpDef(OpKind.DEPTHWISE_CONV_2D, DepthwiseConv2DAttrs, _depthwise_shape, _WEIGHTED_OPERANDS,
          macs=_depthwise_macs, element_ops=1, weight_axis=3),
    OpDef(OpKind.FULLY_CONNECTED, FullyConnectedAttrs, _fully_connected_shape,
          _WEIGHTED_OPERANDS, macs=_fully_connected_macs, element_ops=1, weight_axis=0,
          checks=(fc_bias_scale,)),
    OpDef(OpKind.ADD, ElementwiseAttrs, _broadcast_shape, (2, 2), macs=_out_elems,
          element_ops=2, checks=(rank_at_most_5,)),
    OpDef(OpKind.SUB, ElementwiseAttrs, _broadcast_shape, (2, 2), macs=_out_elems,
          element_ops=2, checks=(rank_at_most_5,)),
    OpDef(OpKind.MUL, ElementwiseAttrs, _broadcast_shape, (2, 2), macs=_out_elems,
          element_ops=1, checks=(rank_at_most_5,)),
    OpDef(OpKind.AVERAGE_POOL_2D, Pool2DAttrs, _pool_shape, macs=_pool_macs, element_ops=1,
          shared_quant=True, checks=(same_quantisation,)),
    OpDef(OpKind.MAX_POOL_2D, Pool2DAttrs, _pool_shape, macs=_pool_macs, element_ops=1,
          shared_quant=True, checks=(same_quantisation,)),
    OpDef(OpKind.MEAN, MeanAttrs, _mean_shape, macs=_input_macs, element_ops=1,
          checks=(rank_at_most_5,)),
    OpDef(OpKind.RESHAPE, ReshapeAttrs, _reshape_shape, shared_quant=True,
          checks=(same_quantisation,)),
    OpDef(OpKind.SQUEEZE, SqueezeAttrs, _squeeze_shape, shared_quant=True,
          checks=(same_quantisation,)),
    OpDef(OpKind.SOFTMAX, SoftmaxAttrs, _same_shape, element_ops=8, fixed_output=_UNIT_OUTPUT,
          checks=(unit_output_range,)),
    OpDef(OpKind.PAD, PadAttrs, _pad_shape, element_ops=1, shared_quant=True,
          checks=(same_quantisation, rank_at_most_5)),
    OpDef(OpKind.CONCATENATION, ConcatenationAttrs, _concatenation_shape, (1, MAX_OPERANDS),
          element_ops=1, shared_quant=True,
          checks=(concat_same_quantisation, concat_no_activation)),
    OpDef(OpKind.LOGISTIC, NoAttrs, _same_shape, element_ops=4, fixed_output=_UNIT_OUTPUT,
          checks=(unit_output_range,)),
    OpDef(OpKind.TANH, NoAttrs, _same_shape, element_ops=4,
          fixed_output=QuantParams.per_tensor(1.0 / 128.0, 0), checks=(tanh_output_range,)),
    OpDef(OpKind.HARD_SWISH, NoAttrs, _same_shape, element_ops=6),
    OpDef(OpKind.RELU, NoAttrs, _same_shape, element_ops=1),
    OpDef(OpKind.RELU6, NoAttrs, _same_shape, element_ops=1),
    OpDef(OpKind.LEAKY_RELU, LeakyReluAttrs, _same_shape, element_ops=2),
    OpDef(OpKind.QUANTIZE, NoAttrs, _same_shape, element_ops=2, float_input=True,
          checks=(quantize_per_tensor,)),
    OpDef(OpKind.DEQUANTIZE, NoAttrs, _same_shape, element_ops=2, float_output=True,
          checks=(dequantize_to_float,)),
    OpDef(OpKind.MAXIMUM, NoAttrs, _broadcast_shape, (2, 2), element_ops=1, shared_quant=True,
          checks=(rank_at_most_5,)),
    OpDef(OpKind.MINIMUM, NoAttrs, _broadcast_shape, (2, 2), element_ops=1, shared_quant=True,
          checks=(rank_at_most_5,)),
    OpDef(OpKind.SLICE, SliceAttrs, _slice_shape, element_ops=1, shared_quant=True,
          checks=(same_quantisation, rank_at_most_5)),
    OpDef(OpKind.REDUCE_MAX, MeanAttrs, _mean_shape, macs=_input_macs, element_ops=1,
          shared_quant=True, checks=(same_quantisation, rank_at_most_5)),
    OpDef(OpKind.REDUCE_MIN, MeanAttrs, _mean_shape, macs=_input_macs, element_ops=1,
          shared_quant=True, checks=(same_quantisation, rank_at_most_5)),
    OpDef(OpKind.ARG_MAX, ArgAttrs, _arg_shape, macs=_input_macs, element_ops=1,
          index_output=True, checks=(integer_indices, rank_at_most_5)),
    OpDef(OpKind.ARG_MIN, ArgAttrs, _arg_shape, macs=_input_macs, element_ops=1,
          index_output=True, checks=(integer_indices, rank_at_most_5)),
    OpDef(OpKind.RESIZE_NEAREST_NEIGHBOR, ResizeNearestNeighborAttrs, _resize_shape,
          element_ops=1, shared_quant=True, checks=(same_quantisation, resize_not_both_modes)),
)

OP_DEFS: OpTable[OpDef] = OpTable("definition", entries={d.kind: d for d in _DEFINITIONS})
"""The definition of every OpKind."""


def infer_output_shapes(graph: Graph, op: Operator) -> list[Shape]:
    """Output shapes of `op` from its input shapes and attributes."""
    return OP_DEFS[op.kind].shape(graph, op)


def op_macs(graph: Graph, op: Operator) -> int:
    """The multiply-accumulates `op` performs (see each OpDef's `macs`)."""
    return int(OP_DEFS[op.kind].macs(graph, op))
