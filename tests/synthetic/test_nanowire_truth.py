"""The generator's truth must be exactly what it renders: these tests check it independently."""
import math

import numpy as np
import pytest

from temtrack.errors import ParameterError
from temtrack.synthetic.nanowire import front_position_nm, make_nanowire_movie


def test_front_law_satisfies_mixed_equation():
    t = np.linspace(0, 100, 201)
    D, k, t0 = 800.0, 15.0, 4.0
    x = front_position_nm(t, D_nm2_per_s=D, k_nm_per_s=k, t0_s=t0)
    tau = np.clip(t - t0, 0, None)
    np.testing.assert_allclose(x ** 2 / (2 * D) + x / k, tau, atol=1e-9)
    assert np.all(x[t <= t0] == 0) and np.all(np.diff(x) >= 0)
    xp = front_position_nm(t, D_nm2_per_s=D, t0_s=t0)
    np.testing.assert_allclose(xp ** 2, 2 * D * tau, rtol=1e-12)
    x4 = front_position_nm(t, D_nm2_per_s=D, t0_s=t0, prefactor=4)
    np.testing.assert_allclose(x4 ** 2, 4 * D * tau, rtol=1e-12)


def test_truth_fields_and_dose():
    frames, truth = make_nanowire_movie(n_frames=6, shape=(128, 160), dose=25, seed=2, angle_deg=30,
                                        drift_px=4, n_jumps=0, flicker=0.0)
    assert frames.shape == (6, 128, 160) and frames.dtype == np.uint16
    assert len(truth["front_position_nm"]) == 6 and len(truth["drift_dx_px"]) == 6
    assert truth["drift_dx_px"][0] == 0 and truth["drift_dy_px"][0] == 0
    # Vacuum far from the wire: the mean count is dose * exp(-(offset + film)) ~ dose * 0.86
    corner = frames[:, :12, -12:].astype(float)
    assert 0.75 * 25 < corner.mean() < 0.95 * 25
    x0, y0, x1, y1 = truth["line_px"]
    assert math.isclose(math.degrees(math.atan2(-(y1 - y0), x1 - x0)) % 360, 30, abs_tol=1e-6)
    assert truth["kinetics"]["model"] == "parabolic" and truth["kinetics"]["D_nm2_per_s"] > 0


def test_drift_truth_matches_rendered_displacement():
    """Noise-free rendering: frame i is frame 0 moved by exactly (dy, dx) (found by least squares)."""
    from scipy import ndimage, optimize
    frames, truth = make_nanowire_movie(n_frames=5, shape=(160, 160), seed=5, drift_px=10, n_jumps=1,
                                        jump_px=(6, 8), flicker=0.0, t0_s=1e9, noise=False)
    # Blurring commutes with shifting and keeps cubic interpolation accurate at the sharp edges.
    blurred = ndimage.gaussian_filter(frames.astype(float), (0, 1, 1))
    f0 = blurred[0]
    inner = (slice(30, -30), slice(30, -30))
    for i in range(1, 5):
        def cost(s):
            return np.mean((ndimage.shift(f0, s, order=3, mode="nearest")[inner] - blurred[i][inner]) ** 2)
        guess = np.round([truth["drift_dy_px"][i], truth["drift_dx_px"][i]])
        found = optimize.minimize(cost, guess, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-10}).x
        assert found[0] == pytest.approx(truth["drift_dy_px"][i], abs=0.03)
        assert found[1] == pytest.approx(truth["drift_dx_px"][i], abs=0.03)


def test_reacted_part_swells_to_d1():
    frames, truth = make_nanowire_movie(n_frames=2, shape=(200, 200), dose=5e4, seed=1, angle_deg=0,
                                        drift_px=0, n_jumps=0, flicker=0.0, t0_s=-1e4, D_nm2_per_s=50,
                                        d0_nm=30, d1_nm=48, pixel_size_nm=1.0)
    x0, y0, x1, y1 = truth["line_px"]
    img = frames[1].astype(float)
    col_reacted = int(round(x0 + 0.3 * (x1 - x0)))
    # Average along the wire so the support film's texture does not count as wire.
    profile = img[:, col_reacted - 15:col_reacted + 15].mean(axis=1)
    background = np.median(img[:20, :])
    width_px = np.count_nonzero(profile < background * 0.93)
    assert width_px == pytest.approx(48, abs=4)
    assert truth["front_position_nm"][1] > 0.5 * truth["wire_length_nm"]


def test_rejects_impossible_parameters():
    with pytest.raises(ParameterError):
        make_nanowire_movie(n_frames=0)
    with pytest.raises(ParameterError):
        make_nanowire_movie(shape=(16, 16))
