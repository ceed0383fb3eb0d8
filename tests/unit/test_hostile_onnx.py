"""Hostile ONNX models: external data is never read, constant folding never explodes.

Each CLI case runs `mcuflow analyze MODEL --calibration CAL.npy` in a child process
(tests/child.py) and checks the exact one-line error, the exit code and the child's peak memory
and time. Variants that need no resource measurement run import_onnx in this process.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mcuflow.errors import ModelFormatError, UnsupportedModelError
from mcuflow.frontends.onnx_reader import (
    MAX_FOLDED_BYTES,
    MAX_FOLDED_TOTAL_BYTES,
    MAX_FOLDED_WORK,
    import_onnx,
)
from tests.child import ChildRun, run_mcuflow
from tests.fuzz import onnx_harness, onnx_mutators
from tests.fuzz.harness import Status
from tests.fuzz.onnx_seeds import onnx_seeds

WIDTH = 8
BIG = 25_000
FOLD_HINT = (" (hint: a model for a microcontroller computes no constant this large; export it "
             "with constant folding done (torch.onnx.export(..., do_constant_folding=True)))")
EXTERNAL_HINT = (" (hint: save the model with all tensors inside (onnx.save(..., "
                 "save_as_external_data=False)))")
LABEL = "the ONNX model"


class Net:
    """A float model under construction: input x [1, WIDTH], y = x @ W plus what is added."""

    def __init__(self, opset: int = 17) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.weights = self.const(np.linspace(-1, 1, WIDTH * 4, dtype=np.float32).reshape(
            WIDTH, 4), "W")
        self.y = self.node("MatMul", "x", self.weights, name="/matmul")

    def const(self, data: object, name: str | None = None) -> str:
        name = name or f"k{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(np.asarray(data), name))
        return name

    def node(self, op_type: str, *inputs: str, name: str | None = None, **attrs: object) -> str:
        name = name or f"/{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [f"{name}/out"], name=name,
                                           **attrs))
        return f"{name}/out"

    def feed(self, value: str) -> None:
        """Make `value` live: its sum is added to the output."""
        total = self.node("ReduceSum", value, keepdims=0, name=f"{value}/sum")
        self.y = self.node("Add", self.y, total, name=f"{value}/add")

    def proto(self) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "hostile", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                  [1, WIDTH])],
            [helper.make_tensor_value_info(self.y, TensorProto.FLOAT, None)], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        return model

    def model(self) -> bytes:
        return self.proto().SerializeToString()


def analyze(tmp_path: Path, data: bytes) -> tuple[Path, ChildRun]:
    """`mcuflow analyze` of the model in a child process, calibrated on 3 samples."""
    model = tmp_path / "model.onnx"
    model.write_bytes(data)
    calibration = tmp_path / "cal.npy"
    np.save(calibration, np.random.default_rng(1).standard_normal((3, WIDTH), np.float32))
    return model, run_mcuflow(["analyze", model, "--calibration", calibration])


def import_error(data: bytes) -> str:
    """The message import_onnx raises for the model's bytes."""
    with pytest.raises((ModelFormatError, UnsupportedModelError)) as caught:
        import_onnx(data)
    return str(caught.value)


def too_large(op: str, name: str, shape: tuple[int, ...], nbytes: int) -> str:
    return (f"folding {op} '{name}' would make a constant of shape {shape} ({nbytes:,} bytes), "
            f"over mcuflow's limit of {MAX_FOLDED_BYTES:,} bytes" + FOLD_HINT)


