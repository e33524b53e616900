"""The ``analyze`` pipeline: bright-field sodiation movie -> drift, kymograph, front, diameters, kinetics.

Steps: calibration (file or recipe overrides); drift (:func:`temtrack.series.drift.estimate_drift`,
one pass over the movie); wire geometry (the user's line and width, checked, or ``auto``); one pass
over the movie through :func:`temtrack.pipeline.executor.map_frames` that samples a strip along the
wire at drift-corrected coordinates and keeps only per-frame rows (kymograph, per-position
diameters, core attenuation, texture); then time-series analyses on those rows (front tracking,
diameters, kinetics fits, expansion). ``progress(done, total)`` counts frames of both passes.

Whatever can be measured is kept: when no front is detected or a fit fails, the result still holds
the drift, the kymograph and the diameters, ``ok`` is False and ``problems`` says why;
:func:`write_analyze_results` writes them with ``null`` kinetics.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import temtrack
from temtrack.errors import AnalysisError, ParameterError
from temtrack.io.movie import Movie
from temtrack.pipeline.recipe import Recipe

__all__ = ["MIN_FRAMES", "AnalyzeRecipe", "AnalyzeResult", "analyze", "write_analyze_results"]

#: Fewest frames the pipeline accepts (reference frames + a front that moves + a kinetics fit).
MIN_FRAMES = 8
KINETICS_MODELS = ("parabolic", "power", "linear", "mixed")
DRIFT_REFERENCES = ("first", "previous", "mean")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class AnalyzeRecipe(Recipe):
    """Every parameter of a ``temtrack analyze`` run.

    Attributes
    ----------
    line : [x0, y0, x1, y1] or None
        Wire axis in frame-0 pixels, contact end (touching the Na source) first.
    auto : bool
        Find the wire axis, width and contact end automatically (``line`` must then be None).
    width_px : float or None
        Wire width in px (about the pristine diameter); measured from the first frames when None.
    probes_nm : list of float
        Positions along the wire (nm from the contact) where d(t) is reported.
    pixel_size_nm, frame_interval_s : float or None
        Override the file's calibration.
    drift : bool
        Estimate and correct specimen drift (otherwise the specimen is assumed still).
    drift_reference : str or int
        Reference of :func:`temtrack.series.drift.estimate_drift`: ``'first'`` (default), ``'mean'``
        or a frame number; shifts are relative to frame 0 in every case.
    drift_roi : [x, y, w, h] or None
        Region (px) the drift is estimated from (passed to ``estimate_drift``).
    prefactor : float
        P in x^2 = P D (t - t0) (2: one-dimensional diffusion).
    kinetics_models : list of str
        Models fitted and compared.
    frames : [start, stop] or None
        Frame range analysed (stop exclusive).
    memory_budget_mb : float or None
        Bound (MiB, default 1024) on what the passes over the movie hold at once: the chunks of
        frames read and converted to float32 on every worker, and each chunk's working arrays
        (spectra of the drift pass, strips and profile fits of the wire pass). Not covered: the
        interpreter and libraries (about 100 MiB), the per-frame results (a few values per frame
        and position along the wire, n_frames x n_positions) and the page cache of a
        memory-mapped file (shared, dropped by the kernel when needed). A chunk holds at least one
        frame (and up to 16 MiB of frames in the wire pass), so budgets below a few frames per
        worker are exceeded. Peak memory does not grow with the movie's length.
    bin_px : int
        Perpendicular profiles (1 px apart) averaged along the wire per diameter fit (default 4).
    min_significance : float
        Significance (sigma) a step in the change profile needs to count as the front.
    more_lines : list of [x0, y0, x1, y1]
        Further wires in the same field, each analysed independently with the same parameters
        (results under ``wires``; ``line`` is the first wire).
    stimulus_log : str or None
        Potentiostat / biasing-holder CSV log read beside the movie (:mod:`temtrack.series.stimulus`).
    stimulus_offset_s : float or 'auto'
        Clock offset: log time = movie time + offset; ``'auto'`` matches the front's onset
        (kinetics t0) to the first step in the log.
    stimulus_event_s : float or None
        Movie time of an event the user marked (bias on, contact); the log's step in
        ``stimulus_channel`` gives the offset (:func:`temtrack.series.stimulus.estimate_clock_offset_from_event`).
    stimulus_channel : str
        Log channel the event is found in: 'auto', 'current', 'voltage', 'temperature' or 'note'.
    stimulus_log_channel : str or None
        Holder channel of a Protochips log ('A', 'B'); default the one that carried a current.
    """

    kind = "analyze"

    line: list | None = None
    auto: bool = False
    width_px: float | None = None
    probes_nm: list = field(default_factory=list)
    pixel_size_nm: float | None = None
    frame_interval_s: float | None = None
    drift: bool = True
    drift_reference: str | int = "first"
    drift_roi: list | None = None
    prefactor: float = 2.0
    kinetics_models: list = field(default_factory=lambda: list(KINETICS_MODELS))
    frames: list | None = None
    memory_budget_mb: float | None = None
    bin_px: int = 4
    min_significance: float = 5.0
    more_lines: list = field(default_factory=list)
    stimulus_log: str | None = None
    stimulus_offset_s: float | str = 0.0
    stimulus_event_s: float | None = None
    stimulus_channel: str = "auto"
    stimulus_log_channel: str | None = None

    def validate(self) -> None:
        def positive(name, value):
            if value is None:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ParameterError(f"recipe: {name} must be a positive number, got {value!r}")

        if self.more_lines:
            if self.line is None:
                raise ParameterError("recipe: more_lines needs a first wire in line")
            for extra in self.more_lines:
                if not (isinstance(extra, (list, tuple)) and len(extra) == 4):
                    raise ParameterError(f"recipe: each of more_lines must be x0,y0,x1,y1 in px, got {extra!r}")
            self.more_lines = [[float(v) for v in extra] for extra in self.more_lines]
        if self.auto and self.line is not None:
            raise ParameterError("recipe: give either a line (x0,y0,x1,y1) or auto, not both")
        if not self.auto and self.line is None:
            raise ParameterError("recipe: a line along the wire (x0,y0,x1,y1 in px, contact end first) "
                                 "or auto=True is required")
        if self.line is not None:
            if isinstance(self.line, str):
                try:
                    self.line = [float(v) for v in self.line.split(",")]
                except ValueError:
                    raise ParameterError(f"recipe: line must be x0,y0,x1,y1 in px, got {self.line!r}") from None
            try:
                vals = [float(v) for v in self.line]
            except (TypeError, ValueError):
                raise ParameterError(f"recipe: line must be four numbers x0,y0,x1,y1 in px, got {self.line!r}") from None
            if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
                raise ParameterError(f"recipe: line must be four finite numbers x0,y0,x1,y1 in px, got {self.line!r}")
            if math.hypot(vals[2] - vals[0], vals[3] - vals[1]) < 16:
                raise ParameterError(f"recipe: line {vals} is shorter than 16 px; draw it along the wire")
            self.line = vals
        if self.width_px is not None and (isinstance(self.width_px, bool)
                                          or not isinstance(self.width_px, (int, float))
                                          or not math.isfinite(self.width_px) or self.width_px <= 0):
            raise ParameterError(f"recipe: width_px must be a positive number of pixels (about the wire "
                                 f"diameter), got {self.width_px!r}")
        for name in ("pixel_size_nm", "frame_interval_s", "prefactor", "memory_budget_mb", "min_significance"):
            positive(name, getattr(self, name))
        if isinstance(self.probes_nm, (int, float)):
            self.probes_nm = [self.probes_nm]
        if isinstance(self.probes_nm, str):
            self.probes_nm = [v for v in self.probes_nm.split(",") if v.strip()]
        try:
            probes = [float(p) for p in (self.probes_nm or [])]
        except (TypeError, ValueError):
            raise ParameterError(f"recipe: probes_nm must be numbers (nm from the contact), got {self.probes_nm!r}") from None
        if any(not math.isfinite(p) or p < 0 for p in probes):
            raise ParameterError(f"recipe: probes_nm must be >= 0 nm from the contact, got {self.probes_nm!r}")
        self.probes_nm = probes
        if not isinstance(self.drift, bool):
            raise ParameterError(f"recipe: drift must be true or false, got {self.drift!r}")
        ref = self.drift_reference
        if isinstance(ref, bool) or not ((isinstance(ref, str) and ref) or (isinstance(ref, int) and ref >= 0)):
            raise ParameterError(f"recipe: drift_reference must be 'first', 'mean' or a frame number, got {ref!r}")
        if self.drift_roi is not None:
            try:
                roi = [float(v) for v in self.drift_roi]
            except (TypeError, ValueError):
                raise ParameterError(f"recipe: drift_roi must be x, y, w, h in px, got {self.drift_roi!r}") from None
            if len(roi) != 4 or any(not math.isfinite(v) or v < 0 for v in roi) or roi[2] < 8 or roi[3] < 8:
                raise ParameterError(f"recipe: drift_roi must be x, y, w, h in px (x, y >= 0, w, h >= 8), "
                                     f"got {self.drift_roi!r}")
        models = self.kinetics_models
        if isinstance(models, str):
            models = [m.strip() for m in models.split(",") if m.strip()]
        if not models or any(m not in KINETICS_MODELS for m in models):
            raise ParameterError(f"recipe: kinetics_models must be a non-empty subset of {list(KINETICS_MODELS)}, "
                                 f"got {self.kinetics_models!r}")
        self.kinetics_models = list(models)
        if self.frames is not None:
            try:
                a, b = (int(v) for v in self.frames)
            except (TypeError, ValueError):
                raise ParameterError(f"recipe: frames must be [start, stop] frame numbers, got {self.frames!r}") from None
            if a < 0 or b <= a:
                raise ParameterError(f"recipe: frames must be [start, stop] with 0 <= start < stop, got {self.frames!r}")
            self.frames = [a, b]
        if isinstance(self.bin_px, bool) or not isinstance(self.bin_px, int) or not (2 <= self.bin_px <= 64):
            raise ParameterError(f"recipe: bin_px must be an integer 2..64, got {self.bin_px!r}")
        from temtrack.series.stimulus import validate_stimulus_options
        self.stimulus_offset_s, self.stimulus_event_s = validate_stimulus_options(
            self.stimulus_offset_s, self.stimulus_event_s, self.stimulus_channel)


@dataclass
class AnalyzeResult:
    """Everything ``analyze`` measured; ``ok`` is False when a part could not be measured.

    Attributes
    ----------
    recipe : AnalyzeRecipe
    movie_path, movie_format : str
    pixel_size_nm, frame_interval_s : float
    frame_index, time_s : ndarray (n,)
    drift_dy_px, drift_dx_px : ndarray (n,)
    drift_source : str
        'estimated', 'given' or 'off'.
    drift_json : dict
        ``DriftResult.to_json()`` (or the plain shifts).
    wire : dict
        ``line_px``, ``width_px``, ``angle_deg``, ``length_nm``, ``auto`` (+ detection evidence).
    series : WireSeries
        Per-frame rows (kymograph etc.).
    front : FrontResult
    diameter : DiameterResult
    kinetics : KineticsResult or None
    kinetics_json : dict
        The ``kinetics`` block (null fields when not fitted).
    expansion : dict
    warnings, problems : list of str
        ``problems``: what could not be measured (makes ``ok`` False); ``warnings``: everything
        the user should know (includes the problems).
    started, finished : str
        ISO times (UTC).
    """

    recipe: AnalyzeRecipe
    movie_path: str
    movie_format: str
    pixel_size_nm: float
    frame_interval_s: float | None
    time_source: str
    frame_index: np.ndarray
    time_s: np.ndarray
    drift_dy_px: np.ndarray
    drift_dx_px: np.ndarray
    drift_source: str
    drift_json: dict
    wire: dict
    series: object
    front: object
    diameter: object
    kinetics: object
    kinetics_json: dict
    expansion: dict
    warnings: list
    problems: list
    started: str
    finished: str = ""
    #: The further wires of a several-wire run (``recipe.more_lines``), each a full AnalyzeResult.
    more_wires: list = field(default_factory=list)
    #: Current, voltage and charge at the frame times when the recipe names a stimulus log.
    stimulus: dict | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def kymograph_s_nm(self) -> np.ndarray:
        return self.series.s_px * self.pixel_size_nm

    def _single_json(self) -> dict:
        """This wire's ``results.json`` mapping (without the ``wires`` list)."""
        front = self.front.to_json()
        diameter = self.diameter.to_json()
        diameter["time_s"] = self.time_s
        diameter["s_nm"] = self.diameter.s_nm
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "kinetics": self.kinetics_json,
            "front": front,
            "diameter": diameter,
            "expansion": self.expansion,
            "drift": {**self.drift_json, "dy_px": self.drift_dy_px, "dx_px": self.drift_dx_px,
                      "time_s": self.time_s, "source": self.drift_source},
            "wire": self.wire,
            **({"stimulus": self.stimulus} if self.stimulus is not None else {}),
            "provenance": {
                "temtrack_version": temtrack.__version__,
                "file": self.movie_path,
                "format": self.movie_format,
                "recipe": self.recipe.to_dict(),
                "pixel_size_nm": self.pixel_size_nm,
                "frame_interval_s": self.frame_interval_s,
                "time_source": self.time_source,
                "frames": [int(self.frame_index[0]), int(self.frame_index[-1]) + 1],
                "started": self.started,
                "finished": self.finished,
            },
        }

    def to_json(self) -> dict:
        """``results.json``: the first wire's keys, and with several wires a ``wires`` list of them all."""
        data = self._single_json()
        if self.more_wires:
            data["wires"] = [_wire_block(i + 1, r, js) for i, (r, js) in enumerate(
                [(self, data), *((w, w._single_json()) for w in self.more_wires)])]
        return data


