"""The long fuzz run: mutated TFLite and ONNX models through every stage, C generation included.

TFLite inputs: read, verify, constraints, plan, analyze, run, arena, codegen, and a sanitised
host build of every --build-every-th rendered project. ONNX inputs: import, passes, quantize,
constraints, plan, run. boards and arrays (tests/fuzz/readers.py): hostile board files and
calibration .npy/.npz files through their readers. Input i is of format FORMATS[i % len(FORMATS)].

    python bench/fuzz.py                      # 1,000,000 executions on every core
    python bench/fuzz.py --executions 50000 --workers 2 --campaign nightly-3 --formats onnx
    python bench/fuzz.py --executions 3000 --workers 1 --formats boards,arrays

Prints executions, distinct failures, peak memory and rate; saves each distinct failure's input
under --save (keep it in tests/fuzz/corpus/ once fixed). A worker stuck past the per-input
deadline is killed and restarted by the parent, and the input is recorded as a hang.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzz.campaign import BUILD_EVERY, FORMATS, Campaign  # noqa: E402
from tests.fuzz.harness import Limits, Status  # noqa: E402

REPORT_EVERY = 500


@dataclass
class Totals:
    """Counts over the whole run, kept by the parent."""

    executions: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    peak_rss_kib: int = 0


@dataclass(frozen=True)
class Settings:
    """What every worker needs: the campaign, its formats, limits and where failures go."""

    campaign: str
    formats: tuple[str, ...]
    limits: Limits
    build_every: int
    save: Path

    def format_of(self, index: int) -> str:
        """The format of input `index`."""
        return self.formats[index % len(self.formats)]


def worker(settings: Settings, indices: range, progress: mp.Value, results: mp.Queue) -> None:
    """Execute `indices`, reporting counts every REPORT_EVERY inputs and each failure at once."""
    counts: Counter[str] = Counter()
    campaigns = {name: Campaign(settings.campaign, FORMATS[name], settings.limits,
                                settings.build_every) for name in settings.formats}
    for index in indices:
        progress.value = index
        name = settings.format_of(index)
        fuzz_input, outcome = campaigns[name].run(index)
        counts[outcome.status.value] += 1
        counts[name] += 1
        counts["build"] += outcome.stage == "build"
        if outcome.status is Status.FAILURE:
            results.put(("failure", index, f"{name}:{outcome.signature}",
                         fuzz_input.description, outcome.trace))
            _save(settings, index, fuzz_input.data, fuzz_input.description, outcome.trace)
        if sum(counts.values()) >= REPORT_EVERY:
            results.put(("counts", dict(counts), _rss_kib()))
            counts.clear()
    results.put(("counts", dict(counts), _rss_kib()))
    results.put(("done",))


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _save(settings: Settings, index: int, data: bytes, description: str, trace: str) -> None:
    settings.save.mkdir(parents=True, exist_ok=True)
    stem = settings.save / f"{settings.campaign}-{index}"
    stem.with_suffix(FORMATS[settings.format_of(index)].suffix).write_bytes(data)
    stem.with_suffix(".txt").write_text(f"{description}\n\n{trace}")


@dataclass
class Worker:
    """A worker process, the inputs it still has to do, and when it last moved on."""

    process: mp.Process
    indices: range
    progress: mp.Value
    last_index: int = -1
    last_move: float = field(default_factory=time.monotonic)


def _start(settings: Settings, indices: range, results: mp.Queue) -> Worker:
    progress = mp.Value("q", -1)
    process = mp.Process(target=worker, args=(settings, indices, progress, results), daemon=True)
    process.start()
    return Worker(process, indices, progress)


def _watch(workers: list[Worker], settings: Settings, results: mp.Queue,
          totals: Totals) -> None:
    """Replace a worker that died or sat on one input past the deadline; record the input."""
    now = time.monotonic()
    for slot, w in enumerate(workers):
        index, alive = w.progress.value, w.process.is_alive()
        if alive and index != w.last_index:
            w.last_index, w.last_move = index, now
            continue
        crashed = not alive and w.process.exitcode != 0
        stuck = alive and now - w.last_move >= 3 * settings.limits.build_timeout_s
        if not (crashed or stuck):
            continue
        if stuck:
            w.process.kill()
            w.process.join()
        kind = "hang" if stuck else f"crash (exit code {w.process.exitcode})"
        fuzz_input = FORMATS[settings.format_of(index)].make_input(settings.campaign, index)
        _save(settings, index, fuzz_input.data, fuzz_input.description, kind)
        print(f"NEW FAILURE {kind} on input {index}: {fuzz_input.description}", flush=True)
        totals.failures[f"{kind}:{settings.campaign}/{index}"] = fuzz_input.description
        totals.statuses["failure"] += 1
        totals.executions += 1
        rest = range(index + w.indices.step, w.indices.stop, w.indices.step)
        workers[slot] = _start(settings, rest, results)


def _drain(results: mp.Queue, totals: Totals) -> int:
    """Account every message waiting; return how many workers said they were done."""
    done = 0
    while True:
        try:
            message = results.get(timeout=1.0)
        except queue.Empty:
            return done
        if message[0] == "counts":
            totals.statuses.update(message[1])
            totals.executions += sum(message[1].get(status.value, 0) for status in Status)
            totals.peak_rss_kib = max(totals.peak_rss_kib, message[2])
        elif message[0] == "failure":
            _, index, signature, description, trace = message
            if signature not in totals.failures:
                totals.failures[signature] = description
                print(f"NEW FAILURE {signature} (input {index}: {description})\n{trace}",
                      flush=True)
        else:
            done += 1


def _line(totals: Totals, started: float) -> str:
    elapsed = time.monotonic() - started
    rate = totals.executions / elapsed if elapsed else 0.0
    formats = ", ".join(f"{name} {totals.statuses[name]:,}" for name in FORMATS
                        if totals.statuses[name])
    return (f"{totals.executions:,} executions in {elapsed:,.0f} s ({rate:,.0f}/s); {formats}; "
            f"accepted {totals.statuses['accepted']:,} ({totals.statuses['build']:,} built and "
            f"run), rejected {totals.statuses['rejected']:,}, "
            f"failures {totals.statuses['failure']:,} ({len(totals.failures)} distinct); "
            f"peak memory of a worker {totals.peak_rss_kib / 1024:,.0f} MiB")


def main() -> int:
    """Run the campaign; exit code 1 when anything failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=mp.cpu_count())
    parser.add_argument("--campaign", default="bench")
    parser.add_argument("--start", type=int, default=0, help="first input index")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per input")
    parser.add_argument("--formats", default="tflite,onnx",
                        help=f"comma-separated: {', '.join(FORMATS)}")
    parser.add_argument("--build-every", type=int, default=BUILD_EVERY,
                        help="build and run one in this many rendered projects (0: never)")
    parser.add_argument("--save", type=Path, default=Path("/tmp/mcuflow-fuzz-failures"))
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds")
    args = parser.parse_args()
    formats = tuple(args.formats.split(","))
    unknown = set(formats) - set(FORMATS)
    if unknown:
        parser.error(f"unknown formats {sorted(unknown)}; choose from {sorted(FORMATS)}")
    settings = Settings(args.campaign, formats, Limits(timeout_s=args.timeout), args.build_every,
                        args.save)
    results: mp.Queue = mp.Queue()
    stop = args.start + args.executions
    workers = [_start(settings, range(args.start + k, stop, args.workers), results)
               for k in range(args.workers)]
    totals, started, reported, finished = Totals(), time.monotonic(), time.monotonic(), 0
    while finished < len(workers):
        finished += _drain(results, totals)
        _watch(workers, settings, results, totals)
        if time.monotonic() - reported >= args.report_every:
            print(_line(totals, started), flush=True)
            reported = time.monotonic()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    totals.peak_rss_kib = max(totals.peak_rss_kib, children)
    print(_line(totals, started))
    for signature, description in sorted(totals.failures.items()):
        print(f"  {signature}  <- {description}")
    print(f"zero crashes, hangs or untyped exceptions: {not totals.failures}")
    return 1 if totals.failures else 0


if __name__ == "__main__":
    sys.exit(main())
