"""Shared helpers of the benchmarks: timing, machine facts, synthetic movies, markdown.

Every figure is the median of several timed runs after one untimed warm-up (first-touch memory,
FFT plans, imports); the individual runs are kept so the spread is visible. Synthetic movies are
cached between runs (``TEMTRACK_BENCH_CACHE``, default ``/tmp/temtrack-bench-cache``) because the
nanowire renderer costs 28 ms per 264x264 frame and 3.3 s per 2048x2048 frame.
"""
from __future__ import annotations

import cProfile
import datetime as _dt
import hashlib
import importlib
import io
import json
import os
import platform
import pstats
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    d = Path(os.environ.get("TEMTRACK_BENCH_CACHE", "/tmp/temtrack-bench-cache"))
    d.mkdir(parents=True, exist_ok=True)
    return d


# -- timing ------------------------------------------------------------------------------------
def timed_runs(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> tuple[list[float], object]:
    """Wall times (s) of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls; returns the last output."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def interleaved_runs(methods: dict[str, Callable[[], object]], *, repeats: int) -> tuple[dict, dict]:
    """Wall times (s) of each method over ``repeats`` rounds, the methods taking turns within a round
    (so a change of machine load hits all of them alike), after one untimed warm-up call each
    (imports, FFT plans, caches), with BLAS limited to one thread. Returns (times, last outputs)."""
    times = {k: [] for k in methods}
    out = {}
    with blas_threads(1):
        for k, fn in methods.items():
            out[k] = fn()
        for _ in range(repeats):
            for k, fn in methods.items():
                t0 = time.perf_counter()
                out[k] = fn()
                times[k].append(time.perf_counter() - t0)
    return times, out


def rate(n_items: int, times: list[float]) -> dict:
    """Median items/s over runs, with the per-run rates."""
    rates = [n_items / t for t in times]
    return {"median": float(statistics.median(rates)), "runs": [round(r, 1) for r in rates],
            "median_s": float(statistics.median(times))}


def profile_top(fn: Callable[[], object], *, n: int = 12) -> list[dict]:
    """cProfile of one call of ``fn`` (main thread only): the ``n`` functions with most own time."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    st = pstats.Stats(prof, stream=io.StringIO())
    total = sum(v[2] for v in st.stats.values()) or 1.0
    rows = []
    for (file, line, name), (cc, nc, tt, ct, _callers) in st.stats.items():
        rows.append({"function": f"{_short(file)}:{line}({name})", "calls": nc, "tottime_s": tt,
                     "cumtime_s": ct, "share": tt / total})
    rows.sort(key=lambda r: -r["tottime_s"])
    return rows[:n]


def _short(file: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def profile_table(rows: list[dict]) -> str:
    return md_table(["function (file:line)", "calls", "own time s", "share of own time", "cumulative s"],
                    [[f"`{r['function']}`", r["calls"], f"{r['tottime_s']:.3f}", f"{100 * r['share']:.0f}%",
                      f"{r['cumtime_s']:.3f}"] for r in rows])


# -- machine -----------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return ", ".join(f for f in ("avx2", "avx512f", "fma") if f in flags) or "none of avx2/avx512f/fma"
    except OSError:
        pass
    return "unknown"


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name, mod in (("temtrack", "temtrack"), ("numpy", "numpy"), ("scipy", "scipy"),
                      ("scikit-image", "skimage"), ("opencv", "cv2"), ("pyFAI", "pyFAI"), ("dask", "dask"),
                      ("distributed", "distributed"), ("tifffile", "tifffile"), ("psutil", "psutil")):
        try:
            m = importlib.import_module(mod)
            out[name] = str(getattr(m, "__version__", None) or getattr(m, "version", "?"))
        except Exception as exc:  # noqa: BLE001 - a missing peer is reported, not fatal
            out[name] = f"not available ({type(exc).__name__})"
    return out


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
        parts = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('num_threads')} threads)"
                 for i in threadpool_info()]
        return "; ".join(parts) or "none loaded"
    except Exception:  # noqa: BLE001
        return "threadpoolctl not available"


def machine() -> dict:
    try:
        import psutil
        ram = psutil.virtual_memory().total
    except ImportError:  # pragma: no cover
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    import numpy  # noqa: F401 - loads the BLAS that blas_info reports
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 2 ** 30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        "blas": blas_info(),
        "versions": versions(),
    }


