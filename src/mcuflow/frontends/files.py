"""Opening files a user names: regular files only, and never more bytes than a stated limit."""

from __future__ import annotations

import os
import re
import stat
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

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


_LONG_KEY = re.compile(r"(?<![\w-])(?:(?:[A-Za-z0-9_-]++|\"[^\"\n]*+\"|'[^'\n]*+')[ \t]*+\.[ \t]*+)"
                       r"{64}")
"""64 dotted key parts in a row: tomllib takes time quadratic in a key's parts (20,000: 6 s), and
every part is a level of nesting, so such a key is refused before parsing (in linear time)."""


def read_toml(path: Path | str, label: str, hint: str, limit: int, max_depth: int,
              error: type[McuflowError] = McuflowError) -> dict[str, Any]:
    """The TOML document in the user's file `path` (read_bounded, UTF-8; see parse_toml)."""
    data = read_bounded(path, label, "check the path", limit, error)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as failure:
        raise error(f"cannot read {label}: {failure}", "check the path") from None
    return parse_toml(text, label, hint, max_depth, error)


def parse_toml(text: str, label: str, hint: str, max_depth: int,
               error: type[McuflowError] = McuflowError) -> dict[str, Any]:
    """The TOML document; nesting deeper than `max_depth` is refused, however deep."""
    too_deep = error(f"{label} nests tables or arrays more than {max_depth} levels deep", hint)
    if _LONG_KEY.search(text):
        raise too_deep
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as failure:
        raise error(f"{label} is not valid TOML: {failure}", hint) from None
    except RecursionError:
        raise too_deep from None
    except ValueError:  # Python refuses to convert integers of more digits than this
        raise error(f"{label} is not valid TOML: an integer has more than "
                    f"{sys.get_int_max_str_digits()} digits", hint) from None
    if _depth(data) > max_depth:
        raise too_deep
    return data


def _depth(data: dict[str, Any]) -> int:
    """How deeply tables and arrays nest in `data` (a table alone: 1), walked without recursion."""
    deepest, pending = 0, [(data, 1)]
    while pending:
        value, depth = pending.pop()
        deepest = max(deepest, depth)
        children = value.values() if isinstance(value, dict) else value
        pending.extend((child, depth + 1) for child in children
                       if isinstance(child, dict | list))
    return deepest
