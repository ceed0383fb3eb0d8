"""A uint8-I/O model (uint8 -> QUANTIZE -> int8 CNN -> QUANTIZE -> uint8) bit-exact vs LiteRT.

As TensorFlow's converter writes it with inference_input_type / inference_output_type uint8:
the reference interpreter and the generated C (host, sanitised) equal LiteRT's reference kernels
to the bit, the generated header declares uint8_t inputs and outputs, and `mcuflow run` /
`verify` feed uint8 data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuflow import api
from mcuflow.codegen.project import generate_project
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.graph import DType
from mcuflow.memory.planner import plan_memory
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.host import random_inputs
from tests.support import host_outputs, litert_interpreter, litert_invoke
from tests.uint8_models import uint8_cnn

RUNS = 16


def _litert(model: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    interpreter = litert_interpreter(model)
    runs = [litert_invoke(interpreter, [x[r] for x in inputs]) for r in range(len(inputs[0]))]
    return [np.stack(outputs) for outputs in zip(*runs, strict=True)]


def test_uint8_model_is_bit_exact_against_litert(tmp_path: Path) -> None:
    model = write_tflite(uint8_cnn())
    graph = read_tflite(model)
    assert graph.tensors[graph.inputs[0]].dtype is DType.UINT8
    assert {graph.tensors[name].dtype for name in graph.outputs} == {DType.UINT8}
    inputs = random_inputs(graph, RUNS, seed=4)
    assert inputs[0].dtype == np.uint8
    want = _litert(model, inputs)
    interpreter = Interpreter(graph)
    for r in range(RUNS):
        for got, expected in zip(interpreter.run([inputs[0][r]]).outputs, want, strict=True):
            assert got.dtype == np.uint8
            np.testing.assert_array_equal(got, expected[r])
    for got, expected in zip(host_outputs(graph, inputs, tmp_path / "project"), want,
                             strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, expected)


def test_header_declares_uint8_and_run_and_verify_take_uint8(tmp_path: Path) -> None:
    graph = uint8_cnn()
    project = generate_project(graph, plan_memory(graph, 0.3), tmp_path / "project")
    header = (project.path / "mcuflow_model.h").read_text()
    assert "typedef uint8_t mcuflow_input_0_t;" in header
    assert "typedef uint8_t mcuflow_output_1_t;" in header
    path = tmp_path / "uint8.tflite"
    model = write_tflite(graph)
    path.write_bytes(model)
    assert api.verify_model(path, runs=4).bit_exact
    x = random_inputs(graph, 1, seed=2)[0][0]
    outputs = api.run_model(path, [x]).outputs
    for got, want in zip(outputs, litert_invoke(model, [x]), strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)
