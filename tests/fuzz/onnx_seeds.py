"""ONNX seeds for the fuzzer: small float graphs built with onnx.helper, named as PyTorch does."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Net:
    """A small ONNX graph under construction: one float input, initialisers, named nodes."""

    def __init__(self, name: str, shape: tuple[int, ...], opset: int) -> None:
        self.name, self.shape, self.opset = name, shape, opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(len(name))

    def const(self, data: np.ndarray) -> str:
        name = f"{self.name}.c{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(np.asarray(data), name))
        return name

    def weights(self, *shape: int) -> str:
        return self.const(self.rng.standard_normal(shape).astype(np.float32) * 0.5)

    def positive(self, count: int) -> str:
        return self.const(self.rng.uniform(0.5, 1.5, count).astype(np.float32))

    def node(self, op_type: str, *inputs: str, **attrs: object) -> str:
        name = f"/{op_type.lower()}_{len(self.nodes)}/out"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name],
                                           name=f"/{op_type}_{len(self.nodes)}", **attrs))
        return name

    def model(self, output: str) -> bytes:
        graph = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(self.shape))],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="pytorch")
        model.ir_version = 8
        return model.SerializeToString()


def _conv_bn(net: _Net) -> str:
    y = net.node("Conv", "input", net.weights(4, 3, 3, 3), net.weights(4), pads=[1, 1, 1, 1])
    y = net.node("BatchNormalization", y, *(net.positive(4) for _ in range(4)), epsilon=1e-3)
    y = net.node("MaxPool", net.node("Relu", y), kernel_shape=[2, 2], strides=[2, 2])
    y = net.node("Flatten", y, axis=1)
    return net.node("Softmax", net.node("Gemm", y, net.weights(5, 64), net.weights(5), transB=1))


def _depthwise(net: _Net) -> str:
    y = net.node("Conv", "input", net.weights(4, 1, 3, 3), group=4, strides=[2, 2],
                 pads=[1, 1, 1, 1])
    y = net.node("Clip", y, net.const(np.float32(0.0)), net.const(np.float32(6.0)))
    y = net.node("AveragePool", y, kernel_shape=[2, 2], strides=[1, 1])
    y = net.node("GlobalAveragePool", y)
    return net.node("Softmax", net.node("Reshape", y, net.const(np.array([1, 4], np.int64))))


def _add_concat(net: _Net) -> str:
    r = net.node("Relu", "input")
    y = net.node("Concat", net.node("Add", "input", r), r, axis=1)
    y = net.node("Conv", y, net.weights(3, 4, 1, 1))
    y = net.node("Reshape", y, net.const(np.array([1, -1], np.int64)))
    return net.node("Gemm", y, net.weights(48, 4), net.weights(4))


def _mlp(net: _Net) -> str:
    y = net.node("Relu", net.node("Gemm", "input", net.weights(12, 16), net.weights(12),
                                  transB=1))
    y = net.node("Add", net.node("MatMul", y, net.weights(12, 6)), net.weights(6))
    return net.node("Softmax", net.node("Mul", y, net.const(np.float32(0.5))), axis=1)


def _shape_arithmetic(net: _Net) -> str:
    shape = net.node("Shape", "input")
    batch = net.node("Gather", shape, net.const(np.array(0, np.int64)), axis=0)
    target = net.node("Concat", net.node("Unsqueeze", batch, net.const(np.array([0], np.int64))),
                      net.const(np.array([-1], np.int64)), axis=0)
    y = net.node("Reshape", net.node("Sigmoid", "input"), target)
    return net.node("Tanh", net.node("MatMul", y, net.weights(18, 5)))


def _pad_pool(net: _Net) -> str:
    y = net.node("Pad", "input", net.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)))
    y = net.node("Relu", net.node("Conv", y, net.weights(3, 2, 3, 3), strides=[1, 2]))
    y = net.node("MaxPool", y, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    y = net.node("AveragePool", y, kernel_shape=[2, 2], pads=[1, 1, 1, 1],
                 count_include_pad=1)
    y = net.node("Transpose", y, perm=[0, 2, 3, 1])
    return net.node("LeakyRelu", net.node("ReduceMean", y, axes=[1, 2], keepdims=0), alpha=0.1)


def _branch(name: str, value: float) -> onnx.GraphProto:
    tensor = numpy_helper.from_array(np.full(4, value, np.float32))
    return helper.make_graph([helper.make_node("Constant", [], [name], value=tensor)], name, [],
                             [helper.make_tensor_value_info(name, TensorProto.FLOAT, [4])])


def _constants(net: _Net) -> str:
    """Constant nodes and small folds, as an export without constant folding leaves them.

    A constant branch nothing reads (an Expand and an If of Constant subgraphs) is skipped.
    """
    target = net.node("Constant", value=numpy_helper.from_array(np.array([1, -1], np.int64)))
    y = net.node("Reshape", net.node("Relu", "input"), target)
    length = net.node("Constant", value=numpy_helper.from_array(np.array([32], np.int64)))
    fill = net.node("ConstantOfShape", length,
                    value=numpy_helper.from_array(np.array([0.25], np.float32)))
    tiled = net.node("Tile", net.const(np.full((1, 1), 0.5, np.float32)),
                     net.const(np.array([1, 32], np.int64)))
    ramp = net.node("Range", net.const(np.float32(0)), net.const(np.float32(1)),
                    net.const(np.float32(1 / 32)))
    y = net.node("Add", net.node("Mul", net.node("Add", y, fill), tiled), ramp)
    net.node("ReduceSum", net.node("Expand", fill, net.const(np.array([64, 32], np.int64))))
    net.node("If", net.const(np.array(True)), then_branch=_branch("then", 1.0),
             else_branch=_branch("else", 2.0))
    return net.node("MatMul", y, net.weights(32, 5))


_BUILT: dict[str, tuple[tuple[int, ...], int, Callable[[_Net], str]]] = {
    "conv_bn": ((1, 3, 8, 8), 13, _conv_bn),
    "depthwise": ((1, 4, 6, 6), 13, _depthwise),
    "add_concat": ((1, 2, 4, 4), 11, _add_concat),
    "mlp": ((1, 16), 13, _mlp),
    "shape_arithmetic": ((1, 2, 3, 3), 13, _shape_arithmetic),
    "pad_pool": ((1, 2, 7, 8), 17, _pad_pool),
    "constants": ((1, 2, 4, 4), 13, _constants),
}


@cache
def onnx_seeds() -> dict[str, bytes]:
    """Small float ONNX models: conv, BN, gemm, pooling, concat, reshape, Constant nodes, folds."""
    seeds = {}
    for name, (shape, opset, make) in _BUILT.items():
        net = _Net(name, shape, opset)
        seeds[name] = net.model(make(net))
    return seeds
