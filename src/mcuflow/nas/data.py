"""Datasets for the architecture search: digits, MNIST-1D, .npz files and image folders."""

from __future__ import annotations

import math
import os
import random
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from mcuflow.errors import McuflowError
from mcuflow.nas.space import columns
from mcuflow.quant.affine import affine_activation
from mcuflow.quant.calibrate import Range

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

T = TypeVar("T")
R = TypeVar("R")
Reading = Callable[[int, int], None]
"""Told (images read, images) as a folder's images are read."""

ZIP_MAGIC = b"PK\x03\x04"
"""The first bytes of a zip archive, as numpy.savez writes a .npz."""
HEIF_SUFFIXES = (".heic", ".heif")
"""HEIF photos (an iPhone's default), read through the pillow-heif plug-in (the nas extra)."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".bmp", ".tif", ".tiff", ".webp", ".gif",
                  ".avif", *HEIF_SUFFIXES)
"""The image files a class folder may hold (others are ignored)."""
READ_THREADS = min(4, os.cpu_count() or 1)
"""Images of a folder decoded at once (Pillow decodes and resizes without holding the GIL)."""
QUARTER_TURNS = frozenset({5, 6, 7, 8})
"""EXIF orientations that show an image turned a quarter (mirrored or not): rows become
columns."""
MIN_PER_CLASS = 5
"""The fewest samples of a class that still give every part of a 60/20/20 split one sample."""
MNIST1D_SEED = 42
"""The generator seed of MNIST-1D (the package's default: the published dataset)."""
TRAIN_BATCH = 64
"""Samples per training batch (a training split is trained in batches of this many)."""
INPUT_STEPS = 8
"""The fewest int8 steps of the quantised input a channel's standard deviation may span before
the search standardises the samples (standardization_for)."""
BATCH_NORM_EPS = 1e-5
"""The epsilon of the networks' batch norms (nas.supernet; torch's default)."""
SMALLEST_STD = 10 * BATCH_NORM_EPS ** 0.5
"""The smallest standard deviation of a channel the search takes as it comes: below it, the
first batch norm's epsilon weighs on the variance of what the first layer makes of it."""


class Layout(Enum):
    """How an .npz's x is read (--layout): its axes after the samples' N."""

    AUTO = "auto"
    """N x H x W x C images, uint8 N x H x W grey images, N x T x C or N x T series."""
    IMAGES = "images"
    """N x H x W x C images or N x H x W grey images, whatever the type of x."""
    SERIES = "series"
    """N x T x C series or N x T series of one channel, whatever the type of x."""


@dataclass(frozen=True)
class Dataset:
    """Labelled samples: x N x H x W x C (images) or N x T x C (series), y int64 N.

    x is float32, or uint8 pixels as 8-bit data stored them (their values are x / 255: see
    `values`), a quarter of the memory: 100,000 96 x 96 RGB photos take 2.8 GB, not 11.
    `labels` names the classes 0..K-1 as the data named them (the labels of a .npz file in
    sorted order, or the class folders); empty: the indices themselves.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    classes: int
    labels: tuple[str, ...] = ()
    stored_shape: tuple[int, ...] = ()
    """One sample's shape as the data stored it, where larger than read (load_dataset's
    most_values); empty: as read."""

    def label(self, index: int) -> str:
        """The data's name of class `index`."""
        return self.labels[index] if self.labels else str(index)

    @property
    def dims(self) -> int:
        """2 for images, 1 for series."""
        return self.x.ndim - 2

    @property
    def native_size(self) -> int:
        """The image height or the series length."""
        return int(self.x.shape[1])

    @property
    def aspect(self) -> float:
        """Columns per row of the images (1 for series)."""
        return self.x.shape[2] / self.x.shape[1] if self.dims == 2 else 1.0

    @property
    def input_channels(self) -> int:
        """Channels per pixel or time step."""
        return int(self.x.shape[-1])

    @property
    def layout(self) -> Layout:
        """IMAGES or SERIES: how the samples were read."""
        return layout_of(self.x.shape[1:])

    def subset(self, indices: np.ndarray) -> Dataset:
        """The samples at `indices` (same name, class count and labels)."""
        return replace(self, x=self.x[indices], y=self.y[indices])


