"""Read multi-page TIFF movies (ImageJ, OME, DigitalMicrograph exports, plain) lazily with tifffile.

tifffile does the TIFF parsing; the calibration is read here because rosettasciio's TIFF reader
drops ImageJ units other than microns (so 'nm' and '1/nm' stacks lose their scale) and takes the
ImageJ ``spacing`` (a slice spacing in length units) for the time scale. We read, in this order of
trust: OME-XML (PhysicalSizeX/Unit, per-plane DeltaT, TimeIncrement), the ImageJ description
(``unit``, ``finterval``, ``tunit``, with the resolution tags giving pixels per unit), the private
tags that Gatan DigitalMicrograph writes into its TIFF exports (65003-65011: x/y/z unit and scale),
and finally plain resolution tags in cm/mm/um (inch resolutions are print dpi and are ignored).

Pixels: an uncompressed series stored in one block is memory-mapped (``tifffile.memmap``);
anything else (compressed, strips scattered between tags, as DM exports are) is read page by page
on demand through :class:`~temtrack.io.image_folder.LazyFrames`. RGB(A) pages are converted to
luminance; several channels or complex pixels are refused with a one-line error.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import struct
import weakref
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from temtrack.errors import MovieReadError
from temtrack.io.lazy import LUMINANCE_PROBLEM, LazyFrames, rgb_to_luminance
from temtrack.io.movie import Movie, normalise_length_unit, time_unit_to_s

NO_CALIBRATION = "no spatial calibration: pixel size unknown (give --pixel-size)"
NO_TIMING = "no frame timing (give --frame-interval)"

# TIFF ResolutionUnit values that are lengths (2 = inch is print dpi, never a TEM calibration).
_RESUNIT_TO_NM = {3: 1e7, 4: 1e6, 5: 1e3}

# tifffile logs these (instead of raising) when pages are missing: the file was cut or overwritten.
_FATAL_WARNINGS = ("page offset", "first page", "corrupted", "failed to reshape")

_TIME_ALIASES = {"sec": "s", "second": "s", "seconds": "s", "msec": "ms", "millisecond": "ms",
                 "milliseconds": "ms", "microsecond": "us", "microseconds": "us", "usec": "us",
                 "minute": "min", "minutes": "min", "hour": "h", "hours": "h", "hr": "h"}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _decode_unit(unit) -> str | None:
    """ImageJ writes non-ASCII units escaped (``\\u00B5m``); DM writes 'µm' or 'micrometer'."""
    if unit is None:
        return None
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", "replace")
    u = str(unit).strip().strip("\x00")
    u = u.replace("\\u00B5", "µ").replace("\\u00b5", "µ").replace("\\u03BC", "μ").replace("\\u00C5", "Å")
    aliases = {"micrometer": "um", "micrometers": "um", "micrometre": "um", "nanometer": "nm",
               "nanometers": "nm", "nanometre": "nm", "angstrom": "A", "angstroms": "A",
               "picometer": "pm", "1/angstrom": "1/A", "1/nanometer": "1/nm"}
    return aliases.get(u.lower(), u) or None


def _time_factor(unit) -> float | None:
    u = _decode_unit(unit)
    if u is None:
        return None
    return time_unit_to_s(_TIME_ALIASES.get(u.lower(), u))


def _resolution(page, name: str) -> float | None:
    """Pixels per unit from a rational resolution tag, or None."""
    tag = page.tags.get(name)
    if tag is None:
        return None
    value = tag.value
    try:
        ppu = value[0] / value[1] if isinstance(value, tuple) else float(value)
    except (TypeError, ZeroDivisionError, IndexError):
        return None
    return ppu if math.isfinite(ppu) and ppu > 0 else None


def _tag_value(page, code: int):
    tag = page.tags.get(code)
    if tag is None:
        return None
    value = tag.value
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace").strip("\x00")
    return value


class _Calibration:
    """What a reader learnt about pixel size and timing, plus the lines it wants to report."""

    def __init__(self, source: str | None):
        self.source = source
        self.pixel_size: float | None = None
        self.pixel_unit: str | None = None
        self.times_s: np.ndarray | None = None
        self.time_source = "none"
        self.pixel_problems: list[str] = []  # reported only if this flavour's pixel size is used
        self.time_problems: list[str] = []   # reported only if no flavour gives frame times
        self.problems: list[str] = []
        self.meta: dict = {}

    def set_pixel(self, x_scale, x_unit, y_scale=None, y_unit=None):
        px, pu = normalise_length_unit(x_scale, _decode_unit(x_unit))
        if px is None:
            return False
        self.pixel_size, self.pixel_unit = px, pu
        self.meta.update(pixel_size_x=px, pixel_size_y=None, pixel_unit=pu)
        if y_scale is not None:
            py, pyu = normalise_length_unit(y_scale, _decode_unit(y_unit if y_unit is not None else x_unit))
            self.meta["pixel_size_y"] = py
            if py is not None and (pyu != pu or not math.isclose(px, py, rel_tol=1e-3)):
                # Anisotropic pixels are not supported downstream; x (columns) is what the file
                # states for the image width, so it is kept and the mismatch reported.
                self.pixel_problems.append(f"unequal pixel sizes in the file: x {px:.6g} {pu}/px, y {py:.6g} {pyu}/px; "
                                     f"using x for both (check the calibration)")
        return True

    def set_uniform_times(self, n: int, interval_s, *, source: str = "axis"):
        if interval_s is None or not math.isfinite(interval_s) or interval_s <= 0:
            return False
        self.times_s = np.arange(n, dtype=np.float64) * float(interval_s)
        self.time_source = source
        return True


# -- metadata flavours ----------------------------------------------------------------------------
def _ome_calibration(xml: str, n_frames: int, cal: _Calibration) -> None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        cal.problems.append(f"OME-XML could not be parsed ({_one_line(exc)}); calibration ignored")
        return
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None)
    if pixels is None:
        return
    a = pixels.attrib
    cal.meta["ome_pixels"] = {k: v for k, v in a.items()}
    if "PhysicalSizeX" in a:
        try:
            cal.set_pixel(float(a["PhysicalSizeX"]), a.get("PhysicalSizeXUnit", "µm"),
                          float(a["PhysicalSizeY"]) if "PhysicalSizeY" in a else None,
                          a.get("PhysicalSizeYUnit", "µm"))
        except ValueError:
            cal.problems.append("OME PhysicalSizeX is not a number; calibration ignored")
    planes = [el.attrib for el in pixels if el.tag.endswith("}Plane") or el.tag == "Plane"]
    timed = [p for p in planes if "DeltaT" in p and int(p.get("TheC", 0)) == 0]
    timed.sort(key=lambda p: (int(p.get("TheT", 0)), int(p.get("TheZ", 0))))
    if n_frames > 1 and len(timed) == n_frames:
        try:
            t = np.array([float(p["DeltaT"]) * (_time_factor(p.get("DeltaTUnit", "s")) or np.nan) for p in timed])
        except ValueError:
            t = np.array([np.nan])
        if np.all(np.isfinite(t)) and np.all(np.diff(t) >= 0) and t[-1] > t[0]:
            cal.times_s, cal.time_source = t - t[0], "timestamps"
            return
        cal.time_problems.append("OME per-plane DeltaT not usable (missing units or not increasing)")
    if "TimeIncrement" in a:
        factor = _time_factor(a.get("TimeIncrementUnit", "s"))
        try:
            dt = float(a["TimeIncrement"]) * factor if factor else None
        except ValueError:
            dt = None
        cal.set_uniform_times(n_frames, dt)


def _imagej_calibration(md: dict, page, n_frames: int, cal: _Calibration) -> None:
    cal.meta["imagej"] = {k: v for k, v in md.items() if isinstance(v, (str, int, float, bool))}
    unit = _decode_unit(md.get("unit"))
    xres, yres = _resolution(page, "XResolution"), _resolution(page, "YResolution")
    if unit and xres:
        cal.set_pixel(1.0 / xres, unit, 1.0 / yres if yres else None, _decode_unit(md.get("yunit")) or unit)
    if "finterval" in md:
        factor = _time_factor(md.get("tunit", "s"))
        try:
            ok = factor is not None and cal.set_uniform_times(n_frames, float(md["finterval"]) * factor)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            cal.time_problems.append(f"ImageJ finterval {md['finterval']!r} {md.get('tunit', '')} not understood")
    elif "spacing" in md:
        zunit = md.get("zunit", unit)
        factor = _time_factor(zunit)
        if factor:
            cal.set_uniform_times(n_frames, float(md["spacing"]) * factor)
        elif n_frames > 1:
            cal.time_problems.append(f"ImageJ 'spacing' {md['spacing']} {zunit or ''} is a slice spacing, "
                                f"not a frame interval; ignored")


def _dm_calibration(page, n_frames: int, cal: _Calibration) -> bool:
    """Private tags of DigitalMicrograph's TIFF export: 65009/65010/65011 = x/y/z scale,
    65003/65004/65005 = x/y/z unit (rosettasciio writes them in the same order)."""
    x_scale, y_scale, z_scale = (_tag_value(page, c) for c in (65009, 65010, 65011))
    if x_scale is None and z_scale is None:
        return False
    x_unit, y_unit, z_unit = (_tag_value(page, c) for c in (65003, 65004, 65005))
    cal.meta["dm_tags"] = {"x_scale": x_scale, "x_unit": x_unit, "y_scale": y_scale, "y_unit": y_unit,
                           "z_scale": z_scale, "z_unit": z_unit}
    if x_scale is not None:
        try:
            cal.set_pixel(float(x_scale), x_unit, None if y_scale is None else float(y_scale), y_unit)
        except (TypeError, ValueError):
            pass
    if z_scale is not None and n_frames > 1:
        factor = _time_factor(z_unit)
        try:
            if factor:
                cal.set_uniform_times(n_frames, float(z_scale) * factor)
        except (TypeError, ValueError):
            pass
    return True


def _calibration(tif, page, n_frames: int) -> _Calibration:
    """Pixel size from the first flavour that states one, times likewise, in the order of trust
    OME, ImageJ, DM tags, resolution tags (HyperSpy's TIFF writer puts the spatial scale in the
    ImageJ description but the time scale only in the DM tags, so the two are taken separately)."""
    found: list[_Calibration] = []
    if tif.is_ome and tif.ome_metadata:
        found.append(_Calibration(source="ome"))
        _ome_calibration(tif.ome_metadata, n_frames, found[-1])
    if tif.is_imagej and tif.imagej_metadata:
        found.append(_Calibration(source="imagej"))
        _imagej_calibration(tif.imagej_metadata, page, n_frames, found[-1])
    found.append(_Calibration(source="dm"))
    _dm_calibration(page, n_frames, found[-1])
    if not tif.is_imagej:
        found.append(_Calibration(source="resolution-tags"))
        resunit = _tag_value(page, "ResolutionUnit")
        factor = _RESUNIT_TO_NM.get(int(resunit)) if resunit is not None else None
        xres, yres = _resolution(page, "XResolution"), _resolution(page, "YResolution")
        if factor and xres:
            found[-1].set_pixel(factor / xres, "nm", factor / yres if yres else None, "nm")
    out = _Calibration(source=None)
    for c in reversed(found):  # earlier (more trusted) flavours overwrite later ones' metadata
        out.meta.update(c.meta)
    pix = next((c for c in found if c.pixel_size is not None), None)
    tim = next((c for c in found if c.times_s is not None), None)
    if pix is not None:
        out.pixel_size, out.pixel_unit, out.source = pix.pixel_size, pix.pixel_unit, pix.source
        out.meta.update(pix.meta)
        out.problems.extend(pix.pixel_problems)
    else:
        out.problems.append(NO_CALIBRATION)
    out.problems.extend(p for c in found for p in c.problems)
    if tim is not None:
        out.times_s, out.time_source = tim.times_s, tim.time_source
        out.meta["time_calibration_source"] = tim.source
    else:
        out.problems.extend(p for c in found for p in c.time_problems)
        out.problems.append(NO_TIMING)
    return out


def read_tiff_pixel_size(path: str | os.PathLike) -> tuple[float | None, str | None, str | None]:
    """Pixel size stated by one TIFF file (ImageJ, OME, DM tags or metric resolution tags).

    Used for folders of single-frame TIFFs, whose files each carry the calibration.

    Returns
    -------
    pixel_size, pixel_unit, source : float or None, {'nm', '1/nm'} or None, str or None
    """
    import tifffile

    with _TifffileWarnings(), tifffile.TiffFile(path) as tif:
        cal = _calibration(tif, tif.pages.first, 1)
    return cal.pixel_size, cal.pixel_unit, cal.source


# -- pixel layout ---------------------------------------------------------------------------------
def _layout(path: Path, series, photometric) -> tuple[list[int], int, int, int | None, int]:
    """Axis positions: (frame axes, y, x, colour axis or None, n_frames); refuses channels."""
    axes, shape = series.axes, series.shape
    if "Y" not in axes or "X" not in axes:
        raise MovieReadError(path, f"TIFF series has axes {axes!r}: expected image rows and columns (Y, X)")
    y, x = axes.index("Y"), axes.index("X")
    colour = None
    frame_axes = []
    for i, (ax, size) in enumerate(zip(axes, shape)):
        if i in (y, x):
            continue
        if ax == "S":
            if size == 1:
                frame_axes.append(i)
            elif size in (3, 4) and int(photometric) == 2:  # RGB
                colour = i
            else:
                raise MovieReadError(path, f"TIFF pages have {size} samples per pixel "
                                           f"(photometric {int(photometric)}): not an RGB or grey movie")
        elif ax == "C" and size > 1:
            raise MovieReadError(path, f"TIFF has {size} channels: temtrack reads one-channel movies "
                                       f"(split the channels first, e.g. in ImageJ)")
        else:
            frame_axes.append(i)
    if any(i > min(y, x) for i in frame_axes if shape[i] > 1):
        raise MovieReadError(path, f"unsupported TIFF axis order {axes!r} (frames inside a page)")
    n = int(np.prod([shape[i] for i in frame_axes])) if frame_axes else 1
    return frame_axes, y, x, colour, n


# Largest decoded/stored size ratio each TIFF compression can reach (deflate: 1032:1; TIFF LZW,
# whose code table restarts at 4094 codes: about 1400:1; PackBits: 64:1), with some margin.
_MAX_RATIO = {1: 1.0, 5: 1500.0, 8: 1100.0, 32946: 1100.0, 32773: 70.0}


def _check_page_size(path: Path, i: int, page) -> None:
    """Refuse a page whose tags cannot describe its stored bytes, before anything is decoded.

    A bit flip in ImageLength of a 1 kB zlib TIFF (campaign tiff case 1087) announced a frame of
    67108880 x 16 pixels: reading it allocated gigabytes and ran for minutes before the decoder
    failed. The strip/tile count must match the frame size, and the frame cannot decode to more
    bytes than its codec can produce from the stored ones.
    """
    kf = page.keyframe if getattr(page, "keyframe", None) is not None else page
    try:
        expected = int(np.prod(kf.chunked)) if kf.chunked else None
        decoded = int(np.prod(kf.shape, dtype=np.float64) * int(kf.bitspersample) // 8)
        compression = int(kf.compression)
    except (AttributeError, TypeError, ValueError):
        return
    n = len(page.dataoffsets)
    if expected and n != expected:
        raise MovieReadError(path, f"corrupt TIFF: frame {i} of {'x'.join(map(str, kf.shape))} pixels needs "
                                   f"{expected} strips or tiles, the file gives {n}")
    stored = int(sum(page.databytecounts))
    ratio = _MAX_RATIO.get(compression)
    if ratio is not None and decoded > ratio * stored + 1024:
        raise MovieReadError(path, f"corrupt TIFF: frame {i} of {'x'.join(map(str, kf.shape))} pixels "
                                   f"({decoded} bytes) cannot come from the {stored} bytes stored")


def _frame_from_memmap(mm: np.ndarray, colour_last: bool, i: int) -> np.ndarray:
    frame = np.asarray(mm[i])
    return rgb_to_luminance(frame) if colour_last else frame


def _frame_from_page(tif, pages, colour_axis: int | None, i: int) -> np.ndarray:
    # ``tif`` keeps the file open for the pages; LazyFrames serialises the calls (one file handle)
    data = np.asarray(pages[i].asarray())
    if colour_axis is not None:
        data = np.moveaxis(data, colour_axis, -1) if data.ndim == 3 else data
        return rgb_to_luminance(data)
    return data.reshape(data.shape[-2:]) if data.ndim > 2 else data


def read_tiff(path: str | os.PathLike) -> Movie:
    """Read a multi-page (or single-page) TIFF movie lazily, with its calibration.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Movie
        ``format='tiff'``; ``time_source`` is ``'timestamps'`` for OME per-plane DeltaT,
        ``'axis'`` for a uniform interval (ImageJ ``finterval``, OME ``TimeIncrement``, DM z scale),
        else ``'none'``. ``original_metadata`` holds the series axes and the calibration as read
        (``pixel_size_x``/``pixel_size_y`` when the file gives both).

    Raises
    ------
    MovieReadError
        Not a TIFF, truncated, several channels, complex pixels, or an unsupported layout.

    Notes
    -----
    Pixels that are not square (the DM export in the project's real test data states 0.1687 um
    in x and 1.687 um in y) keep the x size; both go into ``original_metadata`` and a problem
    line says so. RGB(A) pages become float32 luminance (0.2125 R + 0.7154 G + 0.0721 B).
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise MovieReadError(path, "file not found" if not path.exists() else "not a file")
    loop = ifd_chain_loop(path)
    if loop:
        raise MovieReadError(path, f"corrupt TIFF ({loop})")
    with _TifffileWarnings() as warnings:
        try:
            tif = tifffile.TiffFile(path, mode="rb")
            if tif.pages:
                _ = tif.series  # parse the series while tifffile's complaints are being collected
        except Exception as exc:  # TiffFileError, struct.error, ValueError on garbage
            raise MovieReadError(path, f"not a readable TIFF file ({_one_line(exc)})") from exc
    try:
        fatal = [w for w in warnings.messages if any(k in w for k in _FATAL_WARNINGS)]
        if fatal:
            raise MovieReadError(path, f"truncated or corrupt TIFF ({fatal[0]})")
        movie = _read_open_tiff(path, tif)
        movie.problems.extend(f"tifffile: {w}" for w in warnings.messages[:3])
        return movie
    except MovieReadError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise MovieReadError(path, f"cannot read TIFF ({_one_line(exc)})") from exc


