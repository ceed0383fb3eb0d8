"""The `mcuflow search` command, registered on mcuflow.cli's app (imported by __main__)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from mcuflow import api
from mcuflow.cli import BoardFileOption, JsonOption, app, console
from mcuflow.errors import McuflowError
from mcuflow.nas.data import Layout
from mcuflow.nas.fitcheck import limits_for
from mcuflow.nas.pipeline import Deployed, SearchReport, check_output, report_json, run_search
from mcuflow.nas.report import describe, describe_space, latency_note
from mcuflow.nas.search import SearchOptions
from mcuflow.nas.space_file import SpaceEdits, read_space

STAGES = {"read": "reading the images", "space": "search-space optimisation (fit checks)",
          "supernet": "training the supernet", "evolution": "evolutionary search (generations)",
          "deploy": "training, PTQ, QEMU"}
"""What each stage the search reports is called on the progress bars."""


@app.command("search")
def search_command(
    data: Annotated[
        str, typer.Option("--data", help="Labelled training data: digits (scikit-learn's 8x8 "
                          "digits), mnist1d, an .npz holding x (N x H x W x C images, uint8 N "
                          "x H x W grey images, or N x T x C series) and y (labels: numbers, "
                          "text or one-hot rows; sorted, they become output indices), or a "
                          "folder with one sub-folder of images per class (PNG, JPEG, TIFF, "
                          "WebP, AVIF, HEIC and others, found at any "
                          "depth, turned upright by their EXIF orientation, resampled to their "
                          "most common size). Images larger than the SRAM limit are read "
                          "smaller. 60/20/20 train/val/test, stratified. Channels "
                          "an int8 input would blur (far from zero) or too small to train on "
                          "are standardised, as the summary says.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write: model.onnx, "
                           "model_int8.tflite, the baseline's, report.json and report.html.")
    ],
    board: Annotated[str, typer.Option("--board", "-b", help="Board id (see `mcuflow boards`).")],
    board_file: BoardFileOption = None,
    layout: Annotated[
        Layout, typer.Option("--layout", help="How an .npz's x is read: images (N x H x W x "
                             "C, or N x H x W grey images of any type), series (N x T x C, or "
                             "N x T) or auto (N x H x W x C and uint8 N x H x W are images, "
                             "the rest series).", case_sensitive=False)
    ] = Layout.AUTO,
    sram_budget: Annotated[
        int | None, typer.Option("--sram-budget", help="Bytes of SRAM the model may use "
                                 "(default: the board's).")
    ] = None,
    flash_budget: Annotated[
        int | None, typer.Option("--flash-budget", help="Bytes of flash the firmware may use "
                                 "(default: the board's, or the external flash it executes "
                                 "in place from).")
    ] = None,
    space_file: Annotated[
        Path | None, typer.Option("--space", help="A TOML file of the search space's choices: "
                                  "kernels, expansions, widths, resolutions (an image's rows "
                                  "or a series' steps), [[stages]] (channels, min_depth, "
                                  "max_depth, stride), stem_channels, stem_stride, "
                                  "head_channels. Keys left out keep the ones chosen for the "
                                  "data (see the README).")
    ] = None,
    latency_ms: Annotated[
        float | None, typer.Option("--latency-ms", help="Largest estimated latency of one "
                                   "inference on the board, in milliseconds (default: none).")
    ] = None,
    minutes: Annotated[
        float, typer.Option("--minutes", help="Size of the search: a fixed table of epochs, "
                            "samples and generations that takes about this long on 2 cores (1: "
                            "a tiny search, 20: the largest search; above 20 the training's "
                            "epochs grow in proportion). Never a timer: the result depends "
                            "only on the data, the options and --seed.")
    ] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random choice.")] = 0,
    workers: Annotated[
        int, typer.Option("--workers", help="Evaluate candidates on this many local Ray "
                          "workers (1: in this process). The result is the same for any number.")
    ] = 1,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Evaluate on this Ray cluster instead "
                                 "(auto: the one `ray start` runs on this machine; for an "
                                 "address, Ray 2.59 and later want RAY_AUTH_MODE=token "
                                 "exported with the cluster's token).")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="The search's checkpoint file (default: "
                                  "OUT.checkpoint beside the output directory).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted search from its "
                           "checkpoint (same data and options), the models it had trained "
                           "included.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Search a network that fits the board, train, quantise and verify it.

    TinyNAS style: the (width, resolution) space whose fitting networks
    have the most MACs is chosen, a weight-shared supernet is trained for
    it, and an evolution ranks the candidates that pass mcuflow's fit
    check (SRAM, flash, latency) by validation accuracy. The winner, the
    candidate of most MACs within a standard error of the best, is
    fine-tuned from the supernet and trained from scratch (the start of
    higher validation accuracy is kept), quantised by mcuflow's PTQ,
    compared with a MobileNetV2 scaled to fit and trained alike, and run
    on QEMU linked in the board's memory.
    """
    build = api.build_for(board, board_file)
    saved = checkpoint or default_checkpoint(out_dir)
    options = SearchOptions(build, limits_for(build, sram_budget, flash_budget, latency_ms),
                            minutes, seed, workers, ray_address, saved, resume,
                            read_space(space_file) if space_file else SpaceEdits())
    check_output(out_dir)
    _require_torch()
    if resume and not saved.exists():
        Console(stderr=True).print(f"no checkpoint at {escape(str(saved))}: the search starts "
                                   "afresh", highlight=False, soft_wrap=True)
    with _progress(as_json) as progress:
        report = run_search(data, options, out_dir, progress, layout)
    if as_json:
        sys.stdout.write(report_json(report))
    else:
        print_summary(report, out_dir, options, layout)


