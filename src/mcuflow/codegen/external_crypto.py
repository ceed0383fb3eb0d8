"""Encrypted external image and spills: AES-128-CTR, then AES-CMAC over place and ciphertext.

The image's chunks (encrypted_image, staging_source) are sealed here, at generation time;
spilled rows (sealed_spill_source) are sealed by the firmware, under keys of their own and a
fresh nonce every inference (mcuflow_crypto.h describes their counter blocks and tags).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from mcuflow.codegen.context import CodegenError
from mcuflow.codegen.external import (
    HEADER,
    MAGIC,
    TAG_BYTES,
    ExternalLayout,
    check_image_source,
)
from mcuflow.codegen.names import Naming
from mcuflow.errors import McuflowError
from mcuflow.hw.external_crypto import IMAGE_NONCE_BYTES
from mcuflow.memory.plan import Plan

KEY_BYTES = 16
KEY_FILE = "external_key.bin"
"""Where the shipped storage implementations read the key at run time (host and QEMU)."""
ENCRYPTED_VERSION = 2
"""The image format version of an encrypted image (a plain one is external.FORMAT_VERSION)."""
NONCE_BYTES = IMAGE_NONCE_BYTES
ENCRYPTED_HEADER_BYTES = HEADER.size + NONCE_BYTES
"""HEADER, then the nonce: the first 12 bytes of every CTR counter block of the image."""
CRYPTO_FILES = ("mcuflow_crypto.h", "mcuflow_crypto.c")
"""The AES-128, CTR and CMAC sources of an encrypting project (templates/common)."""
KEY_HINT = (f"make a {KEY_BYTES}-byte key file with `head -c {KEY_BYTES} /dev/urandom > key.bin`"
            " and pass --external-key key.bin (keep it out of the project directory)")
_CTR_LABEL = b"mcuflow ctr key\0"
_MAC_LABEL = b"mcuflow mac key\0"


def read_key(path: Path) -> bytes:
    """The 16 key bytes of file `path`, or McuflowError with a hint to make one."""
    try:
        key = Path(path).read_bytes()
    except OSError as error:
        raise McuflowError(f"cannot read the external key '{path}': {error.strerror}",
                           KEY_HINT) from None
    if len(key) != KEY_BYTES:
        raise McuflowError(f"the external key '{path}' holds {len(key)} bytes, not {KEY_BYTES}",
                           KEY_HINT)
    return key


def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def derived_keys(key: bytes) -> tuple[bytes, bytes]:
    """The CTR key and the CMAC key: AES-128 of two fixed labels under the user's key."""
    if len(key) != KEY_BYTES:
        raise CodegenError(f"the external key must be {KEY_BYTES} bytes, not {len(key)}")
    return _aes_block(key, _CTR_LABEL), _aes_block(key, _MAC_LABEL)


def image_nonce(key: bytes, layout: ExternalLayout) -> bytes:
    """The image's nonce: HMAC-SHA256 under the key of the payload digest and the layout id.

    Deterministic; two different payloads under one key get different nonces (short of an
    HMAC collision), so no counter block is used twice with one key.
    """
    message = b"mcuflow nonce" + layout.payload_sha256 + struct.pack("<I", layout.layout_id)
    return hmac.new(key, message, hashlib.sha256).digest()[:NONCE_BYTES]


def chunk_tag(mac_key: bytes, nonce: bytes, layout_id: int, index: int, offset: int,
              ciphertext: bytes) -> bytes:
    """The chunk's CMAC tag: a chunk of another image, place or model does not verify.

    The message is the nonce and layout id, then chunk index, payload offset, size and format
    version, then the ciphertext.
    """
    cmac = CMAC(algorithms.AES(mac_key))
    cmac.update(nonce + struct.pack("<I", layout_id))
    cmac.update(struct.pack("<4I", index, offset, len(ciphertext), ENCRYPTED_VERSION))
    cmac.update(ciphertext)
    return cmac.finalize()


