"""Our post-training int8 quantisation vs ONNX Runtime's static quantiser, in one run.

Both quantise the same float model with the same calibration samples; ONNX Runtime with
quantize_static (QDQ format, per-channel int8 weights, int8 activations, MinMax calibration).
- digits: the CNN the test-suite trains on scikit-learn's digits (needs torch); accuracy on the
  held-back split, float and both int8 models.
- MLPerf Tiny float models (TFLite): converted to ONNX here (every op they use maps one to one,
  convs between NHWC<->NCHW transposes); output SQNR of each int8 model against its own float
  model on held-out synthetic inputs (N(0, 1); the same for both).
Ours is shown with its default bias correction and without it (ONNX Runtime has none).
Run: .venv/bin/python bench/quantize.py
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from mcuflow import api  # noqa: E402
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import Graph, Operator  # noqa: E402
from mcuflow.ir.ops import OpKind, Padding  # noqa: E402
from mcuflow.quant.report import dequantize, sqnr_db  # noqa: E402
from mcuflow.ref.float_kernels import run_float  # noqa: E402
from mcuflow.ref.interpreter import Interpreter  # noqa: E402
from tests.support import FLOAT_MODELS, SHARED_MODELS  # noqa: E402

CALIBRATION = 100
EVALUATION = 50
TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
OUR_VARIANTS = [
    ("mcuflow affine minmax (default)", "affine", "minmax", True),
    ("mcuflow affine minmax, no bias corr.", "affine", "minmax", False),
    ("mcuflow affine mse", "affine", "mse", True),
    ("mcuflow qformat minmax", "qformat", "minmax", True),
]
"""(row label, scheme, calibration method, bias correction); every one per-channel."""


class _Samples(CalibrationDataReader):
    """ONNX Runtime's calibration reader over a list of input arrays."""

    def __init__(self, name: str, samples: np.ndarray) -> None:
        self._items = iter([{name: s[None]} for s in samples])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def ort_quantize(model: bytes, samples: np.ndarray, directory: Path) -> ort.InferenceSession:
    """ONNX Runtime's static QDQ quantisation, per-channel, int8 everywhere, MinMax."""
    source, target = directory / "float.onnx", directory / "int8.onnx"
    source.write_bytes(model)
    name = onnx.load_from_string(model).graph.input[0].name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(str(source), str(target), _Samples(name, samples),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    return ort.InferenceSession(str(target))


def ort_outputs(session: ort.InferenceSession, samples: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: s[None]})[0] for s in samples])


def our_outputs(result: api.QuantizeResult, samples: np.ndarray) -> np.ndarray:
    """Dequantised outputs of our int8 graph (run by the reference interpreter)."""
    interpreter = Interpreter(result.graph)
    quant = result.graph.tensor(result.graph.outputs[0]).quant
    return np.concatenate([dequantize(interpreter.run([result.quantize_input(s[None])])
                                      .outputs[0], quant) for s in samples])


