"""Crop: an op run on a window of its input to compute a window of its output (patch stages)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.shapes import ShapeError


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


def crop_error(crop: Crop, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> str | None:
    """Why `crop` cannot describe an op with an `in_hw` input window, or None.

    Both windows must lie inside the whole tensors (the whole output is `out_hw`).
    """
    for axis in (0, 1):
        inside_in = 0 <= crop.in_origin[axis] <= crop.in_size[axis] - in_hw[axis]
        inside_out = (crop.out_origin[axis] >= 0 and crop.out_size[axis] >= 1
                      and crop.out_origin[axis] + crop.out_size[axis] <= out_hw[axis])
        if not (inside_in and inside_out):
            return (f"its crop {crop} does not fit an input window of {in_hw[0]}x{in_hw[1]} "
                    f"and a whole output of {out_hw[0]}x{out_hw[1]}")
    return None


def check_indices(table: np.ndarray, size: int, what: str) -> np.ndarray:
    """`table`, when all its input indices lie in [0, size); else a ShapeError."""
    if table.size and (int(table.min()) < 0 or int(table.max()) >= size):
        raise ShapeError(f"{what} reads input indices {int(table.min())}..{int(table.max())} "
                         f"outside its {size}-wide input window")
    return table


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
