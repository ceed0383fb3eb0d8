"""Recurrent keyword spotters as float ONNX models: 49 frames x 10 features -> LSTM or GRU.

PyTorch's export pattern: [1, time, features] -> Transpose -> LSTM / GRU (forward) -> Y_h ->
Reshape -> Gemm -> Softmax, random weights from a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mcuflow.ptq import QuantizeResult, quantize_model
from tests.coverage_models import LSTM_FEATURES, LSTM_FRAMES, LSTM_KEYWORDS, LSTM_UNITS
from tests.support import litert_interpreter, litert_invoke

GATES = {"LSTM": 4, "GRU": 3}


def recurrent_kws(op_type: str, seed: int = 0, frames: int = LSTM_FRAMES,
                  **attributes: object) -> bytes:
    """The keyword spotter with an ONNX `op_type` ("LSTM" or "GRU") layer of LSTM_UNITS."""
    rng = np.random.default_rng(seed)
    gates, units = GATES[op_type], LSTM_UNITS
    arrays = {"W": rng.normal(0, 0.3, (1, gates * units, LSTM_FEATURES)),
              "R": rng.normal(0, 0.3, (1, gates * units, units)),
              "B": rng.normal(0, 0.2, (1, 2 * gates * units)),
              "fc_w": rng.normal(0, 0.5, (LSTM_KEYWORDS, units)),
              "fc_b": rng.normal(0, 0.1, LSTM_KEYWORDS)}
    initialisers = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    initialisers.append(numpy_helper.from_array(np.array([1, units], np.int64), "shape"))
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
             helper.make_node(op_type, ["t", "W", "R", "B"], ["y", "y_h"], hidden_size=units,
                              **attributes),
             helper.make_node("Reshape", ["y_h", "shape"], ["h"]),
             helper.make_node("Gemm", ["h", "fc_w", "fc_b"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, f"kws_{op_type.lower()}",
                              [value("x", TensorProto.FLOAT, [1, frames, LSTM_FEATURES])],
                              [value("probabilities", TensorProto.FLOAT, [1, LSTM_KEYWORDS])],
                              initialisers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def frames(count: int, seed: int = 5, length: int = LSTM_FRAMES) -> np.ndarray:
    """`count` float feature windows [count, length, LSTM_FEATURES]."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (count, length, LSTM_FEATURES)).astype(np.float32)


def quantised_kws(op_type: str, directory: Path, **attributes: object) -> QuantizeResult:
    """The keyword spotter through mcuflow's PTQ, calibrated on 24 windows."""
    path = directory / f"kws_{op_type.lower()}.onnx"
    path.write_bytes(recurrent_kws(op_type, **attributes))
    return quantize_model(path, frames(24))


def litert_runs(result: QuantizeResult, windows: np.ndarray) -> tuple[list[np.ndarray],
                                                                      np.ndarray]:
    """The windows as input codes (stacked) and LiteRT's outputs of consecutive invocations."""
    inputs = [np.stack([result.quantize_input(x[None]) for x in windows])]
    litert = litert_interpreter(result.tflite())
    return inputs, np.stack([litert_invoke(litert, [x])[0] for x in inputs[0]])
