"""Post-training quantisation: int8 graphs LiteRT runs to the bit, with measured accuracy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mcuflow import api
from mcuflow.errors import McuflowError
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.quant.affine import AFFINE, affine_activation, quantize_bias, quantize_weights
from mcuflow.quant.calibrate import CalibrationError, Calibrator, Method, Range
from mcuflow.quant.fixedpoint import quantize_multiplier
from mcuflow.quant.qformat import QFORMAT
from mcuflow.quant.report import dequantize, sqnr_db
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from tests.support import FLOAT_MODELS, SHARED_MODELS, assert_litert_bit_exact
from tests.unit.test_onnx_reader import Net

# --- parameter rules --------------------------------------------------------------------------


@pytest.mark.parametrize("low, high, zero_point", [
    (0.0, 6.0, -128), (-2.0, 6.0, -64), (1.0, 3.0, -128), (-5.0, -1.0, 127), (-1.0, 3.0, -64),
])
def test_affine_activation_follows_tflite(low: float, high: float, zero_point: int) -> None:
    quant = affine_activation(Range(low, high))
    width = np.float32(max(high, 0.0)) - np.float32(min(low, 0.0))
    assert quant.scale0 == float(width / np.float32(255.0))
    assert quant.zero_point0 == zero_point


def test_degenerate_range_gets_a_usable_scale() -> None:
    assert affine_activation(Range(0.0, 0.0)).scale0 == 1.0


def test_symmetric_weights_per_channel_and_per_tensor() -> None:
    weights = np.random.default_rng(11).standard_normal((4, 3, 3, 2)).astype(np.float32)
    weights[2] *= 10.0
    codes, quant = quantize_weights(weights, 0, True, AFFINE)
    expected = np.abs(weights).reshape(4, -1).max(axis=1) / 127.0
    np.testing.assert_allclose(quant.scale, expected, rtol=1e-6)
    assert np.abs(codes).reshape(4, -1).max(axis=1).tolist() == [127] * 4
    assert quant.zero_point == (0,) * 4 and quant.axis == 0
    codes, quant = quantize_weights(weights, 0, False, AFFINE)
    assert not quant.is_per_channel and np.abs(codes).max() == 127
    assert np.abs(codes[0]).max() < 20, "small channels lose resolution per tensor"


def test_bias_scale_is_input_times_weight_and_large_bias_grows_weight_scale() -> None:
    input_quant = affine_activation(Range(-1.0, 1.0))
    weights = np.full((2, 1, 1, 1), 1e-6, np.float32)
    bias = np.array([0.5, 1e6], np.float32)
    codes, wq = quantize_weights(weights, 0, True, AFFINE, bias / (input_quant.scale0 * 2**30))
    bias_codes, bq = quantize_bias(bias, input_quant, wq)
    np.testing.assert_allclose(bq.scale, np.float32(input_quant.scale0) * np.float32(wq.scale),
                               rtol=1e-7)
    assert np.abs(bias_codes.astype(np.int64)).max() <= 2**30
    np.testing.assert_allclose(bias_codes * np.asarray(bq.scale), bias, rtol=1e-6)


@pytest.mark.parametrize("max_abs, fractional_bits", [(1.0, 6), (0.99, 7), (100.0, 0),
                                                      (127.0, 0), (128.0, -1)])
def test_qformat_scales_are_powers_of_two(max_abs: float, fractional_bits: int) -> None:
    quant = QFORMAT.activation(Range(-max_abs, 0.5))
    assert quant.scale0 == 2.0**-fractional_bits and quant.zero_point0 == 0
    assert QFORMAT.weight_scales(np.array([max_abs])).tolist() == [2.0**-fractional_bits]


# --- calibration ------------------------------------------------------------------------------


def test_calibration_methods() -> None:
    calibrator = Calibrator(["t"])
    values = np.random.default_rng(12).laplace(size=(20, 2000)).astype(np.float32)
    values[3, 5] = 80.0
    for row in values:
        calibrator.observe({"t": row, "other": row})
    minmax = calibrator.ranges("minmax")["t"]
    assert (minmax.low, minmax.high) == (float(values.min()), 80.0)
    percentile = calibrator.ranges(Method.PERCENTILE)["t"]
    assert percentile.high < 15.0 and percentile.low < -5.0
    mse = calibrator.ranges(Method.MSE)["t"]
    assert mse.high < minmax.high

    def error(value_range: Range) -> float:
        quant = affine_activation(value_range)
        codes = np.clip(np.round(values / quant.scale0) + quant.zero_point0, -128, 127)
        return float(np.mean((dequantize(codes, quant) - values) ** 2))

    assert error(mse) < error(minmax)
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        calibrator.ranges("median")
    with pytest.raises(CalibrationError, match="no calibration data"):
        Calibrator(["t"]).ranges()


# --- whole models: LiteRT bit-exact, accuracy measured ---------------------------------------

AFFINE_SQNR_DB = 20.0
QFORMAT_SQNR_DB = 12.0
"""Power-of-two scales round each tensor's range up to the next power of two (up to 6 dB of
its resolution); on the mixed model qformat measures 15-27 dB over BatchNormalization draws."""


def _mixed_model(net: Net) -> str:
    """Every op kind a float model brings to the quantiser."""
    y = net.node("Conv", "x", net.weights(8, 3, 3, 3), net.weights(8), pads=[1, 1, 1, 1])
    rng = np.random.default_rng(13)
    stats = [net.const(rng.uniform(0.5, 1.5, 8).astype(np.float32)) for _ in range(4)]
    y = net.node("Relu", net.node("BatchNormalization", y, *stats))
    d = net.node("Conv", y, net.weights(8, 1, 3, 3), net.weights(8), group=8, pads=[1, 1, 1, 1])
    d = net.node("Clip", d, net.const(np.float32(0.0)), net.const(np.float32(6.0)))
    gate = net.node("Sigmoid", net.node("Conv", net.node("GlobalAveragePool", d),
                                        net.weights(8, 8, 1, 1), net.weights(8)))
    d = net.node("Add", net.node("Mul", d, gate), y)
    d = net.node("HardSwish", net.node("Sub", d, net.const(np.float32(0.25))))
    pooled = net.node("Concat", net.node("MaxPool", d, kernel_shape=[2, 2], strides=[2, 2]),
                      net.node("AveragePool", d, kernel_shape=[2, 2], strides=[2, 2]), axis=1)
    t = net.node("Tanh", net.node("LeakyRelu", pooled, alpha=0.2))
    t = net.node("Pad", t, net.const(np.array([0, 0, 1, 1, 0, 0, 1, 1])))
    logits = net.node("Gemm", net.node("Flatten", t), net.weights(10, 16 * 6 * 6), net.weights(10),
                      transB=1)
    return net.node("Softmax", logits, axis=1)


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = Net((1, 3, 8, 8), rng=np.random.default_rng(0))
    path = tmp_path_factory.mktemp("mixed") / "mixed.onnx"
    path.write_bytes(net.model(_mixed_model(net)))
    return path


@pytest.mark.parametrize("scheme, per_channel, method", [
    ("affine", True, "minmax"), ("affine", False, "percentile"), ("affine", True, "mse"),
    ("qformat", True, "minmax"), ("qformat", False, "mse"),
])
def test_mixed_model_runs_in_litert_to_the_bit(mixed_model: Path, scheme: str,
                                               per_channel: bool, method: str) -> None:
    """Weights and calibration data from their own seeds: the same whatever ran before."""
    calibration = np.random.default_rng(11).standard_normal((16, 3, 8, 8)).astype(np.float32)
    result = api.quantize_model(mixed_model, calibration, scheme, per_channel, method)
    kinds = {op.kind for op in result.graph.operators}
    assert {OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.MEAN, OpKind.LOGISTIC, OpKind.MUL,
            OpKind.ADD, OpKind.SUB, OpKind.HARD_SWISH, OpKind.MAX_POOL_2D,
            OpKind.AVERAGE_POOL_2D, OpKind.CONCATENATION, OpKind.LEAKY_RELU, OpKind.TANH,
            OpKind.PAD, OpKind.FULLY_CONNECTED, OpKind.SOFTMAX} <= kinds
    assert_litert_bit_exact(result, calibration[:4])
    floor = QFORMAT_SQNR_DB if scheme == "qformat" else AFFINE_SQNR_DB
    assert result.report.output_sqnr_db[result.graph.outputs[0]] > floor
    assert result.report.top1_agreement is not None and result.report.top1_agreement >= 0.8
    if scheme == "qformat":
        _assert_power_of_two_requantisation(result.graph)


def _assert_power_of_two_requantisation(graph: Graph) -> None:
    fixed = {op.outputs[0] for op in graph.operators if op.kind in (OpKind.SOFTMAX,
                                                                     OpKind.LOGISTIC)}
    for name, tensor in graph.tensors.items():
        assert all(math.frexp(s)[0] == 0.5 for s in tensor.quant.scale), name
        assert name in fixed or set(tensor.quant.zero_point) == {0}, name
    for op in graph.operators:
        if op.kind in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED):
            x, w, out = (graph.tensors[n].quant for n in (op.inputs[0], op.inputs[1],
                                                          op.outputs[0]))
            for scale in w.scale:
                ratio = quantize_multiplier(x.scale0 * scale / out.scale0)
                assert ratio.multiplier == 1 << 30, op.name


def test_report_matches_an_independent_measurement(mixed_model: Path) -> None:
    calibration = np.random.default_rng(14).standard_normal((8, 3, 8, 8)).astype(np.float32)
    result = api.quantize_model(mixed_model, calibration)
    (output,) = result.graph.outputs
    signal = noise = 0.0
    for sample in calibration:
        expected = run_float(result.float_graph, [sample[None].transpose(0, 2, 3, 1)]).outputs[0]
        codes = Interpreter(result.graph).run([result.quantize_input(sample[None])]).outputs[0]
        quant = result.graph.tensors[output].quant
        approx = quant.scale0 * (codes.astype(np.float64) - quant.zero_point0)
        signal += float(np.sum(expected.astype(np.float64) ** 2))
        noise += float(np.sum((expected - approx) ** 2))
    assert result.report.output_sqnr_db[output] == pytest.approx(sqnr_db(signal, noise))
    assert len(result.report.layers) == len(result.graph.operators)
    assert result.report.samples == 8
    assert result.report.unpacked_weight_bytes < result.report.float_weight_bytes / 3
    assert isinstance(result.report.to_json()["layers"], list)


@pytest.mark.parametrize("model", FLOAT_MODELS)
@pytest.mark.parametrize("scheme", ["affine", "qformat"])
def test_mlperf_float_models_quantise_bit_exact(model: str, scheme: str) -> None:
    float_model = api.load_float_model(SHARED_MODELS / model)
    shape = float_model.model_shape(float_model.graph.inputs[0])
    calibration = np.random.default_rng(0).standard_normal((8, *shape[1:])).astype(np.float32)
    result = api.quantize_model(SHARED_MODELS / model, calibration, scheme)
    assert_litert_bit_exact(result, calibration[:2])
    assert min(result.report.output_sqnr_db.values()) > 15.0, result.report.output_sqnr_db


# --- calibration files ------------------------------------------------------------------------


def test_load_calibration_files_and_folders(tmp_path: Path, mixed_model: Path) -> None:
    samples = np.random.default_rng(15).standard_normal((6, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "batch.npy", samples[:4])
    np.savez(tmp_path / "more.npz", image=samples[4:])
    np.save(tmp_path / "one.npy", samples[0])
    (tmp_path / "notes.txt").write_text("ignored")
    loaded = api.load_calibration(tmp_path)
    model = api.load_float_model(mixed_model)
    assert len(api.calibration_samples(model, loaded)) == 7
    single = api.calibration_samples(model, api.load_calibration(tmp_path / "one.npy"))
    np.testing.assert_array_equal(single[0][0], samples[:1].transpose(0, 2, 3, 1))


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "absent.npy", "no such calibration"),
    (lambda d: d, "holds no .npy"),
    (lambda d: _write(d / "bad.npy", b"not numpy"), "cannot read"),
    (lambda d: _save(d / "objects.npy", np.array([{"a": 1}], dtype=object)), "cannot read"),
    (lambda d: _save(d / "text.npy", np.array(["a", "b"])), "holds <U1"),
    (lambda d: _save(d / "shape.npy", np.zeros((4, 8, 8, 3), np.float32)), "does not fit"),
], ids=["missing", "empty_folder", "garbage", "pickled", "strings", "wrong_layout"])
def test_calibration_errors_are_clear(tmp_path: Path, mixed_model: Path, make, message: str
                                      ) -> None:
    with pytest.raises(CalibrationError, match=message):
        api.quantize_model(mixed_model, make(tmp_path))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array, allow_pickle=True)
    return path


def test_unknown_scheme_and_int8_model_are_rejected(mixed_model: Path) -> None:
    calibration = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(McuflowError, match="unknown quantisation scheme"):
        api.quantize_model(mixed_model, calibration, scheme="codebook-x")
    with pytest.raises(McuflowError, match="not a float model"):
        api.quantize_model(SHARED_MODELS / "kws_ref_model.tflite", calibration)
