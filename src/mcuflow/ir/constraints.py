"""Support constraints: functions whose docstring is the requirement a user sees when they fail.

A check returns None when the op satisfies it, else a short account of what it found
("rank 6 found"); a user reads "<requirement> (<found>)". Every rule that makes mcuflow refuse
a model lives in a constraint, so `check_supported` (run by `analyze` and `compile` alike) lists
every offending op at once, before anything is written, and `mcuflow ops` lists every rule.

An op's own rules are its OpDef's `checks` (mcuflow.ir.ops). Rules that need its integer
arithmetic (requantisation multipliers, accumulator bounds) are registered with the same
decorator by the op's reference module in `mcuflow.ref`, next to that arithmetic: `ir` cannot
import `ref`. Every stage that computes with that arithmetic (ref, codegen, api) imports
`mcuflow.ref.kernels`, so the registry is complete wherever a model is checked on the way to a
result; `mcuflow.quant` alone checks the rules of `ir`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mcuflow.errors import UnsupportedModelError
from mcuflow.ir.graph import DType, Graph, Operator
from mcuflow.ir.ops import OP_DEFS, Check, OpKind
from mcuflow.ir.quantization import QuantParams

GROUP_AT = 3
"""A constraint failing on this many ops is reported once, naming the ops briefly."""


@dataclass(frozen=True)
class Constraint:
    """A named check on an operator; `message` (the docstring) tells the user what is required.

    `requires` names constraints that must pass on the op before this one is worth reporting
    (float weights of a float op are a consequence of its float activations, not news).
    """

    name: str
    kinds: frozenset[OpKind]
    check: Check
    requires: frozenset[str] = frozenset()

    @property
    def message(self) -> str:
        """The user-facing requirement, taken from the check's docstring."""
        return " ".join((self.check.__doc__ or self.name).split())


CONSTRAINTS: list[Constraint] = []
_ALL_KINDS = frozenset(OpKind)


def constraint(*kinds: OpKind, requires: tuple[Check, ...] = ()) -> Callable[[Check], Check]:
    """Register a check for the given op kinds (every kind when none is given).

    The check is skipped on an op failing one of the (earlier registered) `requires`.
    """

    def register(check: Check) -> Check:
        own = {c.__name__ for definition in OP_DEFS.values() for c in definition.checks}
        if check.__name__ in own | {c.name for c in CONSTRAINTS}:
            raise ValueError(f"constraint {check.__name__} is registered twice")
        CONSTRAINTS.append(Constraint(check.__name__, frozenset(kinds) or _ALL_KINDS, check,
                                      frozenset(r.__name__ for r in requires)))
        return check

    return register


def constraints_for(kind: OpKind) -> list[Constraint]:
    """The constraints that apply to `kind`: those of every op, then its OpDef's own checks,
    then the arithmetic ones (in registration order)."""
    own = [_OWN_RULES[check] for check in OP_DEFS[kind].checks]
    return [c for c in CONSTRAINTS[:_IR_RULES] + own + CONSTRAINTS[_IR_RULES:] if kind in c.kinds]


@dataclass(frozen=True)
class Violation:
    """One operator failing one constraint, and what the check found."""

    op_index: int | None
    op: Operator
    constraint: Constraint
    found: str

    @property
    def failure(self) -> str:
        """'<requirement> (<found>)'."""
        return f"{self.constraint.message} ({self.found})"

    def describe(self) -> str:
        """One line naming the op, what it must satisfy and what was found."""
        return f"{_op_label(self.op_index, self.op)}: {self.failure}"


def _op_label(index: int | None, op: Operator) -> str:
    name = f" '{op.name}'" if op.name else ""
    where = "op" if index is None else f"op {index}"
    return f"{where}{name} ({op.kind.value})"


def _op_violations(graph: Graph, index: int | None, op: Operator) -> list[Violation]:
    violations: list[Violation] = []
    for c in constraints_for(op.kind):
        if c.requires & {v.constraint.name for v in violations}:
            continue
        found = c.check(graph, op)
        if found is not None:
            violations.append(Violation(index, op, c, found))
    return violations


def find_violations(graph: Graph) -> list[Violation]:
    """Every (op, constraint) pair that fails, in graph order, then registration order."""
    return [v for index, op in enumerate(graph.operators) for v in _op_violations(graph, index, op)]


def check_supported(graph: Graph) -> None:
    """Raise one UnsupportedModelError listing every unsupported op, with all its failures."""
    violations = find_violations(graph)
    if violations:
        raise _unsupported(graph, violations)


