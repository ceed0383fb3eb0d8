"""ONNX Abs, PRelu, ReduceSum, LogSoftmax, LpNormalization: float equals onnxruntime, int8 LiteRT.

They import as ABS, PRELU, SUM, LOG_SOFTMAX and L2_NORMALIZATION.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mcuflow import api
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.onnx_reader import import_onnx
from mcuflow.ir.ops import OpKind
from tests.support import assert_litert_bit_exact
from tests.unit.test_onnx_reader import Net, assert_matches_onnxruntime

RNG = np.random.default_rng(23)
SHAPE = (1, 3, 8, 8)


def _conv(net: Net) -> str:
    return net.node("Conv", "x", net.weights(6, 3, 3, 3))


def _kinds(data: bytes) -> set[OpKind]:
    return {op.kind for op in import_onnx(data).graph.operators}


def test_abs() -> None:
    net = Net(SHAPE)
    data = net.model(net.node("Abs", _conv(net)))
    assert OpKind.ABS in _kinds(data)
    assert_matches_onnxruntime(data, SHAPE)


@pytest.mark.parametrize("slope_shape", [(6, 1, 1), (1,), (1, 6, 1, 1), (6, 6, 6)], ids=str)
def test_prelu_with_a_constant_slope(slope_shape: tuple[int, ...]) -> None:
    """Per NCHW channel (PyTorch's nn.PReLU(6)), one slope, and one per element."""
    net = Net(SHAPE)
    slope = net.const(RNG.uniform(-0.5, 0.5, slope_shape).astype(np.float32))
    data = net.model(net.node("PRelu", _conv(net), slope))
    assert OpKind.PRELU in _kinds(data)
    assert_matches_onnxruntime(data, SHAPE)


def test_prelu_with_a_computed_slope() -> None:
    net = Net(SHAPE)
    y = _conv(net)
    data = net.model(net.node("PRelu", y, net.node("Sigmoid", y)))
    assert_matches_onnxruntime(data, SHAPE)


@pytest.mark.parametrize(("axes", "keepdims"), [([2, 3], 1), ([2, 3], 0), ([1], 0), ([1], 1),
                                                ([-1], 0), (None, 0), ([0, 1, 2, 3], 1)],
                         ids=str)
@pytest.mark.parametrize("opset", [11, 13])
def test_reduce_sum(axes: list[int] | None, keepdims: int, opset: int) -> None:
    """Axes as an attribute (opset 11) or an input (13), kept or dropped."""
    net = Net(SHAPE, opset)
    y = _conv(net)
    if axes is None:
        out = net.node("ReduceSum", y, keepdims=keepdims)
    elif opset >= 13:
        out = net.node("ReduceSum", y, net.const(np.array(axes, np.int64)), keepdims=keepdims)
    else:
        out = net.node("ReduceSum", y, axes=axes, keepdims=keepdims)
    data = net.model(out)
    assert OpKind.SUM in _kinds(data)
    assert_matches_onnxruntime(data, SHAPE)


def test_log_softmax_of_logits() -> None:
    net = Net(SHAPE)
    data = net.model(net.node("LogSoftmax", _logits(net), axis=-1))
    assert OpKind.LOG_SOFTMAX in _kinds(data)
    assert_matches_onnxruntime(data, SHAPE)


def test_log_softmax_over_the_nchw_channels() -> None:
    net = Net(SHAPE)
    assert_matches_onnxruntime(net.model(net.node("LogSoftmax", _conv(net), axis=1)), SHAPE)


def _logits(net: Net) -> str:
    return net.node("Gemm", net.node("Flatten", _conv(net)), net.weights(6 * 6 * 6, 10))


@pytest.mark.parametrize(("source", "axis"), [(_conv, 1), (_logits, -1), (_logits, 1)],
                         ids=["nchw-channels", "logits-last", "logits-1"])
def test_lp_normalization(source: Callable[[Net], str], axis: int) -> None:
    """Along the NCHW channels (NHWC's last axis) or a classifier's outputs."""
    net = Net(SHAPE)
    data = net.model(net.node("LpNormalization", source(net), axis=axis, p=2))
    assert OpKind.L2_NORMALIZATION in _kinds(data)
    assert_matches_onnxruntime(data, SHAPE)


@pytest.mark.parametrize("op_type", ["LpNormalization", "LogSoftmax"])
def test_normalising_the_nchw_width_runs_after_a_transpose(op_type: str) -> None:
    """NCHW's last axis is not NHWC's: the reader moves the data with a TRANSPOSE first."""
    net = Net(SHAPE)
    data = net.model(net.node(op_type, _conv(net), axis=-1))
    assert OpKind.TRANSPOSE in _kinds(data)
    assert_matches_onnxruntime(data, SHAPE)


def test_lp_normalization_refuses_p1() -> None:
    net = Net(SHAPE)
    data = net.model(net.node("LpNormalization", _conv(net), axis=1, p=1))
    with pytest.raises(UnsupportedModelError, match="p=1"):
        import_onnx(data)


def _quantised(tmp_path: Path, data: bytes, kind: OpKind) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    calibration = RNG.standard_normal((8, *SHAPE[1:])).astype(np.float32)
    result = api.quantize_model(path, calibration, "affine", True, "minmax")
    assert kind in {op.kind for op in result.graph.operators}
    assert_litert_bit_exact(result, calibration[:4])


def test_quantised_prelu_and_abs_run_in_litert_to_the_bit(tmp_path: Path) -> None:
    net = Net(SHAPE)
    slope = net.const(RNG.uniform(0.05, 0.3, (6, 1, 1)).astype(np.float32))
    y = net.node("PRelu", _conv(net), slope)
    _quantised(tmp_path, net.model(net.node("Add", y, net.node("Abs", y))), OpKind.PRELU)


def test_quantised_log_softmax_runs_in_litert_to_the_bit(tmp_path: Path) -> None:
    net = Net(SHAPE)
    _quantised(tmp_path, net.model(net.node("LogSoftmax", _logits(net), axis=-1)),
               OpKind.LOG_SOFTMAX)


def test_quantised_l2_normalization_runs_in_litert_to_the_bit(tmp_path: Path) -> None:
    net = Net(SHAPE)
    y = net.node("LpNormalization", _conv(net), axis=1, p=2)
    _quantised(tmp_path, net.model(y), OpKind.L2_NORMALIZATION)
