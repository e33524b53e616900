r"""Reaction-front kinetics: fit front position x(t) with a free start time t0 and compare models.

Models (x in nm from the contact, t in s, :math:`\tau = t - t_0`, x = 0 for :math:`\tau \le 0`)
------------------------------------------------------------------------------------------------
``parabolic``  :math:`x^2 = P D \tau` (diffusion-limited), parameters D (nm^2/s), t0
``power``      :math:`x = A \tau^n`, parameters A (nm/s^n), n, t0
``linear``     :math:`x = v \tau` (interface-controlled), parameters v (nm/s), t0
``mixed``      Deal-Grove :math:`\tau = x^2/(P D) + x/k`, parameters D, k (nm/s), t0; x(t) is the
               positive root, computed as :math:`x = 2\tau / (1/k + \sqrt{1/k^2 + 4\tau/(P D)})`
               (the cancellation-free form of the quadratic formula).

Origin of the positions (``origin``)
------------------------------------
``origin="contact"`` (default): x is measured from the point where the reaction starts, so the
models above hold with x = 0 at t0. ``origin="free"``: the point the positions are measured from
(the contact drawn or detected in the image) may differ from the effective origin of the front by
an unknown offset x0, fitted: parabolic :math:`(x - x_0)^2 = P D \tau`, i.e.
:math:`x = x_0 + \sqrt{P D \tau}`, power :math:`x = x_0 + A \tau^n` (x = x0 for
:math:`\tau \le 0`). Why: the Na source's projection covers the end of the wire, so the visible
contact (where the wire leaves the source's outline, what ``--auto`` finds and what a
microscopist clicks) lies up to a source-overlap away from where Na enters the wire; with the
origin fixed at the visible contact, a 9 nm offset biased D by -15% on the bundled sample. x0 < 0
means the front started behind the visible contact.

Identifiability (why some models keep x0 = 0): for the parabolic law the front speed obeys
:math:`1/v = 2 (x - x_0)/(P D)`, so D comes from the slope and x0 from the intercept of 1/v against
x; both are identified when the observed x range is not small against :math:`|x - x_0|`, and the
profile intervals widen (or lose a bound) on short series. t0 is then the time the front left x0.
The linear law has a constant speed: x0 and t0 are the same degree of freedom
(:math:`x_0 + v(t - t_0) = v(t - t_0 + x_0/v)`), so x0 stays 0 and t0 absorbs it. The mixed law with
a free origin is not identifiable at all: :math:`(x - x_0)^2 = P D (t - t_0)` expands to the
Deal-Grove law with :math:`1/k = -2 x_0/(P D)`, so an interface term and an origin offset give
the same curve; with ``origin="free"`` the mixed model is reported as not fittable (its k needs a
contact known independently). The converse also holds: with ``origin="contact"`` a misplaced
contact shows up as an apparent Deal-Grove k = P D / (2 |x0|).

Convention for D (the prefactor P)
----------------------------------
The default ``prefactor=2`` gives :math:`x^2 = 2 D (t - t_0)`: the mean-square displacement of 1D
diffusion, the convention of most in situ TEM sodiation/lithiation papers for a front moving along
a wire. D is then an apparent (effective) Na diffusion coefficient along the wire axis, assuming
the front advance is diffusion-limited in one dimension. Some authors use :math:`x^2 = 4 D t`
(2D random walk, or the :math:`x \approx 2\sqrt{Dt}` penetration depth of an erfc profile) or
:math:`x^2 = D t`. The same data give :math:`D_{P=4} = D_{P=2}/2`, so a D is meaningless without
its prefactor: it is recorded in every result (``prefactor`` and ``convention``).
1 nm^2/s = 1e-14 cm^2/s.

Fitting
-------
Fits are weighted least squares in the x(t) direction (the measured quantity carries the noise):
residual :math:`r_i = (x_i - f(t_i))/\sigma_i` with the per-point ``position_err_nm`` when given,
else :math:`\sigma_i = 1` (homoscedastic; the scale is estimated from the residuals). Positive
parameters (D, k, A, v) are fitted as logarithms (positivity, conditioning); t0, x0 and n directly.
Starting values come from a grid over t0 on which each model is linear in its amplitude (and x0)
(closed form) or linearisable (mixed: :math:`\tau = \alpha x^2 + \beta x` is linear in
:math:`\alpha, \beta`; power: a grid over n); ``scipy.optimize.least_squares`` with analytic
Jacobians refines the best starts. Least squares stays the estimator under correlated errors
(unbiased; generalised least squares would need the error correlation, which is estimated from
these very residuals and is too uncertain to reweight by).

Outliers: an explicit rejection step, not a robust loss in the final fit. Each model is first
fitted with a soft-L1 loss (scale = MAD of the residuals of the best grid start); the model with
the smallest robust residual scale defines the outliers, points whose residual exceeds
``OUTLIER_Z`` (= 4) robust standard deviations (at most 10% of the points, else none are
rejected). All models are then refitted by ordinary weighted least squares on the same inliers.
Why: the confidence intervals and the information criteria assume a Gaussian likelihood; with a
robust loss in the final fit neither would be the textbook one, and a common inlier set keeps the
models comparable. At 4 sigma a Gaussian point is rejected with probability 6e-5, so clean data
are left alone.

Confidence intervals (95%) with correlated errors
-------------------------------------------------
Front positions measured in a movie are not independent: the drift estimate wanders smoothly, the
front crosses specimen texture (bend contours, speckle) that biases its localisation for many
frames, and every position shares the error of the origin (the contact point, fixed in one frame)
and of the drift reference frame. Intervals that assume independent residuals were several times
too narrow on the issue-3 test movies (D +-0.05-0.1% against errors up to 0.25%). The default
``ci_method="profile"`` therefore reports *profile-likelihood intervals with thresholds scaled for
correlated errors* (``ci_method`` ``"profile-correlated"`` in the results):

1. Error model: residual covariance :math:`\sigma^2 [\eta I + (1-\eta) \Phi]`, white noise
   (fraction :math:`\eta`, per-frame shot noise) plus a continuous-time AR(1) component
   (:math:`\Phi_{ij} = e^{-|t_i - t_j|/\ell}`, the slowly varying part) - the nugget + exponential
   covariance of geostatistics; :math:`\eta = 1` is independent errors, :math:`\eta = 0` pure AR(1).
   :math:`\eta, \ell` are estimated by matching the residual autocorrelation at lags 1..L
   (L = min(30, N/4)) to its expectation :math:`\mathrm{tr}(A_k M)/\mathrm{tr}(M)`,
   :math:`M = (I-H)\,C\,(I-H)`, H the hat matrix of the linearised fit: the fit removes the slow
   part of the errors from the residuals, and matching the *expected residual* autocorrelation
   corrects that bias instead of ignoring it (plain residual autocorrelations under-estimate the
   correlation badly when it spans a sizeable part of the series).
2. Variance inflation per parameter, :math:`c_j = V^{sand}_{jj}/V^{iid}_{jj}` (at least 1), from the
   sandwich covariance :math:`(J^TJ)^{-1} J^T C J (J^TJ)^{-1}` of least squares under that error
   model (noise variance :math:`r^Tr/\mathrm{tr}(M)`), plus a common position offset of standard
   deviation ``offset_sd_nm`` propagated exactly (:math:`\delta^2 g_j^2`, g the parameters' shift
   per nm of offset). The offset defaults to the median of ``position_err_nm`` when per-frame
   errors are given: the origin (a contact point placed in one frame) and the drift reference
   frame are single measurements, each about as uncertain as one frame's front position, and
   their errors are shared by every frame, so no number of frames averages them away. It is 0
   without ``position_err_nm``, and has no effect with ``origin="free"`` (x0 absorbs an offset).
3. Profile likelihood as before, each parameter's threshold scaled by its :math:`c_j` (the
   adjustment of the likelihood-ratio statistic of Chandler & Bate, Biometrika 2007, for a
   misspecified independence likelihood): :math:`RSS_{min}(1 + c_j F_{0.95}(1, \nu)/(N-p))`, with
   :math:`\nu = \mathrm{tr}(M)^2/\mathrm{tr}(M^2)` the Satterthwaite degrees of freedom of the
   noise variance (fewer effective points when the errors are correlated). Profile intervals
   follow the asymmetric, strongly correlated D-t0 valley and are invariant to
   reparametrisation. A bound that the data do not constrain (e.g. k of a mixed fit to purely
   parabolic data, which tends to infinity) is reported as ``None`` (null in JSON).

The correlated model replaces independent errors only when it matches the residual
autocorrelation significantly better (the drop of N times the summed squared mismatch, about
chi-square with 2 degrees of freedom under independence, above its 95% point): a faint long-range
component fitted to noise would otherwise inflate the intervals of independent data several-fold.
With independent errors the intervals are then the classical ones (inflation 1) in 95% of the
series.

Coverage of the 95% intervals, 100 synthetic series per line (N = 60-300 points, noise SD 1-3 nm,
AR(1) coefficient per frame 0.3-0.9; ``python tests/series/test_kinetics_coverage.py 100``),
adjusted (classical in brackets): independent errors D 0.98 (0.98), t0 0.96 (0.96); AR(1)
D 0.96 (0.71), t0 0.94 (0.73); half white + half AR(1) D 0.94 (0.78), t0 0.92 (0.79); mixed D 0.95
(0.73), k 0.95 (0.68), t0 0.97 (0.71); power n 0.94 (0.69), t0 0.92 (0.73); free origin D 0.90
(0.60), x0 0.89 (0.64), t0 0.91 (0.68) (0.96, 0.94, 0.96 on another 100). Limitation: the
correlation is estimated from the same series, so short, strongly correlated series under-cover
somewhat (N = 60-150, AR(1) 0.5-0.9: D 0.93, t0 0.92; N = 40-100: t0 about 0.8).
``ci_method="profile-independent"`` gives the classical intervals (independent errors).
``ci_method="bootstrap"``: moving-block bootstrap of the residuals (block length from the fitted
correlation time, each replicate also shifted by a random common offset of ``offset_sd_nm``),
refitted warm-started from the optimum, percentile intervals; it under-covers t0 (t0 sits on the
kink of the model), which is why the profile is the default.

Model choice
------------
QAICc, the AICc with the Gaussian log-likelihood divided by :math:`\hat c` (Burnham & Anderson
2002, section 2.5, "quasi-likelihood" AIC for over-dispersed data), with the noise variance counted
as a parameter (K = p + 1): :math:`QAICc = N\ln(RSS/N)/\hat c + 2K + 2K(K+1)/(N-K-1)`.
:math:`\hat c` is the median variance inflation of the model with the lowest (plain) AICc: with
correlated errors N points carry the information of about :math:`N/\hat c` independent ones, and
the plain AICc then prefers an extra parameter that only follows a slow error wander (on one
issue-3 movie the power law beat the true parabolic law by 53 AICc units, by 3.3 QAICc units).
With independent errors :math:`\hat c = 1` and QAICc = AICc. Ties are broken towards the simpler
model: among the models within 2 QAICc units of the minimum, the one with the fewest parameters
wins; among those, a mechanistic model (parabolic, linear, mixed) is preferred to the empirical
power law, then the lowest QAICc. parabolic and linear are nested in power and mixed, so a
3-parameter model must earn its extra parameter; a power law that is not clearly better (by > 2)
than Deal-Grove does not displace it (a power law with n ~ 0.55-0.6 mimics mixed kinetics, but
has no D or k to report). The Akaike weights in ``comparison`` show how clear the choice was. A
model needs N >= p + 3 points (AICc defined).

Why hand-written rather than lmfit: lmfit would add a dependency for four analytic models, and its
intervals assume independent errors. ``scipy.optimize.least_squares`` (already a dependency) with
analytic Jacobians (the mixed model's by implicit differentiation of the quadratic), warm-started
profile refits and Wald-sized bracketing steps makes a full profile CI cost tens of ms per model,
fast enough to check coverage on many synthetic datasets in the tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import optimize, signal, stats

from temtrack.errors import AnalysisError, ParameterError

__all__ = ["MODEL_NAMES", "ORIGINS", "ModelFit", "KineticsResult", "fit_kinetics", "model_curve"]

MODEL_NAMES = ("parabolic", "power", "linear", "mixed")
ORIGINS = ("contact", "free")
CI_METHODS = ("profile", "profile-independent", "bootstrap")
OUTLIER_Z = 4.0
_MAX_OUTLIER_FRACTION = 0.10
_AICC_TIE = 2.0
_NM2_TO_CM2 = 1e-14
_CONVENTION = "x^2 = P*D*(t - t0)"
_CONVENTION_FREE = "(x - x0)^2 = P*D*(t - t0)"
# error-correlation estimate: largest lag matched, fewest points for an estimate
_CORR_MAX_LAG = 30
_CORR_MIN_POINTS = 12
_CHI2_2_95 = float(stats.chi2.ppf(0.95, 2))
_CI_JSON_METHOD = {"profile": "profile-correlated", "profile-independent": "profile-independent",
                   "bootstrap": "block-bootstrap"}


# --------------------------------------------------------------------------------------------
# models: internal parameter vector theta, curve f(t; theta) and its Jacobian df/dtheta
# --------------------------------------------------------------------------------------------
def _tau(t, t0):
    return np.maximum(t - t0, 0.0)


def _parabolic(t, th, P):
    D = math.exp(th[0])
    return np.sqrt(P * D * _tau(t, th[1]))


def _parabolic_jac(t, th, P):
    D = math.exp(th[0])
    f = np.sqrt(P * D * _tau(t, th[1]))
    J = np.zeros((t.size, 2))
    J[:, 0] = 0.5 * f
    pos = f > 0
    J[pos, 1] = -0.5 * P * D / f[pos]
    return J


def _parabolic_x0(t, th, P):
    return th[1] + _parabolic(t, th[[0, 2]], P)


def _parabolic_x0_jac(t, th, P):
    J = np.ones((t.size, 3))
    J[:, [0, 2]] = _parabolic_jac(t, th[[0, 2]], P)
    return J


def _linear(t, th, P):
    return math.exp(th[0]) * _tau(t, th[1])


def _linear_jac(t, th, P):
    v = math.exp(th[0])
    tau = _tau(t, th[1])
    J = np.zeros((t.size, 2))
    J[:, 0] = v * tau
    J[tau > 0, 1] = -v
    return J


def _power(t, th, P):
    tau = _tau(t, th[2])
    out = np.zeros_like(tau)
    pos = tau > 0
    out[pos] = np.exp(th[0] + th[1] * np.log(tau[pos]))
    return out


def _power_jac(t, th, P):
    tau = _tau(t, th[2])
    J = np.zeros((t.size, 3))
    pos = tau > 0
    lt = np.log(tau[pos])
    f = np.exp(th[0] + th[1] * lt)
    J[pos, 0] = f
    J[pos, 1] = f * lt
    J[pos, 2] = -th[1] * f / tau[pos]
    return J


def _power_x0(t, th, P):
    return th[2] + _power(t, th[[0, 1, 3]], P)


def _power_x0_jac(t, th, P):
    J = np.ones((t.size, 4))
    J[:, [0, 1, 3]] = _power_jac(t, th[[0, 1, 3]], P)
    return J


def _mixed(t, th, P):
    D, k = math.exp(th[0]), math.exp(th[1])
    tau = _tau(t, th[2])
    return 2.0 * tau / (1.0 / k + np.sqrt(1.0 / k**2 + 4.0 * tau / (P * D)))


def _mixed_jac(t, th, P):
    # implicit differentiation of G = x^2/(PD) + x/k - tau = 0
    D, k = math.exp(th[0]), math.exp(th[1])
    tau = _tau(t, th[2])
    x = 2.0 * tau / (1.0 / k + np.sqrt(1.0 / k**2 + 4.0 * tau / (P * D)))
    dGdx = 2.0 * x / (P * D) + 1.0 / k
    J = np.zeros((t.size, 3))
    J[:, 0] = (x * x / (P * D)) / dGdx
    J[:, 1] = (x / k) / dGdx
    J[tau > 0, 2] = -1.0 / dGdx[tau > 0]
    return J


@dataclass(frozen=True)
class _Model:
    name: str
    internal: tuple[str, ...]  # internal parameter names (log_ = natural log of the parameter)
    curve: Callable
    jac: Callable

    @property
    def n_params(self) -> int:
        return len(self.internal)

    @property
    def has_x0(self) -> bool:
        return "x0_nm" in self.internal


_MODELS = {
    "parabolic": _Model("parabolic", ("log_D_nm2_per_s", "t0_s"), _parabolic, _parabolic_jac),
    "power": _Model("power", ("log_A_nm_per_s_n", "n", "t0_s"), _power, _power_jac),
    "linear": _Model("linear", ("log_v_nm_per_s", "t0_s"), _linear, _linear_jac),
    "mixed": _Model("mixed", ("log_D_nm2_per_s", "log_k_nm_per_s", "t0_s"), _mixed, _mixed_jac),
}
# origin="free": x0 fitted where it is identifiable (see the module docstring)
_MODELS_FREE = {
    "parabolic": _Model("parabolic", ("log_D_nm2_per_s", "x0_nm", "t0_s"), _parabolic_x0,
                        _parabolic_x0_jac),
    "power": _Model("power", ("log_A_nm_per_s_n", "n", "x0_nm", "t0_s"), _power_x0, _power_x0_jac),
    "linear": _MODELS["linear"],
}
_MIXED_FREE_REASON = (
    "not identifiable with a free origin: the Deal-Grove law with an unknown origin is the "
    "parabolic law (x - x0)^2 = P*D*(t - t0) with x0 = -P*D/(2k), so k cannot be told from an "
    "origin offset; fit with origin='contact' (a contact known independently) to estimate k"
)


def _natural(name: str) -> str:
    return name[4:] if name.startswith("log_") else name


def _to_natural(model: _Model, th) -> dict[str, float]:
    return {
        _natural(nm): (math.exp(v) if nm.startswith("log_") else float(v))
        for nm, v in zip(model.internal, th)
    }


def model_curve(name: str, time_s, params: dict, *, prefactor: float = 2.0) -> np.ndarray:
    r"""Front position predicted by a kinetics model.

    Parameters
    ----------
    name : {'parabolic', 'power', 'linear', 'mixed'}
        Model (see the module docstring for the equations).
    time_s : array_like
        Times (s).
    params : dict
        Natural parameters as in :attr:`ModelFit.params` (``D_nm2_per_s``, ``t0_s``, ``n``,
        ``A_nm_per_s_n``, ``v_nm_per_s``, ``k_nm_per_s``). With ``x0_nm`` (parabolic, power) the
        free-origin form :math:`x = x_0 + f(t - t_0)` is used.
    prefactor : float, keyword-only
        P in :math:`x^2 = P D (t - t_0)`.

    Returns
    -------
    position_nm : ndarray
        x(t); 0 (x0 with an origin offset) for :math:`t \le t_0`.
    """
    if name not in _MODELS:
        raise ParameterError(f"model: expected one of {MODEL_NAMES}, got {name!r}")
    model = _MODELS[name]
    if params.get("x0_nm") is not None and name in _MODELS_FREE and _MODELS_FREE[name].has_x0:
        model = _MODELS_FREE[name]
    th = []
    for nm in model.internal:
        v = float(params[_natural(nm)])
        th.append(math.log(v) if nm.startswith("log_") else v)
    t = np.asarray(time_s, dtype=float)
    return model.curve(t.ravel(), np.array(th), float(prefactor)).reshape(t.shape)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclass
class ModelFit:
    """One fitted kinetics model.

    Attributes
    ----------
    name : str
        'parabolic', 'power', 'linear' or 'mixed'.
    params : dict
        Natural parameters (``D_nm2_per_s``, ``t0_s``, ``n``, ``A_nm_per_s_n``, ``v_nm_per_s``,
        ``k_nm_per_s``, ``x0_nm`` as applicable).
    ci95 : dict
        ``{param: (lo, hi)}``; a bound is None when the data do not constrain it.
    aic, aicc, bic, rss : float
        Information criteria (Gaussian likelihood of independent errors, noise variance counted as
        a parameter) and the (weighted, inliers only) residual sum of squares.
    n_points : int
        Number of points used in the final fit (inliers).
    residuals : ndarray
        ``x - predict(t)`` (nm, unweighted) for all finite input points, in the order of
        :attr:`time_s`; outliers included (see :attr:`inlier`).
    time_s : ndarray
        Times of the residuals (sorted).
    inlier : ndarray of bool
        False for points rejected as outliers.
    prefactor : float
        P of the parabolic/mixed convention.
    sigma_nm : float
        Residual standard deviation, sqrt(RSS/(N-p)) (in units of the given sigmas when weighted).
    warnings : list of str
        Anything the user should know (parameter at a search bound, optimiser status).
    qaicc : float
        AICc with the log-likelihood divided by the dataset's variance inflation (selection).
    ci_inflation : dict
        ``{param: c}``: factor by which the interval's variance exceeds the independent-errors
        one (correlated errors and the common offset; 1 for ``profile-independent``).
    error_model : dict
        The fitted residual correlation: ``white_fraction``, ``correlation_time_s``, ``dof``.
    """

    name: str
    params: dict
    ci95: dict
    aic: float
    aicc: float
    bic: float
    rss: float
    n_points: int
    residuals: np.ndarray
    time_s: np.ndarray
    inlier: np.ndarray
    prefactor: float
    sigma_nm: float
    n_params: int
    warnings: list = field(default_factory=list)
    qaicc: float = float("nan")
    ci_inflation: dict = field(default_factory=dict)
    error_model: dict = field(default_factory=dict)

    def predict(self, time_s) -> np.ndarray:
        """Front position (nm) predicted at ``time_s`` (0, or x0, before t0)."""
        return model_curve(self.name, time_s, self.params, prefactor=self.prefactor)

    def to_json(self) -> dict:
        return {
            "fittable": True,
            "aic": self.aic,
            "aicc": self.aicc,
            "qaicc": self.qaicc,
            "bic": self.bic,
            "rss": self.rss,
            "n_params": self.n_params,
            "n_points": self.n_points,
            "sigma_nm": self.sigma_nm,
            "params": dict(self.params),
            "ci95": {k: _ci_json(v) for k, v in self.ci95.items()},
            "ci_inflation": {k: float(v) for k, v in self.ci_inflation.items()},
            "error_model": dict(self.error_model),
            "warnings": list(self.warnings),
        }


def _ci_json(ci):
    if ci is None:
        return None
    return [None if (c is None or not np.isfinite(c)) else float(c) for c in ci]


@dataclass
class KineticsResult:
    """All fitted models, the chosen one and the comparison.

    Attributes
    ----------
    best : ModelFit
        Model with the lowest QAICc; ties (within 2) broken towards the fewest parameters, then
        towards a mechanistic model rather than the power law.
    fits : dict[str, ModelFit]
        Every model that could be fitted.
    not_fitted : dict[str, str]
        Requested models that could not be fitted, with the reason.
    prefactor : float
        P in :math:`x^2 = P D (t - t_0)`.
    ci_method : str
        'profile-correlated', 'profile-independent' or 'block-bootstrap'.
    n_outliers : int
        Points rejected by the outlier step (common to all models).
    outlier_time_s : list of float
        Their times.
    origin : str
        'contact' (x0 = 0) or 'free' (x0 fitted).
    c_hat : float
        Variance inflation dividing the log-likelihoods of the model comparison (1: independent).
    offset_sd_nm : float
        Standard deviation of the common position offset propagated into the intervals.
    """

    best: ModelFit
    fits: dict
    not_fitted: dict
    prefactor: float
    ci_method: str
    n_outliers: int
    outlier_time_s: list
    origin: str = "contact"
    c_hat: float = 1.0
    offset_sd_nm: float = 0.0

    def to_json(self) -> dict:
        """Plain-JSON summary (the ``kinetics`` block of ``results.json``).

        Every parameter of the block (``k_nm_per_s``, ``n``, ``t0_s``, ``x0_nm`` and their
        ``ci95``) comes from the best model (``model``), and ``D_nm2_per_s`` too where it has one:

        * ``D_nm2_per_s`` comes from the best model when it has a D (parabolic, mixed); when it
          has none (power, linear) it is the parabolic fit's D, so scripts always find a D, and
          ``D_from`` names the model it came from (None only if no model with a D was fitted);
          ``D_parabolic_nm2_per_s`` (with its ``ci95``) always gives the parabolic fit's D;
        * ``n`` is 0.5 for parabolic and 1 for linear (fixed by the model, ``ci95['n']`` None),
          the fitted exponent for power, None for mixed (no single exponent);
          ``n_power_fit`` always gives the power fit's exponent (None if not fitted);
        * ``k_nm_per_s`` is None unless the best model is mixed;
        * ``x0_nm`` is 0 with ``origin='contact'`` (fixed), the fitted origin offset with
          ``origin='free'`` (None for linear, whose offset is absorbed in t0);
        * ``t0_s`` is the time the front left its origin (x0 with a free origin).
        """
        best = self.best
        fits = self.fits
        ci: dict = {}
        D = k = None
        D_from = None
        if "D_nm2_per_s" in best.params:
            D_from = best.name
            D = best.params["D_nm2_per_s"]
            ci["D_nm2_per_s"] = _ci_json(best.ci95.get("D_nm2_per_s"))
        elif "parabolic" in fits:
            # Users' scripts read D whatever model won; power and linear define no D, so the
            # parabolic fit supplies it and D_from says so.
            D_from = "parabolic"
            D = fits["parabolic"].params["D_nm2_per_s"]
            ci["D_nm2_per_s"] = _ci_json(fits["parabolic"].ci95.get("D_nm2_per_s"))
        else:
            ci["D_nm2_per_s"] = None
        ci["D_cm2_per_s"] = _scale_ci(ci["D_nm2_per_s"], _NM2_TO_CM2)
        D_par = fits["parabolic"].params["D_nm2_per_s"] if "parabolic" in fits else None
        ci["D_parabolic_nm2_per_s"] = (
            _ci_json(fits["parabolic"].ci95.get("D_nm2_per_s")) if "parabolic" in fits else None
        )
        ci["D_parabolic_cm2_per_s"] = _scale_ci(ci["D_parabolic_nm2_per_s"], _NM2_TO_CM2)
        if best.name == "mixed":
            k = best.params["k_nm_per_s"]
            ci["k_nm_per_s"] = _ci_json(best.ci95.get("k_nm_per_s"))
        else:
            ci["k_nm_per_s"] = None
        n_power = fits["power"].params["n"] if "power" in fits else None
        if best.name == "parabolic":
            n, n_from, ci["n"] = 0.5, "parabolic (fixed)", None
        elif best.name == "linear":
            n, n_from, ci["n"] = 1.0, "linear (fixed)", None
        elif best.name == "power":
            n, n_from = best.params["n"], "power"
            ci["n"] = _ci_json(best.ci95.get("n"))
        else:
            n, n_from, ci["n"] = None, None, None
        ci["t0_s"] = _ci_json(best.ci95.get("t0_s"))
        if "x0_nm" in best.params:
            x0 = best.params["x0_nm"]
            ci["x0_nm"] = _ci_json(best.ci95.get("x0_nm"))
        else:
            x0 = 0.0 if self.origin == "contact" else None
            ci["x0_nm"] = None
        for p, v in best.ci95.items():
            ci.setdefault(p, _ci_json(v))
        comparison = {name: f.to_json() for name, f in fits.items()}
        q_min = min(f.qaicc for f in fits.values())
        a_min = min(f.aicc for f in fits.values())
        wsum = sum(math.exp(-0.5 * (f.qaicc - q_min)) for f in fits.values())
        for name, f in fits.items():
            comparison[name]["delta_aicc"] = f.aicc - a_min
            comparison[name]["delta_qaicc"] = f.qaicc - q_min
            comparison[name]["akaike_weight"] = math.exp(-0.5 * (f.qaicc - q_min)) / wsum
        for name, reason in self.not_fitted.items():
            comparison[name] = {
                "fittable": False, "reason": reason, "aic": None, "aicc": None, "qaicc": None,
                "bic": None, "rss": None, "n_params": _model_for(name, self.origin)[1],
                "params": None, "ci95": None,
            }
        em = best.error_model
        if self.ci_method == "profile-correlated":
            desc = (
                "profile likelihood; each threshold scaled by the parameter's variance inflation "
                "under white + CAR(1) correlated errors (sandwich, correlation fitted to the "
                "residual autocorrelation) and a common position offset, F(1, dof) quantile"
            )
        elif self.ci_method == "block-bootstrap":
            desc = (
                "moving-block bootstrap of the residuals (block length from the fitted "
                "correlation time) plus a random common offset, percentile intervals"
            )
        else:
            desc = "profile likelihood assuming independent errors, F(1, N - p) quantile"
        return {
            "model": best.name,
            "D_nm2_per_s": D,
            "D_cm2_per_s": None if D is None else D * _NM2_TO_CM2,
            "D_from": D_from,
            "D_parabolic_nm2_per_s": D_par,
            "D_parabolic_cm2_per_s": None if D_par is None else D_par * _NM2_TO_CM2,
            "k_nm_per_s": k,
            "n": n,
            "n_from": n_from,
            "n_power_fit": n_power,
            "t0_s": best.params["t0_s"],
            "x0_nm": x0,
            "origin": self.origin,
            "ci95": ci,
            "ci_method": self.ci_method,
            "ci_details": {
                "description": desc,
                "white_fraction": em.get("white_fraction"),
                "correlation_time_s": em.get("correlation_time_s"),
                "dof": em.get("dof"),
                "variance_inflation": {k: float(v) for k, v in best.ci_inflation.items()},
                "offset_sd_nm": self.offset_sd_nm,
            },
            "ci_level": 0.95,
            "prefactor": self.prefactor,
            "convention": _CONVENTION if self.origin == "contact" else _CONVENTION_FREE,
            "selection": "lowest QAICc (AICc with the log-likelihood divided by c_hat, the "
            "variance inflation of correlated errors); models within 2 QAICc units of the minimum "
            "-> fewest parameters, then mechanistic (parabolic/linear/mixed) before power, then "
            "lowest QAICc",
            "c_hat": self.c_hat,
            "n_points": best.n_points,
            "n_outliers": self.n_outliers,
            "outlier_time_s": list(self.outlier_time_s),
            "sigma_nm": best.sigma_nm,
            "comparison": comparison,
        }


def _scale_ci(ci, factor):
    if ci is None:
        return None
    return [None if c is None else c * factor for c in ci]


def _model_for(name: str, origin: str) -> tuple[_Model | None, int]:
    """The model fitted under ``name`` for an origin choice, and its parameter count."""
    if origin == "free":
        if name in _MODELS_FREE:
            return _MODELS_FREE[name], _MODELS_FREE[name].n_params
        return None, _MODELS[name].n_params + 1
    return _MODELS[name], _MODELS[name].n_params


# --------------------------------------------------------------------------------------------
# fitting machinery
# --------------------------------------------------------------------------------------------
class _Data:
    """Sorted finite data with weights and scales used for bounds and grids."""

    def __init__(self, t, x, w, P):
        self.t, self.x, self.w, self.P = t, x, w, P
        self.t_min, self.t_max = float(t[0]), float(t[-1])
        self.span = self.t_max - self.t_min
        self.x_min = float(np.min(x))
        self.x_scale = max(float(np.ptp(x)), 1e-12)
        self.D_scale = self.x_scale**2 / self.span
        self.v_scale = self.x_scale / self.span

    def with_positions(self, x):
        """Same times, weights and search bounds, other positions (bootstrap replicates)."""
        new = object.__new__(_Data)
        new.__dict__.update(self.__dict__)
        new.x = x
        return new

    def bounds(self, model: _Model):
        lo, hi = [], []
        for nm in model.internal:
            if nm == "t0_s":
                lo.append(self.t_min - 10.0 * self.span)
                hi.append(self.t_max - 1e-6 * self.span)
            elif nm == "n":
                lo.append(0.02)
                hi.append(5.0)
            elif nm == "x0_nm":
                # the curve never falls below x0: x0 sits at or below the smallest positions
                lo.append(self.x_min - 10.0 * self.x_scale)
                hi.append(self.x_min + self.x_scale)
            else:
                s = math.log(self.D_scale if "D_" in nm else self.v_scale)
                width = 14.0 if "k_" in nm else 25.0  # k: ~1e6 x the data's speed = "infinite"
                lo.append(s - 25.0)
                hi.append(s + width)
        return np.array(lo), np.array(hi)


def _amp_offset_fit(x, w2, S):
    """Best x ~ x0 + a*S (last axis = points) with a > 0: (a, x0, weighted RSS)."""
    sw = w2.sum()
    sx = (w2 * x).sum()
    ss = (w2 * S).sum(-1)
    ssx = (w2 * S * x).sum(-1)
    sss = (w2 * S * S).sum(-1)
    det = sw * sss - ss * ss
    ok = det > 1e-12 * np.maximum(sw * sss, 1e-300)
    a = np.where(ok, (sw * ssx - ss * sx) / np.where(ok, det, 1.0), 0.0)
    a = np.maximum(a, 1e-300)
    x0 = (sx - a * ss) / sw
    rss = (w2 * (x - x0[..., None] - a[..., None] * S) ** 2).sum(-1)
    return a, x0, np.where(ok, rss, np.inf)


def _grid_starts(model: _Model, d: _Data, n_keep: int = 3) -> list[np.ndarray]:
    """Starting values: closed-form amplitude (or linearisation) on a grid of t0 values."""
    t, x, w, P = d.t, d.x, d.w, d.P
    t0g = np.linspace(d.t_min - d.span, d.t_max - 0.1 * d.span, 61)
    tau = np.maximum(t[None, :] - t0g[:, None], 0.0)  # (G, N)
    w2 = w * w
    cands: list[tuple[float, np.ndarray]] = []

    def amp_fit(S):
        # best amplitude a >= 0 for x ~ a*S (last axis = points), and its weighted RSS
        num = (w2 * x * S).sum(-1)
        den = (w2 * S * S).sum(-1)
        a = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        a = np.maximum(a, 1e-300)
        rss = (w2 * (x - a[..., None] * S) ** 2).sum(-1)
        return a, rss

    def power_basis():
        ng = np.linspace(0.1, 1.6, 16)
        with np.errstate(divide="ignore"):
            S = np.where(tau[:, None, :] > 0, tau[:, None, :] ** ng[None, :, None], 0.0)
        return ng, S

    if model.name == "parabolic" and model.has_x0:
        a, x0, rss = _amp_offset_fit(x, w2, np.sqrt(tau))
        for i in np.argsort(rss)[:n_keep]:
            if np.isfinite(rss[i]):
                cands.append((rss[i], np.array([math.log(a[i] ** 2 / P), x0[i], t0g[i]])))
    elif model.name == "parabolic":
        a, rss = amp_fit(np.sqrt(tau))
        for i in np.argsort(rss)[:n_keep]:
            cands.append((rss[i], np.array([math.log(a[i] ** 2 / P), t0g[i]])))
    elif model.name == "linear":
        a, rss = amp_fit(tau)
        for i in np.argsort(rss)[:n_keep]:
            cands.append((rss[i], np.array([math.log(a[i]), t0g[i]])))
    elif model.name == "power" and model.has_x0:
        ng, S = power_basis()
        a, x0, rss = _amp_offset_fit(x, w2, S)
        for fi in np.argsort(rss, axis=None)[:n_keep]:
            i, j = np.unravel_index(fi, rss.shape)
            if np.isfinite(rss[i, j]):
                cands.append((rss[i, j], np.array([math.log(a[i, j]), ng[j], x0[i, j], t0g[i]])))
    elif model.name == "power":
        ng, S = power_basis()
        a, rss = amp_fit(S)
        for fi in np.argsort(rss, axis=None)[:n_keep]:
            i, j = np.unravel_index(fi, rss.shape)
            cands.append((rss[i, j], np.array([math.log(a[i, j]), ng[j], t0g[i]])))
    elif model.name == "mixed":
        lo, hi = d.bounds(model)
        for i in range(t0g.size):
            tt = tau[i]
            m = (tt > 0) & (x > 0)
            if m.sum() < 3:
                continue
            # tau = alpha x^2 + beta x is linear in (alpha, beta); errors put on tau here is fine
            # for starting values, the refit is in the x direction
            A = np.stack([x[m] ** 2, x[m]], axis=1) * w[m, None]
            coef, *_ = np.linalg.lstsq(A, tt[m] * w[m], rcond=None)
            alpha, beta = coef
            alpha = max(alpha, 1.0 / (P * math.exp(hi[0])))
            beta = max(beta, 1.0 / math.exp(hi[1]))
            th = np.array([math.log(1.0 / (P * alpha)), math.log(1.0 / beta), t0g[i]])
            th[:2] = np.clip(th[:2], lo[:2], hi[:2])
            r = w * (x - model.curve(t, th, P))
            cands.append((float(r @ r), th))
        # the two nested limits as extra starts: mixed ~ parabolic (k large) and ~ linear (D large)
        for sub, make in (
            ("parabolic", lambda s: np.array([s[0], math.log(d.v_scale) + 5.0, s[1]])),
            ("linear", lambda s: np.array([math.log(d.D_scale) + 8.0, s[0], s[1]])),
        ):
            for s in _grid_starts(_MODELS[sub], d, n_keep=1):
                th = make(s)
                r = w * (x - model.curve(t, th, P))
                cands.append((float(r @ r), th))
    cands.sort(key=lambda c: c[0])
    if model.has_x0:
        # keep starts inside the search range (the grid's x0 may fall outside it)
        lo, hi = d.bounds(model)
        cands = [(c, np.clip(th, lo, hi)) for c, th in cands]
    out = [c[1] for c in cands if np.all(np.isfinite(c[1]))]
    if model.name == "mixed":
        return out[: n_keep + 2]
    return out[:n_keep]


def _lsq(model: _Model, d: _Data, th0, mask, *, loss="linear", f_scale=1.0, free=None, fixed=None):
    """least_squares over the free parameters (others held), on the points in ``mask``."""
    t, x, w, P = d.t[mask], d.x[mask], d.w[mask], d.P
    lo, hi = d.bounds(model)
    th_full = np.array(th0, dtype=float)
    if free is None:
        free = np.arange(model.n_params)
    if fixed is not None:
        th_full[fixed[0]] = fixed[1]
    eps = 1e-9 * (hi - lo)
    p0 = np.clip(th_full[free], lo[free] + eps[free], hi[free] - eps[free])

    def resid(p):
        th = th_full.copy()
        th[free] = p
        return w * (x - model.curve(t, th, P))

    def jac(p):
        th = th_full.copy()
        th[free] = p
        return -w[:, None] * model.jac(t, th, P)[:, free]

    res = None
    if loss == "linear":
        # MINPACK Levenberg-Marquardt is several times cheaper per call than bounded TRF, which
        # matters for the many warm-started profile refits; the bounds are only a safety net,
        # so TRF is used when LM fails or leaves them
        try:
            with np.errstate(over="raise", divide="raise", invalid="raise"):
                res = optimize.least_squares(
                    resid, p0, jac=jac, method="lm", x_scale="jac", xtol=1e-10, ftol=1e-10,
                    gtol=1e-10, max_nfev=400,
                )
        except (OverflowError, ZeroDivisionError, FloatingPointError, ValueError):
            res = None
        if res is not None and (
            res.status <= 0 or np.any(res.x < lo[free]) or np.any(res.x > hi[free])
        ):
            res = None
    if res is None:
        res = optimize.least_squares(
            resid, p0, jac=jac, bounds=(lo[free], hi[free]), loss=loss, f_scale=f_scale,
            x_scale="jac", method="trf", xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=400,
        )
    th = th_full.copy()
    th[free] = res.x
    r = resid(res.x)
    return th, float(r @ r), res


def _robust_scale(r):
    return 1.4826 * float(np.median(np.abs(r - np.median(r))))


# --------------------------------------------------------------------------------------------
# correlated errors: white + CAR(1) error model, variance inflation of each parameter
# --------------------------------------------------------------------------------------------
def _car1_apply(pos, phi, Y):
    """``Phi @ Y`` for :math:`\\Phi_{ij} = \\phi^{|pos_i - pos_j|}` (pos sorted, in time steps).

    Two first-order recursions (forward and backward), O(N): on the regular grid of frame times
    (with gaps) as linear filters, otherwise as a loop.
    """
    Y = np.asarray(Y, dtype=float)
    n = pos.size
    idx = np.rint(pos).astype(np.int64)
    if (np.all(np.abs(pos - idx) < 1e-6) and np.all(np.diff(idx) > 0)
            and idx[-1] <= 20 * n + 100):
        g = np.zeros((int(idx[-1]) + 1,) + Y.shape[1:])
        g[idx] = Y
        a = signal.lfilter([1.0], [1.0, -phi], g, axis=0)
        b = signal.lfilter([1.0], [1.0, -phi], g[::-1], axis=0)[::-1]
        return (a + b - g)[idx]
    f = phi ** np.diff(pos)
    a = Y.copy()
    b = Y.copy()
    for i in range(1, n):
        a[i] += f[i - 1] * a[i - 1]
    for i in range(n - 2, -1, -1):
        b[i] += f[i] * b[i + 1]
    return a + b - Y


def _lag_sums(U, V, n_lags):
    """``sum_i U_i . V_{i+k}`` for k = 1..n_lags (rows = points, summed over columns)."""
    n = U.shape[0]
    out = np.zeros(n_lags)
    for a in range(U.shape[1]):
        out += np.correlate(V[:, a], U[:, a], mode="full")[n: n + n_lags]
    return out


def _error_model(t, A, r, w, offset_sd: float, correlated: bool) -> dict:
    """Residual correlation model and each parameter's variance inflation.

    Parameters
    ----------
    t : (N,) sorted times; A : (N, p) weighted model Jacobian d(w f)/dtheta;
    r : (N,) weighted residuals; w : (N,) weights; offset_sd : common offset SD (nm).

    Returns
    -------
    dict with ``inflation`` (p,) (correlation and offset), ``inflation_corr`` (p,) (correlation
    only), ``dof``, ``white_fraction``, ``correlation_time_s``.

    The white + CAR(1) model replaces independent errors only when it matches the residual
    autocorrelation significantly better (the drop of N * sum of squared mismatches, about
    chi-square with 2 degrees of freedom under independence, above its 95% point): a small
    long-range component fitted to noise would otherwise inflate the intervals of
    independent data several-fold.
    """
    N, p = A.shape
    H = A.T @ A
    Hi = np.linalg.pinv(H)
    rr = float(r @ r)
    s2 = rr / max(N - p, 1)
    hd = np.clip(np.diag(Hi), 1e-300, None)
    out = {"white_fraction": 1.0, "correlation_time_s": 0.0, "dof": float(N - p),
           "inflation_corr": np.ones(p)}
    if correlated and N >= _CORR_MIN_POINTS and rr > 0 and p < N:
        Q, _ = np.linalg.qr(A)
        dt = np.diff(t)
        step = float(np.median(dt[dt > 0])) if np.any(dt > 0) else 1.0
        pos = (t - t[0]) / step
        L = max(2, min(_CORR_MAX_LAG, N // 4))
        a_obs = np.correlate(r, r, mode="full")[N: N + L] / rr
        # gaps (in steps) between points k apart, k = 1..L (NaN-padded rows)
        gaps = np.full((L, N), np.nan)
        for k in range(1, L + 1):
            gaps[k - 1, : N - k] = pos[k:] - pos[:-k]
        # white part (eta = 1): M = I - H
        dw = -_lag_sums(Q, Q, L)
        tw = float(N - p)
        etas = np.linspace(0.0, 1.0, 41)[:, None]
        loss_white = float(np.sum((a_obs - dw / tw) ** 2))
        best = (loss_white, 1.0, 0.0)
        for ell in np.geomspace(0.25, 2.0 * N, 36):
            phi = math.exp(-1.0 / ell)
            PQ = _car1_apply(pos, phi, Q)
            C = Q.T @ PQ
            dphi = np.nansum(phi ** gaps, axis=1)
            dp = dphi - _lag_sums(Q, PQ, L) - _lag_sums(PQ, Q, L) + _lag_sums(Q @ C, Q, L)
            tp = N - float(np.trace(C))
            den = etas * tw + (1.0 - etas) * tp
            ok = den[:, 0] > 1e-6 * N
            if not ok.any():
                continue
            e = (etas * dw + (1.0 - etas) * dp) / np.where(den > 0, den, 1.0)
            loss = np.where(ok, np.sum((a_obs - e) ** 2, axis=1), np.inf)
            i = int(np.argmin(loss))
            if loss[i] < best[0]:
                best = (float(loss[i]), float(etas[i, 0]), ell)
        loss, eta, ell = best
        if eta < 1.0 and N * (loss_white - loss) > _CHI2_2_95:
            phi = math.exp(-1.0 / ell)
            PQ = _car1_apply(pos, phi, Q)
            C = Q.T @ PQ
            tp = N - float(np.trace(C))
            trM = eta * tw + (1.0 - eta) * tp
            ARA = eta * H + (1.0 - eta) * (A.T @ _car1_apply(pos, phi, A))
            V = (rr / trM) * (Hi @ ARA @ Hi)
            fro_phi = float(np.sum(_car1_apply(pos, phi * phi, np.ones(N))))
            trMp2 = fro_phi - 2.0 * float(np.sum(PQ * PQ)) + float(np.sum(C * C))
            trM2 = eta**2 * tw + 2.0 * eta * (1.0 - eta) * tp + (1.0 - eta) ** 2 * trMp2
            out.update(
                white_fraction=eta, correlation_time_s=ell * step,
                dof=float(np.clip(trM**2 / trM2, 1.0, N - p)) if trM2 > 0 else float(N - p),
                inflation_corr=np.maximum(np.diag(V) / (s2 * hd), 1.0),
            )
    infl = out["inflation_corr"].copy()
    if offset_sd > 0:
        # parameters' shift per nm of an offset common to all positions (zero where x0 is free)
        g = Hi @ (A.T @ w)
        infl = infl + (offset_sd * g) ** 2 / (s2 * hd)
    out["inflation"] = infl
    return out


def _profile_ci(model: _Model, d: _Data, th_hat, rss_min, mask, n_pts, inflation, dof):
    """Profile-likelihood 95% interval of each internal parameter.

    The threshold of parameter j is :math:`RSS_{min}(1 + c_j F_{0.95}(1, \\nu)/(N - p))`.
    """
    p = model.n_params
    n_minus_p = n_pts - p
    q = stats.f.ppf(0.95, 1, dof)
    lo_b, hi_b = d.bounds(model)
    # Wald standard errors (inflated like the thresholds) set the first step
    J = -d.w[mask, None] * model.jac(d.t[mask], th_hat, d.P)
    try:
        cov = np.linalg.pinv(J.T @ J) * rss_min / n_minus_p
        se = np.sqrt(np.clip(np.diag(cov) * inflation, 0, None))
    except np.linalg.LinAlgError:
        se = np.full(p, np.nan)
    out = []
    for j in range(p):
        thresh = rss_min * (1.0 + inflation[j] * q / n_minus_p)
        free = np.array([i for i in range(p) if i != j])
        s = se[j] if np.isfinite(se[j]) and se[j] > 0 else 0.05 * (hi_b[j] - lo_b[j])
        s = min(s, 0.25 * (hi_b[j] - lo_b[j]))
        bounds_j = []
        for direction in (-1.0, 1.0):
            warm = th_hat.copy()
            cache: dict = {}

            def prof(val):
                nonlocal warm
                if val in cache:
                    return cache[val]
                th, rss, _ = _lsq(model, d, warm, mask, free=free, fixed=(j, val))
                cache[val] = rss - thresh
                warm = th
                return cache[val]

            inside = th_hat[j]
            step = 2.0 * s
            edge = lo_b[j] if direction < 0 else hi_b[j]
            found = None
            for _ in range(30):
                val = inside + direction * step
                if (val - edge) * direction >= 0:
                    val = edge
                g = prof(val)
                if g > 0:
                    found = val
                    break
                if val == edge:
                    break
                inside = val
                step *= 2.0
            if found is None:
                bounds_j.append(None)
                continue
            try:
                root = optimize.brentq(
                    prof, inside, found, xtol=1e-3 * s, rtol=1e-10, maxiter=60
                )
            except ValueError:
                root = found
            bounds_j.append(root)
        out.append(tuple(bounds_j))
    return out


def _bootstrap_ci(model, d, th_hat, mask, n_boot, rng, *, block, offset_sd):
    """Moving-block bootstrap of the standardised residuals plus a random common offset."""
    t, w = d.t[mask], d.w[mask]
    f = model.curve(t, th_hat, d.P)
    r = w * (d.x[mask] - f)
    n = r.size
    p = model.n_params
    r = (r - r.mean()) * math.sqrt(n / max(n - p, 1))  # leverage-free variance correction
    block = int(min(max(block, 1), max(1, n // 3)))
    n_blocks = -(-n // block)
    x_orig = d.x
    samples = np.full((n_boot, p), np.nan)
    for b in range(n_boot):
        starts = rng.integers(0, n - block + 1, n_blocks)
        idx = (starts[:, None] + np.arange(block)[None, :]).ravel()[:n]
        xb = x_orig.copy()
        xb[mask] = f + r[idx] / w + (offset_sd * rng.normal() if offset_sd > 0 else 0.0)
        try:
            th, _, res = _lsq(model, d.with_positions(xb), th_hat, mask)
            if res.status > 0:
                samples[b] = th
        except (ValueError, np.linalg.LinAlgError):
            pass
    good = np.all(np.isfinite(samples), axis=1)
    if good.sum() < 0.8 * n_boot:
        return [(None, None)] * p, int(good.sum())
    lo, hi = np.percentile(samples[good], [2.5, 97.5], axis=0)
    return list(zip(lo, hi)), int(good.sum())


def _internal_ci_to_natural(model: _Model, ci_int, t_ref: float) -> dict:
    ci = {}
    for nm, (lo, hi) in zip(model.internal, ci_int):
        if nm.startswith("log_"):
            conv = math.exp
        elif nm == "t0_s":
            def conv(v):
                return float(v) + t_ref
        else:
            conv = float
        ci[_natural(nm)] = (None if lo is None else conv(lo), None if hi is None else conv(hi))
    if "D_nm2_per_s" in ci:
        lo, hi = ci["D_nm2_per_s"]
        ci["D_cm2_per_s"] = (
            None if lo is None else lo * _NM2_TO_CM2, None if hi is None else hi * _NM2_TO_CM2
        )
    return ci


def _criteria(rss, n, p, c_hat=1.0):
    """AIC, AICc, BIC (independent errors) and QAICc (log-likelihood divided by c_hat)."""
    K = p + 1  # + noise variance
    ll = n * math.log(max(rss, 1e-300) / n)
    aic = ll + 2 * K
    small = 2 * K * (K + 1) / (n - K - 1)
    aicc = aic + small
    bic = ll + K * math.log(n)
    qaicc = ll / c_hat + 2 * K + small
    return aic, aicc, bic, qaicc


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------
def fit_kinetics(
    time_s,
    position_nm,
    *,
    position_err_nm=None,
    models: Sequence[str] = MODEL_NAMES,
    prefactor: float = 2.0,
    ci_method: str = "profile",
    n_bootstrap: int = 400,
    seed: int = 0,
    min_points: int = 5,
    origin: str = "contact",
    offset_sd_nm: float | None = None,
) -> KineticsResult:
    r"""Fit reaction-front kinetics with a free start time and pick the best model.

    Models (:math:`\tau = \max(t - t_0, 0)`): parabolic :math:`x = \sqrt{P D \tau}`;
    power :math:`x = A \tau^n`; linear :math:`x = v \tau`; mixed (Deal-Grove)
    :math:`\tau = x^2/(P D) + x/k`; with ``origin='free'`` parabolic and power get an origin
    offset, :math:`x = x_0 + \dots`. See the module docstring for the fitting, outlier,
    confidence interval (correlated errors) and model-choice details.

    Parameters
    ----------
    time_s : array_like, shape (N,)
        Times (s). Need not be sorted.
    position_nm : array_like, shape (N,)
        Front position from the contact (nm). Points where time, position (or its error) is NaN
        are dropped.
    position_err_nm : array_like or float, optional
        Per-point 1-sigma uncertainty (nm), used as weights 1/sigma^2 (relative: the overall
        scale is re-estimated from the residuals). Default: homoscedastic.
    models : sequence of str
        Any of 'parabolic', 'power', 'linear', 'mixed'.
    prefactor : float
        P in :math:`x^2 = P D (t - t_0)`; 2 (1D diffusion) by default; 4 or 1 are other common
        conventions.
    ci_method : {'profile', 'profile-independent', 'bootstrap'}
        Profile likelihood adjusted for correlated errors (default), profile likelihood assuming
        independent errors, or moving-block residual bootstrap.
    n_bootstrap : int
        Bootstrap replicates (>= 200), used when ``ci_method='bootstrap'``.
    seed : int
        Seed of the bootstrap resampling.
    min_points : int
        Minimum number of finite points (>= 4).
    origin : {'contact', 'free'}
        'contact': the positions are measured from where the front starts (x0 = 0). 'free': fit
        the offset x0 between the point the positions are measured from and the front's origin
        (a contact found or drawn at the Na source's outline); the mixed model is then not
        identifiable and reported as not fittable.
    offset_sd_nm : float, optional
        Standard deviation (nm) of an error common to all positions (origin, drift reference),
        propagated into the intervals of fits with a fixed origin. Default: the median of
        ``position_err_nm`` when given, else 0.

    Returns
    -------
    KineticsResult
        ``best``, ``fits`` and ``to_json()``. A model that cannot be fitted (too few points for
        its parameters, optimiser failure, not identifiable) is listed in ``not_fitted`` with
        the reason.

    Raises
    ------
    ParameterError
        Invalid options or arrays of different lengths.
    AnalysisError
        Fewer than ``min_points`` finite points, no front motion (all x equal, or no significant
        increase of x with t: one-sided Kendall test p >= 0.01), or no model could be fitted.
    """
    models = tuple(models) if not isinstance(models, str) else (models,)
    if not models:
        raise ParameterError("models: expected at least one of " + ", ".join(MODEL_NAMES))
    for m in models:
        if m not in _MODELS:
            raise ParameterError(f"models: expected names from {MODEL_NAMES}, got {m!r}")
    models = tuple(dict.fromkeys(models))
    if not (isinstance(prefactor, (int, float)) and math.isfinite(prefactor) and prefactor > 0):
        raise ParameterError(f"prefactor: expected a positive finite number, got {prefactor!r}")
    prefactor = float(prefactor)
    if ci_method not in CI_METHODS:
        raise ParameterError(f"ci_method: expected one of {CI_METHODS}, got {ci_method!r}")
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 200:
        raise ParameterError(f"n_bootstrap: expected an integer >= 200, got {n_bootstrap!r}")
    if int(min_points) != min_points or min_points < 4:
        raise ParameterError(f"min_points: expected an integer >= 4, got {min_points!r}")
    if origin not in ORIGINS:
        raise ParameterError(f"origin: expected 'contact' or 'free', got {origin!r}")
    if offset_sd_nm is not None and not (
        isinstance(offset_sd_nm, (int, float)) and math.isfinite(offset_sd_nm) and offset_sd_nm >= 0
    ):
        raise ParameterError(f"offset_sd_nm: expected a finite number >= 0 (nm), got {offset_sd_nm!r}")

    try:
        t = np.asarray(time_s, dtype=float).ravel()
        x = np.asarray(position_nm, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"time_s/position_nm: expected numeric arrays ({exc})") from None
    if t.shape != x.shape:
        raise ParameterError(
            f"time_s and position_nm: expected equal lengths, got {t.size} and {x.size}"
        )
    if position_err_nm is None:
        sig = np.ones_like(x)
    else:
        sig = np.broadcast_to(np.asarray(position_err_nm, dtype=float), x.shape).ravel().copy()
        if np.any(sig[np.isfinite(sig)] <= 0):
            raise ParameterError("position_err_nm: expected positive uncertainties (nm)")
    ok = np.isfinite(t) & np.isfinite(x) & np.isfinite(sig)
    if ok.sum() < min_points:
        raise AnalysisError(
            f"kinetics: {int(ok.sum())} finite front positions, at least {min_points} needed"
        )
    order = np.argsort(t[ok], kind="stable")
    t, x, sig = t[ok][order], x[ok][order], sig[ok][order]
    if np.ptp(t) <= 0:
        raise AnalysisError("kinetics: all front positions have the same time stamp")
    if np.ptp(x) <= 1e-9 * max(1.0, float(np.max(np.abs(x)))):
        raise AnalysisError("kinetics: the front position never changes (no front motion to fit)")
    # monotone trend test: a sodiation front moves away from the contact; without a significant
    # increase of x with t any fit would be a fit to noise
    trend = stats.kendalltau(t, x, alternative="greater")
    if not trend.pvalue < 0.01:
        raise AnalysisError(
            f"kinetics: no significant front motion (Kendall tau = {trend.statistic:.2f}, "
            f"one-sided p = {trend.pvalue:.2g} >= 0.01 for x increasing with t)"
        )
    if ci_method == "profile-independent":
        offset_sd = 0.0
    elif offset_sd_nm is not None:
        offset_sd = float(offset_sd_nm)
    else:
        offset_sd = 0.0 if position_err_nm is None else float(np.median(sig))
    w = 1.0 / sig
    # fit in time relative to the first point: t0 then has the precision of the data's time
    # steps even for absolute (epoch) time stamps
    t_abs, t_ref = t, float(t[0])
    t = t_abs - t_ref
    d = _Data(t, x, w, prefactor)
    N = t.size

    not_fitted: dict[str, str] = {}
    robust: dict[str, tuple[np.ndarray, float]] = {}
    fitted_models: dict[str, _Model] = {}
    all_mask = np.ones(N, bool)
    for name in models:
        model, n_par = _model_for(name, origin)
        if model is None:
            not_fitted[name] = _MIXED_FREE_REASON
            continue
        fitted_models[name] = model
        if N < n_par + 3:  # AICc needs N - K - 1 > 0 with K = p + 1
            not_fitted[name] = f"{N} points, at least {n_par + 3} needed for {n_par} parameters"
            continue
        try:
            starts = _grid_starts(model, d)
            if not starts:
                raise AnalysisError("no usable starting values")
            r0 = w * (x - model.curve(t, starts[0], prefactor))
            scale = _robust_scale(r0)
            if not scale > 0:
                scale = float(np.sqrt(np.mean(r0**2))) or 1.0
            best = None
            for th0 in starts:
                th, _, res = _lsq(model, d, th0, all_mask, loss="soft_l1", f_scale=scale)
                if res.status > 0 and np.all(np.isfinite(th)) and (
                    best is None or res.cost < best[1]
                ):
                    best = (th, res.cost)
            if best is None:
                raise AnalysisError("the optimiser did not converge from any start")
            th = best[0]
            robust[name] = (th, _robust_scale(w * (x - model.curve(t, th, prefactor))))
        except (AnalysisError, ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
            not_fitted[name] = f"fit failed: {exc}"

    if not robust:
        raise AnalysisError(
            "kinetics: no model could be fitted ("
            + "; ".join(f"{k}: {v}" for k, v in not_fitted.items()) + ")"
        )

    # outliers, defined once by the model that describes the data best (smallest robust scale)
    ref = min(robust, key=lambda k: robust[k][1])
    th_ref, s_ref = robust[ref]
    z = np.abs(w * (x - fitted_models[ref].curve(t, th_ref, prefactor)))
    inlier = np.ones(N, bool)
    if s_ref > 0:
        cand = z > OUTLIER_Z * s_ref
        if cand.sum() <= _MAX_OUTLIER_FRACTION * N:
            inlier = ~cand
    n_in = int(inlier.sum())

    fits: dict[str, ModelFit] = {}
    rng = np.random.default_rng(seed)
    for name, (th_r, _) in robust.items():
        model = fitted_models[name]
        p = model.n_params
        if n_in < p + 3:
            not_fitted[name] = f"{n_in} inliers, at least {p + 3} needed"
            continue
        try:
            th, rss, res = _lsq(model, d, th_r, inlier)
            # the robust optimum is a warm start; also try the grid's best start to avoid traps
            th2, rss2, res2 = _lsq(model, d, _grid_starts(model, d, n_keep=1)[0], inlier)
            if rss2 < rss and res2.status > 0:
                th, rss, res = th2, rss2, res2
            if res.status <= 0 or not np.isfinite(rss):
                raise AnalysisError(f"optimiser status {res.status}: {res.message}")
        except (AnalysisError, ValueError, np.linalg.LinAlgError, IndexError) as exc:
            not_fitted[name] = f"fit failed: {exc}"
            continue
        warn = []
        lo_b, hi_b = d.bounds(model)
        for nm, v, lo, hi in zip(model.internal, th, lo_b, hi_b):
            if min(v - lo, hi - v) < 1e-6 * (hi - lo):
                warn.append(f"{_natural(nm)} at the edge of its search range")
        ti, wi = t[inlier], w[inlier]
        A = wi[:, None] * model.jac(ti, th, prefactor)
        r = wi * (x[inlier] - model.curve(ti, th, prefactor))
        try:
            em = _error_model(ti, A, r, wi, offset_sd, correlated=ci_method != "profile-independent")
        except (ValueError, np.linalg.LinAlgError) as exc:
            em = {"white_fraction": 1.0, "correlation_time_s": 0.0, "dof": float(n_in - p),
                  "inflation_corr": np.ones(p), "inflation": np.ones(p)}
            warn.append(f"error-correlation estimate failed ({exc}); intervals assume independence")
        if ci_method in ("profile", "profile-independent"):
            try:
                ci_int = _profile_ci(model, d, th, rss, inlier, n_in, em["inflation"], em["dof"])
            except (ValueError, np.linalg.LinAlgError) as exc:
                ci_int = [(None, None)] * p
                warn.append(f"profile confidence intervals failed: {exc}")
        else:
            steps = np.diff(ti)
            step = float(np.median(steps[steps > 0])) if np.any(steps > 0) else 1.0
            ell_pts = em["correlation_time_s"] / step
            block = int(round(1.0 + 2.0 * (1.0 - em["white_fraction"]) * ell_pts))
            ci_int, n_ok = _bootstrap_ci(model, d, th, inlier, int(n_bootstrap), rng, block=block,
                                         offset_sd=offset_sd if not model.has_x0 else 0.0)
            if n_ok < n_bootstrap:
                warn.append(f"{n_bootstrap - n_ok} of {n_bootstrap} bootstrap refits failed")
        params = _to_natural(model, th)
        params["t0_s"] += t_ref
        if "D_nm2_per_s" in params:
            params["D_cm2_per_s"] = params["D_nm2_per_s"] * _NM2_TO_CM2
        ci_nat = _internal_ci_to_natural(model, ci_int, t_ref)
        x0_hi = ci_nat.get("x0_nm", (None, None))[1]
        if name == "parabolic" and x0_hi is not None and x0_hi < 0:
            # the same curve as a Deal-Grove law from the contact (module docstring)
            k_eq = prefactor * params["D_nm2_per_s"] / (-2.0 * params["x0_nm"])
            warn.append(
                f"the front's origin lies {-params['x0_nm']:.3g} nm behind the contact "
                f"(x0 95% CI [{ci_nat['x0_nm'][0]:.3g}, {x0_hi:.3g}] nm): the contact point is "
                f"off, or, if it is exactly where Na enters the wire, an interface-limited "
                f"(Deal-Grove) term with k = P*D/(2|x0|) = {k_eq:.3g} nm/s"
            )
        aic, aicc, bic, _ = _criteria(rss, n_in, p)
        fits[name] = ModelFit(
            name=name,
            params=params,
            ci95=ci_nat,
            aic=aic, aicc=aicc, bic=bic, rss=rss, n_points=n_in,
            residuals=x - model.curve(t, th, prefactor),
            time_s=t_abs, inlier=inlier, prefactor=prefactor,
            sigma_nm=math.sqrt(rss / (n_in - p)),
            n_params=p, warnings=warn,
            ci_inflation={_natural(nm): float(c) for nm, c in zip(model.internal, em["inflation"])},
            error_model={"white_fraction": float(em["white_fraction"]),
                         "correlation_time_s": float(em["correlation_time_s"]),
                         "dof": float(em["dof"]),
                         "_inflation_corr": [float(c) for c in em["inflation_corr"]]},
        )
    if not fits:
        raise AnalysisError(
            "kinetics: no model could be fitted ("
            + "; ".join(f"{k}: {v}" for k, v in not_fitted.items()) + ")"
        )
    # model comparison with correlated errors: the log-likelihoods divided by the variance
    # inflation of the model that describes the data best (plain AICc)
    ref_fit = min(fits.values(), key=lambda f: f.aicc)
    c_hat = max(1.0, float(np.median(ref_fit.error_model["_inflation_corr"])))
    for f in fits.values():
        f.error_model.pop("_inflation_corr", None)
        f.qaicc = _criteria(f.rss, f.n_points, f.n_params, c_hat)[3]
    q_min = min(f.qaicc for f in fits.values())
    tied = [f for f in fits.values() if f.qaicc - q_min <= _AICC_TIE]
    best = min(tied, key=lambda f: (f.n_params, f.name == "power", f.qaicc))
    return KineticsResult(
        best=best, fits=fits, not_fitted=not_fitted, prefactor=prefactor,
        ci_method=_CI_JSON_METHOD[ci_method], n_outliers=int(N - n_in),
        outlier_time_s=[float(v) for v in t_abs[~inlier]], origin=origin, c_hat=c_hat,
        offset_sd_nm=offset_sd,
    )
