"""The one-page HTML report: fit verdict, advice, layers, plots, quantisation, exactness, energy.

Pure rendering: everything arrives as data (dataclasses and JSON-able dicts) and figures; the
page is one self-contained file: inline CSS, inline SVG figures, no script, nothing fetched.
Every string that may come from a model file (tensor and op names) is escaped.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcuflow.analysis.energy import EnergyReport
from mcuflow.analysis.metrics import Report
from mcuflow.ir.graph import Graph
from mcuflow.quant.qdq import KeptReport
from mcuflow.quant.report import QuantReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                           "base-uri 'none'; form-action 'none'")
"""The page's own policy: a browser fetches nothing for it, even if something slipped in."""


# --- figures as inline SVG ------------------------------------------------------------------


def literal_text() -> AbstractContextManager[None]:
    """Figures made within draw names from the model literally: a `$` starts no mathtext."""
    import matplotlib

    return matplotlib.rc_context({"text.parse_math": False})


def figure_svg(figure: Figure, prefix: str) -> str:
    """`figure` as inline SVG markup (text drawn as paths: no fonts), ids prefixed by `prefix`."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "mcuflow"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return svg_markup(buffer.getvalue(), prefix)


def svg_markup(document: str, prefix: str) -> str:
    """An SVG file as markup to inline in HTML: no XML prolog or metadata, ids prefixed.

    The prefix keeps several figures on one page from sharing (and mixing up) clip paths.
    """
    start = document.find("<svg")
    if start < 0:
        raise ValueError("not an SVG document")
    markup = re.sub(r"<metadata>.*?</metadata>\s*", "", document[start:], flags=re.S)
    markup = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', markup)
    markup = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", markup)
    return re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', markup)


# --- the quantisation parameters of an int8 graph -------------------------------------------


@dataclass(frozen=True)
class TensorQuant:
    """A tensor's affine parameters: the first scale and zero point, channels, scale range."""

    tensor: str
    scale: float
    zero_point: int
    channels: int
    scale_min: float
    scale_max: float


@dataclass(frozen=True)
class LayerQuant:
    """One operator of an int8 graph: its activation input, weights and output parameters."""

    index: int
    name: str
    op: str
    input: TensorQuant | None
    weights: TensorQuant | None
    output: TensorQuant | None


def _tensor_quant(graph: Graph, name: str | None) -> TensorQuant | None:
    if name is None or name not in graph.tensors or graph.tensor(name).quant is None:
        return None
    quant = graph.tensor(name).quant
    return TensorQuant(name, quant.scale0, quant.zero_point0, len(quant.scale),
                       min(quant.scale), max(quant.scale))


def layer_quant(graph: Graph) -> tuple[LayerQuant, ...]:
    """Per operator (graph order): parameters of its activation input, weights and output.

    The first non-constant input, the first constant of rank 2 or more, the first output.
    """
    rows = []
    for index, op in enumerate(graph.operators):
        activations = [n for n in op.inputs if n in graph.tensors
                       and not graph.tensor(n).is_constant]
        constants = [n for n in op.inputs if n in graph.tensors and graph.tensor(n).is_constant
                     and len(graph.tensor(n).shape) > 1]
        rows.append(LayerQuant(index, op.name, op.kind.value,
                               _tensor_quant(graph, activations[0] if activations else None),
                               _tensor_quant(graph, constants[0] if constants else None),
                               _tensor_quant(graph, op.outputs[0] if op.outputs else None)))
    return tuple(rows)


# --- what the page shows --------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Inline SVG markup of the plots (see figure_svg); None leaves a plot out."""

    working_set: str | None = None
    arena: str | None = None
    battery_life: str | None = None


