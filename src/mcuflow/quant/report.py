"""The quantisation report: per-layer SQNR against the float graph, weight bytes, agreement."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.ir.quantization import QuantParams


@dataclass(frozen=True)
class LayerError:
    """The quantisation error of one op's output over the calibration data."""

    tensor: str
    op: str
    sqnr_db: float


@dataclass(frozen=True)
class QuantReport:
    """What quantisation cost: error per layer and at the outputs, and what it saved in bytes.

    `stored_weight_bytes` is what the model stores (after any compression), `unpacked` what
    its weights occupy once decoded for the kernels, `float_weight_bytes` the float model's.
    `top1_agreement` is the fraction of samples whose arg-max class matches the float model's,
    for classifiers only. `bias_corrected` says whether the biases were moved onto the float
    model's mean layer outputs over the calibration samples; `held_out` whether the `samples`
    measured here were other ones.
    """

    scheme: str
    bias_corrected: bool
    held_out: bool
    samples: int
    layers: tuple[LayerError, ...]
    output_sqnr_db: dict[str, float]
    top1_agreement: float | None
    stored_weight_bytes: int
    unpacked_weight_bytes: int
    float_weight_bytes: int

    def to_json(self) -> dict[str, object]:
        """The report as JSON-compatible data (infinite SQNR, an exact layer, becomes null)."""
        data = asdict(self)
        data["layers"] = [{**layer, "sqnr_db": _finite(layer["sqnr_db"])}
                          for layer in data["layers"]]
        data["output_sqnr_db"] = {k: _finite(v) for k, v in self.output_sqnr_db.items()}
        return data


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def sqnr_db(signal: float, noise: float) -> float:
    """10 log10(signal energy / noise energy); infinite when there is no noise."""
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def dequantize(values: np.ndarray, quant: QuantParams | None) -> np.ndarray:
    """Real values of integer codes: scale * (q - zero_point), per slice along the axis.

    Without parameters (ARG_MAX's int32 indices) the values are their own.
    """
    codes = values.astype(np.float64)
    if quant is None:
        return codes
    if not quant.is_per_channel:
        return quant.scale0 * (codes - quant.zero_point0)
    shape = [1] * codes.ndim
    shape[quant.axis] = -1
    scales = np.asarray(quant.scale, np.float64).reshape(shape)
    return scales * (codes - np.asarray(quant.zero_point, np.float64).reshape(shape))


def constant_bytes(graph: Graph) -> int:
    """Bytes of every constant tensor (weights, biases, constant operands)."""
    return sum(t.nbytes for t in graph.tensors.values() if t.is_constant)


class ErrorAccumulator:
    """Sums signal and noise energy of every op output over runs of both graphs.

    Tensors are matched by name: the int8 graph keeps the float graph's tensor names.
    `classifier` enables top-1 agreement on the graph outputs.
    """

    def __init__(self, float_graph: Graph, int8_graph: Graph, classifier: bool) -> None:
        self.float_graph, self.int8_graph = float_graph, int8_graph
        self.classifier = classifier
        self._layers = [(op.outputs[0], op.kind.value) for op in int8_graph.operators
                        if op.outputs[0] in float_graph.tensors]
        self._signal = dict.fromkeys((name for name, _ in self._layers), 0.0)
        self._noise = dict(self._signal)
        self._agree = 0
        self.samples = 0

    def add(self, float_tensors: Mapping[str, np.ndarray],
            int8_tensors: Mapping[str, np.ndarray]) -> None:
        """Accumulate one sample's tensors (as run with keep_intermediates)."""
        for name, _ in self._layers:
            reference = float_tensors[name].astype(np.float64)
            approx = dequantize(int8_tensors[name], self.int8_graph.tensors[name].quant)
            self._signal[name] += float(np.sum(reference**2))
            self._noise[name] += float(np.sum((reference - approx.reshape(reference.shape))**2))
        if self.classifier:
            self._agree += all(np.array_equal(np.argmax(float_tensors[n], axis=-1),
                                              np.argmax(int8_tensors[n], axis=-1))
                               for n in self.float_graph.outputs)
        self.samples += 1

    def report(self, scheme: str, stored_weight_bytes: int | None = None,
               bias_corrected: bool = False, held_out: bool = False) -> QuantReport:
        """The report over every sample added so far."""
        layers = tuple(LayerError(name, kind, sqnr_db(self._signal[name], self._noise[name]))
                       for name, kind in self._layers)
        outputs = {name: sqnr_db(self._signal[name], self._noise[name])
                   for name in self.int8_graph.outputs if name in self._signal}
        unpacked = constant_bytes(self.int8_graph)
        return QuantReport(
            scheme=scheme,
            bias_corrected=bias_corrected,
            held_out=held_out,
            samples=self.samples,
            layers=layers,
            output_sqnr_db=outputs,
            top1_agreement=self._agree / self.samples if self.classifier and self.samples
            else None,
            stored_weight_bytes=unpacked if stored_weight_bytes is None else stored_weight_bytes,
            unpacked_weight_bytes=unpacked,
            float_weight_bytes=constant_bytes(self.float_graph),
        )


def is_classifier(graph: Graph) -> bool:
    """True when every graph output is produced by SOFTMAX (a class distribution)."""
    producers = {op.outputs[0]: op.kind for op in graph.operators}
    return bool(graph.outputs) and all(producers.get(n) is OpKind.SOFTMAX for n in graph.outputs)
