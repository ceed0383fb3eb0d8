"""Patch-based inference: the graph's first layers rewritten to run patch by patch, bit-exact.

A stage is a prefix of the graph that reads one image input and hands one tensor (its end) to
the rest. Split the end into a grid of tiles; each tile's receptive field, traced back layer by
layer, is the window of every stage tensor that patch needs (MCUNetV2, Lin et al. 2021). The
rewrite replaces the stage with one copy of each layer per patch, on windows: each copy pads
with explicit per-side counts so that it reads exactly the taps the whole-tensor layer reads,
and SLICE and CONCATENATION ops cut windows and assemble the end. TRANSPOSE_CONV, the resizes
and DEPTH_TO_SPACE, whose index arithmetic is no plain window, carry a Crop instead: the whole
op's arithmetic shifted to the windows (SPACE_TO_DEPTH's windows are whole blocks). The
rewritten graph is an ordinary graph: the planner, the reference interpreter and the code
generator run it as they run any other, so the patched C is checked to the bit like the rest.

Two modes. RECOMPUTE: every patch of an R x C grid computes its whole window, so neighbouring
patches recompute their overlapping halos. CACHED: the source's rows arrive in steps and every
op computes, in full-width rows, what the rows arrived so far allow, keeping the rows later
steps still read in a line buffer (StreamNet, fused-tile execution): nothing is computed twice;
the halo rows are copied instead (stream_steps).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import takewhile

import numpy as np

from mcuflow.errors import McuflowError
from mcuflow.hw.storage_io import TAG_BYTES, SpillTraffic
from mcuflow.ir.crop import Crop
from mcuflow.ir.enums import ExplicitPadding, IdentityEnum, along
from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import (
    ConcatenationAttrs,
    OpKind,
    PadAttrs,
    SliceAttrs,
    transpose_conv_pad,
    transpose_conv_sources,
)
from mcuflow.ir.resize import nearest_indices
from mcuflow.ir.resize_bilinear import bilinear_axis
from mcuflow.ir.shapes import conv_padding
from mcuflow.ir.verify import verify_graph
from mcuflow.passes.common import unique_name

Region = tuple[int, int, int, int]
"""Rows [y0, y1) and columns [x0, x1) of an NHWC tensor."""

MAX_GRID = 8
"""Most patches along each axis of a RECOMPUTE grid (MCUNetV2 uses up to 4 x 4)."""
CACHED_STEPS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
"""Step counts the search weighs for the CACHED mode, up to one per source row (more steps:
smaller buffers, more calls)."""


class PatchMode(IdentityEnum):
    """How neighbouring patches share the rows and columns both need."""

    RECOMPUTE = "recompute"
    CACHED = "cached"


@dataclass(frozen=True)
class PatchChoice:
    """A patch stage: the tensor ending it, the grid of its tiles and the mode.

    RECOMPUTE splits the end into `rows` x `cols` tiles; CACHED (`cols` 1) takes the source's
    rows in `rows` steps (stream_steps).
    """

    end: str
    rows: int
    cols: int
    mode: PatchMode
    spilled: tuple[str, ...] = ()
    """Stage tensors (CACHED only) whose rows are written to external storage as they are
    computed, not kept in a line buffer: their readers read the rows they need back."""

    def grid(self) -> str:
        """E.g. '4x4 patches', '32 row steps (cached)' or '128 row steps (cached, 3 spilled)'."""
        if self.mode is PatchMode.CACHED:
            spilled = f", {len(self.spilled)} spilled" if self.spilled else ""
            return f"{self.rows} row steps (cached{spilled})"
        return f"{self.rows}x{self.cols} patches"

    def describe(self) -> str:
        """E.g. "4x4 patches up to 'conv_7'" or "32 row steps (cached) up to 'conv_7'"."""
        return f"{self.grid()} up to '{self.end}'"


@dataclass(frozen=True)
class Stage:
    """A prefix of the graph (op indices in order) reading `source` and handing on `end`."""

    ops: tuple[int, ...]
    source: str
    end: str


_WINDOW_KINDS = frozenset({OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.AVERAGE_POOL_2D,
                           OpKind.MAX_POOL_2D, OpKind.PAD})
"""Ops whose output pixel reads a window of the input; a PAD is a 1x1 window with padding."""
_POINT_KINDS = frozenset({OpKind.RELU, OpKind.RELU6, OpKind.LEAKY_RELU, OpKind.LOGISTIC,
                          OpKind.TANH, OpKind.HARD_SWISH, OpKind.ADD, OpKind.SUB, OpKind.MUL,
                          OpKind.MAXIMUM, OpKind.MINIMUM, OpKind.QUANTIZE, OpKind.ABS,
                          OpKind.PRELU, OpKind.SQUARED_DIFFERENCE, OpKind.L2_NORMALIZATION,
                          OpKind.LOG_SOFTMAX})
"""Ops whose output pixel depends on the same pixel of each activation input only (the last
two normalise along channels)."""
_REMAP_KINDS = frozenset({OpKind.TRANSPOSE_CONV, OpKind.RESIZE_NEAREST_NEIGHBOR,
                          OpKind.RESIZE_BILINEAR, OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH})
"""Ops whose output row (column) reads the input rows (columns) their index arithmetic picks:
the rows a TRANSPOSE_CONV scatters into it, a resize's source rows, a block op's block."""


def _is_image(graph: Graph, name: str) -> bool:
    shape = graph.tensors[name].shape
    return len(shape) == 4 and shape[0] == 1


def _is_local(graph: Graph, op: Operator) -> bool:
    """True when `op` may run on windows: spatially local, one-image NHWC, int8."""
    if not all(_is_image(graph, n) for n in op.outputs) or len(op.outputs) != 1:
        return False
    activations = [n for n in op.inputs if not graph.tensors[n].is_constant]
    if not activations or not all(_is_image(graph, n) for n in activations):
        return False
    if op.kind is OpKind.PAD:
        paddings = op.attrs.paddings
        return (activations == [op.inputs[0]] and len(paddings) == 4
                and paddings[0] == paddings[3] == (0, 0))
    if op.kind in _WINDOW_KINDS:
        return activations == [op.inputs[0]]
    if op.kind in _REMAP_KINDS:
        return (activations == [op.inputs[0]] and op.attrs.crop is None
                and _Remap.of(graph, op).reaches_every_output())
    out_shape = graph.tensors[op.outputs[0]].shape
    if op.kind is OpKind.CONCATENATION:
        return op.attrs.axis == 3 and len(activations) == len(op.inputs)
    if op.kind not in _POINT_KINDS:
        return False
    if any(graph.tensors[n].shape[1:3] != out_shape[1:3] for n in activations):
        return False
    return all(_spatially_constant(graph.tensors[n].shape) for n in op.inputs
               if graph.tensors[n].is_constant)


def _spatially_constant(shape: tuple[int, ...]) -> bool:
    """True when a broadcast constant of `shape` is the same at every pixel."""
    padded = (1,) * (4 - len(shape)) + tuple(shape)
    return len(padded) == 4 and padded[1] == padded[2] == 1


def find_stages(graph: Graph) -> list[Stage]:
    """Every prefix of the graph's op order that can run patch by patch, shortest first."""
    stages: list[Stage] = []
    uses = graph.uses()
    produced: list[str] = []
    sources: set[str] = set()
    for index, op in enumerate(graph.operators):
        if not _is_local(graph, op):
            break
        sources |= {n for n in op.inputs if n not in uses.producer
                    and not graph.tensors[n].is_constant}
        produced.extend(op.outputs)
        if len(sources) != 1 or any(n in graph.outputs for n in produced):
            break
        escaping = [n for n in produced
                    if any(c > index for c in uses.consumers.get(n, ()))]
        if escaping == [op.outputs[0]] and graph.tensors[escaping[0]].shape[1] > 1:
            stages.append(Stage(tuple(range(index + 1)), next(iter(sources)), escaping[0]))
    return stages


