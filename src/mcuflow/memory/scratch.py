"""Scratch memory each generated kernel needs, one rule per op kind (shared with codegen)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcuflow.hw.costmodel import im2col_bytes
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import DepthwiseConv2DAttrs, OpKind
from mcuflow.ir.shapes import conv_padding
from mcuflow.memory.plan import InPlace

ScratchRule = Callable[[Graph, Operator, InPlace], int]
SCRATCH_RULES: dict[OpKind, ScratchRule] = {}


def scratch_rule(*kinds: OpKind) -> Callable[[ScratchRule], ScratchRule]:
    """Register the scratch rule of one or more op kinds (kinds without a rule need none)."""

    def register(rule: ScratchRule) -> ScratchRule:
        for kind in kinds:
            SCRATCH_RULES[kind] = rule
        return rule

    return register


DSP_SCRATCH_RULES: dict[OpKind, ScratchRule] = {}


def dsp_scratch_rule(*kinds: OpKind) -> Callable[[ScratchRule], ScratchRule]:
    """Register the scratch rule of the Arm DSP kernel of one or more op kinds."""

    def register(rule: ScratchRule) -> ScratchRule:
        for kind in kinds:
            DSP_SCRATCH_RULES[kind] = rule
        return rule

    return register


def scratch_bytes(graph: Graph, op: Operator, inplace: InPlace, dsp: bool = False) -> int:
    """Bytes of scratch RAM the generated kernel of `op` needs when run as `inplace`.

    With `dsp` (a core with the Arm DSP extension), enough for the DSP kernel too. Inputs stored
    as codebooks are decoded into the end of the scratch (see `decoded_bytes`).
    """
    rule = SCRATCH_RULES.get(op.kind)
    portable = rule(graph, op, inplace) if rule else 0
    dsp_rule = DSP_SCRATCH_RULES.get(op.kind) if dsp else None
    kernel = max(portable, dsp_rule(graph, op, inplace)) if dsp_rule else portable
    decoded = decoded_bytes(graph, op)
    return -(-kernel // DECODED_ALIGNMENT) * DECODED_ALIGNMENT + decoded if decoded else kernel


DECODED_ALIGNMENT = 16


def decoded_bytes(graph: Graph, op: Operator) -> int:
    """Bytes of the op's codebook-stored inputs once decoded (Tensor.codebook).

    The generated C decodes them right before the kernel runs into the last bytes of the step's
    scratch, after the kernel's own scratch rounded up to DECODED_ALIGNMENT.
    """
    return sum(graph.tensors[name].nbytes for name in dict.fromkeys(op.inputs)
               if graph.tensors[name].codebook is not None)


@scratch_rule(OpKind.CONV_2D)
def _conv2d(graph: Graph, op: Operator, inplace: InPlace) -> int:
    """im2col of one output pixel (hw.costmodel.im2col_bytes), in place or not."""
    return im2col_bytes(graph, op)


@scratch_rule(OpKind.DEPTHWISE_CONV_2D)
def _depthwise(graph: Graph, op: Operator, inplace: InPlace) -> int:
    """In place (TinyEngine): one output channel, OH*OW elements. Otherwise none."""
    if inplace is not InPlace.DEPTHWISE:
        return 0
    out = graph.tensors[op.outputs[0]]
    _, oh, ow, _ = out.shape
    return oh * ow * out.dtype.itemsize


# --- Arm DSP kernels (codegen/kernels/mcuflow_*_dsp.c) -----------------------------------------


def dsp_groups(depth: int) -> int:
    """Groups of 4 columns of a DSP matrix product over `depth` columns."""
    return -(-depth // 4)


def dsp_padded_channels(in_c: int) -> int:
    """Channels per tap in the DSP CONV_2D columns.

    Counts 3 more than a multiple of 4 get one zero channel, so that whole words gather them;
    others are kept (multiples of 4 gathered by words, the rest value by value).
    """
    return in_c + 1 if in_c % 4 == 3 else in_c


@dsp_scratch_rule(OpKind.CONV_2D)
def _conv2d_dsp(graph: Graph, op: Operator, inplace: InPlace) -> int:
    """im2col of two output pixels as int16, every 1x1 convolution included."""
    _, kh, kw, cin = graph.tensors[op.inputs[1]].shape
    return 16 * dsp_groups(kh * kw * dsp_padded_channels(cin))


@dsp_scratch_rule(OpKind.FULLY_CONNECTED)
def _fully_connected_dsp(graph: Graph, op: Operator, inplace: InPlace) -> int:
    """One input row as int16."""
    return 8 * dsp_groups(graph.tensors[op.inputs[1]].shape[1])


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


# Rough instructions of the kernel per output pair, per line and per gathered plane value.
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
            + _GATHER_COST * plane.rows * plane.columns)
    return cost, plane


def dsp_depthwise_plane(graph: Graph, op: Operator, inplace: InPlace) -> DwPlane | None:
    """The plane of the 3x3 DSP depthwise kernel, in its cheaper orientation.

    None when that kernel does not apply: it needs a 3x3 kernel, no dilation, a stride of 1 or 2
    along the lines, depth multiplier 1, and computes channel after channel (not OVERLAP).
    """
    attrs: DepthwiseConv2DAttrs = op.attrs
    _, in_h, in_w, _ = graph.tensors[op.inputs[0]].shape
    _, out_h, out_w, _ = graph.tensors[op.outputs[0]].shape
    kernel = graph.tensors[op.inputs[1]].shape[1:3]
    if (kernel != (3, 3) or (attrs.dilation_h, attrs.dilation_w) != (1, 1)
            or attrs.depth_multiplier != 1 or inplace not in (InPlace.NONE, InPlace.DEPTHWISE)):
        return None
    pad_top = conv_padding(in_h, 3, attrs.stride_h, 1, out_h, attrs.padding)
    pad_left = conv_padding(in_w, 3, attrs.stride_w, 1, out_w, attrs.padding)
    options = [option for option in (
        _plane((in_h, in_w, out_h, out_w), (attrs.stride_h, attrs.stride_w),
               (pad_top, pad_left), False),
        _plane((in_w, in_h, out_w, out_h), (attrs.stride_w, attrs.stride_h),
               (pad_left, pad_top), True),
    ) if option is not None]
    return min(options, key=lambda option: option[0])[1] if options else None


@dsp_scratch_rule(OpKind.DEPTHWISE_CONV_2D)
def _depthwise_dsp(graph: Graph, op: Operator, inplace: InPlace) -> int:
    """The padded int16 input plane of one channel (3x3 kernels run channel by channel)."""
    plane = dsp_depthwise_plane(graph, op, inplace)
    return 0 if plane is None else plane.nbytes
