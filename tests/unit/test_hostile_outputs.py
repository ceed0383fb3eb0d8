"""Hostile or careless output paths: no user file deleted, no write through a link, one line each.

Every case runs the real `mcuflow` command in a child process (tests/child.py), checks its exact
one-line error and exit code, and that nothing it was not asked to write was touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mcuflow.cli
from mcuflow import api, outputs
from mcuflow.__main__ import RECEIVED, STOPPING
from mcuflow.__main__ import main as mcuflow_main
from mcuflow.cli import _print_json
from mcuflow.errors import OutputError
from mcuflow.outputs import MANIFEST
from tests.child import run_mcuflow
from tests.unit.test_broken_inputs import ONNX_SHAPE, onnx_edited

MODEL = api.demo_model_path()
WRITABLE = " (hint: check that the parent directory exists and is writable)"
FORCE = (" (hint: choose a new output directory, or pass --force to replace only mcuflow's own "
         "files and keep these)")


def _tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` (links as their target text), by relative path."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = os.readlink(path).encode()
        elif path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def _compile(out: Path, *extra: str) -> list[str | Path]:
    return ["compile", MODEL, "-o", out, *extra]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project compile wrote, to copy from."""
    out = tmp_path_factory.mktemp("first") / "project"
    assert run_mcuflow(_compile(out)).code == 0
    return out


def _copy(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_a_firmware_folder_is_never_replaced(tmp_path: Path) -> None:
    """The reported hole: a folder holding a file named mcuflow_model.h was deleted whole."""
    firmware = tmp_path / "firmware"
    firmware.mkdir()
    (firmware / "main_app.c").write_text("int main(void) { return 0; }\n")
    (firmware / "mcuflow_model.h").write_text("/* an old copy */\n")
    before = _tree(tmp_path)
    for extra in ((), ("--force",)):
        done = run_mcuflow(_compile(firmware, *extra))
        done.assert_one_line(f"'{firmware}' exists and is not an mcuflow project (it holds "
                             "main_app.c, mcuflow_model.h) (hint: choose a new or empty output "
                             "directory)")
        done.assert_bounded()
        assert _tree(tmp_path) == before


def test_a_project_is_replaced_only_as_mcuflow_wrote_it(tmp_path: Path, project: Path) -> None:
    out = _copy(project, tmp_path / "out")
    manifest = json.loads((out / MANIFEST).read_text())
    assert sorted(manifest["files"]) == sorted(p.name for p in out.iterdir() if p.name != MANIFEST)
    (out / "model.elf").write_bytes(b"what `make` built")
    assert run_mcuflow(_compile(out)).code == 0
    assert _tree(out) == _tree(project)


def test_added_and_changed_files_are_kept(tmp_path: Path, project: Path) -> None:
    out = _copy(project, tmp_path / "out")
    (out / "notes.txt").write_text("my measurements")
    (out / "src").mkdir()
    (out / "src" / "app.c").write_text("void app(void) {}\n")
    with (out / "main.c").open("a") as main:
        main.write("/* my change */\n")
    before = _tree(tmp_path)
    done = run_mcuflow(_compile(out))
    done.assert_one_line(f"'{out}' holds files mcuflow did not write (notes.txt, src) and files "
                         "changed since mcuflow wrote them (main.c); replacing it would lose "
                         "them" + FORCE)
    done.assert_bounded()
    assert _tree(tmp_path) == before
    assert run_mcuflow(_compile(out, "--force")).code == 0
    after = _tree(out)
    assert after.pop("notes.txt") == b"my measurements"
    assert after.pop("src/app.c") == b"void app(void) {}\n"
    assert after == _tree(project)


def test_a_link_is_never_followed_or_replaced(tmp_path: Path, project: Path) -> None:
    target = _copy(project, tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(target)
    before = _tree(tmp_path)
    done = run_mcuflow(_compile(link))
    done.assert_one_line(
        f"'{link}' is a symbolic link; mcuflow writes the project only to a real directory "
        "(hint: pass the directory the link points to)")
    done.assert_bounded()
    assert _tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


@pytest.mark.parametrize(("where", "message"), [
    ("{d}/afile/sub", "cannot write project '{d}/afile/sub': Not a directory" + WRITABLE),
    ("{d}/afile", "'{d}/afile' exists and is not a directory (hint: choose a new output "
                  "directory)"),
    ("/sys/kernel/mcuflow-out", "cannot write project '/sys/kernel/mcuflow-out': Operation "
                                "not permitted" + WRITABLE),
    ("/proc/mcuflow-out", "cannot write project '/proc/mcuflow-out': No such file or "
                          "directory" + WRITABLE),
])
def test_unwritable_project_paths(where: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("keep")
    done = run_mcuflow(_compile(Path(where.replace("{d}", str(tmp_path)))))
    done.assert_one_line(message.replace("{d}", str(tmp_path)))
    done.assert_bounded()
    assert _tree(tmp_path) == {"afile": b"keep"}


def test_a_full_disk_leaves_nothing_behind(tmp_path: Path) -> None:
    """A real 64 KiB tmpfs: the project (about 100 KB) does not fit."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        done = run_mcuflow(_compile(disk / "out"))
        done.assert_one_line(f"cannot write project '{disk}/out': No space left on device "
                             "(hint: free some space on that disk, or write elsewhere)")
        done.assert_bounded()
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same without a mount: the fourth write fails with ENOSPC."""
    calls = []
    original = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        calls.append(self)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OutputError, match="No space left on device"):
        api.compile_model(MODEL, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("command", "message"), [
    (["analyze", MODEL, "--plot", "{d}/missing/plot.png"],
     "cannot write plot '{d}/missing/plot.png': No such file or directory" + WRITABLE),
    (["plan", MODEL, "--plot", "{d}"],
     "cannot write plot '{d}': it is a directory (hint: name a file inside it)"),
    (["analyze", MODEL, "--plot", "/dev/full"],
     "cannot write plot '/dev/full': it exists and is not a regular file (hint: name a "
     "regular file)"),
    (["run", MODEL, "--input", "{d}/x.npy", "--output", "{d}/missing/y.npy"],
     "cannot write output '{d}/missing/y.npy': No such file or directory" + WRITABLE),
    (["run", MODEL, "--input", "{d}/x.npy", "--dump-intermediates", "{d}/x.npy"],
     "'{d}/x.npy' exists and is not a directory (hint: choose a new output directory)"),
])
def test_unwritable_file_outputs(command: list[str], message: str, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 49, 10, 1), np.int8))
    before = _tree(tmp_path)
    done = run_mcuflow([str(a).replace("{d}", str(tmp_path)) for a in command])
    done.assert_one_line(message.replace("{d}", str(tmp_path)))
    done.assert_bounded()
    assert _tree(tmp_path) == before


