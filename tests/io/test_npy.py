"""NumPy reader: memory map, JSON sidecar calibration, bad arrays."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from temtrack.errors import MovieReadError
from temtrack.io.npy import read_npy


def test_stack_with_sidecar(tmp_path):
    frames = np.random.default_rng(0).random((4, 9, 11)).astype(np.float32)
    path = tmp_path / "m.npy"
    np.save(path, frames)
    movie = read_npy(path)
    assert isinstance(movie.frames, np.memmap) and movie.format == "npy"
    np.testing.assert_array_equal(movie.read(), frames)
    assert movie.pixel_size is None and movie.times_s is None
    assert any(p.startswith("no spatial calibration") for p in movie.problems)
    (tmp_path / "m.json").write_text(json.dumps({"pixel_size": 0.5, "pixel_unit": "1/A", "frame_interval_s": 0.2}))
    movie = read_npy(path)
    assert movie.pixel_unit == "1/nm" and movie.pixel_size == pytest.approx(5.0)
    np.testing.assert_allclose(movie.times_s, [0, 0.2, 0.4, 0.6])
    assert movie.problems == [] and movie.time_source == "axis"
    (tmp_path / "m.json").write_text(json.dumps({"pixel_size": 3, "pixel_unit": "A", "times_s": [1, 2, 4, 8]}))
    movie = read_npy(path)
    assert movie.pixel_size == pytest.approx(0.3) and movie.pixel_unit == "nm"
    np.testing.assert_allclose(movie.times_s, [0, 1, 3, 7])
    assert movie.time_source == "timestamps"
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(movie)).frame(2), frames[2])


def test_single_frame_and_rgb(tmp_path):
    np.save(tmp_path / "one.npy", np.arange(12, dtype=np.uint16).reshape(3, 4))
    movie = read_npy(tmp_path / "one.npy")
    assert movie.frames.shape == (1, 3, 4) and movie.frame(0)[2, 3] == 11
    rgb = np.random.default_rng(1).integers(0, 255, (2, 3, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", rgb)
    movie = read_npy(tmp_path / "rgb.npy")
    np.testing.assert_allclose(movie.read(), 0.2125 * rgb[..., 0] + 0.7154 * rgb[..., 1] + 0.0721 * rgb[..., 2],
                               rtol=1e-5)


def test_bad_arrays(tmp_path):
    cases = {
        "zero.npy": (np.zeros((0, 4, 5), np.float32), "empty stack"),
        "cx.npy": (np.zeros((2, 4, 5), np.complex64), "complex pixels"),
        "1d.npy": (np.zeros(7), r"expected a 2D frame or a 3D stack"),
    }
    for name, (arr, message) in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(MovieReadError, match=rf"{name.replace('.', '[.]')}: .*{message}"):
            read_npy(tmp_path / name)
    full = tmp_path / "full.npy"
    np.save(full, np.zeros((5, 16, 16), np.float32))
    (tmp_path / "cut.npy").write_bytes(full.read_bytes()[:2000])
    with pytest.raises(MovieReadError, match=r"cut\.npy: .*truncated"):
        read_npy(tmp_path / "cut.npy")
    (tmp_path / "junk.npy").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(MovieReadError, match=r"junk\.npy: not a readable \.npy array"):
        read_npy(tmp_path / "junk.npy")
    np.save(tmp_path / "s.npy", np.zeros((2, 3, 3), np.float32))
    (tmp_path / "s.json").write_text("{broken")
    with pytest.raises(MovieReadError, match=r"s\.json: calibration sidecar is not valid JSON"):
        read_npy(tmp_path / "s.npy")
    (tmp_path / "s.json").write_text(json.dumps({"pixel_size": 1.0, "pixel_unit": "px"}))
    with pytest.raises(MovieReadError, match=r"s\.json: pixel_size"):
        read_npy(tmp_path / "s.npy")
