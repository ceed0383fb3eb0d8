"""RESIZE_BILINEAR: reference kernels (int8, float32), TFLite form and ONNX linear Resize."""

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
from mcuflow.ir.ops import OpKind, ResizeBilinearAttrs
from mcuflow.ir.quantization import QuantParams
from mcuflow.passes.resize_input import ResizeError, resize_input
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from tests.support import (
    assert_litert_bit_exact,
    litert_interpreter,
    litert_invoke,
    random_input,
)
from tests.unit.test_onnx_reader import Net, assert_matches_onnxruntime

MODES = [(False, False), (True, False), (False, True)]
MODE_IDS = ["asymmetric", "align_corners", "half_pixel_centers"]


def _graph(shape: tuple[int, ...], size: tuple[int, int], mode: tuple[bool, bool],
           quant: tuple[float, int] = (0.05, 3), dtype: DType = DType.INT8) -> Graph:
    b = GraphBuilder(seed=len(shape))
    attrs = ResizeBilinearAttrs(size, *mode)
    if dtype is DType.FLOAT32:
        x = b.input(shape, dtype=DType.FLOAT32)
        return b.output(b.op(OpKind.RESIZE_BILINEAR, [x], attrs, None, DType.FLOAT32)).build()
    x = b.input(shape, *quant)
    return b.output(b.op(OpKind.RESIZE_BILINEAR, [x], attrs, b.quant(x))).build()


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("seed", range(4))
def test_bit_exact_against_litert_over_random_shapes(mode: tuple[bool, bool], seed: int) -> None:
    """Random image sizes, output sizes (up, down, one row or column), channels, batches."""
    rng = np.random.default_rng(seed)
    for _ in range(12):
        shape = (int(rng.integers(1, 3)), *(int(v) for v in rng.integers(1, 10, 2)),
                 int(rng.integers(1, 6)))
        size = (int(rng.integers(1, 25)), int(rng.integers(1, 25)))
        quant = (float(rng.uniform(0.01, 1)), int(rng.integers(-128, 128)))
        graph = _graph(shape, size, mode, quant)
        litert = litert_interpreter(write_tflite(graph))
        ours = Interpreter(graph)
        for _ in range(2):
            x = random_input(shape, np.int8, rng)
            want = litert_invoke(litert, [x])[0]
            got = ours.run([x]).outputs[0]
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want, err_msg=f"{shape} -> {size}")


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_extremes_against_litert(mode: tuple[bool, bool]) -> None:
    """-128 beside 127 (the largest products and negative sums that round half away)."""
    shape = (1, 3, 4, 2)
    x = np.where(np.indices(shape).sum(axis=0) % 2, 127, -128).astype(np.int8)
    for size in [(7, 9), (2, 3), (12, 16), (5, 5)]:
        graph = _graph(shape, size, mode)
        np.testing.assert_array_equal(Interpreter(graph).run([x]).outputs[0],
                                      litert_invoke(write_tflite(graph), [x])[0])


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_float_against_litert(mode: tuple[bool, bool]) -> None:
    for shape, size in [((1, 4, 5, 3), (8, 10)), ((1, 8, 9, 2), (3, 5)), ((2, 3, 3, 1), (7, 4))]:
        graph = _graph(shape, size, mode, dtype=DType.FLOAT32)
        inputs = [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]
        np.testing.assert_allclose(run_float(graph, inputs).outputs[0],
                                   litert_invoke(write_tflite(graph), inputs)[0], rtol=1e-5,
                                   atol=1e-6)


def test_tflite_form_round_trips() -> None:
    graph = _graph((1, 4, 5, 3), (7, 9), (False, True))
    op = read_tflite(write_tflite(graph)).operators[0]
    assert op.kind is OpKind.RESIZE_BILINEAR
    assert op.attrs == ResizeBilinearAttrs((7, 9), False, True)
    assert len(op.inputs) == 1


def test_refuses_a_change_of_quantisation() -> None:
    b = GraphBuilder(seed=0)
    x = b.input((1, 4, 4, 2), 0.05, 1)
    y = b.op(OpKind.RESIZE_BILINEAR, [x], ResizeBilinearAttrs((8, 8)),
             QuantParams.per_tensor(0.5, 0))
    with pytest.raises(UnsupportedModelError, match="share scale and zero point"):
        Interpreter(b.output(y).build())


def test_refuses_align_corners_with_half_pixel_centers() -> None:
    with pytest.raises(UnsupportedModelError, match="cannot both be set"):
        Interpreter(_graph((1, 4, 4, 2), (8, 8), (True, True)))


