r"""Many particles over a movie: detection, per-frame fits with kept identity, and per-particle series.

Why hand-written: frame-by-frame segmentation plus linking (trackpy, btrack) loses identity exactly
where it matters here. Particles that swell merge with their neighbours in a threshold mask, thin
reacted shells fall below a threshold at low dose, and a cracking particle becomes two objects.
Instead the particles are found *once* on the drift-aligned mean of the first frames (high signal,
pristine, well separated), and every frame is measured at each particle's drifted position by the
projected-sphere fit of :mod:`temtrack.frame.particles`, with neighbours masked out (power-diagram
cells, then each neighbour's own fitted disk divided out and masked). Identity is therefore fixed
by construction through drift and growth.

Definitions (recorded in ``results.json``)
------------------------------------------
* ``area_nm2``: projected area :math:`\pi R^2` of the fitted outer radius, regularised along the
  track (:func:`regularise_radius`: each frame's fit is independent, so its shot noise is averaged
  along straight pieces of :math:`R(t)` while the corner at the onset and a break at cracking are
  kept); ``area_frame_nm2`` is each frame's own fit.
* ``equivalent_diameter_nm``: :math:`2\sqrt{A/\pi}`.
* ``volume_ratio`` :math:`= (A/A_0)^{3/2}` and ``volume_expansion`` :math:`= (A/A_0)^{3/2} - 1`:
  **assumes isotropic swelling** (a sphere that stays a sphere); :math:`A_0` is the median area
  before the onset.
* ``onset_s``: where the straight line through the initial rise of :math:`A(t)` (from 10% to 50% of
  the total change) crosses the pre-onset baseline (tangent construction). None when the area
  never changes by more than :data:`MIN_CHANGE` of :math:`A_0` and 5 times its noise.
* ``expansion_rate``: :func:`temtrack.series.expansion.radial_expansion_rate` of the equivalent
  diameter (radial surface speed, Theil-Sen over the 10-90% swelling period).
* ``core_radius_nm``: radius of the unreacted core (NaN when no core of distinct contrast is seen),
  fitted with the shrinking-core laws of :mod:`temtrack.series.shrinking_core`.
* ``cracked``: the particle shows two or more pieces, or more enclosed holes than before the
  onset, in at least ``crack_persist_frames`` (3) consecutive frames.
"""
from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import ndimage

from temtrack.errors import AnalysisError, ParameterError
from temtrack.frame.particles import (count_fragments, fit_projected_sphere, segment_particles,
                                      sphere_attenuation)
from temtrack.io.movie import Movie
from temtrack.pipeline.executor import map_frames

__all__ = ["ParticlesResult", "track_particles", "detect_particles", "onset_from_area", "crack_flags", "trend_filter",
           "regularise_radius", "ONSET_DEFINITION", "VOLUME_DEFINITION"]

MIN_CHANGE = 0.03
ONSET_DEFINITION = ("time where the straight line through A(t) between 10% and 50% of its total change "
                    "crosses the pre-onset baseline (tangent construction)")
VOLUME_DEFINITION = "volume_ratio = (A/A0)^1.5, volume_expansion = (A/A0)^1.5 - 1 (assumes isotropic swelling)"
_FIELDS = ("y_px", "x_px", "radius_px", "core_radius_px", "radius_err_px", "ok", "n_pieces", "n_holes",
           "background")


