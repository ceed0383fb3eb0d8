"""Modelled time and energy of reading constants from an external tier while the model computes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mcuflow.hw.board import Board, MemoryTier, TierKind

DEFAULT_INFERENCES_PER_HOUR = 3600.0
"""The rate a spill tier's lifetime is given at unless asked otherwise (one a second)."""
MAX_SPILL_SLOTS = 1024
"""At most this many slots of a NOR flash spill region (wear levelling): the region stays a
bounded share of the flash, which may hold the user's own data past it."""
TAG_BYTES = 16
"""An AES-CMAC tag: after each chunk of an encrypted image, and each row of an encrypted spill."""


@dataclass(frozen=True)
class ChunkRead:
    """One read of the external image: before the step at `position` (in execution order).

    `nbytes` of constants, followed in an encrypted image by `tag_bytes` of authentication tag.
    """

    position: int
    nbytes: int
    tag_bytes: int = 0

    @property
    def stored_bytes(self) -> int:
        """Bytes the read transfers."""
        return self.nbytes + self.tag_bytes


@dataclass(frozen=True)
class StorageCost:
    """Per inference: what the external tier delivers and what waiting for it costs.

    `compute_ms` is the model's latency with every constant on chip; `stall_ms` is the time the
    core waits for a chunk that the previous steps' computation did not hide; `decrypt_ms` the
    time it verifies and decrypts the chunks of an encrypted image.
    """

    tier: str
    read_bytes: int
    reads: int
    transfer_ms: float
    stall_ms: float
    compute_ms: float
    energy_mj: float
    decrypt_ms: float = 0.0

    @property
    def modelled_ms(self) -> float:
        """Latency with the reads: computation, decryption and the waits they do not overlap."""
        return self.compute_ms + self.decrypt_ms + self.stall_ms

    @property
    def slowdown(self) -> float:
        """modelled_ms over the latency with every constant on chip."""
        return self.modelled_ms / self.compute_ms if self.compute_ms else 1.0


def transfer_s(tier: MemoryTier, nbytes: int) -> float:
    """Seconds one read of `nbytes` takes on `tier`."""
    return tier.access_latency_s + nbytes / tier.read_bandwidth


def double_buffered(board: Board, tier: MemoryTier, compute_ms: Sequence[float],
                    reads: Sequence[ChunkRead], decrypt_ms_per_byte: float = 0.0
                    ) -> StorageCost:
    """The cost of `reads` into a staging buffer of two halves, one transfer at a time.

    The first chunk is requested when the inference starts; when a step waits for its chunk,
    the next chunk is requested into the other half, so it loads while the core verifies and
    decrypts the arrived one (`decrypt_ms_per_byte`, 0 for a plain image) and the steps up to
    its own compute, as a DMA would (the generated next_chunk). Stalled and decrypting time is
    spent at the board's active power.
    """
    ordered = sorted(reads, key=lambda read: read.position)
    times = [transfer_s(tier, read.stored_bytes) * 1e3 for read in ordered]
    clock, ready, stall = 0.0, times[0] if times else 0.0, 0.0
    chunk = 0
    for position, step_ms in enumerate(compute_ms):
        if chunk < len(ordered) and ordered[chunk].position == position:
            stall += max(ready - clock, 0.0)
            clock = max(clock, ready)
            arrived = ordered[chunk]
            chunk += 1
            ready = clock + times[chunk] if chunk < len(ordered) else ready
            clock += arrived.nbytes * decrypt_ms_per_byte
        clock += step_ms
    read_bytes = sum(read.stored_bytes for read in ordered)
    decrypt = sum(read.nbytes for read in ordered) * decrypt_ms_per_byte
    energy = (read_bytes * tier.read_energy_nj_per_byte * 1e-6
              + board.active_power_mw * (stall + decrypt) * 1e-3)
    return StorageCost(tier.kind.value, read_bytes, len(ordered), sum(times), stall,
                       sum(compute_ms), energy, decrypt)


@dataclass(frozen=True)
class ExternalReads:
    """Constants an out-of-core plan reads from an external tier, as the analysis needs them.

    `reads` are positions in the executed order; `image_bytes` is the external image's payload
    and `staging_bytes` the SRAM staging buffer (both halves), static storage beside the arena.
    """

    tier: TierKind
    reads: tuple[ChunkRead, ...]
    staging_bytes: int
    image_bytes: int
    decrypt_ms_per_byte: float = 0.0
    """The core's time to verify and decrypt a byte of an encrypted image (0: a plain one)."""


