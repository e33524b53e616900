r"""Volume expansion of a sodiated nanowire from its pristine and sodiated diameters.

Conventions
-----------
With :math:`d_0` the pristine and :math:`d_1` the sodiated diameter and :math:`r = d_1/d_0`:

* diameter ratio :math:`r`;
* areal (cross-section) expansion :math:`A_1/A_0 - 1 = r^2 - 1`;
* volume expansion with no axial strain :math:`V_1/V_0 - 1 = r^2 - 1`: a cylinder that keeps its
  length has :math:`V \propto d^2`, so this *equals* the areal expansion (reported under both names
  because papers quote both);
* volume expansion with a measured axial strain :math:`\varepsilon_{ax} = L_1/L_0 - 1` (when the
  wire end is visible): :math:`r^2 (1 + \varepsilon_{ax}) - 1`;
* radial expansion rate: the speed of the wire surface, :math:`\dot u` with
  :math:`u(t) = (d(t) - d_0)/2` the radial displacement at a fixed probe position, from a robust
  straight-line fit of u(t) over the swelling period (where the probe's diameter goes from 10% to
  90% of its total change). It is half the rate of change of the diameter.

Uncertainties are 95% intervals, :math:`\pm 1.96\sigma` with first-order error propagation of the
independent 1-sigma errors of :math:`d_0`, :math:`d_1` and :math:`\varepsilon_{ax}`:
:math:`\sigma_r = r\sqrt{(\sigma_{d_1}/d_1)^2 + (\sigma_{d_0}/d_0)^2}`,
:math:`\sigma_{r^2-1} = 2r\sigma_r`,
:math:`\sigma_{V} = \sqrt{(2r(1+\varepsilon)\sigma_r)^2 + (r^2\sigma_\varepsilon)^2}`.
When a diameter is given as an array of per-frame values its default error is the standard error of
the mean (statistical only: a systematic edge bias of the diameter measurement is not included).

The rate uses the Theil-Sen estimator (``scipy.stats.theilslopes``: median of pairwise slopes, with
its own 95% interval), because per-frame diameters near the moving front carry occasional gross
errors that would drag an ordinary least-squares slope; no hand-written estimator is needed.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, stats

from temtrack.errors import AnalysisError, ParameterError

__all__ = ["expansion_metrics", "radial_expansion_rate"]

_Z95 = 1.959963984540054


def _diameter(value, err, name):
    """(d, sigma or None) from a scalar or an array of per-frame diameters."""
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ParameterError(f"{name}: expected a diameter in nm (number or array)") from None
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ParameterError(f"{name}: expected at least one finite diameter (nm), got none")
    d = float(arr.mean())
    if not d > 0:
        raise ParameterError(f"{name}: expected a positive diameter (nm), got {d}")
    if err is not None:
        try:
            sigma = float(err)
        except (TypeError, ValueError):
            raise ParameterError(f"{name[:-3]}_err_nm: expected one number (nm)") from None
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ParameterError(f"{name[:-3]}_err_nm: expected a finite value >= 0, got {err!r}")
    elif arr.size >= 2:
        sigma = float(arr.std(ddof=1) / math.sqrt(arr.size))
    else:
        sigma = None
    return d, sigma


def _ci(value, sigma):
    if value is None or sigma is None:
        return None
    return [value - _Z95 * sigma, value + _Z95 * sigma]


def radial_expansion_rate(
    time_s,
    diameter_nm,
    *,
    d0_nm: float | None = None,
    d1_nm: float | None = None,
    window_s: tuple[float, float] | None = None,
    lo_fraction: float = 0.1,
    hi_fraction: float = 0.9,
) -> dict:
    r"""Radial expansion rate at one probe position: slope of :math:`u(t) = (d(t) - d_0)/2`.

    Parameters
    ----------
    time_s : array_like, shape (N,)
        Times (s).
    diameter_nm : array_like, shape (N,)
        Wire diameter at the probe (nm) per time; NaNs (not measured) are dropped.
    d0_nm, d1_nm : float, optional
        Pristine and sodiated diameters at the probe. Default: median of the first and of the last
        ``max(3, N // 10)`` points. Only used to find the swelling period.
    window_s : (float, float), optional
        Swelling period (s) to fit. Default: from the first time the running-median-smoothed
        diameter reaches :math:`d_0 + f_{lo}(d_1 - d_0)` to the first later time it reaches
        :math:`d_0 + f_{hi}(d_1 - d_0)`.
    lo_fraction, hi_fraction : float
        :math:`f_{lo} < f_{hi}` in (0, 1).

    Returns
    -------
    dict
        ``rate_nm_per_s`` (:math:`\dot u`, radial surface speed), ``ci95`` ([lo, hi] from the
        Theil-Sen interval), ``diameter_rate_nm_per_s`` (:math:`\dot d = 2\dot u`), ``window_s``,
        ``n_points``, ``d0_nm``, ``d1_nm``, ``definition``.

    Raises
    ------
    ParameterError
        Mismatched arrays or invalid options.
    AnalysisError
        No swelling distinguishable from noise, or fewer than 3 points in the swelling period.
    """
    try:
        t = np.asarray(time_s, dtype=float).ravel()
        d = np.asarray(diameter_nm, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ParameterError("time_s/diameter_nm: expected numeric arrays") from None
    if t.shape != d.shape:
        raise ParameterError(
            f"time_s and diameter_nm: expected equal lengths, got {t.size} and {d.size}"
        )
    if not (0 < lo_fraction < hi_fraction < 1):
        raise ParameterError(
            f"lo_fraction, hi_fraction: expected 0 < lo < hi < 1, got {lo_fraction}, {hi_fraction}"
        )
    ok = np.isfinite(t) & np.isfinite(d)
    order = np.argsort(t[ok], kind="stable")
    t, d = t[ok][order], d[ok][order]
    if t.size < 3:
        raise AnalysisError(f"radial expansion rate: {t.size} finite diameters, at least 3 needed")
    n_edge = max(3, t.size // 10)
    d0 = float(np.median(d[:n_edge])) if d0_nm is None else float(d0_nm)
    d1 = float(np.median(d[-n_edge:])) if d1_nm is None else float(d1_nm)
    if window_s is None:
        change = d1 - d0
        noise = 1.4826 * float(np.median(np.abs(np.diff(d) - np.median(np.diff(d))))) / math.sqrt(2)
        if not abs(change) > max(3.0 * noise, 1e-9 * max(abs(d0), 1.0)):
            raise AnalysisError(
                f"radial expansion rate: no swelling detected at this probe (diameter change "
                f"{change:.3g} nm, frame-to-frame noise {noise:.3g} nm)"
            )
        size = max(3, (t.size // 20) | 1)
        smooth = ndimage.median_filter(d, size=size, mode="nearest")
        progress = (smooth - d0) / change
        above_lo = np.flatnonzero(progress >= lo_fraction)
        if above_lo.size == 0:
            raise AnalysisError(
                "radial expansion rate: the diameter never leaves its pristine value"
            )
        i0 = int(above_lo[0])
        above_hi = np.flatnonzero(progress[i0:] >= hi_fraction)
        i1 = i0 + int(above_hi[0]) if above_hi.size else t.size - 1
        window = (float(t[i0]), float(t[i1]))
    else:
        try:
            window = (float(window_s[0]), float(window_s[1]))
        except (TypeError, ValueError, IndexError):
            raise ParameterError("window_s: expected (start_s, end_s)") from None
        if not window[1] > window[0]:
            raise ParameterError(f"window_s: expected start < end, got {window_s!r}")
    sel = (t >= window[0]) & (t <= window[1])
    if sel.sum() < 3:
        raise AnalysisError(
            f"radial expansion rate: {int(sel.sum())} frames in the swelling period "
            f"{window[0]:.3g}-{window[1]:.3g} s, at least 3 needed (swelling faster than the "
            "frame rate?)"
        )
    u = 0.5 * (d[sel] - d0)
    slope, _, lo, hi = stats.theilslopes(u, t[sel], alpha=0.95)
    return {
        "rate_nm_per_s": float(slope),
        "ci95": [float(lo), float(hi)],
        "diameter_rate_nm_per_s": 2.0 * float(slope),
        "window_s": list(window),
        "n_points": int(sel.sum()),
        "d0_nm": d0,
        "d1_nm": d1,
        "definition": "du/dt with u = (d - d0)/2, Theil-Sen slope over the swelling period",
    }


def expansion_metrics(
    pristine_nm,
    sodiated_nm,
    *,
    pristine_err_nm=None,
    sodiated_err_nm=None,
    axial_strain: float | None = None,
    axial_strain_err: float | None = None,
    diameter_time_s=None,
    diameter_nm=None,
) -> dict:
    r"""Diameter ratio, areal and volume expansion and the radial expansion rate.

    Parameters
    ----------
    pristine_nm, sodiated_nm : float or array_like
        Pristine :math:`d_0` and sodiated :math:`d_1` diameters (nm); arrays (per-frame values) are
        averaged, NaNs ignored.
    pristine_err_nm, sodiated_err_nm : float, optional
        1-sigma uncertainty of :math:`d_0`, :math:`d_1`. Default: standard error of the mean for
        arrays, none (no interval) for single values.
    axial_strain : float, optional
        Measured axial strain :math:`\varepsilon_{ax} = L_1/L_0 - 1` (> -1).
    axial_strain_err : float, optional
        Its 1-sigma uncertainty (default 0).
    diameter_time_s, diameter_nm : array_like, optional
        Diameter vs time at one probe, for :func:`radial_expansion_rate`.

    Returns
    -------
    dict
        ``d0_nm``, ``d1_nm``, ``diameter_ratio`` (:math:`r = d_1/d_0`), ``areal_expansion``
        (:math:`r^2 - 1`), ``volume_expansion_no_axial_strain`` (:math:`r^2 - 1`, equal to the
        areal expansion), ``volume_expansion_with_axial_strain``
        (:math:`r^2(1 + \varepsilon_{ax}) - 1` or None), ``axial_strain``,
        ``radial_expansion_rate_nm_per_s`` (or None, with ``radial_expansion_rate_note``),
        ``radial_expansion_rate`` (the full :func:`radial_expansion_rate` result or None),
        ``sigma`` (1-sigma errors) and ``ci95`` ([lo, hi] or None per quantity).
    """
    d0, s0 = _diameter(pristine_nm, pristine_err_nm, "pristine_nm")
    d1, s1 = _diameter(sodiated_nm, sodiated_err_nm, "sodiated_nm")
    eps = None
    s_eps = None
    if axial_strain is not None:
        try:
            eps = float(axial_strain)
        except (TypeError, ValueError):
            raise ParameterError("axial_strain: expected a number (L1/L0 - 1)") from None
        if not (math.isfinite(eps) and eps > -1):
            raise ParameterError(
                f"axial_strain: expected a finite value > -1, got {axial_strain!r}"
            )
        s_eps = 0.0 if axial_strain_err is None else float(axial_strain_err)
        if not (math.isfinite(s_eps) and s_eps >= 0):
            raise ParameterError(
                f"axial_strain_err: expected a finite value >= 0, got {axial_strain_err!r}"
            )
    r = d1 / d0
    areal = r * r - 1.0
    vol_ax = None if eps is None else r * r * (1.0 + eps) - 1.0
    if s0 is None and s1 is None:
        s_r = None
    else:
        s_r = r * math.hypot((s1 or 0.0) / d1, (s0 or 0.0) / d0)
    s_areal = None if s_r is None else 2.0 * r * s_r
    s_vol_ax = None
    if eps is not None and (s_r is not None or s_eps):
        s_vol_ax = math.hypot(2.0 * r * (1.0 + eps) * (s_r or 0.0), r * r * s_eps)

    rate = None
    rate_res = None
    note = None
    if diameter_time_s is not None and diameter_nm is not None:
        try:
            rate_res = radial_expansion_rate(diameter_time_s, diameter_nm)
            rate = rate_res["rate_nm_per_s"]
        except AnalysisError as exc:
            note = str(exc)
    elif (diameter_time_s is None) != (diameter_nm is None):
        raise ParameterError("diameter_time_s and diameter_nm: expected both or neither")
    else:
        note = "no diameter-vs-time series given"

    sigma = {
        "d0_nm": s0, "d1_nm": s1, "diameter_ratio": s_r, "areal_expansion": s_areal,
        "volume_expansion_no_axial_strain": s_areal,
        "volume_expansion_with_axial_strain": s_vol_ax, "axial_strain": s_eps,
    }
    ci95 = {
        "d0_nm": _ci(d0, s0),
        "d1_nm": _ci(d1, s1),
        "diameter_ratio": _ci(r, s_r),
        "areal_expansion": _ci(areal, s_areal),
        "volume_expansion_no_axial_strain": _ci(areal, s_areal),
        "volume_expansion_with_axial_strain": _ci(vol_ax, s_vol_ax),
        "axial_strain": _ci(eps, s_eps),
        "radial_expansion_rate_nm_per_s": None if rate_res is None else rate_res["ci95"],
    }
    return {
        "d0_nm": d0,
        "d1_nm": d1,
        "diameter_ratio": r,
        "areal_expansion": areal,
        "volume_expansion_no_axial_strain": areal,
        "volume_expansion_with_axial_strain": vol_ax,
        "axial_strain": eps,
        "radial_expansion_rate_nm_per_s": rate,
        "radial_expansion_rate_note": note,
        "radial_expansion_rate": rate_res,
        "sigma": sigma,
        "ci95": ci95,
        "conventions": {
            "areal_expansion": "(d1/d0)^2 - 1",
            "volume_expansion_no_axial_strain": "(d1/d0)^2 - 1 (V ~ d^2 at constant length; "
            "equals the areal expansion)",
            "volume_expansion_with_axial_strain": "(d1/d0)^2 (1 + axial_strain) - 1",
            "radial_expansion_rate_nm_per_s": "d/dt of (d - d0)/2 at the probe over the swelling "
            "period (Theil-Sen)",
            "ci95": "+-1.96 sigma, first-order error propagation",
        },
    }
