"""TFLite's integer multiplier/shift arithmetic: the one implementation shared by ref and codegen.

Every function here mirrors a function of TFLite's `quantization_util.cc` or
`internal/common.h` to the bit. Scalar helpers take Python ints; the `*_array` variants take numpy
arrays and compute in int64 so the reference kernels can run whole tensors at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError, constraint, int8_quant
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import (
    Activation,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    ElementwiseAttrs,
    FullyConnectedAttrs,
    LeakyReluAttrs,
    MeanAttrs,
    OpKind,
    Pool2DAttrs,
    SoftmaxAttrs,
)
from mcuflow.ir.quantization import QuantParams
from mcuflow.ir.shapes import conv_padding

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


# --- Prepare step of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, the pools and MEAN ------------
# Each function mirrors the Prepare() of the LiteRT kernel and returns plain numbers that the
# reference kernels use and the C emitter freezes into constants.


def _quant_of(tensor: Tensor) -> QuantParams:
    if tensor.quant is None:
        raise UncheckedModelError(f"tensor '{tensor.name}' has no quantisation parameters")
    return tensor.quant


@dataclass(frozen=True)
class ConvParams:
    """Constants of CONV_2D and DEPTHWISE_CONV_2D (TFLite ConvParams + per-channel arrays).

    `pad_h` and `pad_w` are the implicit zero rows and columns before the first input element
    (TFLite ComputePaddingHeightWidth; the extra odd padding goes after the last element).
    """

    input_offset: int
    output_offset: int
    multipliers: tuple[int, ...]
    shifts: tuple[int, ...]
    act_min: int
    act_max: int
    pad_h: int
    pad_w: int


def prepare_conv(
    x: Tensor, weights: Tensor, out: Tensor, attrs: Conv2DAttrs | DepthwiseConv2DAttrs
) -> ConvParams:
    """conv.cc / depthwise_conv.cc Prepare: per-channel multipliers, activation range, padding."""
    in_q, w_q, out_q = _quant_of(x), _quant_of(weights), _quant_of(out)
    channels = out.shape[3]
    if w_q.is_per_channel and len(w_q.scale) != channels:
        raise UncheckedModelError(
            f"tensor '{weights.name}' has {len(w_q.scale)} scales for {channels} output channels")
    scaled = per_channel_multipliers(in_q.scale0, w_q.scale, out_q.scale0, channels)
    clamp = activation_range(attrs.activation, out_q.scale0, out_q.zero_point0)
    (_, height, width, _), (kernel_h, kernel_w) = x.shape, weights.shape[1:3]
    return ConvParams(
        input_offset=-in_q.zero_point0,
        output_offset=out_q.zero_point0,
        multipliers=scaled.multipliers,
        shifts=scaled.shifts,
        act_min=clamp.min,
        act_max=clamp.max,
        pad_h=conv_padding(height, kernel_h, attrs.stride_h, attrs.dilation_h, out.shape[1],
                           attrs.padding),
        pad_w=conv_padding(width, kernel_w, attrs.stride_w, attrs.dilation_w, out.shape[2],
                           attrs.padding),
    )


@dataclass(frozen=True)
class FullyConnectedParams:
    """Constants of FULLY_CONNECTED.

    LiteRT's reference kernel (since April 2025) requantises in double precision:
    `out = round(double(acc) * scales[c])`, `scales[c] = double(in) * double(w[c]) / double(out)`,
    so `scales` holds those doubles, one per output channel (a per-tensor scale is repeated).
    """

    input_offset: int
    weights_offset: int
    output_offset: int
    scales: tuple[float, ...]
    act_min: int
    act_max: int


def prepare_fully_connected(
    x: Tensor, weights: Tensor, out: Tensor, attrs: FullyConnectedAttrs
) -> FullyConnectedParams:
    """fully_connected.cc Prepare plus the reference kernel's double-precision scales."""
    in_q, w_q, out_q = _quant_of(x), _quant_of(weights), _quant_of(out)
    units = weights.shape[0]
    if w_q.is_per_channel and len(w_q.scale) != units:
        raise UncheckedModelError(
            f"tensor '{weights.name}' has {len(w_q.scale)} scales for {units} output units")
    weight_scales = w_q.scale if w_q.is_per_channel else w_q.scale[:1] * units
    clamp = activation_range(attrs.activation, out_q.scale0, out_q.zero_point0)
    return FullyConnectedParams(
        input_offset=-in_q.zero_point0,
        weights_offset=0 if w_q.is_per_channel else -w_q.zero_point0,
        output_offset=out_q.zero_point0,
        scales=tuple(in_q.scale0 * scale / out_q.scale0 for scale in weight_scales),
        act_min=clamp.min,
        act_max=clamp.max,
    )


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


