"""The int16x8 DSP kernels (mcuflow_s16_dsp.c) are bit-exact with the reference and LiteRT.

On the host they run on the exact C emulations of the DSP instructions under the sanitizers
(gcc and clang) over tests/codegen/cases.py's int16x8_dsp family, which reaches every branch:
odd and even channel counts, edges, dilation, the wide CONV_2D requantisation, FULLY_CONNECTED's
integer requantisation with its double-precision band and its double-only form, and the layers
whose sums can leave int32 (int64 sums of int32 chunks). The requantisation words are checked
here against LiteRT's arithmetic on many accumulators, ties included.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pytest

from mcuflow.codegen import emit_s16_dsp as s16
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.render import emit_layers
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.kernels import default_kernels
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.quant.fixedpoint import (
    multiply_by_quantized_multiplier_int64_array,
    scale_and_round_array,
)
from mcuflow.toolchain.host import build_host, random_inputs, run_host
from tests.cc_cache import cached_compiler
from tests.codegen.cases import FAMILIES
from tests.codegen.test_host_ops import assert_same_bits, reference
from tests.support import litert_interpreter, litert_invoke

RUNS = 6
PLAN_SECONDS = 0.2
FAMILY = "int16x8_dsp"
CONV_DSP, FC_DSP = "mcuflow_conv2d_s16_dsp(", "mcuflow_fully_connected_s16_dsp("


@functools.cache
def planned() -> tuple[Graph, Plan]:
    graph = FAMILIES[FAMILY]()
    return graph, plan_memory(graph, PLAN_SECONDS, dsp=True)


def _structs(source: str) -> list[str]:
    return re.findall(r"static const mcuflow_s16_dsp_t \w+ = \{[^}]*\}", source)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_family_is_bit_exact_through_the_s16_dsp_kernels(compiler: str, tmp_path: Path) -> None:
    graph, plan = planned()
    project = generate_project(graph, plan, tmp_path / "p", dsp=True)
    source = (project.path / "mcuflow_model.c").read_text()
    convs = sum(op.kind is OpKind.CONV_2D for op in graph.operators)
    fcs = sum(op.kind is OpKind.FULLY_CONNECTED for op in graph.operators)
    assert source.count(CONV_DSP) == convs and source.count(FC_DSP) == fcs
    assert "mcuflow_conv2d_s16(" not in source and "mcuflow_fully_connected_s16(" not in source
    structs = _structs(source)
    chunked = [s for s in structs if ".chunk_groups" in s]
    assert len(chunked) == 2 and any(".depth" in s for s in chunked)
    assert any(".wide = 1" in s for s in structs) and any(".wide = 0" in s for s in structs)
    fc_structs = [s for s in structs if ".depth" in s]
    assert any(".rq" not in s for s in fc_structs) and any(".rq" in s for s in fc_structs)
    small = {int(m) for s in fc_structs if ".rq" in s
             for m in re.findall(r"\.groups = (\d+)", s) if int(m) <= s16.SMALL_GROUPS}
    assert small == {1, 2, 3, 4}
    binary = build_host(project.path, sanitize=True, compiler=cached_compiler(compiler),
                        opt_level="-O1")
    inputs = random_inputs(graph, RUNS, 5)
    actual = run_host(binary, inputs, project.outputs)
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(write_tflite(graph))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")


def test_no_layer_of_the_family_falls_back_to_a_portable_kernel() -> None:
    graph, plan = planned()
    layers, _ = emit_layers(graph, plan, dsp=True)
    assert all(layer.portable_reason is None for layer in layers)


def test_chunks_keep_every_partial_sum_inside_int32() -> None:
    rng = np.random.default_rng(8)
    weights = rng.integers(-127, 128, (5, 1500))
    chunk = s16.chunk_groups(weights)
    padded = np.pad(weights, ((0, 0), (0, -1500 % 4)))
    for size, fits in ((chunk, True), (chunk + 1, False)):
        chunks = [padded[:, start:start + 4 * size] for start in range(0, 1500, 4 * size)]
        assert all(s16.int32_sums(c) for c in chunks) is fits
    assert s16.chunk_groups(weights[:, :400]) == 0


def test_the_dsp_kernels_are_the_default_choice_on_dsp_cores() -> None:
    graph, _ = planned()
    for op in graph.operators:
        if op.kind is OpKind.CONV_2D:
            assert default_kernels(graph, op, True) == ("mcuflow_conv2d_s16_dsp",)
            assert default_kernels(graph, op, False) == ("mcuflow_conv2d_s16",)
        if op.kind is OpKind.FULLY_CONNECTED:
            assert default_kernels(graph, op, True) == ("mcuflow_fully_connected_s16_dsp",)
            assert default_kernels(graph, op, False) == ("mcuflow_fully_connected_s16",)


def test_int32_sums_hold_exactly_up_to_the_limit() -> None:
    negative = np.full((1, 65535), -1, np.int8)  # largest sum 32768 * 65535 < 2^31
    assert s16.int32_sums(negative)
    assert not s16.int32_sums(np.full((1, 65536), -1, np.int8))
    positive = np.full((1, 65537), 1, np.int8)  # 32767 * 65537 < 2^31, -32768 * 65537 below
    assert not s16.int32_sums(positive)
    assert s16.int32_sums(np.full((1, 65536), 1, np.int8))


def test_weights_are_int16_pairs_in_the_order_the_loops_read() -> None:
    matrix = np.arange(1, 16, dtype=np.int64).reshape(3, 5) * np.array([1, -1, 1, -1, 1])
    words = s16.pack_s16(matrix, 2)
    halves = words.view(np.int16).reshape(-1)
    # pair (0, 1): group 0 then group 1 (columns 4..7, zero past 5); then row 2 with a zero row
    expected = [*matrix[0, :4], *matrix[1, :4], matrix[0, 4], 0, 0, 0, matrix[1, 4], 0, 0, 0,
                *matrix[2, :4], 0, 0, 0, 0, matrix[2, 4], 0, 0, 0, 0, 0, 0, 0]
    assert halves.tolist() == expected


@pytest.mark.parametrize("wide", [False, True])
def test_conv_requantisation_is_litert_on_every_probed_accumulator(wide: bool) -> None:
    rng = np.random.default_rng(3 + wide)
    channels = 6
    multipliers = tuple(int(m) for m in rng.integers(1 << 30, (1 << 31) - 1, channels))
    shifts = tuple(int(s) for s in (rng.integers(-1, 2, channels) if wide
                                    else rng.integers(-14, -2, channels)))
    bias = rng.integers(-(1 << 34), 1 << 34, channels)
    requant = s16.s16_requant(multipliers, shifts, bias)
    assert requant is not None and requant.wide is wide
    acc = np.concatenate([rng.integers(-(1 << 31), 1 << 31, (channels, 400)),
                          rng.integers(-5000, 5000, (channels, 400))], axis=1)
    want = np.clip(multiply_by_quantized_multiplier_int64_array(
        acc + bias[:, None], np.array(multipliers)[:, None], np.array(shifts)[:, None]),
        -32768, 32767)
    words = requant.words.astype(np.int64)
    addend = [(int(hi) & 0xFFFFFFFF) << 32 | (int(lo) & 0xFFFFFFFF) for lo, hi in words[:, 2:4]]
    addend = [a - (1 << 64) if a >= 1 << 63 else a for a in addend]
    got = []
    for c in range(channels):
        shift = int(words[c, 1]) if wide else 32
        values = [(int(a) * int(words[c, 0]) + addend[c]) >> shift for a in acc[c]]
        got.append([((v + (1 << 31)) % (1 << 32)) - (1 << 31) for v in values])
    np.testing.assert_array_equal(np.clip(np.array(got), -32768, 32767), want)


def test_conv_requantisation_declines_int64_overflow() -> None:
    assert s16.s16_requant((1 << 30,), (-3,), np.array([1 << 60])) is None


def _fc_kernel(words: list[int], sums: list[int], scale: float, bias: int) -> tuple[int, int]:
    """mcuflow_s16_fc_fixed in exact integers: (outputs that disagree, outputs sent to double)."""
    multiplier, r, low, high, gap, span = words
    addend = (high << 32 | low) - ((1 << 64) if high >= 1 << 31 else 0)
    want = scale_and_round_array(np.array(sums, np.int64) + bias, scale)
    wrong = slow = 0
    for s, w in zip(sums, want.tolist(), strict=True):
        t = s * multiplier + addend
        fraction = (t >> r) & 0xFFFFFFFF
        if (fraction - gap) % (1 << 32) > span:
            slow += 1
        elif t >> (32 + r) != w:
            wrong += 1
    return wrong, slow


@pytest.mark.parametrize("scale", [2.0 ** -3, 2.0 ** -11, 0.2499, 3.1e-5, 1.7e-3])
def test_fc_integer_requantisation_is_litert_outside_its_band(scale: float) -> None:
    rng = np.random.default_rng(int(scale * 1e6))
    bias, reach = int(rng.integers(-40000, 40000)), 1 << 30
    words = s16.fc_unit_words(scale, bias, reach + abs(bias))
    assert words is not None
    sums = rng.integers(-reach, reach, 20000).tolist()
    ties = [int(round((k + 0.5) / scale)) - bias for k in range(-3000, 3000)]
    sums += [s + d for s in ties for d in (-1, 0, 1) if abs(s + d) < reach]
    wrong, slow = _fc_kernel(words, sums, scale, bias)
    assert wrong == 0
    assert slow < len(sums) // 2


def test_fc_exact_ties_take_the_double_path() -> None:
    words = s16.fc_unit_words(0.125, 0, 1 << 20)
    assert words is not None
    wrong, slow = _fc_kernel(words, [4, -4, 12, -12, 3, 5], 0.125, 0)
    assert (wrong, slow) == (0, 4)


def test_fc_scales_of_a_quarter_or_more_keep_the_double_round() -> None:
    assert s16.fc_unit_words(0.25, 0, 1000) is None
    assert s16.fc_unit_words(0.25 - 2.0 ** -40, 0, 1000) is None  # M would round to 2^31
    assert s16.fc_requant((0.3, 0.1, 0.1), np.zeros(3, np.int64), np.ones((3, 8))) is None
    assert s16.fc_requant((0.2, 0.1, 0.1), np.zeros(3, np.int64), np.ones((3, 8))) is not None
