"""Support constraints: functions whose docstring is the requirement a user sees when they fail.

A check returns None when the op satisfies it, else a short account of what it found
("rank 6 found"); a user reads "<requirement> (<found>)". Every rule that makes mcuflow refuse
a model lives in a constraint, so `check_supported` (run by `analyze` and `compile` alike) lists
every offending op at once, before anything is written, and `mcuflow ops` lists every rule.

Rules that need quant's integer arithmetic (requantisation multipliers, accumulator bounds) are
registered with the same decorator by `mcuflow.quant.fixedpoint`, next to that arithmetic: `ir`
cannot import `quant`. Every stage that computes with it (quant, ref, codegen, api) imports
fixedpoint, so the registry is complete wherever a model is checked on the way to a result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mcuflow.errors import UnsupportedModelError
from mcuflow.ir.graph import DType, Graph, Operator
from mcuflow.ir.ops import Activation, OpKind
from mcuflow.ir.quantization import QuantParams

Check = Callable[[Graph, Operator], str | None]
"""A constraint's check: None when the op satisfies it, else what it found ("rank 6 found")."""

MAX_RANK = 5
"""Dimensions the C kernels' shape structs hold (element-wise broadcast, MEAN, PAD)."""

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
        if any(c.name == check.__name__ for c in CONSTRAINTS):
            raise ValueError(f"constraint {check.__name__} is registered twice")
        CONSTRAINTS.append(Constraint(check.__name__, frozenset(kinds) or _ALL_KINDS, check,
                                      frozenset(r.__name__ for r in requires)))
        return check

    return register


def constraints_for(kind: OpKind) -> list[Constraint]:
    """The constraints that apply to `kind`, in registration order."""
    return [c for c in CONSTRAINTS if kind in c.kinds]


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


def describe_quant(quant: QuantParams) -> str:
    """'scale 0.05, zero point 3' (the first channel's, with a count when per-channel)."""
    text = f"scale {quant.scale0:.6g}, zero point {quant.zero_point0}"
    return f"{text} (and {len(quant.scale) - 1} more channels)" if quant.is_per_channel else text


def _found(problems: list[str]) -> str | None:
    unique = list(dict.fromkeys(problems))
    return f"{', '.join(unique)} found" if unique else None


WEIGHT_AXIS = {OpKind.CONV_2D: 0, OpKind.DEPTHWISE_CONV_2D: 3, OpKind.FULLY_CONNECTED: 0}
"""The output-channel axis of each weighted op's weights (its per-channel axis)."""
WEIGHTED = tuple(WEIGHT_AXIS)
SHARED_QUANT = (OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D, OpKind.RESHAPE, OpKind.SQUEEZE,
                OpKind.PAD, OpKind.CONCATENATION)
"""Ops whose int8 inputs and output must share one scale and zero point (TFLite's rule)."""
FIXED_OUTPUT = {
    OpKind.SOFTMAX: QuantParams.per_tensor(1.0 / 256.0, -128),
    OpKind.LOGISTIC: QuantParams.per_tensor(1.0 / 256.0, -128),
    OpKind.TANH: QuantParams.per_tensor(1.0 / 128.0, 0),
}
"""Output parameters TFLite's int8 kernels require."""
_FLOAT_IN = frozenset({OpKind.QUANTIZE})
_FLOAT_OUT = frozenset({OpKind.DEQUANTIZE})


def data_inputs(op: Operator) -> tuple[str, ...]:
    """The inputs an op computes on: all but the weights and bias of a weighted op."""
    return op.inputs[:1] if op.kind in WEIGHTED else op.inputs


def _int8_problem(graph: Graph, name: str, role: str) -> str | None:
    tensor = graph.tensors[name]
    if tensor.dtype is not DType.INT8:
        return f"{tensor.dtype.value} {role}"
    if tensor.quant is None:
        return f"{role} without quantisation parameters"
    return None


# --- constraints on every op --------------------------------------------------------------------


@constraint()
def int8_activations(graph: Graph, op: Operator) -> str | None:
    """Activations and constant operands must be int8 with quantisation parameters (full-integer
    quantisation). Only QUANTIZE may read float32 and only DEQUANTIZE may write float32.
    Quantise float models with `mcuflow quantize`, or pass --calibration to quantise on the
    fly."""
    problems = [] if op.kind in _FLOAT_IN else [
        _int8_problem(graph, name, "input") for name in data_inputs(op)]
    if op.kind not in _FLOAT_OUT:
        problems += [_int8_problem(graph, name, "output") for name in op.outputs]
    return _found([p for p in problems if p is not None])


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
    """A bias, when present, must be a constant int32 tensor with one value per output channel."""
    if len(op.inputs) < 3:
        return None
    bias = graph.tensors[op.inputs[2]]
    out_channels = graph.tensors[op.outputs[0]].shape[-1]
    if not bias.is_constant:
        return "non-constant bias found"
    if bias.dtype is not DType.INT32:
        return f"{bias.dtype.value} bias found"
    if bias.shape != (out_channels,):
        return f"bias of shape {bias.shape} for {out_channels} output channels found"
    return None


