"""The dilated 1-D CNN IMU classifier runs bit-exact against LiteRT on QEMU Cortex-M4.

Folded into dilated convolutions when read, and as written (the batch-space ops themselves).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuflow import api
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.ops import OpKind
from tests.imu_models import imu_dilated, imu_inputs
from tests.support import litert_interpreter, litert_invoke
from tests.targets.support import qemu_outputs

RUNS = 6


def test_imu_classifier_is_bit_exact_on_cortex_m4(tmp_path: Path) -> None:
    model = write_tflite(imu_dilated())
    path = tmp_path / "imu.tflite"
    path.write_bytes(model)
    folded, unfolded = api.load_graph(path), read_tflite(model)
    assert OpKind.SPACE_TO_BATCH_ND not in {op.kind for op in folded.operators}
    assert OpKind.SPACE_TO_BATCH_ND in {op.kind for op in unfolded.operators}
    inputs = imu_inputs(folded, RUNS)
    litert = litert_interpreter(model)
    want = np.stack([litert_invoke(litert, [inputs[0][r]])[0] for r in range(RUNS)])
    for name, graph in (("folded", folded), ("unfolded", unfolded)):
        got = qemu_outputs(graph, inputs, tmp_path / name)[0]
        np.testing.assert_array_equal(got, want, err_msg=name)
