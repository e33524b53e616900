"""Coverage of the kinetics intervals with correlated front-position errors, and the free origin.

Front positions from a movie have errors correlated from frame to frame (drift wander, specimen
texture the front crosses). :func:`coverage_study` fits synthetic fronts with AR(1) errors of known
kinetics and counts how often the 95% intervals cover the truth, for the default intervals
(``profile-correlated``) and the classical ones (``profile-independent``). The tests run small
studies (seconds); the larger study quoted in the module docstring of
:mod:`temtrack.series.kinetics` is::

    python tests/series/test_kinetics_coverage.py 100
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest

from temtrack.errors import ParameterError
from temtrack.series.kinetics import fit_kinetics, model_curve

TRUTH = {
    "parabolic": {"D_nm2_per_s": 1500.0},
    "mixed": {"D_nm2_per_s": 800.0, "k_nm_per_s": 15.0},
    "power": {"A_nm_per_s_n": 60.0, "n": 0.35},
}


def ar1_noise(rng, n, rho):
    """Stationary AR(1) series of unit variance."""
    e = np.empty(n)
    e[0] = rng.normal()
    s = math.sqrt(1.0 - rho * rho)
    for k in range(1, n):
        e[k] = rho * e[k - 1] + s * rng.normal()
    return e


def coverage_study(model="parabolic", n_sets=40, *, seed=0, rho=(0.3, 0.9), white_fraction=0.0,
                   n_points=(60, 301), origin="contact", ci_methods=("profile", "profile-independent")):
    """Fraction of 95% intervals covering the truth, per (ci_method, parameter).

    Each set: ``n_points`` frames over 60 s (100 s for mixed), half starting before t0 and half
    after it, t0 in [2, 6] s, noise SD 1-3 nm made of AR(1) (coefficient drawn from ``rho`` per
    frame) and white noise (``white_fraction`` of the variance). With ``origin='free'`` the
    positions are shifted by x0 in [-12, 0] nm (a contact placed past the front's origin) and
    only positive ones kept, as a tracker would report them.
    """
    rng = np.random.default_rng(seed)
    hits: dict = {}
    inflation = []
    for i in range(n_sets):
        n = int(rng.integers(*n_points))
        r = rng.uniform(*rho)
        params = dict(TRUTH[model], t0_s=rng.uniform(2.0, 6.0))
        t = np.linspace(0.0 if i % 2 else 8.0, 100.0 if model == "mixed" else 60.0, n)
        x = model_curve(model, t, params)
        truth = dict(params)
        if origin == "free":
            truth["x0_nm"] = rng.uniform(-12.0, 0.0)
            x = x + truth["x0_nm"]
            keep = x > 0
            t, x = t[keep], x[keep]
        e = (math.sqrt(1.0 - white_fraction) * ar1_noise(rng, t.size, r)
             + math.sqrt(white_fraction) * rng.normal(size=t.size))
        x = x + rng.uniform(1.0, 3.0) * e
        for method in ci_methods:
            fit = fit_kinetics(t, x, models=(model,), ci_method=method, origin=origin).fits[model]
            for name, v in truth.items():
                lo, hi = fit.ci95[name]
                key = (method, name)
                hits[key] = hits.get(key, 0) + (lo is not None and hi is not None and lo <= v <= hi)
            if method == "profile":
                inflation.append(max(fit.ci_inflation.values()))
    cov = {k: h / n_sets for k, h in hits.items()}
    return cov, float(np.median(inflation)) if inflation else float("nan")


def _show(label, cov, inflation):
    txt = ", ".join(f"{m}:{p} {c:.2f}" for (m, p), c in sorted(cov.items()))
    print(f"\n{label}: {txt}; median variance inflation {inflation:.1f}")


def test_coverage_with_ar1_errors():
    # The issue-3 complaint in miniature: the classical intervals assume independent errors and
    # miss the truth far more often than 5% when the errors are AR(1). 30 sets estimate a coverage
    # to about +-5%; the 100-set studies (module docstring) give 0.92-0.97 for this regime, so
    # 0.8 is the bound a correct method passes with > 99% probability.
    cov, infl = coverage_study("parabolic", 30, seed=11, rho=(0.5, 0.9), n_points=(60, 151))
    _show("parabolic, AR(1) rho 0.5-0.9, 30 sets", cov, infl)
    for p in ("D_nm2_per_s", "t0_s"):
        assert cov[("profile", p)] >= 0.80
        assert cov[("profile-independent", p)] <= cov[("profile", p)] - 0.15
    assert infl > 2.0


def test_coverage_free_origin_with_ar1_errors():
    cov, infl = coverage_study("parabolic", 12, seed=13, origin="free", n_points=(60, 151),
                               ci_methods=("profile",))
    _show("parabolic with a free origin, AR(1) rho 0.3-0.9, 12 sets", cov, infl)
    for p in ("D_nm2_per_s", "x0_nm", "t0_s"):
        assert cov[("profile", p)] >= 0.75


def _offset_front(n=60, t_start=6.0, t_end=66.0, x0=-9.0, seed=0, sigma=0.5):
    """Parabolic front (D 100, t0 5) measured from a point 9 nm past its origin."""
    rng = np.random.default_rng(seed)
    t = np.linspace(t_start, t_end, n)
    x = x0 + np.sqrt(2 * 100.0 * (t - 5.0)) + rng.normal(0.0, sigma, n)
    return t, x


def test_free_origin_recovers_an_offset_contact():
    t, x = _offset_front()
    fixed = fit_kinetics(t, x, position_err_nm=0.5).to_json()
    res = fit_kinetics(t, x, position_err_nm=0.5, origin="free")
    free = res.to_json()
    print(f"\norigin 9 nm behind the contact: fixed origin: parabolic D = "
          f"{fixed['D_parabolic_nm2_per_s']:.1f} (truth 100), best {fixed['model']} with k = "
          f"{fixed['k_nm_per_s']}; free origin {free['model']} D = {free['D_nm2_per_s']:.2f} "
          f"{free['ci95']['D_nm2_per_s']}, x0 = {free['x0_nm']:.2f} {free['ci95']['x0_nm']}, "
          f"t0 = {free['t0_s']:.2f} {free['ci95']['t0_s']}")
    # with the origin fixed at the contact, the offset biases the parabolic D and passes for an
    # interface-limited (Deal-Grove) term k = P*D/(2|x0|) = 11 nm/s: the two are the same curve
    assert fixed["D_parabolic_nm2_per_s"] < 90.0
    assert fixed["model"] == "mixed" and fixed["k_nm_per_s"] == pytest.approx(2 * 100.0 / 18.0, rel=0.25)
    assert free["model"] == "parabolic" and free["origin"] == "free"
    assert abs(free["D_nm2_per_s"] / 100.0 - 1) < 0.05
    for key, v in (("D_nm2_per_s", 100.0), ("x0_nm", -9.0), ("t0_s", 5.0)):
        lo, hi = free["ci95"][key]
        assert lo <= v <= hi, key
    assert free["convention"] == "(x - x0)^2 = P*D*(t - t0)"
    assert fixed["x0_nm"] == 0.0 and fixed["ci95"]["x0_nm"] is None and fixed["origin"] == "contact"
    # Deal-Grove with an unknown origin is the parabolic law: not fitted, and says why
    assert free["comparison"]["mixed"]["fittable"] is False
    assert "not identifiable" in free["comparison"]["mixed"]["reason"]
    assert any("behind the contact" in w for w in res.fits["parabolic"].warnings)
    # the fitted curve carries x0
    best = res.best
    assert np.allclose(best.predict(t), x - best.residuals)
    assert best.predict(np.array([0.0]))[0] == pytest.approx(free["x0_nm"])
    # the linear law absorbs an offset in t0 and keeps no x0 of its own
    assert "x0_nm" not in res.fits["linear"].params


def test_free_origin_identifiability_on_short_series():
    # Starting close to the origin, 12 frames pin D, x0 and t0 down; a short window far from the
    # origin (the front speed barely changes) does not: the interval of D says so.
    t, x = _offset_front(n=12, t_start=6.0, t_end=18.0, seed=1)
    near = fit_kinetics(t, x, position_err_nm=0.5, origin="free", models=("parabolic",)).best
    t, x = _offset_front(n=15, t_start=30.0, t_end=40.0, seed=2)
    far = fit_kinetics(t, x, position_err_nm=0.5, origin="free", models=("parabolic",)).best
    far_fixed = fit_kinetics(t - 0.0, x + 9.0, position_err_nm=0.5, models=("parabolic",)).best

    def rel_width(f):
        lo, hi = f.ci95["D_nm2_per_s"]
        return math.inf if lo is None or hi is None else (hi - lo) / f.params["D_nm2_per_s"]

    print(f"\nfree origin, 12 frames near the origin: D = {near.params['D_nm2_per_s']:.1f} "
          f"{near.ci95['D_nm2_per_s']}, x0 {near.params['x0_nm']:.1f} {near.ci95['x0_nm']}; "
          f"15 frames 25-35 s after t0: D = {far.params['D_nm2_per_s']:.1f} {far.ci95['D_nm2_per_s']} "
          f"(relative width {rel_width(far):.2f}; with the true origin {rel_width(far_fixed):.2f})")
    lo, hi = near.ci95["D_nm2_per_s"]
    assert lo <= 100.0 <= hi and rel_width(near) < 0.4
    assert rel_width(far) > 0.5 and rel_width(far) > 5 * rel_width(far_fixed)


def test_common_offset_is_propagated_to_fixed_origin_intervals():
    t, x = _offset_front(x0=0.0, seed=3)
    with_err = fit_kinetics(t, x, position_err_nm=0.5, models=("parabolic",))
    no_offset = fit_kinetics(t, x, position_err_nm=0.5, models=("parabolic",), offset_sd_nm=0.0)
    big = fit_kinetics(t, x, position_err_nm=0.5, models=("parabolic",), offset_sd_nm=2.0)
    free = fit_kinetics(t, x, position_err_nm=0.5, models=("parabolic",), origin="free")
    free_big = fit_kinetics(t, x, position_err_nm=0.5, models=("parabolic",), origin="free",
                            offset_sd_nm=2.0)

    def width(r):
        lo, hi = r.best.ci95["D_nm2_per_s"]
        return hi - lo

    print(f"\nD interval widths: offset sd 0 -> {width(no_offset):.2f}, default (median error 0.5 nm) "
          f"-> {width(with_err):.2f}, 2 nm -> {width(big):.2f}; free origin {width(free):.2f}")
    assert with_err.offset_sd_nm == 0.5 and with_err.to_json()["ci_details"]["offset_sd_nm"] == 0.5
    assert width(no_offset) < width(with_err) < width(big)
    assert width(free_big) == pytest.approx(width(free), rel=1e-6)   # x0 absorbs an offset
    assert fit_kinetics(t, x, models=("parabolic",)).offset_sd_nm == 0.0  # no errors given
    with pytest.raises(ParameterError, match="origin"):
        fit_kinetics(t, x, origin="visible")
    with pytest.raises(ParameterError, match="offset_sd_nm"):
        fit_kinetics(t, x, offset_sd_nm=-1.0)


def test_model_choice_discounts_correlated_errors():
    # parabolic kinetics with strongly correlated errors: the plain AICc takes the power law's
    # extra parameter for real, QAICc (log-likelihood / c_hat) does not
    rng = np.random.default_rng(21)
    t = np.linspace(8.0, 60.0, 250)
    x = model_curve("parabolic", t, {"D_nm2_per_s": 1500.0, "t0_s": 4.0}) + 2.0 * ar1_noise(rng, t.size, 0.95)
    j = fit_kinetics(t, x).to_json()
    c = j["comparison"]
    plain_best = min((m for m in c if c[m]["fittable"]), key=lambda m: c[m]["aicc"])
    print(f"\ncorrelated errors: c_hat {j['c_hat']:.1f}, plain AICc best {plain_best} "
          f"(parabolic +{c['parabolic']['delta_aicc']:.1f}), QAICc best {j['model']}, "
          f"D = {j['D_nm2_per_s']:.0f} {j['ci95']['D_nm2_per_s']}")
    assert j["c_hat"] > 3.0
    assert c[plain_best]["n_params"] == 3 and c["parabolic"]["delta_aicc"] > 2.0
    assert j["model"] == "parabolic"


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for label, kw in (
        ("parabolic, independent errors", dict(model="parabolic", rho=(0.0, 0.0))),
        ("parabolic, AR(1) rho 0.3-0.9", dict(model="parabolic")),
        ("parabolic, half white + half AR(1)", dict(model="parabolic", white_fraction=0.5)),
        ("parabolic, free origin, AR(1)", dict(model="parabolic", origin="free")),
        ("mixed (Deal-Grove), AR(1)", dict(model="mixed")),
        ("power law, AR(1)", dict(model="power")),
    ):
        start = time.perf_counter()
        cov, infl = coverage_study(n_sets=n, seed=100, **kw)
        _show(f"{label}, {n} sets ({time.perf_counter() - start:.0f} s)", cov, infl)
