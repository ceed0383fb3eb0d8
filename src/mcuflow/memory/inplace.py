"""Which ops may run in place, and how far below its input an output must start to be safe."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mcuflow.hw.kernels import dsp_depthwise_plane, int16_step, kernels_of, piece_copies
from mcuflow.ir.enums import Activation, AxisPadding, along
from mcuflow.ir.graph import Graph, Operator, TensorUses
from mcuflow.ir.ops import ConcatenationAttrs, OpKind, box_of
from mcuflow.ir.shapes import conv_padding
from mcuflow.memory.plan import InPlace, kinds_running
from mcuflow.memory.scratch import scratch_bytes

ALIAS_KINDS = kinds_running(InPlace.ALIAS)
PIECE_VIEW_KINDS = frozenset({OpKind.SPLIT, OpKind.SPLIT_V, OpKind.UNPACK})
"""Multi-output kinds whose outputs are views of their input when the pieces are contiguous."""
_WHOLE_ALIAS_KINDS = ALIAS_KINDS - {OpKind.SLICE, OpKind.STRIDED_SLICE} - PIECE_VIEW_KINDS
"""Kinds whose output is always the whole input (a SLICE is a view only of a contiguous part)."""
ELEMENTWISE_KINDS = kinds_running(InPlace.ELEMENTWISE)
STREAMING_KINDS = kinds_running(InPlace.OVERLAP)
ALL_KINDS = frozenset(InPlace) - {InPlace.NONE}


@dataclass(frozen=True)
class Rule:
    """Where an in-place output may start relative to the input it overwrites.

    When they share bytes the output starts at least `delta` bytes below the input or, with a
    `modulus`, a whole number of `modulus` bytes away in either direction.
    """

    delta: int = 0
    modulus: int = 0

    def allows(self, gap: int) -> bool:
        """True for `gap` = input offset - output offset."""
        return gap % self.modulus == 0 if self.modulus else gap >= self.delta


@dataclass(frozen=True)
class Option:
    """One way to run an op with its output sharing the memory of input `shares`.

    `footprint` is the bytes input and output occupy together during the step at the closest
    placement the rule allows, `scratch` the kernel's scratch bytes when run this way.
    """

    kind: InPlace
    shares: str
    rule: Rule
    footprint: int
    scratch: int


def _is_activation(graph: Graph, name: str) -> bool:
    return not graph.tensors[name].is_constant


STRIDED_WRITERS = frozenset({OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.AVERAGE_POOL_2D,
                             OpKind.MAX_POOL_2D})
"""Kinds whose kernels write NHWC output pixels any number of elements apart (the window
kernels' output pixel step): they may write a channel slice of a concatenation in place."""


@dataclass(frozen=True)
class Slot:
    """Where a concatenation input lives in the output.

    `offset` is its first byte; `pixel_step` the elements between its neighbouring pixels
    when it is a channel slice, 0 when it is one contiguous block.
    """

    offset: int
    pixel_step: int = 0


def _contiguous_slices(graph: Graph, op: Operator) -> bool:
    """True when every input of a CONCATENATION is one contiguous block of the output."""
    attrs: ConcatenationAttrs = op.attrs
    shape = graph.tensors[op.outputs[0]].shape
    return int(np.prod(shape[: attrs.axis], dtype=np.int64)) == 1


def _channel_slices(graph: Graph, op: Operator) -> bool:
    """True for a CONCATENATION of NHWC tensors along their channels."""
    shape = graph.tensors[op.outputs[0]].shape
    return len(shape) == 4 and op.attrs.axis in (3, -1)


def concat_slots(graph: Graph, op: Operator) -> list[Slot]:
    """Where each input of a CONCATENATION lies in its output, inputs in order."""
    itemsize = graph.tensors[op.outputs[0]].dtype.itemsize
    if _contiguous_slices(graph, op):
        sizes = [graph.tensors[name].nbytes for name in op.inputs]
        return [Slot(sum(sizes[:k])) for k in range(len(sizes))]
    channels = [graph.tensors[name].shape[3] for name in op.inputs]
    step = graph.tensors[op.outputs[0]].shape[3]
    return [Slot(sum(channels[:k]) * itemsize, step) for k in range(len(channels))]


def _sliceable(graph: Graph, index: int, name: str, producer_kinds: dict[str, OpKind],
               uses: TensorUses) -> bool:
    """A concatenation input its producer can write straight into the output (op `index`)."""
    kind = producer_kinds.get(name)
    op = graph.operators[index]
    writer = (kind is not None and kind not in _WHOLE_ALIAS_KINDS
              and kind is not OpKind.CONCATENATION
              and (_contiguous_slices(graph, op) or kind in STRIDED_WRITERS))
    return (writer and op.inputs.count(name) == 1 and uses.consumers.get(name) == [index]
            and name not in graph.outputs
            and graph.tensors[name].dtype == graph.tensors[op.outputs[0]].dtype)


def shared_parents(graph: Graph, kinds: frozenset[InPlace] = ALL_KINDS,
                   streamed: frozenset[str] = frozenset()) -> dict[str, tuple[str, int]]:
    """Tensors that live inside another one by construction: tensor -> (container, byte offset).

    RESHAPE/SQUEEZE outputs live in their input (ALIAS); the inputs of a CONCATENATION live in
    its output (CONCAT_SLICE) when their producers can write there: contiguous slices, or
    channel slices written by STRIDED_WRITERS (see concat_slots and strided_members); a SLICE
    of contiguous bytes that is not such an input is a view of its input (ALIAS), unless the
    input is `streamed` (not in memory).
    """
    parent: dict[str, tuple[str, int]] = {}
    producer_kinds = {out: op.kind for op in graph.operators for out in op.outputs}
    uses = graph.uses()
    for index, op in enumerate(graph.operators):
        alias = op.kind in _WHOLE_ALIAS_KINDS and _is_activation(graph, op.inputs[0])
        if InPlace.ALIAS in kinds and alias:
            parent[op.outputs[0]] = (op.inputs[0], 0)
        elif InPlace.CONCAT_SLICE in kinds and concat_is_sliced(graph, index, producer_kinds,
                                                                 uses):
            for name, slot in zip(op.inputs, concat_slots(graph, op), strict=True):
                parent[name] = (op.outputs[0], slot.offset)
    if InPlace.ALIAS in kinds:
        for op in graph.operators:
            view = slice_view(graph, op) if op.kind in ALIAS_KINDS - _WHOLE_ALIAS_KINDS else None
            if view is not None and op.outputs[0] not in parent and op.inputs[0] not in streamed:
                parent[op.outputs[0]] = (op.inputs[0], view)
        for op in graph.operators:
            views = piece_views(graph, op)
            if views and op.inputs[0] not in streamed and not parent.keys() & set(op.outputs):
                parent.update({name: (op.inputs[0], at) for name, at in zip(op.outputs, views,
                                                                             strict=True)})
    return parent


def piece_views(graph: Graph, op: Operator) -> list[int] | None:
    """Byte offsets of a SPLIT's, SPLIT_V's or UNPACK's outputs in its input, or None.

    None unless every piece is contiguous: every axis before the split axis has size 1.
    """
    source = graph.tensors[op.inputs[0]]
    if op.kind not in PIECE_VIEW_KINDS or source.is_constant or math.prod(
            source.shape[:op.attrs.axis]) != 1:
        return None
    return [copy.in_offset for copy in piece_copies(graph, op)]


def alias_offset(graph: Graph, op: Operator) -> int:
    """Where an ALIAS step's output starts in its input (bytes).

    A contiguous SLICE's offset; 0 for RESHAPE and SQUEEZE.
    """
    view = slice_view(graph, op) if op.kind in (OpKind.SLICE, OpKind.STRIDED_SLICE) else 0
    if view is None:
        raise ValueError(f"{op.kind.value} '{op.name}' is not contiguous and cannot be an alias")
    return view


def slice_view(graph: Graph, op: Operator) -> int | None:
    """Byte offset of a SLICE's output in its input when the slice is contiguous, else None.

    Contiguous: every axis before some axis keeps one element and every axis after it is whole.
    A STRIDED_SLICE is a view when it is such a plain slice (ir.ops.box_of).
    """
    source = graph.tensors[op.inputs[0]]
    attrs = box_of(graph, op)
    if source.is_constant or attrs is None:
        return None
    shape, begin, size = source.shape, attrs.begin, attrs.size
    split = next((a for a in range(len(shape)) if size[a] != 1), len(shape))
    if any(size[a] != shape[a] for a in range(split + 1, len(shape))):
        return None
    strides = [int(np.prod(shape[a + 1:], dtype=np.int64)) for a in range(len(shape))]
    return sum(b * stride for b, stride in zip(begin, strides, strict=True)) * (
        source.dtype.itemsize)


def concat_is_sliced(graph: Graph, index: int, producer_kinds: dict[str, OpKind],
                     uses: TensorUses) -> bool:
    """True when CONCATENATION op `index` can run as CONCAT_SLICE.

    No code runs: its producers write the slices. `uses` is graph.uses().
    """
    op = graph.operators[index]
    return (op.kind is OpKind.CONCATENATION
            and (_contiguous_slices(graph, op) or _channel_slices(graph, op))
            and op.attrs.activation is Activation.NONE
            and all(_sliceable(graph, index, name, producer_kinds, uses) for name in op.inputs)
            and _same_quantisation(graph, op))


def _same_quantisation(graph: Graph, op: Operator) -> bool:
    out = graph.tensors[op.outputs[0]].quant
    return all(graph.tensors[name].quant == out for name in op.inputs)


def strided_members(graph: Graph, statics: list[InPlace]) -> dict[str, int]:
    """The channel slices of concatenations planned in place, with their pixel steps.

    `statics` holds static_kind of every op; a pixel step counts the elements between
    neighbouring pixels.
    """
    found = {}
    for op, kind in zip(graph.operators, statics, strict=True):
        if kind is InPlace.CONCAT_SLICE and not _contiguous_slices(graph, op):
            found |= {name: slot.pixel_step
                      for name, slot in zip(op.inputs, concat_slots(graph, op), strict=True)}
    return found


def static_kind(graph: Graph, op: Operator, parent: dict[str, tuple[str, int]]) -> InPlace:
    """ALIAS or CONCAT_SLICE when the op runs no code under `parent`, else NONE."""
    if parent.get(op.outputs[0], ("",))[0] == op.inputs[0] and op.kind in ALIAS_KINDS:
        return InPlace.ALIAS
    container = parent.get(op.inputs[0]) if op.inputs else None
    if op.kind is OpKind.CONCATENATION and container and container[0] == op.outputs[0]:
        return InPlace.CONCAT_SLICE
    return InPlace.NONE


def _elementwise_delta(graph: Graph, op: Operator, shares: str) -> int | None:
    x, y = graph.tensors[shares], graph.tensors[op.outputs[0]]
    if x.shape != y.shape or y.dtype.itemsize > x.dtype.itemsize:
        return None
    return 0


def _window(size: int, kernel: int, stride: int, dilation: int, out: int,
            padding: AxisPadding) -> tuple[np.ndarray, np.ndarray]:
    """First and last input index each output position reads (clipped to the input)."""
    pad = conv_padding(size, kernel, stride, dilation, out, padding)
    first = np.arange(out) * stride - pad
    last = first + (kernel - 1) * dilation
    return np.clip(first, 0, size - 1), np.clip(last, 0, size - 1)


def _geometry(graph: Graph, op: Operator) -> tuple[int, int, int, int]:
    """(kernel_h, kernel_w, dilation_h, dilation_w) of a streaming op."""
    attrs = op.attrs
    if op.kind in (OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D):
        return attrs.filter_h, attrs.filter_w, 1, 1
    kh, kw = graph.tensors[op.inputs[1]].shape[1:3]
    return kh, kw, attrs.dilation_h, attrs.dilation_w


def receptive_spans(graph: Graph, op: Operator) -> tuple[np.ndarray, np.ndarray]:
    """Byte range [start, end) of the input each output pixel reads, pixels in raster order.

    The range runs from the receptive field's first byte to its last, so it also covers the
    bytes of other columns in between (a conservative span).
    """
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    n, h, w, c = x.shape
    _, oh, ow, _ = y.shape
    kh, kw, dh, dw = _geometry(graph, op)
    top, bottom = _window(h, kh, op.attrs.stride_h, dh, oh, along(op.attrs.padding, 0))
    left, right = _window(w, kw, op.attrs.stride_w, dw, ow, along(op.attrs.padding, 1))
    batch = np.arange(n)[:, None, None] * h
    first = ((batch + top[None, :, None]) * w + left[None, None, :]).reshape(-1)
    last = ((batch + bottom[None, :, None]) * w + right[None, None, :]).reshape(-1)
    pixel = c * x.dtype.itemsize
    return first * pixel, (last + 1) * pixel


def _streaming_delta(graph: Graph, op: Operator, shares: str) -> int | None:
    """Smallest delta so that no write up to pixel q reaches the first byte pixel q reads.

    Output bytes are written in increasing order, so when pixel q is computed the writes end at
    (q + 1) * pixel_bytes above the output's start. Their excess over the first byte pixel q
    reads (receptive_spans) is a sum of a term of its batch, one of its row and one of its
    column, so its largest value is the sum of theirs.
    """
    if shares != op.inputs[0]:
        return None
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    n, h, w, c = x.shape
    _, oh, ow, _ = y.shape
    kh, kw, dh, dw = _geometry(graph, op)
    read, written = c * x.dtype.itemsize, y.shape[-1] * y.dtype.itemsize
    top = _first_reads(h, kh, op.attrs.stride_h, dh, oh, along(op.attrs.padding, 0))
    left = _first_reads(w, kw, op.attrs.stride_w, dw, ow, along(op.attrs.padding, 1))
    batch = max(0, (n - 1) * (oh * ow * written - h * w * read))
    row = max(oy * ow * written - first * w * read for oy, first in enumerate(top))
    column = max((ox + 1) * written - first * read for ox, first in enumerate(left))
    return max(0, batch + row + column)


def _first_reads(size: int, kernel: int, stride: int, dilation: int, out: int,
                 padding: AxisPadding) -> list[int]:
    """First input index each output position reads (clipped to the input): _window's first."""
    pad = conv_padding(size, kernel, stride, dilation, out, padding)
    return [min(max(o * stride - pad, 0), size - 1) for o in range(out)]


def _depthwise_fits(graph: Graph, op: Operator, shares: str) -> bool:
    x, y = graph.tensors[shares], graph.tensors[op.outputs[0]]
    return (op.kind is OpKind.DEPTHWISE_CONV_2D and shares == op.inputs[0] and x.shape[0] == 1
            and op.attrs.depth_multiplier == 1 and x.shape[3] == y.shape[3]
            and y.shape[1] * y.shape[2] <= x.shape[1] * x.shape[2] and x.dtype == y.dtype)


def in_place_rule(graph: Graph, op: Operator, kind: InPlace, shares: str) -> Rule | None:
    """The placement rule under which `op` may run as `kind` over input `shares`, else None."""
    if int16_step(graph, op) and not any((record.int16 or record.any_width)
                                         and record.runs_as(kind)
                                         for record in kernels_of(op.kind, True)):
        return None
    if kind is InPlace.ELEMENTWISE and op.kind in ELEMENTWISE_KINDS:
        delta = _elementwise_delta(graph, op, shares)
    elif kind is InPlace.OVERLAP and op.kind in STREAMING_KINDS:
        delta = _streaming_delta(graph, op, shares)
    elif kind is InPlace.DEPTHWISE and _depthwise_fits(graph, op, shares):
        channel = graph.tensors[shares]
        return Rule(modulus=channel.shape[3] * channel.dtype.itemsize)
    else:
        return None
    return None if delta is None else Rule(delta)


def _slows_dsp(graph: Graph, op: Operator, kind: InPlace, dsp: bool) -> bool:
    """True when running `op` as `kind` would trade a DSP kernel for the portable in-place one.

    Only the 3x3 DSP depthwise kernel computes channel by channel; other depthwise shapes have a
    DSP kernel out of place only, which is several times faster than the portable in-place one.
    """
    return (dsp and kind is InPlace.DEPTHWISE and op.kind is OpKind.DEPTHWISE_CONV_2D
            and dsp_depthwise_plane(graph, op, InPlace.DEPTHWISE) is None)


def options(graph: Graph, op: Operator, alignment: int, kinds: frozenset[InPlace],
            sizes: dict[str, int], dsp: bool = False) -> list[Option]:
    """The in-place options of `op` that save memory (scratch sized for DSP kernels: `dsp`).

    `sizes` gives the storage size of each input that may be shared. Whether that input dies at
    this op depends on the order and is checked by the scheduler.
    """
    y_size = graph.tensors[op.outputs[0]].nbytes
    plain_scratch = scratch_bytes(graph, op, InPlace.NONE, dsp)
    found = []
    for kind in (InPlace.ELEMENTWISE, InPlace.OVERLAP, InPlace.DEPTHWISE):
        for shares in dict.fromkeys(op.inputs):
            allowed = kind in kinds and shares in sizes and not _slows_dsp(graph, op, kind, dsp)
            rule = in_place_rule(graph, op, kind, shares) if allowed else None
            if rule is None:
                continue
            rule = Rule(-(-rule.delta // alignment) * alignment, rule.modulus)
            footprint = max(rule.delta + sizes[shares], y_size)
            scratch = scratch_bytes(graph, op, kind, dsp)
            if footprint + scratch < sizes[shares] + y_size + plain_scratch:
                found.append(Option(kind, shares, rule, footprint, scratch))
    return found
