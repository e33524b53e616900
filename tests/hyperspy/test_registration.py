"""Registration with HyperSpy, conversion without copies, TIFF loading and the .hspy round trip."""
from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import numpy as np
import pytest

hs = pytest.importorskip("hyperspy.api")

from temtrack.errors import ParameterError
from temtrack.hyperspy import movie_to_signal, signal_to_movie
from temtrack.hyperspy.signals import (
    InSituDiffractionMovie,
    InSituMovie,
    LazyInSituDiffractionMovie,
    LazyInSituMovie,
)
from temtrack.io.movie import movie_from_array


def _small(n=6, shape=(32, 40), seed=0):
    return np.random.default_rng(seed).poisson(30, (n, *shape)).astype(np.uint16)


def test_signal_types_are_registered_eager_and_lazy():
    data = _small()
    s = hs.signals.Signal2D(data)
    s.set_signal_type("in_situ_movie")
    assert type(s) is InSituMovie and s.metadata.Signal.signal_type == "in_situ_movie"
    assert np.shares_memory(s.data, data)
    lz = hs.signals.Signal2D(data).as_lazy()
    lz.set_signal_type("in_situ_movie")
    assert type(lz) is LazyInSituMovie and lz._lazy
    d = hs.signals.Signal2D(data)
    d.set_signal_type("in_situ_diffraction")
    assert type(d) is InSituDiffractionMovie
    d_lazy = d.as_lazy()
    assert type(d_lazy) is LazyInSituDiffractionMovie
    d_lazy.compute(show_progressbar=False)  # in place: back to the eager class
    assert type(d_lazy) is InSituDiffractionMovie
    # Back to a plain signal and to the alias.
    s.set_signal_type("")
    assert type(s) is hs.signals.Signal2D
    s.set_signal_type("in_situ_tem_movie")
    assert type(s) is InSituMovie

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        hs.print_known_signal_types()
    table = buf.getvalue()
    for text in ("in_situ_movie", "in_situ_diffraction", "InSituMovie", "temtrack"):
        assert text in table, table


