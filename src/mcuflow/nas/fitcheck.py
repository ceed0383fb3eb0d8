"""Whether an architecture fits a board: mcuflow's planner and cost model, answered fast."""

from __future__ import annotations

import functools
import math
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mcuflow.analysis.metrics import analyze as metrics_analyze
from mcuflow.codegen.context import ConstantPool, EmitContext, c_type_of
from mcuflow.codegen.emit import emit_step, portable_arrays
from mcuflow.codegen.flash import array_flash_bytes, code_bytes, kernel_calls, struct_bytes
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.targets import CORTEX_M, STACK_RESERVE_BYTES
from mcuflow.errors import McuflowError
from mcuflow.hw.kernel_code import TargetCode, target_code
from mcuflow.hw.kernels import (
    CODEBOOK_DECODE,
    STEPS_WITHOUT_CODE,
    int16_step,
    kernels_of,
    serves,
)
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.memory.patch_search import PatchRequest, PatchSearch
from mcuflow.memory.patches import find_stages
from mcuflow.memory.planner import plan_memory, unfit_arena
from mcuflow.memory.schedule import StepCache, build_problem, evaluate, is_chain
from mcuflow.nas.space import (
    Arch,
    PartKey,
    SearchSpace,
    arch_graph,
    macs,
    part_graph,
    part_keys,
    smallest,
)
from mcuflow.planning import Analysis, Build, analyze_graph, patch_search, planned_steps
from mcuflow.toolchain.arm import build_cortexm, elf_sizes

FILTERED = frozenset({OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED})
"""Ops whose int8 emitters (codegen/emit.py, no DSP) put their filter (input 1) in the constant
pool as it is (ConstantPool.tensor), beside the arrays of portable_arrays."""


@dataclass(frozen=True)
class Limits:
    """What a candidate must stay within: arena bytes, flash bytes, optionally latency."""

    sram_bytes: int
    flash_bytes: int
    latency_ms: float | None = None

    def allow(self, arena_bytes: int, flash_bytes: int, latency_ms: float) -> bool:
        """True when an arena, a flash and a latency are all within the limits."""
        return (arena_bytes <= self.sram_bytes and flash_bytes <= self.flash_bytes
                and (self.latency_ms is None or latency_ms <= self.latency_ms))


@dataclass(frozen=True)
class Fit:
    """A candidate's figures from mcuflow's planner and cost model, and the verdict."""

    peak_ram_bytes: int
    flash_bytes: int
    latency_ms: float
    macs: int
    fits: bool
    exact: bool = True
    """False when a figure is a bound (see FitCheck). Where the planner's needs of the
    unpatched plan are within the SRAM limit, the figures are its parts' (PartFacts):
    `peak_ram_bytes` the needs (the arena's lower bound), `flash_bytes` and `latency_ms` the
    planner's and the cost model's. Where a patched candidate
    fits, `peak_ram_bytes` is an upper bound of the planner's arena (a greedy placement that
    fits is kept) and the rest are the planner's. Where it does not, `peak_ram_bytes` and
    `flash_bytes` are lower bounds: where a bound rejected it before its plans were made,
    the arena's 0 when the flash bound, checked first, rejected it, and `latency_ms` 0 (not
    estimated); else the arena's is that of its plan's order, the rest the planner's."""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


def limits_for(build: Build, sram_budget: int | None, flash_budget: int | None,
               latency_ms: float | None) -> Limits:
    """The board's SRAM and flash, unless a (smaller) budget is given; latency as given.

    The flash is the one the firmware is linked into (Board.firmware_flash_bytes), as the
    analysis's `flash_capacity`.
    """
    board = build.board
    for name, value, example in (("--sram-budget", sram_budget, 16384),
                                 ("--flash-budget", flash_budget, 65536)):
        if value is not None and value <= 0:
            raise McuflowError(f"{name} must be a positive number of bytes, got {value}",
                               f"e.g. {name} {example}")
    if latency_ms is not None and not (math.isfinite(latency_ms) and latency_ms > 0):
        raise McuflowError(f"--latency-ms must be a positive, finite number of milliseconds, "
                           f"got {latency_ms}", "e.g. --latency-ms 50")
    return Limits(sram_budget if sram_budget is not None else board.sram_bytes,
                  flash_budget if flash_budget is not None else board.firmware_flash_bytes,
                  latency_ms)


