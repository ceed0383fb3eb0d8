"""Mutations of ONNX models: protobuf-structure edits of a ModelProto (bytes come from mutators).

Two attack classes are planted on purpose: constant-folding bombs (a ConstantOfShape, Tile,
Range, Expand, outer product, Concat chain... making a huge value, read by the graph or by
nothing) and tensors stored in an external file, anywhere a TensorProto can be.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import numpy as np
import onnx
from google.protobuf.message import Message
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from tests.fuzz.mutators import INTERESTING_FLOATS, INTERESTING_INTS

DTYPES = (0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 16, 99)
OP_TYPES = ("Conv", "Relu", "Gemm", "MatMul", "Add", "Mul", "Div", "Concat", "Reshape",
            "Flatten", "Softmax", "MaxPool", "AveragePool", "GlobalAveragePool", "Transpose",
            "Pad", "Squeeze", "Unsqueeze", "BatchNormalization", "Clip", "Shape", "Gather",
            "Identity", "Cast", "Sigmoid", "HardSigmoid", "ReduceMean", "Loop", "Erf", "Foo")
ATTRIBUTES = ("pads", "strides", "dilations", "kernel_shape", "group", "axis", "axes", "perm",
              "transB", "alpha", "epsilon", "auto_pad", "ceil_mode", "keepdims", "to", "mode")
WEIRD_NAMES = ("", "x" * 300, "a\nb", "caf\u00e9", "*/ int evil; /*", "\u202egnp.exe", "??/",
               "a\\", "1st", "int")
Mutation = Callable[[onnx.ModelProto, random.Random], str]


def _values(graph: onnx.GraphProto) -> list[str]:
    """Every value name the graph mentions, an empty name and a name nothing defines."""
    names = [i.name for i in graph.input] + [t.name for t in graph.initializer]
    names += [o for node in graph.node for o in node.output]
    return names + ["", "nowhere"]


def _int(rng: random.Random, old: int = 0) -> int:
    roll = rng.random()
    if roll < 0.3:
        return old + rng.choice((-2, -1, 1, 2))
    if roll < 0.9:
        return rng.choice(INTERESTING_INTS) * rng.choice((1, 1, -1))
    return rng.randrange(-(1 << 62), 1 << 62)


def _attribute(model: onnx.ModelProto, rng: random.Random) -> str:
    """Change, drop or add an attribute: negative pads or strides, zero kernels, odd strings."""
    node = rng.choice(model.graph.node)
    if node.attribute and rng.random() < 0.7:
        attribute = rng.choice(node.attribute)
        if rng.random() < 0.15:
            node.attribute.remove(attribute)
            return f"drop {node.op_type}.{attribute.name}"
        _reassign(attribute, rng)
        return f"set {node.op_type}.{attribute.name}"
    name = rng.choice(ATTRIBUTES)
    kind = rng.choice((AttributeProto.INT, AttributeProto.INTS, AttributeProto.FLOAT,
                       AttributeProto.STRING))
    attribute = onnx.helper.make_attribute(name, {AttributeProto.INT: 1, AttributeProto.INTS: [1],
                                                  AttributeProto.FLOAT: 1.0,
                                                  AttributeProto.STRING: "SAME_UPPER"}[kind])
    _reassign(attribute, rng)
    node.attribute.append(attribute)
    return f"add {node.op_type}.{name}"


def _reassign(attribute: AttributeProto, rng: random.Random) -> None:
    if attribute.type == AttributeProto.INT:
        attribute.i = _int(rng, attribute.i)
    elif attribute.type == AttributeProto.INTS:
        values = list(attribute.ints) or [1]
        if rng.random() < 0.3:
            values = values[: rng.randrange(len(values))] + values * rng.randrange(2)
        else:
            at = rng.randrange(len(values))
            values[at] = _int(rng, values[at])
        del attribute.ints[:]
        attribute.ints.extend(values)
    elif attribute.type == AttributeProto.FLOAT:
        attribute.f = rng.choice(INTERESTING_FLOATS)
    elif attribute.type == AttributeProto.STRING:
        attribute.s = rng.choice((b"SAME_LOWER", b"VALID", b"reflect", b"", b"\xff", b"NOTSET"))
    else:
        attribute.type = rng.choice((AttributeProto.INT, AttributeProto.FLOATS, 0, 99))


def _shape(model: onnx.ModelProto, rng: random.Random) -> str:
    """Wrong or huge dims: on an initialiser (its data unchanged) or on the graph input."""
    graph = model.graph
    if graph.initializer and rng.random() < 0.5:
        tensor = rng.choice(graph.initializer)
        dims = list(tensor.dims)
        if dims and rng.random() < 0.7:
            dims[rng.randrange(len(dims))] = _int(rng, dims[0])
        else:
            dims = dims[:-1] if dims and rng.random() < 0.5 else dims + [rng.choice((1, 2, 0))]
        del tensor.dims[:]
        tensor.dims.extend(dims)
        return f"dims of initialiser {tensor.name}"
    dims = graph.input[0].type.tensor_type.shape.dim
    roll = rng.random()
    if dims and roll < 0.6:
        dim = rng.choice(dims)
        if rng.random() < 0.8:
            dim.dim_value = rng.choice((0, 1, 2, 3, 5, 64, 1 << 12, 1 << 20, 1 << 31, 1 << 40,
                                        (1 << 63) - 1, -1, -(1 << 40)))
        else:
            dim.dim_param = rng.choice(("batch", "", "\u00e9"))
    elif dims and roll < 0.8:
        del dims[rng.randrange(len(dims))]
    else:
        dims.add().dim_value = rng.choice((1, 2, 3))
    return "input shape"


def _drop_initializer(model: onnx.ModelProto, rng: random.Random) -> str:
    """A missing initialiser: its name now dangles (or the graph input takes its place)."""
    if not model.graph.initializer:
        return "no-op"
    tensor = rng.choice(model.graph.initializer)
    model.graph.initializer.remove(tensor)
    if rng.random() < 0.3:
        model.graph.input.append(onnx.helper.make_tensor_value_info(
            tensor.name, rng.choice(DTYPES), list(tensor.dims)))
    return f"drop initialiser {tensor.name}"


def _rewire(model: onnx.ModelProto, rng: random.Random) -> str:
    """Point a node's input or output elsewhere: dangling names, cycles, double producers."""
    node = rng.choice(model.graph.node)
    names = _values(model.graph)
    field = node.input if node.input and rng.random() < 0.75 else node.output
    if not field:
        return "no-op"
    at = rng.randrange(len(field))
    field[at] = rng.choice(names)
    return f"rewire {node.op_type}"


