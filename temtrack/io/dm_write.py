"""A minimal Gatan DM3/DM4 writer, so tests and benchmarks can make DM files and GMS In-Situ trees.

No library in the ecosystem writes DM files (rosettasciio and HyperSpy only read them), and the GMS
In-Situ reader can only be tested on synthesised recordings, hence this hand-written writer. It
writes the tag tree layout that rosettasciio's ``digitalmicrograph`` reader parses (big-endian tag
structure, little-endian values and pixels, one image in ``ImageList``, no thumbnail): root ->
``ImageList`` -> unnamed group -> ``ImageData`` {``Calibrations`` {``Brightness``, ``Dimension``
(x first)}, ``Data``, ``DataType``, ``Dimensions``, ``PixelDepth``}, ``ImageTags``, ``Name``.
Real-valued tags are written as float32 like Digital Micrograph does, so a calibration of 0.1 s reads
back as 0.10000000149 s, as in real files.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from temtrack.errors import ParameterError

# numpy dtype -> (DM ImageData.DataType, tag element type of the Data array)
_DATATYPES = {
    np.dtype("int16"): (1, 2),
    np.dtype("float32"): (2, 6),
    np.dtype("uint8"): (6, 10),
    np.dtype("int32"): (7, 3),
    np.dtype("int8"): (9, 10),
    np.dtype("uint16"): (10, 4),
    np.dtype("uint32"): (11, 5),
    np.dtype("float64"): (12, 7),
}
# tag element type -> struct format (little-endian values)
_ELFMT = {2: "h", 3: "i", 4: "H", 5: "I", 6: "f", 7: "d", 8: "?", 9: "b", 10: "b", 11: "q", 12: "Q"}


class _Writer:
    def __init__(self, version: int):
        self.v = version

    def _len(self, n: int) -> bytes:
        return struct.pack(">Q" if self.v == 4 else ">L", n)

    def _data_tag(self, name: str, info: Sequence[int], payload: bytes) -> bytes:
        body = b"%%%%" + self._len(len(info)) + b"".join(self._len(i) for i in info) + payload
        head = b"\x15" + struct.pack(">H", len(name.encode("latin-1"))) + name.encode("latin-1")
        if self.v == 4:
            head += struct.pack(">Q", len(body))
        return head + body

    def tag(self, name: str, value: Any) -> bytes:
        if isinstance(value, _RawArray):
            return self._data_tag(name, (20, value.eltype, value.n), value.payload)
        if isinstance(value, str):
            # DM stores text as arrays of uint16 code units (rosettasciio turns them into str).
            units = value.encode("utf-16-le")
            return self._data_tag(name, (20, 4, len(units) // 2), units)
        if isinstance(value, (bool, np.bool_)):
            return self._data_tag(name, (8,), struct.pack("<?", bool(value)))
        if isinstance(value, (int, np.integer)):
            if -2**31 <= int(value) < 2**31:
                return self._data_tag(name, (3,), struct.pack("<i", int(value)))
            return self._data_tag(name, (11,), struct.pack("<q", int(value)))
        if isinstance(value, _Double):
            return self._data_tag(name, (7,), struct.pack("<d", value.value))
        if isinstance(value, (float, np.floating)):
            return self._data_tag(name, (6,), struct.pack("<f", float(value)))
        raise ParameterError(f"cannot write tag {name!r} of type {type(value).__name__}")


class _RawArray:
    def __init__(self, eltype: int, n: int, payload: bytes):
        self.eltype, self.n, self.payload = eltype, n, payload


class _Double:
    """Marks a real tag value to be written as float64 (e.g. Windows FILETIME stamps)."""

    def __init__(self, value: float):
        self.value = float(value)


def double(value: float) -> _Double:
    """Wrap a number so :func:`write_dm4` stores it as float64 instead of DM's usual float32."""
    return _Double(value)


