import functools
import threading

import numpy as np
import pytest

from temtrack.errors import Cancelled, ParameterError
from temtrack.io.movie import movie_from_array
from temtrack.pipeline.executor import LocalExecutor, chunk_frames_for, map_frames


def _stats(block, start, overlap=0):
    lead = min(start, overlap)
    own = block[lead:]
    diff = own - block[lead - 1:-1] if lead else np.diff(block, axis=0, prepend=block[:1])
    return {"mean": own.mean(axis=(1, 2)), "index": np.arange(start, start + len(own)),
            "diff": np.abs(diff).sum(axis=(1, 2))}


@pytest.fixture(scope="module")
def movie():
    rng = np.random.default_rng(0)
    return movie_from_array(rng.random((37, 16, 16), dtype=np.float32), pixel_size=1.0, frame_interval_s=1.0)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("chunk", [1, 5, 37, 100])
def test_local_executor_matches_plain_numpy(movie, workers, chunk):
    data = np.asarray(movie.frames)
    out = map_frames(movie, functools.partial(_stats, overlap=1), executor=LocalExecutor(workers),
                     chunk_frames=chunk, overlap=1)
    assert np.array_equal(out["index"], np.arange(37))
    np.testing.assert_array_equal(out["mean"], data.mean(axis=(1, 2)))
    expected_diff = np.abs(np.diff(data, axis=0, prepend=data[:1])).sum(axis=(1, 2))
    np.testing.assert_allclose(out["diff"], expected_diff, rtol=1e-6)


def test_progress_and_range(movie):
    seen = []
    out = map_frames(movie, _stats, chunk_frames=4, start=3, stop=20, progress=lambda d, t: seen.append((d, t)))
    assert np.array_equal(out["index"], np.arange(3, 20))
    assert seen[-1] == (17, 17) and all(t == 17 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_cancel_stops_between_chunks(movie):
    ev = threading.Event()
    calls = []

    def func(block, start):
        calls.append(start)
        ev.set()
        return {"x": block[:, 0, 0]}

    with pytest.raises(Cancelled):
        map_frames(movie, func, chunk_frames=2, cancel=ev, executor=LocalExecutor(1))
    assert len(calls) == 1


@pytest.mark.parametrize("kw,msg", [({"start": 5, "stop": 5}, "frame range"), ({"overlap": -1}, "overlap"),
                                    ({"chunk_frames": 0}, "chunk_frames")])
def test_bad_arguments(movie, kw, msg):
    with pytest.raises(ParameterError, match=msg):
        map_frames(movie, _stats, **kw)


def test_workers_validated():
    with pytest.raises(ParameterError, match="workers"):
        LocalExecutor(0)


def test_chunk_size_follows_memory_budget(movie):
    assert chunk_frames_for(movie, memory_budget_bytes=16 * 16 * 4 * 3 * 4 * 10, in_flight=4) == 10
    assert chunk_frames_for(movie, memory_budget_bytes=1, in_flight=4) == 1
    with pytest.raises(ParameterError):
        chunk_frames_for(movie, memory_budget_bytes=0)


def test_dask_executor_matches_local(tmp_path):
    pytest.importorskip("distributed")
    from temtrack.pipeline.executor import DaskExecutor
    rng = np.random.default_rng(1)
    data = rng.random((23, 12, 12)).astype(np.float32)
    path = tmp_path / "m.npy"
    np.save(path, data)
    movie = movie_from_array(np.load(path, mmap_mode="r"), pixel_size=1.0, frame_interval_s=1.0)
    movie.reopen = functools.partial(_reopen_npy, str(path))
    func = functools.partial(_stats, overlap=1)
    local = map_frames(movie, func, chunk_frames=4, overlap=1, executor=LocalExecutor(1))
    with DaskExecutor(workers=2) as ex:
        dist = map_frames(movie, func, chunk_frames=4, overlap=1, executor=ex)
    for k in local:
        np.testing.assert_array_equal(local[k], dist[k])


def _reopen_npy(path):
    return movie_from_array(np.load(path, mmap_mode="r"), pixel_size=1.0, frame_interval_s=1.0)
