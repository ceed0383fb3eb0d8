"""Post-training quantisation flow: float model + calibration data -> int8 graph and report."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcuflow.bias_correction import LayerMeans, correct_biases, with_biases
from mcuflow.errors import McuflowError, UnsupportedModelError
from mcuflow.frontends.model_types import ModelTypes
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.frontends.torch_reader import is_torch_model, torch_to_onnx
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import OP_DEFS
from mcuflow.passes.pipeline import run_passes
from mcuflow.quant.affine import AFFINE, quantize_affine, quantize_values
from mcuflow.quant.calibrate import CalibrationError, Calibrator, Method, Range
from mcuflow.quant.calibration_data import Calibration, load_calibration
from mcuflow.quant.codebook import DEFAULT_SIZE as DEFAULT_CODEBOOK_SIZE
from mcuflow.quant.codebook import quantize_codebook, stored_weight_bytes
from mcuflow.quant.int16x8 import INT16X8, quantize_int16x8
from mcuflow.quant.qdq import KeptReport, model_quantized, quantize_qdq
from mcuflow.quant.qformat import quantize_qformat
from mcuflow.quant.report import ErrorAccumulator, QuantReport, dequantize, is_classifier
from mcuflow.quant.uint8_io import with_uint8_io
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter

ModelSource = Path | str | object
"""A model file's path, or a PyTorch ExportedProgram or nn.Module."""
QuantizeFn = Callable[[Graph, Mapping[str, Range], bool], Graph]
QUANT_SCHEMES: dict[str, QuantizeFn] = {
    "affine": quantize_affine,
    "qformat": quantize_qformat,
    "codebook": quantize_codebook,
    "int16x8": quantize_int16x8,
}
"""`--scheme` name -> (float graph, calibrated ranges, per_channel) -> int8 graph."""
IO_DTYPES = ("int8", "uint8")
"""`--io-dtype`: the model's inputs and outputs as int8 codes, or as uint8 codes (LiteRT's
inference_input_type / inference_output_type uint8: a QUANTIZE at each edge)."""

MAX_CALIBRATION_SAMPLES = 10_000
"""Samples per input: each costs a float inference (two with the report), and a sample may be a
single value, so the arrays' own limits do not bound their number."""


@dataclass(frozen=True)
class FloatModel:
    """A float model after the pass pipeline, and how its I/O layout maps to the IR's.

    `input_perms[name]`: IR array = model-layout array.transpose(perm) (identity for TFLite;
    NCHW -> NHWC for 4-D ONNX inputs). `output_perms` likewise for outputs.
    """

    graph: Graph
    input_perms: dict[str, tuple[int, ...]]
    output_perms: dict[str, tuple[int, ...]]
    types: ModelTypes = ModelTypes()
    """A QDQ model's activation type and uint8 inputs and outputs."""

    def model_shape(self, name: str) -> tuple[int, ...]:
        """The shape of input `name` in the model file's own layout."""
        ir_shape, perm = self.graph.tensor(name).shape, self.input_perms[name]
        shape = [0] * len(perm)
        for axis, source in enumerate(perm):
            shape[source] = ir_shape[axis]
        return tuple(shape)


