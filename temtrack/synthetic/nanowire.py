"""Synthetic bright-field movies of a nanowire being sodiated, with exact ground truth.

Why hand-written: no public simulator produces in situ reaction movies with known kinetics. The model
is deliberately as hard as real data, not a toy:

* geometry: a straight cylindrical wire of diameter ``d0`` at any angle, touching a sodium source (a
  large dark particle) at its contact end; its far end may lie inside the field of view;
* mass-thickness contrast: transmitted intensity ``exp(-mu * t)`` with ``t`` the projected thickness
  of the cylinder (``2 sqrt(R^2 - r^2)``); pristine and sodiated material have different ``mu``, so
  the reacted part can come out darker *or* lighter than the pristine part (it is thicker but less
  dense);
* reaction front: the position ``x(t)`` along the axis follows the mixed (Deal-Grove) law
  ``t - t0 = x^2/(2D) + x/k`` (``k = inf`` gives the parabolic law); behind the front the diameter
  swells from ``d0`` to ``d1`` over a transition of width ``front_width_nm``;
* texture: diffraction (bend-contour) bands in the crystalline pristine part that vanish on
  amorphisation, fine speckle in the amorphous reacted part, an amorphous carbon support film;
* imaging: drift of the specimen with smooth wander plus sudden jumps, rendered exactly (the wire
  analytically at sub-pixel shifted coordinates, the film by a Fourier shift), beam-current flicker,
  and Poisson noise at a dose of ``dose`` electrons per pixel per frame in vacuum.

Conventions of the truth: ``drift_dy_px[i], drift_dx_px[i]`` is the displacement of the specimen in
frame ``i`` relative to frame 0: a feature at (y, x) in frame 0 appears at (y + dy, x + dx) in frame i.
``line_px`` = [x0, y0, x1, y1] is the wire axis in frame-0 pixel coordinates from the contact point to
the wire's far end. Front positions are in nm along the axis from the contact point.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from temtrack.errors import ParameterError


def front_position_nm(time_s, *, D_nm2_per_s: float, t0_s: float = 0.0,
                      k_nm_per_s: float = math.inf, prefactor: float = 2.0) -> np.ndarray:
    """Front position of the mixed law ``t - t0 = x^2/(P D) + x/k``; zero before ``t0``.

    Parameters
    ----------
    time_s : array_like
    D_nm2_per_s : float
        Diffusion coefficient.
    t0_s : float
        Time the front starts.
    k_nm_per_s : float
        Interface reaction rate constant; ``inf`` gives the parabolic law ``x^2 = P D (t - t0)``.
    prefactor : float
        ``P`` in the equation above (2 for one-dimensional diffusion).
    """
    tau = np.clip(np.asarray(time_s, dtype=np.float64) - t0_s, 0.0, None)
    pd = prefactor * D_nm2_per_s
    if not math.isfinite(k_nm_per_s):
        return np.sqrt(pd * tau)
    # Positive root of x^2/(PD) + x/k - tau = 0, written to stay accurate when tau is small.
    b = pd / k_nm_per_s
    return 2.0 * pd * tau / (b + np.sqrt(b * b + 4.0 * pd * tau))


def _diffusivity_to_reach(x_nm: float, tau_s: float, k_nm_per_s: float, prefactor: float) -> float:
    """D for which the mixed law reaches ``x_nm`` after ``tau_s``: x^2/(PD) = tau - x/k."""
    rest = tau_s - (x_nm / k_nm_per_s if math.isfinite(k_nm_per_s) else 0.0)
    if rest <= 0:
        raise ParameterError(f"with k = {k_nm_per_s} nm/s the front cannot reach {x_nm:.0f} nm in {tau_s:.0f} s")
    return x_nm ** 2 / (prefactor * rest)


def _drift_path(n: int, rng: np.random.Generator, total_px: float, n_jumps: int,
                jump_px: tuple[float, float]) -> np.ndarray:
    """Smooth wander plus jumps; returns (n, 2) displacements (dy, dx), zero at frame 0."""
    steps = rng.normal(size=(n, 2))
    steps[0] = 0
    wander = np.cumsum(steps, axis=0)
    # Low-pass the random walk so it looks like thermal/stage drift, then scale it.
    from scipy.ndimage import gaussian_filter1d

    wander = gaussian_filter1d(wander, sigma=max(1.0, n / 40), axis=0, mode="nearest")
    wander -= wander[0]
    span = np.max(np.linalg.norm(wander, axis=1)) or 1.0
    wander *= (0.6 * total_px) / span
    # A steady component: real drift has a dominant direction.
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction)
    wander += np.outer(np.linspace(0, 0.4 * total_px, n), direction)
    if n_jumps and n > 4:
        at = np.sort(rng.choice(np.arange(2, n - 1), size=min(n_jumps, n - 3), replace=False))
        for a in at:
            mag = rng.uniform(*jump_px)
            ang = rng.uniform(0, 2 * np.pi)
            wander[a:] += mag * np.array([math.sin(ang), math.cos(ang)])
    return wander


def _band_limited_noise(shape, rng, corr_px: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field with correlation length ``corr_px`` (periodic)."""
    white = rng.normal(size=shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    filt = np.exp(-2 * (np.pi * corr_px) ** 2 * (fy ** 2 + fx ** 2))
    field = np.fft.irfft2(np.fft.rfft2(white) * filt, s=shape)
    return (field - field.mean()) / (field.std() or 1.0)


def _fourier_shift(field_fft: np.ndarray, shape, dy: float, dx: float) -> np.ndarray:
    """Exact sub-pixel shift of a periodic band-limited field given by its full 2D FFT."""
    from scipy import fft as sfft
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    phase = (np.exp(-2j * np.pi * fy * dy) * np.exp(-2j * np.pi * fx * dx)).astype(field_fft.dtype)
    return sfft.ifft2(field_fft * phase, workers=-1)


def make_nanowire_movie(*, n_frames: int = 300, shape: tuple[int, int] = (384, 384),
                        pixel_size_nm: float = 0.8, frame_interval_s: float = 0.5,
                        angle_deg: float | None = None, d0_nm: float = 40.0, d1_nm: float = 64.0,
                        D_nm2_per_s: float | None = None, k_nm_per_s: float = math.inf,
                        t0_s: float = 5.0, prefactor: float = 2.0, front_width_nm: float = 6.0,
                        mu_pristine_per_nm: float = 0.020, mu_sodiated_per_nm: float = 0.010,
                        dose: float = 40.0, drift_px: float = 25.0, n_jumps: int = 2,
                        jump_px: tuple[float, float] = (5.0, 20.0), flicker: float = 0.04,
                        wire_end_visible: bool = True, probes_nm: tuple[float, ...] = (),
                        psf_px: float = 0.7, noise: bool = True, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Render a sodiation movie of one nanowire and return it with its ground truth.

    Parameters
    ----------
    n_frames : int
    shape : (rows, cols)
    pixel_size_nm : float
    frame_interval_s : float
    angle_deg : float, optional
        Direction of the wire from the contact to its far end, counter-clockwise from +x as seen
        on screen (y down). Random when None.
    d0_nm, d1_nm : float
        Pristine and fully sodiated diameters.
    D_nm2_per_s, k_nm_per_s, t0_s, prefactor : float
        Kinetics of the front, see :func:`front_position_nm`. With ``D_nm2_per_s=None``, D is chosen
        so that the front covers 70% of the wire by the last frame (the truth records it).
    front_width_nm : float
        Width of the diameter transition at the front.
    mu_pristine_per_nm, mu_sodiated_per_nm : float
        Mass-thickness attenuation coefficients.
    dose : float
        Electrons per pixel per frame in vacuum (8-40 is the low-dose range of in situ work).
    drift_px : float
        Scale of the smooth drift over the movie.
    n_jumps : int
        Number of sudden drift jumps, each ``jump_px`` in size.
    flicker : float
        Relative standard deviation of the beam current from frame to frame.
    wire_end_visible : bool
        Whether the far end of the wire lies inside the field of view.
    probes_nm : tuple of float
        Positions along the wire where the truth lists the diameter in every frame.
    psf_px : float
        Standard deviation of the camera's Gaussian point-spread function, px.
    noise : bool
        Poisson noise (switch off to check the truth, the output is then float32 expected counts).
    seed : int

    Returns
    -------
    frames : ndarray of uint16 (float32 without noise), shape (n_frames, rows, cols)
    truth : dict
        Everything needed to score an analysis; see the module docstring for conventions.
    """
    if n_frames < 1:
        raise ParameterError(f"n_frames must be >= 1, got {n_frames}")
    rows, cols = (int(shape[0]), int(shape[1]))
    if rows < 32 or cols < 32:
        raise ParameterError(f"frames must be at least 32x32 px, got {shape}")
    if not (0 < d0_nm and 0 < d1_nm and pixel_size_nm > 0 and dose > 0):
        raise ParameterError("diameters, pixel size and dose must be positive")
    rng = np.random.default_rng(seed)
    if angle_deg is None:
        angle_deg = float(rng.uniform(0, 360))
    theta = math.radians(angle_deg)
    ux, uy = math.cos(theta), -math.sin(theta)   # axis direction in (x, y) pixels, y down
    vx, vy = -uy, ux                              # perpendicular

    # Place the wire through the centre: its far end keeps a margin for drift and swelling from the
    # edges; the contact end may come close to an edge (the Na source may leave the field there).
    far_margin = drift_px + max(jump_px) * min(n_jumps, 2) / 2 + 0.5 * d1_nm / pixel_size_nm + 4
    near_margin = drift_px + max(jump_px) * min(n_jumps, 2) / 2 + 4
    cx, cy = (cols - 1) / 2, (rows - 1) / 2

    def reach(margin, sign):
        # Largest t with centre + sign*t*u at least `margin` px inside the frame.
        lims = []
        for c, u, size in ((cx, ux, cols), (cy, uy, rows)):
            step = sign * u
            if abs(step) > 1e-9:
                lims.append(((size - 1 - margin - c) if step > 0 else (c - margin)) / abs(step))
        return min(lims)

    t_near, t_far = reach(near_margin, -1), reach(far_margin, +1)
    if t_near + t_far < 40:
        raise ParameterError(f"frames {shape} too small for drift {drift_px} px and this wire")
    half_extent = t_near
    visible_len_px = t_near + t_far
    contact_x, contact_y = cx - half_extent * ux, cy - half_extent * uy
    wire_len_px = 0.92 * visible_len_px if wire_end_visible else 4.0 * visible_len_px
    wire_len_nm = wire_len_px * pixel_size_nm
    end_x, end_y = contact_x + wire_len_px * ux, contact_y + wire_len_px * uy

    times = np.arange(n_frames) * float(frame_interval_s)
    if D_nm2_per_s is None:
        # Choose D so that the front covers ~70% of the wire by the last frame.
        D_nm2_per_s = _diffusivity_to_reach(0.7 * wire_len_nm, max(times[-1] - t0_s, frame_interval_s),
                                            k_nm_per_s, prefactor)
    front_nm = front_position_nm(times, D_nm2_per_s=D_nm2_per_s, t0_s=t0_s,
                                 k_nm_per_s=k_nm_per_s, prefactor=prefactor)
    front_nm = np.minimum(front_nm, wire_len_nm)
    drift = _drift_path(n_frames, rng, drift_px, n_jumps, jump_px)
    gain = np.clip(1.0 + flicker * rng.normal(size=n_frames), 0.5, 1.5)

    # Specimen-fixed textures, generated once on a padded periodic grid.
    pad = int(math.ceil(np.abs(drift).max() + 8))
    big = (rows + 2 * pad, cols + 2 * pad)
    film = 0.04 * _band_limited_noise(big, rng, corr_px=1.5 / pixel_size_nm + 0.8)
    film += 0.02 * _band_limited_noise(big, rng, corr_px=6.0 / pixel_size_nm)
    speckle_big = _band_limited_noise(big, rng, corr_px=1.2 / pixel_size_nm + 0.5)
    # Film (real part) and speckle (imaginary part) move together: one complex FFT shifts both.
    textures_fft = np.fft.fft2(film + 1j * speckle_big).astype(np.complex64)
    # Bend contours along the pristine wire: a 1D random profile along s, static in the specimen.
    s_grid = np.arange(-64, int(wire_len_nm) + 64, 1.0)
    bend = _band_limited_noise((1, s_grid.size), rng, corr_px=25.0)[0]
    bend = 0.35 * np.clip(bend, 0, None)  # extra attenuation where the lattice is in Bragg condition
    na_source_r_nm = 1.0 * d1_nm

    # float32 rendering: twice as fast, and 1e-7 relative error is far below any dose's shot noise.
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    frames = np.empty((n_frames, rows, cols), dtype=np.uint16 if noise else np.float32)
    probe_diam = {float(p): [] for p in probes_nm}
    for i in range(n_frames):
        dy, dx = drift[i]
        # Specimen coordinates (frame-0 pixels) seen by each pixel of frame i.
        sx, sy = xx - dx, yy - dy
        s_nm = ((sx - contact_x) * ux + (sy - contact_y) * uy) * pixel_size_nm
        r_nm = ((sx - contact_x) * vx + (sy - contact_y) * vy) * pixel_size_nm
        reacted = 0.5 * (1.0 - np.tanh((s_nm - front_nm[i]) / (0.5 * front_width_nm))) if front_nm[i] > 0 \
            else np.zeros_like(s_nm)
        radius = 0.5 * (d0_nm + (d1_nm - d0_nm) * reacted)
        on_wire = (s_nm >= 0) & (s_nm <= wire_len_nm)
        # A rounded far end: the cylinder closes with a hemispherical cap.
        cap = s_nm > wire_len_nm
        rr = np.where(cap, np.hypot(r_nm, s_nm - wire_len_nm), np.abs(r_nm))
        inside = (on_wire | (cap & (s_nm <= wire_len_nm + radius))) & (rr < radius)
        thick = np.where(inside, 2.0 * np.sqrt(np.clip(radius ** 2 - rr ** 2, 0, None)), 0.0)
        mu = mu_pristine_per_nm + (mu_sodiated_per_nm - mu_pristine_per_nm) * reacted
        att = mu * thick
        # Diffraction contrast of the crystalline part; fine speckle of the amorphous part.
        bend_here = np.interp(s_nm, s_grid, bend) * (1.0 - reacted) * (thick > 0)
        att += bend_here * np.minimum(thick / d0_nm, 1.0)
        textures = _fourier_shift(textures_fft, big, dy, dx)[pad:pad + rows, pad:pad + cols]
        film_i, speckle = textures.real, textures.imag
        att += 0.10 * speckle * reacted * np.minimum(thick / d1_nm, 1.0)
        # The Na source: a thick spherical particle centred behind the contact (projected
        # thickness, so its rim is continuous like a real particle's, not an aliased step).
        rho2 = (s_nm + 0.8 * na_source_r_nm) ** 2 + r_nm ** 2
        src_att = 0.03 * 2.0 * np.sqrt(np.clip(na_source_r_nm ** 2 - rho2, 0, None)) * (1 + 0.1 * speckle)
        att = np.maximum(att, src_att)
        intensity = gain[i] * np.exp(-(att + 0.15 + film_i))
        if psf_px > 0:
            # Detector point-spread: applied to the expected image, before the shot noise.
            intensity = gaussian_filter(intensity, psf_px, mode="nearest")
        expected = dose * np.clip(intensity, 0, None)
        frames[i] = np.minimum(rng.poisson(expected), 65535) if noise else expected
        for p in probe_diam:
            frac = 0.5 * (1.0 - math.tanh((p - front_nm[i]) / (0.5 * front_width_nm))) if front_nm[i] > 0 else 0.0
            probe_diam[p].append(d0_nm + (d1_nm - d0_nm) * frac)

    truth = {
        "kind": "nanowire",
        "seed": seed,
        "n_frames": n_frames,
        "frame_shape": [rows, cols],
        "pixel_size_nm": pixel_size_nm,
        "frame_interval_s": frame_interval_s,
        "time_s": times.tolist(),
        "angle_deg": angle_deg,
        "line_px": [contact_x, contact_y, end_x, end_y],
        "contact_px": [contact_x, contact_y],
        "wire_length_nm": wire_len_nm,
        "wire_end_visible": wire_end_visible,
        "d0_nm": d0_nm,
        "d1_nm": d1_nm,
        "front_width_nm": front_width_nm,
        "kinetics": {"D_nm2_per_s": D_nm2_per_s, "k_nm_per_s": None if not math.isfinite(k_nm_per_s) else k_nm_per_s,
                     "t0_s": t0_s, "prefactor": prefactor,
                     "model": "parabolic" if not math.isfinite(k_nm_per_s) else "mixed"},
        "front_position_nm": front_nm.tolist(),
        "drift_dy_px": drift[:, 0].tolist(),
        "drift_dx_px": drift[:, 1].tolist(),
        "gain": gain.tolist(),
        "dose_e_per_px": dose,
        "mu_pristine_per_nm": mu_pristine_per_nm,
        "mu_sodiated_per_nm": mu_sodiated_per_nm,
        "probes_diameter_nm": {f"{p:g}": v for p, v in probe_diam.items()},
        "axial_strain": 0.0,
    }
    return frames, truth


def write_nanowire_movie(path: str | os.PathLike, **kwargs) -> tuple[Path, Path]:
    """Render with :func:`make_nanowire_movie` and write the calibrated TIFF + ``<name>.truth.json``."""
    from temtrack.synthetic import save_synthetic

    return save_synthetic(path, *make_nanowire_movie(**kwargs))
