"""Temporal regularisation of particle radius series: trend filter, onset corner, crack break."""
from __future__ import annotations

import numpy as np
import pytest

from temtrack.errors import ParameterError
from temtrack.series.particles import onset_from_area, regularise_radius, trend_filter


def _swelling(t, onset, tau=10.0, r0=15.0, ratio=2.2):
    """Radius of a particle swelling as in the synthetic movies (corner at the onset)."""
    p = np.clip((t - onset) / tau, 0, 1)
    return r0 * (1 + (ratio - 1) * (1 - (1 - p) ** 3)) ** (1 / 3)


def test_trend_filter_averages_noise_and_keeps_the_corner():
    rng = np.random.default_rng(0)
    t = np.arange(40.0)
    errs_raw, errs_tf, corner = [], [], []
    for _ in range(50):
        onset = rng.uniform(8, 25)
        r = _swelling(t, onset)
        y = r * (1 + 0.01 * rng.normal(size=t.size))
        x = regularise_radius(t, y, onset_s=onset_from_area(t, np.pi * y ** 2)[0])
        errs_raw.append(np.abs((y / r) ** 2 - 1))
        errs_tf.append(np.abs((x / r) ** 2 - 1))
        i = int(np.ceil(onset))
        corner.append(np.abs((x[i - 1:i + 2] / r[i - 1:i + 2]) ** 2 - 1))
    raw95, tf95 = (100 * np.percentile(np.concatenate(e), 95) for e in (errs_raw, errs_tf))
    corner95 = 100 * np.percentile(np.concatenate(corner), 95)
    print(f"area error p95: raw {raw95:.2f}%, regularised {tf95:.2f}% (frames at the corner {corner95:.2f}%)")
    assert tf95 < 0.75 * raw95
    assert corner95 < 1.2 * raw95  # the onset corner is not rounded off beyond the raw noise


def test_trend_filter_ignores_a_wrong_frame_and_passes_nan():
    t = np.arange(30.0)
    y = 10 + 0.02 * np.sin(t)
    y[12] = 13.0  # a fit that converged on a wrong solution
    y[20] = np.nan
    x = trend_filter(y)
    assert abs(x[12] - 10) < 0.1
    assert np.isfinite(x[20])
    r = regularise_radius(t, y)
    assert np.isnan(r[20]) and abs(r[12] - 10) < 0.1


def test_regularise_radius_keeps_the_break_at_a_crack():
    t = np.arange(30.0)
    rng = np.random.default_rng(2)
    y = np.where(t < 18, 12.0, 10.0) + 0.05 * rng.normal(size=t.size)
    x = regularise_radius(t, y, break_index=18)
    assert np.all(np.abs(x[:18] - 12) < 0.1) and np.all(np.abs(x[18:] - 10) < 0.1)
    # Without the break a large step is still followed (two corners), only less cleanly.
    merged = regularise_radius(t, y)
    truth = np.where(t < 18, 12.0, 10.0)
    print(f"step: max error {np.abs(x - truth).max():.3f} with the break, {np.abs(merged - truth).max():.3f} without")
    assert np.abs(merged - truth).max() < 0.5


def test_onset_of_a_step_rise():
    # The whole rise within one frame: the tangent goes through the last baseline frame.
    t = np.arange(30.0)
    a = np.where(t < 13, 360.0, 600.0) + np.where(t == 13, -90.0, 0.0)
    onset, a0 = onset_from_area(t, a)
    print("step onset:", onset)
    assert 11.5 <= onset <= 13.0 and a0 == 360.0


def test_validation():
    with pytest.raises(ParameterError):
        trend_filter(np.ones((3, 3)))
    with pytest.raises(ParameterError):
        trend_filter(np.ones(10), lam=-1)
    with pytest.raises(ParameterError):
        regularise_radius(np.arange(5.0), np.ones(4))
    assert np.all(np.isnan(trend_filter([np.nan, 1.0, np.nan])))
