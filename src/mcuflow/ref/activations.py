"""Reference kernels of int8 RELU, RELU6, LEAKY_RELU, LOGISTIC, TANH and HARD_SWISH (tables)."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import Activation, OpKind
from mcuflow.quant.fixedpoint import (
    HardSwishParams,
    LeakyReluParams,
    LookupTable,
    RequantizeParams,
    multiply_by_quantized_multiplier_array,
    prepare_hard_swish,
    prepare_leaky_relu,
    prepare_logistic,
    prepare_relu,
    prepare_tanh,
    requantize_array,
    rounding_divide_by_pot_int16_array,
    saturating_doubling_high_mul_int16_array,
    saturating_left_shift_int16_array,
    saturating_rounding_doubling_high_mul_int16_array,
    wrap_int16_array,
)
from mcuflow.ref.common import byte_kernel, require_int8
from mcuflow.ref.registry import PreparedFn, prepared_kernel


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


@prepared_kernel(OpKind.LOGISTIC)
def _prepare_logistic(graph: Graph, op: Operator) -> PreparedFn:
    table = prepare_logistic(*_int8_in_out(graph, op))
    return byte_kernel(lambda x: lookup(x, table))


@prepared_kernel(OpKind.TANH)
def _prepare_tanh(graph: Graph, op: Operator) -> PreparedFn:
    table = prepare_tanh(*_int8_in_out(graph, op))
    return byte_kernel(lambda x: lookup(x, table))


@prepared_kernel(OpKind.HARD_SWISH)
def _prepare_hard_swish(graph: Graph, op: Operator) -> PreparedFn:
    params = prepare_hard_swish(*_int8_in_out(graph, op))
    return byte_kernel(lambda x: hard_swish(x, params))
