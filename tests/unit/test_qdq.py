"""QDQ ONNX models keep their own parameters and compute what ONNX Runtime computes, to 1 LSB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from mcuflow import api
from mcuflow.agreement import onnxruntime_agreement, random_model_inputs
from mcuflow.frontends.tflite_reader import load_int8_model
from mcuflow.ir.ops import OpKind
from mcuflow.ptq import quantize_model
from mcuflow.ref.interpreter import Interpreter
from tests.support import run_cli_output
from tests.unit.test_onnx_reader import Net

SHAPE = (1, 3, 12, 12)
WEIGHTS_SEED = 0


def _float_cnn() -> bytes:
    """Conv+ReLU, depthwise+Clip(0, 6), a residual Add, max pool, a branch Concat, Gemm.

    Its weights are its own stream's: the same whichever tests ran before.
    """
    net = Net(SHAPE, rng=np.random.default_rng(WEIGHTS_SEED))
    a = net.node("Relu", net.node("Conv", "x", net.weights(8, 3, 3, 3), net.weights(8),
                                  pads=[1, 1, 1, 1]))
    b = net.node("Clip", net.node("Conv", a, net.weights(8, 1, 3, 3), net.weights(8), group=8,
                                  pads=[1, 1, 1, 1]), net.const(np.float32(0)),
                 net.const(np.float32(6)))
    c = net.node("Add", a, net.node("Conv", b, net.weights(8, 8, 1, 1), net.weights(8)))
    d = net.node("MaxPool", c, kernel_shape=[2, 2], strides=[2, 2])
    e = net.node("Concat", d, net.node("Relu", net.node("Conv", d, net.weights(4, 8, 1, 1))),
                 axis=1)
    f = net.node("Flatten", net.node("GlobalAveragePool", e))
    return net.model(net.node("Gemm", f, net.weights(5, 12), net.weights(5), transB=1))


class _Samples(CalibrationDataReader):
    def __init__(self, count: int) -> None:
        rng = np.random.default_rng(11)
        self._samples = iter([{"x": rng.standard_normal(SHAPE).astype(np.float32)}
                              for _ in range(count)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._samples, None)


def ort_quantized(tmp_path: Path, per_channel: bool, activations: QuantType) -> Path:
    source, target = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    source.write_bytes(_float_cnn())
    quantize_static(source, target, _Samples(16), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=activations,
                    weight_type=QuantType.QInt8)
    return target


def _initializers(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


@pytest.mark.parametrize(("per_channel", "activations"), [(False, QuantType.QInt8),
                                                          (True, QuantType.QUInt8)])
def test_onnxruntime_quantized_model_keeps_its_parameters(tmp_path: Path, per_channel: bool,
                                                          activations: QuantType) -> None:
    path = ort_quantized(tmp_path, per_channel, activations)
    result = quantize_model(path, None)
    concat = next(op for op in result.graph.operators if op.kind is OpKind.CONCATENATION)
    flagged = {t.tensor: t.origin.value for t in result.kept.flagged}
    # ONNX Runtime quantises a Concat's inputs each in its own range: only there may mcuflow
    # requantise (into the concatenation's parameters) or share the concatenation's
    assert set(flagged.values()) <= {"added", "changed"}
    assert set(flagged) <= set(concat.inputs) and flagged
    stored = _initializers(path)
    shift = 128 if activations is QuantType.QUInt8 else 0
    model_scales = {float(v.reshape(-1)[0]) for k, v in stored.items()
                    if k.endswith("_scale") and v.size == 1}
    zero_points = {int(v.reshape(-1)[0]) - shift for k, v in stored.items()
                   if k.endswith("_zero_point") and v.size == 1 and v.dtype != np.int32}
    for name in result.graph.activations():
        quant = result.graph.tensor(name).quant
        assert quant.scale0 in model_scales, name
        assert quant.zero_point0 in zero_points, name
    for op in result.graph.operators:
        if op.kind in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED):
            codes = result.graph.tensor(op.inputs[1]).data
            assert any(np.array_equal(np.sort(codes.reshape(-1)), np.sort(v.reshape(-1)))
                       for v in stored.values() if v.dtype == np.int8 and v.ndim > 1), op.name
    agreement = onnxruntime_agreement(path.read_bytes(), result,
                                      random_model_inputs(result, 20, seed=3))
    assert agreement.mcuflow.max_lsb <= agreement.onnxruntime_int8.max_lsb + 1
    assert agreement.mcuflow.within_1lsb >= 0.95


def _qdq(net: Net, value: str, scale: float, zero_point: int) -> str:
    """value -> QuantizeLinear -> DequantizeLinear with int8 parameters."""
    s, z = net.const(np.float32(scale)), net.const(np.int8(zero_point))
    return net.node("DequantizeLinear", net.node("QuantizeLinear", value, s, z), s, z)


def _qdq_weights(net: Net, weights: np.ndarray) -> str:
    scales = (np.abs(weights).reshape(len(weights), -1).max(axis=1) / 127).astype(np.float32)
    codes = np.round(weights / scales.reshape(-1, *[1] * (weights.ndim - 1))).astype(np.int8)
    return net.node("DequantizeLinear", net.const(codes), net.const(scales),
                    net.const(np.zeros(len(scales), np.int8)), axis=0)


def _concat_of_two_scales() -> bytes:
    """Two conv branches quantised with other scales than their concatenation, then a max pool.

    The left branch's range [-3.5, 4.1] is narrower than the concatenation's [-10.4, 10.0]; the
    right one's [-14.9, 13.2] holds it.
    """
    net = Net((1, 2, 6, 6))
    x = _qdq(net, "x", 0.02, 3)
    rng = np.random.default_rng(13)
    left = _qdq(net, net.node("Conv", x, _qdq_weights(net, rng.standard_normal((3, 2, 1, 1)))),
                0.03, -10)
    right = _qdq(net, net.node("Conv", x, _qdq_weights(net, rng.standard_normal((4, 2, 3, 3))),
                               pads=[1, 1, 1, 1]), 0.11, 7)
    joined = _qdq(net, net.node("Concat", left, right, axis=1), 0.08, 2)
    return net.model(_qdq(net, net.node("MaxPool", joined, kernel_shape=[2, 2], strides=[2, 2]),
                          0.08, 2))


def test_branches_of_other_scales_are_shared_or_requantised(tmp_path: Path) -> None:
    """A branch whose range holds the concatenation's takes its parameters (no extra op).

    A narrower one keeps its own, which clamp it as the model says, and is requantised by a
    QUANTIZE before the concatenation.
    """
    path = tmp_path / "concat.onnx"
    path.write_bytes(_concat_of_two_scales())
    result = quantize_model(path, None)
    (added,) = [op for op in result.graph.operators if op.kind is OpKind.QUANTIZE]
    concat = next(op for op in result.graph.operators if op.kind is OpKind.CONCATENATION)
    assert concat.inputs[0] == added.outputs[0]
    flagged = {t.tensor: t.origin.value for t in result.kept.flagged}
    assert flagged == {added.outputs[0]: "added", concat.inputs[1]: "changed"}
    agreement = onnxruntime_agreement(path.read_bytes(), result,
                                      random_model_inputs(result, 20, seed=4))
    assert agreement.mcuflow.max_lsb <= 1


def test_run_takes_and_gives_float_in_the_model_layout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = ort_quantized(tmp_path, True, QuantType.QUInt8)
    x = np.random.default_rng(14).standard_normal(SHAPE).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_cli_output(capsys, ["run", str(path), "-i", str(tmp_path / "x.npy"),
                            "-o", str(tmp_path / "y.npy")])
    assert code == 0, err
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    expected = ort.InferenceSession(path, options).run(None, {"x": x})[0]
    scale = api.load_graph(path).tensor(api.load_graph(path).outputs[0]).quant.scale0
    ours = np.load(tmp_path / "y.npy")
    assert ours.shape == expected.shape and ours.dtype == np.float32
    assert np.abs(ours - expected).max() <= scale * 1.001


def test_qdq_model_compiles_bit_exact_on_the_host(tmp_path: Path) -> None:
    verified = api.verify_model(ort_quantized(tmp_path, True, QuantType.QInt8), runs=5)
    assert verified.bit_exact


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], build: str) -> str:
    net = Net((1, 4))
    weights = _qdq_weights(net, np.random.default_rng(15).standard_normal((3, 4)).astype(
        np.float32))
    x = "x"
    if build == "per-axis":
        s, z = net.const(np.full(4, 0.1, np.float32)), net.const(np.zeros(4, np.int8))
        x = net.node("DequantizeLinear", net.node("QuantizeLinear", x, s, z, axis=1), s, z,
                     axis=1)
    elif build == "int16":
        s, z = net.const(np.float32(0.001)), net.const(np.int16(5))
        x = net.node("DequantizeLinear", net.node("QuantizeLinear", x, s, z), s, z)
    else:
        x = _qdq(net, x, 0.05, 0)
    y = net.node("Gemm", x, weights, transB=1)
    path = tmp_path / f"{build}.onnx"
    path.write_bytes(net.model(y))
    code, _, err = run_cli_output(capsys, ["analyze", str(path)])
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    return err


def test_what_int8_cannot_hold_is_refused_naming_the_node(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    per_axis = _refused(tmp_path, capsys, "per-axis")
    assert "per axis" in per_axis and "QuantizeLinear 'n" in per_axis
    assert "int16 with zero point 5" in _refused(tmp_path, capsys, "int16")
    assert "no quantisation parameters in the model" in _refused(tmp_path, capsys,
                                                                "float output")


def test_qdq_model_quantised_with_its_own_parameters_reports_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, written = ort_quantized(tmp_path, False, QuantType.QInt8), tmp_path / "m.tflite"
    code, out, err = run_cli_output(capsys, ["quantize", str(path), "-o", str(written), "--json"])
    assert code == 0, err
    report = json.loads(out)
    stored = load_int8_model(written)
    for entry in report["kept"]:
        assert stored.tensor(entry["tensor"]).quant.scale0 == entry["scale"]
        if entry["origin"] == "model":
            assert entry["scale"] == entry["model_scale"]
    assert report["flagged"] == [t["tensor"] for t in report["kept"]
                                 if t["origin"] in ("added", "changed")]


def test_missing_torch_extra_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def without_onnxscript(name: str, *args: object) -> object:
        if name == "onnxscript":
            raise ImportError(name=name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_onnxscript)
    path = tmp_path / "model.pt2"
    path.write_bytes(b"PK")
    code, _, err = run_cli_output(capsys, ["analyze", str(path)])
    assert code == 2 and "mcuflow[torch]" in err and len(err.strip().splitlines()) == 1



def test_a_classifier_ending_in_argmax_needs_no_parameters_for_its_indices(
        tmp_path: Path) -> None:
    """ONNX Runtime leaves ArgMax's int64 output unquantised: it stays an integer index."""
    net = Net((1, 8))
    logits = net.node("Gemm", "x", net.weights(4, 8), net.weights(4), transB=1)
    model = onnx.load_from_string(net.model(net.node("ArgMax", logits, axis=1, keepdims=0)))
    model.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    source, path = tmp_path / "float.onnx", tmp_path / "argmax.onnx"
    source.write_bytes(model.SerializeToString())
    quantize_static(source, path, _Vectors(16), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    quantized = quantize_model(path, None)
    assert quantized.graph.operators[-1].kind is OpKind.ARG_MAX
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(path, options)
    interpreter = Interpreter(quantized.graph)
    agree = 0
    rng = np.random.default_rng(16)
    for _ in range(20):
        x = rng.standard_normal((1, 8)).astype(np.float32)
        ours = interpreter.run([quantized.quantize_input(x)]).outputs[0]
        agree += int(ours[0] == session.run(None, {"x": x})[0][0])
    assert agree >= 19  # a tie within 1 LSB of the logits may pick the other class


class _Vectors(CalibrationDataReader):
    def __init__(self, count: int) -> None:
        rng = np.random.default_rng(12)
        self._samples = iter([{"x": rng.standard_normal((1, 8)).astype(np.float32)}
                              for _ in range(count)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._samples, None)
