"""Video reader: exact frame count, lazy random access, luminance, times from fps, bad files."""
from __future__ import annotations

import pickle

import imageio.v2 as iio
import numpy as np
import pytest

from temtrack.errors import MovieReadError
from temtrack.io.lazy import LazyFrames
from temtrack.io.video import read_video

LEVELS = np.array([10, 30, 50, 70, 90, 110, 130, 150, 170, 190, 210], dtype=np.uint8)


def _write(path, codec=None, fps=8.0):
    """Grey frames of known level with a bright square that moves one block per frame."""
    frames = []
    for i, level in enumerate(LEVELS):
        f = np.full((48, 64, 3), level, np.uint8)
        f[8:24, 4 * i: 4 * i + 16] = 250
        frames.append(f)
    kwargs = {"codec": codec} if codec else {}
    iio.mimwrite(path, frames, fps=fps, macro_block_size=16, **kwargs)
    return np.stack(frames)


@pytest.mark.parametrize("name, codec, tol", [("m.mp4", None, 3.0), ("m.avi", "png", 0.0)])
def test_round_trip(tmp_path, name, codec, tol):
    path = tmp_path / name
    written = _write(path, codec)
    movie = read_video(path)
    assert movie.format == "video" and movie.n_frames == len(LEVELS) and movie.frame_shape == (48, 64)
    assert isinstance(movie.frames, LazyFrames) and movie.dtype == np.float32
    assert movie.pixel_size is None and movie.pixel_unit is None
    assert any(p.startswith("no spatial calibration") for p in movie.problems)
    np.testing.assert_allclose(movie.times_s, np.arange(len(LEVELS)) / 8.0)
    assert movie.time_source == "axis"
    # random access, backwards too
    for i in (7, 2, 10, 0):
        frame = movie.frame(i)
        err = np.abs(frame[30:, :] - LEVELS[i]).mean()  # background away from the moving square
        print(f"{name} frame {i}: mean abs error of the background {err:.2f} DN")
        assert err <= tol + 1e-4
        assert frame[16, 4 * i + 8] > 200  # the square is where it was drawn
    if tol == 0.0:  # lossless codec: the whole frame, exactly the luminance of what was written
        np.testing.assert_allclose(movie.read(3, 5), written[3:5, ..., 0], atol=1e-3)
    again = pickle.loads(pickle.dumps(movie))
    np.testing.assert_allclose(again.frame(4), movie.frame(4))


def test_bad_video_files(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(MovieReadError, match=r"junk\.mp4: not a readable video"):
        read_video(junk)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(MovieReadError, match=r"empty\.avi: not a readable video"):
        read_video(empty)
    with pytest.raises(MovieReadError, match="file not found"):
        read_video(tmp_path / "none.mp4")
