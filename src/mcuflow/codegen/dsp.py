"""Arm DSP kernels: packed weights and exact one-multiply requantisation constants.

The kernels in codegen/kernels/mcuflow_*_dsp.c requantise an accumulator with one 64-bit
multiply-accumulate: y = floor((acc * M + C + [acc < 0] * D) / 2**S), saturated to int8.
TFLite's requantisation (MultiplyByQuantizedMultiplier's two roundings, or FULLY_CONNECTED's
double-precision round) is monotone in the accumulator, so on a channel's reachable accumulators
it is fixed by its thresholds: the smallest accumulator reaching each output level, found by
bisection over the exact function. Each threshold gives two linear constraints on C (one for
C + D below zero), and the constants are accepted only when every constraint holds: the kernel
then equals the reference on every accumulator the layer can produce.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mcuflow.ir.quantization import INT32_MAX, INT32_MIN
from mcuflow.quant.fixedpoint import (
    multiply_by_quantized_multiplier_array,
    scale_and_round_array,
)

Requantize = Callable[[np.ndarray], np.ndarray]
SAFE = 1 << 62  # |acc * M| + |C| below this leaves room for D without leaving int64
MAX_EXTRA_BITS = 34  # precision dropped from a multiplier whose addend would overflow


@dataclass(frozen=True)
class Domain:
    """Reachable accumulators of each output channel: [low, high], and the all-zero channels."""

    low: np.ndarray
    high: np.ndarray

    @property
    def constant(self) -> np.ndarray:
        """Channels whose accumulator never changes (all weights zero)."""
        return self.low == self.high


def domain(weights: np.ndarray, bias: np.ndarray) -> Domain:
    """Accumulators bias + sum(x * w) of int8 inputs x (bias has the input offset folded in)."""
    w = weights.reshape(len(weights), -1).astype(np.int64)
    low = bias + np.minimum(-128 * w, 127 * w).sum(axis=1)
    high = bias + np.maximum(-128 * w, 127 * w).sum(axis=1)
    return Domain(low, high)


def skipping_domain(weights: np.ndarray, bias: np.ndarray, input_offset: int) -> Domain:
    """Accumulators bias + sum((x + input_offset) * w) over any subset of the taps.

    The subset: the taps inside the input (the padding contributes nothing).
    """
    w = weights.reshape(len(weights), -1).astype(np.int64)
    ends = np.stack([(-128 + input_offset) * w, (127 + input_offset) * w, np.zeros_like(w)])
    return Domain(bias + ends.min(axis=0).sum(axis=1), bias + ends.max(axis=0).sum(axis=1))


@dataclass(frozen=True)
class FastRequant:
    """Per channel M, S, C (output offset included) and D, as described above."""

    multipliers: tuple[int, ...]
    exponents: tuple[int, ...]
    addends: tuple[int, ...]
    negatives: tuple[int, ...]

    @property
    def shared(self) -> bool:
        """True when every channel has the same D (kernels without a per-row D need it)."""
        return len(set(self.negatives)) <= 1

    @property
    def negative(self) -> int:
        """The layer's common D."""
        if not self.shared:
            raise ValueError("the channels' sign corrections differ")
        return self.negatives[0] if self.negatives else 0

    def words(self, doubled: bool = False) -> np.ndarray:
        """int32 [channels, 4]: M, S - 32, C low word, C high word (the kernels' layout).

        `doubled` gives the constants of the accumulator 2 * acc (exponent + 1, addend * 2).
        """
        scale = 2 if doubled else 1
        rows = []
        for m, s, c in zip(self.multipliers, self.exponents, self.addends, strict=True):
            c = c * scale
            rows.append([m, s + scale - 1 - 32, _wrap32(c), c >> 32])
        return np.array(rows, dtype=np.int64).astype(np.int32)


