"""Scratch memory each generated kernel needs, one rule per op kind (shared with codegen)."""

from __future__ import annotations

from collections.abc import Callable

from mcuflow.hw.costmodel import im2col_bytes
from mcuflow.hw.layouts import DwPlane, dsp_groups, dsp_padded_channels
from mcuflow.hw.layouts import dsp_depthwise_plane as geometry_plane
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.ir.registry import OpTable
from mcuflow.memory.plan import InPlace

ScratchRule = Callable[[Graph, Operator, InPlace], int]
SCRATCH_RULES: OpTable[ScratchRule] = OpTable("scratch rule", complete=False)
"""Scratch of the portable kernels; kinds without a rule need none."""
scratch_rule = SCRATCH_RULES.register

DSP_SCRATCH_RULES: OpTable[ScratchRule] = OpTable("DSP scratch rule", complete=False)
"""Scratch of the Arm DSP kernels; kinds without a rule need none."""
dsp_scratch_rule = DSP_SCRATCH_RULES.register


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


@dsp_scratch_rule(OpKind.CONV_2D)
def _conv2d_dsp(graph: Graph, op: Operator, inplace: InPlace) -> int:
    """im2col of two output pixels as int16, every 1x1 convolution included."""
    _, kh, kw, cin = graph.tensors[op.inputs[1]].shape
    return 16 * dsp_groups(kh * kw * dsp_padded_channels(cin))


@dsp_scratch_rule(OpKind.FULLY_CONNECTED)
def _fully_connected_dsp(graph: Graph, op: Operator, inplace: InPlace) -> int:
    """One input row as int16."""
    return 8 * dsp_groups(graph.tensors[op.inputs[1]].shape[1])


def dsp_depthwise_plane(graph: Graph, op: Operator, inplace: InPlace) -> DwPlane | None:
    """The plane of the 3x3 DSP depthwise kernel run as `inplace` (hw.layouts).

    None when that kernel does not apply, or when the step is OVERLAP (computed pixel by pixel).
    """
    return geometry_plane(graph, op, inplace in (InPlace.NONE, InPlace.DEPTHWISE))


@dsp_scratch_rule(OpKind.DEPTHWISE_CONV_2D)
def _depthwise_dsp(graph: Graph, op: Operator, inplace: InPlace) -> int:
    """The padded int16 input plane of one channel (3x3 kernels run channel by channel)."""
    plane = dsp_depthwise_plane(graph, op, inplace)
    return 0 if plane is None else plane.nbytes