# --- quantisation rules of LiteRT's int8 kernels ------------------------------------------------


BIAS_SCALE_TOLERANCE = 0.02
"""LiteRT's GetQuantizedConvolutionMultipler: |input x weight scale - bias scale| / output scale."""


@constraint(OpKind.FULLY_CONNECTED, requires=(int8_activations,))
def fc_bias_scale(graph: Graph, op: Operator) -> str | None:
    """With per-tensor weights, the bias scale must equal input scale x weight scale within 2 %
    of the output scale (LiteRT refuses the layer otherwise)."""
    weights = graph.tensors[op.inputs[1]].quant
    bias = graph.tensors[op.inputs[2]].quant if len(op.inputs) > 2 else None
    x, out = graph.tensors[op.inputs[0]].quant, graph.tensors[op.outputs[0]].quant
    if bias is None or weights is None or weights.is_per_channel or x is None or out is None:
        return None
    product = float(x.scale0) * float(weights.scale0)
    ratio = abs(product - float(bias.scale0)) / float(out.scale0)
    if ratio <= BIAS_SCALE_TOLERANCE:
        return None
    return f"bias scale {bias.scale0:.6g} for input x weight scale {product:.6g} found"


@constraint(*(kind for kind in SHARED_QUANT if kind is not OpKind.CONCATENATION))
def same_quantisation(graph: Graph, op: Operator) -> str | None:
    """Input and output must share scale and zero point (TFLite's int8 requirement)."""
    source = graph.tensors[op.inputs[0]].quant
    target = graph.tensors[op.outputs[0]].quant
    if source is None or target is None or source == target:
        return None
    return f"input ({describe_quant(source)}) and output ({describe_quant(target)}) found"


def _output_range(graph: Graph, op: Operator) -> str | None:
    quant = graph.tensors[op.outputs[0]].quant
    fixed = FIXED_OUTPUT[op.kind]
    if quant is None or (quant.scale, quant.zero_point) == (fixed.scale, fixed.zero_point):
        return None
    return f"output {describe_quant(quant)} found"


@constraint(OpKind.SOFTMAX, OpKind.LOGISTIC)
def unit_output_range(graph: Graph, op: Operator) -> str | None:
    """The int8 output must use scale 1/256 and zero point -128 (TFLite's int8 requirement)."""
    return _output_range(graph, op)


@constraint(OpKind.TANH)
def tanh_output_range(graph: Graph, op: Operator) -> str | None:
    """The int8 output must use scale 1/128 and zero point 0 (TFLite's int8 requirement)."""
    return _output_range(graph, op)


@constraint(OpKind.CONCATENATION)
def concat_same_quantisation(graph: Graph, op: Operator) -> str | None:
    """Every input must share the output's scale and zero point."""
    out = graph.tensors[op.outputs[0]].quant
    if out is None:
        return None
    for index, name in enumerate(op.inputs):
        quant = graph.tensors[name].quant
        if quant is not None and quant != out:
            return (f"input {index} ({describe_quant(quant)}) and output "
                    f"({describe_quant(out)}) found")
    return None


@constraint(OpKind.QUANTIZE)
def quantize_per_tensor(graph: Graph, op: Operator) -> str | None:
    """QUANTIZE must read float32 or int8 and write per-tensor int8."""
    source = graph.tensors[op.inputs[0]].dtype
    if source not in (DType.FLOAT32, DType.INT8):
        return f"{source.value} input found"
    quant = graph.tensors[op.outputs[0]].quant
    return "per-channel output found" if quant is not None and quant.is_per_channel else None


@constraint(OpKind.DEQUANTIZE)
def dequantize_to_float(graph: Graph, op: Operator) -> str | None:
    """DEQUANTIZE must read per-tensor int8 and write float32."""
    target = graph.tensors[op.outputs[0]].dtype
    if target is not DType.FLOAT32:
        return f"{target.value} output found"
    quant = graph.tensors[op.inputs[0]].quant
    return "per-channel input found" if quant is not None and quant.is_per_channel else None


# --- what the C kernels handle ------------------------------------------------------------------


@constraint(OpKind.ADD, OpKind.SUB, OpKind.MUL, OpKind.MEAN, OpKind.PAD)
def rank_at_most_5(graph: Graph, op: Operator) -> str | None:
    """Inputs and outputs may have at most 5 dimensions (the C kernels' limit)."""
    rank = max(len(graph.tensors[name].shape) for name in (*op.inputs, *op.outputs))
    return f"rank {rank} found" if rank > MAX_RANK else None


@constraint(OpKind.CONCATENATION)
def concat_no_activation(graph: Graph, op: Operator) -> str | None:
    """CONCATENATION cannot fuse an activation (LiteRT rejects it): apply the activation as a
    separate op."""
    activation = op.attrs.activation
    return None if activation is Activation.NONE else f"fused {activation.value} found"


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
