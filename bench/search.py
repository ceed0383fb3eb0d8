"""Architecture search benchmark: the found model against a scaled MobileNetV2 on two boards.

Run: .venv/bin/python bench/search.py [--minutes 10] [--workers 2] [--json]
     [--datasets digits,mnist1d,mine.npz] [--layout auto|images|series] [--boards ...]
     [--board-file my_boards.toml] [--space space.toml]
For digits and MNIST-1D on NUCLEO-F091RC (32 KB SRAM, 256 KB flash) and bench/boards/tiny16k
(16 KB SRAM, 64 KB flash), both Cortex-M0: int8 test accuracy of the found model and of the
baseline trained for as long, McNemar's exact p of their test answers (pipeline.Paired),
peak RAM, flash and latency (mcuflow's analysis), QEMU
bit-exactness, fit checks per second per core (the checks over the sum of their own CPU
times, on whichever worker ran them), the start each final model kept (its weights trained
from scratch or fine-tuned from the supernet, whichever scored higher on validation) and the
search's wall-clock time (printed only: results never depend on it). Then the
1-vs-2-workers identity check: the same tiny search (the first of --datasets, on tiny16k) on 1
and on 2 Ray workers must write the same models and report. --datasets takes your own .npz
files and image folders too, read as `mcuflow search --layout` reads them; --boards your own
boards, from --board-file; --space a search space file, as `mcuflow search --space` reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mcuflow import api
from mcuflow.errors import McuflowError
from mcuflow.nas.data import Layout
from mcuflow.nas.fitcheck import limits_for
from mcuflow.nas.pipeline import SearchReport, report_json, run_search
from mcuflow.nas.search import SearchOptions
from mcuflow.nas.space_file import SpaceEdits, read_space

TINY16K = Path(__file__).resolve().parent / "boards" / "tiny16k.toml"
BOARDS: dict[str, Path | None] = {"nucleo-f091rc": None, "tiny16k": TINY16K}
DATASETS = ("digits", "mnist1d")
MEASURED = "fit_checks_per_second"
"""The one report.json figure that is measured (time), left out of the identity check."""


@dataclass
class Row:
    dataset: str
    board: str
    found_int8: float | None = None
    baseline_int8: float | None = None
    found_float: float | None = None
    paired_p: float | None = None
    found_peak_ram: int | None = None
    baseline_peak_ram: int | None = None
    found_flash: int | None = None
    baseline_flash: int | None = None
    found_latency_ms: float | None = None
    baseline_latency_ms: float | None = None
    qemu_bit_exact: bool | None = None
    qemu_instructions: int | None = None
    fit_checks_per_second: float | None = None
    found_arch: str | None = None
    found_start: str | None = None
    baseline_start: str | None = None
    wall_minutes: float | None = None
    error: str | None = None


def options_for(board: str, args: argparse.Namespace, minutes: float, workers: int,
                checkpoint: Path) -> SearchOptions:
    """The search's options; a board not in BOARDS comes from --board-file (or the packaged)."""
    build = api.build_for(board, BOARDS.get(board, args.board_file))
    space = read_space(args.space) if args.space else SpaceEdits()
    return SearchOptions(build, limits_for(build, None, None, None), minutes, args.seed,
                         workers, checkpoint=checkpoint, space=space)


def measure(dataset: str, board: str, args: argparse.Namespace, scratch: Path) -> Row:
    row = Row(dataset, board)
    start = time.perf_counter()
    try:
        options = options_for(board, args, args.minutes, args.workers,
                              scratch / f"{Path(dataset).name}-{board}.checkpoint")
        report = run_search(dataset, options, scratch / f"{Path(dataset).name}-{board}",
                            layout=Layout(args.layout))
    except McuflowError as error:
        row.error = error.message
        return row
    row.wall_minutes = (time.perf_counter() - start) / 60
    print(f"{report.dataset} on {board}: search and deployment took "
          f"{60 * row.wall_minutes:,.0f} s (wall clock)", file=sys.stderr)
    return fill(row, report)


