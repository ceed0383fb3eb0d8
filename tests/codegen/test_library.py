"""Library output: two prefixed models linked into one program, on the host and on QEMU.

The libraries of two different models (prefixes kws_ and ad_) go into one program, built with
their Makefile fragments and with their CMake targets on the host, and with the fragments and
arm-none-eabi-gcc into one Cortex-M4 firmware run on QEMU. The program runs each model through
invoke_n and through the zero-copy in-place call (ad_ on an arena the program lends, built with
-DAD_EXTERNAL_ARENA); every output equals the reference interpreter's to the bit.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mcuflow import api, outputs
from mcuflow.codegen.library import generate_library
from mcuflow.codegen.names import Naming
from mcuflow.codegen.project import GeneratedProject, generate_project
from mcuflow.codegen.render import TensorSpec
from mcuflow.codegen.targets import CORTEX_M_CFLAGS, CORTEX_M_LDFLAGS, ModelSummary, get_target
from mcuflow.errors import McuflowError, OutputError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.outputs import MANIFEST
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.arm import cortex_m_core, find_cross_compiler
from mcuflow.toolchain.host import (
    SANITIZER_FLAGS,
    WARNING_FLAGS,
    build_host,
    random_inputs,
    run_host,
)
from mcuflow.toolchain.qemu import default_board, find_qemu
from mcuflow.toolchain.records import input_records, split_outputs
from tests.child import run_mcuflow
from tests.codegen.test_host_ops import planned
from tests.support import SHARED_MODELS

RUNS = 3
TARGET = "cortex-m4"
MODELS = {"kws_": "kws_ref_model.tflite", "ad_": "ad01_int8.tflite"}
STRICT = " ".join(WARNING_FLAGS)

TWO_MODELS_C = r"""
/* Runs kws_ and ad_ over the records of input.bin: each through invoke_n, then in place. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ad_model.h"
#include "kws_model.h"

int io_open(void);
size_t io_read(void *data, size_t size);
int io_write(const void *data, size_t size);
void io_close(void);

#define RECORD_IN (KWS_INPUT_TOTAL_BYTES + AD_INPUT_TOTAL_BYTES)
#define RECORD_OUT (2 * (KWS_OUTPUT_TOTAL_BYTES + AD_OUTPUT_TOTAL_BYTES))
#define MAX_TENSORS 8

typedef struct {
    int inputs;
    int outputs;
    const size_t *input_bytes;
    const size_t *output_bytes;
    int (*invoke_n)(const void *const inputs[], void *const outputs[]);
    void *(*input)(int index);
    const void *(*output)(int index);
    int (*in_place)(void);
} model_t;

static const size_t kws_in[KWS_INPUT_COUNT] = KWS_INPUT_BYTES_LIST;
static const size_t kws_out[KWS_OUTPUT_COUNT] = KWS_OUTPUT_BYTES_LIST;
static const size_t ad_in[AD_INPUT_COUNT] = AD_INPUT_BYTES_LIST;
static const size_t ad_out[AD_OUTPUT_COUNT] = AD_OUTPUT_BYTES_LIST;
static const model_t kws = {KWS_INPUT_COUNT, KWS_OUTPUT_COUNT, kws_in, kws_out,
                            kws_model_invoke_n, kws_model_input, kws_model_output,
                            kws_model_invoke_in_place};
static const model_t ad = {AD_INPUT_COUNT, AD_OUTPUT_COUNT, ad_in, ad_out, ad_model_invoke_n,
                           ad_model_input, ad_model_output, ad_model_invoke_in_place};
static uint8_t record_in[RECORD_IN];
static uint8_t record_out[RECORD_OUT];
#ifdef AD_EXTERNAL_ARENA
static uint8_t ad_arena[AD_ARENA_BYTES + AD_ARENA_ALIGNMENT] __attribute__((aligned(16)));
#endif

/* Runs `m` on the inputs at `in`: the outputs of invoke_n, then those of the in-place call. */
static int run(const model_t *m, const uint8_t *in, uint8_t *out)
{
    const void *inputs[MAX_TENSORS];
    void *outputs[MAX_TENSORS];
    size_t at = 0;
    int i;
    int status;
    for (i = 0; i < m->inputs; ++i) {
        inputs[i] = in + at;
        at += m->input_bytes[i];
    }
    at = 0;
    for (i = 0; i < m->outputs; ++i) {
        outputs[i] = out + at;
        at += m->output_bytes[i];
    }
    status = m->invoke_n(inputs, outputs);
    if (status != MCUFLOW_OK) {
        return status;
    }
    for (i = 0; i < m->inputs; ++i) {
        memcpy(m->input(i), inputs[i], m->input_bytes[i]);
    }
    status = m->in_place();
    for (i = 0; i < m->outputs && status == MCUFLOW_OK; ++i) {
        memcpy(out + at, m->output(i), m->output_bytes[i]);
        at += m->output_bytes[i];
    }
    return status;
}

