"""SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND: reference kernels (int8, float32) and TFLite form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import (
    BatchSpaceAttrs,
    Conv2DAttrs,
    FullyConnectedAttrs,
    OpKind,
    infer_output_shapes,
)
from mcuflow.ir.quantization import QuantParams
from mcuflow.ir.shapes import ShapeError
from mcuflow.ptq import quantize_model
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from tests.support import (
    assert_litert_bit_exact,
    litert_interpreter,
    litert_invoke,
    random_input,
)

# (input shape, block, paddings, crops of the BATCH_TO_SPACE_ND applied to the result): square
# and 1-D dilations, uneven blocks, two images, 3-D signals, one channel.
CASES = [
    ((1, 6, 6, 3), (2, 2), ((0, 0), (0, 0)), ((0, 0), (0, 0))),
    ((1, 5, 7, 2), (2, 3), ((1, 0), (2, 0)), ((0, 1), (1, 0))),
    ((2, 4, 4, 1), (4, 4), ((4, 4), (3, 5)), ((2, 2), (4, 4))),
    ((1, 1, 9, 4), (1, 2), ((0, 0), (1, 2)), ((0, 0), (2, 1))),
    ((2, 9, 5, 3), (3, 1), ((0, 0), (0, 0)), ((1, 1), (0, 0))),
    ((1, 9, 4), (2,), ((1, 2),), ((1, 1),)),
    ((3, 16, 1), (4,), ((4, 4),), ((0, 3),)),
]
QUANTS = [(0.05, 3), (0.5, -128), (0.02, 127)]


def _graph(shape: tuple[int, ...], block: tuple[int, ...], pads: tuple[tuple[int, int], ...],
           crops: tuple[tuple[int, int], ...], quant: tuple[float, int] = QUANTS[0],
           dtype: DType = DType.INT8) -> Graph:
    b = GraphBuilder(seed=len(shape))
    if dtype is DType.FLOAT32:
        x = b.input(shape, dtype=DType.FLOAT32)
        s2b = b.op(OpKind.SPACE_TO_BATCH_ND, [x], BatchSpaceAttrs(block, pads), None,
                   DType.FLOAT32)
        b2s = b.op(OpKind.BATCH_TO_SPACE_ND, [s2b], BatchSpaceAttrs(block, crops), None,
                   DType.FLOAT32)
        return b.output(s2b, b2s).build()
    x = b.input(shape, *quant)
    s2b = b.space_to_batch(x, block, pads)
    return b.output(s2b, b.batch_to_space(s2b, block, crops)).build()


@pytest.mark.parametrize("quant", QUANTS, ids=str)
@pytest.mark.parametrize(("shape", "block", "pads", "crops"), CASES, ids=str)
def test_bit_exact_against_litert(shape: tuple[int, ...], block: tuple[int, ...],
                                  pads: tuple[tuple[int, int], ...],
                                  crops: tuple[tuple[int, int], ...],
                                  quant: tuple[float, int]) -> None:
    """Both ops, including the batch order and the zero-point padding, equal LiteRT's."""
    graph = _graph(shape, block, pads, crops, quant)
    litert = litert_interpreter(write_tflite(graph))
    ours = Interpreter(graph)
    for seed in range(3):
        x = random_input(shape, np.int8, np.random.default_rng(seed))
        for got, want in zip(ours.run([x]).outputs, litert_invoke(litert, [x]), strict=True):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("shape", "block", "pads", "crops"), CASES[1:3] + CASES[5:6], ids=str)
def test_float_against_litert(shape: tuple[int, ...], block: tuple[int, ...],
                              pads: tuple[tuple[int, int], ...],
                              crops: tuple[tuple[int, int], ...]) -> None:
    graph = _graph(shape, block, pads, crops, dtype=DType.FLOAT32)
    inputs = [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]
    for got, want in zip(run_float(graph, inputs).outputs,
                         litert_invoke(write_tflite(graph), inputs), strict=True):
        np.testing.assert_array_equal(got, want)


def test_tflite_form_round_trips() -> None:
    graph = _graph(*CASES[1])
    ops = read_tflite(write_tflite(graph)).operators
    assert [op.kind for op in ops] == [OpKind.SPACE_TO_BATCH_ND, OpKind.BATCH_TO_SPACE_ND]
    assert ops[0].attrs == BatchSpaceAttrs((2, 3), ((1, 0), (2, 0)))
    assert ops[1].attrs == BatchSpaceAttrs((2, 3), ((0, 1), (1, 0)))
    assert all(len(op.inputs) == 1 for op in ops)


