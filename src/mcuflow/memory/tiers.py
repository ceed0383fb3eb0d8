"""Out-of-core placement: the external and spill tiers, the staging chunk limit, the steps read."""

from __future__ import annotations

from collections.abc import Mapping

from mcuflow.hw.board import Board, MemoryTier, TierKind

STAGING_SHARE = 16
"""A staging half holds at most the board's SRAM over this (two halves: 1/8 of the SRAM)."""
MIN_CHUNK_BYTES = 4096
MAX_CHUNK_BYTES = 65536
CHUNK_GRANULE = 1024
"""Chunk limits are whole KiB between MIN_CHUNK_BYTES and MAX_CHUNK_BYTES."""
ON_CHIP = frozenset({TierKind.SRAM, TierKind.ONCHIP_FLASH})


def chunk_limit(board: Board) -> int:
    """The most constant bytes one step may read from external storage (one staging half)."""
    share = board.sram_bytes // STAGING_SHARE // CHUNK_GRANULE * CHUNK_GRANULE
    return min(max(share, MIN_CHUNK_BYTES), MAX_CHUNK_BYTES)


def external_tier(board: Board, nbytes: int) -> MemoryTier | None:
    """The fastest non-volatile off-chip tier of `board` holding `nbytes` (None: it has none).

    Volatile tiers (SDRAM, PSRAM) lose the constants at power-off, so they cannot hold the image.
    """
    tiers = [tier for tier in board.tiers if tier.kind not in ON_CHIP
             and not tier.kind.volatile and tier.size_bytes >= nbytes]
    return max(tiers, key=lambda tier: (tier.read_bandwidth, tier.kind.value), default=None)


def spill_tier(board: Board) -> MemoryTier | None:
    """The off-chip tier activations spill to (None: the board has none).

    A writable tier: external RAM first (SDRAM, PSRAM; memory-mapped, the spill area is a
    buffer there, no wear), then tiers reached through the storage interface without erases
    (SD cards), then NOR flash (erases, wear; written through the interface even when it is
    memory-mapped); the fastest writes within each.
    """
    tiers = [tier for tier in board.tiers if tier.kind not in ON_CHIP and tier.writable
             and (tier.kind.volatile or not tier.memory_mapped or tier.needs_erase)]
    return max(tiers, key=lambda t: (t.kind.volatile, not t.needs_erase, t.write_bandwidth,
                                     t.kind.value), default=None)


def choose_steps(chunk_bytes: Mapping[int, int], overflow: int) -> frozenset[int] | None:
    """Steps whose chunks together free at least `overflow` bytes of flash, reading few bytes.

    The largest chunks first, then any chosen chunk whose removal still frees enough is dropped
    (smallest first). None when all chunks together free too little.
    """
    if overflow <= 0:
        return frozenset()
    chosen: list[int] = []
    freed = 0
    for step in sorted(chunk_bytes, key=lambda s: (-chunk_bytes[s], s)):
        if freed >= overflow:
            break
        chosen.append(step)
        freed += chunk_bytes[step]
    if freed < overflow:
        return None
    for step in sorted(chosen, key=lambda s: (chunk_bytes[s], s)):
        if freed - chunk_bytes[step] >= overflow:
            chosen.remove(step)
            freed -= chunk_bytes[step]
    return frozenset(chosen)


def spills_to_memory(tier: MemoryTier | None) -> bool:
    """True when spilled activations live in memory-mapped external RAM (a buffer, not storage)."""
    return tier is not None and tier.memory_mapped and tier.kind.volatile
