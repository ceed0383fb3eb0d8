"""UNIDIRECTIONAL_SEQUENCE_LSTM (integer 8x8_16): the reference equals LiteRT to the bit."""

from __future__ import annotations

import numpy as np
import pytest

import mcuflow.ref.kernels  # noqa: F401  (registers every kernel)
from mcuflow.analysis.metrics import analyze
from mcuflow.errors import UnsupportedModelError
from mcuflow.frontends.tflite_reader import _convert, _decode, read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.board import get_board
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import LSTM_CELL_STATE, LSTM_OUTPUT_STATE, LstmAttrs, OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.memory.execute import run_in_arena
from mcuflow.memory.planner import plan_memory
from mcuflow.ref.interpreter import Interpreter
from tests.support import litert_interpreter, litert_invoke, random_input

# (batch, time, features, units, time_major, cell exponent, cell_clip, proj_clip, gain)
CASES = [
    (1, 5, 3, 4, False, -11, 0.0, 0.0, 2.0),
    (2, 7, 10, 16, False, -11, 0.0, 0.0, 3.0),
    (3, 4, 6, 5, True, -12, 0.0, 0.0, 2.0),
    (1, 12, 1, 1, False, -9, 0.0, 0.0, 1.0),
    (2, 6, 13, 33, False, -15, 0.0, 0.0, 4.0),
    (1, 9, 8, 12, False, -10, 3.0, 0.0, 8.0),
    (2, 3, 4, 7, True, -11, 0.5, 0.0, 6.0),
    (1, 20, 5, 24, False, -13, 0.0, 0.0, 12.0),
    (1, 8, 6, 10, False, -9, 0.0, 0.0, 60.0),  # saturated gates and cell
    (2, 8, 3, 9, True, -15, 0.2, 0.0, 60.0),
]


