"""The catalogue of generated C kernels: one record per C function, read by every stage."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from mcuflow.hw import work
from mcuflow.hw.batch_space import batch_space_layout
from mcuflow.hw.dw_s16 import dw_s16_plane, dw_s16_terms
from mcuflow.hw.layouts import (
    DwPlane,
    dsp_groups,
    dsp_row_columns,
    im2col_bytes,
    s16_conv_depth,
    s16_row_words,
)
from mcuflow.hw.layouts import dsp_depthwise_plane as plane_geometry
from mcuflow.hw.tconv_phases import phase_groups, transpose_conv_phases
from mcuflow.hw.work import TermsFn, Work, generic_terms
from mcuflow.ir.constraints import INT16_MOVES, data_inputs
from mcuflow.ir.enums import IdentityEnum
from mcuflow.ir.graph import DType, Graph, Operator
from mcuflow.ir.ops import (
    OpKind,
    box_of,
    broadcast_multiples,
    lstm_dims,
    strided_slice_ranges,
    transpose_conv_pads,
)
from mcuflow.ir.registry import OpTable
from mcuflow.ir.svdf import svdf_dims


class InPlace(IdentityEnum):
    """How a step's output shares memory with one of its inputs (`Step.shares`).

    Kernel contract (`Kernel.inplace` lists the ones each kernel honours):
    - ELEMENTWISE: element i of the output is written after element i of every input is read;
      the output starts at the same offset as the shared input.
    - OVERLAP: the op computes output pixels in raster order (N, H, W), writing all channels of
      pixel p before starting pixel p+1, and reads only the receptive fields of pixels >= p while
      writing pixel p. The output starts `Plan.delta(step)` bytes *below* the shared input, which
      is enough for those writes never to reach an input byte that is still to be read.
    - DEPTHWISE: depth multiplier 1; for each channel c the kernel computes the whole output
      channel into the step's scratch buffer (OH*OW elements), then copies it to output channel c.
      Input and output have the same channel count and start a whole number of pixels apart
      (`Plan.delta(step)` is a multiple of C * itemsize, possibly 0 or negative), so output
      channel c only lands on input channel c, which is no longer needed, or outside the input.
    - ALIAS: no code runs; the output is the input's bytes (RESHAPE, SQUEEZE, EXPAND_DIMS).
    - CONCAT_SLICE: no code runs; the inputs were written straight into their slices of the
      output by their producers: contiguous blocks, or channel slices whose pixels the window
      kernels write the output's channels apart (mcuflow_window_t's output pixel step).
    """

    NONE = "none"
    ALIAS = "alias"
    ELEMENTWISE = "elementwise"
    DEPTHWISE = "depthwise"
    CONCAT_SLICE = "concat_slice"
    OVERLAP = "overlap"


ScratchFn = Callable[[Graph, Operator, InPlace], int]
"""Bytes of scratch RAM one step needs when it calls the kernel, run as the given way."""


@dataclass(frozen=True)
class Kernel:
    """One C kernel function of codegen/kernels.

    `source` is the stem of its C file, `dsp` whether it needs the Arm DSP extension, `kinds`
    the op kinds whose steps may call it, and `applies` says when the emitter chooses it.
    `inplace` lists the in-place contracts it honours besides running out of place, and
    `scratch` sizes the scratch a step calling it needs (None: none). `terms` counts the work of
    one step that calls it (mcuflow.hw.work), which the cost model multiplies by the kernel's
    coefficients fitted per core (kernel_costs.toml); None counts the generic terms of
    `generic_terms`. `int16` marks a kernel of int16 activations (LiteRT's int16x8 scheme),
    which serves exactly the steps whose activations are int16; `any_width` a data-movement
    kernel that copies elements of the step's own width, int8 or int16, and serves both.
    """

    function: str
    source: str
    kinds: frozenset[OpKind]
    dsp: bool
    applies: str
    terms: TermsFn | None = None
    inplace: frozenset[InPlace] = frozenset()
    scratch: ScratchFn | None = None
    int16: bool = False
    any_width: bool = False

    def work(self, graph: Graph, op: Operator) -> Work:
        """The work terms of one step `op` calling this kernel."""
        return (self.terms or generic_terms)(graph, op)

    def runs_as(self, way: InPlace) -> bool:
        """True when the kernel may run a step planned as `way`."""
        return way is InPlace.NONE or way in self.inplace

    def scratch_bytes(self, graph: Graph, op: Operator, way: InPlace) -> int:
        """Bytes of scratch a step `op` run as `way` needs when it calls this kernel."""
        return self.scratch(graph, op, way) if self.scratch else 0


KERNELS: dict[str, Kernel] = {}
CODEBOOK_DECODE = "mcuflow_codebook_decode_s8"


def _kernel(function: str, source: str, kinds: tuple[OpKind, ...], applies: str,
            dsp: bool = False, terms: TermsFn | None = None,
            inplace: tuple[InPlace, ...] = (), scratch: ScratchFn | None = None,
            int16: bool = False, any_width: bool = False) -> Kernel:
    record = Kernel(function, source, frozenset(kinds), dsp, " ".join(applies.split()), terms,
                    frozenset(inplace), scratch, int16, any_width)
    KERNELS[function] = record
    return record


def kernel(function: str) -> Kernel:
    """The catalogue record of C function `function`; KeyError names it when unknown."""
    return KERNELS[function]


# --- scratch of the kernels that need some -----------------------------------------------------


def _im2col(graph: Graph, op: Operator, way: InPlace) -> int:
    """im2col of one output pixel as int8 (layouts.im2col_bytes), in place or not."""
    return im2col_bytes(graph, op)


def _one_channel(graph: Graph, op: Operator, way: InPlace) -> int:
    """In place (TinyEngine): one output channel, OH*OW elements. Otherwise none."""
    if way is not InPlace.DEPTHWISE:
        return 0
    out = graph.tensors[op.outputs[0]]
    _, oh, ow, _ = out.shape
    return oh * ow * out.dtype.itemsize


def _dsp_columns(graph: Graph, op: Operator, way: InPlace) -> int:
    """im2col of two output pixels as int16, every 1x1 convolution included."""
    _, kh, kw, cin = graph.tensors[op.inputs[1]].shape
    return 16 * dsp_groups(kh * dsp_row_columns(cin, kw, op.attrs.dilation_w))


DENSE_DW_CHANNELS = 8
"""The most input channels of a DEPTHWISE_CONV_2D that mcuflow_dwconv_dense_dsp_s8 runs as a
dense matrix product: each output channel multiplies every input channel's columns (all but
its own weighted zero), in_c times the depthwise work, which the DSP product's speed repays on
few channels."""


def depthwise_dense_applies(graph: Graph, op: Operator) -> bool:
    """True when mcuflow_dwconv_dense_dsp_s8 runs a DEPTHWISE_CONV_2D step on a DSP core.

    The step's DSP depthwise kernels do not (no 3x3 channel-by-channel plane, a depth
    multiplier above 1) and it has at most DENSE_DW_CHANNELS input channels.
    """
    in_c = graph.tensors[op.inputs[0]].shape[3]
    return (op.attrs.depth_multiplier > 1 and in_c <= DENSE_DW_CHANNELS
            and dsp_depthwise_plane(graph, op) is None)


def _dense_columns(graph: Graph, op: Operator, way: InPlace) -> int:
    """The im2col columns of mcuflow_dwconv_dense_dsp_s8 (as CONV_2D's), 0 where it declines."""
    if not depthwise_dense_applies(graph, op):
        return 0
    _, kh, kw, _ = graph.tensors[op.inputs[1]].shape
    in_c = graph.tensors[op.inputs[0]].shape[3]
    return 16 * dsp_groups(kh * dsp_row_columns(in_c, kw, op.attrs.dilation_w))


def _dsp_row(graph: Graph, op: Operator, way: InPlace) -> int:
    """One input row as int16."""
    return 8 * dsp_groups(graph.tensors[op.inputs[1]].shape[1])


def dsp_depthwise_plane(graph: Graph, op: Operator, way: InPlace = InPlace.NONE
                        ) -> DwPlane | None:
    """The plane of the 3x3 DSP depthwise kernel for a step run as `way` (hw.layouts).

    None when that kernel does not apply, or when the step is OVERLAP (computed pixel by pixel).
    """
    return plane_geometry(graph, op, way in (InPlace.NONE, InPlace.DEPTHWISE))


def _dsp_plane(graph: Graph, op: Operator, way: InPlace) -> int:
    """The padded int16 input plane of one channel (3x3 kernels run channel by channel)."""
    plane = dsp_depthwise_plane(graph, op, way)
    return 0 if plane is None else plane.nbytes


# --- SLICE's copy layout -------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceLayout:
    """A SLICE over merged dims: `out_dims` elements from `begin` of each of `in_dims`.

    A dim whose whole extent is copied is merged into the dim before it and dims of extent 1
    are dropped, so every dim but the first is cut and the last is the contiguous run copied.
    """

    in_dims: tuple[int, ...]
    begin: tuple[int, ...]
    out_dims: tuple[int, ...]

    @property
    def start(self) -> int:
        """The input element the first copied run starts at."""
        start = 0
        for extent, first in zip(self.in_dims, self.begin, strict=True):
            start = start * extent + first
        return start

    @property
    def rows_only(self) -> bool:
        """True when the copy is one strided run of rows (mcuflow_copy_rows applies)."""
        return all(n == 1 for n in self.out_dims[:-2])

    @property
    def runs(self) -> int:
        """Contiguous runs copied."""
        return math.prod(self.out_dims[:-1])


def slice_layout(graph: Graph, op: Operator) -> SliceLayout:
    """The merged layout of SLICE `op` (or of a STRIDED_SLICE that is a plain slice)."""
    attrs = box_of(graph, op)
    if attrs is None:
        raise ValueError(f"{op.kind.value} '{op.name}' is not a box of its input")
    dims: list[tuple[int, int, int]] = []
    for extent, first, size in zip(graph.tensors[op.inputs[0]].shape, attrs.begin, attrs.size,
                                   strict=True):
        if extent == 1:
            continue
        if dims and size == extent:
            outer_extent, outer_first, outer_size = dims[-1]
            dims[-1] = (outer_extent * extent, outer_first * extent, outer_size * extent)
        else:
            dims.append((extent, first, size))
    in_dims, begin, out_dims = zip(*dims or [(1, 0, 1)], strict=True)
    return SliceLayout(in_dims, begin, out_dims)


def slice_kernel(graph: Graph, op: Operator) -> str:
    """mcuflow_copy_rows when SLICE `op` copies rows of one input stride, else mcuflow_slice_s8."""
    return "mcuflow_copy_rows" if slice_layout(graph, op).rows_only else "mcuflow_slice_s8"


@dataclass(frozen=True)
class PieceCopy:
    """One mcuflow_copy_rows call of a PIECE_KINDS op: byte offsets and steps.

    SPLIT, SPLIT_V, UNPACK: the input's piece to output `output`; PACK: input `input` to its
    rows of the output.
    """

    input: int
    output: int
    in_offset: int
    in_step: int
    out_offset: int
    out_step: int
    rows: int
    row_bytes: int


PIECE_KINDS = frozenset({OpKind.SPLIT, OpKind.SPLIT_V, OpKind.UNPACK, OpKind.PACK})
"""Kinds whose every input or output is rows of the other side (mcuflow_copy_rows)."""


def piece_copies(graph: Graph, op: Operator) -> list[PieceCopy]:
    """The row copies of a PIECE_KINDS op, one per output (one per input for PACK)."""
    packed = op.kind is OpKind.PACK
    whole = graph.tensors[op.outputs[0] if packed else op.inputs[0]]
    axis = op.attrs.axis
    inner = math.prod(whole.shape[axis + 1:]) * whole.dtype.itemsize
    outer, line = math.prod(whole.shape[:axis]), whole.shape[axis] * inner
    if packed:
        return [PieceCopy(k, 0, 0, inner, k * inner, line, outer, inner)
                for k in range(len(op.inputs))]
    sizes = op.attrs.sizes if op.kind is not OpKind.UNPACK else (1,) * whole.shape[axis]
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    return [PieceCopy(0, k, start * inner, line, 0, n * inner, outer, n * inner)
            for k, (start, n) in enumerate(zip(starts, sizes, strict=True))]


def _copy_terms(graph: Graph, op: Operator) -> Work:
    """work.copy_terms, and for SLICE and PIECE_KINDS a memmove per row (`gathered` bytes)."""
    if op.kind in PIECE_KINDS:
        copies = piece_copies(graph, op)
        return Work(calls=len(copies), rows=sum(c.rows for c in copies),
                    gathered=sum(c.rows * c.row_bytes for c in copies))
    if op.kind not in (OpKind.SLICE, OpKind.STRIDED_SLICE):
        return work.copy_terms(graph, op)
    return Work(calls=1, rows=slice_layout(graph, op).runs,
                gathered=graph.tensors[op.outputs[0]].nbytes)


def _slice_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_slice_s8: per run an offset over the dims (`loops`) and a memcpy."""
    layout = slice_layout(graph, op)
    return Work(calls=1, rows=layout.runs, loops=layout.runs * len(layout.in_dims),
                gathered=graph.tensors[op.outputs[0]].nbytes)


# --- the records ---------------------------------------------------------------------------------

_WEIGHTED_DSP = "on a core with the Arm DSP extension, "
_RASTER = (InPlace.OVERLAP,)
_ELEMENTWISE = (InPlace.ELEMENTWISE,)

_kernel("mcuflow_conv2d_s8", "mcuflow_conv", (OpKind.CONV_2D,),
        "CONV_2D with a kernel larger than 1x1: im2col of one output pixel, then a dot product "
        "per output channel.",
        terms=work.conv2d_terms, inplace=_RASTER, scratch=_im2col)
_kernel("mcuflow_conv2d_1x1_s8", "mcuflow_conv", (OpKind.CONV_2D,),
        "1x1 CONV_2D: reads each input pixel directly, no scratch.",
        terms=work.conv2d_1x1_terms, inplace=_RASTER)
_kernel("mcuflow_conv2d_dsp_s8", "mcuflow_conv_dsp", (OpKind.CONV_2D,),
        _WEIGHTED_DSP + "CONV_2D as a 2x2 blocked matrix product over int16 im2col columns.",
        dsp=True,
        terms=work.conv2d_dsp_terms, inplace=_RASTER, scratch=_dsp_columns)
_kernel("mcuflow_dwconv_s8", "mcuflow_dwconv", (OpKind.DEPTHWISE_CONV_2D,),
        "DEPTHWISE_CONV_2D of any kernel size and depth multiplier.",
        terms=work.dwconv_terms, inplace=_RASTER)
_kernel("mcuflow_dwconv_3x3_s8", "mcuflow_dwconv", (OpKind.DEPTHWISE_CONV_2D,),
        "3x3 DEPTHWISE_CONV_2D with depth multiplier 1.",
        terms=work.dwconv_3x3_terms, inplace=_RASTER)
_kernel("mcuflow_dwconv_inplace_s8", "mcuflow_dwconv", (OpKind.DEPTHWISE_CONV_2D,),
        "DEPTHWISE_CONV_2D planned in place (one image, multiplier 1): one output channel in "
        "scratch at a time, written back over its input channel.",
        terms=work.dwconv_inplace_terms, inplace=(InPlace.DEPTHWISE,), scratch=_one_channel)
_kernel("mcuflow_dwconv_3x3_dsp_s8", "mcuflow_dwconv_dsp", (OpKind.DEPTHWISE_CONV_2D,),
        _WEIGHTED_DSP + "3x3 DEPTHWISE_CONV_2D channel by channel over a padded int16 plane.",
        dsp=True,
        terms=work.dwconv_3x3_dsp_terms, inplace=(InPlace.DEPTHWISE,), scratch=_dsp_plane)
_kernel("mcuflow_dwconv_dsp_s8", "mcuflow_dwconv_dsp", (OpKind.DEPTHWISE_CONV_2D,),
        _WEIGHTED_DSP + "DEPTHWISE_CONV_2D pixel by pixel, four channels per step, no scratch.",
        dsp=True,
        terms=work.dwconv_dsp_terms, inplace=_RASTER)
_kernel("mcuflow_dwconv_dense_dsp_s8", "mcuflow_dwconv_dense_dsp", (OpKind.DEPTHWISE_CONV_2D,),
        _WEIGHTED_DSP + "DEPTHWISE_CONV_2D of at most 8 input channels and a depth multiplier "
        "above 1 (any kernel, stride, dilation) as CONV_2D's 2x2 blocked matrix product, each "
        "output channel's weights zero outside its input channel.",
        dsp=True,
        terms=work.conv2d_dsp_terms, inplace=_RASTER, scratch=_dense_columns)
_kernel("mcuflow_fully_connected_s8", "mcuflow_conv", (OpKind.FULLY_CONNECTED,),
        "FULLY_CONNECTED: one dot product per output unit.",
        terms=work.fully_connected_terms)
_kernel("mcuflow_fully_connected_dsp_s8", "mcuflow_conv_dsp", (OpKind.FULLY_CONNECTED,),
        _WEIGHTED_DSP + "FULLY_CONNECTED as a matrix-vector product, four units per pass.",
        dsp=True,
        terms=work.fully_connected_dsp_terms, scratch=_dsp_row)
_kernel("mcuflow_fully_connected_short_dsp_s8", "mcuflow_conv_dsp", (OpKind.FULLY_CONNECTED,),
        _WEIGHTED_DSP + "FULLY_CONNECTED of depth at most 8 (one-multiply requantisation): the "
        "input row in registers, unit by unit.",
        dsp=True, terms=work.fully_connected_short_dsp_terms)
_kernel("mcuflow_fully_connected_few_dsp_s8", "mcuflow_conv_dsp", (OpKind.FULLY_CONNECTED,),
        _WEIGHTED_DSP + "FULLY_CONNECTED of 1 to 4 units, depth a multiple of 4 (one-multiply "
        "requantisation): every accumulator in registers; 5 to 8 units of one input row in "
        "two calls.",
        dsp=True, terms=work.fully_connected_few_dsp_terms)
_kernel("mcuflow_avg_pool_s8", "mcuflow_pool", (OpKind.AVERAGE_POOL_2D,),
        "AVERAGE_POOL_2D.",
        terms=work.avg_pool_terms, inplace=_RASTER)
_kernel("mcuflow_max_pool_s8", "mcuflow_pool", (OpKind.MAX_POOL_2D,), "MAX_POOL_2D.",
        terms=work.max_pool_terms, inplace=_RASTER)
_kernel("mcuflow_mean_s8", "mcuflow_mean", (OpKind.MEAN, OpKind.SUM),
        "MEAN and SUM over any axes (SUM: no 1/count in the multiplier).",
        terms=work.mean_terms)
_kernel("mcuflow_softmax_s8", "mcuflow_softmax", (OpKind.SOFTMAX,),
        "SOFTMAX along the last axis, exp from a 256-entry table.",
        terms=work.softmax_terms)
_kernel("mcuflow_log_softmax_s8", "mcuflow_softmax", (OpKind.LOG_SOFTMAX,),
        "LOG_SOFTMAX along the last axis, exp from a 256-entry table, a fixed-point log per row.",
        terms=work.softmax_terms)
_kernel("mcuflow_l2_normalization_s8", "mcuflow_softmax", (OpKind.L2_NORMALIZATION,),
        "L2_NORMALIZATION along the last axis: per row an inverse square root (Newton-Raphson).",
        terms=work.softmax_terms)
_kernel("mcuflow_binary_s8", "mcuflow_elementwise",
        (OpKind.ADD, OpKind.SUB, OpKind.MUL, OpKind.SQUARED_DIFFERENCE, OpKind.PRELU),
        "ADD, SUB, MUL, SQUARED_DIFFERENCE and PRELU with broadcasting, TFLite's fixed-point "
        "rescaling per element.",
        terms=work.binary_terms, inplace=_ELEMENTWISE)
_kernel("mcuflow_maximum_minimum_s8", "mcuflow_maximum_minimum",
        (OpKind.MAXIMUM, OpKind.MINIMUM), "MAXIMUM and MINIMUM with broadcasting.",
        terms=work.binary_terms, inplace=_ELEMENTWISE)
_kernel("mcuflow_add_dsp_s8", "mcuflow_elementwise_dsp", (OpKind.ADD, OpKind.SUB),
        _WEIGHTED_DSP + "ADD and SUB with each input's rescaling tabulated.", dsp=True,
        terms=work.add_dsp_terms, inplace=_ELEMENTWISE)
_kernel("mcuflow_lookup_s8", "mcuflow_lookup",
        (OpKind.RELU, OpKind.RELU6, OpKind.LEAKY_RELU, OpKind.HARD_SWISH, OpKind.LOGISTIC,
         OpKind.TANH, OpKind.QUANTIZE, OpKind.ABS),
        "int8 to int8 element-wise ops (and QUANTIZE from or to uint8): one 256-entry table "
        "lookup per element.",
        terms=work.lookup_terms, inplace=_ELEMENTWISE)
_kernel("mcuflow_lookup_f32", "mcuflow_lookup", (OpKind.DEQUANTIZE,),
        "DEQUANTIZE: one 256-entry float table lookup per element.",
        terms=work.lookup_terms)
_kernel("mcuflow_quantize_f32", "mcuflow_lookup", (OpKind.QUANTIZE,),
        "QUANTIZE of a float32 input.",
        terms=work.lookup_terms, inplace=_ELEMENTWISE)
_kernel("mcuflow_copy_rows", "mcuflow_data", (OpKind.RESHAPE, OpKind.SQUEEZE,
                                              OpKind.CONCATENATION, OpKind.SLICE,
                                              OpKind.EXPAND_DIMS, OpKind.STRIDED_SLICE,
                                              OpKind.SPLIT, OpKind.SPLIT_V, OpKind.UNPACK,
                                              OpKind.PACK),
        "RESHAPE, SQUEEZE, EXPAND_DIMS and CONCATENATION not planned in place, and SLICE of rows "
        "with one input stride (SliceLayout.rows_only): row copies. "
        "Also a STRIDED_SLICE that is such a SLICE, and SPLIT, SPLIT_V, UNPACK and PACK: a "
        "call per piece (piece_copies).",
        terms=_copy_terms, any_width=True)
_kernel("mcuflow_pad_s8", "mcuflow_data", (OpKind.PAD,), "PAD with the zero point.",
        terms=work.pad_terms, any_width=True)
_kernel("mcuflow_slice_s8", "mcuflow_data", (OpKind.SLICE, OpKind.STRIDED_SLICE),
        "Any other SLICE: a memcpy per contiguous run. "
        "Also a STRIDED_SLICE that is a plain slice (ir.ops.strided_box).",
        terms=_slice_terms, any_width=True)


@dataclass(frozen=True)
class StridedLayout:
    """The read of mcuflow_strided_copy_s8, in input elements.

    Output element (i0, i1, ...) in order is input element `start` + sum(i_d * steps[d]); dims
    of extent 1 are dropped and dims read in one run merged.
    """

    dims: tuple[int, ...]
    steps: tuple[int, ...]
    start: int

    @property
    def runs(self) -> int:
        """Runs along the last dim."""
        return math.prod(self.dims[:-1])


def strided_layout(graph: Graph, op: Operator) -> StridedLayout:
    """The read of a TRANSPOSE, a REVERSE_V2 or a STRIDED_SLICE with steps, in input elements."""
    shape = graph.tensors[op.inputs[0]].shape
    strides = [math.prod(shape[a + 1:]) for a in range(len(shape))]
    if op.kind is OpKind.TRANSPOSE:
        axes = [(shape[a], strides[a]) for a in op.attrs.perm]
        start = 0
    elif op.kind is OpKind.REVERSE_V2:
        flipped = op.attrs.axes
        axes = [(n, -stride if a in flipped else stride)
                for a, (n, stride) in enumerate(zip(shape, strides, strict=True))]
        start = sum((shape[a] - 1) * strides[a] for a in flipped)
    else:
        ranges = strided_slice_ranges(shape, op.attrs)
        axes = [(len(r), r.step * stride) for r, stride in zip(ranges, strides, strict=True)]
        start = sum(r.start * stride for r, stride in zip(ranges, strides, strict=True))
    merged: list[tuple[int, int]] = []
    for extent, step in axes:
        if extent == 1:
            continue
        if merged and merged[-1][1] == step * extent:
            merged[-1] = (merged[-1][0] * extent, step)
        else:
            merged.append((extent, step))
    dims, steps = zip(*merged or [(1, 1)], strict=True)
    return StridedLayout(dims, steps, start)


def _strided_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_strided_copy_s8.

    Per run an offset over the dims (`loops`), then a memcpy (`gathered` bytes) when the last
    step is 1, else an element (int8 or int16) at a time (`elements`).
    """
    layout = strided_layout(graph, op)
    out = graph.tensors[op.outputs[0]]
    copied = Work(gathered=out.nbytes) if layout.steps[-1] == 1 else Work(elements=out.size)
    return copied + Work(calls=1, rows=layout.runs, loops=layout.runs * len(layout.dims))


def gather_layout(graph: Graph, op: Operator) -> tuple[int, int, int]:
    """(outer blocks, axis size, inner bytes) of a GATHER's input around its axis."""
    x = graph.tensors[op.inputs[0]]
    axis = op.attrs.axis
    return (math.prod(x.shape[:axis]), x.shape[axis],
            math.prod(x.shape[axis + 1:]) * x.dtype.itemsize)


def _gather_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_gather_s8: a memcpy per gathered slice (`rows`, `gathered` bytes)."""
    outer, _, _ = gather_layout(graph, op)
    return Work(calls=1, rows=outer * len(op.attrs.indices),
                gathered=graph.tensors[op.outputs[0]].nbytes)


_kernel("mcuflow_strided_copy_s8", "mcuflow_shuffle",
        (OpKind.TRANSPOSE, OpKind.STRIDED_SLICE, OpKind.REVERSE_V2),
        "TRANSPOSE, REVERSE_V2, and STRIDED_SLICE with steps other than 1: a strided read, a "
        "memcpy per run where the last read dim is contiguous.",
        terms=_strided_terms, any_width=True)
_kernel("mcuflow_gather_s8", "mcuflow_shuffle", (OpKind.GATHER,),
        "GATHER along one axis at constant indices: a memcpy per gathered slice.",
        terms=_gather_terms, any_width=True)


def arg_layout(graph: Graph, op: Operator) -> tuple[int, int, int]:
    """(outer, axis, inner) of ARG_MAX / ARG_MIN `op`'s input around its axis."""
    shape, axis = graph.tensors[op.inputs[0]].shape, op.attrs.axis
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _arg_terms(graph: Graph, op: Operator) -> Work:
    """mcuflow_arg_extreme_s8: per output a scan along the axis (`elements` compared)."""
    outer, axis, inner = arg_layout(graph, op)
    return Work(calls=1, rows=outer, outputs=outer * inner, elements=outer * axis * inner)


_kernel("mcuflow_reduce_extreme_s8", "mcuflow_reduce", (OpKind.REDUCE_MAX, OpKind.REDUCE_MIN),
        "REDUCE_MAX and REDUCE_MIN over any axes: stored values compared.",
        terms=work.mean_terms)
_kernel("mcuflow_arg_extreme_s8", "mcuflow_reduce", (OpKind.ARG_MAX, OpKind.ARG_MIN),
        "ARG_MAX and ARG_MIN along one axis: int32 index of the first extreme value.",
        terms=_arg_terms)


def _resize_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_resize_nearest_s8.

    Per output row (`rows`): a memcpy of the row above (`loops`, `gathered` bytes) when it has
    the same source row, else a memcpy per pixel (`pixels`, `elements` bytes), or with one
    byte per pixel (one int8 channel) a byte per pixel (`outputs`).
    """
    from mcuflow.ref.resize_nearest_neighbor import prepare_resize  # ref imports ir only

    x = graph.tensors[op.inputs[0]]
    batches, _, _, channels = x.shape
    depth = channels * x.dtype.itemsize
    tables = prepare_resize(graph.tensors[op.inputs[0]].shape, op.attrs)
    rows, width = tables.rows.tolist(), len(tables.cols)
    repeated = batches * sum(above == row for above, row in zip(rows, rows[1:], strict=False))
    fresh = batches * len(rows) - repeated
    copied = Work(pixels=fresh * width, elements=fresh * width * depth) if depth > 1 else Work(
        outputs=fresh * width)
    return copied + Work(calls=1, rows=batches * len(rows), loops=repeated,
                         gathered=repeated * width * depth)


_kernel("mcuflow_resize_nearest_s8", "mcuflow_resize", (OpKind.RESIZE_NEAREST_NEIGHBOR,),
        "RESIZE_NEAREST_NEIGHBOR: a copy per output pixel from index tables frozen at code "
        "generation, a row copy where a row repeats the one above.",
        terms=_resize_terms, any_width=True)


def _reach(out_size: int, kernel: int, stride: int, size: int, pad: int) -> int:
    """(input index, tap) pairs along one axis of a transpose convolution landing in its output."""
    return sum(1 for i in range(size) for k in range(kernel)
               if 0 <= i * stride + k - pad < out_size)


def _transpose_conv_reach(graph: Graph, op: Operator) -> tuple[int, int]:
    """(input pixel, tap) pairs landing in the output, and the most landing on one pixel."""
    n, in_h, in_w, _ = graph.tensors[op.inputs[0]].shape
    _, k_h, k_w, _ = graph.tensors[op.inputs[1]].shape
    attrs = op.attrs
    pads = transpose_conv_pads(attrs, (k_h, k_w))
    axes = ((attrs.window_hw[0], k_h, attrs.stride_h, in_h),
            (attrs.window_hw[1], k_w, attrs.stride_w, in_w))
    reached = [_reach(out, k, s, size, pad) for (out, k, s, size), pad in zip(axes, pads,
                                                                               strict=True)]
    return n * reached[0] * reached[1], math.prod(-(-k // s) for _, k, s, _ in axes)


def _transpose_conv_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_transpose_conv_s8.

    Per output pixel (`pixels`) and channel (`outputs`): a dot product of Cin (`macs`) for each
    input pixel and tap reaching it (`taps`).
    """
    out_c, _, _, in_c = graph.tensors[op.inputs[1]].shape
    pairs, _ = _transpose_conv_reach(graph, op)
    pixels = graph.tensors[op.outputs[0]].size // out_c
    return Work(calls=1, pixels=pixels, outputs=pixels * out_c, taps=pairs * out_c,
                macs=pairs * out_c * in_c)


def _transpose_conv_dsp_terms(graph: Graph, op: Operator) -> Work:
    """mcuflow_transpose_conv_dsp_s8: the portable kernel's work and `gathered` widened values."""
    pairs, _ = _transpose_conv_reach(graph, op)
    in_c = graph.tensors[op.inputs[0]].shape[3]
    return _transpose_conv_terms(graph, op) + Work(gathered=pairs * in_c)


TCONV_DSP_DEPTH = 8
"""The fewest input channels at which mcuflow_transpose_conv_dsp_s8 beats the portable kernel
(Cortex-M4 on QEMU: 0.9x the instructions at 8 channels, 0.5x-0.7x at 24 to 64, but 1.1x-1.3x
at 1 to 4, where widening and the per-tap loop outweigh the SMLADs)."""


def transpose_conv_kernel(graph: Graph, op: Operator, dsp: bool) -> str:
    """The kernel of a TRANSPOSE_CONV step: the DSP one on a DSP core for deep enough inputs."""
    deep = graph.tensors[op.inputs[0]].shape[3] >= TCONV_DSP_DEPTH
    return "mcuflow_transpose_conv_dsp_s8" if dsp and deep else "mcuflow_transpose_conv_s8"


def _tconv_columns(graph: Graph, op: Operator, way: InPlace) -> int:
    """int16 input pixels reaching one output pixel, channels rounded up to 4.

    As MCUFLOW_DSP_TCONV_COLUMN; none below TCONV_DSP_DEPTH input channels, where the portable
    kernel runs instead.
    """
    depth = graph.tensors[op.inputs[0]].shape[3]
    if depth < TCONV_DSP_DEPTH:
        return 0
    _, most = _transpose_conv_reach(graph, op)
    return most * 2 * (-(-depth // 4) * 4)


_kernel("mcuflow_transpose_conv_s8", "mcuflow_tconv", (OpKind.TRANSPOSE_CONV,),
        "TRANSPOSE_CONV gathered per output pixel: the input pixels and taps reaching it, one "
        "dot product each per output channel, no scratch.",
        terms=_transpose_conv_terms)
_kernel("mcuflow_transpose_conv_dsp_s8", "mcuflow_tconv_dsp", (OpKind.TRANSPOSE_CONV,),
        _WEIGHTED_DSP + "TRANSPOSE_CONV of at least 8 input channels gathered per output pixel, "
        "the input pixels reaching it widened to int16 in scratch once, two MACs per SMLAD.",
        dsp=True, terms=_transpose_conv_dsp_terms, scratch=_tconv_columns)


def _tconv_phase_columns(graph: Graph, op: Operator, way: InPlace) -> int:
    """mcuflow_conv2d_dsp_s8's columns for the output phase of most columns (hw.tconv_phases)."""
    phases = transpose_conv_phases(graph, op)
    depth = graph.tensors[op.inputs[0]].shape[3]
    return 16 * max((phase_groups(depth, phase) for phase in phases or ()), default=0)


def transpose_conv_phased_kernel(graph: Graph, op: Operator, dsp: bool) -> str:
    """The kernel of a TRANSPOSE_CONV step: one DSP CONV_2D per output phase on a DSP core.

    Where every phase has taps and starts before the input; else as transpose_conv_kernel.
    """
    if dsp and transpose_conv_phases(graph, op) is not None:
        return "mcuflow_transpose_conv_phases_dsp_s8"
    return transpose_conv_kernel(graph, op, dsp)


_kernel("mcuflow_transpose_conv_phases_dsp_s8", "mcuflow_tconv_phases_dsp",
        (OpKind.TRANSPOSE_CONV,),
        _WEIGHTED_DSP + "TRANSPOSE_CONV as one stride-1 CONV_2D per output phase (the filter "
        "taps reaching it, flipped, packed in channel pairs), 2x2 blocked SMLADs, no product by "
        "an inserted zero.",
        dsp=True, terms=work.transpose_conv_phases_dsp_terms, scratch=_tconv_phase_columns)


def _resize_bilinear_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_resize_bilinear_s8.

    Per output row (`rows`) and pixel (`pixels`) the tables read and weights multiplied, per
    output value (`outputs`) four products and a rounding.
    """
    batches, _, _, depth = graph.tensors[op.inputs[0]].shape
    _, out_h, out_w, _ = graph.tensors[op.outputs[0]].shape
    pixels = batches * out_h * out_w
    return Work(calls=1, rows=batches * out_h, pixels=pixels, outputs=pixels * depth)


_kernel("mcuflow_resize_bilinear_s8", "mcuflow_resize_bilinear", (OpKind.RESIZE_BILINEAR,),
        "RESIZE_BILINEAR: four weighted source values per output value, source indices and "
        "10-bit weights frozen at code generation.",
        terms=_resize_bilinear_terms)


def tile_layout(shape: tuple[int, ...], multiples: tuple[int, ...]
                ) -> tuple[list[int], list[int]]:
    """TILE's dims and multiples, every untiled dim merged into the dim before it.

    A block of whole rows tiles as one run; at least one dim.
    """
    dims: list[int] = []
    counts: list[int] = []
    for size, multiple in zip(shape, multiples, strict=True):
        if dims and multiple == 1:
            dims[-1] *= size
        elif size > 1 or multiple > 1:
            dims.append(size)
            counts.append(multiple)
    return (dims, counts) if dims else ([math.prod(shape)], [1])


def tile_of(graph: Graph, op: Operator) -> tuple[list[int], list[int]]:
    """tile_layout of TILE `op`, or of BROADCAST_TO `op` (its input padded with leading 1s).

    In bytes: the last dim, a contiguous run, counts the bytes of its elements.
    """
    x = graph.tensors[op.inputs[0]]
    shape = x.shape + (x.dtype.itemsize,)
    if op.kind is OpKind.TILE:
        return tile_layout(shape, (*op.attrs.multiples, 1))
    target = op.attrs.shape
    multiples = broadcast_multiples(x.shape, target) or ()
    return tile_layout((1,) * (len(target) - len(x.shape)) + tuple(shape), (*multiples, 1))


def _tile_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_tile_s8.

    Per block of dims d.. of each outer input index a call (`rows`) and multiples[d] - 1 copies
    of the tiled block (`loops`); the innermost runs copy the input once (`elements` bytes),
    the repeats the rest of the output (`gathered` bytes).
    """
    dims, counts = tile_of(graph, op)
    blocks = [math.prod(dims[:k]) for k in range(len(dims))]
    size = math.prod(dims)
    out = size * math.prod(counts)
    return Work(calls=1, rows=sum(blocks), elements=size, gathered=out - size,
                loops=sum(b * (m - 1) for b, m in zip(blocks, counts, strict=True)))


_kernel("mcuflow_tile_s8", "mcuflow_tile", (OpKind.TILE, OpKind.BROADCAST_TO),
        "TILE and BROADCAST_TO: the input's innermost runs copied, then each tiled block copied "
        "multiples - 1 times.",
        terms=_tile_terms, any_width=True)


def _depth_space_terms(graph: Graph, op: Operator) -> Work:
    """Work of DEPTH_TO_SPACE / SPACE_TO_DEPTH.

    A memcpy of block x depth bytes per run (`pixels`), every byte (`elements`) copied once.
    """
    size = graph.tensors[op.inputs[0]].size
    big = graph.tensors[op.outputs[0] if op.kind is OpKind.DEPTH_TO_SPACE else op.inputs[0]]
    batches, height, width, depth = big.shape
    return Work(calls=1, rows=batches * height, pixels=batches * height * width
                // op.attrs.block_size, elements=size)


_kernel("mcuflow_depth_to_space_s8", "mcuflow_depth_space", (OpKind.DEPTH_TO_SPACE,),
        "DEPTH_TO_SPACE: a copy of block x depth values per run of output pixels.",
        terms=_depth_space_terms)
_kernel("mcuflow_space_to_depth_s8", "mcuflow_depth_space", (OpKind.SPACE_TO_DEPTH,),
        "SPACE_TO_DEPTH: a copy of block x depth values per run of input pixels.",
        terms=_depth_space_terms)


def _batch_space_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_space_to_batch_s8 and mcuflow_batch_to_space_s8.

    Per row of the batched tensor (`rows`) a bounds test, per pixel (`pixels`) a memcpy or
    memset of `depth` bytes (`elements` bytes in all).
    """
    g = batch_space_layout(graph, op)
    rows = g.batches * g.block_h * g.block_w * g.batch_h
    return Work(calls=1, rows=rows, pixels=rows * g.batch_w, elements=rows * g.batch_w * g.depth)


_kernel("mcuflow_space_to_batch_s8", "mcuflow_batch_space", (OpKind.SPACE_TO_BATCH_ND,),
        "SPACE_TO_BATCH_ND with a constant block and paddings: pixel copies, zero-point padding.",
        terms=_batch_space_terms)
_kernel("mcuflow_batch_to_space_s8", "mcuflow_batch_space", (OpKind.BATCH_TO_SPACE_ND,),
        "BATCH_TO_SPACE_ND with a constant block and crops: pixel copies.",
        terms=_batch_space_terms)


def _svdf_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_svdf_s8.

    Per batch and filter (`rows`): a feature dot product (`macs` over the input) requantised to
    int16, a time dot product and a state shift (`taps`, each over the memory); per unit a
    requantised output (`outputs`).
    """
    batch, size, filters, memory, units = svdf_dims(graph, op)
    return Work(calls=1, rows=batch * filters, macs=batch * filters * size,
                taps=batch * filters * memory, outputs=batch * units)


_kernel("mcuflow_svdf_s8", "mcuflow_svdf", (OpKind.SVDF,),
        "SVDF: feature and time dot products over an int16 state kept outside the arena.",
        terms=_svdf_terms)


def _svdf_dsp_scratch(graph: Graph, op: Operator, way: InPlace) -> int:
    """One input row as int16, then one int32 feature sum per filter (rounded up to 4)."""
    filters = graph.tensors[op.inputs[1]].shape[0]
    return _dsp_row(graph, op, way) + 16 * -(-filters // 4)


def _svdf_dsp_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_svdf_dsp_s8.

    Per batch a gather of the input row (`gathered` groups of 4 columns) and a block per quad
    of filters (`blocks`) over the groups (`macs`); per batch and filter (`rows`) an int16
    requantisation and the state shift with the time dot product, two values per step
    (`pairs`); per unit a requantised output (`outputs`).
    """
    batch, size, filters, memory, units = svdf_dims(graph, op)
    groups = dsp_groups(size)
    quads = batch * -(-filters // 4)
    return Work(calls=1, rows=batch * filters, gathered=batch * groups, blocks=quads,
                macs=quads * groups, pairs=batch * filters * (memory // 2), outputs=batch * units)


_kernel("mcuflow_svdf_dsp_s8", "mcuflow_conv_dsp", (OpKind.SVDF,),
        _WEIGHTED_DSP + "SVDF with FULLY_CONNECTED's matrix-vector product for the features "
        "and the state shifted by the time dot products that read it (SMLAD on int16 pairs).",
        dsp=True, terms=_svdf_dsp_terms, scratch=_svdf_dsp_scratch)


def _lstm_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_lstm_s8.

    Per step and batch row (`rows`), 4 x units gate rows (`outputs`: two dot products
    requantised, an activation) of features + units MACs, and units cell updates (`elements`:
    CwiseMul, tanh, requantisation).
    """
    batch, time, features, units = lstm_dims(graph, op)
    rows = batch * time
    return Work(calls=1, rows=rows, outputs=rows * 4 * units,
                macs=rows * 4 * units * (features + units), elements=rows * units)


def _lstm_scratch(graph: Graph, op: Operator, way: InPlace) -> int:
    """The four gates of one batch row as int16."""
    return 4 * graph.tensors[op.outputs[0]].shape[-1] * 2


_kernel("mcuflow_lstm_s8", "mcuflow_lstm", (OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM,),
        "UNIDIRECTIONAL_SEQUENCE_LSTM (integer 8x8_16): gates in int16 scratch, the output and "
        "cell states in static storage that persists across inferences.",
        terms=_lstm_terms, scratch=_lstm_scratch)


def _lstm_dsp_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_lstm_dsp_s8.

    Per step and batch row (`rows`) two packed products over the stacked gates (`macs`, both
    depths rounded up to groups of 4), 4 x units requantisations and activations (`outputs`)
    and units cell updates (`elements`).
    """
    batch, time, features, units = lstm_dims(graph, op)
    rows = batch * time
    depth = 4 * (dsp_groups(features) + dsp_groups(units))
    return Work(calls=1, rows=rows, outputs=rows * 4 * units, macs=rows * 4 * units * depth,
                elements=rows * units)


def _lstm_dsp_scratch(graph: Graph, op: Operator, way: InPlace) -> int:
    """MCUFLOW_DSP_LSTM_SCRATCH_WORDS: two gathered input rows, three rows of accumulators."""
    _, _, features, units = lstm_dims(graph, op)
    return 4 * (max(4 * dsp_groups(features), 2 * dsp_groups(units)) + 12 * units)


_kernel("mcuflow_lstm_dsp_s8", "mcuflow_conv_dsp", (OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM,),
        "UNIDIRECTIONAL_SEQUENCE_LSTM (integer 8x8_16) on the DSP extension: the stacked gates' "
        "packed products, SMMLAR requantisation, gemmlowp sigmoid / tanh from exp and "
        "reciprocal tables.",
        dsp=True, terms=_lstm_dsp_terms, scratch=_lstm_dsp_scratch)
_kernel("mcuflow_codebook_decode_s8", "mcuflow_codebook", tuple(OpKind),
        "Before any step reading a codebook-stored constant: Huffman-decodes it into scratch.",
        terms=work.codebook_terms,
        inplace=(InPlace.ELEMENTWISE, InPlace.OVERLAP, InPlace.DEPTHWISE))

def _s16_window_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_conv2d_s16 and mcuflow_dwconv_s16.

    Per output (`outputs`) the rows of its window (`rows`), its in-bounds taps (`taps`) and one
    int64 MAC per tap and input channel (`macs`).
    """
    w = work.window(graph, op)
    depth = w.in_c if op.kind is OpKind.CONV_2D else 1
    return Work(calls=1, pixels=w.pixels, outputs=w.pixels * w.out_c,
                rows=w.pixels * w.out_c * w.k_h, taps=w.taps * w.out_c,
                macs=w.taps * w.out_c * depth)


def _s16_fc_terms(graph: Graph, op: Operator) -> Work:
    """mcuflow_fully_connected_s16: per unit and row an int64 dot product (`macs`)."""
    units, depth = graph.tensors[op.inputs[1]].shape
    rows = graph.tensors[op.inputs[0]].size // depth
    return Work(calls=1, rows=rows, outputs=rows * units, macs=rows * units * depth)


_kernel("mcuflow_conv2d_s16", "mcuflow_s16", (OpKind.CONV_2D,),
        "int16x8 CONV_2D (int16 activations, int8 weights, int64 bias): a direct window loop, "
        "int64 accumulator.",
        terms=_s16_window_terms, int16=True)
_kernel("mcuflow_dwconv_s16", "mcuflow_s16", (OpKind.DEPTHWISE_CONV_2D,),
        "int16x8 DEPTHWISE_CONV_2D of any kernel size and depth multiplier, int64 accumulator.",
        terms=_s16_window_terms, int16=True)


def _dw_s16_plane(graph: Graph, op: Operator, way: InPlace) -> int:
    """The zero-padded int16 plane of one input channel (hw.dw_s16)."""
    plane = dw_s16_plane(graph, op)
    return 0 if plane is None else plane.nbytes


_kernel("mcuflow_dwconv_s16_dsp", "mcuflow_dwconv_s16_dsp", (OpKind.DEPTHWISE_CONV_2D,),
        _WEIGHTED_DSP + "int16x8 DEPTHWISE_CONV_2D of depth multiplier 1, no dilation, stride "
        "1 or 2 along the width: channel by channel over a zero-padded int16 plane, two outputs "
        "per pass, int32 sums proven not to overflow.",
        dsp=True, terms=dw_s16_terms, scratch=_dw_s16_plane, int16=True)
_kernel("mcuflow_fully_connected_s16", "mcuflow_s16", (OpKind.FULLY_CONNECTED,),
        "int16x8 FULLY_CONNECTED: one int64 dot product per output unit, double-precision "
        "requantisation.",
        terms=_s16_fc_terms, int16=True)


def _s16_dsp_conv_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_conv2d_s16_dsp.

    Per output pixel a gather (`pixels`) of its window rows (`rows`; `taps` too with a
    dilation_w above 1), `gathered` column words in all; per pair of pixels and pair of
    channels a block (`blocks`) over the groups of 4 columns (`macs` the groups in whole fours,
    `tails` the rest); `outputs` requantised.
    """
    w = work.window(graph, op)
    dilation_w = op.attrs.dilation_w
    groups = dsp_groups(s16_conv_depth(w.k_h, w.k_w, w.in_c, dilation_w))
    blocks = -(-w.pixels // 2) * -(-w.out_c // 2)
    rows = w.pixels * w.k_h
    return Work(calls=1, pixels=w.pixels, rows=rows,
                taps=rows * w.k_w if dilation_w > 1 else 0,
                gathered=rows * s16_row_words(w.k_w, w.in_c, dilation_w), blocks=blocks,
                macs=blocks * (groups - groups % 4), tails=blocks * (groups % 4),
                outputs=w.pixels * w.out_c)


def _s16_dsp_fc_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_fully_connected_s16_dsp.

    Per input row a copy (`gathered` halfwords); per quad of units a block (`blocks`) over the
    groups of 4 columns (`macs` in whole fours, `tails` the rest); per unit and row a
    requantisation (`outputs`).
    """
    units, depth = graph.tensors[op.inputs[1]].shape
    rows = graph.tensors[op.inputs[0]].size // depth
    groups, blocks = dsp_groups(depth), rows * -(-units // 4)
    return Work(calls=1, rows=rows, gathered=rows * groups * 4, blocks=blocks,
                macs=blocks * (groups - groups % 4), tails=blocks * (groups % 4),
                outputs=rows * units)


def _s16_dsp_columns(graph: Graph, op: Operator, way: InPlace) -> int:
    """The int16 im2col of two output pixels (s16_conv_depth columns, whole groups of 4)."""
    _, k_h, k_w, in_c = graph.tensors[op.inputs[1]].shape
    return 16 * dsp_groups(s16_conv_depth(k_h, k_w, in_c, op.attrs.dilation_w))


def _s16_dsp_row(graph: Graph, op: Operator, way: InPlace) -> int:
    """One input row as int16, zero padded to whole groups of 4 columns."""
    return 8 * dsp_groups(graph.tensors[op.inputs[1]].shape[1])


_kernel("mcuflow_conv2d_s16_dsp", "mcuflow_s16_dsp", (OpKind.CONV_2D,),
        _WEIGHTED_DSP + "int16x8 CONV_2D as a 2x2 blocked matrix product of int16 weight pairs "
        "and int16 im2col columns (SMLAD), in int32 where proven to fit, else in int64 sums of "
        "int32 chunks.",
        dsp=True, terms=_s16_dsp_conv_terms, scratch=_s16_dsp_columns, int16=True)
_kernel("mcuflow_fully_connected_s16_dsp", "mcuflow_s16_dsp", (OpKind.FULLY_CONNECTED,),
        _WEIGHTED_DSP + "int16x8 FULLY_CONNECTED, four units per pass over the row, int16 weight "
        "pairs (SMLAD) in int32 or int64 sums of int32 chunks; LiteRT's double-precision "
        "requantisation decided in integers where proven.",
        dsp=True, terms=_s16_dsp_fc_terms, scratch=_s16_dsp_row, int16=True)

_kernel("mcuflow_binary_s16", "mcuflow_s16", (OpKind.ADD, OpKind.MUL),
        "int16 ADD (LiteRT's general path) and MUL with broadcasting.",
        terms=work.binary_terms, inplace=_ELEMENTWISE, int16=True)
_kernel("mcuflow_avg_pool_s16", "mcuflow_s16", (OpKind.AVERAGE_POOL_2D,),
        "int16 AVERAGE_POOL_2D.", terms=work.avg_pool_terms, int16=True)
_kernel("mcuflow_max_pool_s16", "mcuflow_s16", (OpKind.MAX_POOL_2D,),
        "int16 MAX_POOL_2D.", terms=work.max_pool_terms, int16=True)
_kernel("mcuflow_softmax_s16", "mcuflow_s16", (OpKind.SOFTMAX,),
        "int16 SOFTMAX along the last axis: exp and 1/(1+x) from 513-entry interpolated tables.",
        terms=work.softmax_terms, int16=True)
_kernel("mcuflow_sigmoid_s16", "mcuflow_s16", (OpKind.LOGISTIC, OpKind.TANH),
        "int16 LOGISTIC and TANH: a rescaling, then LiteRT's 256-entry sigmoid table "
        "interpolated.",
        terms=work.lookup_terms, inplace=_ELEMENTWISE, int16=True)
_kernel("mcuflow_mean_s16", "mcuflow_mean", (OpKind.MEAN,), "int16 MEAN over any axes.",
        terms=work.mean_terms, int16=True)
_kernel("mcuflow_quantize_f32_s16", "mcuflow_s16", (OpKind.QUANTIZE,),
        "QUANTIZE of a float32 input to int16.",
        terms=work.lookup_terms, inplace=_ELEMENTWISE, int16=True)
_kernel("mcuflow_requantize_s16", "mcuflow_s16", (OpKind.QUANTIZE,),
        "QUANTIZE between int8 and int16, or within int16 (a change of scale).",
        terms=work.lookup_terms, inplace=_ELEMENTWISE, int16=True)
_kernel("mcuflow_dequantize_s16", "mcuflow_s16", (OpKind.DEQUANTIZE,),
        "DEQUANTIZE of an int16 input.",
        terms=work.lookup_terms, int16=True)


def int16_step(graph: Graph, op: Operator) -> bool:
    """True when a step computes on int16 activations (LiteRT's int16x8 scheme).

    The activations are those the support rules check (ir.constraints.data_inputs and the
    outputs): an SVDF's or LSTM's int16 state and a layer's weights are not among them.
    """
    return any(graph.tensors[name].dtype is DType.INT16 for name in (*data_inputs(op), *op.outputs))


def serves(record: Kernel, int16: bool) -> bool:
    """True when kernel `record` may run a step, int16 or not (`int16`: int16_step).

    int16 kernels run exactly the int16 steps; the codebook decoder runs before any step, and
    the data-movement kernels (`any_width`) run int8 and int16 steps.
    """
    return record.function == CODEBOOK_DECODE or record.any_width or record.int16 == int16


STEPS_WITHOUT_CODE: OpTable[InPlace] = OpTable("way without code", complete=False, entries={
    OpKind.RESHAPE: InPlace.ALIAS, OpKind.SQUEEZE: InPlace.ALIAS,
    OpKind.EXPAND_DIMS: InPlace.ALIAS,
    OpKind.CONCATENATION: InPlace.CONCAT_SLICE, OpKind.SLICE: InPlace.ALIAS,
    OpKind.STRIDED_SLICE: InPlace.ALIAS, OpKind.SPLIT: InPlace.ALIAS,
    OpKind.SPLIT_V: InPlace.ALIAS, OpKind.UNPACK: InPlace.ALIAS,
})
"""Kinds whose step may run no kernel at all, and the way the planner then plans it."""


@cache
def kernels_of(kind: OpKind, dsp: bool) -> tuple[Kernel, ...]:
    """The records of the kernels a step of `kind` may call (`dsp`: DSP kernels included).

    Looked up once per (kind, dsp): the catalogue is complete once this module is imported.
    """
    return tuple(record for record in KERNELS.values()
                 if kind in record.kinds and (dsp or not record.dsp))


def inplace_ways(kind: OpKind) -> frozenset[InPlace]:
    """The ways a step of `kind` may share memory with its input.

    NONE, the contracts its kernels honour, and the way it runs no code at all
    (STEPS_WITHOUT_CODE).
    """
    ways = {InPlace.NONE, *(way for record in kernels_of(kind, True)
                            if record.function != CODEBOOK_DECODE for way in record.inplace)}
    if kind in STEPS_WITHOUT_CODE:
        ways.add(STEPS_WITHOUT_CODE[kind])
    return frozenset(ways)


def kernel_scratch(graph: Graph, op: Operator, way: InPlace, dsp: bool) -> int:
    """The most scratch any kernel a step `op` run as `way` may call needs.

    With `dsp` (a core with the Arm DSP extension, whose emitters fall back to the portable
    kernels), the DSP kernels' too.
    """
    int16 = int16_step(graph, op)
    return max((record.scratch_bytes(graph, op, way) for record in kernels_of(op.kind, dsp)
                if record.runs_as(way) and serves(record, int16)), default=0)


# --- the emitters' default choice --------------------------------------------------------------

_LOOKUP = frozenset({OpKind.RELU, OpKind.RELU6, OpKind.LEAKY_RELU, OpKind.HARD_SWISH,
                     OpKind.LOGISTIC, OpKind.TANH, OpKind.QUANTIZE})
_SIMPLE: OpTable[tuple[str, ...]] = OpTable("single default kernel", complete=False, entries={
    OpKind.AVERAGE_POOL_2D: ("mcuflow_avg_pool_s8",), OpKind.MAX_POOL_2D: ("mcuflow_max_pool_s8",),
    OpKind.MEAN: ("mcuflow_mean_s8",), OpKind.SOFTMAX: ("mcuflow_softmax_s8",),
    OpKind.DEQUANTIZE: ("mcuflow_lookup_f32",), OpKind.PAD: ("mcuflow_pad_s8",),
    OpKind.CONCATENATION: ("mcuflow_copy_rows",), OpKind.RESHAPE: (), OpKind.SQUEEZE: (),
    OpKind.EXPAND_DIMS: (),
    OpKind.MAXIMUM: ("mcuflow_maximum_minimum_s8",),
    OpKind.MINIMUM: ("mcuflow_maximum_minimum_s8",),
    OpKind.REDUCE_MAX: ("mcuflow_reduce_extreme_s8",),
    OpKind.REDUCE_MIN: ("mcuflow_reduce_extreme_s8",),
    OpKind.ARG_MAX: ("mcuflow_arg_extreme_s8",), OpKind.ARG_MIN: ("mcuflow_arg_extreme_s8",),
    OpKind.RESIZE_NEAREST_NEIGHBOR: ("mcuflow_resize_nearest_s8",),
    OpKind.SQUARED_DIFFERENCE: ("mcuflow_binary_s8",), OpKind.PRELU: ("mcuflow_binary_s8",),
    OpKind.ABS: ("mcuflow_lookup_s8",), OpKind.SUM: ("mcuflow_mean_s8",),
    OpKind.L2_NORMALIZATION: ("mcuflow_l2_normalization_s8",),
    OpKind.LOG_SOFTMAX: ("mcuflow_log_softmax_s8",),
    OpKind.RESIZE_BILINEAR: ("mcuflow_resize_bilinear_s8",),
    OpKind.TILE: ("mcuflow_tile_s8",),
    OpKind.BROADCAST_TO: ("mcuflow_tile_s8",),
    OpKind.DEPTH_TO_SPACE: ("mcuflow_depth_to_space_s8",),
    OpKind.SPACE_TO_DEPTH: ("mcuflow_space_to_depth_s8",),
    OpKind.SPACE_TO_BATCH_ND: ("mcuflow_space_to_batch_s8",),
    OpKind.BATCH_TO_SPACE_ND: ("mcuflow_batch_to_space_s8",),
    OpKind.SVDF: ("mcuflow_svdf_s8",),
    OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM: ("mcuflow_lstm_s8",),
    OpKind.SPLIT: ("mcuflow_copy_rows",), OpKind.SPLIT_V: ("mcuflow_copy_rows",),
    OpKind.UNPACK: ("mcuflow_copy_rows",), OpKind.PACK: ("mcuflow_copy_rows",),
    OpKind.TRANSPOSE: ("mcuflow_strided_copy_s8",), OpKind.GATHER: ("mcuflow_gather_s8",),
    OpKind.REVERSE_V2: ("mcuflow_strided_copy_s8",),
})
"""Kinds with one kernel whatever the core; RESHAPE and SQUEEZE are usually planned in place."""


def _depthwise(graph: Graph, op: Operator, dsp: bool) -> tuple[str, ...]:
    if dsp:
        if dsp_depthwise_plane(graph, op) is not None:
            return ("mcuflow_dwconv_3x3_dsp_s8",)
        if depthwise_dense_applies(graph, op):
            return ("mcuflow_dwconv_dense_dsp_s8",)
        if op.attrs.depth_multiplier == 1:
            return ("mcuflow_dwconv_dsp_s8",)
    kernel_3x3 = graph.tensors[op.inputs[1]].shape[1:3] == (3, 3)
    if kernel_3x3 and op.attrs.depth_multiplier == 1:
        return ("mcuflow_dwconv_3x3_s8",)
    return ("mcuflow_dwconv_s8",)


def _conv(graph: Graph, op: Operator, dsp: bool) -> tuple[str, ...]:
    if dsp:
        return ("mcuflow_conv2d_dsp_s8",)
    pointwise = graph.tensors[op.inputs[1]].shape[1:3] == (1, 1)
    return ("mcuflow_conv2d_1x1_s8",) if pointwise else ("mcuflow_conv2d_s8",)


FC_SHORT_DEPTH = 8
"""The deepest FULLY_CONNECTED row mcuflow_fully_connected_short_dsp_s8 holds in registers
(MCUFLOW_DSP_SHORT_DEPTH)."""
FC_FEW_UNITS = 4
"""The most units whose accumulators mcuflow_fully_connected_few_dsp_s8 keeps in registers
(MCUFLOW_DSP_FEW_UNITS)."""


FC_FEW_PASSES = 2
"""The most calls of mcuflow_fully_connected_few_dsp_s8 one FULLY_CONNECTED step of a single
input row makes, each over the next FC_FEW_UNITS units (their outputs are consecutive)."""


def fc_few_passes(graph: Graph, op: Operator) -> int:
    """Calls of mcuflow_fully_connected_few_dsp_s8 for a step: ceil(units / FC_FEW_UNITS).

    0 when that kernel does not run the step: the depth is not a multiple of 4, the step has
    more units than FC_FEW_PASSES calls hold, or more than FC_FEW_UNITS units on several rows
    (each call writes its units of every row, so the rows' outputs must not interleave).
    """
    units, depth = graph.tensors[op.inputs[1]].shape
    passes = -(-units // FC_FEW_UNITS)
    rows = graph.tensors[op.inputs[0]].size // depth
    if depth <= FC_SHORT_DEPTH or depth % 4 or passes > FC_FEW_PASSES or (passes > 1 and rows > 1):
        return 0
    return passes


def fully_connected_dsp_kernel(graph: Graph, op: Operator) -> str:
    """The DSP kernel of a FULLY_CONNECTED step by its shape, when its requantisation is FAST.

    Depth <= FC_SHORT_DEPTH: the input row in registers; at most FC_FEW_UNITS units over a depth
    that is a multiple of 4: every accumulator in registers; else four units per pass.
    """
    units, depth = graph.tensors[op.inputs[1]].shape
    if depth <= FC_SHORT_DEPTH:
        return "mcuflow_fully_connected_short_dsp_s8"
    if units <= FC_FEW_UNITS and depth % 4 == 0:
        return "mcuflow_fully_connected_few_dsp_s8"
    if fc_few_passes(graph, op) > 1:
        return "mcuflow_fully_connected_few_dsp_s8"
    return "mcuflow_fully_connected_dsp_s8"


_S16: OpTable[str] = OpTable("int16x8 kernel", complete=False, entries={
    OpKind.CONV_2D: "mcuflow_conv2d_s16", OpKind.DEPTHWISE_CONV_2D: "mcuflow_dwconv_s16",
    OpKind.FULLY_CONNECTED: "mcuflow_fully_connected_s16",
    OpKind.DEQUANTIZE: "mcuflow_dequantize_s16",
    OpKind.ADD: "mcuflow_binary_s16", OpKind.MUL: "mcuflow_binary_s16",
    OpKind.AVERAGE_POOL_2D: "mcuflow_avg_pool_s16", OpKind.MAX_POOL_2D: "mcuflow_max_pool_s16",
    OpKind.SOFTMAX: "mcuflow_softmax_s16",
    OpKind.LOGISTIC: "mcuflow_sigmoid_s16", OpKind.TANH: "mcuflow_sigmoid_s16",
    OpKind.MEAN: "mcuflow_mean_s16",
})
"""The kernel of each int16x8 kind with one kernel (QUANTIZE depends on its input)."""


S16_DSP: OpTable[str] = OpTable("int16x8 DSP kernel", complete=False, entries={
    OpKind.CONV_2D: "mcuflow_conv2d_s16_dsp",
    OpKind.FULLY_CONNECTED: "mcuflow_fully_connected_s16_dsp",
})
"""The DSP kernel an int16x8 step of these kinds tries first (its emitter may decline)."""


def _int16_kernels(graph: Graph, op: Operator) -> tuple[str, ...]:
    if op.kind in (OpKind.RESHAPE, OpKind.SQUEEZE):
        return ()
    if op.kind is OpKind.QUANTIZE:
        real = graph.tensors[op.inputs[0]].dtype is DType.FLOAT32
        return ("mcuflow_quantize_f32_s16" if real else "mcuflow_requantize_s16",)
    return (_S16[op.kind],)


def _by_kind(graph: Graph, op: Operator, dsp: bool) -> tuple[str, ...] | None:
    kind = op.kind
    if dsp and kind is OpKind.DEPTHWISE_CONV_2D and int16_step(graph, op) and (
            dw_s16_plane(graph, op) is not None):
        return ("mcuflow_dwconv_s16_dsp",)
    if dsp and int16_step(graph, op) and op.kind in S16_DSP:
        return (S16_DSP[op.kind],)
    if int16_step(graph, op) and kind not in INT16_MOVES:
        return _int16_kernels(graph, op)
    if kind is OpKind.CONV_2D:
        return _conv(graph, op, dsp)
    if kind is OpKind.DEPTHWISE_CONV_2D:
        return _depthwise(graph, op, dsp)
    if kind is OpKind.FULLY_CONNECTED:
        return (fully_connected_dsp_kernel(graph, op) if dsp else "mcuflow_fully_connected_s8",)
    if kind is OpKind.SVDF and dsp:
        return ("mcuflow_svdf_dsp_s8",)
    if kind in (OpKind.ADD, OpKind.SUB, OpKind.MUL):
        return ("mcuflow_add_dsp_s8" if dsp and kind is not OpKind.MUL else "mcuflow_binary_s8",)
    if kind is OpKind.QUANTIZE and graph.tensors[op.inputs[0]].dtype is DType.FLOAT32:
        return ("mcuflow_quantize_f32",)
    if kind in _LOOKUP:
        return ("mcuflow_lookup_s8",)
    if kind is OpKind.SLICE:
        return (slice_kernel(graph, op),)
    if kind is OpKind.TRANSPOSE_CONV:
        return (transpose_conv_phased_kernel(graph, op, dsp),)
    if kind is OpKind.STRIDED_SLICE:
        box = box_of(graph, op) is not None
        return (slice_kernel(graph, op),) if box else ("mcuflow_strided_copy_s8",)
    if kind is OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM and dsp:
        return ("mcuflow_lstm_dsp_s8",)
    return _SIMPLE.get(kind)


def default_kernels(graph: Graph, op: Operator, dsp: bool) -> tuple[str, ...] | None:
    """The kernel functions the emitters choose for `op` when nothing else is known.

    The step runs out of place (RESHAPE and SQUEEZE aliased, as the planner makes them; the
    other in-place variants depend on the plan) and with `dsp` the DSP kernel of its kind, as
    the emitters first try; codebook-stored inputs are decoded first and the layer then runs
    its portable kernel. None for a kind this choice does not know.
    """
    codebook = any(graph.tensors[name].codebook is not None for name in op.inputs)
    chosen = _by_kind(graph, op, dsp and not codebook)
    if chosen is None:
        return None
    return ((CODEBOOK_DECODE,) if codebook else ()) + chosen
