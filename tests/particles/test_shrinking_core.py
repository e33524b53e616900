"""Shrinking-core fits recover the generating model and its time constant."""
from __future__ import annotations

import numpy as np
import pytest

from temtrack.errors import AnalysisError, ParameterError
from temtrack.series.shrinking_core import MODELS, core_radius_model, fit_shrinking_core


@pytest.mark.parametrize("model", ["sphere_reaction", "sphere_diffusion", "cylinder_diffusion"])
def test_recovers_model_and_tau(model):
    rng = np.random.default_rng(1)
    t = np.arange(0, 60.0, 1.0)
    truth = dict(r0_nm=15.0, t0_s=10.4, tau_s=30.0)
    rc = core_radius_model(t, model=model, **truth) + rng.normal(0, 0.3, t.size)
    geometry = MODELS[model][0]
    res = fit_shrinking_core(t, rc, geometry=geometry)
    fit = res.fits[model]
    lo, hi = fit.ci95["tau_s"]
    print(f"{model}: best {res.best.model}, tau {fit.params['tau_s']:.2f} s [{lo:.2f}, {hi:.2f}] (true 30), "
          f"t0 {fit.params['t0_s']:.2f} (true 10.4), dAICc of the other: "
          f"{ {k: round(v.delta_aicc, 1) for k, v in res.fits.items()} }")
    assert res.best.model == model
    assert abs(fit.params["tau_s"] - 30.0) < 1.5
    assert lo <= 30.0 <= hi
    assert abs(fit.params["t0_s"] - 10.4) < 1.5


def test_reaction_laws_coincide_and_json():
    t = np.linspace(0, 10, 11)
    a = core_radius_model(t, model="sphere_reaction", r0_nm=5, t0_s=1, tau_s=5)
    b = core_radius_model(t, model="cylinder_reaction", r0_nm=5, t0_s=1, tau_s=5)
    np.testing.assert_allclose(a, b)
    assert a[0] == 5 and a[-1] == 0
    res = fit_shrinking_core(t, a + 0.01 * np.sin(t), geometry=("sphere", "cylinder"), r0_nm=5.0)
    js = res.to_json()
    assert set(js["models"]) == set(MODELS)
    assert js["best"]["params"]["r0_nm"] == 5.0


def test_diffusion_law_endpoints():
    # X = 1 - (Rc/R0)^3 satisfies the implicit law at a few points.
    t = np.array([2.0, 5.0, 8.0])
    rc = core_radius_model(t, model="sphere_diffusion", r0_nm=10, t0_s=0, tau_s=10)
    X = 1 - (rc / 10) ** 3
    np.testing.assert_allclose(1 - 3 * (1 - X) ** (2 / 3) + 2 * (1 - X), t / 10, atol=1e-3)
    rc = core_radius_model(t, model="cylinder_diffusion", r0_nm=10, t0_s=0, tau_s=10)
    X = 1 - (rc / 10) ** 2
    np.testing.assert_allclose(X + (1 - X) * np.log(1 - X), t / 10, atol=1e-3)


def test_errors():
    with pytest.raises(AnalysisError):
        fit_shrinking_core([0, 1, 2], [3, 2, 1])
    with pytest.raises(ParameterError):
        fit_shrinking_core([0, 1, 2, 3, 4], [3, 2, 1, 0, 0], geometry="cube")
    with pytest.raises(ParameterError):
        core_radius_model([0.0], model="slab", r0_nm=1, t0_s=0, tau_s=1)
