"""Diffraction rings over time: per-frame peaks, linking into tracks, joint refinement, Scherrer sizes.

Per frame, peaks are found on the Bragg part of I(q) (the profile minus a SNIP baseline, which
keeps the diffuse background and broad amorphous halos out) and located by Caruana's
log-parabola (a Gaussian fitted to the top five bins in closed form). Peaks are linked frame
to frame by optimal assignment within a q tolerance (gaps allowed).
Each track is then refined jointly over all frames: ring positions and widths are shared by all
frames while amplitudes vary per frame (variable projection), which pins a ring's position with
the whole movie's counts and yields an intensity for every frame. Two rings closer than their width
(beta-Sn 101 and Na15Sn4 332 are 0.5 px apart) appear as one track whose position walks as one
grows and the other fades; such a track is split in two when a two-ring model with different time
evolutions explains the q-t data significantly better (BIC).

This is hand-written because peak-fitting packages (lmfit, pyxem's ring fitting) fit one profile
at a time and cannot share ring positions across frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, optimize, signal

from temtrack.errors import ParameterError

SCHERRER_K = 0.9
FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))
PEAK_FIELDS = ("q_nm_inv", "area", "fwhm_q_nm_inv", "height")


def snip_baseline(y: np.ndarray, *, half_width_bins: int = 12) -> np.ndarray:
    """SNIP baseline (Ryan et al. 1988) on a LLS-transformed profile; NaNs are interpolated over.

    The clipping window cannot be wider than the profile: on a short profile (a small frame, e.g.
    48 px gives about 30 radial bins) the half width is capped at ``(size - 1) // 2`` bins, so
    rings still come out, with broad features (halos) less completely moved into the baseline.
    """
    y = np.asarray(y, dtype=np.float64)
    good = np.isfinite(y)
    if good.sum() < 3:
        return np.full_like(y, np.nan)
    x = np.arange(y.size)
    yi = np.interp(x, x[good], y[good])
    v = np.log(np.log(np.sqrt(np.clip(yi, 0, None) + 1) + 1) + 1)
    n = v.size
    for w in range(1, min(int(half_width_bins), (n - 1) // 2) + 1):
        a = np.empty_like(v)
        a[:] = v
        a[w:n - w] = np.minimum(v[w:n - w], 0.5 * (v[:n - 2 * w] + v[2 * w:]))
        v = a
    base = (np.exp(np.exp(v) - 1) - 1) ** 2 - 1
    base[~good] = np.nan
    return base


def _gauss(x, c, s):
    return np.exp(-0.5 * ((x - c) / s) ** 2) / (s * np.sqrt(2 * np.pi))


def find_ring_peaks(q_nm_inv, intensity, *, max_peaks: int = 64, min_snr: float = 5.0,
                    baseline_half_width_bins: int = 12, max_fwhm_q_nm_inv: float | None = None) -> np.ndarray:
    """Bragg-ring peaks of one azimuthally averaged profile.

    Parameters
    ----------
    q_nm_inv : array (m,)
        Uniform q grid (1/nm).
    intensity : array (m,)
        I(q); NaN bins are ignored.
    max_peaks : int
        Size of the returned table (extra rows are NaN; strongest peaks kept).
    min_snr : float
        Minimum prominence over the noise (robust, from the baseline-corrected residual).
    baseline_half_width_bins : int
        SNIP window; broader features (halos, background) go to the baseline.
    max_fwhm_q_nm_inv : float, optional
        Peaks fitted wider than this are dropped (default: 2/3 of the SNIP window).

    Returns
    -------
    ndarray (max_peaks, 4): columns ``q_nm_inv, area, fwhm_q_nm_inv, height`` (area and height
    in the units of ``intensity`` times 1/nm and as given), sorted by q, NaN-padded.
    """
    q = np.asarray(q_nm_inv, dtype=np.float64)
    y = np.asarray(intensity, dtype=np.float64)
    if q.shape != y.shape or q.ndim != 1 or q.size < 8:
        raise ParameterError(f"expected equal 1D q and intensity arrays of >= 8 bins, got {q.shape}, {y.shape}")
    out = np.full((max_peaks, 4), np.nan)
    dq = float(np.median(np.diff(q)))
    if max_fwhm_q_nm_inv is None:
        max_fwhm_q_nm_inv = baseline_half_width_bins * dq * 2 / 3 * 2
    base = snip_baseline(y, half_width_bins=baseline_half_width_bins)
    r = y - base
    good = np.isfinite(r)
    if good.sum() < 8:
        return out
    rf = np.where(good, r, 0.0)
    rs = ndimage.gaussian_filter1d(rf, 1.0)
    # Local noise (per-bin noise grows towards low q, where bins hold fewer pixels): robust
    # running median of |first differences|, sqrt(2) for the difference of two samples.
    d1 = np.abs(np.diff(rf))
    d1 = np.append(d1, d1[-1])
    d1[~good] = np.nan
    d1 = np.where(np.isfinite(d1), d1, np.nanmedian(d1))
    noise_q = 1.4826 * ndimage.median_filter(d1, size=min(61, 2 * (q.size // 2) + 1), mode="nearest") / np.sqrt(2)
    noise_q = np.maximum(noise_q, 1e-12)
    # Smoothing over ~2.5 bins reduces the noise by about 0.5.
    idx, props = signal.find_peaks(rs / noise_q, prominence=min_snr * 0.5, distance=2)
    idx = [i for i in idx if good[max(i - 2, 0):i + 3].all()]
    found = []
    x = np.arange(-2, 3, dtype=np.float64)
    for i in idx:
        if i < 2 or i > q.size - 3:
            continue
        yy = rs[i - 2:i + 3]
        if np.any(yy <= 0):
            # Edge of a blend or low signal: fall back on the three central points.
            yy3 = rs[i - 1:i + 2]
            if np.any(yy3 <= 0):
                continue
            c2, c1, c0 = np.polyfit(x[1:4], np.log(yy3), 2)
        else:
            # Caruana's log-parabola, weighted by y^2 (the variance of log y is ~1/y^2).
            c2, c1, c0 = np.polyfit(x, np.log(yy), 2, w=yy)
        if c2 >= 0:
            continue
        mu = -c1 / (2 * c2)
        if abs(mu) > 1.5:
            continue
        s_bins = np.sqrt(-1.0 / (2 * c2))
        height = float(np.exp(c0 - c1 * c1 / (4 * c2)))
        # The 1-bin smoothing adds 1 bin^2 of variance.
        s_bins = np.sqrt(max(s_bins ** 2 - 1.0, 0.09))
        width = FWHM * s_bins * dq
        if height < min_snr * noise_q[i] or width > max_fwhm_q_nm_inv:
            continue
        found.append((q[i] + mu * dq, height * s_bins * dq * np.sqrt(2 * np.pi), width, height))
    if found:
        found.sort(key=lambda t: -t[3])
        found = sorted(found[:max_peaks])
        out[:len(found)] = found
    return out


@dataclass
class RingTrack:
    """A ring followed over time.

    Attributes
    ----------
    frames : ndarray of int
        Frames where a per-frame peak was linked to this ring.
    q_frames_nm_inv, area_frames, fwhm_frames : ndarray
        Per-frame peak fits at ``frames``.
    q_nm_inv, fwhm_q_nm_inv : float
        Jointly refined position and width (shared over frames).
    intensity : ndarray (n_frames,)
        Refined ring area per frame (every frame of the movie).
    split_from : int or None
        Index of the original track when this ring came out of a two-ring split.
    """

    frames: np.ndarray
    q_frames_nm_inv: np.ndarray
    area_frames: np.ndarray
    fwhm_frames: np.ndarray
    q_nm_inv: float = np.nan
    fwhm_q_nm_inv: float = np.nan
    q_err_nm_inv: float = np.nan
    intensity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    split_from: int | None = None

    @property
    def d_A(self) -> float:
        return 10.0 / self.q_nm_inv

    def scherrer_size_nm(self, *, instrumental_fwhm_q_nm_inv: float = 0.0, K: float = SCHERRER_K) -> float:
        """Crystallite size L = K / FWHM_q (q = 1/d), after quadrature removal of instrumental width."""
        w2 = self.fwhm_q_nm_inv ** 2 - instrumental_fwhm_q_nm_inv ** 2
        return float(K / np.sqrt(w2)) if w2 > 0 else float("inf")


def link_peaks(peaks: np.ndarray, *, tol_q_nm_inv: float, max_gap: int = 2, min_length: int = 3) -> list[RingTrack]:
    """Link per-frame peak tables (n_frames, max_peaks, 4) into tracks.

    Frame-to-frame assignment minimises the total |dq| (Hungarian algorithm) among pairs closer
    than ``tol_q_nm_inv``; a track survives ``max_gap`` frames without a peak.
    """
    from scipy.optimize import linear_sum_assignment

    P = np.asarray(peaks, dtype=np.float64)
    if P.ndim != 3 or P.shape[2] != 4:
        raise ParameterError(f"peaks must be (n_frames, max_peaks, 4), got {P.shape}")
    if tol_q_nm_inv <= 0:
        raise ParameterError(f"tol_q_nm_inv must be > 0, got {tol_q_nm_inv}")
    open_tracks: list[dict] = []
    closed: list[dict] = []
    for t in range(P.shape[0]):
        rows = P[t][np.isfinite(P[t, :, 0])]
        still = []
        for tr in open_tracks:
            if t - tr["last"] > max_gap + 1:
                closed.append(tr)
            else:
                still.append(tr)
        open_tracks = still
        used = np.zeros(len(rows), bool)
        if open_tracks and len(rows):
            qt = np.array([tr["q"][-1] for tr in open_tracks])
            cost = np.abs(qt[:, None] - rows[None, :, 0])
            big = cost > tol_q_nm_inv
            cost[big] = 1e6
            ti, pi = linear_sum_assignment(cost)
            for a, b in zip(ti, pi):
                if not big[a, b]:
                    tr = open_tracks[a]
                    tr["f"].append(t)
                    tr["q"].append(rows[b, 0])
                    tr["a"].append(rows[b, 1])
                    tr["w"].append(rows[b, 2])
                    tr["last"] = t
                    used[b] = True
        for b in np.flatnonzero(~used):
            open_tracks.append({"f": [t], "q": [rows[b, 0]], "a": [rows[b, 1]], "w": [rows[b, 2]], "last": t})
    closed.extend(open_tracks)
    out = [RingTrack(np.array(tr["f"]), np.array(tr["q"]), np.array(tr["a"]), np.array(tr["w"]))
           for tr in closed if len(tr["f"]) >= min_length]
    for tr in out:
        w = np.clip(tr.area_frames, 0, None) + 1e-12
        tr.q_nm_inv = float(np.sum(w * tr.q_frames_nm_inv) / w.sum())
        tr.fwhm_q_nm_inv = float(np.median(tr.fwhm_frames))
    out.sort(key=lambda r: r.q_nm_inv)
    return out


def _window_fit(q, Y, centres, sigmas, *, fit_bounds):
    """Variable projection: shared centres/sigmas, per-frame amplitudes + per-frame line.

    The residual sum of squares depends on the frames only through Y^T Y (m x m), so the
    nonlinear fit runs on m "pseudo-frames" (its square-root factor) whatever the movie length.
    """
    qc = q.mean()
    J = len(centres)
    C = Y.T @ Y
    lam, V = np.linalg.eigh(C)
    Z = (V * np.sqrt(np.clip(lam, 0, None))).T  # Z^T Z = C

    def design(theta):
        cols = [_gauss(q, theta[2 * j], theta[2 * j + 1]) for j in range(J)]
        cols += [np.ones_like(q), q - qc]
        return np.column_stack(cols)

    def resid(theta):
        G = design(theta)
        A, *_ = np.linalg.lstsq(G, Z.T, rcond=None)
        return (Z - (G @ A).T).ravel()

    theta0 = np.ravel(np.column_stack([centres, sigmas]))
    lo, hi = fit_bounds
    theta0 = np.clip(theta0, lo + 1e-12, hi - 1e-12)
    res = optimize.least_squares(resid, theta0, bounds=(lo, hi), x_scale="jac", max_nfev=60,
                                 xtol=1e-7, ftol=1e-7)
    G = design(res.x)
    A, *_ = np.linalg.lstsq(G, Y.T, rcond=None)
    rss = float(np.sum((Y - (G @ A).T) ** 2))
    # Position uncertainty from the Jacobian (Gauss-Newton covariance).
    try:
        dof = max(Y.size - res.x.size - A.size, 1)
        cov = np.linalg.pinv(res.jac.T @ res.jac) * rss / dof
        err = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        err = np.full(res.x.size, np.nan)
    return res.x, A[:J], rss, err


def _walks(tr: RingTrack, dq: float) -> bool:
    """True when a track's per-frame position drifts monotonically (a blend changing composition)."""
    f = tr.frames.astype(np.float64)
    qf = ndimage.median_filter(tr.q_frames_nm_inv, size=min(5, tr.frames.size), mode="nearest")
    if np.std(f) == 0 or np.std(qf) == 0:
        return False
    return abs(np.corrcoef(f, qf)[0, 1]) > 0.5 and (qf.max() - qf.min()) > 0.3 * dq


