"""The search space: MobileNetV2-style architectures, their variation, MACs and int8 graphs."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mcuflow.errors import McuflowError
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import Graph
from mcuflow.ir.quantization import QuantParams

RELU6 = Activation.RELU6


@dataclass(frozen=True)
class Stage:
    """One stage of blocks: output channels (before the width), depth range, first stride."""

    channels: int
    min_depth: int
    max_depth: int
    stride: int


@dataclass(frozen=True)
class SearchSpace:
    """The network family's choices: stages, per-block kernels and expansions, the grid axes.

    `dims` is 2 for images (NHWC) and 1 for series (run as one-row images); `widths` and
    `resolutions` span the grid that space optimisation chooses one cell of.
    """

    dims: int
    stages: tuple[Stage, ...]
    aspect: float = 1.0
    """Columns per row of the images (their native width over height); 1 for series."""
    kernels: tuple[int, ...] = (3, 5, 7)
    expansions: tuple[int, ...] = (3, 4, 6)
    widths: tuple[float, ...] = (0.25, 0.35, 0.5, 0.75, 1.0)
    resolutions: tuple[int, ...] = (8, 12, 16)
    stem_channels: int = 16
    stem_stride: int = 1
    head_channels: int = 0

    @property
    def slots(self) -> int:
        """The number of block slots: every stage's maximum depth."""
        return sum(stage.max_depth for stage in self.stages)

    def input_size(self, resolution: int) -> tuple[int, ...]:
        """An input's (rows, columns) at `resolution` rows (series: its steps)."""
        return (resolution, columns(resolution, self.aspect)) if self.dims == 2 else (resolution,)

    def stage_slots(self) -> tuple[range, ...]:
        """The slot indices of each stage, in stage order."""
        ranges, start = [], 0
        for stage in self.stages:
            ranges.append(range(start, start + stage.max_depth))
            start += stage.max_depth
        return tuple(ranges)


UPSCALED_SIZE = 16
"""Images up to this size are also searched at 1.5 and 2 times their size (8 x 8 digits lose
their last rows to the strides); larger ones at 0.5 and 0.75 times: upscaling 28 x 28 images
adds MACs and training time but no information."""


def columns(rows: int, aspect: float) -> int:
    """Columns of an image of `rows` rows that keeps `aspect` (columns per row), at least 1."""
    return max(1, round(rows * aspect))


def default_space(dims: int, native_size: int, aspect: float = 1.0) -> SearchSpace:
    """A space for small inputs: 8x8 images (sklearn digits) or series of T=40 (MNIST-1D).

    Resolutions are the native size (rows) and smaller or larger steps around it
    (UPSCALED_SIZE); images keep their `aspect` (a 49 x 10 spectrogram stays 49 x 10, not
    49 x 49). Stages of 16..64 channels keep many candidates within 16-32 KB of SRAM. Larger
    inputs get more strides (strided).
    """
    if dims not in (1, 2):
        raise McuflowError(f"a search space has 1 or 2 spatial dimensions, not {dims}",
                           "use 2 for images (N x H x W x C) and 1 for series (N x T x C)")
    if dims == 2:
        stages = (Stage(16, 1, 2, 1), Stage(24, 1, 3, 2), Stage(32, 1, 3, 2),
                  Stage(64, 1, 2, 1))
        steps = (1.0, 1.5, 2.0) if native_size <= UPSCALED_SIZE else (0.5, 0.75, 1.0)
    else:
        stages = (Stage(16, 1, 2, 2), Stage(24, 1, 3, 2), Stage(32, 1, 3, 2),
                  Stage(64, 1, 2, 1))
        steps = (0.6, 0.8, 1.0)
    resolutions = tuple(sorted({max(4, int(round(native_size * step))) for step in steps}))
    aspect = aspect if dims == 2 else 1.0
    stem_stride, stages = strided(stages, max(native_size, columns(native_size, aspect)))
    return SearchSpace(dims, stages, aspect, resolutions=resolutions, stem_stride=stem_stride)


FINAL_SIZE = 8
"""The most rows (series: steps) the last stage sees at the native size, where strides allow."""


