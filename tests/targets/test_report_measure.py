"""mcuflow report --measure: QEMU's instructions of every layer beside the estimates."""

from __future__ import annotations

import re

from mcuflow import api
from mcuflow.analysis.html_report import render_page


def test_measured_layers_sit_beside_the_estimates() -> None:
    page = api.report_page(api.demo_model_path(), "nucleo-f767zi", runs=1, measure=True)
    assert page.measured is not None and page.measured_note is None
    assert page.measured["bit_exact"] and page.measured["target"] == "cortex-m7"
    layers = page.measured["layers"]
    assert [(s["op"], s["name"]) for s in layers] == [(r.op, r.name) for r in page.report.layers]
    assert all(s["instructions"] > 0 for s in layers if s["macs"])
    html = render_page(page)
    table = html[html.index("<h2 id=layers>"):html.index("<h2 id=memory>")]
    assert "measured instr." in table and "mps2-an500" in table
    for step in layers:
        assert re.search(rf">{re.escape(step['name'])}<.*?<td>{step['instructions']:,}</td>",
                         table, re.S)
    assert "bit-exact</b> on cortex-m7" in html
