"""RESIZE_NEAREST_NEIGHBOR reference kernels (int8, int16, float32): a pixel copy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.crop import check_indices, crop_indices, whole_input_hw
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, ResizeNearestNeighborAttrs
from mcuflow.ir.resize import nearest_indices
from mcuflow.ref.common import require_copied
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


@dataclass(frozen=True)
class ResizeParams:
    """The source row of every output row and the source column of every output column."""

    rows: np.ndarray
    cols: np.ndarray


def prepare_resize(in_shape: tuple[int, ...], attrs: ResizeNearestNeighborAttrs
                   ) -> ResizeParams:
    """The index tables of a resize of an NHWC `in_shape` (the C emitter freezes them).

    Of a cropped one: the whole resize's tables cut to its window.
    """
    in_h, in_w = whole_input_hw(in_shape, attrs.crop)
    out_h, out_w = attrs.size
    tables = [check_indices(crop_indices(nearest_indices(
        whole, out, attrs.align_corners, attrs.half_pixel_centers), attrs.crop, axis),
        window, "RESIZE_NEAREST_NEIGHBOR") for axis, whole, out, window in (
            (0, in_h, out_h, in_shape[1]), (1, in_w, out_w, in_shape[2]))]
    return ResizeParams(*tables)


def resize_nearest(x: np.ndarray, params: ResizeParams) -> np.ndarray:
    """`x` [N, H, W, C] gathered at the tables' rows and columns, C-contiguous."""
    return np.ascontiguousarray(x[:, params.rows][:, :, params.cols])


@prepared_kernel(OpKind.RESIZE_NEAREST_NEIGHBOR)
def _prepare(graph: Graph, op: Operator) -> PreparedFn:
    """resize_nearest_neighbor.h: copies the stored int8 or int16 values, no requantisation.

    Input and output share one quantisation (the same_quantisation constraint).
    """
    x = graph.tensor(op.inputs[0])
    require_copied(op, x, graph.tensor(op.outputs[0]))
    params = prepare_resize(x.shape, op.attrs)
    return lambda inputs: [resize_nearest(inputs[0], params)]


@float_kernel(OpKind.RESIZE_NEAREST_NEIGHBOR)
def _float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    params = prepare_resize(graph.tensor(op.inputs[0]).shape, op.attrs)
    return [resize_nearest(inputs[0], params).astype(np.float32)]
