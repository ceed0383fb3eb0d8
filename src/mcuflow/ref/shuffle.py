"""Data-movement reference kernels (int8, float32): copies of stored values, one quantisation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, strided_slice_ranges
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel

Shuffle = Callable[[list[np.ndarray]], list[np.ndarray]]


def _strided_slice(graph: Graph, op: Operator) -> Shuffle:
    """LiteRT's strided_slice.cc: the input values at the resolved ranges of every axis."""
    ranges = strided_slice_ranges(graph.tensors[op.inputs[0]].shape, op.attrs)
    index = np.ix_(*[np.arange(r.start, r.stop, r.step) for r in ranges])
    shape = graph.tensors[op.outputs[0]].shape
    return lambda inputs: [np.ascontiguousarray(inputs[0][index]).reshape(shape)]


def _split(graph: Graph, op: Operator) -> Shuffle:
    """LiteRT's split.cc / split_v.cc: consecutive pieces along the axis."""
    axis, sizes = op.attrs.axis, op.attrs.sizes
    cuts = np.cumsum(sizes)[:-1]
    return lambda inputs: [np.ascontiguousarray(p) for p in np.split(inputs[0], cuts, axis)]


def _unpack(graph: Graph, op: Operator) -> Shuffle:
    """LiteRT's unpack.cc: every element along the axis, the axis dropped."""
    axis = op.attrs.axis
    return lambda inputs: [np.ascontiguousarray(p) for p in np.moveaxis(inputs[0], axis, 0)]


def _pack(graph: Graph, op: Operator) -> Shuffle:
    """LiteRT's pack.cc: the inputs stacked along a new axis."""
    axis = op.attrs.axis
    return lambda inputs: [np.stack(inputs, axis)]


def _transpose(graph: Graph, op: Operator) -> Shuffle:
    """LiteRT's transpose.cc: output axis i is input axis perm[i]."""
    perm = op.attrs.perm
    return lambda inputs: [np.ascontiguousarray(np.transpose(inputs[0], perm))]


def _gather(graph: Graph, op: Operator) -> Shuffle:
    """LiteRT's gather.cc with batch_dims 0: input slices along the axis at the indices."""
    attrs = op.attrs
    indices = np.asarray(attrs.indices, np.int64).reshape(attrs.indices_shape)
    return lambda inputs: [np.take(inputs[0], indices, axis=attrs.axis)]


def _reverse(graph: Graph, op: Operator) -> Shuffle:
    """LiteRT's reverse.cc: the elements along each axis in reverse order."""
    axes = op.attrs.axes
    return lambda inputs: [np.ascontiguousarray(np.flip(inputs[0], axes))]


_SHUFFLES: dict[OpKind, Callable[[Graph, Operator], Shuffle]] = {
    OpKind.STRIDED_SLICE: _strided_slice, OpKind.SPLIT: _split, OpKind.SPLIT_V: _split,
    OpKind.UNPACK: _unpack, OpKind.PACK: _pack, OpKind.TRANSPOSE: _transpose,
    OpKind.GATHER: _gather, OpKind.REVERSE_V2: _reverse,
}
_KINDS = tuple(_SHUFFLES)


@prepared_kernel(*_KINDS)
def prepare_shuffle(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's data-movement op: stored values are copied, never requantised.

    Inputs and outputs share one quantisation (the same_quantisation constraints).
    """
    return _SHUFFLES[op.kind](graph, op)


@float_kernel(*_KINDS)
def _shuffle_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [y.astype(np.float32) for y in _SHUFFLES[op.kind](graph, op)(inputs)]
