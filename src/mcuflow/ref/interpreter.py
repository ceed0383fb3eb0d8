"""The reference interpreter: runs a Graph op by op through the bit-exact numpy kernels."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

import mcuflow.ref.kernels  # noqa: F401  (registers every kernel)
from mcuflow.errors import McuflowError, UnsupportedModelError
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ref.registry import KERNELS, prepare

Inputs = Sequence[np.ndarray] | Mapping[str, np.ndarray]
Step = Callable[[dict[str, np.ndarray]], None]
"""One prepared op: reads its inputs from the tensor values and stores its outputs there."""


@dataclass
class RunResult:
    """Outputs in graph output order, and every tensor by name when intermediates were kept."""

    outputs: list[np.ndarray]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


class Interpreter:
    """A graph prepared once (TFLite's Prepare step) and then run on any number of inputs.

    `order` lists operator indices in execution order (the memory planner's schedule); it must be
    a permutation of the operators in which every tensor is produced before it is read.
    A graph mcuflow does not support is refused with every offending op (UnsupportedModelError).
    Variable tensors (SVDF's, an LSTM's states) start at their `reset_value` and carry over
    from one run to the next, as in LiteRT; `reset` restores that start. Not thread-safe:
    prepared kernels reuse scratch buffers.
    """

    def __init__(self, graph: Graph, order: Sequence[int] | None = None) -> None:
        self.graph = graph
        self.order = _checked_order(graph, order)
        check_supported(graph)
        self._constants = {name: t.data for name, t in graph.tensors.items() if t.is_constant}
        self.state = {name: initial_state(graph.tensor(name)) for name in graph.variables()}
        self._steps = [_prepared(graph, graph.operators[index]) for index in self.order]
        self._expected = {name: (tuple(graph.tensor(name).shape), graph.tensor(name).dtype.numpy)
                          for name in graph.inputs}

    def run(self, inputs: Inputs, keep_intermediates: bool = False) -> RunResult:
        """Execute the graph on `inputs` (a list in graph input order, or a dict by name)."""
        values = {**self._constants, **self.state, **self._bind(inputs)}
        for step in self._steps:
            step(values)
        outputs = [values[name] for name in self.graph.outputs]
        return RunResult(outputs, values if keep_intermediates else {})

    def reset(self) -> None:
        """Reset every variable tensor to its start (LiteRT's ResetVariableTensors)."""
        for name, value in self.state.items():
            value[...] = self.graph.tensor(name).reset_value

    def _bind(self, inputs: Inputs) -> dict[str, np.ndarray]:
        names = self.graph.inputs
        if isinstance(inputs, Mapping):
            if set(inputs) != set(names):
                raise McuflowError(
                    f"inputs {sorted(inputs)} do not match the graph inputs {names}",
                    "pass one array per graph input, keyed by tensor name")
            bound = {name: inputs[name] for name in names}
        else:
            if len(inputs) != len(names):
                raise McuflowError(f"{len(inputs)} inputs given, the graph has {len(names)}",
                                   f"pass arrays for {names} in this order")
            bound = dict(zip(names, inputs, strict=True))
        for name, value in bound.items():
            self._check_input(name, value)
        return bound

    def _check_input(self, name: str, value: object) -> None:
        expected = self._expected[name]
        if not isinstance(value, np.ndarray) or (value.shape, value.dtype) != expected:
            got = (f"shape {value.shape} {value.dtype}" if isinstance(value, np.ndarray)
                   else type(value).__name__)
            raise McuflowError(
                f"input '{name}' is {got}, expected shape {expected[0]} {expected[1]}",
                "convert the input to the model's shape and dtype")


def initial_state(tensor: Tensor) -> np.ndarray:
    """A new array of variable `tensor` at its start value (its `reset_value`)."""
    return np.full(tensor.shape, tensor.reset_value, tensor.dtype.numpy)


def run(
    graph: Graph, inputs: Inputs, keep_intermediates: bool = False,
    order: Sequence[int] | None = None,
) -> RunResult:
    """Run `graph` once on `inputs`; see Interpreter for `order`."""
    return Interpreter(graph, order).run(inputs, keep_intermediates)


def _prepared(graph: Graph, op: Operator) -> Step:
    """The op's step; the inputs are fetched by one itemgetter, not a Python loop per run."""
    if op.kind not in KERNELS:
        raise UnsupportedModelError(f"no reference kernel for {op.kind.value} '{op.name}'")
    kernel = prepare(graph, op, checked=True)
    getter = itemgetter(*op.inputs)
    one_input, outputs = len(op.inputs) == 1, op.outputs

    def step(values: dict[str, np.ndarray]) -> None:
        found = getter(values)
        results = kernel([found] if one_input else list(found))
        if len(outputs) == 1:
            values[outputs[0]] = results[0]
        else:
            values.update(zip(outputs, results, strict=True))

    return step


def _checked_order(graph: Graph, order: Sequence[int] | None) -> list[int]:
    """The execution order, verified to be a dependency-respecting permutation of the ops."""
    count = len(graph.operators)
    steps = list(range(count)) if order is None else [int(index) for index in order]
    if sorted(steps) != list(range(count)):
        raise McuflowError(f"order {steps} is not a permutation of the {count} operators")
    ready = set(graph.inputs) | {name for name, t in graph.tensors.items() if t.is_constant}
    ready |= set(graph.variables())
    for index in steps:
        op = graph.operators[index]
        missing = [name for name in op.inputs if name not in ready]
        if missing:
            raise McuflowError(
                f"operator {index} '{op.name}' reads {missing} before they are produced",
                "reorder the operators so that producers run first")
        ready.update(op.outputs)
    absent = [name for name in graph.outputs if name not in ready]
    if absent:
        raise McuflowError(f"graph outputs {absent} are never produced")
    return steps
