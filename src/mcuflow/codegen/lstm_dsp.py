"""The Arm DSP integer LSTM (mcuflow_lstm_dsp_s8): packed gate matrices, SMMLAR requantisation.

The four gates' weights are stacked (input, forget, cell, output) and packed as CONV_2D's
(input weights, two steps' input rows at a time: pack_pairs) and FULLY_CONNECTED's (recurrent
weights: pack_quads), the zero points folded into the biases as the portable kernel has them.
Each product is requantised to Q3.12 by one SMMLAR: with TFLite's right shift r >= 1,
MultiplyByQuantizedMultiplier(acc, m, -r) equals (SMMLAR(2 acc, m, 2^(r-1)) - [acc < 0]) >> r on
every acc with 2 acc inside int32 (its two roundings are one floor, see dsp.conv_natural), and
with a left shift s it is SMMLAR(acc << (s + 1), m, 0); the emitter declines when some reachable
accumulator would leave int32 once shifted. gemmlowp's int16 sigmoid and tanh keep their own
arithmetic but read two tables computed here with mcuflow.quant.fixedpoint: exp of the smallest
arguments (exp_table, 2^EXP_BITS int16 per activation, its first barrel-shifter steps included)
and the Newton-Raphson reciprocal's offset from 2^28 / hd (reciprocal_table, 16 KiB shared by
all the model's LSTMs). tests/codegen/test_lstm_dsp.py checks the C on every int16 input.
"""

from __future__ import annotations

import numpy as np

from mcuflow.codegen import dsp
from mcuflow.codegen.context import EmitContext, LayerCode, c_int
from mcuflow.codegen.emit_dsp import UNPACKABLE
from mcuflow.hw.layouts import dsp_groups
from mcuflow.ir.ops import LSTM_CELL_STATE, LSTM_GATES, LSTM_OUTPUT_STATE
from mcuflow.quant.fixedpoint import (
    QuantizedMultiplier,
    exp_on_negative_values_int16,
    newton_reciprocal_int16,
)
from mcuflow.ref.lstm import SIGMOID_BITS, LstmParams, prepare_lstm

STEM = "mcuflow_conv_dsp"
FUNCTION = "mcuflow_lstm_dsp_s8"
CELL_BITS = range(0, 7)
"""Integer bits of the cell state the kernel serves (cell scale 2^-15 .. 2^-9)."""
INT32_LOW, INT32_HIGH = -(1 << 31), (1 << 31) - 1
BARREL = (25520, 19875, 12055, 4435, 600, 11, 0)
"""gemmlowp's exp barrel-shifter constants exp(-1/4) .. exp(-16) in Q0.15 (int16)."""
EXP_BITS = 11
"""MCUFLOW_DSP_LSTM_EXP_BITS: entries (log2) of the gates' exp tables."""
PRODUCT_BOUND = 32767 * 32768
"""|o * tanh(c)|: a Q0.15 gate times a Q0.15 tanh."""


def rq_words(multiplier: QuantizedMultiplier) -> tuple[int, int, int, int, int]:
    """(left, multiplier, round, negative, right) of mcuflow_dsp_lstm_rq_t."""
    if multiplier.shift <= -1:
        right = -multiplier.shift
        return 1, multiplier.multiplier, 1 << (right - 1), -1, right
    return multiplier.shift + 1, multiplier.multiplier, 0, 0, 0


def rq_fits(multiplier: QuantizedMultiplier, low: int, high: int) -> bool:
    """True when every accumulator in [low, high] stays inside int32 once shifted left."""
    left = rq_words(multiplier)[0]
    return low << left >= INT32_LOW and high << left <= INT32_HIGH


def exp_table(bits: int, entries_bits: int = EXP_BITS) -> np.ndarray:
    """gemmlowp's exp of -(i + 1) in Q(bits), i < 2^entries_bits, as int16 Q0.15.

    Its barrel-shifter steps below bit `entries_bits` are in the table, the kernel runs the
    others.
    """
    return exp_on_negative_values_int16(-1 - np.arange(1 << entries_bits, dtype=np.int64),
                                        bits).astype(np.int16)


def reciprocal_table() -> np.ndarray:
    """MCUFLOW_DSP_LSTM_RECIPROCAL_BYTES: gemmlowp's 2 / (1 + e) in Q2.13 as int8 offsets.

    It depends on e only through hd = (e + 32768) >> 1; byte hd - 16384 holds its offset from
    2^28 // hd. ValueError if an offset left int8 (they span -2 .. 3).
    """
    hd = np.arange(1 << 14, 1 << 15, dtype=np.int64)
    offsets = newton_reciprocal_int16(2 * hd - 32768) - (1 << 28) // hd
    if offsets.min() < -128 or offsets.max() > 127:
        raise ValueError("a Newton-Raphson reciprocal is too far from 2^28 / hd")
    return offsets.astype(np.int8)


