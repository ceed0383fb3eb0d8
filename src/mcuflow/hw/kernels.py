"""The catalogue of generated C kernels: one record per C function, read by every stage."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.hw import work
from mcuflow.hw.layouts import dsp_depthwise_plane
from mcuflow.hw.work import TermsFn, Work, generic_terms
from mcuflow.ir.graph import DType, Graph, Operator
from mcuflow.ir.ops import OpKind


@dataclass(frozen=True)
class Kernel:
    """One C kernel function of codegen/kernels.

    `source` is the stem of its C file, `dsp` whether it needs the Arm DSP extension, `kinds`
    the op kinds whose steps may call it, and `applies` says when the emitter chooses it.
    `terms` counts the work of one step that calls it (mcuflow.hw.work), which the cost model
    multiplies by the kernel's coefficients fitted per core (kernel_costs.toml); None counts
    the generic terms of `generic_terms`.
    """

    function: str
    source: str
    kinds: frozenset[OpKind]
    dsp: bool
    applies: str
    terms: TermsFn | None = None

    def work(self, graph: Graph, op: Operator) -> Work:
        """The work terms of one step `op` calling this kernel."""
        return (self.terms or generic_terms)(graph, op)


KERNELS: dict[str, Kernel] = {}


def _kernel(function: str, source: str, kinds: tuple[OpKind, ...], applies: str,
            dsp: bool = False, terms: TermsFn | None = None) -> Kernel:
    record = Kernel(function, source, frozenset(kinds), dsp, " ".join(applies.split()), terms)
    KERNELS[function] = record
    return record


def kernel(function: str) -> Kernel:
    """The catalogue record of C function `function`; KeyError names it when unknown."""
    return KERNELS[function]


_WEIGHTED_DSP = "on a core with the Arm DSP extension, "

_kernel("mcuflow_conv2d_s8", "mcuflow_conv", (OpKind.CONV_2D,),
        "CONV_2D with a kernel larger than 1x1: im2col of one output pixel, then a dot product "
        "per output channel.",
        terms=work.conv2d_terms)
_kernel("mcuflow_conv2d_1x1_s8", "mcuflow_conv", (OpKind.CONV_2D,),
        "1x1 CONV_2D: reads each input pixel directly, no scratch.",
        terms=work.conv2d_1x1_terms)
_kernel("mcuflow_conv2d_dsp_s8", "mcuflow_conv_dsp", (OpKind.CONV_2D,),
        _WEIGHTED_DSP + "CONV_2D as a 2x2 blocked matrix product over int16 im2col columns.",
        dsp=True,
        terms=work.conv2d_dsp_terms)
_kernel("mcuflow_dwconv_s8", "mcuflow_dwconv", (OpKind.DEPTHWISE_CONV_2D,),
        "DEPTHWISE_CONV_2D of any kernel size and depth multiplier.",
        terms=work.dwconv_terms)
_kernel("mcuflow_dwconv_3x3_s8", "mcuflow_dwconv", (OpKind.DEPTHWISE_CONV_2D,),
        "3x3 DEPTHWISE_CONV_2D with depth multiplier 1.",
        terms=work.dwconv_3x3_terms)
_kernel("mcuflow_dwconv_inplace_s8", "mcuflow_dwconv", (OpKind.DEPTHWISE_CONV_2D,),
        "DEPTHWISE_CONV_2D planned in place (one image, multiplier 1): one output channel in "
        "scratch at a time, written back over its input channel.",
        terms=work.dwconv_inplace_terms)
_kernel("mcuflow_dwconv_3x3_dsp_s8", "mcuflow_dwconv_dsp", (OpKind.DEPTHWISE_CONV_2D,),
        _WEIGHTED_DSP + "3x3 DEPTHWISE_CONV_2D channel by channel over a padded int16 plane.",
        dsp=True,
        terms=work.dwconv_3x3_dsp_terms)
_kernel("mcuflow_dwconv_dsp_s8", "mcuflow_dwconv_dsp", (OpKind.DEPTHWISE_CONV_2D,),
        _WEIGHTED_DSP + "DEPTHWISE_CONV_2D pixel by pixel, four channels per step, no scratch.",
        dsp=True,
        terms=work.dwconv_dsp_terms)
_kernel("mcuflow_fully_connected_s8", "mcuflow_conv", (OpKind.FULLY_CONNECTED,),
        "FULLY_CONNECTED: one dot product per output unit.",
        terms=work.fully_connected_terms)
_kernel("mcuflow_fully_connected_dsp_s8", "mcuflow_conv_dsp", (OpKind.FULLY_CONNECTED,),
        _WEIGHTED_DSP + "FULLY_CONNECTED as a matrix-vector product, four units per pass.",
        dsp=True,
        terms=work.fully_connected_dsp_terms)
_kernel("mcuflow_avg_pool_s8", "mcuflow_pool", (OpKind.AVERAGE_POOL_2D,),
        "AVERAGE_POOL_2D.",
        terms=work.avg_pool_terms)
_kernel("mcuflow_max_pool_s8", "mcuflow_pool", (OpKind.MAX_POOL_2D,), "MAX_POOL_2D.",
        terms=work.max_pool_terms)
_kernel("mcuflow_mean_s8", "mcuflow_mean", (OpKind.MEAN,), "MEAN over any axes.",
        terms=work.mean_terms)
_kernel("mcuflow_softmax_s8", "mcuflow_softmax", (OpKind.SOFTMAX,),
        "SOFTMAX along the last axis, exp from a 256-entry table.",
        terms=work.softmax_terms)
_kernel("mcuflow_binary_s8", "mcuflow_elementwise", (OpKind.ADD, OpKind.SUB, OpKind.MUL),
        "ADD, SUB and MUL with broadcasting, TFLite's fixed-point rescaling per element.",
        terms=work.binary_terms)
_kernel("mcuflow_add_dsp_s8", "mcuflow_elementwise_dsp", (OpKind.ADD, OpKind.SUB),
        _WEIGHTED_DSP + "ADD and SUB with each input's rescaling tabulated.", dsp=True,
        terms=work.add_dsp_terms)
_kernel("mcuflow_lookup_s8", "mcuflow_lookup",
        (OpKind.RELU, OpKind.RELU6, OpKind.LEAKY_RELU, OpKind.HARD_SWISH, OpKind.LOGISTIC,
         OpKind.TANH, OpKind.QUANTIZE),
        "int8 to int8 element-wise ops: one 256-entry table lookup per element.",
        terms=work.lookup_terms)
_kernel("mcuflow_lookup_f32", "mcuflow_lookup", (OpKind.DEQUANTIZE,),
        "DEQUANTIZE: one 256-entry float table lookup per element.",
        terms=work.lookup_terms)
_kernel("mcuflow_quantize_f32", "mcuflow_lookup", (OpKind.QUANTIZE,),
        "QUANTIZE of a float32 input.",
        terms=work.lookup_terms)
_kernel("mcuflow_copy_rows", "mcuflow_data", (OpKind.RESHAPE, OpKind.SQUEEZE,
                                              OpKind.CONCATENATION),
        "RESHAPE, SQUEEZE and CONCATENATION not planned in place: row copies.",
        terms=work.copy_terms)
_kernel("mcuflow_pad_s8", "mcuflow_data", (OpKind.PAD,), "PAD with the zero point.",
        terms=work.pad_terms)
_kernel("mcuflow_codebook_decode_s8", "mcuflow_codebook", tuple(OpKind),
        "Before any step reading a codebook-stored constant: Huffman-decodes it into scratch.",
        terms=work.codebook_terms)


# --- the emitters' default choice --------------------------------------------------------------

CODEBOOK_DECODE = "mcuflow_codebook_decode_s8"
_LOOKUP = frozenset({OpKind.RELU, OpKind.RELU6, OpKind.LEAKY_RELU, OpKind.HARD_SWISH,
                     OpKind.LOGISTIC, OpKind.TANH, OpKind.QUANTIZE})
_SIMPLE: dict[OpKind, tuple[str, ...]] = {
    OpKind.AVERAGE_POOL_2D: ("mcuflow_avg_pool_s8",), OpKind.MAX_POOL_2D: ("mcuflow_max_pool_s8",),
    OpKind.MEAN: ("mcuflow_mean_s8",), OpKind.SOFTMAX: ("mcuflow_softmax_s8",),
    OpKind.DEQUANTIZE: ("mcuflow_lookup_f32",), OpKind.PAD: ("mcuflow_pad_s8",),
    OpKind.CONCATENATION: ("mcuflow_copy_rows",), OpKind.RESHAPE: (), OpKind.SQUEEZE: (),
}
"""Kinds with one kernel whatever the core; RESHAPE and SQUEEZE are usually planned in place."""


def _depthwise(graph: Graph, op: Operator, dsp: bool) -> tuple[str, ...]:
    if dsp:
        if dsp_depthwise_plane(graph, op) is not None:
            return ("mcuflow_dwconv_3x3_dsp_s8",)
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


def _by_kind(graph: Graph, op: Operator, dsp: bool) -> tuple[str, ...] | None:
    kind = op.kind
    if kind is OpKind.CONV_2D:
        return _conv(graph, op, dsp)
    if kind is OpKind.DEPTHWISE_CONV_2D:
        return _depthwise(graph, op, dsp)
    if kind is OpKind.FULLY_CONNECTED:
        return ("mcuflow_fully_connected_dsp_s8" if dsp else "mcuflow_fully_connected_s8",)
    if kind in (OpKind.ADD, OpKind.SUB, OpKind.MUL):
        return ("mcuflow_add_dsp_s8" if dsp and kind is not OpKind.MUL else "mcuflow_binary_s8",)
    if kind is OpKind.QUANTIZE and graph.tensors[op.inputs[0]].dtype is not DType.INT8:
        return ("mcuflow_quantize_f32",)
    if kind in _LOOKUP:
        return ("mcuflow_lookup_s8",)
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
