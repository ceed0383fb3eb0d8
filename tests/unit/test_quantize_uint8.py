"""QUANTIZE between uint8 and int8 (LiteRT's Requantize) and where uint8 tensors may appear."""

from __future__ import annotations

import numpy as np
import pytest

from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import DType, Graph, Tensor
from mcuflow.ir.ops import NoAttrs, OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.ref.interpreter import Interpreter
from tests.support import litert_invoke

# (input type, input scale, zero point, output type, output scale, zero point)
CASES = [
    (DType.UINT8, 0.02, 128, DType.INT8, 0.02, 0),
    (DType.INT8, 0.02, 0, DType.UINT8, 0.02, 128),
    (DType.INT8, 1 / 256, -128, DType.UINT8, 1 / 256, 0),
    (DType.UINT8, 0.05, 3, DType.INT8, 0.013, -77),
    (DType.INT8, 0.4, -5, DType.UINT8, 0.9, 200),
    (DType.UINT8, 0.3, 17, DType.UINT8, 0.07, 40),
    (DType.UINT8, 0.02, 0, DType.INT8, 0.02, 0),
    (DType.INT8, 0.001, 127, DType.UINT8, 0.5, 255),
]


def _graph(case: tuple[DType, float, int, DType, float, int]) -> Graph:
    source, in_scale, in_zero, target, out_scale, out_zero = case
    b = GraphBuilder(seed=0)
    x = b.input((2, 256), in_scale, in_zero, dtype=source)
    return b.output(b.op(OpKind.QUANTIZE, [x], NoAttrs(),
                         QuantParams.per_tensor(out_scale, out_zero), target)).build()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_byte_against_litert(case: tuple[DType, float, int, DType, float, int]) -> None:
    """Each of the 256 input bytes, through the reference and through LiteRT's quantize.cc."""
    graph = _graph(case)
    x = np.stack([np.arange(256), np.arange(256)[::-1]]).astype(case[0].numpy)
    got = Interpreter(graph).run([x]).outputs[0]
    want = litert_invoke(write_tflite(graph), [x])[0]
    assert got.dtype == want.dtype == case[3].numpy
    np.testing.assert_array_equal(got, want)


def test_tflite_form_round_trips() -> None:
    graph = read_tflite(write_tflite(_graph(CASES[3])))
    assert graph.tensors[graph.inputs[0]].dtype is DType.UINT8
    assert [op.kind for op in graph.operators] == [OpKind.QUANTIZE]
    check_supported(graph)


def _refused(graph: Graph, message: str) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        check_supported(graph)


def test_uint8_input_must_be_read_by_quantize() -> None:
    b = GraphBuilder(seed=0)
    x = b.input((1, 4, 4, 2), 0.1, 128, dtype=DType.UINT8)
    _refused(b.output(b.relu(x)).build(), "uint8 input")


def test_uint8_output_must_be_a_graph_output() -> None:
    b = GraphBuilder(seed=0)
    x = b.input((1, 8), 0.1, 0)
    inner = b.op(OpKind.QUANTIZE, [x], NoAttrs(), QuantParams.per_tensor(0.1, 128), DType.UINT8)
    back = b.op(OpKind.QUANTIZE, [inner], NoAttrs(), QuantParams.per_tensor(0.1, 0))
    _refused(b.output(back).build(), "that is not a graph output")


def test_uint8_quantize_input_must_be_a_graph_input() -> None:
    b = GraphBuilder(seed=0)
    x = b.input((1, 8), 0.1, 0)
    inner = b.op(OpKind.QUANTIZE, [x], NoAttrs(), QuantParams.per_tensor(0.1, 128), DType.UINT8)
    back = b.op(OpKind.QUANTIZE, [inner], NoAttrs(), QuantParams.per_tensor(0.1, 0))
    _refused(b.output(inner, back).build(), "that is not a graph input")


def test_float_to_uint8_is_refused() -> None:
    b = GraphBuilder(seed=0)
    x = b.input((1, 8), dtype=DType.FLOAT32)
    y = b.op(OpKind.QUANTIZE, [x], NoAttrs(), QuantParams.per_tensor(0.1, 128), DType.UINT8)
    _refused(b.output(y).build(), "float32 input with a uint8 output")


def test_uint8_input_needs_quantisation_parameters() -> None:
    b = GraphBuilder(seed=0)
    x = b.input((1, 8), 0.1, 128, dtype=DType.UINT8)
    b.graph.tensors[x] = Tensor(x, (1, 8), DType.UINT8)
    _refused(b.output(b.quantize(x, 0.1, 0)).build(), "uint8 input without quantisation")
