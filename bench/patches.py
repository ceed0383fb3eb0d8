"""Patch-based inference benchmark (issue 12): patched arena against TFLM's, measured on QEMU.

Per model (MobileNetV2 0.35/128, 0.35/160 and 0.5/176 with ImageNet heads, the shared VWW model
and a SqueezeNet-style graph), all measured in this run:
- TFLM's arena (total, input included), from the model written to .tflite and loaded by the
  tflite-micro package (bench/memory.py's tflm_arena);
- our unpatched arena (plan_memory, DSP scratch) and the patched one from plan_model with
  --patches auto --max-overhead 10 (the smallest peak within 10 % more predicted instructions),
  the stage chosen, the predicted overhead and plan_model's wall time;
- the instructions of one inference on QEMU Cortex-M4 (-icount, 2 random inputs, bit-exact
  checked) unpatched on nucleo-l4r5zi (640 KB SRAM) and patched on nucleo-f429zi (192 KB SRAM)
  when its arena fits, else nucleo-l4r5zi; the measured overhead; and the patched plan
  bit-exact on QEMU Cortex-M7 (nucleo-f767zi);
- the same with --input streamed (the image read window by window, not in the arena): its
  arena, and its run on QEMU Cortex-M4 (bit-exact).
Then the goals of issue 12, each PASS or FAIL from this run's numbers.

Run: .venv/bin/python bench/patches.py [--json] [--no-qemu] [--models NAME ...]
(a few minutes: every QEMU measurement builds the generated C; --no-qemu skips them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from mcuflow.errors import McuflowError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.board import get_board
from mcuflow.ir import zoo
from mcuflow.ir.graph import Graph
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory, plan_model
from mcuflow.toolchain.qemu import CortexMResult, verify_cortexm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import MODELS, tflm_arena  # noqa: E402

CORE = "cortex-m4"
MAX_OVERHEAD_PCT = 10.0
BIG_BOARD = "nucleo-l4r5zi"  # 640 KB SRAM: every unpatched plan links
SMALL_BOARD = "nucleo-f429zi"  # 192 KB SRAM: the patched plan, when its arena fits
M7_BOARD = "nucleo-f767zi"
RUNS = 2
PLAN_GOAL_S = 5.0

BUILDERS: dict[str, Callable[[], Graph]] = {
    "mobilenetv2-0.35-128": lambda: zoo.mobilenet_v2_like(128, 0.35, 1000),
    "mobilenetv2-0.35-160": lambda: zoo.mobilenet_v2_like(160, 0.35, 1000),
    "mobilenetv2-0.5-176": lambda: zoo.mobilenet_v2_like(176, 0.5, 1000),
    "vww_96_int8": lambda: read_tflite(MODELS / "vww_96_int8.tflite"),
    # 128 px: TFLM's arena (~190 KB) is of the order of the MobileNetV2 ones and the 192 KB board
    "squeezenet-128": lambda: zoo.squeezenet_like(128),
}
MOBILENETS = [name for name in BUILDERS if name.startswith("mobilenetv2")]


@dataclass
class Measured:
    """One QEMU run: where, how many instructions, bit-exact (or why it did not run)."""

    target: str
    board: str
    instructions: int | None
    bit_exact: bool
    error: str | None = None


@dataclass
class Row:
    model: str
    ops: int
    tflm_total: int
    unpatched: int
    patched: int
    stage: str
    predicted_overhead: float
    plan_s: float
    streamed: int
    streamed_stage: str
    m4_unpatched: Measured | None = None
    m4_patched: Measured | None = None
    m7_patched: Measured | None = None
    m4_streamed: Measured | None = None

    @property
    def vs_tflm(self) -> float:
        return self.patched / self.tflm_total

    @property
    def streamed_vs_tflm(self) -> float:
        return self.streamed / self.tflm_total

    @property
    def measured_overhead(self) -> float | None:
        before, after = self.m4_unpatched, self.m4_patched
        if before is None or after is None or not before.instructions or (
                after.instructions is None):
            return None
        return after.instructions / before.instructions - 1

    @property
    def exact(self) -> bool | None:
        """Bit-exact in every QEMU run, None when not measured."""
        runs = [self.m4_unpatched, self.m4_patched, self.m7_patched, self.m4_streamed]
        return None if None in runs else all(m.bit_exact for m in runs)

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"vs_tflm": self.vs_tflm,
                               "streamed_vs_tflm": self.streamed_vs_tflm,
                               "measured_overhead": self.measured_overhead}


def tflm_total(graph: Graph) -> int:
    """TFLM's total arena for `graph`, written to a temporary .tflite."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{graph.name}.tflite"
        path.write_bytes(write_tflite(graph))
        return tflm_arena(path)[0]