# --- receptive fields ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    """The geometry of a window op along both axes."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    before: tuple[int, int]
    size: tuple[int, int]

    @classmethod
    def of(cls, graph: Graph, op: Operator) -> _Window:
        attrs = op.attrs
        size = graph.tensors[op.inputs[0]].shape[1:3]
        if op.kind is OpKind.PAD:
            before = (attrs.paddings[1][0], attrs.paddings[2][0])
            return cls((1, 1), (1, 1), (1, 1), before, tuple(size))
        if op.kind in (OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D):
            kernel, dilation = (attrs.filter_h, attrs.filter_w), (1, 1)
        else:
            kernel = graph.tensors[op.inputs[1]].shape[1:3]
            dilation = (attrs.dilation_h, attrs.dilation_w)
        stride = (attrs.stride_h, attrs.stride_w)
        out = graph.tensors[op.outputs[0]].shape[1:3]
        before = tuple(conv_padding(size[a], kernel[a], stride[a], dilation[a], out[a],
                                    along(attrs.padding, a)) for a in (0, 1))
        return cls(tuple(kernel), stride, dilation, before, tuple(size))

    def _span(self, axis: int, lo: int, hi: int) -> tuple[int, int]:
        """Unclipped [first, last + 1) of the input rows (axis 0) or columns read."""
        first = lo * self.stride[axis] - self.before[axis]
        last = (hi - 1) * self.stride[axis] - self.before[axis] + (
            self.kernel[axis] - 1) * self.dilation[axis]
        return first, last + 1

    def reads(self, axis: int, lo: int, hi: int) -> tuple[int, int]:
        """The input rows (axis 0) or columns [first, end) output rows [lo, hi) read, clipped."""
        first, end = self._span(axis, lo, hi)
        return max(first, 0), min(end, self.size[axis])

    def reached(self, axis: int, lo: int, hi: int) -> tuple[int, int]:
        """Output rows (axis 0) or columns [lo, hi) grown until they read an input one.

        Only output lying wholly in a PAD's padding reads none: it grows towards the input.
        """
        while True:
            first, end = self.reads(axis, lo, hi)
            if first < end:
                return lo, hi
            if self._span(axis, lo, hi)[0] >= self.size[axis]:
                lo -= 1
            else:
                hi += 1

    def needs(self, axis: int, lo: int, hi: int) -> tuple[int, int]:
        """The input rows (axis 0) or columns [first, end) computing output [lo, hi) reads.

        Those the rows `reached` read: never empty, so a receptive field always holds them.
        """
        first, end = self.reads(axis, lo, hi)
        return (first, end) if first < end else self.reads(axis, *self.reached(axis, lo, hi))

    def reaching(self, out: Region) -> Region:
        """`out` grown, axis by axis, until it reads at least one input row and column."""
        return (*self.reached(0, out[0], out[1]), *self.reached(1, out[2], out[3]))

    def attrs_for(self, op: Operator, out: Region) -> object:
        """The attributes of window op `op` run on the window it reads to compute `out`."""
        sides = self.padding(out)
        if op.kind is OpKind.PAD:
            return PadAttrs(((0, 0), (sides.top, sides.bottom), (sides.left, sides.right),
                             (0, 0)))
        return dataclasses.replace(op.attrs, padding=sides)

    def padding(self, out: Region) -> ExplicitPadding:
        """Per-side padding that makes the op, run on the window it reads, compute `out`."""
        sides = []
        for axis in (0, 1):
            lo, hi = out[2 * axis], out[2 * axis + 1]
            (first, end), (a, b) = self._span(axis, lo, hi), self.reads(axis, lo, hi)
            sides += [a - first, end - b]
        return ExplicitPadding(*sides)


