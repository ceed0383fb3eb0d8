"""Constraint functions: their docstrings are the messages and they return what they found.

Every violation of every op is reported at once, by `check_supported` and by `analyze`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import mcuflow.ref.kernels  # noqa: F401  (registers the constraints beside the kernels)
from mcuflow import api
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.constraints import (
    all_constraints,
    check_supported,
    constraints_for,
    find_violations,
    supported_ops_markdown,
)
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import NoAttrs, OpKind, SoftmaxAttrs
from mcuflow.ir.quantization import QuantParams
from mcuflow.ref.interpreter import Interpreter
from tests.support import SHARED_MODELS, litert_interpreter

FLOAT_REQUIREMENT = "Activations and constant operands must be int8"


def _message(graph: Graph) -> str:
    with pytest.raises(UnsupportedModelError) as caught:
        check_supported(graph)
    return caught.value.message


def test_every_constraint_has_a_message() -> None:
    for item in all_constraints():
        assert item.check.__doc__, item.name
        assert item.message.endswith("."), item.message
        assert "; " not in item.message, "'; ' separates the ops of an error message"
        assert item.message in supported_ops_markdown().replace("\\|", "|"), item.name


def test_every_op_kind_has_its_constraints() -> None:
    for kind in OpKind:
        names = [c.name for c in constraints_for(kind)]
        assert names, kind
        assert names[0] == "int8_activations", kind
        assert f"| {kind.value} |" in supported_ops_markdown()
    registered = {c.name for c in all_constraints()}
    # The rules that used to be decided only by the reference kernels or the C emitter.
    assert {"int32_accumulator", "add_sub_multipliers", "hard_swish_output_scale",
            "hard_swish_input_scale", "softmax_beta_scale", "rank_at_most_5",
            "concat_no_activation"} <= registered


def test_valid_graph_passes() -> None:
    b = GraphBuilder(seed=3)
    x = b.depthwise_conv2d(b.conv2d(b.input((1, 6, 6, 2)), 4))
    check_supported(b.output(b.softmax(b.fully_connected(b.reshape(x, (1, -1)), 3))).build())


def test_all_violations_listed_at_once() -> None:
    b = GraphBuilder(seed=3)
    x = b.max_pool2d(b.conv2d(b.input((1, 6, 6, 2)), 4))
    y = b.softmax(b.reshape(x, (1, -1)))
    graph = b.output(y).build()
    graph.tensors[x].quant = QuantParams.per_tensor(0.5, 3)
    graph.tensors[y].quant = QuantParams.per_tensor(0.1, 0)
    violations = find_violations(graph)
    assert [v.constraint.name for v in violations] == [
        "same_quantisation", "same_quantisation", "unit_output_range"]
    assert violations[2].found == "output scale 0.1, zero point 0 found"
    assert violations[2].describe() == (
        f"op 3 'softmax_7' (SOFTMAX): {violations[2].constraint.message} "
        "(output scale 0.1, zero point 0 found)")
    with pytest.raises(UnsupportedModelError, match="3 unsupported operator"):
        check_supported(graph)


def _overflowing_bias(b: GraphBuilder, x: str, kind: OpKind) -> str:
    """A weighted layer whose bias alone nearly fills int32: the accumulator can overflow."""
    y = {OpKind.CONV_2D: lambda: b.conv2d(x, 4),
         OpKind.DEPTHWISE_CONV_2D: lambda: b.depthwise_conv2d(x),
         OpKind.FULLY_CONNECTED: lambda: b.fully_connected(b.reshape(x, (1, -1)), 4)}[kind]()
    op = b.graph.operators[-1]
    bias = b.graph.tensors[op.inputs[2]]
    bias.data = bias.data.copy()
    bias.data[1] = (1 << 31) - 1
    return y


def test_every_offending_op_and_what_was_found_is_listed() -> None:
    b = GraphBuilder("several", seed=5)
    x = b.input((1, 6, 6, 4), 0.05, 0)
    conv = _overflowing_bias(b, x, OpKind.CONV_2D)                              # op 0
    added = b.add(conv, conv, quant=QuantParams.per_tensor(1e-9, 0))            # op 1
    swish = b.hard_swish(b.input((1, 4), 0.5, 0),                               # op 2
                         quant=QuantParams.per_tensor(0.001, 0))
    joined = b.concatenation([added, added], activation=Activation.RELU)        # op 3
    probs = b.softmax(b.input((1, 10), 0.05, 0), beta=1e-9)                     # op 4
    wide = b.input((1, 1, 2, 2, 2, 2), 0.05, 0)
    summed = b.add(wide, wide)                                                  # op 5
    graph = b.output(joined, swish, probs, summed).build()
    graph.tensors[probs].quant = QuantParams.per_tensor(0.1, 0)

    message = _message(graph)
    assert message.startswith("model 'several' has 6 unsupported operator(s): op 0 'conv_2d_")
    for index, kind in enumerate(["CONV_2D", "ADD", "HARD_SWISH", "CONCATENATION", "SOFTMAX",
                                  "ADD"]):
        assert re.search(rf"op {index} '[a-z_0-9]+' \({kind}\): ", message), (index, message)
    assert re.search(r"\(accumulator bound 2,147,\d{3},\d{3} in output channel 1 found\)",
                     message)
    assert re.search(r"\(ADD\): The output scale .* \(output multiplier 1\d\d\.\d+ found\)",
                     message)
    for found in [
        "(output scale 0.001 for input scale 0.5 found)",
        "(fused RELU found)",
        "(output scale 0.1, zero point 0 found)",
        "(beta * input scale 5e-11 found)",
        "(rank 6 found)",
    ]:
        assert found in message, (found, message)
    # One entry per op, its failures in one place: the softmax's two follow one label.
    assert message.count("(SOFTMAX)") == 1
    assert len(message.split("; ")) == 6


def test_a_float_model_says_its_requirement_once() -> None:
    b = GraphBuilder("floaty", seed=1)
    x = b.input((1, 8), dtype=DType.FLOAT32)
    for kind in (OpKind.RELU, OpKind.RELU6, OpKind.LOGISTIC, OpKind.TANH, OpKind.SOFTMAX):
        attrs = SoftmaxAttrs() if kind is OpKind.SOFTMAX else NoAttrs()
        x = b.op(kind, [x], attrs, None, DType.FLOAT32)
    message = _message(b.output(x).build())
    assert message.count(FLOAT_REQUIREMENT) == 1
    assert ("has 5 unsupported operator(s): 5 operators (ops 0-4: RELU, RELU6, LOGISTIC, TANH, "
            "SOFTMAX): " + FLOAT_REQUIREMENT) in message
    assert message.endswith("(float32 input, float32 output found)")


@pytest.mark.skipif(not (SHARED_MODELS / "kws_ref_model_float32.tflite").is_file(),
                    reason="shared models absent")
def test_a_float_tflite_is_refused_by_analyze_with_one_paragraph() -> None:
    with pytest.raises(UnsupportedModelError) as caught:
        api.analyze_model(SHARED_MODELS / "kws_ref_model_float32.tflite")
    message = caught.value.message
    assert message.count(FLOAT_REQUIREMENT) == 1
    assert "13 operators (ops 0-12: CONV_2D x5, DEPTHWISE_CONV_2D x4, " in message
    # Float weights and biases of float ops are consequences, not news.
    assert "Weights must" not in message and "bias" not in message


def test_two_ops_failing_one_constraint_are_listed_one_by_one() -> None:
    b = GraphBuilder(seed=0)
    x = b.input((1, 4, 4, 2))
    y = b.op(OpKind.RELU, [x], NoAttrs(), None, DType.FLOAT32)
    z = b.op(OpKind.RELU, [y], NoAttrs(), None, DType.FLOAT32)
    message = _message(b.output(z).build())
    assert message.count(FLOAT_REQUIREMENT) == 2
    assert "op 0 'relu_2' (RELU): " in message and "op 1 'relu_3' (RELU): " in message


@pytest.mark.parametrize("kind", [OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D,
                                  OpKind.FULLY_CONNECTED])
def test_an_overflowing_accumulator_is_refused_by_analyze(kind: OpKind, tmp_path: Path) -> None:
    """A rule the C emitter (and the reference kernels) used to apply alone: now analyze's."""
    b = GraphBuilder("overflow", seed=2)
    graph = b.output(_overflowing_bias(b, b.input((1, 4, 4, 3), 0.05, 0), kind)).build()
    path = tmp_path / "overflow.tflite"
    path.write_bytes(write_tflite(graph))
    with pytest.raises(UnsupportedModelError,
                       match=rf"\({kind.value}\): The int32 accumulator must not overflow"):
        api.analyze_model(path)
    out = tmp_path / "project"
    with pytest.raises(UnsupportedModelError, match="in output channel 1 found"):
        api.compile_model(path, out)
    assert not out.exists()