def plan_patched(graph: Graph, input_mode: str) -> tuple[Plan, str, float, float]:
    """The patched plan, its stage, its predicted overhead and plan_model's seconds."""
    request = PatchRequest.parse("auto", None, MAX_OVERHEAD_PCT, input_mode)
    start = time.perf_counter()
    patched, search = plan_model(graph, request, 1 << 30, CORE, dsp=True)
    elapsed = time.perf_counter() - start
    choice = search.chosen.choice
    stage = choice.describe() if choice is not None else "none"
    return patched, stage, search.overhead(search.chosen), elapsed


def run(graph: Graph, plan: Plan, target: str, board: str) -> Measured:
    """Instructions and bit-exactness of `plan` on QEMU; a build or link failure is recorded."""
    try:
        result: CortexMResult = verify_cortexm(graph, plan, target, board, runs=RUNS, seed=0)
    except McuflowError as error:
        return Measured(target, board, None, False, str(error).splitlines()[0])
    return Measured(target, board, result.instructions, result.bit_exact)


def run_patched_m4(graph: Graph, plan: Plan) -> Measured:
    """The patched plan on the 192 KB board when its arena fits and it links, else the big one."""
    if plan.arena_bytes <= get_board(SMALL_BOARD).sram_bytes:
        small = run(graph, plan, CORE, SMALL_BOARD)
        if small.error is None:
            return small
        print(f"  {SMALL_BOARD}: {small.error}; measuring on {BIG_BOARD}", file=sys.stderr)
    return run(graph, plan, CORE, BIG_BOARD)


def measure(name: str, qemu: bool) -> Row:
    graph = BUILDERS[name]()
    unpatched = plan_memory(graph, dsp=True)
    patched, stage, predicted, plan_s = plan_patched(graph, "arena")
    streamed, streamed_stage, _, _ = plan_patched(graph, "streamed")
    row = Row(name, len(graph.operators), tflm_total(graph), unpatched.arena_bytes,
              patched.arena_bytes, stage, predicted, plan_s, streamed.arena_bytes,
              streamed_stage)
    if qemu:
        row.m4_unpatched = run(graph, unpatched, CORE, BIG_BOARD)
        row.m4_patched = run_patched_m4(graph, patched)
        row.m7_patched = run(graph, patched, "cortex-m7", M7_BOARD)
        row.m4_streamed = run_patched_m4(graph, streamed)
    return row


# --- goals --------------------------------------------------------------------------------------


@dataclass
class Goal:
    text: str
    status: str  # PASS, FAIL, not measured, not run
    detail: str = ""


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _within(row: Row, ratio: float) -> bool:
    overhead = row.measured_overhead
    return row.vs_tflm <= ratio and overhead is not None and overhead <= MAX_OVERHEAD_PCT / 100


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f} %"


def _arena_goal(text: str, rows: list[Row], ratio: float, qemu: bool) -> Goal:
    detail = "; ".join(f"{r.model} {r.vs_tflm:.3f}x, {_pct(r.measured_overhead)}" for r in rows)
    if not rows:
        return Goal(text, "not run")
    if not qemu:
        return Goal(text, "not measured", detail)
    return Goal(text, _verdict(all(_within(r, ratio) for r in rows)), detail)


def _exact_goal(rows: list[Row], qemu: bool) -> Goal:
    text = "bit-exact on QEMU M4 and M7; runs under a 192 KB SRAM board's linker limits"
    if not rows:
        return Goal(text, "not run")
    if not qemu:
        return Goal(text, "not measured")
    inexact = [r.model for r in rows if not r.exact]
    big = [r.model for r in rows if r.m4_patched is None or r.m4_patched.board != SMALL_BOARD]
    detail = (f"not bit-exact: {', '.join(inexact) or 'none'}; patched plan not run on "
              f"{SMALL_BOARD}: {', '.join(big) or 'none'}")
    return Goal(text, _verdict(not inexact and not big), detail)


def goals(rows: list[Row], qemu: bool) -> list[Goal]:
    by_name = {r.model: r for r in rows}
    first = [by_name[n] for n in MOBILENETS[:1] if n in by_name]
    mobilenets = [by_name[n] for n in MOBILENETS if n in by_name]
    squeeze = [r for r in rows if r.model.startswith("squeezenet")]
    slowest = max(rows, key=lambda r: r.plan_s, default=None)
    found = [
        _arena_goal("MobileNetV2-0.35-128: <= 0.25x TFLM's arena (input in the arena) with "
                    "<= 10 % more instructions (measured)", first, 0.25, qemu),
        _arena_goal("every MobileNetV2 variant <= 0.30x TFLM's arena under the same overhead "
                    "limit", mobilenets, 0.30, qemu),
        _exact_goal(rows, qemu),
        Goal("planning with patches under 5 s per model",
             _verdict(slowest.plan_s < PLAN_GOAL_S) if slowest else "not run",
             f"slowest {slowest.model} {slowest.plan_s:.2f} s" if slowest else ""),
        Goal("SqueezeNet-style graph <= 0.6x TFLM's arena",
             _verdict(all(r.vs_tflm <= 0.6 for r in squeeze)) if squeeze else "not run",
             "; ".join(f"{r.model} {r.vs_tflm:.3f}x" for r in squeeze)),
    ]
    return found


