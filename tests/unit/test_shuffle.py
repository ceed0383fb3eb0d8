"""Data-movement ops: reference equals LiteRT on random cases; TFLite round trip; refusals."""

from __future__ import annotations

import math
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import tflite

import mcuflow.ref.kernels  # noqa: F401  (registers every kernel)
from mcuflow.errors import McuflowError, UnsupportedModelError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import (
    ElementwiseAttrs,
    GatherAttrs,
    OpAttrs,
    OpKind,
    PackAttrs,
    ReverseAttrs,
    SplitAttrs,
    StridedSliceAttrs,
    TransposeAttrs,
)
from mcuflow.ir.quantization import QuantParams
from mcuflow.ir.shapes import ShapeError
from mcuflow.passes.fold_constants import fold_constants
from mcuflow.ptq import quantize_model
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from mcuflow.ref.registry import prepare
from tests.support import litert_interpreter, litert_invoke, random_input
from tests.unit.test_tflite_io import (
    OP,
    TT,
    RawModel,
    RawO,
    RawT,
    assert_same_outputs,
    i32,
    raw_model,
)

CASES = 24


def _shape(rng: np.random.Generator, low: int = 1, high: int = 5) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(low, high + 1))))


def _graph(kind: OpKind, shapes: list[tuple[int, ...]], attrs: OpAttrs) -> Graph:
    b = GraphBuilder(seed=5)
    inputs = [b.input(shape, 0.05, -3) for shape in shapes]
    quant = b.quant(inputs[0])
    for name in inputs[1:]:
        b.graph.tensors[name].quant = quant
    outputs = b.op_outputs(kind, inputs, attrs, quant)
    return b.output(*outputs).build()


def _assert_bit_exact(graph: Graph, seed: int) -> None:
    litert = litert_interpreter(write_tflite(graph))
    rng = np.random.default_rng(seed)
    values = [random_input(graph.tensor(name).shape, np.dtype(np.int8), rng)
              for name in graph.inputs]
    want = litert_invoke(litert, values)
    got = Interpreter(graph).run(values).outputs
    assert len(got) == len(want)
    for ours, theirs in zip(got, want, strict=True):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


def _strided_attrs(rng: np.random.Generator, shape: tuple[int, ...]) -> StridedSliceAttrs:
    rank = len(shape)
    strides = tuple(int(s) for s in rng.choice([-3, -2, -1, 1, 1, 2, 3], size=rank))
    shrink = int(rng.integers(0, 1 << rank)) & sum(1 << a for a in range(rank) if strides[a] > 0)
    shrink = shrink if rng.random() < 0.3 else 0
    begin = tuple(int(rng.integers(-d, d)) if shrink & (1 << a) else int(rng.integers(-d - 2,
                                                                                      d + 3))
                  for a, d in enumerate(shape))
    end = tuple(int(rng.integers(-d - 2, d + 3)) for d in shape)
    masks = [int(rng.integers(0, 1 << rank)) if rng.random() < 0.4 else 0 for _ in range(2)]
    return StridedSliceAttrs(begin, end, strides, masks[0], masks[1], shrink)


