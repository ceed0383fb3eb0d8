"""Reference kernel of int8 SOFTMAX: LiteRT's kReference gemmlowp fixed-point path."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.quant.fixedpoint import (
    SOFTMAX_ACCUMULATION_INTEGER_BITS,
    SOFTMAX_DIFF_INTEGER_BITS,
    SoftmaxParams,
    exp_on_negative_values_array,
    get_reciprocal_array,
    prepare_softmax,
    rounding_divide_by_pot_array,
    saturating_rounding_doubling_high_mul_array,
)
from mcuflow.ref.common import require_int8
from mcuflow.ref.registry import PreparedFn, prepared_kernel


def softmax(x: np.ndarray, params: SoftmaxParams) -> np.ndarray:
    """reference_ops::Softmax (int8 in, int8 out with scale 1/256 and zero point -128).

    Every row along the last axis: exp of the rescaled differences to the row maximum (Q5.26 in,
    Q0.31 out), their sum in Q12.19, its reciprocal, and each exp times it rounded to 8 bits.
    """
    x64 = np.asarray(x, dtype=np.int64)
    diff = x64 - x64.max(axis=-1, keepdims=True)
    used = diff >= params.diff_min
    rescaled = saturating_rounding_doubling_high_mul_array(
        np.where(used, diff, 0) << params.input_left_shift, params.input_multiplier
    )
    exp = exp_on_negative_values_array(rescaled, SOFTMAX_DIFF_INTEGER_BITS)
    accumulated = rounding_divide_by_pot_array(exp, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    sum_of_exps = np.where(used, accumulated, 0).sum(axis=-1, keepdims=True)
    scale, bits_over_unit = get_reciprocal_array(sum_of_exps, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    exponent = bits_over_unit + 31 - 8
    unsaturated = rounding_divide_by_pot_array(
        saturating_rounding_doubling_high_mul_array(scale, exp), exponent
    )
    output = np.clip(unsaturated - 128, -128, 127)
    return np.where(used, output, -128).astype(np.int8)


@prepared_kernel(OpKind.SOFTMAX)
def _prepare_softmax(graph: Graph, op: Operator) -> PreparedFn:
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    require_int8(op, x, out)
    params = prepare_softmax(x, op.attrs)
    return lambda inputs: [softmax(inputs[0], params)]
