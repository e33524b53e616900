"""Accuracy of estimate_drift on 300-frame synthetic nanowire movies (issue 3 targets).

The measured numbers are printed (run with -s or -rA).
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from temtrack.pipeline.executor import LocalExecutor
from temtrack.series.drift import estimate_drift


def _rms(err: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum(err ** 2, axis=1))))


def _true_jumps(shifts: np.ndarray, threshold: float = 3.0) -> list[int]:
    return [int(i) + 1 for i in np.where(np.linalg.norm(np.diff(shifts, axis=0), axis=1) > threshold)[0]]


@pytest.fixture(scope="module")
def dose40_runs(wire_dose40):
    movie = wire_dose40[0]
    runs = {}
    for workers in (1, 2):
        t = time.perf_counter()
        runs[workers] = estimate_drift(movie, executor=LocalExecutor(workers))
        runs[f"time_{workers}"] = time.perf_counter() - t
    return runs


def test_dose40_rms_below_0p1_px(wire_dose40, dose40_runs):
    movie, truth, meta = wire_dose40
    res = dose40_runs[2]
    err = res.shifts_px - truth
    rms = _rms(err)
    print(f"\n[drift dose 40, angle {meta['angle_deg']:.0f} deg, drift span {np.ptp(truth, axis=0).round(1)} px] "
          f"RMS error {rms:.4f} px, max |error| {np.abs(err).max():.3f} px; "
          f"{movie.n_frames / dose40_runs['time_1']:.0f} frames/s on 1 thread, "
          f"{movie.n_frames / dose40_runs['time_2']:.0f} frames/s on 2 threads")
    assert res.dy_px[0] == 0 and res.dx_px[0] == 0
    assert rms <= 0.1


def test_dose40_jumps_detected(wire_dose40, dose40_runs):
    _, truth, _ = wire_dose40
    expected = _true_jumps(truth)
    print(f"\n[drift jumps] true {expected}, detected {dose40_runs[2].jump_frames}")
    assert len(expected) == 2
    assert dose40_runs[2].jump_frames == expected


def test_one_and_two_threads_identical(dose40_runs):
    a, b = dose40_runs[1], dose40_runs[2]
    np.testing.assert_array_equal(a.dy_px, b.dy_px)
    np.testing.assert_array_equal(a.dx_px, b.dx_px)
    assert a.jump_frames == b.jump_frames


def test_dose8_60px_drift(wire_dose8):
    movie, truth, _ = wire_dose8
    res = estimate_drift(movie, executor=LocalExecutor(2))
    err = res.shifts_px - truth
    rms = _rms(err)
    # Every shift is relative to frame 0, so frame 0's own noise (about 0.1 px per axis at this
    # dose) is a common offset of the whole series: reported separately.
    offset = err.mean(axis=0)
    print(f"\n[drift dose 8, 60 px drift] RMS error {rms:.4f} px, {_rms(err - offset):.4f} px without the "
          f"common offset {offset.round(3)}, max |error| {np.abs(err).max():.3f} px, "
          f"jumps true {_true_jumps(truth)} detected {res.jump_frames}")
    assert rms <= 0.35
    assert res.jump_frames == _true_jumps(truth)


def test_better_than_skimage_loop(wire_dose40, dose40_runs):
    """Per-frame skimage phase_cross_correlation(upsample_factor=10) against frame 0, same movie."""
    from skimage.registration import phase_cross_correlation

    movie, truth, _ = wire_dose40
    frames = movie.read()
    ref = frames[0]
    # Every 3rd frame keeps the test short; the RMS is compared on the same frames.
    every = 3
    t = time.perf_counter()
    sk = np.array([phase_cross_correlation(ref, f, upsample_factor=10)[0] for f in frames[::every]])
    t_sk = time.perf_counter() - t
    win = np.outer(np.hanning(frames.shape[1]), np.hanning(frames.shape[2])).astype(np.float32)
    sk_w = np.array([phase_cross_correlation(ref * win, f * win, upsample_factor=10)[0] for f in frames[::15]])
    rms_sk_w = _rms(-sk_w - truth[::15])
    # skimage returns the shift that registers the moving frame onto the reference: minus the drift.
    rms_sk = _rms(-sk - truth[::every])
    rms_ours = _rms(dose40_runs[2].shifts_px[::every] - truth[::every])
    fps_sk = len(sk) / t_sk
    fps_ours = len(frames) / dose40_runs["time_2"]
    print(f"\n[drift vs skimage, dose 40] skimage loop RMS {rms_sk:.4f} px at {fps_sk:.0f} frames/s "
          f"(with a Hann window applied first: RMS {rms_sk_w:.4f} px on every 15th frame); "
          f"temtrack RMS {rms_ours:.4f} px at {fps_ours:.0f} frames/s (2 threads, "
          f"{len(frames) / dose40_runs['time_1']:.0f} on 1); speed ratio {fps_ours / fps_sk:.1f}x")
    assert rms_ours < rms_sk
