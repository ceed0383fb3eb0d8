"""A small segmentation decoder as TensorFlow's converter writes it, bit-exact against LiteRT.

Keras 3's UpSampling2D (ops.repeat: EXPAND_DIMS, TILE, RESHAPE per axis) twice, RESIZE_BILINEAR,
a pixel shuffle (DEPTH_TO_SPACE) and CONCATENATION skips. Read through the API, each pair of
repeats becomes one RESIZE_NEAREST_NEIGHBOR; both the graph as written and the rewritten one
equal LiteRT's outputs for the written model, in the reference and in C.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuflow import api
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import BlockAttrs, OpKind, ResizeBilinearAttrs, TileAttrs
from mcuflow.memory.planner import plan_memory
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.host import random_inputs, verify_host
from tests.support import litert_interpreter, litert_invoke

SHAPE = (1, 8, 8, 3)
RUNS = 6


def repeat(b: GraphBuilder, x: str, axis: int, factor: int) -> str:
    """tf.repeat(x, factor, axis) as converted: a unit axis after `axis`, TILE, RESHAPE."""
    shape = b.graph.tensors[x].shape
    multiples = [1] * (len(shape) + 1)
    multiples[axis + 1] = factor
    expanded = b.expand_dims(x, axis + 1)
    tiled = b.op(OpKind.TILE, [expanded], TileAttrs(tuple(multiples)), b.quant(x))
    merged = (*shape[:axis], shape[axis] * factor, *shape[axis + 1:])
    return b.reshape(tiled, merged)


def _like(b: GraphBuilder, x: str, like: str) -> str:
    quant = b.quant(like)
    return b.quantize(x, quant.scale0, quant.zero_point0)


def decoder() -> Graph:
    """An encoder to 2x2 and a decoder back to 8x8 with skips, then a 1x1 classifier.

    UpSampling2D (rows then columns) with a skip; a pixel shuffle, a bilinear resize and
    UpSampling2D (columns then rows) back to 8x8, concatenated with the first layer's features.
    """
    b = GraphBuilder("upsampling_decoder", seed=41)
    x = b.input(SHAPE, 0.02, -5)
    enc1 = b.conv2d(x, 8, (3, 3), activation=Activation.RELU)
    enc2 = b.conv2d(enc1, 16, (3, 3), stride=2, activation=Activation.RELU)
    enc3 = b.conv2d(enc2, 16, (3, 3), stride=2, activation=Activation.RELU)
    up = repeat(b, repeat(b, enc3, 1, 2), 2, 2)
    d1 = b.conv2d(b.concatenation([up, _like(b, enc2, up)]), 16, (3, 3),
                  activation=Activation.RELU)
    features = b.conv2d(d1, 16, (1, 1))
    shuffled = b.op(OpKind.DEPTH_TO_SPACE, [features], BlockAttrs(2), b.quant(features))
    bilinear = b.op(OpKind.RESIZE_BILINEAR, [d1], ResizeBilinearAttrs((8, 8), False, True),
                    b.quant(d1))
    nearest = repeat(b, repeat(b, d1, 2, 2), 1, 2)
    merged = b.concatenation([shuffled, *(_like(b, t, shuffled) for t in
                                          (enc1, bilinear, nearest))])
    return b.output(b.conv2d(merged, 4, (1, 1))).build()


def rewritten(tmp_path: Path) -> tuple[Graph, bytes]:
    """The decoder as the API reads its TFLite file, and the file."""
    model = write_tflite(decoder())
    (tmp_path / "decoder.tflite").write_bytes(model)
    return api.load_graph(tmp_path / "decoder.tflite"), model


def _litert(model: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    interpreter = litert_interpreter(model)
    return [litert_invoke(interpreter, [x[r] for x in inputs])[0] for r in range(RUNS)]


def test_upsampling_repeats_become_nearest_resizes(tmp_path: Path) -> None:
    graph, _ = rewritten(tmp_path)
    kinds = [op.kind for op in graph.operators]
    assert OpKind.TILE not in kinds and OpKind.EXPAND_DIMS not in kinds
    resizes = [op for op in graph.operators if op.kind is OpKind.RESIZE_NEAREST_NEIGHBOR]
    assert [op.attrs.size for op in resizes] == [(4, 4), (8, 8)]
    assert all(not op.attrs.align_corners and not op.attrs.half_pixel_centers for op in resizes)
    assert len(kinds) == len(decoder().operators) - 10


def test_both_graphs_are_bit_exact_against_litert(tmp_path: Path) -> None:
    graph, model = rewritten(tmp_path)
    written = decoder()
    inputs = random_inputs(written, RUNS, seed=5)
    want = _litert(model, inputs)
    for candidate in (written, graph):
        interpreter = Interpreter(candidate)
        for r in range(RUNS):
            np.testing.assert_array_equal(interpreter.run([x[r] for x in inputs]).outputs[0],
                                          want[r])


def test_both_graphs_are_bit_exact_in_c(tmp_path: Path) -> None:
    graph, _ = rewritten(tmp_path)
    for candidate in (decoder(), graph):
        result = verify_host(candidate, plan_memory(candidate, 0.5), runs=RUNS, seed=7)
        assert result.bit_exact and result.litert_mismatches == 0
