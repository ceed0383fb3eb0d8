"""Graph-editing helpers shared by the passes: consumers, renaming, removing ops and tensors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mcuflow.ir.graph import DType, Graph, Operator

WEIGHTED_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
"""Output-channel axis of the weights of each weighted op kind (by OpKind value)."""


def sole_consumer(graph: Graph, name: str) -> Operator | None:
    """The one operator reading `name`, or None when several (or none) do or it is an output."""
    if name in graph.outputs:
        return None
    readers = [op for op in graph.operators if name in op.inputs]
    return readers[0] if len(readers) == 1 else None


def producer(graph: Graph, name: str) -> Operator | None:
    """The operator writing `name`, or None for graph inputs and constants."""
    index = graph.producer(name)
    return None if index is None else graph.operators[index]


def bypass(graph: Graph, op: Operator, source: str) -> None:
    """Remove `op` and let every reader of its output read `source` instead.

    The same values, so when the model quantised the output but not `source` (a QDQ model's
    reshape), `source` takes over the output's parameters.
    """
    output = op.outputs[0]
    kept, taker = graph.tensors[output].quant, graph.tensors[source]
    if kept is not None and taker.quant is None and not taker.is_constant:
        graph.tensors[source] = replace(taker, quant=kept)
    graph.operators.remove(op)
    for other in graph.operators:
        other.inputs = tuple(source if name == output else name for name in other.inputs)
    drop_unused_tensors(graph)


def absorb(graph: Graph, first: Operator, second: Operator) -> None:
    """Remove `second`, whose work `first` now does: `first` writes `second`'s output."""
    middle = first.outputs[0]
    first.outputs = (second.outputs[0],)
    graph.operators.remove(second)
    del graph.tensors[middle]


def drop_unused_tensors(graph: Graph) -> None:
    """Delete tensors that no operator reads or writes and that are not graph inputs/outputs."""
    used = set(graph.inputs) | set(graph.outputs)
    for op in graph.operators:
        used.update(op.inputs)
        used.update(op.outputs)
    for name in [name for name in graph.tensors if name not in used]:
        del graph.tensors[name]


def float_constant(graph: Graph, name: str) -> np.ndarray | None:
    """The data of a float32 constant tensor, or None."""
    tensor = graph.tensors[name]
    if tensor.data is None or tensor.dtype is not DType.FLOAT32:
        return None
    return tensor.data


def channel_vector(graph: Graph, name: str, out_shape: tuple[int, ...]) -> np.ndarray | None:
    """A float constant that scales or shifts only along the last axis, as a [C] vector.

    It qualifies when broadcasting it against `out_shape` yields `out_shape` and all its axes
    but the last have size 1 (scalars qualify too). None otherwise.
    """
    data = float_constant(graph, name)
    if data is None or data.ndim > len(out_shape) or not out_shape:
        return None
    if any(d != 1 for d in data.shape[:-1]):
        return None
    channels = out_shape[-1]
    last = data.shape[-1] if data.ndim else 1
    if last not in (1, channels):
        return None
    return np.broadcast_to(data.reshape(-1), (channels,)).astype(np.float32)


def unique_name(graph: Graph, base: str) -> str:
    """`base`, or `base_<n>` with the first n that is not yet a tensor name."""
    name, n = base, 0
    while name in graph.tensors:
        n += 1
        name = f"{base}_{n}"
    return name
