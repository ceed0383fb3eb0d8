"""The int16x8 DSP kernels run on QEMU Cortex-M4 and M7, chosen and bit-exact.

tests/codegen/cases.py's int16x8_dsp family reaches every branch of mcuflow_s16_dsp.c (the
family test of test_cortexm_ops runs it on every core); here the profile names the kernel each
layer ran: the DSP kernels for every CONV_2D and FULLY_CONNECTED, those whose sums can leave
int32 in int32 chunks.
"""

from __future__ import annotations

import pytest

from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.qemu import verify_cortexm
from tests.codegen.cases import FAMILIES
from tests.targets.support import BOARDS, FAMILY_PLAN_SECONDS

DSP = {"mcuflow_conv2d_s16_dsp": 10, "mcuflow_fully_connected_s16_dsp": 9}
PORTABLE = {"mcuflow_conv2d_s16": 0, "mcuflow_fully_connected_s16": 0}


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
def test_int16x8_layers_run_the_dsp_kernels_bit_exact(target: str) -> None:
    graph = FAMILIES["int16x8_dsp"]()
    plan = plan_memory(graph, FAMILY_PLAN_SECONDS, dsp=True)
    result = verify_cortexm(graph, plan, target, BOARDS[target], runs=8, seed=4, profile=True)
    assert result.bit_exact and result.mismatches == 0
    ran = [kernel for layer in result.layers if layer.instructions > 0
           for kernel in layer.kernels]
    assert {name: ran.count(name) for name in (*DSP, *PORTABLE)} == DSP | PORTABLE