def _reorder(model: onnx.ModelProto, rng: random.Random) -> str:
    """Swap, delete or duplicate nodes (the order ONNX requires is topological)."""
    nodes = list(model.graph.node)
    i, j = rng.randrange(len(nodes)), rng.randrange(len(nodes))
    roll = rng.random()
    if roll < 0.4:
        nodes[i], nodes[j] = nodes[j], nodes[i]
    elif roll < 0.7 and len(nodes) > 1:
        del nodes[i]
    else:
        copy = onnx.NodeProto()
        copy.CopyFrom(nodes[i])
        nodes.insert(j, copy)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return "reorder nodes"


def _dtype(model: onnx.ModelProto, rng: random.Random) -> str:
    """Another element type for an initialiser (same bytes) or the graph input."""
    graph = model.graph
    if graph.initializer and rng.random() < 0.6:
        tensor = rng.choice(graph.initializer)
        tensor.data_type = rng.choice(DTYPES)
        return f"dtype of initialiser {tensor.name}"
    rng.choice(graph.input).type.tensor_type.elem_type = rng.choice(DTYPES)
    return "input dtype"


def _data(model: onnx.ModelProto, rng: random.Random) -> str:
    """Truncate or extend an initialiser's bytes, or write extreme values into them."""
    if not model.graph.initializer:
        return "no-op"
    tensor = rng.choice(model.graph.initializer)
    raw = bytearray(tensor.raw_data)
    roll = rng.random()
    if roll < 0.3 and raw:
        del raw[rng.randrange(len(raw)):]
    elif roll < 0.45:
        raw += bytes(rng.choice((1, 4, 8)))
    elif raw and tensor.data_type == TensorProto.FLOAT:
        values = np.frombuffer(bytes(raw), "<f4").copy()
        values[rng.randrange(values.size)] = rng.choice(INTERESTING_FLOATS)
        raw = bytearray(values.tobytes())
    elif raw and tensor.data_type == TensorProto.INT64:
        values = np.frombuffer(bytes(raw), "<i8").copy()
        values[rng.randrange(values.size)] = _int(rng, int(values[0]))
        raw = bytearray(values.tobytes())
    elif rng.random() < 0.5:
        tensor.float_data.extend([rng.choice(INTERESTING_FLOATS)] * rng.randrange(1, 5))
    else:
        tensor.data_location = TensorProto.EXTERNAL
    tensor.raw_data = bytes(raw)
    return f"data of {tensor.name}"


