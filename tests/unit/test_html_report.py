"""mcuflow report: one self-contained HTML page, checked as text and in headless Chromium."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from mcuflow import api
from mcuflow.analysis.html_report import Page, html_document, render_page, svg_markup
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import Graph, Operator
from tests.support import run_cli_output

BOARD = "nucleo-f767zi"
HOSTILE = "<script>alert(1)</script>"
RUNS = 2


@pytest.fixture(scope="module")
def demo_page() -> Page:
    """The report's data for the bundled example on the NUCLEO-F767ZI."""
    return api.report_page(api.demo_model_path(), BOARD, runs=RUNS)


@pytest.fixture(scope="module")
def demo_html(demo_page: Page) -> str:
    return render_page(demo_page)


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of <style> elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def _parsed(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


def _section(page: str, anchor: str, following: str) -> str:
    start = page.index(f"<h2 id={anchor}>")
    return page[start:page.index(f"<h2 id={following}>", start)]


def test_page_shows_verdict_layers_plots_and_sections(demo_page: Page, demo_html: str) -> None:
    assert demo_html.startswith("<!DOCTYPE html>")
    assert '<span class="verdict fits">FITS</span>' in demo_html
    layers = _section(demo_html, "layers", "memory")
    rows = re.findall(r"<tr[ >]", layers)
    assert len(rows) - 1 == len(demo_page.report.layers) == 10  # one header row
    for layer in demo_page.report.layers:
        assert f">{layer.name}<" in layers
    assert demo_html.count("<svg") == 3  # working set, arena, battery life
    for anchor in ("verdict", "layers", "memory", "quantisation", "exactness", "energy"):
        assert f"<h2 id={anchor}>" in demo_html
    quant = _section(demo_html, "quantisation", "exactness")
    assert quant.count("<tr") - 1 == len(demo_page.report.layers)
    assert "0.58" in quant  # the demo's input scale, read from the graph
    assert "bit-exact</b> on the host" in demo_html
    assert demo_page.host is not None and demo_page.host["runs"] == RUNS
    energy = demo_html.split("<h2 id=energy>")[1]
    for strategy in ("xip", "copy", "retained", "always-on"):
        assert f"<td class=l>{strategy}</td>" in energy
    assert "every 60 s" in energy and "CR2032" in energy


def test_page_loads_nothing_from_outside(demo_html: str) -> None:
    parsed = _parsed(demo_html)
    tags = {tag for tag, _ in parsed.tags}
    assert not tags & {"script", "link", "iframe", "object", "embed", "img", "image",
                       "base", "form", "audio", "video", "source", "frame"}
    for tag, attrs in parsed.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href", "xlink:href", "action", "data", "poster", "srcset",
                        "background", "formaction"):
                assert value is not None and value.startswith("#"), (tag, name, value)
            if name == "style":
                assert "url(" not in (value or "").replace("url(#", ""), (tag, value)
    for style in parsed.styles:
        assert "@import" not in style and "url(" not in style.replace("url(#", "")
    # The only absolute URLs are the SVG namespaces, which are names, not requests.
    without_namespaces = re.sub(r'\sxmlns(:xlink)?="http://www\.w3\.org/[0-9]{4}/[a-z]+"', "",
                                demo_html)
    assert "http://" not in without_namespaces and "https://" not in without_namespaces
    assert "Content-Security-Policy" in demo_html


def test_figures_do_not_share_ids(demo_html: str) -> None:
    ids = re.findall(r'\sid="([^"]+)"', demo_html)
    assert ids and len(ids) == len(set(ids))
    referenced = set(re.findall(r"url\(#([^)]+)\)", demo_html))
    assert referenced <= set(ids)


def test_svg_markup_strips_the_prolog_and_prefixes_ids() -> None:
    document = ('<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg">'
                '<metadata><rdf:RDF>x</rdf:RDF></metadata><clipPath id="p1"/>'
                '<g clip-path="url(#p1)"><use xlink:href="#m2"/></g></svg>')
    markup = svg_markup(document, "fig")
    assert markup.startswith("<svg") and "metadata" not in markup
    assert 'id="fig-p1"' in markup and "url(#fig-p1)" in markup and 'href="#fig-m2"' in markup


def _hostile_model(directory: Path) -> Path:
    """A tiny int8 model whose inner tensor (and so its layer) is named HOSTILE."""
    b = GraphBuilder("hostile", seed=2)
    x = b.conv2d(b.input((1, 8, 8, 2), 0.05, 0), 4, (3, 3), activation=Activation.RELU)
    graph = b.output(b.reshape(b.mean(x, (1, 2), keep_dims=True), (1, 4))).build()
    renamed = _rename(graph, x, HOSTILE)
    path = directory / "hostile.tflite"
    path.write_bytes(write_tflite(renamed))
    return path


