"""Duty-cycled energy: where the model lives while the board sleeps, average power, battery life."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcuflow.analysis.metrics import PlannedSteps, Report, analyze
from mcuflow.analysis.plots import new_figure, plain_log_scale, save_figure
from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board, SleepKind, SleepMode, TierKind
from mcuflow.hw.storage_io import lifetime_years
from mcuflow.ir.graph import Graph

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SECONDS_PER_DAY = 86_400.0
XIP, COPY, RETAINED, ALWAYS_ON = "xip", "copy", "retained", "always-on"
STRATEGIES = (XIP, COPY, RETAINED, ALWAYS_ON)
"""Where the model lives: read in place from flash at each wake; copied flash -> SRAM at each
wake; kept in SRAM retained while sleeping; or the board never sleeps (idles between runs)."""


# --- batteries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Battery:
    """A battery: capacity (mAh) at a nominal voltage; its energy is mAh x V x 3.6 joules."""

    name: str
    capacity_mah: float
    voltage_v: float
    source: str

    @property
    def energy_j(self) -> float:
        """Stored energy in joules (1 mAh x 1 V = 3.6 J)."""
        return self.capacity_mah * self.voltage_v * 3.6


BATTERIES = {
    "CR2032": Battery("CR2032", 225.0, 3.0, "typical coin-cell rating: 225 mAh at 3.0 V nominal"),
    "2xAA": Battery("2xAA", 2500.0, 3.0, "two alkaline AA cells in series: ~2500 mAh at 3.0 V"),
    "LIPO-500": Battery("LIPO-500", 500.0, 3.7, "single-cell LiPo: 500 mAh at 3.7 V nominal"),
}
BATTERY_HINT = "use CR2032, 2xAA, LIPO-500, or capacity@voltage such as 1000@3.7 (mAh@V)"
_CUSTOM = re.compile(r"^\s*([0-9.eE+-]+)\s*(?:mah)?\s*@\s*([0-9.eE+-]+)\s*v?\s*$", re.I)


def parse_battery(text: str) -> Battery:
    """A battery by name (any case) or as 'MAH@V'; McuflowError for anything else."""
    for name, battery in BATTERIES.items():
        if text.strip().casefold() == name.casefold():
            return battery
    match = _CUSTOM.match(text)
    mah, volts = (_number(group) for group in match.groups()) if match else (0.0, 0.0)
    if not (0 < mah < 1e9 and 0 < volts < 1e3):
        raise McuflowError(f"bad --battery '{text[:60]}': not a known battery nor a positive "
                           "capacity@voltage", BATTERY_HINT)
    return Battery(f"{mah:g} mAh @ {volts:g} V", mah, volts, "given on the command line")


def _number(text: str) -> float:
    """`text` as a finite number, else 0 (which the caller refuses)."""
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) else 0.0


# --- the cost of one wake -------------------------------------------------------------------


@dataclass(frozen=True)
class Inference:
    """One inference with the weights in one tier: latency (s) and energy (uJ) of the analysis."""

    weights_tier: str
    latency_s: float
    energy_uj: float
    fits: bool

    @property
    def power_mw(self) -> float:
        """Mean power while the model runs."""
        return self.energy_uj * 1e-3 / self.latency_s if self.latency_s > 0 else 0.0


def inference(report: Report) -> Inference:
    """The analysis' latency and energy (compute at active power + every tier's bytes moved).

    The latency is the modelled one: an out-of-core plan's waits for external storage
    included.
    """
    return Inference(report.weights_tier, report.modelled_ms * 1e-3,
                     report.energy_mj_estimate * 1e3, report.fits)


def weights_in_sram(graph: Graph, board: Board, report: Report, order: Sequence[int],
                    planned: PlannedSteps | None) -> Report:
    """`report` re-analysed with the constants read from SRAM (same order, plan and kernels)."""
    kernels = [layer.kernels or None for layer in report.layers]
    peak = report.peak_ram_bytes if report.peak_from_planner else None
    return analyze(graph, board, order=list(order), peak_ram_bytes=peak,
                   weights_tier=TierKind.SRAM, planned=planned, kernels=kernels,
                   flash=report.flash_estimate)


@dataclass(frozen=True)
class Candidate:
    """One strategy in one sleep mode: per wake, the active time (s) and energy (uJ).

    Woken `rate` times a second, it averages
        P(rate) = P_sleep + rate x (E_active - P_sleep x t_active)
    a line in the rate, valid while the period 1/rate is at least t_active.
    """

    strategy: str
    mode: SleepMode
    sleep_mw: float
    wake_s: float
    wake_uj: float
    copy_s: float
    copy_uj: float
    run: Inference

    @property
    def active_s(self) -> float:
        """Time awake per wake: wake-up, copy and inference."""
        return self.wake_s + self.copy_s + self.run.latency_s

    @property
    def active_uj(self) -> float:
        """Energy per wake: wake-up, copy and inference."""
        return self.wake_uj + self.copy_uj + self.run.energy_uj

    @property
    def slope_uj(self) -> float:
        """Extra energy of one more wake per unit time: E_active - P_sleep x t_active."""
        return self.active_uj - self.sleep_mw * 1e3 * self.active_s

    @property
    def max_rate_hz(self) -> float:
        """The highest rate it can keep up with (awake all the time)."""
        return 1.0 / self.active_s

    def power_mw(self, rate_hz: float) -> float:
        """Average power woken `rate_hz` times a second."""
        return self.sleep_mw + rate_hz * self.slope_uj * 1e-3


def _wake(board: Board, mode: SleepMode) -> tuple[float, float]:
    """Wake-up time (s) and energy (uJ): the mode's wake-up time at the board's active power."""
    return mode.wakeup_s, mode.wakeup_s * board.active_power_mw * 1e3


def _copy(board: Board, weights_tier: str, nbytes: int) -> tuple[float, float]:
    """Time (s) and energy (uJ) to copy `nbytes` from the weights tier into SRAM.

    Time: bytes / read bandwidth + bytes / SRAM write bandwidth; energy: that time at active
    power + bytes x (read energy per byte + SRAM write energy per byte).
    """
    source, sram = board.tier(TierKind(weights_tier)), board.tier(TierKind.SRAM)
    seconds = nbytes / source.read_bandwidth + nbytes / sram.write_bandwidth
    moved_nj = nbytes * (source.read_energy_nj_per_byte + sram.write_energy_nj_per_byte)
    return seconds, seconds * board.active_power_mw * 1e3 + moved_nj * 1e-3


def _candidate(board: Board, strategy: str, mode: SleepMode, run: Inference,
               copy_bytes: int = 0, weights_tier: str = "") -> Candidate:
    sleep_mw = mode.current_ua * 1e-3 * board.supply_voltage_v
    wake_s, wake_uj = (0.0, 0.0) if mode.kind is SleepKind.IDLE else _wake(board, mode)
    copy_s, copy_uj = _copy(board, weights_tier, copy_bytes) if copy_bytes else (0.0, 0.0)
    return Candidate(strategy, mode, sleep_mw, wake_s, wake_uj, copy_s, copy_uj, run)


@dataclass(frozen=True)
class Options:
    """Every (strategy, sleep mode) pair that can hold the model, and why others cannot."""

    candidates: tuple[Candidate, ...]
    reasons: dict[str, str]


def options(board: Board, xip: Report, sram: Report) -> Options:
    """The candidates of each strategy on `board`, from the analysis in flash and in SRAM."""
    in_flash, in_sram = inference(xip), inference(sram)
    weights = xip.constant_bytes
    deep = [m for m in board.sleep_modes if m.kind is not SleepKind.IDLE]
    found: list[Candidate] = []
    reasons: dict[str, str] = {}
    if in_flash.fits:
        found += [_candidate(board, XIP, mode, in_flash) for mode in deep]
    else:
        reasons[XIP] = "the model does not fit the board (see mcuflow analyze)"
    if in_sram.fits:
        found += [_candidate(board, COPY, mode, in_sram, weights, xip.weights_tier)
                  for mode in deep]
        kept = [m for m in deep if m.retained_sram_bytes >= weights]
        found += [_candidate(board, RETAINED, mode, in_sram) for mode in kept]
        if not kept:
            reasons[RETAINED] = (f"no sleep mode keeps {weights:,} B of SRAM (the most: "
                                 f"{max(m.retained_sram_bytes for m in deep):,} B)")
    else:
        why = (f"weights ({weights:,} B) + arena ({sram.peak_ram_bytes:,} B) exceed the "
               f"{board.sram_bytes:,} B of SRAM")
        reasons[COPY] = reasons[RETAINED] = why
    always = in_sram if in_sram.fits else in_flash
    if always.fits:
        found.append(_candidate(board, ALWAYS_ON, board.idle_mode, always))
    else:
        reasons[ALWAYS_ON] = reasons[XIP]
    return Options(tuple(found), reasons)


# --- the budget at one rate, and where the best strategy changes -----------------------------


@dataclass(frozen=True)
class Strategy:
    """One strategy at the asked rate, in its best sleep mode (None fields when infeasible)."""

    name: str
    feasible: bool
    reason: str
    best: Candidate | None
    average_power_mw: float | None
    battery_life_days: float | None

    def to_json(self) -> dict[str, Any]:
        """The strategy's figures as plain JSON types (uJ, ms, mW, days)."""
        best = self.best
        data: dict[str, Any] = {"name": self.name, "feasible": self.feasible,
                                "reason": self.reason or None}
        data |= {
            "sleep_mode": best.mode.name if best else None,
            "weights_tier": best.run.weights_tier if best else None,
            "wake_time_ms": best.wake_s * 1e3 if best else None,
            "wake_energy_uj": best.wake_uj if best else None,
            "copy_time_ms": best.copy_s * 1e3 if best else None,
            "copy_energy_uj": best.copy_uj if best else None,
            "latency_ms": best.run.latency_s * 1e3 if best else None,
            "energy_per_inference_uj": best.run.energy_uj if best else None,
            "energy_per_wake_uj": best.active_uj if best else None,
            "sleep_power_mw": best.sleep_mw if best else None,
            "average_power_mw": self.average_power_mw,
            "battery_life_days": self.battery_life_days,
        }
        return data


