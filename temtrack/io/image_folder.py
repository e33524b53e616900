"""Read a folder of numbered TIFF/PNG frames as one lazy movie.

Hand-written because no library reads "one image per file, ordered by the number in the name" as a
lazy stack with a one-line error for the file that does not fit: ``imageio``/``tifffile`` sequences
sort names as text (``frame_10`` before ``frame_2``) and read everything at once.

"""
from __future__ import annotations

import functools
import os
import re
import struct
from pathlib import Path

import numpy as np

from temtrack.errors import MovieReadError
from temtrack.io.lazy import LUMINANCE_PROBLEM, LazyFrames, rgb_to_luminance
from temtrack.io.movie import Movie

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")

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
