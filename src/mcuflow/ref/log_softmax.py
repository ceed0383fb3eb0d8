"""LOG_SOFTMAX: Prepare, the int8 kernel (LiteRT's reference_integer_ops::LogSoftmax), float32.

Shares SOFTMAX's input rescaling (beta 1) and its table of exps by difference from the row
maximum; the log of the row's sum of exps is TFLite's fixed-point log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError, constraint, int8_quant
from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind
from mcuflow.ir.quantization import INT32_MIN
from mcuflow.quant.fixedpoint import (
    calculate_input_radius,
    log_x_for_x_greater_than_or_equal_to_1,
    multiplier_below_one,
    multiply_by_quantized_multiplier_array,
    quantize_multiplier,
    rounding_divide_by_pot_array,
)
from mcuflow.ref.common import quant_of, require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel
from mcuflow.ref.softmax import (
    SOFTMAX_ACCUMULATION_INTEGER_BITS,
    SOFTMAX_DIFF_INTEGER_BITS,
    SoftmaxParams,
    softmax_exps_by_difference,
    softmax_input_real,
)

LOG_SOFTMAX_OUTPUT_INTEGER_BITS = 4
LOG_SOFTMAX_OUTPUT_ZERO_POINT = 127
LOG_SOFTMAX_OUTPUT_SHIFT = 31 - SOFTMAX_DIFF_INTEGER_BITS - LOG_SOFTMAX_OUTPUT_INTEGER_BITS


@dataclass(frozen=True)
class LogSoftmaxParams:
    """Constants of int8 LOG_SOFTMAX (activations.cc LogSoftmaxPrepare).

    `softmax`: the input scale as a Q5.26 rescaling and diff_min, as SOFTMAX with beta 1;
    `reverse_multiplier`, `reverse_shift`: the inverse rescaling (shift <= 0).
    """

    softmax: SoftmaxParams
    reverse_multiplier: int
    reverse_shift: int


def prepare_log_softmax(x: Tensor) -> LogSoftmaxParams:
    """PreprocessLogSoftmaxScalingExp with beta 1 and CalculateInputRadius."""
    real = softmax_input_real(1.0, quant_of(x).scale0)
    if real <= 1.0:
        raise UncheckedModelError(f"LOG_SOFTMAX input '{x.name}': input scale too small")
    scaled = quantize_multiplier(real)
    radius = calculate_input_radius(SOFTMAX_DIFF_INTEGER_BITS, scaled.shift)
    reverse = multiplier_below_one((1 << (31 - scaled.shift)) / scaled.multiplier)
    if reverse is None:
        raise UncheckedModelError(f"LOG_SOFTMAX input '{x.name}': no inverse rescaling")
    return LogSoftmaxParams(SoftmaxParams(scaled.multiplier, scaled.shift, -radius),
                            reverse.multiplier, reverse.shift)


@constraint(OpKind.LOG_SOFTMAX)
def log_softmax_input_scale(graph: Graph, op: Operator) -> str | None:
    """The input scale must exceed 2**-26 (LiteRT's int8 LOG_SOFTMAX works in Q5.26)."""
    quant = int8_quant(graph, op.inputs[0])
    if quant is None:
        return None
    real = softmax_input_real(1.0, quant[0].scale0)
    return None if real > 1.0 else f"input scale {quant[0].scale0:.3g} found"


def row_logs(sums: np.ndarray) -> np.ndarray:
    """The Q5.26 log of every row's Q12.19 sum of exps, shaped like `sums`."""
    values, inverse = np.unique(sums, return_inverse=True)
    logs = [log_x_for_x_greater_than_or_equal_to_1(int(v), SOFTMAX_DIFF_INTEGER_BITS,
                                                   SOFTMAX_ACCUMULATION_INTEGER_BITS)
            for v in values.tolist()]
    return np.array(logs, np.int64)[inverse].reshape(sums.shape)


def log_softmax(x: np.ndarray, params: LogSoftmaxParams) -> np.ndarray:
    """reference_integer_ops::LogSoftmax of int8 `x` along its last axis.

    Per row: the sum of exps of the differences >= diff_min (Q12.19) and its log (Q5.26); each
    difference above the adjusted minimum gives (rescaled difference - log) in Q4 units plus
    127, the others -128.
    """
    p = params.softmax
    diff = np.asarray(x, np.int64) - x.max(axis=-1, keepdims=True)
    exps = softmax_exps_by_difference(p)
    accumulated = rounding_divide_by_pot_array(exps, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    logs = row_logs(accumulated[diff + 255].sum(axis=-1, keepdims=True))
    limit = multiply_by_quantized_multiplier_array(logs + INT32_MIN, params.reverse_multiplier,
                                                   params.reverse_shift)
    adjusted = np.maximum(p.diff_min - 1, limit)
    rescaled = multiply_by_quantized_multiplier_array(diff, p.input_multiplier,
                                                      p.input_left_shift)
    value = rounding_divide_by_pot_array(rescaled - logs, LOG_SOFTMAX_OUTPUT_SHIFT)
    out = np.clip(value + LOG_SOFTMAX_OUTPUT_ZERO_POINT, -128, 127)
    return np.where(diff > adjusted, out, -128).astype(np.int8)


@prepared_kernel(OpKind.LOG_SOFTMAX)
def _prepare_log_softmax(graph: Graph, op: Operator) -> PreparedFn:
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    require_int8(op, x, out)
    params = prepare_log_softmax(x)
    return lambda inputs: [log_softmax(inputs[0], params)]


@float_kernel(OpKind.LOG_SOFTMAX)
def _log_softmax_float(graph: Graph, op: Operator, inputs: list[np.ndarray]
                       ) -> list[np.ndarray]:
    logits = inputs[0].astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return [(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))).astype(np.float32)]
