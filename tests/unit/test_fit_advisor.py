"""The fit advisor: each option planned on the board, checked against LiteRT and the planner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mcuflow.advisor import Advice, FitMode, FitRequest, advise_fit, fit_analysis
from mcuflow.codegen.flash import estimate_flash
from mcuflow.codegen.render import emit_layers
from mcuflow.errors import McuflowError
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.board import get_board
from mcuflow.ir import zoo
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import Graph
from mcuflow.measure import predicted_overhead, unpatched_board
from mcuflow.memory.check import check_plan
from mcuflow.memory.execute import run_in_arena
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.memory.planner import plan_memory
from mcuflow.passes.resize_input import ResizeError, resize_input
from mcuflow.planning import Analysis, Build, analyze_graph
from mcuflow.quant.codebook import compress_graph
from mcuflow.quant.report import dequantize
from mcuflow.ref.interpreter import run
from mcuflow.toolchain.host import random_inputs
from tests.support import litert_invoke
from tests.unit.test_boards import board_toml

BUDGET = 8000
"""SRAM budget SqueezeNet-48 does not fit, with or without patches or streamed input."""
M4 = Build(get_board("nucleo-f429zi"), "cortex-m4")


def squeezenet_48() -> Graph:
    return zoo.squeezenet_like(48)


def fc_heavy() -> Graph:
    """Two FULLY_CONNECTED layers, the first with bell-shaped int8 weights.

    Trained weights are bell-shaped too: Huffman codes alone make them smaller.
    """
    b = GraphBuilder("fc_heavy", 3)
    x = b.fully_connected(b.input((1, 384), 0.05, 0), 160, Activation.RELU, per_channel=True)
    graph = b.output(b.softmax(b.fully_connected(x, 10))).build()
    weights = graph.tensors[graph.operators[0].inputs[1]]
    values = np.random.default_rng(0).normal(0, 10, weights.shape)
    weights.data = np.clip(np.rint(values), -127, 127).astype(np.int8)
    return graph


def small_flash_board(folder: Path) -> Path:
    """A Cortex-M4 board of 128 KiB SRAM and 64 KiB flash.

    fc_heavy's 61 KiB of weights and its firmware do not fit it.
    """
    path = folder / "small_flash.toml"
    path.write_text(board_toml().replace("524288", "65536"))
    return path


def _inputs(graph: Graph, seed: int = 0) -> list[np.ndarray]:
    return [x[0] for x in random_inputs(graph, 1, seed)]


@pytest.fixture(scope="module")
def squeezenet() -> tuple[Analysis, Advice]:
    request = PatchRequest(sram_budget=BUDGET, out_of_core=False)
    asked = analyze_graph(squeezenet_48(), M4, request)
    return asked, advise_fit(asked, M4, request)


@pytest.fixture(scope="module")
def flash_bound(tmp_path_factory: pytest.TempPathFactory) -> tuple[Analysis, Advice, Build]:
    board = get_board("my-board", small_flash_board(tmp_path_factory.mktemp("board")))
    build = Build(board, "cortex-m4")
    asked = analyze_graph(fc_heavy(), build, PatchRequest())
    return asked, advise_fit(asked, build, PatchRequest()), build


# --- the resize pass ----------------------------------------------------------------------------


@pytest.mark.parametrize("build", [zoo.mobilenet_v2_like, zoo.squeezenet_like,
                                   zoo.mobilenet_v3_like])
def test_a_resized_graph_runs_bit_exact_with_litert(build: Callable[[int], Graph]) -> None:
    graph = resize_input(build(48), 32, 24)
    assert graph.tensors[graph.inputs[0]].shape == (1, 32, 24, 3)
    inputs = _inputs(graph, seed=4)
    expected = litert_invoke(write_tflite(graph), inputs)
    got = run(graph, inputs).outputs
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def test_a_global_pool_takes_the_new_size() -> None:
    b = GraphBuilder("pooled", 0)
    x = b.conv2d(b.input((1, 16, 16, 3), 0.02, 0), 8, stride=2)
    pooled = b.average_pool2d(x, 8, 8)
    graph = b.output(b.reshape(pooled, (1, 8))).build()
    resized = resize_input(graph, 8, 8)
    pool = resized.operators[1]
    assert (pool.attrs.filter_h, pool.attrs.filter_w) == (4, 4)
    assert resized.tensors[resized.outputs[0]].shape == (1, 8)
    inputs = _inputs(resized)
    assert np.array_equal(litert_invoke(write_tflite(resized), inputs)[0],
                          run(resized, inputs).outputs[0])


def test_ops_holding_the_old_sizes_are_refused_all_at_once() -> None:
    b = GraphBuilder("flat", 0)
    x = b.conv2d(b.input((1, 8, 8, 3), 0.02, 0), 4)
    flat = b.reshape(x, (1, 8 * 8 * 4))
    graph = b.output(b.fully_connected(flat, 10), b.fully_connected(x, 5)).build()
    with pytest.raises(ResizeError) as caught:
        resize_input(graph, 6, 6)
    assert "RESHAPE 'reshape_" in caught.value.message
    assert "holds sizes of the original resolution" in caught.value.message
    assert "FULLY_CONNECTED 'fully_connected_" in caught.value.message
    assert "flattens a spatial tensor" in caught.value.message


def test_a_model_without_an_image_input_has_no_resolution() -> None:
    with pytest.raises(ResizeError, match="does not read one NHWC image"):
        resize_input(zoo.fc_autoencoder(), 8, 8)


# --- the options --------------------------------------------------------------------------------


def test_the_options_are_ranked_fitting_exact_then_cheapest(
        squeezenet: tuple[Analysis, Advice]) -> None:
    asked, advice = squeezenet
    assert not asked.fits
    names = [o.name for o in advice.options]
    assert {"patches", "streamed", "order", "resolution"} <= set(names)
    fitting = [o for o in advice.options if o.fits]
    assert advice.options[:len(fitting)] == tuple(fitting)
    keys = [(not o.exact, o.needs_reader, o.overhead) for o in fitting]
    assert keys == sorted(keys)
    for option in advice.options:
        assert option.peak_bytes == option.analysis.plan.arena_bytes
        assert option.fits == (option.peak_bytes <= BUDGET and option.analysis.report.fits)
        assert option.flags == (() if option.applied else ("--fit", option.name))
    assert any("--external auto applies it" in note for note in advice.notes)


def test_the_resolution_option_is_the_largest_that_fits_and_runs_exact_in_its_arena(
        squeezenet: tuple[Analysis, Advice]) -> None:
    asked, advice = squeezenet
    option = advice.named("resolution")
    assert option is not None and option.fits and not option.exact
    _, height, width, _ = option.input_shape
    assert height == width and height % 16 == 0 and height < 48
    plan = option.analysis.plan
    check_plan(plan)
    assert plan.arena_bytes <= BUDGET
    graph = option.analysis.graph
    inputs = _inputs(graph, seed=9)
    expected = litert_invoke(write_tflite(graph), inputs)
    got = run_in_arena(plan, inputs).outputs
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))
    larger = analyze_graph(resize_input(asked.graph, height + 16, width + 16), M4,
                           PatchRequest(sram_budget=BUDGET, out_of_core=False))
    assert not larger.fits
    assert option.macs == sum(layer.macs for layer in option.analysis.report.layers)
    assert option.macs < asked.report.macs and option.overhead < 0


def test_the_order_option_shows_what_reordering_gives(
        squeezenet: tuple[Analysis, Advice]) -> None:
    _, advice = squeezenet
    order = advice.named("order")
    assert order is not None and order.exact and order.applied and not order.flags
    unpatched = plan_memory(squeezenet_48(), dsp=True)
    assert order.peak_bytes == unpatched.arena_bytes and order.overhead == 0


def test_codebook_options_cut_the_flash_as_the_flash_estimate_says(
        flash_bound: tuple[Analysis, Advice, Build]) -> None:
    asked, advice, build = flash_bound
    assert not asked.report.fits_flash and asked.report.fits_sram
    for size in (256, 16):
        option = advice.named(f"codebook-{size}")
        assert option is not None and option.fits
        compressed = compress_graph(asked.graph, size)
        plan = plan_memory(compressed, dsp=True)
        layers, pool = emit_layers(compressed, plan, True)
        flash = estimate_flash(compressed, layers, pool, "cortex-m4", build.io).total
        assert option.flash_bytes == flash <= build.board.flash_bytes
        assert option.flash_saved_bytes == asked.report.flash_bytes - flash
        assert option.overhead > 0  # decoding costs instructions


def test_huffman_codes_alone_are_exact_and_ranked_before_clustering(
        flash_bound: tuple[Analysis, Advice, Build]) -> None:
    asked, advice, _ = flash_bound
    names = [o.name for o in advice.options]
    assert names.index("codebook-256") < names.index("codebook-16")
    exact = advice.named("codebook-256")
    assert exact.exact and exact.sqnr_db is None
    inputs = _inputs(asked.graph, seed=5)
    assert np.array_equal(litert_invoke(write_tflite(exact.analysis.graph), inputs)[0],
                          litert_invoke(write_tflite(asked.graph), inputs)[0])


def test_clustered_weights_report_the_outputs_sqnr_litert_measures(
        flash_bound: tuple[Analysis, Advice, Build]) -> None:
    asked, advice, _ = flash_bound
    lossy = advice.named("codebook-16")
    assert not lossy.exact
    original, changed = write_tflite(asked.graph), write_tflite(lossy.analysis.graph)
    quant = asked.graph.tensors[asked.graph.outputs[0]].quant
    inputs = random_inputs(asked.graph, 3, 0)
    signal = noise = 0.0
    for run_index in range(3):
        sample = [x[run_index] for x in inputs]
        expected = dequantize(litert_invoke(original, sample)[0], quant)
        got = dequantize(litert_invoke(changed, sample)[0], quant)
        signal += float(np.sum(expected ** 2))
        noise += float(np.sum((expected - got) ** 2))
    assert noise > 0
    assert lossy.sqnr_db == pytest.approx(10 * np.log10(signal / noise))


# --- --fit --------------------------------------------------------------------------------------


def test_fit_auto_prefers_an_exact_option_when_one_fits() -> None:
    graph = squeezenet_48()
    request = PatchRequest(enabled=False, sram_budget=12_000)
    asked = analyze_graph(graph, M4, request)
    assert not asked.fits
    fitted = fit_analysis(asked, M4, request, FitRequest(FitMode.AUTO))
    assert fitted.applied is not None and fitted.applied.exact
    assert fitted.applied.name == "patches" and not fitted.changed_model
    assert fitted.analysis.plan.patch is not None
    assert fitted.analysis.plan.arena_bytes <= 12_000 and fitted.analysis.graph is graph


def test_fit_auto_applies_a_lossy_option_only_when_no_exact_one_fits(
        squeezenet: tuple[Analysis, Advice]) -> None:
    asked, advice = squeezenet
    assert not any(o.fits and o.exact for o in advice.options)
    request = PatchRequest(sram_budget=BUDGET, out_of_core=False)
    fitted = fit_analysis(asked, M4, request, FitRequest(FitMode.AUTO))
    assert fitted.applied == advice.named("resolution") and fitted.changed_model
    assert fitted.analysis.plan.arena_bytes <= BUDGET and fitted.analysis.fits


def test_fit_off_and_a_model_that_fits_are_left_alone() -> None:
    graph = squeezenet_48()
    asked = analyze_graph(graph, M4, PatchRequest())
    assert asked.fits
    for mode in FitMode.OFF, FitMode.AUTO:
        fitted = fit_analysis(asked, M4, PatchRequest(), FitRequest(mode), advise=True)
        assert fitted.analysis is asked and fitted.advice is None and fitted.applied is None


def test_fit_by_name_applies_that_option_or_says_why_not() -> None:
    graph = zoo.fc_autoencoder()
    asked = analyze_graph(graph, M4, PatchRequest())
    with pytest.raises(McuflowError, match="--fit resolution: not available for "
                                           "'fc_autoencoder': resolution: 'fc_autoencoder' "
                                           "does not read one NHWC image"):
        fit_analysis(asked, M4, PatchRequest(), FitRequest.parse("resolution"))
    fitted = fit_analysis(asked, M4, PatchRequest(), FitRequest.parse("codebook-16"))
    assert fitted.applied.name == "codebook-16" and fitted.changed_model
    assert any(t.codebook is not None for t in fitted.analysis.graph.tensors.values())


@pytest.mark.parametrize("text", ["bogus", "Auto", "", "codebook"])
def test_bad_fit_values_are_refused(text: str) -> None:
    with pytest.raises(McuflowError, match="--fit takes off, auto or an option's name"):
        FitRequest.parse(text)


# --- the unpatched run of the overhead measurement ----------------------------------------------


def test_the_unpatched_plan_runs_on_a_board_that_holds_it() -> None:
    small = get_board("nucleo-f429zi")
    assert unpatched_board(small, "cortex-m4", 100_000) is small
    bigger = unpatched_board(small, "cortex-m4", 300_000)
    assert bigger.id == "nucleo-l4r5zi" and bigger.core.value == "cortex-m4"
    assert unpatched_board(small, "cortex-m4", 10 << 20) is None
    assert unpatched_board(get_board("rp2040"), "cortex-m0", 200_000).id == "rp2040"


def test_the_host_only_predicts_the_overhead() -> None:
    graph = zoo.mobilenet_v2_like(48, 0.35, 10)
    analysis = analyze_graph(graph, Build(get_board("nucleo-f429zi"), "host"),
                             PatchRequest(sram_budget=16_000))
    overhead = predicted_overhead(analysis)
    assert overhead is not None and overhead.measured_overhead_pct is None
    search = analysis.patches
    assert overhead.predicted_overhead_pct == pytest.approx(
        100 * search.overhead(search.chosen))
    assert "measured on Cortex-M targets only" in overhead.line()
