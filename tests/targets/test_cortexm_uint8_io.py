"""The uint8-I/O model runs bit-exact against LiteRT on QEMU Cortex-M4."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.toolchain.host import random_inputs
from tests.support import litert_interpreter, litert_invoke
from tests.targets.support import qemu_outputs
from tests.uint8_models import uint8_cnn

RUNS = 8


def test_uint8_model_is_bit_exact_on_cortex_m4(tmp_path: Path) -> None:
    model = write_tflite(uint8_cnn())
    graph = read_tflite(model)
    inputs = random_inputs(graph, RUNS, seed=9)
    litert = litert_interpreter(model)
    runs = [litert_invoke(litert, [inputs[0][r]]) for r in range(RUNS)]
    got = qemu_outputs(graph, inputs, tmp_path / "project")
    for index, actual in enumerate(got):
        assert actual.dtype == np.uint8
        np.testing.assert_array_equal(actual, np.stack([outputs[index] for outputs in runs]))
