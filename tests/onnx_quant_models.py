"""ONNX twins of the int16x8 and uint8-I/O models: a float CNN and ONNX Runtime's QDQ of it.

The CNN (N x 3 x 12 x 12): Conv + Relu, depthwise Conv + Relu, a 1x1 Conv, a residual Add,
GlobalAveragePool, Flatten, Gemm and Softmax. `onnxruntime_qdq` quantises it with ONNX
Runtime's quantize_static (QDQ, int8 symmetric per-channel weights); `raw_uint8_io` turns a
uint8-activation QDQ model into one that takes raw uint8 pixels and gives uint8 probabilities.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

import mcuflow.ref.kernels  # noqa: F401  (registers every kernel)
from mcuflow.ir.ops import OpKind
from mcuflow.ptq import QuantizeResult, quantize_model
from mcuflow.quant.affine import quantize_values
from mcuflow.ref.registry import prepare
from tests.support import litert_interpreter, litert_invoke
from tests.unit.test_onnx_reader import Net

SHAPE = (1, 3, 12, 12)
CLASSES = 5


def float_cnn(seed: int = 4) -> bytes:
    """The float CNN, opset 21 (ONNX Runtime's int16 QDQ needs it)."""
    net = Net(SHAPE, opset=21, rng=np.random.default_rng(seed))
    stem = net.node("Relu", net.node("Conv", "x", net.weights(8, 3, 3, 3), net.weights(8),
                                     pads=[1, 1, 1, 1]))
    depthwise = net.node("Relu", net.node("Conv", stem, net.weights(8, 1, 3, 3), net.weights(8),
                                          group=8, pads=[1, 1, 1, 1]))
    residual = net.node("Add", stem, net.node("Conv", depthwise, net.weights(8, 8, 1, 1),
                                              net.weights(8)))
    pooled = net.node("Flatten", net.node("GlobalAveragePool", residual))
    dense = net.const((net.rng.standard_normal((CLASSES, 8)) * 0.1).astype(np.float32))
    logits = net.node("Gemm", pooled, dense, net.weights(CLASSES), transB=1)
    return net.model(net.node("Softmax", logits, axis=1))


def samples(count: int, seed: int = 7) -> np.ndarray:
    """`count` float images [count, 3, 12, 12] in [0, 1] (pixels / 255)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (count, *SHAPE[1:])) / 255.0).astype(np.float32)


class _Samples(CalibrationDataReader):
    def __init__(self, images: np.ndarray) -> None:
        self._samples = iter([{"x": x[None]} for x in images])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._samples, None)


def onnxruntime_qdq(directory: Path, activations: QuantType) -> bytes:
    """ONNX Runtime's quantize_static of the CNN: QDQ, per-channel int8 weights.

    int16 activations are symmetric (zero point 0), as LiteRT's int16x8 scheme has them.
    """
    symmetric = activations is QuantType.QInt16
    source, target = directory / "float.onnx", directory / "qdq.onnx"
    source.write_bytes(float_cnn())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(source, target, _Samples(samples(32)), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=activations,
                        weight_type=QuantType.QInt8,
                        extra_options={"ActivationSymmetric": symmetric})
    return target.read_bytes()


def raw_uint8_io(qdq: bytes) -> bytes:
    """A uint8-activation QDQ model taking raw uint8 codes and giving uint8 codes.

    The input's QuantizeLinear is removed (its DequantizeLinear reads the uint8 graph input)
    and the output's DequantizeLinear (the graph output is its QuantizeLinear's uint8 result).
    """
    model = onnx.load_from_string(qdq)
    graph = model.graph
    (source,) = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x"]
    (final,) = [n for n in graph.node if n.op_type == "DequantizeLinear"
                and n.output[0] == graph.output[0].name]
    for node in graph.node:
        node.input[:] = ["x" if name == source.output[0] else name for name in node.input]
    graph.node.remove(source)
    graph.node.remove(final)
    graph.input[0].type.tensor_type.elem_type = TensorProto.UINT8
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(final.input[0], TensorProto.UINT8,
                                                      [1, CLASSES]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def quantised(directory: Path, scheme: str = "affine", io_dtype: str = "int8") -> QuantizeResult:
    """The float CNN through mcuflow's PTQ (calibrated on 32 images)."""
    (directory / "cnn.onnx").write_bytes(float_cnn())
    np.save(directory / "calibration.npy", samples(32))
    return quantize_model(directory / "cnn.onnx", directory / "calibration.npy", scheme,
                          io_dtype=io_dtype)


