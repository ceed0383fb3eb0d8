"""Small int8 graphs in the style of well-known microcontroller networks (tests, bench, demo)."""

from __future__ import annotations

from collections.abc import Callable

from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import Graph

RELU = Activation.RELU

MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 2), (6, 96, 2, 1))
"""(expansion, output channels, repeats, first stride) per stage, before the width multiplier."""

MOBILENET_V3_BLOCKS = (
    (3, 3, 16, True, 2), (3, 4, 24, False, 2), (3, 3, 24, False, 1),
    (5, 4, 40, True, 2), (5, 6, 40, True, 1), (3, 6, 48, True, 1),
)
"""(kernel, expansion, output channels, squeeze-excite, stride) per block."""


def _channels(value: float) -> int:
    """Round a channel count to a multiple of 8 (at least 8), as MobileNets do."""
    return max(8, int(value + 4) // 8 * 8)


def _classifier(b: GraphBuilder, x: str, classes: int) -> str:
    pooled = b.mean(x, (1, 2), keep_dims=True)
    flat = b.reshape(pooled, (1, -1))
    return b.softmax(b.fully_connected(flat, classes))


def _inverted_residuals(b: GraphBuilder, x: str, blocks: tuple[tuple[int, int, int, int], ...],
                        channels_of: Callable[[float], int], activation: Activation) -> str:
    """MobileNetV2's stages of inverted residual blocks, from `x`.

    Per (expansion, channels, repeats, first stride) of `blocks`: 1x1 expand, 3x3 depthwise,
    1x1 project, and an ADD where the shapes allow.
    """
    for expansion, channels, repeats, first_stride in blocks:
        out_c = channels_of(channels)
        for index in range(repeats):
            stride = first_stride if index == 0 else 1
            in_c = b.graph.tensors[x].shape[3]
            y = (b.conv2d(x, in_c * expansion, (1, 1), activation=activation) if expansion > 1
                 else x)
            y = b.conv2d(b.depthwise_conv2d(y, stride=stride, activation=activation), out_c,
                         (1, 1))
            x = b.add(x, y) if stride == 1 and in_c == out_c else y
    return x


def mobilenet_v2_like(size: int = 64, width: float = 0.35, classes: int = 10,
                      seed: int = 0) -> Graph:
    """MobileNetV2: inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 project, ADD)."""
    b = GraphBuilder("mobilenet_v2_like", seed)
    x = b.conv2d(b.input((1, size, size, 3), 0.02, 0), _channels(32 * width), stride=2,
                 activation=RELU)
    x = _inverted_residuals(b, x, MOBILENET_V2_BLOCKS, lambda c: _channels(c * width), RELU)
    x = b.conv2d(x, _channels(1280 * width / 4), (1, 1), activation=RELU)
    return b.output(_classifier(b, x, classes)).build()


MOBILENET_V2_IMAGENET_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
"""MobileNetV2's (expansion, output channels, repeats, first stride) per stage (Sandler et al.,
Table 2)."""


_INT8_SPAN = 128 / 73
"""Accumulator sigmas that keep a layer's scale at its input's (GraphBuilder): over MobileNetV2's
52 layers the default 3 would grow the scales 1.7x per layer."""


def _make_divisible(value: float) -> int:
    """Keras' rounding of MobileNetV2 channel counts: a multiple of 8, never below 90 %."""
    rounded = max(8, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


def mobilenet_v2(size: int = 224, width: float = 1.0, classes: int = 1000, seed: int = 0
                 ) -> Graph:
    """MobileNetV2 as Keras builds it (ImageNet head: 1,280-channel last conv, 1000 classes).

    Random int8 weights; MobileNetV2-0.35-128 has 1.66 M parameters, MobileNetV2-1.0-224 3.5 M.
    """
    b = GraphBuilder(f"mobilenet_v2_{width:g}_{size}", seed, accumulator_sigmas=_INT8_SPAN)
    relu6 = Activation.RELU6
    x = b.conv2d(b.input((1, size, size, 3), 0.02, 0), _make_divisible(32 * width), stride=2,
                 activation=relu6)
    x = _inverted_residuals(b, x, MOBILENET_V2_IMAGENET_BLOCKS,
                            lambda c: _make_divisible(c * width), relu6)
    x = b.conv2d(x, _make_divisible(1280 * max(width, 1.0)), (1, 1), activation=relu6)
    return b.output(_classifier(b, x, classes)).build()


def _squeeze_excite(b: GraphBuilder, x: str) -> str:
    """MEAN -> FC -> RELU -> FC -> LOGISTIC -> MUL (broadcast over H and W)."""
    channels = b.graph.tensors[x].shape[3]
    pooled = b.mean(x, (1, 2), keep_dims=True)
    squeezed = b.fully_connected(pooled, _channels(channels / 4), RELU, keep_num_dims=True)
    gate = b.logistic(b.fully_connected(squeezed, channels, keep_num_dims=True))
    return b.mul(x, gate)


def mobilenet_v3_like(size: int = 64, classes: int = 10, seed: int = 0) -> Graph:
    """MobileNetV3-small style: hard-swish, squeeze-excite blocks, residual ADDs."""
    b = GraphBuilder("mobilenet_v3_like", seed)
    x = b.hard_swish(b.conv2d(b.input((1, size, size, 3), 0.02, 0), 16, stride=2))
    for kernel, expansion, out_c, excite, stride in MOBILENET_V3_BLOCKS:
        in_c = b.graph.tensors[x].shape[3]
        y = b.hard_swish(b.conv2d(x, in_c * expansion, (1, 1)))
        y = b.hard_swish(b.depthwise_conv2d(y, (kernel, kernel), stride=stride))
        if excite:
            y = _squeeze_excite(b, y)
        y = b.conv2d(y, out_c, (1, 1))
        x = b.add(x, y) if stride == 1 and in_c == out_c else y
    x = b.hard_swish(b.conv2d(x, 96, (1, 1)))
    return b.output(_classifier(b, x, classes)).build()


def _fire(b: GraphBuilder, x: str, squeeze: int, expand: int) -> str:
    """SqueezeNet fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated on channels."""
    s = b.conv2d(x, squeeze, (1, 1), activation=RELU)
    wide = b.conv2d(s, expand, (3, 3), activation=RELU)
    narrow = b.conv2d(s, expand, (1, 1), activation=RELU)
    b.graph.tensors[narrow].quant = b.quant(wide)  # int8 CONCATENATION needs one scale
    return b.concatenation([narrow, wide], axis=3)


def squeezenet_like(size: int = 64, classes: int = 10, seed: int = 0) -> Graph:
    """SqueezeNet 1.1 style: fire modules with CONCATENATION, max pools, conv classifier."""
    b = GraphBuilder("squeezenet_like", seed)
    x = b.conv2d(b.input((1, size, size, 3), 0.02, 0), 32, stride=2, activation=RELU)
    x = b.max_pool2d(x, 3, 2, Padding.SAME)
    for squeeze, expand, pool in ((8, 32, False), (8, 32, True), (16, 48, False),
                                  (16, 48, True), (24, 64, False)):
        x = _fire(b, x, squeeze, expand)
        if pool:
            x = b.max_pool2d(x, 3, 2, Padding.SAME)
    x = b.conv2d(x, classes, (1, 1), activation=RELU)
    flat = b.reshape(b.mean(x, (1, 2), keep_dims=True), (1, classes))
    return b.output(b.softmax(flat)).build()


def resnet_like(size: int = 32, stages: tuple[int, ...] = (16, 32, 64), classes: int = 10,
                seed: int = 0) -> Graph:
    """ResNet-8 style (MLPerf Tiny image classification): basic blocks with ADD shortcuts."""
    b = GraphBuilder("resnet_like", seed)
    x = b.conv2d(b.input((1, size, size, 3), 0.02, 0), stages[0], activation=RELU)
    for index, channels in enumerate(stages):
        stride = 1 if index == 0 else 2
        y = b.conv2d(x, channels, stride=stride, activation=RELU)
        y = b.conv2d(y, channels)
        shortcut = x if stride == 1 else b.conv2d(x, channels, (1, 1), stride=stride)
        x = b.relu(b.add(shortcut, y))
    return b.output(_classifier(b, x, classes)).build()


def _same_spatial(b: GraphBuilder, names: list[str], like: str) -> list[str]:
    shape = b.graph.tensors[like].shape
    return [n for n in names if b.graph.tensors[n].shape[:3] == shape[:3] and n != like]


def _scale_and_zero(b: GraphBuilder, x: str) -> tuple[float, int]:
    quant = b.quant(x)
    return quant.scale0, quant.zero_point0


def random_dag(seed: int, ops: int = 6, size: int = 4) -> Graph:
    """A random branching int8 graph of `ops` operators; unread tensors are graph outputs.

    Ops: 1x1 and 3x3 convolutions, depthwise, ADD, CONCATENATION, squeeze-excite MUL, RELU,
    RESHAPE, max pool.
    """
    b = GraphBuilder(f"random_dag_{seed}", seed)
    rng = b.rng
    tensors = [b.input((1, size, size, int(rng.choice([4, 8]))))]
    while len(b.graph.operators) < ops:
        x = tensors[int(rng.integers(len(tensors)))]
        shape = b.graph.tensors[x].shape
        choice = int(rng.integers(9))
        if choice == 0:
            y = b.conv2d(x, int(rng.choice([4, 8, 16])), (1, 1))
        elif choice == 1:
            y = b.conv2d(x, int(rng.choice([4, 8])), (3, 3), activation=RELU)
        elif choice == 2:
            y = b.depthwise_conv2d(x, stride=int(rng.choice([1, 1, 2])))
        elif choice == 3 and (same := [n for n in tensors if n != x
                                       and b.graph.tensors[n].shape == shape]):
            y = b.add(x, same[int(rng.integers(len(same)))])
        elif choice == 4 and (near := _same_spatial(b, tensors, x)) and shape[0] == 1:
            other = near[int(rng.integers(len(near)))]
            y = b.concatenation([x, b.quantize(other, *_scale_and_zero(b, x))], axis=3)
        elif choice == 5 and len(shape) == 4 and shape[1] > 1:
            gate = b.logistic(b.mean(x, (1, 2), keep_dims=True))
            y = b.mul(x, gate)
        elif choice == 6:
            y = b.relu(x)
        elif choice == 7 and shape[1] > 1:
            y = b.max_pool2d(x, 2, 2)
        else:
            y = b.reshape(x, (shape[0], shape[2], shape[1], shape[3]))
        tensors.append(y)
    read = {name for op in b.graph.operators for name in op.inputs}
    return b.output(*[n for n in tensors if n not in read]).build()


def fc_autoencoder(features: int = 128, hidden: tuple[int, ...] = (64, 16, 64),
                   seed: int = 0) -> Graph:
    """MLPerf Tiny anomaly-detection style: FULLY_CONNECTED layers with per-channel weights."""
    b = GraphBuilder("fc_autoencoder", seed)
    x = b.input((1, features), 0.05, 0)
    for units in hidden:
        x = b.fully_connected(x, units, RELU, per_channel=True)
    return b.output(b.fully_connected(x, features, per_channel=True)).build()


def tiny_classifier(features: int = 16, classes: int = 4, seed: int = 0) -> Graph:
    """One small FULLY_CONNECTED and a SOFTMAX: a firmware that is mostly code."""
    b = GraphBuilder("tiny_classifier", seed)
    return b.output(b.softmax(b.fully_connected(b.input((1, features), 0.05, 0),
                                                classes))).build()

