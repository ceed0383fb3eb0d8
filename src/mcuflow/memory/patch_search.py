"""Choosing a patch stage: every stage end, grid and mode screened, the best few planned exactly."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board, MemoryTier
from mcuflow.hw.kernel_costs import step_instructions
from mcuflow.hw.kernels import InPlace, default_kernels
from mcuflow.hw.storage_io import DEFAULT_INFERENCES_PER_HOUR, SpillTraffic, spill_cost
from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import OP_DEFS, OpKind, op_macs
from mcuflow.memory.patches import (
    PatchChoice,
    Patched,
    PatchMode,
    Region,
    Rows,
    Stage,
    Tracer,
    choices,
    cuts,
    fetch_inputs,
    find_stages,
    patch_rewrite,
    spill_traffic,
    stream_steps,
)
from mcuflow.memory.placement import plan_for_order
from mcuflow.memory.plan import RUNS_NO_CODE
from mcuflow.memory.schedule import (
    Problem,
    StepCache,
    build_problem,
    evaluate,
    static_kinds,
    step_signature,
)

CP_SAT_STEPS = 300
"""A patch stage's rewrite of more steps keeps the greedy placement: CP-SAT gains little there
for seconds of work."""
SHORTLIST = 4
"""Screened options planned exactly (the screening's Pareto front, evenly thinned)."""
NEAR_TARGET = 6
"""Screened options nearest the request's limit (overhead or budget) planned exactly too: the
screening's estimates are a few points off, so the answer is among them."""
DEFAULT_MAX_OVERHEAD = 0.10
"""Default of --max-overhead: at most 10 % more instructions than the unpatched model."""
SPILL_STAGES = 3
"""Stages a spilling search tries (the shortest after which the rest of the model fits)."""
SPILL_ROWS_PER_STEP = (1, 2, 4)
"""Source rows per step of a spilling stage: one gives the smallest buffers, more give fewer
storage accesses."""


class Objective(Enum):
    """What the search minimises."""

    FIT = "fit"
    """The fewest instructions whose peak fits the budget (no patches when the model fits)."""
    SMALLEST = "smallest"
    """The smallest peak within the overhead limit."""


@dataclass(frozen=True)
class PatchRequest:
    """The user's patch options: off, automatic, or a grid (and the layer ending the stage)."""

    enabled: bool = True
    grid: tuple[int, int] | None = None
    layer: str | None = None
    sram_budget: int | None = None
    max_overhead: float = DEFAULT_MAX_OVERHEAD
    objective: Objective = Objective.FIT
    streamed_input: bool = False
    """--input streamed: the image is not held in the arena; the model reads the windows it
    needs through the input reader."""
    out_of_core: bool = True
    """--external auto: a firmware too large for the board's flash reads constants from the
    board's external tier (planning.out_of_core)."""
    encrypt_external: bool = False
    """--encrypt-external: that tier's image is encrypted, and the core's time to verify and
    decrypt it is modelled."""
    inferences_per_hour: float = DEFAULT_INFERENCES_PER_HOUR
    """--inferences-per-hour: the rate the lifetime of a spill tier is given at."""

    @classmethod
    def parse(cls, text: str, sram_budget: int | None = None,
              max_overhead_pct: float | None = None, input_mode: str = "arena",
              external: str = "auto", encrypt_external: bool = False,
              inferences_per_hour: float | None = None) -> PatchRequest:
        """From --patches, --sram-budget, --max-overhead (%), --input, --external and the rest.

        The rest: --encrypt-external and --inferences-per-hour.

        --patches takes auto, off or RxC[@LAYER]; --input takes arena or streamed; --external
        takes auto or off.
        """
        if external not in ("auto", "off"):
            raise McuflowError(f"--external takes auto or off, not {external!r}",
                               "auto moves constants to the board's external storage only "
                               "when the firmware does not fit its flash")
        if input_mode not in ("arena", "streamed"):
            raise McuflowError(f"--input takes arena or streamed, not {input_mode!r}",
                               "arena keeps the input image in the arena; streamed reads it "
                               "window by window through the input reader")
        if sram_budget is not None and sram_budget <= 0:
            raise McuflowError(f"--sram-budget must be positive, got {sram_budget}",
                               "pass the bytes of SRAM the arena may use, e.g. 196608")
        rate = DEFAULT_INFERENCES_PER_HOUR if inferences_per_hour is None else inferences_per_hour
        if not (math.isfinite(rate) and rate > 0):
            raise McuflowError(f"--inferences-per-hour must be a positive number, got {rate}",
                               "pass how often the model runs, e.g. 60 (once a minute)")
        if max_overhead_pct is not None and not 0 <= max_overhead_pct <= 1000:
            raise McuflowError(f"--max-overhead must be 0..1000 %, got {max_overhead_pct}",
                               "pass a percentage, e.g. 10")
        objective = (Objective.SMALLEST if max_overhead_pct is not None and sram_budget is None
                     else Objective.FIT)
        overhead = DEFAULT_MAX_OVERHEAD if max_overhead_pct is None else max_overhead_pct / 100
        common = {"sram_budget": sram_budget, "max_overhead": overhead, "objective": objective,
                  "streamed_input": input_mode == "streamed", "out_of_core": external == "auto",
                  "encrypt_external": encrypt_external, "inferences_per_hour": rate}
        if text in ("auto", "off", "1x1"):
            return cls(enabled=text == "auto", **common)
        match = re.fullmatch(r"([1-9][0-9]*)x([1-9][0-9]*)(?:@(.+))?", text)
        if match is None:
            raise McuflowError(f"--patches takes auto, off or RxC[@LAYER], not {text!r}",
                               "e.g. --patches 4x4 or --patches 8x1@conv_2d_20")
        return cls(grid=(int(match[1]), int(match[2])), layer=match[3], **common)


@dataclass(frozen=True)
class PatchOption:
    """One way to run the model: a patch stage (None: unpatched), its graph and its figures.

    `peak_bytes` is the planner's lower bound for the graph's own order, or for a patch stage
    of more than CP_SAT_STEPS steps that could be the answer the arena of its greedy placement
    (what such a plan gets; see _place_promising); `instructions` the fitted kernel costs
    summed over its steps (MACs where a core has no fitted costs).
    """

    choice: PatchChoice | None
    graph: Graph
    peak_bytes: int
    instructions: float
    halo: tuple[int, int, int, int] = (0, 0, 0, 0)
    """(rows, cols) of the source window of the largest patch, then of its tile at the end."""
    problem: Problem | None = dataclasses.field(default=None, compare=False, repr=False)
    """The planning problem of `graph` (split in pieces for a patch stage), built once."""
    spilled: frozenset[str] = frozenset()
    """Tensors of `graph` held in external storage (PatchChoice.spilled)."""


@dataclass(frozen=True)
class SpillTarget:
    """Where a plan may spill activations when nothing else fits: a board's spill tier."""

    board: Board
    tier: MemoryTier
    crypto_ms_per_byte: float | None = None
    """Encrypted spills (--encrypt-external): the core's time to seal or open a byte."""

    def traffic(self, graph: Graph, spilled: frozenset[str]) -> SpillTraffic:
        """The spill traffic of `graph`, sealed when encrypted."""
        return spill_traffic(graph, spilled, self.crypto_ms_per_byte is not None)

    def ms(self, graph: Graph, spilled: frozenset[str]) -> float:
        """Milliseconds the core waits for (and encrypts) the spill traffic of `graph`."""
        return spill_cost(self.board, self.tier, self.traffic(graph, spilled),
                          crypto_ms_per_byte=self.crypto_ms_per_byte or 0.0).ms


@dataclass(frozen=True)
class PatchSearch:
    """The options planned exactly, the chosen one and the unpatched baseline."""

    baseline: PatchOption
    options: tuple[PatchOption, ...]
    chosen: PatchOption
    budget: int
    settled: bool = False
    """Only the option plan_model plans first was evaluated (search_patches' `settle`): valid
    where its plan fits `budget`, as plan_model then keeps it."""

    def overhead(self, option: PatchOption) -> float:
        """Extra instructions of `option` over the unpatched model (0.05: 5 % more)."""
        return option.instructions / self.baseline.instructions - 1 if (
            self.baseline.instructions) else 0.0

    @property
    def pareto(self) -> tuple[PatchOption, ...]:
        """The options no other beats on both peak and instructions, smallest peak first."""
        ranked = sorted((self.baseline, *self.options),
                        key=lambda o: (o.peak_bytes, o.instructions))
        front: list[PatchOption] = []
        for option in ranked:
            if not front or option.instructions < front[-1].instructions:
                front.append(option)
        return tuple(front)


@dataclass
class _Pricing:
    """Predicted instructions of steps on one core, each kind of step priced once.

    A patch stage's rewrite repeats its layers per patch on windows of a few shapes.
    """

    core: str
    dsp: bool
    known: dict[tuple[object, ...], float] = dataclasses.field(default_factory=dict)

    def of(self, graph: Graph, op: Operator) -> float:
        """Predicted instructions of one step (MACs plus element work where unfitted)."""
        key = step_signature(graph, op)
        if key not in self.known:
            self.known[key] = _op_instructions(graph, op, self.core, self.dsp)
        return self.known[key]

    def steps(self, problem: Problem) -> float:
        """Predicted instructions of the steps of `problem` that run code."""
        return self.running(problem.graph, problem.static)

    def running(self, graph: Graph, statics: list[InPlace]) -> float:
        """Predicted instructions of the steps of `graph` that run code under `statics`.

        Aliases and concatenations planned in place run no code.
        """
        return sum(self.of(graph, op) for op, kind in zip(graph.operators, statics, strict=True)
                   if kind not in RUNS_NO_CODE)


def _op_instructions(graph: Graph, op: Operator, core: str, dsp: bool) -> float:
    chosen = default_kernels(graph, op, dsp)
    fitted = step_instructions(graph, op, chosen, core) if chosen is not None else None
    if fitted is not None:
        return fitted
    out = graph.tensors[op.outputs[0]]
    return op_macs(graph, op) + out.size * OP_DEFS[op.kind].element_ops


def _evaluate(graph: Graph, choice: PatchChoice | None, pricing: _Pricing, cache: StepCache,
              streamed: bool, halo: tuple[int, int, int, int] = (0, 0, 0, 0),
              spilled: frozenset[str] = frozenset()) -> tuple[PatchOption, Problem]:
    """The option running `graph` with its lower bound as the peak, and its planning problem.

    Its inputs are streamed when asked (see fetch_inputs); `cache` holds the search's step work;
    `spilled` tensors are held in external storage (PatchChoice.spilled).
    """
    if streamed:
        graph = fetch_inputs(graph)
    problem = build_problem(graph, dsp=pricing.dsp, streamed=streamed_inputs(graph, streamed),
                            split=choice is not None or streamed, cache=cache, spilled=spilled)
    peak = evaluate(problem, list(range(len(graph.operators))))[0]
    return PatchOption(choice, graph, peak, pricing.steps(problem), halo, problem,
                       spilled), problem


def _placed(option: PatchOption, problem: Problem) -> PatchOption:
    """The option with the arena of its greedy placement as the peak.

    Only for a patch stage of more than CP_SAT_STEPS steps, whose lower bound is far from what
    its plan gets.
    """
    steps = len(option.graph.operators)
    if option.choice is None or steps <= CP_SAT_STEPS:
        return option
    arena = plan_for_order(problem, list(range(steps)), quick=True).arena_bytes
    return dataclasses.replace(option, peak_bytes=max(arena, option.peak_bytes))


def _place_promising(bounded: list[tuple[PatchOption, Problem]], request: PatchRequest,
                     budget: int, unpatched: float) -> tuple[PatchOption, ...]:
    """The options, those that could be the request's answer placed (_placed).

    A lower bound never exceeds the placed peak, so: for the smallest peak, options within the
    overhead limit are placed by lower bound until the next bound reaches the smallest placed
    peak; to fit the budget, by instructions until one fits (then as for the smallest peak when
    none does). An asked grid places every option.
    """
    found = {id(option): option for option, _ in bounded}

    def place(option: PatchOption, problem: Problem) -> PatchOption:
        found[id(option)] = _placed(option, problem)
        return found[id(option)]

    if request.grid is not None:
        for option, problem in bounded:
            place(option, problem)
        return tuple(found[id(option)] for option, _ in bounded)
    if request.objective is Objective.FIT:
        for option, problem in sorted(bounded, key=lambda b: b[0].instructions):
            if option.peak_bytes <= budget and place(option, problem).peak_bytes <= budget:
                return tuple(found[id(option)] for option, _ in bounded)
    within = [b for b in bounded if b[0].instructions <= unpatched * (1 + request.max_overhead)]
    smallest = None
    for option, problem in sorted(within, key=lambda b: b[0].peak_bytes):
        if smallest is not None and option.peak_bytes >= smallest:
            break
        peak = place(option, problem).peak_bytes
        smallest = peak if smallest is None else min(smallest, peak)
    return tuple(found[id(option)] for option, _ in bounded)


def streamed_inputs(graph: Graph, streamed: bool) -> frozenset[str]:
    """The graph inputs a plan streams: all of them with --input streamed, else none."""
    return frozenset(graph.inputs) if streamed else frozenset()


def search_patches(graph: Graph, request: PatchRequest, budget: int, core: str, dsp: bool,
                   cache: StepCache | None = None, spill: SpillTarget | None = None,
                   settle: bool = False) -> PatchSearch:
    """Screen every stage, grid and mode; plan the promising ones; choose by `request`.

    `budget` is the arena bytes the board allows (a request's sram_budget replaces it). A model
    that fits gets no patches unless the request asks for them, and no search. Peaks are the
    planner's lower bounds for each graph's own order. A `cache` given may hold step work of
    `graph` done before (see StepCache). When no option fits and a `spill` target is given,
    the option spilling least to it that fits is added (_spill_option). With `settle`, an
    automatic search for the fewest instructions that fit keeps only the option plan_model
    plans first where one fits (_first_fitting; PatchSearch.settled).
    """
    budget = request.sram_budget or budget
    streamed = request.streamed_input
    pricing, cache = _Pricing(core, dsp), cache if cache is not None else StepCache()
    baseline = _evaluate(graph, None, pricing, cache, streamed)[0]
    fits = (request.grid is None and request.objective is Objective.FIT
            and baseline.peak_bytes <= budget)
    if not request.enabled or fits:
        return PatchSearch(baseline, (), baseline, budget)
    stages = _stages(graph, request)
    costs = [pricing.of(graph, op) for op in graph.operators]
    unpatched = build_problem(graph, dsp=dsp, cache=cache) if streamed else baseline.problem
    needs = evaluate(unpatched, list(range(len(graph.operators))))[1]
    tracers = [Tracer(graph, stage) for stage in stages]
    fixed = _call_costs(tracers[-1], costs, pricing) if tracers else {}
    screened = [screen for fields in (_Fields(tracer, costs, fixed) for tracer in tracers)
                for screen in _screen(fields, tracers[-1], needs,
                                      _candidates(graph, fields.tracer.stage, request), streamed)]
    if not screened and request.grid is None:
        return PatchSearch(baseline, (), baseline, budget)
    if not screened:
        raise McuflowError(f"--patches: no patch stage of '{graph.name}' takes a "
                           f"{request.grid[0]}x{request.grid[1]} grid",
                           "a grid has at most as many rows and columns as the stage's end "
                           "tensor; try --patches auto")
    shortlist = _shortlist(stages, screened, request, budget, baseline.instructions)
    tracer_of = {tracer.stage.end: tracer for tracer in tracers}
    rewrites = [(s, patch_rewrite(graph, stage, s.choice, tracer_of[stage.end]))
                for stage, s in shortlist]
    evaluated: dict[int, tuple[PatchOption, Problem]] = {}

    def bound(index: int) -> tuple[PatchOption, Problem]:
        if index not in evaluated:
            s, patched = rewrites[index]
            evaluated[index] = _evaluate(patched.graph, s.choice, pricing, cache, streamed,
                                         s.halo, patched.spilled)
        return evaluated[index]

    if settle and not streamed and request.grid is None and request.objective is Objective.FIT:
        first = _first_fitting([patched for _, patched in rewrites], bound, pricing, budget)
        if first is not None:
            return PatchSearch(baseline, (first,), first, budget, settled=True)
    bounded = [bound(index) for index in range(len(rewrites))]
    options = _place_promising(bounded, request, budget, baseline.instructions)
    if spill is not None and request.grid is None and all(
            o.peak_bytes > budget for o in (baseline, *options)):
        spilling = _spill_option(graph, stages, needs, budget, pricing, cache, streamed, spill)
        options += (spilling,) if spilling is not None else ()
    search = PatchSearch(baseline, options, baseline, budget)
    return PatchSearch(baseline, options, ranked(search, request)[0], budget)


def _first_fitting(rewrites: list[Patched], bound: Callable[[int], tuple[PatchOption, Problem]],
                   pricing: _Pricing, budget: int) -> PatchOption | None:
    """The option plan_model plans first for the fewest instructions that fit, or None.

    _place_promising places the options by instructions until one fits `budget` placed, and
    `ranked` puts first the fitting option of fewest instructions (then smallest peak): that
    one is among the rewrites up to the first that fits placed and those of its instructions.
    Only they are evaluated (`bound`, by index); the rest cannot precede them. None when no
    rewrite fits.
    """
    costs = [pricing.running(patched.graph, static_kinds(patched.graph, excluded=patched.spilled))
             for patched in rewrites]
    found: list[tuple[float, int, int, PatchOption]] = []
    for index in sorted(range(len(rewrites)), key=costs.__getitem__):
        if found and costs[index] > found[0][0]:
            break
        option, problem = bound(index)
        if not found and option.peak_bytes <= budget:
            option = _placed(option, problem)
        if option.peak_bytes <= budget:
            found.append((option.instructions, option.peak_bytes, index, option))
    return min(found)[3] if found else None


def _spill_option(graph: Graph, stages: list[Stage], needs: list[int], budget: int,
                  pricing: _Pricing, cache: StepCache, streamed: bool, spill: SpillTarget
                  ) -> PatchOption | None:
    """A cached stage spilling its largest tensors to external storage, placed within `budget`.

    Stages whose later steps fit the budget are tried shortest first, at most SPILL_STAGES of
    them; the first with a fitting option gives the one of least spill time over
    SPILL_ROWS_PER_STEP, each spilling the fewest of its largest tensors that fit
    (_fewest_spilled). None when no stage fits.
    """
    tails = [stage for stage in stages if max(needs[stage.ops[-1] + 1:], default=0) <= budget]
    for stage in tails[:SPILL_STAGES]:
        tracer = Tracer(graph, stage)
        spillable = sorted((op.outputs[0] for op in tracer.ops
                            if op.kind is not OpKind.PAD and op.outputs[0] != stage.end),
                           key=lambda name: (-graph.tensors[name].nbytes, name))
        rows = graph.tensors[stage.source].shape[1]
        found = [option for share in SPILL_ROWS_PER_STEP if rows // share >= 1
                 for option in [_fewest_spilled(graph, stage, tracer, spillable, rows // share,
                                                budget, pricing, cache, streamed, spill)]
                 if option is not None]
        if found:
            return min(found, key=lambda o: (spill.ms(o.graph, o.spilled), o.instructions))
    return None


def _fewest_spilled(graph: Graph, stage: Stage, tracer: Tracer, spillable: list[str],
                    steps: int, budget: int, pricing: _Pricing, cache: StepCache,
                    streamed: bool, spill: SpillTarget) -> PatchOption | None:
    """The CACHED choice of `steps` spilling the fewest of `spillable` that fits `budget`.

    The largest are spilled first; bisection on the lower bound, then the count grows until
    the placed arena fits too, beside the spill's static buffer (an encrypted spill's tags).
    """
    halo = _cached_peak(tracer, stream_steps(tracer, steps), streamed)[1]

    @functools.cache
    def spilling(count: int) -> tuple[PatchOption, Problem]:
        choice = PatchChoice(stage.end, steps, 1, PatchMode.CACHED, tuple(spillable[:count]))
        patched = patch_rewrite(graph, stage, choice, tracer)
        return _evaluate(patched.graph, choice, pricing, cache, streamed, halo,
                         patched.spilled)

    if not spillable or spilling(len(spillable))[0].peak_bytes > budget:
        return None
    low, high = 0, len(spillable)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if spilling(middle)[0].peak_bytes <= budget else (middle, high)
    for count in range(high, len(spillable) + 1):
        placed = _placed(*spilling(count))
        tags = spill.traffic(placed.graph, placed.spilled).buffer_bytes
        if placed.peak_bytes + tags <= budget:
            return placed
    return None


def _stages(graph: Graph, request: PatchRequest) -> list[Stage]:
    stages = find_stages(graph)
    if request.layer is None:
        return stages
    named = [s for s in stages if request.layer == s.end or request.layer == _producer_name(
        graph, s)]
    if not named:
        ends = ", ".join(s.end for s in stages) or "none"
        raise McuflowError(f"--patches: no patch stage can end at '{request.layer}'",
                           f"stages can end at: {ends}")
    return named


def _producer_name(graph: Graph, stage: Stage) -> str:
    return graph.operators[stage.ops[-1]].name


def _candidates(graph: Graph, stage: Stage, request: PatchRequest) -> list[PatchChoice]:
    """The search's choices for `stage`, or the asked grid in each mode that takes it."""
    if request.grid is None:
        return list(choices(graph, stage))
    rows, cols = request.grid
    _, height, width, _ = graph.tensors[stage.end].shape
    found = []
    if rows <= height and cols <= width:
        found.append(PatchChoice(stage.end, rows, cols, PatchMode.RECOMPUTE))
    if cols == 1 and rows <= graph.tensors[stage.source].shape[1]:
        found.append(PatchChoice(stage.end, rows, cols, PatchMode.CACHED))
    return found


def ranked(search: PatchSearch, request: PatchRequest) -> list[PatchOption]:
    """The options in the order the request prefers them (see Objective), best first."""
    everything = (search.baseline, *search.options)
    smallest = sorted((o for o in everything if search.overhead(o) <= request.max_overhead),
                      key=lambda o: (o.peak_bytes, o.instructions))
    if request.grid is not None:
        return sorted(search.options, key=lambda o: (o.peak_bytes, o.instructions)) or [
            search.baseline]
    if request.objective is Objective.FIT:
        fitting = sorted((o for o in everything if o.peak_bytes <= search.budget),
                         key=lambda o: (o.instructions, o.peak_bytes))
        return fitting + [o for o in smallest if o not in fitting]
    return smallest


# --- screening ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Screened:
    choice: PatchChoice
    peak_bytes: int
    instructions: float
    halo: tuple[int, int, int, int]


def _shortlist(stages: list[Stage], screened: list[_Screened], request: PatchRequest,
               budget: int, unpatched: float) -> list[tuple[Stage, _Screened]]:
    """The screening's Pareto front (peak, instructions), thinned evenly to SHORTLIST.

    The estimated answers to the request and their neighbours on the front are kept too.
    """
    ranked = sorted(screened, key=lambda s: (s.peak_bytes, s.instructions))
    front: list[_Screened] = []
    for option in ranked:
        if not front or option.instructions < front[-1].instructions:
            front.append(option)
    kept = set()
    if len(front) > SHORTLIST:
        step = (len(front) - 1) / (SHORTLIST - 1)
        kept = {round(k * step) for k in range(SHORTLIST)}
    else:
        kept = set(range(len(front)))
    near = [abs(s.instructions / unpatched - 1 - request.max_overhead) for s in front]
    if request.objective is Objective.FIT:
        near = [abs(s.peak_bytes / budget - 1) for s in front]
    kept |= set(sorted(range(len(front)), key=near.__getitem__)[:NEAR_TARGET])
    by_end = {stage.end: stage for stage in stages}
    return [(by_end[front[k].choice.end], front[k]) for k in sorted(kept)]


def _call_costs(tracer: Tracer, costs: list[float], pricing: _Pricing) -> dict[str, float]:
    """The instructions each stage op costs per call beyond its share of the work.

    The op run for one output row, less 1/height of the whole op: what every patch or row
    step pays again (loop set-up, per-call constants).
    """
    graph = tracer.graph
    found = {}
    for index in tracer.stage.ops:
        op = graph.operators[index]
        name = op.outputs[0]
        _, height, width, _ = graph.tensors[name].shape
        row = tracer.computed(op, (0, 1, 0, width))
        window = tracer.windows.get(name)
        attrs = window.attrs_for(op, row) if window else op.attrs
        one = Graph("row", {n: _window_of(graph.tensors[n], tracer.reads(op, row))
                            for n in op.inputs})
        one.tensors[name] = _window_of(graph.tensors[name], row)
        step = Operator(op.kind, op.inputs, op.outputs, attrs, op.name)
        found[name] = max(0.0, pricing.of(one, step) - costs[index] / height)
    return found


def _window_of(tensor: Tensor, region: Region) -> Tensor:
    if tensor.is_constant:
        return tensor
    shape = (1, region[1] - region[0], region[3] - region[2], tensor.shape[3])
    return Tensor(tensor.name, shape, tensor.dtype, tensor.quant)


class _Fields:
    """A stage's receptive fields and costs as the screening weighs them.

    Along each axis, the length of the window of every stage op's output (then of the source)
    that a band (or column) of the end's tiles needs; a patch's window of a tensor is its band's
    length times its column's. `live` has a row per stage op: 1 for each op output one patch
    holds while the op runs (its own included, the end not counted). `costs` are the predicted
    instructions of each op of the unpatched graph, `fixed` what a stage op costs per extra
    call (see _screen).
    """

    def __init__(self, tracer: Tracer, costs: list[float], fixed: dict[str, float]) -> None:
        self.tracer = tracer
        graph, stage = tracer.graph, tracer.stage
        self.names = [op.outputs[0] for op in tracer.ops]
        self.end = self.names.index(stage.end)
        self.channels = np.array([graph.tensors[n].shape[3] for n in self.names], dtype=np.int64)
        self.live = _live_matrix(tracer.ops, stage.end)
        self.costs, self.fixed, self.total = costs, fixed, sum(costs)
        self.stage_costs = np.array([costs[i] for i in stage.ops], dtype=np.float64)
        self.pixels = np.array([_pixels(graph, n) for n in self.names], dtype=np.int64)
        self.per_call = np.array([fixed[n] for n in self.names], dtype=np.float64)
        self._bands: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def bands(self, axis: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
        """The end cut in `parts` along `axis`: the window lengths each part needs, and sums.

        A row per part, a column per op output and a last for the source; then the columns'
        sums.
        """
        key = (axis, parts)
        if key not in self._bands:
            tracer = self.tracer
            bounds = cuts(tracer.graph.tensors[tracer.stage.end].shape[1 + axis], parts)
            names = (*self.names, tracer.stage.source)
            spans = [tracer.trace(axis, lo, hi)
                     for lo, hi in zip(bounds, bounds[1:], strict=False)]
            lengths = np.array([[need[n][1] - need[n][0] for n in names] for need in spans],
                               dtype=np.int64)
            self._bands[key] = lengths, lengths.sum(axis=0)
        return self._bands[key]


def _live_matrix(ops: list[Operator], end: str) -> np.ndarray:
    """Per op, 1 for each op output live while it runs, `end` not counted (see _Fields).

    An output lives from its op to the last op reading it (to its own op when none does).
    """
    column = {op.outputs[0]: k for k, op in enumerate(ops)}
    last = {name: k for k, op in enumerate(ops) for name in op.inputs}
    matrix = np.zeros((len(ops), len(ops)), dtype=np.int64)
    live: list[str] = []
    for k, op in enumerate(ops):
        live.append(op.outputs[0])
        for name in live:
            matrix[k, column[name]] = name != end
        live = [name for name in live if last.get(name, -1) > k]
    return matrix


def _screen(fields: _Fields, longest: Tracer, needs: list[int], choices: list[PatchChoice],
            streamed: bool) -> list[_Screened]:
    """Estimated peak and instructions of each choice of a stage, from its receptive fields.

    `needs` are the bytes live at each step of the graph in its own order; `longest` traces
    the longest stage, whose row steps hold every shorter stage's (stages are prefixes of the
    graph, and only a stage's end is read after it). A stage op's patches are charged its share
    of its cost by the pixels they compute and the fixed cost per call; the steps after the
    stage keep their bytes. A `streamed` source is not resident. The peak is that of the
    patches whose source window is largest: the ones that set it.
    """
    graph, stage = fields.tracer.graph, fields.tracer.stage
    resident = graph.tensors[stage.end].nbytes + (
        0 if streamed else graph.tensors[stage.source].nbytes)
    rest = max(needs[stage.ops[-1] + 1:], default=0)
    grids = [choice for choice in choices if choice.mode is PatchMode.RECOMPUTE]
    by_grid = _screen_grids(fields, grids, resident, rest, streamed)
    return [by_grid[choice] if choice.mode is PatchMode.RECOMPUTE
            else _screen_cached(fields, longest, choice, streamed, rest) for choice in choices]


def _screen_grids(fields: _Fields, grids: list[PatchChoice], resident: int, rest: int,
                  streamed: bool) -> dict[PatchChoice, _Screened]:
    """_screen of RECOMPUTE choices, by choice; those of one band count at once.

    A choice's instructions add its ops' terms one by one (as Python's float sum of 3.11),
    so that they do not depend on how many choices are screened together.
    """
    channels = fields.tracer.graph.tensors[fields.tracer.stage.source].shape[3]
    found: dict[PatchChoice, _Screened] = {}
    for parts in dict.fromkeys(choice.rows for choice in grids):
        ours = [choice for choice in grids if choice.rows == parts]
        rows, row_sums = fields.bands(0, parts)
        first = rows[np.flatnonzero(rows[:, -1] == rows[:, -1].max())]
        columns = [fields.bands(1, choice.cols) for choice in ours]
        sums = np.stack([col_sums[:-1] for _, col_sums in columns])
        patches = np.array([parts * choice.cols - 1 for choice in ours], dtype=np.int64)
        terms = (fields.stage_costs * (row_sums[:-1] * sums / fields.pixels - 1)
                 + patches[:, None] * fields.per_call)
        instructions = np.zeros(len(ours))
        for term in terms.T:
            instructions = instructions + term
        wide = [cols[cols[:, -1] == cols[:, -1].max()] for cols, _ in columns]
        windows = first[:, None, :-1] * np.concatenate(wide)[None, :, :-1] * fields.channels
        peaks = np.maximum.reduceat((windows @ fields.live.T).max(axis=(0, 2)),
                                    np.cumsum([0, *map(len, wide[:-1])]))
        for choice, total, peak, end in zip(ours, instructions.tolist(), peaks.tolist(), wide,
                                            strict=True):
            halo = (int(first[0, -1]), int(end[0, -1]), int(first[0, fields.end]),
                    int(end[0, fields.end]))
            window = halo[0] * halo[1] * channels if streamed else 0
            found[choice] = _Screened(choice, max(resident + peak + window, rest),
                                      fields.total + total, halo)
    return found


def _screen_cached(fields: _Fields, longest: Tracer, choice: PatchChoice, streamed: bool,
                   rest: int) -> _Screened:
    """_screen of a CACHED choice: the stage's ops run in the longest stage's row steps."""
    tracer, fixed = fields.tracer, fields.fixed
    ours = {op.outputs[0] for op in tracer.ops}
    steps = [[rows for rows in step if rows.op.outputs[0] in ours]
             for step in stream_steps(longest, choice.rows)]
    peak, halo = _cached_peak(tracer, steps, streamed)
    calls = sum(fixed[rows.op.outputs[0]] for step in steps for rows in step)
    return _Screened(choice, max(peak, rest),
                     fields.total + calls - sum(fixed[op.outputs[0]] for op in tracer.ops), halo)


def _pixels(graph: Graph, name: str) -> int:
    _, height, width, _ = graph.tensors[name].shape
    return height * width


def _cached_peak(tracer: Tracer, steps: list[list[Rows]], streamed: bool
                 ) -> tuple[int, tuple[int, int, int, int]]:
    """Most bytes live at once over the steps, and the largest step's rows (_source_rows).

    At each step: the source rows still to be read (only the rows the step reads when the
    source is `streamed`), the end rows written so far and the step buffers.
    """
    graph, stage = tracer.graph, tracer.stage
    _, height, width, channels = graph.tensors[stage.source].shape
    end_row = graph.tensors[stage.end].nbytes // graph.tensors[stage.end].shape[1]
    buffers: dict[str, int] = {}
    peak, written, halo = 0, 0, (0, 0, 0, 0)
    for step in steps:
        read = [tracer.reads(r.op, (r.start, r.end, 0, 1))[:2] for r in step
                if stage.source in r.op.inputs]
        rows_live = (max((b - a for a, b in read), default=0) if streamed
                     else height - min((a for a, _ in read), default=height))
        held = rows_live * width * channels
        for rows in step:
            name = rows.op.outputs[0]
            if name == stage.end:
                halo = max(halo, _source_rows(tracer, step, rows))
                written = rows.end
                continue
            _, _, out_width, out_channels = graph.tensors[name].shape
            size = (rows.end - rows.keep_from) * out_width * out_channels
            peak = max(peak, held + written * end_row + sum(buffers.values()) + size)
            buffers[name] = size
        peak = max(peak, held + written * end_row + sum(buffers.values()))
    return peak, halo


def _source_rows(tracer: Tracer, step: list[Rows], end: Rows) -> tuple[int, int, int, int]:
    """(rows, cols) of the source the step's first ops read, then of the end it computes."""
    graph, source = tracer.graph, tracer.stage.source
    read = [tracer.reads(r.op, (r.start, r.end, 0, 1))[:2] for r in step
            if source in r.op.inputs]
    rows = max((b - a for a, b in read), default=0)
    return (rows, graph.tensors[source].shape[2], end.end - end.start,
            graph.tensors[end.op.outputs[0]].shape[2])
