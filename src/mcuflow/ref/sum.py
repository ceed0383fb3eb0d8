"""SUM reference kernels: int8 (LiteRT's QuantizedMeanOrSum with compute_sum), float32."""

from __future__ import annotations

import math

import numpy as np

from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import MeanAttrs, OpKind
from mcuflow.quant.fixedpoint import quantize_multiplier
from mcuflow.ref.common import quant_of, require_int8
from mcuflow.ref.mean import MeanParams, mean
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


def prepare_sum(x: Tensor, out: Tensor, attrs: MeanAttrs) -> MeanParams:
    """reduce.cc PrepareMeanOrSum: MEAN's constants without 1/count folded into the multiplier.

    The int8 kernel is then MEAN's: sum, zero-point correction over `count`, one requantisation
    by input scale / output scale.
    """
    in_q, out_q = quant_of(x), quant_of(out)
    axes = {axis % len(x.shape) for axis in attrs.axes}
    count = math.prod(x.shape[axis] for axis in axes)
    ratio = quantize_multiplier(in_q.scale0 / out_q.scale0)
    return MeanParams(in_q.zero_point0, out_q.zero_point0, ratio.multiplier, ratio.shift, count)


@prepared_kernel(OpKind.SUM)
def prepare_sum_op(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's SUM (its input and output quantisation differ: sum_requantises)."""
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    require_int8(op, x, out)
    attrs, params = op.attrs, prepare_sum(x, out, op.attrs)
    return lambda inputs: [mean(inputs[0], attrs, params)]


@float_kernel(OpKind.SUM)
def _sum_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: MeanAttrs = op.attrs
    out = inputs[0].sum(axis=attrs.axes, keepdims=attrs.keep_dims, dtype=np.float64)
    return [np.asarray(out, np.float32).reshape(graph.tensor(op.outputs[0]).shape)]