def test_dumps_replace_only_their_own_files(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 49, 10, 1), np.int8))
    dump = tmp_path / "dump"
    command = ["run", MODEL, "--input", tmp_path / "x.npy", "--dump-intermediates", dump]
    assert run_mcuflow(command).code == 0
    first = _tree(dump)
    assert run_mcuflow(command).code == 0
    assert _tree(dump) == first
    (dump / "mine.txt").write_text("keep")
    done = run_mcuflow(command)
    done.assert_one_line(f"'{dump}' holds files mcuflow did not write (mine.txt); replacing "
                         "it would lose them" + FORCE)
    assert (dump / "mine.txt").read_text() == "keep"


def test_model_writes_never_go_through_a_planted_link(tmp_path: Path) -> None:
    """`quantize -o q.tflite` wrote through `.q.tflite.tmp`: a link there overwrote its target."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    for name in (".q.tflite.tmp", "q.tflite"):
        (tmp_path / name).symlink_to(victim)
    api.write_model(b"model bytes", tmp_path / "q.tflite")
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "q.tflite").is_symlink()
    assert (tmp_path / "q.tflite").read_bytes() == b"model bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".q.tflite.tmp", "q.tflite", "victim"]


SIGNAL_MID_WRITE = """
import os, signal, sys
from pathlib import Path
chosen = getattr(signal, sys.argv.pop(1))
original = Path.write_bytes
calls = []
def write_bytes(self, data):
    calls.append(self)
    if len(calls) == 3:
        os.kill(os.getpid(), chosen)
    return original(self, data)
