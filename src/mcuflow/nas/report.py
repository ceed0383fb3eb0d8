"""The search's one-page HTML report: space optimisation, Pareto front, evolution, comparison."""

from __future__ import annotations

import html
import importlib.metadata
from collections.abc import Callable
from typing import TYPE_CHECKING

from mcuflow.analysis.html_report import (
    figure_svg,
    html_document,
    html_figure,
    html_table,
    literal_text,
)
from mcuflow.analysis.plots import new_figure, plain_log_scale
from mcuflow.nas.space import used_slots

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from mcuflow.nas.pipeline import Deployed, SearchReport
    from mcuflow.nas.space import Arch, SearchSpace

_FOUND_COLOUR = "#c62828"
_BASELINE_COLOUR = "#1565c0"


def render_report(report: SearchReport) -> str:
    """The report as one self-contained HTML document (inline CSS and SVG, no script)."""
    title = f"mcuflow search: {report.dataset} on {report.board}"
    with literal_text():
        figures = (figure_svg(macs_cdf_figure(report), "cdf"),
                   figure_svg(pareto_figure(report), "pareto"),
                   figure_svg(generations_figure(report), "gen"))
    body = "\n".join([
        f"<h1>{_e(title)}</h1>",
        f"<p class=sub>{report.samples:,} samples ({_e(report.sample_form())}), "
        f"{report.classes} classes "
        f"({_e(', '.join(report.class_labels))}, by output index) &middot; seed "
        f"{report.options.seed} &middot; --minutes {report.options.minutes:g} &middot; "
        f"{report.options.workers} worker(s) &middot; limits: {_limits(report)}</p>",
        (f"<p>{_e(report.standardization.sentence())}</p>" if report.standardization else ""),
        "<h2 id=comparison>Found model against the baseline</h2>", _comparison(report),
        "<h2 id=space>Search-space optimisation</h2>",
        "<p>Each (width, resolution) space is sampled; the chosen one has the most MACs among "
        "its fitting samples (more capacity within the limits). The curves are the "
        "cumulative distribution of the MACs of the samples that fit.</p>",
        f"<p>{_e(describe_space(report.result.space))}.</p>",
        html_figure(figures[0], "MACs distribution of the fitting samples per space"),
        _spaces(report),
        "<h2 id=pareto>Pareto front</h2>",
        html_figure(figures[1], "validation accuracy against MACs"), _pareto(report),
        "<h2 id=evolution>Evolution</h2>",
        html_figure(figures[2], "best validation accuracy per generation"),
        _search_figures(report),
    ])
    return html_document(title, body, importlib.metadata.version("mcuflow"))


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _limits(report: SearchReport) -> str:
    limits = report.options.limits
    latency = "" if limits.latency_ms is None else f", latency {limits.latency_ms:g} ms"
    return _e(f"SRAM {limits.sram_bytes:,} B, flash {limits.flash_bytes:,} B{latency}")


def describe(arch: Arch, space: SearchSpace) -> str:
    """An architecture in a few words: width, resolution, depths, kernels and expansions used.

    The resolution names the columns too where they differ from the rows (e.g. 49 x 10).
    """
    used = used_slots(arch, space)
    size = space.input_size(arch.resolution)
    resolution = " x ".join(map(str, size)) if len(set(size)) > 1 else str(arch.resolution)
    return (f"width {arch.width:g}, resolution {resolution}, depths "
            f"{'-'.join(map(str, arch.depths))}, kernels "
            f"{''.join(str(arch.kernels[slot]) for slot in used)}, expansions "
            f"{''.join(str(arch.expansions[slot]) for slot in used)}")


def describe_space(space: SearchSpace) -> str:
    """The space searched in a sentence: its choices, then the stem, the stages and the head."""
    def listed(values: tuple[float, ...]) -> str:
        return ", ".join(f"{value:g}" for value in values)

    stages = "; ".join(f"{stage.channels} channels, {stage.min_depth}-{stage.max_depth} "
                       f"blocks, stride {stage.stride}" for stage in space.stages)
    head = f"{space.head_channels} channels" if space.head_channels else "none"
    return (f"The space: kernels {listed(space.kernels)}, expansions "
            f"{listed(space.expansions)}, widths {listed(space.widths)}, resolutions "
            f"{listed(space.resolutions)}; stem {space.stem_channels} channels, stride "
            f"{space.stem_stride}; stages (channels before the width): {stages}; head {head}")


