"""Out-of-core benchmark (issue 13): MobileNetV2 ImageNet models on the study's boards, on QEMU.

Models: MobileNetV2-0.35-128 (the study's model, 1.66 M parameters) and MobileNetV2-1.0-224
(3.5 M), built by mcuflow.ir.zoo with ImageNet heads and random int8 weights, written to
.tflite. Per (model, board), from `mcuflow analyze`'s plan for the board's own core:
- the firmware's flash against the board's, the constants in the external image, the tier;
- SRAM: arena + staging buffer against the board's;
- reads per inference, bytes read, modelled compute, waiting and slowdown (hw.storage_io);
- for a plan spilling activations (a board whose SRAM patches alone cannot meet): the bytes
  written per inference, the time they and their reads back take, the tier's lifetime;
- on QEMU (the board's core on an MPS2 machine, linked in the board's SRAM and flash; the
  external image read through semihosting file I/O, or for QSPI flash from the machine's
  PSRAM, where QEMU's loader puts it, through the XIP storage): bit-exact against mcuflow's
  reference on two random inputs (the reference is itself checked against LiteRT by the test
  suite) and the instructions of one inference.
Then each spill tier kind (SPILL_CASES: external RAM and NOR flash at a fixed arena budget, an
encrypted SD card spill within the NUCLEO-F091RC's own SRAM), on QEMU too, and the goals of
issue 13, each PASS or FAIL from this run's numbers.

With --sweep, models it was never shaped on instead: the MLPerf Tiny models (../shared/models)
and mcuflow's zoo graphs, each planned for a NUCLEO-F429ZI (Cortex-M4, DSP kernels) and a
NUCLEO-F091RC (Cortex-M0) whose flash is cut to SWEEP_SHARE of the firmware's own flash, then
run on QEMU within those limits: what moved out, and bit-exactness.

Run: .venv/bin/python bench/out_of_core.py [--json] [--no-qemu] [--sweep] (QEMU runs take
minutes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mcuflow import api
from mcuflow.errors import McuflowError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.board import Board, TierKind, get_board
from mcuflow.ir import zoo
from mcuflow.ir.graph import Graph
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.planning import Build, analyze_graph
from mcuflow.toolchain.qemu import verify_cortexm

SHARED = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
SWEEP_MODELS: dict[str, Callable[[], Graph]] = {
    "ad01": lambda: read_tflite(SHARED / "ad01_int8.tflite"),
    "kws_ref": lambda: read_tflite(SHARED / "kws_ref_model.tflite"),
    "resnet": lambda: read_tflite(SHARED / "pretrainedResnet_quant.tflite"),
    "vww_96": lambda: read_tflite(SHARED / "vww_96_int8.tflite"),
    "str_ww": lambda: read_tflite(SHARED / "str_ww_ref_model.tflite"),
    "squeezenet_like": lambda: zoo.squeezenet_like(64),
    "mobilenet_v3_like": lambda: zoo.mobilenet_v3_like(64),
    "resnet_like": lambda: zoo.resnet_like(32),
}
SWEEP_BOARDS = (("cortex-m4", "nucleo-f429zi"), ("cortex-m0", "nucleo-f091rc"))
SWEEP_SHARE = 0.6

MODELS: dict[str, Callable[[], Graph]] = {
    "mobilenet_v2_0.35_128": lambda: zoo.mobilenet_v2(128, 0.35),
    "mobilenet_v2_1.0_224": lambda: zoo.mobilenet_v2(224, 1.0),
}
CASES = (
    ("mobilenet_v2_0.35_128", "nucleo-f767zi"),
    ("mobilenet_v2_0.35_128", "nucleo-f746zg"),
    ("mobilenet_v2_0.35_128", "nucleo-f429zi"),
    ("mobilenet_v2_0.35_128", "nucleo-f207zg"),
    ("mobilenet_v2_0.35_128", "nucleo-f091rc"),
    ("mobilenet_v2_0.35_128", "stm32f746g-disco"),
    ("mobilenet_v2_1.0_224", "nucleo-f767zi"),
    ("mobilenet_v2_1.0_224", "stm32f746g-disco"),
)
STREAMED = frozenset({"nucleo-f091rc"})
"""Boards whose SRAM cannot hold the 49,152 B input image: it is streamed (--input streamed),
read window by window from input.bin on QEMU (a camera or the SD card on the board)."""
SPILL_BUDGET = 22_528
"""The SRAM the NUCLEO-F091RC leaves the arena: below what patches alone reach on the model."""
SPILL_CASES = (
    ("mobilenet_v2_0.35_128", "stm32f746g-disco", SPILL_BUDGET, False),
    ("mobilenet_v2_0.35_128", "nrf52840", SPILL_BUDGET, False),
    ("mobilenet_v2_0.35_128", "nucleo-f091rc", None, True),
)
"""Each spill tier kind, input streamed: external RAM (SDRAM) and NOR flash (QSPI, erased slot
by slot) with the arena held to SPILL_BUDGET, and the NUCLEO-F091RC's SD card with every spilled
row encrypted (--encrypt-external) within the board's own SRAM (None: its keys and tag buffer
take SRAM beside the arena)."""
SPILL_KEY = bytes(range(0x20, 0x30))
RUNS = 2
XIP = ("qspi_flash",)
"""Tiers read in place on the board: on QEMU the image is loaded into the machine's PSRAM and
read through the XIP storage (mcuflow_storage_xip.c), elsewhere through semihosting."""
QSPI_SLOWDOWN_GOAL = 1.3


@dataclass(frozen=True)
class Row:
    """One (model, board): the plan's figures and the QEMU check."""

    model: str
    board: str
    fits: bool
    flash_bytes: int
    flash_capacity: int
    tier: str
    image_bytes: int
    arena_bytes: int
    staging_bytes: int
    sram_bytes: int
    reads: int
    read_bytes: int
    compute_ms: float
    stall_ms: float
    modelled_ms: float
    slowdown: float
    energy_mj: float
    qemu: str
    instructions: int | None
    written: int
    spill_ms: float
    lifetime_years: float | None
    qemu_written: int | None


