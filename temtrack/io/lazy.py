"""Lazy frame stacks for formats whose frames cannot be memory-mapped, and the colour conversion.

:class:`LazyFrames` is shared by the TIFF (compressed pages), video and image-folder readers;
:func:`rgb_to_luminance` is the one documented conversion of colour pixels used by every reader.
Hand-written because dask's ``from_delayed`` per frame costs far more per read than these frames
do, and the readers need an LRU cache (video seeks are expensive) and a lock for file handles that
are not thread-safe.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import numpy as np

# ITU-R BT.709 luma weights (the ones scikit-image's rgb2gray uses).
LUMA_WEIGHTS = (0.2125, 0.7154, 0.0721)
LUMINANCE_PROBLEM = "RGB pixels converted to luminance 0.2125 R + 0.7154 G + 0.0721 B (float32)"


def rgb_to_luminance(rgb: np.ndarray) -> np.ndarray:
    """Luminance of RGB(A) pixels on the last axis as float32 (alpha is ignored).

    Parameters
    ----------
    rgb : ndarray, shape (..., 3) or (..., 4)

    Returns
    -------
    ndarray of float32, shape ``rgb.shape[:-1]``
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-1] not in (3, 4):
        raise ValueError(f"expected 3 or 4 colour samples on the last axis, got {rgb.shape[-1]}")
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    return LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


class LazyFrames:
    """A read-only (n, rows, cols) stack whose frames are read on demand.

    Indexing with an integer, a slice, a list of integers, or a tuple whose first element is one
    of these reads only the frames asked for. A small LRU cache keeps the last frames read, which
    matters for video, where going back means decoding again from the start. With
    ``serialize=True`` calls to ``read_frame`` are serialised by a lock, for readers whose file
    handle (TiffFile, an ffmpeg pipe) is not thread-safe; independent reads (one file per frame,
    memory maps) run in parallel.

    Parameters
    ----------
    n_frames : int
    frame_shape : (int, int)
    dtype : numpy dtype
        The dtype ``read_frame`` returns.
    read_frame : callable
        ``read_frame(i) -> ndarray of shape frame_shape``.
    cache_frames : int
        How many decoded frames to keep (0 disables the cache).
    serialize : bool
        Hold a lock around ``read_frame``.
    """

    ndim = 3

    def __init__(self, n_frames: int, frame_shape: tuple[int, int], dtype, read_frame: Callable[[int], np.ndarray],
                 *, cache_frames: int = 8, serialize: bool = True):
        self.shape = (int(n_frames), int(frame_shape[0]), int(frame_shape[1]))
        self.dtype = np.dtype(dtype)
        self._read_frame = read_frame
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_frames = int(cache_frames)
        self._cache_lock = threading.Lock()
        self._read_lock = threading.Lock() if serialize else None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    def _frame(self, i: int) -> np.ndarray:
        if self._cache_frames > 0:
            with self._cache_lock:
                hit = self._cache.get(i)
                if hit is not None:
                    self._cache.move_to_end(i)
                    return hit
        if self._read_lock is not None:
            with self._read_lock:
                frame = np.asarray(self._read_frame(i))
        else:
            frame = np.asarray(self._read_frame(i))
        if frame.shape != self.shape[1:]:
            raise ValueError(f"frame {i} has shape {frame.shape}, expected {self.shape[1:]}")
        frame = frame.astype(self.dtype, copy=False)
        if self._cache_frames > 0:
            with self._cache_lock:
                self._cache[i] = frame
                while len(self._cache) > self._cache_frames:
                    self._cache.popitem(last=False)
        return frame

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = (key[0] if key else slice(None)), key[1:]
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"frame {key} outside 0:{n}")
            out = self._frame(i)
        else:
            if isinstance(key, slice):
                idx = range(*key.indices(n))
            else:
                idx = [int(k) + n if k < 0 else int(k) for k in np.asarray(key).ravel()]
            out = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
            for j, i in enumerate(idx):
                out[j] = self._frame(i)
        return out[rest] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)
