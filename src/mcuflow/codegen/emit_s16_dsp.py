"""C emitters of the int16x8 Arm DSP kernels (mcuflow_s16_dsp.c); None where they do not apply.

The kernels accumulate int16 x int8 products in int32 with SMLAD, so an emitter first proves
from the weights that no dot product of the layer can leave int32 for any int16 input (the
bias is added in int64 afterwards); otherwise it finds chunks of columns whose sums can't
(chunk_groups), which the kernel adds up in int64. CONV_2D requantises with LiteRT's int64
MultiplyByQuantizedMultiplier folded into one multiply-accumulate (S16Requant);
FULLY_CONNECTED decides LiteRT's double-precision round in integers where it provably can
(fc_requant), else rounds in double precision itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mcuflow.codegen.context import EmitContext, LayerCode
from mcuflow.codegen.emit_dsp import _decline, _no_scratch, _scratch
from mcuflow.hw.layouts import dsp_groups, s16_row_words
from mcuflow.memory.scratch import scratch_bytes
from mcuflow.ref.int16x8 import prepare_conv_s16, prepare_fully_connected_s16

STEM = "mcuflow_s16_dsp"
RQ_WORDS = 4  # MCUFLOW_S16_DSP_RQ_WORDS
SAFE = 1 << 62  # |acc * M| and |addend| below this keep t inside int64
INT16_LOW, INT16_HIGH = -32768, 32767


def sum_range(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row the smallest and largest dot product with any int16 vector.

    The largest takes 32767 where the weight is positive and -32768 where it is negative; the
    smallest the opposite.
    """
    w = matrix.reshape(len(matrix), -1).astype(np.int64)
    positive, negative = np.where(w > 0, w, 0).sum(axis=1), np.where(w < 0, -w, 0).sum(axis=1)
    return (INT16_LOW * positive - INT16_HIGH * negative,
            INT16_HIGH * positive - INT16_LOW * negative)


def int32_sums(matrix: np.ndarray) -> bool:
    """True when every row's dot product with any int16 vector stays inside int32.

    Partial sums may wrap (SMLAD wraps): only the total counts.
    """
    low, high = sum_range(matrix)
    return bool((high < 1 << 31).all() and (low >= -(1 << 31)).all())


@dataclass(frozen=True)
class S16Requant:
    """Words [channels, RQ_WORDS] of CONV_2D's requantisation and whether it is `wide`.

    LiteRT computes (acc + bias) * R + 2^(T-1) >> T (R the Q31 multiplier rounded to Q15,
    T = 15 - shift) and converts to int32. With addend = bias * R + 2^(T-1) that is
    t = acc * R + addend shifted by T; when R << (32 - T) is below 2^31 for every channel and
    acc is int32, both are scaled by 2^(32 - T), so the result is t's high word exactly (it
    always fits in int32, so the conversion changes nothing). Otherwise `wide`: t >> T
    converted to int32.
    """

    words: np.ndarray
    wide: bool