def _op_type(model: onnx.ModelProto, rng: random.Random) -> str:
    """Another op type, or a node moved to a custom domain."""
    node = rng.choice(model.graph.node)
    if rng.random() < 0.1:
        node.domain = rng.choice(("com.microsoft", "ai.onnx.ml", "ai.onnx"))
    else:
        node.op_type = rng.choice(OP_TYPES)
    return f"op type {node.op_type}"


def _graph_ends(model: onnx.ModelProto, rng: random.Random) -> str:
    """Graph outputs that are constants, inputs, missing or repeated; opset versions."""
    graph = model.graph
    roll = rng.random()
    if roll < 0.4:
        rng.choice(graph.output).name = rng.choice(_values(graph))
    elif roll < 0.6:
        graph.output.append(graph.output[0] if rng.random() < 0.5 else graph.input[0])
    elif roll < 0.8:
        model.opset_import[0].version = rng.choice((1, 6, 7, 9, 10, 11, 12, 13, 17, 18, 99,
                                                    1 << 40))
    else:
        del graph.output[:]
    return "graph ends"


def _rename(model: onnx.ModelProto, rng: random.Random) -> str:
    """Give a value, node or the graph a hostile name, everywhere it is used."""
    graph = model.graph
    new = rng.choice(WEIRD_NAMES)
    roll = rng.random()
    if roll < 0.2:
        graph.name = new
        return "graph name"
    if roll < 0.4:
        rng.choice(graph.node).name = new
        return "node name"
    old = rng.choice(_values(graph)[:-2])
    for node in graph.node:
        for field in (node.input, node.output):
            for at, name in enumerate(field):
                if name == old:
                    field[at] = new
    for entry in [*graph.input, *graph.output, *graph.initializer]:
        if entry.name == old:
            entry.name = new
    return f"rename {old!r}"


# --------------------------------------------------------------------------- folding bombs

BOMB_DIMS = (1, 3, 1000, 25_000, 1 << 16, 1 << 20, 1 << 31, 1 << 62, 0, -1)
"""Dimensions of a planted value: mostly far too large to fold, now and then small or invalid."""


class _Planter:
    """Nodes and initialisers to insert into a graph, with names no seed uses."""

    def __init__(self, graph: onnx.GraphProto, rng: random.Random, tag: str) -> None:
        self.graph, self.rng, self.tag = graph, rng, tag
        self.nodes: list[onnx.NodeProto] = []

    def const(self, data: object) -> str:
        name = f"{self.tag}/k{len(self.graph.initializer)}"
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(data), name))
        return name

    def ints(self, *values: int) -> str:
        return self.const(np.array(values, np.int64))

    def dims(self, count: int) -> list[int]:
        return [self.rng.choice(BOMB_DIMS) for _ in range(count)]

    def node(self, op_type: str, *inputs: str, **attrs: object) -> str:
        name = f"{self.tag}/{op_type}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def ones(self, *shape: int) -> str:
        return self.const(np.ones(shape, np.float32))

    def line(self) -> str:
        """A float vector of BOMB_DIMS elements made by Range."""
        limit = np.float32(min(self.rng.choice(BOMB_DIMS), 1 << 62))
        return self.node("Range", self.const(np.float32(0)), self.const(limit),
                         self.const(np.float32(1)))


def _constant_of_shape_bomb(p: _Planter) -> str:
    return p.node("ConstantOfShape", p.ints(*p.dims(p.rng.randrange(1, 4))))


def _tile_bomb(p: _Planter) -> str:
    return p.node("Tile", p.ones(1, 1), p.ints(*p.dims(2)))


def _range_bomb(p: _Planter) -> str:
    if p.rng.random() < 0.5:
        return p.line()
    return p.node("Range", p.const(np.int64(0)), p.const(np.int64(p.rng.choice(BOMB_DIMS))),
                  p.const(np.int64(p.rng.choice((1, 1, 2, 0, -1)))))