def _wire_block(wire_id: int, r: AnalyzeResult, data: dict) -> dict:
    """The per-wire block listed under ``wires`` (the single-wire keys, as ``temtrack stats`` reads them)."""
    return {"id": wire_id, "line_px": r.recipe.line, "ok": r.ok, "problems": list(r.problems),
            **{k: data[k] for k in ("kinetics", "front", "diameter", "expansion", "wire")}}


def _budget_bytes(recipe) -> int | None:
    return None if recipe.memory_budget_mb is None else int(recipe.memory_budget_mb * 2 ** 20)


def _null_kinetics(prefactor: float, reason: str) -> dict:
    return {"model": None, "D_nm2_per_s": None, "D_cm2_per_s": None, "k_nm_per_s": None, "n": None,
            "t0_s": None, "ci95": None, "prefactor": prefactor, "error": reason}


class _Progress:
    """Maps the progress of each pass onto one (done, total) over the whole run.

    A pass may count in its own units (the drift estimate reports two passes over the movie,
    ``total = 2 n``); each pass's ``done / total`` is scaled onto the frames allotted to it, so
    one pass never spills into the next one's share. :meth:`start` reports ``(0, total)`` before
    any work: a progress bar created at the first report of a finished chunk measured its rate
    from microseconds (millions of frames per second).
    """

    def __init__(self, callback, total):
        self.callback, self.total, self.offset = callback, int(total), 0

    def start(self):
        if self.callback is not None:
            self.callback(0, self.total)

    def stage(self, n_frames):
        offset, share = self.offset, int(n_frames)
        self.offset += share
        if self.callback is None:
            return None

        def report(done, stage_total):
            frac = min(max(float(done) / stage_total, 0.0), 1.0) if stage_total and stage_total > 0 else 1.0
            self.callback(min(self.total, offset + round(frac * share)), self.total)

        return report


