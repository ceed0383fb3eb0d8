"""`verify --data`: the C over a labelled test set, scored against LiteRT and sklearn's metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from mcuflow import api
from mcuflow.validation import scores
from tests.support import litert_interpreter, litert_invoke
from tests.unit.test_cli import assert_user_error, invoke

TRAIN = 1400
CLASSES = list(range(10))


@dataclass(frozen=True)
class Digits:
    """A logistic-regression digits classifier as float ONNX and int8 .tflite, and its data."""

    onnx: Path
    int8: Path
    test_x: np.ndarray  # NCHW float32 images in [0, 1]
    test_y: np.ndarray
    directory: Path

    def npz(self, name: str, **arrays: np.ndarray) -> Path:
        path = self.directory / name
        np.savez(path, **arrays)
        return path

    @property
    def nhwc(self) -> np.ndarray:
        return self.test_x.transpose(0, 2, 3, 1)


def _onnx_model(weights: np.ndarray, bias: np.ndarray) -> bytes:
    """image [1, 1, 8, 8] -> Flatten -> Gemm -> logits [1, 10]."""
    nodes = [helper.make_node("Flatten", ["image"], ["flat"]),
             helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "digits", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    fitted = LogisticRegression(max_iter=500).fit(x[:TRAIN], y[:TRAIN])
    directory = tmp_path_factory.mktemp("digits")
    onnx_path = directory / "digits.onnx"
    onnx_path.write_bytes(_onnx_model(fitted.coef_.astype(np.float32),
                                      fitted.intercept_.astype(np.float32)))
    images = x.reshape(-1, 1, 8, 8)
    int8 = directory / "digits_int8.tflite"
    api.write_model(api.quantize_model(onnx_path, images[:100]).tflite(), int8)
    np.save(directory / "calibration.npy", images[:100])
    return Digits(onnx_path, int8, images[TRAIN:], y[TRAIN:], directory)


def _verify(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, dict]:
    """`verify ARGS --json`: the exit code and the JSON printed."""
    code, out, err = invoke(capsys, "verify", *map(str, args), "--json")
    assert code != 2, err
    return code, json.loads(out)


def _litert_predictions(digits: Digits) -> np.ndarray:
    """The oracle: LiteRT on the int8 .tflite, inputs quantised by its own input details."""
    interpreter = litert_interpreter(digits.int8)
    scale, zero_point = interpreter.get_input_details()[0]["quantization"]
    predictions = []
    for image in digits.nhwc:
        codes = np.clip(np.round(image[None] / scale) + zero_point, -128, 127).astype(np.int8)
        predictions.append(int(np.argmax(litert_invoke(interpreter, [codes])[0])))
    return np.asarray(predictions)


def _assert_scored(data: dict, labels: np.ndarray, predictions: np.ndarray) -> None:
    """accuracy, per_class and confusion_matrix equal sklearn.metrics on these predictions."""
    assert data["accuracy"] == pytest.approx(accuracy_score(labels, predictions))
    precision, recall, _, support = precision_recall_fscore_support(
        labels, predictions, labels=CLASSES, zero_division=0)
    assert [c["class"] for c in data["per_class"]] == CLASSES
    np.testing.assert_allclose([c["precision"] for c in data["per_class"]], precision)
    np.testing.assert_allclose([c["recall"] for c in data["per_class"]], recall)
    assert [c["support"] for c in data["per_class"]] == support.tolist()
    assert data["confusion_matrix"] == confusion_matrix(labels, predictions,
                                                        labels=CLASSES).tolist()


def test_labelled_data_on_the_host_matches_litert_and_sklearn(
        capsys: pytest.CaptureFixture[str], digits: Digits) -> None:
    data_file = digits.npz("test.npz", x=digits.nhwc, y=digits.test_y)
    code, data = _verify(capsys, digits.int8, "--data", data_file, "--float", digits.onnx)
    assert code == 0, data
    assert data["samples"] == len(digits.test_y) and data["bit_exact"]
    assert data["mismatching_samples"] == 0 and data["target"] == "host"
    litert = _litert_predictions(digits)
    assert accuracy_score(digits.test_y, litert) > 0.85, "the classifier did not train"
    _assert_scored(data, digits.test_y, litert)
    _assert_scored(data["litert"], digits.test_y, litert)
    session = ort.InferenceSession(digits.onnx.read_bytes())
    floats = np.asarray([int(np.argmax(session.run(None, {"image": x[None]})[0]))
                         for x in digits.test_x])
    _assert_scored(data["float"], digits.test_y, floats)
    assert data["sqnr_db"] > 20 and 0 < data["max_abs_error"] < 5


def test_one_hot_labels_and_human_output(capsys: pytest.CaptureFixture[str],
                                         digits: Digits) -> None:
    one_hot = np.eye(10, dtype=np.float32)[digits.test_y[:50]]
    data_file = digits.npz("one_hot.npz", x=digits.nhwc[:50], y=one_hot)
    code, data = _verify(capsys, digits.int8, "--data", data_file)
    assert code == 0 and data["samples"] == 50
    assert data["accuracy"] == pytest.approx(
        accuracy_score(digits.test_y[:50], _litert_predictions(digits)[:50]))
    assert "float" not in data and "sqnr_db" not in data
    code, out, _ = invoke(capsys, "verify", digits.int8, "--data", data_file)
    assert code == 0
    assert "bit-exact on the host: 50 samples" in out and "top-1 accuracy: target" in out
    assert "Confusion matrix, target" in out and "LiteRT's confusion matrix equals" in out


def test_float_model_quantised_on_the_fly_takes_nchw_data(
        capsys: pytest.CaptureFixture[str], digits: Digits) -> None:
    data_file = digits.npz("nchw.npz", x=digits.test_x[:60], y=digits.test_y[:60])
    code, data = _verify(capsys, digits.onnx, "--calibration",
                            digits.directory / "calibration.npy", "--data", data_file)
    assert code == 0 and data["bit_exact"] and data["samples"] == 60
    assert data["litert"]["accuracy"] == data["accuracy"]
    assert "float" in data and data["sqnr_db"] > 20


def test_unlabelled_data_gives_sqnr_against_the_float_model(
        capsys: pytest.CaptureFixture[str], digits: Digits) -> None:
    data_file = digits.npz("unlabelled.npz", x=digits.nhwc[:40])
    code, data = _verify(capsys, digits.int8, "--data", data_file, "--float", digits.onnx)
    assert code == 0 and data["samples"] == 40 and "accuracy" not in data
    assert data["sqnr_db"] > 20 and data["max_abs_error"] > 0
    code, data = _verify(capsys, digits.int8, "--data", data_file)
    assert code == 0 and "sqnr_db" not in data and data["notes"]


def test_scores_equal_sklearn_on_random_predictions() -> None:
    rng = np.random.default_rng(5)
    labels, predictions = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    predictions[predictions == 3] = 2  # class 3 is never predicted: precision 0
    result = scores(labels, predictions, 5)
    precision, recall, _, support = precision_recall_fscore_support(
        labels, predictions, labels=range(5), zero_division=0)
    assert result.accuracy == pytest.approx(accuracy_score(labels, predictions))
    np.testing.assert_allclose([c.precision for c in result.per_class], precision)
    np.testing.assert_allclose([c.recall for c in result.per_class], recall)
    assert [c.support for c in result.per_class] == support.tolist()
    assert [list(row) for row in result.confusion_matrix] == confusion_matrix(
        labels, predictions, labels=range(5)).tolist()


@pytest.mark.parametrize("case, message", [
    ("missing", "no such data file or folder"),
    ("shape", "data: samples of shape (20, 1, 8, 8) do not fit input"),
    ("count", "data: 20 samples in 'x' but 19 labels in 'y'"),
    ("range", "data: labels range over 0..12 but the model's first output has 10 classes"),
    ("float_alone", "--float applies with --data only"),
])
def test_bad_data_is_one_error_line(capsys: pytest.CaptureFixture[str], digits: Digits,
                                    case: str, message: str) -> None:
    images, labels = digits.nhwc[:20], digits.test_y[:20].copy()
    files = {
        "missing": digits.directory / "absent.npz",
        "shape": digits.npz("shape.npz", x=digits.test_x[:20], y=labels),
        "count": digits.npz("count.npz", x=images, y=labels[:19]),
        "range": digits.npz("range.npz", x=images, y=np.where(labels == 0, 0, 12)),
    }
    args = (["--float", str(digits.onnx)] if case == "float_alone"
            else ["--data", str(files[case])])
    assert_user_error(invoke(capsys, "verify", digits.int8, *args), message)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(capsys, "--version")[:2] == (0, f"mcuflow {version('mcuflow')}\n")
