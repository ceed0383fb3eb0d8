"""The LSTM keyword spotters run bit-exact on QEMU Cortex-M4, their state carried over runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.qemu import verify_cortexm
from tests.models.test_lstm_kws import bidirectional_kws_model, kws_lstm_model
from tests.onnx_recurrent_models import frames, litert_runs, quantised_kws
from tests.targets.support import BOARDS, qemu_outputs

RUNS = 6


def test_lstm_keyword_spotter_is_bit_exact_on_cortex_m4(tmp_path: Path) -> None:
    _, graph = kws_lstm_model(tmp_path)
    plan = plan_memory(graph, 0.5, dsp=True)
    result = verify_cortexm(graph, plan, "cortex-m4", BOARDS["cortex-m4"], runs=RUNS, seed=5)
    assert result.bit_exact and result.mismatches == 0 and result.runs == RUNS
    assert result.instructions > 0


def test_bidirectional_keyword_spotter_is_bit_exact_on_cortex_m4(tmp_path: Path) -> None:
    _, graph = bidirectional_kws_model(tmp_path)
    plan = plan_memory(graph, 0.5, dsp=True)
    result = verify_cortexm(graph, plan, "cortex-m4", BOARDS["cortex-m4"], runs=RUNS, seed=9)
    assert result.bit_exact and result.mismatches == 0 and result.runs == RUNS


def test_onnx_lstm_keyword_spotter_is_bit_exact_on_cortex_m4(tmp_path: Path) -> None:
    """The float ONNX twin after mcuflow's PTQ, state carried over runs, equals LiteRT."""
    result = quantised_kws("LSTM", tmp_path)
    inputs, want = litert_runs(result, frames(RUNS, seed=8))
    np.testing.assert_array_equal(qemu_outputs(result.graph, inputs, tmp_path / "c")[0], want)
