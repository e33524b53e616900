"""Bad parameters through the command line: exit code 2, one error line naming the problem, no traceback.

Every case runs ``python -m temtrack`` in its own process (the real entry point, its exit code and
its stderr); the processes are started together so the interpreter start-ups overlap.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

# id -> (argv, words the error line must contain)
CASES = {
    "negative-width": (["analyze", "{m}", "--out", "{o}", "--line", "1,1,40,40", "--width", "-3"], ["--width", "positive"]),
    "malformed-line": (["analyze", "{m}", "--out", "{o}", "--line", "1,1,30"], ["--line", "4"]),
    "line-outside-frame": (["analyze", "{m}", "--out", "{o}", "--line", "1000,1000,2000,2000"], ["outside"]),
    "no-line": (["analyze", "{m}", "--out", "{o}"], ["--line"]),
    "set-negative-width": (["analyze", "{m}", "--out", "{o}", "--line", "1,1,40,40", "--set", "width_px=-4"], ["width_px"]),
    "set-unknown-key": (["analyze", "{m}", "--out", "{o}", "--line", "1,1,40,40", "--set", "nonsense=1"], ["nonsense"]),
    "negative-pixel-size": (["analyze", "{m}", "--out", "{o}", "--line", "1,1,40,40", "--pixel-size", "-1"], ["--pixel-size"]),
    "unknown-phase": (["rings", "{d}", "--out", "{o}", "--calibration", "0.05", "--phases", "unobtainium"], ["unobtainium"]),
    "bad-calibration": (["rings", "{d}", "--out", "{o}", "--calibration", "ring=beta-Sn:x"], ["--calibration"]),
    "malformed-roi": (["fft", "{m}", "--out", "{o}", "--roi", "1,2,3"], ["--roi"]),
    "roi-outside-frame": (["fft", "{m}", "--out", "{o}", "--roi", "0,0,1000,1000"], ["outside"]),
    "recipe-invalid-json": (["analyze", "{m}", "--out", "{o}", "--recipe", "{r}/invalid.json", "--line", "1,1,40,40"], ["invalid.json", "valid"]),
    "recipe-unknown-key": (["analyze", "{m}", "--out", "{o}", "--recipe", "{r}/unknown.json", "--line", "1,1,40,40"], ["widht_px"]),
    "recipe-wrong-kind": (["analyze", "{m}", "--out", "{o}", "--recipe", "{r}/rings.json", "--line", "1,1,40,40"], ["rings", "analyze"]),
    "recipe-wrong-type": (["analyze", "{m}", "--out", "{o}", "--recipe", "{r}/wrongtype.json"], ["width_px"]),
    "recipe-missing": (["analyze", "{m}", "--out", "{o}", "--recipe", "{r}/nothere.json", "--line", "1,1,40,40"], ["nothere.json"]),
    "batch-recipe-no-kind": (["batch", "{r}/nokind.json", "{m}", "--out", "{o}"], ["kind"]),
    "batch-recipe-unknown-kind": (["batch", "{r}/badkind.json", "{m}", "--out", "{o}"], ["teleport"]),
    "missing-movie-info": (["info", "{r}/nothere.dm4"], ["nothere.dm4", "no such"]),
    "not-a-movie": (["info", "{r}/invalid.json"], ["invalid.json"]),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-params")
    rng = np.random.default_rng(0)
    movie = root / "m.npy"
    np.save(movie, rng.normal(100, 10, (10, 48, 48)).astype(np.float32))
    (root / "m.json").write_text(json.dumps({"pixel_size": 0.5, "frame_interval_s": 0.5}))
    saed = root / "d.npy"
    np.save(saed, rng.poisson(100, (4, 128, 128)).astype(np.float32))
    recipes = {"unknown.json": {"kind": "analyze", "widht_px": 3}, "rings.json": {"kind": "rings"},
               "wrongtype.json": {"kind": "analyze", "width_px": "wide", "line": [1, 1, 40, 40]},
               "nokind.json": {"width_px": 3}, "badkind.json": {"kind": "teleport"}, "list.json": [1, 2]}
    for name, data in recipes.items():
        (root / name).write_text(json.dumps(data))
    (root / "invalid.json").write_text('{"kind": "analyze",')
    procs = {}
    for case, (argv, _) in CASES.items():
        out = root / f"out-{case}"
        args = [a.format(m=movie, d=saed, o=out, r=root) for a in argv]
        procs[case] = (subprocess.Popen([sys.executable, "-m", "temtrack", *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=root), out)
    done = {}
    for case, (p, out) in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        done[case] = (p.returncode, stdout, stderr, out)
    return done


@pytest.mark.parametrize("case", list(CASES))
def test_bad_parameter_exits_2_with_one_line(results, case):
    rc, stdout, stderr, out = results[case]
    print(f"{case}: rc={rc} stderr={stderr.strip().splitlines()[-1:]!r}")
    assert "Traceback" not in stderr
    errors = [ln for ln in stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, stderr
    line = errors[0]
    assert line.startswith("temtrack: error:"), line
    assert "internal error" not in line
    for word in CASES[case][1]:
        assert word.lower() in line.lower(), (word, line)
    # only argparse adds its usage lines; our own errors are exactly one line
    other = [ln for ln in stderr.splitlines() if ln.strip() and ln != line and "%|" not in ln]
    assert all(ln.startswith(("usage:", " ")) for ln in other), stderr
    assert rc == 2
    assert not out.exists(), "a refused command must not create its output folder"


def test_unknown_phase_rejected_before_reading_frames(results):
    rc, _, stderr, _ = results["unknown-phase"]
    assert rc == 2
    assert "%|" not in stderr, "frames were processed before the recipe was validated"
