"""Shape inference: one rule per OpKind giving the output shapes of an operator."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcuflow.errors import McuflowError
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import (
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    FullyConnectedAttrs,
    MeanAttrs,
    OpKind,
    PadAttrs,
    Padding,
    Pool2DAttrs,
    ReshapeAttrs,
    SqueezeAttrs,
)
from mcuflow.ir.registry import OpTable

Shape = tuple[int, ...]
ShapeRule = Callable[[Graph, Operator], list[Shape]]
SHAPE_RULES: OpTable[ShapeRule] = OpTable("shape rule")


class ShapeError(McuflowError):
    """Operator inputs whose shapes do not fit together."""


shape_rule = SHAPE_RULES.register


def infer_output_shapes(graph: Graph, op: Operator) -> list[Shape]:
    """Output shapes of `op` from its input shapes and attributes."""
    return SHAPE_RULES[op.kind](graph, op)


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, padding: Padding) -> int:
    """TFLite ComputeOutSize for SAME and VALID padding."""
    effective = (kernel - 1) * dilation + 1
    if padding is Padding.SAME:
        return (size + stride - 1) // stride
    return (size - effective + stride) // stride


def conv_padding(
    size: int, kernel: int, stride: int, dilation: int, out_size: int, padding: Padding
) -> int:
    """TFLite ComputePaddingWithOffset: the padding before the first element."""
    if padding is Padding.VALID:
        return 0
    effective = (kernel - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - size, 0)
    return total // 2


def _input_shape(graph: Graph, op: Operator, index: int) -> Shape:
    return graph.tensors[op.inputs[index]].shape


def _require_rank(graph: Graph, op: Operator, index: int, rank: int) -> Shape:
    shape = _input_shape(graph, op, index)
    if len(shape) != rank:
        raise ShapeError(f"{op.kind.value} '{op.name}': input {index} has shape {shape}, "
                         f"expected rank {rank}")
    return shape


@shape_rule(OpKind.CONV_2D)
def _conv2d(graph: Graph, op: Operator) -> list[Shape]:
    attrs: Conv2DAttrs = op.attrs
    n, h, w, in_c = _require_rank(graph, op, 0, 4)
    out_c, kh, kw, depth = _require_rank(graph, op, 1, 4)
    if depth != in_c:
        raise ShapeError(f"CONV_2D '{op.name}': the filter's depth {depth} differs from the "
                         f"input's {in_c} channels")
    oh = conv_output_size(h, kh, attrs.stride_h, attrs.dilation_h, attrs.padding)
    ow = conv_output_size(w, kw, attrs.stride_w, attrs.dilation_w, attrs.padding)
    return [(n, oh, ow, out_c)]


@shape_rule(OpKind.DEPTHWISE_CONV_2D)
def _depthwise(graph: Graph, op: Operator) -> list[Shape]:
    attrs: DepthwiseConv2DAttrs = op.attrs
    n, h, w, in_c = _require_rank(graph, op, 0, 4)
    one, kh, kw, out_c = _require_rank(graph, op, 1, 4)
    if one != 1 or out_c != in_c * attrs.depth_multiplier:
        raise ShapeError(f"DEPTHWISE_CONV_2D '{op.name}': filter {(one, kh, kw, out_c)} does not "
                         f"fit {in_c} input channels and depth multiplier "
                         f"{attrs.depth_multiplier}")
    oh = conv_output_size(h, kh, attrs.stride_h, attrs.dilation_h, attrs.padding)
    ow = conv_output_size(w, kw, attrs.stride_w, attrs.dilation_w, attrs.padding)
    return [(n, oh, ow, out_c)]


@shape_rule(OpKind.FULLY_CONNECTED)
def _fully_connected(graph: Graph, op: Operator) -> list[Shape]:
    attrs: FullyConnectedAttrs = op.attrs
    x = _input_shape(graph, op, 0)
    out_c, depth = _require_rank(graph, op, 1, 2)
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


@shape_rule(OpKind.ADD, OpKind.SUB, OpKind.MUL)
def _broadcast(graph: Graph, op: Operator) -> list[Shape]:
    try:
        shape = np.broadcast_shapes(_input_shape(graph, op, 0), _input_shape(graph, op, 1))
    except ValueError as error:
        raise ShapeError(f"{op.kind.value} '{op.name}': {error}") from None
    return [tuple(int(d) for d in shape)]


@shape_rule(OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D)
def _pool(graph: Graph, op: Operator) -> list[Shape]:
    attrs: Pool2DAttrs = op.attrs
    n, h, w, c = _require_rank(graph, op, 0, 4)
    oh = conv_output_size(h, attrs.filter_h, attrs.stride_h, 1, attrs.padding)
    ow = conv_output_size(w, attrs.filter_w, attrs.stride_w, 1, attrs.padding)
    return [(n, oh, ow, c)]


@shape_rule(OpKind.MEAN)
def _mean(graph: Graph, op: Operator) -> list[Shape]:
    attrs: MeanAttrs = op.attrs
    x = _input_shape(graph, op, 0)
    axes = {a % len(x) for a in attrs.axes}
    if attrs.keep_dims:
        return [tuple(1 if i in axes else d for i, d in enumerate(x))]
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


@shape_rule(OpKind.RESHAPE)
def _reshape(graph: Graph, op: Operator) -> list[Shape]:
    attrs: ReshapeAttrs = op.attrs
    x = _input_shape(graph, op, 0)
    if int(np.prod(attrs.new_shape, dtype=np.int64)) != int(np.prod(x, dtype=np.int64)):
        raise ShapeError(f"RESHAPE '{op.name}': cannot reshape {x} to {attrs.new_shape}")
    return [attrs.new_shape]


@shape_rule(OpKind.SQUEEZE)
def _squeeze(graph: Graph, op: Operator) -> list[Shape]:
    attrs: SqueezeAttrs = op.attrs
    x = _input_shape(graph, op, 0)
    axes = {a % len(x) for a in attrs.axes} if attrs.axes else {
        i for i, d in enumerate(x) if d == 1
    }
    if any(x[axis] != 1 for axis in axes):
        raise ShapeError(f"SQUEEZE '{op.name}': cannot squeeze axes {sorted(axes)} of {x}")
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


@shape_rule(OpKind.PAD)
def _pad(graph: Graph, op: Operator) -> list[Shape]:
    attrs: PadAttrs = op.attrs
    x = _input_shape(graph, op, 0)
    if len(attrs.paddings) != len(x):
        raise ShapeError(f"PAD '{op.name}': {len(attrs.paddings)} padding pairs for rank {len(x)}")
    return [tuple(d + before + after for d, (before, after) in zip(x, attrs.paddings, strict=True))]


@shape_rule(OpKind.CONCATENATION)
def _concatenation(graph: Graph, op: Operator) -> list[Shape]:
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


@shape_rule(
    OpKind.SOFTMAX,
    OpKind.LOGISTIC,
    OpKind.TANH,
    OpKind.HARD_SWISH,
    OpKind.RELU,
    OpKind.RELU6,
    OpKind.LEAKY_RELU,
    OpKind.QUANTIZE,
    OpKind.DEQUANTIZE,
)
def _same_shape(graph: Graph, op: Operator) -> list[Shape]:
    return [_input_shape(graph, op, 0)]
