"""The ``rings`` pipeline: SAED movie -> centre, I(q) per frame, ring tracks, phase fractions, onsets.

Steps: calibration (file, user pixel size, camera length + kV, or a known ring of the first frame);
geometry (pattern centre and ellipticity from a few frames); one pass over the movie through
:func:`temtrack.pipeline.executor.map_frames` (mask, sub-pixel centre, pixel-split azimuthal
integration and ring peaks per frame); then time-series analyses (linking and joint refinement of
rings, NNLS phase fractions with the background and halos as their own components, onsets) and
ring-to-library matching.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import temtrack
from temtrack.errors import AnalysisError, ParameterError
from temtrack.frame.diffraction_center import find_center, refine_center
from temtrack.frame.radial import azimuthal_average, detect_mask, radial_bins, radial_profile
from temtrack.io.movie import Movie
from temtrack.phases.library import PhaseLibrary, load_library
from temtrack.pipeline.executor import map_frames
from temtrack.pipeline.recipe import Recipe
from temtrack.series import phase_fractions as pf
from temtrack.series import rings as rg

MAX_PEAKS = 64
CENTER_MODES = ("per_frame", "smoothed", "fixed")


@dataclass
class RingsRecipe(Recipe):
    """Every parameter of a ``temtrack rings`` run.

    Calibration (first that applies): ``pixel_size_inv_nm``; ``camera_length_mm`` +
    ``voltage_kv`` + ``detector_pixel_um``; a known ring (``calibration_phase`` +
    ``calibration_hkl``, or ``calibration_d_A``, or ``calibration_ring`` = {phase, hkl | d_A})
    found in the first frame; the movie's own 1/nm calibration.

    Other options: ``phases`` (None = every library phase whose strong rings are seen, pruned by
    the fit), ``phase_files``/``library_file`` (extra YAML/CSV/CIF phases), q range, ``bin_px``,
    ``oversample`` (pixel splitting), ``statistic`` ('mean' | 'median'), mask options
    (``saturation``, ``edge_px``, ``mask_beam_stop``), ``center_mode`` ('per_frame' | 'smoothed' |
    'fixed' with ``center_yx``), ellipticity (fitted, or fixed by ``ellipticity`` +
    ``ellipticity_angle_deg``), ring detection (``min_snr``, ``baseline_width_px``,
    ``split_close_rings``, ``ring_tol_A``), Scherrer (``instrumental_fwhm_q_nm_inv``; default the
    sampling width) and onsets (``onset_threshold``, ``onset_persist_frames``).
    """

    kind = "rings"

    phases: list | None = None
    phase_files: list = field(default_factory=list)
    library_file: str | None = None
    pixel_size_inv_nm: float | None = None
    camera_length_mm: float | None = None
    voltage_kv: float | None = None
    detector_pixel_um: float | None = None
    calibration_phase: str | None = None
    calibration_hkl: str | None = None
    calibration_d_A: float | None = None
    calibration_ring: dict | None = None
    q_min_nm_inv: float | None = None
    q_max_nm_inv: float | None = None
    bin_px: float = 0.5
    oversample: int = 2
    statistic: str = "mean"
    saturation: float | None = None
    edge_px: int = 2
    mask_beam_stop: bool = True
    center_mode: str = "per_frame"
    center_yx: list | None = None
    center_smooth_frames: int = 5
    fit_ellipticity: bool = True
    ellipticity: float | None = None
    ellipticity_angle_deg: float | None = None
    ring_tol_A: float = 0.02
    min_snr: float = 5.0
    baseline_width_px: float = 12.0
    split_close_rings: bool = True
    instrumental_fwhm_q_nm_inv: float | None = None
    onset_threshold: float = 0.1
    onset_persist_frames: int = 3
    memory_budget_mb: float | None = None

    def validate(self) -> None:
        def pos(name):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ParameterError(f"recipe: {name} must be a positive number, got {v!r}")
        for n in ("pixel_size_inv_nm", "camera_length_mm", "voltage_kv", "detector_pixel_um", "calibration_d_A",
                  "q_min_nm_inv", "q_max_nm_inv", "bin_px", "ring_tol_A", "min_snr", "baseline_width_px"):
            pos(n)
        if self.center_mode not in CENTER_MODES:
            raise ParameterError(f"recipe: center_mode must be one of {CENTER_MODES}, got {self.center_mode!r}")
        if self.statistic not in ("mean", "median"):
            raise ParameterError(f"recipe: statistic must be 'mean' or 'median', got {self.statistic!r}")
        if not (1 <= int(self.oversample) <= 8):
            raise ParameterError(f"recipe: oversample must be 1..8, got {self.oversample}")
        if (self.q_min_nm_inv and self.q_max_nm_inv) and self.q_min_nm_inv >= self.q_max_nm_inv:
            raise ParameterError("recipe: q_min_nm_inv must be below q_max_nm_inv")
        if self.center_mode == "fixed" and self.center_yx is not None and len(self.center_yx) != 2:
            raise ParameterError("recipe: center_yx must be [row, col]")
        if not (0 < self.onset_threshold < 1):
            raise ParameterError(f"recipe: onset_threshold must be in (0, 1), got {self.onset_threshold}")
        if self.camera_length_mm is not None and (self.voltage_kv is None or self.detector_pixel_um is None):
            raise ParameterError("recipe: camera_length_mm needs voltage_kv and detector_pixel_um too")
        if self.calibration_ring is not None:
            ring = self.calibration_ring
            if not isinstance(ring, dict) or not ({"phase", "d_A", "hkl"} & set(ring)):
                raise ParameterError("recipe: calibration_ring must be a mapping like {'phase': 'beta-Sn', "
                                     "'hkl': '200'} or {'phase': 'beta-Sn', 'd_A': 2.916}")
            # One spelling inside: the ring's fields fill the flat calibration_* options.
            self.calibration_phase = ring.get("phase") or self.calibration_phase
            self.calibration_hkl = ring.get("hkl") or self.calibration_hkl
            if ring.get("d_A") is not None:
                self.calibration_d_A = float(ring["d_A"])
        if self.phases is not None and isinstance(self.phases, str):
            self.phases = [p.strip() for p in self.phases.split(",") if p.strip()]


@dataclass
class RingsResult:
    """Everything ``run_rings`` measured (arrays per frame along axis 0)."""

    recipe: RingsRecipe
    path: str
    time_s: np.ndarray
    q_nm_inv: np.ndarray
    profiles: np.ndarray
    background: np.ndarray
    centers_yx: np.ndarray
    center_residual_px: np.ndarray
    masked_fraction: np.ndarray
    ellipticity: float
    ellipticity_angle_deg: float
    calibration: dict
    rings: list
    ring_matches: list
    phases: list
    fractions: dict
    phase_weights: dict
    onsets_s: dict
    fwhm_q_nm_inv: dict
    components: dict
    problems: list
    library_sources: dict

    def to_json(self) -> dict:
        inst = self.calibration.get("instrumental_fwhm_q_nm_inv", 0.0)
        peaks = []
        for tr, m in zip(self.rings, self.ring_matches):
            dd = 10.0 / tr.q_nm_inv
            peaks.append({
                "d_A": dd, "q_nm_inv": tr.q_nm_inv, "d_err_A": dd * tr.q_err_nm_inv / tr.q_nm_inv,
                "fwhm_q_nm_inv": tr.fwhm_q_nm_inv,
                "scherrer_size_nm": None if m.get("blend") else tr.scherrer_size_nm(instrumental_fwhm_q_nm_inv=inst),
                "blend_of_reflections": bool(m.get("blend", False)),
                "intensity": tr.intensity, "phase": m.get("phase"), "hkl": m.get("hkl"),
                "d_ref_A": m.get("d_ref_A"), "candidates": m.get("candidates", []),
                "split_from_overlap": tr.split_from is not None,
                "frames_detected": tr.frames.size,
            })
        return {
            "kind": "rings",
            "temtrack_version": temtrack.__version__,
            "source": {"path": self.path, "n_frames": int(self.time_s.size)},
            "recipe": self.recipe.to_dict(),
            "calibration": self.calibration,
            "geometry": {"center_yx": self.centers_yx, "center_residual_px": self.center_residual_px,
                         "ellipticity": self.ellipticity, "ellipticity_angle_deg": self.ellipticity_angle_deg,
                         "masked_fraction": self.masked_fraction},
            "rings": {"time_s": self.time_s, "peaks": peaks,
                      "scherrer_K": rg.SCHERRER_K,
                      "intensity_unit": "ring area in the azimuthal-mean profile (counts/px x 1/nm)",
                      "scherrer_definition": ("L = K / FWHM_q with q = 1/d, K = 0.9, instrumental FWHM "
                                              "removed in quadrature")},
            "phases": self.fractions,
            "phase_weights": self.phase_weights,
            "phase_fwhm_q_nm_inv": self.fwhm_q_nm_inv,
            "phase_fraction_definition": ("fraction of diffracted intensity from NNLS of library profiles; "
                                          "background and halos are separate components"),
            "onsets_s": self.onsets_s,
            "onset_definition": pf.ONSET_DEFINITION,
            "onset_threshold": self.recipe.onset_threshold,
            "onset_persist_frames": self.recipe.onset_persist_frames,
            "phase_library": self.library_sources,
            "problems": self.problems,
        }


# -- calibration --------------------------------------------------------------------------------
def electron_wavelength_nm(voltage_kv: float) -> float:
    """Relativistic electron wavelength in nm."""
    h, m0, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    V = voltage_kv * 1e3
    return h / np.sqrt(2 * m0 * e * V * (1 + e * V / (2 * m0 * c * c))) * 1e9


def pixel_size_from_camera(camera_length_mm: float, voltage_kv: float, detector_pixel_um: float) -> float:
    """1/nm per detector pixel: q = r / (lambda L) in the small-angle limit."""
    for name, v in (("camera_length_mm", camera_length_mm), ("voltage_kv", voltage_kv),
                    ("detector_pixel_um", detector_pixel_um)):
        if not (v is not None and np.isfinite(v) and v > 0):
            raise ParameterError(f"{name} must be a positive number, got {v!r}")
    per_m = (detector_pixel_um * 1e-6) / (electron_wavelength_nm(voltage_kv) * 1e-9 * camera_length_mm * 1e-3)
    return float(per_m * 1e-9)


def calibrate_from_ring(r_px, heights, library: PhaseLibrary, *, phase: str | None, hkl: str | None,
                        d_A: float | None, match_px: float = 1.5) -> float:
    """1/nm per px from a known ring among peaks found at radii ``r_px``.

    With a phase, every observed peak is tried as the known ring and the scale that makes most of
    the phase's other strong rings land on observed peaks wins; with only ``d_A``, the strongest
    peak is the known ring.
    """
    r = np.asarray(r_px, dtype=np.float64)
    h = np.asarray(heights, dtype=np.float64)
    if r.size == 0:
        raise AnalysisError("no rings found in the first frame to calibrate from")
    if phase is None:
        if d_A is None:
            raise ParameterError("a known-ring calibration needs calibration_phase (+ hkl) or calibration_d_A")
        return 10.0 / d_A / r[np.argmax(h)]
    ph = library[phase]
    if hkl is not None:
        if hkl not in ph.hkl:
            raise ParameterError(f"calibration ring {hkl} is not a ring of {phase}; rings: {', '.join(ph.hkl[:12])}")
        q_ref = ph.q_nm_inv[ph.hkl.index(hkl)]
    elif d_A is not None:
        q_ref = 10.0 / d_A
    else:
        q_ref = ph.q_nm_inv[np.argmax(ph.intensity)]
    strong = ph.intensity >= 10
    order = np.argsort(-h)[:15]
    best, best_score = None, -1.0
    for i in order:
        s = q_ref / r[i]
        rr = ph.q_nm_inv[strong] / s
        inside = (rr > r.min() - match_px) & (rr < r.max() + match_px)
        hit = np.array([np.min(np.abs(r - x)) < match_px for x in rr[inside]], dtype=bool)
        # Strong rings predicted inside the observed range but missing count against the scale.
        inten = ph.intensity[strong][inside]
        score = float(np.sum(inten[hit]) - np.sum(inten[~hit])) if hit.size else 0.0
        if score > best_score:
            best, best_score = s, score
    return float(best)


def _resolve_calibration(movie: Movie, recipe: RingsRecipe, library, frame0, center0, mask0,
                         ellipticity, angle) -> dict:
    if recipe.pixel_size_inv_nm:
        return {"pixel_size_inv_nm": float(recipe.pixel_size_inv_nm), "method": "user pixel size"}
    if recipe.camera_length_mm:
        p = pixel_size_from_camera(recipe.camera_length_mm, recipe.voltage_kv, recipe.detector_pixel_um)
        return {"pixel_size_inv_nm": p, "method": "camera length",
                "camera_length_mm": recipe.camera_length_mm, "voltage_kv": recipe.voltage_kv,
                "wavelength_nm": electron_wavelength_nm(recipe.voltage_kv),
                "detector_pixel_um": recipe.detector_pixel_um}
    if recipe.calibration_phase or recipe.calibration_d_A:
        r, prof = radial_profile(frame0, center_yx=center0, pixel_size_inv_nm=1.0, mask=mask0,
                                 ellipticity=ellipticity, ellipticity_angle_deg=angle, oversample=recipe.oversample,
                                 q_edges_nm_inv=np.arange(0.08 * min(frame0.shape),
                                                          min(center0[0], center0[1], frame0.shape[0] - 1 - center0[0],
                                                              frame0.shape[1] - 1 - center0[1]), 0.5))
        pk = rg.find_ring_peaks(r, prof, min_snr=recipe.min_snr)
        ok = np.isfinite(pk[:, 0])
        p = calibrate_from_ring(pk[ok, 0], pk[ok, 3], library, phase=recipe.calibration_phase,
                                hkl=recipe.calibration_hkl, d_A=recipe.calibration_d_A)
        return {"pixel_size_inv_nm": p, "method": "known ring in frame 0",
                "phase": recipe.calibration_phase, "hkl": recipe.calibration_hkl, "d_A": recipe.calibration_d_A}
    if movie.pixel_unit == "1/nm" and movie.pixel_size:
        return {"pixel_size_inv_nm": float(movie.pixel_size), "method": "file"}
    if movie.pixel_unit == "nm":
        raise ParameterError(f"{movie.path}: the movie is calibrated in nm (an image), not 1/nm; give a "
                             "diffraction calibration (pixel_size_inv_nm, camera length or a known ring)")
    raise ParameterError(f"{movie.path}: no diffraction calibration; give pixel_size_inv_nm, "
                         "camera_length_mm + voltage_kv + detector_pixel_um, or a known ring")


# -- per-frame chunk function ------------------------------------------------------------------
def _rings_chunk(block, start, *, center0, centers, ellipticity, angle, q_edges, pixel_size,
                 oversample, statistic, saturation, edge_px, beam_stop, refine, r_band, min_snr,
                 baseline_hw, integrate=True):
    n = block.shape[0]
    m = q_edges.size - 1
    prof = np.full((n, m), np.nan)
    peaks = np.full((n, MAX_PEAKS, 4), np.nan)
    cen = np.zeros((n, 2))
    res = np.full(n, np.nan)
    masked = np.zeros(n)
    for i in range(n):
        f = block[i]
        c_guess = center0 if centers is None else centers[start + i]
        mask = detect_mask(f, saturation=saturation, edge_px=edge_px, center_yx=c_guess,
                           dark_fraction=0.25 if beam_stop else 0.0)
        masked[i] = 1.0 - mask.mean()
        if refine and centers is None:
            out = refine_center(f, center_yx=c_guess, mask=mask, r_min_px=r_band[0], r_max_px=r_band[1],
                                ellipticity=ellipticity, ellipticity_angle_deg=angle, fit_ellipticity=False,
                                iterations=3)
            c = out["center_yx"]
            res[i] = out["residual_px"]
        else:
            c = tuple(c_guess)
        cen[i] = c
        if not integrate:
            continue
        bins = radial_bins(f.shape, center_yx=c, pixel_size_inv_nm=pixel_size, q_edges_nm_inv=q_edges,
                           ellipticity=ellipticity, ellipticity_angle_deg=angle, mask=mask, oversample=oversample)
        prof[i] = azimuthal_average(f, bins, statistic=statistic)
        peaks[i] = rg.find_ring_peaks(bins.q_nm_inv, prof[i], max_peaks=MAX_PEAKS, min_snr=min_snr,
                                      baseline_half_width_bins=baseline_hw)
    return {"profile": prof, "peaks": peaks, "center": cen, "residual": res, "masked": masked}


def _geometry(movie: Movie, recipe: RingsRecipe):
    """Centre of frame 0 and the (global) ellipticity from up to three frames."""
    idx = sorted({0, movie.n_frames // 4, movie.n_frames // 2, (3 * movie.n_frames) // 4, movie.n_frames - 1})
    es, angs, cens, wts = [], [], [], []
    for i in idx:
        f = movie.frame(i)
        mask = detect_mask(f, saturation=recipe.saturation, edge_px=recipe.edge_px,
                           dark_fraction=0.25 if recipe.mask_beam_stop else 0.0)
        init = tuple(recipe.center_yx) if recipe.center_yx is not None else None
        mask = detect_mask(f, saturation=recipe.saturation, edge_px=recipe.edge_px,
                           center_yx=init or _coarse(f, mask),
                           dark_fraction=0.25 if recipe.mask_beam_stop else 0.0)
        fit_e = recipe.fit_ellipticity and recipe.ellipticity is None
        out = find_center(f, mask=mask, initial_yx=init, fit_ellipticity=fit_e,
                          ellipticity=recipe.ellipticity or 0.0,
                          ellipticity_angle_deg=recipe.ellipticity_angle_deg or 0.0)
        # Frames with few sharp rings (halo-dominated) measure the ellipse poorly: weight by the
        # inverse square of the residual sector shifts.
        wts.append(1.0 / max(out["residual_px"], 1e-3) ** 2 if np.isfinite(out["residual_px"]) else 0.0)
        es.append(out["ellipticity"])
        angs.append(out["ellipticity_angle_deg"])
        cens.append(out["center_yx"])
        if i == 0:
            frame0, mask0 = f, mask
    # Average the ellipse as a 2-theta vector (angles wrap at 180 degrees).
    w = np.asarray(wts) if sum(wts) > 0 else np.ones(len(wts))
    v = np.sum(w * np.array([e * np.exp(2j * np.radians(a)) for e, a in zip(es, angs)])) / w.sum()
    return frame0, mask0, tuple(cens[0]), float(abs(v)), float(np.degrees(np.angle(v)) / 2 % 180)


def _coarse(f, mask):
    from temtrack.frame.diffraction_center import coarse_center
    return coarse_center(f, mask=mask)


def run_rings(movie: Movie, recipe: RingsRecipe | None = None, *, executor=None,
              progress: Callable[[int, int], None] | None = None,
              cancel: threading.Event | None = None, library: PhaseLibrary | None = None) -> RingsResult:
    """Analyse an in situ SAED movie: rings, phase fractions and onsets over time.

    Parameters
    ----------
    movie : Movie
    recipe : RingsRecipe, optional
    executor : LocalExecutor or DaskExecutor, optional
    progress : callable, optional
        ``progress(frames_done, n_frames)``.
    cancel : threading.Event, optional
    library : PhaseLibrary, optional
        Default: the built-in library plus ``recipe.phase_files``.

    Returns
    -------
    RingsResult
    """
    recipe = recipe or RingsRecipe()
    recipe.validate()
    lib = library or load_library(list(recipe.phase_files) + ([recipe.library_file] if recipe.library_file else []))
    for name in recipe.phases or ():
        lib[name]  # noqa: B018 - an unknown phase fails here, before any frame is read
    problems = list(movie.problems)
    if movie.times_s is None:
        time_s = np.arange(movie.n_frames, dtype=np.float64)
        problems.append("no frame timing: times are frame numbers")
    else:
        time_s = np.asarray(movie.times_s, dtype=np.float64)
    frame0, mask0, center0, ell, ang = _geometry(movie, recipe)
    if recipe.ellipticity is not None:
        ell, ang = float(recipe.ellipticity), float(recipe.ellipticity_angle_deg or 0.0)
    if recipe.center_mode == "fixed" and recipe.center_yx is not None:
        center0 = tuple(map(float, recipe.center_yx))
    calib = _resolve_calibration(movie, recipe, lib, frame0, center0, mask0, ell, ang)
    p = calib["pixel_size_inv_nm"]
    inst = recipe.instrumental_fwhm_q_nm_inv
    calib["sampling_fwhm_q_nm_inv"] = rg.sampling_fwhm_q_nm_inv(p, recipe.bin_px, int(recipe.oversample))
    calib["instrumental_fwhm_q_nm_inv"] = calib["sampling_fwhm_q_nm_inv"] if inst is None else float(inst)

    rows, cols = movie.frame_shape
    r_edge = min(center0[0], center0[1], rows - 1 - center0[0], cols - 1 - center0[1]) - 4
    r_min = 0.08 * min(rows, cols)
    q_lo = recipe.q_min_nm_inv or r_min * p
    q_hi = min(recipe.q_max_nm_inv or np.inf, r_edge * p)
    if q_hi <= q_lo:
        raise ParameterError(f"q range {q_lo:.3g}..{q_hi:.3g} 1/nm is empty for this frame and calibration")
    q_edges = np.arange(q_lo, q_hi, recipe.bin_px * p)
    # SNIP half-window in bins: features broader than ~baseline_width_px go to the baseline, so
    # Bragg rings may be up to 2/3 of it wide (FWHM).
    baseline_hw = max(4, int(round(recipe.baseline_width_px / recipe.bin_px)))
    max_ring_fwhm = (2.0 / 3.0) * recipe.baseline_width_px * p
    common = dict(center0=center0, ellipticity=ell, angle=ang, q_edges=q_edges, pixel_size=p,
                  oversample=int(recipe.oversample), statistic=recipe.statistic, saturation=recipe.saturation,
                  edge_px=recipe.edge_px, beam_stop=recipe.mask_beam_stop,
                  r_band=(r_min, r_edge - 2), min_snr=recipe.min_snr, baseline_hw=baseline_hw)
    n = movie.n_frames
    budget = None if recipe.memory_budget_mb is None else int(recipe.memory_budget_mb * 2 ** 20)
    if recipe.center_mode == "smoothed":
        half = progress and (lambda d, t: progress(d // 2, n))
        first = map_frames(movie, functools.partial(_rings_chunk, centers=None, refine=True, integrate=False, **common),
                           executor=executor, progress=half, cancel=cancel, memory_budget_bytes=budget)
        from scipy.ndimage import median_filter
        k = max(1, int(recipe.center_smooth_frames))
        cen = np.stack([median_filter(first["center"][:, j], size=k, mode="nearest") for j in range(2)], axis=1)
        second = (lambda d, t: progress(n // 2 + d // 2, n)) if progress else None
        out = map_frames(movie, functools.partial(_rings_chunk, centers=cen, refine=False, **common),
                         executor=executor, progress=second, cancel=cancel, memory_budget_bytes=budget)
        out["residual"] = first["residual"]
    else:
        out = map_frames(movie, functools.partial(_rings_chunk, centers=None,
                                                  refine=recipe.center_mode == "per_frame", **common),
                         executor=executor, progress=progress, cancel=cancel, memory_budget_bytes=budget)
    q = 0.5 * (q_edges[1:] + q_edges[:-1])
    profiles = out["profile"]
    masked = float(np.mean(out["masked"]))
    if masked > 0.2:
        problems.append(f"{masked:.0%} of the pixels are masked (saturated, beam stop, edges): rings in "
                        "saturated regions are lost; record with a lower dose or a deeper bit depth")
    if np.nanmax(out["residual"], initial=0.0) > 0.3:
        problems.append("the pattern centre is uncertain in some frames (sector shifts > 0.3 px after the fit)")

    # Rings: link per-frame peaks, refine jointly over time, split overlapping pairs.
    tol = max(3 * recipe.bin_px * p, 0.004 * np.nanmedian(q))
    min_len = int(np.clip(n // 8, 3, 8)) if n >= 3 else 1
    tracks = rg.link_peaks(out["peaks"], tol_q_nm_inv=tol, max_gap=2, min_length=min_len)
    rings = rg.refine_tracks(q, profiles, tracks, baseline_half_width_bins=baseline_hw,
                             split=recipe.split_close_rings, max_fwhm_q_nm_inv=max_ring_fwhm)
    rings = [r for r in rings if np.isfinite(r.q_nm_inv) and rg.intensity_snr(r.intensity) >= recipe.min_snr]

    # Phases: user's list, else those whose strong rings are observed (+ halos kept by the fit).
    if recipe.phases:
        names = list(recipe.phases)
        auto = False
    else:
        names = pf.relevant_phases([r.d_A for r in rings], lib, q_range_nm_inv=(q[0], q[-1]),
                                   tol_A=recipe.ring_tol_A, ring_fwhm_q_nm_inv=[r.fwhm_q_nm_inv for r in rings])
        names += [ph.name for ph in lib if ph.is_amorphous and ph.rings_in(q[0], q[-1]).size
                  and ph.name not in names]
        auto = True
    strong_idx = np.argsort([-np.nanmax(np.abs(r.intensity)) for r in rings])
    widths = np.array([r.fwhm_q_nm_inv for r in rings])
    default_w = float(np.nanmedian(widths)) if widths.size else 3 * p
    matches0 = pf.match_rings([r.d_A for r in rings], lib, phases=[x for x in names if not lib[x].is_amorphous],
                              tol_A=recipe.ring_tol_A)
    fwhm = {}
    for nme in names:
        if lib[nme].is_amorphous:
            continue
        w = [rings[i].fwhm_q_nm_inv for i in strong_idx if matches0[i] and matches0[i][0]["phase"] == nme]
        fwhm[nme] = float(np.median(w)) if w else default_w
    if not names:
        raise AnalysisError(f"{movie.path}: no library phase matches the observed rings "
                            f"(d = {', '.join(f'{r.d_A:.3f}' for r in rings[:10])} A); "
                            "name phases or extend the library")
    fit = pf.fit_phase_fractions(q, profiles, lib, names, fwhm_q_nm_inv=fwhm)
    if auto and len(names) > 1:
        keep = [nme for nme in names if np.nanmax(fit["fractions"][nme]) >= 0.05]
        if keep and keep != names:
            names = keep
            fit = pf.fit_phase_fractions(q, profiles, lib, names,
                                         fwhm_q_nm_inv={k: v for k, v in fwhm.items() if k in names})
    fractions = fit["fractions"]
    onsets = pf.onset_times(time_s, fractions, threshold=recipe.onset_threshold,
                            persist_frames=recipe.onset_persist_frames)
    matches = _assign_rings(rings, lib, names, fit["weights"], recipe.ring_tol_A)
    return RingsResult(recipe=recipe, path=str(movie.path), time_s=time_s, q_nm_inv=q, profiles=profiles,
                       background=fit["background"], centers_yx=out["center"],
                       center_residual_px=out["residual"], masked_fraction=out["masked"],
                       ellipticity=ell, ellipticity_angle_deg=ang, calibration=calib, rings=rings,
                       ring_matches=matches, phases=names, fractions=fractions,
                       phase_weights=fit["weights"], onsets_s=onsets, fwhm_q_nm_inv=fwhm,
                       components=fit["components"], problems=problems,
                       library_sources={n_: lib[n_].source for n_ in names})


def _assign_rings(rings, lib, names, weights, tol_A):
    """Best library ring for each measured ring: close in d and rising/falling with its phase."""
    cryst = [n for n in names if not lib[n].is_amorphous]
    cands_all = pf.match_rings([r.d_A for r in rings], lib, tol_A=tol_A)
    out = []
    for r, cands in zip(rings, cands_all):
        best, best_score = {}, -np.inf
        for c in cands:
            if c["phase"] not in cryst:
                continue
            w = weights[c["phase"]]
            ok = np.isfinite(r.intensity) & np.isfinite(w)
            corr = 0.0
            if ok.sum() > 2 and np.std(r.intensity[ok]) > 0 and np.std(w[ok]) > 0:
                corr = float(np.corrcoef(r.intensity[ok], w[ok])[0, 1])
            score = corr - 0.5 * abs(c["delta_A"]) / tol_A + 0.002 * c["intensity"]
            if score > best_score:
                best, best_score = dict(c, time_correlation=corr), score
        if not best:
            best = _blend(r, lib, cryst, weights)
        out.append({**best, "candidates": [dict(phase=c["phase"], hkl=c["hkl"], d_ref_A=c["d_ref_A"])
                                           for c in cands[:5]]})
    return out


def _blend(ring, lib, cryst, weights):
    """A ring wider than its neighbours' spacing may be two reflections of one phase (same time
    evolution, so not split): label it 'h1k1l1+h2k2l2' when one phase has several rings within
    0.75 FWHM and their intensity-weighted d lies within 0.25 FWHM of the measured ring."""
    best, best_corr = {}, -np.inf
    q0, half = ring.q_nm_inv, 0.75 * ring.fwhm_q_nm_inv
    for name in cryst:
        ph = lib[name]
        sel = np.flatnonzero((np.abs(ph.q_nm_inv - q0) <= half) & (ph.intensity >= 1.0))
        if sel.size < 2:
            continue
        w = ph.intensity[sel]
        q_mean = float(np.sum(w * ph.q_nm_inv[sel]) / w.sum())
        if abs(q_mean - q0) > 0.25 * ring.fwhm_q_nm_inv:
            continue
        ok = np.isfinite(ring.intensity) & np.isfinite(weights[name])
        corr = 0.0
        if ok.sum() > 2 and np.std(ring.intensity[ok]) > 0 and np.std(weights[name][ok]) > 0:
            corr = float(np.corrcoef(ring.intensity[ok], weights[name][ok])[0, 1])
        if corr > best_corr:
            best_corr = corr
            best = {"phase": name, "hkl": "+".join(ph.hkl[j] for j in sel), "d_ref_A": 10.0 / q_mean,
                    "delta_A": ring.d_A - 10.0 / q_mean, "blend": True, "time_correlation": corr}
    return best


def write_rings_results(result: RingsResult, out_dir, *, overwrite: bool = False) -> Path:
    """Write ``results.json``, CSVs, the q-t map (.npy) and PNG plots into ``out_dir`` atomically."""
    import io

    from temtrack.io.results import (OutputFolder, save_figure_atomic, save_npy_atomic, write_bytes_atomic,
                                     write_csv_atomic, write_json_atomic)
    from temtrack.plots import rings as plots

    out_dir = Path(out_dir)
    with OutputFolder(out_dir, overwrite=overwrite) as stage:
        write_json_atomic(stage / "results.json", result.to_json())
        save_npy_atomic(stage / "qt_map.npy", result.profiles.astype(np.float32))
        save_npy_atomic(stage / "qt_background.npy", result.background.astype(np.float32))
        # Each phase's fitted share of the q-t map (the amorphous halo among them).
        buf = io.BytesIO()
        np.savez_compressed(buf, q_nm_inv=result.q_nm_inv, time_s=result.time_s, background=result.background,
                            **{f"phase_{k}": v.astype(np.float32) for k, v in result.components.items()})
        write_bytes_atomic(stage / "qt_components.npz", buf.getvalue())
        write_csv_atomic(stage / "qt_axes_q.csv", {"q_nm_inv": result.q_nm_inv.tolist(),
                                                    "d_A": (10.0 / result.q_nm_inv).tolist()})
        cols = {"frame": list(range(result.time_s.size)), "time_s": result.time_s.tolist()}
        for nme, f in result.fractions.items():
            cols[nme] = np.asarray(f, dtype=float).tolist()
        cols["center_y_px"] = result.centers_yx[:, 0].tolist()
        cols["center_x_px"] = result.centers_yx[:, 1].tolist()
        write_csv_atomic(stage / "phase_fractions.csv", cols)
        tr_cols = {k: [] for k in ("ring", "d_A", "q_nm_inv", "phase", "hkl", "frame", "time_s",
                                    "intensity", "peak_q_nm_inv")}
        for k, (tr, m) in enumerate(zip(result.rings, result.ring_matches)):
            per = dict(zip(tr.frames.tolist(), tr.q_frames_nm_inv.tolist()))
            for i, t in enumerate(result.time_s):
                tr_cols["ring"].append(k)
                tr_cols["d_A"].append(float(tr.d_A))
                tr_cols["q_nm_inv"].append(float(tr.q_nm_inv))
                tr_cols["phase"].append(m.get("phase") or "")
                tr_cols["hkl"].append(m.get("hkl") or "")
                tr_cols["frame"].append(i)
                tr_cols["time_s"].append(float(t))
                tr_cols["intensity"].append(float(tr.intensity[i]))
                tr_cols["peak_q_nm_inv"].append(float(per.get(i, np.nan)))
        write_csv_atomic(stage / "ring_tracks.csv", tr_cols)
        save_figure_atomic(plots.qt_map_figure(result), stage / "qt_map.png", dpi=110)
        save_figure_atomic(plots.phase_fractions_figure(result), stage / "phase_fractions.png", dpi=110)
        save_figure_atomic(plots.ring_d_figure(result), stage / "ring_d_vs_time.png", dpi=110)
    return out_dir
