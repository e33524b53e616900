"""The README's first command on the bundled sample movie, and ``--auto`` on small movies.

The sample (``sample_movies/nanowire_sodiation.tif``, 256x256 px, 120 frames) has a 50 px wide wire
in a 256 px frame and its Na source partly outside the field at the contact end: the wire fits once
had a fixed profile width too narrow for it, the axis search preferred the frame's diagonal, and
positions the drift carried off the frame in the last frames pinned the front near the contact.
Accuracy numbers are printed (``-s`` / ``-rA``).
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from temtrack.pipeline.analyze import AnalyzeRecipe, analyze
from temtrack.pipeline.executor import LocalExecutor
from temtrack.series.wire_geometry import detect_wire_line, measure_width
from temtrack.synthetic.nanowire import make_nanowire_movie

SAMPLE = Path(__file__).resolve().parents[2] / "sample_movies" / "nanowire_sodiation.tif"

_runs: dict = {}


def _sample():
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} not found")
    from temtrack.io import open_movie
    truth = json.loads(SAMPLE.with_name("nanowire_sodiation.truth.json").read_text())
    return open_movie(SAMPLE), truth


def _run(kind):
    if kind not in _runs:
        movie, truth = _sample()
        calls = []
        if kind == "auto":
            # The README command: --auto --probe-nm 40,80, drift estimated.
            recipe = AnalyzeRecipe(auto=True, probes_nm=[40.0, 80.0])
            res = analyze(movie, recipe, executor=LocalExecutor(2), progress=lambda d, t: calls.append((d, t)))
        else:
            # The true line, no width (measured), the true drift: the front and diameters alone.
            recipe = AnalyzeRecipe(line=list(truth["line_px"]), probes_nm=[40.0, 80.0])
            res = analyze(movie, recipe, executor=LocalExecutor(2),
                          shifts_px=(truth["drift_dy_px"], truth["drift_dx_px"]))
        _runs[kind] = (res, truth, calls)
    return _runs[kind]


def _contact_offset_nm(line_px, truth):
    """Distance along the true axis from the true contact to a line's first point (nm)."""
    a = math.radians(truth["angle_deg"])
    ux, uy = math.cos(a), -math.sin(a)
    cx, cy = truth["contact_px"]
    return ((line_px[0] - cx) * ux + (line_px[1] - cy) * uy) * truth["pixel_size_nm"]


def _front_errors(res, truth, offset_nm=0.0):
    ok = res.front.used_for_fit
    true = np.asarray(truth["front_position_nm"])
    return res.front.position_nm[ok] + offset_nm - true[ok], ok


def test_readme_command_auto_on_sample():
    res, truth, _ = _run("auto")
    w = res.wire
    err = (w["angle_deg"] - truth["angle_deg"] + 180) % 360 - 180
    d0_px = truth["d0_nm"] / truth["pixel_size_nm"]
    offset = _contact_offset_nm(w["line_px"], truth)
    e, ok = _front_errors(res, truth, offset)
    rms = float(np.sqrt(np.mean(e ** 2)))
    raw = float(np.sqrt(np.mean(_front_errors(res, truth)[0] ** 2)))
    k = res.kinetics_json
    print(f"[sample, --auto] angle error {err:+.2f} deg, width {w['width_px']:.1f} px (truth {d0_px:.1f}), contact "
          f"found {offset:+.1f} nm along the axis from the synthetic contact (inside the source); front RMS "
          f"{rms:.2f} nm from the found contact ({raw:.2f} nm against the synthetic contact) over {ok.sum()} "
          f"frames; model {k['model']}, D {k['D_nm2_per_s']:.1f} nm^2/s (truth "
          f"{truth['kinetics']['D_nm2_per_s']:.1f}), t0 {k['t0_s']:.2f} s; d0 {res.diameter.pristine_nm:.2f}, "
          f"d1 {res.diameter.sodiated_nm:.2f} nm")
    assert res.ok, res.problems
    assert abs(err) <= 2.0
    assert 0.0 <= offset <= 20.0          # the contact end, at the source's outline
    assert abs(w["width_px"] / d0_px - 1) <= 0.10
    assert rms <= 3.0
    assert ok.sum() >= 0.8 * truth["n_frames"]
    assert abs(res.diameter.pristine_nm / truth["d0_nm"] - 1) <= 0.03
    assert abs(res.diameter.sodiated_nm / truth["d1_nm"] - 1) <= 0.03
    _check_auto_kinetics(k, truth, offset, "sample, --auto")


def _check_auto_kinetics(k, truth, offset_nm, label):
    """--auto's contact is the source's outline, ``offset_nm`` past the synthetic contact (where the
    front starts, inside the source): the kinetics fit that origin offset (x0 = -offset_nm)."""
    D_true = truth["kinetics"]["D_nm2_per_s"]
    D = k["D_nm2_per_s"] if k["D_nm2_per_s"] is not None else k["D_parabolic_nm2_per_s"]
    lo, hi = k["ci95"]["D_nm2_per_s"] or k["ci95"]["D_parabolic_nm2_per_s"]
    x0, (x0_lo, x0_hi) = k["x0_nm"], k["ci95"]["x0_nm"]
    t0_lo, t0_hi = k["ci95"]["t0_s"]
    print(f"[{label}] kinetics origin {k['origin']}: model {k['model']}, D {D:.2f} nm^2/s [{lo:.2f}, {hi:.2f}] "
          f"(truth {D_true:.2f}, error {100 * (D / D_true - 1):+.1f}%), x0 {x0:.2f} nm [{x0_lo:.2f}, {x0_hi:.2f}] "
          f"(contact {offset_nm:.2f} nm past the synthetic one), t0 {k['t0_s']:.2f} s [{t0_lo:.2f}, {t0_hi:.2f}] "
          f"(truth {truth['kinetics']['t0_s']:g})")
    assert k["origin"] == "free" and k["model"] in ("parabolic", "power", "linear")
    assert abs(D / D_true - 1) <= 0.10
    assert lo <= D_true <= hi
    assert x0_lo <= -offset_nm <= x0_hi
    assert t0_lo <= truth["kinetics"]["t0_s"] <= t0_hi


