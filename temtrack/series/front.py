r"""Reaction-front position along a wire, per frame, from what changes where the wire reacts.

The per-frame measurements of :mod:`temtrack.series.kymograph` give, along the line and for every
frame, four channels that change when a stretch of wire sodiates: the fitted diameter (it swells),
the axial attenuation of the cylinder fit and the mean attenuation of the core (density and
thickness change; darker *or* lighter depending on the materials) and the texture (diffraction
contrast disappears, amorphous speckle appears). The front is where these changes stop.

Method
------
1. *Change* of each channel relative to the first frames (the reference, before anything moved):
   :math:`z_k(s,t) = (c_k(s,t) - c_k^{ref}(s)) / \sigma_k`, with :math:`\sigma_k` the channel's
   frame-to-frame noise (robust scale of its temporal differences).
2. *Combined change*: the change pattern of the last frames is decomposed by SVD over channels; its
   first right-singular vector ``g`` is the signature of the reaction in these channels (a matched
   filter: channels weighted by their signal-to-noise, with the sign the data show). The combined
   change :math:`z = \sum_k g_k z_k` is scaled so that fully reacted wire reads 1 and pristine 0.
   Nothing assumes the reacted part is darker or lighter.
3. *Step fit per frame*: :math:`z(s) = b + a\,\Phi((x - s)/w)` over the part of the line where the
   wire is seen clearly (not under the Na source, not past the wire's end); for every candidate
   ``x`` on a fine grid (a, b) follow in closed form, a parabola through the best three refines
   ``x`` below the grid step and the curvature of the residual sum of squares gives its 1-sigma
   uncertainty (inflated for the overlap of neighbouring bins). ``w`` (front width convolved with
   the bin) is estimated once from all frames aligned on their fronts.
4. *Decisions*: a frame's front is detected when the step is significant (``a / sigma_a`` above
   ``min_significance``) and large (``a`` > 0.3 of full reaction). Frames before the first
   persistent detection are "before_front" (NaN, not noise); a front at or beyond the far end of
   the measured wire is "left_wire" (excluded from fits); if too few frames show a front the result
   says "no reaction front detected" with the evidence (best step significance, change contrast).
5. *Temporal regularisation*: the front of a sodiation only moves forward, so a weighted isotonic
   (monotone non-decreasing) regression of the detected positions is reported as
   ``monotonic_nm``; frames far off it (robust 5 sigma) are flagged "outlier" and left out of the
   kinetics fit. The curvature-based uncertainties are scaled up when the scatter about a running
   median says they are too small. The per-frame positions themselves are not smoothed, so their errors stay
   independent for the kinetics confidence intervals.

Why hand-written: no library tracks a reaction front; the pieces (closed-form linear least squares
on a grid, isotonic regression by pool-adjacent-violators) are a few lines of numpy each.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from temtrack.errors import ParameterError

__all__ = ["CHANNELS", "FrontResult", "isotonic_increasing", "track_front"]

CHANNELS = ("diameter", "axial_attenuation", "core_attenuation", "texture")

FLAG_OK = "ok"
FLAG_BEFORE = "before_front"
FLAG_NOT_DETECTED = "not_detected"
FLAG_LEFT = "left_wire"
FLAG_OUTLIER = "outlier"


@dataclass
class FrontResult:
    """Front positions per frame with their uncertainties and decisions.

    Attributes
    ----------
    time_s : ndarray (n,)
    position_nm : ndarray (n,)
        Front position from the contact; NaN where no front is measured (see ``flags``).
    uncertainty_nm : ndarray (n,)
        1-sigma uncertainty of each position.
    monotonic_nm : ndarray (n,)
        Isotonic (never receding) fit of the detected positions.
    flags : list of str
        Per frame: 'ok', 'before_front', 'not_detected', 'left_wire', 'outlier'.
    used_for_fit : ndarray of bool (n,)
        Frames whose position the kinetics fit may use.
    detected : bool
        Whether a front was found at all.
    message : str
        Why not, with the evidence, when ``detected`` is False; else ''.
    evidence : dict
        ``max_step_significance``, ``change_contrast_sigma``, ``min_significance``, ...
    signature : dict
        Weight of each channel in the combined change (sign included).
    transition_width_nm : float
        Width ``w`` of the fitted step.
    change : ndarray (n, n_bins)
        Combined change map (0 pristine, 1 reacted) on the bins ``bin_s_nm``.
    bin_s_nm : ndarray (n_bins,)
    valid_s_nm : (float, float)
        Stretch of the line where the wire was measurable.
    warnings : list of str
    """

    time_s: np.ndarray
    position_nm: np.ndarray
    uncertainty_nm: np.ndarray
    monotonic_nm: np.ndarray
    flags: list
    used_for_fit: np.ndarray
    detected: bool
    message: str
    evidence: dict
    signature: dict
    transition_width_nm: float
    change: np.ndarray
    bin_s_nm: np.ndarray
    valid_s_nm: tuple
    warnings: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "time_s": self.time_s,
            "position_nm": self.position_nm,
            "uncertainty_nm": self.uncertainty_nm,
            "monotonic_nm": self.monotonic_nm,
            "flags": list(self.flags),
            "used_for_fit": self.used_for_fit,
            "detected": self.detected,
            "message": self.message,
            "evidence": self.evidence,
            "signature": self.signature,
            "transition_width_nm": self.transition_width_nm,
            "valid_s_nm": list(self.valid_s_nm),
        }


def longest_true_run(mask) -> tuple[int, int]:
    """First and last index of the longest run of True; ``(0, -1)`` (an empty range) if there is none."""
    best, start, rng = 0, None, (0, -1)
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            if i - start > best:
                best, rng = i - start, (start, i - 1)
            start = None
    return rng


def isotonic_increasing(y, w=None) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators); NaN entries skipped."""
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=np.float64)
    out = np.full_like(y, np.nan)
    idx = np.flatnonzero(np.isfinite(y) & np.isfinite(w) & (w > 0))
    if idx.size == 0:
        return out
    vals, wts, cnt = [], [], []
    for v, ww in zip(y[idx], w[idx]):
        vals.append(v); wts.append(ww); cnt.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, c2 = vals.pop(), wts.pop(), cnt.pop()
            tot = wts[-1] + w2
            vals[-1] = (vals[-1] * wts[-1] + v2 * w2) / tot
            wts[-1] = tot
            cnt[-1] += c2
    out[idx] = np.repeat(vals, cnt)
    return out


