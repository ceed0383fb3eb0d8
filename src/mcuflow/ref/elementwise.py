"""ADD, SUB and MUL: Prepare, int8 kernels (broadcasting, fused clamp, pair tables), float32."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError, constraint, int8_quant
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import ElementwiseAttrs, OpKind
from mcuflow.ir.quantization import INT16_MAX, INT16_MIN
from mcuflow.quant.fixedpoint import (
    activation_range,
    multiplier_below_one,
    multiply_by_quantized_multiplier_array,
    quantize_multiplier,
)
from mcuflow.ref.common import apply_activation, pair_kernel, quant_of, require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel

ADD_LEFT_SHIFT = 20
ADD_LEFT_SHIFT_S16 = 15
"""add.cc's left shift of int16 inputs on the general path (`general_scale_int16`)."""


@dataclass(frozen=True)
class AddParams:
    """Constants of int8 ADD and SUB (add.cc / sub.cc Prepare; all shifts are <= 0).

    out = clamp(MBQM(MBQM((x1 + input1_offset) << left_shift, m1, s1) +- MBQM(..., m2, s2),
    output_multiplier, output_shift) + output_offset, act_min, act_max).
    """

    left_shift: int
    input1_offset: int
    input1_multiplier: int
    input1_shift: int
    input2_offset: int
    input2_multiplier: int
    input2_shift: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def add_real_multipliers(
    input1_scale: float, input2_scale: float, output_scale: float,
    left_shift: int = ADD_LEFT_SHIFT,
) -> tuple[float, float, float]:
    """add.cc / sub.cc Prepare: the real multipliers of both inputs and of the output.

    The inputs' are relative to twice the larger input scale, the output's to 2**20 times it.
    """
    twice_max_input_scale = 2.0 * max(input1_scale, input2_scale)
    return (input1_scale / twice_max_input_scale, input2_scale / twice_max_input_scale,
            twice_max_input_scale / ((1 << left_shift) * output_scale))


def prepare_add(x1: Tensor, x2: Tensor, out: Tensor, attrs: ElementwiseAttrs) -> AddParams:
    """add.cc / sub.cc Prepare for int8: scales relative to twice the larger input scale."""
    q1, q2, out_q = quant_of(x1), quant_of(x2), quant_of(out)
    m1, m2, mo = (multiplier_below_one(real) for real in add_real_multipliers(
        q1.scale0, q2.scale0, out_q.scale0))
    if m1 is None or m2 is None or mo is None:
        raise UncheckedModelError(f"ADD/SUB output '{out.name}': a multiplier outside (0, 1)")
    clamp = activation_range(attrs.activation, out_q.scale0, out_q.zero_point0)
    return AddParams(
        ADD_LEFT_SHIFT, -q1.zero_point0, m1.multiplier, m1.shift, -q2.zero_point0,
        m2.multiplier, m2.shift, out_q.zero_point0, mo.multiplier, mo.shift, clamp.min, clamp.max,
    )


@dataclass(frozen=True)
class MulParams:
    """Constants of int8 MUL: out = clamp(MBQM((x1 + o1) * (x2 + o2)) + output_offset)."""

    input1_offset: int
    input2_offset: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def prepare_mul(x1: Tensor, x2: Tensor, out: Tensor, attrs: ElementwiseAttrs) -> MulParams:
    """mul.cc Prepare: the multiplier in1 * in2 / out is computed in float32, as in C."""
    q1, q2, out_q = quant_of(x1), quant_of(x2), quant_of(out)
    real = np.float32(q1.scale0) * np.float32(q2.scale0) / np.float32(out_q.scale0)
    scaled = quantize_multiplier(float(real))
    clamp = activation_range(attrs.activation, out_q.scale0, out_q.zero_point0)
    return MulParams(-q1.zero_point0, -q2.zero_point0, out_q.zero_point0, scaled.multiplier,
                     scaled.shift, clamp.min, clamp.max)


