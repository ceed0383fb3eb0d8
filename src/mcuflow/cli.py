"""The `mcuflow` command line: thin typer commands over mcuflow.api."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mcuflow import api
from mcuflow.advisor import Advice, FitMode, FitRequest, Fitted
from mcuflow.agreement import OnnxRuntimeAgreement
from mcuflow.analysis.energy import (
    EnergyReport,
    energy_report,
    parse_battery,
    plot_life,
    weights_in_sram,
)
from mcuflow.analysis.html_report import render_page
from mcuflow.analysis.plots import plot_format, plot_working_set
from mcuflow.analysis.report import render_report
from mcuflow.codegen.external import IMAGE_FILE
from mcuflow.codegen.external_crypto import KEY_HINT, read_key
from mcuflow.codegen.project import SOURCE_MODEL, XIP_SOURCE
from mcuflow.errors import McuflowError
from mcuflow.frontends.arrays import read_npy
from mcuflow.hw.board import load_boards
from mcuflow.ir.constraints import constraints_for, supported_ops_markdown
from mcuflow.ir.ops import OpKind
from mcuflow.memory.patch_search import PatchRequest, PatchSearch
from mcuflow.memory.plan import Plan
from mcuflow.memory.plot import plot_arena
from mcuflow.memory.tiers import spills_to_memory
from mcuflow.planning import planned_steps
from mcuflow.quant.qdq import KeptReport
from mcuflow.quant.report import QuantReport
from mcuflow.toolchain.host import VerifyResult
from mcuflow.toolchain.qemu import CortexMResult
from mcuflow.validation import Scores, Validation

app = typer.Typer(
    help="mcuflow: will your network fit a microcontroller, how to make it fit, exact C for it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
PIPED_WIDTH = 120
"""Columns of a wide table written to a file or a pipe (Rich assumes 80 there)."""


def _print_version(value: bool) -> None:
    if value:
        console.print(f"mcuflow {importlib.metadata.version('mcuflow')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True,
                           help="Print mcuflow's version and exit.")
    ] = False,
) -> None:
    """mcuflow: will your network fit a microcontroller, how to make it fit, exact C for it."""

BoardOption = Annotated[
    str, typer.Option("--board", "-b", help="Board id (see `mcuflow boards`).")
]
BoardFileOption = Annotated[
    Path | None, typer.Option("--board-file", help="A TOML board database to use instead.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
PeriodOption = Annotated[
    float | None, typer.Option("--period", help="Seconds between inferences: the board wakes, "
                               "runs the model once and sleeps again (report: default 60).")
]
EventsPerHourOption = Annotated[
    float | None, typer.Option("--events-per-hour", help="Inferences per hour (instead of "
                               "--period).")
]
BatteryOption = Annotated[
    str, typer.Option("--battery", help="CR2032 (225 mAh, 3 V), 2xAA (2500 mAh, 3 V), "
                      "LIPO-500 (500 mAh, 3.7 V) or MAH@V, e.g. 1000@3.7.")
]
ModelArgument = Annotated[
    Path, typer.Argument(help="An int8 .tflite model, or a float .tflite/.onnx with --calibration.")
]
CalibrationOption = Annotated[
    Path | None,
    typer.Option("--calibration", help="Float samples (.npy, .npz or a folder of them): "
                 "quantise a float model to int8 on the fly."),
]
SchemeOption = Annotated[
    str, typer.Option("--scheme", help="With --calibration: affine, qformat, codebook or "
                                   "int16x8.")
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Write into an earlier mcuflow output directory that "
                       "holds other files too: replace only the files its manifest lists, keep "
                       "the rest.")
]


PatchesOption = Annotated[
    str, typer.Option("--patches", help="Run the first layers patch by patch to cut peak RAM, "
                      "bit-exact: auto (only when the model does not fit otherwise), off, or "
                      "RxC[@LAYER] (a grid of R x C patches, the stage ending at LAYER: an op or "
                      "tensor name; default: the best end).")
]
SramBudgetOption = Annotated[
    int | None, typer.Option("--sram-budget", help="Bytes of SRAM the arena may use (default: "
                             "the board's): the patches with the least overhead that fit it.")
]
InputOption = Annotated[
    str, typer.Option("--input", help="arena (the input image is written into the arena) or "
                      "streamed (the model reads the windows it needs through an input reader, "
                      "e.g. a camera's line DMA, so the image never sits in SRAM whole).")
]
InferencesPerHourOption = Annotated[
    float | None, typer.Option("--inferences-per-hour", help="How often the model runs (default "
                               "3600, once a second): the rate at which the lifetime of the "
                               "storage spilled activations are written to is given.")
]
ExternalOption = Annotated[
    str, typer.Option("--external", help="auto (when the firmware does not fit the board's "
                      "flash: the largest layers' constants go to its external storage, an SD "
                      "card or QSPI flash, as weights_external.bin, read chunk by chunk into a "
                      "staging buffer while the model runs; and when no patch stage fits the "
                      "SRAM, the first stage's largest activations are spilled to a writable "
                      "tier (external RAM, else an SD card) and read back; bit-exact) or off.")
]
EncryptOption = Annotated[
    bool, typer.Option("--encrypt-external", help="Encrypt the external weights image "
                       "(AES-128-CTR) and authenticate each chunk (AES-CMAC over its place and "
                       "ciphertext) under the key of --external-key, and likewise each spilled "
                       "activation row under keys derived from it and a fresh nonce per "
                       "inference: the firmware gets the key at run time from "
                       "mcuflow_external_key() (implement it from OTP or a secure element), the "
                       "nonce from mcuflow_spill_nonce(), and a tampered chunk or row returns "
                       "MCUFLOW_ERROR_TAG (7).")
]
ModelEncryptionOption = Annotated[
    bool, typer.Option("--encrypt-external", help="Model an encrypted external weights image "
                       "(compile and verify take its key): the core verifies and decrypts each "
                       "chunk it reads, at the cost per byte measured on QEMU, which "
                       "decrypt_ms and modelled_ms include; spilled activations are encrypted "
                       "and tagged per row at the same cost, in spill_ms.")
]
ExternalKeyOption = Annotated[
    Path | None, typer.Option("--external-key", help="File of the 16-byte key of "
                              "--encrypt-external (e.g. `head -c 16 /dev/urandom > key.bin`); "
                              "never written into the output.")
]
MaxOverheadOption = Annotated[
    float | None, typer.Option("--max-overhead", help="Percent of extra instructions the "
                               "patches may cost (default 10); alone, it asks for the smallest "
                               "peak within it.")
]


FitArg = Annotated[
    str, typer.Option("--fit", help="off (the default: the model as the other options say), "
                      "auto (when the model does not fit: apply the fit advisor's cheapest option "
                      "that fits, exact ones first; a lossy one, such as a smaller input or "
                      "clustered weights, only when no exact one fits, and the output says so) "
                      "or the name of one option of the advisor's table (`mcuflow analyze` shows "
                      "it for a model that does not fit): patches, patches-smallest, streamed, "
                      "order, codebook-256, codebook-16, resolution.")
]


def _external_key(encrypt: bool, key_file: Path | None) -> bytes | None:
    """The key of --encrypt-external (None: no encryption); each option needs the other."""
    if key_file is not None and not encrypt:
        raise McuflowError("--external-key is the key of --encrypt-external, which is not set",
                           "add --encrypt-external, or drop --external-key")
    if not encrypt:
        return None
    if key_file is None:
        raise McuflowError("--encrypt-external needs the key: --external-key FILE", KEY_HINT)
    return read_key(key_file)


def _patch_request(patches: str, sram_budget: int | None, max_overhead: float | None,
                   input_mode: str, external: str, encrypt_external: bool = False,
                   inferences_per_hour: float | None = None) -> PatchRequest:
    return PatchRequest.parse(patches, sram_budget, max_overhead, input_mode, external,
                              encrypt_external, inferences_per_hour)


def _print_patches(search: PatchSearch, options: bool) -> None:
    """The chosen patch stage (or why none), and with `options` the Pareto set planned."""
    console.print(api.patches_line(search))
    if not options or not search.options:
        return
    table = Table(title="patch options (Pareto set: peak vs instructions)")
    for column in ("stage", "peak B", "overhead", "source window", "tile"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for option in search.pareto:
        rows, cols, tile_rows, tile_cols = option.halo
        table.add_row(_ascii(option.choice.describe() if option.choice else "unpatched"),
                      f"{option.peak_bytes:,}", f"{100 * search.overhead(option):+.1f} %",
                      f"{rows}x{cols}" if option.choice else "", f"{tile_rows}x{tile_cols}"
                      if option.choice else "")
    console.print(table)


def _print_advice(advice: Advice) -> None:
    """The fit advisor's options, best first, each explained below; then those not offered."""
    table = Table(title="How to make it fit (fit advisor, best first)")
    for column in ("#", "option", "kind", "peak B", "flash B", "instr.", "fits", "apply with"):
        table.add_column(column, justify="right" if column in (
            "#", "peak B", "flash B", "instr.") else "left")
    for rank, option in enumerate(advice.options, 1):
        table.add_row(str(rank), option.name, "exact" if option.exact else "[yellow]lossy[/]",
                      f"{option.peak_bytes:,}", f"{option.flash_bytes:,}",
                      f"{100 * option.overhead:+.1f}%",
                      "[green]yes[/]" if option.fits else "[red]no[/]",
                      " ".join(option.flags) or "always on")
    console.print(table)
    for rank, option in enumerate(advice.options, 1):
        console.print(f"  {rank}. {option.name}: {escape(option.description)}; "
                      f"{escape(option.detail)}", highlight=False)
    for note in advice.notes:
        console.print(f"  not offered: {escape(note)}", highlight=False)


