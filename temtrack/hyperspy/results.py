"""Small result objects the HyperSpy methods return: the pipeline's own result plus calibrated signals.

Each object keeps the pipeline result untouched (``.result``, the same object ``temtrack analyze``,
``rings`` or ``fft`` would write to ``results.json``; ``.to_json()`` is that file's content) and
offers its arrays as HyperSpy signals with calibrated axes (time in s, positions in nm, q in 1/nm),
so they plot, slice and save like any other signal. Nothing here computes a measurement: fits go
through :func:`temtrack.series.kinetics.fit_kinetics`.
"""
from __future__ import annotations

import numpy as np

from temtrack.errors import ParameterError
from temtrack.hyperspy.convert import time_axis_dict

__all__ = [
    "FFTEvolution",
    "FrontTracking",
    "KineticsFit",
    "ParticleTracking",
    "RingsEvolution",
    "drift_from",
    "drift_signal",
    "fit_front_kinetics",
]


# -- signal builders -------------------------------------------------------------------------------
def _axis(values, name: str, units: str | None, *, navigate: bool = False) -> dict:
    """Uniform axis when the values are evenly spaced, a DataAxis over the values otherwise."""
    v = np.asarray(values, dtype=np.float64)
    if units == "s":
        return time_axis_dict(v, name=name, navigate=navigate)
    out: dict = {"name": name, "navigate": navigate}
    if units:
        out["units"] = units
    d = np.diff(v)
    if v.size < 2 or np.allclose(d, d[0], rtol=1e-6, atol=1e-12):
        out.update(size=int(v.size), offset=float(v[0]) if v.size else 0.0,
                   scale=float(d[0]) if v.size > 1 and d[0] != 0 else 1.0)
    else:
        out["axis"] = v.copy()
    return out


def _index_axis(size: int, name: str) -> dict:
    return {"name": name, "size": int(size), "offset": 0.0, "scale": 1.0, "navigate": True}


def _signal1d(data, axes: list, *, title: str, quantity: str, temtrack: dict | None = None):
    from hyperspy.signals import Signal1D

    md = {"General": {"title": title}, "Signal": {"quantity": quantity}}
    if temtrack:
        md["Temtrack"] = temtrack
    return Signal1D(np.asarray(data), axes=axes, metadata=md)


def _signal2d(data, axes: list, *, title: str, quantity: str, temtrack: dict | None = None):
    from hyperspy.signals import Signal2D

    md = {"General": {"title": title}, "Signal": {"quantity": quantity}}
    if temtrack:
        md["Temtrack"] = temtrack
    return Signal2D(np.asarray(data), axes=axes, metadata=md)


def _map_signal(data, time_s, x_values, x_name: str, x_units: str, *, title: str, quantity: str):
    """A (time, x) map as a Signal2D: x along the image's columns, time down its rows."""
    axes = [_axis(time_s, "time", "s"), _axis(x_values, x_name, x_units)]
    return _signal2d(data, axes, title=title, quantity=quantity)


def _time_series(values, time_s, *, title: str, quantity: str, temtrack: dict | None = None):
    return _signal1d(values, [_axis(time_s, "time", "s")], title=title, quantity=quantity, temtrack=temtrack)


# -- drift ----------------------------------------------------------------------------------------
def drift_signal(drift, time_s, *, title: str = "Drift"):
    """Signal1D of shape (2, n): row 0 ``dy_px``, row 1 ``dx_px`` against time.

    ``metadata.Temtrack.drift`` holds ``DriftResult.to_json()`` so :func:`drift_from` rebuilds the
    full result (quality, jumps, method) from the signal, also after a ``.hspy`` round trip.
    """
    t = np.arange(drift.n_frames, dtype=np.float64) if time_s is None else np.asarray(time_s, dtype=np.float64)
    axes = [_index_axis(2, "component (0: dy, 1: dx)"), _axis(t, "time", "s")]
    js = drift.to_json()
    js["quality"] = [np.nan if q is None else q for q in js["quality"]]
    return _signal1d(np.stack([drift.dy_px, drift.dx_px]), axes, title=title,
                     quantity="Specimen displacement (px)", temtrack={"drift": js})