def fill(row: Row, report: SearchReport) -> Row:
    found, baseline = report.found, report.baseline
    row.dataset = report.dataset
    row.found_int8, row.baseline_int8 = found.int8_accuracy, baseline.int8_accuracy
    row.found_float = found.float_accuracy
    row.paired_p = report.paired.p_value
    row.found_peak_ram, row.baseline_peak_ram = (found.fit.peak_ram_bytes,
                                                 baseline.fit.peak_ram_bytes)
    row.found_flash, row.baseline_flash = found.fit.flash_bytes, baseline.fit.flash_bytes
    row.found_latency_ms, row.baseline_latency_ms = found.fit.latency_ms, baseline.fit.latency_ms
    row.qemu_bit_exact, row.qemu_instructions = report.qemu.bit_exact, report.qemu.instructions
    row.fit_checks_per_second = report.result.fit_checks_per_second
    row.found_arch = found.arch.key()
    row.found_start, row.baseline_start = found.start, baseline.start
    return row


def differing_across_workers(dataset: str, args: argparse.Namespace, scratch: Path
                             ) -> list[str]:
    """The tiny search on `dataset` / tiny16k with 1 and 2 workers: what differs (nothing: [])."""
    outputs = []
    for workers in (1, 2):
        out = scratch / f"identity-{workers}"
        options = options_for("tiny16k", args, 1, workers,
                              scratch / f"identity-{workers}.checkpoint")
        report = json.loads(report_json(run_search(dataset, options, out,
                                                   layout=Layout(args.layout))))
        report["search"].pop(MEASURED)
        report.pop("workers")
        files = {name: (out / name).read_bytes() for name in ("model.onnx", "model_int8.tflite",
                                                              "baseline_int8.tflite")}
        outputs.append({**{f"report.json:{key}": value for key, value in report.items()},
                        **files})
    return sorted(key for key in outputs[0] if outputs[0][key] != outputs[1][key])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.0f}{unit}"


def print_table(rows: list[Row]) -> None:
    print(f"{'dataset':8} {'board':14} {'found':>7} {'base':>7} {'p':>5} {'RAM found/base':>16} "
          f"{'flash found/base':>18} {'ms found/base':>14} {'QEMU':>9} {'checks/s':>9}")
    for row in rows:
        if row.error:
            print(f"{row.dataset:8} {row.board:14} error: {row.error}")
            continue
        qemu = "bit-exact" if row.qemu_bit_exact else "MISMATCH"
        print(f"{row.dataset:8} {row.board:14} {_pct(row.found_int8):>7} "
              f"{_pct(row.baseline_int8):>7} {_p(row.paired_p):>5} "
              f"{_num(row.found_peak_ram)}/{_num(row.baseline_peak_ram):>7} "
              f"{_num(row.found_flash)}/{_num(row.baseline_flash):>8} "
              f"{row.found_latency_ms:.0f}/{row.baseline_latency_ms:.0f} {qemu:>9} "
              f"{_num(row.fit_checks_per_second):>9}")
        print(f"{'':23} found: {row.found_arch}")
        print(f"{'':23} trained from: found {row.found_start}, baseline {row.baseline_start}; "
              f"{row.wall_minutes:.1f} min wall clock")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--layout", choices=[layout.value for layout in Layout], default="auto",
                        help="how an .npz's x is read (mcuflow search --layout)")
    parser.add_argument("--boards", default=",".join(BOARDS),
                        help="board ids: tiny16k, the packaged boards, or --board-file's")
    parser.add_argument("--board-file", type=Path,
                        help="a TOML board database for the boards other than tiny16k")
    parser.add_argument("--space", type=Path,
                        help="a search space file for every search (mcuflow search --space)")
    parser.add_argument("--no-identity", action="store_true",
                        help="skip the 1-vs-2-workers identity check (needs ray)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    datasets = args.datasets.split(",")
    with tempfile.TemporaryDirectory(prefix="mcuflow-bench-search-") as scratch:
        rows = [measure(dataset, board, args, Path(scratch))
                for dataset in datasets for board in args.boards.split(",")]
        differing = None if args.no_identity else differing_across_workers(datasets[0], args,
                                                                           Path(scratch))
    if args.json:
        print(json.dumps({"minutes": args.minutes, "seed": args.seed,
                          "rows": [asdict(row) for row in rows],
                          "differing_1_vs_2_workers": differing}, indent=2))
        return
    print_table(rows)
    if differing is not None:
        print(f"1 vs 2 workers ({Path(datasets[0]).stem}, tiny16k, --minutes 1): "
              f"{'DIFFERENT: ' + ', '.join(differing) if differing else 'identical'}")


if __name__ == "__main__":
    main()
