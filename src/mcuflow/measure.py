"""The instructions a patch stage costs, measured on QEMU against the same model unpatched."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.codegen.targets import RUNS_ON
from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board, load_boards
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.planning import Analysis, Build, analyze_graph
from mcuflow.toolchain.qemu import CortexMResult, verify_cortexm

CORTEX_M_ONLY = "measured on Cortex-M targets only (verify --target cortex-m4, for one)"


@dataclass(frozen=True)
class PatchOverhead:
    """A patch stage's predicted extra instructions and, on QEMU, the measured ones.

    `measured_overhead_pct` is 100 x (instructions_patched / instructions_unpatched - 1), each
    the mean instructions per inference on QEMU over the same random inputs; the unpatched
    plan (same input mode) runs on `unpatched_board`. `note` says why nothing was measured.
    """

    stage: str
    predicted_overhead_pct: float
    measured_overhead_pct: float | None = None
    instructions_patched: int | None = None
    instructions_unpatched: int | None = None
    unpatched_arena_bytes: int | None = None
    unpatched_board: str | None = None
    unpatched_bit_exact: bool | None = None
    note: str | None = None

    def line(self) -> str:
        """One line: measured against predicted, or why it was not measured."""
        predicted = f"{self.predicted_overhead_pct:+.1f} %"
        if self.measured_overhead_pct is None:
            return (f"patches: {self.stage}: predicted {predicted} instructions; the overhead "
                    f"is {self.note}")
        exact = "bit-exact" if self.unpatched_bit_exact else "MISMATCH"
        return (f"patches: measured {self.measured_overhead_pct:+.1f} % instructions (predicted "
                f"{predicted}): {self.instructions_patched:,} per inference patched, "
                f"{self.instructions_unpatched:,} unpatched (arena "
                f"{self.unpatched_arena_bytes:,} B on {self.unpatched_board}, {exact})")


def predicted_overhead(analysis: Analysis, note: str = CORTEX_M_ONLY) -> PatchOverhead | None:
    """The patch stage's predicted overhead, with why it is not measured (None: no stage)."""
    search = analysis.patches
    if analysis.plan.patch is None:
        return None
    return PatchOverhead(analysis.plan.patch.describe(), 100 * search.overhead(search.chosen),
                         note=note)


def measure_overhead(analysis: Analysis, build: Build, patched: CortexMResult, runs: int,
                     seed: int) -> PatchOverhead | None:
    """Run the model unpatched on QEMU as `patched` ran the patched plan; compare instructions.

    The unpatched plan is what --patches off plans (same target, same input mode); it runs on
    the board of `patched` when that board's SRAM holds its arena, else on the board of the
    same core with the most SRAM (unpatched_board). Same runs, same seed: same inputs.
    None without a patch stage.
    """
    found = predicted_overhead(analysis)
    if found is None:
        return None
    request = PatchRequest(enabled=False, streamed_input=bool(analysis.plan.streamed))
    unpatched = analyze_graph(analysis.graph, build, request)
    arena = unpatched.plan.arena_bytes
    board = unpatched_board(build.board, patched.target, arena)
    if board is None:
        return _note(found, f"not measured: no board of a {patched.target} holds the unpatched "
                            f"arena of {arena:,} B")
    try:
        result = verify_cortexm(analysis.graph, unpatched.plan, patched.target, board, runs, seed)
    except McuflowError as error:
        return _note(found, f"not measured: the unpatched plan did not run: {error.message}")
    return PatchOverhead(found.stage, found.predicted_overhead_pct,
                         100 * (patched.instructions / result.instructions - 1),
                         patched.instructions, result.instructions, arena, board.id,
                         result.bit_exact)


def _note(found: PatchOverhead, note: str) -> PatchOverhead:
    return PatchOverhead(found.stage, found.predicted_overhead_pct, note=note)


def unpatched_board(board: Board, target: str, arena: int) -> Board | None:
    """`board` when its SRAM holds `arena`, else the board running `target` with the most SRAM.

    None when no packaged board of that core holds the arena.
    """
    if arena <= board.sram_bytes:
        return board
    running = [b for b in load_boards().values()
               if target in (b.core.value, *RUNS_ON.get(b.core.value, ()))
               and b.sram_bytes >= arena]
    return max(running, key=lambda b: (b.sram_bytes, b.id), default=None)
