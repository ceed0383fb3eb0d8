"""Kernel interface blocks: each kernel file declares itself, projects declare what they ship."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from mcuflow.codegen.context import CodegenError
from mcuflow.codegen.project import (
    INTERFACE_BEGIN,
    INTERFACE_END,
    interface_block,
    kernel_source,
    kernels_header,
    render_project,
)
from mcuflow.codegen.render import COMMON_HEADER, KERNELS_HEADER
from mcuflow.hw.kernels import KERNELS
from tests.codegen.test_host_ops import planned

PORTABLE = sorted({k.source for k in KERNELS.values() if not k.dsp})
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
COMPILERS = [cc for cc in ("gcc", "clang") if shutil.which(cc)]
GOOD = f"""/* a kernel */
#include "{COMMON_HEADER}"

{INTERFACE_BEGIN}

void mcuflow_x_s8(int8_t *output);

{INTERFACE_END}

void mcuflow_x_s8(int8_t *output) {{ *output = 0; }}
"""
_PROTOTYPE = re.compile(r"^(?:void|int) (mcuflow_\w+)\(", re.M)


def _declared(header: str) -> set[str]:
    return set(_PROTOTYPE.findall(header))


def test_every_kernel_file_has_the_interface_block_its_kind_needs() -> None:
    """Portable kernel files declare their functions; DSP ones leave that to mcuflow_dsp.h."""
    files = resources.files("mcuflow.codegen").joinpath("kernels")
    portable = sorted(p.name for p in files.iterdir()
                      if p.name.endswith(".c") and not p.name.endswith("_dsp.c"))
    assert portable == [f"{stem}.c" for stem in PORTABLE]
    for stem in PORTABLE:
        functions = {f for f, k in KERNELS.items() if k.source == stem}
        assert _declared(interface_block(f"{stem}.c", kernel_source(f"{stem}.c"))) == functions
    assert all(INTERFACE_BEGIN not in kernel_source(f"{k.source}.c")
               for k in KERNELS.values() if k.dsp)


def test_the_interface_block_is_the_text_between_the_markers() -> None:
    assert interface_block("mcuflow_x.c", GOOD) == "void mcuflow_x_s8(int8_t *output);"


@pytest.mark.parametrize(("text", "message"), [
    (GOOD.replace(INTERFACE_BEGIN, ""), f"0 lines hold the marker '{re.escape(INTERFACE_BEGIN)}'"),
    (GOOD.replace(INTERFACE_END, ""), f"0 lines hold the marker '{re.escape(INTERFACE_END)}'"),
    (GOOD.replace(INTERFACE_BEGIN, f"{INTERFACE_BEGIN}\n{INTERFACE_BEGIN}"), "2 lines hold"),
    (GOOD.replace(INTERFACE_END, f"int x; {INTERFACE_END}"), "line 8: .* must stand alone"),
    (GOOD.replace(INTERFACE_BEGIN, "@").replace(INTERFACE_END, INTERFACE_BEGIN)
     .replace("@", INTERFACE_END), r"'/\* mcuflow:end-interface \*/' \(line 4\) comes before"),
    (GOOD.replace(f'#include "{COMMON_HEADER}"', ""), "must follow #include"),
    (re.sub(r"void mcuflow_x_s8\(int8_t \*output\);", "", GOOD, count=1), "declares nothing"),
], ids=["no-begin", "no-end", "two-begins", "not-alone", "reversed", "no-include", "empty"])
def test_a_malformed_interface_block_is_reported_with_its_file(text: str, message: str) -> None:
    with pytest.raises(CodegenError, match=rf"^kernel file mcuflow_x\.c\b.*{message}"):
        interface_block("mcuflow_x.c", text)


@pytest.mark.skipif(not COMPILERS, reason="no host C compiler")
@pytest.mark.parametrize("stem", PORTABLE)
def test_every_portable_kernel_file_compiles_alone(stem: str, tmp_path: Path) -> None:
    """With only mcuflow_common.h beside it, and its block alone makes a valid header."""
    (tmp_path / COMMON_HEADER).write_text(kernel_source(COMMON_HEADER))
    (tmp_path / f"{stem}.c").write_text(kernel_source(f"{stem}.c"))
    (tmp_path / KERNELS_HEADER).write_text(kernels_header([stem]))
    (tmp_path / "user.c").write_text(f'#include "{KERNELS_HEADER}"\n#include "{KERNELS_HEADER}"\n'
                                     "int mcuflow_user;\n")
    for cc in COMPILERS:
        for source in (f"{stem}.c", "user.c"):
            done = subprocess.run([cc, *STRICT, "-O2", "-c", source, "-o", "out.o"],
                                  cwd=tmp_path, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr


def test_a_project_header_declares_exactly_the_kernels_it_ships() -> None:
    graph, plan = planned("pools_and_means", True)
    files, _ = render_project(graph, plan)
    shipped = {stem for stem in PORTABLE if f"{stem}.c" in files}
    assert 1 < len(shipped) < len(PORTABLE)
    functions = {f for f, k in KERNELS.items() if k.source in shipped}
    assert _declared(files[KERNELS_HEADER]) == functions
    assert f'#include "{KERNELS_HEADER}"' in files["mcuflow_model.c"]