Path.write_bytes = write_bytes
sys.argv = ["mcuflow", *sys.argv[1:]]
from mcuflow.__main__ import main
main()
"""


def _signalled_compile(signal_name: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SIGNAL_MID_WRITE, signal_name, "compile",
                           str(MODEL), "-o", str(out)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("name", "code", "said"), [("SIGINT", 130, "interrupted"),
                                                    ("SIGTERM", 143, "terminated")])
def test_ctrl_c_or_sigterm_while_writing_leaves_nothing(name: str, code: int, said: str,
                                                        tmp_path: Path) -> None:
    """The signal after the third file is written; CP-SAT ran before and must not keep it."""
    done = _signalled_compile(name, tmp_path / "out")
    assert (done.returncode, done.stderr) == (code, f"mcuflow: {said}\n")
    assert list(tmp_path.iterdir()) == []


def test_the_next_compile_removes_what_a_killed_one_left(tmp_path: Path) -> None:
    """SIGKILL cannot be caught: the staging directory stays, and goes with the next run."""
    assert _signalled_compile("SIGKILL", tmp_path / "out").returncode == -signal.SIGKILL
    [leftover] = tmp_path.iterdir()
    assert leftover.name.startswith(".out.") and leftover.name.endswith(".tmp")
    look_alike = tmp_path / ".out.abcd1234.tmp"
    look_alike.mkdir()
    (look_alike / "thesis.tex").write_text("not mcuflow's")
    assert run_mcuflow(_compile(tmp_path / "out")).code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [look_alike.name, "out"]


def _catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler of its own for `signum` (Linux's SigCgt mask)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signum - 1) & 1)


@pytest.mark.parametrize("delay", [0.3, 1.5])
def test_ctrl_c_at_any_time_is_one_line(delay: float, tmp_path: Path) -> None:
    """A real SIGINT, during start-up (the imports) or during the work.

    It is sent `delay` after the child handles SIGINT. One sent before that is ignored where
    the tests run as a background job (a shell's `&` ignores SIGINT, and children inherit
    it): under load, where the child took longer than `delay` to start, the command then ran
    to its end.
    """
    process = subprocess.Popen([sys.executable, "-m", "mcuflow", "verify", str(MODEL)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    started = time.monotonic()
    while not _catches(process.pid, signal.SIGINT) and time.monotonic() - started < 60:
        time.sleep(0.002)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr) == (130, "mcuflow: interrupted\n")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_a_library_swallows_still_stops_the_command(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare `except:` in code the command runs catches the Interrupted Ctrl-C raised.

    `mcuflow verify` then ran to its end and exited 0 (1 of 120 Ctrl-Cs sent at growing
    delays): the command still says it was interrupted, and exits 130.
    """
    def swallowing_cli() -> None:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler runs here and raises
        except:  # noqa: E722  (as the library does)
            pass

    monkeypatch.setattr(mcuflow.cli, "main", swallowing_cli)
    saved = {signum: signal.getsignal(signum) for signum in STOPPING}
    try:
        with pytest.raises(SystemExit) as stopped:
            mcuflow_main()
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        RECEIVED.clear()
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "mcuflow: interrupted\n"


def test_json_is_strict(capsys: pytest.CaptureFixture[str]) -> None:
    _print_json({"sqnr_db": float("inf"), "layers": [{"error": float("nan")}, 1.5]})
    text = capsys.readouterr().out
    assert json.loads(text, parse_constant=_not_json) == {"sqnr_db": None,
                                                          "layers": [{"error": None}, 1.5]}


def test_manifest_from_another_tool_is_not_trusted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "data.bin").write_bytes(b"user data")
    (out / MANIFEST).write_text(json.dumps({"format": outputs.MANIFEST_FORMAT,
                                            "files": {"../data.bin": "0" * 64}}))
    with pytest.raises(OutputError, match="is not an mcuflow project"):
        api.compile_model(MODEL, out)
    assert (out / "data.bin").read_bytes() == b"user data"


def test_a_successful_float_run_prints_nothing_on_stderr(tmp_path: Path) -> None:
    """Stray numpy RuntimeWarnings reached stderr on commands that succeed."""
    model = tmp_path / "model.onnx"
    model.write_bytes(onnx_edited(lambda edited: None)())
    calibration = tmp_path / "cal.npy"
    np.save(calibration, np.random.default_rng(3).standard_normal((4, *ONNX_SHAPE[1:]),
                                                                  np.float32) * 1e3)
    for command in (["analyze", model, "--calibration", calibration, "--json"],
                    ["quantize", model, "--calibration", calibration, "-o", tmp_path / "q.tflite",
                     "--report", "--json"]):
        done = run_mcuflow(command)
        assert (done.code, done.stderr) == (0, "")
        json.loads(done.stdout, parse_constant=_not_json)
        done.assert_bounded()


def _not_json(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")
