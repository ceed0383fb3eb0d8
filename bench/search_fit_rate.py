"""Fit checks per second on one core: 1,000 architectures across the width x resolution grid.

Usage: PYTHONPATH=src python bench/search_fit_rate.py [--count N] [--dims 2|1] [--board ID]
The default board is bench/boards/tiny16k.toml (16 KB SRAM, 64 KB flash). Timing uses the
process's CPU time (one core); the architectures depend only on the seed. The rate is over
every candidate; the share of verdicts each path gave (a lower bound or the planner) follows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mcuflow.hw.board import get_board
from mcuflow.nas.fitcheck import FitCheck, limits_for
from mcuflow.nas.space import Arch, SearchSpace, default_space, sample
from mcuflow.planning import Build

TINY = Path(__file__).parent / "boards/tiny16k.toml"
NATIVE = {2: 8, 1: 40}


def grid_samples(space: SearchSpace, count: int, seed: int) -> list[Arch]:
    """`count` architectures, an equal share from every (width, resolution) cell."""
    rng = np.random.default_rng(seed)
    cells = [(w, r) for w in space.widths for r in space.resolutions]
    return [sample(space, rng, *cells[index % len(cells)]) for index in range(count)]


def main() -> None:
    """Print candidates per second (CPU time), and how many fit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--dims", type=int, choices=(1, 2), default=2)
    parser.add_argument("--board", default="tiny16k")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    board = get_board(args.board, TINY if args.board == "tiny16k" else None)
    build = Build(board)
    space = default_space(args.dims, NATIVE[args.dims])
    check = FitCheck(build, limits_for(build, None, None, None), space, 1, 10)
    archs = grid_samples(space, args.count, args.seed)
    start = time.process_time()
    fits = [check(arch) for arch in archs]
    seconds = time.process_time() - start
    print(f"{len(archs)} candidates ({len({a.key() for a in archs})} distinct), "
          f"{sum(f.fits for f in fits)} fit on {board.id}: {seconds:.2f} s CPU, "
          f"{len(archs) / seconds:.1f} candidates/s on one core")
    shares = ", ".join(f"{path} {count / len(archs):.0%}"
                       for path, count in sorted(check.decided.items()))
    print(f"verdicts by path: {shares}")


if __name__ == "__main__":
    main()