def ints(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


# --------------------------------------------------------------------------- folding bombs


def _constant_of_shape(net: Net) -> str:
    return net.node("ConstantOfShape", net.const(ints(BIG, BIG)), name="/c")


def _tile(net: Net) -> str:
    return net.node("Tile", net.const(np.ones((1, 1), np.float32)), net.const(ints(BIG, BIG)),
                    name="/tile")


def _range(net: Net) -> str:
    return net.node("Range", net.const(np.float32(0)), net.const(np.float32(4e8)),
                    net.const(np.float32(1)), name="/range")


def _expand(net: Net) -> str:
    return net.node("Expand", net.const(np.ones(1, np.float32)), net.const(ints(BIG, BIG)),
                    name="/expand")


def _column_and_row(net: Net) -> tuple[str, str]:
    """[BIG, 1] and [1, BIG] float vectors made by a Range: a model of a few hundred bytes."""
    line = net.node("Range", net.const(np.float32(0)), net.const(np.float32(BIG)),
                    net.const(np.float32(1)), name="/line")
    return (net.node("Unsqueeze", line, net.const(ints(1)), name="/column"),
            net.node("Unsqueeze", line, net.const(ints(0)), name="/row"))


def _outer_sum(net: Net) -> str:
    return net.node("Add", *_column_and_row(net), name="/outer_sum")


def _outer_product(net: Net) -> str:
    return net.node("MatMul", *_column_and_row(net), name="/outer_product")


def _concat_doubling(net: Net) -> str:
    """1 MiB doubled by Concat: 2, 4 ... 64 MiB are folded (127 MiB in all), 128 MiB is not."""
    value = net.node("ConstantOfShape", net.const(ints(1 << 18)), name="/start")
    for step in range(1, 8):
        value = net.node("Concat", value, value, axis=0, name=f"/cat{step}")
    return value


BOMBS: dict[str, tuple[Callable[[Net], str], str]] = {
    "constant-of-shape": (_constant_of_shape, too_large(
        "ConstantOfShape", "/c", (BIG, BIG), 4 * BIG * BIG)),
    "tile": (_tile, too_large("Tile", "/tile", (BIG, BIG), 4 * BIG * BIG)),
    "range": (_range, too_large("Range", "/range", (400_000_000,), 1_600_000_000)),
    "expand": (_expand, too_large("Expand", "/expand", (BIG, BIG), 4 * BIG * BIG)),
    "broadcast-add": (_outer_sum, too_large("Add", "/outer_sum", (BIG, BIG), 4 * BIG * BIG)),
    "matmul-outer-product": (_outer_product, too_large(
        "MatMul", "/outer_product", (BIG, BIG), 4 * BIG * BIG)),
    "concat-doubling": (_concat_doubling, too_large("Concat", "/cat7", (1 << 25,), 1 << 27)),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_folding_bomb_is_refused_before_it_is_computed(case: str, tmp_path: Path) -> None:
    build, message = BOMBS[case]
    net = Net()
    net.feed(build(net))
    data = net.model()
    assert len(data) < 2048
    model, done = analyze(tmp_path, data)
    done.assert_one_line(f"'{model}': {message}")
    done.assert_bounded()


def test_folded_constants_share_one_budget(tmp_path: Path) -> None:
    """Each Concat makes 64 MiB, under the per-value limit; the fourth passes the total."""
    net = Net()
    half = net.node("ConstantOfShape", net.const(ints(1 << 23)), name="/half")
    for index in range(1, 5):
        net.feed(net.node("Concat", half, half, axis=0, name=f"/copy{index}"))
    model, done = analyze(tmp_path, net.model())
    total = (32 << 20) + 4 * (64 << 20) + 3 * 4  # and the sums of the first three copies
    done.assert_one_line(
        f"'{model}': folding Concat '/copy4' would bring the constants folded from the model to "
        f"{total:,} bytes, over mcuflow's limit of {MAX_FOLDED_TOTAL_BYTES:,} bytes" + FOLD_HINT)
    done.assert_bounded()


def test_a_bomb_nothing_reads_is_never_evaluated(tmp_path: Path) -> None:
    net = Net()
    net.node("ReduceSum", _constant_of_shape(net), keepdims=0, name="/dead_sum")
    net.node("Relu", net.y, name="/dead_relu")
    model, done = analyze(tmp_path, net.model())
    assert done.code == 0, done.stderr
    done.assert_bounded()


def test_a_dead_op_on_activations_is_still_judged() -> None:
    """Only constant subgraphs nothing reads are skipped; an op on activations is converted."""
    net = Net()
    net.node("Erf", net.y, name="/dead_unsupported")
    assert import_error(net.model()) == (
        f"{LABEL} uses 1 unsupported operator(s): Erf (x1) (hint: run `mcuflow ops` for what "
        "mcuflow supports; re-export without those ops)")


def _pad(net: Net) -> str:
    return net.node("Pad", net.const(np.ones((2, 2), np.float32)), net.const(ints(0, 0, BIG, BIG)),
                    name="/pad")


def _resize(net: Net) -> str:
    return net.node("Resize", net.const(np.ones((1, 1, 2, 2), np.float32)), "", "",
                    net.const(ints(1, 1, BIG, BIG)), name="/resize")


def _one_hot(net: Net) -> str:
    indices = net.node("Range", net.const(np.int64(0)), net.const(np.int64(BIG)),
                       net.const(np.int64(1)), name="/indices")
    return net.node("OneHot", indices, net.const(ints(BIG)),
                    net.const(np.array([0, 1], np.float32)), name="/one_hot")


def _sparse_constant(net: Net) -> str:
    values = numpy_helper.from_array(np.ones(1, np.float32), "v")
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(ints(0), "i"), [BIG, BIG])
    return net.node("Constant", name="/sparse", sparse_value=sparse)


def _empty_tile(net: Net) -> str:
    """An empty result np.tile would build axis by axis: 2**30 values first."""
    return net.node("Tile", net.const(np.ones((1, 1), np.float32)), net.const(ints(1 << 30, 0)),
                    name="/empty_tile")


def _empty_one_hot(net: Net) -> str:
    """No indices, but onnx.reference makes np.arange(depth) first."""
    return net.node("OneHot", net.const(np.zeros(0, np.int64)), net.const(np.int64(1 << 31)),
                    net.const(np.array([0, 1], np.float32)), name="/empty_one_hot")


IN_PROCESS_BOMBS: dict[str, tuple[Callable[[Net], str], str]] = {
    "empty-tile": (_empty_tile, too_large("Tile", "/empty_tile", (1 << 30, 0), 4 << 30)),
    "empty-one-hot": (_empty_one_hot, too_large(
        "OneHot", "/empty_one_hot", (0, 1 << 31), 8 << 30)),
    "pad": (_pad, too_large("Pad", "/pad", (BIG + 2, BIG + 2), 4 * (BIG + 2) ** 2)),
    "resize": (_resize, too_large("Resize", "/resize", (1, 1, BIG, BIG), 4 * BIG * BIG)),
    "one-hot": (_one_hot, too_large("OneHot", "/one_hot", (BIG, BIG), 4 * BIG * BIG)),
    "sparse-constant": (_sparse_constant, too_large(
        "Constant", "/sparse", (BIG, BIG), 4 * BIG * BIG)),
}


@pytest.mark.parametrize("case", sorted(IN_PROCESS_BOMBS))
def test_more_bombs_in_process(case: str) -> None:
    build, message = IN_PROCESS_BOMBS[case]
    net = Net()
    net.feed(build(net))
    assert import_error(net.model()) == f"{LABEL}: {message}"


def test_a_result_of_unknown_size_is_not_folded() -> None:
    """NonZero's size depends on the values: shape inference cannot bound it."""
    net = Net()
    net.feed(net.node("NonZero", net.const(np.ones(8, np.float32)), name="/nonzero"))
    assert import_error(net.model()) == (
        f"{LABEL}: folding NonZero '/nonzero' would make a constant whose size is not known "
        "before it is computed" + FOLD_HINT)


def test_strings_are_not_folded() -> None:
    """A string's memory is not its array's nbytes: Cast to STRING is refused before it runs."""
    net = Net()
    text = net.node("Cast", net.const(np.ones(4, np.float32)), to=TensorProto.STRING,
                    name="/text")
    net.feed(net.node("Cast", text, to=TensorProto.FLOAT))
    assert import_error(net.model()) == (
        f"{LABEL}: Cast '/text' works on strings; mcuflow folds only numbers (hint: mcuflow "
        "compiles numeric models; export the model without its string processing)")


def test_a_pool_padded_into_millions_of_outputs_is_refused() -> None:
    """One input value, 16M outputs: onnx.reference's MaxPool loops over them in Python."""
    net = Net()
    pixel = net.const(np.ones((1, 1, 1, 1), np.float32))
    net.feed(net.node("MaxPool", pixel, kernel_shape=[1, 1], pads=[2000] * 4, name="/pool"))
    assert import_error(net.model()) == (
        f"{LABEL}: folding MaxPool '/pool' would take about {4001 ** 4:,} steps, over "
        f"mcuflow's limit of {MAX_FOLDED_WORK:,}" + FOLD_HINT)


def test_a_reflecting_pad_that_loops_per_value_is_refused() -> None:
    """64 MiB from 2 values: onnx.reference's reflect padding adds one value per Python loop."""
    net = Net()
    pads = ints(0, (1 << 24) - 2)
    net.feed(net.node("Pad", net.const(np.ones(2, np.float32)), net.const(pads), mode="reflect",
                      name="/reflect"))
    work = (1 << 24) * (1 << 23)
    assert import_error(net.model()) == (
        f"{LABEL}: folding Pad '/reflect' would take about {work:,} steps, over mcuflow's "
        f"limit of {MAX_FOLDED_WORK:,}" + FOLD_HINT)


def test_a_huge_folded_shape_is_not_listed() -> None:
    """A 32 MiB folded shape for a Reshape is refused before it becomes a Python list."""
    net = Net()
    zeros = net.node("ConstantOfShape", net.const(ints(1 << 23)), name="/zeros")
    net.y = net.node("Reshape", net.y, zeros, name="/reshape")
    assert import_error(net.model()) == (
        f"{LABEL}: Reshape '/reshape' takes {1 << 23:,} values as its shape; at most 1024 make "
        "sense (hint: re-export the model with torch.onnx.export, or check that the file was "
        "copied whole)")


def test_a_slow_fold_is_refused_by_its_work() -> None:
    """A MaxPool over a 16 MiB constant would run Python loops for hours in onnx.reference."""
    net = Net()
    image = net.node("ConstantOfShape", net.const(ints(1, 1, 2048, 2048)), name="/image")
    net.feed(net.node("MaxPool", image, kernel_shape=[3, 3], name="/pool"))
    work = (2048 * 2048) ** 2
    assert import_error(net.model()) == (
        f"{LABEL}: folding MaxPool '/pool' would take about {work:,} steps, over mcuflow's "
        f"limit of {MAX_FOLDED_WORK:,}" + FOLD_HINT)


def test_small_folds_still_work() -> None:
    """Shape arithmetic as PyTorch exports it, a small Tile, Range and MatMul fold as before."""
    net = Net()
    shape = net.node("Shape", net.y)
    net.feed(net.node("Cast", shape, to=TensorProto.FLOAT))
    net.feed(net.node("Tile", net.const(np.ones((2, 2), np.float32)), net.const(ints(3, 3))))
    net.feed(net.node("Range", net.const(np.float32(0)), net.const(np.float32(100)),
                      net.const(np.float32(1))))
    net.feed(net.node("MatMul", net.const(np.ones((64, 64), np.float32)),
                      net.const(np.ones((64, 64), np.float32))))
    graph = import_onnx(net.model()).graph
    assert graph.outputs


# --------------------------------------------------------------------------- external data


def make_external(tensor: onnx.TensorProto, location: str) -> None:
    """Mark `tensor` as stored at `location` (its bytes would be read from there)."""
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location


def external_tensor(name: str, location: str, count: int = 4) -> onnx.TensorProto:
    tensor = numpy_helper.from_array(np.ones(count, np.float32), name)
    make_external(tensor, location)
    return tensor


def _in_initializer(net: Net) -> onnx.ModelProto:
    net.feed(net.const(np.ones(4, np.float32), "w"))
    model = net.proto()
    make_external(next(t for t in model.graph.initializer if t.name == "w"), "weights.bin")
    return model


def _in_constant(net: Net) -> onnx.ModelProto:
    net.feed(net.node("Constant", name="c", value=external_tensor("w", "../../etc/passwd")))
    return net.proto()


def _in_attribute(net: Net) -> onnx.ModelProto:
    fill = external_tensor("v", "/etc/shadow", 1)
    net.feed(net.node("ConstantOfShape", net.const(ints(4)), name="fill", value=fill))
    return net.proto()


def _in_sparse_initializer(net: Net) -> onnx.ModelProto:
    model = net.proto()
    sparse = helper.make_sparse_tensor(external_tensor("sw", "sw.bin", 1),
                                       numpy_helper.from_array(ints(0), "sw_i"), [4])
    model.graph.sparse_initializer.append(sparse)
    return model


def _branch(tensor: onnx.TensorProto) -> onnx.GraphProto:
    constant = helper.make_node("Constant", [], ["b"], name="c", value=tensor)
    return helper.make_graph([constant], "branch", [],
                             [helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])])


