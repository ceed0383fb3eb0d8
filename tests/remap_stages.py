"""Graphs whose first stage runs TRANSPOSE_CONV, the resizes and the block ops between convs."""

from __future__ import annotations

from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import BlockAttrs, OpKind, ResizeBilinearAttrs, ResizeNearestNeighborAttrs


def _head(b: GraphBuilder, x: str, channels: int) -> Graph:
    """Global mean and a classifier: the ops no patch stage runs."""
    return b.output(b.fully_connected(b.reshape(b.mean(x, (1, 2)), (1, channels)), 4)).build()


def transpose_conv_stage(size: int = 24) -> Graph:
    """conv -> TRANSPOSE_CONV (3x3 stride 2 SAME) -> conv -> TRANSPOSE_CONV (2x2 stride 2 VALID,
    and 5x5 stride 2 SAME with a ReLU) -> conv."""
    b = GraphBuilder("transpose_conv_stage", seed=11)
    x = b.conv2d(b.input((1, size, size, 3), 0.04, 3), 8, (3, 3), stride=2)
    x = b.transpose_conv(x, 6, (3, 3), stride=2)
    x = b.conv2d(x, 8, (3, 3), stride=2, activation=Activation.RELU)
    x = b.transpose_conv(x, 4, (2, 2), stride=2, padding=Padding.VALID)
    x = b.conv2d(x, 8, (3, 3), stride=2)
    x = b.transpose_conv(x, 6, (5, 5), stride=2, activation=Activation.RELU)
    x = b.conv2d(x, 12, (3, 3), stride=2)
    return _head(b, x, 12)


def resize_stage(size: int = 24) -> Graph:
    """conv -> RESIZE_BILINEAR (half-pixel centres, up) -> conv -> RESIZE_BILINEAR (aligned
    corners, down) -> conv -> RESIZE_BILINEAR (neither) -> RESIZE_NEAREST_NEIGHBOR (half-pixel,
    then aligned corners) -> conv."""
    b = GraphBuilder("resize_stage", seed=12)

    def bilinear(source: str, hw: tuple[int, int], align: bool, half: bool) -> str:
        return b.op(OpKind.RESIZE_BILINEAR, [source], ResizeBilinearAttrs(hw, align, half),
                    b.quant(source))

    def nearest(source: str, hw: tuple[int, int], align: bool, half: bool) -> str:
        return b.op(OpKind.RESIZE_NEAREST_NEIGHBOR, [source],
                    ResizeNearestNeighborAttrs(hw, align, half), b.quant(source))

    x = b.conv2d(b.input((1, size, size, 3), 0.04, -5), 8, (3, 3), stride=2)
    x = bilinear(x, (size * 3 // 2 - 1, size * 3 // 2 + 1), False, True)
    x = b.conv2d(x, 8, (3, 3))
    x = bilinear(x, (size // 2 + 1, size // 2 - 1), True, False)
    x = b.conv2d(x, 8, (3, 3), activation=Activation.RELU)
    x = bilinear(x, (size - 3, size), False, False)
    x = nearest(x, (size // 2 + 3, size // 2 - 2), False, True)
    x = nearest(x, (size, size + 5), True, False)
    x = b.conv2d(x, 12, (3, 3), stride=2)
    return _head(b, x, 12)


def block_stage(size: int = 24) -> Graph:
    """SPACE_TO_DEPTH (block 2) -> conv -> DEPTH_TO_SPACE (block 2) -> conv -> DEPTH_TO_SPACE
    (block 3) -> conv."""
    b = GraphBuilder("block_stage", seed=13)

    def block(kind: OpKind, source: str, blocks: int) -> str:
        return b.op(kind, [source], BlockAttrs(blocks), b.quant(source))

    x = block(OpKind.SPACE_TO_DEPTH, b.input((1, size, size, 3), 0.04, 7), 2)
    x = b.conv2d(x, 16, (3, 3))
    x = block(OpKind.DEPTH_TO_SPACE, x, 2)
    x = b.conv2d(x, 18, (3, 3), stride=2, activation=Activation.RELU)
    x = block(OpKind.DEPTH_TO_SPACE, x, 3)
    x = b.conv2d(x, 12, (3, 3), stride=2)
    return _head(b, x, 12)
