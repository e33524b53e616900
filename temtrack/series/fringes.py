"""Fringe sets over time: spacing, direction, lattice expansion and a crystalline fraction.

Consumes the per-frame outputs of :mod:`temtrack.frame.spectrum` (lattice vectors, spot power,
background); nothing here touches pixels.

Definitions
-----------
* ``d_nm = pixel_size_nm / |g|`` with ``g`` in cycles/px; ``angle_deg`` is the direction of ``g``
  counter-clockwise from +x on screen, folded into [0, 180).
* Lattice expansion of a set: ``100 (d(t) / d_ref - 1)`` in %, ``d_ref`` the mean over the
  reference frames (the first ``reference_frames`` frames with the spot detected).
* Crystalline fraction: the background-subtracted Bragg power of all tracked sets,
  ``sum_j I_j(t) / sum_j I_j(ref)``. The pipeline integrates it on the *unwindowed* ROI, where the
  power of a spot is proportional to the area of the region carrying the fringes (Parseval), so
  this is the crystalline area relative to the reference frames (for a constant fringe contrast; a
  loss of contrast counts as a loss of crystallinity). It is not clipped, so noise can take it
  slightly below 0 or above 1.
* A spot counts as detected in a frame when its peak power exceeds ``min_snr`` times the background
  power per bin at the same ``|g|``; ``d``, ``angle`` and expansion are NaN where it is not.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from temtrack.errors import ParameterError


@dataclass
class FringeSeries:
    """Fringe sets tracked over a movie; arrays are (n_frames, n_sets) unless stated.

    Attributes
    ----------
    time_s : ndarray (n_frames,)
    d_nm, angle_deg : ndarray
        Spacing and direction per frame (NaN where the spot is not detected).
    amplitude : ndarray
        Window-weighted fringe amplitude (fraction of the mean intensity).
    intensity : ndarray
        Background-subtracted integrated spot power.
    snr : ndarray
        Peak power over background power per bin.
    detected : ndarray of bool
    expansion_pct : ndarray
        Lattice expansion per set in %.
    expansion_pct_mean : ndarray (n_frames,)
        Mean over the detected sets.
    crystalline_fraction : ndarray (n_frames,)
    reference_d_nm, reference_angle_deg : ndarray (n_sets,)
    reference_frames : list of list of int
        The frames each set's reference was taken from.
    """

    time_s: np.ndarray
    d_nm: np.ndarray
    angle_deg: np.ndarray
    amplitude: np.ndarray
    intensity: np.ndarray
    snr: np.ndarray
    detected: np.ndarray
    expansion_pct: np.ndarray
    expansion_pct_mean: np.ndarray
    crystalline_fraction: np.ndarray
    reference_d_nm: np.ndarray
    reference_angle_deg: np.ndarray
    reference_frames: list = field(default_factory=list)

    @property
    def n_sets(self) -> int:
        return int(self.d_nm.shape[1])


def lattice_d_nm(g_px, *, pixel_size_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Spacing (nm) and direction (deg, [0, 180), ccw on screen) of lattice vectors (..., 2)."""
    g = np.asarray(g_px, dtype=np.float64)
    if g.shape[-1] != 2:
        raise ParameterError(f"g_px must end with a (g_y, g_x) axis, got shape {g.shape}")
    if not pixel_size_nm > 0:
        raise ParameterError(f"pixel size must be positive, got {pixel_size_nm} nm")
    with np.errstate(divide="ignore"):
        d = pixel_size_nm / np.hypot(g[..., 0], g[..., 1])
    angle = np.mod(np.degrees(np.arctan2(-g[..., 0], g[..., 1])), 180.0)
    return d, angle


def _reference_rows(valid: np.ndarray, k: int) -> list[int]:
    rows = np.flatnonzero(valid)
    return rows[:k].tolist()


def track_fringes(g_px, *, pixel_size_nm: float, time_s, intensity, amplitude, snr,
                  reference_frames: int = 3, min_snr: float = 10.0) -> FringeSeries:
    """Turn per-frame lattice vectors and spot powers into fringe-set time series.

    Parameters
    ----------
    g_px : array_like, shape (n_frames, n_sets, 2)
        Refined (g_y, g_x) per frame in cycles/px.
    pixel_size_nm : float
    time_s : array_like, shape (n_frames,)
    intensity, amplitude, snr : array_like, shape (n_frames, n_sets)
        Background-subtracted spot power, window-weighted amplitude, peak-to-background ratio.
    reference_frames : int
        Number of first detected frames defining ``d_ref`` and the crystalline reference.
    min_snr : float
        Detection threshold on ``snr``.

    Returns
    -------
    FringeSeries
    """
    g = np.asarray(g_px, dtype=np.float64)
    if g.ndim != 3 or g.shape[2] != 2:
        raise ParameterError(f"g_px must have shape (n_frames, n_sets, 2), got {g.shape}")
    n, s = g.shape[:2]
    t = np.asarray(time_s, dtype=np.float64)
    if t.shape != (n,):
        raise ParameterError(f"time_s must have {n} values, got shape {t.shape}")
    arrays = {}
    for name, a in (("intensity", intensity), ("amplitude", amplitude), ("snr", snr)):
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (n, s):
            raise ParameterError(f"{name} must have shape ({n}, {s}), got {a.shape}")
        arrays[name] = a
    if int(reference_frames) < 1:
        raise ParameterError(f"reference_frames must be >= 1, got {reference_frames}")
    d, ang = lattice_d_nm(g, pixel_size_nm=pixel_size_nm)
    detected = arrays["snr"] >= min_snr
    d = np.where(detected, d, np.nan)
    ang = np.where(detected, ang, np.nan)
    ref_rows = [_reference_rows(detected[:, j], int(reference_frames)) for j in range(s)]
    ref_d = np.array([d[r, j].mean() if r else np.nan for j, r in enumerate(ref_rows)])
    ref_ang = np.array([_circular_mean_180(ang[r, j]) if r else np.nan for j, r in enumerate(ref_rows)])
    expansion = 100.0 * (d / ref_d[None, :] - 1.0)
    with np.errstate(invalid="ignore"):
        exp_mean = np.full(n, np.nan)
        counts = np.sum(np.isfinite(expansion), axis=1)
        sums = np.nansum(expansion, axis=1)
        exp_mean[counts > 0] = sums[counts > 0] / counts[counts > 0]
    # The crystalline reference uses the first frames regardless of detection: a spot too weak to
    # detect still carries (little) Bragg power.
    k = min(int(reference_frames), n)
    ref_power = float(np.sum(arrays["intensity"][:k].mean(axis=0)))
    fraction = (np.sum(arrays["intensity"], axis=1) / ref_power) if ref_power > 0 else np.full(n, np.nan)
    return FringeSeries(time_s=t, d_nm=d, angle_deg=ang, amplitude=arrays["amplitude"],
                        intensity=arrays["intensity"], snr=arrays["snr"], detected=detected,
                        expansion_pct=expansion, expansion_pct_mean=exp_mean,
                        crystalline_fraction=fraction, reference_d_nm=ref_d,
                        reference_angle_deg=ref_ang, reference_frames=ref_rows)


def _circular_mean_180(angles_deg: np.ndarray) -> float:
    """Mean of axial angles (period 180 deg) in [0, 180)."""
    a = np.radians(2.0 * np.asarray(angles_deg, dtype=np.float64))
    return float(np.mod(np.degrees(np.arctan2(np.mean(np.sin(a)), np.mean(np.cos(a)))) / 2.0, 180.0))
