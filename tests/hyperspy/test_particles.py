"""InSituMovie.track_particles gives the numbers of run_particles (what `temtrack particles` runs)."""
from __future__ import annotations

import numpy as np
import pytest

hs = pytest.importorskip("hyperspy.api")

from temtrack.errors import ParameterError
from temtrack.hyperspy import movie_to_signal
from temtrack.hyperspy.results import ParticleTracking
from temtrack.io.movie import movie_from_array

SMALL = dict(n_frames=10, shape=(150, 150), n_particles=3, touching_pairs=1, dose=40.0, seed=7, drift_px=3.0,
             radius_nm=(9.0, 12.0), onset_s=(3.0, 5.0), reaction_time_s=4.0)


@pytest.fixture(scope="module")
def particles_movie():
    from temtrack.synthetic.particles import make_particles_movie

    frames, truth = make_particles_movie(**SMALL)
    movie = movie_from_array(frames, pixel_size=truth["pixel_size_nm"], frame_interval_s=truth["frame_interval_s"],
                             path="<synthetic particles>")
    return movie, truth


@pytest.fixture(scope="module")
def direct_and_signal(particles_movie):
    from temtrack.pipeline.particles import ParticlesRecipe, run_particles

    movie, truth = particles_movie
    direct = run_particles(movie, ParticlesRecipe())  # drift estimated, as the CLI does
    tracked = movie_to_signal(movie).track_particles(show_progressbar=False)
    return direct, tracked


def test_track_particles_gives_the_numbers_of_run_particles(particles_movie, direct_and_signal):
    movie, truth = particles_movie
    direct, tracked = direct_and_signal
    assert isinstance(tracked, ParticleTracking)
    print(tracked, "problems:", tracked.problems)
    assert tracked.n_particles == direct.n_particles == len(truth["particles"])
    np.testing.assert_array_equal(tracked.result.area_nm2, direct.area_nm2)
    np.testing.assert_array_equal(tracked.result.onset_s, direct.onset_s)
    # Signals: particle | time, calibrated, one row per particle.
    assert tracked.area.data.shape == (direct.n_particles, movie.n_frames)
    t_axis = tracked.area.axes_manager.signal_axes[0]
    assert (t_axis.name, t_axis.units) == ("time", "s")
    np.testing.assert_allclose(t_axis.axis, movie.times_s)
    for k in range(direct.n_particles):
        np.testing.assert_array_equal(tracked.area.inav[k].data, direct.area_nm2[:, k])
        np.testing.assert_array_equal(tracked.area_frame.inav[k].data, direct.area_frame_nm2[:, k])
        np.testing.assert_array_equal(tracked.volume_expansion.inav[k].data, direct.volume_expansion[:, k])
    assert tracked.area.metadata.Signal.quantity == "Area (nm^2)"
    # results.json and the tables are those of the pipeline.
    js = tracked.to_json()
    assert js["summary"]["n_particles"] == direct.n_particles
    assert js["particles"][0]["area_nm2"] is not None
    summary = tracked.summary()
    assert summary["id"] == list(direct.ids)
    np.testing.assert_array_equal(summary["onset_s"], direct.onset_s)
    table = tracked.table()
    assert table["area_nm2"].size == direct.n_particles * movie.n_frames
    assert set(tracked.onsets_s) == set(int(i) for i in direct.ids)


def test_lazy_signal_and_given_drift_give_the_same_areas(particles_movie):
    from temtrack.hyperspy.signals import LazyInSituMovie
    from temtrack.pipeline.particles import ParticlesRecipe, run_particles

    movie, truth = particles_movie
    dy, dx = np.asarray(truth["drift_dy_px"]), np.asarray(truth["drift_dx_px"])
    direct = run_particles(movie, ParticlesRecipe(), drift=(dy, dx))
    lazy = movie_to_signal(movie, lazy=True)
    assert type(lazy) is LazyInSituMovie
    tracked = lazy.track_particles(drift=np.stack([dy, dx], axis=1), show_progressbar=False)
    np.testing.assert_array_equal(tracked.result.area_nm2, direct.area_nm2)
    np.testing.assert_array_equal(tracked.result.drift_dy_px, dy)
    assert tracked.result.drift_source == "given"
    # Same areas as the truth within the accuracy the core promises for a short movie.
    true_c = np.array([p["centre_yx_px"] for p in truth["particles"]])
    idx = np.linalg.norm(direct.centre0_yx_px[:, None] - true_c[None], axis=2).argmin(axis=1)
    err = [np.nanmedian(direct.area_nm2[:, j] / np.asarray(truth["particles"][i]["area_nm2"]) - 1)
           for j, i in enumerate(idx)]
    print("median area error per particle (%):", np.round(100 * np.asarray(err), 2))
    assert np.all(np.abs(err) < 0.05)


def test_track_particles_progress_and_validation(particles_movie, capsys):
    movie, truth = particles_movie
    s = movie_to_signal(movie)
    drift = np.stack([truth["drift_dy_px"], truth["drift_dx_px"]], axis=1)
    s.track_particles(drift=drift, show_progressbar=True, regularise=0.0)
    err = capsys.readouterr().err
    assert "particles" in err and f"{movie.n_frames}/{movie.n_frames}" in err, err
    with pytest.raises(ParameterError, match="polarity"):
        s.track_particles(polarity="grey", drift=drift, show_progressbar=False)
    with pytest.raises(ParameterError, match="unexpected keyword|no_such_option"):
        s.track_particles(drift=drift, no_such_option=1, show_progressbar=False)
    with pytest.raises(ParameterError, match="regularise"):
        s.track_particles(drift=drift, regularise=-1, show_progressbar=False)
    with pytest.raises(ParameterError, match="frames"):
        s.track_particles(drift=np.zeros((3, 2)), show_progressbar=False)
    with pytest.raises(ParameterError, match="detect_frames"):
        s.track_particles(drift=drift, detect_frames=0, show_progressbar=False)
    diffraction = movie_to_signal(movie_from_array(np.ones((3, 32, 32), np.float32), pixel_size=0.01,
                                                   pixel_unit="1/nm", frame_interval_s=1.0),
                                  signal_type="in_situ_movie")
    with pytest.raises(ParameterError, match="diffraction"):
        diffraction.track_particles(show_progressbar=False)


def test_to_dataframe_or_a_clear_error(direct_and_signal):
    _, tracked = direct_and_signal
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ParameterError, match="pandas"):
            tracked.to_dataframe()
    else:
        df = tracked.to_dataframe()
        assert list(df["id"]) == list(tracked.ids)
        assert len(tracked.to_dataframe("frames")) == tracked.n_particles * tracked.result.time_s.size
    with pytest.raises(ParameterError, match="kind"):
        tracked.to_dataframe("rows")
