"""REDUCE_MAX, REDUCE_MIN, ARG_MAX and ARG_MIN reference kernels: int8 and float32.

REDUCE_MAX/MIN follow LiteRT's reduce.cc EvalType: the stored int8 values are compared (input
and output must share one quantisation, which LiteRT enforces), no requantisation; an empty axis
list copies the input. ARG_MAX/MIN follow reference_ops::ArgMinMax: along one axis, the index
of the first largest (smallest) value, as int32.
"""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import ArgAttrs, MeanAttrs, OpKind
from mcuflow.ref.common import require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel

_REDUCE = {OpKind.REDUCE_MAX: np.max, OpKind.REDUCE_MIN: np.min}
_ARG = {OpKind.ARG_MAX: np.argmax, OpKind.ARG_MIN: np.argmin}


def reduce_extreme(x: np.ndarray, attrs: MeanAttrs, kind: OpKind) -> np.ndarray:
    """The largest (REDUCE_MAX) or smallest (REDUCE_MIN) value of `x` over `attrs.axes`."""
    axes = tuple(sorted({axis % x.ndim for axis in attrs.axes}))
    return np.asarray(_REDUCE[kind](x, axis=axes, keepdims=attrs.keep_dims), x.dtype)


def arg_extreme(x: np.ndarray, attrs: ArgAttrs, kind: OpKind) -> np.ndarray:
    """The index of the first largest (ARG_MAX) or smallest (ARG_MIN) value along the axis.

    numpy's argmax and argmin return the first occurrence, as LiteRT's strict comparison does.
    """
    return np.asarray(_ARG[kind](x, axis=attrs.axis), attrs.output_type.numpy)


@prepared_kernel(OpKind.REDUCE_MAX, OpKind.REDUCE_MIN)
def prepare_reduce(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's REDUCE_MAX or REDUCE_MIN (no constants: values are only compared)."""
    require_int8(op, graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0]))
    attrs, kind = op.attrs, op.kind
    return lambda inputs: [reduce_extreme(inputs[0], attrs, kind)]


@prepared_kernel(OpKind.ARG_MAX, OpKind.ARG_MIN)
def prepare_arg(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's ARG_MAX or ARG_MIN of an int8 input."""
    require_int8(op, graph.tensor(op.inputs[0]))
    attrs, kind = op.attrs, op.kind
    return lambda inputs: [arg_extreme(inputs[0], attrs, kind)]


@float_kernel(OpKind.REDUCE_MAX, OpKind.REDUCE_MIN)
def _reduce_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [reduce_extreme(inputs[0].astype(np.float32), op.attrs, op.kind)]


@float_kernel(OpKind.ARG_MAX, OpKind.ARG_MIN)
def _arg_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [arg_extreme(inputs[0], op.attrs, op.kind)]
