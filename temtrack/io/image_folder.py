"""Read a folder of numbered TIFF/PNG frames as one lazy movie.

Hand-written because no library reads "one image per file, ordered by the number in the name" as a
lazy stack with a one-line error for the file that does not fit: ``imageio``/``tifffile`` sequences
sort names as text (``frame_10`` before ``frame_2``) and read everything at once.

This module also holds :class:`LazyFrames`, the small on-demand frame stack that the TIFF and video
readers share (formats whose frames cannot be memory-mapped), and :func:`rgb_to_luminance`, the one
documented conversion of colour pixels used by every reader.
"""
from __future__ import annotations

import functools
import os
import re
import struct
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from temtrack.errors import MovieReadError
from temtrack.io.movie import Movie

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")

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


# ------------------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_NUM = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders ``frame_2`` before ``frame_10`` (numbers compared as numbers)."""
    parts = _NUM.split(name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts)


def _png_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a PNG from its IHDR chunk, without decoding pixels."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    samples = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour)
    if samples is None:
        raise ValueError(f"unknown PNG colour type {colour}")
    dtype = np.dtype(np.uint16 if depth == 16 else np.uint8)
    shape = (height, width) if samples == 1 else (height, width, samples)
    return shape, dtype


def _tiff_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape = tuple(d for d in series.shape if d != 1) or (1, 1)
        return shape, np.dtype(series.dtype)


def _read_file(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".png":
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    import tifffile

    return np.squeeze(tifffile.imread(path))


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    return _png_header(path) if path.suffix.lower() == ".png" else _tiff_header(path)


def _to_frame(data: np.ndarray, colour: bool, dtype: np.dtype, name: str) -> np.ndarray:
    if colour:
        if data.ndim != 3:
            raise ValueError(f"{name}: expected an RGB image, got shape {data.shape}")
        return rgb_to_luminance(data)
    if data.ndim == 3 and data.shape[-1] == 2:  # grey + alpha PNG
        data = data[..., 0]
    if data.ndim != 2:
        raise ValueError(f"{name}: expected a 2D image, got shape {data.shape}")
    return data.astype(dtype, copy=False)


def _read_folder_frame(files: list[Path], colour: bool, dtype: np.dtype, folder: Path, i: int) -> np.ndarray:
    try:
        return _to_frame(_read_file(files[i]), colour, dtype, files[i].name)
    except Exception as exc:  # the file changed or is corrupt: say which one
        raise MovieReadError(files[i], f"cannot read frame {i} of folder {folder.name}: {_one_line(exc)}") from exc


def read_image_folder(path: str | os.PathLike) -> Movie:
    """Read a folder of numbered TIFF/PNG frames (one frame per file) as a lazy movie.

    Files with the suffixes ``.tif``, ``.tiff`` and ``.png`` (any case) are ordered by the numbers
    in their names (natural sort: ``f_2.png`` before ``f_10.png``); other files are ignored. Only
    the image headers are read when opening; each frame is decoded when asked for. RGB(A) frames
    are converted to luminance (see :func:`rgb_to_luminance`). The movie is uncalibrated and
    untimed (give ``--pixel-size`` and ``--frame-interval``), except that the pixel size a
    first TIFF file states (ImageJ, OME, DigitalMicrograph tags) is taken for the whole folder.

    Parameters
    ----------
    path : path-like
        The folder.

    Returns
    -------
    Movie
        ``format='image-folder'``.

    Raises
    ------
    MovieReadError
        The folder is missing or holds no frames, or a file's size, colour layout or pixel type
        differs from the first frame's (the message names the first such file), or a file is
        not a readable image.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise MovieReadError(folder, "not a folder")
    files = sorted((f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                    and not f.name.startswith(".")), key=lambda f: natural_key(f.name))
    if not files:
        raise MovieReadError(folder, "no TIFF or PNG frames in this folder (empty movie)")
    headers = []
    for f in files:
        try:
            headers.append(_header(f))
        except Exception as exc:
            raise MovieReadError(f, f"not a readable image ({_one_line(exc)})") from exc
    shape0, dtype0 = headers[0]
    for f, (shape, dtype) in zip(files, headers):
        if shape != shape0:
            raise MovieReadError(f, f"frame size {shape} differs from the first frame {files[0].name} {shape0}")
        if dtype != dtype0:
            raise MovieReadError(f, f"pixel type {dtype} differs from the first frame {files[0].name} ({dtype0})")
    if len(shape0) == 3 and shape0[-1] in (3, 4):
        colour, frame_shape, dtype = True, shape0[:2], np.dtype(np.float32)
    elif len(shape0) == 3 and shape0[-1] == 2:
        colour, frame_shape, dtype = False, shape0[:2], dtype0
    elif len(shape0) == 2:
        colour, frame_shape, dtype = False, shape0, dtype0
    else:
        raise MovieReadError(files[0], f"expected one 2D frame per file, got an image of shape {shape0}")
    if dtype.kind == "c":
        raise MovieReadError(files[0], f"complex pixels ({dtype}) are not supported")
    frames = LazyFrames(len(files), frame_shape, dtype,
                        functools.partial(_read_folder_frame, files, colour, dtype, folder), serialize=False)
    pixel_size = pixel_unit = source = None
    if files[0].suffix.lower() in (".tif", ".tiff"):
        from temtrack.io.tiff import read_tiff_pixel_size

        try:
            pixel_size, pixel_unit, source = read_tiff_pixel_size(files[0])
        except Exception:  # the header was readable above; a calibration we cannot parse is no calibration
            pixel_size = pixel_unit = source = None
    problems = []
    if pixel_size is None:
        problems.append("no spatial calibration: pixel size unknown (give --pixel-size)")
    problems.append("no frame timing (give --frame-interval)")
    if colour:
        problems.append(LUMINANCE_PROBLEM)
    meta = {"files": [f.name for f in files[:10]] + (["..."] if len(files) > 10 else []),
            "n_files": len(files), "file_dtype": str(dtype0), "file_shape": list(shape0),
            "calibration_source": f"{source} tags of {files[0].name}" if source else None}
    return Movie(frames, None, pixel_size, pixel_unit, folder, "image-folder", meta, problems, "none",
                 reopen=functools.partial(read_image_folder, folder))
