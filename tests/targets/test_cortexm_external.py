"""Out-of-core weights on QEMU: bit-exact, out of the ELF's flash, read once per inference."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from mcuflow.codegen.external import HEADER, external_layout
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.render import emit_layers
from mcuflow.errors import ToolchainError
from mcuflow.hw.board import get_board
from mcuflow.ir import zoo
from mcuflow.memory.plan import ExternalWeights, Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.arm import build_cortexm, cortex_m_core, elf_sizes
from mcuflow.toolchain.host import random_inputs
from mcuflow.toolchain.qemu import run_qemu, verify_cortexm
from tests.codegen.test_external_weights import steps_with_constants

BOARDS = {"cortex-m4": "nucleo-f429zi", "cortex-m0": "rp2040"}
RUNS = 3
CHECK_CONSTANTS = 64
"""Read-only bytes the image check adds (the expected header fields and the magic)."""


def _plan(target: str) -> tuple[Plan, Plan]:
    """mobilenet_v2_like planned for `target`: every constant in flash, and read externally."""
    graph = zoo.mobilenet_v2_like(32, 0.35, 10)
    plan = plan_memory(graph, 0.2, dsp=cortex_m_core(target).dsp)
    external = replace(plan, external=ExternalWeights("sd_card", steps_with_constants(plan)))
    return plan, external


@pytest.mark.parametrize("target", list(BOARDS))
def test_external_weights_run_bit_exact_outside_flash(target: str, tmp_path: Path) -> None:
    flash, external = _plan(target)
    graph = flash.graph
    layout = external_layout(external, *emit_layers(graph, external, cortex_m_core(target).dsp))
    assert layout is not None
    result = verify_cortexm(graph, external, target, BOARDS[target], runs=RUNS, seed=1)
    assert result.bit_exact and result.mismatches == 0
    assert result.storage_bytes_read == HEADER.size + RUNS * layout.external_bytes
    project = generate_project(graph, flash, tmp_path / "flash", target=target,
                               board=get_board(BOARDS[target]))
    elf = build_cortexm(project.path, target)
    in_flash = elf_sizes(elf)
    moved = sum(a.nbytes for chunk in layout.chunks for a in chunk.arrays)
    assert layout.symbols <= _symbols(elf)
    assert in_flash.rodata - result.rodata_bytes >= moved - CHECK_CONSTANTS
    assert in_flash.flash_bytes - result.flash_bytes >= 0.95 * moved  # less the staging code


def _symbols(elf: Path) -> set[str]:
    """The names in the ELF's symbol table."""
    with elf.open("rb") as handle:
        table = ELFFile(handle).get_section_by_name(".symtab")
        return {symbol.name for symbol in table.iter_symbols()}


def test_the_external_arrays_are_not_linked(tmp_path: Path) -> None:
    _, external = _plan("cortex-m0")
    layout = external_layout(external, *emit_layers(external.graph, external))
    project = generate_project(external.graph, external, tmp_path / "project",
                               target="cortex-m0", board=get_board(BOARDS["cortex-m0"]))
    assert layout is not None
    assert not layout.symbols & _symbols(build_cortexm(project.path, "cortex-m0"))


def test_a_missing_image_fails_the_inference_with_the_storage_code(tmp_path: Path) -> None:
    _, external = _plan("cortex-m4")
    project = generate_project(external.graph, external, tmp_path / "project",
                               target="cortex-m4", board=get_board(BOARDS["cortex-m4"]))
    elf = build_cortexm(project.path, "cortex-m4")
    with pytest.raises(ToolchainError) as failed:
        run_qemu(elf, "cortex-m4", random_inputs(external.graph, 1, 0), project.outputs)
    assert re.search(r"\brun \d+ 5\b", str(failed.value))