def _print_fit(fitted: Fitted, fit: FitRequest) -> None:
    """What --fit did: the option applied, or that none fits."""
    line = api.fit_line(fitted)
    if line is not None:
        console.print(escape(line), style="yellow" if fitted.changed_model else None,
                      highlight=False)
    elif fit.mode is FitMode.AUTO and not fitted.analysis.fits and fitted.advice is not None:
        best = fitted.advice.best
        peak = f"; the best, {best.name}, needs {best.peak_bytes:,} B of SRAM" if best else ""
        console.print(f"fit: no option fits {fitted.analysis.board.id}{escape(peak)}",
                      style="red", highlight=False)


def _quantize_options(calibration: Path | None, scheme: str) -> api.QuantizeOptions | None:
    return None if calibration is None else api.QuantizeOptions(calibration, scheme)


def _print_json(data: object) -> None:
    """Strict JSON (RFC 8259): a NaN or infinite number is written as null."""
    sys.stdout.write(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _finite(data: object) -> object:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data


@app.command("analyze")
def analyze_command(
    model: ModelArgument,
    board: BoardOption = api.DEFAULT_BOARD,
    board_file: BoardFileOption = None,
    as_json: JsonOption = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the per-layer working set as an "
                                  "image: PNG, SVG, PDF... as the file's suffix says.")
    ] = None,
    calibration: CalibrationOption = None,
    scheme: SchemeOption = "affine",
    require_fit: Annotated[
        bool, typer.Option("--require-fit", help="Exit with code 1, after the report, when the "
                           "model does not fit the board's SRAM or flash (a CI gate).")
    ] = False,
    patches: PatchesOption = "auto",
    sram_budget: SramBudgetOption = None,
    max_overhead: MaxOverheadOption = None,
    input_mode: InputOption = "arena",
    external: ExternalOption = "auto",
    encrypt_external: ModelEncryptionOption = False,
    inferences_per_hour: InferencesPerHourOption = None,
    fit: FitArg = "off",
) -> None:
    """Per-layer MACs, weights, working set, peak RAM, fit verdict, latency and energy.

    A model that does not fit gets the fit advisor's table: every way to make it fit (patches,
    streamed input, operator order, codebook weights, a smaller input resolution), each planned
    on the board, ranked (fitting first, exact before lossy, then fewer instructions).
    """
    _check_plot(plot)
    fit_request = FitRequest.parse(fit)
    fitted = api.fit_model(model, board, board_file, _quantize_options(calibration, scheme),
                           patches=_patch_request(patches, sram_budget, max_overhead,
                                                  input_mode, external, encrypt_external,
                                                  inferences_per_hour),
                           fit=fit_request, advise=True)
    analysis = fitted.analysis
    if plot is not None:
        plot_working_set(analysis.report, plot)
    if as_json:
        _print_json({**analysis.report.to_json(), "patches": api.patches_json(analysis.patches),
                     "fits_budget": analysis.fits, **api.advice_json(fitted.advice),
                     "fit": api.fit_json(fitted)})
    else:
        render_report(analysis.report, console)
        _print_patches(analysis.patches, options=False)
        if fitted.advice is not None:
            _print_advice(fitted.advice)
        _print_fit(fitted, fit_request)
    if require_fit and not analysis.fits:
        raise typer.Exit(1)


def _check_plot(plot: Path | None) -> None:
    """Refuse a --plot file of an unknown image format before any work is done."""
    if plot is not None:
        plot_format(plot)


