"""SOFTMAX: Prepare, the int8 kernel (LiteRT's kReference gemmlowp fixed-point path), float32."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError, constraint, int8_quant
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind, SoftmaxAttrs
from mcuflow.ir.quantization import INT32_MAX
from mcuflow.quant.fixedpoint import (
    calculate_input_radius,
    exp_on_negative_values_array,
    get_reciprocal,
    get_reciprocal_array,
    quantize_multiplier,
    rounding_divide_by_pot_array,
    saturating_rounding_doubling_high_mul_array,
    scaled_nonnegative_array,
)
from mcuflow.ref.common import quant_of, require_int8
from mcuflow.ref.int16x8 import prepare_softmax_s16, softmax_s16
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel

SOFTMAX_DIFF_INTEGER_BITS = 5
SOFTMAX_ACCUMULATION_INTEGER_BITS = 12


@dataclass(frozen=True)
class SoftmaxParams:
    """Constants of int8 SOFTMAX (kReference): beta * input scale as a Q5.26 rescaling."""

    input_multiplier: int
    input_left_shift: int
    diff_min: int


def softmax_input_real(beta: float, input_scale: float) -> float:
    """PreprocessSoftmaxScaling's real multiplier: float32 beta * input scale in Q5.26.

    It is capped at INT32_MAX, as the C++ is.
    """
    return min(float(np.float32(beta)) * input_scale
               * float(1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)), float(INT32_MAX))


def prepare_softmax(x: Tensor, attrs: SoftmaxAttrs) -> SoftmaxParams:
    """activations.cc SoftmaxPrepare (kReference): PreprocessSoftmaxScaling, diff_min."""
    real = softmax_input_real(attrs.beta, quant_of(x).scale0)
    if real <= 1.0:
        raise UncheckedModelError(f"SOFTMAX input '{x.name}': beta * scale too small")
    scaled = quantize_multiplier(real)
    radius = calculate_input_radius(SOFTMAX_DIFF_INTEGER_BITS, scaled.shift)
    return SoftmaxParams(scaled.multiplier, scaled.shift, -radius)


def softmax_exps_by_difference(params: SoftmaxParams) -> np.ndarray:
    """exp_on_negative_values of every int8 difference d = x - max(row), indexed by d + 255.

    Differences below `diff_min` take no part in the softmax and hold 0: their share of the sum
    is then 0 and their output -128, exactly as the reference kernel's masks give.
    """
    diffs = np.arange(-255, 1, dtype=np.int64)
    used = diffs >= params.diff_min
    rescaled = saturating_rounding_doubling_high_mul_array(
        np.where(used, diffs, 0) << params.input_left_shift, params.input_multiplier
    )
    exps = exp_on_negative_values_array(rescaled, SOFTMAX_DIFF_INTEGER_BITS)
    return np.where(used, exps, 0)


@constraint(OpKind.SOFTMAX)
def softmax_beta_scale(graph: Graph, op: Operator) -> str | None:
    """beta * input scale must exceed 2**-26 (LiteRT's int8 SOFTMAX works in Q5.26)."""
    quant = int8_quant(graph, op.inputs[0])
    if quant is None:
        return None
    real = softmax_input_real(op.attrs.beta, quant[0].scale0)
    if real > 1.0:
        return None
    return f"beta * input scale {real / (1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)):.3g} found"


SCALAR_ROWS = 16
"""Up to this many rows, each row's reciprocal is computed with Python ints (numpy's per-call
cost makes the array form about 80 microseconds whatever the row count)."""


class SoftmaxKernel:
    """reference_ops::Softmax (int8 in, int8 out with scale 1/256 and zero point -128).

    Every row along the last axis: exp of the rescaled differences to the row maximum (Q5.26 in,
    Q0.31 out), their sum in Q12.19, its reciprocal, and each exp times it rounded to 8 bits.
    A difference of two int8 values takes one of 256 values, so its exp and its share of the sum
    are read from tables computed at prepare time with the exact fixed-point functions.
    """

    def __init__(self, params: SoftmaxParams) -> None:
        # Indexed by the difference d in -255..0 itself: take() reads t[-k] as t[256 - k].
        self._exps = np.roll(softmax_exps_by_difference(params), 1)
        self._accumulated = rounding_divide_by_pot_array(
            self._exps, SOFTMAX_ACCUMULATION_INTEGER_BITS)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The int8 softmax of `x` along its last axis."""
        diff = np.subtract(x, x.max(axis=-1, keepdims=True), dtype=np.int16)
        scale, bits_over_unit = _reciprocals(
            self._accumulated.take(diff).sum(axis=-1, keepdims=True))
        exponent = bits_over_unit + 31 - 8
        unsaturated = scaled_nonnegative_array(self._exps.take(diff), scale, exponent)
        # At most (2**31 - 1) * (2**31 - 1) / 2**(31 + 23), rounded: 256 (bits_over_unit >= 0).
        return _SATURATED.take(unsaturated)


_SATURATED = np.minimum(np.arange(257) - 128, 127).astype(np.int8)
"""The output byte of each unsaturated value 0..256: value - 128, at most 127."""


def _reciprocals(sums: np.ndarray) -> tuple[np.ndarray | int, np.ndarray | int]:
    """GetReciprocal of every row sum: (Q0.31 scale, bits over unit), shaped like `sums`.

    One row gives Python ints (they broadcast over the row); up to SCALAR_ROWS rows are
    computed with Python ints, more with the array functions.
    """
    if sums.size > SCALAR_ROWS:
        return get_reciprocal_array(sums, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    pairs = [get_reciprocal(s, SOFTMAX_ACCUMULATION_INTEGER_BITS) for s in sums.ravel().tolist()]
    if len(pairs) == 1:
        return pairs[0]
    scale, bits = zip(*pairs, strict=True)
    return np.reshape(scale, sums.shape), np.reshape(bits, sums.shape)


def softmax(x: np.ndarray, params: SoftmaxParams) -> np.ndarray:
    """reference_ops::Softmax of int8 `x` along its last axis (see SoftmaxKernel)."""
    return SoftmaxKernel(params)(x)


@prepared_kernel(OpKind.SOFTMAX)
def _prepare_softmax(graph: Graph, op: Operator) -> PreparedFn:
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    if x.dtype is DType.INT16:
        wide = prepare_softmax_s16(x, op.attrs)
        return lambda inputs: [softmax_s16(inputs[0], wide)]
    require_int8(op, x, out)
    kernel = SoftmaxKernel(prepare_softmax(x, op.attrs))
    return lambda inputs: [kernel(inputs[0])]


@float_kernel(OpKind.SOFTMAX)
def _softmax_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: SoftmaxAttrs = op.attrs
    logits = inputs[0].astype(np.float64) * attrs.beta
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return [(exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)]
