"""The Plan: execution order, in-place decisions, one static arena with an offset per buffer."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

from mcuflow.errors import McuflowError
from mcuflow.hw.board import MemoryTier
from mcuflow.hw.kernels import InPlace, inplace_ways
from mcuflow.hw.storage_io import TAG_BYTES
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.ir.registry import OpTable
from mcuflow.memory.patches import PatchChoice


class PlanError(McuflowError):
    """A memory plan that is inconsistent: overlapping live buffers, a buffer outside the arena."""


INPLACE_OF: OpTable[frozenset[InPlace]] = OpTable("in-place contract", entries={
    kind: inplace_ways(kind) for kind in OpKind})
"""The ways each op's generated kernels may share memory with their input (NONE always), from
the catalogue's records: the planner offers only these, and the emitters refuse any other."""


def kinds_running(way: InPlace) -> frozenset[OpKind]:
    """The op kinds whose kernels honour the in-place contract `way`."""
    return frozenset(kind for kind, ways in INPLACE_OF.items() if way in ways)


RUNS_NO_CODE = frozenset({InPlace.ALIAS, InPlace.CONCAT_SLICE})


class Tier(Enum):
    """Where a buffer lives; later work adds external tiers for out-of-core execution."""

    SRAM = "sram"
    STREAM = "stream"
    """A streamed graph input: never in memory whole; the model reads windows of it through
    the input reader (`--input streamed`)."""


@dataclass(frozen=True)
class Buffer:
    """One region of the arena: an activation tensor or an op's scratch buffer.

    `first_step` and `last_step` index `Plan.steps` (inclusive); a graph input is live from step 0
    and a graph output until the last step. Buffers with the same `storage` share memory by
    construction (RESHAPE aliases, slices of a concatenated tensor); `storage` is the name of the
    buffer that owns the memory (the buffer's own name when it owns it). A channel slice of a
    concatenation has a `pixel_step`: its NHWC pixels lie that many elements apart (0: dense),
    and `size` spans its first byte to its last.
    """

    name: str
    offset: int
    size: int
    first_step: int
    last_step: int
    is_scratch: bool = False
    tier: Tier = Tier.SRAM
    storage: str = ""
    pixel_step: int = 0

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.offset + self.size

    @property
    def owner(self) -> str:
        """Name of the storage this buffer belongs to."""
        return self.storage or self.name

    def overlaps_in_time(self, other: Buffer) -> bool:
        """True when both buffers are live at some common step."""
        return self.first_step <= other.last_step and other.first_step <= self.last_step

    def overlaps_in_space(self, other: Buffer) -> bool:
        """True when the byte ranges intersect."""
        return self.offset < other.end and other.offset < self.end


@dataclass(frozen=True)
class Step:
    """One operator execution: which op, how it shares memory, and its scratch buffer if any.

    `shares` names the input tensor whose memory the output reuses (ELEMENTWISE, OVERLAP,
    DEPTHWISE, ALIAS); it is None otherwise.
    """

    op_index: int
    inplace: InPlace = InPlace.NONE
    scratch: str | None = None
    shares: str | None = None


@dataclass(frozen=True)
class ExternalWeights:
    """Steps whose constants live in an external storage tier (out-of-core execution).

    The constant arrays of each listed step that no other step reads form one chunk of the
    external image (`weights_external.bin`). Before the step runs, the generated code reads its
    chunk into an SRAM staging buffer of two halves: the chunk of the next listed step is
    requested (mcuflow_storage_begin_read) while the current one computes.
    """

    tier: str
    """The TierKind value of the board tier holding the image (e.g. "sd_card")."""
    steps: frozenset[int]
    """Indices into Plan.steps."""
    encrypted: bool = False
    """The image is AES-128-CTR encrypted and each chunk CMAC-authenticated (the key comes
    from a user hook at run time, never from the plan)."""


@dataclass
class Plan:
    """Everything the interpreter and the code generator need to lay out memory."""

    graph: Graph
    steps: list[Step]
    buffers: dict[str, Buffer] = field(default_factory=dict)
    arena_bytes: int = 0
    lower_bound_bytes: int = 0
    alignment: int = 16
    step_bytes: list[int] = field(default_factory=list)
    """Bytes live during each step (tensors, scratch, in-place sharing counted once); their
    maximum is `lower_bound_bytes`."""
    patch: PatchChoice | None = None
    """The patch stage `graph` runs (a rewrite of the model's graph), or None."""
    streamed: frozenset[str] = frozenset()
    """Graph inputs read window by window through the input reader, not held in the arena."""
    split: frozenset[str] = frozenset()
    """Storages planned in pieces: bytes of them no member needs any more hold other buffers."""
    external: ExternalWeights | None = None
    """Steps whose constants are read from external storage (None: every constant in flash)."""
    spilled: frozenset[str] = frozenset()
    """Activations written to external storage by the step producing them (their buffer holds
    them during that step only) and read back by SLICEs (patches.PatchChoice.spilled)."""
    spill_tier: MemoryTier | None = None
    """The tier `spilled` goes to (None: a storage reached through the storage interface that
    needs no erase, as an SD card)."""
    spill_encrypted: bool = False
    """`spilled` rows are written AES-128-CTR encrypted, each followed in its tensor's tag
    region by an AES-CMAC tag of TAG_BYTES (--encrypt-external; codegen/external_crypto)."""

    @property
    def rewrites_model(self) -> bool:
        """True when `graph` is a rewrite of the model, whose ops are not the model's.

        A patch stage, a streamed input, or an out-of-core plan's layers split to fit its
        staging buffer (passes.split_channels).
        """
        return self.patch is not None or bool(self.streamed) or self.external is not None

    @cached_property
    def spill_offsets(self) -> dict[str, int]:
        """Each spilled tensor's byte offset in the spill area, in the order steps write them."""
        offsets: dict[str, int] = {}
        at = 0
        for step in self.steps:
            for name in self.graph.operators[step.op_index].outputs:
                if name in self.spilled:
                    offsets[name] = at
                    at += self.spill_stored(name)
        return offsets

    def spill_stored(self, name: str) -> int:
        """Bytes spilled tensor `name` takes in the spill area: its rows, then their tags."""
        tensor = self.graph.tensors[name]
        return tensor.nbytes + (TAG_BYTES * tensor.shape[1] if self.spill_encrypted else 0)

    @property
    def spill_bytes(self) -> int:
        """Bytes of the spill area: every spilled tensor and its tags, written once a run."""
        return sum(self.spill_stored(name) for name in self.spilled)

    def order_in(self, model: Graph) -> list[int] | None:
        """The execution order as op indices of `model` (None when the plan runs a rewrite)."""
        return None if self.rewrites_model else self.order

    @property
    def order(self) -> list[int]:
        """Operator indices in execution order."""
        return [step.op_index for step in self.steps]

    def offset_of(self, tensor_name: str) -> int:
        """Arena offset of an activation tensor."""
        return self.buffers[tensor_name].offset

    def delta(self, step: Step) -> int:
        """Input offset minus output offset of an in-place step (0 when nothing is shared)."""
        if step.shares is None:
            return 0
        output = self.graph.operators[step.op_index].outputs[0]
        return self.buffers[step.shares].offset - self.buffers[output].offset

    @property
    def peak_step(self) -> int | None:
        """Index of the first step that needs `lower_bound_bytes` (the layer setting the peak)."""
        if not self.step_bytes:
            return None
        return self.step_bytes.index(max(self.step_bytes))
