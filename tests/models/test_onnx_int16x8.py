"""The int16x8 CNN from ONNX (PTQ `--scheme int16x8`, ONNX Runtime's int16 QDQ) vs LiteRT.

A float model through `--scheme int16x8`, and ONNX Runtime's QDQ with int16 activations, each
bit-exact against LiteRT (reference interpreter and host C).

The CNN of tests/onnx_quant_models.py: Conv, depthwise Conv, a residual Add, GlobalAveragePool
(MEAN), Gemm (FULLY_CONNECTED) and Softmax, all int16 with int8 weights and int64 biases. The
QDQ import keeps ONNX Runtime's parameters; each op, fed ONNX Runtime's own codes, is within
1 LSB of its run, SOFTMAX within a few (LiteRT's int16 softmax approximates exp with tables).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnxruntime.quantization import QuantType

from mcuflow.errors import McuflowError, UnsupportedModelError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.ir.constraints import WEIGHT_AXIS
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import OpKind
from mcuflow.ptq import QuantizeResult, quantize_model
from mcuflow.ref.interpreter import Interpreter
from tests.onnx_quant_models import (
    imported_qdq,
    litert_outputs,
    model_inputs,
    op_differences,
    quantised,
)
from tests.support import host_outputs, run_cli
from tests.unit.test_onnx_reader import Net

RUNS = 12
KINDS = {OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.ADD, OpKind.MEAN,
         OpKind.FULLY_CONNECTED, OpKind.SOFTMAX}
SOFTMAX_LSB = 8
"""LiteRT's int16 SOFTMAX (exp and 1 / (1 + x) from tables) against an exact softmax, in LSB
of 1/32768."""


def assert_int16x8(graph: Graph) -> None:
    """Every activation int16 with zero point 0, weights int8 per channel, biases int64."""
    assert {op.kind for op in graph.operators} >= KINDS
    for name in graph.activations():
        tensor = graph.tensor(name)
        assert tensor.dtype is DType.INT16 and set(tensor.quant.zero_point) == {0}, name
    for op in graph.operators:
        if op.kind in WEIGHT_AXIS:
            weights, bias = graph.tensor(op.inputs[1]), graph.tensor(op.inputs[2])
            assert weights.dtype is DType.INT8 and weights.quant.is_per_channel
            assert bias.dtype is DType.INT64


def assert_bit_exact(result: QuantizeResult, directory: Path) -> None:
    """Interpreter, LiteRT on the written .tflite and the host C agree to the bit."""
    inputs = model_inputs(result, RUNS)
    want = litert_outputs(result, inputs)
    interpreter = Interpreter(read_tflite(result.tflite()))
    for r in range(RUNS):
        np.testing.assert_array_equal(interpreter.run([inputs[0][r]]).outputs[0], want[0][r])
    got = host_outputs(result.graph, inputs, directory / "project")
    assert got[0].dtype == want[0].dtype == np.int16
    np.testing.assert_array_equal(got[0], want[0])
    assert len({row.tobytes() for row in want[0]}) > RUNS // 2  # not a constant model


def test_ptq_int16x8_is_bit_exact_against_litert(tmp_path: Path) -> None:
    result = quantised(tmp_path, "int16x8")
    assert_int16x8(result.graph)
    softmax = next(op for op in result.graph.operators if op.kind is OpKind.SOFTMAX)
    assert result.graph.tensor(softmax.outputs[0]).quant.scale0 == 1.0 / 32768.0
    assert result.report.scheme == "int16x8"
    assert_bit_exact(result, tmp_path)


def test_quantize_cli_writes_int16x8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quantised(tmp_path)  # writes cnn.onnx and calibration.npy
    out = tmp_path / "int16x8.tflite"
    code, err = run_cli(capsys, ["quantize", str(tmp_path / "cnn.onnx"), "-o", str(out),
                                 "--calibration", str(tmp_path / "calibration.npy"),
                                 "--scheme", "int16x8"])
    assert code == 0, err
    assert_int16x8(read_tflite(out))
    code, err = run_cli(capsys, ["quantize", str(tmp_path / "cnn.onnx"), "-o", str(out),
                                 "--calibration", str(tmp_path / "calibration.npy"),
                                 "--scheme", "int16x8", "--io-dtype", "uint8"])
    assert code != 0 and "uint8 model I/O is for int8 models" in err


def test_int16x8_refuses_ops_outside_the_scheme(tmp_path: Path) -> None:
    net = Net((1, 2, 4, 4), rng=np.random.default_rng(1))
    branch = net.node("Conv", "x", net.weights(4, 2, 1, 1))
    (tmp_path / "d2s.onnx").write_bytes(net.model(net.node("DepthToSpace", branch, blocksize=2)))
    calibration = np.random.default_rng(2).standard_normal((8, 2, 4, 4)).astype(np.float32)
    with pytest.raises(UnsupportedModelError, match="DEPTH_TO_SPACE.*int16 activations"):
        quantize_model(tmp_path / "d2s.onnx", calibration, "int16x8")
    with pytest.raises(McuflowError, match="unknown model I/O type"):
        quantize_model(tmp_path / "d2s.onnx", calibration, io_dtype="int4")


def test_onnxruntime_int16_qdq_is_bit_exact_and_near_onnxruntime(tmp_path: Path) -> None:
    model, result = imported_qdq(tmp_path, QuantType.QInt16)
    assert_int16x8(result.graph)
    assert {t.origin.value for t in result.kept.tensors} <= {"model", "shared", "added"}
    assert [t.tensor for t in result.kept.flagged] == [
        op.outputs[0] for op in result.graph.operators if op.kind is OpKind.SOFTMAX]
    assert_bit_exact(result, tmp_path)
    worst = op_differences(model, result)
    assert KINDS - {OpKind.MEAN} <= set(worst)
    assert max(d for kind, d in worst.items() if kind is not OpKind.SOFTMAX) <= 1, worst
    assert worst[OpKind.SOFTMAX] <= SOFTMAX_LSB, worst
