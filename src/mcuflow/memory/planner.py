"""plan_memory: order, in-place decisions and arena offsets for an int8 graph."""

from __future__ import annotations

from mcuflow.ir.graph import Graph
from mcuflow.memory.arena import (
    Block,
    Pair,
    Placement,
    arena_size,
    place_greedy,
    place_optimal,
)
from mcuflow.memory.inplace import ALL_KINDS
from mcuflow.memory.liveness import storage_lifetime, tensor_lifetime
from mcuflow.memory.patch_search import (
    PatchRequest,
    PatchSearch,
    search_patches,
    streamed_inputs,
)
from mcuflow.memory.plan import Buffer, InPlace, Plan, Step, Tier
from mcuflow.memory.schedule import Decision, Problem, best_order, build_problem, evaluate

ORDER_SHARE = 0.4
"""Of the planning budget, the share of the operator-order search."""
PLACEMENT_SHARE = 0.3
"""Of the planning budget, the share of CP-SAT's placement for each order tried (at most two)."""


PATCHED_PLAN_BUDGET = 0.7
"""Planning budget of a patch stage's rewrite, whose order is fixed by construction: it buys
CP-SAT's placement about 2 s on this project's 2-core machine for 150 steps."""


def plan_memory(graph: Graph, time_limit_s: float = 1.0, *, alignment: int = 16,
                kinds: frozenset[InPlace] = ALL_KINDS, dsp: bool = False,
                order: list[int] | None = None, streamed: frozenset[str] = frozenset()) -> Plan:
    """The plan with the smallest arena found within a budget of about `time_limit_s` seconds.

    The budget is counted in work (search steps, CP-SAT deterministic time), never on the
    clock: the same graph and options give the same plan on every machine.

    `kinds` restricts the in-place kinds the plan may use (e.g. for a back end lacking a kernel);
    `dsp` sizes the scratch buffers for the Arm DSP kernels (cores with the DSP extension); an
    `order` given is kept (no order search). `streamed` graph inputs are not in the arena (each
    must be read by SLICEs only, see patches.fetch_inputs).
    """
    problem = build_problem(graph, alignment, kinds, dsp, streamed)
    if order is not None:
        return plan_for_order(problem, order, time_limit_s * PLACEMENT_SHARE)
    searched = best_order(problem, time_limit_s * ORDER_SHARE)
    orders = [list(o) for o in dict.fromkeys([tuple(searched), tuple(range(len(graph.operators)))])]
    placing = time_limit_s * PLACEMENT_SHARE
    best = plan_for_order(problem, orders[0], placing)
    for order in orders[1:]:
        if evaluate(problem, order)[0] < best.arena_bytes:
            plan = plan_for_order(problem, order, placing)
            best = plan if plan.arena_bytes < best.arena_bytes else best
    return best


def plan_model(graph: Graph, request: PatchRequest, budget: int, core: str, *,
               dsp: bool = False, time_limit_s: float = 1.0) -> tuple[Plan, PatchSearch]:
    """The plan of `graph`, with a patch stage where `request` and `budget` call for one.

    See search_patches for the choice; `budget` is the SRAM bytes the arena may use and `core`
    names the core whose fitted kernel costs weigh the patches' overhead.
    """
    search = search_patches(graph, request, budget, core, dsp)
    chosen = search.chosen
    streamed = streamed_inputs(chosen.graph, request.streamed_input)
    if chosen.choice is None and not streamed:
        return plan_memory(graph, time_limit_s, dsp=dsp), search
    executed = chosen.graph
    plan = plan_memory(executed, PATCHED_PLAN_BUDGET * time_limit_s, dsp=dsp,
                       order=list(range(len(executed.operators))), streamed=streamed)
    plan.patch = chosen.choice
    return plan, search


def plan_for_order(problem: Problem, order: list[int], time_limit_s: float = 0.0) -> Plan:
    """The plan for one fixed order: in-place decisions, lower bound and placement.

    With `time_limit_s` > 0, CP-SAT tries to improve the greedy placement for that long.
    """
    lower_bound, needs, decisions = evaluate(problem, order)
    blocks, pairs, scratch = _blocks(problem, order, decisions)
    placement = place_greedy(blocks, pairs, problem.alignment)
    if time_limit_s > 0 and arena_size(blocks, placement) > lower_bound:
        better = place_optimal(blocks, pairs, problem.alignment, time_limit_s, placement,
                               lower_bound)
        if better is not None and arena_size(blocks, better) < arena_size(blocks, placement):
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
    blocks = [Block(s.name, s.size, *slot) for s, slot in zip(problem.storages, slots,
                                                              strict=True)]
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
    for storage in problem.storages:
        for name, inner in storage.members:
            first, last = tensor_lifetime(graph, uses, name, step_of, len(order))
            buffers[name] = Buffer(name, placement[storage.name] + inner,
                                   graph.tensors[name].nbytes, first, last, storage=storage.name)
    for t, block in scratch.items():
        buffers[block.name] = Buffer(block.name, placement[block.name], block.size, t, t,
                                     is_scratch=True)
    arena = max((b.end for b in buffers.values()), default=0)
    for name in problem.streamed:
        first, last = tensor_lifetime(graph, uses, name, step_of, len(order))
        buffers[name] = Buffer(name, 0, graph.tensors[name].nbytes, first, last,
                               tier=Tier.STREAM)
    return Plan(graph, steps, buffers, arena, lower_bound, problem.alignment,
                streamed=problem.streamed)