def ifd_chain_loop(path: str | os.PathLike) -> str | None:
    """Where a TIFF's chain of image directories (IFDs) loops back on itself, or None.

    tifffile follows the next-IFD offsets one page at a time and checks for a loop only once, at
    the 100th page, and only when asked for the page count: a damaged offset pointing back to an
    earlier IFD makes ``TiffFile.series`` walk the circle until it has listed 2**32 pages (minutes
    and gigabytes for a 2 kB file). This walk reads only the tag counts and next offsets (about
    1 us per page through a memory map). A chain that ends early (offset past the end of the file,
    unreadable tag count) is left to tifffile, which stops there and logs it.
    """
    import mmap

    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 16:
            return None
        try:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None  # no memory map (special file system): left to tifffile
        with mm:
            order = {b"II": "<", b"MM": ">"}.get(bytes(mm[:2]))
            if order is None:
                return None
            version = struct.unpack_from(order + "H", mm, 2)[0]
            if version == 42:
                nfmt, nsize, tagsize, ofmt, osize, first = "H", 2, 12, "I", 4, 4
            elif version == 43:
                nfmt, nsize, tagsize, ofmt, osize, first = "Q", 8, 20, "Q", 8, 8
            else:
                return None
            tagno_fmt, offset_fmt = order + nfmt, order + ofmt
            offset = struct.unpack_from(offset_fmt, mm, first)[0]
            seen: dict[int, int] = {}
            while offset:
                if offset in seen:
                    return (f"its chain of image directories loops: page {len(seen)} points back to "
                            f"page {seen[offset]} at byte {offset}")
                if offset + nsize > size:
                    return None
                tagno = struct.unpack_from(tagno_fmt, mm, offset)[0]
                nxt = offset + nsize + tagno * tagsize
                if tagno > 4096 or nxt + osize > size:
                    return None
                seen[offset] = len(seen)
                offset = struct.unpack_from(offset_fmt, mm, nxt)[0]
    return None


