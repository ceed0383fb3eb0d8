"""Spilling on QEMU: a model too large for a Cortex-M0's SRAM and flash runs within both.

Its constants are read from the SD card and its first stage's largest activations spilled there.
"""

from __future__ import annotations

import pytest

from mcuflow.codegen.external import HEADER
from mcuflow.codegen.external_crypto import ENCRYPTED_HEADER_BYTES
from mcuflow.hw.board import get_board
from mcuflow.ir import zoo
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.planning import Build, analyze_graph
from mcuflow.toolchain.qemu import verify_cortexm

RUNS = 2
KEY = bytes(range(0x40, 0x50))
SRAM_BUDGET = 16_000
"""Below what patches alone reach on this model (18,432 B): the planner spills."""


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_spilled_activations_run_bit_exact_within_the_boards_memories(encrypted: bool) -> None:
    """Encrypted, each row is sealed on the Cortex-M0 and the key and nonce come by semihosting."""
    board = get_board("nucleo-f091rc")
    graph = zoo.mobilenet_v2(96, 0.35, 10)
    request = PatchRequest(streamed_input=True, sram_budget=SRAM_BUDGET,
                           encrypt_external=encrypted)
    analysis = analyze_graph(graph, Build(board), request)
    report = analysis.report
    assert analysis.fits and analysis.plan.spilled and report.spill_tier == "sd_card"
    assert analysis.plan.spill_encrypted == encrypted and (report.key_bytes > 0) == encrypted
    assert report.external_write_bytes == report.spill_bytes > 0
    assert report.modelled_ms > report.latency_ms_estimate + report.spill_ms * 0.99
    result = verify_cortexm(analysis.graph, analysis.plan, board.core.value, board, RUNS, 7,
                            external_key=KEY if encrypted else None)
    assert result.bit_exact and result.mismatches == 0
    assert result.storage_bytes_written == RUNS * report.external_write_bytes
    header = ENCRYPTED_HEADER_BYTES if encrypted else HEADER.size
    assert result.storage_bytes_read == header + RUNS * report.external_read_bytes
    assert result.flash_bytes <= board.flash_bytes and result.ram_bytes <= board.sram_bytes
    assert abs(result.flash_bytes - report.flash_bytes) <= 0.03 * result.flash_bytes


def test_activations_spilled_to_external_ram_run_bit_exact_outside_the_sram() -> None:
    """On the STM32F746G-DISCO the spill area lives in its SDRAM: QEMU's PSRAM stands in."""
    board = get_board("stm32f746g-disco")
    graph = zoo.mobilenet_v2(96, 0.35, 10)
    request = PatchRequest(streamed_input=True, sram_budget=SRAM_BUDGET)
    analysis = analyze_graph(graph, Build(board), request)
    report = analysis.report
    assert analysis.fits and analysis.plan.spilled and report.spill_tier == "sdram"
    assert report.lifetime_years is None and report.modelled_ms > report.latency_ms_estimate
    result = verify_cortexm(analysis.graph, analysis.plan, board.core.value, board, RUNS, 7)
    assert result.bit_exact and result.mismatches == 0 and result.storage_bytes_written == 0
    assert result.external_ram_bytes == report.spill_bytes
    assert result.ram_bytes < SRAM_BUDGET + 4096
    assert abs(result.flash_bytes - report.flash_bytes) <= 0.03 * result.flash_bytes
