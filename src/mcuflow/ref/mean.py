"""MEAN reference kernels: int8 and int16 (LiteRT's QuantizedMeanOrSum, any axes), float32."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import MeanAttrs, OpKind
from mcuflow.quant.fixedpoint import (
    QuantizedMultiplier,
    multiply_by_quantized_multiplier_array,
    quantize_multiplier,
)
from mcuflow.ref.common import quant_of, require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


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
    in_q, out_q = quant_of(x), quant_of(out)
    axes = {axis % len(x.shape) for axis in attrs.axes}
    count = math.prod(x.shape[axis] for axis in axes)
    ratio = quantize_multiplier(in_q.scale0 / out_q.scale0)
    folded = fold_count(ratio, count)
    return MeanParams(in_q.zero_point0, out_q.zero_point0, folded.multiplier, folded.shift, count)


def fold_count(ratio: QuantizedMultiplier, count: int) -> QuantizedMultiplier:
    """Fold 1/count into a multiplier exactly as reference_ops::QuantizedMeanOrSum does."""
    shift = min(count.bit_length() - 1, 32, 31 + ratio.shift)
    return QuantizedMultiplier((ratio.multiplier << shift) // count, ratio.shift - shift)


def mean(x: np.ndarray, attrs: MeanAttrs, params: MeanParams,
         dtype: type = np.int8) -> np.ndarray:
    """MEAN of `x` over `attrs.axes`: integer sum, zero-point correction, one requantisation.

    The output is int8, or int16 with `dtype` (LiteRT's int16 MEAN takes the same path).
    LiteRT's reference resolver takes this path for every axis set, keep_dims or not.
    """
    axes = tuple(sorted({axis % x.ndim for axis in attrs.axes}))
    total = x.sum(axis=axes, dtype=np.int64, keepdims=attrs.keep_dims)
    shifted = total - params.input_zero_point * params.count
    scaled = multiply_by_quantized_multiplier_array(shifted, params.multiplier, params.shift)
    limits = np.iinfo(dtype)
    return np.clip(scaled + params.output_zero_point, limits.min, limits.max).astype(dtype)


@prepared_kernel(OpKind.MEAN)
def prepare_mean_op(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's MEAN."""
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    if x.dtype is not DType.INT16:
        require_int8(op, x, out)
    attrs, params = op.attrs, prepare_mean(x, out, op.attrs)
    return lambda inputs: [mean(inputs[0], attrs, params, out.dtype.numpy.type)]


@float_kernel(OpKind.MEAN)
def _mean_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: MeanAttrs = op.attrs
    out = inputs[0].mean(axis=attrs.axes, keepdims=attrs.keep_dims, dtype=np.float64)
    return [np.asarray(out, np.float32).reshape(graph.tensor(op.outputs[0]).shape)]
