"""rewrite_upsampling: converters' repeats of rows and columns become RESIZE_NEAREST_NEIGHBOR."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import BroadcastToAttrs, OpKind, ResizeNearestNeighborAttrs, TileAttrs
from mcuflow.passes.pipeline import INT8_PASSES, run_passes
from mcuflow.passes.upsampling import rewrite_upsampling
from mcuflow.ref.interpreter import Interpreter
from tests.models.test_upsampling import repeat
from tests.support import litert_invoke, random_input

SHAPE = (1, 3, 5, 4)


def _assert_same_as_litert(graph: Graph, rewritten: Graph) -> None:
    """The rewritten graph's outputs equal LiteRT's for the graph as written."""
    x = random_input(SHAPE, np.int8, np.random.default_rng(1))
    want = litert_invoke(write_tflite(graph), [x])
    got = Interpreter(rewritten).run([x]).outputs
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)


def _kinds(graph: Graph) -> list[OpKind]:
    return [op.kind for op in graph.operators]


@pytest.mark.parametrize(("axes", "factors", "size"), [
    ((1, 2), (2, 2), (6, 10)),
    ((2, 1), (3, 2), (6, 15)),
    ((1,), (4,), (12, 5)),
    ((2,), (3,), (3, 15)),
    ((1, 1), (2, 3), (18, 5)),
], ids=["rows_columns", "columns_rows", "rows", "columns", "rows_twice"])
def test_repeats_become_one_resize(axes: tuple[int, ...], factors: tuple[int, ...],
                                   size: tuple[int, int]) -> None:
    b = GraphBuilder(seed=2)
    y = b.input(SHAPE, 0.05, -3)
    for axis, factor in zip(axes, factors, strict=True):
        y = repeat(b, y, axis, factor)
    graph = b.output(b.relu(y)).build()
    rewritten = run_passes(graph, INT8_PASSES)
    resizes = [op for op in rewritten.operators if op.kind is OpKind.RESIZE_NEAREST_NEIGHBOR]
    assert OpKind.TILE not in _kinds(rewritten)
    assert resizes[-1].attrs == ResizeNearestNeighborAttrs(size)
    assert len(resizes) == (2 if axes == (1, 1) else 1)
    _assert_same_as_litert(graph, rewritten)


def test_a_reshape_inserting_the_unit_axis_is_recognised() -> None:
    b = GraphBuilder(seed=3)
    x = b.input(SHAPE, 0.05, -3)
    expanded = b.reshape(x, (1, 3, 1, 5, 4))
    tiled = b.op(OpKind.TILE, [expanded], TileAttrs((1, 1, 2, 1, 1)), b.quant(x))
    graph = b.output(b.reshape(tiled, (1, 6, 5, 4))).build()
    rewritten = rewrite_upsampling(graph)
    assert _kinds(rewritten) == [OpKind.RESIZE_NEAREST_NEIGHBOR]
    _assert_same_as_litert(graph, rewritten)


def test_a_broadcast_over_the_unit_axis_is_recognised() -> None:
    b = GraphBuilder(seed=3)
    x = b.input(SHAPE, 0.05, -3)
    rows = b.op(OpKind.BROADCAST_TO, [b.expand_dims(x, 2)], BroadcastToAttrs((1, 3, 2, 5, 4)),
                b.quant(x))
    y = b.reshape(rows, (1, 6, 5, 4))
    columns = b.op(OpKind.BROADCAST_TO, [b.expand_dims(y, 3)],
                   BroadcastToAttrs((1, 6, 5, 3, 4)), b.quant(x))
    graph = b.output(b.reshape(columns, (1, 6, 15, 4))).build()
    rewritten = rewrite_upsampling(graph)
    assert _kinds(rewritten) == [OpKind.RESIZE_NEAREST_NEIGHBOR]
    assert rewritten.operators[0].attrs == ResizeNearestNeighborAttrs((6, 15))
    _assert_same_as_litert(graph, rewritten)


def _tiling_not_repeating() -> Graph:
    """The unit axis before the rows: the image tiled twice, not each row repeated."""
    b = GraphBuilder(seed=4)
    x = b.input(SHAPE, 0.05, -3)
    tiled = b.op(OpKind.TILE, [b.expand_dims(x, 1)], TileAttrs((1, 2, 1, 1, 1)), b.quant(x))
    return b.output(b.reshape(tiled, (1, 6, 5, 4))).build()


def _channels() -> Graph:
    b = GraphBuilder(seed=5)
    return b.output(repeat(b, b.input(SHAPE, 0.05, -3), 3, 2)).build()


def _shared_intermediate() -> Graph:
    b = GraphBuilder(seed=6)
    x = b.input(SHAPE, 0.05, -3)
    expanded = b.expand_dims(x, 2)
    tiled = b.op(OpKind.TILE, [expanded], TileAttrs((1, 1, 2, 1, 1)), b.quant(x))
    return b.output(b.reshape(tiled, (1, 6, 5, 4)), b.relu(expanded)).build()


def _two_axes_tiled() -> Graph:
    b = GraphBuilder(seed=7)
    x = b.input(SHAPE, 0.05, -3)
    tiled = b.op(OpKind.TILE, [b.expand_dims(x, 2)], TileAttrs((1, 1, 2, 2, 1)), b.quant(x))
    return b.output(b.reshape(tiled, (1, 6, 10, 4))).build()


@pytest.mark.parametrize("build", [_tiling_not_repeating, _channels, _shared_intermediate,
                                   _two_axes_tiled],
                         ids=["tiling", "channels", "shared_intermediate", "two_axes_tiled"])
def test_what_is_not_a_repeat_stays(build: Callable[[], Graph]) -> None:
    graph = build()
    rewritten = rewrite_upsampling(graph)
    assert _kinds(rewritten) == _kinds(graph)
    _assert_same_as_litert(graph, rewritten)


def test_whole_factors_repeat_exactly_in_litert() -> None:
    """LiteRT's asymmetric RESIZE_NEAREST_NEIGHBOR repeats each row `factor` times."""
    for height in range(1, 13):
        ramp = np.arange(height, dtype=np.int8).reshape(1, height, 1, 1)
        for factor in range(2, 9):
            b = GraphBuilder(seed=8)
            x = b.input((1, height, 1, 1), 0.05, 0)
            resize = b.op(OpKind.RESIZE_NEAREST_NEIGHBOR, [x],
                          ResizeNearestNeighborAttrs((height * factor, 1)), b.quant(x))
            got = litert_invoke(write_tflite(b.output(resize).build()), [ramp])[0]
            np.testing.assert_array_equal(got.reshape(-1), np.repeat(ramp.reshape(-1), factor))
