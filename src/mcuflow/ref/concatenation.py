"""CONCATENATION reference kernel: a copy, under LiteRT's int8 rule of equal quantisation."""

from __future__ import annotations

import numpy as np

from mcuflow.errors import UnsupportedModelError
from mcuflow.ir.graph import DType, Graph, Operator
from mcuflow.ir.ops import Activation, ConcatenationAttrs, OpKind
from mcuflow.ref.registry import PreparedFn, prepared_kernel


def concatenation(inputs: list[np.ndarray], attrs: ConcatenationAttrs) -> np.ndarray:
    """The inputs joined along `attrs.axis`."""
    return np.concatenate(inputs, axis=attrs.axis)


def _check(graph: Graph, op: Operator) -> None:
    """LiteRT rejects a fused activation, and int8 inputs quantised unlike the output."""
    if op.attrs.activation is not Activation.NONE:
        raise UnsupportedModelError(
            f"CONCATENATION '{op.name}': fused activation {op.attrs.activation.value} is not "
            "supported", "apply the activation as a separate op")
    out = graph.tensor(op.outputs[0])
    if out.dtype is not DType.INT8:
        return
    for name in op.inputs:
        quant = graph.tensor(name).quant
        if quant is None or out.quant is None or (quant.scale0, quant.zero_point0) != (
                out.quant.scale0, out.quant.zero_point0):
            raise UnsupportedModelError(
                f"CONCATENATION '{op.name}': input '{name}' is quantised unlike the output",
                "int8 concatenation needs every input in the output's scale and zero point")


@prepared_kernel(OpKind.CONCATENATION)
def prepare_concatenation(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's CONCATENATION."""
    _check(graph, op)
    attrs = op.attrs
    return lambda inputs: [concatenation(inputs, attrs)]
