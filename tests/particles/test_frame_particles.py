"""Per-frame particle functions: projected-sphere fit, segmentation, fragment counting."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from temtrack.errors import ParameterError
from temtrack.frame.particles import (count_fragments, fit_projected_sphere, segment_particles,
                                      sphere_attenuation)


def _render(shape, *, y, x, r, cs, rc=0.0, q=0.0, bg=1000.0, blur=0.8, dose_rng=None):
    att = sphere_attenuation(shape, y=y, x=x, radius_px=r, shell_att_per_px=cs, core_radius_px=rc,
                             core_att_per_px=q * cs)
    img = ndimage.gaussian_filter(bg * np.exp(-att), blur)
    return img if dose_rng is None else dose_rng.poisson(img).astype(float)


def test_sphere_fit_recovers_radius_without_noise():
    img = _render((81, 81), y=40.3, x=39.6, r=20.0, cs=0.025)
    fit = fit_projected_sphere(img, y0=41.0, x0=39.0, r0=17.0, with_core=False, blur_px=0.8)
    print(f"noise-free: R = {fit.radius_px:.3f} px (true 20), centre ({fit.y:.2f}, {fit.x:.2f})")
    assert fit.ok
    assert abs(fit.radius_px - 20.0) < 0.1
    assert abs(fit.y - 40.3) < 0.1 and abs(fit.x - 39.6) < 0.1


def test_sphere_fit_low_dose_core_shell():
    rng = np.random.default_rng(3)
    errs, core_errs = [], []
    for _ in range(8):
        img = _render((91, 91), y=45.2, x=44.7, r=24.0, cs=0.015, rc=14.0, q=0.8, bg=40.0, dose_rng=rng)
        fit = fit_projected_sphere(img, y0=45.0, x0=45.0, r0=22.0, with_core=True, blur_px=0.8)
        errs.append(fit.radius_px / 24.0 - 1)
        core_errs.append(fit.core_radius_px - 14.0)
    errs, core_errs = np.array(errs), np.array(core_errs)
    print(f"40 e-/px: radius error mean {100 * errs.mean():.2f}% sd {100 * errs.std():.2f}%; "
          f"core radius error mean {np.nanmean(core_errs):.2f} px sd {np.nanstd(core_errs):.2f} px")
    assert abs(errs.mean()) < 0.01
    assert np.all(np.isfinite(core_errs))
    assert abs(np.mean(core_errs)) < 1.0


def test_no_core_reported_for_uniform_sphere():
    rng = np.random.default_rng(5)
    img = _render((81, 81), y=40, x=40, r=20.0, cs=0.025, bg=40.0, dose_rng=rng)
    fit = fit_projected_sphere(img, y0=40, x0=40, r0=19.0, with_core=True, blur_px=0.8)
    assert np.isnan(fit.core_radius_px)
    assert abs(fit.radius_px - 20.0) < 0.4


def test_mask_and_extra_attenuation_remove_a_touching_neighbour():
    shape = (101, 101)
    a1 = sphere_attenuation(shape, y=50, x=35, radius_px=18, shell_att_per_px=0.025)
    a2 = sphere_attenuation(shape, y=50, x=35 + 18 + 14, radius_px=14, shell_att_per_px=0.03)
    img = ndimage.gaussian_filter(1000 * np.exp(-np.maximum(a1, a2)), 0.8)
    yy, xx = np.mgrid[0:101, 0:101]
    weight = (yy - 50) ** 2 + (xx - 67) ** 2 > (14 + 2.1) ** 2
    fit = fit_projected_sphere(img, y0=50, x0=35, r0=16, weight=weight, with_core=False, blur_px=0.8,
                               extra_attenuation=np.where(a1 > 0, 0, a2))
    print(f"touching pair: R = {fit.radius_px:.3f} (true 18)")
    assert abs(fit.radius_px - 18) < 0.15


def test_fit_validates_arguments():
    with pytest.raises(ParameterError):
        fit_projected_sphere(np.ones((3, 3)), y0=1, x0=1, r0=1)
    with pytest.raises(ParameterError):
        fit_projected_sphere(np.ones((20, 20)), y0=10, x0=10, r0=-1)
    with pytest.raises(ParameterError):
        fit_projected_sphere(np.ones((20, 20)), y0=10, x0=10, r0=5, weight=np.ones((5, 5), bool))


def test_segmentation_splits_touching_pair():
    rng = np.random.default_rng(0)
    shape = (160, 200)
    att = np.maximum(sphere_attenuation(shape, y=80, x=60, radius_px=22, shell_att_per_px=0.025),
                     sphere_attenuation(shape, y=80, x=60 + 22 + 16, radius_px=16, shell_att_per_px=0.025))
    att = np.maximum(att, sphere_attenuation(shape, y=30, x=160, radius_px=10, shell_att_per_px=0.025))
    img = rng.poisson(ndimage.gaussian_filter(5 * 40 * np.exp(-att), 0.8)).astype(float)
    labels = segment_particles(img, polarity="dark")
    print("labels:", labels.max())
    assert labels.max() == 3
    assert labels[80, 60] != labels[80, 98] and labels[80, 60] > 0 and labels[80, 98] > 0
    with pytest.raises(ParameterError):
        segment_particles(img, polarity="grey")


def test_count_fragments_split_and_hole():
    shape = (61, 61)
    yy, xx = np.mgrid[0:61, 0:61]
    att = sphere_attenuation(shape, y=30, x=30, radius_px=20, shell_att_per_px=0.03)
    whole = 1000 * np.exp(-att)
    split = 1000 * np.exp(-np.where(np.abs(xx - 30) < 2, 0, att))
    hole = 1000 * np.exp(-np.where(np.hypot(yy - 30, xx - 36) < 6, 0, att))
    thr = 1000 * 0.5 * (1 + np.exp(-2 * 20 * np.sqrt(0.75) * 0.03))
    assert count_fragments(whole, threshold=thr, sigma_px=1.0) == (1, 0)
    assert count_fragments(split, threshold=thr, sigma_px=1.0)[0] == 2
    assert count_fragments(hole, threshold=thr, sigma_px=1.0) == (1, 1)
