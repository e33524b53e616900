"""Degenerate and hostile data: each case has a defined behaviour, checked at the level of
``open_movie`` and the pipelines.

The rule everywhere: a result (finite where it claims to be, with the problem named in its
warnings) or a :class:`temtrack.errors.TemtrackError` saying what is wrong -- never another
exception.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from temtrack.errors import TemtrackError
from temtrack.io import open_movie


def _save_npy(path, frames, **sidecar):
    np.save(path, frames)
    if sidecar:
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    return open_movie(path)


def _outcome(fn):
    """('ok', result) or ('error', message); any other exception propagates (and fails the test)."""
    try:
        return "ok", fn()
    except TemtrackError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg.strip(), f"error message not one line: {msg!r}"
        return "error", msg


def _analyze(movie, line):
    from temtrack.pipeline.analyze import AnalyzeRecipe, analyze
    return analyze(movie, AnalyzeRecipe(line=line, memory_budget_mb=8))


def _rings(movie):
    from temtrack.pipeline.rings import RingsRecipe, run_rings
    return run_rings(movie, RingsRecipe(phases=["beta-Sn"], memory_budget_mb=8))


def _fft(movie):
    from temtrack.pipeline.fft import FFTRecipe, run_fft
    return run_fft(movie, FFTRecipe())


def _finite_json(result) -> None:
    """A result's JSON holds no NaN/Inf (the writers turn them to null; here they must be absent or
    explained): checked by a strict dump."""
    from temtrack.io.results import to_jsonable
    json.dumps(to_jsonable(result.to_json()), allow_nan=False)


@pytest.fixture(scope="module")
def wire(rel_movies):
    movie = open_movie(rel_movies["nanowire"])
    return movie, rel_movies["line"]


# -- one frame ------------------------------------------------------------------------------------
def test_one_frame_movie(tmp_path, rel_movies):
    frame = open_movie(rel_movies["nanowire"]).frame(0)
    movie = _save_npy(tmp_path / "one.npy", frame[None], pixel_size=0.8, frame_interval_s=0.5)
    assert movie.n_frames == 1 and movie.frame_interval_s is None and movie.duration_s == 0.0
    assert movie.times_uniform is True
    kind, msg = _outcome(lambda: _analyze(movie, rel_movies["line"]))
    print("analyze, 1 frame:", kind, msg if kind == "error" else "")
    assert kind == "error" and "frames" in msg          # defined: a front needs a time series
    kind, res = _outcome(lambda: _fft(movie))
    print("fft, 1 frame:", kind, res if kind == "error" else "")
    if kind == "ok":
        _finite_json(res)


# -- constant, saturated, NaN/Inf frames -----------------------------------------------------------
@pytest.mark.parametrize("kind", ["constant", "saturated", "nan-inf"])
def test_hostile_pixels_analyze(tmp_path, wire, kind):
    movie, line = wire
    frames = movie.read()
    if kind == "constant":
        frames = np.full_like(frames, 1234.0)
    elif kind == "saturated":
        frames = np.full(frames.shape, 65535, np.uint16)
    else:
        frames = frames.copy()
        frames[:, 10:14, 20:24] = np.nan
        frames[3, 50, 50] = np.inf
        frames[5, 60, 60] = -np.inf
    m = _save_npy(tmp_path / f"{kind}.npy", frames, pixel_size=0.8, frame_interval_s=0.5)
    assert m.frame(0).shape == movie.frame_shape
    outcome, res = _outcome(lambda: _analyze(m, line))
    print(f"analyze {kind}: {outcome}: {res if outcome == 'error' else res.warnings}")
    if kind in ("constant", "saturated"):
        # defined: no information, so either refused or a result that says no front was found
        if outcome == "ok":
            js = res.to_json()
            assert any("front" in w for w in res.warnings), res.warnings
            assert (js.get("kinetics") or {}).get("D_nm2_per_s") is None
    else:
        # defined: a few bad pixels do not sink a movie: it is analysed
        assert outcome == "ok", res
        _finite_json(res)


@pytest.mark.parametrize("kind,pipelines", [
    ("constant", ("rings", "fft")), ("nan-inf", ("rings",)), ("nan-inf", ("fft",)),
])
def test_hostile_pixels_rings_fft(tmp_path, rel_movies, kind, pipelines):
    saed = open_movie(rel_movies["saed"])
    hr = open_movie(rel_movies["hrtem"])
    outs = {}
    todo = [t for t in (("rings", saed, _rings), ("fft", hr, _fft)) if t[0] in pipelines]
    for name, src, fn in todo:
        frames = src.read()
        if kind == "constant":
            frames = np.full_like(frames, 500.0)
        else:
            frames = frames.copy()
            frames[:, 5:9, 5:9] = np.nan
            frames[2, 40, 40] = np.inf
        unit = "1/nm" if name == "rings" else "nm"
        m = _save_npy(tmp_path / f"{name}-{kind}.npy", frames, pixel_size=src.pixel_size, pixel_unit=unit,
                      frame_interval_s=1.0)
        outcome, res = _outcome(lambda: fn(m))
        outs[name] = outcome
        print(f"{name} {kind}: {outcome} {res if outcome == 'error' else getattr(res, 'warnings', '')}")
        if outcome == "ok":
            assert res.to_json() is not None
    if kind == "nan-inf":
        assert set(outs.values()) == {"ok"}, outs


def test_rings_on_tiny_frames(tmp_path):
    """48 x 48 px patterns give radial profiles shorter than twice the SNIP window: the window
    shrinks to fit (a small pattern can still have rings), so noise gives a result or a one-line
    error, and real rings are found where they are."""
    rng = np.random.default_rng(0)
    m = _save_npy(tmp_path / "tiny.npy", rng.normal(100, 10, (10, 48, 48)).astype(np.float32),
                  pixel_size=0.05, pixel_unit="1/nm", frame_interval_s=1.0)
    outcome, res = _outcome(lambda: _rings(m))
    print("rings on 48x48 px noise:", outcome, res if outcome == "error" else "")

    # beta-Sn 200 (d 2.9159 A) and 211 (d 2.0163 A) on a diffuse background, 0.3 nm^-1 per px
    px = 0.3
    q_true = [1 / 0.29159, 1 / 0.20163]
    yy, xx = np.mgrid[:48, :48]
    r = np.hypot(yy - 24.3, xx - 23.6)
    img = 2000 * np.exp(-r / 12) + sum(800 * np.exp(-0.5 * ((r - q / px) / 0.8) ** 2) for q in q_true)
    frames = rng.poisson(np.repeat(img[None], 10, 0)).astype(np.float32)
    m = _save_npy(tmp_path / "tiny-rings.npy", frames, pixel_size=px, pixel_unit="1/nm", frame_interval_s=1.0)
    outcome, res = _outcome(lambda: _rings(m))
    assert outcome == "ok", res
    found = [p["q_nm_inv"] for p in res.to_json()["rings"]["peaks"]]
    print(f"rings on 48x48 px: true q {np.round(q_true, 3)}, found {np.round(found, 3)} nm^-1")
    assert any(abs(q - q_true[0]) < 0.05 for q in found), found
    assert any(abs(q - q_true[1]) < 0.1 for q in found), found


# -- huge drift jumps ----------------------------------------------------------------------------------
def test_huge_drift_jump_is_found_and_reported(wire):
    from temtrack.io.movie import movie_from_array
    from temtrack.series.drift import estimate_drift
    movie, _ = wire
    frames = movie.read()
    jumped = frames.copy()
    jumped[8:] = np.roll(frames[8:], (37, -41), axis=(1, 2))     # a 55 px jump at frame 8
    m = movie_from_array(jumped, pixel_size=0.8, frame_interval_s=0.5)
    d = estimate_drift(m)
    step = np.hypot(d.dy_px[8] - d.dy_px[7], d.dx_px[8] - d.dx_px[7])
    print(f"jump at 8: measured {d.dy_px[8] - d.dy_px[7]:.2f}, {d.dx_px[8] - d.dx_px[7]:.2f} px; "
          f"jump_frames {d.jump_frames}")
    assert 8 in d.jump_frames
    # np.roll wraps 40 px of the field around: the measured step may be off by a pixel or two
    assert abs((d.dy_px[8] - d.dy_px[7]) - 37) < 3 and abs((d.dx_px[8] - d.dx_px[7]) + 41) < 3, step


# -- non-uniform time stamps ---------------------------------------------------------------------------
def test_non_uniform_timestamps_are_kept(tmp_path, rel_movies, wire):
    movie, line = wire
    n = movie.n_frames
    times = np.cumsum(np.r_[0, np.where(np.arange(n - 1) % 4 == 3, 2.0, 0.5)])
    m = _save_npy(tmp_path / "nonuni.npy", movie.read(), pixel_size=0.8, times_s=times.tolist())
    assert m.times_uniform is False
    np.testing.assert_allclose(m.times_s, times)
    r = subprocess.run([sys.executable, "-m", "temtrack", "info", str(tmp_path / "nonuni.npy")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "non-uniform" in r.stdout
    outcome, res = _outcome(lambda: _analyze(m, line))
    assert outcome == "ok", res
    js = res.to_json()
    t = np.asarray(js.get("time_s") or (js.get("front") or {}).get("time_s"), float)
    print("analyze time axis:", t)
    np.testing.assert_allclose(t, times)    # defined: the pipeline uses the real times


# -- frames of different sizes in a GMS folder ---------------------------------------------------------
def test_gms_folder_with_frames_of_different_sizes(tmp_path):
    from temtrack.io.dm_write import write_gms_insitu
    rng = np.random.default_rng(0)
    rec = tmp_path / "Rec"
    write_gms_insitu(rec, rng.integers(0, 1000, (4, 16, 16)).astype(np.uint16), frame_interval_s=0.25,
                     pixel_size_nm=0.5)
    # a fifth frame, one second later, of another size (the camera's binning changed)
    write_gms_insitu(rec, rng.integers(0, 1000, (1, 32, 32)).astype(np.uint16), frame_interval_s=0.25,
                     pixel_size_nm=0.5, start=(0, 0, 1), name="Rec")
    odd = next(rec.rglob("*Second_01*Frame_0000.dm4"))
    outcome, res = _outcome(lambda: open_movie(rec))
    print("GMS mixed sizes:", outcome, res if outcome == "error" else (res.n_frames, res.frame_shape, res.problems))
    if outcome == "error":
        assert odd.name in res or "size" in res       # defined: names the odd frame or the sizes
    else:
        # defined: the frames of the majority size, the odd one reported, and every frame readable
        assert res.frame_shape == (16, 16)
        assert any(odd.name in p or "size" in p for p in res.problems), res.problems
        for i in range(res.n_frames):
            assert res.frame(i).shape == (16, 16)


# -- 100,000 frames, flat memory -----------------------------------------------------------------------
_FLAT_MEMORY = textwrap.dedent(r"""
    import json, sys, threading, time
    import numpy as np, psutil
    from temtrack.io import open_movie
    from temtrack.pipeline.executor import map_frames, LocalExecutor

    path = sys.argv[1]
    proc = psutil.Process()

    def anon():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return proc.memory_info().rss

    peak = {"rss": 0, "anon": 0}
    stop = threading.Event()
    def sample():
        while not stop.is_set():
            peak["rss"] = max(peak["rss"], proc.memory_info().rss)
            peak["anon"] = max(peak["anon"], anon())
            time.sleep(0.005)

    def means(block, start):
        return {"mean": block.mean(axis=(1, 2))}

    movie = open_movie(path)
    movie.frame(0)
    base_rss, base_anon = proc.memory_info().rss, anon()
    t = threading.Thread(target=sample, daemon=True); t.start()
    t0 = time.perf_counter()
    out = map_frames(movie, means, executor=LocalExecutor(2), memory_budget_bytes=8 * 2**20)
    t_map = time.perf_counter() - t0
    total = 0.0
    t0 = time.perf_counter()
    for s in range(0, movie.n_frames, 4096):
        total += float(movie.read(s, min(s + 4096, movie.n_frames)).sum(dtype=np.float64))
    t_red = time.perf_counter() - t0
    stop.set(); t.join()
    print(json.dumps({"n": movie.n_frames, "means": out["mean"].shape[0], "mean_of_means": float(out["mean"].mean()),
                      "total": total, "rss_growth": peak["rss"] - base_rss, "anon_growth": peak["anon"] - base_anon,
                      "t_map_s": t_map, "t_reduce_s": t_red}))
""")


def test_100k_frame_movie_with_flat_memory(tmp_path):
    n, size = 100_000, 16
    path = tmp_path / "long.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, size, size))
    for s in range(0, n, 10_000):
        mm[s:s + 10_000] = (np.arange(s, min(s + 10_000, n), dtype=np.float32) % 7)[:, None, None]
    mm.flush()
    del mm
    file_bytes = path.stat().st_size
    r = subprocess.run([sys.executable, "-c", _FLAT_MEMORY, str(path)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"100k frames ({file_bytes / 1e6:.0f} MB): peak RSS growth {m['rss_growth'] / 1e6:.1f} MB, "
          f"anonymous {m['anon_growth'] / 1e6:.1f} MB; map_frames {m['t_map_s']:.1f} s, "
          f"block reduction {m['t_reduce_s']:.1f} s")
    assert m["n"] == n and m["means"] == n
    expected = float(np.mean(np.arange(n) % 7))
    assert abs(m["mean_of_means"] - expected) < 1e-4
    assert abs(m["total"] - expected * n * size * size) < 1e-6 * expected * n * size * size
    # memory that is the process's own (not page cache of the memmapped file) stays flat
    assert m["anon_growth"] < file_bytes / 4, m
