"""Figures of the ``particles`` pipeline (matplotlib object API only: no pyplot, no display needed)."""
from __future__ import annotations

import numpy as np

from temtrack.plots._style import LINE_SIZE, new_figure, styled


def _figure(size=LINE_SIZE):
    return new_figure(size)


@styled
def area_vs_time_figure(result):
    """Projected area of every particle against time (line: regularised along the track; faint
    points: each frame's own fit); onsets as dots, cracks as crosses."""
    fig, ax = _figure((6.8, 4.4))
    t = np.asarray(result.time_s)
    frame_area = getattr(result, "area_frame_nm2", None)
    for k in range(result.n_particles):
        line, = ax.plot(t, result.area_nm2[:, k], "-", lw=1, label=f"{int(result.ids[k])}")
        if frame_area is not None and frame_area is not result.area_nm2:
            ax.plot(t, frame_area[:, k], ".", ms=2, alpha=0.4, color=line.get_color())
        on = result.onset_s[k]
        if np.isfinite(on):
            a0 = result.A0_nm2[k]
            ax.plot([on], [a0], "o", ms=4, color=line.get_color())
        if result.cracked[k] and np.isfinite(result.crack_time_s[k]):
            i = int(np.searchsorted(t, result.crack_time_s[k]))
            i = min(i, t.size - 1)
            ax.plot([t[i]], [result.area_nm2[i, k]], "x", ms=8, mew=2, color=line.get_color())
    ax.set_xlabel("time (s)")
    ax.set_ylabel("projected area (nm$^2$)")
    ax.set_title("particle areas (o onset, x cracked; points: per-frame fits)" if frame_area is not None
                 else "particle areas (o onset, x cracked)", fontsize="medium")
    if result.n_particles <= 20:
        ax.legend(fontsize="x-small", ncol=2, title="id", title_fontsize="x-small")
    return fig


@styled
def expansion_vs_size_figure(result):
    """Final volume expansion (A/A0)^1.5 - 1 against the initial equivalent diameter; cracked marked."""
    fig, ax = _figure()
    d0 = 2 * np.sqrt(np.asarray(result.A0_nm2, float) / np.pi)
    ve = result.final_volume_expansion()
    cr = np.asarray(result.cracked, bool)
    ax.plot(d0[~cr], 100 * ve[~cr], "o", label="intact")
    if cr.any():
        ax.plot(d0[cr], 100 * ve[cr], "x", ms=9, mew=2, color="C3", label="cracked / fragmented")
    for k in range(result.n_particles):
        if np.isfinite(d0[k]) and np.isfinite(ve[k]):
            ax.annotate(str(int(result.ids[k])), (d0[k], 100 * ve[k]), fontsize="x-small",
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("initial equivalent diameter (nm)")
    ax.set_ylabel("volume expansion (%)  [(A/A0)$^{1.5}$ - 1]")
    ax.legend(fontsize="small")
    return fig


@styled
def core_radius_figure(result):
    """Unreacted core radius against time per particle (where a core is seen), with the best
    shrinking-core fit."""
    from temtrack.series.shrinking_core import core_radius_model

    fig, ax = _figure()
    t = np.asarray(result.time_s)
    for k in range(result.n_particles):
        c = result.core_radius_nm[:, k]
        if not np.isfinite(c).any():
            continue
        line, = ax.plot(t, c, ".", ms=4)
        sc = result.shrinking_core[k]
        if sc is not None:
            p = sc["best"]["params"]
            ax.plot(t, core_radius_model(t, model=sc["best_model"], r0_nm=p["r0_nm"], t0_s=p["t0_s"],
                                         tau_s=p["tau_s"]), "-", lw=1, color=line.get_color())
    ax.set_xlabel("time (s)")
    ax.set_ylabel("core radius (nm)")
    ax.set_title("unreacted core (points) and best shrinking-core fit (lines)", fontsize="medium")
    return fig