def _robust_sigma(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 3:
        return float("nan")
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _nanmean_quiet(a: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmean`` that gives NaN for all-NaN slices without a RuntimeWarning.

    Silencing the warning with ``warnings.catch_warnings`` is not thread-safe (it swaps a
    process-wide filter list), so the analysis run from a GUI worker thread leaked "Mean of empty
    slice"; counting explicitly needs no filter.
    """
    a = np.asarray(a, dtype=np.float64)
    fin = np.isfinite(a)
    cnt = fin.sum(axis=axis)
    tot = np.where(fin, a, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def _nanmedian_quiet(a: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmedian`` that gives NaN for all-NaN slices without a RuntimeWarning."""
    a = np.asarray(a, dtype=np.float64)
    fin = np.isfinite(a)
    # NaN sorts last: the median of the finite values of each slice by index arithmetic.
    srt = np.sort(np.where(fin, a, np.nan), axis=axis)
    cnt = fin.sum(axis=axis, keepdims=True)
    lo = np.clip((cnt - 1) // 2, 0, None)
    hi = np.clip(cnt // 2, 0, None)
    m = 0.5 * (np.take_along_axis(srt, lo, axis=axis) + np.take_along_axis(srt, hi, axis=axis))
    return np.where(cnt > 0, m, np.nan).squeeze(axis=axis)


def _late_signature(z_late: np.ndarray, chans_late: np.ndarray) -> np.ndarray:
    """Mean change of each channel over the last frames, per position, shape (K, n_positions).

    A position the last frames could not measure (the drift carried its profile off the frame,
    typically next to a Na source at the frame's edge) says nothing about how that stretch
    reacted. Reading it as "no change" made the normalisation divide its real change by a floor
    and turned it into a spurious step of 3x full reaction that pinned the front near the
    contact for a sixth of the movie. Such positions take the signature of the nearest position
    measured in enough late frames: contrast varies slowly along a wire.
    """
    measured = np.isfinite(chans_late).all(axis=0)                  # (n_late, n_v)
    count = measured.sum(axis=0)
    zl = np.where(measured[None], z_late, 0.0)
    late = zl.sum(axis=1) / np.maximum(count, 1)[None, :]
    enough = count >= max(2, (z_late.shape[1] + 2) // 3)
    if not enough.any():
        return np.zeros_like(late)
    if not enough.all():
        idx = np.arange(late.shape[1])
        src = np.flatnonzero(enough)
        nearest = src[np.clip(np.searchsorted(src, idx), 0, src.size - 1)]
        left = src[np.clip(np.searchsorted(src, idx) - 1, 0, src.size - 1)]
        nearest = np.where(np.abs(left - idx) <= np.abs(nearest - idx), left, nearest)
        late[:, ~enough] = late[:, nearest[~enough]]
    return np.where(np.isfinite(late), late, 0.0)


def _best_width(rel: np.ndarray, vals: np.ndarray, cands: np.ndarray) -> int:
    """Index of the width ``c`` in ``cands`` minimising ``mean((vals - Phi(rel / c))^2)``.

    The same minimum as evaluating every candidate, at a few exact evaluations: the error of
    every candidate is first approximated from a histogram of ``rel`` (1/32 px bins, erfc on the
    bin centres), then an exact descent over neighbouring candidates starts at its minimum.
    Evaluating all 77 candidates exactly on every (frame, position) point took most of the
    front tracking's time.
    """
    def exact(k):
        return float(np.mean((vals - 0.5 * special.erfc(rel / (math.sqrt(2) * cands[k]))) ** 2))

    h = 1.0 / 32
    lo = float(rel.min())
    b = np.floor((rel - lo) / h).astype(np.int64)
    cnt = np.bincount(b).astype(np.float64)
    sv = np.bincount(b, weights=vals)
    used = cnt > 0
    centre = lo + (np.flatnonzero(used) + 0.5) * h
    phi = 0.5 * special.erfc(centre[None, :] / (math.sqrt(2) * cands[:, None]))     # (n_cands, n_bins)
    approx = (phi * phi) @ cnt[used] - 2 * (phi @ sv[used])
    k = int(np.argmin(approx))
    errs = {k: exact(k)}
    while True:
        for j in (k - 1, k + 1):
            if 0 <= j < cands.size and j not in errs:
                errs[j] = exact(j)
        # Lowest error among k and its neighbours; the lower index on a tie, like argmin.
        best = min((j for j in (k - 1, k, k + 1) if j in errs), key=lambda j: (errs[j], j))
        if best == k:
            return k
        k = best


def _step_fit(z: np.ndarray, s: np.ndarray, x_grid: np.ndarray, w: float):
    """Closed-form fit of ``b + a Phi((x - s)/w)`` for every x of the grid, for each row of z.

    Returns per row: best x (refined), its curvature-based sigma (unscaled), a, sigma_a, b,
    residual variance and the index of the best grid point.
    """
    T = 0.5 * special.erfc((s[None, :] - x_grid[:, None]) / (math.sqrt(2) * w))   # (n_x, n_s)
    m = np.isfinite(z).astype(np.float64)
    zz = np.where(m > 0, z, 0.0)
    n = m.sum(axis=1)                                    # (rows,)
    sz = zz.sum(axis=1)
    szz = (zz * zz).sum(axis=1)
    st = m @ T.T                                         # (rows, n_x)
    stt = m @ (T * T).T
    stz = zz @ T.T
    # The same arithmetic as det = n stt - st^2, a = (n stz - st sz) / det, b = (sz - a st) / n,
    # rss = szz - a stz - b sz, written in place: (rows, n_x) temporaries dominated the time.
    n_c, sz_c, szz_c = n[:, None], sz[:, None], szz[:, None]
    tmp = np.empty_like(st)
    det = np.multiply(n_c, stt, out=stt)
    det -= np.multiply(st, st, out=tmp)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        a = np.multiply(n_c, stz)
        a -= np.multiply(st, sz_c, out=tmp)
        a /= det
        b = np.multiply(a, st, out=st)
        np.subtract(sz_c, b, out=b)
        b /= n_c
        rss = np.multiply(a, stz, out=stz)
        np.subtract(szz_c, rss, out=rss)
        rss -= np.multiply(b, sz_c, out=tmp)
    bad = ~np.isfinite(rss)
    bad |= ~(det > 1e-9)
    bad |= ~(a > 0)
    rss[bad] = np.inf
    k = np.argmin(rss, axis=1)
    rows = np.arange(z.shape[0])
    kc = np.clip(k, 1, x_grid.size - 2)
    r0 = rss[rows, kc]
    rm, rp = rss[rows, kc - 1], rss[rows, kc + 1]
    with np.errstate(invalid="ignore"):
        curv = rm - 2 * r0 + rp
    step = x_grid[1] - x_grid[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.where(np.isfinite(curv) & (curv > 0), 0.5 * (rm - rp) / curv, 0.0)
        off = np.clip(off, -0.5, 0.5)
        x = x_grid[kc] + off * step
        dof = np.maximum(n - 3, 1)
        var = rss[rows, k] / dof
        sig_x = np.sqrt(2 * var / np.where(curv > 0, curv, np.nan)) * step
        sig_a = np.sqrt(var * n / det[rows, k])
    return x, sig_x, a[rows, k], sig_a, b[rows, k], var, k


def track_front(series, time_s, *, pixel_size_nm: float, n_reference: int | None = None,
                min_significance: float = 5.0, min_level: float = 0.3, min_contrast: float = 8.0) -> FrontResult:
    """Track the reaction front along the wire in every frame.

    Parameters
    ----------
    series : WireSeries
        Per-frame measurements from :func:`temtrack.series.kymograph.measure_wire_series`.
    time_s : array_like (n_frames,)
        Time of each measured frame.
    pixel_size_nm : float
    n_reference : int, optional
        Frames at the start used as the unreacted reference (default: n/30, between 3 and 10).
    min_significance : float
        Step amplitude over its uncertainty needed to accept a front in a frame.
    min_level : float
        Step amplitude needed, as a fraction of the full reaction contrast.
    min_contrast : float
        Change of the last frames against the reference, in units of its noise, below which no
        front is reported at all.

    Returns
    -------
    FrontResult
    """
    time_s = np.asarray(time_s, dtype=np.float64)
    d = np.asarray(series.diameter_px, dtype=np.float64)
    n_t, n_b = d.shape
    if time_s.shape != (n_t,):
        raise ParameterError(f"time_s must have one value per frame ({n_t}), got shape {time_s.shape}")
    if not (pixel_size_nm > 0):
        raise ParameterError(f"pixel_size_nm must be positive, got {pixel_size_nm}")
    if n_reference is None:
        n_reference = int(np.clip(n_t // 30, 3, 10))
    if n_t < n_reference + 3:
        raise ParameterError(f"front tracking needs at least {n_reference + 3} frames, got {n_t}")
    s_px = series.bin_s_px
    stride = series.sampler.stride_px
    overlap = max(1.0, series.sampler.bin_px / stride)
    warnings: list[str] = []

    with np.errstate(invalid="ignore", divide="ignore"):
        chans = np.stack([d, series.amplitude, series.core_attenuation,
                          np.log(np.clip(series.texture, 1e-12, None))])
    chans[~np.isfinite(chans)] = np.nan
    ref = _nanmedian_quiet(chans[:, :n_reference], axis=1)                  # (K, n_b)
    d_ref = ref[0]
    med_d = np.nanmedian(d_ref) if np.isfinite(d_ref).any() else np.nan
    good_ref = np.isfinite(ref).all(axis=0) & (np.abs(d_ref - med_d) < 0.25 * med_d)
    lo, hi = longest_true_run(good_ref)
    empty = FrontResult(time_s=time_s, position_nm=np.full(n_t, np.nan), uncertainty_nm=np.full(n_t, np.nan),
                        monotonic_nm=np.full(n_t, np.nan), flags=[FLAG_NOT_DETECTED] * n_t,
                        used_for_fit=np.zeros(n_t, bool), detected=False, message="", evidence={},
                        signature={}, transition_width_nm=float("nan"), change=np.full((n_t, n_b), np.nan),
                        bin_s_nm=s_px * pixel_size_nm, valid_s_nm=(float("nan"), float("nan")),
                        warnings=warnings)
    if hi - lo + 1 < 8:
        empty.message = ("no reaction front detected: the wire could not be measured along the line "
                         f"(diameter fits consistent over only {max(0, hi - lo + 1)} positions)")
        return empty
    sl = slice(lo, hi + 1)
    s_v = s_px[sl]

    # Per-channel noise from temporal differences (changes are slow and sparse, noise is not).
    sig = np.array([_robust_sigma(np.diff(c[:, sl], axis=0)) / math.sqrt(2) for c in chans])
    keep = np.isfinite(sig) & (sig > 0)
    z = np.where(keep[:, None, None], (chans - ref[:, None, :]) / np.where(keep, sig, 1.0)[:, None, None], 0.0)
    z = z[:, :, sl]

    # Per-position signature: the change each channel shows in the last frames. Where the wire
    # has reacted by then, the combined change is the matched filter with that local signature,
    # i.e. the fraction reacted (1 = as changed as at the end); where it has not, the floor keeps
    # the combination from amplifying noise. This absorbs contrast that varies along the wire
    # (diffraction contrast that vanishes is not uniform) and any sign of any channel.
    n_late = max(3, n_t // 15)
    late = _late_signature(z[:, -n_late:], chans[:, -n_late:, sl]) * keep[:, None]
    snr2 = (late ** 2).sum(axis=0)
    top = snr2 >= np.quantile(snr2, 0.9)
    typical = float(np.median(snr2[snr2 > 0.25 * snr2.max()])) if snr2.max() > 0 else 0.0
    floor = max(0.25 * typical, 1e-12)
    contrast = float(math.sqrt(np.median(snr2[top]) * n_late)) if top.any() else 0.0
    zn = np.einsum("ks,kts->ts", late, z) / np.maximum(snr2, floor)[None, :]
    missing = ~np.isfinite(chans[:, :, sl]).all(axis=0)      # any channel unmeasured
    zn[missing] = np.nan
    gsum = late[:, snr2 > 0.25 * snr2.max()].sum(axis=1) if snr2.max() > 0 else np.zeros(len(CHANNELS))
    gnorm = np.linalg.norm(gsum)
    signature = {name: float(gk / gnorm) if gnorm > 0 else 0.0 for name, gk in zip(CHANNELS, gsum)}
    x_grid = np.arange(s_v[0], s_v[-1] + 1e-9, 0.25 * stride)
    w = math.hypot(series.sampler.bin_px / math.sqrt(12), 3.0)

    def fit_all(zn, w):
        # Step fit with a given width, then the width from all frames aligned on their fronts.
        for _ in range(2):
            x, sx, a, sa, b, _var, _k = _step_fit(zn, s_v, x_grid, w)
            sx = sx * math.sqrt(overlap)
            sa = sa * math.sqrt(overlap)
            signif = a / sa
            inside = (x > s_v[0] + 2 * stride) & (x < s_v[-1] - 2 * stride)
            det = np.isfinite(x) & (signif > min_significance) & (a > min_level) & inside
            if contrast < min_contrast:
                det[:] = False
            if det.sum() < 5:
                break
            rel = (s_v[None, :] - x[det][:, None]).ravel()
            vals = ((zn[det] - b[det][:, None]) / a[det][:, None]).ravel()
            ok = np.isfinite(vals) & (np.abs(rel) < 30)
            if ok.sum() < 20:
                break
            cands = np.linspace(1.0, 20.0, 77)
            w = float(cands[_best_width(rel[ok], vals[ok], cands)])
        return x, sx, a, sa, b, signif, inside, det, w

    x, sx, _a, _sa, _b, signif, inside, det, w = fit_all(zn, w)
    late_start = n_t - n_late
    if det.sum() >= 5 and det[late_start:].any():
        # Second pass: one signature for the whole wire, each channel weighted by its mean change
        # over the stretch reacted in the late frames over (noise + its variation along that
        # stretch). The channels whose change is the same everywhere (in practice the diameter)
        # mark the front's position with the least position-dependent bias.
        reach = float(np.min(x[late_start:][det[late_start:]])) - (3 * w + series.sampler.bin_px)
        region = s_v < reach
        if region.sum() >= 3:
            m = late[:, region].mean(axis=1)
            v = late[:, region].var(axis=1)
            g = np.where(keep, m / (1.0 / n_late + v + 1e-12), 0.0)
            if np.linalg.norm(g) > 0:
                g = g / np.linalg.norm(g)
                signature = {name: float(gk) for name, gk in zip(CHANNELS, g)}
                zc = np.einsum("k,kts->ts", g, z)
                zc[missing] = np.nan
                proj = g @ late
                level = float(np.median(proj[region]))
                if np.isfinite(level) and level > 0:
                    # Normalise each position by the change it shows once reacted where the late
                    # frames show it reacted, elsewhere by the typical level.
                    from scipy.ndimage import median_filter
                    smooth = median_filter(proj, size=5, mode="nearest")
                    lvl = np.where(region, np.maximum(smooth, 0.3 * level), level)
                    zn2 = zc / lvl[None, :]
                    fit2 = fit_all(zn2, w)
                    if fit2[7].sum() >= 0.8 * det.sum():
                        zn = zn2
                        x, sx, _a, _sa, _b, signif, inside, det, w = fit2
    if det.sum() >= 5:
        # Final fit in a window around each frame's front: far from it the change level drifts
        # along the wire (contrast that varies with position) and would pull a global step.
        half = max(8 * w, 12 * stride)
        x0 = np.where(np.isfinite(x), x, np.nanmedian(x))
        zw = np.where(np.abs(s_v[None, :] - x0[:, None]) <= half, zn, np.nan)
        xw, sxw, *_ = fit_all(zw, w)
        use = np.isfinite(xw) & det
        x = np.where(use, xw, x)
        sx = np.where(use, sxw, sx)
    change = np.full((n_t, n_b), np.nan)
    change[:, sl] = zn

    max_sig = float(np.nanmax(np.where(inside, signif, np.nan))) if np.isfinite(signif).any() else float("nan")
    evidence = {"max_step_significance": max_sig, "min_significance": min_significance,
                "change_contrast_sigma": float(contrast), "reference_frames": n_reference,
                "detected_frames": int(det.sum())}
    flags = [FLAG_NOT_DETECTED] * n_t
    pos = np.full(n_t, np.nan)
    unc = np.full(n_t, np.nan)
    min_frames = max(5, math.ceil(0.03 * n_t))
    result = FrontResult(time_s=time_s, position_nm=pos, uncertainty_nm=unc, monotonic_nm=np.full(n_t, np.nan),
                         flags=flags, used_for_fit=np.zeros(n_t, bool), detected=False, message="",
                         evidence=evidence, signature=signature, transition_width_nm=w * pixel_size_nm,
                         change=change, bin_s_nm=s_px * pixel_size_nm,
                         valid_s_nm=(float(s_v[0] * pixel_size_nm), float(s_v[-1] * pixel_size_nm)),
                         warnings=warnings)
    if det.sum() < min_frames:
        result.message = (f"no reaction front detected: the change of the last frames against the first "
                          f"is {contrast:.1f} times its noise (a front needs > {min_contrast:g}) and the best "
                          f"step along the wire is {max_sig:.1f} sigma (needs > {min_significance:g} sigma in "
                          f"at least {min_frames} frames; {int(det.sum())} qualified)")
        return result

    # Frames whose wire is all changed (front past the far end), or whose front sits at the end.
    fin_zn = np.isfinite(zn)
    last_idx = zn.shape[1] - 1 - np.argmax(fin_zn[:, ::-1], axis=1)
    last_valid = np.where(fin_zn.any(axis=1), s_v[last_idx], np.nan)
    whole = _nanmean_quiet(np.where(np.abs(s_v[None, :] - s_v[-1]) < 6 * stride, zn, np.nan), axis=1)
    beyond = ~det & (whole > 0.5)
    at_end = det & (x > last_valid - 2 * w)
    # First persistent detection: 3 of the next 5 frames detected.
    persist = np.convolve(det.astype(int), np.ones(5, int), mode="full")[4:4 + n_t] >= 3
    first = int(np.argmax(persist & det)) if (persist & det).any() else int(np.argmax(det))
    for i in range(n_t):
        if i < first:
            flags[i] = FLAG_BEFORE
        elif beyond[i] or at_end[i]:
            flags[i] = FLAG_LEFT
        elif det[i]:
            flags[i] = FLAG_OK
            pos[i] = x[i] * pixel_size_nm
            unc[i] = sx[i] * pixel_size_nm
    okm = np.array([f == FLAG_OK for f in flags])
    wts = 1.0 / np.where(okm, unc, np.nan) ** 2
    mono = isotonic_increasing(np.where(okm, pos, np.nan), np.where(okm, wts, 0.0))
    # Scatter about a local (running-median) trend, in units of the stated uncertainties: the
    # curvature-based sigmas miss correlated noise, so they are scaled up when the scatter says so.
    idx = np.flatnonzero(okm)
    if idx.size >= 9:
        from scipy.ndimage import median_filter
        trend = np.full(n_t, np.nan)
        trend[idx] = median_filter(pos[idx], size=9, mode="nearest")
        scale = _robust_sigma(((pos - trend) / unc)[idx]) * math.sqrt(9 / 8)
        if np.isfinite(scale) and scale > 1.0:
            unc[okm] *= scale
    resid = (pos - mono) / unc
    rs = _robust_sigma(resid[okm])
    if np.isfinite(rs) and rs > 0:
        out = okm & (np.abs(resid - np.nanmedian(resid[okm])) > 5 * max(rs, 1.0))
        for i in np.flatnonzero(out):
            flags[i] = FLAG_OUTLIER
        okm &= ~out
        mono = isotonic_increasing(np.where(okm, pos, np.nan), np.where(okm, wts, 0.0))
    result.monotonic_nm = mono
    result.used_for_fit = okm
    result.detected = True
    n_left = sum(f == FLAG_LEFT for f in flags)
    if n_left:
        warnings.append(f"the front reached the end of the measured wire in {n_left} frame(s); "
                        "those frames are flagged 'left_wire' and left out of the kinetics fit")
    n_out = sum(f == FLAG_OUTLIER for f in flags)
    if n_out:
        warnings.append(f"{n_out} front position(s) far off the monotonic trend flagged 'outlier'")
    return result
