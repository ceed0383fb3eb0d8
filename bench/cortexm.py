"""Cortex-M benchmark: instructions per inference on QEMU beside TFLM + CMSIS-NN; calibration.

Per model: our generated C built for the target (arm-none-eabi-gcc -O2) and run on QEMU with
`-icount shift=0` (method in mcuflow.toolchain.qemu), bit-exact checked, beside the peer figures
quoted in issue 5, which the mcuflow team measured with TFLM + CMSIS-NN on the same QEMU board
(they cannot be re-run from this repository). Also: flash and RAM of the linked ELF, MACs per
instruction and the time at the board's clock.

Run: .venv/bin/python bench/cortexm.py [--target cortex-m4] [--board ID] [--json] [MODEL ...]
     .venv/bin/python bench/cortexm.py --profile [--target T] [MODEL ...]  # per layer
     .venv/bin/python bench/cortexm.py --calibrate [--write]

--calibrate fits each core's cost-model coefficients (cycles per MAC, per element) to the
measured instructions x the core's cycles per instruction, minimising the worst relative error
over the shared models that fit the core's board; --write stores them in src/mcuflow/hw/boards.toml.
Goal (issue 5): at most 0.5 x TFLM + CMSIS-NN instructions on every MLPerf Tiny model.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import re
from pathlib import Path

from ortools.linear_solver import pywraplp

from mcuflow.analysis.metrics import analyze
from mcuflow.frontends.tflite_reader import load_int8_model
from mcuflow.hw.board import Board, get_board
from mcuflow.toolchain.qemu import (
    CortexMResult,
    bench_cortexm,
    default_board,
    plan_for,
    verify_cortexm,
)

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
SHARED = ["kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite",
          "ad01_int8.tflite", "str_ww_ref_model.tflite"]
BOARDS_TOML = Path(__file__).resolve().parents[1] / "src" / "mcuflow" / "hw" / "boards.toml"
GOAL = 0.5

# The peer, measured by us (issue 5): TFLM commit 90b983c with the CMSIS-NN kernels it pins
# (4ab83cc), -O2 -mcpu=cortex-m4 -mfloat-abi=hard, QEMU mps2-an386, executed instructions of one
# warm inference (-icount shift=0, SysTick calibrated at 40 instructions per tick), and TFLM's
# arena_used_bytes() on the device. Model stem -> (TFLM + CMSIS-NN instructions, TFLM reference
# kernels instructions, arena used bytes).
PEER_TFLM_CORTEX_M4 = {
    "kws_ref_model": (7_697_907, 43_039_880, 22_820),
    "vww_96_int8": (24_101_960, 100_241_160, 100_708),
    "pretrainedResnet_quant": (29_861_680, 107_406_093, 54_996),
    "ad01_int8": (582_960, 1_952_360, 2_580),
}

# Core -> (target, board of the analysis), for --calibrate. Every calibration run links against
# LINK_BOARD, large enough for every shared model: instruction counts do not depend on it.
LINK_BOARD = "nucleo-f767zi"
# Lower bounds of the fitted coefficients: no MAC or element step is free.
MIN_PER_MAC = 0.1
MIN_PER_ELEM = 1.0
CALIBRATION = {
    "cortex-m0": ("cortex-m0", "nucleo-f091rc"),
    "cortex-m3": ("cortex-m3", "nucleo-f207zg"),
    "cortex-m4": ("cortex-m4", "nucleo-f429zi"),
    "cortex-m7": ("cortex-m7", "nucleo-f767zi"),
}
MACHINE_OF = {"cortex-m0": "mps2-an385", "cortex-m3": "mps2-an385", "cortex-m4": "mps2-an386",
              "cortex-m7": "mps2-an500"}


def table_row(result: CortexMResult) -> dict[str, object]:
    """A result with the peer's figures and our ratio to them."""
    row: dict[str, object] = dataclasses.asdict(result)
    row.pop("layers")
    peer = PEER_TFLM_CORTEX_M4.get(result.model) if result.target == "cortex-m4" else None
    if peer is not None:
        row.update(peer_cmsis_nn=peer[0], peer_reference=peer[1], peer_arena_bytes=peer[2],
                   ratio=result.instructions / peer[0])
    return row


