"""Scratch memory each generated kernel needs, one rule per op kind (shared with codegen)."""

from __future__ import annotations

from collections.abc import Callable

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.memory.plan import InPlace

ScratchRule = Callable[[Graph, Operator, InPlace], int]
SCRATCH_RULES: dict[OpKind, ScratchRule] = {}


def scratch_rule(*kinds: OpKind) -> Callable[[ScratchRule], ScratchRule]:
    """Register the scratch rule of one or more op kinds (kinds without a rule need none)."""

    def register(rule: ScratchRule) -> ScratchRule:
        for kind in kinds:
            SCRATCH_RULES[kind] = rule
        return rule

    return register


def scratch_bytes(graph: Graph, op: Operator, inplace: InPlace) -> int:
    """Bytes of scratch RAM the generated kernel of `op` needs when run as `inplace`."""
    rule = SCRATCH_RULES.get(op.kind)
    return rule(graph, op, inplace) if rule else 0


def is_pointwise(graph: Graph, op: Operator) -> bool:
    """True for a 1x1 CONV_2D, which reads its input pixel by pixel and needs no im2col."""
    _, kh, kw, _ = graph.tensors[op.inputs[1]].shape
    return kh == 1 and kw == 1


@scratch_rule(OpKind.CONV_2D)
def _conv2d(graph: Graph, op: Operator, inplace: InPlace) -> int:
    """im2col of one output pixel: the KH*KW*Cin receptive field as int8.

    Padding is filled with the input zero point so the inner loop is a plain dot product.
    1x1 convolutions read the input directly and need none.
    """
    if is_pointwise(graph, op):
        return 0
    _, kh, kw, cin = graph.tensors[op.inputs[1]].shape
    return kh * kw * cin


@scratch_rule(OpKind.DEPTHWISE_CONV_2D)
def _depthwise(graph: Graph, op: Operator, inplace: InPlace) -> int:
    """In place (TinyEngine): one output channel, OH*OW elements. Otherwise none."""
    if inplace is not InPlace.DEPTHWISE:
        return 0
    out = graph.tensors[op.outputs[0]]
    _, oh, ow, _ = out.shape
    return oh * ow * out.dtype.itemsize
