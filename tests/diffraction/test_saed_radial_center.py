"""Azimuthal integration (against pyFAI and analytic rings), masks, centre and ellipticity."""
from __future__ import annotations

import numpy as np
import pytest

from temtrack.errors import ParameterError
from temtrack.frame.diffraction_center import coarse_center, find_center
from temtrack.frame.radial import azimuthal_average, detect_mask, radial_bins, radial_profile
from temtrack.synthetic.saed import make_saed_movie


@pytest.fixture(scope="module")
def saed3():
    """Three 512x512 frames: beta-Sn, the halo-rich middle, Na15Sn4."""
    t = np.arange(3) * 1.0
    phases = {"beta-Sn": np.array([1.0, 0.2, 0.0]), "amorphous-NaxSn": np.array([0.0, 0.6, 0.1]),
              "Na15Sn4": np.array([0.0, 0.2, 0.9])}
    return make_saed_movie(n_frames=3, shape=(512, 512), phases=phases, seed=3, frame_interval_s=t[1])


def _ring_image(shape, center, radius, sigma, ellipticity=0.0, angle=0.0, oversample=4):
    from temtrack.frame.radial import polar_coordinates
    o = (np.arange(oversample) + 0.5) / oversample - 0.5
    r = polar_coordinates(shape, center_yx=center, ellipticity=ellipticity, ellipticity_angle_deg=angle,
                          offsets=o, angle=False)
    img = 100.0 * np.exp(-0.5 * ((r - radius) / sigma) ** 2) + 10.0
    return img.mean(axis=(2, 3))


def test_profile_peak_at_the_analytic_radius_with_ellipse_correction():
    shape, c = (256, 256), (130.3, 124.8)
    img = _ring_image(shape, c, 80.0, 2.0, ellipticity=0.015, angle=40.0)
    q, prof = radial_profile(img, center_yx=c, ellipticity=0.015, ellipticity_angle_deg=40.0,
                             q_edges_nm_inv=np.arange(60, 100.01, 0.25), oversample=3)
    k = np.nanargmax(prof)
    y0, y1, y2 = prof[k - 1:k + 2]
    peak = q[k] + 0.25 * 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    # Without the ellipse correction the ring smears over +-0.6 px.
    _, prof_raw = radial_profile(img, center_yx=c, q_edges_nm_inv=np.arange(60, 100.01, 0.25), oversample=3)
    print(f"ring radius {peak:.4f} px (truth 80); peak height corrected {np.nanmax(prof):.2f} vs raw {np.nanmax(prof_raw):.2f}")
    assert abs(peak - 80.0) < 0.02
    assert np.nanmax(prof) > np.nanmax(prof_raw) + 1.0


def test_masked_pixels_do_not_bias_the_mean_and_stack_equals_single():
    shape, c = (200, 220), (101.2, 108.7)
    img = _ring_image(shape, c, 60.0, 3.0)
    mask = np.ones(shape, bool)
    mask[:, :90] = False                      # a large blocked region
    bins = radial_bins(shape, center_yx=c, q_edges_nm_inv=np.arange(30, 90.01, 0.5), mask=mask)
    full = azimuthal_average(img, radial_bins(shape, center_yx=c, q_edges_nm_inv=np.arange(30, 90.01, 0.5)))
    part = azimuthal_average(img, bins)
    assert np.nanmax(np.abs(part - full) / full) < 0.01
    stack = azimuthal_average(np.stack([img, 2 * img]), bins)
    np.testing.assert_allclose(stack[0], part)
    np.testing.assert_allclose(stack[1], 2 * part)
    med = azimuthal_average(img, bins, statistic="median")
    assert np.nanmax(np.abs(med - part) / part) < 0.05
    # The sparse-matrix view of the same map gives the same sums.
    M = bins.matrix
    np.testing.assert_allclose((M @ img.ravel()) / np.asarray(M.sum(axis=1)).ravel(), part, rtol=1e-10)


def test_mean_is_the_sub_pixel_average_and_the_map_is_built_once():
    shape, c = (90, 110), (44.3, 52.8)
    rng = np.random.default_rng(3)
    img = _ring_image(shape, c, 30.0, 2.0) + rng.normal(0, 0.5, shape)
    mask = np.ones(shape, bool)
    mask[10:40, 60:75] = False
    bins = radial_bins(shape, center_yx=c, q_edges_nm_inv=np.arange(5, 40.01, 0.5), mask=mask, oversample=3)
    # The definition: every valid sub-pixel adds its pixel's value to its bin, weight 1/oversample^2.
    sums = np.bincount(bins.sub_bin, weights=img.ravel()[bins.sub_pixel], minlength=bins.q_nm_inv.size)
    want = sums / bins.oversample ** 2 / bins.coverage
    got = azimuthal_average(img.astype(np.float32), bins)
    np.testing.assert_allclose(got, want, rtol=1e-6)   # float32 frames: their own rounding
    np.testing.assert_allclose(azimuthal_average(img, bins), want, rtol=1e-12)
    assert bins.matrix is bins.matrix