def _cell(row: dict[str, object], key: str, fmt: str) -> str:
    value = row.get(key)
    return "-" if value is None else format(value, fmt)


def print_table(rows: list[dict[str, object]]) -> None:
    """The benchmark as a fixed-width table with the goal verdict."""
    header = (f"{'model':<24}{'instructions':>14}{'TFLM+CMSIS':>13}{'ours/peer':>10}"
              f"{'TFLM ref':>13}{'MAC/instr':>10}{'flash B':>10}{'RAM B':>9}{'stack':>7}"
              f"{'arena':>8}{'TFLM arena':>11}{'ms':>9}  exact")
    print(header)
    for row in rows:
        print(f"{row['model']:<24}{row['instructions']:>14,}"
              f"{_cell(row, 'peer_cmsis_nn', ',d'):>13}{_cell(row, 'ratio', '.3f'):>10}"
              f"{_cell(row, 'peer_reference', ',d'):>13}{row['macs_per_instruction']:>10.3f}"
              f"{row['flash_bytes']:>10,}{row['ram_bytes']:>9,}{row['stack_bytes']:>7,}"
              f"{row['arena_bytes']:>8,}{_cell(row, 'peer_arena_bytes', ',d'):>11}"
              f"{row['estimated_ms']:>9.2f}  {row['bit_exact']}")
    ratios = [row["ratio"] for row in rows if "ratio" in row]
    if ratios:
        verdict = "met" if max(ratios) <= GOAL else "NOT met"
        print(f"goal ours <= {GOAL} x TFLM + CMSIS-NN on every MLPerf Tiny model: {verdict} "
              f"(worst {max(ratios):.3f})")


def print_profile(paths: list[Path], target: str, board: Board) -> None:
    """Instructions of every layer beside its MACs, per model."""
    for path in paths:
        graph = load_int8_model(path)
        result = verify_cortexm(graph, plan_for(graph, target), target, board, runs=1,
                                profile=True)
        print(f"{result.model} on {target}: {result.instructions:,} instructions, bit-exact "
              f"{result.bit_exact}")
        print(f"{'layer':>5}  {'op':<20}{'MACs':>12}{'instructions':>14}{'instr/MAC':>10}  name")
        for layer in result.layers:
            per_mac = f"{layer.instructions / layer.macs:10.2f}" if layer.macs else f"{'-':>10}"
            print(f"{layer.index:>5}  {layer.op:<20}{layer.macs:>12,}{layer.instructions:>14,}"
                  f"{per_mac}  {layer.name[:40]}")


# --- calibration ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sample:
    """One model on one core: the cost model's terms and the measured cycles."""

    model: str
    macs: float
    ops: float
    fixed_cycles: float  # memory traffic: what the estimate adds beyond MACs and ops
    measured_cycles: float  # instructions x cycles per instruction


def _zero_coefficients(board: Board) -> Board:
    core = dataclasses.replace(board.core_model, cycles_per_mac=0.0, cycles_per_mac_dsp=0.0,
                               cycles_per_elem=0.0)
    return dataclasses.replace(board, core_model=core)


def sample(path: Path, target: str, board: Board) -> Sample:
    """The terms of `analyze`'s latency estimate on `board` and the QEMU measurement."""
    graph = load_int8_model(path)
    plan = plan_for(graph, target)
    result = verify_cortexm(graph, plan, target, LINK_BOARD, runs=1)
    if not result.bit_exact:
        raise RuntimeError(f"{graph.name} is not bit-exact on {target}")
    report = analyze(graph, _zero_coefficients(board), order=plan.order)
    fixed = report.latency_ms_estimate * 1e-3 * board.clock_hz
    ops = sum(layer.ops for layer in report.layers)
    return Sample(graph.name, report.macs, ops, fixed,
                  result.instructions * result.cycles_per_instruction)


