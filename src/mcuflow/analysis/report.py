"""Render a Report for people: a per-layer rich table and a totals panel with the fit verdict."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mcuflow.analysis.metrics import NO_WEIGHTS, OVERFLOW, LayerReport, Report

_LOCATION_LABELS = {"onchip_flash": "flash", "qspi_flash": "qspi", "sd_card": "sd",
                    NO_WEIGHTS: "-", OVERFLOW: "[red]over[/]"}


def _count(value: float) -> str:
    """1234567 -> '1.23M': three significant digits with a k/M/G suffix."""
    for divisor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= divisor:
            return f"{value / divisor:.3g}{suffix}"
    return f"{value:g}"


def _kib(size: int) -> str:
    """Bytes shown in KiB: one decimal below 10 KiB, whole KiB above."""
    kib = size / 1024
    return f"{kib:.1f}" if kib < 10 else f"{kib:,.0f}"


def _ms(value: float) -> str:
    """Milliseconds: two decimals below 100 ms, whole ms above."""
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _shape(shape: tuple[int, ...]) -> str:
    """'48x48x16' for [1, 48, 48, 16]: the batch dimension of 1 is left out."""
    dims = shape[1:] if len(shape) > 1 and shape[0] == 1 else shape
    return "x".join(map(str, dims))


def _layer_row(layer: LayerReport, report: Report) -> list[str]:
    working_set = _kib(layer.working_set_bytes)
    if layer.working_set_bytes > report.sram_bytes:
        working_set = f"[red]{working_set}[/]"
    elif layer.index == report.peak_layer:
        working_set = f"[bold]{working_set}[/]"
    return [
        str(layer.index), layer.op, _shape(layer.output_shape), _count(layer.macs),
        _kib(layer.weight_bytes), _kib(layer.input_bytes), _kib(layer.output_bytes),
        working_set, _LOCATION_LABELS.get(layer.weights_location, layer.weights_location),
        _ms(layer.latency_ms),
    ]


def layer_table(report: Report) -> Table:
    """The per-layer table (sizes in KiB; working sets above the SRAM in red)."""
    table = Table(title=f"{report.model} on {report.board_name} ({report.board})",
                  caption="sizes in KiB, output shapes without the batch dimension; "
                          "from: where the layer's weights are read from",
                  box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("op", no_wrap=True)
    table.add_column("output")
    for header in ("MACs", "weights", "in", "out", "working set"):
        table.add_column(header, justify="right")
    table.add_column("from")
    table.add_column("ms", justify="right")
    for layer in report.layers:
        table.add_row(*_layer_row(layer, report))
    return table


def _fit_line(label: str, used: int, capacity: int, margin: int) -> Text:
    style = "green" if margin >= 0 else "red"
    word = "margin" if margin >= 0 else "over by"
    return Text.assemble(f"{label}: {used / 1024:,.1f} / {capacity / 1024:,.1f} KiB ",
                         (f"({word} {abs(margin) / 1024:,.1f} KiB)", style))


def _flash_parts(report: Report) -> Text:
    """What the flash figure counts: the firmware's parts, or the constants only."""
    flash = report.flash_estimate
    if flash is None:
        return Text("Flash counts the constant tensors only (no Cortex-M firmware estimated)")
    return Text(f"Flash of the {flash.target} firmware: constants {flash.constants / 1024:,.1f}"
                f", code {flash.code / 1024:,.1f}, runtime {flash.runtime / 1024:,.1f} KiB")


def _external_lines(report: Report) -> list[Text]:
    """What an out-of-core plan reads from external storage and what waiting for it costs."""
    lines = []
    if report.external_tier:
        lines.append(Text(
            f"Out of core: {report.external_image_bytes:,} B of constants on "
            f"{report.external_tier} (weights_external.bin), read in "
            f"{report.external_reads - report.spill_reads} chunks per inference into a "
            f"{report.staging_bytes:,} B staging buffer (counted in the SRAM margin)"))
    if report.key_bytes:
        lines.append(Text(f"Encrypted: {report.key_bytes:,} B of AES and CMAC keys in SRAM "
                          "(counted in the SRAM margin)"))
    if report.spill_tier:
        lifetime = (f"; the {report.spill_tier} lasts {report.lifetime_years:,.1f} years at "
                    f"{report.inferences_per_hour:,.4g} inferences an hour"
                    if report.lifetime_years is not None else "")
        lines.append(Text(
            f"Spilled activations: {report.spill_bytes:,} B written to {report.spill_tier} in "
            f"{report.external_writes} writes and {report.spill_read_bytes:,} B read back in "
            f"{report.spill_reads} reads per inference, {report.erases_per_inference} erases"
            f"{f' (each sector once every {report.spill_slots})' if report.spill_slots > 1 else ''}"
            f"{lifetime}"))
    if lines:
        spilling = f" + spilling {_ms(report.spill_ms)}" if report.spill_tier else ""
        lines.append(Text(
            f"Modelled latency with the reads: {_ms(report.modelled_ms)} ms = compute "
            f"{_ms(report.latency_ms_estimate)}{_decrypting(report)} + waiting "
            f"{_ms(report.io_stall_ms)}{spilling} ({report.slowdown:.2f}x)"))
    return lines


def _decrypting(report: Report) -> str:
    """The decryption term of the modelled latency, empty for a plain image."""
    return f" + decrypting {_ms(report.decrypt_ms)}" if report.decrypt_ms else ""


def totals_panel(report: Report) -> Panel:
    """Totals, margins and the verdict, green when the model fits and red when it does not."""
    problems = [name for name, ok in (("SRAM", report.fits_sram), ("flash", report.fits_flash))
                if not ok]
    verdict = (Text("FITS", style="bold green") if report.fits else
               Text(f"DOES NOT FIT ({' and '.join(problems)})", style="bold red"))
    peak_source = "memory planner" if report.peak_from_planner else "largest working set"
    lines = [
        Text(f"MACs: {_count(report.macs)}"),
        _fit_line(f"Flash ({report.weights_tier})", report.flash_bytes, report.flash_capacity,
                  report.flash_margin_bytes),
        _flash_parts(report),
        _fit_line("Peak RAM", report.peak_ram_bytes, report.sram_bytes,
                  report.sram_margin_bytes),
        Text(f"Peak from the {peak_source}; largest working set at layer {report.peak_layer}"),
        *([Text(f"State RAM: {report.state_bytes:,} B kept between inferences, outside the "
                "arena (counted in the SRAM margin)")] if report.state_bytes else []),
        *_external_lines(report),
        Text(f"Latency (estimate): {_ms(report.latency_ms_estimate)} ms    "
             f"Energy (estimate): {report.energy_mj_estimate:.3g} mJ"),
    ]
    if report.weights_not_fitting:
        lines.append(Text(f"Constants overflow from: {', '.join(report.weights_not_fitting)}",
                          style="red"))
    lines.append(Text.assemble("Verdict: ", verdict))
    return Panel(Group(*lines), title="Totals", border_style="green" if report.fits else "red",
                 expand=False)


def render_report(report: Report, console: Console) -> None:
    """Print the per-layer table and the totals panel."""
    console.print(layer_table(report))
    console.print(totals_panel(report))