def drift_from(drift, n_frames: int):
    """A :class:`~temtrack.series.drift.DriftResult` from what a user may pass as ``drift``.

    Accepts a DriftResult, the signal :func:`drift_signal` made (or any signal/array of shape
    (2, n) as dy, dx rows), or an (n, 2) array of (dy, dx) per frame, in px.
    """
    from temtrack.series.drift import DriftResult

    if isinstance(drift, DriftResult):
        out = drift
    elif hasattr(drift, "metadata") and drift.metadata.has_item("Temtrack.drift"):
        js = drift.metadata.get_item("Temtrack.drift").as_dictionary()
        js["quality"] = [None if (q is None or not np.isfinite(q)) else float(q) for q in js.get("quality", [])]
        out = DriftResult.from_json(js)
    else:
        arr = np.asarray(drift.data if hasattr(drift, "data") else drift, dtype=np.float64)
        if arr.ndim != 2 or 2 not in arr.shape:
            raise ParameterError(f"drift must be a DriftResult, the signal estimate_drift returned or "
                                 f"(n_frames, 2) shifts (dy, dx) in px; got shape {arr.shape}")
        if arr.shape[0] == 2 and arr.shape[1] != 2:
            dy, dx = arr[0], arr[1]
        elif arr.shape[1] == 2:
            dy, dx = arr[:, 0], arr[:, 1]
        else:
            dy, dx = arr[0], arr[1]
        out = DriftResult(dy, dx, np.full(dy.size, np.nan), method="given")
    if out.n_frames != n_frames:
        raise ParameterError(f"drift has {out.n_frames} frames, the movie {n_frames}")
    return out


# -- kinetics -------------------------------------------------------------------------------------
class KineticsFit:
    """The kinetics fit of front position vs time, as ``temtrack analyze`` reports it.

    Attributes
    ----------
    result : KineticsResult
        From :func:`temtrack.series.kinetics.fit_kinetics`.
    model : str
        Best model ('parabolic', 'power', 'linear' or 'mixed').
    D_nm2_per_s, D_cm2_per_s, k_nm_per_s, n, t0_s : float or None
        As in ``results.json``'s ``kinetics`` block.
    ci95 : dict
        95% confidence intervals of those parameters.
    time_s, position_nm : ndarray
        The points the fit used.
    curves : dict of str -> Signal1D
        Each fitted model's front position predicted on a fine time grid (nm vs s).
    best_curve : Signal1D
        The best model's curve.
    """

    def __init__(self, result, time_s, position_nm, *, n_curve: int = 200):
        self.result = result
        self._json = result.to_json()
        self.time_s = np.asarray(time_s, dtype=np.float64)
        self.position_nm = np.asarray(position_nm, dtype=np.float64)
        j = self._json
        self.model = j["model"]
        self.D_nm2_per_s = j["D_nm2_per_s"]
        self.D_cm2_per_s = j["D_cm2_per_s"]
        self.k_nm_per_s = j["k_nm_per_s"]
        self.n = j["n"]
        self.t0_s = j["t0_s"]
        self.ci95 = j["ci95"]
        t = self.time_s[np.isfinite(self.time_s)]
        grid = np.linspace(float(t.min()), float(t.max()), n_curve) if t.size else np.zeros(1)
        self.curve_time_s = grid
        self.curves = {name: _time_series(f.predict(grid), grid, title=f"Front position, {name} fit",
                                          quantity="Front position (nm)", temtrack={"model": name})
                       for name, f in result.fits.items()}
        self.best_curve = self.curves[result.best.name]

    @property
    def best(self):
        return self.result.best

    @property
    def fits(self) -> dict:
        return self.result.fits

    def predict(self, time_s, model: str | None = None) -> np.ndarray:
        """Front position (nm) of ``model`` (default the best) at ``time_s``."""
        fit = self.result.best if model is None else self.result.fits[model]
        return fit.predict(time_s)

    def to_json(self) -> dict:
        return self._json

    def __repr__(self) -> str:
        parts = [f"model={self.model}"]
        for key in ("D_nm2_per_s", "k_nm_per_s", "n", "t0_s"):
            v = getattr(self, key)
            if v is not None:
                parts.append(f"{key}={v:.4g}")
        return f"<KineticsFit {' '.join(parts)}>"


