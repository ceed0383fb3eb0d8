"""Reference kernels part B (element-wise, activations, softmax, (de)quantisation) vs LiteRT."""

from __future__ import annotations

import numpy as np
import pytest

import mcuflow.ref.kernels  # noqa: F401  (registers every kernel)
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import NoAttrs, OpKind
from mcuflow.ir.quantization import INT32_MAX, QuantParams
from mcuflow.quant import fixedpoint
from mcuflow.ref.registry import KERNELS
from tests.support import litert_interpreter, litert_invoke, random_input

SEEDS = (0, 1, 2)
ACTIVATIONS = list(Activation)
UNARY_SHAPE = (1, 4, 8, 8)  # 256 elements: one run feeds every int8 value exactly once


def _run_ours(graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Evaluate the graph op by op with the registered reference kernels."""
    values = {name: t.data for name, t in graph.tensors.items() if t.is_constant}
    values.update(zip(graph.inputs, inputs, strict=True))
    for op in graph.operators:
        outputs = KERNELS[op.kind](graph, op, [values[name] for name in op.inputs])
        values.update(zip(op.outputs, outputs, strict=True))
    return [values[name] for name in graph.outputs]


def _input_sets(graph: Graph, exhaustive: bool) -> list[list[np.ndarray]]:
    tensors = [graph.tensor(name) for name in graph.inputs]
    sets = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        sets.append([random_input(t.shape, t.dtype.numpy, rng) for t in tensors])
    if exhaustive:
        sets.append([np.arange(-128, 128, dtype=np.int8).reshape(tensors[0].shape)])
    return sets


def _assert_bit_exact(graph: Graph, input_sets: list[list[np.ndarray]] | None = None) -> None:
    """Our kernels and LiteRT's reference kernels agree to the bit on every input set."""
    interpreter = litert_interpreter(write_tflite(graph))
    exhaustive = len(graph.inputs) == 1 and graph.tensor(graph.inputs[0]).size == 256
    for inputs in input_sets or _input_sets(graph, exhaustive):
        expected = litert_invoke(interpreter, inputs)
        actual = _run_ours(graph, inputs)
        for want, got in zip(expected, actual, strict=True):
            assert got.dtype == want.dtype and got.shape == want.shape
            mismatches = np.flatnonzero(got.view(np.uint8) != want.view(np.uint8))
            assert mismatches.size == 0, (
                f"{mismatches.size} mismatches, first at {mismatches[0]}: "
                f"ours {got.ravel()[mismatches[:5]]} LiteRT {want.ravel()[mismatches[:5]]}"
            )


# --- ADD, SUB, MUL ----------------------------------------------------------------------------

# (scale1, zero1, scale2, zero2, out_scale, out_zero): equal scales, extreme zero points, scales a
# thousand times apart (MUL's multiplier above one), a tiny MUL multiplier.
BINARY_QUANT = [
    (0.05, 0, 0.05, 0, 0.1, 0),
    (0.02, -128, 0.5, 127, 0.3, -5),
    (1.0, 10, 0.001, -20, 0.0001, 100),
    (0.003, 127, 0.007, -128, 2.5, -128),
]
BROADCAST_SHAPES = [
    ((1, 4, 4, 8), (1, 4, 4, 8)),
    ((1, 4, 4, 8), (1, 1, 1, 8)),
    ((1, 4, 4, 8), (8,)),
    ((1, 1, 1, 8), (1, 4, 4, 8)),
    ((2, 1, 3, 1, 5), (1, 4, 1, 6, 1)),
]
BINARY_OPS = ["add", "sub", "mul"]


def _binary_graph(kind: str, shapes: tuple, quant: tuple, activation: Activation,
                  constant: bool = False) -> Graph:
    s1, z1, s2, z2, so, zo = quant
    b = GraphBuilder(seed=7)
    x = b.input(shapes[0], s1, z1)
    y = b.constant_int8(shapes[1], s2, z2) if constant else b.input(shapes[1], s2, z2)
    out = getattr(b, kind)(x, y, activation, QuantParams.per_tensor(so, zo))
    return b.output(out).build()


@pytest.mark.parametrize("kind", BINARY_OPS)
@pytest.mark.parametrize("quant", BINARY_QUANT)
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_binary_broadcasting(kind: str, quant: tuple, shapes: tuple) -> None:
    _assert_bit_exact(_binary_graph(kind, shapes, quant, Activation.NONE))


@pytest.mark.parametrize("kind", BINARY_OPS)
@pytest.mark.parametrize("quant", BINARY_QUANT)
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: a.value)
def test_binary_fused_activation(kind: str, quant: tuple, activation: Activation) -> None:
    _assert_bit_exact(_binary_graph(kind, ((1, 4, 4, 8), (1, 1, 1, 8)), quant, activation))


