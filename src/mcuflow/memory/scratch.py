"""Scratch memory of one step: its kernels' scratch (hw.kernels) plus decoded codebooks."""

from __future__ import annotations

from mcuflow.hw.kernels import InPlace, kernel_scratch
from mcuflow.ir.graph import Graph, Operator


def scratch_bytes(graph: Graph, op: Operator, inplace: InPlace, dsp: bool = False) -> int:
    """Bytes of scratch RAM the generated kernel of `op` needs when run as `inplace`.

    The most any kernel the step may call needs (the catalogue records' `scratch`); with `dsp`
    (a core with the Arm DSP extension), the DSP kernels included. Inputs stored as codebooks
    are decoded into the end of the scratch (see `decoded_bytes`).
    """
    kernel = kernel_scratch(graph, op, inplace, dsp)
    decoded = decoded_bytes(graph, op)
    return -(-kernel // DECODED_ALIGNMENT) * DECODED_ALIGNMENT + decoded if decoded else kernel


DECODED_ALIGNMENT = 16


def decoded_bytes(graph: Graph, op: Operator) -> int:
    """Bytes of the op's codebook-stored inputs once decoded (Tensor.codebook).

    The generated C decodes them right before the kernel runs into the last bytes of the step's
    scratch, after the kernel's own scratch rounded up to DECODED_ALIGNMENT.
    """
    return sum(graph.tensors[name].nbytes for name in dict.fromkeys(op.inputs)
               if graph.tensors[name].codebook is not None)
