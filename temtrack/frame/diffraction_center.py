"""Centre and ellipticity of a powder diffraction pattern, robust to the beam stop and a saturated beam.

The central beam is a poor centre marker (saturated, hidden by the beam stop, and the beam stop
breaks any brightness symmetry), so the rings themselves locate the centre. A coarse estimate comes
from the pattern's 180-degree rotational symmetry (self-convolution of the high-passed, masked
frame peaks at twice the centre). The refinement splits the pattern into angular sectors, measures
how far each sector's ring profile is shifted radially against the all-sector mean, and fits the
shifts: a centre offset (dx, dy) shifts sector theta by dx cos(theta) + dy sin(theta), an ellipse
stretches it by a factor 1 + (e/2) cos 2(theta - phi), i.e. a constant shift in log radius. The
two are fitted in r and in log r respectively and iterated. This is written here because pyFAI's
calibration needs known calibrant rings and a full detector geometry, and scikit-image has no
ring-based centring.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

from temtrack.errors import ParameterError


def _highpass(f, sigma):
    return f - ndimage.gaussian_filter(f, sigma, mode="nearest")


def coarse_center(frame, *, mask=None, binning: int = 2) -> tuple[float, float]:
    """Centre from 180-degree rotational symmetry (accurate to about a pixel).

    Parameters
    ----------
    frame : 2D array
    mask : bool array, optional
        True for valid pixels (mask the saturated central beam and the beam stop).
    binning : int
        Bin the frame by this factor first (speed).
    """
    f = np.asarray(frame, dtype=np.float64)
    if f.ndim != 2:
        raise ParameterError(f"expected a 2D frame, got shape {f.shape}")
    valid = np.isfinite(f) if mask is None else (np.asarray(mask, bool) & np.isfinite(f))
    f = np.where(valid, f, 0.0)
    b = max(1, int(binning))
    rows, cols = (f.shape[0] // b) * b, (f.shape[1] // b) * b
    fb = f[:rows, :cols].reshape(rows // b, b, cols // b, b).sum(axis=(1, 3))
    vb = valid[:rows, :cols].reshape(rows // b, b, cols // b, b).sum(axis=(1, 3)) / b ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        fb = np.where(vb > 0.99, fb / (b * b), 0.0)
    # Ring contrast only; compress the dynamic range so the bright inner rings do not dominate.
    g = np.sqrt(np.clip(fb, 0, None))
    g = _highpass(g, 3.0 / b + 1.0) * (vb > 0.99)
    g = ndimage.binary_erosion(vb > 0.99, iterations=2) * g
    conv = signal.fftconvolve(g, g, mode="full")
    k = np.unravel_index(np.argmax(conv), conv.shape)
    sub = []
    for ax in range(2):
        i = k[ax]
        if 0 < i < conv.shape[ax] - 1:
            sl = [k[0], k[1]]
            sl[ax] = i - 1
            ym = conv[tuple(sl)]
            sl[ax] = i + 1
            yp = conv[tuple(sl)]
            y0 = conv[k]
            den = ym - 2 * y0 + yp
            sub.append(i + (0.5 * (ym - yp) / den if den < 0 else 0.0))
        else:
            sub.append(float(i))
    cy_b, cx_b = sub[0] / 2, sub[1] / 2
    # Binned pixel j covers original pixels b*j .. b*j + b - 1 (centre b*j + (b-1)/2).
    return cy_b * b + (b - 1) / 2, cx_b * b + (b - 1) / 2


class _Band:
    """Pixels of the ring band and their sector, fixed for one refinement (the centre moves < 3 px)."""

    def __init__(self, f, valid, center_yx, r_min, r_max, n_sectors):
        rows, cols = f.shape
        cy, cx = center_yx
        yy, xx = np.nonzero(valid)
        u = xx - cx
        v = -(yy - cy)
        r = np.hypot(u, v)
        sel = (r >= r_min - 4) & (r < r_max + 4)
        self.u0 = u[sel].astype(np.float64)
        self.v0 = v[sel].astype(np.float64)
        self.vals = f[yy[sel], xx[sel]].astype(np.float64)
        th = np.arctan2(self.v0, self.u0)
        self.sec = (np.floor((th % (2 * np.pi)) / (2 * np.pi) * n_sectors).astype(np.int64)) % n_sectors
        self.center0 = (float(cy), float(cx))
        self.n_sectors = n_sectors
        self.r_min, self.r_max = r_min, r_max

    def profiles(self, center_yx, ellipticity, angle_deg, log_r, bin_w):
        dy = center_yx[0] - self.center0[0]
        dx = center_yx[1] - self.center0[1]
        u = self.u0 - dx
        v = self.v0 + dy
        if ellipticity:
            from temtrack.frame.radial import ellipse_inverse
            M = ellipse_inverse(ellipticity, angle_deg)
            u, v = M[0, 0] * u + M[0, 1] * v, M[1, 0] * u + M[1, 1] * v
        r = np.hypot(u, v)
        sel = (r >= self.r_min) & (r < self.r_max)
        x = np.log(r[sel]) if log_r else r[sel]
        x0 = np.log(self.r_min) if log_r else self.r_min
        x1 = np.log(self.r_max) if log_r else self.r_max
        nb = int(np.ceil((x1 - x0) / bin_w)) + 1
        pos = (x - x0) / bin_w
        i0 = np.floor(pos).astype(np.int64)
        fr = pos - i0
        sec = self.sec[sel]
        vals = self.vals[sel]
        ns = self.n_sectors
        idx0 = sec * nb + i0
        idx1 = sec * nb + np.minimum(i0 + 1, nb - 1)
        n = ns * nb
        s = (np.bincount(idx0, vals * (1 - fr), n) + np.bincount(idx1, vals * fr, n)).reshape(ns, nb)
        w = (np.bincount(idx0, 1 - fr, n) + np.bincount(idx1, fr, n)).reshape(ns, nb)
        with np.errstate(invalid="ignore", divide="ignore"):
            prof = s / w
        return prof, w


def _sector_shifts(prof, w, max_lag, hp_sigma):
    """Shift (bins) of each sector profile against the weighted mean profile, and a weight."""
    ok = w > 0.5
    full = ok.mean(axis=0) > 0.99
    # Fill masked bins from the mean so gaps do not create spurious edges.
    with np.errstate(invalid="ignore"):
        mean = np.nansum(np.where(ok, prof, 0) * w, axis=0) / np.maximum((w * ok).sum(axis=0), 1e-9)
    filled = np.where(ok, prof, mean[None, :])
    hp = filled - ndimage.gaussian_filter1d(filled, hp_sigma, axis=1, mode="nearest")
    ref = mean - ndimage.gaussian_filter1d(mean, hp_sigma, mode="nearest")
    ref = np.where(full, ref, 0.0)
    shifts = np.full(prof.shape[0], np.nan)
    weights = np.zeros(prof.shape[0])
    L = int(max_lag)
    nb = ref.size
    core = slice(L, nb - L)
    for k in range(prof.shape[0]):
        cov = ok[k].mean()
        if cov < 0.5:
            continue
        h = np.where(ok[k], hp[k], 0.0)
        c = np.array([np.dot(h[core], ref[L + lag: nb - L + lag]) for lag in range(-L, L + 1)])
        j = int(np.argmax(c))
        if 0 < j < 2 * L:
            den = c[j - 1] - 2 * c[j] + c[j + 1]
            d = 0.5 * (c[j - 1] - c[j + 1]) / den if den < 0 else 0.0
        else:
            continue
        # Correlation peak at lag means h(x) ~ ref(x + lag): the sector's rings sit at x - lag.
        shifts[k] = -(j - L + d)
        weights[k] = cov
    return shifts, weights


def _fit_harmonics(theta, shifts, weights):
    ok = np.isfinite(shifts) & (weights > 0)
    if ok.sum() < 6:
        return None
    t = theta[ok]
    A = np.column_stack([np.ones_like(t), np.cos(t), np.sin(t), np.cos(2 * t), np.sin(2 * t)])
    sw = np.sqrt(weights[ok])
    coef, *_ = np.linalg.lstsq(A * sw[:, None], shifts[ok] * sw, rcond=None)
    return coef


def refine_center(frame, *, center_yx, mask=None, r_min_px: float, r_max_px: float,
                  ellipticity: float = 0.0, ellipticity_angle_deg: float = 0.0, fit_ellipticity: bool = True,
                  n_sectors: int = 24, iterations: int = 4) -> dict:
    """Sub-pixel centre (and ellipticity) from the radial shifts of the rings between sectors.

    Parameters
    ----------
    frame : 2D array
    center_yx : (float, float)
        Starting centre (within ~3 px).
    mask : bool array, optional
        True for valid pixels.
    r_min_px, r_max_px : float
        Radial band used (rings, away from the beam stop disc and the frame edge).
    ellipticity, ellipticity_angle_deg : float
        Starting ellipse (kept fixed when ``fit_ellipticity`` is False).
    fit_ellipticity : bool
    n_sectors : int
    iterations : int

    Returns
    -------
    dict with ``center_yx`` (tuple), ``ellipticity``, ``ellipticity_angle_deg``,
    ``residual_px`` (rms of the sector shifts left after the fit).
    """
    f = np.asarray(frame, dtype=np.float64)
    if f.ndim != 2:
        raise ParameterError(f"expected a 2D frame, got shape {f.shape}")
    if not (0 < r_min_px < r_max_px):
        raise ParameterError(f"expected 0 < r_min_px < r_max_px, got {r_min_px}, {r_max_px}")
    if n_sectors < 8:
        raise ParameterError(f"n_sectors must be >= 8, got {n_sectors}")
    valid = np.isfinite(f) if mask is None else (np.asarray(mask, bool) & np.isfinite(f))
    f = np.where(valid, f, 0.0)
    cy, cx = map(float, center_yx)
    ec = 0.5 * ellipticity * np.cos(2 * np.radians(ellipticity_angle_deg))
    es = 0.5 * ellipticity * np.sin(2 * np.radians(ellipticity_angle_deg))
    theta = (np.arange(n_sectors) + 0.5) * 2 * np.pi / n_sectors
    resid = np.nan
    bin_r = 0.25
    band = _Band(f, valid, (cy, cx), r_min_px, r_max_px, n_sectors)
    for it in range(iterations):
        e = 2 * np.hypot(ec, es)
        ang = 0.5 * np.degrees(np.arctan2(es, ec))
        prof, w = band.profiles((cy, cx), e, ang, False, bin_r)
        sh, wt = _sector_shifts(prof, w, max_lag=int(4 / bin_r), hp_sigma=4 / bin_r)
        coef = _fit_harmonics(theta, sh * bin_r, wt)
        if coef is None:
            break
        dx, dy_up = coef[1], coef[2]
        cy -= dy_up
        cx += dx
        ok = np.isfinite(sh)
        pred = (coef[0] + coef[1] * np.cos(theta) + coef[2] * np.sin(theta)
                + coef[3] * np.cos(2 * theta) + coef[4] * np.sin(2 * theta))
        resid = float(np.sqrt(np.mean((sh[ok] * bin_r - pred[ok]) ** 2)))
        if fit_ellipticity:
            bin_l = 0.25 / r_max_px
            prof, w = band.profiles((cy, cx), e, ang, True, bin_l)
            sh, wt = _sector_shifts(prof, w, max_lag=int(0.02 / bin_l) + 2, hp_sigma=4 / bin_r)
            c2 = _fit_harmonics(theta, sh * bin_l, wt)
            if c2 is not None:
                # Stretch along theta: log r shift = ec' cos 2theta + es' sin 2theta (residual ellipse).
                ec += c2[3]
                es += c2[4]
        if abs(dx) < 0.005 and abs(dy_up) < 0.005 and it >= 1:
            break
    e = 2 * np.hypot(ec, es)
    ang = (0.5 * np.degrees(np.arctan2(es, ec))) % 180.0
    return {"center_yx": (cy, cx), "ellipticity": float(e) if fit_ellipticity else float(ellipticity),
            "ellipticity_angle_deg": float(ang) if fit_ellipticity else float(ellipticity_angle_deg),
            "residual_px": resid}


def find_center(frame, *, mask=None, initial_yx=None, r_min_px: float | None = None,
                r_max_px: float | None = None, ellipticity: float = 0.0, ellipticity_angle_deg: float = 0.0,
                fit_ellipticity: bool = True, n_sectors: int = 24) -> dict:
    """Pattern centre (sub-pixel) and ellipticity of one diffraction frame.

    Parameters
    ----------
    frame : 2D array
    mask : bool array, optional
        True for valid pixels (see :func:`temtrack.frame.radial.detect_mask`).
    initial_yx : (float, float), optional
        Starting point; default :func:`coarse_center`.
    r_min_px, r_max_px : float, optional
        Radial band for the refinement; default 8% of the frame to 4 px inside the nearest edge.
    ellipticity, ellipticity_angle_deg : float
        Starting (or fixed, with ``fit_ellipticity=False``) ellipse.
    fit_ellipticity : bool
    n_sectors : int

    Returns
    -------
    dict: ``center_yx``, ``ellipticity``, ``ellipticity_angle_deg``, ``residual_px``.
    """
    f = np.asarray(frame)
    if f.ndim != 2:
        raise ParameterError(f"expected a 2D frame, got shape {f.shape}")
    rows, cols = f.shape
    c0 = coarse_center(f, mask=mask) if initial_yx is None else tuple(map(float, initial_yx))
    if r_min_px is None:
        r_min_px = 0.08 * min(rows, cols)
    if r_max_px is None:
        r_max_px = min(c0[0], c0[1], rows - 1 - c0[0], cols - 1 - c0[1]) - 6
    if r_max_px <= r_min_px + 10:
        raise ParameterError(f"centre {c0} leaves no ring band between r_min_px={r_min_px} and the frame edge")
    return refine_center(f, center_yx=c0, mask=mask, r_min_px=r_min_px, r_max_px=r_max_px,
                         ellipticity=ellipticity, ellipticity_angle_deg=ellipticity_angle_deg,
                         fit_ellipticity=fit_ellipticity, n_sectors=n_sectors)