def fit_front_kinetics(front, *, prefactor: float = 2.0, models=None, ci_method: str = "profile",
                       n_bootstrap: int = 400, seed: int = 0) -> KineticsFit:
    """Fit the kinetics of a front: a :class:`FrontTracking`, a Signal1D or ``(time_s, position_nm)``.

    For a FrontTracking (or the ``front`` signal it holds) the same points and uncertainties as
    ``temtrack analyze`` are used (frames flagged usable, per-frame 1-sigma errors); for any other
    Signal1D of position (nm) against time (s), the finite points, weighted by
    ``metadata.Signal.Noise_properties.variance`` when present.
    """
    from temtrack.pipeline.analyze import KINETICS_MODELS
    from temtrack.series.kinetics import fit_kinetics

    err = None
    if isinstance(front, FrontTracking):
        fr = front.result.front
        ok = fr.used_for_fit
        t, x, err = front.result.time_s[ok], fr.position_nm[ok], fr.uncertainty_nm[ok]
        if models is None:
            models = front.result.recipe.kinetics_models
    elif hasattr(front, "axes_manager"):
        if front.axes_manager.signal_dimension != 1 or front.axes_manager.navigation_dimension != 0:
            raise ParameterError("fit_kinetics needs one front position per time: a Signal1D without navigation")
        t = np.asarray(front.axes_manager.signal_axes[0].axis, dtype=np.float64)
        x = np.asarray(front.data, dtype=np.float64)
        md = front.metadata
        if md.has_item("Signal.Noise_properties.variance"):
            var = md.get_item("Signal.Noise_properties.variance")
            var = np.asarray(var.data if hasattr(var, "data") else var, dtype=np.float64)
            err = np.sqrt(np.broadcast_to(var, x.shape))
        mask = np.isfinite(t) & np.isfinite(x)
        if md.has_item("Temtrack.used_for_fit"):
            mask &= np.asarray(md.get_item("Temtrack.used_for_fit"), dtype=bool)
        t, x = t[mask], x[mask]
        err = None if err is None else err[mask]
    else:
        try:
            t, x = (np.asarray(v, dtype=np.float64) for v in front)
        except (TypeError, ValueError):
            raise ParameterError("fit_kinetics needs a FrontTracking, a Signal1D of position (nm) vs time (s) "
                                 "or (time_s, position_nm)") from None
    models = tuple(models) if models is not None else tuple(KINETICS_MODELS)
    res = fit_kinetics(t, x, position_err_nm=err, models=models, prefactor=prefactor, ci_method=ci_method,
                       n_bootstrap=n_bootstrap, seed=seed)
    return KineticsFit(res, t, x)


