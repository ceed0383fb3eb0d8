"""Reference kernel of int8 SOFTMAX: LiteRT's kReference gemmlowp fixed-point path."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.quant.fixedpoint import (
    SOFTMAX_ACCUMULATION_INTEGER_BITS,
    SoftmaxParams,
    get_reciprocal,
    get_reciprocal_array,
    prepare_softmax,
    rounding_divide_by_pot_array,
    scaled_nonnegative_array,
    softmax_exps_by_difference,
)
from mcuflow.ref.common import require_int8
from mcuflow.ref.registry import PreparedFn, prepared_kernel

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
    require_int8(op, x, out)
    kernel = SoftmaxKernel(prepare_softmax(x, op.attrs))
    return lambda inputs: [kernel(inputs[0])]