def sqnr(reference: np.ndarray, approx: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    return sqnr_db(float(np.sum(reference**2)), float(np.sum((reference - approx) ** 2)))


# --- TFLite float graph -> ONNX -----------------------------------------------------------------


class _OnnxWriter:
    """Float IR graph (NHWC) -> ONNX; each conv and pool sits between two transposes."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, data: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(data), name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def activation(self, value: str, activation: Activation, output: str) -> str:
        if activation is Activation.NONE:
            return self.node("Identity", [value], output)
        if activation is Activation.RELU:
            return self.node("Relu", [value], output)
        low, high = (0.0, 6.0) if activation is Activation.RELU6 else (-1.0, 1.0)
        bounds = [self.constant(f"{output}/{b}", np.float32(v)) for b, v in (("lo", low),
                                                                            ("hi", high))]
        return self.node("Clip", [value, *bounds], output)

    def pads(self, op: Operator, kernel: tuple[int, int], strides: tuple[int, int],
             dilations: tuple[int, int]) -> list[int]:
        if op.attrs.padding is Padding.VALID:
            return [0, 0, 0, 0]
        in_hw = self.graph.tensor(op.inputs[0]).shape[1:3]
        out_hw = self.graph.tensor(op.outputs[0]).shape[1:3]
        before, after = [], []
        for size, out, k, s, d in zip(in_hw, out_hw, kernel, strides, dilations, strict=True):
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            before.append(total // 2)
            after.append(total - total // 2)
        return before + after

    def spatial(self, op: Operator, op_type: str, extra: list[str], **attrs: object) -> None:
        out = op.outputs[0]
        nchw = self.node("Transpose", [op.inputs[0]], f"{out}/nchw", perm=TO_NCHW)
        y = self.node(op_type, [nchw, *extra], f"{out}/raw", **attrs)
        y = self.activation(y, op.attrs.activation, f"{out}/act")
        self.node("Transpose", [y], out, perm=TO_NHWC)

    def convolution(self, op: Operator) -> None:
        a, w = op.attrs, self.graph.tensor(op.inputs[1]).data
        depthwise = op.kind is OpKind.DEPTHWISE_CONV_2D
        weights = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)
        kernel, strides, dilations = w.shape[1:3], (a.stride_h, a.stride_w), (a.dilation_h,
                                                                              a.dilation_w)
        inputs = [self.constant(f"{op.outputs[0]}/w", weights)]
        if len(op.inputs) > 2:
            inputs.append(self.constant(f"{op.outputs[0]}/b", self.graph.tensor(op.inputs[2]).data))
        group = self.graph.tensor(op.inputs[0]).shape[3] if depthwise else 1
        self.spatial(op, "Conv", inputs, kernel_shape=list(kernel), strides=list(strides),
                     dilations=list(dilations), pads=self.pads(op, kernel, strides, dilations),
                     group=group)

    def pool(self, op: Operator) -> None:
        a = op.attrs
        kernel, strides = (a.filter_h, a.filter_w), (a.stride_h, a.stride_w)
        op_type = "AveragePool" if op.kind is OpKind.AVERAGE_POOL_2D else "MaxPool"
        self.spatial(op, op_type, [], kernel_shape=list(kernel), strides=list(strides),
                     pads=self.pads(op, kernel, strides, (1, 1)))

    def fully_connected(self, op: Operator) -> None:
        out = op.outputs[0]
        weights = self.graph.tensor(op.inputs[1]).data
        shape = self.constant(f"{out}/shape", np.array([-1, weights.shape[1]]))
        flat = self.node("Reshape", [op.inputs[0], shape], f"{out}/flat")
        inputs = [flat, self.constant(f"{out}/w", weights)]
        if len(op.inputs) > 2:
            inputs.append(self.constant(f"{out}/b", self.graph.tensor(op.inputs[2]).data))
        y = self.node("Gemm", inputs, f"{out}/raw", transB=1)
        self.activation(y, op.attrs.activation, out)

    def elementwise(self, op: Operator) -> None:
        op_type = {OpKind.ADD: "Add", OpKind.SUB: "Sub", OpKind.MUL: "Mul"}[op.kind]
        for name in op.inputs:
            if self.graph.tensor(name).is_constant:
                self.constant(name, self.graph.tensor(name).data)
        y = self.node(op_type, list(op.inputs), f"{op.outputs[0]}/raw")
        self.activation(y, op.attrs.activation, op.outputs[0])

    def reshape(self, op: Operator) -> None:
        shape = self.constant(f"{op.outputs[0]}/shape", np.array(op.attrs.new_shape))
        self.node("Reshape", [op.inputs[0], shape], op.outputs[0])

    def softmax(self, op: Operator) -> None:
        assert op.attrs.beta == 1.0, "softmax with beta != 1"
        self.node("Softmax", [op.inputs[0]], op.outputs[0], axis=-1)

    def model(self) -> bytes:
        writers: dict[OpKind, Callable[[Operator], None]] = {
            OpKind.CONV_2D: self.convolution, OpKind.DEPTHWISE_CONV_2D: self.convolution,
            OpKind.AVERAGE_POOL_2D: self.pool, OpKind.MAX_POOL_2D: self.pool,
            OpKind.FULLY_CONNECTED: self.fully_connected, OpKind.ADD: self.elementwise,
            OpKind.SUB: self.elementwise, OpKind.MUL: self.elementwise,
            OpKind.RESHAPE: self.reshape, OpKind.SOFTMAX: self.softmax,
        }
        for op in self.graph.operators:
            writers[op.kind](op)
        info = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT,
                                              list(self.graph.tensor(n).shape))
                for n in (*self.graph.inputs, *self.graph.outputs)]
        graph = helper.make_graph(self.nodes, self.graph.name, info[:1], info[1:],
                                  self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model.SerializeToString()


# --- the two benchmarks ------------------------------------------------------------------------


def bench_digits(directory: Path) -> list[str]:
    try:
        from tests.models.test_digits import train_digits
    except ImportError as error:
        return [f"digits: skipped ({error}; install the `nas` extra for torch)"]
    data = train_digits()
    path = directory / "digits.onnx"
    path.write_bytes(data.onnx)
    calibration = data.train_x[:CALIBRATION]
    float_session = ort.InferenceSession(data.onnx)

    def accuracy(logits: np.ndarray) -> str:
        return f"{100 * np.mean(logits.argmax(axis=1) == data.test_y):6.2f}%"

    theirs = ort_quantize(data.onnx, calibration, directory)
    rows = [f"{'digits (' + str(len(data.test_y)) + ' test images)':38} accuracy",
            f"  {'float (onnxruntime)':36} {accuracy(ort_outputs(float_session, data.test_x))}",
            f"  {'onnxruntime quantize_static QDQ':36} "
            f"{accuracy(ort_outputs(theirs, data.test_x))}"]
    for label, scheme, method, corrected in OUR_VARIANTS:
        result = api.quantize_model(path, calibration, scheme, True, method, classifier=True,
                                    bias_correction=corrected)
        rows.append(f"  {label:36} {accuracy(our_outputs(result, data.test_x))}")
    return rows


def bench_mlperf(directory: Path, model: str) -> list[str]:
    float_model = api.load_float_model(SHARED_MODELS / model)
    graph = float_model.graph
    shape = graph.tensor(graph.inputs[0]).shape
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((CALIBRATION, *shape[1:])).astype(np.float32)
    evaluation = rng.standard_normal((EVALUATION, *shape[1:])).astype(np.float32)
    onnx_model = _OnnxWriter(graph).model()
    float_session = ort.InferenceSession(onnx_model)
    reference = np.concatenate([run_float(graph, [s[None]]).outputs[0] for s in evaluation])
    ort_float = ort_outputs(float_session, evaluation)
    theirs = ort_outputs(ort_quantize(onnx_model, calibration, directory), evaluation)
    rows = [f"{model:38} output SQNR vs float (dB); ONNX export max |diff| "
            f"{np.abs(ort_float - reference).max():.1e}",
            f"  {'onnxruntime quantize_static QDQ':36} {sqnr(ort_float, theirs):6.1f}"]
    for label, scheme, method, corrected in OUR_VARIANTS:
        result = api.quantize_model(SHARED_MODELS / model, calibration, scheme, True, method,
                                    bias_correction=corrected)
        rows.append(f"  {label:36} {sqnr(reference, our_outputs(result, evaluation)):6.1f}")
    return rows


def main() -> None:
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's advice
    ort.set_default_logger_severity(3)
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        print("\n".join(bench_digits(directory)))
        for model in FLOAT_MODELS:
            print("\n".join(bench_mlperf(directory, model)))
    print(f"(calibration: {CALIBRATION} samples; MLPerf evaluation: {EVALUATION} other samples;"
          f" SQNR {math.inf} means exact)")


if __name__ == "__main__":
    main()
