"""Calibration: observe float tensors on sample inputs, then choose each tensor's clipping range."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from mcuflow.errors import McuflowError

FLOAT32_MAX = float(np.finfo(np.float32).max)
SAMPLES_PER_OBSERVATION = 4096
MAX_SAMPLES = 1 << 17
"""Values kept per tensor for the percentile and MSE methods (min and max are always exact)."""
DEFAULT_PERCENTILE = 99.99
_MSE_STEPS = 64


class CalibrationError(McuflowError):
    """Calibration data that is missing, unreadable or does not fit the model's inputs."""


class Method(Enum):
    """How a tensor's range is chosen from the values it took during calibration."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"

    @classmethod
    def parse(cls, name: str | Method) -> Method:
        """The method called `name`, or a McuflowError listing the choices."""
        try:
            return cls(name)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise CalibrationError(f"unknown calibration method {name!r}",
                               f"choose one of {choices}") from None


@dataclass(frozen=True)
class Range:
    """A real interval [low, high] that always contains 0."""

    low: float
    high: float

    @classmethod
    def including_zero(cls, low: float, high: float) -> Range:
        """[min(low, 0), max(high, 0)] (every quantised range must represent 0 exactly)."""
        return cls(min(float(low), 0.0), max(float(high), 0.0))

    @property
    def max_abs(self) -> float:
        """The larger magnitude of the two ends."""
        return max(-self.low, self.high)


@dataclass
class _Observer:
    """Exact min and max of one tensor plus a bounded uniform sample of its values."""

    low: float = np.inf
    high: float = -np.inf
    kept: list[np.ndarray] = field(default_factory=list)
    count: int = 0

    def add(self, values: np.ndarray, rng: np.random.Generator) -> None:
        flat = values.reshape(-1).astype(np.float32)
        self.low, self.high = min(self.low, float(flat.min())), max(self.high, float(flat.max()))
        if flat.size > SAMPLES_PER_OBSERVATION:
            flat = rng.choice(flat, SAMPLES_PER_OBSERVATION, replace=False)
        if self.count < MAX_SAMPLES:
            self.kept.append(flat)
            self.count += flat.size

    def values(self) -> np.ndarray:
        return np.concatenate(self.kept)

    def span(self) -> float:
        """The width of the range widened to contain 0 (NaN when a value was NaN)."""
        return max(self.high, 0.0) - min(self.low, 0.0) if np.isfinite(
            [self.low, self.high]).all() else math.nan


class Calibrator:
    """Collects statistics of named float tensors over calibration runs."""

    def __init__(self, names: Iterable[str], seed: int = 0) -> None:
        self._observers = {name: _Observer() for name in names}
        self._rng = np.random.default_rng(seed)
        self.runs = 0

    def observe(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Record one run's values of every watched tensor present in `tensors`."""
        for name, observer in self._observers.items():
            if name in tensors:
                observer.add(np.asarray(tensors[name]), self._rng)
        self.runs += 1

    def ranges(self, method: Method | str = Method.MINMAX,
               percentile: float = DEFAULT_PERCENTILE) -> dict[str, Range]:
        """The chosen range of every observed tensor."""
        if self.runs == 0:
            raise CalibrationError("no calibration data was observed",
                               "pass at least one calibration sample")
        method = Method.parse(method)
        overflowed = [name for name, observer in self._observers.items()
                      if observer.kept and not observer.span() <= FLOAT32_MAX]
        if overflowed:
            raise CalibrationError(
                f"tensor '{overflowed[0]}' reached NaN, infinity or a range wider than float32 "
                f"during calibration ({len(overflowed)} tensor(s) did): the float model "
                "overflows float32", "check the model's weights and the calibration data's scale")
        return {name: _choose(observer, method, percentile)
                for name, observer in self._observers.items() if observer.kept}


def _choose(observer: _Observer, method: Method, percentile: float) -> Range:
    full = Range.including_zero(observer.low, observer.high)
    if method is Method.MINMAX:
        return full
    values = observer.values()
    if method is Method.PERCENTILE:
        low, high = np.percentile(values, [100.0 - percentile, percentile])
        return Range.including_zero(low, high)
    return mse_range(values, full)


def mse_range(values: np.ndarray, full: Range) -> Range:
    """The range, shrunk from `full`, whose int8 affine quantisation of `values` errs least.

    Candidates scale both ends by factors in (0, 1]; each is scored by the mean squared error of
    quantising and dequantising the values (clipping included) on its 256-level grid.
    """
    best, best_error = full, np.inf
    for factor in np.linspace(1.0, 1.0 / _MSE_STEPS, _MSE_STEPS):
        candidate = Range(full.low * factor, full.high * factor)
        scale = (candidate.high - candidate.low) / 255.0
        if scale <= 0.0:
            break
        zero = np.round(-128.0 - candidate.low / scale)
        codes = np.clip(np.round(values / scale) + zero, -128, 127)
        error = float(np.mean(((codes - zero) * scale - values) ** 2))
        if error < best_error:
            best, best_error = candidate, error
    return best
