"""Out-of-core weights: which constant arrays an external image holds, chunk by chunk."""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mcuflow.codegen.context import CArray, CodegenError, ConstantPool, LayerCode
from mcuflow.codegen.names import Naming
from mcuflow.hw.storage_io import TAG_BYTES
from mcuflow.memory.plan import Plan

IMAGE_FILE = "weights_external.bin"
"""The external image of a generated project (what the storage implementation reads)."""
MAGIC = b"MCFX"
FORMAT_VERSION = 1
HEADER = struct.Struct("<4sIIIII")
"""magic, format version, header size, payload size, layout id, chunk count (little endian).

Each chunk of an encrypted image is followed by its CMAC tag of TAG_BYTES (external_crypto)."""
ALIGNMENT = 16
"""Arrays start 16-byte aligned inside their chunk, chunks inside the payload and staging."""
_C_DTYPES = {"int8_t": "<i1", "uint8_t": "<u1", "int16_t": "<i2", "uint16_t": "<u2",
             "int32_t": "<i4", "int64_t": "<i8", "float": "<f4", "double": "<f8"}
_IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*\b")
_STRUCT = re.compile(r"^static const \w+ (\w+) =")


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


def _c_dtype(ctype: str) -> np.dtype:
    if ctype not in _C_DTYPES:
        raise CodegenError(f"no external layout for C type {ctype}")
    return np.dtype(_C_DTYPES[ctype])


def c_bytes(array: CArray) -> bytes:
    """The bytes of `array` as the C compiler lays it out on a little-endian core."""
    return np.asarray(array.values).astype(_c_dtype(array.ctype)).tobytes()


@dataclass(frozen=True)
class ExternalArray:
    """A constant array read from the image: `offset` is from the start of its chunk."""

    symbol: str
    ctype: str
    offset: int
    nbytes: int


@dataclass(frozen=True)
class ExternalChunk:
    """The arrays of step `step`: `size` bytes at `offset` of the payload, staged in `half`."""

    step: int
    offset: int
    size: int
    half: int
    arrays: tuple[ExternalArray, ...]


@dataclass(frozen=True)
class ExternalLayout:
    """The external image of a plan: chunks in execution order and the payload's digest.

    An `encrypted` image (external_crypto) stores each chunk's ciphertext followed by its tag.
    """

    tier: str
    chunks: tuple[ExternalChunk, ...]
    payload_sha256: bytes
    encrypted: bool = False

    @property
    def half_bytes(self) -> int:
        """Bytes of one staging half: the largest chunk rounded up to ALIGNMENT, plus a tag."""
        tag = TAG_BYTES if self.encrypted else 0
        return _aligned(max(chunk.size for chunk in self.chunks)) + tag

    @property
    def staging_bytes(self) -> int:
        """SRAM of the staging buffer: two halves."""
        return 2 * self.half_bytes

    @property
    def external_bytes(self) -> int:
        """Bytes of the payload (every chunk; the header excluded)."""
        return sum(chunk.size for chunk in self.chunks)

    @property
    def symbols(self) -> frozenset[str]:
        """The symbols of the arrays the image holds (not defined in flash)."""
        return frozenset(a.symbol for chunk in self.chunks for a in chunk.arrays)

    @property
    def layout_id(self) -> int:
        """A 32-bit digest of the payload and the chunk table: an image matches its code."""
        digest = hashlib.sha256(self.payload_sha256)
        for chunk in self.chunks:
            digest.update(struct.pack("<5I", chunk.step, chunk.offset, chunk.size, chunk.half,
                                      len(chunk.arrays)))
        return int.from_bytes(digest.digest()[:4], "little")

    def chunk_of(self, step: int) -> ExternalChunk | None:
        """The chunk of step `step`, None when it has none."""
        return next((chunk for chunk in self.chunks if chunk.step == step), None)

    def header(self) -> bytes:
        """The image header (HEADER)."""
        return HEADER.pack(MAGIC, FORMAT_VERSION, HEADER.size, self.external_bytes,
                           self.layout_id, len(self.chunks))

    def image(self, pool: ConstantPool) -> bytes:
        """The image file: the header, then the payload with each chunk at its offset."""
        return self.header() + payload(self.chunks, pool)


def _payload_pieces(chunks: Sequence[ExternalChunk], pool: ConstantPool) -> Iterator[bytes]:
    """The payload of `chunks` piece by piece: zero padding, then each array's bytes."""
    data = {array.symbol: array for array in pool.arrays}
    at = 0
    for chunk in chunks:
        for array in chunk.arrays:
            yield bytes(chunk.offset + array.offset - at)
            yield c_bytes(data[array.symbol])
            at = chunk.offset + array.offset + array.nbytes
    yield bytes(sum(chunk.size for chunk in chunks) - at)


