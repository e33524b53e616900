"""The in-memory model of a movie: lazy frames, frame times, calibration, provenance.

A :class:`Movie` never holds the pixels of the whole file. ``frames`` is anything indexable along
its first axis that returns arrays (a ``numpy.memmap``, a ``dask.array.Array``, or a small lazy
wrapper of our own for formats with one file per frame); :meth:`Movie.read` turns a block of frames
into a float32 numpy array, which is all the analysis code ever sees.

A movie can be pickled for dask.distributed: it is re-opened from its path by the reader that made
it (``reopen``), so a worker never receives pixel data through the scheduler.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from temtrack.errors import MovieReadError, ParameterError

PIXEL_UNITS = ("nm", "1/nm")

# Factors from the units files use to nm (real space) or 1/nm (reciprocal space).
_LENGTH_TO_NM = {"pm": 1e-3, "a": 0.1, "å": 0.1, "angstrom": 0.1, "nm": 1.0, "um": 1e3, "µm": 1e3,
                 "μm": 1e3, "micron": 1e3, "microns": 1e3, "mm": 1e6, "m": 1e9, "cm": 1e7}
_TIME_TO_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0,
              "min": 60.0, "h": 3600.0}


def normalise_length_unit(scale: float, unit: str | None) -> tuple[float | None, str | None]:
    """Convert a pixel size in any length or inverse-length unit to nm or 1/nm.

    Parameters
    ----------
    scale : float
        Size of one pixel in ``unit``.
    unit : str or None
        Unit as a file states it: ``'pm'``, ``'Å'``, ``'um'``, ``'1/nm'``, ``'nm^-1'``, ``'1/Å'`` ...

    Returns
    -------
    scale, unit : float or None, {'nm', '1/nm'} or None
        ``(None, None)`` when the unit is missing or not a length (e.g. ``'px'``).
    """
    if unit is None or scale is None or not np.isfinite(scale) or scale <= 0:
        return None, None
    u = str(unit).strip().lower().replace(" ", "")
    inverse = False
    if u.startswith("1/"):
        inverse, u = True, u[2:]
    elif u.endswith("^-1") or u.endswith("-1"):
        inverse, u = True, u.rsplit("^-1", 1)[0] if u.endswith("^-1") else u[:-2]
    factor = _LENGTH_TO_NM.get(u)
    if factor is None:
        return None, None
    if inverse:
        return float(scale) / factor, "1/nm"
    return float(scale) * factor, "nm"


def time_unit_to_s(unit: str | None) -> float | None:
    """Seconds per ``unit`` (``'ms'`` -> 1e-3), or None for an unknown or missing unit."""
    if unit is None:
        return None
    return _TIME_TO_S.get(str(unit).strip().lower())


@dataclass
class Movie:
    """A lazily read image or diffraction movie with its calibration.

    Attributes
    ----------
    frames : array-like, shape (n_frames, rows, cols)
        Lazy frame stack; indexing along axis 0 returns array-likes. Never modified.
    times_s : ndarray of float64, shape (n_frames,) or None
        Time of each frame in seconds from the first frame (0 for frame 0). None when the file
        carries no timing and the user gave no frame interval.
    pixel_size : float or None
        Size of one pixel in ``pixel_unit``.
    pixel_unit : {'nm', '1/nm'} or None
        ``'nm'`` for images, ``'1/nm'`` for diffraction patterns, None when uncalibrated.
    path : Path
        The file (or folder) the movie was read from.
    format : str
        Reader name, e.g. ``'dm'``, ``'gms-insitu'``, ``'frms6'``, ``'emd'``, ``'tiff'``.
    original_metadata : dict
        Metadata as the file had it (JSON-serialisable subset where possible).
    problems : list of str
        Things noticed while reading that a user should know (missing calibration, gaps,
        non-uniform time stamps, converted pixel types).
    time_source : str
        Where ``times_s`` came from: ``'timestamps'``, ``'axis'``, ``'user'`` or ``'none'``.
    reopen : callable or None
        ``reopen()`` returns an equivalent Movie; used to pickle a movie by path.
    """

    frames: Any
    times_s: np.ndarray | None
    pixel_size: float | None
    pixel_unit: str | None
    path: Path
    format: str
    original_metadata: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    time_source: str = "none"
    reopen: Callable[[], "Movie"] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.path = Path(self.path)
        shape = tuple(self.frames.shape)
        if len(shape) != 3:
            raise MovieReadError(self.path, f"expected a stack of 2D frames, got data of shape {shape}")
        if shape[0] == 0 or shape[1] == 0 or shape[2] == 0:
            raise MovieReadError(self.path, f"empty stack (shape {shape})")
        if self.pixel_unit not in (None, *PIXEL_UNITS):
            raise ValueError(f"pixel_unit must be one of {PIXEL_UNITS} or None, got {self.pixel_unit!r}")
        if self.times_s is not None:
            t = np.asarray(self.times_s, dtype=np.float64)
            if t.shape != (shape[0],):
                raise MovieReadError(self.path, f"{t.size} time stamps for {shape[0]} frames")
            self.times_s = t

    # -- shape ---------------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.frames.dtype)

    @property
    def nbytes(self) -> int:
        return self.n_frames * self.frame_shape[0] * self.frame_shape[1] * self.dtype.itemsize

    # -- time ----------------------------------------------------------------------------------
    @property
    def frame_interval_s(self) -> float | None:
        """Median interval between frames in s (None without timing or with one frame)."""
        if self.times_s is None or self.n_frames < 2:
            return None
        return float(np.median(np.diff(self.times_s)))

    @property
    def duration_s(self) -> float | None:
        if self.times_s is None:
            return None
        if self.n_frames < 2:
            return 0.0
        return float(self.times_s[-1] - self.times_s[0])

    @property
    def times_uniform(self) -> bool | None:
        """True when every interval is within 1% (or 1 us) of the median; None without timing."""
        if self.times_s is None:
            return None
        if self.n_frames < 3:
            return True
        d = np.diff(self.times_s)
        med = np.median(d)
        return bool(np.all(np.abs(d - med) <= max(0.01 * abs(med), 1e-6)))

    @property
    def is_diffraction(self) -> bool:
        return self.pixel_unit == "1/nm"

    # -- pixels --------------------------------------------------------------------------------
    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``start:stop`` as a float32 array of shape (n, rows, cols).

        NaN and Inf pixels are kept: callers that cannot handle them use
        :func:`temtrack.io.movie.finite_frames`.
        """
        stop = self.n_frames if stop is None else stop
        if not (0 <= start <= stop <= self.n_frames):
            raise IndexError(f"frames {start}:{stop} outside 0:{self.n_frames}")
        try:
            block = self.frames[start:stop]
            if hasattr(block, "compute"):
                block = block.compute()
            # Always a fresh, writable array: a float32 memmap would otherwise come back as a
            # read-only view of the input file.
            return np.array(block, dtype=np.float32)
        except (MovieReadError, KeyboardInterrupt):
            raise
        except (OSError, ValueError, IndexError, KeyError, TypeError, OverflowError, MemoryError,
                EOFError, RuntimeError) as exc:  # codecs (imagecodecs.DeflateError) raise RuntimeError
            # A file damaged past its header fails only when its frames are read (any reader, any
            # library): still one line naming the file, never a raw library exception.
            detail = str(exc).strip() or type(exc).__name__
            raise MovieReadError(self.path, f"cannot read frames {start}:{stop} ({type(exc).__name__}: {detail})") from exc

    def frame(self, index: int) -> np.ndarray:
        """One frame as a float32 array (negative indices count from the end)."""
        if index < 0:
            index += self.n_frames
        return self.read(index, index + 1)[0]

    # -- calibration overrides -----------------------------------------------------------------
    def with_calibration(self, *, pixel_size: float | None = None, pixel_unit: str | None = None,
                         frame_interval_s: float | None = None) -> "Movie":
        """A copy with the user's pixel size and/or frame interval replacing the file's.

        Parameters
        ----------
        pixel_size : float, optional
            Pixel size in ``pixel_unit`` (default unit: the movie's own, else nm).
        pixel_unit : {'nm', '1/nm'}, optional
        frame_interval_s : float, optional
            Uniform frame interval in s; replaces the file's times.
        """
        changes: dict[str, Any] = {}
        problems = list(self.problems)
        if pixel_size is not None:
            if not (math.isfinite(pixel_size) and pixel_size > 0):
                raise ParameterError(f"pixel size must be a positive number, got {pixel_size}")
            unit = pixel_unit or self.pixel_unit or "nm"
            if unit not in PIXEL_UNITS:
                raise ParameterError(f"pixel unit must be one of {PIXEL_UNITS}, got {unit!r}")
            changes.update(pixel_size=float(pixel_size), pixel_unit=unit)
            problems = [p for p in problems if "no spatial calibration" not in p]
        if frame_interval_s is not None:
            if not (math.isfinite(frame_interval_s) and frame_interval_s > 0):
                raise ParameterError(f"frame interval must be a positive number of seconds, got {frame_interval_s}")
            changes.update(times_s=np.arange(self.n_frames) * float(frame_interval_s), time_source="user")
            problems = [p for p in problems if "no frame timing" not in p]
        if not changes:
            return self
        base_reopen = self.reopen
        kwargs = dict(pixel_size=pixel_size, pixel_unit=pixel_unit, frame_interval_s=frame_interval_s)
        new_reopen = None
        if base_reopen is not None:
            new_reopen = _Recalibrated(base_reopen, kwargs)
        return replace(self, problems=problems, reopen=new_reopen, **changes)

    def summary(self) -> dict:
        """The facts ``temtrack info --json`` prints."""
        # Multi-file formats (frms6 + hdr, GMS folders) state their total size in the metadata.
        size = self.original_metadata.get("size_on_disk_bytes")
        if size is None:
            try:
                size = _size_on_disk(self.path)
            except OSError:
                size = None
        return {
            "path": str(self.path),
            "format": self.format,
            "n_frames": self.n_frames,
            "frame_shape": list(self.frame_shape),
            "dtype": str(self.dtype),
            "pixel_size": self.pixel_size,
            "pixel_unit": self.pixel_unit,
            "frame_interval_s": self.frame_interval_s,
            "duration_s": self.duration_s,
            "times_uniform": self.times_uniform,
            "time_source": self.time_source,
            "size_on_disk_bytes": size,
            "problems": list(self.problems),
        }

    def __reduce__(self):
        if self.reopen is None:
            # Only in-memory movies (tests, notebooks) travel with their pixels.
            return (_rebuild, (self.frames, self.times_s, self.pixel_size, self.pixel_unit,
                               str(self.path), self.format, self.original_metadata, self.problems,
                               self.time_source))
        return (_call, (self.reopen,))


