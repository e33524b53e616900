"""Tests of temtrack.series.kinetics against synthetic fronts with known kinetics."""
import json

import numpy as np
import pytest

from temtrack.errors import AnalysisError, ParameterError
from temtrack.series.kinetics import KineticsResult, fit_kinetics, model_curve

REQUIRED_KEYS = {"model", "D_nm2_per_s", "D_cm2_per_s", "k_nm_per_s", "n", "t0_s", "ci95",
                 "prefactor", "comparison", "convention"}


def _front(model, params, *, t_end=60.0, n=300, sigma=3.0, seed=0, t_start=0.0, prefactor=2.0):
    rng = np.random.default_rng(seed)
    t = np.linspace(t_start, t_end, n)
    x = model_curve(model, t, params, prefactor=prefactor) + rng.normal(0.0, sigma, n)
    return t, x


def _rel(a, b):
    return abs(a - b) / abs(b)


def test_parabolic_accuracy_and_json():
    t, x = _front("parabolic", {"D_nm2_per_s": 1500.0, "t0_s": 3.0}, seed=1)
    res = fit_kinetics(t, x)
    assert isinstance(res, KineticsResult)
    j = res.to_json()
    print(f"\nparabolic: D = {j['D_nm2_per_s']:.1f} nm^2/s (truth 1500, err "
          f"{100 * _rel(j['D_nm2_per_s'], 1500):.2f}%), CI {j['ci95']['D_nm2_per_s']}, "
          f"t0 = {j['t0_s']:.3f} s (truth 3), model {j['model']}")
    assert j["model"] == "parabolic"
    assert _rel(j["D_nm2_per_s"], 1500.0) < 0.03
    assert abs(j["t0_s"] - 3.0) < 0.3
    assert REQUIRED_KEYS <= set(j)
    assert j["D_cm2_per_s"] == pytest.approx(j["D_nm2_per_s"] * 1e-14, rel=1e-12)
    assert j["k_nm_per_s"] is None and j["n"] == 0.5 and j["prefactor"] == 2.0
    assert j["convention"] == "x^2 = P*D*(t - t0)"
    for p in ("D_nm2_per_s", "D_cm2_per_s", "k_nm_per_s", "n", "t0_s"):
        assert p in j["ci95"]
    lo, hi = j["ci95"]["D_nm2_per_s"]
    assert lo < j["D_nm2_per_s"] < hi
    assert j["ci95"]["D_cm2_per_s"] == pytest.approx([lo * 1e-14, hi * 1e-14])
    assert set(j["comparison"]) == {"parabolic", "power", "linear", "mixed"}
    for c in j["comparison"].values():
        assert {"aic", "aicc", "bic", "rss", "n_params", "params", "ci95"} <= set(c)
    # the power fit of parabolic data finds n = 0.5
    assert abs(j["n_power_fit"] - 0.5) < 0.02
    json.dumps(j, allow_nan=False)  # strict JSON: no NaN/inf leaks
    # ModelFit API
    best = res.best
    assert best.name == "parabolic" and best.n_points == 300
    assert np.allclose(best.residuals, x - best.predict(t))
    assert np.all(best.predict(np.array([0.0, 2.9])) == 0.0)
    assert np.std(best.residuals) == pytest.approx(3.0, rel=0.15)


def test_mixed_deal_grove_accuracy():
    D, k, t0, P = 800.0, 15.0, 3.0, 2.0
    t, x = _front("mixed", {"D_nm2_per_s": D, "k_nm_per_s": k, "t0_s": t0}, t_end=100.0, seed=2)
    # regime check: at the end of the data both terms carry a sizeable share of t - t0
    x_end = model_curve("mixed", t[-1:], {"D_nm2_per_s": D, "k_nm_per_s": k, "t0_s": t0})[0]
    diff_share = x_end**2 / (P * D) / (t[-1] - t0)
    assert 0.2 < diff_share < 0.8 and x_end**2 / (P * D) + x_end / k == pytest.approx(t[-1] - t0)
    j = fit_kinetics(t, x).to_json()
    print(f"\nmixed: D = {j['D_nm2_per_s']:.1f} (truth 800, "
          f"{100 * _rel(j['D_nm2_per_s'], D):.1f}%) CI {j['ci95']['D_nm2_per_s']}, "
          f"k = {j['k_nm_per_s']:.2f} nm/s (truth 15, {100 * _rel(j['k_nm_per_s'], k):.1f}%) "
          f"CI {j['ci95']['k_nm_per_s']}, model {j['model']}, "
          f"diffusion share at end {diff_share:.2f}, dAICc "
          + str({m: round(c["delta_aicc"], 1) for m, c in j["comparison"].items()}))
    assert j["model"] == "mixed"
    assert _rel(j["D_nm2_per_s"], D) < 0.20
    assert _rel(j["k_nm_per_s"], k) < 0.30
    lo, hi = j["ci95"]["k_nm_per_s"]
    assert lo < j["k_nm_per_s"] < hi
    assert j["D_from"] == "mixed"


