"""SQUARED_DIFFERENCE: Prepare, the int8 kernel (LiteRT's squared_difference.cc), float32."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError, constraint, int8_quant
from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind
from mcuflow.quant.fixedpoint import multiplier_below_one, multiply_by_quantized_multiplier_array
from mcuflow.ref.common import pair_kernel, quant_of, require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel

SQUARED_DIFFERENCE_LEFT_SHIFT = 7


@dataclass(frozen=True)
class SquaredDifferenceParams:
    """Constants of int8 SQUARED_DIFFERENCE (squared_difference.cc Prepare; all shifts <= 0).

    d = MBQM((x1 + input1_offset) << 7, m1, s1) - MBQM((x2 + input2_offset) << 7, m2, s2);
    out = clamp(MBQM(d * d, output_multiplier, output_shift) + output_offset, -128, 127).
    """

    input1_offset: int
    input1_multiplier: int
    input1_shift: int
    input2_offset: int
    input2_multiplier: int
    input2_shift: int
    output_offset: int
    output_multiplier: int
    output_shift: int


def squared_difference_real_multipliers(
    input1_scale: float, input2_scale: float, output_scale: float
) -> tuple[float, float, float]:
    """The real multipliers of both inputs and of the output.

    The inputs' are relative to twice the larger input scale, the output's is (twice the larger
    scale)**2 / (2**14 * output scale).
    """
    twice_max = 2.0 * max(input1_scale, input2_scale)
    shifted_output = float((1 << 2 * SQUARED_DIFFERENCE_LEFT_SHIFT) * np.float32(output_scale))
    return (input1_scale / twice_max, input2_scale / twice_max,
            twice_max * twice_max / shifted_output)


def prepare_squared_difference(x1: Tensor, x2: Tensor, out: Tensor) -> SquaredDifferenceParams:
    """squared_difference.cc Prepare for int8: every multiplier below one."""
    q1, q2, out_q = quant_of(x1), quant_of(x2), quant_of(out)
    m1, m2, mo = (multiplier_below_one(real) for real in squared_difference_real_multipliers(
        q1.scale0, q2.scale0, out_q.scale0))
    if m1 is None or m2 is None or mo is None:
        raise UncheckedModelError(
            f"SQUARED_DIFFERENCE output '{out.name}': a multiplier outside (0, 1)")
    return SquaredDifferenceParams(-q1.zero_point0, m1.multiplier, m1.shift, -q2.zero_point0,
                                   m2.multiplier, m2.shift, out_q.zero_point0, mo.multiplier,
                                   mo.shift)


@constraint(OpKind.SQUARED_DIFFERENCE)
def squared_difference_multipliers(graph: Graph, op: Operator) -> str | None:
    """The output scale must exceed (twice the larger input scale)**2 / 2**14.

    LiteRT's int8 SQUARED_DIFFERENCE requantises through multipliers that must lie in (0, 1).
    """
    quant = int8_quant(graph, op.inputs[0], op.inputs[1], op.outputs[0])
    if quant is None:
        return None
    reals = squared_difference_real_multipliers(*(q.scale0 for q in quant))
    for what, real in zip(("input 1", "input 2", "output"), reals, strict=True):
        if multiplier_below_one(real) is None:
            return f"{what} multiplier {real:.6g} found"
    return None


def squared_difference(x1: np.ndarray, x2: np.ndarray, params: SquaredDifferenceParams
                       ) -> np.ndarray:
    """LiteRT's int8 SquaredDifference on int8 arrays (numpy broadcasting)."""
    p = params
    shift = SQUARED_DIFFERENCE_LEFT_SHIFT
    a = multiply_by_quantized_multiplier_array(
        (np.asarray(x1, np.int64) + p.input1_offset) << shift, p.input1_multiplier,
        p.input1_shift)
    b = multiply_by_quantized_multiplier_array(
        (np.asarray(x2, np.int64) + p.input2_offset) << shift, p.input2_multiplier,
        p.input2_shift)
    raw = multiply_by_quantized_multiplier_array((a - b) * (a - b), p.output_multiplier,
                                                 p.output_shift)
    return np.clip(raw + p.output_offset, -128, 127).astype(np.int8)


@prepared_kernel(OpKind.SQUARED_DIFFERENCE)
def _prepare_squared_difference(graph: Graph, op: Operator) -> PreparedFn:
    tensors = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]),
               graph.tensor(op.outputs[0]))
    require_int8(op, *tensors)
    params = prepare_squared_difference(*tensors)
    return pair_kernel(lambda x1, x2: squared_difference(x1, x2, params))


@float_kernel(OpKind.SQUARED_DIFFERENCE)
def _squared_difference_float(graph: Graph, op: Operator, inputs: list[np.ndarray]
                              ) -> list[np.ndarray]:
    difference = inputs[0].astype(np.float32) - inputs[1].astype(np.float32)
    return [difference * difference]