def firmware_reserve(build: Build, space: SearchSpace, input_channels: int, classes: int) -> int:
    """SRAM the verification firmware needs beside the arena, measured from a linked ELF.

    The firmware (the QEMU application the found model is verified in) of the space's
    smallest architecture is generated and linked for the build's target: its static RAM
    (data + bss) less the arena, plus the linker script's stack reserve. Neither depends on the
    architecture: no buffer of the application is sized by the layers (the per-layer timer
    marks exist only in profiling builds). The board's SRAM is grown by the arena, and its
    flash by the firmware's estimate, for this link: that architecture need not fit the board
    (on 28 x 28 images it does not fit the NUCLEO-F091RC unpatched; a board of 16 KB flash
    holds none), which the search then says. 0 when the build is not a Cortex-M firmware.
    """
    if build.firmware not in CORTEX_M:
        return 0
    arch = smallest(space, min(space.widths), min(space.resolutions))
    graph = arch_graph(arch, space, input_channels, classes)
    analysis = analyze_graph(graph, build, PatchRequest(enabled=False))
    plan = analysis.plan
    with tempfile.TemporaryDirectory(prefix="mcuflow-reserve-") as scratch:
        project = Path(scratch) / "firmware"
        roomy = replace(build.board, sram_bytes=build.board.sram_bytes + plan.arena_bytes,
                        flash_bytes=build.board.flash_bytes + analysis.report.flash_bytes)
        generate_project(graph, plan, project, target=build.firmware, board=roomy)
        static = elf_sizes(build_cortexm(project, build.firmware)).static_ram_bytes
    return static - plan.arena_bytes + STACK_RESERVE_BYTES


def within_firmware(limits: Limits, reserve: int) -> Limits:
    """`limits` with the firmware's own SRAM (firmware_reserve) taken from the SRAM limit."""
    if reserve >= limits.sram_bytes:
        raise McuflowError(f"the firmware alone needs {reserve:,} B of the {limits.sram_bytes:,}"
                           " B SRAM limit", "raise --sram-budget or choose a larger board")
    return replace(limits, sram_bytes=limits.sram_bytes - reserve)


def request_for(limits: Limits) -> PatchRequest:
    """The planner's request: automatic patches aiming at the SRAM limit.

    Every constant stays on chip: the search designs models that fit the board's own flash.
    """
    return PatchRequest(sram_budget=limits.sram_bytes, out_of_core=False)


def analyze(graph: Graph, build: Build, limits: Limits, cache: StepCache | None = None,
            search: PatchSearch | None = None, settle: bool = False) -> Analysis:
    """mcuflow's analysis with automatic patches aiming at the SRAM limit.

    A `cache` given may hold step work of `graph` done before (see StepCache); a `search`
    given is patch_search's answer for the request; `settle` keeps a greedy placement that
    fits (see analyze_graph).
    """
    return analyze_graph(graph, build, request_for(limits), cache, search, settle)


def fit_of(analysis: Analysis, limits: Limits, model_macs: int, exact: bool = True) -> Fit:
    """The figures and verdict of a full analysis under `limits`."""
    report = analysis.report
    fits = analysis.fits and limits.allow(analysis.plan.arena_bytes, report.flash_bytes,
                                          report.latency_ms_estimate)
    return Fit(analysis.plan.arena_bytes, report.flash_bytes, report.latency_ms_estimate,
               model_macs, fits, exact)