def test_power_law_exponent():
    t, x = _front("power", {"A_nm_per_s_n": 60.0, "n": 0.35, "t0_s": 4.0}, t_end=80.0, n=250,
                  sigma=2.5, seed=5)
    j = fit_kinetics(t, x).to_json()
    print(f"\npower: n = {j['n']:.4f} (truth 0.35) CI {j['ci95']['n']}, model {j['model']}, "
          f"D from {j['D_from']}")
    assert j["model"] == "power"
    assert abs(j["n"] - 0.35) < 0.03
    assert j["ci95"]["n"][0] < j["n"] < j["ci95"]["n"][1]
    # t0, n and their intervals come from the best (power) model, which has no D; D (always
    # present for users' scripts) is the parabolic fit's, and D_from says so
    power = j["comparison"]["power"]
    par = j["comparison"]["parabolic"]
    assert j["D_from"] == "parabolic"
    assert j["D_nm2_per_s"] == par["params"]["D_nm2_per_s"]
    assert j["D_cm2_per_s"] == pytest.approx(j["D_nm2_per_s"] * 1e-14)
    assert j["ci95"]["D_nm2_per_s"] == par["ci95"]["D_nm2_per_s"]
    assert j["t0_s"] == power["params"]["t0_s"] and j["n"] == power["params"]["n"]
    assert j["ci95"]["t0_s"] == power["ci95"]["t0_s"] and j["ci95"]["n"] == power["ci95"]["n"]
    assert j["D_parabolic_nm2_per_s"] == par["params"]["D_nm2_per_s"] > 0
    assert j["ci95"]["D_parabolic_nm2_per_s"] == par["ci95"]["D_nm2_per_s"]
    assert j["D_parabolic_cm2_per_s"] == pytest.approx(j["D_parabolic_nm2_per_s"] * 1e-14)
    # no model with a D fitted: D is null, not invented
    j2 = fit_kinetics(t, x, models=("power", "linear")).to_json()
    assert j2["model"] == "power" and j2["D_nm2_per_s"] is None and j2["D_from"] is None
    assert j2["ci95"]["D_nm2_per_s"] is None and j2["D_parabolic_nm2_per_s"] is None
    json.dumps(j2, allow_nan=False)


def test_linear_chosen():
    t, x = _front("linear", {"v_nm_per_s": 4.0, "t0_s": 4.0}, t_end=80.0, n=250, sigma=2.5, seed=6)
    res = fit_kinetics(t, x)
    j = res.to_json()
    v = res.best.params.get("v_nm_per_s")
    print(f"\nlinear: model {j['model']}, v = {v} nm/s (truth 4), t0 = {j['t0_s']:.2f}")
    assert j["model"] == "linear" and j["n"] == 1.0
    assert _rel(v, 4.0) < 0.02


def test_profile_ci_coverage():
    """>= 100 synthetic datasets: the 95% profile intervals of D and t0 cover the truth ~95%."""
    rng = np.random.default_rng(123)
    n_sets = 100
    hits = {"D_nm2_per_s": 0, "t0_s": 0}
    for i in range(n_sets):
        n = int(rng.integers(60, 301))
        sigma = rng.uniform(2.0, 3.0)
        t0 = rng.uniform(2.0, 6.0)
        # half the sets start before t0 (flat x = 0 part), half after it
        t = np.linspace(0.0 if i % 2 else 8.0, 60.0, n)
        x = model_curve("parabolic", t, {"D_nm2_per_s": 1500.0, "t0_s": t0})
        x = x + rng.normal(0.0, sigma, n)
        fit = fit_kinetics(t, x, models=("parabolic",)).best
        for p, truth in (("D_nm2_per_s", 1500.0), ("t0_s", t0)):
            lo, hi = fit.ci95[p]
            hits[p] += lo is not None and hi is not None and lo <= truth <= hi
    cov = {p: h / n_sets for p, h in hits.items()}
    print(f"\nprofile 95% CI coverage over {n_sets} datasets: {cov}")
    for p in cov:
        assert 0.88 <= cov[p] <= 0.99


