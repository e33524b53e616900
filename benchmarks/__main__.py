"""``python -m benchmarks [--quick] [--only a,b] [--skip a,b] [--out docs/benchmarks.md]``.

Runs every benchmark in one process (the GUI one in a subprocess), peers in the same run on the
same frames, and writes the markdown report with the machine, library versions and date.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from benchmarks.common import REPO, fmt, machine, md_table

ORDER = ["limits", "drift", "radial", "analyze", "memory", "dask", "gui"]
MODULES = {"limits": "benchmarks.bench_limits", "drift": "benchmarks.bench_drift",
           "radial": "benchmarks.bench_radial", "analyze": "benchmarks.bench_analyze",
           "memory": "benchmarks.bench_memory", "dask": "benchmarks.bench_dask"}


def run_gui(quick: bool, workdir: str | None) -> dict:
    """The GUI scrubbing benchmark (another module's ``run``) in a subprocess: Qt stays out of this one."""
    title = "GUI scrubbing rate"
    if not (REPO / "benchmarks" / "bench_gui_scrub.py").exists():
        return {"name": "gui", "title": title, "skipped": "benchmarks/bench_gui_scrub.py is absent",
                "markdown": "Skipped: `benchmarks/bench_gui_scrub.py` is absent."}
    try:
        import PySide6  # noqa: F401
    except ImportError as exc:
        return {"name": "gui", "title": title, "skipped": str(exc), "markdown": f"Skipped: PySide6 unavailable ({exc})."}
    args = "n_frames=60, shape=(256, 256)" if quick else ""
    code = (f"import json, sys; sys.path.insert(0, {str(REPO)!r}); from benchmarks.bench_gui_scrub import run; "
            f"print(json.dumps(run({args}{', ' if args else ''}workdir={workdir!r})))")
    env = dict(os.environ)
    if not env.get("DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=900)
    if proc.returncode:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return {"name": "gui", "title": title, "skipped": tail,
                "markdown": f"Skipped: the GUI benchmark failed here:\n\n```\n{tail}\n```"}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    md = [f"`benchmarks/bench_gui_scrub.py` (Qt platform `{r.get('qt_platform')}`): {r.get('movie')}.", "",
          md_table(["pattern", "frames/s"], [["forward", r.get("forward_fps")], ["backward", r.get("backward_fps")],
                                             ["random seeks", r.get("random_seek_fps")]]), "",
          f"Target >= {r.get('target_fps')} frames/s forward: {'**met**' if r.get('meets_target') else '**not met**'} "
          f"(cache hit ratio forward {r.get('forward_cache_hit_ratio')}, paints per frame {r.get('paints_per_frame')}).",
          ""]
    return {"name": "gui", "title": title, "results": r, "target_met": bool(r.get("meets_target")),
            "markdown": "\n".join(md)}


def run_one(name: str, quick: bool, workdir: str | None) -> dict:
    t0 = time.perf_counter()
    try:
        if name == "gui":
            out = run_gui(quick, workdir)
        else:
            out = importlib.import_module(MODULES[name]).run(quick=quick, workdir=workdir)
    except Exception as exc:  # noqa: BLE001 - one failing benchmark must not lose the others
        tb = traceback.format_exc()
        out = {"name": name, "title": name, "error": f"{type(exc).__name__}: {exc}",
               "markdown": f"**Failed**: `{type(exc).__name__}: {exc}`\n\n```\n{tb[-3000:]}\n```"}
    out["elapsed_s"] = time.perf_counter() - t0
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def limits_section(results: dict) -> str:
    """How close each stage comes to the machine's limits."""
    lim = results.get("limits")
    if not lim or "memory" not in lim:
        return ""
    mem = lim["memory"]["copy_GB_per_s"] * 1e9
    disk = lim["disk"]["cold_GB_per_s"] * 1e9
    fft = lim["fft"]
    rows = []

    def add(stage, size, fps, bytes_per_px):
        nbytes = fps * size * size * bytes_per_px
        f = fft.get(str(size), {}).get("workers2_fps")
        rows.append([stage, f"{size}x{size}", fmt(fps), f"{nbytes / 1e6:,.0f} MB/s",
                     f"{100 * nbytes / disk:.1f}%", f"{100 * nbytes / mem:.1f}%",
                     f"{100 * fps / f:.0f}%" if f else "n/a"])

    drift = results.get("drift", {})
    for r in drift.get("results", []):
        add("drift (estimate_drift, 2 threads)", r["size"], r["methods"]["temtrack estimate_drift, 2 threads"]["fps"], 4)
    for r in results.get("radial", {}).get("results", []):
        add("azimuthal integration (2 threads)", r["size"],
            r["methods"]["temtrack map_frames + azimuthal_average, 2 threads"]["fps"], 4)
    for r in results.get("analyze", {}).get("results", []):
        add(f"analyze, {r['label']}", r["shape"][0], r["analyze_fps"], 2)
        add(f"movie.read, {r['label']}", r["shape"][0], r["read_fps"], 2)
    if not rows:
        return ""
    return "\n".join([
        "Input bytes per second of each stage (uint16 files: 2 B/px; in-memory float32 frames for drift and "
        "radial: 4 B/px) as a share of the cold sequential disk read and of the memory copy bandwidth, and "
        "frames/s as a share of one bare `rfft2` per frame (workers=2):", "",
        md_table(["stage", "frame", "frames/s", "input rate", "of cold disk", "of memory copy", "of rfft2 rate"], rows),
        ""])


def summary(results: dict) -> str:
    rows = []
    for name in ORDER:
        r = results.get(name)
        if r is None:
            continue
        if "error" in r:
            verdict = f"failed: {r['error']}"
        elif "skipped" in r:
            verdict = "skipped"
        elif "target_met" in r:
            verdict = "met" if r["target_met"] else "**not met**"
        else:
            verdict = "measured"
        rows.append([r.get("title", name), verdict, f"{r['elapsed_s']:.0f} s"])
    return md_table(["benchmark", "target", "time"], rows)


def write_report(results: dict, mach: dict, out: Path, quick: bool, total_s: float) -> None:
    v = mach["versions"]
    blas_env = ", ".join(f"{k}={val}" for k, val in mach["openblas_env"].items() if val) or "neither set"
    lines = [
        "# temtrack benchmarks",
        "",
        "Generated by `python -m benchmarks" + (" --quick" if quick else "") + "` (do not edit by hand). "
        "Every figure is the median of several runs after a warm-up; peers run in the same process on the same "
        "frames, their repeats interleaved with temtrack's.",
        "",
        "## Machine",
        "",
        md_table(["", ""], [
            ["date (UTC)", mach["date_utc"]],
            ["CPU", f"{mach['cpu']} ({mach['cpu_flags']})"],
            ["cores", mach["cores"]],
            ["RAM", f"{mach['ram_gib']} GiB"],
            ["OS", mach["os"]],
            ["load average at start (1, 5, 15 min)", mach["load_average"]],
            ["BLAS", mach["blas"]],
            ["OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE", blas_env],
            ["versions", ", ".join(f"{k} {val}" for k, val in v.items())],
            ["total run time", f"{total_s:.0f} s" + (" (quick mode: tiny sizes, not meaningful figures)" if quick else "")],
        ]),
        "",
        "A load average above the 2 cores means other processes shared the CPU during the run: absolute "
        "frames/s are then low, ratios between peers measured in the same run remain comparable.",
        "",
        "## Summary",
        "",
        summary(results),
        "",
    ]
    for name in ORDER:
        r = results.get(name)
        if r is None:
            continue
        lines += [f"## {r.get('title', name)}", "", r["markdown"].rstrip(), "",
                  f"_({r['elapsed_s']:.0f} s; load average afterwards {r['load_average_after']})_", ""]
    lim = limits_section(results)
    if lim:
        lines += ["## How close each stage comes to the limits", "", lim]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (< 1 minute): checks the harness, not the speed")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(ORDER)}")
    p.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md", help="markdown report")
    p.add_argument("--json", type=Path, help="also write the raw numbers as JSON")
    p.add_argument("--workdir", help="folder for temporary movies (default: the system temp folder)")
    args = p.parse_args(argv)
    names = ORDER if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    unknown = [n for n in [*names, *skip] if n not in ORDER]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {ORDER}")
    mach = machine()
    results = {}
    t0 = time.perf_counter()
    for name in names:
        if name in skip:
            continue
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        results[name] = run_one(name, args.quick, args.workdir)
        print(f"[benchmarks] {name} done in {results[name]['elapsed_s']:.0f} s", file=sys.stderr, flush=True)
    write_report(results, mach, args.out, args.quick, time.perf_counter() - t0)
    if args.json:
        args.json.write_text(json.dumps({"machine": mach, "results": results}, indent=1, default=str))
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
