"""Pristine and sodiated wire diameters, and diameter vs time at chosen positions along the wire.

The per-frame, per-position diameters come from projected-cylinder fits of perpendicular profiles
(:mod:`temtrack.frame.edges`, run by :mod:`temtrack.series.kymograph`). Which positions are
pristine or sodiated in a frame follows from the front (:mod:`temtrack.series.front`): pristine is
ahead of the front by a margin (early frames), sodiated well behind it (late frames), so the
transition zone never mixes into either value. Each value is the median over positions in a frame,
then the mean over frames; its uncertainty is the standard error of that mean (frame-to-frame
scatter), and the spread along the wire is reported separately.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from temtrack.errors import ParameterError
from temtrack.series.front import _nanmean_quiet, _nanmedian_quiet

__all__ = ["DiameterResult", "summarize_diameters"]


@dataclass
class DiameterResult:
    """Diameters in nm.

    Attributes
    ----------
    time_s : ndarray (n,)
    s_nm : ndarray (n_bins,)
        Positions along the wire of the map's columns.
    map_nm, map_err_nm : ndarray (n, n_bins)
        d(s, t) and its 1-sigma uncertainty (NaN outside the measurable wire).
    pristine_nm, pristine_err_nm, sodiated_nm, sodiated_err_nm : float
        NaN when not measurable (e.g. no front detected: no sodiated stretch).
    pristine_spread_nm, sodiated_spread_nm : float
        Standard deviation along the wire (real variation plus noise).
    probes : dict
        ``"<s in nm>"`` -> per-frame diameters (nm) at that position.
    probes_err : dict
        Same keys, per-frame 1-sigma uncertainties.
    warnings : list of str
    """

    time_s: np.ndarray
    s_nm: np.ndarray
    map_nm: np.ndarray
    map_err_nm: np.ndarray
    pristine_nm: float
    pristine_err_nm: float
    pristine_spread_nm: float
    sodiated_nm: float
    sodiated_err_nm: float
    sodiated_spread_nm: float
    probes: dict
    probes_err: dict
    warnings: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "pristine_nm": self.pristine_nm, "pristine_err_nm": self.pristine_err_nm,
            "pristine_spread_nm": self.pristine_spread_nm,
            "sodiated_nm": self.sodiated_nm, "sodiated_err_nm": self.sodiated_err_nm,
            "sodiated_spread_nm": self.sodiated_spread_nm,
            "time_s": self.time_s, "probes": self.probes, "probes_err_nm": self.probes_err,
        }


def _frame_medians(d: np.ndarray, mask: np.ndarray, min_bins: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame median and std over the masked positions (NaN where too few)."""
    vals = np.where(mask, d, np.nan)
    cnt = np.isfinite(vals).sum(axis=1)
    # Explicit NaN-aware reductions: silencing nanmedian's all-NaN warning with
    # warnings.catch_warnings is not thread-safe (GUI worker threads).
    med = _nanmedian_quiet(vals, axis=1)
    mean = _nanmean_quiet(vals, axis=1)
    sd = np.sqrt(_nanmean_quiet((vals - mean[:, None]) ** 2, axis=1))
    med[cnt < min_bins] = np.nan
    sd[cnt < min_bins] = np.nan
    return med, sd


def _mean_sem(v: np.ndarray) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float("nan")
    # Robust against a few bad frames: drop points beyond 5 robust sigma first.
    med = np.median(v)
    rs = 1.4826 * np.median(np.abs(v - med))
    if rs > 0:
        v = v[np.abs(v - med) <= 5 * rs]
    return float(np.mean(v)), float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")


