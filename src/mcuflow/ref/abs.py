"""ABS: the int8 kernel (LiteRT's elementwise.cc AbsEvalQuantized, as a byte table), float32."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind
from mcuflow.quant.fixedpoint import multiply_by_quantized_multiplier_array, quantize_multiplier
from mcuflow.ref.common import byte_kernel, quant_of, require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


@dataclass(frozen=True)
class AbsParams:
    """Constants of int8 ABS.

    out = clamp(|x - input_zero_point|, requantised when the scales differ (`rescale`), plus
    output_zero_point, -128, 127).
    """

    input_zero_point: int
    output_zero_point: int
    rescale: bool
    multiplier: int
    shift: int


def prepare_abs(x: Tensor, out: Tensor) -> AbsParams:
    """GenericPrepare for ABS: the float32 scale ratio, used only when the scales differ."""
    in_q, out_q = quant_of(x), quant_of(out)
    in_scale, out_scale = np.float32(in_q.scale0), np.float32(out_q.scale0)
    ratio = quantize_multiplier(float(in_scale / out_scale))
    return AbsParams(in_q.zero_point0, out_q.zero_point0, bool(in_scale != out_scale),
                     ratio.multiplier, ratio.shift)


def abs_int8(x: np.ndarray, params: AbsParams) -> np.ndarray:
    """AbsEvalQuantized<int8_t> on an int8 array."""
    value = np.abs(np.asarray(x, np.int64) - params.input_zero_point)
    if params.rescale:
        value = multiply_by_quantized_multiplier_array(value, params.multiplier, params.shift)
    return np.clip(value + params.output_zero_point, -128, 127).astype(np.int8)


@prepared_kernel(OpKind.ABS)
def _prepare_abs(graph: Graph, op: Operator) -> PreparedFn:
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    require_int8(op, x, out)
    params = prepare_abs(x, out)
    return byte_kernel(lambda values: abs_int8(values, params))


@float_kernel(OpKind.ABS)
def _abs_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.abs(inputs[0].astype(np.float32))]