def measure(name: str, board: str, directory: Path, qemu: bool) -> Row:
    """Plan `name` for `board`; when it fits and `qemu`, run it on QEMU in the board's limits."""
    path = directory / f"{name}.tflite"
    if not path.exists():
        path.write_bytes(write_tflite(MODELS[name]()))
    request = PatchRequest(streamed_input=board in STREAMED)
    analysis = api.fit_model(path, board, patches=request).analysis
    report = analysis.report
    verdict, instructions, written = "not run", None, None
    if analysis.fits and qemu:
        try:
            result = verify_cortexm(analysis.graph, analysis.plan, analysis.board.core.value,
                                    analysis.board, RUNS, 0, xip=report.external_tier in XIP)
            verdict = "bit-exact" if result.bit_exact else "MISMATCH"
            instructions, written = result.instructions, result.storage_bytes_written // RUNS
        except McuflowError as error:
            verdict = f"failed: {error}"
    return Row(name, board, analysis.fits, report.flash_bytes, report.flash_capacity,
               report.external_tier or "-", report.external_image_bytes, analysis.plan.arena_bytes,
               report.staging_bytes, report.sram_bytes, report.external_reads,
               report.external_read_bytes, report.latency_ms_estimate, report.io_stall_ms,
               report.modelled_ms, report.slowdown, report.energy_mj_estimate, verdict,
               instructions, report.external_write_bytes, report.spill_ms,
               report.lifetime_years, written)


@dataclass(frozen=True)
class SpillRow:
    """One spill tier kind: the plan's spill figures and the QEMU check."""

    model: str
    board: str
    budget: int | None
    encrypted: bool
    fits: bool
    tier: str
    arena_bytes: int
    written: int
    erases: int
    slots: int
    spill_ms: float
    slowdown: float
    lifetime_years: float | None
    qemu: str
    qemu_written: int | None


