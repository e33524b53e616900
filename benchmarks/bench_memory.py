"""Peak memory of ``analyze`` on movies several times larger than its memory budget.

The movie is a memory-mapped ``.npy`` of 1024x1024 uint16 frames written frame by frame: a few
dozen nanowire frames rendered at 256 px, upscaled, with noise from a pool of eight pre-drawn
fields (drawing Poisson noise for 6 GB would take longer than the analysis). ``analyze`` runs in a
fresh subprocess with ``memory_budget_mb`` set; a thread there samples ``/proc/self/status`` every
20 ms and keeps the peak of ``RssAnon`` (the process's own memory: arrays, buffers, interpreter;
what must stay bounded) for each stage (drift pass, wire pass, the rest), and ``VmHWM`` (the
kernel's peak resident set, which also counts pages of the memory-mapped file: clean page-cache
pages the kernel can drop at any time). Before ``analyze`` the child imports every module it
uses, so the memory it held then (``baseline``: interpreter, numpy, scipy, OpenCV, ...) is
separated from what ``analyze`` adds; the budget bounds the latter (see
``AnalyzeRecipe.memory_budget_mb``). The same run on a movie a quarter as long shows whether the
peak depends on the length. If the process's memory passes a safety cap (2x the budget plus
1 GiB above the baseline) the child stops itself and the row says where.

Full mode adds the big case of issue #7: a ~6 GB stack under a 1 GB budget
(``TEMTRACK_BENCH_MEMORY_BIG=0`` leaves it out; ``TEMTRACK_BENCH_MEMORY_BIG_GIB`` sets its size).
``TEMTRACK_BENCH_MEMORY_DRIFT=0`` runs every case without the drift pass (the wire pass alone).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, md_table, nanowire_frames

_CHILD = r'''
import json, os, sys, threading, time
from pathlib import Path

def status():
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) * 1024
    return out

args = json.loads(sys.argv[1])
stage = ["setup"]
peak = {"RssAnon": 0, "RssFile": 0}
stage_peak = {}
over = {}
stop = threading.Event()
cap = [None]

def sample():
    while not stop.is_set():
        s = status()
        for k in peak:
            peak[k] = max(peak[k], s.get(k, 0))
        a = s.get("RssAnon", 0)
        stage_peak[stage[0]] = max(stage_peak.get(stage[0], 0), a)
        if cap[0] is not None and a > cap[0]:
            over.update(stage=stage[0], RssAnon=a)
            print(json.dumps({"aborted": True, "stage": stage[0], "RssAnon": a, "cap": cap[0],
                              "stage_peaks": stage_peak, "elapsed_s": time.perf_counter() - t0}), flush=True)
            os._exit(3)
        time.sleep(0.02)

import numpy as np
from temtrack.io import open_movie
from temtrack.pipeline.analyze import AnalyzeRecipe, analyze
from temtrack.pipeline.executor import LocalExecutor
# Everything analyze imports lazily, so that the baseline holds the libraries.
import scipy.optimize, scipy.ndimage, scipy.sparse.linalg, scipy.special  # noqa: E401,F401
import temtrack.series.drift as drift_mod, temtrack.series.kymograph as kymo_mod  # noqa: E401
import temtrack.series.front, temtrack.series.diameter, temtrack.series.kinetics  # noqa: E401,F401
import temtrack.series.expansion, temtrack.series.wire_geometry  # noqa: E401,F401

try:
    import ctypes
    _trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):
    _trim = lambda pad: 0

def staged(mod, name, label):
    # malloc_trim at each boundary hands freed memory back to the kernel, so that a stage's
    # peak is not the previous stage's memory that glibc kept.
    f = getattr(mod, name)
    def g(*a, **k):
        _trim(0)
        stage[0] = label
        try:
            return f(*a, **k)
        finally:
            _trim(0)
            stage[0] = "rest"
    setattr(mod, name, g)

staged(drift_mod, "estimate_drift", "drift")
staged(kymo_mod, "measure_wire_series", "wire")
movie = open_movie(args["path"])
recipe = AnalyzeRecipe(line=args["line"], pixel_size_nm=args["pixel_size_nm"], memory_budget_mb=args["budget_mb"],
                       drift=args.get("drift", True))
base = status()
cap[0] = base["RssAnon"] + int(args["cap_bytes"])
t0 = time.perf_counter()
threading.Thread(target=sample, daemon=True).start()
stage[0] = "rest"
res = analyze(movie, recipe, executor=LocalExecutor(2))
elapsed = time.perf_counter() - t0
stop.set()
time.sleep(0.05)
final = status()
print(json.dumps({"elapsed_s": elapsed, "n_frames": movie.n_frames, "nbytes": movie.nbytes,
                  "VmHWM": final["VmHWM"], "peak_RssAnon": peak["RssAnon"], "peak_RssFile": peak["RssFile"],
                  "baseline_RssAnon": base["RssAnon"], "stage_peaks": stage_peak, "ok": bool(res.ok)}))
'''


def write_big(path: Path, n_frames: int, size: int, seed: int = 3) -> dict:
    import cv2

    unique = 60
    expected, truth = nanowire_frames(unique, (256, 256), seed=seed, noise=False, frame_interval_s=0.5)
    scale = size / 256
    rng = np.random.default_rng(seed)
    pool = [rng.normal(0, np.sqrt(40.0), size=(size, size)).astype(np.float32) for _ in range(8)]
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(n_frames, size, size))
    last, up = -1, None
    for i in range(n_frames):
        k = i * unique // n_frames
        if k != last:
            up = cv2.resize(expected[k], (size, size), interpolation=cv2.INTER_LINEAR)
            last = k
        mm[i] = np.clip(up + pool[i % 8], 0, 65535)
        if (i + 1) % 64 == 0:
            mm.flush()
    mm.flush()
    del mm
    px = truth["pixel_size_nm"] / scale
    path.with_suffix(".json").write_text(json.dumps({"pixel_size": px, "pixel_unit": "nm",
                                                     "frame_interval_s": 0.5 * unique / n_frames}))
    return {"line": [(v + 0.5) * scale - 0.5 for v in truth["line_px"]], "pixel_size_nm": px}


def measure(path: Path, info: dict, budget_mb: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cap = 2 * int(budget_mb * 2 ** 20) + (1 << 30)
    drift = os.environ.get("TEMTRACK_BENCH_MEMORY_DRIFT", "1") != "0"
    arg = json.dumps({"path": str(path), "budget_mb": budget_mb, "cap_bytes": cap, "drift": drift, **info})
    proc = subprocess.run([sys.executable, "-c", _CHILD, arg], capture_output=True, text=True, env=env, cwd=REPO)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 3 and lines:
        return json.loads(lines[-1])
    if proc.returncode:
        raise RuntimeError(f"analyze subprocess failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def _case(tmp: Path, n: int, size: int, budget_mb: float) -> dict:
    path = tmp / f"big{n}.npy"
    t0 = time.perf_counter()
    info = write_big(path, int(n), size)
    write_s = time.perf_counter() - t0
    try:
        r = measure(path, info, budget_mb)
    finally:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
    r.update(write_s=write_s, budget_mb=budget_mb, shape=[size, size], n_frames=int(n),
             nbytes=int(n) * size * size * 2)
    return r


def _row(r: dict) -> list:
    gib, mib = 2 ** 30, 2 ** 20
    stages = r.get("stage_peaks", {})
    base = r.get("baseline_RssAnon")
    if r.get("aborted"):
        return [f"{r['n_frames']} frames", f"{r['nbytes'] / gib:.2f}", f"{r['budget_mb']:g}",
                f"aborted: {r['RssAnon'] / gib:.2f} GiB > cap {r['cap'] / gib:.2f} GiB in the {r['stage']} stage",
                *[f"{stages.get(k, 0) / gib:.2f}" for k in ("drift", "wire", "rest")], "-", "-",
                f"{r['elapsed_s']:.0f} (stopped)", "-", False]
    return [f"{r['n_frames']} frames", f"{r['nbytes'] / gib:.2f}", f"{r['budget_mb']:g}",
            f"{(r['peak_RssAnon'] - base) / mib:.0f} MiB ({(r['peak_RssAnon'] - base) / mib / r['budget_mb']:.2f}x)",
            *[f"{stages.get(k, 0) / gib:.2f}" for k in ("drift", "wire", "rest")],
            f"{base / mib:.0f} MiB", f"{r['VmHWM'] / gib:.2f}", f"{r['elapsed_s']:.1f}",
            f"{r['n_frames'] / r['elapsed_s']:.1f}", r["ok"]]


def _within(r: dict) -> bool:
    return not r.get("aborted") and r["peak_RssAnon"] - r["baseline_RssAnon"] <= r["budget_mb"] * 2 ** 20


def run(quick: bool = False, workdir: str | None = None, big: bool | None = None) -> dict:
    # The default pair: 1 GiB under a 128 MiB budget (8x) and a quarter of it. Full mode adds the
    # big case, ~6 GB under 1 GB (TEMTRACK_BENCH_MEMORY_BIG=0 leaves it out).
    size = 512 if quick else 1024
    budget_mb = 16 if quick else float(os.environ.get("TEMTRACK_BENCH_MEMORY_BUDGET_MB", 128))
    total_bytes = (48 << 20) if quick else int(float(os.environ.get("TEMTRACK_BENCH_MEMORY_GIB", 1)) * 2 ** 30)
    if big is None:
        big = not quick and os.environ.get("TEMTRACK_BENCH_MEMORY_BIG", "1") != "0"
    big_bytes = int(float(os.environ.get("TEMTRACK_BENCH_MEMORY_BIG_GIB", 5.6)) * 2 ** 30)
    big_budget_mb = 1024.0
    n_long = total_bytes // (size * size * 2)
    base = Path(workdir or tempfile.gettempdir())
    need = max(total_bytes, big_bytes if big else 0) + (1 << 30)
    free = shutil.disk_usage(base).free
    if free < need:
        msg = f"Skipped: {free / 2**30:.1f} GiB free under {base}, need {need / 2**30:.1f} GiB."
        return {"name": "memory", "title": "4. Bounded memory", "skipped": msg, "markdown": msg}
    with tempfile.TemporaryDirectory(dir=workdir, prefix="memory-") as tmp:
        tmp = Path(tmp)
        rows = [_case(tmp, n, size, budget_mb) for n in (n_long // 4, n_long)]
        big_row = _case(tmp, big_bytes // (size * size * 2), size, big_budget_mb) if big else None
    gib = 2 ** 30
    short, long = rows
    done = not (short.get("aborted") or long.get("aborted"))
    bounded = done and long["peak_RssAnon"] <= 1.25 * short["peak_RssAnon"] + (64 << 20)
    within = all(_within(r) for r in rows + ([big_row] if big_row else []))
    header = ["movie", "file GiB", "budget MiB", "peak above baseline", "peak drift GiB", "peak wire GiB",
              "peak rest GiB", "baseline", "VmHWM GiB (incl. mapped file pages)", "analyze s", "frames/s", "ok"]
    no_drift = " with `drift=False` (the wire pass alone)" if os.environ.get("TEMTRACK_BENCH_MEMORY_DRIFT") == "0" else ""
    md = [f"`analyze` (LocalExecutor(2)){no_drift} in a fresh process on memory-mapped .npy movies of {size}x{size} uint16 "
          "frames, written and deleted by the benchmark. Baseline: the child's own memory (RssAnon) with every module "
          "analyze uses imported, before analyze; the budget bounds the peak above it. Per-stage columns: peak "
          "RssAnon (including the baseline) during the drift pass, the wire pass and everything else (freed memory is handed back to the kernel between stages with `malloc_trim`).", "",
          md_table(header, [_row(r) for r in rows + ([big_row] if big_row else [])]), ""]
    if done:
        md += [f"Bounded (the peak does not grow with the movie: {short['peak_RssAnon'] / gib:.2f} GiB at "
               f"{short['nbytes'] / gib:.2f} GiB of movie, {long['peak_RssAnon'] / gib:.2f} GiB at "
               f"{long['nbytes'] / gib:.2f} GiB): {'**yes**' if bounded else '**no**'}."]
    else:
        md += ["Bounded: **no** (a run passed the safety cap and was stopped)."]
    md += [f"Within the budget (peak above the baseline <= budget, every row): {'**yes**' if within else '**no**'}.", ""]
    return {"name": "memory", "title": "4. Bounded memory", "results": rows, "big": big_row, "bounded": bounded,
            "within_budget": within, "target_met": bool(bounded and within), "markdown": "\n".join(md)}


if __name__ == "__main__":
    print(run(quick=True)["markdown"])
