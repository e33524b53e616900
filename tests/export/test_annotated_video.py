import json

import numpy as np
import pytest

from temtrack.errors import ParameterError
from temtrack.export.annotated_video import Overlay, annotated_frames, export_video, round_scale_bar_nm
from temtrack.io.movie import movie_from_array


@pytest.mark.parametrize("width,expected", [(204.8, 50), (1000, 200), (33, 5), (7, 1), (2600, 500)])
def test_scale_bar_is_round(width, expected):
    assert round_scale_bar_nm(width) == pytest.approx(expected)


@pytest.fixture(scope="module")
def movie():
    rng = np.random.default_rng(0)
    return movie_from_array(rng.poisson(30, (12, 120, 160)).astype(np.uint16), pixel_size=0.8, frame_interval_s=0.5)


def test_scale_bar_pixels_are_drawn(movie):
    plain = next(annotated_frames(movie, scale_bar=False, timestamp=False, contrast=(0, 255), upscale=1))
    barred = next(annotated_frames(movie, scale_bar=True, timestamp=False, contrast=(0, 255), upscale=1))
    changed = np.any(plain != barred, axis=2)
    rows, cols = np.nonzero(changed)
    # 160 px * 0.8 nm = 128 nm field -> a 20 nm bar = 25 px, bottom right
    assert rows.min() > 60 and cols.min() > 80
    white_rows = np.nonzero(np.all(barred == 255, axis=2).sum(axis=1) >= 24)[0]
    assert white_rows.size >= 2


def test_mp4_decodes_with_the_right_frames(tmp_path, movie):
    import imageio
    out = export_video(movie, tmp_path / "m.mp4", fps=10)
    reader = imageio.get_reader(out)
    n = reader.count_frames()
    frame = reader.get_data(0)
    assert n == movie.n_frames
    zoom = int(np.ceil(480 / 160))
    assert frame.shape[:2] == (120 * zoom, 160 * zoom)
    assert [p.name for p in tmp_path.iterdir()] == ["m.mp4"]   # no temporary left


def test_gif_and_overlay(tmp_path, movie):
    from PIL import Image
    results = {"provenance": {"pixel_size_nm": 0.8, "recipe": {"line": [20, 60, 140, 60]}},
               "front": {"time_s": list(np.arange(12) * 0.5), "position_nm": [float(5 * i) for i in range(12)]},
               "drift": {"dy_px": [0.0] * 12, "dx_px": [0.0] * 12}, "diameter": {"probes": {"40": [1] * 12}}}
    ov = Overlay.from_results(json.loads(json.dumps(results)))
    out = export_video(movie, tmp_path / "m.gif", frames=range(2, 6), overlay=ov, upscale=2)
    img = Image.open(out)
    assert img.n_frames == 4 and img.size == (320, 240)
    first = np.asarray(next(annotated_frames(movie, frames=range(5, 6), overlay=ov, upscale=1, scale_bar=False,
                                             timestamp=False)))
    # front marker at s = 25 nm -> x = 20 + 25/0.8 = 51.25 px on the row 60 line: reddish pixels there
    red = (first[:, :, 0] > 200) & (first[:, :, 1] < 150)
    ys, xs = np.nonzero(red)
    assert xs.size and abs(np.median(xs) - 51.5) < 2 and abs(np.median(ys) - 60) < 3


def test_bad_arguments(tmp_path, movie):
    with pytest.raises(ParameterError, match=".mp4 or .gif"):
        export_video(movie, tmp_path / "m.avi")
    with pytest.raises(ParameterError, match="crop"):
        next(annotated_frames(movie, crop=(150, 0, 50, 50)))
    with pytest.raises(ParameterError, match="frame range"):
        next(annotated_frames(movie, frames=range(5, 40)))