class _TifffileWarnings(logging.Handler):
    """Collect what tifffile logs while parsing (it logs, rather than raises, on missing pages),
    so that a cut file becomes one error instead of stray log lines and a shorter movie."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._logger = logging.getLogger("tifffile")

    def emit(self, record):
        msg = record.getMessage().strip()
        # tifffile prefixes the object it complains about (<tifffile.TiffPages @8>): keep the rest
        self.messages.append(msg.split("> ", 1)[-1] if msg.startswith("<") else msg)

    def __enter__(self):
        self._propagate = self._logger.propagate
        self._logger.addHandler(self)
        self._logger.propagate = False
        return self

    def __exit__(self, *exc):
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate
        return False


def _read_open_tiff(path: Path, tif) -> Movie:
    import tifffile

    if not tif.series or not tif.pages:
        raise MovieReadError(path, "TIFF holds no images (empty stack)")
    series = tif.series[0]
    if 0 in tuple(series.shape):
        raise MovieReadError(path, f"empty stack (shape {tuple(series.shape)})")
    page0 = series.pages[0] if series.pages and series.pages[0] is not None else tif.pages.first
    dtype = np.dtype(series.dtype)
    if dtype.kind == "c":
        raise MovieReadError(path, f"complex pixels ({dtype}) are not supported; save the modulus")
    if dtype.kind not in "uifb":
        raise MovieReadError(path, f"pixel type {dtype} is not an image type")
    frame_axes, y, x, colour, n = _layout(path, series, page0.photometric)
    if n == 0 or 0 in series.shape:
        raise MovieReadError(path, f"empty stack (shape {tuple(series.shape)})")
    rows, cols = series.shape[y], series.shape[x]
    declared = (tif.imagej_metadata or {}).get("images") if tif.is_imagej else None
    if isinstance(declared, int) and declared > n * (series.shape[colour] if colour is not None and
                                                     page0.planarconfig == 2 else 1):
        raise MovieReadError(path, f"truncated: the ImageJ header declares {declared} images, the file holds {n}")
    file_size = path.stat().st_size
    problems: list[str] = []
    if colour is not None:
        problems.append(LUMINANCE_PROBLEM)
    out_dtype = np.dtype(np.float32) if colour is not None else (np.dtype(np.uint8) if dtype.kind == "b" else dtype)
    cal = _calibration(tif, page0, n)  # before the file handle may be closed below
    flattened = [series.axes[i] for i in frame_axes if series.shape[i] > 1]
    if len(flattened) > 1:
        problems.append(f"TIFF axes {' x '.join(flattened)} read as one frame axis in file order")
    layout = "memmap"
    if series.dataoffset is not None:
        if series.dataoffset + series.size * dtype.itemsize > file_size:
            raise MovieReadError(path, f"truncated: the file holds {file_size} bytes but its {n} frames "
                                       f"need {series.dataoffset + series.size * dtype.itemsize}")
        mm = tifffile.memmap(path, series=0, mode="r")
        order = frame_axes + [y, x] + ([colour] if colour is not None else [])
        mm = mm.transpose(order).reshape((n, rows, cols) + ((mm.shape[colour],) if colour is not None else ()))
        tif.close()
        if colour is None and dtype.kind != "b":
            frames = mm
        else:
            frames = LazyFrames(n, (rows, cols), out_dtype,
                                functools.partial(_frame_from_memmap, mm, colour is not None), cache_frames=0,
                                serialize=False)
    else:
        layout = "pages"
        pages = series.pages
        if len(pages) != n or any(p is None for p in pages[:1]):
            raise MovieReadError(path, f"unsupported TIFF layout: {len(pages)} pages for {n} frames "
                                       f"(axes {series.axes!r})")
        for i, page in enumerate(pages):
            ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts)]
            if not ends or max(ends) > file_size or 0 in page.databytecounts:
                raise MovieReadError(path, f"truncated or corrupt: the pixels of frame {i} lie outside the file")
            _check_page_size(path, i, page)
        page_colour_axis = None
        if colour is not None:
            page_colour_axis = 0 if pages[0].planarconfig == 2 else -1  # 2 = separate planes
        frames = LazyFrames(n, (rows, cols), out_dtype,
                            functools.partial(_frame_from_page, tif, list(pages), page_colour_axis))
        weakref.finalize(frames, tif.close)  # the file stays open exactly as long as the frames
    problems = cal.problems + problems
    meta = {"tiff_axes": series.axes, "tiff_shape": list(series.shape), "tiff_dtype": str(dtype),
            "layout": layout, "calibration_source": cal.source, **cal.meta}
    return Movie(frames, cal.times_s, cal.pixel_size, cal.pixel_unit, path, "tiff", meta, problems,
                 cal.time_source, reopen=functools.partial(read_tiff, path))
