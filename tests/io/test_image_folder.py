"""Folder-of-frames reader: natural order, laziness, colour, mismatched and empty folders."""
from __future__ import annotations

import pickle

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from temtrack.errors import MovieReadError
from temtrack.io.image_folder import natural_key, read_image_folder
from temtrack.io.lazy import LazyFrames


def _frames(n=12, rows=10, cols=14, dtype=np.uint16):
    rng = np.random.default_rng(5)
    return (rng.random((n, rows, cols)) * 60000).astype(dtype)


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_numbered_frames_in_natural_order(tmp_path, suffix):
    frames = _frames()
    for i, f in enumerate(frames):  # unpadded numbers: a text sort would put 10 and 11 after 1
        name = tmp_path / f"frame_{i}{suffix}"
        tifffile.imwrite(name, f) if suffix == ".tif" else iio.imwrite(name, f)
    (tmp_path / "notes.txt").write_text("not a frame")
    movie = read_image_folder(tmp_path)
    assert movie.format == "image-folder" and movie.n_frames == 12 and movie.frame_shape == (10, 14)
    assert isinstance(movie.frames, LazyFrames) and movie.dtype == np.uint16
    np.testing.assert_array_equal(movie.frames[11], frames[11])
    np.testing.assert_array_equal(movie.read(), frames.astype(np.float32))
    assert movie.pixel_size is None and movie.times_s is None
    assert any(p.startswith("no spatial calibration") for p in movie.problems)
    assert any(p.startswith("no frame timing") for p in movie.problems)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(movie)).frame(10), frames[10])


def test_natural_key_orders_numbers_as_numbers():
    names = ["img_10.png", "img_2.png", "img_1.png", "img_0100.png", "img_20.png"]
    assert sorted(names, key=natural_key) == ["img_1.png", "img_2.png", "img_10.png", "img_20.png", "img_0100.png"]


def test_rgb_png_frames_become_luminance(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 255, size=(3, 8, 9, 3), dtype=np.uint8)
    for i, f in enumerate(rgb):
        iio.imwrite(tmp_path / f"c{i}.png", f)
    movie = read_image_folder(tmp_path)
    expected = 0.2125 * rgb[..., 0] + 0.7154 * rgb[..., 1] + 0.0721 * rgb[..., 2]
    np.testing.assert_allclose(movie.read(), expected, rtol=1e-5)
    assert any("luminance" in p for p in movie.problems)


def test_mismatched_sizes_name_the_first_offender(tmp_path):
    frames = _frames(n=5)
    for i, f in enumerate(frames):
        tifffile.imwrite(tmp_path / f"f{i}.tif", f)
    tifffile.imwrite(tmp_path / "f3.tif", frames[3][:, :-2])
    tifffile.imwrite(tmp_path / "f4.tif", frames[4][:-1])
    with pytest.raises(MovieReadError, match=r"f3\.tif: frame size \(10, 12\) differs from the first frame f0\.tif"):
        read_image_folder(tmp_path)


def test_empty_missing_and_corrupt(tmp_path):
    with pytest.raises(MovieReadError, match="no TIFF or PNG frames in this folder"):
        read_image_folder(tmp_path)
    with pytest.raises(MovieReadError, match="not a folder"):
        read_image_folder(tmp_path / "absent")
    tifffile.imwrite(tmp_path / "a1.tif", _frames(n=1)[0])
    (tmp_path / "a2.tif").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(MovieReadError, match=r"a2\.tif: not a readable image"):
        read_image_folder(tmp_path)


def test_calibration_taken_from_first_imagej_tiff(tmp_path):
    frames = _frames(n=3)
    for i, f in enumerate(frames):
        tifffile.imwrite(tmp_path / f"s{i:03d}.tif", f, imagej=True, resolution=(1 / 0.04, 1 / 0.04),
                         metadata={"unit": "1/nm"})
    movie = read_image_folder(tmp_path)
    assert movie.pixel_unit == "1/nm" and movie.pixel_size == pytest.approx(0.04, rel=1e-6)
    assert not any(p.startswith("no spatial calibration") for p in movie.problems)
    assert "s000.tif" in movie.original_metadata["calibration_source"]