@pytest.mark.parametrize("kind", BINARY_OPS)
def test_binary_constant_operand(kind: str) -> None:
    graph = _binary_graph(kind, ((1, 4, 4, 8), (8,)), BINARY_QUANT[1], Activation.RELU, True)
    _assert_bit_exact(graph)


@pytest.mark.parametrize("kind", [OpKind.MAXIMUM, OpKind.MINIMUM], ids=lambda k: k.value)
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "differing-quantisation"])
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_maximum_minimum(kind: OpKind, shared: bool, shapes: tuple) -> None:
    """LiteRT compares the stored int8 values, whatever the inputs' quantisation."""
    b = GraphBuilder(seed=9)
    x = b.input(shapes[0], 0.05, 3)
    y = b.input(shapes[1], 0.05, 3) if shared else b.input(shapes[1], 0.2, -40)
    out = b.op(kind, [x, y], NoAttrs(), QuantParams.per_tensor(0.05, 3))
    _assert_bit_exact(b.output(out).build())


@pytest.mark.parametrize("kind", [OpKind.MAXIMUM, OpKind.MINIMUM], ids=lambda k: k.value)
def test_maximum_minimum_with_a_constant(kind: OpKind) -> None:
    b = GraphBuilder(seed=10)
    x = b.input((1, 4, 4, 8), 0.05, 3)
    floor = b.constant_int8((1, 1, 1, 8), 0.05, 3)
    _assert_bit_exact(b.output(b.op(kind, [floor, x], NoAttrs(), b.quant(x))).build())


def test_mul_multiplier_is_computed_in_float32() -> None:
    # in1 * in2 / out rounds differently in float32 and double here, and the product 140 * 211
    # (inputs 12 and 83 with zero points -128) lands on the rounding difference.
    quant = (float.fromhex("0x1.0b7d78p-8"), -128, float.fromhex("0x1.0c9b08p-6"), -128,
             float.fromhex("0x1.0a8ebcp-6"), 0)
    graph = _binary_graph("mul", ((256, 1), (1, 256)), quant, Activation.NONE)
    every_pair = [np.arange(-128, 128, dtype=np.int8).reshape(256, 1),
                  np.arange(-128, 128, dtype=np.int8).reshape(1, 256)]
    _assert_bit_exact(graph, [every_pair])


def test_add_rejects_an_output_scale_litert_cannot_represent() -> None:
    graph = _binary_graph("add", ((1, 8), (1, 8)), (1.0, 0, 1.0, 0, 1e-7, 0), Activation.NONE)
    with pytest.raises(UnsupportedModelError, match=r"output multiplier 19.07\d* found"):
        _run_ours(graph, [np.zeros((1, 8), np.int8)] * 2)


# --- RELU, RELU6, LEAKY_RELU, HARD_SWISH ---------------------------------------------------

# (in_scale, in_zero, out_scale, out_zero)
UNARY_QUANT = [
    (0.05, 0, 0.05, 0),
    (0.1, -128, 0.02, 127),
    (0.01, 127, 0.5, -128),
    (0.5, 3, 0.001, -100),
    (0.0123, -37, 0.0456, 21),
    # in / out differs in float32 and double; input 21 (149 above the zero point) shows it.
    (float.fromhex("0x1.2513e8p-5"), -128, float.fromhex("0x1.d817c4p-5"), 0),
]


