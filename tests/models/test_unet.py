"""A U-Net-style segmentation network compiled to C: bit-exact against LiteRT on the host.

Built twice: as an int8 graph with the TFLite writer (TRANSPOSE_CONV, RESIZE_NEAREST_NEIGHBOR,
CONCATENATION skip connections), and as a float ONNX model (ConvTranspose, Resize, Concat)
quantised by mcuflow's PTQ from generated calibration images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from mcuflow import api
from mcuflow.codegen.project import generate_project
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.memory.planner import plan_memory
from mcuflow.ptq import QuantizeResult
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.host import build_host, random_inputs, run_host
from tests.codegen.test_host_ops import assert_same_bits, reference
from tests.support import litert_interpreter, litert_invoke
from tests.unet_models import CLASSES, SIZE, images, unet_graph, unet_onnx

RUNS = 8
PLAN_SECONDS = 0.3
DECODER = {OpKind.TRANSPOSE_CONV, OpKind.RESIZE_NEAREST_NEIGHBOR, OpKind.CONCATENATION}


def _compiled_equals_litert(graph: Graph, model: bytes, tmp_path: Path) -> None:
    """Host C (gcc, sanitizers) equals the reference interpreter and LiteRT on `model`."""
    assert {op.kind for op in graph.operators} >= DECODER
    plan = plan_memory(graph, PLAN_SECONDS)
    project = generate_project(graph, plan, tmp_path / "project")
    binary = build_host(project.path, sanitize=True, opt_level="-O1")
    inputs = random_inputs(graph, RUNS, seed=5)
    actual = run_host(binary, inputs, project.outputs)
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(model)
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")


def test_tflite_unet_is_bit_exact_on_the_host(tmp_path: Path) -> None:
    graph = unet_graph()
    assert graph.tensors[graph.outputs[0]].shape == (1, SIZE, SIZE, CLASSES)
    _compiled_equals_litert(graph, write_tflite(graph), tmp_path)


def test_onnx_unet_quantised_is_bit_exact_and_close_to_onnxruntime(tmp_path: Path) -> None:
    """Float twin equals ONNX Runtime, int8 stays near it, and its C equals LiteRT to the bit."""
    path = tmp_path / "unet.onnx"
    path.write_bytes(unet_onnx())
    result = api.quantize_model(path, images(16, 1), "affine", True, "minmax")
    session = ort.InferenceSession(path.read_bytes())
    samples = images(4, 2)
    name, output = result.graph.inputs[0], result.graph.outputs[0]
    for sample in samples:
        expected = session.run(None, {"x": sample[None]})[0]
        twin = run_float(result.float_graph, [sample[None].transpose(result.input_perms[name])])
        np.testing.assert_allclose(twin.outputs[0].transpose(np.argsort(
            result.output_perms[output])), expected, rtol=1e-4, atol=1e-4)
        ours = _int8_logits(result, sample)
        assert np.abs(ours - expected).mean() < 0.1 * expected.std()
    _compiled_equals_litert(result.graph, result.tflite(), tmp_path)


def _int8_logits(result: QuantizeResult, sample: np.ndarray) -> np.ndarray:
    """The int8 model's dequantised logits for one NCHW `sample` (reference interpreter)."""
    codes = Interpreter(result.graph).run([result.quantize_input(sample[None])]).outputs
    return result.dequantize_outputs(codes)[0]
