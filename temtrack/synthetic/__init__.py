"""Synthetic in situ TEM movies with exactly known ground truth.

The project's accuracy tests, the sample movies and the benchmarks all use these. Each family
(``nanowire``, ``saed``, ``hrtem``) has a ``make_*`` function returning ``(frames, truth)`` and the
shared writer below puts them on disk as a calibrated ImageJ TIFF plus ``<name>.truth.json``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from temtrack.io.results import write_bytes_atomic, write_json_atomic


def save_movie_tiff(path: str | os.PathLike, frames: np.ndarray, *, pixel_size: float | None,
                    pixel_unit: str = "nm", frame_interval_s: float | None = None,
                    compression: str | None = None) -> Path:
    """Write a (n, rows, cols) stack as an ImageJ TIFF with spatial and time calibration.

    Parameters
    ----------
    path : path-like
    frames : ndarray
        uint8, uint16 or float32 frames.
    pixel_size : float or None
        Size of a pixel in ``pixel_unit``.
    pixel_unit : {'nm', '1/nm'}
    frame_interval_s : float, optional
    compression : {None, 'zlib'}, optional
        Deflate-compress the pages (Fiji reads them); uncompressed stacks can be memory-mapped.
    """
    import io

    import tifffile

    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    metadata: dict = {"axes": "TYX"}
    kwargs: dict = {}
    if pixel_size is not None:
        metadata["unit"] = pixel_unit
        kwargs["resolution"] = (1.0 / pixel_size, 1.0 / pixel_size)
    if frame_interval_s is not None:
        metadata["finterval"] = float(frame_interval_s)
    buf = io.BytesIO()
    if compression:
        kwargs["compression"] = compression
    tifffile.imwrite(buf, frames, imagej=True, metadata=metadata, **kwargs)
    return write_bytes_atomic(path, buf.getvalue())


def truth_path_for(movie_path: str | os.PathLike) -> Path:
    """``movie.tif`` -> ``movie.truth.json``."""
    p = Path(movie_path)
    return p.with_name(p.name.split(".")[0] + ".truth.json")


def save_truth(movie_path: str | os.PathLike, truth: dict) -> Path:
    return write_json_atomic(truth_path_for(movie_path), truth)


def save_synthetic(path: str | os.PathLike, frames: np.ndarray, truth: dict) -> tuple[Path, Path]:
    """Write a generator's ``(frames, truth)``: the calibrated TIFF and ``<name>.truth.json``.

    The calibration comes from the truth: ``pixel_size_nm`` (images) or ``pixel_size_inv_nm``
    (diffraction patterns), and ``frame_interval_s``.
    """
    if "pixel_size_inv_nm" in truth:
        size, unit = truth["pixel_size_inv_nm"], "1/nm"
    else:
        size, unit = truth["pixel_size_nm"], "nm"
    movie_path = save_movie_tiff(path, frames, pixel_size=size, pixel_unit=unit,
                                 frame_interval_s=truth["frame_interval_s"])
    return movie_path, save_truth(movie_path, truth)