def load_float_model(model: ModelSource, example_inputs: tuple[Any, ...] | None = None
                     ) -> FloatModel:
    """Read a float (or QDQ) model and run the pass pipeline (fold, fuse, layout).

    `model` is a .tflite, .onnx or .pt2 path, or a PyTorch ExportedProgram or nn.Module (with
    `example_inputs`). The ONNX reader is imported here: onnx takes a second to import, which
    a command that reads no ONNX model should not wait for.
    """
    from mcuflow.frontends.onnx_reader import import_onnx

    if is_torch_model(model):
        imported = import_onnx(torch_to_onnx(model, example_inputs))
        return FloatModel(run_passes(imported.graph), imported.input_perms,
                          imported.output_perms, imported.types)
    path = Path(model)
    if not path.is_file():
        raise McuflowError(f"no such model file: {path}", hint="check the path")
    types = ModelTypes()
    if path.suffix.lower() == ".onnx":
        imported = import_onnx(path)
        graph, inputs, outputs = imported.graph, imported.input_perms, imported.output_perms
        types = imported.types
    else:
        graph = read_tflite(path)
        inputs = {n: tuple(range(len(graph.tensor(n).shape))) for n in graph.inputs}
        outputs = {n: tuple(range(len(graph.tensor(n).shape))) for n in graph.outputs}
    not_float = [n for n in graph.inputs if graph.tensor(n).dtype is not DType.FLOAT32]
    if not_float:
        raise McuflowError(f"'{path}' is not a float model: inputs {not_float} are "
                           f"{graph.tensor(not_float[0]).dtype.value}",
                           "quantise float models; int8 models need no `quantize`")
    return FloatModel(run_passes(graph), inputs, outputs, types)


def calibration_samples(model: FloatModel, calibration: Calibration) -> list[list[np.ndarray]]:
    """Per sample, one float32 array per graph input in the IR's layout (batch 1)."""
    names = model.graph.inputs
    per_input = []
    for name in names:
        arrays = calibration.arrays.get(name, calibration.arrays.get("") if len(names) == 1
                                        else None)
        if not arrays:
            raise CalibrationError(f"no calibration data for input '{name}' "
                                   f"(found {sorted(calibration.arrays)})",
                                   "key the .npz arrays by the model's input names")
        shape, perm = model.model_shape(name), model.input_perms[name]
        samples: list[np.ndarray] = []
        for array in arrays:
            samples += (s.transpose(perm) for s in
                        _split(array, shape, name, MAX_CALIBRATION_SAMPLES - len(samples)))
        per_input.append(samples)
    counts = {len(samples) for samples in per_input}
    if len(counts) != 1:
        raise CalibrationError(f"inputs {names} have different numbers of samples {counts}",
                               "give every input the same number of samples")
    return [list(sample) for sample in zip(*per_input, strict=True)]


def _split(array: np.ndarray, shape: tuple[int, ...], name: str, allowed: int
           ) -> list[np.ndarray]:
    """The samples in `array`, each of the input's `shape` (batch 1), as float32.

    CalibrationError when they are more than `allowed`, before any is sliced off.
    """
    array = array.astype(np.float32)
    single = array.shape in (shape, shape[1:])
    if not single and not (array.ndim == len(shape) and array.shape[1:] == shape[1:]
                           and shape[0] == 1):
        raise CalibrationError(f"calibration array of shape {array.shape} does not fit input "
                               f"'{name}' of shape {shape}",
                               f"store samples as [N, {', '.join(map(str, shape[1:]))}] arrays")
    if (1 if single else array.shape[0]) > allowed:
        raise CalibrationError(f"the calibration data of input '{name}' holds more than "
                               f"{MAX_CALIBRATION_SAMPLES} samples",
                               "calibrate on a representative subset: a few hundred samples")
    if single:
        return [array if array.shape == shape else array[None]]
    return [array[i:i + 1] for i in range(array.shape[0])]


@dataclass(frozen=True)
class QuantizeResult:
    """An int8 graph quantised from a float model, the float graph, and the report.

    The int8 graph's inputs and outputs are int8: quantise a model input x with
    `quantize_input` (round(x / scale) + zero point of the graph input, after transposing an
    ONNX NCHW image to NHWC); `input_perms` / `output_perms` give the layout change. A model
    that brought its own quantisation (QDQ) has no error `report` but a `kept` one.
    """

    graph: Graph
    float_graph: Graph
    report: QuantReport | None
    input_perms: dict[str, tuple[int, ...]]
    output_perms: dict[str, tuple[int, ...]]
    kept: KeptReport | None = None

    def tflite(self) -> bytes:
        """The int8 model as a .tflite flatbuffer."""
        return write_tflite(self.graph)

    def quantize_input(self, values: np.ndarray, index: int = 0) -> np.ndarray:
        """Model-layout float input `index` as the int8 graph's input (IR layout)."""
        name = self.graph.inputs[index]
        ir_values = np.asarray(values, np.float32).transpose(self.input_perms[name])
        tensor = self.graph.tensor(name)
        return quantize_values(ir_values, tensor.quant, tensor.dtype)

    def dequantize_outputs(self, outputs: list[np.ndarray]) -> list[np.ndarray]:
        """The int8 graph's outputs as float32 in the model's layout: scale * (q - zero point)."""
        result = []
        for name, values in zip(self.graph.outputs, outputs, strict=True):
            real = dequantize(values, self.graph.tensor(name).quant).astype(np.float32)
            result.append(real.transpose(np.argsort(self.output_perms[name])))
        return result


