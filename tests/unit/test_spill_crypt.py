"""Encrypted spills (--encrypt-external): spilled rows are AES-128-CTR ciphertext with a CMAC.

The C runs bit-exact with LiteRT; its spill area decrypts and verifies with `cryptography`
under the documented key derivation, nonce and counter blocks (mcuflow_crypto.h); a row
altered or replayed from an earlier inference between its write and its read makes invoke
return MCUFLOW_ERROR_TAG.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from mcuflow.codegen.external import IMAGE_FILE
from mcuflow.codegen.external_crypto import KEY_FILE
from mcuflow.codegen.project import generate_project
from mcuflow.hw.board import get_board
from mcuflow.hw.storage_io import spill_cost
from mcuflow.ir.ops import OpKind
from mcuflow.memory.check import check_plan
from mcuflow.memory.execute import run_in_arena
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.memory.plan import ExternalWeights, Plan
from mcuflow.memory.tiers import spill_tier
from mcuflow.planning import spill_target
from mcuflow.toolchain.host import (
    build_host,
    input_records,
    place_external,
    random_inputs,
    verify_host,
)
from tests.codegen.test_external_weights import steps_with_constants
from tests.unit.test_spill import F091RC, GRAPH, _spilling

KEY = bytes(range(0x30, 0x40))
TAG = 16
SHIM = """
#include <stdlib.h>
#include <string.h>

/* Test shim: MCUFLOW_TAMPER="flip AT" flips the byte at spill-file offset AT after every
 * write covering it; "drop AT" skips the second write covering it and the write after it
 * (its tags): the row and tags of the inference before stay, a replay. */
int mcuflow_storage_write(uint32_t offset, const void *src, uint32_t size)
{
    static int seen = 0;
    static int skip_next = 0;
    const char *tamper = getenv("MCUFLOW_TAMPER");
    const uint32_t at = tamper != NULL ? (uint32_t)strtoul(tamper + 5, NULL, 10) : 0u;
    if (skip_next) {
        skip_next = 0;
        return 0;
    }
    if (tamper == NULL || at < offset || at >= offset + size) {
        return stored_write(offset, src, size);
    }
    if (strncmp(tamper, "drop", 4) == 0) {
        skip_next = ++seen == 2;
        return skip_next ? 0 : stored_write(offset, src, size);
    }
    uint8_t flipped[1];
    if (stored_write(offset, src, size) != 0 ||
        mcuflow_storage_read(at, flipped, 1u) != 0) {
        return -1;
    }
    flipped[0] ^= 0x01u;
    return stored_write(at, flipped, 1u);
}
"""


def _sealed() -> Plan:
    return dataclasses.replace(_spilling(GRAPH, 12, 2), spill_encrypted=True)


@pytest.fixture(scope="module")
def shimmed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Plan, Path]:
    """An encrypted spilling plan and its host binary, storage writes through SHIM."""
    plan = _sealed()
    project = generate_project(GRAPH, plan, tmp_path_factory.mktemp("sealed") / "project",
                               target="host", external_key=KEY)
    storage = project.path / "mcuflow_storage_file.c"
    text = storage.read_text()
    assert text.count("int mcuflow_storage_write(") == 1
    storage.write_text(text.replace("int mcuflow_storage_write(", "static int stored_write(")
                       + SHIM)
    return plan, build_host(project.path)


def _run(binary: Path, directory: Path, runs: int, tamper: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    directory.mkdir()
    (directory / "input.bin").write_bytes(input_records(random_inputs(GRAPH, runs, 5)))
    (directory / KEY_FILE).write_bytes(KEY)
    env = {"MCUFLOW_TAMPER": tamper} if tamper else {}
    return subprocess.run([str(binary), "input.bin", "output.bin"], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=60)


def _read_row(plan: Plan) -> tuple[int, int]:
    """The spill offsets of a row some SLICE reads back and of its tag."""
    op = next(op for op in plan.graph.operators
              if op.kind is OpKind.SLICE and op.inputs[0] in plan.spilled)
    source, row = plan.graph.tensors[op.inputs[0]], op.attrs.begin[1]
    start = plan.spill_offsets[source.name]
    return (start + row * source.nbytes // source.shape[1],
            start + source.nbytes + TAG * row)


def _aes(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


@pytest.mark.parametrize("board", [None, "stm32f746g-disco", "nrf52840"])
def test_an_encrypted_spill_is_bit_exact_with_litert(board: str | None) -> None:
    """Through the storage (a card, then NOR flash with its erases) and in external RAM."""
    plan = _sealed()
    plan.spill_tier = spill_tier(get_board(board)) if board else None
    check_plan(plan)
    plain = _spilling(GRAPH, 12, 2)
    rows = sum(plan.graph.tensors[name].shape[1] for name in plan.spilled)
    assert plan.spill_bytes == plain.spill_bytes + TAG * rows
    assert plan.arena_bytes == plain.arena_bytes
    result = verify_host(GRAPH, plan, runs=2, seed=4, external_key=KEY)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0


def test_the_spill_area_decrypts_and_verifies_with_cryptography(
        shimmed: tuple[Plan, Path], tmp_path: Path) -> None:
    """Keys AES(key, label); row at `at`: CTR from nonce|at|0, CMAC of nonce|at|size|ct."""
    plan, binary = shimmed
    result = _run(binary, tmp_path / "run", 1)
    assert result.returncode == 0, result.stderr
    area = (tmp_path / "run" / IMAGE_FILE).read_bytes()
    nonce = (tmp_path / "run" / "spill_nonce.bin").read_bytes()
    assert len(area) == plan.spill_bytes and nonce == (1).to_bytes(8, "big")
    ctr_key, mac_key = _aes(KEY, b"mcuflow spl ctr\0"), _aes(KEY, b"mcuflow spl mac\0")
    kept = run_in_arena(plan, [x[0] for x in random_inputs(GRAPH, 1, 5)],
                        keep_intermediates=True).tensors
    for name, start in plan.spill_offsets.items():
        tensor = plan.graph.tensors[name]
        row, expected = tensor.nbytes // tensor.shape[1], kept[name].tobytes()
        for r in range(tensor.shape[1]):
            at = start + r * row
            sealed = area[at:at + row]
            decryptor = Cipher(algorithms.AES(ctr_key), modes.CTR(
                nonce + at.to_bytes(4, "big") + bytes(4))).decryptor()
            assert decryptor.update(sealed) == expected[r * row:(r + 1) * row]
            cmac = CMAC(algorithms.AES(mac_key))
            cmac.update(nonce + at.to_bytes(4, "big") + row.to_bytes(4, "big") + sealed)
            tag = start + tensor.nbytes + TAG * r
            cmac.verify(area[tag:tag + TAG])


@pytest.mark.parametrize("tamper", ["flip", "flip-tag", "drop"])
def test_a_tampered_or_replayed_row_makes_invoke_return_the_tag_error(
        shimmed: tuple[Plan, Path], tmp_path: Path, tamper: str) -> None:
    """A flipped ciphertext or tag byte, or the row of the inference before kept (replay)."""
    plan, binary = shimmed
    row, tag = _read_row(plan)
    at = tag + 3 if tamper == "flip-tag" else row
    result = _run(binary, tmp_path / "run", 2, f"{tamper[:4]} {at}")
    assert result.returncode != 0 and "status 7" in result.stderr + result.stdout


def test_encryption_no_longer_stops_spilling_and_prices_the_aes() -> None:
    plain = spill_target(F091RC, PatchRequest())
    sealed = spill_target(F091RC, PatchRequest(encrypt_external=True))
    assert plain is not None and sealed is not None and sealed.crypto_ms_per_byte
    graph, spilled = _sealed().graph, _sealed().spilled
    assert sealed.ms(graph, spilled) > plain.ms(graph, spilled)
    traffic = sealed.traffic(graph, spilled)
    untimed = spill_cost(F091RC, sealed.tier, traffic).ms
    assert sealed.ms(graph, spilled) - untimed == pytest.approx(
        traffic.sealed_bytes * sealed.crypto_ms_per_byte)
    rows = max(graph.tensors[name].shape[1] for name in spilled)
    assert traffic.buffer_bytes == TAG * rows



KEY_SHIM = """
#include <stdlib.h>