# --- printing -----------------------------------------------------------------------------------


def _instr(measured: Measured | None) -> str:
    if measured is None or measured.instructions is None:
        return "n/a"
    return f"{measured.instructions:,}"


def _exact(measured: Measured | None) -> str:
    if measured is None:
        return "n/a"
    return "yes" if measured.bit_exact else ("no" if measured.error is None else "failed")


def memory_table(rows: list[Row]) -> list[str]:
    header = (f"{'model':<22}{'ops':>4}{'TFLM B':>10}{'unpatched':>11}{'patched':>10}"
              f"{'pat/TFLM':>9}{'pred ovh':>10}{'plan s':>8}{'streamed':>10}{'str/TFLM':>9}"
              "  stage")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.model:<22}{r.ops:>4}{r.tflm_total:>10,}{r.unpatched:>11,}"
                     f"{r.patched:>10,}{r.vs_tflm:>9.3f}{_pct(r.predicted_overhead):>10}"
                     f"{r.plan_s:>8.2f}{r.streamed:>10,}{r.streamed_vs_tflm:>9.3f}  {r.stage}"
                     f" (streamed: {r.streamed_stage})")
    return lines


def qemu_table(rows: list[Row]) -> list[str]:
    header = (f"{'model':<22}{'M4 unpatched':>14}{'exact':>6}{'M4 patched':>14}{'exact':>6}"
              f"  {'board':<15}{'meas ovh':>9}{'M7 exact':>9}{'M4 streamed':>13}{'exact':>6}")
    lines = [header, "-" * len(header)]
    for r in rows:
        board = r.m4_patched.board if r.m4_patched else "n/a"
        lines.append(f"{r.model:<22}{_instr(r.m4_unpatched):>14}{_exact(r.m4_unpatched):>6}"
                     f"{_instr(r.m4_patched):>14}{_exact(r.m4_patched):>6}  {board:<15}"
                     f"{_pct(r.measured_overhead):>9}{_exact(r.m7_patched):>9}"
                     f"{_instr(r.m4_streamed):>13}{_exact(r.m4_streamed):>6}")
    errors = [(r.model, m) for r in rows
              for m in (r.m4_unpatched, r.m4_patched, r.m7_patched, r.m4_streamed)
              if m is not None and m.error]
    lines += [f"  {model} on {m.target} / {m.board}: {m.error}" for model, m in errors]
    return lines


def report(rows: list[Row], found: list[Goal]) -> str:
    lines = [f"arenas in bytes; patched: plan_model --patches auto --max-overhead "
             f"{MAX_OVERHEAD_PCT:g} for {CORE} (DSP scratch), input in the arena; streamed: "
             "the same with --input streamed (the input image not in the arena)", ""]
    lines += memory_table(rows)
    lines += ["", f"QEMU, {RUNS} random inputs each: unpatched on {BIG_BOARD}, patched on "
              f"{SMALL_BOARD} when it fits (else {BIG_BOARD}), M7 on {M7_BOARD}", ""]
    lines += qemu_table(rows)
    lines += ["", "goals (issue 12):"]
    lines += [f"  {g.status:<12} {g.text}" + (f"\n               ({g.detail})" if g.detail else "")
              for g in found]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON rows and goals")
    parser.add_argument("--models", nargs="+", choices=list(BUILDERS), default=list(BUILDERS),
                        metavar="NAME", help=f"a subset of: {', '.join(BUILDERS)}")
    parser.add_argument("--no-qemu", action="store_true", help="skip the QEMU measurements")
    args = parser.parse_args()
    qemu = not args.no_qemu
    rows = []
    for name in args.models:
        print(f"{name} ...", file=sys.stderr, flush=True)
        rows.append(measure(name, qemu))
    found = goals(rows, qemu)
    if args.json:
        print(json.dumps({"rows": [r.as_dict() for r in rows],
                          "goals": [asdict(g) for g in found]}, indent=2))
    else:
        print(report(rows, found))
    return 1 if any(g.status == "FAIL" for g in found) else 0


if __name__ == "__main__":
    raise SystemExit(main())