def default_checkpoint(out_dir: Path) -> Path:
    """OUT.checkpoint, beside the output directory (which is written only at the end)."""
    out_dir = out_dir.absolute()
    return out_dir.with_name(f"{out_dir.name}.checkpoint")


def _require_torch() -> None:
    """Refuse, before any work, to search without PyTorch (an optional extra)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise McuflowError("`mcuflow search` trains networks with PyTorch, which is not "
                           "installed", "pip install 'mcuflow[nas]'") from None


@contextmanager
def _progress(as_json: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per stage on stderr (none with --json or off a terminal)."""
    errors = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=errors,
                  disable=as_json or not errors.is_terminal) as bars:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(STAGES.get(stage, stage), total=total)
            bars.update(tasks[stage], completed=done, total=total)

        yield update


def _layout_hint(report: SearchReport, layout: Layout) -> str:
    """Where --layout auto read N x T x C series: how to read them as grey images instead."""
    if layout is Layout.AUTO and report.layout is Layout.SERIES and report.sample_shape[-1] > 1:
        return " (x read as N x T x C; --layout images reads N x H x W grey images)"
    return ""


def print_summary(report: SearchReport, out_dir: Path, options: SearchOptions,
                  layout: Layout) -> None:
    """The data, the found model beside the baseline, the QEMU check and the files written."""
    found, baseline, qemu = report.found, report.baseline, report.qemu
    console.print(f"data: {report.samples:,} samples, {escape(report.sample_form())}, "
                  f"{report.classes} classes{_layout_hint(report, layout)}", highlight=False)
    if report.standardization:
        console.print(escape(report.standardization.sentence()), highlight=False)
    table = Table(title=f"{report.dataset} on {report.board}: found vs baseline")
    for column in ("", "found", "baseline"):
        table.add_column(column, justify="left" if not column else "right")
    rows: tuple[tuple[str, Callable[[Deployed], str]], ...] = (
            ("int8 test accuracy", lambda m: f"{100 * m.int8_accuracy:.1f} %"),
            ("int8 balanced accuracy", lambda m: f"{100 * m.int8_balanced_accuracy:.1f} %"),
            ("float test accuracy", lambda m: f"{100 * m.float_accuracy:.1f} %"),
            ("MACs", lambda m: f"{m.fit.macs:,}"),
            ("peak RAM", lambda m: f"{m.fit.peak_ram_bytes:,} B"),
            ("flash", lambda m: f"{m.fit.flash_bytes:,} B"),
            ("latency (estimated)", lambda m: f"{m.fit.latency_ms:.2f} ms"),
            ("fits", lambda m: "yes" if m.fit.fits else "[red]no[/]"),
            ("trained from", lambda m: escape(m.training())))
    for name, cell in rows:
        table.add_row(name, cell(found), cell(baseline))
    console.print(table)
    console.print(escape(report.paired.summary()), highlight=False)
    note = latency_note(report)
    if note:
        console.print(note, highlight=False)
    space = report.result.space
    if options.space != SpaceEdits():
        console.print(f"{escape(describe_space(space))} (--space)", highlight=False)
    console.print(f"found: {escape(describe(found.arch, space))}", highlight=False)
    console.print(f"baseline: {escape(describe(baseline.arch, space))}", highlight=False)
    verdict = "[green]bit-exact[/]" if qemu.bit_exact else "[red]MISMATCH[/]"
    console.print(f"QEMU ({qemu.target}, {qemu.machine}, linked for {report.board}): {verdict}, "
                  f"{qemu.instructions:,} instructions per inference", highlight=False)
    result = report.result
    console.print(f"search: {result.evaluated:,} candidates evaluated, {result.fit_checks:,} "
                  f"fit checks ({result.fit_checks_per_second:,.0f} per second per core)",
                  highlight=False)
    console.print(f"wrote {escape(str(out_dir))}/: model.onnx, model_int8.tflite, "
                  f"baseline.onnx, baseline_int8.tflite, report.json, report.html; checkpoint "
                  f"{escape(str(options.checkpoint))}", highlight=False)