@dataclass(frozen=True)
class Crossover:
    """A rate where the best strategy changes: equal average powers, or the slower one's limit."""

    rate_hz: float
    below: Candidate
    above: Candidate
    power_mw: float
    equal_power: bool

    def to_json(self) -> dict[str, Any]:
        """The crossover as plain JSON types."""
        return {"rate_hz": self.rate_hz, "events_per_hour": self.rate_hz * 3600.0,
                "period_s": 1.0 / self.rate_hz, "below": self.below.strategy,
                "below_mode": self.below.mode.name, "above": self.above.strategy,
                "above_mode": self.above.mode.name, "average_power_mw": self.power_mw,
                "equal_power": self.equal_power}


def best_at(candidates: Sequence[Candidate], rate_hz: float) -> Candidate | None:
    """The candidate of least average power that keeps up with `rate_hz` (None: none does)."""
    able = [c for c in candidates if rate_hz <= c.max_rate_hz]
    return min(able, key=lambda c: c.power_mw(rate_hz), default=None)


def life_days(battery: Battery, power_mw: float) -> float:
    """Days the battery lasts at `power_mw`: energy (J) / power (W) / 86,400."""
    return battery.energy_j / (power_mw * 1e-3) / SECONDS_PER_DAY


def strategies(found: Options, rate_hz: float, battery: Battery) -> list[Strategy]:
    """Each strategy in its best sleep mode at `rate_hz`, feasible or with the reason why not."""
    result = []
    for name in STRATEGIES:
        own = [c for c in found.candidates if c.strategy == name]
        best = best_at(own, rate_hz)
        if best is None:
            reason = found.reasons.get(name) or (
                f"one wake takes {min(c.active_s for c in own) * 1e3:.3g} ms, longer than the "
                f"period of {1e3 / rate_hz:.3g} ms")
            result.append(Strategy(name, False, reason, None, None, None))
            continue
        power = best.power_mw(rate_hz)
        result.append(Strategy(name, True, "", best, power, life_days(battery, power)))
    return result