def test_a_rank_6_add_is_refused_by_analyze(tmp_path: Path) -> None:
    b = GraphBuilder("wide", seed=2)
    wide = b.input((1, 2, 1, 2, 1, 2), 0.05, 0)
    graph = b.output(b.add(wide, b.constant_int8((1, 2, 1, 2, 1, 2)))).build()
    path = tmp_path / "wide.tflite"
    path.write_bytes(write_tflite(graph))
    with pytest.raises(UnsupportedModelError, match=r"\(ADD\): .* \(rank 6 found\)"):
        api.analyze_model(path)


def test_the_reference_interpreter_refuses_with_the_constraints() -> None:
    b = GraphBuilder("ref", seed=4)
    x = b.input((1, 4, 4, 3), 0.05, 0)
    conv = _overflowing_bias(b, x, OpKind.CONV_2D)
    y = b.add(conv, conv, quant=QuantParams.per_tensor(1e-9, 0))
    graph = b.output(y).build()
    with pytest.raises(UnsupportedModelError, match="2 unsupported operator") as caught:
        Interpreter(graph)
    assert "int32 accumulator" in caught.value.message
    assert "output multiplier" in caught.value.message


def test_checks_do_not_fail_on_malformed_operands() -> None:
    """Each check reports its own concern and skips what another constraint reports."""
    b = GraphBuilder(seed=6)
    y = b.conv2d(b.input((1, 4, 4, 2)), 3)
    graph = b.output(y).build()
    _, weights, bias = (graph.tensors[name] for name in graph.operators[0].inputs)
    weights.data, weights.dtype = weights.data.astype(np.float32), DType.FLOAT32
    weights.quant = None
    bias.data, bias.dtype = bias.data.astype(np.float32), DType.FLOAT32
    found = {v.constraint.name: v.found for v in find_violations(graph)}
    assert found == {"constant_int8_weights": "float32 weights found",
                     "int32_bias": "float32 bias found"}
    for tensor in graph.tensors.values():
        tensor.quant = None
    found = {v.constraint.name: v.found for v in find_violations(graph)}
    assert found == {"int8_activations": "input without quantisation parameters, output without "
                                         "quantisation parameters found"}


