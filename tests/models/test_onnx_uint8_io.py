"""uint8 model I/O from ONNX, bit-exact against LiteRT (reference interpreter and host C).

A float ONNX CNN through mcuflow's PTQ with `--io-dtype uint8`, and ONNX Runtime's QDQ model
(uint8 activations) taking raw uint8 pixels into DequantizeLinear and giving QuantizeLinear's
uint8 codes: both read and write uint8 through QUANTIZE ops at the edges, as TensorFlow's
converter writes inference_input_type / inference_output_type uint8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnxruntime.quantization import QuantType

from mcuflow.frontends.onnx_reader import import_onnx
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import OpKind
from mcuflow.ptq import QuantizeResult
from mcuflow.ref.interpreter import Interpreter
from tests.onnx_quant_models import (
    imported_qdq,
    litert_outputs,
    model_inputs,
    op_differences,
    quantised,
)
from tests.support import host_outputs, run_cli

RUNS = 12


def assert_uint8_edges(graph: Graph) -> None:
    """uint8 input and output, each converted by a QUANTIZE from or to int8 at the edge."""
    (name,) = graph.inputs
    assert graph.tensor(name).dtype is DType.UINT8
    assert graph.tensor(graph.outputs[0]).dtype is DType.UINT8
    first, last = graph.operators[0], graph.operators[-1]
    assert first.kind is last.kind is OpKind.QUANTIZE and first.inputs == (name,)
    assert graph.tensor(first.outputs[0]).dtype is graph.tensor(last.inputs[0]).dtype is \
        DType.INT8
    assert {graph.tensor(n).dtype for op in graph.operators[1:-1] for n in op.outputs} == {
        DType.INT8}


def assert_bit_exact(result: QuantizeResult, directory: Path) -> list[np.ndarray]:
    """Interpreter, LiteRT on the written .tflite and the host C agree; LiteRT's outputs."""
    inputs = model_inputs(result, RUNS)
    assert inputs[0].dtype == np.uint8
    want = litert_outputs(result, inputs)
    interpreter = Interpreter(read_tflite(result.tflite()))
    for r in range(RUNS):
        np.testing.assert_array_equal(interpreter.run([inputs[0][r]]).outputs[0], want[0][r])
    got = host_outputs(result.graph, inputs, directory / "project")
    assert got[0].dtype == want[0].dtype == np.uint8
    np.testing.assert_array_equal(got[0], want[0])
    assert len({row.tobytes() for row in want[0]}) > RUNS // 2  # not a constant model
    return want


def test_ptq_with_uint8_io_is_bit_exact_against_litert(tmp_path: Path) -> None:
    result = quantised(tmp_path, io_dtype="uint8")
    assert_uint8_edges(result.graph)
    image = result.graph.tensor(result.graph.inputs[0]).quant
    assert image.zero_point0 - result.graph.tensor(
        result.graph.operators[0].outputs[0]).quant.zero_point0 == 128
    assert_bit_exact(result, tmp_path)


def test_quantize_cli_writes_uint8_io(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quantised(tmp_path)  # writes cnn.onnx and calibration.npy
    out = tmp_path / "uint8.tflite"
    code, err = run_cli(capsys, ["quantize", str(tmp_path / "cnn.onnx"), "-o", str(out),
                                 "--calibration", str(tmp_path / "calibration.npy"),
                                 "--io-dtype", "uint8"])
    assert code == 0, err
    assert_uint8_edges(read_tflite(out))


def test_onnxruntime_qdq_with_raw_uint8_io_is_bit_exact(tmp_path: Path) -> None:
    model, result = imported_qdq(tmp_path, QuantType.QUInt8)
    imported = import_onnx(model)
    assert imported.types.uint8_io == {result.graph.inputs[0], result.graph.outputs[0]}
    assert_uint8_edges(result.graph)
    proto = onnx.load_from_string(model)
    dequantize = next(n for n in proto.graph.node if n.input[0] == "x")
    scale = onnx.numpy_helper.to_array(next(t for t in proto.graph.initializer
                                            if t.name == dequantize.input[1]))
    assert result.graph.tensor("x").quant.scale0 == float(scale)
    assert_bit_exact(result, tmp_path)
    worst = op_differences(model, result)
    assert {OpKind.CONV_2D, OpKind.FULLY_CONNECTED, OpKind.SOFTMAX} <= set(worst)
    assert max(worst.values()) <= 1, worst


def test_uint8_graph_input_must_feed_dequantize_only(tmp_path: Path) -> None:
    model, _ = imported_qdq(tmp_path, QuantType.QUInt8)
    proto = onnx.load_from_string(model)
    proto.graph.node.insert(0, onnx.helper.make_node("Identity", ["x"], ["x_copy"]))
    with pytest.raises(Exception, match="element type UINT8"):
        import_onnx(proto.SerializeToString())
