"""HyperSpy signal classes for in situ TEM movies: the CLI's analyses as signal methods.

A thin shell, like pyxem's ``InSituDiffraction2D`` over its ``utils/_insitu.py``: every method
turns the signal into a :class:`~temtrack.io.movie.Movie` over the *same* array
(:func:`~temtrack.hyperspy.convert.signal_to_movie`, no copy; a lazy signal's dask array is read
chunk by chunk by the executor, never computed whole), calls the function ``temtrack analyze`` /
``rings`` / ``fft`` / ``particles`` calls, and wraps the result in calibrated signals
(:mod:`temtrack.hyperspy.results`). So a method gives the numbers the CLI gives on the same frames.

``show_progressbar`` follows HyperSpy: None means ``hs.preferences.General.show_progressbar``; the
bar is driven by the core's ``progress(done, total)`` callback.
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np
from hyperspy._signals.lazy_signal2d import LazySignal2D
from hyperspy._signals.signal2d import Signal2D

from temtrack.errors import ParameterError
from temtrack.hyperspy import results as _res
from temtrack.hyperspy.convert import (
    DIFFRACTION_SIGNAL_TYPE,
    IMAGE_SIGNAL_TYPE,
    movie_to_signal,
    signal_to_movie,
)

__all__ = ["InSituDiffractionMovie", "InSituMovie", "LazyInSituDiffractionMovie", "LazyInSituMovie"]


@contextlib.contextmanager
def progressbar(show_progressbar: bool | None, desc: str):
    """Yield a ``progress(done, total)`` callback driving a tqdm bar (or None when hidden)."""
    if show_progressbar is None:
        from hyperspy.defaults_parser import preferences
        show_progressbar = bool(preferences.General.show_progressbar)
    if not show_progressbar:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=None, desc=desc, unit="frame", leave=True)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(max(0, int(done) - bar.n))

    try:
        yield progress
    finally:
        bar.close()


def _axes_dicts(signal) -> list[dict]:
    """The signal's axes as dictionaries in array order (for building derived signals)."""
    axes = sorted(signal.axes_manager._axes, key=lambda a: a.index_in_array)
    out = []
    for a in axes:
        d = a.get_axis_dictionary()
        d.pop("_type", None)
        out.append(d)
    return out


def _time_s(movie):
    return np.arange(movie.n_frames, dtype=np.float64) if movie.times_s is None else movie.times_s


