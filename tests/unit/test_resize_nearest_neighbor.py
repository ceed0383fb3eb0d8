"""RESIZE_NEAREST_NEIGHBOR: reference kernels (int8, float32), TFLite form and ONNX Resize."""

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
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import OpKind, ResizeNearestNeighborAttrs
from mcuflow.ir.quantization import QuantParams
from mcuflow.passes.resize_input import ResizeError, resize_input
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from mcuflow.ref.resize_nearest_neighbor import nearest_indices
from tests.support import (
    assert_litert_bit_exact,
    litert_interpreter,
    litert_invoke,
    random_input,
)
from tests.unit.test_onnx_reader import Net, assert_matches_onnxruntime

# (input shape, (new_h, new_w)): upsampling by whole and fractional factors, downsampling,
# one row or column in or out, a batch of two.
RESIZES = [
    ((1, 4, 5, 3), (8, 10)),
    ((1, 3, 3, 2), (7, 5)),
    ((1, 8, 9, 4), (3, 5)),
    ((1, 1, 4, 2), (3, 1)),
    ((2, 5, 1, 3), (1, 6)),
    ((1, 6, 7, 1), (6, 7)),
    ((1, 7, 3, 5), (11, 13)),
]
MODES = [(False, False), (True, False), (False, True)]
MODE_IDS = ["asymmetric", "align_corners", "half_pixel_centers"]
QUANTS = [(0.05, 3), (0.5, -128)]


def _graph(shape: tuple[int, ...], size: tuple[int, int], mode: tuple[bool, bool],
           quant: tuple[float, int] = QUANTS[0], dtype: DType = DType.INT8) -> Graph:
    b = GraphBuilder(seed=len(shape))
    attrs = ResizeNearestNeighborAttrs(size, *mode)
    if dtype is DType.FLOAT32:
        x = b.input(shape, dtype=DType.FLOAT32)
        return b.output(b.op(OpKind.RESIZE_NEAREST_NEIGHBOR, [x], attrs, None,
                             DType.FLOAT32)).build()
    x = b.input(shape, *quant)
    return b.output(b.op(OpKind.RESIZE_NEAREST_NEIGHBOR, [x], attrs, b.quant(x))).build()


