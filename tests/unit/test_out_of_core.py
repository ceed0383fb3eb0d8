"""Out-of-core planning: the tier and steps chosen, the read model, the report's figures."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from mcuflow.hw.board import Board, TierKind, get_board
from mcuflow.hw.storage_io import ChunkRead, double_buffered, transfer_s
from mcuflow.ir import zoo
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.memory.tiers import choose_steps, chunk_limit, external_tier
from mcuflow.planning import FLASH_MARGIN, Build, analyze_graph


def small_flash(board_id: str, flash: int) -> Board:
    """`board_id` with `flash` bytes of on-chip flash (its external tiers unchanged)."""
    board = get_board(board_id)
    tiers = tuple(dataclasses.replace(t, size_bytes=flash) if t.kind is TierKind.ONCHIP_FLASH
                  else t for t in board.tiers)
    return dataclasses.replace(board, flash_bytes=flash, tiers=tiers)


def test_the_external_tier_is_the_fastest_non_volatile_one() -> None:
    assert external_tier(get_board("stm32f746g-disco"), 10**6).kind is TierKind.QSPI_FLASH
    assert external_tier(get_board("stm32f746g-disco"), 10**8).kind is TierKind.SD_CARD
    assert external_tier(get_board("nucleo-f207zg"), 10**6).kind is TierKind.SD_CARD
    assert external_tier(get_board("nucleo-h743zi"), 10**6) is None


@pytest.mark.parametrize("seed", range(20))
def test_the_chosen_chunks_free_enough_and_none_is_spare(seed: int) -> None:
    rng = np.random.default_rng(seed)
    chunks = {int(s): int(rng.integers(1, 5000)) for s in rng.choice(60, 12, replace=False)}
    overflow = int(rng.integers(1, sum(chunks.values()) + 1))
    chosen = choose_steps(chunks, overflow)
    assert chosen is not None and chosen <= set(chunks)
    freed = sum(chunks[s] for s in chosen)
    assert freed >= overflow
    assert all(freed - chunks[s] < overflow for s in chosen)
    best = min(sum(chunks[s] for s in subset) for r in range(1, len(chunks) + 1)
               for subset in itertools.combinations(chunks, r)
               if sum(chunks[s] for s in subset) >= overflow)
    assert freed <= best + max(chunks.values())


def test_no_choice_when_every_chunk_together_is_too_small() -> None:
    assert choose_steps({1: 10, 2: 20}, 31) is None
    assert choose_steps({1: 10}, 0) == frozenset()


def test_reads_hidden_behind_long_steps_cost_only_the_first() -> None:
    board = get_board("nucleo-f207zg")
    tier = board.tier(TierKind.SD_CARD)
    reads = [ChunkRead(position, 4096) for position in (0, 2, 4)]
    one = transfer_s(tier, 4096) * 1e3
    slow = double_buffered(board, tier, [100.0] * 6, reads)
    assert slow.stall_ms == pytest.approx(one)
    assert slow.modelled_ms == pytest.approx(600.0 + one)
    instant = double_buffered(board, tier, [0.0] * 6, reads)
    assert instant.stall_ms == pytest.approx(3 * one)
    assert instant.read_bytes == 3 * 4096 and instant.reads == 3


def test_a_model_too_large_for_flash_reads_its_largest_layers_from_the_sd_card() -> None:
    board = small_flash("nucleo-f207zg", 256 * 1024)
    graph = zoo.mobilenet_v2(48, 0.35, 100)
    analysis = analyze_graph(graph, Build(board), PatchRequest())
    report = analysis.report
    assert analysis.fits and report.external_tier == "sd_card"
    assert report.flash_bytes <= report.flash_capacity == 256 * 1024
    constants = sum(t.nbytes for t in graph.tensors.values() if t.is_constant)
    assert report.external_image_bytes + report.flash_bytes >= constants
    kept = FLASH_MARGIN * report.flash_capacity  # no more moved than needed
    assert kept <= report.flash_margin_bytes < kept + chunk_limit(board)
    assert report.external_read_bytes == report.external_image_bytes
    assert report.staging_bytes <= 2 * chunk_limit(board)
    assert report.sram_margin_bytes == (board.sram_bytes - analysis.plan.arena_bytes
                                        - report.staging_bytes)
    assert report.modelled_ms == pytest.approx(report.latency_ms_estimate + report.io_stall_ms)
    external = {layer.index for layer in report.layers if layer.weights_location == "sd_card"}
    assert len(external) == report.external_reads == len(analysis.plan.external.steps)
    off = analyze_graph(graph, Build(board), PatchRequest(out_of_core=False)).report
    assert not off.fits_flash and off.external_tier == "" and off.slowdown == 1.0


def test_the_next_read_overlaps_the_decryption_as_next_chunk_does() -> None:
    """The core requests the next chunk when it has waited for one, then decrypts that one.

    Chunks of 4,096 B (+ 16 B tag) before steps 0 and 1, 1 ms of compute each, an SD card
    read of `one` ms, 1e-4 ms per byte of decryption: the first read is waited for, the second
    requested and ready `one` ms later, while the first is decrypted (0.4096 ms) and step 0
    computes (1 ms).
    """
    board = get_board("nucleo-f207zg")
    tier = board.tier(TierKind.SD_CARD)
    reads = [ChunkRead(0, 4096, 16), ChunkRead(1, 4096, 16)]
    one = transfer_s(tier, 4112) * 1e3
    cost = double_buffered(board, tier, [1.0, 1.0], reads, 1e-4)
    assert cost.decrypt_ms == pytest.approx(2 * 0.4096)
    assert cost.stall_ms == pytest.approx(one + max(one - 1.4096, 0.0))
    assert cost.modelled_ms == pytest.approx(2.0 + cost.decrypt_ms + cost.stall_ms)
    assert cost.read_bytes == 2 * 4112
    plain = double_buffered(board, tier, [1.0, 1.0], reads)
    assert plain.decrypt_ms == 0.0 and cost.energy_mj > plain.energy_mj


def test_an_encrypted_image_adds_its_decryption_to_the_modelled_latency() -> None:
    board = small_flash("nucleo-f207zg", 256 * 1024)
    graph = zoo.mobilenet_v2(48, 0.35, 100)
    plain = analyze_graph(graph, Build(board), PatchRequest()).report
    sealed = analyze_graph(graph, Build(board), PatchRequest(encrypt_external=True))
    report = sealed.report
    assert sealed.plan.external is not None and sealed.plan.external.encrypted
    assert report.external_read_bytes == report.external_image_bytes + 16 * report.external_reads
    assert plain.external_read_bytes == plain.external_image_bytes
    assert report.decrypt_ms > 0 and plain.decrypt_ms == 0
    assert report.modelled_ms == pytest.approx(report.latency_ms_estimate + report.decrypt_ms
                                               + report.io_stall_ms)
    assert report.energy_mj_estimate > plain.energy_mj_estimate
