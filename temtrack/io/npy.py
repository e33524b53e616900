"""Read a NumPy ``.npy`` array (memory-mapped) as a movie, with an optional JSON calibration sidecar.

``.npy`` carries no metadata, so calibration comes from a sidecar ``<name>.json`` next to the
array (``movie.npy`` -> ``movie.json``), a plain JSON object with any of:

``pixel_size`` (number), ``pixel_unit`` (``"nm"``, ``"1/nm"``, or any length unit such as ``"A"``,
``"pm"``, ``"um"``, ``"1/A"``; default ``"nm"``), ``frame_interval_s`` (number) or ``times_s``
(list with one time per frame, in s).

Without a sidecar the movie is uncalibrated and untimed.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from temtrack.errors import MovieReadError
from temtrack.io.lazy import LUMINANCE_PROBLEM, LazyFrames, rgb_to_luminance
from temtrack.io.movie import Movie, normalise_length_unit


def sidecar_path(path: str | os.PathLike) -> Path:
    """``movie.npy`` -> ``movie.json``."""
    return Path(path).with_suffix(".json")


def _read_sidecar(path: Path, n_frames: int):
    side = sidecar_path(path)
    if not side.is_file():
        return None, None, None, None, {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MovieReadError(side, f"calibration sidecar is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise MovieReadError(side, "calibration sidecar must hold a JSON object")
    pixel_size = pixel_unit = times = None
    source = None
    if meta.get("pixel_size") is not None:
        try:
            size = float(meta["pixel_size"])
        except (TypeError, ValueError):
            raise MovieReadError(side, f"pixel_size must be a number, got {meta['pixel_size']!r}") from None
        pixel_size, pixel_unit = normalise_length_unit(size, meta.get("pixel_unit", "nm"))
        if pixel_size is None:
            raise MovieReadError(side, f"pixel_size {meta['pixel_size']!r} {meta.get('pixel_unit', 'nm')!r} "
                                       "is not a positive length or inverse length (expected e.g. 0.5 'nm')")
    if meta.get("times_s") is not None:
        try:
            times = np.asarray(meta["times_s"], dtype=np.float64)
        except (TypeError, ValueError):
            raise MovieReadError(side, "times_s must be a list of numbers") from None
        if times.shape != (n_frames,):
            raise MovieReadError(side, f"times_s has {times.size} entries for {n_frames} frames")
        times = times - times[0]
        source = "timestamps"
    elif meta.get("frame_interval_s") is not None:
        try:
            dt = float(meta["frame_interval_s"])
        except (TypeError, ValueError):
            dt = float("nan")
        if not (np.isfinite(dt) and dt > 0):
            raise MovieReadError(side, f"frame_interval_s must be a positive number, got {meta['frame_interval_s']!r}")
        times = np.arange(n_frames) * dt
        source = "axis"
    return pixel_size, pixel_unit, times, source, meta


def read_npy(path: str | os.PathLike) -> Movie:
    """Read a 2D (one frame), 3D (n, rows, cols) or RGB 4D (n, rows, cols, 3|4) ``.npy`` lazily.

    The array is memory-mapped read-only (``np.load(mmap_mode='r')``); RGB(A) stacks are converted
    to luminance frame by frame. Calibration comes from the optional ``<name>.json`` sidecar
    described in the module docstring.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Movie
        ``format='npy'``.

    Raises
    ------
    MovieReadError
        Not a ``.npy`` file, truncated, object/complex/structured pixels, an unsupported number
        of dimensions, zero frames, or an invalid sidecar.
    """
    path = Path(path)
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise MovieReadError(path, "file not found") from None
    except (ValueError, OSError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "mmap length" in msg or "cannot reshape" in msg or isinstance(exc, EOFError):
            msg = f"truncated: the file is shorter than its header says ({msg})"
        raise MovieReadError(path, f"not a readable .npy array: {msg}") from exc
    if not isinstance(data, np.ndarray):
        raise MovieReadError(path, "expected one array in a .npy file")
    if data.dtype.kind in "OVSUMm" or data.dtype.names:
        raise MovieReadError(path, f"pixel type {data.dtype} is not an image type")
    if data.dtype.kind == "c":
        raise MovieReadError(path, f"complex pixels ({data.dtype}) are not supported; save abs() or .real")
    problems = []
    if data.ndim == 2:
        frames = data.reshape(1, *data.shape)
    elif data.ndim == 3:
        frames = data
    elif data.ndim == 4 and data.shape[-1] in (3, 4):
        frames = LazyFrames(data.shape[0], data.shape[1:3], np.float32,
                            lambda i, _d=data: rgb_to_luminance(_d[i]), cache_frames=0, serialize=False)
        problems.append(LUMINANCE_PROBLEM)
    else:
        raise MovieReadError(path, f"expected a 2D frame or a 3D stack (n, rows, cols), got shape {data.shape}")
    if 0 in frames.shape:
        raise MovieReadError(path, f"empty stack (shape {tuple(frames.shape)})")
    pixel_size, pixel_unit, times, source, side_meta = _read_sidecar(path, frames.shape[0])
    if pixel_size is None:
        problems.insert(0, "no spatial calibration: pixel size unknown (give --pixel-size)")
    if times is None:
        problems.append("no frame timing (give --frame-interval)")
    meta = {"npy_shape": list(data.shape), "npy_dtype": str(data.dtype)}
    if side_meta:
        meta["sidecar"] = side_meta
    return Movie(frames, times, pixel_size, pixel_unit, path, "npy", meta, problems, source or "none",
                 reopen=functools.partial(read_npy, path))