@pytest.mark.parametrize("quant", QUANTS, ids=str)
@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize(("shape", "size"), RESIZES, ids=str)
def test_bit_exact_against_litert(shape: tuple[int, ...], size: tuple[int, int],
                                  mode: tuple[bool, bool], quant: tuple[float, int]) -> None:
    graph = _graph(shape, size, mode, quant)
    model = write_tflite(graph)
    litert = litert_interpreter(model)
    ours = Interpreter(graph)
    for seed in range(3):
        x = random_input(shape, np.int8, np.random.default_rng(seed))
        want = litert_invoke(litert, [x])[0]
        got = ours.run([x]).outputs[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize(("shape", "size"), RESIZES[:3], ids=str)
def test_float_against_litert(shape: tuple[int, ...], size: tuple[int, int],
                              mode: tuple[bool, bool]) -> None:
    graph = _graph(shape, size, mode, dtype=DType.FLOAT32)
    inputs = [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]
    np.testing.assert_array_equal(run_float(graph, inputs).outputs[0],
                                  litert_invoke(write_tflite(graph), inputs)[0])


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_every_size_pair_against_litert(mode: tuple[bool, bool]) -> None:
    """Each input index LiteRT picks along one axis, for every size pair up to 12.

    One model per pair: a [1, in, 1, 1] ramp whose values are its indices.
    """
    for in_size in range(1, 13):
        ramp = np.arange(in_size, dtype=np.int8).reshape(1, in_size, 1, 1)
        for out_size in range(1, 13):
            graph = _graph((1, in_size, 1, 1), (out_size, 1), mode)
            want = litert_invoke(write_tflite(graph), [ramp])[0].reshape(-1)
            got = nearest_indices(in_size, out_size, *mode)
            np.testing.assert_array_equal(got, want, err_msg=f"{in_size} -> {out_size}")


def test_tflite_form_round_trips() -> None:
    graph = _graph((1, 4, 5, 3), (7, 9), (False, True))
    op = read_tflite(write_tflite(graph)).operators[0]
    assert op.kind is OpKind.RESIZE_NEAREST_NEIGHBOR
    assert op.attrs == ResizeNearestNeighborAttrs((7, 9), False, True)
    assert len(op.inputs) == 1


def test_refuses_a_change_of_quantisation() -> None:
    b = GraphBuilder(seed=0)
    x = b.input((1, 4, 4, 2), 0.05, 1)
    y = b.op(OpKind.RESIZE_NEAREST_NEIGHBOR, [x], ResizeNearestNeighborAttrs((8, 8)),
             QuantParams.per_tensor(0.5, 0))
    with pytest.raises(UnsupportedModelError, match="share scale and zero point"):
        Interpreter(b.output(y).build())


def test_refuses_align_corners_with_half_pixel_centers() -> None:
    graph = _graph((1, 4, 4, 2), (8, 8), (True, True))
    with pytest.raises(UnsupportedModelError, match="cannot both be set"):
        Interpreter(graph)


# --- ONNX Resize ---------------------------------------------------------------------------------


def _resize(net: Net, x: str, scales: list[float] | None = None, sizes: list[int] | None = None,
            **attrs: object) -> str:
    targets = [net.const(np.array(scales if scales else [], np.float32))]
    if sizes is not None:
        targets.append(net.const(np.array(sizes, np.int64)))
    return net.node("Resize", x, "", *targets, **{"mode": "nearest", **attrs})


ONNX_RESIZES = {
    # PyTorch's F.interpolate(scale_factor=2, mode="nearest")
    "torch_upsample_2x": ({"scales": [1, 1, 2, 2], "coordinate_transformation_mode": "asymmetric",
                           "nearest_mode": "floor"}, (1, 3, 4, 5)),
    "asymmetric_floor_down": ({"sizes": [1, 3, 3, 2], "coordinate_transformation_mode":
                               "asymmetric", "nearest_mode": "floor"}, (1, 3, 8, 6)),
    "default_half_pixel_3x": ({"scales": [1, 1, 3, 3]}, (1, 3, 4, 3)),
    "half_pixel_round_prefer_ceil": ({"sizes": [1, 3, 7, 9], "nearest_mode": "round_prefer_ceil"},
                                     (1, 3, 4, 5)),
    "tf_half_pixel_for_nn_floor": ({"sizes": [1, 3, 9, 5], "coordinate_transformation_mode":
                                    "tf_half_pixel_for_nn", "nearest_mode": "floor"},
                                   (1, 3, 4, 3)),
    "align_corners": ({"sizes": [1, 3, 7, 7], "coordinate_transformation_mode": "align_corners",
                       "nearest_mode": "round_prefer_ceil"}, (1, 3, 4, 4)),
}


def _onnx_resize_model(case: str) -> tuple[bytes, tuple[int, ...]]:
    attrs, shape = ONNX_RESIZES[case]
    attrs = dict(attrs)
    scales, sizes = attrs.pop("scales", None), attrs.pop("sizes", None)
    net = Net(shape)
    y = net.node("Conv", "x", net.weights(3, 3, 1, 1))
    y = net.node("Relu", _resize(net, y, scales, sizes, **attrs))
    return net.model(net.node("Conv", y, net.weights(4, 3, 3, 3), pads=[1, 1, 1, 1])), shape


@pytest.mark.parametrize("case", ONNX_RESIZES)
def test_onnx_resize_matches_onnxruntime(case: str) -> None:
    data, shape = _onnx_resize_model(case)
    kinds = [op.kind for op in read_onnx(data).operators]
    assert OpKind.RESIZE_NEAREST_NEIGHBOR in kinds
    assert_matches_onnxruntime(data, shape)


def test_onnx_resize_quantises_bit_exact_against_litert(tmp_path: Path) -> None:
    data, shape = _onnx_resize_model("torch_upsample_2x")
    (tmp_path / "upsample.onnx").write_bytes(data)
    calibration = np.random.default_rng(3).standard_normal((8, *shape[1:])).astype(np.float32)
    result = api.quantize_model(tmp_path / "upsample.onnx", calibration)
    assert OpKind.RESIZE_NEAREST_NEIGHBOR in {op.kind for op in result.graph.operators}
    assert_litert_bit_exact(result, calibration[:3])


@pytest.mark.parametrize(("attrs", "message"), [
    ({"mode": "cubic"}, "has mode 'cubic'; mcuflow resizes with mode 'nearest'"),
    ({"scales": [1, 2, 1, 1]}, "resizes the height and width only"),
    ({"coordinate_transformation_mode": "asymmetric", "nearest_mode": "ceil"},
     "no TFLite RESIZE_NEAREST_NEIGHBOR mode picks"),
    ({"coordinate_transformation_mode": "tf_crop_and_resize"}, "'tf_crop_and_resize'"),
], ids=["cubic", "channels", "asymmetric_ceil", "crop_and_resize"])
def test_onnx_resize_refuses_what_does_not_map(attrs: dict[str, object], message: str) -> None:
    attrs = {"scales": [1, 1, 2, 2], **attrs}
    scales = attrs.pop("scales")
    net = Net((1, 3, 4, 4))
    y = _resize(net, net.node("Relu", "x"), scales, **attrs)
    with pytest.raises(UnsupportedModelError, match=message):
        read_onnx(net.model(y))


def test_another_input_resolution_keeps_whole_factors() -> None:
    graph = _graph((1, 4, 6, 2), (8, 18), (False, False))
    resized = resize_input(graph, 5, 3)
    (op,) = resized.operators
    assert op.attrs.size == (10, 9)
    assert resized.tensors[op.outputs[0]].shape == (1, 10, 9, 2)
    with pytest.raises(ResizeError, match="not by a whole factor"):
        resize_input(_graph((1, 4, 6, 2), (6, 12), (False, False)), 5, 3)
