"""SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND reference kernels: int8 values moved, never changed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import BatchSpaceAttrs, OpKind
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


@dataclass(frozen=True)
class BatchSpace4D:
    """Either op over NHWC; `edges` are (top, bottom, left, right).

    A 3-D [N, W, C] tensor is [N, W, 1, C] with a block of 1 along the unit axis (LiteRT's own
    extension).
    """

    block_h: int
    block_w: int
    edges: tuple[int, int, int, int]


def batch_space_4d(attrs: BatchSpaceAttrs) -> BatchSpace4D:
    """`attrs` for the NHWC form of the op (3-D inputs gain a unit width)."""
    blocks = (*attrs.block_shape, 1)[:2]
    pairs = (*attrs.edges, (0, 0))[:2]
    return BatchSpace4D(blocks[0], blocks[1], (*pairs[0], *pairs[1]))


def as_nhwc(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """`shape` (3-D or 4-D) as the NHWC shape the kernels walk."""
    n, h, *w, c = shape
    return n, h, w[0] if w else 1, c


def space_to_batch(x: np.ndarray, attrs: BatchSpaceAttrs, value: int) -> np.ndarray:
    """LiteRT's SpaceToBatchND of `x`, padded with `value`.

    Output batch (sh * block_w + sw) * N + b holds input pixels (oh * block_h + sh - top,
    ow * block_w + sw - left) of batch b, `value` where padded.
    """
    g = batch_space_4d(attrs)
    top, bottom, left, right = g.edges
    n, h, w, c = as_nhwc(x.shape)
    padded = np.full((n, h + top + bottom, w + left + right, c), value, x.dtype)
    padded[:, top:top + h, left:left + w] = x.reshape(n, h, w, c)
    out_h, out_w = padded.shape[1] // g.block_h, padded.shape[2] // g.block_w
    blocks = padded.reshape(n, out_h, g.block_h, out_w, g.block_w, c).transpose(2, 4, 0, 1, 3, 5)
    out = blocks.reshape(g.block_h * g.block_w * n, out_h, out_w, c)
    return out.reshape(out.shape[0], out_h, c) if x.ndim == 3 else out


def batch_to_space(x: np.ndarray, attrs: BatchSpaceAttrs) -> np.ndarray:
    """LiteRT's BatchToSpaceND of `x`.

    Input batch (sh * block_w + sw) * N + b lands on output pixels (h * block_h + sh - crop_top,
    w * block_w + sw - crop_left) of batch b; cropped ones are dropped.
    """
    g = batch_space_4d(attrs)
    top, bottom, left, right = g.edges
    batches, h, w, c = as_nhwc(x.shape)
    n = batches // (g.block_h * g.block_w)
    spread = x.reshape(g.block_h, g.block_w, n, h, w, c).transpose(2, 3, 0, 4, 1, 5)
    full = spread.reshape(n, h * g.block_h, w * g.block_w, c)
    out = full[:, top:h * g.block_h - bottom, left:w * g.block_w - right]
    return np.ascontiguousarray(out.reshape(n, out.shape[1], c) if x.ndim == 3 else out)


@prepared_kernel(OpKind.SPACE_TO_BATCH_ND)
def prepare_space_to_batch(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a SPACE_TO_BATCH_ND: it pads with the output zero point, as LiteRT's int8 kernel."""
    quant = graph.tensor(op.outputs[0]).quant
    value = quant.zero_point0 if quant is not None else 0
    attrs = op.attrs
    return lambda inputs: [space_to_batch(inputs[0], attrs, value)]


@prepared_kernel(OpKind.BATCH_TO_SPACE_ND)
def prepare_batch_to_space(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a BATCH_TO_SPACE_ND."""
    attrs = op.attrs
    return lambda inputs: [batch_to_space(inputs[0], attrs)]


@float_kernel(OpKind.SPACE_TO_BATCH_ND)
def _space_to_batch_float(graph: Graph, op: Operator, inputs: list[np.ndarray]
                          ) -> list[np.ndarray]:
    return [space_to_batch(inputs[0], op.attrs, 0)]


@float_kernel(OpKind.BATCH_TO_SPACE_ND)
def _batch_to_space_float(graph: Graph, op: Operator, inputs: list[np.ndarray]
                          ) -> list[np.ndarray]:
    return [batch_to_space(inputs[0], op.attrs)]