@app.command("plan")
def plan_command(
    model: ModelArgument,
    board: BoardOption = api.DEFAULT_BOARD,
    board_file: BoardFileOption = None,
    as_json: JsonOption = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the arena over time as an image: PNG, "
                                  "SVG, PDF... as the file's suffix says.")
    ] = None,
    calibration: CalibrationOption = None,
    scheme: SchemeOption = "affine",
    patches: PatchesOption = "auto",
    sram_budget: SramBudgetOption = None,
    max_overhead: MaxOverheadOption = None,
    input_mode: InputOption = "arena",
    external: ExternalOption = "auto",
    encrypt_external: ModelEncryptionOption = False,
    inferences_per_hour: InferencesPerHourOption = None,
    fit: FitArg = "off",
) -> None:
    """The memory plan: order, in-place steps, every buffer's offset, size and lifetime.

    With --json, `plan_hash` is the SHA-256 of the plan's canonical JSON: equal on every machine
    for the same model, board and options.
    """
    _check_plot(plot)
    fit_request = FitRequest.parse(fit)
    fitted = api.fit_model(model, board, board_file, _quantize_options(calibration, scheme),
                           patches=_patch_request(patches, sram_budget, max_overhead,
                                                  input_mode, external, encrypt_external,
                                                  inferences_per_hour),
                           fit=fit_request)
    analysis = fitted.analysis
    if plot is not None:
        plot_arena(analysis.plan, plot, analysis.report.staging_bytes)
    plan = api.plan_to_json(analysis.plan, analysis.patches, fitted)
    if as_json:
        _print_json(plan)
        return
    table = Table(title=f"Memory plan of {analysis.graph.name}")
    for column in ("buffer", "offset", "size", "steps"):
        table.add_column(column, justify="left" if column == "buffer" else "right")
    for buffer in plan["buffers"]:
        table.add_row(_ascii(buffer["name"]), f"{buffer['offset']:,}", f"{buffer['size']:,}",
                      f"{buffer['first_step']}-{buffer['last_step']}")
    console.print(table)
    console.print(f"arena: {plan['arena_bytes']:,} B   lower bound for this order: "
                  f"{plan['lower_bound_bytes']:,} B   board SRAM: {analysis.board.sram_bytes:,} B")
    _print_patches(analysis.patches, options=True)
    _print_fit(fitted, fit_request)


def _spill_note(plan: Plan, spill_bytes: int, files: tuple[str, ...]) -> str:
    """Where a compiled project's spilled activations go, and what that leaves to the user."""
    tier = plan.spill_tier.kind.value if plan.spill_tier is not None else "external storage"
    where = f"{spill_bytes:,} B of activations spilled per inference to the {tier}"
    if spills_to_memory(plan.spill_tier):
        return (f"{where}: a buffer the linker script places in its region (set up its "
                "controller before the first inference)")
    if XIP_SOURCE in files:
        return (f"{where} through mcuflow_storage.h: {XIP_SOURCE} refuses writes and erases, "
                "implement them with your board's flash driver")
    return f"{where} through mcuflow_storage.h ({_storage_note(files)})"


def _storage_note(files: tuple[str, ...]) -> str:
    """What a compiled project's storage implementation leaves to the user."""
    if XIP_SOURCE in files:
        return (f"{XIP_SOURCE} reads it memory-mapped: program the image at the window's "
                "base")
    return "implement it for your board's SD card or SPI flash"


def _ascii(name: str) -> str:
    return name.encode("ascii", "backslashreplace").decode("ascii")[:60]


@app.command("compile")
def compile_command(
    model: ModelArgument,
    out_dir: Annotated[Path, typer.Option("--output", "-o",
                                          help="Directory to write (the project or library).")],
    board: BoardOption = api.DEFAULT_BOARD,
    target: Annotated[
        str | None, typer.Option("--target", help="host (portable C), or the board's Cortex-M "
                                 "core (the default): firmware with startup, linker script and "
                                 "an application (--io).")
    ] = None,
    board_file: BoardFileOption = None,
    as_json: JsonOption = False,
    calibration: CalibrationOption = None,
    scheme: SchemeOption = "affine",
    force: ForceOption = False,
    io: Annotated[
        api.Io | None,
        typer.Option("--io", help="Cortex-M application: uart (over the board's console UART, "
                     "the default where the board database has one), semihosting (files "
                     "through a debugger or QEMU) or none (runs in a loop for a debugger)."),
    ] = None,
    memory_map: Annotated[
        api.MemoryMap,
        typer.Option("--memory-map", help="Cortex-M: link at the board's own addresses (board) "
                     "or at those of QEMU's MPS2 machine for the core (qemu)."),
    ] = api.MemoryMap.BOARD,
    arena_section: Annotated[
        str | None,
        typer.Option("--arena-section", help="Put the arena in this RAM region of the board "
                     "(e.g. dtcm, ccm, sdram; `mcuflow boards --json` lists them)."),
    ] = None,
    weights_section: Annotated[
        str | None,
        typer.Option("--weights-section", help="Put the weights in this flash region of the "
                     "board (e.g. qspi)."),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option("--prefix", help="Start every name of the model with this instead of "
                     "mcuflow_: files (kws_model.h), functions (kws_model_invoke), macros "
                     "(KWS_ARENA_BYTES) and symbols, so several models link into one firmware. "
                     "Lowercase letters, digits and '_', ending with '_' (e.g. kws_)."),
    ] = None,
    library: Annotated[
        bool,
        typer.Option("--library", help="Write a library to add to your firmware instead of a "
                     "runnable project: include/ (the API header), src/, kernels/ (shared by "
                     "every model), CMakeLists.txt (target <prefix>model) and mcuflow.mk."),
    ] = False,
    fit_check: Annotated[
        bool,
        typer.Option("--fit-check/--no-fit-check", help="Refuse a model that does not fit the "
                     "board's SRAM or flash, for every target: a host build is checked against "
                     "the board (-b) too. --no-fit-check generates the C anyway (a Cortex-M link "
                     "then overflows)."),
    ] = True,
    patches: PatchesOption = "auto",
    sram_budget: SramBudgetOption = None,
    max_overhead: MaxOverheadOption = None,
    input_mode: InputOption = "arena",
    external: ExternalOption = "auto",
    encrypt_external: EncryptOption = False,
    external_key: ExternalKeyOption = None,
    fit: FitArg = "off",
) -> None:
    """Generate a self-contained C99 project (no malloc, no interpreter) for the model.

    An existing output directory is replaced only when it is empty or holds exactly what an
    earlier compile wrote (its mcuflow_manifest.json lists each file); files you added or
    changed are never deleted. A model that does not fit is refused; the error names the fit
    advisor's best option (--fit auto applies it; with --no-fit-check the C is generated and
    the advisor's table printed).
    """
    firmware = api.firmware_options(board, board_file, io, memory_map, arena_section,
                                    weights_section)
    key = _external_key(encrypt_external, external_key)
    fit_request = FitRequest.parse(fit)
    fitted = api.fit_for_compile(model, board, board_file, target,
                                 _quantize_options(calibration, scheme), firmware.io,
                                 _patch_request(patches, sram_budget, max_overhead, input_mode,
                                                external, encrypt_external),
                                 fit_request, fit_check)
    project = api.compile_analysis(fitted.analysis, out_dir, fitted.build.target or "host",
                                   force, prefix=prefix, library=library, firmware=firmware,
                                   external_key=key)
    portable = [(index, step) for index, step in enumerate(project.steps)
                if step.portable_reason]
    summary = {"path": str(project.path), "files": list(project.files),
               "arena_bytes": project.arena_bytes, "weight_bytes": project.weight_bytes,
               "portable_layers": [{"layer": index, "op": step.op, "name": step.name,
                                    "kernels": list(step.functions),
                                    "reason": step.portable_reason}
                                   for index, step in portable],
               "external": api.external_json(fitted.analysis)}
    if as_json:
        _print_json({**summary, **api.advice_json(fitted.advice), "fit": api.fit_json(fitted)})
        return
    if fitted.advice is not None and not fitted.analysis.fits:
        _print_advice(fitted.advice)
    _print_fit(fitted, fit_request)
    console.print(f"wrote {len(project.files)} files to {project.path}: arena "
                  f"{project.arena_bytes:,} B, weights {project.weight_bytes:,} B")
    if project.external is not None:
        console.print(f"{project.external.external_bytes:,} B of constants in "
                      f"{project.path / IMAGE_FILE} for the board's {project.external.tier}: "
                      f"{len(project.external.chunks)} chunks read per inference into a "
                      f"{project.external.staging_bytes:,} B staging buffer through "
                      f"mcuflow_storage.h ({_storage_note(project.files)})")
        if project.external.encrypted:
            console.print("the image is encrypted (AES-128-CTR, a CMAC tag per chunk): "
                          "implement mcuflow_external_key() to give the firmware its key")
    if fitted.analysis.plan.spilled:
        console.print(_spill_note(fitted.analysis.plan, fitted.analysis.report.spill_bytes,
                                  project.files))
    if key is not None and fitted.analysis.plan.spilled:
        console.print("spilled activations are encrypted (AES-128-CTR, a CMAC tag per row): "
                      "implement mcuflow_external_key() and mcuflow_spill_nonce()")
    elif key is not None and project.external is None:
        console.print("no external weights image or spill: --encrypt-external had nothing to "
                      "encrypt")
    for index, step in portable:
        _print_portable(index, step.op, step.name, step.portable_reason or "")


