"""TIA (FEI / Thermo Fisher "TEM Imaging & Analysis") ``.ser`` image series, streamed frame by frame.

Hand-written because rosettasciio loads the whole series: its TIA reader parses every element,
pixels included, when the file is opened, and its "lazy" array is a single dask chunk whose
computation parses and loads the whole file again. Through a :class:`~temtrack.io.movie.Movie`
that meant four full loads for an open plus three frame reads, and memory the size of the file
for every read of one frame. Here the open reads a few bytes per frame (header, offset arrays, the
50-byte header of every element, the time tags), checks every offset and size against the file
size, and each frame is then read from its own offset when asked for (frames need not be
contiguous, nor in file order). Nothing is memory-mapped, so reading a long series costs neither
anonymous memory nor resident file pages. Only the ``.emi`` XML parsing of rosettasciio is used,
for the metadata (it does not touch the ``.ser``).

Layout (little-endian, as described by C. Boothroyd and read by rosettasciio and openNCEM)
----------------------------------------------------------------------------------------------
Series header: ``ByteOrder`` u2 (0x4949), ``SeriesID`` u2 (0x0197), ``SeriesVersion`` u2 (0x0210:
4-byte offsets; 0x0220: 8-byte offsets), ``DataTypeID`` u4 (0x4122 2D images, 0x4120 1D spectra),
``TagTypeID`` u4 (0x4152 time, 0x4142 time and stage position), ``TotalNumberElements`` u4,
``ValidNumberElements`` u4, ``OffsetArrayOffset`` u4/u8, ``NumberDimensions`` u4, then per
dimension: size u4, calibration offset f8, delta f8, element u4, description (u4 length + text),
units (u4 length + text). At ``OffsetArrayOffset``: ``TotalNumberElements`` data offsets, then as
many tag offsets. A 2D element: ``CalibrationOffsetX`` f8, ``CalibrationDeltaX`` f8,
``CalibrationElementX`` u4, the same three for Y, ``DataType`` u2 (1-10: u1, u2, u4, i1, i2, i4, f4,
f8, c8, c16), ``ArraySizeX`` u4, ``ArraySizeY`` u4 (50 bytes), then the pixels, x fastest, bottom row
first (frames are flipped vertically, as rosettasciio does). A tag: type u2, u2 (0), ``Time`` u4
(seconds since 1970, 1 s precision), then for 0x4142 ``PositionX``, ``PositionY`` f8.

Frames
------
``ValidNumberElements`` frames (those recorded): a stopped acquisition, or a damaged dimension
size, announces more, which is noted in ``problems``. A series whose dimensions describe a 2D scan
of images (4D-STEM, a map) and 1D data (spectra) are refused: they are not movies. Complex pixels
are refused as elsewhere.

Pixel size
----------
``CalibrationDeltaX`` is in metres per pixel for images and 1/m per pixel for diffraction patterns;
the file does not say which. The ``.emi`` ``Mode`` decides as in rosettasciio (``Diffraction`` ->
1/m; ``STEM`` with a camera or a scan -> 1/m; otherwise m). The magnitude then checks it, and
decides when there is no ``.emi``: a real-space TEM pixel is 1e-12 to 1e-5 m (< 1e-3 m always),
a reciprocal one 1e-4 to 1 nm^-1 = 1e5 to 1e9 m^-1 (>= 1 always); a value between 1e-3 and 1 is
left uncalibrated. Metres become nm (x 1e9), 1/m becomes 1/nm (/ 1e9).

Time
----
Per-frame ``Time`` from the tag array, 1 s precision (:func:`_ser_times`: stamps 1 s or more apart
are used as they are; several frames per second are spread uniformly over the seconds the stamps
span). When the stamps cannot resolve the frames (all in one second), the exposure in the ``.emi``
(``AcquireInfo.DwellTimePath``) is used as the interval, if the stamps allow it, with a problem
line (the real interval includes readout and can be longer); ``time_source`` is ``'timestamps'``
or ``'axis'`` then.
"""
from __future__ import annotations

import functools
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from temtrack.errors import MovieReadError
from temtrack.io.lazy import LazyFrames
from temtrack.io.movie import Movie, metadata_to_json, normalise_length_unit

