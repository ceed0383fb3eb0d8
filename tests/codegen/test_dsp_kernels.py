"""The Arm DSP kernels are bit-exact with the reference interpreter and LiteRT.

On the host they run on exact C emulations of the DSP instructions (mcuflow_dsp.h), built with
gcc and clang under AddressSanitizer and UndefinedBehaviorSanitizer; the graphs cover the shapes
the kernels specialise on (channel counts and their tails, kernel sizes, strides, padding,
orientations of the depthwise planes, per-channel and per-tensor quantisation, fused
activations). The exact one-multiply requantisation is checked directly against TFLite's
arithmetic, and the kernels are cross-compiled for Cortex-M4 with -Werror and run on QEMU when
the toolchain is installed.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuflow.codegen import dsp
from mcuflow.codegen.project import generate_project, kernel_files
from mcuflow.codegen.render import emit_layers
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.layouts import dw_edge_classes
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, infer_output_shapes
from mcuflow.ir.quantization import INT32_MAX, INT32_MIN, QuantParams
from mcuflow.memory.check import check_plan
from mcuflow.memory.plan import InPlace, Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.memory.scratch import scratch_bytes
from mcuflow.quant.fixedpoint import multiply_by_quantized_multiplier_array, quantize_multiplier
from mcuflow.ref.fully_connected import prepare_fully_connected
from mcuflow.toolchain.host import build_host, random_inputs, run_host
from tests.cc_cache import cached_compiler
from tests.codegen.cases import FAMILIES as COMMON_FAMILIES
from tests.codegen.test_host_ops import assert_same_bits, reference
from tests.support import INT8_MODELS, SHARED_MODELS, litert_interpreter, litert_invoke

RUNS = 6
PLAN_SECONDS = 0.2
DSP_KERNELS = ("mcuflow_conv_dsp.c", "mcuflow_dwconv_dsp.c", "mcuflow_elementwise_dsp.c")


# --- the exact requantisation ------------------------------------------------------------------


def _fast(requant: dsp.FastRequant, acc: np.ndarray, channel: int) -> np.ndarray:
    """The kernels' formula in exact integers: floor((acc M + C + [acc < 0] D) / 2^S)."""
    m, s, c = (requant.multipliers[channel], requant.exponents[channel],
               requant.addends[channel])
    d = requant.negatives[channel]
    values = [(int(a) * m + c + (d if a < 0 else 0)) >> s for a in acc]
    return np.array(values, dtype=np.int64)


def _probe(low: int, high: int, rng: np.random.Generator) -> np.ndarray:
    """Accumulators to compare on: the ends, a dense middle and random ones."""
    middle = np.arange(max(low, -4000), min(high, 4000) + 1)
    return np.unique(np.concatenate([[low, high], middle, rng.integers(low, high + 1, 3000)]))


def _check_requant(requantize: dsp.Requantize, span: dsp.Domain, requant: dsp.FastRequant,
                   act: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    for c in range(len(span.low)):
        acc = _probe(int(span.low[c]), int(span.high[c]), rng)
        expected = np.clip(requantize(np.tile(acc, (len(span.low), 1)))[c], *act)
        got = np.clip(_fast(requant, acc, c), *act)
        if span.constant[c]:  # all-zero weights: the kernel runs the channel with bias 0
            got = np.clip(_fast(requant, np.zeros_like(acc), c), *act)
        bad = acc[got != expected]
        assert bad.size == 0, f"channel {c}: first mismatch at accumulator {bad[:1]}"


@pytest.mark.parametrize("case", ["relu", "none", "narrow", "tiny", "dead"])
def test_conv_requantisation_is_exact(case: str) -> None:
    rng = np.random.default_rng(len(case))
    channels = 12
    scales = rng.uniform(1e-5, 0.4, channels)
    if case == "tiny":
        scales[:4] = [2.0 ** -29, 3e-9, 0.25, 0.125]  # tiny multipliers and exact powers of two
    quantized = [quantize_multiplier(float(s)) for s in scales]
    multipliers = [q.multiplier for q in quantized]
    shifts = [q.shift for q in quantized]
    zero_point = {"relu": -128, "none": 5, "narrow": -20, "tiny": 0, "dead": 3}[case]
    act = {"relu": (-128, 127), "narrow": (-20, 70)}.get(case, (-128, 127))
    reach = rng.integers(1, 200_000, channels)
    offsets = rng.integers(-300_000, 300_000, channels)
    if case == "dead":
        reach[::3] = 0
        offsets[::3] = rng.choice([1 << 30, -(1 << 30)], len(offsets[::3]))
    span = dsp.Domain(offsets - reach, offsets + reach)
    requantize = dsp.conv_function(multipliers, shifts, zero_point)
    requant = dsp.fast_requant(requantize, span, dsp.conv_natural(multipliers, shifts), *act)
    assert requant is not None
    _check_requant(requantize, span, requant, act)
    forced = dsp.fast_requant(requantize, span, dsp.conv_natural(multipliers, shifts), *act,
                              negative=INT32_MIN)
    assert forced is not None and forced.negative == INT32_MIN
    _check_requant(requantize, span, forced, act)


@pytest.mark.parametrize("scale", [0.0046501424, 0.137954523, 0.5 ** 9, 0.375 * 2.0 ** -6])
def test_fully_connected_requantisation_is_exact(scale: float) -> None:
    """LiteRT's double-precision round, ties (exact binary scales) included."""
    span = dsp.Domain(np.array([-2_000_000, -5, 0]), np.array([2_000_000, 100_000, 4096]))
    requantize = dsp.scale_function([scale] * 3, 11)
    requant = dsp.fast_requant(requantize, span, dsp.scale_natural([scale] * 3), -128, 127)
    assert requant is not None
    _check_requant(requantize, span, requant, (-128, 127))


def test_requantisation_declines_left_shifts() -> None:
    """A multiplier above 1/2 on a live channel needs 32 bits: no fast constants."""
    q = quantize_multiplier(0.75)
    span = dsp.Domain(np.array([-1000]), np.array([1000]))
    requantize = dsp.conv_function([q.multiplier], [q.shift], 0)
    natural = dsp.conv_natural([q.multiplier], [q.shift])
    assert dsp.fast_requant(requantize, span, natural, -128, 127) is None


# --- the general requantisation (any scale) ---------------------------------------------------


def _write_kernel_files(directory: Path, sources: tuple[str, ...]) -> None:
    """The kernel files `sources` and the headers they include, as a project holds them."""
    for name, text in kernel_files([Path(source).stem for source in sources]).items():
        (directory / name).write_text(text)


def _run_c(directory: Path, arrays: dict[str, tuple[str, np.ndarray]], body: str, count: int
           ) -> np.ndarray:
    """Compile (gcc, sanitizers, the DSP header's emulations) and run a harness of `body`.

    `arrays` become C arrays (name -> C type, values); `body` prints `count` ints with OUT(x).
    """
    _write_kernel_files(directory, DSP_KERNELS)
    data = "\n".join(f"static const {ctype} {name}[] = {{{', '.join(map(str, values.ravel()))}}};"
                     for name, (ctype, values) in arrays.items())
    (directory / "harness.c").write_text(
        f'#include <stdio.h>\n#include "mcuflow_dsp.h"\n{data}\n'
        "#define OUT(x) printf(\"%ld\\n\", (long)(x))\n"
        f"int main(void)\n{{\n{body}\n    return 0;\n}}\n")
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1",
                    "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-o", "harness",
                    "harness.c"], cwd=directory, check=True, capture_output=True, text=True)
    result = subprocess.run(["./harness"], cwd=directory, check=True, capture_output=True,
                            text=True)
    values = np.array(result.stdout.split(), dtype=np.int64)
    assert len(values) == count
    return values


