"""The ONNX int16x8 and uint8-I/O CNNs run bit-exact against LiteRT on QEMU Cortex-M4.

Each of tests/onnx_quant_models.py's four: mcuflow's PTQ with `--scheme int16x8` and with
`--io-dtype uint8`, and ONNX Runtime's QDQ models with int16 and with raw uint8 I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from onnxruntime.quantization import QuantType

from mcuflow.ir.graph import DType
from mcuflow.ptq import QuantizeResult
from tests.onnx_quant_models import imported_qdq, litert_outputs, model_inputs, quantised
from tests.targets.support import qemu_outputs

RUNS = 6
MODELS: dict[str, tuple[Callable[[Path], QuantizeResult], DType]] = {
    "ptq_int16x8": (lambda d: quantised(d, "int16x8"), DType.INT16),
    "qdq_int16": (lambda d: imported_qdq(d, QuantType.QInt16)[1], DType.INT16),
    "ptq_uint8_io": (lambda d: quantised(d, io_dtype="uint8"), DType.UINT8),
    "qdq_uint8_io": (lambda d: imported_qdq(d, QuantType.QUInt8)[1], DType.UINT8),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_cnn_is_bit_exact_against_litert_on_cortex_m4(tmp_path: Path, name: str) -> None:
    build, dtype = MODELS[name]
    result = build(tmp_path)
    assert result.graph.tensor(result.graph.outputs[0]).dtype is dtype
    inputs = model_inputs(result, RUNS)
    want = litert_outputs(result, inputs)[0]
    got = qemu_outputs(result.graph, inputs, tmp_path / "project")[0]
    assert got.dtype == want.dtype == dtype.numpy
    np.testing.assert_array_equal(got, want)