@app.command("verify")
def verify_command(
    model: ModelArgument,
    board: Annotated[
        str | None,
        typer.Option("--board", "-b", help="Board id (default: nucleo-f767zi on the host, the "
                     "target's reference board on Cortex-M)."),
    ] = None,
    board_file: BoardFileOption = None,
    target: Annotated[
        str, typer.Option("--target", help="host, or cortex-m0|m0plus|m3|m4|m7|m33 (run on "
                          "QEMU's MPS2 machine for the core).")
    ] = "host",
    machine: Annotated[
        str | None,
        typer.Option("--machine", help="Run the board-ready firmware (the board's own address "
                     "map, records over its UART) on QEMU's netduino2 (NUCLEO-F207ZG's STM32F2) "
                     "or netduinoplus2 (NUCLEO-F429ZI's STM32F4)."),
    ] = None,
    runs: Annotated[int, typer.Option("--runs", help="Random inputs to compare.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random inputs.")] = 0,
    profile: Annotated[
        bool, typer.Option("--profile", help="Cortex-M: instructions of every layer.")
    ] = False,
    as_json: JsonOption = False,
    calibration: CalibrationOption = None,
    scheme: SchemeOption = "affine",
    patches: PatchesOption = "auto",
    sram_budget: SramBudgetOption = None,
    max_overhead: MaxOverheadOption = None,
    input_mode: InputOption = "arena",
    external: ExternalOption = "auto",
    encrypt_external: EncryptOption = False,
    external_key: ExternalKeyOption = None,
    fit: FitArg = "off",
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Your test set (.npz with `x` samples in the model's layout "
                     "and optional labels `y`, or a folder of them): run the C over it instead of "
                     "random inputs; with labels, accuracy, per-class precision and recall and the "
                     "confusion matrix beside LiteRT's and the float model's; without, the SQNR "
                     "against the float model."),
    ] = None,
    float_model: Annotated[
        Path | None,
        typer.Option("--float", help="With --data: the float .tflite or .onnx model the int8 "
                     "one was made from, scored beside it (a model quantised with --calibration "
                     "is its own)."),
    ] = None,
) -> None:
    """Build the generated C (of MODEL, or a directory written by compile), compare to the bit.

    With a patch stage on a Cortex-M target, the unpatched plan runs on the same inputs too and
    the patches' overhead is measured (QEMU's instructions), beside the predicted one. With
    --data, the C runs over your samples instead (host or QEMU): bit-exact against the reference
    interpreter on each, and scored (JSON: `accuracy`, `per_class`, `confusion_matrix`,
    `litert`, `float`, or `sqnr_db` and `max_abs_error` without labels).
    """
    quantize = _quantize_options(calibration, scheme)
    request = _patch_request(patches, sram_budget, max_overhead, input_mode, external,
                             encrypt_external)
    fit_request = FitRequest.parse(fit)
    key = _external_key(encrypt_external, external_key)
    if key is not None and (data is not None or float_model is not None or machine is not None):
        raise McuflowError("--encrypt-external is verified with random inputs on the host or "
                           "QEMU's MPS2 machines (--target)", "drop --data, --float and --machine")
    if data is not None or float_model is not None:
        _verify_data(model, data, float_model, machine, board, board_file, target, quantize,
                     request, fit_request, as_json)
        return
    if model.is_dir():
        _verify_directory(model, target, fit_request, runs, seed, as_json, key)
        return
    if machine is not None:
        with console.status(f"building the board firmware and running it on QEMU {machine}"):
            verified = api.verify_board_model(model, machine, board, board_file, runs, seed,
                                              quantize, request, fit_request)
    elif target == "host":
        with console.status("building and running the generated C"):
            verified = api.verify_model(model, board or api.DEFAULT_BOARD, board_file, runs, seed,
                                        quantize=quantize, patches=request, fit=fit_request,
                                        external_key=key)
    else:
        with console.status(f"building for {target} and running on QEMU"):
            verified = api.verify_cortexm_model(model, target, board, board_file, runs, seed,
                                                profile, quantize, request, fit_request,
                                                external_key=key)
    agreement = None
    if quantize is None:
        with console.status("comparing with ONNX Runtime"):
            agreement = api.onnxruntime_check(model, runs, seed)
    if as_json:
        _print_json({**verified.to_json(), **(agreement.to_json() if agreement else {})})
    else:
        _print_verification(verified, fit_request)
        if agreement is not None:
            _print_agreement(agreement)
    if not verified.bit_exact:
        raise typer.Exit(1)


def _print_agreement(agreement: OnnxRuntimeAgreement) -> None:
    """The QDQ model's semantics gap: integer requantisation against its float definition."""
    ours, theirs = agreement.mcuflow, agreement.onnxruntime_int8
    console.print(f"against ONNX Runtime's float definition of the QDQ model ({agreement.samples} "
                  f"runs): max {ours.max_lsb} LSB, {ours.within_1lsb:.1%} of outputs within 1 "
                  f"LSB; ONNX Runtime's own int8 kernels: max {theirs.max_lsb} LSB, "
                  f"{theirs.within_1lsb:.1%} within 1 LSB")


def _verify_directory(directory: Path, target: str, fit: FitRequest, runs: int, seed: int,
                      as_json: bool, key: bytes | None = None) -> None:
    """verify DIR: the compiled project as it is, on the host."""
    if target != "host":
        raise McuflowError(f"a compiled directory is verified on the host, not on {target}",
                           "verify the model it was compiled from: `mcuflow verify "
                           f"{directory / SOURCE_MODEL} --target {target}`")
    if fit.mode is not FitMode.OFF:
        raise McuflowError("--fit does not apply to a compiled directory, verified as it is",
                           "pass --fit to `mcuflow compile`, or verify the model file")
    with console.status(f"building and running {directory}"):
        result = api.verify_compiled(directory, runs, seed, external_key=key)
    if as_json:
        _print_json(dataclasses.asdict(result))
    else:
        _print_verify(result)
    if not result.bit_exact:
        raise typer.Exit(1)