/* Test shim: count the key requests; at each, and at exit, check that no key derived by
 * an earlier inference is left in model.c's statics (mcuflow_test_keys_wiped, appended
 * there); write both counts to key_requests.txt. */
int mcuflow_test_keys_wiped(void);
static unsigned requests = 0u;
static unsigned unwiped = 0u;
static void report(void)
{
    FILE *file = fopen("key_requests.txt", "w");
    unwiped += !mcuflow_test_keys_wiped();
    if (file != NULL) {
        fprintf(file, "%u %u\\n", requests, unwiped);
        fclose(file);
    }
}
int mcuflow_external_key(uint8_t key[16])
{
    if (requests++ == 0u) {
        atexit(report);
    }
    unwiped += !mcuflow_test_keys_wiped();
    return stored_key(key);
}
"""


KEYS_CHECK = """
static int all_zero(const void *data, size_t size)
{
    const uint8_t *bytes = (const uint8_t *)data;
    int zero = 1;
    for (size_t i = 0; i < size; ++i) {
        zero &= bytes[i] == 0u;
    }
    return zero;
}

int mcuflow_test_keys_wiped(void);
int mcuflow_test_keys_wiped(void)
{
    return CHECKS;
}
"""


def _keys_check(model_c: str) -> str:
    """mcuflow_test_keys_wiped for model.c: 1 when its derived key structs hold only zeros."""
    structs = re.findall(r"^static mcuflow_(?:image|spill)_keys_t (\w+);", model_c, re.M)
    assert len(structs) == 2, structs
    checks = " && ".join(f"all_zero(&{name}, sizeof {name})" for name in structs)
    return model_c + KEYS_CHECK.replace("CHECKS", checks)


def test_an_inference_asks_for_the_key_once_and_leaves_no_derived_key(tmp_path: Path) -> None:
    """An encrypted image and encrypted spills: both keys come from one request.

    Neither the image's nor the spill's derived keys outlive the inference (a RAM dump
    between inferences finds none). The C is bit-exact with LiteRT.
    """
    plan = _sealed()
    plan.external = ExternalWeights("sd_card", steps_with_constants(plan), encrypted=True)
    result = verify_host(GRAPH, plan, runs=2, seed=4, external_key=KEY)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0
    project = generate_project(GRAPH, plan, tmp_path / "project", target="host",
                               external_key=KEY).path
    model_c = next(project.glob("*model.c"))
    model_c.write_text(_keys_check(model_c.read_text()))
    hook = project / "mcuflow_key_file.c"
    text = hook.read_text()
    assert text.count("int mcuflow_external_key(") == 1
    hook.write_text(text.replace("int mcuflow_external_key(", "static int stored_key(")
                    + KEY_SHIM)
    binary, run = build_host(project), tmp_path / "run"
    run.mkdir()
    runs = 3
    (run / "input.bin").write_bytes(input_records(random_inputs(GRAPH, runs, 5)))
    place_external(run, project / IMAGE_FILE, KEY)
    done = subprocess.run([str(binary), "input.bin", "output.bin"], cwd=run,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    requests, unwiped = map(int, (run / "key_requests.txt").read_text().split())
    assert (requests, unwiped) == (runs, 0)
