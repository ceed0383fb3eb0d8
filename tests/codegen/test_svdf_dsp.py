"""SVDF through its DSP kernel (SMLAD; exact C emulations on the host): bit-exact.

Every invocation's outputs are compared with the reference interpreter and LiteRT over a
sequence of runs, so the state the kernel shifts in place must stay LiteRT's from one run to
the next. The families cover both requantisation paths of each stage, the memory sizes the
kernel treats apart, chunked pair sums and the cases where the portable kernel runs instead.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mcuflow.codegen import dsp
from mcuflow.codegen.project import generate_project, kernel_files
from mcuflow.codegen.render import emit_layers
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.layouts import dsp_groups
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.host import build_host, random_inputs, run_host
from tests.cc_cache import cached_compiler
from tests.codegen.cases import svdf, svdf_shapes, svdf_wide
from tests.codegen.test_host_ops import RUNS, assert_same_bits, reference
from tests.support import litert_interpreter, litert_invoke

PLAN_SECONDS = 0.2
DSP_CALL = "mcuflow_svdf_dsp_s8("
FAMILIES = {f.__name__: f for f in (svdf, svdf_shapes, svdf_wide)}


def _svdfs(graph: Graph) -> int:
    return sum(op.kind is OpKind.SVDF for op in graph.operators)


def _run(graph: Graph, directory: Path, compiler: str = "gcc") -> str:
    """Build `graph` for a DSP core on the host, check it against both oracles; the C source."""
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    project = generate_project(graph, plan, directory, dsp=True)
    binary = build_host(project.path, sanitize=True, compiler=cached_compiler(compiler),
                        opt_level="-O1")
    inputs = random_inputs(graph, RUNS, seed=4)
    actual = run_host(binary, inputs, project.outputs)
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(write_tflite(graph))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")
    return (project.path / "mcuflow_model.c").read_text()


BUILDS = [(name, compiler) for name in FAMILIES for compiler in ("gcc", "clang")]


@pytest.mark.parametrize(("name", "compiler"), BUILDS, ids=[f"{n}-{c}" for n, c in BUILDS])
def test_svdf_families_are_bit_exact_through_the_dsp_kernel(name: str, compiler: str,
                                                           tmp_path: Path) -> None:
    graph = FAMILIES[name]()
    source = _run(graph, tmp_path / "p", compiler)
    assert source.count(DSP_CALL) == _svdfs(graph)
    assert ".fast = 1" in source  # the one-multiply requantisation (its proof passed)


def test_wide_inputs_split_the_pair_sums_into_chunks() -> None:
    graph = svdf_wide()
    weights = graph.tensors[graph.operators[0].inputs[1]].data
    assert dsp.chunk_groups(weights) < dsp_groups(weights.shape[1])


def test_tflite_requantisation_where_no_formula_is_proven(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Without one-multiply constants both stages run TFLite's MultiplyByQuantizedMultiplier."""
    monkeypatch.setattr(dsp, "fast_requant", lambda *args, **kwargs: None)
    graph = svdf_shapes()
    source = _run(graph, tmp_path / "p")
    assert source.count(DSP_CALL) == _svdfs(graph)
    assert ".fast = 1" not in source and ".fast = 0" in source


def test_weights_the_packing_cannot_hold_fall_back_to_portable(tmp_path: Path) -> None:
    graph = svdf()
    weights = graph.tensors[graph.operators[0].inputs[1]].data
    weights[0, 0], weights[1, 0] = -3, -128
    source = _run(graph, tmp_path / "p")
    assert source.count(DSP_CALL) == _svdfs(graph) - 1
    assert source.count("mcuflow_svdf_s8(") == 1
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    layers, _ = emit_layers(graph, plan, dsp=True)
    reasons = [layer.portable_reason for layer in layers if layer.portable_reason]
    assert len(reasons) == 1 and "-128" in reasons[0]


def test_a_plan_without_dsp_scratch_runs_the_portable_kernel() -> None:
    graph = svdf()
    plan = plan_memory(graph, PLAN_SECONDS)  # made without the DSP scratch rules
    layers, _ = emit_layers(graph, plan, dsp=True)
    svdf_steps = [layer for step, layer in zip(plan.steps, layers, strict=True)
                  if graph.operators[step.op_index].kind is OpKind.SVDF]
    assert all("mcuflow_svdf" in layer.kernels for layer in svdf_steps)
    assert all("scratch" in (layer.portable_reason or "") for layer in svdf_steps)



# --- Cortex-M ---------------------------------------------------------------------------------

CROSS = shutil.which("arm-none-eabi-gcc")
QEMU = shutil.which("qemu-system-arm")
SOURCE = "mcuflow_conv_dsp.c"


@pytest.mark.skipif(CROSS is None, reason="arm-none-eabi-gcc is not installed")
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7", "cortex-m33"])
def test_svdf_kernel_cross_compiles_cleanly(cpu: str, tmp_path: Path) -> None:
    for name, text in kernel_files([Path(SOURCE).stem]).items():
        (tmp_path / name).write_text(text)
    fpu = "-mfpu=fpv4-sp-d16" if cpu == "cortex-m4" else "-mfpu=fpv5-sp-d16"
    result = subprocess.run(
        [CROSS, f"-mcpu={cpu}", "-mthumb", "-mfloat-abi=hard", fpu, "-std=c99", "-O2", "-Wall",
         "-Wextra", "-Werror", "-pedantic", "-c", SOURCE, "-o", "kernel.o"],
        cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    code = subprocess.run(["arm-none-eabi-objdump", "-d", "kernel.o"], cwd=tmp_path,
                          capture_output=True, text=True).stdout
    assert "smlad" in code and "pkhbt" in code


def _verify_on_qemu(graph: Graph, target: str) -> None:
    from mcuflow.toolchain.qemu import default_board, verify_cortexm

    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    board = "nucleo-f767zi" if target == "cortex-m33" else default_board(target)
    result = verify_cortexm(graph, plan, target, board, runs=12, seed=3, profile=True)
    assert result.bit_exact, f"{result.mismatches} of {result.runs} runs differ"
    chosen = [layer.kernels for layer in result.layers if layer.op == OpKind.SVDF.value]
    assert len(chosen) == _svdfs(graph)
    assert all("mcuflow_svdf_dsp_s8" in kernels for kernels in chosen), chosen


QEMU_BUILDS = [(name, target) for name in FAMILIES
               for target in ("cortex-m4", "cortex-m7", "cortex-m33")]


@pytest.mark.skipif(CROSS is None or QEMU is None, reason="the Arm toolchain or QEMU is missing")
@pytest.mark.parametrize(("name", "target"), QEMU_BUILDS,
                         ids=[f"{n}-{t}" for n, t in QEMU_BUILDS])
def test_svdf_families_are_bit_exact_on_qemu(name: str, target: str) -> None:
    _verify_on_qemu(FAMILIES[name](), target)


@pytest.mark.skipif(CROSS is None or QEMU is None, reason="the Arm toolchain or QEMU is missing")
def test_tflite_requantisation_is_bit_exact_on_qemu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dsp, "fast_requant", lambda *args, **kwargs: None)
    _verify_on_qemu(svdf_shapes(), "cortex-m4")
