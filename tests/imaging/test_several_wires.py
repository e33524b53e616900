"""Several wires in one field: each analysed on its own, listed under `wires` (issue 10)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from temtrack.synthetic import save_movie_tiff
from temtrack.synthetic.nanowire import make_nanowire_movie


@pytest.fixture(scope="module")
def two_wire_movie(tmp_path_factory):
    common = dict(n_frames=60, shape=(256, 256), dose=40, drift_px=0.0, n_jumps=0, flicker=0.0, t0_s=2.0)
    a, ta = make_nanowire_movie(angle_deg=30, D_nm2_per_s=250.0, seed=21, **common)
    b, tb = make_nanowire_movie(angle_deg=200, D_nm2_per_s=120.0, seed=22, **common)
    frames = np.concatenate([a, b], axis=2)          # two fields side by side, one movie
    path = tmp_path_factory.mktemp("wires") / "two.tif"
    save_movie_tiff(path, frames, pixel_size=0.8, frame_interval_s=0.5)
    line_b = list(tb["line_px"])
    line_b[0] += 256
    line_b[2] += 256
    return path, [ta["line_px"], line_b], [ta, tb]


def test_two_wires_each_get_their_kinetics(tmp_path, two_wire_movie):
    path, lines, truths = two_wire_movie
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "temtrack", "-q", "analyze", str(path), "--out", str(out), "--width", "50",
           "--no-drift"]
    for line in lines:
        cmd += ["--line", ",".join(f"{v:.3f}" for v in line)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    res = json.loads((out / "results.json").read_text())
    assert len(res["wires"]) == 2 and [w["id"] for w in res["wires"]] == [1, 2]
    assert res["kinetics"] == res["wires"][0]["kinetics"]      # the single-wire keys stay the first wire's
    for wire, truth in zip(res["wires"], truths):
        d_true = truth["kinetics"]["D_nm2_per_s"]
        d = wire["kinetics"]["D_nm2_per_s"]
        print(f"wire {wire['id']}: D = {d:.1f} nm^2/s (truth {d_true:.1f})")
        assert d == pytest.approx(d_true, rel=0.1)
    assert (out / "wire_2" / "front.csv").is_file()
