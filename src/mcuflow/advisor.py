"""The fit advisor: the ways to make a model fit its board, each planned and ranked by its cost."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from mcuflow.errors import McuflowError
from mcuflow.ir.graph import Graph
from mcuflow.memory.patch_search import Objective, PatchRequest
from mcuflow.memory.schedule import best_order, build_problem, evaluate
from mcuflow.passes.resize_input import ResizeError, image_size, resize_input
from mcuflow.planning import Analysis, Build, analyze_graph
from mcuflow.quant.codebook import compress_graph
from mcuflow.quant.report import dequantize, sqnr_db
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.host import random_inputs

OPTION_NAMES = ("patches", "patches-smallest", "streamed", "order", "codebook-256",
                "codebook-16", "resolution")
"""Every option the advisor weighs, by the name --fit takes."""
CODEBOOK_SIZES = (256, 16)
"""Centroids per layer of the codebook options: 256 keeps every int8 value (Huffman codes
only, exact), 16 clusters them (lossy)."""
SQNR_RUNS = 3
"""Random inputs on which a lossy option's outputs are compared with the model's."""
EXTERNAL_TIER_NOTE = ("external tier: not weighed here, --external auto applies it: constants "
                      "move to the board's external storage when the firmware overflows flash, "
                      "and a cached patch stage spills activations there when nothing else "
                      "fits SRAM")


class FitMode(Enum):
    """What --fit does."""

    OFF = "off"
    """The model as the other options say (the advisor only reports)."""
    AUTO = "auto"
    """When the model does not fit: the best option that fits, exact ones first."""
    OPTION = "option"
    """One option, named."""


@dataclass(frozen=True)
class FitRequest:
    """The user's --fit: off, auto, or the name of one of the advisor's options."""

    mode: FitMode = FitMode.OFF
    option: str | None = None

    @classmethod
    def parse(cls, text: str) -> FitRequest:
        """--fit takes off, auto or the name of an option of the fit advisor."""
        if text in ("off", "auto"):
            return cls(FitMode(text))
        if text in OPTION_NAMES:
            return cls(FitMode.OPTION, text)
        raise McuflowError(f"--fit takes off, auto or an option's name ({', '.join(OPTION_NAMES)})"
                           f", not {text!r}", "`mcuflow analyze MODEL` lists the options of a "
                           "model that does not fit, ranked; --fit auto applies the best")


@dataclass(frozen=True)
class FitOption:
    """One way to run the model, planned on the board, with its figures.

    `overhead` is its predicted instructions over those of the model as asked without patches
    (negative: fewer); `exact` is true when its outputs equal the model's to the bit.
    `applied` marks what every plan already does (the operator order); `needs_reader` an
    option whose generated code reads the input through the user's input reader. `analysis`
    is what --fit runs when it applies the option.
    """

    name: str
    description: str
    exact: bool
    fits: bool
    peak_bytes: int
    flash_bytes: int
    instructions: float
    overhead: float
    latency_ms: float
    macs: int
    flags: tuple[str, ...]
    detail: str
    over_bytes: int = 0
    """Bytes beyond the SRAM budget plus bytes beyond the flash (0 when it fits)."""
    applied: bool = False
    needs_reader: bool = False
    sqnr_db: float | None = None
    flash_saved_bytes: int | None = None
    input_shape: tuple[int, ...] | None = None
    analysis: Analysis | None = field(default=None, compare=False, repr=False)

    def rank(self) -> tuple[bool, bool, bool, float, int]:
        """Fitting first, exact before lossy, no input reader needed, then fewer instructions.

        Of the options that do not fit, the nearest to fitting comes first (fewest bytes over),
        exact before lossy.
        """
        if not self.fits:
            return (True, not self.exact, False, 0.0, self.over_bytes)
        return (False, not self.exact, self.needs_reader, self.overhead, self.peak_bytes)

    def summary(self) -> str:
        """One line: the option, its peak and flash, its predicted cost, whether it fits."""
        kind = "exact" if self.exact else "lossy"
        verdict = "fits" if self.fits else "does not fit"
        return (f"{self.name} ({kind}): {self.description}: peak {self.peak_bytes:,} B, flash "
                f"{self.flash_bytes:,} B, {100 * self.overhead:+.1f} % instructions "
                f"(predicted); {verdict}")

    def to_json(self) -> dict[str, object]:
        """The option as plain JSON types (the analysis left out)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "analysis"}
        data["flags"] = list(self.flags)
        data["instructions"] = round(self.instructions)
        data["overhead_pct"] = 100 * data.pop("overhead")
        data["input_shape"] = list(self.input_shape) if self.input_shape else None
        data["sqnr_db"] = self.sqnr_db if self.sqnr_db is None or math.isfinite(
            self.sqnr_db) else None
        return data


