"""Phase identification and phase fractions over time from azimuthally integrated SAED profiles.

Each frame's I(q) is modelled as a non-negative sum of components: a smooth diffuse background
(a few decaying basis functions), the halo of each amorphous phase, and each crystalline phase's
reference profile (library rings broadened to the measured ring width). ``scipy.optimize.nnls``
solves each frame; nothing is subtracted before the fit, so the background and the halo stay
components of their own (their per-frame weights are returned). Phase fractions are fractions of
diffracted intensity (see :mod:`temtrack.phases.library`), not volume fractions.

scipy does the solving; the design (which components, their broadening, the background basis) is
what this module adds, since no library fits SAED profiles with library phases this way.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

from temtrack.errors import ParameterError

#: Onset definition used throughout temtrack (documented in results.json).
ONSET_DEFINITION = ("first frame time from which the phase fraction stays above the threshold for "
                    "at least `persist_frames` consecutive frames (fraction median-filtered over 3 frames)")


def onset_times(time_s, fractions: dict, *, threshold: float = 0.1, persist_frames: int = 3) -> dict:
    """Onset time of each phase.

    Parameters
    ----------
    time_s : array, shape (n,)
    fractions : dict of name -> array (n,)
    threshold : float
        Fraction that counts as "present" (0 < threshold < 1).
    persist_frames : int
        Consecutive frames the fraction must stay above the threshold.

    Returns
    -------
    dict name -> float or None
        Time of the first frame of the first such run (``time_s[0]`` when present from the start),
        None when the phase never appears.
    """
    if not (0 < threshold < 1):
        raise ParameterError(f"onset threshold must be between 0 and 1, got {threshold}")
    if persist_frames < 1:
        raise ParameterError(f"persist_frames must be >= 1, got {persist_frames}")
    t = np.asarray(time_s, dtype=np.float64)
    out = {}
    for name, f in fractions.items():
        f = np.nan_to_num(np.asarray(f, dtype=np.float64), nan=0.0)
        if f.size >= 3:
            from scipy.ndimage import median_filter
            f = median_filter(f, size=3, mode="nearest")
        above = f > threshold
        k = min(persist_frames, f.size)
        run = np.convolve(above.astype(int), np.ones(k, int), mode="valid") == k
        idx = np.flatnonzero(run)
        out[name] = float(t[idx[0]]) if idx.size else None
    return out


def match_rings(d_A, library, *, phases=None, tol_A: float = 0.02, min_intensity: float = 1.0) -> list[list[dict]]:
    """Candidate library rings for each measured ring.

    Parameters
    ----------
    d_A : array
        Measured ring d-spacings in A.
    library : PhaseLibrary
    phases : list of str, optional
        Restrict to these phases.
    tol_A : float
        Match tolerance |d - d_ref| in A.
    min_intensity : float
        Ignore reference rings weaker than this (percent of the phase's strongest).

    Returns
    -------
    list (one per measured ring) of lists of ``{'phase', 'hkl', 'd_ref_A', 'delta_A', 'intensity'}``,
    closest first.
    """
    if tol_A <= 0:
        raise ParameterError(f"ring match tolerance must be > 0 A, got {tol_A}")
    names = list(phases) if phases is not None else library.names
    out = []
    for d in np.atleast_1d(np.asarray(d_A, dtype=np.float64)):
        cands = []
        for n in names:
            ph = library[n]
            if ph.is_amorphous:
                continue
            sel = np.flatnonzero((np.abs(ph.d_A - d) <= tol_A) & (ph.intensity >= min_intensity))
            for j in sel:
                cands.append({"phase": n, "hkl": ph.hkl[j], "d_ref_A": float(ph.d_A[j]),
                              "delta_A": float(d - ph.d_A[j]), "intensity": float(ph.intensity[j])})
        cands.sort(key=lambda c: abs(c["delta_A"]))
        out.append(cands)
    return out


def relevant_phases(ring_d_A, library, *, q_range_nm_inv, tol_A: float = 0.02, ring_fwhm_q_nm_inv=None,
                    halo_q_nm_inv=(), min_score: float = 0.5) -> list[str]:
    """Candidate phases whose strong rings are observed (used when the user names no phases).

    A crystalline phase is a candidate when the observed rings explain at least ``min_score`` of
    the library intensity of its rings inside the q range (rings > 10%) and its strongest ring
    in range. A library ring counts as observed within ``tol_A`` of a measured ring, or within
    0.75 FWHM of it (broad rings of small crystallites blend neighbouring reflections). An
    amorphous phase is a candidate when a broad peak lies within 10% of its first halo. The phase
    fit then drops candidates that take no intensity.
    """
    q_lo, q_hi = q_range_nm_inv
    d_obs = np.asarray(ring_d_A, dtype=np.float64)
    q_obs = 10.0 / d_obs if d_obs.size else d_obs
    w_obs = (np.zeros_like(q_obs) if ring_fwhm_q_nm_inv is None
             else np.nan_to_num(np.asarray(ring_fwhm_q_nm_inv, dtype=np.float64)))
    keep = []
    for ph in library:
        if ph.is_amorphous:
            q1 = ph.q_nm_inv[np.argmax(ph.intensity)]
            if any(abs(qh - q1) < 0.1 * q1 for qh in halo_q_nm_inv):
                keep.append(ph.name)
            continue
        sel = ph.rings_in(q_lo, q_hi, min_intensity=10.0)
        if sel.size == 0 or d_obs.size == 0:
            continue
        seen = []
        for j in sel:
            qr = ph.q_nm_inv[j]
            tol_q = np.maximum(qr * qr * tol_A / 10.0, 0.75 * w_obs)
            seen.append(bool(np.any(np.abs(q_obs - qr) <= tol_q)))
        seen = np.array(seen)
        strongest = np.argmax(ph.intensity[sel])
        score = ph.intensity[sel][seen].sum() / ph.intensity[sel].sum()
        if seen[strongest] and score >= min_score:
            keep.append(ph.name)
    return keep


def background_basis(q_nm_inv: np.ndarray, *, n_terms: int = 8) -> tuple[np.ndarray, list[str]]:
    """Non-negative smooth basis for the diffuse background: a constant and decaying exponentials.

    Scales run geometrically over the q range, so any smooth monotone decay is a non-negative
    combination to within noise.
    """
    q = np.asarray(q_nm_inv, dtype=np.float64)
    span = max(q.max() - q.min(), 1e-9)
    cols = [np.ones_like(q)]
    names = ["bg_const"]
    for k in range(n_terms):
        scale = span * 0.05 * 1.7 ** k
        cols.append(np.exp(-(q - q.min()) / scale))
        names.append(f"bg_exp_{scale:.3g}")
    return np.stack(cols, axis=1), names


def fit_phase_fractions(q_nm_inv, profiles, library, phases, *, fwhm_q_nm_inv, n_background: int = 8,
                        weights=None) -> dict:
    """Phase weights per frame by non-negative least squares of reference profiles.

    Parameters
    ----------
    q_nm_inv : array (m,)
    profiles : array (n_frames, m)
        Azimuthally averaged I(q) per frame (NaN bins are ignored).
    library : PhaseLibrary
    phases : list of str
    fwhm_q_nm_inv : float or dict
        Measured Bragg-ring FWHM in 1/nm (one value, or one per phase).
    n_background : int
        Decaying background terms besides the constant.
    weights : array (m,), optional
        Per-bin weights (e.g. 1/sqrt(expected counts)); default: 1/sqrt(mean profile).

    Returns
    -------
    dict with ``fractions`` {name: (n,)}, ``weights`` {name: (n,)} (raw amplitudes),
    ``background`` (n, m) fitted background component, ``components`` {name: (n, m)},
    ``residual_rms`` (n,), ``design`` (m, k) and ``column_names``.
    """
    q = np.asarray(q_nm_inv, dtype=np.float64)
    Y = np.asarray(profiles, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[1] != q.size:
        raise ParameterError(f"profiles must be (n_frames, {q.size}), got {Y.shape}")
    if not phases:
        raise ParameterError("no phases to fit: name at least one library phase")
    cols, names = [], []
    for n in phases:
        ph = library[n]
        w = fwhm_q_nm_inv.get(n) if isinstance(fwhm_q_nm_inv, dict) else fwhm_q_nm_inv
        cols.append(ph.profile(q, fwhm_q_nm_inv=None if ph.is_amorphous else float(w)))
        names.append(n)
    B, bnames = background_basis(q, n_terms=n_background)
    A = np.column_stack(cols + [B])
    valid_bins = np.all(np.isfinite(Y), axis=0)
    if weights is None:
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(valid_bins, Y, 0.0), axis=0)
        weights = 1.0 / np.sqrt(np.clip(mean, np.nanmax(mean) * 1e-3 + 1e-12, None))
    weights = np.where(valid_bins, np.asarray(weights, dtype=np.float64), 0.0)
    # Column scaling keeps NNLS well conditioned; undone on the coefficients.
    Aw = A * weights[:, None]
    scale = np.linalg.norm(Aw, axis=0)
    scale[scale == 0] = 1.0
    Aw = Aw / scale
    nP = len(phases)
    coef = np.zeros((Y.shape[0], A.shape[1]))
    rms = np.zeros(Y.shape[0])
    for i, y in enumerate(Y):
        yw = np.where(valid_bins, np.nan_to_num(y), 0.0) * weights
        c, r = nnls(Aw, yw, maxiter=50 * A.shape[1])
        coef[i] = c / scale
        rms[i] = r / np.sqrt(max(valid_bins.sum(), 1))
    amp = coef[:, :nP]
    total = amp.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total[:, None] > 0, amp / total[:, None], np.nan)
    return {
        "fractions": {n: frac[:, j] for j, n in enumerate(phases)},
        "weights": {n: amp[:, j] for j, n in enumerate(phases)},
        "background": coef[:, nP:] @ B.T,
        "components": {n: np.outer(amp[:, j], A[:, j]) for j, n in enumerate(phases)},
        "residual_rms": rms,
        "design": A,
        "column_names": names + bnames,
    }
