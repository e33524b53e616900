"""Figures of the ``analyze`` pipeline (matplotlib object API only: no pyplot, no display needed)."""
from __future__ import annotations

import numpy as np

from temtrack.plots._style import IMAGE_SIZE, LINE_SIZE, new_figure, si_scale, styled


def _figure(size=LINE_SIZE):
    return new_figure(size)


@styled
def kymograph_figure(kymograph, s_nm, time_s, *, front_time_s=None, front_nm=None, fit_time_s=None, fit_nm=None,
                     fit_label="fit"):
    """Kymograph (distance along the wire horizontally, time downwards) with calibrated axes.

    The measured front positions are drawn as points and the fitted kinetics curve
    (``fit_time_s``, ``fit_nm``) as a line over them, inside the wire's length.
    """
    fig, ax = _figure(IMAGE_SIZE)
    k = np.asarray(kymograph, dtype=float)
    finite = k[np.isfinite(k)]
    vmin, vmax = (np.percentile(finite, [1, 99]) if finite.size else (0, 1))
    s_nm = np.asarray(s_nm, float)
    time_s = np.asarray(time_s, float)
    dt = (time_s[-1] - time_s[0]) / max(1, time_s.size - 1) if time_s.size > 1 else 1.0
    ds = (s_nm[-1] - s_nm[0]) / max(1, s_nm.size - 1) if s_nm.size > 1 else 1.0
    extent = (s_nm[0] - ds / 2, s_nm[-1] + ds / 2, time_s[-1] + dt / 2, time_s[0] - dt / 2)
    im = ax.imshow(k, aspect="auto", cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest", extent=extent)
    labelled = False
    if front_nm is not None and np.size(front_nm):
        ax.plot(front_nm, front_time_s, ".", ms=2.5, color="tab:orange", label="front (measured)")
        labelled = True
    if fit_nm is not None and np.size(fit_nm):
        ft = np.asarray(fit_time_s, float)
        fx = np.asarray(fit_nm, float)
        # Before t0 the models sit at the contact (0 nm); the line starts where the front does and
        # is broken (NaN) where the curve leaves the wire.
        inside = np.isfinite(fx) & (fx > 0) & (fx <= max(extent[0], extent[1]))
        fx = np.where(inside, fx, np.nan)
        if np.isfinite(fx).any():
            ax.plot(fx, ft, "-", lw=1.4, color="tab:cyan", label=fit_label)
            labelled = True
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    if labelled:
        ax.legend(loc="lower right", frameon=True)
    ax.set_xlabel("distance from contact (nm)")
    ax.set_ylabel("time (s)")
    fig.colorbar(im, ax=ax, label="intensity (counts)")
    return fig


@styled
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
    ax.legend()
    return fig


@styled
def diameter_figure(time_s, probes: dict, *, pristine_nm=None, sodiated_nm=None):
    """Diameter vs time at each probe position, with the pristine and sodiated levels."""
    fig, ax = _figure()
    _diameter_lines(ax, time_s, probes, pristine_nm, sodiated_nm)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("diameter (nm)")
    if probes or pristine_nm is not None:
        ax.legend()
    return fig


def _diameter_lines(ax, time_s, probes, pristine_nm, sodiated_nm):
    for key, d in probes.items():
        ax.plot(time_s, d, ".-", ms=2, lw=0.6, label=f"s = {key} nm")
    if pristine_nm is not None and np.isfinite(pristine_nm):
        ax.axhline(pristine_nm, color="tab:blue", ls="--", lw=0.8, label="pristine")
    if sodiated_nm is not None and np.isfinite(sodiated_nm):
        ax.axhline(sodiated_nm, color="tab:red", ls="--", lw=0.8, label="sodiated")


@styled
def diameter_map_figure(diameter_nm, s_nm, time_s, *, front_time_s=None, front_nm=None):
    """d(s, t) as an image (distance horizontally, time downwards)."""
    fig, ax = _figure(IMAGE_SIZE)
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


@styled
def shifts_figure(time_s, dy_px, dx_px):
    """Drift (specimen displacement relative to the first frame) vs time."""
    fig, ax = _figure()
    ax.plot(time_s, dx_px, "-", lw=1.0, label="dx (columns)")
    ax.plot(time_s, dy_px, "-", lw=1.0, label="dy (rows)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("drift (px)")
    ax.legend()
    return fig


@styled
def stimulus_figure(time_s, stimulus: dict, *, front_nm=None, fit_nm=None, fit_label="fit", probes=None,
                    pristine_nm=None, sodiated_nm=None):
    """Front position, diameter and the logged current / voltage / temperature on one time axis.

    Stacked panels with a shared time axis (the movie's clock, the log shifted by its clock
    offset); panels without data are left out. The clock offset and how it was obtained are
    given in the title.
    """
    quantities = (("current_A", "current", "A"), ("voltage_V", "voltage", "V"), ("temperature_C", "temperature", "°C"))
    channels = [(key, label, unit) for key, label, unit in quantities
                if stimulus.get(key) is not None and np.isfinite(np.asarray(stimulus[key], float)).any()]
    has_front = front_nm is not None and np.isfinite(np.asarray(front_nm, float)).any()
    has_diam = bool(probes) or (sodiated_nm is not None and np.isfinite(sodiated_nm))
    n = int(has_front) + int(has_diam) + max(1, len(channels))
    fig, axes = new_figure((6.4, 1.2 + 1.45 * n), rows=n, sharex=True)
    axes = axes if isinstance(axes, list) else [axes]
    t = np.asarray(time_s, float)
    k = 0
    if has_front:
        ax = axes[k]
        k += 1
        ax.plot(t, front_nm, ".", ms=2.5, color="k", label="measured")
        if fit_nm is not None:
            ax.plot(t, fit_nm, "-", color="tab:cyan", label=fit_label)
        ax.set_ylabel("front (nm)")
        ax.legend(loc="upper left")
    if has_diam:
        ax = axes[k]
        k += 1
        _diameter_lines(ax, t, probes or {}, pristine_nm, sodiated_nm)
        ax.set_ylabel("diameter (nm)")
        ax.legend(loc="best", ncol=3)
    colors = {"current_A": "tab:red", "voltage_V": "tab:blue", "temperature_C": "tab:orange"}
    for key, label, unit in channels:
        ax = axes[k]
        k += 1
        v = np.asarray(stimulus[key], float)
        factor, shown = (1.0, unit) if unit == "°C" else si_scale(v, unit)
        ax.plot(t, v * factor, "-", color=colors[key])
        ax.set_ylabel(f"{label} ({shown})")
    if not channels:
        axes[k].text(0.5, 0.5, "the log does not cover the analysed frames", ha="center", va="center",
                     transform=axes[k].transAxes)
        axes[k].set_ylabel("log (–)")
    for tn, text in stimulus.get("notes") or []:
        if t.size and t[0] <= tn <= t[-1]:
            for ax in axes:
                ax.axvline(tn, color="0.5", ls=":", lw=0.8)
            axes[0].annotate(text, (tn, 1.0), xycoords=("data", "axes fraction"), fontsize=7, rotation=90,
                             va="top", ha="right", color="0.3")
    axes[-1].set_xlabel("movie time (s)")
    off = stimulus.get("offset") or {"offset_s": stimulus.get("offset_s"), "method": "given"}
    if off.get("offset_s") is not None:
        u = off.get("uncertainty_s")
        axes[0].set_title(f"log time = movie time + {off['offset_s']:.4g} s"
                          + (f" ± {u:.2g} s" if u else "") + f" ({off.get('method', 'given')})")
    return fig


@styled
def charge_volume_figure(charge_C, reacted_volume_nm3, *, time_s=None):
    """Charge passed against the reacted volume of the wire, with the Na density it implies.

    The slope of a line through the origin, ``Q / (e V)``, is the Na per nm^3 that the charge
    would deliver if all of it went into this wire (e.g. ~25 Na/nm^3 for Na15Sn4).
    """
    from temtrack.series.stimulus import ELEMENTARY_CHARGE_C
    fig, ax = _figure()
    q = np.asarray(charge_C, float)
    v = np.asarray(reacted_volume_nm3, float)
    ok = np.isfinite(q) & np.isfinite(v)
    factor, unit = si_scale(q[ok], "C")
    if ok.any():
        c = np.asarray(time_s, float)[ok] if time_s is not None else None
        sc = ax.scatter(v[ok], np.abs(q[ok]) * factor, c=c, s=8, cmap="viridis")
        if c is not None:
            fig.colorbar(sc, ax=ax, label="time (s)")
        if np.sum(v[ok] ** 2) > 0:
            slope = float(np.sum(v[ok] * np.abs(q[ok])) / np.sum(v[ok] ** 2))   # C per nm^3
            xs = np.array([0.0, float(np.max(v[ok]))])
            ax.plot(xs, slope * xs * factor, "-", color="k", lw=1.0,
                    label=f"line through 0: {slope / ELEMENTARY_CHARGE_C:.3g} e/nm³")
            ax.legend(loc="upper left")
    else:
        ax.text(0.5, 0.5, "no frame has both a charge and a front position", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("reacted volume (nm³)")
    ax.set_ylabel(f"|charge passed| ({unit})")
    return fig


def stimulus_figures(result) -> dict:
    """The log figures of an :class:`~temtrack.pipeline.analyze.AnalyzeResult` by file name.

    ``stimulus.png`` (front, diameter and log on one time axis) and, when a current was logged and
    the front and sodiated diameter are known, ``charge_volume.png``. Empty without a log.
    """
    st = getattr(result, "stimulus", None)
    if st is None:
        return {}
    t = np.asarray(result.time_s, float)
    fr = result.front
    front = np.where(fr.used_for_fit, fr.position_nm, np.nan) if np.any(fr.used_for_fit) else fr.position_nm
    fit = None
    label = "fit"
    if getattr(result, "kinetics", None) is not None:
        best = result.kinetics.best
        fit = np.asarray(best.predict(t), float)
        label = f"{best.name} fit"
    dm = result.diameter
    figs = {"stimulus.png": stimulus_figure(t, st, front_nm=front, fit_nm=fit, fit_label=label, probes=dm.probes,
                                            pristine_nm=dm.pristine_nm, sodiated_nm=dm.sodiated_nm)}
    if st.get("charge_C") is not None and st.get("reacted_volume_nm3") is not None:
        figs["charge_volume.png"] = charge_volume_figure(st["charge_C"], st["reacted_volume_nm3"], time_s=t)
    return figs
