"""A real task: a CNN trained on scikit-learn's digits, exported to ONNX, quantised to int8."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from mcuflow import api
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from tests.support import litert_interpreter, litert_invoke

torch = pytest.importorskip("torch")

CALIBRATION_SAMPLES = 100
EPOCHS = 8


@dataclass(frozen=True)
class Digits:
    """The trained model as ONNX bytes and the split data (NCHW float32 images in [0, 1])."""

    onnx: bytes
    train_x: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def _network() -> torch.nn.Module:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.BatchNorm2d(32), nn.ReLU6(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


def train_digits() -> Digits:
    """Train the CNN for a few seconds (fixed seed) and export it with torch.onnx.export."""
    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=0.2, random_state=0, stratify=labels)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threads only add overhead
    model = _network()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    generator = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    torch.set_num_threads(threads)
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x[:1],), buffer, dynamo=False,
                          training=torch.onnx.TrainingMode.PRESERVE,
                          input_names=["image"], output_names=["logits"])
    return Digits(buffer.getvalue(), train_x, test_x, test_y)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Digits, Path]:
    trained = train_digits()
    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    path.write_bytes(trained.onnx)
    return trained, path


def _float_accuracy(data: Digits) -> float:
    session = ort.InferenceSession(data.onnx)
    logits = np.concatenate([session.run(None, {"image": x[None]})[0] for x in data.test_x])
    return float(np.mean(logits.argmax(axis=1) == data.test_y))


def test_float_import_agrees_with_onnxruntime(digits: tuple[Digits, Path]) -> None:
    data, path = digits
    model = api.load_float_model(path)
    session = ort.InferenceSession(data.onnx)
    kinds = [op.kind.value for op in model.graph.operators]
    assert "MUL" not in kinds and "RELU" not in kinds, kinds  # batch-norm folded, ReLU fused
    for image in data.test_x[:20]:
        expected = session.run(None, {"image": image[None]})[0]
        ours = run_float(model.graph, [image[None].transpose(model.input_perms["image"])])
        np.testing.assert_allclose(ours.outputs[0], expected, rtol=1e-4, atol=1e-4)


def test_int8_accuracy_within_one_point_of_float(digits: tuple[Digits, Path]) -> None:
    data, path = digits
    result = api.quantize_model(path, data.train_x[:CALIBRATION_SAMPLES], scheme="affine",
                                per_channel=True, classifier=True)
    interpreter = Interpreter(result.graph)
    inputs = [result.quantize_input(x[None]) for x in data.test_x]
    logits = np.concatenate([interpreter.run([x]).outputs[0] for x in inputs])
    int8_accuracy = float(np.mean(logits.argmax(axis=1) == data.test_y))
    float_accuracy = _float_accuracy(data)
    assert float_accuracy > 0.9, f"training failed: float accuracy {float_accuracy:.3f}"
    assert int8_accuracy >= float_accuracy - 0.01, (int8_accuracy, float_accuracy)
    assert result.report.top1_agreement is not None and result.report.top1_agreement > 0.95
    litert = litert_interpreter(result.tflite())
    for x, ours in zip(inputs, logits, strict=True):
        np.testing.assert_array_equal(litert_invoke(litert, [x])[0][0], ours)
