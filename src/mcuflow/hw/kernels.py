"""The catalogue of generated C kernels: one record per C function, read by every stage."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.ir.ops import OpKind


@dataclass(frozen=True)
class Kernel:
    """One C kernel function of codegen/kernels.

    `source` is the stem of its C file, `dsp` whether it needs the Arm DSP extension, `kinds`
    the op kinds whose steps may call it, and `applies` says when the emitter chooses it.
    """

    function: str
    source: str
    kinds: frozenset[OpKind]
    dsp: bool
    applies: str


KERNELS: dict[str, Kernel] = {}


def _kernel(function: str, source: str, kinds: tuple[OpKind, ...], applies: str,
            dsp: bool = False) -> Kernel:
    record = Kernel(function, source, frozenset(kinds), dsp, " ".join(applies.split()))
    KERNELS[function] = record
    return record


def kernel(function: str) -> Kernel:
    """The catalogue record of C function `function`; KeyError names it when unknown."""
    return KERNELS[function]


_WEIGHTED_DSP = "on a core with the Arm DSP extension, "

_kernel("mcuflow_conv2d_s8", "mcuflow_conv", (OpKind.CONV_2D,),
        "CONV_2D with a kernel larger than 1x1: im2col of one output pixel, then a dot product "
        "per output channel.")
_kernel("mcuflow_conv2d_1x1_s8", "mcuflow_conv", (OpKind.CONV_2D,),
        "1x1 CONV_2D: reads each input pixel directly, no scratch.")
_kernel("mcuflow_conv2d_dsp_s8", "mcuflow_conv_dsp", (OpKind.CONV_2D,),
        _WEIGHTED_DSP + "CONV_2D as a 2x2 blocked matrix product over int16 im2col columns.",
        dsp=True)
_kernel("mcuflow_dwconv_s8", "mcuflow_dwconv", (OpKind.DEPTHWISE_CONV_2D,),
        "DEPTHWISE_CONV_2D of any kernel size and depth multiplier.")
_kernel("mcuflow_dwconv_3x3_s8", "mcuflow_dwconv", (OpKind.DEPTHWISE_CONV_2D,),
        "3x3 DEPTHWISE_CONV_2D with depth multiplier 1.")
_kernel("mcuflow_dwconv_inplace_s8", "mcuflow_dwconv", (OpKind.DEPTHWISE_CONV_2D,),
        "DEPTHWISE_CONV_2D planned in place (one image, multiplier 1): one output channel in "
        "scratch at a time, written back over its input channel.")
_kernel("mcuflow_dwconv_3x3_dsp_s8", "mcuflow_dwconv_dsp", (OpKind.DEPTHWISE_CONV_2D,),
        _WEIGHTED_DSP + "3x3 DEPTHWISE_CONV_2D channel by channel over a padded int16 plane.",
        dsp=True)
_kernel("mcuflow_dwconv_dsp_s8", "mcuflow_dwconv_dsp", (OpKind.DEPTHWISE_CONV_2D,),
        _WEIGHTED_DSP + "DEPTHWISE_CONV_2D pixel by pixel, four channels per step, no scratch.",
        dsp=True)
_kernel("mcuflow_fully_connected_s8", "mcuflow_conv", (OpKind.FULLY_CONNECTED,),
        "FULLY_CONNECTED: one dot product per output unit.")
_kernel("mcuflow_fully_connected_dsp_s8", "mcuflow_conv_dsp", (OpKind.FULLY_CONNECTED,),
        _WEIGHTED_DSP + "FULLY_CONNECTED as a matrix-vector product, four units per pass.",
        dsp=True)
_kernel("mcuflow_avg_pool_s8", "mcuflow_pool", (OpKind.AVERAGE_POOL_2D,),
        "AVERAGE_POOL_2D.")
_kernel("mcuflow_max_pool_s8", "mcuflow_pool", (OpKind.MAX_POOL_2D,), "MAX_POOL_2D.")
_kernel("mcuflow_mean_s8", "mcuflow_mean", (OpKind.MEAN,), "MEAN over any axes.")
_kernel("mcuflow_softmax_s8", "mcuflow_softmax", (OpKind.SOFTMAX,),
        "SOFTMAX along the last axis, exp from a 256-entry table.")
_kernel("mcuflow_binary_s8", "mcuflow_elementwise", (OpKind.ADD, OpKind.SUB, OpKind.MUL),
        "ADD, SUB and MUL with broadcasting, TFLite's fixed-point rescaling per element.")
_kernel("mcuflow_add_dsp_s8", "mcuflow_elementwise_dsp", (OpKind.ADD, OpKind.SUB),
        _WEIGHTED_DSP + "ADD and SUB with each input's rescaling tabulated.", dsp=True)
_kernel("mcuflow_lookup_s8", "mcuflow_lookup",
        (OpKind.RELU, OpKind.RELU6, OpKind.LEAKY_RELU, OpKind.HARD_SWISH, OpKind.LOGISTIC,
         OpKind.TANH, OpKind.QUANTIZE),
        "int8 to int8 element-wise ops: one 256-entry table lookup per element.")
_kernel("mcuflow_lookup_f32", "mcuflow_lookup", (OpKind.DEQUANTIZE,),
        "DEQUANTIZE: one 256-entry float table lookup per element.")
_kernel("mcuflow_quantize_f32", "mcuflow_lookup", (OpKind.QUANTIZE,),
        "QUANTIZE of a float32 input.")
_kernel("mcuflow_copy_rows", "mcuflow_data", (OpKind.RESHAPE, OpKind.SQUEEZE,
                                              OpKind.CONCATENATION),
        "RESHAPE, SQUEEZE and CONCATENATION not planned in place: row copies.")
_kernel("mcuflow_pad_s8", "mcuflow_data", (OpKind.PAD,), "PAD with the zero point.")
_kernel("mcuflow_codebook_decode_s8", "mcuflow_codebook", tuple(OpKind),
        "Before any step reading a codebook-stored constant: Huffman-decodes it into scratch.")
