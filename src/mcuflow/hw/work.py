"""The work terms that drive each C kernel's instruction count, computed from the graph."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import lru_cache
from operator import attrgetter

import numpy as np

from mcuflow.hw.costmodel import op_cost
from mcuflow.hw.layouts import (
    GATHER_ROWS,
    GATHER_VALUES,
    GATHER_WORDS,
    DwEdgeClasses,
    broadcast_layout,
    dsp_depthwise_plane,
    dsp_gather_mode,
    dsp_groups,
    dsp_padded_channels,
    dsp_row_columns,
    dw_edge_classes,
    merge_dims,
)
from mcuflow.hw.tconv_phases import phase_gather, phase_groups, transpose_conv_phases
from mcuflow.ir.enums import Activation, along
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import (
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    MeanAttrs,
    OpKind,
    PadAttrs,
    Pool2DAttrs,
)
from mcuflow.ir.shapes import conv_padding
from mcuflow.quant.fixedpoint import activation_range

BLOCK = 64
"""Channels the portable depthwise and average-pool kernels accumulate per pass."""
DWP_MAX_TAPS = 25
"""Window taps up to which mcuflow_dwconv_dsp_s8 runs interior pixels in one pass per row."""


@dataclass(frozen=True)
class Work:
    """Counts of the loop iterations a kernel call runs; each kernel fills its own subset.

    A kernel costs sum(field x its coefficient) instructions (mcuflow.hw.kernel_costs). What
    each field counts is said by the kernel's terms function; the usual meanings: `calls`
    kernel calls, `rows` outer-loop rows or lines, `pixels` output pixels, `channels` channel
    passes, `outputs` requantised outputs, `taps` kernel-window taps, `macs` multiply-accumulates
    of the main loop, `blocks` fixed-size blocks of it, `tails` left-over iterations, `loops`
    loop steps of a second kind, `gathered` values copied to scratch, `elements` elements
    streamed, `clamped` outputs clamped to a narrow activation in `clamps` passes, `words`
    single words loaded and widened, `edges` taps of windows crossing the input's edge,
    `signed` outputs whose requantisation corrects for the accumulator's sign (`_signed`),
    `decoded` and `stream` bytes decoded and read by the codebook decoder, `pairs` blocks of a
    kernel's second, leaner block loop.
    """

    calls: float = 0.0
    rows: float = 0.0
    pixels: float = 0.0
    channels: float = 0.0
    outputs: float = 0.0
    taps: float = 0.0
    macs: float = 0.0
    blocks: float = 0.0
    tails: float = 0.0
    loops: float = 0.0
    gathered: float = 0.0
    elements: float = 0.0
    clamped: float = 0.0
    clamps: float = 0.0
    words: float = 0.0
    edges: float = 0.0
    signed: float = 0.0
    decoded: float = 0.0
    stream: float = 0.0
    pairs: float = 0.0

    def __add__(self, other: Work) -> Work:
        return Work(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple[float, ...]:
        """The fields in declaration order."""
        return _FIELDS(self)

    def dot(self, coefficients: Work) -> float:
        """sum of field x the same field of `coefficients`."""
        return sum(a * b for a, b in zip(self.values(), coefficients.values(), strict=True))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names in declaration order."""
        return tuple(f.name for f in fields(cls))


_FIELDS = attrgetter(*Work.names())
"""The tuple of a Work's fields in declaration order."""

TermsFn = Callable[[Graph, Operator], Work]


# --- geometry shared by the window kernels -----------------------------------------------------


@lru_cache(maxsize=4096)
def _valid(out_size: int, size: int, kernel: int, stride: int, dilation: int, pad: int
           ) -> np.ndarray:
    """In-bounds taps along one axis of each output index (read-only: it is remembered)."""
    starts = np.arange(out_size) * stride - pad
    positions = starts[:, None] + np.arange(kernel)[None, :] * dilation
    valid = ((positions >= 0) & (positions < size)).sum(axis=1)
    valid.flags.writeable = False
    return valid


