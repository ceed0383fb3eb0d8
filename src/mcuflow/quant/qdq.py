"""The QDQ pass: a float graph carrying the model's own int8 parameters becomes the int8 graph.

frontends.onnx_qdq reads a model's QuantizeLinear/DequantizeLinear nodes into parameters on the
float graph's tensors; this pass quantises with exactly those (quant.affine keeps them), and
reports, tensor by tensor, what was kept and where mcuflow had to choose or add parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import Enum

from mcuflow.ir.constraints import WEIGHT_AXIS
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.quantization import QuantParams
from mcuflow.quant.affine import AFFINE, ParamRules, quantize_graph
from mcuflow.quant.calibrate import Range


class Origin(Enum):
    """Where a tensor's int8 parameters came from."""

    MODEL = "model"
    """As the model's Q/DQ nodes gave them."""
    SHARED = "shared"
    """The model left the tensor float; it shares its neighbour's (a reshape, a pool)."""
    CHOSEN = "chosen"
    """The model left the tensor float; mcuflow chose (from --calibration data, or the values
    of a constant)."""
    CHANGED = "changed"
    """The model gave other parameters that the int8 kernels cannot use."""
    ADDED = "added"
    """A requantisation mcuflow inserted between two of the model's parameter sets."""


@dataclass(frozen=True)
class KeptTensor:
    """One quantised tensor of the int8 graph: its parameters and where they came from."""

    tensor: str
    role: str
    scale: float
    zero_point: int
    channels: int
    origin: Origin
    model_scale: float | None


@dataclass(frozen=True)
class KeptReport:
    """Per tensor, the parameters kept from the model, and any mcuflow chose or added."""

    tensors: tuple[KeptTensor, ...]

    @property
    def flagged(self) -> tuple[KeptTensor, ...]:
        """The tensors whose parameters are not the model's own."""
        return tuple(t for t in self.tensors if t.origin not in (Origin.MODEL, Origin.SHARED))

    def to_json(self) -> dict[str, object]:
        """JSON-compatible data."""
        return {"kept": [{**asdict(t), "origin": t.origin.value} for t in self.tensors],
                "flagged": [t.tensor for t in self.flagged]}


def quantize_qdq(graph: Graph, ranges: Mapping[str, Range] | None = None,
                 rules: ParamRules = AFFINE) -> tuple[Graph, KeptReport]:
    """The int8 graph of a float graph whose tensors carry the model's parameters.

    `ranges` (calibrated) serve only tensors the model left in float; without them such a
    tensor is an error naming it. `rules` are int16x8's for a model of int16 activations.
    """
    int8_graph = quantize_graph(graph, ranges or {}, rules, per_channel=True)
    return int8_graph, kept_report(graph, int8_graph, ranges or {})


def model_quantized(graph: Graph) -> bool:
    """True when some tensor of float `graph` carries parameters the model gave it."""
    return any(t.quant is not None and t.dtype is DType.FLOAT32 for t in graph.tensors.values())


def kept_report(float_graph: Graph, int8_graph: Graph, ranges: Mapping[str, Range]
                ) -> KeptReport:
    """Compare every activation and weight of `int8_graph` with what `float_graph` carried."""
    roles = _roles(int8_graph)
    entries = []
    for name, tensor in int8_graph.tensors.items():
        if tensor.quant is None or tensor.dtype not in (DType.INT8, DType.INT16):
            continue
        source = float_graph.tensors.get(name)
        model = None if source is None else source.quant
        entries.append(KeptTensor(name, roles.get(name, "activation"), tensor.quant.scale0,
                                  tensor.quant.zero_point0, len(tensor.quant.scale),
                                  _origin(source is None, model, tensor.quant,
                                          name in ranges or tensor.is_constant),
                                  None if model is None else model.scale0))
    return KeptReport(tuple(entries))


def _origin(added: bool, model: QuantParams | None, chosen: QuantParams,
            chosen_here: bool) -> Origin:
    if added:
        return Origin.ADDED
    if model is None:
        return Origin.CHOSEN if chosen_here else Origin.SHARED
    return Origin.MODEL if model == chosen else Origin.CHANGED


def _roles(graph: Graph) -> dict[str, str]:
    """'weights' for the weights of weighted ops, 'constant' for other constants."""
    roles = {name: "constant" for name, t in graph.tensors.items() if t.is_constant}
    for op in graph.operators:
        if op.kind in WEIGHT_AXIS:
            roles[op.inputs[1]] = "weights"
    return roles