@dataclass
class ParticlesResult:
    """Per-particle series of a movie (arrays are (n_frames, n_particles) unless stated).

    Attributes
    ----------
    time_s : ndarray (n_frames,)
    pixel_size_nm : float
    ids : ndarray (n_particles,) of int
    centre0_yx_px : ndarray (n_particles, 2)
        Centres in frame-0 pixel coordinates (from the detection image).
    y_px, x_px : ndarray
        Fitted centres in each frame's own pixel coordinates.
    area_nm2, equivalent_diameter_nm, core_radius_nm, radius_err_nm : ndarray
    volume_ratio, volume_expansion : ndarray
    n_pieces, n_holes : ndarray of int
    fit_ok : ndarray of bool
    onset_s, A0_nm2 : ndarray (n_particles,)
        Onset time (NaN: none) and pre-onset area.
    cracked : ndarray (n_particles,) of bool
    crack_time_s : ndarray (n_particles,)
    expansion_rate : list of dict or None
    shrinking_core : list of dict or None
    drift_dy_px, drift_dx_px : ndarray (n_frames,)
    blur_px : float
        Gaussian blur of the images (px), fitted on the detection image and fixed per frame.
    area_frame_nm2 : ndarray
        Area of each frame's own fit, before the temporal regularisation that gives ``area_nm2``.
    regularisation : float
        Penalty of the temporal regularisation (0: ``area_nm2`` is the per-frame fit).
    problems : list of str
    provenance : dict
        Filled by the pipeline (file, format, recipe, version).
    """

    time_s: np.ndarray
    pixel_size_nm: float
    ids: np.ndarray
    centre0_yx_px: np.ndarray
    y_px: np.ndarray
    x_px: np.ndarray
    area_nm2: np.ndarray
    equivalent_diameter_nm: np.ndarray
    core_radius_nm: np.ndarray
    radius_err_nm: np.ndarray
    volume_ratio: np.ndarray
    volume_expansion: np.ndarray
    n_pieces: np.ndarray
    n_holes: np.ndarray
    fit_ok: np.ndarray
    onset_s: np.ndarray
    A0_nm2: np.ndarray
    cracked: np.ndarray
    crack_time_s: np.ndarray
    expansion_rate: list
    shrinking_core: list
    drift_dy_px: np.ndarray
    drift_dx_px: np.ndarray
    blur_px: float
    drift_source: str = "estimated"
    area_frame_nm2: np.ndarray | None = None
    regularisation: float = 0.0
    problems: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    @property
    def n_particles(self) -> int:
        return int(self.ids.size)

    def final_volume_expansion(self, n_last: int = 3) -> np.ndarray:
        """Median volume expansion over the last ``n_last`` frames, per particle."""
        with np.errstate(all="ignore"):
            return np.nanmedian(self.volume_expansion[-n_last:], axis=0)

    def particle_dicts(self) -> list[dict]:
        """The ``particles`` list of ``results.json`` (one dict per particle)."""
        out = []
        final = self.final_volume_expansion()
        for k in range(self.n_particles):
            d0 = 2 * math.sqrt(self.A0_nm2[k] / math.pi) if np.isfinite(self.A0_nm2[k]) else float("nan")
            out.append({
                "id": int(self.ids[k]),
                "time_s": self.time_s,
                "area_nm2": self.area_nm2[:, k],
                "area_frame_nm2": (self.area_nm2 if self.area_frame_nm2 is None else self.area_frame_nm2)[:, k],
                "equivalent_diameter_nm": self.equivalent_diameter_nm[:, k],
                "volume_expansion": self.volume_expansion[:, k],
                "onset_s": float(self.onset_s[k]),
                "volume_ratio": self.volume_ratio[:, k],
                "core_radius_nm": self.core_radius_nm[:, k],
                "area_err_nm2": 2 * np.pi * self.equivalent_diameter_nm[:, k] / 2 * self.radius_err_nm[:, k],
                "A0_nm2": float(self.A0_nm2[k]),
                "initial_equivalent_diameter_nm": d0,
                "final_volume_expansion": float(final[k]),
                "expansion_rate_nm_per_s": (None if self.expansion_rate[k] is None
                                            else self.expansion_rate[k].get("rate_nm_per_s")),
                "expansion_rate": self.expansion_rate[k],
                "cracked": bool(self.cracked[k]),
                "crack_time_s": float(self.crack_time_s[k]),
                "n_pieces": self.n_pieces[:, k],
                "n_holes": self.n_holes[:, k],
                "centre0_yx_px": self.centre0_yx_px[k],
                "centre_y_px": self.y_px[:, k],
                "centre_x_px": self.x_px[:, k],
                "fit_ok": self.fit_ok[:, k],
                "shrinking_core": self.shrinking_core[k],
            })
        return out


# -- per-frame work ------------------------------------------------------------------------------
def _cells(centres: np.ndarray, radii: np.ndarray, yy: np.ndarray, xx: np.ndarray, k: int,
           near: np.ndarray) -> np.ndarray:
    """Pixels of the patch grid whose power distance is smallest for particle ``k`` among ``near``."""
    own = (yy - centres[k, 0]) ** 2 + (xx - centres[k, 1]) ** 2 - radii[k] ** 2
    cell = np.ones(own.shape, bool)
    for j in near:
        cell &= own <= (yy - centres[j, 0]) ** 2 + (xx - centres[j, 1]) ** 2 - radii[j] ** 2
    return cell


def _fragments(patch, fit, weight, extra, yy, xx) -> tuple[int, int]:
    """Pieces and holes of one fitted particle, from its own pixels only (neighbours masked),
    thresholded halfway between the background and the model's intensity at half the radius
    (a crack's gap is near background, the particle's body well below the threshold)."""
    att_half = 2 * fit.radius_px * math.sqrt(0.75) * fit.shell_att_per_px
    thr = fit.background * 0.5 * (1 + math.exp(-att_half))
    rho2 = (yy - fit.y) ** 2 + (xx - fit.x) ** 2
    own = weight & (rho2 <= (fit.radius_px + 2) ** 2)
    img = np.where(own, patch if extra is None else patch * np.exp(extra), fit.background)
    min_area = max(6, int(0.03 * math.pi * fit.radius_px ** 2))
    return count_fragments(img, threshold=thr, min_area_px=min_area, sigma_px=1.0)


