"""Every int8 MLPerf Tiny model: generated C equals the reference and LiteRT to the bit.

Built with gcc and clang under AddressSanitizer and UndefinedBehaviorSanitizer; compared with
the reference interpreter and LiteRT (on the original model file) on 20 random inputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcuflow.codegen.project import generate_project
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.host import build_host, random_inputs, run_host
from tests.codegen.test_host_ops import RUNS, assert_same_bits, reference
from tests.support import INT8_MODELS, SHARED_MODELS, litert_interpreter, litert_invoke


@pytest.mark.parametrize("name", INT8_MODELS)
def test_shared_model_is_bit_exact_on_gcc_and_clang(name: str, tmp_path: Path) -> None:
    path = SHARED_MODELS / name
    graph = read_tflite(path)
    plan = plan_memory(graph, 0.5)
    project = generate_project(graph, plan, tmp_path / "project")
    inputs = random_inputs(graph, RUNS, seed=7)
    expected = reference(graph, plan, inputs)
    litert = litert_interpreter(path)
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    for compiler in ("gcc", "clang"):
        binary = build_host(project.path, sanitize=True, compiler=compiler, opt_level="-O1")
        actual = run_host(binary, inputs, project.outputs)
        assert_same_bits(expected, actual, f"the reference interpreter ({compiler})")
        assert_same_bits(oracle, actual, f"LiteRT ({compiler})")
