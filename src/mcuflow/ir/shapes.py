"""Shape arithmetic the ops' shape rules and the kernels share: window sizes, padding, errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcuflow.errors import McuflowError
from mcuflow.ir.enums import AxisPadding, Padding

if TYPE_CHECKING:
    from mcuflow.ir.graph import Graph, Operator

Shape = tuple[int, ...]


class ShapeError(McuflowError):
    """Operator inputs whose shapes do not fit together."""


def conv_output_size(size: int, kernel: int, stride: int, dilation: int,
                     padding: AxisPadding) -> int:
    """TFLite ComputeOutSize for SAME and VALID padding; explicit (before, after) counts."""
    effective = (kernel - 1) * dilation + 1
    if isinstance(padding, tuple):
        return (size + sum(padding) - effective) // stride + 1
    if padding is Padding.SAME:
        return (size + stride - 1) // stride
    return (size - effective + stride) // stride


def conv_padding(
    size: int, kernel: int, stride: int, dilation: int, out_size: int, padding: AxisPadding
) -> int:
    """TFLite ComputePaddingWithOffset: the padding before the first element."""
    if isinstance(padding, tuple):
        return padding[0]
    if padding is Padding.VALID:
        return 0
    effective = (kernel - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - size, 0)
    return total // 2


def input_shape(graph: Graph, op: Operator, index: int) -> Shape:
    """The shape of input `index` of `op`."""
    return graph.tensors[op.inputs[index]].shape


def require_rank(graph: Graph, op: Operator, index: int, rank: int) -> Shape:
    """The shape of input `index`, which must have `rank` dimensions (ShapeError otherwise)."""
    shape = input_shape(graph, op, index)
    if len(shape) != rank:
        raise ShapeError(f"{op.kind.value} '{op.name}': input {index} has shape {shape}, "
                         f"expected rank {rank}")
    return shape