def _short_of_sram(analysis: Analysis, limits: Limits) -> bool:
    """True when the analysis's arena is over a limit, or the board's SRAM over its margin.

    What a smaller arena of the same plan could change: flash and latency do not depend on
    the placement.
    """
    return (analysis.plan.arena_bytes > min(limits.sram_bytes, analysis.patches.budget)
            or not analysis.report.fits_sram)


def _kept_from(graph: Graph) -> int:
    """The first step every patch rewrite keeps as it is: the one after the longest stage.

    The patch search's rewrites replace a prefix of the ops (a stage of find_stages) and keep
    the steps after it; 0 where no stage can run patch by patch.
    """
    stages = find_stages(graph)
    return stages[-1].ops[-1] + 1 if stages else 0


def arena_bound(graph: Graph, build: Build, cache: StepCache | None = None) -> int:
    """A lower bound of the arena of every plan analyze_graph may choose for a chain `graph`.

    The patch search's rewrites (memory/patch_search.py) replace a prefix of the ops (a stage of
    find_stages) and keep the steps after it, with the same tensors live, so the step needs of
    the baseline's planning problem after the longest stage are needs of every option (the
    screening's `rest`); the unpatched plan runs the graph's order (the only one of a chain) and
    needs every step. An arena never is below the needs of its order (schedule.evaluate).
    Whatever the graph, every plan holds its inputs whole (request_for streams none): a
    640 x 480 photo's 90 x 120 x 3 input is over a 32 KB board's SRAM limit without planning.
    The planning problem's step work goes to `cache` when given (see StepCache).
    """
    inputs = sum(graph.tensors[name].nbytes for name in graph.inputs)
    if not is_chain(graph):
        return inputs
    problem = build_problem(graph, dsp=build.dsp, cache=cache)
    needs = evaluate(problem, list(range(len(graph.operators))))[1]
    return max([inputs, *needs[_kept_from(graph):]])


def flash_bound(graph: Graph, build: Build, above: int | None = None) -> int:
    """A lower bound of estimate_flash for `graph` on the build (0 where none is proven).

    For plans with every constant on chip (request_for's). estimate_flash sums the constants
    (every pool array aligned to CONSTANT_ALIGNMENT, plus structs), the code (each kernel
    called and the support routines they share, once, plus the run function) and the runtime
    (the application's, the slack and per-tensor bytes, from the graph's inputs and outputs
    alone). Constants: without the DSP kernels, the int8 emitters of FILTERED ops pool their
    filter as it is and the arrays of portable_arrays, once per distinct value
    (ConstantPool.identity), and a patch rewrite runs the same layers. Code: see _code_bound.

    With `above`, the arrays of portable_arrays are derived only when the rest of the bound
    plus their sizes (_derived_ceiling) exceeds `above`: the bound returned exceeds `above`
    exactly when the whole bound does.
    """
    if build.firmware not in CORTEX_M:
        return 0
    code = target_code(build.firmware)
    layers = [] if build.dsp else _pooled_layers(graph)
    filters = [(c_type_of(tensor), tensor.data)
               for tensor in (graph.tensors[op.inputs[1]] for op in layers)]
    bound = (_pooled_bytes(filters) + _code_bound(graph, code, build.dsp)
             + _runtime(graph, code, build))
    if above is not None and bound + _derived_ceiling(graph, layers) <= above:
        return bound
    return bound + _pooled_bytes([(array.ctype, array.values) for op in layers
                                  for array in portable_arrays(graph, op)])


def _pooled_layers(graph: Graph) -> list[Operator]:
    """The int8 FILTERED layers whose filter and portable_arrays every plan pools.

    Layers with codebook-stored inputs are left out (their filter is decoded, not pooled).
    """
    return [op for op in graph.operators
            if op.kind in FILTERED and not int16_step(graph, op)
            and all(graph.tensors[name].codebook is None for name in op.inputs)]


