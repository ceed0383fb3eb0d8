"""The DSP kernels' assembly stays correct wherever the linker places it (-Os aligns code to 2)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from mcuflow.codegen.project import kernel_files
from mcuflow.toolchain.arm import CROSS_COMPILER

CROSS = shutil.which(CROSS_COMPILER)
OBJDUMP = shutil.which("arm-none-eabi-objdump")
DSP_SOURCES = ("mcuflow_conv_dsp", "mcuflow_dwconv_dsp", "mcuflow_elementwise_dsp")
PC_RELATIVE_ADDRESS = re.compile(r"\s(?:adr|addw)(?:\.w)?\s+\w+, pc, #")


def _functions_taking_pc_addresses(disassembly: str) -> set[str]:
    """Functions holding an ADR (resolved by the assembler against Align(PC, 4))."""
    found, function = set(), ""
    for line in disassembly.splitlines():
        if header := re.match(r"^[0-9a-f]+ <(.+)>:$", line):
            function = header.group(1)
        elif PC_RELATIVE_ADDRESS.search(line):
            found.add(function)
    return found


@pytest.mark.skipif(CROSS is None or OBJDUMP is None, reason="no Arm toolchain")
@pytest.mark.parametrize("level", ["-O0", "-Os", "-O2"])
def test_every_adr_sits_in_a_4_aligned_section(tmp_path: Path, level: str) -> None:
    """An ADR in a 2-aligned section could land 2 bytes off its label: the section must be 4."""
    for name, text in kernel_files(list(DSP_SOURCES)).items():
        (tmp_path / name).write_text(text)
    for stem in DSP_SOURCES:
        obj = tmp_path / f"{stem}{level}.o"
        subprocess.run([CROSS, "-mcpu=cortex-m4", "-mthumb", level, "-ffunction-sections",
                        "-c", str(tmp_path / f"{stem}.c"), "-o", str(obj)], check=True)
        disassembly = subprocess.run([OBJDUMP, "-d", str(obj)], check=True,
                                     capture_output=True, text=True).stdout
        with obj.open("rb") as stream:
            alignment = {s.name.removeprefix(".text."): s["sh_addralign"]
                         for s in ELFFile(stream).iter_sections() if s.name.startswith(".text")}
        for function in _functions_taking_pc_addresses(disassembly):
            assert alignment.get(function, 0) >= 4, f"{stem}: {function} at {level}"