@constraint(OpKind.ADD, OpKind.SUB)
def add_sub_multipliers(graph: Graph, op: Operator) -> str | None:
    """The output scale must exceed twice the larger input scale / 2**20.

    LiteRT's int8 ADD and SUB requantise through multipliers that must lie in (0, 1).
    """
    quant = int8_quant(graph, op.inputs[0], op.inputs[1], op.outputs[0])
    if quant is None:
        return None
    reals = add_real_multipliers(*(q.scale0 for q in quant))
    for what, real in zip(("input 1", "input 2", "output"), reals, strict=True):
        if multiplier_below_one(real) is None:
            return f"{what} multiplier {real:.6g} found"
    return None


def _rescaled(x: np.ndarray, offset: int, left_shift: int, multiplier: int,
              shift: int) -> np.ndarray:
    shifted = (np.asarray(x, dtype=np.int64) + offset) << left_shift
    return multiply_by_quantized_multiplier_array(shifted, multiplier, shift)


def _add_or_sub(x1: np.ndarray, x2: np.ndarray, params: AddParams, sign: int,
                dtype: type = np.int8) -> np.ndarray:
    p = params
    a = _rescaled(x1, p.input1_offset, p.left_shift, p.input1_multiplier, p.input1_shift)
    b = _rescaled(x2, p.input2_offset, p.left_shift, p.input2_multiplier, p.input2_shift)
    raw = multiply_by_quantized_multiplier_array(a + sign * b, p.output_multiplier, p.output_shift)
    return np.clip(raw + p.output_offset, p.act_min, p.act_max).astype(dtype)


def add(x1: np.ndarray, x2: np.ndarray, params: AddParams) -> np.ndarray:
    """reference_integer_ops::Add / BroadcastAdd6DSlow on int8 arrays (numpy broadcasting)."""
    return _add_or_sub(x1, x2, params, 1)


def sub(x1: np.ndarray, x2: np.ndarray, params: AddParams) -> np.ndarray:
    """reference_ops::Sub / BroadcastQuantSubSlow on int8 arrays (numpy broadcasting)."""
    return _add_or_sub(x1, x2, params, -1)


def add_s16(x1: np.ndarray, x2: np.ndarray, params: AddParams) -> np.ndarray:
    """reference_integer_ops::Add on int16 arrays, add.cc's general path (numpy broadcasting)."""
    return _add_or_sub(x1, x2, params, 1, np.int16)


def mul(x1: np.ndarray, x2: np.ndarray, params: MulParams, dtype: type = np.int8) -> np.ndarray:
    """reference_integer_ops::Mul / BroadcastMul6DSlow on int8 arrays (numpy broadcasting)."""
    p = params
    product = ((np.asarray(x1, dtype=np.int64) + p.input1_offset)
               * (np.asarray(x2, dtype=np.int64) + p.input2_offset))
    raw = multiply_by_quantized_multiplier_array(product, p.output_multiplier, p.output_shift)
    return np.clip(raw + p.output_offset, p.act_min, p.act_max).astype(dtype)


def prepare_add_s16(x1: Tensor, x2: Tensor, out: Tensor, attrs: ElementwiseAttrs) -> AddParams:
    """add.cc Prepare for int16 on the general path: left shift 15, zero points 0."""
    q1, q2, out_q = quant_of(x1), quant_of(x2), quant_of(out)
    m1, m2, mo = (multiplier_below_one(real) for real in add_real_multipliers(
        q1.scale0, q2.scale0, out_q.scale0, ADD_LEFT_SHIFT_S16))
    if m1 is None or m2 is None or mo is None:
        raise UncheckedModelError(f"ADD output '{out.name}': a multiplier outside (0, 1)")
    clamp = activation_range(attrs.activation, out_q.scale0, 0, INT16_MIN, INT16_MAX)
    return AddParams(ADD_LEFT_SHIFT_S16, 0, m1.multiplier, m1.shift, 0, m2.multiplier, m2.shift,
                     0, mo.multiplier, mo.shift, clamp.min, clamp.max)


