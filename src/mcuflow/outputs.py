"""Writing what a user names as output: atomic, never over files mcuflow did not write."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mcuflow.errors import OutputError

MANIFEST = "mcuflow_manifest.json"
"""Written into every directory mcuflow writes: each file's relative path and SHA-256."""
MANIFEST_FORMAT = "mcuflow-manifest-1"
MAX_MANIFEST_BYTES = 1 << 20
_LISTED = 3
_WRITABLE_HINT = "check that the parent directory exists and is writable"
_FORCE_HINT = ("choose a new output directory, or pass --force to replace only mcuflow's own "
               "files and keep these")


@dataclass(frozen=True)
class Manifest:
    """The files mcuflow wrote into a directory, and the names its build scripts create there.

    `files` are keyed by relative POSIX path (`src/kws_model.c`); the folders on those paths
    are mcuflow's too. `build_products` (e.g. `model.elf`, `build`) are names in the directory
    itself that the generated Makefile's `clean` removes: regenerating the directory removes
    them too.
    """

    files: dict[str, str]
    build_products: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        """The manifest as JSON."""
        data = {"format": MANIFEST_FORMAT, "files": self.files,
                "build_products": list(self.build_products)}
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("ascii")

    @staticmethod
    def read(directory: Path) -> Manifest | None:
        """The manifest of `directory`, or None when it has none or one mcuflow cannot read."""
        path = directory / MANIFEST
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                return None
            with path.open("rb") as file:
                data = json.loads(file.read(MAX_MANIFEST_BYTES + 1))
        except (OSError, ValueError):
            return None
        return Manifest.from_json(data)

    @staticmethod
    def from_json(data: object) -> Manifest | None:
        """A manifest from parsed JSON, or None when it is not one mcuflow wrote."""
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            return None
        files, products = data.get("files"), data.get("build_products", [])
        if not isinstance(files, dict) or not isinstance(products, list):
            return None
        if not all(isinstance(n, str) and _plain_name(n) for n in products) or not all(
                isinstance(n, str) and isinstance(digest, str) for n, digest in files.items()):
            return None
        if not _relative_names(list(files)):
            return None
        return Manifest(dict(files), tuple(products))

    @property
    def folders(self) -> set[str]:
        """The folders on the paths of the files (`src` for `src/kws_model.c`)."""
        return _folders(self.files)


def _plain_name(name: str) -> bool:
    """A file name in the directory itself: no separator, not '.', '..' or the manifest."""
    return bool(name) and "/" not in name and "\0" not in name and name not in (
        ".", "..", MANIFEST)


def _relative_names(names: list[str]) -> bool:
    """Relative POSIX paths below a directory, none of them a folder of another.

    No absolute path, no empty, '.' or '..' component, no backslash or NUL, not the manifest.
    """
    for name in names:
        parts = name.split("/")
        if name == MANIFEST or "\0" in name or "\\" in name or any(
                part in ("", ".", "..") for part in parts):
            return False
    return not _folders(names) & set(names)


def _folders(names: Iterable[str]) -> set[str]:
    return {name.rsplit("/", depth)[0] for name in names for depth in range(1, name.count("/") + 1)}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _as_bytes(data: str | bytes) -> bytes:
    return data if isinstance(data, bytes) else data.encode("ascii")