def measure_spill(name: str, board: str, budget: int | None, encrypted: bool, directory: Path,
                  qemu: bool) -> SpillRow:
    """Plan `name` for `board` within `budget`, streamed; run it on QEMU when it fits."""
    path = directory / f"{name}.tflite"
    if not path.exists():
        path.write_bytes(write_tflite(MODELS[name]()))
    request = PatchRequest(streamed_input=True, sram_budget=budget, encrypt_external=encrypted)
    analysis = api.fit_model(path, board, patches=request).analysis
    report = analysis.report
    verdict, written = "not run", None
    if analysis.fits and qemu:
        try:
            result = verify_cortexm(analysis.graph, analysis.plan, analysis.board.core.value,
                                    analysis.board, RUNS, 0,
                                    external_key=SPILL_KEY if encrypted else None)
            verdict = "bit-exact" if result.bit_exact else "MISMATCH"
            written = result.storage_bytes_written // RUNS
        except McuflowError as error:
            verdict = f"failed: {error}"
    return SpillRow(name, board, budget, encrypted, analysis.fits, report.spill_tier or "-",
                    analysis.plan.arena_bytes, report.spill_bytes, report.erases_per_inference,
                    report.spill_slots, report.spill_ms, report.slowdown,
                    report.lifetime_years, verdict if analysis.fits else "DOES NOT FIT", written)


def print_spill_table(rows: list[SpillRow]) -> None:
    """One line per spill tier kind."""
    print("\nEach spill tier, input streamed, arena budget (board: the board's own): bytes written "
          "per inference (modelled; through the storage, counted by the QEMU firmware), erases, "
          "slots, the wait, the slowdown, the lifetime at one inference a second")
    print(f"{'board':17} {'tier':>10} {'sealed':>6} {'budget':>7} {'arena':>7} {'written':>10} "
          f"{'on QEMU':>10} {'erases':>6} {'slots':>5} {'spill ms':>9} {'slowdown':>8} "
          f"{'years':>7}  QEMU")
    for r in rows:
        on_qemu = "-" if r.qemu_written is None else f"{r.qemu_written:,}"
        years = "-" if r.lifetime_years is None else f"{r.lifetime_years:,.2f}"
        budget = "board" if r.budget is None else f"{r.budget:,}"
        print(f"{r.board:17} {r.tier:>10} {'yes' if r.encrypted else 'no':>6} {budget:>7} "
              f"{r.arena_bytes:>7,} {r.written:>10,} {on_qemu:>10} {r.erases:>6} {r.slots:>5} "
              f"{r.spill_ms:>9.1f} {r.slowdown:>7.2f}x {years:>7}  {r.qemu}")


def print_table(rows: list[Row]) -> None:
    """One line per (model, board), then the rows that spill activations."""
    spilled: list[str] = []
    print(f"{'model':22} {'board':17} {'flash/capacity':>21} {'tier':>10} {'external':>10} "
          f"{'arena+staging/SRAM':>24} {'reads':>5} {'compute':>8} {'wait':>8} {'slowdown':>8}"
          f" {'mJ':>6}  QEMU")
    for r in rows:
        flash = f"{r.flash_bytes:,}/{r.flash_capacity:,}"
        if r.written:
            qemu_written = "-" if r.qemu_written is None else f"{r.qemu_written:,}"
            spilled.append(f"{r.model:22} {r.board:17} {r.written:>10,} {qemu_written:>10} "
                           f"{r.spill_ms:>9.1f} {r.lifetime_years or 0:>10,.1f}")
        sram = f"{r.arena_bytes:,}+{r.staging_bytes:,}/{r.sram_bytes:,}"
        qemu = r.qemu + (f" {r.instructions:,} instr" if r.instructions else "")
        if not r.fits:
            qemu = "DOES NOT FIT"
        print(f"{r.model:22} {r.board:17} {flash:>21} {r.tier:>10} {r.image_bytes:>10,} "
              f"{sram:>24} {r.reads:>5} {r.compute_ms:>8.1f} {r.stall_ms:>8.1f} "
              f"{r.slowdown:>7.2f}x {r.energy_mj:>6.1f}  {qemu}")
    if spilled:
        print("\nSpilled activations, per inference: bytes written (modelled, counted by the "
              "QEMU firmware), the wait, the tier's lifetime at one inference a second")
        print(f"{'model':22} {'board':17} {'written':>10} {'on QEMU':>10} {'spill ms':>9} "
              f"{'years':>10}")
        print("\n".join(spilled))


