"""Plots of a Report: the per-layer working set against the board's SRAM (Figure 3 of the study)."""

from __future__ import annotations

import functools
import io
import math
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mcuflow.analysis.metrics import Report
from mcuflow.errors import OutputError
from mcuflow.outputs import write_file

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

_FITS_COLOUR = "#4c72b0"
_OVER_COLOUR = "#c44e52"


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib Figure of `width` x `height` inches, drawn by the Agg canvas.

    matplotlib is imported when a figure is made (it takes a noticeable part of a second,
    which commands that draw nothing should not wait for).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


@functools.cache
def plot_formats() -> tuple[str, ...]:
    """What --plot writes, named by the file's suffix: matplotlib's formats but PGF (LaTeX)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return tuple(sorted(set(FigureCanvasAgg.get_supported_filetypes()) - {"pgf"}))


PLAIN_MINOR_DECADES = 2
"""A log axis spanning fewer decades also labels its minor ticks at 2x and 5x."""


def plain_log_scale(axes: Axes, which: str = "x") -> None:
    """Put axis `which` ("x" or "y") on a log scale labelled in plain text (0.1, 100, 2k, 1M).

    matplotlib's own log labels are mathtext, which a figure drawn under literal_text (names
    from a model shown as they are) would print as raw `$\\mathdefault{10^{5}}$`.
    """
    from matplotlib.ticker import FuncFormatter

    axis = axes.xaxis if which == "x" else axes.yaxis
    (axes.set_xscale if which == "x" else axes.set_yscale)("log")
    axis.set_major_formatter(FuncFormatter(lambda value, _: plain_number(value)))
    axis.set_minor_formatter(FuncFormatter(lambda value, _: _minor_label(axis, value)))


def plain_number(value: float) -> str:
    """`value` as a short label: 0.01, 0.5, 20, 999, then 1k, 20k, 3M with SI prefixes."""
    return _engineering()(value) if abs(value) >= 1000 else f"{value:g}"


@functools.cache
def _engineering() -> Callable[[float], str]:
    """matplotlib's formatter of SI prefixes, without a space (1k, 20k, 3M)."""
    from matplotlib.ticker import EngFormatter

    return EngFormatter(sep="")


def _minor_label(axis: Axis, value: float) -> str:
    """The 2x and 5x minor ticks of an axis spanning few decades, else nothing."""
    low, high = sorted(axis.get_view_interval())
    if value <= 0 or low <= 0 or math.log10(high / low) >= PLAIN_MINOR_DECADES:
        return ""
    lead = round(value / 10 ** math.floor(math.log10(value)))
    return plain_number(value) if lead in (2, 5) else ""


def plot_format(path: Path) -> str:
    """The format `path`'s suffix names (png, svg, pdf...); OutputError for any other.

    A directory, device or pipe at `path` is refused first, with write_file's own message.
    """
    if _special(Path(path)):
        write_file(path, b"", "plot")  # raises: write_file writes only regular files
    given = Path(path).suffix
    if given.lower().removeprefix(".") not in plot_formats():
        problem = f"unknown image format '{given}'" if given else "no image format suffix"
        others = ", ".join(f for f in plot_formats() if f not in ("png", "svg", "pdf"))
        raise OutputError(f"cannot write plot '{path}': {problem}",
                          f"end the file name with .png, .svg or .pdf; matplotlib also writes "
                          f"{others}")
    return given.lower().removeprefix(".")


def _special(path: Path) -> bool:
    """Something is at `path` that is neither a regular file nor a link."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISLNK(mode))


def save_figure(figure: Figure, path: Path) -> None:
    """Write `figure` at `path` (atomically) in the format its suffix names."""
    data = io.BytesIO()
    figure.savefig(data, format=plot_format(path), dpi=120)
    write_file(path, data.getvalue(), "plot")


def working_set_figure(report: Report) -> Figure:
    """Bars of each layer's working set (KiB) in execution order, a line at the SRAM size."""
    from matplotlib.patches import Patch

    figure = new_figure(max(6.0, 0.18 * len(report.layers) + 2.0), 4.0)
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
    """Write the working-set bar chart of `report` at `path` (PNG, SVG, PDF... by suffix)."""
    save_figure(working_set_figure(report), path)