@contextmanager
def _reported(what: str, path: Path, hint: str = _WRITABLE_HINT) -> Iterator[None]:
    """Turn an OSError while writing `path` into one OutputError line."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.ENOSPC:
            hint = "free some space on that disk, or write elsewhere"
        raise OutputError(f"cannot write {what} '{path}': {reason}", hint) from None


def write_file(path: Path | str, data: bytes, what: str = "output") -> None:
    """Write `data` as the regular file `path`, atomically.

    The bytes go to an unpredictably named temporary sibling (mkstemp), which is renamed over
    `path` once complete: `path` is either the old file or the whole new one, and a link at
    `path` is replaced, never written through. Devices, pipes and directories are refused.
    """
    path = Path(path)
    _check_file_target(path, what)
    with _reported(what, path):
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp",
                                                 dir=path.parent)
        try:
            with os.fdopen(descriptor, "wb") as file:
                os.fchmod(file.fileno(), 0o666 & ~_umask())
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _check_file_target(path: Path, what: str) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise OutputError(f"cannot write {what} '{path}': {error.strerror or error}",
                          _WRITABLE_HINT) from None
    if stat.S_ISDIR(mode):
        raise OutputError(f"cannot write {what} '{path}': it is a directory",
                          "name a file inside it")
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OutputError(f"cannot write {what} '{path}': it exists and is not a regular file",
                          "name a regular file")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_directory(files: Mapping[str, str | bytes], out_dir: Path | str, *,
                    what: str = "project", build_products: tuple[str, ...] = (),
                    force: bool = False) -> Path:
    """Write `files` (relative path -> ASCII text or bytes) as the directory `out_dir`.

    Returns its absolute path. A name such as `src/kws_model.c` creates the folder `src`.

    A new or empty directory, or one holding exactly what an earlier mcuflow run listed in its
    manifest, is replaced all or nothing: the files are written to a temporary sibling that is
    renamed into place. Anything else in it (a file mcuflow did not write, or one changed since)
    is refused, and with `force` only the files the manifest lists are replaced, one by one.
    """
    out_dir = Path(out_dir).absolute()
    stored = {name: _as_bytes(data) for name, data in files.items()}
    if not _relative_names(list(stored)):
        raise ValueError("output file names must be relative paths below the directory")
    manifest = Manifest({name: _digest(data) for name, data in sorted(stored.items())},
                        build_products)
    stored[MANIFEST] = manifest.to_bytes()
    with _reported(what, out_dir):
        old = _existing(out_dir, what, force)
        if old is not None and force:
            _replace_listed(stored, out_dir, old)
        else:
            _replace_whole(stored, out_dir)
    return out_dir


def _existing(out_dir: Path, what: str, force: bool) -> Manifest | None:
    """The manifest of an existing `out_dir` that may be replaced; None when there is none."""
    try:
        mode = out_dir.lstat().st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        raise OutputError(f"'{out_dir}' is a symbolic link; mcuflow writes the {what} only "
                          "to a real directory", "pass the directory the link points to")
    if not stat.S_ISDIR(mode):
        raise OutputError(f"'{out_dir}' exists and is not a directory",
                          "choose a new output directory")
    entries = sorted(os.listdir(out_dir))
    if not entries:
        return None
    manifest = Manifest.read(out_dir)
    if manifest is None:
        raise OutputError(f"'{out_dir}' exists and is not an mcuflow {what} (it holds "
                          f"{_names(entries)})", "choose a new or empty output directory")
    added, changed = _foreign(out_dir, manifest)
    if (added or changed) and not force:
        found = [f"files mcuflow did not write ({_names(added)})" if added else "",
                 f"files changed since mcuflow wrote them ({_names(changed)})" if changed else ""]
        raise OutputError(f"'{out_dir}' holds {' and '.join(filter(None, found))}; replacing "
                          "it would lose them", _FORCE_HINT)
    return manifest if added or changed else None


def _foreign(out_dir: Path, manifest: Manifest) -> tuple[list[str], list[str]]:
    """Entries of `out_dir` mcuflow did not write, and those of its files changed since.

    Relative paths, sorted. The manifest's folders are walked (never through a link); anything
    else where one of them should be is an entry mcuflow did not write.
    """
    added, changed = [], []
    folders, pending = manifest.folders, [""]
    while pending:
        folder = pending.pop()
        for entry in os.listdir(out_dir / folder):
            name = f"{folder}/{entry}" if folder else entry
            if not folder and (name == MANIFEST or name in manifest.build_products):
                continue
            if name in folders:
                (pending if _real_folder(out_dir / name) else added).append(name)
            elif name not in manifest.files:
                added.append(name)
            else:
                data = _read_regular(out_dir / name)
                if data is None or _digest(data) != manifest.files[name]:
                    changed.append(name)
    return sorted(added), sorted(changed)


def _real_folder(path: Path) -> bool:
    """A directory itself, not a link to one."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _read_regular(path: Path) -> bytes | None:
    """The bytes of a regular file (not through a link); None for anything else."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        return path.read_bytes()
    except OSError:
        return None


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n)[1:-1][:40] for n in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _replace_whole(stored: Mapping[str, bytes], out_dir: Path) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=_sibling_prefix(out_dir), suffix=".tmp",
                                    dir=out_dir.parent))
    try:
        for name in sorted(stored, key=lambda n: n != MANIFEST):
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(stored[name])
        staging.chmod(0o777 & ~_umask())
        _swap_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    """Rename `staging` to `out_dir`; an old `out_dir` (only mcuflow's files) is deleted after."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    if not any(out_dir.iterdir()):
        out_dir.rmdir()
        os.rename(staging, out_dir)
        return
    retired = Path(tempfile.mkdtemp(prefix=_sibling_prefix(out_dir), suffix=".old",
                                    dir=out_dir.parent))
    os.rename(out_dir, retired / "project")
    os.rename(staging, out_dir)
    shutil.rmtree(retired, ignore_errors=True)


def _sibling_prefix(out_dir: Path) -> str:
    return f".{out_dir.name[:64]}."


def _remove_leftovers(out_dir: Path) -> None:
    """Delete what a killed run (SIGKILL, power loss) left beside `out_dir`, and only that.

    A staging directory gets its manifest first, so a leftover one holds a manifest and
    nothing it does not list; a retired one holds one unchanged earlier output.
    """
    leftover = re.compile(re.escape(_sibling_prefix(out_dir)) + r"[a-z0-9_]{8}\.(tmp|old)")
    for sibling in out_dir.parent.iterdir():
        kind = leftover.fullmatch(sibling.name)
        if kind is None or sibling.is_symlink() or not sibling.is_dir():
            continue
        if kind.group(1) == "tmp" and _only_listed(sibling) or kind.group(1) == "old" and (
                os.listdir(sibling) == ["project"] and _unchanged(sibling / "project")):
            shutil.rmtree(sibling)


def _only_listed(directory: Path) -> bool:
    manifest = Manifest.read(directory)
    return manifest is not None and not _foreign(directory, manifest)[0]


def _unchanged(directory: Path) -> bool:
    manifest = Manifest.read(directory)
    if manifest is None or directory.is_symlink():
        return False
    added, changed = _foreign(directory, manifest)
    return not added and not changed


def _replace_listed(stored: Mapping[str, bytes], out_dir: Path, old: Manifest) -> None:
    """--force: write each file over its old version, drop old listed files, keep the rest.

    Folders are created as needed; one that is not a real directory (a link, a file) is refused
    rather than written through. Old folders left empty are removed.
    """
    for name in sorted(stored):
        _check_replaceable(out_dir, name, old)
    for name in sorted(stored):
        if name != MANIFEST:
            _make_folders(out_dir, name)
            write_file(out_dir / name, stored[name], "file")
    for name in sorted(set(old.files) - set(stored)):
        data = _read_regular(out_dir / name) if _in_real_folders(out_dir, name) else None
        if data is not None and _digest(data) == old.files[name]:
            (out_dir / name).unlink()
    new_folders = _folders(stored)
    for folder in sorted(old.folders - new_folders, key=lambda f: -f.count("/")):
        if _in_real_folders(out_dir, folder) and _real_folder(out_dir / folder) and not any(
                (out_dir / folder).iterdir()):
            (out_dir / folder).rmdir()
    write_file(out_dir / MANIFEST, stored[MANIFEST], "manifest")


def _check_replaceable(out_dir: Path, name: str, old: Manifest) -> None:
    """Refuse, before anything is written, a path that --force must not write.

    That is a folder or file that is not a plain one, or a file the old manifest does not list
    (the user's, which --force keeps).
    """
    folder = out_dir
    for part in name.split("/")[:-1]:
        folder = folder / part
        if folder.is_symlink() or folder.exists() and not folder.is_dir():
            raise OutputError(f"cannot write file '{out_dir / name}': '{folder}' is not a "
                              "folder", "move it away, or choose a new output directory")
    _check_file_target(out_dir / name, "file")
    path = out_dir / name
    if name not in (*old.files, MANIFEST) and (path.is_symlink() or path.exists()):
        raise OutputError(f"cannot write file '{path}': mcuflow did not write it, and "
                          "--force keeps such files", "move it away, or choose a new output "
                          "directory")


def _make_folders(out_dir: Path, name: str) -> None:
    """Create the folders on the path of file `name`; OutputError where one is not a folder."""
    folder = out_dir
    for part in name.split("/")[:-1]:
        folder = folder / part
        try:
            folder.mkdir()
        except FileExistsError:
            if not _real_folder(folder):
                raise OutputError(f"cannot write file '{out_dir / name}': '{folder}' is not a "
                                  "folder", "move it away, or choose a new output "
                                  "directory") from None


def _in_real_folders(out_dir: Path, name: str) -> bool:
    """Every folder on the path of `name` is a real directory (no link is followed)."""
    folder = out_dir
    for part in name.split("/")[:-1]:
        folder = folder / part
        if not _real_folder(folder):
            return False
    return True
