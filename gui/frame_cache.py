"""Frames for display, read ahead of the slider by a background thread into a small LRU cache.

Why hand-written: the display wants the next frames already in memory when the slider gets there,
in the direction the user is moving, with a bounded footprint, and without Qt in the reading
thread. ``functools.lru_cache`` cannot prefetch and Qt's ``QCache`` cannot be filled from a plain
thread, so this is a dict in LRU order guarded by a condition variable.

Frames are kept in their file's pixel type when it is an integer of at most 16 bits (pyqtgraph
maps those through a lookup table, the fastest path) and as float32 otherwise, always as resident
numpy arrays (a memory-mapped frame is copied, so the GUI thread never waits on a page fault).
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


def display_frame(movie, index: int) -> np.ndarray:
    """One frame ready for display: resident, uint8/uint16/int16 kept, anything else float32."""
    frames = movie.frames
    block = frames[index]
    if hasattr(block, "compute"):
        block = block.compute()
    arr = np.asarray(block)
    if arr.dtype in (np.uint8, np.uint16, np.int16, np.int8) and arr.ndim == 2:
        return np.array(arr, copy=True)
    if arr.ndim != 2:  # readers convert colour on the way through movie.read
        return movie.frame(index)
    return np.asarray(arr, dtype=np.float32).copy()


class FrameCache:
    """LRU cache of display frames, filled ahead of the requested frame by a daemon thread.

    Parameters
    ----------
    movie : temtrack.Movie
    capacity : int, keyword-only
        Frames kept (default 48: 100 MB of 1024x1024 uint16).
    ahead : int, keyword-only
        Frames read ahead of the last request, in the direction of motion.
    """

    def __init__(self, movie, *, capacity: int = 48, ahead: int = 16):
        if capacity < 2 or ahead < 0 or ahead >= capacity:
            raise ValueError(f"need capacity >= 2 and 0 <= ahead < capacity, got {capacity}, {ahead}")
        self.movie = movie
        self.capacity = int(capacity)
        self.ahead = int(ahead)
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cond = threading.Condition()
        self._target = 0
        self._direction = 1
        self._generation = 0
        self._closed = False
        self._failed: set[int] = set()
        self.hits = 0
        self.misses = 0
        self._thread = threading.Thread(target=self._fill, name="temtrack-gui-prefetch", daemon=True)
        self._thread.start()

    @property
    def n_frames(self) -> int:
        return self.movie.n_frames

    def get(self, index: int) -> np.ndarray:
        """Frame ``index`` (read now if not cached) and move the read-ahead window to it."""
        index = int(index)
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} outside 0:{self.n_frames}")
        with self._cond:
            direction = 1 if index >= self._target else -1
            if index != self._target:
                self._direction = direction
            self._target = index
            frame = self._frames.get(index)
            if frame is not None:
                self._frames.move_to_end(index)
                self.hits += 1
            self._cond.notify_all()
        if frame is None:
            self.misses += 1
            frame = display_frame(self.movie, index)
            self._store(index, frame, self._generation)
        return frame

    def cached(self, index: int) -> bool:
        with self._cond:
            return int(index) in self._frames

    def wait_filled(self, timeout: float = 5.0) -> bool:
        """Block until the read-ahead window of the last request is cached (tests, benchmarks)."""
        want = set(self._window())
        with self._cond:
            return self._cond.wait_for(lambda: want <= set(self._frames) or self._closed, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._frames.clear()
            self._cond.notify_all()
        self._thread.join(timeout=2.0)

    # -- internals --------------------------------------------------------------------------------
    def _window(self) -> list[int]:
        t, d, n = self._target, self._direction, self.n_frames
        return [i for i in (t + d * k for k in range(1, self.ahead + 1)) if 0 <= i < n]

    def _store(self, index: int, frame: np.ndarray, generation: int) -> None:
        with self._cond:
            if generation != self._generation or self._closed:
                return
            self._frames[index] = frame
            self._frames.move_to_end(index)
            keep = set(self._window()) | {self._target}
            while len(self._frames) > self.capacity:
                # Evict the least recently used frame outside the read-ahead window.
                for old in self._frames:
                    if old not in keep:
                        del self._frames[old]
                        break
                else:
                    self._frames.popitem(last=False)
            self._cond.notify_all()

    def _next_missing(self) -> int | None:
        for i in self._window():
            if i not in self._frames and i not in self._failed:
                return i
        return None

    def _fill(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._next_missing() is not None)
                if self._closed:
                    return
                index = self._next_missing()
                generation = self._generation
            try:
                frame = display_frame(self.movie, index)
            except Exception:  # noqa: BLE001 - the GUI thread reports read errors when it gets there
                with self._cond:
                    self._failed.add(index)
                continue
            self._store(index, frame, generation)
