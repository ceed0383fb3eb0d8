"""Channel slices written in place: the generated C equals LiteRT to the bit (gcc, clang)."""

from __future__ import annotations

import pytest

from mcuflow.ir import zoo
from mcuflow.ir.graph import Graph
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.host import verify_host
from tests.support import inception_block


@pytest.mark.parametrize("graph", [zoo.squeezenet_like(32), inception_block(12)],
                         ids=["squeezenet", "inception"])
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_channel_slices_in_c_are_bit_exact_with_litert(graph: Graph, compiler: str) -> None:
    plan = plan_memory(graph, 0.3)
    assert any(buffer.pixel_step for buffer in plan.buffers.values())
    result = verify_host(graph, plan, runs=4, seed=9, compiler=compiler)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0
