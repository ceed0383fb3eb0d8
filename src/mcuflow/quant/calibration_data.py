"""Calibration data files: an .npy file, an .npz file or a folder of them, read as arrays."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuflow.frontends.arrays import MAX_ARRAYS, ArrayBudget, ArrayFileError, read_arrays
from mcuflow.quant.calibrate import CalibrationError

_CALIBRATION_HINT = "pass an .npy or .npz file, or a folder of them, holding float samples"


@dataclass(frozen=True)
class Calibration:
    """Calibration arrays by graph input name ('' for a model's only input), model layout.

    Each array holds one sample (the input's shape, with or without its batch axis of 1) or
    several along axis 0.
    """

    arrays: dict[str, list[np.ndarray]]


def load_calibration(path: Path | str) -> Calibration:
    """Read calibration data: an .npy file, an .npz file or a folder of them.

    An .npz keys its arrays by input name when the model has several inputs. All the arrays
    together hold at most MAX_ARRAY_BYTES bytes, MAX_ARRAY_VALUES values and MAX_ARRAYS arrays
    (frontends.arrays), each .npy or .npz member checked from its header before it is read.
    """
    path = Path(path)
    if path.is_dir():
        files = _folder_files(path)
    elif path.exists():
        files = [path]
    else:
        raise CalibrationError(f"no such calibration file or folder: '{path}'", _CALIBRATION_HINT)
    budget = ArrayBudget()
    arrays: dict[str, list[np.ndarray]] = {}
    for file in files:
        for key, array in _read_arrays(file, budget).items():
            arrays.setdefault(key, []).append(array)
    return Calibration(arrays)


def _folder_files(folder: Path) -> list[Path]:
    """The .npy and .npz entries of a folder (each must be a regular file when it is read)."""
    try:
        entries = (p for p in folder.iterdir() if p.suffix.lower() in (".npy", ".npz"))
        files = sorted(itertools.islice(entries, MAX_ARRAYS + 1))
    except OSError as error:
        raise CalibrationError(f"cannot read calibration folder '{folder}': "
                               f"{error.strerror or error}", _CALIBRATION_HINT) from None
    if not files:
        raise CalibrationError(f"calibration folder '{folder}' holds no .npy or .npz file",
                               _CALIBRATION_HINT)
    if len(files) > MAX_ARRAYS:
        raise CalibrationError(f"calibration folder '{folder}' holds more than {MAX_ARRAYS} "
                               ".npy or .npz files", _CALIBRATION_HINT)
    return files


def _read_arrays(file: Path, budget: ArrayBudget) -> dict[str, np.ndarray]:
    """The numeric arrays of one .npy ('' key) or .npz file (its keys; '' if only one)."""
    if file.suffix.lower() not in (".npy", ".npz"):
        raise CalibrationError(f"calibration file '{file}' is neither .npy nor .npz",
                               _CALIBRATION_HINT)
    try:
        arrays = read_arrays(file, f"calibration file '{file}'", _CALIBRATION_HINT, budget)
    except ArrayFileError as error:
        raise CalibrationError(error.message, error.hint) from None
    if not arrays:
        raise CalibrationError(f"calibration file '{file}' holds no arrays", _CALIBRATION_HINT)
    for key, array in arrays.items():
        if array.dtype.kind not in "fiu":
            raise CalibrationError(f"calibration file '{file}' holds {array.dtype} data "
                                   f"{('under ' + repr(key)) if key else ''}", _CALIBRATION_HINT)
    return arrays if len(arrays) != 1 else {"": next(iter(arrays.values()))}
