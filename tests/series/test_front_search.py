"""The front's width search gives the same width as evaluating every candidate."""
from __future__ import annotations

import math

import numpy as np
from scipy import special

from temtrack.series.front import _best_width


def test_width_search_matches_every_candidate():
    cands = np.linspace(1.0, 20.0, 77)
    rng = np.random.default_rng(0)
    for trial in range(12):
        w_true = rng.uniform(1.5, 15.0)
        rel = rng.uniform(-30, 30, size=int(rng.integers(200, 4000)))
        vals = 0.5 * special.erfc(rel / (math.sqrt(2) * w_true)) + rng.normal(0, rng.uniform(0.02, 0.6), rel.size)
        full = [np.mean((vals - 0.5 * special.erfc(rel / (math.sqrt(2) * c))) ** 2) for c in cands]
        assert _best_width(rel, vals, cands) == int(np.argmin(full)), trial
