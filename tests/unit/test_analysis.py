"""Cost rules, working set, fit verdict, JSON fields, table and plot, on graphs built by hand."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from mcuflow.analysis.html_report import literal_text
from mcuflow.analysis.metrics import REPORT_JSON_FIELDS, analyze, lifetimes
from mcuflow.analysis.plots import plain_log_scale, plot_working_set
from mcuflow.analysis.report import render_report
from mcuflow.errors import BoardError
from mcuflow.hw.board import Board, TierKind, get_board
from mcuflow.hw.costmodel import (
    OpCost,
    Placement,
    estimate,
    estimate_cycles,
    estimate_energy_mj,
    op_cost,
)
from mcuflow.ir.enums import Padding
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import (
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    ElementwiseAttrs,
    FullyConnectedAttrs,
    MeanAttrs,
    NoAttrs,
    OpAttrs,
    OpKind,
    Pool2DAttrs,
    SoftmaxAttrs,
)
from mcuflow.memory.plan import InPlace
from mcuflow.memory.scratch import scratch_bytes

SAME = Padding.SAME


def act(graph: Graph, name: str, shape: tuple[int, ...]) -> str:
    graph.add_tensor(Tensor(name, shape, DType.INT8))
    return name


def const(graph: Graph, name: str, shape: tuple[int, ...], dtype: DType = DType.INT8) -> str:
    graph.add_tensor(Tensor(name, shape, dtype, data=np.zeros(shape, dtype=dtype.numpy)))
    return name


def add_op(graph: Graph, kind: OpKind, inputs: list[str], out: str, shape: tuple[int, ...],
           attrs: OpAttrs) -> Operator:
    act(graph, out, shape)
    op = Operator(kind, tuple(inputs), (out,), attrs, name=f"{kind.value.lower()}_{out}")
    graph.operators.append(op)
    return op


def conv(graph: Graph, x: str, out: str, cout: int, kernel: int = 1, stride: int = 1) -> Operator:
    """CONV_2D SAME with an int8 filter [cout, k, k, cin] and an int32 bias [cout]."""
    n, h, w, cin = graph.tensor(x).shape
    weights = const(graph, f"{out}_w", (cout, kernel, kernel, cin))
    bias = const(graph, f"{out}_b", (cout,), DType.INT32)
    shape = (n, -(-h // stride), -(-w // stride), cout)
    return add_op(graph, OpKind.CONV_2D, [x, weights, bias], out, shape,
                  Conv2DAttrs(stride, stride, padding=SAME))


def single(kind: OpKind, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
           attrs: OpAttrs, constants: list[tuple[int, ...]] = ()) -> tuple[Graph, Operator]:
    graph = Graph("single")
    x = act(graph, "x", in_shape)
    graph.inputs.append(x)
    names = [const(graph, f"c{i}", s, DType.INT32 if len(s) == 1 else DType.INT8)
             for i, s in enumerate(constants)]
    op = add_op(graph, kind, [x, *names], "y", out_shape, attrs)
    graph.outputs.append("y")
    return graph, op


# --- MAC counts, bytes and scratch against hand-computed values ---------------------------

CASES = {
    # conv 3x3, 4 -> 8 channels on 8x8: 8*8*8 outputs x 3*3*4 = 18432 MACs; weights 288 +
    # bias 32 B; int8 im2col row of 3*3*4 = 36 B; ops: one requantisation per output.
    "conv3x3": (OpKind.CONV_2D, (1, 8, 8, 4), (1, 8, 8, 8), Conv2DAttrs(padding=SAME),
                [(8, 3, 3, 4), (8,)], OpCost(18432, 320, 256, 512, 36, 512)),
    "conv3x3_dilated": (OpKind.CONV_2D, (1, 8, 8, 4), (1, 4, 4, 8),
                        Conv2DAttrs(dilation_h=2, dilation_w=2), [(8, 3, 3, 4)],
                        OpCost(4608, 288, 256, 128, 36, 128)),
    "conv1x1": (OpKind.CONV_2D, (1, 8, 8, 4), (1, 8, 8, 8), Conv2DAttrs(),
                [(8, 1, 1, 4), (8,)], OpCost(2048, 64, 256, 512, 0, 512)),
    "conv1x1_stride2": (OpKind.CONV_2D, (1, 8, 8, 4), (1, 4, 4, 8), Conv2DAttrs(2, 2),
                        [(8, 1, 1, 4)], OpCost(512, 32, 256, 128, 0, 128)),
    # a dilated 1x1 kernel still reads one pixel: no im2col
    "conv1x1_dilated": (OpKind.CONV_2D, (1, 8, 8, 4), (1, 8, 8, 8),
                        Conv2DAttrs(dilation_h=2, dilation_w=2), [(8, 1, 1, 4)],
                        OpCost(2048, 32, 256, 512, 0, 512)),
    # depthwise 3x3 on 8x8x4: 256 outputs x 9 = 2304 MACs; weights 36 + bias 16 B.
    "depthwise": (OpKind.DEPTHWISE_CONV_2D, (1, 8, 8, 4), (1, 8, 8, 4),
                  DepthwiseConv2DAttrs(padding=SAME), [(1, 3, 3, 4), (4,)],
                  OpCost(2304, 52, 256, 256, 0, 256)),
    "depthwise_m2": (OpKind.DEPTHWISE_CONV_2D, (1, 8, 8, 4), (1, 8, 8, 8),
                     DepthwiseConv2DAttrs(depth_multiplier=2, padding=SAME), [(1, 3, 3, 8)],
                     OpCost(4608, 72, 256, 512, 0, 512)),
    "fully_connected": (OpKind.FULLY_CONNECTED, (1, 64), (1, 10), FullyConnectedAttrs(),
                        [(10, 64), (10,)], OpCost(640, 680, 64, 10, 0, 10)),
    "avg_pool": (OpKind.AVERAGE_POOL_2D, (1, 8, 8, 4), (1, 4, 4, 4), Pool2DAttrs(2, 2, 2, 2), [],
                 OpCost(256, 0, 256, 64, 0, 64)),
    "max_pool": (OpKind.MAX_POOL_2D, (1, 8, 8, 4), (1, 4, 4, 4), Pool2DAttrs(3, 3, 2, 2, SAME),
                 [], OpCost(576, 0, 256, 64, 0, 64)),
    "mean": (OpKind.MEAN, (1, 8, 8, 4), (1, 4), MeanAttrs((1, 2)), [],
             OpCost(256, 0, 256, 4, 0, 4)),
    "add_const": (OpKind.ADD, (1, 8, 8, 4), (1, 8, 8, 4), ElementwiseAttrs(), [(1, 1, 1, 4)],
                  OpCost(256, 4, 256, 256, 0, 512)),
    "softmax": (OpKind.SOFTMAX, (1, 10), (1, 10), SoftmaxAttrs(), [],
                OpCost(0, 0, 10, 10, 0, 80)),
    "relu": (OpKind.RELU, (1, 8, 8, 4), (1, 8, 8, 4), NoAttrs(), [],
             OpCost(0, 0, 256, 256, 0, 256)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_op_cost_hand_computed(case: str) -> None:
    kind, in_shape, out_shape, attrs, constants, expected = CASES[case]
    graph, op = single(kind, in_shape, out_shape, attrs, constants)
    assert op_cost(graph, op) == expected


@pytest.mark.parametrize("case", list(CASES))
def test_cost_model_scratch_is_the_planners_out_of_place_scratch(case: str) -> None:
    kind, in_shape, out_shape, attrs, constants, _ = CASES[case]
    graph, op = single(kind, in_shape, out_shape, attrs, constants)
    assert op_cost(graph, op).scratch_bytes == scratch_bytes(graph, op, InPlace.NONE)


def test_concatenation_reads_both_inputs() -> None:
    graph = Graph("concat")
    a, b = act(graph, "a", (1, 4, 4, 2)), act(graph, "b", (1, 4, 4, 6))
    graph.inputs += [a, b]
    op = add_op(graph, OpKind.CONCATENATION, [a, b], "y", (1, 4, 4, 8), ConcatenationAttrs(3))
    assert op_cost(graph, op) == OpCost(0, 0, 128, 128, 0, 128)


# --- the latency and energy model ---------------------------------------------------------


def test_estimate_cycles_formula() -> None:
    board = get_board("nucleo-f767zi")
    cost = OpCost(macs=1000, weight_bytes=400, input_bytes=300, output_bytes=200,
                  scratch_bytes=100, ops=50)
    sram, flash = board.tier(TierKind.SRAM), board.tier(TierKind.ONCHIP_FLASH)
    seconds = (400 / flash.read_bandwidth + (300 + 100) / sram.read_bandwidth
               + (200 + 100) / sram.write_bandwidth)
    expected = (1000 * board.core_model.cycles_per_mac_dsp
                + 50 * board.core_model.cycles_per_elem + seconds * board.clock_hz)
    assert estimate_cycles(cost, board) == pytest.approx(expected)
    nj = (400 * flash.read_energy_nj_per_byte + 400 * sram.read_energy_nj_per_byte
          + 300 * sram.write_energy_nj_per_byte)
    energy = board.active_power_mw * expected / board.clock_hz + nj * 1e-6
    assert estimate_energy_mj(cost, board) == pytest.approx(energy)


def study_last_layer() -> tuple[Graph, Operator]:
    """The layer of section 5.1 of the study: [1,4,4,112] x [1280,1,1,112] weights."""
    return single(OpKind.CONV_2D, (1, 4, 4, 112), (1, 4, 4, 1280), Conv2DAttrs(),
                  [(1280, 1, 1, 112)])


def test_memory_hierarchy_matches_the_study() -> None:
    board = get_board("nucleo-f767zi")
    cost = op_cost(*study_last_layer())
    sram, flash, sd = (estimate(cost, board, Placement(kind)) for kind in
                       (TierKind.SRAM, TierKind.ONCHIP_FLASH, TierKind.SD_CARD))
    # Same latency from SRAM and flash; +0.07 mJ from flash; SD card far slower.
    assert flash.latency_ms == pytest.approx(sram.latency_ms, rel=0.01)
    assert flash.energy_mj - sram.energy_mj == pytest.approx(0.07, abs=0.01)
    assert sd.latency_ms > 10 * flash.latency_ms


def test_placement_on_missing_tier_is_a_board_error() -> None:
    cost = op_cost(*study_last_layer())
    with pytest.raises(BoardError, match="has no sdram memory"):
        estimate(cost, get_board("nucleo-f091rc"), Placement(TierKind.SDRAM))


# --- working set, peak and the fit verdict on a branching graph ---------------------------


def branching_graph() -> Graph:
    """a -conv3x3-> b; b -> c (512 B) -> c2; b -> d (512 B) -> d2; c2 + d2 -> out.

    Activation bytes: a 64, b 128, c 512, c2 16, d 512, d2 16, out 16. The 3x3 conv needs
    a 3*3*4 = 36 B im2col row of scratch; the 1x1 convs none.
    """
    graph = Graph("branching")
    a = act(graph, "a", (1, 4, 4, 4))
    graph.inputs.append(a)
    conv(graph, a, "b", 8, kernel=3)
    conv(graph, "b", "c", 32)
    conv(graph, "c", "c2", 1)
    conv(graph, "b", "d", 32)
    conv(graph, "d", "d2", 1)
    add_op(graph, OpKind.ADD, ["c2", "d2"], "out", (1, 4, 4, 1), ElementwiseAttrs())
    graph.outputs.append("out")
    return graph


def test_lifetimes() -> None:
    spans = lifetimes(branching_graph(), [0, 1, 2, 3, 4, 5])
    assert spans == {"a": (0, 0), "b": (0, 3), "c": (1, 2), "c2": (2, 5), "d": (3, 4),
                     "d2": (4, 5), "out": (5, 5)}


def test_working_set_in_graph_order() -> None:
    report = analyze(branching_graph(), get_board("nucleo-f767zi"))
    sets = [layer.working_set_bytes for layer in report.layers]
    # step 0: a + b + scratch; 1: b + c; 2: b + c + c2; 3: b + c2 + d; 4: c2 + d + d2;
    # 5: c2 + d2 + out.
    assert sets == [64 + 128 + 36, 128 + 512, 128 + 512 + 16, 128 + 16 + 512,
                    16 + 512 + 16, 48]
    assert report.peak_ram_bytes == 656
    assert report.peak_layer == 2
    assert not report.peak_from_planner


def test_working_set_depends_on_the_order() -> None:
    report = analyze(branching_graph(), get_board("nucleo-f767zi"), order=[0, 1, 3, 2, 4, 5])
    assert [layer.index for layer in report.layers] == [0, 1, 3, 2, 4, 5]
    # Running d before c2 keeps c and d (512 B each) alive together, beside b.
    assert [layer.working_set_bytes for layer in report.layers] == [
        228, 640, 128 + 512 + 512, 512 + 512 + 16, 544, 48]
    assert report.peak_ram_bytes == 1152
    assert report.peak_layer == 3


def test_order_must_be_a_valid_schedule() -> None:
    board = get_board("nucleo-f767zi")
    with pytest.raises(ValueError, match="before c is produced"):
        analyze(branching_graph(), board, order=[0, 2, 1, 3, 4, 5])
    with pytest.raises(ValueError, match="exactly once"):
        analyze(branching_graph(), board, order=[0, 1, 2])


def weight_bytes_of(graph: Graph) -> int:
    return sum(t.nbytes for t in graph.tensors.values() if t.is_constant)


def test_totals_and_planner_peak() -> None:
    graph = branching_graph()
    board = get_board("nucleo-f767zi")
    report = analyze(graph, board, peak_ram_bytes=500)
    assert report.peak_ram_bytes == 500 and report.peak_from_planner
    assert report.macs == 16 * 8 * 36 + 2 * (16 * 32 * 8 + 16 * 32) + 16
    assert report.flash_bytes == weight_bytes_of(graph)
    assert report.flash_capacity == board.flash_bytes
    assert report.sram_margin_bytes == board.sram_bytes - 500
    assert report.flash_margin_bytes == board.flash_bytes - report.flash_bytes
    assert report.fits and report.fits_sram and report.fits_flash
    assert report.latency_ms_estimate == pytest.approx(sum(x.latency_ms for x in report.layers))
    assert report.energy_mj_estimate == pytest.approx(sum(x.energy_mj for x in report.layers))
    locations = [layer.weights_location for layer in report.layers]
    assert locations == ["onchip_flash"] * 5 + ["none"]


def tiny_board(sram: int, flash: int) -> Board:
    board = get_board("nucleo-f091rc")
    tiers = tuple(replace(tier, size_bytes=flash) if tier.kind is TierKind.ONCHIP_FLASH
                  else replace(tier, size_bytes=sram) for tier in board.tiers)
    return replace(board, sram_bytes=sram, flash_bytes=flash, tiers=tiers)


def test_does_not_fit_sram() -> None:
    report = analyze(branching_graph(), tiny_board(sram=600, flash=1 << 20))
    assert not report.fits_sram and not report.fits and report.fits_flash
    assert report.sram_margin_bytes == 600 - 656


def test_weights_overflow_flash() -> None:
    # b: 288 + 32 B, c: 256 + 128 B, c2: 32 + 4 B, d: 384 B, d2: 36 B = 1160 B of constants;
    # 740 B fit up to c2, d brings the total to 1124 B.
    report = analyze(branching_graph(), tiny_board(sram=1 << 20, flash=800))
    assert report.flash_bytes == 1160
    assert not report.fits_flash and not report.fits
    assert report.flash_margin_bytes == 800 - 1160
    assert report.weights_not_fitting == ("conv_2d_d", "conv_2d_d2")
    assert [layer.weights_location for layer in report.layers] == [
        "onchip_flash", "onchip_flash", "onchip_flash", "overflow", "overflow", "none"]


def test_weights_in_sram_count_against_sram() -> None:
    board = get_board("nucleo-f767zi")
    report = analyze(branching_graph(), board, weights_tier=TierKind.SRAM)
    assert report.weights_tier == "sram"
    assert report.sram_margin_bytes == board.sram_bytes - 656 - 1160
    assert report.flash_capacity == board.flash_bytes  # still stored in flash
    with pytest.raises(BoardError, match="has no qspi_flash memory"):
        analyze(branching_graph(), board, weights_tier=TierKind.QSPI_FLASH)


def test_empty_graph() -> None:
    graph = Graph("empty")
    report = analyze(graph, get_board("rp2040"))
    assert report.layers == () and report.peak_ram_bytes == 0 and report.peak_layer is None
    assert report.weights_tier == "qspi_flash" and report.fits


# --- JSON, table and plot -----------------------------------------------------------------

TOP_FIELDS = ("model", "board", "macs", "flash_bytes", "peak_ram_bytes", "fits",
              "latency_ms_estimate", "energy_mj_estimate", "layers")
LAYER_FIELDS = ("name", "op", "output_shape", "macs", "weight_bytes", "working_set_bytes")


def test_json_field_names_are_stable_and_documented() -> None:
    report = analyze(branching_graph(), get_board("nucleo-f767zi"))
    data = json.loads(json.dumps(report.to_json()))
    assert data["schema"] == "mcuflow.report/2"
    assert data["model"] == "branching" and data["board"] == "nucleo-f767zi"
    assert set(TOP_FIELDS) <= set(data)
    layer = data["layers"][0]
    assert set(LAYER_FIELDS) <= set(layer)
    assert layer["op"] == "CONV_2D" and layer["output_shape"] == [1, 4, 4, 8]
    documented = set(re.findall(r"[a-z_]+", " ".join(
        line.split("|")[1] for line in REPORT_JSON_FIELDS.splitlines() if line.startswith("| "))))
    assert set(data) <= documented
    assert set(layer) <= documented
    assert json.loads(report.to_json_text()) == data


def test_render_report_table_and_verdict() -> None:
    console = Console(record=True, width=80)
    render_report(analyze(branching_graph(), tiny_board(sram=600, flash=800)), console)
    text = console.export_text()
    assert "CONV_2D" in text and "ADD" in text
    assert "DOES NOT FIT (SRAM and flash)" in text
    assert "over" in text
    console = Console(record=True, width=80)
    render_report(analyze(branching_graph(), get_board("nucleo-f767zi")), console)
    assert "Verdict: FITS" in console.export_text()


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "working_set.png"
    plot_working_set(analyze(branching_graph(), tiny_board(sram=600, flash=1 << 20)), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("low", "high"), [(1.6e6, 5.6e6), (2e5, 4e6), (1e-3, 1e4)])
def test_log_axes_under_literal_text_are_labelled_in_plain_text(low: float, high: float) -> None:
    """matplotlib draws the labels: some are shown, none is raw mathtext."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with literal_text():
        figure = Figure()
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.plot([low, high], [low, high])
        plain_log_scale(axes, "x")
        plain_log_scale(axes, "y")
        figure.canvas.draw()
        labels = [t.get_text() for t in [*axes.get_xticklabels(minor=True),
                                         *axes.get_xticklabels(), *axes.get_yticklabels()]]
    shown = [label for label in labels if label]
    assert len(shown) >= 2, labels
    assert not any("$" in label or "mathdefault" in label for label in labels), labels
