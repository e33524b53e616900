"""Synthetic in situ HRTEM movies of a crystalline grain amorphising while its lattice expands.

Why hand-written: no public simulator produces lattice-fringe movies with a known expansion and a
known crystalline-fraction curve. The model keeps what matters for the FFT analysis:

* lattice fringes: each fringe set ``k`` is ``A_k cos(2 pi g_k . (s - c) + phi_k)`` in specimen
  coordinates ``s`` around the grain centre ``c``; ``|g_k| = 1/d_k(t)`` and ``d_k(t) = d_k(0)(1 +
  e(t))`` with the lattice strain ``e(t)`` holding at 0 and then ramping linearly (a sodiation
  onset) to ``expansion_pct`` at the last frame;
* amorphisation: the grain is a disc (smooth 1.5 px edge) that shrinks as a core with a reaction
  front moving inwards; its area follows a known curve from 1 to ``final_fraction`` of the initial;
* amorphous material: a band-limited speckle whose power sits in a halo ring at ``halo_d_nm``
  (2.9 A for amorphous NaxSn, i.e. right on top of the Sn spots) outside the grain, plus a weaker
  support-film speckle everywhere;
* imaging: specimen drift (fringes and mask rendered analytically at shifted coordinates, speckle
  shifted exactly in Fourier space), point sampling at pixel centres, and Poisson noise at ``dose``
  electrons per pixel per frame.

Conventions of the truth: angles are counter-clockwise from +x as seen on screen (rows go down) and
describe the direction of ``g`` (normal to the fringes), folded into [0, 180). ``crystalline_fraction``
is the area fraction of the whole frame covered by the grain (mask mean); ``crystalline_fraction_rel``
is that relative to frame 0. ``lattice_expansion_pct`` is ``100 e(t)``, relative to frame 0.
``drift_dy_px[i], drift_dx_px[i]``: a specimen feature at (y, x) in frame 0 is at (y + dy, x + dx)
in frame i.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from temtrack.errors import ParameterError

#: beta-Sn (I4_1/amd, a = 5.831 A, c = 3.182 A; Swanson & Tatge, NBS Circular 539 (1953)) seen
#: along [010]: (200) and (101) are 61.4 deg apart (tan = a/c).
SN_FRINGES = ((0.29155, 15.0, 0.10), (0.27932, 76.44, 0.09))


def _ring_speckle(shape, rng, *, centre_cyc_px: float, width_cyc_px: float) -> np.ndarray:
    """Zero-mean, unit-std periodic Gaussian field whose power sits in a ring (an amorphous halo)."""
    white = rng.normal(size=shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    q = np.hypot(fy, fx)
    filt = np.exp(-0.5 * ((q - centre_cyc_px) / width_cyc_px) ** 2)
    field = np.fft.irfft2(np.fft.rfft2(white) * filt, s=shape)
    return (field - field.mean()) / (field.std() or 1.0)


def _drift_path(n: int, rng: np.random.Generator, total_px: float) -> np.ndarray:
    """Smooth drift (dy, dx) per frame, zero at frame 0, about ``total_px`` long overall."""
    if n < 2 or total_px == 0:
        return np.zeros((n, 2))
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction)
    t = np.linspace(0.0, 1.0, n)
    wobble = np.cumsum(rng.normal(size=(n, 2)), axis=0)
    wobble -= wobble[0]
    wobble *= 0.15 * total_px / (np.max(np.abs(wobble)) or 1.0)
    return np.outer(t, direction) * total_px + wobble


def strain_curve(n_frames: int, *, expansion_pct: float, start_frac: float) -> np.ndarray:
    """Lattice strain ``e`` per frame: 0 up to ``start_frac`` of the movie, then linear to the end."""
    s = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)
    ramp = np.clip((s - start_frac) / max(1e-12, 1.0 - start_frac), 0.0, 1.0)
    return 0.01 * expansion_pct * ramp


def make_hrtem_movie(*, n_frames: int = 40, shape: tuple[int, int] = (256, 256),
                     pixel_size_nm: float = 0.03, frame_interval_s: float = 0.5,
                     fringes: tuple = SN_FRINGES, expansion_pct: float = 1.5,
                     expansion_start_frac: float = 0.1, grain_radius_frac: float = 0.42,
                     final_fraction: float = 0.2, amorphisation_start_frac: float = 0.15,
                     halo_d_nm: float = 0.29, amorphous_contrast: float = 0.12,
                     film_contrast: float = 0.03, dose: float = 200.0, drift_px: float = 4.0,
                     seed: int = 0) -> tuple[np.ndarray, dict]:
    """Render an HRTEM movie of one amorphising, expanding grain and return it with its truth.

    Parameters
    ----------
    n_frames : int
    shape : (rows, cols)
    pixel_size_nm : float
        0.02-0.05 nm is typical of HRTEM movies.
    frame_interval_s : float
    fringes : sequence of (d_nm, angle_deg, amplitude)
        Fringe sets at frame 0: spacing, direction of ``g`` (counter-clockwise from +x on screen)
        and amplitude as a fraction of the mean intensity.
    expansion_pct : float
        Lattice expansion reached at the last frame, in %.
    expansion_start_frac : float
        Fraction of the movie before the lattice starts to expand.
    grain_radius_frac : float
        Initial grain radius as a fraction of ``min(shape)``.
    final_fraction : float
        Grain area at the last frame relative to frame 0 (0 < f <= 1).
    amorphisation_start_frac : float
        Fraction of the movie before the grain starts to shrink.
    halo_d_nm : float
        Spacing at the centre of the amorphous halo.
    amorphous_contrast, film_contrast : float
        Standard deviations of the amorphous speckle (outside the grain) and of the support-film
        speckle (everywhere), as fractions of the mean intensity.
    dose : float
        Electrons per pixel per frame.
    drift_px : float
        Length of the smooth specimen drift over the movie.
    seed : int

    Returns
    -------
    frames : ndarray of uint16, shape (n_frames, rows, cols)
    truth : dict
        See the module docstring for the conventions.
    """
    if n_frames < 1:
        raise ParameterError(f"n_frames must be >= 1, got {n_frames}")
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 32 or cols < 32:
        raise ParameterError(f"frames must be at least 32x32 px, got {shape}")
    if not (pixel_size_nm > 0 and dose > 0 and frame_interval_s > 0):
        raise ParameterError("pixel size, dose and frame interval must be positive")
    if not (0 < final_fraction <= 1):
        raise ParameterError(f"final_fraction must be in (0, 1], got {final_fraction}")
    fringes = [tuple(map(float, f)) for f in fringes]
    for d_nm, _, amp in fringes:
        if d_nm < 2.2 * pixel_size_nm:
            raise ParameterError(f"fringe spacing {d_nm} nm is below 2.2 pixels of {pixel_size_nm} nm")
        if amp < 0:
            raise ParameterError(f"fringe amplitudes must be >= 0, got {amp}")

    rng = np.random.default_rng(seed)
    times = np.arange(n_frames) * float(frame_interval_s)
    strain = strain_curve(n_frames, expansion_pct=expansion_pct, start_frac=expansion_start_frac)
    area_rel = 1.0 - (1.0 - final_fraction) * strain_curve(
        n_frames, expansion_pct=100.0, start_frac=amorphisation_start_frac)
    r0_px = grain_radius_frac * min(rows, cols)
    radius_px = r0_px * np.sqrt(area_rel)
    drift = _drift_path(n_frames, rng, drift_px)
    phases = rng.uniform(0, 2 * np.pi, size=len(fringes))

    pad = int(math.ceil(abs(drift_px) * 1.5 + 8))
    big = (rows + 2 * pad, cols + 2 * pad)
    halo = pixel_size_nm / halo_d_nm
    amorph = _ring_speckle(big, rng, centre_cyc_px=halo, width_cyc_px=0.25 * halo)
    film = _ring_speckle(big, rng, centre_cyc_px=0.6 * halo, width_cyc_px=0.5 * halo)
    fy = np.fft.fftfreq(big[0])[:, None]
    fx = np.fft.fftfreq(big[1])[None, :]
    tex_fft = np.fft.fft2(amorph + 1j * film)

    cy, cx = (rows - 1) / 2.0, (cols - 1) / 2.0
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    frames = np.empty((n_frames, rows, cols), dtype=np.uint16)
    cryst = np.empty(n_frames)
    for i in range(n_frames):
        dy, dx = drift[i]
        sy, sx = yy - dy - cy, xx - dx - cx          # specimen coordinates about the grain centre
        mask = 0.5 * (1.0 - np.tanh((np.hypot(sy, sx) - radius_px[i]) / 1.5))
        cryst[i] = mask.mean()
        lattice = np.zeros_like(mask)
        for (d_nm, ang, amp), ph in zip(fringes, phases):
            g_px = pixel_size_nm / (d_nm * (1.0 + strain[i]))    # cycles per pixel
            t = math.radians(ang)
            gx, gy = g_px * math.cos(t), -g_px * math.sin(t)    # screen ccw, rows down
            lattice += amp * np.cos(2 * np.pi * (gx * sx + gy * sy) + ph)
        shift = np.exp(-2j * np.pi * (fy * dy + fx * dx))
        tex = np.fft.ifft2(tex_fft * shift)[pad:pad + rows, pad:pad + cols]
        intensity = (1.0 + mask * lattice + amorphous_contrast * (1.0 - mask) * tex.real
                     + film_contrast * tex.imag)
        frames[i] = np.minimum(rng.poisson(dose * np.clip(intensity, 0, None)), 65535)

    d_t = [[d * (1.0 + e) for e in strain] for d, _, _ in fringes]
    truth = {
        "kind": "hrtem",
        "seed": seed,
        "n_frames": n_frames,
        "frame_shape": [rows, cols],
        "pixel_size_nm": pixel_size_nm,
        "frame_interval_s": frame_interval_s,
        "time_s": times.tolist(),
        "sets": [{"d0_nm": d, "angle_deg": a % 180.0, "amplitude": amp, "d_nm": dd}
                 for (d, a, amp), dd in zip(fringes, d_t)],
        "lattice_expansion_pct": (100.0 * strain).tolist(),
        "expansion_pct": expansion_pct,
        "expansion_start_s": float(expansion_start_frac * times[-1]),
        "crystalline_fraction": cryst.tolist(),
        "crystalline_fraction_rel": (cryst / cryst[0]).tolist(),
        "grain_radius_px": radius_px.tolist(),
        "grain_center_px": [cx, cy],
        "halo_d_nm": halo_d_nm,
        "drift_dy_px": drift[:, 0].tolist(),
        "drift_dx_px": drift[:, 1].tolist(),
        "dose_e_per_px": dose,
    }
    return frames, truth


def write_hrtem_movie(path: str | os.PathLike, **kwargs) -> tuple[Path, Path]:
    """Render with :func:`make_hrtem_movie` and write the calibrated TIFF + ``<name>.truth.json``."""
    from temtrack.synthetic import save_synthetic

    return save_synthetic(path, *make_hrtem_movie(**kwargs))
