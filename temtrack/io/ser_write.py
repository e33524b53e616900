"""A minimal TIA ``.ser`` (and ``.emi``) writer, so tests, benchmarks and the fuzzer can make series.

No library in the ecosystem writes TIA files (rosettasciio only reads them), and the streaming
reader :mod:`temtrack.io.ser` must be tested on layouts real files have but the one public sample
does not: version 0x0220 (8-byte offsets), frames out of file order or with gaps, tags stored away
from their data, fewer recorded than announced elements, 1D data, many frames. Frames are written
one at a time, so a series larger than memory can be made from a frame generator.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Sequence

import numpy as np

from temtrack.errors import ParameterError
from temtrack.io.ser import (BYTE_ORDER, DATA_1D, DATA_2D, DTYPES, SERIES_ID, TAG_TIME, TAG_TIME_POSITION,
                             VERSIONS)

_DATATYPE_OF = {np.dtype(v): k for k, v in DTYPES.items()}


def write_ser(path: str | os.PathLike, frames: Sequence, *, calibration_delta: float = 1e-9,
              calibration_delta_y: float | None = None, time_stamps: Sequence[int] | None = None,
              version: int = 0x0220, tag_type: int = TAG_TIME, valid: int | None = None,
              gap_bytes: int = 0, reverse: bool = False, tags_at_end: bool = False,
              dimension_sizes: Sequence[int] | None = None, description: str = "Number", units: str = "") -> Path:
    """Write an image series (or 1D data) as TIA writes it.

    Parameters
    ----------
    path : path-like
    frames : sequence of 2D arrays (or of 1D arrays for spectra)
        ``len(frames)`` elements (``TotalNumberElements``); anything with ``__len__`` and
        ``__getitem__`` (frames are fetched one at a time). All of one shape and dtype.
    calibration_delta : float
        ``CalibrationDeltaX``: metres per pixel for images, 1/m for diffraction.
    calibration_delta_y : float, optional
        ``CalibrationDeltaY`` (default: ``calibration_delta``).
    time_stamps : sequence of int, optional
        ``Time`` of each element in s since 1970 (default: one per second from 1.6e9).
    version : {0x0210, 0x0220}
        4- or 8-byte offsets.
    tag_type : {0x4152, 0x4142}
        Time only, or time and stage position.
    valid : int, optional
        ``ValidNumberElements``: only the first ``valid`` frames are written (the rest of the
        offsets are 0), as after a stopped acquisition.
    gap_bytes : int
        Padding between elements (frames not contiguous).
    reverse : bool
        Store the elements in reverse order in the file (offsets decreasing).
    tags_at_end : bool
        Store the tags after all the data instead of after each element.
    dimension_sizes : sequence of int, optional
        The sizes of the series dimensions (default ``(len(frames),)``; two sizes make a scan).
    description, units : str
        The dimensions' description and units.

    Returns
    -------
    Path
    """
    path = Path(path)
    if version not in VERSIONS:
        raise ParameterError(f"version must be 0x0210 or 0x0220, got {version:#x}")
    if tag_type not in (TAG_TIME, TAG_TIME_POSITION):
        raise ParameterError(f"tag_type must be 0x4152 or 0x4142, got {tag_type:#x}")
    total = len(frames)
    if total < 1:
        raise ParameterError("write_ser needs at least one frame")
    valid = total if valid is None else int(valid)
    if not 0 <= valid <= total:
        raise ParameterError(f"valid must be in 0..{total}, got {valid}")
    first = np.asarray(frames[0])
    if first.ndim not in (1, 2):
        raise ParameterError(f"frames must be 2D images or 1D spectra, got shape {first.shape}")
    dtype = first.dtype.newbyteorder("<")
    if np.dtype(dtype.str) not in _DATATYPE_OF:
        raise ParameterError(f"no SER DataType for pixels of {first.dtype}")
    data_type = _DATATYPE_OF[np.dtype(dtype.str)]
    image = first.ndim == 2
    stamps = (np.arange(total) + 1_600_000_000) if time_stamps is None else np.asarray(time_stamps)
    width = VERSIONS[version]
    dy = calibration_delta if calibration_delta_y is None else calibration_delta_y

    desc, unit = description.encode("latin-1"), units.encode("latin-1")
    head = struct.pack("<HHHIIII", BYTE_ORDER, SERIES_ID, version, DATA_2D if image else DATA_1D, tag_type,
                       total, valid)
    sizes = (total,) if dimension_sizes is None else tuple(int(d) for d in dimension_sizes)
    dims = b"".join(struct.pack("<IddII", d, 0.0, 1.0, 0, len(desc)) + desc + struct.pack("<I", len(unit)) + unit
                    for d in sizes)
    offset_array = len(head) + width + 4 + len(dims)
    head += struct.pack("<QI" if width == 8 else "<II", offset_array, len(sizes)) + dims
    pos = offset_array + 2 * total * width

    element_header_len = 50 if image else 26
    elem_bytes = element_header_len + first.size * dtype.itemsize
    tag_len = 8 if tag_type == TAG_TIME else 24
    order = list(range(valid))[::-1] if reverse else list(range(valid))
    data_offsets = np.zeros(total, np.uint64)
    tag_offsets = np.zeros(total, np.uint64)
    for i in order:
        data_offsets[i] = pos
        pos += elem_bytes
        if not tags_at_end:
            tag_offsets[i] = pos
            pos += tag_len
        pos += gap_bytes
    if tags_at_end:
        for i in order:
            tag_offsets[i] = pos
            pos += tag_len

    def tag(i):
        t = struct.pack("<HHI", tag_type, 0, int(stamps[i]))
        return t + (struct.pack("<dd", 1e-6 * i, -2e-6 * i) if tag_type == TAG_TIME_POSITION else b"")

    fmt = "<u8" if width == 8 else "<u4"
    with open(path, "wb") as f:
        f.write(head)
        f.write(data_offsets.astype(fmt).tobytes())
        f.write(tag_offsets.astype(fmt).tobytes())
        for i in order:
            frame = np.asarray(frames[i])
            if frame.shape != first.shape or frame.dtype != first.dtype:
                raise ParameterError(f"frame {i} is {frame.shape} {frame.dtype}, frame 0 {first.shape} {first.dtype}")
            f.seek(int(data_offsets[i]))
            if image:
                rows, cols = frame.shape
                f.write(struct.pack("<ddIddIHII", 0.0, calibration_delta, 0, 0.0, dy, 0, data_type, cols, rows))
                # TIA stores the bottom row first
                f.write(np.ascontiguousarray(frame[::-1], dtype=dtype).tobytes())
            else:
                f.write(struct.pack("<ddIHI", 0.0, calibration_delta, 0, data_type, frame.size))
                f.write(np.ascontiguousarray(frame, dtype=dtype).tobytes())
            if not tags_at_end:
                f.write(tag(i))
        if tags_at_end:
            for i in order:
                f.seek(int(tag_offsets[i]))
                f.write(tag(i))
        f.truncate(pos)
    return path


def write_emi(path: str | os.PathLike, *, mode: str = " TEM uP SA Zoom Image", exposure_s: float | None = 0.0625,
              camera: str = "WA-Orius", acquire_date: str = "Sun Feb 21 17:49:06 2016", n_objects: int = 1) -> Path:
    """Write a minimal ``.emi``: a binary preamble and one ``ObjectInfo`` XML block per series.

    rosettasciio (and :mod:`temtrack.io.ser`) only look for the ``<ObjectInfo>`` blocks, whose
    ``ExperimentalDescription.Mode`` (image or diffraction) and ``AcquireInfo.DwellTimePath``
    (exposure, s) matter here.
    """
    dwell = "" if exposure_s is None else f"<DwellTimePath>{exposure_s:.6f}</DwellTimePath>"
    xml = (f"<ObjectInfo><Uuid>00000000-0000-0000-0000-000000000000</Uuid><ExperimentalDescription><Root>"
           f"<Data><Label>Microscope</Label><Value>Microscope Test 200 kV</Value><Unit></Unit></Data>"
           f"<Data><Label>Mode</Label><Value>{mode}</Value><Unit></Unit></Data>"
           f"<Data><Label>High tension</Label><Value>200</Value><Unit>kV</Unit></Data>"
           f"</Root></ExperimentalDescription><AcquireDate>{acquire_date}</AcquireDate>"
           f"<AcquireInfo>{dwell}<CameraNamePath>{camera}</CameraNamePath><Binning>1</Binning></AcquireInfo>"
           f"<Manufacturer>FEI</Manufacturer></ObjectInfo>").encode("utf-8")
    path = Path(path)
    path.write_bytes(b"JK\x00\x02" + bytes(60) + (xml + bytes(16)) * n_objects)
    return path