def _pooled_bytes(arrays: list[tuple[str, np.ndarray]]) -> int:
    """Flash of (C type, values) arrays in the constant pool: one of each ConstantPool.identity."""
    sizes = {ConstantPool.identity(ctype, values): values.nbytes for ctype, values in arrays}
    return sum(array_flash_bytes(size) for size in sizes.values())


def _derived_ceiling(graph: Graph, layers: list[Operator]) -> int:
    """The pooled bytes of portable_arrays of `layers` were no two equal.

    A bias, multiplier and shift of int32 per output channel, or a FULLY_CONNECTED's bias
    and double scale per unit. Were it to fall short of them, flash_bound would only reject
    fewer candidates without planning, never another verdict.
    """
    total = 0
    for op in layers:
        units = graph.tensors[op.outputs[0]].shape[-1]
        fc = op.kind is OpKind.FULLY_CONNECTED
        sizes = (4 * units, 8 * units) if fc else (4 * units,) * 3
        total += sum(map(array_flash_bytes, sizes))
    return total


def _code_bound(graph: Graph, code: TargetCode, dsp: bool) -> int:
    """Code every plan's firmware has: a kernel for each step of the graph that runs code.

    A patch rewrite (memory/patches.py) keeps the steps after its stage and runs every stage
    op at least once, as an op of the same kind on windows of the same tensors. A step of a
    kind that may not run without code (STEPS_WITHOUT_CODE) calls one of the kernels the
    catalogue lists for its kind and width (kernels_of, serves; the codebook decoder only runs
    besides one). Where that is one kernel, its code and support routines count; where
    several, the smallest of them, if none counted already may be the one. The run function
    makes a call of at least one argument per such step (kernel_calls), which
    RunFit.bytes counts at least as one when a call and an argument add bytes.
    """
    running = [op for op in graph.operators if op.kind not in STEPS_WITHOUT_CODE]
    choices = {_kernel_choice(graph, op, dsp) for op in running}
    sizes = {name: code.kernels[name] for choice in choices for name in choice
             if name in code.kernels}
    certain = {name for choice in choices if len(choice) == 1 for name in choice if name in sizes}
    kernels = sum(sizes[name].code for name in certain)
    support = {key for name in certain for key in sizes[name].support}
    claimed = set(certain)
    for choice in sorted((c for c in choices if len(c) > 1), key=sorted):
        if not choice & claimed:
            kernels += min(sizes[name].code if name in sizes else 0 for name in choice)
            claimed |= choice
    run = code.run
    monotone = run.argument >= 0 and run.call + run.argument >= 0
    calls = run.bytes(len(running), len(running)) if monotone else 0
    return kernels + sum(code.support[key] for key in support) + calls


def _kernel_choice(graph: Graph, op: Operator, dsp: bool) -> frozenset[str]:
    """The kernels one of which a step `op` that runs code calls."""
    return _kernels_serving(op.kind, int16_step(graph, op), dsp)


@functools.cache
def _kernels_serving(kind: OpKind, int16: bool, dsp: bool) -> frozenset[str]:
    """The catalogue's kernels a step of `kind` (int16 or not) may call, the decoder aside."""
    return frozenset(record.function for record in kernels_of(kind, dsp)
                     if serves(record, int16) and record.function != CODEBOOK_DECODE)


def _runtime(graph: Graph, code: TargetCode, build: Build) -> int:
    """The runtime bytes estimate_flash adds for the build's application."""
    return _runtime_bytes(len(graph.inputs) + len(graph.outputs), code, build)


def _runtime_bytes(tensors: int, code: TargetCode, build: Build) -> int:
    """The runtime bytes estimate_flash adds for a graph of `tensors` inputs and outputs."""
    return code.runtime.get(build.io, 0) + code.slack + code.per_tensor * max(tensors - 2, 0)