def _fc_with_bias_scale_off(tmp_path: Path, fraction: float) -> Path:
    """A per-tensor FULLY_CONNECTED whose bias scale is `fraction` of the output scale off."""
    b = GraphBuilder("fc_bias_scale", seed=3)
    x = b.input((1, 8), 0.05, 0)
    b.output(b.fully_connected(x, 4))
    graph = b.build()
    bias = graph.tensors[graph.operators[0].inputs[2]]
    out_scale = graph.tensors[graph.operators[0].outputs[0]].quant.scale0
    bias.quant = QuantParams.per_tensor(bias.quant.scale0 + fraction * out_scale, 0)
    model = tmp_path / f"fc_{fraction}.tflite"
    model.write_bytes(write_tflite(graph))
    return model


def test_a_bias_scale_litert_refuses_is_refused(tmp_path: Path) -> None:
    model = _fc_with_bias_scale_off(tmp_path, 0.05)
    with pytest.raises(RuntimeError, match="scale_diff / output_scale <= 0.02"):
        litert_interpreter(model)
    with pytest.raises(UnsupportedModelError, match="bias scale .* found"):
        api.analyze_model(model)
    within = _fc_with_bias_scale_off(tmp_path, 0.01)
    litert_interpreter(within)
    assert api.analyze_model(within).report.layers


def test_a_variable_tensor_outside_a_state_operand_is_refused() -> None:
    """A variable tensor (is_variable) read by an ADD has no value: refused with the rule."""
    b = GraphBuilder("stray_variable", seed=2)
    x = b.input((1, 8), 0.05, 3)
    state = b._variable("state", (1, 8), DType.INT8, QuantParams.per_tensor(0.05, 3))
    graph = b.output(b.add(x, state)).build()
    with pytest.raises(UnsupportedModelError, match="variable input 'state_[0-9]+' found"):
        check_supported(graph)
    svdf = GraphBuilder("svdf_state", seed=2)
    frame = svdf.input((1, 16), 0.1, -128)
    check_supported(svdf.output(svdf.svdf(frame, 8, rank=1, memory=4)).build())
