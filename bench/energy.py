"""Energy benchmark (issue 15): modelled power against MLPerf Tiny's, battery life duty-cycled.

1. MLPerf Tiny comparison on the NUCLEO-L4R5ZI: the power the model draws during inference
   (energy per inference / latency, from the calibrated latency, the board's DS12023 run
   current and the per-tier energies per byte of boards.toml) against MLPerf Tiny v1.3's
   measured 32.9-33.7 mW on that board; for the KWS model, the v0.5 TFLM reference figures
   (181.9 ms, 7,373.7 uJ, so 40.5 mW) as context. Goal: within +-20 %.
2. Normally-off vs always-on: for each shared int8 model on three boards and three rates, the
   best place for the model while sleeping (xip, copy, retained, always-on), its average power
   and the battery life on a CR2032, always-on's life beside it, and the crossover rates.

Every modelled figure comes from mcuflow's model and board database in this run; the only
numbers typed in are the published peer measurements.

Run: .venv/bin/python bench/energy.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from mcuflow import api
from mcuflow.analysis.energy import (
    ALWAYS_ON,
    EnergyReport,
    Inference,
    energy_report,
    inference,
    parse_battery,
    weights_in_sram,
)
from mcuflow.analysis.metrics import Report
from mcuflow.errors import McuflowError
from mcuflow.planning import Analysis, planned_steps

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
MLPERF_BOARD = "nucleo-l4r5zi"
BOARDS = ("nucleo-l4r5zi", "nucleo-f767zi", "nrf52840")
RATES = {"1/h": 1 / 3600, "1/min": 1 / 60, "1/s": 1.0}
BATTERY = "CR2032"
# Published peer measurements (MLPerf Tiny results on the NUCLEO-L4R5ZI):
V13_MW = (32.9, 33.7)
"""MLPerf Tiny v1.3 energy results: power during inference on the NUCLEO-L4R5ZI."""
V05_KWS_MS, V05_KWS_UJ = 181.9, 7_373.7
"""MLPerf Tiny v0.5 TFLM reference submission, kws on the NUCLEO-L4R5ZI."""
TOLERANCE = 0.20


@dataclass
class Model:
    name: str
    path: Path


def models() -> list[Model]:
    found = [Model(p.stem, p) for p in sorted(MODELS.glob("*.tflite"))]
    found.append(Model("demo_kws (bundled)", api.demo_model_path()))
    return found


def analysed(model: Model, board: str) -> tuple[Analysis, Report] | None:
    """The model analysed on `board` and re-analysed with its weights in SRAM; None if refused."""
    try:
        analysis = api.analyze_model(model.path, board)
    except McuflowError as error:
        print(f"  skip {model.name} on {board}: {error}", file=sys.stderr)
        return None
    sram = weights_in_sram(analysis.plan.graph, analysis.board, analysis.report,
                           analysis.plan.order, planned_steps(analysis.plan))
    return analysis, sram


def mlperf_rows(cache: dict[tuple[str, str], tuple[Analysis, Report] | None]) -> list[dict]:
    low, high = V13_MW
    mid = (low + high) / 2
    rows = []
    for (name, board), found in cache.items():
        if board != MLPERF_BOARD or found is None:
            continue
        run: Inference = inference(found[0].report)
        power = run.power_mw
        rows.append({
            "model": name, "latency_ms": run.latency_s * 1e3, "energy_uj": run.energy_uj,
            "power_mw": power, "active_mw": found[0].board.active_power_mw,
            "ratio_mid": power / mid, "ratio_low": power / low, "ratio_high": power / high,
            "within_range_20pct": (1 - TOLERANCE) * low <= power <= (1 + TOLERANCE) * high,
            "within_mid_20pct": abs(power / mid - 1) <= TOLERANCE,
        })
    return rows


def print_mlperf(rows: list[dict]) -> None:
    low, high = V13_MW
    print(f"1. Power during inference on {MLPERF_BOARD}: modelled vs MLPerf Tiny v1.3 measured "
          f"{low}-{high} mW (midpoint {(low + high) / 2:.1f} mW)")
    if rows:
        print(f"   board active power (boards.toml, DS12023 run current x supply): "
              f"{rows[0]['active_mw']:.2f} mW; the rest is memory traffic at nJ/byte")
    head = (f"   {'model':<26}{'latency ms':>11}{'energy uJ':>11}{'power mW':>10}"
            f"{'/mid':>7}{'/low':>7}{'/high':>7}  {'+-20% of range':<15}{'+-20% of mid'}")
    print(head)
    for r in rows:
        print(f"   {r['model']:<26}{r['latency_ms']:>11.2f}{r['energy_uj']:>11.1f}"
              f"{r['power_mw']:>10.2f}{r['ratio_mid']:>7.3f}{r['ratio_low']:>7.3f}"
              f"{r['ratio_high']:>7.3f}  {_yes(r['within_range_20pct']):<15}"
              f"{_yes(r['within_mid_20pct'])}")
    kws = [r for r in rows if r["model"].startswith("kws")]
    v05_mw = V05_KWS_UJ / V05_KWS_MS
    print(f"   context, v0.5 TFLM reference kws: {V05_KWS_MS} ms, {V05_KWS_UJ:,} uJ = "
          f"{v05_mw:.1f} mW (reference kernels, slower than the DSP kernels modelled here)")
    for r in kws:
        print(f"   {r['model']}: modelled power / v0.5 power = {r['power_mw'] / v05_mw:.3f} "
              f"({_yes(abs(r['power_mw'] / v05_mw - 1) <= TOLERANCE)} within +-20 %); "
              f"latency {r['latency_ms']:.1f} ms vs {V05_KWS_MS} ms, energy "
              f"{r['energy_uj']:,.1f} uJ vs {V05_KWS_UJ:,} uJ")


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def duty_rows(cache: dict[tuple[str, str], tuple[Analysis, Report] | None]) -> list[dict]:
    battery = parse_battery(BATTERY)
    rows = []
    for (name, board), found in cache.items():
        if found is None:
            continue
        analysis, sram = found
        for label, rate in RATES.items():
            try:
                report = energy_report(analysis.board, analysis.report, sram, rate, battery)
            except McuflowError as error:
                rows.append({"model": name, "board": board, "rate": label, "error": str(error)})
                continue
            rows.append(_duty_row(name, board, label, report))
    return rows


def _duty_row(name: str, board: str, label: str, report: EnergyReport) -> dict:
    best = report.best
    always = next(s for s in report.strategies if s.name == ALWAYS_ON)
    return {
        "model": name, "board": board, "rate": label,
        "best": best.name if best else None,
        "mode": best.best.mode.name if best and best.best else None,
        "average_power_mw": best.average_power_mw if best else None,
        "life_days": best.battery_life_days if best else None,
        "always_on_days": always.battery_life_days,
        "crossovers": [f"{c.below.strategy}->{c.above.strategy} @ {c.rate_hz * 3600:,.4g}/h"
                       for c in report.crossovers],
    }


def print_duty(rows: list[dict]) -> None:
    print(f"\n2. Normally-off vs always-on, battery {BATTERY} "
          f"({parse_battery(BATTERY).energy_j:,.0f} J), self-discharge ignored")
    print(f"   {'model':<24}{'board':<15}{'rate':<7}{'best':<10}{'avg mW':>10}"
          f"{'life days':>11}{'always-on d':>12}  sleep mode")
    for r in rows:
        if "error" in r:
            print(f"   {r['model']:<24}{r['board']:<15}{r['rate']:<7}{r['error']}")
            continue
        best = r["best"] or "none fits"
        power = f"{r['average_power_mw']:.4g}" if r["average_power_mw"] is not None else "-"
        life = f"{r['life_days']:,.1f}" if r["life_days"] is not None else "-"
        always = f"{r['always_on_days']:,.2f}" if r["always_on_days"] is not None else "-"
        print(f"   {r['model']:<24}{r['board']:<15}{r['rate']:<7}{best:<10}{power:>10}"
              f"{life:>11}{always:>12}  {r['mode'] or ''}")
    print("\n   crossovers (inferences per hour where the best strategy changes):")
    seen = set()
    for r in rows:
        key = (r["model"], r["board"])
        if "error" in r or key in seen:
            continue
        seen.add(key)
        print(f"   {r['model']:<24}{r['board']:<15}{'; '.join(r['crossovers']) or 'none'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args()
    cache = {}
    for model in models():
        for board in BOARDS:
            print(f"{model.name} on {board} ...", file=sys.stderr, flush=True)
            cache[(model.name, board)] = analysed(model, board)
    mlperf, duty = mlperf_rows(cache), duty_rows(cache)
    if args.json:
        print(json.dumps({"mlperf": mlperf, "duty_cycle": duty}, indent=2))
        return 0
    print_mlperf(mlperf)
    print_duty(duty)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
