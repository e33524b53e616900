"""Hand a temtrack :class:`~temtrack.io.movie.Movie` to HyperSpy and back without copying pixels.

A Movie and a HyperSpy signal describe the same thing in different vocabularies: a frame stack with
``times_s`` and one ``pixel_size`` on one side; a (time | x, y) signal with calibrated axes on the
other. The conversion only maps the calibration and wraps the very same array object:

* a Movie backed by a numpy array (in-memory or ``numpy.memmap``) becomes an eager signal whose
  ``data`` *is* that array, or a lazy signal whose dask graph reads from it;
* a Movie backed by a dask array becomes a lazy signal over that dask array;
* a Movie backed by one of temtrack's lazy frame wrappers (one file per frame, video, drift-aligned
  view) becomes a lazy signal through ``dask.array.from_array`` over the wrapper;
* a signal becomes a Movie whose ``frames`` is ``signal.data`` (numpy or dask), read chunk by chunk
  by the executors, never computed as a whole.

Why hand-written: rosettasciio and HyperSpy know nothing about temtrack's Movie, and temtrack's
readers exist because per-frame reads must not go through dask; this module is the small bridge.
HyperSpy is imported inside the functions, so importing this module (and re-exporting it from
``temtrack.io``) stays light.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from temtrack.errors import ParameterError
from temtrack.io.movie import Movie, normalise_length_unit, time_unit_to_s

__all__ = ["load", "movie_to_signal", "signal_to_movie", "signal_type_for", "time_axis_dict"]

#: signal_type of image movies (real space, nm) and of diffraction movies (1/nm).
IMAGE_SIGNAL_TYPE = "in_situ_movie"
DIFFRACTION_SIGNAL_TYPE = "in_situ_diffraction"

# Frames per dask chunk: large enough that dask's per-chunk overhead is small, small enough that a
# chunk is a few tens of MB.
_CHUNK_BYTES = 32 * 2 ** 20


def signal_type_for(movie: Movie) -> str:
    """``'in_situ_diffraction'`` for a movie calibrated in 1/nm, ``'in_situ_movie'`` otherwise."""
    return DIFFRACTION_SIGNAL_TYPE if movie.pixel_unit == "1/nm" else IMAGE_SIGNAL_TYPE


def _is_uniform(values: np.ndarray) -> bool:
    if values.size < 3:
        return True
    d = np.diff(values)
    med = float(np.median(d))
    return bool(np.all(np.abs(d - med) <= max(1e-6 * abs(med), 1e-12)))


def time_axis_dict(times_s, *, name: str = "time", navigate: bool | None = None) -> dict:
    """A HyperSpy axis dictionary for frame times in s.

    Uniform times give a ``UniformDataAxis`` (offset + scale); non-uniform times a ``DataAxis`` with
    ``axis=times_s`` (HyperSpy >= 1.7), so irregular time stamps are kept exactly.
    """
    t = np.asarray(times_s, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ParameterError("times must be a non-empty 1D array of finite seconds")
    out: dict = {"name": name, "units": "s"}
    if navigate is not None:
        out["navigate"] = navigate
    if _is_uniform(t):
        scale = float(np.median(np.diff(t))) if t.size > 1 else 1.0
        out.update(size=int(t.size), offset=float(t[0]), scale=scale if scale != 0 else 1.0)
    else:
        out["axis"] = t.copy()
    return out


def _length_axis_dict(name: str, size: int, scale: float | None, unit: str | None, offset: float = 0.0) -> dict:
    out: dict = {"name": name, "size": int(size), "offset": float(offset), "navigate": False}
    if scale is not None:
        out.update(scale=float(scale), units=unit)
    else:
        out.update(scale=1.0)
    return out


def _frames_per_chunk(frames) -> int:
    n, rows, cols = (int(v) for v in frames.shape)
    itemsize = np.dtype(frames.dtype).itemsize
    return int(max(1, min(n, _CHUNK_BYTES // max(1, rows * cols * itemsize))))


class _Frames:
    """Hides a numpy array or memmap from ``dask.array.from_array``'s defensive ``x.copy()``.

    Recent dask copies any argument that has a ``copy`` method (a whole memory-mapped movie would
    be read into memory); through this wrapper dask only sees ``shape``, ``dtype`` and
    ``__getitem__``, and every chunk is a view of the original array until computed.
    """

    def __init__(self, array):
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        return self.array[key]

    def __len__(self):
        return self.shape[0]


def _as_dask(frames):
    import dask.array as da

    if isinstance(frames, da.Array):
        return frames
    chunks = (_frames_per_chunk(frames), int(frames.shape[1]), int(frames.shape[2]))
    source = _Frames(frames) if isinstance(frames, np.ndarray) or hasattr(frames, "copy") else frames
    # asarray=False: chunks stay what __getitem__ returns (memmap views); temtrack's lazy wrappers
    # are called with a tuple of slices per chunk.
    return da.from_array(source, chunks=chunks, asarray=False, name=False, lock=False,
                         meta=np.empty((0, 0, 0), dtype=frames.dtype))


def _signal_classes(signal_type: str):
    from temtrack.hyperspy import signals as sig

    if signal_type == DIFFRACTION_SIGNAL_TYPE:
        return sig.InSituDiffractionMovie, sig.LazyInSituDiffractionMovie
    return sig.InSituMovie, sig.LazyInSituMovie


def movie_to_signal(movie: Movie, *, lazy: bool | None = None, signal_type: str | None = None,
                    title: str | None = None):
    """Wrap a Movie as a HyperSpy signal (navigation: time; signal: the frame), without copying.

    Parameters
    ----------
    movie : Movie
    lazy : bool, optional
        None (default): eager when the frames are a numpy array or memmap (the signal's ``data``
        *is* that array), lazy otherwise. True: a lazy signal over the frames. False: an eager
        signal; frames that are not a numpy array are then read into memory (the only case that
        copies, because the user asked for it).
    signal_type : {'in_situ_movie', 'in_situ_diffraction'}, optional
        Default from the calibration: ``'in_situ_diffraction'`` for 1/nm, else ``'in_situ_movie'``.
    title : str, optional
        Default: the file name.

    Returns
    -------
    InSituMovie, LazyInSituMovie, InSituDiffractionMovie or LazyInSituDiffractionMovie
        Axes: ``time`` (s; a non-uniform ``DataAxis`` when the frame times are irregular; a frame
        index named ``frame`` when the movie has no timing), ``y`` and ``x`` in nm or 1/nm (pixels
        when uncalibrated). ``original_metadata`` holds the file's metadata;
        ``metadata.General.original_filename`` and ``metadata.Temtrack`` (format, path,
        time_source, problems) the provenance.
    """
    if not isinstance(movie, Movie):
        raise ParameterError(f"movie_to_signal needs a temtrack Movie, got {type(movie).__name__}")
    if lazy not in (None, True, False):
        raise ParameterError(f"lazy must be None, True or False, got {lazy!r}")
    signal_type = signal_type or signal_type_for(movie)
    if signal_type not in (IMAGE_SIGNAL_TYPE, DIFFRACTION_SIGNAL_TYPE):
        raise ParameterError(f"signal_type must be '{IMAGE_SIGNAL_TYPE}' or '{DIFFRACTION_SIGNAL_TYPE}', "
                             f"got {signal_type!r}")
    frames = movie.frames
    is_numpy = isinstance(frames, np.ndarray)
    if lazy is None:
        lazy = not is_numpy
    if lazy:
        data = _as_dask(frames)
    elif is_numpy:
        data = frames
    elif hasattr(frames, "compute"):
        data = np.asarray(frames.compute())
    else:
        data = np.asarray(frames[:])

    n, rows, cols = movie.n_frames, *movie.frame_shape
    if movie.times_s is not None:
        t_axis = time_axis_dict(movie.times_s, navigate=True)
    else:
        t_axis = {"name": "frame", "size": n, "offset": 0.0, "scale": 1.0, "navigate": True}
    axes = [t_axis,
            _length_axis_dict("y", rows, movie.pixel_size, movie.pixel_unit),
            _length_axis_dict("x", cols, movie.pixel_size, movie.pixel_unit)]
    name = movie.path.name if str(movie.path) not in ("", ".") else "movie"
    metadata = {
        "General": {"title": title if title is not None else name, "original_filename": name},
        "Signal": {"signal_type": signal_type, "quantity": "Intensity (counts)"},
        "Temtrack": {"format": movie.format, "path": str(movie.path), "time_source": movie.time_source,
                     "problems": list(movie.problems)},
    }
    eager_cls, lazy_cls = _signal_classes(signal_type)
    cls = lazy_cls if lazy else eager_cls
    signal = cls(data, axes=axes, metadata=metadata,
                 original_metadata=_plain(movie.original_metadata))
    return signal


def load(path, *, lazy: bool | None = None, **open_options):
    """Open a movie with temtrack's readers and return it as an in situ signal (no copy).

    The alternative to ``hs.load(path).set_signal_type(...)`` for formats where temtrack reads more
    than rosettasciio does (GMS In-Situ folders, frms6, frame times, ImageJ units).

    Parameters
    ----------
    path : path-like
    lazy : bool, optional
        As :func:`movie_to_signal` (default: eager for memory-mapped files, lazy otherwise).
    **open_options
        ``pixel_size``, ``pixel_unit``, ``frame_interval_s``, ``format``, ``gain_map`` of
        :func:`temtrack.io.open_movie`.
    """
    from temtrack.io import open_movie

    return movie_to_signal(open_movie(path, **open_options), lazy=lazy)


def _plain(meta) -> dict:
    """Metadata HyperSpy can store: nested dicts kept, other non-scalar values turned into text."""
    if not isinstance(meta, dict):
        return {}
    out = {}
    for k, v in meta.items():
        key = str(k)
        if isinstance(v, dict):
            out[key] = _plain(v)
        elif v is None or isinstance(v, (bool, int, float, str, np.number, np.bool_, np.ndarray)):
            out[key] = v
        elif isinstance(v, (list, tuple)):
            try:
                arr = np.asarray(v)
                out[key] = list(v) if arr.dtype.kind in "biufU" else repr(v)
            except (ValueError, TypeError):
                out[key] = repr(v)
        else:
            out[key] = repr(v)
    return out


def _axis_values(axis) -> np.ndarray:
    return np.asarray(axis.axis, dtype=np.float64)


def signal_to_movie(signal, *, path=None) -> Movie:
    """A Movie over a HyperSpy signal's data (numpy or dask), without copying.

    Parameters
    ----------
    signal : hyperspy Signal2D (eager or lazy)
        One navigation axis (time or frame number) and two signal axes; a single image (no
        navigation axis) gives a one-frame movie.
    path : path-like, optional
        What the Movie reports as its path; default the signal's original file name.

    Returns
    -------
    Movie
        ``frames`` is ``signal.data`` (or a view of it); ``times_s`` from the navigation axis when
        its unit is a time unit (shifted to start at 0), else None; ``pixel_size``/``pixel_unit``
        from the signal axes when their unit is a length or inverse length (converted to nm or
        1/nm), else None. Anything lost is said in ``problems``.

    Raises
    ------
    ParameterError
        When the signal is not a stack of 2D frames along one navigation axis.
    """
    am = getattr(signal, "axes_manager", None)
    if am is None:
        raise ParameterError(f"signal_to_movie needs a HyperSpy signal, got {type(signal).__name__}")
    if am.signal_dimension != 2 or am.navigation_dimension > 1:
        raise ParameterError("signal_to_movie needs a stack of 2D frames along one navigation axis (time), "
                             f"got navigation dimension {am.navigation_dimension} and signal dimension "
                             f"{am.signal_dimension} (use s.transpose(signal_axes=2) first)")
    data = signal.data
    if data.ndim == 2:
        data = data[None]
    problems: list[str] = []

    # Signal axes: HyperSpy lists them x first; data order is (time, y, x).
    ax_x, ax_y = am.signal_axes
    pixel_size = pixel_unit = None
    if getattr(ax_x, "is_uniform", True) and getattr(ax_y, "is_uniform", True):
        sx, ux = normalise_length_unit(abs(float(ax_x.scale)), _units(ax_x))
        sy, uy = normalise_length_unit(abs(float(ax_y.scale)), _units(ax_y))
        if sx is not None and ux == uy:
            pixel_size, pixel_unit = sx, ux
            if sy is not None and not math.isclose(sx, sy, rel_tol=1e-3):
                problems.append(f"non-square pixels ({sy:g} x {sx:g} {ux}); the x scale is used")
    imagej = _imagej_calibration(signal)
    if pixel_size is None and imagej.get("unit") and _units(ax_x) is None and getattr(ax_x, "is_uniform", True):
        pixel_size, pixel_unit = normalise_length_unit(abs(float(ax_x.scale)), imagej["unit"])
    if pixel_size is None:
        problems.append("no spatial calibration: pixel size unknown (give --pixel-size)")

    times_s = None
    time_source = "none"
    if am.navigation_dimension == 1:
        nav = am.navigation_axes[0]
        factor = time_unit_to_s(_units(nav))
        if factor is not None:
            t = _axis_values(nav) * factor
            times_s = t - t[0]
            time_source = "axis"
        elif imagej.get("finterval_s") and _units(nav) is None:
            times_s = np.arange(nav.size, dtype=np.float64) * imagej["finterval_s"]
            time_source = "axis"
    else:
        times_s = np.zeros(1)
        time_source = "axis"
    if times_s is None:
        problems.append("no frame timing (give --frame-interval)")

    md = signal.metadata
    tt = md.get_item("Temtrack") if md.has_item("Temtrack") else None
    if path is None:
        path = (tt.get_item("path") if tt is not None and tt.has_item("path") else None) \
            or md.get_item("General.original_filename", None) or md.get_item("General.title", None) \
            or "<hyperspy signal>"
    if tt is not None and tt.has_item("problems"):
        # Calibration problems are re-derived from the axes above (the user may have fixed them).
        kept = [str(p) for p in tt.get_item("problems")
                if not str(p).startswith(("no spatial calibration", "no frame timing"))]
        problems = kept + problems
    if tt is not None and tt.has_item("time_source") and times_s is not None:
        time_source = str(tt.get_item("time_source"))
    original = signal.original_metadata.as_dictionary()
    return Movie(data, times_s, pixel_size, pixel_unit, Path(str(path)), "hyperspy", original,
                 _dedupe(problems), time_source)


def _imagej_calibration(signal) -> dict:
    """``unit`` and ``finterval`` (in s) of an ImageJ TIFF as rosettasciio keeps them.

    rosettasciio's TIFF reader takes the pixel scale from the resolution tags but leaves the
    ImageJ ``unit`` and ``finterval`` in ``original_metadata.ImageDescription`` unread; without
    them a stack written by ImageJ/Fiji (or :func:`temtrack.synthetic.save_movie_tiff`) loads
    uncalibrated.
    """
    om = signal.original_metadata
    desc = om.get_item("ImageDescription", None) if om.has_item("ImageDescription") else None
    if not isinstance(desc, str) or not desc.startswith("ImageJ="):
        return {}
    fields = {}
    for line in desc.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    out: dict = {}
    unit = fields.get("unit")
    if unit:
        out["unit"] = unit.encode("ascii", "backslashreplace").decode("unicode_escape") if "\\u" in unit else unit
    try:
        fi = float(fields["finterval"])
    except (KeyError, ValueError):
        fi = None
    factor = time_unit_to_s(fields.get("tunit", "s")) or 1.0
    if fi is not None and math.isfinite(fi) and fi > 0:
        out["finterval_s"] = fi * factor
    return out


def _dedupe(items):
    return list(dict.fromkeys(items))


def _units(axis) -> str | None:
    u = getattr(axis, "units", None)
    if u is None:
        return None
    u = str(u)
    return None if u in ("", "<undefined>", "Undefined") else u