@dataclass(frozen=True)
class PartFacts:
    """One part's steps in its unpatched plan, as the planner, emitter and cost model see them.

    `needs`: the most bytes live at one of its steps (the plan's step_bytes). `arrays` and
    `structs`: its constant arrays and `static const` structs, each as (identity, flash bytes),
    the identity what makes two of them one in the constant pool (an array a struct's field
    names stands for its identity, so structs of equal arrays are one). `functions`: the
    kernels its steps call, in `calls` calls that pass `arguments` arguments. `latencies`: the
    cost model's estimate of each step.
    """

    needs: int
    arrays: frozenset[tuple[object, int]]
    structs: frozenset[tuple[object, int]]
    functions: frozenset[str]
    calls: int
    arguments: int
    latencies: tuple[float, ...]


def part_facts(graph: Graph, build: Build) -> PartFacts:
    """The PartFacts of a part alone (nas.space.part_graph) planned on a Cortex-M build.

    The plan runs the graph's order with the first greedy placement kept (the facts do not
    depend on the placement); the latencies are those mcuflow's analysis reports for the
    kernels the steps call.
    """
    plan = plan_memory(graph, dsp=build.dsp, enough=sys.maxsize)
    code, pool = target_code(build.firmware), ConstantPool()
    layers = [emit_step(EmitContext(graph, plan, step, index, pool, dsp=build.dsp))
              for index, step in enumerate(plan.steps)]
    report = metrics_analyze(graph, build.board, plan.order, plan.arena_bytes,
                             planned=planned_steps(plan),
                             kernels=[layer.functions for layer in layers])
    identity = {array.symbol: ConstantPool.identity(array.ctype, array.values)
                for array in pool.arrays}
    return PartFacts(
        max(plan.step_bytes),
        frozenset((identity[array.symbol], array_flash_bytes(array.nbytes))
                  for array in pool.arrays),
        frozenset(((ctype, tuple((name, _named(value, identity)) for name, value in fields)),
                   struct_bytes(ctype, code, build.firmware))
                  for ctype, fields in pool.structs),
        frozenset().union(*(layer.functions for layer in layers)), *kernel_calls(layers),
        tuple(layer.latency_ms for layer in report.layers))


_WORD = re.compile(r"(\w+)")


def _named(value: int | str, identity: dict[str, object]) -> object:
    """A struct field's value, each array symbol it names (in a cast, say) as its identity.

    Symbols are numbered per graph; identities are the same in every graph.
    """
    if not isinstance(value, str):
        return value
    return tuple(identity.get(word, word) for word in _WORD.split(value))


