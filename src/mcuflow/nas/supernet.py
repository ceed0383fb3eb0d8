"""The weight-shared supernet (Once-for-All style), plain subnets, training and ONNX export."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from mcuflow.errors import McuflowError
from mcuflow.nas.data import (
    BATCH_NORM_EPS,
    TRAIN_BATCH,
    Dataset,
    Split,
    channels_first,
    resize,
)
from mcuflow.nas.space import (
    Arch,
    Block,
    SearchSpace,
    blocks,
    held,
    largest,
    make_divisible,
    sample,
    smallest,
    used_slots,
)

EVAL_BATCH = 256
"""Samples per forward pass when measuring accuracy."""
RECALIBRATION_BATCH = 64
"""Samples per batch when re-estimating batch-norm statistics."""
DISTILLATION = 0.5
"""The share of a smaller subnet's loss that imitates the largest subnet (in-place distillation)."""


@dataclass(frozen=True)
class TrainBudget:
    """How long to train: epochs, batch size and the (peak) Adam learning rate.

    Fewer than one epoch trains on that share of an epoch's batches (at least one).
    """

    epochs: float
    batch: int = TRAIN_BATCH
    lr: float = 1e-2


def stem_channels(space: SearchSpace, width: float) -> int:
    """The stem convolution's output channels at `width`."""
    return make_divisible(space.stem_channels * width)


def _convolve(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int,
              groups: int = 1) -> torch.Tensor:
    """A bias-free convolution of a channels-last image (a series is a one-row image).

    oneDNN's depthwise convolutions are several times faster channels-last, and a series runs
    faster as a one-row image than through conv1d; the result is the same.
    """
    x = x.contiguous(memory_format=torch.channels_last)
    if weight.ndim == 3:
        return functional.conv2d(x, weight.unsqueeze(2), None, (1, stride), (0, padding), 1,
                                 groups)
    return functional.conv2d(x, weight, None, stride, padding, 1, groups)


def _batch_norm(dims: int, channels: int) -> nn.Module:
    norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return norm(channels, eps=BATCH_NORM_EPS)


