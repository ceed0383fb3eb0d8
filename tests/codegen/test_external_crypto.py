"""Encrypted external image: the C AES/CTR/CMAC against NIST, RFC 4493 and `cryptography`."""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from mcuflow.codegen.external import HEADER, IMAGE_FILE, MAGIC, external_layout
from mcuflow.codegen.external_crypto import (
    ENCRYPTED_HEADER_BYTES,
    ENCRYPTED_VERSION,
    KEY_FILE,
    TAG_BYTES,
    counter_block,
    derived_keys,
    read_key,
)
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.render import TensorSpec, emit_layers
from mcuflow.codegen.targets import template
from mcuflow.errors import McuflowError, ToolchainError
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan
from mcuflow.toolchain.host import build_host, random_inputs, run_host, verify_host
from tests.codegen.test_external_weights import planned
from tests.support import run_cli

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
NIST_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
NIST_TEXT = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
STATUS = re.compile(r"inference failed \(status (\d+)\)")


@functools.cache
def crypto_library() -> ctypes.CDLL:
    """mcuflow_crypto.c built as a shared library (its text is the generated projects')."""
    directory = Path(tempfile.mkdtemp(prefix="mcuflow-crypto-"))
    for name in ("mcuflow_crypto.h", "mcuflow_crypto.c"):
        (directory / name).write_text(template("common", name))
    library = directory / "libcrypto_test.so"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2",
                    "-shared", "-fPIC", "-o", str(library), str(directory / "mcuflow_crypto.c")],
                   check=True)
    loaded = ctypes.CDLL(str(library))
    shutil.rmtree(directory)
    return loaded


def c_encrypt(key: bytes, block: bytes) -> bytes:
    lib, aes = crypto_library(), ctypes.create_string_buffer(176)
    out = ctypes.create_string_buffer(16)
    lib.mcuflow_aes128_init(aes, key)
    lib.mcuflow_aes128_encrypt(aes, block, out)
    return out.raw


def c_ctr(key: bytes, counter: bytes, data: bytes) -> bytes:
    lib, aes = crypto_library(), ctypes.create_string_buffer(176)
    buffer = ctypes.create_string_buffer(data, max(len(data), 1))
    lib.mcuflow_aes128_init(aes, key)
    lib.mcuflow_aes128_ctr(aes, counter, buffer, ctypes.c_uint32(len(data)))
    return buffer.raw[:len(data)]


def c_cmac(key: bytes, message: bytes) -> bytes:
    lib, cmac = crypto_library(), ctypes.create_string_buffer(256)
    tag = ctypes.create_string_buffer(16)
    lib.mcuflow_cmac_init(cmac, key)
    lib.mcuflow_cmac(cmac, bytes(16), message, ctypes.c_uint32(len(message)), tag)
    return tag.raw


def test_aes_block_matches_fips197_and_sp800_38a() -> None:
    assert c_encrypt(KEY, bytes.fromhex("00112233445566778899aabbccddeeff")) == bytes.fromhex(
        "69c4e0d86a7b0430d8cdb78070b4c55a")  # FIPS-197 appendix C.1
    ecb = bytes.fromhex("3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf"
                        "43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4")
    for i in range(4):  # SP 800-38A F.1.1, ECB-AES128
        assert c_encrypt(NIST_KEY, NIST_TEXT[16 * i:16 * i + 16]) == ecb[16 * i:16 * i + 16]


def test_ctr_matches_sp800_38a_f51() -> None:
    counter = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    expected = bytes.fromhex("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
                             "5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee")
    assert c_ctr(NIST_KEY, counter, NIST_TEXT) == expected
    assert c_ctr(NIST_KEY, counter, expected) == NIST_TEXT


def test_cmac_matches_rfc4493() -> None:
    examples = {0: "bb1d6929e95937287fa37d129b756746", 16: "070a16b46b4d4144f79bdd9dd04a287c",
                40: "dfa66747de9ae63030ca32611497c827", 64: "51f0bebf7e3b9d92fc49741779363cfe"}
    for length, tag in examples.items():
        assert c_cmac(NIST_KEY, NIST_TEXT[:length]) == bytes.fromhex(tag), length


def _reference_cmac(key: bytes, message: bytes) -> bytes:
    cmac = CMAC(algorithms.AES(key))
    cmac.update(message)
    return cmac.finalize()


def test_c_primitives_match_cryptography_on_random_data() -> None:
    rng = np.random.default_rng(7)
    for trial in range(40):
        key, block = rng.bytes(16), rng.bytes(16)
        ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        assert c_encrypt(key, block) == ecb.update(block) + ecb.finalize()
        counter = rng.bytes(12) + (b"\xff\xff\xff\xfe" if trial % 4 == 0 else rng.bytes(4))
        data = rng.bytes(int(rng.integers(0, 120)))
        ctr = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
        assert c_ctr(key, counter, data) == ctr.update(data) + ctr.finalize()
        message = rng.bytes(int(rng.integers(0, 100)))
        assert c_cmac(key, message) == _reference_cmac(key, message), len(message)


def encrypted(plan: Plan) -> Plan:
    """`plan` with its external image encrypted."""
    assert plan.external is not None
    return dataclasses.replace(plan, external=dataclasses.replace(plan.external, encrypted=True))


