"""The int16x8 DEPTHWISE_CONV_2D DSP kernel (mcuflow_dwconv_s16_dsp) is bit-exact with LiteRT.

On the host it runs on the exact C emulations of the DSP instructions under the sanitizers; on
QEMU Cortex-M4 on the real ones. The graphs reach every routine (3x3 at stride 1, other widths
at stride 1, stride 2), odd and even extents, padding, batches, narrow activations, and the
declines (depth multiplier, dilation, stride 3, a left-shifting requantisation, a bias the
64-bit sum cannot hold), whose layers then run the portable int64 kernel.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuflow.codegen.emit_dsp import s16_requant_words
from mcuflow.codegen.project import generate_project, kernel_files
from mcuflow.codegen.render import emit_layers
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.board import get_board
from mcuflow.hw.dw_s16 import FORM_3X3, FORM_3X3_S2, FORM_S1, FORM_S2, dw_s16_plane
from mcuflow.hw.kernels import default_kernels
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.quantization import QuantParams
from mcuflow.memory.planner import plan_memory
from mcuflow.quant.fixedpoint import multiply_by_quantized_multiplier_int64_array
from mcuflow.toolchain.arm import build_cortexm
from mcuflow.toolchain.host import build_host, random_inputs, run_host
from mcuflow.toolchain.qemu import run_qemu
from tests.cc_cache import cached_compiler
from tests.codegen.test_host_ops import assert_same_bits, reference
from tests.support import litert_interpreter, litert_invoke

RUNS = 6
PLAN_SECONDS = 0.2
KERNEL_CALL = "mcuflow_dwconv_s16_dsp("
PORTABLE_CALL = "mcuflow_dwconv_s16("


def _input(b: GraphBuilder, shape: tuple[int, ...]) -> str:
    return b.input(shape, 4.0 / 32768.0, 0, DType.INT16)


def shapes() -> Graph:
    """Every routine of the kernel: 3x3, 5x5, 2x2, 1x4 and 4x1 kernels, strides 1 and 2."""
    b = GraphBuilder("dws16_shapes", seed=41)
    wide = _input(b, (1, 7, 11, 5))
    even = _input(b, (1, 8, 10, 2))
    batch = _input(b, (2, 9, 6, 3))
    b.output(
        b.depthwise_conv2d(wide, (3, 3)),
        b.depthwise_conv2d(wide, (3, 3), stride=2, activation=Activation.RELU),
        b.depthwise_conv2d(wide, (3, 3), padding=Padding.VALID, per_channel=False),
        b.depthwise_conv2d(wide, (5, 5), activation=Activation.RELU6),
        b.depthwise_conv2d(wide, (5, 5), stride=2, bias=False),
        b.depthwise_conv2d(even, (2, 2)),
        b.depthwise_conv2d(even, (2, 2), stride=2, padding=Padding.VALID),
        b.depthwise_conv2d(even, (1, 4), activation=Activation.RELU_N1_TO_1),
        b.depthwise_conv2d(even, (4, 1), stride=2),
        b.depthwise_conv2d(batch, (3, 3), stride=2, padding=Padding.VALID),
        b.depthwise_conv2d(batch, (5, 3)),
        b.depthwise_conv2d(batch, (7, 7), stride=2),
    )
    return b.build()


def _rescaled(b: GraphBuilder, name: str, factor: float) -> str:
    """`name` with its output scale multiplied by `factor`.

    A small factor makes the requantisation shift 0 or more.
    """
    tensor = b.graph.tensors[name]
    quant = QuantParams.per_tensor(tensor.quant.scale0 * factor, 0)
    b.graph.tensors[name] = dataclasses.replace(tensor, quant=quant)
    return name


def _huge_bias(b: GraphBuilder, name: str) -> str:
    """`name`'s depthwise with int64 biases near +-2^40: the 64-bit sum could overflow."""
    op = next(op for op in b.graph.operators if op.outputs[0] == name)
    bias = b.graph.tensors[op.inputs[2]]
    signs = np.where(np.arange(bias.shape[0]) % 2 == 0, 1, -1)
    data = (signs * ((1 << 40) + np.arange(bias.shape[0]))).astype(np.int64)
    b.graph.tensors[op.inputs[2]] = dataclasses.replace(bias, data=data)
    return name