def _strided_case(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    while True:
        shape = _shape(rng)
        try:
            return _graph(OpKind.STRIDED_SLICE, [shape], _strided_attrs(rng, shape))
        except ShapeError:
            continue


def _split_case(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    shape = list(_shape(rng))
    axis = int(rng.integers(0, len(shape)))
    if rng.random() < 0.5:
        count = int(rng.integers(1, 4))
        shape[axis] *= count
        return _graph(OpKind.SPLIT, [tuple(shape)], SplitAttrs(axis, (shape[axis] // count,)
                                                              * count))
    shape[axis] += int(rng.integers(1, 5))
    cuts = sorted(rng.choice(np.arange(1, shape[axis]), size=int(rng.integers(0, min(
        3, shape[axis] - 1) + 1)), replace=False).tolist())
    sizes = tuple(int(b - a) for a, b in zip([0, *cuts], [*cuts, shape[axis]], strict=True))
    return _graph(OpKind.SPLIT_V, [tuple(shape)], SplitAttrs(axis, sizes))


def _pack_case(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    shape, count = _shape(rng, 1, 4), int(rng.integers(1, 5))
    axis = int(rng.integers(0, len(shape) + 1))
    return _graph(OpKind.PACK, [shape] * count, PackAttrs(axis, count))


def _unpack_case(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    shape = _shape(rng, 2, 5)
    axis = int(rng.integers(0, len(shape)))
    return _graph(OpKind.UNPACK, [shape], PackAttrs(axis, shape[axis]))


def _transpose_case(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    shape = _shape(rng)
    perm = tuple(int(a) for a in rng.permutation(len(shape)))
    return _graph(OpKind.TRANSPOSE, [shape], TransposeAttrs(perm))


def _gather_case(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    shape = _shape(rng, 1, 4)
    axis = int(rng.integers(0, len(shape)))
    indices_shape = _shape(rng, 1, 2)
    indices = tuple(int(i) for i in rng.integers(0, shape[axis], size=math.prod(indices_shape)))
    return _graph(OpKind.GATHER, [shape], GatherAttrs(axis, indices, indices_shape))


def _reverse_case(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    shape = _shape(rng)
    first = int(rng.integers(0, len(shape)))
    count = int(rng.integers(1, len(shape) - first + 1))
    return _graph(OpKind.REVERSE_V2, [shape], ReverseAttrs(tuple(range(first, first + count))))


MAKERS = {OpKind.STRIDED_SLICE: _strided_case, OpKind.SPLIT: _split_case,
          OpKind.PACK: _pack_case, OpKind.UNPACK: _unpack_case,
          OpKind.TRANSPOSE: _transpose_case, OpKind.GATHER: _gather_case,
          OpKind.REVERSE_V2: _reverse_case}


@pytest.mark.parametrize("seed", range(CASES))
@pytest.mark.parametrize("kind", list(MAKERS), ids=lambda k: k.value)
def test_random_cases_equal_litert(kind: OpKind, seed: int) -> None:
    _assert_bit_exact(MAKERS[kind](seed), seed)


@pytest.mark.parametrize("seed", range(CASES))
@pytest.mark.parametrize("kind", list(MAKERS), ids=lambda k: k.value)
def test_tflite_round_trip(kind: OpKind, seed: int) -> None:
    graph = MAKERS[kind](seed)
    again = read_tflite(write_tflite(graph))
    assert [(op.kind, op.attrs) for op in again.operators] == [
        (op.kind, op.attrs) for op in graph.operators]
    assert [again.tensor(n).shape for n in again.outputs] == [
        graph.tensor(n).shape for n in graph.outputs]


def _split_v_options(builder: flatbuffers.Builder) -> int:
    tflite.SplitVOptionsStart(builder)
    tflite.SplitVOptionsAddNumSplits(builder, 3)
    return tflite.SplitVOptionsEnd(builder)


def test_reverse_v2_reads_negative_axes() -> None:
    """REVERSE_V2's axis input counts negative axes from the end, as LiteRT."""
    spec = RawModel(
        [RawT("x", (2, 3, 4)), RawT("axis", (1,), TT.INT32, i32(-1)), RawT("y", (2, 3, 4))],
        [RawO(OP.REVERSE_V2, [0, 1], [2])], [0], [2])
    model = raw_model(spec)
    graph = read_tflite(model)
    assert graph.operators[0].attrs == ReverseAttrs((2,))
    assert_same_outputs(model, write_tflite(graph))


def test_split_v_takes_the_rest_for_minus_one() -> None:
    """SPLIT_V's one -1 size takes what the others leave (resolved on import), as in LiteRT."""
    spec = RawModel(
        [RawT("x", (2, 9, 3)), RawT("sizes", (3,), TT.INT32, i32(2, -1, 3)),
         RawT("axis", (), TT.INT32, i32(-2)), RawT("a", (2, 2, 3)), RawT("b", (2, 4, 3)),
         RawT("c", (2, 3, 3))],
        [RawO(OP.SPLIT_V, [0, 1, 2], [3, 4, 5],
              (tflite.BuiltinOptions.SplitVOptions, _split_v_options))],
        [0], [3, 4, 5])
    model = raw_model(spec)
    graph = read_tflite(model)
    assert graph.operators[0].attrs == SplitAttrs(1, (2, 4, 3))
    assert_same_outputs(model, write_tflite(graph))


def test_tflite_gather_at_computed_indices_is_refused() -> None:
    """A GATHER whose indices are a graph input is refused with the constraint's message."""
    spec = RawModel(
        [RawT("x", (4, 3)), RawT("i", (2,), TT.INT32), RawT("y", (2, 3))],
        [RawO(OP.GATHER, [0, 1], [2])], [0, 1], [2])
    with pytest.raises(UnsupportedModelError, match="takes its indices from a tensor computed"):
        read_tflite(raw_model(spec))


def _refused(graph: Graph, message: str) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        prepare(graph, graph.operators[0])


@pytest.mark.parametrize(("masks", "strides"), [
    ((0, 0, 0, 1, 0), (1, 1, 1)), ((0, 0, 0, 0, 2), (1, 1, 1)), ((0, 0, 2, 0, 0), (1, -1, 1)),
], ids=["ellipsis", "new_axis", "shrink_backwards"])
def test_strided_slice_refuses_ellipsis_new_axis_and_backward_shrink(
        masks: tuple[int, ...], strides: tuple[int, ...]) -> None:
    attrs = StridedSliceAttrs((0, 1, 0), (2, 2, 3), strides, *masks)
    _refused(_graph(OpKind.STRIDED_SLICE, [(2, 3, 3)], attrs), "ellipsis_mask, new_axis_mask")


def test_reverse_v2_refuses_axes_apart() -> None:
    _refused(_graph(OpKind.REVERSE_V2, [(2, 3, 4)], ReverseAttrs((0, 2))), "must be consecutive")


def test_gather_refuses_indices_outside_and_batch_dims() -> None:
    _refused(_graph(OpKind.GATHER, [(4, 3)], GatherAttrs(0, (1, 4), (2,))), "every index must lie")
    _refused(_graph(OpKind.GATHER, [(4, 3)], GatherAttrs(1, (1,), (1,), 1)), "batch_dims")


def test_gather_of_a_constant_table_equals_litert() -> None:
    """An int8 constant table read at constant indices (an embedding lookup)."""
    b = GraphBuilder(seed=5)
    x = b.input((2, 3), 0.05, -3)
    table = b.constant("table", np.arange(-60, 60, 5, dtype=np.int8).reshape(8, 3), b.quant(x))
    rows = b.op(OpKind.GATHER, [table], GatherAttrs(0, (7, 0, 3, 3), (2, 2)), b.quant(x))
    graph = b.output(rows, b.relu(x)).build()
    _assert_bit_exact(graph, 0)


@pytest.mark.parametrize("kind", [OpKind.SPLIT, OpKind.PACK, OpKind.TRANSPOSE],
                         ids=lambda k: k.value)
def test_refuses_a_change_of_quantisation(kind: OpKind) -> None:
    attrs = {OpKind.SPLIT: SplitAttrs(0, (1, 1)), OpKind.PACK: PackAttrs(0, 2),
             OpKind.TRANSPOSE: TransposeAttrs((1, 0))}[kind]
    graph = _graph(kind, [(2, 3)] * (2 if kind is OpKind.PACK else 1), attrs)
    graph.tensors[graph.outputs[-1]].quant = QuantParams.per_tensor(0.1, 0)
    _refused(graph, "scale and zero point")


@pytest.mark.parametrize(("kind", "shapes", "attrs"), [
    (OpKind.SPLIT, [(4, 3)], SplitAttrs(0, (1, 2))),
    (OpKind.PACK, [(4, 3), (4, 2)], PackAttrs(0, 2)),
    (OpKind.UNPACK, [(4, 3)], PackAttrs(1, 4)),
    (OpKind.TRANSPOSE, [(4, 3)], TransposeAttrs((0, 0))),
    (OpKind.REVERSE_V2, [(4, 3)], ReverseAttrs((1, 1))),
    (OpKind.REVERSE_V2, [(4, 3)], ReverseAttrs((2,))),
    (OpKind.STRIDED_SLICE, [(4, 3)], StridedSliceAttrs((3, 0), (1, 3), (1, 1))),
], ids=lambda v: getattr(v, "value", ""))
def test_shapes_that_do_not_fit_are_shape_errors(kind: OpKind, shapes: list[tuple[int, ...]],
                                                 attrs: OpAttrs) -> None:
    with pytest.raises(McuflowError):
        _graph(kind, shapes, attrs)


def _strided_slice_options(builder: flatbuffers.Builder) -> int:
    tflite.StridedSliceOptionsStart(builder)
    tflite.StridedSliceOptionsAddShrinkAxisMask(builder, 1)
    return tflite.StridedSliceOptionsEnd(builder)


def test_strided_slice_takes_trailing_axes_whole() -> None:
    """begin, end and strides shorter than the rank leave the trailing axes whole, as LiteRT."""
    spec = RawModel(
        [RawT("x", (2, 3, 4)), RawT("begin", (2,), TT.INT32, i32(1, 0)),
         RawT("end", (2,), TT.INT32, i32(2, 3)), RawT("strides", (2,), TT.INT32, i32(1, 2)),
         RawT("y", (2, 4))],
        [RawO(OP.STRIDED_SLICE, [0, 1, 2, 3], [4],
              (tflite.BuiltinOptions.StridedSliceOptions, _strided_slice_options))],
        [0], [4])
    model = raw_model(spec)
    graph = read_tflite(model)
    assert graph.operators[0].attrs == StridedSliceAttrs((1, 0, 0), (2, 3, 4), (1, 2, 1), 0, 0, 1)
    assert_same_outputs(model, write_tflite(graph))


def test_float_constants_through_transpose_gather_and_strided_slice_are_folded() -> None:
    """Float models' constant glue (a transposed, gathered, sliced table) folds at import."""
    b = GraphBuilder(seed=5)
    x = b.input((3, 2), dtype=DType.FLOAT32)
    table = b.constant("table", np.arange(24, dtype=np.float32).reshape(4, 6), None)
    moved = b.op(OpKind.TRANSPOSE, [table], TransposeAttrs((1, 0)), None, DType.FLOAT32)
    picked = b.op(OpKind.GATHER, [moved], GatherAttrs(1, (3, 0), (2,)), None, DType.FLOAT32)
    cut = b.op(OpKind.STRIDED_SLICE, [picked], StridedSliceAttrs((5, 0), (0, 2), (-2, 1), 0, 1),
               None, DType.FLOAT32)
    graph = b.output(b.op(OpKind.ADD, [x, cut], ElementwiseAttrs(), None, DType.FLOAT32)).build()
    folded = fold_constants(graph)
    assert [op.kind for op in folded.operators] == [OpKind.ADD]
    value = np.ones((3, 2), np.float32)
    np.testing.assert_array_equal(run_float(folded, [value]).outputs[0],
                                  run_float(graph, [value]).outputs[0])
    np.testing.assert_array_equal(run_float(graph, [value]).outputs[0],
                                  value + np.arange(24.0).reshape(4, 6).T[[5, 3, 1]][:, [3, 0]])


def test_quantised_float_model_with_pack_unpack_split_matches_litert(tmp_path: Path) -> None:
    """PTQ gives every SPLIT / UNPACK output and PACK input one quantisation: LiteRT agrees."""
    b = GraphBuilder(seed=5)
    f32 = DType.FLOAT32
    x = b.input((1, 6, 8), dtype=f32)
    y = b.op(OpKind.ADD, [x, b.constant("shift", np.full((1, 1, 8), 0.5, np.float32), None)],
             ElementwiseAttrs(), None, f32)
    parts = b.op_outputs(OpKind.SPLIT_V, [y], SplitAttrs(1, (1, 2, 3)), None, f32)
    rows = b.op_outputs(OpKind.UNPACK, [parts[2]], PackAttrs(1, 3), None, f32)
    halves = b.op_outputs(OpKind.SPLIT, [parts[1]], SplitAttrs(1, (1, 1)), None, f32)
    stacked = b.op(OpKind.PACK, [rows[2], rows[0], rows[1]],
                   PackAttrs(2, 3), None, f32)
    b.output(stacked, b.op(OpKind.PACK, [parts[0], halves[0]], PackAttrs(0, 2), None, f32))
    path = tmp_path / "pieces.tflite"
    path.write_bytes(write_tflite(b.build()))
    calibration = np.random.default_rng(3).standard_normal((8, 6, 8)).astype(np.float32)
    result = quantize_model(path, calibration, "affine", True, "minmax")
    kinds = {op.kind for op in result.graph.operators}
    assert {OpKind.SPLIT, OpKind.SPLIT_V, OpKind.UNPACK, OpKind.PACK} <= kinds
    litert = litert_interpreter(result.tflite())
    interpreter = Interpreter(result.graph)
    for sample in calibration[:4]:
        q = result.quantize_input(sample[None])
        for ours, theirs in zip(interpreter.run([q]).outputs, litert_invoke(litert, [q]),
                                strict=True):
            np.testing.assert_array_equal(ours, theirs)