def check_operator(graph: Graph, op: Operator) -> None:
    """Raise UnsupportedModelError when `op` (of `graph`) fails a constraint.

    For the stages that prepare one op at a time (the reference kernels); `check_supported`
    reports a whole graph at once.
    """
    violations = _op_violations(graph, None, op)
    if violations:
        index = next((i for i, o in enumerate(graph.operators) if o is op), None)
        raise _unsupported(graph, [Violation(index, v.op, v.constraint, v.found)
                                   for v in violations])


def _unsupported(graph: Graph, violations: list[Violation]) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"model '{graph.name}' has {len({id(v.op) for v in violations})} unsupported "
        f"operator(s): {describe_violations(violations)}",
        hint="run `mcuflow ops` for the supported operators and their constraints",
    )


def describe_violations(violations: Sequence[Violation]) -> str:
    """Every failure, said once: one entry per op listing all its failures, except that a
    constraint failing on GROUP_AT ops or more (a float model fails int8_activations on every
    op) gets one entry naming those ops briefly. Entries are in graph order, '; '-separated."""
    by_constraint: dict[str, list[Violation]] = {}
    for violation in violations:
        by_constraint.setdefault(violation.constraint.name, []).append(violation)
    grouped = {name for name, found in by_constraint.items() if len(found) >= GROUP_AT}
    entries: list[tuple[int, str]] = []
    for name in grouped:
        found = by_constraint[name]
        entries.append((_order(found[0]), _group_entry(found)))
    per_op: dict[int, list[Violation]] = {}
    for violation in violations:
        if violation.constraint.name not in grouped:
            per_op.setdefault(id(violation.op), []).append(violation)
    for found in per_op.values():
        text = " ".join([found[0].describe(), *(v.failure for v in found[1:])])
        entries.append((_order(found[0]), text))
    entries.sort(key=lambda entry: entry[0])
    return "; ".join(text for _, text in entries)


def _order(violation: Violation) -> int:
    return -1 if violation.op_index is None else violation.op_index


def _group_entry(found: list[Violation]) -> str:
    """'N operators (ops 0-8, 11: CONV_2D x5, ...): <requirement> (<found>)'."""
    kinds = Counter(v.op.kind.value for v in found)
    kind_text = ", ".join(kind if count == 1 else f"{kind} x{count}"
                          for kind, count in kinds.items())
    indices = [v.op_index for v in found if v.op_index is not None]
    where = f"{_ranges(indices)}: " if indices else ""
    texts = list(dict.fromkeys(v.found for v in found))
    shown = ", ".join(texts[:3]) + (f" and {len(texts) - 3} more" if len(texts) > 3 else "")
    return (f"{len(found)} operators ({where}{kind_text}): {found[0].constraint.message} "
            f"({shown})")


def _ranges(indices: list[int]) -> str:
    """'ops 0-3, 5, 7-9'."""
    runs: list[list[int]] = []
    for index in sorted(set(indices)):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return "ops " + ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


class UncheckedModelError(AssertionError):
    """A stage computed on what a constraint refuses: a bug, since the stages run only on models
    `check_supported` accepted (the user-facing refusal is the constraint's)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: the support constraints should have refused this first "
                         "(a bug in mcuflow)")


# --- helpers for checks -------------------------------------------------------------------------


def int8_quant(graph: Graph, *names: str) -> list[QuantParams] | None:
    """The quantisation of tensors `names` when every one is int8 with positive finite scales;
    None otherwise (int8_activations reports that, so checks of arithmetic skip the op)."""
    params = []
    for name in names:
        tensor = graph.tensors[name]
        quant = tensor.quant
        if tensor.dtype is not DType.INT8 or quant is None or not all(
                0.0 < s < float("inf") for s in quant.scale):
            return None
        params.append(quant)
    return params


def _found(problems: list[str]) -> str | None:
    unique = list(dict.fromkeys(problems))
    return f"{', '.join(unique)} found" if unique else None


WEIGHT_AXIS = {kind: d.weight_axis for kind, d in OP_DEFS.items() if d.weight_axis is not None}
"""The output-channel axis of each weighted op's weights (its per-channel axis)."""
WEIGHTED = tuple(WEIGHT_AXIS)
SHARED_QUANT = tuple(kind for kind, d in OP_DEFS.items() if d.shared_quant)
"""Ops whose int8 inputs and output must share one scale and zero point (TFLite's rule)."""
FIXED_OUTPUT = {kind: d.fixed_output for kind, d in OP_DEFS.items() if d.fixed_output}
"""Output parameters TFLite's int8 kernels require."""


