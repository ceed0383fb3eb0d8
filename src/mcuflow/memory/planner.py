"""plan_memory: order, in-place decisions and arena offsets for an int8 graph."""

from __future__ import annotations

import dataclasses

from mcuflow.ir.graph import Graph
from mcuflow.ir.verify import verify_graph
from mcuflow.memory.inplace import ALL_KINDS
from mcuflow.memory.patch_search import (
    CP_SAT_STEPS,
    PatchOption,
    PatchRequest,
    PatchSearch,
    SpillTarget,
    ranked,
    search_patches,
    streamed_inputs,
)
from mcuflow.memory.placement import plan_for_order
from mcuflow.memory.plan import InPlace, Plan
from mcuflow.memory.schedule import (
    Problem,
    StepCache,
    best_order,
    build_problem,
    evaluate,
    is_chain,
)

ORDER_SHARE = 0.4
"""Of the planning budget, the share of the operator-order search."""
PLACEMENT_SHARE = 0.3
"""Of the planning budget, the share of CP-SAT's placement for each order tried (at most two)."""


PLAN_TRIES = 3
"""Choices of the patch search planned before the smallest plan is kept (see plan_model)."""
PATCHED_PLAN_BUDGET = 0.15
"""Planning budget of a patch stage's rewrite, whose order is fixed by construction (CP-SAT's
placement gets 30 % of it)."""



def plan_memory(graph: Graph, time_limit_s: float = 1.0, *, alignment: int = 16,
                kinds: frozenset[InPlace] = ALL_KINDS, dsp: bool = False,
                order: list[int] | None = None, streamed: frozenset[str] = frozenset(),
                split: bool = False, problem: Problem | None = None,
                enough: int | None = None) -> Plan:
    """The plan with the smallest arena found within a budget of about `time_limit_s` seconds.

    The budget is counted in work (search steps, CP-SAT deterministic time), never on the
    clock: the same graph and options give the same plan on every machine.

    `kinds` restricts the in-place kinds the plan may use (e.g. for a back end lacking a kernel);
    `dsp` sizes the scratch buffers for the Arm DSP kernels (cores with the DSP extension); an
    `order` given is kept (no order search). `streamed` graph inputs are not in the arena (each
    must be read by SLICEs only, see patches.fetch_inputs). With `split`, storages of several
    members are planned in pieces (liveness.split_storages). A `problem` given is the one
    build_problem makes of `graph` with these options (built once elsewhere, e.g. by the patch
    search's baseline); it is planned as is. A placement within `enough` bytes is kept as
    placed greedily (see plan_for_order).
    """
    problem = problem or build_problem(graph, alignment, kinds, dsp, streamed, split)
    if order is not None:
        return plan_for_order(problem, order, time_limit_s * PLACEMENT_SHARE, enough=enough)
    steps = len(graph.operators)
    searched = (list(range(steps)) if is_chain(graph)  # the only order: nothing to search
                else best_order(problem, time_limit_s * ORDER_SHARE))
    orders = [list(o) for o in dict.fromkeys([tuple(searched), tuple(range(steps))])]
    placing = time_limit_s * PLACEMENT_SHARE
    best = plan_for_order(problem, orders[0], placing, enough=enough)
    for order in orders[1:]:
        if evaluate(problem, order)[0] < best.arena_bytes:
            plan = plan_for_order(problem, order, placing, enough=enough)
            best = plan if plan.arena_bytes < best.arena_bytes else best
    return best


def plan_model(graph: Graph, request: PatchRequest, budget: int, core: str, *,
               dsp: bool = False, time_limit_s: float = 1.0, cache: StepCache | None = None,
               spill: SpillTarget | None = None, search: PatchSearch | None = None,
               settle: bool = False) -> tuple[Plan, PatchSearch]:
    """The plan of `graph`, with a patch stage where `request` and `budget` call for one.

    See search_patches for the choice; `budget` is the SRAM bytes the arena may use and `core`
    names the core whose fitted kernel costs weigh the patches' overhead. The search weighs
    lower bounds: when the plan of its first choice does not fit the budget, the next
    PLAN_TRIES choices are planned too and the first that fits (else the smallest) is kept.
    A `cache` given may hold step work of `graph` done before (see StepCache); a `spill`
    target lets the search spill activations when nothing else fits. A `search` given is
    search_patches' answer for these arguments (see unfit_arena), planned as is.
    With `settle`, a greedy placement within the budget is kept (CP-SAT only makes an arena
    smaller): the option chosen is the same, its arena an upper bound of the one planned
    without `settle`.
    """
    search = search or search_patches(graph, request, budget, core, dsp, cache, spill)
    best: tuple[Plan, PatchOption] | None = None
    for option in ranked(search, request)[:PLAN_TRIES]:
        plan = _plan_option(graph, option, request, time_limit_s, dsp,
                            search.budget if settle else None)
        if best is None or plan.arena_bytes < best[0].arena_bytes:
            best = plan, option
        if plan.arena_bytes <= search.budget:
            break
    if best[0].spilled and spill is not None:
        best[0].spill_tier = spill.tier
        best[0].spill_encrypted = spill.crypto_ms_per_byte is not None
    return best[0], _planned(search, best[1], best[0])


def unfit_arena(graph: Graph, search: PatchSearch, request: PatchRequest) -> int | None:
    """When no plan plan_model may make of `search` fits its budget: the least arena of them.

    plan_model plans the first PLAN_TRIES options ranked and keeps the first that fits, else
    the smallest; no plan's arena is below the needs of its order (schedule.evaluate), an
    option's peak unless its greedy placement replaced it (_placed). The unpatched option's
    order is searched, so its needs bound it only on a chain (is_chain); a patch stage's
    rewrite runs in its own order. None where some plan could fit.
    """
    least = None
    for option in ranked(search, request)[:PLAN_TRIES]:
        if option.problem is None or (option.choice is None and not is_chain(graph)):
            return None
        steps = len(option.graph.operators)
        bound = (option.peak_bytes if option.choice is None or steps <= CP_SAT_STEPS
                 else evaluate(option.problem, list(range(steps)))[0])
        if bound <= search.budget:
            return None
        least = bound if least is None else min(least, bound)
    return least


def _planned(search: PatchSearch, option: PatchOption, plan: Plan) -> PatchSearch:
    """The search with `option` chosen, its peak the arena of its plan."""
    chosen = dataclasses.replace(option, peak_bytes=plan.arena_bytes)
    return dataclasses.replace(
        search, chosen=chosen,
        baseline=chosen if option is search.baseline else search.baseline,
        options=tuple(chosen if o is option else o for o in search.options))


def _plan_option(graph: Graph, option: PatchOption, request: PatchRequest, time_limit_s: float,
                 dsp: bool, enough: int | None) -> Plan:
    """The plan of one option of the search; a greedy placement within `enough` is kept.

    A patch stage's rewrite is verified (ir.verify) before it is planned.
    """
    streamed = streamed_inputs(option.graph, request.streamed_input)
    if option.choice is None and not streamed:
        return plan_memory(graph, time_limit_s, dsp=dsp, problem=option.problem, enough=enough)
    verify_graph(option.graph)
    steps = len(option.graph.operators)
    budget = PATCHED_PLAN_BUDGET * time_limit_s if steps <= CP_SAT_STEPS else 0
    plan = plan_for_order(option.problem, list(range(steps)), budget * PLACEMENT_SHARE,
                          enough=enough)
    plan.patch = option.choice
    return plan