def latency_note(report: SearchReport) -> str:
    """Where the found model is the slower and no --latency-ms limited it: how to weigh it."""
    found, baseline = report.found.fit.latency_ms, report.baseline.fit.latency_ms
    if report.options.limits.latency_ms is not None or found <= baseline:
        return ""
    return (f"The found model's estimated latency is {found / baseline:.1f} times the "
            f"baseline's: without --latency-ms the search does not weigh latency "
            f"(--latency-ms {baseline:.0f} keeps the candidates as fast as the baseline).")


def _comparison(report: SearchReport) -> str:
    found, baseline = report.found, report.baseline

    def row(name: str, cell: Callable[[Deployed], str]) -> list[str]:
        return [_e(name), *(_e(cell(model)) for model in (found, baseline))]

    rows = [row("architecture", lambda m: describe(m.arch, report.result.space)),
            row("MACs", lambda m: f"{m.fit.macs:,}"),
            row("int8 test accuracy", lambda m: _pct(m.int8_accuracy)),
            row("int8 balanced accuracy (mean recall of the classes)",
                lambda m: _pct(m.int8_balanced_accuracy)),
            row("float test accuracy", lambda m: _pct(m.float_accuracy)),
            row("peak RAM (B)", lambda m: f"{m.fit.peak_ram_bytes:,}"),
            row("flash (B)", lambda m: f"{m.fit.flash_bytes:,}"),
            row("latency (ms, estimated)", lambda m: f"{m.fit.latency_ms:.2f}"),
            row("fits the limits", lambda m: "yes" if m.fit.fits else "no"),
            row("trained from", lambda m: m.training())]
    qemu = report.qemu
    verdict = ('<span class=good>bit-exact</span>' if qemu.bit_exact
               else '<span class=bad>MISMATCH</span>')
    return (html_table(["", "found", "baseline (MobileNetV2 scaled to fit)"], rows, left=(0, 1, 2))
            + f"<p>{_e(report.paired.summary())}</p>"
            + (f"<p>{_e(note)}</p>" if (note := latency_note(report)) else "")
            + f"<p>The found model's firmware for {_e(qemu.target)}, linked in "
            f"{_e(report.board)}'s memory, on QEMU {_e(qemu.machine)}: {verdict} on "
            f"{qemu.runs} random inputs, {qemu.instructions:,} instructions per inference "
            f"(about {qemu.estimated_ms:.2f} ms on the board), flash {qemu.flash_bytes:,} B, "
            f"RAM {qemu.ram_bytes:,} B.</p>"
            "<p class=note>Each model is trained from scratch for the supernet's and the "
            "fine-tuning's epochs together, and, where the supernet holds it, fine-tuned from "
            "the supernet's weights; the start of higher validation accuracy is deployed. "
            "Both are quantised by mcuflow's PTQ on the same calibration samples and scored on "
            "the held-out test split.</p>")


def _spaces(report: SearchReport) -> str:
    chosen = report.result.chosen
    rows = [[f"{space.width:g}", str(space.resolution), str(space.samples), str(space.fitting),
             f"{space.mean_macs:,.0f}", "chosen" if space == chosen else ""]
            for space in report.result.spaces]
    return html_table(["width", "resolution", "samples", "fitting", "mean MACs (fitting)", ""],
                      rows, left=(5,), caption="TinyNAS space optimisation")


