"""RESHAPE, SQUEEZE and EXPAND_DIMS reference kernels (int8, float32): same bytes, new shape."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


def reshape(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`x` in row-major order under `shape` (a view; tensors are never written after creation)."""
    return x.reshape(shape)


@prepared_kernel(OpKind.RESHAPE, OpKind.SQUEEZE, OpKind.EXPAND_DIMS)
def prepare_reshape(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a RESHAPE, SQUEEZE or EXPAND_DIMS: the output shape comes from shape inference."""
    shape = graph.tensor(op.outputs[0]).shape
    return lambda inputs: [reshape(inputs[0], shape)]


@float_kernel(OpKind.RESHAPE, OpKind.SQUEEZE, OpKind.EXPAND_DIMS)
def _reshape_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [inputs[0].reshape(graph.tensor(op.outputs[0]).shape)]
