"""Each signal method gives the numbers the pipeline gives when called directly (as the CLI does)."""
from __future__ import annotations

import numpy as np
import pytest

hs = pytest.importorskip("hyperspy.api")

from temtrack.errors import ParameterError
from temtrack.hyperspy import movie_to_signal
from temtrack.hyperspy.signals import InSituMovie, LazyInSituMovie
from temtrack.io.movie import movie_from_array


@pytest.fixture(scope="module")
def drift_pair(wire):
    """The core's drift on the movie and the lazy signal's estimate_drift (with a progress bar)."""
    from temtrack.series.drift import estimate_drift

    movie = wire[0]
    core = estimate_drift(movie)
    lazy = movie_to_signal(movie, lazy=True)
    assert type(lazy) is LazyInSituMovie
    sig = lazy.estimate_drift(show_progressbar=False)
    return core, sig


def test_progressbar_follows_show_progressbar_and_the_preference(capsys):
    frames = np.random.default_rng(1).poisson(20, (12, 48, 48)).astype(np.float32)
    s = movie_to_signal(movie_from_array(frames, pixel_size=1.0, frame_interval_s=1.0))
    s.estimate_drift(show_progressbar=True)
    err = capsys.readouterr().err
    assert "drift" in err and "24/24" in err, err  # two passes over 12 frames
    s.estimate_drift(show_progressbar=False)
    assert "drift" not in capsys.readouterr().err
    old = hs.preferences.General.show_progressbar
    try:
        hs.preferences.General.show_progressbar = False
        s.estimate_drift()
        assert "drift" not in capsys.readouterr().err
        hs.preferences.General.show_progressbar = True
        s.estimate_drift()
        assert "drift" in capsys.readouterr().err
    finally:
        hs.preferences.General.show_progressbar = old


def test_estimate_drift_and_align_match_the_core(wire, drift_pair):
    from temtrack.series.drift import aligned_movie

    movie, truth, frames = wire
    core, sig = drift_pair
    assert sig.data.shape == (2, movie.n_frames)
    np.testing.assert_array_equal(sig.data[0], core.dy_px)
    np.testing.assert_array_equal(sig.data[1], core.dx_px)
    t_axis = sig.axes_manager.signal_axes[0]
    assert (t_axis.name, t_axis.units) == ("time", "s")
    np.testing.assert_allclose(t_axis.axis, movie.times_s)
    err = np.hypot(core.dy_px - np.asarray(truth["drift_dy_px"]), core.dx_px - np.asarray(truth["drift_dx_px"]))
    print(f"drift RMS error vs truth: {np.sqrt(np.mean(err ** 2)):.3f} px (max {err.max():.3f} px)")
    assert np.sqrt(np.mean(err ** 2)) < 0.5

    # Eager signal over the same uint16 array; align with the estimated drift signal.
    s = movie_to_signal(movie)
    assert type(s) is InSituMovie and s.data is frames
    aligned = s.align(sig)
    ref = aligned_movie(movie, core)
    y0, _, x0, _ = ref.original_metadata["temtrack_alignment"]["crop_y0_y1_x0_x1"]
    assert type(aligned) is InSituMovie and aligned.data.shape == ref.frames.shape
    for i in (0, 31, 59):
        np.testing.assert_array_equal(aligned.data[i], ref.frame(i))
    px = truth["pixel_size_nm"]
    xa, ya = aligned.axes_manager.signal_axes
    assert xa.offset == pytest.approx(x0 * px) and ya.offset == pytest.approx(y0 * px) and xa.units == "nm"

    # Lazy in, lazy out: nothing computed until asked, and the same pixels.
    lazy_aligned = movie_to_signal(movie, lazy=True).align(sig)
    assert type(lazy_aligned) is LazyInSituMovie
    np.testing.assert_array_equal(np.asarray(lazy_aligned.data[31]), ref.frame(31))
    # An (n, 2) array of shifts works as well; a wrong length is refused.
    again = s.align(np.stack([core.dy_px, core.dx_px], axis=1))
    np.testing.assert_array_equal(again.data[59], aligned.data[59])
    with pytest.raises(ParameterError, match="frames"):
        s.align(np.zeros((5, 2)))