def _in_if(net: Net) -> onnx.ModelProto:
    condition = net.const(np.array(True))
    plain = _branch(numpy_helper.from_array(np.ones(4, np.float32), "p"))
    net.feed(net.node("If", condition, name="if", then_branch=_branch(external_tensor(
        "w", "secret.bin")), else_branch=plain))
    return net.proto()


def _in_loop(net: Net) -> onnx.ModelProto:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"]),
         helper.make_node("Constant", [], ["b"], name="c", value=external_tensor("w", "x.bin"))],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])])
    net.feed(net.node("Loop", net.const(ints(1)), net.const(np.array(True)), name="loop",
                      body=body))
    return net.proto()


def _in_function(net: Net) -> onnx.ModelProto:
    model = net.proto()
    constant = helper.make_node("Constant", [], ["out"], name="fc",
                                value=external_tensor("w", "/proc/self/environ"))
    model.functions.append(helper.make_function("custom", "f", [], ["out"], [constant],
                                                [helper.make_opsetid("", 17)]))
    model.opset_import.append(helper.make_opsetid("custom", 1))
    return model


EXTERNAL: dict[str, tuple[Callable[[Net], onnx.ModelProto], str]] = {
    "initializer": (_in_initializer, "initializer 'w' is stored in an external file "
                    "('weights.bin')"),
    "constant": (_in_constant, "tensor 'w' of Constant node 'c' is stored in an external file "
                 "('../../etc/passwd')"),
    "attribute": (_in_attribute, "tensor 'v' of ConstantOfShape node 'fill' is stored in an "
                  "external file ('/etc/shadow')"),
    "sparse-initializer": (_in_sparse_initializer, "sparse initializer 'sw' is stored in an "
                           "external file ('sw.bin')"),
    "if-subgraph": (_in_if, "tensor 'w' of Constant node 'c' in If node 'if' is stored in an "
                    "external file ('secret.bin')"),
    "function": (_in_function, "tensor 'w' of Constant node 'fc' in function 'f' is stored in "
                 "an external file ('/proc/self/environ')"),
}
READS_ONLY_THE_MODEL = "; mcuflow reads only the model file" + EXTERNAL_HINT


