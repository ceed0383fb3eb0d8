"""Each scalar fixed-point function of quant.fixedpoint equals its numpy twin, element by element.

The scalar forms serve Prepare steps and the reference interpreter's small cases, the array
forms whole tensors; both must stay the same arithmetic over every input they accept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from mcuflow.ir.quantization import INT32_MAX, INT32_MIN
from mcuflow.quant import fixedpoint as fp

RANDOM = 3000
EXPONENTS = range(32)
"""RoundingDivideByPOT's exponents: gemmlowp accepts 0..31."""
POT_EXPONENTS = range(-31, 32)
"""SaturatingRoundingMultiplyByPOT's exponents: a right shift below 0, a left shift above."""
SHIFTS = range(-31, 31)
"""MultiplyByQuantizedMultiplier's shifts: TFLite checks -31 <= shift <= 30."""


def _rng(salt: int) -> np.random.Generator:
    return np.random.default_rng(1800 + salt)


def _int32_edges() -> np.ndarray:
    """INT32_MIN/MAX, 0, +-1..3 and every power of two, each with its neighbours."""
    powers = [sign * ((1 << k) + delta) for k in range(32) for delta in (-1, 0, 1)
              for sign in (1, -1)]
    values = [INT32_MIN, INT32_MIN + 1, INT32_MAX - 1, INT32_MAX, 0, 1, -1, 2, -2, 3, -3, *powers]
    return np.unique(np.clip(values, INT32_MIN, INT32_MAX)).astype(np.int64)


