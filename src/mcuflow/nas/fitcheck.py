"""Whether an architecture fits a board: mcuflow's planner and cost model, answered fast."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mcuflow.errors import McuflowError
from mcuflow.ir.graph import Graph
from mcuflow.ir.verify import GraphInvariantError
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.memory.patches import PatchError
from mcuflow.nas.space import Arch, SearchSpace, arch_graph, macs
from mcuflow.planning import Analysis, Build, analyze_graph


@dataclass(frozen=True)
class Limits:
    """What a candidate must stay within: arena bytes, flash bytes, optionally latency."""

    sram_bytes: int
    flash_bytes: int
    latency_ms: float | None = None


@dataclass(frozen=True)
class Fit:
    """A candidate's figures from mcuflow's planner and cost model, and the verdict."""

    peak_ram_bytes: int
    flash_bytes: int
    latency_ms: float
    macs: int
    fits: bool

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


def limits_for(build: Build, sram_budget: int | None, flash_budget: int | None,
               latency_ms: float | None) -> Limits:
    """The board's SRAM and flash, unless a (smaller) budget is given; latency as given."""
    board = build.board
    for name, value in (("--sram-budget", sram_budget), ("--flash-budget", flash_budget)):
        if value is not None and value <= 0:
            raise McuflowError(f"{name} must be a positive number of bytes, got {value}",
                               "e.g. --sram-budget 16384")
    if latency_ms is not None and latency_ms <= 0:
        raise McuflowError(f"--latency must be positive milliseconds, got {latency_ms}",
                           "e.g. --latency 50")
    return Limits(sram_budget if sram_budget is not None else board.sram_bytes,
                  flash_budget if flash_budget is not None else board.flash_bytes, latency_ms)


def request_for(limits: Limits) -> PatchRequest:
    """The planner's request: automatic patches aiming at the SRAM limit."""
    return PatchRequest(sram_budget=limits.sram_bytes)


def analyze(graph: Graph, build: Build, limits: Limits) -> Analysis:
    """mcuflow's analysis with automatic patches aiming at the SRAM limit.

    Where the patch rewrite fails on a graph (PatchError, GraphInvariantError: mcuflow defects), the
    model is analysed unpatched, as `--patches off` deploys it.
    """
    try:
        return analyze_graph(graph, build, request_for(limits))
    except (GraphInvariantError, PatchError):
        return analyze_graph(graph, build, PatchRequest(enabled=False,
                                                        sram_budget=limits.sram_bytes))


def fit_of(analysis: Analysis, limits: Limits, model_macs: int) -> Fit:
    """The figures and verdict of a full analysis under `limits`."""
    report = analysis.report
    fits = (analysis.fits and analysis.plan.arena_bytes <= limits.sram_bytes
            and report.flash_bytes <= limits.flash_bytes
            and (limits.latency_ms is None or report.latency_ms_estimate <= limits.latency_ms))
    return Fit(analysis.plan.arena_bytes, report.flash_bytes, report.latency_ms_estimate,
               model_macs, fits)


class FitCheck:
    """The fit of architectures on a build under limits, as mcuflow's planner answers it."""

    def __init__(self, build: Build, limits: Limits, space: SearchSpace, input_channels: int,
                 classes: int) -> None:
        self.build = build
        self.limits = limits
        self.space = space
        self.input_channels = input_channels
        self.classes = classes

    def analysis(self, arch: Arch) -> Analysis:
        """The full analysis of `arch` (the planner's figures for a chosen model)."""
        graph = arch_graph(arch, self.space, self.input_channels, self.classes)
        return analyze(graph, self.build, self.limits)

    def __call__(self, arch: Arch) -> Fit:
        """The planner's figures and verdict for `arch`."""
        model_macs = macs(arch, self.space, self.input_channels, self.classes)
        return fit_of(self.analysis(arch), self.limits, model_macs)