@pytest.mark.parametrize("case", sorted(EXTERNAL))
def test_external_data_is_refused(case: str, tmp_path: Path) -> None:
    build, message = EXTERNAL[case]
    model, done = analyze(tmp_path, build(Net()).SerializeToString())
    done.assert_one_line(f"'{model}': {message}{READS_ONLY_THE_MODEL}")
    done.assert_bounded()


def _in_training_info(net: Net) -> onnx.ModelProto:
    model = net.proto()
    initialization = helper.make_graph([], "init", [], [], [external_tensor("t", "t.bin")])
    model.training_info.add().initialization.CopyFrom(initialization)
    return model


def _only_entries(net: Net) -> onnx.ModelProto:
    """external_data entries without data_location: refused all the same."""
    net.feed(net.node("Constant", name="c", value=external_tensor("w", "w.bin")))
    model = net.proto()
    next(n for n in model.graph.node if n.op_type == "Constant").attribute[0].t.ClearField(
        "data_location")
    return model


def _long_location(net: Net) -> onnx.ModelProto:
    net.feed(net.node("Constant", name="c", value=external_tensor("w", "\n../" * 100)))
    return net.proto()


def _nested_ifs(net: Net) -> onnx.ModelProto:
    """A Constant in an If in an If... 25 deep (protobuf's parser allows about 100 levels)."""
    plain = _branch(numpy_helper.from_array(np.ones(4, np.float32), "p"))
    graph = _branch(external_tensor("w", "deep.bin"))
    for depth in range(25):
        node = helper.make_node("If", ["cond"], ["b"], name=f"if{depth}", then_branch=graph,
                                else_branch=plain)
        graph = helper.make_graph([node], f"g{depth}", [],
                                  [helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])])
    net.feed(net.node("If", net.const(np.array(True), "cond"), name="outer",
                      then_branch=graph, else_branch=plain))
    return net.proto()


