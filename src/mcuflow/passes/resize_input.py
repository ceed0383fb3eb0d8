"""The graph at another input resolution: shapes re-derived op by op, global pools resized."""

from __future__ import annotations

import dataclasses

from mcuflow.errors import McuflowError
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, Pool2DAttrs, infer_output_shapes
from mcuflow.ir.verify import verify_graph

POOLS = (OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D)
FIXED_SIZE = (OpKind.RESHAPE, OpKind.SLICE)
"""Ops whose attributes hold sizes of the original resolution."""


class ResizeError(McuflowError):
    """The graph cannot run at another input resolution (or not at the one asked)."""


def image_size(graph: Graph) -> tuple[int, int]:
    """(height, width) of the graph's one NHWC image input; ResizeError for other inputs."""
    shapes = [graph.tensors[name].shape for name in graph.inputs]
    if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][1] < 2 or shapes[0][2] < 2:
        raise ResizeError(f"'{graph.name}' does not read one NHWC image (inputs {shapes})",
                          "only a model of one image input runs at another resolution")
    return shapes[0][1], shapes[0][2]


def resize_input(graph: Graph, height: int, width: int) -> Graph:
    """A copy of `graph` reading a `height` x `width` image, its shapes re-derived op by op.

    Weights are kept: every op's output shape follows from the ops' shape rules. A pooling
    window covering its whole input (global pooling) grows or shrinks with it, and so does the
    size of a RESIZE_NEAREST_NEIGHBOR or RESIZE_BILINEAR by whole factors (refused by others);
    MEAN, SQUEEZE and element-wise broadcasts follow by themselves. Refused, all at once: a
    RESHAPE or SLICE whose input changes (its sizes belong to the old resolution), a
    FULLY_CONNECTED flattening a changed input (the classifier's depth would change), and any
    op whose inputs no longer fit together at this size (ResizeError).
    """
    image_size(graph)
    if height < 1 or width < 1:
        raise ResizeError(f"input resolution {height}x{width} is empty",
                          "pass a positive height and width")
    resized = graph.copy()
    name = resized.inputs[0]
    batch, _, _, channels = resized.tensors[name].shape
    resized.tensors[name].shape = (batch, height, width, channels)
    problems = [p for op in resized.operators if (p := _rederive(graph, resized, op))]
    if problems:
        raise ResizeError(f"'{graph.name}' cannot run at {height}x{width}: "
                          + "; ".join(problems),
                          "the model must be fully convolutional up to a global pooling or "
                          "MEAN (a RESHAPE to [1, C] after it is fine)")
    verify_graph(resized)
    return resized


def _rederive(original: Graph, resized: Graph, op: Operator) -> str | None:
    """Set the new shapes of `op`'s outputs in `resized`; what refuses it, else None."""
    changed = any(resized.tensors[n].shape != original.tensors[n].shape for n in op.inputs)
    label = f"{op.kind.value} '{op.name}'"
    if changed and op.kind in FIXED_SIZE:
        return f"{label} holds sizes of the original resolution"
    if changed and op.kind is OpKind.FULLY_CONNECTED and not op.attrs.keep_num_dims:
        return f"{label} flattens a spatial tensor"
    if changed and op.kind is OpKind.RESIZE_NEAREST_NEIGHBOR and (
            problem := _scaled_resize(original, resized, op)):
        return problem
    if changed and op.kind is OpKind.RESIZE_BILINEAR and (
            problem := _scaled_resize(original, resized, op)):
        return problem
    if op.kind in POOLS and _is_global(original, op):
        _, in_h, in_w, _ = resized.tensors[op.inputs[0]].shape
        op.attrs = dataclasses.replace(op.attrs, filter_h=in_h, filter_w=in_w)
    try:
        shapes = infer_output_shapes(resized, op)
    except McuflowError as error:
        return error.message
    if any(d < 1 for shape in shapes for d in shape):
        return f"{label} has no output left ({shapes[0]})"
    for output, shape in zip(op.outputs, shapes, strict=True):
        resized.tensors[output].shape = tuple(shape)
    return None


def _is_global(graph: Graph, op: Operator) -> bool:
    """A pool whose one window covers its whole input."""
    attrs: Pool2DAttrs = op.attrs
    _, height, width, _ = graph.tensors[op.inputs[0]].shape
    _, out_h, out_w, _ = graph.tensors[op.outputs[0]].shape
    return (attrs.filter_h, attrs.filter_w, out_h, out_w) == (height, width, 1, 1)


def _scaled_resize(original: Graph, resized: Graph, op: Operator) -> str | None:
    """A resize by a whole factor keeps it at the new size; else the refusal."""
    _, in_h, in_w, _ = original.tensors[op.inputs[0]].shape
    _, new_h, new_w, _ = resized.tensors[op.inputs[0]].shape
    size = op.attrs.size
    if size[0] % in_h or size[1] % in_w:
        return (f"{op.kind.value} '{op.name}' resizes {in_h}x{in_w} to "
                f"{size[0]}x{size[1]}, not by a whole factor")
    op.attrs = dataclasses.replace(op.attrs, size=(new_h * (size[0] // in_h),
                                                   new_w * (size[1] // in_w)))
    return None
