"""Fold batch-norm (a per-channel MUL then ADD, as imported) into the preceding conv or FC."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind
from mcuflow.passes.common import (
    WEIGHTED_AXIS,
    absorb,
    channel_vector,
    float_constant,
    sole_consumer,
    unique_name,
)

_WEIGHTED = (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED)
_AFFINE = (OpKind.MUL, OpKind.ADD, OpKind.SUB)


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold every per-channel MUL, ADD or SUB by a constant into the conv/FC that feeds it.

    Batch-norm y = (x - mean) * gamma / sqrt(var + eps) + beta arrives as MUL then ADD; both fold
    into the layer's weights and bias, as do a MatMul's bias ADD and any per-channel scaling.
    The layer must have no fused activation yet and its output must feed only that op.
    """
    graph = graph.copy()
    while any(_fold_next(graph, op) for op in list(graph.operators)):
        pass
    return graph


def _fold_next(graph: Graph, layer: Operator) -> bool:
    if layer.kind not in _WEIGHTED or layer.attrs.activation is not Activation.NONE:
        return False
    weights = float_constant(graph, layer.inputs[1])
    follower = sole_consumer(graph, layer.outputs[0])
    if weights is None or follower is None or follower.kind not in _AFFINE:
        return False
    if len(layer.inputs) > 2 and float_constant(graph, layer.inputs[2]) is None:
        return False
    out_shape = graph.tensors[layer.outputs[0]].shape
    other = [name for name in follower.inputs if name != layer.outputs[0]]
    if len(other) != 1 or graph.tensors[follower.outputs[0]].shape != out_shape:
        return False
    vector = channel_vector(graph, other[0], out_shape)
    if vector is None or (follower.kind is OpKind.SUB and follower.inputs[0] != layer.outputs[0]):
        return False
    old_bias = float_constant(graph, layer.inputs[2]) if len(layer.inputs) > 2 else None
    old_bias = np.zeros(out_shape[-1], np.float32) if old_bias is None else old_bias
    shape = [1] * weights.ndim
    shape[WEIGHTED_AXIS[layer.kind.value]] = -1
    with np.errstate(over="ignore", invalid="ignore"):
        if follower.kind is OpKind.MUL:
            scaled, new_bias = weights * vector.reshape(shape), old_bias * vector
        else:
            scaled = None
            new_bias = old_bias + (-1.0 if follower.kind is OpKind.SUB else 1.0) * vector
    if not np.isfinite(new_bias).all() or scaled is not None and not np.isfinite(scaled).all():
        return False  # folding would overflow float32: the MUL or ADD stays an op
    bias = _own_constant(graph, layer, 2, out_shape[-1])
    if scaled is not None:
        graph.tensors[_own_constant(graph, layer, 1, out_shape[-1])].data = scaled
    graph.tensors[bias].data = new_bias
    layer.attrs = replace(layer.attrs, activation=follower.attrs.activation)
    absorb(graph, layer, follower)
    return True


def _own_constant(graph: Graph, layer: Operator, index: int, channels: int) -> str:
    """A float constant at input `index` read by `layer` only (copied if shared, else zeros)."""
    if index < len(layer.inputs):
        name = layer.inputs[index]
        if sum(name in op.inputs for op in graph.operators) == 1:
            return name
        data = graph.tensors[name].data.astype(np.float32)
    else:
        data = np.zeros(channels, np.float32)
    new = unique_name(graph, f"{layer.outputs[0]}/{'weights' if index == 1 else 'bias'}")
    graph.add_tensor(Tensor(new, tuple(data.shape), DType.FLOAT32, data=data))
    inputs = list(layer.inputs) + [new] * (index + 1 - len(layer.inputs))
    inputs[index] = new
    layer.inputs = tuple(inputs)
    return new