def payload(chunks: Sequence[ExternalChunk], pool: ConstantPool) -> bytes:
    """The payload bytes of `chunks`, zero padded to each array's alignment."""
    return b"".join(_payload_pieces(chunks, pool))


def payload_digest(chunks: Sequence[ExternalChunk], pool: ConstantPool) -> bytes:
    """SHA-256 of payload(chunks, pool), hashed piece by piece (the payload is never whole)."""
    digest = hashlib.sha256()
    for piece in _payload_pieces(chunks, pool):
        digest.update(piece)
    return digest.digest()


def _struct_fields(layers: Sequence[LayerCode]) -> dict[str, set[str]]:
    """Per struct symbol of any layer's definitions, the identifiers its initialiser names."""
    fields: dict[str, set[str]] = {}
    for definition in (d for layer in layers for d in layer.definitions):
        if match := _STRUCT.match(definition):
            fields[match.group(1)] = set(_IDENTIFIER.findall(definition[match.end():]))
    return fields


def _step_uses(layer: LayerCode, fields: dict[str, set[str]]) -> set[str]:
    """Identifiers step `layer` names: statements, definitions, then through structs."""
    named = set(_IDENTIFIER.findall("\n".join([*layer.statements, *layer.definitions])))
    named |= set().union(*(fields[n] for n in named & fields.keys()))
    return named


def _users(layers: Sequence[LayerCode], pool: ConstantPool) -> dict[str, set[int]]:
    """Per constant array symbol, the steps that read it."""
    fields, symbols = _struct_fields(layers), {a.symbol for a in pool.arrays}
    users: dict[str, set[int]] = {symbol: set() for symbol in symbols}
    for index, layer in enumerate(layers):
        for symbol in _step_uses(layer, fields) & symbols:
            users[symbol].add(index)
    return users


def _chunk_arrays(arrays: list[CArray]) -> tuple[tuple[ExternalArray, ...], int]:
    """The arrays laid out one after another, each aligned; and the chunk's size."""
    laid, offset = [], 0
    for array in arrays:
        nbytes = array.values.size * _c_dtype(array.ctype).itemsize
        laid.append(ExternalArray(array.symbol, array.ctype, offset, nbytes))
        offset = _aligned(offset + nbytes)
    return tuple(laid), offset


def external_layout(plan: Plan, layers: Sequence[LayerCode], pool: ConstantPool
                    ) -> ExternalLayout | None:
    """The external image of `plan` (plan.external), or None when no array qualifies.

    An array is external when exactly one step reads it (directly, through its definitions
    or a struct naming it) and that step is listed; arrays keep the pool's order.
    """
    if plan.external is None:
        return None
    users = _users(layers, pool)
    owned: dict[int, list[CArray]] = {}
    for array in pool.arrays:
        if len(users[array.symbol]) == 1:
            owned.setdefault(next(iter(users[array.symbol])), []).append(array)
    chunks: list[ExternalChunk] = []
    for step in sorted(plan.external.steps):
        own = owned.get(step, [])
        if own:
            arrays, size = _chunk_arrays(own)
            offset = sum(chunk.size for chunk in chunks)
            chunks.append(ExternalChunk(step, offset, size, len(chunks) % 2, arrays))
    if not chunks:
        return None
    return ExternalLayout(plan.external.tier, tuple(chunks), payload_digest(chunks, pool),
                          plan.external.encrypted)


def check_image_source(naming: Naming, fields: Sequence[int], header_bytes: int,
                       tail: Sequence[str] = ()) -> list[str]:
    """The C function checking an image's header: its magic, then its 32-bit words.

    `fields` are the little-endian words after the magic; `tail` runs before it returns OK.
    """
    expected = ", ".join(f"{value}u" for value in fields)
    return [
        f"static int {naming.symbol('check_image')}(void)",
        "{",
        f"    static const uint32_t expected[{len(fields)}] = {{{expected}}};",
        f"    uint8_t header[{header_bytes}];",
        "    if (mcuflow_storage_read(0u, header, sizeof header) != 0) {",
        "        return MCUFLOW_ERROR_STORAGE;",
        "    }",
        f"    if (memcmp(header, \"{MAGIC.decode()}\", {len(MAGIC)}) != 0) {{",
        "        return MCUFLOW_ERROR_IMAGE;",
        "    }",
        f"    for (int i = 0; i < {len(fields)}; ++i) {{",
        f"        const uint8_t *field = header + {len(MAGIC)} + 4 * i;",
        "        const uint32_t value = (uint32_t)field[0] | ((uint32_t)field[1] << 8) |",
        "                               ((uint32_t)field[2] << 16) | ((uint32_t)field[3] << 24);",
        "        if (value != expected[i]) {",
        "            return MCUFLOW_ERROR_IMAGE;",
        "        }",
        "    }",
        *tail,
        "    return MCUFLOW_OK;",
        "}",
    ]