def _accumulators(rng: np.random.Generator) -> np.ndarray:
    """int32 accumulators: the ends, powers of two and their neighbours, small and random."""
    powers = np.array([1 << k for k in range(31)], np.int64)
    edges = np.concatenate([powers, powers - 1, powers + 1, -powers, -powers - 1, -powers + 1,
                            [0, INT32_MIN, INT32_MAX], np.arange(-300, 301)])
    edges = edges[(edges >= INT32_MIN) & (edges <= INT32_MAX)]
    return np.concatenate([edges, rng.integers(INT32_MIN, INT32_MAX, 400,
                                               endpoint=True)])


def test_exact_requantisation_is_tflite_on_every_accumulator(tmp_path: Path) -> None:
    """mcuflow_dsp_exact equals MultiplyByQuantizedMultiplier + offset, left shifts included."""
    rng = np.random.default_rng(11)
    reals = np.concatenate([2.0 ** rng.uniform(-32, 12, 60), [0.5, 1.0, 2.0, 0.75, 2.0 ** -31,
                                                             1e-12, 0.0, 0.4999999]])
    quantized = [quantize_multiplier(float(r)) for r in reals]
    multipliers = [q.multiplier for q in quantized] + [(1 << 31) - 1, 1 << 30, 1 << 30]
    shifts = [q.shift for q in quantized] + [0, 5, -31]
    offsets = rng.integers(-128, 128, len(multipliers))
    words = dsp.exact_words(multipliers, shifts, 0)
    assert words is not None
    words[:, 3] = offsets
    acc = _accumulators(rng)
    body = ("    for (size_t c = 0; c < sizeof words / sizeof words[0] / 4; ++c)\n"
            "        for (size_t i = 0; i < sizeof acc / sizeof acc[0]; ++i)\n"
            "            OUT(mcuflow_dsp_exact(acc[i], words + 4 * c));")
    got = _run_c(tmp_path, {"words": ("int32_t", words), "acc": ("int32_t", acc)}, body,
                 len(multipliers) * len(acc))
    expected = multiply_by_quantized_multiplier_array(
        acc[None, :], np.array(multipliers)[:, None], np.array(shifts)[:, None])
    expected = np.clip(expected + offsets[:, None], -128, 127).ravel()
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, f"{bad.size} differ, first: channel {bad[0] // len(acc)}, " \
                          f"accumulator {acc[bad[0] % len(acc)]}"


@pytest.mark.parametrize("act", [(-128, 127), (-20, 70), (-128, -128)])
def test_clamped_requantisation_is_exact_for_any_scale(act: tuple[int, int],
                                                       tmp_path: Path) -> None:
    """LiteRT's double round from scale 2^-40 to 2^12 (one multiply after a clamp), in C."""
    rng = np.random.default_rng(act[1] + 200)
    scales = np.concatenate([2.0 ** rng.uniform(-40, 12, 40), [0.5, 1.0, 3.0, 0.75, 1024.0, 0.0,
                                                              2.0 ** -33, 0.49999999]])
    channels = len(scales)
    centre = rng.integers(-3_000_000, 3_000_000, channels)
    reach = rng.integers(0, 5_000_000, channels)
    reach[:4] = 0  # constant channels
    span = dsp.Domain(centre - reach, centre + reach)
    requantize = dsp.scale_function(scales.tolist(), 9)
    clamped = dsp.clamped_requant(requantize, span, scales.tolist(), *act)
    assert clamped is not None
    assert max(clamped.lefts) > 0 or act[0] == act[1], "no accumulator needed shifting"
    probes = [_probe(int(lo), int(hi), rng) for lo, hi in zip(span.low, span.high, strict=True)]
    width = max(len(p) for p in probes)
    acc = np.array([np.resize(p, width) for p in probes], np.int64)
    body = ("    for (size_t c = 0; c < sizeof words / sizeof words[0] / 8; ++c)\n"
            f"        for (size_t i = 0; i < {width}; ++i)\n"
            f"            OUT(mcuflow_dsp_clamped(acc[c * {width} + i], words + 8 * c));")
    got = _run_c(tmp_path, {"words": ("int32_t", clamped.words()), "acc": ("int32_t", acc)},
                 body, acc.size).reshape(acc.shape)
    expected = np.clip(requantize(acc), *act)
    bad = np.argwhere(np.clip(got, *act) != expected)
    assert bad.size == 0, f"channel {bad[0][0]} (scale {scales[bad[0][0]]}): accumulator " \
                          f"{acc[tuple(bad[0])]}"


# --- weight layouts ----------------------------------------------------------------------------


def _lanes(words: np.ndarray) -> np.ndarray:
    """The signed int16 lanes of packed words."""
    return np.stack([words & 0xFFFF, words >> 16], axis=-1).astype(np.uint16).view(np.int16)


