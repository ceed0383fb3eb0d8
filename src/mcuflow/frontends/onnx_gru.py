"""ONNX GRU unrolled over time into FULLY_CONNECTED, ADD, SUB, MUL, LOGISTIC, TANH and SLICE.

TFLite has no GRU builtin: TensorFlow's converter unrolls a Keras GRU into such ops, and so does
mcuflow, one step per frame of the static sequence. Forward GRUs of batch 1 starting from a zero
state, with the default activations (Sigmoid, Tanh) and linear_before_reset 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx

from mcuflow.frontends.onnx_layout import _Act
from mcuflow.frontends.onnx_ops import _text, converter
from mcuflow.ir.ops import (
    ConcatenationAttrs,
    ElementwiseAttrs,
    FullyConnectedAttrs,
    NoAttrs,
    OpAttrs,
    OpKind,
    ReshapeAttrs,
    SliceAttrs,
)

if TYPE_CHECKING:
    from mcuflow.frontends.onnx_reader import _Importer

_GRU_ABSENT = {4: "sequence_lens", 5: "initial_h"}
"""Optional GRU inputs mcuflow does not take, by position."""
_ADD, _SUB, _MUL = OpKind.ADD, OpKind.SUB, OpKind.MUL


def _gru_refusal(imp: _Importer, node: onnx.NodeProto, hidden: int) -> str | None:
    """Why mcuflow cannot convert this GRU node, or None."""
    attrs = imp.attrs(node)
    if _text(attrs.get("direction", "forward")) != "forward":
        return "runs backward or both ways; only forward GRUs are supported"
    activations = [_text(a) for a in attrs.get("activations", [])]
    if activations and activations != ["Sigmoid", "Tanh"]:
        return f"uses activations {activations}; only Sigmoid, Tanh are supported"
    if "clip" in attrs:
        return "clips its gates (unsupported)"
    present = [what for position, what in _GRU_ABSENT.items()
               if position < len(node.input) and node.input[position]]
    if present:
        return f"takes {', '.join(present)}; mcuflow's GRU starts from a zero state"
    return None if hidden > 0 else "has no hidden_size"


@dataclass(frozen=True)
class _GruWeights:
    """A GRU's constants, gates in ONNX's order (update z, reset r, candidate h)."""

    inputs: np.ndarray
    """W [3H, I]."""
    input_bias: np.ndarray
    """[3H]: Wb + Rb of z and r, and Wb (+ Rb unless linear_before_reset) of h."""
    recurrent_zr: np.ndarray
    """R of z and r [2H, H]."""
    recurrent_h: np.ndarray
    """R of h [H, H]."""
    recurrent_h_bias: np.ndarray | None
    """Rb of h [H] when linear_before_reset (applied before the reset gate), else None."""


def _gru_weights(imp: _Importer, node: onnx.NodeProto, hidden: int,
                 linear_before_reset: bool) -> _GruWeights:
    w, r = imp.const(node, 1, "input weights"), imp.const(node, 2, "recurrent weights")
    if w is None or r is None or w.ndim != 3 or r.shape != (1, 3 * hidden, hidden) or (
            w.shape[:2] != (1, 3 * hidden)):
        raise imp.unsupported(node, "needs constant weights W [1, 3H, I] and R [1, 3H, H]")
    b = imp.const(node, 3, "bias")
    b = np.zeros(6 * hidden, np.float32) if b is None else b.reshape(-1)
    if b.size != 6 * hidden:
        raise imp.unsupported(node, f"has a bias of {b.size} values; expected {6 * hidden}")
    input_bias, recurrent_bias = b[:3 * hidden].copy(), b[3 * hidden:]
    input_bias[:2 * hidden] += recurrent_bias[:2 * hidden]
    if not linear_before_reset:
        input_bias[2 * hidden:] += recurrent_bias[2 * hidden:]
    return _GruWeights(w[0], input_bias, r[0, :2 * hidden], r[0, 2 * hidden:],
                       recurrent_bias[2 * hidden:] if linear_before_reset else None)


@dataclass
class _Unrolled:
    """Emits the ops of one GRU node as plain 2-D [rows, features] tensors."""

    imp: _Importer
    like: _Act
    base: str
    hidden: int

    def op(self, kind: OpKind, inputs: list[str], role: str, shape: tuple[int, ...],
           attrs: OpAttrs | None = None) -> str:
        attrs = attrs if attrs is not None else (
            ElementwiseAttrs() if kind in (_ADD, _SUB, _MUL) else NoAttrs())
        name = self.imp.fresh(f"{self.base}/{role}")
        return self.imp.emit(kind, inputs, attrs, self.like, name, shape,
                             tuple(range(len(shape)))).name

    def row(self, source: str, row: int, start: int, width: int, role: str) -> str:
        return self.op(OpKind.SLICE, [source], role, (1, width),
                       SliceAttrs((row, start), (1, width)))

    def dense(self, x: str, weights: str, bias: str | None, role: str, width: int) -> str:
        inputs = [x, weights] if bias is None else [x, weights, bias]
        return self.op(OpKind.FULLY_CONNECTED, inputs, role, (1, width), FullyConnectedAttrs())


def _step(u: _Unrolled, t: int, gx: str, h: str | None, consts: dict[str, str | None]) -> str:
    """H_t = h~ + z * (H_{t-1} - h~) of frame `t` (H_{-1} = 0)."""
    n = u.hidden
    gates = u.row(gx, t, 0, 2 * n, f"x_zr_{t}")
    if h is not None:
        gates = u.op(_ADD, [gates, u.dense(h, consts["r_zr"], None, f"zr_{t}", 2 * n)],
                     f"zr_sum_{t}", (1, 2 * n))
    zr = u.op(OpKind.LOGISTIC, [gates], f"zr_gates_{t}", (1, 2 * n))
    z, r = u.row(zr, 0, 0, n, f"z_{t}"), u.row(zr, 0, n, n, f"r_{t}")
    candidate = u.row(gx, t, 2 * n, n, f"x_h_{t}")
    if consts["r_h_bias"] is not None:  # linear_before_reset: r * (H R_h + Rb_h)
        recurrent = consts["r_h_bias_row"] if h is None else u.dense(
            h, consts["r_h"], consts["r_h_bias"], f"h_{t}", n)
        candidate = u.op(_ADD, [candidate, u.op(_MUL, [r, recurrent], f"reset_{t}", (1, n))],
                         f"h_sum_{t}", (1, n))
    elif h is not None:  # (r * H) R_h
        reset = u.op(_MUL, [r, h], f"reset_{t}", (1, n))
        candidate = u.op(_ADD, [candidate, u.dense(reset, consts["r_h"], None, f"h_{t}", n)],
                         f"h_sum_{t}", (1, n))
    candidate = u.op(OpKind.TANH, [candidate], f"candidate_{t}", (1, n))
    if h is None:
        return u.op(_SUB, [candidate, u.op(_MUL, [z, candidate], f"keep_{t}", (1, n))],
                    f"state_{t}", (1, n))
    kept = u.op(_MUL, [z, u.op(_SUB, [h, candidate], f"change_{t}", (1, n))], f"keep_{t}",
                (1, n))
    return u.op(_ADD, [candidate, kept], f"state_{t}", (1, n))


@converter("GRU")
def _gru(imp: _Importer, node: onnx.NodeProto) -> None:
    """A forward GRU of batch 1 unrolled over its frames; Y by CONCATENATION, Y_h by RESHAPE."""
    attrs = imp.attrs(node)
    hidden = int(attrs.get("hidden_size", 0))
    refusal = _gru_refusal(imp, node, hidden)
    if refusal is not None:
        raise imp.unsupported(node, refusal)
    x = imp.plain(imp.act(node), node)
    time_major = int(attrs.get("layout", 0)) == 0
    if len(x.shape) != 3 or x.shape[1 if time_major else 0] != 1:
        raise imp.unsupported(node, f"reads an input of shape {x.shape}; mcuflow unrolls GRUs "
                              "of batch 1 ([time, 1, features])")
    weights = _gru_weights(imp, node, hidden, bool(attrs.get("linear_before_reset", 0)))
    base = node.output[0] or node.output[1]
    u = _Unrolled(imp, x, base, hidden)
    seq = x.shape[0] if time_major else x.shape[1]
    frames = u.op(OpKind.RESHAPE, [x.name], "frames", (seq, x.shape[2]),
                  ReshapeAttrs((seq, x.shape[2])))
    gx = u.op(OpKind.FULLY_CONNECTED, [frames, imp.constant(f"{base}/w", weights.inputs),
                                       imp.constant(f"{base}/w_bias", weights.input_bias)],
              "x_gates", (seq, 3 * hidden), FullyConnectedAttrs())
    consts = {"r_zr": imp.constant(f"{base}/r_zr", weights.recurrent_zr),
              "r_h": imp.constant(f"{base}/r_h", weights.recurrent_h),
              "r_h_bias": None, "r_h_bias_row": None}
    if weights.recurrent_h_bias is not None:
        consts["r_h_bias"] = imp.constant(f"{base}/r_h_bias", weights.recurrent_h_bias)
        consts["r_h_bias_row"] = imp.constant(f"{base}/r_h_bias_row",
                                              weights.recurrent_h_bias.reshape(1, -1))
    states: list[str] = []
    for t in range(seq):
        states.append(_step(u, t, gx, states[-1] if states else None, consts))
    _outputs(imp, node, u, states, time_major)


def _outputs(imp: _Importer, node: onnx.NodeProto, u: _Unrolled, states: list[str],
             time_major: bool) -> None:
    """Bind Y [T, 1, 1, H] (or [1, T, 1, H]) and Y_h [1, 1, H] where the model reads them.

    The states are written once; Y, when nothing reads it, is not built.
    """
    seq, n = len(states), u.hidden
    read = {name for reader in imp.nodes for name in reader.input} | {
        value.name for value in imp.model.graph.output}
    if node.output[0] in read:
        sequence = states[0] if seq == 1 else u.op(
            OpKind.CONCATENATION, states, "sequence", (seq, n), ConcatenationAttrs(0))
        shape = (seq, 1, 1, n) if time_major else (1, seq, 1, n)
        imp.set(node, imp.emit(OpKind.RESHAPE, [sequence], ReshapeAttrs(shape), u.like,
                               node.output[0], shape, (0, 1, 2, 3)))
    if len(node.output) > 1 and node.output[1]:
        imp.values[node.output[1]] = imp.emit(OpKind.RESHAPE, [states[-1]],
                                              ReshapeAttrs((1, 1, n)), u.like, node.output[1],
                                              (1, 1, n), (0, 1, 2))
