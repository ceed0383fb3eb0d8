"""What the ONNX reader and its converters share: values held in a permuted layout, hints."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

NHWC = (0, 2, 3, 1)
CHANNELS_LAST_1D = (0, 2, 1)
"""How a 1-D signal N, C, T is stored: N, T, C (a row of an NHWC image)."""
_HINT = "re-export the model with torch.onnx.export, or check that the file was copied whole"
_UNSUPPORTED_HINT = "run `mcuflow ops` for what mcuflow supports; re-export without those ops"
_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)


@dataclass(frozen=True)
class _Act:
    """A computed value: IR tensor `name` holds the ONNX value of `shape` with axes permuted.

    Physical (IR) axis i holds logical (ONNX) axis perm[i]. `features`, for a flattened NCHW
    value, gives for each physical column the logical column it holds.
    """

    name: str
    shape: tuple[int, ...]
    perm: tuple[int, ...]
    features: np.ndarray | None = None

    @property
    def physical(self) -> tuple[int, ...]:
        """The IR tensor's shape."""
        return tuple(self.shape[p] for p in self.perm)


Value = _Act | np.ndarray


def _free(value: _Act, perm: tuple[int, ...]) -> bool:
    """True when storing `value` with `perm` instead moves no data (only size-1 axes move)."""
    return [p for p in value.perm if value.shape[p] != 1] == [
        p for p in perm if value.shape[p] != 1]


def _logical(physical: tuple[int, ...], perm: tuple[int, ...]) -> tuple[int, ...]:
    shape = [0] * len(perm)
    for axis, logical in enumerate(perm):
        shape[logical] = physical[axis]
    return tuple(shape)
