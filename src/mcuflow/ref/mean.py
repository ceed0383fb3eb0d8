"""MEAN reference kernel: int8, LiteRT's reference QuantizedMeanOrSum to the bit, any axes."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import MeanAttrs, OpKind
from mcuflow.quant.fixedpoint import (
    MeanParams,
    multiply_by_quantized_multiplier_array,
    prepare_mean,
)
from mcuflow.ref.common import require_int8
from mcuflow.ref.registry import PreparedFn, prepared_kernel


def mean(x: np.ndarray, attrs: MeanAttrs, params: MeanParams) -> np.ndarray:
    """int8 MEAN of `x` over `attrs.axes`: integer sum, zero-point correction, one requantisation.

    LiteRT's reference resolver takes this path for every axis set, keep_dims or not.
    """
    axes = tuple(sorted({axis % x.ndim for axis in attrs.axes}))
    total = x.sum(axis=axes, dtype=np.int64, keepdims=attrs.keep_dims)
    shifted = total - params.input_zero_point * params.count
    scaled = multiply_by_quantized_multiplier_array(shifted, params.multiplier, params.shift)
    return np.clip(scaled + params.output_zero_point, -128, 127).astype(np.int8)


@prepared_kernel(OpKind.MEAN)
def prepare_mean_op(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's MEAN."""
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    require_int8(op, x, out)
    attrs, params = op.attrs, prepare_mean(x, out, op.attrs)
    return lambda inputs: [mean(inputs[0], attrs, params)]