/* The API's refusals: bad indices, and with an external arena, running without a good one. */
static int refusals_hold(void)
{
    if (kws_model_input(-1) != NULL || kws_model_input(KWS_INPUT_COUNT) != NULL
        || kws_model_output(KWS_OUTPUT_COUNT) != NULL) {
        return 0;
    }
#ifdef AD_EXTERNAL_ARENA
    {
        const void *inputs[AD_INPUT_COUNT];
        void *outputs[AD_OUTPUT_COUNT];
        int i;
        for (i = 0; i < AD_INPUT_COUNT; ++i) {
            inputs[i] = record_in;
        }
        for (i = 0; i < AD_OUTPUT_COUNT; ++i) {
            outputs[i] = record_out;
        }
        if (ad_model_invoke_in_place() != MCUFLOW_ERROR_ARENA || ad_model_input(0) != NULL
            || ad_model_invoke_n(inputs, outputs) != MCUFLOW_ERROR_ARENA
            || ad_model_set_arena(NULL, sizeof ad_arena) != MCUFLOW_ERROR_NULL
            || ad_model_set_arena(ad_arena + 1, AD_ARENA_BYTES) != MCUFLOW_ERROR_ARENA
            || ad_model_set_arena(ad_arena, AD_ARENA_BYTES - 1) != MCUFLOW_ERROR_ARENA
            || ad_model_invoke_in_place() != MCUFLOW_ERROR_ARENA
            || ad_model_set_arena(ad_arena, AD_ARENA_BYTES) != MCUFLOW_OK) {
            return 0;
        }
        if ((uint8_t *)ad_model_input(0) < ad_arena
            || (uint8_t *)ad_model_input(0) >= ad_arena + AD_ARENA_BYTES) {
            return 0;
        }
    }
#endif
    return 1;
}

int main(void)
{
    int status = 0;
    if (!io_open()) {
        return 2;
    }
    if (!refusals_hold()) {
        status = 4;
    }
    while (status == 0) {
        const size_t got = io_read(record_in, sizeof record_in);
        if (got == 0) {
            break;
        }
        if (got != sizeof record_in) {
            status = 2;
        } else if (run(&kws, record_in, record_out) != MCUFLOW_OK
                   || run(&ad, record_in + KWS_INPUT_TOTAL_BYTES,
                          record_out + 2 * KWS_OUTPUT_TOTAL_BYTES) != MCUFLOW_OK) {
            status = 3;
        } else if (!io_write(record_out, sizeof record_out)) {
            status = 2;
        }
    }
    io_close();
    return status;
}
"""

IO_HOST_C = r"""
/* input.bin and output.bin in the working directory, through stdio. */
#include <stdio.h>

static FILE *in;
static FILE *out;

int io_open(void)
{
    in = fopen("input.bin", "rb");
    out = fopen("output.bin", "wb");
    return in != NULL && out != NULL;
}

size_t io_read(void *data, size_t size)
{
    return fread(data, 1, size, in);
}

