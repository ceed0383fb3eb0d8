"""Channel slices written in place run bit-exact on QEMU (DSP kernels on M4/M7, portable on M0)."""

from __future__ import annotations

import pytest

from mcuflow.ir import zoo
from mcuflow.ir.graph import Graph
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.qemu import verify_cortexm
from tests.support import inception_block


@pytest.mark.parametrize("graph", [zoo.squeezenet_like(32), inception_block(12)],
                         ids=["squeezenet", "inception"])
@pytest.mark.parametrize(("target", "board"), [("cortex-m4", "nucleo-l4r5zi"),
                                               ("cortex-m7", "nucleo-f767zi"),
                                               ("cortex-m0", "rp2040")])
def test_channel_slices_run_bit_exact(graph: Graph, target: str, board: str) -> None:
    dsp = target != "cortex-m0"
    plan = plan_memory(graph, 0.3, dsp=dsp)
    assert any(buffer.pixel_step for buffer in plan.buffers.values())
    result = verify_cortexm(graph, plan, target, board, runs=2, seed=10)
    assert result.bit_exact and result.mismatches == 0
