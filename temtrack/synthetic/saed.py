"""Synthetic in situ SAED movies (sodiation of tin) with exactly known ground truth.

The movie shows the powder rings of beta-Sn fading while the broad halo of amorphous NaxSn rises
and then gives way to the rings of Na15Sn4, with sigmoid phase-fraction curves of known onsets.
Every ingredient an analysis must cope with is there: ring intensities from the phase library,
Gaussian ring widths from a finite crystallite size (Scherrer, K = 0.9), a diffuse background
decaying with q, a saturated central beam partly hidden by a beam stop (disc and arm), a slightly
elliptical pattern (projector distortion), a drifting pattern centre and Poisson noise. The hard
case of the issue is built in: beta-Sn 101 (2.793 A) and Na15Sn4 332 (2.801 A) lie half a pixel
apart at the default calibration and can only be told apart by their opposite time evolution.

Pixels are rendered by evaluating the azimuthally averaged model I(q) on a fine grid and sampling
it at ``oversample**2`` points per pixel, so a pixel holds its area-average like a real detector.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from temtrack.errors import ParameterError
from temtrack.phases.library import default_library

SCHERRER_K = 0.9
DEFAULT_PHASES = ("beta-Sn", "amorphous-NaxSn", "Na15Sn4")
DEFAULT_CRYSTALLITE_NM = {"beta-Sn": 40.0, "Na15Sn4": 15.0}
HARD_PAIR = (("beta-Sn", "101"), ("Na15Sn4", "332"))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def default_fractions(time_s: np.ndarray) -> dict[str, np.ndarray]:
    """beta-Sn -> amorphous NaxSn -> Na15Sn4 with two sigmoid steps at 30% and 65% of the movie."""
    T = max(float(time_s[-1] - time_s[0]), 1e-9)
    t = time_s - time_s[0]
    s1 = _sigmoid((t - 0.30 * T) / (0.05 * T))
    s2 = _sigmoid((t - 0.65 * T) / (0.05 * T))
    return {"beta-Sn": 1.0 - s1, "amorphous-NaxSn": s1 * (1.0 - s2), "Na15Sn4": s1 * s2}


def hard_pair_pixel_size(library=None, separation_px: float = 0.5) -> float:
    """Calibration (1/nm per px) that puts beta-Sn 101 and Na15Sn4 332 ``separation_px`` apart."""
    lib = library or default_library()
    q = []
    for name, hkl in HARD_PAIR:
        ph = lib[name]
        q.append(ph.q_nm_inv[ph.hkl.index(hkl)])
    return abs(q[0] - q[1]) / separation_px


def _ellipse_matrix_inv(ellipticity: float, angle_deg: float) -> np.ndarray:
    # Detector offsets (x right, y up) = A @ true offsets, A = R diag(1+e/2, 1-e/2) R^T.
    phi = np.radians(angle_deg)
    R = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    A = R @ np.diag([1 + ellipticity / 2, 1 - ellipticity / 2]) @ R.T
    return np.linalg.inv(A)


def make_saed_movie(*, n_frames: int = 60, shape: tuple[int, int] = (512, 512),
                    pixel_size_inv_nm: float | None = None, phases: dict | None = None, seed: int = 0,
                    dose: float = 400.0, frame_interval_s: float = 1.0,
                    center_yx: tuple[float, float] | None = None,
                    center_drift_px: tuple[float, float] = (1.5, -2.0),
                    ellipticity: float = 0.01, ellipticity_angle_deg: float = 30.0,
                    beam_stop: bool = True, crystallite_size_nm: dict | None = None,
                    background_scale: float = 1.0, saturation: int = 16383, oversample: int = 2,
                    onset_threshold: float = 0.1, onset_persist_frames: int = 3):
    """Make a synthetic SAED movie of tin sodiation.

    Parameters
    ----------
    n_frames : int
    shape : (rows, cols)
    pixel_size_inv_nm : float, optional
        Calibration in 1/nm per pixel; default puts the beta-Sn 101 / Na15Sn4 332 pair 0.5 px apart
        (frames of 512 px or more; smaller frames get a coarser default so the rings fit).
    phases : dict, optional
        ``{name: per-frame fraction array}``; default :func:`default_fractions`.
    seed : int
    dose : float
        Counts per pixel of the diffuse background near the first ring (sets the Poisson noise).
    frame_interval_s : float
    center_yx : (float, float), optional
        Pattern centre of frame 0 (default: near the middle, off the pixel grid).
    center_drift_px : (dy, dx)
        Total linear drift of the centre over the movie (plus a small wobble).
    ellipticity : float
        (major - minor) / mean axis of the rings on the detector.
    ellipticity_angle_deg : float
        Major-axis direction, counter-clockwise from +x (col axis, y pointing up on screen).
    beam_stop : bool
        Add a beam stop (disc over the central beam and an arm to the detector edge).
    crystallite_size_nm : dict, optional
        Per crystalline phase; ring FWHM in q is 0.9 / size (Scherrer, K = 0.9).
    background_scale : float
    saturation : int
        Detector full scale; the central beam is clipped there.
    oversample : int
        Sub-pixel samples per axis.
    onset_threshold, onset_persist_frames
        Definition of the true onsets (see :func:`temtrack.series.phase_fractions.onset_times`).

    Returns
    -------
    frames : ndarray of uint16, shape (n_frames, rows, cols)
    truth : dict
        JSON-ready ground truth (centres, ellipticity, fractions, onsets, rings, hard pair).
    """
    from temtrack.series.phase_fractions import onset_times

    if n_frames < 1 or len(shape) != 2 or min(shape) < 32:
        raise ParameterError(f"expected n_frames >= 1 and a 2D shape of at least 32 px, got {n_frames}, {shape}")
    if not (0 <= ellipticity < 0.2):
        raise ParameterError(f"ellipticity must be in [0, 0.2), got {ellipticity}")
    if oversample < 1:
        raise ParameterError(f"oversample must be >= 1, got {oversample}")
    lib = default_library()
    rng = np.random.default_rng(seed)
    rows, cols = shape
    # Default: the hard pair half a pixel apart, unless the frame is too small to show the
    # beta-Sn rings out to 211 (q = 4.96 1/nm); then a coarser calibration (pair closer still).
    p = (float(pixel_size_inv_nm) if pixel_size_inv_nm else
         max(hard_pair_pixel_size(lib), 5.3 / (min(rows, cols) / 2 - 12)))
    time_s = np.arange(n_frames) * float(frame_interval_s)
    fractions = {k: np.asarray(v, dtype=np.float64) for k, v in
                 (phases.items() if phases is not None else default_fractions(time_s).items())}
    for k, v in fractions.items():
        if v.shape != (n_frames,):
            raise ParameterError(f"phase {k!r}: expected {n_frames} fractions, got shape {v.shape}")
        lib[k]  # noqa: B018 - raises for unknown names
    sizes = dict(DEFAULT_CRYSTALLITE_NM)
    sizes.update(crystallite_size_nm or {})

    if center_yx is None:
        center_yx = (rows / 2 - 0.5 + 3.37, cols / 2 - 0.5 - 4.21)
    frac_t = np.linspace(0.0, 1.0, n_frames)
    wobble = 0.15 * np.sin(2 * np.pi * frac_t * 1.5)
    centers = np.stack([center_yx[0] + center_drift_px[0] * frac_t + wobble,
                        center_yx[1] + center_drift_px[1] * frac_t - wobble], axis=1)

    r_max_px = min(rows, cols) / 2 - 6
    q_fine = np.arange(0.0, (np.hypot(rows, cols) + 4) * p, p / 16)
    fwhm = {n: SCHERRER_K / sizes.get(n, 20.0) for n in fractions}
    profiles = {n: lib[n].profile(q_fine, fwhm_q_nm_inv=None if lib[n].is_amorphous else fwhm[n])
                for n in fractions}
    # Diffuse background: inelastic/thermal diffuse scattering falling with q, in dose units.
    q0 = 10.0 / 2.9
    bg = background_scale * (1.6 * np.exp(-q_fine / (0.55 * q0)) + 0.25 / (1 + (q_fine / q0) ** 2))
    ring_scale = 6.0  # puts the strongest ring about 1-3x the local background
    bg_level = float(np.interp(q0, q_fine, bg))

    # Sub-pixel sample offsets and the fixed detector grid.
    o = (np.arange(oversample) + 0.5) / oversample - 0.5
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    sub_y = (yy[..., None, None] + o[:, None])  # (rows, cols, os, 1)
    sub_x = (xx[..., None, None] + o[None, :])  # (rows, cols, 1, os)
    Ainv = _ellipse_matrix_inv(ellipticity, ellipticity_angle_deg)

    stop_mask = np.zeros(shape, bool)
    if beam_stop:
        cy0, cx0 = centers[0]
        disc = np.hypot(yy - cy0, xx - cx0) < 0.02 * min(rows, cols) + 2
        # Arm from the disc to the bottom-left corner (angle 225 degrees on screen).
        ang = np.radians(225.0)
        ux, uy = np.cos(ang), -np.sin(ang)   # unit vector in (col, row)
        t = (xx - cx0) * ux + (yy - cy0) * uy
        perp = np.abs(-(xx - cx0) * uy + (yy - cy0) * ux)
        arm = (t > 0) & (perp < 0.02 * min(rows, cols) + 2)
        stop_mask = disc | arm

    frames = np.empty((n_frames, rows, cols), dtype=np.uint16)
    model = np.empty((rows, cols))
    for i in range(n_frames):
        cy, cx = centers[i]
        u = (sub_x - cx).astype(np.float32)
        v = (-(sub_y - cy)).astype(np.float32)
        q = np.hypot(Ainv[0, 0] * u + Ainv[0, 1] * v, Ainv[1, 0] * u + Ainv[1, 1] * v) * np.float32(p)
        prof = bg.copy()
        for n, f in fractions.items():
            prof += ring_scale * f[i] * profiles[n]
        vals = np.interp(q.ravel(), q_fine, prof).reshape(q.shape)
        model[:] = vals.mean(axis=(2, 3)) * dose
        # Central beam: very bright and narrow, saturating the detector.
        # Central beam (only near the centre, where it is not negligible): bright and saturating.
        y0, y1 = max(int(cy) - 80, 0), min(int(cy) + 81, rows)
        x0, x1 = max(int(cx) - 80, 0), min(int(cx) + 81, cols)
        r2 = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2
        model[y0:y1, x0:x1] += (50.0 * saturation * np.exp(-r2 / (2 * 5.0 ** 2))
                                + 0.02 * saturation * np.exp(-np.sqrt(r2) / 6.0))
        if beam_stop:
            model[stop_mask] = 0.01 * model[stop_mask] + 5.0
        counts = rng.poisson(np.minimum(model, 4 * saturation)).astype(np.float64)
        frames[i] = np.clip(counts, 0, saturation).astype(np.uint16)

    onsets = onset_times(time_s, fractions, threshold=onset_threshold, persist_frames=onset_persist_frames)
    rings = []
    q_lo = (0.05 * min(rows, cols) + 20) * p
    # Rings whose whole circle stays on the detector in every frame (8 px margin).
    edge = np.min(np.minimum.reduce([centers[:, 0], centers[:, 1], rows - 1 - centers[:, 0], cols - 1 - centers[:, 1]]))
    q_hi = (min(r_max_px, edge) - 8) * p
    for n in fractions:
        ph = lib[n]
        prof_peak = {}
        for j in ph.rings_in(q_lo, q_hi):
            qr = ph.q_nm_inv[j]
            norm = ph.intensity[ph.d_A >= 1.0].sum()
            area = ring_scale * dose * ph.intensity[j] / norm / (2 * np.pi * qr) * float(fractions[n].max())
            prof_peak[j] = area
            rings.append({"phase": n, "hkl": ph.hkl[j], "d_A": float(ph.d_A[j]), "q_nm_inv": float(qr),
                          "radius_px": float(qr / p), "relative_intensity": float(ph.intensity[j]),
                          "max_area_counts_nm_inv": float(area), "amorphous": bool(ph.is_amorphous),
                          "fwhm_q_nm_inv": float(ph.fwhm_q_nm_inv[j]) if ph.is_amorphous else float(fwhm[n])})
    pair = []
    for name, hkl in HARD_PAIR:
        if name in fractions:
            ph = lib[name]
            pair.append({"phase": name, "hkl": hkl, "d_A": float(ph.d_A[ph.hkl.index(hkl)]),
                         "radius_px": float(ph.q_nm_inv[ph.hkl.index(hkl)] / p)})
    truth = {
        "kind": "saed", "n_frames": n_frames, "shape": [rows, cols], "pixel_size_inv_nm": p,
        "frame_interval_s": float(frame_interval_s), "time_s": time_s, "center_yx": centers,
        "ellipticity": float(ellipticity), "ellipticity_angle_deg": float(ellipticity_angle_deg),
        "phases": {k: v for k, v in fractions.items()},
        "onsets_s": onsets, "onset_threshold": onset_threshold, "onset_persist_frames": onset_persist_frames,
        "crystallite_size_nm": {k: sizes.get(k) for k in fractions if not lib[k].is_amorphous},
        "scherrer_K": SCHERRER_K, "fwhm_q_nm_inv": {k: fwhm[k] for k in fractions if not lib[k].is_amorphous},
        "rings": rings, "hard_pair": pair, "q_range_nm_inv": [q_lo, q_hi], "dose": dose,
        "background_level_counts": bg_level * dose, "saturation": saturation,
        "beam_stop_fraction": float(stop_mask.mean()), "seed": seed,
    }
    return frames, truth


def write_saed_movie(path: str | os.PathLike, **kwargs) -> tuple[Path, Path]:
    """Render with :func:`make_saed_movie` and write the calibrated TIFF + ``<name>.truth.json``."""
    from temtrack.synthetic import save_synthetic

    return save_synthetic(path, *make_saed_movie(**kwargs))