def _fit_frame(frame: np.ndarray, centres: np.ndarray, r0: np.ndarray, *, with_core: bool, blur_px: float,
               max_radius_factor: float) -> dict:
    """Fit every particle of one frame at its expected centre; two rounds (cells, then neighbours)."""
    n = centres.shape[0]
    rows, cols = frame.shape
    half = np.ceil(max_radius_factor * r0 + 6).astype(int)
    reach = max_radius_factor * r0 + 4
    dist = np.hypot(centres[:, None, 0] - centres[None, :, 0], centres[:, None, 1] - centres[None, :, 1])
    near = [np.flatnonzero((dist[k] < reach[k] + reach) & (np.arange(n) != k)) for k in range(n)]
    out = {f: np.full(n, np.nan) for f in _FIELDS}
    fits = [None] * n
    boxes = []
    for k in range(n):
        cy, cx = centres[k]
        y0, y1 = max(0, int(cy) - half[k]), min(rows, int(cy) + half[k] + 1)
        x0, x1 = max(0, int(cx) - half[k]), min(cols, int(cx) + half[k] + 1)
        boxes.append((y0, y1, x0, x1))
    for rnd in (0, 1):
        for k in range(n):
            if rnd == 1 and near[k].size == 0:
                continue
            y0, y1, x0, x1 = boxes[k]
            if y1 - y0 < 5 or x1 - x0 < 5:
                continue
            patch = frame[y0:y1, x0:x1]
            yy, xx = np.ogrid[y0:y1, x0:x1]
            extra = None
            if rnd == 0:
                weight = _cells(centres, r0, yy, xx, k, near[k])
                ys, xs, rr = centres[k, 0], centres[k, 1], r0[k]
            else:
                weight = np.ones(patch.shape, bool)
                extra = np.zeros(patch.shape)
                for j in near[k]:
                    fj = fits[j]
                    if fj is None or not np.isfinite(fj.radius_px):
                        weight &= _cells(centres, r0, yy, xx, k, np.array([j]))
                        continue
                    jy, jx = fj.y, fj.x  # frame coordinates
                    extra += sphere_attenuation(patch.shape, y=jy - y0, x=jx - x0, radius_px=fj.radius_px,
                                                shell_att_per_px=fj.shell_att_per_px,
                                                core_radius_px=fj.model_core_radius_px,
                                                core_att_per_px=fj.core_att_per_px)
                    weight &= (yy - jy) ** 2 + (xx - jx) ** 2 > (fj.radius_px + 2 * blur_px + 0.5) ** 2
                f0 = fits[k]
                ys, xs, rr = (f0.y, f0.x, f0.radius_px) if f0 is not None else (centres[k, 0], centres[k, 1], r0[k])
            try:
                # The first round only models neighbours when a second round follows.
                core_now = with_core and (rnd == 1 or near[k].size == 0)
                fit = fit_projected_sphere(patch, y0=ys - y0, x0=xs - x0, r0=float(rr), weight=weight,
                                           with_core=core_now, extra_attenuation=extra, blur_px=blur_px,
                                           max_radius_factor=max_radius_factor * r0[k] / float(rr))
            except ParameterError:
                continue
            fit.y += y0
            fit.x += x0
            fits[k] = fit
            n_pieces, n_holes = _fragments(patch, fit, weight, extra, yy, xx)
            out["n_pieces"][k], out["n_holes"][k] = n_pieces, n_holes
            out["y_px"][k], out["x_px"][k] = fit.y, fit.x
            out["radius_px"][k], out["core_radius_px"][k] = fit.radius_px, fit.core_radius_px
            out["radius_err_px"][k], out["ok"][k] = fit.radius_err_px, float(fit.ok)
            out["background"][k] = fit.background
    return out


def _fit_chunk(block: np.ndarray, start: int, *, centres0: np.ndarray, r0: np.ndarray, dy: np.ndarray,
               dx: np.ndarray, with_core: bool, blur_px: float, max_radius_factor: float, invert: bool) -> dict:
    """Chunk function for :func:`map_frames`: one row per frame, one column per particle."""
    n_f = block.shape[0]
    res = {f: np.full((n_f, centres0.shape[0]), np.nan) for f in _FIELDS}
    for i in range(n_f):
        frame = block[i].astype(np.float64)
        if invert:
            frame = _invert(frame)
        g = start + i
        centres = centres0 + np.array([dy[g], dx[g]])
        out = _fit_frame(frame, centres, r0, with_core=with_core, blur_px=blur_px,
                         max_radius_factor=max_radius_factor)
        for f in _FIELDS:
            res[f][i] = out[f]
    return res


def _invert(frame: np.ndarray) -> np.ndarray:
    # Dark-field (bright particles): mirror the counts about the background so the absorption model
    # applies; an approximation (the noise keeps the background's Poisson variance).
    bg = float(np.median(frame))
    return np.clip(2 * bg - frame, 0.0, None)


