"""Graph passes: each rewrite keeps the float results (LiteRT and numpy as oracles) and shrinks."""

from __future__ import annotations

import numpy as np
import pytest

from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import (
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    ElementwiseAttrs,
    FullyConnectedAttrs,
    NoAttrs,
    OpKind,
    ReshapeAttrs,
)
from mcuflow.ir.verify import GraphInvariantError
from mcuflow.passes.fold_batchnorm import fold_batchnorm
from mcuflow.passes.fold_constants import fold_constants
from mcuflow.passes.fuse_activation import fuse_activation
from mcuflow.passes.layout import clean_layout
from mcuflow.passes.pipeline import DEFAULT_PASSES, Pass, run_passes
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.registry import FLOAT_KERNELS
from tests.support import FLOAT_MODELS, SHARED_MODELS, litert_invoke

F32 = DType.FLOAT32
RNG = np.random.default_rng(3)


class FloatBuilder(GraphBuilder):
    """GraphBuilder for float32 graphs."""

    def const(self, *shape: int) -> str:
        return self.constant("c", RNG.standard_normal(shape).astype(np.float32), None)

    def float_op(self, kind: OpKind, inputs: list[str], attrs: object = None) -> str:
        return self.op(kind, inputs, attrs or NoAttrs(), None, F32)

    def conv(self, x: str, out_c: int, bias: bool = True) -> str:
        in_c = self.graph.tensors[x].shape[-1]
        inputs = [x, self.const(out_c, 3, 3, in_c)] + ([self.const(out_c)] if bias else [])
        return self.float_op(OpKind.CONV_2D, inputs, Conv2DAttrs(padding=Padding.SAME))


def _run(graph: Graph, x: np.ndarray) -> np.ndarray:
    return run_float(graph, [x]).outputs[0]


def _kinds(graph: Graph) -> list[OpKind]:
    return [op.kind for op in graph.operators]


def _check_same_results(before: Graph, after: Graph) -> None:
    x = RNG.standard_normal(before.tensors[before.inputs[0]].shape).astype(np.float32)
    np.testing.assert_allclose(_run(after, x), _run(before, x), rtol=1e-5, atol=1e-5)


def test_batchnorm_mul_add_folds_into_conv_and_fc() -> None:
    b = FloatBuilder()
    x = b.input((1, 6, 6, 3), dtype=F32)
    y = b.conv(x, 4, bias=False)
    y = b.float_op(OpKind.MUL, [y, b.const(1, 1, 1, 4)], ElementwiseAttrs())
    y = b.float_op(OpKind.ADD, [b.const(4), y], ElementwiseAttrs(Activation.RELU))
    y = b.float_op(OpKind.DEPTHWISE_CONV_2D, [y, b.const(1, 3, 3, 4)],
                   DepthwiseConv2DAttrs(padding=Padding.SAME))
    y = b.float_op(OpKind.SUB, [y, b.const(4)], ElementwiseAttrs())
    y = b.float_op(OpKind.FULLY_CONNECTED, [y, b.const(5, 4)], FullyConnectedAttrs(
        keep_num_dims=True))
    y = b.float_op(OpKind.MUL, [y, b.const(5)], ElementwiseAttrs(Activation.RELU6))
    graph = b.output(y).build()
    folded = fold_batchnorm(graph)
    assert _kinds(folded) == [OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D,
                              OpKind.FULLY_CONNECTED]
    assert [op.attrs.activation for op in folded.operators] == [
        Activation.RELU, Activation.NONE, Activation.RELU6]
    _check_same_results(graph, folded)
    assert len(graph.operators) == 7, "the pass must not modify its argument"


def test_no_fold_when_the_conv_output_is_also_read_elsewhere() -> None:
    b = FloatBuilder()
    x = b.input((1, 4, 4, 2), dtype=F32)
    y = b.conv(x, 3)
    scaled = b.float_op(OpKind.MUL, [y, b.const(3)], ElementwiseAttrs())
    graph = b.output(b.float_op(OpKind.ADD, [y, scaled], ElementwiseAttrs())).build()
    assert _kinds(fold_batchnorm(graph)) == _kinds(graph)


def test_shared_weights_are_copied_before_scaling() -> None:
    b = FloatBuilder()
    x = b.input((1, 4, 4, 2), dtype=F32)
    weights = b.const(3, 3, 3, 2)
    attrs = Conv2DAttrs(padding=Padding.SAME)
    first = b.float_op(OpKind.CONV_2D, [x, weights], attrs)
    second = b.float_op(OpKind.CONV_2D, [x, weights], attrs)
    scaled = b.float_op(OpKind.MUL, [first, b.const(3)], ElementwiseAttrs())
    graph = b.output(b.float_op(OpKind.ADD, [scaled, second], ElementwiseAttrs())).build()
    folded = fold_batchnorm(graph)
    assert _kinds(folded) == [OpKind.CONV_2D, OpKind.CONV_2D, OpKind.ADD]
    _check_same_results(graph, folded)


