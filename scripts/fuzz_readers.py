"""Fuzz every movie reader with mutated, truncated and random files made from valid ones.

Why hand-written: atheris needs an instrumented build and cannot bound memory or survive a segfault
in a C extension (h5py, tifffile's codecs, ffmpeg); hypothesis cannot either. Here each case runs in
a worker subprocess with an ``RLIMIT_AS`` cap and a per-case timeout, so a crash, a hang or a
memory blow-up is caught, counted and the campaign goes on with a fresh worker.

The contract checked for every case (``docs/reliability.md``): :func:`temtrack.io.open_movie`
either returns a Movie -- and then reading its first and last frame either works (float32, the
announced frame shape) or raises :class:`temtrack.errors.TemtrackError` -- or raises a
``TemtrackError`` whose message names the file (or the file of the recording that was damaged).
Anything else (another exception, a hang, a crash, MemoryError under the cap) is a failure.

Usage::

    python scripts/fuzz_readers.py --cases 10000 --workers 2 --report docs/reliability.md
    python scripts/fuzz_readers.py --readers dm4,tiff --cases 200 --seed 1

Cases are deterministic: case ``i`` of reader ``r`` is generated from ``(seed, r, i)``, so a failure
is reproduced with ``--readers r --start i --cases 1 --keep DIR`` (the mutated files are kept).
``--report`` after a run of some readers replaces only their rows of the results block, and says
which earlier run the other rows come from.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

READERS = ("dm3", "dm4", "gms", "frms6", "emd", "ser", "mrc", "tiff", "video", "npy")
#: outcomes that satisfy the contract
GOOD = ("loaded", "loaded-frame-error", "rejected")
REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO / ".." / "shared" / "real_data" / "rosettasciio"
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_MEMORY_MB = 3000


# -- seeds: valid files written with the project's writers and the libraries ----------------------
def _stack(n=3, rows=16, cols=20, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 4000, (n, rows, cols))).astype(dtype)


def _seed_dm(dst: Path, version: int):
    from temtrack.io.dm_write import write_dm
    seeds = []
    d = dst / f"dm{version}_stack"
    d.mkdir()
    write_dm(d / f"stack.dm{version}", _stack(), version=version, pixel_size_nm=0.5, frame_interval_s=0.1)
    seeds.append((d, f"stack.dm{version}"))
    d = dst / f"dm{version}_image"
    d.mkdir()
    write_dm(d / f"image.dm{version}", _stack(1, 24, 24, np.float32)[0], version=version, pixel_size_nm=0.2)
    seeds.append((d, f"image.dm{version}"))
    for real in sorted(REAL_DATA.glob(f"*.dm{version}")) if REAL_DATA.is_dir() else []:
        d = dst / f"real_{real.stem}"
        d.mkdir()
        shutil.copyfile(real, d / real.name)
        seeds.append((d, real.name))
    return seeds


def _seed_gms(dst: Path):
    from temtrack.io.dm_write import write_gms_insitu
    seeds = []
    for version, tags in ((4, True), (3, False)):
        d = dst / f"gms{version}"
        d.mkdir()
        write_gms_insitu(d / "Recording", _stack(4, 12, 12), frame_interval_s=0.4, pixel_size_nm=0.5,
                         version=version, time_tags=tags)
        seeds.append((d, "Recording"))
    return seeds


def _seed_frms6(dst: Path):
    from temtrack.io.frms6 import write_frms6
    d = dst / "frms6"
    d.mkdir()
    rng = np.random.default_rng(1)
    write_frms6(d / "rec", rng.integers(100, 300, (3, 8, 16)).astype(np.uint16),
                rng.integers(90, 110, (2, 8, 16)).astype(np.uint16), frames_per_file=2)
    d2 = dst / "frms6_nodark"
    d2.mkdir()
    write_frms6(d2 / "rec", rng.integers(100, 300, (2, 8, 16)).astype(np.uint16), None,
                header_frame_count=False)
    return [(d, "rec.hdr"), (d2, "rec_001.frms6")]


def _seed_real(dst: Path, pattern: str):
    seeds = []
    if not REAL_DATA.is_dir():
        return seeds
    for real in sorted(REAL_DATA.glob(pattern)):
        d = dst / f"real_{real.stem}"
        d.mkdir()
        shutil.copyfile(real, d / real.name)
        seeds.append((d, real.name))
    return seeds


def _seed_ser(dst: Path):
    # The real TIA preview (when present) comes first, then series written by temtrack's SER writer
    # for the layouts temtrack.io.ser parses that the real file lacks: 8-byte offsets (0x0220),
    # frames in reverse order with gaps and the tags after all the data, time + position tags, a
    # stopped acquisition (2 of 4 recorded), and a .emi entry.
    from temtrack.io.ser_write import write_emi, write_ser
    seeds = []
    tia = REAL_DATA / "tia"
    if tia.is_dir():
        d = dst / "tia"
        d.mkdir()
        for f in tia.iterdir():
            shutil.copyfile(f, d / f.name)
        for ser in sorted(d.glob("*.ser")):
            seeds.append((d, ser.name))
    d = dst / "ser_v210"
    d.mkdir()
    write_ser(d / "series_1.ser", _stack(3, 16, 20), version=0x0210, calibration_delta=2e-10,
              time_stamps=[100, 101, 103])
    write_emi(d / "series.emi", exposure_s=0.5)
    seeds.append((d, "series_1.ser"))
    d = dst / "ser_v220_scattered"
    d.mkdir()
    write_ser(d / "scattered_1.ser", _stack(4, 12, 12, np.float32), version=0x0220, reverse=True,
              gap_bytes=24, tags_at_end=True, tag_type=0x4142, calibration_delta=4e6)
    seeds.append((d, "scattered_1.ser"))
    d = dst / "ser_emi_stopped"
    d.mkdir()
    write_ser(d / "stopped_1.ser", _stack(4, 8, 10, np.int16), valid=2, time_stamps=[5, 5, 5, 5])
    write_emi(d / "stopped.emi", mode=" TEM uP SA Zoom Diffraction", exposure_s=0.1)
    seeds.append((d, "stopped.emi"))
    return seeds


def _seed_mrc(dst: Path):
    import mrcfile
    d = dst / "mrc"
    d.mkdir()
    with mrcfile.new(d / "stack.mrc") as m:
        m.set_data(_stack(3, 16, 16, np.float32))
        m.voxel_size = 5.0
    return [(d, "stack.mrc")]


def _seed_tiff(dst: Path):
    import tifffile
    from temtrack.synthetic import save_movie_tiff
    seeds = []
    d = dst / "tiff_imagej"
    d.mkdir()
    save_movie_tiff(d / "stack.tif", _stack(3, 16, 16), pixel_size=0.5, frame_interval_s=0.2)
    seeds.append((d, "stack.tif"))
    d = dst / "tiff_plain"
    d.mkdir()
    tifffile.imwrite(d / "plain.tif", _stack(3, 16, 16, np.uint8), compression="zlib")
    seeds.append((d, "plain.tif"))
    d = dst / "tiff_ome"
    d.mkdir()
    tifffile.imwrite(d / "ome.ome.tif", _stack(3, 16, 16), ome=True,
                     metadata={"axes": "TYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                               "TimeIncrement": 0.1})
    seeds.append((d, "ome.ome.tif"))
    return seeds + _seed_real(dst, "*.tif")


def _seed_video(dst: Path):
    import imageio.v3 as iio
    frames = np.repeat(_stack(6, 32, 32, np.uint8, seed=3)[..., None], 3, axis=-1)
    seeds = []
    for name, kw in (("clip.mp4", {"codec": "libx264"}), ("clip.avi", {"codec": "mjpeg"})):
        d = dst / f"video_{name.split('.')[1]}"
        d.mkdir()
        iio.imwrite(d / name, frames, plugin="pyav" if False else "FFMPEG", fps=5, **kw)
        seeds.append((d, name))
    return seeds


def _seed_npy(dst: Path):
    d = dst / "npy"
    d.mkdir()
    np.save(d / "stack.npy", _stack(3, 16, 16))
    (d / "stack.json").write_text(json.dumps({"pixel_size": 0.5, "pixel_unit": "nm", "frame_interval_s": 0.1}))
    d2 = dst / "npy_float"
    d2.mkdir()
    np.save(d2 / "frames.npy", _stack(2, 8, 8, np.float64))
    return [(d, "stack.npy"), (d2, "frames.npy")]


SEED_MAKERS = {
    "dm3": lambda d: _seed_dm(d, 3), "dm4": lambda d: _seed_dm(d, 4), "gms": _seed_gms,
    "frms6": _seed_frms6, "emd": lambda d: _seed_real(d, "*.emd"), "ser": _seed_ser, "mrc": _seed_mrc,
    "tiff": _seed_tiff, "video": _seed_video, "npy": _seed_npy,
}


def make_seeds(root: str | os.PathLike, readers=READERS) -> dict[str, list[tuple[str, str]]]:
    """Write valid seed recordings under ``root``; returns reader -> [(seed folder, entry)].

    ``entry`` is what :func:`open_movie` is given, relative to the seed folder. Readers without
    any seed (EMD and SER when the real files are absent) map to an empty list.
    """
    root = Path(root)
    out = {}
    for r in readers:
        d = root / r
        d.mkdir(parents=True, exist_ok=True)
        out[r] = [(str(s), e) for s, e in SEED_MAKERS[r](d)]
    return out


# -- mutations -------------------------------------------------------------------------------------
_INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
                0xFFFFFFFF, 2**40, 2**63 - 1, 2**64 - 1)


def _bitflip(data: bytearray, rng):
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(len(data)))
        data[i] ^= 1 << int(rng.integers(8))
    return data, "bitflip"


def _header_bytes(data: bytearray, rng):
    lim = min(len(data), 1024)
    for _ in range(int(rng.integers(1, 5))):
        i = int(rng.integers(lim))
        data[i] = int(rng.choice([0, 0xFF, 0x7F, 0x80, int(rng.integers(256))]))
    return data, "header-bytes"


def _length_field(data: bytearray, rng):
    width = int(rng.choice([2, 4, 8]))
    lim = max(1, min(len(data), 4096) - width)
    i = int(rng.integers(lim))
    value = int(rng.choice(_INTERESTING)) if rng.random() < 0.8 else int(rng.integers(0, 2**31))
    value &= (1 << (8 * width)) - 1
    order = "big" if rng.random() < 0.5 else "little"
    data[i:i + width] = value.to_bytes(width, order)
    return data, f"length-field@{i}:{width}{order[0]}={value:#x}"


def _truncate(data: bytearray, rng):
    k = int(rng.integers(0, len(data))) if rng.random() < 0.7 else int(rng.integers(0, min(len(data), 512)))
    return data[:k], f"truncate@{k}"


def _random_body(data: bytearray, rng):
    keep = int(rng.choice([0, 4, 16, 64]))
    n = int(rng.integers(1, max(2, len(data) + 1)))
    return bytearray(data[:keep]) + bytearray(rng.integers(0, 256, n, dtype=np.uint8).tobytes()), f"random-after@{keep}"


def _zero_run(data: bytearray, rng):
    i = int(rng.integers(len(data)))
    n = int(rng.integers(1, 257))
    data[i:i + n] = bytes(len(data[i:i + n]))
    return data, f"zero-run@{i}+{n}"


def _duplicate(data: bytearray, rng):
    i = int(rng.integers(len(data)))
    n = int(rng.integers(1, 513))
    return data[:i] + data[i:i + n] * 2 + data[i + n:], f"duplicate@{i}+{n}"


def _append(data: bytearray, rng):
    return data + bytearray(rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()), "append"


MUTATIONS = [(_bitflip, 3), (_header_bytes, 3), (_length_field, 4), (_truncate, 3), (_random_body, 1),
             (_zero_run, 1), (_duplicate, 1), (_append, 1)]


def _case_rng(seed: int, reader: str, index: int):
    h = hashlib.sha256(f"{seed}/{reader}/{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def build_case(seeds: list[tuple[str, str]], reader: str, index: int, workdir: Path, *, seed: int = 0):
    """Copy a seed into ``workdir/case`` and damage one of its files; returns (entry, names, what)."""
    rng = _case_rng(seed, reader, index)
    seed_dir, entry = seeds[int(rng.integers(len(seeds)))]
    seed_dir = Path(seed_dir)
    case = workdir / "case"
    if case.exists():
        shutil.rmtree(case)
    shutil.copytree(seed_dir, case)
    files = sorted(p for p in case.rglob("*") if p.is_file())
    # the main file twice as likely: most bugs live in its parser
    main = case / entry
    weights = np.array([3.0 if p == main else 1.0 for p in files])
    target = files[int(rng.choice(len(files), p=weights / weights.sum()))]
    rel = target.relative_to(case)
    if len(files) > 1 and rng.random() < 0.05:
        target.unlink()
        what = f"{Path(seed_dir).name}/{rel}: deleted"
    else:
        data = bytearray(target.read_bytes())
        if not data:
            data = bytearray(b"\0")
        funcs, w = zip(*MUTATIONS)
        w = np.asarray(w, float)
        func = funcs[int(rng.choice(len(funcs), p=w / w.sum()))]
        data, desc = func(data, rng)
        target.write_bytes(bytes(data))
        what = f"{Path(seed_dir).name}/{rel}: {desc}"
    names = {main.name, target.name, str(case / entry)}
    return case / entry, names, what


# -- the contract ------------------------------------------------------------------------------------
class _CaseTimeout(BaseException):
    pass


def check_file(path: str | os.PathLike, names=()) -> tuple[str, str]:
    """Open ``path`` with :func:`open_movie` and read its first and last frame.

    Returns
    -------
    outcome, detail : str, str
        ``'loaded'``, ``'loaded-frame-error'`` (a TemtrackError while reading a frame) or
        ``'rejected'`` (a TemtrackError naming the file) satisfy the contract; ``'raw-exception'``,
        ``'raw-exception-frame'``, ``'bad-message'`` (not naming the file), ``'multi-line-message'``,
        ``'bad-frame'`` and ``'memory'`` do not.
    """
    from temtrack.errors import TemtrackError
    from temtrack.io import open_movie

    path = Path(path)
    names = set(names) | {path.name}
    try:
        movie = open_movie(path)
    except TemtrackError as exc:
        msg = str(exc)
        if not any(n and n in msg for n in names):
            return "bad-message", msg[:300]
        if "\n" in msg.strip():
            return "multi-line-message", msg[:300]
        return "rejected", msg[:400]
    except MemoryError as exc:
        return "memory", f"MemoryError at open: {exc}"[:300]
    except _CaseTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - that is what we are looking for
        return "raw-exception", f"{type(exc).__name__}: {exc}"[:300]
    for index in (0, -1):
        try:
            frame = movie.frame(index)
        except TemtrackError as exc:
            return "loaded-frame-error", str(exc)[:200]
        except MemoryError as exc:
            return "memory", f"MemoryError reading frame {index}: {exc}"[:300]
        except _CaseTimeout:
            raise
        except Exception as exc:  # noqa: BLE001
            return "raw-exception-frame", f"frame {index}: {type(exc).__name__}: {exc}"[:300]
        if frame.shape != movie.frame_shape or frame.dtype != np.float32:
            return "bad-frame", f"frame {index}: {frame.shape} {frame.dtype}, announced {movie.frame_shape}"
    return "loaded", f"{movie.n_frames}x{movie.frame_shape}"


# -- worker process ----------------------------------------------------------------------------------
def _worker(seeds_json: str, seed: int, timeout_s: float, memory_mb: int, keep: str | None):
    """Read ``reader index`` lines on stdin, answer one JSON line per case on the protocol fd."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    if memory_mb:
        cap = int(memory_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import warnings
    warnings.simplefilter("ignore")
    import logging
    logging.disable(logging.CRITICAL)
    # The HDF5 readers probe a file in a child process first and give up on it after this many
    # seconds (a hang in the HDF5 C library): well inside the case's own time limit.
    os.environ.setdefault("TEMTRACK_HDF5_PROBE_TIMEOUT_S", f"{max(1.0, timeout_s / 3):g}")
    import temtrack.io  # noqa: F401 - import once, outside the per-case timing
    seeds = json.loads(Path(seeds_json).read_text())

    def on_alarm(signum, frame):
        raise _CaseTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="fuzz-case-"))
    proto.write("ready\n")
    for line in sys.stdin:
        reader, index = line.split()
        index = int(index)
        t0 = time.perf_counter()
        wd = work / f"{reader}-{index}" if keep else work
        wd.mkdir(parents=True, exist_ok=True)
        entry, names, what = build_case(seeds[reader], reader, index, wd, seed=seed)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            outcome, detail = check_file(entry, names)
        except _CaseTimeout:
            outcome, detail = "hang", f"no answer within {timeout_s} s (interrupted in Python)"
        except MemoryError as exc:
            outcome, detail = "memory", str(exc)[:200]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        proto.write(json.dumps({"reader": reader, "index": index, "outcome": outcome, "detail": detail,
                                "what": what, "seconds": round(time.perf_counter() - t0, 4)}) + "\n")


