"""Memory-mapped (XIP) external weights: read by memcpy from a window, bit-exact on QEMU."""

from __future__ import annotations

import functools
import re
from dataclasses import replace
from pathlib import Path

import pytest

from mcuflow.api import firmware_options
from mcuflow.codegen.external import HEADER, IMAGE_FILE, external_layout
from mcuflow.codegen.firmware import Firmware, MemoryMap
from mcuflow.codegen.project import STORAGE_SOURCES, XIP_SOURCE, generate_project
from mcuflow.codegen.render import emit_layers
from mcuflow.errors import ToolchainError
from mcuflow.hw.board import get_board
from mcuflow.ir import zoo
from mcuflow.memory.plan import ExternalWeights, Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.arm import build_cortexm
from mcuflow.toolchain.host import random_inputs
from mcuflow.toolchain.qemu import psram_window, run_qemu, verify_cortexm
from tests.codegen.test_external_weights import steps_with_constants

TARGET = "cortex-m4"
RUNS = 2
DISCO = "stm32f746g-disco"


@functools.cache
def _plan(tier: str) -> Plan:
    """mobilenet_v2_like with every layer's constants in an external image on `tier`."""
    plan = plan_memory(zoo.mobilenet_v2_like(32, 0.35, 10), 0.2, dsp=True)
    return replace(plan, external=ExternalWeights(tier, steps_with_constants(plan)))


def test_the_image_in_psram_runs_bit_exact() -> None:
    plan = _plan("qspi_flash")
    layout = external_layout(plan, *emit_layers(plan.graph, plan, True))
    assert layout is not None
    result = verify_cortexm(plan.graph, plan, TARGET, "nucleo-f429zi", runs=RUNS, seed=2,
                            xip=True)
    assert result.bit_exact and result.mismatches == 0
    assert result.storage_bytes_read == HEADER.size + RUNS * layout.external_bytes


def test_without_the_loaded_image_the_header_check_fails(tmp_path: Path) -> None:
    plan = _plan("qspi_flash")
    window = psram_window(TARGET)
    project = generate_project(plan.graph, plan, tmp_path / "p", target=TARGET,
                               board=get_board("nucleo-f429zi"), firmware=Firmware(xip=window))
    assert XIP_SOURCE in project.files and STORAGE_SOURCES["cortex-m"] not in project.files
    elf = build_cortexm(project.path, TARGET)
    with pytest.raises(ToolchainError) as failed:  # the image copied for semihosting is unread
        run_qemu(elf, TARGET, random_inputs(plan.graph, 1, 0), project.outputs,
                 image=project.path / IMAGE_FILE)
    assert re.search(r"\brun \d+ 6\b", str(failed.value))


def test_a_board_build_reads_the_qspi_window_and_cross_builds(tmp_path: Path) -> None:
    plan = _plan("qspi_flash")
    firmware = firmware_options(DISCO, None, None)
    project = generate_project(plan.graph, plan, tmp_path / "p", target="cortex-m7",
                               board=get_board(DISCO), firmware=firmware)
    source = (project.path / XIP_SOURCE).read_text("ascii")
    assert source.startswith("/* The qspi window")
    assert "#define MCUFLOW_XIP_BASE 0x90000000u\n#define MCUFLOW_XIP_BYTES 16777216u" in source
    assert STORAGE_SOURCES["cortex-m"] not in project.files
    readme = (project.path / "README.md").read_text("utf-8")
    assert f"ships `{XIP_SOURCE}`" in readme and "0x90000000" in readme
    assert build_cortexm(project.path, "cortex-m7").is_file()


@pytest.mark.parametrize("tier, memory_map", [("sd_card", MemoryMap.BOARD),
                                              ("qspi_flash", MemoryMap.QEMU)])
def test_other_storage_keeps_the_semihosting_file(tier: str, memory_map: MemoryMap,
                                                  tmp_path: Path) -> None:
    plan = _plan(tier)
    firmware = firmware_options(DISCO, None, None, memory_map=memory_map)
    project = generate_project(plan.graph, plan, tmp_path / "p", target="cortex-m7",
                               board=get_board(DISCO), firmware=firmware)
    assert STORAGE_SOURCES["cortex-m"] in project.files and XIP_SOURCE not in project.files
    assert "implementation of `mcuflow_storage.h`" in (project.path / "README.md").read_text()
