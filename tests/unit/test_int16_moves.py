"""int16 data movement (LiteRT's int16x8 scheme): the reference against LiteRT, the constraint."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import mcuflow.ref.kernels  # noqa: F401  (registers the constraints beside the kernels)
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.constraints import INT16_MOVES, check_supported
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import (
    BlockAttrs,
    BroadcastToAttrs,
    ConcatenationAttrs,
    ExpandDimsAttrs,
    GatherAttrs,
    OpAttrs,
    OpKind,
    PackAttrs,
    PadAttrs,
    ResizeNearestNeighborAttrs,
    ReverseAttrs,
    SliceAttrs,
    SplitAttrs,
    StridedSliceAttrs,
    TileAttrs,
    TransposeAttrs,
)
from mcuflow.ir.quantization import QuantParams
from mcuflow.ref.interpreter import Interpreter
from tests.support import litert_interpreter, litert_invoke, random_input

Shape = tuple[int, ...]
Attrs = Callable[[Shape, np.random.Generator], OpAttrs]


def _begin_size(shape: Shape, rng: np.random.Generator) -> tuple[Shape, Shape]:
    begin = tuple(int(rng.integers(0, d)) for d in shape)
    return begin, tuple(int(rng.integers(1, d - b + 1)) for d, b in zip(shape, begin, strict=True))


def _strided(shape: Shape, rng: np.random.Generator) -> StridedSliceAttrs:
    steps = tuple(int(rng.choice([-2, -1, 1, 2, 3])) for _ in shape)
    begin = tuple(int(rng.integers(0, d)) for d in shape)
    end = tuple(-d - 1 if s < 0 else d for d, s in zip(shape, steps, strict=True))
    return StridedSliceAttrs(begin, end, steps)


def _split(shape: Shape, rng: np.random.Generator) -> SplitAttrs:
    axis = int(np.argmax(shape))
    cut = int(rng.integers(1, shape[axis]))
    return SplitAttrs(axis, (cut, shape[axis] - cut))


def _even_split(shape: Shape, rng: np.random.Generator) -> SplitAttrs:
    axis = int(np.argmax(shape))
    return SplitAttrs(axis, (shape[axis],) if shape[axis] % 2 else (shape[axis] // 2,) * 2)


def _gather(shape: Shape, rng: np.random.Generator) -> GatherAttrs:
    axis = int(rng.integers(0, len(shape)))
    count = int(rng.integers(1, 5))
    return GatherAttrs(axis, tuple(int(i) for i in rng.integers(0, shape[axis], count)), (count,))


def _resize(shape: Shape, rng: np.random.Generator) -> ResizeNearestNeighborAttrs:
    align, half = [(False, False), (True, False), (False, True)][int(rng.integers(0, 3))]
    return ResizeNearestNeighborAttrs((int(rng.integers(1, 12)), int(rng.integers(1, 12))),
                                      align, half)


CASES: dict[OpKind, tuple[int, Attrs]] = {
    OpKind.PAD: (4, lambda s, r: PadAttrs(tuple(
        (int(r.integers(0, 3)), int(r.integers(0, 3))) for _ in s))),
    OpKind.SLICE: (4, lambda s, r: SliceAttrs(*_begin_size(s, r))),
    OpKind.STRIDED_SLICE: (4, _strided),
    OpKind.TRANSPOSE: (4, lambda s, r: TransposeAttrs(tuple(int(a) for a in r.permutation(
        len(s))))),
    OpKind.REVERSE_V2: (4, lambda s, r: ReverseAttrs((int(r.integers(0, len(s))),))),
    OpKind.TILE: (4, lambda s, r: TileAttrs(tuple(int(m) for m in r.integers(1, 4, len(s))))),
    OpKind.BROADCAST_TO: (3, lambda s, r: BroadcastToAttrs((int(r.integers(1, 4)), *(
        int(r.integers(1, 4)) if d == 1 else d for d in s)))),
    OpKind.RESIZE_NEAREST_NEIGHBOR: (4, _resize),
    OpKind.SPLIT: (4, _even_split),
    OpKind.SPLIT_V: (4, _split),
    OpKind.UNPACK: (3, lambda s, r: PackAttrs(0, s[0])),
    OpKind.GATHER: (4, _gather),
    OpKind.EXPAND_DIMS: (3, lambda s, r: ExpandDimsAttrs(int(r.integers(0, len(s) + 1)))),
}
"""One-input kinds: the rank of their random input and their random attributes."""

SCALE = 3.0 / 32768.0


def _one_op(kind: OpKind, seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    rank, attrs = CASES[kind]
    shape = tuple(int(d) for d in rng.integers(1, 6, rank))
    if kind is OpKind.BROADCAST_TO:
        shape = tuple(1 if rng.random() < 0.5 else d for d in shape)
    b = GraphBuilder(f"{kind.value.lower()}_{seed}", seed=seed)
    x = b.input(shape, SCALE, 0, DType.INT16)
    outputs = b.op_outputs(kind, [x], attrs(shape, rng), b.quant(x), DType.INT16)
    return b.output(*outputs).build()


def _concat_and_pack(seed: int) -> Graph:
    """CONCATENATION along a random axis and PACK of two int16 inputs sharing a quantisation."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in rng.integers(1, 6, 4))
    axis = int(rng.integers(0, 4))
    other = tuple(int(rng.integers(1, 6)) if a == axis else d for a, d in enumerate(shape))
    b = GraphBuilder(f"concat_{seed}", seed=seed)
    x = b.input(shape, SCALE, 0, DType.INT16)
    y = b.input(other, SCALE, 0, DType.INT16)
    z = b.input(shape, SCALE, 0, DType.INT16)
    packed = b.op(OpKind.PACK, [x, z], PackAttrs(int(rng.integers(0, 5)), 2), b.quant(x),
                  DType.INT16)
    return b.output(b.concatenation([x, y, x], axis), packed).build()


