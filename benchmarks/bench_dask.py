"""``analyze`` on a dask.distributed LocalCluster (1 and 2 worker processes) against the local executor.

Same 512x512 ``.npy`` movie for all three; the workers open it by path (``Movie.__reduce__``).
Results must match the local executor's: compared are the drift, the kymograph and the diameters
(maximum absolute difference). Cluster start-up is timed separately from the analysis.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_analyze import recipe_for, write_big_movie
from benchmarks.common import fmt, md_table


def _arrays(res) -> dict:
    return {"drift_dy_px": np.asarray(res.drift_dy_px), "drift_dx_px": np.asarray(res.drift_dx_px),
            "kymograph": np.asarray(res.series.kymograph), "diameter_px": np.asarray(res.series.diameter_px)}


def _compare(a: dict, b: dict) -> dict:
    """Largest absolute difference over finite pairs, and elements finite in one result only."""
    worst, nan_mismatch, where = 0.0, 0, []
    for k in a:
        x, y = a[k], b[k]
        if x.shape != y.shape:
            return {"max_abs_diff": float("inf"), "nan_mismatch": -1, "where": [f"{k}: shape {x.shape} vs {y.shape}"]}
        fx, fy = np.isfinite(x), np.isfinite(y)
        mism = int(np.count_nonzero(fx != fy))
        if mism:
            nan_mismatch += mism
            where.append(f"{k}: {mism} of {x.size} finite in one only")
        both = fx & fy
        if both.any():
            d = float(np.max(np.abs(x[both] - y[both])))
            if d > worst:
                worst = d
            if d > 1e-6:
                where.append(f"{k}: max |diff| {d:.3g}")
    return {"max_abs_diff": worst, "nan_mismatch": nan_mismatch, "where": where}


def run(quick: bool = False, workdir: str | None = None) -> dict:
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        msg = f"Skipped: dask.distributed is not installed ({exc})."
        return {"name": "dask", "title": "5. dask.distributed", "skipped": msg, "markdown": msg}
    from temtrack.io import open_movie
    from temtrack.pipeline.analyze import analyze
    from temtrack.pipeline.executor import DaskExecutor, LocalExecutor

    n = 16 if quick else 100
    repeats = 1 if quick else 2
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="dask-") as tmp:
        path, truth = write_big_movie(Path(tmp) / "dask512.npy", n, 512, unique=16 if quick else 100)
        movie = open_movie(path)
        recipe = recipe_for(truth)

        def timed(executor):
            if not quick:
                analyze(movie, recipe, executor=executor)      # warm-up (imports on the workers)
            times, res = [], None
            for _ in range(repeats):
                t0 = time.perf_counter()
                res = analyze(movie, recipe, executor=executor)
                times.append(time.perf_counter() - t0)
            return times, res

        t_loc, ref = timed(LocalExecutor(2))
        ref_arrays = _arrays(ref)
        rows.append({"executor": "LocalExecutor(2) (threads)", "startup_s": 0.0,
                     "fps": statistics.median(n / t for t in t_loc), "runs": [round(n / t, 1) for t in t_loc],
                     "max_abs_diff": 0.0, "nan_mismatch": 0, "where": []})
        for workers in (1, 2):
            t0 = time.perf_counter()
            ex = DaskExecutor(workers=workers)
            startup = time.perf_counter() - t0
            try:
                t_d, res = timed(ex)
            finally:
                ex.close()
            rows.append({"executor": f"DaskExecutor(workers={workers}) (LocalCluster, processes)",
                         "startup_s": startup, "fps": statistics.median(n / t for t in t_d),
                         "runs": [round(n / t, 1) for t in t_d], **_compare(ref_arrays, _arrays(res))})
    same = all(r["max_abs_diff"] <= 1e-6 and r["nan_mismatch"] == 0 for r in rows)
    md = [f"`analyze` on a {n}-frame 512x512 .npy movie, median of {repeats} run(s)"
          f"{'' if quick else ' after a warm-up per executor'}; "
          "max abs. difference over drift (px), kymograph, and per-frame diameters (px) against the local "
          "executor.", "",
          md_table(["executor", "cluster start-up s", "analyze frames/s", "runs", "max abs. difference",
                    "NaN in one only", "details"],
                   [[r["executor"], f"{r['startup_s']:.1f}", fmt(r["fps"]), r["runs"], f"{r['max_abs_diff']:.2g}",
                     r["nan_mismatch"], "; ".join(r["where"]) or "-"] for r in rows]), "",
          f"Same results (<= 1e-6): {'**yes**' if same else '**no**'}.", ""]
    return {"name": "dask", "title": "5. dask.distributed", "results": rows, "same_results": same,
            "target_met": same, "markdown": "\n".join(md)}


if __name__ == "__main__":
    print(run(quick=True)["markdown"])