def cell_exp_bits(cell_bits: int) -> int:
    """Entries (log2) of the cell tanh's exp table: at least one quarter in Q(cell_bits + 1)."""
    return max(EXP_BITS, 12 - cell_bits)


def cell_barrel(cell_bits: int) -> tuple[tuple[int, int, int, int], int, int]:
    """mcuflow_dsp_lstm_cell_t's multipliers and step mask of bits 11 .. 14 of m1, its zero.

    exp in Q(b), b = cell_bits + 1, steps bit 13 - b + k by BARREL[k] for k < b + 2. Bits inside
    the table take no step (out of the mask); bits past gemmlowp's steps get BARREL's 0, as they
    only occur where gemmlowp flushes the result to 0 (from m1 = 2^(20 - b) for b > 5).
    """
    bits = cell_bits + 1
    steps, mask = [], 0
    for i, position in enumerate(range(EXP_BITS, 15)):
        k = position - (13 - bits)
        if position >= cell_exp_bits(cell_bits):
            mask |= 1 << i
        steps.append(BARREL[k] if 0 <= k < min(bits + 2, len(BARREL)) else 0)
    zero = 1 << (20 - bits) if bits > 5 else 1 << 15
    return (steps[0], steps[1], steps[2], steps[3]), mask, zero


def scratch_words(features: int, units: int) -> int:
    """MCUFLOW_DSP_LSTM_SCRATCH_WORDS: two gathered input rows, three rows of accumulators."""
    return max(4 * dsp_groups(features), 2 * dsp_groups(units)) + 12 * units


def _rq(multiplier: QuantizedMultiplier) -> str:
    return "{" + ", ".join(c_int(v) for v in rq_words(multiplier)) + "}"


def _matrix(ctx: EmitContext, stem: str, matrix: np.ndarray, packed: np.ndarray, what: str,
            layout: str) -> str:
    weights = ctx.constant(stem, "int32_t", packed.view(np.int32),
                           f"{ctx.op.name}: {what} weights of the 4 gates packed {layout}")
    rows, depth = matrix.shape
    return (f"{{(const uint32_t *){weights}, {rows}, {depth}, {dsp_groups(depth)}, "
            f"{dsp.chunk_groups(matrix)}, 0}}")


def _stacked(ctx: EmitContext, first: int) -> np.ndarray:
    """The 4 gates' weight matrices from input `first` on, stacked [4 units, depth]."""
    names = ctx.op.inputs[first:first + LSTM_GATES]
    return np.concatenate([ctx.tensor(name).data.astype(np.int64) for name in names])


def _unfit(multipliers: tuple[QuantizedMultiplier, ...], span: dsp.Domain, units: int,
           what: str) -> str | None:
    """Why some gate's accumulators of one product cannot be requantised by SMMLAR, or None."""
    for gate, multiplier in enumerate(multipliers):
        low = int(span.low[gate * units:(gate + 1) * units].min())
        high = int(span.high[gate * units:(gate + 1) * units].max())
        if not rq_fits(multiplier, low, high):
            return (f"{what} accumulators of gate {gate} ({low}..{high}) leave int32 once "
                    f"shifted by {rq_words(multiplier)[0]}")
    return None


def _scratch(ctx: EmitContext, p: LstmParams) -> str | None:
    """The step's scratch as a word pointer when it holds the kernel's 8-byte aligned words."""
    if ctx.step.scratch is None:
        return None
    buffer = ctx.plan.buffers[ctx.step.scratch]
    if buffer.offset % 8 or buffer.size < 4 * scratch_words(p.features, p.units):
        return None
    return f"(mcuflow_word_t *){ctx.scratch()}"


def _reason(p: LstmParams, wx: np.ndarray, wh: np.ndarray, packed: bool, scratch: str | None
            ) -> str | None:
    """Why mcuflow_lstm_dsp_s8 does not apply to the layer (`packed`: both matrices packed)."""
    if 15 + p.cell_exponent not in CELL_BITS:
        return f"cell state scale 2^{p.cell_exponent} (the DSP kernel serves 2^-15 .. 2^-9)"
    if not packed:
        return UNPACKABLE
    span_x = dsp.domain(wx, p.input_bias.reshape(-1))
    span_h = dsp.domain(wh, p.recurrent_bias.reshape(-1))
    unfit = (_unfit(p.input_multipliers, span_x, p.units, "input")
             or _unfit(p.recurrent_multipliers, span_h, p.units, "recurrent"))
    if unfit is not None:
        return unfit
    if not rq_fits(p.hidden, -PRODUCT_BOUND, PRODUCT_BOUND):
        return f"output scale needs a left shift of {p.hidden.shift}"
    return None if scratch is not None else (
        "the plan gives the step no DSP-sized, 8-byte aligned scratch")


