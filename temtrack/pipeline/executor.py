"""Executors: run a per-frame function over a lazily read movie, in chunks of frames.

The analysis code writes a *chunk function* ``func(block, start) -> dict[str, ndarray]`` that gets
frames as a float32 array and returns arrays whose first axis runs over the frames it owns. An
executor decides where that runs: :class:`LocalExecutor` on a pool of threads in this process (numpy,
scipy.fft and OpenCV release the GIL, so two threads use two cores), :class:`DaskExecutor` on a
``dask.distributed`` cluster. The chunk function never knows which one; results are concatenated in
frame order, so both give identical numbers (tests check this).

Memory stays bounded: only ``max_in_flight`` chunks are read at once, whatever the movie length.
This is written here rather than taken from ``dask.array.map_blocks`` because the chunk functions
return several ragged outputs per chunk, need overlapping frames (neighbour registration) and must
report progress and honour cancellation between chunks; LiberTEM's UDF/executor split is the model.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Protocol

import numpy as np

from temtrack.errors import Cancelled, ParameterError
from temtrack.io.movie import Movie

ChunkFunc = Callable[[np.ndarray, int], dict]
ProgressFunc = Callable[[int, int], None]

DEFAULT_MEMORY_BUDGET_BYTES = 1 << 30  # 1 GiB for frames in flight


def chunk_frames_for(movie: Movie, memory_budget_bytes: int | None = None, in_flight: int = 4,
                     max_frames: int = 256) -> int:
    """How many frames one chunk may hold so that ``in_flight`` chunks fit the memory budget.

    The factor 3 allows for the float32 copy plus the chunk function's own temporaries.
    """
    budget = DEFAULT_MEMORY_BUDGET_BYTES if memory_budget_bytes is None else int(memory_budget_bytes)
    if budget <= 0:
        raise ParameterError(f"memory budget must be positive, got {budget} bytes")
    frame_bytes = movie.frame_shape[0] * movie.frame_shape[1] * 4 * 3
    return int(max(1, min(max_frames, budget // (frame_bytes * in_flight))))


def _chunks(n_frames: int, chunk: int, start: int = 0, stop: int | None = None):
    stop = n_frames if stop is None else stop
    return [(a, min(a + chunk, stop)) for a in range(start, stop, chunk)]


def run_chunk(movie: Movie, func: ChunkFunc, start: int, stop: int, overlap: int) -> dict:
    """Read frames ``start - overlap : stop`` (clipped at 0) and apply ``func``.

    ``func`` receives the block and ``start``; it owns frames ``start:stop`` and may use the
    ``min(start, overlap)`` leading frames as context only.
    """
    lead = min(start, overlap)
    block = movie.read(start - lead, stop)
    out = func(block, start)
    if not isinstance(out, dict):
        raise TypeError("a chunk function must return a dict of arrays")
    return out


def one_blas_thread():
    """Context that keeps BLAS at one thread while chunk functions run.

    The executor owns the parallelism (like ``workers=1`` for FFTs): multi-threaded BLAS inside
    two executor threads on two cores spin-waits against itself (measured 5-15x slower), and a
    product split over BLAS threads can round its last bits differently from the same product in
    one thread, which would make results depend on the executor. No-op without threadpoolctl.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_chunk_one_blas_thread(movie: Movie, func: ChunkFunc, start: int, stop: int, overlap: int) -> dict:
    """:func:`run_chunk` with BLAS at one thread (what a dask worker process runs)."""
    with one_blas_thread():
        return run_chunk(movie, func, start, stop, overlap)


def _concatenate(parts: list[dict]) -> dict[str, np.ndarray]:
    if not parts:
        return {}
    keys = parts[0].keys()
    return {k: np.concatenate([np.asarray(p[k]) for p in parts], axis=0) for k in keys}


class Executor(Protocol):
    def map_chunks(self, movie: Movie, func: ChunkFunc, chunks: list[tuple[int, int]], overlap: int,
                   on_chunk_done: Callable[[int], None], cancel: threading.Event | None) -> list[dict]:
        ...


class LocalExecutor:
    """Run chunks on threads of this process.

    Parameters
    ----------
    workers : int, optional
        Threads (default: the number of cores, at most 8). One thread runs chunks serially, which
        is what tests use as the plain-numpy reference.
    """

    def __init__(self, workers: int | None = None):
        if workers is None:
            workers = min(8, os.cpu_count() or 1)
        if int(workers) < 1:
            raise ParameterError(f"workers must be >= 1, got {workers}")
        self.workers = int(workers)

    def map_chunks(self, movie, func, chunks, overlap, on_chunk_done, cancel):
        # BLAS limits are process-wide: set once here for all worker threads (see one_blas_thread).
        with one_blas_thread():
            return self._map_chunks(movie, func, chunks, overlap, on_chunk_done, cancel)

    def _map_chunks(self, movie, func, chunks, overlap, on_chunk_done, cancel):
        results: list[dict] = []
        if self.workers == 1:
            for a, b in chunks:
                _check(cancel)
                results.append(run_chunk(movie, func, a, b, overlap))
                on_chunk_done(b - a)
            return results
        max_in_flight = 2 * self.workers
        with ThreadPoolExecutor(self.workers, thread_name_prefix="temtrack") as pool:
            pending: deque = deque()
            todo = iter(chunks)
            try:
                for a, b in todo:
                    _check(cancel)
                    pending.append((b - a, pool.submit(run_chunk, movie, func, a, b, overlap)))
                    if len(pending) >= max_in_flight:
                        n, fut = pending.popleft()
                        results.append(fut.result())
                        on_chunk_done(n)
                while pending:
                    _check(cancel)
                    n, fut = pending.popleft()
                    results.append(fut.result())
                    on_chunk_done(n)
            finally:
                for _, fut in pending:
                    fut.cancel()
        return results