@dataclass(frozen=True)
class PoolParams:
    """Constants of AVERAGE_POOL_2D and MAX_POOL_2D (padding before the first element, clamp)."""

    pad_h: int
    pad_w: int
    act_min: int
    act_max: int


def prepare_pool(x: Tensor, out: Tensor, attrs: Pool2DAttrs) -> PoolParams:
    """pooling.cc Prepare: ComputePaddingHeightWidth (no dilation) and the activation range."""
    out_q = _quant_of(out)
    clamp = activation_range(attrs.activation, out_q.scale0, out_q.zero_point0)
    return PoolParams(
        pad_h=conv_padding(x.shape[1], attrs.filter_h, attrs.stride_h, 1, out.shape[1],
                           attrs.padding),
        pad_w=conv_padding(x.shape[2], attrs.filter_w, attrs.stride_w, 1, out.shape[2],
                           attrs.padding),
        act_min=clamp.min,
        act_max=clamp.max,
    )


@dataclass(frozen=True)
class MeanParams:
    """Constants of int8 MEAN: the scale ratio with 1/count folded in, as QuantizedMeanOrSum does.

    out = clamp(MultiplyByQuantizedMultiplier(sum - input_zero_point * count, multiplier, shift)
    + output_zero_point, -128, 127), where `multiplier` need not be normalised.
    """

    input_zero_point: int
    output_zero_point: int
    multiplier: int
    shift: int
    count: int


def prepare_mean(x: Tensor, out: Tensor, attrs: MeanAttrs) -> MeanParams:
    """reduce.cc PrepareMeanOrSum plus the count folding of reference_ops::QuantizedMeanOrSum."""
    in_q, out_q = _quant_of(x), _quant_of(out)
    axes = {axis % len(x.shape) for axis in attrs.axes}
    count = math.prod(x.shape[axis] for axis in axes)
    ratio = quantize_multiplier(in_q.scale0 / out_q.scale0)
    folded = fold_count(ratio, count)
    return MeanParams(in_q.zero_point0, out_q.zero_point0, folded.multiplier, folded.shift, count)