SERIES_ID = 0x0197
BYTE_ORDER = 0x4949
#: SeriesVersion -> bytes per offset-array entry
VERSIONS = {0x0210: 4, 0x0220: 8}
DATA_1D, DATA_2D = 0x4120, 0x4122
TAG_TIME, TAG_TIME_POSITION = 0x4152, 0x4142
TAG_SIZES = {TAG_TIME: 8, TAG_TIME_POSITION: 24}
#: element DataType -> numpy dtype
DTYPES = {1: "<u1", 2: "<u2", 3: "<u4", 4: "<i1", 5: "<i2", 6: "<i4", 7: "<f4", 8: "<f8", 9: "<c8", 10: "<c16"}
ELEMENT_HEADER = np.dtype([("CalibrationOffsetX", "<f8"), ("CalibrationDeltaX", "<f8"),
                           ("CalibrationElementX", "<u4"), ("CalibrationOffsetY", "<f8"),
                           ("CalibrationDeltaY", "<f8"), ("CalibrationElementY", "<u4"),
                           ("DataType", "<u2"), ("ArraySizeX", "<u4"), ("ArraySizeY", "<u4")])
ELEMENT_HEADER_SIZE = ELEMENT_HEADER.itemsize  # 50
NO_CALIBRATION = "no spatial calibration: pixel size unknown (give --pixel-size)"
NO_TIMING = "no frame timing (give --frame-interval)"
_NOT_SER = "not a readable TIA SER/EMI file"
_MAX_EMI_BYTES = 64 * 2**20  # an .emi holds XML metadata (kB); never read a huge one whole


class _SerError(Exception):
    """A one-line reason the .ser is unreadable (wrapped in MovieReadError with the path)."""


@dataclass
class SerSeries:
    """What the open of a ``.ser`` learned: everything but the pixels.

    Attributes
    ----------
    path : Path
    version : int
        ``SeriesVersion`` (0x0210 or 0x0220).
    tag_type_id : int
    total, valid : int
        ``TotalNumberElements`` and ``ValidNumberElements``.
    dimensions : list of dict
        ``size``, ``offset``, ``delta``, ``element``, ``description``, ``units``, ``units_length``.
    data_offsets : ndarray of int64, shape (valid,)
        Byte offset of each frame's element header.
    dtype : numpy dtype
    shape : (rows, cols)
    calibration : dict
        The first element's header fields (``CalibrationDeltaX`` ...).
    stamps : ndarray of float64 or None
        ``Time`` of each frame (s since 1970), None when the tags are unreadable.
    positions_m : ndarray, shape (valid, 2), or None
        ``PositionX``, ``PositionY`` of tag type 0x4142.
    problems : list of str
    file_size : int
    """

    path: Path
    version: int
    tag_type_id: int
    total: int
    valid: int
    dimensions: list
    data_offsets: np.ndarray
    dtype: np.dtype
    shape: tuple
    calibration: dict
    stamps: np.ndarray | None
    positions_m: np.ndarray | None
    problems: list = field(default_factory=list)
    file_size: int = 0

    @property
    def contiguous(self) -> bool:
        """True when the frames follow each other at a constant stride (the usual layout)."""
        d = np.diff(self.data_offsets)
        return bool(d.size == 0 or (d[0] > 0 and np.all(d == d[0])))


class _Reader:
    def __init__(self, f, size: int):
        self.f, self.size = f, size

    def read(self, offset: int, n: int, what: str) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise _SerError(f"{what} ({n} bytes at byte {offset}) lies past the end of the file "
                            f"({self.size} bytes): truncated or damaged")
        self.f.seek(offset)
        b = self.f.read(n)
        if len(b) != n:
            raise _SerError(f"{what}: file cut short at byte {offset + len(b)}")
        return b