@pytest.fixture(scope="module")
def analyzed(wire, wire_width_px, drift_pair):
    """analyze() called directly (as `temtrack analyze` does) and track_front on the signal."""
    from temtrack.pipeline.analyze import AnalyzeRecipe, analyze

    movie, truth, _ = wire
    core_drift, drift_sig = drift_pair
    shifts = (core_drift.dy_px, core_drift.dx_px)
    recipe = AnalyzeRecipe(line=list(truth["line_px"]), width_px=wire_width_px, probes_nm=[30.0])
    direct = analyze(movie, recipe, shifts_px=shifts)
    s = movie_to_signal(movie)
    tracked = s.track_front(truth["line_px"], width=wire_width_px, probes_nm=(30.0,), drift=drift_sig,
                            show_progressbar=False)
    return direct, tracked, s


def test_track_front_gives_the_numbers_of_analyze(wire, analyzed):
    truth = wire[1]
    direct, tracked, _ = analyzed
    assert direct.ok and tracked.ok, direct.problems
    np.testing.assert_array_equal(tracked.front.data, direct.front.position_nm)
    np.testing.assert_array_equal(np.sqrt(tracked.front.metadata.Signal.Noise_properties.variance.data),
                                  direct.front.uncertainty_nm)
    np.testing.assert_array_equal(tracked.front.axes_manager[0].axis, direct.time_s)
    assert tracked.front.axes_manager[0].units == "s"
    a, b = tracked.to_json(), direct.to_json()
    for key in ("model", "D_nm2_per_s", "k_nm_per_s", "n", "t0_s"):
        assert a["kinetics"][key] == b["kinetics"][key], key
    assert tracked.kinetics.D_nm2_per_s == b["kinetics"]["D_nm2_per_s"]
    assert tracked.pristine_nm == b["diameter"]["pristine_nm"]
    assert tracked.sodiated_nm == b["diameter"]["sodiated_nm"]
    assert list(tracked.diameter_probes) == [30.0] and len(direct.diameter.probes) == 1
    np.testing.assert_array_equal(tracked.diameter_probes[30.0].data, next(iter(direct.diameter.probes.values())))
    np.testing.assert_array_equal(tracked.diameter_map.data, direct.diameter.map_nm)
    np.testing.assert_array_equal(tracked.kymograph.data, direct.series.kymograph)
    s_axis, t_axis = tracked.kymograph.axes_manager.signal_axes
    assert (s_axis.name, s_axis.units, t_axis.name, t_axis.units) == ("s", "nm", "time", "s")
    assert s_axis.scale == pytest.approx(truth["pixel_size_nm"])
    D_true = truth["kinetics"]["D_nm2_per_s"]
    print(f"track_front: D = {tracked.kinetics.D_nm2_per_s:.1f} nm^2/s (truth {D_true:.1f}), pristine "
          f"{tracked.pristine_nm:.2f} nm (truth {truth['d0_nm']}), sodiated {tracked.sodiated_nm:.2f} nm "
          f"(truth {truth['d1_nm']})")
    assert tracked.kinetics.D_nm2_per_s == pytest.approx(D_true, rel=0.25)


def test_fit_kinetics_matches_the_core_and_returns_curves(analyzed):
    from temtrack.series.kinetics import fit_kinetics

    direct, tracked, s = analyzed
    fr = direct.front
    ok = fr.used_for_fit
    core = fit_kinetics(direct.time_s[ok], fr.position_nm[ok], position_err_nm=fr.uncertainty_nm[ok],
                        models=["parabolic", "linear"], prefactor=4.0)
    fit = s.fit_kinetics(tracked, models=["parabolic", "linear"], prefactor=4.0)
    assert _same_json(fit.to_json(), core.to_json())
    assert (fit.model, fit.D_nm2_per_s, fit.t0_s) == (core.best.name, core.to_json()["D_nm2_per_s"],
                                                      core.best.params["t0_s"])
    assert set(fit.curves) == set(core.fits)
    curve = fit.best_curve
    np.testing.assert_allclose(curve.data, core.best.predict(curve.axes_manager[0].axis))
    assert curve.axes_manager[0].units == "s"
    # The front signal alone carries what the fit needs (mask and uncertainties).
    from_signal = s.fit_kinetics(tracked.front, models=["parabolic", "linear"], prefactor=4.0)
    assert from_signal.D_nm2_per_s == fit.D_nm2_per_s
    with pytest.raises(ParameterError):
        s.fit_kinetics(tracked, width=3)


def _same_json(a, b):
    import json
    return json.dumps(a, sort_keys=True, default=float) == json.dumps(b, sort_keys=True, default=float)


