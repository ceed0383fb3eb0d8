"""SVDF's shape rule, MACs and support checks (its OpDef's hooks; the attributes are in ops)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import DType
from mcuflow.ir.shapes import Shape, ShapeError, require_rank

if TYPE_CHECKING:
    from mcuflow.ir.graph import Graph, Operator, Tensor
    from mcuflow.ir.ops import Check

STATE_INPUT = -1
"""The activation state is an SVDF's last input (after the optional bias)."""
BIAS_POSITION = 3
"""The bias, when present, is an SVDF's fourth input (as in TFLite)."""
_ACTIVATIONS = (Activation.RELU, Activation.NONE)
"""LiteRT's int8 SVDF accepts RELU only, TFLM's NONE too; neither applies it."""


def svdf_bias(op: Operator) -> str | None:
    """The name of the SVDF's bias, None without one."""
    return op.inputs[BIAS_POSITION] if len(op.inputs) == BIAS_POSITION + 2 else None


def svdf_dims(graph: Graph, op: Operator) -> tuple[int, int, int, int, int]:
    """(batch, input_size, filters, memory, units) of an SVDF, checked against each other."""
    batch, size = require_rank(graph, op, 0, 2)
    filters, depth = require_rank(graph, op, 1, 2)
    time_filters, memory = require_rank(graph, op, 2, 2)
    rank = op.attrs.rank
    label = f"SVDF '{op.name}'"
    if depth != size or time_filters != filters:
        raise ShapeError(f"{label}: weights_feature [{filters}, {depth}] and weights_time "
                         f"[{time_filters}, {memory}] do not fit an input of {size} features")
    if rank < 1 or filters % rank:
        raise ShapeError(f"{label}: rank {rank} does not divide {filters} filters")
    if memory < 1 or size < 1:
        raise ShapeError(f"{label}: memory {memory} and input size {size} must be positive")
    state = graph.tensors[op.inputs[STATE_INPUT]].shape
    if tuple(state) != (batch, memory * filters):
        raise ShapeError(f"{label}: activation state {tuple(state)} is not [{batch}, "
                         f"{memory * filters}] (batch, memory x filters)")
    return batch, size, filters, memory, filters // rank


def svdf_shape(graph: Graph, op: Operator) -> list[Shape]:
    """[batch, units]."""
    batch, _, _, _, units = svdf_dims(graph, op)
    return [(batch, units)]


def svdf_macs(graph: Graph, op: Operator) -> int:
    """Per batch: the feature matmul (filters x input) and the time matmul (filters x memory)."""
    batch, size, filters, memory, _ = svdf_dims(graph, op)
    return batch * filters * (size + memory)


def _per_tensor(tensor: Tensor, dtype: DType, role: str) -> str | None:
    if tensor.dtype is not dtype:
        return f"{tensor.dtype.value} {role}"
    quant = tensor.quant
    if quant is None or quant.is_per_channel or not 0.0 < float(quant.scale0) < float("inf"):
        return f"{role} without one positive scale"
    if int(quant.zero_point[0]) != 0:
        return f"{role} zero point {int(quant.zero_point[0])}"
    return None


def svdf_weights(graph: Graph, op: Operator) -> str | None:
    """Weights must be constant: weights_feature int8, weights_time int16, one symmetric scale."""
    feature, time = (graph.tensors[op.inputs[i]] for i in (1, 2))
    problems = [p for p in (
        None if feature.is_constant else "non-constant weights_feature",
        None if time.is_constant else "non-constant weights_time",
        _per_tensor(feature, DType.INT8, "weights_feature"),
        _per_tensor(time, DType.INT16, "weights_time")) if p]
    return f"{', '.join(problems)} found" if problems else None


def svdf_state(graph: Graph, op: Operator) -> str | None:
    """The activation state must be a variable int16 tensor, zero point 0, of this SVDF alone."""
    state = graph.tensors[op.inputs[STATE_INPUT]]
    problem = None if state.variable else "a non-variable activation state"
    problem = problem or _per_tensor(state, DType.INT16, "activation state")
    readers = [o.name for o in graph.operators if state.name in o.inputs]
    problem = problem or (f"an activation state shared by {len(readers)} ops"
                          if len(readers) > 1 else None)
    return f"{problem} found" if problem else None


def svdf_bias_int32(graph: Graph, op: Operator) -> str | None:
    """A bias, when present, must be a constant int32 tensor with one value per unit."""
    name = svdf_bias(op)
    if name is None:
        return None
    bias, units = graph.tensors[name], graph.tensors[op.outputs[0]].shape[-1]
    if not bias.is_constant or bias.dtype is not DType.INT32 or bias.shape != (units,):
        constant = "constant" if bias.is_constant else "non-constant"
        return f"{constant} {bias.dtype.value} bias of shape {bias.shape} for {units} units found"
    return None


def svdf_activation(graph: Graph, op: Operator) -> str | None:
    """The fused activation must be RELU (LiteRT) or NONE (TFLM): the int8 kernel applies none."""
    activation = op.attrs.activation
    return None if activation in _ACTIVATIONS else f"fused activation {activation.value} found"


def svdf_checks() -> tuple[Check, ...]:
    """SVDF's own support rules, in the order a user reads them."""
    return (svdf_activation, svdf_weights, svdf_state, svdf_bias_int32)