def test_refuses_a_source_outside_the_input() -> None:
    """One input row to 55: LiteRT's 10-bit scale, rounded up, reads a second row."""
    with pytest.raises(UnsupportedModelError, match="source row 1 of a 1-row input found"):
        Interpreter(_graph((1, 1, 2, 1), (55, 2), (False, False)))


# --- ONNX Resize, mode linear ---------------------------------------------------------------------


def _resize(net: Net, x: str, scales: list[float] | None = None, sizes: list[int] | None = None,
            **attrs: object) -> str:
    targets = [net.const(np.array(scales if scales else [], np.float32))]
    if sizes is not None:
        targets.append(net.const(np.array(sizes, np.int64)))
    return net.node("Resize", x, "", *targets, **{"mode": "linear", **attrs})


ONNX_RESIZES = {
    # PyTorch's F.interpolate(scale_factor=2, mode="bilinear") (align_corners=False)
    "torch_bilinear_2x": ({"scales": [1, 1, 2, 2], "coordinate_transformation_mode":
                           "pytorch_half_pixel"}, (1, 3, 4, 5)),
    "default_half_pixel_down": ({"sizes": [1, 3, 3, 2]}, (1, 3, 8, 6)),
    "half_pixel_fractional": ({"sizes": [1, 3, 7, 9]}, (1, 3, 4, 5)),
    "align_corners": ({"sizes": [1, 3, 7, 10], "coordinate_transformation_mode":
                       "align_corners"}, (1, 3, 4, 4)),
    "asymmetric_3x": ({"scales": [1, 1, 3, 3], "coordinate_transformation_mode":
                       "asymmetric"}, (1, 3, 4, 3)),
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
    assert OpKind.RESIZE_BILINEAR in [op.kind for op in read_onnx(data).operators]
    assert_matches_onnxruntime(data, shape)


def test_onnx_resize_quantises_bit_exact_against_litert(tmp_path: Path) -> None:
    data, shape = _onnx_resize_model("torch_bilinear_2x")
    (tmp_path / "upsample.onnx").write_bytes(data)
    calibration = np.random.default_rng(3).standard_normal((8, *shape[1:])).astype(np.float32)
    result = api.quantize_model(tmp_path / "upsample.onnx", calibration)
    assert OpKind.RESIZE_BILINEAR in {op.kind for op in result.graph.operators}
    assert_litert_bit_exact(result, calibration[:3])


@pytest.mark.parametrize(("attrs", "message"), [
    ({"mode": "cubic"}, "has mode 'cubic'; mcuflow resizes with mode 'nearest' or 'linear'"),
    ({"scales": [1, 2, 1, 1]}, "resizes the height and width only"),
    ({"coordinate_transformation_mode": "tf_crop_and_resize"}, "'tf_crop_and_resize'"),
    ({"scales": [1, 1, 1.3, 1.3]}, "scales axis 2 by 1.3 to 5"),
    ({"antialias": 1}, "has antialias=1"),
], ids=["cubic", "channels", "crop_and_resize", "inexact_scale", "antialias"])
def test_onnx_resize_refuses_what_does_not_map(attrs: dict[str, object], message: str) -> None:
    attrs = {"scales": [1, 1, 2, 2], **attrs}
    scales = attrs.pop("scales")
    net = Net((1, 3, 4, 4), opset=18)
    y = _resize(net, net.node("Relu", "x"), scales, **attrs)
    with pytest.raises(UnsupportedModelError, match=message):
        read_onnx(net.model(y))


def test_onnx_pytorch_half_pixel_to_one_row_is_refused() -> None:
    net = Net((1, 3, 4, 4))
    y = _resize(net, net.node("Relu", "x"), sizes=[1, 3, 1, 6],
                coordinate_transformation_mode="pytorch_half_pixel")
    with pytest.raises(UnsupportedModelError, match="to more than one row and column"):
        read_onnx(net.model(y))


def test_another_input_resolution_keeps_whole_factors() -> None:
    resized = resize_input(_graph((1, 4, 6, 2), (8, 18), (False, True)), 5, 3)
    (op,) = resized.operators
    assert op.attrs.size == (10, 9)
    assert resized.tensors[op.outputs[0]].shape == (1, 10, 9, 2)
    with pytest.raises(ResizeError, match="RESIZE_BILINEAR .* not by a whole factor"):
        resize_input(_graph((1, 4, 6, 2), (6, 12), (False, False)), 5, 3)