def _sparse_attribute(net: Net) -> onnx.ModelProto:
    sparse = helper.make_sparse_tensor(external_tensor("sv", "sv.bin", 1),
                                       numpy_helper.from_array(ints(0), "si"), [4])
    net.feed(net.node("Constant", name="c", sparse_value=sparse))
    return net.proto()


def _dead_constant(net: Net) -> onnx.ModelProto:
    net.node("Constant", name="dead", value=external_tensor("w", "w.bin"))
    return net.proto()


IN_PROCESS_EXTERNAL: dict[str, tuple[Callable[[Net], onnx.ModelProto], str]] = {
    "loop-subgraph": (_in_loop, "tensor 'w' of Constant node 'c' in Loop node 'loop' is stored "
                      "in an external file ('x.bin')"),
    "training-info": (_in_training_info, "initializer 't' of training info is stored in an "
                      "external file ('t.bin')"),
    "entries-only": (_only_entries, "tensor 'w' of Constant node 'c' is stored in an external "
                     "file ('w.bin')"),
    "long-location": (_long_location, "tensor 'w' of Constant node 'c' is stored in an external "
                      "file (" + repr(("\n../" * 100)[:77] + "...") + ")"),
    "nested-ifs": (_nested_ifs, "tensor 'w' of Constant node 'c' in If node 'outer' is stored "
                   "in an external file ('deep.bin')"),
    "sparse-attribute": (_sparse_attribute, "sparse tensor 'sv' of Constant node 'c' is stored "
                         "in an external file ('sv.bin')"),
    "dead-node": (_dead_constant, "tensor 'w' of Constant node 'dead' is stored in an external "
                  "file ('w.bin')"),
}