@dataclass(frozen=True)
class Page:
    """Everything the report shows, gathered by api.report_model.

    `fits` is the verdict against the board (and --sram-budget); `advice` is api.advice_json's
    dict; `host` the host verification (VerifyResult's fields) or `host_error` why it did not
    run; `measured` the QEMU run (CortexMResult's fields, `layers` per planned step), with
    `measured_note` saying why a per-layer profile could not be set beside the estimates.
    """

    model: str
    source: str
    version: str
    report: Report
    fits: bool
    sram_budget: int
    arena_bytes: int
    patches_line: str
    advice: dict[str, Any]
    fit_line: str | None = None
    quant_layers: tuple[LayerQuant, ...] = ()
    quant_report: QuantReport | None = None
    kept: KeptReport | None = None
    host: dict[str, Any] | None = None
    host_error: str | None = None
    measured: dict[str, Any] | None = None
    measured_note: str | None = None
    energy: EnergyReport | None = None
    figures: Figures = field(default_factory=Figures)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1c1c1c;
background:#fafafa;line-height:1.4}
main{max-width:1400px;margin:0 auto;padding:1.2em 1.5em 3em}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin:1.6em 0 .5em;
border-bottom:2px solid #ddd;padding-bottom:.2em}
.sub{color:#555;margin:0 0 1em}
.verdict{display:inline-block;font-weight:700;font-size:1.3em;padding:.3em .8em;border-radius:6px;
color:#fff}
.fits{background:#2e7d32}.nofit{background:#c62828}.warn{color:#b26a00}.bad{color:#c62828}
.good{color:#2e7d32}
caption{text-align:left;caption-side:top;padding:.2em 0}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.88em;background:#fff}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#f0f0f0}td.l,th.l{text-align:left}td:not(.l){white-space:nowrap}
tr.over td{background:#fdecea}tr.peak td{font-weight:700}
.name{display:inline-block;min-width:12em;max-width:22em;overflow-wrap:anywhere}
.wide{overflow-x:auto;max-width:100%}
p,li{overflow-wrap:anywhere}
.text{display:inline-block;min-width:20em;max-width:45em;overflow-wrap:anywhere;text-align:left}
.figure{background:#fff;border:1px solid #ddd;padding:.5em;margin:.5em 0 1em}
.figure svg{max-width:100%;height:auto;display:block}
.note{color:#555;font-size:.9em}
footer{color:#777;font-size:.8em;margin-top:3em}
"""


def _e(value: object) -> str:
    """`value` as escaped HTML text (quotes too: it may land in an attribute)."""
    return html.escape(str(value), quote=True)


def _n(value: float | int | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"


def _kib(size: int) -> str:
    return f"{size / 1024:,.1f}"


def _shape(shape: Sequence[int]) -> str:
    dims = shape[1:] if len(shape) > 1 and shape[0] == 1 else shape
    return "x".join(map(str, dims))


def html_table(headers: Sequence[str], rows: Iterable[Sequence[str]],
               left: Iterable[int] = (0,), row_classes: Sequence[str] | None = None,
               caption: str = "") -> str:
    """A table of already escaped cells; columns in `left` align left."""
    left = set(left)
    head = "".join(f'<th{" class=l" if i in left else ""}>{_e(h)}</th>'
                   for i, h in enumerate(headers))
    body = []
    for number, row in enumerate(rows):
        cls = f' class="{row_classes[number]}"' if row_classes and row_classes[number] else ""
        cells = "".join(f'<td{" class=l" if i in left else ""}>{cell}</td>'
                        for i, cell in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    cap = f"<caption class=note>{caption}</caption>" if caption else ""
    return (f"<div class=wide><table>{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def html_figure(markup: str | None, alt: str) -> str:
    """A figure's inline SVG markup in its frame, or a note that it was not drawn."""
    if markup is None:
        return f'<p class=note>({_e(alt)}: not drawn)</p>'
    return f'<div class=figure role=img aria-label="{_e(alt)}">{markup}</div>'


# --- sections -------------------------------------------------------------------------------


def _verdict(page: Page) -> str:
    report = page.report
    problems = [name for name, ok in (("SRAM", report.fits_sram), ("flash", report.fits_flash))
                if not ok]
    if report.fits and page.arena_bytes > page.sram_budget:
        problems.append("SRAM budget")
    badge = ('<span class="verdict fits">FITS</span>' if page.fits else
             f'<span class="verdict nofit">DOES NOT FIT ({_e(" and ".join(problems))})</span>')
    flash = report.flash_estimate
    flash_parts = ("constant tensors only (no Cortex-M firmware estimated)" if flash is None
                   else f"{_e(flash.target)} firmware: constants {_kib(flash.constants)}, code "
                        f"{_kib(flash.code)}, runtime {_kib(flash.runtime)} KiB")
    rows = [
        ["Peak RAM (arena)", f"{_kib(report.peak_ram_bytes)} KiB",
         f"{_kib(report.sram_bytes)} KiB", _margin(report.sram_margin_bytes)],
        [f"Flash ({_e(report.weights_tier)})", f"{_kib(report.flash_bytes)} KiB",
         f"{_kib(report.flash_capacity)} KiB", _margin(report.flash_margin_bytes)],
    ]
    if page.sram_budget != report.sram_bytes:
        rows.append(["Arena vs --sram-budget", f"{_kib(page.arena_bytes)} KiB",
                     f"{_kib(page.sram_budget)} KiB",
                     _margin(page.sram_budget - page.arena_bytes)])
    parts = [
        "<h2 id=verdict>Fit verdict</h2>", f"<p>{badge}</p>",
        html_table(["memory", "needs", "has", "margin"], rows),
        f"<p>MACs: {report.macs:,} &middot; latency (estimate): "
        f"{report.latency_ms_estimate:,.3f} ms &middot; energy per inference (estimate): "
        f"{report.energy_mj_estimate * 1e3:,.1f} &micro;J &middot; flash: {flash_parts}</p>",
        f"<p>{_e(page.patches_line)}</p>",
    ]
    if report.weights_not_fitting:
        parts.append(f"<p class=bad>Constants overflow from: "
                     f"{_e(', '.join(report.weights_not_fitting))}</p>")
    if page.fit_line:
        parts.append(f"<p class=warn>{_e(page.fit_line)}</p>")
    parts.append(_advice(page))
    return "\n".join(parts)


def _margin(margin: int) -> str:
    cls, word = ("good", "margin") if margin >= 0 else ("bad", "over by")
    return f"<span class={cls}>{word} {_kib(abs(margin))} KiB</span>"


def _advice(page: Page) -> str:
    options = page.advice.get("fit_options") or []
    notes = page.advice.get("fit_notes") or []
    if not options and not notes:
        return ("<h3>Fit advisor</h3><p class=note>The model fits as it is: the advisor has "
                "nothing to offer.</p>" if page.fits else "")
    rows = []
    for rank, option in enumerate(options, 1):
        rows.append([
            str(rank), f"<b>{_e(option['name'])}</b>",
            "exact" if option["exact"] else "<span class=warn>lossy</span>",
            f"{option['peak_bytes']:,}", f"{option['flash_bytes']:,}",
            f"{option['overhead_pct']:+.1f} %",
            "<span class=good>yes</span>" if option["fits"] else "<span class=bad>no</span>",
            _e(" ".join(option["flags"]) or "always on"),
            f"<span class=text>{_e(option['description'])}; {_e(option['detail'])}</span>"])
    table = html_table(["#", "option", "kind", "peak B", "flash B", "instr.", "fits",
                    "apply with", "what it does"], rows, left=(1, 2, 6, 7, 8))
    noted = "".join(f"<li>{_e(note)}</li>" for note in notes)
    return ("<h3>How to make it fit (fit advisor, best first)</h3>" + table
            + (f"<p class=note>Not offered:</p><ul class=note>{noted}</ul>" if notes else ""))


def _layers(page: Page) -> str:
    report = page.report
    measured = page.measured
    profile = list(measured.get("layers") or []) if measured else []
    if len(profile) != len(report.layers):
        profile = []
    headers = ["#", "name", "op", "output", "MACs", "weights B", "working set B", "from",
               "est. ms"]
    if profile:
        headers += ["measured instr.", "measured ms", "MACs/instr.", "kernels"]
    rows, classes = [], []
    ms_per_instruction = 0.0
    if measured:
        ms_per_instruction = measured["cycles_per_instruction"] / measured["clock_hz"] * 1e3
    for position, layer in enumerate(report.layers):
        row = [str(layer.index), f"<span class=name>{_e(layer.name)}</span>", _e(layer.op),
               _e(_shape(layer.output_shape)), f"{layer.macs:,}", f"{layer.weight_bytes:,}",
               f"{layer.working_set_bytes:,}", _e(layer.weights_location),
               f"{layer.latency_ms:,.3f}"]
        if profile:
            step = profile[position]
            instructions = step["instructions"]
            portable = " (portable)" if step.get("portable_reason") else ""
            row += [f"{instructions:,}", f"{instructions * ms_per_instruction:,.3f}",
                    f"{step['macs'] / max(instructions, 1):.2f}",
                    f'<span class=name>{_e(", ".join(step.get("kernels") or ()) + portable)}'
                    "</span>"]
        rows.append(row)
        classes.append("over" if layer.working_set_bytes > report.sram_bytes else
                       "peak" if layer.index == report.peak_layer else "")
    caption = ("execution order; output shapes without the batch dimension; from: where the "
               "layer's weights are read; est. ms: the calibrated cost model")
    if profile:
        caption += (f"; measured: instructions on QEMU ({_e(measured['target'])}, "
                    f"{_e(measured['machine'])}, -icount), ms at the board's clock")
    left = (1, 2, 7, 12) if profile else (1, 2, 7)
    parts = ["<h2 id=layers>Per layer</h2>",
             html_table(headers, rows, left=left, row_classes=classes, caption=caption)]
    if page.measured_note:
        parts.append(f"<p class=note>{_e(page.measured_note)}</p>")
    return "\n".join(parts)


def _plots(page: Page) -> str:
    return "\n".join([
        "<h2 id=memory>Memory</h2>",
        "<h3>Working set per layer</h3>",
        html_figure(page.figures.working_set, "per-layer working set against the board's SRAM"),
        "<h3>Arena over time (memory plan)</h3>",
        html_figure(page.figures.arena, "the arena's buffers over the steps"),
    ])


def _quant(page: Page) -> str:
    parts = ["<h2 id=quantisation>Quantisation</h2>"]
    if page.quant_report is not None:
        parts.append(_quant_report(page.quant_report))
    if page.kept is not None:
        parts.append(_kept(page.kept))
    if page.quant_layers:
        parts.append("<h3>Parameters per layer (from the int8 graph)</h3>")
        rows = [[str(q.index), f"<span class=name>{_e(q.name)}</span>", _e(q.op),
                 *_quant_cells(q.input), _weights_cell(q.weights), *_quant_cells(q.output)]
                for q in page.quant_layers]
        parts.append(html_table(["#", "name", "op", "input scale", "input zp", "weight scales",
                             "output scale", "output zp"], rows, left=(1, 2)))
    return "\n".join(parts)


def _quant_cells(quant: TensorQuant | None) -> list[str]:
    return ["-", "-"] if quant is None else [f"{quant.scale:.6g}", str(quant.zero_point)]


def _weights_cell(quant: TensorQuant | None) -> str:
    if quant is None:
        return "-"
    if quant.channels == 1:
        return f"{quant.scale:.6g}"
    return f"{quant.channels} channels, {quant.scale_min:.3g} &ndash; {quant.scale_max:.3g}"


def _quant_report(report: QuantReport) -> str:
    corrected = ", bias-corrected" if report.bias_corrected else ""
    measured = "held-out" if report.held_out else "calibration"
    rows = [[f"<span class=name>{_e(layer.tensor)}</span>", _e(layer.op), _db(layer.sqnr_db)]
            for layer in report.layers]
    outputs = ", ".join(f"{_e(name)}: {_db(value)}" for name, value
                        in report.output_sqnr_db.items())
    agreement = ("" if report.top1_agreement is None else
                 f"<p>Top-1 agreement with the float model: {report.top1_agreement:.1%}</p>")
    return (f"<h3>Quantisation error ({_e(report.scheme)}{corrected}) on {report.samples} "
            f"{measured} samples</h3>"
            + html_table(["layer", "op", "SQNR dB"], rows, left=(0, 1))
            + f"<p>Output SQNR: {outputs}</p>{agreement}"
            f"<p>Weights: {report.stored_weight_bytes:,} B stored, "
            f"{report.unpacked_weight_bytes:,} B unpacked, {report.float_weight_bytes:,} B as "
            "float32</p>")


def _db(value: float) -> str:
    return f"{value:.1f} dB" if math.isfinite(value) else "exact"


def _kept(kept: KeptReport) -> str:
    flagged = {t.tensor for t in kept.flagged}
    rows = [[f"<span class=name>{_e(t.tensor)}</span>", _e(t.role), f"{t.scale:.6g}",
             str(t.zero_point), str(t.channels), _e(t.origin.value),
             "" if t.model_scale is None else f"{t.model_scale:.6g}"] for t in kept.tensors]
    classes = ["over" if t.tensor in flagged else "" for t in kept.tensors]
    return (f"<h3>Parameters kept from the model</h3><p>{len(kept.tensors) - len(flagged)} of "
            f"{len(kept.tensors)} int8 tensors keep the model's parameters (or share a "
            "neighbour's); highlighted: chosen or added by mcuflow</p>"
            + html_table(["tensor", "role", "scale", "zero point", "channels", "origin",
                      "model scale"], rows, left=(0, 1, 5), row_classes=classes))


def _exactness(page: Page) -> str:
    parts = ["<h2 id=exactness>Exactness</h2>"]
    host = page.host
    if host is not None:
        ok = host["bit_exact"]
        litert = host.get("litert_mismatches")
        litert_text = ("LiteRT: not run (not a .tflite, or LiteRT unavailable)" if litert is None
                       else f"LiteRT: {litert} mismatching runs")
        parts.append(
            f"<p><b class={'good' if ok else 'bad'}>{'bit-exact' if ok else 'MISMATCH'}</b> on "
            f"the host: the generated C over {host['runs']} random inputs, {host['mismatches']} "
            f"mismatching runs against the reference interpreter; {litert_text}. Arena "
            f"{host['arena_bytes']:,} B, code {host['code_bytes']:,} B, weights "
            f"{host['weight_bytes']:,} B ({_e(host['compiler'])}).</p>")
    elif page.host_error:
        parts.append(f"<p class=warn>Host verification did not run: {_e(page.host_error)}</p>")
    measured = page.measured
    if measured is not None:
        ok = measured["bit_exact"]
        parts.append(
            f"<p><b class={'good' if ok else 'bad'}>{'bit-exact' if ok else 'MISMATCH'}</b> on "
            f"{_e(measured['target'])} ({_e(measured['machine'])}, board "
            f"{_e(measured['board'])}): {measured['runs']} runs, {measured['mismatches']} "
            f"mismatching. {measured['instructions']:,} instructions per inference, "
            f"{measured['macs_per_instruction']:.2f} MACs/instruction, about "
            f"{measured['estimated_ms']:,.2f} ms at {measured['clock_hz'] / 1e6:g} MHz; flash "
            f"{measured['flash_bytes']:,} B, RAM {measured['ram_bytes']:,} B (stack "
            f"{measured['stack_bytes']:,} B).</p>")
    else:
        parts.append("<p class=note>Not measured on QEMU (run with --measure for the "
                     "instructions of every layer).</p>")
    return "\n".join(parts)


def _energy(page: Page) -> str:
    report = page.energy
    parts = ["<h2 id=energy>Energy and battery life</h2>"]
    if report is None:
        return parts[0] + "<p class=note>Not computed.</p>"
    run = report.run
    parts.append(
        f"<p>One inference: {run.latency_s * 1e3:,.3f} ms, {run.energy_uj:,.1f} &micro;J "
        f"({run.power_mw:.1f} mW while running), every {_n(1 / report.rate_hz)} s "
        f"({_n(report.rate_hz * 3600)} per hour); battery {_e(report.battery.name)} "
        f"({report.battery.energy_j:,.0f} J).</p>")
    rows, classes = [], []
    best = report.best
    for strategy in report.strategies:
        chosen = strategy.best
        if chosen is None:
            rows.append([_e(strategy.name), f"not possible: {_e(strategy.reason)}",
                         *["-"] * 6])
            classes.append("")
            continue
        rows.append([_e(strategy.name), _e(chosen.mode.name), f"{chosen.wake_uj:,.1f}",
                     f"{chosen.copy_uj:,.1f}", f"{chosen.run.energy_uj:,.1f}",
                     _n(chosen.sleep_mw * 1e3, 3), _n(strategy.average_power_mw),
                     _n(strategy.battery_life_days)])
        classes.append("peak" if best is not None and strategy.name == best.name else "")
    parts.append(html_table(["where the model lives", "sleep mode", "wake µJ",
                         "copy µJ", "inference µJ", "sleep µW",
                         "average mW", "battery life, days"], rows, left=(0, 1),
                        row_classes=classes,
                        caption="each strategy in its best sleep mode at this rate; bold: the "
                                "best"))
    if best is not None:
        parts.append(f"<p>Best: <b>{_e(best.name)}</b>, {_n(best.average_power_mw)} mW "
                     f"average, {_n(best.battery_life_days)} days on "
                     f"{_e(report.battery.name)}.</p>")
    crossings = [f"<li>{_e(c.below.strategy)} &rarr; {_e(c.above.strategy)} at "
                 f"{_n(c.rate_hz * 3600)} inferences/hour (every {_n(1 / c.rate_hz)} s, "
                 f"{'equal power' if c.equal_power else _e(c.below.strategy) + ' cannot keep up'}"
                 ")</li>" for c in report.crossovers]
    if crossings:
        parts.append(f"<p>Where the best strategy changes:</p><ul>{''.join(crossings)}</ul>")
    parts.append(html_figure(page.figures.battery_life, "battery life against inference rate"))
    return "\n".join(parts)


def render_page(page: Page) -> str:
    """The report as one self-contained HTML document."""
    title = f"mcuflow report: {page.model} on {page.report.board_name}"
    sections = [_verdict(page), _layers(page), _plots(page), _quant(page), _exactness(page),
                _energy(page)]
    nav = " &middot; ".join(f'<a href="#{anchor}">{label}</a>' for anchor, label in (
        ("verdict", "fit"), ("layers", "layers"), ("memory", "memory"),
        ("quantisation", "quantisation"), ("exactness", "exactness"), ("energy", "energy")))
    return html_document(
        title,
        f"<h1>{_e(page.model)} on {_e(page.report.board_name)}</h1>\n"
        f"<p class=sub>model file {_e(page.source)} &middot; board {_e(page.report.board)} "
        f"&middot; {len(page.report.layers)} layers &middot; {nav}</p>\n"
        + "\n".join(sections), page.version)


def html_document(title: str, body: str, version: str) -> str:
    """One self-contained HTML document around `body` (markup): inline CSS, the policy, footer.

    The page loads nothing: the Content-Security-Policy forbids fetching and scripts. It is
    ASCII: other characters (a model's or a label's name) are character references.
    """
    page = (
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name=viewport content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + body
        + f"\n<footer>Written by mcuflow {_e(version)}. This file is self-contained: it "
        "loads nothing from the network.</footer>\n</main>\n</body>\n</html>\n")
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")