class DaskExecutor:
    """Run chunks on a dask.distributed cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``'tcp://host:8786'``).
    workers : int, optional
        Without ``scheduler``: start a ``LocalCluster`` of this many single-threaded processes.
    client : distributed.Client, optional
        An existing client (takes precedence).

    The movie is sent to the workers by path (see :meth:`Movie.__reduce__`): workers must see the
    same file system.
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None, client=None):
        try:
            import distributed  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ParameterError("the dask executor needs 'distributed': pip install 'temtrack[dask]'") from exc
        self._own = client is None
        self._cluster = None
        if client is None:
            from distributed import Client, LocalCluster
            if scheduler:
                client = Client(scheduler)
            else:
                self._cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1,
                                             processes=True, dashboard_address=None)
                client = Client(self._cluster)
        self.client = client

    def map_chunks(self, movie, func, chunks, overlap, on_chunk_done, cancel):
        from distributed import wait
        max_in_flight = 2 * max(1, len(self.client.scheduler_info().get("workers", {})) or 1)
        movie_f = self.client.scatter(movie, broadcast=True)
        func_f = self.client.scatter(func, broadcast=True)
        results: list[dict] = []
        pending: deque = deque()
        try:
            for a, b in chunks:
                _check(cancel)
                pending.append((b - a, self.client.submit(run_chunk_one_blas_thread, movie_f, func_f, a, b,
                                                          overlap, pure=False)))
                if len(pending) >= max_in_flight:
                    n, fut = pending.popleft()
                    results.append(fut.result())
                    on_chunk_done(n)
            while pending:
                _check(cancel)
                n, fut = pending.popleft()
                results.append(fut.result())
                on_chunk_done(n)
        finally:
            for _, fut in pending:
                fut.cancel()
            wait([movie_f, func_f])
        return results

    def close(self):
        if self._own:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check(cancel: threading.Event | None):
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled by the user")


def map_frames(movie: Movie, func: ChunkFunc, *, executor: Executor | None = None,
               chunk_frames: int | None = None, memory_budget_bytes: int | None = None,
               overlap: int = 0, start: int = 0, stop: int | None = None,
               progress: ProgressFunc | None = None,
               cancel: threading.Event | None = None) -> dict[str, np.ndarray]:
    """Apply a chunk function to every frame of a movie and gather its outputs in frame order.

    Parameters
    ----------
    movie : Movie
    func : callable
        ``func(block, start) -> dict[str, ndarray]``; ``block`` is float32 (n, rows, cols) holding
        ``min(start, overlap)`` context frames then the owned frames ``start:stop``. Each returned
        array is concatenated along axis 0 over chunks (per-frame outputs have one row per owned
        frame). Must be picklable for :class:`DaskExecutor` (a module-level function or a
        ``functools.partial`` of one).
    executor : LocalExecutor or DaskExecutor, optional
        Default: ``LocalExecutor()``.
    chunk_frames : int, optional
        Frames per chunk; default from ``memory_budget_bytes``.
    memory_budget_bytes : int, optional
        Bytes of frames in flight at once (default 1 GiB).
    overlap : int
        Context frames handed to each chunk before its own.
    start, stop : int
        Frame range to process.
    progress : callable, optional
        ``progress(frames_done, frames_total)`` after each chunk.
    cancel : threading.Event, optional
        When set, stops between chunks with :class:`temtrack.errors.Cancelled`.
    """
    stop = movie.n_frames if stop is None else int(stop)
    if not (0 <= start < stop <= movie.n_frames):
        raise ParameterError(f"frame range {start}:{stop} outside the movie's 0:{movie.n_frames}")
    if overlap < 0:
        raise ParameterError(f"overlap must be >= 0, got {overlap}")
    executor = executor or LocalExecutor()
    if chunk_frames is None:
        chunk_frames = chunk_frames_for(movie, memory_budget_bytes,
                                        in_flight=2 * getattr(executor, "workers", 2))
    if chunk_frames < 1:
        raise ParameterError(f"chunk_frames must be >= 1, got {chunk_frames}")
    chunks = _chunks(movie.n_frames, int(chunk_frames), start, stop)
    total = stop - start
    done = [0]

    def on_chunk_done(n):
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    parts = executor.map_chunks(movie, func, chunks, overlap, on_chunk_done, cancel)
    return _concatenate(parts)
