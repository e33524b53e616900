"""Statistics across objects and movies: pool many ``results.json`` files into one table.

A single in situ movie follows one wire or a handful of particles; conclusions about a material need
many. :func:`pool_results` reads the results of ``temtrack analyze`` (a single wire, or a ``wires``
list with one block per wire) and of ``temtrack particles`` (a ``particles`` list) and makes one row
per object with its source; :func:`summarize` gives mean, standard deviation, median and spread
(quartiles, IQR) of D, k, n and the volume expansion; :func:`write_stats` writes ``stats.csv``,
``stats.json`` and the figures (D per object with its 95% interval, expansion vs size with cracked
particles marked); :func:`run_stats` does all three for the CLI verb ``temtrack stats``.

Written here because the inputs are temtrack's own result files; the statistics are numpy's.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from temtrack.errors import ParameterError

__all__ = ["PooledTable", "pool_results", "summarize", "write_stats", "run_stats", "COLUMNS", "SUMMARY_QUANTITIES"]

#: Columns of the pooled table, in order.
COLUMNS = ("source", "kind", "object", "id", "model", "D_nm2_per_s", "D_ci95_lo", "D_ci95_hi", "k_nm_per_s",
           "k_ci95_lo", "k_ci95_hi", "n", "n_ci95_lo", "n_ci95_hi", "t0_s", "t0_ci95_lo", "t0_ci95_hi",
           "volume_expansion", "volume_expansion_ci95_lo", "volume_expansion_ci95_hi", "size_nm",
           "sodiated_size_nm", "expansion_rate_nm_per_s", "onset_s", "cracked")
#: Quantities summarised over objects.
SUMMARY_QUANTITIES = ("D_nm2_per_s", "k_nm_per_s", "n", "volume_expansion")


@dataclass
class PooledTable:
    """One row (dict keyed by :data:`COLUMNS`) per object, plus the files read."""

    rows: list = field(default_factory=list)
    sources: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def column(self, name: str) -> list:
        return [r.get(name) for r in self.rows]

    def as_columns(self) -> dict:
        return {c: self.column(c) for c in COLUMNS}

    def summary(self) -> dict:
        return summarize(self)


def _num(v):
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _ci(ci, key):
    if not isinstance(ci, dict):
        return None, None
    v = ci.get(key)
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        return None, None
    return _num(v[0]), _num(v[1])


def _empty_row(source, kind, obj, ident):
    row = {c: None for c in COLUMNS}
    row.update(source=source, kind=kind, object=obj, id=ident, cracked=False)
    return row


def _wire_row(block: dict, source: str, obj: str, ident) -> dict:
    row = _empty_row(source, "wire", obj, ident)
    kin = block.get("kinetics") or {}
    ci = kin.get("ci95") or {}
    row["model"] = kin.get("model")
    for key, col in (("D_nm2_per_s", "D"), ("k_nm_per_s", "k"), ("n", "n"), ("t0_s", "t0")):
        row[key if key != "t0_s" else "t0_s"] = _num(kin.get(key))
        row[f"{col}_ci95_lo"], row[f"{col}_ci95_hi"] = _ci(ci, key)
    exp = block.get("expansion") or {}
    key = "volume_expansion_with_axial_strain" if _num(exp.get("volume_expansion_with_axial_strain")) is not None \
        else "volume_expansion_no_axial_strain"
    row["volume_expansion"] = _num(exp.get(key))
    row["volume_expansion_ci95_lo"], row["volume_expansion_ci95_hi"] = _ci(exp.get("ci95"), key)
    row["expansion_rate_nm_per_s"] = _num(exp.get("radial_expansion_rate_nm_per_s"))
    diam = block.get("diameter") or {}
    row["size_nm"] = _num(diam.get("pristine_nm")) if _num(diam.get("pristine_nm")) is not None else _num(exp.get("d0_nm"))
    row["sodiated_size_nm"] = (_num(diam.get("sodiated_nm")) if _num(diam.get("sodiated_nm")) is not None
                               else _num(exp.get("d1_nm")))
    return row


def _particle_row(p: dict, source: str) -> dict:
    ident = p.get("id")
    row = _empty_row(source, "particle", f"particle {ident}", ident)
    ve = _num(p.get("final_volume_expansion"))
    if ve is None:
        series = [_num(v) for v in (p.get("volume_expansion") or [])]
        tail = [v for v in series[-3:] if v is not None]
        ve = float(np.median(tail)) if tail else None
    row["volume_expansion"] = ve
    size = _num(p.get("initial_equivalent_diameter_nm"))
    if size is None:
        d = [_num(v) for v in (p.get("equivalent_diameter_nm") or [])]
        head = [v for v in d[:3] if v is not None]
        size = float(np.median(head)) if head else None
    row["size_nm"] = size
    d = [_num(v) for v in (p.get("equivalent_diameter_nm") or [])]
    tail = [v for v in d[-3:] if v is not None]
    row["sodiated_size_nm"] = float(np.median(tail)) if tail else None
    row["expansion_rate_nm_per_s"] = _num(p.get("expansion_rate_nm_per_s"))
    row["onset_s"] = _num(p.get("onset_s"))
    row["cracked"] = bool(p.get("cracked", False))
    return row


def _resolve(path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise ParameterError(f"{path}: no results.json there (give result files or result folders)")
    return p


def pool_results(paths: Iterable[str | os.PathLike]) -> PooledTable:
    """One row per object (wire or particle) from many ``results.json`` files.

    Parameters
    ----------
    paths : iterable of path-like
        ``results.json`` files, or folders holding one, of ``temtrack analyze`` (single wire, or
        a ``wires`` list) and ``temtrack particles``.

    Returns
    -------
    PooledTable
        Rows keyed by :data:`COLUMNS`; ``source`` is the file, ``object`` a readable name
        (``wire``, ``wire 2``, ``particle 5``). Missing quantities are None. A file with a
        ``wires`` list contributes one row per wire from that list only (its top-level
        single-wire keys repeat one of them and are not counted twice).

    Raises
    ------
    ParameterError
        No paths, a missing or unreadable file, or a JSON file that is not temtrack results.
    """
    from temtrack.pipeline.recipe import read_json_file

    paths = list(paths)
    if not paths:
        raise ParameterError("stats: give at least one results.json (or results folder)")
    table = PooledTable()
    for path in paths:
        p = _resolve(path)
        data = read_json_file(p)
        src = str(p)
        n_before = len(table.rows)
        if isinstance(data.get("particles"), list):
            for part in data["particles"]:
                if isinstance(part, dict):
                    table.rows.append(_particle_row(part, src))
        if isinstance(data.get("wires"), list):
            for i, block in enumerate(data["wires"]):
                if isinstance(block, dict):
                    ident = block.get("id", i)
                    table.rows.append(_wire_row(block, src, f"wire {ident}", ident))
        elif "kinetics" in data or "expansion" in data:
            table.rows.append(_wire_row(data, src, "wire", 0))
        if len(table.rows) == n_before:
            raise ParameterError(f"{p}: not temtrack analyze or particles results (no 'kinetics', 'wires' or "
                                 "'particles' key)")
        table.sources.append(src)
    return table


def _describe(values) -> dict:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"count": 0, "mean": None, "std": None, "median": None, "q25": None, "q75": None, "iqr": None,
                "min": None, "max": None}
    q25, q50, q75 = np.percentile(v, [25, 50, 75])
    return {"count": int(v.size), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else None,
            "median": float(q50), "q25": float(q25), "q75": float(q75), "iqr": float(q75 - q25),
            "min": float(v.min()), "max": float(v.max())}


def summarize(table: PooledTable) -> dict:
    """Mean, standard deviation (n-1), median, quartiles and IQR of D, k, n and the volume expansion,
    over all objects and per kind (wire, particle)."""
    out = {"all": {q: _describe(table.column(q)) for q in SUMMARY_QUANTITIES}}
    for kind in ("wire", "particle"):
        rows = [r for r in table.rows if r["kind"] == kind]
        if rows:
            out[kind] = {q: _describe([r.get(q) for r in rows]) for q in SUMMARY_QUANTITIES}
    crack = [r for r in table.rows if r["kind"] == "particle"]
    if crack:
        out["particle_cracked_fraction"] = sum(bool(r["cracked"]) for r in crack) / len(crack)
    out["n_objects"] = len(table.rows)
    out["n_sources"] = len(table.sources)
    return out


def write_stats(table: PooledTable, out_dir, *, overwrite: bool = False) -> Path:
    """Write ``stats.csv`` (one row per object), ``stats.json`` (rows + summary) and the figures
    ``D_per_object.png`` and ``expansion_vs_size.png`` (with SVG twins) atomically into ``out_dir``."""
    import temtrack
    from temtrack.io.results import OutputFolder, save_figure_atomic, write_csv_atomic, write_json_atomic
    from temtrack.plots import stats as plots

    if not isinstance(table, PooledTable):
        raise ParameterError("write_stats expects the table returned by pool_results")
    out_dir = Path(out_dir)
    cols = table.as_columns()
    csv_cols = {c: [("" if v is None else (int(v) if isinstance(v, bool) else v)) for v in vals]
                for c, vals in cols.items()}
    with OutputFolder(out_dir, overwrite=overwrite) as stage:
        write_csv_atomic(stage / "stats.csv", csv_cols)
        write_json_atomic(stage / "stats.json", {
            "kind": "stats", "objects": table.rows, "summary": summarize(table), "sources": table.sources,
            "definitions": {
                "std": "sample standard deviation (n - 1)",
                "iqr": "q75 - q25 (linear interpolation)",
                "volume_expansion": "wires: (d1/d0)^2 (1 + axial strain) - 1 or (d1/d0)^2 - 1; particles: "
                                    "final (A/A0)^1.5 - 1 (isotropic swelling)",
                "size_nm": "wires: pristine diameter; particles: initial equivalent diameter",
            },
            "provenance": {"temtrack_version": temtrack.__version__},
        })
        save_figure_atomic(plots.d_per_object_figure(table), stage / "D_per_object.png", dpi=110)
        save_figure_atomic(plots.expansion_vs_size_figure(table), stage / "expansion_vs_size.png", dpi=110)
    return out_dir


def run_stats(paths: Iterable[str | os.PathLike], out_dir, *, overwrite: bool = False) -> PooledTable:
    """``temtrack stats RESULTS... --out DIR``: pool, summarise and write; returns the table
    (``table.summary()`` gives the numbers to print)."""
    table = pool_results(paths)
    write_stats(table, out_dir, overwrite=overwrite)
    return table
