"""How the C kernels lay out their work: broadcast and reduction dims, DSP groups and planes."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.ir.enums import along
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import DepthwiseConv2DAttrs
from mcuflow.ir.shapes import conv_padding


def im2col_bytes(graph: Graph, op: Operator) -> int:
    """Scratch of the generated CONV_2D kernel: one output pixel's receptive field as int8.

    KH x KW x Cin bytes (padding filled with the input zero point, so the inner loop is a plain
    dot product); a 1x1 kernel reads its input pixel by pixel and needs none.
    """
    _, kh, kw, cin = graph.tensors[op.inputs[1]].shape
    return 0 if (kh, kw) == (1, 1) else kh * kw * cin


def dsp_groups(depth: int) -> int:
    """Groups of 4 columns of a DSP matrix product over `depth` columns."""
    return -(-depth // 4)


def dsp_padded_channels(in_c: int) -> int:
    """Channels per tap in the DSP CONV_2D columns.

    Counts 3 more than a multiple of 4 get one zero channel, so that whole words gather them;
    others are kept (multiples of 4 gathered by words, the rest value by value).
    """
    return in_c + 1 if in_c % 4 == 3 else in_c


GATHER_VALUES, GATHER_WORDS, GATHER_PADDED, GATHER_ROWS = 0, 1, 2, 3  # MCUFLOW_DSP_GATHER_*


def dsp_gather_mode(in_c: int, k_w: int, dilation_w: int) -> int:
    """How the DSP CONV_2D kernel gathers its columns (MCUFLOW_DSP_GATHER_*).

    Whole words per tap when they hold whole taps (with a zero channel for 3 more than a
    multiple of 4), else whole words along each window row when it is contiguous and a multiple
    of 4 bytes long or little shorter (ROW_PADDING; zero weights meet the bytes that round it up
    to words), else value by value.
    """
    if dsp_padded_channels(in_c) > in_c:
        return GATHER_PADDED
    if in_c % 4 == 0:
        return GATHER_WORDS
    row = k_w * in_c
    padded_row = -(-row // 4) * 4
    return GATHER_ROWS if dilation_w == 1 and ROW_PADDING * padded_row <= (
        ROW_PADDING + 1) * row else GATHER_VALUES


ROW_PADDING = 4
"""GATHER_ROWS takes window rows whose length rounded up to words is at most 1 + 1/ROW_PADDING
times the row (a 1x3 row of 6 channels: 20 columns for 18); longer padding costs more
multiplies than gathering value by value saves."""


def dsp_row_columns(in_c: int, k_w: int, dilation_w: int) -> int:
    """Columns of one window row in the DSP CONV_2D matrix (dsp_gather_mode's rows padded)."""
    row = k_w * dsp_padded_channels(in_c)
    if dsp_gather_mode(in_c, k_w, dilation_w) == GATHER_ROWS:
        return -(-row // 4) * 4
    return row


@dataclass(frozen=True)
class DwPlane:
    """The int16 plane of one input channel the 3x3 DSP depthwise kernel computes from.

    The kernel runs along output lines: the output's rows, or its columns when `transposed`
    (a tall, narrow output such as a spectrogram's makes longer lines and less waste).
    """

    rows: int
    columns: int
    transposed: bool

    @property
    def nbytes(self) -> int:
        """Bytes of scratch the plane occupies."""
        return 2 * self.rows * self.columns


# Rough instructions of the kernel per output pair, per line and per gathered input value (the
# padding is set once per image).
_PAIR_COST, _LINE_COST, _GATHER_COST = 44, 16, 3


def _plane(sizes: tuple[int, int, int, int], strides: tuple[int, int], pads: tuple[int, int],
           transposed: bool) -> tuple[int, DwPlane] | None:
    """(estimated instructions, plane) of one orientation.

    `sizes` are the input then the output extents across and along the lines.
    """
    in_across, in_along, out_across, out_along = sizes
    if strides[1] not in (1, 2):
        return None
    even = out_along + out_along % 2
    columns = max(pads[1] + in_along, strides[1] * even + 2)
    plane = DwPlane(strides[0] * (out_across - 1) + 3, columns + columns % 2, transposed)
    cost = (_PAIR_COST * out_across * (even // 2) + _LINE_COST * out_across
            + _GATHER_COST * min(in_across, plane.rows) * in_along)
    return cost, plane


def dsp_depthwise_plane(graph: Graph, op: Operator, channel_by_channel: bool = True
                        ) -> DwPlane | None:
    """The plane of the 3x3 DSP depthwise kernel, in its cheaper orientation.

    None when that kernel does not apply: it needs a 3x3 kernel, no dilation, a stride of 1 or 2
    along the lines, depth multiplier 1, and a step that may compute channel after channel
    (`channel_by_channel`: not one whose output overlaps its input pixel by pixel).
    """
    attrs: DepthwiseConv2DAttrs = op.attrs
    _, in_h, in_w, _ = graph.tensors[op.inputs[0]].shape
    _, out_h, out_w, _ = graph.tensors[op.outputs[0]].shape
    kernel = graph.tensors[op.inputs[1]].shape[1:3]
    if (kernel != (3, 3) or (attrs.dilation_h, attrs.dilation_w) != (1, 1)
            or attrs.depth_multiplier != 1 or not channel_by_channel):
        return None
    pad_top = conv_padding(in_h, 3, attrs.stride_h, 1, out_h, along(attrs.padding, 0))
    pad_left = conv_padding(in_w, 3, attrs.stride_w, 1, out_w, along(attrs.padding, 1))
    options = [option for option in (
        _plane((in_h, in_w, out_h, out_w), (attrs.stride_h, attrs.stride_w),
               (pad_top, pad_left), False),
        _plane((in_w, in_h, out_w, out_h), (attrs.stride_w, attrs.stride_h),
               (pad_left, pad_top), True),
    ) if option is not None]
    return min(options, key=lambda option: option[0])[1] if options else None


DWP_CLASS_BYTES = 4096
"""The most flash the edge classes of mcuflow_dwconv_dsp_s8 may take (their records repeat the
layer's once per class): small layers, whose edge pixels are many, get them."""
DWP_RECORD_BYTES = 4 * (4 + 2 * 9 + 16)  # MCUFLOW_DSP_DWP_WORDS(9) int32: a group's record


@dataclass(frozen=True)
class DwEdgeClasses:
    """The edge classes of a 9-tap mcuflow_dwconv_dsp_s8 layer (mcuflow_dsp_dw_pixels_t).

    Output rows (columns) whose windows have the same taps inside the input share a row
    (column) class; `row_ranges` and `column_ranges` are each class's taps [lo, hi), class 0
    all of them.
    """

    rows: tuple[int, ...]
    columns: tuple[int, ...]
    row_ranges: tuple[tuple[int, int], ...]
    column_ranges: tuple[tuple[int, int], ...]

    @property
    def count(self) -> int:
        """Classes: row classes x column classes."""
        return len(self.row_ranges) * len(self.column_ranges)

    def runs(self) -> int:
        """Calls of the assembly per image: per row its inside columns and each edge column."""
        edge_columns = sum(1 for c in self.columns if c)
        return len(self.rows) * (edge_columns + (edge_columns < len(self.columns)))


def _taps_inside(start: int, dilation: int, kernel: int, size: int) -> tuple[int, int]:
    """Taps [lo, hi) of a window from `start` (stride `dilation`) inside [0, size)."""
    first = -(start // dilation) if start < 0 else 0
    room = size - start
    return first, min(-(-room // dilation) if room > 0 else 0, kernel)


def _classes(starts: list[int], dilation: int, kernel: int, size: int
             ) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """Each position's class and the classes' tap ranges, class 0 the whole kernel."""
    ranges = [_taps_inside(start, dilation, kernel, size) for start in starts]
    distinct = ((0, kernel), *sorted(set(ranges) - {(0, kernel)}))
    return tuple(distinct.index(r) for r in ranges), distinct


def dw_edge_classes(graph: Graph, op: Operator) -> DwEdgeClasses | None:
    """The edge classes of a DEPTHWISE_CONV_2D run by mcuflow_dwconv_dsp_s8, or None.

    For windows of 9 taps over whole groups of 4 channels (depth multiplier 1), whose classes'
    records fit DWP_CLASS_BYTES and each keep a tap inside the input.
    """
    attrs: DepthwiseConv2DAttrs = op.attrs
    _, in_h, in_w, in_c = graph.tensors[op.inputs[0]].shape
    _, out_h, out_w, _ = graph.tensors[op.outputs[0]].shape
    kh, kw = graph.tensors[op.inputs[1]].shape[1:3]
    if kh * kw != 9 or in_c % 4 or attrs.depth_multiplier != 1:
        return None
    pad_top = conv_padding(in_h, kh, attrs.stride_h, attrs.dilation_h, out_h,
                           along(attrs.padding, 0))
    pad_left = conv_padding(in_w, kw, attrs.stride_w, attrs.dilation_w, out_w,
                            along(attrs.padding, 1))
    rows, row_ranges = _classes([oy * attrs.stride_h - pad_top for oy in range(out_h)],
                                attrs.dilation_h, kh, in_h)
    columns, column_ranges = _classes([ox * attrs.stride_w - pad_left for ox in range(out_w)],
                                      attrs.dilation_w, kw, in_w)
    classes = DwEdgeClasses(rows, columns, row_ranges, column_ranges)
    empty = any(lo >= hi for lo, hi in row_ranges + column_ranges)
    if empty or classes.count * in_c // 4 * DWP_RECORD_BYTES > DWP_CLASS_BYTES:
        return None
    return classes


def merge_dims(shape: tuple[int, ...], flags: list[bool]) -> tuple[list[int], list[bool]]:
    """Merge neighbouring dims with the same flag (size-1 dims dropped); at least one dim."""
    dims: list[int] = []
    merged: list[bool] = []
    for size, flag in zip(shape, flags, strict=True):
        if size == 1:
            continue
        if merged and merged[-1] == flag:
            dims[-1] *= size
        else:
            dims.append(size)
            merged.append(flag)
    return (dims, merged) if dims else ([1], [False])


def broadcast_layout(a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]
                     ) -> tuple[list[int], list[int], list[int]]:
    """Iteration dims and the element strides of both inputs (0 where broadcast).

    Neighbouring dims of the same broadcast pattern are merged.
    """
    rank = len(out)
    a_full = (1,) * (rank - len(a)) + tuple(a)
    b_full = (1,) * (rank - len(b)) + tuple(b)
    dims: list[int] = []
    patterns: list[tuple[bool, bool]] = []
    for size, da, db in zip(out, a_full, b_full, strict=True):
        if size == 1:
            continue
        pattern = (da == size, db == size)
        if patterns and patterns[-1] == pattern:
            dims[-1] *= size
        else:
            dims.append(size)
            patterns.append(pattern)
    if not dims:
        return [1], [1], [1]
    return dims, _strides(dims, [p[0] for p in patterns]), _strides(dims, [p[1] for p in patterns])


def _strides(dims: list[int], present: list[bool]) -> list[int]:
    strides = [0] * len(dims)
    step = 1
    for i in reversed(range(len(dims))):
        if present[i]:
            strides[i] = step
            step *= dims[i]
    return strides


def s16_row_words(k_w: int, in_c: int, dilation_w: int) -> int:
    """Column words per window row of the int16x8 DSP CONV_2D.

    Dilation_w 1: the row's k_w * in_c values rounded up to even, halved; otherwise each tap's
    in_c rounded up to even, halved, k_w times.
    """
    return (k_w * in_c + 1) // 2 if dilation_w == 1 else k_w * ((in_c + 1) // 2)


def s16_conv_depth(k_h: int, k_w: int, in_c: int, dilation_w: int) -> int:
    """Columns of the int16x8 DSP CONV_2D's im2col: k_h window rows of s16_row_words pairs."""
    return k_h * 2 * s16_row_words(k_w, in_c, dilation_w)
