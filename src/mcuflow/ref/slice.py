"""SLICE reference kernels (int8 and float32): a box of the input, the same quantisation."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, SliceAttrs
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


def slice_box(x: np.ndarray, attrs: SliceAttrs) -> np.ndarray:
    """`x[begin:begin + size]` on every axis, C-contiguous."""
    box = tuple(slice(b, b + n) for b, n in zip(attrs.begin, attrs.size, strict=True))
    return np.ascontiguousarray(x[box])


@prepared_kernel(OpKind.SLICE)
def prepare_slice(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's SLICE: LiteRT's slice.cc copies the stored values, no requantisation.

    Input and output share one quantisation (the same_quantisation constraint).
    """
    attrs = op.attrs
    return lambda inputs: [slice_box(inputs[0], attrs)]


@float_kernel(OpKind.SLICE)
def _slice_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [slice_box(inputs[0], op.attrs).astype(np.float32)]
