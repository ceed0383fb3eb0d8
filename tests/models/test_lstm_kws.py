"""An LSTM keyword spotter, bit-exact against LiteRT in the reference and in C on the host.

49 frames x 10 features -> LSTM(32) -> last step -> FULLY_CONNECTED -> SOFTMAX, quantised as the
converter writes a fully-integer LSTM, over consecutive inferences that carry the LSTM's state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuflow.frontends.tflite_reader import load_int8_model
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.graph import Graph
from mcuflow.memory.planner import plan_memory
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.host import random_inputs, verify_host
from tests.coverage_models import kws_lstm_graph
from tests.support import litert_interpreter, litert_invoke

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


def test_generated_c_is_bit_exact_on_the_host(tmp_path: Path) -> None:
    _, graph = kws_lstm_model(tmp_path)
    result = verify_host(graph, plan_memory(graph, 0.5), runs=INVOKES, seed=3)
    assert result.bit_exact and result.runs == INVOKES
