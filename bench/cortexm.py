"""Cortex-M benchmark: instructions per inference on QEMU beside TFLM + CMSIS-NN.

Per model: our generated C built for the target (arm-none-eabi-gcc -O2) and run on QEMU with
`-icount shift=0` (method in mcuflow.toolchain.qemu), bit-exact checked, beside the peer figures
quoted in issue 5, which the mcuflow team measured with TFLM + CMSIS-NN on the same QEMU board
(they cannot be re-run from this repository). Also: flash and RAM of the linked ELF, MACs per
instruction and the time at the board's clock.

Run: .venv/bin/python bench/cortexm.py [--target cortex-m4] [--board ID] [--json] [MODEL ...]
     .venv/bin/python bench/cortexm.py --coverage  # + the coverage models of issue 17
     .venv/bin/python bench/cortexm.py --profile [--target T] [MODEL ...]  # per layer

The cost model's kernel coefficients are fitted by bench/costmodel.py --fit, which also checks
`analyze`'s latency against these measurements.
Goals (issue 11): at most 0.45 x TFLM + CMSIS-NN instructions on every MLPerf Tiny model, and
on a core with the DSP extension no CONV_2D or FULLY_CONNECTED layer below 0.5 MACs per
instruction (every such layer has a SIMD kernel in CMSIS-NN); the second is checked on the
profiling build, whose per-layer counts exclude the markers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

from mcuflow.frontends.tflite_reader import load_int8_model
from mcuflow.hw.board import Board, get_board
from mcuflow.ir.graph import Graph
from mcuflow.passes.pipeline import INT8_PASSES, run_passes
from mcuflow.toolchain.qemu import (
    CortexMResult,
    bench_cortexm,
    cortex_m_core,
    default_board,
    plan_for,
    verify_cortexm,
)

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test-suite's model builders (tests.coverage_models)
SHARED = ["kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite",
          "ad01_int8.tflite", "str_ww_ref_model.tflite"]
GOAL = 0.45
LAYER_GOAL = 0.5  # MACs per instruction of every CONV_2D and FULLY_CONNECTED layer
MATRIX_OPS = ("CONV_2D", "FULLY_CONNECTED")

# The peer, measured by us (issue 5): TFLM commit 90b983c with the CMSIS-NN kernels it pins
# (4ab83cc), -O2 -mcpu=cortex-m4 -mfloat-abi=hard, QEMU mps2-an386, executed instructions of one
# warm inference (-icount shift=0, SysTick calibrated at 40 instructions per tick), and TFLM's
# arena_used_bytes() on the device. Model stem -> (TFLM + CMSIS-NN instructions, TFLM reference
# kernels instructions, arena used bytes).
PEER_TFLM_CORTEX_M4 = {
    "kws_ref_model": (7_697_907, 43_039_880, 22_820),
    "vww_96_int8": (24_101_960, 100_241_160, 100_708),
    "pretrainedResnet_quant": (29_861_680, 107_406_093, 54_996),
    "ad01_int8": (582_960, 1_952_360, 2_580),
}


def table_row(result: CortexMResult) -> dict[str, object]:
    """A result with the peer's figures and our ratio to them."""
    row: dict[str, object] = dataclasses.asdict(result)
    row.pop("layers")
    peer = PEER_TFLM_CORTEX_M4.get(result.model) if result.target == "cortex-m4" else None
    if peer is not None:
        row.update(peer_cmsis_nn=peer[0], peer_reference=peer[1], peer_arena_bytes=peer[2],
                   ratio=result.instructions / peer[0])
    return row


def _cell(row: dict[str, object], key: str, fmt: str) -> str:
    value = row.get(key)
    return "-" if value is None else format(value, fmt)


def print_table(rows: list[dict[str, object]]) -> None:
    """The benchmark as a fixed-width table with the goal verdict."""
    header = (f"{'model':<24}{'instructions':>14}{'TFLM+CMSIS':>13}{'ours/peer':>10}"
              f"{'TFLM ref':>13}{'MAC/instr':>10}{'flash B':>10}{'RAM B':>9}{'stack':>7}"
              f"{'arena':>8}{'TFLM arena':>11}{'ms':>9}  exact")
    print(header)
    for row in rows:
        print(f"{row['model']:<24}{row['instructions']:>14,}"
              f"{_cell(row, 'peer_cmsis_nn', ',d'):>13}{_cell(row, 'ratio', '.3f'):>10}"
              f"{_cell(row, 'peer_reference', ',d'):>13}{row['macs_per_instruction']:>10.3f}"
              f"{row['flash_bytes']:>10,}{row['ram_bytes']:>9,}{row['stack_bytes']:>7,}"
              f"{row['arena_bytes']:>8,}{_cell(row, 'peer_arena_bytes', ',d'):>11}"
              f"{row['estimated_ms']:>9.2f}  {row['bit_exact']}")
    ratios = [row["ratio"] for row in rows if "ratio" in row]
    if ratios:
        verdict = "met" if max(ratios) <= GOAL else "NOT met"
        print(f"goal ours <= {GOAL} x TFLM + CMSIS-NN on every MLPerf Tiny model: {verdict} "
              f"(worst {max(ratios):.3f})")