def test_a_location_that_is_not_utf8_is_shown_replaced() -> None:
    net = Net()
    net.feed(net.node("Constant", name="c", value=external_tensor("w", "LOCATION")))
    data = net.model().replace(b"LOCATION", b"\xff\xfeCATION")
    with pytest.raises(UnsupportedModelError) as caught:
        import_onnx(data)
    assert str(caught.value) == (f"{LABEL}: tensor 'w' of Constant node 'c' is stored in an "
                                 f"external file ('\ufffd\ufffdCATION'){READS_ONLY_THE_MODEL}")


@pytest.mark.parametrize("case", sorted(IN_PROCESS_EXTERNAL))
def test_external_data_anywhere_is_refused(case: str, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    build, message = IN_PROCESS_EXTERNAL[case]
    with pytest.raises(UnsupportedModelError) as caught:
        import_onnx(build(Net()).SerializeToString())
    assert str(caught.value) == f"{LABEL}: {message}{READS_ONLY_THE_MODEL}"


def _files(root: Path) -> list[Path]:
    """Every regular file below `root`, links not followed."""
    return [Path(folder) / name for folder, _, names in os.walk(root) for name in names
            if not (Path(folder) / name).is_symlink()]


def test_no_file_the_model_names_is_ever_read(tmp_path: Path) -> None:
    """The leak: Constant nodes name a file by the model, one via `../`, one via a symlink.

    `compile` must fail, and no file it leaves holds any of their bytes.
    """
    here, sibling, elsewhere = (tmp_path / name for name in ("model", "sibling", "elsewhere"))
    for folder in (here, sibling, elsewhere):
        folder.mkdir()
    (here / "link").symlink_to("../elsewhere", target_is_directory=True)
    secrets = {}
    for index, path in enumerate((here / "next.bin", sibling / "up.bin", elsewhere / "link.bin")):
        secrets[path] = (np.float32(1000 + index) + np.arange(16, dtype=np.float32)).tobytes()
        path.write_bytes(secrets[path])
    net = Net()
    for name, location in (("near", "next.bin"), ("up", "../sibling/up.bin"),
                           ("linked", "link/link.bin")):
        net.feed(net.node("Constant", name=name, value=external_tensor(name, location, 16)))
    model = here / "model.onnx"
    model.write_bytes(net.model())
    calibration = here / "cal.npy"
    np.save(calibration, np.zeros((3, WIDTH), np.float32))
    out = tmp_path / "out"
    done = run_mcuflow(["compile", model, "-o", out, "--calibration", calibration], cwd=here)
    done.assert_one_line(f"'{model}': tensor 'near' of Constant node 'near' is stored in an "
                         f"external file ('next.bin'){READS_ONLY_THE_MODEL}")
    done.assert_bounded()
    assert not out.exists()
    for path in _files(tmp_path):
        if path not in secrets:
            data = path.read_bytes()
            assert not any(secret in data for secret in secrets.values()), path


# --------------------------------------------------------------------------- the fuzz harness


def test_the_fuzz_harness_fails_an_accepted_model_with_external_data(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Were the reader to accept external data again, the fuzzer would report it."""
    monkeypatch.setattr(onnx_harness._OnnxPipeline, "execute", lambda self, data: None)
    outcome = onnx_harness.execute_onnx(_in_constant(Net()).SerializeToString())
    assert (outcome.status, outcome.error) == (Status.FAILURE, "ExternalDataAccepted")


@pytest.mark.parametrize("mutation", [onnx_mutators._fold_bomb, onnx_mutators._external_data])
def test_the_fuzz_mutators_plant_attacks_the_reader_survives(
        mutation: Callable[[onnx.ModelProto, random.Random], str]) -> None:
    rng, names = random.Random(5), sorted(onnx_seeds())
    for index in range(40):
        model = onnx.load_from_string(onnx_seeds()[names[index % len(names)]])
        mutation(model, rng)
        outcome = onnx_harness.execute_onnx(model.SerializeToString(), index)
        assert outcome.status is not Status.FAILURE, outcome.trace
