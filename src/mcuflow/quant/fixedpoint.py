"""TFLite's integer multiplier/shift arithmetic: the one implementation shared by ref and codegen.

Every function here mirrors a function of TFLite's `quantization_util.cc` or
`internal/common.h` to the bit. Scalar helpers take Python ints; the `*_array` variants take numpy
arrays and compute in int64 so the reference kernels can run whole tensors at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mcuflow.ir.ops import Activation

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def tflite_round(value: float) -> int:
    """std::round: halves away from zero (Python's round() is banker's rounding)."""
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


@dataclass(frozen=True)
class QuantizedMultiplier:
    """A real multiplier m ~= multiplier * 2**(shift - 31), multiplier in [2**30, 2**31)."""

    multiplier: int
    shift: int


def quantize_multiplier(real_multiplier: float) -> QuantizedMultiplier:
    """TFLite QuantizeMultiplier: split a double into a Q31 mantissa and a power-of-two shift."""
    if real_multiplier == 0.0:
        return QuantizedMultiplier(0, 0)
    mantissa, shift = math.frexp(real_multiplier)
    q_fixed = tflite_round(mantissa * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return QuantizedMultiplier(0, 0)
    if shift > 30:
        return QuantizedMultiplier(INT32_MAX, 30)
    return QuantizedMultiplier(int(q_fixed), int(shift))


def saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul for int32 a, b."""
    if a == b == INT32_MIN:
        return INT32_MAX
    product = a * b
    nudge = (1 << 30) if product >= 0 else 1 - (1 << 30)
    total = product + nudge
    return total // (1 << 31) if total >= 0 else -((-total) // (1 << 31))


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT: x / 2**exponent rounded half away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """TFLite MultiplyByQuantizedMultiplier (double rounding, the reference default)."""
    left_shift = shift if shift > 0 else 0
    right_shift = 0 if shift > 0 else -shift
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(_wrap_int32(x * (1 << left_shift)), multiplier),
        right_shift,
    )


def _wrap_int32(x: int) -> int:
    return ((x + (1 << 31)) % (1 << 32)) - (1 << 31)


def saturating_rounding_doubling_high_mul_array(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """Vectorised SaturatingRoundingDoublingHighMul over int32 values (computed in int64)."""
    a64 = np.asarray(a, dtype=np.int64)
    b64 = np.asarray(b, dtype=np.int64)
    product = a64 * b64
    nudge = np.where(product >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    total = product + nudge
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))
    overflow = (a64 == INT32_MIN) & (b64 == INT32_MIN)
    return np.where(overflow, np.int64(INT32_MAX), high)


def rounding_divide_by_pot_array(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """Vectorised RoundingDivideByPOT; `exponent` may be per element (broadcast)."""
    x64 = np.asarray(x, dtype=np.int64)
    exp64 = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exp64) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0).astype(np.int64)
    return (x64 >> exp64) + (remainder > threshold).astype(np.int64)


def multiply_by_quantized_multiplier_array(
    x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """Vectorised MultiplyByQuantizedMultiplier; multiplier and shift broadcast against x."""
    shift64 = np.asarray(shift, dtype=np.int64)
    left_shift = np.maximum(shift64, 0)
    right_shift = np.maximum(-shift64, 0)
    shifted = _wrap_int32_array(np.asarray(x, dtype=np.int64) << left_shift)
    return rounding_divide_by_pot_array(
        saturating_rounding_doubling_high_mul_array(shifted, multiplier), right_shift
    )


def _wrap_int32_array(x: np.ndarray) -> np.ndarray:
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def quantize_value(value: float, scale: float, zero_point: int) -> int:
    """TFLite's `zero_point + round(f / scale)` with the division done in float32."""
    return zero_point + tflite_round(float(np.float32(value) / np.float32(scale)))


@dataclass(frozen=True)
class ActivationRange:
    """Clamp bounds of a fused activation in the quantised output domain."""

    min: int
    max: int


def activation_range(
    activation: Activation, scale: float, zero_point: int, qmin: int = -128, qmax: int = 127
) -> ActivationRange:
    """TFLite CalculateActivationRangeQuantized for a fused activation."""
    if activation is Activation.NONE:
        return ActivationRange(qmin, qmax)
    if activation is Activation.RELU:
        return ActivationRange(max(qmin, quantize_value(0.0, scale, zero_point)), qmax)
    if activation is Activation.RELU6:
        return ActivationRange(
            max(qmin, quantize_value(0.0, scale, zero_point)),
            min(qmax, quantize_value(6.0, scale, zero_point)),
        )
    return ActivationRange(
        max(qmin, quantize_value(-1.0, scale, zero_point)),
        min(qmax, quantize_value(1.0, scale, zero_point)),
    )


@dataclass(frozen=True)
class ChannelMultipliers:
    """Per-output-channel requantisation constants of a conv / depthwise / FC layer."""

    multipliers: tuple[int, ...]
    shifts: tuple[int, ...]


def per_channel_multipliers(
    input_scale: float, filter_scales: tuple[float, ...], output_scale: float, channels: int
) -> ChannelMultipliers:
    """TFLite PopulateConvolutionQuantizationParams: double(in) * double(w[c]) / double(out).

    A per-tensor filter scale is broadcast to every output channel.
    """
    scales = filter_scales if len(filter_scales) == channels else filter_scales[:1] * channels
    quantized = [quantize_multiplier(input_scale * s / output_scale) for s in scales]
    return ChannelMultipliers(
        tuple(q.multiplier for q in quantized), tuple(q.shift for q in quantized)
    )
