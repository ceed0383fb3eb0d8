"""Mutations of ONNX models: protobuf-structure edits of a ModelProto (bytes come from mutators)."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto

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


ONNX_MUTATIONS: tuple[Mutation, ...] = (
    _attribute, _attribute, _attribute, _shape, _shape, _drop_initializer, _rewire, _rewire,
    _reorder, _dtype, _data, _op_type, _graph_ends, _rename,
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