def strided(stages: tuple[Stage, ...], native_size: int) -> tuple[int, tuple[Stage, ...]]:
    """The stem's stride and the stages, halving until the last stage sees FINAL_SIZE or fewer.

    The stem strides first (MobileNetV2's does), then the unstrided stages from the last: a
    96 x 96 image reaches the last stage at 6 x 6, not 24 x 24 (whose activations no 32 KB
    board holds). Small inputs keep every stride as given.
    """
    stem, stages = 1, list(stages)
    unstrided = [index for index, stage in enumerate(stages) if stage.stride == 1][::-1]
    while native_size / (stem * math.prod(s.stride for s in stages)) > FINAL_SIZE:
        if stem == 1:
            stem = 2
        elif unstrided:
            index = unstrided.pop(0)
            stages[index] = replace(stages[index], stride=2)
        else:
            break
    return stem, tuple(stages)


@dataclass(frozen=True)
class Arch:
    """One architecture: width and resolution, depth per stage, kernel and expansion per slot.

    Slots beyond a stage's depth hold the smallest options (see `canonical`).
    """

    width: float
    resolution: int
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expansions: tuple[int, ...]

    def key(self) -> str:
        """Canonical, stable text naming the architecture (seeds, caches, JSON)."""
        return (f"w{self.width:g}-r{self.resolution}-d{'.'.join(map(str, self.depths))}"
                f"-k{'.'.join(map(str, self.kernels))}-e{'.'.join(map(str, self.expansions))}")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {"width": self.width, "resolution": self.resolution, "depths": list(self.depths),
                "kernels": list(self.kernels), "expansions": list(self.expansions)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Arch:
        """The inverse of to_json."""
        return cls(float(data["width"]), int(data["resolution"]),
                   tuple(int(v) for v in data["depths"]),
                   tuple(int(v) for v in data["kernels"]),
                   tuple(int(v) for v in data["expansions"]))


def used_slots(arch: Arch, space: SearchSpace) -> tuple[int, ...]:
    """The slots `arch` runs, in order: each stage's first `depth`."""
    return tuple(slot for depth, slots in zip(arch.depths, space.stage_slots(), strict=True)
                 for slot in slots[:depth])


def canonical(arch: Arch, space: SearchSpace) -> Arch:
    """`arch` with unused slots (beyond each stage's depth) set to the smallest options."""
    kernels, expansions = list(arch.kernels), list(arch.expansions)
    for depth, slots in zip(arch.depths, space.stage_slots(), strict=True):
        for slot in slots[depth:]:
            kernels[slot], expansions[slot] = min(space.kernels), min(space.expansions)
    return replace(arch, kernels=tuple(kernels), expansions=tuple(expansions))


def _pick(rng: np.random.Generator, options: tuple[int, ...]) -> int:
    return int(options[int(rng.integers(len(options)))])


def _depth(rng: np.random.Generator, stage: Stage) -> int:
    return int(rng.integers(stage.min_depth, stage.max_depth + 1))


def sample(space: SearchSpace, rng: np.random.Generator, width: float,
           resolution: int) -> Arch:
    """A uniformly random architecture of the (width, resolution) space."""
    depths = tuple(_depth(rng, stage) for stage in space.stages)
    kernels = tuple(_pick(rng, space.kernels) for _ in range(space.slots))
    expansions = tuple(_pick(rng, space.expansions) for _ in range(space.slots))
    return canonical(Arch(width, resolution, depths, kernels, expansions), space)


def mutate(arch: Arch, space: SearchSpace, rng: np.random.Generator,
           probability: float) -> Arch:
    """Each depth, kernel and expansion resampled with `probability`; width/resolution kept."""
    depths = tuple(_depth(rng, stage) if rng.random() < probability else depth
                   for depth, stage in zip(arch.depths, space.stages, strict=True))
    kernels = tuple(_pick(rng, space.kernels) if rng.random() < probability else kernel
                    for kernel in arch.kernels)
    expansions = tuple(_pick(rng, space.expansions) if rng.random() < probability else e
                       for e in arch.expansions)
    return canonical(replace(arch, depths=depths, kernels=kernels, expansions=expansions), space)


def crossover(a: Arch, b: Arch, rng: np.random.Generator, space: SearchSpace) -> Arch:
    """Each depth, kernel and expansion taken from `a` or `b` with equal chance.

    `space` gives the stage boundaries, to reset the child's unused slots (see `canonical`).
    """
    if (a.width, a.resolution) != (b.width, b.resolution):
        raise ValueError("crossover needs parents of the same width and resolution")
    depths = tuple(x if rng.random() < 0.5 else y for x, y in zip(a.depths, b.depths, strict=True))
    pairs = zip(a.kernels, b.kernels, a.expansions, b.expansions, strict=True)
    chosen = [(ka, ea) if rng.random() < 0.5 else (kb, eb) for ka, kb, ea, eb in pairs]
    child = replace(a, depths=depths, kernels=tuple(k for k, _ in chosen),
                    expansions=tuple(e for _, e in chosen))
    return canonical(child, space)


def largest(space: SearchSpace, width: float, resolution: int) -> Arch:
    """Every stage at its maximum depth, the largest kernel and expansion in every slot."""
    return Arch(width, resolution, tuple(stage.max_depth for stage in space.stages),
                (max(space.kernels),) * space.slots, (max(space.expansions),) * space.slots)


def held(arch: Arch, space: SearchSpace) -> bool:
    """True when `largest` of arch's width holds its layers, as a weight-shared supernet does.

    Each stage's depth at most its maximum, each slot it runs of a kernel and an expansion at
    most the space's largest (the supernet slices them from its own). A scaled MobileNetV2
    (kernels 3, expansion 6) is not held by a space of smaller choices.
    """
    kernel, expansion = max(space.kernels), max(space.expansions)
    return (all(depth <= stage.max_depth for depth, stage in
                zip(arch.depths, space.stages, strict=True))
            and all(arch.kernels[slot] <= kernel and arch.expansions[slot] <= expansion
                    for slot in used_slots(arch, space)))


def smallest(space: SearchSpace, width: float, resolution: int) -> Arch:
    """Every stage at its minimum depth, the smallest kernel and expansion in every slot."""
    return Arch(width, resolution, tuple(stage.min_depth for stage in space.stages),
                (min(space.kernels),) * space.slots, (min(space.expansions),) * space.slots)


def make_divisible(value: float) -> int:
    """A channel count rounded to a multiple of 8 (at least 8), as MobileNetV2 rounds."""
    return max(8, int(value + 4) // 8 * 8)


@dataclass(frozen=True)
class Block:
    """One inverted-residual block as built: channels, hidden width, kernel, stride, residual."""

    in_channels: int
    hidden: int
    out_channels: int
    kernel: int
    stride: int

    @property
    def residual(self) -> bool:
        """True when the block's input is added to its output."""
        return self.stride == 1 and self.in_channels == self.out_channels


def blocks(arch: Arch, space: SearchSpace) -> tuple[Block, ...]:
    """The blocks `arch` builds, in order, after the stem."""
    built, channels = [], make_divisible(space.stem_channels * arch.width)
    for stage, depth, slots in zip(space.stages, arch.depths, space.stage_slots(), strict=True):
        out_channels = make_divisible(stage.channels * arch.width)
        for index, slot in enumerate(slots[:depth]):
            stride = stage.stride if index == 0 else 1
            built.append(Block(channels, channels * arch.expansions[slot], out_channels,
                               arch.kernels[slot], stride))
            channels = out_channels
    return tuple(built)


def _shrink(size: tuple[int, int], stride: int, dims: int) -> tuple[int, int]:
    """(rows, columns) after a padded window (k // 2 each side, odd k) of `stride`.

    Series are one row: their stride applies to the columns only.
    """
    rows = -(-size[0] // stride) if dims == 2 else 1
    return rows, -(-size[1] // stride)


def _plane(space: SearchSpace, resolution: int) -> tuple[int, int]:
    """(rows, columns) of the input at `resolution`; a series is one row."""
    size = space.input_size(resolution)
    return (size[0], size[1]) if space.dims == 2 else (1, size[0])


@dataclass(frozen=True)
class Work:
    """What one sample costs an architecture: its MACs by kind, layer outputs and layers.

    `elements` counts the outputs of its convolutions (each one batch-normalised, most then
    activated), `layers` its convolutions and the classifier.
    """

    dense_macs: int
    depthwise_macs: int
    elements: int
    layers: int

    @property
    def macs(self) -> int:
        """Multiply-accumulates of every layer."""
        return self.dense_macs + self.depthwise_macs


def work(arch: Arch, space: SearchSpace, input_channels: int, classes: int) -> Work:
    """The Work of one sample: stem, blocks (expansion, depthwise, projection), head, classifier."""
    taps = (lambda k: k * k) if space.dims == 2 else (lambda k: k)
    size = _shrink(_plane(space, arch.resolution), space.stem_stride, space.dims)
    channels = make_divisible(space.stem_channels * arch.width)
    dense, depthwise = size[0] * size[1] * channels * taps(3) * input_channels, 0
    elements, layers = size[0] * size[1] * channels, 2
    for block in blocks(arch, space):
        if block.hidden != block.in_channels:
            dense += size[0] * size[1] * block.in_channels * block.hidden
            elements += size[0] * size[1] * block.hidden
            layers += 1
        size = _shrink(size, block.stride, space.dims)
        depthwise += size[0] * size[1] * block.hidden * taps(block.kernel)
        dense += size[0] * size[1] * block.hidden * block.out_channels
        elements += size[0] * size[1] * (block.hidden + block.out_channels)
        layers += 2
        channels = block.out_channels
    if space.head_channels > 0:
        head = make_divisible(space.head_channels * arch.width)
        dense += size[0] * size[1] * channels * head
        elements += size[0] * size[1] * head
        layers += 1
        channels = head
    return Work(dense + channels * classes, depthwise, elements, layers)


def macs(arch: Arch, space: SearchSpace, input_channels: int, classes: int) -> int:
    """Multiply-accumulates of the convolutions, depthwise convolutions and the classifier."""
    return work(arch, space, input_channels, classes).macs


def _paddings(size: int, kernel: int, stride: int) -> set[Padding]:
    """TFLite paddings that compute what torch's k // 2 pads do along one axis.

    The rule of mcuflow's ONNX import: an axis without pads matches VALID (and SAME where the
    latter pads nothing), padded axes match SAME where TFLite puts the same pads first.
    """
    pad = kernel // 2
    matching = {Padding.VALID} if pad == 0 else set()
    out = -(-size // stride)
    before = max((out - 1) * stride + kernel - size, 0) // 2
    if out == (size + 2 * pad - kernel) // stride + 1 and before == pad:
        matching.add(Padding.SAME)
    return matching


INPUT_QUANT = (1.0 / 255.0, -128)
"""The (scale, zero point) of arch_graph's input."""
BOUNDARY = (0.05, 0)
"""The (scale, zero point) of every part's output in arch_graph: a part's constants and
requantisation then depend on its own key alone (part_keys), however the parts before it ran."""


class _Net:
    """Builds the family's layers as mcuflow's PTQ imports a torch export of them.

    Series run as one-row images: each convolution reads a (1, 1, T, C) view and, where a
    residual ADD reads a tensor, the ADD works on the (1, T, C) form, as the importer emits.
    """

    def __init__(self, space: SearchSpace, name: str) -> None:
        self.space = space
        self.dims = space.dims
        self.b = GraphBuilder(name, 0)

    def part(self, x: str, key: PartKey, classes: int) -> str:
        """The part of `key` (part_keys) built on `x`, its values drawn from its own seed.

        A stem's or block's output is quantised as BOUNDARY; the head's is the logits.
        """
        self.b.rng = np.random.default_rng(part_seed(key))
        space, kind = self.space, key[0]
        if kind == "stem":
            return self.bound(self.conv(x, make_divisible(space.stem_channels * key[1]), 3,
                                        space.stem_stride, RELU6))
        if kind == "block":
            return self.bound(self.block(x, key[1]))
        if space.head_channels > 0:
            x = self.conv(x, make_divisible(space.head_channels * key[1]), 1, 1, RELU6)
        return self.classifier(x, classes)

    def shape(self, x: str) -> tuple[int, ...]:
        return self.b.graph.tensors[x].shape

    def image(self, x: str) -> str:
        """`x` as NHWC (series: a one-row image)."""
        shape = self.shape(x)
        return x if len(shape) == 4 else self.b.reshape(x, (shape[0], 1, shape[1], shape[2]))

    def series(self, x: str) -> str:
        """`x` in the form a residual ADD reads (series: N x T x C)."""
        shape = self.shape(x)
        if self.dims == 2 or len(shape) == 3:
            return x
        return self.b.reshape(x, (shape[0], shape[2], shape[3]))

    def window(self, x: str, kernel: int, stride: int) -> tuple[str, Padding, tuple[int, int]]:
        """The (padded) input, padding and (kh, kw) of a k x k (series: 1 x k) window."""
        x = self.image(x)
        _, rows, cols, _ = self.shape(x)
        kh, sh = (kernel, stride) if self.dims == 2 else (1, 1)
        matching = _paddings(rows, kh, sh) & _paddings(cols, kernel, stride)
        for padding in (Padding.VALID, Padding.SAME):
            if padding in matching:
                return x, padding, (kh, kernel)
        pads = ((0, 0), (kh // 2, kh // 2), (kernel // 2, kernel // 2), (0, 0))
        return self.b.pad(x, pads), Padding.VALID, (kh, kernel)

    def restride(self, y: str, stride: int) -> str:
        """Series strides run along the columns only (the builder strides both axes)."""
        op = self.b.graph.operators[-1]
        if self.dims == 1 and stride != 1:
            attrs = replace(op.attrs, stride_h=1, stride_w=stride)
            self.b.graph.operators[-1] = replace(op, attrs=attrs)
        return y

    def conv(self, x: str, channels: int, kernel: int, stride: int,
             activation: Activation) -> str:
        x, padding, taps = self.window(x, kernel, stride)
        y = self.b.conv2d(x, channels, taps, stride, padding=padding, activation=activation)
        return self.restride(y, stride)

    def depthwise(self, x: str, kernel: int, stride: int) -> str:
        x, padding, taps = self.window(x, kernel, stride)
        y = self.b.depthwise_conv2d(x, taps, stride, padding=padding, activation=RELU6)
        return self.restride(y, stride)

    def block(self, x: str, block: Block) -> str:
        if block.residual:
            x = self.series(x)
        y = x
        if block.hidden != block.in_channels:
            y = self.conv(y, block.hidden, 1, 1, RELU6)
        y = self.depthwise(y, block.kernel, block.stride)
        y = self.conv(y, block.out_channels, 1, 1, Activation.NONE)
        return self.b.add(x, self.series(y)) if block.residual else y

    def bound(self, x: str) -> str:
        """`x`, a part's output, with the quantisation every part's output has (BOUNDARY)."""
        self.b.graph.tensors[x] = replace(self.b.graph.tensors[x],
                                          quant=QuantParams.per_tensor(*BOUNDARY))
        return x

    def classifier(self, x: str, classes: int) -> str:
        pooled = self.b.mean(self.image(x), (1, 2), keep_dims=True)
        channels = self.shape(pooled)[3]
        flat = self.b.reshape(pooled, (1, channels))
        logits = self.b.fully_connected(flat, classes, per_channel=True)
        self.unflatten(flat, (1, channels, 1, 1) if self.dims == 2 else (1, channels, 1))
        return logits

    def unflatten(self, flat: str, shape: tuple[int, ...]) -> None:
        """The importer's classifier input: RESHAPE `flat` to `shape` (channels, then ones).

        The builder's FULLY_CONNECTED reads the last axis as the depth, so the layer is made
        on the (1, C) form and the RESHAPE's result takes the importer's shape afterwards.
        """
        index = next(i for i, op in enumerate(self.b.graph.operators) if flat in op.outputs)
        op = self.b.graph.operators[index]
        self.b.graph.operators[index] = replace(op, attrs=replace(op.attrs, new_shape=shape))
        self.b.graph.tensors[flat] = replace(self.b.graph.tensors[flat], shape=shape)


def stable_seed(seed: int, *parts: str) -> int:
    """A 32-bit seed from the search seed and `parts` (a SHA-256 of their text).

    Every machine, process and Ray worker derives the same stream (Python's hash() is salted).
    """
    digest = hashlib.sha256(":".join((str(seed), *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


PartKey = tuple[object, ...]
"""What decides the ops of one part of an architecture's graph and their tensors' shapes."""


def part_keys(arch: Arch, space: SearchSpace) -> tuple[PartKey, ...]:
    """The keys of the parts arch_graph builds, in order: the stem, each block, the head.

    A part's ops, their attributes and their tensors' shapes follow from its key alone (for
    the FitCheck's input channels and classes): the stem's from the width and input size; a
    block's from the Block, its input's (rows, columns) and whether a series arrives in the
    (1, T, C) form of a residual ADD; the head's (head layer and classifier) from the width,
    the last block's channels, its size and form. The last item counts the parts of that key
    before it. arch_graph draws each part's weights and scales from a generator seeded with
    its key (part_seed) and quantises its output as BOUNDARY, so a part's values are the same
    in every architecture that has it, and two equal parts of one differ.
    """
    size = _plane(space, arch.resolution)
    keys: list[tuple[object, ...]] = [("stem", float(arch.width), size)]
    size = _shrink(size, space.stem_stride, space.dims)
    channels, added = make_divisible(space.stem_channels * arch.width), False
    for block in blocks(arch, space):
        keys.append(("block", block, size, added))
        size = _shrink(size, block.stride, space.dims)
        channels, added = block.out_channels, space.dims == 1 and block.residual
    keys.append(("head", float(arch.width), channels, size, added))
    seen: Counter[tuple[object, ...]] = Counter()
    numbered = []
    for key in keys:
        numbered.append((*key, seen[key]))
        seen[key] += 1
    return tuple(numbered)


def part_seed(key: PartKey) -> int:
    """The seed of a part's weights and scales: stable_seed of its key's text."""
    return stable_seed(0, repr(key))


def arch_graph(arch: Arch, space: SearchSpace, input_channels: int, classes: int) -> Graph:
    """The int8 graph of `arch` as mcuflow's PTQ builds it from the torch subnet's ONNX.

    Batch norms are folded and ReLU6 fused; weights are random per-channel int8 (the fit
    check needs shapes, not values), each part's drawn from its own seed (part_keys).
    Images enter as (1, R, columns, C), series as (1, T, C).
    """
    net = _Net(space, f"nas_{arch.key()}")
    x = net.b.input((1, *space.input_size(arch.resolution), input_channels), *INPUT_QUANT)
    for key in part_keys(arch, space):
        x = net.part(x, key, classes)
    return net.b.output(x).build()


def part_graph(key: PartKey, space: SearchSpace, input_channels: int, classes: int) -> Graph:
    """The part of `key` alone, as arch_graph builds it: its input is the graph's input.

    That input has the shape and quantisation the part reads in arch_graph: the model's input
    for the stem; else the BOUNDARY-quantised output of the part before, its channels and size
    in the key (a series in the (1, T, C) form after a residual ADD).
    """
    kind, size = key[0], key[2] if key[0] != "head" else key[3]
    if kind == "stem":
        series = space.dims == 1
        shape, quant = (1, *size[series:], input_channels), INPUT_QUANT
    else:
        channels = key[1].in_channels if kind == "block" else key[2]
        series = key[3] if kind == "block" else key[4]
        shape, quant = (1, *size[series:], channels), BOUNDARY
    net = _Net(space, f"nas_{kind}")
    return net.b.output(net.part(net.b.input(shape, *quant), key, classes)).build()
