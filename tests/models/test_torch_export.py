"""Every op a PyTorch export brings (the float-model issue's list) imports and quantises exactly."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest

from mcuflow import api
from mcuflow.ir.ops import OpKind
from tests.support import assert_litert_bit_exact
from tests.unit.test_onnx_reader import assert_matches_onnxruntime

torch = pytest.importorskip("torch")
nn = torch.nn

SHAPE = (1, 3, 16, 16)


class _EveryOp(nn.Module):
    """A network holding every op of the issue's list, the way PyTorch exports them.

    Conv+BN (bias-free), depthwise, HardSwish, squeeze-excite (Sigmoid, Mul), residual Add,
    max and average pooling, Concat, Clip, view (Shape/Gather/Reshape), bias-free Linear
    (MatMul), Softmax.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        self.depthwise = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16),
                                       nn.BatchNorm2d(16), nn.Hardswish())
        self.squeeze, self.excite = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.branch = nn.Conv2d(16, 8, 1)
        self.head = nn.Linear(24 * 4 * 4, 10, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.depthwise(x)
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(y.mean((2, 3), keepdim=True)))))
        y = y * gate + x
        y = torch.cat([nn.functional.max_pool2d(y, 2),
                       nn.functional.avg_pool2d(self.branch(y), 2)], dim=1)
        y = torch.clamp(y, 0.0, 6.0)
        return torch.softmax(self.head(y.view(y.size(0), -1)), dim=1)


@pytest.fixture(scope="module", params=[13, 17], ids=lambda opset: f"opset{opset}")
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = _EveryOp().eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(SHAPE),), buffer, dynamo=False,
                          input_names=["x"], opset_version=request.param)
    path = tmp_path_factory.mktemp("torch") / "every_op.onnx"
    path.write_bytes(buffer.getvalue())
    return path


def test_float_import_matches_onnxruntime(exported: Path) -> None:
    assert_matches_onnxruntime(exported.read_bytes(), SHAPE)


@pytest.mark.parametrize("scheme", ["affine", "qformat", "codebook"])
def test_quantised_model_runs_in_litert_to_the_bit(exported: Path, scheme: str) -> None:
    calibration = np.random.default_rng(1).standard_normal((32, *SHAPE[1:])).astype(np.float32)
    result = api.quantize_model(exported, calibration, scheme)
    kinds = {op.kind for op in result.graph.operators}
    assert {OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.HARD_SWISH, OpKind.MEAN,
            OpKind.LOGISTIC, OpKind.MUL, OpKind.ADD, OpKind.MAX_POOL_2D, OpKind.AVERAGE_POOL_2D,
            OpKind.CONCATENATION, OpKind.FULLY_CONNECTED, OpKind.SOFTMAX} <= kinds, kinds
    assert_litert_bit_exact(result, calibration[:4])
    assert result.report.top1_agreement is not None and result.report.top1_agreement >= 0.9
    assert min(result.report.output_sqnr_db.values()) > 20.0, result.report.output_sqnr_db
