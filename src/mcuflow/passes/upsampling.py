"""Nearest-neighbour upsampling as converters write it becomes one RESIZE_NEAREST_NEIGHBOR."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, ResizeNearestNeighborAttrs, broadcast_multiples
from mcuflow.ir.resize import nearest_indices
from mcuflow.passes.common import drop_unused_tensors, producer, sole_consumer

_UNIT_AXIS = (OpKind.EXPAND_DIMS, OpKind.RESHAPE)
_TILES = (OpKind.TILE, OpKind.BROADCAST_TO)


@dataclass(frozen=True)
class Repeat:
    """`source` [N, H, W, C] repeated `factor` times along `axis` (1: H, 2: W).

    By `ops` (unit axis, TILE, RESHAPE), written to `output`.
    """

    source: str
    axis: int
    factor: int
    ops: tuple[Operator, ...]
    output: str


def rewrite_upsampling(graph: Graph) -> Graph:
    """Every repeat of an NHWC image's rows or columns becomes a RESIZE_NEAREST_NEIGHBOR.

    Keras 3's UpSampling2D (ops.repeat) and tf.repeat are converted as a unit axis after the
    repeated one (EXPAND_DIMS or RESHAPE), a TILE (or BROADCAST_TO) over it and a RESHAPE
    merging it back; a repeat of the rows followed by one of the columns (or the other way
    round) becomes one resize. Rewritten only where the resize (align_corners and
    half_pixel_centers off) picks exactly the repeated pixels and no intermediate tensor is read
    elsewhere; else the ops stay.
    """
    graph = graph.copy()
    while any(_rewrite(graph, op) for op in reversed(list(graph.operators))):
        pass
    return graph


def _rewrite(graph: Graph, op: Operator) -> bool:
    last = _repeat(graph, op)
    if last is None:
        return False
    repeats = [last]
    first = _repeat_into(graph, last)
    if first is not None and first.axis != last.axis:
        repeats.insert(0, first)
    source = repeats[0].source
    _, height, width, _ = graph.tensors[source].shape
    factors = {repeat.axis: repeat.factor for repeat in repeats}
    size = (height * factors.get(1, 1), width * factors.get(2, 1))
    if not (_exact(height, size[0]) and _exact(width, size[1])):
        return False
    position = graph.operators.index(op)
    resize = Operator(OpKind.RESIZE_NEAREST_NEIGHBOR, (source,), (last.output,),
                      ResizeNearestNeighborAttrs(size), f"{op.name}/resize_nearest")
    graph.operators.insert(position, resize)
    for repeat in repeats:
        for removed in repeat.ops:
            graph.operators.remove(removed)
    drop_unused_tensors(graph)
    return True


def _exact(size: int, out: int) -> bool:
    """True when LiteRT's asymmetric nearest resize of `size` to `out` repeats each index."""
    return np.array_equal(nearest_indices(size, out, False, False),
                          np.repeat(np.arange(size), out // size))


def _repeat_into(graph: Graph, repeat: Repeat) -> Repeat | None:
    """The repeat that writes `repeat`'s source for it alone, if any."""
    before = producer(graph, repeat.source)
    if before is None or sole_consumer(graph, repeat.source) is not repeat.ops[0]:
        return None
    return _repeat(graph, before)


def _repeat(graph: Graph, reshape: Operator) -> Repeat | None:
    """The repeat ending in RESHAPE `reshape`, or None when `reshape` ends none."""
    if reshape.kind is not OpKind.RESHAPE:
        return None
    tile = producer(graph, reshape.inputs[0])
    if tile is None or tile.kind not in _TILES or sole_consumer(
            graph, tile.outputs[0]) is not reshape:
        return None
    unit = producer(graph, tile.inputs[0])
    if unit is None or unit.kind not in _UNIT_AXIS or sole_consumer(
            graph, unit.outputs[0]) is not tile:
        return None
    multiples = broadcast_multiples(graph.tensors[tile.inputs[0]].shape,
                                    graph.tensors[tile.outputs[0]].shape) or ()
    tiled = [axis for axis, m in enumerate(multiples) if m != 1]
    source, names = unit.inputs[0], (unit.inputs[0], unit.outputs[0], tile.outputs[0],
                                     reshape.outputs[0])
    if len(tiled) != 1 or len({(graph.tensors[n].dtype, graph.tensors[n].quant)
                                for n in names}) != 1:
        return None
    unit_axis, factor = tiled[0], multiples[tiled[0]]
    shape = graph.tensors[source].shape
    expanded, out = graph.tensors[unit.outputs[0]].shape, graph.tensors[reshape.outputs[0]].shape
    axis = unit_axis - 1
    if len(shape) != 4 or axis not in (1, 2) or expanded != (
            *shape[:unit_axis], 1, *shape[unit_axis:]):
        return None
    if out != (*shape[:axis], shape[axis] * factor, *shape[axis + 1:]):
        return None
    return Repeat(source, axis, factor, (unit, tile, reshape), reshape.outputs[0])
