"""SQUARED_DIFFERENCE, PRELU, ABS, SUM, L2_NORMALIZATION, LOG_SOFTMAX: reference equals LiteRT.

The int8 reference kernels equal LiteRT's reference kernels to the bit (SUM: tflite-micro's), on
random shapes and quantisation parameters; TFLite round trips; the support constraints' messages.

LiteRT 2.3's reference SUM (BUILTIN_REF) runs its int8 inputs through the uint8 instantiation
of QuantizedMeanOrSum (negative values read as value + 256, outputs clamped to 0..255 then cast),
so SUM's oracle is tflite-micro, whose reduce kernel runs TensorFlow's reference arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tflite_micro.python.tflite_micro import runtime as tflm

import mcuflow.ref.kernels  # noqa: F401  (registers every kernel)
from mcuflow import api
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import MeanAttrs, NoAttrs, OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.ref.interpreter import Interpreter
from mcuflow.ref.registry import FLOAT_KERNELS
from tests.support import litert_interpreter, litert_invoke, random_input
from tests.unit.test_onnx_reader import Net

Q = QuantParams.per_tensor
L2_OUT = Q(1.0 / 128.0, 0)
LOG_SOFTMAX_OUT = Q(16.0 / 256.0, 127)
CASES = range(16)


def _inputs(graph: Graph, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [random_input(graph.tensor(name).shape, np.dtype(np.int8), rng)
            for name in graph.inputs]


def _tflm_invoke(model: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    interpreter = tflm.Interpreter.from_bytes(model, arena_size=1 << 20)
    for index, value in enumerate(inputs):
        interpreter.set_input(value, index)
    interpreter.invoke()
    return [interpreter.get_output(0)]


def _assert_bit_exact(graph: Graph, seeds: tuple[int, ...] = (0, 1, 2),
                      inputs: list[np.ndarray] | None = None, micro: bool = False) -> None:
    model = write_tflite(graph)
    litert = None if micro else litert_interpreter(model)
    ours = Interpreter(graph)
    for values in [inputs] if inputs else [_inputs(graph, s) for s in seeds]:
        want = (_tflm_invoke(model, values) if litert is None else
                litert_invoke(litert, values))[0]
        got = ours.run(values).outputs[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def _scale(rng: np.random.Generator, low: float = 0.005, high: float = 0.2) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _zero_point(rng: np.random.Generator) -> int:
    return int(rng.integers(-128, 128))


def _shape(rng: np.random.Generator, rank: int) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(1, 7, rank))


def _broadcast_partner(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[int, ...]:
    """`shape` with some dims set to 1 (and maybe leading ones dropped)."""
    partner = tuple(1 if rng.random() < 0.4 else d for d in shape)
    return partner[int(rng.integers(0, len(partner))):] if rng.random() < 0.3 else partner


# --- SQUARED_DIFFERENCE -------------------------------------------------------------------------


def _squared_difference_graph(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    shape = _shape(rng, int(rng.integers(1, 5)))
    other = _broadcast_partner(rng, shape) if seed % 3 else shape
    b = GraphBuilder(seed=seed)
    x = b.input(shape, _scale(rng), _zero_point(rng))
    y = b.input(other, _scale(rng), _zero_point(rng))
    pair = [y, x] if seed % 2 else [x, y]
    out = b.op(OpKind.SQUARED_DIFFERENCE, pair, NoAttrs(), Q(_scale(rng, 0.01, 2.0),
                                                             _zero_point(rng)))
    return b.output(out).build()


@pytest.mark.parametrize("seed", CASES)
def test_squared_difference(seed: int) -> None:
    _assert_bit_exact(_squared_difference_graph(seed))


# --- PRELU --------------------------------------------------------------------------------------


def _prelu_graph(seed: int) -> Graph:
    """alpha: a constant per channel, a scalar, a full constant, or a second input."""
    rng = np.random.default_rng(seed)
    shape = _shape(rng, int(rng.integers(2, 5)))
    b = GraphBuilder(seed=seed)
    x = b.input(shape, _scale(rng), _zero_point(rng))
    alpha_quant = Q(_scale(rng, 0.001, 0.05), _zero_point(rng))
    kind = seed % 4
    if kind == 3:
        alpha = b.input(shape, alpha_quant.scale0, alpha_quant.zero_point0)
    else:
        alpha_shape = [(shape[-1],), (1,), shape][kind]
        data = rng.integers(-128, 128, alpha_shape, dtype=np.int8)
        alpha = b.constant("alpha", data, alpha_quant)
    out = b.op(OpKind.PRELU, [x, alpha], NoAttrs(), Q(_scale(rng, 0.002, 0.5), _zero_point(rng)))
    return b.output(out).build()


@pytest.mark.parametrize("seed", CASES)
def test_prelu(seed: int) -> None:
    _assert_bit_exact(_prelu_graph(seed))


# --- ABS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", CASES)
def test_abs(seed: int) -> None:
    """Every int8 input; a third of the cases keep the input scale (no rescaling)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(seed=seed)
    in_scale = _scale(rng)
    x = b.input((2, 128), in_scale, _zero_point(rng))
    out_scale = in_scale if seed % 3 == 0 else _scale(rng)
    graph = b.output(b.op(OpKind.ABS, [x], NoAttrs(), Q(out_scale, _zero_point(rng)))).build()
    _assert_bit_exact(graph, inputs=[np.arange(-128, 128, dtype=np.int8).reshape(2, 128)])