def layout_of(shape: tuple[int, ...]) -> Layout:
    """IMAGES for samples of `shape` H x W x C, SERIES for T x C."""
    return Layout.IMAGES if len(shape) == 3 else Layout.SERIES


def sample_form(shape: tuple[int, ...]) -> str:
    """One sample of `shape` (H x W x C or T x C) in words, e.g. '8 x 8 images of 1 channel'."""
    channels = f"{shape[-1]} channel{'' if shape[-1] == 1 else 's'}"
    if layout_of(shape) is Layout.IMAGES:
        return f"{shape[0]} x {shape[1]} images of {channels}"
    return f"series of {shape[0]} steps of {channels}"


@dataclass(frozen=True)
class Split:
    """Training, validation (ranks candidates) and test (only reported) parts of a dataset."""

    train: Dataset
    val: Dataset
    test: Dataset


@dataclass(frozen=True)
class Standardization:
    """The model's input is (x - mean) / std per channel, from the training split's samples.

    `blurred` is the channel that asked for it (standardization_for): one whose standard
    deviation was under SMALLEST_STD, else the one that spanned the fewest int8 steps of the
    input quantised as it came; `steps` how many it spanned.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    blurred: int
    steps: float
    raw_std: float
    """The blurred channel's standard deviation as it came."""

    def apply(self, data: Dataset) -> Dataset:
        """`data` with its samples standardised."""
        x = values(data.x)
        x -= np.float32(self.mean)
        x /= np.float32(self.std)
        return replace(data, x=x)

    def to_json(self) -> dict[str, object]:
        """The means and standard deviations, by channel."""
        return {"mean": list(self.mean), "std": list(self.std)}

    def sentence(self) -> str:
        """What the found model's input is, and why, in one sentence."""
        channels = len(self.mean)
        values = (f"means {_numbers(self.mean)} and standard deviations {_numbers(self.std)}"
                  if channels <= LISTED_CHANNELS else
                  f"means and standard deviations of its {channels} channels (report.json's "
                  "input_standardization)")
        reason = (f"x[..., {self.blurred}]'s standard deviation, {self.raw_std:.2g}, was "
                  f"too small beside the batch norms' epsilon ({BATCH_NORM_EPS:g}) to train "
                  "on as it came"
                  if self.raw_std < SMALLEST_STD else
                  f"a standard deviation of x[..., {self.blurred}] spanned {self.steps:.2g} "
                  "steps of the int8 input, whose range must contain zero")
        return (f"The models take x standardised per channel, (x - mean) / std, with the "
                f"training split's {values}: as it came, {reason}.")


LISTED_CHANNELS = 8
"""The most channels whose means and standard deviations Standardization.sentence lists."""


def _numbers(values: tuple[float, ...]) -> str:
    return ", ".join(f"{value:.6g}" for value in values)


def standardization_for(train: Dataset) -> Standardization | None:
    """The standardisation the samples need where a channel would be lost as they come.

    mcuflow's PTQ quantises the model's input as TFLite does (quant.affine.affine_activation):
    its range, widened to contain zero, in 255 steps. A channel far from zero, or narrow
    beside the others, then spans few steps per standard deviation (a barometer's 1,013 hPa
    +- 1.5: under one). A channel of tiny values (a magnetometer's field in tesla) is lost
    to training already: its standard deviation is under SMALLEST_STD. Where a channel that
    varies spans fewer than INPUT_STEPS over the training samples' range or is that small,
    and every one spans at least INPUT_STEPS once the channels are standardised with the
    training split's mean and standard deviation (a constant channel's taken as 1), that
    standardisation; else None (a channel of rare outliers, standardised, widens the range
    as much as it gains).
    """
    mean, std, lowest, highest = _channel_statistics(train.x)
    varying = np.flatnonzero(std > 0)
    steps = std / _input_scale(lowest.min(), highest.max())
    small = varying[std[varying] < SMALLEST_STD]
    if not len(varying) or (steps[varying].min() >= INPUT_STEPS and not len(small)):
        return None
    blurred = int(small[np.argmin(std[small])] if len(small)
                  else varying[np.argmin(steps[varying])])
    divisor = np.where(std > 0, std, 1.0)
    low, high = ((bound - mean) / divisor for bound in (lowest, highest))
    if 1 / _input_scale(low.min(), high.max()) < INPUT_STEPS:
        return None  # standardised, every varying channel's deviation is 1: the range decides
    return Standardization(tuple(mean.tolist()), tuple(divisor.tolist()), blurred,
                           float(steps[blurred]), float(std[blurred]))