def _print_verification(verified: api.Verification, fit: FitRequest) -> None:
    """The result, the patch stage's measured (or predicted) overhead, what --fit applied."""
    _print_fit(verified.fitted, fit)
    if isinstance(verified.result, CortexMResult):
        _print_cortexm(verified.result)
    else:
        _print_verify(verified.result)
    if verified.overhead is not None:
        console.print(escape(verified.overhead.line()), highlight=False)


def _verify_data(model: Path, data: Path | None, float_model: Path | None, machine: str | None,
                 board: str | None, board_file: Path | None, target: str,
                 quantize: api.QuantizeOptions | None, request: PatchRequest, fit: FitRequest,
                 as_json: bool) -> None:
    """verify --data: the C over the user's samples, scored; exit 1 unless bit-exact."""
    if data is None:
        raise McuflowError("--float applies with --data only", "pass --data TEST.npz too")
    if machine is not None or model.is_dir():
        raise McuflowError("--data runs a model file on the host or QEMU's MPS2 machines",
                           "pass the model file with --target host or --target cortex-m*")
    with _data_progress(as_json, target) as advance:
        validation, fitted = api.validate_model(model, data, board, board_file, target,
                                                quantize, float_model, request, fit, advance)
    if as_json:
        _print_json({**validation.to_json(), "fit": api.fit_json(fitted)})
    else:
        _print_fit(fitted, fit)
        _print_validation(validation)
    if not validation.bit_exact:
        raise typer.Exit(1)


MAX_PRINTED_CLASSES = 20
"""Classes up to which verify --data prints per-class tables (all are in --json)."""


