"""One definition per op: kind, attributes, operands, shape rule, MACs, quantisation, support."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mcuflow.ir.crop import Crop, crop_error, whole_input_hw
from mcuflow.ir.enums import Activation, IdentityEnum, Padding, WindowPadding, along
from mcuflow.ir.graph import DType
from mcuflow.ir.quantization import QuantParams, describe_quant
from mcuflow.ir.registry import OpTable
from mcuflow.ir.resize_bilinear import bilinear_axis
from mcuflow.ir.shapes import Shape, ShapeError, conv_output_size, input_shape, require_rank
from mcuflow.ir.svdf import svdf_checks, svdf_macs, svdf_shape

if TYPE_CHECKING:
    from mcuflow.ir.graph import Graph, Operator


class OpKind(IdentityEnum):
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
    EXPAND_DIMS = "EXPAND_DIMS"
    SQUARED_DIFFERENCE = "SQUARED_DIFFERENCE"
    PRELU = "PRELU"
    ABS = "ABS"
    SUM = "SUM"
    L2_NORMALIZATION = "L2_NORMALIZATION"
    LOG_SOFTMAX = "LOG_SOFTMAX"
    TRANSPOSE_CONV = "TRANSPOSE_CONV"
    RESIZE_BILINEAR = "RESIZE_BILINEAR"
    TILE = "TILE"
    DEPTH_TO_SPACE = "DEPTH_TO_SPACE"
    SPACE_TO_DEPTH = "SPACE_TO_DEPTH"
    BROADCAST_TO = "BROADCAST_TO"
    SPACE_TO_BATCH_ND = "SPACE_TO_BATCH_ND"
    BATCH_TO_SPACE_ND = "BATCH_TO_SPACE_ND"
    SVDF = "SVDF"
    UNIDIRECTIONAL_SEQUENCE_LSTM = "UNIDIRECTIONAL_SEQUENCE_LSTM"
    STRIDED_SLICE = "STRIDED_SLICE"
    SPLIT = "SPLIT"
    SPLIT_V = "SPLIT_V"
    PACK = "PACK"
    UNPACK = "UNPACK"
    TRANSPOSE = "TRANSPOSE"
    GATHER = "GATHER"
    REVERSE_V2 = "REVERSE_V2"


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
class ExpandDimsAttrs:
    """EXPAND_DIMS: a size-1 axis inserted at `axis` of the output (TFLite's constant axis input,
    folded; non-negative)."""

    axis: int = 0


@dataclass(frozen=True)
class BatchSpaceAttrs:
    """SPACE_TO_BATCH_ND (`edges` are its paddings) and BATCH_TO_SPACE_ND (`edges` are its
    crops): TFLite's constant block_shape and paddings / crops inputs, folded. One block size
    and one (before, after) pair per spatial axis: two for NHWC, one for a 3-D [N, W, C] input."""

    block_shape: tuple[int, ...] = (1, 1)
    edges: tuple[tuple[int, int], ...] = ((0, 0), (0, 0))


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
    crop: Crop | None = None


@dataclass(frozen=True)
class ArgAttrs:
    """ARG_MAX and ARG_MIN along `axis` (TFLite's constant axis input, folded; non-negative):
    the index of the first largest (smallest) value, written as `output_type`."""

    axis: int = 0
    output_type: DType = DType.INT32


@dataclass(frozen=True)
class TransposeConvAttrs:
    """TRANSPOSE_CONV. Inputs: x [N,H,W,C], filter [O,KH,KW,C], optional bias [O] int32.

    `output_shape` is TFLite's constant output_shape input [N, OH, OW, O], folded; the padding
    is LiteRT's ComputePaddingHeightWidth over that output size.
    """

    output_shape: tuple[int, int, int, int] = (1, 1, 1, 1)
    stride_h: int = 1
    stride_w: int = 1
    padding: Padding = Padding.VALID
    activation: Activation = Activation.NONE
    crop: Crop | None = None

    @property
    def output_hw(self) -> tuple[int, int]:
        """(OH, OW)."""
        return self.output_shape[1], self.output_shape[2]

    @property
    def window_hw(self) -> tuple[int, int]:
        """The (H, W) this op computes: the crop's output window, else (OH, OW)."""
        return self.crop.out_size if self.crop is not None else self.output_hw


@dataclass(frozen=True)
class ResizeBilinearAttrs:
    """RESIZE_BILINEAR of an NHWC image to `size` (new_h, new_w): TFLite's constant size input,
    folded. Each output pixel interpolates four input pixels with LiteRT's 10-bit fixed-point
    weights (ResizeBilinearInteger)."""

    size: tuple[int, int] = (1, 1)
    align_corners: bool = False
    half_pixel_centers: bool = False
    crop: Crop | None = None


@dataclass(frozen=True)
class TileAttrs:
    """TILE: the input repeated `multiples[d]` times along each axis d (TFLite's constant
    multiples input, folded)."""

    multiples: tuple[int, ...] = ()


@dataclass(frozen=True)
class BroadcastToAttrs:
    """BROADCAST_TO: the input broadcast to `shape` (TFLite's constant shape input, folded);
    numpy's rule: missing leading axes and size-1 axes are repeated."""

    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class BlockAttrs:
    """DEPTH_TO_SPACE and SPACE_TO_DEPTH of an NHWC image by `block_size` (TFLite's order of the
    channels within a block: row, column, channel; ONNX's DCR)."""

    block_size: int = 2
    crop: Crop | None = None


@dataclass(frozen=True)
class SvdfAttrs:
    """SVDF. Inputs: x [B, input_size], weights_feature [filters, input_size] int8,
    weights_time [filters, memory] int16, optional bias [filters / rank] int32, and the variable
    activation state [B, memory * filters] int16 it updates. `activation` is the fused
    activation TFLite records: the int8 kernel applies none (its output is clamped to int8
    only); LiteRT's accepts RELU only, TFLM's NONE too."""

    rank: int = 1
    activation: Activation = Activation.RELU


@dataclass(frozen=True)
class LstmAttrs:
    """UNIDIRECTIONAL_SEQUENCE_LSTM, fully integer (LiteRT's "8x8_16" kernel), TANH activation.

    IR inputs: x [batch, time, features] ([time, batch, features] when `time_major`), the int8
    input weights [units, features] of the input, forget, cell and output gates, their
    recurrent weights [units, units], their four int32 biases [units], then the two variable
    tensors [batch, units] it updates (TFLite's operands 18 and 19): the int8 output state
    (quantised as the output) and the int16 cell state (zero point 0, a power-of-two scale).
    `hidden` is the quantisation of the converter's fifth intermediate (the output gate times
    tanh of the cell), `gates` those of the first four (unused without layer norm, kept to write
    them back); `cell_clip`, `proj_clip` are the options' clips (0: none).
    """

    time_major: bool = False
    cell_clip: float = 0.0
    proj_clip: float = 0.0
    hidden: QuantParams = QuantParams((2.0**-7,), (0,))
    gates: tuple[QuantParams, ...] = (QuantParams((2.0**-12,), (0,)),) * 4


@dataclass(frozen=True)
class StridedSliceAttrs:
    """STRIDED_SLICE: TFLite's constant begin, end and strides inputs, folded, and its masks.

    Bit i of `begin_mask` (`end_mask`) ignores begin[i] (end[i]) and takes the whole axis;
    bit i of `shrink_axis_mask` keeps the one element at begin[i] and drops axis i. Ellipsis,
    new axes and `offset` are read but refused (ir.ops.strided_slice_plain).
    """

    begin: tuple[int, ...] = ()
    end: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    begin_mask: int = 0
    end_mask: int = 0
    shrink_axis_mask: int = 0
    ellipsis_mask: int = 0
    new_axis_mask: int = 0
    offset: bool = False


@dataclass(frozen=True)
class SplitAttrs:
    """SPLIT and SPLIT_V along `axis` (non-negative) into pieces of `sizes` elements (SPLIT's
    num_splits equal pieces; SPLIT_V's size_splits with its one -1 resolved on import)."""

    axis: int = 0
    sizes: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class PackAttrs:
    """PACK (stack) of its `count` same-shaped inputs along a new `axis` (non-negative, of the
    output; TFLite's values_count); UNPACK of its input along `axis` into `count` outputs, one
    per element (TFLite's num)."""

    axis: int = 0
    count: int = 1


@dataclass(frozen=True)
class TransposeAttrs:
    """TRANSPOSE: output axis i is input axis perm[i] (TFLite's constant perm input, folded)."""

    perm: tuple[int, ...] = ()


@dataclass(frozen=True)
class ReverseAttrs:
    """REVERSE_V2: the input with the order of its elements along each of `axes` reversed
    (TFLite's constant axis input, folded; non-negative, distinct)."""

    axes: tuple[int, ...] = ()


@dataclass(frozen=True)
class GatherAttrs:
    """GATHER of the input's slices along `axis` (non-negative) at constant `indices` (TFLite's
    int32 indices tensor, folded, of shape `indices_shape`); batch_dims is refused unless 0.

    The input may be an activation or a constant table; indices computed at run time are
    refused on import."""

    axis: int = 0
    indices: tuple[int, ...] = (0,)
    indices_shape: tuple[int, ...] = (1,)
    batch_dims: int = 0


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
    | ExpandDimsAttrs
    | BatchSpaceAttrs
    | SoftmaxAttrs
    | PadAttrs
    | ConcatenationAttrs
    | SliceAttrs
    | LeakyReluAttrs
    | ArgAttrs
    | ResizeNearestNeighborAttrs
    | TransposeConvAttrs
    | ResizeBilinearAttrs
    | TileAttrs
    | BlockAttrs
    | BroadcastToAttrs
    | SvdfAttrs
    | LstmAttrs
    | StridedSliceAttrs
    | SplitAttrs
    | PackAttrs
    | TransposeAttrs
    | GatherAttrs
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
    the importers fold constant shape and axis operands into attributes; `outputs` its results
    (0: as many as its shape rule gives, SPLIT's pieces).
    `shape` gives the output shapes, `macs` its multiply-accumulates and `element_ops` its
    non-MAC work per output element (requantisation, table steps, copies: an estimate for
    cores without fitted kernels). Quantisation: `weight_axis` is the output-channel axis of
    a weighted op's weights (input 1; input 2 is its int32 bias); `shared_quant` ops have one
    scale and zero point on every int8 input and output (TFLite's rule); `fixed_output` is the
    output quantisation TFLite's int8 kernel requires; only a `float_input` op may read float32
    and only a `float_output` op may write it; an `index_output` op writes integer indices
    (ARG_MAX), not int8 values; a `uint8_output` op (QUANTIZE) may write uint8 values.
    `checks` are its own support rules, in the order a user reads them (the rules of every op
    and of every weighted op are in ir.constraints).
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
    uint8_output: bool = False
    checks: tuple[Check, ...] = ()
    stateful: bool = False
    """It reads and updates a variable tensor, its last input, kept across invocations (SVDF);
    only its first input is an int8 activation, the others are constants."""
    state_inputs: tuple[int, ...] = ()
    """The input positions that hold its state, variable tensors kept across invocations
    (SVDF's last input, an LSTM's output and cell states); no other input may be variable."""
    data_operands: int | None = None
    """How many leading inputs are activations when the rest are its own constants and state
    (LSTM's weights, biases and variable states, checked by its `checks`); None: every input of
    a non-weighted op."""


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


def _expand_dims_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: ExpandDimsAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if not 0 <= attrs.axis <= len(x):
        raise ShapeError(f"EXPAND_DIMS '{op.name}': axis {attrs.axis} outside output rank "
                         f"{len(x) + 1}")
    return [(*x[:attrs.axis], 1, *x[attrs.axis:])]


def _batch_space_attrs(graph: Graph, op: Operator) -> tuple[Shape, BatchSpaceAttrs]:
    """The input shape and attributes of a SPACE_TO_BATCH_ND or BATCH_TO_SPACE_ND, checked."""
    attrs: BatchSpaceAttrs = op.attrs
    x = input_shape(graph, op, 0)
    spatial = len(x) - 2
    if spatial not in (1, 2) or len(attrs.block_shape) != spatial or len(attrs.edges) != spatial:
        raise ShapeError(f"{op.kind.value} '{op.name}': block {attrs.block_shape} and edges "
                         f"{attrs.edges} do not fit a 3-D or 4-D input {x}")
    if min(attrs.block_shape) < 1 or min(min(pair) for pair in attrs.edges) < 0:
        raise ShapeError(f"{op.kind.value} '{op.name}': block {attrs.block_shape} must be "
                         f"positive and edges {attrs.edges} non-negative")
    return x, attrs


def _space_to_batch_shape(graph: Graph, op: Operator) -> list[Shape]:
    x, attrs = _batch_space_attrs(graph, op)
    padded = [d + before + after for d, (before, after) in zip(x[1:-1], attrs.edges,
                                                               strict=True)]
    if any(d % block for d, block in zip(padded, attrs.block_shape, strict=True)):
        raise ShapeError(f"SPACE_TO_BATCH_ND '{op.name}': padded spatial dims {padded} are not "
                         f"multiples of block {attrs.block_shape}")
    spatial = [d // block for d, block in zip(padded, attrs.block_shape, strict=True)]
    return [(x[0] * math.prod(attrs.block_shape), *spatial, x[-1])]


def _batch_to_space_shape(graph: Graph, op: Operator) -> list[Shape]:
    x, attrs = _batch_space_attrs(graph, op)
    blocks = math.prod(attrs.block_shape)
    spatial = [d * block - before - after for d, block, (before, after) in
               zip(x[1:-1], attrs.block_shape, attrs.edges, strict=True)]
    if x[0] % blocks or min(spatial) < 1:
        raise ShapeError(f"BATCH_TO_SPACE_ND '{op.name}': input {x} does not split into block "
                         f"{attrs.block_shape} with crops {attrs.edges}")
    return [(x[0] // blocks, *spatial, x[-1])]


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


def _require_crop(graph: Graph, op: Operator, whole_out: tuple[int, int]) -> Crop:
    """The crop of a cropped op, checked against its input window and the whole output."""
    crop: Crop = op.attrs.crop
    reason = crop_error(crop, input_shape(graph, op, 0)[1:3], whole_out)
    if reason is not None:
        raise ShapeError(f"{op.kind.value} '{op.name}': {reason}")
    return crop


def _resize_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: ResizeNearestNeighborAttrs = op.attrs
    n, _, _, c = require_rank(graph, op, 0, 4)
    if len(attrs.size) != 2 or min(attrs.size) < 1:
        raise ShapeError(f"RESIZE_NEAREST_NEIGHBOR '{op.name}': size {attrs.size} is not two "
                         "positive dimensions")
    if attrs.crop is not None:
        return [(n, *_require_crop(graph, op, attrs.size).out_size, c)]
    return [(n, *attrs.size, c)]


def resize_not_both_modes(graph: Graph, op: Operator) -> str | None:
    """align_corners and half_pixel_centers cannot both be set (TensorFlow refuses the pair)."""
    attrs: ResizeNearestNeighborAttrs = op.attrs
    both = attrs.align_corners and attrs.half_pixel_centers
    return "align_corners and half_pixel_centers found" if both else None


def _resize_bilinear_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: ResizeBilinearAttrs = op.attrs
    n, _, _, c = require_rank(graph, op, 0, 4)
    if len(attrs.size) != 2 or min(attrs.size) < 1:
        raise ShapeError(f"RESIZE_BILINEAR '{op.name}': size {attrs.size} is not two positive "
                         "dimensions")
    if attrs.crop is not None:
        return [(n, *_require_crop(graph, op, attrs.size).out_size, c)]
    return [(n, *attrs.size, c)]


def bilinear_inside_input(graph: Graph, op: Operator) -> str | None:
    """Every output pixel must interpolate input pixels inside the input: LiteRT's 10-bit scale
    reads past the last row or column for some extreme upscalings (resize in two steps)."""
    attrs: ResizeBilinearAttrs = op.attrs
    in_h, in_w = whole_input_hw(input_shape(graph, op, 0), attrs.crop)
    for axis, size, out in (("row", in_h, attrs.size[0]), ("column", in_w, attrs.size[1])):
        lower = bilinear_axis(size, out, attrs.align_corners, attrs.half_pixel_centers).lower
        if int(lower.max()) >= size:
            return f"source {axis} {int(lower.max())} of a {size}-{axis} input found"
    return None


def _bilinear_macs(graph: Graph, op: Operator) -> int:
    return 4 * _out_elems(graph, op)


def _tile_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: TileAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if len(attrs.multiples) != len(x) or min(attrs.multiples, default=1) < 1:
        raise ShapeError(f"TILE '{op.name}': multiples {attrs.multiples} are not one positive "
                         f"count per axis of {x}")
    return [tuple(d * m for d, m in zip(x, attrs.multiples, strict=True))]


def broadcast_multiples(x: Shape, shape: Shape) -> tuple[int, ...] | None:
    """The TILE multiples that broadcast `x` (left-padded with 1s) to `shape`, or None."""
    if len(x) > len(shape):
        return None
    padded = (1,) * (len(shape) - len(x)) + tuple(x)
    if any(d not in (1, s) for d, s in zip(padded, shape, strict=True)):
        return None
    return tuple(s // d for d, s in zip(padded, shape, strict=True))


def _broadcast_to_shape(graph: Graph, op: Operator) -> list[Shape]:
    x, shape = input_shape(graph, op, 0), op.attrs.shape
    if min(shape, default=1) < 1 or broadcast_multiples(x, shape) is None:
        raise ShapeError(f"BROADCAST_TO '{op.name}': {x} does not broadcast to {shape}")
    return [tuple(shape)]


def _depth_to_space_shape(graph: Graph, op: Operator) -> list[Shape]:
    block = op.attrs.block_size
    n, h, w, c = require_rank(graph, op, 0, 4)
    if block < 1 or c % (block * block):
        raise ShapeError(f"DEPTH_TO_SPACE '{op.name}': {c} channels do not split into blocks of "
                         f"{block}x{block}")
    if op.attrs.crop is not None:
        return [(n, *_cropped_depth_to_space(graph, op), c // (block * block))]
    return [(n, h * block, w * block, c // (block * block))]


def _cropped_depth_to_space(graph: Graph, op: Operator) -> tuple[int, int]:
    """The output window of a cropped DEPTH_TO_SPACE, checked.

    Its phases are below the block size, its input window the blocks it covers.
    """
    block = op.attrs.block_size
    crop = _require_crop(graph, op, (op.attrs.crop.in_size[0] * block,
                                     op.attrs.crop.in_size[1] * block))
    in_hw = input_shape(graph, op, 0)[1:3]
    for phase, out, size in zip(depth_to_space_phases(op.attrs), crop.out_size, in_hw,
                                strict=True):
        if not 0 <= phase < block or -(-(phase + out) // block) != size:
            raise ShapeError(f"DEPTH_TO_SPACE '{op.name}': its crop {crop} does not cover the "
                             f"blocks of its {in_hw[0]}x{in_hw[1]} input window")
    return crop.out_size


def depth_to_space_phases(attrs: BlockAttrs) -> tuple[int, int]:
    """How many rows and columns into the blocks of its input's first row and column a cropped
    DEPTH_TO_SPACE's output starts; (0, 0) uncropped."""
    crop = attrs.crop
    if crop is None:
        return 0, 0
    block = attrs.block_size
    return (crop.out_origin[0] - block * crop.in_origin[0],
            crop.out_origin[1] - block * crop.in_origin[1])


def _space_to_depth_shape(graph: Graph, op: Operator) -> list[Shape]:
    block = op.attrs.block_size
    n, h, w, c = require_rank(graph, op, 0, 4)
    if op.attrs.crop is not None:
        raise ShapeError(f"SPACE_TO_DEPTH '{op.name}': a crop is DEPTH_TO_SPACE's only (a "
                         "window of whole blocks is an uncropped SPACE_TO_DEPTH)")
    if block < 1 or h % block or w % block:
        raise ShapeError(f"SPACE_TO_DEPTH '{op.name}': a {h}x{w} image does not split into "
                         f"blocks of {block}x{block}")
    return [(n, h // block, w // block, c * block * block)]


def _arg_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: ArgAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if not 0 <= attrs.axis < len(x):
        raise ShapeError(f"{op.kind.value} '{op.name}': axis {attrs.axis} outside input {x}")
    return [tuple(d for i, d in enumerate(x) if i != attrs.axis)]


def transpose_conv_windows(out_size: int, kernel: int, stride: int, padding: Padding) -> int:
    """LiteRT's ComputeOutSize over a transpose convolution's *output* size (dilation 1, C
    division truncating toward zero): the input size LiteRT requires."""
    if padding is Padding.SAME:
        return (out_size + stride - 1) // stride
    return int((out_size + stride - kernel) / stride)


def transpose_conv_pad(out_size: int, kernel: int, stride: int, padding: Padding) -> int:
    """LiteRT's padding before the first output element of a transpose convolution
    (ComputePaddingHeightWidth with the output size as the image size)."""
    windows = transpose_conv_windows(out_size, kernel, stride, padding)
    return max((windows - 1) * stride + kernel - out_size, 0) // 2


def transpose_conv_pads(attrs: TransposeConvAttrs, kernel: tuple[int, int]) -> tuple[int, int]:
    """The rows and columns before the first output element of a TRANSPOSE_CONV: LiteRT's, or
    for a cropped one the whole op's shifted so that output (oy, ox) of the window receives
    window input (iy, ix) through tap (ky, kx) when oy = iy * stride_h + ky - pad_h."""
    strides = (attrs.stride_h, attrs.stride_w)
    pads = [transpose_conv_pad(attrs.output_hw[a], kernel[a], strides[a], attrs.padding)
            for a in (0, 1)]
    if attrs.crop is not None:
        pads = [pads[a] + attrs.crop.out_origin[a] - attrs.crop.in_origin[a] * strides[a]
                for a in (0, 1)]
    return pads[0], pads[1]


def _transpose_conv_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: TransposeConvAttrs = op.attrs
    n, in_h, in_w, in_c = require_rank(graph, op, 0, 4)
    out_c, kh, kw, depth = require_rank(graph, op, 1, 4)
    if depth != in_c:
        raise ShapeError(f"TRANSPOSE_CONV '{op.name}': the filter's depth {depth} differs from "
                         f"the input's {in_c} channels")
    shape = tuple(attrs.output_shape)
    if len(shape) != 4 or min(shape) < 1 or (shape[0], shape[3]) != (n, out_c):
        raise ShapeError(f"TRANSPOSE_CONV '{op.name}': output_shape {shape} does not hold "
                         f"{n} images of {out_c} channels")
    windows = (transpose_conv_windows(shape[1], kh, attrs.stride_h, attrs.padding),
               transpose_conv_windows(shape[2], kw, attrs.stride_w, attrs.padding))
    in_h, in_w = whole_input_hw((n, in_h, in_w, in_c), attrs.crop)
    if windows != (in_h, in_w):
        raise ShapeError(f"TRANSPOSE_CONV '{op.name}': a {attrs.padding.value} convolution of "
                         f"the output {shape[1]}x{shape[2]} has {windows[0]}x{windows[1]} "
                         f"windows, not the input's {in_h}x{in_w}")
    if attrs.crop is not None:
        crop = _require_crop(graph, op, attrs.output_hw)
        if not _transpose_conv_crop_reads(attrs, (kh, kw), input_shape(graph, op, 0)[1:3]):
            raise ShapeError(f"TRANSPOSE_CONV '{op.name}': the input window of its crop {crop} "
                             "is not every input row and column its output window reads")
        return [(n, *crop.out_size, out_c)]
    return [shape]


def transpose_conv_sources(reach: tuple[int, int], kernel: int, stride: int, size: int
                           ) -> tuple[int, int]:
    """The input indices [first, end) of a `size`-long input axis scattering into the output
    indices whose index + pad runs from reach[0] to reach[1] (oy = iy * stride + ky - pad)."""
    return max(0, -((kernel - 1 - reach[0]) // stride)), min(size, reach[1] // stride + 1)


def _transpose_conv_crop_reads(attrs: TransposeConvAttrs, kernel: tuple[int, int],
                               window: tuple[int, int]) -> bool:
    """True when a cropped TRANSPOSE_CONV's input window holds every whole-input row and
    column scattering into its output window, its padding at least 0."""
    crop: Crop = attrs.crop
    strides = (attrs.stride_h, attrs.stride_w)
    for axis, pad in enumerate(transpose_conv_pads(attrs, kernel)):
        reach = crop.in_origin[axis] * strides[axis] + pad
        first, end = transpose_conv_sources((reach, reach + crop.out_size[axis] - 1),
                                            kernel[axis], strides[axis], crop.in_size[axis])
        if pad < 0 or first < crop.in_origin[axis] or end > crop.in_origin[axis] + window[axis]:
            return False
    return True


LSTM_GATES = 4
"""Gates of an LSTM (input, forget, cell, output): its IR inputs are x, 4 input weights, 4
recurrent weights, 4 biases, the output state and the cell state."""
LSTM_OUTPUT_STATE = 1 + 3 * LSTM_GATES
"""The IR input position of an LSTM's variable int8 output state."""
LSTM_CELL_STATE = LSTM_OUTPUT_STATE + 1
"""The IR input position of an LSTM's variable int16 cell state."""
LSTM_OPERANDS = LSTM_CELL_STATE + 1


def lstm_dims(graph: Graph, op: Operator) -> tuple[int, int, int, int]:
    """(batch, time, features, units) of an UNIDIRECTIONAL_SEQUENCE_LSTM."""
    attrs: LstmAttrs = op.attrs
    first, second, features = require_rank(graph, op, 0, 3)
    batch, time = (second, first) if attrs.time_major else (first, second)
    units = input_shape(graph, op, 1)[0]
    return batch, time, features, units


def state_bytes(graph: Graph) -> int:
    """RAM the graph's variable tensors take outside the arena, in static storage of the C."""
    return sum(graph.tensors[name].nbytes for name in graph.variables())


def _lstm_shape(graph: Graph, op: Operator) -> list[Shape]:
    batch, time, features, units = lstm_dims(graph, op)
    expected = ([(units, features)] * LSTM_GATES + [(units, units)] * LSTM_GATES
                + [(units,)] * LSTM_GATES + [(batch, units)] * 2)
    found = [input_shape(graph, op, i) for i in range(1, LSTM_OPERANDS)]
    if found != expected:
        raise ShapeError(f"UNIDIRECTIONAL_SEQUENCE_LSTM '{op.name}': weights, biases and states "
                         f"{found} do not fit {batch} batches, {features} features and {units} "
                         "units")
    first, second = (time, batch) if op.attrs.time_major else (batch, time)
    return [(first, second, units)]


def _lstm_macs(graph: Graph, op: Operator) -> int:
    """Per step and batch, four gates of [units, features + units] weights."""
    batch, time, features, units = lstm_dims(graph, op)
    return batch * time * LSTM_GATES * units * (features + units)


def _lstm_output_state(graph: Graph, op: Operator) -> str | None:
    """Why the output state is not a variable int8 tensor, or None."""
    state = graph.tensors[op.inputs[LSTM_OUTPUT_STATE]]
    if not state.variable or state.dtype is not DType.INT8 or state.quant is None:
        return f"a {'' if state.variable else 'non-variable '}{state.dtype.value} output state"
    return None


def _lstm_cell_state(graph: Graph, op: Operator) -> str | None:
    """Why the cell state is not a variable int16 tensor as LiteRT's integer LSTM takes, or None."""
    state = graph.tensors[op.inputs[LSTM_CELL_STATE]]
    if not state.variable or state.dtype is not DType.INT16 or state.quant is None:
        return f"a {'' if state.variable else 'non-variable '}{state.dtype.value} cell state"
    exponent = float(np.log2(state.quant.scale0))
    if state.quant.zero_point0 == 0 and abs(exponent - round(exponent)) < 1e-3 and (
            -15 <= round(exponent) <= -9):
        return None
    return f"cell state {describe_quant(state.quant)}"


def lstm_states(graph: Graph, op: Operator) -> str | None:
    """The output state must be a variable int8 tensor, the cell state a variable int16 one
    with zero point 0 and a power-of-two scale from 2**-15 to 2**-9 (LiteRT's integer LSTM,
    whose tanh leaves the hidden values unset below 2**-15, so no result is defined there:
    calibrate with inputs that reach the cell's real range)."""
    problems = [p for p in (_lstm_output_state(graph, op), _lstm_cell_state(graph, op)) if p]
    return f"{', '.join(problems)} found" if problems else None


def lstm_no_proj_clip(graph: Graph, op: Operator) -> str | None:
    """proj_clip must be 0: it clips a projection, which mcuflow's LSTM does not have."""
    clip = op.attrs.proj_clip
    return f"proj_clip {clip:g} found" if clip > 0 else None


def lstm_constants(graph: Graph, op: Operator) -> str | None:
    """Weights must be constant int8 with one symmetric scale, biases constant int32 (the
    converter's fully-integer LSTM)."""
    problems = []
    for position, name in enumerate(op.inputs[1:LSTM_OUTPUT_STATE], start=1):
        tensor = graph.tensors[name]
        dtype = DType.INT8 if position <= 2 * LSTM_GATES else DType.INT32
        symmetric = dtype is DType.INT32 or (
            tensor.quant is not None and not tensor.quant.is_per_channel
            and tensor.quant.zero_point0 == 0)
        if not tensor.is_constant or tensor.dtype is not dtype or not symmetric:
            problems.append(f"'{name}' ({tensor.dtype.value})")
    return f"operands {', '.join(problems)} found" if problems else None


def reverse_axes_consecutive(graph: Graph, op: Operator) -> str | None:
    """The reversed axes must be consecutive, as LiteRT's REVERSE_V2 requires."""
    axes = op.attrs.axes
    consecutive = list(axes) == list(range(axes[0], axes[0] + len(axes))) if axes else True
    return None if consecutive else f"axes {axes} found"


def strided_slice_ranges(shape: Shape, attrs: StridedSliceAttrs) -> list[range]:
    """The input indices each axis of a STRIDED_SLICE visits, as LiteRT's strided_slice_logic
    resolves them: masks, negative indices counted from the end, clamping by stride sign."""
    if not len(attrs.begin) == len(attrs.end) == len(attrs.strides) == len(shape):
        raise ShapeError(f"STRIDED_SLICE: begin {attrs.begin}, end {attrs.end} and strides "
                         f"{attrs.strides} do not each have one entry per axis of {shape}")
    if 0 in attrs.strides:
        raise ShapeError(f"STRIDED_SLICE: strides {attrs.strides} contain 0")
    return [_axis_range(extent, axis, attrs) for axis, extent in enumerate(shape)]


def _axis_range(extent: int, axis: int, attrs: StridedSliceAttrs) -> range:
    stride, bit = attrs.strides[axis], 1 << axis
    low, high = (0, extent) if stride > 0 else (-1, extent - 1)
    start = attrs.begin[axis]
    if attrs.begin_mask & bit:
        start = low if stride > 0 else high
    start = min(max(start + extent if start < 0 else start, low), high)
    if attrs.shrink_axis_mask & bit:
        return range(start, start + 1)
    if attrs.end_mask & bit:
        return range(start, high if stride > 0 else low, stride)
    stop = attrs.end[axis]
    stop = min(max(stop + extent if stop < 0 else stop, low), high)
    return range(start, stop, stride)


def strided_box(shape: Shape, attrs: StridedSliceAttrs) -> SliceAttrs | None:
    """The SLICE a STRIDED_SLICE of an input of `shape` equals (its unit strides, or axes it
    keeps one element of), else None; its output is that box with the shrunk axes dropped."""
    ranges = strided_slice_ranges(shape, attrs)
    if any(len(r) > 1 and r.step != 1 for r in ranges):
        return None
    return SliceAttrs(tuple(r[0] for r in ranges), tuple(len(r) for r in ranges))


def box_of(graph: Graph, op: Operator) -> SliceAttrs | None:
    """The box a SLICE, or a STRIDED_SLICE that is a plain slice (strided_box), copies."""
    if op.kind is OpKind.STRIDED_SLICE:
        return strided_box(graph.tensors[op.inputs[0]].shape, op.attrs)
    return op.attrs if op.kind is OpKind.SLICE else None


def _strided_slice_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: StridedSliceAttrs = op.attrs
    try:
        ranges = strided_slice_ranges(input_shape(graph, op, 0), attrs)
    except ShapeError as error:
        raise ShapeError(f"{error.message} ('{op.name}')") from None
    if any(len(r) == 0 for r in ranges):
        raise ShapeError(f"STRIDED_SLICE '{op.name}': its output is empty")
    return [tuple(len(r) for axis, r in enumerate(ranges)
                  if not attrs.shrink_axis_mask & (1 << axis))]


def _split_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: SplitAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if not 0 <= attrs.axis < len(x) or sum(attrs.sizes) != x[attrs.axis] or min(
            attrs.sizes, default=0) < 1:
        raise ShapeError(f"{op.kind.value} '{op.name}': pieces {attrs.sizes} along axis "
                         f"{attrs.axis} do not cut {x}")
    return [tuple(n if i == attrs.axis else d for i, d in enumerate(x)) for n in attrs.sizes]


def _pack_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: PackAttrs = op.attrs
    shapes = {graph.tensors[name].shape for name in op.inputs}
    first = input_shape(graph, op, 0)
    if len(shapes) != 1 or not 0 <= attrs.axis <= len(first) or attrs.count != len(op.inputs):
        raise ShapeError(f"PACK '{op.name}': inputs {sorted(shapes)} differ or do not number "
                         f"values_count {attrs.count}, or axis {attrs.axis} lies outside them")
    return [(*first[:attrs.axis], len(op.inputs), *first[attrs.axis:])]


def _unpack_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: PackAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if not 0 <= attrs.axis < len(x) or attrs.count != x[attrs.axis]:
        raise ShapeError(f"UNPACK '{op.name}': axis {attrs.axis} outside input {x} or num "
                         f"{attrs.count} is not its size")
    piece = x[:attrs.axis] + x[attrs.axis + 1:]
    return [piece] * x[attrs.axis]


def _transpose_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: TransposeAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if sorted(attrs.perm) != list(range(len(x))):
        raise ShapeError(f"TRANSPOSE '{op.name}': perm {attrs.perm} is not a permutation of "
                         f"the axes of {x}")
    return [tuple(x[a] for a in attrs.perm)]


def _reverse_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: ReverseAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if len(set(attrs.axes)) != len(attrs.axes) or not all(0 <= a < len(x) for a in attrs.axes):
        raise ShapeError(f"REVERSE_V2 '{op.name}': axes {attrs.axes} are not distinct axes of "
                         f"{x}")
    return [x]


def _gather_shape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: GatherAttrs = op.attrs
    x = input_shape(graph, op, 0)
    if not 0 <= attrs.axis < len(x) or math.prod(attrs.indices_shape) != len(attrs.indices):
        raise ShapeError(f"GATHER '{op.name}': axis {attrs.axis} or indices of shape "
                         f"{attrs.indices_shape} do not fit {x}")
    return [(*x[:attrs.axis], *attrs.indices_shape, *x[attrs.axis + 1:])]


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


def _transpose_conv_macs(graph: Graph, op: Operator) -> int:
    """Filter [O, KH, KW, Cin]: each input element meets KH x KW x O weights (taps falling
    outside the output included)."""
    out_c, kh, kw, _ = graph.tensors[op.inputs[1]].shape
    return graph.tensors[op.inputs[0]].size * kh * kw * out_c


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
    """QUANTIZE must read float32, int8, uint8 or int16 and write per-tensor int8 or int16, or
    uint8 from int8 or uint8 (LiteRT's Requantize)."""
    source = graph.tensors[op.inputs[0]].dtype
    if source not in (DType.FLOAT32, DType.INT8, DType.UINT8, DType.INT16):
        return f"{source.value} input found"
    target = graph.tensors[op.outputs[0]].dtype
    if DType.UINT8 in (source, target) and not {source, target} <= {DType.INT8, DType.UINT8}:
        return f"{source.value} input with a {target.value} output found"
    if source is not DType.FLOAT32 and graph.tensors[op.inputs[0]].quant is None:
        return f"{source.value} input without quantisation parameters found"
    quant = graph.tensors[op.outputs[0]].quant
    return "per-channel output found" if quant is not None and quant.is_per_channel else None


def uint8_at_graph_edges(graph: Graph, op: Operator) -> str | None:
    """A uint8 tensor may only be a graph input that QUANTIZE reads or a graph output that
    QUANTIZE writes (a model converted with inference_input_type / inference_output_type uint8).
    Inside the model every activation is int8."""
    source, target = op.inputs[0], op.outputs[0]
    if graph.tensors[source].dtype is DType.UINT8 and source not in graph.inputs:
        return f"uint8 input '{source}' that is not a graph input found"
    if graph.tensors[target].dtype is DType.UINT8 and target not in graph.outputs:
        return f"uint8 output '{target}' that is not a graph output found"
    return None


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


def _max_rank(graph: Graph, op: Operator) -> int:
    return max(len(graph.tensors[name].shape) for name in (*op.inputs, *op.outputs))


def rank_at_most_4(graph: Graph, op: Operator) -> str | None:
    """Inputs and outputs may have at most 4 dimensions (LiteRT's kernel works in 4-D)."""
    rank = _max_rank(graph, op)
    return f"rank {rank} found" if rank > 4 else None


def broadcast_rank_at_most_4(graph: Graph, op: Operator) -> str | None:
    """Inputs of different shapes may have at most 4 dimensions (LiteRT broadcasts in 4-D)."""
    shapes = {graph.tensors[name].shape for name in op.inputs}
    rank = _max_rank(graph, op)
    return f"rank {rank} broadcast found" if len(shapes) > 1 and rank > 4 else None


def sum_requantises(graph: Graph, op: Operator) -> str | None:
    """The int8 output must not share the input's scale and zero point: LiteRT's int8 SUM then
    skips its requantising path and keeps an int8 sum of the stored values."""
    x, out = graph.tensors[op.inputs[0]].quant, graph.tensors[op.outputs[0]].quant
    if x is None or out is None or x != out:
        return None
    return f"shared {describe_quant(out)} found"


def sum_reduces_an_axis(graph: Graph, op: Operator) -> str | None:
    """SUM must reduce at least one axis (with none, LiteRT copies the stored values unchanged
    instead of requantising them)."""
    return None if op.attrs.axes else "no axes found"


def l2_output_range(graph: Graph, op: Operator) -> str | None:
    """The int8 output must use scale 1/128 and zero point 0 (TFLite's int8 requirement)."""
    return _output_range(graph, op)


def log_softmax_output_range(graph: Graph, op: Operator) -> str | None:
    """The int8 output must use scale 16/256 and zero point 127 (TFLite's int8 requirement)."""
    return _output_range(graph, op)


LOG_SOFTMAX_MAX_DEPTH = 4095
"""The longest row LiteRT's int8 LOG_SOFTMAX sums exps of in Q12.19 without overflow."""


def log_softmax_depth(graph: Graph, op: Operator) -> str | None:
    """The last axis may hold at most 4095 values (LiteRT sums their exps in Q12.19)."""
    shape = graph.tensors[op.inputs[0]].shape
    depth = shape[-1] if shape else 1
    return f"last axis of {depth} found" if depth > LOG_SOFTMAX_MAX_DEPTH else None


def all_same_quantisation(graph: Graph, op: Operator) -> str | None:
    """Every input and output must share one scale and zero point (TFLite's int8 rule)."""
    quants = [graph.tensors[name].quant for name in (*op.inputs, *op.outputs)]
    found = {describe_quant(q) for q in quants if q is not None}
    return f"{', '.join(sorted(found))} found" if len(found) > 1 else None


def strided_slice_plain(graph: Graph, op: Operator) -> str | None:
    """STRIDED_SLICE: ellipsis_mask, new_axis_mask and offset must be 0 (insert axes with
    RESHAPE), and a shrunk axis needs a positive stride."""
    attrs: StridedSliceAttrs = op.attrs
    shrunk_backwards = any(attrs.shrink_axis_mask & (1 << a) and s < 0
                           for a, s in enumerate(attrs.strides))
    if attrs.ellipsis_mask or attrs.new_axis_mask or attrs.offset or shrunk_backwards:
        return (f"ellipsis_mask {attrs.ellipsis_mask}, new_axis_mask {attrs.new_axis_mask}, "
                f"offset {attrs.offset}, strides {attrs.strides} found")
    return None


def gather_indices_inside(graph: Graph, op: Operator) -> str | None:
    """GATHER: batch_dims must be 0 and every index must lie in [0, axis size)."""
    attrs: GatherAttrs = op.attrs
    extent = graph.tensors[op.inputs[0]].shape[attrs.axis]
    outside = [i for i in attrs.indices if not 0 <= i < extent]
    if attrs.batch_dims or outside:
        return f"batch_dims {attrs.batch_dims}, indices {outside[:4]} for axis size {extent} found"
    return None


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
          uint8_output=True, checks=(quantize_per_tensor, uint8_at_graph_edges)),
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
    OpDef(OpKind.EXPAND_DIMS, ExpandDimsAttrs, _expand_dims_shape, shared_quant=True,
          checks=(same_quantisation, rank_at_most_5)),
    OpDef(OpKind.SQUARED_DIFFERENCE, NoAttrs, _broadcast_shape, (2, 2), macs=_out_elems,
          element_ops=3, checks=(rank_at_most_5, broadcast_rank_at_most_4)),
    OpDef(OpKind.PRELU, NoAttrs, _broadcast_shape, (2, 2), macs=_out_elems, element_ops=2,
          checks=(rank_at_most_4,)),
    OpDef(OpKind.ABS, NoAttrs, _same_shape, element_ops=1),
    OpDef(OpKind.SUM, MeanAttrs, _mean_shape, macs=_input_macs, element_ops=1,
          checks=(sum_requantises, sum_reduces_an_axis, rank_at_most_5)),
    OpDef(OpKind.L2_NORMALIZATION, NoAttrs, _same_shape, macs=_input_macs, element_ops=3,
          fixed_output=QuantParams.per_tensor(1.0 / 128.0, 0),
          checks=(l2_output_range, rank_at_most_4)),
    OpDef(OpKind.LOG_SOFTMAX, NoAttrs, _same_shape, element_ops=8,
          fixed_output=QuantParams.per_tensor(16.0 / 256.0, 127),
          checks=(log_softmax_output_range, log_softmax_depth)),
    OpDef(OpKind.TRANSPOSE_CONV, TransposeConvAttrs, _transpose_conv_shape, _WEIGHTED_OPERANDS,
          macs=_transpose_conv_macs, element_ops=1, weight_axis=0),
    OpDef(OpKind.RESIZE_BILINEAR, ResizeBilinearAttrs, _resize_bilinear_shape,
          macs=_bilinear_macs, element_ops=1, shared_quant=True,
          checks=(same_quantisation, resize_not_both_modes, bilinear_inside_input)),
    OpDef(OpKind.TILE, TileAttrs, _tile_shape, element_ops=1, shared_quant=True,
          checks=(same_quantisation, rank_at_most_5)),
    OpDef(OpKind.DEPTH_TO_SPACE, BlockAttrs, _depth_to_space_shape, element_ops=1,
          shared_quant=True, checks=(same_quantisation,)),
    OpDef(OpKind.SPACE_TO_DEPTH, BlockAttrs, _space_to_depth_shape, element_ops=1,
          shared_quant=True, checks=(same_quantisation,)),
    OpDef(OpKind.BROADCAST_TO, BroadcastToAttrs, _broadcast_to_shape, element_ops=1,
          shared_quant=True, checks=(same_quantisation, rank_at_most_5)),
    OpDef(OpKind.SPACE_TO_BATCH_ND, BatchSpaceAttrs, _space_to_batch_shape,
          element_ops=1, shared_quant=True, checks=(same_quantisation,)),
    OpDef(OpKind.BATCH_TO_SPACE_ND, BatchSpaceAttrs, _batch_to_space_shape,
          element_ops=1, shared_quant=True, checks=(same_quantisation,)),
    OpDef(OpKind.SVDF, SvdfAttrs, svdf_shape, (4, 5), macs=svdf_macs, element_ops=2,
          checks=svdf_checks(), stateful=True, state_inputs=(-1,)),
    OpDef(OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM, LstmAttrs, _lstm_shape,
          (LSTM_OPERANDS, LSTM_OPERANDS), macs=_lstm_macs, element_ops=40,
          checks=(lstm_constants, lstm_states, lstm_no_proj_clip), data_operands=1,
          state_inputs=(LSTM_OUTPUT_STATE, LSTM_CELL_STATE)),
    OpDef(OpKind.STRIDED_SLICE, StridedSliceAttrs, _strided_slice_shape, element_ops=1,
          shared_quant=True, checks=(same_quantisation, rank_at_most_5, strided_slice_plain)),
    OpDef(OpKind.SPLIT, SplitAttrs, _split_shape, outputs=0, element_ops=1, shared_quant=True,
          checks=(all_same_quantisation, rank_at_most_5)),
    OpDef(OpKind.SPLIT_V, SplitAttrs, _split_shape, outputs=0, element_ops=1,
          shared_quant=True, checks=(all_same_quantisation, rank_at_most_5)),
    OpDef(OpKind.PACK, PackAttrs, _pack_shape, (1, MAX_OPERANDS), element_ops=1,
          shared_quant=True, checks=(all_same_quantisation, rank_at_most_5)),
    OpDef(OpKind.UNPACK, PackAttrs, _unpack_shape, outputs=0, element_ops=1, shared_quant=True,
          checks=(all_same_quantisation, rank_at_most_5)),
    OpDef(OpKind.TRANSPOSE, TransposeAttrs, _transpose_shape, element_ops=1, shared_quant=True,
          checks=(same_quantisation, rank_at_most_5)),
    OpDef(OpKind.GATHER, GatherAttrs, _gather_shape, element_ops=1, shared_quant=True,
          checks=(same_quantisation, rank_at_most_5, gather_indices_inside)),
    OpDef(OpKind.REVERSE_V2, ReverseAttrs, _reverse_shape, element_ops=1, shared_quant=True,
          checks=(same_quantisation, rank_at_most_5, reverse_axes_consecutive)),
)

OP_DEFS: OpTable[OpDef] = OpTable("definition", entries={d.kind: d for d in _DEFINITIONS})
"""The definition of every OpKind."""


def infer_output_shapes(graph: Graph, op: Operator) -> list[Shape]:
    """Output shapes of `op` from its input shapes and attributes."""
    return OP_DEFS[op.kind].shape(graph, op)


def op_macs(graph: Graph, op: Operator) -> int:
    """The multiply-accumulates `op` performs (see each OpDef's `macs`)."""
    return int(OP_DEFS[op.kind].macs(graph, op))
