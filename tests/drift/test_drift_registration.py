"""Unit tests of temtrack.frame.registration and the small API of temtrack.series.drift."""
from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from scipy import ndimage

from temtrack.errors import Cancelled, ParameterError
from temtrack.frame import registration as reg
from temtrack.io.movie import movie_from_array
from temtrack.pipeline.executor import LocalExecutor
from temtrack.series.drift import DriftResult, aligned_movie, estimate_drift


def _texture(shape, seed=0, sigma=2.0):
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap") * 40 + 100).astype(np.float32)


def test_sign_convention_and_subpixel_exact_on_periodic_shift():
    img = _texture((128, 128))
    true = np.array([[3.3, -7.6], [0.25, 0.4], [-12.7, 20.1]])
    frames = reg.shift_frames(np.repeat(img[None], 3, axis=0), true, order="fourier")
    ref = reg.reference_spectrum(img, window="none")
    for subpixel, tol in (("gaussian", 5e-3), ("newton", 1e-5), ("dft", 0.03)):
        shifts, quality = reg.register_to_reference(frames, ref, window="none", subpixel=subpixel)
        err = np.abs(shifts - true).max()
        print(f"\n[registration {subpixel}] max error {err:.2e} px")
        assert err < tol
        assert np.all(quality > 10)


def test_taylor_template_registration_exact_and_gain_invariant():
    """Least squares on the Taylor-expanded template: sub-pixel shifts, beam-current gain and offset."""
    img = _texture((96, 112), seed=6, sigma=2.5)
    true = np.array([[0.3, -0.45], [-0.6, 0.2], [0.05, 0.7], [0.0, 0.0]])
    frames = reg.shift_frames(np.repeat(img[None], 4, axis=0), true, order="fourier")
    frames = frames * np.array([1.0, 1.1, 0.9, 1.2], np.float32)[:, None, None] + 5.0
    taper = np.outer(np.hanning(96), np.hanning(112))
    basis = reg.template_basis(img, taper + 1e-3, noise_psd=np.full(48, 1e-6), n_frames=1000)
    shifts, ok = reg.register_to_template(frames, basis)
    err = np.abs(shifts - true).max()
    print(f"\n[taylor registration] max error {err:.1e} px")
    assert ok.all() and err < 3e-3
    with pytest.raises(ParameterError):
        reg.register_to_template(frames[:, :50], basis)
    with pytest.raises(ParameterError):
        reg.template_basis(img, -taper, noise_psd=np.ones(48), n_frames=1)


def test_radial_power_of_white_noise_is_its_variance():
    rng = np.random.default_rng(7)
    noise = rng.normal(scale=3.0, size=(20, 64, 80))
    psd = reg.radial_power(np.fft.rfft2(noise), (64, 80))
    print(f"\n[radial power] white noise of variance 9: {psd.min():.2f}-{psd.max():.2f}")
    assert np.all(np.abs(psd[1:] / 9.0 - 1) < 0.25)


def test_register_pairs_and_max_shift():
    img = _texture((96, 96), seed=1)
    path = np.array([[0, 0], [1.5, -2.0], [9.0, 4.0]])
    frames = reg.shift_frames(np.repeat(img[None], 3, axis=0), path, order="fourier")
    s, _ = reg.register_pairs(frames, window="none")
    np.testing.assert_allclose(s, np.diff(path, axis=0), atol=5e-3)
    # A search radius below the true 8.5 px step cannot find it.
    s_lim, _ = reg.register_pairs(frames, window="none", max_shift_px=4.0)
    assert np.hypot(*s_lim[1]) <= 4.0 + 0.5


def test_shift_frames_bilinear_matches_fourier_inside():
    img = _texture((64, 64), seed=2, sigma=3.0)
    a = reg.shift_frames(img, [2.25, -1.5], order=1)
    b = reg.shift_frames(img, [2.25, -1.5], order="fourier")
    assert np.abs(a[8:-8, 8:-8] - b[8:-8, 8:-8]).max() < 0.05 * np.ptp(img)


def test_bad_arguments():
    with pytest.raises(ParameterError):
        reg.window_2d((64, 64), kind="blackman")
    with pytest.raises(ParameterError):
        reg.register_spectra(np.zeros((1, 8, 5), np.complex64), np.zeros((8, 5), np.complex64), shape=(8, 8),
                             whiten=2.0)
    with pytest.raises(ParameterError):
        reg.shift_frames(np.zeros((2, 8, 8)), np.zeros((3, 2)))
    with pytest.raises(ParameterError):
        reg.register_pairs(np.zeros((1, 16, 16)))


