"""Fitted instructions per work term of each C kernel on each core, and a step's instructions."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from mcuflow.hw.kernels import KERNELS
from mcuflow.hw.work import Work
from mcuflow.ir.graph import Graph, Operator

COSTS_FILE = "kernel_costs.toml"


@dataclass(frozen=True)
class CoreCosts:
    """The coefficients fitted for one core: per kernel function, instructions per work term.

    `source` says what they were fitted to and `date` when (bench/costmodel.py --fit --write).
    """

    core: str
    source: str
    date: str
    kernels: dict[str, Work]


def parse_costs(text: str, where: str = COSTS_FILE) -> dict[str, CoreCosts]:
    """The [cores.<core>] tables of a kernel-cost file; ValueError names a malformed entry."""
    data = tomllib.loads(text)
    costs = {}
    for core, table in data.get("cores", {}).items():
        kernels = {}
        for function, terms in table.get("kernels", {}).items():
            unknown = sorted(set(terms) - set(Work.names()))
            if unknown:
                raise ValueError(f"{where}: {core} {function}: unknown work term {unknown[0]}")
            kernels[function] = Work(**{name: float(value) for name, value in terms.items()})
        costs[core] = CoreCosts(core, str(table["source"]), str(table["date"]), kernels)
    return costs


@cache
def kernel_costs() -> dict[str, CoreCosts]:
    """The packaged coefficients per core name ('cortex-m4'...), read once."""
    text = resources.files("mcuflow.hw").joinpath(COSTS_FILE).read_text("utf-8")
    return parse_costs(text)


def step_instructions(graph: Graph, op: Operator, functions: Sequence[str], core: str
                      ) -> float | None:
    """Instructions of one step of `op` calling kernel `functions` on `core`.

    The sum over its kernels of their work terms (Kernel.work) times the core's coefficients;
    None when the core has no fitted coefficients, or one of the kernels has none.
    """
    fitted = kernel_costs().get(core)
    if fitted is None or any(name not in fitted.kernels for name in functions):
        return None
    return sum(KERNELS[name].work(graph, op).dot(fitted.kernels[name]) for name in functions)