def goals(rows: list[Row]) -> list[tuple[str, bool]]:
    """Issue 13's goals, judged on this run's rows."""
    by = {(r.model, r.board): r for r in rows}
    study = [r for r in rows if r.model == "mobilenet_v2_0.35_128" and r.board.startswith("nucleo")]
    big = by[("mobilenet_v2_1.0_224", "nucleo-f767zi")]
    qspi = [r for r in rows if r.tier == "qspi_flash"]
    return [
        ("the study's model bit-exact on QEMU within each study board's SRAM and flash: "
         + ", ".join(f"{r.board} {r.qemu if r.fits else 'does not fit'}" for r in study),
         all(r.qemu == "bit-exact" for r in study)),
        (f"MobileNetV2-1.0-224 bit-exact on QEMU within nucleo-f767zi's limits: {big.qemu}",
         big.qemu == "bit-exact"),
        ("weights streamed from memory-mapped QSPI: modelled slowdown <= "
         f"{QSPI_SLOWDOWN_GOAL}x: " + ", ".join(f"{r.model} {r.slowdown:.2f}x" for r in qspi),
         bool(qspi) and all(r.slowdown <= QSPI_SLOWDOWN_GOAL for r in qspi)),
    ]


def smaller_flash(board: Board, flash: int) -> Board:
    """`board` with `flash` bytes of on-chip flash."""
    tiers = tuple(replace(t, size_bytes=flash) if t.kind is TierKind.ONCHIP_FLASH else t
                  for t in board.tiers)
    return replace(board, flash_bytes=flash, tiers=tiers)


def sweep_line(name: str, target: str, board_id: str) -> str:
    """One model on one board cut to SWEEP_SHARE of its flash: what moved, and QEMU's verdict."""
    graph = SWEEP_MODELS[name]()
    whole = analyze_graph(graph, Build(get_board(board_id), target), PatchRequest()).report
    board = smaller_flash(get_board(board_id), int(whole.flash_bytes * SWEEP_SHARE))
    analysis = analyze_graph(graph, Build(board, target), PatchRequest())
    report = analysis.report
    head = (f"{name:18} {target:10} {whole.flash_bytes:>9,} -> {board.flash_bytes:>9,} "
            f"{report.flash_bytes:>9,} {report.external_image_bytes:>9,} "
            f"{report.external_reads:>5}")
    if not analysis.fits:
        why = " and ".join(w for w, ok in (("flash", report.fits_flash),
                                            ("SRAM", report.fits_sram)) if not ok) or "arena"
        return f"{head}  does not fit ({why})"
    result = verify_cortexm(analysis.graph, analysis.plan, target, board, RUNS, 0)
    return (f"{head}  {'bit-exact' if result.bit_exact else 'MISMATCH'}, ELF flash "
            f"{result.flash_bytes:,}")


def sweep() -> None:
    """Every SWEEP_MODELS model on every SWEEP_BOARDS board, one line each."""
    print(f"{'model':18} {'core':10} {'flash':>9}    {'cut to':>9} {'firmware':>9} "
          f"{'external':>9} {'reads':>5}  QEMU")
    for target, board_id in SWEEP_BOARDS:
        for name in SWEEP_MODELS:
            print(sweep_line(name, target, board_id), flush=True)


def main() -> None:
    """Measure every case, print the table and the goals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-qemu", action="store_true")
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    if args.sweep:
        sweep()
        return
    with tempfile.TemporaryDirectory(prefix="mcuflow-ooc-") as scratch:
        rows = [measure(model, board, Path(scratch), not args.no_qemu)
                for model, board in CASES]
        spills = [measure_spill(model, board, budget, encrypted, Path(scratch), not args.no_qemu)
                  for model, board, budget, encrypted in SPILL_CASES]
    if args.json:
        print(json.dumps({"cases": [asdict(r) for r in rows],
                          "spill_tiers": [asdict(r) for r in spills]}, indent=2))
        return
    print_table(rows)
    print_spill_table(spills)
    for text, passed in goals(rows):
        print(f"{'PASS' if passed else 'FAIL'}  {text}")


if __name__ == "__main__":
    main()
