"""Fold SPACE_TO_BATCH_ND, convolution, BATCH_TO_SPACE_ND (TensorFlow's dilated conv) into one."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mcuflow.ir.enums import Padding
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, PadAttrs, ReshapeAttrs, infer_output_shapes
from mcuflow.passes.common import drop_unused_tensors, sole_consumer, unique_name

_VIEWS = (OpKind.EXPAND_DIMS, OpKind.SQUEEZE, OpKind.RESHAPE)
_CONVS = (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D)

Label = str | int | None
"""What an axis of a tensor between the batch-space ops is: "N" the batch, "C" the channels,
an int the SPACE_TO_BATCH_ND spatial axis it is, None a unit axis a view inserted."""


@dataclass(frozen=True)
class _Chain:
    """SPACE_TO_BATCH_ND, views, the convolution, views, BATCH_TO_SPACE_ND."""

    s2b: Operator
    before: tuple[Operator, ...]
    conv: Operator
    after: tuple[Operator, ...]
    b2s: Operator
    spatial: tuple[Label, Label]
    """The SPACE_TO_BATCH_ND spatial axis of the convolution's height and width."""
    labels: dict[str, tuple[Label, ...]]
    """What each axis of each view's output is."""


@dataclass(frozen=True)
class _Axis:
    """One convolution axis after the fold: its dilation and its padding before and after."""

    dilation: int
    before: int
    after: int
    kernel: int


def fold_dilated_conv(graph: Graph) -> Graph:
    """Fold each SPACE_TO_BATCH_ND -> conv -> BATCH_TO_SPACE_ND into the conv, block as dilation.

    Only when that is exactly the same computation. The convolution (CONV_2D or
    DEPTHWISE_CONV_2D) must be VALID, stride 1, undilated; EXPAND_DIMS, SQUEEZE and RESHAPE of
    unit axes may stand between the ops (a Conv1D as TensorFlow's converter writes it).
    Bit-exact: the batch-space ops only move values and pad with the zero point, which the
    convolution's own padding contributes as nothing. The padding becomes SAME or VALID when the
    paddings and crops are exactly those, else a PAD before a VALID convolution; a chain needing
    negative padding (cropping the input) stays as it is and runs.
    """
    graph = graph.copy()
    for op in [op for op in graph.operators if op.kind is OpKind.SPACE_TO_BATCH_ND]:
        chain = _match(graph, op)
        axes = None if chain is None else _axes(graph, chain)
        if chain is not None and axes is not None:
            _fold(graph, chain, axes)
    return graph


def _match(graph: Graph, s2b: Operator) -> _Chain | None:
    x = graph.tensors[s2b.inputs[0]]
    start: tuple[Label, ...] = ("N", *range(len(x.shape) - 2), "C")
    before, conv, labels = _views(graph, s2b.outputs[0], start)
    read = before[-1][0].outputs[0] if before else s2b.outputs[0]
    if conv is None or labels is None or not _plain_conv(conv, read) or len(labels) != 4:
        return None
    spatial = (labels[1], labels[2])
    if labels[0] != "N" or labels[3] != "C" or not _ordered(spatial):
        return None
    after, b2s, end = _views(graph, conv.outputs[0], labels)
    if (b2s is None or b2s.kind is not OpKind.BATCH_TO_SPACE_ND or end != start
            or b2s.attrs.block_shape != s2b.attrs.block_shape
            or graph.tensors[s2b.outputs[0]].quant != x.quant):
        return None
    return _Chain(s2b, tuple(op for op, _ in before), conv, tuple(op for op, _ in after), b2s,
                  spatial, {op.outputs[0]: out for op, out in (*before, *after)})


def _views(graph: Graph, name: str, labels: tuple[Label, ...] | None
           ) -> tuple[list[tuple[Operator, tuple[Label, ...]]], Operator | None,
                      tuple[Label, ...] | None]:
    """The views reading `name` one after the other, each with its output's labels.

    Also the op after them and the labels of its input (None once a view drops a labelled axis).
    """
    views = []
    op = sole_consumer(graph, name)
    while op is not None and op.kind in _VIEWS and labels is not None:
        labels = _relabel(graph, op, labels)
        if labels is not None:
            views.append((op, labels))
        op = sole_consumer(graph, op.outputs[0])
    return views, op, labels


def _relabel(graph: Graph, view: Operator, labels: tuple[Label, ...]
             ) -> tuple[Label, ...] | None:
    """The labels after view `view`, or None when it drops or merges a labelled axis."""
    if view.kind is OpKind.RESHAPE:
        return _reshape_labels(graph.tensors[view.inputs[0]].shape,
                               graph.tensors[view.outputs[0]].shape, labels)
    if view.kind is OpKind.EXPAND_DIMS:
        axis = view.attrs.axis
        return (*labels[:axis], None, *labels[axis:])
    axes = set(view.attrs.axes)
    if not axes or any(labels[axis] is not None for axis in axes):
        return None  # a SQUEEZE of every unit axis might take others after the fold
    return tuple(label for axis, label in enumerate(labels) if axis not in axes)


def _reshape_labels(source: tuple[int, ...], target: tuple[int, ...],
                    labels: tuple[Label, ...]) -> tuple[Label, ...] | None:
    """The labels after a RESHAPE that only inserts or removes unit axes, or None.

    The batch and the channels must stay first and last; a labelled axis of size 1 is refused
    (which unit axis it became would be a guess).
    """
    if (len(source) < 2 or len(target) < 2 or source[0] != target[0]
            or source[-1] != target[-1] or labels[0] != "N" or labels[-1] != "C"):
        return None
    middle = list(zip(source[1:-1], labels[1:-1], strict=True))
    if any(d == 1 and label is not None for d, label in middle):
        return None
    kept = [(d, label) for d, label in middle if d != 1]
    if [d for d, _ in kept] != [d for d in target[1:-1] if d != 1]:
        return None
    moved = iter(label for _, label in kept)
    return ("N", *(None if d == 1 else next(moved) for d in target[1:-1]), "C")