CalibrationData = Path | str | np.ndarray | Calibration
"""Samples as a path (see load_calibration), an array of samples of a one-input model, or a
Calibration."""


def quantize_model(
    model: ModelSource, calibration: CalibrationData | None, scheme: str = "affine",
    per_channel: bool = True, method: str = "minmax", classifier: bool | None = None,
    codebook_size: int = DEFAULT_CODEBOOK_SIZE, bias_correction: bool = True,
    evaluation: CalibrationData | None = None, example_inputs: tuple[Any, ...] | None = None,
    io_dtype: str = "int8",
) -> QuantizeResult:
    """Quantise a float .tflite/.onnx model to int8 with calibration data.

    `classifier` (default: the outputs come from SOFTMAX) turns on top-1 agreement in the
    report. `codebook_size` is the centroids per layer of `codebook`. `bias_correction` moves
    each layer's int32 bias so that its mean output over the calibration data matches the float
    model's (bias_correction.correct_biases). The report measures `evaluation` samples when
    given; otherwise the calibration samples, which the bias correction was fitted to, so it
    then flatters a little. `io_dtype` "uint8" makes the model's inputs and outputs uint8
    (int8 schemes only); int16x8 models take and give int16.
    """
    if scheme not in QUANT_SCHEMES:
        raise McuflowError(f"unknown quantisation scheme {scheme!r}",
                           f"choose one of {', '.join(QUANT_SCHEMES)}")
    _check_io_dtype(io_dtype, scheme)
    float_model = load_float_model(model, example_inputs)
    stateful = [op.name for op in float_model.graph.operators if OP_DEFS[op.kind].stateful]
    if stateful:
        raise UnsupportedModelError(
            f"'{model}' has stateful ops ({', '.join(stateful[:3])}: SVDF), which mcuflow "
            "cannot quantise: their state's range depends on the whole input sequence",
            "quantise it with the TFLite converter (int8 SVDF with an int16 state)")
    if model_quantized(float_model.graph):
        if scheme != "affine":
            raise McuflowError(f"'{model}' brings its own int8 quantisation (QuantizeLinear/"
                               f"DequantizeLinear), which --scheme {scheme} would replace",
                               "use the affine scheme, or quantise the float model instead")
        return quantize_own(float_model, calibration, io_dtype)
    if calibration is None:
        raise McuflowError(f"'{model}' is a float model", "pass --calibration DATA to "
                           "quantise it (samples as .npy, .npz or a folder)")
    samples = calibration_samples(float_model, _as_calibration(calibration))
    measured = samples if evaluation is None else _evaluation_samples(float_model, evaluation)
    graph = with_biases(float_model.graph) if bias_correction else float_model.graph
    means = LayerMeans(graph) if bias_correction else None
    ranges = _calibrated_ranges(graph, samples, Method.parse(method), means)
    int8_graph = (quantize_codebook(graph, ranges, per_channel, codebook_size)
                  if scheme == "codebook" else QUANT_SCHEMES[scheme](graph, ranges, per_channel))
    if means is not None:
        int8_graph = correct_biases(int8_graph, samples, means)
    if io_dtype == "uint8":
        int8_graph = with_uint8_io(int8_graph, [*int8_graph.inputs, *int8_graph.outputs])
    classifier = is_classifier(graph) if classifier is None else classifier
    errors = _measured_errors(graph, int8_graph, measured, classifier)
    report = errors.report(scheme, stored_weight_bytes(int8_graph), bias_correction,
                           held_out=evaluation is not None)
    return QuantizeResult(int8_graph, graph, report,
                          float_model.input_perms, float_model.output_perms)


