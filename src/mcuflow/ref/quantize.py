"""Reference kernels of QUANTIZE (to int8 or int16) and DEQUANTIZE (int8 or int16 to float32)."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind
from mcuflow.ir.quantization import INT32_MAX, INT32_MIN
from mcuflow.quant.fixedpoint import quantize_multiplier, round_half_away_array
from mcuflow.ref.common import (
    RequantizeParams,
    byte_kernel,
    quant_of,
    requantize_array,
    require_int8,
)
from mcuflow.ref.registry import PreparedFn, prepared_kernel


def prepare_requantize(x: Tensor, out: Tensor) -> RequantizeParams:
    """quantize.cc Prepare between int8 and int16 types: double(in) / double(out).

    No clamp but the output type's.
    """
    in_q, out_q = quant_of(x), quant_of(out)
    scaled = quantize_multiplier(in_q.scale0 / out_q.scale0)
    info = np.iinfo(out.dtype.numpy)
    return RequantizeParams(in_q.zero_point0, out_q.zero_point0, scaled.multiplier, scaled.shift,
                            int(info.min), int(info.max))


def quantize(x: np.ndarray, scale: float, zero_point: int,
             dtype: DType = DType.INT8) -> np.ndarray:
    """reference_ops::AffineQuantize: roundf(x / scale) + zero point in float32, clamped.

    The clamp is int8's, or int16's with `dtype`.

    Values whose quotient leaves the int32 range (C's undefined conversion) saturate, and NaN
    maps to the zero point.
    """
    quotient = np.asarray(x, dtype=np.float32) / np.float32(scale)
    rounded = np.nan_to_num(round_half_away_array(quotient), nan=0.0)
    whole = np.clip(rounded, INT32_MIN, INT32_MAX).astype(np.int64)
    info = np.iinfo(dtype.numpy)
    return np.clip(whole + zero_point, info.min, info.max).astype(dtype.numpy)


def requantize(x: np.ndarray, params: RequantizeParams) -> np.ndarray:
    """reference_ops::Requantize for int8 -> int8 (a change of scale and zero point)."""
    return requantize_array(x, params).astype(np.int8)


def requantize_s16(x: np.ndarray, params: RequantizeParams, dtype: DType) -> np.ndarray:
    """reference_ops::Requantize between int8 and int16 or within int16 (output `dtype`)."""
    return requantize_array(x, params).astype(dtype.numpy)


def dequantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """reference_integer_ops::Dequantize: float(double(scale) * (x - zero_point))."""
    return (scale * (np.asarray(x, dtype=np.float64) - zero_point)).astype(np.float32)


@prepared_kernel(OpKind.QUANTIZE)
def _prepare_quantize(graph: Graph, op: Operator) -> PreparedFn:
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    if x.dtype is DType.FLOAT32:
        scale, zero_point = out.quant.scale0, out.quant.zero_point0
        return lambda inputs: [quantize(inputs[0], scale, zero_point, out.dtype)]
    if DType.INT16 in (x.dtype, out.dtype):
        wide = prepare_requantize(x, out)
        return lambda inputs: [requantize_s16(inputs[0], wide, out.dtype)]
    require_int8(op, x, out)
    params = prepare_requantize(x, out)
    return byte_kernel(lambda x: requantize(x, params))


@prepared_kernel(OpKind.DEQUANTIZE)
def _prepare_dequantize(graph: Graph, op: Operator) -> PreparedFn:
    x = graph.tensor(op.inputs[0])
    scale, zero_point = x.quant.scale0, x.quant.zero_point0
    if x.dtype is DType.INT16:
        return lambda inputs: [dequantize(inputs[0], scale, zero_point)]
    require_int8(op, x)
    return byte_kernel(lambda x: dequantize(x, scale, zero_point))
