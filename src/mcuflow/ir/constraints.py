"""Support constraints: functions whose docstring is the message a user sees when they fail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcuflow.errors import UnsupportedModelError
from mcuflow.ir.graph import DType, Graph, Operator
from mcuflow.ir.ops import OpKind

Check = Callable[[Graph, Operator], bool]


@dataclass(frozen=True)
class Constraint:
    """A named check on an operator; `message` (the docstring) tells the user what is required."""

    name: str
    kinds: frozenset[OpKind]
    check: Check

    @property
    def message(self) -> str:
        """The user-facing requirement, taken from the check's docstring."""
        return " ".join((self.check.__doc__ or self.name).split())


CONSTRAINTS: list[Constraint] = []
_ALL_KINDS = frozenset(OpKind)


def constraint(*kinds: OpKind) -> Callable[[Check], Check]:
    """Register a check for the given op kinds (every kind when none is given)."""

    def register(check: Check) -> Check:
        CONSTRAINTS.append(Constraint(check.__name__, frozenset(kinds) or _ALL_KINDS, check))
        return check

    return register


def constraints_for(kind: OpKind) -> list[Constraint]:
    """The constraints that apply to `kind`, in registration order."""
    return [c for c in CONSTRAINTS if kind in c.kinds]


@dataclass(frozen=True)
class Violation:
    """One operator failing one constraint."""

    op_index: int
    op: Operator
    constraint: Constraint

    def describe(self) -> str:
        """One line naming the op and what it must satisfy."""
        label = f" '{self.op.name}'" if self.op.name else ""
        return f"op {self.op_index}{label} ({self.op.kind.value}): {self.constraint.message}"


def find_violations(graph: Graph) -> list[Violation]:
    """Every (op, constraint) pair that fails, in graph order."""
    return [
        Violation(index, op, c)
        for index, op in enumerate(graph.operators)
        for c in constraints_for(op.kind)
        if not c.check(graph, op)
    ]


def check_supported(graph: Graph) -> None:
    """Raise one UnsupportedModelError listing every unsupported op, with all its failures."""
    by_op: dict[int, list[Violation]] = {}
    for violation in find_violations(graph):
        by_op.setdefault(violation.op_index, []).append(violation)
    if by_op:
        listed = "; ".join(
            " ".join([found[0].describe(), *(v.constraint.message for v in found[1:])])
            for found in by_op.values()
        )
        raise UnsupportedModelError(
            f"model '{graph.name}' has {len(by_op)} unsupported operator(s): {listed}",
            hint="run `mcuflow ops` for the supported operators and their constraints",
        )


def _is_int8_quantised(graph: Graph, name: str) -> bool:
    tensor = graph.tensors[name]
    return tensor.dtype is DType.INT8 and tensor.quant is not None


def _activation_inputs(graph: Graph, op: Operator) -> list[str]:
    return [name for name in op.inputs if not graph.tensors[name].is_constant]


_WEIGHTED = (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED)
_FLOAT_IN = frozenset({OpKind.QUANTIZE})
_FLOAT_OUT = frozenset({OpKind.DEQUANTIZE})


@constraint()
def int8_activations(graph: Graph, op: Operator) -> bool:
    """Activations must be int8 with quantisation parameters (full-integer quantisation); only
    QUANTIZE may read float32 and only DEQUANTIZE may write float32. Quantise float models with
    `mcuflow quantize`."""
    inputs_ok = op.kind in _FLOAT_IN or all(
        _is_int8_quantised(graph, n) for n in _activation_inputs(graph, op)
    )
    outputs_ok = op.kind in _FLOAT_OUT or all(_is_int8_quantised(graph, n) for n in op.outputs)
    return inputs_ok and outputs_ok


@constraint(*_WEIGHTED)
def constant_int8_weights(graph: Graph, op: Operator) -> bool:
    """Weights must be constant int8 tensors with symmetric quantisation (zero point 0)."""
    weights = graph.tensors[op.inputs[1]]
    return (
        weights.is_constant
        and weights.dtype is DType.INT8
        and weights.quant is not None
        and all(z == 0 for z in weights.quant.zero_point)
    )


