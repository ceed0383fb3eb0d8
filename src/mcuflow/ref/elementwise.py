"""Reference kernels of int8 ADD, SUB and MUL (broadcasting, fused clamp), run as pair tables."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind
from mcuflow.quant.fixedpoint import (
    AddParams,
    MulParams,
    multiply_by_quantized_multiplier_array,
    prepare_add,
    prepare_mul,
)
from mcuflow.ref.common import pair_kernel, require_int8
from mcuflow.ref.registry import PreparedFn, prepared_kernel


def _rescaled(x: np.ndarray, offset: int, left_shift: int, multiplier: int,
              shift: int) -> np.ndarray:
    shifted = (np.asarray(x, dtype=np.int64) + offset) << left_shift
    return multiply_by_quantized_multiplier_array(shifted, multiplier, shift)


def _add_or_sub(x1: np.ndarray, x2: np.ndarray, params: AddParams, sign: int) -> np.ndarray:
    p = params
    a = _rescaled(x1, p.input1_offset, p.left_shift, p.input1_multiplier, p.input1_shift)
    b = _rescaled(x2, p.input2_offset, p.left_shift, p.input2_multiplier, p.input2_shift)
    raw = multiply_by_quantized_multiplier_array(a + sign * b, p.output_multiplier, p.output_shift)
    return np.clip(raw + p.output_offset, p.act_min, p.act_max).astype(np.int8)


def add(x1: np.ndarray, x2: np.ndarray, params: AddParams) -> np.ndarray:
    """reference_integer_ops::Add / BroadcastAdd6DSlow on int8 arrays (numpy broadcasting)."""
    return _add_or_sub(x1, x2, params, 1)


def sub(x1: np.ndarray, x2: np.ndarray, params: AddParams) -> np.ndarray:
    """reference_ops::Sub / BroadcastQuantSubSlow on int8 arrays (numpy broadcasting)."""
    return _add_or_sub(x1, x2, params, -1)


def mul(x1: np.ndarray, x2: np.ndarray, params: MulParams) -> np.ndarray:
    """reference_integer_ops::Mul / BroadcastMul6DSlow on int8 arrays (numpy broadcasting)."""
    p = params
    product = ((np.asarray(x1, dtype=np.int64) + p.input1_offset)
               * (np.asarray(x2, dtype=np.int64) + p.input2_offset))
    raw = multiply_by_quantized_multiplier_array(product, p.output_multiplier, p.output_shift)
    return np.clip(raw + p.output_offset, p.act_min, p.act_max).astype(np.int8)


def _int8_tensors(graph: Graph, op: Operator) -> tuple[Tensor, Tensor, Tensor]:
    tensors = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(op.outputs[0]))
    require_int8(op, *tensors)
    return tensors


@prepared_kernel(OpKind.ADD)
def _prepare_add(graph: Graph, op: Operator) -> PreparedFn:
    params = prepare_add(*_int8_tensors(graph, op), op.attrs)
    return pair_kernel(lambda x1, x2: add(x1, x2, params))


@prepared_kernel(OpKind.SUB)
def _prepare_sub(graph: Graph, op: Operator) -> PreparedFn:
    params = prepare_add(*_int8_tensors(graph, op), op.attrs)
    return pair_kernel(lambda x1, x2: sub(x1, x2, params))


@prepared_kernel(OpKind.MUL)
def _prepare_mul(graph: Graph, op: Operator) -> PreparedFn:
    params = prepare_mul(*_int8_tensors(graph, op), op.attrs)
    return pair_kernel(lambda x1, x2: mul(x1, x2, params))
