"""Shared pieces of the reference kernels: Prepare helpers, exact tables, windows, float helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError, constraint, int8_quant
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.quant.fixedpoint import (
    multiply_by_quantized_multiplier_array,
    per_channel_multipliers,
)
from mcuflow.ref.registry import PreparedFn

_FLOAT32_EXACT = 1 << 24
_FLOAT64_EXACT = 1 << 53

Requantize = Callable[[np.ndarray], np.ndarray]
"""Exact requantisation of true accumulators laid out [channel, k] to unclamped int64 outputs."""


INT8_VALUES = np.arange(-128, 128, dtype=np.int8)


class ByteTable:
    """An op of one int8 input prepared as a table of its output for each of the 256 inputs.

    The table is the exact kernel applied once to every int8 value at prepare time, stored in
    the order of the input's byte (x & 0xFF), so a run is one look-up.
    """

    def __init__(self, function: Callable[[np.ndarray], np.ndarray]) -> None:
        self._table = np.roll(function(INT8_VALUES), 128)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The op's output on int8 `x`."""
        return self._table.take(x.view(np.uint8))


class PairTable:
    """An op of two int8 inputs prepared as a table of its output for each of the 65536 pairs.

    As ByteTable: the exact kernel on every pair, indexed by the two bytes, so a run is one
    index computation and one look-up per element (numpy broadcasting) instead of a dozen int64
    passes.
    """

    def __init__(self, function: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        first, second = np.meshgrid(INT8_VALUES, INT8_VALUES, indexing="ij")
        self._table = np.roll(function(first, second), (128, 128), axis=(0, 1)).ravel()

    def __call__(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        """The op's output on int8 x1 and x2."""
        high = np.left_shift(x1.view(np.uint8), 8, dtype=np.uint16)
        return self._table.take(np.bitwise_or(high, x2.view(np.uint8)))


def byte_kernel(function: Callable[[np.ndarray], np.ndarray]) -> PreparedFn:
    """The prepared run function of a one-input int8 op, through its ByteTable."""
    table = ByteTable(function)
    return lambda inputs: [table(inputs[0])]


def pair_kernel(function: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> PreparedFn:
    """The prepared run function of a two-input int8 op, through its PairTable."""
    table = PairTable(function)
    return lambda inputs: [table(inputs[0], inputs[1])]


def require_int8(op: Operator, *tensors: Tensor) -> None:
    """Assert that an op's activations and weights are int8 (the only type these kernels run).

    The support constraints (int8_activations, constant_int8_weights) refuse anything else.
    """
    for tensor in tensors:
        if tensor.dtype is not DType.INT8:
            raise UncheckedModelError(
                f"{op.kind.value} '{op.name}': tensor '{tensor.name}' is {tensor.dtype.value}")


def require_copied(op: Operator, *tensors: Tensor) -> None:
    """Assert that a data-movement op's activations are int8, or all int16 (values copied).

    The support constraints (int8_activations, int16_activations) refuse anything else.
    """
    if {tensor.dtype for tensor in tensors} != {DType.INT16}:
        require_int8(op, *tensors)


def require_constant(op: Operator, tensor: Tensor) -> np.ndarray:
    """The data of a weight or bias tensor, which the support constraints require constant."""
    if tensor.data is None:
        raise UncheckedModelError(
            f"{op.kind.value} '{op.name}': tensor '{tensor.name}' is not a constant")
    return tensor.data


def quant_of(tensor: Tensor) -> QuantParams:
    """A tensor's quantisation parameters, which the support constraints require."""
    if tensor.quant is None:
        raise UncheckedModelError(f"tensor '{tensor.name}' has no quantisation parameters")
    return tensor.quant


@dataclass(frozen=True)
class RequantizeParams:
    """out = clamp(MBQM(x - input_zero_point, multiplier, shift) + output_zero_point, min, max).

    Used by RELU, RELU6 (clamped to the activation range) and int8 -> int8 QUANTIZE.
    """

    input_zero_point: int
    output_zero_point: int
    multiplier: int
    shift: int
    act_min: int
    act_max: int


def requantize_array(x: np.ndarray, params: RequantizeParams) -> np.ndarray:
    """reference_ops::ReluX / Requantize over a whole tensor (int64 result)."""
    shifted = np.asarray(x, dtype=np.int64) - params.input_zero_point
    scaled = multiply_by_quantized_multiplier_array(shifted, params.multiplier, params.shift)
    return np.clip(scaled + params.output_zero_point, params.act_min, params.act_max)


def exact_float_dtype(max_abs_sum: int) -> np.dtype:
    """float32 when every partial sum of the integer products stays below 2**24, else float64.

    Below that bound float arithmetic on integers is exact whatever order BLAS sums in, so a
    float matrix product gives the int32 accumulator to the bit.
    """
    if max_abs_sum < _FLOAT32_EXACT:
        return np.dtype(np.float32)
    assert max_abs_sum < _FLOAT64_EXACT, "accumulator beyond exact float64 range"
    return np.dtype(np.float64)


def accumulator_bounds(
    weights: np.ndarray, bias: np.ndarray | None, input_offset: int
) -> np.ndarray:
    """Per channel, a bound of |sum(w * (x + input_offset)) + bias| over every int8 input x.

    `weights` are [channels, depth] (any integer type), `bias` [channels] or None; int64 result.
    """
    weights64 = np.asarray(weights, dtype=np.int64)
    bias64 = (np.zeros(len(weights64), np.int64) if bias is None
              else np.asarray(bias, dtype=np.int64).reshape(-1))
    largest_input = max(abs(127 + input_offset), abs(-128 + input_offset))
    return np.abs(weights64).sum(axis=1) * largest_input + np.abs(bias64)


def overflowing_channel(bounds: np.ndarray, shifts: np.ndarray | int) -> int | None:
    """The first channel whose accumulator bound, left-shifted as LiteRT does, reaches 2**31.

    MultiplyByQuantizedMultiplier shifts left by a positive shift in int32 before multiplying.
    None when no channel overflows.
    """
    shift = np.clip(np.broadcast_to(np.asarray(shifts, dtype=np.int64), np.shape(bounds)), 0, 32)
    limit = np.where(shift > 31, 1, np.left_shift(1, 31 - np.minimum(shift, 31)))
    over = np.flatnonzero(np.asarray(bounds, dtype=np.int64) >= limit)
    return int(over[0]) if over.size else None


def weights_by_channel(kind: OpKind, weights: np.ndarray) -> np.ndarray:
    """int64 weights [output channels, depth] of a weighted op's filter.

    The filter is [O,KH,KW,C] (CONV_2D), [1,KH,KW,O] (DEPTHWISE_CONV_2D) or [O,K] (FC).
    """
    weights64 = np.asarray(weights, dtype=np.int64)
    if kind is OpKind.DEPTHWISE_CONV_2D:
        return weights64.reshape(-1, weights64.shape[-1]).T
    return weights64.reshape(weights64.shape[0], -1)


@dataclass(frozen=True)
class Accumulators:
    """Per-channel facts about `acc = sum(w * (x + input_offset)) + bias` for int8 x.

    Kernels compute the raw sum `sum(w * x)`; `offsets` turns it into the true accumulator
    (true = raw + offsets), `bounds` bounds |true| and `reach` bounds |raw|.
    """

    offsets: np.ndarray
    bounds: np.ndarray
    reach: np.ndarray

    @classmethod
    def of(cls, weights: np.ndarray, bias: np.ndarray | None, input_offset: int) -> Accumulators:
        """Facts for int64 weights [channels, depth] and an optional bias [channels]."""
        bias64 = np.zeros(len(weights), np.int64) if bias is None else bias.astype(np.int64)
        return cls(
            offsets=bias64 + input_offset * weights.sum(axis=1),
            bounds=accumulator_bounds(weights, bias, input_offset),
            reach=np.abs(weights).sum(axis=1) * 128,
        )

    @property
    def dtype(self) -> np.dtype:
        """The float type in which the raw sums are exact."""
        return exact_float_dtype(int(self.reach.max(initial=0)))


class Requantizer:
    """Exact accumulator -> int8 requantisation through per-channel bucket tables.

    Every TFLite requantisation used here is monotone non-decreasing in the accumulator, so a
    channel's outputs are fixed by its thresholds: the smallest reachable accumulator reaching each
    output level, found once by bisection over the exact fixed-point function. Accumulators between
    the first and the last threshold are cut into buckets of 2**b values, 2**b being at most the
    gap between distinct thresholds, so a bucket holds at most one step. At run time an output is
    a bucket look-up plus one comparison, equal to the exact function on every reachable
    accumulator, and far cheaper than a dozen int64 passes.
    """

    def __init__(
        self, requantize: Requantize, facts: Accumulators, act_min: int, act_max: int,
        shape: tuple[int, ...], guess: np.ndarray,
    ) -> None:
        true = _bisect(requantize, facts.bounds, np.arange(act_min + 1, act_max + 1), guess)
        raw = np.clip(true - facts.offsets[:, None], -facts.reach[:, None] - 1,
                      facts.reach[:, None] + 1)
        channels = [_buckets(row, act_min) for row in raw]
        sizes = [len(c.steps) for c in channels]
        self._steps = np.concatenate([c.steps for c in channels]).astype(np.int32)
        self._values = np.concatenate([c.values for c in channels])
        # Per-channel constants tiled to the full shape: numpy broadcasting a short channel axis
        # runs inner loops of a few elements and is several times slower.
        self._low, self._high, self._bits, self._base = (
            np.broadcast_to(np.asarray(column, np.int32), shape).copy()
            for column in ([c.low for c in channels], [c.high for c in channels],
                           [c.bits for c in channels], np.cumsum([0, *sizes[:-1]]))
        )
        self._acc, self._index, self._step = (np.empty(shape, np.int32) for _ in range(3))
        self._above = np.empty(shape, np.bool_)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """int8 outputs of raw accumulators (exact integers, any dtype) of the prepared shape."""
        acc, index, step, above = self._acc, self._index, self._step, self._above
        np.copyto(acc, raw, casting="unsafe")
        np.maximum(acc, self._low, out=acc)
        np.minimum(acc, self._high, out=acc)
        np.subtract(acc, self._low, out=index)
        index >>= self._bits
        index += self._base
        self._steps.take(index, out=step)
        np.greater_equal(acc, step, out=above)
        index <<= 1
        index += above
        return self._values.take(index)


@dataclass(frozen=True)
class _ChannelBuckets:
    low: int
    high: int
    bits: int
    steps: np.ndarray
    values: np.ndarray


def _buckets(thresholds: np.ndarray, act_min: int) -> _ChannelBuckets:
    """Bucket table of one channel: output = act_min + #{thresholds <= acc}."""
    if not len(thresholds):
        return _ChannelBuckets(0, 0, 0, np.zeros(1, np.int64), np.full(2, act_min, np.int8))
    low, high = int(thresholds[0]) - 1, int(thresholds[-1])
    distinct = np.unique(thresholds)
    gap = int(np.diff(distinct).min()) if len(distinct) > 1 else high - low + 1
    bits = gap.bit_length() - 1
    starts = low + (np.arange(((high - low) >> bits) + 1, dtype=np.int64) << bits)
    ends = np.minimum(starts + (1 << bits) - 1, high)
    first = np.searchsorted(thresholds, starts, side="right")
    last = np.searchsorted(thresholds, ends, side="right")
    steps = np.where(last > first, thresholds[np.maximum(last - 1, 0)], starts)
    values = (act_min + np.stack([first, last], axis=1).ravel()).astype(np.int8)
    return _ChannelBuckets(low, high, bits, steps, values)


def _bisect(
    requantize: Requantize, bounds: np.ndarray, levels: np.ndarray, guess: np.ndarray
) -> np.ndarray:
    """Smallest accumulator in [-bound, bound] reaching each level (bound + 1 when none does).

    The search starts in a few units around `guess` [channel, level] and falls back to the whole
    range wherever that bracket does not hold the answer.
    """
    floor, ceiling = -bounds[:, None], bounds[:, None] + 1
    estimate = np.clip(np.nan_to_num(guess), floor - 8, ceiling + 8).astype(np.int64)
    low = np.clip(estimate - 4, floor, ceiling)
    high = np.clip(estimate + 4, floor, ceiling)
    below = (low == floor) | (requantize(np.maximum(low - 1, floor)) < levels)
    above = (high == ceiling) | (requantize(np.minimum(high, ceiling - 1)) >= levels)
    low = np.where(below & above, low, floor)
    high = np.where(below & above, high, ceiling)
    while True:
        open_ = low < high
        if not open_.any():
            return low
        middle = (low + high) >> 1
        reached = requantize(middle) >= levels
        high = np.where(open_ & reached, middle, high)
        low = np.where(open_ & ~reached, middle + 1, low)


def check_accumulator_bounds(op_name: str, bounds: np.ndarray, shifts: np.ndarray) -> None:
    """Assert that the int32 accumulator (and its left-shifted copy) cannot overflow.

    The int32_accumulator support constraint refuses such a layer, with the same arithmetic.
    """
    channel = overflowing_channel(bounds, shifts)
    if channel is not None:
        raise UncheckedModelError(
            f"'{op_name}': the int32 accumulator of channel {channel} can overflow")


@constraint(OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED)
def int32_accumulator(graph: Graph, op: Operator) -> str | None:
    """The int32 accumulator must not overflow, as LiteRT assumes.

    In every output channel, the sum of absolute weights times the largest absolute input minus
    input zero point, plus the absolute bias, doubled per left shift of a requantisation
    multiplier above 1, must stay below 2**31 (this also bounds the bias with the input offset
    folded in). Reduce the layer's depth or its bias.
    """
    operands = _weighted_operands(graph, op)
    if operands is None:
        return None
    (x_q, w_q, out_q), weights, bias = operands
    matrix = weights_by_channel(op.kind, weights)
    bounds = accumulator_bounds(matrix, bias, -x_q.zero_point0)
    shifts = (np.zeros(len(matrix), np.int64) if op.kind is OpKind.FULLY_CONNECTED
              else np.asarray(per_channel_multipliers(
                  x_q.scale0, w_q.scale, out_q.scale0, len(matrix)).shifts, np.int64))
    channel = overflowing_channel(bounds, shifts)
    if channel is None:
        return None
    reach = int(bounds[channel]) << max(int(shifts[channel]), 0)
    return f"accumulator bound {reach:,} in output channel {channel} found"


def _weighted_operands(
    graph: Graph, op: Operator
) -> tuple[list[QuantParams], np.ndarray, np.ndarray | None] | None:
    """(input, weights, output quantisation), weight and bias data of a weighted op.

    None when the op fails the constraints on its operands (which report that).
    """
    quant = int8_quant(graph, op.inputs[0], op.inputs[1], op.outputs[0])
    weights = graph.tensors[op.inputs[1]]
    if quant is None or weights.data is None:
        return None
    channels = weights.shape[-1 if op.kind is OpKind.DEPTHWISE_CONV_2D else 0]
    if len(quant[1].scale) not in (1, channels):
        return None
    bias = None
    if len(op.inputs) > 2:
        tensor = graph.tensors[op.inputs[2]]
        if tensor.data is None or tensor.dtype is not DType.INT32 or tensor.shape != (channels,):
            return None
        bias = tensor.data
    return quant, weights.data, bias


Pair = tuple[int, int]


@dataclass(frozen=True)
class Geometry:
    """Spatial geometry of a windowed op over an NHWC input (conv, depthwise conv, pool)."""

    in_hw: Pair
    out_hw: Pair
    kernel_hw: Pair
    strides: Pair
    dilations: Pair
    before: Pair  # implicit padding before the first row and column

    def pads(self) -> tuple[Pair, Pair]:
        """(before, after) padding of height and width so that every output window fits."""
        pads = []
        for axis in range(2):
            needed = ((self.out_hw[axis] - 1) * self.strides[axis]
                      + (self.kernel_hw[axis] - 1) * self.dilations[axis] + 1)
            after = max(0, needed - self.before[axis] - self.in_hw[axis])
            pads.append((self.before[axis], after))
        return pads[0], pads[1]


class WindowedInput:
    """A reused NHWC buffer with a constant border (TFLite's skipped taps) and its window view.

    `channel_repeat` repeats every input channel that many times (depthwise multipliers).
    The buffer is overwritten by each `load`, so prepared kernels are not re-entrant.
    """

    def __init__(
        self, shape: tuple[int, ...], geometry: Geometry, fill: int, dtype: np.dtype,
        channel_repeat: int = 1,
    ) -> None:
        n, h, w, c = shape
        (top, bottom), (left, right) = geometry.pads()
        channels = c * channel_repeat
        self.buffer = np.full((n, h + top + bottom, w + left + right, channels), fill, dtype)
        interior = self.buffer[:, top:top + h, left:left + w, :]
        self._interior = interior.reshape(n, h, w, c, channel_repeat)
        assert np.shares_memory(self._interior, self.buffer), "interior must be a view"
        sn, sh, sw, sc = self.buffer.strides
        (stride_h, stride_w), (dilation_h, dilation_w) = geometry.strides, geometry.dilations
        self.windows = np.lib.stride_tricks.as_strided(
            self.buffer, (n, *geometry.out_hw, *geometry.kernel_hw, channels),
            (sn, sh * stride_h, sw * stride_w, sh * dilation_h, sw * dilation_w, sc),
            writeable=False,
        )

    def load(self, x: np.ndarray) -> np.ndarray:
        """Copy `x` into the buffer and return the window view [N, OH, OW, KH, KW, C]."""
        np.copyto(self._interior, x[..., None])
        return self.windows


def apply_activation(x: np.ndarray, activation: Activation) -> np.ndarray:
    """A fused activation applied to float values."""
    bounds = {
        Activation.NONE: None,
        Activation.RELU: (0.0, None),
        Activation.RELU6: (0.0, 6.0),
        Activation.RELU_N1_TO_1: (-1.0, 1.0),
    }[activation]
    return x if bounds is None else np.clip(x, *bounds).astype(np.float32, copy=False)


def padded_windows(
    x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int],
    dilations: tuple[int, int], out_hw: tuple[int, int], fill: float,
) -> np.ndarray:
    """[N, OH, OW, KH, KW, C] windows of NHWC `x`, padded with `fill` as TFLite's SAME does."""
    pads = []
    for axis in range(2):
        effective = (kernel[axis] - 1) * dilations[axis] + 1
        total = max((out_hw[axis] - 1) * strides[axis] + effective - x.shape[1 + axis], 0)
        pads.append((total // 2, total - total // 2))
    padded = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=fill)
    spans = [(kernel[a] - 1) * dilations[a] + 1 for a in range(2)]
    windows = np.lib.stride_tricks.sliding_window_view(padded, spans, axis=(1, 2))
    windows = windows[:, ::strides[0], ::strides[1], :, ::dilations[0], ::dilations[1]]
    windows = windows[:, : out_hw[0], : out_hw[1]]
    return np.moveaxis(windows, 3, 5)


def output_hw(graph: Graph, op: Operator) -> tuple[int, int]:
    """Height and width of an NHWC op's output."""
    shape = graph.tensor(op.outputs[0]).shape
    return shape[1], shape[2]


def float_bias(inputs: list[np.ndarray], channels: int) -> np.ndarray:
    """A float kernel's bias: its third input as float32, else zeros."""
    return inputs[2].astype(np.float32) if len(inputs) > 2 else np.zeros(channels, np.float32)