def _plain_conv(op: Operator, name: str) -> bool:
    """A VALID, stride-1, undilated CONV_2D or DEPTHWISE_CONV_2D reading `name`."""
    if op.kind not in _CONVS or op.inputs[0] != name:
        return False
    a = op.attrs
    return (a.padding is Padding.VALID and a.stride_h == a.stride_w == 1
            and a.dilation_h == a.dilation_w == 1)


def _ordered(spatial: tuple[Label, Label]) -> bool:
    """The convolution's axes are the spatial axes in order, or unit axes."""
    axes = [label for label in spatial if label is not None]
    return all(isinstance(label, int) for label in axes) and axes == sorted(axes)


def _axes(graph: Graph, chain: _Chain) -> tuple[_Axis, _Axis] | None:
    """Dilation and padding of the folded convolution's height and width, or None if negative.

    Along a spatial axis of length L with block d, paddings (p0, p1) and crops (c0, c1), output
    o of the chain is sum_t w[t] x[o + c0 - p0 + t d]: a convolution dilated by d with p0 - c0
    padding before and enough after for the chain's output length.
    """
    s2b, b2s = chain.s2b.attrs, chain.b2s.attrs
    x, y = graph.tensors[chain.s2b.inputs[0]].shape, graph.tensors[chain.b2s.outputs[0]].shape
    kernels = graph.tensors[chain.conv.inputs[1]].shape[1:3]
    axes = []
    for label, kernel in zip(chain.spatial, kernels, strict=True):
        if label is None:
            axes.append(_Axis(1, 0, 0, kernel))
            continue
        d = s2b.block_shape[label]
        before = s2b.edges[label][0] - b2s.edges[label][0]
        after = y[1 + label] - x[1 + label] - before + (kernel - 1) * d
        if before < 0 or after < 0:
            return None
        axes.append(_Axis(d, before, after, kernel))
    return axes[0], axes[1]


def _padding(axes: tuple[_Axis, _Axis]) -> Padding | None:
    """SAME or VALID when `axes` pad exactly so, else None (a PAD is needed)."""
    if all(a.before == a.after == 0 for a in axes):
        return Padding.VALID
    same = all(a.before == (a.kernel - 1) * a.dilation // 2
               and a.before + a.after == (a.kernel - 1) * a.dilation for a in axes)
    return Padding.SAME if same else None


def _fold(graph: Graph, chain: _Chain, axes: tuple[_Axis, _Axis]) -> None:
    """Rewire x -> views -> dilated conv -> views -> the chain's output; drop the batch ops."""
    first = (*chain.before, chain.conv)[0]
    first.inputs = (chain.s2b.inputs[0], *first.inputs[1:])
    last = (chain.conv, *chain.after)[-1]
    padding = _padding(axes)
    chain.conv.attrs = replace(chain.conv.attrs, dilation_h=axes[0].dilation,
                               dilation_w=axes[1].dilation, padding=padding or Padding.VALID)
    graph.operators.remove(chain.s2b)
    graph.operators.remove(chain.b2s)
    for op in chain.before:
        _view_output(graph, op, chain.labels[op.outputs[0]], chain.s2b.inputs[0])
    if padding is None:
        _pad_before(graph, chain.conv, axes)
    output = chain.b2s.outputs[0]
    after = [(op, chain.labels[op.outputs[0]]) for op in chain.after]
    del graph.tensors[last.outputs[0]]
    last.outputs = (output,)
    _reshape_output(graph, chain.conv)
    for op, labels in after:
        _view_output(graph, op, labels, output)
    drop_unused_tensors(graph)


def _view_output(graph: Graph, view: Operator, labels: tuple[Label, ...], like: str) -> None:
    """Give a view's output its shape after the fold.

    Its axes are those of tensor `like` (x before the convolution, the chain's output after it)
    or unit axes, as `labels` say.
    """
    shape = graph.tensors[like].shape
    sizes = {"N": shape[0], "C": shape[-1], **{k: d for k, d in enumerate(shape[1:-1])}}
    target = tuple(1 if label is None else sizes[label] for label in labels)
    if view.kind is OpKind.RESHAPE:
        view.attrs = ReshapeAttrs(target)
    _reshape_output(graph, view)


def _reshape_output(graph: Graph, op: Operator) -> None:
    """Give `op`'s output the shape its new input implies."""
    name = op.outputs[0]
    graph.tensors[name] = replace(graph.tensors[name], shape=infer_output_shapes(graph, op)[0])


def _pad_before(graph: Graph, conv: Operator, axes: tuple[_Axis, _Axis]) -> None:
    """Insert a PAD (the input's zero point) of `axes`' padding before `conv`."""
    source = graph.tensors[conv.inputs[0]]
    name = unique_name(graph, f"{conv.name or source.name}_pad")
    attrs = PadAttrs(((0, 0), (axes[0].before, axes[0].after), (axes[1].before, axes[1].after),
                      (0, 0)))
    pad = Operator(OpKind.PAD, (source.name,), (name,), attrs, name)
    graph.tensors[name] = replace(source, name=name, shape=source.shape, data=None)
    graph.operators.insert(graph.operators.index(conv), pad)
    conv.inputs = (name, *conv.inputs[1:])
    _reshape_output(graph, pad)

