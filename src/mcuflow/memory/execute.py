"""Run a model inside one bytearray laid out by a Plan, with the kernels' real write order.

Every op reads its inputs from views of the arena and writes its output into it. Ops whose
output overlaps an input are executed as their generated kernels run: element by element,
pixel by pixel in raster order, or (DEPTHWISE in place) channel by channel through the scratch
buffer. A misplaced buffer therefore corrupts the result, and comparing with LiteRT catches it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

import mcuflow.ref.kernels  # noqa: F401  (registers every kernel)
from mcuflow.errors import McuflowError
from mcuflow.ir.graph import Graph, Operator
from mcuflow.memory.inplace import ELEMENTWISE_KINDS, STREAMING_KINDS, receptive_spans
from mcuflow.memory.plan import RUNS_NO_CODE, Buffer, InPlace, Plan, PlanError
from mcuflow.ref.interpreter import RunResult, initial_state
from mcuflow.ref.registry import prepare

_POISON = 0xA5
Kernel = Callable[[list[np.ndarray]], list[np.ndarray]]
"""A prepared reference kernel: input arrays in, output arrays out."""


def run_in_arena(plan: Plan, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray],
                 keep_intermediates: bool = False,
                 state: Mapping[str, np.ndarray] | None = None) -> RunResult:
    """Execute `plan.graph` in one arena of `plan.arena_bytes` bytes laid out by `plan`.

    Variable tensors (SVDF's, an LSTM's states) live outside the arena, as in the generated C:
    `state` holds their arrays, updated in place (by default their start values, for this one
    run). A spilled tensor is copied out of the arena when its step has written it, as the C
    writes it to external storage; its readers read that copy.
    """
    graph = plan.graph
    arena = np.full(plan.arena_bytes, _POISON, dtype=np.uint8)
    bound = _bind(graph, inputs)
    variables = dict(state) if state is not None else {
        name: initial_state(graph.tensors[name]) for name in graph.variables()}
    streamed = {name: value for name, value in bound.items() if name in plan.streamed}
    for name, value in bound.items():
        if name not in streamed:
            _view(arena, plan, name)[...] = value
    kept: dict[str, np.ndarray] = {}
    spilled: dict[str, np.ndarray] = {}
    for index, step in enumerate(plan.steps):
        op = graph.operators[step.op_index]
        if step.scratch is not None:
            _scratch(arena, plan.buffers[step.scratch])[:] = (index * 37 + 11) & 0xFF
        if step.inplace is InPlace.DEPTHWISE:
            _depthwise_in_place(arena, plan, op, step.scratch)
        elif step.inplace not in RUNS_NO_CODE:
            _run_op(arena, plan, op, {**streamed, **spilled, **variables})
        spilled.update({name: _view(arena, plan, name).copy() for name in op.outputs
                        if name in plan.spilled})
        if keep_intermediates:
            kept.update({name: _view(arena, plan, name).copy() for name in op.outputs})
    outputs = [_view(arena, plan, name).copy() for name in graph.outputs]
    return RunResult(outputs, kept)


def _bind(graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray],
          ) -> dict[str, np.ndarray]:
    """Inputs by graph input name, each checked against its tensor's shape and dtype."""
    if len(inputs) != len(graph.inputs):
        raise McuflowError(f"expected inputs {graph.inputs}, got {len(inputs)}",
                           "pass one array per graph input")
    values = (dict(inputs) if isinstance(inputs, Mapping)
              else dict(zip(graph.inputs, inputs, strict=True)))
    if set(values) != set(graph.inputs):
        raise McuflowError(f"expected inputs {graph.inputs}, got {len(inputs)}",
                           "pass one array per graph input")
    for name, value in values.items():
        tensor = graph.tensors[name]
        if np.shape(value) != tensor.shape or np.asarray(value).dtype != tensor.dtype.numpy:
            raise McuflowError(f"input {name!r} must be {tensor.dtype.value} {tensor.shape}",
                               "convert the input to the model's shape and dtype")
    return values


def _view(arena: np.ndarray, plan: Plan, name: str) -> np.ndarray:
    """The arena bytes of tensor `name`, as an array of its shape and dtype.

    A channel slice of a concatenation (Buffer.pixel_step) is a strided view.
    """
    tensor = plan.graph.tensors[name]
    buffer = plan.buffers[name]
    strides = None
    if buffer.pixel_step:
        _, height, width, _ = tensor.shape
        pixel = buffer.pixel_step * tensor.dtype.itemsize
        strides = (height * width * pixel, width * pixel, pixel, tensor.dtype.itemsize)
    return np.ndarray(tensor.shape, tensor.dtype.numpy, arena.data, buffer.offset, strides)


def _scratch(arena: np.ndarray, buffer: Buffer) -> np.ndarray:
    return arena[buffer.offset:buffer.end]


