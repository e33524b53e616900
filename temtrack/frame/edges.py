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

import functools
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

    Banks are cached per set of arguments (a movie's wire pass, the width measurement and every
    further run with the same geometry share one; the arrays are read-only).

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
    if isinstance(n_across, bool) or int(n_across) != n_across or n_across < 9 or n_across % 2 == 0:
        raise ParameterError(f"profiles need an odd number >= 9 of samples, got {n_across}")
    if not (step_px > 0 and radius_step_px > 0 and min_radius_px > 0):
        raise ParameterError("step_px, radius_step_px and min_radius_px must be positive")
    return _cylinder_templates(int(n_across), float(step_px), float(radius_step_px), float(min_radius_px),
                               float(max_shift_fraction), float(blur_px))


@functools.lru_cache(maxsize=32)
def _cylinder_templates(n_across, step_px, radius_step_px, min_radius_px, max_shift_fraction, blur_px):
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
    # Half-ellipses oversampled 8x, blurred with a triangle, taken at the sample points. Only the
    # blurred values at the sample points are needed: each is the kernel-weighted sum of the
    # oversampled values in a window around it (all windows lie inside the oversampled range).
    over = 8
    fine = (np.arange(-hw * over - over, hw * over + over + 1) / over) * step_px
    kern = np.clip(1 - np.abs(np.arange(-over, over + 1) / over * step_px) / max(blur_px, 1e-6), 0, None)
    kern = kern / kern.sum()
    take = np.arange(over, over + (2 * hw) * over + 1, over)
    rad = np.repeat(radii, offsets.size)[:, None, None]
    off = np.tile(offsets, radii.size)[:, None, None]
    pos = fine[take[:, None] + np.arange(-over, over + 1)[None, :]] if blur_px > 0 else fine[take][:, None]
    t = np.empty((rad.shape[0], take.size))
    # In blocks of templates: the oversampled values of a whole bank for wide profiles would
    # take hundreds of MB.
    step = max(1, (4 << 20) // (8 * pos.size))
    for a in range(0, rad.shape[0], step):
        e = np.sqrt(np.clip(1 - ((pos[None] - off[a:a + step]) / rad[a:a + step]) ** 2, 0, None))
        t[a:a + step] = e @ kern[::-1] if blur_px > 0 else e[:, :, 0]
    n = r.size
    q1 = np.full(n, 1 / math.sqrt(n))
    q2 = r / np.linalg.norm(r)
    t = t - (t @ q1)[:, None] * q1 - (t @ q2)[:, None] * q2
    norm = np.linalg.norm(t, axis=1)
    q3 = t / norm[:, None]
    for a in (radii, offsets, q3, norm, q2):
        a.flags.writeable = False
    return CylinderTemplates(radius_px=radii, offset_px=offsets, q3=q3, norm=norm, q2=q2,
                             half_window=hw, max_shift=max_shift, step_px=float(step_px))


def profile_attenuation(intensity: np.ndarray, *, floor: float = 1e-3) -> np.ndarray:
    """``-ln`` of (averaged) intensity profiles relative to their median, clipped at a floor.

    The per-profile scale (beam current, flicker) drops out as a constant offset, which the fit's
    offset term absorbs.
    """
    intensity = np.asarray(intensity, dtype=np.float64)
    finite = np.isfinite(intensity)
    if finite.all():
        # The common case: a partition gives the same values as nanmedian, many times faster
        # (nanmedian goes through masked arrays for short rows).
        ref = _median_last(intensity)
    else:
        # Profiles entirely off the frame (all NaN) stay NaN without nanmedian's RuntimeWarning.
        ref = np.full(intensity.shape[:-1] + (1,), np.nan)
        rows = finite.all(axis=-1)
        ref[rows] = _median_last(intensity[rows])
        part = finite.any(axis=-1) & ~rows
        if part.any():
            ref[part] = np.nanmedian(intensity[part], axis=-1, keepdims=True)
    ref = np.where(ref > 0, ref, 1.0)
    out = np.divide(intensity, ref)
    np.clip(out, floor, None, out=out)
    np.log(out, out=out)
    return np.negative(out, out=out)


def _median_last(a: np.ndarray) -> np.ndarray:
    """Median along the last axis (keepdims) of finite values, as ``np.median`` computes it."""
    n = a.shape[-1]
    if n == 0:
        return np.full(a.shape[:-1] + (1,), np.nan)
    k = n // 2
    if n % 2:
        return np.partition(a, k, axis=-1)[..., k:k + 1]
    part = np.partition(a, (k - 1, k), axis=-1)
    return (part[..., k - 1:k] + part[..., k:k + 1]) / 2


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
    # (Sums over samples as a product with [1, index]: one pass over the profiles.)
    idx = np.arange(n_across, dtype=np.float64)
    ones_idx = np.stack([np.ones(n_across), idx], axis=1)
    edge = max(2, n_across // 8)
    base = _median_last(np.concatenate([ag[:, :edge], ag[:, -edge:]], axis=1))
    w = ag - base
    np.maximum(w, 0.0, out=w)
    wsum, wpos = (w @ ones_idx).T
    cen = np.where(wsum > 0, wpos / np.where(wsum > 0, wsum, 1), half)
    # Again within half a window of that first guess: the far tails carry mostly noise.
    # (|i - cen| <= hw / 2 as integer bounds: byte-sized comparisons instead of float passes)
    i_int = np.arange(n_across)
    w *= (i_int >= np.ceil(cen - hw / 2)[:, None]) & (i_int <= np.floor(cen + hw / 2)[:, None])
    wsum, wpos = (w @ ones_idx).T
    cen = np.where(wsum > 0, wpos / np.where(wsum > 0, wsum, 1), cen)
    shift = np.clip(np.rint(cen - half), -ms, ms).astype(int)
    windows = np.lib.stride_tricks.sliding_window_view(ag, 2 * hw + 1, axis=1)   # (n, 2 ms + 1, window)
    y = windows[np.arange(ag.shape[0]), shift + ms]
    proj = y @ tp.q3.T                                     # (n, n_templates)
    ymean = y.mean(axis=1, keepdims=True)
    base_rss = ((y - ymean) ** 2).sum(axis=1) - (y @ tp.q2) ** 2
    # The best template has the largest squared projection among positive ones (the amplitude
    # must be positive), i.e. the largest projection; RSS = base - projection^2 is evaluated
    # only at the best template and its four grid neighbours, not over the whole bank.
    n_r, n_o = tp.radius_px.size, tp.offset_px.size
    best = np.argmax(proj, axis=1)
    bi, bo = np.divmod(best, n_o)
    rows = np.arange(y.shape[0])
    p_best = proj[rows, best]

    def rss_at(i, o):
        p = proj[rows, i * n_o + o]
        return base_rss - np.where(p > 0, p * p, 0.0)

    ok = (p_best > 0) & (bi > 0) & (bi < n_r - 1)
    bi_c = np.clip(bi, 1, n_r - 2)
    r_m, r_0, r_p = rss_at(bi_c - 1, bo), rss_at(bi_c, bo), rss_at(bi_c + 1, bo)
    dr, curv_r = _parabola_vertex(r_m, r_0, r_p)
    bo_c = np.clip(bo, 1, n_o - 2)
    o_m, o_0, o_p = rss_at(bi, bo_c - 1), rss_at(bi, bo_c), rss_at(bi, bo_c + 1)
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
    amp = p_best / tp.norm[best]
    # The projection on an orthonormal template has the noise's standard deviation: demand a
    # wire well above what the best of many templates finds in pure noise (about 4 sigma).
    with np.errstate(invalid="ignore", divide="ignore"):
        significance = p_best / np.sqrt(sigma2)
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
