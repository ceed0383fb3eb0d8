"""The reference kernels' table and threshold shortcuts equal the general fixed-point formulas."""

from __future__ import annotations

import numpy as np
import pytest

from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation
from mcuflow.ir.quantization import INT32_MAX, QuantParams
from mcuflow.quant import fixedpoint as fp
from mcuflow.ref import activations, elementwise, quantize
from mcuflow.ref.fully_connected import accumulator_thresholds, scale_and_round_thresholds
from mcuflow.ref.registry import prepare
from mcuflow.ref.softmax import (
    SCALAR_ROWS,
    SOFTMAX_ACCUMULATION_INTEGER_BITS,
    SOFTMAX_DIFF_INTEGER_BITS,
    SoftmaxKernel,
    SoftmaxParams,
    prepare_softmax,
)

INT8 = np.arange(-128, 128, dtype=np.int64)


# --- SOFTMAX --------------------------------------------------------------------------------

def _softmax_formula(x: np.ndarray, params: SoftmaxParams) -> np.ndarray:
    """reference_ops::Softmax evaluated with the general array functions, nothing tabulated."""
    x64 = np.asarray(x, dtype=np.int64)
    diff = x64 - x64.max(axis=-1, keepdims=True)
    used = diff >= params.diff_min
    rescaled = fp.saturating_rounding_doubling_high_mul_array(
        np.where(used, diff, 0) << params.input_left_shift, params.input_multiplier)
    exp = fp.exp_on_negative_values_array(rescaled, SOFTMAX_DIFF_INTEGER_BITS)
    accumulated = fp.rounding_divide_by_pot_array(exp, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    total = np.where(used, accumulated, 0).sum(axis=-1, keepdims=True)
    scale, bits_over_unit = fp.get_reciprocal_array(total, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    unsaturated = fp.rounding_divide_by_pot_array(
        fp.saturating_rounding_doubling_high_mul_array(scale, exp), bits_over_unit + 31 - 8)
    return np.where(used, np.clip(unsaturated - 128, -128, 127), -128).astype(np.int8)


def _softmax_params(scale: float, beta: float) -> SoftmaxParams:
    b = GraphBuilder()
    x = b.input((1, 4), scale, 0)
    graph = b.output(b.softmax(x, beta)).build()
    op = graph.operators[0]
    return prepare_softmax(graph.tensor(op.inputs[0]), op.attrs)


SOFTMAX_SCALES = [(0.05, 1.0), (0.1, 0.5), (1.0, 1.0), (0.001, 1.0), (50.0, 1.0), (0.25, 2.0)]


@pytest.mark.parametrize(("scale", "beta"), SOFTMAX_SCALES)
def test_softmax_tables_cover_every_difference(scale: float, beta: float) -> None:
    """Rows [127, v, v] for every int8 v: every difference 0..-255 read from the tables."""
    params = _softmax_params(scale, beta)
    rows = np.stack([np.full(256, 127), INT8, INT8], axis=1).astype(np.int8)
    kernel = SoftmaxKernel(params)
    np.testing.assert_array_equal(kernel(rows), _softmax_formula(rows, params))
    for row in rows[::17]:  # a single row: the scalar reciprocal with Python int constants
        np.testing.assert_array_equal(kernel(row[None]), _softmax_formula(row[None], params))


@pytest.mark.parametrize(("scale", "beta"), SOFTMAX_SCALES)
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (SCALAR_ROWS, 9), (SCALAR_ROWS + 1, 9),
                                   (3, 4, 250), (1, 1000)], ids=str)
def test_softmax_kernel_equals_formula(scale: float, beta: float, shape: tuple) -> None:
    params = _softmax_params(scale, beta)
    rng = np.random.default_rng(len(shape) + shape[-1])
    for x in (rng.integers(-128, 128, shape), rng.integers(-20, 20, shape),
              np.full(shape, -128), np.where(rng.random(shape) < 0.5, 127, -128)):
        x8 = x.astype(np.int8)
        np.testing.assert_array_equal(SoftmaxKernel(params)(x8), _softmax_formula(x8, params))


def test_scaled_nonnegative_equals_general_rounding() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([[0, 1, INT32_MAX], rng.integers(0, 1 << 31, 20000)])
    multiplier = np.concatenate([[INT32_MAX, 0, 1 << 30], rng.integers(0, 1 << 31, 20000)])
    for exponent in (1, 2, 23, 30, 31, rng.integers(1, 32, x.size)):
        general = fp.rounding_divide_by_pot_array(
            fp.saturating_rounding_doubling_high_mul_array(multiplier, x), exponent)
        np.testing.assert_array_equal(fp.scaled_nonnegative_array(x, multiplier, exponent),
                                      general)


# --- ADD, SUB, MUL ----------------------------------------------------------------------------

PAIR_QUANT = [
    (0.05, 0, 0.05, 0, 0.1, 0),
    (0.02, -128, 0.5, 127, 0.3, -5),
    (1.0, 10, 0.001, -20, 0.0001, 100),
    (0.003, 127, 0.007, -128, 2.5, -128),
]
FORMULAS = {"add": elementwise.add, "sub": elementwise.sub, "mul": elementwise.mul}


