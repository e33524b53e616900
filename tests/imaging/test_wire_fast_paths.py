"""The vectorised wire measurements give what the straightforward per-frame, per-profile code gives."""
from __future__ import annotations

import numpy as np
import pytest

from temtrack.frame.edges import cylinder_templates, fit_cylinder_profiles, profile_attenuation
from temtrack.series.kymograph import make_wire_sampler, wire_chunk


def _assert_same(a, b, key, rtol=1e-9):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, key
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{key}: NaN pattern")
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12, equal_nan=True, err_msg=key)


def test_batched_frames_match_frame_by_frame(small_movie):
    """One chunk of frames (reduced together) gives each frame's rows as a chunk of that frame alone."""
    movie, truth = small_movie
    sampler = make_wire_sampler(truth["line_px"], width_px=truth["d0_nm"] / truth["pixel_size_nm"])
    block = movie.read(0, 12)
    # Drift that carries part of the strip off the frame in some frames (NaN paths).
    dy = np.array([0, 1.3, -2.7, 90, 0.4, -110, 3.3, 0, 0, 150, -0.6, 2.2])
    dx = np.array([0, -0.8, 1.1, 0, 120, 0, -2.5, 0.3, 0, 0, 0.9, -1.7])
    whole = wire_chunk(block, 0, sampler=sampler, dy_px=dy, dx_px=dx)
    n_nan = np.isnan(whole["diameter_px"]).sum(axis=1)
    assert all(n_nan[j] > n_nan[0] for j in (3, 4, 5, 9)) and n_nan[0] < whole["diameter_px"].shape[1] // 4
    for j in range(block.shape[0]):
        one = wire_chunk(block[j:j + 1], j, sampler=sampler, dy_px=dy, dx_px=dx)
        for key, v in whole.items():
            _assert_same(v[j:j + 1], one[key], f"{key}, frame {j}")


def test_fit_of_many_profiles_matches_one_by_one():
    rng = np.random.default_rng(4)
    r = np.arange(-40, 41, dtype=float)
    tp = cylinder_templates(r.size)
    prof = []
    for k in range(30):
        d, c = rng.uniform(12, 45), rng.uniform(-5, 5)
        thick = 2 * np.sqrt(np.clip((d / 2) ** 2 - (r - c) ** 2, 0, None))
        prof.append(rng.poisson(300 * np.exp(-0.02 * thick)).astype(float))
    prof = np.array(prof)
    prof[3, 10] = np.nan                                    # one profile with a missing sample
    prof[7] = 300.0 + rng.normal(0, 10, r.size)             # no wire
    att = profile_attenuation(prof)
    together = fit_cylinder_profiles(att, tp)
    assert np.isnan(together["diameter_px"][[3, 7]]).all()
    assert np.isfinite(together["diameter_px"]).sum() >= 25
    for i in range(len(prof)):
        alone = fit_cylinder_profiles(att[i:i + 1], tp)
        for key in together:
            _assert_same(together[key][i:i + 1], alone[key], f"{key}, profile {i}")


def test_profile_attenuation_matches_nanmedian_definition():
    rng = np.random.default_rng(2)
    x = rng.uniform(50, 500, size=(6, 4, 31))
    x[1, 2] = np.nan            # a profile off the frame
    x[2, 0, 5:9] = np.nan       # partly off the frame
    x[3, 1, 0] = 0.0            # a dark sample: clipped at the floor
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = np.nanmedian(x, axis=-1, keepdims=True)
        want = -np.log(np.clip(x / np.where(ref > 0, ref, 1.0), 1e-3, None))
    got = profile_attenuation(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14, equal_nan=True)
    assert np.isnan(got[1, 2]).all() and np.isnan(got[2, 0, 5:9]).all() and np.isfinite(got[2, 0, 9:]).all()


def test_templates_are_built_once_and_read_only():
    a = cylinder_templates(61)
    b = cylinder_templates(61)
    assert a is b
    assert cylinder_templates(61, max_shift_fraction=0.3) is not a
    with pytest.raises(ValueError):
        a.q3[0, 0] = 1.0
    # Orthonormal to the constant and the slope, unit length.
    n = a.q3.shape[1]
    np.testing.assert_allclose(a.q3 @ np.ones(n), 0, atol=1e-9)
    np.testing.assert_allclose(a.q3 @ a.q2, 0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(a.q3, axis=1), 1, atol=1e-12)


def test_results_do_not_depend_on_chunking(small_movie):
    """Chunks that are whole batches of frames give identical numbers, whatever their length."""
    import functools

    from temtrack.pipeline.executor import LocalExecutor, map_frames
    from temtrack.series.kymograph import batch_frames, measure_wire_series

    movie, truth = small_movie
    sampler = make_wire_sampler(truth["line_px"], width_px=truth["d0_nm"] / truth["pixel_size_nm"])
    batch = batch_frames(sampler, movie.frame_shape)
    assert 1 < batch < movie.n_frames // 2
    shifts = np.linspace(0, 3.7, movie.n_frames)
    func = functools.partial(wire_chunk, sampler=sampler, dy_px=shifts, dx_px=-shifts)
    runs = [map_frames(movie, func, executor=LocalExecutor(workers), chunk_frames=chunk)
            for workers, chunk in ((1, batch), (2, batch), (2, 2 * batch), (1, movie.n_frames))]
    runs.append(vars(measure_wire_series(movie, sampler, dy_px=shifts, dx_px=-shifts, executor=LocalExecutor(2),
                                         memory_budget_bytes=1)))
    for r in runs[1:]:
        for key in ("kymograph", "background", "diameter_px", "diameter_err_px", "center_px", "amplitude",
                    "core_attenuation", "texture"):
            np.testing.assert_array_equal(r[key], runs[0][key], err_msg=key)


def test_dask_executor_gives_the_local_numbers(small_movie, tmp_path):
    """Dask workers run the chunk with one BLAS thread too: the same bits as the local threads."""
    pytest.importorskip("distributed")
    import json

    from temtrack.io import open_movie
    from temtrack.pipeline.executor import DaskExecutor, LocalExecutor
    from temtrack.series.kymograph import measure_wire_series

    movie, truth = small_movie
    path = tmp_path / "wire.npy"
    np.save(path, movie.read(0, 24).astype(np.uint16))
    path.with_suffix(".json").write_text(json.dumps({"pixel_size": truth["pixel_size_nm"], "pixel_unit": "nm",
                                                     "frame_interval_s": 0.5}))
    on_disk = open_movie(path)
    sampler = make_wire_sampler(truth["line_px"], width_px=truth["d0_nm"] / truth["pixel_size_nm"])
    shifts = np.linspace(0, 2.5, on_disk.n_frames)
    kw = dict(dy_px=shifts, dx_px=shifts[::-1], memory_budget_bytes=1)
    local = measure_wire_series(on_disk, sampler, executor=LocalExecutor(1), **kw)
    with DaskExecutor(workers=2) as ex:
        dist = measure_wire_series(on_disk, sampler, executor=ex, **kw)
    for key in ("kymograph", "background", "diameter_px", "diameter_err_px", "center_px", "amplitude",
                "core_attenuation", "texture"):
        np.testing.assert_array_equal(getattr(dist, key), getattr(local, key), err_msg=key)
