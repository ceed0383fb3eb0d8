"""TRANSPOSE_CONV through its DSP kernels (SMLAD; portable intrinsics on the host): bit-exact.

On a core with the DSP extension a layer runs one DSP CONV_2D per output phase
(mcuflow_transpose_conv_phases_dsp_s8) when every phase has taps; otherwise, or when its
weights do not fit that kernel, the gathering DSP kernel from TCONV_DSP_DEPTH input channels
on and the portable kernel below.
"""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mcuflow.codegen.project import generate_project
from mcuflow.codegen.render import emit_layers
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.kernels import TCONV_DSP_DEPTH
from mcuflow.hw.tconv_phases import phase_axes, transpose_conv_phases
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.quant.codebook import compress_graph
from mcuflow.ref.transpose_conv import scatter_taps
from mcuflow.toolchain.host import build_host, random_inputs, run_host
from tests.cc_cache import cached_compiler
from tests.codegen.cases import FAMILIES
from tests.codegen.test_dsp_kernels import overscaled
from tests.codegen.test_host_ops import RUNS, assert_same_bits, reference
from tests.support import litert_interpreter, litert_invoke

PLAN_SECONDS = 0.2
PHASED = "mcuflow_transpose_conv_phases_dsp_s8"
GATHERING = "mcuflow_transpose_conv_dsp_s8"
PORTABLE = "mcuflow_transpose_conv_s8"


def test_phases_sum_every_tap_once() -> None:
    """Phase by phase, each output sums exactly the (input, tap) pairs the scatter lands on it.

    phase_axes declines only filters shorter than the stride and some padded ones.
    """
    rng = np.random.default_rng(0)
    declined = 0
    for size, kernel, stride, cut in itertools.product((1, 2, 5), (1, 2, 3, 4, 5), (1, 2, 3),
                                                       (0, 1, 2, 3)):
        out = (size - 1) * stride + kernel - cut
        for pad in range(max(0, min(cut, out)) + 1) if out > 0 else ():
            x = rng.integers(-3, 4, (1, size, 1, 1)).astype(np.float64)
            w = rng.integers(-3, 4, (1, kernel, 1, 1)).astype(np.float64)
            expected = scatter_taps(x, w, (stride, 1), (pad, 0), (out, 1))[0, :, 0, 0]
            axes = phase_axes(out, kernel, stride, pad)
            if axes is None:
                declined += 1
                assert kernel < stride or pad > 0
                continue
            got = np.full(out, np.nan)
            for axis in axes:
                for j in range(axis.count):
                    reads = [(j - axis.pad + u, tap) for u, tap in enumerate(axis.taps)]
                    got[axis.first + j * stride] = sum(x[0, i, 0, 0] * w[0, tap, 0, 0]
                                                       for i, tap in reads if 0 <= i < size)
            np.testing.assert_array_equal(got, expected)
    assert declined > 0


def _expected(graph: Graph) -> Counter[str]:
    """The kernel each TRANSPOSE_CONV layer should call on a DSP core (plain weights)."""
    kernels: Counter[str] = Counter()
    for op in graph.operators:
        if op.kind is OpKind.TRANSPOSE_CONV:
            deep = graph.tensors[op.inputs[0]].shape[3] >= TCONV_DSP_DEPTH
            kernels[PHASED if transpose_conv_phases(graph, op) is not None
                    else GATHERING if deep else PORTABLE] += 1
    return kernels


def _bit_exact(graph: Graph, directory: Path, compiler: str = "gcc", seed: int = 3
               ) -> tuple[Plan, str]:
    """Build `graph` for a DSP core on the host; its outputs equal the reference's and LiteRT's.

    Returns the plan and the model's C.
    """
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    project = generate_project(graph, plan, directory, dsp=True)
    binary = build_host(project.path, sanitize=True, compiler=cached_compiler(compiler),
                        opt_level="-O1")
    inputs = random_inputs(graph, RUNS, seed=seed)
    actual = run_host(binary, inputs, project.outputs)
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(write_tflite(graph))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")
    return plan, (project.path / "mcuflow_model.c").read_text()


