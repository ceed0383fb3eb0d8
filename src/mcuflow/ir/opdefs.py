"""One definition per op: its attributes type and operand counts, read by every stage."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.ir.ops import (
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    ElementwiseAttrs,
    FullyConnectedAttrs,
    LeakyReluAttrs,
    MeanAttrs,
    NoAttrs,
    OpKind,
    PadAttrs,
    Pool2DAttrs,
    ReshapeAttrs,
    SoftmaxAttrs,
    SqueezeAttrs,
)
from mcuflow.ir.registry import OpTable

MAX_OPERANDS = 1 << 16
"""Upper bound of a variadic op's operands (CONCATENATION)."""


@dataclass(frozen=True)
class OpDef:
    """What every stage knows of one op kind.

    `attrs` is its attribute dataclass; `inputs` the (fewest, most) operands in the IR, after
    the importers fold constant shape and axis operands into attributes; `outputs` its results.
    The shape rule (ir.shapes), the support constraints (ir.constraints), the reference kernel
    (ref), the cost rule (hw.costmodel) and the C emitter (codegen.emit) are registered against
    the same kind in their OpTables.
    """

    kind: OpKind
    attrs: type
    inputs: tuple[int, int] = (1, 1)
    outputs: int = 1


OP_DEFS: OpTable[OpDef] = OpTable("definition")


def _define(kinds: tuple[OpKind, ...], attrs: type, inputs: tuple[int, int] = (1, 1)) -> None:
    for kind in kinds:
        OP_DEFS[kind] = OpDef(kind, attrs, inputs)


_WEIGHTED_OPERANDS = (2, 3)  # input, weights, optional int32 bias

_define((OpKind.CONV_2D,), Conv2DAttrs, _WEIGHTED_OPERANDS)
_define((OpKind.DEPTHWISE_CONV_2D,), DepthwiseConv2DAttrs, _WEIGHTED_OPERANDS)
_define((OpKind.FULLY_CONNECTED,), FullyConnectedAttrs, _WEIGHTED_OPERANDS)
_define((OpKind.ADD, OpKind.SUB, OpKind.MUL), ElementwiseAttrs, (2, 2))
_define((OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D), Pool2DAttrs)
_define((OpKind.MEAN,), MeanAttrs)
_define((OpKind.RESHAPE,), ReshapeAttrs)
_define((OpKind.SQUEEZE,), SqueezeAttrs)
_define((OpKind.SOFTMAX,), SoftmaxAttrs)
_define((OpKind.PAD,), PadAttrs)
_define((OpKind.CONCATENATION,), ConcatenationAttrs, (1, MAX_OPERANDS))
_define((OpKind.LEAKY_RELU,), LeakyReluAttrs)
_define((OpKind.LOGISTIC, OpKind.TANH, OpKind.HARD_SWISH, OpKind.RELU, OpKind.RELU6,
         OpKind.QUANTIZE, OpKind.DEQUANTIZE), NoAttrs)