def _unary_graph(kind: str, quant: tuple, **attrs: float) -> Graph:
    s_in, z_in, s_out, z_out = quant
    b = GraphBuilder()
    x = b.input(UNARY_SHAPE, s_in, z_in)
    out = getattr(b, kind)(x, quant=QuantParams.per_tensor(s_out, z_out), **attrs)
    return b.output(out).build()


@pytest.mark.parametrize("kind", ["relu", "relu6"])
@pytest.mark.parametrize("quant", UNARY_QUANT)
def test_relu(kind: str, quant: tuple) -> None:
    _assert_bit_exact(_unary_graph(kind, quant))


@pytest.mark.parametrize("alpha", [0.1, 0.2, 0.01, -0.3])
@pytest.mark.parametrize("quant", UNARY_QUANT)
def test_leaky_relu(alpha: float, quant: tuple) -> None:
    _assert_bit_exact(_unary_graph("leaky_relu", quant, alpha=alpha))


# Output scales from input / 125 (largest allowed) to 1000 x input (output exponent -17, where the
# int16 rounding mask wraps), reluish multipliers from 2**-3 to 2**7, and the largest input
# scale whose reluish shift LiteRT still computes (2**30).
HARD_SWISH_QUANT = [
    (2.4e7, 3, 2.4e7, 3),
    (0.05, 0, 0.05, 0),
    (0.2, 5, 0.0016, -3),
    (0.001, 100, 0.5, 20),
    (0.001, 0, 1.0, 0),
    (1.0, -20, 0.05, -128),
    (0.03, -128, 0.02, 127),
    (0.0235, 17, 0.0178, -90),
]


@pytest.mark.parametrize("quant", HARD_SWISH_QUANT)
def test_hard_swish(quant: tuple) -> None:
    _assert_bit_exact(_unary_graph("hard_swish", quant))


def test_hard_swish_rejects_output_scale_below_input_over_128() -> None:
    graph = _unary_graph("hard_swish", (0.5, 0, 0.001, 0))
    with pytest.raises(UnsupportedModelError, match="HARD_SWISH"):
        _run_ours(graph, [np.zeros(UNARY_SHAPE, np.int8)])


def test_hard_swish_rejects_an_input_scale_litert_cannot_shift() -> None:
    """At 2.6e7 LiteRT's `1 << 31` is undefined (x86 gives what it gives): refused, not guessed."""
    graph = _unary_graph("hard_swish", (2.6e7, 0, 2.6e7, 0))
    with pytest.raises(UnsupportedModelError, match=r"HARD_SWISH.*input scale 2.6e\+07 found"):
        _run_ours(graph, [np.zeros(UNARY_SHAPE, np.int8)])


# --- LOGISTIC, TANH -------------------------------------------------------------------------

# (in_scale, in_zero); 0x1.2a165ap-4 with zero point 52 hits inputs where glibc's tanhf is one ulp
# off the correctly rounded value and the ulp decides the int8 output; at 0x1.000016p-7 input 1
# is the one float32 whose LOGISTIC entry glibc's expf and exp computed in float64 disagree on
# (LiteRT takes expf's: the tables must come from the C library, not numpy).
LUT_QUANT = [
    (0.05, 0),
    (0.1, -128),
    (0.01, 127),
    (0.5, 3),
    (float.fromhex("0x1.2a165ap-4"), 52),
    (float.fromhex("0x1.3bcba4p-3"), 36),
    (float.fromhex("0x1.000016p-7"), 0),
]


@pytest.mark.parametrize("kind", ["logistic", "tanh"])
@pytest.mark.parametrize("quant", LUT_QUANT)
def test_logistic_and_tanh(kind: str, quant: tuple) -> None:
    b = GraphBuilder()
    x = b.input(UNARY_SHAPE, *quant)
    _assert_bit_exact(b.output(getattr(b, kind)(x)).build())


# --- SOFTMAX --------------------------------------------------------------------------------

SOFTMAX_QUANT = [(0.05, 0), (0.1, -128), (1.0, 5), (0.001, -3), (50.0, 0)]


