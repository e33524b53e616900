"""Synthetic movies of many nanoparticles sodiating, with exact ground truth.

Each particle is a sphere of radius ``r0`` (projected thickness ``2 sqrt(r^2 - rho^2)``) that
starts reacting at its own onset time: a reacted shell grows inward while the unreacted core
shrinks (the shrinking-core picture), and the particle swells until its volume has grown by the
factor ``volume_ratio`` (so the projected area grows by ``volume_ratio^(2/3)``). Some particles
touch their neighbours. Drift, flicker and Poisson noise as in :mod:`temtrack.synthetic.nanowire`.

Truth per particle: centre (frame-0 px), radius vs time, projected area in nm^2 vs time, onset,
core radius vs time.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from temtrack.errors import ParameterError
from temtrack.synthetic.nanowire import _band_limited_noise, _drift_path, _fourier_shift


def _place(rng, n, shape, radii_px, margin, touching_pairs):
    """Centres without overlaps, except ``touching_pairs`` pairs placed in contact."""
    centres: list[tuple[float, float]] = []
    rows, cols = shape
    order = list(range(n))
    for idx in order:
        r = radii_px[idx]
        for _ in range(5000):
            if idx % 2 == 1 and idx // 2 < touching_pairs and centres:
                # touch the previous particle (final radii), at a random angle
                py, px = centres[idx - 1]
                ang = rng.uniform(0, 2 * np.pi)
                d = radii_px[idx - 1] + r
                y, x = py + d * math.sin(ang), px + d * math.cos(ang)
            else:
                y, x = rng.uniform(margin + r, rows - margin - r), rng.uniform(margin + r, cols - margin - r)
            if not (margin + r <= y <= rows - margin - r and margin + r <= x <= cols - margin - r):
                continue
            ok = True
            for j, (cy, cx) in enumerate(centres):
                gap = math.hypot(cy - y, cx - x) - (radii_px[j] + r)
                allowed = -0.5 if (idx % 2 == 1 and j == idx - 1 and idx // 2 < touching_pairs) else 6.0
                if gap < allowed:
                    ok = False
                    break
            if ok:
                centres.append((y, x))
                break
        else:
            raise ParameterError(f"cannot place {n} particles in {shape}: use fewer or smaller particles")
    return centres


def make_particles_movie(*, n_frames: int = 60, shape: tuple[int, int] = (384, 384), pixel_size_nm: float = 0.8,
                         frame_interval_s: float = 1.0, n_particles: int = 12,
                         radius_nm: tuple[float, float] = (8.0, 20.0), volume_ratio: float = 2.2,
                         reaction_time_s: float = 20.0, onset_s: tuple[float, float] = (5.0, 30.0),
                         touching_pairs: int = 2, n_cracking: int = 0,
                         crack_width_nm: float = 2.5, film_contrast: float = 0.04, mu_pristine_per_nm: float = 0.03, mu_reacted_per_nm: float = 0.018,
                         dose: float = 40.0, drift_px: float = 8.0, n_jumps: int = 1, flicker: float = 0.03,
                         psf_px: float = 0.7, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Render a field of sodiating particles; returns ``(frames uint16, truth)``.

    Parameters
    ----------
    n_particles : int
    radius_nm : (min, max)
        Pristine radii, drawn uniformly.
    volume_ratio : float
        Final V/V0 of a fully reacted particle.
    reaction_time_s : float
        Time from a particle's onset until it is fully reacted (the core radius falls linearly,
        the interface-controlled shrinking-core law for a sphere).
    onset_s : (min, max)
        Onset times, drawn uniformly.
    touching_pairs : int
        Pairs of particles placed in contact (tests the watershed split).
    n_cracking : int
        The last ``n_cracking`` particles crack at a frame drawn in the second half of the movie,
        alternately split by a straight gap of ``crack_width_nm`` through the centre and pierced by
        a hole of 0.35 times their radius.
    film_contrast : float
        Standard deviation of the support film's attenuation texture.
    Other parameters as in :func:`temtrack.synthetic.nanowire.make_nanowire_movie`.
    """
    if n_particles < 1 or n_frames < 1:
        raise ParameterError("need at least one particle and one frame")
    if not (0 <= n_cracking <= n_particles - 2 * touching_pairs):
        raise ParameterError(f"n_cracking must be between 0 and the {n_particles - 2 * touching_pairs} "
                             f"particles not in touching pairs, got {n_cracking}")
    rng = np.random.default_rng(seed)
    rows, cols = shape
    r0_nm = rng.uniform(*radius_nm, size=n_particles)
    r1_nm = r0_nm * volume_ratio ** (1 / 3)
    onsets = rng.uniform(*onset_s, size=n_particles)
    margin = drift_px + 12
    centres = _place(rng, n_particles, shape, r1_nm / pixel_size_nm, margin, touching_pairs)
    times = np.arange(n_frames) * frame_interval_s
    drift = _drift_path(n_frames, rng, drift_px, n_jumps, (5.0, 12.0))
    gain = np.clip(1 + flicker * rng.normal(size=n_frames), 0.5, 1.5)
    pad = int(math.ceil(np.abs(drift).max() + 8))
    big = (rows + 2 * pad, cols + 2 * pad)
    cracks = {}
    for k in range(n_cracking):
        p = n_particles - 1 - k
        cracks[p] = (int(rng.integers(n_frames // 2, max(n_frames // 2 + 1, n_frames - 4))),
                     "split" if k % 2 == 0 else "hole", float(rng.uniform(0, np.pi)))
    film_fft = np.fft.fft2(film_contrast * _band_limited_noise(big, rng, 1.5 / pixel_size_nm + 0.8))
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    frames = np.empty((n_frames, rows, cols), np.uint16)
    # progress of each particle's reaction, 0..1 (core radius falls linearly with time)
    progress = np.clip((times[:, None] - onsets[None, :]) / reaction_time_s, 0, 1)
    radius_t = r0_nm[None, :] * (1 + (volume_ratio - 1) * (1 - (1 - progress) ** 3)) ** (1 / 3)
    core_t = r0_nm[None, :] * (1 - progress)
    for i in range(n_frames):
        dy, dx = drift[i]
        att = np.zeros((rows, cols))
        for p, (cy, cx) in enumerate(centres):
            rad_px = radius_t[i, p] / pixel_size_nm
            y0, y1 = int(max(0, cy + dy - rad_px - 3)), int(min(rows, cy + dy + rad_px + 4))
            x0, x1 = int(max(0, cx + dx - rad_px - 3)), int(min(cols, cx + dx + rad_px + 4))
            if y1 <= y0 or x1 <= x0:
                continue
            rho2 = ((yy[y0:y1, x0:x1] - dy - cy) ** 2 + (xx[y0:y1, x0:x1] - dx - cx) ** 2) * pixel_size_nm ** 2
            t_all = 2 * np.sqrt(np.clip(radius_t[i, p] ** 2 - rho2, 0, None))
            t_core = 2 * np.sqrt(np.clip(core_t[i, p] ** 2 - rho2, 0, None))
            a = mu_reacted_per_nm * (t_all - t_core) + mu_pristine_per_nm * t_core
            if p in cracks and i >= cracks[p][0]:
                _, kind, ang = cracks[p]
                ry, rx = yy[y0:y1, x0:x1] - dy - cy, xx[y0:y1, x0:x1] - dx - cx
                if kind == "split":
                    gap = np.abs(ry * math.cos(ang) - rx * math.sin(ang)) * pixel_size_nm < crack_width_nm / 2
                else:
                    hy, hx = 0.3 * rad_px * math.sin(ang), 0.3 * rad_px * math.cos(ang)
                    gap = np.hypot(ry - hy, rx - hx) < 0.35 * rad_px
                a = np.where(gap, 0.0, a)
            att[y0:y1, x0:x1] = np.maximum(att[y0:y1, x0:x1], a)
        film = _fourier_shift(film_fft, big, dy, dx).real[pad:pad + rows, pad:pad + cols]
        intensity = gain[i] * np.exp(-(att + 0.15 + film))
        if psf_px > 0:
            intensity = gaussian_filter(intensity, psf_px, mode="nearest")
        frames[i] = np.minimum(rng.poisson(dose * intensity), 65535)
    area = np.pi * radius_t ** 2
    truth = {
        "kind": "particles", "seed": seed, "n_frames": n_frames, "frame_shape": [rows, cols],
        "pixel_size_nm": pixel_size_nm, "frame_interval_s": frame_interval_s, "time_s": times.tolist(),
        "dose_e_per_px": dose, "volume_ratio": volume_ratio, "reaction_time_s": reaction_time_s,
        "drift_dy_px": drift[:, 0].tolist(), "drift_dx_px": drift[:, 1].tolist(),
        "film_contrast": film_contrast,
        "particles": [{"id": p, "centre_px": [centres[p][1], centres[p][0]],
                       "centre_yx_px": [centres[p][0], centres[p][1]], "radius0_nm": float(r0_nm[p]),
                       "onset_s": float(onsets[p]), "area_nm2": area[:, p].tolist(),
                       "equivalent_diameter_nm": (2 * radius_t[:, p]).tolist(),
                       "core_radius_nm": core_t[:, p].tolist(),
                       "touching": bool(p // 2 < touching_pairs),
                       "crack_frame": cracks[p][0] if p in cracks else None,
                       "crack_kind": cracks[p][1] if p in cracks else None} for p in range(n_particles)],
    }
    return frames, truth


def write_particles_movie(path: str | os.PathLike, **kwargs) -> tuple[Path, Path]:
    """Render with :func:`make_particles_movie` and write the calibrated TIFF + ``<name>.truth.json``."""
    from temtrack.synthetic import save_synthetic

    return save_synthetic(path, *make_particles_movie(**kwargs))
