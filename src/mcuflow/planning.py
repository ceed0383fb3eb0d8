"""A graph planned and analysed for a board: patch choice, memory plan, flash estimate, report."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.analysis.metrics import PlannedSteps, Report, analyze
from mcuflow.codegen.firmware import Io
from mcuflow.codegen.flash import estimate_flash
from mcuflow.codegen.render import emit_layers
from mcuflow.codegen.targets import CORTEX_M, get_target
from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board
from mcuflow.ir.graph import Graph
from mcuflow.memory.patch_search import PatchRequest, PatchSearch
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_model


@dataclass(frozen=True)
class Build:
    """What a model is planned for: the board, the target built for and the application.

    `target` None builds for the board's own core (with the Arm DSP kernels where it has the
    extension); `io` is the Cortex-M application the flash estimate counts.
    """

    board: Board
    target: str | None = None
    io: Io = Io.SEMIHOSTING

    @property
    def firmware(self) -> str:
        """The target whose kernels run: `target`, else the board's core."""
        return self.target or self.board.core.value

    @property
    def core(self) -> str:
        """The Cortex-M core whose fitted kernel costs weigh instructions."""
        return self.firmware if self.firmware in CORTEX_M else self.board.core.value

    @property
    def dsp(self) -> bool:
        """True when the Arm DSP kernels may run (scratch is sized for them)."""
        return get_target(self.target).dsp if self.target else self.board.dsp


@dataclass(frozen=True)
class Analysis:
    """A model analysed on a board: the graph, its memory plan and the report.

    `graph` is the model; `plan.graph` is what runs: the model, or with a patch stage a
    rewrite of it (`patches` holds the search's options and choice).
    """

    graph: Graph
    board: Board
    plan: Plan
    report: Report
    patches: PatchSearch

    @property
    def fits(self) -> bool:
        """The board's SRAM and flash hold the model, and the arena is within the budget.

        The budget is --sram-budget when given, else the board's SRAM.
        """
        return self.report.fits and self.plan.arena_bytes <= self.patches.budget


def analyze_graph(graph: Graph, build: Build, request: PatchRequest) -> Analysis:
    """Plan memory for `graph` (patches as `request` says) and report its costs on the board.

    The scratch buffers are sized for the kernels of the build's target. On a Cortex-M target
    the flash is the linked firmware's, estimated for the build's application; on others, the
    constants only.
    """
    board = build.board
    if request.streamed_input:
        _check_streamable(graph)
    state = sum(graph.tensor(name).nbytes for name in graph.variables())  # outside the arena
    plan, search = plan_model(graph, request, board.sram_bytes - state, build.core,
                              dsp=build.dsp)
    executed = plan.graph
    layers, pool = emit_layers(executed, plan, build.dsp)
    flash = (estimate_flash(executed, layers, pool, build.firmware, build.io)
             if build.firmware in CORTEX_M else None)
    report = analyze(executed, board, order=plan.order, peak_ram_bytes=plan.arena_bytes,
                     planned=planned_steps(plan), kernels=[layer.functions for layer in layers],
                     flash=flash)
    return Analysis(graph, board, plan, report, search)


def _check_streamable(graph: Graph) -> None:
    """--input streamed reads images: every graph input must be NHWC."""
    flat = [name for name in graph.inputs if len(graph.tensors[name].shape) != 4]
    if flat:
        shapes = ", ".join(f"'{n}' {graph.tensors[n].shape}" for n in flat)
        raise McuflowError(f"--input streamed reads NHWC images; input {shapes} is not one",
                           "drop --input streamed: the input stays in the arena")


def planned_steps(plan: Plan) -> PlannedSteps:
    """The planner's per-step live bytes and scratch sizes, for the analysis."""
    scratch = tuple(plan.buffers[s.scratch].size if s.scratch else 0 for s in plan.steps)
    return PlannedSteps(tuple(plan.step_bytes), scratch)