def test_refuses_a_change_of_quantisation() -> None:
    b = GraphBuilder(seed=0)
    x = b.input((1, 4, 4, 2), 0.05, 1)
    y = b.op(OpKind.SPACE_TO_BATCH_ND, [x], BatchSpaceAttrs((2, 2), ((0, 0), (0, 0))),
             QuantParams.per_tensor(0.5, 0))
    with pytest.raises(UnsupportedModelError, match="share scale and zero point"):
        Interpreter(b.output(y).build())


@pytest.mark.parametrize(("kind", "shape", "attrs", "message"), [
    (OpKind.SPACE_TO_BATCH_ND, (1, 5, 4, 2), BatchSpaceAttrs((2, 2), ((0, 0), (0, 0))),
     "not multiples of block"),
    (OpKind.SPACE_TO_BATCH_ND, (1, 4, 4, 2), BatchSpaceAttrs((2,), ((0, 0),)),
     "do not fit a 3-D or 4-D input"),
    (OpKind.SPACE_TO_BATCH_ND, (1, 4, 4, 2), BatchSpaceAttrs((0, 2), ((0, 0), (0, 0))),
     "must be positive"),
    (OpKind.BATCH_TO_SPACE_ND, (3, 4, 4, 2), BatchSpaceAttrs((2, 2), ((0, 0), (0, 0))),
     "does not split"),
    (OpKind.BATCH_TO_SPACE_ND, (4, 1, 1, 2), BatchSpaceAttrs((2, 2), ((1, 1), (0, 0))),
     "does not split"),
    (OpKind.BATCH_TO_SPACE_ND, (4, 2, 2), BatchSpaceAttrs((2,), ((0, -1),)),
     "non-negative"),
])
def test_refuses_bad_shapes(kind: OpKind, shape: tuple[int, ...], attrs: BatchSpaceAttrs,
                            message: str) -> None:
    b = GraphBuilder(seed=0)
    x = b.input(shape, 0.05, 1)
    with pytest.raises(ShapeError, match=message):
        b.op(kind, [x], attrs, b.quant(x))


def _float_dilated(pads: tuple[tuple[int, int], ...], crops: tuple[tuple[int, int], ...]
                   ) -> Graph:
    """A float model: SPACE_TO_BATCH_ND (block 2), CONV_2D 3x3 VALID, BATCH_TO_SPACE_ND, FC."""
    rng = np.random.default_rng(3)
    graph = Graph("float_dilated")

    def add(name: str, shape: tuple[int, ...], data: bool = False) -> str:
        values = rng.standard_normal(shape).astype(np.float32) if data else None
        graph.add_tensor(Tensor(name, shape, DType.FLOAT32, data=values))
        return name

    def op(kind: OpKind, inputs: list[str], attrs: object, out: str) -> str:
        operator = Operator(kind, tuple(inputs), (out,), attrs, out)
        add(out, infer_output_shapes(graph, operator)[0])
        graph.operators.append(operator)
        return out

    graph.inputs.append(add("x", (1, 7, 6, 3)))
    y = op(OpKind.SPACE_TO_BATCH_ND, ["x"], BatchSpaceAttrs((2, 2), pads), "s2b")
    y = op(OpKind.CONV_2D, [y, add("w", (4, 3, 3, 3), True), add("b", (4,), True)],
           Conv2DAttrs(activation=Activation.RELU), "conv")
    y = op(OpKind.BATCH_TO_SPACE_ND, [y], BatchSpaceAttrs((2, 2), crops), "b2s")
    graph.outputs.append(op(OpKind.FULLY_CONNECTED, [y, add("fc", (5, _flat_size(graph, y)), True)],
                            FullyConnectedAttrs(), "logits"))
    return graph


def _flat_size(graph: Graph, name: str) -> int:
    """The flattened size of tensor `name` (FULLY_CONNECTED's depth)."""
    return int(np.prod(graph.tensors[name].shape))


@pytest.mark.parametrize(("pads", "crops", "folds"), [
    (((2, 3), (2, 2)), ((0, 1), (0, 0)), True),
    (((0, 1), (0, 0)), ((1, 0), (0, 0)), False),
], ids=["folded", "cropping"])
def test_float_model_quantises_bit_exact(pads: tuple[tuple[int, int], ...],
                                         crops: tuple[tuple[int, int], ...], folds: bool,
                                         tmp_path: Path) -> None:
    """PTQ of a float TFLite model with the batch-space ops, folded or run, equals LiteRT."""
    path = tmp_path / "float.tflite"
    path.write_bytes(write_tflite(_float_dilated(pads, crops)))
    samples = np.random.default_rng(1).standard_normal((30, 1, 7, 6, 3)).astype(np.float32)
    np.save(tmp_path / "calibration.npy", samples[:, 0])
    result = quantize_model(path, tmp_path / "calibration.npy")
    kinds = {op.kind for op in result.graph.operators}
    assert (OpKind.SPACE_TO_BATCH_ND not in kinds) is folds
    assert_litert_bit_exact(result, samples[:6, 0])
