"""REDUCE_MAX, REDUCE_MIN, ARG_MAX and ARG_MIN: the reference kernels equal LiteRT to the bit."""

from __future__ import annotations

import numpy as np
import pytest

import mcuflow.ref.kernels  # noqa: F401  (registers every kernel)
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import ArgAttrs, MeanAttrs, OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.ref.interpreter import Interpreter
from mcuflow.ref.registry import prepare
from tests.support import litert_interpreter, litert_invoke, random_input

REDUCES = [OpKind.REDUCE_MAX, OpKind.REDUCE_MIN]
ARGS = [OpKind.ARG_MAX, OpKind.ARG_MIN]
# (input shape, axes): GlobalMaxPooling1D/2D, channels, several and all axes, rank 5, negative.
REDUCE_CASES = [
    ((1, 16, 8), (1,)),
    ((1, 6, 7, 5), (1, 2)),
    ((1, 6, 7, 5), (3,)),
    ((2, 3, 4, 5), (0, 2)),
    ((1, 6, 7, 5), (0, 1, 2, 3)),
    ((2, 3, 2, 4, 3), (1, 3)),
    ((1, 6, 7, 5), (-1, -3)),
]
ARG_CASES = [((1, 10), 1), ((1, 6, 7, 5), 3), ((1, 6, 7, 5), 1), ((3, 4, 5), 0),
             ((2, 3, 2, 4, 3), 2), ((1, 1000), 1)]


def _assert_bit_exact(graph: Graph, seeds: tuple[int, ...] = (0, 1, 2),
                      inputs: list[np.ndarray] | None = None) -> None:
    litert = litert_interpreter(write_tflite(graph))
    ours = Interpreter(graph)
    x = graph.tensor(graph.inputs[0])
    sets = [[inputs[0]]] if inputs else [
        [random_input(x.shape, np.dtype(np.int8), np.random.default_rng(s))] for s in seeds]
    for values in sets:
        want = litert_invoke(litert, values)[0]
        got = ours.run(values).outputs[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def _reduce_graph(kind: OpKind, shape: tuple[int, ...], axes: tuple[int, ...], keep: bool
                  ) -> Graph:
    b = GraphBuilder(seed=3)
    x = b.input(shape, 0.07, -9)
    return b.output(b.op(kind, [x], MeanAttrs(axes, keep), b.quant(x))).build()


def _arg_graph(kind: OpKind, shape: tuple[int, ...], axis: int, dtype: DType = DType.INT32
               ) -> Graph:
    b = GraphBuilder(seed=4)
    x = b.input(shape, 0.05, 7)
    return b.output(b.op(kind, [x], ArgAttrs(axis, dtype), None, dtype)).build()


@pytest.mark.parametrize("kind", REDUCES, ids=lambda k: k.value)
@pytest.mark.parametrize(("shape", "axes"), REDUCE_CASES, ids=str)
@pytest.mark.parametrize("keep", [True, False], ids=["keep_dims", "dropped"])
def test_reduce(kind: OpKind, shape: tuple, axes: tuple, keep: bool) -> None:
    _assert_bit_exact(_reduce_graph(kind, shape, axes, keep))


@pytest.mark.parametrize("kind", ARGS, ids=lambda k: k.value)
@pytest.mark.parametrize(("shape", "axis"), ARG_CASES, ids=str)
@pytest.mark.parametrize("dtype", [DType.INT32, DType.INT64], ids=lambda d: d.value)
def test_arg(kind: OpKind, shape: tuple, axis: int, dtype: DType) -> None:
    _assert_bit_exact(_arg_graph(kind, shape, axis, dtype))


@pytest.mark.parametrize("kind", ARGS, ids=lambda k: k.value)
def test_arg_takes_the_first_of_equal_values(kind: OpKind) -> None:
    """Ties (many in a few distinct values) go to the lowest index, as LiteRT's strict compare."""
    graph = _arg_graph(kind, (4, 3, 16), 2)
    values = np.random.default_rng(5).integers(-2, 2, (4, 3, 16)).astype(np.int8)
    values[0] = 127
    values[1] = -128
    _assert_bit_exact(graph, inputs=[values])


@pytest.mark.parametrize("kind", REDUCES, ids=lambda k: k.value)
def test_reduce_over_saturated_values(kind: OpKind) -> None:
    graph = _reduce_graph(kind, (2, 4, 8), (1, 2), True)
    _assert_bit_exact(graph, inputs=[np.full((2, 4, 8), -128 if kind is OpKind.REDUCE_MAX
                                             else 127, np.int8)])


def test_reduce_refuses_a_change_of_quantisation() -> None:
    """LiteRT's int8 REDUCE_MAX requires the input's scale and zero point on the output."""
    b = GraphBuilder(seed=3)
    x = b.input((1, 4, 4, 3), 0.07, -9)
    y = b.op(OpKind.REDUCE_MAX, [x], MeanAttrs((1, 2), True), QuantParams.per_tensor(0.1, 0))
    graph = b.output(y).build()
    with pytest.raises(UnsupportedModelError, match="share scale and zero point"):
        prepare(graph, graph.operators[0])


@pytest.mark.parametrize(("declared", "written"), [(DType.INT32, DType.INT64),
                                                   (DType.INT8, DType.INT8)], ids=str)
def test_arg_refuses_other_index_types(declared: DType, written: DType) -> None:
    b = GraphBuilder(seed=3)
    x = b.input((1, 10), 0.07, -9)
    y = b.op(OpKind.ARG_MAX, [x], ArgAttrs(1, declared), b.quant(x), written)
    graph = b.output(y).build()
    with pytest.raises(UnsupportedModelError, match="int32 or int64 indices"):
        prepare(graph, graph.operators[0])


@pytest.mark.parametrize("kind", [*REDUCES, *ARGS], ids=lambda k: k.value)
def test_tflite_round_trip(kind: OpKind) -> None:
    graph = (_reduce_graph(kind, (1, 6, 7, 5), (1, 2), False) if kind in REDUCES
             else _arg_graph(kind, (1, 6, 7, 5), 3))
    again = read_tflite(write_tflite(graph))
    assert [op.attrs for op in again.operators] == [op.attrs for op in graph.operators]
    assert again.tensor(again.outputs[0]).dtype == graph.tensor(graph.outputs[0]).dtype


@pytest.mark.parametrize("kind", [*REDUCES, *ARGS], ids=lambda k: k.value)
def test_float_kernels(kind: OpKind) -> None:
    from mcuflow.ref.registry import FLOAT_KERNELS

    x = np.random.default_rng(2).standard_normal((2, 5, 6)).astype(np.float32)
    b = GraphBuilder(seed=3)
    name = b.input((2, 5, 6), 0.1, 0)
    if kind in REDUCES:
        out = b.op(kind, [name], MeanAttrs((1,), False), b.quant(name))
        want = (x.max if kind is OpKind.REDUCE_MAX else x.min)(axis=1)
    else:
        out = b.op(kind, [name], ArgAttrs(2), None, DType.INT32)
        want = (x.argmax if kind is OpKind.ARG_MAX else x.argmin)(axis=2)
    graph = b.output(out).build()
    got = FLOAT_KERNELS[kind](graph, graph.operators[0], [x])[0]
    np.testing.assert_array_equal(got, want)