@contextmanager
def _data_progress(as_json: bool, target: str) -> Iterator[api.Progress]:
    """A progress bar on stderr over the samples (none with --json or off a terminal)."""
    errors = Console(stderr=True)
    where = "the host" if target == "host" else f"{target} (QEMU)"
    with Progress(TextColumn(f"verifying on {where}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=errors, transient=True,
                  disable=as_json or not errors.is_terminal) as bar:
        task = bar.add_task("samples", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _print_validation(result: Validation) -> None:
    """Bit-exactness over the data, the scores of each column, the output error or a note."""
    verdict = "[green]bit-exact" if result.bit_exact else "[red]MISMATCH"
    where = "the host" if result.target == "host" else f"{result.target} ({result.machine})"
    console.print(f"{verdict}[/] on {where}: {result.samples:,} samples, "
                  f"{result.mismatching_samples} mismatching the reference interpreter")
    columns = {"target": result.scores, "LiteRT": result.litert, "float": result.float32}
    scored = {name: scores for name, scores in columns.items() if scores is not None}
    if scored:
        _print_scores(scored)
    if result.error is not None:
        sqnr = result.error.sqnr_db
        shown = f"{sqnr:.1f} dB" if math.isfinite(sqnr) else "infinite (exact)"
        console.print(f"int8 outputs against the float model: SQNR {shown}, max abs error "
                      f"{result.error.max_abs_error:.4g}", highlight=False)
    for note in result.notes:
        console.print(f"note: {escape(note)}", highlight=False)


def _print_scores(scored: dict[str, Scores]) -> None:
    """Accuracy line, per-class precision/recall table and the target's confusion matrix."""
    console.print("top-1 accuracy: " + ", ".join(f"{name} {s.accuracy:.2%}"
                                                  for name, s in scored.items()), highlight=False)
    first = next(iter(scored.values()))
    if len(first.per_class) > MAX_PRINTED_CLASSES:
        console.print(f"{len(first.per_class)} classes: per-class figures and confusion matrices "
                      "with --json")
        return
    table = Table(title="Per class: precision / recall")
    table.add_column("class", justify="right")
    table.add_column("support", justify="right")
    for name in scored:
        table.add_column(name, justify="right")
    for index, score in enumerate(first.per_class):
        table.add_row(str(score.label), str(score.support), *(
            f"{s.per_class[index].precision:.2f} / {s.per_class[index].recall:.2f}"
            for s in scored.values()))
    console.print(table)
    target = first.confusion_matrix
    for name, scores in scored.items():
        if scores is not first and scores.confusion_matrix == target:
            console.print(f"{name}'s confusion matrix equals the target's")
            continue
        matrix = Table(title=f"Confusion matrix, {name} (rows: true class, columns: predicted)")
        matrix.add_column("")
        for label in range(len(scores.confusion_matrix)):
            matrix.add_column(str(label), justify="right")
        for label, row in enumerate(scores.confusion_matrix):
            matrix.add_row(str(label), *(str(n) for n in row))
        console.print(matrix)


def _print_cortexm(result: CortexMResult) -> None:
    verdict = "[green]bit-exact" if result.bit_exact else "[red]MISMATCH"
    console.print(f"{verdict}[/] on {result.target} ({result.machine}, board {result.board}): "
                  f"{result.runs} runs, {result.mismatches} mismatching")
    console.print(f"{result.instructions:,} instructions per inference (QEMU -icount, "
                  f"resolution {result.instructions_per_tick:g}), {result.macs_per_instruction:.2f}"
                  f" MACs/instruction, about {result.estimated_ms:.2f} ms at "
                  f"{result.clock_hz / 1e6:g} MHz")
    console.print(f"flash {result.flash_bytes:,} B (text+rodata+data), RAM {result.ram_bytes:,} B "
                  f"(data+bss+stack {result.stack_bytes:,} B), arena {result.arena_bytes:,} B")
    if result.layers:
        table = Table(title="Instructions per layer")
        for column in ("#", "op", "MACs", "instructions", "MACs/instr", "kernel"):
            table.add_column(column, justify="left" if column in ("op", "kernel") else "right")
        for layer in result.layers:
            table.add_row(str(layer.index), layer.op, f"{layer.macs:,}", f"{layer.instructions:,}",
                          f"{layer.macs / max(layer.instructions, 1):.2f}",
                          ", ".join(layer.kernels) + (" (portable)" if layer.portable_reason
                                                      else ""))
        console.print(table)
        for layer in result.layers:
            if layer.portable_reason:
                _print_portable(layer.index, layer.op, layer.name, layer.portable_reason)


def _print_portable(index: int, op: str, name: str, reason: str) -> None:
    """The note that a layer runs a portable kernel on a DSP core, and why."""
    console.print(f"[yellow]note:[/] layer {index} '{name}' ({op}) runs a portable kernel on "
                  f"this DSP core: {reason}", markup=True, highlight=False)


@app.command("bench")
def bench_command(
    models: Annotated[
        list[Path] | None, typer.Argument(help="Models (default: the bundled example).")
    ] = None,
    target: Annotated[str, typer.Option("--target", help="cortex-m0|m3|m4|m7|m33.")] = "cortex-m4",
    board: Annotated[str | None, typer.Option("--board", "-b", help="Board id.")] = None,
    board_file: BoardFileOption = None,
    as_json: JsonOption = False,
    patches: PatchesOption = "auto",
    sram_budget: SramBudgetOption = None,
    max_overhead: MaxOverheadOption = None,
    input_mode: InputOption = "arena",
    external: ExternalOption = "auto",
    fit: FitArg = "off",
) -> None:
    """One table: instructions, MACs/instruction, flash and RAM per model on QEMU."""
    chosen = models or [api.demo_model_path()]
    fit_request = FitRequest.parse(fit)
    with console.status(f"measuring {len(chosen)} model(s) on {target}"):
        rows = api.bench_models(chosen, target, board, board_file,
                                _patch_request(patches, sram_budget, max_overhead, input_mode,
                                               external),
                                fit_request)
    if as_json:
        _print_json([row.to_json() for row in rows])
        return
    table = Table(title=f"{target} on QEMU")
    for column in ("model", "instructions", "MACs/instr", "est. ms", "flash B", "RAM B",
                   "arena B", "bit-exact"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in (verified.result for verified in rows):
        table.add_row(_ascii(row.model), f"{row.instructions:,}",
                      f"{row.macs_per_instruction:.2f}", f"{row.estimated_ms:.2f}",
                      f"{row.flash_bytes:,}", f"{row.ram_bytes:,}", f"{row.arena_bytes:,}",
                      "yes" if row.bit_exact else "NO")
    console.print(table)
    for verified in rows:
        _print_fit(verified.fitted, fit_request)


def _print_verify(result: VerifyResult) -> None:
    verdict = "[green]bit-exact" if result.bit_exact else "[red]MISMATCH"
    litert = ("not available" if result.litert_mismatches is None
              else f"{result.litert_mismatches} mismatching runs")
    console.print(f"{verdict}[/]: {result.runs} runs, {result.mismatches} mismatching runs "
                  f"against the reference interpreter, {result.peer}: {litert}")
    console.print(f"arena {result.arena_bytes:,} B, code {result.code_bytes:,} B, "
                  f"weights {result.weight_bytes:,} B ({result.compiler})")


@app.command("energy")
def energy_command(
    model: ModelArgument,
    board: BoardOption = api.DEFAULT_BOARD,
    period: PeriodOption = None,
    events_per_hour: EventsPerHourOption = None,
    battery: BatteryOption = "CR2032",
    board_file: BoardFileOption = None,
    as_json: JsonOption = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write battery life against inference rate "
                                  "(log-log, crossovers marked): PNG, SVG... as the suffix says.")
    ] = None,
    calibration: CalibrationOption = None,
    scheme: SchemeOption = "affine",
) -> None:
    """Energy per inference, sleep modes, average power and battery life, duty-cycled.

    Compares where the model lives while the board sleeps: read in place from flash at each
    wake (xip), copied flash -> SRAM at each wake (copy), kept in retained SRAM (retained), or
    never sleeping (always-on), each in its best sleep mode, and the rates where the best
    strategy changes.
    """
    _check_plot(plot)
    rate = _energy_rate(period, events_per_hour)
    cell = parse_battery(battery)
    analysis = api.analyze_model(model, board, board_file, _quantize_options(calibration, scheme))
    sram = weights_in_sram(analysis.plan.graph, analysis.board, analysis.report,
                           analysis.plan.order, planned_steps(analysis.plan))
    report = energy_report(analysis.board, analysis.report, sram, rate, cell)
    if plot is not None:
        plot_life(report, plot)
    if as_json:
        _print_json(report.to_json())
    else:
        _print_energy(report)


def _energy_rate(period: float | None, events_per_hour: float | None) -> float:
    """Inferences per second from exactly one of --period and --events-per-hour."""
    hint = "give either --period SECONDS (e.g. 60) or --events-per-hour N (e.g. 60)"
    if (period is None) == (events_per_hour is None):
        raise McuflowError("give exactly one of --period and --events-per-hour", hint)
    given = period if period is not None else events_per_hour
    if given is None or not (math.isfinite(given) and given > 0):
        name = "--period" if period is not None else "--events-per-hour"
        raise McuflowError(f"{name} must be a positive number, got {given}", hint)
    return 1.0 / given if period is not None else given / 3600.0


def _print_energy(report: EnergyReport) -> None:
    run, best = report.run, report.best
    console.print(f"[bold]{escape(report.model)}[/] on {report.board.name}: one inference "
                  f"{run.latency_s * 1e3:.3f} ms, {run.energy_uj:,.1f} uJ "
                  f"({run.power_mw:.1f} mW while running), every {1 / report.rate_hz:.4g} s; "
                  f"battery {report.battery.name} ({report.battery.energy_j:,.0f} J)")
    modes = Table(title="Sleep modes")
    for column in ("mode", "kind", "uA", "uW", "SRAM kept B", "wake-up ms"):
        modes.add_column(column, justify="left" if column in ("mode", "kind") else "right")
    for mode in report.board.sleep_modes:
        modes.add_row(mode.name, mode.kind.value, f"{mode.current_ua:g}",
                      f"{mode.current_ua * report.board.supply_voltage_v:.3g}",
                      f"{mode.retained_sram_bytes:,}", f"{mode.wakeup_s * 1e3:.3g}")
    console.print(modes)
    _print_strategies(report)
    if best is not None:
        console.print(f"best: [bold]{best.name}[/] ({best.best.mode.name if best.best else ''}), "
                      f"{best.average_power_mw:.4g} mW average, "
                      f"{best.battery_life_days:,.1f} days on {report.battery.name}")
    if report.storage_lifetime_years is not None:
        console.print(f"spilled activations wear the external storage out in "
                      f"{report.storage_lifetime_years:,.3g} years at this rate")
    for cross in report.crossovers:
        how = "equal power" if cross.equal_power else f"{cross.below.strategy} cannot keep up"
        console.print(f"crossover: {cross.below.strategy} -> {cross.above.strategy} at "
                      f"{cross.rate_hz * 3600:,.4g} inferences/hour (every "
                      f"{1 / cross.rate_hz:.4g} s, {how})")


def _print_strategies(report: EnergyReport) -> None:
    table = Table(title="Where the model lives while sleeping")
    for column in ("strategy", "sleep mode", "wake uJ", "copy uJ", "inference uJ", "sleep uW",
                   "average mW", "life days"):
        table.add_column(column, justify="left" if column in ("strategy", "sleep mode")
                         else "right")
    for strategy in report.strategies:
        chosen = strategy.best
        if chosen is None:
            table.add_row(strategy.name, f"not possible: {strategy.reason}", *[""] * 6)
            continue
        table.add_row(strategy.name, chosen.mode.name, f"{chosen.wake_uj:,.1f}",
                      f"{chosen.copy_uj:,.1f}", f"{chosen.run.energy_uj:,.1f}",
                      f"{chosen.sleep_mw * 1e3:.3g}", f"{strategy.average_power_mw:.4g}",
                      f"{strategy.battery_life_days:,.1f}")
    console.print(table)


@app.command("run")
def run_command(
    model: ModelArgument,
    input_file: Annotated[Path, typer.Option("--input", "-i", help="Input tensor as .npy.")],
    output_file: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the output tensor as .npy.")
    ] = None,
    dump_dir: Annotated[
        Path | None,
        typer.Option("--dump-intermediates", help="Write every tensor as DIR/<tensor>.npy."),
    ] = None,
    calibration: CalibrationOption = None,
    scheme: SchemeOption = "affine",
    force: ForceOption = False,
) -> None:
    """Run the bit-exact reference interpreter on one input."""
    result = api.run_model(model, [_load_npy(input_file)],
                           _quantize_options(calibration, scheme))
    if dump_dir is not None:
        api.dump_tensors(result.tensors, dump_dir, force)
    if output_file is not None:
        api.write_array(result.outputs[0], output_file)
    else:
        console.print(result.outputs[0])


