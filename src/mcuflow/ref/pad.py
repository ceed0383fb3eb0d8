"""PAD reference kernels: constant padding with the output zero point (0 when unquantised)."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, PadAttrs
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


def pad(x: np.ndarray, attrs: PadAttrs, value: int) -> np.ndarray:
    """`x` with `attrs.paddings` (before, after) elements of `value` around each axis."""
    shape = tuple(d + before + after for d, (before, after) in zip(x.shape, attrs.paddings,
                                                                     strict=True))
    out = np.full(shape, value, x.dtype)
    out[tuple(slice(before, before + d) for d, (before, _) in zip(x.shape, attrs.paddings,
                                                                   strict=True))] = x
    return out


@prepared_kernel(OpKind.PAD)
def prepare_pad(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's PAD: the pad value is the output zero point, as in LiteRT's pad.cc."""
    quant = graph.tensor(op.outputs[0]).quant
    value = quant.zero_point0 if quant is not None else 0
    attrs = op.attrs
    return lambda inputs: [pad(inputs[0], attrs, value)]


@float_kernel(OpKind.PAD)
def _pad_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: PadAttrs = op.attrs
    return [np.pad(inputs[0], attrs.paddings)]
