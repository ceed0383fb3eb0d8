"""DEPTH_TO_SPACE and SPACE_TO_DEPTH reference kernels (int8, float32): a permutation of values."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import BlockAttrs, OpKind, depth_to_space_phases
from mcuflow.ref.common import require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


def depth_to_space(x: np.ndarray, block: int) -> np.ndarray:
    """[N, H, W, C] to [N, H*b, W*b, C/b²], as LiteRT's DepthToSpace.

    Output (h*b + i, w*b + j, c) is input (h, w, (i*b + j) * C/b² + c).
    """
    n, h, w, c = x.shape
    depth = c // (block * block)
    blocks = x.reshape(n, h, w, block, block, depth).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(blocks.reshape(n, h * block, w * block, depth))


def depth_to_space_window(x: np.ndarray, attrs: BlockAttrs) -> np.ndarray:
    """depth_to_space of a window of the whole input, cut to the crop's output window.

    The window starts depth_to_space_phases rows and columns into the first input row's blocks.
    """
    out = depth_to_space(x, attrs.block_size)
    top, left = depth_to_space_phases(attrs)
    height, width = attrs.crop.out_size
    return np.ascontiguousarray(out[:, top:top + height, left:left + width])


def space_to_depth(x: np.ndarray, block: int) -> np.ndarray:
    """[N, H, W, C] to [N, H/b, W/b, C*b²]: the inverse of depth_to_space."""
    n, h, w, c = x.shape
    blocks = x.reshape(n, h // block, block, w // block, block, c).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(blocks.reshape(n, h // block, w // block, c * block * block))


_KERNELS = {OpKind.DEPTH_TO_SPACE: depth_to_space, OpKind.SPACE_TO_DEPTH: space_to_depth}


@prepared_kernel(OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH)
def _prepare(graph: Graph, op: Operator) -> PreparedFn:
    """depth_to_space.h / space_to_depth.h: moves the stored int8 values.

    Input and output share one quantisation (the same_quantisation constraint).
    """
    require_int8(op, graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0]))
    kernel, block = _KERNELS[op.kind], op.attrs.block_size
    if op.attrs.crop is not None:
        return lambda inputs: [depth_to_space_window(inputs[0], op.attrs)]
    return lambda inputs: [kernel(inputs[0], block)]


@float_kernel(OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH)
def _float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    if op.attrs.crop is not None:
        return [depth_to_space_window(inputs[0], op.attrs).astype(np.float32)]
    return [_KERNELS[op.kind](inputs[0], op.attrs.block_size).astype(np.float32)]
