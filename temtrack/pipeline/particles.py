"""The ``particles`` pipeline: movie of many particles -> per-particle areas, expansion, onsets, cracking.

Steps: calibration overrides from the recipe; drift (:func:`temtrack.series.drift.estimate_drift`)
unless switched off; detection on the aligned mean of the first frames and per-frame fits of every
particle (:func:`temtrack.series.particles.track_particles`, one :func:`map_frames` pass); results
written by :func:`write_particles_results` (``results.json``, ``particles.csv`` long table,
``particles_summary.csv``, figures).
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import temtrack
from temtrack.errors import ParameterError
from temtrack.io.movie import Movie
from temtrack.pipeline.recipe import Recipe
from temtrack.series import particles as sp

__all__ = ["ParticlesRecipe", "run_particles", "write_particles_results", "particles_results_json"]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class ParticlesRecipe(Recipe):
    """Every parameter of a ``temtrack particles`` run.

    Attributes
    ----------
    polarity : {'dark', 'bright'}
        Particles darker (bright-field) or brighter (dark-field) than the background.
    detect_frames : int
        Particles are detected on the drift-aligned mean of this many first frames.
    with_core : bool
        Fit an unreacted core (shrinking-core contrast).
    drift_correction : bool
        Measure and follow the specimen drift (off: particles assumed static).
    pixel_size_nm, frame_interval_s : float or None
        Override the file's calibration.
    memory_budget_mb : float or None
        Memory for frames in flight (default 1 GiB).
    min_radius_px : float
        Smaller objects are ignored.
    max_radius_factor : float
        Largest expected growth of a particle's radius (sets the fit region).
    crack_persist_frames : int
        Frames a split or a new hole must persist to flag a particle as cracked.
    regularise : float
        Temporal regularisation of each particle's radius series (penalty in units of the
        frame-to-frame noise, see :func:`temtrack.series.particles.regularise_radius`); 0 reports
        each frame's own fit.
    """

    kind = "particles"

    polarity: str = "dark"
    detect_frames: int = 5
    with_core: bool = True
    drift_correction: bool = True
    pixel_size_nm: float | None = None
    frame_interval_s: float | None = None
    memory_budget_mb: float | None = None
    min_radius_px: float = 3.0
    max_radius_factor: float = 1.7
    crack_persist_frames: int = 3
    regularise: float = 1.0

    def validate(self) -> None:
        if self.polarity not in ("dark", "bright"):
            raise ParameterError(f"recipe: polarity must be 'dark' or 'bright', got {self.polarity!r}")
        for name in ("pixel_size_nm", "frame_interval_s", "memory_budget_mb"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ParameterError(f"recipe: {name} must be a positive number, got {v!r}")
        for name in ("detect_frames", "crack_persist_frames"):
            v = getattr(self, name)
            if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1):
                raise ParameterError(f"recipe: {name} must be an integer >= 1, got {v!r}")
        if not (isinstance(self.min_radius_px, (int, float)) and self.min_radius_px > 0):
            raise ParameterError(f"recipe: min_radius_px must be a positive number, got {self.min_radius_px!r}")
        if not (isinstance(self.max_radius_factor, (int, float)) and self.max_radius_factor >= 1):
            raise ParameterError(f"recipe: max_radius_factor must be >= 1, got {self.max_radius_factor!r}")
        if not (isinstance(self.regularise, (int, float)) and not isinstance(self.regularise, bool)
                and math.isfinite(self.regularise) and self.regularise >= 0):
            raise ParameterError(f"recipe: regularise must be a number >= 0, got {self.regularise!r}")
        for name in ("with_core", "drift_correction"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"recipe: {name} must be true or false, got {getattr(self, name)!r}")


def run_particles(movie: Movie, recipe: ParticlesRecipe | None = None, *, executor=None, progress=None,
                  cancel=None, drift=None) -> sp.ParticlesResult:
    """Detect and follow every particle of a movie.

    Parameters
    ----------
    movie : Movie
    recipe : ParticlesRecipe, optional
        Default parameters when None.
    executor : LocalExecutor or DaskExecutor, optional
    progress : callable, optional
        ``progress(done, total)`` over the drift and fit passes.
    cancel : threading.Event, optional
    drift : DriftResult or (dy_px, dx_px), optional
        Drift already measured (skips the drift pass).

    Returns
    -------
    ParticlesResult
        With ``provenance`` filled (file, format, recipe, temtrack version, times).
    """
    recipe = ParticlesRecipe() if recipe is None else recipe
    if not isinstance(recipe, ParticlesRecipe):
        raise ParameterError(f"run_particles needs a ParticlesRecipe, got {type(recipe).__name__}")
    recipe.validate()
    started = _now()
    movie = movie.with_calibration(pixel_size=recipe.pixel_size_nm,
                                   pixel_unit="nm" if recipe.pixel_size_nm else None,
                                   frame_interval_s=recipe.frame_interval_s)
    if movie.pixel_unit == "1/nm":
        raise ParameterError(f"{movie.path}: a diffraction movie (1/nm pixels); the particles pipeline needs images")
    if drift is None and not recipe.drift_correction:
        drift = (np.zeros(movie.n_frames), np.zeros(movie.n_frames))
    budget = None if recipe.memory_budget_mb is None else int(recipe.memory_budget_mb * 2 ** 20)
    result = sp.track_particles(movie, drift=drift, detect_frames=recipe.detect_frames, polarity=recipe.polarity,
                                with_core=recipe.with_core, executor=executor, progress=progress, cancel=cancel,
                                min_radius_px=recipe.min_radius_px, max_radius_factor=recipe.max_radius_factor,
                                crack_persist_frames=recipe.crack_persist_frames, regularise=recipe.regularise,
                                memory_budget_bytes=budget)
    if not recipe.drift_correction:
        result.drift_source = "none (drift_correction off)"
    own = [p for p in result.problems if p not in movie.problems
           and not (p.startswith("no frame timing") and any(q.startswith("no frame timing") for q in movie.problems))]
    result.problems = list(movie.problems) + own
    result.provenance = {
        "temtrack_version": temtrack.__version__,
        "file": str(movie.path),
        "format": movie.format,
        "recipe": recipe.to_dict(),
        "pixel_size_nm": result.pixel_size_nm,
        "frame_interval_s": movie.frame_interval_s,
        "time_source": movie.time_source,
        "n_frames": movie.n_frames,
        "started": started,
        "finished": _now(),
    }
    return result


def particles_results_json(result: sp.ParticlesResult) -> dict:
    """The content of ``results.json`` for a particles run."""
    fve = result.final_volume_expansion()
    finite = fve[np.isfinite(fve)]
    return {
        "kind": "particles",
        "particles": result.particle_dicts(),
        "summary": {
            "n_particles": result.n_particles,
            "n_cracked": int(result.cracked.sum()),
            "n_with_onset": int(np.isfinite(result.onset_s).sum()),
            "final_volume_expansion_mean": float(finite.mean()) if finite.size else None,
            "final_volume_expansion_median": float(np.median(finite)) if finite.size else None,
        },
        "definitions": {
            "area_nm2": "pi R^2 of the fitted projected-sphere outer radius R, regularised along the track "
                        "(robust l1 trend filter of R(t), corner at the onset and break at cracking kept; "
                        f"penalty {result.regularisation:g} x the frame-to-frame noise, 0 = none)",
            "area_frame_nm2": "pi R^2 of each frame's own projected-sphere fit (before regularisation)",
            "equivalent_diameter_nm": "2 sqrt(area / pi)",
            "volume_expansion": sp.VOLUME_DEFINITION,
            "A0_nm2": "median area of the frames before the onset",
            "final_volume_expansion": "median volume_expansion of the last 3 frames",
            "onset_s": sp.ONSET_DEFINITION,
            "expansion_rate": "radial surface speed of the equivalent sphere, Theil-Sen over the 10-90% swelling "
                              "period (temtrack.series.expansion.radial_expansion_rate)",
            "core_radius_nm": "radius of the unreacted core of distinct contrast (null: none seen)",
            "cracked": "two or more pieces, or more enclosed holes than before the onset, in at least "
                       f"{result.provenance.get('recipe', {}).get('crack_persist_frames', 3)} consecutive frames",
            "centre_px": "fitted centre in each frame's own pixel coordinates; centre0_yx_px in frame-0 coordinates",
        },
        "blur_px": result.blur_px,
        "drift": {"dy_px": result.drift_dy_px, "dx_px": result.drift_dx_px, "time_s": result.time_s,
                  "source": result.drift_source,
                  "convention": "a feature at (y, x) in frame 0 appears at (y + dy_px, x + dx_px) in frame i"},
        "problems": list(result.problems),
        "provenance": dict(result.provenance),
    }


def write_particles_results(result: sp.ParticlesResult, out_dir, *, overwrite: bool = False) -> Path:
    """Write ``results.json``, ``particles.csv``, ``particles_summary.csv`` and PNG/SVG plots atomically.

    Returns
    -------
    Path
        ``out_dir``.
    """
    from temtrack.io.results import OutputFolder, save_figure_atomic, write_csv_atomic, write_json_atomic
    from temtrack.plots import particles as plots

    out_dir = Path(out_dir)
    n_f, n_p = result.area_nm2.shape
    with OutputFolder(out_dir, overwrite=overwrite) as stage:
        write_json_atomic(stage / "results.json", particles_results_json(result))
        frame = np.repeat(np.arange(n_f), n_p)
        cols = {
            "time_s": np.repeat(result.time_s, n_p).tolist(),
            "frame": frame.tolist(),
            "id": np.tile(result.ids, n_f).tolist(),
            "area_nm2": result.area_nm2.ravel().tolist(),
            "area_frame_nm2": (result.area_nm2 if result.area_frame_nm2 is None
                               else result.area_frame_nm2).ravel().tolist(),
            "equivalent_diameter_nm": result.equivalent_diameter_nm.ravel().tolist(),
            "volume_ratio": result.volume_ratio.ravel().tolist(),
            "volume_expansion": result.volume_expansion.ravel().tolist(),
            "core_radius_nm": result.core_radius_nm.ravel().tolist(),
            "n_pieces": result.n_pieces.ravel().tolist(),
            "n_holes": result.n_holes.ravel().tolist(),
            "centre_y_px": result.y_px.ravel().tolist(),
            "centre_x_px": result.x_px.ravel().tolist(),
            "fit_ok": result.fit_ok.ravel().astype(int).tolist(),
        }
        write_csv_atomic(stage / "particles.csv", cols)
        summary = {k: [] for k in ("id", "initial_equivalent_diameter_nm", "A0_nm2", "final_volume_expansion",
                                   "onset_s", "expansion_rate_nm_per_s", "cracked", "crack_time_s",
                                   "shrinking_core_model", "shrinking_core_tau_s")}
        for d in result.particle_dicts():
            summary["id"].append(d["id"])
            summary["initial_equivalent_diameter_nm"].append(float(d["initial_equivalent_diameter_nm"]))
            summary["A0_nm2"].append(float(d["A0_nm2"]))
            summary["final_volume_expansion"].append(float(d["final_volume_expansion"]))
            summary["onset_s"].append(float(d["onset_s"]))
            rate = d["expansion_rate_nm_per_s"]
            summary["expansion_rate_nm_per_s"].append(float("nan") if rate is None else float(rate))
            summary["cracked"].append(int(d["cracked"]))
            summary["crack_time_s"].append(float(d["crack_time_s"]))
            sc = d["shrinking_core"]
            summary["shrinking_core_model"].append("" if sc is None else sc["best_model"])
            summary["shrinking_core_tau_s"].append(float("nan") if sc is None else float(sc["best"]["params"]["tau_s"]))
        write_csv_atomic(stage / "particles_summary.csv", summary)
        save_figure_atomic(plots.area_vs_time_figure(result), stage / "area_vs_time.png", dpi=110)
        save_figure_atomic(plots.expansion_vs_size_figure(result), stage / "expansion_vs_size.png", dpi=110)
        save_figure_atomic(plots.core_radius_figure(result), stage / "core_radius_vs_time.png", dpi=110)
    return out_dir
