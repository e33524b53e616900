"""The benchmark harness runs end to end in quick mode (it measures nothing meaningful here).

No timing is asserted: the figures depend on the machine and its load. What is checked is that the
harness still drives the current APIs, writes its report, and that its own conventions (shift
signs of the peers, agreement with pyFAI, truth of the synthetic movies) are right.
"""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def test_quick_run_writes_report(tmp_path, monkeypatch):
    from benchmarks.__main__ import main

    monkeypatch.setenv("TEMTRACK_BENCH_CACHE", str(tmp_path / "cache"))
    out, raw = tmp_path / "benchmarks.md", tmp_path / "benchmarks.json"
    rc = main(["--quick", "--skip", "memory,dask,gui", "--out", str(out), "--json", str(raw),
               "--workdir", str(tmp_path)])
    data = json.loads(raw.read_text())
    errors = {k: v.get("error") for k, v in data["results"].items() if "error" in v}
    assert rc == 0 and not errors, errors

    text = out.read_text()
    for heading in ("## Machine", "## Summary", "## Physical limits", "## 1. Drift estimation",
                    "## 3. End-to-end analyze", "## How close each stage comes to the limits"):
        assert heading in text
    mach = data["machine"]
    assert mach["cores"] >= 1 and mach["ram_gib"] > 0 and mach["versions"]["numpy"]

    limits = data["results"]["limits"]
    assert limits["memory"]["copy_GB_per_s"] > 0 and limits["disk"]["cold_GB_per_s"] > 0

    drift = data["results"]["drift"]
    # The peers' outputs are converted to temtrack's sign convention: a known (3, -5) px shift.
    assert drift["sign_check"]["skimage"] == pytest.approx([3, -5], abs=0.11)
    assert drift["sign_check"]["cv2"] == pytest.approx([3, -5], abs=0.6)
    tt = drift["results"][0]["methods"]["temtrack estimate_drift, 2 threads"]
    print("quick drift RMS error (px):", tt["rms_error_px"])
    assert tt["rms_error_px"] < 0.5 and tt["fps"] > 0

    radial = data["results"]["radial"]
    if "skipped" not in radial:
        diff = radial["results"][0]["methods"]["temtrack map_frames + azimuthal_average, 2 threads"]
        print("quick radial max relative difference to pyFAI:", diff["max_rel_diff_vs_pyfai"])
        assert diff["max_rel_diff_vs_pyfai"] < 0.01

    for row in data["results"]["analyze"]["results"]:
        print(row["label"], "drift RMS px", row["drift_rms_error_px"], "D/D_true", row["D_over_true"])
        assert row["analyze_fps"] > 0 and row["read_fps"] > 0
        assert row["drift_rms_error_px"] < 0.5


def test_unknown_benchmark_name_is_refused(tmp_path):
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit):
        main(["--quick", "--only", "nonsense", "--out", str(tmp_path / "x.md")])
    assert not (tmp_path / "x.md").exists()
