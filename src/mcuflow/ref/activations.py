"""RELU, RELU6, LEAKY_RELU, LOGISTIC, TANH, HARD_SWISH: Prepare, int8 kernels (tables), float32."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError, constraint, int8_quant
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import LeakyReluAttrs, OpKind
from mcuflow.ir.quantization import INT16_MAX, INT32_MAX
from mcuflow.quant.fixedpoint import (
    QuantizedMultiplier,
    activation_range,
    multiply_by_quantized_multiplier_array,
    quantize_multiplier,
    round_half_away_array,
    rounding_divide_by_pot_int16_array,
    saturating_doubling_high_mul_int16_array,
    saturating_left_shift_int16_array,
    saturating_rounding_doubling_high_mul_int16_array,
    wrap_int16_array,
)
from mcuflow.ref.common import (
    RequantizeParams,
    byte_kernel,
    quant_of,
    requantize_array,
    require_int8,
)
from mcuflow.ref.int16x8 import (
    SigmoidS16Params,
    logistic_s16,
    prepare_sigmoid_s16,
    tanh_s16,
)
from mcuflow.ref.registry import (
    FLOAT_KERNELS,
    KernelFn,
    PreparedFn,
    float_kernel,
    prepared_kernel,
)


def prepare_relu(x: Tensor, out: Tensor, activation: Activation) -> RequantizeParams:
    """activations.cc ReluPrepare + QuantizedReluX: float32 scale ratio, activation clamp."""
    in_q, out_q = quant_of(x), quant_of(out)
    scaled = quantize_multiplier(float(np.float32(in_q.scale0) / np.float32(out_q.scale0)))
    clamp = activation_range(activation, out_q.scale0, out_q.zero_point0)
    return RequantizeParams(in_q.zero_point0, out_q.zero_point0, scaled.multiplier, scaled.shift,
                            clamp.min, clamp.max)


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
    in_q, out_q = quant_of(x), quant_of(out)
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
    in_q, out_q = quant_of(x), quant_of(out)
    output, reluish = hard_swish_multipliers(in_q.scale0, out_q.scale0)
    if output.shift > 0 or reluish.shift > HARD_SWISH_MAX_RELUISH_SHIFT:
        raise UncheckedModelError(f"HARD_SWISH '{out.name}': scales LiteRT cannot requantise")
    return HardSwishParams(
        in_q.zero_point0, out_q.zero_point0, downscale_multiplier_to_int16(output.multiplier),
        output.shift, downscale_multiplier_to_int16(reluish.multiplier), reluish.shift,
    )


@dataclass(frozen=True)
class LookupTable:
    """An int8 -> int8 table: `values[q + 128]` is the output for input q."""

    values: tuple[int, ...]


@functools.cache
def _c_float_function(name: str) -> Callable[[float], float] | None:
    """The C library's float function `name` (expf, tanhf): what LiteRT's kernels call.

    LiteRT's LUTPopulate calls std::exp / std::tanh on a float, i.e. the C library's expf and
    tanhf, which are not correctly rounded: over every float32 input, exp or tanh computed in
    float64 and rounded (numpy) changes the int8 entry of 1 LOGISTIC and 104 TANH inputs that
    LiteRT computes as expf and tanhf do (tests/unit/test_ref_part_b.py LUT_QUANT holds some).
    So the tables come from the same functions; they are constants in the generated C.
    """
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


def _lookup_table(x: Tensor, out: Tensor, transform: Callable[[np.ndarray], np.ndarray]
                  ) -> LookupTable:
    """common.h LUTPopulateInt8: dequantise in float32, transform, requantise with roundf."""
    in_q, out_q = quant_of(x), quant_of(out)
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


def relu(x: np.ndarray, params: RequantizeParams) -> np.ndarray:
    """reference_ops::ReluX: requantise to the output scale, clamp to the RELU / RELU6 range."""
    return requantize_array(x, params).astype(np.int8)


def leaky_relu(x: np.ndarray, params: LeakyReluParams) -> np.ndarray:
    """reference_ops::QuantizeLeakyRelu: identity multiplier for x >= 0, alpha's below zero."""
    p = params
    value = np.asarray(x, dtype=np.int64) - p.input_zero_point
    identity = multiply_by_quantized_multiplier_array(value, p.identity_multiplier,
                                                      p.identity_shift)
    alpha = multiply_by_quantized_multiplier_array(value, abs(p.alpha_multiplier), p.alpha_shift)
    negative = -alpha if p.alpha_multiplier < 0 else alpha
    scaled = np.where(value >= 0, identity, negative)
    return np.clip(scaled + p.output_zero_point, -128, 127).astype(np.int8)


def lookup(x: np.ndarray, table: LookupTable) -> np.ndarray:
    """EvalUsingLookupTable: LOGISTIC and TANH read a 256-entry table."""
    values = np.asarray(table.values, dtype=np.int8)
    return values[np.asarray(x, dtype=np.int64) + 128]


