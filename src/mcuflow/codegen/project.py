"""generate_project: a self-contained C project for a planned graph, written atomically."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mcuflow.codegen.context import CodegenError, StepKernels
from mcuflow.codegen.emit_dsp import DSP_HEADER, DSP_SUFFIX, uses_dsp
from mcuflow.codegen.external import IMAGE_FILE, ExternalLayout
from mcuflow.codegen.external_crypto import CRYPTO_FILES
from mcuflow.codegen.firmware import QEMU_SEMIHOSTING, Firmware, xip_region
from mcuflow.codegen.names import DEFAULT_PREFIX, Naming
from mcuflow.codegen.render import (
    COMMON_HEADER,
    DEFAULT_NAMING,
    KERNELS_HEADER,
    STORAGE_HEADER,
    ModelSources,
    TensorSpec,
    render_driver_header,
    render_model,
    render_readme,
    spills_to_storage,
)
from mcuflow.codegen.targets import ModelSummary, get_target, template
from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board
from mcuflow.hw.memory_map import MemoryRegion
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan
from mcuflow.outputs import MANIFEST, write_directory

INTERFACE_BEGIN = "/* mcuflow:interface */"
INTERFACE_END = "/* mcuflow:end-interface */"
_KERNELS_BANNER = f"""\
/* The mcuflow kernels of this project: the interface blocks of their sources, gathered by
 * mcuflow (what several kernel files share is in {COMMON_HEADER}). */
#ifndef MCUFLOW_KERNELS_H
#define MCUFLOW_KERNELS_H"""
MARKER = "mcuflow_model.h"
SOURCE_MODEL = "model.tflite"
STORAGE_SYNC = ("mcuflow_storage_sync.c", "mcuflow_storage_sync.h")
"""What the shipped storage implementations share: the synchronous begin/wait and counters."""
STORAGE_SOURCES = {"host": "mcuflow_storage_file.c", "cortex-m": "mcuflow_storage_semihosting.c"}
"""The storage implementation each kind of target ships (templates/<kind>/<file>)."""
XIP_SOURCE = "mcuflow_storage_xip.c"
"""What a Cortex-M target ships instead when the image sits in a memory-mapped window."""
KEY_SOURCES = {"host": "mcuflow_key_file.c", "cortex-m": "mcuflow_key_semihosting.c"}
"""The test implementation of mcuflow_external_key() each kind of target ships (encrypted)."""


@dataclass(frozen=True)
class GeneratedProject:
    """A generated C project: its directory, files (relative names), memory and I/O."""

    path: Path
    files: tuple[str, ...]
    arena_bytes: int
    weight_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    target: str
    steps: tuple[StepKernels, ...] = ()
    """Per planned step, the kernels it calls (and why portable on a DSP core)."""
    external: ExternalLayout | None = None
    """The layout of the external weights image (None: every constant in flash)."""
    external_image: bytes = field(default=b"", repr=False)
    """The bytes of IMAGE_FILE, written beside the sources (empty without external weights)."""


def kernel_source(stem: str) -> str:
    """The text of a kernel file of codegen/kernels (e.g. 'mcuflow_conv.c')."""
    return resources.files("mcuflow.codegen").joinpath("kernels", stem).read_text("ascii")


def _marker_line(name: str, lines: list[str], marker: str) -> int:
    """The index of the one line of `lines` that is `marker`, or CodegenError."""
    found = [i for i, line in enumerate(lines) if marker in line]
    if len(found) != 1:
        raise CodegenError(f"kernel file {name}: {len(found)} lines hold the marker "
                           f"'{marker}', exactly one must")
    if lines[found[0]].strip() != marker:
        raise CodegenError(f"kernel file {name}, line {found[0] + 1}: the marker '{marker}' "
                           "must stand alone on its line")
    return found[0]


def interface_block(name: str, text: str) -> str:
    """The interface block of portable kernel file `name`: its structs and prototypes.

    The lines between INTERFACE_BEGIN and INTERFACE_END, which must come after the file's
    `#include "COMMON_HEADER"`; a missing, repeated or misplaced marker or an empty block
    raises CodegenError naming the file.
    """
    lines = text.split("\n")
    begin = _marker_line(name, lines, INTERFACE_BEGIN)
    end = _marker_line(name, lines, INTERFACE_END)
    if end < begin:
        raise CodegenError(f"kernel file {name}: '{INTERFACE_END}' (line {end + 1}) comes "
                           f"before '{INTERFACE_BEGIN}' (line {begin + 1})")
    if f'#include "{COMMON_HEADER}"' not in lines[:begin]:
        raise CodegenError(f"kernel file {name}: its interface block must follow "
                           f'#include "{COMMON_HEADER}"')
    block = "\n".join(lines[begin + 1:end]).strip("\n")
    if not block.strip():
        raise CodegenError(f"kernel file {name}: its interface block declares nothing")
    return block


