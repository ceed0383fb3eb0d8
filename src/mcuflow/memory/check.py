"""Plan verification: live buffers never overlap unless the plan declares that they share memory."""

from __future__ import annotations

import dataclasses

from mcuflow.ir.graph import TensorUses
from mcuflow.ir.ops import OpKind
from mcuflow.memory.inplace import alias_offset, concat_slots, in_place_rule, piece_views
from mcuflow.memory.plan import RUNS_NO_CODE, Buffer, InPlace, Plan, PlanError, Step, Tier
from mcuflow.memory.scratch import scratch_bytes


def check_plan(plan: Plan) -> None:
    """Raise PlanError unless the plan's memory layout is sound.

    Every activation has a buffer live from its producer's step to its last reader's (graph
    outputs to the end), every kernel has the scratch it needs, every buffer lies inside the
    arena, aliases and concatenation slices sit where they claim, and two buffers live at the
    same step share no byte unless the plan declares it: one storage (aliases, slices), or an
    in-place step's input and output placed as its kernel contract requires. A spilled tensor
    needs its buffer at its producer's step only, and only SLICEs (reads from external storage)
    read it. Messages name the buffers involved.
    """
    _check_lifetimes(plan)
    _check_steps(plan)
    _check_overlaps(plan)


def _check_lifetimes(plan: Plan) -> None:
    graph = plan.graph
    step_of = {step.op_index: index for index, step in enumerate(plan.steps)}
    if sorted(step_of) != list(range(len(graph.operators))):
        raise PlanError("the plan's steps are not one per operator")
    last = len(plan.steps) - 1
    uses = graph.uses()
    for name in graph.activations():
        if name not in plan.buffers:
            raise PlanError(f"tensor {name!r} has no buffer")
        buffer = plan.buffers[name]
        producer = uses.producer.get(name)
        readers = uses.consumers.get(name, ())
        if name in plan.spilled and any(graph.operators[i].kind is not OpKind.SLICE
                                        for i in readers):
            raise PlanError(f"spilled tensor {name!r} is read by an op other than a SLICE")
        needed = [] if name in plan.spilled else [step_of[i] for i in readers] + (
            [last] if name in graph.outputs else [])
        first = 0 if producer is None else step_of[producer]
        if buffer.first_step > first or buffer.last_step < max(needed, default=first):
            raise PlanError(f"buffer {name!r} is live at steps {buffer.first_step}-"
                            f"{buffer.last_step} but needed from step {first} to "
                            f"{max(needed, default=first)}")


def _check_steps(plan: Plan) -> None:
    graph = plan.graph
    for index, step in enumerate(plan.steps):
        op = graph.operators[step.op_index]
        needed = scratch_bytes(graph, op, step.inplace)
        scratch = plan.buffers.get(step.scratch) if step.scratch else None
        if needed and (scratch is None or scratch.size < needed
                       or not scratch.first_step <= index <= scratch.last_step):
            raise PlanError(f"step {index} ({op.name!r}) needs {needed} bytes of scratch live "
                            f"at that step, the plan gives {step.scratch!r}")
        offset = plan.buffers[op.outputs[0]].offset
        if step.inplace is InPlace.ALIAS and (
                plan.buffers[op.inputs[0]].offset + alias_offset(graph, op) != offset):
            raise PlanError(f"alias {op.outputs[0]!r} is not at its place in {op.inputs[0]!r}")
        views = piece_views(graph, op) if step.inplace is InPlace.ALIAS else None
        for name, at in zip(op.outputs, views, strict=True) if views else ():
            if plan.buffers[name].offset != plan.buffers[op.inputs[0]].offset + at:
                raise PlanError(f"piece {name!r} is not at its place in {op.inputs[0]!r}")
        if step.inplace is InPlace.CONCAT_SLICE:
            for name, slot in zip(op.inputs, concat_slots(graph, op), strict=True):
                buffer = plan.buffers[name]
                if (buffer.offset, buffer.pixel_step) != (offset + slot.offset, slot.pixel_step):
                    raise PlanError(f"slice {name!r} is not at its place in {op.outputs[0]!r}")