def metadata_to_json(obj, depth: int = 0):
    """A JSON-serialisable copy of a reader's metadata tree, for ``Movie.original_metadata``.

    numpy scalars and short arrays become plain values, bytes are decoded, non-finite floats become
    None, anything else its ``str``; deeper than 12 levels or past 1000 list items is cut.
    """
    if depth > 12:
        return None
    if isinstance(obj, dict):
        return {str(k): metadata_to_json(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [metadata_to_json(v, depth + 1) for v in obj[:1000]]
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 1000 else f"<array {obj.shape} {obj.dtype}>"
    if isinstance(obj, np.generic):
        if isinstance(obj, (np.bytes_, np.void)):
            return bytes(obj).decode("latin-1")
        obj = obj.item()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def finite_frames(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace NaN/Inf pixels by their frame's median of finite pixels (in place).

    Returns the block and the number of replaced pixels per frame, which callers report:
    dead or hot pixels and corrupt detector reads should be flagged, not propagated into every
    Fourier coefficient or fit.
    """
    bad = ~np.isfinite(block)
    counts = bad.reshape(block.shape[0], -1).sum(axis=1)
    for i in np.nonzero(counts)[0]:
        good = block[i][~bad[i]]
        block[i][bad[i]] = np.median(good) if good.size else 0.0
    return block, counts


class _Recalibrated:
    """Picklable ``reopen`` that re-applies the user's calibration overrides."""

    def __init__(self, base, kwargs):
        self.base, self.kwargs = base, kwargs

    def __call__(self) -> Movie:
        return self.base().with_calibration(**self.kwargs)


def _call(fn):
    return fn()


def _rebuild(frames, times_s, pixel_size, pixel_unit, path, fmt, meta, problems, time_source):
    # dask-backed frames (e.g. a lazy HyperSpy signal) travel as their graph, not computed.
    frames = frames if hasattr(frames, "compute") else np.asarray(frames)
    return Movie(frames, times_s, pixel_size, pixel_unit, Path(path), fmt, meta,
                 problems, time_source)


def _size_on_disk(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def movie_from_array(frames, *, pixel_size: float | None = None, pixel_unit: str | None = "nm",
                     frame_interval_s: float | None = None, times_s=None,
                     path: str | os.PathLike = "<array>", metadata: dict | None = None) -> Movie:
    """Wrap an in-memory or dask array (n, rows, cols) as a Movie (for notebooks and tests)."""
    frames_shape = getattr(frames, "shape", None)
    if frames_shape is None:
        frames = np.asarray(frames)
    if len(frames.shape) == 2:
        frames = frames[None]
    n = frames.shape[0]
    if times_s is None and frame_interval_s is not None:
        times_s = np.arange(n) * float(frame_interval_s)
    problems = []
    if pixel_size is None:
        pixel_unit = None
        problems.append("no spatial calibration: pixel size unknown (give --pixel-size)")
    if times_s is None:
        problems.append("no frame timing (give --frame-interval)")
    return Movie(frames, times_s, pixel_size, pixel_unit, Path(path), "array", metadata or {},
                 problems, "user" if times_s is not None else "none")