def write_dm(path: str | os.PathLike, data: np.ndarray, *, version: int = 4,
             pixel_size_nm: float | None = None, pixel_unit: str = "nm",
             frame_interval_s: float | None = None, time_unit: str = "s",
             tags: dict | None = None, name: str = "temtrack test image") -> Path:
    """Write a 2D image or a 3D stack (n, rows, cols) as a Gatan DM3 or DM4 file.

    Parameters
    ----------
    path : path-like
    data : ndarray
        int8/16/32, uint8/16/32, float32 or float64, or records with fields R, G, B, A (uint8,
        written as DM's RGBA type); 2D or 3D.
    version : {3, 4}
    pixel_size_nm : float, optional
        Pixel size written to the x and y calibrations, in ``pixel_unit``.
    pixel_unit : str
        Unit string written to the file (``'nm'``, ``'1/nm'``, ``'µm'``, ...).
    frame_interval_s : float, optional
        For a 3D stack: scale of the stack axis, in ``time_unit``.
    time_unit : str
        Unit string of the stack axis (``'s'``, ``'ms'``, ...).
    tags : dict, optional
        Nested dict written under ``ImageTags`` (str, int, float -> float32, :func:`double`).
    name : str
        Image name.

    Returns
    -------
    Path
    """
    data = np.asarray(data)
    if version not in (3, 4):
        raise ParameterError(f"DM version must be 3 or 4, got {version}")
    if data.ndim not in (2, 3):
        raise ParameterError(f"expected a 2D image or a 3D stack, got shape {data.shape}")
    if data.dtype.names is not None:
        if set(data.dtype.names) != {"R", "G", "B", "A"}:
            raise ParameterError(f"record pixels must have fields R, G, B, A, got {data.dtype.names}")
        # DM's RGBA (DataType 23): one 32-bit word per pixel holding B, G, R, A bytes.
        bgra = np.dtype({"names": ["B", "G", "R", "A"], "formats": ["u1"] * 4})
        pixels = np.empty(data.shape, bgra)
        for c in "BGRA":
            pixels[c] = data[c]
        dm_type, eltype = 23, 5
    else:
        name_ = np.dtype(data.dtype.name)
        if name_ not in _DATATYPES:
            raise ParameterError(f"cannot write pixels of type {data.dtype} to DM "
                                 f"(expected one of {sorted(str(d) for d in _DATATYPES)})")
        dm_type, eltype = _DATATYPES[name_]
        pixels = np.ascontiguousarray(data, dtype=name_.newbyteorder("<"))
    dims_xyz = list(pixels.shape[::-1])
    cal_dims = {}
    for i in range(pixels.ndim):
        scale, unit = 1.0, ""
        if i < 2 and pixel_size_nm is not None:
            scale, unit = float(pixel_size_nm), pixel_unit
        if i == 2 and frame_interval_s is not None:
            scale, unit = float(frame_interval_s), time_unit
        cal_dims[f"_{i}"] = {"Origin": 0.0, "Scale": scale, "Units": unit}
    w = _Writer(version)
    image_data = [
        ("Calibrations", {"Brightness": {"Origin": 0.0, "Scale": 1.0, "Units": ""},
                          "Dimension": _Unnamed(list(cal_dims.values())),
                          "DisplayCalibratedUnits": 1}),
        ("Data", _RawArray(eltype, pixels.size, pixels.tobytes())),
        ("DataType", dm_type),
        ("Dimensions", _Unnamed(dims_xyz)),
        ("PixelDepth", pixels.dtype.itemsize),
    ]
    image = [("ImageData", _Group(image_data)), ("ImageTags", tags or {}), ("Name", name),
             ("UniqueID", _Unnamed([1, 2, 3, 4]))]
    root = [("ApplicationBounds", _Unnamed([0, 0, 1024, 1024])),
            ("DocumentObjectList", {}),
            ("ImageList", _Unnamed([_Group(image)])),
            ("Image Behavior", {"ViewDisplayID": 8})]
    body = _encode_group(w, root) + b"\x00" * 8  # DM files end with 8 zero bytes
    # The header's size field is the file size minus 24 in real DM4 files (minus 16 to 20 in
    # DM3); readers only use it to spot truncation.
    if version == 4:
        out = struct.pack(">LQL", 4, 16 + len(body) - 24, 1) + body
    else:
        out = struct.pack(">LLL", 3, 12 + len(body) - 16, 1) + body
    path = Path(path)
    path.write_bytes(out)
    return path


class _Group:
    def __init__(self, items):
        self.items = items


class _Unnamed:
    """A group whose entries have empty names (DM's lists: Dimensions, Dimension, ImageList)."""

    def __init__(self, values):
        self.values = values


def _encode_value(w: _Writer, name: str, value: Any) -> bytes:
    if isinstance(value, _Group):
        body = _encode_group(w, value.items)
        return _group_tag(w, name, body)
    if isinstance(value, _Unnamed):
        body = _encode_group(w, [("", v) for v in value.values])
        return _group_tag(w, name, body)
    if isinstance(value, dict):
        body = _encode_group(w, list(value.items()))
        return _group_tag(w, name, body)
    return w.tag(name, value)


