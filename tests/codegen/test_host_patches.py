"""Patched and streamed plans: the generated C equals LiteRT to the bit (gcc, clang, sanitised)."""

from __future__ import annotations

import pytest

from mcuflow.ir import zoo
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import NoAttrs, OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.memory.planner import plan_model
from mcuflow.toolchain.host import verify_host
from tests.support import keras_padded


@pytest.mark.parametrize(("text", "input_mode"), [
    ("3x2", "arena"), ("12x1", "arena"), ("2x3", "streamed"), ("16x1", "streamed"),
])
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_patched_c_is_bit_exact_with_litert(text: str, input_mode: str, compiler: str) -> None:
    graph = zoo.squeezenet_like(48)
    request = PatchRequest.parse(text, None, None, input_mode)
    plan, _ = plan_model(graph, request, 1 << 20, "cortex-m4")
    assert plan.patch is not None
    result = verify_host(graph, plan, runs=4, seed=8, compiler=compiler)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0


@pytest.mark.parametrize("text", ["3x2", "10x1"])
def test_a_stage_through_pads_is_bit_exact_in_c(text: str) -> None:
    """Keras writes ZeroPadding2D as PAD before each stride-2 VALID conv: the stage runs through."""
    graph = keras_padded(40)
    plan, _ = plan_model(graph, PatchRequest.parse(text), 1 << 20, "cortex-m4")
    assert plan.patch is not None
    assert any(op.kind is OpKind.PAD and "#" in op.name for op in plan.graph.operators)
    result = verify_host(graph, plan, runs=3, seed=2)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0


def _pointwise_stage() -> Graph:
    """A first stage with every per-pixel op patches may cut, between convolutions."""
    b = GraphBuilder("pointwise_stage", seed=4)
    q = QuantParams.per_tensor
    x = b.input((1, 24, 24, 3), 0.04, 1)
    y = b.conv2d(x, 8, (3, 3), stride=2)
    y = b.op(OpKind.PRELU, [y, b.constant_int8((1, 1, 8), 0.01, 2)], NoAttrs(), q(0.05, 3))
    z = b.op(OpKind.ABS, [b.conv2d(y, 8, (3, 3))], NoAttrs(), q(0.05, -128))
    y = b.op(OpKind.SQUARED_DIFFERENCE, [y, z], NoAttrs(), q(0.2, -110))
    y = b.op(OpKind.L2_NORMALIZATION, [y], NoAttrs(), q(1.0 / 128.0, 0))
    y = b.op(OpKind.LOG_SOFTMAX, [b.conv2d(y, 8, (3, 3))], NoAttrs(), q(16.0 / 256.0, 127))
    y = b.conv2d(y, 16, (3, 3), stride=2)
    b.output(b.fully_connected(b.reshape(b.mean(y, (1, 2)), (1, -1)), 4))
    return b.build()


@pytest.mark.parametrize("text", ["2x2@conv_2d_19", "6x1@conv_2d_19"])
def test_pointwise_ops_run_patch_by_patch(text: str) -> None:
    graph = _pointwise_stage()
    plan, _ = plan_model(graph, PatchRequest.parse(text), 1 << 20, "cortex-m4")
    assert plan.patch is not None
    patched = {op.kind for op in plan.graph.operators if "#" in op.name}
    assert {OpKind.PRELU, OpKind.ABS, OpKind.SQUARED_DIFFERENCE, OpKind.L2_NORMALIZATION,
            OpKind.LOG_SOFTMAX} <= patched
    result = verify_host(graph, plan, runs=3, seed=2)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0
