"""PyTorch fixtures for the bring-your-own-quantisation flows: tasks, networks, quantisers.

Offline tasks (scikit-learn's digits, a synthetic 1-D series task), small CNNs trained in a few
seconds, ONNX Runtime's QDQ quantisation, and PT2E (post-training and QAT) with a quantiser set
up as ExecuTorch's Cortex-M one: int8 activations (asymmetric, per tensor), symmetric int8
per-channel weights in [-127, 127], every computed tensor quantised, pools and reshapes sharing
their input's parameters.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torchao.quantization.pt2e import (
    FakeQuantize,
    HistogramObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
    move_exported_model_to_eval,
    move_exported_model_to_train,
)
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
from torchao.quantization.pt2e.quantizer import (
    QuantizationAnnotation,
    QuantizationSpec,
    Quantizer,
    SharedQuantizationSpec,
)

nn = torch.nn
aten = torch.ops.aten
EPS = 2**-12
"""The least scale the observers choose."""


@dataclass(frozen=True)
class Task:
    """A classification task split into training and test samples (NCHW or NCT float32)."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def example(self) -> torch.Tensor:
        """One input of batch 1."""
        return torch.from_numpy(self.train_x[:1])


def digits_task() -> Task:
    """scikit-learn's 8x8 digits in [0, 1], 80/20 stratified."""
    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return Task("digits", *_split(images, labels))


def series_task(samples: int = 1200, length: int = 64, seed: int = 0) -> Task:
    """Three sensor channels; the class is which of 4 frequency patterns the signal follows."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, samples)
    t = np.arange(length, dtype=np.float32) / length
    phase = rng.uniform(0, 2 * np.pi, (samples, 3, 1))
    frequency = (2.0 + 1.5 * labels)[:, None, None] * np.array([1.0, 2.0, 0.5])[None, :, None]
    x = np.sin(2 * np.pi * frequency * t + phase) + 0.3 * rng.standard_normal((samples, 3, length))
    return Task("series", *_split(x.astype(np.float32), labels))


def _split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    train_x, test_x, train_y, test_y = train_test_split(x, y, test_size=0.2, random_state=0,
                                                        stratify=y)
    return train_x, train_y, test_x, test_y


def digits_cnn() -> nn.Module:
    """Conv-BN-ReLU, a depthwise ReLU6 block with a residual add, max pool, linear head."""
    return _Residual2d()


class _Residual2d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16),
                                   nn.BatchNorm2d(16), nn.ReLU6(), nn.Conv2d(16, 16, 1),
                                   nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                                  nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(x + self.block(x))


def series_cnn() -> nn.Module:
    """A 1-D CNN: two strided Conv1d-BN-ReLU blocks, global average pooling, linear head."""
    return nn.Sequential(nn.Conv1d(3, 16, 5, stride=2, padding=2), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Conv1d(16, 24, 5, stride=2, padding=2), nn.BatchNorm1d(24),
                         nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(24, 4))


def train(model: nn.Module, task: Task, epochs: int, seed: int = 0) -> nn.Module:
    """A few epochs of Adam on the training split (single-threaded, fixed seed)."""
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(task.train_x), torch.from_numpy(task.train_y)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    torch.set_num_threads(threads)
    return model.eval()


def float_onnx(model: nn.Module, task: Task) -> bytes:
    """The float model as ONNX (TorchScript exporter, batch-norm kept for mcuflow to fold)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (task.example,), buffer, dynamo=False,
                          input_names=["x"], output_names=["y"])
    return buffer.getvalue()


class _Samples(CalibrationDataReader):
    def __init__(self, samples: np.ndarray) -> None:
        self._samples = iter([{"x": x[None]} for x in samples])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._samples, None)


