"""TRANSPOSE_CONV through its DSP kernel (SMLAD; portable intrinsics on the host): bit-exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcuflow.codegen.project import generate_project
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.kernels import TCONV_DSP_DEPTH
from mcuflow.ir.ops import OpKind
from mcuflow.memory.planner import plan_memory
from mcuflow.quant.codebook import compress_graph
from mcuflow.toolchain.host import build_host, random_inputs, run_host
from tests.codegen.cases import transpose_convs
from tests.codegen.test_host_ops import RUNS, assert_same_bits, reference
from tests.support import litert_interpreter, litert_invoke

PLAN_SECONDS = 0.2


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_transpose_convs_are_bit_exact_through_the_dsp_kernel(compiler: str, tmp_path: Path
                                                              ) -> None:
    """Layers of at least TCONV_DSP_DEPTH input channels call the DSP kernel, others not."""
    graph = transpose_convs()
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    project = generate_project(graph, plan, tmp_path / "p", dsp=True)
    source = (project.path / "mcuflow_model.c").read_text()
    depths = [graph.tensors[op.inputs[0]].shape[3] for op in graph.operators
              if op.kind is OpKind.TRANSPOSE_CONV]
    deep = sum(depth >= TCONV_DSP_DEPTH for depth in depths)
    assert 0 < deep < len(depths)
    assert source.count("mcuflow_transpose_conv_dsp_s8(") == deep
    assert source.count("mcuflow_transpose_conv_s8(") == len(depths) - deep
    binary = build_host(project.path, sanitize=True, compiler=compiler, opt_level="-O1")
    inputs = random_inputs(graph, RUNS, seed=3)
    actual = run_host(binary, inputs, project.outputs)
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(write_tflite(graph))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")


def test_codebook_weights_are_decoded_for_the_portable_kernel(tmp_path: Path) -> None:
    """Codebook-stored filters are decoded for the portable kernel, even on a DSP core.

    The C equals LiteRT on the clustered weights.
    """
    graph = compress_graph(transpose_convs(), 16)
    layers = [op for op in graph.operators if op.kind is OpKind.TRANSPOSE_CONV]
    stored = [graph.tensors[op.inputs[1]].codebook is not None for op in layers]
    deep = [graph.tensors[op.inputs[0]].shape[3] >= TCONV_DSP_DEPTH for op in layers]
    assert any(s and d for s, d in zip(stored, deep, strict=True))
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    project = generate_project(graph, plan, tmp_path / "p", dsp=True)
    source = (project.path / "mcuflow_model.c").read_text()
    dsp_layers = sum(d and not s for s, d in zip(stored, deep, strict=True))
    assert source.count("mcuflow_transpose_conv_dsp_s8(") == dsp_layers
    assert source.count("mcuflow_transpose_conv_s8(") == len(layers) - dsp_layers
    binary = build_host(project.path, sanitize=True, opt_level="-O1")
    inputs = random_inputs(graph, RUNS, seed=4)
    actual = run_host(binary, inputs, project.outputs)
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(write_tflite(graph))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")