def test_agrees_with_pyfai_within_one_percent():
    pyFAI = pytest.importorskip("pyFAI")
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    frames, truth = make_saed_movie(n_frames=1, shape=(256, 256), ellipticity=0.0, pixel_size_inv_nm=0.03,
                                    center_drift_px=(0, 0), crystallite_size_nm={"beta-Sn": 8.0}, seed=5)
    f = frames[0].astype(np.float32)
    cy, cx = truth["center_yx"][0]
    mask = detect_mask(f)
    edges = np.arange(30.0, 118.01, 0.5)
    ps = 1e-4  # pyFAI geometry in m; its PONI sits on pixel corners, ours on pixel centres
    ai = AzimuthalIntegrator(dist=1.0, poni1=(cy + 0.5) * ps, poni2=(cx + 0.5) * ps, pixel1=ps, pixel2=ps)
    for method in (("bbox", "csr", "cython"), ("full", "csr", "cython")):
        ref = ai.integrate1d(f, npt=edges.size - 1, unit="r_mm", radial_range=(edges[0] * 0.1, edges[-1] * 0.1),
                             method=method, correctSolidAngle=False, mask=~mask)
        ours = azimuthal_average(f, radial_bins(f.shape, center_yx=(cy, cx), q_edges_nm_inv=edges, mask=mask,
                                                oversample=3))
        np.testing.assert_allclose(ref.radial / 0.1, 0.5 * (edges[1:] + edges[:-1]), atol=1e-4)
        # pyFAI folds pixels beyond the radial range into its end bins: compare the inner bins.
        rel = np.abs(ours[1:-1] - ref.intensity[1:-1]) / ref.intensity[1:-1]
        print(f"pyFAI {pyFAI.version} {method[0]}: max rel diff {rel.max():.4%}, median {np.median(rel):.4%}")
        assert rel.max() < 0.01


def test_mask_finds_beam_stop_and_saturation(saed3):
    frames, truth = saed3
    f = frames[0].astype(np.float32)
    mask = detect_mask(f)
    masked = 1 - mask.mean()
    print(f"masked fraction {masked:.3%}, beam stop truth {truth['beam_stop_fraction']:.3%}")
    assert not mask[f >= truth["saturation"]].any()
    assert masked >= truth["beam_stop_fraction"]
    assert masked < truth["beam_stop_fraction"] + 0.05


def test_centre_and_ellipticity_subpixel(saed3):
    frames, truth = saed3
    errs = []
    for i in range(3):
        f = frames[i].astype(np.float32)
        mask = detect_mask(f)
        c0 = coarse_center(f, mask=mask)
        out = find_center(f, mask=mask)
        err = np.hypot(*(np.subtract(out["center_yx"], truth["center_yx"][i])))
        errs.append(err)
        print(f"frame {i}: coarse err {np.hypot(*np.subtract(c0, truth['center_yx'][i])):.3f} px, "
              f"refined err {err:.4f} px, ellipticity {out['ellipticity']:.4f} (truth {truth['ellipticity']}) "
              f"at {out['ellipticity_angle_deg']:.1f} deg (truth {truth['ellipticity_angle_deg']})")
        assert np.hypot(*np.subtract(c0, truth["center_yx"][i])) < 1.5
        if i != 1:  # the halo-dominated frame has few sharp rings
            assert abs(out["ellipticity"] - truth["ellipticity"]) < 0.001
            assert abs(out["ellipticity_angle_deg"] - truth["ellipticity_angle_deg"]) < 3.0
    assert max(errs) < 0.1


def test_bad_arguments_raise_parameter_errors():
    with pytest.raises(ParameterError, match="oversample"):
        radial_bins((10, 10), center_yx=(5, 5), q_edges_nm_inv=[1, 2, 3], oversample=0)
    with pytest.raises(ParameterError, match="increasing"):
        radial_bins((10, 10), center_yx=(5, 5), q_edges_nm_inv=[3, 2, 1])
    with pytest.raises(ParameterError, match="2D"):
        find_center(np.zeros((3, 3, 3)))
