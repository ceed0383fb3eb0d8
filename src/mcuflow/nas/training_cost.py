"""The predicted time of a training step on one CPU thread, fitted per layer, MAC and element."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, fields
from importlib import resources

from mcuflow.nas.space import Work

COSTS_FILE = "training_cost.toml"
"""The fitted coefficients (bench/training_cost.py --fit --write), a table per layout, and
the reference's measured share."""
LAYOUTS = {2: "images", 1: "series"}
"""The table of each space's dims."""


@dataclass(frozen=True)
class StepCost:
    """Milliseconds a training step (forward, backward, Adam) of a batch takes, in parts.

    Per step, per layer (its calls and parameters), per sample's dense and depthwise MAC and
    per sample's layer output element (batch norms and activations read and write them).
    """

    per_step: float
    per_layer: float
    per_dense_mac: float
    per_depthwise_mac: float
    per_element: float

    def ms(self, work: Work, batch: int) -> float:
        """Predicted milliseconds of a step of `batch` samples of `work`."""
        return (self.per_step + self.per_layer * work.layers
                + batch * (self.per_dense_mac * work.dense_macs
                           + self.per_depthwise_mac * work.depthwise_macs
                           + self.per_element * work.elements))


@functools.cache
def _tables() -> dict[str, dict[str, float]]:
    """COSTS_FILE's tables, read once."""
    return tomllib.loads(resources.files("mcuflow.nas").joinpath(COSTS_FILE).read_text())


@functools.cache
def step_costs() -> dict[int, StepCost]:
    """The fitted StepCost of each dims (2: images, 1: series)."""
    tables = _tables()
    names = [field.name for field in fields(StepCost)]
    return {dims: StepCost(**{name: float(tables[layout][name]) for name in names})
            for dims, layout in LAYOUTS.items()}


@functools.cache
def reference_share() -> float:
    """Measured over predicted time of a step of the search's reference, on sklearn's digits.

    The model is fitted on data of dense values; digits' mostly blank pixels train faster on
    PyTorch's CPU kernels (about half the time), and the search's budget table was sized by
    the clock on digits.
    """
    return float(_tables()["reference"]["share"])


def step_ms(work: Work, dims: int, batch: int) -> float:
    """Predicted milliseconds of a training step of `batch` samples of `work` (dims 1 or 2)."""
    return step_costs()[dims].ms(work, batch)
