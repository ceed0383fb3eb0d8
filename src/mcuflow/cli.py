"""The `mcuflow` command line: thin typer commands over mcuflow.api."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from mcuflow import api
from mcuflow.analysis.plots import plot_working_set
from mcuflow.analysis.report import render_report
from mcuflow.errors import McuflowError
from mcuflow.hw.board import load_boards
from mcuflow.ir.constraints import constraints_for, supported_ops_markdown
from mcuflow.ir.ops import OpKind

app = typer.Typer(
    help="mcuflow: will your network fit a microcontroller, how to make it fit, exact C for it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

BoardOption = Annotated[
    str, typer.Option("--board", "-b", help="Board id (see `mcuflow boards`).")
]
BoardFileOption = Annotated[
    Path | None, typer.Option("--board-file", help="A TOML board database to use instead.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ModelArgument = Annotated[Path, typer.Argument(help="A .tflite model file.")]


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


@app.command("analyze")
def analyze_command(
    model: ModelArgument,
    board: BoardOption = api.DEFAULT_BOARD,
    board_file: BoardFileOption = None,
    as_json: JsonOption = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the per-layer working set as a PNG.")
    ] = None,
) -> None:
    """Per-layer MACs, weights, working set, peak RAM, fit verdict, latency and energy."""
    analysis = api.analyze_model(model, board, board_file)
    if plot is not None:
        plot_working_set(analysis.report, plot)
    if as_json:
        _print_json(analysis.report.to_json())
    else:
        render_report(analysis.report, console)


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
) -> None:
    """Run the bit-exact reference interpreter on one input."""
    result = api.run_model(model, [_load_npy(input_file)])
    if dump_dir is not None:
        api.dump_tensors(result.tensors, dump_dir)
    if output_file is not None:
        np.save(output_file, result.outputs[0])
    else:
        console.print(result.outputs[0])


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise McuflowError(f"cannot read input {path}: {error}", hint="pass a .npy file") from None


@app.command("boards")
def boards_command(board_file: BoardFileOption = None, as_json: JsonOption = False) -> None:
    """The board database: core, clock, SRAM, flash and memory tiers."""
    boards = load_boards(board_file)
    if as_json:
        _print_json([board.to_json() for board in boards.values()])
        return
    table = Table(title="Boards")
    for column in ("id", "name", "core", "clock MHz", "SRAM KiB", "flash KiB", "tiers"):
        table.add_column(column)
    for board in boards.values():
        table.add_row(
            board.id, board.name, board.core, f"{board.clock_hz / 1e6:g}",
            f"{board.sram_bytes / 1024:g}", f"{board.flash_bytes / 1024:g}",
            ", ".join(tier.kind.value for tier in board.tiers),
        )
    console.print(table)


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
    table = Table(title="Supported operators (int8)")
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


def main() -> None:
    """Entry point: user errors become one `mcuflow: error: …` line and exit code 2."""
    try:
        app(standalone_mode=False)
    except McuflowError as error:
        if os.environ.get("MCUFLOW_DEBUG"):
            traceback.print_exc()
        hint = f" (hint: {error.hint})" if error.hint else ""
        sys.stderr.write(f"mcuflow: error: {error.message}{hint}\n")
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        sys.stderr.write("mcuflow: aborted\n")
        sys.exit(130)
    except typer.TyperException as error:
        sys.stderr.write(f"mcuflow: error: {error} (hint: see `mcuflow --help`)\n")
        sys.exit(2)
