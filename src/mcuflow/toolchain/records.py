"""input.bin and output.bin: the records a generated driver reads and writes, one per run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcuflow.codegen.render import TensorSpec
from mcuflow.errors import ToolchainError


def input_records(inputs: Sequence[np.ndarray]) -> bytes:
    """input.bin: per run, every input's raw bytes in input order (`inputs[i]` is (runs, ...))."""
    runs = len(inputs[0])
    if any(len(x) != runs for x in inputs):
        raise ValueError("every input needs the same number of runs")
    return b"".join(b"".join(np.ascontiguousarray(x[r]).tobytes() for x in inputs)
                    for r in range(runs))


def split_outputs(data: bytes, runs: int, specs: Sequence[TensorSpec],
                  writer: str = "the firmware") -> list[np.ndarray]:
    """The outputs in output.bin (`writer` wrote it), each stacked as (runs, *shape)."""
    record = sum(spec.nbytes for spec in specs)
    if len(data) != runs * record:
        raise ToolchainError(f"{writer} wrote {len(data)} bytes, expected {runs} records "
                             f"of {record}")
    rows = np.frombuffer(data, np.uint8).reshape(runs, record)
    outputs, start = [], 0
    for spec in specs:
        chunk = np.ascontiguousarray(rows[:, start:start + spec.nbytes])
        outputs.append(chunk.view(np.dtype(spec.dtype)).reshape(runs, *spec.shape))
        start += spec.nbytes
    return outputs