def imported_qdq(directory: Path, activations: QuantType) -> tuple[bytes, QuantizeResult]:
    """ONNX Runtime's QDQ model (raw uint8 I/O for uint8 activations) and mcuflow's import."""
    model = onnxruntime_qdq(directory, activations)
    if activations is QuantType.QUInt8:
        model = raw_uint8_io(model)
    (directory / "qdq_model.onnx").write_bytes(model)
    return model, quantize_model(directory / "qdq_model.onnx", None)


def model_inputs(result: QuantizeResult, runs: int, seed: int = 9) -> list[np.ndarray]:
    """`runs` images as the quantised graph's input codes (IR layout), stacked."""
    return [np.stack([result.quantize_input(x[None]) for x in samples(runs, seed)])]


def litert_outputs(result: QuantizeResult, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """LiteRT's outputs of the written .tflite on stacked `inputs`, stacked."""
    litert = litert_interpreter(result.tflite())
    runs = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(len(inputs[0]))]
    return [np.stack(outputs) for outputs in zip(*runs, strict=True)]


def onnxruntime_codes(model: bytes, result: QuantizeResult, image: np.ndarray
                       ) -> dict[str, np.ndarray]:
    """ONNX Runtime's value of every tensor the graph shares with the model, as our codes."""
    proto = onnx.load_from_string(model)
    values = {output for node in proto.graph.node for output in node.output}
    names = [name for name in result.graph.activations() if name in values]
    proto.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                 None) for name in names)
    session = ort.InferenceSession(proto.SerializeToString())
    x = image[None]
    if session.get_inputs()[0].type != "tensor(float)":  # raw codes, in the model's layout
        x = result.quantize_input(x).transpose(0, 3, 1, 2)
    outputs = session.run(names, {"x": x})
    codes = {}
    for name, value in zip(names, outputs, strict=True):
        tensor = result.graph.tensor(name)
        ir_value = value.transpose(0, 2, 3, 1) if value.ndim == 4 else value
        codes[name] = quantize_values(ir_value, tensor.quant, tensor.dtype)
    return codes


def op_differences(model: bytes, result: QuantizeResult) -> dict[OpKind, int]:
    """Per op kind, the largest |ours - ONNX Runtime's| of an op fed ONNX Runtime's codes.

    A requantising QUANTIZE (of SOFTMAX's fixed output to the model's) counts as its source's.
    """
    graph, worst, kinds = result.graph, {}, {}
    for image in samples(8, seed=3):
        theirs = onnxruntime_codes(model, result, image)
        ours = {graph.inputs[0]: result.quantize_input(image[None])}
        for op in graph.operators:
            inputs = [graph.tensor(n).data if graph.tensor(n).is_constant else
                      theirs.get(n, ours.get(n)) for n in op.inputs]
            ours.update(zip(op.outputs, prepare(graph, op)(inputs), strict=True))
            output = op.outputs[0]
            kinds[output] = kinds.get(op.inputs[0], op.kind) if op.kind is OpKind.QUANTIZE \
                else op.kind
            if output in theirs:
                difference = np.abs(ours[output].astype(np.int64) - theirs[output]).max()
                worst[kinds[output]] = max(worst.get(kinds[output], 0), int(difference))
    return worst