def crossovers(candidates: Sequence[Candidate]) -> list[Crossover]:
    """Every rate at which the best strategy changes, from 0 to the fastest one's limit.

    Each candidate's power is a line in the rate, so the best changes only where two lines
    cross, r = (P_sleep,a - P_sleep,b) / (slope_b - slope_a), or where a candidate's period
    limit ends it; between two such points the best is the same throughout.
    """
    points = sorted({r for r in _breakpoints(candidates) if r > 0 and math.isfinite(r)})
    found: list[Crossover] = []
    edges = [0.0, *points]
    for low, high in zip(edges, points, strict=False):
        below = best_at(candidates, (low + high) / 2)
        nxt = _next_point(points, high)
        above = best_at(candidates, (high + nxt) / 2 if nxt else high * 1.0000001)
        if below and above and below.strategy != above.strategy:
            equal = high <= below.max_rate_hz * (1 - 1e-12)
            found.append(Crossover(high, below, above, above.power_mw(high), equal))
    return found


def _breakpoints(candidates: Sequence[Candidate]) -> list[float]:
    limits = [c.max_rate_hz for c in candidates]
    crossings = [(a.sleep_mw - b.sleep_mw) / ((b.slope_uj - a.slope_uj) * 1e-3)
                 for i, a in enumerate(candidates) for b in candidates[i + 1:]
                 if b.slope_uj != a.slope_uj]
    return limits + crossings


def _next_point(points: list[float], point: float) -> float | None:
    later = [p for p in points if p > point]
    return later[0] if later else None


