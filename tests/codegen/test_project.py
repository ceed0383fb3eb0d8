"""The generated project: deterministic, atomic, safe with hostile names, buildable as shipped."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuflow import outputs
from mcuflow.codegen.project import generate_project, render_project
from mcuflow.errors import McuflowError, OutputError, ToolchainError, UnsupportedModelError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import NoAttrs, OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.host import build_host, random_inputs, run_host, verify_host
from tests.codegen.test_host_ops import assert_same_bits, planned, reference
from tests.codegen.test_names import HOSTILE
from tests.support import SHARED_MODELS

KWS = SHARED_MODELS / "kws_ref_model.tflite"


def _read_all(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_same_model_and_plan_give_byte_identical_files(tmp_path: Path) -> None:
    """Two reads of the model file, one plan: the projects are identical byte for byte."""
    graph = read_tflite(KWS)
    plan = plan_memory(graph, 0.3)
    first = generate_project(graph, plan, tmp_path / "a")
    second = generate_project(read_tflite(KWS), plan, tmp_path / "b")
    assert first.files == second.files
    assert _read_all(first.path) == _read_all(second.path)
    assert "mcuflow_model.c" in first.files and "README.md" in first.files


def _renamed(graph: Graph, names: list[str]) -> Graph:
    """The graph with hostile tensor, op and graph names (cycling through `names`)."""
    mapping = {old: f"{names[i % len(names)]}#{i}" for i, old in enumerate(graph.tensors)}
    renamed = Graph(names[0])
    for old, tensor in graph.tensors.items():
        renamed.add_tensor(Tensor(mapping[old], tensor.shape, tensor.dtype, tensor.quant,
                                  tensor.data))
    for i, op in enumerate(graph.operators):
        renamed.operators.append(Operator(
            op.kind, tuple(mapping[n] for n in op.inputs), tuple(mapping[n] for n in op.outputs),
            op.attrs, names[(i + 3) % len(names)]))
    renamed.inputs = [mapping[n] for n in graph.inputs]
    renamed.outputs = [mapping[n] for n in graph.outputs]
    return renamed


def _strip_comments_and_strings(source: str) -> str:
    return re.sub(r'"(?:\\.|[^"\\\n])*"|/\*.*?\*/', " ", source, flags=re.S)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_hostile_names_stay_in_comments(compiler: str, tmp_path: Path) -> None:
    base, _ = planned("residual_and_concat", True)
    graph = _renamed(base, HOSTILE)
    plan = plan_memory(graph, 0.2)
    project = generate_project(graph, plan, tmp_path / "project")
    for name in project.files:
        text = (project.path / name).read_bytes()
        assert text.isascii(), name
        if name.endswith((".c", ".h")):
            code = _strip_comments_and_strings(text.decode())
            assert "evil" not in code and "??" not in code, name
    binary = build_host(project.path, sanitize=True, compiler=compiler, opt_level="-O1")
    inputs = random_inputs(graph, 5, seed=3)
    actual = run_host(binary, inputs, project.outputs)
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")


def test_failure_mid_write_leaves_no_directory(tmp_path: Path, monkeypatch) -> None:
    graph, plan = planned("convolutions", True)
    written = []
    original = Path.write_bytes

    def failing_write(self: Path, data: bytes) -> int:
        written.append(self.name)
        if len(written) == 4:
            raise OSError("disk full")
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(OutputError, match="disk full"):
        generate_project(graph, plan, tmp_path / "out")
    assert len(written) == 4
    assert list(tmp_path.iterdir()) == []


def test_failure_while_swapping_keeps_the_old_project(tmp_path: Path, monkeypatch) -> None:
    graph, plan = planned("convolutions", True)
    old = generate_project(graph, plan, tmp_path / "out")
    before = _read_all(old.path)

    def broken_swap(staging: Path, out_dir: Path) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr(outputs, "_swap_into_place", broken_swap)
    other, other_plan = planned("depthwise", True)
    with pytest.raises(OutputError, match="rename failed"):
        generate_project(other, other_plan, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert _read_all(tmp_path / "out") == before


def test_regenerating_replaces_an_old_project(tmp_path: Path) -> None:
    graph, plan = planned("convolutions", True)
    generate_project(graph, plan, tmp_path / "out")
    (tmp_path / "out" / "model").write_bytes(b"a build product of the old project")
    other, other_plan = planned("depthwise", True)
    project = generate_project(other, other_plan, tmp_path / "out")
    assert sorted(p.name for p in project.path.iterdir()) == list(project.files)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_regenerating_keeps_what_the_user_added(tmp_path: Path) -> None:
    graph, plan = planned("convolutions", True)
    generate_project(graph, plan, tmp_path / "out")
    (tmp_path / "out" / "notes.txt").write_text("mine")
    other, other_plan = planned("depthwise", True)
    with pytest.raises(OutputError, match=r"files mcuflow did not write \(notes.txt\)"):
        generate_project(other, other_plan, tmp_path / "out")
    project = generate_project(other, other_plan, tmp_path / "out", force=True)
    assert sorted(p.name for p in project.path.iterdir()) == sorted([*project.files, "notes.txt"])
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    fresh = generate_project(other, other_plan, tmp_path / "fresh")
    assert {n: b for n, b in _read_all(project.path).items() if n != "notes.txt"} == _read_all(
        fresh.path)


def test_refuses_to_replace_a_foreign_directory(tmp_path: Path) -> None:
    graph, plan = planned("convolutions", True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(McuflowError, match="not an mcuflow project"):
        generate_project(graph, plan, tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_unsupported_model_writes_nothing(tmp_path: Path) -> None:
    b = GraphBuilder("int16", seed=0)
    x = b.input((1, 4, 4, 2), 0.1, 0)
    b.graph.add_tensor(Tensor("wide", (1, 4, 4, 2), DType.INT16, QuantParams.per_tensor(0.1, 0)))
    b.graph.operators.append(Operator(OpKind.RELU, (x,), ("wide",), NoAttrs(), "relu16"))
    graph = b.output("wide").build()
    plan = plan_memory(graph, 0.1)
    with pytest.raises(UnsupportedModelError, match="relu16"):
        generate_project(graph, plan, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_shipped_makefile_and_cmake_build_a_working_driver(tmp_path: Path) -> None:
    graph, plan = planned("float_edges", True)
    project = generate_project(graph, plan, tmp_path / "project")
    subprocess.run(["make", "-s", "CFLAGS=-std=c99 -O1 -Wall -Wextra -Werror -pedantic"],
                   cwd=project.path, check=True, capture_output=True)
    build_dir = tmp_path / "cmake"
    subprocess.run(["cmake", "-S", str(project.path), "-B", str(build_dir)], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build_dir)], check=True, capture_output=True)
    inputs = random_inputs(graph, 4, seed=1)
    expected = reference(graph, plan, inputs)
    for binary in (project.path / "model", build_dir / "model"):
        assert_same_bits(expected, run_host(binary, inputs, project.outputs), binary.name)


def test_header_describes_the_api(tmp_path: Path) -> None:
    graph, plan = planned("float_edges", True)
    files, project = render_project(graph, plan)
    header = files["mcuflow_model.h"]
    assert f"#define MCUFLOW_ARENA_BYTES {plan.arena_bytes}" in header
    assert "int mcuflow_model_invoke(const float *input, float *output);" not in header  # 2 outputs
    assert ("int mcuflow_model_invoke_n(const void *const inputs[], void *const outputs[]);"
            in header)
    assert "#define MCUFLOW_INPUT_0_SHAPE {1, 6, 6, 2}" in header
    assert "#define MCUFLOW_OUTPUT_COUNT 2" in header
    single, _ = planned("mobilenet_block", True)
    header = render_project(single, planned("mobilenet_block", True)[1])[0]["mcuflow_model.h"]
    assert "int mcuflow_model_invoke(const int8_t *input, int8_t *output);" in header
    assert "#define MCUFLOW_OUTPUT_0_SCALE 0.00390625f" in header
    assert "#define MCUFLOW_OUTPUT_0_ZERO_POINT -128" in header
    assert project.weight_bytes > 0


def test_null_pointers_are_rejected(tmp_path: Path) -> None:
    graph, plan = planned("mobilenet_block", True)
    project = generate_project(graph, plan, tmp_path / "project")
    (project.path / "null_test.c").write_text(
        '#include <stdio.h>\n#include "mcuflow_model.h"\n'
        "int main(void)\n{\n    int8_t in[MCUFLOW_INPUT_0_SIZE] = {0};\n"
        "    int8_t out[MCUFLOW_OUTPUT_0_SIZE];\n"
        "    const void *ins[1] = {NULL};\n    void *outs[1] = {out};\n"
        "    return mcuflow_model_invoke(in, NULL) == MCUFLOW_ERROR_NULL\n"
        "        && mcuflow_model_invoke_n(ins, outs) == MCUFLOW_ERROR_NULL\n"
        "        && mcuflow_model_invoke(in, out) == MCUFLOW_OK ? 0 : 1;\n}\n")
    sources = [p.name for p in project.path.glob("mcuflow_*.c")]
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o", "t",
                    "null_test.c", *sources, "-lm"], cwd=project.path, check=True)
    assert subprocess.run([str(project.path / "t")]).returncode == 0


def test_missing_compiler_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(ToolchainError, match="apt-get install clang"):
        build_host(tmp_path, compiler="/nonexistent/clang")


def test_compile_errors_become_toolchain_errors(tmp_path: Path) -> None:
    graph, plan = planned("convolutions", True)
    project = generate_project(graph, plan, tmp_path / "project")
    (project.path / "mcuflow_broken.c").write_text("int broken(void) { return; }\n")
    with pytest.raises(ToolchainError, match="gcc build"):
        build_host(project.path)


def test_verify_host_reports_sizes_and_exactness() -> None:
    graph, plan = planned("mobilenet_block", True)
    result = verify_host(graph, plan, runs=20, seed=1)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0
    assert result.runs == 20 and result.arena_bytes == plan.arena_bytes
    assert 1000 < result.code_bytes < 100_000
    assert result.weight_bytes >= sum(t.nbytes for t in graph.tensors.values()
                                      if t.is_constant and t.dtype is DType.INT8)


def test_verify_host_catches_a_wrong_plan() -> None:
    """A plan whose buffers overlap where they must not gives wrong outputs, and verify says so."""
    graph, plan = planned("convolutions", False)
    broken = plan_memory(graph, 0.1, kinds=frozenset())
    for name, buffer in broken.buffers.items():
        if not buffer.is_scratch:
            broken.buffers[name] = dataclasses.replace(buffer, offset=0)
    broken.arena_bytes = max(b.end for b in broken.buffers.values())
    result = verify_host(graph, broken, runs=5, seed=0, sanitize=False, litert=False)
    assert not result.bit_exact and result.mismatches > 0


def test_output_arrays_have_the_model_dtype(tmp_path: Path) -> None:
    graph, plan = planned("float_edges", True)
    project = generate_project(graph, plan, tmp_path / "project")
    binary = build_host(project.path)
    out = run_host(binary, random_inputs(graph, 2, seed=0), project.outputs)
    assert [o.dtype for o in out] == [np.float32, np.float32]
    assert [o.shape for o in out] == [(2, 1, 6, 6, 3), (2, 1, 6, 6, 2)]