class _InSituMethods:
    """Methods shared by image and diffraction movies (drift and alignment)."""

    def to_movie(self):
        """A temtrack Movie over this signal's data (no copy); see :func:`signal_to_movie`."""
        return signal_to_movie(self)

    def estimate_drift(self, reference="first", roi=None, *, show_progressbar=None, executor=None,
                       cancel=None, **kwargs):
        """Sub-pixel specimen drift of every frame relative to frame 0.

        Calls :func:`temtrack.series.drift.estimate_drift` (as ``temtrack analyze`` does).

        Parameters
        ----------
        reference : {'first', 'mean'} or int
            Reference of the coarse pass (shifts are always relative to frame 0).
        roi : (x, y, w, h), optional
            Anchor region in frame-0 pixels.
        show_progressbar : bool, optional
            None: HyperSpy's preference.
        executor : LocalExecutor or DaskExecutor, optional
        cancel : threading.Event, optional
        **kwargs
            Other options of :func:`~temtrack.series.drift.estimate_drift` (``max_shift_px``,
            ``chunk_frames``, ``refine``, ``jump_threshold_px``).

        Returns
        -------
        Signal1D
            Shape (2, n_frames): row 0 ``dy_px``, row 1 ``dx_px`` (displacement of the specimen in
            px; a feature at (y, x) in frame 0 is at (y + dy, x + dx) in frame i) against time.
            ``metadata.Temtrack.drift`` holds the full result; pass the signal to :meth:`align`.
        """
        from temtrack.series.drift import estimate_drift

        movie = self.to_movie()
        with progressbar(show_progressbar, "drift") as prog:
            res = estimate_drift(movie, reference=reference, roi=roi, executor=executor, progress=prog,
                                 cancel=cancel, **kwargs)
        return _res.drift_signal(res, movie.times_s, title=f"Drift of {self.metadata.General.title}".strip())

    def align(self, drift=None, crop=True, *, order=1, show_progressbar=None, executor=None, cancel=None):
        """The movie with every frame shifted back onto frame 0.

        Calls :func:`temtrack.series.drift.aligned_movie`; frames are shifted when read, so a lazy
        signal stays lazy (nothing is computed until used).

        Parameters
        ----------
        drift : Signal1D, DriftResult or array, optional
            What :meth:`estimate_drift` returned (or (n, 2) shifts dy, dx in px); estimated when None.
        crop : bool
            Crop to the field of view common to all frames (the x/y offsets then give the crop
            origin in the original calibration); otherwise zeros where a frame has no data.
        order : {1, 3, 'fourier'}
            Interpolation.
        show_progressbar, executor, cancel
            Used when the drift is estimated.

        Returns
        -------
        Signal of the same type (lazy for lazy input), float32 frames.
        """
        from temtrack.series.drift import aligned_movie

        movie = self.to_movie()
        if drift is None:
            drift = self.estimate_drift(show_progressbar=show_progressbar, executor=executor, cancel=cancel)
        dres = _res.drift_from(drift, movie.n_frames)
        view = aligned_movie(movie, dres, crop=crop, order=order)
        out = movie_to_signal(view, lazy=bool(self._lazy), signal_type=self._temtrack_signal_type)
        y0, y1, x0, x1 = view.original_metadata["temtrack_alignment"]["crop_y0_y1_x0_x1"]
        axes = _axes_dicts(self)
        # Array order (time, y, x): keep the source calibration, move the origin to the crop.
        for d, start, size in ((axes[-2], y0, y1 - y0), (axes[-1], x0, x1 - x0)):
            d["offset"] = float(d.get("offset", 0.0)) + start * float(d.get("scale", 1.0))
            d["size"] = int(size)
        cls = type(out)
        aligned = cls(out.data, axes=axes, metadata=copy.deepcopy(self.metadata.as_dictionary()),
                      original_metadata=copy.deepcopy(self.original_metadata.as_dictionary()))
        aligned.metadata.General.title = f"{self.metadata.General.title} (aligned)".strip()
        aligned.metadata.set_item("Temtrack.alignment", {"crop_y0_y1_x0_x1": [y0, y1, x0, x1],
                                                          "interpolation": str(order)})
        aligned.metadata.set_item("Temtrack.drift", _res.drift_signal(dres, movie.times_s).metadata
                                  .get_item("Temtrack.drift").as_dictionary())
        return aligned