def _wrap32(value: int) -> int:
    return ((value + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def conv_function(multipliers: Sequence[int], shifts: Sequence[int], output_offset: int
                  ) -> Requantize:
    """TFLite MultiplyByQuantizedMultiplier plus output offset, channels on axis 0."""
    m = np.asarray(multipliers, np.int64)[:, None]
    s = np.asarray(shifts, np.int64)[:, None]
    return lambda acc: multiply_by_quantized_multiplier_array(acc, m, s) + output_offset


def conv_natural(multipliers: Sequence[int], shifts: Sequence[int]) -> list[tuple[int, int] | None]:
    """(M, S) that reproduce MultiplyByQuantizedMultiplier: its two roundings are one floor.

    floor((acc * m + 2**30 + 2**(r+30) - [acc < 0] * 2**31) / 2**(31 + r)) for right shift r >= 1
    (None for left shifts: the multiplier would need 32 bits).
    """
    return [(m, 31 - s) if s <= -1 or m == 0 else None for m, s in zip(multipliers, shifts,
                                                                        strict=True)]


def scale_function(scales: Sequence[float], output_offset: int) -> Requantize:
    """LiteRT's FULLY_CONNECTED requantisation round(double(acc) * scale) plus output offset."""
    column = np.asarray(scales, np.float64)[:, None]
    return lambda acc: scale_and_round_array(acc, column).astype(np.int64) + output_offset


def scale_natural(scales: Sequence[float]) -> list[tuple[int, int] | None]:
    """(M, S) with M / 2**S the closest 31-bit approximation of each scale below 1/2."""
    natural: list[tuple[int, int] | None] = []
    for scale in scales:
        mantissa, exponent = math.frexp(scale)
        multiplier = round(mantissa * (1 << 31))
        if multiplier == 1 << 31:
            multiplier, exponent = 1 << 30, exponent + 1
        fits = scale == 0 or 32 <= 31 - exponent <= 63
        natural.append(((multiplier, 31 - exponent) if scale else (0, 32)) if fits else None)
    return natural


def thresholds(requantize: Requantize, low: np.ndarray, high: np.ndarray,
               levels: np.ndarray) -> np.ndarray:
    """[channels, levels]: the smallest acc in [low, high] with requantize(acc) >= level.

    high + 1 where no reachable accumulator reaches the level.
    """
    lo = np.broadcast_to(low[:, None], (len(low), len(levels))).astype(np.int64)
    hi = np.broadcast_to(high[:, None] + 1, lo.shape).astype(np.int64)
    while (open_ := lo < hi).any():
        middle = (lo + hi) >> 1
        reached = requantize(middle) >= levels
        hi = np.where(open_ & reached, middle, hi)
        lo = np.where(open_ & ~reached, middle + 1, lo)
    return lo


@dataclass
class _Bounds:
    """Bounds on C for accumulators >= 0 (pos) and < 0 (neg, on C + D); None is unbounded."""

    pos_low: int | None = None
    pos_high: int | None = None
    neg_low: int | None = None
    neg_high: int | None = None

    def add(self, acc: int, lower: bool, value: int) -> None:
        if acc >= 0:
            if lower:
                self.pos_low = value if self.pos_low is None else max(self.pos_low, value)
            else:
                self.pos_high = value if self.pos_high is None else min(self.pos_high, value)
        elif lower:
            self.neg_low = value if self.neg_low is None else max(self.neg_low, value)
        else:
            self.neg_high = value if self.neg_high is None else min(self.neg_high, value)

    def feasible(self) -> bool:
        return _ordered(self.pos_low, self.pos_high) and _ordered(self.neg_low, self.neg_high)

    def magnitude(self) -> int:
        return max((abs(v) for v in (self.pos_low, self.pos_high, self.neg_low, self.neg_high)
                    if v is not None), default=0)

    def negative_range(self) -> tuple[int | None, int | None]:
        """The values of D = C_neg - C_pos both regions allow."""
        return _sub(self.neg_low, self.pos_high), _sub(self.neg_high, self.pos_low)

    def addend(self, negative: int) -> int:
        """A C inside both regions' bounds for this D (exists when D is in negative_range)."""
        low = _max(self.pos_low, _sub(self.neg_low, negative))
        high = _min(self.pos_high, _sub(self.neg_high, negative))
        if low is not None and high is not None:
            return low + (high - low) // 2
        return low if low is not None else (high if high is not None else 0)


def _ordered(low: int | None, high: int | None) -> bool:
    return low is None or high is None or low <= high


def _sub(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else (a if b is None else max(a, b))


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else (a if b is None else min(a, b))


def _bounds(row: np.ndarray, levels: np.ndarray, low: int, high: int, multiplier: int,
            exponent: int) -> _Bounds:
    """Constraints on C of one channel: g(T) >= k and g(T - 1) < k for every level k."""
    bounds = _Bounds()
    for level, threshold in zip(levels.tolist(), row.tolist(), strict=True):
        target = level << exponent
        if threshold <= high:
            bounds.add(threshold, True, target - threshold * multiplier)
        if threshold > low:
            bounds.add(threshold - 1, False, target - (threshold - 1) * multiplier - 1)
    return bounds


def _candidates(natural: tuple[int, int] | None) -> list[tuple[int, int]]:
    """(M, S) to try: the natural pair, then the same with fewer bits, then M = 0."""
    if natural is None:
        return [(0, 32)]
    multiplier, exponent = natural
    fewer = [(multiplier >> j, exponent - j) for j in range(1, MAX_EXTRA_BITS)
             if exponent - j >= 32]
    return [natural, *fewer, (0, 32)]


@dataclass(frozen=True)
class _Choice:
    multiplier: int
    exponent: int
    bounds: _Bounds


def _holds(bounds: _Bounds, multiplier: int, low: int, high: int) -> bool:
    """True when the constraints leave a C and the kernel's sums stay inside 64 bits."""
    reach = max(abs(low), abs(high))
    return bounds.feasible() and reach * multiplier + bounds.magnitude() + (1 << 32) < SAFE


def _choose(row: np.ndarray, levels: np.ndarray, low: int, high: int,
            natural: tuple[int, int] | None) -> _Choice | None:
    """The first candidate (M, S) whose constraints hold without overflowing 64 bits."""
    for multiplier, exponent in _candidates(natural):
        bounds = _bounds(row, levels, low, high, multiplier, exponent)
        if _holds(bounds, multiplier, low, high):
            return _Choice(multiplier, exponent, bounds)
    return None


_WORD = (1 << 32) - 1


def _natural_bounds(rows: np.ndarray, levels: np.ndarray, span: Domain,
                    natural: list[tuple[int, int] | None]) -> list[_Bounds | None]:
    """_bounds of every channel for its natural (M, S), all channels at once.

    The values exceed 64 bits, so each is held as a high and a low word (_words). None for a
    channel without a natural pair, or whose products T * M may leave int64.
    """
    largest = [int(v) + 1 for v in np.abs(rows).max(axis=1, initial=0).tolist()]
    usable = [pair is not None and pair[1] >= 32 and reach * pair[0] < 1 << 62
              for pair, reach in zip(natural, largest, strict=True)]
    pairs = [pair if ok else (0, 32) for pair, ok in zip(natural, usable, strict=True)]
    multipliers = np.array([m for m, _ in pairs], dtype=np.int64)[:, None]
    shifted = levels[None, :] << (np.array([e for _, e in pairs], dtype=np.int64)[:, None] - 32)
    at, below = rows, rows - 1
    lower = _words(shifted, at, multiplier=multipliers, minus=0)
    upper = _words(shifted, below, multiplier=multipliers, minus=1)
    reached, left = at <= span.high[:, None], at > span.low[:, None]
    columns = zip(_extremes(lower, reached & (at >= 0), largest=True),
                  _extremes(upper, left & (below >= 0), largest=False),
                  _extremes(lower, reached & (at < 0), largest=True),
                  _extremes(upper, left & (below < 0), largest=False), strict=True)
    return [_Bounds(*column) if ok else None
            for column, ok in zip(columns, usable, strict=True)]


def _words(shifted: np.ndarray, acc: np.ndarray, multiplier: np.ndarray, minus: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) words of shifted * 2**32 - acc * multiplier - minus, low in [0, 2**32)."""
    product = acc * multiplier
    low = -(product & _WORD) - minus
    return shifted - (product >> 32) + (low >> 32), low & _WORD


def _extremes(words: tuple[np.ndarray, np.ndarray], mask: np.ndarray, largest: bool
              ) -> list[int | None]:
    """Per row, the largest (or smallest) of the masked values; None where none is."""
    high, low = words
    fill = np.iinfo(np.int64).min if largest else np.iinfo(np.int64).max
    best = np.where(mask, high, fill)
    best = best.max(axis=1, initial=fill) if largest else best.min(axis=1, initial=fill)
    ties = np.where(mask & (high == best[:, None]), low, fill)
    ties = ties.max(axis=1, initial=fill) if largest else ties.min(axis=1, initial=fill)
    return [(b << 32) + t if any_ else None
            for b, t, any_ in zip(best.tolist(), ties.tolist(), mask.any(axis=1).tolist(),
                                  strict=True)]


def fast_requant(requantize: Requantize, span: Domain, natural: list[tuple[int, int] | None],
                 act_min: int, act_max: int, negative: int | None = None, per_row: bool = False
                 ) -> FastRequant | None:
    """Constants reproducing clamp(requantize(acc), act_min, act_max) on every reachable acc.

    All-zero channels get M = 0 and an addend giving their one output (their accumulator must
    be made 0, see `Domain.constant`). `negative` forces D; None picks one all channels accept,
    or with `per_row` one per channel (0 for all-zero channels). None when no constants are
    exact for some channel.
    """
    levels = np.arange(act_min + 1, act_max + 1, dtype=np.int64)
    rows = thresholds(requantize, span.low, span.high, levels)
    firsts = _natural_bounds(rows, levels, span, natural)
    choices: list[_Choice | int] = []
    for c, row in enumerate(rows):
        low, high = int(span.low[c]), int(span.high[c])
        if low == high:
            choices.append(act_min + int((row <= low).sum()))
            continue
        first, pair = firsts[c], natural[c]
        choice = (_Choice(*pair, first) if first is not None and pair is not None
                  and _holds(first, pair[0], low, high)
                  else _choose(row, levels, low, high, pair))
        if choice is None:
            return None
        choices.append(choice)
    live = [c for c in choices if isinstance(c, _Choice)]
    common = 0 if per_row else _pick_negative(live, negative)
    picks = [_pick_negative([c], negative) for c in live] if per_row else [common] * len(live)
    chosen = [pick for pick in picks if pick is not None]
    if common is None or len(chosen) < len(picks):
        return None
    return _constants(choices, iter(chosen), common)


def _constants(choices: list[_Choice | int], picks: Iterator[int], idle: int) -> FastRequant:
    """M, S, C and D of every channel; all-zero channels (an int: their output) get D `idle`."""
    multipliers, exponents, addends, negatives = [], [], [], []
    for choice in choices:
        if isinstance(choice, int):
            multipliers.append(0)
            exponents.append(32)
            addends.append(choice << 32)
            negatives.append(idle)
        else:
            negative = next(picks)
            multipliers.append(choice.multiplier)
            exponents.append(choice.exponent)
            addends.append(choice.bounds.addend(negative))
            negatives.append(negative)
    return FastRequant(tuple(multipliers), tuple(exponents), tuple(addends), tuple(negatives))


def _pick_negative(choices: list[_Choice], wanted: int | None) -> int | None:
    """A D every channel accepts (D <= M keeps the formula monotone), in int32."""
    low, high = INT32_MIN, INT32_MAX
    for choice in choices:
        a, b = choice.bounds.negative_range()
        low = low if a is None else max(low, a)
        high = min(high, choice.multiplier) if b is None else min(high, b, choice.multiplier)
    if low > high:
        return None
    if wanted is not None:
        return wanted if low <= wanted <= high else None
    return min(max(0, low), high)


# --- the general requantisation (any scale) ---------------------------------------------------


def exact_words(multipliers: Sequence[int], shifts: Sequence[int], output_offset: int
                ) -> np.ndarray | None:
    """int32 [channels, 4] of MCUFLOW_DSP_RQ_EXACT: multiplier, left shift, right shift, offset.

    The kernels then evaluate TFLite's MultiplyByQuantizedMultiplier itself (mcuflow_dsp_exact),
    exact on every int32 accumulator. None for a left shift of 32 or more (a C shift that wide
    is undefined).
    """
    rows = [[m, max(s, 0), max(-s, 0), output_offset]
            for m, s in zip(multipliers, shifts, strict=True)]
    if any(row[1] > 31 or row[2] > 31 for row in rows):
        return None
    return np.array(rows, dtype=np.int64).reshape(-1, 4).astype(np.int32)


@dataclass(frozen=True)
class ClampedRequant:
    """The one-multiply constants of accumulators clamped to [low, high] and shifted left.

    Outside [low, high] a channel's output is the activation's minimum (below) or maximum
    (above), so clamping changes nothing; on the short range left, the formula of acc << left
    (`requant.multipliers` hold M << left) is proven exact as for FastRequant.
    """

    requant: FastRequant
    lows: tuple[int, ...]
    highs: tuple[int, ...]
    lefts: tuple[int, ...]

    def words(self) -> np.ndarray:
        """int32 [channels, 8]: M, S - 32, C low, C high, low, high, left, D (the kernel's)."""
        rq = self.requant
        rows = []
        for c, left in enumerate(self.lefts):
            addend = rq.addends[c]
            rows.append([rq.multipliers[c] >> left, rq.exponents[c] - 32, _wrap32(addend),
                         addend >> 32, self.lows[c], self.highs[c], left, rq.negatives[c]])
        return np.array(rows, dtype=np.int64).reshape(-1, 8).astype(np.int32)


def shifted_natural(scales: Sequence[float]) -> list[tuple[int, int, int] | None]:
    """(M, S, left) with (M << left) / 2**S the closest 31-bit approximation of each scale.

    Scales from 1/2 up need the accumulator shifted left (M < 2**31 and S >= 32); None for
    scales below 2**-32 (S above 63).
    """
    natural: list[tuple[int, int, int] | None] = []
    for scale in scales:
        if scale == 0:
            natural.append((0, 32, 0))
            continue
        mantissa, exponent = math.frexp(scale)
        multiplier = round(mantissa * (1 << 31))
        if multiplier == 1 << 31:
            multiplier, exponent = 1 << 30, exponent + 1
        left = max(0, exponent + 1)
        exponent_total = 31 - exponent + left
        natural.append((multiplier, exponent_total, left) if exponent_total <= 63 else None)
    return natural


def clamped_requant(requantize: Requantize, span: Domain, scales: Sequence[float],
                    act_min: int, act_max: int) -> ClampedRequant | None:
    """Constants for clamp(requantize(acc), act_min, act_max) on any monotone `requantize`.

    Each channel's accumulators are first clamped to the range where its output is not yet
    saturated (from the thresholds of act_min + 1 and act_max), then shifted left so that the
    multiplier of a scale above 1/2 fits 31 bits. None when no constants are exact or a shifted
    accumulator would leave int32.
    """
    levels = np.arange(act_min + 1, act_max + 1, dtype=np.int64)
    if len(levels):
        rows = thresholds(requantize, span.low, span.high, levels[[0, -1]])
        lows = np.maximum(span.low, rows[:, 0] - 1)
        highs = np.minimum(span.high, rows[:, 1])
    else:  # one output level: every accumulator gives it
        lows = highs = np.asarray(span.low, np.int64)
    natural = shifted_natural(scales)
    lefts = [n[2] if n is not None and lo < hi else 0
             for n, lo, hi in zip(natural, lows.tolist(), highs.tolist(), strict=True)]
    reach = np.maximum(np.abs(lows), np.abs(highs))
    if any(int(r) << left > INT32_MAX for r, left in zip(reach.tolist(), lefts, strict=True)):
        return None
    shifted = [None if n is None else (n[0] << left, n[1] - n[2] + left)
               for n, left in zip(natural, lefts, strict=True)]
    requant = fast_requant(requantize, Domain(lows, highs), shifted, act_min, act_max,
                           per_row=True)
    if requant is None or any(m % (1 << left) for m, left in zip(requant.multipliers, lefts,
                                                                  strict=True)):
        return None
    return ClampedRequant(requant, tuple(lows.tolist()), tuple(highs.tolist()), tuple(lefts))


# --- weight layouts ----------------------------------------------------------------------------

# Column of each of the four int16 lanes of a group's two words (see mcuflow_dsp_matrix_t).
GATHER_WORDS_LANES = (0, 2, 1, 3)
NATURAL_LANES = (0, 1, 2, 3)
B_LIMIT = 1 << 23  # |sum x * b| below this keeps 256 * B inside int32


def pack_pairs(weights: np.ndarray, lanes: Sequence[int]) -> np.ndarray | None:
    """[pairs, groups, 2] uint32 words of int8 weights [rows, depth] taken in channel pairs.

    Each word holds two columns; its int16 lanes are a + 256 * b exactly (b stored minus the
    borrow of a negative a). None when some b would leave int8 (b = -128 under a negative a).
    """
    rows, depth = weights.shape
    groups = -(-depth // 4)
    padded = np.zeros((rows + rows % 2, 4 * groups), np.int64)
    padded[:rows, :depth] = weights
    a = padded[0::2].reshape(-1, groups, 4)[:, :, list(lanes)]
    b = padded[1::2].reshape(-1, groups, 4)[:, :, list(lanes)] - (a < 0)
    if (b < -128).any():
        return None
    lanes16 = (a & 0xFF) | ((b & 0xFF) << 8)  # [pairs, groups, 4 lanes]
    words = lanes16[:, :, 0::2] | (lanes16[:, :, 1::2] << 16)
    return words.astype(np.uint32)


def pack_quads(weights: np.ndarray) -> np.ndarray | None:
    """FULLY_CONNECTED layout: rows padded to 4, per group the two words of pair 2q, 2q + 1."""
    rows, depth = weights.shape
    padded = np.zeros((-(-rows // 4) * 4, depth), np.int64)
    padded[:rows] = weights
    pairs = pack_pairs(padded, GATHER_WORDS_LANES)
    if pairs is None:
        return None
    quads, groups = len(pairs) // 2, pairs.shape[1]
    return pairs.reshape(quads, 2, groups, 2).transpose(0, 2, 1, 3).copy()


def chunk_groups(weights: np.ndarray) -> int:
    """Groups of 4 columns after which the kernels must extract B (the odd channels' sums)."""
    rows, depth = weights.shape
    b = np.abs(weights[1::2].astype(np.int64))
    if len(b) == 0 or int(128 * b.sum(axis=1).max()) < B_LIMIT:
        return max(-(-depth // 4), 1)
    return 128  # 512 columns: 512 * 128 * 127 < 2**23


def dw_pixel_taps(weights: np.ndarray) -> np.ndarray:
    """[groups, taps, 2] uint32 of depthwise weights [1, KH, KW, C], channels padded to 4.

    Per group of 4 channels and tap (row-major) the int16 pairs (2 w_c0, 2 w_c2) and
    (2 w_c1, 2 w_c3).
    """
    _, kh, kw, channels = weights.shape
    padded = np.zeros((kh * kw, -(-channels // 4) * 4), np.int64)
    padded[:, :channels] = 2 * weights.reshape(kh * kw, channels).astype(np.int64)
    quads = padded.reshape(kh * kw, -1, 4) & 0xFFFF
    pairs = np.stack([quads[:, :, 0] | (quads[:, :, 2] << 16),
                      quads[:, :, 1] | (quads[:, :, 3] << 16)], axis=2)
    return pairs.transpose(1, 0, 2).astype(np.uint32)


def dw_pixel_records(weights: np.ndarray, bias2: np.ndarray, words: np.ndarray) -> np.ndarray:
    """[groups, 4 + 2 taps + 16] int32 records of mcuflow_dwconv_dsp_s8 (MCUFLOW_DSP_DWP_WORDS).

    Per group of 4 channels (padded with zeros) the doubled bias `bias2` of its channels, its
    taps (dw_pixel_taps), then the requantisation words [channels, 4] of its channels.
    """
    taps = dw_pixel_taps(weights).view(np.int32)
    groups = len(taps)
    padded = groups * 4
    bias = np.zeros(padded, np.int64)
    bias[:len(bias2)] = bias2
    rq = np.zeros((padded, words.shape[1]), np.int64)
    rq[:len(words)] = words
    return np.concatenate([bias.reshape(groups, 4), taps.reshape(groups, -1),
                           rq.reshape(groups, -1)], axis=1).astype(np.int32)


def dw_taps(weights: np.ndarray) -> np.ndarray:
    """[channels, 6] uint32 taps of 3x3 depthwise weights [1, 3, 3, C].

    Per kernel row the int16 pairs (2 w0, 2 w1) and (2 w1, 2 w2): doubled weights.
    """
    w = 2 * weights.reshape(3, 3, -1).astype(np.int64).transpose(2, 0, 1)  # [C, ky, kx]
    first = (w[:, :, 0] & 0xFFFF) | ((w[:, :, 1] & 0xFFFF) << 16)
    second = (w[:, :, 1] & 0xFFFF) | ((w[:, :, 2] & 0xFFFF) << 16)
    return np.stack([first, second], axis=2).reshape(len(w), 6).astype(np.uint32)


def dense_depthwise(weights: np.ndarray, multiplier: int) -> np.ndarray:
    """[C * multiplier, KH, KW, C] CONV_2D weights of depthwise weights [1, KH, KW, C * m].

    Output channel o keeps its taps in input channel o // multiplier, zeros elsewhere: the
    convolution then computes exactly the depthwise accumulators.
    """
    _, kh, kw, out_c = weights.shape
    dense = np.zeros((out_c, kh, kw, out_c // multiplier), weights.dtype)
    channels = np.arange(out_c)
    dense[channels, :, :, channels // multiplier] = np.moveaxis(weights[0], 2, 0)
    return dense
