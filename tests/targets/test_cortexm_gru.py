"""The ONNX GRU keyword spotter (unrolled, after mcuflow's PTQ) is bit-exact on QEMU Cortex-M4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.onnx_recurrent_models import frames, litert_runs, quantised_kws
from tests.targets.support import qemu_outputs

RUNS = 4


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru_keyword_spotter_is_bit_exact_on_cortex_m4(tmp_path: Path,
                                                      linear_before_reset: int) -> None:
    result = quantised_kws("GRU", tmp_path, linear_before_reset=linear_before_reset)
    inputs, want = litert_runs(result, frames(RUNS, seed=8))
    np.testing.assert_array_equal(qemu_outputs(result.graph, inputs, tmp_path / "c")[0], want)
