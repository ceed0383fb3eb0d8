"""Run the mcuflow CLI in a child process and measure what it cost: peak memory and wall time."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MAX_PEAK_BYTES = 1 << 30
"""The issue's budget: no hostile input under 10 MB makes a command use more than 1 GB..."""
MAX_SECONDS = 60.0
"""... or run more than 60 s."""
ADDRESS_LIMIT_BYTES = 8 << 30
"""A safety net so a regression fails the test instead of exhausting the machine."""


@dataclass(frozen=True)
class ChildRun:
    """One CLI run: exit code, what it printed, its peak resident memory and wall time."""

    code: int
    stdout: str
    stderr: str
    peak_bytes: int
    seconds: float

    def assert_one_line(self, expected: str) -> None:
        """Exit 2, and stderr is exactly `mcuflow: error: <expected>`."""
        assert "Traceback" not in self.stderr, self.stderr
        assert self.stderr == f"mcuflow: error: {expected}\n", self.stderr
        assert self.code == 2

    def assert_bounded(self) -> None:
        """Within the stated budget: 1 GB peak resident memory, 60 s."""
        assert self.peak_bytes < MAX_PEAK_BYTES, f"peak {self.peak_bytes:,} B"
        assert self.seconds < MAX_SECONDS, f"{self.seconds:.1f} s"


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT_BYTES, ADDRESS_LIMIT_BYTES))


def run_mcuflow(args: list[str | Path], cwd: Path | None = None,
                timeout: float = 2 * MAX_SECONDS, env: dict[str, str] | None = None) -> ChildRun:
    """`python -m mcuflow ARGS` in a child; its own peak RSS comes from wait4's rusage."""
    child_env = {key: value for key, value in os.environ.items() if key != "MCUFLOW_DEBUG"}
    child_env.update(env or {})
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "mcuflow", *map(str, args)], cwd=cwd,
                                   env=child_env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err, preexec_fn=_limit_address_space)
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        seconds = time.monotonic() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode == -signal.SIGKILL:
            raise AssertionError(f"mcuflow {args} ran past {timeout} s")
        out.seek(0)
        err.seek(0)
        return ChildRun(process.returncode, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"), usage.ru_maxrss * 1024, seconds)
