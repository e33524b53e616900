"""Peak memory of ``analyze`` on movies several times larger than its memory budget.

The movie is a memory-mapped ``.npy`` of 2048x2048 uint16 frames written chunk by chunk: a few
hundred nanowire frames rendered at 256 px, upscaled, with noise from a pool of eight pre-drawn
fields (drawing Poisson noise for 6 GB would take longer than the analysis). ``analyze`` runs in a
fresh subprocess with ``memory_budget_mb`` set; a thread there samples ``/proc/self/status`` every
20 ms. Reported: ``VmHWM`` (the kernel's peak resident set, which includes pages of the memory-mapped
file: clean page-cache pages the kernel can drop at any time) and the peak of ``RssAnon`` (the
process's own memory: arrays, buffers, interpreter), which is what must stay bounded. The same run
on a movie a quarter as long shows whether the peak depends on the length.
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
import json, sys, threading, time
from pathlib import Path

def status():
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) * 1024
    return out

peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
stop = threading.Event()
def sample():
    while not stop.is_set():
        s = status()
        for k in peak:
            peak[k] = max(peak[k], s.get(k, 0))
        time.sleep(0.02)

base = status()
threading.Thread(target=sample, daemon=True).start()
from temtrack.io import open_movie
from temtrack.pipeline.analyze import AnalyzeRecipe, analyze
from temtrack.pipeline.executor import LocalExecutor
args = json.loads(sys.argv[1])
movie = open_movie(args["path"])
after_import = status()
recipe = AnalyzeRecipe(line=args["line"], pixel_size_nm=args["pixel_size_nm"], memory_budget_mb=args["budget_mb"])
t0 = time.perf_counter()
res = analyze(movie, recipe, executor=LocalExecutor(2))
elapsed = time.perf_counter() - t0
stop.set()
time.sleep(0.05)
final = status()
print(json.dumps({"elapsed_s": elapsed, "n_frames": movie.n_frames, "nbytes": movie.nbytes,
                  "VmHWM": final["VmHWM"], "peak_RssAnon": peak["RssAnon"], "peak_RssFile": peak["RssFile"],
                  "anon_after_imports": after_import["RssAnon"], "ok": bool(res.ok)}))
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
    arg = json.dumps({"path": str(path), "budget_mb": budget_mb, **info})
    proc = subprocess.run([sys.executable, "-c", _CHILD, arg], capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(f"analyze subprocess failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False, workdir: str | None = None) -> dict:
    # analyze streams only some 5-20 MB/s of uint16 on this machine: a 6 GiB movie takes many
    # minutes per run, so the default is 1 GiB under a 128 MiB budget (8x);
    # TEMTRACK_BENCH_MEMORY_GIB=6 TEMTRACK_BENCH_MEMORY_BUDGET_MB=1024 reproduce the 6 GB case.
    size = 512 if quick else 1024
    budget_mb = 16 if quick else float(os.environ.get("TEMTRACK_BENCH_MEMORY_BUDGET_MB", 128))
    total_bytes = (48 << 20) if quick else int(float(os.environ.get("TEMTRACK_BENCH_MEMORY_GIB", 1)) * 2 ** 30)
    n_long = total_bytes // (size * size * 2)
    base = Path(workdir or tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    if free < 2 * total_bytes:
        msg = f"Skipped: {free / 2**30:.1f} GiB free under {base}, need {2 * total_bytes / 2**30:.1f} GiB."
        return {"name": "memory", "title": "4. Bounded memory", "skipped": msg, "markdown": msg}
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="memory-") as tmp:
        tmp = Path(tmp)
        for n in (n_long // 4, n_long):
            path = tmp / f"big{n}.npy"
            t0 = time.perf_counter()
            info = write_big(path, int(n), size)
            write_s = time.perf_counter() - t0
            r = measure(path, info, budget_mb)
            r.update(write_s=write_s, budget_mb=budget_mb, shape=[size, size])
            rows.append(r)
            path.unlink()
            path.with_suffix(".json").unlink(missing_ok=True)
    gib = 2 ** 30
    long = rows[-1]
    bounded = long["peak_RssAnon"] <= 1.25 * rows[0]["peak_RssAnon"] + (64 << 20)
    md = [f"`analyze` (LocalExecutor(2), `memory_budget_mb={budget_mb:g}`) in a fresh process on memory-mapped "
          f".npy movies of {size}x{size} uint16 frames, written and deleted by the benchmark.", "",
          md_table(["movie", "file GiB", "x budget", "peak RssAnon GiB", "VmHWM GiB (incl. mapped file pages)",
                    "peak RssFile GiB", "after imports GiB", "analyze s", "frames/s", "ok"],
                   [[f"{r['n_frames']} frames", f"{r['nbytes'] / gib:.2f}", f"{r['nbytes'] / 2**20 / budget_mb:.1f}",
                     f"{r['peak_RssAnon'] / gib:.2f}", f"{r['VmHWM'] / gib:.2f}", f"{r['peak_RssFile'] / gib:.2f}",
                     f"{r['anon_after_imports'] / gib:.2f}", f"{r['elapsed_s']:.1f}",
                     f"{r['n_frames'] / r['elapsed_s']:.1f}", r["ok"]] for r in rows]), "",
          f"Bounded (the peak of the process's own memory does not grow with the movie: "
          f"{rows[0]['peak_RssAnon'] / gib:.2f} GiB at {rows[0]['nbytes'] / gib:.1f} GiB of movie, "
          f"{long['peak_RssAnon'] / gib:.2f} GiB at {long['nbytes'] / gib:.1f} GiB): "
          f"{'**yes**' if bounded else '**no**'}. Within the budget: "
          f"{'**yes**' if long['peak_RssAnon'] <= budget_mb * 2 ** 20 else '**no**'} (peak "
          f"{long['peak_RssAnon'] / 2 ** 20 / budget_mb:.1f}x the {budget_mb:g} MiB budget, which covers frames "
          "in flight only; the process held "
          f"{long['anon_after_imports'] / 2 ** 20:.0f} MiB when analyze was called, before the modules it imports "
          "lazily).", ""]
    return {"name": "memory", "title": "4. Bounded memory", "results": rows, "bounded": bounded,
            "target_met": bounded, "markdown": "\n".join(md)}


if __name__ == "__main__":
    print(run(quick=True)["markdown"])