def test_import_temtrack_and_the_converter_stay_light():
    code = ("import sys, temtrack, temtrack.io, temtrack.hyperspy.convert; "
            "print(' '.join(m for m in ('hyperspy', 'PySide6') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_conversion_does_not_copy_and_round_trips_calibration(tmp_path):
    data = _small()
    movie = movie_from_array(data, pixel_size=0.25, frame_interval_s=0.1, path=tmp_path / "m.npy",
                             metadata={"Instrument": {"voltage_kV": 300.0}, "note": "x"})
    s = movie_to_signal(movie)
    assert type(s) is InSituMovie and s.data is data
    t_ax, (x_ax, y_ax) = s.axes_manager.navigation_axes[0], s.axes_manager.signal_axes
    assert (t_ax.name, t_ax.units, t_ax.scale, t_ax.size) == ("time", "s", pytest.approx(0.1), 6)
    assert (x_ax.name, x_ax.units, x_ax.scale, x_ax.size) == ("x", "nm", 0.25, 40)
    assert (y_ax.name, y_ax.units, y_ax.size) == ("y", "nm", 32)
    assert s.original_metadata.Instrument.voltage_kV == 300.0
    back = signal_to_movie(s)
    assert back.frames is data
    np.testing.assert_allclose(back.times_s, movie.times_s)
    assert (back.pixel_size, back.pixel_unit) == (0.25, "nm")
    assert back.original_metadata["Instrument"]["voltage_kV"] == 300.0

    # Lazy: the dask graph reads the very array, and the movie wraps the very dask array.
    lz = movie_to_signal(movie, lazy=True)
    assert type(lz) is LazyInSituMovie
    sources = [v for v in dict(lz.data.dask).values() if hasattr(v, "shape")]
    assert len(sources) == 1 and sources[0].array is data  # no copy of the frames in the graph
    lback = signal_to_movie(lz)
    assert lback.frames is lz.data
    np.testing.assert_array_equal(lback.read(2, 5), data[2:5].astype(np.float32))

    # A memory-mapped movie stays memory-mapped.
    mm_path = tmp_path / "mm.npy"
    np.save(mm_path, data)
    mm = np.load(mm_path, mmap_mode="r")
    s_mm = movie_to_signal(movie_from_array(mm, pixel_size=1.0, frame_interval_s=1.0))
    assert isinstance(s_mm.data, np.memmap) and np.shares_memory(s_mm.data, mm)
    lz_mm = movie_to_signal(movie_from_array(mm, pixel_size=1.0, frame_interval_s=1.0), lazy=True)
    sources = [v for v in dict(lz_mm.data.dask).values() if hasattr(v, "shape")]
    assert len(sources) == 1 and sources[0].array is mm


def test_non_uniform_times_give_a_data_axis_and_diffraction_gets_its_type():
    data = _small(n=5)
    t = np.array([0.0, 0.1, 0.25, 0.3, 0.7])
    movie = movie_from_array(data, pixel_size=0.02, pixel_unit="1/nm", times_s=t)
    s = movie_to_signal(movie)
    assert type(s) is InSituDiffractionMovie
    nav = s.axes_manager.navigation_axes[0]
    assert not nav.is_uniform
    np.testing.assert_array_equal(nav.axis, t)
    assert s.axes_manager.signal_axes[0].units == "1/nm"
    back = signal_to_movie(s)
    np.testing.assert_array_equal(back.times_s, t)
    assert back.pixel_unit == "1/nm" and not back.times_uniform

    # ms on the time axis and Å on the pixels are converted to s and nm.
    s2 = hs.signals.Signal2D(data)
    s2.axes_manager[0].units, s2.axes_manager[0].scale = "ms", 40.0
    s2.axes_manager[1].units = s2.axes_manager[2].units = "Å"
    s2.axes_manager[1].scale = s2.axes_manager[2].scale = 2.0
    m2 = signal_to_movie(s2)
    np.testing.assert_allclose(m2.times_s, np.arange(5) * 0.04)
    assert m2.pixel_size == pytest.approx(0.2) and m2.pixel_unit == "nm"

    # Uncalibrated: no time and no pixel size, said in problems; wrong dimensions refused.
    m3 = signal_to_movie(hs.signals.Signal2D(data))
    assert m3.times_s is None and m3.pixel_size is None and len(m3.problems) == 2
    with pytest.raises(ParameterError, match="stack of 2D frames"):
        signal_to_movie(hs.signals.Signal1D(np.zeros((3, 4, 5))))
    with pytest.raises(ParameterError, match="Movie"):
        movie_to_signal(data)


def test_tiff_from_save_movie_tiff_loads_and_round_trips_through_hspy(tmp_path):
    from temtrack.synthetic import save_movie_tiff

    data = _small(n=7, shape=(48, 40))
    path = save_movie_tiff(tmp_path / "movie.tif", data, pixel_size=0.4, pixel_unit="nm", frame_interval_s=0.25)
    for lazy in (False, True):
        s = hs.load(path, lazy=lazy)
        s.set_signal_type("in_situ_movie")
        assert type(s) is (LazyInSituMovie if lazy else InSituMovie)
        m = s.to_movie()
        assert m.n_frames == 7 and m.frame_shape == (48, 40)
        assert m.pixel_size == pytest.approx(0.4) and m.pixel_unit == "nm"
        assert m.frame_interval_s == pytest.approx(0.25, rel=1e-6), s.axes_manager
        np.testing.assert_array_equal(m.read(), data.astype(np.float32))

    movie = movie_from_array(data, pixel_size=0.4, frame_interval_s=0.25, path=path)
    s = movie_to_signal(movie)
    s.save(tmp_path / "movie.hspy")
    for lazy in (False, True):
        r = hs.load(tmp_path / "movie.hspy", lazy=lazy)
        assert type(r) is (LazyInSituMovie if lazy else InSituMovie)
        assert r.metadata.Signal.signal_type == "in_situ_movie"
        np.testing.assert_array_equal(np.asarray(r.data), data)
        for a, b in zip(r.axes_manager._axes, s.axes_manager._axes):
            assert (a.name, a.units, a.size) == (b.name, b.units, b.size)
            assert a.scale == pytest.approx(b.scale) and a.offset == pytest.approx(b.offset)
        back = r.to_movie()
        np.testing.assert_allclose(back.times_s, movie.times_s)
        assert back.pixel_size == pytest.approx(0.4)
        assert back.time_source == "user"
