"""TILE and BROADCAST_TO reference kernels (int8, int16, float32): the input repeated per axis."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.ref.common import require_copied
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


def tile(x: np.ndarray, multiples: tuple[int, ...]) -> np.ndarray:
    """`x` repeated `multiples[d]` times along each axis d (whole copies, as LiteRT's Tile)."""
    return np.ascontiguousarray(np.tile(x, multiples))


@prepared_kernel(OpKind.TILE)
def _prepare(graph: Graph, op: Operator) -> PreparedFn:
    """tile.cc: copies the stored int8 or int16 values; input and output share one quantisation."""
    require_copied(op, graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0]))
    multiples = op.attrs.multiples
    return lambda inputs: [tile(inputs[0], multiples)]


@float_kernel(OpKind.TILE)
def _float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [tile(inputs[0], op.attrs.multiples).astype(np.float32)]


@prepared_kernel(OpKind.BROADCAST_TO)
def _prepare_broadcast(graph: Graph, op: Operator) -> PreparedFn:
    """broadcast_to.cc: copies the stored int8 or int16 values.

    Input and output share one quantisation.
    """
    require_copied(op, graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0]))
    shape = op.attrs.shape
    return lambda inputs: [np.ascontiguousarray(np.broadcast_to(inputs[0], shape))]


@float_kernel(OpKind.BROADCAST_TO)
def _float_broadcast(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.broadcast_to(inputs[0], op.attrs.shape), np.float32)]
