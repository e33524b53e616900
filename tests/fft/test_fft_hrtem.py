"""Accuracy and contracts of the HRTEM fringe (``fft``) pipeline against synthetic truth."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from temtrack import movie_from_array
from temtrack.errors import Cancelled, ParameterError, TemtrackError
from temtrack.frame.spectrum import check_roi, refine_spots, window_2d, windowed_roi
from temtrack.pipeline.executor import LocalExecutor
from temtrack.pipeline.fft import FFTRecipe, run_fft, write_fft_results
from temtrack.synthetic.hrtem import make_hrtem_movie, write_hrtem_movie


@pytest.fixture(scope="module")
def hrtem():
    # 24 frames, 256 px ROI, grain shrinking to 40% of its area, amorphous halo on the Sn spots.
    frames, truth = make_hrtem_movie(n_frames=24, final_fraction=0.4, seed=0)
    movie = movie_from_array(frames, pixel_size=truth["pixel_size_nm"],
                             frame_interval_s=truth["frame_interval_s"])
    result = run_fft(movie, FFTRecipe(), executor=LocalExecutor(1))
    # Match detected sets to truth by angle.
    t_ang = np.array([s["angle_deg"] for s in truth["sets"]])
    order = [int(np.argmin(np.abs(t_ang - a))) for a in result.series.reference_angle_deg]
    return truth, result, order


def test_finds_both_sn_fringe_sets(hrtem):
    truth, result, order = hrtem
    assert result.series.n_sets == 2 and sorted(order) == [0, 1]
    for j, k in enumerate(order):
        err = abs(result.series.reference_angle_deg[j] - truth["sets"][k]["angle_deg"])
        print(f"set {j}: angle error {err:.4f} deg")
        assert err < 0.1


def test_fringe_spacing_within_half_pm(hrtem):
    truth, result, order = hrtem
    frac = np.array(truth["crystalline_fraction_rel"])
    still = np.array(truth["lattice_expansion_pct"]) == 0
    for j, k in enumerate(order):
        err_pm = 1000 * (result.series.d_nm[:, j] - np.array(truth["sets"][k]["d_nm"]))
        steady = abs(err_pm[still].mean())
        rms = math.sqrt(np.mean(err_pm[frac > 0.5] ** 2))
        print(f"set {j} (d0 = {truth['sets'][k]['d0_nm']} nm): |mean error| before expansion "
              f"{steady:.3f} pm, per-frame RMS (grain > 50%) {rms:.3f} pm, "
              f"max all frames {np.abs(err_pm).max():.3f} pm")
        assert steady < 0.5
        assert rms < 0.5


def test_lattice_expansion_recovered(hrtem):
    truth, result, _ = hrtem
    true_pct = np.array(truth["lattice_expansion_pct"])
    got = result.series.expansion_pct_mean
    err = np.abs(got - true_pct)
    final = abs(got[-3:].mean() - true_pct[-3:].mean())
    print(f"expansion at the end {got[-1]:.3f}% (truth {true_pct[-1]:.3f}%), max per-frame error "
          f"{err.max():.3f}%, error of the last-3-frame mean {final:.3f}%")
    assert true_pct[-1] == pytest.approx(1.5)
    assert err.max() < 0.2


def test_crystalline_fraction_follows_truth(hrtem):
    truth, result, _ = hrtem
    true_frac = np.array(truth["crystalline_fraction_rel"])
    got = result.series.crystalline_fraction
    r = np.corrcoef(true_frac, got)[0, 1]
    print(f"crystalline fraction: correlation {r:.4f}; first/last {got[0]:.3f}/{got[-1]:.3f} "
          f"(truth area {true_frac[0]:.3f}/{true_frac[-1]:.3f})")
    assert r > 0.9
    assert got[-1] < 0.8 * got[0]


def test_results_folder(hrtem, tmp_path):
    _, result, _ = hrtem
    out = write_fft_results(result, tmp_path / "fft")
    data = json.loads((out / "results.json").read_text())
    fr = data["fringes"]
    n = len(fr["time_s"])
    assert n == 24 and len(fr["crystalline_fraction"]) == n
    assert all(len(s["d_nm"]) == n and isinstance(s["angle_deg"], float) for s in fr["sets"])
    assert data["provenance"]["recipe"]["kind"] == "fft"
    assert "temtrack_version" in data["provenance"] and "file" in data["provenance"]
    header = (out / "fringes.csv").read_text().splitlines()[0].split(",")
    assert "time_s" in header and "crystalline_fraction" in header
    for name in ("fringe_d.png", "lattice_expansion.png", "crystalline_fraction.png", "power_spectrum.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(TemtrackError, match="not empty"):
        write_fft_results(result, out)


def test_one_and_two_threads_identical():
    frames, truth = make_hrtem_movie(n_frames=6, shape=(128, 128), seed=4)
    movie = movie_from_array(frames, pixel_size=truth["pixel_size_nm"], frame_interval_s=0.5)
    recipe = FFTRecipe(chunk_frames=2)
    a = run_fft(movie, recipe, executor=LocalExecutor(1))
    b = run_fft(movie, recipe, executor=LocalExecutor(2))
    np.testing.assert_array_equal(a.series.d_nm, b.series.d_nm)
    np.testing.assert_array_equal(a.series.crystalline_fraction, b.series.crystalline_fraction)
    np.testing.assert_array_equal(a.mean_power, b.mean_power)


def test_refine_spots_exact_on_off_centre_grain():
    # A noiseless fringe under an off-centre, asymmetric envelope: the |F| maximum is unbiased.
    h = w = 128
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    g = np.array([-0.0731234, 0.0912345])           # cycles/px, non-integer bins
    env = np.exp(-((yy - 40) ** 2 / 300 + (xx - 85) ** 2 / 900))
    img = 100 * (1 + 0.1 * env * np.cos(2 * np.pi * (g[0] * yy + g[1] * xx) + 0.7))
    win = window_2d((h, w))
    wr = windowed_roi(img, roi=(0, 0, w, h), window=win)
    got = refine_spots(wr, np.round(g * [h, w])[None] / [h, w])["g_px"][0, 0]
    err_bins = np.abs(got - g) * [h, w]
    print(f"noiseless refinement error {err_bins} bins")
    assert np.all(err_bins < 2e-3)


def test_roi_validation_names_roi_and_frame():
    with pytest.raises(ParameterError, match=r"x=200.*w=100.*outside the frame of 256x128"):
        check_roi((200, 0, 100, 64), (128, 256))
    with pytest.raises(ParameterError, match="four"):
        check_roi((1, 2, 3), (128, 128))
    frames, truth = make_hrtem_movie(n_frames=2, shape=(64, 64), seed=1)
    movie = movie_from_array(frames, pixel_size=truth["pixel_size_nm"])
    with pytest.raises(ParameterError, match="outside the frame of 64x64"):
        run_fft(movie, FFTRecipe(roi=[10, 10, 60, 60]))
    with pytest.raises(ParameterError, match="calibrated in nm"):
        run_fft(movie_from_array(frames), FFTRecipe())
    with pytest.raises(ParameterError, match="window"):
        FFTRecipe.from_dict({"kind": "fft", "window": "gauss"})
    with pytest.raises(ParameterError, match="whole pixels"):
        FFTRecipe.from_dict({"kind": "fft", "roi": [0, 0, 10.5, 64]})
    assert FFTRecipe.from_dict(FFTRecipe(roi=[1, 2, 64, 64]).to_dict()).roi == [1, 2, 64, 64]


def test_write_hrtem_movie_round_trip(tmp_path):
    import tifffile

    movie_path, truth_path = write_hrtem_movie(tmp_path / "hrtem.tif", n_frames=3, shape=(64, 64),
                                               pixel_size_nm=0.04, seed=2)
    with tifffile.TiffFile(movie_path) as tf:
        data = tf.asarray()
        ij = tf.imagej_metadata
    truth = json.loads(truth_path.read_text())
    assert data.shape == (3, 64, 64) and ij["unit"] == "nm"
    assert truth["pixel_size_nm"] == 0.04 and len(truth["crystalline_fraction"]) == 3


def test_fft_from_tiff_file(tmp_path):
    from temtrack import open_movie

    path, _ = write_hrtem_movie(tmp_path / "hrtem.tif", n_frames=6, shape=(128, 128), seed=6)
    movie = open_movie(path)
    assert movie.pixel_unit == "nm" and movie.pixel_size == pytest.approx(0.03, rel=1e-5)
    result = run_fft(movie, FFTRecipe(roi=[0, 0, 128, 128]), executor=LocalExecutor(1))
    truth = json.loads(path.with_name("hrtem.truth.json").read_text())
    assert result.to_json()["provenance"]["file"] == str(path)
    np.testing.assert_allclose(result.time_s, truth["time_s"], atol=1e-6)
    t_ang = np.array([s["angle_deg"] for s in truth["sets"]])
    for j, a in enumerate(result.series.reference_angle_deg):
        k = int(np.argmin(np.abs(t_ang - a)))
        err_pm = 1000 * (result.series.d_nm[:4, j] - np.array(truth["sets"][k]["d_nm"][:4]))
        print(f"set {j} from the TIFF (128 px ROI), first 4 frames: d error {np.round(err_pm, 3)} pm")
        assert np.all(np.abs(err_pm) < 1.5)


def test_progress_and_cancel():
    import threading

    frames, truth = make_hrtem_movie(n_frames=4, shape=(96, 96), seed=5)
    movie = movie_from_array(frames, pixel_size=truth["pixel_size_nm"], frame_interval_s=0.5)
    seen = []
    run_fft(movie, FFTRecipe(chunk_frames=2), executor=LocalExecutor(1),
            progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 4), (4, 4)]
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        run_fft(movie, FFTRecipe(chunk_frames=2), executor=LocalExecutor(1), cancel=stop)
