"""Crop: an op run on a window of its input to compute a window of its output (patch stages)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Crop:
    """Where a windowed op's tensors sit in the whole op's (rows, columns).

    The whole op reads an input of `in_size`; this op's input is the window of it starting at
    `in_origin`, its output the `out_size` window of the whole output starting at `out_origin`.
    Its index arithmetic is the whole op's, shifted by the origins. No model file writes it: a
    patch stage's TRANSPOSE_CONV, resizes and DEPTH_TO_SPACE carry it.
    """

    in_size: tuple[int, int]
    in_origin: tuple[int, int]
    out_origin: tuple[int, int]
    out_size: tuple[int, int]


def whole_input_hw(shape: tuple[int, ...], crop: Crop | None) -> tuple[int, int]:
    """The whole op's input (H, W): the NHWC input `shape`'s unless the op is cropped."""
    return crop.in_size if crop is not None else (shape[1], shape[2])


def crop_indices(table: np.ndarray, crop: Crop | None, axis: int) -> np.ndarray:
    """A whole op's input index per output index along `axis` (0 rows, 1 columns), cropped.

    Cut to the crop's output window and counted from its input window's first row or column.
    """
    if crop is None:
        return table
    start = crop.out_origin[axis]
    return table[start:start + crop.out_size[axis]] - crop.in_origin[axis]


def crop_values(table: np.ndarray, crop: Crop | None, axis: int) -> np.ndarray:
    """A whole op's per-output-index values (weights) along `axis`, cut to the output window."""
    if crop is None:
        return table
    start = crop.out_origin[axis]
    return table[start:start + crop.out_size[axis]]
