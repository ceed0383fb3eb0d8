"""Codebook weights decode to the bit on QEMU Cortex-M: DSP plans on M4, the portable path on M0."""

from __future__ import annotations

import pytest

from mcuflow.memory.planner import plan_memory
from mcuflow.quant.codebook import compress_graph, decoder_tables
from mcuflow.toolchain.qemu import verify_cortexm
from tests.unit.test_codebook import _codec_graph

CASES = [("cortex-m4", "nucleo-f429zi", True), ("cortex-m0", "rp2040", False)]


@pytest.mark.parametrize("size", [16, 256])
@pytest.mark.parametrize(("target", "board", "dsp"), CASES, ids=[c[0] for c in CASES])
def test_codebook_graph_is_bit_exact_on_qemu(size: int, target: str, board: str,
                                             dsp: bool) -> None:
    plain = _codec_graph(seed=2, spread=4.0 if size == 256 else 20.0)
    graph = compress_graph(plain, size)
    codebooks = [t.codebook for t in graph.tensors.values() if t.codebook is not None]
    assert len(codebooks) >= 3
    if size == 256:
        assert any(decoder_tables(c).long_codes.size for c in codebooks)
    result = verify_cortexm(graph, plan_memory(graph, 0.3, dsp=dsp), target, board, runs=6,
                            seed=5)
    assert result.bit_exact and result.mismatches == 0, result
    baseline = verify_cortexm(plain, plan_memory(plain, 0.3, dsp=dsp), target, board, runs=1)
    assert result.weight_bytes < baseline.weight_bytes
