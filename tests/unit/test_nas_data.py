"""nas.data against its sources: sklearn's digits, the mnist1d package, Pillow, numpy.interp."""

from __future__ import annotations

import socket
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.preprocessing import LabelEncoder, StandardScaler

from mcuflow.errors import McuflowError
from mcuflow.nas.data import (
    INPUT_STEPS,
    READ_CHUNK,
    SMALLEST_STD,
    Dataset,
    Layout,
    channels_first,
    load_dataset,
    resize,
    sample_form,
    split,
    standardization_for,
    values,
)
from tests.support import barometer_series

pytest.importorskip("torch")


def test_digits_are_sklearns_images_in_unit_range() -> None:
    images, labels = load_digits(return_X_y=True)
    data = load_dataset("digits")
    assert data.x.dtype == np.float32 and data.x.shape == (len(labels), 8, 8, 1)
    np.testing.assert_array_equal(data.x.reshape(len(labels), 64) * 16, images)
    np.testing.assert_array_equal(data.y, labels)
    assert (data.dims, data.native_size, data.input_channels, data.classes) == (2, 8, 1, 10)


def test_mnist1d_is_generated_offline_and_leaves_global_randomness_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("MNIST-1D must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    np.random.seed(7)
    expected_next = np.random.random()
    np.random.seed(7)
    data = load_dataset("mnist1d")
    assert np.random.random() == expected_next
    assert data.x.shape == (5000, 40, 1) and data.x.dtype == np.float32
    assert (data.dims, data.native_size, data.classes) == (1, 40, 10)
    np.testing.assert_array_equal(np.bincount(data.y), [500] * 10)
    again = load_dataset("mnist1d")
    np.testing.assert_array_equal(again.x, data.x)


def test_split_is_stratified_disjoint_and_seeded() -> None:
    data = load_dataset("digits")
    parts = split(data, seed=3)
    counts = np.bincount(data.y)
    for part, share in ((parts.train, 0.6), (parts.val, 0.2), (parts.test, 0.2)):
        assert np.all(np.abs(np.bincount(part.y, minlength=10) - share * counts) <= 1)
    rows = {row.tobytes() for part in parts.__dict__.values() for row in part.x}
    assert len(parts.train.y) + len(parts.val.y) + len(parts.test.y) == len(data.y)
    assert len(rows) == len({row.tobytes() for row in data.x})
    np.testing.assert_array_equal(split(data, seed=3).val.x, parts.val.x)
    assert not np.array_equal(split(data, seed=4).val.x, parts.val.x)


def _interp_axis(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Half-pixel linear resampling along one axis (numpy's interp as the oracle)."""
    length = x.shape[axis]
    source = (np.arange(size) + 0.5) * length / size - 0.5
    return np.apply_along_axis(lambda row: np.interp(source, np.arange(length), row), axis, x)


def _pil_resized(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """N x H x W x C float images resized by Pillow's bilinear Image.resize, channel by channel."""
    return np.stack([np.stack([np.asarray(Image.fromarray(image[..., channel], mode="F")
                                          .resize((columns, rows), Image.Resampling.BILINEAR))
                               for channel in range(image.shape[-1])], axis=-1)
                     for image in images.astype(np.float32)])


@pytest.mark.parametrize("size", [5, 12])
def test_resize_matches_separable_half_pixel_interpolation(size: int) -> None:
    """Enlarged images against numpy's interp, shrunk ones against Pillow (antialiased)."""
    rng = np.random.default_rng(0)
    images = rng.random((3, 8, 8, 2)).astype(np.float32)
    expected = (_interp_axis(_interp_axis(images, size, 1), size, 2) if size > 8 else
                _pil_resized(images, size, size))
    np.testing.assert_allclose(resize(images, size, 2), expected, atol=1e-5)
    series = rng.random((3, 40, 2)).astype(np.float32)
    np.testing.assert_allclose(resize(series, size * 3, 1), _interp_axis(series, size * 3, 1),
                               atol=1e-5)
    np.testing.assert_array_equal(resize(images, 8, 2), images)


def test_channels_first_holds_resizes_values_bit_for_bit() -> None:
    """Float samples and uint8 pixels (x / 255), more of them than are converted at a time."""
    rng = np.random.default_rng(7)
    images, series = rng.random((4, 10, 6, 3)), rng.random((4, 40, 2)).astype(np.float32)
    pixels = rng.integers(0, 256, (READ_CHUNK + 3, 10, 6, 3), dtype=np.uint8)
    for x, dims, resolution in ((images, 2, 5), (images, 2, 10), (images, 2, 20),
                                (series, 1, 24), (series, 1, 40), (series, 1, 60),
                                (pixels, 2, 5), (pixels, 2, 10), (pixels, 2, 20)):
        moved = channels_first(x, resolution, dims)
        assert moved.flags.c_contiguous and moved.dtype == np.float32
        np.testing.assert_array_equal(moved, np.moveaxis(resize(x, resolution, dims), -1, 1))
    np.testing.assert_array_equal(resize(pixels, 10, 2), pixels / np.float32(255))


def test_resize_keeps_the_images_aspect() -> None:
    """10 x 4 images at 5 rows are 5 x 2 (the columns scale with the rows), 20 rows 20 x 8."""
    images = np.random.default_rng(1).random((3, 10, 4, 2)).astype(np.float32)
    data = Dataset("tall", images, np.arange(3), 3)
    assert data.aspect == 0.4
    np.testing.assert_allclose(resize(images, 5, 2), _pil_resized(images, 5, 2), atol=1e-5)
    expected = _interp_axis(_interp_axis(images, 20, 1), 8, 2)
    np.testing.assert_allclose(resize(images, 20, 2), expected, atol=1e-5)


def _samples(classes: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return (rng.random((classes * per_class, 6, 6, 3)).astype(np.float32),
            np.repeat(np.arange(classes), per_class))


def test_npz_with_one_hot_labels_and_uint8_pixels(tmp_path: Path) -> None:
    x, y = _samples(3, 6)
    np.savez(tmp_path / "mine.npz", x=(x * 255).astype(np.uint8), y=np.eye(3)[y])
    data = load_dataset(str(tmp_path / "mine.npz"))
    assert (data.name, data.classes, data.x.shape) == ("mine", 3, (18, 6, 6, 3))
    np.testing.assert_array_equal(data.x, (x * 255).astype(np.uint8))
    np.testing.assert_allclose(values(data.x), (x * 255).astype(np.uint8) / 255.0)
    np.testing.assert_array_equal(data.y, y)
    np.savez(tmp_path / "column.npz", x=x, y=y[:, None])
    np.testing.assert_array_equal(load_dataset(str(tmp_path / "column.npz")).y, y)
    np.savez(tmp_path / "series.npz", x=x[:, :, 0, 0], y=y)
    assert load_dataset(str(tmp_path / "series.npz")).x.shape == (18, 6, 1)
    np.savez(tmp_path / "channels.npz", x=x[..., 0], y=y)
    assert load_dataset(str(tmp_path / "channels.npz")).x.shape == (18, 6, 6)
    grey = (x[..., 0] * 255).astype(np.uint8)
    np.savez(tmp_path / "grey.npz", x=grey, y=y)
    np.testing.assert_array_equal(load_dataset(str(tmp_path / "grey.npz")).x[..., 0], grey)


def test_layout_reads_three_axes_as_grey_images_or_as_series(tmp_path: Path) -> None:
    """scikit-learn's digits saved as they come (float64 N x 8 x 8, 0..16), and uint8 series."""
    digits = load_digits()
    np.savez(tmp_path / "digits.npz", x=digits.images, y=digits.target)
    path = str(tmp_path / "digits.npz")
    images = load_dataset(path, Layout.IMAGES)
    np.testing.assert_array_equal(images.x, digits.images[..., None].astype(np.float32))
    assert (images.dims, sample_form(images.x.shape[1:])) == (2, "8 x 8 images of 1 channel")
    series = load_dataset(path)
    assert (series.dims, series.x.shape[1:], sample_form(series.x.shape[1:])) == (
        1, (8, 8), "series of 8 steps of 8 channels")
    assert load_dataset(path, Layout.SERIES).x.shape == series.x.shape
    counts = (digits.images * 15).astype(np.uint8)
    np.savez(tmp_path / "counts.npz", x=counts, y=digits.target)
    assert load_dataset(str(tmp_path / "counts.npz")).dims == 2
    read = load_dataset(str(tmp_path / "counts.npz"), Layout.SERIES)
    np.testing.assert_array_equal(read.x, counts)
    assert read.dims == 1


@pytest.mark.parametrize(("shape", "layout", "message"), [
    ((10, 6), Layout.IMAGES, r"x of shape \(10, 6\) is not images: they are N x H x W x C"),
    ((10, 4, 4, 1), Layout.SERIES, r"is not series: they are N x T x C, or N x T"),
])
def test_layout_refuses_shapes_it_does_not_read(tmp_path: Path, shape: tuple[int, ...],
                                                layout: Layout, message: str) -> None:
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).random(shape), y=np.arange(10) % 2)
    with pytest.raises(McuflowError, match=message) as caught:
        load_dataset(str(tmp_path / "x.npz"), layout)
    assert "--layout" in caught.value.hint


def test_layout_must_not_contradict_the_built_in_data() -> None:
    with pytest.raises(McuflowError, match="--layout series does not apply to digits: it "
                       "holds images") as caught:
        load_dataset("digits", Layout.SERIES)
    assert caught.value.hint
    assert load_dataset("digits", Layout.IMAGES).dims == 2


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.zeros((10, 4, 4, 1))}, "no array y"),
    ({"images": np.zeros((10, 4, 4, 1)), "y": np.zeros(10, int)}, "no array x"),
    ({"x": np.zeros((10, 4, 4, 1)), "y": np.zeros(10, int)}, "only one class"),
    ({"x": np.zeros((10, 4, 4, 1)), "y": np.arange(10) % 3}, "class 0 has 4 samples"),
    ({"x": np.zeros((10, 4, 4, 1)), "y": np.arange(9) % 2}, "for 10 samples"),
    ({"x": np.full((10, 4, 4, 1), np.nan), "y": np.arange(10) % 2}, "NaN"),
    ({"x": np.zeros((10, 2, 2, 2, 2)), "y": np.arange(10) % 2}, "x is float64"),
    ({"x": np.zeros((10, 4, 4, 1)), "y": np.arange(10) / 4}, "fractional values such as 0.25"),
    ({"x": np.zeros((10, 32, 0)), "y": np.arange(10) % 2}, r"shape \(10, 32, 0\)"),
    ({"x": np.zeros((0, 4, 4, 1)), "y": np.zeros(0, int)}, "no samples"),
    ({"x": np.zeros((10, 4, 4, 1)), "y": np.stack([np.arange(10) % 3, np.arange(10) % 2], 1)},
     "not one-hot"),
    ({"x": np.zeros((10, 4, 4, 1)), "y": np.where(np.arange(10) % 2, 1.0, np.nan)}, "NaN"),
    ({"x": np.ones((10, 4, 4, 1)), "y": np.arange(10) % 2}, "every sample of x is the same"),
])
def test_bad_npz_files_raise_with_a_hint(tmp_path: Path, arrays: dict[str, np.ndarray],
                                         message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(McuflowError, match=message) as caught:
        load_dataset(str(tmp_path / "bad.npz"))
    assert caught.value.hint


def test_files_that_are_not_npz_archives_raise_with_a_hint(tmp_path: Path) -> None:
    """A truncated archive, a .npy file and a text file, each named .npz."""
    np.savez(tmp_path / "good.npz", x=np.zeros((10, 4, 4, 1)), y=np.arange(10) % 2)
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:300])
    np.save(tmp_path / "array.npy", np.zeros((10, 4)))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    for name in ("truncated", "array", "text"):
        with pytest.raises(McuflowError, match=f"{name}.npz") as caught:
            load_dataset(str(tmp_path / f"{name}.npz"))
        assert caught.value.hint, name


