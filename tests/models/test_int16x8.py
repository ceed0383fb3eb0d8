"""A small int16x8 CNN (LiteRT's 16x8 scheme) compiled from its .tflite, bit-exact vs LiteRT.

float32 input, QUANTIZE to int16, CONV_2D, DEPTHWISE_CONV_2D, a 1x1 CONV_2D, a residual ADD,
a global AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED, SOFTMAX and DEQUANTIZE to float32: the
model goes through the TFLite reader, the planner and the C code generator; its C output
equals LiteRT's reference kernels to the bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuflow import api
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.graph import DType
from mcuflow.toolchain.host import build_host, run_host
from tests.coverage_models import INT16_INPUT_SHAPE as INPUT_SHAPE
from tests.coverage_models import int16x8_cnn
from tests.support import litert_invoke

RUNS = 16


def model_file(directory: Path) -> Path:
    """The CNN written as a .tflite file in `directory`."""
    path = directory / "int16x8_cnn.tflite"
    path.write_bytes(write_tflite(int16x8_cnn()))
    return path


def inputs(runs: int = RUNS) -> np.ndarray:
    """`runs` float32 inputs stacked, from a fixed seed."""
    return np.random.default_rng(11).standard_normal((runs, *INPUT_SHAPE)).astype(np.float32)


def litert_outputs(model: Path, samples: np.ndarray) -> np.ndarray:
    """LiteRT's (reference kernels) output of each sample, stacked."""
    return np.stack([litert_invoke(model, [sample])[0] for sample in samples])


def test_cnn_reads_back_as_int16x8() -> None:
    graph = int16x8_cnn()
    kinds = [op.kind.value for op in graph.operators]
    assert kinds == ["QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD",
                     "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX", "DEQUANTIZE"]
    assert {graph.tensors[op.outputs[0]].dtype for op in graph.operators[:-1]} == {DType.INT16}


def test_compiled_c_is_bit_exact_against_litert_on_the_host(tmp_path: Path) -> None:
    model = model_file(tmp_path)
    project = api.compile_model(model, tmp_path / "project", target="host")
    binary = build_host(project.path, sanitize=True)
    samples = inputs()
    got = run_host(binary, [samples], project.outputs)[0]
    want = litert_outputs(model, samples)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert len({row.tobytes() for row in want}) == RUNS  # not a constant model
    assert want.min() > 0.0 and want.max() < 1.0


def test_verify_agrees_with_the_reference_interpreter(tmp_path: Path) -> None:
    verification = api.verify_model(model_file(tmp_path), runs=8)
    assert verification.result.bit_exact and verification.result.mismatches == 0
