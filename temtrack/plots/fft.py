"""Figures of the ``fft`` pipeline (matplotlib object API only: no pyplot, no display needed)."""
from __future__ import annotations

import numpy as np

from temtrack.plots._style import LINE_SIZE, new_figure, styled


def _figure(size=LINE_SIZE):
    return new_figure(size)


@styled
def fringe_spacing_figure(time_s, d_nm, *, labels=None):
    """Fringe spacing (pm for readability) of each set against time."""
    fig, ax = _figure()
    d = np.atleast_2d(np.asarray(d_nm, dtype=float).T).T
    for j in range(d.shape[1]):
        ax.plot(time_s, 1000.0 * d[:, j], ".-", ms=3, label=labels[j] if labels else f"set {j}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("fringe spacing d (pm)")
    ax.legend(fontsize="small")
    return fig


@styled
def expansion_figure(time_s, expansion_pct, mean_pct=None, *, labels=None):
    """Lattice expansion (%) of each set and their mean against time."""
    fig, ax = _figure()
    e = np.atleast_2d(np.asarray(expansion_pct, dtype=float).T).T
    for j in range(e.shape[1]):
        ax.plot(time_s, e[:, j], ".", ms=3, label=labels[j] if labels else f"set {j}")
    if mean_pct is not None:
        ax.plot(time_s, mean_pct, "k-", lw=1.2, label="mean")
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("lattice expansion (%)")
    ax.legend(fontsize="small")
    return fig


@styled
def crystalline_fraction_figure(time_s, fraction):
    """Crystalline fraction (relative Bragg power) against time."""
    fig, ax = _figure()
    ax.plot(time_s, fraction, "o-", ms=3)
    ax.set_ylim(bottom=min(0.0, float(np.nanmin(fraction)) if np.size(fraction) else 0.0))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("crystalline fraction (rel. Bragg power)")
    return fig


@styled
def power_spectrum_figure(power_shifted, *, pixel_size_nm: float, spots_g_px=None):
    """Log mean power spectrum with axes in 1/nm and the tracked spots (and their mirrors) circled."""
    fig, ax = _figure((5.2, 4.6))
    p = np.asarray(power_shifted, dtype=float)
    h, w = p.shape
    ky = (np.arange(h) - h // 2) / (h * pixel_size_nm)
    kx = (np.arange(w) - w // 2) / (w * pixel_size_nm)
    logp = np.log10(np.maximum(p, np.max(p) * 1e-9 if np.max(p) > 0 else 1e-30))
    lo, hi = np.percentile(logp, [50, 99.95])
    extent = (kx[0], kx[-1], ky[-1], ky[0])
    ax.imshow(logp, cmap="magma", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
    if spots_g_px is not None and len(spots_g_px):
        g = np.asarray(spots_g_px, dtype=float) / pixel_size_nm
        for sign in (1, -1):
            ax.scatter(sign * g[:, 1], sign * g[:, 0], s=120, facecolors="none", edgecolors="cyan", lw=1)
        for j, (gy, gx) in enumerate(g):
            ax.annotate(str(j), (gx, gy), color="cyan", xytext=(6, 6), textcoords="offset points")
        # Show the region around the lattice spots rather than the whole (mostly empty) plane.
        lim = min(1.6 * float(np.max(np.hypot(g[:, 0], g[:, 1]))), abs(kx[0]), abs(ky[0]))
        ax.set_xlim(-lim, lim)
        ax.set_ylim(lim, -lim)
    ax.set_xlabel("k_x (1/nm)")
    ax.set_ylabel("k_y (1/nm)")
    ax.set_title("mean power spectrum of the ROI (log)")
    return fig