# --- the whole answer -----------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyReport:
    """A model on a board woken `rate_hz` times a second, powered by `battery`."""

    model: str
    board: Board
    battery: Battery
    rate_hz: float
    run: Inference
    options: Options
    strategies: tuple[Strategy, ...]
    crossovers: tuple[Crossover, ...]
    storage_lifetime_years: float | None = None
    """Years until the tier spilled activations are written to wears out at `rate_hz` (None:
    nothing spilled, or no endurance figure)."""

    @property
    def best(self) -> Strategy | None:
        """The feasible strategy of least average power at the rate."""
        feasible = [s for s in self.strategies if s.feasible]
        return min(feasible, key=lambda s: s.average_power_mw or 0.0, default=None)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON types (see `mcuflow energy --help`)."""
        best = self.best
        return {
            "model": self.model, "board": self.board.id, "battery": self.battery.name,
            "battery_capacity_mah": self.battery.capacity_mah,
            "battery_voltage_v": self.battery.voltage_v, "battery_energy_j": self.battery.energy_j,
            "rate_hz": self.rate_hz, "period_s": 1.0 / self.rate_hz,
            "events_per_hour": self.rate_hz * 3600.0,
            "latency_ms": self.run.latency_s * 1e3,
            "energy_per_inference_uj": self.run.energy_uj,
            "inference_power_mw": self.run.power_mw,
            "best_strategy": best.name if best else None,
            "average_power_mw": best.average_power_mw if best else None,
            "battery_life_days": best.battery_life_days if best else None,
            "sleep_modes": [_mode_json(self.board, m) for m in self.board.sleep_modes],
            "strategies": [s.to_json() for s in self.strategies],
            "crossovers": [c.to_json() for c in self.crossovers],
            "storage_lifetime_years": self.storage_lifetime_years,
        }


def _mode_json(board: Board, mode: SleepMode) -> dict[str, Any]:
    return {**mode.to_json(), "power_mw": mode.current_ua * 1e-3 * board.supply_voltage_v}


def energy_report(board: Board, xip: Report, sram: Report, rate_hz: float,
                  battery: Battery) -> EnergyReport:
    """The duty-cycle budget of the analysed model (`xip`, and `sram` with weights in SRAM)."""
    run = inference(xip)
    check_rate(rate_hz, run.latency_s)
    found = options(board, xip, sram)
    wear = (lifetime_years(board.tier(TierKind(xip.spill_tier)), xip.spill_bytes,
                           rate_hz * 3600.0, xip.spill_slots) if xip.spill_tier else None)
    return EnergyReport(xip.model, board, battery, rate_hz, run, found,
                        tuple(strategies(found, rate_hz, battery)),
                        tuple(crossovers(found.candidates)), wear)


def check_rate(rate_hz: float, latency_s: float) -> None:
    """McuflowError unless the period is positive and at least one inference long."""
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise McuflowError("the inference rate must be positive and finite",
                           "give --period SECONDS > 0 or --events-per-hour N > 0")
    if 1.0 / rate_hz < latency_s:
        raise McuflowError(f"a period of {1e3 / rate_hz:.4g} ms is shorter than one inference "
                           f"({latency_s * 1e3:.4g} ms)",
                           f"use --period {latency_s:.3g} or longer")


# --- the plot -------------------------------------------------------------------------------


def life_figure(report: EnergyReport, points: int = 200) -> Figure:
    """Battery life (days) of each strategy against inferences per hour, log-log, crossovers."""
    figure = new_figure(7.0, 4.5)
    axes = figure.add_subplot()
    fastest = max((c.max_rate_hz for c in report.options.candidates), default=1.0)
    low = min(1.0 / 86_400, report.rate_hz / 10)
    rates = [low * (fastest / low) ** (i / (points - 1)) for i in range(points)]
    for name in STRATEGIES:
        own = [c for c in report.options.candidates if c.strategy == name]
        shown = [(r, best_at(own, r)) for r in rates]
        xs = [r * 3600 for r, best in shown if best]
        ys = [life_days(report.battery, best.power_mw(r)) for r, best in shown if best]
        if xs:
            axes.plot(xs, ys, label=name)
    for cross in report.crossovers:
        axes.axvline(cross.rate_hz * 3600, color="grey", linestyle=":", linewidth=1)
        axes.plot([cross.rate_hz * 3600], [life_days(report.battery, cross.power_mw)], "ko",
                  markersize=4)
    axes.axvline(report.rate_hz * 3600, color="black", linestyle="--", linewidth=1,
                 label="asked rate")
    plain_log_scale(axes, "x")
    plain_log_scale(axes, "y")
    axes.set_xlabel("inferences per hour")
    axes.set_ylabel(f"battery life, days ({report.battery.name})")
    axes.set_title(f"{report.model} on {report.board.name}: crossovers dotted")
    axes.legend(fontsize="small")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    return figure


def plot_life(report: EnergyReport, path: Path) -> None:
    """Write life_figure(report) at `path`, in the format its suffix names."""
    save_figure(life_figure(report), path)