def analyze(movie: Movie, recipe: AnalyzeRecipe, *, executor=None, progress=None, cancel=None,
            shifts_px=None) -> AnalyzeResult:
    """Measure drift, kymograph, reaction front, diameters and kinetics of a sodiation movie.

    Parameters
    ----------
    movie : Movie
    recipe : AnalyzeRecipe
    executor : LocalExecutor or DaskExecutor, optional
    progress : callable, optional
        ``progress(done, total)`` in frames over both passes (drift, then wire).
    cancel : threading.Event, optional
    shifts_px : (dy_px, dx_px), optional
        Drift already measured (one value per movie frame, px, specimen displacement relative
        to frame 0); skips the drift pass.

    Returns
    -------
    AnalyzeResult

    Raises
    ------
    ParameterError
        Invalid recipe, missing calibration, too few frames, a line outside the frame.
    """
    from temtrack.series.diameter import summarize_diameters
    from temtrack.series.front import track_front
    from temtrack.series.kymograph import make_wire_sampler, measure_wire_series
    from temtrack.series.wire_geometry import (
        choose_contact_end,
        detect_wire_line,
        line_angle_deg,
        measure_width,
        validate_line,
        validate_width,
    )

    started = _now()
    if not isinstance(recipe, AnalyzeRecipe):
        raise ParameterError(f"analyze needs an AnalyzeRecipe, got {type(recipe).__name__}")
    recipe.validate()
    movie = movie.with_calibration(pixel_size=recipe.pixel_size_nm,
                                   pixel_unit="nm" if recipe.pixel_size_nm else None,
                                   frame_interval_s=recipe.frame_interval_s)
    if movie.pixel_unit == "1/nm":
        raise ParameterError(f"{movie.path}: this is a diffraction movie (1/nm); analyze needs images "
                             "(use 'temtrack rings')")
    if movie.pixel_size is None or movie.pixel_unit != "nm":
        raise ParameterError(f"{movie.path}: no spatial calibration; give the pixel size in nm (--pixel-size)")
    if movie.times_s is None:
        raise ParameterError(f"{movie.path}: no frame timing; give the frame interval in s (--frame-interval)")
    start, stop = (0, movie.n_frames) if recipe.frames is None else recipe.frames
    if stop > movie.n_frames:
        raise ParameterError(f"recipe: frames {start}:{stop} go past the movie's {movie.n_frames} frames")
    n = stop - start
    if n < MIN_FRAMES:
        raise ParameterError(f"analyze needs at least {MIN_FRAMES} frames to follow a reaction front, "
                             f"got {n} ({movie.path})")
    px = float(movie.pixel_size)
    shape = movie.frame_shape
    warnings: list[str] = [f"movie: {p}" for p in movie.problems]
    problems: list[str] = []
    if recipe.line is not None:
        validate_line(recipe.line, shape)
    if recipe.width_px is not None:
        validate_width(recipe.width_px, shape)

    if recipe.more_lines:
        return _analyze_several_wires(movie, recipe, executor=executor, progress=progress, cancel=cancel,
                                      shifts_px=shifts_px)

    prog = _Progress(progress, (movie.n_frames if (recipe.drift and shifts_px is None) else 0) + n)
    prog.start()

    # Drift.
    if shifts_px is not None:
        dy, dx = (np.asarray(v, dtype=np.float64) for v in shifts_px)
        if dy.shape != (movie.n_frames,) or dx.shape != (movie.n_frames,):
            raise ParameterError(f"shifts_px must give one dy and one dx per frame ({movie.n_frames})")
        drift_source, drift_json = "given", {}
    elif recipe.drift:
        from temtrack.series.drift import estimate_drift
        dres = estimate_drift(movie, reference=recipe.drift_reference, roi=recipe.drift_roi, executor=executor,
                           memory_budget_bytes=_budget_bytes(recipe),
                              progress=prog.stage(movie.n_frames), cancel=cancel)
        dy = np.asarray(dres.dy_px, dtype=np.float64)
        dx = np.asarray(dres.dx_px, dtype=np.float64)
        drift_source = "estimated"
        drift_json = dict(dres.to_json()) if hasattr(dres, "to_json") else {}
        jumps = list(getattr(dres, "jump_frames", []) or [])
        if jumps:
            warnings.append(f"drift: sudden jumps at frames {jumps}")
    else:
        dy = np.zeros(movie.n_frames)
        dx = np.zeros(movie.n_frames)
        drift_source, drift_json = "off", {}
    if not (np.all(np.isfinite(dy)) and np.all(np.isfinite(dx))):
        bad = np.flatnonzero(~(np.isfinite(dy) & np.isfinite(dx)))
        warnings.append(f"drift unknown for {bad.size} frame(s); their measurements are NaN")

    # Wire geometry (frame-0 coordinates).
    head = movie.read(start, min(stop, start + 5))
    wire: dict = {"auto": bool(recipe.auto)}
    if recipe.auto:
        found = detect_wire_line(head)
        # Detected in frame `start`; a point there sits at frame-0 position minus that frame's drift.
        ddy, ddx = (float(dy[start]), float(dx[start])) if np.isfinite(dy[start]) else (0.0, 0.0)

        def to_frame0(ln):
            x0, y0, x1, y1 = ln
            return (x0 - ddx, y0 - ddy, x1 - ddx, y1 - ddy)

        line = to_frame0(found.line_px)
        width = float(recipe.width_px) if recipe.width_px is not None else found.width_px
        wire["detection"] = dict(found.contact_evidence)
        if not found.contact_certain:
            # The image alone cannot tell (source outside the field): the contact is the end
            # near which the wire changes first.
            k = min(5, n)
            first, ev = choose_contact_end(head[:k], movie.read(stop - k, stop), line, width,
                                           early_shifts=list(zip(dy[start:start + k], dx[start:start + k])),
                                           late_shifts=list(zip(dy[stop - k:stop], dx[stop - k:stop])))
            wire["detection"].update(ev)
            if not first:
                line = to_frame0(found.reversed_line_px)
            warnings.append("auto: the Na source is not clearly visible at either end; the contact end was "
                            "taken as the end where the wire changes most between the first and last frames")
        warnings.append("auto: the contact point is placed where the wire meets the Na source's outline")
    else:
        line = tuple(float(v) for v in recipe.line)
        if recipe.width_px is not None:
            width = float(recipe.width_px)
        else:
            ddy, ddx = (float(dy[start]), float(dx[start])) if np.isfinite(dy[start]) else (0.0, 0.0)
            width = measure_width(head, (line[0] + ddx, line[1] + ddy, line[2] + ddx, line[3] + ddy))
            wire["width_measured"] = True
    width = validate_width(width, shape)
    wire.update(line_px=list(line), width_px=width, angle_deg=line_angle_deg(line),
                length_nm=math.hypot(line[2] - line[0], line[3] - line[1]) * px)

    sampler = make_wire_sampler(line, width_px=width, bin_px=recipe.bin_px)
    budget = None if recipe.memory_budget_mb is None else int(recipe.memory_budget_mb * 2 ** 20)
    series = measure_wire_series(movie, sampler, dy_px=dy, dx_px=dx, start=start, stop=stop, executor=executor,
                                 memory_budget_bytes=budget, progress=prog.stage(n), cancel=cancel)
    time_s = movie.times_s[start:stop] - 0.0
    from temtrack.pipeline.executor import one_blas_thread
    with one_blas_thread():  # small matrix products: more BLAS threads only spin-wait (2-3x slower)
        front = track_front(series, time_s, pixel_size_nm=px, min_significance=recipe.min_significance)
    warnings.extend(front.warnings)
    if not front.detected:
        problems.append(front.message)
    diameter = summarize_diameters(series, front, time_s, pixel_size_nm=px, probes_nm=recipe.probes_nm)
    warnings.extend(diameter.warnings)

    kinetics = None
    kin_json = _null_kinetics(recipe.prefactor, "no reaction front detected")
    if front.detected:
        from temtrack.series.kinetics import fit_kinetics
        ok = front.used_for_fit
        try:
            # --auto puts the contact at the source's outline, not where Na enters: fit the offset x0
            with one_blas_thread():
                kinetics = fit_kinetics(time_s[ok], front.position_nm[ok], position_err_nm=front.uncertainty_nm[ok],
                                        models=recipe.kinetics_models, prefactor=recipe.prefactor,
                                        origin="free" if recipe.auto else "contact")
            kin_json = kinetics.to_json()
            for name, f in kinetics.fits.items():
                for w in f.warnings:
                    warnings.append(f"kinetics ({name}): {w}")
        except AnalysisError as exc:
            kin_json = _null_kinetics(recipe.prefactor, str(exc))
            problems.append(f"kinetics fit failed: {exc}")

    expansion: dict = {}
    if np.isfinite(diameter.pristine_nm) and np.isfinite(diameter.sodiated_nm):
        from temtrack.series.expansion import expansion_metrics
        probe_key, probe_d = _expansion_probe(front, diameter, series, px)
        try:
            expansion = expansion_metrics(
                diameter.pristine_nm, diameter.sodiated_nm,
                pristine_err_nm=diameter.pristine_err_nm if np.isfinite(diameter.pristine_err_nm) else None,
                sodiated_err_nm=diameter.sodiated_err_nm if np.isfinite(diameter.sodiated_err_nm) else None,
                diameter_time_s=time_s if probe_d is not None else None, diameter_nm=probe_d)
            expansion["rate_probe_nm"] = probe_key
        except (AnalysisError, ParameterError) as exc:
            warnings.append(f"expansion: {exc}")
            expansion = {"error": str(exc)}
    else:
        expansion = {"error": "pristine and sodiated diameters are both needed"}
        if front.detected:
            problems.append("expansion not measured: " + "; ".join(diameter.warnings or ["diameters missing"]))

    for p in problems:
        if p not in warnings:
            warnings.append(p)
    result = AnalyzeResult(
        recipe=recipe, movie_path=str(movie.path), movie_format=movie.format, pixel_size_nm=px,
        frame_interval_s=movie.frame_interval_s, time_source=movie.time_source,
        frame_index=np.arange(start, stop), time_s=time_s, drift_dy_px=dy[start:stop], drift_dx_px=dx[start:stop],
        drift_source=drift_source, drift_json=drift_json, wire=wire, series=series, front=front,
        diameter=diameter, kinetics=kinetics, kinetics_json=kin_json, expansion=expansion, warnings=warnings,
        problems=problems, started=started)
    if recipe.stimulus_log:
        result.stimulus = _stimulus_block(recipe, time_s, front, diameter, kin_json, movie.frame_interval_s)
        result.warnings.extend(result.stimulus.pop("warnings", []))
    result.finished = _now()
    return result


