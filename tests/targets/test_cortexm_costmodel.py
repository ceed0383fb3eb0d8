"""analyze's latency on whole models the kernel sweeps never saw is within 15 % of QEMU's.

The kernel costs are fitted to single-layer sweeps (bench/costmodel.py --fit); these models are
checked against them: a MobileNetV3-like network (HARD_SWISH, squeeze-excite MEAN, MUL and
LOGISTIC) and an FC-only autoencoder, on a core with the DSP kernels and one without.
"""

from __future__ import annotations

import pytest

from mcuflow.analysis.metrics import analyze
from mcuflow.api import planned_steps
from mcuflow.codegen.render import emit_layers
from mcuflow.codegen.targets import CORTEX_M
from mcuflow.hw.board import get_board
from mcuflow.ir import zoo
from mcuflow.toolchain.qemu import plan_for, verify_cortexm

GOAL = 0.15
LINK_BOARD = "nucleo-f767zi"  # holds both models; instruction counts do not depend on it
ANALYSIS_BOARDS = {"cortex-m4": "nucleo-f429zi", "cortex-m0": "nucleo-f091rc"}
MODELS = {"mobilenet_v3_like": lambda: zoo.mobilenet_v3_like(size=48),
          "fc_autoencoder": lambda: zoo.fc_autoencoder(320, (256, 128, 32, 128, 256))}


@pytest.mark.parametrize("target", list(ANALYSIS_BOARDS))
@pytest.mark.parametrize("name", list(MODELS))
def test_latency_estimate_is_within_15_percent_of_qemu(name: str, target: str) -> None:
    graph = MODELS[name]()
    plan = plan_for(graph, target)
    board = get_board(ANALYSIS_BOARDS[target])
    layers, _ = emit_layers(graph, plan, CORTEX_M[target].dsp)
    report = analyze(graph, board, order=plan.order, planned=planned_steps(plan),
                     kernels=[layer.functions for layer in layers])
    result = verify_cortexm(graph, plan, target, LINK_BOARD, runs=1)
    assert result.bit_exact
    measured_ms = (result.instructions * board.core_model.cycles_per_instruction
                   / board.clock_hz * 1e3)
    error = report.latency_ms_estimate / measured_ms - 1
    assert abs(error) <= GOAL, (f"{name} on {target}: estimate {report.latency_ms_estimate:.3f} "
                                f"ms, QEMU {measured_ms:.3f} ms ({error:+.1%}); refit with "
                                "bench/costmodel.py --fit --write")