class InSituMovie(_InSituMethods, Signal2D):
    """An in situ TEM image movie: navigation = time (s), signal = image (nm).

    Methods call the same core as ``temtrack analyze``, ``temtrack particles`` and ``temtrack fft``:
    :meth:`estimate_drift`, :meth:`align`, :meth:`kymograph`, :meth:`track_front` (front, diameters,
    kinetics), :meth:`fit_kinetics`, :meth:`track_particles`, :meth:`fft_evolution`.
    """

    _signal_type = IMAGE_SIGNAL_TYPE
    _temtrack_signal_type = IMAGE_SIGNAL_TYPE

    def _image_movie(self):
        movie = self.to_movie()
        if movie.pixel_unit == "1/nm":
            raise ParameterError("this is a diffraction movie (1/nm); use set_signal_type('in_situ_diffraction') "
                                 "and ring_evolution()")
        return movie

    def kymograph(self, line, width=None, *, drift=None, bin_px=4, show_progressbar=None, executor=None,
                  cancel=None):
        """Intensity along a line (averaged across ``width``) against time, as a Signal2D.

        The same per-frame pass ``temtrack analyze`` runs (:func:`~temtrack.series.kymograph.measure_wire_series`),
        so the rows equal ``results.json``'s kymograph for the same line, width and drift.

        Parameters
        ----------
        line : (x0, y0, x1, y1)
            In frame-0 pixels; s = 0 at the first point (the contact end of a wire).
        width : float, optional
            Width (px) averaged across the line; measured from the first frames when None.
        drift : None, True, Signal1D, DriftResult or array
            None/False: frames taken as they are; True: drift estimated first; otherwise shifts as
            for :meth:`align`. Sampling follows the specimen (no resampled movie is made).
        bin_px : int
            Along-line bin of the per-bin wire measurements (as ``AnalyzeRecipe.bin_px``).

        Returns
        -------
        Signal2D
            s (nm, or px when uncalibrated) along x, time (s) along y.
        """
        from temtrack.series.kymograph import make_wire_sampler, measure_wire_series
        from temtrack.series.wire_geometry import (
            measure_width,
            validate_line,
            validate_width,
        )

        movie = self._image_movie()
        line = _line(line)
        validate_line(line, movie.frame_shape)
        dy, dx = self._shifts(movie, drift, show_progressbar, executor, cancel)
        if width is None:
            head = movie.read(0, min(movie.n_frames, 5))
            width = measure_width(head, (line[0] + dx[0], line[1] + dy[0], line[2] + dx[0], line[3] + dy[0]))
        width = validate_width(float(width), movie.frame_shape)
        sampler = make_wire_sampler(line, width_px=width, bin_px=int(bin_px))
        with progressbar(show_progressbar, "kymograph") as prog:
            series = measure_wire_series(movie, sampler, dy_px=dy, dx_px=dx, executor=executor, progress=prog,
                                         cancel=cancel)
        px, unit = (movie.pixel_size, "nm") if movie.pixel_size else (1.0, None)
        sig = _res._map_signal(series.kymograph, _time_s(movie), series.s_px * px, "s", unit,
                               title=f"Kymograph of {self.metadata.General.title}".strip(),
                               quantity="Intensity (counts)")
        sig.metadata.set_item("Temtrack.kymograph", {"line_px": list(line), "width_px": float(width),
                                                     "bin_px": int(bin_px)})
        return sig

    def _shifts(self, movie, drift, show_progressbar, executor, cancel):
        if drift is None or drift is False:
            return np.zeros(movie.n_frames), np.zeros(movie.n_frames)
        if drift is True:
            drift = self.estimate_drift(show_progressbar=show_progressbar, executor=executor, cancel=cancel)
        d = _res.drift_from(drift, movie.n_frames)
        return d.dy_px, d.dx_px

    def track_front(self, line=None, auto=False, width=None, probes_nm=(), *, drift=True, prefactor=2.0,
                    kinetics_models=None, frames=None, show_progressbar=None, executor=None, cancel=None,
                    **recipe_options):
        """Reaction front, diameters and kinetics of a wire: ``temtrack analyze`` on this signal.

        Builds an :class:`~temtrack.pipeline.analyze.AnalyzeRecipe` and calls
        :func:`~temtrack.pipeline.analyze.analyze`.

        Parameters
        ----------
        line : (x0, y0, x1, y1), optional
            Wire axis in frame-0 pixels, contact end first; or ``auto=True``.
        auto : bool
            Find the wire automatically.
        width : float, optional
            Wire width in px (measured when None).
        probes_nm : sequence of float
            Positions along the wire (nm from the contact) where d(t) is reported.
        drift : bool, Signal1D, DriftResult or array
            True: estimate (as the CLI); False: no correction; otherwise shifts already measured
            (e.g. from :meth:`estimate_drift`), which skips the drift pass.
        prefactor : float
            P in x^2 = P D (t - t0).
        kinetics_models : list of str, optional
            Default: all ('parabolic', 'power', 'linear', 'mixed').
        frames : (start, stop), optional
        show_progressbar, executor, cancel
        **recipe_options
            Other :class:`AnalyzeRecipe` fields (``drift_reference``, ``drift_roi``, ``bin_px``,
            ``min_significance``, ``memory_budget_mb`` ...).

        Returns
        -------
        FrontTracking
            ``.front`` (Signal1D, nm vs s), ``.kymograph``, ``.diameter_map``, ``.diameter_probes``,
            ``.pristine_nm``, ``.sodiated_nm``, ``.kinetics`` (KineticsFit), ``.result``
            (AnalyzeResult), ``.to_json()`` (``results.json``).
        """
        from temtrack.pipeline.analyze import AnalyzeRecipe, analyze

        movie = self._image_movie()
        shifts = None
        if isinstance(drift, bool):
            use_drift = drift
        else:
            d = _res.drift_from(drift, movie.n_frames)
            shifts, use_drift = (d.dy_px, d.dx_px), True
        options = {"line": None if line is None else list(_line(line)), "auto": bool(auto), "width_px": width,
                   "probes_nm": list(probes_nm or ()), "drift": use_drift, "prefactor": prefactor,
                   "frames": None if frames is None else list(frames)}
        if kinetics_models is not None:
            options["kinetics_models"] = list(kinetics_models)
        options.update(recipe_options)
        try:
            recipe = AnalyzeRecipe(**options)
        except TypeError as exc:
            raise ParameterError(f"track_front: {exc}") from None
        with progressbar(show_progressbar, "analyze") as prog:
            result = analyze(movie, recipe, executor=executor, progress=prog, cancel=cancel, shifts_px=shifts)
        return _res.FrontTracking(result)

    def fit_kinetics(self, front=None, *, prefactor=2.0, models=None, ci_method="profile", n_bootstrap=400,
                     seed=0, **track_front_options):
        """Fit the front kinetics (D, k, n, t0 with 95% CIs) with :func:`temtrack.series.kinetics.fit_kinetics`.

        Parameters
        ----------
        front : FrontTracking, Signal1D or (time_s, position_nm), optional
            From :meth:`track_front`; when None, :meth:`track_front` runs first with
            ``track_front_options`` (and this ``prefactor``).
        prefactor, models, ci_method, n_bootstrap, seed
            As :func:`~temtrack.series.kinetics.fit_kinetics`.

        Returns
        -------
        KineticsFit
            ``model``, ``D_nm2_per_s``, ``k_nm_per_s``, ``n``, ``t0_s``, ``ci95``, ``curves``
            (Signal1D per model) and ``best_curve``.
        """
        if front is None:
            front = self.track_front(prefactor=prefactor, **track_front_options)
        elif track_front_options:
            raise ParameterError(f"fit_kinetics: unexpected options {sorted(track_front_options)} with a given front")
        return _res.fit_front_kinetics(front, prefactor=prefactor, models=models, ci_method=ci_method,
                                       n_bootstrap=n_bootstrap, seed=seed)

    def track_particles(self, polarity="dark", *, drift=True, detect_frames=5, with_core=True, regularise=1.0,
                        show_progressbar=None, executor=None, cancel=None, **recipe_options):
        """Segment and follow every particle: ``temtrack particles`` on this signal.

        Builds a :class:`~temtrack.pipeline.particles.ParticlesRecipe` and calls
        :func:`~temtrack.pipeline.particles.run_particles`, so the numbers are those the command line
        writes to ``results.json`` for the same frames and options.

        Parameters
        ----------
        polarity : {'dark', 'bright'}
            Particles darker (bright field) or brighter (dark field) than the background.
        drift : bool, Signal1D, DriftResult or array
            True: estimate (as the CLI); False: particles assumed static; otherwise shifts already
            measured (e.g. from :meth:`estimate_drift`), which skips the drift pass.
        detect_frames : int
            Particles are detected on the drift-aligned mean of this many first frames.
        with_core : bool
            Fit an unreacted core of distinct contrast (shrinking core).
        regularise : float
            Temporal regularisation of each radius series (0: each frame's own fit).
        show_progressbar, executor, cancel
        **recipe_options
            Other :class:`ParticlesRecipe` fields (``min_radius_px``, ``max_radius_factor``,
            ``crack_persist_frames``, ``pixel_size_nm``, ``frame_interval_s``, ``memory_budget_mb``).

        Returns
        -------
        ParticleTracking
            ``.area``, ``.area_frame``, ``.equivalent_diameter``, ``.volume_expansion``,
            ``.core_radius`` (Signal1D, particle | time in s), ``.onsets_s``, ``.cracked``,
            ``.summary()`` / ``.table()`` (dicts of columns), ``.to_dataframe()``, ``.result``
            (ParticlesResult), ``.to_json()`` (``results.json``), ``.write(out_dir)``.
        """
        from temtrack.pipeline.particles import ParticlesRecipe, run_particles

        movie = self._image_movie()
        given = None
        if isinstance(drift, (bool, np.bool_)):
            use_drift = bool(drift)
        elif drift is None:
            raise ParameterError("track_particles: drift must be True, False or measured shifts, got None")
        else:
            given, use_drift = _res.drift_from(drift, movie.n_frames), True
        try:
            recipe = ParticlesRecipe(polarity=polarity, detect_frames=detect_frames, with_core=with_core,
                                     drift_correction=use_drift, regularise=regularise, **recipe_options)
        except TypeError as exc:
            raise ParameterError(f"track_particles: {exc}") from None
        recipe.validate()
        with progressbar(show_progressbar, "particles") as prog:
            result = run_particles(movie, recipe, executor=executor, progress=prog, cancel=cancel, drift=given)
        return _res.ParticleTracking(result)

    def fft_evolution(self, roi=None, *, show_progressbar=None, executor=None, cancel=None, **recipe_options):
        """Lattice fringes of an ROI over time: ``temtrack fft`` on this signal.

        Parameters
        ----------
        roi : (x, y, w, h), optional
            In pixels; default the largest centred square.
        **recipe_options
            Other :class:`~temtrack.pipeline.fft.FFTRecipe` fields (``window``, ``n_sets``,
            ``d_min_nm``, ``d_max_nm``, ``min_snr`` ...).

        Returns
        -------
        FFTEvolution
            ``.d_nm``, ``.expansion_pct``, ``.crystalline_fraction`` (signals against time),
            ``.mean_power`` (Signal2D in 1/nm), ``.result`` (FFTResult), ``.to_json()``.
        """
        from temtrack.pipeline.fft import FFTRecipe, run_fft

        movie = self._image_movie()
        try:
            recipe = FFTRecipe(roi=None if roi is None else [int(v) for v in roi], **recipe_options)
        except TypeError as exc:
            raise ParameterError(f"fft_evolution: {exc}") from None
        with progressbar(show_progressbar, "fft") as prog:
            result = run_fft(movie, recipe, executor=executor, progress=prog, cancel=cancel)
        return _res.FFTEvolution(result)