@pytest.mark.parametrize("kind", FORMULAS)
@pytest.mark.parametrize("quant", PAIR_QUANT)
@pytest.mark.parametrize("activation", [Activation.NONE, Activation.RELU6])
def test_pair_table_equals_formula_on_every_pair(kind: str, quant: tuple,
                                                 activation: Activation) -> None:
    s1, z1, s2, z2, so, zo = quant
    b = GraphBuilder()
    x, y = b.input((256, 1), s1, z1), b.input((1, 256), s2, z2)
    graph = b.output(getattr(b, kind)(x, y, activation, QuantParams.per_tensor(so, zo))).build()
    op = graph.operators[0]
    tensors = [graph.tensor(name) for name in (*op.inputs, op.outputs[0])]
    prepared = elementwise.prepare_mul if kind == "mul" else elementwise.prepare_add
    params = prepared(*tensors, op.attrs)
    first, second = INT8.astype(np.int8).reshape(256, 1), INT8.astype(np.int8).reshape(1, 256)
    table = prepare(graph, op)([first, second])[0]
    np.testing.assert_array_equal(table, FORMULAS[kind](first, second, params))
    strided = np.asfortranarray(np.broadcast_to(first, (256, 3)))[:, ::2]
    np.testing.assert_array_equal(prepare(graph, op)([strided, second[:, :2]])[0],
                                  FORMULAS[kind](strided, second[:, :2], params))


# --- one-input ops ----------------------------------------------------------------------------

def _unary_cases() -> list[tuple[str, object, object]]:
    """(name, builder call, formula of prepared params) for every byte-table op."""
    leaky = activations.prepare_leaky_relu
    return [
        ("relu", lambda b, x: b.relu(x, QuantParams.per_tensor(0.07, -3)),
         lambda x, t, o, op: activations.relu(x, activations.prepare_relu(t, o, Activation.RELU))),
        ("relu6", lambda b, x: b.relu6(x, QuantParams.per_tensor(0.03, -128)),
         lambda x, t, o, op: activations.relu(x, activations.prepare_relu(t, o, Activation.RELU6))),
        ("leaky_relu", lambda b, x: b.leaky_relu(x, 0.3, QuantParams.per_tensor(0.04, 9)),
         lambda x, t, o, op: activations.leaky_relu(x, leaky(t, o, op.attrs))),
        ("hard_swish", lambda b, x: b.hard_swish(x, QuantParams.per_tensor(0.02, -100)),
         lambda x, t, o, op: activations.hard_swish(x, activations.prepare_hard_swish(t, o))),
        ("logistic", lambda b, x: b.logistic(x),
         lambda x, t, o, op: activations.lookup(x, activations.prepare_logistic(t, o))),
        ("requantize", lambda b, x: b.quantize(x, 0.011, 17),
         lambda x, t, o, op: quantize.requantize(x, quantize.prepare_requantize(t, o))),
        ("dequantize", lambda b, x: b.dequantize(x),
         lambda x, t, o, op: quantize.dequantize(x, t.quant.scale0, t.quant.zero_point0)),
    ]


@pytest.mark.parametrize(("build", "formula"),
                         [pytest.param(*case[1:], id=case[0]) for case in _unary_cases()])
def test_byte_table_equals_formula_on_every_value(build: object, formula: object) -> None:
    b = GraphBuilder()
    x = b.input((256,), 0.05, 7)
    graph = b.output(build(b, x)).build()
    op = graph.operators[0]
    tensor, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    every = INT8.astype(np.int8)
    strided = np.stack([every[::-1]] * 3, axis=1)[::2, ::2]
    for values in (every, strided):
        got, want = prepare(graph, op)([values])[0], formula(values, tensor, out, op)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


# --- FULLY_CONNECTED requantisation -------------------------------------------------------------

CLAMPS = [(0, -128, 127), (-128, -128, 127), (5, 5, 127), (-3, -10, 20), (127, -128, 127)]


def _doubles_near_halves() -> np.ndarray:
    rng = np.random.default_rng(6)
    halves = np.arange(-300, 301) + 0.5
    near = np.concatenate([halves, np.nextafter(halves, np.inf), np.nextafter(halves, -np.inf),
                           np.arange(-300.0, 301.0)])
    tiny = [0.0, -0.0, 5e-324, -5e-324, fp._BELOW_HALF, -fp._BELOW_HALF, 1e300, -1e300]
    return np.concatenate([near, tiny, rng.uniform(-400, 400, 20000)])


@pytest.mark.parametrize(("offset", "act_min", "act_max"), CLAMPS)
def test_rounding_thresholds_equal_c_round_offset_and_clamp(offset: int, act_min: int,
                                                            act_max: int) -> None:
    p = _doubles_near_halves()
    want = np.clip(fp.scale_and_round_array(p, 1.0) + offset, act_min, act_max)
    thresholds = scale_and_round_thresholds(offset, act_min, act_max)
    np.testing.assert_array_equal(act_min + thresholds.searchsorted(p, side="right"), want)


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 2.0**-10, 0.0123456789, 7.3e-6, 3.1, 1e-12])
@pytest.mark.parametrize(("offset", "act_min", "act_max"), CLAMPS[:3])
def test_accumulator_thresholds_equal_scaled_search(scale: float, offset: int, act_min: int,
                                                    act_max: int) -> None:
    reach = 1 << 17
    acc = np.arange(-reach, reach + 1)
    thresholds = scale_and_round_thresholds(offset, act_min, act_max)
    want = thresholds.searchsorted(np.multiply(acc, scale, dtype=np.float64), side="right")
    folded = accumulator_thresholds(thresholds, scale, reach)
    np.testing.assert_array_equal(folded.searchsorted(acc, side="right"), want)
