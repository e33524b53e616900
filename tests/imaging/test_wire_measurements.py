"""Fast checks of the wire measurements: sampling, cylinder fit, geometry, recipe, bad inputs."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from temtrack.errors import ParameterError
from temtrack.frame.edges import (
    cylinder_templates,
    fit_cylinder_profiles,
    profile_attenuation,
)
from temtrack.frame.profiles import sample_strip, strip_grid
from temtrack.io.movie import movie_from_array
from temtrack.pipeline.analyze import (
    MIN_FRAMES,
    AnalyzeRecipe,
    analyze,
    write_analyze_results,
)
from temtrack.pipeline.executor import LocalExecutor
from temtrack.series.front import isotonic_increasing
from temtrack.series.kymograph import make_wire_sampler, measure_wire_series
from temtrack.series.wire_geometry import (
    detect_wire_line,
    line_angle_deg,
    validate_line,
)
from temtrack.synthetic.nanowire import make_nanowire_movie


def test_strip_sampling_follows_line_and_shift():
    yy, xx = np.mgrid[0:64, 0:80].astype(np.float32)
    frame = 3 * xx + 1000 * yy  # linear: bilinear sampling is exact
    grid = strip_grid((10, 20, 50, 40), half_width_px=4)
    s = sample_strip(frame, grid)
    np.testing.assert_allclose(s, 3 * grid.cols + 1000 * grid.rows, rtol=0, atol=0.5)
    # A specimen displaced by (dy, dx) is found at the grid plus the shift.
    shifted = sample_strip(frame, grid, shift_px=(2.5, -1.25))
    np.testing.assert_allclose(shifted, 3 * (grid.cols - 1.25) + 1000 * (grid.rows + 2.5), atol=0.5)
    # Outside the frame: NaN, not clamped values.
    far = sample_strip(frame, grid, shift_px=(100, 0))
    assert np.isnan(far).all()


def test_cylinder_fit_recovers_diameter_and_centre():
    rng = np.random.default_rng(0)
    r = np.arange(-60, 61, dtype=float)
    tp = cylinder_templates(r.size)
    true_d, true_c = 47.3, 3.4
    R = true_d / 2
    thick = 2 * np.sqrt(np.clip(R ** 2 - (r - true_c) ** 2, 0, None))
    intensity = 200 * np.exp(-0.02 * thick) * (1 + 0.001 * r)
    prof = rng.poisson(np.tile(intensity, (50, 1))).astype(float)
    fit = fit_cylinder_profiles(profile_attenuation(prof), tp)
    d = fit["diameter_px"]
    print(f"cylinder fit: d = {np.mean(d):.3f} +- {np.std(d):.3f} px (truth {true_d}), "
          f"mean stated err {np.mean(fit['diameter_err_px']):.3f}")
    assert abs(np.mean(d) - true_d) < 0.3
    assert abs(np.mean(fit["center_px"]) - true_c) < 0.3
    # Stated uncertainties within a factor 2 of the actual scatter.
    assert 0.5 < np.std(d) / np.mean(fit["diameter_err_px"]) < 2.0
    # No wire: no diameter.
    flat = profile_attenuation(rng.poisson(np.full((5, r.size), 200.0)).astype(float))
    assert np.isnan(fit_cylinder_profiles(flat, tp)["diameter_px"]).sum() >= 3


def test_isotonic_regression():
    y = np.array([1.0, 3.0, 2.0, np.nan, 4.0, 3.5, 5.0])
    out = isotonic_increasing(y)
    assert np.all(np.diff(out[np.isfinite(out)]) >= 0)
    np.testing.assert_allclose(out[[1, 2]], [2.5, 2.5])
    assert np.isnan(out[3])


@pytest.mark.parametrize("angle", [23.0, 137.0, 250.0, 301.0])
def test_auto_detection_finds_axis_and_contact(angle):
    frames, truth = make_nanowire_movie(n_frames=3, shape=(256, 256), dose=40, angle_deg=angle, seed=11,
                                        drift_px=5, n_jumps=0, d0_nm=24, d1_nm=38)
    found = detect_wire_line(frames.astype(np.float32))
    err = (found.angle_deg - truth["angle_deg"] + 180) % 360 - 180
    cx, cy = truth["contact_px"]
    x0, y0, x1, y1 = found.line_px
    d_contact = math.hypot(x0 - cx, y0 - cy)
    d_far = math.hypot(x1 - cx, y1 - cy)
    print(f"auto angle {found.angle_deg:.2f} deg (truth {truth['angle_deg']:.2f}, error {err:+.2f}); "
          f"contact found {d_contact:.1f} px from the true contact; width {found.width_px:.1f} px "
          f"(truth {truth['d0_nm'] / truth['pixel_size_nm']:.1f})")
    assert abs(err) < 2.0
    assert d_contact < d_far
    assert d_contact < 0.25 * math.hypot(*np.subtract(truth["line_px"][2:], truth["line_px"][:2]))


def test_validate_line_messages():
    with pytest.raises(ParameterError, match="outside the frame"):
        validate_line([10, 10, 500, 20], (256, 256))
    with pytest.raises(ParameterError, match="four"):
        validate_line([10, 10, 50], (256, 256))
    with pytest.raises(ParameterError, match="at least"):
        validate_line([10, 10, 12, 11], (256, 256))
    assert line_angle_deg([0, 10, 10, 0]) == pytest.approx(45.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(line=None, auto=False), "line along the wire"),
    (dict(line=[1, 2, 3, 4], auto=True), "either a line"),
    (dict(line=[0, 0, 100, 0], width_px=0), "width_px must be a positive"),
    (dict(line=[0, 0, 100, 0], probes_nm=["a"]), "probes_nm"),
    (dict(line=[0, 0, 100, 0], kinetics_models=["cubic"]), "kinetics_models"),
    (dict(line=[0, 0, 100, 0], frames=[5, 2]), "frames"),
    (dict(line=[0, 0, 100, 0], prefactor=-1), "prefactor"),
])
def test_recipe_validation(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        AnalyzeRecipe(**kwargs).validate()


def test_recipe_round_trip():
    r = AnalyzeRecipe(line=[1, 2, 30, 40], probes_nm=[5, 10], width_px=12)
    r.validate()
    again = AnalyzeRecipe.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r


def test_bad_inputs_give_clear_errors(small_movie):
    movie, truth = small_movie
    with pytest.raises(ParameterError, match="outside the frame"):
        analyze(movie, AnalyzeRecipe(line=[-50, 10, 100, 100], drift=False))
    with pytest.raises(ParameterError, match="width"):
        analyze(movie, AnalyzeRecipe(line=truth["line_px"], width_px=0, drift=False))
    one = movie_from_array(movie.read(0, 1), pixel_size=0.8, frame_interval_s=0.5)
    with pytest.raises(ParameterError, match=f"at least {MIN_FRAMES} frames"):
        analyze(one, AnalyzeRecipe(line=truth["line_px"], drift=False))
    uncal = movie_from_array(movie.read(0, 10), frame_interval_s=0.5)
    with pytest.raises(ParameterError, match="pixel size"):
        analyze(uncal, AnalyzeRecipe(line=truth["line_px"], drift=False))


def test_one_and_two_threads_identical(small_movie):
    movie, truth = small_movie
    sampler = make_wire_sampler(truth["line_px"], width_px=truth["d0_nm"] / truth["pixel_size_nm"])
    dy = np.zeros(movie.n_frames)
    runs = []
    for workers in (1, 2):
        # Small chunks so that two threads really interleave.
        ser = measure_wire_series(movie, sampler, dy_px=dy, dx_px=dy, executor=LocalExecutor(workers),
                                  memory_budget_bytes=4 * 224 * 224 * 4 * 3 * 5)
        runs.append(ser)
    for key in ("kymograph", "diameter_px", "diameter_err_px", "amplitude", "core_attenuation", "texture"):
        np.testing.assert_array_equal(getattr(runs[0], key), getattr(runs[1], key), err_msg=key)


def test_small_movie_end_to_end(small_movie, tmp_path):
    movie, truth = small_movie
    calls = []
    recipe = AnalyzeRecipe(line=truth["line_px"], drift=False, probes_nm=[40.0, 70.0])
    res = analyze(movie, recipe, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1] == movie.n_frames
    front = np.asarray(truth["front_position_nm"])
    ok = res.front.used_for_fit
    rms = float(np.sqrt(np.mean((res.front.position_nm[ok] - front[ok]) ** 2)))
    print(f"small movie: front rms {rms:.2f} nm over {ok.sum()} frames; d0 {res.diameter.pristine_nm:.2f} "
          f"(truth {truth['d0_nm']}), d1 {res.diameter.sodiated_nm:.2f} (truth {truth['d1_nm']}); "
          f"kinetics {res.kinetics_json['model']} D={res.kinetics_json['D_nm2_per_s']}")
    assert res.ok, res.problems
    assert ok.sum() >= 20 and rms < 3.0
    # Before the front emerges from under the Na source: NaN and flagged, not noise.
    assert res.front.flags[0] == "before_front" and np.isnan(res.front.position_nm[0])
    out = write_analyze_results(res, tmp_path / "out")
    data = json.loads((out / "results.json").read_text())
    for key in ("model", "D_nm2_per_s", "D_cm2_per_s", "k_nm_per_s", "n", "t0_s", "ci95", "prefactor"):
        assert key in data["kinetics"]
    assert len(data["front"]["time_s"]) == len(data["front"]["position_nm"]) == movie.n_frames
    assert set(data["diameter"]) >= {"pristine_nm", "sodiated_nm", "time_s", "probes"}
    assert list(data["diameter"]["probes"]) == ["40", "70"]
    for key in ("40", "70"):
        d = np.asarray(res.diameter.probes[key])
        true_d = np.asarray(truth["probes_diameter_nm"][key])
        probe_rms = float(np.sqrt(np.nanmean((d - true_d) ** 2)))
        print(f"probe {key} nm: diameter RMS error {probe_rms:.2f} nm over {np.isfinite(d).sum()} frames")
        assert np.isfinite(d).all() and probe_rms < 0.1 * truth["d0_nm"]
    assert len(data["drift"]["dy_px"]) == movie.n_frames
    prov = data["provenance"]
    assert prov["recipe"]["line"] == list(truth["line_px"]) and prov["pixel_size_nm"] == 0.8
    assert prov["started"] and prov["finished"] and prov["temtrack_version"]
    assert AnalyzeRecipe.from_dict(prov["recipe"]) == recipe
    for name in ("front.csv", "diameters.csv", "probes.csv", "shifts.csv", "kymograph.npy", "kymograph.tif",
                 "kymograph.png", "front.png", "diameter.png", "diameter_map.png", "shifts.png"):
        assert (out / name).stat().st_size > 0, name
    header = (out / "front.csv").read_text().splitlines()[0]
    assert header.startswith("frame,time_s,position_nm,uncertainty_nm")
    kymo = np.load(out / "kymograph.npy")
    assert kymo.dtype == np.float32 and kymo.shape[0] == movie.n_frames


def test_no_front_is_reported_not_fitted(tmp_path):
    frames, truth = make_nanowire_movie(n_frames=30, shape=(224, 224), dose=40, angle_deg=70, seed=7,
                                        drift_px=0, n_jumps=0, d0_nm=32, d1_nm=51, D_nm2_per_s=1e-4)
    movie = movie_from_array(frames, pixel_size=0.8, frame_interval_s=0.5)
    res = analyze(movie, AnalyzeRecipe(line=truth["line_px"], drift=False))
    print("no-front evidence:", res.front.evidence, res.problems)
    assert not res.ok
    assert any("no reaction front detected" in p for p in res.problems)
    assert res.kinetics is None and res.kinetics_json["D_nm2_per_s"] is None
    assert np.isnan(res.front.position_nm).all()
    # What was measured is still there: pristine diameter, kymograph, drift.
    assert abs(res.diameter.pristine_nm - truth["d0_nm"]) < 0.05 * truth["d0_nm"]
    out = write_analyze_results(res, tmp_path / "nofront")
    data = json.loads((out / "results.json").read_text())
    assert data["ok"] is False and data["kinetics"]["model"] is None
    assert any("no reaction front detected" in w for w in data["warnings"])
    assert (out / "kymograph.png").exists()


def test_front_leaving_the_wire_is_flagged():
    # The front runs off the far end of the wire half way through the movie.
    frames, truth = make_nanowire_movie(n_frames=40, shape=(224, 224), dose=40, angle_deg=160, seed=8,
                                        drift_px=0, n_jumps=0, d0_nm=32, d1_nm=51, D_nm2_per_s=2500.0)
    movie = movie_from_array(frames, pixel_size=0.8, frame_interval_s=0.5)
    res = analyze(movie, AnalyzeRecipe(line=truth["line_px"], drift=False))
    flags = np.array(res.front.flags)
    front = np.asarray(truth["front_position_nm"])
    gone = front >= truth["wire_length_nm"] - 1e-9
    print(f"front leaves the wire at frame {np.argmax(gone)}; flags: {dict(zip(*np.unique(flags, return_counts=True)))}")
    assert (flags[gone] == "left_wire").mean() > 0.9
    assert not res.front.used_for_fit[gone].any()
    assert any("end of the measured wire" in w for w in res.warnings)
    # The fully sodiated wire is still measured.
    assert abs(res.diameter.sodiated_nm - truth["d1_nm"]) < 0.03 * truth["d1_nm"]
    assert res.ok, res.problems


def test_auto_with_source_outside_the_field(small_movie):
    # In this movie the Na source sits mostly outside the frame: the image alone cannot tell the
    # contact end, so the pipeline takes the end where the wire changes first.
    movie, truth = small_movie
    res = analyze(movie, AnalyzeRecipe(auto=True, drift=False))
    line = res.wire["line_px"]
    err = (res.wire["angle_deg"] - truth["angle_deg"] + 180) % 360 - 180
    cx, cy = truth["contact_px"]
    d_contact = math.hypot(line[0] - cx, line[1] - cy)
    print(f"auto (source outside): angle error {err:+.2f} deg, contact {d_contact:.1f} px from truth, "
          f"evidence {res.wire['detection']}")
    assert abs(err) < 2.0
    assert d_contact < 0.25 * res.wire["length_nm"] / truth["pixel_size_nm"]
    assert res.ok and res.front.used_for_fit.sum() >= 20


def test_frame_range_and_cancel(small_movie):
    import threading

    from temtrack.errors import Cancelled

    movie, truth = small_movie
    res = analyze(movie, AnalyzeRecipe(line=truth["line_px"], drift=False, frames=[5, 35]))
    assert res.frame_index[0] == 5 and res.time_s.size == 30 and res.series.kymograph.shape[0] == 30
    np.testing.assert_allclose(res.time_s, np.asarray(truth["time_s"])[5:35])
    with pytest.raises(ParameterError, match="past the movie"):
        analyze(movie, AnalyzeRecipe(line=truth["line_px"], drift=False, frames=[0, 400]))
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        analyze(movie, AnalyzeRecipe(line=truth["line_px"], drift=False), cancel=stop)