def quantize_own(model: FloatModel, calibration: CalibrationData | None = None,
                 io_dtype: str = "int8") -> QuantizeResult:
    """The int8 (or int16x8) graph of a model that brought its own parameters (see quant.qdq).

    `calibration` only serves tensors the model left in float. The inputs and outputs the model
    takes or gives as uint8 codes are uint8, and all of them with `io_dtype` "uint8".
    """
    ranges = None
    if calibration is not None:
        samples = calibration_samples(model, _as_calibration(calibration))
        ranges = _calibrated_ranges(model.graph, samples, Method.MINMAX, None)
    rules = INT16X8 if model.types.activations is DType.INT16 else AFFINE
    int8_graph, kept = quantize_qdq(model.graph, ranges, rules)
    edges = [*int8_graph.inputs, *int8_graph.outputs]
    uint8 = [name for name in edges if io_dtype == "uint8" or name in model.types.uint8_io]
    if uint8:
        int8_graph = with_uint8_io(int8_graph, uint8)
    return QuantizeResult(int8_graph, model.graph, None, model.input_perms, model.output_perms,
                          kept)


def _check_io_dtype(io_dtype: str, scheme: str) -> None:
    if io_dtype not in IO_DTYPES:
        raise McuflowError(f"unknown model I/O type {io_dtype!r}",
                           f"choose one of {', '.join(IO_DTYPES)}")
    if io_dtype == "uint8" and scheme == "int16x8":
        raise McuflowError("uint8 model I/O is for int8 models; int16x8 models take and give "
                           "int16", "drop --io-dtype uint8, or quantise with an int8 scheme")


def _as_calibration(data: CalibrationData) -> Calibration:
    if isinstance(data, np.ndarray):
        return Calibration({"": [data]})
    return data if isinstance(data, Calibration) else load_calibration(data)


def _evaluation_samples(model: FloatModel, evaluation: CalibrationData) -> list[list[np.ndarray]]:
    """The held-out samples, with errors naming them as such."""
    try:
        return calibration_samples(model, _as_calibration(evaluation))
    except CalibrationError as error:
        raise CalibrationError(f"evaluation data: {error.message}", error.hint) from None


def _calibrated_ranges(graph: Graph, samples: list[list[np.ndarray]], method: Method,
                       means: LayerMeans | None) -> dict[str, Range]:
    """Every activation's range; the same float runs feed the bias correction's `means`."""
    calibrator = Calibrator(graph.activations())
    for sample in samples:
        with np.errstate(over="ignore", invalid="ignore"):  # the calibrator reports overflow
            tensors = run_float(graph, sample, keep_intermediates=True).tensors
            calibrator.observe(tensors)
            if means is not None:
                means.observe(tensors)
    return calibrator.ranges(method)


def _measured_errors(graph: Graph, int8_graph: Graph, samples: list[list[np.ndarray]],
                     classifier: bool) -> ErrorAccumulator:
    """Both graphs run on every sample, their differences accumulated layer by layer."""
    errors = ErrorAccumulator(graph, int8_graph, classifier)
    interpreter = Interpreter(int8_graph)
    for sample in samples:
        inputs = [quantize_values(x, int8_graph.tensor(n).quant, int8_graph.tensor(n).dtype)
                  for n, x in zip(int8_graph.inputs, sample, strict=True)]
        errors.add(run_float(graph, sample, keep_intermediates=True).tensors,
                   interpreter.run(inputs, keep_intermediates=True).tensors)
    return errors
