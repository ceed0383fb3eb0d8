"""Layers whose weights exceed a byte limit become groups of output channels and a CONCATENATION."""

from __future__ import annotations

from dataclasses import replace

from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import ConcatenationAttrs, MeanAttrs, OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.passes.common import unique_name

SPLITTABLE = frozenset({OpKind.CONV_2D, OpKind.FULLY_CONNECTED})
"""Op kinds whose output channels are computed independently of each other from their own
weight rows (filter [O, ...] with per-row scales), so that a group of rows is the same op."""
REDUCTIONS = frozenset({OpKind.MEAN, OpKind.REDUCE_MAX, OpKind.REDUCE_MIN})
"""Reductions computed channel by channel: over the groups of a split layer, one per group."""
GROUP_MULTIPLE = 4
"""Channels per group are a multiple of this where the limit allows (the DSP kernels' blocks)."""


def split_wide_layers(graph: Graph, max_weight_bytes: int, expanded_units: int = 0) -> Graph:
    """Every CONV_2D or FULLY_CONNECTED whose weights exceed `max_weight_bytes` is split.

    It becomes ops each computing a group of its output channels from those channels' weight
    rows, bias and scales, and a CONCATENATION on the last axis writing the original output:
    the same values bit for bit, with every group's weights within the limit. Layers whose one
    output channel alone exceeds the limit stay whole, and so do codebook-compressed weights
    (a group would lose its codebook). When the output's one reader reduces over other axes
    than the channels (MobileNet's global average pool after its widest layer), each group is
    reduced right after it is computed and the reductions concatenated: the wide output is
    never whole in memory. A FULLY_CONNECTED group of at most `expanded_units` units may be
    run by a kernel storing its weights widened to twice their bytes: its groups get more units
    than that where the limit allows (unrounded).
    """
    graph = Graph(graph.name, dict(graph.tensors), list(graph.operators), list(graph.inputs),
                  list(graph.outputs))  # the constants are shared, never written
    for op in [op for op in graph.operators if _too_wide(graph, op, max_weight_bytes)]:
        group = _group_size(graph, op, max_weight_bytes, expanded_units)
        _reduce_in_groups(graph, _split(graph, op, group))
    return graph


def _too_wide(graph: Graph, op: Operator, limit: int) -> bool:
    if op.kind not in SPLITTABLE:
        return False
    weights = graph.tensors[op.inputs[1]]
    row_bytes = weights.nbytes // weights.shape[0]
    return (weights.is_constant and weights.codebook is None and weights.nbytes > limit
            and row_bytes <= limit)


def _group_size(graph: Graph, op: Operator, limit: int, expanded_units: int) -> int:
    weights = graph.tensors[op.inputs[1]]
    rows = limit // (weights.nbytes // weights.shape[0])
    group = rows // GROUP_MULTIPLE * GROUP_MULTIPLE or rows
    if op.kind is OpKind.FULLY_CONNECTED and group <= expanded_units < rows:
        return rows
    return group


def _split(graph: Graph, op: Operator, group: int) -> Operator:
    output = graph.tensors[op.outputs[0]]
    channels = graph.tensors[op.inputs[1]].shape[0]
    parts: list[Operator] = []
    for first in range(0, channels, group):
        rows = slice(first, min(first + group, channels))
        name = unique_name(graph, f"{output.name}__ch{first}")
        graph.add_tensor(replace(output, name=name, shape=(*output.shape[:-1], rows.stop - first)))
        inputs = (op.inputs[0], *(_rows(graph, constant, rows) for constant in op.inputs[1:]))
        parts.append(Operator(op.kind, inputs, (name,), op.attrs,
                              f"{op.name or output.name}[{first}:{rows.stop}]"))
    concat = Operator(OpKind.CONCATENATION, tuple(p.outputs[0] for p in parts), op.outputs,
                      ConcatenationAttrs(axis=len(output.shape) - 1), op.name)
    at = graph.operators.index(op)
    graph.operators[at:at + 1] = [*parts, concat]
    for constant in op.inputs[1:]:
        if not any(constant in other.inputs for other in graph.operators):
            del graph.tensors[constant]
    return concat


def _reduce_in_groups(graph: Graph, concat: Operator) -> None:
    """Reduce each group before concatenating, when the only reader reduces its concatenation."""
    output = concat.outputs[0]
    readers = [op for op in graph.operators if output in op.inputs]
    if output in graph.outputs or len(readers) != 1 or readers[0].kind not in REDUCTIONS:
        return
    reduce = readers[0]
    attrs = reduce.attrs
    rank = len(graph.tensors[output].shape)
    if not isinstance(attrs, MeanAttrs) or rank - 1 in [axis % rank for axis in attrs.axes]:
        return
    reduced = graph.tensors[reduce.outputs[0]]
    names: list[str] = []
    for part in concat.inputs:
        channels = graph.tensors[part].shape[-1]
        name = unique_name(graph, f"{reduced.name}__{part}")
        graph.add_tensor(replace(reduced, name=name, shape=(*reduced.shape[:-1], channels)))
        producer = next(i for i, op in enumerate(graph.operators) if part in op.outputs)
        graph.operators.insert(producer + 1, Operator(reduce.kind, (part,), (name,), attrs,
                                                      f"{reduce.name}[{part}]"))
        names.append(name)
    joined = Operator(OpKind.CONCATENATION, tuple(names), reduce.outputs,
                      ConcatenationAttrs(axis=len(reduced.shape) - 1), reduce.name)
    graph.operators.remove(concat)
    graph.operators[graph.operators.index(reduce)] = joined
    del graph.tensors[output]


def _rows(graph: Graph, name: str, rows: slice) -> str:
    """A new constant holding rows `rows` of constant `name` (with their scales)."""
    tensor = graph.tensors[name]
    data = tensor.data[rows].copy()
    part = Tensor(unique_name(graph, f"{name}__ch{rows.start}"), data.shape, tensor.dtype,
                  _row_quant(tensor.quant, rows, tensor.shape[0]), data)
    return graph.add_tensor(part).name


def _row_quant(quant: QuantParams | None, rows: slice, channels: int) -> QuantParams | None:
    if quant is None or not quant.is_per_channel or len(quant.scale) != channels:
        return quant
    return QuantParams(quant.scale[rows], quant.zero_point[rows], quant.axis)