def _assert_litert_equal(graph: Graph) -> None:
    check_supported(graph)
    again = read_tflite(write_tflite(graph))
    assert {again.tensors[name].dtype for name in again.outputs} == {DType.INT16}
    litert = litert_interpreter(write_tflite(graph))
    ours = Interpreter(graph)
    for run in range(2):
        rng = np.random.default_rng(run)
        inputs = [random_input(graph.tensors[name].shape, np.int16, rng)
                  for name in graph.inputs]
        want = litert_invoke(litert, inputs)
        for w, g in zip(want, ours.run(inputs).outputs, strict=True):
            assert g.dtype == w.dtype == np.int16 and g.shape == w.shape
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", list(CASES), ids=lambda k: k.value)
def test_int16_reference_is_bit_exact_against_litert(kind: OpKind, seed: int) -> None:
    _assert_litert_equal(_one_op(kind, seed))


@pytest.mark.parametrize("seed", range(6))
def test_int16_concatenation_and_pack_are_bit_exact_against_litert(seed: int) -> None:
    _assert_litert_equal(_concat_and_pack(seed))


def test_every_int16_move_is_tested() -> None:
    assert set(CASES) | {OpKind.CONCATENATION, OpKind.PACK} == INT16_MOVES


def _message(graph: Graph) -> str:
    with pytest.raises(UnsupportedModelError) as caught:
        check_supported(graph)
    return caught.value.message


@pytest.mark.parametrize("kind", [OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH])
def test_moves_litert_has_no_int16_kernel_for_are_refused(kind: OpKind) -> None:
    """LiteRT's depth_to_space.cc and space_to_depth.cc refuse int16 tensors."""
    b = GraphBuilder("blocks16")
    x = b.input((1, 4, 4, 4), SCALE, 0, DType.INT16)
    message = _message(b.output(b.op(kind, [x], BlockAttrs(2), b.quant(x), DType.INT16)).build())
    assert "LiteRT has no int16 DEPTH_TO_SPACE or SPACE_TO_DEPTH" in message
    assert "(int16 activations found)" in message


def test_int16_pad_and_concatenation_need_zero_point_0_and_one_quantisation() -> None:
    b = GraphBuilder("shifted_pad")
    x = b.input((1, 3, 3, 2), SCALE, 5, DType.INT16)
    assert "(int16 zero point 5 found)" in _message(b.output(b.pad(x, ((0, 0),) * 4)).build())
    b = GraphBuilder("two_scales")
    x = b.input((1, 3, 3, 2), SCALE, 0, DType.INT16)
    y = b.input((1, 3, 3, 2), 2 * SCALE, 0, DType.INT16)
    concat = b.op(OpKind.CONCATENATION, [x, y], ConcatenationAttrs(3),
                  QuantParams.per_tensor(SCALE, 0), DType.INT16)
    assert "must share the output's scale and zero point" in _message(b.output(concat).build())
