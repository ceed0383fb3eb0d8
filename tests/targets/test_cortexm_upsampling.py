"""The segmentation decoder of tests/models/test_upsampling.py is bit-exact on QEMU Cortex-M4.

Both as written (EXPAND_DIMS, TILE, RESHAPE repeats) and as the API reads it (the repeats
become RESIZE_NEAREST_NEIGHBOR); the reference interpreter they are compared with equals LiteRT
(tests/models/test_upsampling.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcuflow.ir.ops import OpKind
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.arm import cortex_m_core
from mcuflow.toolchain.qemu import verify_cortexm
from tests.models.test_upsampling import decoder, rewritten
from tests.targets.support import BOARDS, PLAN_SECONDS, RUNS

TARGET = "cortex-m4"


@pytest.mark.parametrize("form", ["written", "rewritten"])
def test_decoder_is_bit_exact_on_qemu(form: str, tmp_path: Path) -> None:
    graph = decoder() if form == "written" else rewritten(tmp_path)[0]
    tiled = OpKind.TILE in {op.kind for op in graph.operators}
    assert tiled == (form == "written")
    plan = plan_memory(graph, PLAN_SECONDS, dsp=cortex_m_core(TARGET).dsp)
    result = verify_cortexm(graph, plan, TARGET, BOARDS[TARGET], runs=RUNS, seed=9)
    assert result.bit_exact and result.mismatches == 0 and result.runs == RUNS
