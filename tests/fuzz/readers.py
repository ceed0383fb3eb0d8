"""Hostile board files and calibration arrays, through the real readers.

boards: the packaged boards.toml, one board of it and a minimal file, mutated: deep nesting,
huge numbers, NaN and infinities, wrong types, edited lines, oversized files and blind byte edits;
read by `load_boards`, each board then written as strict JSON.
arrays: the .npy and .npz files numpy writes, mutated: blind byte edits, lying .npy headers
(shape, dtype, order, version, header length), lying zip headers (sizes, method, counts), zip
bombs and archives of many members; read by `load_calibration` and by `run --input`'s reader.
Every input must be accepted or refused with an McuflowError within the deadline; what is
accepted must stay within the stated bounds (finite JSON, MAX_ARRAY_BYTES and MAX_ARRAY_VALUES).
"""

from __future__ import annotations

import io
import json
import random
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from mcuflow.frontends.arrays import MAX_ARRAY_BYTES, MAX_ARRAY_VALUES, read_npy
from mcuflow.hw.board import load_boards
from mcuflow.ptq import load_calibration
from tests.fuzz.harness import FuzzInput, Limits, Outcome, classify
from tests.fuzz.mutators import mutate_bytes

DEFAULT_LIMITS = Limits()
DEPTHS = (5, 7, 9, 40, 1000, 100_000)
LITERALS = (
    "nan", "+nan", "-nan", "inf", "+inf", "-inf", "0", "-0", "-1", "1", "0.0", "-0.0", "1e-320",
    "5e-324", "2.5", "1e15", "1e16", "1e308", "1.8e308", "1_000_000_000_000_001", "9" * 30,
    "9" * 4000, "9" * 5000, "0x7fffffffffffffff", "0xffffffffffffffffffff", "0o777", "0b101",
    "true", "false", '""', '"x"', '"12"', "[]", "[1, 2]", '["a"]', "{}", "{a = 1}",
    "1979-05-27T07:32:00Z", "07:32:00", '"""\nmulti\n"""', "'literal'",
)


class OverBudget(Exception):
    """The calibration reader returned more bytes or values than its limits."""


# --------------------------------------------------------------------------- boards


class _BoardPipeline:
    """`mcuflow boards --board-file FILE --json`: read, validate, write every board as JSON."""

    def __init__(self) -> None:
        self.stage = "read"

    def execute(self, data: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="mcuflow-fuzz-") as scratch:
            path = Path(scratch) / "boards.toml"
            path.write_bytes(data)
            boards = load_boards(path)
        self.stage = "json"
        for board in boards.values():
            json.dumps(board.to_json(), allow_nan=False)


