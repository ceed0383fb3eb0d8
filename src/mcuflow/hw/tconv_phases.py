"""A strided TRANSPOSE_CONV as one ordinary stride-1 convolution per output phase.

Along one axis (stride s, padding P), output o = s j + r receives input i through filter tap k
exactly when o = s i + k - P, that is when k = (r + P) mod s + s t and i = j + (r + P) // s - t
for t = 0, 1, ... So the outputs of residue r (phase r) are a stride-1 convolution of the input
with the taps (r + P) mod s + s t in reverse order (T of them), padded by T - 1 - (r + P) // s
before the input's first element: no product by an inserted zero, no scattered sum.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.hw.layouts import (
    GATHER_ROWS,
    GATHER_VALUES,
    GATHER_WORDS,
    dsp_gather_mode,
    dsp_groups,
    dsp_padded_channels,
)
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import transpose_conv_pad


@dataclass(frozen=True)
class PhaseAxis:
    """One phase along one axis: its outputs `first`, `first` + stride, ... (`count` of them).

    Output j of the phase's convolution reads input j - `pad` + u through filter tap `taps[u]`.
    """

    first: int
    count: int
    taps: tuple[int, ...]
    pad: int


@dataclass(frozen=True)
class TconvPhase:
    """One output phase of a TRANSPOSE_CONV: its rows and columns."""

    rows: PhaseAxis
    columns: PhaseAxis


def phase_axes(out_size: int, kernel: int, stride: int, pad: int) -> tuple[PhaseAxis, ...] | None:
    """The phases along one axis, or None when one has no tap or would start inside the input.

    (A kernel shorter than the stride, or a padding beyond a phase's taps: its convolution's
    padding would be negative.)
    """
    axes = []
    for first in range(min(stride, out_size)):
        start, before = (first + pad) % stride, (first + pad) // stride
        taps = tuple(range(start, kernel, stride))[::-1]
        if len(taps) <= before:
            return None
        axes.append(PhaseAxis(first, -(-(out_size - first) // stride), taps,
                              len(taps) - 1 - before))
    return tuple(axes)


def transpose_conv_phases(graph: Graph, op: Operator) -> tuple[TconvPhase, ...] | None:
    """The output phases of a TRANSPOSE_CONV, rows outermost; None as phase_axes says.

    None too for a window of a patch stage (a crop): the phases are of the whole op's padding.
    """
    _, k_h, k_w, _ = graph.tensors[op.inputs[1]].shape
    attrs = op.attrs
    if attrs.crop is not None:
        return None
    out_h, out_w = attrs.output_hw
    rows = phase_axes(out_h, k_h, attrs.stride_h,
                      transpose_conv_pad(out_h, k_h, attrs.stride_h, attrs.padding))
    columns = phase_axes(out_w, k_w, attrs.stride_w,
                         transpose_conv_pad(out_w, k_w, attrs.stride_w, attrs.padding))
    if rows is None or columns is None:
        return None
    return tuple(TconvPhase(r, c) for r in rows for c in columns)


def phase_gather(in_c: int, phase: TconvPhase) -> int:
    """How mcuflow_conv2d_dsp_s8 gathers a phase's columns (MCUFLOW_DSP_GATHER_*).

    As for a CONV_2D, but a 1x1 phase gathered by words runs as window rows (the same words):
    its output is strided, which the kernel's loop over contiguous 1x1 pixels does not handle.
    Window rows only when they are whole words: the phases' packing has no zero weights for the
    bytes that would round a row up to words.
    """
    k_w = len(phase.columns.taps)
    mode = dsp_gather_mode(in_c, k_w, 1)
    one_tap = len(phase.rows.taps) == len(phase.columns.taps) == 1
    if mode == GATHER_WORDS and one_tap:
        return GATHER_ROWS
    return GATHER_VALUES if mode == GATHER_ROWS and k_w * in_c % 4 else mode


def phase_groups(in_c: int, phase: TconvPhase) -> int:
    """Groups of 4 columns of a phase's DSP matrix product."""
    taps = len(phase.rows.taps) * len(phase.columns.taps)
    return dsp_groups(taps * dsp_padded_channels(in_c))