@pytest.mark.parametrize("angle, seed", [(250.0, 12), (120.0, 11)])
def test_auto_kinetics_on_other_movies(angle, seed):
    # Movies like the sample (256 px, 120 frames, drift with a jump), other angles and seeds.
    from temtrack.io.movie import movie_from_array

    frames, truth = make_nanowire_movie(n_frames=120, shape=(256, 256), angle_deg=angle, dose=30.0, drift_px=12.0,
                                        n_jumps=1, seed=seed)
    movie = movie_from_array(frames, pixel_size=truth["pixel_size_nm"], frame_interval_s=truth["frame_interval_s"],
                             path=f"<synthetic angle {angle:g} seed {seed}>")
    res = analyze(movie, AnalyzeRecipe(auto=True), executor=LocalExecutor(2))
    assert res.ok, res.problems
    _check_auto_kinetics(res.kinetics_json, truth, _contact_offset_nm(res.wire["line_px"], truth),
                         f"--auto, angle {angle:g}, seed {seed}")


def test_true_line_measured_width_on_sample():
    res, truth, _ = _run("line")
    d0_px = truth["d0_nm"] / truth["pixel_size_nm"]
    e, ok = _front_errors(res, truth)
    rms = float(np.sqrt(np.mean(e ** 2)))
    true = np.asarray(truth["front_position_nm"])
    near = ok & (true < 50.0)     # where the late frames' profiles run off the frame
    k = res.kinetics_json
    D_true = truth["kinetics"]["D_nm2_per_s"]
    lo, hi = k["ci95"]["D_nm2_per_s"]
    print(f"[sample, true line, true drift] measured width {res.wire['width_px']:.1f} px (truth {d0_px:.1f}); "
          f"front RMS {rms:.2f} nm over {ok.sum()} frames, worst {np.max(np.abs(e)):.2f} nm, worst within 50 nm of "
          f"the contact {np.max(np.abs(res.front.position_nm[near] - true[near])):.2f} nm; model {k['model']}, "
          f"D {k['D_nm2_per_s']:.2f} [{lo:.2f}, {hi:.2f}] (truth {D_true:.2f}), t0 {k['t0_s']:.2f} s (truth "
          f"{truth['kinetics']['t0_s']:g})")
    assert res.ok, res.problems
    assert res.wire.get("width_measured")
    assert abs(res.wire["width_px"] / d0_px - 1) <= 0.10
    assert rms <= 1.5
    assert near.sum() >= 10 and np.max(np.abs(res.front.position_nm[near] - true[near])) <= 3.0
    assert abs(k["D_nm2_per_s"] / D_true - 1) <= 0.05
    assert abs(k["t0_s"] - truth["kinetics"]["t0_s"]) <= 0.5


def test_progress_starts_at_zero_and_counts_every_pass():
    _, _, calls = _run("auto")
    done = [d for d, _ in calls]
    totals = {t for _, t in calls}
    print(f"progress reports: {calls}")
    assert calls[0][0] == 0               # before any work: a bar's rate is not measured from microseconds
    assert len(totals) == 1 and done[-1] == totals.pop()
    assert all(b >= a for a, b in itertools.pairwise(done))
    # The wire pass (second half) reports as it goes, not only once clipped at the end.
    half = calls[-1][1] // 2
    assert len({d for d in done if half < d < calls[-1][1]}) >= 2


@pytest.mark.parametrize("angle", [0.0, 35.0, 90.0, 150.0, 235.0, 300.0])
def test_auto_and_measured_width_on_small_movies(angle):
    # The sweep the sample belongs to: 256 px frames, 50 px wire, source near an edge.
    for seed in (1, 2):
        frames, truth = make_nanowire_movie(shape=(256, 256), n_frames=3, angle_deg=angle, seed=seed, dose=30,
                                            drift_px=12, n_jumps=1)
        frames = frames.astype(np.float32)
        d0_px = truth["d0_nm"] / truth["pixel_size_nm"]
        found = detect_wire_line(frames)
        err = (found.angle_deg - truth["angle_deg"] + 180) % 360 - 180
        cx, cy = truth["contact_px"]
        x0, y0, x1, y1 = found.line_px
        d_contact, d_far = math.hypot(x0 - cx, y0 - cy), math.hypot(x1 - cx, y1 - cy)
        width = measure_width(frames, truth["line_px"])
        print(f"[auto, angle {angle:g}, seed {seed}] angle error {err:+.2f} deg, contact {d_contact:.1f} px from "
              f"the synthetic contact (far end {d_far:.1f} px), width {found.width_px:.1f} px; width on the true "
              f"line {width:.1f} px (truth {d0_px:.1f})")
        assert abs(err) <= 2.0
        assert d_contact < 0.25 * d_far
        assert abs(found.width_px / d0_px - 1) <= 0.10
        assert abs(width / d0_px - 1) <= 0.10
