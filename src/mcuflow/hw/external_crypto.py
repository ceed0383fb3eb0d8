"""Measured costs of encrypted external data: instructions per byte, and the keys' static RAM."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board
from mcuflow.hw.kernel_code import target_code

IMAGE_NONCE_BYTES = 12
"""The nonce of an encrypted image: the first 12 bytes of every CTR counter block, kept in RAM
beside the image's keys."""


@dataclass(frozen=True)
class CryptoCost:
    """Instructions per external byte read: AES-CMAC check plus AES-128-CTR decryption."""

    core: str
    instructions_per_byte: float
    source: str


_SOURCE = ("measured on QEMU by bench/external_crypto.py: mobilenet_v2_like(32, 0.35, 10), "
           "plain and encrypted image, instruction difference / external bytes read "
           "(mcuflow_crypto.c at -O2, arm-none-eabi-gcc)")
COSTS = {
    "cortex-m0": CryptoCost("cortex-m0", 482.5, _SOURCE),
    "cortex-m0plus": CryptoCost("cortex-m0plus", 482.5, _SOURCE),
    "cortex-m3": CryptoCost("cortex-m3", 256.6, _SOURCE),
    "cortex-m4": CryptoCost("cortex-m4", 261.2, _SOURCE),
    "cortex-m7": CryptoCost("cortex-m7", 256.1, _SOURCE),
    "cortex-m33": CryptoCost("cortex-m33", 256.2, _SOURCE),
}
"""Per core: the figure bench/external_crypto.py printed."""


def crypto_instructions_per_byte(core: str) -> float:
    """Instructions to verify and decrypt one byte of an encrypted image on `core`."""
    if core not in COSTS:
        raise McuflowError(f"no measured encryption cost for {core}",
                           f"measured cores: {', '.join(COSTS)}")
    return COSTS[core].instructions_per_byte


def crypto_ms_per_byte(board: Board, core: str) -> float:
    """Milliseconds `board` takes to authenticate and en- or decrypt one byte on `core`.

    Verifying and decrypting (an image's chunk, a spilled row read back) and encrypting and
    tagging (a spilled row written) are each one AES-CTR and one AES-CMAC pass over the byte.
    """
    return (crypto_instructions_per_byte(core) * board.core_model.cycles_per_instruction
            / board.clock_hz * 1e3)


def crypto_ram_bytes(target: str, image: bool, spill: bool) -> int:
    """Static RAM of the keys on Cortex-M `target`: an encrypted image's, a spill's.

    sizeof mcuflow_image_keys_t (with the image's nonce beside it) and mcuflow_spill_keys_t, as
    bench/kernel_code.py measured them; 0 for neither.
    """
    if not image and not spill:
        return 0
    structs = target_code(target).structs
    return ((structs["mcuflow_image_keys_t"] + IMAGE_NONCE_BYTES if image else 0)
            + (structs["mcuflow_spill_keys_t"] if spill else 0))
