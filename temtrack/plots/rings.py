"""Figures of the ``rings`` pipeline (matplotlib object API only: no pyplot, no display needed)."""
from __future__ import annotations

import numpy as np

from temtrack.plots._style import LINE_SIZE, new_figure, styled


def _figure(size=LINE_SIZE):
    return new_figure(size)


@styled
def qt_map_figure(result):
    """Waterfall of I(q) over time (log intensity), calibrated axes, library rings marked."""
    fig, ax = _figure((6.8, 4.2))
    P = np.asarray(result.profiles, dtype=float)
    q = np.asarray(result.q_nm_inv)
    t = np.asarray(result.time_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        img = np.log10(np.clip(P, np.nanpercentile(P, 1) if np.isfinite(P).any() else 1, None))
    dt = (t[1] - t[0]) if t.size > 1 else 1.0
    dq = (q[1] - q[0]) if q.size > 1 else 1.0
    im = ax.imshow(img, aspect="auto", origin="lower", cmap="magma",
                   extent=(q[0] - dq / 2, q[-1] + dq / 2, t[0] - dt / 2, t[-1] + dt / 2))
    for tr, m in zip(result.rings, result.ring_matches):
        if m.get("phase"):
            ax.axvline(tr.q_nm_inv, color="w", lw=0.4, alpha=0.5)
    ax.set_xlabel("q = 1/d (1/nm)")
    ax.set_ylabel("time (s)")
    sec = ax.secondary_xaxis("top", functions=(lambda x: 10.0 / np.maximum(x, 1e-6),
                                               lambda d: 10.0 / np.maximum(d, 1e-6)))
    sec.set_xlabel("d (Å)")
    fig.colorbar(im, ax=ax, label="log10 I (counts/px)")
    return fig


@styled
def phase_fractions_figure(result):
    """Phase fraction of each phase against time, with onsets marked."""
    fig, ax = _figure()
    for name, f in result.fractions.items():
        line, = ax.plot(result.time_s, f, ".-", ms=3, label=name)
        onset = result.onsets_s.get(name)
        if onset is not None:
            ax.axvline(onset, color=line.get_color(), ls=":", lw=1)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("phase fraction (of diffracted intensity)")
    ax.legend(fontsize="small")
    return fig


@styled
def ring_d_figure(result):
    """Per-frame ring positions (d of the peak found in each frame) against time, coloured by phase.

    The thin line is the ring's d refined jointly over all frames.
    """
    fig, ax = _figure((6.4, 4.4))
    colors = {}
    cycle = iter(["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"] * 10)
    t = np.asarray(result.time_s)
    for tr, m in zip(result.rings, result.ring_matches):
        name = m.get("phase") or "unassigned"
        new = name not in colors
        if new:
            colors[name] = next(cycle) if name != "unassigned" else "0.5"
        ft = t[np.asarray(tr.frames, dtype=int)]
        ax.plot(ft, 10.0 / np.asarray(tr.q_frames_nm_inv), ".", ms=3, color=colors[name],
                label=name if new else None)
        ax.plot([t[0], t[-1]], [tr.d_A, tr.d_A], "-", lw=0.5, color=colors[name], alpha=0.6)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("d (Å)")
    if colors:
        ax.legend(fontsize="small", loc="upper right")
    return fig
