"""Library output: one model's C as include/, src/ and kernels/, with CMake and make glue."""

from __future__ import annotations

from pathlib import Path

from mcuflow.codegen.names import Naming, c_comment
from mcuflow.codegen.project import (
    SOURCE_MODEL,
    GeneratedProject,
    kernel_files,
    kernels_id,
    render_sources,
)
from mcuflow.codegen.render import KERNELS_HEADER, ModelSources, invoke_call, io_table
from mcuflow.codegen.targets import fill, template
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan
from mcuflow.outputs import MANIFEST, write_directory

INCLUDE_DIR = "include"
SOURCE_DIR = "src"
KERNEL_DIR = "kernels"
CMAKE_FILE = "CMakeLists.txt"
MAKE_FRAGMENT = "mcuflow.mk"
README = "README.md"


def render_library(graph: Graph, plan: Plan, naming: Naming, target: str = "host",
                   dsp: bool | None = None) -> tuple[dict[str, str], GeneratedProject]:
    """Every file of the library (relative path -> text) and its description (path left empty).

    include/ holds the model's public header, src/ its sources and private headers (with the
    KERNELS_HEADER of the kernels it calls), kernels/ the kernel files it calls (identical in
    every library this mcuflow generates).
    `target` chooses the kernels (the Arm DSP ones on a core with the extension) unless `dsp`
    says otherwise; the target's driver and build files are not part of a library.
    """
    model = render_sources(graph, plan, target, dsp, naming)
    public = naming.file("model.h")
    kernels = kernel_files(model.kernels)
    private = {**model.files, KERNELS_HEADER: kernels.pop(KERNELS_HEADER)}
    files = {f"{INCLUDE_DIR}/{public}": private.pop(public)}
    files |= {f"{SOURCE_DIR}/{name}": text for name, text in private.items()}
    files |= {f"{KERNEL_DIR}/{name}": text for name, text in kernels.items()}
    values = {
        "PREFIX": naming.prefix, "MACRO": naming.macro(""), "KERNELS_ID": kernels_id(),
        "KERNEL_SOURCES": " ".join(sorted(n for n in kernels if n.endswith(".c"))),
        "MODEL_SOURCES": " ".join(sorted(n for n in files if n.startswith(f"{SOURCE_DIR}/")
                                         and n.endswith(".c"))),
    }
    files[CMAKE_FILE] = fill(template("library", CMAKE_FILE), values)
    files[MAKE_FRAGMENT] = fill(template("library", MAKE_FRAGMENT), values)
    files[README] = render_library_readme(graph, target, model, plan.arena_bytes)
    library = GeneratedProject(Path(), tuple(sorted(files)), plan.arena_bytes, model.weight_bytes,
                               tuple(model.inputs), tuple(model.outputs), target, model.steps)
    return files, library


def generate_library(graph: Graph, plan: Plan, out_dir: Path, *, naming: Naming,
                     target: str = "host", dsp: bool | None = None,
                     source_model: bytes | None = None, force: bool = False
                     ) -> GeneratedProject:
    """Write the library of `plan` to `out_dir`, atomically (see outputs.write_directory).

    An existing `out_dir` is replaced as generate_project replaces one; `source_model` is kept
    as SOURCE_MODEL.
    """
    files, library = render_library(graph, plan, naming, target, dsp)
    stored: dict[str, str | bytes] = dict(files)
    if source_model is not None:
        stored[SOURCE_MODEL] = source_model
    path = write_directory(stored, out_dir, what="library", force=force)
    return GeneratedProject(path, tuple(sorted([*stored, MANIFEST])), library.arena_bytes,
                            library.weight_bytes, library.inputs, library.outputs, target,
                            library.steps)


