"""Affine quantisation parameters of a tensor, per tensor or per channel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
"""The limits of the integer types quantised arithmetic accumulates and rescales in."""
MIN_SCALE, MAX_SCALE = 2.0**-64, 2.0**31
"""Scales outside this range are corrupt; within it, requantisation ratios stay finite."""


@dataclass(frozen=True)
class QuantParams:
    """real = scale * (q - zero_point); one entry per channel along `axis` when per-channel.

    Scales are stored as Python floats holding the exact float32 value from the model file.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    def __post_init__(self) -> None:
        if len(self.scale) != len(self.zero_point) or not self.scale:
            raise ValueError("scale and zero_point must be non-empty and of equal length")

    @classmethod
    def per_tensor(cls, scale: float, zero_point: int) -> QuantParams:
        """One scale and zero point for the whole tensor."""
        return cls((float(np.float32(scale)),), (int(zero_point),))

    @classmethod
    def per_channel(cls, scales: np.ndarray, zero_points: np.ndarray, axis: int) -> QuantParams:
        """One scale and zero point per slice along `axis`."""
        return cls(
            tuple(np.asarray(scales, dtype=np.float32).tolist()),
            tuple(np.asarray(zero_points, dtype=np.int64).tolist()),
            axis,
        )

    @property
    def is_per_channel(self) -> bool:
        """True when there is more than one (scale, zero point) pair."""
        return len(self.scale) > 1

    @property
    def scale0(self) -> float:
        """The per-tensor scale (the first one for per-channel)."""
        return self.scale[0]

    @property
    def zero_point0(self) -> int:
        """The per-tensor zero point (the first one for per-channel)."""
        return self.zero_point[0]


def describe_quant(quant: QuantParams) -> str:
    """'scale 0.05, zero point 3' (the first channel's, with a count when per-channel)."""
    text = f"scale {quant.scale0:.6g}, zero point {quant.zero_point0}"
    return f"{text} (and {len(quant.scale) - 1} more channels)" if quant.is_per_channel else text