def _sliced_batch_norm(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`bn` over the first channels of its parameters and statistics (x's channel count)."""
    channels = x.shape[1]
    return functional.batch_norm(
        x, bn.running_mean[:channels], bn.running_var[:channels], bn.weight[:channels],
        bn.bias[:channels], bn.training, bn.momentum, bn.eps)


class ElasticConvBN(nn.Module):
    """A dense convolution and batch norm whose output and input channels can shrink."""

    def __init__(self, dims: int, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.dims, self.stride, self.padding = dims, stride, kernel // 2
        self.weight = nn.Parameter(torch.empty(c_out, c_in, *(kernel,) * dims))
        self.bn = _batch_norm(dims, c_out)

    def active_weight(self, c_in: int, c_out: int) -> torch.Tensor:
        """The first c_out filters over the first c_in input channels."""
        return self.weight[:c_out, :c_in]

    def forward(self, x: torch.Tensor, c_out: int) -> torch.Tensor:
        """Convolve `x` into `c_out` channels and normalise them."""
        y = _convolve(x, self.active_weight(x.shape[1], c_out), self.stride, self.padding)
        return _sliced_batch_norm(self.bn, y)


class ElasticDepthwiseBN(nn.Module):
    """A depthwise convolution and batch norm: elastic channels and (centre-cropped) kernel."""

    def __init__(self, dims: int, channels: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.dims, self.stride = dims, stride
        self.weight = nn.Parameter(torch.empty(channels, 1, *(kernel,) * dims))
        self.bn = _batch_norm(dims, channels)

    def active_weight(self, channels: int, kernel: int) -> torch.Tensor:
        """The first `channels` filters, each the centre kernel x kernel of the largest."""
        start = (self.weight.shape[-1] - kernel) // 2
        window = slice(start, start + kernel)
        return self.weight[:channels, :, window, window] if self.dims == 2 \
            else self.weight[:channels, :, window]

    def forward(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        """Filter each channel of `x` with the active kernel and normalise.

        Taps further than the map's extent from the centre only ever meet padding, so a kernel
        wider than 2 * size - 1 runs as its centre crop of that width: same result, less work.
        """
        channels = x.shape[1]
        reach = min(kernel, 2 * max(x.shape[2:]) - 1)
        y = _convolve(x, self.active_weight(channels, reach), self.stride, reach // 2, channels)
        return _sliced_batch_norm(self.bn, y)


class ElasticBlock(nn.Module):
    """An inverted residual block at its largest expansion and kernel (`block`: the largest)."""

    def __init__(self, dims: int, block: Block) -> None:
        super().__init__()
        self.in_channels, self.out_channels = block.in_channels, block.out_channels
        self.residual = block.residual
        self.expand = ElasticConvBN(dims, block.in_channels, block.hidden, 1, 1) \
            if block.hidden != block.in_channels else None
        self.depthwise = ElasticDepthwiseBN(dims, block.hidden, block.kernel, block.stride)
        self.project = ElasticConvBN(dims, block.hidden, block.out_channels, 1, 1)

    def forward(self, x: torch.Tensor, kernel: int, expansion: int) -> torch.Tensor:
        """The block with `kernel` and `expansion` active."""
        hidden = x
        if expansion != 1:
            hidden = functional.relu6(self.expand(x, self.in_channels * expansion))
        hidden = functional.relu6(self.depthwise(hidden, kernel))
        y = self.project(hidden, self.out_channels)
        return x + y if self.residual else y


class Supernet(nn.Module):
    """Every architecture of a space at one width, sharing weights; `set_active` picks one."""

    def __init__(self, space: SearchSpace, width: float, input_channels: int, classes: int,
                 seed: int = 0) -> None:
        super().__init__()
        self.space, self.width, self.dims = space, width, space.dims
        self.arch = largest(space, width, max(space.resolutions))
        self.stem = ElasticConvBN(space.dims, input_channels, stem_channels(space, width), 3,
                                  space.stem_stride)
        slots = blocks(self.arch, space)
        self.blocks = nn.ModuleList(ElasticBlock(space.dims, block) for block in slots)
        features = slots[-1].out_channels
        self.head = None
        if space.head_channels > 0:
            self.head = ElasticConvBN(space.dims, features,
                                      make_divisible(space.head_channels * width), 1, 1)
            features = self.head.weight.shape[0]
        self.classifier = nn.Linear(features, classes)
        _initialise(self, seed)

    def set_active(self, arch: Arch) -> None:
        """Run `arch` from now on (its width must be the supernet's)."""
        if arch.width != self.width:
            raise ValueError(f"arch width {arch.width} on a supernet of width {self.width}")
        self.arch = arch

    def active_slots(self) -> Iterator[int]:
        """The slots the active architecture runs, in order."""
        yield from used_slots(self.arch, self.space)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the active architecture; x is NCHW (images) or NCL (series)."""
        if x.ndim == 3:
            x = x.unsqueeze(2)
        x = functional.relu6(self.stem(x, self.stem.weight.shape[0]))
        for slot in self.active_slots():
            x = self.blocks[slot](x, self.arch.kernels[slot], self.arch.expansions[slot])
        if self.head is not None:
            x = functional.relu6(self.head(x, self.head.weight.shape[0]))
        return self.classifier(x.mean(dim=(2, 3)))


class InvertedResidual(nn.Module):
    """A plain inverted residual block: its layers and whether it adds its input."""

    def __init__(self, layers: nn.Sequential, residual: bool) -> None:
        super().__init__()
        self.layers, self.residual = layers, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layers' output, plus `x` when residual."""
        y = self.layers(x)
        return x + y if self.residual else y


class Subnet(nn.Module):
    """One architecture as plain layers (Conv, BatchNorm, ReLU6, residual adds, pool, FC)."""

    def __init__(self, arch: Arch, space: SearchSpace, input_channels: int,
                 classes: int) -> None:
        super().__init__()
        self.input_size = space.input_size(arch.resolution)
        features = stem_channels(space, arch.width)
        layers = _conv_bn(space.dims, input_channels, features, 3, space.stem_stride, 1,
                          relu=True)
        for block in blocks(arch, space):
            layers.append(_plain_block(space.dims, block))
            features = block.out_channels
        if space.head_channels > 0:
            head = make_divisible(space.head_channels * arch.width)
            layers.extend(_conv_bn(space.dims, features, head, 1, 1, 1, relu=True))
            features = head
        pool = nn.AdaptiveAvgPool2d(1) if space.dims == 2 else nn.AdaptiveAvgPool1d(1)
        self.features = nn.Sequential(*layers, pool, nn.Flatten())
        self.classifier = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; x is NCHW (images) or NCL (series)."""
        return self.classifier(self.features(x))

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """Every convolution with the batch norm that follows it, in order."""
        modules = list(self.features.modules())
        return [(conv, bn) for conv, bn in zip(modules, modules[1:], strict=False)
                if isinstance(conv, nn.Conv1d | nn.Conv2d)]


def _conv_bn(dims: int, c_in: int, c_out: int, kernel: int, stride: int, groups: int,
             relu: bool) -> list[nn.Module]:
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    layers = [conv(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
              _batch_norm(dims, c_out)]
    return [*layers, nn.ReLU6()] if relu else layers


def _plain_block(dims: int, block: Block) -> InvertedResidual:
    hidden = block.hidden
    layers = _conv_bn(dims, block.in_channels, hidden, 1, 1, 1, relu=True) \
        if hidden != block.in_channels else []
    layers += _conv_bn(dims, hidden, hidden, block.kernel, block.stride, hidden, relu=True)
    layers += _conv_bn(dims, hidden, block.out_channels, 1, 1, 1, relu=False)
    return InvertedResidual(nn.Sequential(*layers), block.residual)


def _initialise(model: nn.Module, seed: int) -> None:
    """MobileNetV2's initialisation, drawn from a generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.reset_parameters()
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01, generator=generator)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv1d | nn.Conv2d | ElasticConvBN | ElasticDepthwiseBN):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", generator=generator)


def _active_layers(net: Supernet) -> Iterator[tuple[torch.Tensor, nn.Module]]:
    """The active architecture's convolution weights with their batch norms, in order."""
    stem = net.stem
    yield stem.active_weight(stem.weight.shape[1], stem.weight.shape[0]), stem.bn
    for slot in net.active_slots():
        block: ElasticBlock = net.blocks[slot]
        kernel, expansion = net.arch.kernels[slot], net.arch.expansions[slot]
        hidden = block.in_channels * expansion
        if expansion != 1:
            yield block.expand.active_weight(block.in_channels, hidden), block.expand.bn
        yield block.depthwise.active_weight(hidden, kernel), block.depthwise.bn
        yield block.project.active_weight(hidden, block.out_channels), block.project.bn
    if net.head is not None:
        yield net.head.weight, net.head.bn


def extract(net: Supernet, arch: Arch) -> Subnet:
    """`arch` as a standalone plain network holding copies of the supernet's weights.

    Leaves `arch` active in `net`. Batch-norm statistics are copied too (the first channels');
    they mix every subnet trained, so `recalibrate_bn` the result before measuring it. An
    `arch` the supernet does not hold (nas.space.held) raises ValueError: a larger kernel
    would be copied from the supernet's smaller one tap by tap broadcast.
    """
    if not held(arch, net.space):
        raise ValueError(f"{arch.key()} is not a subnet of the supernet's space")
    net.set_active(arch)
    model = Subnet(arch, net.space, net.stem.weight.shape[1], net.classifier.out_features)
    with torch.no_grad():
        for (weight, source), (conv, bn) in zip(_active_layers(net), model.conv_bn_pairs(),
                                                strict=True):
            conv.weight.copy_(weight)
            channels = weight.shape[0]
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(getattr(source, name)[:channels])
            bn.eps, bn.momentum = source.eps, source.momentum
        model.classifier.load_state_dict(net.classifier.state_dict())
    return model.train(net.training)


def build_model(arch: Arch, space: SearchSpace, input_channels: int, classes: int,
                seed: int) -> Subnet:
    """`arch` as a freshly initialised plain network (the baseline's starting point)."""
    model = Subnet(arch, space, input_channels, classes)
    _initialise(model, seed)
    return model


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _tensors(data: Dataset, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples resized and channels-first, with their labels."""
    return (torch.from_numpy(channels_first(data.x, resolution, data.dims)),
            torch.from_numpy(data.y))


def _batches(samples: int, budget: TrainBudget, generator: torch.Generator
             ) -> list[torch.Tensor]:
    """One epoch's shuffled batches (a last batch of one sample is dropped: batch norm)."""
    batches = list(torch.randperm(samples, generator=generator).split(budget.batch))
    return [batch for batch in batches if len(batch) > 1]


def _fit(model: nn.Module, data: Split, resolution: int, budget: TrainBudget, seed: int,
         step_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Adam with a cosine learning rate; `step_loss` runs backward and returns the loss."""
    x, y = _tensors(data.train, resolution)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=budget.lr)
    per_epoch = -(-len(x) // budget.batch) - (len(x) % budget.batch == 1)
    steps = max(1, round(budget.epochs * per_epoch))
    step = 0
    model.train()
    with _one_thread():
        while step < steps:
            for batch in _batches(len(x), budget, generator)[:steps - step]:
                for group in optimiser.param_groups:
                    group["lr"] = budget.lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
                optimiser.zero_grad()
                step_loss(x[batch], y[batch])
                optimiser.step()
                step += 1
    model.eval()


def train_supernet(net: Supernet, space: SearchSpace, data: Split, resolution: int,
                   budget: TrainBudget, seed: int) -> None:
    """Sandwich-rule training: largest, smallest and two random subnets per step.

    The largest learns the labels; the others learn half from the labels and half from the
    largest's (detached) predictions. Gradients of all four are summed into one Adam step.
    """
    rng = np.random.default_rng(seed)
    biggest = largest(space, net.width, resolution)
    least = smallest(space, net.width, resolution)

    def sandwich(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        net.set_active(biggest)
        logits = net(x)
        loss = functional.cross_entropy(logits, y)
        loss.backward()
        teacher = logits.detach().softmax(dim=1)
        for arch in (least, sample(space, rng, net.width, resolution),
                     sample(space, rng, net.width, resolution)):
            net.set_active(arch)
            logits = net(x)
            imitation = functional.cross_entropy(logits, teacher)
            labels = functional.cross_entropy(logits, y)
            ((1 - DISTILLATION) * labels + DISTILLATION * imitation).backward()
        return loss

    _fit(net, data, resolution, budget, seed, sandwich)
    net.set_active(biggest)


def train_model(model: nn.Module, data: Split, resolution: int, budget: TrainBudget,
                seed: int) -> None:
    """Plain training on the labels (baseline from scratch, or fine-tuning a subnet).

    Batch norm's statistics are then re-estimated on the training samples (recalibrate_bn):
    the running averages of a short training still hold mostly their initial values.
    """

    def plain(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    _fit(model, data, resolution, budget, seed, plain)
    drawn = data.train.x[recalibration_rows(len(data.train.x), seed)]
    recalibrate_bn(model, resize(drawn, resolution, data.train.dims), seed)


def recalibration_rows(samples: int, seed: int, batches: int = 8) -> np.ndarray:
    """The rows of `samples` recalibrate_bn draws `batches` batches from, in order."""
    order = np.random.default_rng(seed).permutation(samples)[:batches * RECALIBRATION_BATCH]
    return np.sort(order)


def recalibrate_bn(model: nn.Module, x: np.ndarray, seed: int, batches: int = 8) -> None:
    """Reset every batch norm's statistics and re-estimate them on samples of `x`.

    `x` is in the dataset's layout (N x H x W x C or N x T x C) at the model's resolution;
    `batches` batches of up to 64 samples, drawn by a generator seeded with `seed`, are averaged
    with equal weight. Meant for plain models (extract, build_model); a model without batch
    norm is left as it is.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    if not norms:
        return
    rows = recalibration_rows(len(x), seed, batches)
    samples = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x[rows], -1, 1)))
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with _one_thread(), torch.no_grad():
        for batch in torch.tensor_split(samples, min(batches, len(samples))):
            model(batch.float())
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    model.eval()


def predict(model: nn.Module, data: Dataset, resolution: int) -> np.ndarray:
    """Logits for every sample of `data`, resized to `resolution`."""
    x, _ = _tensors(data, resolution)
    model.eval()
    with _one_thread(), torch.no_grad():
        return torch.cat([model(batch) for batch in x.split(EVAL_BATCH)]).numpy()


def accuracy(model: nn.Module, data: Dataset, resolution: int) -> float:
    """Top-1 accuracy (0..1) of the float model on `data`."""
    return float(np.mean(predict(model, data, resolution).argmax(axis=1) == data.y))


def export_onnx(model: Subnet, input_channels: int, path: Path) -> None:
    """The plain model as ONNX (opset 17): input x NCHW (images) or NCL (series), logits out."""
    example = torch.zeros(1, input_channels, *model.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"])


def state_bytes(net: nn.Module) -> bytes:
    """Every parameter and buffer as bytes: a JSON header and the raw tensors (no pickle)."""
    entries, blobs = [], []
    for name, tensor in net.state_dict().items():
        array = tensor.detach().cpu().contiguous().numpy()
        entries.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)})
        blobs.append(array.tobytes())
    header = json.dumps(entries).encode()
    return len(header).to_bytes(8, "little") + header + b"".join(blobs)


def load_state(net: nn.Module, data: bytes) -> None:
    """Load what `state_bytes` wrote into `net` (same architecture)."""
    length = int.from_bytes(data[:8], "little")
    offset, state = 8 + length, {}
    for entry in json.loads(data[8:offset]):
        dtype = np.dtype(entry["dtype"])
        count = int(np.prod(entry["shape"], dtype=np.int64))
        array = np.frombuffer(data, dtype, count, offset).reshape(entry["shape"])
        state[entry["name"]] = torch.from_numpy(array.copy())
        offset += count * dtype.itemsize
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise McuflowError("the saved weights do not match this network",
                           "the checkpoint comes from another search space or width; remove "
                           "it to start over") from error