def test_kymograph_equals_the_analyze_pass_on_a_lazy_signal(wire, analyzed, drift_pair, wire_width_px):
    movie, truth, _ = wire
    direct, _, _ = analyzed
    lazy = movie_to_signal(movie, lazy=True)
    ky = lazy.kymograph(truth["line_px"], width=wire_width_px, drift=drift_pair[1], show_progressbar=False)
    np.testing.assert_array_equal(ky.data, direct.series.kymograph)
    s_axis, t_axis = ky.axes_manager.signal_axes
    assert s_axis.units == "nm" and t_axis.units == "s" and t_axis.size == movie.n_frames
    assert s_axis.scale * (s_axis.size - 1) == pytest.approx(direct.series.s_px[-1] * truth["pixel_size_nm"])
    with pytest.raises(ParameterError, match="line"):
        lazy.kymograph((1, 2, 3), show_progressbar=False)


def test_ring_evolution_matches_run_rings():
    from temtrack.pipeline.rings import RingsRecipe, run_rings
    from temtrack.synthetic.saed import make_saed_movie

    frames, truth = make_saed_movie(n_frames=6, shape=(192, 192), seed=1)[:2]
    movie = movie_from_array(frames, pixel_size=truth["pixel_size_inv_nm"], pixel_unit="1/nm",
                             frame_interval_s=truth["frame_interval_s"])
    phases = ["beta-Sn", "Na15Sn4"]
    direct = run_rings(movie, RingsRecipe(phases=phases))
    s = hs.signals.Signal2D(frames)
    s.axes_manager[0].name, s.axes_manager[0].units, s.axes_manager[0].scale = "time", "s", truth["frame_interval_s"]
    for ax in s.axes_manager.signal_axes:
        ax.units, ax.scale = "1/nm", truth["pixel_size_inv_nm"]
    s.set_signal_type("in_situ_diffraction")
    ev = s.ring_evolution(phases, show_progressbar=False)
    np.testing.assert_array_equal(ev.qt_map.data, direct.profiles)
    q_axis, t_axis = ev.qt_map.axes_manager.signal_axes
    assert (q_axis.name, q_axis.units, t_axis.units) == ("q", "1/nm", "s")
    np.testing.assert_allclose(q_axis.axis, direct.q_nm_inv, rtol=1e-9)
    assert ev.phase_names == list(direct.fractions)
    for i, name in enumerate(ev.phase_names):
        np.testing.assert_array_equal(ev.phase_fractions.inav[i].data, direct.fractions[name])
        np.testing.assert_array_equal(ev.fractions[name].data, direct.fractions[name])
    assert ev.onsets_s == direct.onsets_s
    print("ring_evolution onsets:", ev.onsets_s, "truth:", truth["onsets_s"])


def test_fft_evolution_matches_run_fft():
    from temtrack.pipeline.fft import FFTRecipe, run_fft
    from temtrack.synthetic.hrtem import make_hrtem_movie

    frames, truth = make_hrtem_movie(n_frames=12, shape=(192, 192), seed=2)[:2]
    movie = movie_from_array(frames, pixel_size=truth["pixel_size_nm"], frame_interval_s=truth["frame_interval_s"])
    roi = [32, 40, 128, 120]
    direct = run_fft(movie, FFTRecipe(roi=roi))
    ev = movie_to_signal(movie, lazy=True).fft_evolution(roi, show_progressbar=False)
    np.testing.assert_array_equal(ev.d_nm.data, direct.series.d_nm.T)
    np.testing.assert_array_equal(ev.expansion_pct.data, direct.series.expansion_pct.T)
    np.testing.assert_array_equal(ev.crystalline_fraction.data, direct.series.crystalline_fraction)
    np.testing.assert_array_equal(ev.mean_power.data, direct.mean_power)
    kx = ev.mean_power.axes_manager.signal_axes[0]
    assert kx.units == "1/nm" and kx.scale == pytest.approx(1 / (128 * truth["pixel_size_nm"]))
    assert ev.d_nm.axes_manager.signal_axes[0].units == "s"
    print("fft_evolution reference d (nm):", np.round(direct.series.reference_d_nm, 4))
    # An image method on a pattern calibrated in 1/nm says what to use instead.
    diff = movie_to_signal(movie_from_array(frames, pixel_size=0.1, pixel_unit="1/nm", frame_interval_s=1.0))
    diff.set_signal_type("in_situ_movie")
    with pytest.raises(ParameterError, match="diffraction"):
        diff.fft_evolution(show_progressbar=False)