@dataclass(frozen=True)
class Window:
    """The sliding window of a convolution or pool and its in-bounds taps per output."""

    batches: int
    out_h: int
    out_w: int
    in_c: int
    out_c: int
    k_h: int
    k_w: int
    valid_h: np.ndarray
    valid_w: np.ndarray

    @property
    def pixels(self) -> int:
        """Output pixels."""
        return self.batches * self.out_h * self.out_w

    @property
    def taps(self) -> int:
        """In-bounds taps summed over the output pixels."""
        return self.batches * int(self.valid_h.sum()) * int(self.valid_w.sum())

    @property
    def full_rows(self) -> int:
        """Output rows whose windows lie inside the input rows."""
        return int((self.valid_h == self.k_h).sum())

    @property
    def interior(self) -> int:
        """Output pixels whose windows lie inside the input."""
        return self.batches * self.full_rows * int((self.valid_w == self.k_w).sum())

    @property
    def border_taps(self) -> int:
        """In-bounds taps of the pixels whose windows cross the input's edge."""
        return self.taps - self.interior * self.k_h * self.k_w

    @property
    def window_rows(self) -> int:
        """In-bounds window rows summed over the output pixels."""
        return self.batches * int(self.valid_h.sum()) * self.out_w


def window(graph: Graph, op: Operator) -> Window:
    """The window of a CONV_2D, DEPTHWISE_CONV_2D or pool step."""
    n, in_h, in_w, in_c = graph.tensors[op.inputs[0]].shape
    _, out_h, out_w, out_c = graph.tensors[op.outputs[0]].shape
    attrs = op.attrs
    if isinstance(attrs, Pool2DAttrs):
        kernel, dilation = (attrs.filter_h, attrs.filter_w), (1, 1)
    else:
        kernel = graph.tensors[op.inputs[1]].shape[1:3]
        dilation = (attrs.dilation_h, attrs.dilation_w)
    axes = [(out_h, in_h, kernel[0], attrs.stride_h, dilation[0]),
            (out_w, in_w, kernel[1], attrs.stride_w, dilation[1])]
    valid = [_valid(o, i, k, s, d, conv_padding(i, k, s, d, o, along(attrs.padding, axis)))
             for axis, (o, i, k, s, d) in enumerate(axes)]
    return Window(n, out_h, out_w, in_c, out_c, kernel[0], kernel[1], *valid)


def _narrow(graph: Graph, op: Operator) -> bool:
    """True when the fused activation clamps to less than the int8 range."""
    activation = getattr(op.attrs, "activation", Activation.NONE)
    quant = graph.tensors[op.outputs[0]].quant
    if activation is Activation.NONE or quant is None:
        return False
    bounds = activation_range(activation, quant.scale0, quant.zero_point0)
    return (bounds.min, bounds.max) != (-128, 127)


def _signed(op: Operator, outputs: int) -> int:
    """`outputs` when the DSP requantisation needs its sign correction, else 0.

    The DSP kernels add a correction for negative accumulators unless a RELU or RELU6 clamps
    them all away (mcuflow.codegen.dsp then finds constants without it).
    """
    activation = getattr(op.attrs, "activation", Activation.NONE)
    return 0 if activation in (Activation.RELU, Activation.RELU6) else outputs


