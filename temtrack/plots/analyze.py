"""Figures of the ``analyze`` pipeline (matplotlib object API only: no pyplot, no display needed)."""
from __future__ import annotations

import numpy as np


def _figure(size=(6.0, 3.8)):
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def kymograph_figure(kymograph, s_nm, time_s, *, front_time_s=None, front_nm=None):
    """Kymograph (distance along the wire horizontally, time downwards) with calibrated axes."""
    fig, ax = _figure((6.0, 5.0))
    k = np.asarray(kymograph, dtype=float)
    finite = k[np.isfinite(k)]
    vmin, vmax = (np.percentile(finite, [1, 99]) if finite.size else (0, 1))
    s_nm = np.asarray(s_nm, float)
    time_s = np.asarray(time_s, float)
    dt = (time_s[-1] - time_s[0]) / max(1, time_s.size - 1) if time_s.size > 1 else 1.0
    ds = (s_nm[-1] - s_nm[0]) / max(1, s_nm.size - 1) if s_nm.size > 1 else 1.0
    im = ax.imshow(k, aspect="auto", cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest",
                   extent=(s_nm[0] - ds / 2, s_nm[-1] + ds / 2, time_s[-1] + dt / 2, time_s[0] - dt / 2))
    if front_nm is not None:
        ax.plot(front_nm, front_time_s, "-", color="tab:orange", lw=1.0, label="front")
        ax.legend(fontsize="small", loc="lower right")
    ax.set_xlabel("distance from contact (nm)")
    ax.set_ylabel("time (s)")
    fig.colorbar(im, ax=ax, label="intensity (counts)")
    return fig


def front_figure(time_s, position_nm, uncertainty_nm=None, *, curves=None, best=None, excluded_time_s=None,
                 excluded_nm=None):
    """Front position vs time with error bars and the fitted curve of each model."""
    fig, ax = _figure()
    t = np.asarray(time_s, float)
    x = np.asarray(position_nm, float)
    if uncertainty_nm is not None:
        ax.errorbar(t, x, yerr=np.asarray(uncertainty_nm, float), fmt=".", ms=3, lw=0.6, color="k",
                    label="measured")
    else:
        ax.plot(t, x, ".", ms=3, color="k", label="measured")
    if excluded_time_s is not None and len(excluded_time_s):
        ax.plot(excluded_time_s, excluded_nm, "x", ms=4, color="0.6", label="not fitted")
    for name, curve in (curves or {}).items():
        ax.plot(t, curve, "-", lw=2.0 if name == best else 1.0, label=f"{name}{' (best)' if name == best else ''}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("front position (nm)")
    ax.legend(fontsize="small")
    return fig


def diameter_figure(time_s, probes: dict, *, pristine_nm=None, sodiated_nm=None):
    """Diameter vs time at each probe position, with the pristine and sodiated levels."""
    fig, ax = _figure()
    for key, d in probes.items():
        ax.plot(time_s, d, ".-", ms=2, lw=0.6, label=f"s = {key} nm")
    if pristine_nm is not None and np.isfinite(pristine_nm):
        ax.axhline(pristine_nm, color="tab:blue", ls="--", lw=0.8, label="pristine")
    if sodiated_nm is not None and np.isfinite(sodiated_nm):
        ax.axhline(sodiated_nm, color="tab:red", ls="--", lw=0.8, label="sodiated")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("diameter (nm)")
    if probes or pristine_nm is not None:
        ax.legend(fontsize="small")
    return fig


def diameter_map_figure(diameter_nm, s_nm, time_s, *, front_time_s=None, front_nm=None):
    """d(s, t) as an image (distance horizontally, time downwards)."""
    fig, ax = _figure((6.0, 5.0))
    d = np.asarray(diameter_nm, float)
    finite = d[np.isfinite(d)]
    vmin, vmax = (np.percentile(finite, [2, 98]) if finite.size else (0, 1))
    s_nm = np.asarray(s_nm, float)
    time_s = np.asarray(time_s, float)
    im = ax.imshow(d, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest",
                   extent=(s_nm[0], s_nm[-1], time_s[-1], time_s[0]))
    if front_nm is not None:
        ax.plot(front_nm, front_time_s, "-", color="w", lw=0.8)
    ax.set_xlabel("distance from contact (nm)")
    ax.set_ylabel("time (s)")
    fig.colorbar(im, ax=ax, label="diameter (nm)")
    return fig


def shifts_figure(time_s, dy_px, dx_px):
    """Drift (specimen displacement relative to the first frame) vs time."""
    fig, ax = _figure()
    ax.plot(time_s, dx_px, "-", lw=1.0, label="dx (columns)")
    ax.plot(time_s, dy_px, "-", lw=1.0, label="dy (rows)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("drift (px)")
    ax.legend(fontsize="small")
    return fig