class FitCheck:
    """The fit of architectures on a build under limits, as mcuflow's planner answers it.

    A candidate's graph is made of parts (nas.space.part_keys: the stem, each block, the head)
    whose steps' facts follow from the part's key alone. Where the planner's needs of the
    unpatched plan (schedule.evaluate's bytes live at each step, the arena's lower bound) are
    within the SRAM limit, the verdict is that of its parts' facts (PartFacts) composed: the
    most needs, the flash of their constants, of the kernels they call (each once) and of the
    run function and runtime, the sum of their latencies. Parts met before come from `tables`;
    a part not met yet is planned alone (nas.space.part_graph: its values, and the input it
    reads, are those it has in every architecture) and recorded. So the verdict does not
    depend on which candidates came before, nor on the worker checking it. The arena is the
    needs bound, which the planner's arena meets on these chains (the tests check it): the
    search plans in full (`figures`) the candidates it reports.

    Other candidates need patches. One whose flash lower bound (flash_bound), then arena lower
    bound (arena_bound), exceeds a limit is rejected without planning; so is one whose patch
    search leaves no plan that could fit (unfit_arena). The patch search stops at the option
    plan_model plans first (search_patches' settle); where that option's plan does not fit, the
    search is made again in full. The rest are analysed with their greedy placement kept where
    it fits (`settle`): the verdict is the planner's, as CP-SAT only makes an arena smaller
    and flash and latency do not depend on the placement. A settled analysis that does not
    fit for lack of SRAM is made again in full. `decided` counts the verdicts of each path.
    """

    def __init__(self, build: Build, limits: Limits, space: SearchSpace, input_channels: int,
                 classes: int) -> None:
        self.build = build
        self.limits = limits
        self.space = space
        self.input_channels = input_channels
        self.classes = classes
        self.decided: Counter[str] = Counter()
        self.tables: dict[PartKey, PartFacts] = {}
        self.runtime = (_runtime_bytes(2, target_code(build.firmware), build)
                        if build.firmware in CORTEX_M else 0)
        """The runtime's flash (estimate_flash's) of arch_graph's one input and one output."""
        self.planned: dict[str, Fit] = {}
        """`figures` by architecture key."""

    def analysis(self, arch: Arch) -> Analysis:
        """The full analysis of `arch` (the planner's figures for a chosen model)."""
        graph = arch_graph(arch, self.space, self.input_channels, self.classes)
        return analyze(graph, self.build, self.limits)

    def figures(self, arch: Arch) -> Fit:
        """The planner's exact figures and verdict for `arch` (its full analysis, made once)."""
        key = arch.key()
        if key not in self.planned:
            self.planned[key] = fit_of(self.analysis(arch), self.limits,
                                       macs(arch, self.space, self.input_channels,
                                            self.classes))
        return self.planned[key]

    @property
    def composes(self) -> bool:
        """True when verdicts are composed from parts (a Cortex-M build: see the class)."""
        return self.build.firmware in CORTEX_M

    def missing_parts(self, archs: Sequence[Arch]) -> list[PartKey]:
        """The parts of `archs` the tables lack, each once, in order of first use."""
        keys = (key for arch in archs for key in part_keys(arch, self.space))
        return list(dict.fromkeys(key for key in keys if key not in self.tables))

    def plan_part(self, key: PartKey) -> PartFacts:
        """The facts of the part `key`, planned alone (nas.space.part_graph)."""
        return part_facts(part_graph(key, self.space, self.input_channels, self.classes),
                          self.build)

    def record(self, key: PartKey, facts: PartFacts) -> None:
        """Add a part's facts (plan_part's, made by any copy of this fit check) to the tables."""
        self.tables.setdefault(key, facts)

    def composed(self, arch: Arch) -> Fit | None:
        """The verdict of `arch`'s parts, where the tables hold them all and its needs fit.

        None where a part is missing or the needs are over the SRAM limit (see the class).
        """
        keys = part_keys(arch, self.space)
        if not all(key in self.tables for key in keys):
            return None
        fit = self._composed(keys, macs(arch, self.space, self.input_channels, self.classes))
        if fit.peak_ram_bytes > self.limits.sram_bytes:
            return None
        self.decided["parts"] += 1
        return fit

    def __call__(self, arch: Arch) -> Fit:
        """The figures and verdict for `arch` (see the class)."""
        return self.check([arch], run_here(self))[0][0]

    def check(self, archs: Sequence[Arch], run: Runner) -> tuple[list[Fit], float]:
        """The fit of each of the distinct `archs` (see the class), and the checks' CPU seconds.

        `run` does the units of work (timed_part, timed_in_full) on a copy of this fit check,
        here or on workers, and gives their results in order. On a build that composes
        verdicts, the parts the tables lack are planned first, each once, and recorded; the
        archs whose needs then fit are composed here, and the rest are checked in full. The
        seconds are each unit's own CPU time, so that their sum gives the rate per core
        whatever runs them.
        """
        seconds, found = 0.0, dict[str, Fit]()
        if self.composes:
            missing = self.missing_parts(archs)
            for key, (facts, spent) in zip(missing, run(timed_part, [(key,) for key in missing]),
                                           strict=True):
                self.record(key, facts)
                seconds += spent
            for arch in archs:
                started = time.process_time()
                fit = self.composed(arch)
                seconds += time.process_time() - started
                if fit is not None:
                    found[arch.key()] = fit
        rest = [arch for arch in archs if arch.key() not in found]
        for arch, (fit, spent) in zip(rest, run(timed_in_full, [(arch,) for arch in rest]),
                                      strict=True):
            found[arch.key()] = fit
            seconds += spent
        return [found[arch.key()] for arch in archs], seconds

    def in_full(self, arch: Arch) -> Fit:
        """The verdict of `arch`'s graph: a bound's, the patch search's or the planner's."""
        model_macs = macs(arch, self.space, self.input_channels, self.classes)
        graph = arch_graph(arch, self.space, self.input_channels, self.classes)
        cache = StepCache()
        flash = flash_bound(graph, self.build, self.limits.flash_bytes)
        if flash > self.limits.flash_bytes:
            self.decided["flash bound"] += 1
            return Fit(0, flash, 0.0, model_macs, False, exact=False)
        arena = arena_bound(graph, self.build, cache)
        if arena > self.limits.sram_bytes:
            self.decided["arena bound"] += 1
            return Fit(arena, flash, 0.0, model_macs, False, exact=False)
        request = request_for(self.limits)
        search = patch_search(graph, self.build, request, cache, settle=True)
        least = unfit_arena(graph, search, request)
        if least is not None:
            self.decided["patch search"] += 1
            return Fit(least, flash, 0.0, model_macs, False, exact=False)
        self.decided["planner"] += 1
        settled = analyze(graph, self.build, self.limits, cache, search, settle=True)
        if search.settled and settled.plan.arena_bytes > search.budget:
            search = patch_search(graph, self.build, request, cache)
            settled = analyze(graph, self.build, self.limits, cache, search, settle=True)
        fit = fit_of(settled, self.limits, model_macs, exact=False)
        if fit.fits:
            return fit
        if not _short_of_sram(settled, self.limits):
            return replace(fit, peak_ram_bytes=settled.plan.lower_bound_bytes)
        return fit_of(analyze(graph, self.build, self.limits, cache, search), self.limits,
                      model_macs)

    def _composed(self, keys: tuple[PartKey, ...], model_macs: int) -> Fit:
        """The verdict of the parts' facts (see the class)."""
        facts = [self.tables[key] for key in keys]
        code = code_bytes(frozenset().union(*(fact.functions for fact in facts)),
                          sum(fact.calls for fact in facts),
                          sum(fact.arguments for fact in facts),
                          target_code(self.build.firmware), self.build.firmware)
        constants = sum(size for _, size in frozenset().union(
            *(fact.arrays | fact.structs for fact in facts)))
        arena = max(fact.needs for fact in facts)
        flash = constants + code + self.runtime
        latency = sum(latency for fact in facts for latency in fact.latencies)
        return Fit(arena, flash, latency, model_macs, self.limits.allow(arena, flash, latency),
                   exact=False)


Runner = Callable[[Callable[..., Any], list[tuple[Any, ...]]], list[Any]]
"""Runs a unit of work `function(fitcheck, *item)` for each item, results in item order."""


def run_here(fitcheck: FitCheck) -> Runner:
    """A Runner doing each unit on `fitcheck` in this process, one after another."""
    return lambda function, items: [function(fitcheck, *item) for item in items]


def timed_part(fitcheck: FitCheck, key: PartKey) -> tuple[PartFacts, float]:
    """One part planned alone (FitCheck.plan_part), and its CPU seconds."""
    started = time.process_time()
    facts = fitcheck.plan_part(key)
    return facts, time.process_time() - started


def timed_in_full(fitcheck: FitCheck, arch: Arch) -> tuple[Fit, float]:
    """One architecture checked in full (FitCheck.in_full), and its CPU seconds."""
    started = time.process_time()
    fit = fitcheck.in_full(arch)
    return fit, time.process_time() - started
