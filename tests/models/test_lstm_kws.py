"""An LSTM keyword spotter, bit-exact against LiteRT in the reference and in C on the host.

49 frames x 10 features -> LSTM(32) -> last step -> FULLY_CONNECTED -> SOFTMAX, quantised as the
converter writes a fully-integer LSTM, over consecutive inferences that carry the LSTM's state.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mcuflow.codegen.project import generate_project
from mcuflow.frontends.onnx_reader import import_onnx
from mcuflow.frontends.tflite_reader import load_int8_model
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.memory.planner import plan_memory
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.host import build_host, random_inputs, verify_host
from tests.coverage_models import bidirectional_kws_graph, kws_lstm_graph
from tests.onnx_recurrent_models import frames, litert_runs, quantised_kws, recurrent_kws
from tests.support import host_outputs, litert_interpreter, litert_invoke
from tests.unit.test_lstm import CASES, lstm_graph

INVOKES = 8


def kws_lstm_model(directory: Path) -> tuple[Path, Graph]:
    """The keyword spotter written as a .tflite file and read back by mcuflow."""
    path = directory / "kws_lstm.tflite"
    path.write_bytes(write_tflite(kws_lstm_graph()))
    return path, load_int8_model(path)


def test_reference_equals_litert_over_consecutive_inferences(tmp_path: Path) -> None:
    path, graph = kws_lstm_model(tmp_path)
    litert, ours = litert_interpreter(path), Interpreter(graph)
    inputs = random_inputs(graph, INVOKES, seed=7)[0]
    for run in range(INVOKES):
        want = litert_invoke(litert, [inputs[run]])[0]
        np.testing.assert_array_equal(ours.run([inputs[run]]).outputs[0], want)
    again = litert_invoke(litert, [inputs[0]])[0]
    np.testing.assert_array_equal(ours.run([inputs[0]]).outputs[0], again)


def bidirectional_kws_model(directory: Path) -> tuple[Path, Graph]:
    """The bidirectional keyword spotter written as a .tflite file and read back by mcuflow."""
    path = directory / "bidirectional_kws.tflite"
    path.write_bytes(write_tflite(bidirectional_kws_graph()))
    return path, load_int8_model(path)


def test_bidirectional_reference_equals_litert_over_consecutive_inferences(
        tmp_path: Path) -> None:
    """REVERSE_V2 around the backward LSTM, whose states and hidden values are requantised.

    As TensorFlow's converter writes Keras' Bidirectional: output state, hidden intermediate
    and output each quantised their own way.
    """
    path, graph = bidirectional_kws_model(tmp_path)
    litert, ours = litert_interpreter(path), Interpreter(graph)
    inputs = random_inputs(graph, INVOKES, seed=11)[0]
    for run in range(INVOKES):
        want = litert_invoke(litert, [inputs[run]])[0]
        np.testing.assert_array_equal(ours.run([inputs[run]]).outputs[0], want)


def test_bidirectional_c_is_bit_exact_on_the_host(tmp_path: Path) -> None:
    _, graph = bidirectional_kws_model(tmp_path)
    result = verify_host(graph, plan_memory(graph, 0.5), runs=INVOKES, seed=3)
    assert result.bit_exact and result.runs == INVOKES


def test_generated_c_is_bit_exact_on_the_host(tmp_path: Path) -> None:
    _, graph = kws_lstm_model(tmp_path)
    result = verify_host(graph, plan_memory(graph, 0.5), runs=INVOKES, seed=3)
    assert result.bit_exact and result.runs == INVOKES



SEQUENCES = 4
RESTART = 1
"""The driver runs sequences 0..3, calls mcuflow_model_reset, then runs 1..3 again."""


def reset_driver(inputs: np.ndarray, output_size: int) -> str:
    """A C main that prints every output of the two passes, resetting the model in between."""
    table = ", ".join("{" + ", ".join(str(int(v)) for v in x.ravel()) + "}" for x in inputs)
    return f"""#include <stdio.h>
#include "mcuflow_model.h"
static const int8_t inputs[{SEQUENCES}][{inputs[0].size}] = {{{table}}};
int main(void)
{{
    static int8_t out[{output_size}];
    for (int pass = 0; pass < 2; ++pass) {{
        for (int s = pass * {RESTART}; s < {SEQUENCES}; ++s) {{
            if (mcuflow_model_invoke(inputs[s], out) != MCUFLOW_OK) {{
                return 1;
            }}
            for (int i = 0; i < {output_size}; ++i) {{
                printf("%d ", out[i]);
            }}
        }}
        mcuflow_model_reset();
    }}
    return 0;
}}
"""


def test_reset_starts_a_new_sequence(tmp_path: Path) -> None:
    """mcuflow_model_reset restores both states as LiteRT's reset_all_variables does.

    The LSTM's whole output sequence is the model's output: its first steps depend on the
    states a sequence starts from (after the reset: the output zero point and 0; the keyword
    spotter's last step has forgotten them).
    """
    path = tmp_path / "lstm.tflite"
    path.write_bytes(write_tflite(lstm_graph(*CASES[1], seed=4)))
    graph = load_int8_model(path)
    output_state = graph.tensor(graph.variables()[0])
    assert output_state.reset_value == output_state.quant.zero_point0 != 0
    project = generate_project(graph, plan_memory(graph, 0.5), tmp_path / "project")
    inputs = random_inputs(graph, SEQUENCES, seed=11)[0]
    size = graph.tensor(graph.outputs[0]).size
    (project.path / "main.c").write_text(reset_driver(inputs, size))
    binary = build_host(project.path, sanitize=True, opt_level="-O1")
    printed = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    got = np.array([int(v) for v in printed.split()], np.int8).reshape(-1, size)
    litert = litert_interpreter(path)
    first = [litert_invoke(litert, [x])[0].ravel() for x in inputs]
    litert.reset_all_variables()
    second = [litert_invoke(litert, [x])[0].ravel() for x in inputs[RESTART:]]
    np.testing.assert_array_equal(got, np.stack([*first, *second]))
    assert not np.array_equal(first[RESTART], second[0])  # the state carried over matters


def test_onnx_twin_equals_onnxruntime_and_compiles_bit_exact(tmp_path: Path) -> None:
    """The float ONNX twin equals onnxruntime; quantised, its C equals LiteRT.

    Transpose, LSTM, Gemm, Softmax; after mcuflow's PTQ, over consecutive inferences that carry
    the LSTM's state.
    """
    model = recurrent_kws("LSTM")
    imported, windows = import_onnx(model), frames(INVOKES, seed=8)
    session = ort.InferenceSession(model)
    for window in windows[:3]:
        want = session.run(None, {"x": window[None]})[0]
        got = run_float(imported.graph, [window[None]]).outputs[0]
        np.testing.assert_allclose(got, want, atol=1e-5)
    result = quantised_kws("LSTM", tmp_path)
    assert OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM in {op.kind for op in result.graph.operators}
    inputs, want = litert_runs(result, windows)
    np.testing.assert_array_equal(host_outputs(result.graph, inputs, tmp_path / "c")[0], want)