def prepare_mul_s16(x1: Tensor, x2: Tensor, out: Tensor, attrs: ElementwiseAttrs) -> MulParams:
    """mul.cc Prepare for int16 (zero points 0): MUL's multiplier, int16's clamp."""
    clamp = activation_range(attrs.activation, quant_of(out).scale0, 0, INT16_MIN, INT16_MAX)
    return replace(prepare_mul(x1, x2, out, attrs), act_min=clamp.min, act_max=clamp.max)


@constraint(OpKind.ADD)
def add_s16_general_path(graph: Graph, op: Operator) -> str | None:
    """An int16 ADD runs LiteRT's general rescaling (pot_scale_int16 false, as converted).

    Its output scale must exceed twice the larger input scale / 2**15, and its scales may not
    all be powers of two (LiteRT's power-of-two path is not supported).
    """
    tensors = [graph.tensors[name] for name in (*op.inputs, op.outputs[0])]
    if any(t.dtype is not DType.INT16 or t.quant is None for t in tensors):
        return None
    scales = [t.quant.scale0 for t in tensors]
    if all(math.frexp(scale)[0] == 0.5 for scale in scales):
        return "power-of-two scales found"
    reals = add_real_multipliers(*scales, ADD_LEFT_SHIFT_S16)
    for what, real in zip(("input 1", "input 2", "output"), reals, strict=True):
        if multiplier_below_one(real) is None:
            return f"{what} multiplier {real:.6g} found"
    return None


def _int16_pair(graph: Graph, op: Operator) -> tuple[Tensor, Tensor, Tensor] | None:
    tensors = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(op.outputs[0]))
    return tensors if tensors[0].dtype is DType.INT16 else None


def _int8_tensors(graph: Graph, op: Operator) -> tuple[Tensor, Tensor, Tensor]:
    tensors = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(op.outputs[0]))
    require_int8(op, *tensors)
    return tensors


@prepared_kernel(OpKind.ADD)
def _prepare_add(graph: Graph, op: Operator) -> PreparedFn:
    if (wide := _int16_pair(graph, op)) is not None:
        add16 = prepare_add_s16(*wide, op.attrs)
        return lambda inputs: [add_s16(inputs[0], inputs[1], add16)]
    params = prepare_add(*_int8_tensors(graph, op), op.attrs)
    return pair_kernel(lambda x1, x2: add(x1, x2, params))


@prepared_kernel(OpKind.SUB)
def _prepare_sub(graph: Graph, op: Operator) -> PreparedFn:
    params = prepare_add(*_int8_tensors(graph, op), op.attrs)
    return pair_kernel(lambda x1, x2: sub(x1, x2, params))


@prepared_kernel(OpKind.MUL)
def _prepare_mul(graph: Graph, op: Operator) -> PreparedFn:
    if (wide := _int16_pair(graph, op)) is not None:
        mul16 = prepare_mul_s16(*wide, op.attrs)
        return lambda inputs: [mul(inputs[0], inputs[1], mul16, np.int16)]
    params = prepare_mul(*_int8_tensors(graph, op), op.attrs)
    return pair_kernel(lambda x1, x2: mul(x1, x2, params))


_BINARY = {OpKind.ADD: np.add, OpKind.SUB: np.subtract, OpKind.MUL: np.multiply}


@float_kernel(OpKind.ADD, OpKind.SUB, OpKind.MUL)
def _elementwise_float(graph: Graph, op: Operator, inputs: list[np.ndarray]
                       ) -> list[np.ndarray]:
    out = _BINARY[op.kind](inputs[0].astype(np.float32), inputs[1].astype(np.float32))
    return [apply_activation(out, op.attrs.activation)]