def fold_count(ratio: QuantizedMultiplier, count: int) -> QuantizedMultiplier:
    """Fold 1/count into a multiplier exactly as reference_ops::QuantizedMeanOrSum does."""
    shift = min(count.bit_length() - 1, 32, 31 + ratio.shift)
    return QuantizedMultiplier((ratio.multiplier << shift) // count, ratio.shift - shift)


# --- Element-wise ops, activations, softmax and requantisation ----------------------------------
# Prepare steps of ADD, SUB, MUL, RELU, RELU6, LEAKY_RELU, HARD_SWISH, LOGISTIC, TANH, SOFTMAX and
# int8 QUANTIZE (LiteRT's kReference kernels), plus the gemmlowp fixed-point primitives they use.

INT16_MIN = -(1 << 15)
INT16_MAX = (1 << 15) - 1
ADD_LEFT_SHIFT = 20
SOFTMAX_DIFF_INTEGER_BITS = 5
SOFTMAX_ACCUMULATION_INTEGER_BITS = 12


def multiplier_below_one(real_multiplier: float) -> QuantizedMultiplier | None:
    """TFLite QuantizeMultiplierSmallerThanOneExp; None for what LiteRT rejects (or misuses).

    That is a multiplier outside (0, 1), or one that rounds up to 1.
    """
    quantized = quantize_multiplier(real_multiplier)
    return quantized if 0.0 < real_multiplier < 1.0 and quantized.shift <= 0 else None


@dataclass(frozen=True)
class AddParams:
    """Constants of int8 ADD and SUB (add.cc / sub.cc Prepare; all shifts are <= 0).

    out = clamp(MBQM(MBQM((x1 + input1_offset) << left_shift, m1, s1) +- MBQM(..., m2, s2),
    output_multiplier, output_shift) + output_offset, act_min, act_max).
    """

    left_shift: int
    input1_offset: int
    input1_multiplier: int
    input1_shift: int
    input2_offset: int
    input2_multiplier: int
    input2_shift: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def add_real_multipliers(
    input1_scale: float, input2_scale: float, output_scale: float
) -> tuple[float, float, float]:
    """add.cc / sub.cc Prepare: the real multipliers of both inputs and of the output.

    The inputs' are relative to twice the larger input scale, the output's to 2**20 times it.
    """
    twice_max_input_scale = 2.0 * max(input1_scale, input2_scale)
    return (input1_scale / twice_max_input_scale, input2_scale / twice_max_input_scale,
            twice_max_input_scale / ((1 << ADD_LEFT_SHIFT) * output_scale))


def prepare_add(x1: Tensor, x2: Tensor, out: Tensor, attrs: ElementwiseAttrs) -> AddParams:
    """add.cc / sub.cc Prepare for int8: scales relative to twice the larger input scale."""
    q1, q2, out_q = _quant_of(x1), _quant_of(x2), _quant_of(out)
    m1, m2, mo = (multiplier_below_one(real) for real in add_real_multipliers(
        q1.scale0, q2.scale0, out_q.scale0))
    if m1 is None or m2 is None or mo is None:
        raise UncheckedModelError(f"ADD/SUB output '{out.name}': a multiplier outside (0, 1)")
    clamp = activation_range(attrs.activation, out_q.scale0, out_q.zero_point0)
    return AddParams(
        ADD_LEFT_SHIFT, -q1.zero_point0, m1.multiplier, m1.shift, -q2.zero_point0,
        m2.multiplier, m2.shift, out_q.zero_point0, mo.multiplier, mo.shift, clamp.min, clamp.max,
    )


@dataclass(frozen=True)
class MulParams:
    """Constants of int8 MUL: out = clamp(MBQM((x1 + o1) * (x2 + o2)) + output_offset)."""

    input1_offset: int
    input2_offset: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def prepare_mul(x1: Tensor, x2: Tensor, out: Tensor, attrs: ElementwiseAttrs) -> MulParams:
    """mul.cc Prepare: the multiplier in1 * in2 / out is computed in float32, as in C."""
    q1, q2, out_q = _quant_of(x1), _quant_of(x2), _quant_of(out)
    real = np.float32(q1.scale0) * np.float32(q2.scale0) / np.float32(out_q.scale0)
    scaled = quantize_multiplier(float(real))
    clamp = activation_range(attrs.activation, out_q.scale0, out_q.zero_point0)
    return MulParams(-q1.zero_point0, -q2.zero_point0, out_q.zero_point0, scaled.multiplier,
                     scaled.shift, clamp.min, clamp.max)


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


def prepare_relu(x: Tensor, out: Tensor, activation: Activation) -> RequantizeParams:
    """activations.cc ReluPrepare + QuantizedReluX: float32 scale ratio, activation clamp."""
    in_q, out_q = _quant_of(x), _quant_of(out)
    scaled = quantize_multiplier(float(np.float32(in_q.scale0) / np.float32(out_q.scale0)))
    clamp = activation_range(activation, out_q.scale0, out_q.zero_point0)
    return RequantizeParams(in_q.zero_point0, out_q.zero_point0, scaled.multiplier, scaled.shift,
                            clamp.min, clamp.max)


def prepare_requantize(x: Tensor, out: Tensor) -> RequantizeParams:
    """quantize.cc Prepare for int8 -> int8: double(in) / double(out), no clamp but int8's."""
    in_q, out_q = _quant_of(x), _quant_of(out)
    scaled = quantize_multiplier(in_q.scale0 / out_q.scale0)
    return RequantizeParams(in_q.zero_point0, out_q.zero_point0, scaled.multiplier, scaled.shift,
                            -128, 127)


def requantize_array(x: np.ndarray, params: RequantizeParams) -> np.ndarray:
    """reference_ops::ReluX / Requantize over a whole tensor (int64 result)."""
    shifted = np.asarray(x, dtype=np.int64) - params.input_zero_point
    scaled = multiply_by_quantized_multiplier_array(shifted, params.multiplier, params.shift)
    return np.clip(scaled + params.output_zero_point, params.act_min, params.act_max)


@dataclass(frozen=True)
class LeakyReluParams:
    """Constants of int8 LEAKY_RELU: one multiplier for x >= 0, one (maybe negative) for x < 0."""

    input_zero_point: int
    output_zero_point: int
    identity_multiplier: int
    identity_shift: int
    alpha_multiplier: int
    alpha_shift: int


def prepare_leaky_relu(x: Tensor, out: Tensor, attrs: LeakyReluAttrs) -> LeakyReluParams:
    """activations.cc LeakyReluPrepare: in * alpha / out and in / out, both in float32."""
    in_q, out_q = _quant_of(x), _quant_of(out)
    in_scale, out_scale = np.float32(in_q.scale0), np.float32(out_q.scale0)
    alpha = quantize_multiplier(float(in_scale * np.float32(attrs.alpha) / out_scale))
    identity = quantize_multiplier(float(in_scale / out_scale))
    return LeakyReluParams(in_q.zero_point0, out_q.zero_point0, identity.multiplier,
                           identity.shift, alpha.multiplier, alpha.shift)


@dataclass(frozen=True)
class HardSwishParams:
    """Constants of int8 HARD_SWISH: int16 fixed-point multipliers and their exponents."""

    input_zero_point: int
    output_zero_point: int
    output_multiplier: int
    output_shift: int
    reluish_multiplier: int
    reluish_shift: int


def downscale_multiplier_to_int16(multiplier: int) -> int:
    """activations.cc DownScaleInt32ToInt16Multiplier: round a Q31 multiplier to Q15."""
    if multiplier >= INT32_MAX - (1 << 15):
        return INT16_MAX
    return (multiplier + (1 << 15)) >> 16


HARD_SWISH_MAX_RELUISH_SHIFT = 31
"""hard_swish.h's SaturatingLeftShift computes `1 << (shift - 1)` in int: defined up to 30."""
HARD_SWISH_MAX_INPUT_SCALE = 2.0**HARD_SWISH_MAX_RELUISH_SHIFT * 128.0 * 3.0 / 32768.0
"""The input scale at which the reluish multiplier (in / 128) / (3 / 32768) reaches 2**31."""


def hard_swish_multipliers(
    input_scale: float, output_scale: float
) -> tuple[QuantizedMultiplier, QuantizedMultiplier]:
    """activations.cc HardSwishPrepare's (output, reluish) multipliers, from float32 ratios.

    They are hires / output scale and hires / (3 / 32768), hires being input scale / 128.
    """
    hires_input_scale = np.float32(1.0 / 128.0) * np.float32(input_scale)
    reluish_scale = np.float32(3.0) / np.float32(32768.0)
    output = quantize_multiplier(float(hires_input_scale / np.float32(output_scale)))
    reluish = quantize_multiplier(float(hires_input_scale / reluish_scale))
    return output, reluish


def prepare_hard_swish(x: Tensor, out: Tensor) -> HardSwishParams:
    """activations.cc HardSwishPrepare: float32 ratios on the 'hires' input scale (in / 128)."""
    in_q, out_q = _quant_of(x), _quant_of(out)
    output, reluish = hard_swish_multipliers(in_q.scale0, out_q.scale0)
    if output.shift > 0 or reluish.shift > HARD_SWISH_MAX_RELUISH_SHIFT:
        raise UncheckedModelError(f"HARD_SWISH '{out.name}': scales LiteRT cannot requantise")
    return HardSwishParams(
        in_q.zero_point0, out_q.zero_point0, downscale_multiplier_to_int16(output.multiplier),
        output.shift, downscale_multiplier_to_int16(reluish.multiplier), reluish.shift,
    )


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


@dataclass(frozen=True)
class LookupTable:
    """An int8 -> int8 table: `values[q + 128]` is the output for input q."""

    values: tuple[int, ...]


@functools.cache
def _c_float_function(name: str) -> Callable[[float], float] | None:
    """The C library's float function `name` (expf, tanhf): what LiteRT's kernels call."""
    library = ctypes.util.find_library("m")
    try:
        function = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_float
    function.argtypes = [ctypes.c_float]
    return function


def _float32_map(name: str, fallback: np.ufunc, x: np.ndarray) -> np.ndarray:
    """Apply C's float function `name` elementwise; without a C library, float64 then rounded."""
    function = _c_float_function(name)
    if function is None:
        return fallback(x.astype(np.float64)).astype(np.float32)
    return np.array([function(float(value)) for value in x], dtype=np.float32)


def round_half_away_array(x: np.ndarray) -> np.ndarray:
    """std::round over float32 values (halves away from zero), exact in float64."""
    x64 = np.asarray(x, dtype=np.float64)
    return np.copysign(np.floor(np.abs(x64) + 0.5), x64)


def _lookup_table(x: Tensor, out: Tensor, transform: Callable[[np.ndarray], np.ndarray]
                  ) -> LookupTable:
    """common.h LUTPopulateInt8: dequantise in float32, transform, requantise with roundf."""
    in_q, out_q = _quant_of(x), _quant_of(out)
    inputs = np.arange(-128, 128, dtype=np.float32) - np.float32(in_q.zero_point0)
    dequantized = np.float32(in_q.scale0) * inputs
    inverse_scale = np.float32(1.0) / np.float32(out_q.scale0)
    rescaled = round_half_away_array(transform(dequantized) * inverse_scale).astype(np.float32)
    quantized = np.clip(rescaled + np.float32(out_q.zero_point0), -128, 127).astype(np.int64)
    return LookupTable(tuple(int(value) for value in quantized))


def _logistic_float32(x: np.ndarray) -> np.ndarray:
    return np.float32(1.0) / (np.float32(1.0) + _float32_map("expf", np.exp, -x))


def prepare_logistic(x: Tensor, out: Tensor) -> LookupTable:
    """activations.cc SigmoidPrepare (kReference, int8): table of 1 / (1 + expf(-x))."""
    return _lookup_table(x, out, _logistic_float32)


def prepare_tanh(x: Tensor, out: Tensor) -> LookupTable:
    """activations.cc TanhPrepare (kReference, int8): table of tanhf(x)."""
    return _lookup_table(x, out, lambda values: _float32_map("tanhf", np.tanh, values))


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


@dataclass(frozen=True)
class SoftmaxParams:
    """Constants of int8 SOFTMAX (kReference): beta * input scale as a Q5.26 rescaling."""

    input_multiplier: int
    input_left_shift: int
    diff_min: int


def calculate_input_radius(integer_bits: int, left_shift: int, total_signed_bits: int = 31) -> int:
    """TFLite CalculateInputRadius: the largest input difference that does not saturate."""
    rescaled = (float((1 << integer_bits) - 1) * float(1 << (total_signed_bits - integer_bits))
                / float(1 << left_shift))
    return math.floor(rescaled)


def softmax_input_real(beta: float, input_scale: float) -> float:
    """PreprocessSoftmaxScaling's real multiplier: float32 beta * input scale in Q5.26.

    It is capped at INT32_MAX, as the C++ is.
    """
    return min(float(np.float32(beta)) * input_scale
               * float(1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)), float(INT32_MAX))