def _drifting_movie(n=24, shape=(128, 128), seed=3, dose=30.0):
    """Texture plus a compact bright blob (the 'feature'), drifting with a jump at frame 10."""
    rng = np.random.default_rng(seed)
    big = (_texture((shape[0] + 64, shape[1] + 64), seed=seed) - 100) * 5 + 100
    yy, xx = np.mgrid[0:big.shape[0], 0:big.shape[1]]
    big += 150 * np.exp(-((yy - 90) ** 2 + (xx - 100) ** 2) / (2 * 3.0 ** 2))
    steps = rng.normal(scale=0.4, size=(n, 2))
    steps[0] = 0
    steps[10] += [6.0, -8.0]
    drift = np.cumsum(steps, axis=0)
    shifted = reg.shift_frames(np.repeat(big[None], n, axis=0), drift, order="fourier")
    frames = rng.poisson(np.clip(shifted[:, 32:32 + shape[0], 32:32 + shape[1]], 0, None) * dose / 100.0)
    return movie_from_array(frames.astype(np.uint16), pixel_size=0.5, frame_interval_s=0.1), drift, (90 - 32, 100 - 32)


def test_small_movie_drift_jump_and_json():
    movie, drift, _ = _drifting_movie()
    res = estimate_drift(movie, executor=LocalExecutor(1))
    err = res.shifts_px - drift
    print(f"\n[drift small movie] RMS {np.sqrt(np.mean(np.sum(err ** 2, 1))):.4f} px")
    assert np.sqrt(np.mean(np.sum(err ** 2, axis=1))) < 0.15
    assert 10 in res.jump_frames
    back = DriftResult.from_json(res.to_json())
    np.testing.assert_array_equal(back.dy_px, res.dy_px)
    assert back.jump_frames == res.jump_frames
    y0, y1, x0, x1 = res.common_fov(movie.frame_shape)
    assert 0 <= y0 < y1 <= 128 and 0 <= x0 < x1 <= 128
    assert y0 >= np.ceil(np.max(-res.dy_px) - 1e-6) and y1 - 1 + res.dy_px.max() <= 127 + 1e-6


def test_aligned_movie_keeps_feature_still_and_pickles():
    movie, drift, (fy, fx) = _drifting_movie(seed=4, dose=1000.0)
    res = estimate_drift(movie, executor=LocalExecutor(1))
    view = aligned_movie(movie, res)
    y0, y1, x0, x1 = res.common_fov(movie.frame_shape)
    assert view.frame_shape == (y1 - y0, x1 - x0)
    assert view.pixel_size == movie.pixel_size and np.array_equal(view.times_s, movie.times_s)
    frames = view.read()
    # Centroid of the blob in a window around its frame-0 position (in the cropped view).
    cy, cx = fy - y0, fx - x0
    win = frames[:, cy - 8:cy + 9, cx - 8:cx + 9].astype(np.float64)
    win -= np.median(frames[:, cy - 20:cy + 21, cx - 20:cx + 21], axis=(1, 2))[:, None, None]
    win = np.clip(win, 0, None)
    yy, xx = np.mgrid[-8:9, -8:9]
    c = np.stack([(win * yy).sum((1, 2)) / win.sum((1, 2)), (win * xx).sum((1, 2)) / win.sum((1, 2))], axis=1)
    wander = np.abs(c - c[0]).max()
    raw_wander = np.abs(drift - drift.mean(axis=0)).max()
    print(f"\n[aligned movie] feature wanders {wander:.3f} px (raw movie: {raw_wander:.1f} px)")
    assert wander < 0.2
    again = pickle.loads(pickle.dumps(view))
    np.testing.assert_array_equal(again.read(3, 5), view.read(3, 5))
    np.testing.assert_array_equal(view.frames[4], frames[4])


def test_roi_anchor_ignores_moving_object():
    """Half of the field holds an object moving on its own; an ROI on the static part ignores it."""
    movie, drift, _ = _drifting_movie(n=16, seed=5)
    frames = movie.read()
    rng = np.random.default_rng(0)
    blob = _texture((64, 64), seed=9, sigma=1.5) * 3
    for i in range(frames.shape[0]):
        y = 60 + int(2 * i)  # moves 2 px per frame down, independent of the drift
        frames[i, y - 32:y + 32, 0:64] = rng.poisson(np.clip(blob, 0, None) * 0.3)
    m = movie_from_array(frames, pixel_size=0.5)
    res = estimate_drift(m, roi=(70, 10, 50, 100), executor=LocalExecutor(1))
    err = np.sqrt(np.mean(np.sum((res.shifts_px - drift) ** 2, axis=1)))
    print(f"\n[drift ROI anchor] RMS {err:.4f} px")
    assert err < 0.2
    assert "ROI" in res.method


def test_bad_input_and_cancel_and_progress():
    movie, _, _ = _drifting_movie(n=12)
    one = movie_from_array(movie.read(0, 1), pixel_size=0.5)
    r1 = estimate_drift(one)
    assert r1.dy_px.tolist() == [0.0] and r1.jump_frames == []
    with pytest.raises(ParameterError):
        estimate_drift(movie, reference=99)
    with pytest.raises(ParameterError):
        estimate_drift(movie, roi=(100, 100, 64, 64))
    with pytest.raises(ParameterError):
        estimate_drift(movie, reference="median")
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        estimate_drift(movie, cancel=ev)
    calls = []
    estimate_drift(movie, reference="mean", progress=lambda d, t: calls.append((d, t)), chunk_frames=3)
    assert calls[-1] == (24, 24)
    r_int = estimate_drift(movie, reference=3)
    assert r_int.dy_px[0] == 0.0