# -- detection -----------------------------------------------------------------------------------
def _aligned_sum(movie: Movie, k: int, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    block = movie.read(0, k).astype(np.float64)
    acc = np.zeros(block.shape[1:])
    for i in range(k):
        acc += ndimage.shift(block[i], (-dy[i], -dx[i]), order=1, mode="nearest")
    return acc


def _detect(sum_img: np.ndarray, k: int, polarity: str, min_radius_px: float):
    from skimage.measure import regionprops

    labels = segment_particles(sum_img / k, polarity=polarity, min_area_px=max(12, int(math.pi * min_radius_px ** 2)),
                               min_separation_px=max(4.0, min_radius_px))
    props = regionprops(labels)
    if not props:
        raise AnalysisError("no particles found in the mean of the first frames")
    centres = np.array([p.centroid for p in props], dtype=float)
    radii = np.array([math.sqrt(p.area / math.pi) for p in props], dtype=float)
    img = _invert(sum_img) if polarity == "bright" else sum_img
    # Fit with free blur on the high-dose sum; the median blur is then fixed for every frame.
    return centres, radii, _fit_free_blur(img, centres, radii)


def _fit_free_blur(img, centres, radii):
    n = centres.shape[0]
    rows, cols = img.shape
    res = {"y": np.full(n, np.nan), "x": np.full(n, np.nan), "r": np.full(n, np.nan), "blur": np.full(n, np.nan)}
    reach = 1.3 * radii + 4
    for k in range(n):
        half = int(math.ceil(1.3 * radii[k] + 6))
        cy, cx = centres[k]
        y0, y1 = max(0, int(cy) - half), min(rows, int(cy) + half + 1)
        x0, x1 = max(0, int(cx) - half), min(cols, int(cx) + half + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        dist = np.hypot(centres[:, 0] - cy, centres[:, 1] - cx)
        near = np.flatnonzero((dist < reach[k] + reach) & (np.arange(n) != k))
        weight = _cells(centres, radii, yy, xx, k, near)
        try:
            f = fit_projected_sphere(img[y0:y1, x0:x1], y0=cy - y0, x0=cx - x0, r0=float(radii[k]), weight=weight,
                                     with_core=False, blur_px=None, max_radius_factor=1.3)
        except ParameterError:
            continue
        if f.ok:
            res["y"][k], res["x"][k], res["r"][k], res["blur"][k] = f.y + y0, f.x + x0, f.radius_px, f.blur_px
    return res


# -- series --------------------------------------------------------------------------------------
def onset_from_area(time_s, area, *, baseline_frames: int = 3, min_change: float = MIN_CHANGE) -> tuple[float, float]:
    """Onset time and pre-onset area of one particle's A(t) (see the module docstring).

    Returns
    -------
    onset_s, A0 : float
        ``onset_s`` is NaN when no swelling is detected; ``A0`` is then the median area of the
        first ``baseline_frames`` frames.
    """
    t = np.asarray(time_s, float)
    a = np.asarray(area, float)
    ok = np.isfinite(a)
    t, a = t[ok], a[ok]
    if a.size < 4:
        return float("nan"), float(np.median(a)) if a.size else float("nan")
    nb = max(1, min(baseline_frames, a.size // 3))
    sm = ndimage.median_filter(a, size=3, mode="nearest")
    a_start = float(np.median(a[:nb]))
    a_end = float(np.median(a[-3:]))
    change = a_end - a_start
    d = np.diff(a)
    noise = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2)
    if not (abs(change) > max(5 * noise, min_change * abs(a_start))):
        return float("nan"), a_start
    prog = (sm - a_start) / change
    # First crossing of 10% that stays above it for 3 frames (or to the end).
    above = prog >= 0.1
    i10 = None
    for i in range(a.size):
        if above[i:i + 3].all():
            i10 = i
            break
    if i10 is None:
        return float("nan"), a_start
    if i10 == 0:
        return float(t[0]), a_start
    base = float(np.median(a[:i10]))
    hi = np.flatnonzero(prog[i10:] >= 0.5)
    i50 = i10 + int(hi[0]) if hi.size else a.size - 1
    i50 = max(i50, i10 + 1)
    # The frame before the 10% crossing joins the line when it has already risen, or when the rise
    # is so fast that 10% and 50% fall on one frame (a step: two plateau points would give a flat
    # line that extrapolates far back).
    first = i10 - 1 if (prog[i10 - 1] > 0.05 or prog[i10] >= 0.5) else i10
    seg = slice(first, min(i50, a.size - 1) + 1)
    tt, aa = t[seg], a[seg]
    if tt.size >= 2 and np.ptp(tt) > 0:
        slope, icpt = np.polyfit(tt, aa, 1)
    else:
        slope, icpt = 0.0, 0.0
    if slope * change > 0:
        onset = (base - icpt) / slope
        onset = float(np.clip(onset, t[0], t[i10]))
    else:
        onset = float(t[i10])
    pre = t < onset
    a0 = float(np.median(a[pre])) if pre.any() else base
    return onset, a0


def crack_flags(n_pieces, n_holes, *, onset_index: int | None = None, persist_frames: int = 3) -> tuple[bool, int]:
    """(cracked, first frame) from per-frame piece and hole counts of one particle.

    Holes count against the particle's own baseline (median before the onset or over the first
    frames), pieces against one.
    """
    p = np.nan_to_num(np.asarray(n_pieces, float), nan=1.0)
    h = np.nan_to_num(np.asarray(n_holes, float), nan=0.0)
    nb = onset_index if (onset_index is not None and onset_index >= 3) else min(5, h.size)
    base_h = float(np.median(h[:max(1, nb)]))
    flag = (p >= 2) | (h > base_h)
    run = 0
    for i, f in enumerate(flag):
        run = run + 1 if f else 0
        if run >= persist_frames:
            return True, i - persist_frames + 1
    return False, -1


def _reject_outliers(res: dict) -> int:
    """NaN out the fits :func:`_temporal_outliers` rejects; returns how many."""
    outliers = _temporal_outliers(res["radius_px"])
    if outliers.any():
        for f in ("radius_px", "core_radius_px", "radius_err_px", "y_px", "x_px"):
            res[f][outliers] = np.nan
        res["ok"][outliers] = 0.0
    return int(outliers.sum())


def _temporal_outliers(radius_px: np.ndarray, *, z: float = 6.0, min_rel: float = 0.03) -> np.ndarray:
    """Frames whose fitted radius departs from the 5-frame running median by more than ``z`` robust
    sigma and ``min_rel`` of the radius (a fit that converged on a wrong solution). Steps (a real
    sudden change) are kept by the running median."""
    r = np.asarray(radius_px, float)
    out = np.zeros(r.shape, bool)
    if r.shape[0] < 5:
        return out
    for j in range(r.shape[1]):
        col = r[:, j]
        ok = np.isfinite(col)
        if ok.sum() < 5:
            continue
        # Mirrored ends: a wrong last (or first) frame is judged against its neighbours, not itself.
        med = ndimage.median_filter(col[ok], size=5, mode="mirror")
        dev = col[ok] - med
        sig = 1.4826 * float(np.median(np.abs(dev))) or 1e-9
        bad = (np.abs(dev) > z * sig) & (np.abs(dev) > min_rel * np.abs(med))
        idx = np.flatnonzero(ok)
        out[idx[bad], j] = True
    return out


def trend_filter(values, *, lam: float = 1.0, weights=None, huber: float = 2.0, noise=None,
                 free_kinks=(), n_iter: int = 60) -> np.ndarray:
    r"""Piecewise-linear smoothing that keeps kinks: robust :math:`\ell_1` trend filtering.

    Minimises :math:`\sum_t w_t\,\rho_c((y_t - x_t)/\sigma) + \lambda \sum_t |x_{t-1} - 2x_t + x_{t+1}|/\sigma`
    (:math:`\rho_c` Huber's loss with threshold ``huber``, :math:`\sigma` the noise) by iteratively
    reweighted least squares on the banded normal equations (O(n) per iteration). The
    :math:`\ell_1` penalty on second differences makes the solution piecewise linear with few
    kinks: a flat baseline that turns into a rise at an onset stays a sharp corner (a quadratic
    smoother would round it off over its window), while frame-to-frame noise is averaged along
    each straight piece; the Huber loss keeps single wrong frames from pulling the curve.

    Parameters
    ----------
    values : array_like (n,)
        The series (NaN: missing, gets weight 0 and an interpolated value).
    lam : float
        Penalty in units of the noise: larger is smoother (0 returns the input).
    weights : array_like (n,), optional
        Relative data weights (1 / variance up to a constant).
    huber : float
        Residuals beyond ``huber`` noise sigmas count linearly.
    noise : float, optional
        Noise sigma of one value; default a robust estimate from the second differences
        (``1.4826 MAD(D2 y) / sqrt(6)``), which kinks do not affect.
    free_kinks : sequence of int
        Indices where a corner costs nothing (a known change point, e.g. a reaction onset).
    n_iter : int
        Most IRLS iterations.

    Returns
    -------
    ndarray (n,)
        The smoothed series (all NaN when fewer than 2 values are finite).
    """
    from scipy.linalg import solveh_banded

    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 1:
        raise ParameterError(f"trend_filter expects a 1D series, got shape {y.shape}")
    if not (np.isfinite(lam) and lam >= 0 and np.isfinite(huber) and huber > 0):
        raise ParameterError("trend_filter: lam must be >= 0 and huber > 0")
    n = y.size
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return np.full(n, np.nan)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).copy()
    if w.shape != y.shape:
        raise ParameterError(f"trend_filter: weights must have the series' shape {y.shape}")
    w = np.where(ok & np.isfinite(w), np.maximum(w, 0), 0.0)
    yf = np.where(ok, y, np.interp(np.arange(n), np.flatnonzero(ok), y[ok]))
    if lam == 0 or n < 4:
        return yf
    if noise is None:
        d2 = np.diff(y[ok], 2)
        noise = 1.4826 * float(np.median(np.abs(d2 - np.median(d2)))) / math.sqrt(6) if d2.size >= 3 else 0.0
    scale = float(noise) if noise and np.isfinite(noise) and noise > 0 else max(1e-12, 1e-6 * float(np.abs(yf).max()))
    z = yf / scale
    w = w / max(float(w[w > 0].mean()) if (w > 0).any() else 1.0, 1e-300)
    pen = np.full(n - 2, float(lam))
    for i in free_kinks:
        if 1 <= int(i) <= n - 2:
            pen[int(i) - 1] = 0.0
    x = z.copy()
    for _ in range(n_iter):
        r = z - x
        a = w * np.minimum(1.0, huber / np.maximum(np.abs(r), 1e-12))
        d = x[:-2] - 2 * x[1:-1] + x[2:]
        # Majorise |d| by d^2 / (2|d_k|) + |d_k| / 2 around the current solution; the floor keeps
        # straight pieces (d = 0) from making the system stiff.
        b = pen / np.maximum(np.abs(d), 1e-3)
        ab = np.zeros((3, n))
        ab[2] = a + 1e-9
        ab[2, :-2] += b
        ab[2, 1:-1] += 4 * b
        ab[2, 2:] += b
        ab[1, 1:-1] -= 2 * b
        ab[1, 2:] -= 2 * b
        ab[0, 2:] += b
        x_new = solveh_banded(ab, a * z, check_finite=False)
        done = float(np.max(np.abs(x_new - x))) < 1e-6
        x = x_new
        if done:
            break
    return x * scale


def regularise_radius(time_s, radius, *, onset_s: float = float("nan"), break_index: int | None = None,
                      lam: float = 1.0) -> np.ndarray:
    """Temporal regularisation of one particle's fitted radius series (see :func:`trend_filter`).

    Each frame's fit is independent, so its shot noise is independent from frame to frame while
    the particle changes smoothly, except for a corner at the onset of swelling and possibly a
    jump when it cracks. The series is smoothed with :func:`trend_filter`, the corner at
    ``onset_s`` left free and the series split at ``break_index`` (the first cracked frame).
    Frames without a fit stay NaN.

    Parameters
    ----------
    time_s : array_like (n,)
    radius : array_like (n,)
        Per-frame fitted radius (any length unit).
    onset_s : float
        Onset of swelling (NaN: none).
    break_index : int, optional
        First frame of a new segment (cracking).
    lam : float
        Penalty of :func:`trend_filter` in units of the noise.
    Returns
    -------
    ndarray (n,)
    """
    t = np.asarray(time_s, dtype=np.float64)
    r = np.asarray(radius, dtype=np.float64)
    if t.shape != r.shape or r.ndim != 1:
        raise ParameterError(f"time_s and radius must be 1D of the same length, got {t.shape} and {r.shape}")
    out = np.full(r.shape, np.nan)
    cuts = [0, r.size] if break_index is None or not (0 < break_index < r.size) else [0, int(break_index), r.size]
    for a, b in zip(cuts[:-1], cuts[1:]):
        seg = r[a:b]
        ok = np.isfinite(seg)
        if ok.sum() < 5:
            out[a:b] = seg
            continue
        kinks = ()
        if np.isfinite(onset_s):
            i = int(np.searchsorted(t[a:b], onset_s)) - 1
            # The corner lies between frames i and i + 1: either may carry it.
            kinks = (i, i + 1)
        sm = trend_filter(seg, lam=lam, free_kinks=kinks)
        out[a:b] = np.where(ok, sm, np.nan)
    return out


def detect_particles(movie: Movie, *, dy_px, dx_px, detect_frames: int = 5, polarity: str = "dark",
                     min_radius_px: float = 3.0) -> dict:
    """Particles on the drift-aligned sum of the first frames, refined by projected-sphere fits.

    Parameters
    ----------
    movie : Movie
    dy_px, dx_px : array_like (n_frames,)
        Specimen drift relative to frame 0.
    detect_frames : int
    polarity : {'dark', 'bright'}
    min_radius_px : float

    Returns
    -------
    dict
        ``centre_yx_px`` (n, 2) in frame-0 pixels, ``radius_px`` (n,), ``blur_px`` (median fitted
        blur), ``problems`` (list of str). Particles ordered by row, then column. Objects that
        cannot be fitted, smaller than ``min_radius_px``, or leaving the field in some frame are
        dropped (and counted in ``problems``).

    Raises
    ------
    AnalysisError
        When no particle remains.
    """
    dy = np.asarray(dy_px, float)
    dx = np.asarray(dx_px, float)
    if polarity not in ("dark", "bright"):
        raise ParameterError(f"polarity must be 'dark' or 'bright', got {polarity!r}")
    if dy.shape != (movie.n_frames,) or dx.shape != (movie.n_frames,):
        raise ParameterError(f"drift must have one (dy, dx) per frame ({movie.n_frames})")
    problems: list[str] = []
    k = int(min(max(1, detect_frames), movie.n_frames))
    sum_img = _aligned_sum(movie, k, dy, dx)
    _, _, det = _detect(sum_img, k, polarity, min_radius_px)
    good = np.isfinite(det["r"]) & (det["r"] >= min_radius_px)
    if (~good).any():
        problems.append(f"{int((~good).sum())} detected object(s) could not be fitted as particles and were dropped")
    centres = np.stack([det["y"], det["x"]], axis=1)[good]
    radii = det["r"][good]
    blurs = det["blur"][good]
    # Particles whose pristine disk leaves the field in some frame are not measured.
    rows, cols = movie.frame_shape
    reach = radii + 2
    inside = ((centres[:, 0] + dy.min() - reach >= 0) & (centres[:, 0] + dy.max() + reach <= rows - 1)
              & (centres[:, 1] + dx.min() - reach >= 0) & (centres[:, 1] + dx.max() + reach <= cols - 1))
    if (~inside).any():
        problems.append(f"{int((~inside).sum())} particle(s) at the edge of the field (in some frame) were dropped")
    centres, radii, blurs = centres[inside], radii[inside], blurs[inside]
    if centres.shape[0] == 0:
        raise AnalysisError("no particle lies fully inside the field of view in every frame")
    blur_px = float(np.median(blurs)) if np.isfinite(blurs).any() else 0.7
    order = np.lexsort((centres[:, 1], centres[:, 0]))
    return {"centre_yx_px": centres[order], "radius_px": radii[order], "blur_px": blur_px, "problems": problems}


def _resolve_drift(movie, drift, executor, progress, cancel):
    if drift is None:
        from temtrack.series.drift import estimate_drift
        d = estimate_drift(movie, executor=executor, progress=progress, cancel=cancel)
        return np.asarray(d.dy_px, float), np.asarray(d.dx_px, float), "estimated"
    if hasattr(drift, "dy_px"):
        dy, dx = np.asarray(drift.dy_px, float), np.asarray(drift.dx_px, float)
        src = "given"
    else:
        try:
            dy, dx = (np.asarray(v, float) for v in drift)
        except (TypeError, ValueError):
            raise ParameterError("drift must be a DriftResult or (dy_px, dx_px) arrays") from None
        src = "given"
    if dy.shape != (movie.n_frames,) or dx.shape != (movie.n_frames,):
        raise ParameterError(f"drift must have one (dy, dx) per frame ({movie.n_frames}), got {dy.shape}")
    if not (np.isfinite(dy).all() and np.isfinite(dx).all()):
        raise ParameterError("drift contains NaN or infinite shifts")
    return dy, dx, src


def track_particles(movie: Movie, *, drift=None, detect_frames: int = 5, polarity: str = "dark",
                    with_core: bool = True, executor=None, progress: Callable[[int, int], None] | None = None,
                    cancel: threading.Event | None = None, pixel_size_nm: float | None = None,
                    min_radius_px: float = 3.0, max_radius_factor: float = 1.7,
                    crack_persist_frames: int = 3, regularise: float = 1.0, chunk_frames: int | None = None,
                    memory_budget_bytes: int | None = None) -> ParticlesResult:
    """Find the particles of a movie and measure each one in every frame.

    Parameters
    ----------
    movie : Movie
        Bright-field (or, with ``polarity='bright'``, dark-field) image movie.
    drift : DriftResult or (dy_px, dx_px), optional
        Specimen displacement of each frame relative to frame 0; estimated with
        :func:`temtrack.series.drift.estimate_drift` when None.
    detect_frames : int
        Particles are detected on the drift-aligned mean of this many first frames.
    polarity : {'dark', 'bright'}
    with_core : bool
        Fit an unreacted core of distinct contrast.
    executor, progress, cancel
        As for :func:`temtrack.pipeline.executor.map_frames`. ``progress`` covers the drift
        pass (when run) then the fit pass.
    pixel_size_nm : float, optional
        Overrides the movie's calibration.
    min_radius_px : float
        Smaller objects are ignored.
    max_radius_factor : float
        Largest expected swelling of the radius (1.7: volume x 4.9); sets the fit region.
    crack_persist_frames : int
        Frames a split or new hole must persist to flag cracking.
    regularise : float
        Temporal regularisation of each particle's radius series (:func:`regularise_radius`,
        penalty in units of the frame-to-frame noise); 0 keeps each frame's own fit.
    chunk_frames, memory_budget_bytes : int, optional
        Passed to :func:`map_frames`; results do not depend on them.

    Returns
    -------
    ParticlesResult

    Raises
    ------
    ParameterError
        Bad options, missing calibration.
    AnalysisError
        No particles found.
    Cancelled
    """
    if not isinstance(movie, Movie):
        raise ParameterError("track_particles expects a temtrack Movie")
    if polarity not in ("dark", "bright"):
        raise ParameterError(f"polarity must be 'dark' or 'bright', got {polarity!r}")
    if not (isinstance(detect_frames, (int, np.integer)) and detect_frames >= 1):
        raise ParameterError(f"detect_frames must be an integer >= 1, got {detect_frames!r}")
    if not (max_radius_factor >= 1.0 and min_radius_px > 0 and crack_persist_frames >= 1):
        raise ParameterError("max_radius_factor must be >= 1, min_radius_px > 0, crack_persist_frames >= 1")
    if not (isinstance(regularise, (int, float, np.integer, np.floating)) and not isinstance(regularise, bool)
            and np.isfinite(regularise) and regularise >= 0):
        raise ParameterError(f"regularise must be a number >= 0, got {regularise!r}")
    if pixel_size_nm is None:
        if movie.pixel_unit != "nm" or not movie.pixel_size:
            raise ParameterError(f"{movie.path}: no spatial calibration in nm; give pixel_size_nm (--pixel-size)")
        pixel_size_nm = float(movie.pixel_size)
    if not (np.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise ParameterError(f"pixel_size_nm must be a positive number, got {pixel_size_nm!r}")
    problems: list[str] = []
    n_f = movie.n_frames
    if movie.times_s is not None:
        time_s = np.asarray(movie.times_s, float)
    else:
        time_s = np.arange(n_f, dtype=float)
        problems.append("no frame timing: times are frame numbers (give frame_interval_s)")
    need_drift = drift is None
    total = (2 * n_f if need_drift else 0) + n_f

    def stage(offset):
        if progress is None:
            return None
        return lambda done, _t: progress(min(total, offset + int(done)), total)

    dy, dx, drift_source = _resolve_drift(movie, drift, executor, stage(0), cancel)
    k = int(min(detect_frames, n_f))
    det = detect_particles(movie, dy_px=dy, dx_px=dx, detect_frames=k, polarity=polarity,
                           min_radius_px=min_radius_px)
    centres, radii, blur_px = det["centre_yx_px"], det["radius_px"], det["blur_px"]
    problems.extend(det["problems"])
    func = functools.partial(_fit_chunk, centres0=centres, r0=radii, dy=dy, dx=dx, with_core=with_core,
                             blur_px=blur_px, max_radius_factor=max_radius_factor, invert=polarity == "bright")
    res = map_frames(movie, func, executor=executor, chunk_frames=chunk_frames,
                     memory_budget_bytes=memory_budget_bytes, progress=stage(total - n_f), cancel=cancel)
    px = pixel_size_nm
    n_out = _reject_outliers(res)
    if n_out:
        problems.append(f"{n_out} particle-frame fit(s) rejected as outliers of the radius series (area NaN there)")
    n_p = centres.shape[0]
    raw_r_nm = res["radius_px"] * px
    raw_area = np.pi * raw_r_nm ** 2
    # Onsets and cracking from the per-frame measurements; they place the kinks and breaks the
    # temporal regularisation must keep.
    onset = np.full(n_p, np.nan)
    cracked = np.zeros(n_p, bool)
    crack_t = np.full(n_p, np.nan)
    crack_i = np.full(n_p, -1)
    for j in range(n_p):
        onset[j], _ = onset_from_area(time_s, raw_area[:, j], baseline_frames=k)
        oi = int(np.searchsorted(time_s, onset[j])) if np.isfinite(onset[j]) else None
        c, first = crack_flags(res["n_pieces"][:, j], res["n_holes"][:, j], onset_index=oi,
                               persist_frames=crack_persist_frames)
        cracked[j] = c
        if c:
            crack_t[j], crack_i[j] = time_s[first], first
    r_nm = raw_r_nm.copy()
    if regularise > 0:
        for j in range(n_p):
            r_nm[:, j] = regularise_radius(time_s, raw_r_nm[:, j], onset_s=onset[j],
                                           break_index=int(crack_i[j]) if cracked[j] else None, lam=regularise)
    area = np.pi * r_nm ** 2
    # A0 from the regularised series (less noisy); the onset stays that of the per-frame areas,
    # since the regularisation places its corner there.
    a0 = np.full(n_p, np.nan)
    for j in range(n_p):
        pre = time_s < onset[j]
        if np.isfinite(onset[j]) and np.isfinite(area[pre, j]).any():
            a0[j] = float(np.nanmedian(area[pre, j]))
        else:
            a0[j] = onset_from_area(time_s, area[:, j], baseline_frames=k)[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        vr = (area / a0[None, :]) ** 1.5
    rates: list = []
    cores: list = []
    core_nm = res["core_radius_px"] * px
    from temtrack.series.expansion import radial_expansion_rate
    for j in range(n_p):
        try:
            rates.append(radial_expansion_rate(time_s, 2 * r_nm[:, j]))
        except AnalysisError:
            rates.append(None)
        cores.append(_core_fit(time_s, core_nm[:, j], r_nm[:, j], onset[j]))
    return ParticlesResult(
        time_s=time_s, pixel_size_nm=px, ids=np.arange(n_p), centre0_yx_px=centres,
        y_px=res["y_px"], x_px=res["x_px"], area_nm2=area, equivalent_diameter_nm=2 * r_nm,
        area_frame_nm2=raw_area, regularisation=float(regularise),
        core_radius_nm=core_nm, radius_err_nm=res["radius_err_px"] * px, volume_ratio=vr, volume_expansion=vr - 1,
        n_pieces=np.nan_to_num(res["n_pieces"], nan=0).astype(int),
        n_holes=np.nan_to_num(res["n_holes"], nan=0).astype(int), fit_ok=res["ok"] > 0.5,
        onset_s=onset, A0_nm2=a0, cracked=cracked, crack_time_s=crack_t, expansion_rate=rates,
        shrinking_core=cores, drift_dy_px=dy, drift_dx_px=dx, blur_px=blur_px, drift_source=drift_source,
        problems=problems)


def _core_fit(time_s, core_nm, r_nm, onset):
    """Shrinking-core fit of one particle's core radius (None when not possible).

    Uses the frames where a core is seen after the onset, and before the onset the whole particle
    as its core. Frames without a visible core after the onset are left out: a small late core
    loses its contrast before it is gone, so filling them with 0 would fake a sudden end.
    """
    from temtrack.series.shrinking_core import fit_shrinking_core
    if not np.isfinite(onset):
        return None
    after = time_s >= onset
    c = np.where(after, core_nm, np.nan)
    if np.isfinite(c).sum() < 4:
        return None
    pre = ~after
    c[pre] = r_nm[pre]
    try:
        return fit_shrinking_core(time_s, c, geometry="sphere").to_json()
    except AnalysisError:
        return None
