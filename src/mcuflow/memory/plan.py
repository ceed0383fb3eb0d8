"""The Plan: execution order, in-place decisions, one static arena with an offset per buffer."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from mcuflow.ir.graph import Graph


class InPlace(Enum):
    """How a step's output shares memory with its input."""

    NONE = "none"
    ALIAS = "alias"  # RESHAPE / SQUEEZE: output is the input's bytes, no code runs
    ELEMENTWISE = "elementwise"  # output written over an input whose last use this is
    DEPTHWISE = "depthwise"  # TinyEngine: channel-by-channel through a one-channel temporary
    CONCAT_SLICE = "concat_slice"  # producer writes straight into its slice of a concat output


class Tier(Enum):
    """Where a buffer lives; later work adds external tiers for out-of-core execution."""

    SRAM = "sram"


@dataclass(frozen=True)
class Buffer:
    """One region of the arena: an activation tensor or an op's scratch buffer.

    `first_step` and `last_step` index `Plan.steps` (inclusive); a graph input is live from step 0
    and a graph output until the last step.
    """

    name: str
    offset: int
    size: int
    first_step: int
    last_step: int
    is_scratch: bool = False
    tier: Tier = Tier.SRAM

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.offset + self.size

    def overlaps_in_time(self, other: Buffer) -> bool:
        """True when both buffers are live at some common step."""
        return self.first_step <= other.last_step and other.first_step <= self.last_step

    def overlaps_in_space(self, other: Buffer) -> bool:
        """True when the byte ranges intersect."""
        return self.offset < other.end and other.offset < self.end


@dataclass(frozen=True)
class Step:
    """One operator execution: which op, how it shares memory, and its scratch buffer if any."""

    op_index: int
    inplace: InPlace = InPlace.NONE
    scratch: str | None = None


@dataclass
class Plan:
    """Everything the interpreter and the code generator need to lay out memory."""

    graph: Graph
    steps: list[Step]
    buffers: dict[str, Buffer] = field(default_factory=dict)
    arena_bytes: int = 0
    lower_bound_bytes: int = 0
    alignment: int = 16

    @property
    def order(self) -> list[int]:
        """Operator indices in execution order."""
        return [step.op_index for step in self.steps]

    def offset_of(self, tensor_name: str) -> int:
        """Arena offset of an activation tensor."""
        return self.buffers[tensor_name].offset
