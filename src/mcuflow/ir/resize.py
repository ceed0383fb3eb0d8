"""RESIZE_NEAREST_NEIGHBOR's index arithmetic: which input pixel each output pixel copies.

In `ir` because the TFLite op's definition is this arithmetic: the reference kernel, the C
emitter's index tables and the ONNX reader (which maps a Resize to the TFLite mode that picks
the same pixels) all use it.
"""

from __future__ import annotations

import numpy as np


def nearest_indices(in_size: int, out_size: int, align_corners: bool,
                    half_pixel_centers: bool) -> np.ndarray:
    """The input index of every output index along one axis, as LiteRT's GetNearestNeighbor.

    Its arithmetic is float32: scale = in / out (with align_corners and out > 1,
    (in - 1) / (out - 1)); (index + offset) * scale, offset 0.5 with half_pixel_centers; rounded
    half away from zero with align_corners, else floored; at most in - 1 (and at least 0 with
    half_pixel_centers).
    """
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    scaled = (np.arange(out_size, dtype=f32) + offset) * f32(scale)
    floor = np.floor(scaled)
    if align_corners:  # std::round of a non-negative float: halves go up
        floor = floor + (scaled - floor >= f32(0.5))
    index = np.minimum(floor.astype(np.int64), in_size - 1)
    if half_pixel_centers:
        index = np.maximum(index, 0)
    return index.astype(np.int32)
