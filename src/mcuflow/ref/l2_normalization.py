"""L2_NORMALIZATION: the int8 kernel (LiteRT's reference_integer_ops::L2Normalization), float32."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.quant.fixedpoint import (
    inv_sqrt_quantized_multiplier_exp,
    multiply_by_quantized_multiplier_array,
)
from mcuflow.ref.common import quant_of, require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel

L2_OUTPUT_BITS = 7
"""The output is in 1/128 units (scale 1/128, zero point 0): the shift folded into the scaling."""
REVERSE_SHIFT = -1
"""TFLite's kReverseShift: GetInvSqrtQuantizedMultiplierExp returns a left shift."""


def row_inv_sqrt(squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) of 1 / sqrt of every row's sum of squares, shaped like `squares`."""
    values, inverse = np.unique(squares, return_inverse=True)
    pairs = [inv_sqrt_quantized_multiplier_exp(int(v), REVERSE_SHIFT) for v in values.tolist()]
    multipliers = np.array([m for m, _ in pairs], np.int64)[inverse].reshape(squares.shape)
    shifts = np.array([s for _, s in pairs], np.int64)[inverse].reshape(squares.shape)
    return multipliers, shifts


def l2_normalization(x: np.ndarray, input_zero_point: int) -> np.ndarray:
    """L2Normalization of int8 `x` along its last axis into int8 with scale 1/128, zero point 0.

    Per row the sum of squared centred values and its inverse square root; each centred value
    times it, shifted left 7, clamped.
    """
    centred = np.asarray(x, np.int64) - input_zero_point
    squares = (centred * centred).sum(axis=-1, keepdims=True)
    multipliers, shifts = row_inv_sqrt(squares)
    scaled = multiply_by_quantized_multiplier_array(centred, multipliers,
                                                    shifts + L2_OUTPUT_BITS)
    return np.clip(scaled, -128, 127).astype(np.int8)


@prepared_kernel(OpKind.L2_NORMALIZATION)
def _prepare_l2_normalization(graph: Graph, op: Operator) -> PreparedFn:
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    require_int8(op, x, out)
    zero_point = quant_of(x).zero_point0
    return lambda inputs: [l2_normalization(inputs[0], zero_point)]


@float_kernel(OpKind.L2_NORMALIZATION)
def _l2_normalization_float(graph: Graph, op: Operator, inputs: list[np.ndarray]
                            ) -> list[np.ndarray]:
    x = inputs[0].astype(np.float32)
    norm = np.maximum(np.sqrt((x * x).sum(axis=-1, keepdims=True)), np.float32(1e-6))
    return [(x / norm).astype(np.float32)]
