"""Codebook weights: k-means + canonical Huffman, bit-exact in LiteRT and in the generated C."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mcuflow import api
from mcuflow.codegen.context import CodegenError
from mcuflow.codegen.project import render_project
from mcuflow.errors import McuflowError
from mcuflow.hw.kernels import kernel_scratch
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.codebook import canonical_codes
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.memory.check import check_plan
from mcuflow.memory.execute import run_in_arena
from mcuflow.memory.plan import InPlace, Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.memory.scratch import DECODED_ALIGNMENT
from mcuflow.quant.affine import WEIGHT_AXIS
from mcuflow.quant.codebook import (
    MAX_CODE_BITS,
    compress_graph,
    decode,
    decoder_tables,
    encode,
    huffman_lengths,
    stored_bytes,
    stored_weight_bytes,
)
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.host import random_inputs, verify_host
from tests.support import SHARED_MODELS, assert_litert_bit_exact
from tests.unit.test_cli import assert_user_error, invoke
from tests.unit.test_onnx_reader import Net
from tests.unit.test_quantize import _mixed_model

RNG = np.random.default_rng(5)


def _laplace_codes(shape: tuple[int, ...], spread: float) -> np.ndarray:
    values = RNG.laplace(scale=spread, size=shape)
    return np.clip(np.round(values), -127, 127).astype(np.int8)


# --- Huffman and k-means ----------------------------------------------------------------------


def _assert_prefix_free(lengths: np.ndarray) -> None:
    codes = canonical_codes(lengths)
    words = [format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths, strict=True)]
    for i, a in enumerate(words):
        assert not any(b.startswith(a) for j, b in enumerate(words) if j != i), a


@pytest.mark.parametrize("counts", [[5], [1, 1], [7, 1, 1, 3, 9, 2], list(range(1, 40)),
                                    [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610,
                                     987, 1597, 2584, 4181, 6765, 10946]])
def test_huffman_code_is_complete_canonical_and_prefix_free(counts: list[int]) -> None:
    lengths = huffman_lengths(np.array(counts))
    assert lengths.max() <= MAX_CODE_BITS
    if len(counts) > 1:
        assert sum(2.0 ** -n for n in lengths) == 1.0, "Kraft: a complete code"
    ordered = np.sort(lengths)
    _assert_prefix_free(ordered)


def test_huffman_lengths_are_optimal_when_unconstrained() -> None:
    counts = np.array([45, 13, 12, 16, 9, 5])  # the textbook example (CLRS 16.3)
    lengths = huffman_lengths(counts)
    assert int(np.dot(counts, lengths)) == 224
    fibonacci = np.array([1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597,
                          2584, 4181, 6765])
    assert huffman_lengths(fibonacci, limit=8).max() == 8


@pytest.mark.parametrize("size", [16, 256])
@pytest.mark.parametrize("make", [
    lambda: RNG.integers(-127, 128, (64, 3, 3, 8)).astype(np.int8),
    lambda: _laplace_codes((40, 100), 12.0),
    lambda: _laplace_codes((2000,), 2.0),
    lambda: np.full((5, 7), -3, np.int8),
    lambda: np.array([[0, 127, -127, 1]], np.int8),
])
def test_encode_decode_round_trip(size: int, make: object) -> None:
    codes = make()
    decoded, codebook = encode(codes, size)
    assert decoded.shape == codes.shape and decoded.dtype == np.int8
    np.testing.assert_array_equal(decode(codebook, codes.size), decoded.reshape(-1))
    assert len(codebook.values) <= size and set(np.unique(decoded)) <= set(codebook.values)
    assert np.all(np.diff(codebook.lengths.astype(int)) >= 0)
    _assert_prefix_free(codebook.lengths)
    length_of = dict(zip(codebook.values.tolist(), codebook.lengths.tolist(), strict=True))
    assert codebook.bit_length == sum(length_of[v] for v in decoded.reshape(-1).tolist())
    assert codebook.stream.size == -(-codebook.bit_length // 8)
    if len(np.unique(codes)) <= size:
        np.testing.assert_array_equal(decoded, codes)  # few values: Huffman alone, lossless
    else:
        centroids = np.sort(codebook.values).astype(int)
        nearest = centroids[np.abs(codes.reshape(-1, 1).astype(int) - centroids).argmin(axis=1)]
        np.testing.assert_array_equal(decoded.reshape(-1), nearest)


def test_long_codes_take_the_slow_path_and_round_trip() -> None:
    codes = _laplace_codes((300, 40), 3.0)
    decoded, codebook = encode(codes, 256)
    tables = decoder_tables(codebook)
    assert codebook.max_bits > codebook.lookup_bits and tables.long_codes.size > 0
    np.testing.assert_array_equal(decode(codebook, codes.size), decoded.reshape(-1))
    assert stored_bytes(codebook) < codes.nbytes


def test_compress_graph_compresses_where_it_pays() -> None:
    graph = _codec_graph(seed=1)
    compressed = compress_graph(graph, 16)
    assert stored_weight_bytes(compressed) < stored_weight_bytes(graph)
    assert stored_weight_bytes(graph) == sum(t.nbytes for t in graph.tensors.values()
                                             if t.is_constant)
    for tensor in compressed.tensors.values():
        if tensor.codebook is not None:
            assert stored_bytes(tensor.codebook) < tensor.nbytes
    b = GraphBuilder("tiny", seed=1)
    b.output(b.fully_connected(b.input((1, 4)), 2))
    tiny = b.build()
    kept = compress_graph(tiny, 16)
    weights = _weights_of(kept, OpKind.FULLY_CONNECTED)
    assert kept.tensors[weights].codebook is None, "8 bytes of weights cannot shrink"
    np.testing.assert_array_equal(kept.tensors[weights].data, tiny.tensors[weights].data)
    with pytest.raises(McuflowError, match="codebook size"):
        compress_graph(graph, 1)


# --- graphs: LiteRT, memory plan, generated C ------------------------------------------------


def _weights_of(graph: Graph, kind: OpKind) -> str:
    return next(op.inputs[1] for op in graph.operators if op.kind is kind)


def _codec_graph(seed: int, spread: float = 20.0) -> Graph:
    """conv 3x3, two depthwise (one in place), 1x1 conv, FC; Laplace-shaped conv weights."""
    b = GraphBuilder("codebook", seed=seed)
    x = b.input((1, 12, 12, 8), 0.05, 3)
    y = b.conv2d(x, 48, (3, 3), activation=Activation.RELU6)
    y = b.depthwise_conv2d(y, (3, 3), activation=Activation.RELU6)
    y = b.depthwise_conv2d(y, (3, 3), stride=2)
    y = b.conv2d(y, 40, (1, 1), activation=Activation.RELU)
    y = b.average_pool2d(y, 6, 6)
    y = b.reshape(y, (1, -1))
    b.output(b.fully_connected(y, 4))
    graph = b.build()
    for op in graph.operators:
        if op.kind in WEIGHT_AXIS and op.kind is not OpKind.FULLY_CONNECTED:
            tensor = graph.tensors[op.inputs[1]]
            tensor.data = _laplace_codes(tensor.shape, spread)
    return graph


def _assert_scratch_holds_decoded_weights(plan: Plan) -> None:
    graph = plan.graph
    decoded = 0
    for step in plan.steps:
        op = graph.operators[step.op_index]
        names = [n for n in op.inputs if graph.tensors[n].codebook is not None]
        if not names:
            continue
        kernel = kernel_scratch(graph, op, step.inplace, dsp=False)
        kernel = -(-kernel // DECODED_ALIGNMENT) * DECODED_ALIGNMENT
        assert step.scratch is not None
        assert plan.buffers[step.scratch].size >= kernel + graph.tensors[names[0]].nbytes
        decoded += 1
    assert decoded >= 3


@pytest.mark.parametrize("size", [16, 256])
def test_generated_c_decodes_to_the_bit(size: int) -> None:
    spread = 4.0 if size == 256 else 20.0  # 256 centroids: lossless, rare values, long codes
    graph = compress_graph(_codec_graph(seed=2, spread=spread), size)
    codebooks = [t.codebook for t in graph.tensors.values() if t.codebook is not None]
    if size == 256:
        assert any(decoder_tables(c).long_codes.size for c in codebooks), "the slow path"
    plan = plan_memory(graph, 0.3)
    check_plan(plan)
    _assert_scratch_holds_decoded_weights(plan)
    assert any(s.inplace is InPlace.DEPTHWISE and graph.tensors[
        graph.operators[s.op_index].inputs[1]].codebook is not None for s in plan.steps)
    x = random_inputs(graph, 1, seed=3)[0][0]
    np.testing.assert_array_equal(run_in_arena(plan, [x]).outputs[0],
                                  Interpreter(graph).run([x]).outputs[0])
    result = verify_host(graph, plan, runs=6, seed=4, sanitize=True)
    assert result.bit_exact and result.litert_mismatches == 0, result
    plain = _codec_graph(seed=2, spread=spread)
    _, plain_project = render_project(plain, plan_memory(plain, 0.3))
    assert result.weight_bytes < plain_project.weight_bytes


def test_a_plan_without_room_for_the_decoded_weights_is_refused() -> None:
    graph = _codec_graph(seed=3)
    with pytest.raises(CodegenError, match="decoded weights"):
        render_project(compress_graph(graph, 16), plan_memory(graph, 0.1))


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = Net((1, 3, 8, 8))
    path = tmp_path_factory.mktemp("mixed") / "mixed.onnx"
    path.write_bytes(net.model(_mixed_model(net)))
    return path


def test_codebook_scheme_runs_in_litert_to_the_bit(mixed_model: Path) -> None:
    calibration = RNG.standard_normal((16, 3, 8, 8)).astype(np.float32)
    result = api.quantize_model(mixed_model, calibration, "codebook", codebook_size=16)
    assert any(t.codebook is not None for t in result.graph.tensors.values())
    assert_litert_bit_exact(result, calibration[:4])
    report = result.report
    assert report.scheme == "codebook"
    assert report.stored_weight_bytes < report.unpacked_weight_bytes < report.float_weight_bytes
    assert report.stored_weight_bytes == stored_weight_bytes(result.graph)


def test_kws_float_model_under_codebook_is_bit_exact_in_c() -> None:
    model = SHARED_MODELS / "kws_ref_model_float32.tflite"
    shape = api.load_float_model(model).model_shape("input_1")
    calibration = np.random.default_rng(0).standard_normal((8, *shape[1:])).astype(np.float32)
    result = api.quantize_model(model, calibration, "codebook")
    assert result.report.stored_weight_bytes < 0.7 * result.report.unpacked_weight_bytes
    plan = plan_memory(result.graph, 0.5)
    _assert_scratch_holds_decoded_weights(plan)
    verified = verify_host(result.graph, plan, runs=4, seed=1, sanitize=True)
    assert verified.bit_exact and verified.litert_mismatches == 0, verified


def test_cli_quantize_codebook_reports_stored_bytes(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    np.save(tmp_path / "cal.npy", RNG.standard_normal((4, 640)).astype(np.float32))
    out = tmp_path / "ad01_codebook.tflite"
    code, stdout, _ = invoke(capsys, "quantize", SHARED_MODELS / "ad01_fp32.tflite",
                             "--calibration", tmp_path / "cal.npy", "-o", out,
                             "--scheme", "codebook", "--codebook-size", "256", "--json")
    assert code == 0, stdout
    report = json.loads(stdout)
    assert report["scheme"] == "codebook"
    assert report["stored_weight_bytes"] < report["unpacked_weight_bytes"]
    assert out.is_file()
    code, stdout, _ = invoke(capsys, "quantize", SHARED_MODELS / "ad01_fp32.tflite",
                             "--calibration", tmp_path / "cal.npy", "-o", out,
                             "--scheme", "codebook", "--report")
    assert code == 0 and "B stored" in stdout
    assert_user_error(invoke(capsys, "quantize", SHARED_MODELS / "ad01_fp32.tflite",
                             "--calibration", tmp_path / "cal.npy", "-o", out,
                             "--scheme", "codebook", "--codebook-size", "1"), "codebook size")