def _read_spans(plan: Plan) -> list[Buffer]:
    """The SRAM buffers, those of storages planned in pieces live only while code reads them.

    Ops running no code (views, concatenations in place) only name bytes that their outputs
    hold too, whose buffers are checked themselves; a buffer no code reads drops out. A view
    holds its bytes from when the tensor it views does (an input image from the start).
    """
    silent = {index for index, step in enumerate(plan.steps) if step.inplace in RUNS_NO_CODE}
    step_of = {step.op_index: index for index, step in enumerate(plan.steps)}
    uses = plan.graph.uses()
    last = len(plan.steps) - 1
    spans = []
    steps = {step.op_index: step for step in plan.steps}
    first = {name: _held_from(plan, uses, steps, name) for name in plan.buffers}
    for buffer in plan.buffers.values():
        if buffer.tier is not Tier.SRAM:
            continue
        if buffer.owner not in plan.split or buffer.is_scratch:
            spans.append(buffer)
            continue
        reads = [step_of[i] for i in uses.consumers.get(buffer.name, ())
                 if step_of[i] not in silent]
        if buffer.name in plan.graph.outputs:
            reads.append(last)
        if reads:
            spans.append(dataclasses.replace(buffer, first_step=first[buffer.name],
                                             last_step=max(reads)))
    return spans


def _held_from(plan: Plan, uses: TensorUses, steps: dict[int, Step], name: str) -> int:
    """The step from which the bytes of `name` hold its value (a view's: its source's).

    `steps` maps op indices to their plan steps.
    """
    producer = uses.producer.get(name)
    step = steps.get(producer)
    if step is not None and step.inplace is InPlace.ALIAS:
        return _held_from(plan, uses, steps, plan.graph.operators[producer].inputs[0])
    return plan.buffers[name].first_step


def _check_overlaps(plan: Plan) -> None:
    buffers = sorted(_read_spans(plan), key=lambda b: b.offset)
    for buffer in buffers:
        if buffer.offset < 0 or buffer.end > plan.arena_bytes:
            raise PlanError(f"buffer {buffer.name!r} [{buffer.offset}, {buffer.end}) lies outside "
                            f"the arena of {plan.arena_bytes} bytes")
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if b.offset >= a.end:
                break
            if a.overlaps_in_time(b) and not _may_overlap(plan, a, b):
                raise PlanError(
                    f"buffers {a.name!r} [{a.offset}, {a.end}) steps {a.first_step}-{a.last_step} "
                    f"and {b.name!r} [{b.offset}, {b.end}) steps {b.first_step}-{b.last_step} "
                    "overlap while both are live")


def _may_overlap(plan: Plan, a: Buffer, b: Buffer) -> bool:
    if a.is_scratch or b.is_scratch:
        return False
    return a.owner == b.owner or _inplace_pair(plan, a, b)


def _inplace_pair(plan: Plan, a: Buffer, b: Buffer) -> bool:
    """True when a step runs in place over `a`'s storage into `b`'s (or the reverse).

    The pair must meet only at that step and sit where the kernel contract allows.
    """
    for index, step in enumerate(plan.steps):
        if step.shares is None or step.inplace is InPlace.ALIAS:
            continue
        op = plan.graph.operators[step.op_index]
        source, target = plan.buffers[step.shares], plan.buffers[op.outputs[0]]
        if {a.owner, b.owner} != {source.owner, target.owner}:
            continue
        common = (max(a.first_step, b.first_step), min(a.last_step, b.last_step))
        rule = in_place_rule(plan.graph, op, step.inplace, step.shares)
        return common == (index, index) and rule is not None and rule.allows(plan.delta(step))
    return False
