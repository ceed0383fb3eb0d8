"""The fuzzer's compile stage: rendered C checked as text, now and then built and run bit-exact.

Model-derived text may reach the C only inside comments, in sanitised constant names
(`mcuflow_c<N>_<a-z0-9_>`) and in the MCUFLOW_MODEL_NAME string literal. Every other
identifier and string literal must be one that mcuflow itself writes: the kernels' own, or one
rendered for the built seed models (digits aside, so layer and tensor numbers may differ).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from mcuflow.codegen.names import MAX_IDENTIFIER_CHARS, c_string
from mcuflow.codegen.project import generate_project, render_project
from mcuflow.errors import ToolchainError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.ir.graph import Graph
from mcuflow.memory.placement import plan_for_order
from mcuflow.memory.plan import Plan
from mcuflow.memory.schedule import best_order, build_problem
from mcuflow.toolchain.host import build_host, run_host
from tests.fuzz.seeds import built_seeds

_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_NUMBER = re.compile(r"(?<![A-Za-z0-9_])\d[\w.]*")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_SANITISED = re.compile(r"mcuflow_c\d+(?:_[a-z0-9]+)*")
_UNPRINTABLE = re.compile(r"[^\n\t -~]")
"""The first character that is neither printable ASCII nor a newline or tab."""


class UnsafeCode(Exception):
    """Rendered C holds a non-ASCII character or model text outside comments and safe names."""


class BuildFailure(Exception):
    """The generated project did not build or run cleanly under the sanitizers, or differed."""


def fast_plan(graph: Graph) -> Plan:
    """The planner's fast path: a quick order search and greedy placement."""
    problem = build_problem(graph)
    return plan_for_order(problem, best_order(problem, 0.005), 0.0)


def _tokens(text: str) -> tuple[set[str], set[str]]:
    """(identifiers, string literals) of C source outside comments; numbers are skipped."""
    return _code_tokens(_COMMENT.sub(" ", text))


def _code_tokens(code: str) -> tuple[set[str], set[str]]:
    """_tokens of C source whose comments are already blanked out."""
    strings = set(_STRING.findall(code))
    code = _NUMBER.sub(" ", _STRING.sub(" ", code))
    return set(_IDENTIFIER.findall(code)), strings


def _normal(token: str) -> str:
    return re.sub(r"\d+", "N", token)


def _c_files(files: dict[str, str]) -> Iterable[str]:
    return (text for name, text in files.items() if name.endswith((".c", ".h")))


@cache
def vocabulary() -> frozenset[str]:
    """Identifiers and literals mcuflow writes itself, digits normalised."""
    texts = [path.read_text("ascii") for path in
             resources.files("mcuflow.codegen").joinpath("kernels").iterdir()
             if path.name.endswith((".c", ".h"))]
    for data in built_seeds().values():
        graph = read_tflite(data)
        texts += _c_files(render_project(graph, fast_plan(graph), "host")[0])
    words: set[str] = set()
    for text in texts:
        identifiers, strings = _tokens(text)
        words |= {_normal(t) for t in identifiers | strings if not _SANITISED.fullmatch(t)}
    return frozenset(words)


def check_rendered(graph: Graph, files: dict[str, str]) -> None:
    """Raise UnsafeCode unless every file is printable ASCII and the C leaks no model text."""
    model_name = c_string(graph.name)
    for name, text in files.items():
        bad = _UNPRINTABLE.search(text)
        if bad is not None:
            raise UnsafeCode(f"{name} holds the character {bad.group()!r}")
        if not name.endswith((".c", ".h")):
            continue
        code = _COMMENT.sub(" ", text)
        if "*/" in code or "/*" in code:
            raise UnsafeCode(f"{name} has a comment delimiter outside a comment")
        identifiers, strings = _code_tokens(code)
        for token in sorted(identifiers | (strings - {model_name})):
            safe = _SANITISED.fullmatch(token) and len(token) <= MAX_IDENTIFIER_CHARS
            if not safe and _normal(token) not in vocabulary():
                raise UnsafeCode(f"{name} holds {token!r}, which mcuflow does not write")


def render_checked(graph: Graph, plan: Plan) -> None:
    """Render the host project in memory and check its text."""
    files, _ = render_project(graph, plan, "host")
    check_rendered(graph, files)


def build_and_compare(graph: Graph, plan: Plan, inputs: list[np.ndarray],
                      expected: list[np.ndarray]) -> None:
    """Build the project with ASan/UBSan, run it on `inputs`; outputs must equal `expected`.

    Does nothing when no host compiler is installed.
    """
    if shutil.which("gcc") is None:
        return
    with tempfile.TemporaryDirectory(prefix="mcuflow-fuzz-") as scratch:
        project = generate_project(graph, plan, Path(scratch) / "project")
        try:
            binary = build_host(project.path, sanitize=True, opt_level="-O1")
            actual = run_host(binary, [x[None] for x in inputs], project.outputs)
        except ToolchainError as error:
            raise BuildFailure(error.message) from None
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if np.ascontiguousarray(want).tobytes() != np.ascontiguousarray(got[0]).tobytes():
            raise BuildFailure(f"output {index} of the compiled model differs from the "
                               "reference interpreter")