def _remap_axis(graph: Graph, op: Operator, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The input indices [first, end) each output index of remap op `op` reads along `axis`.

    As each kernel's index arithmetic: a TRANSPOSE_CONV's output oy receives input iy through
    tap ky when oy = iy * stride + ky - pad (LiteRT's padding); a resize reads the source
    indices of LiteRT's GetNearestNeighbor or ResizeBilinearInteger (both neighbours, whatever
    their weight); DEPTH_TO_SPACE reads oy / b, SPACE_TO_DEPTH rows oy * b to oy * b + b - 1.
    """
    size = graph.tensors[op.inputs[0]].shape[1 + axis]
    out = graph.tensors[op.outputs[0]].shape[1 + axis]
    index, attrs = np.arange(out, dtype=np.int64), op.attrs
    if op.kind is OpKind.TRANSPOSE_CONV:
        kernel = graph.tensors[op.inputs[1]].shape[1 + axis]
        stride = (attrs.stride_h, attrs.stride_w)[axis]
        pad = transpose_conv_pad(out, kernel, stride, attrs.padding)
        spans = np.array([transpose_conv_sources((o + pad, o + pad), kernel, stride, size)
                          for o in range(out)], dtype=np.int64).reshape(out, 2)
        return spans[:, 0], spans[:, 1]
    if op.kind is OpKind.RESIZE_NEAREST_NEIGHBOR:
        source = nearest_indices(size, out, attrs.align_corners, attrs.half_pixel_centers)
        return source.astype(np.int64), source.astype(np.int64) + 1
    if op.kind is OpKind.RESIZE_BILINEAR:
        pair = bilinear_axis(size, out, attrs.align_corners, attrs.half_pixel_centers)
        return (np.minimum(pair.lower, pair.upper).astype(np.int64),
                np.minimum(np.maximum(pair.lower, pair.upper).astype(np.int64) + 1, size))
    block = attrs.block_size
    if op.kind is OpKind.DEPTH_TO_SPACE:
        return index // block, index // block + 1
    return index * block, index * block + block


@dataclass(frozen=True)
class _Remap:
    """The input rows and columns [first, end) each output row and column of a remap op reads.

    Run on a window, the op keeps its index arithmetic and carries a Crop saying where its
    input and output windows sit (SPACE_TO_DEPTH needs none: its windows are whole blocks).
    """

    first: tuple[tuple[int, ...], tuple[int, ...]]
    end: tuple[tuple[int, ...], tuple[int, ...]]
    size: tuple[int, int]

    @classmethod
    def of(cls, graph: Graph, op: Operator) -> _Remap:
        rows, cols = _remap_axis(graph, op, 0), _remap_axis(graph, op, 1)
        size = graph.tensors[op.inputs[0]].shape[1:3]
        return cls((tuple(rows[0].tolist()), tuple(cols[0].tolist())),
                   (tuple(rows[1].tolist()), tuple(cols[1].tolist())), (size[0], size[1]))

    def reaches_every_output(self) -> bool:
        """True when every output row and column reads some input.

        A TRANSPOSE_CONV with a stride above its kernel, or a VALID one with a longer output,
        leaves rows of bias only: it does not run on windows.
        """
        return all(f < e for a in (0, 1) for f, e in zip(self.first[a], self.end[a],
                                                         strict=True))

    def reads(self, axis: int, lo: int, hi: int) -> tuple[int, int]:
        """The input rows (axis 0) or columns [first, end) output rows [lo, hi) read."""
        return min(self.first[axis][lo:hi]), max(self.end[axis][lo:hi])

    def needs(self, axis: int, lo: int, hi: int) -> tuple[int, int]:
        """The input rows (axis 0) or columns [first, end) output rows [lo, hi) take: reads."""
        return self.reads(axis, lo, hi)

    def ready(self, arrived: int) -> int:
        """How many output rows the first `arrived` input rows (not all of them) let compute."""
        return sum(1 for _ in takewhile(lambda end: end <= arrived, self.end[0]))

    def attrs_for(self, op: Operator, out: Region) -> object:
        """The attributes of remap op `op` run on the window it reads to compute `out`."""
        if op.kind is OpKind.SPACE_TO_DEPTH:
            return op.attrs
        first_row, first_col = self.reads(0, out[0], out[1])[0], self.reads(1, out[2], out[3])[0]
        crop = Crop(self.size, (first_row, first_col), (out[0], out[2]),
                    (out[1] - out[0], out[3] - out[2]))
        return dataclasses.replace(op.attrs, crop=crop)


Span = tuple[int, int]


class Tracer:
    """Receptive fields of one stage: rows and columns traced apart, each trace remembered."""

    def __init__(self, graph: Graph, stage: Stage) -> None:
        self.graph, self.stage = graph, stage
        self.ops = [graph.operators[i] for i in stage.ops]
        self.windows = {op.outputs[0]: _Window.of(graph, op) for op in self.ops
                        if op.kind in _WINDOW_KINDS}
        self.windows.update({op.outputs[0]: _Remap.of(graph, op) for op in self.ops
                             if op.kind in _REMAP_KINDS})
        self.readers: dict[str, list[Operator]] = {}
        for op in self.ops:
            for name in dict.fromkeys(op.inputs):
                self.readers.setdefault(name, []).append(op)
        # per op, last first: its output, its window (None: none) and its activation inputs
        self._backward = [(op.outputs[0], self.windows.get(op.outputs[0]),
                           [n for n in op.inputs if not graph.tensors[n].is_constant])
                          for op in reversed(self.ops)]
        self._traced: dict[tuple[int, int, int], dict[str, Span]] = {}
        self._steps: dict[int, list[list[Rows]]] = {}

    def reads(self, op: Operator, out: Region) -> Region:
        """The window of every activation input of stage op `op` that computing `out` reads.

        Output lying wholly in a PAD's padding is computed from the nearest input row or column
        (see _Window.reached).
        """
        window = self.windows.get(op.outputs[0])
        if window is None:
            return out
        return (*window.needs(0, out[0], out[1]), *window.needs(1, out[2], out[3]))

    def computed(self, op: Operator, out: Region) -> Region:
        """The output window a copy of stage op `op` computes to hold `out` (_Window.reached)."""
        window = self.windows.get(op.outputs[0])
        return window.reaching(out) if isinstance(window, _Window) else out

    def trace(self, axis: int, lo: int, hi: int) -> dict[str, Span]:
        """The rows (axis 0) or columns of every stage tensor the end's [lo, hi) needs."""
        key = (axis, lo, hi)
        if key not in self._traced:
            need: dict[str, Span] = {self.stage.end: (lo, hi)}
            for output, window, inputs in self._backward:
                out = need.get(output)
                if out is None:
                    continue
                span = window.needs(axis, *out) if window else out
                for name in inputs:
                    known = need.get(name)
                    need[name] = span if known is None else (min(known[0], span[0]),
                                                             max(known[1], span[1]))
            self._traced[key] = need
        return self._traced[key]

    def fields(self, tile: Region) -> dict[str, Region]:
        """The window of every stage tensor (and the source) the end's `tile` needs."""
        rows, cols = self.trace(0, tile[0], tile[1]), self.trace(1, tile[2], tile[3])
        return {name: (*rows[name], *cols[name]) for name in rows}


def cuts(size: int, parts: int) -> list[int]:
    """Boundaries splitting `size` into `parts` near-equal pieces (larger pieces first)."""
    return [size * k // parts for k in range(parts + 1)]


def tiles(graph: Graph, choice: PatchChoice) -> list[list[Region]]:
    """The end's tiles, by band (row of the grid) and column."""
    _, height, width, _ = graph.tensors[choice.end].shape
    rows, cols = cuts(height, choice.rows), cuts(width, choice.cols)
    return [[(rows[r], rows[r + 1], cols[c], cols[c + 1]) for c in range(choice.cols)]
            for r in range(choice.rows)]


# --- the rewrite --------------------------------------------------------------------------------


class PatchError(McuflowError):
    """A patch stage that cannot be built as asked."""


@dataclass
class _Piece:
    """A buffer holding `region` of a stage tensor."""

    name: str
    region: Region


@dataclass
class _Rewrite:
    """The patched graph under construction.

    `spilled` names the pieces written to external storage: only SLICEs read them (each a
    read of rows back from storage).
    """

    tracer: Tracer
    graph: Graph
    pieces: dict[str, list[_Piece]]
    spilled: set[str] = dataclasses.field(default_factory=set)

    @property
    def source(self) -> Graph:
        """The graph being rewritten."""
        return self.tracer.graph


    def window_tensor(self, of: str, region: Region, name: str) -> str:
        """Add a tensor holding `region` of stage tensor `of`; returns its name."""
        like = self.source.tensors[of]
        shape = (1, region[1] - region[0], region[3] - region[2], like.shape[3])
        name = unique_name(self.graph, name)
        self.graph.add_tensor(Tensor(name, shape, like.dtype, like.quant))
        return name

    def add(self, kind: OpKind, inputs: list[str], output: str, attrs: object,
            name: str) -> None:
        self.graph.operators.append(Operator(kind, tuple(inputs), (output,), attrs, name))

    def take(self, of: str, region: Region, tag: str) -> str:
        """A tensor holding exactly `region` of `of`: a piece, a slice of one, or a stack."""
        covering = [p for p in self.pieces[of] if _inside(region, p.region)]
        if covering:
            return self._cut(of, covering[0], region, tag)
        parts = [p for p in self.pieces[of] if p.region[0] < region[1] and region[0] < p.region[1]]
        parts.sort(key=lambda p: p.region[0])
        names = []
        for part in parts:
            lo, hi = max(region[0], part.region[0]), min(region[1], part.region[1])
            names.append(self._cut(of, part, (lo, hi, region[2], region[3]), tag))
        if not parts or parts[0].region[0] > region[0] or any(
                a.region[1] < b.region[0] for a, b in zip(parts, parts[1:], strict=False)):
            raise PatchError(f"no buffer holds rows {region[:2]} of '{of}'",
                             "this is a bug in the patch rewrite; please report it")
        stacked = self.window_tensor(of, region, f"{of}#{tag}:rows")
        self.add(OpKind.CONCATENATION, names, stacked, ConcatenationAttrs(axis=1),
                 f"{stacked}:stack")
        return stacked

    def copy(self, of: str, region: Region, tag: str) -> str:
        """A new buffer holding `region` of `of`, copied from the piece that holds it."""
        piece = next(p for p in self.pieces[of] if _inside(region, p.region))
        return self._cut(of, piece, region, tag, always=True)

    def _cut(self, of: str, piece: _Piece, region: Region, tag: str,
             always: bool = False) -> str:
        """A SLICE of `piece` holding `region` (the piece itself when it is that, unspilled).

        A spilled piece is read back in whole rows (the storage holds rows): a narrower window
        is then cut from those rows in the arena.
        """
        if piece.region == region and not always and piece.name not in self.spilled:
            return piece.name
        if piece.name in self.spilled and region[2:] != piece.region[2:]:
            rows = (region[0], region[1], *piece.region[2:])
            whole = self._cut(of, piece, rows, f"{tag}r", always=True)
            return self._cut(of, _Piece(whole, rows), region, tag, always=True)
        sliced = self.window_tensor(of, region, f"{of}#{tag}:cut")
        begin = (0, region[0] - piece.region[0], region[2] - piece.region[2], 0)
        size = self.graph.tensors[sliced].shape
        self.add(OpKind.SLICE, [piece.name], sliced, SliceAttrs(begin, size), f"{sliced}:slice")
        return sliced

    def run(self, op: Operator, out: Region, tag: str, spill: bool = False) -> str:
        """One copy of stage op `op` computing window `out` of its output; returns its tensor.

        A PAD tile lying wholly in the padding reads no input: it is computed with the nearest
        input row or column and cut out of that (the tensor returned). With `spill` the window
        computed is written to external storage.
        """
        grown = self.tracer.computed(op, out)
        self._compute(op, grown, tag)
        piece = self.pieces[op.outputs[0]][-1]
        if spill:
            self.spilled.add(piece.name)
        if grown != out:
            piece = _Piece(self._cut(op.outputs[0], piece, out, tag, always=True), out)
            self.pieces[op.outputs[0]].append(piece)
        return piece.name

    def _compute(self, op: Operator, out: Region, tag: str) -> None:
        region = self.tracer.reads(op, out)
        inputs = [n if self.source.tensors[n].is_constant else self.take(n, region, tag)
                  for n in op.inputs]
        attrs = op.attrs
        if op.kind in _WINDOW_KINDS:
            attrs = self.tracer.windows[op.outputs[0]].attrs_for(op, out)
        if op.kind in _REMAP_KINDS:
            attrs = self.tracer.windows[op.outputs[0]].attrs_for(op, out)
        output = self.window_tensor(op.outputs[0], out, f"{op.outputs[0]}#{tag}")
        self.add(op.kind, inputs, output, attrs, f"{op.name or op.outputs[0]}#{tag}")
        self.pieces.setdefault(op.outputs[0], []).append(_Piece(output, out))


def _inside(inner: Region, outer: Region) -> bool:
    return (outer[0] <= inner[0] and inner[1] <= outer[1] and outer[2] <= inner[2]
            and inner[3] <= outer[3])


def _full(graph: Graph, name: str) -> Region:
    _, height, width, _ = graph.tensors[name].shape
    return (0, height, 0, width)


def spill_traffic(graph: Graph, spilled: frozenset[str], encrypted: bool = False
                  ) -> SpillTraffic:
    """The writes of `spilled` tensors (one each) and the reads back (one per SLICE of one).

    `encrypted`: each write and read of rows is followed by one of their tags (TAG_BYTES a
    row), every byte written or read back is sealed (SpillTraffic.sealed_bytes), and the tags of
    the most rows written at once take a static buffer (SpillTraffic.buffer_bytes).
    """
    written = [graph.tensors[n] for op in graph.operators for n in op.outputs if n in spilled]
    read = [graph.tensors[op.outputs[0]] for op in graph.operators
            if op.kind is OpKind.SLICE and op.inputs[0] in spilled]
    if not encrypted:
        return SpillTraffic(tuple(t.nbytes for t in written), tuple(t.nbytes for t in read))
    return SpillTraffic(
        tuple(n for t in written for n in (t.nbytes, TAG_BYTES * t.shape[1])),
        tuple(n for t in read for n in (t.nbytes, TAG_BYTES * t.shape[1])),
        sum(t.nbytes for t in (*written, *read)),
        TAG_BYTES * max((t.shape[1] for t in written), default=0))


@dataclass(frozen=True)
class Patched:
    """A patch stage's rewrite: the new graph and the tensors of it held in external storage."""

    graph: Graph
    spilled: frozenset[str]


def patch_graph(graph: Graph, stage: Stage, choice: PatchChoice,
                tracer: Tracer | None = None) -> Graph:
    """`graph` with `stage` run patch by patch as `choice` says (a new graph; bit-exact).

    `tracer`, when given, is the Tracer of `graph` and `stage` (its traces are reused).
    """
    return patch_rewrite(graph, stage, choice, tracer).graph


def patch_rewrite(graph: Graph, stage: Stage, choice: PatchChoice,
                  tracer: Tracer | None = None) -> Patched:
    """patch_graph, with the pieces of the choice's spilled tensors (see PatchChoice.spilled)."""
    if choice.mode is PatchMode.CACHED and choice.cols != 1:
        raise PatchError(f"cached patches run in full-width bands, not {choice.cols} columns",
                         "pass a grid of R x 1 for the cached mode")
    if choice.spilled and (choice.mode is not PatchMode.CACHED or choice.end in choice.spilled):
        raise PatchError("only a cached stage spills, and never its end",
                         "spill the tensors inside a cached stage")
    kept = {n for i, op in enumerate(graph.operators) if i not in stage.ops
            for n in (*op.inputs, *op.outputs)} | set(graph.inputs) | set(graph.outputs)
    stage_ops = [graph.operators[i] for i in stage.ops]
    kept |= {n for op in stage_ops for n in op.inputs if graph.tensors[n].is_constant}
    patched = Graph(graph.name, {n: t for n, t in graph.tensors.items() if n in kept}, [],
                    list(graph.inputs), list(graph.outputs))
    source = [_Piece(stage.source, _full(graph, stage.source))]
    tracer = tracer if tracer is not None else Tracer(graph, stage)
    rewrite = _Rewrite(tracer, patched, {stage.source: source})
    if choice.mode is PatchMode.RECOMPUTE:
        ends = _recompute(rewrite, stage_ops, stage, tiles(graph, choice))
    else:
        ends = _cached(rewrite, stage, choice.rows, frozenset(choice.spilled))
    _assemble(rewrite, stage.end, ends)
    patched.operators.extend(op for i, op in enumerate(graph.operators) if i not in stage.ops)
    return Patched(patched, frozenset(rewrite.spilled))


def _recompute(rewrite: _Rewrite, ops: list[Operator], stage: Stage,
               grid: list[list[Region]]) -> list[list[str]]:
    """Each patch computes its whole receptive field; returns the end's tiles by band."""
    ends: list[list[str]] = []
    source = rewrite.pieces[stage.source]
    for r, band in enumerate(grid):
        ends.append([])
        for c, tile in enumerate(band):
            rewrite.pieces = {stage.source: source}
            need = rewrite.tracer.fields(tile)
            written = [rewrite.run(op, need[op.outputs[0]], f"p{r}.{c}") for op in ops]
            ends[-1].append(written[-1])  # the stage's last op writes its end
    return ends


@dataclass(frozen=True)
class Rows:
    """What one stage op computes at one step of a CACHED stage.

    Rows [start, end) of its output; its buffer then holds rows [keep_from, end), the rows
    before `start` copied from the previous buffer because the stage still reads them.
    """

    op: Operator
    start: int
    end: int
    keep_from: int


def stream_steps(tracer: Tracer, steps: int) -> list[list[Rows]]:
    """The rows each stage op computes at each step of a CACHED stage.

    The source's rows arrive in `steps` near-equal chunks; at each step every op computes all
    the rows whose inputs have arrived (a line-buffered pipeline), so the first steps compute
    few rows of the deep layers instead of their whole receptive field.
    """
    if steps in tracer._steps:
        return tracer._steps[steps]
    graph, source = tracer.graph, tracer.stage.source
    done: dict[str, int] = {}
    found: list[list[Rows]] = []
    for arrived in cuts(graph.tensors[source].shape[1], steps)[1:]:
        ready = {source: arrived}
        for op in tracer.ops:
            ready[op.outputs[0]] = _ready(tracer, op, ready)
        found.append([Rows(op, done.get(op.outputs[0], 0), ready[op.outputs[0]],
                           _keep_from(tracer, op.outputs[0], done))
                      for op in tracer.ops if ready[op.outputs[0]] > done.get(op.outputs[0], 0)])
        done.update({op.outputs[0]: ready[op.outputs[0]] for op in tracer.ops})
    tracer._steps[steps] = found
    return found


def _height(graph: Graph, name: str) -> int:
    return graph.tensors[name].shape[1]


def _ready(tracer: Tracer, op: Operator, ready: dict[str, int]) -> int:
    """How many rows of `op`'s output can be computed from the input rows `ready`."""
    graph = tracer.graph
    name = op.inputs[0]
    arrived = min(ready[n] for n in op.inputs if not graph.tensors[n].is_constant)
    height = _height(graph, op.outputs[0])
    window = tracer.windows.get(op.outputs[0])
    if window is None or arrived >= _height(graph, name) or arrived == 0:
        return min(arrived, height) if window is None or arrived == 0 else height
    if isinstance(window, _Remap):
        return window.ready(arrived)
    reach = (window.kernel[0] - 1) * window.dilation[0]
    return max(0, min(height, (arrived - 1 + window.before[0] - reach) // window.stride[0] + 1))


def _keep_from(tracer: Tracer, name: str, done: dict[str, int]) -> int:
    """The first row of stage tensor `name` its stage consumers have still to read."""
    first = done.get(name, 0)
    for op in tracer.readers.get(name, ()):
        out = op.outputs[0]
        start = done.get(out, 0)
        if start < _height(tracer.graph, out):
            first = min(first, tracer.reads(op, (start, start + 1, 0, 1))[0])
    return first


def _cached(rewrite: _Rewrite, stage: Stage, steps: int,
            spilled: frozenset[str] = frozenset()) -> list[list[str]]:
    """The steps of stream_steps; returns the end's pieces, one per step that computes some.

    Each step keeps one buffer per stage tensor. First the rows still to be read are copied
    from the previous buffer to the top of the new one, which frees the old; then the op writes
    the rows it computes below them (the buffer is a CONCATENATION the planner runs in place).
    Consumers read row ranges of it (SLICEs the planner makes views). A `spilled` tensor keeps
    no buffer: each step's rows are written to external storage, every piece stays there, and
    consumers read the rows they need back (SLICEs of the pieces, stacked when several).
    """
    ends: list[list[str]] = []
    for k, step in enumerate(stream_steps(rewrite.tracer, steps)):
        for rows in step:
            name = rows.op.outputs[0]
            width = rewrite.source.tensors[name].shape[2]
            spill = name in spilled
            carry = (rewrite.copy(name, (rows.keep_from, rows.start, 0, width), f"s{k}")
                     if rows.keep_from < rows.start and not spill else None)
            if not spill:
                rewrite.pieces[name] = []
            computed = rewrite.run(rows.op, (rows.start, rows.end, 0, width), f"s{k}", spill)
            if name == stage.end:
                ends.append([computed])
            elif carry is not None:
                region = (rows.keep_from, rows.end, 0, width)
                held = rewrite.window_tensor(name, region, f"{name}#s{k}:rows")
                rewrite.add(OpKind.CONCATENATION, [carry, computed], held,
                            ConcatenationAttrs(axis=1), f"{held}:stack")
                rewrite.pieces[name] = [_Piece(held, region)]
    return ends


def _assemble(rewrite: _Rewrite, end: str, ends: list[list[str]]) -> None:
    """Concatenate the end's tiles: columns of each band, then the bands, into `end`."""
    bands = []
    for r, row in enumerate(ends):
        if len(row) == 1:
            bands.append(row[0])
            continue
        name = end if len(ends) == 1 else unique_name(rewrite.graph, f"{end}#band{r}")
        if name != end:
            shape = rewrite.graph.tensors[row[0]].shape
            width = sum(rewrite.graph.tensors[n].shape[2] for n in row)
            like = rewrite.source.tensors[end]
            rewrite.graph.add_tensor(Tensor(name, (1, shape[1], width, shape[3]), like.dtype,
                                            like.quant))
        rewrite.add(OpKind.CONCATENATION, row, name, ConcatenationAttrs(axis=2), f"{name}:join")
        bands.append(name)
    if len(ends) > 1 or end not in bands:
        rewrite.add(OpKind.CONCATENATION, bands, end, ConcatenationAttrs(axis=1),
                    f"{end}:join")


def fetch_inputs(graph: Graph) -> Graph:
    """`graph` with every graph input read through SLICEs only, so that it can be streamed.

    The ops that read a whole input read a whole-input SLICE of it instead (a copy the input
    reader fills); windows already cut by SLICEs (a patch stage) stay as they are.
    """
    fetched = Graph(graph.name, dict(graph.tensors), [], list(graph.inputs), list(graph.outputs))
    renamed: dict[str, str] = {}
    for name in graph.inputs:
        readers = [op for op in graph.operators
                   if name in op.inputs and op.kind is not OpKind.SLICE]
        if readers:
            tensor = graph.tensors[name]
            renamed[name] = unique_name(fetched, f"{name}#fetch")
            fetched.add_tensor(Tensor(renamed[name], tensor.shape, tensor.dtype, tensor.quant))
            fetched.operators.append(Operator(
                OpKind.SLICE, (name,), (renamed[name],),
                SliceAttrs((0,) * len(tensor.shape), tensor.shape), f"{renamed[name]}:slice"))
    for op in graph.operators:
        inputs = tuple(n if op.kind is OpKind.SLICE else renamed.get(n, n) for n in op.inputs)
        fetched.operators.append(dataclasses.replace(op, inputs=inputs))
    verify_graph(fetched)
    return fetched


def choices(graph: Graph, stage: Stage) -> Iterator[PatchChoice]:
    """Every grid and mode the search weighs for `stage`."""
    _, height, width, _ = graph.tensors[stage.end].shape
    for rows in range(1, min(MAX_GRID, height) + 1):
        for cols in range(1, min(MAX_GRID, width) + 1):
            if rows * cols > 1:
                yield PatchChoice(stage.end, rows, cols, PatchMode.RECOMPUTE)
    source_rows = graph.tensors[stage.source].shape[1]
    for steps in sorted({*(s for s in CACHED_STEPS if s <= source_rows), source_rows}):
        yield PatchChoice(stage.end, steps, 1, PatchMode.CACHED)