def _interface_section(stem: str) -> str:
    """The interface block of kernel `stem`, under a comment naming its file."""
    name = f"{stem}.c"
    return f"/* ---- {name} ---- */\n\n{interface_block(name, kernel_source(name))}"


def kernels_header(kernels: Iterable[str]) -> str:
    """KERNELS_HEADER declaring exactly the portable kernels of `kernels` (stems).

    Include guard, COMMON_HEADER, then the interface block of each portable kernel file in
    name order; the DSP kernels (stems ending in DSP_SUFFIX) are declared by DSP_HEADER.
    """
    portable = sorted({stem for stem in kernels if not stem.endswith(DSP_SUFFIX)})
    return "\n\n".join([_KERNELS_BANNER, f'#include "{COMMON_HEADER}"',
                        *map(_interface_section, portable), "#endif /* MCUFLOW_KERNELS_H */\n"])


def kernel_files(kernels: list[str]) -> dict[str, str]:
    """The kernel headers and the sources of `kernels` (stems), by file name."""
    files = {COMMON_HEADER: kernel_source(COMMON_HEADER), KERNELS_HEADER: kernels_header(kernels)}
    if uses_dsp(set(kernels)):
        files[DSP_HEADER] = kernel_source(DSP_HEADER)
    files.update({f"{stem}.c": kernel_source(f"{stem}.c") for stem in kernels})
    return files


