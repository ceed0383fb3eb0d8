"""A U-Net-style segmentation network compiled to C: bit-exact against LiteRT on the host.

Built as an int8 graph with the TFLite writer (TRANSPOSE_CONV, RESIZE_NEAREST_NEIGHBOR,
CONCATENATION skip connections), as a float ONNX model of onnx.helper (ConvTranspose, Resize,
Concat) and as a PyTorch export, the float models quantised by mcuflow's PTQ from generated
calibration images.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

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
from tests.support import assert_litert_bit_exact, litert_interpreter, litert_invoke
from tests.unet_models import CHANNELS, CLASSES, SIZE, images, unet_graph, unet_onnx
from tests.unit.test_onnx_reader import assert_matches_onnxruntime

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


def _torch_unet_onnx() -> bytes:
    """A PyTorch U-Net exported by torch.onnx.export.

    ConvTranspose2d both ways PyTorch upsamples by 2 (kernel 3 with padding and output padding,
    kernel 2 without bias), nn.Upsample nearest, torch.cat skip connections.
    """
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.e1 = nn.Sequential(nn.Conv2d(CHANNELS, 8, 3, padding=1), nn.ReLU())
            self.e2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
            self.bottom = nn.Sequential(nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.ReLU())
            self.up2 = nn.ConvTranspose2d(24, 16, 3, stride=2, padding=1, output_padding=1)
            self.d2 = nn.Sequential(nn.Conv2d(32, 16, 3, padding=1), nn.ReLU())
            self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
            self.d1 = nn.Sequential(nn.Conv2d(24, 8, 3, padding=1), nn.ReLU())
            self.up0 = nn.ConvTranspose2d(8, 8, 2, stride=2, bias=False)
            self.head = nn.Conv2d(8, CLASSES, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            e1 = self.e1(x)
            e2 = self.e2(e1)
            d2 = self.d2(torch.cat([torch.relu(self.up2(self.bottom(e2))), e2], dim=1))
            d1 = self.d1(torch.cat([self.up1(d2), e1], dim=1))
            return self.head(nn.functional.avg_pool2d(torch.relu(self.up0(d1)), 2))

    torch.manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(UNet().eval(), (torch.zeros(1, CHANNELS, SIZE, SIZE),), buffer,
                          dynamo=False, input_names=["x"], opset_version=17)
    return buffer.getvalue()


def test_pytorch_unet_matches_onnxruntime_and_litert(tmp_path: Path) -> None:
    """The float import equals ONNX Runtime; PTQ's int8 model and its C equal LiteRT."""
    data = _torch_unet_onnx()
    assert_matches_onnxruntime(data, (1, CHANNELS, SIZE, SIZE))
    path = tmp_path / "torch_unet.onnx"
    path.write_bytes(data)
    calibration = images(16, 5)
    result = api.quantize_model(path, calibration, "affine", True, "minmax")
    kinds = [op.kind for op in result.graph.operators]
    assert kinds.count(OpKind.TRANSPOSE_CONV) == 2 and set(kinds) >= DECODER
    assert_litert_bit_exact(result, calibration[:4])
    _compiled_equals_litert(result.graph, result.tflite(), tmp_path)
