"""generate_project: a self-contained C project for a planned graph, written atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mcuflow.codegen.context import CodegenError
from mcuflow.codegen.emit_dsp import DSP_HEADER, uses_dsp
from mcuflow.codegen.render import TensorSpec, render_model, render_readme
from mcuflow.codegen.targets import ModelSummary, get_target
from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan

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


def kernel_source(stem: str) -> str:
    """The text of a kernel file of codegen/kernels (e.g. 'mcuflow_conv.c')."""
    return resources.files("mcuflow.codegen").joinpath("kernels", stem).read_text("ascii")


def render_project(graph: Graph, plan: Plan, target: str = "host", board: Board | None = None,
                   dsp: bool | None = None) -> tuple[dict[str, str], GeneratedProject]:
    """Every file of the project (name -> text) and its description (path left empty).

    `board` sizes the memories of targets that have a linker script (the Cortex-M targets).
    `dsp` chooses the Arm DSP kernels (default: when the target's core has the extension; on
    other machines they run on exact C emulations of the instructions).
    """
    if plan.graph is not graph and len(plan.graph.operators) != len(graph.operators):
        raise CodegenError("the plan was made for another graph")
    check_supported(graph)
    chosen = get_target(target)
    model = render_model(graph, plan, chosen.dsp if dsp is None else dsp)
    files = dict(model.files)
    files[COMMON_HEADER] = kernel_source(COMMON_HEADER)
    if uses_dsp(set(model.kernels)):
        files[DSP_HEADER] = kernel_source(DSP_HEADER)
    for stem in model.kernels:
        files[f"{stem}.c"] = kernel_source(f"{stem}.c")
    sources = tuple(sorted(n for n in files if n.endswith(".c")))
    summary = ModelSummary(graph.name, sources, plan.arena_bytes, model.weight_bytes, board)
    files.update(chosen.files(summary))
    files["README.md"] = render_readme(graph, chosen, model, plan.arena_bytes,
                                       sorted([*files, "README.md"]))
    project = GeneratedProject(Path(), tuple(sorted(files)), plan.arena_bytes,
                               model.weight_bytes, tuple(model.inputs), tuple(model.outputs),
                               target)
    return files, project


def generate_project(graph: Graph, plan: Plan, out_dir: Path, *, target: str = "host",
                     board: Board | None = None, dsp: bool | None = None,
                     source_model: bytes | None = None) -> GeneratedProject:
    """Write the C project of `plan` to `out_dir`, atomically.

    The files are written to a temporary sibling directory which is renamed at the end, so an
    error never leaves a half-written `out_dir`. An existing `out_dir` is replaced only when it
    is empty or an earlier mcuflow project. `source_model` (the int8 .tflite the C was made
    from) is kept as SOURCE_MODEL so the directory can be verified later.
    """
    files, project = render_project(graph, plan, target, board, dsp)
    stored: dict[str, str | bytes] = dict(files)
    if source_model is not None:
        stored[SOURCE_MODEL] = source_model
    out_dir = Path(out_dir).absolute()
    write_atomically(stored, out_dir)
    return GeneratedProject(out_dir, tuple(sorted(stored)), project.arena_bytes,
                            project.weight_bytes, project.inputs, project.outputs,
                            project.target)


def _replaceable(path: Path) -> bool:
    return path.is_dir() and (not any(path.iterdir()) or (path / MARKER).is_file())


def write_atomically(files: Mapping[str, str | bytes], out_dir: Path) -> None:
    """Write `files` (name -> ASCII text or bytes) as the directory `out_dir`, all or nothing."""
    if out_dir.exists() and not _replaceable(out_dir):
        raise McuflowError(f"'{out_dir}' exists and is not an mcuflow project",
                           "choose a new output directory or remove this one")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp",
                                    dir=out_dir.parent))
    try:
        for name in sorted(files):
            data = files[name]
            (staging / name).write_bytes(data if isinstance(data, bytes) else data.encode("ascii"))
        staging.chmod(0o755)
        _swap_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    """Rename `staging` to `out_dir`, moving an old `out_dir` aside and deleting it after."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    retired = staging.with_suffix(".old")
    os.rename(out_dir, retired)
    os.rename(staging, out_dir)
    shutil.rmtree(retired, ignore_errors=True)
