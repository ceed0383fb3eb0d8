"""RESIZE_BILINEAR reference kernels: int8 as LiteRT's ResizeBilinearInteger, and float32."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.crop import Crop, check_indices, crop_indices, crop_values, whole_input_hw
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, ResizeBilinearAttrs
from mcuflow.ir.resize_bilinear import FRACTION_BITS, ONE, BilinearAxis, bilinear_axis
from mcuflow.quant.fixedpoint import rounding_divide_by_pot_array
from mcuflow.ref.common import require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


@dataclass(frozen=True)
class BilinearParams:
    """The source rows and weights of every output row, and the same of every output column."""

    rows: BilinearAxis
    cols: BilinearAxis


def prepare_bilinear(in_shape: tuple[int, ...], attrs: ResizeBilinearAttrs) -> BilinearParams:
    """The tables of a bilinear resize of an NHWC `in_shape` (the C emitter freezes them).

    Of a cropped one: the whole resize's tables cut to its window.
    """
    in_h, in_w = whole_input_hw(in_shape, attrs.crop)
    out_h, out_w = attrs.size
    mode = (attrs.align_corners, attrs.half_pixel_centers)
    return BilinearParams(
        _cropped(bilinear_axis(in_h, out_h, *mode), attrs.crop, 0, in_shape[1]),
        _cropped(bilinear_axis(in_w, out_w, *mode), attrs.crop, 1, in_shape[2]))


def _cropped(axis: BilinearAxis, crop: Crop | None, along: int, window: int) -> BilinearAxis:
    """`axis` cut to the crop's output window, its indices counted in the input `window`."""
    if crop is None:
        return axis
    return BilinearAxis(
        check_indices(crop_indices(axis.lower, crop, along), window, "RESIZE_BILINEAR"),
        check_indices(crop_indices(axis.upper, crop, along), window, "RESIZE_BILINEAR"),
        crop_values(axis.weight, crop, along))


def _corners(x: np.ndarray, params: BilinearParams) -> tuple[np.ndarray, ...]:
    """The four source pixels of every output pixel: (y0, x0), (y1, x0), (y0, x1), (y1, x1)."""
    rows, cols = params.rows, params.cols
    top, bottom = x[:, rows.lower], x[:, rows.upper]
    return (top[:, :, cols.lower], bottom[:, :, cols.lower], top[:, :, cols.upper],
            bottom[:, :, cols.upper])


def resize_bilinear_int8(x: np.ndarray, params: BilinearParams) -> np.ndarray:
    """`x` [N, H, W, C] int8 resized as LiteRT's ResizeBilinearInteger.

    The four products of value and weights in 2^-20, summed, divided by 2^20 rounding half away
    from zero (LiteRT's default double rounding).
    """
    wy = params.rows.weight.astype(np.int64)[None, :, None, None]
    wx = params.cols.weight.astype(np.int64)[None, None, :, None]
    y00, y10, y01, y11 = (c.astype(np.int64) for c in _corners(x, params))
    total = (y00 * (ONE - wy) * (ONE - wx) + y10 * wy * (ONE - wx) + y01 * (ONE - wy) * wx
             + y11 * wy * wx)
    return rounding_divide_by_pot_array(total, 2 * FRACTION_BITS).astype(np.int8)


def resize_bilinear_float(x: np.ndarray, attrs: ResizeBilinearAttrs) -> np.ndarray:
    """LiteRT's float ResizeBilinear: float32 source coordinates, clamped neighbours."""
    in_h, in_w = whole_input_hw(x.shape, attrs.crop)
    f32 = np.float32

    def axis(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if attrs.align_corners and out_size > 1:
            scale = f32(in_size - 1) / f32(out_size - 1)
        else:
            scale = f32(in_size) / f32(out_size)
        index = np.arange(out_size, dtype=f32)
        coordinate = ((index + f32(0.5)) * scale - f32(0.5) if attrs.half_pixel_centers
                      else index * scale)
        lower = np.maximum(np.floor(coordinate), f32(0)).astype(np.int64)
        upper = np.minimum(np.ceil(coordinate).astype(np.int64), in_size - 1)
        return lower, upper, (coordinate - lower.astype(f32)).astype(f32)

    def cropped(along: int, lower: np.ndarray, upper: np.ndarray, weight: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (crop_indices(lower, attrs.crop, along), crop_indices(upper, attrs.crop, along),
                crop_values(weight, attrs.crop, along))

    y0, y1, dy = cropped(0, *axis(in_h, attrs.size[0]))
    x0, x1, dx = cropped(1, *axis(in_w, attrs.size[1]))
    dy, dx = dy[None, :, None, None], dx[None, None, :, None]
    top, bottom = x[:, y0], x[:, y1]
    one = f32(1)
    return (top[:, :, x0] * (one - dy) * (one - dx) + bottom[:, :, x0] * dy * (one - dx)
            + top[:, :, x1] * (one - dy) * dx + bottom[:, :, x1] * dy * dx).astype(f32)


@prepared_kernel(OpKind.RESIZE_BILINEAR)
def _prepare(graph: Graph, op: Operator) -> PreparedFn:
    """resize_bilinear.h ResizeBilinearInteger: interpolates the stored int8 values.

    Input and output share one quantisation (the same_quantisation constraint).
    """
    x = graph.tensor(op.inputs[0])
    require_int8(op, x, graph.tensor(op.outputs[0]))
    params = prepare_bilinear(x.shape, op.attrs)
    return lambda inputs: [resize_bilinear_int8(inputs[0], params)]


@float_kernel(OpKind.RESIZE_BILINEAR)
def _float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [resize_bilinear_float(inputs[0].astype(np.float32), op.attrs)]