def prepare_softmax(x: Tensor, attrs: SoftmaxAttrs) -> SoftmaxParams:
    """activations.cc SoftmaxPrepare (kReference): PreprocessSoftmaxScaling, diff_min."""
    real = softmax_input_real(attrs.beta, _quant_of(x).scale0)
    if real <= 1.0:
        raise UncheckedModelError(f"SOFTMAX input '{x.name}': beta * scale too small")
    scaled = quantize_multiplier(real)
    radius = calculate_input_radius(SOFTMAX_DIFF_INTEGER_BITS, scaled.shift)
    return SoftmaxParams(scaled.multiplier, scaled.shift, -radius)


# --- Exact shortcuts for the reference kernels' run step ----------------------------------------
# Tables and scalar or specialised forms of the arithmetic above, computed at prepare time or used
# where numpy's per-call cost dominates; each equals the general form on every input it can get.


def softmax_exps_by_difference(params: SoftmaxParams) -> np.ndarray:
    """exp_on_negative_values of every int8 difference d = x - max(row), indexed by d + 255.

    Differences below `diff_min` take no part in the softmax and hold 0: their share of the sum
    is then 0 and their output -128, exactly as the reference kernel's masks give.
    """
    diffs = np.arange(-255, 1, dtype=np.int64)
    used = diffs >= params.diff_min
    rescaled = saturating_rounding_doubling_high_mul_array(
        np.where(used, diffs, 0) << params.input_left_shift, params.input_multiplier
    )
    exps = exp_on_negative_values_array(rescaled, SOFTMAX_DIFF_INTEGER_BITS)
    return np.where(used, exps, 0)


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