def fit(samples: list[Sample]) -> tuple[float, float, float]:
    """Cycles per MAC and per element minimising the worst relative error; and that error."""
    solver = pywraplp.Solver.CreateSolver("GLOP")
    per_mac = solver.NumVar(MIN_PER_MAC, solver.infinity(), "per_mac")
    per_elem = solver.NumVar(MIN_PER_ELEM, solver.infinity(), "per_elem")
    worst = solver.NumVar(0.0, solver.infinity(), "worst")
    for s in samples:
        estimate = s.macs * per_mac + s.ops * per_elem + s.fixed_cycles
        solver.Add(estimate - s.measured_cycles <= worst * s.measured_cycles)
        solver.Add(s.measured_cycles - estimate <= worst * s.measured_cycles)
    solver.Minimize(worst)
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        raise RuntimeError("the calibration fit has no solution")
    return per_mac.solution_value(), per_elem.solution_value(), worst.solution_value()


def _set_value(block: str, key: str, value: str) -> str:
    pattern = re.compile(rf"^{key} = .*$", re.M)
    if not pattern.search(block):
        raise RuntimeError(f"boards.toml: no '{key}' to update")
    return pattern.sub(lambda _: f"{key} = {value}", block, count=1)


def write_core(core: str, dsp: bool, per_mac: float, per_elem: float, source: str) -> None:
    """Replace the calibrated coefficients and the source of [cores.<core>] in boards.toml."""
    text = BOARDS_TOML.read_text("utf-8")
    start = text.index(f"[cores.{core}]\n")
    end = text.find("\n[", start + 1)
    block = text[start:end]
    keys = ("cycles_per_mac_dsp",) if dsp else ("cycles_per_mac", "cycles_per_mac_dsp")
    for key in keys:
        block = _set_value(block, key, f"{per_mac:.3f}")
    block = _set_value(block, "cycles_per_elem", f"{per_elem:.3f}")
    block = _set_value(block, "source", json.dumps(source))
    BOARDS_TOML.write_text(text[:start] + block + text[end:], "utf-8")


def calibrate(write: bool) -> None:
    """Fit and print (and with `write`, store) the coefficients of every calibrated core."""
    today = datetime.date.today().isoformat()
    for core, (target, board_id) in CALIBRATION.items():
        board = get_board(board_id)
        print(f"{core} on {board_id} (QEMU {MACHINE_OF[core]}):")
        samples = [sample(MODELS / name, target, board) for name in SHARED]
        per_mac, per_elem, worst = fit(samples)
        for s in samples:
            estimate = s.macs * per_mac + s.ops * per_elem + s.fixed_cycles
            print(f"  {s.model:<24} measured {s.measured_cycles:>14,.0f} cycles  estimate "
                  f"{estimate:>14,.0f}  ({estimate / s.measured_cycles - 1:+.1%})")
        field = "cycles_per_mac_dsp" if board.dsp else "cycles_per_mac"
        print(f"  {field} = {per_mac:.3f}, cycles_per_elem = {per_elem:.3f}, "
              f"worst error {worst:.1%}")
        if write:
            models = ", ".join(s.model for s in samples)
            cpi = board.core_model.cycles_per_instruction
            estimate_note = (f"; cycles_per_instruction = {cpi:g} is an estimate"
                             + ("; cycles_per_mac (no DSP) is an estimate" if board.dsp else ""))
            source = (f"calibrated on QEMU {MACHINE_OF[core]} instruction counts, {today}, "
                      f"bench/cortexm.py: {field} and cycles_per_elem fitted to {models} on "
                      f"{board_id} (worst error {worst:.1%}){estimate_note}")
            write_core(core, board.dsp, per_mac, per_elem, source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="extra .tflite models")
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--board", default=None, help="board id (default: one per target)")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    parser.add_argument("--profile", action="store_true", help="instructions per layer")
    parser.add_argument("--calibrate", action="store_true", help="fit the cost model")
    parser.add_argument("--write", action="store_true", help="with --calibrate: update TOML")
    args = parser.parse_args()
    if args.calibrate:
        calibrate(args.write)
        return
    board = default_board(args.target) if args.board is None else get_board(args.board)
    paths = [MODELS / name for name in SHARED] + list(args.models)
    if args.profile:
        print_profile(list(args.models) or paths, args.target, board)
        return
    rows = [table_row(result) for result in bench_cortexm(paths, args.target, board)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{args.target} on QEMU, board {board.id} ({board.clock_hz / 1e6:g} MHz); peer "
              "figures: TFLM + CMSIS-NN measured by us on mps2-an386 (issue 5)")
        print_table(rows)


if __name__ == "__main__":
    main()