@pytest.mark.parametrize("lanes", [dsp.GATHER_WORDS_LANES, dsp.NATURAL_LANES])
def test_pair_packing_holds_a_plus_256_b(lanes: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    weights = rng.integers(-127, 128, (5, 13))
    packed = dsp.pack_pairs(weights, lanes)
    assert packed is not None and packed.shape == (3, 4, 2)
    padded = np.zeros((6, 16), np.int64)
    padded[:5, :13] = weights
    order = np.array(lanes).reshape(2, 2)  # column of each lane of the group's two words
    for p in range(3):
        for g in range(4):
            columns = 4 * g + order
            expected = padded[2 * p, columns] + 256 * padded[2 * p + 1, columns]
            assert (_lanes(packed[p, g]) == expected).all()
            low = (packed[p, g][:, None] >> np.array([0, 16])) & 0xFF
            assert (low.astype(np.uint8).view(np.int8) == padded[2 * p, columns]).all()


def test_pair_packing_refuses_minus_128_under_a_negative_weight() -> None:
    weights = np.array([[-1, 5, 3, 2], [-128, 1, 0, 0]])
    assert dsp.pack_pairs(weights, dsp.GATHER_WORDS_LANES) is None
    assert dsp.pack_pairs(weights[::-1].copy(), dsp.GATHER_WORDS_LANES) is not None


def test_chunks_keep_256_b_inside_int32() -> None:
    small = np.full((4, 2000), 3)
    assert dsp.chunk_groups(small) == 500
    large = np.full((4, 2000), 127)
    assert dsp.chunk_groups(large) * 4 * 128 * 127 < dsp.B_LIMIT


def test_depthwise_taps_are_doubled_int16_pairs() -> None:
    weights = np.arange(-9, 9).reshape(1, 3, 3, 2).astype(np.int8)
    taps = dsp.dw_taps(weights)
    lanes = _lanes(taps)
    assert lanes.shape == (2, 6, 2)
    w = 2 * weights[0, :, :, 1]
    assert lanes[1, 2].tolist() == [w[1, 0], w[1, 1]] and lanes[1, 3].tolist() == [w[1, 1], w[1, 2]]



def test_depthwise_pixel_records_hold_bias_taps_and_words_per_group() -> None:
    weights = np.arange(-15, 15).reshape(1, 3, 2, 5).astype(np.int8)
    bias2 = np.arange(5) * 10
    words = np.arange(20).reshape(5, 4) + 100
    records = dsp.dw_pixel_records(weights, bias2, words)
    assert records.shape == (2, 4 + 2 * 6 + 16) and records.dtype == np.int32
    assert records[1, :4].tolist() == [40, 0, 0, 0]  # channel 4, then the padding
    taps = dsp.dw_pixel_taps(weights).view(np.int32)
    assert records[0, 4:16].tolist() == taps[0].ravel().tolist()
    assert records[1, 16:20].tolist() == [116, 117, 118, 119] and not records[1, 20:].any()

# --- graphs through the DSP kernels on the host ------------------------------------------------


def _strided(b: GraphBuilder, name: str, strides: tuple[int, int]) -> str:
    """Give the layer that made `name` different row and column strides."""
    op = b.graph.operators[-1]
    op.attrs = dataclasses.replace(op.attrs, stride_h=strides[0], stride_w=strides[1])
    b.graph.tensors[name].shape = infer_output_shapes(b.graph, op)[0]
    return name


def conv_channels() -> Graph:
    """Gathered by words per tap or along window rows and value by value, odd channel counts.

    The pointwise layers of 4 to 16 input channels take the small-depth loop, odd pixel counts
    its lone last pixel.
    """
    b = GraphBuilder("dsp_conv_channels", seed=31)
    x = b.input((1, 7, 9, 8), 0.04, -7)
    y = b.input((1, 5, 7, 3), 0.05, 11)
    z = b.input((2, 6, 5, 1), 0.03, -100)
    v = b.input((1, 3, 4, 4), 0.06, 20)
    w = b.input((1, 5, 3, 12), 0.02, -30)
    u = b.input((1, 4, 5, 16), 0.03, 5)
    b.output(
        b.conv2d(x, 8, (3, 3), activation=Activation.RELU),
        b.conv2d(x, 7, (3, 3), stride=2, padding=Padding.VALID, per_channel=False),
        b.conv2d(x, 5, (1, 1)),
        b.conv2d(x, 3, (1, 1), stride=2, activation=Activation.RELU6),
        b.conv2d(x, 6, (5, 3), dilation=2, bias=False),
        b.conv2d(y, 9, (3, 3), stride=2, activation=Activation.RELU_N1_TO_1),
        b.conv2d(y, 1, (2, 2), padding=Padding.VALID),
        b.conv2d(y, 4, (1, 1)),
        b.conv2d(z, 16, (4, 3), stride=2),
        b.conv2d(z, 3, (1, 1), per_channel=False),
        _strided(b, b.conv2d(x, 4, (3, 3)), (1, 2)),
        _strided(b, b.conv2d(z, 5, (3, 2), padding=Padding.VALID), (2, 1)),
        b.conv2d(z, 6, (4, 4), stride=2),
        b.conv2d(z, 5, (2, 4), padding=Padding.VALID),
        b.conv2d(x, 6, (1, 1), per_channel=False),
        b.conv2d(v, 2, (1, 1)),
        b.conv2d(w, 4, (1, 1), activation=Activation.RELU6),
        b.conv2d(u, 10, (1, 1), activation=Activation.RELU),
    )
    return b.build()


def conv_deep() -> Graph:
    """Depths over 512 columns whose second-row sums need extracting chunk by chunk."""
    b = GraphBuilder("dsp_conv_deep", seed=32)
    x = b.input((1, 4, 3, 132), 0.02, 3)
    b.output(b.conv2d(x, 6, (3, 3)), b.conv2d(x, 5, (2, 3), padding=Padding.VALID))
    return b.build()


def depthwise_shapes() -> Graph:
    """3x3 depthwise in both orientations, strides 1 and 2, odd extents, batches."""
    b = GraphBuilder("dsp_depthwise", seed=33)
    wide = b.input((1, 6, 11, 5), 0.03, -9)
    tall = b.input((1, 25, 5, 8), 0.04, 6)
    batch = b.input((2, 7, 6, 3), 0.05, 0)
    b.output(
        b.depthwise_conv2d(wide, (3, 3), activation=Activation.RELU6),
        b.depthwise_conv2d(wide, (3, 3), stride=2, per_channel=False),
        b.depthwise_conv2d(wide, (3, 3), padding=Padding.VALID, bias=False),
        b.depthwise_conv2d(tall, (3, 3), activation=Activation.RELU),
        b.depthwise_conv2d(tall, (3, 3), stride=2),
        b.depthwise_conv2d(batch, (3, 3), stride=2, padding=Padding.VALID),
        b.depthwise_conv2d(batch, (3, 3), activation=Activation.RELU_N1_TO_1),
        _strided(b, b.depthwise_conv2d(tall, (3, 3)), (2, 1)),
        _strided(b, b.depthwise_conv2d(wide, (3, 3)), (1, 2)),
    )
    return b.build()


def fully_connected_shapes() -> Graph:
    """Unit counts off a multiple of 4, depths off a multiple of 4, batches, deep rows."""
    b = GraphBuilder("dsp_fully_connected", seed=34)
    x = b.input((3, 37), 0.02, 4)
    deep = b.input((1, 1100), 0.03, -2)
    b.output(
        b.fully_connected(x, 7),
        b.fully_connected(x, 5, per_channel=True, activation=Activation.RELU),
        b.fully_connected(x, 4, bias=False, keep_num_dims=True),
        b.fully_connected(x, 1, activation=Activation.RELU6),
        b.fully_connected(deep, 9),
    )
    return b.build()


def spread_scales(b: GraphBuilder, name: str) -> str:
    """Spread the per-channel weight scales of the layer that made `name` over 2^-6 .. 2^3."""
    op = b.graph.operators[-1]
    weights = b.graph.tensors[op.inputs[1]]
    factors = 2.0 ** b.rng.uniform(-6, 3, len(weights.quant.scale))
    scales = np.asarray(weights.quant.scale) * factors
    zeros = np.zeros(len(scales), np.int64)
    weights.quant = QuantParams.per_channel(scales, zeros, 0)
    if len(op.inputs) > 2:
        input_scale = b.graph.tensors[op.inputs[0]].quant.scale0
        bias = b.graph.tensors[op.inputs[2]]
        bias.quant = QuantParams.per_channel(input_scale * np.asarray(weights.quant.scale),
                                             zeros, 0)
    return name


def fully_connected_per_channel() -> Graph:
    """Per-channel scales over three decades: depths 1 to 300, 2 to 640 units, batches."""
    b = GraphBuilder("dsp_fully_connected_per_channel", seed=38)
    one = b.input((1, 1), 0.05, 2)
    odd = b.input((3, 37), 0.02, -5)
    wide = b.input((1, 300), 0.03, 7)
    mid = b.input((2, 128), 0.04, -1)
    b.output(
        spread_scales(b, b.fully_connected(one, 3, per_channel=True)),
        spread_scales(b, b.fully_connected(odd, 2, per_channel=True, activation=Activation.RELU6)),
        spread_scales(b, b.fully_connected(odd, 13, per_channel=True, activation=Activation.RELU)),
        spread_scales(b, b.fully_connected(wide, 640, per_channel=True,
                                           activation=Activation.RELU6)),
        spread_scales(b, b.fully_connected(wide, 61, per_channel=True, bias=False)),
        spread_scales(b, b.fully_connected(mid, 640, per_channel=True)),
        spread_scales(b, b.fully_connected(mid, 7, per_channel=True, activation=Activation.RELU,
                                     keep_num_dims=True)),
    )
    return b.build()


def binary_scales(b: GraphBuilder, name: str, exponent: int) -> str:
    """Give the layer that made `name` the scale in * w / out = 2^-exponent exactly.

    Accumulators then land on halves, which LiteRT rounds away from zero: the one-multiply
    requantisation needs its sign correction.
    """
    op = b.graph.operators[-1]
    x, weights, out = (b.graph.tensors[n] for n in (*op.inputs[:2], op.outputs[0]))
    weights.quant = QuantParams.per_tensor(2.0 ** -7, 0)
    product = x.quant.scale0 * 2.0 ** -7
    if len(op.inputs) > 2:
        b.graph.tensors[op.inputs[2]].quant = QuantParams.per_tensor(product, 0)
    out.quant = QuantParams.per_tensor(product * 2.0 ** exponent, out.quant.zero_point0)
    return name


def fully_connected_small() -> Graph:
    """Layers kept in registers: depths up to 8 and 1 to 4 units of 9 or 32 groups.

    With batches, narrow activations, sign corrections, and Duff's device entered part-way
    (9 groups).
    """
    b = GraphBuilder("dsp_fully_connected_small", seed=39)
    short = b.input((3, 6), 0.04, 1)
    eight = b.input((1, 8), 0.03, -3)
    few = b.input((2, 36), 0.02, 5)
    deep = b.input((1, 128), 0.03, 2)
    b.output(
        b.fully_connected(short, 5, activation=Activation.RELU6),
        spread_scales(b, b.fully_connected(eight, 9, per_channel=True)),
        binary_scales(b, b.fully_connected(eight, 6), 10),
        b.fully_connected(few, 1),
        b.fully_connected(few, 2, activation=Activation.RELU),
        spread_scales(b, b.fully_connected(few, 3, per_channel=True)),
        binary_scales(b, b.fully_connected(few, 4), 9),
        binary_scales(b, b.fully_connected(deep, 1), 11),
        b.fully_connected(deep, 3),
    )
    return b.build()


def overscaled(b: GraphBuilder, name: str, low: float, high: float) -> str:
    """Give the layer that made `name` scales in * w / out over [low, high], small weights.

    Per-channel weights get ratios log-uniform over [low, high] (channels with multipliers
    below and above 1/2 side by side); per-tensor ones the geometric mean, through the output
    scale. Weights in -1..1 and biases in -200..200 keep some outputs off the int8 ends.
    """
    op = b.graph.operators[-1]
    x, weights = (b.graph.tensors[n] for n in op.inputs[:2])
    weights.data = b.rng.integers(-1, 2, weights.shape).astype(np.int8)
    out = b.graph.tensors[name]
    in_scale = x.quant.scale0
    if weights.quant.is_per_channel:
        ratios = np.exp(b.rng.uniform(np.log(low), np.log(high), len(weights.quant.scale)))
        scales = ratios * out.quant.scale0 / in_scale
        zeros = np.zeros(len(scales), np.int64)
        weights.quant = QuantParams.per_channel(scales, zeros, weights.quant.axis)
        if len(op.inputs) > 2:
            b.graph.tensors[op.inputs[2]].quant = QuantParams.per_channel(
                in_scale * np.asarray(weights.quant.scale), zeros, 0)
    else:
        out.quant = QuantParams.per_tensor(in_scale * weights.quant.scale0 / np.sqrt(low * high),
                                           out.quant.zero_point0)
    if len(op.inputs) > 2:
        bias = b.graph.tensors[op.inputs[2]]
        bias.data = b.rng.integers(-200, 201, bias.shape).astype(np.int32)
    return name


def general_requant() -> Graph:
    """Multipliers above 1/2, alone or beside small ones: no one-multiply constants exist.

    Gathered by words, by values and padded, 1x1, strided and batched convolutions, per-tensor
    and per-channel; FULLY_CONNECTED with unit counts off a multiple of 4; depthwise 3x3 and
    5x5. (LiteRT refuses a per-tensor FULLY_CONNECTED with a bias at such scales.)
    """
    b = GraphBuilder("dsp_general_requant", seed=39)
    x = b.input((1, 6, 7, 8), 0.05, 3)
    v = b.input((2, 5, 5, 2), 0.04, -9)
    p = b.input((1, 5, 6, 3), 0.05, 1)
    f = b.input((3, 40), 0.03, -4)
    b.output(
        overscaled(b, b.conv2d(x, 9, (3, 3), per_channel=False), 0.6, 0.6),
        overscaled(b, b.conv2d(x, 12, (3, 3), activation=Activation.RELU6), 0.05, 6.0),
        overscaled(b, b.conv2d(x, 7, (1, 1)), 0.2, 40.0),
        overscaled(b, b.conv2d(v, 5, (3, 3), stride=2, per_channel=False), 2.0, 2.0),
        overscaled(b, b.conv2d(p, 4, (2, 2), padding=Padding.VALID), 0.1, 3.0),
        overscaled(b, b.fully_connected(f, 13, per_channel=True), 0.05, 30.0),
        overscaled(b, b.fully_connected(f, 6, bias=False, activation=Activation.RELU), 1.5, 1.5),
        overscaled(b, b.depthwise_conv2d(x, (3, 3)), 0.3, 5.0),
        overscaled(b, b.depthwise_conv2d(x, (5, 5), activation=Activation.RELU), 0.5, 4.0),
        overscaled(b, b.depthwise_conv2d(v, (3, 3), stride=2, per_channel=False), 1.0, 1.0),
    )
    return b.build()


def mobilenet_chain() -> Graph:
    """Chains the planner runs in place: overlapped convolutions, in-place depthwise."""
    b = GraphBuilder("dsp_mobilenet", seed=35)
    x = b.input((1, 20, 12, 3), 0.05, 3)
    y = b.conv2d(x, 8, (3, 3), stride=2, activation=Activation.RELU6)
    y = b.depthwise_conv2d(y, (3, 3), activation=Activation.RELU6)
    y = b.conv2d(y, 16, (1, 1), activation=Activation.RELU)
    y = b.depthwise_conv2d(y, (3, 3), stride=2, activation=Activation.RELU)
    y = b.conv2d(y, 12, (1, 1))
    y = b.reshape(b.average_pool2d(y, 3, 3), (1, -1))
    b.output(b.softmax(b.fully_connected(y, 10)))
    return b.build()


def conv_padded_rows() -> Graph:
    """Window rows gathered by words, rounded up with zero weights (k_w * in_c % 4 != 0).

    A 1x3 row of 6 channels (the Conv1D of a 6-axis IMU), 5x2, 7x1 and 5x5 rows of 1 channel
    (VALID: the last windows' rounded words would pass the input's end), stride 2, SAME windows
    across the edges, batches, and a 3x3 row of 2 channels left value by value.
    """
    b = GraphBuilder("dsp_conv_padded_rows", seed=43)
    imu = b.input((1, 1, 40, 6), 0.05, 3)
    two = b.input((2, 5, 9, 2), 0.04, -11)
    one = b.input((1, 9, 11, 1), 0.03, 17)
    b.output(
        b.conv2d(imu, 8, (1, 3), padding=Padding.VALID, activation=Activation.RELU),
        b.conv2d(imu, 5, (1, 3), stride=2, per_channel=False),
        b.conv2d(two, 7, (3, 5), activation=Activation.RELU6),
        b.conv2d(two, 4, (2, 5), padding=Padding.VALID, bias=False),
        b.conv2d(two, 3, (3, 3)),
        b.conv2d(one, 6, (3, 7), padding=Padding.VALID),
        b.conv2d(one, 9, (4, 7), stride=2),
    )
    return b.build()


def depthwise_dense() -> Graph:
    """Depth multipliers 2 and 3 on 1 to 8 input channels: dilations, strides, kernel sizes.

    The IMU model's 1x3 layer of multiplier 2 and dilation 2, SAME and VALID, per-tensor
    weights, batches, narrow activations; 9 input channels stay on the portable kernel.
    """
    b = GraphBuilder("dsp_depthwise_dense", seed=44)
    imu = b.input((1, 1, 30, 8), 0.04, 0)
    odd = b.input((2, 7, 6, 3), 0.05, -6)
    one = b.input((1, 6, 9, 1), 0.03, 12)
    wide = b.input((1, 5, 5, 9), 0.04, 2)
    b.output(
        b.depthwise_conv2d(imu, (1, 3), dilation=2, depth_multiplier=2,
                           activation=Activation.RELU),
        b.depthwise_conv2d(imu, (1, 3), dilation=2, depth_multiplier=3,
                           padding=Padding.VALID, per_channel=False),
        b.depthwise_conv2d(odd, (3, 3), depth_multiplier=2, activation=Activation.RELU6),
        b.depthwise_conv2d(odd, (3, 3), stride=2, dilation=2, depth_multiplier=3, bias=False),
        b.depthwise_conv2d(odd, (2, 4), depth_multiplier=2, padding=Padding.VALID),
        b.depthwise_conv2d(one, (3, 3), depth_multiplier=5),
        b.depthwise_conv2d(one, (5, 3), stride=2, depth_multiplier=2),
        b.depthwise_conv2d(wide, (3, 3), depth_multiplier=2),
    )
    return b.build()


def fully_connected_few_split() -> Graph:
    """5 to 8 units over depths that are multiples of 4, one input row: two _few calls.

    Sign corrections, per-channel scales, narrow activations; two rows and 9 units keep the
    four-unit kernel.
    """
    b = GraphBuilder("dsp_fully_connected_few_split", seed=45)
    row = b.input((1, 16), 0.04, 11)
    deep = b.input((1, 72), 0.03, -4)
    rows = b.input((2, 16), 0.05, 1)
    b.output(
        b.fully_connected(row, 5),
        spread_scales(b, b.fully_connected(row, 6, per_channel=True,
                                           activation=Activation.RELU)),
        binary_scales(b, b.fully_connected(row, 7), 9),
        b.fully_connected(deep, 8, activation=Activation.RELU6),
        b.fully_connected(deep, 9),
        b.fully_connected(rows, 6),
    )
    return b.build()


def depthwise_edge_classes() -> Graph:
    """Pixel-kernel layers of 9 taps over groups of 4 channels: edge pixels by class.

    Dilated 3x3 (sign corrections, a narrow activation), 1x9 and 9x1 windows, stride 3 SAME
    and VALID, batches; 32 channels on a small plane keep the padding pointers (their classes
    would take too much flash).
    """
    b = GraphBuilder("dsp_depthwise_edge_classes", seed=46)
    small = b.input((1, 8, 8, 8), 0.04, -12)
    two = b.input((2, 7, 9, 4), 0.05, 3)
    deep = b.input((1, 6, 6, 32), 0.03, 5)
    b.output(
        b.depthwise_conv2d(small, (3, 3), dilation=2, activation=Activation.RELU6),
        binary_scales(b, b.depthwise_conv2d(small, (3, 3), dilation=2, per_channel=False), 8),
        b.depthwise_conv2d(small, (1, 9)),
        b.depthwise_conv2d(two, (9, 1), activation=Activation.RELU),
        b.depthwise_conv2d(two, (3, 3), stride=3, bias=False),
        b.depthwise_conv2d(two, (3, 3), stride=3, padding=Padding.VALID, per_channel=False),
        b.depthwise_conv2d(deep, (3, 3), dilation=2),
    )
    return b.build()


FAMILIES = {f.__name__: f for f in (conv_channels, conv_deep, depthwise_shapes,
                                    fully_connected_shapes, fully_connected_per_channel,
                                    fully_connected_small, general_requant, mobilenet_chain)}
FAMILIES |= {f.__name__: f for f in (conv_padded_rows, depthwise_dense,
                                     fully_connected_few_split, depthwise_edge_classes)}
FAMILIES |= {name: COMMON_FAMILIES[name]
             for name in ("depthwise", "elementwise", "residual_and_concat")}


@functools.cache
def planned(name: str) -> tuple[Graph, Plan]:
    graph = FAMILIES[name]()
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    check_plan(plan)
    return graph, plan


FC_DSP = ("mcuflow_fully_connected_dsp", "mcuflow_fully_connected_short_dsp",
          "mcuflow_fully_connected_few_dsp")


def _dsp_calls(project_dir: Path) -> int:
    source = (project_dir / "mcuflow_model.c").read_text()
    return sum(source.count(f"{stem}_s8(") for stem in (
        "mcuflow_conv2d_dsp", "mcuflow_dwconv_3x3_dsp", *FC_DSP,
        "mcuflow_add_dsp", "mcuflow_dwconv_dense_dsp"))


def _run_on_host(graph: Graph, plan: Plan, directory: Path, compiler: str, seed: int
                 ) -> tuple[list[np.ndarray], list[np.ndarray], Path]:
    project = generate_project(graph, plan, directory, dsp=True)
    binary = build_host(project.path, sanitize=True, compiler=cached_compiler(compiler),
                        opt_level="-O1")
    inputs = random_inputs(graph, RUNS, seed)
    return inputs, run_host(binary, inputs, project.outputs), project.path


BOTH_COMPILERS = ("mobilenet_chain", "residual_and_concat")
"""Families built with gcc and clang; the others alternate between them (each kernel's C is
still compiled by both, under both sanitizers, through the families that share it)."""
BUILDS = [(name, compiler) for index, name in enumerate(sorted(FAMILIES))
          for compiler in (("gcc", "clang") if name in BOTH_COMPILERS
                           else (("gcc", "clang")[index % 2],))]


@pytest.mark.parametrize(("name", "compiler"), BUILDS, ids=[f"{n}-{c}" for n, c in BUILDS])
def test_family_is_bit_exact_through_the_dsp_kernels(name: str, compiler: str,
                                                    tmp_path: Path) -> None:
    graph, plan = planned(name)
    inputs, actual, project = _run_on_host(graph, plan, tmp_path / "p", compiler, len(name))
    conv_like = sum(op.kind in (OpKind.CONV_2D, OpKind.FULLY_CONNECTED, OpKind.ADD, OpKind.SUB)
                    for op in graph.operators)
    assert _dsp_calls(project) >= conv_like, "a layer fell back to the portable kernels"
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(write_tflite(graph))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")


PORTABLE_CALLS = ("mcuflow_conv2d_s8(", "mcuflow_conv2d_1x1_s8(", "mcuflow_fully_connected_s8(",
                  "mcuflow_dwconv_s8(", "mcuflow_dwconv_3x3_s8(", "mcuflow_dwconv_inplace_s8(")


def _saturated_share(outputs: list[list[np.ndarray]]) -> float:
    """The largest share of -128 / 127 among the outputs (1.0: nothing is really tested)."""
    shares = [np.isin(np.stack([run[i] for run in outputs]), (-128, 127)).mean()
              for i in range(len(outputs[0]))]
    return float(max(shares))


def test_general_requantisation_keeps_the_dsp_kernels(tmp_path: Path) -> None:
    """Every layer of general_requant calls a DSP kernel in a general mode, bit-exact.

    CONV_2D and depthwise run TFLite's arithmetic (EXACT), FULLY_CONNECTED the clamped formula
    (CLAMPED); enough outputs stay off the int8 ends for the comparison to mean something.
    """
    graph, plan = planned("general_requant")
    inputs, actual, project = _run_on_host(graph, plan, tmp_path / "p", "gcc", 4)
    source = (project / "mcuflow_model.c").read_text()
    assert not [call for call in PORTABLE_CALLS if call in source]
    assert ".mode = 1" in source and ".mode = 2" in source and ".exact = 1" in source
    assert ".mode = 0" not in source and ".mode = 3" not in source
    expected = reference(graph, plan, inputs)
    assert _saturated_share(expected) < 0.9
    assert_same_bits(expected, actual, "the reference interpreter")
    layers, _ = emit_layers(graph, plan, dsp=True)
    assert all(layer.portable_reason is None for layer in layers)


def test_fully_connected_falls_back_to_the_double_round(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without clamped constants, FULLY_CONNECTED rounds in double precision (SCALED)."""
    monkeypatch.setattr(dsp, "clamped_requant", lambda *args: None)
    b = GraphBuilder("dsp_scaled", seed=40)
    f = b.input((3, 40), 0.03, -4)
    b.output(overscaled(b, b.fully_connected(f, 13, per_channel=True), 0.05, 30.0),
             overscaled(b, b.fully_connected(f, 6, bias=False, activation=Activation.RELU6),
                        0.7, 0.7))
    graph = b.build()
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    inputs, actual, project = _run_on_host(graph, plan, tmp_path / "p", "clang", 5)
    source = (project / "mcuflow_model.c").read_text()
    assert source.count(".mode = 3") == 2 and "mcuflow_fully_connected_s8(" not in source
    expected = reference(graph, plan, inputs)
    assert _saturated_share(expected) < 0.9
    assert_same_bits(expected, actual, "the reference interpreter")
    litert = litert_interpreter(write_tflite(graph))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")


def _fc_requant(graph: Graph, op: Operator, per_row: bool, rows: int | None = None
                ) -> tuple[dsp.Requantize, dsp.Domain, dsp.FastRequant | None, tuple[int, int]]:
    """The DSP constants of a FULLY_CONNECTED's first `rows` rows (default: all)."""
    x, weights, out = (graph.tensors[name] for name in (*op.inputs[:2], op.outputs[0]))
    params = prepare_fully_connected(x, weights, out, op.attrs)
    matrix = weights.data[:rows].astype(np.int64)
    bias = params.input_offset * matrix.sum(axis=1)
    if len(op.inputs) > 2:
        bias += graph.tensors[op.inputs[2]].data[:rows].astype(np.int64)
    span = dsp.domain(matrix, bias)
    scales = params.scales[:rows]
    requantize = dsp.scale_function(scales, params.output_offset)
    act = (params.act_min, params.act_max)
    requant = dsp.fast_requant(requantize, span, dsp.scale_natural(scales), *act,
                               per_row=per_row)
    return requantize, span, requant, act


def test_per_channel_scales_get_a_sign_correction_per_row() -> None:
    """Spread scales: some layer has no D that suits every row; one per row is exact."""
    graph = fully_connected_per_channel()
    needing = [op for op in graph.operators if _fc_requant(graph, op, False)[2] is None]
    assert needing
    for op in needing:
        requantize, span, requant, act = _fc_requant(graph, op, True, rows=48)
        assert requant is not None
        _check_requant(requantize, span, requant, act)


def test_per_channel_fully_connected_keeps_the_dsp_kernel(tmp_path: Path) -> None:
    """Every layer calls the DSP kernel; the spread scales need per-row sign corrections."""
    graph, plan = planned("fully_connected_per_channel")
    project = generate_project(graph, plan, tmp_path / "p", dsp=True)
    source = (project.path / "mcuflow_model.c").read_text()
    assert sum(source.count(f"{stem}_s8(") for stem in FC_DSP) == len(graph.operators)
    assert "mcuflow_fully_connected_s8(" not in source and ".negatives = " in source


def test_small_fully_connected_layers_stay_in_registers(tmp_path: Path) -> None:
    """Depths up to 8 and layers of at most 4 units call the kernels in registers."""
    graph, plan = planned("fully_connected_small")
    source = (generate_project(graph, plan, tmp_path / "p", dsp=True).path
              / "mcuflow_model.c").read_text()
    assert source.count("mcuflow_fully_connected_short_dsp_s8(") == 3
    assert source.count("mcuflow_fully_connected_few_dsp_s8(") == 6
    assert ".ties = 1" in source and ".narrow = 1" in source


def test_new_dsp_paths_are_the_ones_chosen(tmp_path: Path) -> None:
    """Padded window rows, the dense depthwise product and the split _few calls run."""
    sources = {}
    for name in ("conv_padded_rows", "depthwise_dense", "fully_connected_few_split"):
        graph, plan = planned(name)
        sources[name] = (generate_project(graph, plan, tmp_path / name, dsp=True).path
                         / "mcuflow_model.c").read_text()
    rows = sources["conv_padded_rows"]
    assert rows.count("mcuflow_conv2d_dsp_s8(") == 7
    assert rows.count(".gather = 3") == 6 and rows.count(".gather = 0") == 1
    dense = sources["depthwise_dense"]
    assert dense.count("mcuflow_dwconv_dense_dsp_s8(") == 7 and "mcuflow_dwconv_s8(" in dense
    few = sources["fully_connected_few_split"]
    assert few.count("mcuflow_fully_connected_few_dsp_s8(") == 8
    assert few.count("mcuflow_fully_connected_dsp_s8(") == 2 and ".ties = 1" in few


def test_small_depthwise_edges_run_by_class(tmp_path: Path) -> None:
    """Edge classes where they fit, also for the 3x3 layer the planner overlaps with its input.

    The small layer of an 8x8x8 image (RELU6) in place with OVERLAP is bit-exact with LiteRT.
    """
    graph, plan = planned("depthwise_edge_classes")
    source = (generate_project(graph, plan, tmp_path / "family", dsp=True).path
              / "mcuflow_model.c").read_text()
    assert source.count("mcuflow_dwconv_dsp_s8(") == 7 and source.count(".edges = ") == 6
    b = GraphBuilder("dsp_depthwise_classes_in_place", seed=47)
    x = b.input((1, 8, 8, 3), 0.05, 2)
    y = b.conv2d(x, 8, (1, 1), activation=Activation.RELU)
    y = b.depthwise_conv2d(y, (3, 3), activation=Activation.RELU6)
    b.output(b.conv2d(y, 5, (1, 1)))
    chain = b.build()
    plan = plan_memory(chain, PLAN_SECONDS, kinds=frozenset({InPlace.OVERLAP}), dsp=True)
    assert InPlace.OVERLAP in {step.inplace for step in plan.steps}
    inputs, actual, project = _run_on_host(chain, plan, tmp_path / "chain", "gcc", 4)
    assert ".edges = " in (project / "mcuflow_model.c").read_text()
    litert = litert_interpreter(write_tflite(chain))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")


def test_edge_classes_of_a_small_same_layer() -> None:
    """3x3 SAME on 8x8x8: top, inside and bottom rows by left, inside and right columns."""
    b = GraphBuilder("dsp_edge_classes", seed=48)
    b.output(b.depthwise_conv2d(b.input((1, 8, 8, 8), 0.04, 1), (3, 3)))
    graph = b.build()
    classes = dw_edge_classes(graph, graph.operators[0])
    assert classes is not None and classes.count == 9
    assert classes.rows == (2, 0, 0, 0, 0, 0, 0, 1) and classes.columns == classes.rows
    assert classes.row_ranges == ((0, 3), (0, 2), (1, 3)) and classes.runs() == 8 * 3
    wide = GraphBuilder("dsp_edge_classes_wide", seed=48)
    wide.output(wide.depthwise_conv2d(wide.input((1, 8, 8, 32), 0.04, 1), (3, 3)))
    too_big = wide.build()
    assert dw_edge_classes(too_big, too_big.operators[0]) is None


def test_dense_depthwise_weights_keep_each_channel_in_its_input() -> None:
    rng = np.random.default_rng(3)
    weights = rng.integers(-128, 128, (1, 2, 3, 6)).astype(np.int8)
    dense = dsp.dense_depthwise(weights, 3)
    assert dense.shape == (6, 2, 3, 2)
    for o in range(6):
        np.testing.assert_array_equal(dense[o, :, :, o // 3], weights[0, :, :, o])
        assert not dense[o, :, :, 1 - o // 3].any()


def _depthwise_chain(exact: bool = False) -> Graph:
    """A depthwise layer between convolutions, the planner free to run it in place."""
    b = GraphBuilder("dsp_depthwise_in_place", seed=37)
    x = b.input((1, 9, 7, 12), 0.05, 2)
    y = b.conv2d(x, 12, (1, 1), activation=Activation.RELU)
    y = b.depthwise_conv2d(y, (3, 3), activation=Activation.RELU6)
    if exact:
        y = overscaled(b, y, 0.3, 4.0)
    b.output(b.conv2d(y, 5, (1, 1)))
    return b.build()


DEPTHWISE_KERNELS = [(InPlace.OVERLAP, "mcuflow_dwconv_dsp_s8("),
                     (InPlace.DEPTHWISE, "mcuflow_dwconv_3x3_dsp_s8("),
                     (InPlace.NONE, "mcuflow_dwconv_3x3_dsp_s8(")]


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
@pytest.mark.parametrize(("kind", "kernel"), DEPTHWISE_KERNELS[:2])
def test_depthwise_runs_in_place_through_its_dsp_kernel(kind: InPlace, kernel: str, exact: bool,
                                                       tmp_path: Path) -> None:
    """Pixel order keeps OVERLAP's contract, channel order DEPTHWISE's.

    In either requantisation (exact: multipliers above 1/2, TFLite's arithmetic).
    """
    graph = _depthwise_chain(exact)
    plan = plan_memory(graph, PLAN_SECONDS, kinds=frozenset({kind}), dsp=True)
    assert kind in {step.inplace for step in plan.steps}
    inputs, actual, project = _run_on_host(graph, plan, tmp_path / "p", "gcc", 9)
    source = (project / "mcuflow_model.c").read_text()
    assert kernel in source and (".exact = 1" in source) == exact
    expected = reference(graph, plan, inputs)
    assert _saturated_share(expected) < 0.9
    assert_same_bits(expected, actual, "the reference interpreter")


@pytest.mark.parametrize(("kind", "kernel"), DEPTHWISE_KERNELS[1:])
def test_exact_depthwise_planes_are_bit_exact_with_litert(kind: InPlace, kernel: str,
                                                          tmp_path: Path) -> None:
    """The channel-by-channel 3x3 kernel (both orientations, strides) in EXACT mode."""
    b = GraphBuilder("dsp_exact_planes", seed=41)
    wide = b.input((1, 6, 11, 5), 0.03, -9)
    tall = b.input((1, 25, 5, 8), 0.04, 6)
    b.output(overscaled(b, b.depthwise_conv2d(wide, (3, 3), activation=Activation.RELU6),
                        0.2, 6.0),
             overscaled(b, b.depthwise_conv2d(tall, (3, 3), stride=2), 0.5, 3.0),
             overscaled(b, b.depthwise_conv2d(tall, (3, 3), per_channel=False), 0.8, 0.8))
    graph = b.build()
    plan = plan_memory(graph, PLAN_SECONDS, kinds=frozenset({kind}), dsp=True)
    inputs, actual, project = _run_on_host(graph, plan, tmp_path / "p", "gcc", 6)
    source = (project / "mcuflow_model.c").read_text()
    assert source.count(kernel) == 3 and source.count(".exact = 1") == 3
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(write_tflite(graph))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")


def test_weights_the_packing_cannot_hold_fall_back_to_portable(tmp_path: Path) -> None:
    b = GraphBuilder("dsp_fallback", seed=36)
    x = b.input((1, 5, 5, 4), 0.05, 1)
    b.output(b.conv2d(x, 2, (3, 3)))
    graph = b.build()
    weights = graph.tensors[graph.operators[0].inputs[1]].data
    weights[0, 0, 0, 0], weights[1, 0, 0, 0] = -3, -128
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    inputs, actual, project = _run_on_host(graph, plan, tmp_path / "p", "gcc", 1)
    assert _dsp_calls(project) == 0
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    layers, _ = emit_layers(graph, plan, dsp=True)
    assert layers[0].portable_reason is not None and "-128" in layers[0].portable_reason


def test_portable_steps_of_a_dsp_core_say_why() -> None:
    """A depth multiplier of 2, a plan without DSP scratch; DSP steps and host builds: None."""
    b = GraphBuilder("dsp_reasons", seed=42)
    x = b.input((1, 6, 6, 12), 0.05, 1)
    y = b.depthwise_conv2d(x, (3, 3), depth_multiplier=2)
    b.output(b.conv2d(y, 6, (3, 3)), b.depthwise_conv2d(x, (3, 3)))
    graph = b.build()

    def reasons(plan: Plan, dsp: bool) -> list[str | None]:  # in graph order
        layers = emit_layers(graph, plan, dsp=dsp)[0]
        by_op = {step.op_index: layer for step, layer in zip(plan.steps, layers, strict=True)}
        return [by_op[i].portable_reason for i in range(len(graph.operators))]

    dsp_plan = plan_memory(graph, PLAN_SECONDS, kinds=frozenset({InPlace.NONE}), dsp=True)
    found = reasons(dsp_plan, True)
    assert found[0].startswith("depth multiplier 2, and more than 8 input channels")
    assert found[1:] == [None, None]
    host_plan = plan_memory(graph, PLAN_SECONDS, kinds=frozenset({InPlace.NONE}))
    assert reasons(host_plan, False) == [None, None, None]
    found = reasons(host_plan, True)  # a plan made without the DSP scratch rules
    assert found[0].startswith("depth multiplier 2") and "scratch" in found[1]


def test_plans_for_dsp_hold_the_larger_scratch() -> None:
    graph, plan = planned("conv_channels")
    for step in plan.steps:
        op = graph.operators[step.op_index]
        needed = scratch_bytes(graph, op, step.inplace, dsp=True)
        assert needed >= scratch_bytes(graph, op, step.inplace)
        if needed:
            assert plan.buffers[step.scratch].size >= needed


@pytest.mark.parametrize("name", INT8_MODELS)
def test_shared_model_is_bit_exact_through_the_dsp_kernels(name: str, tmp_path: Path) -> None:
    path = SHARED_MODELS / name
    graph = read_tflite(path)
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    inputs, actual, project = _run_on_host(graph, plan, tmp_path / "p", "gcc", 5)
    assert _dsp_calls(project) > 0
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(path)
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")


# --- Cortex-M ---------------------------------------------------------------------------------

CROSS = shutil.which("arm-none-eabi-gcc")


@pytest.mark.skipif(CROSS is None, reason="arm-none-eabi-gcc is not installed")
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7", "cortex-m33"])
@pytest.mark.parametrize("source", DSP_KERNELS)
def test_dsp_kernels_cross_compile_cleanly(cpu: str, source: str, tmp_path: Path) -> None:
    _write_kernel_files(tmp_path, (source,))
    result = subprocess.run(
        [CROSS, f"-mcpu={cpu}", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"
         if cpu != "cortex-m4" else "-mfpu=fpv4-sp-d16", "-std=c99", "-O2", "-Wall", "-Wextra",
         "-Werror", "-pedantic", "-c", source, "-o", "kernel.o"],
        cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    symbols = subprocess.run(["arm-none-eabi-objdump", "-d", "kernel.o"], cwd=tmp_path,
                             capture_output=True, text=True).stdout
    assert "smla" in symbols  # SMLAD / SMLABB / SMLAL: the DSP multiply-accumulates


QEMU = shutil.which("qemu-system-arm")


@pytest.mark.skipif(CROSS is None or QEMU is None, reason="the Arm toolchain or QEMU is missing")
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7", "cortex-m33"])
@pytest.mark.parametrize("name", ["conv_channels", "depthwise_shapes", "fully_connected_shapes",
                                  "fully_connected_per_channel", "fully_connected_small",
                                  "general_requant", "conv_padded_rows", "depthwise_dense",
                                  "fully_connected_few_split", "depthwise_edge_classes"])
def test_family_is_bit_exact_on_qemu(name: str, target: str) -> None:
    from mcuflow.toolchain.qemu import default_board, verify_cortexm

    graph, plan = planned(name)
    board = "nucleo-f767zi" if target == "cortex-m33" else default_board(target)
    result = verify_cortexm(graph, plan, target, board, runs=3, seed=2)
    assert result.bit_exact, f"{result.mismatches} of {result.runs} runs differ"