def scale_and_round_thresholds(output_offset: int, act_min: int, act_max: int) -> np.ndarray:
    """Sorted doubles t with clamp(round(p) + output_offset) = act_min + #{t <= p} for every p.

    `round` is C's (halves away from zero): round(p) >= n exactly when p >= n - 0.5 for n > 0
    and p > n - 0.5 for n <= 0, so one searchsorted replaces scale_and_round_array's rounding,
    offset and clamp passes.
    """
    levels = np.arange(act_min + 1, act_max + 1, dtype=np.float64) - output_offset
    halves = levels - 0.5
    return np.where(levels > 0, halves, np.nextafter(halves, np.inf))


def accumulator_thresholds(thresholds: np.ndarray, scale: float, reach: int) -> np.ndarray:
    """For each double t, the smallest integer acc in [-reach, reach + 1] with acc * scale >= t.

    The double product is non-decreasing in acc (scale > 0), so for every |acc| <= reach,
    #{t <= double(acc) * scale} = #{a <= acc}: the scaling pass folds into the thresholds.
    """
    def reaches(acc: np.ndarray) -> np.ndarray:
        return np.multiply(acc, scale, dtype=np.float64) >= thresholds

    with np.errstate(over="ignore", invalid="ignore"):
        guess = np.nan_to_num(np.ceil(thresholds / scale), nan=0.0)
    acc = np.clip(guess, -reach, reach + 1).astype(np.int64)
    while (lower := (acc > -reach) & reaches(acc - 1)).any():
        acc -= lower
    while (higher := (acc <= reach) & ~reaches(acc)).any():
        acc += higher
    return acc