def lstm_graph(batch: int, time: int, features: int, units: int, time_major: bool,
               exponent: int, cell_clip: float, proj_clip: float, gain: float,
               seed: int = 0) -> Graph:
    """One LSTM layer built as the converter quantises it."""
    b = GraphBuilder("lstm", seed=seed)
    shape = (time, batch, features) if time_major else (batch, time, features)
    x = b.input(shape, 0.04, int(b.rng.integers(-20, 21)))
    attrs = LstmAttrs(time_major, cell_clip, proj_clip)
    return b.output(b.lstm(x, units, attrs, gain=gain, cell_exponent=exponent)).build()


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_reference_equals_litert_across_invokes(case: tuple) -> None:
    """Three invokes in a row: the states carried over must agree too."""
    graph = read_tflite(write_tflite(lstm_graph(*case, seed=len(case) + case[3])))
    model = write_tflite(graph)
    litert, ours = litert_interpreter(model), Interpreter(graph)
    x = graph.tensor(graph.inputs[0])
    for seed in range(3):
        values = [random_input(x.shape, np.dtype(np.int8), np.random.default_rng(seed))]
        want = litert_invoke(litert, values)[0]
        got = ours.run(values).outputs[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_round_trip_keeps_states_and_intermediates() -> None:
    graph = lstm_graph(*CASES[6])
    back = read_tflite(write_tflite(graph))
    op, source = back.operators[0], graph.operators[0]
    assert op.kind is OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM
    assert op.attrs.hidden == source.attrs.hidden
    assert (op.attrs.time_major, op.attrs.cell_clip) == (True, 0.5)
    assert len(op.attrs.gates) == 4 and len(op.inputs) == 15
    assert back.variables() == list(op.inputs[LSTM_OUTPUT_STATE:])
    for position, dtype in ((LSTM_OUTPUT_STATE, DType.INT8), (LSTM_CELL_STATE, DType.INT16)):
        state, before = back.tensor(op.inputs[position]), graph.tensor(source.inputs[position])
        assert state.variable and state.data is None and state.dtype is dtype
        assert (state.shape, state.quant) == ((2, 7), before.quant) and before.shape == (2, 7)


def test_output_state_starts_at_the_output_zero_point() -> None:
    """LiteRT's ResetVariableTensor: an int8 variable starts at its zero point, int16 at 0."""
    graph = lstm_graph(*CASES[0])
    op = graph.operators[0]
    ours = Interpreter(graph)
    zero_point = graph.tensor(op.outputs[0]).quant.zero_point0
    assert zero_point != 0
    assert (ours.state[op.inputs[LSTM_OUTPUT_STATE]] == zero_point).all()
    assert not ours.state[op.inputs[LSTM_CELL_STATE]].any()


def test_reset_matches_litert_reset_all_variables() -> None:
    graph = lstm_graph(*CASES[1], seed=4)
    litert, ours = litert_interpreter(write_tflite(graph)), Interpreter(graph)
    x = graph.tensor(graph.inputs[0])
    inputs = [random_input(x.shape, np.dtype(np.int8), np.random.default_rng(seed))
              for seed in range(5)]
    for value in inputs[:3]:
        litert_invoke(litert, [value])
        ours.run([value])
    litert.reset_all_variables()
    ours.reset()
    for value in inputs[3:]:
        np.testing.assert_array_equal(ours.run([value]).outputs[0],
                                      litert_invoke(litert, [value])[0])


def test_states_are_kept_outside_the_arena() -> None:
    graph = lstm_graph(*CASES[2])
    plan = plan_memory(graph, 0.5)
    assert len(graph.variables()) == 2 and not set(graph.variables()) & set(plan.buffers)
    litert, state = litert_interpreter(write_tflite(graph)), Interpreter(graph).state
    x = graph.tensor(graph.inputs[0])
    for seed in range(3):
        value = random_input(x.shape, np.dtype(np.int8), np.random.default_rng(seed))
        got = run_in_arena(plan, [value], state=state).outputs[0]
        np.testing.assert_array_equal(got, litert_invoke(litert, [value])[0])


def test_cell_state_scale_must_be_a_power_of_two() -> None:
    graph = lstm_graph(1, 3, 2, 3, False, -11, 0.0, 0.0, 2.0)
    graph.tensor(graph.operators[0].inputs[LSTM_CELL_STATE]).quant = QuantParams.per_tensor(
        0.0003, 0)
    with pytest.raises(UnsupportedModelError, match="power-of-two scale"):
        Interpreter(graph)


def test_states_must_be_variable_as_litert_takes_them() -> None:
    """A variable output state quantised unlike the output is fine (LiteRT reads its own)."""
    graph = lstm_graph(1, 3, 2, 3, False, -11, 0.0, 0.0, 2.0)
    output_state = graph.tensor(graph.operators[0].inputs[LSTM_OUTPUT_STATE])
    output_state.variable = False
    output_state.quant = QuantParams.per_tensor(0.01, 3)
    with pytest.raises(UnsupportedModelError, match="a non-variable int8 output state"):
        check_supported(graph)
    output_state.variable = True
    check_supported(graph)


def test_proj_clip_is_refused() -> None:
    graph = lstm_graph(1, 3, 2, 3, False, -11, 0.0, 0.3, 2.0)
    with pytest.raises(UnsupportedModelError, match="proj_clip must be 0"):
        Interpreter(graph)


@pytest.mark.parametrize(("position", "variant"), [
    (1, "CIFG"), (9, "peephole"), (16, "projection"), (20, "layer norm")])
def test_lstm_variants_are_refused_with_the_variant_named(position: int, variant: str) -> None:
    """Present (or, for the input gate, absent) optional operands name what is unsupported."""
    subgraph = _decode(write_tflite(lstm_graph(*CASES[0])), "the model")
    op = subgraph.ops[0]
    op.inputs[position] = -1 if position == 1 else op.inputs[2]
    with pytest.raises(UnsupportedModelError, match=f"uses {variant}"):
        _convert(op, subgraph)


def test_integer_lstm_without_intermediates_is_refused() -> None:
    subgraph = _decode(write_tflite(lstm_graph(*CASES[0])), "the model")
    subgraph.ops[0].intermediates = []
    with pytest.raises(UnsupportedModelError, match="8x8_8"):
        _convert(subgraph.ops[0], subgraph)


def test_analysis_counts_the_states_kept_outside_the_arena() -> None:
    """LSTM states (int8 output, int16 cell: 3 bytes a batch row and unit) count against SRAM."""
    graph = lstm_graph(2, 3, 4, 7, False, -11, 0.0, 0.0, 2.0)
    board = get_board("nucleo-f429zi")
    report = analyze(graph, board, peak_ram_bytes=1000)
    assert report.sram_margin_bytes == board.sram_bytes - 1000 - 2 * 7 * 3