def render_library_readme(graph: Graph, target: str, model: ModelSources, arena_bytes: int
                          ) -> str:
    """README.md of a library: its layout, its API, and how to build one or several models."""
    n = model.naming
    header, lib, macro = n.file("model.h"), n.symbol("model"), n.macro("")
    lines = [
        f"# {c_comment(graph.name)}: C library `{lib}` (mcuflow, kernels for `{target}`)",
        "",
        "Plain C99, no dynamic memory, no interpreter: every shape, offset and requantisation",
        f"constant is fixed at generation time. Every name of this model starts with `{n.prefix}`",
        f"or `{macro}`, so several mcuflow models link into one firmware.",
        "",
        f"- RAM: one arena of {arena_bytes} bytes (`{n.macro('ARENA_BYTES')}`), static unless "
        f"built with `-D{n.macro('EXTERNAL_ARENA')}`.",
        f"- Flash: {model.weight_bytes} bytes of constant data (`{n.macro('WEIGHT_BYTES')}`) "
        "plus code.",
        "",
        *io_table(model),
        "",
        "## Layout",
        "",
        f"- `{INCLUDE_DIR}/{header}`: the public API (the only header your code includes).",
        f"- `{SOURCE_DIR}/`: the model's sources, its private weights header and "
        f"`{KERNELS_HEADER}`",
        "  (the declarations of the kernels it calls).",
        f"- `{KERNEL_DIR}/`: the kernels this model calls, named `mcuflow_*`. They are the same",
        "  files in every library made by the same mcuflow version, and are shared by the",
        "  models of a firmware: compile each kernel file once.",
        f"- `{CMAKE_FILE}`: the CMake target `{lib}`, linking the shared target `mcuflow_kernels`.",
        f"- `{MAKE_FRAGMENT}`: a Makefile fragment defining `{macro}MODEL_SOURCES`, "
        f"`{macro}MODEL_INCLUDES` (`-I` flags)",
        "  and appending to `MCUFLOW_KERNEL_SOURCES` the kernel files not already in it.",
        "",
        "## API",
        "",
        "```c",
        f'#include "{header}"',
        "",
        f"int status = {invoke_call(model)};  /* MCUFLOW_OK (0) on success */",
        "",
        "/* zero copy: the inputs are written and the outputs read in the arena itself */",
        f"memcpy({n.symbol('model_input')}(0), features, {n.macro('INPUT_0_BYTES')});",
        f"status = {n.symbol('model_invoke_in_place')}();",
        f"const void *scores = {n.symbol('model_output')}(0);  /* valid until the next input "
        "write or run */",
        "```",
        "",
        "Inputs and outputs are row-major; int8 values use the scale and zero point above",
        "(real = scale * (q - zero_point)). The calls are not reentrant (one arena).",
        f"With `-D{n.macro('EXTERNAL_ARENA')}` (on the model's sources and on every file that",
        f"includes `{header}`) the model has no static arena: call",
        f"`{n.symbol('model_set_arena')}(arena, bytes)` first, with at least "
        f"`{n.macro('ARENA_BYTES')}` bytes aligned to",
        f"`{n.macro('ARENA_ALIGNMENT')}`. Models that never run at the same time may share one "
        "arena. See the",
        "header for every macro and return code.",
        "",
        *_integration(n),
    ]
    return "\n".join(lines)


def _integration(n: Naming) -> list[str]:
    lib, macro = n.symbol("model"), n.macro("")
    return [
        "## One model",
        "",
        "CMake:",
        "",
        "```cmake",
        f"add_subdirectory(path/to/{lib})",
        f"target_link_libraries(firmware PRIVATE {lib})",
        f"# optional: set({macro}EXTERNAL_ARENA ON) before add_subdirectory",
        "```",
        "",
        "make:",
        "",
        "```make",
        f"include path/to/{lib}/{MAKE_FRAGMENT}",
        f"CFLAGS += $({macro}MODEL_INCLUDES)",
        f"firmware.elf: main.c $({macro}MODEL_SOURCES) $(MCUFLOW_KERNEL_SOURCES)",
        "\t$(CC) $(CFLAGS) -o $@ $^ -lm",
        "```",
        "",
        "Any other build: compile the `.c` files of `src/` and `kernels/` as C99 with",
        "`-Iinclude -Ikernels`, and link with the maths library (`-lm`).",
        "",
        "## Several models",
        "",
        "Generate each model with its own prefix (`mcuflow compile kws.tflite -o kws --library",
        "--prefix kws_`, `... -o ad --library --prefix ad_`) and the same mcuflow version, then",
        "add every library:",
        "",
        "```cmake",
        "add_subdirectory(kws)",
        "add_subdirectory(ad)",
        "target_link_libraries(firmware PRIVATE kws_model ad_model)",
        "```",
        "",
        "```make",
        "include kws/mcuflow.mk",
        "include ad/mcuflow.mk",
        "CFLAGS += $(KWS_MODEL_INCLUDES) $(AD_MODEL_INCLUDES)",
        "firmware.elf: main.c $(KWS_MODEL_SOURCES) $(AD_MODEL_SOURCES) $(MCUFLOW_KERNEL_SOURCES)",
        "```",
        "",
        "The first library creates the `mcuflow_kernels` target (make: starts",
        "`MCUFLOW_KERNEL_SOURCES`); each later one adds only the kernel files not yet there, so",
        "the union of the kernels the models need is compiled exactly once. Both refuse, with",
        "an error, libraries whose kernels come from another mcuflow version. The error codes",
        "(`MCUFLOW_OK`, `MCUFLOW_ERROR_*`) are shared by every model.",
        "",
    ]
