"""How close mcuflow's int8 outputs of a QDQ model come to ONNX Runtime's, in output LSB.

A QDQ model is defined in float (fake quantisation); integer requantisation rounds differently.
The honest yardstick is ONNX Runtime itself: its float definition (graph optimisations off, so
every QuantizeLinear/DequantizeLinear runs as written) against mcuflow's reference interpreter
(which the generated C equals bit for bit), beside ONNX Runtime's own int8 kernels (optimisations
on, Q/DQ fused into QLinear ops) against the same float definition.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from mcuflow.errors import McuflowError
from mcuflow.ptq import QuantizeResult
from mcuflow.quant.report import dequantize
from mcuflow.ref.interpreter import Interpreter

PERCENTILE = 99.0


@dataclass(frozen=True)
class LsbDifference:
    """Differences of int8 output codes: the largest, the 99th percentile, the share within 1."""

    max_lsb: int
    p99_lsb: float
    within_1lsb: float

    @classmethod
    def of(cls, ours: list[np.ndarray], reference: list[np.ndarray]) -> LsbDifference:
        """Over every element of every sample's outputs."""
        diffs = np.concatenate([np.abs(a.astype(np.int64) - b.astype(np.int64)).reshape(-1)
                                for a, b in zip(ours, reference, strict=True)])
        return cls(int(diffs.max()), float(np.percentile(diffs, PERCENTILE)),
                   float(np.mean(diffs <= 1)))


@dataclass(frozen=True)
class OnnxRuntimeAgreement:
    """mcuflow and ONNX Runtime's int8 kernels, each against ONNX Runtime's float definition."""

    samples: int
    mcuflow: LsbDifference
    onnxruntime_int8: LsbDifference

    def to_json(self) -> dict[str, object]:
        """The issue's field names: onnxruntime_* for mcuflow's difference to ONNX Runtime."""
        return {"onnxruntime_samples": self.samples,
                "onnxruntime_max_lsb": self.mcuflow.max_lsb,
                "onnxruntime_p99_lsb": self.mcuflow.p99_lsb,
                "onnxruntime_within_1lsb": self.mcuflow.within_1lsb,
                "onnxruntime_int8_vs_float_max_lsb": self.onnxruntime_int8.max_lsb,
                "onnxruntime_int8_vs_float_p99_lsb": self.onnxruntime_int8.p99_lsb,
                "onnxruntime_int8_vs_float_within_1lsb": self.onnxruntime_int8.within_1lsb}


def random_model_inputs(quantized: QuantizeResult, runs: int, seed: int
                        ) -> list[list[np.ndarray]]:
    """Float inputs in the model's layout that its first QuantizeLinear represents exactly."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(runs):
        sample = []
        for name in quantized.graph.inputs:
            tensor = quantized.graph.tensor(name)
            codes = rng.integers(-128, 128, tensor.shape, dtype=np.int64)
            real = dequantize(codes, tensor.quant).astype(np.float32)
            sample.append(real.transpose(np.argsort(quantized.input_perms[name])))
        samples.append(sample)
    return samples


def onnxruntime_agreement(model: bytes, quantized: QuantizeResult,
                          samples: list[list[np.ndarray]]) -> OnnxRuntimeAgreement:
    """Run the ONNX model's bytes in ONNX Runtime twice and mcuflow's int8 graph on `samples`."""
    ort = _onnxruntime()
    exact, fused = (_session(ort, model, level) for level in (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL))
    interpreter = Interpreter(quantized.graph)
    ours, definition, kernels = [], [], []
    for sample in samples:
        fed = [quantized.quantize_input(x, i) for i, x in enumerate(sample)]
        ours += interpreter.run(fed).outputs
        definition += _codes(quantized, _run(exact, sample))
        kernels += _codes(quantized, _run(fused, sample))
    return OnnxRuntimeAgreement(len(samples), LsbDifference.of(ours, definition),
                                LsbDifference.of(kernels, definition))


def _onnxruntime() -> Any:
    try:
        return importlib.import_module("onnxruntime")
    except ImportError:
        raise McuflowError("comparing with ONNX Runtime needs the onnxruntime package",
                           "pip install onnxruntime (mcuflow's test extra has it)") from None


def _session(ort: Any, model: bytes, level: Any) -> Any:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _run(session: Any, sample: list[np.ndarray]) -> list[np.ndarray]:
    feeds = {meta.name: x for meta, x in zip(session.get_inputs(), sample, strict=True)}
    return session.run(None, feeds)


def _codes(quantized: QuantizeResult, outputs: list[np.ndarray]) -> list[np.ndarray]:
    """ONNX Runtime's float outputs as the int8 graph's output codes, in the IR's layout."""
    codes = []
    for name, values in zip(quantized.graph.outputs, outputs, strict=True):
        quant = quantized.graph.tensor(name).quant
        ir_values = np.asarray(values, np.float64).transpose(quantized.output_perms[name])
        codes.append(np.clip(np.round(ir_values / quant.scale0) + quant.zero_point0, -128, 127))
    return codes
