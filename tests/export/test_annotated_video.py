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


def _results_with_log(n=12, dt=0.5):
    t = np.arange(n) * dt
    current = [None if i < 2 else (0.0 if i < 6 else -3e-6) for i in range(n)]   # null = outside the log
    return {"provenance": {"pixel_size_nm": 0.8, "recipe": {"line": [20, 60, 140, 60]}},
            "stimulus": {"time_s": list(t), "current_A": current, "voltage_V": None}}


def test_current_trace_strip_with_moving_cursor(movie):
    from temtrack.export.annotated_video import Trace
    trace = Trace.from_results(json.loads(json.dumps(_results_with_log())))
    assert trace.quantity == "current" and trace.unit == "uA"
    np.testing.assert_allclose(trace.values[6:], -3.0)
    frames = list(annotated_frames(movie, overlay=None, trace=trace, upscale=2, scale_bar=False, timestamp=False,
                                   contrast=(0, 255)))
    h_img = 120 * 2
    strip = [f[h_img:] for f in frames]
    assert frames[0].shape[0] > h_img and all(f.shape == frames[0].shape for f in frames)

    def cursor_col(s):
        white = np.all(s > 240, axis=2).sum(axis=0)        # the cursor is the tallest white column
        return int(np.argmax(white))

    cols = [cursor_col(s) for s in strip]
    print("cursor columns over the frames:", cols)
    assert cols == sorted(cols) and cols[-1] - cols[0] > 0.8 * (2 * 160 - 60)
    # The trace (red) is drawn low on the right (-3 uA) and high in the middle (0 uA).
    red = (strip[0][:, :, 0] > 200) & (strip[0][:, :, 1] < 140)
    ys, xs = np.nonzero(red)
    mid = (xs > 0.35 * 320) & (xs < 0.45 * 320)
    right = xs > 0.8 * 320
    assert mid.any() and right.any() and ys[right].mean() > ys[mid].mean() + 10


def test_trace_in_mp4_and_missing_quantities(tmp_path, movie):
    import imageio

    from temtrack.export.annotated_video import Trace
    results = json.loads(json.dumps(_results_with_log()))
    out = export_video(movie, tmp_path / "t.mp4", fps=10, trace=Trace.from_results(results), upscale=2)
    reader = imageio.get_reader(out)
    frame = reader.get_data(0)
    assert reader.count_frames() == movie.n_frames and frame.shape[0] > 240 and frame.shape[0] % 2 == 0
    assert Trace.from_results({"front": {}}) is None
    with pytest.raises(ParameterError, match="no logged voltage"):
        Trace.from_results(results, "voltage")


def test_export_video_cli_with_results_log(tmp_path, movie):
    """`temtrack export-video --results DIR --trace current` on a TIFF movie and a results.json with a log."""
    import imageio

    from temtrack.cli import main
    from temtrack.io.results import write_json_atomic
    from temtrack.synthetic import save_movie_tiff
    save_movie_tiff(tmp_path / "m.tif", np.asarray(movie.read(0, movie.n_frames)), pixel_size=0.8, frame_interval_s=0.5)
    res = tmp_path / "res"
    res.mkdir()
    write_json_atomic(res / "results.json", _results_with_log())
    assert main(["-q", "export-video", str(tmp_path / "m.tif"), str(tmp_path / "o.gif"), "--results", str(res),
                 "--trace", "current", "--fps", "5"]) == 0
    gif = imageio.get_reader(tmp_path / "o.gif")
    assert gif.get_data(0).shape[0] > 120 * 3     # image (zoom 3) plus the strip
    assert main(["-q", "export-video", str(tmp_path / "m.tif"), str(tmp_path / "o2.gif"), "--trace", "voltage"]) == 2