@dataclass(frozen=True)
class SpillTraffic:
    """Per inference: the bytes of each write of spilled activations and of each read back.

    Encrypted, each write and read of rows is followed by one of their tags; `sealed_bytes`
    are the activation bytes encrypted and authenticated on write plus those verified and
    decrypted on read (0: a plain spill).
    """

    writes: tuple[int, ...]
    reads: tuple[int, ...]
    sealed_bytes: int = 0
    buffer_bytes: int = 0
    """Static SRAM beside the arena: encrypted, the tag buffer (a tag per row of a tensor)."""

    @property
    def write_bytes(self) -> int:
        """Bytes written to the spill area."""
        return sum(self.writes)

    @property
    def read_bytes(self) -> int:
        """Bytes read back from it."""
        return sum(self.reads)


@dataclass(frozen=True)
class SpillCost:
    """What spilling costs per inference on its tier: every access waits (no overlap)."""

    tier: str
    traffic: SpillTraffic
    ms: float
    energy_mj: float
    erases: int
    """Erase blocks erased before the writes (NOR flash; 0 on RAM and SD cards)."""
    slots: int = 1
    """Slots of the spill region that successive inferences take in turn (spill_slots)."""


def spill_area_bytes(tier: MemoryTier, spill_bytes: int) -> int:
    """Bytes one inference's spill takes on `tier`: whole erase blocks where it needs erases."""
    if not tier.needs_erase or not tier.erase_block_bytes:
        return spill_bytes
    return -(-spill_bytes // tier.erase_block_bytes) * tier.erase_block_bytes


def spill_slots(tier: MemoryTier, spill_bytes: int, base: int) -> int:
    """Slots of the spill region starting at byte `base` of `tier` (wear levelling).

    On a tier that needs erases, as many spill areas (spill_area_bytes) as fit between `base`
    and the tier's end, at most MAX_SPILL_SLOTS and at least 1: each inference erases and
    writes the next slot, so a sector is erased once every that many inferences. 1 elsewhere
    (RAM needs no levelling, an SD card's controller levels its own wear).
    """
    area = spill_area_bytes(tier, spill_bytes)
    if not tier.needs_erase or not area:
        return 1
    return max(1, min(MAX_SPILL_SLOTS, (tier.size_bytes - base) // area))


def spill_cost(board: Board, tier: MemoryTier, traffic: SpillTraffic, slots: int = 1,
               crypto_ms_per_byte: float = 0.0) -> SpillCost:
    """Time and energy of `traffic` on `tier`; the core waits for it at active power.

    Each access takes its latency plus its bytes over the bandwidth; where the tier needs
    erases, the inference first erases the erase blocks its writes cover (the generated C
    erases its slot, spill_area_bytes, before the first write). `slots` is the spill region's
    (spill_slots). An encrypted spill adds `crypto_ms_per_byte` of the core's time per sealed
    byte (hw.external_crypto.crypto_ms_per_byte).
    """
    erases = (spill_area_bytes(tier, traffic.write_bytes) // tier.erase_block_bytes
              if tier.needs_erase and tier.erase_block_bytes else 0)
    seconds = (sum(tier.access_latency_s + n / tier.write_bandwidth for n in traffic.writes)
               + sum(transfer_s(tier, n) for n in traffic.reads) + erases * tier.erase_time_s
               + traffic.sealed_bytes * crypto_ms_per_byte * 1e-3)
    energy = (traffic.write_bytes * tier.write_energy_nj_per_byte
              + traffic.read_bytes * tier.read_energy_nj_per_byte) * 1e-6
    return SpillCost(tier.kind.value, traffic, seconds * 1e3,
                     energy + board.active_power_mw * seconds, erases, slots)


def lifetime_years(tier: MemoryTier, write_bytes: int, inferences_per_hour: float,
                   slots: int = 1) -> float | None:
    """Years until `tier` wears out writing `write_bytes` each inference at that rate.

    An SD card's controller spreads the writes over the whole card; on a raw NOR flash each
    inference erases one of the spill region's `slots` (spill_slots), so each sector is erased
    once every `slots` inferences. None when the tier has no endurance figure or nothing is
    written.
    """
    if not tier.endurance_cycles or not write_bytes or inferences_per_hour <= 0:
        return None
    spread = tier.size_bytes / write_bytes if not tier.needs_erase else float(slots)
    return tier.endurance_cycles * spread / inferences_per_hour / (24 * 365.25)
