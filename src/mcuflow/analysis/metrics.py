"""Per-layer analysis on a board: MACs, bytes, working set, fit verdict, latency and energy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from mcuflow.hw.board import Board, MemoryTier, TierKind
from mcuflow.hw.costmodel import Placement, estimate, op_cost
from mcuflow.hw.kernel_code import FlashEstimate
from mcuflow.hw.kernel_costs import step_instructions
from mcuflow.hw.kernels import default_kernels
from mcuflow.hw.storage_io import (
    DEFAULT_INFERENCES_PER_HOUR,
    ExternalReads,
    SpillCost,
    StorageCost,
    double_buffered,
    lifetime_years,
)
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import state_bytes

SCHEMA = "mcuflow.report/2"

NO_WEIGHTS = "none"
OVERFLOW = "overflow"

REPORT_JSON_FIELDS = """\
`mcuflow analyze --json` prints one object (schema "mcuflow.report/2"):

| field | meaning |
| --- | --- |
| schema | "mcuflow.report/2"; bumped when a field changes meaning (2: flash_bytes counts code) |
| model | graph name |
| board, board_name | board id (what --board takes) and its full name |
| macs | multiply-accumulates of one inference |
| flash_bytes | flash of the linked firmware when the target is a Cortex-M core: flash_estimate's |
| | constants + code + runtime (within 3 % of the ELF's text+rodata+data); else (host target, |
| | a core mcuflow builds no firmware for) constant_bytes only, code excluded |
| constant_bytes | bytes of every constant tensor (weights, biases), each counted once |
| flash_estimate | null, or the firmware's flash by part (mcuflow.codegen.flash): |
| flash_estimate.target | the Cortex-M target it is estimated for, e.g. "cortex-m4" |
| flash_estimate.constants | emitted constant arrays (16-byte aligned) and parameter structs |
| flash_estimate.code | kernels called, the library routines they share, the run function |
| flash_estimate.runtime | startup, driver application, timing and libc |
| flash_capacity | bytes of the tier that stores the constants (on-chip flash, or XIP flash) |
| flash_margin_bytes | flash_capacity - flash_bytes (negative: does not fit) |
| fits_flash | flash_bytes <= flash_capacity |
| weights_tier | tier the kernels read constants from: "onchip_flash", "qspi_flash", "sram"... |
| weights_not_fitting | names of the layers whose constants overflow flash_capacity (after |
| | the code, runtime and emitted tables when flash_estimate is known) |
| peak_ram_bytes | activation arena: the memory planner's, else the largest working set |
| peak_from_planner | true when peak_ram_bytes came from the memory planner |
| peak_layer | index of the layer with the largest working set (null for an empty graph) |
| sram_bytes | usable contiguous SRAM of the board |
| sram_margin_bytes | sram_bytes - peak_ram_bytes - state_bytes (- constant_bytes when |
| | weights_tier is "sram") |
| fits_sram | sram_margin_bytes >= 0 |
| fits | fits_sram and fits_flash |
| latency_ms_estimate, energy_mj_estimate | sums of the per-layer estimates (cost model) |
| layers[] | one object per operator, in execution order: |
| layers[].index | operator index in the graph |
| layers[].name, layers[].op | operator name and kind (e.g. "CONV_2D") |
| layers[].output_shape | shape of the first output |
| layers[].macs, layers[].ops | MACs and non-MAC element operations |
| layers[].weight_bytes | bytes of the operator's constant inputs (weights + bias) |
| layers[].input_bytes, layers[].output_bytes | activation bytes read and written |
| layers[].scratch_bytes | kernel scratch (im2col and similar buffers) |
| layers[].working_set_bytes | every activation live while it runs + its scratch |
| layers[].weights_location | tier of its constants, "none" without constants, "overflow" |
| layers[].latency_ms, layers[].energy_mj | cost-model estimates |
| layers[].kernels | C kernel functions the generated step calls (mcuflow.hw.kernels) |
| state_bytes | persistent RAM of the state (SVDF, LSTM: ir.ops.state_bytes), static storage |
| | outside the arena kept from one inference to the next |
| external_tier | tier holding the constants read from external storage ("sd_card", |
| | "qspi_flash"...; "" when every constant is on chip: the fields below are then 0, |
| | modelled_ms = latency_ms_estimate and slowdown 1) |
| external_image_bytes | bytes of weights_external.bin's payload (not in flash_bytes) |
| external_read_bytes, external_write_bytes | bytes read from / written to external storage |
| | per inference (an encrypted image's tags included) |
| external_reads | read requests per inference (one chunk per step reading from it, plus |
| | the reads of spilled activations) |
| erases_per_inference | external flash blocks erased per inference (a spill to NOR flash |
| | erases its slot, the spill in whole erase blocks, before writing it) |
| spill_tier | tier spilled activations are written to and read back from ("" without) |
| spill_bytes | bytes of the spill area (each spilled activation, written once per inference; |
| | encrypted, with a 16-byte tag per row) |
| external_writes | write requests per inference (one per spilled piece; encrypted, two: rows |
| | then tags) |
| spill_read_bytes, spill_reads | of external_read_bytes and external_reads, the spill's |
| spill_ms | time the core waits for the spill's erases, writes and reads (each synchronous); |
| | encrypted, with the AES time of sealing and opening the rows |
| spill_slots | slots of the spill region successive inferences take in turn (NOR flash wear |
| | levelling: a sector is erased once every spill_slots inferences; 1 on other tiers, |
| | 0 without spills) |
| lifetime_years | years until the spill tier wears out at --inferences-per-hour (its |
| | endurance; writes spread over a card, over spill_slots slots on raw NOR flash); null |
| | without spills or an endurance figure |
| inferences_per_hour | the rate lifetime_years is given at (--inferences-per-hour) |
| staging_bytes | SRAM staging buffer the chunks are read into (two halves), static storage |
| | beside the arena, counted in sram_margin_bytes |
| key_bytes | static SRAM of the AES and CMAC keys of an encrypted image or spill (their |
| | structs as measured per core), counted in sram_margin_bytes |
| io_stall_ms | time the core waits for a chunk its computation did not hide (the next chunk |
| | is read while the current steps compute, as with a DMA) |
| decrypt_ms | time the core verifies and decrypts an encrypted image's chunks (AES-CMAC |
| | and AES-128-CTR, mcuflow.hw.external_crypto's measured cost per byte; 0: plain) |
| modelled_ms | latency_ms_estimate + decrypt_ms + io_stall_ms + spill_ms |
| slowdown | modelled_ms / latency_ms_estimate |
| energy_mj_estimate | includes the external reads and writes, the decryption and the |
| | stalled time |
"""


@dataclass(frozen=True)
class LayerReport:
    """One operator's costs on the board (sizes in bytes)."""

    index: int
    name: str
    op: str
    output_shape: tuple[int, ...]
    macs: int
    ops: int
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    scratch_bytes: int
    working_set_bytes: int
    weights_location: str
    latency_ms: float
    energy_mj: float
    kernels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """A graph analysed on a board: per-layer figures, totals and the fit verdict."""

    model: str
    board: str
    board_name: str
    layers: tuple[LayerReport, ...]
    macs: int
    flash_bytes: int
    constant_bytes: int
    flash_estimate: FlashEstimate | None
    flash_capacity: int
    flash_margin_bytes: int
    fits_flash: bool
    weights_tier: str
    weights_not_fitting: tuple[str, ...]
    peak_ram_bytes: int
    peak_from_planner: bool
    peak_layer: int | None
    sram_bytes: int
    sram_margin_bytes: int
    fits_sram: bool
    fits: bool
    latency_ms_estimate: float
    energy_mj_estimate: float
    state_bytes: int = 0
    external_tier: str = ""
    external_image_bytes: int = 0
    external_read_bytes: int = 0
    external_write_bytes: int = 0
    external_reads: int = 0
    erases_per_inference: int = 0
    staging_bytes: int = 0
    key_bytes: int = 0
    io_stall_ms: float = 0.0
    decrypt_ms: float = 0.0
    modelled_ms: float = 0.0
    slowdown: float = 1.0
    spill_tier: str = ""
    spill_bytes: int = 0
    external_writes: int = 0
    spill_read_bytes: int = 0
    spill_reads: int = 0
    spill_ms: float = 0.0
    spill_slots: int = 0
    lifetime_years: float | None = None
    inferences_per_hour: float = DEFAULT_INFERENCES_PER_HOUR

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON types, fields as documented in REPORT_JSON_FIELDS."""
        data = {"schema": SCHEMA, **asdict(self)}
        data["weights_not_fitting"] = list(self.weights_not_fitting)
        data["layers"] = [
            {**asdict(layer), "output_shape": list(layer.output_shape),
             "kernels": list(layer.kernels)} for layer in self.layers
        ]
        return data

    def to_json_text(self) -> str:
        """to_json() serialised with two-space indentation."""
        return json.dumps(self.to_json(), indent=2)


def _check_order(graph: Graph, order: list[int]) -> None:
    if sorted(order) != list(range(len(graph.operators))):
        raise ValueError("order must list every operator index exactly once")
    produced = set(graph.inputs) | {n for n, t in graph.tensors.items() if t.is_constant}
    produced |= set(graph.variables())
    for index in order:
        op = graph.operators[index]
        missing = [name for name in op.inputs if name not in produced]
        if missing:
            raise ValueError(f"order runs operator {index} before {missing[0]} is produced")
        produced.update(op.outputs)


def lifetimes(graph: Graph, order: list[int]) -> dict[str, tuple[int, int]]:
    """(first, last) step of every activation tensor when operators run in `order`.

    Graph inputs are live from step 0, graph outputs until the last step; a tensor nobody
    reads lives only at the step that produces it.
    """
    last_step = max(len(order) - 1, 0)
    first: dict[str, int] = {name: 0 for name in graph.inputs}
    last: dict[str, int] = {}
    for step, index in enumerate(order):
        op = graph.operators[index]
        for name in op.inputs:
            if not graph.tensor(name).is_constant:
                last[name] = step
        for name in op.outputs:
            first[name] = step
    for name in graph.outputs:
        last[name] = last_step
    return {name: (start, max(last.get(name, start), start)) for name, start in first.items()}


def working_sets(graph: Graph, order: list[int], scratch: list[int]) -> list[int]:
    """Bytes live at each step: every activation alive at that step plus that step's scratch."""
    spans = lifetimes(graph, order)
    return [
        scratch[step] + sum(graph.tensor(name).nbytes
                            for name, (first, last) in spans.items() if first <= step <= last)
        for step in range(len(order))
    ]


@dataclass(frozen=True)
class _WeightsPlan:
    tier: MemoryTier
    capacity: int
    locations: dict[int, str]
    not_fitting: tuple[str, ...]
    total_bytes: int


def _layer_name(graph: Graph, index: int) -> str:
    op = graph.operators[index]
    return op.name or op.outputs[0]


def _plan_weights(graph: Graph, board: Board, order: list[int], weights_tier: TierKind | None,
                  flash: FlashEstimate | None = None, external: ExternalReads | None = None,
                  ) -> _WeightsPlan:
    """Place constants in their storage tier in execution order; flag those that overflow.

    The constants of the steps `external` reads are in its tier, not in flash.

    With `flash`, what it counts beyond the constant tensors (code, runtime, tables) comes first.
    """
    tier = board.tier(weights_tier) if weights_tier is not None else board.weights_tier
    storage = board.weights_tier if tier.kind.volatile else tier
    capacity = storage.size_bytes
    if tier.kind.volatile and tier.kind is not TierKind.SRAM:
        capacity = min(capacity, tier.size_bytes)
    total = sum(t.nbytes for t in graph.tensors.values() if t.is_constant)
    streamed = _external_ops(order, external)
    off_chip = {n for index in streamed for n in graph.operators[index].inputs
                if graph.tensor(n).is_constant}
    on_chip = total - sum(graph.tensor(n).nbytes for n in off_chip)
    seen: set[str] = set(off_chip)
    used = max(flash.total - on_chip, 0) if flash is not None else 0
    locations: dict[int, str] = {}
    not_fitting: list[str] = []
    for index in order:
        constants = [n for n in graph.operators[index].inputs if graph.tensor(n).is_constant]
        if index in streamed:
            locations[index] = external.tier.value if external else NO_WEIGHTS
            continue
        fresh = [n for n in constants if n not in seen]
        seen.update(fresh)
        used += sum(graph.tensor(n).nbytes for n in fresh)
        location = tier.kind.value if constants else NO_WEIGHTS
        if constants and used > capacity:
            location = OVERFLOW
            not_fitting.append(_layer_name(graph, index))
        locations[index] = location
    return _WeightsPlan(tier, capacity, locations, tuple(not_fitting), total)


def _external_ops(order: list[int], external: ExternalReads | None) -> frozenset[int]:
    """Op indices of the steps that read their constants from external storage."""
    return frozenset(order[read.position] for read in external.reads) if external else frozenset()


@dataclass(frozen=True)
class PlannedSteps:
    """What the memory planner knows per step: bytes live (scratch included) and scratch."""

    live_bytes: tuple[int, ...]
    scratch_bytes: tuple[int, ...]


def _instructions(graph: Graph, op: Operator, functions: tuple[str, ...] | None,
                  board: Board) -> float | None:
    """The fitted instructions of a step calling `functions` (default: the emitters' choice).

    None where the board's core has no fitted kernel costs: the per-core model applies.
    """
    chosen = functions if functions is not None else default_kernels(graph, op, board.dsp)
    return None if chosen is None else step_instructions(graph, op, chosen, board.core.value)


def analyze(
    graph: Graph,
    board: Board,
    order: list[int] | None = None,
    peak_ram_bytes: int | None = None,
    weights_tier: TierKind | None = None,
    planned: PlannedSteps | None = None,
    kernels: Sequence[tuple[str, ...]] | None = None,
    flash: FlashEstimate | None = None,
    external: ExternalReads | None = None,
    spill: SpillCost | None = None,
    inferences_per_hour: float = DEFAULT_INFERENCES_PER_HOUR,
) -> Report:
    """Analyse `graph` on `board`, running operators in `order` (graph order by default).

    `peak_ram_bytes` is the memory planner's arena size when known; otherwise the peak is the
    largest working set. `planned` gives the planner's bytes live and scratch per step (in-place
    sharing counted once); without it every live tensor counts in full and scratch is the
    out-of-place estimate of the cost model. `weights_tier` forces where kernels read constants
    from (default: the board's on-chip flash, or its execute-in-place flash); raises BoardError
    when the board has no such tier. `kernels` gives, per step of `order`, the C kernel
    functions the generated code calls (from codegen's emitters); each step's latency is their
    fitted instructions (hw.kernel_costs), and without `kernels` those of the emitters' default
    choice (hw.kernels.default_kernels). `flash` is the linked firmware's flash on a Cortex-M
    target (mcuflow.codegen.flash): flash_bytes and the flash verdict use it, else they count
    the constant tensors only. `external` (an out-of-core plan) names the steps whose constants
    are read from external storage: they are not in flash, the staging buffer counts against
    SRAM, and the reads' stalls and energy are modelled (hw.storage_io). `spill` is the cost of
    a plan's spilled activations (hw.storage_io.spill_cost), added to the time and energy; the
    spill tier's lifetime is given at `inferences_per_hour`.
    """
    order = list(range(len(graph.operators))) if order is None else list(order)
    _check_order(graph, order)
    weights = _plan_weights(graph, board, order, weights_tier, flash, external)
    placement = Placement(weights=weights.tier.kind)
    costs = [op_cost(graph, graph.operators[index]) for index in order]
    if planned is not None:
        costs = [replace(cost, scratch_bytes=scratch)
                 for cost, scratch in zip(costs, planned.scratch_bytes, strict=True)]
        sets = list(planned.live_bytes)
    else:
        sets = working_sets(graph, order, [cost.scratch_bytes for cost in costs])
    layers = []
    called = list(kernels) if kernels is not None else [None] * len(order)
    for index, cost, working_set, functions in zip(order, costs, sets, called, strict=True):
        op = graph.operators[index]
        est = estimate(cost, board, placement, _instructions(graph, op, functions, board))
        layers.append(LayerReport(
            index=index, name=_layer_name(graph, index), op=op.kind.value,
            output_shape=tuple(graph.tensor(op.outputs[0]).shape), macs=cost.macs, ops=cost.ops,
            weight_bytes=cost.weight_bytes, input_bytes=cost.input_bytes,
            output_bytes=cost.output_bytes, scratch_bytes=cost.scratch_bytes,
            working_set_bytes=working_set, weights_location=weights.locations[index],
            latency_ms=est.latency_ms, energy_mj=est.energy_mj, kernels=tuple(functions or ()),
        ))
    report = _report(graph, board, tuple(layers), weights, peak_ram_bytes, flash)
    if external is not None:
        storage = double_buffered(board, board.tier(external.tier),
                                  [layer.latency_ms for layer in layers], external.reads,
                                  external.decrypt_ms_per_byte)
        report = _with_storage(report, external, storage)
    return report if spill is None else _with_spill(report, board, spill, inferences_per_hour)


def _with_spill(report: Report, board: Board, spill: SpillCost, rate: float) -> Report:
    """The report with the spilled activations' traffic, time, energy, erases and lifetime.

    An encrypted spill's tag buffer is static SRAM beside the arena: the margin counts it.
    """
    traffic = spill.traffic
    modelled = report.modelled_ms + spill.ms
    return replace(
        _less_sram(report, traffic.buffer_bytes), spill_tier=spill.tier,
        spill_bytes=traffic.write_bytes,
        external_write_bytes=traffic.write_bytes, external_writes=len(traffic.writes),
        external_read_bytes=report.external_read_bytes + traffic.read_bytes,
        external_reads=report.external_reads + len(traffic.reads),
        spill_read_bytes=traffic.read_bytes, spill_reads=len(traffic.reads),
        erases_per_inference=spill.erases, spill_ms=spill.ms, spill_slots=spill.slots,
        modelled_ms=modelled,
        slowdown=modelled / report.latency_ms_estimate if report.latency_ms_estimate else 1.0,
        energy_mj_estimate=report.energy_mj_estimate + spill.energy_mj,
        lifetime_years=lifetime_years(board.tier(TierKind(spill.tier)), traffic.write_bytes,
                                      rate, spill.slots), inferences_per_hour=rate)


def _with_storage(report: Report, external: ExternalReads, storage: StorageCost) -> Report:
    """The report of an out-of-core plan: its staging in SRAM, its reads' figures and costs."""
    return replace(
        _less_sram(report, external.staging_bytes), external_tier=storage.tier,
        external_image_bytes=external.image_bytes,
        external_read_bytes=storage.read_bytes, external_reads=storage.reads,
        staging_bytes=external.staging_bytes, io_stall_ms=storage.stall_ms,
        decrypt_ms=storage.decrypt_ms, modelled_ms=storage.modelled_ms, slowdown=storage.slowdown,
        energy_mj_estimate=report.energy_mj_estimate + storage.energy_mj)


def _less_sram(report: Report, static_bytes: int) -> Report:
    """The report with `static_bytes` more of static SRAM beside the arena in its margin."""
    margin = report.sram_margin_bytes - static_bytes
    return replace(report, sram_margin_bytes=margin, fits_sram=margin >= 0,
                   fits=margin >= 0 and report.fits_flash)


def _report(graph: Graph, board: Board, layers: tuple[LayerReport, ...], weights: _WeightsPlan,
            planner_peak: int | None, flash: FlashEstimate | None) -> Report:
    peak_layer = max(layers, key=lambda layer: layer.working_set_bytes, default=None)
    peak = planner_peak if planner_peak is not None else (
        peak_layer.working_set_bytes if peak_layer else 0)
    sram_weights = weights.total_bytes if weights.tier.kind is TierKind.SRAM else 0
    state = state_bytes(graph)
    sram_margin = board.sram_bytes - peak - state - sram_weights
    flash_bytes = flash.total if flash is not None else weights.total_bytes
    flash_margin = weights.capacity - flash_bytes
    return Report(
        model=graph.name, board=board.id, board_name=board.name, layers=layers,
        macs=sum(layer.macs for layer in layers), flash_bytes=flash_bytes,
        constant_bytes=weights.total_bytes, flash_estimate=flash,
        flash_capacity=weights.capacity, flash_margin_bytes=flash_margin,
        fits_flash=flash_margin >= 0, weights_tier=weights.tier.kind.value,
        weights_not_fitting=weights.not_fitting, peak_ram_bytes=peak,
        peak_from_planner=planner_peak is not None,
        peak_layer=peak_layer.index if peak_layer else None, sram_bytes=board.sram_bytes,
        sram_margin_bytes=sram_margin, fits_sram=sram_margin >= 0,
        fits=sram_margin >= 0 and flash_margin >= 0,
        latency_ms_estimate=sum(layer.latency_ms for layer in layers),
        energy_mj_estimate=sum(layer.energy_mj for layer in layers),
        state_bytes=state, modelled_ms=sum(layer.latency_ms for layer in layers),
    )


def with_keys(report: Report, key_bytes: int) -> Report:
    """The report with the encryption keys' static SRAM (`key_bytes`) counted in its margin."""
    return replace(_less_sram(report, key_bytes), key_bytes=key_bytes)