# -- analyze ---------------------------------------------------------------------------------------
class FrontTracking:
    """Front tracking, diameters and kinetics of a wire, from :func:`temtrack.pipeline.analyze.analyze`.

    Attributes
    ----------
    result : AnalyzeResult
    front : Signal1D
        Front position (nm from the contact) against time (s); NaN where no front is measured.
        ``metadata.Signal.Noise_properties.variance`` holds the squared 1-sigma uncertainties and
        ``metadata.Temtrack.used_for_fit`` / ``flags`` the per-frame decisions.
    front_monotonic : Signal1D
        The never-receding (isotonic) fit of the positions.
    kymograph : Signal2D
        Mean intensity across the wire: s (nm) along x, time (s) along y.
    diameter_map : Signal2D
        Diameter (nm) at each bin along the wire (s in nm) and time (s).
    diameter_probes : dict of float -> Signal1D
        Diameter (nm) against time at each requested probe position (nm).
    pristine_nm, sodiated_nm : float
        Pristine and sodiated diameters (NaN when not measurable).
    drift : Signal1D
        Shifts used (rows dy_px, dx_px) against time.
    kinetics : KineticsFit or None
        The fit ``temtrack analyze`` made (None when no front was detected or the fit failed).
    """

    def __init__(self, result):
        self.result = result
        t = result.time_s
        fr = result.front
        var = _signal1d(np.asarray(fr.uncertainty_nm, dtype=np.float64) ** 2, [_axis(t, "time", "s")],
                        title="Front position variance", quantity="Variance (nm^2)")
        self.front = _time_series(fr.position_nm, t, title="Reaction front position",
                                  quantity="Front position (nm)",
                                  temtrack={"used_for_fit": np.asarray(fr.used_for_fit, dtype=bool),
                                            "flags": list(fr.flags)})
        self.front.metadata.set_item("Signal.Noise_properties.variance", var)
        self.front_monotonic = _time_series(fr.monotonic_nm, t, title="Reaction front position (monotonic fit)",
                                            quantity="Front position (nm)")
        self.kymograph = _map_signal(result.series.kymograph, t, result.kymograph_s_nm, "s", "nm",
                                     title="Kymograph", quantity="Intensity (counts)")
        d = result.diameter
        self.diameter_map = _map_signal(d.map_nm, t, d.s_nm, "s", "nm", title="Wire diameter",
                                        quantity="Diameter (nm)")
        self.diameter_probes = {float(k): _time_series(v, t, title=f"Diameter at {float(k):g} nm",
                                                       quantity="Diameter (nm)")
                                for k, v in d.probes.items()}
        self.pristine_nm = float(d.pristine_nm)
        self.sodiated_nm = float(d.sodiated_nm)
        from temtrack.series.drift import DriftResult
        dres = DriftResult(result.drift_dy_px, result.drift_dx_px, np.full(t.size, np.nan),
                           method=result.drift_source)
        self.drift = drift_signal(dres, t, title="Drift used")
        self.kinetics = None
        if result.kinetics is not None:
            ok = fr.used_for_fit
            self.kinetics = KineticsFit(result.kinetics, t[ok], fr.position_nm[ok])

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def problems(self) -> list:
        return list(self.result.problems)

    @property
    def warnings(self) -> list:
        return list(self.result.warnings)

    def fit_kinetics(self, **kwargs) -> KineticsFit:
        """Refit the kinetics (other models, prefactor, CI method); see :func:`fit_front_kinetics`."""
        return fit_front_kinetics(self, **kwargs)

    def to_json(self) -> dict:
        """The content of ``results.json`` as ``temtrack analyze`` writes it."""
        return self.result.to_json()

    def write(self, out_dir, *, overwrite: bool = False):
        """Write the results folder ``temtrack analyze`` writes (results.json, CSVs, figures)."""
        from temtrack.pipeline.analyze import write_analyze_results
        return write_analyze_results(self.result, out_dir, overwrite=overwrite)

    def __repr__(self) -> str:
        k = "no kinetics" if self.kinetics is None else repr(self.kinetics)
        return (f"<FrontTracking ok={self.ok} frames={self.result.time_s.size} pristine={self.pristine_nm:.3g} nm "
                f"sodiated={self.sodiated_nm:.3g} nm {k}>")


# -- rings -----------------------------------------------------------------------------------------
class RingsEvolution:
    """Ring evolution of a diffraction movie, from :func:`temtrack.pipeline.rings.run_rings`.

    Attributes
    ----------
    result : RingsResult
    qt_map : Signal2D
        Azimuthal-mean intensity: q (1/nm) along x, time (s) along y.
    phase_fractions : Signal1D
        Shape (n_phases, n_frames): fraction of diffracted intensity of each phase (navigation index
        i is ``phase_names[i]``) against time.
    fractions : dict of str -> Signal1D
        The same, one signal per phase.
    phase_names : list of str
    onsets_s : dict of str -> float or None
    """

    def __init__(self, result):
        self.result = result
        t = np.asarray(result.time_s, dtype=np.float64)
        self.qt_map = _map_signal(result.profiles, t, result.q_nm_inv, "q", "1/nm", title="Ring evolution (q-t)",
                                  quantity="Intensity (counts)")
        self.phase_names = [str(k) for k in result.fractions]
        self.fractions = {name: _time_series(np.asarray(v, dtype=np.float64), t, title=f"Phase fraction {name}",
                                             quantity="Fraction")
                          for name, v in result.fractions.items()}
        if self.phase_names:
            data = np.stack([np.asarray(result.fractions[k], dtype=np.float64) for k in result.fractions])
            self.phase_fractions = _signal1d(data, [_index_axis(len(self.phase_names), "phase"), _axis(t, "time", "s")],
                                             title="Phase fractions", quantity="Fraction",
                                             temtrack={"phase_names": list(self.phase_names)})
        else:
            self.phase_fractions = None
        self.onsets_s = dict(result.onsets_s)

    def to_json(self) -> dict:
        return self.result.to_json()

    def write(self, out_dir, *, overwrite: bool = False):
        from temtrack.pipeline.rings import write_rings_results
        return write_rings_results(self.result, out_dir, overwrite=overwrite)

    def __repr__(self) -> str:
        return f"<RingsEvolution frames={self.result.time_s.size} phases={self.phase_names}>"


