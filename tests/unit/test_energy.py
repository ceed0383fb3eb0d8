"""mcuflow energy: duty-cycled power and battery life, checked against hand arithmetic."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mcuflow import api
from mcuflow.analysis.energy import (
    ALWAYS_ON,
    COPY,
    RETAINED,
    XIP,
    EnergyReport,
    Strategy,
    best_at,
    energy_report,
    life_days,
    parse_battery,
    weights_in_sram,
)
from mcuflow.analysis.metrics import Report
from mcuflow.cli import main
from mcuflow.errors import BoardError, McuflowError
from mcuflow.hw.board import SleepKind, TierKind, get_board, load_boards
from mcuflow.planning import planned_steps
from tests.support import run_cli
from tests.unit.test_boards import board_toml

L4R5 = "nucleo-l4r5zi"
# DS12023 (STM32L4R5) figures the board database holds, at VDD = 3.0 V:
RUN_UA_PER_MHZ, MHZ, VOLTS = 110.0, 120.0, 3.0
ACTIVE_MW = RUN_UA_PER_MHZ * MHZ / 1000.0 * VOLTS  # 39.6 mW
STOP2_MW = 2.8e-3 * VOLTS  # 2.8 uA Stop 2 with RTC
STANDBY_MW = 0.42e-3 * VOLTS  # 420 nA Standby with RTC
STANDBY_WAKE_S = 0.5e-3  # estimate in boards.toml: reset and start-up
STOP2_WAKE_S = 45e-6
IDLE_MW = 3500e-3 * VOLTS  # Sleep (WFI) estimate
# Hand-set inference figures (replacing the analysis' own, so every number here is checkable):
LATENCY_S, XIP_UJ, SRAM_UJ, WEIGHTS = 10e-3, 500.0, 480.0, 20_000
CR2032_J = 225 * 3.0 * 3.6  # 2430 J


@pytest.fixture(scope="module")
def reports() -> tuple[Report, Report]:
    """The demo model on the L4R5, its figures replaced by round hand-set numbers."""
    analysis = api.analyze_model(api.demo_model_path(), L4R5)
    sram = weights_in_sram(analysis.plan.graph, analysis.board, analysis.report,
                           analysis.plan.order, planned_steps(analysis.plan))
    assert analysis.report.modelled_ms == analysis.report.latency_ms_estimate  # all on chip
    xip = replace(analysis.report, latency_ms_estimate=LATENCY_S * 1e3,
                  modelled_ms=LATENCY_S * 1e3, energy_mj_estimate=XIP_UJ * 1e-3,
                  constant_bytes=WEIGHTS)
    sram = replace(sram, latency_ms_estimate=LATENCY_S * 1e3, modelled_ms=LATENCY_S * 1e3,
                   energy_mj_estimate=SRAM_UJ * 1e-3, constant_bytes=WEIGHTS)
    return xip, sram


def strategy(report: EnergyReport, name: str) -> Strategy:
    return next(s for s in report.strategies if s.name == name)


def test_batteries() -> None:
    assert parse_battery("CR2032").energy_j == pytest.approx(CR2032_J)
    assert parse_battery("2xaa").energy_j == pytest.approx(2500 * 3.0 * 3.6)
    assert parse_battery("LIPO-500").energy_j == pytest.approx(500 * 3.7 * 3.6)
    assert parse_battery("1000@3.7").energy_j == pytest.approx(13_320.0)
    assert parse_battery(" 1000mAh @ 3.7V ").capacity_mah == 1000
    for bad in ("AAA", "1000", "@3", "0@3", "-5@3", "1000@nan", "1e400@3", "1000@3@3", ""):
        with pytest.raises(McuflowError):
            parse_battery(bad)


def test_l4r5_power_comes_from_the_datasheet() -> None:
    board = get_board(L4R5)
    assert board.active_power_mw == pytest.approx(ACTIVE_MW)
    assert "DS12023" in board.power_source
    modes = {mode.name: mode for mode in board.sleep_modes}
    stop2 = modes["Stop 2 with RTC (all SRAM kept)"]
    assert stop2.current_ua == 2.8 and stop2.retained_sram_bytes == board.sram_total_bytes
    assert "DS12023" in stop2.source
    standby = modes["Standby with RTC (SRAM lost)"]
    assert standby.current_ua == 0.42 and standby.retained_sram_bytes == 0


@pytest.mark.parametrize("board_id", sorted(load_boards()))
def test_every_board_has_an_idle_and_a_deep_mode_with_sources(board_id: str) -> None:
    board = get_board(board_id)
    kinds = [mode.kind for mode in board.sleep_modes]
    assert kinds.count(SleepKind.IDLE) == 1 and len(kinds) >= 2
    for mode in board.sleep_modes:
        assert mode.source.strip() and mode.current_ua > 0 and mode.wakeup_s >= 0
        assert mode.retained_sram_bytes <= board.sram_total_bytes


def test_xip_copy_retained_always_on_by_hand(reports: tuple[Report, Report]) -> None:
    xip, sram = reports
    rate = 1 / 60
    report = energy_report(get_board(L4R5), xip, sram, rate, parse_battery("CR2032"))
    # xip sleeps in Standby (SRAM lost): per wake, wake-up at active power + the inference.
    wake_uj = STANDBY_WAKE_S * ACTIVE_MW * 1e3
    active_s, active_uj = STANDBY_WAKE_S + LATENCY_S, wake_uj + XIP_UJ
    xip_mw = STANDBY_MW + rate * (active_uj * 1e-3 - STANDBY_MW * active_s)
    got = strategy(report, XIP)
    assert got.best.mode.name == "Standby with RTC (SRAM lost)"
    assert got.average_power_mw == pytest.approx(xip_mw)
    assert got.battery_life_days == pytest.approx(CR2032_J / (xip_mw * 1e-3) / 86_400)
    # copy: 20,000 B read from flash and written to SRAM at every wake (bandwidths and
    # incremental energies per byte from boards.toml), then the inference from SRAM.
    board = get_board(L4R5)
    flash, ram = board.tier(TierKind.ONCHIP_FLASH), board.tier(TierKind.SRAM)
    copy_s = WEIGHTS / flash.read_bandwidth + WEIGHTS / ram.write_bandwidth
    copy_uj = (copy_s * ACTIVE_MW * 1e3
               + WEIGHTS * (flash.read_energy_nj_per_byte + ram.write_energy_nj_per_byte) * 1e-3)
    copy = strategy(report, COPY).best
    assert copy.copy_s == pytest.approx(copy_s) and copy.copy_uj == pytest.approx(copy_uj)
    copy_mw = STANDBY_MW + rate * ((wake_uj + copy_uj + SRAM_UJ) * 1e-3
                                   - STANDBY_MW * (STANDBY_WAKE_S + copy_s + LATENCY_S))
    assert strategy(report, COPY).average_power_mw == pytest.approx(copy_mw)
    # always-on idles in Sleep (WFI) and never wakes from a deep mode.
    on_mw = IDLE_MW + rate * (SRAM_UJ * 1e-3 - IDLE_MW * LATENCY_S)
    assert strategy(report, ALWAYS_ON).average_power_mw == pytest.approx(on_mw)
    # The best strategy's figures are the report's.
    best = min((s for s in report.strategies if s.feasible), key=lambda s: s.average_power_mw)
    assert report.to_json()["average_power_mw"] == pytest.approx(best.average_power_mw)
    assert report.to_json()["best_strategy"] == best.name


def test_retained_in_stop2_against_xip_in_standby_crossover(
        reports: tuple[Report, Report]) -> None:
    xip, sram = reports
    report = energy_report(get_board(L4R5), xip, sram, 1.0, parse_battery("CR2032"))
    # Hand: P = P_sleep + r (E_wake + E_inference - P_sleep t_active); equal where
    # r = (P_stop2 - P_standby) / (slope_xip - slope_retained).
    xip_slope = (STANDBY_WAKE_S * ACTIVE_MW + XIP_UJ * 1e-3
                 - STANDBY_MW * (STANDBY_WAKE_S + LATENCY_S))
    kept_slope = STOP2_WAKE_S * ACTIVE_MW + SRAM_UJ * 1e-3 - STOP2_MW * (STOP2_WAKE_S + LATENCY_S)
    hand = (STOP2_MW - STANDBY_MW) / (xip_slope - kept_slope)
    candidates = report.options.candidates
    xip_standby = next(c for c in candidates if c.strategy == XIP
                       and c.mode.name.startswith("Standby with RTC (SRAM lost)"))
    kept_stop2 = next(c for c in candidates if c.strategy == RETAINED
                      and c.mode.name.startswith("Stop 2"))
    assert xip_standby.power_mw(hand) == pytest.approx(kept_stop2.power_mw(hand))
    assert xip_standby.power_mw(hand / 2) < kept_stop2.power_mw(hand / 2)
    assert xip_standby.power_mw(hand * 2) > kept_stop2.power_mw(hand * 2)


def test_crossovers_are_where_the_best_changes(reports: tuple[Report, Report]) -> None:
    xip, sram = reports
    report = energy_report(get_board(L4R5), xip, sram, 1.0, parse_battery("CR2032"))
    assert report.crossovers
    for cross in report.crossovers:
        if cross.equal_power:
            assert cross.below.power_mw(cross.rate_hz) == pytest.approx(
                cross.above.power_mw(cross.rate_hz), rel=1e-9)
        candidates = report.options.candidates
        assert best_at(candidates, cross.rate_hz * 0.999).strategy == cross.below.strategy
        assert best_at(candidates, cross.rate_hz * 1.001).strategy == cross.above.strategy
    # Always-on wins only at the fastest rates: it is the last strategy to take over.
    assert report.crossovers[-1].above.strategy == ALWAYS_ON


def test_what_does_not_fit_sram_cannot_be_copied_or_retained(
        reports: tuple[Report, Report]) -> None:
    xip, sram = reports
    report = energy_report(get_board(L4R5), xip, replace(sram, fits=False), 1 / 60,
                           parse_battery("CR2032"))
    for name in (COPY, RETAINED):
        assert not strategy(report, name).feasible
        assert "exceed" in strategy(report, name).reason
    assert strategy(report, XIP).feasible and strategy(report, ALWAYS_ON).feasible
    # Weights larger than every retention mode keeps: no retained strategy either.
    big = 10 * get_board(L4R5).sram_total_bytes
    report = energy_report(get_board(L4R5), replace(xip, constant_bytes=big),
                           replace(sram, constant_bytes=big), 1 / 60, parse_battery("CR2032"))
    assert not strategy(report, RETAINED).feasible
    assert "no sleep mode keeps" in strategy(report, RETAINED).reason


def test_a_period_shorter_than_one_inference_is_refused(reports: tuple[Report, Report]) -> None:
    xip, sram = reports
    with pytest.raises(McuflowError, match="shorter than one inference"):
        energy_report(get_board(L4R5), xip, sram, 1 / (LATENCY_S / 2), parse_battery("CR2032"))


def test_life_days() -> None:
    assert life_days(parse_battery("CR2032"), 1.0) == pytest.approx(2430 / 1e-3 / 86_400)


def test_board_file_sleep_modes(tmp_path: Path) -> None:
    mode = ('\n[[boards.my-board.sleep_modes]]\nname = "{name}"\nkind = "{kind}"\n'
            'current_ua = {ua}\nretained_sram = {kept}\nwakeup_s = 1e-5\nsource = "DS"\n')
    text = (board_toml() + mode.format(name="sleep", kind="idle", ua=900, kept='"all"')
            + mode.format(name="stop", kind="retention", ua=2, kept=32768))
    path = tmp_path / "b.toml"
    path.write_text(text)
    [board] = load_boards(path).values()
    assert [m.retained_sram_bytes for m in board.sleep_modes] == [131072, 32768]
    path.write_text(text.replace("32768", '"some"'))
    with pytest.raises(BoardError, match="retained_sram"):
        load_boards(path)
    path.write_text(text.replace('kind = "retention"', 'kind = "idle"'))
    with pytest.raises(BoardError, match="exactly one mode of kind 'idle'"):
        load_boards(path)
    # Without the list: an idle mode and the board's sleep_mode, both marked estimates.
    path.write_text(board_toml())
    [board] = load_boards(path).values()
    assert [m.kind for m in board.sleep_modes] == [SleepKind.IDLE, SleepKind.OFF]
    assert all("estimate" in m.source for m in board.sleep_modes)


def _json(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict[str, Any]:
    sys.argv = ["mcuflow", *args]
    try:
        main()
    except SystemExit as done:
        assert not done.code, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_cli_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = str(api.demo_model_path())
    plot = tmp_path / "life.svg"
    data = _json(capsys, ["energy", model, "-b", L4R5, "--events-per-hour", "60", "--battery",
                          "2xAA", "--json", "--plot", str(plot)])
    assert plot.read_text().lstrip().startswith("<?xml")
    for field in ("latency_ms", "energy_per_inference_uj", "average_power_mw",
                  "battery_life_days", "strategies", "crossovers", "sleep_modes"):
        assert field in data, field
    assert data["rate_hz"] == pytest.approx(60 / 3600)
    assert [s["name"] for s in data["strategies"]] == [XIP, COPY, RETAINED, ALWAYS_ON]
    feasible = [s for s in data["strategies"] if s["feasible"]]
    best = min(feasible, key=lambda s: s["average_power_mw"])
    assert data["best_strategy"] == best["name"]
    assert data["average_power_mw"] == best["average_power_mw"]
    assert data["battery_life_days"] == pytest.approx(
        2500 * 3.0 * 3.6 / (data["average_power_mw"] * 1e-3) / 86_400)
    xip = data["strategies"][0]
    assert xip["latency_ms"] == data["latency_ms"]
    assert xip["energy_per_inference_uj"] == data["energy_per_inference_uj"]
    assert data["inference_power_mw"] == pytest.approx(
        data["energy_per_inference_uj"] / data["latency_ms"])
    for cross in data["crossovers"]:
        assert cross["period_s"] == pytest.approx(1 / cross["rate_hz"])
    same = _json(capsys, ["energy", model, "-b", L4R5, "--period", "60", "--json",
                          "--battery", "2500@3"])
    assert same["average_power_mw"] == pytest.approx(data["average_power_mw"])
    assert same["battery_life_days"] == pytest.approx(data["battery_life_days"])


@pytest.mark.parametrize(("args", "message"), [
    ([], "give exactly one of --period and --events-per-hour"),
    (["--period", "1", "--events-per-hour", "3"], "give exactly one of"),
    (["--period", "0"], "--period must be a positive number"),
    (["--period", "-3"], "--period must be a positive number"),
    (["--events-per-hour", "nan"], "--events-per-hour must be a positive number"),
    (["--period", "1e-6"], "shorter than one inference"),
    (["--period", "60", "--battery", "AAA"], "bad --battery 'AAA'"),
    (["--period", "60", "--plot", "life.txt"], "unknown image format"),
])
def test_cli_bad_input(capsys: pytest.CaptureFixture[str], args: list[str],
                       message: str) -> None:
    code, err = run_cli(capsys, ["energy", str(api.demo_model_path()), "-b", L4R5, *args])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mcuflow: error: ") and "hint:" in err, err
    assert message in err