@constraint(*_WEIGHTED)
def per_channel_axis(graph: Graph, op: Operator) -> bool:
    """Per-channel weight quantisation must be along the output-channel axis (axis 0 for
    CONV_2D and FULLY_CONNECTED, axis 3 for DEPTHWISE_CONV_2D) with one scale per channel."""
    quant = graph.tensors[op.inputs[1]].quant
    if quant is None or not quant.is_per_channel:
        return True
    axis = 3 if op.kind is OpKind.DEPTHWISE_CONV_2D else 0
    return quant.axis == axis and len(quant.scale) == graph.tensors[op.inputs[1]].shape[axis]


@constraint(*_WEIGHTED)
def int32_bias(graph: Graph, op: Operator) -> bool:
    """A bias, when present, must be a constant int32 tensor with one value per output channel."""
    if len(op.inputs) < 3:
        return True
    bias = graph.tensors[op.inputs[2]]
    out_channels = graph.tensors[op.outputs[0]].shape[-1]
    return bias.is_constant and bias.dtype is DType.INT32 and bias.shape == (out_channels,)


@constraint(OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D, OpKind.RESHAPE, OpKind.SQUEEZE,
            OpKind.PAD)
def same_quantisation(graph: Graph, op: Operator) -> bool:
    """Input and output must share scale and zero point (TFLite's int8 requirement)."""
    return graph.tensors[op.inputs[0]].quant == graph.tensors[op.outputs[0]].quant


@constraint(OpKind.SOFTMAX, OpKind.LOGISTIC)
def unit_output_range(graph: Graph, op: Operator) -> bool:
    """The int8 output must use scale 1/256 and zero point -128 (TFLite's int8 requirement)."""
    quant = graph.tensors[op.outputs[0]].quant
    return quant is not None and quant.scale == (1.0 / 256.0,) and quant.zero_point == (-128,)


@constraint(OpKind.TANH)
def tanh_output_range(graph: Graph, op: Operator) -> bool:
    """The int8 output must use scale 1/128 and zero point 0 (TFLite's int8 requirement)."""
    quant = graph.tensors[op.outputs[0]].quant
    return quant is not None and quant.scale == (1.0 / 128.0,) and quant.zero_point == (0,)


@constraint(OpKind.ADD, OpKind.SUB, OpKind.MUL)
def broadcast_rank(graph: Graph, op: Operator) -> bool:
    """Element-wise operands may have at most 5 dimensions (numpy broadcasting rules)."""
    return all(len(graph.tensors[n].shape) <= 5 for n in op.inputs)


@constraint(OpKind.CONCATENATION)
def concat_same_quantisation(graph: Graph, op: Operator) -> bool:
    """Every input must share the output's scale and zero point."""
    out = graph.tensors[op.outputs[0]].quant
    return all(graph.tensors[n].quant == out for n in op.inputs)


@constraint(OpKind.QUANTIZE)
def quantize_per_tensor(graph: Graph, op: Operator) -> bool:
    """QUANTIZE must read float32 or int8 and write per-tensor int8."""
    source = graph.tensors[op.inputs[0]].dtype
    quant = graph.tensors[op.outputs[0]].quant
    return source in (DType.FLOAT32, DType.INT8) and quant is not None and not quant.is_per_channel


@constraint(OpKind.DEQUANTIZE)
def dequantize_to_float(graph: Graph, op: Operator) -> bool:
    """DEQUANTIZE must read per-tensor int8 and write float32."""
    quant = graph.tensors[op.inputs[0]].quant
    return (
        graph.tensors[op.outputs[0]].dtype is DType.FLOAT32
        and quant is not None
        and not quant.is_per_channel
    )


def supported_ops_markdown() -> str:
    """SUPPORTED_OPS.md, generated from the registered constraints."""
    lines = [
        "# Supported operators",
        "",
        "Generated by `mcuflow ops --markdown` from the constraint functions that reject a model;",
        "do not edit by hand. Every listed constraint applies to the operator it is listed under.",
        "",
        "| op | constraints |",
        "| --- | --- |",
    ]
    for kind in OpKind:
        text = "<br>".join(f"- {c.message}" for c in constraints_for(kind))
        lines.append(f"| {kind.value} | {text} |")
    return "\n".join(lines) + "\n"
