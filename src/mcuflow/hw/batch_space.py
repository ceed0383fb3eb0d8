"""The NHWC layout of SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND that their C kernel walks."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind


@dataclass(frozen=True)
class BatchSpaceLayout:
    """SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND in NHWC (mcuflow_batch_space_t's fields).

    The spatial tensor [batches, space_h, space_w, depth], the batched one [block_h * block_w *
    batches, batch_h, batch_w, depth], and the padding or crop before each spatial axis.
    """

    batches: int
    space_h: int
    space_w: int
    batch_h: int
    batch_w: int
    block_h: int
    block_w: int
    top: int
    left: int
    depth: int


def batch_space_layout(graph: Graph, op: Operator) -> BatchSpaceLayout:
    """The NHWC layout of a SPACE_TO_BATCH_ND or BATCH_TO_SPACE_ND (3-D: a unit width)."""
    space, batched = op.inputs[0], op.outputs[0]
    if op.kind is OpKind.BATCH_TO_SPACE_ND:
        space, batched = batched, space
    n, space_h, *space_w, depth = graph.tensors[space].shape
    _, batch_h, *batch_w, _ = graph.tensors[batched].shape
    blocks, edges = (*op.attrs.block_shape, 1), (*op.attrs.edges, (0, 0))
    return BatchSpaceLayout(n, space_h, (*space_w, 1)[0], batch_h, (*batch_w, 1)[0], blocks[0],
                            blocks[1], edges[0][0], edges[1][0], depth)
