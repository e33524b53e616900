"""Qt-free helpers of the GUI and the frame cache (no window needed)."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from temtrack.errors import ParameterError
from temtrack.io.movie import movie_from_array

pytestmark = pytest.mark.gui


def test_geometry_along_the_line():
    from temtrack_gui import session

    line = [10.0, 20.0, 40.0, 60.0]  # length 50
    assert session.point_along(line, 25.0) == pytest.approx((25.0, 40.0))
    assert session.shift_line(line, 2.0, -3.0) == [7.0, 22.0, 37.0, 62.0]
    s = np.array([0.0, 25.0, 50.0])
    d = np.array([10.0, np.nan, 20.0])
    (xa, ya), (xb, yb) = session.edge_polylines(line, s, d)
    # Each edge point lies half a diameter from the axis, on opposite sides.
    dist = np.hypot(xa - xb, ya - yb)
    assert dist[0] == pytest.approx(10.0) and dist[2] == pytest.approx(20.0) and np.isnan(dist[1])
    assert session.nearest_frame(np.array([0.0, 0.5, 1.0]), 0.7, 3) == 1
    assert session.nearest_frame(None, 7.6, 5) == 4


def test_text_and_parsing():
    from temtrack_gui import session

    assert session.format_with_ci(12.345, [11.0, None], "nm²/s") == "12.35  [11, ∞] nm²/s"
    assert session.parse_probes("20, 60;100") == [20.0, 60.0, 100.0]
    with pytest.raises(ParameterError, match="probe"):
        session.parse_probes("20, abc")
    assert session.nice_length(173.0) == 100.0 and session.nice_length(0.37) == pytest.approx(0.2)
    rows = {k: v for k, v, _ in session.kinetics_rows(
        {"model": "parabolic", "D_nm2_per_s": 200.0, "ci95": {"D_nm2_per_s": [190.0, 210.0]},
         "t0_s": 1.0, "prefactor": 2.0, "comparison": {}})}
    assert rows["model"] == "parabolic" and rows["D"].startswith("200  [190, 210]")


def test_fitted_curves_use_the_core_models():
    from temtrack_gui import session

    from temtrack.series.kinetics import model_curve

    t = np.linspace(0, 30, 61)
    params = {"D_nm2_per_s": 150.0, "t0_s": 2.0}
    kin = {"prefactor": 2.0, "comparison": {"parabolic": {"fittable": True, "params": params},
                                            "mixed": {"fittable": False, "params": None}}}
    curves = session.fitted_curves(kin, t)
    assert set(curves) == {"parabolic"}
    np.testing.assert_allclose(curves["parabolic"], np.sqrt(2 * 150.0 * np.clip(t - 2.0, 0, None)))
    np.testing.assert_allclose(curves["parabolic"], model_curve("parabolic", t, params))


def test_build_recipe_keeps_unknown_widgets_out():
    analyze = pytest.importorskip("temtrack.pipeline.analyze")
    from temtrack_gui import session

    r = session.build_recipe(analyze.AnalyzeRecipe, None, line=[0, 0, 100, 0], width_px=None,
                             probes_nm=[10.0], not_a_field=1)
    assert r.line == [0.0, 0.0, 100.0, 0.0] and r.width_px is None and r.probes_nm == [10.0]
    with pytest.raises(ParameterError):
        session.build_recipe(analyze.AnalyzeRecipe, r, auto=True)  # line and auto together


class _CountingFrames:
    """A lazy stack that counts reads and can block them (to test the read-ahead thread)."""

    def __init__(self, n, shape=(32, 32)):
        self.data = (np.arange(n, dtype=np.uint16)[:, None, None] * np.ones(shape, np.uint16))
        self.shape, self.dtype, self.reads = self.data.shape, self.data.dtype, 0
        self.lock = threading.Lock()

    def __getitem__(self, key):
        with self.lock:
            self.reads += 1
        return self.data[key]


def test_frame_cache_reads_ahead_in_the_direction_of_motion():
    from temtrack_gui.frame_cache import FrameCache

    frames = _CountingFrames(100)
    movie = movie_from_array(frames, pixel_size=1.0, frame_interval_s=0.1)
    cache = FrameCache(movie, capacity=12, ahead=6)
    try:
        f = cache.get(10)
        assert f.dtype == np.uint16 and int(f[0, 0]) == 10
        assert cache.wait_filled(5.0)
        assert all(cache.cached(i) for i in range(11, 17))
        cache.get(9)  # moving backwards now
        assert cache.wait_filled(5.0)
        assert all(cache.cached(i) for i in range(3, 9))
        hits = cache.hits
        for i in range(8, 2, -1):
            assert int(cache.get(i)[0, 0]) == i
        assert cache.hits == hits + 6  # all served from the cache
        assert len(cache._frames) <= 12
    finally:
        cache.close()


def test_frame_cache_float_frames_and_bounds():
    from temtrack_gui.frame_cache import FrameCache

    data = np.random.default_rng(0).normal(size=(5, 16, 16)).astype(np.float64)
    cache = FrameCache(movie_from_array(data, pixel_size=1.0), capacity=4, ahead=2)
    try:
        np.testing.assert_allclose(cache.get(4), data[4].astype(np.float32))
        assert cache.get(4).dtype == np.float32
        with pytest.raises(IndexError):
            cache.get(5)
    finally:
        cache.close()
    assert math.isfinite(float(cache.get(0).sum()))  # still readable (synchronously) after close


def test_video_and_stimulus_helpers():
    from temtrack_gui import session

    assert session.clip_rect([-5, 10, 50, 300], (200, 100)) == [0, 10, 45, 190]
    assert session.clip_rect([150, 10, 20, 20], (200, 100)) is None
    assert session.contrast_from_levels((2.0, 1.0), False) == (2.0, 3.0)  # never an empty range
    lo, hi = session.contrast_from_levels((math.log1p(10.0), math.log1p(1000.0)), True)
    assert (lo, hi) == (pytest.approx(10.0), pytest.approx(1000.0))
    assert session.current_scale([0.0, -5e-4]) == (1e6, "µA")
    assert session.current_scale([2e-3, np.nan]) == (1e3, "mA")
    assert session.current_scale([3e-13]) == (1e12, "pA")
    # Series of an analysed frame range spread onto the whole movie (NaN elsewhere).
    out = session.per_movie_frame(np.array([[1.0, 2.0], [3.0, 4.0]]), [2, 3], 5)
    assert out.shape == (5, 2) and np.isnan(out[[0, 1, 4]]).all() and out[3].tolist() == [3.0, 4.0]


class _FakeParticles:
    """The fields of a ParticlesResult that the overlay reads."""

    def __init__(self):
        self.time_s = np.array([0.0, 1.0])
        self.pixel_size_nm = 0.5
        self.ids = np.array([3, 7])
        self.x_px = np.array([[10.0, 40.0], [12.0, np.nan]])
        self.y_px = np.array([[20.0, 50.0], [21.0, 52.0]])
        self.equivalent_diameter_nm = np.array([[4.0, 6.0], [5.0, 6.0]])
        self.drift_dy_px = np.array([0.0, 1.0])
        self.drift_dx_px = np.array([0.0, 2.0])
        self.cracked = np.array([False, True])


def test_particle_outlines_from_the_fits():
    from temtrack_gui import session

    res = _FakeParticles()
    o = session.particle_outlines(res, 0, aligned=False)
    assert o["ids"] == [3, 7] and o["cracked"] == [False, True] and o["x"].size == 2 * 50
    ring0 = np.column_stack([o["x"][:48], o["y"][:48]])
    np.testing.assert_allclose(np.hypot(ring0[:, 0] - 10.0, ring0[:, 1] - 20.0), 4.0)  # 2 nm / 0.5 nm/px
    np.testing.assert_allclose(np.hypot(o["x"][50:98] - 40.0, o["y"][50:98] - 50.0), 6.0)
    # Frame 1: particle 7 has no fit; the aligned view moves the outline back by the drift.
    o = session.particle_outlines(res, 1, aligned=True)
    assert o["ids"] == [3]
    assert np.mean(o["x"][:48]) == pytest.approx(10.0) and np.mean(o["y"][:48]) == pytest.approx(20.0)
    assert session.particle_outlines(res, 5, aligned=False)["ids"] == []
