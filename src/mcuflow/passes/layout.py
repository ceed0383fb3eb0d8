"""Layout clean-up after NCHW→NHWC import: drop reshapes that only restate how data is laid out."""

from __future__ import annotations

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, ReshapeAttrs
from mcuflow.passes.common import bypass, producer, sole_consumer

_RESHAPES = (OpKind.RESHAPE, OpKind.SQUEEZE, OpKind.EXPAND_DIMS)


def clean_layout(graph: Graph) -> Graph:
    """Remove identity reshapes, merge chained reshapes, and drop the flatten before an FC.

    ONNX's NCHW tensors arrive in NHWC; Flatten, Squeeze, Unsqueeze and layout-only Transposes
    become RESHAPEs, many of which then move nothing. FULLY_CONNECTED flattens its input
    itself, so a RESHAPE to [N, depth] that feeds only an FC is dropped too.
    """
    graph = graph.copy()
    while any(_simplify(graph, op) for op in list(graph.operators)):
        pass
    return graph


def _simplify(graph: Graph, op: Operator) -> bool:
    if op.kind not in _RESHAPES or op.outputs[0] in graph.outputs:
        return False
    source, output = op.inputs[0], op.outputs[0]
    if graph.tensors[source].shape == graph.tensors[output].shape or _feeds_fc_only(graph, op):
        bypass(graph, op, source)
        return True
    earlier = producer(graph, source)
    if earlier is not None and earlier.kind in _RESHAPES and sole_consumer(graph, source):
        op.inputs = earlier.inputs
        op.kind, op.attrs = OpKind.RESHAPE, ReshapeAttrs(graph.tensors[output].shape)
        bypass(graph, earlier, earlier.inputs[0])
        return True
    return False


def _feeds_fc_only(graph: Graph, op: Operator) -> bool:
    """True when `op` flattens to [N, depth] for FULLY_CONNECTED ops that flatten anyway."""
    readers = [other for other in graph.operators if op.outputs[0] in other.inputs]
    shape = graph.tensors[op.outputs[0]].shape
    return bool(readers) and len(shape) == 2 and all(
        reader.kind is OpKind.FULLY_CONNECTED and not reader.attrs.keep_num_dims
        and reader.inputs[0] == op.outputs[0]
        and graph.tensors[reader.inputs[1]].shape[1] == shape[1]
        for reader in readers
    )
