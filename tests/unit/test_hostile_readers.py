"""Hostile files and counts: every reader bounded, `verify --runs N` in constant memory.

The CLI cases run in a child (tests/child.py) whose peak memory and time are measured: the exact
one-line error, exit code 2, under 1 GB and 60 s. Variants of each reader run in-process.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from mcuflow import ptq
from mcuflow.codegen.project import generate_project
from mcuflow.errors import BoardError, McuflowError
from mcuflow.frontends.arrays import (
    MAX_ARRAY_BYTES,
    MAX_HEADER_BYTES,
    ArrayBudget,
    ArrayFileError,
    read_arrays,
    read_npy,
)
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.hw.board import MAX_BOARD_FILE_BYTES, load_boards
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.quant import calibration_data
from mcuflow.quant.calibrate import CalibrationError
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain import host
from tests.child import ChildRun, run_mcuflow
from tests.unit.test_broken_inputs import base_model, onnx_edited

SCHEMA = " (hint: see the packaged boards.toml (src/mcuflow/hw/boards.toml) for the schema)"
PATH_HINT = " (hint: check the path)"
CALIBRATION = " (hint: pass an .npy or .npz file, or a folder of them, holding float samples)"
NPY_HINT = " (hint: save the input array with numpy.save)"
ZEROS = bytes(1 << 20)


# --------------------------------------------------------------------------- file builders


def board_table(board_id: str = "nucleo-f767zi") -> str:
    """The packaged TOML of one board, its tiers included."""
    text = resources.files("mcuflow.hw").joinpath("boards.toml").read_text("utf-8")
    start = text.index(f"[boards.{board_id}]")
    end = text.find("\n[boards.", start + 1)
    return text[start:end if end >= 0 else None]


def board_with(field: str, value: str) -> str:
    """The board table with the first `field = ...` line set to `value`."""
    text, count = re.subn(rf"^{field} = .*$", f"{field} = {value}", board_table(), count=1,
                          flags=re.MULTILINE)
    assert count == 1
    return text


def npy_header(shape: tuple[int, ...], descr: str = "<f4", fortran: bool = False) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": fortran,
                                               "shape": shape})
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def npz(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    """An .npz of raw member bytes (each normally a .npy file)."""
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@dataclass(frozen=True)
class Bomb:
    """A deflated member: a .npy header, then `mebibytes` MiB of zeros, ~1 KB of stream each."""

    header: bytes
    mebibytes: int

    def stream(self) -> tuple[bytes, int, int, int]:
        """(deflate stream, CRC-32, inflated size): repeated fully flushed blocks of zeros."""
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        head = compressor.compress(self.header) + compressor.flush(zlib.Z_FULL_FLUSH)
        block = compressor.compress(ZEROS) + compressor.flush(zlib.Z_FULL_FLUSH)
        data = head + block * self.mebibytes + compressor.flush()
        crc = zlib.crc32(self.header)
        for _ in range(self.mebibytes):
            crc = zlib.crc32(ZEROS, crc)
        return data, crc, len(self.header) + self.mebibytes * len(ZEROS), len(data)

    def write(self, path: Path, declared_size: int | None = None) -> Path:
        """The .npz (member x.npy); `declared_size` makes its zip headers lie about the size."""
        data, crc, size, compressed = self.stream()
        size = size if declared_size is None else declared_size
        name = b"x.npy"
        local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, compressed,
                            size, len(name), 0) + name
        central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc,
                              compressed, size, len(name), 0, 0, 0, 0, 0, 0) + name
        end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central),
                          len(local) + len(data), 0)
        with path.open("wb") as file:
            file.write(local)
            file.write(data)
            file.write(central + end)
        return path


def float_model(directory: Path) -> Path:
    """A float ONNX model (1, 3, 8, 8) to calibrate."""
    return write(directory / "model.onnx", onnx_edited(lambda model: None)())


def tflite_model(directory: Path) -> Path:
    """The small int8 model of test_broken_inputs (CONV, POOL, PAD, CONCAT, FC, SOFTMAX)."""
    return write(directory / "model.tflite", base_model())


def calibrate(directory: Path, calibration: Path) -> ChildRun:
    return run_mcuflow(["analyze", float_model(directory), "--calibration", calibration])


def boards_with(path: Path) -> ChildRun:
    return run_mcuflow(["boards", "--board-file", path])


# --------------------------------------------------------------------------- CLI: board files


def test_board_file_nested_100000_deep(tmp_path: Path) -> None:
    path = write(tmp_path / "b.toml", "boards = " + "[" * 100_000 + "]" * 100_000 + "\n")
    run = boards_with(path)
    run.assert_one_line(f"board file {path} nests tables or arrays more than 8 levels deep"
                        + SCHEMA)
    run.assert_bounded()


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory"])
def test_board_file_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path, what = tmp_path / "boards.toml", "a named pipe (FIFO)"
        os.mkfifo(path)
    else:
        path, what = ((Path("/dev/zero"), "a character device") if kind == "dev-zero"
                      else (tmp_path, "a directory"))
    run = boards_with(path)
    run.assert_one_line(f"board file {path} is {what}, not a regular file" + PATH_HINT)
    run.assert_bounded()
    assert run.seconds < 20


def test_board_file_of_20_mb(tmp_path: Path) -> None:
    path = write(tmp_path / "b.toml", "# " + "x" * (20_000_000 - 3) + "\n")
    run = boards_with(path)
    run.assert_one_line(f"board file {path} is 20000000 bytes, over the limit of "
                        f"{MAX_BOARD_FILE_BYTES} bytes" + PATH_HINT)
    run.assert_bounded()


@pytest.mark.parametrize(("field", "value", "where"), [
    ("read_bandwidth", "nan", ", tier 0"), ("supply_voltage_v", "inf", ""),
], ids=["nan", "inf"])
def test_board_file_non_finite(tmp_path: Path, field: str, value: str, where: str) -> None:
    path = write(tmp_path / "b.toml", board_with(field, value))
    run = boards_with(path)
    run.assert_one_line(f"board file {path}, board 'nucleo-f767zi'{where}: field '{field}' must "
                        f"be a finite number, got {value}" + SCHEMA)
    run.assert_bounded()


# --------------------------------------------------------------------------- CLI: calibration


def test_calibration_npy_declaring_a_huge_shape(tmp_path: Path) -> None:
    path = write(tmp_path / "cal.npy", npy_header((1_000_000, 1_000_000)) + bytes(100))
    run = calibrate(tmp_path, path)
    run.assert_one_line(f"calibration file '{path}' declares an array of shape (1000000, 1000000) "
                        "(4000000000000 bytes) but holds 100 bytes" + CALIBRATION)
    run.assert_bounded()


def test_calibration_npz_member_declaring_a_huge_shape(tmp_path: Path) -> None:
    path = npz(tmp_path / "cal.npz", {"x.npy": npy_header((1_000_000, 1_000_000)) + bytes(100)})
    run = calibrate(tmp_path, path)
    run.assert_one_line(f"calibration file '{path}' member 'x' declares an array of shape "
                        "(1000000, 1000000) (4000000000000 bytes) but holds 100 bytes"
                        + CALIBRATION)
    run.assert_bounded()


def test_calibration_zip_bomb_with_an_honest_header(tmp_path: Path) -> None:
    """3 MB of .npz inflating to 3 GiB, its .npy header saying so: refused before inflating."""
    path = Bomb(npy_header((3 << 30,), "|i1"), 3 << 10).write(tmp_path / "bomb.npz")
    assert path.stat().st_size < 4 << 20
    run = calibrate(tmp_path, path)
    run.assert_one_line(f"calibration file '{path}' member 'x' declares an array of shape "
                        f"(3221225472,) (3221225472 bytes), over the limit of {MAX_ARRAY_BYTES} "
                        "bytes" + CALIBRATION)
    run.assert_bounded()


def test_calibration_zip_bomb_with_a_lying_header(tmp_path: Path) -> None:
    """The .npy header declares 16 bytes, 3 GiB follow: 16 bytes and one more are inflated."""
    path = Bomb(npy_header((16,), "|i1"), 3 << 10).write(tmp_path / "bomb.npz")
    run = calibrate(tmp_path, path)
    run.assert_one_line(f"calibration file '{path}' member 'x' holds more than the 16 bytes its "
                        "shape (16,) declares" + CALIBRATION)
    run.assert_bounded()


def test_calibration_npz_of_100000_members(tmp_path: Path) -> None:
    path = npz(tmp_path / "cal.npz", {f"{i}.npy": b"" for i in range(100_000)},
               zipfile.ZIP_STORED)
    assert path.stat().st_size < 10 << 20
    run = calibrate(tmp_path, path)
    run.assert_one_line(f"calibration file '{path}' holds 100000 arrays, over the limit of 10000 "
                        "arrays" + CALIBRATION)
    run.assert_bounded()


def test_calibration_from_dev_zero(tmp_path: Path) -> None:
    path = tmp_path / "cal.npy"
    path.symlink_to("/dev/zero")
    run = calibrate(tmp_path, path)
    run.assert_one_line(f"calibration file '{path}' is a character device, not a regular file"
                        + CALIBRATION)
    run.assert_bounded()


# --------------------------------------------------------------------------- CLI: verify --runs


def test_verify_refuses_ten_million_runs_at_once(tmp_path: Path) -> None:
    run = run_mcuflow(["verify", tflite_model(tmp_path), "--runs", "10000000"])
    run.assert_one_line("--runs must be between 1 and 1,000,000, not 10000000 (hint: e.g. "
                        "--runs 20)")
    run.assert_bounded()
    assert run.seconds < 20


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None
                    or shutil.which("arm-none-eabi-gcc") is None, reason="no Arm toolchain")
def test_verify_memory_does_not_grow_with_runs(tmp_path: Path) -> None:
    """`verify --runs 5000` on QEMU costs the memory of `--runs 50`.

    On QEMU: child.py's address-space limit leaves no room for the host build's ASan shadow
    (test_verify_host_memory_does_not_grow_with_runs measures the host path in-process).
    """
    model = tflite_model(tmp_path)
    few, many = (run_mcuflow(["verify", model, "--target", "cortex-m4", "--runs", str(runs)])
                 for runs in (50, 5000))
    for run, runs in ((few, 50), (many, 5000)):
        assert run.code == 0, run.stderr
        assert re.search(rf"bit-exact on cortex-m4 .*: {runs} runs, 0\s+mismatching", run.stdout)
        run.assert_bounded()
    assert abs(many.peak_bytes - few.peak_bytes) < 100 << 20, (few.peak_bytes, many.peak_bytes)


# --------------------------------------------------------------------------- boards in-process


def _board_error(tmp_path: Path, text: str | bytes) -> str:
    path = write(tmp_path / "b.toml", text)
    with pytest.raises(BoardError) as info:
        load_boards(path)
    return str(info.value).replace(str(path), "{p}")


@pytest.mark.parametrize(("text", "message"), [
    ("[boards.x]\n" + "a." * 20 + "b = 1\n",
     "board file {p} nests tables or arrays more than 8 levels deep" + SCHEMA),
    ("x = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n",
     "board file {p} nests tables or arrays more than 8 levels deep" + SCHEMA),
    (board_with("clock_hz", "1" + "0" * 30),
     "board file {p}, board 'nucleo-f767zi': field 'clock_hz' must be at most 1e+15, got an "
     "integer of 31 digits" + SCHEMA),
    (board_with("clock_hz", "9" * 5000),
     "board file {p} is not valid TOML: an integer has more than 4300 digits" + SCHEMA),
    (board_with("read_bandwidth", "-inf"),
     "board file {p}, board 'nucleo-f767zi', tier 0: field 'read_bandwidth' must be a finite "
     "number, got -inf" + SCHEMA),
    (board_with("write_bandwidth", "1e300"),
     "board file {p}, board 'nucleo-f767zi', tier 0: field 'write_bandwidth' must be at most "
     "1e+15, got 1e+300" + SCHEMA),
    (board_with("clock_hz", "[" + "1, " * 1000 + "]"),
     "board file {p}, board 'nucleo-f767zi': field 'clock_hz' must be an integer, got [1, 1, 1, "
     "1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,..." + SCHEMA),
    ("cores = 5\n" + board_table(),
     "board file {p}: 'cores' must be a table of [cores.<core>] tables" + SCHEMA),
    (b"\xff\xfe[boards]\n",
     "cannot read board file {p}: 'utf-8' codec can't decode byte 0xff in position 0: invalid "
     "start byte" + PATH_HINT),
], ids=["dotted-keys", "inline-tables", "huge-int", "5000-digits", "minus-inf", "1e300",
        "list-for-int", "cores-not-a-table", "not-utf8"])
def test_bad_board_files(tmp_path: Path, text: str | bytes, message: str) -> None:
    assert _board_error(tmp_path, text) == message


def test_board_file_at_the_limit_is_read(tmp_path: Path) -> None:
    text = board_table()
    padding = MAX_BOARD_FILE_BYTES - len(text.encode()) - 1
    path = write(tmp_path / "b.toml", text + "#" * padding + "\n")
    assert path.stat().st_size == MAX_BOARD_FILE_BYTES
    assert "nucleo-f767zi" in load_boards(path)
    write(path, text + "#" * (padding + 1) + "\n")
    assert "over the limit" in _board_error(tmp_path, path.read_bytes())


# --------------------------------------------------------------------------- arrays in-process


def _arrays(path: Path, budget: ArrayBudget | None = None) -> dict[str, np.ndarray]:
    return read_arrays(path, "file", "h", budget or ArrayBudget())


def _array_error(make: Callable[[Path], Path], tmp_path: Path) -> str:
    with pytest.raises(ArrayFileError) as info:
        _arrays(make(tmp_path))
    return info.value.message


@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    np.asfortranarray(np.arange(24, dtype=">f8").reshape(2, 3, 4)),
    np.array(3.5), np.zeros((0, 5), np.int16), np.arange(10, dtype=np.uint8)[::2],
], ids=["c-order", "fortran-big-endian", "scalar", "empty", "strided"])
def test_arrays_round_trip(tmp_path: Path, array: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", array)
    np.savez(tmp_path / "s.npz", first=array, second=array[..., None])
    np.savez_compressed(tmp_path / "c.npz", only=array)
    for got in (_arrays(tmp_path / "a.npy")[""], read_npy(tmp_path / "a.npy", "f", "h"),
                _arrays(tmp_path / "s.npz")["first"], _arrays(tmp_path / "c.npz")["only"]):
        np.testing.assert_array_equal(got, array)
        assert got.dtype == array.dtype and got.shape == array.shape
    assert sorted(_arrays(tmp_path / "s.npz")) == ["first", "second"]


def _lying_zip_size(directory: Path) -> Path:
    """The zip's headers say the member is 200 bytes; 16 MiB inflate."""
    return Bomb(npy_header((16,), "|i1"), 16).write(directory / "x.npz", declared_size=200)


