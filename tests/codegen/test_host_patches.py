"""Patched and streamed plans: the generated C equals LiteRT to the bit (gcc, clang, sanitised)."""

from __future__ import annotations

import pytest

from mcuflow.ir import zoo
from mcuflow.ir.ops import OpKind
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