def _load_npy(path: Path) -> np.ndarray:
    """An array from a .npy file, whose declared size is checked against the file first."""
    return read_npy(path, f"input {path}", "save the input array with numpy.save")


@app.command("quantize")
def quantize_command(
    model: Annotated[Path, typer.Argument(help="A float .tflite or .onnx model, or a QDQ "
                                                "ONNX model (its own parameters are kept).")],
    out_file: Annotated[Path, typer.Option("--output", "-o", help="The int8 .tflite to write.")],
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help="Float samples: .npy, .npz or a "
                                  "folder (a QDQ model needs none).")
    ] = None,
    scheme: Annotated[
        str, typer.Option("--scheme", help="affine (TFLite int8), qformat (power-of-two), "
                          "codebook (k-means + Huffman; the .tflite holds the decoded weights) or "
                          "int16x8 (LiteRT's 16x8: int16 activations, int8 weights, int64 "
                          "biases).")
    ] = "affine",
    io_dtype: Annotated[
        str, typer.Option("--io-dtype", help="The model's inputs and outputs: int8, or uint8 "
                          "(a QUANTIZE at each edge, as LiteRT's inference_input_type=uint8); "
                          "int16x8 models take and give int16.")
    ] = "int8",
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--per-tensor", help="Weight scales per channel.")
    ] = True,
    method: Annotated[
        str, typer.Option("--method", help="Range choice: minmax, percentile or mse.")
    ] = "minmax",
    report: Annotated[
        bool, typer.Option("--report", help="Per-layer SQNR and weight bytes.")
    ] = False,
    codebook_size: Annotated[
        int, typer.Option("--codebook-size", help="Centroids per layer of codebook (16 or 256).")
    ] = api.DEFAULT_CODEBOOK_SIZE,
    bias_correction: Annotated[
        bool, typer.Option("--bias-correction/--no-bias-correction",
                           help="Move each layer's bias so its mean output over the calibration "
                           "data matches the float model's.")
    ] = True,
    evaluation: Annotated[
        Path | None,
        typer.Option("--evaluation", help="Float samples held out from calibration (.npy, .npz "
                     "or a folder) to measure the report on; default: the calibration samples.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Post-training quantisation of a float model to int8 with calibration data.

    An --evaluation .npz holding arrays `x` (samples) and `y` (class labels) also measures the
    top-1 accuracy of the int8 model and of the float one.
    """
    api.model_path(model)
    samples, labels = (None, None) if evaluation is None else api.evaluation_data(evaluation)
    with console.status("calibrating and quantising"):
        result = api.quantize_model(model, calibration, scheme, per_channel, method,
                                    codebook_size=codebook_size,
                                    bias_correction=bias_correction, evaluation=samples,
                                    io_dtype=io_dtype)
        scored = None if labels is None else api.accuracy(result, samples, labels)
    api.write_model(result.tflite(), out_file)
    quality = result.kept or result.report
    if as_json:
        measured = {} if scored is None else {"accuracy": scored.to_json()}
        _print_json({"output": str(out_file), **quality.to_json(), **measured})
        return
    kind = "the model's own parameters" if result.kept else scheme
    console.print(f"wrote {out_file} ({kind})")
    if result.kept is not None:
        _print_kept_report(result.kept, report)
    elif report:
        _print_quant_report(result.report)
    if scored is not None:
        console.print(f"top-1 accuracy on {scored.samples} labelled samples: int8 "
                      f"{scored.int8:.1%} (balanced {scored.int8_balanced:.1%}), float "
                      f"{scored.float32:.1%}")


def _print_kept_report(kept: KeptReport, every: bool) -> None:
    """The parameters kept from a QDQ model; all of them with --report, else the flagged."""
    shown = kept.tensors if every else kept.flagged
    console.print(f"{len(kept.tensors) - len(kept.flagged)} of {len(kept.tensors)} int8 tensors "
                  "keep the model's parameters (or share a neighbour's)")
    if not shown:
        return
    table = Table(title="Quantisation parameters" if every else "Not the model's own")
    for column in ("tensor", "role", "scale", "zero point", "channels", "origin", "model scale"):
        table.add_column(column)
    for t in shown:
        table.add_row(_ascii(t.tensor), t.role, f"{t.scale:.6g}", str(t.zero_point),
                      str(t.channels), t.origin.value,
                      "" if t.model_scale is None else f"{t.model_scale:.6g}")
    console.print(table)


def _print_quant_report(report: QuantReport) -> None:
    corrected = ", bias-corrected" if report.bias_corrected else ""
    measured = "held-out" if report.held_out else "calibration"
    table = Table(title=f"Quantisation error ({report.scheme}{corrected}) on "
                        f"{report.samples} {measured} samples")
    for column in ("layer", "op", "SQNR dB"):
        table.add_column(column, justify="right" if column == "SQNR dB" else "left")
    for layer in report.layers:
        table.add_row(_ascii(layer.tensor), layer.op, f"{layer.sqnr_db:.1f}")
    console.print(table)
    outputs = ", ".join(f"{_ascii(n)}: {v:.1f} dB" for n, v in report.output_sqnr_db.items())
    console.print(f"output SQNR: {outputs}")
    if report.top1_agreement is not None:
        console.print(f"top-1 agreement with the float model: {report.top1_agreement:.1%}")
    console.print(f"weights: {report.stored_weight_bytes:,} B stored, "
                  f"{report.unpacked_weight_bytes:,} B unpacked, "
                  f"{report.float_weight_bytes:,} B as float32")


@app.command("report")
def report_command(
    model: ModelArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write "
                                         "(replaced atomically when it exists).")],
    board: BoardOption = api.DEFAULT_BOARD,
    board_file: BoardFileOption = None,
    measure: Annotated[
        bool, typer.Option("--measure", help="Also build the firmware for the board's core, "
                           "run it on QEMU (bit-exact check) and put every layer's measured "
                           "instructions beside the estimates. Needs arm-none-eabi-gcc and "
                           "qemu-system-arm; takes longer.")
    ] = False,
    runs: Annotated[int, typer.Option("--runs", help="Random inputs compared to the bit "
                                      "(host, and QEMU with --measure).")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random inputs.")] = 0,
    period: PeriodOption = None,
    events_per_hour: EventsPerHourOption = None,
    battery: BatteryOption = "CR2032",
    calibration: CalibrationOption = None,
    scheme: SchemeOption = "affine",
    patches: PatchesOption = "auto",
    sram_budget: SramBudgetOption = None,
    max_overhead: MaxOverheadOption = None,
    input_mode: InputOption = "arena",
    external: ExternalOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Write one self-contained HTML page about the model on the board.

    Fit verdict and the fit advisor's options; per-layer table (--measure:
    QEMU's instructions of every layer beside the estimates); working-set
    and arena plots; quantisation parameters (with --calibration the SQNR
    per layer, for a QDQ ONNX model the parameters kept); exactness (the C
    against the reference interpreter and LiteRT, to the bit); energy and
    battery life at one inference a minute (--period, --events-per-hour).

    Figures are inline SVG: the file loads nothing from the network and
    runs no script. Exit code 1 when the C is not bit-exact.
    """
    _check_report_output(output)
    rate = (api.DEFAULT_REPORT_RATE_HZ if period is None and events_per_hour is None
            else _energy_rate(period, events_per_hour))
    cell = parse_battery(battery)
    request = _patch_request(patches, sram_budget, max_overhead, input_mode, external)
    where = "the host and QEMU" if measure else "the host"
    with console.status(f"analysing, verifying on {where}, drawing the report"):
        page = api.report_page(model, board, board_file, _quantize_options(calibration, scheme),
                               measure=measure, runs=runs, seed=seed, rate_hz=rate,
                               battery=cell, patches=request)
        api.write_report(render_page(page), output)
    bit_exact = all(result["bit_exact"] for result in (page.host, page.measured) if result)
    if as_json:
        _print_json({"output": str(output), "fits": page.fits, "bit_exact": bit_exact,
                     "host_verified": page.host is not None, "measured": page.measured is not None})
    else:
        verdict = "fits" if page.fits else "does not fit"
        checked = ("not verified: " + page.host_error if page.host is None and page.host_error
                   else "bit-exact" if bit_exact else "NOT bit-exact")
        console.print(f"wrote {escape(str(output))}: {escape(page.model)} {verdict} "
                      f"{page.report.board}; {escape(checked)}", highlight=False)
    if not bit_exact:
        raise typer.Exit(1)


def _check_report_output(path: Path) -> None:
    """Refuse an output that cannot be written before any work is done."""
    if path.is_dir():
        raise McuflowError(f"cannot write report '{path}': it is a directory",
                           "name a file inside it, e.g. report.html")
    if not path.parent.is_dir():
        raise McuflowError(f"cannot write report '{path}': no directory '{path.parent}'",
                           "check that the parent directory exists and is writable")


@app.command("boards")
def boards_command(board_file: BoardFileOption = None, as_json: JsonOption = False) -> None:
    """The board database: core, clock, SRAM, flash and memory tiers."""
    boards = load_boards(board_file)
    if as_json:
        _print_json([board.to_json() for board in boards.values()])
        return
    table = Table(title="Boards")
    table.add_column("id", no_wrap=True, min_width=max(len(board_id) for board_id in boards))
    table.add_column("name", overflow="fold")
    table.add_column("core", no_wrap=True, min_width=len("cortex-m0plus"))
    for column in ("clock MHz", "SRAM KiB", "flash KiB"):
        table.add_column(column, justify="right")
    table.add_column("tiers", no_wrap=True)
    for board in boards.values():
        table.add_row(
            board.id, board.name, board.core, f"{board.clock_hz / 1e6:g}",
            f"{board.sram_bytes / 1024:g}", f"{board.flash_bytes / 1024:g}",
            "\n".join(tier.kind.value for tier in board.tiers),
        )
    (console if console.is_terminal else Console(width=PIPED_WIDTH)).print(table)


@app.command("ops")
def ops_command(
    as_json: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print SUPPORTED_OPS.md.")] = False,
) -> None:
    """Supported operators and the constraints a model must satisfy."""
    if markdown:
        sys.stdout.write(supported_ops_markdown())
        return
    if as_json:
        _print_json({
            kind.value: [c.message for c in constraints_for(kind)] for kind in OpKind
        })
        return
    table = Table(title="Supported operators (int8; int16 where int16_activations says)")
    table.add_column("op")
    table.add_column("constraints")
    for kind in OpKind:
        table.add_row(kind.value, "\n".join(f"- {c.message}" for c in constraints_for(kind)))
    console.print(table)


@app.command("demo")
def demo_command(
    board: BoardOption = api.DEFAULT_BOARD,
) -> None:
    """The whole pipeline on the bundled example model and board."""
    model = api.demo_model_path()
    console.rule(f"[bold]mcuflow demo: {model.name} on {board}")
    analysis = api.analyze_model(model, board)
    render_report(analysis.report, console)
    with tempfile.TemporaryDirectory(prefix="mcuflow-demo-") as scratch:
        project = api.compile_analysis(analysis, Path(scratch) / "demo_kws")
        console.print(f"compiled to C: {len(project.files)} files, arena "
                      f"{project.arena_bytes:,} B, weights {project.weight_bytes:,} B")
        with console.status("verifying the C just written on the host"):
            result = api.verify_compiled(project.path, runs=20)
    _print_verify(result)
    if not result.bit_exact:
        raise typer.Exit(1)


def error_line(text: str) -> str:
    """`mcuflow: error: text` on one printable line (control characters shown escaped).

    Names from a model file reach messages and may hold newlines or terminal escapes.
    """
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return f"mcuflow: error: {shown}"


def main() -> None:
    """Run the command line: user errors become one `mcuflow: error: …` line and exit code 2.

    Numerical warnings are not the user's business on a successful run: the checks that matter
    (overflow during calibration, non-finite weights) are errors of their own.
    """
    warnings.simplefilter("ignore", RuntimeWarning)
    try:
        # Without standalone mode, typer returns the code of a `typer.Exit` instead of exiting.
        status = app(standalone_mode=False)
    except McuflowError as error:
        if os.environ.get("MCUFLOW_DEBUG"):
            traceback.print_exc()
        _fail(error.message, error.hint)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        sys.stderr.write("mcuflow: aborted\n")
        sys.exit(130)
    except typer.TyperException as error:
        _fail(str(error), "see `mcuflow --help`")
    if isinstance(status, int) and status:
        sys.exit(status)


def _fail(message: str, hint: str) -> NoReturn:
    """Exit 2 with one `mcuflow: error: …` line; with --json, also `{"error", "hint"}` on stdout."""
    if _wants_json(sys.argv[1:]):
        _print_json({"error": message, "hint": hint})
    shown_hint = f" (hint: {hint})" if hint else ""
    sys.stderr.write(error_line(f"{message}{shown_hint}") + "\n")
    sys.exit(2)


def _wants_json(args: list[str]) -> bool:
    """--json among the options (before any `--`, after which words are file names)."""
    return "--json" in (args[:args.index("--")] if "--" in args else args)
