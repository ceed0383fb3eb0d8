"""Build targets: the files around the generated model (driver, build scripts, startup, linker).

Every target shares the same model sources (mcuflow_model.c, mcuflow_weights.c, the kernels);
a target only adds its own driver and build files. Cortex-M targets register themselves here with
a main using semihosting, a startup file and a linker script.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from mcuflow.errors import McuflowError


@dataclass(frozen=True)
class ModelSummary:
    """What a target needs to know about the generated model."""

    name: str
    model_sources: tuple[str, ...]
    arena_bytes: int
    weight_bytes: int


@dataclass(frozen=True)
class Target:
    """A named target.

    `files` returns its extra files (name -> text); `build` is the README's build instructions.
    """

    name: str
    description: str
    files: Callable[[ModelSummary], dict[str, str]]
    build: str


TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> Target:
    """Make a target available to `generate_project(..., target=name)`."""
    TARGETS[target.name] = target
    return target


def get_target(name: str) -> Target:
    """The registered target called `name`."""
    if name not in TARGETS:
        raise McuflowError(f"unknown target '{name}'",
                           f"known targets: {', '.join(sorted(TARGETS))}")
    return TARGETS[name]


def template(target: str, name: str) -> str:
    """The text of template file `name` of `target` (codegen/templates/<target>/<name>)."""
    return resources.files("mcuflow.codegen").joinpath("templates", target, name).read_text("ascii")


def fill(text: str, values: dict[str, str]) -> str:
    """Replace every @KEY@ of `text` by its value."""
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def _host_files(model: ModelSummary) -> dict[str, str]:
    sources = " ".join(model.model_sources)
    return {
        "main.c": template("host", "main.c"),
        "Makefile": fill(template("host", "Makefile"), {"MODEL_SOURCES": sources}),
        "CMakeLists.txt": fill(template("host", "CMakeLists.txt"), {"MODEL_SOURCES": sources}),
    }


HOST = register_target(Target(
    name="host",
    description="the machine running mcuflow (gcc or clang), for testing and benchmarking",
    files=_host_files,
    build=(
        "```sh\nmake                      # or: cmake -B build && cmake --build build\n"
        "./model input.bin output.bin   # raw bytes: one record per inference\n"
        "./model --bench 100 input.bin  # time per inference\n```"
    ),
))
