"""A model quantised by ONNX Runtime (QDQ) runs bit-exact on QEMU Cortex-M4 and M0."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnxruntime.quantization import QuantType

from mcuflow import api
from tests.unit.test_qdq import ort_quantized


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0"])
def test_qdq_model_runs_bit_exact_on_qemu(tmp_path: Path, target: str) -> None:
    path = ort_quantized(tmp_path, True, QuantType.QUInt8)
    verified = api.verify_cortexm_model(path, target, runs=3)
    assert verified.bit_exact and verified.result.mismatches == 0
