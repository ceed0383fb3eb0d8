"""Reading .npy and .npz arrays a user names: every declared size is checked before it is read.

A .npy header declares a shape and a dtype; the array is allocated only once that size fits in
the bytes the file holds and in what is left of an `ArrayBudget`. An .npz is read member by
member through zipfile's streams: each member's header is parsed from its stream and exactly the
declared number of bytes is inflated, so neither a lying zip header nor a lying .npy header makes
it inflate more. No pickles: object dtypes are refused.
"""

from __future__ import annotations

import io
import math
import struct
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from mcuflow.errors import McuflowError
from mcuflow.frontends.files import file_size, open_regular

MAX_ARRAY_BYTES = 256 << 20
"""Bytes of all the arrays of one read together (every calibration file, or one `run` input)."""
MAX_ARRAY_VALUES = 64 << 20
"""Values of all the arrays of one read together. Calibration converts them to float32, where
these take 256 MiB (an int8 file of MAX_ARRAY_BYTES would take 1 GiB)."""
MAX_ARRAYS = 10_000
"""Arrays of one read together: the members of every .npz and the files of a folder."""
MAX_HEADER_BYTES = 10_000
"""A .npy header's length field may claim 4 GiB; numpy itself parses at most this."""
MAX_CENTRAL_DIRECTORY_BYTES = 4 << 20
"""An .npz's table of members, which zipfile parses whole before any member is read."""
_READ_BYTES = 1 << 20
_NPZ_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_LENGTH_FORMATS = {(1, 0): "<H", (2, 0): "<I", (3, 0): "<I"}
_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0,
                   (2, 0): npy_format.read_array_header_2_0,
                   (3, 0): npy_format.read_array_header_2_0}
_OBJECTS = "Object arrays cannot be loaded when allow_pickle=False"
_UNREADABLE = (ValueError, TypeError, OverflowError, EOFError, RuntimeError, NotImplementedError,
               SyntaxError, tokenize.TokenError, struct.error, zlib.error, zipfile.BadZipFile,
               zipfile.LargeZipFile)
"""What numpy's header parser (it may tokenize the header) and zipfile raise on a malformed
file (RuntimeError: an encrypted member)."""


class ArrayFileError(McuflowError):
    """An .npy or .npz file is unreadable, or declares more than it holds or than is allowed."""


