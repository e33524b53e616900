"""Reading in situ TEM movies: :func:`open_movie` detects the format by content and returns a
:class:`~temtrack.io.movie.Movie` (lazy frames, times, calibration, provenance).

Readers are imported inside the dispatch, so ``import temtrack.io`` stays light and a reader whose
optional dependency is missing fails only for its own format.
"""
from __future__ import annotations

import importlib
import os
import struct
import tokenize
from pathlib import Path

from temtrack.errors import MovieReadError, ParameterError, TemtrackError
from temtrack.io.detect import FORMATS, detect_format
from temtrack.io.movie import Movie, movie_from_array

__all__ = ["open_movie", "detect_format", "Movie", "movie_from_array", "SUPPORTED_FORMATS",
           "FORMATS", "file_dialog_filter"]

#: (format name, label, extensions) for file dialogs and ``--help``; folders are listed with ``/``.
SUPPORTED_FORMATS: list[tuple[str, str, tuple[str, ...]]] = [
    ("dm", "Gatan Digital Micrograph", (".dm3", ".dm4")),
    ("gms-insitu", "Gatan GMS 3 In-Situ recording (folder)", ("/",)),
    ("frms6", "pnCCD frms6", (".hdr", ".frms6")),
    ("tiff", "TIFF stack (ImageJ, OME)", (".tif", ".tiff")),
    ("emd", "Velox EMD", (".emd",)),
    ("ser", "TIA SER/EMI", (".ser", ".emi")),
    ("mrc", "MRC", (".mrc", ".mrcs")),
    ("hspy", "HyperSpy HDF5", (".hspy", ".hdf5")),
    ("zspy", "HyperSpy zarr (folder)", (".zspy",)),
    ("npy", "NumPy array", (".npy",)),
    ("video", "Video", (".avi", ".mp4", ".mov", ".mkv")),
    ("image-folder", "Folder of numbered TIFF/PNG frames", ("/",)),
]

# format name -> (module, function, extra keyword arguments)
_READERS = {
    "dm": ("temtrack.io.dm", "read_dm", {}),
    "gms-insitu": ("temtrack.io.gms_insitu", "read_gms_insitu", {}),
    "frms6": ("temtrack.io.frms6", "read_frms6", {}),
    "tiff": ("temtrack.io.tiff", "read_tiff", {}),
    "emd": ("temtrack.io.rsciio_generic", "read_rsciio", {"format": "emd"}),
    "ser": ("temtrack.io.ser", "read_ser", {}),
    "mrc": ("temtrack.io.rsciio_generic", "read_rsciio", {"format": "mrc"}),
    "hspy": ("temtrack.io.rsciio_generic", "read_rsciio", {"format": "hspy"}),
    "zspy": ("temtrack.io.rsciio_generic", "read_rsciio", {"format": "zspy"}),
    "npy": ("temtrack.io.npy", "read_npy", {}),
    "video": ("temtrack.io.video", "read_video", {}),
    "image-folder": ("temtrack.io.image_folder", "read_image_folder", {}),
}
_ALIASES = {"dm3": "dm", "dm4": "dm", "gms": "gms-insitu", "insitu": "gms-insitu", "tif": "tiff",
            "hdr": "frms6", "emi": "ser", "avi": "video", "mp4": "video", "folder": "image-folder",
            "images": "image-folder", "velox": "emd"}


def file_dialog_filter() -> str:
    """A Qt file-dialog filter string: all movie files first, then one entry per format."""
    exts = sorted({e for _, _, es in SUPPORTED_FORMATS for e in es if e != "/"})
    parts = ["Movies (" + " ".join("*" + e for e in exts) + ")"]
    for _, label, es in SUPPORTED_FORMATS:
        files = [e for e in es if e != "/"]
        if files:
            parts.append(f"{label} (" + " ".join("*" + e for e in files) + ")")
    parts.append("All files (*)")
    return ";;".join(parts)


def open_movie(path: str | os.PathLike, *, pixel_size: float | None = None,
               pixel_unit: str | None = None, frame_interval_s: float | None = None,
               format: str | None = None, gain_map: str | os.PathLike | None = None) -> Movie:
    """Open a movie file or folder lazily, whatever its format.

    Parameters
    ----------
    path : path-like
        A file, or a folder (GMS In-Situ recording, ``.zspy`` store, numbered TIFF/PNG frames).
    pixel_size : float, optional
        Pixel size replacing the file's (in ``pixel_unit``, default the file's unit or nm).
    pixel_unit : {'nm', '1/nm'}, optional
        Unit of ``pixel_size``; ``'1/nm'`` for diffraction patterns.
    frame_interval_s : float, optional
        Uniform frame interval replacing the file's times.
    format : str, optional
        Skip detection and use this reader (one of :data:`FORMATS`, or an extension such as
        ``'dm4'``).
    gain_map : path-like, optional
        Gain map for ``frms6`` recordings (``.mat`` or ``.csv``).

    Returns
    -------
    Movie

    Raises
    ------
    MovieReadError
        Missing path ("no such file or folder"), unknown format (saying what it looked like), or a
        file its reader cannot read.
    ParameterError
        Bad override values or a ``format`` name that does not exist.
    """
    path = Path(path)
    if pixel_unit is not None and pixel_unit not in ("nm", "1/nm"):
        raise ParameterError(f"pixel unit must be 'nm' or '1/nm', got {pixel_unit!r}")
    if pixel_unit is not None and pixel_size is None:
        raise ParameterError("a pixel unit needs a pixel size (give both)")
    if not path.exists():
        raise MovieReadError(path, "no such file or folder")
    if format is None:
        fmt = detect_format(path)
    else:
        key = str(format).lower().lstrip(".")
        fmt = _ALIASES.get(key, key)
        if fmt not in _READERS:
            raise ParameterError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if gain_map is not None and fmt != "frms6":
        raise ParameterError(f"a gain map applies to frms6 recordings only, not {fmt}")
    module_name, func_name, kwargs = _READERS[fmt]
    kwargs = dict(kwargs)
    if gain_map is not None:
        kwargs["gain_map"] = gain_map
    try:
        reader = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise MovieReadError(path, f"the {fmt} reader is not available ({exc})") from None
    try:
        movie = reader(path, **kwargs)
    except TemtrackError:
        raise
    except (OSError, ValueError, KeyError, IndexError, EOFError, struct.error, TypeError, OverflowError,
            SyntaxError, tokenize.TokenError) as exc:  # numpy parses .npy headers with tokenize
        # A reader's library failing on a corrupt file must still give the user one line.
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise MovieReadError(path, f"cannot read as {fmt}: {detail}") from exc
    if pixel_size is not None or frame_interval_s is not None:
        movie = movie.with_calibration(pixel_size=pixel_size, pixel_unit=pixel_unit,
                                       frame_interval_s=frame_interval_s)
    return movie
from temtrack.hyperspy.convert import movie_to_signal, signal_to_movie  # noqa: E402,F401  (HyperSpy imported on use)