def test_relu_fuses_into_producer_unless_its_input_is_an_output() -> None:
    b = FloatBuilder()
    x = b.input((1, 4, 4, 2), dtype=F32)
    y = b.float_op(OpKind.RELU6, [b.conv(x, 3)])
    y = b.float_op(OpKind.RELU, [b.float_op(OpKind.ADD, [y, y], ElementwiseAttrs())])
    y = b.float_op(OpKind.RELU, [y])
    kept = b.conv(y, 2)
    graph = b.output(b.float_op(OpKind.RELU6, [kept]), kept).build()
    fused = fuse_activation(graph)
    assert _kinds(fused) == [OpKind.CONV_2D, OpKind.ADD, OpKind.CONV_2D, OpKind.RELU6]
    assert [op.attrs.activation for op in fused.operators[:3]] == [
        Activation.RELU6, Activation.RELU, Activation.NONE]
    _check_same_results(graph, fused)


def test_fold_constants_evaluates_constant_ops_and_drops_identities() -> None:
    b = FloatBuilder()
    x = b.input((1, 2, 3, 4), dtype=F32)
    offset = b.float_op(OpKind.RESHAPE, [b.const(12)], ReshapeAttrs((1, 1, 3, 4)))
    offset = b.float_op(OpKind.MUL, [offset, b.const(1)], ElementwiseAttrs())
    ones = b.constant("ones", np.ones((1, 2, 3, 4), np.float32), None)
    y = b.float_op(OpKind.MUL, [x, ones], ElementwiseAttrs())
    y = b.float_op(OpKind.ADD, [y, offset], ElementwiseAttrs())
    zeros = b.constant("zeros", np.zeros(4, np.float32), None)
    graph = b.output(b.float_op(OpKind.SUB, [y, zeros], ElementwiseAttrs())).build()
    folded = fold_constants(graph)
    assert _kinds(folded) == [OpKind.ADD, OpKind.SUB]
    _check_same_results(graph, folded)


def test_clean_layout_drops_identity_and_flatten_reshapes_and_merges_chains() -> None:
    b = FloatBuilder()
    x = b.input((1, 2, 2, 3), dtype=F32)
    y = b.float_op(OpKind.RESHAPE, [x], ReshapeAttrs((1, 2, 2, 3)))
    y = b.float_op(OpKind.RESHAPE, [y], ReshapeAttrs((1, 4, 3)))
    y = b.float_op(OpKind.RESHAPE, [y], ReshapeAttrs((2, 6)))
    y = b.float_op(OpKind.RELU, [y])
    flat = b.float_op(OpKind.RESHAPE, [y], ReshapeAttrs((1, 12)))
    graph = b.output(b.float_op(OpKind.FULLY_CONNECTED, [flat, b.const(5, 12)],
                                FullyConnectedAttrs())).build()
    cleaned = clean_layout(graph)
    assert _kinds(cleaned) == [OpKind.RESHAPE, OpKind.RELU, OpKind.FULLY_CONNECTED]
    _check_same_results(graph, cleaned)


def test_pipeline_names_the_pass_that_broke_the_graph() -> None:
    b = FloatBuilder()
    graph = b.output(b.conv(b.input((1, 4, 4, 2), dtype=F32), 3)).build()

    def break_graph(g: Graph) -> Graph:
        g = g.copy()
        g.operators[0].inputs = ("missing", *g.operators[0].inputs[1:])
        return g

    with pytest.raises(GraphInvariantError, match="after pass 'breaker'"):
        run_passes(graph, (*DEFAULT_PASSES, Pass("breaker", break_graph)))


@pytest.mark.parametrize("model", FLOAT_MODELS)
def test_float_kernels_after_passes_equal_litert(model: str) -> None:
    """LiteRT runs the float graph we wrote, and the original file.

    The hybrid KWS model is the exception for the original: LiteRT applies its int8 weights to
    dynamically quantised inputs, which is not float arithmetic.
    """
    original = read_tflite(SHARED_MODELS / model)
    graph = run_passes(original)
    assert all(t.dtype is F32 for t in graph.tensors.values() if t.is_constant)
    assert len(graph.operators) <= len(original.operators)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal(graph.tensors[graph.inputs[0]].shape).astype(np.float32)
        ours = _run(graph, x)
        np.testing.assert_allclose(ours, litert_invoke(write_tflite(graph), [x])[0],
                                   rtol=1e-4, atol=1e-5)
        if model != "kws_ref_model_float32.tflite":
            np.testing.assert_allclose(ours, litert_invoke(SHARED_MODELS / model, [x])[0],
                                       rtol=1e-4, atol=1e-5)


def test_every_float_op_kind_has_a_float_kernel() -> None:
    integer_only = {OpKind.QUANTIZE, OpKind.DEQUANTIZE}
    assert set(FLOAT_KERNELS) == set(OpKind) - integer_only
