"""Physical limits of the machine: memory bandwidth, sequential disk read, FFT throughput.

These are the ceilings the pipeline stages are compared with: a stage that reads N bytes/s cannot
beat the disk, one that touches every pixel a few times cannot beat the memory bandwidth, and the
drift estimate needs one forward and one inverse real FFT per frame.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import drop_page_cache, fmt, md_table, rate, timed_runs


def memory_bandwidth(n_bytes: int, repeats: int) -> dict:
    src = np.ones(n_bytes // 8, dtype=np.float64)
    dst = np.zeros_like(src)            # touched: first-touch page faults are not bandwidth
    times, _ = timed_runs(lambda: np.copyto(dst, src), repeats=repeats)
    r = rate(n_bytes, times)
    return {"copy_GB_per_s": r["median"] / 1e9, "runs_GB_per_s": [round(x / 1e9, 2) for x in r["runs"]],
            "bytes": n_bytes, "note": "np.copyto of a touched float64 array; bytes copied per second "
                                      "(each byte is read once and written once)"}


def disk_read(n_bytes: int, repeats: int, workdir: Path) -> dict:
    path = Path(workdir) / "disk_read.bin"
    block = 8 << 20
    buf = np.random.default_rng(0).integers(0, 255, size=block, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        for _ in range(n_bytes // block):
            f.write(buf)
        f.flush()
        os.fsync(f.fileno())    # clean pages can be dropped from the cache; dirty ones cannot
    out = bytearray(block)
    mv = memoryview(out)

    def read_all():
        total = 0
        with open(path, "rb", buffering=0) as f:
            while True:
                n = f.readinto(mv)
                if not n:
                    break
                total += n
        return total

    cold, warm = [], []
    dropped = True
    try:
        for _ in range(repeats):
            dropped &= drop_page_cache(path)
            t0 = time.perf_counter()
            read_all()
            cold.append(time.perf_counter() - t0)
        for _ in range(repeats):
            t0 = time.perf_counter()
            read_all()
            warm.append(time.perf_counter() - t0)
    finally:
        path.unlink(missing_ok=True)
    rc, rw = rate(n_bytes, cold), rate(n_bytes, warm)
    return {"cold_GB_per_s": rc["median"] / 1e9, "cold_runs": [round(x / 1e9, 2) for x in rc["runs"]],
            "warm_GB_per_s": rw["median"] / 1e9, "warm_runs": [round(x / 1e9, 2) for x in rw["runs"]],
            "bytes": n_bytes, "cache_dropped": dropped,
            "method": "written, fsync'ed, then POSIX_FADV_DONTNEED before each cold read (8 MiB readinto); "
                      "warm = same file from the page cache"}


def fft_throughput(sizes, n_frames: dict, repeats: int) -> dict:
    """rfft2 frames/s in batches small enough (<= 16 MiB of output) to reuse freed memory: a larger
    batch is served by fresh mmap pages, whose first touch costs more than the FFT here."""
    from scipy import fft as sfft

    out = {}
    rng = np.random.default_rng(0)
    for size in sizes:
        n = n_frames[size]
        batch = max(1, (16 << 20) // (size * (size // 2 + 1) * 8))
        x = rng.random((n, size, size), dtype=np.float32)
        row = {"batch": batch}
        for workers in (1, 2):
            def go():
                for a in range(0, n, batch):
                    sfft.rfft2(x[a:a + batch], workers=workers)
            times, _ = timed_runs(go, repeats=repeats)
            row[f"workers{workers}_fps"] = rate(n, times)["median"]
        out[size] = row
    return out


def run(quick: bool = False, workdir: str | None = None) -> dict:
    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory(dir=workdir, prefix="limits-") as tmp:
        mem = memory_bandwidth((64 << 20) if quick else (1 << 30), repeats)
        disk = disk_read((64 << 20) if quick else (2 << 30), 2 if quick else 3, Path(tmp))
    sizes = (264, 512, 2048)
    n_frames = {264: 32, 512: 16, 2048: 2} if quick else {264: 256, 512: 128, 2048: 16}
    fft = fft_throughput(sizes, n_frames, repeats)
    md = [
        md_table(["limit", "value", "how"], [
            ["memory copy bandwidth", f"{mem['copy_GB_per_s']:.1f} GB/s (runs {mem['runs_GB_per_s']})",
             f"np.copyto of {mem['bytes'] >> 20} MiB, destination already touched"],
            ["sequential disk read, cold", f"{disk['cold_GB_per_s']:.2f} GB/s (runs {disk['cold_runs']})",
             f"{disk['bytes'] >> 20} MiB file, fsync + POSIX_FADV_DONTNEED before each read"
             + ("" if disk["cache_dropped"] else " (fadvise unavailable: NOT cold)")],
            ["sequential read, page cache", f"{disk['warm_GB_per_s']:.2f} GB/s (runs {disk['warm_runs']})",
             "same file, cached"],
        ]),
        "",
        "FFT throughput, `scipy.fft.rfft2` on a batch of float32 frames (frames/s):",
        "",
        md_table(["frame", "frames per rfft2 call", "workers=1", "workers=2"],
                 [[f"{s}x{s}", fft[s]["batch"], fmt(fft[s]["workers1_fps"]), fmt(fft[s]["workers2_fps"])]
                  for s in sizes]),
    ]
    return {"name": "limits", "title": "Physical limits of this machine",
            "memory": mem, "disk": disk, "fft": {str(k): v for k, v in fft.items()},
            "markdown": "\n".join(md)}


if __name__ == "__main__":
    import json
    r = run(quick=True)
    print(r["markdown"])
    print(json.dumps({k: v for k, v in r.items() if k != "markdown"}, indent=1, default=str))
