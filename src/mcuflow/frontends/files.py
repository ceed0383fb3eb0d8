"""Opening files a user names: regular files only, and never more bytes than a stated limit."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from mcuflow.errors import McuflowError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
"""O_NONBLOCK: a FIFO swapped in after the stat must not block the open (fstat refuses it)."""
_SLICE_BYTES = 16 << 20


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _check_regular(mode: int, label: str, hint: str, error: type[McuflowError]) -> None:
    if not stat.S_ISREG(mode):
        raise error(f"{label} is {_kind(mode)}, not a regular file", hint)


def _cannot_read(error: OSError, label: str, hint: str, kind: type[McuflowError]
                 ) -> McuflowError:
    return kind(f"cannot read {label}: {error.strerror or error}", hint)


def check_regular(path: Path | str, label: str, hint: str,
                  error: type[McuflowError] = McuflowError) -> None:
    """`error` unless `path` is a regular file (symlinks followed), checked without opening it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as failure:
        raise _cannot_read(failure, label, hint, error) from None
    _check_regular(mode, label, hint, error)


@contextmanager
def open_regular(path: Path | str, label: str, hint: str,
                 error: type[McuflowError] = McuflowError) -> Iterator[BinaryIO]:
    """`path` opened for reading, once it is known to be a regular file (symlinks followed).

    Devices, FIFOs, sockets and directories are refused before they are opened, with one
    `error` line naming `label` ("board file x.toml", "input x.npy").
    """
    check_regular(path, label, hint, error)
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as failure:
        raise _cannot_read(failure, label, hint, error) from None
    with os.fdopen(descriptor, "rb") as handle:
        _check_regular(os.fstat(descriptor).st_mode, label, hint, error)
        yield handle


def file_size(handle: BinaryIO) -> int:
    """Bytes of the open regular file `handle`."""
    return os.fstat(handle.fileno()).st_size


def _read_at_most(handle: BinaryIO, count: int) -> bytes:
    """Up to `count` bytes, in slices: no buffer of `count` bytes is allocated up front."""
    chunks = []
    while count > 0 and (chunk := handle.read(min(count, _SLICE_BYTES))):
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_bounded(path: Path | str, label: str, hint: str, limit: int,
                 error: type[McuflowError] = McuflowError) -> bytes:
    """The bytes of the regular file `path`, refused when it holds more than `limit` bytes.

    At most `limit` + 1 bytes are read, so a file that grows while it is read is refused too.
    """
    with open_regular(path, label, hint, error) as handle:
        size = file_size(handle)
        try:
            data = _read_at_most(handle, limit + 1) if size <= limit else b""
        except OSError as failure:
            raise _cannot_read(failure, label, hint, error) from None
    if size > limit or len(data) > limit:
        raise error(f"{label} is {max(size, len(data))} bytes, over the limit of {limit} bytes",
                    hint)
    return data
