"""Fuse a standalone RELU or RELU6 into the conv, FC or element-wise op that produces its input."""

from __future__ import annotations

from dataclasses import replace

from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.passes.common import absorb, producer

FUSIBLE = (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED, OpKind.ADD,
           OpKind.SUB, OpKind.MUL)
"""Kinds whose LiteRT int8 kernels clamp to a fused activation."""

_COMBINED = {
    (Activation.NONE, OpKind.RELU): Activation.RELU,
    (Activation.NONE, OpKind.RELU6): Activation.RELU6,
    (Activation.RELU, OpKind.RELU): Activation.RELU,
    (Activation.RELU, OpKind.RELU6): Activation.RELU6,
    (Activation.RELU6, OpKind.RELU): Activation.RELU6,
    (Activation.RELU6, OpKind.RELU6): Activation.RELU6,
}
"""(fused activation already there, standalone op) -> the activation doing both."""


def fuse_activation(graph: Graph) -> Graph:
    """Fold each RELU/RELU6 into its producer when the producer's output feeds nothing else.

    A RESHAPE between them (a 1-D convolution run as a one-row image) is looked through: the
    activation moves before it.
    """
    graph = graph.copy()
    for op in list(graph.operators):
        if op.kind in (OpKind.RELU, OpKind.RELU6):
            _fuse(graph, op)
    return graph


def _fuse(graph: Graph, activation: Operator) -> None:
    source = activation.inputs[0]
    layer = _only_writer(graph, source)
    reshape = None
    if layer is not None and layer.kind is OpKind.RESHAPE:
        reshape, layer = layer, _only_writer(graph, layer.inputs[0])
    if layer is None or layer.kind not in FUSIBLE:
        return
    combined = _COMBINED[(layer.attrs.activation, activation.kind)]
    layer.attrs = replace(layer.attrs, activation=combined)
    absorb(graph, reshape or layer, activation)


def _only_writer(graph: Graph, name: str) -> Operator | None:
    """The op writing `name` when `name` is read by exactly one op and is not an output."""
    if name in graph.outputs or sum(name in op.inputs for op in graph.operators) != 1:
        return None
    return producer(graph, name)