def refine_tracks(q_nm_inv, profiles, tracks: list[RingTrack], *, baseline_half_width_bins: int = 12,
                  split: bool = True, split_min_fraction: float = 0.1,
                  max_fwhm_q_nm_inv: float | None = None) -> list[RingTrack]:
    """Joint refinement of ring positions/widths over all frames, per-frame intensities, splitting.

    Parameters
    ----------
    q_nm_inv : array (m,)
    profiles : array (n_frames, m)
        Azimuthally averaged profiles (the baseline is removed here with SNIP).
    tracks : list of RingTrack
        From :func:`link_peaks`.
    split : bool
        Try to split tracks whose position walks over time into two rings.
    split_min_fraction : float
        Each ring of an accepted split must carry at least this share of the total intensity.
    max_fwhm_q_nm_inv : float, optional
        Rings refined wider than this are dropped (broad features belong to halos/background).

    Returns
    -------
    list of RingTrack (sorted by q), with ``q_nm_inv``, ``fwhm_q_nm_inv``, ``q_err_nm_inv`` and
    ``intensity`` (per frame) set.
    """
    q = np.asarray(q_nm_inv, dtype=np.float64)
    Yall = np.asarray(profiles, dtype=np.float64)
    if Yall.ndim != 2 or Yall.shape[1] != q.size:
        raise ParameterError(f"profiles must be (n_frames, {q.size}), got {Yall.shape}")
    n = Yall.shape[0]
    B = np.stack([snip_baseline(y, half_width_bins=baseline_half_width_bins) for y in Yall])
    R = Yall - B
    dq = float(np.median(np.diff(q)))
    out: list[RingTrack] = []
    for k, tr in enumerate(tracks):
        s0 = max(tr.fwhm_q_nm_inv / FWHM, 0.5 * dq)
        half = max(4 * s0, 6 * dq)
        win = (q >= tr.q_nm_inv - half) & (q <= tr.q_nm_inv + half)
        Y = R[:, win]
        qw = q[win]
        frames_ok = np.all(np.isfinite(Y), axis=1)
        if win.sum() < 6 or frames_ok.sum() < 3:
            continue
        Yf = Y[frames_ok]
        lo = np.array([qw[0], 0.3 * dq])
        hi = np.array([qw[-1], 4 * s0 + 2 * dq])
        th1, A1, rss1, err1 = _window_fit(qw, Yf, [tr.q_nm_inv], [s0], fit_bounds=(lo, hi))
        best = [(th1[0], th1[1], A1[0], err1[0])]
        if split and tr.frames.size >= 6 and _walks(tr, dq):
            # Start the two rings at the track's early and late positions.
            third = max(tr.frames.size // 3, 2)
            qa = float(np.median(tr.q_frames_nm_inv[:third]))
            qb = float(np.median(tr.q_frames_nm_inv[-third:]))
            if abs(qa - qb) < 0.2 * dq:
                qa, qb = tr.q_nm_inv - 0.5 * dq, tr.q_nm_inv + 0.5 * dq
            lo2, hi2 = np.tile(lo, 2), np.tile(hi, 2)
            th2, rss2 = None, np.inf
            # Multi-start: the two rings of a blend usually differ in width (crystallite size).
            for sa, sb in ((s0, s0), (s0, 2 * s0), (2 * s0, s0), (0.6 * s0, 0.6 * s0)):
                try:
                    cand = _window_fit(qw, Yf, [qa, qb], [sa, sb], fit_bounds=(lo2, hi2))
                except (ValueError, np.linalg.LinAlgError):
                    continue
                if cand[2] < rss2:
                    th2, A2, rss2, err2 = cand
            if th2 is not None:
                m = Yf.size
                extra = 2 + Yf.shape[0]
                bic_gain = m * np.log(rss1 / max(rss2, 1e-300)) - extra * np.log(m)
                tot = np.clip(A2, 0, None).sum(axis=1)
                share = tot / max(tot.sum(), 1e-300)
                c = np.corrcoef(A2[0], A2[1])[0, 1] if np.std(A2[0]) > 0 and np.std(A2[1]) > 0 else 1.0
                sep = abs(th2[0] - th2[2])
                narrow = max_fwhm_q_nm_inv is None or FWHM * max(th2[1], th2[3]) <= max_fwhm_q_nm_inv
                if (bic_gain > 0 and share.min() >= split_min_fraction and c < 0.5 and narrow
                        and sep > 0.1 * dq and sep < 2 * half):
                    best = [(th2[0], th2[1], A2[0], err2[0]), (th2[2], th2[3], A2[1], err2[2])]
        for qc, sc, amp, e in best:
            if max_fwhm_q_nm_inv is not None and FWHM * sc > max_fwhm_q_nm_inv:
                continue
            inten = np.full(n, np.nan)
            inten[frames_ok] = amp
            out.append(RingTrack(tr.frames, tr.q_frames_nm_inv, tr.area_frames, tr.fwhm_frames,
                                 q_nm_inv=float(qc), fwhm_q_nm_inv=float(FWHM * sc), q_err_nm_inv=float(e),
                                 intensity=inten, split_from=k if len(best) > 1 else None))
    out.sort(key=lambda r: r.q_nm_inv)
    # Two tracks converging on the same ring: keep the stronger.
    merged: list[RingTrack] = []
    for tr in out:
        if merged and abs(tr.q_nm_inv - merged[-1].q_nm_inv) < 0.3 * dq:
            if np.nansum(tr.intensity) > np.nansum(merged[-1].intensity):
                merged[-1] = tr
            continue
        merged.append(tr)
    return merged


def sampling_fwhm_q_nm_inv(pixel_size_inv_nm: float, bin_px: float = 0.5, oversample: int = 2) -> float:
    """FWHM (1/nm) that pixel area, pixel splitting and q binning add to every ring.

    Variances add: a 1-px box (the detector pixel) 1/12, the ``oversample`` sub-pixel radii of
    the splitting (n^2 - 1) / (12 n^2), the ``bin_px`` box bin_px^2 / 12 (all in px^2).
    """
    n = int(oversample)
    var_px = 1.0 / 12 + (n * n - 1) / (12.0 * n * n) + bin_px ** 2 / 12
    return float(FWHM * pixel_size_inv_nm * np.sqrt(var_px))


def intensity_snr(intensity) -> float:
    """Peak of a ring's (3-frame median-smoothed) intensity curve over its frame-to-frame noise.

    Noise tracks (linked noise peaks) have intensities scattered around zero (SNR ~ 1-2); real
    rings rise well above their own scatter.
    """
    y = np.asarray(intensity, dtype=np.float64)
    y = y[np.isfinite(y)]
    if y.size < 3:
        return 0.0
    d = np.diff(y)
    noise = 1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2)
    peak = float(np.max(ndimage.median_filter(y, size=3, mode="nearest")))
    return peak / noise if noise > 0 else (np.inf if peak > 0 else 0.0)