def _stimulus_block(recipe, time_s, front, diameter, kinetics_json, frame_interval_s) -> dict:
    """Current/voltage at the frame times, the clock offset and the charge beside the reacted volume."""
    from temtrack.series.stimulus import stimulus_for_analysis
    return stimulus_for_analysis(
        recipe.stimulus_log, time_s, offset_s=recipe.stimulus_offset_s, event_s=recipe.stimulus_event_s,
        channel=recipe.stimulus_channel, log_channel=recipe.stimulus_log_channel,
        frame_interval_s=frame_interval_s, kinetics=kinetics_json, front_position_nm=front.position_nm,
        sodiated_diameter_nm=getattr(diameter, "sodiated_nm", None))


def _expansion_probe(front, diameter, series, px):
    """Diameter vs time for the radial expansion rate: the first user probe, else mid-sweep."""
    if diameter.probes:
        key = next(iter(diameter.probes))
        d = np.asarray(diameter.probes[key], dtype=float)
        if np.isfinite(d).sum() >= 5:
            return float(key), d
    pos = front.position_nm[front.used_for_fit]
    if pos.size < 5:
        return None, None
    target = 0.5 * (np.nanmin(pos) + np.nanmax(pos))
    j = int(np.nanargmin(np.abs(diameter.s_nm - target)))
    d = diameter.map_nm[:, j]
    if np.isfinite(d).sum() < 5:
        return None, None
    return float(diameter.s_nm[j]), d


