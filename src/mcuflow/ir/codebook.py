"""Codebook storage of a constant tensor: int8 centroids addressed by canonical Huffman codes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Codebook:
    """How a constant int8 tensor is stored; `Tensor.data` keeps the decoded values.

    `values` are the centroids in canonical order (by code length, then value) and `lengths[i]`
    the bit length of the code of `values[i]` (non-decreasing), so the codes themselves follow
    from the lengths (`canonical_codes`). `stream` holds the code of every element of the
    tensor in row-major order, first bit in the most significant bit of byte 0; only its first
    `bit_length` bits are codes, the rest of the last byte is zero. The decoder reads
    `lookup_bits` bits at a time through a table of 2**lookup_bits entries (a speed / flash
    trade-off).
    """

    values: np.ndarray
    lengths: np.ndarray
    stream: np.ndarray
    bit_length: int
    lookup_bits: int

    @property
    def max_bits(self) -> int:
        """The length of the longest code."""
        return int(self.lengths[-1])

    def codes(self) -> np.ndarray:
        """The canonical code of each value, as an integer of `lengths[i]` bits."""
        return canonical_codes(self.lengths)


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical Huffman codes for non-decreasing code `lengths` (Deflate's construction).

    Each code is the previous one plus one, shifted left by the growth in length.
    """
    codes = np.zeros(len(lengths), np.int64)
    code, previous = 0, int(lengths[0])
    for index, length in enumerate(int(n) for n in lengths):
        code <<= length - previous
        codes[index] = code
        code, previous = code + 1, length
    return codes
