"""TFLite's integer multiplier/shift arithmetic: the one implementation shared by ref and codegen.

Every function here mirrors a function of TFLite's `quantization_util.cc`, `internal/common.h`
or gemmlowp's `fixedpoint.h` to the bit. Scalar helpers take Python ints; the `*_array` variants
take numpy arrays and compute in int64 so the reference kernels can run whole tensors at once.
tests/unit/test_fixedpoint_twins.py checks every scalar helper against its array twin.
Each op's Prepare step, which computes its constants with these, lives in `mcuflow.ref.<op>`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mcuflow.ir.enums import Activation
from mcuflow.ir.quantization import INT16_MAX, INT16_MIN, INT32_MAX, INT32_MIN


def tflite_round(value: float) -> int:
    """std::round: halves away from zero (Python's round() is banker's rounding)."""
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


def round_half_away_array(x: np.ndarray) -> np.ndarray:
    """std::round over float32 values (halves away from zero), exact in float64."""
    x64 = np.asarray(x, dtype=np.float64)
    return np.copysign(np.floor(np.abs(x64) + 0.5), x64)


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
    return QuantizedMultiplier(int(q_fixed), int(shift))


def quantize_multiplier_array(real_multipliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """quantize_multiplier of every element: (multipliers, shifts), int64."""
    reals = np.asarray(real_multipliers, dtype=np.float64)
    mantissas, shifts = np.frexp(reals)
    fixed = round_half_away_array(mantissas * float(1 << 31)).astype(np.int64)
    carry = fixed == (1 << 31)
    fixed = np.where(carry, fixed // 2, fixed)
    shifts = shifts.astype(np.int64) + carry
    lost = (reals == 0.0) | (shifts < -31)
    return np.where(lost, 0, fixed), np.where(lost, 0, shifts)


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


def multiply_by_quantized_multiplier_int64_array(
    x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """MultiplyByQuantizedMultiplier of int64 accumulators (LiteRT's 16x8 kernels).

    The Q31 multiplier is rounded to Q15 (saturating at 0x7FFF), then one rounding right shift
    by 15 - shift, the result converted to int32 as C does; multiplier and shift broadcast
    against x.
    """
    m64 = np.asarray(multiplier, dtype=np.int64)
    reduced = np.where(m64 < 0x7FFF0000, (m64 + (1 << 15)) >> 16, 0x7FFF)
    total_shift = 15 - np.asarray(shift, dtype=np.int64)
    rounding = np.int64(1) << (total_shift - 1)
    return _wrap_int32_array((np.asarray(x, dtype=np.int64) * reduced + rounding) >> total_shift)


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


@lru_cache(maxsize=1024)
def per_channel_multipliers(
    input_scale: float, filter_scales: tuple[float, ...], output_scale: float, channels: int
) -> ChannelMultipliers:
    """TFLite PopulateConvolutionQuantizationParams: double(in) * double(w[c]) / double(out).

    A per-tensor filter scale is broadcast to every output channel. Remembered for the last
    layers asked (a patch stage's copies of a layer share its scales).
    """
    scales = filter_scales if len(filter_scales) == channels else filter_scales[:1] * channels
    multipliers, shifts = quantize_multiplier_array(
        input_scale * np.asarray(scales, dtype=np.float64) / output_scale)
    return ChannelMultipliers(tuple(multipliers.tolist()), tuple(shifts.tolist()))


def multiplier_below_one(real_multiplier: float) -> QuantizedMultiplier | None:
    """TFLite QuantizeMultiplierSmallerThanOneExp; None for what LiteRT rejects (or misuses).

    That is a multiplier outside (0, 1), or one that rounds up to 1.
    """
    quantized = quantize_multiplier(real_multiplier)
    return quantized if 0.0 < real_multiplier < 1.0 and quantized.shift <= 0 else None


_BELOW_HALF = float(np.nextafter(0.5, 0.0))


def scale_and_round_array(acc: np.ndarray, scales: np.ndarray | float) -> np.ndarray:
    """C's `round(double(acc) * scale)` (halves away from zero), as integral float64 values.

    numpy's float64 product is the same IEEE operation as C's. Rounding adds 0.49999999999999994
    (not 0.5, which would round 0.49999999999999994 up to 1) with the sign of the value and
    truncates, which equals C's round() for every double.
    """
    product = np.multiply(acc, scales, dtype=np.float64)
    product += np.copysign(_BELOW_HALF, product)
    return np.trunc(product, out=product)


# --- gemmlowp fixed point: int16 (HARD_SWISH), exp and reciprocal (SOFTMAX) -----------------------


def wrap_int32_array(x: np.ndarray) -> np.ndarray:
    """Integer sums reduced to int32 as a wrapping int32 accumulator holds them (SVDF)."""
    return _wrap_int32_array(np.asarray(x, dtype=np.int64))


def wrap_int16_array(x: np.ndarray) -> np.ndarray:
    """Integers reduced to int16 the way C converts them (two's complement wrap-around)."""
    return ((np.asarray(x, dtype=np.int64) + (1 << 15)) & 0xFFFF) - (1 << 15)


def saturating_rounding_doubling_high_mul_int16_array(
    a: np.ndarray, b: np.ndarray | int
) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul for int16 (division truncates toward zero)."""
    a64, b64 = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    product = a64 * b64
    total = product + np.where(product >= 0, 1 << 14, 1 - (1 << 14))
    high = np.sign(total) * (np.abs(total) >> 15)
    return np.where((a64 == INT16_MIN) & (b64 == INT16_MIN), INT16_MAX, high)


def saturating_doubling_high_mul_int16_array(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """hard_swish.h SaturatingDoublingHighMul: a * b / 2**15 truncated, -1 * -1 saturated."""
    a64, b64 = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    product = a64 * b64
    high = np.sign(product) * (np.abs(product) >> 15)
    return np.where((a64 == INT16_MIN) & (b64 == INT16_MIN), INT16_MAX, high)


def saturating_left_shift_int16_array(x: np.ndarray, amount: int) -> np.ndarray:
    """hard_swish.h SaturatingLeftShift: x * 2**amount clamped to int16."""
    return np.clip(np.asarray(x, dtype=np.int64) << amount, INT16_MIN, INT16_MAX)


def rounding_divide_by_pot_int16_array(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT on int16 values; the mask wraps to int16 as in C++."""
    x64 = np.asarray(x, dtype=np.int64)
    mask = int(wrap_int16_array((1 << exponent) - 1))
    threshold = (mask >> 1) + (x64 < 0).astype(np.int64)
    return (x64 >> exponent) + ((x64 & mask) > threshold).astype(np.int64)


def saturating_rounding_multiply_by_pot_array(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on int32 values."""
    x64 = np.asarray(x, dtype=np.int64)
    if exponent <= 0:
        return rounding_divide_by_pot_array(x64, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    shifted = np.where(x64 > threshold, INT32_MAX, x64 << exponent)
    return np.where(x64 < -threshold, INT32_MIN, shifted)


def rounding_half_sum_array(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp RoundingHalfSum for int32: (a + b + sign) / 2, the division truncating."""
    total = np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    nudged = total + np.where(total >= 0, 1, -1)
    return np.sign(nudged) * (np.abs(nudged) >> 1)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """gemmlowp: exp(a) in Q0.31 for Q0.31 values a in [-1/4, 0), Taylor series around -1/8."""
    constant_term = 1895147668  # exp(-1/8)
    one_third = 715827883
    x = a + (1 << 28)
    x2 = saturating_rounding_doubling_high_mul_array(x, x)
    x3 = saturating_rounding_doubling_high_mul_array(x2, x)
    x4 = saturating_rounding_doubling_high_mul_array(x2, x2)
    x4_over_4 = rounding_divide_by_pot_array(x4, 2)
    series = rounding_divide_by_pot_array(
        saturating_rounding_doubling_high_mul_array(x4_over_4 + x3, one_third) + x2, 1
    )
    return constant_term + saturating_rounding_doubling_high_mul_array(constant_term, x + series)


# exp(-2**k) in Q0.31 for the barrel shifter of exp_on_negative_values, k = -2 .. 4.
_EXP_BARREL_SHIFTER = (
    (-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
    (3, 720401), (4, 242),
)


def exp_on_negative_values_array(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp exp_on_negative_values: exp(a) in Q0.31 for raw Q(integer_bits) values a <= 0."""
    a64 = np.asarray(a, dtype=np.int64)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = (a64 & (one_quarter - 1)) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_multiply_by_pot_array(a_mod_quarter_minus_one_quarter, integer_bits)
    )
    remainder = a_mod_quarter_minus_one_quarter - a64
    for exponent, multiplier in _EXP_BARREL_SHIFTER:
        if integer_bits > exponent:
            bit_set = (remainder & (1 << (fractional_bits + exponent))) != 0
            result = np.where(
                bit_set, saturating_rounding_doubling_high_mul_array(result, multiplier), result
            )
    if integer_bits > 5:
        result = np.where(a64 < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a64 == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1_array(a: np.ndarray) -> np.ndarray:
    """gemmlowp one_over_one_plus_x_for_x_in_0_1: Newton-Raphson 1 / (1 + a), Q0.31 in/out."""
    half_denominator = rounding_half_sum_array(a, INT32_MAX)
    x = 1515870810 + saturating_rounding_doubling_high_mul_array(half_denominator, -1010580540)
    for _ in range(3):
        product = saturating_rounding_doubling_high_mul_array(half_denominator, x)
        correction = saturating_rounding_doubling_high_mul_array(x, (1 << 29) - product)
        x = x + saturating_rounding_multiply_by_pot_array(correction, 2)
    return saturating_rounding_multiply_by_pot_array(x, 1)


def get_reciprocal_array(x: np.ndarray, integer_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal for positive Q(integer_bits) x: (Q0.31 scale, num_bits_over_unit)."""
    x64 = np.asarray(x, dtype=np.int64)
    _, bit_length = np.frexp(x64.astype(np.float64))
    headroom_plus_one = 32 - bit_length.astype(np.int64)
    shifted_sum_minus_one = (x64 << headroom_plus_one) - (1 << 31)
    scale = one_over_one_plus_x_for_x_in_0_1_array(shifted_sum_minus_one)
    return scale, integer_bits - headroom_plus_one


def calculate_input_radius(integer_bits: int, left_shift: int, total_signed_bits: int = 31) -> int:
    """TFLite CalculateInputRadius: the largest input difference that does not saturate."""
    rescaled = (float((1 << integer_bits) - 1) * float(1 << (total_signed_bits - integer_bits))
                / float(1 << left_shift))
    return math.floor(rescaled)


# --- Scalar and specialised forms of the above, exact where numpy's per-call cost dominates -------


def rounding_half_sum(a: int, b: int) -> int:
    """Scalar rounding_half_sum_array."""
    total = a + b
    nudged = total + (1 if total >= 0 else -1)
    return nudged >> 1 if nudged >= 0 else -((-nudged) >> 1)


def saturating_rounding_multiply_by_pot(x: int, exponent: int) -> int:
    """Scalar saturating_rounding_multiply_by_pot_array."""
    if exponent <= 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x < -threshold:
        return INT32_MIN
    return INT32_MAX if x > threshold else x << exponent


def one_over_one_plus_x_for_x_in_0_1(a: int) -> int:
    """Scalar one_over_one_plus_x_for_x_in_0_1_array."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    x = 1515870810 + saturating_rounding_doubling_high_mul(half_denominator, -1010580540)
    for _ in range(3):
        product = saturating_rounding_doubling_high_mul(half_denominator, x)
        correction = saturating_rounding_doubling_high_mul(x, (1 << 29) - product)
        x = x + saturating_rounding_multiply_by_pot(correction, 2)
    return saturating_rounding_multiply_by_pot(x, 1)


def get_reciprocal(x: int, integer_bits: int) -> tuple[int, int]:
    """Scalar get_reciprocal_array for one positive x (a few microseconds instead of ~80)."""
    headroom_plus_one = 32 - x.bit_length()
    scale = one_over_one_plus_x_for_x_in_0_1((x << headroom_plus_one) - (1 << 31))
    return scale, integer_bits - headroom_plus_one


def scaled_nonnegative_array(
    x: np.ndarray, multiplier: np.ndarray | int, exponent: np.ndarray | int
) -> np.ndarray:
    """RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(multiplier, x), exponent).

    Valid for int32 x >= 0, 0 <= multiplier <= INT32_MAX and exponent >= 1 (softmax's last
    step): the product is then non-negative and every rounding is a plain add and shift.
    """
    high = np.multiply(x, multiplier, dtype=np.int64)
    high += 1 << 30
    high >>= 31
    high += 1 << (exponent - 1)
    high >>= exponent
    return high


def inv_sqrt_quantized_multiplier_exp(x: int, reverse_shift: int) -> tuple[int, int]:
    """TFLite GetInvSqrtQuantizedMultiplierExp: 1 / sqrt(x) as (Q0.31 multiplier, shift).

    x <= 1 gives (INT32_MAX, 0). Otherwise x is brought into [2**27, 2**29) by shifts of two
    bits, then five Newton-Raphson steps in Q3.28 from 1, times sqrt(2) / 2; the shift is
    right-positive until multiplied by `reverse_shift`.
    """
    if x <= 1:
        return INT32_MAX, 0
    shift = 11
    while x >= 1 << 29:
        x //= 4
        shift += 1
    pairs = (32 - x.bit_length() - 1) // 2 - 1
    shift -= pairs
    x <<= 2 * pairs
    half_input = rounding_divide_by_pot(x >> 1, 1)
    half_three = (1 << 28) + (1 << 27)
    estimate = 1 << 28
    for _ in range(5):
        cube = saturating_rounding_doubling_high_mul(
            saturating_rounding_doubling_high_mul(estimate, estimate), estimate)
        cube = saturating_rounding_multiply_by_pot(cube, 6)
        difference = (saturating_rounding_doubling_high_mul(half_three, estimate)
                      - saturating_rounding_doubling_high_mul(half_input, cube))
        estimate = saturating_rounding_multiply_by_pot(difference, 3)
    multiplier = saturating_rounding_doubling_high_mul(estimate, 1518500250)
    if shift < 0:
        multiplier <<= -shift
        shift = 0
    return multiplier, shift * reverse_shift


# gemmlowp-style Q0.31 constants of TFLite's log_x_for_x_greater_than_or_equal_to_1_impl.
_LOG_2 = 1488522236
_SQRT_SQRT_HALF = 1805811301
_SQRT_HALF = 1518500250
_ONE_QUARTER = 536870912
_ALPHA_N = 117049297
_ALPHA_D = 127690142
_ALPHA_I = 1057819769
_ALPHA_F = 638450708


def _saturate_int32(x: int) -> int:
    return max(INT32_MIN, min(INT32_MAX, x))


def log_x_for_x_greater_than_or_equal_to_1(x: int, output_bits: int, input_bits: int) -> int:
    """TFLite log_x_for_x_greater_than_or_equal_to_1_impl: raw Q(input_bits) in, Q(output_bits) out.

    The input's power of two (two candidates, one premultiplied by sqrt(1/2)) plus a rational
    approximation of the log of the remaining mantissa, accumulated with one bit of headroom.
    Plain additions wrap as int32, as in the C++.
    """
    srdhm = saturating_rounding_doubling_high_mul
    accum_bits = output_bits + 1
    shifted_quarter = saturating_rounding_multiply_by_pot(_ONE_QUARTER, -accum_bits)
    headroom_a = 32 - x.bit_length()
    r_a = saturating_rounding_multiply_by_pot(
        srdhm(saturating_rounding_multiply_by_pot(x, headroom_a - 1), _SQRT_HALF), 1)
    pow_2_a = _saturate_int32(saturating_rounding_multiply_by_pot(
        input_bits - headroom_a, 31 - accum_bits) + shifted_quarter)
    headroom_b = 32 - srdhm(x, _SQRT_HALF).bit_length() - 1
    r_b = saturating_rounding_multiply_by_pot(x, headroom_b)
    pow_2_b = _saturate_int32(saturating_rounding_multiply_by_pot(
        input_bits - headroom_b, 31 - accum_bits) - shifted_quarter)
    r, pow_2 = min(r_a, r_b), max(pow_2_a, pow_2_b)
    p = rounding_half_sum(r, _SQRT_SQRT_HALF)
    q = _wrap_int32(2 * _wrap_int32(r - _SQRT_SQRT_HALF))
    square = srdhm(q, q)
    num = _wrap_int32(srdhm(q, r) + srdhm(srdhm(q, square), _ALPHA_N))
    inner = _wrap_int32(_ALPHA_I + q + srdhm(_ALPHA_D, square))
    denominator_minus_one = _wrap_int32(srdhm(p, inner) + srdhm(_ALPHA_F, q))
    reciprocal = one_over_one_plus_x_for_x_in_0_1(denominator_minus_one)
    num_scaled = saturating_rounding_multiply_by_pot(num, -accum_bits)
    total = _wrap_int32(srdhm(pow_2, _LOG_2) + srdhm(num_scaled, reciprocal))
    return saturating_rounding_multiply_by_pot(total, accum_bits - output_bits)


# --- gemmlowp fixed point on int16: logistic and tanh (the integer LSTM's gates) ----------------


def _constant16(int32_value: int) -> int:
    """gemmlowp RescaleConstantInitializer<int16>: an int32 constant rounded to 16 bits."""
    return rounding_divide_by_pot(int32_value, 16)


def _multiply_by_pot16(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on int16, exponent >= 0."""
    threshold = (1 << (15 - exponent)) - 1
    shifted = np.where(x > threshold, INT16_MAX, x << exponent)
    return np.where(x < -threshold, INT16_MIN, shifted)


_mul16 = saturating_rounding_doubling_high_mul_int16_array
_ONE16 = INT16_MAX  # FixedPoint<int16, 0>::One()
_F2_ONE16 = 1 << 13  # FixedPoint<int16, 2>::One()


def _exp_quarter16(a: np.ndarray) -> np.ndarray:
    """exp on [-1/4, 0) for int16 Q0.15 values (gemmlowp's Taylor series around -1/8).

    The last addition saturates (gemmlowp's AddSaturatingIf16Bit).
    """
    constant_term = _constant16(1895147668)
    x = wrap_int16_array(a + (1 << 12))
    x2 = _mul16(x, x)
    x3 = _mul16(x2, x)
    x4 = _mul16(x2, x2)
    x4_over_4 = rounding_divide_by_pot_int16_array(x4, 2)
    series = rounding_divide_by_pot_int16_array(
        wrap_int16_array(_mul16(wrap_int16_array(x4_over_4 + x3), _constant16(715827883)) + x2),
        1)
    product = _mul16(constant_term, wrap_int16_array(x + series))
    return np.clip(constant_term + product, INT16_MIN, INT16_MAX)


def exp_on_negative_values_int16(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp exp_on_negative_values on int16: exp(a) in Q0.15 for Q(integer_bits) a <= 0."""
    fractional_bits = 15 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod = wrap_int16_array((a & (one_quarter - 1)) - one_quarter)
    result = _exp_quarter16(_multiply_by_pot16(a_mod, integer_bits))
    remainder = wrap_int16_array(a_mod - a)
    for exponent, multiplier in _EXP_BARREL_SHIFTER:
        if integer_bits > exponent:
            bit_set = (remainder & (1 << (fractional_bits + exponent))) != 0
            result = np.where(bit_set, _mul16(result, _constant16(multiplier)), result)
    if integer_bits > 5:
        result = np.where(a < _constant16(-(1 << (36 - integer_bits))), 0, result)
    return np.where(a == 0, _ONE16, result)


def _newton_reciprocal16(a: np.ndarray) -> np.ndarray:
    """gemmlowp's Newton-Raphson x ~= 2 / (1 + a) in Q2.13, for int16 Q0.15 a in [0, 1]."""
    half_denominator = rounding_half_sum_array(a, _ONE16)
    x = wrap_int16_array(_constant16(1515870810)
                         + _mul16(half_denominator, _constant16(-1010580540)))
    for _ in range(3):
        product = _mul16(half_denominator, x)
        correction = _mul16(x, wrap_int16_array(_F2_ONE16 - product))
        x = wrap_int16_array(x + _multiply_by_pot16(correction, 2))
    return x


def logistic_int16(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp logistic of int16 Q(integer_bits) values, in Q0.15 (ApplySigmoid: Q3.12)."""
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    absolute = np.where(positive, a, wrap_int16_array(-a))
    exp = exp_on_negative_values_int16(wrap_int16_array(-absolute), integer_bits)
    x = _newton_reciprocal16(exp)
    if_positive = _multiply_by_pot16(x, 1)
    if_negative = wrap_int16_array(_ONE16 - if_positive)
    result = np.where(positive, if_positive, if_negative)
    return np.where(a == 0, _constant16(1 << 30), result)


def tanh_int16(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp tanh of int16 Q(integer_bits) values, in Q0.15 (tensor_utils ApplyTanh)."""
    a = np.asarray(a, dtype=np.int64)
    negative = a < 0
    nonpositive = np.where(negative, a, wrap_int16_array(-a))
    exp = exp_on_negative_values_int16(nonpositive, integer_bits + 1)
    x = _newton_reciprocal16(exp)
    t = _multiply_by_pot16(wrap_int16_array(x - _F2_ONE16), 2)
    result = np.where(negative, wrap_int16_array(-t), t)
    return np.where(a == 0, 0, result)


def newton_reciprocal_int16(a: np.ndarray) -> np.ndarray:
    """gemmlowp's Newton-Raphson 2 / (1 + a) in Q2.13 of the int16 logistic and tanh."""
    return _newton_reciprocal16(np.asarray(a, dtype=np.int64))
