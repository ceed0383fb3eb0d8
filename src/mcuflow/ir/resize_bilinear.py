"""RESIZE_BILINEAR's fixed-point index arithmetic: the two source indices and weight per index.

In `ir` because the TFLite op's definition is this arithmetic (LiteRT's ResizeBilinearInteger):
the reference kernel, the C emitter's tables and the op's support check all use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRACTION_BITS = 10
"""The fixed-point fraction bits of LiteRT's integer source coordinates and weights."""

ONE = 1 << FRACTION_BITS


@dataclass(frozen=True)
class BilinearAxis:
    """Per output index along one axis: the lower and upper source index, the upper's weight.

    The weight is in 1/1024, negative before the first input centre with half-pixel centres.
    """

    lower: np.ndarray
    upper: np.ndarray
    weight: np.ndarray


def bilinear_scale(in_size: int, out_size: int, align_corners: bool) -> int:
    """LiteRT's scale in 1/1024: in / out rounded to nearest.

    (in - 1) / (out - 1) when align_corners and out > 1; integer division of non-negative values.
    """
    if align_corners and out_size > 1:
        return (ONE * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    return (ONE * in_size + out_size // 2) // out_size


def bilinear_axis(in_size: int, out_size: int, align_corners: bool,
                  half_pixel_centers: bool) -> BilinearAxis:
    """ComputeInterpolationValuesInteger for every output index along one axis.

    The source coordinate is index * scale (plus scale / 2 - 1/2 with half_pixel_centers); the
    lower index is its quotient by 1024 truncated toward zero, at least 0 (the coordinate is at
    least -512, so this is the floored quotient of the coordinate clamped at 0); the upper one
    the quotient rounded up, at most in - 1; the weight is the coordinate minus 1024 * lower.
    """
    scale = bilinear_scale(in_size, out_size, align_corners)
    coordinate = np.arange(out_size, dtype=np.int64) * scale
    if half_pixel_centers:
        coordinate += scale // 2 - ONE // 2
    lower = np.maximum(coordinate, 0) // ONE
    upper = np.minimum((coordinate + ONE - 1) // ONE, in_size - 1)
    return BilinearAxis(lower.astype(np.int32), upper.astype(np.int32),
                        (coordinate - ONE * lower).astype(np.int32))
