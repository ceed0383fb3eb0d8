"""A graph planned and analysed for a board: patch choice, memory plan, flash estimate, report."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.analysis.metrics import PlannedSteps, Report, analyze, with_keys
from mcuflow.codegen.context import ConstantPool, LayerCode
from mcuflow.codegen.external import ExternalLayout, external_layout
from mcuflow.codegen.external_crypto import image_bytes
from mcuflow.codegen.firmware import Io
from mcuflow.codegen.flash import SpillKind, estimate_flash, external_code
from mcuflow.codegen.render import emit_layers, spill_region
from mcuflow.codegen.targets import CORTEX_M, STACK_RESERVE_BYTES, get_target
from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board, TierKind
from mcuflow.hw.external_crypto import crypto_ms_per_byte, crypto_ram_bytes
from mcuflow.hw.kernel_code import FlashEstimate
from mcuflow.hw.kernels import FC_FEW_PASSES, FC_FEW_UNITS
from mcuflow.hw.storage_io import TAG_BYTES, ChunkRead, ExternalReads, spill_cost
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import state_bytes
from mcuflow.memory.patch_search import PatchRequest, PatchSearch, SpillTarget, search_patches
from mcuflow.memory.patches import spill_traffic
from mcuflow.memory.plan import ExternalWeights, Plan
from mcuflow.memory.planner import plan_model
from mcuflow.memory.schedule import StepCache
from mcuflow.memory.tiers import (
    choose_steps,
    chunk_limit,
    external_tier,
    spill_tier,
    spills_to_memory,
)
from mcuflow.passes.split_channels import split_wide_layers

FLASH_PASSES = 4
"""Rounds of step choice an out-of-core plan gets to bring the flash estimate within flash (the
arrays' alignment makes the flash freed differ from the chunks' bytes by a few bytes)."""
FLASH_MARGIN = 0.02
"""Share of the board's flash an out-of-core plan leaves free: the flash estimate is within 3 %
of the linked ELF, and moving a little more to external storage is cheap."""
SPLIT_SHARE = 0.75
"""A split layer's group of weights takes at most this share of a staging half: the rest holds
its bias, requantisation constants and the kernels' weight packing."""


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


def analyze_graph(graph: Graph, build: Build, request: PatchRequest,
                  cache: StepCache | None = None, search: PatchSearch | None = None,
                  settle: bool = False) -> Analysis:
    """Plan memory for `graph` (patches as `request` says) and report its costs on the board.

    The scratch buffers are sized for the kernels of the build's target. On a Cortex-M target
    the flash is the linked firmware's, estimated for the build's application; on others, the
    constants only. When the firmware does not fit the board's flash and the board has an
    external non-volatile tier, the plan reads some steps' constants from it (out_of_core).
    A `cache` given may hold step work of `graph` done before (see StepCache); a `search`
    given is patch_search's answer for these arguments, planned as is where constants stay
    on chip. With `settle` a greedy placement within the budget is kept (see plan_model):
    the verdict is the same, the arena may be larger.
    """
    if request.streamed_input:
        _check_streamable(graph)
    state = state_bytes(graph)
    constants = sum(t.nbytes for t in graph.tensors.values() if t.is_constant)
    at_once = request.out_of_core and constants > build.board.firmware_flash_bytes
    if at_once and (fitted := out_of_core(graph, build, request, state)) is not None:
        return fitted
    search = search or patch_search(graph, build, request, cache)
    plan, search = plan_model(graph, request, build.board.sram_bytes - state, build.core,
                              dsp=build.dsp, spill=spill_target(build.board, request),
                              search=search, settle=settle)
    layers, pool = emit_layers(plan.graph, plan, build.dsp)
    flash = _flash(plan, layers, pool, build)
    if (request.out_of_core and not at_once and flash is not None
            and flash.total > build.board.firmware_flash_bytes
            and (fitted := out_of_core(graph, build, request, state)) is not None):
        return fitted
    return _analysis(graph, build, plan, search, layers, flash, request)


def patch_search(graph: Graph, build: Build, request: PatchRequest,
                 cache: StepCache | None = None, settle: bool = False) -> PatchSearch:
    """The patch search analyze_graph plans `graph` from, where constants stay on chip.

    With `settle`, possibly only its first choice (see search_patches).
    """
    return search_patches(graph, request, build.board.sram_bytes - state_bytes(graph),
                          build.core, build.dsp, cache, spill_target(build.board, request),
                          settle)


def out_of_core(graph: Graph, build: Build, request: PatchRequest, state: int
                ) -> Analysis | None:
    """The analysis of `graph` with constants in the board's external tier (None: no tier).

    Layers whose weights exceed one staging half are split into groups of output channels
    (passes.split_channels); the patch search plans within the SRAM left beside the staging
    buffer and the firmware's stack reserve; the steps read from external storage are the
    fewest bytes that bring the firmware within flash less FLASH_MARGIN
    (memory.tiers.choose_steps).
    """
    board = build.board
    constants = sum(t.nbytes for t in graph.tensors.values() if t.is_constant)
    tier = external_tier(board, constants)
    if tier is None:
        return None
    limit = chunk_limit(board)
    widened = FC_FEW_UNITS * FC_FEW_PASSES if build.dsp else 0
    split = split_wide_layers(graph, int(limit * SPLIT_SHARE), widened)
    if _movable(split, limit) < constants - board.firmware_flash_bytes:
        return None
    budget = (board.sram_bytes - state - 2 * limit - STACK_RESERVE_BYTES
              - _key_bytes(build, request.encrypt_external, request.encrypt_external))
    plan, search = plan_model(split, request, budget, build.core, dsp=build.dsp,
                              spill=spill_target(board, request))
    layers, pool = emit_layers(plan.graph, plan, build.dsp)
    layout = _external_steps(plan, layers, pool, build, tier.kind.value, limit,
                             request.encrypt_external)
    if layout is None:
        return None
    return _analysis(graph, build, plan, search, layers, _flash(plan, layers, pool, build, layout),
                     request, layout)