def _pareto(report: SearchReport) -> str:
    best = report.result.best
    listed = [*report.result.pareto, *([] if best in report.result.pareto else [best])]
    rows = [[_e(describe(candidate.arch, report.result.space)), f"{candidate.fit.macs:,}",
             f"{candidate.fit.peak_ram_bytes:,}", f"{candidate.fit.flash_bytes:,}",
             f"{candidate.fit.latency_ms:.2f}", _pct(candidate.accuracy),
             "winner" if candidate == best else ""]
            for candidate in sorted(listed, key=lambda candidate: candidate.fit.macs)]
    return html_table(["architecture", "MACs", "peak RAM (B)", "flash (B)", "latency (ms)",
                       "val accuracy", ""], rows, left=(0, 6),
                      caption="validation accuracy with the supernet's weights (batch norm "
                      "recalibrated) against MACs, and the winner: the candidate of most MACs "
                      f"within a standard error of the best on {report.result.ranked_samples:,} "
                      "validation samples; RAM, flash and latency as the fit check "
                      "planned each architecture, with stand-in int8 weights (the found model's "
                      "figures below are its deployed weights', after training and PTQ)")


def _search_figures(report: SearchReport) -> str:
    result = report.result
    return (f"<p>{result.evaluated:,} candidates evaluated, {result.fit_checks:,} fit checks "
            f"through mcuflow's planner ({result.fit_checks_per_second:,.0f} per second per core, "
            "measured). Budget: "
            + _e(", ".join(f"{name} {value}" for name, value in vars(report.budget).items()))
            + ".</p>")


def macs_cdf_figure(report: SearchReport) -> Figure:
    """Per (width, resolution) space: the cumulative share of samples that fit, by MACs."""
    figure, axes = _figure()
    chosen = report.result.chosen
    for space in report.result.spaces:
        if not space.macs:
            continue
        shares = [(index + 1) / space.samples for index in range(len(space.macs))]
        is_chosen = space == chosen
        axes.step(space.macs, shares, where="post", linewidth=2.5 if is_chosen else 1.0,
                  alpha=1.0 if is_chosen else 0.6,
                  label=f"w {space.width:g}, r {space.resolution}" + (" (chosen)" if is_chosen
                                                                        else ""))
    plain_log_scale(axes, "x")
    axes.set_xlabel("MACs")
    axes.set_ylabel("share of samples that fit, up to these MACs")
    axes.set_title("MACs of the fitting samples per (width, resolution)")
    if axes.lines:
        axes.legend(fontsize="x-small", ncol=2, loc="upper left")
    figure.tight_layout()
    return figure


def pareto_figure(report: SearchReport) -> Figure:
    """The Pareto front (val accuracy against MACs), and the deployed found and baseline models.

    The two deployed models are at their int8 test accuracy after training.
    """
    figure, axes = _figure()
    front = sorted(report.result.pareto, key=lambda candidate: candidate.fit.macs)
    axes.plot([c.fit.macs for c in front], [100 * c.accuracy for c in front], "o-",
              color="#555555", label="Pareto front (val, supernet weights)")
    _mark(axes, report.found, "*", _FOUND_COLOUR, "found (test, int8, trained)")
    _mark(axes, report.baseline, "s", _BASELINE_COLOUR, "baseline (test, int8, trained)")
    plain_log_scale(axes, "x")
    axes.set_xlabel("MACs")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title("Accuracy against MACs")
    axes.legend(fontsize="small", loc="lower right")
    figure.tight_layout()
    return figure


def _mark(axes: Axes, model: Deployed, marker: str, colour: str, label: str) -> None:
    axes.plot([model.fit.macs], [100 * model.int8_accuracy], marker, color=colour, markersize=14,
              linestyle="none", label=label)


def generations_figure(report: SearchReport) -> Figure:
    """The best validation accuracy after each generation of the evolution."""
    figure, axes = _figure()
    accuracies = [100 * value for value in report.result.generations]
    axes.plot(range(1, len(accuracies) + 1), accuracies, "o-", color=_FOUND_COLOUR)
    axes.set_xlabel("generation")
    axes.set_ylabel("best val accuracy (%)")
    axes.set_title("Evolution")
    figure.tight_layout()
    return figure


def _figure() -> tuple[Figure, Axes]:
    figure = new_figure(7.0, 4.2)
    return figure, figure.add_subplot()