def s16_requant(multipliers: tuple[int, ...], shifts: tuple[int, ...], bias: np.ndarray,
                reach: int = 1 << 31) -> S16Requant | None:
    """The requantisation words of a 16x8 CONV_2D, None when t could leave int64.

    `reach` bounds |acc|; above 2^31 (int64 sums of int32 chunks) the words are `wide`.
    """
    m = np.asarray(multipliers, np.int64)
    reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - np.asarray(shifts, np.int64)
    if (total < 1).any() or (total > 62).any():
        return None
    addend = [int(b) * int(r) + (1 << (int(t) - 1))
              for b, r, t in zip(bias, reduced, total, strict=True)]
    scale = [32 - int(t) for t in total]
    wide = reach > 1 << 31 or any(s < 0 or int(r) << s >= 1 << 31
                                  for r, s in zip(reduced, scale, strict=True))
    reduced_words = [int(r) for r in reduced]
    if not wide:
        reduced_words = [r << s for r, s in zip(reduced_words, scale, strict=True)]
        addend = [a << s for a, s in zip(addend, scale, strict=True)]
    if any(abs(a) >= SAFE or reach * r >= SAFE for a, r in zip(addend, reduced_words,
                                                                strict=True)):
        return None
    words = np.zeros((len(m), RQ_WORDS), np.int64)
    words[:, 0] = reduced_words
    words[:, 1] = total
    words[:, 2] = [a & 0xFFFFFFFF for a in addend]
    words[:, 3] = [(a >> 32) & 0xFFFFFFFF for a in addend]
    return S16Requant(((words + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32), wide)


def chunk_groups(columns: np.ndarray) -> int:
    """Groups of 4 columns whose sums fit in int32, in every chunk of that many (0: all).

    `columns` [rows, columns] in the kernel's order. Each chunk's int32 sum is added to an
    int64 accumulator when the whole dot product can leave int32.
    """
    if int32_sums(columns):
        return 0
    groups = -(-columns.shape[1] // 4)
    padded = np.zeros((len(columns), 4 * groups), np.int64)
    padded[:, :columns.shape[1]] = columns
    low, high = sum_range(padded.reshape(len(columns) * groups, 4))
    zero = np.zeros((len(columns), 1), np.int64)
    lows = np.hstack([zero, np.cumsum(low.reshape(len(columns), groups), axis=1)])
    highs = np.hstack([zero, np.cumsum(high.reshape(len(columns), groups), axis=1)])
    for size in range(groups, 0, -1):
        starts = np.arange(0, groups, size)
        ends = np.minimum(starts + size, groups)
        if ((highs[:, ends] - highs[:, starts]) < 1 << 31).all() and (
                (lows[:, ends] - lows[:, starts]) >= -(1 << 31)).all():
            return size
    raise ValueError("one group of int8 weights always fits in int32")


def reach_of(columns: np.ndarray) -> int:
    """The largest |dot product| of any row with an int16 vector."""
    low, high = sum_range(columns)
    return int(max(-low.min(), high.max()))


FC_WORDS = 6  # MCUFLOW_S16_DSP_FC_WORDS
SMALL_GROUPS = 4  # with fc_requant words, up to this many groups run unit by unit, row in registers
FC_MAX_SCALE = 0.25  # larger scales leave no shift bit below t's high word
FC_MAX_GAP = 1 << 28  # a wider ambiguous band would send too many outputs to the slow path


def fc_unit_words(scale: float, bias: int, reach: int) -> list[int] | None:
    """[M, r, C low, C high, E, span] of one unit (see fc_requant), or None.

    M / 2^S approximates the scale with M in [2^30, 2^31), S = 32 + r; C = bias * M + 2^(S-1)
    so that t = sum * M + C is (acc + 1/2) * 2^S up to the approximation. `reach` bounds |acc|.
    """
    if not 0.0 < scale < FC_MAX_SCALE:
        return None
    exact = Fraction(scale)
    exponent = min(31 - math.frexp(scale)[1], 63)
    multiplier = round(exact * (1 << exponent))
    if multiplier >= 1 << 31:
        exponent, multiplier = exponent - 1, round(exact * (1 << (exponent - 1)))
    if exponent <= 32:
        return None
    error = reach * abs(Fraction(multiplier, 1 << exponent) - exact) + reach * exact / (1 << 52)
    gap = math.floor(error * (1 << 32)) + 2
    addend = bias * multiplier + (1 << (exponent - 1))
    if gap >= FC_MAX_GAP or reach * multiplier + abs(addend) >= SAFE:
        return None
    return [multiplier, exponent - 32, addend & 0xFFFFFFFF, (addend >> 32) & 0xFFFFFFFF, gap,
            (1 << 32) - 2 * gap - 1]


def fc_requant(scales: tuple[float, ...], bias: np.ndarray, weights: np.ndarray
               ) -> np.ndarray | None:
    """int32 [units, FC_WORDS] deciding LiteRT's round(double(acc) * scale) by integers.

    v = t / 2^S is within e of fl(acc * scale) + 1/2 for every reachable acc (e: the
    multiplier's error times |acc| plus the double product's rounding), so floor(v) is
    LiteRT's result whenever v's fraction is at least e away from an integer: the kernel takes
    the top 32 bits of the fraction and finishes in integers when they lie in [E, 2^32 - E - 1]
    (E > e * 2^32), else runs the double-precision round itself. None when some unit has no
    such words (a scale of 1/4 or more).
    """
    low, high = sum_range(weights)
    rows = []
    for u, scale in enumerate(scales):
        reach = max(abs(int(low[u]) + int(bias[u])), abs(int(high[u]) + int(bias[u])))
        words = fc_unit_words(scale, int(bias[u]), reach)
        if words is None:
            return None
        rows.append(words)
    table = np.array(rows, dtype=np.int64)
    return ((table + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def pack_s16(matrix: np.ndarray, block: int) -> np.ndarray:
    """int16 pair words of `matrix` [rows, columns] in the kernels' order (uint32).

    Rows padded with zeros to a multiple of `block`, columns to a multiple of 4; per block of
    rows, per group of 4 columns, each row's words (c0, c1) and (c2, c3).
    """
    rows, columns = matrix.shape
    padded = np.zeros((-(-rows // block) * block, -(-columns // 4) * 4), np.int16)
    padded[:rows, :columns] = matrix
    blocks = padded.reshape(len(padded) // block, block, -1, 4).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(blocks).reshape(-1).view(np.uint32)


def conv_columns(weights: np.ndarray, dilation_w: int) -> np.ndarray:
    """[out_c, columns]: the weights in the kernel's im2col order, zero where it pads.

    Per window row s16_row_words pairs: dilation_w 1 the row's k_w * in_c weights (an odd
    count completed by a zero), else each tap's in_c weights completed to even.
    """
    rows, k_h, k_w, in_c = weights.shape
    row_words = s16_row_words(k_w, in_c, dilation_w)
    taps = weights.astype(np.int64)
    if dilation_w != 1:
        taps = np.zeros((rows, k_h, k_w, 2 * ((in_c + 1) // 2)), np.int64)
        taps[..., :in_c] = weights
    flat = taps.reshape(rows, k_h, -1)
    padded = np.zeros((rows, k_h, 2 * row_words), np.int64)
    padded[..., :flat.shape[2]] = flat
    return padded.reshape(rows, -1)


def _bias(ctx: EmitContext, units: int) -> np.ndarray:
    if len(ctx.op.inputs) > 2:
        return ctx.input(2).data.astype(np.int64).reshape(-1)
    return np.zeros(units, np.int64)


def conv2d(ctx: EmitContext, window: str) -> LayerCode | None:
    """16x8 CONV_2D as a 2 x 2 blocked matrix product over int16 im2col columns."""
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    rows, k_h = weights.shape[:2]
    params = prepare_conv_s16(x, weights, out, ctx.op.attrs)
    matrix = conv_columns(weights.data, ctx.op.attrs.dilation_w)
    chunk = chunk_groups(matrix)
    reach = reach_of(matrix) if chunk else 1 << 31
    requant = s16_requant(params.multipliers, params.shifts, _bias(ctx, rows), reach)
    if requant is None:
        return _decline(ctx, "a requantisation whose int64 terms could overflow")
    columns = _scratch(ctx, scratch_bytes(ctx.graph, ctx.op, ctx.inplace, dsp=True),
                       "mcuflow_word_t")
    if columns is None:
        return _decline(ctx, _no_scratch(ctx))
    name = ctx.op.name
    packed = ctx.constant("weights", "int32_t", pack_s16(matrix, 2).view(np.int32),
                          f"{name}: int8 weights as int16 pairs, channel pair by pair")
    rq = ctx.constant("rq", "int32_t", requant.words,
                      f"{name}: multiplier, shift, addend low and high per channel")
    groups = dsp_groups(matrix.shape[1])
    p = ctx.struct("mcuflow_s16_dsp_t", "s16", {
        "weights": f"(const uint32_t *){packed}", "rq": rq, "rows": rows, "groups": groups,
        "row_words": matrix.shape[1] // (2 * k_h), "wide": int(requant.wide),
        **({"chunk_groups": chunk} if chunk else {}),
        "act_min": params.act_min, "act_max": params.act_max})
    call = (f"mcuflow_conv2d_s16_dsp(&{window}, &{p}, {ctx.pointer(ctx.op.inputs[0], 'S16')}, "
            f"{ctx.pointer(ctx.op.outputs[0], 'S16')}, {columns});")
    return LayerCode([call], ctx.definitions, frozenset({STEM}))


def fully_connected(ctx: EmitContext) -> LayerCode | None:
    """16x8 FULLY_CONNECTED as a matrix-vector product, four units per pass over the row."""
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    units, depth = weights.shape
    chunk = chunk_groups(weights.data)
    row = _scratch(ctx, scratch_bytes(ctx.graph, ctx.op, ctx.inplace, dsp=True),
                   "mcuflow_word_t")
    if row is None:
        return _decline(ctx, _no_scratch(ctx))
    params = prepare_fully_connected_s16(x, weights, out, ctx.op.attrs)
    name = ctx.op.name
    words = None if chunk else fc_requant(params.scales, _bias(ctx, units), weights.data)
    block = 1 if words is not None and dsp_groups(depth) <= SMALL_GROUPS else 4
    packed = ctx.constant("weights", "int32_t", pack_s16(weights.data, block).view(np.int32),
                          f"{name}: int8 weights as int16 pairs, {block} unit(s) at a time")
    act = (params.act_min, params.act_max)
    fields: dict[str, int | str] = {
        "weights": f"(const uint32_t *){packed}", "rows": units, "groups": dsp_groups(depth),
        "depth": depth, "act_min": act[0], "act_max": act[1]}
    if chunk:
        fields["chunk_groups"] = chunk
    if words is not None:
        fields["rq"] = ctx.constant("rq", "int32_t", words, f"{name}: multiplier, shift - 32, "
                                    "addend low and high, band edge and width per unit")
    if len(ctx.op.inputs) > 2:
        fields["bias"] = ctx.constant("bias", "int64_t", _bias(ctx, units),
                                      f"{name}: int64 bias")
    fields["scales"] = ctx.constant("scale", "double", np.array(params.scales, np.float64),
                                    f"{name}: double-precision output scales")
    p = ctx.struct("mcuflow_s16_dsp_t", "s16", fields)
    call = (f"mcuflow_fully_connected_s16_dsp({x.size // depth}, &{p}, "
            f"{ctx.pointer(x.name, 'S16')}, {ctx.pointer(ctx.op.outputs[0], 'S16')}, {row});")
    return LayerCode([call], ctx.definitions, frozenset({STEM}))
