"""What one operator costs (MACs, bytes, scratch, element ops) and the latency and energy model."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.hw.board import Board, TierKind
from mcuflow.hw.layouts import im2col_bytes
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OP_DEFS, OpKind, op_macs


@dataclass(frozen=True)
class OpCost:
    """What one operator costs, independent of the board."""

    macs: int
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    scratch_bytes: int
    ops: int


def op_cost(graph: Graph, op: Operator) -> OpCost:
    """The cost of `op` in `graph`.

    `macs` and the non-MAC element work `ops` (output elements x the OpDef's `element_ops`:
    requantisation, LUT or exponential steps, copies) come from the op's definition
    (mcuflow.ir.ops.OP_DEFS). `scratch_bytes` is the scratch of mcuflow's portable kernels run
    out of place: CONV_2D's im2col (`hw.layouts.im2col_bytes`, the scratch of the
    mcuflow_conv2d_s8 record in mcuflow.hw.kernels); every other op reads its inputs directly
    and needs none. In-place and DSP variants are the planner's business
    (hw.kernels.kernel_scratch). `weight_bytes` is every constant input (weights, bias, LUTs);
    `input_bytes` the activation inputs; `output_bytes` the outputs.
    """
    inputs = [graph.tensor(name) for name in op.inputs]
    outputs = [graph.tensor(name) for name in op.outputs]
    scratch = im2col_bytes(graph, op) if op.kind is OpKind.CONV_2D else 0
    return OpCost(
        macs=op_macs(graph, op),
        weight_bytes=sum(t.nbytes for t in inputs if t.is_constant),
        input_bytes=sum(t.nbytes for t in inputs if not t.is_constant),
        output_bytes=sum(t.nbytes for t in outputs),
        scratch_bytes=scratch,
        ops=sum(t.size for t in outputs) * OP_DEFS[op.kind].element_ops,
    )


# --- latency and energy ---------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where an operator's bytes live: its constants in one tier, activations in another.

    Scratch buffers always live in SRAM.
    """

    weights: TierKind
    activations: TierKind = TierKind.SRAM


@dataclass(frozen=True)
class Traffic:
    """Bytes read from and written to one memory tier."""

    read_bytes: int = 0
    write_bytes: int = 0


@dataclass(frozen=True)
class CostEstimate:
    """Latency and energy of one operator on one board."""

    cycles: float
    latency_ms: float
    energy_mj: float


def default_placement(board: Board) -> Placement:
    """Constants in the board's default weights tier, activations in SRAM."""
    return Placement(weights=board.weights_tier.kind)


def tier_traffic(cost: OpCost, placement: Placement) -> dict[TierKind, Traffic]:
    """Bytes moved per tier, a lower bound: kernels keep reused operands in registers or cache.

    Each weight and input byte is read once, each output byte written once, each scratch byte
    written and read once in SRAM.
    """
    moves = [
        (placement.weights, cost.weight_bytes, 0),
        (placement.activations, cost.input_bytes, cost.output_bytes),
        (TierKind.SRAM, cost.scratch_bytes, cost.scratch_bytes),
    ]
    traffic: dict[TierKind, Traffic] = {}
    for kind, read, write in moves:
        old = traffic.get(kind, Traffic())
        traffic[kind] = Traffic(old.read_bytes + read, old.write_bytes + write)
    return traffic


ON_CHIP = frozenset({TierKind.SRAM, TierKind.ONCHIP_FLASH})
"""Tiers whose accesses the fitted kernel instruction counts already cover."""


def _traffic_seconds(cost: OpCost, placement: Placement, board: Board,
                     skip: frozenset[TierKind] = frozenset()) -> float:
    seconds = 0.0
    for kind, moved in tier_traffic(cost, placement).items():
        if kind in skip:
            continue
        tier = board.tier(kind)
        seconds += moved.read_bytes / tier.read_bandwidth
        seconds += moved.write_bytes / tier.write_bandwidth
    return seconds


def estimate_cycles(cost: OpCost, board: Board, placement: Placement | None = None,
                    instructions: float | None = None) -> float:
    """Core cycles for one operator.

    With the step's kernel `instructions` (mcuflow.hw.kernel_costs, fitted per kernel and core
    to QEMU instruction counts):

        cycles = instructions x cycles_per_instruction(core)
               + sum over tiers other than SRAM and on-chip flash of
                 (read_bytes / read_bandwidth + write_bytes / write_bandwidth) x clock_hz

    Without them (a core without fitted kernels), the per-core model of boards.toml:

        cycles = macs x cycles_per_mac(core, dsp) + ops x cycles_per_elem
               + sum over every tier of (read_bytes / read_bandwidth
                                         + write_bytes / write_bandwidth) x clock_hz

    where flash wait states enter through the on-chip flash tier's read bandwidth, which
    boards.toml derives as flash line bytes / (wait states + 1) x clock.
    """
    placement = placement or default_placement(board)
    if instructions is not None:
        seconds = _traffic_seconds(cost, placement, board, ON_CHIP)
        return instructions * board.core_model.cycles_per_instruction + seconds * board.clock_hz
    compute = cost.macs * board.cycles_per_mac + cost.ops * board.cycles_per_elem
    return compute + _traffic_seconds(cost, placement, board) * board.clock_hz


def estimate_energy_mj(cost: OpCost, board: Board, placement: Placement | None = None,
                       instructions: float | None = None) -> float:
    """Energy (mJ) for one operator: active power x time + sum of bytes x energy per byte."""
    return estimate(cost, board, placement, instructions).energy_mj


def estimate(cost: OpCost, board: Board, placement: Placement | None = None,
             instructions: float | None = None) -> CostEstimate:
    """Cycles, latency (ms) and energy (mJ) of one operator on `board` (see estimate_cycles)."""
    placement = placement or default_placement(board)
    cycles = estimate_cycles(cost, board, placement, instructions)
    seconds = cycles / board.clock_hz
    moved_nj = sum(
        moved.read_bytes * board.tier(kind).read_energy_nj_per_byte
        + moved.write_bytes * board.tier(kind).write_energy_nj_per_byte
        for kind, moved in tier_traffic(cost, placement).items()
    )
    energy_mj = board.active_power_mw * seconds + moved_nj * 1e-6
    return CostEstimate(cycles, seconds * 1e3, energy_mj)
