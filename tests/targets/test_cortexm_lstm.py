"""The LSTM keyword spotters run bit-exact on QEMU Cortex-M4, their state carried over runs."""

from __future__ import annotations

from pathlib import Path

from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.qemu import verify_cortexm
from tests.models.test_lstm_kws import bidirectional_kws_model, kws_lstm_model
from tests.targets.support import BOARDS

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
