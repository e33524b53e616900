r"""Wire diameter and edges from perpendicular intensity profiles (projected-cylinder fit).

A cylinder of radius ``R`` and attenuation ``mu`` seen in bright field transmits
:math:`I(r) = B \exp(-\mu\, 2\sqrt{R^2 - (r - r_0)^2})`, so the attenuation profile
:math:`a(r) = -\ln I` is a linear background plus :math:`A \sqrt{1 - ((r - r_0)/R)^2}` (a
half-ellipse). Diffraction (bend) contrast of a crystalline wire and the speckle of an amorphous one
scale with the local thickness too, so the half-ellipse shape holds for both; only ``A`` changes.
Fitting that shape uses every pixel of the profile, not just the steepest points of the edges, and
needs no threshold, which is what low-dose in situ movies need.

Why hand-written: the fit must run for ~100 profiles per frame over thousands of frames. For fixed
``(R, r0)`` the model is linear in (offset, slope, A), so the best fit over a grid of templates is
one matrix product with orthonormalised templates (the residual sum of squares is the data's minus
the squared projections); a parabola through the grid minimum refines ``R`` and ``r0`` below the
grid step and its curvature gives the uncertainty. No per-profile nonlinear optimiser
(``scipy.optimize.least_squares`` would cost ~1 ms per profile, this ~10 us).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from temtrack.errors import ParameterError

#: Template projection over the noise needed to accept a wire in a profile.
MIN_SIGNIFICANCE = 6.0

__all__ = ["CylinderTemplates", "cylinder_templates", "fit_cylinder_profiles", "profile_attenuation"]


@dataclass(frozen=True)
class CylinderTemplates:
    """Orthonormalised half-ellipse templates on a fixed window of samples.

    Attributes
    ----------
    radius_px : ndarray, shape (n_r,)
    offset_px : ndarray, shape (n_o,)
        Sub-step centre offsets searched around each profile's integer centre.
    q3 : ndarray, shape (n_r * n_o, n_window)
        The template component orthogonal to (1, r), normalised.
    norm : ndarray, shape (n_r * n_o,)
        Length of that component before normalisation (to recover the amplitude).
    q2 : ndarray, shape (n_window,)
        The normalised linear-slope column.
    half_window : int
        Samples either side of the centre in the fit window.
    max_shift : int
        Largest integer shift (samples) of a profile's centre from the strip's centre.
    step_px : float
        Spacing of the profile samples.
    """

    radius_px: np.ndarray
    offset_px: np.ndarray
    q3: np.ndarray
    norm: np.ndarray
    q2: np.ndarray
    half_window: int
    max_shift: int
    step_px: float


def cylinder_templates(n_across: int, *, step_px: float = 1.0, radius_step_px: float = 0.5,
                       min_radius_px: float = 2.0, max_shift_fraction: float = 0.2,
                       blur_px: float = 1.0) -> CylinderTemplates:
    """Build the template bank for profiles of ``n_across`` samples (odd, centred on the line).

    Parameters
    ----------
    n_across : int
        Samples per profile (odd; sample ``n_across // 2`` lies on the line).
    step_px : float
        Spacing of the samples, px.
    radius_step_px : float
        Grid step of the radius (refined below it by a parabola).
    min_radius_px : float
        Smallest radius considered.
    max_shift_fraction : float
        How far (as a fraction of the half width) the wire centre may sit off the line.
    blur_px : float
        Half-width of the triangular kernel the templates are smoothed with: the bilinear
        interpolation of the sampling blurs an edge by about one pixel.
    """
    if n_across < 9 or n_across % 2 == 0:
        raise ParameterError(f"profiles need an odd number >= 9 of samples, got {n_across}")
    if not (step_px > 0 and radius_step_px > 0 and min_radius_px > 0):
        raise ParameterError("step_px, radius_step_px and min_radius_px must be positive")
    half = n_across // 2
    max_shift = int(round(max_shift_fraction * half))
    hw = half - max_shift
    r = np.arange(-hw, hw + 1) * step_px
    # Leave at least 15% of the window as background on each side so offset/slope stay defined.
    max_radius = 0.85 * hw * step_px
    if max_radius <= min_radius_px + 2 * radius_step_px:
        raise ParameterError(f"profiles of {n_across} samples are too short to fit a wire")
    radii = np.arange(min_radius_px, max_radius, radius_step_px)
    offsets = np.arange(-1.5, 1.5 + 1e-9, 0.5) * step_px
    # Oversample, blur with a triangle, then take the sample points.
    over = 8
    fine = (np.arange(-hw * over - over, hw * over + over + 1) / over) * step_px
    kern = np.clip(1 - np.abs(np.arange(-over, over + 1) / over * step_px) / max(blur_px, 1e-6), 0, None)
    kern = kern / kern.sum()
    take = np.arange(over, over + (2 * hw) * over + 1, over)
    n = r.size
    q1 = np.full(n, 1 / math.sqrt(n))
    q2 = r / np.linalg.norm(r)
    q3 = np.empty((radii.size * offsets.size, n))
    norm = np.empty(radii.size * offsets.size)
    k = 0
    for rad in radii:
        for off in offsets:
            t = np.sqrt(np.clip(1 - ((fine - off) / rad) ** 2, 0, None))
            if blur_px > 0:
                t = np.convolve(t, kern, mode="same")
            t = t[take]
            t = t - (t @ q1) * q1 - (t @ q2) * q2
            nt = np.linalg.norm(t)
            q3[k] = t / nt
            norm[k] = nt
            k += 1
    return CylinderTemplates(radius_px=radii, offset_px=offsets, q3=q3, norm=norm, q2=q2,
                             half_window=hw, max_shift=max_shift, step_px=float(step_px))


def profile_attenuation(intensity: np.ndarray, *, floor: float = 1e-3) -> np.ndarray:
    """``-ln`` of (averaged) intensity profiles relative to their median, clipped at a floor.

    The per-profile scale (beam current, flicker) drops out as a constant offset, which the fit's
    offset term absorbs.
    """
    intensity = np.asarray(intensity, dtype=np.float64)
    # Profiles entirely off the frame (all NaN) stay NaN without nanmedian's RuntimeWarning.
    anyfin = np.isfinite(intensity).any(axis=-1, keepdims=True)
    ref = np.full(intensity.shape[:-1] + (1,), np.nan)
    if anyfin.all():
        ref = np.nanmedian(intensity, axis=-1, keepdims=True)
    elif anyfin.any():
        rows = anyfin[..., 0]
        ref[rows] = np.nanmedian(intensity[rows], axis=-1, keepdims=True)
    ref = np.where(ref > 0, ref, 1.0)
    return -np.log(np.clip(intensity / ref, floor, None))


def _parabola_vertex(ym, y0, yp):
    """Offset (in grid steps) and curvature of the parabola through three equally spaced points."""
    curv = ym - 2 * y0 + yp
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.where(curv > 0, 0.5 * (ym - yp) / curv, 0.0)
    return np.clip(off, -0.5, 0.5), curv


def fit_cylinder_profiles(attenuation: np.ndarray, templates: CylinderTemplates) -> dict[str, np.ndarray]:
    """Fit the projected-cylinder model to many attenuation profiles at once.

    Parameters
    ----------
    attenuation : ndarray, shape (n_profiles, n_across)
        Attenuation profiles (see :func:`profile_attenuation`), centred on the line; NaN samples
        make that profile's results NaN.
    templates : CylinderTemplates
        From :func:`cylinder_templates` for the same ``n_across`` and step.

    Returns
    -------
    dict of ndarray, each shape (n_profiles,)
        ``diameter_px``, ``diameter_err_px`` (1 sigma, from the curvature of the residual sum of
        squares), ``center_px`` (wire axis position across the line), ``amplitude`` (attenuation
        on the axis, :math:`2 \\mu R` plus diffraction contrast), ``edge_lo_px``, ``edge_hi_px``.
        Profiles with no wire (amplitude not significant, ``MIN_SIGNIFICANCE``) or a radius at
        the edge of the searched range give NaN.
    """
    a = np.asarray(attenuation, dtype=np.float64)
    if a.ndim != 2:
        raise ParameterError(f"expected profiles of shape (n, n_across), got {a.shape}")
    n_prof, n_across = a.shape
    tp = templates
    half = n_across // 2
    if half - tp.max_shift != tp.half_window:
        raise ParameterError(f"templates were built for another profile length than {n_across}")
    hw, ms = tp.half_window, tp.max_shift
    nan = np.full(n_prof, np.nan)
    out = {k: nan.copy() for k in ("diameter_px", "diameter_err_px", "center_px", "amplitude",
                                   "edge_lo_px", "edge_hi_px")}
    good = np.all(np.isfinite(a), axis=1)
    if not good.any():
        return out
    ag = a[good]
    # Integer centre of each profile: centroid of the attenuation above its outer baseline.
    idx = np.arange(n_across)
    edge = max(2, n_across // 8)
    base = np.median(np.concatenate([ag[:, :edge], ag[:, -edge:]], axis=1), axis=1, keepdims=True)
    w = np.clip(ag - base, 0, None)
    wsum = w.sum(axis=1)
    cen = np.where(wsum > 0, (w * idx).sum(axis=1) / np.where(wsum > 0, wsum, 1), half)
    # Again within half a window of that first guess: the far tails carry mostly noise.
    w = np.where(np.abs(idx[None, :] - cen[:, None]) <= hw / 2, w, 0.0)
    wsum = w.sum(axis=1)
    cen = np.where(wsum > 0, (w * idx).sum(axis=1) / np.where(wsum > 0, wsum, 1), cen)
    shift = np.clip(np.rint(cen - half), -ms, ms).astype(int)
    win = half + shift[:, None] + np.arange(-hw, hw + 1)[None, :]
    y = np.take_along_axis(ag, win, axis=1)
    proj = y @ tp.q3.T                                     # (n, n_templates)
    ymean = y.mean(axis=1, keepdims=True)
    base_rss = ((y - ymean) ** 2).sum(axis=1) - (y @ tp.q2) ** 2
    score = np.where(proj > 0, proj * proj, -np.inf)       # amplitude must be positive
    n_r, n_o = tp.radius_px.size, tp.offset_px.size
    best = np.argmax(score, axis=1)
    bi, bo = np.divmod(best, n_o)
    rows = np.arange(y.shape[0])
    rss = base_rss[:, None] - np.where(np.isfinite(score), score, 0.0)
    rss3 = rss.reshape(-1, n_r, n_o)
    ok = np.isfinite(score[rows, best]) & (bi > 0) & (bi < n_r - 1)
    bi_c = np.clip(bi, 1, n_r - 2)
    r_m, r_0, r_p = rss3[rows, bi_c - 1, bo], rss3[rows, bi_c, bo], rss3[rows, bi_c + 1, bo]
    dr, curv_r = _parabola_vertex(r_m, r_0, r_p)
    bo_c = np.clip(bo, 1, n_o - 2)
    o_m, o_0, o_p = rss3[rows, bi, bo_c - 1], rss3[rows, bi, bo_c], rss3[rows, bi, bo_c + 1]
    do, _ = _parabola_vertex(o_m, o_0, o_p)
    step_r = tp.radius_px[1] - tp.radius_px[0]
    step_o = tp.offset_px[1] - tp.offset_px[0]
    radius = tp.radius_px[bi] + dr * step_r
    offset = tp.offset_px[bo_c] + do * step_o
    dof = max(1, y.shape[1] - 5)
    sigma2 = np.clip(r_0, 0, None) / dof
    # RSS(R) ~ RSS_min + (curv / (2 step^2)) (R - R_hat)^2; one sigma where the rise equals sigma^2.
    with np.errstate(invalid="ignore", divide="ignore"):
        err_r = np.sqrt(2 * sigma2 / np.where(curv_r > 0, curv_r, np.nan)) * step_r
    amp = proj[rows, best] / tp.norm[best]
    # The projection on an orthonormal template has the noise's standard deviation: demand a
    # wire well above what the best of many templates finds in pure noise (about 4 sigma).
    with np.errstate(invalid="ignore", divide="ignore"):
        significance = proj[rows, best] / np.sqrt(sigma2)
    ok &= significance > MIN_SIGNIFICANCE
    center = (shift * tp.step_px) + offset
    d = np.where(ok, 2 * radius, np.nan)
    res = {
        "diameter_px": d,
        "diameter_err_px": np.where(ok, 2 * err_r, np.nan),
        "center_px": np.where(ok, center, np.nan),
        "amplitude": np.where(ok, amp, np.nan),
        "edge_lo_px": np.where(ok, center - radius, np.nan),
        "edge_hi_px": np.where(ok, center + radius, np.nan),
    }
    for k, v in res.items():
        out[k][good] = v
    return out
