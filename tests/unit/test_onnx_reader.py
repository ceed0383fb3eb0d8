"""ONNX import: the float IR graph must compute what onnxruntime computes, on random inputs."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mcuflow.errors import McuflowError, ModelFormatError, UnsupportedModelError
from mcuflow.frontends.onnx_reader import import_onnx, read_onnx
from mcuflow.ir.ops import OpKind
from mcuflow.passes.pipeline import run_passes
from mcuflow.ref.float_kernels import run_float

RNG = np.random.default_rng(7)


class Net:
    """A small ONNX graph under construction: one float input, constants, nodes.

    Its weights come from `rng`, by default the module's stream (shared by every Net).
    """

    def __init__(self, shape: tuple[int, ...], opset: int = 17,
                 rng: np.random.Generator | None = None) -> None:
        self.shape, self.opset = shape, opset
        self.rng = RNG if rng is None else rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, data: np.ndarray | list[float]) -> str:
        name = f"c{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(np.asarray(data), name))
        return name

    def weights(self, *shape: int) -> str:
        return self.const(self.rng.standard_normal(shape).astype(np.float32) * 0.5)

    def node(self, op_type: str, *inputs: str, **attrs: object) -> str:
        self._count += 1
        name = f"t{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=f"n{self._count}",
                                           **attrs))
        return name

    def model(self, output: str) -> bytes:
        graph = helper.make_graph(
            self.nodes, "net",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(self.shape))],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        return model.SerializeToString()


def assert_matches_onnxruntime(data: bytes, shape: tuple[int, ...], runs: int = 3) -> None:
    """Our float graph, before and after the passes, equals onnxruntime on random inputs."""
    imported = import_onnx(data)
    graphs = [imported.graph, run_passes(imported.graph)]
    session = ort.InferenceSession(data)
    (name,) = imported.graph.inputs
    (output,) = imported.graph.outputs
    for _ in range(runs):
        x = RNG.standard_normal(shape).astype(np.float32)
        expected = session.run(None, {"x": x})[0].transpose(imported.output_perms[output])
        for graph in graphs:
            ours = run_float(graph, [x.transpose(imported.input_perms[name])]).outputs[0]
            np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def _conv_bn_relu(net: Net) -> str:
    c = net.node("Conv", "x", net.weights(6, 3, 3, 3), net.weights(6), pads=[1, 1, 1, 1])
    stats = [net.const(RNG.uniform(0.5, 1.5, 6).astype(np.float32)) for _ in range(4)]
    return net.node("Relu", net.node("BatchNormalization", c, *stats, epsilon=1e-3))


def _strided_asymmetric(net: Net) -> str:
    return net.node("Conv", "x", net.weights(4, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1])


def _dilated_same(net: Net) -> str:
    y = net.node("Conv", "x", net.weights(4, 3, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2])
    return net.node("Conv", y, net.weights(4, 4, 3, 2), strides=[2, 2], auto_pad="SAME_UPPER")


def _depthwise_multiplier(net: Net) -> str:
    c = net.node("Conv", "x", net.weights(6, 1, 3, 3), net.weights(6), group=3, pads=[1, 1, 1, 1])
    return net.node("Clip", c, net.const(np.float32(0.0)), net.const(np.float32(6.0)))


def _flatten_gemm(net: Net) -> str:
    flat = net.node("Flatten", net.node("Conv", "x", net.weights(4, 3, 1, 1)))
    return net.node("Gemm", flat, net.weights(5, 4 * 8 * 8), net.weights(5), transB=1,
                    alpha=0.5, beta=2.0)


def _dynamic_flatten(net: Net) -> str:
    """x.view(x.size(0), -1) as the TorchScript exporter spells it."""
    y = net.node("Relu", "x")
    batch = net.node("Gather", net.node("Shape", y), net.const(np.int64(0)), axis=0)
    shape = net.node("Concat", net.node("Unsqueeze", batch, net.const(np.array([0]))),
                     net.const(np.array([-1])), axis=0)
    flat = net.node("Reshape", y, shape)
    return net.node("Add", net.node("MatMul", flat, net.weights(3 * 8 * 8, 4)), net.weights(4))


def _squeeze_excite(net: Net) -> str:
    y = net.node("Relu", net.node("Conv", "x", net.weights(4, 3, 3, 3), pads=[1, 1, 1, 1]))
    gate = net.node("GlobalAveragePool", y)
    gate = net.node("Sigmoid", net.node("Conv", gate, net.weights(4, 4, 1, 1), net.weights(4)))
    return net.node("Add", net.node("Mul", y, gate), y)


def _pools(net: Net) -> str:
    y = net.node("Relu", "x")
    a = net.node("MaxPool", y, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    b = net.node("AveragePool", y, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                 count_include_pad=1)
    c = net.node("AveragePool", y, kernel_shape=[2, 2], strides=[2, 2])
    d = net.node("MaxPool", "x", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    e = net.node("AveragePool", d, kernel_shape=[2, 2], strides=[2, 2])
    return net.node("Concat", a, b, c, e, axis=1)


def _activations(net: Net) -> str:
    y = net.node("HardSwish", "x")
    gate = net.node("HardSigmoid", y, alpha=1 / 6, beta=0.5)
    y = net.node("Mul", gate, y)  # the old-opset spelling of hard-swish
    y = net.node("LeakyRelu", net.node("HardSigmoid", y, alpha=0.3, beta=0.4), alpha=0.1)
    return net.node("Tanh", net.node("Sub", net.const(np.float32(0.5)),
                                     net.node("Div", y, net.const(np.float32(4.0)))))


def _transposed_layout(net: Net) -> str:
    """An NHWC model input moved to NCHW and back: the transposes move no data."""
    nchw = net.node("Transpose", "x", perm=[0, 3, 1, 2])
    y = net.node("Conv", nchw, net.weights(4, 3, 3, 3), pads=[1, 1, 1, 1])
    return net.node("Transpose", net.node("Pad", y, net.const(np.array([0, 0, 1, 2, 0, 0, 2, 1]))),
                    perm=[0, 2, 3, 1])


def _reduce_mean_softmax(net: Net) -> str:
    y = net.node("ReduceMean", net.node("Conv", "x", net.weights(6, 3, 3, 3)), axes=[2, 3],
                 keepdims=0)
    return net.node("Softmax", net.node("Gemm", y, net.weights(6, 10)), axis=1)


def _softmax_over_channels(net: Net) -> str:
    y = net.node("Conv", "x", net.weights(5, 3, 1, 1))
    return net.node("Softmax", y, axis=1)


def _maximum_minimum(net: Net) -> str:
    """Max and Min of two computed tensors, and each with a broadcast constant (ReLU-like clips)."""
    y = net.node("Conv", "x", net.weights(4, 3, 1, 1))
    z = net.node("Conv", "x", net.weights(4, 3, 1, 1))
    floor = net.node("Max", net.const(np.full((1, 4, 1, 1), -0.1, np.float32)), y)
    ceiling = net.node("Min", z, net.const(np.float32(0.3)))
    return net.node("Max", net.node("Min", floor, z), ceiling)


def _slices(net: Net) -> str:
    """Slices of NCHW tensors: channels, and H and W by negative and clamped bounds and axes."""
    y = net.node("Conv", "x", net.weights(6, 3, 1, 1))
    channels = net.node("Slice", y, net.const(np.array([2])), net.const(np.array([5])),
                        net.const(np.array([1])), net.const(np.array([1])))
    spatial = net.node("Slice", "x", net.const(np.array([1, -5])),
                       net.const(np.array([1 << 62, -1])), net.const(np.array([2, 3])))
    cropped = net.node("Slice", channels, net.const(np.array([0, 0])), net.const(np.array([5, 4])),
                       net.const(np.array([-2, -1])))
    return net.node("Add", cropped, spatial)


def _slice_attributes(net: Net) -> str:
    """Slice before opset 10 takes starts, ends and axes as attributes."""
    y = net.node("Relu", "x")
    return net.node("Slice", y, starts=[1, 0], ends=[3, -2], axes=[1, 3])


CASES: dict[str, tuple[Callable[[Net], str], tuple[int, ...], int]] = {
    "conv_bn_relu": (_conv_bn_relu, (1, 3, 8, 8), 17),
    "strided_asymmetric_pads": (_strided_asymmetric, (1, 3, 8, 8), 17),
    "dilated_and_same_upper": (_dilated_same, (1, 3, 9, 7), 17),
    "depthwise_multiplier_clip": (_depthwise_multiplier, (1, 3, 8, 8), 17),
    "flatten_nchw_gemm": (_flatten_gemm, (1, 3, 8, 8), 17),
    "shape_subgraph_flatten_matmul_add": (_dynamic_flatten, (1, 3, 8, 8), 13),
    "squeeze_excite": (_squeeze_excite, (1, 3, 8, 8), 17),
    "pools_concat": (_pools, (1, 3, 8, 8), 17),
    "activations": (_activations, (1, 2, 3, 5), 17),
    "nhwc_transposes_pad": (_transposed_layout, (1, 6, 5, 3), 17),
    "reduce_mean_gemm_softmax": (_reduce_mean_softmax, (1, 3, 6, 6), 17),
    "softmax_over_channels": (_softmax_over_channels, (1, 3, 4, 4), 13),
    "maximum_minimum": (_maximum_minimum, (1, 3, 5, 6), 13),
    "slices": (_slices, (1, 3, 6, 7), 17),
    "slice_attributes": (_slice_attributes, (1, 3, 4, 5), 9),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_onnxruntime(case: str) -> None:
    build, shape, opset = CASES[case]
    net = Net(shape, opset)
    assert_matches_onnxruntime(net.model(build(net)), shape)


def test_batchnorm_folded_and_relu_fused() -> None:
    net = Net((1, 3, 8, 8))
    graph = run_passes(read_onnx(net.model(_conv_bn_relu(net))))
    assert [op.kind for op in graph.operators] == [OpKind.CONV_2D]
    assert graph.operators[0].attrs.activation.value == "RELU"


def test_max_and_min_become_maximum_and_minimum() -> None:
    net = Net((1, 3, 5, 6))
    kinds = [op.kind for op in read_onnx(net.model(_maximum_minimum(net))).operators]
    assert kinds.count(OpKind.MAXIMUM) == 2 and kinds.count(OpKind.MINIMUM) == 2


def test_max_of_three_operands_is_refused() -> None:
    net = Net((1, 3, 5, 6))
    y = net.node("Relu", "x")
    with pytest.raises(UnsupportedModelError, match="takes 3 operands; mcuflow takes two"):
        read_onnx(net.model(net.node("Max", y, "x", y)))


@pytest.mark.parametrize(("inputs", "message"), [
    ([[0], [0], [3]], "has an empty output"),
    ([[0, 1], [2]], "needs starts and ends"),
], ids=["empty", "lengths"])
def test_slice_refuses_what_slice_cannot_run(inputs: list[list[int]], message: str) -> None:
    net = Net((1, 3, 5, 6))
    y = net.node("Slice", "x", *(net.const(np.array(values)) for values in inputs))
    with pytest.raises(McuflowError, match=message):
        read_onnx(net.model(y))


def test_hard_sigmoid_times_input_becomes_hard_swish() -> None:
    net = Net((1, 2, 3, 5))
    graph = read_onnx(net.model(_activations(net)))
    assert [op.kind for op in graph.operators][:2] == [OpKind.HARD_SWISH, OpKind.HARD_SWISH]


def test_torch_export_matches_onnxruntime() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4), nn.Softmax(dim=1)).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2.0)
    for mode in (torch.onnx.TrainingMode.EVAL, torch.onnx.TrainingMode.PRESERVE):
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, 3, 16, 16),), buffer, dynamo=False,
                              training=mode, input_names=["x"], opset_version=13)
        assert_matches_onnxruntime(buffer.getvalue(), (1, 3, 16, 16))


# --- malformed and unsupported models ---------------------------------------------------------


def _valid() -> bytes:
    net = Net((1, 3, 8, 8))
    return net.model(_conv_bn_relu(net))


@pytest.mark.parametrize("data", [
    b"",
    b"\x00\x01garbage" * 10,
    _valid()[: len(_valid()) // 2],
    helper.make_model(helper.make_graph([], "empty", [], [])).SerializeToString(),
], ids=["empty", "garbage", "truncated", "no_nodes"])
def test_malformed_protobuf_is_a_format_error(data: bytes) -> None:
    with pytest.raises(ModelFormatError):
        read_onnx(data)


def test_corrupt_initializer_and_dangling_input_are_format_errors() -> None:
    model = onnx.load_from_string(_valid())
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:-4]
    with pytest.raises(ModelFormatError):
        read_onnx(model.SerializeToString())
    model = onnx.load_from_string(_valid())
    model.graph.node[1].input[0] = "nowhere"
    with pytest.raises(ModelFormatError, match="nowhere"):
        read_onnx(model.SerializeToString())


def test_missing_file_is_a_format_error(tmp_path: object) -> None:
    with pytest.raises(ModelFormatError, match="cannot read"):
        read_onnx(f"{tmp_path}/absent.onnx")


def test_every_unsupported_op_is_listed_at_once() -> None:
    net = Net((1, 3, 8, 8))
    y = net.node("Erf", net.node("Relu", "x"))
    y = net.node("Neg", y)
    with pytest.raises(UnsupportedModelError, match=r"3 unsupported .* Erf \(x2\), Neg \(x1\)"):
        read_onnx(net.model(net.node("Erf", y)))


@pytest.mark.parametrize("build, message", [
    (lambda n: n.node("Conv", n.node("Conv", "x", n.weights(4, 2, 1, 1)), n.weights(4, 2, 3, 3),
                      group=2), "grouped"),
    (lambda n: n.node("Clip", "x", n.const(np.float32(-2.0)), n.const(np.float32(2.0))),
     "clips"),
    (lambda n: n.node("MaxPool", "x", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
     "pads"),
    (lambda n: n.node("Softmax", n.node("Flatten", n.node("Conv", "x", n.weights(2, 2, 3, 3)))),
     "flattened"),
], ids=["grouped_conv", "clip_range", "max_pool_pads_on_signed_input", "flattened_nchw"])
def test_unsupported_constructs_name_the_node(build: Callable[[Net], str], message: str) -> None:
    net = Net((1, 2, 8, 8))
    with pytest.raises(UnsupportedModelError, match=message):
        read_onnx(net.model(build(net)))


def test_dynamic_spatial_dimension_is_unsupported() -> None:
    net = Net((1, 3, 8, 8))
    model = onnx.load_from_string(net.model(net.node("Relu", "x")))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    with pytest.raises(UnsupportedModelError, match="dynamic dimension 2"):
        read_onnx(model.SerializeToString())
