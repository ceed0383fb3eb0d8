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
    """Convs between TRANSPOSE_CONVs: 3x3 stride 2 SAME, 2x2 stride 2 VALID, 5x5 SAME ReLU.

    Every op up to the last conv runs in a patch stage.
    """
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
    """Convs between resizes in every coordinate mode, up and down.

    RESIZE_BILINEAR with half-pixel centres (up), aligned corners (down) and neither, then
    RESIZE_NEAREST_NEIGHBOR with half-pixel centres, aligned corners and neither.
    """
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
    x = nearest(x, (size - 2, size + 3), False, False)
    x = b.conv2d(x, 12, (3, 3), stride=2)
    return _head(b, x, 12)


def block_stage(size: int = 24) -> Graph:
    """SPACE_TO_DEPTH (block 2), then convs around DEPTH_TO_SPACE of blocks 2 and 3."""
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
