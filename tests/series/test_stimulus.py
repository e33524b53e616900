import numpy as np
import pytest

from temtrack.errors import MovieReadError
from temtrack.series.stimulus import (ELEMENTARY_CHARGE_C, align_to_frames, charge_vs_reacted_volume,
                                      cumulative_charge_C, estimate_clock_offset, read_stimulus_log)


def test_biologic_style_log_units_and_alignment(tmp_path):
    t = np.arange(0, 100, 0.5)
    lines = ["# exported by EC-Lab", "time/s\tEwe/V\t<I>/mA"] + [f"{a}\t{-0.1 - 0.001 * a}\t{-0.002}" for a in t]
    (tmp_path / "log.txt").write_text("\n".join(lines))
    log = read_stimulus_log(tmp_path / "log.txt")
    assert log.current_A[0] == pytest.approx(-2e-6)
    assert log.voltage_V[10] == pytest.approx(-0.1 - 0.001 * 5)
    # movie starts 10 s after the log
    frames = np.arange(0, 50, 1.0)
    al = align_to_frames(log, frames, offset_s=10.0)
    np.testing.assert_allclose(al["voltage_V"], -0.1 - 0.001 * (frames + 10))
    np.testing.assert_allclose(al["charge_C"], -2e-6 * frames, atol=1e-12)
    assert al["fraction_of_frames_covered"] == 1.0


def test_semicolon_log_with_micro_amps_and_gaps(tmp_path):
    (tmp_path / "p.csv").write_text("Time (s);Current (uA);Voltage (V)\n0;1;0.5\n10;1;0.5\n20;3;0.6\n")
    log = read_stimulus_log(tmp_path / "p.csv")
    al = align_to_frames(log, [0, 5, 15, 25])
    assert np.isnan(al["current_A"][-1])
    assert al["current_A"][2] == pytest.approx(2e-6)
    assert al["charge_C"][1] == pytest.approx(5e-6)


def test_charge_and_volume():
    q = cumulative_charge_C([0, 1, 2], [1.0, 1.0, 3.0])
    np.testing.assert_allclose(q, [0, 1, 3])
    r = charge_vs_reacted_volume([ELEMENTARY_CHARGE_C * 1000], [10.0], sodiated_diameter_nm=2 / np.sqrt(np.pi))
    assert r["reacted_volume_nm3"][0] == pytest.approx(10.0)
    assert r["na_per_nm3"][0] == pytest.approx(100.0)
    assert estimate_clock_offset(log_event_s=12.5, movie_event_s=2.5) == 10.0


@pytest.mark.parametrize("text,msg", [("a,b\n1,2\n3,4\n", "no time column"),
                                      ("time/s,foo\n1,2\n3,4\n", "no current or voltage"),
                                      ("time/s\n", "fewer than two")])
def test_bad_logs(tmp_path, text, msg):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(MovieReadError, match=msg):
        read_stimulus_log(p)


def test_analyze_puts_the_log_beside_the_front(tmp_path):
    """`analyze --stimulus-log --log-offset auto`: the front's onset (kinetics t0) matched to the
    current's switch-on gives the clock offset; current and charge per frame in results.json and
    stimulus.csv; the stacked log figure and the charge vs reacted volume figure are written."""
    import json
    import subprocess
    import sys
    import xml.etree.ElementTree as ET
    from pathlib import Path

    from PIL import Image

    sample = Path(__file__).resolve().parents[2] / "sample_movies" / "nanowire_sodiation.tif"
    truth = json.loads(sample.with_name("nanowire_sodiation.truth.json").read_text())
    true_offset_s = 10.0
    t_on_log = truth["kinetics"]["t0_s"] + true_offset_s     # bias switched on when the front starts
    t = np.arange(0, 80, 0.25)
    (tmp_path / "log.csv").write_text("time/s,<I>/uA\n" + "\n".join(f"{a},{-2.0 if a >= t_on_log else 0.0}"
                                                                    for a in t))
    out = tmp_path / "res"
    run = subprocess.run([sys.executable, "-m", "temtrack", "-q", "analyze", str(sample), "--out", str(out),
                          "--line", "26.0,198.6,176.0,93.6", "--stimulus-log", str(tmp_path / "log.csv"),
                          "--log-offset", "auto", "--figure-formats", "png,svg,pdf"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    res = json.loads((out / "results.json").read_text())
    stim = res["stimulus"]
    off = stim["offset"]
    print(f"auto clock offset {off['offset_s']:.3f} +- {off['uncertainty_s']:.3f} s (true {true_offset_s}), "
          f"front onset t0 = {off['movie_event_s']:.3f} s (true {truth['kinetics']['t0_s']})")
    assert off["method"] == "auto" and off["channel"] == "current"
    assert abs(off["offset_s"] - true_offset_s) < max(3 * off["uncertainty_s"], 0.3)
    assert stim["offset_s"] == off["offset_s"] and stim["fraction_of_frames_covered"] == 1.0
    time_s = np.asarray(res["front"]["time_s"])
    current = np.asarray(stim["current_A"], float)
    on = time_s + off["offset_s"] >= t_on_log + 0.25
    np.testing.assert_allclose(current[on], -2e-6)
    # Charge since the first frame: -2 uA from the switch-on (movie time ~ t0) to the last frame.
    expected_q = -2e-6 * (time_s[-1] + off["offset_s"] - t_on_log)
    assert stim["charge_C"][-1] == pytest.approx(expected_q, abs=2e-6 * 0.3)
    assert (out / "stimulus.csv").read_text().startswith("time_s,current_A")
    for name in ("stimulus", "charge_volume", "kymograph"):
        with Image.open(out / f"{name}.png") as im:
            im.load()
            assert min(im.size) > 300
        assert ET.parse(out / f"{name}.svg").getroot().tag.endswith("svg")
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
