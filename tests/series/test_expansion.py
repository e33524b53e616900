"""Tests of temtrack.series.expansion with exact numbers and synthetic swelling curves."""
import json

import numpy as np
import pytest

from temtrack.errors import AnalysisError, ParameterError
from temtrack.series.expansion import expansion_metrics, radial_expansion_rate


def test_exact_numbers_no_errors():
    r = expansion_metrics(50.0, 85.0)
    assert r["d0_nm"] == 50.0 and r["d1_nm"] == 85.0
    assert r["diameter_ratio"] == pytest.approx(1.7)
    assert r["areal_expansion"] == pytest.approx(1.89)
    # no axial strain: V/V0 - 1 equals the areal expansion
    assert r["volume_expansion_no_axial_strain"] == pytest.approx(1.89)
    assert r["volume_expansion_with_axial_strain"] is None and r["axial_strain"] is None
    assert r["radial_expansion_rate_nm_per_s"] is None
    assert r["ci95"]["diameter_ratio"] is None  # single values, no errors: no interval
    json.dumps(r, allow_nan=False)


def test_axial_strain_and_error_propagation():
    r = expansion_metrics(50.0, 85.0, pristine_err_nm=1.0, sodiated_err_nm=2.0,
                          axial_strain=0.1, axial_strain_err=0.02)
    assert r["volume_expansion_with_axial_strain"] == pytest.approx(1.7**2 * 1.1 - 1)  # 2.179
    s_r = 1.7 * np.hypot(2.0 / 85.0, 1.0 / 50.0)
    assert r["sigma"]["diameter_ratio"] == pytest.approx(s_r)
    lo, hi = r["ci95"]["areal_expansion"]
    assert (hi - lo) / 2 == pytest.approx(1.959964 * 2 * 1.7 * s_r, rel=1e-6)
    # Monte Carlo check of the first-order propagation for the volume with axial strain
    rng = np.random.default_rng(0)
    d0 = rng.normal(50, 1, 200_000)
    d1 = rng.normal(85, 2, 200_000)
    eps = rng.normal(0.1, 0.02, 200_000)
    mc = np.std((d1 / d0) ** 2 * (1 + eps) - 1)
    print(f"\nsigma(V) propagated {r['sigma']['volume_expansion_with_axial_strain']:.4f}, "
          f"Monte Carlo {mc:.4f}")
    assert r["sigma"]["volume_expansion_with_axial_strain"] == pytest.approx(mc, rel=0.05)


def test_array_inputs_use_mean_and_sem():
    rng = np.random.default_rng(1)
    d0 = 50 + rng.normal(0, 1.0, 100)
    d0[3] = np.nan
    r = expansion_metrics(d0, np.full(40, 85.0))
    assert r["d0_nm"] == pytest.approx(np.nanmean(d0))
    assert r["sigma"]["d0_nm"] == pytest.approx(np.nanstd(d0, ddof=1) / np.sqrt(99))
    assert r["sigma"]["d1_nm"] == 0.0


def _swelling(rate_nm_per_s, *, seed=0, noise=0.5, outliers=0):
    """Probe diameter: 50 nm until 20 s, swelling radially at `rate` until 85 nm, then flat."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 120.0, 0.4)
    d = np.clip(50.0 + 2 * rate_nm_per_s * (t - 20.0), 50.0, 85.0) + rng.normal(0, noise, t.size)
    if outliers:
        idx = rng.choice(np.flatnonzero((t > 25) & (t < 45)), outliers, replace=False)
        d[idx] += 15.0
    return t, d


def test_radial_rate_known_truth_with_outliers():
    t, d = _swelling(0.5, outliers=4)  # surface moves at 0.5 nm/s, diameter at 1 nm/s
    res = radial_expansion_rate(t, d)
    print(f"\nradial rate {res['rate_nm_per_s']:.4f} nm/s (truth 0.5), CI {res['ci95']}, "
          f"window {res['window_s']}")
    assert res["rate_nm_per_s"] == pytest.approx(0.5, rel=0.03)
    assert res["diameter_rate_nm_per_s"] == pytest.approx(2 * res["rate_nm_per_s"])
    assert res["ci95"][0] < 0.5 < res["ci95"][1]
    # window inside the true swelling period 20-55 s
    assert 20.0 <= res["window_s"][0] < 30.0 and 45.0 < res["window_s"][1] <= 56.0
    # the same through expansion_metrics
    r = expansion_metrics(50.0, 85.0, diameter_time_s=t, diameter_nm=d)
    assert r["radial_expansion_rate_nm_per_s"] == res["rate_nm_per_s"]
    assert r["ci95"]["radial_expansion_rate_nm_per_s"] == res["ci95"]
    json.dumps(r, allow_nan=False)


def test_radial_rate_explicit_window():
    t, d = _swelling(0.25, seed=3)
    res = radial_expansion_rate(t, d, window_s=(30.0, 80.0))
    assert res["rate_nm_per_s"] == pytest.approx(0.25, rel=0.05)
    assert res["n_points"] == np.count_nonzero((t >= 30) & (t <= 80))


def test_no_swelling_and_bad_input():
    rng = np.random.default_rng(2)
    t = np.arange(100.0)
    d = 50 + rng.normal(0, 0.5, 100)
    with pytest.raises(AnalysisError, match="no swelling"):
        radial_expansion_rate(t, d)
    r = expansion_metrics(50.0, 85.0, diameter_time_s=t, diameter_nm=d)
    assert r["radial_expansion_rate_nm_per_s"] is None
    assert "no swelling" in r["radial_expansion_rate_note"]
    # a step in one frame: too few frames in the swelling period
    step = np.where(t < 50, 50.0, 85.0)
    with pytest.raises(AnalysisError, match="at least 3"):
        radial_expansion_rate(t, step)
    with pytest.raises(ParameterError, match="pristine_nm"):
        expansion_metrics(-5.0, 85.0)
    with pytest.raises(ParameterError, match="sodiated_nm"):
        expansion_metrics(50.0, [np.nan])
    with pytest.raises(ParameterError, match="axial_strain"):
        expansion_metrics(50.0, 85.0, axial_strain=-1.5)
    with pytest.raises(ParameterError, match="equal lengths"):
        radial_expansion_rate(t, d[:10])
    with pytest.raises(ParameterError, match="both or neither"):
        expansion_metrics(50.0, 85.0, diameter_time_s=t)
