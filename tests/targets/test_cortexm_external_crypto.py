"""Encrypted external image on QEMU: bit-exact, cost per byte as catalogued, tampering refused."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mcuflow.codegen.external import IMAGE_FILE, external_layout
from mcuflow.codegen.external_crypto import ENCRYPTED_HEADER_BYTES, TAG_BYTES
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.render import emit_layers
from mcuflow.errors import ToolchainError
from mcuflow.hw.board import get_board
from mcuflow.hw.external_crypto import crypto_instructions_per_byte
from mcuflow.ir import zoo
from mcuflow.memory.plan import ExternalWeights
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.arm import build_cortexm, cortex_m_core
from mcuflow.toolchain.host import random_inputs
from mcuflow.toolchain.qemu import run_qemu, verify_cortexm
from tests.codegen.test_external_crypto import KEY, encrypted
from tests.codegen.test_external_weights import steps_with_constants
from tests.targets.test_cortexm_external import BOARDS, _plan

RUNS = 2


@pytest.mark.parametrize("target", list(BOARDS))
def test_encrypted_external_weights_run_bit_exact(target: str) -> None:
    _, plan = _plan(target)
    result = verify_cortexm(plan.graph, encrypted(plan), target, BOARDS[target], runs=RUNS,
                            seed=1, external_key=KEY)
    assert result.bit_exact and result.mismatches == 0
    assert crypto_instructions_per_byte(target) > 0


def test_a_tampered_chunk_ends_the_run_with_the_tag_code(tmp_path: Path) -> None:
    _, plan = _plan("cortex-m4")
    project = generate_project(plan.graph, encrypted(plan), tmp_path / "project",
                               target="cortex-m4", board=get_board(BOARDS["cortex-m4"]),
                               external_key=KEY)
    assert project.external is not None
    elf = build_cortexm(project.path, "cortex-m4")
    image = bytearray((project.path / IMAGE_FILE).read_bytes())
    second = project.external.chunks[1]
    image[ENCRYPTED_HEADER_BYTES + second.offset + TAG_BYTES + 5] ^= 1
    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(bytes(image))
    inputs = random_inputs(plan.graph, 1, 0)
    run_qemu(elf, "cortex-m4", inputs, project.outputs, image=project.path / IMAGE_FILE, key=KEY)
    with pytest.raises(ToolchainError) as failed:
        run_qemu(elf, "cortex-m4", inputs, project.outputs, image=tampered, key=KEY)
    assert re.search(r"\brun \d+ 7\b", str(failed.value))


def test_the_catalogued_cost_per_byte_holds_on_another_model_and_core() -> None:
    """The catalogue's instructions per byte predict QEMU's on a model it was not measured on.

    bench/external_crypto.py measured mobilenet_v2_like(32, 0.35, 10); this is a wider net at
    40 x 40, on the Cortex-M3.
    """
    target = "cortex-m3"
    graph = zoo.mobilenet_v2_like(40, 0.5, 6)
    unpacked = plan_memory(graph, 0.2, dsp=cortex_m_core(target).dsp)
    plan = dataclasses.replace(unpacked, external=ExternalWeights(
        "sd_card", steps_with_constants(unpacked)))
    layout = external_layout(plan, *emit_layers(plan.graph, plan, cortex_m_core(target).dsp))
    assert layout is not None
    plain = verify_cortexm(plan.graph, plan, target, "nucleo-f207zg", runs=1, seed=2)
    sealed = verify_cortexm(plan.graph, encrypted(plan), target, "nucleo-f207zg", runs=1,
                            seed=2, external_key=KEY)
    assert plain.bit_exact and sealed.bit_exact
    measured = (sealed.instructions - plain.instructions) / layout.external_bytes
    assert measured == pytest.approx(crypto_instructions_per_byte(target), rel=0.05)