def _expand_bomb(p: _Planter) -> str:
    return p.node("Expand", p.ones(1), p.ints(*p.dims(p.rng.randrange(1, 4))))


def _outer_bomb(p: _Planter) -> str:
    """[N, 1] op [1, N]: a broadcast element-wise op or a MatMul."""
    line = p.line()
    column = p.node("Unsqueeze", line, p.ints(1))
    row = p.node("Unsqueeze", line, p.ints(0))
    return p.node(p.rng.choice(("Add", "Mul", "Sub", "Max", "MatMul")), column, row)


def _concat_bomb(p: _Planter) -> str:
    """A value doubled by a chain of Concats, or copied by several Concats read by one Sum.

    The copies may each fit the limit for one folded value and together pass the total's.
    """
    value = p.node("ConstantOfShape", p.ints(1 << p.rng.randrange(10, 24)))
    if p.rng.random() < 0.5:
        copies = [p.node("Concat", value, value, axis=0) for _ in range(p.rng.randrange(2, 7))]
        return p.node("Sum", *copies)
    for _ in range(p.rng.randrange(1, 14)):
        value = p.node("Concat", value, value, axis=0)
    return value


def _pad_bomb(p: _Planter) -> str:
    grow = p.dims(2)
    return p.node("Pad", p.ones(2, 2), p.ints(0, 0, *grow))


def _one_hot_bomb(p: _Planter) -> str:
    depth = p.rng.choice(BOMB_DIMS)
    return p.node("OneHot", p.node("Cast", p.line(), to=TensorProto.INT64),
                  p.const(np.int64(depth)), p.const(np.array([0, 1], np.float32)))


BOMBS = (_constant_of_shape_bomb, _tile_bomb, _range_bomb, _expand_bomb, _outer_bomb,
         _concat_bomb, _pad_bomb, _one_hot_bomb)


def _insert(graph: onnx.GraphProto, at: int, nodes: list[onnx.NodeProto]) -> None:
    """Insert `nodes` before position `at` of the graph's nodes."""
    kept = list(graph.node)
    del graph.node[:]
    graph.node.extend([*kept[:at], *nodes, *kept[at:]])


def _fold_bomb(model: onnx.ModelProto, rng: random.Random) -> str:
    """Insert a huge constant computation; the graph output reads it, a node does, or nothing."""
    graph = model.graph
    planter = _Planter(graph, rng, "bomb")
    bomb = rng.choice(BOMBS)
    value = bomb(planter)
    at = rng.randrange(len(graph.node) + 1)
    _insert(graph, at, planter.nodes)
    readers = graph.node[at + len(planter.nodes):]
    use = rng.choice(("output", "operand", "dead"))
    if use == "output" and graph.output:
        total = helper.make_node("ReduceSum", [value], [f"{value}/sum"], keepdims=0)
        result = helper.make_node("Add", [graph.output[0].name, total.output[0]],
                                  [f"{value}/out"])
        graph.node.extend([total, result])
        graph.output[0].name = result.output[0]
    elif use == "operand" and readers:
        reader = rng.choice(readers)
        if reader.input:
            reader.input[rng.randrange(len(reader.input))] = value
    return f"{bomb.__name__[1:]} read by {use}"


# --------------------------------------------------------------------------- external data

EXTERNAL_LOCATIONS = ("../../../../etc/passwd", "/etc/passwd", "/proc/self/environ",
                      "secret.bin", "link/../../x", "\n../\x1b[31m", "x" * 400, "", ".")


def tensors(message: Message) -> Iterator[TensorProto]:
    """Every TensorProto in a message, wherever it is (an explicit stack, no recursion)."""
    stack = [message]
    while stack:
        message = stack.pop()
        if isinstance(message, TensorProto):
            yield message
            continue
        for field, value in message.ListFields():
            if field.message_type is not None:
                stack.extend([value] if isinstance(value, Message) else value)


def _constant_node(name: str) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=name,
                            value=numpy_helper.from_array(np.ones(4, np.float32), f"{name}/t"))


def _constant_place(model: onnx.ModelProto, rng: random.Random) -> Message:
    at = rng.randrange(len(model.graph.node) + 1)
    _insert(model.graph, at, [_constant_node("planted")])
    return model.graph.node[at]


def _attribute_place(model: onnx.ModelProto, rng: random.Random) -> Message:
    planter = _Planter(model.graph, rng, "planted")
    planter.node("ConstantOfShape", planter.ints(4),
                 value=numpy_helper.from_array(np.ones(1, np.float32), "fill"))
    _insert(model.graph, 0, planter.nodes)
    return model.graph.node[0]