def _reluish(hires: np.ndarray, p: HardSwishParams) -> np.ndarray:
    """x rescaled from [-3, 3] to [0, 1] in Q0.15, saturating (the 'relu-ish' factor)."""
    value = hires
    if p.reluish_shift > 0:
        value = saturating_left_shift_int16_array(value, p.reluish_shift - 1)
    value = saturating_rounding_doubling_high_mul_int16_array(value, p.reluish_multiplier)
    if p.reluish_shift > 0:
        value = saturating_left_shift_int16_array(value, 1)
    if p.reluish_shift < 0:
        value = rounding_divide_by_pot_int16_array(value, -p.reluish_shift)
    return (value + (1 << 15)) >> 1


def hard_swish(x: np.ndarray, params: HardSwishParams) -> np.ndarray:
    """reference_ops::HardSwish (int8): x * relu6(x + 3) / 6 in int16 fixed point."""
    p = params
    hires = (np.asarray(x, dtype=np.int64) - p.input_zero_point) << 7
    preshift = saturating_rounding_doubling_high_mul_int16_array(hires, p.output_multiplier)
    product = saturating_doubling_high_mul_int16_array(_reluish(hires, p), preshift)
    value = rounding_divide_by_pot_int16_array(product, -p.output_shift) + p.output_zero_point
    return np.clip(wrap_int16_array(value), -128, 127).astype(np.int8)  # int16_t += wraps


def _int8_in_out(graph: Graph, op: Operator) -> tuple[Tensor, Tensor]:
    tensors = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    require_int8(op, *tensors)
    return tensors


@prepared_kernel(OpKind.RELU)
def _prepare_relu(graph: Graph, op: Operator) -> PreparedFn:
    params = prepare_relu(*_int8_in_out(graph, op), Activation.RELU)
    return byte_kernel(lambda x: relu(x, params))


@prepared_kernel(OpKind.RELU6)
def _prepare_relu6(graph: Graph, op: Operator) -> PreparedFn:
    params = prepare_relu(*_int8_in_out(graph, op), Activation.RELU6)
    return byte_kernel(lambda x: relu(x, params))


@prepared_kernel(OpKind.LEAKY_RELU)
def _prepare_leaky_relu(graph: Graph, op: Operator) -> PreparedFn:
    params = prepare_leaky_relu(*_int8_in_out(graph, op), op.attrs)
    return byte_kernel(lambda x: leaky_relu(x, params))


def _int16_input(graph: Graph, op: Operator) -> SigmoidS16Params | None:
    """The int16 LOGISTIC / TANH rescaling of `op`, None for an int8 op."""
    x = graph.tensor(op.inputs[0])
    return prepare_sigmoid_s16(x, op.kind) if x.dtype is DType.INT16 else None


@prepared_kernel(OpKind.LOGISTIC)
def _prepare_logistic(graph: Graph, op: Operator) -> PreparedFn:
    if (wide := _int16_input(graph, op)) is not None:
        return lambda inputs: [logistic_s16(inputs[0], wide)]
    table = prepare_logistic(*_int8_in_out(graph, op))
    return byte_kernel(lambda x: lookup(x, table))


@prepared_kernel(OpKind.TANH)
def _prepare_tanh(graph: Graph, op: Operator) -> PreparedFn:
    if (wide := _int16_input(graph, op)) is not None:
        return lambda inputs: [tanh_s16(inputs[0], wide)]
    table = prepare_tanh(*_int8_in_out(graph, op))
    return byte_kernel(lambda x: lookup(x, table))


@prepared_kernel(OpKind.HARD_SWISH)
def _prepare_hard_swish(graph: Graph, op: Operator) -> PreparedFn:
    params = prepare_hard_swish(*_int8_in_out(graph, op))
    return byte_kernel(lambda x: hard_swish(x, params))


def _unary(function: Callable[[np.ndarray], np.ndarray]) -> KernelFn:
    def kernel(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(function(inputs[0].astype(np.float64)), np.float32)]

    return kernel


FLOAT_KERNELS[OpKind.LOGISTIC] = _unary(lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)))
FLOAT_KERNELS[OpKind.TANH] = _unary(np.tanh)
FLOAT_KERNELS[OpKind.HARD_SWISH] = _unary(lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0)
FLOAT_KERNELS[OpKind.RELU] = _unary(lambda x: np.maximum(x, 0.0))
FLOAT_KERNELS[OpKind.RELU6] = _unary(lambda x: np.clip(x, 0.0, 6.0))


@float_kernel(OpKind.LEAKY_RELU)
def _leaky_relu_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: LeakyReluAttrs = op.attrs
    x = inputs[0]
    return [np.where(x >= 0, x, x * np.float32(attrs.alpha)).astype(np.float32)]