# -- markdown ----------------------------------------------------------------------------------
def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fmt(x, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


# -- synthetic movies --------------------------------------------------------------------------
def _key(**kw) -> str:
    return hashlib.sha1(json.dumps(kw, sort_keys=True).encode()).hexdigest()[:12]


def nanowire_frames(n_frames: int, shape: tuple[int, int], *, seed: int = 0, noise: bool = True,
                    **kwargs) -> tuple[np.ndarray, dict]:
    """:func:`temtrack.synthetic.nanowire.make_nanowire_movie`, cached on disk."""
    from temtrack.synthetic.nanowire import make_nanowire_movie

    key = _key(kind="nanowire", n=n_frames, shape=list(shape), seed=seed, noise=noise, **kwargs)
    f_path = cache_dir() / f"nanowire-{key}.npy"
    t_path = cache_dir() / f"nanowire-{key}.json"
    if f_path.exists() and t_path.exists():
        return np.load(f_path), json.loads(t_path.read_text())
    frames, truth = make_nanowire_movie(n_frames=n_frames, shape=shape, seed=seed, noise=noise, **kwargs)
    np.save(f_path.with_suffix(".tmp.npy"), frames)
    os.replace(f_path.with_suffix(".tmp.npy"), f_path)
    t_path.write_text(json.dumps(truth))
    return frames, truth


def stretched_nanowire(n_frames: int, shape: tuple[int, int], *, unique: int, render_size: int = 256,
                       seed: int = 0, dose: float = 40.0):
    """A long nanowire movie at any size, cheaply: ``unique`` noise-free frames rendered at
    ``render_size`` px, upscaled bilinearly to ``shape`` and each shown ``n_frames / unique`` times
    with fresh Poisson noise (a camera faster than the reaction). Yields uint16 chunks.

    Returns (chunk iterator factory, truth scaled to ``shape``). The specimen, drift and front are
    those of the rendered movie; the truth's lines and drifts are scaled to the output pixels.
    """
    import cv2

    scale = shape[0] / render_size
    expected, truth = nanowire_frames(unique, (render_size, render_size), seed=seed, noise=False, dose=dose,
                                      frame_interval_s=0.5)
    rep = max(1, int(np.ceil(n_frames / unique)))
    truth = dict(truth)
    truth["line_px"] = [(v + 0.5) * scale - 0.5 for v in truth["line_px"]]
    truth["pixel_size_nm"] = truth["pixel_size_nm"] / scale
    truth["frame_interval_s"] = truth["frame_interval_s"] / rep
    # Frame i is stamped i * dt / rep, about the render time of frame i // rep: D and t0 unchanged.
    truth["drift_dy_px"] = [v * scale for v in np.repeat(truth["drift_dy_px"], rep)[:n_frames]]
    truth["drift_dx_px"] = [v * scale for v in np.repeat(truth["drift_dx_px"], rep)[:n_frames]]

    def chunks(chunk: int = 64):
        rng = np.random.default_rng(seed + 1)
        up = None
        last = -1
        for a in range(0, n_frames, chunk):
            b = min(n_frames, a + chunk)
            out = np.empty((b - a, *shape), np.uint16)
            for i in range(a, b):
                k = i // rep
                if k != last:
                    img = expected[k]
                    up = img if scale == 1 else cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
                    up = np.clip(up, 0, None).astype(np.float32)
                    last = k
                out[i - a] = np.minimum(rng.poisson(up), 65535)
            yield a, out

    return chunks, truth


def retime(truth: dict, frame_interval_s: float) -> dict:
    """The truth of the same frames stamped ``frame_interval_s`` apart."""
    f = truth["frame_interval_s"] / frame_interval_s
    out = dict(truth, frame_interval_s=frame_interval_s)
    out["kinetics"] = dict(truth["kinetics"], D_nm2_per_s=truth["kinetics"]["D_nm2_per_s"] * f,
                           t0_s=truth["kinetics"]["t0_s"] / f)
    return out


def write_npy_movie(path: Path, chunks, n_frames: int, shape, *, pixel_size_nm: float, frame_interval_s: float) -> Path:
    """Write chunks into a memory-mapped ``.npy`` with the JSON calibration sidecar."""
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(n_frames, *shape))
    for a, block in chunks():
        mm[a:a + len(block)] = block
    mm.flush()
    del mm
    path.with_suffix(".json").write_text(json.dumps({"pixel_size": pixel_size_nm, "pixel_unit": "nm",
                                                     "frame_interval_s": frame_interval_s}))
    return path


def drop_page_cache(path: Path) -> bool:
    """Ask the kernel to drop a file's cached pages (POSIX_FADV_DONTNEED); True when supported."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    finally:
        os.close(fd)


def blas_threads(n: int):
    """Context limiting BLAS to ``n`` threads (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(n, user_api="blas")


def rms(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.sqrt(np.nanmean(a * a)))