@pytest.mark.parametrize("name", ["transpose_convs", "transpose_convs_phased"])
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_transpose_convs_are_bit_exact_through_the_dsp_kernels(name: str, compiler: str,
                                                               tmp_path: Path) -> None:
    """Every layer calls the kernel its geometry and depth choose."""
    graph = FAMILIES[name]()
    _, source = _bit_exact(graph, tmp_path / "p", compiler)
    expected = _expected(graph)
    assert expected[PHASED] > 0 and expected[GATHERING] + expected[PORTABLE] > 0
    for kernel in (PHASED, GATHERING, PORTABLE):
        assert source.count(f"{kernel}(") == expected[kernel], kernel


def test_codebook_weights_are_decoded_for_the_portable_kernel(tmp_path: Path) -> None:
    """Codebook-stored filters are decoded for the portable kernel, even on a DSP core.

    The C equals LiteRT on the clustered weights.
    """
    graph = compress_graph(FAMILIES["transpose_convs"](), 16)
    layers = [op for op in graph.operators if op.kind is OpKind.TRANSPOSE_CONV]
    stored = [graph.tensors[op.inputs[1]].codebook is not None for op in layers]
    phased = [transpose_conv_phases(graph, op) is not None for op in layers]
    assert any(s and p for s, p in zip(stored, phased, strict=True))
    _, source = _bit_exact(graph, tmp_path / "p", seed=4)
    plain = sum(p and not s for s, p in zip(stored, phased, strict=True))
    assert source.count(f"{PHASED}(") == plain
    assert source.count(f"{PORTABLE}(") + source.count(f"{GATHERING}(") == len(layers) - plain


def general_requant_tconvs() -> Graph:
    """Multipliers above 1/2 (no one-multiply constants): words, padded and values gathers."""
    b = GraphBuilder("tconv_general_requant", seed=41)
    words = b.input((1, 4, 3, 8), 0.05, 3)
    padded = b.input((2, 3, 3, 3), 0.04, -9)
    b.output(
        overscaled(b, b.transpose_conv(words, 6, (3, 3), 2), 0.05, 6.0),
        overscaled(b, b.transpose_conv(words, 5, (2, 2), 2, per_channel=False), 2.0, 2.0),
        overscaled(b, b.transpose_conv(padded, 7, (4, 4), 2, Padding.SAME,
                                       Activation.RELU6), 0.2, 40.0),
        overscaled(b, b.transpose_conv(padded, 4, (3, 2), 1, Padding.VALID, bias=False,
                                       output_hw=(5, 4)), 0.6, 0.6),
    )
    return b.build()


def test_general_requantisation_keeps_the_phased_kernel(tmp_path: Path) -> None:
    """Phases whose requantisation has no exact one-multiply form run TFLite's (mode EXACT)."""
    graph = general_requant_tconvs()
    _, source = _bit_exact(graph, tmp_path / "p", seed=5)
    assert source.count(f"{PHASED}(") == 4
    assert ".mode = 1" in source


def test_weights_the_packing_cannot_hold_fall_back(tmp_path: Path) -> None:
    """-128 under a negative weight: the gathering DSP kernel when deep, else the portable one.

    The portable step says why.
    """
    b = GraphBuilder("tconv_unpackable", seed=43)
    deep = b.input((1, 3, 3, 8), 0.05, 1)
    shallow = b.input((1, 3, 3, 4), 0.05, -2)
    b.output(b.transpose_conv(deep, 2, (3, 3)), b.transpose_conv(shallow, 3, (2, 2)))
    graph = b.build()
    for op in graph.operators:
        weights = graph.tensors[op.inputs[1]].data
        weights[0, 1, 1, 0], weights[1, 1, 1, 0] = -3, -128
    plan, source = _bit_exact(graph, tmp_path / "p", seed=6)
    assert f"{PHASED}(" not in source
    assert source.count(f"{GATHERING}(") == source.count(f"{PORTABLE}(") == 1
    layers, _ = emit_layers(graph, plan, dsp=True)
    reasons = [layer.portable_reason for layer in layers if PORTABLE in layer.functions]
    assert len(reasons) == 1 and "-128" in reasons[0]


QEMU_TOOLS = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")


@pytest.mark.skipif(not QEMU_TOOLS, reason="the Arm toolchain or QEMU is missing")
def test_general_requantisation_is_bit_exact_on_qemu_cortex_m4() -> None:
    from mcuflow.toolchain.qemu import default_board, verify_cortexm

    graph = general_requant_tconvs()
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    result = verify_cortexm(graph, plan, "cortex-m4", default_board("cortex-m4"), runs=3, seed=2)
    assert result.bit_exact, f"{result.mismatches} of {result.runs} runs differ"