ACTIVATION_TYPES = (DType.INT8, DType.INT16)
"""The integer activation types; int16_activations says which ops take int16."""


def data_inputs(op: Operator) -> tuple[str, ...]:
    """The inputs an op computes on: all but the weights and bias of a weighted op, and only the
    first of a stateful op (SVDF's others are its weights, bias and state) or of an op with
    `data_operands` 1 (an LSTM's others are its weights, biases and two states)."""
    if op.kind in WEIGHTED or OP_DEFS[op.kind].stateful:
        return op.inputs[:1]
    return op.inputs[:OP_DEFS[op.kind].data_operands]


def _int8_problem(graph: Graph, name: str, role: str, uint8: bool = False) -> str | None:
    tensor = graph.tensors[name]
    if tensor.dtype not in ACTIVATION_TYPES and not (uint8 and tensor.dtype is DType.UINT8):
        return f"{tensor.dtype.value} {role}"
    if tensor.quant is None:
        return f"{role} without quantisation parameters"
    return None


# --- constraints on every op --------------------------------------------------------------------


@constraint()
def int8_activations(graph: Graph, op: Operator) -> str | None:
    """Activations and constant operands must be int8 (or int16, see int16_activations) with
    quantisation parameters (full-integer quantisation). Only QUANTIZE may read float32, only
    DEQUANTIZE may write float32, ARG_MAX and ARG_MIN write integer indices, and QUANTIZE alone
    reads or writes uint8 at the model's edges. Quantise float models with `mcuflow quantize`,
    or pass --calibration to quantise on the fly."""
    definition = OP_DEFS[op.kind]
    problems = [] if definition.float_input else [
        _int8_problem(graph, name, "input") for name in data_inputs(op)]
    if not definition.float_output and not definition.index_output:
        problems += [_int8_problem(graph, name, "output", definition.uint8_output)
                     for name in op.outputs]
    return _found([p for p in problems if p is not None])


INT16_MOVES = frozenset({OpKind.CONCATENATION, OpKind.PAD, OpKind.SLICE, OpKind.STRIDED_SLICE,
                         OpKind.TRANSPOSE, OpKind.REVERSE_V2, OpKind.TILE, OpKind.BROADCAST_TO,
                         OpKind.RESIZE_NEAREST_NEIGHBOR, OpKind.SPLIT, OpKind.SPLIT_V,
                         OpKind.PACK, OpKind.UNPACK, OpKind.GATHER, OpKind.EXPAND_DIMS})
"""Data-movement ops LiteRT runs on int16 values: copied, one quantisation in and out."""
INT16_KINDS = frozenset({OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED,
                         OpKind.QUANTIZE, OpKind.DEQUANTIZE, OpKind.RESHAPE, OpKind.SQUEEZE,
                         OpKind.ADD,
                         OpKind.MUL, OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D,
                         OpKind.SOFTMAX, OpKind.LOGISTIC, OpKind.TANH, OpKind.MEAN}) | INT16_MOVES
"""The ops that run LiteRT's int16x8 scheme (int16 activations, int8 weights)."""


def _int16_problem(graph: Graph, op: Operator, names: tuple[str, ...]) -> str | None:
    tensors = [graph.tensors[name] for name in names]
    wide = [t for t in tensors if t.dtype is DType.INT16]
    if not wide:
        return None
    if op.kind not in INT16_KINDS:
        return "int16 activations found"
    if op.kind is not OpKind.QUANTIZE and any(t.dtype is DType.INT8 for t in tensors):
        return "int8 and int16 activations found"
    shifted = [z for t in wide if t.quant is not None for z in t.quant.zero_point if z != 0]
    return f"int16 zero point {shifted[0]} found" if shifted else None


