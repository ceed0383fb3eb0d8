"""Empirical bias correction: each int8 layer's mean output is moved onto the float layer's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

import mcuflow.ref.kernels  # noqa: F401  (registers every kernel)
from mcuflow.ir.constraints import WEIGHT_AXIS
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.passes.common import unique_name
from mcuflow.quant.affine import quantize_values, shifted_bias
from mcuflow.quant.report import dequantize
from mcuflow.ref.interpreter import initial_state
from mcuflow.ref.registry import FLOAT_KERNELS, prepare

MIN_OBSERVATIONS = 4
"""A layer is corrected only when each channel's mean rests on at least this many outputs
(calibration samples times output positions); fewer would fit the noise of the samples."""

Sample = Sequence[np.ndarray]


class LayerMeans:
    """Per-channel means of each weighted op's float output before its activation.

    Fed the float tensors of each calibration run (`observe`), alongside the calibrator, so the
    float model runs once per sample for both.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.ops = [op for op in graph.operators if op.kind in WEIGHT_AXIS and len(op.inputs) == 3]
        self._sums = {op.outputs[0]: 0.0 for op in self.ops}
        self.observations = dict.fromkeys(self._sums, 0)

    def observe(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Add one float run's pre-activation outputs (tensors as run_float keeps them)."""
        for op in self.ops:
            outputs = _channels(_linear_output(self.graph, op, [tensors[n] for n in op.inputs]))
            self._sums[op.outputs[0]] += outputs.sum(axis=0)
            self.observations[op.outputs[0]] += outputs.shape[0]

    def mean(self, name: str) -> np.ndarray:
        """The channel means of the op producing `name`."""
        return self._sums[name] / self.observations[name]


def correct_biases(int8_graph: Graph, samples: Sequence[Sample], means: LayerMeans) -> Graph:
    """`int8_graph` with the bias of every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED moved.

    This is the empirical bias correction of Nagel et al., "Data-Free Quantization Through
    Weight Equalization and Bias Correction" (2019). Layer by layer in execution order, the
    per-channel mean, over the calibration `samples` (float32, IR layout, one array per graph
    input), of the op's real output before its activation in the int8 graph (its int8 input as
    the already corrected layers produce it, its dequantised weights and bias) is compared with
    the float graph's (`means`, observed on the same samples); the bias absorbs the difference.
    Weight rounding errors and the drift that upstream layers cause thus cancel on average.
    Scales, zero points and weights are kept, so the graph is still a TFLite int8 model;
    `int8_graph` itself is updated and returned.
    """
    float_ops = {op.outputs[0]: op for op in means.ops}
    values = [{name: quantize_values(x, int8_graph.tensor(name).quant,
                                     int8_graph.tensor(name).dtype)
               for name, x in zip(int8_graph.inputs, sample, strict=True)} for sample in samples]
    for tensors in values:  # each sample from the start state (an LSTM's), as the float run
        tensors.update({name: initial_state(int8_graph.tensor(name))
                        for name in int8_graph.variables()})
    last_use = _last_uses(int8_graph)
    for index, op in enumerate(int8_graph.operators):
        name = op.outputs[0]
        if name in float_ops and means.observations[name] >= MIN_OBSERVATIONS:
            _correct(int8_graph, op, float_ops[name], means, values)
        _run(int8_graph, op, values)
        for dead in last_use.get(index, ()):
            for tensors in values:
                del tensors[dead]
    return int8_graph


def with_biases(graph: Graph) -> Graph:
    """A copy of float `graph` in which every weighted op without a bias has a zero one.

    A bias-free layer (an ONNX MatMul, a convolution exported with bias=False) then has an
    int32 bias that correct_biases can move.
    """
    graph = graph.copy()
    for op in graph.operators:
        if op.kind in WEIGHT_AXIS and len(op.inputs) == 2:
            channels = graph.tensor(op.outputs[0]).shape[-1]
            name = unique_name(graph, f"{op.outputs[0]}/bias")
            graph.add_tensor(Tensor(name, (channels,), DType.FLOAT32,
                                    data=np.zeros(channels, np.float32)))
            op.inputs = (*op.inputs, name)
    return graph


def _correct(graph: Graph, op: Operator, float_op: Operator, means: LayerMeans,
             values: list[dict[str, np.ndarray]]) -> None:
    """Shift the op's int32 bias by the mean error of its pre-activation output."""
    x, weights, bias = (graph.tensor(name) for name in op.inputs)
    real_weights = dequantize(weights.data, weights.quant).astype(np.float32)
    real_bias = dequantize(bias.data, bias.quant).astype(np.float32)
    total = 0.0
    for tensors in values:
        real_x = dequantize(tensors[x.name], x.quant).astype(np.float32)
        total += _channels(_linear_output(graph, float_op,
                                          [real_x, real_weights, real_bias])).sum(axis=0)
    name = op.outputs[0]
    shift = total / means.observations[name] - means.mean(name)
    graph.tensors[bias.name] = replace(bias, data=shifted_bias(bias.data, bias.quant, shift))


def _linear_output(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> np.ndarray:
    """The float kernel's output of `op` without its fused activation."""
    linear = replace(op, attrs=replace(op.attrs, activation=Activation.NONE))
    return FLOAT_KERNELS[op.kind](graph, linear, inputs)[0]


def _channels(output: np.ndarray) -> np.ndarray:
    """An op output as rows of channels (channels last), in float64."""
    return output.reshape(-1, output.shape[-1]).astype(np.float64)


def _run(graph: Graph, op: Operator, values: list[dict[str, np.ndarray]]) -> None:
    """Execute one int8 op of every sample with the reference kernels."""
    kernel = prepare(graph, op)
    constants = {name: graph.tensor(name).data for name in op.inputs
                 if graph.tensor(name).is_constant}
    for tensors in values:
        outputs = kernel([tensors[name] if name in tensors else constants[name]
                          for name in op.inputs])
        tensors.update(zip(op.outputs, outputs, strict=True))


def _last_uses(graph: Graph) -> dict[int, list[str]]:
    """Op index -> the activations no later op reads (graph outputs are never freed)."""
    last: dict[int, list[str]] = {}
    for name, readers in graph.uses().consumers.items():
        if not graph.tensor(name).is_constant and name not in graph.outputs:
            last.setdefault(readers[-1], []).append(name)
    return last