class _Worker:
    def __init__(self, seeds_json, seed, timeout_s, memory_mb, keep):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", seeds_json, "--seed", str(seed),
               "--timeout", str(timeout_s), "--memory-mb", str(memory_mb)]
        if keep:
            cmd += ["--keep", keep]
        # own session: a kill takes ffmpeg children with it
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1, start_new_session=True, cwd=str(REPO))
        self.timeout_s = timeout_s
        line = self._readline(120)
        if line != "ready":
            self.kill()
            raise RuntimeError(f"fuzz worker did not start (got {line!r})")

    def _readline(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return line.strip() if line else ""

    def run(self, reader, index) -> dict | None:
        """The case's result, or None when the worker died or hung (the caller replaces it)."""
        try:
            self.proc.stdin.write(f"{reader} {index}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return None
        # the worker's own alarm fires at timeout_s; more means it is stuck in C code
        line = self._readline(self.timeout_s + 3)
        if not line:
            return None
        return json.loads(line)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def run_campaign(readers, n_cases: int, *, start: int = 0, seed: int = 0, workers: int = 2,
                 timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB,
                 keep: str | None = None, seeds_root: str | None = None, time_limit_s: float | None = None,
                 log=None, cases=None) -> dict:
    """Run ``n_cases`` cases per reader in worker subprocesses; returns counts and failures.

    Readers are interleaved so a time limit leaves comparable counts for every reader. ``cases``, a
    list of ``(reader, index)``, replaces ``n_cases`` and ``start`` (to replay chosen cases).
    """
    import threading
    tmp = None
    if seeds_root is None:
        tmp = tempfile.mkdtemp(prefix="fuzz-seeds-")
        seeds_root = tmp
    seeds = make_seeds(seeds_root, readers)
    seeds_json = str(Path(seeds_root) / "seeds.json")
    Path(seeds_json).write_text(json.dumps(seeds))
    readers = [r for r in readers if seeds[r]]
    if cases is not None:
        todo = [(r, int(i)) for r, i in cases if r in readers]
    else:
        todo = [(r, i) for i in range(start, start + n_cases) for r in readers]
    lock = threading.Lock()
    counts = {r: Counter() for r in readers}
    seconds = {r: 0.0 for r in readers}
    failures: list[dict] = []
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    pos = [0]

    def next_case():
        with lock:
            if pos[0] >= len(todo) or (deadline is not None and time.monotonic() > deadline):
                return None
            pos[0] += 1
            return todo[pos[0] - 1]

    def loop(k):
        w = _Worker(seeds_json, seed, timeout_s, memory_mb, keep and f"{keep}/w{k}")
        try:
            while (case := next_case()) is not None:
                reader, index = case
                t0 = time.perf_counter()
                res = w.run(reader, index)
                if res is None:
                    try:  # a crashed worker closes its pipe a moment before it can be reaped
                        rc = w.proc.wait(timeout=3)
                    except subprocess.TimeoutExpired:
                        rc = None
                    if rc is None:
                        outcome, detail = "hang", f"killed after {timeout_s + 3:.0f} s (stuck in C code)"
                    else:
                        outcome, detail = "crash", f"worker died with code {rc}"
                    w.kill()
                    res = {"reader": reader, "index": index, "outcome": outcome, "detail": detail,
                           "what": _describe_case(seeds, reader, index, seed),
                           "seconds": round(time.perf_counter() - t0, 3)}
                    w = _Worker(seeds_json, seed, timeout_s, memory_mb, keep and f"{keep}/w{k}")
                with lock:
                    counts[reader][res["outcome"]] += 1
                    seconds[reader] += res["seconds"]
                    if res["outcome"] not in GOOD:
                        failures.append(res)
                        if log:
                            log(f"FAIL {res}")
                    done = pos[0]
                    if log and done % 500 == 0:
                        log(f"{done}/{len(todo)} cases, {len(failures)} failures")
        finally:
            w.kill()

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(max(1, workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"counts": {r: dict(c) for r, c in counts.items()}, "seconds": seconds, "failures": failures,
            "seeds": {r: [Path(s).name + "/" + e for s, e in v] for r, v in seeds.items()}}


def _describe_case(seeds, reader, index, seed):
    with tempfile.TemporaryDirectory() as d:
        _, _, what = build_case(seeds[reader], reader, index, Path(d), seed=seed)
    return what


# -- report ------------------------------------------------------------------------------------------
_BEGIN, _END = "<!-- campaign-results:begin -->", "<!-- campaign-results:end -->"


_OUTCOMES = ["loaded", "loaded-frame-error", "rejected", "raw-exception", "raw-exception-frame",
             "bad-message", "multi-line-message", "bad-frame", "memory", "hang", "crash"]


def format_results(result: dict, *, command: str, seed: int, wall_s: float, previous: str | None = None) -> str:
    """The Markdown results block of a campaign.

    With ``previous`` (the block of an earlier campaign), the rows of readers this run did not cover
    are kept from it, each group of kept rows with a line saying which run it comes from; so a
    re-run of a few readers updates their rows and leaves the others' results in place.
    """
    now = _dt.datetime.now(_dt.timezone.utc)
    began = now - _dt.timedelta(seconds=wall_s)
    run_line = (f"started {began:%Y-%m-%d %H:%M} UTC, finished {now:%Y-%m-%d %H:%M} UTC, seed {seed}, "
                f"{wall_s / 60:.1f} min wall time on {os.cpu_count()} cores")
    rows: dict[str, str] = {}
    for r, c in result["counts"].items():
        n = sum(c.values())
        ms = 1e3 * result["seconds"][r] / n if n else 0
        rows[r] = f"| {r} | {n} | " + " | ".join(str(c.get(o, 0)) for o in _OUTCOMES) + f" | {ms:.1f} |"
    fails = result["failures"]
    fail_rows: list[tuple[str, int, str]] = []  # (reader, cases, row)
    groups: dict = {}
    for f in fails:
        groups.setdefault((f["reader"], f["outcome"], _signature(f)), []).append(f)
    for (r, o, sig), fs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        first = min(fs, key=lambda f: f["index"])
        fail_rows.append((r, len(fs), f"| {r} | {o} | {sig.replace('|', '/')} | {len(fs)} | {first['index']}: "
                                      f"{first['what'].replace('|', '/')} |"))
    notes: list[str] = []
    if previous:
        old = _parse_block(previous)
        kept = [r for r in old["rows"] if r not in rows]
        by_source: dict[str, list[str]] = {}
        for r in kept:
            rows[r] = old["rows"][r]
            by_source.setdefault(old["source"].get(r, old["main"]), []).append(r)
        for source, readers in by_source.items():
            notes.append(f"Rows of {', '.join(readers)} from an earlier campaign: {source}.")
        fail_rows += [fr for fr in old["fail_rows"] if fr[0] in kept]
        fail_rows.sort(key=lambda fr: -fr[1])
        order = [r for r in READERS if r in rows] + [r for r in rows if r not in READERS]
        rows = {r: rows[r] for r in order}
    lines = [_BEGIN, f"Last campaign: {run_line}.", "", f"Command: `{command}`", ""]
    if notes:
        lines += notes + [""]
    lines += ["| reader | cases | " + " | ".join(_OUTCOMES) + " | ms/case |",
              "|---" * (len(_OUTCOMES) + 3) + "|", *rows.values()]
    lines += ["", f"{sum(fr[1] for fr in fail_rows)} cases broke the contract."]
    if fail_rows:
        lines += ["", "| reader | outcome | signature | cases | first reproducer (case index: mutation) |",
                  "|---|---|---|---|---|"] + [fr[2] for fr in fail_rows]
    lines.append(_END)
    return "\n".join(lines)


def _parse_block(block: str) -> dict:
    """Counts rows, failure rows and provenance of a results block written by format_results."""
    import re
    out = {"rows": {}, "fail_rows": [], "source": {}, "main": "?"}
    main = re.search(r"^Last campaign: (.*?)\.?$", block, re.M)
    command = re.search(r"^Command: (`.*`)$", block, re.M)
    if main:
        out["main"] = main.group(1) + (f" ({command.group(1)})" if command else "")
    for m in re.finditer(r"^Rows of (.*?) from an earlier campaign: (.*)\.$", block, re.M):
        for r in m.group(1).split(", "):
            out["source"][r] = m.group(2)
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or cells[0] in ("reader",) or set(cells[0]) <= {"-"}:
            continue
        if len(cells) == len(_OUTCOMES) + 3:
            out["rows"][cells[0]] = line
        elif len(cells) == 5 and cells[3].isdigit():
            out["fail_rows"].append((cells[0], int(cells[3]), line))
    return out


def _signature(failure: dict) -> str:
    """What kind of failure, without the case's temporary paths: the exception type or message head."""
    import re
    d = re.sub(r"^frame -?\d+: ", "", failure["detail"])
    d = re.sub(r"/\S+", "<path>", d)
    if failure["outcome"] in ("hang", "crash"):
        return d.split(" (")[0][:50]
    return re.split(r"[:(\n]", d, maxsplit=1)[0][:60].strip()


def previous_block(path: Path) -> str | None:
    """The results block of a Markdown file, if it has one."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if _BEGIN in text and _END in text:
        return _BEGIN + text.split(_BEGIN, 1)[1].split(_END, 1)[0] + _END
    return None


def update_report(path: Path, block: str):
    text = path.read_text(encoding="utf-8") if path.exists() else "# Reliability\n\n"
    if _BEGIN in text and _END in text:
        head, rest = text.split(_BEGIN, 1)
        text = head + block + rest.split(_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readers", default=",".join(READERS), help=f"comma-separated subset of {READERS}")
    p.add_argument("--cases", type=int, default=10000, help="cases per reader")
    p.add_argument("--start", type=int, default=0, help="first case index")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per case")
    p.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB, help="RLIMIT_AS of a worker")
    p.add_argument("--time-limit", type=float, help="stop starting new cases after this many seconds")
    p.add_argument("--report", type=Path, help="update the results block of this Markdown file")
    p.add_argument("--json", type=Path, help="write all counts and failures as JSON")
    p.add_argument("--keep", help="keep every mutated case under this folder")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.seed, args.timeout, args.memory_mb, args.keep)
        return 0
    readers = [r.strip() for r in args.readers.split(",") if r.strip()]
    bad = set(readers) - set(READERS)
    if bad:
        p.error(f"unknown readers {sorted(bad)}; expected some of {READERS}")
    t0 = time.monotonic()
    res = run_campaign(readers, args.cases, start=args.start, seed=args.seed, workers=args.workers,
                       timeout_s=args.timeout, memory_mb=args.memory_mb, keep=args.keep,
                       time_limit_s=args.time_limit, log=lambda m: print(m, flush=True))
    wall = time.monotonic() - t0
    for r, c in res["counts"].items():
        print(f"{r:6s} {sum(c.values()):6d} cases  {dict(c)}")
    print(f"{len(res['failures'])} failures in {wall:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.report:
        cmd = "python scripts/fuzz_readers.py " + " ".join(a for a in (argv or sys.argv[1:]))
        # a run of some readers replaces their rows only (the others keep their last results)
        previous = previous_block(args.report) if set(READERS) - set(readers) else None
        update_report(args.report, format_results(res, command=cmd, seed=args.seed, wall_s=wall,
                                                  previous=previous))
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