@constraint(requires=(int8_activations,))
def int16_activations(graph: Graph, op: Operator) -> str | None:
    """int16 activations (LiteRT's int16x8 scheme: int8 symmetric weights, int64 bias) are
    supported by CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL, AVERAGE_POOL_2D,
    MAX_POOL_2D, MEAN, SOFTMAX, LOGISTIC, TANH, QUANTIZE (from or to int16), DEQUANTIZE,
    RESHAPE, SQUEEZE and the data-movement ops CONCATENATION, PAD, SLICE, STRIDED_SLICE,
    TRANSPOSE, REVERSE_V2, TILE, BROADCAST_TO, RESIZE_NEAREST_NEIGHBOR, SPLIT, SPLIT_V, PACK,
    UNPACK, GATHER and EXPAND_DIMS only (LiteRT has no int16 DEPTH_TO_SPACE or SPACE_TO_DEPTH),
    with zero point 0 and every activation of the op int16 (only QUANTIZE converts between the
    two)."""
    names = data_inputs(op) + op.outputs
    return _int16_problem(graph, op, tuple(
        name for name in names if graph.tensors[name].dtype is not DType.FLOAT32))


@constraint()
def variables_only_as_state(graph: Graph, op: Operator) -> str | None:
    """A variable tensor (TFLite's is_variable) may only be the state of an op that keeps one
    (SVDF's, an LSTM's): anywhere else it has no value to read."""
    states = {position % max(len(op.inputs), 1) for position in OP_DEFS[op.kind].state_inputs}
    stray = [name for position, name in enumerate(op.inputs)
             if graph.tensors[name].variable and position not in states]
    return f"variable input '{stray[0]}' found" if stray else None


# --- weighted ops -------------------------------------------------------------------------------


@constraint(*WEIGHTED, requires=(int8_activations,))
def constant_int8_weights(graph: Graph, op: Operator) -> str | None:
    """Weights must be constant int8 tensors with symmetric quantisation (zero point 0)."""
    weights = graph.tensors[op.inputs[1]]
    if not weights.is_constant:
        return "non-constant weights found"
    if weights.dtype is not DType.INT8:
        return f"{weights.dtype.value} weights found"
    if weights.quant is None:
        return "weights without quantisation parameters found"
    nonzero = [z for z in weights.quant.zero_point if z != 0]
    return f"weights zero point {nonzero[0]} found" if nonzero else None


@constraint(*WEIGHTED)
def per_channel_axis(graph: Graph, op: Operator) -> str | None:
    """Per-channel weight quantisation must be along the output-channel axis (axis 0 for
    CONV_2D and FULLY_CONNECTED, axis 3 for DEPTHWISE_CONV_2D) with one scale per channel."""
    weights = graph.tensors[op.inputs[1]]
    quant = weights.quant
    if quant is None or not quant.is_per_channel:
        return None
    axis = WEIGHT_AXIS[op.kind]
    if quant.axis == axis and len(weights.shape) > axis and len(quant.scale) == weights.shape[
            axis]:
        return None
    return f"{len(quant.scale)} scales along axis {quant.axis} of weights {weights.shape} found"


@constraint(*WEIGHTED, requires=(int8_activations,))
def int32_bias(graph: Graph, op: Operator) -> str | None:
    """A bias, when present, must be a constant int32 tensor (int64 with int16 activations)
    with one value per output channel."""
    if len(op.inputs) < 3:
        return None
    bias = graph.tensors[op.inputs[2]]
    out_channels = graph.tensors[op.outputs[0]].shape[-1]
    if not bias.is_constant:
        return "non-constant bias found"
    wanted = DType.INT64 if graph.tensors[op.inputs[0]].dtype is DType.INT16 else DType.INT32
    if bias.dtype is not wanted:
        return f"{bias.dtype.value} bias found"
    if bias.shape != (out_channels,):
        return f"bias of shape {bias.shape} for {out_channels} output channels found"
    return None


# --- the ops' own checks (OpDef.checks) -------------------------------------------------------

_IR_RULES = len(CONSTRAINTS)
"""The rules registered above, which every op's own checks follow."""


def _own_rules() -> dict[Check, Constraint]:
    kinds: dict[Check, set[OpKind]] = {}
    for kind, definition in OP_DEFS.items():
        for check in definition.checks:
            kinds.setdefault(check, set()).add(kind)
    return {check: Constraint(check.__name__, frozenset(found), check)
            for check, found in kinds.items()}


_OWN_RULES = _own_rules()


def all_constraints() -> list[Constraint]:
    """Every rule: those of every op, the ops' own checks, then the arithmetic ones."""
    return CONSTRAINTS[:_IR_RULES] + list(_OWN_RULES.values()) + CONSTRAINTS[_IR_RULES:]


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
        text = "<br>".join(f"- {c.message}" for c in constraints_for(kind)).replace("|", "\\|")
        lines.append(f"| {kind.value} | {text} |")
    return "\n".join(lines) + "\n"