def test_profile_ci_coverage_mixed():
    """Deal-Grove fits: 95% profile intervals of D, k and t0 cover the truth (40 datasets)."""
    rng = np.random.default_rng(7)
    n_sets = 40
    truth = {"D_nm2_per_s": 800.0, "k_nm_per_s": 15.0, "t0_s": 3.0}
    hits = dict.fromkeys(truth, 0)
    for _ in range(n_sets):
        n = int(rng.integers(100, 301))
        t = np.linspace(0.0, 100.0, n)
        x = model_curve("mixed", t, truth) + rng.normal(0.0, rng.uniform(2.0, 6.0), n)
        fit = fit_kinetics(t, x, models=("mixed",)).best
        for p, v in truth.items():
            lo, hi = fit.ci95[p]
            hits[p] += lo is not None and hi is not None and lo <= v <= hi
    cov = {p: h / n_sets for p, h in hits.items()}
    print(f"\nmixed-model profile 95% CI coverage over {n_sets} datasets: {cov}")
    for p in cov:
        assert 0.85 <= cov[p] <= 1.0


def test_tie_between_power_and_mixed_goes_to_mixed():
    # noisy Deal-Grove data on which the power law has a slightly lower AICc (a tie, < 2)
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 100.0, 300)
    x = model_curve("mixed", t, {"D_nm2_per_s": 800.0, "k_nm_per_s": 15.0, "t0_s": 3.0})
    j = fit_kinetics(t, x + rng.normal(0.0, 10.0, t.size)).to_json()
    c = j["comparison"]
    print(f"\ntie: AICc(power) - AICc(mixed) = {c['power']['aicc'] - c['mixed']['aicc']:.2f}")
    assert -2.0 <= c["power"]["aicc"] - c["mixed"]["aicc"] < 0.0
    assert j["model"] == "mixed" and j["k_nm_per_s"] is not None


def test_bootstrap_ci_agrees_with_profile():
    t, x = _front("parabolic", {"D_nm2_per_s": 1500.0, "t0_s": 3.0}, n=120, seed=9)
    prof = fit_kinetics(t, x, models=("parabolic",)).best.ci95["D_nm2_per_s"]
    boot = fit_kinetics(t, x, models=("parabolic",), ci_method="bootstrap", n_bootstrap=200,
                        seed=1)
    bci = boot.best.ci95["D_nm2_per_s"]
    print(f"\nD 95% CI: profile {prof}, bootstrap {bci}")
    assert bci[0] < boot.best.params["D_nm2_per_s"] < bci[1]
    w_p, w_b = prof[1] - prof[0], bci[1] - bci[0]
    assert 0.6 < w_b / w_p < 1.6
    assert boot.to_json()["ci_method"] == "block-bootstrap"
    assert fit_kinetics(t, x, models=("parabolic",)).to_json()["ci_method"] == "profile-correlated"


def test_prefactor_convention():
    t, x = _front("parabolic", {"D_nm2_per_s": 1500.0, "t0_s": 3.0}, seed=3)
    d2 = fit_kinetics(t, x, models=("parabolic",)).to_json()
    d4 = fit_kinetics(t, x, models=("parabolic",), prefactor=4.0).to_json()
    assert d4["prefactor"] == 4.0
    assert d4["D_nm2_per_s"] == pytest.approx(d2["D_nm2_per_s"] / 2, rel=1e-4)
    assert d4["t0_s"] == pytest.approx(d2["t0_s"], abs=1e-4)


def test_outliers_rejected():
    t, x = _front("parabolic", {"D_nm2_per_s": 1500.0, "t0_s": 3.0}, n=250, seed=4)
    rng = np.random.default_rng(44)
    idx = rng.choice(t.size, 8, replace=False)
    x[idx] += rng.choice([-1.0, 1.0], 8) * rng.uniform(40.0, 80.0, 8)
    res = fit_kinetics(t, x)
    j = res.to_json()
    print(f"\noutliers: {j['n_outliers']} rejected of 8 planted, D = {j['D_nm2_per_s']:.1f}")
    assert j["n_outliers"] == 8
    assert sorted(j["outlier_time_s"]) == pytest.approx(sorted(t[idx]))
    assert not res.best.inlier[idx].any()
    assert _rel(j["D_nm2_per_s"], 1500.0) < 0.02 and j["model"] == "parabolic"
    # clean data: nothing rejected
    t, x = _front("parabolic", {"D_nm2_per_s": 1500.0, "t0_s": 3.0}, n=250, seed=4)
    assert fit_kinetics(t, x, models=("parabolic",)).n_outliers == 0


