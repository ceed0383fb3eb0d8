"""Patched and streamed plans: the generated C equals LiteRT to the bit (gcc, clang, sanitised)."""

from __future__ import annotations

import pytest

from mcuflow.ir import zoo
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.memory.planner import plan_model
from mcuflow.toolchain.host import verify_host


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