@dataclass(frozen=True)
class Advice:
    """The advisor's options, ranked best first, and the options it could not offer, and why."""

    options: tuple[FitOption, ...]
    notes: tuple[str, ...]

    @property
    def best(self) -> FitOption | None:
        """The first option of the ranking (it fits, if any does)."""
        return self.options[0] if self.options else None

    @property
    def fitting(self) -> FitOption | None:
        """The best option that fits, or None."""
        best = self.best
        return best if best is not None and best.fits else None

    def named(self, name: str) -> FitOption | None:
        """The option called `name`, if the advisor could offer it."""
        return next((option for option in self.options if option.name == name), None)


@dataclass(frozen=True)
class Fitted:
    """A model analysed as asked and, with --fit, as the advisor changed it.

    `analysis` is what the command goes on with: `asked`, or the analysis of the option
    `applied`; `advice` is the ranking, when it was weighed.
    """

    build: Build
    asked: Analysis
    analysis: Analysis
    advice: Advice | None = None
    applied: FitOption | None = None

    @property
    def changed_model(self) -> bool:
        """True when a lossy option changed what the model computes."""
        return self.applied is not None and not self.applied.exact


def fit_analysis(asked: Analysis, build: Build, request: PatchRequest, fit: FitRequest, *,
                 advise: bool = False) -> Fitted:
    """Apply --fit to a model analysed as asked.

    off: the model as asked, with the advice when it does not fit and `advise`; auto: when it
    does not fit, the best option that fits (none: the model as asked, with the advice); an
    option by name: that option (McuflowError when the advisor cannot offer it).
    """
    if fit.mode is FitMode.OPTION:
        advice = advise_fit(asked, build, request, frozenset({fit.option}))
        option = advice.named(fit.option)
        if option is None:
            reasons = "; ".join(advice.notes) or "it does not apply"
            raise McuflowError(f"--fit {fit.option}: not available for '{asked.graph.name}': "
                               f"{reasons}", "`mcuflow analyze MODEL` lists the options")
        return Fitted(build, asked, option.analysis, None, option)
    if asked.fits or (fit.mode is FitMode.OFF and not advise):
        return Fitted(build, asked, asked)
    advice = advise_fit(asked, build, request)
    chosen = advice.fitting if fit.mode is FitMode.AUTO else None
    return Fitted(build, asked, chosen.analysis if chosen else asked, advice, chosen)


# --- weighing the options -----------------------------------------------------------------------