def counter_block(nonce: bytes, offset: int) -> bytes:
    """The CTR counter block of the payload's 16 bytes at `offset`: nonce, block index."""
    return nonce + struct.pack(">I", offset // 16)


def encrypted_image(layout: ExternalLayout, plain: bytes, key: bytes) -> bytes:
    """The image of an encrypting build, from the plain payload `plain`.

    Its header with the nonce, then per chunk the AES-128-CTR ciphertext followed by its tag.
    """
    ctr_key, mac_key = derived_keys(key)
    nonce = image_nonce(key, layout)
    out = bytearray(encrypted_header(layout) + nonce)
    for index, chunk in enumerate(layout.chunks):
        encryptor = Cipher(algorithms.AES(ctr_key),
                           modes.CTR(counter_block(nonce, chunk.offset))).encryptor()
        sealed = encryptor.update(plain[chunk.offset:chunk.offset + chunk.size])
        out += sealed + chunk_tag(mac_key, nonce, layout.layout_id, index, chunk.offset, sealed)
    return bytes(out)


def image_bytes(layout: ExternalLayout | None) -> int:
    """Bytes of the image file of `layout` (0 without one), plain or encrypted.

    What the spill area follows in external storage (render.spill_base).
    """
    if layout is None:
        return 0
    if layout.encrypted:
        return ENCRYPTED_HEADER_BYTES + layout.external_bytes + TAG_BYTES * len(layout.chunks)
    return HEADER.size + layout.external_bytes


def encrypted_header(layout: ExternalLayout) -> bytes:
    """HEADER of an encrypted image: version 2, the header with the nonce, the bytes after it."""
    stored = layout.external_bytes + TAG_BYTES * len(layout.chunks)
    return HEADER.pack(MAGIC, ENCRYPTED_VERSION, ENCRYPTED_HEADER_BYTES, stored,
                       layout.layout_id, len(layout.chunks))


def staging_source(layout: ExternalLayout, naming: Naming, alignment: int) -> list[str]:
    """model.c's staging buffer and chunk functions of an encrypted image.

    They check the image, fetch the key and open (verify, then decrypt) each chunk after its
    read.
    """
    staging, count = naming.symbol("staging"), len(layout.chunks)
    table = ", ".join(f"{{{c.offset}u, {c.half * layout.half_bytes}u, {c.size}u}}"
                      for c in layout.chunks)
    return [
        "/* External weights, encrypted: each external step's chunk (ciphertext, then its CMAC",
        " * tag) is read into one half of the staging buffer while the step before computes on",
        " * the other half, then verified and decrypted in place before its step runs. */",
        f"static uint8_t {staging}[{naming.macro('STAGING_BYTES')}] "
        f"MCUFLOW_ALIGNED({alignment});",
        f"static int {naming.symbol('image_checked')} = 0;",
        f"static uint8_t {naming.symbol('image_nonce')}[MCUFLOW_NONCE_BYTES];",
        f"static mcuflow_image_keys_t {naming.symbol('image_keys')};",
        "/* Per chunk: its payload offset, where it is staged, its size (the tag follows). */",
        f"static const uint32_t {naming.symbol('chunks')}[{count}][3] = {{{table}}};",
        f"static uint32_t {naming.symbol('pending')} = {count}u; /* the chunk being read */",
        "",
        *_next_chunk_source(layout, naming),
        *_check_source(layout, naming),
        *_first_chunk_source(layout, naming),
    ]


def _next_chunk_source(layout: ExternalLayout, naming: Naming) -> list[str]:
    staging, chunks = naming.symbol("staging"), naming.symbol("chunks")
    pending, count = naming.symbol("pending"), len(layout.chunks)
    return [
        "/* Wait for the pending chunk; begin reading chunk `next` into the other half",
        f" * ({count}: nothing more to read), so that it loads while the pending one is verified",
        " * and decrypted. */",
        f"static int {naming.symbol('next_chunk')}(uint32_t next)",
        "{",
        f"    const uint32_t arrived = {pending};",
        "    if (mcuflow_storage_wait() != 0) {",
        "        return MCUFLOW_ERROR_STORAGE;",
        "    }",
        f"    {pending} = {count}u;",
        f"    if (next < {count}u) {{",
        f"        const uint32_t *chunk = {chunks}[next];",
        f"        if (mcuflow_storage_begin_read({ENCRYPTED_HEADER_BYTES}u + chunk[0] + "
        f"{TAG_BYTES}u * next, {staging} + chunk[1], chunk[2] + {TAG_BYTES}u) != 0) {{",
        "            return MCUFLOW_ERROR_STORAGE;",
        "        }",
        f"        {pending} = next;",
        "    }",
        f"    if (arrived < {count}u) {{",
        f"        const uint32_t *chunk = {chunks}[arrived];",
        f"        if (mcuflow_image_open(&{naming.symbol('image_keys')}, arrived, chunk[0], "
        f"{staging} + chunk[1], chunk[2]) != 0) {{",
        "            return MCUFLOW_ERROR_TAG;",
        "        }",
        "    }",
        "    return MCUFLOW_OK;",
        "}",
        "",
    ]


def _check_source(layout: ExternalLayout, naming: Naming) -> list[str]:
    fields = struct.unpack_from("<5I", encrypted_header(layout), 4)
    return [
        "/* The image header: magic, then little-endian format version (2: encrypted), header",
        " * size, stored payload size, layout id and chunk count; then the nonce. */",
        *check_image_source(naming, fields, ENCRYPTED_HEADER_BYTES, [
            f"    memcpy({naming.symbol('image_nonce')}, header + {HEADER.size}, "
            "MCUFLOW_NONCE_BYTES);"]),
        "",
    ]


def _first_chunk_source(layout: ExternalLayout, naming: Naming) -> list[str]:
    return [
        "/* Forget any read an earlier run left pending when it failed, then begin reading the",
        " * first chunk (model_run has checked the image and derived this inference's keys). */",
        f"static int {naming.symbol('first_chunk')}(void)",
        "{",
        "    if (mcuflow_storage_wait() != 0) {",
        "        return MCUFLOW_ERROR_STORAGE;",
        "    }",
        f"    {naming.symbol('pending')} = {len(layout.chunks)}u;",
        f"    return {naming.symbol('next_chunk')}(0u);",
        "}",
        "",
    ]


def sealed_spill_source(plan: Plan, naming: Naming) -> list[str]:
    """model.c's spill keys, tag buffer and the sealed writes and reads of an encrypted spill.

    MCUFLOW_SPILL_SEAL encrypts a spilled tensor's rows in place (its buffer is dead after its
    step), tags each and writes the rows, then the tags; MCUFLOW_SPILL_OPEN reads a window of
    rows and their tags, verifies every tag, then decrypts the rows in place.
    """
    keys, tags = naming.symbol("spill_keys"), naming.symbol("spill_tags")
    rows = max(plan.graph.tensors[name].shape[1] for name in plan.spilled)
    seal, unseal = naming.symbol("spill_seal"), naming.symbol("spill_open")
    return [
        "/* Encrypted spills: this inference's spill keys (model_run derives and wipes them)",
        f" * and the tags of up to {rows} rows, a spilled tensor's. Each spilled tensor's rows",
        " * are followed in the spill area by their 16-byte tags (mcuflow_crypto.h). */",
        f"static mcuflow_spill_keys_t {keys};",
        f"static uint8_t {tags}[{rows * TAG_BYTES}u];",
        "",
        "/* Encrypt in place and tag the `rows` rows of `row` bytes at `src` (dead after this",
        " * step), then write them at spill offset `at` and their tags after them. */",
        f"static int {seal}(uint32_t at, uint8_t *src, uint32_t row, uint32_t rows)",
        "{",
        "    for (uint32_t r = 0; r < rows; ++r) {",
        f"        mcuflow_spill_crypt(&{keys}, at + r * row, src + r * row, row);",
        f"        mcuflow_spill_tag(&{keys}, at + r * row, src + r * row, row, "
        f"{tags} + {TAG_BYTES}u * r);",
        "    }",
        "    if (MCUFLOW_SPILL_WRITE(at, src, row * rows) != 0 ||",
        f"        MCUFLOW_SPILL_WRITE(at + row * rows, {tags}, {TAG_BYTES}u * rows) != 0) {{",
        "        return MCUFLOW_ERROR_STORAGE;",
        "    }",
        "    return MCUFLOW_OK;",
        "}",
        "",
        "/* Read the `rows` rows of `row` bytes at spill offset `at` into `dst` and their tags at",
        " * `tags_at`; check every tag before decrypting any row in place. */",
        f"static int {unseal}(uint32_t at, uint32_t tags_at, uint8_t *dst, uint32_t row,",
        "                     uint32_t rows)",
        "{",
        "    uint8_t tag[16];",
        "    int intact = 1;",
        "    if (MCUFLOW_SPILL_READ(at, dst, row * rows) != 0 ||",
        f"        MCUFLOW_SPILL_READ(tags_at, {tags}, {TAG_BYTES}u * rows) != 0) {{",
        "        return MCUFLOW_ERROR_STORAGE;",
        "    }",
        "    for (uint32_t r = 0; r < rows; ++r) {",
        f"        mcuflow_spill_tag(&{keys}, at + r * row, dst + r * row, row, tag);",
        f"        intact &= mcuflow_tags_equal(tag, {tags} + {TAG_BYTES}u * r);",
        "    }",
        "    if (!intact) {",
        "        return MCUFLOW_ERROR_TAG;",
        "    }",
        "    for (uint32_t r = 0; r < rows; ++r) {",
        f"        mcuflow_spill_crypt(&{keys}, at + r * row, dst + r * row, row);",
        "    }",
        "    return MCUFLOW_OK;",
        "}",
        f"#define MCUFLOW_SPILL_SEAL(at, src, row, rows) {seal}((at), (src), (row), (rows))",
        f"#define MCUFLOW_SPILL_OPEN(at, tags_at, dst, row, rows) "
        f"{unseal}((at), (tags_at), (uint8_t *)(void *)(dst), (row), (rows))",
        "",
    ]


def keyed_run_source(naming: Naming, image: bool, spill: bool) -> list[str]:
    """model_run of a model with an encrypted image, encrypted spills or both.

    One request to mcuflow_external_key() per inference derives every key (the key itself
    wiped at once): the image's, once its header is checked (the first inference only), and
    the spill's with a nonce never used before from mcuflow_spill_nonce(); model_steps runs
    between, and every derived key is wiped when the steps end, however they end.
    """
    derived = [naming.symbol(name) for name, wanted in (("image_keys", image),
                                                         ("spill_keys", spill)) if wanted]
    request = "mcuflow_external_key(key) != 0" + (
        " || mcuflow_spill_nonce(nonce) != 0" if spill else "")
    return [
        "/* One inference: its keys derived from one mcuflow_external_key() request (the key",
        " * wiped at once), wiped when the steps end, however they end. */",
        f"static int {naming.symbol('model_run')}(void)",
        "{",
        "    uint8_t key[16];",
        *(["    uint8_t nonce[MCUFLOW_SPILL_NONCE_BYTES];"] if spill else []),
        "    int status = MCUFLOW_OK;",
        *(_image_check(naming) if image else []),
        "    if (status == MCUFLOW_OK) {",
        f"        status = {request} ? MCUFLOW_ERROR_KEY : MCUFLOW_OK;",
        "    }",
        "    if (status == MCUFLOW_OK) {",
        *([f"        mcuflow_image_keys_init(&{naming.symbol('image_keys')}, key, "
           f"{naming.symbol('image_nonce')}, {naming.macro('EXTERNAL_LAYOUT_ID')});"]
          if image else []),
        *([f"        mcuflow_spill_keys_init(&{naming.symbol('spill_keys')}, key, nonce);"]
          if spill else []),
        "    }",
        "    mcuflow_wipe(key, sizeof key);",
        "    if (status == MCUFLOW_OK) {",
        f"        status = {naming.symbol('model_steps')}();",
        "    }",
        *[f"    mcuflow_wipe(&{keys}, sizeof {keys});" for keys in derived],
        "    return status;",
        "}",
        "",
    ]


def _image_check(naming: Naming) -> list[str]:
    """model_run's check of the image header, done by the first inference that passes it."""
    checked = naming.symbol("image_checked")
    return [
        f"    if (!{checked}) {{",
        f"        status = {naming.symbol('check_image')}();",
        f"        {checked} = status == MCUFLOW_OK;",
        "    }",
    ]