def _analyze_several_wires(movie, recipe, *, executor, progress, cancel, shifts_px):
    """Drift once, then each wire independently with the same shifts; the first wire carries the rest."""
    n_wires = 1 + len(recipe.more_lines)
    drift_frames = movie.n_frames if (recipe.drift and shifts_px is None) else 0
    prog = _Progress(progress, drift_frames + n_wires * movie.n_frames)
    prog.start()
    if drift_frames:
        from temtrack.series.drift import estimate_drift
        d = estimate_drift(movie, reference=recipe.drift_reference, roi=recipe.drift_roi, executor=executor,
                           memory_budget_bytes=_budget_bytes(recipe),
                           progress=prog.stage(drift_frames), cancel=cancel)
        shifts_px = (d.dy_px, d.dx_px)
    results = []
    for line in [recipe.line, *recipe.more_lines]:
        one = recipe.replace(line=list(line), more_lines=[])
        results.append(analyze(movie, one, executor=executor, progress=prog.stage(movie.n_frames), cancel=cancel,
                               shifts_px=shifts_px))
    first = results[0]
    first.recipe = recipe
    first.more_wires = results[1:]
    if drift_frames:
        first.drift_source = "estimated"
    return first


def write_analyze_results(result: AnalyzeResult, out_dir, *, overwrite: bool = False) -> Path:
    """Write ``results.json``, CSV tables, the kymograph and the figures, atomically.

    Files: ``results.json``; ``front.csv``, ``diameters.csv`` (d(s,t), long form), ``probes.csv``,
    ``shifts.csv``; ``kymograph.npy`` and ``kymograph.tif`` (float32, rows = frames, columns =
    1 px steps along the line) and ``kymograph.png``; ``front.png``, ``diameter.png``,
    ``diameter_map.png``, ``shifts.png``; with a stimulus log ``stimulus.csv``, ``stimulus.png`` and
    ``charge_volume.png``. Every PNG has an SVG (and PDF, see ``temtrack.io.results.figure_formats``) twin.

    Returns
    -------
    Path
        The output folder.
    """
    from temtrack.io.results import OutputFolder, write_json_atomic

    with OutputFolder(out_dir, overwrite=overwrite) as stage:
        write_json_atomic(stage / "results.json", result.to_json())
        _write_wire_files(stage, result)
        for k, wire in enumerate(result.more_wires, start=2):
            (stage / f"wire_{k}").mkdir()
            write_json_atomic(stage / f"wire_{k}" / "results.json", wire.to_json())
            _write_wire_files(stage / f"wire_{k}", wire)
    return Path(out_dir)


