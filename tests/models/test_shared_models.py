"""Every shared int8 model: our interpreter equals LiteRT's reference kernels to the bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter as LiteRT
from ai_edge_litert.interpreter import OpResolverType

from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.ir.graph import Graph
from mcuflow.ref.interpreter import Interpreter
from tests.support import INT8_MODELS, SHARED_MODELS, litert_invoke, random_input

RUNS = 20


def _oracle(path: Path) -> LiteRT:
    """LiteRT's reference kernels, keeping every intermediate tensor readable."""
    interpreter = LiteRT(model_path=str(path), num_threads=1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                         experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    return interpreter


def _inputs(graph: Graph, rng: np.random.Generator) -> list[np.ndarray]:
    return [random_input(graph.tensor(n).shape, graph.tensor(n).dtype.numpy, rng)
            for n in graph.inputs]


def _assert_equal(label: str, got: np.ndarray, want: np.ndarray) -> None:
    assert (got.dtype, got.shape) == (want.dtype, want.shape), label
    wrong = np.flatnonzero(got != want)
    assert wrong.size == 0, (f"{label}: {wrong.size}/{got.size} values differ, e.g. ours "
                             f"{got.ravel()[wrong[:5]]} LiteRT {want.ravel()[wrong[:5]]}")


@pytest.mark.parametrize("name", INT8_MODELS)
def test_model_matches_litert_to_the_bit(name: str) -> None:
    """Outputs and every intermediate activation, on RUNS random inputs."""
    path = SHARED_MODELS / name
    graph = read_tflite(path)
    ours, oracle = Interpreter(graph), _oracle(path)
    index_of = {d["name"]: d["index"] for d in oracle.get_tensor_details()}
    produced = [t for op in graph.operators for t in op.outputs]
    assert set(produced) <= set(index_of), "tensor names differ from the model file"
    rng = np.random.default_rng(sum(name.encode()))
    varied: dict[str, set[bytes]] = {t: set() for t in produced}
    for run in range(RUNS):
        inputs = _inputs(graph, rng)
        expected = litert_invoke(oracle, inputs)
        result = ours.run(inputs, keep_intermediates=True)
        for want, got in zip(expected, result.outputs, strict=True):
            _assert_equal(f"run {run} output", got, want)
        for tensor in produced:
            want = oracle.get_tensor(index_of[tensor])
            _assert_equal(f"run {run} tensor {tensor!r}", result.tensors[tensor], want)
            varied[tensor].add(want.tobytes())
    constant = [t for t, values in varied.items() if len(values) == 1]
    assert len(constant) <= 1, f"degenerate comparison: {constant} never change"