# -- fft -------------------------------------------------------------------------------------------
class FFTEvolution:
    """Lattice fringes of an ROI over time, from :func:`temtrack.pipeline.fft.run_fft`.

    Attributes
    ----------
    result : FFTResult
    d_nm, expansion_pct : Signal1D
        Shape (n_sets, n_frames): spacing (nm) and lattice expansion (%) of each fringe set
        (navigation index = set) against time (s).
    crystalline_fraction : Signal1D
        Against time (s).
    mean_power : Signal2D
        Mean power spectrum of the ROI (centred), axes kx, ky in 1/nm.
    """

    def __init__(self, result):
        self.result = result
        s = result.series
        t = np.asarray(s.time_s, dtype=np.float64)
        units = "s" if result.time_source != "frame index" else None
        taxis = _axis(t, "time", "s") if units else _index_axis(t.size, "frame") | {"navigate": False}
        nsets = int(s.d_nm.shape[1])
        meta = {"reference_d_nm": np.asarray(s.reference_d_nm, dtype=np.float64),
                "reference_angle_deg": np.asarray(s.reference_angle_deg, dtype=np.float64)}
        self.d_nm = _signal1d(np.asarray(s.d_nm, dtype=np.float64).T, [_index_axis(nsets, "fringe set"), dict(taxis)],
                              title="Fringe spacing", quantity="d (nm)", temtrack=meta)
        self.expansion_pct = _signal1d(np.asarray(s.expansion_pct, dtype=np.float64).T,
                                       [_index_axis(nsets, "fringe set"), dict(taxis)],
                                       title="Lattice expansion", quantity="Expansion (%)", temtrack=meta)
        self.crystalline_fraction = _signal1d(np.asarray(s.crystalline_fraction, dtype=np.float64), [dict(taxis)],
                                              title="Crystalline fraction", quantity="Fraction")
        h, w = result.mean_power.shape
        px = float(result.pixel_size_nm)
        ky = {"name": "ky", "units": "1/nm", "size": h, "scale": 1.0 / (h * px), "offset": -(h // 2) / (h * px),
              "navigate": False}
        kx = {"name": "kx", "units": "1/nm", "size": w, "scale": 1.0 / (w * px), "offset": -(w // 2) / (w * px),
              "navigate": False}
        self.mean_power = _signal2d(result.mean_power, [ky, kx], title="Mean power spectrum of the ROI",
                                    quantity="Power")

    def to_json(self) -> dict:
        return self.result.to_json()

    def write(self, out_dir, *, overwrite: bool = False):
        from temtrack.pipeline.fft import write_fft_results
        return write_fft_results(self.result, out_dir, overwrite=overwrite)

    def __repr__(self) -> str:
        return f"<FFTEvolution frames={self.result.time_s.size} sets={self.result.series.n_sets} roi={list(self.result.roi)}>"


# -- particles -------------------------------------------------------------------------------------
class ParticleTracking:
    """Every particle of a movie over time, from :func:`temtrack.pipeline.particles.run_particles`.

    The per-particle series are Signal1D of shape (n_particles, n_frames): navigation index =
    particle (``ids[i]``), signal axis = time (s), so ``tracking.area.inav[3]`` is particle 3's
    A(t) and ``tracking.area.plot()`` steps through the particles.

    Attributes
    ----------
    result : ParticlesResult
        The pipeline's result (what ``temtrack particles`` writes).
    ids : ndarray of int
    area : Signal1D
        Projected area (nm^2), regularised along the track (``results.json``'s ``area_nm2``).
    area_frame : Signal1D
        Each frame's own fitted area (nm^2).
    equivalent_diameter, volume_expansion, core_radius : Signal1D
        In nm, as (A/A0)^1.5 - 1 (isotropic swelling assumed), nm (NaN where no core is seen).
    onsets_s : dict of int -> float or None
        Onset of swelling per particle id (None: none detected).
    cracked : dict of int -> bool
    """

    def __init__(self, result):
        self.result = result
        t = np.asarray(result.time_s, dtype=np.float64)
        self.ids = np.asarray(result.ids, dtype=int)
        n = int(self.ids.size)

        def series(values, title, quantity):
            axes = [_index_axis(n, "particle"), _axis(t, "time", "s")]
            return _signal1d(np.asarray(values, dtype=np.float64).T, axes, title=title, quantity=quantity,
                             temtrack={"particle_ids": self.ids.tolist()})

        frame_area = result.area_nm2 if result.area_frame_nm2 is None else result.area_frame_nm2
        self.area = series(result.area_nm2, "Particle projected area", "Area (nm^2)")
        self.area_frame = series(frame_area, "Particle projected area (per-frame fit)", "Area (nm^2)")
        self.equivalent_diameter = series(result.equivalent_diameter_nm, "Particle equivalent diameter",
                                          "Diameter (nm)")
        self.volume_expansion = series(result.volume_expansion, "Particle volume expansion (A/A0)^1.5 - 1",
                                       "Volume expansion")
        self.core_radius = series(result.core_radius_nm, "Unreacted core radius", "Core radius (nm)")
        self.onsets_s = {int(i): (None if not np.isfinite(v) else float(v)) for i, v in zip(self.ids, result.onset_s)}
        self.cracked = {int(i): bool(c) for i, c in zip(self.ids, result.cracked)}

    @property
    def n_particles(self) -> int:
        return int(self.ids.size)

    @property
    def problems(self) -> list:
        return list(self.result.problems)

    def summary(self) -> dict:
        """One row per particle (the columns of ``particles_summary.csv``) as a dict of lists."""
        rows = self.result.particle_dicts()
        out: dict = {k: [] for k in ("id", "initial_equivalent_diameter_nm", "A0_nm2", "final_volume_expansion",
                                     "onset_s", "expansion_rate_nm_per_s", "cracked", "crack_time_s")}
        for d in rows:
            for k in out:
                v = d[k]
                out[k].append(float("nan") if v is None else v)
        return out

    def table(self) -> dict:
        """The long table of ``particles.csv`` (one row per particle and frame) as a dict of arrays."""
        r = self.result
        n_f, n_p = r.area_nm2.shape
        frame_area = r.area_nm2 if r.area_frame_nm2 is None else r.area_frame_nm2
        return {"time_s": np.repeat(r.time_s, n_p), "frame": np.repeat(np.arange(n_f), n_p),
                "id": np.tile(r.ids, n_f), "area_nm2": r.area_nm2.ravel(), "area_frame_nm2": frame_area.ravel(),
                "equivalent_diameter_nm": r.equivalent_diameter_nm.ravel(),
                "volume_expansion": r.volume_expansion.ravel(), "core_radius_nm": r.core_radius_nm.ravel(),
                "centre_y_px": r.y_px.ravel(), "centre_x_px": r.x_px.ravel()}

    def to_dataframe(self, kind: str = "summary"):
        """:meth:`summary` (``kind='summary'``) or :meth:`table` (``kind='frames'``) as a pandas DataFrame."""
        if kind not in ("summary", "frames"):
            raise ParameterError(f"to_dataframe: kind must be 'summary' or 'frames', got {kind!r}")
        try:
            import pandas as pd
        except ImportError:
            raise ParameterError("to_dataframe needs pandas (pip install pandas); summary() and table() "
                                 "give the same columns as dicts") from None
        return pd.DataFrame(self.summary() if kind == "summary" else self.table())

    def to_json(self) -> dict:
        """The content of ``results.json`` as ``temtrack particles`` writes it."""
        from temtrack.pipeline.particles import particles_results_json
        return particles_results_json(self.result)

    def write(self, out_dir, *, overwrite: bool = False):
        """Write the results folder ``temtrack particles`` writes (results.json, CSVs, figures)."""
        from temtrack.pipeline.particles import write_particles_results
        return write_particles_results(self.result, out_dir, overwrite=overwrite)

    def __repr__(self) -> str:
        n_on = sum(v is not None for v in self.onsets_s.values())
        return (f"<ParticleTracking particles={self.n_particles} frames={self.result.time_s.size} "
                f"with_onset={n_on} cracked={sum(self.cracked.values())}>")