def test_weighted_fit_and_nans_dropped():
    rng = np.random.default_rng(8)
    t = np.linspace(0.0, 60.0, 200)
    sig = np.where(t < 30, 1.0, 6.0)
    x = model_curve("parabolic", t, {"D_nm2_per_s": 1500.0, "t0_s": 3.0}) + rng.normal(0, sig)
    res = fit_kinetics(t, x, position_err_nm=sig, models=("parabolic", "linear"))
    assert res.best.name == "parabolic"
    assert _rel(res.best.params["D_nm2_per_s"], 1500.0) < 0.03
    assert res.best.sigma_nm == pytest.approx(1.0, rel=0.2)  # standardised residual scale
    # NaN rows (time, position or error) are dropped, unsorted input is fine
    t2, x2, s2 = t.copy(), x.copy(), sig.copy()
    t2[5], x2[17], s2[40] = np.nan, np.nan, np.nan
    perm = rng.permutation(t.size)
    r2 = fit_kinetics(t2[perm], x2[perm], position_err_nm=s2[perm], models=("parabolic",))
    keep = np.ones(t.size, bool)
    keep[[5, 17, 40]] = False
    r3 = fit_kinetics(t[keep], x[keep], position_err_nm=sig[keep], models=("parabolic",))
    assert r2.best.n_points == 197
    assert r2.best.params["D_nm2_per_s"] == pytest.approx(r3.best.params["D_nm2_per_s"], rel=1e-6)


def test_absolute_time_stamps():
    t, x = _front("parabolic", {"D_nm2_per_s": 1500.0, "t0_s": 3.0}, n=120, seed=12)
    rel = fit_kinetics(t, x).to_json()
    t_epoch = 1.7e9  # e.g. Unix time stamps from the acquisition metadata
    ab = fit_kinetics(t + t_epoch, x).to_json()
    assert ab["model"] == rel["model"] == "parabolic"
    assert ab["D_nm2_per_s"] == pytest.approx(rel["D_nm2_per_s"], rel=1e-5)
    assert ab["t0_s"] - t_epoch == pytest.approx(rel["t0_s"], abs=1e-3)
    assert ab["ci95"]["t0_s"][0] - t_epoch == pytest.approx(rel["ci95"]["t0_s"][0], abs=1e-3)


def test_noise_without_front_motion_is_not_fitted():
    rng = np.random.default_rng(1)
    with pytest.raises(AnalysisError, match="no significant front motion"):
        fit_kinetics(np.arange(80.0), rng.normal(100.0, 3.0, 80))


def test_degenerate_inputs():
    t = np.arange(10.0)
    with pytest.raises(AnalysisError, match="finite front positions"):
        fit_kinetics(t[:4], np.sqrt(t[:4]) * 10)
    with pytest.raises(AnalysisError, match="finite front positions"):
        fit_kinetics(t, np.where(t < 7, np.nan, t))
    with pytest.raises(AnalysisError, match="no front motion"):
        fit_kinetics(t, np.full(10, 12.5))
    with pytest.raises(ParameterError, match="equal lengths"):
        fit_kinetics(t, t[:5])
    with pytest.raises(ParameterError, match="models"):
        fit_kinetics(t, t, models=("cubic",))
    with pytest.raises(ParameterError, match="prefactor"):
        fit_kinetics(t, t, prefactor=0)
    with pytest.raises(ParameterError, match="ci_method"):
        fit_kinetics(t, t, ci_method="wald")
    with pytest.raises(ParameterError, match="n_bootstrap"):
        fit_kinetics(t, t, ci_method="bootstrap", n_bootstrap=10)
    with pytest.raises(ParameterError, match="position_err_nm"):
        fit_kinetics(t, t, position_err_nm=-1.0)
    # 5 points: the 3-parameter models cannot be compared by AICc -> reported as not fittable
    t5 = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    x5 = np.sqrt(2 * 100 * (t5 - 1.0)) + np.array([0.3, -0.2, 0.1, -0.4, 0.2])
    j = fit_kinetics(t5, x5).to_json()
    assert j["comparison"]["mixed"]["fittable"] is False
    assert j["comparison"]["power"]["fittable"] is False
    assert "needed" in j["comparison"]["mixed"]["reason"]
    assert j["model"] in ("parabolic", "linear")
    json.dumps(j, allow_nan=False)


def test_mixed_curve_is_positive_root_and_limits():
    t = np.linspace(0.0, 50.0, 101)
    P, D, k, t0 = 2.0, 800.0, 15.0, 5.0
    x = model_curve("mixed", t, {"D_nm2_per_s": D, "k_nm_per_s": k, "t0_s": t0}, prefactor=P)
    tau = np.maximum(t - t0, 0)
    assert np.all(x >= 0) and np.all(x[t <= t0] == 0)
    assert np.allclose(x**2 / (P * D) + x / k, tau, rtol=1e-10, atol=1e-12)
    # k -> infinity: parabolic; D -> infinity: linear
    xp = model_curve("mixed", t, {"D_nm2_per_s": D, "k_nm_per_s": 1e12, "t0_s": t0})
    assert np.allclose(xp, np.sqrt(2 * D * tau), rtol=1e-6)
    xl = model_curve("mixed", t, {"D_nm2_per_s": 1e14, "k_nm_per_s": k, "t0_s": t0})
    assert np.allclose(xl, k * tau, rtol=1e-5)