def kernels_id() -> str:
    """A digest of every kernel file of this mcuflow: equal ids mean identical kernels."""
    digest = hashlib.sha256()
    for path in sorted(resources.files("mcuflow.codegen").joinpath("kernels").iterdir(),
                       key=lambda p: p.name):
        if path.name.endswith((".c", ".h")):
            digest.update(f"{path.name}\0".encode() + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def storage_files(target: str, encrypted: bool = False, xip: MemoryRegion | None = None,
                  erase_block: int = 0) -> dict[str, str]:
    """STORAGE_HEADER and the storage implementation `target` ships, with STORAGE_SYNC.

    A file read with stdio (host) or semihosting (Cortex-M), or on a Cortex-M target with an
    `xip` window, XIP_SOURCE reading that window. With `encrypted`, the AES-128, CTR and CMAC
    sources (CRYPTO_FILES) and the key hook's test implementation (KEY_SOURCES) too. A nonzero
    `erase_block` (a spill to NOR flash) makes the file emulate a NOR flash of that erase block.
    """
    kind = "host" if target == "host" else "cortex-m"
    files = {name: template("common", name) for name in (STORAGE_HEADER, *STORAGE_SYNC)}
    if xip is None or kind == "host":
        nor = ("/* Spilled activations go to NOR flash (generated by mcuflow): the file "
               "emulates its erases. */\n#define MCUFLOW_STORAGE_NOR 1\n"
               f"#define MCUFLOW_STORAGE_ERASE_BLOCK {erase_block}u\n" if erase_block else "")
        files[STORAGE_SOURCES[kind]] = nor + template(kind, STORAGE_SOURCES[kind])
    else:
        files[XIP_SOURCE] = xip_source(xip)
    if encrypted:
        files |= {crypto: template("common", crypto) for crypto in CRYPTO_FILES}
        files[KEY_SOURCES[kind]] = template(kind, KEY_SOURCES[kind])
    return files


def xip_source(window: MemoryRegion) -> str:
    """XIP_SOURCE with the window's base and size defined above the template's checks."""
    return (f"/* The {window.name} window the image is programmed at (generated by mcuflow). */\n"
            f"#define MCUFLOW_XIP_BASE 0x{window.origin:08X}u\n"
            f"#define MCUFLOW_XIP_BYTES {window.size_bytes}u\n"
            + template("cortex-m", XIP_SOURCE))


def storage_window(target: str, board: Board | None, firmware: Firmware,
                   model: ModelSources) -> MemoryRegion | None:
    """The memory-mapped window a Cortex-M model's image is read from (xip_region), or None.

    McuflowError when the image does not fit in the window.
    """
    if model.external is None or target == "host":
        return None
    window = xip_region(board, firmware, model.external.tier)
    if window is not None and len(model.external_image) > window.size_bytes:
        raise McuflowError(f"the external image ({len(model.external_image)} bytes) does not "
                           f"fit the {window.name} window ({window.size_bytes} bytes)",
                           "move fewer layers to external storage")
    return window


def storage_readme(target: str, window: MemoryRegion | None) -> str:
    """The README's sentences on the storage implementation shipped and what the user does."""
    if window is not None:
        setup = f" and set up {window.needs_init}" if window.needs_init else ""
        return (f"The project ships `{XIP_SOURCE}`, which copies each chunk from the image "
                f"mapped at 0x{window.origin:08X} ({window.name}): program `{IMAGE_FILE}` at "
                f"that address with your flash tool's external loader{setup} before the first "
                "inference.")
    name = STORAGE_SOURCES["host" if target == "host" else "cortex-m"]
    return (f"The project ships `{name}`, which reads the image as a file (stdio on the host, "
            "semihosting under QEMU or a debugger). On a board, put the file on the storage "
            f"(SD card, SPI flash) and replace `{name}` by your implementation of "
            f"`{STORAGE_HEADER}`.")


def render_sources(graph: Graph, plan: Plan, target: str, dsp: bool | None, naming: Naming,
                   external_key: bytes | None = None) -> ModelSources:
    """The model's C files for `target`, after checking that the plan and the ops fit.

    `graph` is rendered as the plan lays it out, unless the plan runs a rewrite of it (a patch
    stage, a streamed input, split layers): then the plan's own graph, with the same inputs and
    outputs.
    """
    rewritten = plan.rewrites_model
    executed = plan.graph if rewritten else graph
    if not rewritten and len(plan.graph.operators) != len(graph.operators) or (
            executed.inputs, executed.outputs) != (graph.inputs, graph.outputs):
        raise CodegenError("the plan was made for another graph")
    check_supported(executed)
    chosen = get_target(target)
    return render_model(executed, plan, chosen.dsp if dsp is None else dsp, naming,
                        external_key)


def render_project(graph: Graph, plan: Plan, target: str = "host", board: Board | None = None,
                   dsp: bool | None = None, firmware: Firmware = QEMU_SEMIHOSTING,
                   naming: Naming = DEFAULT_NAMING, external_key: bytes | None = None
                   ) -> tuple[dict[str, str], GeneratedProject]:
    """Every file of the project (name -> text) and its description (path left empty).

    `board` sizes the memories of targets that have a linker script (the Cortex-M targets).
    `dsp` chooses the Arm DSP kernels (default: when the target's core has the extension; on
    other machines they run on exact C emulations of the instructions). `firmware` is the
    Cortex-M application and address map. `naming` names the model's files and symbols; with
    another prefix than `mcuflow_`, MARKER is a generated header mapping the names the drivers
    use to the model's. `external_key` (16 bytes) encrypts an encrypted plan's external image.
    """
    model = render_sources(graph, plan, target, dsp, naming, external_key)
    chosen = get_target(target)
    files = {**model.files, **kernel_files(model.kernels)}
    window = storage_window(target, board, firmware, model)
    if model.external is not None or spills_to_storage(plan) or plan.spill_encrypted:
        files |= storage_files(target, plan.spill_encrypted or (
            model.external is not None and model.external.encrypted), window,
            model.spill_region.erase_block if model.spill_region else 0)
    sources = tuple(sorted(n for n in files if n.endswith(".c")))
    if not naming.is_default:
        files[MARKER] = render_driver_header(graph, model)
    summary = ModelSummary(graph.name, sources, plan.arena_bytes, model.weight_bytes, board,
                           firmware, model.spill_ram)
    files.update(chosen.files(summary))
    model_files = [name for name in sorted([*files, "README.md"])
                   if name.startswith((DEFAULT_PREFIX, naming.prefix))
                   and not (name == MARKER and not naming.is_default)]
    files["README.md"] = render_readme(graph, chosen, model, plan.arena_bytes, model_files,
                                       storage_readme(target, window))
    project = GeneratedProject(Path(), tuple(sorted(files)), plan.arena_bytes,
                               model.weight_bytes, tuple(model.inputs), tuple(model.outputs),
                               target, model.steps, model.external, model.external_image)
    return files, project


def generate_project(graph: Graph, plan: Plan, out_dir: Path, *, target: str = "host",
                     board: Board | None = None, dsp: bool | None = None,
                     source_model: bytes | None = None, force: bool = False,
                     firmware: Firmware = QEMU_SEMIHOSTING, naming: Naming = DEFAULT_NAMING,
                     external_key: bytes | None = None) -> GeneratedProject:
    """Write the C project of `plan` to `out_dir`, atomically (see outputs.write_directory).

    An existing `out_dir` is replaced only when it is empty or holds exactly what an earlier
    mcuflow run wrote there (its manifest says which files); with `force` only those files are
    replaced. `source_model` (the int8 .tflite the C was made from) is kept as SOURCE_MODEL so
    the directory can be verified later. `naming` prefixes the model's files and symbols. A
    plan with external weights also gets IMAGE_FILE, the image its storage reads, encrypted
    with `external_key` when the plan's ExternalWeights say so (the key is written nowhere).
    """
    files, project = render_project(graph, plan, target, board, dsp, firmware, naming,
                                    external_key)
    stored: dict[str, str | bytes] = dict(files)
    if source_model is not None:
        stored[SOURCE_MODEL] = source_model
    if project.external is not None:
        stored[IMAGE_FILE] = project.external_image
    path = write_directory(stored, out_dir, build_products=get_target(target).build_products,
                           force=force)
    return GeneratedProject(path, tuple(sorted([*stored, MANIFEST])), project.arena_bytes,
                            project.weight_bytes, project.inputs, project.outputs,
                            project.target, project.steps, project.external,
                            project.external_image)