def _dot(outputs: int, depth: int) -> Work:
    """mcuflow_dot_s8 per output: blocks of 64 MACs, then of 16, then single MACs."""
    longs, rest = divmod(depth, BLOCK)
    return Work(outputs=outputs, macs=outputs * BLOCK * longs, blocks=outputs * (rest // 16),
                tails=outputs * (rest % 16))


def _size(graph: Graph, name: str) -> int:
    return graph.tensors[name].size


# --- portable kernels --------------------------------------------------------------------------


def conv2d_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_conv2d_s8.

    Per pixel an im2col of `taps` taps and `gathered` bytes, then one dot product of KH x KW
    x Cin per output (`macs` in 64-blocks, `blocks` of 16, `tails`).
    """
    w = window(graph, op)
    depth = w.k_h * w.k_w * w.in_c
    return Work(calls=1, pixels=w.pixels, taps=w.pixels * w.k_h * w.k_w,
                gathered=w.pixels * depth) + _dot(w.pixels * w.out_c, depth)


def conv2d_1x1_terms(graph: Graph, op: Operator) -> Work:
    """mcuflow_conv2d_1x1_s8: per pixel one dot product of Cin per output channel."""
    w = window(graph, op)
    return Work(calls=1, pixels=w.pixels) + _dot(w.pixels * w.out_c, w.in_c)


def fully_connected_terms(graph: Graph, op: Operator) -> Work:
    """mcuflow_fully_connected_s8: `rows` input rows, one dot product per output unit."""
    units, depth = graph.tensors[op.inputs[1]].shape
    rows = _size(graph, op.inputs[0]) // depth
    return Work(calls=1, rows=rows) + _dot(rows * units, depth)


def dwconv_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_dwconv_s8.

    Per pixel and pass over 64 channels, `rows` window rows, `blocks` window columns of the
    in-bounds rows and `taps` in-bounds taps; per tap and channel one MAC: `macs`, or with a
    depth multiplier `tails` plus an integer division (`loops`, by quotient bits).
    """
    attrs: DepthwiseConv2DAttrs = op.attrs
    w = window(graph, op)
    passes = -(-w.out_c // BLOCK)
    channel_taps = w.taps * w.out_c
    plain = attrs.depth_multiplier == 1
    return Work(calls=1, pixels=w.pixels, outputs=w.pixels * w.out_c,
                rows=w.pixels * passes * w.k_h, taps=w.taps * passes,
                blocks=w.window_rows * w.k_w * passes,
                macs=channel_taps if plain else 0, tails=0 if plain else channel_taps,
                loops=0 if plain else channel_taps * w.out_c.bit_length())


def dwconv_3x3_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_dwconv_3x3_s8.

    Interior pixels nine unrolled MACs per channel (`macs` counts channels); edge pixels the
    general loop (`tails` MACs, `taps`, `blocks` passes).
    """
    w = window(graph, op)
    passes = -(-w.out_c // BLOCK)
    return Work(calls=1, rows=w.batches * w.out_h, pixels=w.pixels,
                outputs=w.pixels * w.out_c, macs=w.interior * w.out_c,
                tails=w.border_taps * w.out_c, taps=w.border_taps * passes,
                blocks=(w.pixels - w.interior) * passes)


def dwconv_inplace_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_dwconv_inplace_s8.

    Channel by channel (`channels`, `taps` cached, `rows`); per output a requantisation and
    a copy back; whole 3x3 windows unrolled (`macs` counts them), others tap by tap (`tails`
    MACs over `loops` window rows).
    """
    w = window(graph, op)
    attrs: DepthwiseConv2DAttrs = op.attrs
    unrolled = (w.k_h, w.k_w, attrs.dilation_h, attrs.dilation_w) == (3, 3, 1, 1)
    fast = w.interior if unrolled else 0
    slow_taps = w.taps - fast * w.k_h * w.k_w
    slow_rows = w.window_rows - fast * w.k_h
    c = w.out_c
    return Work(calls=1, channels=c, taps=c * w.k_h * w.k_w, rows=c * w.out_h,
                outputs=c * w.pixels, macs=c * fast, tails=c * slow_taps, loops=c * slow_rows)


def avg_pool_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_avg_pool_s8.

    Per pixel its window; per block of 64 channels and in-bounds tap a pass (`taps`) adding
    each channel (`elements`); per output a rounded division.
    """
    w = window(graph, op)
    passes = -(-w.in_c // BLOCK)
    return Work(calls=1, pixels=w.pixels, outputs=w.pixels * w.in_c, taps=w.taps * passes,
                elements=w.taps * w.in_c)


def max_pool_terms(graph: Graph, op: Operator) -> Work:
    """mcuflow_max_pool_s8: per pixel its window, per in-bounds tap a pass over the channels."""
    w = window(graph, op)
    return Work(calls=1, pixels=w.pixels, outputs=w.pixels * w.in_c, taps=w.taps,
                elements=w.taps * w.in_c)


def mean_terms(graph: Graph, op: Operator) -> Work:
    """mcuflow_mean_s8: per input element an offset over the merged dims (`loops`)."""
    attrs: MeanAttrs = op.attrs
    shape = graph.tensors[op.inputs[0]].shape
    axes = {axis % len(shape) for axis in attrs.axes}
    dims, _ = merge_dims(shape, [d in axes for d in range(len(shape))])
    elements = math.prod(shape)
    return Work(calls=1, outputs=_size(graph, op.outputs[0]), elements=elements,
                loops=elements * len(dims))


def softmax_terms(graph: Graph, op: Operator) -> Work:
    """mcuflow_softmax_s8: per row a reciprocal, per element three passes."""
    shape = graph.tensors[op.inputs[0]].shape
    return Work(calls=1, rows=math.prod(shape[:-1]), elements=math.prod(shape))


def _broadcast(graph: Graph, op: Operator) -> tuple[int, int, bool]:
    """(rows, rank, contiguous) of the merged broadcast layout of a binary op."""
    shapes = [graph.tensors[name].shape for name in (*op.inputs[:2], op.outputs[0])]
    dims, first, second = broadcast_layout(*shapes)
    return math.prod(dims[:-1]), len(dims), first[-1] == second[-1] == 1


def binary_terms(graph: Graph, op: Operator) -> Work:
    """Work of a two-input element-wise kernel over a broadcast layout (mcuflow_binary_s8...).

    Per row of the layout an offset over its dims (`loops`); per element its arithmetic, a term
    per kind of arithmetic: ADD's, SUB's (and MAXIMUM's, MINIMUM's) as `elements`, MUL's one
    requantisation as `macs`, SQUARED_DIFFERENCE's three multipliers as `taps`, PRELU's choice
    of two requantisations as `outputs`.
    """
    rows, rank, _ = _broadcast(graph, op)
    per_element = {OpKind.MUL: "macs", OpKind.SQUARED_DIFFERENCE: "taps",
                   OpKind.PRELU: "outputs"}.get(op.kind, "elements")
    return Work(calls=1, rows=rows, loops=rows * rank,
                **{per_element: float(_size(graph, op.outputs[0]))})


def lookup_terms(graph: Graph, op: Operator) -> Work:
    """mcuflow_lookup_s8, mcuflow_lookup_f32, mcuflow_quantize_f32: one step per element."""
    return Work(calls=1, elements=_size(graph, op.outputs[0]))


def copy_terms(graph: Graph, op: Operator) -> Work:
    """mcuflow_copy_rows: one call per input, a memmove per row (`gathered` bytes)."""
    out = graph.tensors[op.outputs[0]]
    if op.kind is not OpKind.CONCATENATION:
        return Work(calls=1, rows=1, gathered=out.nbytes)
    attrs: ConcatenationAttrs = op.attrs
    outer = math.prod(out.shape[:attrs.axis])
    return Work(calls=len(op.inputs), rows=outer * len(op.inputs), gathered=out.nbytes)


def pad_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_pad_s8.

    Memset of the output (`elements` bytes), per input row an offset over the dims (`loops`)
    and a memcpy (`gathered` bytes).
    """
    attrs: PadAttrs = op.attrs
    x = graph.tensors[op.inputs[0]]
    rows = math.prod(x.shape[:-1])
    return Work(calls=1, rows=rows, loops=rows * len(attrs.paddings),
                gathered=x.nbytes, elements=graph.tensors[op.outputs[0]].nbytes)


def codebook_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_codebook_decode_s8.

    Per codebook-stored input: `decoded` values, `stream` bytes, codes longer than the look-
    up (`tails`) and their extra lengths (`loops`).
    """
    work = Work()
    for name in dict.fromkeys(op.inputs):
        tensor = graph.tensors[name]
        if tensor.codebook is None:
            continue
        codebook = tensor.codebook
        length_of = np.zeros(256, np.int64)
        length_of[codebook.values.astype(np.int64) + 128] = codebook.lengths
        extra = np.maximum(length_of[tensor.data.astype(np.int64).reshape(-1) + 128]
                           - codebook.lookup_bits, 0)
        work += Work(calls=1, decoded=tensor.size, stream=codebook.stream.nbytes,
                     tails=int((extra > 0).sum()), loops=int(extra.sum()))
    return work


# --- Arm DSP kernels ---------------------------------------------------------------------------


def _dsp_gather(w: Window, attrs: Conv2DAttrs) -> Work:
    """The column gather of mcuflow_conv2d_dsp_s8, by its mode (layouts.dsp_gather_mode).

    A 1x1 stride-1 layer over whole words copies each input pixel (`rows` pixels); others
    gather `pixels` window by window: WORDS and PADDED whole words per contiguous window row
    (`channels`) or per tap (`taps`; `words` when a tap is one word), across the input's edge
    tap by tap (`edges`), `gathered` words in all; ROWS whole words along each in-bounds window
    row (`channels`), `gathered` words in all, windows across the edge row by row (`edges`);
    VALUES `elements` values in `loops` runs.
    """
    mode = dsp_gather_mode(w.in_c, w.k_w, attrs.dilation_w)
    padded = dsp_padded_channels(w.in_c)
    taps = w.pixels * w.k_h * w.k_w
    if mode == GATHER_ROWS:
        return Work(pixels=w.pixels, channels=w.window_rows,
                    gathered=w.pixels * w.k_h * -(-w.k_w * w.in_c // 4),
                    edges=(w.pixels - w.interior) * w.k_h)
    if mode == GATHER_VALUES:
        return Work(pixels=w.pixels, loops=w.pixels * w.k_h, elements=taps * w.in_c)
    if mode == GATHER_WORDS and (w.k_h, w.k_w, attrs.stride_h, attrs.stride_w) == (1, 1, 1, 1):
        return Work(rows=w.pixels, gathered=w.pixels * w.in_c // 4)
    contiguous = mode == GATHER_WORDS and attrs.dilation_w == 1
    inside = w.interior * w.k_h * w.k_w
    per_tap = 0 if contiguous else inside
    return Work(pixels=w.pixels, channels=w.interior * w.k_h if contiguous else 0,
                taps=0 if padded == 4 else per_tap, words=per_tap if padded == 4 else 0,
                edges=taps - inside, gathered=taps * padded // 4)


SMALL_POINTWISE_GROUPS = 4
"""Groups of 4 input channels up to which a 1x1 DSP layer runs as one assembly routine
(MCUFLOW_DSP_SMALL_GROUPS in mcuflow_conv_dsp.c)."""


def _small_pointwise(w: Window, attrs: Conv2DAttrs, groups: int) -> bool:
    """True when mcuflow_conv2d_dsp_s8 runs the layer through mcuflow_dsp_pointwise_small.

    A stride-1 1x1 layer gathered by words with at most SMALL_POINTWISE_GROUPS groups and an
    even output channel count (and the FAST requantisation the DSP layers usually get).
    """
    return (dsp_gather_mode(w.in_c, w.k_w, attrs.dilation_w) == GATHER_WORDS
            and (w.k_h, w.k_w, attrs.stride_h, attrs.stride_w) == (1, 1, 1, 1)
            and groups <= SMALL_POINTWISE_GROUPS and w.out_c % 2 == 0)


def conv2d_dsp_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_conv2d_dsp_s8.

    Per pixel a gather of int16 columns (`_dsp_gather`). Per pair of pixels and pair of
    channels a block (`blocks`, or `pairs` in the one-routine loop of small 1x1 layers) over
    the groups of 4 columns (`macs` the groups in whole fours, `tails` the rest; every group in
    `macs` for the small 1x1 loop); `outputs` of an odd last channel; `clamped` outputs in
    `clamps` passes for a narrow activation (one pass for the small 1x1 loop).
    """
    w = window(graph, op)
    groups = dsp_groups(w.k_h * dsp_row_columns(w.in_c, w.k_w, op.attrs.dilation_w))
    pairs = -(-w.pixels // 2) * -(-w.out_c // 2)
    narrow = _narrow(graph, op)
    common = _dsp_gather(w, op.attrs) + Work(
        calls=1, signed=_signed(op, w.pixels * w.out_c),
        clamped=w.pixels * w.out_c if narrow else 0)
    if _small_pointwise(w, op.attrs, groups):
        return common + Work(pairs=pairs, macs=pairs * groups, clamps=1 if narrow else 0)
    return common + Work(
        blocks=pairs, macs=pairs * (groups - groups % 4), tails=pairs * (groups % 4),
        outputs=w.pixels * (w.out_c % 2), clamps=w.pixels if narrow else 0)



def transpose_conv_phases_dsp_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_transpose_conv_phases_dsp_s8: mcuflow_conv2d_dsp_s8's, phase by phase.

    Each output phase (hw.tconv_phases) counted as conv2d_dsp_terms counts a layer (`calls`
    one per phase); a 1x1 phase gathers whole words per window row as GATHER_ROWS does.
    """
    phases = transpose_conv_phases(graph, op)
    if phases is None:
        return Work()
    n, in_h, in_w, in_c = graph.tensors[op.inputs[0]].shape
    out_c = graph.tensors[op.outputs[0]].shape[3]
    narrow = _narrow(graph, op)
    total = Work()
    for phase in phases:
        rows, columns = phase.rows, phase.columns
        w = Window(n, rows.count, columns.count, in_c, out_c, len(rows.taps), len(columns.taps),
                   _valid(rows.count, in_h, len(rows.taps), 1, 1, rows.pad),
                   _valid(columns.count, in_w, len(columns.taps), 1, 1, columns.pad))
        gather = (Work(pixels=w.pixels, channels=w.window_rows,
                       gathered=w.pixels * w.k_h * (w.k_w * in_c // 4),
                       edges=(w.pixels - w.interior) * w.k_h)
                  if phase_gather(in_c, phase) == GATHER_ROWS else _dsp_gather(w, Conv2DAttrs()))
        groups = phase_groups(in_c, phase)
        pairs = -(-w.pixels // 2) * -(-out_c // 2)
        total = total + gather + Work(
            calls=1, signed=_signed(op, w.pixels * out_c),
            clamped=w.pixels * out_c if narrow else 0, blocks=pairs,
            macs=pairs * (groups - groups % 4), tails=pairs * (groups % 4),
            outputs=w.pixels * (out_c % 2), clamps=w.pixels if narrow else 0)
    return total

def fully_connected_dsp_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_fully_connected_dsp_s8.

    Per input row a gather (`gathered` groups of 4 columns); per quad of units a block
    (`blocks`) over the groups, in whole fours (`macs`) and the rest (`tails`); a
    last partial quad (`outputs`); `clamped` outputs in `clamps` passes for a narrow activation.
    """
    units, depth = graph.tensors[op.inputs[1]].shape
    rows = _size(graph, op.inputs[0]) // depth
    quads = rows * -(-units // 4)
    groups = dsp_groups(depth)
    narrow = _narrow(graph, op)
    return Work(calls=1, rows=rows, gathered=rows * groups, blocks=quads,
                macs=quads * (groups - groups % 4), tails=quads * (groups % 4),
                outputs=rows * (units % 4 != 0), signed=_signed(op, rows * units),
                clamps=rows if narrow else 0,
                clamped=rows * units if narrow else 0)


def _fc_small(graph: Graph, op: Operator) -> tuple[int, int, int, Work]:
    """Units, depth, input rows and the work common to the FULLY_CONNECTED kernels in registers.

    Per row a call of the row routine (`rows`), one requantised output per unit (`outputs`,
    `signed`), `clamped` outputs in `clamps` passes.
    """
    units, depth = graph.tensors[op.inputs[1]].shape
    rows = _size(graph, op.inputs[0]) // depth
    narrow = _narrow(graph, op)
    return units, depth, rows, Work(
        calls=1, rows=rows, outputs=rows * units, signed=_signed(op, rows * units),
        clamps=rows if narrow else 0, clamped=rows * units if narrow else 0)


def fully_connected_short_dsp_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_fully_connected_short_dsp_s8.

    Per row a gather, per unit one record: its dot product over the row held in registers,
    its requantisation.
    """
    _, _, _, common = _fc_small(graph, op)
    return common


FEW_UNITS = 4
"""Units per call of mcuflow_fully_connected_few_dsp_s8 (MCUFLOW_DSP_FEW_UNITS, the catalogue's
FC_FEW_UNITS)."""


def fully_connected_few_dsp_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_fully_connected_few_dsp_s8.

    Per row its groups of 4 columns (`blocks`: a word loaded and widened), each feeding every
    unit (`macs`: groups x units); one call, and one pass over the row's groups, per FEW_UNITS
    units (kernels.fc_few_passes).
    """
    units, depth, rows, common = _fc_small(graph, op)
    groups = rows * (depth // 4)
    passes = -(-units // FEW_UNITS)
    return common + Work(calls=passes - 1, blocks=groups * passes, macs=groups * units)


def dwconv_3x3_dsp_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_dwconv_3x3_dsp_s8.

    Per image the plane's padding (`elements` slots), per channel its inside (`rows` lines of
    `gathered` values), then per output line (`loops`) its pairs of outputs (`blocks` at
    stride 1 along the line, `tails` at stride 2); `clamped` outputs of a narrow activation.
    """
    plane = dsp_depthwise_plane(graph, op)
    if plane is None:
        raise ValueError(f"'{op.name}' is not a 3x3 DSP depthwise step")
    attrs: DepthwiseConv2DAttrs = op.attrs
    n, in_h, in_w, c = graph.tensors[op.inputs[0]].shape
    _, out_h, out_w, _ = graph.tensors[op.outputs[0]].shape
    in_across, in_along = (in_w, in_h) if plane.transposed else (in_h, in_w)
    out_across, out_along = (out_w, out_h) if plane.transposed else (out_h, out_w)
    stride_along = attrs.stride_h if plane.transposed else attrs.stride_w
    channels = n * c
    pairs = channels * out_across * -(-out_along // 2)
    pixels = n * out_h * out_w
    narrow = _narrow(graph, op)
    return Work(calls=1, channels=channels, rows=channels * min(in_across, plane.rows),
                elements=n * plane.rows * plane.columns,
                gathered=channels * min(in_across, plane.rows) * in_along,
                loops=channels * out_across, blocks=pairs if stride_along == 1 else 0,
                signed=_signed(op, pixels * c),
                tails=0 if stride_along == 1 else pairs, clamps=pixels if narrow else 0,
                clamped=pixels * c if narrow else 0)


def dwconv_dsp_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_dwconv_dsp_s8.

    Per output row (`rows`) a run over its interior pixels, per pixel (`pixels`) and group of
    4 channels a block (`blocks`) of taps: unrolled for 3x3 (`macs`), looped for other interior
    windows (`loops`). Edge pixels (`elements`; every pixel when the window has more than
    DWP_MAX_TAPS taps): a 3x3 window points its taps at the input or, in the padding, at the
    zero points (`taps` in bounds, `channels` window rows) and runs all nine unrolled; other
    windows go over their in-bounds taps (`taps`) and window rows (`channels`) per group.
    The last Cin % 4 channels go tap by tap (`tails`, `outputs`); `clamped` outputs in `clamps`
    passes for a narrow activation.
    """
    w = window(graph, op)
    if (classes := dw_edge_classes(graph, op)) is not None:
        return _dwconv_classes_terms(graph, op, w, classes)
    groups, rest = divmod(w.in_c, 4)
    taps = w.k_h * w.k_w
    interior = w.interior if taps <= DWP_MAX_TAPS else 0
    inner = (w.pixels if taps == 9 else interior) * taps * groups
    edge_taps = w.taps - interior * taps
    edge_rows = w.window_rows - interior * w.k_h
    per_group = 1 if taps == 9 else groups
    narrow = _narrow(graph, op)
    return Work(calls=1, rows=w.batches * w.out_h, pixels=w.pixels,
                elements=w.pixels - interior, blocks=w.pixels * groups,
                macs=inner if taps == 9 else 0, loops=0 if taps == 9 else inner,
                taps=edge_taps * per_group, channels=edge_rows * per_group,
                tails=(w.pixels * taps if taps == 9 else w.taps) * rest,
                outputs=w.pixels * rest, signed=_signed(op, w.pixels * w.in_c),
                clamps=w.pixels if narrow else 0, clamped=w.pixels * w.in_c if narrow else 0)


def _dwconv_classes_terms(graph: Graph, op: Operator, w: Window, classes: DwEdgeClasses
                          ) -> Work:
    """mcuflow_dwconv_dsp_s8 by edge classes (layouts.dw_edge_classes).

    Every pixel (`pixels`) and group of 4 channels (`blocks`) through the 9-tap assembly
    (`macs`), one run (`rows`) per output row's inside columns and per edge pixel of it;
    `clamped` outputs of a narrow activation, one pass per image.
    """
    groups = w.in_c // 4
    narrow = _narrow(graph, op)
    return Work(calls=1, rows=w.batches * classes.runs(), pixels=w.pixels,
                blocks=w.pixels * groups, macs=w.pixels * 9 * groups,
                signed=_signed(op, w.pixels * w.in_c), clamps=w.batches if narrow else 0,
                clamped=w.pixels * w.in_c if narrow else 0)


def add_dsp_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_add_dsp_s8.

    Per row of the broadcast layout an offset (`loops`); two look-ups and one requantisation
    per element, contiguous (`elements`) or strided (`tails`).
    """
    rows, rank, contiguous = _broadcast(graph, op)
    size = _size(graph, op.outputs[0])
    narrow = _narrow(graph, op)
    return Work(calls=1, rows=rows, loops=rows * rank, elements=size if contiguous else 0,
                tails=0 if contiguous else size, clamps=rows if narrow else 0,
                clamped=size if narrow else 0)


def generic_terms(graph: Graph, op: Operator) -> Work:
    """Work of a kernel without terms of its own: a call, the op's MACs, outputs and inputs."""
    cost = op_cost(graph, op)
    return Work(calls=1, macs=cost.macs, outputs=sum(_size(graph, n) for n in op.outputs),
                elements=sum(graph.tensors[n].size for n in op.inputs
                             if not graph.tensors[n].is_constant))
