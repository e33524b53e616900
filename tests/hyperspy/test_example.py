"""The notebook-style HyperSpy example in docs/examples runs and reproduces the truth."""
from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hyperspy.api")

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "hyperspy_workflow.py"


def test_hyperspy_workflow_example_runs(tmp_path, capsys):
    import hyperspy.api as hs

    from temtrack.hyperspy.signals import LazyInSituMovie

    ns = runpy.run_path(str(EXAMPLE), run_name="hyperspy_workflow_example")
    out = ns["main"](tmp_path)
    printed = capsys.readouterr().out
    print(printed)
    truth = out["truth"]
    assert type(out["signal"]) is LazyInSituMovie and type(out["aligned"]) is LazyInSituMovie
    assert out["front"].ok, out["front"].problems
    D_true = truth["kinetics"]["D_nm2_per_s"]
    D = out["fit"].D_nm2_per_s
    print(f"example: D = {D:.1f} nm^2/s, truth {D_true:.1f} ({100 * (D / D_true - 1):+.1f}%)")
    assert D == pytest.approx(D_true, rel=0.3)
    assert out["front"].pristine_nm == pytest.approx(truth["d0_nm"], abs=2.0)
    assert out["summary"]["model"] == out["front"].kinetics.model
    front = hs.load(tmp_path / "front.hspy")
    np.testing.assert_array_equal(front.data, out["front"].front.data)
    assert front.axes_manager[0].units == "s" and "D = " in printed
    # Step 7: the particle field, from a lazily loaded TIFF.
    parts, ptruth = out["particles"], out["particles_truth"]
    assert parts.n_particles == len(ptruth["particles"])
    areas = hs.load(tmp_path / "particle_areas.hspy")
    np.testing.assert_array_equal(areas.data, parts.result.area_nm2.T)
    true_c = np.array([p["centre_yx_px"] for p in ptruth["particles"]])
    nearest = np.linalg.norm(parts.result.centre0_yx_px[:, None] - true_c[None], axis=2).argmin(axis=1)
    onset_err = np.abs(parts.result.onset_s - np.array([ptruth["particles"][i]["onset_s"] for i in nearest]))
    print("example particle onset errors (s):", np.round(onset_err, 2))
    assert max(onset_err) <= 2 * ptruth["frame_interval_s"]
    assert "final volume expansion" in printed
