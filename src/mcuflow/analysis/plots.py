"""Plots of a Report: the per-layer working set against the board's SRAM (Figure 3 of the study)."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mcuflow.analysis.metrics import Report
from mcuflow.outputs import write_file

_FITS_COLOUR = "#4c72b0"
_OVER_COLOUR = "#c44e52"


def working_set_figure(report: Report) -> Figure:
    """Bars of each layer's working set (KiB) in execution order, a line at the SRAM size."""
    figure = Figure(figsize=(max(6.0, 0.18 * len(report.layers) + 2.0), 4.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    sizes = [layer.working_set_bytes / 1024 for layer in report.layers]
    colours = [_OVER_COLOUR if layer.working_set_bytes > report.sram_bytes else _FITS_COLOUR
               for layer in report.layers]
    axes.bar(range(len(sizes)), sizes, color=colours)
    axes.axhline(report.sram_bytes / 1024, color="black", linestyle="--")
    axes.set_xlabel("layer (execution order)")
    axes.set_ylabel("working set (KiB)")
    axes.set_title(f"Per-layer working set: {report.model} on {report.board_name}")
    axes.legend(handles=[
        Patch(color=_FITS_COLOUR, label="fits in SRAM"),
        Patch(color=_OVER_COLOUR, label="exceeds SRAM"),
        axes.lines[0],
    ], labels=["fits in SRAM", "exceeds SRAM", f"SRAM {report.sram_bytes / 1024:g} KiB"],
        loc="best")
    figure.tight_layout()
    return figure


def plot_working_set(report: Report, path: Path) -> None:
    """Write the working-set bar chart of `report` as a PNG file at `path` (atomically)."""
    png = io.BytesIO()
    working_set_figure(report).savefig(png, format="png", dpi=120)
    write_file(path, png.getvalue(), "plot")
