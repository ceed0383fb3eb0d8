"""SVDF reference kernels: int8 (LiteRT's reference_ops::EvalIntegerSVDF to the bit), float32.

Per invocation, the state of every filter first shifts left by one, dropping its oldest value
(LiteRT 2.x shifts before, as TFLM; older LiteRT shifted after the time matmul, which gives the
same outputs but another state between invocations). Then per batch and filter: the feature
dot product of the input (minus its zero point) with the filter's weights_feature row, scaled by
effective_scale_1 = input x weights_feature / state scale and saturated to int16, goes into the
filter's newest (last) state slot;
the time dot product of the filter's `memory` state values with its weights_time row (int32);
each unit sums its `rank` filters and its bias, is scaled by effective_scale_2 = state x
weights_time / output scale, offset by the output zero point and clamped to int8 (neither
LiteRT's nor TFLM's int8 kernel applies the fused activation, RELU or NONE). The state array
is updated in place: it persists across invocations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind, SvdfAttrs
from mcuflow.ir.quantization import INT16_MAX, INT16_MIN
from mcuflow.ir.svdf import STATE_INPUT, svdf_bias, svdf_dims
from mcuflow.quant.fixedpoint import (
    QuantizedMultiplier,
    multiply_by_quantized_multiplier_array,
    quantize_multiplier,
    wrap_int32_array,
)
from mcuflow.ref.common import apply_activation, quant_of, require_constant
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


@dataclass(frozen=True)
class SvdfParams:
    """Constants of an int8 SVDF (svdf.cc Prepare): the two effective scales and zero points."""

    batch: int
    filters: int
    memory: int
    units: int
    rank: int
    input_offset: int
    output_offset: int
    feature: QuantizedMultiplier
    time: QuantizedMultiplier


def effective_scale(a: float, b: float, c: float) -> float:
    """a x b / c as svdf.cc computes it: in float32 (the tensors' scales), then widened."""
    return float(np.float32(np.float32(a) * np.float32(b)) / np.float32(c))


def prepare_svdf(graph: Graph, op: Operator) -> SvdfParams:
    """The constants of `op` from its tensors' quantisation."""
    batch, _, filters, memory, units = svdf_dims(graph, op)
    x, feature, time, state, out = _tensors(graph, op)
    in_q, out_q, state_q = quant_of(x), quant_of(out), quant_of(state)
    return SvdfParams(
        batch, filters, memory, units, op.attrs.rank, in_q.zero_point0, out_q.zero_point0,
        quantize_multiplier(effective_scale(in_q.scale0, quant_of(feature).scale0,
                                            state_q.scale0)),
        quantize_multiplier(effective_scale(state_q.scale0, quant_of(time).scale0,
                                            out_q.scale0)))


def _tensors(graph: Graph, op: Operator) -> tuple[Tensor, ...]:
    names = (op.inputs[0], op.inputs[1], op.inputs[2], op.inputs[STATE_INPUT], op.outputs[0])
    return tuple(graph.tensors[name] for name in names)


def svdf_int8(p: SvdfParams, x: np.ndarray, feature: np.ndarray, time: np.ndarray,
              bias: np.ndarray | None, state: np.ndarray) -> np.ndarray:
    """One invocation: the int8 output; `state` (int16 [batch, memory x filters]) is updated."""
    memory = state.reshape(p.batch, p.filters, p.memory)
    memory[:, :, :-1] = memory[:, :, 1:].copy()
    dots = wrap_int32_array((x.astype(np.int64) - p.input_offset) @ feature.astype(np.int64).T)
    scaled = multiply_by_quantized_multiplier_array(dots, p.feature.multiplier, p.feature.shift)
    memory[:, :, -1] = np.clip(scaled, INT16_MIN, INT16_MAX)
    products = memory.astype(np.int64) * time.astype(np.int64)[None]
    sums = wrap_int32_array(products.sum(axis=2)).reshape(p.batch, p.units, p.rank).sum(axis=2)
    if bias is not None:
        sums = sums + bias.astype(np.int64)[None]
    scaled = multiply_by_quantized_multiplier_array(wrap_int32_array(sums), p.time.multiplier,
                                                    p.time.shift)
    return np.clip(scaled + p.output_offset, -128, 127).astype(np.int8)


@prepared_kernel(OpKind.SVDF)
def prepare_svdf_kernel(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's int8 SVDF; the run function updates its state input in place."""
    params = prepare_svdf(graph, op)
    feature = require_constant(op, graph.tensors[op.inputs[1]])
    time = require_constant(op, graph.tensors[op.inputs[2]])
    bias_name = svdf_bias(op)
    bias = None if bias_name is None else require_constant(op, graph.tensors[bias_name])
    return lambda inputs: [svdf_int8(params, inputs[0], feature, time, bias, inputs[-1])]


@float_kernel(OpKind.SVDF)
def _svdf_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """reference_ops::EvalFloatSVDF, the state shifted first and updated in place."""
    attrs: SvdfAttrs = op.attrs
    batch, _, filters, memory_size, units = svdf_dims(graph, op)
    x, feature, time = (np.asarray(inputs[i], np.float32) for i in (0, 1, 2))
    memory = inputs[-1].reshape(batch, filters, memory_size)
    memory[:, :, :-1] = memory[:, :, 1:].copy()
    memory[:, :, -1] = x @ feature.T
    sums = (memory * time[None]).sum(axis=2).reshape(batch, units, attrs.rank).sum(axis=2)
    if svdf_bias(op) is not None:
        sums = sums + np.asarray(inputs[3], np.float32)[None]
    return [apply_activation(sums.astype(np.float32), attrs.activation)]