def _arguments(arena: np.ndarray, plan: Plan, op: Operator,
               streamed: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """The op's inputs as read now: arena copies for activations, data for constants.

    `streamed` graph inputs and variable tensors are never in the arena: the caller's arrays
    are read instead (a variable's array itself, which its op updates).
    """
    graph = plan.graph
    outside = streamed or {}
    return [graph.tensors[n].data if graph.tensors[n].is_constant
            else outside[n] if n in outside else _view(arena, plan, n).copy()
            for n in op.inputs]


def _overlapping_inputs(plan: Plan, op: Operator) -> list[str]:
    """Activation inputs sharing bytes with one of the op's outputs."""
    outs = [plan.buffers[name] for name in op.outputs]
    return [n for n in dict.fromkeys(op.inputs)
            if n in plan.buffers and n not in plan.streamed and n not in plan.spilled
            and any(plan.buffers[n].overlaps_in_space(out) for out in outs)]


def _run_op(arena: np.ndarray, plan: Plan, op: Operator,
            streamed: Mapping[str, np.ndarray]) -> None:
    kernel = prepare(plan.graph, op)
    shared = _overlapping_inputs(plan, op)
    if not shared:
        results = kernel(_arguments(arena, plan, op, streamed))
        for name, result in zip(op.outputs, results, strict=True):
            _view(arena, plan, name)[...] = result
        return
    if op.kind in ELEMENTWISE_KINDS:
        _stream(arena, plan, op, kernel, _element_units(plan, op, shared), own=False)
    elif op.kind in STREAMING_KINDS and shared == [op.inputs[0]]:
        _stream(arena, plan, op, kernel, _pixel_units(plan, op), own=True)
    else:
        raise PlanError(f"{op.kind.value} '{op.name}' writes over its input "
                        f"{shared[0]!r}, which its kernel cannot do")


Units = tuple[int, list[tuple[np.ndarray, np.ndarray]]]
"""(bytes written per unit, [(first byte, end byte) read per unit, one pair per shared input])."""


def _element_units(plan: Plan, op: Operator, shared: list[str]) -> Units:
    """Element i of the output reads element i (after broadcasting) of each input."""
    graph = plan.graph
    out = graph.tensors[op.outputs[0]]
    reads = []
    for name in shared:
        tensor = graph.tensors[name]
        index = np.arange(tensor.size).reshape(tensor.shape)
        flat = np.broadcast_to(index, out.shape).reshape(-1)
        first = plan.buffers[name].offset + flat * tensor.dtype.itemsize
        reads.append((first, first + tensor.dtype.itemsize))
    return out.dtype.itemsize, reads


def _pixel_units(plan: Plan, op: Operator) -> Units:
    """Pixel p of the output reads its receptive field in the input."""
    out = plan.graph.tensors[op.outputs[0]]
    first, end = receptive_spans(plan.graph, op)
    base = plan.buffers[op.inputs[0]].offset
    return out.shape[-1] * out.dtype.itemsize, [(base + first, base + end)]


def _stream(arena: np.ndarray, plan: Plan, op: Operator, kernel: Kernel, units: Units,
            own: bool) -> None:
    """Write the output unit by unit, each computed from the arena as the kernel finds it.

    `own` means a unit still reads its input while writing its own bytes (pixel kernels write
    channel after channel); otherwise a unit reads everything before it writes (element-wise).
    Runs of units whose reads no earlier write of the run touches are computed in one call.
    """
    unit_bytes, reads = units
    out_view = _view(arena, plan, op.outputs[0]).reshape(len(reads[0][0]), -1)
    start = plan.buffers[op.outputs[0]].offset
    count, first = len(reads[0][0]), 0
    while first < count:
        result = kernel(_arguments(arena, plan, op))[0].reshape(count, -1)
        index = np.arange(first, count)
        write_end = start + (index + (1 if own else 0)) * unit_bytes
        write_start = start + first * unit_bytes
        hit = np.zeros(count - first, dtype=bool)
        for lo, hi in reads:
            hit |= (lo[first:] < write_end) & (hi[first:] > write_start)
        stop = first + int(np.argmax(hit)) if hit.any() else count
        if stop == first:
            out_view[first] = result[first]
            result = kernel(_arguments(arena, plan, op))[0].reshape(count, -1)
            stop = first + 1
        out_view[first:stop] = result[first:stop]
        first = stop


def _depthwise_in_place(arena: np.ndarray, plan: Plan, op: Operator, scratch: str | None) -> None:
    """TinyEngine's in-place depthwise, channel by channel through the one-channel scratch.

    Output channel c depends on input channel c only, so it is computed from the arena as the
    kernel finds it when it reaches channel c, then copied over input channel c.
    """
    if scratch is None:
        raise PlanError(f"in-place DEPTHWISE_CONV_2D '{op.name}' has no scratch buffer")
    kernel = prepare(plan.graph, op)
    source = _view(arena, plan, op.inputs[0])
    out_view = _view(arena, plan, op.outputs[0])
    channel_bytes = out_view[..., 0].nbytes  # the scratch's head; decoded weights may follow
    temp = _scratch(arena, plan.buffers[scratch])[:channel_bytes].view(out_view.dtype)
    seen = source.copy()
    result = kernel(_arguments(arena, plan, op))[0]
    for channel in range(out_view.shape[-1]):
        if not np.array_equal(source[..., channel], seen[..., channel]):
            seen = source.copy()
            result = kernel(_arguments(arena, plan, op))[0]
        temp[:] = result[..., channel].reshape(-1)
        out_view[..., channel] = temp.reshape(out_view.shape[:-1])