def onnxruntime_qdq(float_model: bytes, calibration: np.ndarray, per_channel: bool,
                    activations: QuantType, directory: Path) -> bytes:
    """ONNX Runtime's quantize_static in QDQ format (int8 weights)."""
    source, target = directory / "float.onnx", directory / "qdq.onnx"
    source.write_bytes(float_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(source, target, _Samples(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=activations,
                        weight_type=QuantType.QInt8)
    return target.read_bytes()


def pt2e_quantized(model: nn.Module, task: Task, calibration: np.ndarray,
                   qat_epochs: int = 0) -> torch.export.ExportedProgram:
    """PT2E: post-training (observers over `calibration`) or, with `qat_epochs`, QAT."""
    batch = torch.from_numpy(task.train_x[:2])  # batch 1 would be specialised
    exported = torch.export.export(model.eval(), (batch,),
                                   dynamic_shapes=({0: torch.export.Dim.AUTO},)).module()
    quantizer = CortexMLikeQuantizer(qat=qat_epochs > 0)
    if qat_epochs:
        prepared = prepare_qat_pt2e(exported, quantizer)
        _train_exported(prepared, task, qat_epochs)
    else:
        prepared = prepare_pt2e(exported, quantizer)
        for x in calibration:
            prepared(torch.from_numpy(x[None]))
    converted = convert_pt2e(prepared)
    return torch.export.export(converted, (task.example,))


def _train_exported(prepared: torch.fx.GraphModule, task: Task, epochs: int) -> None:
    move_exported_model_to_train(prepared)
    optimiser = torch.optim.Adam(prepared.parameters(), lr=1e-3)
    x, y = torch.from_numpy(task.train_x), torch.from_numpy(task.train_y)
    generator = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(prepared(x[batch]), y[batch]).backward()
            optimiser.step()
    move_exported_model_to_eval(prepared)


def pt2e_onnx(program: torch.export.ExportedProgram) -> bytes:
    """A PT2E program as QDQ ONNX (PyTorch's dynamo exporter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.onnx.export(program, dynamo=True, verbose=False).model_proto \
            .SerializeToString()


_WEIGHTED = (aten.conv1d.default, aten.conv2d.default, aten.linear.default)
_SHARING = (aten.max_pool2d.default, aten.max_pool1d.default, aten.flatten.using_ints,
            aten.view.default, aten.reshape.default)
_ACTIVATIONS = (aten.relu.default, aten.relu_.default, aten.hardtanh.default,
                aten.hardtanh_.default)
_COMPUTING = (aten.add.Tensor, aten.adaptive_avg_pool2d.default, aten.adaptive_avg_pool1d.default,
              aten.mean.dim, aten.avg_pool2d.default)


class CortexMLikeQuantizer(Quantizer):
    """int8 everywhere, as ExecuTorch's Cortex-M quantiser sets it up (see the module doc)."""

    def __init__(self, qat: bool = False) -> None:
        super().__init__()
        self.activation = _activation_spec(qat)
        self.weight = _weight_spec(qat)

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        """Annotate each node; a weighted op's output is left to a ReLU that follows it."""
        for node in model.graph.nodes:
            if node.op != "call_function":
                continue
            annotate = self._annotators().get(node.target)
            if annotate is not None:
                annotate(node)
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        """Nothing to check."""

    def _annotators(self) -> dict[object, Callable[[torch.fx.Node], None]]:
        table: dict[object, Callable[[torch.fx.Node], None]] = {}
        table.update(dict.fromkeys(_WEIGHTED, self._weighted))
        table.update(dict.fromkeys(_SHARING, self._sharing))
        table.update(dict.fromkeys(_ACTIVATIONS, self._output_only))
        table.update(dict.fromkeys(_COMPUTING, self._computing))
        return table

    def _weighted(self, node: torch.fx.Node) -> None:
        x, weight = node.args[0], node.args[1]
        followed = len(node.users) == 1 and next(iter(node.users)).target in _ACTIVATIONS
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={x: self.activation, weight: self.weight},
            output_qspec=None if followed else self.activation, _annotated=True)

    def _output_only(self, node: torch.fx.Node) -> None:
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            output_qspec=self.activation, _annotated=True)

    def _computing(self, node: torch.fx.Node) -> None:
        inputs = {a: self.activation for a in node.args if isinstance(a, torch.fx.Node)}
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map=inputs, output_qspec=self.activation, _annotated=True)

    def _sharing(self, node: torch.fx.Node) -> None:
        source = node.args[0]
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={source: self.activation},
            output_qspec=SharedQuantizationSpec((source, node)), _annotated=True)


def _activation_spec(qat: bool) -> QuantizationSpec:
    ctr = (FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, eps=EPS) if qat
           else HistogramObserver.with_args(eps=EPS))
    return QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127,
                            qscheme=torch.per_tensor_affine, is_dynamic=False,
                            observer_or_fake_quant_ctr=ctr)


def _weight_spec(qat: bool) -> QuantizationSpec:
    ctr = (FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, eps=EPS)
           if qat else PerChannelMinMaxObserver.with_args(eps=EPS))
    return QuantizationSpec(dtype=torch.int8, quant_min=-127, quant_max=127,
                            qscheme=torch.per_channel_symmetric, ch_axis=0, is_dynamic=False,
                            observer_or_fake_quant_ctr=ctr)
