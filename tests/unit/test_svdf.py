"""SVDF: the int8 reference against LiteRT over consecutive invocations, TFLite form, support."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tflite
from rich.console import Console
from tflite_micro.python.tflite_micro import runtime as tflm

from mcuflow import api
from mcuflow.analysis.metrics import analyze
from mcuflow.analysis.report import totals_panel
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends import tflite_ops
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.board import get_board
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind, SvdfAttrs, infer_output_shapes
from mcuflow.ir.quantization import QuantParams
from mcuflow.ir.shapes import ShapeError
from mcuflow.ir.verify import GraphInvariantError, verify_graph
from mcuflow.memory.execute import run_in_arena
from mcuflow.memory.planner import plan_memory
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from tests.support import litert_interpreter, litert_invoke, random_input

INVOCATIONS = 12
# (batch, input features, units, rank, memory, bias, input scale, input zero point)
CASES = [
    (1, 12, 5, 1, 4, True, 0.05, 3),
    (1, 40, 32, 1, 10, True, 0.1, -128),
    (2, 9, 4, 2, 3, True, 0.02, 0),
    (1, 16, 3, 3, 1, False, 0.07, 17),
    (3, 7, 6, 2, 6, False, 0.5, -5),
    (1, 25, 8, 4, 2, True, 0.01, 100),
    (1, 1, 1, 1, 16, True, 0.2, -1),
    (2, 33, 10, 1, 5, True, 0.03, 60),
]


def _graph(case: tuple, seed: int = 0, activation: Activation = Activation.RELU) -> Graph:
    batch, size, units, rank, memory, bias, scale, zero_point = case
    b = GraphBuilder("svdf", seed=seed)
    x = b.input((batch, size), scale, zero_point)
    return b.output(b.svdf(x, units, rank, memory, activation, bias)).build()


def tflm_outputs(model: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """TFLM's output for each input in turn, its state carried.

    The oracle of int8 SVDFs without activation, which LiteRT refuses. TFLM's int8 SVDF reads
    the bias's scale unchecked (tflite-micro issue 1751): it crashes without a bias.
    """
    interpreter = tflm.Interpreter.from_bytes(model, arena_size=1 << 20)
    outputs = []
    for x in inputs:
        interpreter.set_input(x, 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0).copy())
    return outputs


def _inputs(graph: Graph, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = graph.tensors[graph.inputs[0]].shape
    return [random_input(shape, np.int8, rng) for _ in range(count)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_invocation_bit_exact_against_litert(case: tuple) -> None:
    graph = _graph(case, seed=case[1])
    litert = litert_interpreter(write_tflite(graph))
    ours = Interpreter(graph)
    outputs = []
    for step, x in enumerate(_inputs(graph, INVOCATIONS)):
        want = litert_invoke(litert, [x])[0]
        got = ours.run([x]).outputs[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=f"invocation {step}")
        outputs.append(got)
    assert len({o.tobytes() for o in outputs}) > 1


@pytest.mark.parametrize("case", [case for case in CASES if case[5]], ids=str)
def test_no_activation_is_bit_exact_against_tflm(case: tuple) -> None:
    """NONE: as RELU, nothing is applied (TFLM runs it; LiteRT refuses it)."""
    graph = _graph(case, seed=case[1], activation=Activation.NONE)
    inputs = _inputs(graph, INVOCATIONS, seed=11)
    ours = Interpreter(graph)
    for step, (x, want) in enumerate(zip(inputs, tflm_outputs(write_tflite(graph), inputs),
                                         strict=True)):
        np.testing.assert_array_equal(ours.run([x]).outputs[0], want,
                                      err_msg=f"invocation {step}")


def test_tflm_agrees_with_litert_on_relu() -> None:
    """The two oracles agree where both run: TFLM is a fair judge of NONE."""
    graph = _graph(CASES[2])
    inputs = _inputs(graph, INVOCATIONS)
    model = write_tflite(graph)
    litert = litert_interpreter(model)
    for x, want in zip(inputs, tflm_outputs(model, inputs), strict=True):
        np.testing.assert_array_equal(litert_invoke(litert, [x])[0], want)


def test_state_between_invocations_is_litert_s() -> None:
    """LiteRT 2.x shifts the state before the feature matmul (older versions after the time one).

    Between invocations every filter's last slot holds the newest feature value and the others
    the ones before, as in ours and the C.
    """
    graph = _graph(CASES[2])
    name = graph.variables()[0]
    litert = litert_interpreter(write_tflite(graph))
    index = next(d["index"] for d in litert.get_tensor_details() if d["name"] == name)
    ours = Interpreter(graph)
    for x in _inputs(graph, INVOCATIONS, seed=5):
        litert_invoke(litert, [x])
        ours.run([x])
        np.testing.assert_array_equal(ours.state[name], litert.get_tensor(index))
    assert ours.state[name].reshape(2, 8, 3)[:, :, -1].all()


def test_an_svdf_without_state_is_invalid() -> None:
    graph = _graph(CASES[0])
    op = graph.operators[0]
    graph.operators[0] = dataclasses.replace(op, inputs=op.inputs[:3])
    with pytest.raises(GraphInvariantError, match="SVDF takes 4..5"):
        verify_graph(graph)


def test_state_is_what_makes_outputs_differ() -> None:
    """The same input twice gives different outputs (the state moved), as in LiteRT."""
    graph = _graph(CASES[0])
    x = _inputs(graph, 1)[0]
    litert = litert_interpreter(write_tflite(graph))
    ours = Interpreter(graph)
    first, second = (ours.run([x]).outputs[0] for _ in range(2))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, litert_invoke(litert, [x])[0])
    np.testing.assert_array_equal(second, litert_invoke(litert, [x])[0])


def test_reset_matches_litert_reset_all_variables() -> None:
    graph = _graph(CASES[2])
    inputs = _inputs(graph, 6, seed=3)
    litert = litert_interpreter(write_tflite(graph))
    ours = Interpreter(graph)
    for x in inputs[:4]:
        litert_invoke(litert, [x])
        ours.run([x])
    litert.reset_all_variables()
    ours.reset()
    for x in inputs[4:]:
        np.testing.assert_array_equal(ours.run([x]).outputs[0], litert_invoke(litert, [x])[0])


def test_run_in_arena_carries_the_state_outside_the_arena() -> None:
    b = GraphBuilder("stack", seed=5)
    x = b.input((1, 20), 0.05, 2)
    y = b.svdf(b.svdf(x, 8, rank=2, memory=4), 4, memory=6, bias=False)
    graph = b.output(b.fully_connected(y, 3)).build()
    plan = plan_memory(graph, 0.2)
    assert not set(graph.variables()) & set(plan.buffers)
    litert = litert_interpreter(write_tflite(graph))
    state = {name: np.zeros(graph.tensors[name].shape, np.int16) for name in graph.variables()}
    for x_value in _inputs(graph, INVOCATIONS, seed=7):
        got = run_in_arena(plan, [x_value], state=state).outputs[0]
        np.testing.assert_array_equal(got, litert_invoke(litert, [x_value])[0])
    assert all(value.any() for value in state.values())


def test_round_trip_keeps_the_variable_state_and_absent_bias() -> None:
    graph = _graph(CASES[3])
    again = read_tflite(write_tflite(graph))
    op = again.operators[0]
    assert op.kind is OpKind.SVDF and op.attrs == SvdfAttrs(3, Activation.RELU)
    assert len(op.inputs) == 4
    state = again.tensors[op.inputs[-1]]
    assert state.variable and state.data is None and state.dtype is DType.INT16
    assert again.variables() == [op.inputs[-1]] and again.variables() == graph.variables()
    verify_graph(again)


def test_reader_refuses_the_hybrid_svdf(monkeypatch: pytest.MonkeyPatch) -> None:
    def hybrid_options(builder: object, a: SvdfAttrs) -> tuple[int, int]:
        tflite.SVDFOptionsStart(builder)
        tflite.SVDFOptionsAddRank(builder, a.rank)
        tflite.SVDFOptionsAddAsymmetricQuantizeInputs(builder, True)
        return tflite.BuiltinOptions.SVDFOptions, tflite.SVDFOptionsEnd(builder)

    record = dataclasses.replace(tflite_ops.TFLITE_OPS[OpKind.SVDF], write=hybrid_options)
    monkeypatch.setitem(tflite_ops.TFLITE_OPS, OpKind.SVDF, record)
    model = write_tflite(_graph(CASES[0]))
    with pytest.raises(UnsupportedModelError, match="asymmetric_quantize_inputs"):
        read_tflite(model)


def _with(graph: Graph, **changes: object) -> Graph:
    """The graph with its SVDF's attributes or tensors replaced."""
    op = graph.operators[0]
    if "activation" in changes:
        op.attrs = SvdfAttrs(op.attrs.rank, changes["activation"])
    if "state" in changes:
        graph.tensors[op.inputs[-1]] = changes["state"]
    if "time" in changes:
        graph.tensors[op.inputs[2]] = changes["time"]
    return graph