def spill_target(board: Board, request: PatchRequest) -> SpillTarget | None:
    """Where the plan may spill activations: the board's spill tier with --external auto.

    None without one. With --encrypt-external the spilled rows are encrypted and tagged, at
    the measured cost per byte of the board's core.
    """
    tier = spill_tier(board)
    if tier is None or not request.out_of_core:
        return None
    crypto = crypto_ms_per_byte(board, board.core.value) if request.encrypt_external else None
    return SpillTarget(board, tier, crypto)


def _movable(graph: Graph, limit: int) -> int:
    """Bytes of the constants of the ops whose constants fit one staging half (`limit`)."""
    sizes = [sum(graph.tensors[n].nbytes for n in op.inputs if graph.tensors[n].is_constant)
             for op in graph.operators]
    return sum(size for size in sizes if size <= limit)


def _external_steps(plan: Plan, layers: list[LayerCode], pool: ConstantPool, build: Build,
                    tier: str, limit: int, encrypted: bool) -> ExternalLayout | None:
    """Sets plan.external to the steps whose chunks bring the flash within the board's.

    A chunk frees its bytes less the code that reads it; the code reading the first one is
    added to the overflow (flash.external_code).
    """
    plan.external = ExternalWeights(tier, frozenset(range(len(plan.steps))))
    every = external_layout(plan, layers, pool)
    capacity = int(build.board.firmware_flash_bytes * (1 - FLASH_MARGIN))
    flash = _flash(plan, layers, pool, build)
    first, each = external_code(build.firmware, encrypted) if flash else (0, 0)
    chunks = ({c.step: c.size - each for c in every.chunks if each < c.size <= limit}
              if every else {})
    overflow = flash.total - capacity + first - each if flash else 0
    for _ in range(FLASH_PASSES):
        steps = choose_steps(chunks, overflow)
        if not steps:
            break
        plan.external = ExternalWeights(tier, steps, encrypted)
        layout = external_layout(plan, layers, pool)
        excess = _flash(plan, layers, pool, build, layout).total - capacity
        if excess <= 0:
            return layout
        overflow += excess
    plan.external = None
    return None


def _flash(plan: Plan, layers: list[LayerCode], pool: ConstantPool, build: Build,
           layout: ExternalLayout | None = None) -> FlashEstimate | None:
    """The firmware's flash on a Cortex-M target (without the external arrays), else None."""
    if build.firmware not in CORTEX_M:
        return None
    return estimate_flash(plan.graph, layers, pool, build.firmware, build.io, external=layout,
                          spill=spill_kind(plan))


def spill_kind(plan: Plan) -> SpillKind:
    """Where and how `plan` spills, as its code's size depends on it."""
    tier = plan.spill_tier
    return SpillKind(in_ram=spills_to_memory(tier),
                     on_nor=tier is not None and tier.needs_erase and not spills_to_memory(tier),
                     sealed=plan.spill_encrypted)


def _analysis(graph: Graph, build: Build, plan: Plan, search: PatchSearch,
              layers: list[LayerCode], flash: FlashEstimate | None, request: PatchRequest,
              layout: ExternalLayout | None = None) -> Analysis:
    """The Analysis of `plan`: its report with the reads of `layout` and its spill's costs.

    The spill region's slots are the generated C's (render.spill_region, after the image; one
    in external RAM).
    """
    executed = plan.graph
    reads = None if layout is None else _reads(layout, plan, build)
    tier = (plan.spill_tier or spill_tier(build.board)) if plan.spilled else None
    region = spill_region(plan, image_bytes(layout))
    crypto = crypto_ms_per_byte(build.board, build.core) if plan.spill_encrypted else 0.0
    spill = (spill_cost(build.board, tier,
                        spill_traffic(executed, plan.spilled, plan.spill_encrypted),
                        region.slots if region is not None else 1, crypto)
             if tier is not None else None)
    report = analyze(executed, build.board, order=plan.order, peak_ram_bytes=plan.arena_bytes,
                     planned=planned_steps(plan), kernels=[layer.functions for layer in layers],
                     flash=flash, external=reads, spill=spill,
                     inferences_per_hour=request.inferences_per_hour)
    image_sealed = plan.external is not None and plan.external.encrypted
    keys = _key_bytes(build, image_sealed, plan.spill_encrypted)
    return Analysis(graph, build.board, plan, with_keys(report, keys) if keys else report, search)


def _key_bytes(build: Build, image: bool, spill: bool) -> int:
    """Static RAM of the encryption keys on a Cortex-M firmware (hw.external_crypto)."""
    return crypto_ram_bytes(build.firmware, image, spill) if build.firmware in CORTEX_M else 0


def _reads(layout: ExternalLayout, plan: Plan, build: Build) -> ExternalReads:
    """The chunk reads of `layout` for the storage model, with an encrypted image's costs."""
    encrypted = plan.external is not None and plan.external.encrypted
    tag = TAG_BYTES if encrypted else 0
    decrypt = crypto_ms_per_byte(build.board, build.core) if encrypted else 0.0
    return ExternalReads(TierKind(layout.tier),
                         tuple(ChunkRead(c.step, c.size, tag) for c in layout.chunks),
                         layout.staging_bytes, layout.external_bytes, decrypt)


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