def parse_ser(path: str | os.PathLike) -> SerSeries:
    """Read and check a ``.ser`` file's header, offsets, element headers and time tags.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    SerSeries

    Raises
    ------
    MovieReadError
        Not a SER file, an unknown version, 1D data (spectra), a 2D scan of images, complex or
        unknown pixels, elements of different shapes, or any offset or size that does not fit in
        the file; the message names the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        f = open(path, "rb")
    except OSError as exc:
        raise MovieReadError(path, f"cannot open file ({exc.strerror or exc})") from None
    try:
        with f:
            return _parse(_Reader(f, size), path, size)
    except _SerError as exc:
        raise MovieReadError(path, str(exc)) from None


def _parse(r: _Reader, path: Path, size: int) -> SerSeries:
    if size < 30:
        raise _SerError(f"{_NOT_SER}: {size} bytes is shorter than a SER header (30 bytes)")
    head = r.read(0, 22, "series header")
    order, series_id, version, data_type_id, tag_type_id, total, valid = struct.unpack("<HHHIIII", head)
    if order != BYTE_ORDER or series_id != SERIES_ID:
        raise _SerError(f"{_NOT_SER}: no SER header (ByteOrder {order:#06x}, SeriesID {series_id:#06x}; "
                        f"expected 0x4949, 0x0197)")
    width = VERSIONS.get(version)
    if width is None:
        raise _SerError(f"unknown SER version {version:#06x} (known: 0x0210, 0x0220)")
    if width == 4:
        offset_array, ndim = struct.unpack("<II", r.read(22, 8, "series header"))
        pos = 30
    else:
        offset_array, ndim = struct.unpack("<QI", r.read(22, 12, "series header"))
        pos = 34
    if data_type_id == DATA_1D:
        raise _SerError("the SER file holds 1D data (spectra or profiles, DataTypeID 0x4120), "
                        "not images: not a movie")
    if data_type_id != DATA_2D:
        raise _SerError(f"unknown SER DataTypeID {data_type_id:#06x} (0x4122 images, 0x4120 spectra)")
    if valid == 0:
        raise _SerError("the SER file holds no recorded frames (ValidNumberElements 0)")
    if valid > total:
        raise _SerError(f"damaged SER header: ValidNumberElements {valid} > TotalNumberElements {total}")
    problems: list[str] = []

    # dimension arrays: each at least 32 bytes, so a damaged count cannot make a long loop
    if ndim * 32 > size - pos:
        raise _SerError(f"damaged SER header: {ndim} dimensions do not fit in the file ({size} bytes)")
    dims = []
    for k in range(ndim):
        dsize, doff, ddelta, delem, dlen = struct.unpack("<IddII", r.read(pos, 28, f"dimension {k + 1}"))
        desc = r.read(pos + 28, dlen, f"dimension {k + 1} description")
        (ulen,) = struct.unpack("<I", r.read(pos + 28 + dlen, 4, f"dimension {k + 1}"))
        units = r.read(pos + 32 + dlen, ulen, f"dimension {k + 1} units")
        pos += 32 + dlen + ulen
        dims.append({"size": int(dsize), "offset": float(doff), "delta": float(ddelta), "element": int(delem),
                     "description": desc.decode("latin-1"), "units": units.decode("latin-1"),
                     "units_length": int(ulen)})
    sizes = [d["size"] for d in dims]
    if sum(s > 1 for s in sizes) >= 2:
        raise _SerError(f"the SER file is a {' x '.join(map(str, sizes))} scan of images (4D-STEM or "
                        f"a map), not a movie")
    declared = int(np.prod(sizes)) if dims else total
    if declared != valid:
        if valid < declared:
            problems.append(f"SER header announces {declared} frames, {valid} recorded (acquisition "
                            f"stopped early or header damaged); read the {valid} recorded")
        else:
            problems.append(f"SER header announces {declared} frames but {valid} are recorded; read "
                            f"the {valid} recorded")

    # offset arrays: TotalNumberElements data offsets, then as many tag offsets
    fmt = "<u4" if width == 4 else "<u8"
    if offset_array + 2 * total * width > size:
        raise _SerError(f"the SER offset arrays (2 x {total} entries of {width} bytes at byte {offset_array}) "
                        f"run past the end of the file ({size} bytes): truncated or damaged")
    data_offsets = np.frombuffer(r.read(offset_array, valid * width, "data offset array"), fmt)
    tag_offsets = np.frombuffer(r.read(offset_array + total * width, valid * width, "tag offset array"), fmt)
    _check_offsets(data_offsets, size - ELEMENT_HEADER_SIZE, "frame")
    data_offsets = data_offsets.astype(np.int64)

    # element headers: every frame must have the first one's pixel type and shape
    raw = bytearray(valid * ELEMENT_HEADER_SIZE)
    for i, off in enumerate(data_offsets.tolist()):
        at = i * ELEMENT_HEADER_SIZE
        raw[at:at + ELEMENT_HEADER_SIZE] = r.read(off, ELEMENT_HEADER_SIZE, f"frame {i} header")
    heads = np.frombuffer(bytes(raw), ELEMENT_HEADER)
    first = heads[0]
    data_type, nx, ny = int(first["DataType"]), int(first["ArraySizeX"]), int(first["ArraySizeY"])
    if data_type not in DTYPES:
        raise _SerError(f"unknown SER pixel type (DataType {data_type}; known 1-10)")
    dtype = np.dtype(DTYPES[data_type])
    if dtype.kind == "c":
        raise _SerError(f"complex pixels ({dtype.name}) are not supported; save the modulus or phase")
    if nx < 1 or ny < 1:
        raise _SerError(f"empty frames ({ny} x {nx} pixels)")
    nbytes = nx * ny * dtype.itemsize
    ends = data_offsets + ELEMENT_HEADER_SIZE  # int64: offsets were checked to be below the file size
    # (a damaged size can exceed the int64 range: then every frame is past the end)
    past = np.nonzero(ends > size - nbytes)[0] if nbytes <= size else np.arange(valid)
    if past.size:
        i = int(past[0])
        raise _SerError(f"frame {i} ({ny} x {nx} {dtype.name}, {nbytes} bytes at byte {int(ends[i])}) runs past "
                        f"the end of the file ({size} bytes): truncated or damaged")

    odd = np.nonzero((heads["DataType"] != data_type) | (heads["ArraySizeX"] != nx) | (heads["ArraySizeY"] != ny))[0]
    if odd.size:
        i = int(odd[0])
        h = heads[i]
        raise _SerError(f"frame {i} is {int(h['ArraySizeY'])} x {int(h['ArraySizeX'])} pixels of DataType "
                        f"{int(h['DataType'])}, frame 0 {ny} x {nx} of DataType {data_type}: not one image series")
    stamps, positions = _read_tags(r, tag_type_id, tag_offsets, size, problems)
    calibration = {k: first[k].item() for k in ELEMENT_HEADER.names}
    return SerSeries(path, version, tag_type_id, total, valid, dims, data_offsets, dtype, (ny, nx),
                     calibration, stamps, positions, problems, size)


def _check_offsets(offsets: np.ndarray, limit: int, what: str) -> None:
    # compared as unsigned: an 8-byte offset can exceed the int64 range
    bad = np.nonzero(offsets > limit)[0] if limit >= 0 else np.arange(offsets.size)
    if bad.size:
        i = int(bad[0])
        raise _SerError(f"{what} {i} offset {int(offsets[i])} lies past the end of the file "
                        f"({limit + ELEMENT_HEADER_SIZE} bytes): truncated or damaged")


def _read_tags(r: _Reader, tag_type_id: int, tag_offsets: np.ndarray, size: int, problems: list):
    """Per-frame ``Time`` (and stage positions) from the tag array; (None, None) with a problem
    line when they cannot be trusted: the pixels do not depend on them."""
    n = tag_offsets.size
    tag_size = TAG_SIZES.get(tag_type_id)
    if tag_size is None:
        problems.append(f"unknown SER TagTypeID {tag_type_id:#06x}: frame times not read")
        return None, None
    bad = np.nonzero(tag_offsets > max(size - tag_size, 0))[0]
    if bad.size:
        problems.append(f"SER time tag of frame {int(bad[0])} lies past the end of the file: frame times not read")
        return None, None
    stamps = np.empty(n, np.float64)
    positions = np.empty((n, 2), np.float64) if tag_type_id == TAG_TIME_POSITION else None
    for i, off in enumerate(tag_offsets.astype(np.int64).tolist()):
        tag = r.read(off, tag_size, f"frame {i} tag")
        ttype, _, t = struct.unpack("<HHI", tag[:8])
        if ttype != tag_type_id:
            problems.append(f"SER time tag of frame {i} has type {ttype:#06x}, the header says "
                            f"{tag_type_id:#06x}: frame times not read")
            return None, None
        stamps[i] = t
        if positions is not None:
            positions[i] = struct.unpack("<dd", tag[8:24])
    return stamps, positions


# -- frames ----------------------------------------------------------------------------------------
class SerFrameReader:
    """``reader(i)`` reads frame ``i`` from its own offset (a plain read: no memory map, no cache).

    Picklable and thread-safe: each call opens the file, so readers in several threads or processes
    do not share a file position.
    """

    def __init__(self, path: Path, data_offsets: np.ndarray, dtype, shape: tuple[int, int]):
        self.path, self.offsets, self.dtype, self.shape = Path(path), data_offsets, np.dtype(dtype), tuple(shape)

    def __call__(self, i: int) -> np.ndarray:
        count = self.shape[0] * self.shape[1]
        out = np.empty(count, self.dtype)
        offset = int(self.offsets[i]) + ELEMENT_HEADER_SIZE
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                got = f.readinto(memoryview(out).cast("B"))
        except OSError as exc:
            raise MovieReadError(self.path, f"cannot read frame {i} ({exc.strerror or exc})") from None
        if got != out.nbytes:
            raise MovieReadError(self.path, f"frame {i} cut short ({got} of {out.nbytes} bytes at byte "
                                            f"{offset}): the file changed since it was opened")
        # TIA stores the bottom row first (rosettasciio flips the same way)
        return out.reshape(self.shape)[::-1]


def ser_frames(series: SerSeries) -> LazyFrames:
    """The (n, rows, cols) lazy stack of a parsed series; no frame is kept in memory."""
    reader = SerFrameReader(series.path, series.data_offsets, series.dtype, series.shape)
    return LazyFrames(series.valid, series.shape, series.dtype, reader, cache_frames=0, serialize=False)


# -- time ------------------------------------------------------------------------------------------
def _ser_times(header: dict, n: int, problems: list):
    """Frame times from the .ser per-frame ``Time`` (s since the epoch, 1 s precision).

    Parameters
    ----------
    header : dict
        With ``'Time'``: the stamps (as rosettasciio's ``ser_header_parameters`` has them).
    n : int
        Number of frames.
    problems : list of str
        Appended to.

    Returns
    -------
    times_s, time_source : ndarray or None, str or None
    """
    stamps = header.get("Time") if header else None
    if stamps is None or n < 2:
        return None, None
    stamps = np.asarray(stamps, dtype=np.float64).ravel()[:n]
    if stamps.size != n or not np.all(np.isfinite(stamps)):
        return None, None
    span = stamps[-1] - stamps[0]
    d = np.diff(stamps)
    if np.any(d < 0):
        problems.append("SER time stamps go backwards; ignored")
        return None, None
    if span <= 0:
        problems.append(f"SER time stamps (1 s precision) do not resolve the {n} frames (all in the same second)")
        return None, None
    if np.all(d >= 1):
        problems.append("frame times from SER time stamps with 1 s precision")
        return stamps - stamps[0], "timestamps"
    # Several frames per second: the truncated stamps only fix the mean rate.
    problems.append(f"SER time stamps have 1 s precision; frames spread uniformly over the {span:.0f} s they span")
    return np.arange(n) * (span / (n - 1)), "timestamps"


def _exposure_times(stamps, exposure_s: float | None, n: int, problems: list):
    """Times from the .emi exposure when the 1 s stamps cannot resolve the frames.

    Used only when the stamps allow it: n frames at least ``exposure_s`` apart span at least
    (n - 1) * exposure_s, and truncated stamps under-state a span by less than 1 s.
    """
    if exposure_s is None or not (math.isfinite(exposure_s) and exposure_s > 0) or n < 2:
        return None
    if stamps is not None:
        stamps = np.asarray(stamps, dtype=np.float64)[:n]
        if np.any(np.diff(stamps) < 0) or (n - 1) * exposure_s > stamps[-1] - stamps[0] + 1:
            return None
    problems.append(f"frame times from the exposure in the .emi ({exposure_s:g} s per frame): TIA stores "
                    f"no frame interval and the real one can be longer (give --frame-interval if known)")
    return np.arange(n, dtype=np.float64) * exposure_s


# -- .emi ------------------------------------------------------------------------------------------
def _emi_for_ser(ser: Path) -> tuple[Path | None, int]:
    """TIA names the series ``<base>_<n>.ser`` next to ``<base>.emi``; (emi, n) or (None, 0)."""
    m = re.match(r"^(.*)_(\d+)$", ser.stem)
    if not m:
        return None, 0
    for suffix in (".emi", ".EMI"):
        emi = ser.with_name(m.group(1) + suffix)
        if emi.is_file():
            return emi, int(m.group(2))
    return None, 0


def _series_of_emi(emi: Path) -> list[tuple[int, Path]]:
    """The ``<base>_<n>.ser`` files beside an ``.emi``, by n."""
    pattern = re.compile(re.escape(emi.stem) + r"_(\d+)\.ser$", re.IGNORECASE)
    found = []
    for p in emi.parent.iterdir():
        m = pattern.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def read_emi_objects(emi: Path, problems: list) -> list[dict]:
    """The ``ObjectInfo`` XML blocks of an ``.emi`` as dicts (rosettasciio's parser; no data read)."""
    try:
        if emi.stat().st_size > _MAX_EMI_BYTES:
            problems.append(f"the .emi is {emi.stat().st_size / 2**20:.0f} MB: its metadata were not read")
            return []
        from rsciio.tia._api import convert_xml_to_dict, get_xml_info_from_emi

        return [convert_xml_to_dict(obj).to_dict() for obj in get_xml_info_from_emi(str(emi))]
    except ImportError as exc:
        problems.append(f"the .emi metadata were not read (rosettasciio missing: {exc})")
    except Exception as exc:  # noqa: BLE001 - XML and encoding errors of a damaged .emi: metadata only
        text = str(exc).strip().splitlines()
        problems.append(f"the .emi metadata are unreadable ({type(exc).__name__}: {text[0] if text else ''})")
    return []


def _emi_reciprocal(object_info: dict, dims: list) -> bool | None:
    """rosettasciio's ``_guess_units_from_mode``: True for 1/m, False for m, None without a Mode."""
    desc = object_info.get("ExperimentalDescription")
    mode = desc.get("Mode") if isinstance(desc, dict) else None
    if not isinstance(mode, str):
        return None
    acquire = object_info.get("AcquireInfo")
    is_camera = isinstance(acquire, dict) and "CameraNamePath" in acquire
    if not dims:
        return False
    is_stack = dims[0]["units_length"] == 0
    diffraction_scan = dims[0]["size"] > 1 and not is_stack
    if "STEM" in mode:
        return bool(is_camera or diffraction_scan)
    return "Diffraction" in mode


def _calibration(series: SerSeries, object_info: dict | None, problems: list, meta: dict):
    dx = float(series.calibration["CalibrationDeltaX"])
    dy = float(series.calibration["CalibrationDeltaY"])
    if not (math.isfinite(dx) and dx > 0):
        problems.insert(0, NO_CALIBRATION)
        return None, None
    by_size = False if dx < 1e-3 else (True if dx >= 1 else None)
    by_emi = _emi_reciprocal(object_info, series.dimensions) if object_info else None
    word = {False: "m", True: "1/m"}
    if by_emi is not None and (by_size is None or by_size == by_emi):
        reciprocal, meta["pixel_unit_from"] = by_emi, "emi Mode"
    elif by_size is not None:
        reciprocal, meta["pixel_unit_from"] = by_size, "calibration magnitude"
        if by_emi is not None:
            problems.append(f"the .emi Mode suggests {word[by_emi]} per pixel but the calibration "
                            f"{dx:.6g} can only be {word[by_size]}; read as {word[by_size]}")
    else:
        problems.insert(0, NO_CALIBRATION)
        problems.append(f"SER calibration {dx:.6g} per pixel is neither a real-space (m) nor a "
                        f"reciprocal (1/m) pixel size")
        return None, None
    unit = word[reciprocal]
    px, pu = normalise_length_unit(dx, unit)
    py, _ = normalise_length_unit(dy, unit) if math.isfinite(dy) and dy > 0 else (None, None)
    meta["pixel_size_x"], meta["pixel_size_y"] = px, py
    if py is not None and not math.isclose(px, py, rel_tol=1e-3):
        problems.append(f"unequal pixel sizes in the file: x {px:.6g} {pu}/px, y {py:.6g} {pu}/px; using x for both")
    return px, pu




# -- entry point -----------------------------------------------------------------------------------
def read_ser(path: str | os.PathLike) -> Movie:
    """Open a TIA image series lazily: frames are read one by one from their offsets.

    Parameters
    ----------
    path : path-like
        The ``<base>_<n>.ser`` file, or the ``<base>.emi`` (then its first image series,
        ``<base>_1.ser`` usually, is read). The ``.emi`` beside a ``.ser`` gives the exposure,
        microscope mode (image or diffraction) and date.

    Returns
    -------
    Movie
        ``format`` ``'ser'``; frames in the file's pixel type; ``time_source`` ``'timestamps'``
        (the 1 s tag times), ``'axis'`` (the .emi exposure) or ``'none'``.

    Raises
    ------
    MovieReadError
        Naming the file: not a SER file, damaged or truncated, not a series of 2D images.
    """
    path = Path(path)
    if not path.exists():
        raise MovieReadError(path, "file not found")
    problems: list[str] = []
    if path.suffix.lower() == ".emi":
        emi, ser = path, _pick_series(path, problems)
        index = int(re.match(r".*_(\d+)$", ser.stem).group(1))
    else:
        ser = path
        emi, index = _emi_for_ser(path)
        if emi is None:
            problems.append("no .emi beside the .ser: exposure, microscope and date unknown")
    series = parse_ser(ser)
    problems = series.problems + problems
    object_info = None
    meta: dict = {"emi": str(emi) if emi else None, "ser": str(ser)}
    if emi is not None:
        objects = read_emi_objects(emi, problems)
        if 1 <= index <= len(objects):
            object_info = objects[index - 1].get("ObjectInfo")
        elif objects:
            problems.append(f"the .emi has no metadata for {ser.name} ({len(objects)} objects)")
    object_info = object_info if isinstance(object_info, dict) else None
    meta["ObjectInfo"] = metadata_to_json(object_info)
    exposure_s = None
    if object_info:
        acquire = object_info.get("AcquireInfo")
        try:
            exposure_s = float(acquire.get("DwellTimePath")) if isinstance(acquire, dict) else None
        except (TypeError, ValueError):
            exposure_s = None
        if exposure_s is not None and not math.isfinite(exposure_s):
            exposure_s = None
        meta["acquire_date"] = object_info.get("AcquireDate")
    meta["exposure_s"] = exposure_s
    n = series.valid
    stamps = series.stamps
    meta["ser_header"] = {"SeriesVersion": f"{series.version:#06x}", "TagTypeID": f"{series.tag_type_id:#06x}",
                          "TotalNumberElements": series.total, "ValidNumberElements": series.valid,
                          "dimensions": metadata_to_json(series.dimensions), "dtype": series.dtype.name,
                          "frames_contiguous": series.contiguous,
                          "element_header_0": metadata_to_json(series.calibration)}
    meta["ser_time"] = stamps.astype(np.int64).tolist() if stamps is not None and n <= 1000 else (
        None if stamps is None else f"<{n} stamps from {int(stamps[0])} to {int(stamps[-1])}>")
    if series.positions_m is not None:
        meta["stage_position_m_first"] = series.positions_m[0].tolist()

    pixel_size, pixel_unit = _calibration(series, object_info, problems, meta)
    times_s, time_source = _ser_times({"Time": stamps} if stamps is not None else {}, n, problems)
    if times_s is None:
        times_s = _exposure_times(stamps, exposure_s, n, problems)
        time_source = "axis" if times_s is not None else None
    if times_s is None:
        problems.append(NO_TIMING)
    return Movie(ser_frames(series), times_s, pixel_size, pixel_unit, path, "ser", meta, problems,
                 time_source or "none", reopen=functools.partial(read_ser, path))


def _pick_series(emi: Path, problems: list) -> Path:
    """The first image series of an ``.emi`` (by number); notes the others."""
    candidates = _series_of_emi(emi)
    if not candidates:
        raise MovieReadError(emi, f"no {emi.stem}_<n>.ser series beside the .emi (TIA keeps the data there)")
    images, others = [], []
    for _, ser in candidates:
        try:
            with open(ser, "rb") as f:
                head = f.read(10)
            ok = len(head) == 10 and struct.unpack("<HH", head[:4]) == (BYTE_ORDER, SERIES_ID) \
                and struct.unpack("<I", head[6:10])[0] == DATA_2D
        except OSError:
            ok = False
        (images if ok else others).append(ser)
    if not images:
        # the first one's own error says why (1D data, damaged header ...)
        parse_ser(candidates[0][1])
        raise MovieReadError(emi, f"no image series beside the .emi ({', '.join(p.name for p in others)})")
    if len(images) > 1:
        problems.append(f"the .emi has {len(images)} image series ({', '.join(p.name for p in images)}); "
                        f"read {images[0].name}")
    return images[0]