def _rename(graph: Graph, old: str, new: str) -> Graph:
    def swap(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        return tuple(new if name == old else name for name in names)

    tensors = {(new if name == old else name): (dataclasses.replace(t, name=new)
                                                if name == old else t)
               for name, t in graph.tensors.items()}
    operators = [dataclasses.replace(op, inputs=swap(op.inputs), outputs=swap(op.outputs),
                                     name=new if op.name == old else op.name)
                 for op in graph.operators]
    assert all(isinstance(op, Operator) for op in operators)
    return Graph(graph.name, tensors, operators, list(swap(graph.inputs)),
                 list(swap(graph.outputs)))


def test_names_from_the_model_are_escaped(tmp_path: Path) -> None:
    page = api.report_model(_hostile_model(tmp_path), BOARD, runs=1)
    assert HOSTILE not in page
    assert "<script" not in page.lower()
    assert html_escaped(HOSTILE) in page


def test_the_page_is_ascii_with_other_characters_as_references() -> None:
    """Names from a model or a data set may hold any character; the page's bytes are ASCII."""
    page = html_document("café", "<p>ünï 日本</p>", "1.0")
    assert page.isascii()
    assert "<title>caf&#233;</title>" in page and "&#252;n&#239; &#26085;&#26412;" in page


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_cli_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.html"
    code, stdout, _ = run_cli_output(capsys, ["report", str(api.demo_model_path()), "-b", BOARD,
                                              "-o", str(out), "--runs", "1",
                                              "--events-per-hour", "6", "--battery", "2xAA",
                                              "--json"])
    assert code == 0
    summary = json.loads(stdout)
    assert summary == {"output": str(out), "fits": True, "bit_exact": True,
                       "host_verified": True, "measured": False}
    page = out.read_text(encoding="utf-8")
    assert "every 600 s" in page and "2xAA" in page
    assert not [p for p in tmp_path.iterdir() if p.name != "report.html"]  # no temporary left


def test_cli_refuses_a_directory_and_two_rates(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    model = str(api.demo_model_path())
    code, _, err = run_cli_output(capsys, ["report", model, "-o", str(tmp_path)])
    assert code == 2 and "is a directory" in err
    code, _, err = run_cli_output(capsys, ["report", model, "-o", str(tmp_path / "r.html"),
                                           "--period", "1", "--events-per-hour", "3"])
    assert code == 2 and "exactly one of --period and --events-per-hour" in err
    assert not (tmp_path / "r.html").exists()


# --- in a real browser ----------------------------------------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser")
BLANK_STD = 0.02
"""Standard deviation of the screenshot's pixels (0..1) below which it counts as blank."""


def _chromium() -> str:
    """Chromium's path; skipped when absent, but a failure under CI (which installs it)."""
    found = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    if found is None:
        message = "chromium is not installed (Debian: apt-get install chromium; .ci/run does)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclasses.dataclass(frozen=True)
class Rendered:
    """What headless Chromium made of a page: the screenshot, its log and the page's requests."""

    screenshot: Path
    console: list[str]
    requests: list[str]


def _render(page: Path, directory: Path) -> Rendered:
    """Open `page` in headless Chromium: screenshot, console messages and network requests.

    No name resolves (--host-resolver-rules), so nothing could be fetched anyway; the network
    log records every request the page's frame started (its isolation key is the file's).
    """
    screenshot, net_log = directory / "shot.png", directory / "net.json"
    command = [_chromium(), "--headless=new", "--disable-gpu", "--no-sandbox",
               f"--user-data-dir={directory / 'profile'}", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-extensions", "--disable-sync", "--no-default-browser-check",
               "--host-resolver-rules=MAP * ~NOTFOUND", f"--log-net-log={net_log}",
               "--enable-logging=stderr", "--v=0", f"--screenshot={screenshot}",
               "--window-size=1200,2000", page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          cwd=directory, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return Rendered(screenshot, console, _page_requests(net_log))


def _page_requests(net_log: Path) -> list[str]:
    """URLs of the requests a file:// page started (not the browser's own background ones)."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [event["params"]["url"] for event in log["events"]
            if event["type"] == start and "url" in event.get("params", {})
            and str(event["params"].get("network_isolation_key", "")).startswith("file://")]


def test_report_renders_in_chromium(demo_html: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(demo_html, encoding="utf-8")
    rendered = _render(page, tmp_path)
    assert rendered.console == []
    assert rendered.requests == []
    assert rendered.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(rendered.screenshot)[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    assert float(pixels.std()) > BLANK_STD
    codes = np.round(pixels * 255).astype(np.uint32)
    colours = np.unique(codes[..., 0] << 16 | codes[..., 1] << 8 | codes[..., 2])
    assert len(colours) > 50  # text, tables and plots, not a flat page


def test_chromium_checks_would_catch_a_leaky_page(tmp_path: Path) -> None:
    """The same checks flag a page that fetches an image and logs to the console."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><body><p>x</p><img src="http://example.com/a.png">'
                    '<script>console.error("boom")</script></body></html>', encoding="utf-8")
    rendered = _render(page, tmp_path)
    assert rendered.requests == ["http://example.com/a.png"]
    assert any("boom" in line for line in rendered.console)