def test_the_image_decrypts_to_the_plain_payload_and_every_tag_verifies(tmp_path: Path
                                                                         ) -> None:
    graph, plan = planned()
    layout = external_layout(encrypted(plan), *emit_layers(graph, plan))
    assert layout is not None and layout.encrypted
    generated = generate_project(graph, encrypted(plan), tmp_path / "image", external_key=KEY)
    plain = generate_project(graph, plan, tmp_path / "plain")
    image, payload = generated.external_image, plain.external_image[HEADER.size:]
    magic, version, size, stored, layout_id, chunks = HEADER.unpack_from(image)
    assert (magic, version, size) == (MAGIC, ENCRYPTED_VERSION, ENCRYPTED_HEADER_BYTES)
    assert (stored, layout_id, chunks) == (len(image) - size, layout.layout_id,
                                           len(layout.chunks))
    assert stored == layout.external_bytes + TAG_BYTES * len(layout.chunks)
    ctr_key, mac_key = derived_keys(KEY)
    nonce = image[HEADER.size:size]
    for index, chunk in enumerate(layout.chunks):
        start = size + chunk.offset + TAG_BYTES * index
        sealed, tag = image[start:start + chunk.size], image[start + chunk.size:start +
                                                             chunk.size + TAG_BYTES]
        assert sealed != payload[chunk.offset:chunk.offset + chunk.size]
        decrypt = Cipher(algorithms.AES(ctr_key),
                         modes.CTR(counter_block(nonce, chunk.offset))).decryptor()
        assert decrypt.update(sealed) == payload[chunk.offset:chunk.offset + chunk.size]
        bound = nonce + layout_id.to_bytes(4, "little") + b"".join(
            v.to_bytes(4, "little") for v in (index, chunk.offset, chunk.size, 2))
        assert tag == _reference_cmac(mac_key, bound + sealed)
    again = generate_project(graph, encrypted(plan), tmp_path / "again", external_key=KEY)
    other = generate_project(graph, encrypted(plan), tmp_path / "other", external_key=bytes(16))
    assert again.external_image == image and other.external_image[size:] != image[size:]
    assert generated.external.staging_bytes == plain.external.staging_bytes + 2 * TAG_BYTES


def test_an_encrypting_compile_needs_a_key(tmp_path: Path) -> None:
    graph, plan = planned()
    with pytest.raises(Exception, match="no key was given"):
        generate_project(graph, encrypted(plan), tmp_path / "project")
    with pytest.raises(McuflowError, match="head -c 16 /dev/urandom"):
        read_key(tmp_path / "missing.bin")
    (tmp_path / "short.bin").write_bytes(b"x" * 15)
    with pytest.raises(McuflowError, match="holds 15 bytes"):
        read_key(tmp_path / "short.bin")


def test_encrypted_c_is_bit_exact_with_litert() -> None:
    graph, plan = planned()
    result = verify_host(graph, encrypted(plan), runs=3, seed=5, external_key=KEY)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0


class Built(NamedTuple):
    """A host build of the encrypted project, and the plain project's image."""

    binary: Path
    project: Path
    graph: Graph
    outputs: tuple[TensorSpec, ...]
    plain_image: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    graph, plan = planned()
    base = tmp_path_factory.mktemp("encrypted")
    project = generate_project(graph, encrypted(plan), base / "project", external_key=KEY)
    plain = generate_project(graph, plan, base / "plain")
    return Built(build_host(project.path, opt_level="-O1"), project.path, graph, project.outputs,
                 plain.path / IMAGE_FILE)


def test_the_key_is_in_no_generated_file(built: Built) -> None:
    for path in (p for p in built.project.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert KEY not in data and KEY.hex().encode() not in data, path.name
        assert KEY.hex(",").encode() not in data and b"0x00, 0x01, 0x02, 0x03, 0x04" not in data
    assert not (built.project / KEY_FILE).exists()
    readme = (built.project / "README.md").read_text()
    assert "MCUFLOW_ERROR_TAG` (7)" in readme and "mcuflow_external_key" in readme


def _status(built: Built, image: Path, key: bytes | None) -> int:
    """The status a run returns (0 when the outputs came back)."""
    try:
        run_host(built.binary, random_inputs(built.graph, 1, 0), built.outputs, image, key)
    except ToolchainError as error:
        match = STATUS.search(str(error))
        assert match, str(error)
        return int(match.group(1))
    return 0


def _flipped(built: Built, tmp_path: Path, at: int) -> Path:
    image = bytearray((built.project / IMAGE_FILE).read_bytes())
    image[at] ^= 0x10
    path = tmp_path / f"flipped_{at}.bin"
    path.write_bytes(bytes(image))
    return path


def test_tampering_a_wrong_key_or_a_plain_image_fail_with_distinct_codes(
        built: Built, tmp_path: Path) -> None:
    image = built.project / IMAGE_FILE
    size = len(image.read_bytes())
    assert _status(built, image, KEY) == 0
    assert _status(built, _flipped(built, tmp_path, ENCRYPTED_HEADER_BYTES + 40), KEY) == 7
    assert _status(built, _flipped(built, tmp_path, size - 1), KEY) == 7  # the last tag
    assert _status(built, _flipped(built, tmp_path, HEADER.size + 3), KEY) == 7  # the nonce
    assert _status(built, image, bytes(16)) == 7
    assert _status(built, image, None) == 8
    assert _status(built, built.plain_image, KEY) == 6


def test_the_cli_refuses_encryption_without_a_key(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(b"")
    code, output = run_cli(capsys, ["compile", str(model), "-o", str(tmp_path / "out"),
                            "--encrypt-external"])
    assert code == 2 and "mcuflow: error: --encrypt-external needs the key" in output
    assert "head -c 16 /dev/urandom > key.bin" in output
    code, output = run_cli(capsys, ["compile", str(model), "-o", str(tmp_path / "out"),
                            "--external-key", str(tmp_path / "key.bin")])
    assert code == 2 and "add --encrypt-external" in output
