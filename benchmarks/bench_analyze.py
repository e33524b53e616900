"""End-to-end ``temtrack analyze``: frames/s on pnCCD-like, 512x512 and 2048x2048 movies.

The movies are long nanowire recordings made cheaply (see
:func:`benchmarks.common.stretched_nanowire`: a few hundred rendered frames, each shown several
times with fresh Poisson noise). The 264x264 movie is written as a pnCCD ``frms6`` recording (raw
folded layout, dark frames, time stamps) with :func:`temtrack.io.frms6.write_frms6`; the larger ones
as memory-mapped ``.npy`` with a calibration sidecar. Each is analysed through the Python API,
``analyze(open_movie(path), recipe, executor=LocalExecutor(2))``, and compared with the raw read
speed of the same file (every frame through ``movie.read`` in the executor's chunk size). Both
read from the page cache (the file was just written): the disk is measured in the limits section.
The 264x264 movie is also run once through the command line (wall time including start-up).
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (REPO, fmt, md_table, profile_table, profile_top, retime, stretched_nanowire,
                               write_npy_movie)

TARGET_FPS_264 = 1000.0


def write_frms6_movie(base: Path, n_frames: int, *, unique: int) -> tuple[Path, dict]:
    """A 264x264 pnCCD-like recording (1 kHz frame stamps) of a sodiating nanowire."""
    from temtrack.io.frms6 import fold, write_frms6

    chunks, truth = stretched_nanowire(n_frames, (264, 264), unique=unique, render_size=264, seed=5)
    frames = np.empty((n_frames, 264, 264), np.uint16)
    for a, block in chunks():
        frames[a:a + len(block)] = block
    offset = 500   # pnCCD frames carry a dark offset the reader subtracts
    rng = np.random.default_rng(9)
    dark = fold(np.clip(offset + rng.normal(0, 3, size=(16, 264, 264)), 0, 65535).astype(np.uint16))
    hdr = write_frms6(base, fold(np.minimum(frames.astype(np.uint32) + offset, 65535).astype(np.uint16)), dark,
                      dwell_time_us=1000, frames_per_file=1000)
    return hdr, retime(truth, 1e-3)


def write_big_movie(path: Path, n_frames: int, size: int, *, unique: int) -> tuple[Path, dict]:
    chunks, truth = stretched_nanowire(n_frames, (size, size), unique=unique, render_size=256, seed=7)
    write_npy_movie(path, lambda: chunks(max(1, (64 << 20) // (size * size * 2))), n_frames, (size, size),
                    pixel_size_nm=truth["pixel_size_nm"], frame_interval_s=truth["frame_interval_s"])
    return path, truth


def recipe_for(truth: dict, **kw):
    from temtrack.pipeline.analyze import AnalyzeRecipe
    return AnalyzeRecipe(line=[float(v) for v in truth["line_px"]], pixel_size_nm=float(truth["pixel_size_nm"]),
                         **kw)


def read_all(movie, chunk: int) -> int:
    n = 0
    for a in range(0, movie.n_frames, chunk):
        n += len(movie.read(a, min(movie.n_frames, a + chunk)))
    return n


def run_analyze(path: Path, truth: dict, workers: int = 2, **recipe_kw):
    from temtrack.io import open_movie
    from temtrack.pipeline.analyze import analyze
    from temtrack.pipeline.executor import LocalExecutor

    return analyze(open_movie(path), recipe_for(truth, **recipe_kw), executor=LocalExecutor(workers))


def _summary(res, truth) -> dict:
    k = res.kinetics_json or {}
    d_true = truth["kinetics"]["D_nm2_per_s"]
    d = k.get("D_nm2_per_s")
    dy = np.asarray(res.drift_dy_px) - np.asarray(truth["drift_dy_px"])[: len(res.drift_dy_px)]
    dx = np.asarray(res.drift_dx_px) - np.asarray(truth["drift_dx_px"])[: len(res.drift_dx_px)]
    return {"ok": bool(res.ok), "problems": list(res.problems)[:3],
            "D_over_true": (d / d_true) if d else None,
            "drift_rms_error_px": float(np.sqrt(np.nanmean(dy * dy + dx * dx)))}


def bench_movie(label: str, path: Path, truth: dict, repeats: int, *, cli: bool = False, warmup: bool = True) -> dict:
    from temtrack.io import open_movie
    from temtrack.pipeline.executor import chunk_frames_for

    movie = open_movie(path)
    n = movie.n_frames
    chunk = chunk_frames_for(movie, None, in_flight=4)
    size_mb = movie.nbytes / 2 ** 20
    read_t, an_t = [], []
    if warmup:
        run_analyze(path, truth)                 # imports, caches, FFT plans
    read_all(movie, chunk)                       # the page cache
    for _ in range(repeats):
        t0 = time.perf_counter()
        read_all(movie, chunk)
        read_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = run_analyze(path, truth)
        an_t.append(time.perf_counter() - t0)
    row = {"label": label, "path_kind": movie.format, "n_frames": n, "shape": list(movie.frame_shape),
           "file_MiB": round(size_mb, 1), "read_chunk_frames": chunk,
           "read_fps": statistics.median(n / t for t in read_t), "read_runs": [round(n / t, 1) for t in read_t],
           "analyze_fps": statistics.median(n / t for t in an_t), "analyze_runs": [round(n / t, 1) for t in an_t],
           **_summary(res, truth)}
    row["ratio_to_read"] = row["analyze_fps"] / row["read_fps"]
    if cli:
        with tempfile.TemporaryDirectory(prefix="cli-out-") as out:
            line = ",".join(f"{v:.3f}" for v in truth["line_px"])
            cmd = [sys.executable, "-m", "temtrack", "-q", "analyze", str(path), "--line", line,
                   "--pixel-size", f"{truth['pixel_size_nm']:.6g}", "--workers", "2", "--out", str(Path(out) / "r"),
                   "--overwrite"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            wall = time.perf_counter() - t0
            shown = ["temtrack", "-q", "analyze", "MOVIE.hdr", *cmd[6:-3], "--out", "DIR"]
            row["cli"] = {"command": " ".join(shown),
                          "returncode": proc.returncode, "wall_s": wall, "fps_incl_startup": n / wall,
                          "stderr_tail": proc.stderr.strip().splitlines()[-3:]}
    return row


def run(quick: bool = False, workdir: str | None = None) -> dict:
    plan = [("264x264 pnCCD frms6", 264, 48 if quick else 1000, 1 if quick else 3),
            ("512x512 .npy", 512, 0 if quick else 200, 3),
            ("2048x2048 .npy", 2048, 0 if quick else 20, 2)]
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="analyze-") as tmp:
        tmp = Path(tmp)
        for label, size, n, repeats in plan:
            if not n:
                continue
            if size == 264:
                path, truth = write_frms6_movie(tmp / "pnccd", n, unique=24 if quick else 400)
            else:
                path, truth = write_big_movie(tmp / f"movie{size}.npy", n, size, unique=24 if quick else 100)
            # No warm-up run: imports and FFT set-up happened in the earlier benchmarks of this process,
            # and a warm-up would double the longest part of the run.
            rows.append(bench_movie(label, path, truth, repeats, cli=(size == 264 and not quick), warmup=False))
            if size != 264:
                for p in (path, path.with_suffix(".json")):
                    p.unlink(missing_ok=True)
        met = rows[0]["analyze_fps"] >= TARGET_FPS_264
        md = [f"`analyze(open_movie(path), recipe, executor=LocalExecutor(2))` with the true wire line, "
              f"median of {', '.join(str(p[3]) for p in plan if p[2])} run(s); read = every frame through `movie.read` in chunks "
              f"of the executor's size, same file, same (warm) page cache. Sanity columns: drift RMS error "
              f"against the truth and fitted D over true D.", "",
              md_table(["movie", "frames", "file MiB", "analyze frames/s", "runs", "read frames/s",
                        "analyze / read", "ok", "drift RMS px", "D / D_true"],
                       [[r["label"], r["n_frames"], r["file_MiB"], fmt(r["analyze_fps"]), r["analyze_runs"],
                         fmt(r["read_fps"]), f"{r['ratio_to_read']:.3f}", r["ok"],
                         f"{r['drift_rms_error_px']:.3f}", fmt(r["D_over_true"], 3)] for r in rows]), ""]
        cli = rows[0].get("cli")
        if cli:
            md += [f"Command line once on the 264x264 movie: `{cli['command']}` exited {cli['returncode']} in "
                   f"{cli['wall_s']:.1f} s wall ({fmt(cli['fps_incl_startup'])} frames/s including interpreter "
                   "start-up, imports and writing the results).", ""]
        md += [f"Target (264x264 >= {TARGET_FPS_264:g} frames/s): {'**met**' if met else '**not met**'} "
               f"({fmt(rows[0]['analyze_fps'])} frames/s).", ""]
        out = {"name": "analyze", "title": "3. End-to-end analyze", "results": rows, "target_met": met}
        if not quick and not met:
            from temtrack.io import open_movie
            from temtrack.pipeline.analyze import analyze
            from temtrack.pipeline.executor import LocalExecutor
            pn_path, pn_truth = write_frms6_movie(tmp / "pnccd_profile", 300, unique=100)
            movie = open_movie(pn_path)
            prof = profile_top(lambda: analyze(movie, recipe_for(pn_truth), executor=LocalExecutor(1)), n=15)
            shifts = (np.asarray(pn_truth["drift_dy_px"]), np.asarray(pn_truth["drift_dx_px"]))
            wire_prof = profile_top(lambda: analyze(movie, recipe_for(pn_truth), executor=LocalExecutor(1),
                                                    shifts_px=shifts), n=15)
            stages = _stage_split(pn_path, pn_truth)
            out["profile"], out["wire_profile"], out["stages"] = prof, wire_prof, stages
            md += ["Where the time goes at 264x264 (one executor thread, so cProfile sees the work; "
                   f"{movie.n_frames} frames):", "",
                   md_table(["stage", "s", "frames/s"], [[k, f"{v:.2f}", fmt(movie.n_frames / v) if v > 0 else "n/a"]
                                                         for k, v in stages.items()]),
                   "", "Whole `analyze` (drift estimated):", "", profile_table(prof), "",
                   "The wire pass alone (`analyze` with the true shifts given):", "", profile_table(wire_prof), ""]
    out["markdown"] = "\n".join(md)
    return out


def _stage_split(path, truth) -> dict:
    """Time the passes of analyze separately (2 threads): drift, then the wire pass and its parts."""
    import temtrack.series.front as front_mod
    import temtrack.series.kinetics as kinetics_mod
    import temtrack.series.kymograph as kymo_mod
    from temtrack.io import open_movie
    from temtrack.pipeline.analyze import analyze
    from temtrack.pipeline.executor import LocalExecutor
    from temtrack.series.drift import estimate_drift

    movie = open_movie(path)
    ex = LocalExecutor(2)
    t0 = time.perf_counter()
    d = estimate_drift(movie, executor=ex)
    t_drift = time.perf_counter() - t0
    parts: dict = {}
    saved = [(kymo_mod, "measure_wire_series"), (front_mod, "track_front"), (kinetics_mod, "fit_kinetics")]
    originals = [getattr(m, n) for m, n in saved]

    def timed(fn, label):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                parts[label] = parts.get(label, 0.0) + time.perf_counter() - t
        return wrapper

    labels = ["  of which: per-frame pass (read, sample, fit; measure_wire_series)", "  of which: front tracking",
              "  of which: kinetics fits"]
    try:
        for (m, n), f, label in zip(saved, originals, labels):
            setattr(m, n, timed(f, label))
        t0 = time.perf_counter()
        analyze(movie, recipe_for(truth), executor=ex, shifts_px=(d.dy_px, d.dx_px))
        t_rest = time.perf_counter() - t0
    finally:
        for (m, n), f in zip(saved, originals):
            setattr(m, n, f)
    t0 = time.perf_counter()
    read_all(movie, 256)
    t_read = time.perf_counter() - t0
    out = {"read (movie.read, chunks of 256)": t_read, "drift (estimate_drift)": t_drift,
           "wire pass + fits (analyze with given shifts)": t_rest}
    out.update({k: parts.get(k, 0.0) for k in labels})
    out["  of which: the rest (width, diameters, expansion, set-up)"] = t_rest - sum(parts.get(k, 0.0) for k in labels)
    return out


if __name__ == "__main__":
    print(run(quick=True)["markdown"])
