"""TILE, DEPTH_TO_SPACE and SPACE_TO_DEPTH: reference vs LiteRT, TFLite form, ONNX converters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcuflow import api
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.onnx_reader import read_onnx
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import BlockAttrs, BroadcastToAttrs, OpAttrs, OpKind, TileAttrs
from mcuflow.ir.quantization import QuantParams
from mcuflow.ir.shapes import ShapeError
from mcuflow.ref.interpreter import Interpreter
from tests.support import (
    assert_litert_bit_exact,
    litert_interpreter,
    litert_invoke,
    random_input,
)
from tests.unit.test_onnx_reader import Net, assert_matches_onnxruntime


def _graph(kind: OpKind, shape: tuple[int, ...], attrs: OpAttrs,
           quant: tuple[float, int] = (0.05, 3)) -> Graph:
    b = GraphBuilder(seed=len(shape))
    x = b.input(shape, *quant)
    return b.output(b.op(kind, [x], attrs, b.quant(x))).build()


def _assert_bit_exact(graph: Graph, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    litert = litert_interpreter(write_tflite(graph))
    x = random_input(shape, np.int8, rng)
    want = litert_invoke(litert, [x])[0]
    got = Interpreter(graph).run([x]).outputs[0]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want, err_msg=str(shape))


@pytest.mark.parametrize("seed", range(4))
def test_tile_bit_exact_against_litert_over_random_params(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(10):
        rank = int(rng.integers(1, 6))
        shape = tuple(int(d) for d in rng.integers(1, 5, rank))
        multiples = tuple(int(m) for m in rng.integers(1, 4, rank))
        _assert_bit_exact(_graph(OpKind.TILE, shape, TileAttrs(multiples)), shape, rng)


@pytest.mark.parametrize("seed", range(3))
def test_broadcast_to_bit_exact_against_litert_over_random_params(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(10):
        rank = int(rng.integers(1, 6))
        target = tuple(int(d) for d in rng.integers(1, 5, rank))
        kept = int(rng.integers(1, rank + 1))
        shape = tuple(d if rng.integers(2) else 1 for d in target[rank - kept:])
        graph = _graph(OpKind.BROADCAST_TO, shape, BroadcastToAttrs(target))
        _assert_bit_exact(graph, shape, rng)


@pytest.mark.parametrize("seed", range(4))
def test_depth_space_bit_exact_against_litert_over_random_params(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(10):
        block = int(rng.integers(1, 5))
        n, h, w, c = (int(v) for v in (rng.integers(1, 3), *rng.integers(1, 5, 3)))
        to_space = (n, h, w, c * block * block)
        _assert_bit_exact(_graph(OpKind.DEPTH_TO_SPACE, to_space, BlockAttrs(block)), to_space,
                          rng)
        to_depth = (n, h * block, w * block, c)
        _assert_bit_exact(_graph(OpKind.SPACE_TO_DEPTH, to_depth, BlockAttrs(block)), to_depth,
                          rng)


@pytest.mark.parametrize(("kind", "shape", "attrs"), [
    (OpKind.TILE, (1, 3, 1, 4), TileAttrs((2, 1, 3, 1))),
    (OpKind.DEPTH_TO_SPACE, (1, 2, 3, 8), BlockAttrs(2)),
    (OpKind.SPACE_TO_DEPTH, (1, 6, 3, 2), BlockAttrs(3)),
    (OpKind.BROADCAST_TO, (3, 1, 4), BroadcastToAttrs((2, 3, 5, 4))),
], ids=["tile", "depth_to_space", "space_to_depth", "broadcast_to"])
def test_tflite_form_round_trips(kind: OpKind, shape: tuple[int, ...], attrs: OpAttrs) -> None:
    op = read_tflite(write_tflite(_graph(kind, shape, attrs))).operators[0]
    assert (op.kind, op.attrs, len(op.inputs)) == (kind, attrs, 1)


@pytest.mark.parametrize("kind", [OpKind.TILE, OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH])
def test_refuses_a_change_of_quantisation(kind: OpKind) -> None:
    b = GraphBuilder(seed=0)
    x = b.input((1, 4, 4, 4), 0.05, 1)
    attrs = TileAttrs((1, 2, 1, 1)) if kind is OpKind.TILE else BlockAttrs(2)
    y = b.op(kind, [x], attrs, QuantParams.per_tensor(0.5, 0))
    with pytest.raises(UnsupportedModelError, match="share scale and zero point"):
        Interpreter(b.output(y).build())


@pytest.mark.parametrize(("kind", "shape", "attrs", "message"), [
    (OpKind.TILE, (1, 4, 4), TileAttrs((1, 2)), "not one positive count per axis"),
    (OpKind.DEPTH_TO_SPACE, (1, 2, 2, 6), BlockAttrs(2), "6 channels do not split"),
    (OpKind.SPACE_TO_DEPTH, (1, 5, 4, 1), BlockAttrs(2), "5x4 image does not split"),
    (OpKind.BROADCAST_TO, (1, 3, 4), BroadcastToAttrs((1, 6, 4)),
     r"\(1, 3, 4\) does not broadcast"),
], ids=["tile", "depth_to_space", "space_to_depth", "broadcast_to"])
def test_shape_errors(kind: OpKind, shape: tuple[int, ...], attrs: OpAttrs, message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        _graph(kind, shape, attrs)


def test_tile_refuses_rank_six() -> None:
    shape = (1, 2, 1, 2, 1, 2)
    with pytest.raises(UnsupportedModelError, match="rank 6 found"):
        Interpreter(_graph(OpKind.TILE, shape, TileAttrs((1, 1, 2, 1, 1, 1))))


# --- ONNX Tile, DepthToSpace, SpaceToDepth --------------------------------------------------------


def _onnx(shape: tuple[int, ...], op_type: str, *inputs: str, **attrs: object
          ) -> tuple[Net, str]:
    net = Net(shape)
    y = net.node("Conv", "x", net.weights(shape[1], shape[1], 1, 1))
    y = net.node(op_type, net.node("Relu", y), *(net.const(np.array(i, np.int64))
                                                  for i in inputs), **attrs)
    return net, y


@pytest.mark.parametrize(("shape", "op_type", "inputs", "attrs", "kind"), [
    ((1, 3, 4, 5), "Tile", [[1, 2, 1, 3]], {}, OpKind.TILE),
    ((1, 2, 3, 4), "Tile", [[2, 1, 2, 1]], {}, OpKind.TILE),
    ((1, 8, 3, 4), "DepthToSpace", [], {"blocksize": 2}, OpKind.DEPTH_TO_SPACE),
    ((1, 8, 3, 4), "DepthToSpace", [], {"blocksize": 2, "mode": "DCR"}, OpKind.DEPTH_TO_SPACE),
    ((1, 9, 3, 2), "DepthToSpace", [], {"blocksize": 3, "mode": "CRD"}, OpKind.DEPTH_TO_SPACE),
    ((1, 3, 4, 6), "SpaceToDepth", [], {"blocksize": 2}, OpKind.SPACE_TO_DEPTH),
    ((1, 3, 1, 5), "Expand", [[1, 3, 4, 5]], {}, OpKind.BROADCAST_TO),
    ((1, 3, 1, 5), "Expand", [[2, 1, 1, 1]], {}, OpKind.BROADCAST_TO),
], ids=["tile_hw", "tile_nc", "d2s", "d2s_dcr", "d2s_crd_one_channel", "s2d", "expand_h",
        "expand_bidirectional"])
def test_onnx_matches_onnxruntime(shape: tuple[int, ...], op_type: str, inputs: list,
                                  attrs: dict[str, object], kind: OpKind) -> None:
    net, y = _onnx(shape, op_type, *inputs, **attrs)
    data = net.model(net.node("Relu", y))
    assert kind in [op.kind for op in read_onnx(data).operators]
    assert_matches_onnxruntime(data, shape)


@pytest.mark.parametrize(("shape", "op_type", "inputs", "attrs", "message"), [
    ((1, 8, 3, 4), "DepthToSpace", [], {"blocksize": 2, "mode": "CRD"},
     "has mode 'CRD' with 2 output channels"),
    ((1, 6, 3, 4), "DepthToSpace", [], {"blocksize": 2}, "splits 6 channels"),
    ((1, 3, 5, 4), "SpaceToDepth", [], {"blocksize": 2}, "splits a 5x4 image"),
    ((1, 3, 4, 4), "Tile", [[1, 2]], {}, "has repeats"),
    ((1, 3, 4, 4), "Expand", [[1, 3, 5, 4]], {}, r"cannot broadcast \(1, 3, 4, 4\)"),
    ((1, 3, 4, 4), "Expand", [[2, 1, 3, 4, 4]], {}, "adds axes to a tensor stored as"),
], ids=["crd", "d2s_channels", "s2d_size", "tile_repeats", "expand_shape", "expand_rank"])
def test_onnx_refuses_what_does_not_map(shape: tuple[int, ...], op_type: str, inputs: list,
                                        attrs: dict[str, object], message: str) -> None:
    net, y = _onnx(shape, op_type, *inputs, **attrs)
    with pytest.raises(UnsupportedModelError, match=message):
        read_onnx(net.model(y))


def test_onnx_model_quantises_bit_exact_against_litert(tmp_path: Path) -> None:
    """Tile, DepthToSpace and SpaceToDepth of a float ONNX model, quantised by mcuflow."""
    shape = (1, 4, 4, 6)
    net = Net(shape)
    y = net.node("Relu", net.node("Conv", "x", net.weights(8, 4, 1, 1)))
    y = net.node("DepthToSpace", y, blocksize=2)
    y = net.node("Tile", y, net.const(np.array([1, 1, 2, 1], np.int64)))
    y = net.node("SpaceToDepth", y, blocksize=2)
    (tmp_path / "blocks.onnx").write_bytes(net.model(net.node("Conv", y, net.weights(3, 8, 1, 1))))
    calibration = np.random.default_rng(3).standard_normal((8, *shape[1:])).astype(np.float32)
    result = api.quantize_model(tmp_path / "blocks.onnx", calibration)
    kinds = {op.kind for op in result.graph.operators}
    assert {OpKind.TILE, OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH} <= kinds
    assert_litert_bit_exact(result, calibration[:3])