@dataclass
class _Context:
    """What every option is weighed against: the model as asked, the build, the request."""

    asked: Analysis
    build: Build
    request: PatchRequest
    wanted: frozenset[str]
    cache: dict[tuple[int, PatchRequest], Analysis] = field(default_factory=dict)

    @property
    def graph(self) -> Graph:
        return self.asked.graph

    @property
    def auto(self) -> PatchRequest:
        """Patches allowed where needed (the fewest instructions that fit), as asked otherwise."""
        r = self.request
        return PatchRequest(sram_budget=r.sram_budget, max_overhead=r.max_overhead,
                            streamed_input=r.streamed_input, out_of_core=r.out_of_core,
                            encrypt_external=r.encrypt_external)

    @property
    def reference(self) -> float:
        """Predicted instructions of the model as asked without patches."""
        return self.asked.patches.baseline.instructions

    def analyse(self, graph: Graph, request: PatchRequest) -> Analysis:
        """analyze_graph, once per graph and request."""
        key = (id(graph), request)
        if key not in self.cache:
            self.cache[key] = analyze_graph(graph, self.build, request)
        return self.cache[key]

    def option(self, name: str, description: str, analysis: Analysis, detail: str, *,
               exact: bool = True, applied: bool = False, needs_reader: bool = False,
               sqnr: float | None = None, flash_saved: int | None = None,
               input_shape: tuple[int, ...] | None = None) -> FitOption:
        """The option running `analysis`, its figures taken from it."""
        chosen = analysis.patches.chosen.instructions
        overhead = chosen / self.reference - 1 if self.reference else 0.0
        report = analysis.report
        over = (max(0, -report.sram_margin_bytes,
                    analysis.plan.arena_bytes - analysis.patches.budget)
                + max(0, -report.flash_margin_bytes))
        return FitOption(name, description, exact, analysis.fits, analysis.plan.arena_bytes,
                         report.flash_bytes, chosen, overhead, report.latency_ms_estimate,
                         report.macs, () if applied else ("--fit", name), detail, over,
                         applied, needs_reader, sqnr, flash_saved, input_shape, analysis)


def advise_fit(asked: Analysis, build: Build, request: PatchRequest,
               wanted: frozenset[str] | None = None) -> Advice:
    """Every option of OPTION_NAMES (or only those `wanted`) planned, ranked by FitOption.rank.

    Each option is judged with patches allowed where they help (the fewest instructions that
    fit the budget), so that an option fixing the flash still fits the SRAM. Codebook weights
    are weighed when the flash does not fit, a smaller resolution when the SRAM does not;
    both when named in `wanted`.
    """
    context = _Context(asked, build, request, wanted or frozenset(OPTION_NAMES))
    context.cache[(id(asked.graph), request)] = asked
    options, notes = [], []
    for weigh in (_patches, _streamed, _order, _codebook, _resolution):
        try:
            found = list(weigh(context))
        except McuflowError as error:
            found = [f"{weigh.__name__.strip('_')}: not available: {error.message}"]
        options += [o for o in found if isinstance(o, FitOption) and o.name in context.wanted]
        notes += [note for note in found if isinstance(note, str)]
    if wanted is None:
        notes.append(EXTERNAL_TIER_NOTE)
    return Advice(tuple(sorted(options, key=FitOption.rank)), tuple(notes))


def _patches(context: _Context) -> Iterator[FitOption | str]:
    """The fewest instructions that fit, and the smallest peak within the overhead limit.

    When nothing fits, the first is the second (the search then keeps the smallest peak within
    the limit), which is left out unless it alone is wanted.
    """
    if not {"patches", "patches-smallest"} & context.wanted:
        return
    fit = context.analyse(context.graph, context.auto)
    smallest = fit if not fit.fits else context.analyse(context.graph, dataclasses.replace(
        context.auto, objective=Objective.SMALLEST))
    fewest, least = fit.patches.chosen.choice, smallest.patches.chosen.choice
    within = f"within +{100 * context.request.max_overhead:g} % instructions"
    limit = f"the smallest peak {within}"
    if fewest is None and least is None:
        yield f"patches: no patch stage of '{context.graph.name}' lowers its peak {within}"
    if fewest is not None:
        why = "the fewest instructions that fit" if fit.fits else f"nothing fits: {limit}"
        yield context.option("patches", fewest.describe(), fit,
                             f"{why}, what --patches auto chooses; {_halo(fit)}")
    if least is not None and (least != fewest or "patches" not in context.wanted):
        yield context.option("patches-smallest", least.describe(), smallest,
                             f"{limit}, what --max-overhead alone chooses; {_halo(smallest)}")


def _stage(analysis: Analysis) -> str:
    choice = analysis.patches.chosen.choice
    return f"patches: {choice.describe()}" if choice else "no patches"


