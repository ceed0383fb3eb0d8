"""The plan for one fixed order: in-place decisions, blocks in time, arena offsets, buffers."""

from __future__ import annotations

from mcuflow.ir.graph import Graph, Tensor
from mcuflow.memory.arena import (
    Block,
    Pair,
    Placement,
    arena_size,
    place_greedy,
    place_optimal,
)
from mcuflow.memory.liveness import storage_lifetime, tensor_lifetime
from mcuflow.memory.plan import Buffer, InPlace, Plan, Step, Tier
from mcuflow.memory.schedule import Decision, Problem, evaluate


def plan_for_order(problem: Problem, order: list[int], time_limit_s: float = 0.0,
                   quick: bool = False, enough: int | None = None) -> Plan:
    """The plan for one fixed order: in-place decisions, lower bound and placement.

    With `time_limit_s` > 0, CP-SAT tries to improve the greedy placement for that long;
    `quick` tries one greedy order only (place_greedy). A greedy placement within `enough`
    bytes, when given, is kept as it is: no more orders are tried, CP-SAT does not run.
    """
    lower_bound, needs, decisions = evaluate(problem, order)
    blocks, pairs, scratch = _blocks(problem, order, decisions)
    placement = place_greedy(blocks, pairs, problem.alignment, quick, enough or 0)
    greedy = arena_size(blocks, placement)
    if time_limit_s > 0 and greedy > lower_bound and (enough is None or greedy > enough):
        better = place_optimal(blocks, pairs, problem.alignment, time_limit_s, placement,
                               lower_bound)
        if better is not None and arena_size(blocks, better) < greedy:
            placement = better
    plan = _build_plan(problem, order, decisions, scratch, placement, lower_bound)
    plan.step_bytes = needs
    return plan


def _blocks(problem: Problem, order: list[int], decisions: list[Decision],
            ) -> tuple[list[Block], list[Pair], dict[int, Block]]:
    """Storage and scratch blocks in half-step slots, the in-place pairs, scratch by step.

    Step t reads in slot 2t and writes in slot 2t+1, so an in-place output and the input it
    overwrites never share a slot while every other buffer live at step t covers both.
    """
    step_of = [0] * len(order)
    for t, v in enumerate(order):
        step_of[v] = t
    slots = []
    for storage in problem.storages:
        first, last = storage_lifetime(storage, step_of, len(order))
        slots.append([2 * first, 2 * last + 1])
    for t, (v, decision) in enumerate(zip(order, decisions, strict=True)):
        if decision.option is not None:
            slots[problem.storage_of[problem.graph.operators[v].outputs[0]]][0] = 2 * t + 1
            slots[problem.storage_of[decision.option.shares]][1] = 2 * t
    blocks = [Block(s.name, s.size, *slot, s.group, s.group_offset)
              for s, slot in zip(problem.storages, slots, strict=True)]
    pairs = []
    for v, decision in zip(order, decisions, strict=True):
        option = decision.option
        if option is not None:
            lower = blocks[problem.storage_of[problem.graph.operators[v].outputs[0]]]
            upper = blocks[problem.storage_of[option.shares]]
            pairs.append(Pair(upper, lower, option.rule.delta, option.rule.modulus))
    scratch = {t: Block(_scratch_name(problem.graph, t), d.scratch, 2 * t, 2 * t + 1)
               for t, d in enumerate(decisions) if d.scratch}
    return blocks + list(scratch.values()), pairs, scratch


def _scratch_name(graph: Graph, step_index: int) -> str:
    name = f"scratch_{step_index}"
    while name in graph.tensors:
        name += "_"
    return name


_APART_IS_PLAIN = frozenset({InPlace.ELEMENTWISE, InPlace.OVERLAP})
"""In-place kinds whose kernel is the ordinary one: placed apart, the step is plain NONE."""


def _shared(problem: Problem, placement: Placement, v: int, shares: str | None) -> bool:
    """True when op `v`'s output storage shares bytes with the storage of input `shares`."""
    output = problem.storages[problem.storage_of[problem.graph.operators[v].outputs[0]]]
    source = problem.storages[problem.storage_of[shares]]
    low, high = sorted([(placement[output.name], output.size),
                        (placement[source.name], source.size)])
    return low[0] + low[1] > high[0]


def _extent(tensor: Tensor, pixel_step: int) -> int:
    """Bytes from a tensor's first byte to its last, its pixels `pixel_step` elements apart."""
    if not pixel_step:
        return tensor.nbytes
    channels = tensor.shape[-1]
    return ((tensor.size // channels - 1) * pixel_step + channels) * tensor.dtype.itemsize


def _build_plan(problem: Problem, order: list[int], decisions: list[Decision],
                scratch: dict[int, Block], placement: Placement, lower_bound: int) -> Plan:
    graph = problem.graph
    step_of = [0] * len(order)
    for t, v in enumerate(order):
        step_of[v] = t
    steps = []
    for t, (v, decision) in enumerate(zip(order, decisions, strict=True)):
        kind, shares = decision.kind, decision.option.shares if decision.option else None
        if kind is InPlace.ALIAS:
            shares = graph.operators[v].inputs[0]
        elif kind in _APART_IS_PLAIN and not _shared(problem, placement, v, shares):
            kind, shares = InPlace.NONE, None
        block = scratch.get(t)
        steps.append(Step(v, kind, block.name if block else None, shares))
    buffers: dict[str, Buffer] = {}
    uses = graph.uses()
    bases = {storage.name: placement[storage.name] for storage in problem.storages}
    bases |= {s.group: placement[s.name] - s.group_offset for s in problem.storages if s.group}
    for storage in (*problem.storages, *problem.groups.values()):
        for name, inner in storage.members:
            first, last = tensor_lifetime(graph, uses, name, step_of, len(order))
            last = first if name in problem.spilled else last
            step = problem.pixel_steps.get(name, 0)
            buffers[name] = Buffer(name, bases[storage.name] + inner,
                                   _extent(graph.tensors[name], step), first, last,
                                   storage=storage.name, pixel_step=step)
    for t, block in scratch.items():
        buffers[block.name] = Buffer(block.name, placement[block.name], block.size, t, t,
                                     is_scratch=True)
    arena = max((b.end for b in buffers.values()), default=0)
    for name in problem.streamed:
        first, last = tensor_lifetime(graph, uses, name, step_of, len(order))
        buffers[name] = Buffer(name, 0, graph.tensors[name].nbytes, first, last,
                               tier=Tier.STREAM)
    return Plan(graph, steps, buffers, arena, lower_bound, problem.alignment,
                streamed=problem.streamed, split=frozenset(problem.groups),
                spilled=problem.spilled)