def _refusal(graph: Graph) -> str:
    with pytest.raises(UnsupportedModelError) as error:
        Interpreter(graph)
    return error.value.message


def test_constraints_name_what_litert_refuses() -> None:
    graph = _graph(CASES[0])
    assert "fused activation RELU6 found" in _refusal(_with(graph, activation=Activation.RELU6))
    state = graph.tensors[graph.operators[0].inputs[-1]]
    plain = dataclasses.replace(state, variable=False, data=np.zeros(state.shape, np.int16))
    assert "non-variable activation state" in _refusal(_with(_graph(CASES[0]), state=plain))
    time = _graph(CASES[0]).tensors[graph.operators[0].inputs[2]]
    narrow = dataclasses.replace(time, dtype=DType.INT8, data=time.data.astype(np.int8))
    assert "int8 weights_time found" in _refusal(_with(_graph(CASES[0]), time=narrow))
    asymmetric = dataclasses.replace(state, quant=QuantParams.per_tensor(0.01, 3))
    assert "activation state zero point 3" in _refusal(_with(_graph(CASES[0]),
                                                             state=asymmetric))


def test_state_of_the_wrong_shape_is_a_shape_error() -> None:
    graph = _graph(CASES[0])
    state = graph.tensors[graph.operators[0].inputs[-1]]
    graph.tensors[state.name] = dataclasses.replace(state, shape=(1, 7))
    with pytest.raises(GraphInvariantError, match=r"activation state \(1, 7\)"):
        verify_graph(graph)
    with pytest.raises(ShapeError, match="rank 2 does not divide 5 filters"):
        b = GraphBuilder()
        b.svdf(b.input((1, 4)), 5, rank=1, memory=2)
        op = b.graph.operators[0]
        op.attrs = SvdfAttrs(2, Activation.RELU)
        infer_output_shapes(b.graph, op)


