"""PRELU: Prepare, the int8 kernel (LiteRT's BroadcastPrelu4DSlow), float32."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind
from mcuflow.quant.fixedpoint import multiply_by_quantized_multiplier_array, quantize_multiplier
from mcuflow.ref.common import pair_kernel, quant_of, require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


@dataclass(frozen=True)
class PreluParams:
    """Constants of int8 PRELU (activations.cc PreluPrepare).

    v = x + input_offset; out = clamp(MBQM(v, m1, s1) if v >= 0 else
    MBQM(v * (alpha + alpha_offset), m2, s2), plus output_offset, -128, 127).
    """

    input_offset: int
    alpha_offset: int
    output_offset: int
    identity_multiplier: int
    identity_shift: int
    alpha_multiplier: int
    alpha_shift: int


def prepare_prelu(x: Tensor, alpha: Tensor, out: Tensor) -> PreluParams:
    """PreluPrepare: input / output and input * alpha / output, computed in float32 as in C."""
    x_q, alpha_q, out_q = quant_of(x), quant_of(alpha), quant_of(out)
    f32 = np.float32
    identity = quantize_multiplier(float(f32(x_q.scale0) / f32(out_q.scale0)))
    negative = quantize_multiplier(
        float(f32(x_q.scale0) * f32(alpha_q.scale0) / f32(out_q.scale0)))
    return PreluParams(-x_q.zero_point0, -alpha_q.zero_point0, out_q.zero_point0,
                       identity.multiplier, identity.shift, negative.multiplier, negative.shift)


def prelu(x: np.ndarray, alpha: np.ndarray, params: PreluParams) -> np.ndarray:
    """reference_ops::BroadcastPrelu4DSlow on int8 arrays (numpy broadcasting)."""
    p = params
    value = np.asarray(x, np.int64) + p.input_offset
    slope = np.asarray(alpha, np.int64) + p.alpha_offset
    positive = multiply_by_quantized_multiplier_array(value, p.identity_multiplier,
                                                      p.identity_shift)
    negative = multiply_by_quantized_multiplier_array(value * slope, p.alpha_multiplier,
                                                      p.alpha_shift)
    raw = np.where(value >= 0, positive, negative)
    return np.clip(raw + p.output_offset, -128, 127).astype(np.int8)


@prepared_kernel(OpKind.PRELU)
def _prepare_prelu(graph: Graph, op: Operator) -> PreparedFn:
    tensors = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]),
               graph.tensor(op.outputs[0]))
    require_int8(op, *tensors)
    params = prepare_prelu(*tensors)
    return pair_kernel(lambda x, alpha: prelu(x, alpha, params))


@float_kernel(OpKind.PRELU)
def _prelu_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    x, alpha = inputs[0].astype(np.float32), inputs[1].astype(np.float32)
    return [np.where(x >= 0, x, x * alpha).astype(np.float32)]