def _counted(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


@dataclass
class ArrayBudget:
    """What one read may still allocate: arrays and bytes, spent as headers are checked."""

    limit_bytes: int = MAX_ARRAY_BYTES
    limit_values: int = MAX_ARRAY_VALUES
    limit_arrays: int = MAX_ARRAYS
    used_bytes: int = 0
    used_values: int = 0
    used_arrays: int = 0

    def check_arrays(self, count: int, where: str, hint: str) -> None:
        """ArrayFileError when `where`'s `count` arrays do not fit in what is left."""
        if self.used_arrays + count > self.limit_arrays:
            raise ArrayFileError(f"{where} holds {_counted(count, 'array')}, "
                                 f"{self._over(self.used_arrays, self.limit_arrays, 'array')}",
                                 hint)

    def spend_arrays(self, count: int, where: str, hint: str) -> None:
        """Take `count` arrays (the members of `where`); ArrayFileError past the limit."""
        self.check_arrays(count, where, hint)
        self.used_arrays += count

    def spend(self, shape: tuple[int, ...], nbytes: int, where: str, hint: str) -> None:
        """Take an array of `shape` and `nbytes`; ArrayFileError past the bytes or values limit."""
        values = math.prod(shape)
        declared = f"{where} declares an array of shape {shape}"
        if self.used_bytes + nbytes > self.limit_bytes:
            raise ArrayFileError(f"{declared} ({nbytes} bytes), "
                                 f"{self._over(self.used_bytes, self.limit_bytes, 'byte')}", hint)
        if self.used_values + values > self.limit_values:
            raise ArrayFileError(f"{declared} ({values} values), "
                                 f"{self._over(self.used_values, self.limit_values, 'value')}",
                                 hint)
        self.used_bytes += nbytes
        self.used_values += values

    @staticmethod
    def _over(used: int, limit: int, unit: str) -> str:
        before = f"with the {_counted(used, unit)} read before, " if used else ""
        return f"{before}over the limit of {_counted(limit, unit)}"


@dataclass(frozen=True)
class _Header:
    """A parsed .npy header and the bytes it took (magic included)."""

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    offset: int

    @property
    def nbytes(self) -> int:
        """Bytes of data the header declares."""
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy(path: Path | str, label: str, hint: str, budget: ArrayBudget | None = None
             ) -> np.ndarray:
    """The one array of a .npy file (`mcuflow run --input`); `label` names it in messages."""
    with open_regular(path, label, hint, ArrayFileError) as handle, _unreadable(label, hint):
        if handle.read(len(npy_format.MAGIC_PREFIX)) != npy_format.MAGIC_PREFIX:
            raise ArrayFileError(f"{label} is not a .npy file", hint)
        handle.seek(0)
        return _npy(handle, label, hint, budget or ArrayBudget())


def read_arrays(path: Path | str, label: str, hint: str, budget: ArrayBudget
                ) -> dict[str, np.ndarray]:
    """The arrays of an .npz file by member name ('.npy' dropped), or of a .npy file ('')."""
    with open_regular(path, label, hint, ArrayFileError) as handle, _unreadable(label, hint):
        if Path(path).suffix.lower() == ".npz":
            return _npz(handle, label, hint, budget)
        return {"": _npy(handle, label, hint, budget)}


@contextmanager
def _unreadable(label: str, hint: str) -> Iterator[None]:
    """Turns what numpy and zipfile raise on a malformed file into one ArrayFileError line."""
    try:
        yield
    except OSError as error:
        raise ArrayFileError(f"cannot read {label}: {error.strerror or error}", hint) from None
    except _UNREADABLE as error:
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        raise ArrayFileError(f"cannot read {label}: {reason}", hint) from None


def _npy(handle: BinaryIO, label: str, hint: str, budget: ArrayBudget) -> np.ndarray:
    """A .npy file's array; its declared bytes must not exceed what the file holds."""
    header = _header(handle, label, hint)
    held = file_size(handle) - header.offset
    _check_held(header, held, label, hint)
    budget.spend(header.shape, header.nbytes, label, hint)
    budget.spend_arrays(1, label, hint)
    return _data(handle, header, label, hint)


def _npz(handle: BinaryIO, label: str, hint: str, budget: ArrayBudget) -> dict[str, np.ndarray]:
    """Every member of an .npz, each read from its stream with exactly its declared bytes."""
    _check_directory(handle, label, hint, budget)
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(handle) as archive:
        members = archive.infolist()
        budget.spend_arrays(len(members), label, hint)
        for info in members:
            key = info.filename.removesuffix(".npy")
            where = f"{label} member '{key}'"
            if key in arrays:
                raise ArrayFileError(f"{label} holds two members named '{key}'", hint)
            if info.compress_type not in _NPZ_METHODS:
                raise ArrayFileError(f"cannot read {where}: compression method "
                                     f"{info.compress_type} (numpy stores or deflates)", hint)
            with archive.open(info) as stream:
                arrays[key] = _member(stream, info.file_size, where, hint, budget)
    return arrays


def _check_directory(handle: BinaryIO, label: str, hint: str, budget: ArrayBudget) -> None:
    """The member count and table size the zip's end record declares, before zipfile reads it.

    zipfile builds an object per member of the central directory as it opens the archive; its
    own end-record reader is used, so both see the same record.
    """
    record = zipfile._EndRecData(handle)
    if record is None:
        return  # not a zip: ZipFile says so
    budget.check_arrays(record[zipfile._ECD_ENTRIES_TOTAL], label, hint)
    size = record[zipfile._ECD_SIZE]
    if size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise ArrayFileError(f"{label} has a table of members of {size} bytes, over the limit "
                             f"of {MAX_CENTRAL_DIRECTORY_BYTES} bytes", hint)


def _member(stream: BinaryIO, zip_size: int, where: str, hint: str, budget: ArrayBudget
            ) -> np.ndarray:
    """One .npz member: declared size checked against the zip's and the budget, then read."""
    header = _header(stream, where, hint)
    _check_held(header, zip_size - header.offset, where, hint)
    budget.spend(header.shape, header.nbytes, where, hint)
    array = _data(stream, header, where, hint)
    if stream.read(1):
        raise ArrayFileError(f"{where} holds more than the {header.nbytes} bytes its shape "
                             f"{header.shape} declares", hint)
    return array


def _check_held(header: _Header, held: int, where: str, hint: str) -> None:
    if header.nbytes > held:
        raise ArrayFileError(f"{where} declares an array of shape {header.shape} "
                             f"({header.nbytes} bytes) but holds {max(held, 0)} bytes", hint)


def _exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ValueError("the file ends inside the .npy header")
    return data


def _header(stream: BinaryIO, where: str, hint: str) -> _Header:
    """The .npy header at the stream's position, its length bounded before it is read."""
    magic = _exactly(stream, npy_format.MAGIC_LEN)
    version = npy_format.read_magic(io.BytesIO(magic))
    if version not in _LENGTH_FORMATS:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    length_format = _LENGTH_FORMATS[version]
    length_bytes = _exactly(stream, struct.calcsize(length_format))
    (length,) = struct.unpack(length_format, length_bytes)
    if length > MAX_HEADER_BYTES:
        raise ArrayFileError(f"cannot read {where}: its header claims {length} bytes, over the "
                             f"limit of {MAX_HEADER_BYTES} bytes", hint)
    text = _exactly(stream, length)
    with warnings.catch_warnings():  # numpy warns about headers written by Python 2
        warnings.simplefilter("ignore")
        shape, fortran_order, dtype = _HEADER_READERS[version](io.BytesIO(length_bytes + text))
    if any(dim < 0 for dim in shape):
        raise ArrayFileError(f"cannot read {where}: its header declares the shape {shape}", hint)
    if dtype.hasobject:
        raise ArrayFileError(f"cannot read {where}: {_OBJECTS}", hint)
    if dtype.itemsize == 0 or dtype.subdtype is not None:
        raise ArrayFileError(f"cannot read {where}: its header declares the dtype {dtype}", hint)
    return _Header(tuple(shape), fortran_order, dtype, len(magic) + len(length_bytes) + length)


def _data(stream: BinaryIO, header: _Header, where: str, hint: str) -> np.ndarray:
    """The declared bytes from the stream, read in slices straight into the array."""
    flat = np.empty(math.prod(header.shape), header.dtype)
    view, filled = memoryview(flat.view(np.uint8)), 0
    while filled < header.nbytes:
        got = stream.readinto(view[filled:filled + _READ_BYTES])
        if not got:
            break
        filled += got
    _check_held(header, filled, where, hint)
    if header.fortran_order:
        return flat.reshape(header.shape[::-1]).transpose()
    return flat.reshape(header.shape)