def _halo(analysis: Analysis) -> str:
    rows, cols, tile_rows, tile_cols = analysis.patches.chosen.halo
    return f"largest patch: a {rows}x{cols} input window for a {tile_rows}x{tile_cols} tile"


def _streamed(context: _Context) -> Iterator[FitOption | str]:
    """The input image read window by window through the user's input reader."""
    if "streamed" not in context.wanted or context.request.streamed_input:
        return
    if any(len(context.graph.tensors[name].shape) != 4 for name in context.graph.inputs):
        yield "streamed: the model's input is not an NHWC image"
        return
    streamed = context.analyse(context.graph, dataclasses.replace(context.auto,
                                                                  streamed_input=True))
    stage = streamed.patches.chosen.choice
    yield context.option(
        "streamed", "the input image read window by window, not held in the arena", streamed,
        "your code supplies input windows through the input reader (--input streamed)"
        + (f"; {_stage(streamed)}" if stage else ""), needs_reader=True)


def _order(context: _Context) -> Iterator[FitOption | str]:
    """The planner's searched operator order, without patches: what reordering gives."""
    if "order" not in context.wanted:
        return
    unpatched = context.analyse(context.graph, dataclasses.replace(context.auto, enabled=False))
    problem = build_problem(context.graph, dsp=context.build.dsp)
    own = evaluate(problem, list(range(len(context.graph.operators))))[0]
    searched = evaluate(problem, best_order(problem))[0]
    yield context.option(
        "order", "operator order searched, no patches", unpatched,
        f"peak at least {own:,} B in the graph's own order, {searched:,} B in the searched "
        f"one (lower bounds); every plan searches the order", applied=True)


def _codebook(context: _Context) -> Iterator[FitOption | str]:
    """Conv and FC weights as codebooks: Huffman codes only (exact), 16 centroids (lossy).

    Weighed when the flash does not hold the model, or when named alone.
    """
    names = [f"codebook-{size}" for size in CODEBOOK_SIZES]
    if not set(names) & context.wanted:
        return
    if context.asked.report.fits_flash and not context.wanted <= set(names):
        yield "codebook weights: not weighed, the flash holds the weights"
        return
    for name, size in zip(names, CODEBOOK_SIZES, strict=True):
        if name in context.wanted:
            yield _codebook_option(context, name, size)


def _codebook_option(context: _Context, name: str, size: int) -> FitOption | str:
    graph = context.graph
    compressed = compress_graph(graph, size)
    changed = [n for n, t in compressed.tensors.items()
               if t.codebook is not None and graph.tensors[n].codebook is None]
    if not changed:
        return f"{name}: no layer's weights get smaller as a codebook"
    analysis = context.analyse(compressed, context.auto)
    exact = all(np.array_equal(compressed.tensors[n].data, graph.tensors[n].data)
                for n in changed)
    sqnr = None if exact else output_sqnr_db(graph, compressed)
    saved = context.asked.report.flash_bytes - analysis.report.flash_bytes
    decoding = analysis.patches.baseline.instructions / context.reference - 1
    what = ("Huffman codes of the int8 weights" if exact
            else f"int8 weights clustered to {size} values, Huffman-coded")
    quality = ("lossless" if exact
               else f"output SQNR {sqnr:.1f} dB against the int8 model on {SQNR_RUNS} random "
                    "inputs")
    return context.option(
        name, f"codebook weights ({len(changed)} layers): {what}", analysis,
        f"{saved:,} B of flash saved, decoding {100 * decoding:+.1f} % instructions; {quality}",
        exact=exact, sqnr=sqnr, flash_saved=saved)