@pytest.mark.parametrize("beta", [1.0, 0.5])
@pytest.mark.parametrize("shape", [(1, 10), (1, 4, 12), (2, 3, 5, 7)], ids=str)
@pytest.mark.parametrize("quant", SOFTMAX_QUANT)
def test_softmax(beta: float, shape: tuple, quant: tuple) -> None:
    b = GraphBuilder()
    x = b.input(shape, *quant)
    _assert_bit_exact(b.output(b.softmax(x, beta)).build())


def test_softmax_rows_with_ties_and_constant_rows() -> None:
    b = GraphBuilder()
    x = b.input((4, 6), 0.25, 0)
    graph = b.output(b.softmax(x)).build()
    rows = np.array([[7] * 6, [-128] * 6, [127, 127, -128, -128, 0, 0], [1, 2, 3, 4, 5, 6]])
    _assert_bit_exact(graph, [[rows.astype(np.int8)]])


# --- QUANTIZE, DEQUANTIZE ---------------------------------------------------------------------

FLOAT_QUANT = [(0.01, 0), (0.05, -128), (0.3, 127), (1e-3, 17), (0.5, 0)]


@pytest.mark.parametrize("quant", FLOAT_QUANT)
def test_quantize_float(quant: tuple) -> None:
    b = GraphBuilder()
    x = b.input((2, 3, 50), dtype=DType.FLOAT32)
    graph = b.output(b.quantize(x, *quant)).build()
    scale = np.float32(quant[0])
    halves = (np.arange(-150, 150, dtype=np.float32) + np.float32(0.5)) * scale
    inputs = [[np.random.default_rng(seed).standard_normal((2, 3, 50)).astype(np.float32)
               * np.float32(4.0)] for seed in SEEDS]
    _assert_bit_exact(graph, [*inputs, [halves.reshape(2, 3, 50)]])


def test_quantize_rounds_halves_away_from_zero() -> None:
    quotients = mcuflow.ref.quantize.quantize(np.array([-1.25, -0.75, -0.25, 0.25, 0.75, 1.25]),
                                              0.5, 0)
    assert quotients.tolist() == [-3, -2, -1, 1, 2, 3]


REQUANT = [
    (0.05, 0, 0.1, 5),
    (0.02, -128, 0.001, 127),
    (1.0, 127, 0.9, -128),
    (0.003, -7, 2.0, 0),
    (0.05, 3, 0.05, 3),
]


@pytest.mark.parametrize("quant", REQUANT)
def test_requantize_int8(quant: tuple) -> None:
    s_in, z_in, s_out, z_out = quant
    b = GraphBuilder()
    x = b.input(UNARY_SHAPE, s_in, z_in)
    _assert_bit_exact(b.output(b.quantize(x, s_out, z_out)).build())


@pytest.mark.parametrize("quant", [(0.05, 0), (0.1234567, -128), (3.3e-5, 127), (7.0, 11)])
def test_dequantize(quant: tuple) -> None:
    b = GraphBuilder()
    x = b.input(UNARY_SHAPE, *quant)
    _assert_bit_exact(b.output(b.dequantize(x)).build())


# --- gemmlowp fixed-point primitives ------------------------------------------------------------

def test_exp_on_negative_values_is_accurate() -> None:
    raw = -np.random.default_rng(0).integers(0, 32 << 26, size=2000)
    ours = fixedpoint.exp_on_negative_values_array(raw, 5) / 2.0**31
    np.testing.assert_allclose(ours, np.exp(raw / 2.0**26), atol=2e-7)
    assert fixedpoint.exp_on_negative_values_array(np.array([0]), 5)[0] == INT32_MAX


def test_one_over_one_plus_x_is_accurate() -> None:
    raw = np.random.default_rng(1).integers(0, 1 << 31, size=2000)
    ours = fixedpoint.one_over_one_plus_x_for_x_in_0_1_array(raw) / 2.0**31
    np.testing.assert_allclose(ours, 1.0 / (1.0 + raw / 2.0**31), atol=2e-9)

