"""Empirical bias correction: int8 layer means land on the float model's, held-out error drops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcuflow import api
from mcuflow.ir.quantization import INT32_MAX, QuantParams
from mcuflow.quant.affine import BIAS_HEADROOM, shifted_bias
from mcuflow.quant.report import dequantize, sqnr_db
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from tests.support import FLOAT_MODELS, SHARED_MODELS, assert_litert_bit_exact
from tests.unit.test_onnx_reader import Net

RNG = np.random.default_rng(5)


def test_shifted_bias_moves_real_values_and_keeps_the_headroom() -> None:
    quant = QuantParams.per_channel(np.array([0.5, 0.25, 1e-9]), np.zeros(3, np.int64), 0)
    codes = np.array([10, -4, 1 << 30], np.int32)
    moved = shifted_bias(codes, quant, np.array([1.0, -0.3, -1.0]))
    assert moved.dtype == np.int32
    assert moved.tolist() == [8, -3, int(BIAS_HEADROOM * INT32_MAX)]


def _rounding_biased_conv(path: Path) -> None:
    """A bias-free conv whose small weights round to zero: int8 outputs sit below the float ones."""
    weights = np.full((4, 3, 3, 3), 0.003, np.float32)
    weights[:, 0, 0, 0] = 1.27  # scale 0.01: every 0.003 becomes 0
    net = Net((1, 3, 8, 8))
    path.write_bytes(net.model(net.node("Conv", "x", net.const(weights), pads=[1, 1, 1, 1])))


def _mean_channel_output(result: api.QuantizeResult, samples: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(result.graph)
    quant = result.graph.tensor(result.graph.outputs[0]).quant
    outputs = [dequantize(interpreter.run([result.quantize_input(s[None])]).outputs[0], quant)
               for s in samples]
    return np.concatenate(outputs).reshape(-1, 4).mean(axis=0)


def test_corrected_layer_mean_equals_the_float_mean(tmp_path: Path) -> None:
    path = tmp_path / "conv.onnx"
    _rounding_biased_conv(path)
    samples = RNG.uniform(0.0, 1.0, (16, 3, 8, 8)).astype(np.float32)
    corrected = api.quantize_model(path, samples)
    plain = api.quantize_model(path, samples, bias_correction=False)
    graph = corrected.float_graph
    expected = np.concatenate([run_float(graph, [s[None].transpose(0, 2, 3, 1)]).outputs[0]
                               for s in samples]).reshape(-1, 4).mean(axis=0)
    step = corrected.graph.tensor(corrected.graph.outputs[0]).quant.scale0
    assert np.abs(_mean_channel_output(plain, samples) - expected).min() > 5 * step
    np.testing.assert_allclose(_mean_channel_output(corrected, samples), expected, atol=step / 2)
    assert corrected.report.bias_corrected and not plain.report.bias_corrected
    assert [len(op.inputs) for op in plain.graph.operators] == [2]
    assert [len(op.inputs) for op in corrected.graph.operators] == [3]
    assert_litert_bit_exact(corrected, samples[:4])


@pytest.mark.parametrize("model", FLOAT_MODELS)
def test_bias_correction_lowers_held_out_error(model: str) -> None:
    graph = api.load_float_model(SHARED_MODELS / model).graph
    shape = graph.tensor(graph.inputs[0]).shape[1:]
    calibration = RNG.standard_normal((32, *shape)).astype(np.float32)
    held_out = RNG.standard_normal((16, *shape)).astype(np.float32)
    expected = [run_float(graph, [x[None]]).outputs[0].astype(np.float64) for x in held_out]

    def output_sqnr(result: api.QuantizeResult) -> float:
        interpreter = Interpreter(result.graph)
        quant = result.graph.tensor(result.graph.outputs[0]).quant
        noise = sum(float(np.sum((e - dequantize(interpreter.run(
            [result.quantize_input(x[None])]).outputs[0], quant)) ** 2))
            for x, e in zip(held_out, expected, strict=True))
        return sqnr_db(sum(float(np.sum(e**2)) for e in expected), noise)

    corrected = output_sqnr(api.quantize_model(SHARED_MODELS / model, calibration))
    plain = output_sqnr(api.quantize_model(SHARED_MODELS / model, calibration,
                                           bias_correction=False))
    assert corrected > plain + 1.0, (corrected, plain)