def _group_tag(w: _Writer, name: str, body: bytes) -> bytes:
    head = b"\x14" + struct.pack(">H", len(name.encode("latin-1"))) + name.encode("latin-1")
    if w.v == 4:
        head += struct.pack(">Q", len(body))
    return head + body


def _encode_group(w: _Writer, items: list) -> bytes:
    parts = [b"\x00\x01" + w._len(len(items))]
    for name, value in items:
        parts.append(_encode_value(w, name, value))
    return b"".join(parts)


def write_dm4(path: str | os.PathLike, image2d: np.ndarray, *, pixel_size_nm: float | None = None,
              tags: dict | None = None, pixel_unit: str = "nm",
              frame_interval_s: float | None = None) -> Path:
    """Write a DM4 file (2D image or 3D stack); see :func:`write_dm`."""
    return write_dm(path, image2d, version=4, pixel_size_nm=pixel_size_nm, pixel_unit=pixel_unit,
                    frame_interval_s=frame_interval_s, tags=tags)


def write_gms_insitu(folder: str | os.PathLike, frames: np.ndarray, *, frame_interval_s: float,
                     pixel_size_nm: float | None, start: tuple[int, int, int] = (0, 0, 0),
                     drop: Sequence[int] = (), name: str | None = None, version: int = 4,
                     time_tags: bool | str = False, epoch_ms: float = 1.7e12) -> Path:
    """Lay out frames as a GMS 3 In-Situ recording tree of single-frame DM files.

    ``<folder>/Hour_HH/Minute_MM/Second_SS/<Name>_Hour_HH_Minute_MM_Second_SS_Frame_FFFF.dm4``, the
    frame counter restarting in every second, frame ``i`` acquired at ``start + i *
    frame_interval_s``.

    Parameters
    ----------
    folder : path-like
        The recording folder (created); its name is the recording name unless ``name`` is given.
    frames : ndarray, shape (n, rows, cols)
    frame_interval_s : float
    pixel_size_nm : float or None
    start : (hour, minute, second)
        Clock time of the first frame.
    drop : sequence of int
        Frame indices not written (to make a gap).
    version : {3, 4}
        DM3 or DM4 files.
    time_tags : bool or {'sequence', 'databar'}
        Also write per-frame time tags: ``'sequence'`` = ``Acquisition.Frame.Sequence`` start time
        in epoch ms and frame start in ns; ``'databar'`` = ``DataBar.Acquisition Time (OS)`` as a
        Windows FILETIME (100 ns ticks since 1601); True = both.
    epoch_ms : float
        Acquisition start (Unix epoch, ms) written with ``time_tags``.

    Returns
    -------
    Path
        The recording folder.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ParameterError(f"expected frames of shape (n, rows, cols), got {frames.shape}")
    if not frame_interval_s > 0:
        raise ParameterError(f"frame interval must be positive, got {frame_interval_s}")
    folder = Path(folder)
    name = name or folder.name
    drop = set(int(i) for i in drop)
    t0 = start[0] * 3600 + start[1] * 60 + start[2]
    ext = "dm4" if version == 4 else "dm3"
    counters: dict[int, int] = {}
    for i, frame in enumerate(frames):
        t = i * frame_interval_s
        # Guard the floor against float error (0.1 * 10 = 0.9999999)
        sec_abs = t0 + int(np.floor(t + 1e-9))
        h, rem = divmod(sec_abs, 3600)
        m, s = divmod(rem, 60)
        k = counters.get(sec_abs, 0)
        counters[sec_abs] = k + 1
        if i in drop:
            continue
        d = folder / f"Hour_{h:02d}" / f"Minute_{m:02d}" / f"Second_{s:02d}"
        d.mkdir(parents=True, exist_ok=True)
        tags: dict = {}
        if time_tags in (True, "sequence"):
            tags["Acquisition"] = {"Frame": {"Sequence": {
                "Acquisition Start Time (epoch)": _Double(epoch_ms),
                "Frame Index": i,
                "Frame Start (ns)": _Double(t * 1e9),
                "Exposure Time (ns)": _Double(frame_interval_s * 1e9)}}}
        if time_tags in (True, "databar"):
            filetime = (epoch_ms / 1e3 + t + 11644473600.0) * 1e7
            tags["DataBar"] = {"Acquisition Time (OS)": _Double(filetime)}
        write_dm(d / f"{name}_Hour_{h:02d}_Minute_{m:02d}_Second_{s:02d}_Frame_{k:04d}.{ext}",
                 frame, version=version, pixel_size_nm=pixel_size_nm, tags=tags)
    return folder
