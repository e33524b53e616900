"""Figures of ``temtrack stats`` (matplotlib object API only: no pyplot, no display needed)."""
from __future__ import annotations

import numpy as np

from temtrack.plots._style import LINE_SIZE, new_figure, styled


def _figure(size=LINE_SIZE):
    return new_figure(size)


def _col(table, name):
    return np.array([np.nan if r.get(name) is None else float(r[name]) for r in table.rows], dtype=float)


@styled
def d_per_object_figure(table):
    """Diffusion coefficient of every object with its 95% interval (log scale)."""
    from pathlib import Path

    D_all = _col(table, "D_nm2_per_s")
    keep = np.flatnonzero(np.isfinite(D_all))  # particles and failed fits have no D
    fig, ax = _figure((6.8, max(3.0, 0.25 * keep.size + 1.5)))
    D = D_all[keep]
    lo, hi = _col(table, "D_ci95_lo")[keep], _col(table, "D_ci95_hi")[keep]
    # The source's folder (or file) name tells the movies apart.
    labels = [f"{Path(table.rows[i]['source']).parent.name or table.rows[i]['source']}: {table.rows[i]['object']}"
              for i in keep]
    y = np.arange(len(labels))
    ok = np.isfinite(D)
    if not ok.any():
        ax.text(0.5, 0.5, "no diffusion coefficients in these results", ha="center", va="center",
                transform=ax.transAxes)
    err = np.vstack([np.where(np.isfinite(lo), D - lo, 0), np.where(np.isfinite(hi), hi - D, 0)])
    ax.errorbar(D[ok], y[ok], xerr=err[:, ok], fmt="o", capsize=3)
    ax.set_yticks(y, labels, fontsize="x-small")
    if ok.any() and np.all(D[ok] > 0):
        ax.set_xscale("log")
    med = np.nanmedian(D) if ok.any() else np.nan
    if np.isfinite(med):
        ax.axvline(med, color="0.5", ls=":", lw=1, label=f"median {med:.3g} nm$^2$/s")
        ax.legend(fontsize="small")
    ax.set_xlabel("D (nm$^2$/s) with 95% interval")
    ax.invert_yaxis()
    return fig


@styled
def expansion_vs_size_figure(table):
    """Volume expansion against initial size (diameter) for every object; cracked particles marked."""
    fig, ax = _figure()
    size = _col(table, "size_nm")
    ve = _col(table, "volume_expansion")
    cracked = np.array([bool(r.get("cracked")) for r in table.rows])
    kinds = np.array([r["kind"] for r in table.rows])
    for kind, marker in (("wire", "s"), ("particle", "o")):
        sel = (kinds == kind) & ~cracked
        if sel.any():
            ax.plot(size[sel], 100 * ve[sel], marker, label=f"{kind}s", alpha=0.8)
    if cracked.any():
        ax.plot(size[cracked], 100 * ve[cracked], "x", ms=9, mew=2, color="C3", label="cracked / fragmented")
    ax.set_xlabel("initial diameter (nm)")
    ax.set_ylabel("volume expansion (%)")
    ax.legend(fontsize="small")
    return fig
