"""Channel-strided concatenation: producers write their channel slice of the output in place."""

from __future__ import annotations

import numpy as np
import pytest

from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir import zoo
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.memory.check import check_plan
from mcuflow.memory.execute import run_in_arena
from mcuflow.memory.plan import InPlace, Plan
from mcuflow.memory.planner import plan_memory
from tests.support import inception_block, litert_invoke


def _concat_steps(plan: Plan) -> list[InPlace]:
    return [step.inplace for step in plan.steps
            if plan.graph.operators[step.op_index].kind is OpKind.CONCATENATION]


def _exact(graph: Graph, plan: Plan, seed: int) -> bool:
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(-128, 128, graph.tensors[n].shape, dtype=np.int8)
              for n in graph.inputs]
    expected = litert_invoke(write_tflite(graph), inputs)
    got = run_in_arena(plan, inputs).outputs
    return all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


@pytest.mark.parametrize("graph", [zoo.squeezenet_like(32), inception_block(12)],
                         ids=["squeezenet", "inception"])
@pytest.mark.parametrize("dsp", [False, True])
def test_channel_slices_are_written_in_place_bit_exact(graph: Graph, dsp: bool) -> None:
    plan = plan_memory(graph, 0.3, dsp=dsp)
    check_plan(plan)
    assert set(_concat_steps(plan)) == {InPlace.CONCAT_SLICE}
    concat = next(op for op in graph.operators if op.kind is OpKind.CONCATENATION)
    for name in concat.inputs:
        assert plan.buffers[name].pixel_step == graph.tensors[concat.outputs[0]].shape[3]
        assert plan.buffers[name].owner == plan.buffers[concat.outputs[0]].owner
    assert _exact(graph, plan, seed=3)


def test_the_concatenated_tensor_is_held_once() -> None:
    """At the block's widest step the arena holds its input, the concatenation and scratch."""
    graph = inception_block(16)
    plan = plan_memory(graph, 0.3)
    concat = next(op for op in graph.operators if op.kind is OpKind.CONCATENATION)
    block_input = graph.tensors[graph.operators[0].outputs[0]].nbytes
    scratch = max((b.size for b in plan.buffers.values() if b.is_scratch), default=0)
    copies = block_input + graph.tensors[concat.outputs[0]].nbytes + scratch
    slices = sum(graph.tensors[n].nbytes for n in concat.inputs)
    assert plan.arena_bytes <= copies + 3 * plan.alignment < copies + slices


def test_a_producer_that_cannot_write_a_slice_keeps_the_copy() -> None:
    graph = inception_block(12, with_add=True)
    plan = plan_memory(graph, 0.3, dsp=True)
    check_plan(plan)
    assert _concat_steps(plan) == [InPlace.NONE]
    assert not any(b.pixel_step for b in plan.buffers.values())
    assert _exact(graph, plan, seed=4)