int io_write(const void *data, size_t size)
{
    return fwrite(data, 1, size, out) == size;
}

void io_close(void)
{
    fclose(in);
    fclose(out);
}
"""

IO_SEMIHOSTING_C = r"""
/* input.bin and output.bin of QEMU's working directory, through Arm semihosting. */
#include <stddef.h>
#include <stdint.h>

#include "mcuflow_cortexm.h"

static int32_t in;
static int32_t out;

static int32_t open_file(const char *name, uint32_t length, int32_t mode)
{
    const uint32_t block[3] = {(uint32_t)(uintptr_t)name, (uint32_t)mode, length};
    return mcuflow_semihost(MCUFLOW_SYS_OPEN, block);
}

int io_open(void)
{
    in = open_file("input.bin", 9u, MCUFLOW_OPEN_RB);
    out = open_file("output.bin", 10u, MCUFLOW_OPEN_WB);
    return in >= 0 && out >= 0;
}

size_t io_read(void *data, size_t size)
{
    const uint32_t block[3] = {(uint32_t)in, (uint32_t)(uintptr_t)data, (uint32_t)size};
    return size - (size_t)mcuflow_semihost(MCUFLOW_SYS_READ, block);
}

int io_write(const void *data, size_t size)
{
    const uint32_t block[3] = {(uint32_t)out, (uint32_t)(uintptr_t)data, (uint32_t)size};
    return mcuflow_semihost(MCUFLOW_SYS_WRITE, block) == 0;
}

void io_close(void)
{
    const uint32_t first[1] = {(uint32_t)in};
    const uint32_t second[1] = {(uint32_t)out};
    (void)mcuflow_semihost(MCUFLOW_SYS_CLOSE, first);
    (void)mcuflow_semihost(MCUFLOW_SYS_CLOSE, second);
}
"""

MAKEFILE = """
include ad/mcuflow.mk
include kws/mcuflow.mk
INCLUDES = $(KWS_MODEL_INCLUDES) $(AD_MODEL_INCLUDES)
SOURCES = two_models.c $(IO) $(KWS_MODEL_SOURCES) $(AD_MODEL_SOURCES) $(MCUFLOW_KERNEL_SOURCES)

program: $(SOURCES)
\t$(CC) $(CFLAGS) $(INCLUDES) -DAD_EXTERNAL_ARENA -o $@ $(SOURCES) $(LDFLAGS) -lm