def _channel_statistics(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per channel of the samples' values: mean, standard deviation, least and most (float64).

    READ_CHUNK samples at a time: float64 copies of a large training split would hold twice
    its float32 size.
    """
    chunks = range(0, len(x), READ_CHUNK)

    def each(chunk: int) -> np.ndarray:
        part = values(x[chunk:chunk + READ_CHUNK])
        return part.reshape(-1, part.shape[-1]).astype(np.float64)

    count, total = 0, np.zeros(x.shape[-1])
    lowest, highest = np.full(x.shape[-1], np.inf), np.full(x.shape[-1], -np.inf)
    for chunk in chunks:
        part = each(chunk)
        count, total = count + len(part), total + part.sum(axis=0)
        lowest, highest = np.minimum(lowest, part.min(axis=0)), np.maximum(highest,
                                                                           part.max(axis=0))
    mean = total / count
    squares = sum(((each(chunk) - mean) ** 2).sum(axis=0) for chunk in chunks)
    return mean, np.sqrt(squares / count), lowest, highest


def _input_scale(low: float, high: float) -> float:
    """The scale of the int8 input PTQ would give samples from `low` to `high` (with zero)."""
    return affine_activation(Range.including_zero(low, high)).scale[0]


def standardized(parts: Split, standardization: Standardization | None) -> Split:
    """The split's samples standardised as given (as they are for None)."""
    if standardization is None:
        return parts
    return Split(*(standardization.apply(part) for part in (parts.train, parts.val, parts.test)))


def load_dataset(spec: str, layout: Layout = Layout.AUTO, most_values: int | None = None,
                 reading: Reading | None = None) -> Dataset:
    """"digits", "mnist1d", a .npz file with x and y, or a folder of one sub-folder per class.

    `layout` says how an .npz's x is read; the others have theirs, which it must not contradict.
    Images of more than `most_values` values (rows x columns x channels) are read at the
    largest size within it (readable_size), shrunk as `resize` shrinks, a few at a time: a
    folder of 640 x 480 photos for a board of 32 KB of SRAM never holds them at full size.
    `reading` is told how many of a folder's images are read as they are.
    """
    path = Path(spec)
    if path.suffix == ".npz" and path.is_file():
        return _npz(path, layout, most_values)
    if spec == "digits":
        data = _digits()
    elif spec == "mnist1d":
        data = _mnist1d()
    elif path.is_dir():
        data = _image_folder(path, most_values, reading)
    else:
        raise McuflowError(f"no dataset {spec!r}",
                           "give digits, mnist1d, a .npz file with x and y, or a folder with "
                           "one sub-folder of images per class")
    if layout not in (Layout.AUTO, data.layout):
        raise McuflowError(f"--layout {layout.value} does not apply to {spec}: it holds "
                           f"{data.layout.value}", "--layout chooses how an .npz's x is read; "
                           "drop it for this data")
    return data


def split(dataset: Dataset, seed: int) -> Split:
    """Stratified 60/20/20 parts, drawn by a generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], ...] = ([], [], [])
    for label in range(dataset.classes):
        members = rng.permutation(np.flatnonzero(dataset.y == label))
        train_end = round(0.6 * len(members))
        val_end = train_end + round(0.2 * len(members))
        for part, chosen in zip(parts, np.split(members, [train_end, val_end]), strict=True):
            part.append(chosen)
    train, val, test = (dataset.subset(np.sort(np.concatenate(part))) for part in parts)
    return Split(train, val, test)


def resize(x: np.ndarray, resolution: int, dims: int) -> np.ndarray:
    """Images to R rows, their aspect kept, or series to length R (linear, as torch does).

    The columns are space.columns of the images' aspect. Images are enlarged bilinearly and
    shrunk as PIL's bilinear Image.resize shrinks them (antialiased: each output pixel
    weighs every input pixel it covers), as a camera's frames would be.
    """
    size = _size(x, resolution, dims)
    if x.shape[1:-1] == size:
        return values(x)
    return _resampled(x, size)


def channels_first(x: np.ndarray, resolution: int, dims: int) -> np.ndarray:
    """The samples resized as `resize` resizes them, N x C x ..., contiguous: the networks'.

    The values of resize's, made READ_CHUNK samples at a time into the one array returned:
    a training split of large images is held once more at the resolution, not two or three
    times at its own.
    """
    return _moved(x, _size(x, resolution, dims))


def _moved(x: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """channels_first's samples at `size` (rows and columns, or steps): see _interpolated."""
    moved = np.empty((len(x), x.shape[-1], *size), np.float32)
    for start in range(0, len(x), READ_CHUNK):
        chunk = np.ascontiguousarray(np.moveaxis(values(x[start:start + READ_CHUNK]), -1, 1))
        moved[start:start + READ_CHUNK] = (chunk if x.shape[1:-1] == size
                                           else _interpolated(chunk, size))
    return moved


