"""Reference kernels of QUANTIZE (to int8, uint8 or int16) and DEQUANTIZE (to float32)."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError
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
    """quantize.cc Prepare between the integer types (int8, uint8, int16).

    The scale is double(in) / double(out); no clamp but the output type's range.
    """
    in_q, out_q = quant_of(x), quant_of(out)
    scaled = quantize_multiplier(in_q.scale0 / out_q.scale0)
    limits = np.iinfo(out.dtype.numpy)
    return RequantizeParams(in_q.zero_point0, out_q.zero_point0, scaled.multiplier, scaled.shift,
                            int(limits.min), int(limits.max))


def quantize(x: np.ndarray, scale: float, zero_point: int,
             dtype: DType = DType.INT8) -> np.ndarray:
    """reference_ops::AffineQuantize: roundf(x / scale) + zero point in float32, clamped.

    The clamp is `dtype`'s range (int8 or int16). Values whose quotient leaves the int32 range
    (C's undefined conversion) saturate, and NaN maps to the zero point.
    """
    quotient = np.asarray(x, dtype=np.float32) / np.float32(scale)
    rounded = np.nan_to_num(round_half_away_array(quotient), nan=0.0)
    whole = np.clip(rounded, INT32_MIN, INT32_MAX).astype(np.int64)
    limits = np.iinfo(dtype.numpy)
    return np.clip(whole + zero_point, limits.min, limits.max).astype(dtype.numpy)


def requantize(x: np.ndarray, params: RequantizeParams, dtype: type = np.int8) -> np.ndarray:
    """reference_ops::Requantize between int8, uint8 and int16 (output numpy `dtype`).

    A change of scale and zero point; its XOR-0x80 fast path (equal scales, zero points 128
    apart) gives the same values.
    """
    return requantize_array(x, params).astype(dtype)


def dequantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """reference_integer_ops::Dequantize: float(double(scale) * (x - zero_point))."""
    return (scale * (np.asarray(x, dtype=np.float64) - zero_point)).astype(np.float32)


@prepared_kernel(OpKind.QUANTIZE)
def _prepare_quantize(graph: Graph, op: Operator) -> PreparedFn:
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    if x.dtype is DType.FLOAT32:
        if out.dtype is not DType.INT16:
            require_int8(op, out)
        scale, zero_point = out.quant.scale0, out.quant.zero_point0
        return lambda inputs: [quantize(inputs[0], scale, zero_point, out.dtype)]
    params = prepare_requantize(x, out)
    if DType.INT16 in (x.dtype, out.dtype):
        return lambda inputs: [requantize(inputs[0], params, out.dtype.numpy)]
    require_bytes(op, x, out)
    source, target = x.dtype.numpy, out.dtype.numpy
    return byte_kernel(lambda codes: requantize(codes.view(source), params, target))


def require_bytes(op: Operator, *tensors: Tensor) -> None:
    """Assert that a byte-table QUANTIZE reads and writes int8 or uint8.

    The constraint quantize_per_tensor refuses anything else.
    """
    for tensor in tensors:
        if tensor.dtype not in (DType.INT8, DType.UINT8):
            raise UncheckedModelError(
                f"{op.kind.value} '{op.name}': tensor '{tensor.name}' is {tensor.dtype.value}")


@prepared_kernel(OpKind.DEQUANTIZE)
def _prepare_dequantize(graph: Graph, op: Operator) -> PreparedFn:
    x = graph.tensor(op.inputs[0])
    scale, zero_point = x.quant.scale0, x.quant.zero_point0
    if x.dtype is DType.INT16:
        return lambda inputs: [dequantize(inputs[0], scale, zero_point)]
    require_int8(op, x)
    return byte_kernel(lambda x: dequantize(x, scale, zero_point))