def _branch(name: str) -> onnx.GraphProto:
    return helper.make_graph([_constant_node(name)], name, [],
                             [helper.make_tensor_value_info(name, TensorProto.FLOAT, [4])])


def _subgraph_place(model: onnx.ModelProto, rng: random.Random) -> Message:
    """An If or a Loop whose subgraphs hold Constant nodes."""
    planter = _Planter(model.graph, rng, "planted")
    condition = planter.const(np.array(True))
    if rng.random() < 0.5:
        planter.node("If", condition, then_branch=_branch("then"), else_branch=_branch("else"))
    else:
        body = _branch("body")
        body.input.extend([helper.make_tensor_value_info("i", TensorProto.INT64, []),
                           helper.make_tensor_value_info("c", TensorProto.BOOL, [])])
        body.node.append(helper.make_node("Identity", ["c"], ["c_out"]))
        body.output.insert(0, helper.make_tensor_value_info("c_out", TensorProto.BOOL, []))
        planter.node("Loop", planter.ints(1), condition, body=body)
    _insert(model.graph, 0, planter.nodes)
    return model.graph.node[0]


def _function_place(model: onnx.ModelProto, rng: random.Random) -> Message:
    function = helper.make_function("planted", "f", [], ["out"], [_constant_node("out")],
                                    [helper.make_opsetid("", 13)])
    model.functions.append(function)
    model.opset_import.append(helper.make_opsetid("planted", 1))
    if rng.random() < 0.5:
        model.graph.node.append(helper.make_node("f", [], ["called"], domain="planted"))
    return model.functions[-1]


def _sparse_place(model: onnx.ModelProto, rng: random.Random) -> Message:
    values = numpy_helper.from_array(np.ones(1, np.float32), "planted")
    indices = numpy_helper.from_array(np.zeros(1, np.int64), "planted/i")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))
    return model.graph.sparse_initializer[-1]


def _training_place(model: onnx.ModelProto, rng: random.Random) -> Message:
    weights = numpy_helper.from_array(np.ones(4, np.float32), "planted")
    model.training_info.add().initialization.CopyFrom(
        helper.make_graph([], "init", [], [], [weights]))
    return model.training_info[-1]


PLACES: tuple[Callable[[onnx.ModelProto, random.Random], Message], ...] = (
    _constant_place, _attribute_place, _subgraph_place, _function_place, _sparse_place,
    _training_place)
"""Where a tensor can hide besides the initialisers; each returns what it added."""


def _external_data(model: onnx.ModelProto, rng: random.Random) -> str:
    """Mark a tensor (already in the model, or in a place planted for it) as stored elsewhere."""
    place, where = model, "existing"
    if rng.random() < 0.6:
        planted = rng.choice(PLACES)
        place, where = planted(model, rng), planted.__name__[1:]
    tensor = rng.choice(list(tensors(place)))
    if rng.random() < 0.8:
        tensor.data_location = TensorProto.EXTERNAL
    if rng.random() < 0.9:
        for key, value in (("location", rng.choice(EXTERNAL_LOCATIONS)), ("offset", "0"),
                           ("length", str(rng.choice(INTERESTING_INTS))))[:rng.randrange(1, 4)]:
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    if rng.random() < 0.5:
        tensor.ClearField("raw_data")
    return f"external data in {where} ({tensor.name!r})"


ONNX_MUTATIONS: tuple[Mutation, ...] = (
    _attribute, _attribute, _attribute, _shape, _shape, _drop_initializer, _rewire, _rewire,
    _reorder, _dtype, _data, _op_type, _graph_ends, _rename, _fold_bomb, _external_data,
)


def mutate_onnx(seed: onnx.ModelProto, rng: random.Random, count: int
                ) -> tuple[bytes, list[str]] | None:
    """`count` structure mutations of a copy of `seed`, serialised.

    None when a mutation does not apply (nothing left to pick) or a value does not fit its field.
    """
    model = onnx.ModelProto()
    model.CopyFrom(seed)
    try:
        done = [rng.choice(ONNX_MUTATIONS)(model, rng) for _ in range(count)]
        return model.SerializeToString(), done
    except (IndexError, ValueError, TypeError, OverflowError):
        return None
