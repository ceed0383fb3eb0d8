"""ONNX Slice with steps, Split, Gather and moving Transpose: equal to onnxruntime and LiteRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from mcuflow import api
from mcuflow.frontends.onnx_reader import import_onnx
from mcuflow.ir.ops import OpKind
from tests.support import assert_litert_bit_exact
from tests.unit.test_onnx_reader import Net, assert_matches_onnxruntime

RNG = np.random.default_rng(23)
SHAPE = (1, 3, 8, 8)


def _conv(net: Net) -> str:
    return net.node("Conv", "x", net.weights(6, 3, 3, 3))


def _ints(net: Net, values: list[int]) -> str:
    return net.const(np.array(values, np.int64))


def _kinds(data: bytes) -> set[OpKind]:
    return {op.kind for op in import_onnx(data).graph.operators}


@pytest.mark.parametrize(("starts", "ends", "axes", "steps"), [
    ([0, 1], [6, 6], [2, 3], [2, 3]),
    ([-1, 5], [-100, 0], [3, 1], [-1, -2]),
    ([5, 0], [0, 6], [2, 1], [-2, 1]),
    ([1], [100], [-1], [3]),
    ([0, 0, 0], [1, 5, 6], [1, 2, 3], [1, 2, 1]),
], ids=str)
def test_slice_with_steps(starts: list[int], ends: list[int], axes: list[int], steps: list[int]
                          ) -> None:
    net = Net(SHAPE)
    y = _conv(net)
    out = net.node("Slice", y, _ints(net, starts), _ints(net, ends), _ints(net, axes),
                   _ints(net, steps))
    data = net.model(out)
    assert OpKind.STRIDED_SLICE in _kinds(data)
    assert_matches_onnxruntime(data, SHAPE)


def _split_model(net: Net, source: str, outputs: int, pick: list[int], axis: int,
                 *inputs: str, **attrs: object) -> str:
    names = [f"s{k}" for k in range(outputs)]
    net.nodes.append(helper.make_node("Split", [source, *inputs], names, name="split",
                                      axis=axis, **attrs))
    return net.node("Concat", *[names[k] for k in pick], axis=axis)


@pytest.mark.parametrize(("axis", "outputs", "split", "pick"), [
    (1, 3, None, [2, 0]),
    (1, 2, [2, 4], [1, 0, 1]),
    (2, 3, [1, 2, 3], [2, 0]),
    (3, 2, None, [1, 1, 0]),
    (-1, 3, [3, 2, 1], [0, 2]),
], ids=str)
@pytest.mark.parametrize("opset", [11, 13])
def test_split(axis: int, outputs: int, split: list[int] | None, pick: list[int], opset: int
               ) -> None:
    net = Net(SHAPE, opset)
    y = _conv(net)
    if split is None:
        out = _split_model(net, y, outputs, pick, axis)
    elif opset >= 13:
        out = _split_model(net, y, outputs, pick, axis, _ints(net, split))
    else:
        out = _split_model(net, y, outputs, pick, axis, split=split)
    data = net.model(out)
    assert _kinds(data) & {OpKind.SPLIT, OpKind.SPLIT_V}
    assert_matches_onnxruntime(data, SHAPE)


def test_split_num_outputs_uneven() -> None:
    """Opset 18 num_outputs: ceil-sized pieces, the last one smaller."""
    net = Net(SHAPE, 18)
    out = _split_model(net, net.node("Relu", "x"), 3, [2, 0], 2, num_outputs=3)
    data = net.model(out)
    assert OpKind.SPLIT_V in _kinds(data)
    assert_matches_onnxruntime(data, SHAPE)


@pytest.mark.parametrize(("axis", "indices"), [
    (1, [5, 0, 2]), (2, [[0, 1], [5, 5]]), (3, [-1, 0, 3]), (1, 4), (-1, [[2]]),
], ids=str)
def test_gather(axis: int, indices: object) -> None:
    net = Net(SHAPE)
    out = net.node("Gather", _conv(net), _ints(net, indices), axis=axis)
    data = net.model(out)
    assert OpKind.GATHER in _kinds(data)
    assert_matches_onnxruntime(data, SHAPE)


@pytest.mark.parametrize("perm", [[0, 2, 3, 1], [0, 3, 1, 2], [0, 1, 3, 2], [0, 3, 2, 1]],
                         ids=str)
def test_transpose_then_flatten_moves_the_data(perm: list[int]) -> None:
    """A Transpose of an NHWC-stored tensor read in ONNX's own order becomes a TRANSPOSE."""
    net = Net(SHAPE)
    flat = net.node("Flatten", net.node("Transpose", _conv(net), perm=perm))
    data = net.model(net.node("Gemm", flat, net.weights(216, 5)))
    assert_matches_onnxruntime(data, SHAPE)


def test_transpose_to_the_stored_order_moves_nothing() -> None:
    net = Net(SHAPE)
    data = net.model(net.node("Relu", net.node("Transpose", _conv(net), perm=[0, 2, 3, 1])))
    assert OpKind.TRANSPOSE not in _kinds(data)
    assert_matches_onnxruntime(data, SHAPE)


def test_quantised_shuffles_match_litert(tmp_path: Path) -> None:
    """PTQ of a model slicing with steps, splitting, gathering and transposing: bit-exact."""
    net = Net(SHAPE)
    y = _conv(net)
    stepped = net.node("Slice", y, _ints(net, [0, 7]), _ints(net, [6, -100]), _ints(net, [1, 3]),
                       _ints(net, [2, -2]))
    pieces = _split_model(net, y, 2, [1, 0], 1, _ints(net, [2, 4]))
    gathered = net.node("Gather", pieces, _ints(net, [3, 0, 1]), axis=2)
    moved = net.node("Flatten", net.node("Reshape", net.node("Transpose", gathered,
                                                             perm=[0, 3, 1, 2]),
                                         _ints(net, [1, 36, 3])))
    out = net.node("Add", net.node("Gemm", net.node("Flatten", stepped), net.weights(54, 5)),
                   net.node("Gemm", moved, net.weights(108, 5)))
    path = tmp_path / "shuffles.onnx"
    path.write_bytes(net.model(out))
    calibration = RNG.standard_normal((8, *SHAPE[1:])).astype(np.float32)
    result = api.quantize_model(path, calibration, "affine", True, "minmax")
    kinds = {op.kind for op in result.graph.operators}
    assert {OpKind.STRIDED_SLICE, OpKind.SPLIT_V, OpKind.GATHER, OpKind.TRANSPOSE} <= kinds
    assert_litert_bit_exact(result, calibration[:4])
