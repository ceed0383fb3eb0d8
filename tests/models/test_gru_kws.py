"""A GRU keyword spotter from ONNX, unrolled into existing ops, bit-exact against LiteRT.

FULLY_CONNECTED, ADD, SUB, MUL, LOGISTIC, TANH and SLICE: TFLite has no GRU builtin, and
TensorFlow's converter unrolls Keras GRUs likewise.

The float import equals onnxruntime (linear_before_reset 0 and 1); after mcuflow's PTQ the
reference interpreter and the host C equal LiteRT to the bit. Variants mcuflow does not map are
refused naming the node.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.onnx_reader import import_onnx
from mcuflow.ir.ops import OpKind
from mcuflow.passes.pipeline import run_passes
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from tests.coverage_models import LSTM_UNITS
from tests.onnx_recurrent_models import frames, litert_runs, quantised_kws, recurrent_kws
from tests.support import host_outputs

RUNS = 6
UNROLLED = {OpKind.FULLY_CONNECTED, OpKind.ADD, OpKind.SUB, OpKind.MUL, OpKind.LOGISTIC,
            OpKind.TANH, OpKind.SLICE}


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_float_gru_equals_onnxruntime(linear_before_reset: int) -> None:
    model = recurrent_kws("GRU", linear_before_reset=linear_before_reset)
    imported = import_onnx(model)
    graphs = [imported.graph, run_passes(imported.graph)]
    assert {op.kind for op in graphs[1].operators} == UNROLLED | {OpKind.RESHAPE, OpKind.SOFTMAX}
    session = ort.InferenceSession(model)
    for window in frames(3, seed=2):
        want = session.run(None, {"x": window[None]})[0]
        for graph in graphs:
            np.testing.assert_allclose(run_float(graph, [window[None]]).outputs[0], want,
                                       atol=1e-6)


def test_float_gru_sequence_output_equals_onnxruntime() -> None:
    """Y (every step's state, by CONCATENATION) as well as Y_h, layout 0."""
    proto = onnx.load_from_string(recurrent_kws("GRU", frames=5))
    proto.graph.output.extend([onnx.helper.make_tensor_value_info(
        "y", onnx.TensorProto.FLOAT, [5, 1, 1, LSTM_UNITS])])
    model = proto.SerializeToString()
    window = frames(1, length=5)
    want = ort.InferenceSession(model).run(None, {"x": window})
    got = run_float(import_onnx(model).graph, [window]).outputs
    for expected, actual in zip(want, got, strict=True):
        np.testing.assert_allclose(actual, expected, atol=1e-6)


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_quantised_gru_is_bit_exact_against_litert(tmp_path: Path,
                                                   linear_before_reset: int) -> None:
    result = quantised_kws("GRU", tmp_path, linear_before_reset=linear_before_reset)
    dense = [op for op in result.graph.operators if op.kind is OpKind.FULLY_CONNECTED]
    assert len({op.inputs[1] for op in dense}) == 4  # W, R_zr, R_h, the classifier: one copy
    inputs, want = litert_runs(result, frames(RUNS, seed=8))
    interpreter = Interpreter(result.graph)
    for r in range(RUNS):
        np.testing.assert_array_equal(interpreter.run([inputs[0][r]]).outputs[0], want[r])
    np.testing.assert_array_equal(host_outputs(result.graph, inputs, tmp_path / "c")[0], want)
    assert result.report.output_sqnr_db[result.graph.outputs[0]] > 20.0


def _with_initial_state(model: bytes) -> bytes:
    proto = onnx.load_from_string(model)
    gru = next(node for node in proto.graph.node if node.op_type == "GRU")
    gru.input.extend(["", "h0"])
    proto.graph.initializer.append(numpy_helper.from_array(
        np.zeros((1, 1, LSTM_UNITS), np.float32), "h0"))
    return proto.SerializeToString()


@pytest.mark.parametrize(("model", "message"), [
    (lambda: recurrent_kws("GRU", direction="bidirectional"), "forward"),
    (lambda: recurrent_kws("GRU", activations=["HardSigmoid", "Tanh"]), "activations"),
    (lambda: recurrent_kws("GRU", clip=2.0), "clips"),
    (lambda: _with_initial_state(recurrent_kws("GRU")), "initial_h"),
])
def test_unsupported_gru_variants_are_refused(model: object, message: str) -> None:
    with pytest.raises(UnsupportedModelError, match=f"GRU .*{message}"):
        import_onnx(model())  # type: ignore[operator]