kernels:
\t@echo $(MCUFLOW_KERNEL_SOURCES)
"""

CMAKELISTS = """
cmake_minimum_required(VERSION 3.13)
project(two_models C)
set(AD_EXTERNAL_ARENA ON)
add_subdirectory(ad)
add_subdirectory(kws)
add_executable(program two_models.c io_host.c)
set_target_properties(program PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
target_link_libraries(program PRIVATE kws_model ad_model)
get_target_property(kernel_sources mcuflow_kernels SOURCES)
message(STATUS "mcuflow_kernels: ${kernel_sources}")
"""


@dataclass(frozen=True)
class Model:
    """One of the two models: its graph, plan and random inputs."""

    prefix: str
    graph: Graph
    plan: Plan
    inputs: list[np.ndarray]


@functools.cache
def _models(dsp: bool) -> tuple[Model, ...]:
    models = []
    for seed, (prefix, file) in enumerate(MODELS.items()):
        graph = read_tflite(SHARED_MODELS / file)
        models.append(Model(prefix, graph, plan_memory(graph, 0.3, dsp=dsp),
                            random_inputs(graph, RUNS, seed)))
    return tuple(models)


def _program_dir(root: Path, target: str) -> tuple[Path, list[GeneratedProject]]:
    """The two libraries (kernels for `target`) in kws/ and ad/, with the test program."""
    models = _models(get_target(target).dsp)
    libraries = [generate_library(m.graph, m.plan, root / m.prefix.rstrip("_"),
                                  naming=Naming(m.prefix), target=target) for m in models]
    (root / "two_models.c").write_text(TWO_MODELS_C)
    (root / "io_host.c").write_text(IO_HOST_C)
    (root / "Makefile").write_text(MAKEFILE)
    (root / "CMakeLists.txt").write_text(CMAKELISTS)
    return root, libraries


def _specs(libraries: list[GeneratedProject]) -> list[TensorSpec]:
    """The outputs of one record: per model, those of invoke_n then those of the in-place call."""
    return [spec for lib in libraries for spec in (*lib.outputs, *lib.outputs)]


def _assert_exact(output: bytes, libraries: list[GeneratedProject], dsp: bool) -> None:
    actual = split_outputs(output, RUNS, _specs(libraries))
    expected_bytes = []
    for model in _models(dsp):
        interpreter = Interpreter(model.graph)
        runs = [interpreter.run([x[r] for x in model.inputs]).outputs for r in range(RUNS)]
        per_output = [[run[i] for run in runs] for i in range(len(model.graph.outputs))]
        expected_bytes += per_output * 2
    assert len(actual) == len(expected_bytes)
    for got, want in zip(actual, expected_bytes, strict=True):
        for r in range(RUNS):
            assert got[r].tobytes() == np.ascontiguousarray(want[r]).tobytes()


def _records(dsp: bool) -> bytes:
    return input_records([x for m in _models(dsp) for x in m.inputs])


def _run_host(binary: Path, directory: Path) -> bytes:
    (directory / "input.bin").write_bytes(_records(False))
    done = subprocess.run([str(binary)], cwd=directory, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return (directory / "output.bin").read_bytes()


def _make(directory: Path, *variables: str) -> None:
    done = subprocess.run(["make", "-s", *variables], cwd=directory, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def _kernel_names(paths: list[str]) -> list[str]:
    return [Path(p).name for p in paths]


def _kernel_union(libraries: list[GeneratedProject]) -> set[str]:
    """The kernel sources either model needs; kws_ needs some ad_ does not, and one it does."""
    kws, ad = ({Path(f).name for f in lib.files if f.startswith("kernels/") and f.endswith(".c")}
               for lib in libraries)
    assert kws - ad and kws & ad
    return kws | ad


def test_two_libraries_with_make_fragments(tmp_path: Path) -> None:
    root, libraries = _program_dir(tmp_path, "host")
    flags = f"CFLAGS={STRICT} -O1 {' '.join(SANITIZER_FLAGS)}"
    listed = subprocess.run(["make", "-s", "kernels"], cwd=root, capture_output=True, text=True,
                            check=True).stdout.split()
    assert sorted(_kernel_names(listed)) == sorted(_kernel_union(libraries))
    ad_kernels = [f for f in libraries[1].files if f.startswith("kernels/")
                  and f.endswith(".c")]
    assert listed[:len(ad_kernels)] == [f"ad/{f}" for f in ad_kernels]
    assert all(f.startswith("kws/kernels/") for f in listed[len(ad_kernels):])
    _make(root, flags, f"LDFLAGS={' '.join(SANITIZER_FLAGS)}", "IO=io_host.c")
    _assert_exact(_run_host(root / "program", root), libraries, False)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_two_libraries_with_cmake(tmp_path: Path) -> None:
    root, libraries = _program_dir(tmp_path / "src", "host")
    build = tmp_path / "build"
    configured = subprocess.run(["cmake", "-S", str(root), "-B", str(build),
                                 f"-DCMAKE_C_FLAGS={' '.join(WARNING_FLAGS[1:])}"],
                                capture_output=True, text=True, check=True).stdout
    [listed] = re.findall(r"mcuflow_kernels: (\S+)", configured)
    assert sorted(_kernel_names(listed.split(";"))) == sorted(_kernel_union(libraries))
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    _assert_exact(_run_host(build / "program", build), libraries, False)


def _firmware_support(directory: Path) -> list[str]:
    """The Cortex-M target's startup, timing and linker script; the C files to compile."""
    board = default_board(TARGET)
    files = get_target(TARGET).files(ModelSummary("two models", (), 0, 0, board))
    support = {name: text for name, text in files.items() if name != "main.c"
               and name.endswith((".c", ".h", ".ld"))}
    for name, text in support.items():
        (directory / name).write_text(text)
    (directory / "io_semihosting.c").write_text(IO_SEMIHOSTING_C)
    return [*sorted(n for n in support if n.endswith(".c")), "io_semihosting.c"]


def test_two_libraries_in_one_cortex_m4_firmware_on_qemu(tmp_path: Path) -> None:
    find_cross_compiler()
    qemu = find_qemu()
    core = cortex_m_core(TARGET)
    root, libraries = _program_dir(tmp_path, TARGET)
    io = _firmware_support(root)
    flags = " ".join((*core.cpu_flags, *CORTEX_M_CFLAGS, "-Werror", "-DMCUFLOW_SEMIHOSTING=1"))
    _make(root, "CC=arm-none-eabi-gcc", f"CFLAGS={flags}",
          f"LDFLAGS={' '.join(CORTEX_M_LDFLAGS)}", f"IO={' '.join(io)}")
    (root / "input.bin").write_bytes(_records(True))
    done = subprocess.run([qemu, *core.qemu_flags, "-kernel", str(root / "program")], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    _assert_exact((root / "output.bin").read_bytes(), libraries, True)


def test_without_prefix_the_project_keeps_its_names(tmp_path: Path) -> None:
    graph, plan = planned("float_edges", True)
    default = generate_project(graph, plan, tmp_path / "a")
    named = generate_project(graph, plan, tmp_path / "b", naming=Naming("mcuflow_"))
    assert default.files == named.files
    for name in default.files:
        assert (default.path / name).read_bytes() == (named.path / name).read_bytes()


def test_a_prefixed_project_runs_its_driver_unchanged(tmp_path: Path) -> None:
    """The driver includes mcuflow_model.h, which maps its names to those of kws_model.h."""
    graph, plan = planned("float_edges", True)
    project = generate_project(graph, plan, tmp_path / "p", naming=Naming("kws_"))
    assert {"kws_model.h", "kws_model.c", "kws_weights.h", "kws_weights.c",
            "mcuflow_model.h"} <= set(project.files)
    assert "mcuflow_model.c" not in project.files
    header = (project.path / "kws_model.h").read_text()
    assert "#ifndef KWS_MODEL_H" in header and "MCUFLOW_ARENA_BYTES" not in header
    assert "int kws_model_invoke_n(const void *const inputs[], void *const outputs[]);" in header
    binary = build_host(project.path, sanitize=True, opt_level="-O1")
    inputs = random_inputs(graph, 4, seed=2)
    actual = run_host(binary, inputs, project.outputs)
    interpreter = Interpreter(graph)
    for r in range(4):
        for want, got in zip(interpreter.run([x[r] for x in inputs]).outputs, actual,
                             strict=True):
            assert got[r].tobytes() == np.ascontiguousarray(want).tobytes()


def test_every_global_symbol_is_prefixed(tmp_path: Path) -> None:
    graph, plan = planned("residual_and_concat", True)
    library = generate_library(graph, plan, tmp_path / "lib", naming=Naming("ab1_cd_"))
    for source in ("src/ab1_cd_model.c", "src/ab1_cd_weights.c"):
        obj = tmp_path / "model.o"
        subprocess.run(["gcc", *WARNING_FLAGS, "-DAB1_CD_EXTERNAL_ARENA", "-Ilib/include",
                        "-Ilib/kernels", "-c", f"lib/{source}", "-o", str(obj)], cwd=tmp_path,
                       check=True)
        symbols = subprocess.run(["nm", "-g", "--defined-only", str(obj)], capture_output=True,
                                 text=True, check=True).stdout.split("\n")
        names = [line.split()[-1] for line in symbols if line.strip()]
        assert names and all(name.startswith("ab1_cd_") for name in names), names
    text = "\n".join((library.path / f).read_text() for f in library.files
                     if f.startswith(("src/", "include/")))
    assert "mcuflow_model" not in text and "MCUFLOW_ARENA_BYTES" not in text


def _prefix_error(prefix: str) -> str:
    return (f"--prefix {prefix!r} is not a C identifier prefix: lowercase letters, digits and "
            "single underscores, starting with a letter and ending with '_', at most 16 "
            "characters (hint: e.g. --prefix kws_)")


@pytest.mark.parametrize("prefix", ["Kws_", "kws_\n"])
def test_bad_prefixes_are_one_line_cli_errors(prefix: str, tmp_path: Path) -> None:
    done = run_mcuflow(["compile", api.demo_model_path(), "-o", tmp_path / "out", "--prefix",
                        prefix, "--library"])
    done.assert_one_line(_prefix_error(prefix))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("prefix", ["kws", "_kws_", "kws__x_", "9kws_", "k-s_", "", "kws_é_",
                                    "abcdefghijklmnop_", "mcuflow"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(McuflowError) as error:
        Naming(prefix)
    assert str(error.value) == _prefix_error(prefix)


def test_longest_prefix_is_accepted() -> None:
    assert Naming("abcdefghijklmno_").macro("ARENA_BYTES") == "ABCDEFGHIJKLMNO_ARENA_BYTES"
    with pytest.raises(McuflowError, match="at most 16"):
        Naming("abcdefghijklmnop_")


def test_cli_library_is_replaced_as_written_and_keeps_user_files(tmp_path: Path) -> None:
    out = tmp_path / "kws"
    command = ["compile", api.demo_model_path(), "-o", out, "--library", "--prefix", "kws_"]
    assert run_mcuflow(command).code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "CMakeLists.txt", "README.md", "include", "kernels", "mcuflow.mk", MANIFEST,
        "model.tflite", "src"]
    assert [p.name for p in (out / "include").iterdir()] == ["kws_model.h"]
    first = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert run_mcuflow(command).code == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == first
    (out / "src" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"files mcuflow did not write \(src/notes.txt\)"):
        api.compile_model(api.demo_model_path(), out, library=True, prefix="kws_")
    project = api.compile_model(api.demo_model_path(), out, force=True)
    assert (out / "src" / "notes.txt").read_text() == "mine"
    assert not (out / "include").exists() and not (out / "kernels").exists()
    assert "mcuflow_model.h" in project.files


def test_a_linked_folder_is_never_written_through(tmp_path: Path) -> None:
    graph, plan = planned("convolutions", True)
    library = generate_library(graph, plan, tmp_path / "lib", naming=Naming("kws_"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(library.path / "src")
    (library.path / "src").symlink_to(elsewhere)
    with pytest.raises(OutputError, match=r"did not write \(src\)"):
        generate_library(graph, plan, library.path, naming=Naming("kws_"))
    with pytest.raises(OutputError, match="is not a folder"):
        generate_library(graph, plan, library.path, naming=Naming("kws_"), force=True)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("name", ["/etc/passwd", "src/../../x", "src//a.c", "./a.c", "src\\a.c",
                                  "src", "src/"])
def test_a_manifest_with_unsafe_paths_is_not_trusted(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "src").mkdir(parents=True)
    (out / "src" / "a.c").write_text("user code")
    listed = {name: "0" * 64, "src/a.c": "0" * 64}
    (out / MANIFEST).write_text(json.dumps({"format": outputs.MANIFEST_FORMAT, "files": listed}))
    graph, plan = planned("convolutions", True)
    with pytest.raises(OutputError, match="is not an mcuflow library"):
        generate_library(graph, plan, out, naming=Naming("kws_"), force=True)
    assert (out / "src" / "a.c").read_text() == "user code"
    with pytest.raises(ValueError, match="relative paths"):
        outputs.write_directory({name: b"x", "src/a.c": b"y"}, tmp_path / "other")