def coverage_rows(target: str, board: Board) -> list[CortexMResult]:
    """The models of the operator coverage (issue 17), built by the test-suite.

    Each runs the int8 rewrites a loaded .tflite gets (INT8_PASSES); no TFLM peer figures exist
    for them (bench/cmsis_nn.py compares their layers with CMSIS-NN's kernels).
    """
    from tests.coverage_models import COVERAGE_MODELS

    return [_built_row(build, target, board) for build in COVERAGE_MODELS.values()]


def _built_row(build: Callable[[], Graph], target: str, board: Board) -> CortexMResult:
    graph = run_passes(build(), INT8_PASSES)
    return verify_cortexm(graph, plan_for(graph, target), target, board, runs=2, seed=0)


def profiles(paths: list[Path], target: str, board: Board) -> list[CortexMResult]:
    """One profiled run per model: instructions per layer."""
    results = []
    for path in paths:
        graph = load_int8_model(path)
        results.append(verify_cortexm(graph, plan_for(graph, target), target, board, runs=1,
                                      profile=True))
    return results


def print_profile(results: list[CortexMResult]) -> None:
    """Instructions of every layer beside its MACs, per model."""
    for result in results:
        print(f"{result.model} on {result.target}: {result.instructions:,} instructions, "
              f"bit-exact {result.bit_exact}")
        print(f"{'layer':>5}  {'op':<20}{'MACs':>12}{'instructions':>14}{'instr/MAC':>10}  name")
        for layer in result.layers:
            per_mac = f"{layer.instructions / layer.macs:10.2f}" if layer.macs else f"{'-':>10}"
            print(f"{layer.index:>5}  {layer.op:<20}{layer.macs:>12,}{layer.instructions:>14,}"
                  f"{per_mac}  {layer.name[:40]}")


def print_layer_goal(results: list[CortexMResult]) -> None:
    """The per-layer goal's verdict, naming every CONV_2D / FULLY_CONNECTED layer below it."""
    slow = [(result.model, layer) for result in results for layer in result.layers
            if layer.op in MATRIX_OPS and layer.macs
            and layer.macs / max(layer.instructions, 1) < LAYER_GOAL]
    total = sum(layer.op in MATRIX_OPS for result in results for layer in result.layers)
    verdict = "met" if not slow else f"NOT met ({len(slow)} of {total} layers)"
    print(f"goal every CONV_2D / FULLY_CONNECTED layer >= {LAYER_GOAL} MACs/instruction: "
          f"{verdict}")
    for model, layer in slow:
        print(f"  {model} layer {layer.index} {layer.op}: {layer.macs:,} MACs, "
              f"{layer.macs / max(layer.instructions, 1):.2f} MACs/instruction, "
              f"{' + '.join(layer.kernels) or '-'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="extra .tflite models")
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--board", default=None, help="board id (default: one per target)")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    parser.add_argument("--profile", action="store_true", help="instructions per layer")
    parser.add_argument("--coverage", action="store_true",
                        help="also the models of the operator coverage (issue 17)")
    args = parser.parse_args()
    board = default_board(args.target) if args.board is None else get_board(args.board)
    paths = [MODELS / name for name in SHARED] + list(args.models)
    if args.profile:
        print_profile(profiles(list(args.models) or paths, args.target, board))
        return
    results = bench_cortexm(paths, args.target, board)
    if args.coverage:
        results += coverage_rows(args.target, board)
    rows = [table_row(result) for result in results]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.target} on QEMU, board {board.id} ({board.clock_hz / 1e6:g} MHz); peer "
          "figures: TFLM + CMSIS-NN measured by us on mps2-an386 (issue 5)")
    print_table(rows)
    if cortex_m_core(args.target).dsp:
        print_layer_goal(profiles(paths, args.target, board))


if __name__ == "__main__":
    main()
