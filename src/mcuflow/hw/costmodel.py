"""Per-operator cost rules (MACs, bytes, scratch, element ops) and the latency and energy model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcuflow.hw.board import Board, TierKind
from mcuflow.hw.layouts import im2col_bytes
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, Pool2DAttrs
from mcuflow.ir.registry import OpTable


@dataclass(frozen=True)
class OpCost:
    """What one operator costs, independent of the board."""

    macs: int
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    scratch_bytes: int
    ops: int


CostRule = Callable[[Graph, Operator], OpCost]

COST_RULES: OpTable[CostRule] = OpTable("cost rule")

# Non-MAC element operations per output element (estimates, see op_cost).
ELEMENT_OP_FACTOR: OpTable[int] = OpTable("element-op factor", entries={
    OpKind.CONV_2D: 1,  # requantise + clamp each output
    OpKind.DEPTHWISE_CONV_2D: 1,
    OpKind.FULLY_CONNECTED: 1,
    OpKind.AVERAGE_POOL_2D: 1,  # divide + requantise
    OpKind.MAX_POOL_2D: 1,  # store
    OpKind.MEAN: 1,
    OpKind.ADD: 2,  # rescale both inputs on top of the one MAC
    OpKind.SUB: 2,
    OpKind.MUL: 1,
    OpKind.SOFTMAX: 8,  # max pass, fixed-point exp, sum, reciprocal, scale
    OpKind.LOGISTIC: 4,  # fixed-point exp / LUT with interpolation
    OpKind.TANH: 4,
    OpKind.HARD_SWISH: 6,  # several fixed-point multiplies per element
    OpKind.RELU: 1,
    OpKind.RELU6: 1,
    OpKind.LEAKY_RELU: 2,
    OpKind.QUANTIZE: 2,
    OpKind.DEQUANTIZE: 2,
    OpKind.PAD: 1,  # copy
    OpKind.CONCATENATION: 1,  # copy
    OpKind.RESHAPE: 0,  # no arithmetic (a memcpy unless the planner aliases it)
    OpKind.SQUEEZE: 0,
})


cost_rule = COST_RULES.register


def op_cost(graph: Graph, op: Operator) -> OpCost:
    """The cost of `op` in `graph`.

    Counting conventions (one rule per OpKind in COST_RULES, `out` = output elements):

    | op | macs |
    | --- | --- |
    | CONV_2D | out x KH x KW x Cin |
    | DEPTHWISE_CONV_2D | out x KH x KW |
    | FULLY_CONNECTED | out x K |
    | AVERAGE_POOL_2D, MAX_POOL_2D | out x FH x FW |
    | MEAN | input elements |
    | ADD, SUB, MUL | out |
    | everything else | 0 |

    `scratch_bytes` is the scratch of mcuflow's portable kernels run out of place: CONV_2D's
    im2col (`hw.layouts.im2col_bytes`, the scratch of the mcuflow_conv2d_s8 record in
    mcuflow.hw.kernels); every other op reads its inputs directly and needs none. In-place and
    DSP variants are the planner's business (hw.kernels.kernel_scratch).

    `ops` counts non-MAC element work: out x ELEMENT_OP_FACTOR[kind] (requantisation, LUT or
    exponential steps, copies). `weight_bytes` is every constant input (weights, bias, LUTs);
    `input_bytes` the activation inputs; `output_bytes` the outputs.
    """
    return COST_RULES[op.kind](graph, op)


def _cost(graph: Graph, op: Operator, macs: int = 0, scratch: int = 0) -> OpCost:
    """Bytes of the op's tensors plus the given MACs and scratch, and its element ops."""
    inputs = [graph.tensor(name) for name in op.inputs]
    outputs = [graph.tensor(name) for name in op.outputs]
    out_elems = sum(t.size for t in outputs)
    return OpCost(
        macs=int(macs),
        weight_bytes=sum(t.nbytes for t in inputs if t.is_constant),
        input_bytes=sum(t.nbytes for t in inputs if not t.is_constant),
        output_bytes=sum(t.nbytes for t in outputs),
        scratch_bytes=int(scratch),
        ops=out_elems * ELEMENT_OP_FACTOR[op.kind],
    )


def _out_elems(graph: Graph, op: Operator) -> int:
    return graph.tensor(op.outputs[0]).size


@cost_rule(OpKind.CONV_2D)
def _conv2d(graph: Graph, op: Operator) -> OpCost:
    """Filter [O, KH, KW, Cin]: KH x KW x Cin MACs per output element, im2col scratch."""
    _, kh, kw, cin = graph.tensor(op.inputs[1]).shape
    return _cost(graph, op, _out_elems(graph, op) * kh * kw * cin, im2col_bytes(graph, op))


@cost_rule(OpKind.DEPTHWISE_CONV_2D)
def _depthwise(graph: Graph, op: Operator) -> OpCost:
    """Filter [1, KH, KW, C*M]: KH x KW MACs per output element."""
    _, kh, kw, _ = graph.tensor(op.inputs[1]).shape
    return _cost(graph, op, _out_elems(graph, op) * kh * kw)


@cost_rule(OpKind.FULLY_CONNECTED)
def _fully_connected(graph: Graph, op: Operator) -> OpCost:
    """Weights [O, K]: K MACs per output element."""
    depth = graph.tensor(op.inputs[1]).shape[-1]
    return _cost(graph, op, _out_elems(graph, op) * depth)


@cost_rule(OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D)
def _pool(graph: Graph, op: Operator) -> OpCost:
    """One MAC (or compare) per window element."""
    assert isinstance(op.attrs, Pool2DAttrs)
    window = op.attrs.filter_h * op.attrs.filter_w
    return _cost(graph, op, _out_elems(graph, op) * window)


@cost_rule(OpKind.MEAN)
def _mean(graph: Graph, op: Operator) -> OpCost:
    """Every input element is accumulated once."""
    return _cost(graph, op, graph.tensor(op.inputs[0]).size)


@cost_rule(OpKind.ADD, OpKind.SUB, OpKind.MUL)
def _elementwise(graph: Graph, op: Operator) -> OpCost:
    """One MAC per output element (plus the rescaling counted in ops)."""
    return _cost(graph, op, _out_elems(graph, op))


@cost_rule(
    OpKind.SOFTMAX, OpKind.LOGISTIC, OpKind.TANH, OpKind.HARD_SWISH, OpKind.RELU, OpKind.RELU6,
    OpKind.LEAKY_RELU, OpKind.QUANTIZE, OpKind.DEQUANTIZE, OpKind.PAD, OpKind.CONCATENATION,
    OpKind.RESHAPE, OpKind.SQUEEZE,
)
def _element_only(graph: Graph, op: Operator) -> OpCost:
    """No MACs; the per-element work is in ops."""
    return _cost(graph, op)


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
