"""generate_project: a self-contained C project for a planned graph, written atomically."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mcuflow.codegen.context import CodegenError, StepKernels
from mcuflow.codegen.emit_dsp import DSP_HEADER, uses_dsp
from mcuflow.codegen.firmware import QEMU_SEMIHOSTING, Firmware
from mcuflow.codegen.names import DEFAULT_PREFIX, Naming
from mcuflow.codegen.render import (
    DEFAULT_NAMING,
    ModelSources,
    TensorSpec,
    render_driver_header,
    render_model,
    render_readme,
)
from mcuflow.codegen.targets import ModelSummary, get_target
from mcuflow.hw.board import Board
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan
from mcuflow.outputs import MANIFEST, write_directory

COMMON_HEADER = "mcuflow_kernels.h"
MARKER = "mcuflow_model.h"
SOURCE_MODEL = "model.tflite"


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


def kernel_source(stem: str) -> str:
    """The text of a kernel file of codegen/kernels (e.g. 'mcuflow_conv.c')."""
    return resources.files("mcuflow.codegen").joinpath("kernels", stem).read_text("ascii")


def kernel_files(kernels: list[str]) -> dict[str, str]:
    """The kernel headers and the sources of `kernels` (stems), by file name."""
    files = {COMMON_HEADER: kernel_source(COMMON_HEADER)}
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


def render_sources(graph: Graph, plan: Plan, target: str, dsp: bool | None, naming: Naming
                   ) -> ModelSources:
    """The model's C files for `target`, after checking that the plan and the ops fit."""
    if plan.graph is not graph and len(plan.graph.operators) != len(graph.operators):
        raise CodegenError("the plan was made for another graph")
    check_supported(graph)
    chosen = get_target(target)
    return render_model(graph, plan, chosen.dsp if dsp is None else dsp, naming)


def render_project(graph: Graph, plan: Plan, target: str = "host", board: Board | None = None,
                   dsp: bool | None = None, firmware: Firmware = QEMU_SEMIHOSTING,
                   naming: Naming = DEFAULT_NAMING) -> tuple[dict[str, str], GeneratedProject]:
    """Every file of the project (name -> text) and its description (path left empty).

    `board` sizes the memories of targets that have a linker script (the Cortex-M targets).
    `dsp` chooses the Arm DSP kernels (default: when the target's core has the extension; on
    other machines they run on exact C emulations of the instructions). `firmware` is the
    Cortex-M application and address map. `naming` names the model's files and symbols; with
    another prefix than `mcuflow_`, MARKER is a generated header mapping the names the drivers
    use to the model's.
    """
    model = render_sources(graph, plan, target, dsp, naming)
    chosen = get_target(target)
    files = {**model.files, **kernel_files(model.kernels)}
    sources = tuple(sorted(n for n in files if n.endswith(".c")))
    if not naming.is_default:
        files[MARKER] = render_driver_header(graph, model)
    summary = ModelSummary(graph.name, sources, plan.arena_bytes, model.weight_bytes, board,
                           firmware)
    files.update(chosen.files(summary))
    model_files = [name for name in sorted([*files, "README.md"])
                   if name.startswith((DEFAULT_PREFIX, naming.prefix))
                   and not (name == MARKER and not naming.is_default)]
    files["README.md"] = render_readme(graph, chosen, model, plan.arena_bytes, model_files)
    project = GeneratedProject(Path(), tuple(sorted(files)), plan.arena_bytes,
                               model.weight_bytes, tuple(model.inputs), tuple(model.outputs),
                               target, model.steps)
    return files, project


def generate_project(graph: Graph, plan: Plan, out_dir: Path, *, target: str = "host",
                     board: Board | None = None, dsp: bool | None = None,
                     source_model: bytes | None = None, force: bool = False,
                     firmware: Firmware = QEMU_SEMIHOSTING, naming: Naming = DEFAULT_NAMING
                     ) -> GeneratedProject:
    """Write the C project of `plan` to `out_dir`, atomically (see outputs.write_directory).

    An existing `out_dir` is replaced only when it is empty or holds exactly what an earlier
    mcuflow run wrote there (its manifest says which files); with `force` only those files are
    replaced. `source_model` (the int8 .tflite the C was made from) is kept as SOURCE_MODEL so
    the directory can be verified later. `naming` prefixes the model's files and symbols.
    """
    files, project = render_project(graph, plan, target, board, dsp, firmware, naming)
    stored: dict[str, str | bytes] = dict(files)
    if source_model is not None:
        stored[SOURCE_MODEL] = source_model
    path = write_directory(stored, out_dir, build_products=get_target(target).build_products,
                           force=force)
    return GeneratedProject(path, tuple(sorted([*stored, MANIFEST])), project.arena_bytes,
                            project.weight_bytes, project.inputs, project.outputs,
                            project.target, project.steps)