def summarize_diameters(series, front, time_s, *, pixel_size_nm: float, probes_nm=(),
                        margin_nm: float | None = None, probe_half_width_nm: float = 2.0) -> DiameterResult:
    """Pristine/sodiated diameters and probe time series from a wire series and its front.

    Parameters
    ----------
    series : WireSeries
    front : FrontResult
        Its ``valid_s_nm`` bounds the usable stretch; its positions split pristine from sodiated.
    time_s : array_like (n,)
    pixel_size_nm : float
    probes_nm : sequence of float
        Positions along the wire (nm from the contact) to report d(t) at.
    margin_nm : float, optional
        Distance kept from the front on either side (default: 3 front widths plus one bin).
    probe_half_width_nm : float
        Fits within this distance of a probe position are averaged (inverse-variance weights).
        The stated per-frame uncertainties are statistical only: the speckle of amorphous reacted
        wire moves single fits by up to ~2 nm from the true diameter, the same in every frame.

    Returns
    -------
    DiameterResult
    """
    if not (pixel_size_nm > 0):
        raise ParameterError(f"pixel_size_nm must be positive, got {pixel_size_nm}")
    time_s = np.asarray(time_s, dtype=np.float64)
    px = float(pixel_size_nm)
    d = np.asarray(series.diameter_px, dtype=np.float64) * px
    de = np.asarray(series.diameter_err_px, dtype=np.float64) * px
    n_t, n_b = d.shape
    s = series.bin_s_px * px
    lo, hi = front.valid_s_nm
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo, hi = s[0], s[-1]
    inside = (s >= lo) & (s <= hi)
    d = np.where(inside[None, :], d, np.nan)
    de = np.where(inside[None, :], de, np.nan)
    notes: list[str] = []
    bin_nm = series.sampler.bin_px * px
    width = front.transition_width_nm if np.isfinite(front.transition_width_nm) else 3.0
    margin = (3 * width + bin_nm) if margin_nm is None else float(margin_nm)

    flags = np.array(front.flags)
    x = np.where(np.isfinite(front.position_nm), front.position_nm, front.monotonic_nm)
    if front.detected:
        # Front at the contact before it is first seen; beyond the wire once it left.
        x = np.where(flags == "before_front", 0.0, x)
        x = np.where(flags == "left_wire", np.inf, x)
        xs = x[:, None]
        pristine_mask = s[None, :] > xs + margin
        sodiated_mask = s[None, :] < xs - margin
        early = np.arange(n_t) < max(1, n_t // 2)
        late = np.arange(n_t) >= n_t - max(1, n_t // 3)
        pristine_mask &= early[:, None] & ~np.isnan(xs)
        sodiated_mask &= late[:, None] & ~np.isnan(xs)
    else:
        n_ref = int(front.evidence.get("reference_frames", max(1, n_t // 10)) or 1)
        pristine_mask = np.zeros((n_t, n_b), bool)
        pristine_mask[:n_ref] = True
        sodiated_mask = np.zeros((n_t, n_b), bool)
    pm, psd = _frame_medians(d, pristine_mask)
    sm, ssd = _frame_medians(d, sodiated_mask)
    p_nm, p_err = _mean_sem(pm)
    s_nm, s_err = _mean_sem(sm)
    if not np.isfinite(p_nm):
        notes.append("no pristine stretch of wire measurable ahead of the front in the early frames")
    if front.detected and not np.isfinite(s_nm):
        notes.append("no sodiated stretch of wire measurable well behind the front in the late frames")

    probes, probes_err = {}, {}
    half = max(bin_nm / 2, series.sampler.stride_px * px, float(probe_half_width_nm))
    for p in probes_nm:
        p = float(p)
        near = np.abs(s - p) <= half
        key = f"{p:g}"
        if not near.any() or p < lo or p > hi:
            notes.append(f"probe at {p:g} nm lies outside the measurable wire ({lo:.0f}-{hi:.0f} nm)")
            probes[key] = np.full(n_t, np.nan)
            probes_err[key] = np.full(n_t, np.nan)
            continue
        wts = np.where(np.isfinite(d[:, near]) & np.isfinite(de[:, near]) & (de[:, near] > 0),
                       1.0 / np.where(de[:, near] > 0, de[:, near], 1.0) ** 2, 0.0)
        wsum = wts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            probes[key] = np.where(wsum > 0, (np.nan_to_num(d[:, near]) * wts).sum(axis=1) / wsum, np.nan)
            probes_err[key] = np.where(wsum > 0, 1.0 / np.sqrt(wsum), np.nan)
    return DiameterResult(time_s=time_s, s_nm=s, map_nm=d, map_err_nm=de, pristine_nm=p_nm, pristine_err_nm=p_err,
                          pristine_spread_nm=float(np.nanmedian(psd)) if np.isfinite(psd).any() else float("nan"),
                          sodiated_nm=s_nm, sodiated_err_nm=s_err,
                          sodiated_spread_nm=float(np.nanmedian(ssd)) if np.isfinite(ssd).any() else float("nan"),
                          probes=probes, probes_err=probes_err, warnings=notes)
