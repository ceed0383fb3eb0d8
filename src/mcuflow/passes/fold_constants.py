"""Constant folding: dequantise hybrid weights, evaluate ops on constants, drop identity ops."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import DType, Graph, Operator
from mcuflow.ir.ops import OpKind, strided_slice_ranges
from mcuflow.ir.registry import OpTable
from mcuflow.passes.common import bypass, drop_unused_tensors, float_constant

Evaluate = Callable[[Operator, list[np.ndarray], tuple[int, ...]], np.ndarray]

_CLAMP = {Activation.NONE: (None, None), Activation.RELU: (0.0, None),
          Activation.RELU6: (0.0, 6.0), Activation.RELU_N1_TO_1: (-1.0, 1.0)}


def _activated(op: Operator, value: np.ndarray) -> np.ndarray:
    low, high = _CLAMP[getattr(op.attrs, "activation", Activation.NONE)]
    return value if low is None else np.clip(value, low, high)


_EVALUATORS: OpTable[Evaluate] = OpTable("constant evaluator", complete=False, entries={
    OpKind.RESHAPE: lambda op, xs, shape: xs[0].reshape(shape),
    OpKind.SQUEEZE: lambda op, xs, shape: xs[0].reshape(shape),
    OpKind.EXPAND_DIMS: lambda op, xs, shape: xs[0].reshape(shape),
    OpKind.PAD: lambda op, xs, shape: np.pad(xs[0], op.attrs.paddings),
    OpKind.CONCATENATION: lambda op, xs, shape: _activated(op, np.concatenate(xs, op.attrs.axis)),
    OpKind.ADD: lambda op, xs, shape: _activated(op, xs[0] + xs[1]),
    OpKind.SUB: lambda op, xs, shape: _activated(op, xs[0] - xs[1]),
    OpKind.MUL: lambda op, xs, shape: _activated(op, xs[0] * xs[1]),
    OpKind.RELU: lambda op, xs, shape: np.maximum(xs[0], 0.0),
    OpKind.RELU6: lambda op, xs, shape: np.clip(xs[0], 0.0, 6.0),
    OpKind.TRANSPOSE: lambda op, xs, shape: np.transpose(xs[0], op.attrs.perm),
    OpKind.REVERSE_V2: lambda op, xs, shape: np.flip(xs[0], op.attrs.axes),
    OpKind.GATHER: lambda op, xs, shape: np.take(
        xs[0], np.reshape(op.attrs.indices, op.attrs.indices_shape), op.attrs.axis),
    OpKind.STRIDED_SLICE: lambda op, xs, shape: xs[0][np.ix_(*(
        np.arange(r.start, r.stop, r.step)
        for r in strided_slice_ranges(xs[0].shape, op.attrs)))].reshape(shape),
})
"""Numpy evaluation of the ops that appear on constants in float models (shape glue, scaling)."""

_NEUTRAL = {OpKind.ADD: 0.0, OpKind.SUB: 0.0, OpKind.MUL: 1.0}


def fold_constants(graph: Graph) -> Graph:
    """Dequantise int8 weights of float ops, fold all-constant ops, drop x+0, x-0 and x*1."""
    graph = graph.copy()
    _dequantize_hybrid_weights(graph)
    changed = True
    while changed:
        changed = any(_fold(graph, op) or _drop_identity(graph, op)
                      for op in list(graph.operators))
    drop_unused_tensors(graph)
    return graph


def _dequantize_hybrid_weights(graph: Graph) -> None:
    """Hybrid models store float ops' weights as int8 with scales: make them float32."""
    for tensor in graph.tensors.values():
        if tensor.data is None or tensor.quant is None or tensor.dtype is DType.FLOAT32:
            continue
        readers = [op for op in graph.operators if tensor.name in op.inputs]
        if not readers or any(graph.tensors[op.outputs[0]].dtype is not DType.FLOAT32
                              for op in readers):
            continue
        quant, data = tensor.quant, tensor.data.astype(np.float64)
        shape = [1] * data.ndim
        if quant.is_per_channel:
            shape[quant.axis] = len(quant.scale)
        scale = np.asarray(quant.scale).reshape(shape)
        zero = np.asarray(quant.zero_point).reshape(shape)
        tensor.data = ((data - zero) * scale).astype(np.float32)
        tensor.dtype, tensor.quant = DType.FLOAT32, None


def _fold(graph: Graph, op: Operator) -> bool:
    """Replace a float op whose inputs are all constants by its constant output."""
    output = graph.tensors[op.outputs[0]]
    values = [float_constant(graph, name) for name in op.inputs]
    if (op.kind not in _EVALUATORS or output.dtype is not DType.FLOAT32
            or any(v is None for v in values) or output.name in graph.outputs):
        return False
    output.data = _EVALUATORS[op.kind](op, values, output.shape).astype(np.float32)
    graph.operators.remove(op)
    return True


def _drop_identity(graph: Graph, op: Operator) -> bool:
    """Remove ADD/SUB of zeros and MUL by ones that neither broadcast nor clamp."""
    if op.kind not in _NEUTRAL or op.attrs.activation is not Activation.NONE:
        return False
    if op.outputs[0] in graph.outputs:
        return False
    for at in (1,) if op.kind is OpKind.SUB else (0, 1):
        value, source = float_constant(graph, op.inputs[at]), op.inputs[1 - at]
        same_shape = graph.tensors[source].shape == graph.tensors[op.outputs[0]].shape
        if value is not None and same_shape and np.all(value == _NEUTRAL[op.kind]):
            bypass(graph, op, source)
            return True
    return False