def output_sqnr_db(graph: Graph, changed: Graph, runs: int = SQNR_RUNS, seed: int = 0) -> float:
    """SQNR of `changed`'s outputs against `graph`'s (real values) on random inputs."""
    inputs = random_inputs(graph, runs, seed)
    reference, other = Interpreter(graph), Interpreter(changed)
    signal = noise = 0.0
    for run in range(runs):
        sample = [x[run] for x in inputs]
        pairs = zip(graph.outputs, reference.run(sample).outputs, other.run(sample).outputs,
                    strict=True)
        for name, expected, found in pairs:
            quant = graph.tensors[name].quant
            real = dequantize(expected, quant) if quant else expected.astype(np.float64)
            got = dequantize(found, quant) if quant else found.astype(np.float64)
            signal += float(np.sum(real ** 2))
            noise += float(np.sum((real - got) ** 2))
    return sqnr_db(signal, noise)


def _resolution(context: _Context) -> Iterator[FitOption | str]:
    """The largest input resolution, in steps of 16 (or 8) pixels, at which the model fits.

    When none does, the smallest resolution it runs at, to show how near it comes.
    """
    if "resolution" not in context.wanted:
        return
    if _sram_fits(context.asked) and context.wanted != {"resolution"}:
        yield "resolution: not weighed, the SRAM holds the activations"
        return
    try:
        sizes = _sizes(context.graph)
    except ResizeError as error:
        yield f"resolution: {error.message}"
        return
    yield _resolution_option(context, _largest_fitting(context, sizes))


def _resolution_option(context: _Context, analysis: Analysis) -> FitOption:
    shape = analysis.graph.tensors[analysis.graph.inputs[0]].shape
    height, width = image_size(context.graph)
    macs = analysis.report.macs
    change = macs / context.asked.report.macs - 1 if context.asked.report.macs else 0.0
    stage = f"; {_stage(analysis)}" if analysis.patches.chosen.choice else ""
    return context.option(
        "resolution", f"input {shape[1]}x{shape[2]} instead of {height}x{width}", analysis,
        f"MACs {macs:,} ({100 * change:+.0f} %); the accuracy changes: measure it on your data, "
        f"fine-tune at this size{stage}", exact=False, input_shape=shape)


def _sram_fits(analysis: Analysis) -> bool:
    return analysis.report.fits_sram and analysis.plan.arena_bytes <= analysis.patches.budget


def _sizes(graph: Graph) -> list[Graph]:
    """The graph at every smaller resolution it runs at, largest first (ResizeError: none).

    Steps of 16 pixels along the height when both sides are multiples of 16, else of 8; the
    width keeps the aspect ratio.
    """
    height, width = image_size(graph)
    step = 16 if height % 16 == 0 and width % 16 == 0 else 8
    found, refused = [], None
    for new_h in range(height - step, 0, -step):
        try:
            found.append(resize_input(graph, new_h, max(1, round(width * new_h / height))))
        except ResizeError as error:
            refused = refused or error
    if not found:
        raise refused or ResizeError(f"'{graph.name}' is too small to run smaller",
                                     "a smaller resolution needs an input above 8 pixels")
    return found


def _largest_fitting(context: _Context, sizes: list[Graph]) -> Analysis:
    """The analysis at the largest of `sizes` that fits (none: at the smallest).

    Bisection over the sizes (largest first), assuming a smaller input never needs more
    memory, from the size _guess names: about log2(len(sizes)) of them are planned, fewer when
    the guess is right.
    """
    low, high = 0, len(sizes)
    middle = _guess(context, sizes)
    while low < high:
        if context.analyse(sizes[middle], context.auto).fits:
            high = middle
        else:
            low = middle + 1
        middle = (low + high) // 2
    return context.analyse(sizes[min(low, len(sizes) - 1)], context.auto)


def _guess(context: _Context, sizes: list[Graph]) -> int:
    """The first size whose pixels shrink the model's arena, in proportion, into the budget."""
    arena = context.asked.plan.arena_bytes
    budget = context.asked.patches.budget
    pixels = _pixels(context.graph)
    return next((k for k, graph in enumerate(sizes)
                 if arena * _pixels(graph) <= budget * pixels), len(sizes) - 1)


def _pixels(graph: Graph) -> int:
    _, height, width, _ = graph.tensors[graph.inputs[0]].shape
    return height * width