def _short_member(directory: Path) -> Path:
    return npz(directory / "x.npz", {"x.npy": npy_header((100,), "|i1") + bytes(50)})


def _bzip2_member(directory: Path) -> Path:
    return npz(directory / "x.npz", {"x.npy": npy_bytes(np.zeros(4))}, zipfile.ZIP_BZIP2)


def _two_named_x(directory: Path) -> Path:
    return npz(directory / "x.npz", {"x.npy": npy_bytes(np.zeros(2)), "x": npy_bytes(np.ones(2))})


def _objects(directory: Path) -> Path:
    return npz(directory / "x.npz", {"x.npy": npy_bytes(np.array([{"a": 1}], dtype=object))})


def _long_header(directory: Path) -> Path:
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 31) + b"{" * 100
    return write(directory / "x.npy", data)


def _negative_shape(directory: Path) -> Path:
    return write(directory / "x.npy", npy_header((-1, 4)) + bytes(16))


def _subarray(directory: Path) -> Path:
    return write(directory / "x.npy", npy_header((2,), "<f4", False).replace(
        b"'<f4'", b"('<f4', (3,))", 1))


def _not_npy_member(directory: Path) -> Path:
    return npz(directory / "x.npz", {"notes.txt": b"hello, world"})


def _central_directory(directory: Path) -> Path:
    """The end record claims 1 member; the table of members holds 60,000 (of 7.8 MB)."""
    members = {f"{i:080d}.npy": b"" for i in range(60_000)}
    path = npz(directory / "x.npz", members, zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    struct.pack_into("<2H", data, len(data) - 22 + 8, 1, 1)
    return write(path, bytes(data))


@pytest.mark.parametrize(("make", "message"), [
    (_lying_zip_size, "cannot read file: Bad CRC-32 for file 'x.npy'"),
    (_short_member, "file member 'x' declares an array of shape (100,) (100 bytes) but holds "
     "50 bytes"),
    (_bzip2_member, "cannot read file member 'x': compression method 12 (numpy stores or "
     "deflates)"),
    (_two_named_x, "file holds two members named 'x'"),
    (_objects, "cannot read file member 'x': Object arrays cannot be loaded when "
     "allow_pickle=False"),
    (_long_header, f"cannot read file: its header claims {1 << 31} bytes, over the limit of "
     f"{MAX_HEADER_BYTES} bytes"),
    (_negative_shape, "cannot read file: its header declares the shape (-1, 4)"),
    (_subarray, "cannot read file: its header declares the dtype ('<f4', (3,))"),
    (_not_npy_member, "cannot read file: the magic string is not correct; expected "
     "b'\\x93NUMPY', got b'hello,'"),
    (_central_directory, "file has a table of members of 7800000 bytes, over the limit of "
     "4194304 bytes"),
], ids=["zip-size-lies", "short-member", "bzip2", "duplicate", "objects", "header-length",
        "negative-shape", "subarray", "not-npy-member", "central-directory"])
def test_bad_arrays(tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    assert _array_error(make, tmp_path) == message


def test_the_budget_spans_every_file(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(100, np.float32))
    np.save(tmp_path / "b.npy", np.zeros(100, np.float32))
    budget = ArrayBudget(limit_bytes=600, limit_arrays=5)
    _arrays(tmp_path / "a.npy", budget)
    with pytest.raises(ArrayFileError) as info:
        _arrays(tmp_path / "b.npy", budget)
    assert info.value.message == ("file declares an array of shape (100,) (400 bytes), with the "
                                  "400 bytes read before, over the limit of 600 bytes")
    np.save(tmp_path / "d.npy", np.zeros(11, np.int8))
    with pytest.raises(ArrayFileError, match=r"shape \(11,\) \(11 values\), over the limit of 10 "):
        _arrays(tmp_path / "d.npy", ArrayBudget(limit_values=10))
    np.savez(tmp_path / "c.npz", *[np.zeros(1)] * 5)
    with pytest.raises(ArrayFileError, match="holds 5 arrays, with the 1 array read before, "
                                             "over the limit of 5 arrays"):
        _arrays(tmp_path / "c.npz", budget)


def test_calibration_fifo_and_folder_entries_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    with pytest.raises(CalibrationError) as info:
        ptq.load_calibration(fifo)
    assert str(info.value) == (f"calibration file '{fifo}' is a named pipe (FIFO), not a regular "
                               "file" + CALIBRATION)
    folder = tmp_path / "folder"
    folder.mkdir()
    np.save(folder / "a.npy", np.zeros((2, 3), np.float32))
    (folder / "b.npy").symlink_to("/dev/zero")
    with pytest.raises(CalibrationError, match="b.npy' is a character device"):
        ptq.load_calibration(folder)
    (folder / "b.npy").unlink()
    os.mkfifo(folder / "notes.txt")
    assert len(ptq.load_calibration(folder).arrays[""]) == 1


def test_calibration_folder_of_too_many_files(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibration_data, "MAX_ARRAYS", 3)
    for i in range(4):
        np.save(tmp_path / f"{i}.npy", np.zeros(3, np.float32))
    with pytest.raises(CalibrationError, match="holds more than 3 .npy or .npz files"):
        ptq.load_calibration(tmp_path)


def test_calibration_samples_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """A sample may be one value: their number is bounded apart from the arrays' size."""
    monkeypatch.setattr(ptq, "MAX_CALIBRATION_SAMPLES", 5)
    model = ptq.load_float_model(float_model(tmp_path))
    batch = np.zeros((4, 3, 8, 8), np.float32)
    assert len(ptq.calibration_samples(model, ptq.Calibration({"": [batch, batch[0]]}))) == 5
    with pytest.raises(CalibrationError) as info:
        ptq.calibration_samples(model, ptq.Calibration({"": [batch, batch]}))
    assert str(info.value) == ("the calibration data of input 'input' holds more than 5 samples "
                               "(hint: calibrate on a representative subset: a few hundred "
                               "samples)")


def test_run_input_reads_through_the_bounded_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "in.npy"
    os.mkfifo(fifo)
    with pytest.raises(McuflowError) as info:
        read_npy(fifo, f"input {fifo}", "save the input array with numpy.save")
    assert str(info.value) == f"input {fifo} is a named pipe (FIFO), not a regular file" + NPY_HINT


# --------------------------------------------------------------------------- verify in chunks


@pytest.fixture(scope="module")
def small() -> tuple[Graph, Plan]:
    graph = read_tflite(base_model())
    return graph, plan_memory(graph, 0.2)


def test_runs_are_bounded() -> None:
    for runs in (0, -3, host.MAX_RUNS + 1):
        with pytest.raises(McuflowError, match=f"between 1 and 1,000,000, not {runs}"):
            host.check_runs(runs)
    host.check_runs(host.MAX_RUNS)


def test_chunks_are_deterministic_and_bounded(small: tuple[Graph, Plan],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    graph, _ = small
    whole = host.random_inputs(graph, 7, seed=4)
    assert all(np.array_equal(a, b) for a, b in
               zip(whole, next(host.input_chunks(graph, 7, seed=4)), strict=True))
    monkeypatch.setattr(host, "CHUNK_RUNS", 3)
    chunks = list(host.input_chunks(graph, 7, seed=4))
    assert [len(c[0]) for c in chunks] == [3, 3, 1]
    again = list(host.input_chunks(graph, 7, seed=4))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(chunks, again, strict=True))
    monkeypatch.setattr(host, "CHUNK_BYTES", 500)
    assert host.chunk_runs(graph) == 2  # records of 192 + 4 bytes
    monkeypatch.setattr(host, "CHUNK_BYTES", 10)
    assert host.chunk_runs(graph) == 1


def test_compare_runs_counts_a_mismatch_in_a_later_chunk(small: tuple[Graph, Plan],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    graph, plan = small
    monkeypatch.setattr(host, "CHUNK_RUNS", 2)
    interpreter = Interpreter(graph)
    calls: list[int] = []

    def execute(inputs: list[np.ndarray]) -> list[np.ndarray]:
        outputs = [np.stack(o) for o in zip(*(interpreter.run([x[r] for x in inputs]).outputs
                                              for r in range(len(inputs[0]))), strict=True)]
        if len(calls) == 2:
            outputs[0][1] ^= 1
        calls.append(len(inputs[0]))
        return outputs

    compared = host.compare_runs(graph, 7, 0, execute, order=plan.order, litert=True)
    assert calls == [2, 2, 2, 1]
    assert compared.mismatches == 1
    assert compared.litert_mismatches in (None, 1)


def test_verify_host_in_chunks_is_bit_exact(small: tuple[Graph, Plan],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    graph, plan = small
    monkeypatch.setattr(host, "CHUNK_RUNS", 3)
    result = host.verify_host(graph, plan, runs=7, seed=2, sanitize=False)
    assert result.bit_exact and result.runs == 7 and result.mismatches == 0


def test_verify_host_memory_does_not_grow_with_runs(small: tuple[Graph, Plan]) -> None:
    """Peak Python and numpy allocations (tracemalloc) of 50 and of 3000 runs."""
    graph, plan = small
    peaks = []
    for runs in (50, 3000):
        tracemalloc.start()
        result = host.verify_host(graph, plan, runs=runs, seed=1, sanitize=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert result.bit_exact and result.runs == runs
    assert peaks[1] < peaks[0] + (4 << 20), peaks


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None
                    or shutil.which("arm-none-eabi-gcc") is None, reason="no Arm toolchain")
def test_verify_cortexm_in_chunks_counts_per_inference(small: tuple[Graph, Plan],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from mcuflow.toolchain.qemu import plan_for, verify_cortexm

    graph, _ = small
    plan = plan_for(graph, "cortex-m4")
    one = verify_cortexm(graph, plan, "cortex-m4", "nucleo-f429zi", runs=1, seed=5)
    monkeypatch.setattr(host, "CHUNK_RUNS", 2)
    chunked = verify_cortexm(graph, plan, "cortex-m4", "nucleo-f429zi", runs=5, seed=5,
                             profile=True)
    assert chunked.bit_exact and chunked.runs == 5 and chunked.mismatches == 0
    assert chunked.instructions_per_tick == one.instructions_per_tick
    assert chunked.stack_bytes == one.stack_bytes
    assert math.isclose(chunked.instructions, one.instructions, rel_tol=0.05)
    profiled = sum(layer.instructions for layer in chunked.layers)
    assert math.isclose(profiled, one.instructions, rel_tol=0.1)


@pytest.mark.parametrize("name", ["mcuflow_model.h", "mcuflow_weights.c"])
def test_verify_directory_refuses_a_pipe_among_its_sources(small: tuple[Graph, Plan],
                                                           tmp_path: Path, name: str) -> None:
    graph, plan = small
    project = generate_project(graph, plan, tmp_path / "project").path
    (project / name).unlink()
    os.mkfifo(project / name)
    with pytest.raises(McuflowError) as info:
        host.verify_directory(project, graph, runs=2)
    assert str(info.value) == (f"'{project / name}' is a named pipe (FIFO), not a regular file "
                               "(hint: regenerate the project with `mcuflow compile`)")