def test_sixteen_bit_grey_images_keep_their_range_and_hidden_folders_are_skipped(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    deep = {name: [rng.integers(0, 65536, (5, 5), dtype=np.uint16) for _ in range(5)]
            for name in ("a", "b")}
    root = _write_folder(tmp_path / "deep", deep)
    (root / ".ipynb_checkpoints").mkdir()
    (root / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07 a Mac's AppleDouble file")
    (root / "b" / ".cache").mkdir()
    Image.fromarray(deep["b"][0]).save(root / "b" / ".cache" / "0.png")
    data = load_dataset(str(root))
    assert (data.classes, data.x.shape) == (2, (10, 5, 5, 1))
    np.testing.assert_allclose(data.x[:5, ..., 0], np.stack(deep["a"]) / 65535.0, atol=1e-7)


def test_class_folders_are_searched_as_torchvisions_image_folder_searches_them(
        tmp_path: Path) -> None:
    """Images in sub-folders of a class folder belong to the class, in the order of the path."""
    rng = np.random.default_rng(12)
    pixels = [rng.integers(0, 256, (4, 6), dtype=np.uint8) for _ in range(10)]
    for index, image in enumerate(pixels):
        where = tmp_path / ("cat" if index < 5 else "dog") / ("day", "night")[index % 2]
        where.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(where / f"{index}.png")
    (tmp_path / "dog" / "loop").symlink_to(tmp_path / "dog")
    data = load_dataset(str(tmp_path))
    found = sorted((path.relative_to(tmp_path).parts[0], str(path.relative_to(tmp_path)))
                   for path in tmp_path.rglob("*.png") if "loop" not in path.parts)
    order = [int(Path(name).stem) for _, name in found]
    assert [data.label(int(label)) for label in data.y] == [label for label, _ in found]
    np.testing.assert_array_equal(data.x[..., 0], np.stack([pixels[i] for i in order]))


def _write_folder(root: Path, images: dict[str, list[np.ndarray]], suffix: str = ".png") -> Path:
    for label, pixels in images.items():
        (root / label).mkdir(parents=True)
        for index, image in enumerate(pixels):
            Image.fromarray(image).save(root / label / f"{index}{suffix}")
    return root


def test_image_folder_grey_and_colour(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    grey = {name: [rng.integers(0, 256, (7, 7), dtype=np.uint8) for _ in range(5)]
            for name in ("cat", "dog")}
    told: list[tuple[int, int]] = []
    data = load_dataset(str(_write_folder(tmp_path / "grey", grey, ".pgm")),
                        reading=lambda done, total: told.append((done, total)))
    assert told == [(done, 10) for done in range(1, 11)]  # the progress bar's "read" stage
    assert (data.classes, data.x.shape, data.name) == (2, (10, 7, 7, 1), "grey")
    np.testing.assert_array_equal(data.x[5:, ..., 0], np.stack(grey["dog"]))
    np.testing.assert_array_equal(data.y, [0] * 5 + [1] * 5)
    colour = {"a": [rng.integers(0, 256, (4, 4, 3), dtype=np.uint8) for _ in range(5)],
              "b": [rng.integers(0, 256, (4, 4), dtype=np.uint8) for _ in range(5)]}
    mixed = load_dataset(str(_write_folder(tmp_path / "colour", colour)))
    assert mixed.x.shape == (10, 4, 4, 3)
    np.testing.assert_array_equal(mixed.x[0], colour["a"][0])
    np.testing.assert_array_equal(mixed.x[5, ..., 2], colour["b"][0])


def test_image_folder_reads_tiff_webp_and_gif(tmp_path: Path) -> None:
    """Lossless kinds read back as written; a GIF's palette as Pillow converts it to RGB."""
    rng = np.random.default_rng(8)
    pixels = {name: [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(5)]
              for name in ("tif", "webp")}
    root = tmp_path / "kinds"
    _write_folder(root, {"tif": pixels["tif"]}, ".TIFF")
    (root / "webp").mkdir()
    for index, image in enumerate(pixels["webp"]):
        Image.fromarray(image).save(root / "webp" / f"{index}.webp", lossless=True)
    gif = _write_folder(tmp_path / "gifs", {"a": pixels["tif"]}, ".gif")
    data = load_dataset(str(root))
    np.testing.assert_array_equal(data.x, np.stack(pixels["tif"] + pixels["webp"]))
    (gif / "b").mkdir()
    for index, image in enumerate(pixels["webp"]):
        Image.fromarray(image).save(gif / "b" / f"{index}.gif")
    palette = load_dataset(str(gif))
    with Image.open(gif / "a" / "0.gif") as first:
        expected = np.asarray(first.convert("RGB"))
    np.testing.assert_array_equal(palette.x[0], expected)


UPRIGHT = {
    1: lambda s: s, 2: lambda s: s[:, ::-1], 3: lambda s: s[::-1, ::-1], 4: lambda s: s[::-1],
    5: lambda s: s.transpose(1, 0, 2), 6: lambda s: np.rot90(s, -1),
    7: lambda s: s[::-1, ::-1].transpose(1, 0, 2), 8: lambda s: np.rot90(s),
}
"""The EXIF (TIFF 6.0) orientations: how the stored rows and columns are shown."""


def test_photos_are_read_as_their_exif_orientation_shows_them(tmp_path: Path) -> None:
    """A phone's portrait photo stored landscape with an orientation tag is read upright.

    Each class holds a 20 x 30 PNG tagged with every orientation and an untagged 30 x 20
    one: the upright sizes (30 x 20 where the tag turns it a quarter) make 30 x 20 the most
    common size.
    """
    rng = np.random.default_rng(11)
    stored = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for orientation in UPRIGHT:
            exif = Image.Exif()
            exif[0x0112] = orientation
            Image.fromarray(stored).save(tmp_path / label / f"{orientation}.png", exif=exif)
        Image.fromarray(stored.transpose(1, 0, 2)).save(tmp_path / label / "9.png")
    data = load_dataset(str(tmp_path))
    assert data.x.shape == (18, 30, 20, 3) and data.stored_shape == ()
    for index in (4, 5, 6, 7):
        orientation = index + 1
        np.testing.assert_array_equal(data.x[index], UPRIGHT[orientation](stored),
                                      err_msg=f"orientation {orientation}")


def test_jpeg_photos_turned_by_their_exif_orientation(tmp_path: Path) -> None:
    """A camera's JPEGs (EXIF in the header), each stored 24 x 32 and tagged to turn it."""
    rows, cols = np.mgrid[0:24, 0:32]
    smooth = np.stack([rows * 10, cols * 8, rows * 5 + cols * 4], axis=-1).astype(np.uint8)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for index, orientation in enumerate((6, 8, 6, 8, 6)):
            exif = Image.Exif()
            exif[0x0112] = orientation
            Image.fromarray(smooth).save(tmp_path / label / f"{index}.jpg", quality=95,
                                         exif=exif)
    data = load_dataset(str(tmp_path))
    assert data.x.shape == (10, 32, 24, 3)
    for index, orientation in enumerate((6, 8, 6, 8, 6)):
        error = np.abs(data.x[index].astype(float) - UPRIGHT[orientation](smooth))
        assert error.mean() < 2, (orientation, error.mean())


def test_heic_and_avif_photos_are_read_upright(tmp_path: Path) -> None:
    """An iPhone's HEIC photos (through pillow-heif) and AVIF ones (Pillow's own).

    Each stored 24 x 32 and tagged to turn a quarter: read 32 x 24, within lossy coding's
    error of the turned image.
    """
    pillow_heif = pytest.importorskip("pillow_heif")
    rows, cols = np.mgrid[0:24, 0:32]
    smooth = np.stack([rows * 10, cols * 8, rows * 5 + cols * 4], axis=-1).astype(np.uint8)
    formats = {"a": (".heic", 6), "b": (".avif", 8)}
    for label, (suffix, orientation) in formats.items():
        (tmp_path / label).mkdir()
        for index in range(5):
            exif = Image.Exif()
            exif[0x0112] = orientation
            file = tmp_path / label / f"{index}{suffix}"
            if suffix == ".heic":
                pillow_heif.from_pillow(Image.fromarray(smooth)).save(file, quality=95,
                                                                      exif=exif.tobytes())
            else:
                Image.fromarray(smooth).save(file, quality=95, exif=exif)
    data = load_dataset(str(tmp_path))
    assert data.x.shape == (10, 32, 24, 3)
    for index, (_, orientation) in enumerate([formats["a"]] * 5 + [formats["b"]] * 5):
        error = np.abs(data.x[index].astype(float) - UPRIGHT[orientation](smooth))
        assert error.mean() < 3, (index, error.mean())


def test_heic_photos_without_pillow_heif_name_the_extra(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _write_folder(tmp_path / "photos", {"a": [np.zeros((4, 4), np.uint8)] * 5,
                                                 "b": [np.ones((4, 4), np.uint8)] * 5})
    (folder / "b" / "IMG_0001.HEIC").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    with pytest.raises(McuflowError, match="HEIC/HEIF photos needs the pillow-heif") as caught:
        load_dataset(str(folder))
    assert "mcuflow[nas]" in caught.value.hint


@pytest.mark.parametrize("labels", [
    np.array(["walk", "run", "sit", "run", "walk"] * 4),
    np.array([9, 3, 3, 9, 7] * 4),
    np.array([-1.0, 2.0, 2.0, 5.0, -1.0] * 4),
    np.array([True, False, False, True, True] * 4),
])
def test_labels_are_numbered_as_label_encoder_numbers_them(tmp_path: Path,
                                                           labels: np.ndarray) -> None:
    labels = np.concatenate([labels, labels[:5]])
    x = np.random.default_rng(3).random((len(labels), 12, 2)).astype(np.float32)
    np.savez(tmp_path / "named.npz", x=x, y=labels)
    data = load_dataset(str(tmp_path / "named.npz"))
    encoder = LabelEncoder().fit(labels)
    np.testing.assert_array_equal(data.y, encoder.transform(labels))
    assert data.classes == len(encoder.classes_)
    numbers = labels.dtype.kind == "f"  # whole numbers stored as floats name classes as ints
    assert [data.label(i) for i in range(data.classes)] == [
        str(int(c) if numbers else c) for c in encoder.classes_]


def _assert_rounded(pixels: np.ndarray, resized: np.ndarray) -> None:
    """uint8 `pixels` are Pillow's float `resized` values (in [0, 1]) rounded to 8 bits."""
    assert pixels.dtype == np.uint8
    np.testing.assert_allclose(pixels, resized * 255, atol=0.5 + 1e-3)


def test_image_folder_of_several_sizes_takes_the_most_common(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    small = [rng.integers(0, 256, (6, 6, 3), dtype=np.uint8) for _ in range(6)]
    large = [rng.integers(0, 256, (9, 11, 3), dtype=np.uint8) for _ in range(5)]
    data = load_dataset(str(_write_folder(tmp_path / "sizes", {"b": small, "a": large})))
    assert data.x.shape == (11, 6, 6, 3)
    assert [data.label(i) for i in range(data.classes)] == ["a", "b"]
    _assert_rounded(data.x[0], _pil_resized(large[0][None] / 255.0, 6, 6)[0])
    np.testing.assert_array_equal(data.x[5], small[0])
    assert data.stored_shape == ()


def test_images_larger_than_the_values_allowed_are_read_smaller(tmp_path: Path) -> None:
    """Photos for a small board, read at the largest size of their aspect within the limit.

    Shrunk as Pillow shrinks them, from a folder (any size the most common) or a .npz.
    """
    rng = np.random.default_rng(6)
    photos = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(10)]
    odd = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    root = _write_folder(tmp_path / "photos", {"a": photos[:5] + [odd], "b": photos[5:]})
    most = 23 * 31 * 3 - 1  # 23 rows of 4:3 images are 31 columns: one value too many
    data = load_dataset(str(root), most_values=most)
    assert (data.x.shape, data.stored_shape) == ((11, 22, 29, 3), (48, 64, 3))
    _assert_rounded(data.x[0], _pil_resized(photos[0][None] / 255.0, 22, 29)[0])
    _assert_rounded(data.x[5], _pil_resized(odd[None] / 255.0, 22, 29)[0])
    x = np.stack(photos * 30)
    np.savez(tmp_path / "photos.npz", x=x, y=np.arange(len(x)) % 3)
    stored = load_dataset(str(tmp_path / "photos.npz"), most_values=most)
    assert (stored.x.shape, stored.stored_shape) == ((300, 22, 29, 3), (48, 64, 3))
    _assert_rounded(stored.x[[0, 299]], _pil_resized(x[[0, 299]] / 255.0, 22, 29))
    unlimited = load_dataset(str(tmp_path / "photos.npz"), most_values=48 * 64 * 3)
    assert (unlimited.x.shape, unlimited.stored_shape) == ((300, 48, 64, 3), ())
    series = load_dataset("mnist1d", most_values=10)
    assert (series.x.shape[1:], series.stored_shape) == ((40, 1), ())


def test_large_jpegs_read_smaller_are_decoded_at_a_reduced_scale(tmp_path: Path) -> None:
    """A 96 x 128 JPEG read at 22 x 29 is decoded at a quarter, then resampled.

    The quarter (24 x 32) as Pillow's thumbnail decodes it; the result within a level or two
    of the full decode's resize.
    """
    rows, cols = np.mgrid[0:96, 0:128]
    smooth = np.stack([rows * 2, cols * 2 - 1, rows + cols], axis=-1).astype(np.uint8)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for index in range(5):
            Image.fromarray(np.roll(smooth, index * 9, axis=1)).save(
                tmp_path / label / f"{index}.jpg", quality=95)
    data = load_dataset(str(tmp_path), most_values=23 * 31 * 3 - 1)
    assert data.x.shape == (10, 22, 29, 3)
    with Image.open(tmp_path / "a" / "0.jpg") as image:
        full = np.asarray(image.convert("RGB"))
    with Image.open(tmp_path / "a" / "0.jpg") as image:
        image.draft(None, (29, 22))
        quarter = np.asarray(image.convert("RGB"))
    assert quarter.shape == (24, 32, 3)
    _assert_rounded(data.x[0], _pil_resized(quarter[None] / 255.0, 22, 29)[0])
    whole = _pil_resized(full[None] / 255.0, 22, 29)[0] * 255
    assert np.abs(data.x[0] - whole).mean() < 2


def _png_header(width: int, height: int) -> bytes:
    """A PNG's signature, IHDR (8-bit RGB) and IEND chunks: its size without its pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_bad_image_folders_raise_with_a_hint(tmp_path: Path) -> None:
    pixels = np.zeros((4, 4), np.uint8)
    cases = {
        "single": {"a": [pixels] * 5},
        "empty": {"a": [pixels] * 5, "b": []},
    }
    messages = {"single": "only one class", "empty": "no images"}
    for name, images in cases.items():
        with pytest.raises(McuflowError, match=messages[name]) as caught:
            load_dataset(str(_write_folder(tmp_path / name, images)))
        assert caught.value.hint
    bomb = _write_folder(tmp_path / "bomb", {"a": [pixels] * 5, "b": [pixels] * 5})
    (bomb / "b" / "huge.png").write_bytes(_png_header(30_000, 30_000))
    with pytest.raises(McuflowError, match="cannot read image .*huge.png.*decompression bomb"):
        load_dataset(str(bomb))
    noise = np.random.default_rng(5).integers(0, 256, (10, 4, 4), dtype=np.uint8)
    truncated = _write_folder(tmp_path / "truncated", {"a": list(noise[:5]), "b": list(noise[5:])})
    whole = (truncated / "a" / "0.png").read_bytes()
    for name in ("x1.png", "x2.png", "x3.png"):  # read on several threads; named in order
        (truncated / "b" / name).write_bytes(whole[:len(whole) // 2])
    with pytest.raises(McuflowError, match=r"cannot read image .*b/x1\.png"):
        load_dataset(str(truncated))
    (tmp_path / "flat").mkdir()
    with pytest.raises(McuflowError, match="no sub-folders"):
        load_dataset(str(tmp_path / "flat"))
    with pytest.raises(McuflowError, match="no dataset"):
        load_dataset(str(tmp_path / "missing.npz"))



def _int8_steps(x: np.ndarray) -> np.ndarray:
    """Each channel's standard deviation in steps of TFLite's int8 input for x's range.

    TFLite's GetAsymmetricQuantizationParams: the range widened to contain 0, in 255 steps.
    """
    scale = (max(x.max(), 0.0) - min(x.min(), 0.0)) / 255
    return x.reshape(-1, x.shape[-1]).std(axis=0) / scale


def test_standardization_where_the_int8_input_blurs_a_channel(tmp_path: Path) -> None:
    """Far from zero, series are standardised as scikit-learn's StandardScaler does it."""
    x, y = barometer_series(600, seed=1)
    np.savez(tmp_path / "barometer.npz", x=x, y=y)
    train = split(load_dataset(str(tmp_path / "barometer.npz")), 0).train
    assert _int8_steps(train.x).max() < 1
    found = standardization_for(train)
    assert found is not None
    scaler = StandardScaler().fit(train.x.reshape(-1, 2))
    np.testing.assert_allclose(found.mean, scaler.mean_, rtol=1e-6)
    np.testing.assert_allclose(found.std, scaler.scale_, rtol=1e-6)
    standardized = found.apply(train).x
    np.testing.assert_allclose(standardized.reshape(-1, 2),
                               scaler.transform(train.x.reshape(-1, 2)), atol=1e-4)
    assert _int8_steps(standardized).min() >= INPUT_STEPS
    assert found.blurred == int(np.argmin(_int8_steps(train.x)))


def test_standardization_of_channels_too_small_to_train_on(tmp_path: Path) -> None:
    """MNIST-1D in millionths: its int8 input keeps its steps, but not its training."""
    mnist = load_dataset("mnist1d")
    np.savez(tmp_path / "millionths.npz", x=mnist.x[..., 0] * 1e-6, y=mnist.y)
    train = split(load_dataset(str(tmp_path / "millionths.npz")), 0).train
    assert _int8_steps(train.x).min() >= INPUT_STEPS and train.x.std() < SMALLEST_STD
    found = standardization_for(train)
    assert found is not None
    assert "too small beside the batch norms' epsilon (1e-05)" in found.sentence()
    scaler = StandardScaler().fit(train.x.reshape(-1, 1))
    np.testing.assert_allclose(found.apply(train).x.reshape(-1, 1),
                               scaler.transform(train.x.reshape(-1, 1)), atol=1e-4)


@pytest.mark.parametrize("spec", ["digits", "mnist1d"])
def test_data_whose_int8_input_keeps_every_channel_stays_as_it_came(spec: str) -> None:
    train = split(load_dataset(spec), 0).train
    assert _int8_steps(train.x).min() >= INPUT_STEPS
    assert standardization_for(train) is None


def test_no_standardization_where_it_would_blur_as_much(tmp_path: Path) -> None:
    """Digits as series of 8 rows: column 0 is almost always blank.

    Standardised, its rare strokes would set the range, and it would span as few steps as
    before.
    """
    np.savez(tmp_path / "rows.npz", x=load_digits().images, y=load_digits().target)
    train = split(load_dataset(str(tmp_path / "rows.npz"), Layout.SERIES), 0).train
    assert _int8_steps(train.x)[0] < INPUT_STEPS
    scaled = StandardScaler().fit_transform(train.x.reshape(-1, 8))
    assert _int8_steps(scaled)[scaled.std(axis=0) > 0].min() < INPUT_STEPS
    assert standardization_for(train) is None
