"""Kernel costs: every kernel fitted on every Cortex-M core, the default choice, the estimate."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from mcuflow.analysis.metrics import analyze
from mcuflow.codegen.project import kernel_source
from mcuflow.codegen.render import emit_layers
from mcuflow.codegen.targets import CORTEX_M
from mcuflow.hw.board import TierKind, get_board
from mcuflow.hw.costmodel import estimate, op_cost
from mcuflow.hw.kernel_costs import kernel_costs, parse_costs, step_instructions
from mcuflow.hw.kernels import FC_FEW_UNITS, FC_SHORT_DEPTH, KERNELS, default_kernels
from mcuflow.hw.work import SMALL_POINTWISE_GROUPS, Work
from mcuflow.ir import zoo
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.memory.plan import InPlace, Step
from mcuflow.memory.planner import plan_memory
from mcuflow.quant.codebook import compress_graph

CASES = [(kernel, core) for kernel in KERNELS for core in CORTEX_M
         if CORTEX_M[core].dsp or not KERNELS[kernel].dsp]


@pytest.mark.parametrize(("kernel", "core"), CASES, ids=[f"{k}-{c}" for k, c in CASES])
def test_every_kernel_is_fitted_on_every_core_that_runs_it(kernel: str, core: str) -> None:
    fitted = kernel_costs().get(core)
    assert fitted is not None, f"no kernel costs for {core}: run bench/costmodel.py --fit --write"
    assert kernel in fitted.kernels, (f"{kernel} has no fitted cost on {core}: run "
                                      f"bench/costmodel.py --fit --core {core} --write")
    assert all(value >= 0 for value in fitted.kernels[kernel].values())
    assert fitted.source and fitted.date


def test_cost_file_names_only_work_terms() -> None:
    text = "[cores.cortex-m4]\nsource = 's'\ndate = 'd'\n[cores.cortex-m4.kernels.k]\nmacs = 2\n"
    assert parse_costs(text)["cortex-m4"].kernels["k"] == Work(macs=2.0)
    with pytest.raises(ValueError, match="unknown work term cycles"):
        parse_costs(text.replace("macs", "cycles"))


def _graphs() -> list[Graph]:
    codebook = compress_graph(zoo.resnet_like(), 16)
    return [zoo.mobilenet_v2_like(), zoo.mobilenet_v3_like(), zoo.squeezenet_like(),
            zoo.fc_autoencoder(), codebook]


def _default_applies(step: Step, op: Operator) -> bool:
    """Steps whose kernel the plan does not change: not in place, or in place the same way."""
    if step.inplace in (InPlace.DEPTHWISE, InPlace.CONCAT_SLICE):
        return False
    return not (step.inplace is InPlace.OVERLAP and op.kind is OpKind.DEPTHWISE_CONV_2D)


@pytest.mark.parametrize("dsp", [False, True])
def test_default_choice_is_what_the_emitters_pick(dsp: bool) -> None:
    for graph in _graphs():
        plan = plan_memory(graph, 0.0, dsp=dsp)
        layers, _ = emit_layers(graph, plan, dsp)
        for step, layer in zip(plan.steps, layers, strict=True):
            op = graph.operators[step.op_index]
            chosen = default_kernels(graph, op, dsp)
            assert chosen is not None and all(op.kind in KERNELS[n].kinds for n in chosen)
            # The DSP emitters may still decline (requantisation not provably exact).
            declined = any(KERNELS[name].dsp for name in chosen)
            if _default_applies(step, op) and not declined:
                assert chosen == layer.functions, (graph.name, op.name, step.inplace)


def test_work_terms_are_counts() -> None:
    for graph in _graphs():
        for op in graph.operators:
            for name in default_kernels(graph, op, dsp=True) or ():
                work = KERNELS[name].work(graph, op)
                assert all(value >= 0 for value in work.values()) and work.calls >= 1


def test_analyze_charges_the_fitted_kernels() -> None:
    graph = zoo.mobilenet_v3_like()
    board = get_board("nucleo-f429zi")
    report = analyze(graph, board)
    for layer in report.layers:
        op = graph.operators[layer.index]
        instructions = step_instructions(graph, op, default_kernels(graph, op, True),
                                         "cortex-m4")
        assert instructions is not None
        expected = estimate(op_cost(graph, op), board, instructions=instructions)
        assert layer.latency_ms == pytest.approx(expected.latency_ms)
    # A HARD_SWISH is one table look-up per element: cheaper than the convolution before it.
    swish = next(layer for layer in report.layers if layer.op == "HARD_SWISH")
    assert swish.latency_ms < report.layers[swish.index - 1].latency_ms / 4


def test_cores_without_fitted_kernels_keep_the_per_core_model() -> None:
    graph = zoo.squeezenet_like()
    board = get_board("esp32-s3")
    op = graph.operators[0]
    assert step_instructions(graph, op, ("mcuflow_conv2d_s8",), board.core.value) is None
    layer = analyze(graph, board).layers[0]
    assert layer.latency_ms == pytest.approx(estimate(op_cost(graph, op), board).latency_ms)


def test_only_off_chip_traffic_adds_to_the_fitted_instructions() -> None:
    graph = zoo.fc_autoencoder()
    board = get_board("stm32f746g-disco")
    slow = replace(board, tiers=tuple(replace(t, read_bandwidth=t.read_bandwidth / 100)
                                      for t in board.tiers))
    on_chip = analyze(graph, board).latency_ms_estimate
    assert analyze(graph, slow).latency_ms_estimate == pytest.approx(on_chip)
    external = analyze(graph, board, weights_tier=TierKind.QSPI_FLASH).latency_ms_estimate
    qspi = board.tier(TierKind.QSPI_FLASH)
    weights = sum(t.nbytes for t in graph.tensors.values() if t.is_constant)
    assert external == pytest.approx(on_chip + weights / qspi.read_bandwidth * 1e3)


def _defined(name: str, source: str) -> int:
    found = re.search(rf"#define {name} (\d+)", kernel_source(source))
    assert found is not None, name
    return int(found.group(1))


def test_small_pointwise_bound_is_the_kernels() -> None:
    assert _defined("MCUFLOW_DSP_SMALL_GROUPS", "mcuflow_conv_dsp.c") == SMALL_POINTWISE_GROUPS


def test_small_fully_connected_bounds_are_the_kernels() -> None:
    assert _defined("MCUFLOW_DSP_SHORT_DEPTH", "mcuflow_dsp.h") == FC_SHORT_DEPTH
    assert _defined("MCUFLOW_DSP_FEW_UNITS", "mcuflow_dsp.h") == FC_FEW_UNITS