class LazyInSituMovie(LazySignal2D, InSituMovie):
    """Lazy :class:`InSituMovie` (dask data; the analyses stream it chunk by chunk)."""

    _lazy = True


class InSituDiffractionMovie(_InSituMethods, Signal2D):
    """An in situ diffraction (SAED) movie: navigation = time (s), signal = pattern (1/nm).

    Methods call the same core as ``temtrack rings``: :meth:`ring_evolution`; plus
    :meth:`estimate_drift` and :meth:`align`.
    """

    _signal_type = DIFFRACTION_SIGNAL_TYPE
    _temtrack_signal_type = DIFFRACTION_SIGNAL_TYPE

    def ring_evolution(self, phases=None, *, show_progressbar=None, executor=None, cancel=None, library=None,
                       **recipe_options):
        """Rings, q-t map, phase fractions and onsets: ``temtrack rings`` on this signal.

        Parameters
        ----------
        phases : list of str, optional
            Library phases to fit (None: every phase whose strong rings are seen).
        library : PhaseLibrary, optional
        **recipe_options
            Other :class:`~temtrack.pipeline.rings.RingsRecipe` fields (``pixel_size_inv_nm``,
            calibration, q range, centre options ...).

        Returns
        -------
        RingsEvolution
            ``.qt_map`` (Signal2D, q in 1/nm along x, time in s along y), ``.phase_fractions``,
            ``.fractions``, ``.onsets_s``, ``.result`` (RingsResult), ``.to_json()``.
        """
        from temtrack.pipeline.rings import RingsRecipe, run_rings

        movie = self.to_movie()
        try:
            recipe = RingsRecipe(phases=None if phases is None else list(phases), **recipe_options)
        except TypeError as exc:
            raise ParameterError(f"ring_evolution: {exc}") from None
        with progressbar(show_progressbar, "rings") as prog:
            result = run_rings(movie, recipe, executor=executor, progress=prog, cancel=cancel, library=library)
        return _res.RingsEvolution(result)


class LazyInSituDiffractionMovie(LazySignal2D, InSituDiffractionMovie):
    """Lazy :class:`InSituDiffractionMovie`."""

    _lazy = True


def _line(line) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in line)
    except (TypeError, ValueError):
        raise ParameterError(f"line must be four numbers x0, y0, x1, y1 in px, got {line!r}") from None
    if len(vals) != 4 or not all(np.isfinite(vals)):
        raise ParameterError(f"line must be four finite numbers x0, y0, x1, y1 in px, got {line!r}")
    return vals
