"""verify_graph: valid graphs pass, each broken invariant is reported with the op and tensor."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind, Pool2DAttrs
from mcuflow.ir.quantization import QuantParams
from mcuflow.ir.verify import GraphInvariantError, verify_graph
from tests.support import INT8_MODELS, SHARED_MODELS


def small_graph() -> Graph:
    """input -> conv -> relu -> avgpool -> reshape -> fc -> softmax."""
    b = GraphBuilder("small", seed=1)
    x = b.input((1, 6, 6, 2))
    y = b.average_pool2d(b.relu(b.conv2d(x, 3)), 2, 2)
    b.output(b.softmax(b.fully_connected(b.reshape(y, (1, -1)), 4)))
    return b.build()


def test_valid_graph_passes() -> None:
    verify_graph(small_graph())


@pytest.mark.parametrize("name", INT8_MODELS)
def test_shared_models_pass(name: str) -> None:
    verify_graph(read_tflite(SHARED_MODELS / name))


def _op(graph: Graph, index: int) -> Operator:
    return graph.operators[index]


def _missing_input(g: Graph) -> None:
    g.inputs.append("ghost")


def _missing_output(g: Graph) -> None:
    g.outputs.append("ghost")


def _dangling_op_input(g: Graph) -> None:
    op = _op(g, 1)
    op.inputs = ("ghost",)


def _out_of_order(g: Graph) -> None:
    g.operators[0], g.operators[1] = g.operators[1], g.operators[0]


def _produced_twice(g: Graph) -> None:
    g.operators.append(dataclasses.replace(_op(g, 1)))


def _output_not_produced(g: Graph) -> None:
    g.add_tensor(Tensor("orphan", (1, 4), DType.INT8, QuantParams.per_tensor(0.1, 0)))
    g.outputs.append("orphan")


def _wrong_attrs(g: Graph) -> None:
    _op(g, 1).attrs = Pool2DAttrs()


def _wrong_shape(g: Graph) -> None:
    name = _op(g, 0).outputs[0]
    g.tensors[name].shape = (1, 6, 6, 4)


def _missing_quant(g: Graph) -> None:
    g.tensors[_op(g, 1).outputs[0]].quant = None


def _bad_per_channel(g: Graph) -> None:
    weights = g.tensors[_op(g, 0).inputs[1]]
    weights.quant = QuantParams.per_channel(np.ones(5), np.zeros(5), 0)


def _data_shape_mismatch(g: Graph) -> None:
    weights = g.tensors[_op(g, 0).inputs[1]]
    weights.data = weights.data.reshape(-1)


def _input_is_constant(g: Graph) -> None:
    g.inputs.append(_op(g, 0).inputs[1])


def _overwrites_input(g: Graph) -> None:
    _op(g, 1).outputs = (g.inputs[0],)


def _wrong_output_count(g: Graph) -> None:
    g.add_tensor(Tensor("extra", (1, 4), DType.INT8, QuantParams.per_tensor(0.1, 0)))
    op = _op(g, len(g.operators) - 1)
    op.outputs = (*op.outputs, "extra")


def _renamed_key(g: Graph) -> None:
    g.tensors["alias"] = g.tensors.pop(g.inputs[0])


def _bad_rank(g: Graph) -> None:
    conv = _op(g, 0)
    flat = next(op.outputs[0] for op in g.operators if op.kind is OpKind.RESHAPE)
    g.add_tensor(Tensor("bad", (1, 1, 1, 3), DType.INT8, QuantParams.per_tensor(0.1, 0)))
    g.operators.append(Operator(conv.kind, (flat, conv.inputs[1]), ("bad",), conv.attrs, "bad"))


CASES: list[tuple[Callable[[Graph], None], str]] = [
    (_missing_input, "graph input 'ghost' is not a tensor"),
    (_missing_output, "graph output 'ghost' is not a tensor"),
    (_dangling_op_input, "reads tensor 'ghost', which does not exist"),
    (_out_of_order, "before any op produces it"),
    (_produced_twice, "already a constant, an input or the output of an earlier op"),
    (_output_not_produced, "graph output 'orphan' is neither produced nor an input"),
    (_wrong_attrs, "has attributes Pool2DAttrs, expected NoAttrs"),
    (_wrong_shape, "has shape (1, 6, 6, 4), but its inputs give (1, 6, 6, 3)"),
    (_missing_quant, "has no quantisation parameters"),
    (_bad_per_channel, "5 per-channel scales along axis 0"),
    (_data_shape_mismatch, "holds data of shape"),
    (_input_is_constant, "is a constant or listed twice"),
    (_overwrites_input, "writes tensor 'input_1'"),
    (_wrong_output_count, "has 2 outputs, but SOFTMAX produces 1"),
    (_renamed_key, "stored under the key 'alias'"),
    (_bad_rank, "expected rank 4"),
]


@pytest.mark.parametrize(("breaks", "phrase"), CASES, ids=[c[0].__name__ for c in CASES])
def test_broken_invariant_is_reported(breaks: Callable[[Graph], None], phrase: str) -> None:
    graph = small_graph()
    breaks(graph)
    with pytest.raises(GraphInvariantError) as error:
        verify_graph(graph)
    assert phrase in str(error.value)


def test_message_names_op_and_tensor() -> None:
    graph = small_graph()
    _wrong_shape(graph)
    conv = graph.operators[0]
    with pytest.raises(GraphInvariantError) as error:
        verify_graph(graph)
    assert "op 0 (CONV_2D" in error.value.message and conv.outputs[0] in error.value.message
    assert error.value.hint
