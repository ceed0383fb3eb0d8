"""The `mcuflow` command and `python -m mcuflow`: Ctrl-C anywhere is one line and exit 130."""

from __future__ import annotations

import signal
import sys
from types import FrameType

INTERRUPTED_EXIT = 130
"""128 + SIGINT, as a shell reports a command stopped by Ctrl-C."""


class Interrupted(BaseException):
    """Ctrl-C. Not a KeyboardInterrupt, which click would turn into its own `Aborted!`."""


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise Interrupted


def _caused_by_interrupt(error: BaseException | None) -> bool:
    """Whether Ctrl-C is behind `error`: Python may wrap it, e.g. in a RuntimeError."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, Interrupted):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def main() -> None:
    """Run the command line; on Ctrl-C, clean up (partial output is removed) and say so."""
    signal.signal(signal.SIGINT, _interrupt)
    try:
        import mcuflow.nas.command  # noqa: F401  (registers `mcuflow search`)
        from mcuflow.cli import main as run_cli

        run_cli()
    except BaseException as error:
        if not _caused_by_interrupt(error):
            raise
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stderr.write("mcuflow: interrupted\n")
        sys.exit(INTERRUPTED_EXIT)


if __name__ == "__main__":
    main()