def _tables(ctx: EmitContext, cell_bits: int) -> dict[str, str]:
    """The struct fields of the activations' tables (constants shared by all the LSTMs)."""
    name = ctx.op.name
    exp = {stem: ctx.constant(stem, "int16_t", exp_table(bits, entries),
                              f"{name}: gemmlowp exp of -1, -2 .. in Q{bits}")
           for stem, bits, entries in (("sigmoid_exp", SIGMOID_BITS, EXP_BITS),
                                       ("tanh_exp", SIGMOID_BITS + 1, EXP_BITS),
                                       ("cell_exp", cell_bits + 1, cell_exp_bits(cell_bits)))}
    steps, mask, zero = cell_barrel(cell_bits)
    cell = (f"{{{exp.pop('cell_exp')}, {cell_exp_bits(cell_bits)}, "
            f"{{{', '.join(map(str, steps))}}}, {mask}, {zero}}}")
    reciprocal = ctx.constant("reciprocal", "int8_t", reciprocal_table(),
                              f"{name}: gemmlowp 2 / (1 + e) - 2^28 / hd")
    return {**exp, "cell_tanh": cell, "reciprocal": reciprocal}


def _fields(ctx: EmitContext, p: LstmParams, matrices: tuple[np.ndarray, np.ndarray],
            packed: tuple[np.ndarray, np.ndarray]) -> dict[str, int | str]:
    """mcuflow_dsp_lstm_t of the layer: its stacked weight matrices and their packings."""
    name = ctx.op.name
    (wx, wh), (packed_x, packed_h) = matrices, packed
    right = all(m.shift <= -1 for m in (*p.input_multipliers, *p.recurrent_multipliers))
    return {
        "batch": p.batch, "time": p.time, "features": p.features, "units": p.units,
        "time_major": int(p.time_major),
        "input": _matrix(ctx, "input_weights", wx, packed_x, "input", "in row pairs (CONV_2D)"),
        "recurrent": _matrix(ctx, "recurrent_weights", wh, packed_h, "recurrent",
                             "in row quads (FULLY_CONNECTED)"),
        "input_bias": ctx.constant("input_bias", "int32_t", p.input_bias.reshape(-1).astype(
            np.int32), f"{name}: gate biases - input zero point * row sums"),
        "recurrent_bias": ctx.constant("recurrent_bias", "int32_t", p.recurrent_bias.reshape(
            -1).astype(np.int32), f"{name}: - output zero point * recurrent row sums"),
        "input_rq": "{" + ", ".join(map(_rq, p.input_multipliers)) + "}",
        "recurrent_rq": "{" + ", ".join(map(_rq, p.recurrent_multipliers)) + "}",
        "hidden_rq": _rq(p.hidden), "right_shifts": int(right),
        **_tables(ctx, 15 + p.cell_exponent), "cell_shift": 30 + p.cell_exponent,
        "hidden_zero_point": p.hidden_zero_point, "cell_clip": p.cell_clip}


def lstm(ctx: EmitContext, input_pointer: str, output_pointer: str) -> LayerCode | None:
    """mcuflow_lstm_dsp_s8, or None (ctx.portable_reason set) where it does not apply."""
    p = prepare_lstm(ctx.graph, ctx.op)
    wx, wh = _stacked(ctx, 1), _stacked(ctx, 1 + LSTM_GATES)
    packed_x, packed_h = dsp.pack_pairs(wx, dsp.GATHER_WORDS_LANES), dsp.pack_quads(wh)
    scratch = _scratch(ctx, p)
    reason = _reason(p, wx, wh, packed_x is not None and packed_h is not None, scratch)
    if reason is not None or packed_x is None or packed_h is None:
        ctx.portable_reason = reason
        return None
    fields = _fields(ctx, p, (wx, wh), (packed_x, packed_h))
    symbol = ctx.struct("mcuflow_dsp_lstm_t", "lstm", fields)
    call = (f"{FUNCTION}(&{symbol}, {input_pointer}, {output_pointer}, "
            f"{ctx.state(ctx.op.inputs[LSTM_OUTPUT_STATE])}, "
            f"{ctx.state(ctx.op.inputs[LSTM_CELL_STATE])}, {scratch});")
    return LayerCode([call], ctx.definitions, frozenset({STEM}))