def _write_wire_files(stage: Path, r: AnalyzeResult) -> None:
    """One wire's CSV tables, kymograph and figures into ``stage``."""
    import io

    import tifffile

    from temtrack.io.results import (save_figure_atomic, save_npy_atomic, write_bytes_atomic,
                                     write_csv_atomic)
    from temtrack.plots import analyze as plots

    t = r.time_s
    fr = r.front
    dm = r.diameter
    if r.stimulus is not None:
        write_csv_atomic(stage / "stimulus.csv", {"time_s": t.tolist(), **{
            k: np.asarray(r.stimulus[k], float).tolist() for k in
            ("current_A", "voltage_V", "temperature_C", "charge_C", "reacted_volume_nm3", "na_per_nm3")
            if r.stimulus.get(k) is not None}})
    cols = {"frame": r.frame_index.tolist(), "time_s": t.tolist(), "position_nm": fr.position_nm.tolist(),
            "uncertainty_nm": fr.uncertainty_nm.tolist(), "monotonic_nm": fr.monotonic_nm.tolist(),
            "flag": list(fr.flags), "used_for_fit": [int(v) for v in fr.used_for_fit]}
    curves = {}
    if r.kinetics is not None:
        for name, f in r.kinetics.fits.items():
            curves[name] = np.asarray(f.predict(t), dtype=float)
            cols[f"fit_{name}_nm"] = curves[name].tolist()
    write_csv_atomic(stage / "front.csv", cols)
    nt, nb = dm.map_nm.shape
    write_csv_atomic(stage / "diameters.csv", {
        "frame": np.repeat(r.frame_index, nb).tolist(), "time_s": np.repeat(t, nb).tolist(),
        "s_nm": np.tile(dm.s_nm, nt).tolist(), "diameter_nm": dm.map_nm.ravel().tolist(),
        "diameter_err_nm": dm.map_err_nm.ravel().tolist()})
    pcols = {"frame": r.frame_index.tolist(), "time_s": t.tolist()}
    for key, d in dm.probes.items():
        pcols[f"diameter_at_{key}nm_nm"] = np.asarray(d, float).tolist()
        pcols[f"diameter_at_{key}nm_err_nm"] = np.asarray(dm.probes_err[key], float).tolist()
    write_csv_atomic(stage / "probes.csv", pcols)
    write_csv_atomic(stage / "shifts.csv", {"frame": r.frame_index.tolist(), "time_s": t.tolist(),
                                            "dy_px": r.drift_dy_px.tolist(), "dx_px": r.drift_dx_px.tolist()})
    kymo = np.asarray(r.series.kymograph, dtype=np.float32)
    save_npy_atomic(stage / "kymograph.npy", kymo)
    buf = io.BytesIO()
    tifffile.imwrite(buf, kymo, metadata={"axes": "YX", "x_unit": "nm", "x_step": r.pixel_size_nm,
                                          "y_unit": "s"})
    write_bytes_atomic(stage / "kymograph.tif", buf.getvalue())
    s_nm = r.kymograph_s_nm
    ok = fr.used_for_fit
    best = r.kinetics.best.name if r.kinetics is not None else None
    save_figure_atomic(plots.kymograph_figure(kymo, s_nm, t, front_time_s=t[ok], front_nm=fr.position_nm[ok],
                                              fit_time_s=t, fit_nm=curves.get(best), fit_label=f"{best} fit"),
                       stage / "kymograph.png", dpi=120)
    excluded = np.isfinite(fr.position_nm) & ~ok
    save_figure_atomic(plots.front_figure(t[ok], fr.position_nm[ok], fr.uncertainty_nm[ok],
                                          curves={k: v[ok] for k, v in curves.items()},
                                          best=r.kinetics.best.name if r.kinetics is not None else None,
                                          excluded_time_s=t[excluded], excluded_nm=fr.position_nm[excluded]),
                       stage / "front.png", dpi=120)
    save_figure_atomic(plots.diameter_figure(t, dm.probes, pristine_nm=dm.pristine_nm,
                                             sodiated_nm=dm.sodiated_nm), stage / "diameter.png", dpi=120)
    save_figure_atomic(plots.diameter_map_figure(dm.map_nm, dm.s_nm, t, front_time_s=t[ok],
                                                 front_nm=fr.position_nm[ok]), stage / "diameter_map.png", dpi=120)
    save_figure_atomic(plots.shifts_figure(t, r.drift_dy_px, r.drift_dx_px), stage / "shifts.png", dpi=120)
    for name, fig in plots.stimulus_figures(r).items():
        save_figure_atomic(fig, stage / name, dpi=120)