def declines() -> Graph:
    """Layers the kernel declines, and a neighbour of each that it runs."""
    b = GraphBuilder("dws16_declines", seed=42)
    x = _input(b, (1, 6, 7, 4))
    b.output(
        b.depthwise_conv2d(x, (3, 3), depth_multiplier=2),
        b.depthwise_conv2d(x, (3, 3), dilation=2),
        b.depthwise_conv2d(x, (3, 3), stride=3),
        _rescaled(b, b.depthwise_conv2d(x, (3, 3)), 1e-5),
        _huge_bias(b, b.depthwise_conv2d(x, (3, 3))),
        b.depthwise_conv2d(x, (3, 3), stride=2, activation=Activation.RELU),
    )
    return b.build()


def _kernel_formula(words: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """The kernel's requantisation in exact integers: (C + acc M) >> 32 >> s, 64-bit checked."""
    low, high, multiplier, shift = (int(v) for v in words)
    addend = (high << 32 | low) - ((high >> 31) << 64)
    results = []
    for a in acc:
        full = addend + int(a) * multiplier
        assert -(1 << 63) <= full < 1 << 63
        results.append((full >> 32) >> shift)
    return np.array(results, np.int64)


@pytest.mark.parametrize("seed", range(4))
def test_requantisation_is_litert_on_every_reachable_sum(seed: int) -> None:
    """Odd seeds: biases near 2^40 under shifts of -17 or less (R' = R below 2^15)."""
    rng = np.random.default_rng(seed)
    channels = 40
    wide = seed % 2 == 1
    multipliers = rng.integers(1 << 30, (1 << 31) - 1, channels)
    multipliers[:3] = [0x7FFF0000, 0x7FFEFFFF, (1 << 31) - 1]  # the Q15 rounding's saturation
    shifts = rng.integers(-47, -16 if wide else 0, channels)
    shifts[3:6] = [-17, -47, -30] if wide else [-1, -47, -17]  # t = 32, 62, 45 / 16, 62, 32
    reach = rng.integers(1, 1 << 31, channels)
    limit = 1 << (40 if wide else 20)
    bias = rng.integers(-limit, limit, channels)
    words = s16_requant_words(tuple(int(m) for m in multipliers), tuple(int(s) for s in shifts),
                              bias, reach)
    assert not isinstance(words, str), words
    for c in range(channels):
        acc = np.unique(np.concatenate([[-reach[c], reach[c], 0, -1, 1],
                                        rng.integers(-reach[c], reach[c] + 1, 500)]))
        expected = multiply_by_quantized_multiplier_int64_array(
            acc + bias[c], int(multipliers[c]), int(shifts[c]))
        np.testing.assert_array_equal(_kernel_formula(words[c], acc), expected)


def test_requantisation_declines_what_it_cannot_prove() -> None:
    one = (1 << 30,)
    assert "int32" in s16_requant_words(one, (-5,), np.zeros(1, np.int64),
                                        np.array([1 << 31]))
    assert "shift of 0" in s16_requant_words(one, (0,), np.zeros(1, np.int64), np.array([9]))
    assert "int64" in s16_requant_words(one, (-1,), np.array([1 << 40]), np.array([9]))


CROSS = shutil.which("arm-none-eabi-gcc")


@pytest.mark.skipif(CROSS is None, reason="arm-none-eabi-gcc is not installed")
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7", "cortex-m33"])
def test_kernel_cross_compiles_cleanly(cpu: str, tmp_path: Path) -> None:
    for name, text in kernel_files(["mcuflow_dwconv_s16_dsp"]).items():
        (tmp_path / name).write_text(text)
    fpu = "-mfpu=fpv4-sp-d16" if cpu == "cortex-m4" else "-mfpu=fpv5-sp-d16"
    result = subprocess.run(
        [str(CROSS), f"-mcpu={cpu}", "-mthumb", "-mfloat-abi=hard", fpu, "-std=c99", "-O2",
         "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", "mcuflow_dwconv_s16_dsp.c", "-o",
         "kernel.o"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    code = subprocess.run(["arm-none-eabi-objdump", "-d", "kernel.o"], cwd=tmp_path,
                          capture_output=True, text=True).stdout
    assert "smlad" in code and "smlal" in code


FAMILIES = {"shapes": (shapes, 12), "declines": (declines, 1)}
"""Each graph and how many of its layers run the DSP kernel."""


def test_plane_forms_and_sizes() -> None:
    graph = shapes()
    forms = [dw_s16_plane(graph, op).form for op in graph.operators]
    assert forms[:5] == [FORM_3X3, FORM_3X3_S2, FORM_3X3, FORM_S1, FORM_S2]
    for op in graph.operators:
        plane = dw_s16_plane(graph, op)
        assert plane is not None and plane.columns % 2 == 0
        assert default_kernels(graph, op, dsp=True) == ("mcuflow_dwconv_s16_dsp",)
        assert default_kernels(graph, op, dsp=False) == ("mcuflow_dwconv_s16",)


def test_declined_layers_say_why() -> None:
    graph = declines()
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    layers, _ = emit_layers(graph, plan, dsp=True)
    reasons = " | ".join(str(layer.portable_reason) for layer in layers)
    assert sum(layer.portable_reason is None for layer in layers) == 1
    for reason in ("depth multiplier 2", "dilation 2x2", "stride 3", "shift of 8", "int64"):
        assert reason in reasons


def test_a_plan_without_the_plane_runs_the_portable_kernel() -> None:
    graph = shapes()
    plan = plan_memory(graph, PLAN_SECONDS, dsp=False)
    layers, _ = emit_layers(graph, plan, dsp=True)
    assert all(PORTABLE_CALL in layer.statements[0] and "scratch" in layer.portable_reason
               for layer in layers)


def _calls(project: Path) -> tuple[int, int]:
    source = (project / "mcuflow_model.c").read_text()
    return source.count(KERNEL_CALL), source.count(PORTABLE_CALL)


def _oracles(graph: Graph, plan: object, inputs: list[np.ndarray]
             ) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    litert = litert_interpreter(write_tflite(graph))
    return (reference(graph, plan, inputs),
            [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)])


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_bit_exact_on_the_host(name: str, compiler: str, tmp_path: Path) -> None:
    build, kernels = FAMILIES[name]
    graph = build()
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    project = generate_project(graph, plan, tmp_path / "p", dsp=True)
    assert _calls(project.path) == (kernels, len(graph.operators) - kernels)
    binary = build_host(project.path, sanitize=True, compiler=cached_compiler(compiler),
                        opt_level="-O1")
    inputs = random_inputs(graph, RUNS, seed=len(name))
    actual = run_host(binary, inputs, project.outputs)
    ours, litert = _oracles(graph, plan, inputs)
    assert_same_bits(ours, actual, "the reference interpreter")
    assert_same_bits(litert, actual, "LiteRT")


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm")
@pytest.mark.parametrize("name", list(FAMILIES))
def test_bit_exact_on_cortex_m4(name: str, tmp_path: Path) -> None:
    build, kernels = FAMILIES[name]
    graph = build()
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    project = generate_project(graph, plan, tmp_path / "p", target="cortex-m4",
                               board=get_board("nucleo-f429zi"))
    assert _calls(project.path) == (kernels, len(graph.operators) - kernels)
    inputs = random_inputs(graph, RUNS, seed=len(name))
    run = run_qemu(build_cortexm(project.path, "cortex-m4"), "cortex-m4", inputs,
                   project.outputs)
    ours, litert = _oracles(graph, plan, inputs)
    assert_same_bits(ours, run.outputs, "the reference interpreter")
    assert_same_bits(litert, run.outputs, "LiteRT")
