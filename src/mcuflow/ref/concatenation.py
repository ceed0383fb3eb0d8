"""CONCATENATION reference kernels: a copy (int8 needs LiteRT's equal quantisation), float32."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import ConcatenationAttrs, OpKind
from mcuflow.ref.common import apply_activation
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


def concatenation(inputs: list[np.ndarray], attrs: ConcatenationAttrs) -> np.ndarray:
    """The inputs joined along `attrs.axis`."""
    return np.concatenate(inputs, axis=attrs.axis)


@prepared_kernel(OpKind.CONCATENATION)
def prepare_concatenation(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's CONCATENATION.

    LiteRT's int8 rules (no fused activation, every input quantised as the output) are the
    support constraints concat_no_activation and concat_same_quantisation.
    """
    attrs = op.attrs
    return lambda inputs: [concatenation(inputs, attrs)]


@float_kernel(OpKind.CONCATENATION)
def _concatenation_float(graph: Graph, op: Operator, inputs: list[np.ndarray]
                         ) -> list[np.ndarray]:
    attrs: ConcatenationAttrs = op.attrs
    out = np.concatenate([x.astype(np.float32) for x in inputs], axis=attrs.axis)
    return [apply_activation(out, attrs.activation)]
