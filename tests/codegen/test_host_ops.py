"""Generated C of graphs covering every OpKind and in-place kind is bit-exact.

Built with gcc and clang under AddressSanitizer and UndefinedBehaviorSanitizer, it equals the
reference interpreter and LiteRT to the bit on random inputs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from mcuflow.codegen.project import GeneratedProject, generate_project
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import MeanAttrs, OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.memory.plan import InPlace, Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.host import build_host, random_inputs, run_host, verify_host
from tests.cc_cache import cached_compiler
from tests.codegen.cases import FAMILIES, special_float_inputs
from tests.support import litert_interpreter, litert_invoke

RUNS = 20
PLAN_SECONDS = 0.2
NO_INPLACE: frozenset[InPlace] = frozenset()
# (family, in-place allowed, compiler): clang builds the in-place plans only.
BUILDS = [(name, inplace, compiler) for name in FAMILIES
          for inplace, compiler in ((True, "gcc"), (False, "gcc"), (True, "clang"))]


@functools.cache
def planned(name: str, inplace: bool) -> tuple[Graph, Plan]:
    graph = FAMILIES[name]()
    plan = plan_memory(graph, PLAN_SECONDS) if inplace else plan_memory(
        graph, PLAN_SECONDS, kinds=NO_INPLACE)
    return graph, plan


def build(graph: Graph, plan: Plan, directory: Path, compiler: str
          ) -> tuple[GeneratedProject, Path]:
    project = generate_project(graph, plan, directory)
    binary = build_host(project.path, sanitize=True, compiler=cached_compiler(compiler),
                        opt_level="-O1")
    return project, binary


def reference(graph: Graph, plan: Plan, inputs: list[np.ndarray]) -> list[list[np.ndarray]]:
    interpreter = Interpreter(graph, plan.order)
    return [interpreter.run([x[r] for x in inputs]).outputs for r in range(len(inputs[0]))]


def assert_same_bits(expected: list[list[np.ndarray]], actual: list[np.ndarray], what: str
                     ) -> None:
    for r, outputs in enumerate(expected):
        for i, (want, got) in enumerate(zip(outputs, actual, strict=True)):
            got_r = got[r]
            assert got_r.dtype == want.dtype and got_r.shape == want.shape
            diff = np.flatnonzero(got_r.view(np.uint8) != np.ascontiguousarray(want).view(
                np.uint8))
            assert diff.size == 0, (f"run {r} output {i}: {diff.size} bytes differ from {what}, "
                                    f"first at byte {diff[0]}")


@pytest.mark.parametrize(("name", "inplace", "compiler"), BUILDS,
                         ids=[f"{n}-{'inplace' if i else 'plain'}-{c}" for n, i, c in BUILDS])
def test_family_is_bit_exact(name: str, inplace: bool, compiler: str, tmp_path: Path) -> None:
    graph, plan = planned(name, inplace)
    project, binary = build(graph, plan, tmp_path / "project", compiler)
    inputs = random_inputs(graph, RUNS, seed=len(name))
    actual = run_host(binary, inputs, project.outputs)
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(write_tflite(graph))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")


def test_families_cover_every_op_and_in_place_kind() -> None:
    kinds = {op.kind for name in FAMILIES for op in planned(name, True)[0].operators}
    assert kinds == set(OpKind), f"not covered: {set(OpKind) - kinds}"
    used = {step.inplace for name in FAMILIES for step in planned(name, True)[1].steps}
    assert used == set(InPlace), f"not covered: {set(InPlace) - used}"


def test_quantize_of_special_floats(tmp_path: Path) -> None:
    graph, plan = planned("float_edges", True)
    project, binary = build(graph, plan, tmp_path / "project", "gcc")
    shape = graph.tensors[graph.inputs[0]].shape
    inputs = [special_float_inputs((1, *shape))]
    actual = run_host(binary, inputs, project.outputs)
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")


def test_many_records_in_one_process_are_independent(tmp_path: Path) -> None:
    """The same input gives the same output whatever ran before it (no state leaks)."""
    graph, plan = planned("mobilenet_block", True)
    project, binary = build(graph, plan, tmp_path / "project", "gcc")
    inputs = random_inputs(graph, 3, seed=5)
    repeated = [np.concatenate([x, x[::-1], x]) for x in inputs]
    out = run_host(binary, repeated, project.outputs)[0]
    assert (out[0:3] == out[6:9]).all() and (out[0:3] == out[5:2:-1]).all()


def test_sum_is_checked_against_tflite_micro() -> None:
    """LiteRT's reference int8 SUM is wrong on negative values: verify asks tflite-micro."""
    b = GraphBuilder("sums", seed=3)
    x = b.input((1, 6, 5, 4), 0.05, -3)
    b.output(b.op(OpKind.SUM, [x], MeanAttrs((1, 2), False), QuantParams.per_tensor(0.4, 2)),
             b.op(OpKind.SUM, [x], MeanAttrs((3,), True), QuantParams.per_tensor(0.12, -5)))
    graph = b.build()
    result = verify_host(graph, plan_memory(graph, PLAN_SECONDS), runs=8)
    assert result.peer == "tflite-micro"
    assert result.litert_mismatches == 0 and result.bit_exact