def test_a_graph_input_cannot_be_a_variable() -> None:
    graph = _graph(CASES[0])
    graph.inputs.append(graph.variables()[0])
    with pytest.raises(GraphInvariantError, match="is a variable tensor"):
        verify_graph(graph)


def test_report_counts_the_state_as_persistent_ram() -> None:
    graph = _graph(CASES[1])
    board = get_board("nucleo-f429zi")
    plan = plan_memory(graph, 0.2)
    report = analyze(graph, board, peak_ram_bytes=plan.arena_bytes)
    state_bytes = 1 * 10 * 32 * 2
    assert report.state_bytes == state_bytes
    assert report.sram_margin_bytes == board.sram_bytes - plan.arena_bytes - state_bytes
    assert report.to_json()["state_bytes"] == state_bytes
    console = Console(width=120, record=True)
    console.print(totals_panel(report))
    assert f"State RAM: {state_bytes:,} B" in console.export_text()


def test_variable_tensor_is_not_an_activation() -> None:
    graph = Graph("g")
    graph.add_tensor(Tensor("s", (1, 4), DType.INT16, QuantParams.per_tensor(0.1, 0),
                            variable=True))
    assert graph.activations() == [] and graph.variables() == ["s"]


def _float_graph(activation: Activation) -> Graph:
    """A float32 SVDF (rank 2, memory 3) with a float32 variable state."""
    rng = np.random.default_rng(8)
    graph = Graph("float_svdf", inputs=["x"], outputs=["y"])
    values = {"x": None, "wf": rng.normal(size=(6, 5)), "wt": rng.normal(size=(6, 3)),
              "b": rng.normal(size=(3,)), "s": None}
    shapes = {"x": (1, 5), "s": (1, 18), "y": (1, 3)}
    for name, data in values.items():
        array = None if data is None else data.astype(np.float32)
        shape = shapes.get(name, None if array is None else array.shape)
        graph.add_tensor(Tensor(name, shape, DType.FLOAT32, data=array, variable=name == "s"))
    graph.add_tensor(Tensor("y", (1, 3), DType.FLOAT32))
    graph.operators.append(Operator(OpKind.SVDF, ("x", "wf", "wt", "b", "s"), ("y",),
                                    SvdfAttrs(2, activation), "svdf"))
    verify_graph(graph)
    return graph


@pytest.mark.parametrize("activation", [Activation.NONE, Activation.RELU])
def test_float_twin_matches_litert_from_a_zero_state(activation: Activation) -> None:
    graph = _float_graph(activation)
    x = np.random.default_rng(2).normal(size=(1, 5)).astype(np.float32)
    want = litert_invoke(write_tflite(graph), [x])[0]
    np.testing.assert_allclose(run_float(graph, [x]).outputs[0], want, rtol=1e-5, atol=1e-5)


def test_quantising_a_float_svdf_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "float_svdf.tflite"
    path.write_bytes(write_tflite(_float_graph(Activation.RELU)))
    samples = np.random.default_rng(0).normal(size=(8, 1, 5)).astype(np.float32)
    with pytest.raises(UnsupportedModelError, match="stateful ops"):
        api.quantize_model(path, samples)