# --- The int32 accumulator of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED --------------------


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


# --- Support constraints that need this arithmetic ----------------------------------------------
# Registered here, beside the computations they run (ir, where the registry lives, cannot import
# quant); the prepare functions above then treat a violation as a bug (UncheckedModelError).


@constraint(OpKind.ADD, OpKind.SUB)
def add_sub_multipliers(graph: Graph, op: Operator) -> str | None:
    """The output scale must exceed twice the larger input scale / 2**20.

    LiteRT's int8 ADD and SUB requantise through multipliers that must lie in (0, 1).
    """
    quant = int8_quant(graph, op.inputs[0], op.inputs[1], op.outputs[0])
    if quant is None:
        return None
    reals = add_real_multipliers(*(q.scale0 for q in quant))
    for what, real in zip(("input 1", "input 2", "output"), reals, strict=True):
        if multiplier_below_one(real) is None:
            return f"{what} multiplier {real:.6g} found"
    return None


@constraint(OpKind.HARD_SWISH)
def hard_swish_output_scale(graph: Graph, op: Operator) -> str | None:
    """The output scale must be at least the input scale / 128 (LiteRT's int8 requirement)."""
    quant = int8_quant(graph, op.inputs[0], op.outputs[0])
    if quant is None:
        return None
    output, _ = hard_swish_multipliers(quant[0].scale0, quant[1].scale0)
    if output.shift <= 0:
        return None
    return f"output scale {quant[1].scale0:.6g} for input scale {quant[0].scale0:.6g} found"


@constraint(OpKind.HARD_SWISH)
def hard_swish_input_scale(graph: Graph, op: Operator) -> str | None:
    """The input scale must be below about 2.5e7 (2**31 * 3 / 256).

    Above it LiteRT's int16 HARD_SWISH kernel shifts a 32-bit int by 31 bits or more, which C++
    leaves undefined.
    """
    quant = int8_quant(graph, op.inputs[0], op.outputs[0])
    if quant is None:
        return None
    _, reluish = hard_swish_multipliers(quant[0].scale0, quant[1].scale0)
    if reluish.shift <= HARD_SWISH_MAX_RELUISH_SHIFT:
        return None
    return f"input scale {quant[0].scale0:.6g} found"


@constraint(OpKind.SOFTMAX)
def softmax_beta_scale(graph: Graph, op: Operator) -> str | None:
    """beta * input scale must exceed 2**-26 (LiteRT's int8 SOFTMAX works in Q5.26)."""
    quant = int8_quant(graph, op.inputs[0])
    if quant is None:
        return None
    real = softmax_input_real(op.attrs.beta, quant[0].scale0)
    if real > 1.0:
        return None
    return f"beta * input scale {real / (1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)):.3g} found"


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
