"""The `mcuflow` command and `python -m mcuflow`: Ctrl-C or SIGTERM is one line and 128 + signal."""

from __future__ import annotations

import signal
import sys
from types import FrameType

STOPPING = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
"""The signals that stop a command cleanly, and what it then says; it exits with 128 + the
signal, as a shell reports a command they stopped (Ctrl-C: 130)."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM. Not a KeyboardInterrupt, which click would turn into `Aborted!`."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum


RECEIVED: list[int] = []
"""The stop signals received: a library that catches every exception (a bare `except:`) may
swallow the Interrupted raised, and the command would run on to its end as if not stopped."""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    RECEIVED.append(signum)
    raise Interrupted(signum)


def _interrupt_behind(error: BaseException | None) -> Interrupted | None:
    """The Ctrl-C or SIGTERM behind `error`: Python may wrap it, e.g. in a RuntimeError."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, Interrupted):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def main() -> None:
    """Run the command line; when stopped, clean up (partial output is removed) and say so."""
    for signum in STOPPING:
        signal.signal(signum, _interrupt)
    try:
        import mcuflow.nas.command  # noqa: F401  (registers `mcuflow search`)
        from mcuflow.cli import main as run_cli

        run_cli()
    except BaseException as error:
        stopped = _interrupt_behind(error)
        if stopped is None and not RECEIVED:
            raise
        _stop(stopped.signum if stopped else RECEIVED[0])
    if RECEIVED:
        _stop(RECEIVED[0])


def _stop(signum: int) -> None:
    """Say the command was stopped by `signum` and exit with 128 + it."""
    for stopping in STOPPING:
        signal.signal(stopping, signal.SIG_IGN)
    sys.stderr.write(f"mcuflow: {STOPPING[signum]}\n")
    sys.exit(128 + signum)


if __name__ == "__main__":
    main()
