"""check_plan accepts the planner's plans and rejects every kind of corrupted layout."""

from __future__ import annotations

import dataclasses

import pytest

from mcuflow.ir import zoo
from mcuflow.ir.builder import GraphBuilder
from mcuflow.memory import InPlace, Plan, PlanError, check_plan, plan_memory
from tests.unit.test_memory_execute import concat_net


@pytest.fixture(scope="module")
def plan() -> Plan:
    return plan_memory(zoo.mobilenet_v2_like(48))


def moved(plan: Plan, name: str, offset: int) -> Plan:
    buffers = dict(plan.buffers)
    buffers[name] = dataclasses.replace(buffers[name], offset=offset)
    return dataclasses.replace(plan, buffers=buffers,
                               arena_bytes=max(plan.arena_bytes, offset + buffers[name].size))


def test_planner_plans_pass(plan: Plan) -> None:
    check_plan(plan)
    for graph in (zoo.squeezenet_like(32), zoo.resnet_like(16), zoo.random_dag(7, 8)):
        check_plan(plan_memory(graph))


def test_two_live_buffers_on_the_same_bytes_are_named(plan: Plan) -> None:
    a, b = next((a, b) for a in plan.buffers.values() for b in plan.buffers.values()
                if a.owner != b.owner and a.overlaps_in_time(b) and not a.is_scratch
                and b.first_step < a.first_step < b.last_step)
    with pytest.raises(PlanError, match=f"{a.name}.*{b.name}|{b.name}.*{a.name}"):
        check_plan(moved(plan, a.name, b.offset))


def test_a_buffer_past_the_arena_end_is_rejected(plan: Plan) -> None:
    name = next(iter(plan.buffers))
    bad = dataclasses.replace(plan, arena_bytes=plan.buffers[name].end - 1)
    with pytest.raises(PlanError, match="outside the arena"):
        check_plan(bad)


def test_a_scratch_buffer_on_a_live_tensor_is_rejected(plan: Plan) -> None:
    step_index, step = next((i, s) for i, s in enumerate(plan.steps) if s.scratch)
    victim = plan.graph.operators[step.op_index].inputs[0]
    with pytest.raises(PlanError, match=step.scratch):
        check_plan(moved(plan, step.scratch, plan.buffers[victim].offset))


def relu_chain() -> Plan:
    """conv -> relu -> conv: the relu can only save memory by running in place."""
    b = GraphBuilder("relu_chain", seed=5)
    x = b.conv2d(b.relu(b.conv2d(b.input((1, 16, 16, 8)), 16)), 8)
    return plan_memory(b.output(x).build())


@pytest.mark.parametrize(("kind", "shift"), [(InPlace.OVERLAP, 16), (InPlace.DEPTHWISE, 1),
                                             (InPlace.ELEMENTWISE, 16)])
def test_an_in_place_output_closer_than_its_kernel_allows_is_rejected(
        plan: Plan, kind: InPlace, shift: int) -> None:
    plan = relu_chain() if kind is InPlace.ELEMENTWISE else plan
    step = min((s for s in plan.steps if s.inplace is kind), key=lambda s: abs(plan.delta(s)))
    output = plan.graph.operators[step.op_index].outputs[0]
    with pytest.raises(PlanError, match=output):
        check_plan(moved(plan, output, plan.buffers[output].offset + shift))


def test_an_undeclared_in_place_pair_is_rejected(plan: Plan) -> None:
    index = next(i for i, s in enumerate(plan.steps)
                 if s.inplace is InPlace.DEPTHWISE and plan.delta(s) == 0)
    steps = list(plan.steps)
    steps[index] = dataclasses.replace(steps[index], inplace=InPlace.NONE, shares=None)
    with pytest.raises(PlanError, match="overlap while both are live"):
        check_plan(dataclasses.replace(plan, steps=steps))


def test_a_buffer_that_dies_before_its_last_reader_is_rejected(plan: Plan) -> None:
    name = next(n for n, b in plan.buffers.items() if not b.is_scratch and b.last_step > 2)
    buffers = dict(plan.buffers)
    buffers[name] = dataclasses.replace(buffers[name], last_step=buffers[name].last_step - 1)
    with pytest.raises(PlanError, match=f"{name}.*needed"):
        check_plan(dataclasses.replace(plan, buffers=buffers))


def test_a_missing_scratch_buffer_is_rejected(plan: Plan) -> None:
    index = next(i for i, s in enumerate(plan.steps) if s.scratch)
    steps = list(plan.steps)
    steps[index] = dataclasses.replace(steps[index], scratch=None)
    with pytest.raises(PlanError, match="scratch"):
        check_plan(dataclasses.replace(plan, steps=steps))


def test_an_alias_away_from_its_source_is_rejected(plan: Plan) -> None:
    step = next(s for s in plan.steps if s.inplace is InPlace.ALIAS)
    output = plan.graph.operators[step.op_index].outputs[0]
    with pytest.raises(PlanError, match="alias"):
        check_plan(moved(plan, output, plan.buffers[output].offset + 16))


def test_a_misplaced_concatenation_slice_is_rejected() -> None:
    sliced = plan_memory(concat_net())
    check_plan(sliced)
    step = next(s for s in sliced.steps if s.inplace is InPlace.CONCAT_SLICE)
    second = sliced.graph.operators[step.op_index].inputs[1]
    with pytest.raises(PlanError, match="slice"):
        check_plan(moved(sliced, second, sliced.buffers[second].offset + 16))