def execute_boards(data: bytes, index: int = 0, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """Read one board file as `--board-file` does and classify what happened."""
    return classify(_BoardPipeline(), data, limits.timeout_s)


@cache
def _packaged_text() -> str:
    return resources.files("mcuflow.hw").joinpath("boards.toml").read_text("utf-8")


@cache
def board_seeds() -> dict[str, str]:
    """The packaged file, each board of it alone, and a board without its long sources."""
    text = _packaged_text()
    tables = re.split(r"\n(?=\[boards\.[^\].]+\]\n)", text)[1:]
    seeds = {"packaged": text}
    for table in tables:
        seeds[table.split("]", 1)[0].removeprefix("[boards.")] = table
    seeds["short"] = re.sub(r'^(\w*source) = ".*"$', r'\1 = "s"', tables[0], flags=re.MULTILINE)
    return seeds


_VALUE = re.compile(r"^([A-Za-z0-9_.-]+ = )(.*)$", re.MULTILINE)
_NUMBER = re.compile(r"(?<=[=\[,] )[-+]?(?:0x[0-9a-fA-F_]+|[0-9][0-9_]*(?:\.[0-9_]+)?(?:e[-+]?"
                     r"[0-9]+)?)(?=\s*[,\]\n])")


def _replace_match(text: str, rng: random.Random, pattern: re.Pattern[str], value: str
                   ) -> tuple[str, str]:
    found = list(pattern.finditer(text))
    if not found:
        return text, "no-op"
    match = rng.choice(found)
    start, end = match.span(2) if pattern is _VALUE else match.span()
    where = text[match.start():start][:30]
    return text[:start] + value + text[end:], f"set {where!r}... to {value[:20]!r}"


def _number(text: str, rng: random.Random) -> tuple[str, str]:
    return _replace_match(text, rng, _NUMBER, rng.choice(LITERALS[:29]))


def _value(text: str, rng: random.Random) -> tuple[str, str]:
    return _replace_match(text, rng, _VALUE, rng.choice(LITERALS))


def _nesting(text: str, rng: random.Random) -> tuple[str, str]:
    depth = rng.choice(DEPTHS)
    kind = rng.randrange(4)
    line = ("x = " + "[" * depth + "1" + "]" * depth if kind == 0
            else "x = " + "{a = " * depth + "1" + "}" * depth if kind == 1
            else "x." + "a." * depth + "b = 1" if kind == 2
            else "[boards." + "a." * depth + "b]\nc = 1")
    lines = text.split("\n")
    at = rng.randrange(len(lines) + 1)
    return "\n".join([*lines[:at], line, *lines[at:]]), f"nest {depth} deep (kind {kind}) at {at}"


def _lines(text: str, rng: random.Random) -> tuple[str, str]:
    lines = text.split("\n")
    at = rng.randrange(len(lines))
    action = rng.choice(("delete", "duplicate", "move"))
    line = lines.pop(at) if action != "duplicate" else lines[at]
    if action != "delete":
        lines.insert(rng.randrange(len(lines) + 1), line)
    return "\n".join(lines), f"{action} line {at}"


def _oversize(text: str, rng: random.Random) -> tuple[str, str]:
    size = rng.choice((1 << 20, (1 << 20) + 1, 3 << 20))
    filler = rng.choice(("#", "name = \"", "x = [" + "1," * 10))
    return text + "\n" + (filler * (size // len(filler) + 1))[:size], f"pad by {size} bytes"


def _weird_text(text: str, rng: random.Random) -> tuple[str, str]:
    insert = rng.choice(("\x00", "\x1b[31m", "\u202e", "\ud800", "é", "\r", "\t\t", "\\u0000"))
    at = rng.randrange(len(text) + 1)
    return text[:at] + insert + text[at:], f"insert {insert!r} at {at}"


TEXT_MUTATIONS: tuple[Callable[[str, random.Random], tuple[str, str]], ...] = (
    _number, _number, _number, _value, _value, _nesting, _lines, _lines, _weird_text, _oversize,
)


def make_board_input(campaign: str, index: int) -> FuzzInput:
    """The `index`-th board file of a campaign: a seed with text and/or byte mutations."""
    rng = random.Random(f"boards/{campaign}/{index}")
    seeds = board_seeds()
    name = "packaged" if rng.random() < 0.1 else rng.choice(sorted(seeds))
    text, done = seeds[name], []
    for _ in range(rng.choice((1, 1, 2, 3))):
        mutation = rng.choice(TEXT_MUTATIONS[:-1] if rng.random() < 0.97 else TEXT_MUTATIONS)
        text, step = mutation(text, rng)
        done.append(step)
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.3:
        data, more = mutate_bytes(data, rng, seeds["short"].encode(), rng.choice((1, 2)))
        done += more
    return FuzzInput(data, f"{name}: " + "; ".join(done))


# --------------------------------------------------------------------------- arrays


class _ArrayPipeline:
    """`--calibration FILE` (even inputs) or `run --input FILE` (odd inputs).

    FILE is named .npz when the input starts as a zip, .npy otherwise.
    """

    def __init__(self, index: int) -> None:
        self.stage = "calibration" if index % 2 == 0 else "input"

    def execute(self, data: bytes) -> None:
        suffix = ".npz" if data.startswith(b"PK") else ".npy"
        with tempfile.TemporaryDirectory(prefix="mcuflow-fuzz-") as scratch:
            path = Path(scratch) / f"cal{suffix}"
            path.write_bytes(data)
            if self.stage == "input":
                read_npy(path, f"input {path}", "save the input array with numpy.save")
                return
            calibration = load_calibration(path)
        arrays = [a for arrays in calibration.arrays.values() for a in arrays]
        total, values = sum(a.nbytes for a in arrays), sum(a.size for a in arrays)
        if total > MAX_ARRAY_BYTES or values > MAX_ARRAY_VALUES:
            raise OverBudget(f"{total} bytes, {values} values of arrays accepted")


def execute_arrays(data: bytes, index: int = 0, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """Read one .npy/.npz as `--calibration` or `run --input` does; classify what happened."""
    return classify(_ArrayPipeline(index), data, limits.timeout_s)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@cache
def npy_seeds() -> dict[str, bytes]:
    """.npy files of the dtypes, orders and shapes calibration data comes in."""
    rng = np.random.default_rng(0)
    return {
        "images": _npy(rng.standard_normal((4, 3, 8, 8)).astype(np.float32)),
        "int8": _npy(rng.integers(-128, 128, (2, 5), np.int8)),
        "fortran": _npy(np.asfortranarray(rng.standard_normal((3, 4)))),
        "big-endian": _npy(np.arange(6, dtype=">i4").reshape(2, 3)),
        "scalar": _npy(np.array(1.5, np.float32)),
        "empty": _npy(np.zeros((0, 4), np.uint16)),
    }


@cache
def array_seeds() -> dict[str, bytes]:
    """The .npy seeds, and .npz archives of them: deflated, stored, one member, several."""
    npys = npy_seeds()
    return {**npys,
            "npz": _npz({"image.npy": npys["images"], "label.npy": npys["int8"]}),
            "npz-stored": _npz({"x.npy": npys["fortran"]}, zipfile.ZIP_STORED),
            "npz-one": _npz({"arr_0.npy": npys["images"]})}


SHAPES = ((1 << 40,), (1_000_000, 1_000_000), (-1,), (3, -4), (0,), (), (2,) * 64, (1 << 62,),
          (10**30,), (4, 3, 8, 8), (2, 5), (129, 1), (1 << 27,), (3 << 28,))
DESCRS = ("<f4", "|i1", "<f8", ">f8", "|O", "<U5", "|V0", "|S0", "|b1", "<c16", "<f2",
          [("a", "<f4"), ("b", "|O")], [("a", "<f4")], ("<f4", (3,)), "<M8[s]", "garbage")


def _header_text(rng: random.Random) -> str:
    shape = rng.choice(SHAPES)
    return repr({"descr": rng.choice(DESCRS), "fortran_order": rng.random() < 0.3,
                 "shape": shape})


def _lying_npy(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """A seed's data behind a rewritten header (shape, dtype, order, version, length field)."""
    header_end = data.index(b"\n") + 1 if b"\n" in data[:200] else 128
    text = _header_text(rng)
    version = rng.choice((1, 1, 1, 2, 3, 4))
    length_format = "<H" if version == 1 else "<I"
    header = text.encode("latin1") + b" \n"
    length = len(header) if rng.random() < 0.85 else rng.choice((0, 0xFFFF, 1 << 31, 10_001))
    body = data[header_end:] if rng.random() < 0.8 else data[header_end:][:rng.randrange(64)]
    prefix = b"\x93NUMPY" + bytes((version, 0)) + struct.pack(length_format, length % (1 << 16)
                                                              if version == 1 else length)
    return prefix + header + body, f"header {text[:60]} v{version} length {length}"


_ZIP_FIELDS = {b"PK\x03\x04": (("<H", 8), ("<L", 14), ("<L", 18), ("<L", 22), ("<H", 26)),
               b"PK\x01\x02": (("<H", 10), ("<L", 16), ("<L", 20), ("<L", 24), ("<H", 28),
                               ("<L", 42)),
               b"PK\x05\x06": (("<H", 8), ("<H", 10), ("<L", 12), ("<L", 16), ("<H", 20))}
_ZIP_VALUES = (0, 1, 8, 12, 14, 99, 0xFFFF, 0xFFFFFFFF, 1 << 30, 200, 3)


def _lying_zip(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """An .npz whose local, central or end record states another size, method or count."""
    signature = rng.choice(sorted(_ZIP_FIELDS))
    places = [m.start() for m in re.finditer(re.escape(signature), data)]
    if not places:
        return data, "no-op"
    at = rng.choice(places)
    packing, offset = rng.choice(_ZIP_FIELDS[signature])
    value = rng.choice(_ZIP_VALUES) % (1 << (8 * struct.calcsize(packing)))
    result = bytearray(data)
    if at + offset + struct.calcsize(packing) <= len(result):
        struct.pack_into(packing, result, at + offset, value)
    return bytes(result), f"zip field {signature[2:]!r}+{offset} = {value}"


@cache
def _zeros_stream(mebibytes: int) -> bytes:
    """A deflate stream of `mebibytes` MiB of zeros: one fully flushed block, repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * mebibytes + compressor.flush()


def _bomb(rng: random.Random) -> tuple[bytes, str]:
    """A one-member .npz inflating to 1 to 600 MiB of zeros behind an honest or lying header."""
    mebibytes = rng.choice((1, 16, 64, 600))
    honest = rng.random() < 0.5
    shape = (mebibytes << 20,) if honest else rng.choice(((16,), (1 << 40,), (mebibytes << 19,)))
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": "|i1", "fortran_order": False,
                                               "shape": shape})
    header = buffer.getvalue()
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    data += _zeros_stream(mebibytes)
    crc = zlib.crc32(header)
    for _ in range(mebibytes):
        crc = zlib.crc32(bytes(1 << 20), crc)
    size, name = len(header) + (mebibytes << 20), b"x.npy"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), size,
                        len(name), 0) + name
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(data),
                          size, len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central),
                      len(local) + len(data), 0)
    return local + data + central + end, f"bomb of {mebibytes} MiB, header shape {shape}"


def _many_members(rng: random.Random) -> tuple[bytes, str]:
    count = rng.choice((2_000, 10_001, 20_000))
    member = rng.choice((b"", npy_seeds()["scalar"]))
    return (_npz({f"{i}.npy": member for i in range(count)}, zipfile.ZIP_STORED),
            f"{count} members of {len(member)} bytes")


def _lying_member(rng: random.Random) -> tuple[bytes, str]:
    seeds = npy_seeds()
    data, step = _lying_npy(rng, seeds[rng.choice(sorted(seeds))])
    members = {"x.npy": data}
    if rng.random() < 0.3:
        members["y.npy"] = seeds["int8"]
    method = rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED))
    return _npz(members, method), f"member {step}"


def make_array_input(campaign: str, index: int) -> FuzzInput:
    """The `index`-th .npy/.npz of a campaign: one of the attack classes on a numpy-written seed."""
    rng = random.Random(f"arrays/{campaign}/{index}")
    seeds = array_seeds()
    name = rng.choice(sorted(seeds))
    data, attack = seeds[name], rng.random()
    if attack < 0.3:
        other = seeds[rng.choice(sorted(seeds))]
        data, done = mutate_bytes(data, rng, other, rng.choice((1, 2, 3)))
        return FuzzInput(data, f"{name}: " + "; ".join(done))
    if attack < 0.55:
        data, step = _lying_npy(rng, npy_seeds()[rng.choice(sorted(npy_seeds()))])
    elif attack < 0.75:
        data, step = _lying_member(rng)
    elif attack < 0.9:
        name = rng.choice(("npz", "npz-stored", "npz-one"))
        data, step = _lying_zip(rng, seeds[name])
    elif attack < 0.98:
        data, step = _bomb(rng)
    else:
        data, step = _many_members(rng)
    return FuzzInput(data, f"{name}: {step}")
