r"""Shrinking-core models fitted to the radius of an unreacted core against time.

In the shrinking-core picture a particle (sphere) or a wire (cylinder) reacts from its surface
inward; the unreacted core of radius :math:`R_c(t)` shrinks from :math:`R_0` at the onset
:math:`t_0` to zero at :math:`t_0 + \tau`. With the converted fraction
:math:`X = 1 - (R_c/R_0)^3` (sphere) or :math:`1 - (R_c/R_0)^2` (cylinder) the classical laws are

* reaction (interface) limited, sphere and cylinder alike:
  :math:`R_c = R_0 (1 - (t - t_0)/\tau)`;
* diffusion limited (through the reacted shell), sphere:
  :math:`(t - t_0)/\tau = 1 - 3(1 - X)^{2/3} + 2(1 - X)`;
* diffusion limited, cylinder: :math:`(t - t_0)/\tau = X + (1 - X)\ln(1 - X)`.

Before :math:`t_0` the core is the whole object (:math:`R_c = R_0`), after :math:`t_0 + \tau` it is
gone. The two reaction-limited laws are identical in :math:`R_c(t)` (they differ only in how
:math:`X` follows from it), so a core-radius series cannot tell a reaction-limited sphere from a
reaction-limited cylinder; the geometry must come from the object.

Each model is fitted by least squares in :math:`R_c` (``scipy.optimize.least_squares``), the
diffusion laws by inverting :math:`g(X)` on a fine grid (monotonic, so interpolation is exact to the
grid step); 95% intervals are :math:`\pm t_{0.975,\nu}\,\sigma` from the covariance scaled by the
residual variance; models are compared by AICc with Akaike weights. Written here because the
shrinking-core laws are not in any fitting library and the implicit diffusion laws need the inversion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from temtrack.errors import AnalysisError, ParameterError

__all__ = ["MODELS", "core_radius_model", "fit_shrinking_core", "ShrinkingCoreFit", "ShrinkingCoreResult"]

#: model name -> (geometry, regime)
MODELS = {
    "sphere_reaction": ("sphere", "reaction"),
    "sphere_diffusion": ("sphere", "diffusion"),
    "cylinder_reaction": ("cylinder", "reaction"),
    "cylinder_diffusion": ("cylinder", "diffusion"),
}

_X = np.linspace(0.0, 1.0, 20001)
_G = {
    "sphere": 1 - 3 * (1 - _X) ** (2 / 3) + 2 * (1 - _X),
    "cylinder": _X + np.where(_X < 1, (1 - _X) * np.log(np.clip(1 - _X, 1e-300, None)), 0.0),
}
_EXP = {"sphere": 3.0, "cylinder": 2.0}


def core_radius_model(time_s, *, model: str, r0_nm: float, t0_s: float, tau_s: float) -> np.ndarray:
    """Core radius (nm) at ``time_s`` for one of :data:`MODELS`.

    Parameters
    ----------
    time_s : array_like
    model : str
        ``'sphere_reaction'``, ``'sphere_diffusion'``, ``'cylinder_reaction'`` or ``'cylinder_diffusion'``.
    r0_nm, t0_s, tau_s : float
        Initial radius, onset and time to full conversion (> 0).
    """
    if model not in MODELS:
        raise ParameterError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    geometry, regime = MODELS[model]
    t = np.asarray(time_s, dtype=float)
    u = np.clip((t - t0_s) / max(float(tau_s), 1e-12), 0.0, 1.0)
    if regime == "reaction":
        return r0_nm * (1 - u)
    x = np.interp(u, _G[geometry], _X)
    return r0_nm * (1 - x) ** (1 / _EXP[geometry])


@dataclass
class ShrinkingCoreFit:
    """One fitted model: parameters, 1-sigma errors, 95% intervals and information criteria."""

    model: str
    geometry: str
    regime: str
    params: dict
    sigma: dict
    ci95: dict
    rss: float
    n_points: int
    n_params: int
    aic: float
    aicc: float
    delta_aicc: float = 0.0
    akaike_weight: float = 0.0

    def predict(self, time_s) -> np.ndarray:
        return core_radius_model(time_s, model=self.model, **self.params)

    def to_json(self) -> dict:
        return {"model": self.model, "geometry": self.geometry, "regime": self.regime,
                "params": dict(self.params), "sigma": dict(self.sigma), "ci95": dict(self.ci95),
                "rss_nm2": self.rss, "n_points": self.n_points, "n_params": self.n_params, "aic": self.aic,
                "aicc": self.aicc, "delta_aicc": self.delta_aicc, "akaike_weight": self.akaike_weight}


@dataclass
class ShrinkingCoreResult:
    """All fitted models; ``best`` has the lowest AICc."""

    fits: dict
    best: ShrinkingCoreFit
    not_fitted: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"best_model": self.best.model, "best": self.best.to_json(),
                "models": {k: f.to_json() for k, f in self.fits.items()},
                "not_fitted": dict(self.not_fitted),
                "note": ("reaction-limited sphere and cylinder give the same Rc(t); AICc cannot separate "
                         "them, the geometry comes from the object"),
                "definition": "Rc(t) fitted by least squares; ci95 = +-t(0.975, dof) sigma"}


def _fit_one(model, t, rc, w, r0_fixed, t0_guess, tau_guess):
    geometry, regime = MODELS[model]
    free_r0 = r0_fixed is None
    span = float(t.max() - t.min()) or 1.0

    def unpack(p):
        if free_r0:
            return p[0], p[1], p[2]
        return r0_fixed, p[0], p[1]

    def resid(p):
        r0, t0, tau = unpack(p)
        return (core_radius_model(t, model=model, r0_nm=r0, t0_s=t0, tau_s=tau) - rc) * w

    rmax = float(np.nanmax(rc))
    best = None
    # A few starts in tau: the residual surface is flat where the model saturates.
    for f in (1.0, 0.5, 2.0):
        p0 = [t0_guess, max(tau_guess * f, 1e-3 * span)]
        lo = [t.min() - 2 * span, 1e-6 * span]
        hi = [t.max() + span, 100 * span]
        if free_r0:
            p0, lo, hi = [max(rmax, 1e-6)] + p0, [1e-9] + lo, [10 * max(rmax, 1e-6)] + hi
        sol = optimize.least_squares(resid, p0, bounds=(lo, hi), x_scale="jac", diff_step=1e-6, max_nfev=2000)
        if best is None or sol.cost < best.cost:
            best = sol
    r0, t0, tau = unpack(best.x)
    n, k = t.size, best.x.size
    rss = float(np.sum(((core_radius_model(t, model=model, r0_nm=r0, t0_s=t0, tau_s=tau) - rc)) ** 2))
    dof = max(1, n - k)
    names = (["r0_nm"] if free_r0 else []) + ["t0_s", "tau_s"]
    try:
        cov = np.linalg.pinv(best.jac.T @ best.jac) * (2 * best.cost / dof)
        sig = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        sig = np.full(k, np.nan)
    tq = float(stats.t.ppf(0.975, dof))
    params = {"r0_nm": float(r0), "t0_s": float(t0), "tau_s": float(tau)}
    sigma = {nm: float(s) for nm, s in zip(names, sig)}
    ci = {nm: [params[nm] - tq * s, params[nm] + tq * s] for nm, s in sigma.items()}
    if not free_r0:
        sigma["r0_nm"], ci["r0_nm"] = 0.0, None
    # Gaussian log-likelihood with the variance estimated: AIC = n ln(RSS/n) + 2(k + 1).
    kk = k + 1
    aic = n * math.log(max(rss, 1e-300) / n) + 2 * kk
    aicc = aic + (2 * kk * (kk + 1) / (n - kk - 1) if n - kk - 1 > 0 else math.inf)
    return ShrinkingCoreFit(model, geometry, MODELS[model][1], params, sigma, ci, rss, n, k, aic, aicc)


def fit_shrinking_core(time_s, core_radius_nm, *, geometry: str | tuple = "sphere", r0_nm: float | None = None,
                       core_radius_err_nm=None, models: tuple | None = None) -> ShrinkingCoreResult:
    """Fit shrinking-core laws to a core radius series and compare them by AICc.

    Parameters
    ----------
    time_s, core_radius_nm : array_like, shape (N,)
        Times (s) and core radii (nm); NaN points are dropped. Points before the onset (core =
        whole object) and after full conversion (radius 0) may be included.
    geometry : {'sphere', 'cylinder'} or tuple of them
        Geometries whose models are fitted (default: the sphere laws).
    r0_nm : float, optional
        Fix the initial core radius (e.g. the pristine particle radius); fitted when None.
    core_radius_err_nm : array_like, optional
        1-sigma errors of the radii (weights); equal weights when None.
    models : tuple of str, optional
        Explicit model names from :data:`MODELS` (overrides ``geometry``).

    Returns
    -------
    ShrinkingCoreResult

    Raises
    ------
    ParameterError
        Bad arguments.
    AnalysisError
        Fewer than 5 finite points, or no model could be fitted.
    """
    try:
        t = np.asarray(time_s, dtype=float).ravel()
        rc = np.asarray(core_radius_nm, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ParameterError("time_s/core_radius_nm: expected numeric arrays") from None
    if t.shape != rc.shape:
        raise ParameterError(f"time_s and core_radius_nm: expected equal lengths, got {t.size} and {rc.size}")
    geoms = (geometry,) if isinstance(geometry, str) else tuple(geometry)
    for g in geoms:
        if g not in _EXP:
            raise ParameterError(f"geometry must be 'sphere' or 'cylinder', got {g!r}")
    if models is None:
        models = tuple(m for m, (g, _) in MODELS.items() if g in geoms)
    for m in models:
        if m not in MODELS:
            raise ParameterError(f"unknown shrinking-core model {m!r}; expected some of {sorted(MODELS)}")
    if r0_nm is not None and not (np.isfinite(r0_nm) and r0_nm > 0):
        raise ParameterError(f"r0_nm must be a positive number, got {r0_nm!r}")
    if core_radius_err_nm is None:
        w = np.ones_like(rc)
    else:
        e = np.broadcast_to(np.asarray(core_radius_err_nm, dtype=float), rc.shape)
        w = np.where(np.isfinite(e) & (e > 0), 1.0 / np.where(e > 0, e, 1.0), 0.0)
    ok = np.isfinite(t) & np.isfinite(rc) & (w > 0)
    t, rc, w = t[ok], rc[ok], w[ok]
    if t.size < 5:
        raise AnalysisError(f"shrinking-core fit: {t.size} core radii measured, at least 5 needed")
    order = np.argsort(t)
    t, rc, w = t[order], rc[order], w[order]
    r_start = float(np.median(rc[: max(1, t.size // 10)])) if r0_nm is None else float(r0_nm)
    # Start t0 where the core first falls clearly below its start and tau from the mean slope.
    below = np.flatnonzero(rc < 0.9 * r_start)
    t0_guess = float(t[max(0, below[0] - 1)]) if below.size else float(t[0])
    slope = np.polyfit(t, rc, 1)[0] if t.size >= 2 else -1.0
    tau_guess = float(r_start / -slope) if slope < 0 else float(t.max() - t.min())
    fits, failed = {}, {}
    for m in models:
        try:
            fits[m] = _fit_one(m, t, rc, w, r0_nm, t0_guess, tau_guess)
        except (ValueError, np.linalg.LinAlgError) as exc:
            failed[m] = str(exc)
    if not fits:
        raise AnalysisError(f"shrinking-core fit: no model could be fitted ({failed})")
    amin = min(f.aicc for f in fits.values())
    finite = [f for f in fits.values() if math.isfinite(f.aicc)]
    wsum = sum(math.exp(-0.5 * (f.aicc - amin)) for f in finite) if finite else 0.0
    for f in fits.values():
        f.delta_aicc = f.aicc - amin
        f.akaike_weight = (math.exp(-0.5 * f.delta_aicc) / wsum) if (wsum and math.isfinite(f.aicc)) else 0.0
    best = min(fits.values(), key=lambda f: (f.aicc, f.n_params))
    return ShrinkingCoreResult(fits, best, failed)