# --- SUM ----------------------------------------------------------------------------------------

SUM_AXES = [(1, 2), (3,), (1,), (0, 1, 2, 3), (1, 3), (-1,), (0, 2)]


def _sum_graph(seed: int, axes: tuple[int, ...], keep: bool) -> Graph:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 3)), *_shape(rng, 3))
    b = GraphBuilder(seed=seed)
    x = b.input(shape, _scale(rng), _zero_point(rng))
    out = b.op(OpKind.SUM, [x], MeanAttrs(axes, keep), Q(_scale(rng, 0.01, 5.0),
                                                         _zero_point(rng)))
    return b.output(out).build()


@pytest.mark.parametrize("seed", CASES)
def test_sum(seed: int) -> None:
    axes = SUM_AXES[seed % len(SUM_AXES)]
    _assert_bit_exact(_sum_graph(seed, axes, bool(seed % 2)), micro=True)


# --- L2_NORMALIZATION ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", CASES)
def test_l2_normalization(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (*_shape(rng, int(rng.integers(1, 4))), int(rng.choice([1, 2, 7, 64, 300])))
    b = GraphBuilder(seed=seed)
    x = b.input(shape, _scale(rng), _zero_point(rng))
    _assert_bit_exact(b.output(b.op(OpKind.L2_NORMALIZATION, [x], NoAttrs(), L2_OUT)).build())


def test_l2_normalization_of_tiny_rows() -> None:
    """Rows at the zero point (sum of squares 0) or one step from it (1), and saturating ones."""
    b = GraphBuilder(seed=1)
    x = b.input((4, 3), 0.05, 5)
    graph = b.output(b.op(OpKind.L2_NORMALIZATION, [x], NoAttrs(), L2_OUT)).build()
    rows = np.array([[5, 5, 5], [5, 6, 5], [4, 5, 5], [-128, 127, 5]], np.int8)
    _assert_bit_exact(graph, inputs=[rows])


# --- LOG_SOFTMAX --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", CASES)
def test_log_softmax(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (*_shape(rng, int(rng.integers(0, 3))), int(rng.choice([1, 2, 10, 100, 1000])))
    b = GraphBuilder(seed=seed)
    x = b.input(shape, _scale(rng, 1e-4, 2.0), _zero_point(rng))
    _assert_bit_exact(b.output(b.op(OpKind.LOG_SOFTMAX, [x], NoAttrs(), LOG_SOFTMAX_OUT)).build())


def test_log_softmax_of_constant_and_extreme_rows() -> None:
    b = GraphBuilder(seed=2)
    x = b.input((3, 8), 0.5, 0)
    graph = b.output(b.op(OpKind.LOG_SOFTMAX, [x], NoAttrs(), LOG_SOFTMAX_OUT)).build()
    rows = np.array([[7] * 8, [-128] * 7 + [127], [-128, 127] * 4], np.int8)
    _assert_bit_exact(graph, inputs=[rows])


# --- TFLite round trip, float kernels, constraints ----------------------------------------------

GRAPHS: dict[OpKind, Callable[[], Graph]] = {
    OpKind.SQUARED_DIFFERENCE: lambda: _squared_difference_graph(1),
    OpKind.PRELU: lambda: _prelu_graph(0),
    OpKind.SUM: lambda: _sum_graph(3, (1, 2), True),
}


def _unary_graph(kind: OpKind, quant: QuantParams) -> Graph:
    b = GraphBuilder(seed=4)
    x = b.input((2, 3, 5), 0.05, 3)
    return b.output(b.op(kind, [x], NoAttrs(), quant)).build()


GRAPHS[OpKind.ABS] = lambda: _unary_graph(OpKind.ABS, Q(0.03, -128))
GRAPHS[OpKind.L2_NORMALIZATION] = lambda: _unary_graph(OpKind.L2_NORMALIZATION, L2_OUT)
GRAPHS[OpKind.LOG_SOFTMAX] = lambda: _unary_graph(OpKind.LOG_SOFTMAX, LOG_SOFTMAX_OUT)


@pytest.mark.parametrize("kind", list(GRAPHS), ids=lambda k: k.value)
def test_tflite_round_trip(kind: OpKind) -> None:
    graph = GRAPHS[kind]()
    again = read_tflite(write_tflite(graph))
    assert [(op.kind, op.attrs) for op in again.operators] == [
        (op.kind, op.attrs) for op in graph.operators]
    values = _inputs(graph, 7)
    np.testing.assert_array_equal(Interpreter(again).run(values).outputs[0],
                                  Interpreter(graph).run(values).outputs[0])


def test_float_kernels() -> None:
    """The float twins (PTQ calibration) against numpy's formulas."""
    x = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    alpha = np.float32(0.25)

    def run(kind: OpKind, inputs: list[np.ndarray], attrs: object = NoAttrs()) -> np.ndarray:
        b = GraphBuilder(seed=3)
        names = [b.input(v.shape, 0.1, 0) for v in inputs]
        graph = b.output(b.op(kind, names, attrs, None)).build()
        return FLOAT_KERNELS[kind](graph, graph.operators[0], inputs)[0]

    np.testing.assert_allclose(run(OpKind.SQUARED_DIFFERENCE, [x, x[:, :1]]),
                               (x - x[:, :1]) ** 2, rtol=1e-6)
    np.testing.assert_allclose(run(OpKind.PRELU, [x, np.full((4,), alpha)]),
                               np.where(x >= 0, x, alpha * x), rtol=1e-6)
    np.testing.assert_allclose(run(OpKind.ABS, [x]), np.abs(x))
    np.testing.assert_allclose(run(OpKind.SUM, [x], MeanAttrs((1,), True)),
                               x.sum(axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(run(OpKind.L2_NORMALIZATION, [x]),
                               x / np.linalg.norm(x, axis=-1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(run(OpKind.LOG_SOFTMAX, [x]),
                               x - np.log(np.exp(x).sum(axis=-1, keepdims=True)), rtol=1e-5,
                               atol=1e-6)


def _refused(graph: Graph, message: str) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        check_supported(graph)


def _pair_graph(kind: OpKind, shapes: tuple[tuple[int, ...], tuple[int, ...]],
                out: QuantParams) -> Graph:
    b = GraphBuilder(seed=5)
    names = [b.input(shape, 0.05, 0) for shape in shapes]
    return b.output(b.op(kind, names, NoAttrs(), out)).build()


def test_constraint_messages() -> None:
    _refused(_pair_graph(OpKind.SQUARED_DIFFERENCE, ((1, 4), (1, 4)), Q(1e-7, 0)),
             r"output scale must exceed \(twice the larger input scale\)\*\*2 / 2\*\*14")
    _refused(_pair_graph(OpKind.SQUARED_DIFFERENCE, ((1, 2, 3, 4, 5), (1, 1, 1, 1, 5)),
                         Q(0.1, 0)), "LiteRT broadcasts in 4-D.*rank 5 broadcast found")
    _refused(_pair_graph(OpKind.PRELU, ((1, 2, 3, 4, 5), (5,)), Q(0.1, 0)),
             "at most 4 dimensions.*rank 5 found")
    _refused(_unary_graph(OpKind.L2_NORMALIZATION, Q(0.01, 0)), "scale 1/128 and zero point 0")
    _refused(_unary_graph(OpKind.LOG_SOFTMAX, Q(1.0 / 256.0, -128)),
             "scale 16/256 and zero point 127")
    b = GraphBuilder(seed=6)
    x = b.input((1, 5000), 0.05, 0)
    _refused(b.output(b.op(OpKind.LOG_SOFTMAX, [x], NoAttrs(), LOG_SOFTMAX_OUT)).build(),
             "at most 4095 values.*last axis of 5000 found")
    b = GraphBuilder(seed=7)
    x = b.input((1, 10), 1e-9, 0)
    _refused(b.output(b.op(OpKind.LOG_SOFTMAX, [x], NoAttrs(), LOG_SOFTMAX_OUT)).build(),
             r"input scale must exceed 2\*\*-26")


@pytest.mark.parametrize(("axes", "quant", "message"), [
    ((1,), Q(0.05, 3), "skips its requantising path.*shared"),
    ((), Q(0.5, 3), "at least one axis"),
], ids=["shared-quantisation", "no-axes"])
def test_sum_constraints(axes: tuple[int, ...], quant: QuantParams, message: str) -> None:
    b = GraphBuilder(seed=8)
    x = b.input((1, 4, 4), 0.05, 3)
    _refused(b.output(b.op(OpKind.SUM, [x], MeanAttrs(axes, False), quant)).build(), message)


def test_quantised_reduce_sum_runs_in_tflite_micro_to_the_bit(tmp_path: Path) -> None:
    """PTQ of a float ONNX model with ReduceSum: the int8 model equals tflite-micro's."""
    shape = (1, 3, 8, 8)
    net = Net(shape)
    y = net.node("Conv", "x", net.weights(6, 3, 3, 3))
    path = tmp_path / "sum.onnx"
    path.write_bytes(net.model(net.node("ReduceSum", y, axes=[2, 3], keepdims=0)))
    calibration = np.random.default_rng(9).standard_normal((8, *shape[1:])).astype(np.float32)
    result = api.quantize_model(path, calibration, "affine", True, "minmax")
    assert OpKind.SUM in {op.kind for op in result.graph.operators}
    model, ours = result.tflite(), Interpreter(result.graph)
    for sample in calibration[:4]:
        x = result.quantize_input(sample[None])
        np.testing.assert_array_equal(ours.run([x]).outputs[0], _tflm_invoke(model, [x])[0])