def _int32_values(salt: int) -> np.ndarray:
    """The edges, uniform int32 values and small ones, where rounding ties are frequent."""
    rng = _rng(salt)
    return np.concatenate([_int32_edges(),
                           rng.integers(INT32_MIN, INT32_MAX, RANDOM, endpoint=True),
                           rng.integers(-1024, 1024, RANDOM // 3)])


def _ties(exponent: int, salt: int) -> np.ndarray:
    """int32 values exactly halfway between two multiples of 2**exponent, and their neighbours."""
    if exponent == 0:
        return np.zeros(0, np.int64)
    quotients = np.concatenate([np.arange(-8, 8),
                                _rng(salt).integers(-(1 << (31 - exponent)),
                                                    1 << (31 - exponent), 200)])
    half = quotients * (1 << exponent) + (1 << (exponent - 1))
    ties = np.concatenate([half - 1, half, half + 1])
    return ties[(ties >= INT32_MIN) & (ties <= INT32_MAX)]


def _pairs(salt: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of edge values, random int32 pairs, and products on SRDHM's rounding tie."""
    edges = _int32_edges()
    a, b = (g.ravel() for g in np.meshgrid(edges, edges))
    rng = _rng(salt)
    k = rng.integers(0, 31, 500)
    odd = rng.integers(0, 1 << 20, 500) * 2 + 1
    tie_a = np.left_shift(1, k) * rng.choice([-1, 1], 500)
    tie_b = np.clip(odd << (30 - k), INT32_MIN, INT32_MAX)  # a * b = odd * 2**30: a half
    return (np.concatenate([a, rng.integers(INT32_MIN, INT32_MAX, RANDOM, endpoint=True), tie_a]),
            np.concatenate([b, rng.integers(INT32_MIN, INT32_MAX, RANDOM, endpoint=True), tie_b]))


Case = tuple[tuple[np.ndarray, ...], tuple[int, ...]]
"""(arguments given element by element, arguments given whole to both twins)."""


@dataclass(frozen=True)
class Twin:
    """A scalar function, its array twin and the inputs both accept."""

    scalar: Callable[..., object]
    array: Callable[..., object]
    cases: Callable[[], Iterator[Case]]


def _round_cases() -> Iterator[Case]:
    halves = np.arange(-64, 64) + 0.5
    large = [2.0 ** k + d for k in (23, 24, 31, 52) for d in (-1.5, -0.5, 0.5, 1.5)]
    below_half = float(np.nextafter(0.5, 0.0))
    edges = np.array([0.0, -0.0, 0.5, -0.5, below_half, -below_half, 1e-300, -1e-300,
                      *np.nextafter(halves, np.inf), *np.nextafter(halves, -np.inf),
                      *halves, *large, *(-np.array(large))])
    rng = _rng(1)
    float32 = (rng.standard_normal(RANDOM) * 10.0 ** rng.integers(-3, 9, RANDOM)).astype(np.float32)
    halves32 = (rng.integers(-(1 << 22), 1 << 22, RANDOM) + 0.5).astype(np.float32)
    yield (edges,), ()
    yield (float32.astype(np.float64),), ()
    yield (halves32.astype(np.float64),), ()
    yield (rng.uniform(-1e9, 1e9, RANDOM),), ()


def _wrap_cases() -> Iterator[Case]:
    powers = [sign * ((1 << k) + d) for k in range(63) for d in (-1, 0, 1) for sign in (1, -1)]
    edges = np.array([v for v in powers if abs(v) <= 1 << 62], dtype=np.int64)
    yield (edges,), ()
    yield (_rng(2).integers(-(1 << 62), 1 << 62, RANDOM, endpoint=True),), ()
    yield (_int32_values(2) << 31,), ()


def _srdhm_cases() -> Iterator[Case]:
    yield _pairs(3), ()


def _rounding_divide_cases() -> Iterator[Case]:
    values = _int32_values(4)
    for exponent in EXPONENTS:
        yield (np.concatenate([values, _ties(exponent, exponent)]),), (exponent,)
    rng = _rng(4)
    yield (values, rng.integers(0, 32, values.size)), ()


def _multipliers(salt: int, count: int) -> np.ndarray:
    """QuantizeMultiplier's mantissas: 0 or [2**30, 2**31), then any non-negative int32."""
    rng = _rng(salt)
    return np.concatenate([[0, 1 << 30, (1 << 30) + 1, INT32_MAX - 1, INT32_MAX],
                           rng.integers(1 << 30, 1 << 31, count),
                           rng.integers(0, 1 << 31, count)])


def _mbqm_cases() -> Iterator[Case]:
    rng = _rng(5)
    for shift in SHIFTS:
        x = np.concatenate([_int32_edges(), rng.integers(INT32_MIN, INT32_MAX, 600,
                                                         endpoint=True)])
        multiplier = rng.choice(_multipliers(shift + 100, 300), x.size)
        yield (x, multiplier), (shift,)
    x = _int32_values(5)
    yield (x, _multipliers(5, x.size)[:x.size], rng.integers(-31, 31, x.size)), ()
    yield (x,), (1 << 30, 0)


def _half_sum_cases() -> Iterator[Case]:
    yield _pairs(6), ()


def _multiply_by_pot_cases() -> Iterator[Case]:
    values = _int32_values(7)
    for exponent in POT_EXPONENTS:
        yield (np.concatenate([values, _ties(-exponent, exponent + 100)]) if exponent < 0
               else values,), (exponent,)


def _nonnegative_int32(salt: int) -> np.ndarray:
    values = _int32_values(salt)
    return values[values >= 0]


def _one_over_cases() -> Iterator[Case]:
    yield (_nonnegative_int32(8),), ()


def _reciprocal_cases() -> Iterator[Case]:
    positive = _nonnegative_int32(9)
    positive = positive[positive > 0]
    for integer_bits in (0, 1, 5, 12, 31):
        yield (positive,), (integer_bits,)


def _quantize_multiplier_cases() -> Iterator[Case]:
    rng = _rng(10)
    near_carry = 1.0 - 2.0 ** -np.arange(30, 34)
    edges = np.array([0.0, 2.0 ** -31, 2.0 ** -32, 2.0 ** -33, 1.0, 0.5, *near_carry,
                      *(near_carry * 2.0 ** -31), *(near_carry * 2.0 ** -32), -0.75, 3e9])
    scales = rng.uniform(0.5, 1.5, RANDOM) * 10.0 ** rng.integers(-12, 3, RANDOM)
    yield (edges,), ()
    yield (scales,), ()
    yield (np.float64(np.float32(0.02)) * scales.astype(np.float32) / 0.07,), ()


def _quantize_multiplier(real: float) -> tuple[int, int]:
    found = fp.quantize_multiplier(real)
    return found.multiplier, found.shift


TWINS = {
    "tflite_round": Twin(fp.tflite_round, fp.round_half_away_array, _round_cases),
    "wrap_int32": Twin(fp._wrap_int32, fp._wrap_int32_array, _wrap_cases),
    "saturating_rounding_doubling_high_mul": Twin(
        fp.saturating_rounding_doubling_high_mul, fp.saturating_rounding_doubling_high_mul_array,
        _srdhm_cases),
    "rounding_divide_by_pot": Twin(
        fp.rounding_divide_by_pot, fp.rounding_divide_by_pot_array, _rounding_divide_cases),
    "multiply_by_quantized_multiplier": Twin(
        fp.multiply_by_quantized_multiplier, fp.multiply_by_quantized_multiplier_array,
        _mbqm_cases),
    "rounding_half_sum": Twin(fp.rounding_half_sum, fp.rounding_half_sum_array, _half_sum_cases),
    "saturating_rounding_multiply_by_pot": Twin(
        fp.saturating_rounding_multiply_by_pot, fp.saturating_rounding_multiply_by_pot_array,
        _multiply_by_pot_cases),
    "one_over_one_plus_x_for_x_in_0_1": Twin(
        fp.one_over_one_plus_x_for_x_in_0_1, fp.one_over_one_plus_x_for_x_in_0_1_array,
        _one_over_cases),
    "get_reciprocal": Twin(fp.get_reciprocal, fp.get_reciprocal_array, _reciprocal_cases),
    "quantize_multiplier": Twin(_quantize_multiplier, fp.quantize_multiplier_array,
                                _quantize_multiplier_cases),
}


def _rows(result: object, size: int) -> list[object]:
    """An array twin's result as one Python value (a tuple for several results) per element."""
    if isinstance(result, tuple):
        columns = [np.broadcast_to(part, (size,)).tolist() for part in result]
        return list(zip(*columns, strict=True))
    return np.broadcast_to(np.asarray(result), (size,)).tolist()


@pytest.mark.parametrize("name", TWINS)
def test_array_twin_equals_scalar_element_by_element(name: str) -> None:
    twin = TWINS[name]
    for elementwise, whole in twin.cases():
        size = elementwise[0].size
        assert all(a.shape == (size,) for a in elementwise)
        got = _rows(twin.array(*elementwise, *whole), size)
        columns = [a.tolist() for a in elementwise]
        want = [twin.scalar(*args, *whole) for args in zip(*columns, strict=True)]
        wrong = [(args, g, w) for args, g, w in zip(zip(*columns, strict=True), got, want,
                                                     strict=True) if g != w]
        assert not wrong, f"{name}{whole}: (inputs, array, scalar) {wrong[:5]} of {len(wrong)}"


def test_round_half_away_array_is_integral() -> None:
    """tflite_round returns ints; its twin returns floats that must hold the same integers."""
    for (values,), _ in _round_cases():
        rounded = fp.round_half_away_array(values)
        np.testing.assert_array_equal(rounded, np.trunc(rounded))
