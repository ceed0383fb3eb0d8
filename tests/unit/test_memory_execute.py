"""Running inside the planned arena equals LiteRT to the bit; a misplaced buffer is caught."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcuflow.errors import McuflowError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir import zoo
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import Graph
from mcuflow.memory import InPlace, Plan, check_plan, plan_memory
from mcuflow.memory.execute import run_in_arena
from tests.support import INT8_MODELS, SHARED_MODELS, litert_invoke, random_input


def litert_tensors(model: bytes, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor LiteRT's reference kernels compute, by name."""
    interpreter = Interpreter(model_content=model, num_threads=1,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    for detail, value in zip(interpreter.get_input_details(), inputs, strict=True):
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    return {d["name"]: interpreter.get_tensor(d["index"])
            for d in interpreter.get_tensor_details() if d["shape"].size}


def inputs_for(graph: Graph, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [random_input(graph.tensors[n].shape, graph.tensors[n].dtype.numpy, rng)
            for n in graph.inputs]


def mismatches(plan: Plan, seed: int = 0) -> list[str]:
    """Names of the activations run_in_arena computes differently from LiteRT."""
    graph = plan.graph
    inputs = inputs_for(graph, seed)
    expected = litert_tensors(write_tflite(graph), inputs)
    ours = run_in_arena(plan, inputs, keep_intermediates=True).tensors
    assert set(ours) <= set(expected)
    return [name for name, value in ours.items()
            if not np.array_equal(value, expected[name].reshape(value.shape))]


def squeeze_excite_net() -> Graph:
    """Inverted residual with squeeze-excite: MEAN -> FC -> RELU -> FC -> LOGISTIC -> MUL."""
    b = GraphBuilder("se_net", seed=3)
    x = b.conv2d(b.input((1, 24, 24, 3), 0.02), 16, stride=2, activation=Activation.RELU)
    y = b.depthwise_conv2d(b.conv2d(x, 48, (1, 1), activation=Activation.RELU))
    gate = b.fully_connected(b.mean(y, (1, 2), keep_dims=True), 12, Activation.RELU,
                             keep_num_dims=True)
    gate = b.logistic(b.fully_connected(gate, 48, keep_num_dims=True))
    y = b.conv2d(b.mul(y, gate), 16, (1, 1))
    return b.output(b.relu(b.add(x, y))).build()


def concat_net() -> Graph:
    """Two branches concatenated along H, where every slice of the output is contiguous."""
    b = GraphBuilder("concat_net", seed=5)
    x = b.input((1, 8, 8, 8))
    left = b.conv2d(x, 8, (1, 1))
    right = b.conv2d(x, 8, (3, 3))
    b.graph.tensors[left].quant = b.quant(right)
    joined = b.concatenation([left, right], axis=1)
    return b.output(b.conv2d(joined, 4, (1, 1))).build()


GRAPHS = {
    "mobilenet_v2": lambda: zoo.mobilenet_v2_like(48),
    "mobilenet_v3": lambda: zoo.mobilenet_v3_like(48),
    "squeezenet": lambda: zoo.squeezenet_like(48),
    "resnet": lambda: zoo.resnet_like(24),
    "squeeze_excite": squeeze_excite_net,
    "concat_slices": concat_net,
}


@pytest.fixture(scope="module", params=sorted(GRAPHS))
def plan(request: pytest.FixtureRequest) -> Plan:
    plan = plan_memory(GRAPHS[request.param]())
    check_plan(plan)
    return plan


def test_zoo_graphs_run_in_the_arena_bit_exact(plan: Plan) -> None:
    assert mismatches(plan) == []


def test_zoo_plans_share_memory() -> None:
    kinds = {step.inplace for name in GRAPHS for step in plan_memory(GRAPHS[name]()).steps}
    assert kinds == set(InPlace)


@pytest.mark.parametrize("model", INT8_MODELS)
def test_shared_models_run_in_the_arena_bit_exact(model: str) -> None:
    graph = read_tflite(SHARED_MODELS / model)
    plan = plan_memory(graph)
    inputs = inputs_for(graph)
    expected = litert_invoke(SHARED_MODELS / model, inputs)
    ours = run_in_arena(plan, inputs).outputs
    assert all(np.array_equal(a, b) for a, b in zip(ours, expected, strict=True))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), ops=st.integers(1, 8))
def test_random_graphs_run_in_the_arena_bit_exact(seed: int, ops: int) -> None:
    plan = plan_memory(zoo.random_dag(seed, ops, size=6), 0.3)
    check_plan(plan)
    assert mismatches(plan, seed) == []


def moved(plan: Plan, name: str, offset: int) -> Plan:
    """A copy of `plan` with buffer `name` at `offset` (the arena grows to hold it)."""
    buffers = dict(plan.buffers)
    buffers[name] = dataclasses.replace(buffers[name], offset=offset)
    arena = max(plan.arena_bytes, offset + buffers[name].size)
    return dataclasses.replace(plan, buffers=buffers, arena_bytes=arena)


def tightest(plan: Plan, kind: InPlace) -> str:
    """Output of the `kind` step whose output sits closest to the input it overwrites."""
    steps = [s for s in plan.steps if s.inplace is kind]
    step = min(steps, key=lambda s: abs(plan.delta(s)))
    return plan.graph.operators[step.op_index].outputs[0]


@pytest.mark.parametrize(("graph", "kind", "shift"), [
    ("resnet", InPlace.OVERLAP, 16),         # output 16 bytes too close to its input
    ("squeeze_excite", InPlace.ELEMENTWISE, 16),  # output above the input it overwrites
    ("mobilenet_v2", InPlace.DEPTHWISE, 1),  # not a whole number of pixels away
])
def test_a_too_close_in_place_output_corrupts_the_result(graph: str, kind: InPlace,
                                                         shift: int) -> None:
    plan = plan_memory(GRAPHS[graph]())
    output = tightest(plan, kind)
    assert mismatches(plan) == []
    assert output in mismatches(moved(plan, output, plan.buffers[output].offset + shift))


def test_a_scratch_buffer_over_a_live_tensor_corrupts_the_result() -> None:
    plan = plan_memory(GRAPHS["resnet"]())
    step = next(s for s in plan.steps if s.scratch)
    victim = plan.graph.operators[step.op_index].inputs[0]
    assert mismatches(moved(plan, step.scratch, plan.buffers[victim].offset)) != []


def test_inputs_of_the_wrong_shape_are_refused() -> None:
    plan = plan_memory(GRAPHS["concat_slices"]())
    with pytest.raises(McuflowError, match="input"):
        run_in_arena(plan, [np.zeros((1, 8, 8, 4), np.int8)])