def values(x: np.ndarray) -> np.ndarray:
    """The float32 values of samples as a Dataset holds them (uint8 pixels: x / 255), a copy."""
    scaled = x.astype(np.float32)
    if x.dtype == np.uint8:
        scaled /= 255.0
    return scaled


def _size(x: np.ndarray, resolution: int, dims: int) -> tuple[int, ...]:
    """The rows and columns (series: steps) of `x`'s samples at `resolution`."""
    return ((resolution, columns(resolution, x.shape[2] / x.shape[1])) if dims == 2
            else (resolution,))


def readable_size(size: tuple[int, int], channels: int, most_values: int | None
                  ) -> tuple[int, int]:
    """`size` (rows, columns), or the largest of its aspect within `most_values` values.

    An image of `channels` channels at the size returned holds at most `most_values` values
    (at least one row); None: no limit.
    """
    rows, aspect = size[0], size[1] / size[0]
    if most_values is None or rows * size[1] * channels <= most_values:
        return size
    rows = min(rows, math.isqrt(max(1, int(most_values / (aspect * channels)))) + 1)
    while rows > 1 and rows * columns(rows, aspect) * channels > most_values:
        rows -= 1
    return rows, columns(rows, aspect)


def _resampled(x: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """N x ... x C samples resampled to `size` along the middle axes (see _interpolated)."""
    return np.ascontiguousarray(np.moveaxis(_moved(x, size), 1, -1))


def _interpolated(x: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Contiguous float32 N x C x ... samples resampled to `size` (half-pixel centres).

    Shrunk images are antialiased (see resize); enlarged ones and series are not.
    """
    import torch

    shrunk = len(size) == 2 and any(new < old for new, old in zip(size, x.shape[2:],
                                                                   strict=True))
    return torch.nn.functional.interpolate(
        torch.from_numpy(x), size=size, mode="bilinear" if len(size) == 2 else "linear",
        align_corners=False, antialias=shrunk).numpy()


READ_CHUNK = 256
"""Samples converted or resampled at a time: a .npz's images read smaller (load_dataset), the
networks' float samples (channels_first), the statistics of standardization_for."""


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = (images / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    return Dataset("digits", x, labels.astype(np.int64), 10)


def _mnist1d() -> Dataset:
    """MNIST-1D made by the package's own generator (offline; global RNG states restored)."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:
        raise McuflowError("the mnist1d package is not installed",
                           "pip install 'mcuflow[nas]'") from error
    args = get_dataset_args()
    args.seed = MNIST1D_SEED
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        made = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    x = np.concatenate([made["x"], made["x_test"]]).astype(np.float32)[..., None]
    y = np.concatenate([made["y"], made["y_test"]]).astype(np.int64)
    return Dataset("mnist1d", x, y, 10)


def _npz(path: Path, layout: Layout, most_values: int | None) -> Dataset:
    hint = "write it with numpy.savez(path, x=..., y=...)"
    try:
        with path.open("rb") as file:
            if file.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
                raise McuflowError(f"{path} is not a .npz archive (numpy.savez writes a zip "
                                   "file)", hint)
        with np.load(path, allow_pickle=False) as arrays:
            missing = sorted({"x", "y"} - set(arrays.files))
            if missing:
                raise McuflowError(f"{path} has no array {', '.join(missing)} "
                                   f"(it holds {', '.join(arrays.files) or 'nothing'})",
                                   "save the samples as x (N x H x W x C or N x T x C) and the "
                                   "labels as y (class indices or one-hot)")
            x, y = arrays["x"], arrays["y"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise McuflowError(f"cannot read {path}: {error}", hint) from error
    samples, stored = _samples(path, x, layout, most_values)
    return _checked(path, path.stem, samples, *_labels(path, y, len(x)), stored)


SHAPES = {Layout.IMAGES: "N x H x W x C, or N x H x W for grey images",
          Layout.SERIES: "N x T x C, or N x T for one channel"}
"""The shapes of x each layout reads, as the user is told them."""


def _samples(path: Path, x: np.ndarray, layout: Layout, most_values: int | None
             ) -> tuple[np.ndarray, tuple[int, ...]]:
    """x as samples with a channel axis, and a sample's stored shape if read smaller.

    uint8 is pixels, kept as uint8 (Dataset); read smaller, rounded to 8 bits again (as
    Pillow's resize of an 8-bit image rounds); other types become float32. The stored shape
    is () where read as stored (see load_dataset). Read as `layout` says; AUTO reads
    N x H x W x C and uint8 N x H x W (grey pixels, as Keras keeps MNIST) as images, N x T and
    other N x T x C arrays as series.
    """
    if x.dtype.kind not in "fiub" or x.ndim not in (2, 3, 4) or 0 in x.shape[1:]:
        raise McuflowError(f"{path}: x is {x.dtype} of shape {x.shape}",
                           "x must be numbers shaped N x H x W x C (images) or N x T x C "
                           "(series; N x T for one channel, uint8 N x H x W for grey images)")
    pixels = x.dtype == np.uint8
    if layout is Layout.AUTO:
        layout = Layout.IMAGES if x.ndim == 4 or (pixels and x.ndim == 3) else Layout.SERIES
    least = 3 if layout is Layout.IMAGES else 2
    if x.ndim not in (least, least + 1):
        raise McuflowError(f"{path}: x of shape {x.shape} is not {layout.value}: they are "
                           f"{SHAPES[layout]}", "check x's shape, or the --layout given")
    x = x[..., None] if x.ndim == least else x
    size = (readable_size(x.shape[1:3], x.shape[-1], most_values)
            if layout is Layout.IMAGES else x.shape[1:-1])
    if size == x.shape[1:-1]:
        return (x if pixels else x.astype(np.float32, copy=False)), ()
    read = np.empty((len(x), *size, x.shape[-1]), np.uint8 if pixels else np.float32)
    for start in range(0, len(x), READ_CHUNK):
        chunk = _resampled(x[start:start + READ_CHUNK], size)
        read[start:start + READ_CHUNK] = _pixels(chunk) if pixels else chunk
    return read, x.shape[1:]


def _pixels(x: np.ndarray) -> np.ndarray:
    """Float values in [0, 1] as uint8 pixels, rounded to the nearest (values' inverse)."""
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _labels(path: Path, y: np.ndarray, samples: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices 0..K-1 of the labels `y` (numbers, text, a column or one-hot rows), names.

    The distinct labels, sorted, are the classes in order (as scikit-learn's LabelEncoder).
    """
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and y.shape[1] > 1 and y.dtype.kind in "fiub":
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise McuflowError(f"{path}: y is {y.dtype} of shape {y.shape} but its rows are "
                               "not one-hot", "give one class label per sample, or rows of "
                               "zeros with a single 1")
        y = y.argmax(axis=1)
    if y.ndim != 1 or y.dtype.kind not in "fiubUS" or len(y) != samples:
        raise McuflowError(f"{path}: y is {y.dtype} of shape {y.shape} for {samples} samples",
                           "y must hold one label (a class number or name) per sample, or "
                           "one-hot rows")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise McuflowError(f"{path}: y holds NaN or infinite labels", "label every sample")
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
        raise McuflowError(f"{path}: y holds fractional values such as {_fractional(y)}",
                           "y must hold class labels; the search trains classifiers, not "
                           "regression")
    if y.dtype.kind == "f":
        y = y.astype(np.int64)
    names, indices = np.unique(y, return_inverse=True)
    return indices.astype(np.int64), tuple(str(name) for name in names.tolist())


def _fractional(y: np.ndarray) -> float:
    return float(y[np.flatnonzero(y != np.round(y))[0]])


def _checked(path: Path, name: str, x: np.ndarray, y: np.ndarray, labels: tuple[str, ...],
             stored_shape: tuple[int, ...]) -> Dataset:
    """The Dataset `name` once the samples of `path` are finite and every class has enough.

    `y` holds class indices 0..K-1 and `labels` their K names; `stored_shape` is the
    Dataset's.
    """
    if not len(x):
        raise McuflowError(f"{path}: no samples", "give labelled samples of two classes or more")
    if not np.all(np.isfinite(x)):
        raise McuflowError(f"{path}: x holds NaN or infinite values", "clean the samples")
    if len(labels) < 2:
        raise McuflowError(f"{path}: only one class", "a classifier needs two classes or more")
    counts = np.bincount(y, minlength=len(labels))
    scarce = np.flatnonzero(counts < MIN_PER_CLASS)
    if len(scarce):
        count = counts[scarce[0]]
        raise McuflowError(f"{path}: class {labels[scarce[0]]} has {count} "
                           f"sample{'' if count == 1 else 's'}",
                           f"every class needs at least {MIN_PER_CLASS} samples for the "
                           "60/20/20 train/val/test split")
    if np.all(x == x[:1]):
        raise McuflowError(f"{path}: every sample of x is the same",
                           "nothing tells the classes apart: check that x holds the samples")
    return Dataset(name, np.ascontiguousarray(x), y, len(labels), labels, stored_shape)


def _image_folder(path: Path, most_values: int | None, reading: Reading | None) -> Dataset:
    """A class per sub-folder, hidden ones (.ipynb_checkpoints) aside.

    A class's images are those anywhere in its folder (as torchvision's ImageFolder finds
    them), hidden files and folders aside (a Mac's `._photo.jpg`). The images are read at the
    size most of them have (the smallest such on a tie), or smaller (see load_dataset),
    READ_THREADS at a time, each into its row of the samples: those of another size are
    resampled as `resize` resamples. HEIF photos need pillow-heif (_open_heif); AVIF is
    Pillow's own. Colour where any image is. 8-bit images are kept as uint8 pixels
    (resampled ones rounded to 8 bits), unless a 16-bit one makes them all float32.
    """
    folders = sorted(entry for entry in path.iterdir()
                     if entry.is_dir() and not entry.name.startswith("."))
    if not folders:
        raise McuflowError(f"{path} has no sub-folders",
                           "put the images of each class in a sub-folder named after the class")
    files = [_images_in(folder) for folder in folders]
    empty = [folder.name for folder, images in zip(folders, files, strict=True) if not images]
    if empty:
        raise McuflowError(f"{path}: class folder {empty[0]!r} holds no images",
                           f"images must end in {', '.join(IMAGE_SUFFIXES)}")
    paths = [file for images in files for file in images]
    if any(file.suffix.lower() in HEIF_SUFFIXES for file in paths):
        _open_heif()
    headers = _in_order(_header, paths)
    channels = 1 if all(_grey(mode) for _, mode in headers) else 3
    deep = any(_deep(mode) for _, mode in headers)
    sizes = Counter(size for size, _ in headers)
    common = min(sizes, key=lambda size: (-sizes[size], size))
    size = readable_size(common, channels, most_values)
    x = np.empty((len(paths), *size, channels), np.float32 if deep else np.uint8)

    def read(index: int) -> None:
        pixels = _read_image(paths[index], size)
        pixels = _as_rgb(pixels) if channels == 3 else pixels[..., None]
        if pixels.shape[:2] != size:
            resampled = _resampled(pixels[None], size)[0]
            x[index] = resampled if deep else _pixels(resampled)
        else:
            x[index] = values(pixels) if deep else pixels

    _in_order(read, range(len(paths)), reading)
    labels = np.concatenate([np.full(len(images), label) for label, images in enumerate(files)])
    return _checked(path, path.name, x, labels.astype(np.int64),
                    tuple(folder.name for folder in folders),
                    (*common, channels) if size != common else ())


def _in_order(function: Callable[[T], R], items: Sequence[T], reading: Reading | None = None
              ) -> list[R]:
    """`function` of each item on READ_THREADS threads, results (or the first error) in order.

    `reading` is told (items done, items) as each result arrives, in order. On an error the
    items not started yet are dropped.
    """
    with ThreadPoolExecutor(READ_THREADS) as pool:
        futures = [pool.submit(function, item) for item in items]
        try:
            found = []
            for future in futures:
                found.append(future.result())
                if reading is not None:
                    reading(len(found), len(futures))
            return found
        finally:
            for future in futures:
                future.cancel()


def _open_heif() -> None:
    """Let Pillow read HEIF photos (pillow-heif's opener; it turns them upright as it reads)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError as error:
        raise McuflowError("reading HEIC/HEIF photos needs the pillow-heif package",
                           "pip install 'mcuflow[nas]', or convert the photos to JPEG"
                           ) from error
    register_heif_opener()


def _images_in(folder: Path) -> list[Path]:
    """The image files in `folder` and its sub-folders, hidden ones aside, sorted by path.

    Symbolic links to folders are not followed (a link to a parent would never end).
    """
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [Path(root, name) for name in files if not name.startswith(".")
                  and Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def _grey(mode: str) -> bool:
    """True for PIL's modes of grey images: 1, L and the 16/32-bit I modes."""
    return mode in ("1", "L") or _deep(mode)


def _deep(mode: str) -> bool:
    """True for PIL's 16/32-bit grey modes (I, I;16 and the like): more than 8 bits."""
    return mode.startswith("I")


def _header(file: Path) -> tuple[tuple[int, int], str]:
    """An image's upright (rows, columns) and its PIL mode, from its header alone.

    Upright as its EXIF orientation shows it (a phone's portrait photo is often stored
    landscape with a tag saying to turn it): the orientations that turn it a quarter swap
    rows and columns.
    """
    from PIL import Image

    try:
        with Image.open(file) as image:
            size = (image.width, image.height) if _turned(image) else (image.height, image.width)
            return size, image.mode
    except (OSError, Image.DecompressionBombError) as error:
        raise _unreadable(file, error) from error


def _turned(image: PilImage) -> bool:
    """True where the image's EXIF orientation turns it a quarter (see _exif_in_header)."""
    from PIL import ExifTags

    exif = image.getexif() if _exif_in_header(image) else {}
    return exif.get(ExifTags.Base.Orientation, 1) in QUARTER_TURNS


def _exif_in_header(image: PilImage) -> bool:
    """True where Pillow reads the image's EXIF without decoding its pixels.

    All but a PNG without an eXIf chunk before its pixels (Pillow would decode it to look for
    one after them; phones' photos are JPEGs). Such a late chunk is not read, as a header
    pass (_header) could not see it.
    """
    return image.format != "PNG" or "exif" in image.info


def _read_image(file: Path, size: tuple[int, int]) -> np.ndarray:
    """Pixels H x W (grey) or H x W x 3 (colour; alpha dropped), upright: uint8, or float32.

    Upright: turned and mirrored as the image's EXIF orientation says (see _header). 16-bit
    grey images (PIL's modes I;16 and I) are float32 in [0, 1], scaled from their 16-bit
    range; the rest uint8. A JPEG at least twice the (rows, columns) `size` it is read at
    is decoded at a half, a quarter or an eighth of its size, the smallest not under `size`
    (libjpeg's DCT scaling, as Pillow's `thumbnail` decodes): a 12-megapixel photo in a fifth
    of the time.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(file) as stored:
            rows, columns = size
            stored.draft(None, (rows, columns) if _turned(stored) else (columns, rows))
            image = ImageOps.exif_transpose(stored) if _exif_in_header(stored) else stored
            if _deep(image.mode):
                return np.asarray(image, dtype=np.float32) / 65535.0
            return np.asarray(image.convert("L" if _grey(image.mode) else "RGB"), np.uint8)
    except (OSError, Image.DecompressionBombError) as error:
        raise _unreadable(file, error) from error


def _unreadable(file: Path, error: Exception) -> McuflowError:
    """The error of an image Pillow cannot read, or will not (a decompression bomb's size)."""
    return McuflowError(f"cannot read image {file}: {error}", "remove or repair the file")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
