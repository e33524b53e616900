"""pnCCD ``.frms6`` recordings (+ ``.hdr`` sidecar, ``_000.frms6`` dark frames).

Only LiberTEM reads this format, through its numba tiling machinery for 4D-STEM scans; a movie
reader needs a plain lazy frame stack with dark subtraction, so the layout is decoded here with a
memmap per file (layout as in LiberTEM's ``FRMS6DataSet``, which a test compares against):

* ``<base>.hdr``: INI, section ``[measurementInfo]`` (DarkFrames, SignalFrames,
  DwellTimeMicroseconds, Gain, StemImageSize, ReadoutMode ``"bin: N, windowing: A x B"``).
* ``<base>_000.frms6`` dark frames, ``<base>_001.frms6`` ... signal frames in order.
* file header, 1024 bytes: u16 header size (1024) at 0, u16 frame-header size (64) at 2, u8
  version (6) at 7, u16 width at 88, u16 height at 90, u32 number of frames at 1020 (0 in old
  files: derived from the file size).
* each frame: 64-byte header (u32 s at 4, u32 us at 8, u32 frame index at 12), then height x width
  little-endian uint16.
* the raw frame holds the two chip halves side by side: the image is the left half stacked over
  the right half flipped in both axes, (2 h, w / 2); with binning N each row is repeated N times.

Corrections: the mean of the unfolded dark frames is subtracted (float32 result), then an optional
gain map (``.mat`` variable ``GainMap``, or ``;``-separated CSV, transposed) multiplies.
"""
from __future__ import annotations

import configparser
import csv
import functools
import os
import re
import struct
from pathlib import Path

import numpy as np

from temtrack.errors import MovieReadError, ParameterError
from temtrack.io.movie import Movie

FILE_HEADER_BYTES = 1024
FRAME_HEADER_BYTES = 64
VERSION = 6
_READOUT_RE = re.compile(r'^"?\s*bin:\s*(\d+)\s*,\s*windowing:\s*(\d+)\s*x\s*(\d+)\s*"?$', re.I)


def _frame_dtype(h: int, w: int) -> np.dtype:
    return np.dtype([("pad", "<u4"), ("s", "<u4"), ("us", "<u4"), ("index", "<u4"),
                     ("temperature", "<f8"), ("rest", "V40"), ("pixels", "<u2", (h, w))])


def frms6_base(path: str | os.PathLike) -> Path:
    """``<base>`` of a recording from its ``.hdr`` or any of its ``.frms6`` files."""
    path = Path(path)
    if path.suffix.lower() == ".hdr":
        return path.with_suffix("")
    return path.with_name(re.sub(r"_\d+$", "", path.stem))


def read_hdr(path: Path) -> dict:
    """The ``[measurementInfo]`` section of a ``.hdr`` file, keys lower-cased, values parsed."""
    # No interpolation: a '%' in a value is text, not a ConfigParser reference.
    cp = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, "r", encoding="latin-1") as f:
            cp.read_file(f)
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise MovieReadError(path, f"unreadable .hdr file ({str(exc).splitlines()[0]})") from None
    section = next((s for s in cp.sections() if s.lower() == "measurementinfo"), None)
    if section is None:
        raise MovieReadError(path, f"no [measurementInfo] section in .hdr (sections: {cp.sections()})")
    out: dict = {k.lower(): v for k, v in cp[section].items()}
    for key in ("darkframes", "signalframes", "dwelltimemicroseconds", "gain"):
        if key in out:
            try:
                out[key] = int(float(out[key]))
            except ValueError:
                raise MovieReadError(path, f"{key} = {out[key]!r} is not a number") from None
    if "readoutmode" in out:
        m = _READOUT_RE.match(out["readoutmode"].strip())
        if m is None:
            raise MovieReadError(path, f"cannot parse ReadoutMode {out['readoutmode']!r}")
        out["binning"] = int(m.group(1))
        out["windowing"] = (int(m.group(2)), int(m.group(3)))
    if "stemimagesize" in out:
        try:
            out["stemimagesize"] = tuple(int(p) for p in out["stemimagesize"].lower().split("x"))
        except ValueError:
            pass
    return out


def read_file_header(path: Path) -> dict:
    """Header of one ``.frms6`` file, with the number of frames it really holds."""
    size = path.stat().st_size
    if size == 0:
        raise MovieReadError(path, "empty file (0 bytes)")
    with open(path, "rb") as f:
        raw = f.read(FILE_HEADER_BYTES)
    if len(raw) < FILE_HEADER_BYTES:
        raise MovieReadError(path, f"truncated frms6 file: {len(raw)} bytes, shorter than its "
                                   f"{FILE_HEADER_BYTES}-byte header")
    hsize, fhsize = np.frombuffer(raw[:4], "<u2")
    version = raw[7]
    width, height = np.frombuffer(raw[88:92], "<u2")
    n_header = int(np.frombuffer(raw[1020:1024], "<u4")[0])
    if hsize != FILE_HEADER_BYTES or fhsize != FRAME_HEADER_BYTES or version != VERSION:
        raise MovieReadError(path, f"not a frms6 version 6 file (header size {hsize}, frame header "
                                   f"{fhsize}, version {version})")
    width, height = int(width), int(height)
    if width == 0 or height == 0 or width % 2:
        raise MovieReadError(path, f"bad frame size {height}x{width} in frms6 header")
    frame_bytes = FRAME_HEADER_BYTES + 2 * width * height
    fits = (size - FILE_HEADER_BYTES) // frame_bytes
    if n_header:
        if n_header > fits:
            need = FILE_HEADER_BYTES + n_header * frame_bytes
            raise MovieReadError(path, f"file shorter than its header says: {n_header} frames need "
                                       f"{need} bytes, the file has {size}")
        n = n_header
    else:
        n = fits
    return {"path": path, "width": width, "height": height, "n_frames": int(n),
            "n_frames_header": n_header, "size": size,
            "partial_bytes": (size - FILE_HEADER_BYTES) - fits * frame_bytes if not n_header else 0}


def unfold(raw: np.ndarray, binning: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """Raw folded frames (..., h, w) -> images (..., 2 h binning, w / 2), float32.

    The left half goes on top, the right half flipped in both axes below it; each row is repeated
    ``binning`` times.
    """
    h, w = raw.shape[-2:]
    half = w // 2
    shape = (*raw.shape[:-2], 2 * h * binning, half)
    if out is None:
        out = np.empty(shape, np.float32)
    # A (2h, binning, w/2) view of the output: each raw row is broadcast over its binning copies
    # without temporaries.
    o = out.reshape(*out.shape[:-2], 2 * h, binning, half)
    o[..., :h, :, :] = raw[..., :, None, :half]
    o[..., h:, :, :] = raw[..., ::-1, None, half:][..., ::-1]
    return out


def fold(image: np.ndarray, binning: int = 1) -> np.ndarray:
    """Inverse of :func:`unfold`: images (..., 2 h binning, w / 2) -> raw uint16 (..., h, w)."""
    image = np.asarray(image)
    rows, half = image.shape[-2:]
    if rows % (2 * binning):
        raise ParameterError(f"image rows ({rows}) must be a multiple of 2 x binning ({2 * binning})")
    binned = image[..., ::binning, :]
    h = rows // binning // 2
    raw = np.empty((*image.shape[:-2], h, 2 * half), np.uint16)
    raw[..., :, :half] = binned[..., :h, :]
    raw[..., :, half:] = binned[..., h:, :][..., ::-1, ::-1]
    return raw


class Frms6Frames:
    """Lazy corrected frames: unfolded, dark-subtracted, gain-multiplied float32 (n, rows, cols)."""

    def __init__(self, files: list[str], counts: list[int], height: int, width: int, binning: int,
                 dark: np.ndarray | None, gain: np.ndarray | None):
        self.files = list(files)
        self.counts = [int(c) for c in counts]
        self.height, self.width, self.binning = int(height), int(width), int(binning)
        self.dark, self.gain = dark, gain
        self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.shape = (int(self.starts[-1]), 2 * self.height * self.binning, self.width // 2)
        self.dtype = np.dtype(np.float32)
        self._maps: dict[int, np.memmap] = {}

    def __len__(self):
        return self.shape[0]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    def raw_pixels(self, file_index: int) -> np.ndarray:
        """Read-only memmap (n, h, w) uint16 of one file's raw (folded) pixels."""
        mm = self._maps.get(file_index)
        if mm is None:
            mm = np.memmap(self.files[file_index], mode="r", offset=FILE_HEADER_BYTES,
                           dtype=_frame_dtype(self.height, self.width),
                           shape=(self.counts[file_index],))
            self._maps[file_index] = mm
        return mm["pixels"]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            k = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= k < self.shape[0]:
                raise IndexError(f"frame {key} outside 0:{self.shape[0]}")
            return self._read(np.array([k]))[0]
        if isinstance(key, slice):
            idx = np.arange(*key.indices(self.shape[0]))
        else:
            idx = np.asarray(key, dtype=np.int64).ravel()
        return self._read(idx)

    def _read(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.shape[1:]), np.float32)
        if len(idx) == 0:
            return out
        file_of = np.searchsorted(self.starts, idx, side="right") - 1
        pos = 0
        # Group consecutive frames of the same file so a contiguous run is one memmap slice.
        while pos < len(idx):
            fi = file_of[pos]
            end = pos
            while end + 1 < len(idx) and file_of[end + 1] == fi and idx[end + 1] == idx[end] + 1:
                end += 1
            local0 = int(idx[pos] - self.starts[fi])
            raw = self.raw_pixels(int(fi))[local0:local0 + end - pos + 1]
            unfold(raw, self.binning, out=out[pos:end + 1])
            pos = end + 1
        if self.dark is not None:
            out -= self.dark
        if self.gain is not None:
            out *= self.gain
        return out


def load_gain_map(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """A gain map from a ``.mat`` (variable ``GainMap``) or ``;``-separated CSV (transposed) file."""
    path = Path(path)
    if not path.exists():
        raise MovieReadError(path, "gain map: no such file")
    ext = path.suffix.lower()
    if ext == ".mat":
        import scipy.io

        try:
            mat = scipy.io.loadmat(str(path))
        except Exception as exc:
            raise MovieReadError(path, f"unreadable .mat gain map ({exc})") from None
        if "GainMap" not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise MovieReadError(path, f"no variable 'GainMap' in .mat file (has {found})")
        gain = np.asarray(mat["GainMap"], dtype=np.float32)
    elif ext == ".csv":
        with open(path, newline="") as f:
            rows = [[float(x) for x in row if x.strip() != ""] for row in csv.reader(f, delimiter=";")]
        rows = [r for r in rows if r]
        try:
            gain = np.array(rows, dtype=np.float32).T
        except ValueError:
            raise MovieReadError(path, "gain map CSV rows have different lengths") from None
    else:
        raise MovieReadError(path, f"gain map must be a .mat or .csv file, got {ext!r}")
    if gain.shape != tuple(shape):
        raise MovieReadError(path, f"gain map of shape {gain.shape} does not match frames {tuple(shape)}")
    return gain


def read_frms6(path: str | os.PathLike, *, dark_correction: bool = True,
               gain_map: str | os.PathLike | None = None) -> Movie:
    """Read a pnCCD frms6 recording lazily (open by its ``.hdr`` or any of its ``.frms6`` files).

    Parameters
    ----------
    path : path-like
    dark_correction : bool
        Subtract the mean of the dark frames in ``<base>_000.frms6`` (when that file exists).
    gain_map : path-like, optional
        ``.mat`` (``GainMap``) or ``;``-separated ``.csv`` gain map, multiplied after dark subtraction.

    Returns
    -------
    Movie
        ``format='frms6'``, float32 frames (2 h binning, w / 2), times from the frame headers,
        uncalibrated pixel size (the files carry none).

    Raises
    ------
    MovieReadError
        Missing files, bad headers, a file shorter than its header says, inconsistent frame sizes.
    """
    path = Path(path)
    if not path.exists():
        raise MovieReadError(path, "no such file or folder")
    base = frms6_base(path)
    problems: list[str] = []
    hdr_path = base.with_name(base.name + ".hdr")
    hdr: dict = {}
    if hdr_path.exists():
        hdr = read_hdr(hdr_path)
    else:
        problems.append(f"no {hdr_path.name} sidecar: binning assumed 1")
    binning = int(hdr.get("binning", 1))
    if binning not in (1, 2, 4):
        raise MovieReadError(hdr_path, f"binning {binning} in ReadoutMode (expected 1, 2 or 4)")

    pattern = re.compile(re.escape(base.name) + r"_(\d+)\.frms6$", re.I)
    numbered = sorted((int(m.group(1)), p) for p in base.parent.iterdir()
                      if (m := pattern.match(p.name)))
    if not numbered:
        raise MovieReadError(path, f"no {base.name}_NNN.frms6 files next to it")
    dark_file = next((p for i, p in numbered if i == 0), None)
    signal_files = [p for i, p in numbered if i != 0]
    if not signal_files:
        raise MovieReadError(path, f"only dark frames ({dark_file.name}); no signal files "
                                   f"{base.name}_001.frms6 ...")
    headers = [read_file_header(p) for p in signal_files]
    h, w = headers[0]["height"], headers[0]["width"]
    for hd in headers[1:]:
        if (hd["height"], hd["width"]) != (h, w):
            raise MovieReadError(hd["path"], f"frames of {hd['height']}x{hd['width']} differ from "
                                             f"{signal_files[0].name} ({h}x{w})")
    for hd in headers:
        if hd["partial_bytes"]:
            problems.append(f"{hd['path'].name}: {hd['partial_bytes']} bytes of a partial last frame ignored")
    counts = [hd["n_frames"] for hd in headers]
    n_total = sum(counts)
    if "signalframes" in hdr and hdr["signalframes"] != n_total:
        problems.append(f".hdr says {hdr['signalframes']} signal frames, the files hold {n_total}")
    if n_total == 0:
        raise MovieReadError(path, "no signal frames in the frms6 files")

    frame_shape = (2 * h * binning, w // 2)
    dark = None
    if dark_correction and dark_file is not None:
        dh = read_file_header(dark_file)
        if (dh["height"], dh["width"]) != (h, w):
            raise MovieReadError(dark_file, f"dark frames of {dh['height']}x{dh['width']} differ from "
                                            f"signal frames ({h}x{w})")
        if dh["n_frames"]:
            dark = _mean_unfolded(dark_file, dh["n_frames"], h, w, binning)
        else:
            problems.append(f"{dark_file.name} holds no dark frames: no dark subtraction")
    elif dark_correction:
        problems.append(f"no dark frames ({base.name}_000.frms6): no dark subtraction")
    gain = load_gain_map(gain_map, frame_shape) if gain_map is not None else None

    times = _frame_times(signal_files, counts, h, w)
    if times is None or np.any(np.diff(times) < 0):
        problems.append("frame header time stamps missing or not increasing")
        times, source = None, "none"
        dwell = hdr.get("dwelltimemicroseconds")
        if dwell:
            times, source = np.arange(n_total) * dwell * 1e-6, "axis"
            problems[-1] += f"; using the .hdr dwell time {dwell} us"
    else:
        source = "timestamps"
    problems.append("no spatial calibration: pixel size unknown (give --pixel-size)")
    frames = Frms6Frames([str(p) for p in signal_files], counts, h, w, binning, dark, gain)
    meta = {"hdr": {k: (list(v) if isinstance(v, tuple) else v) for k, v in hdr.items()},
            "raw_frame_shape": [h, w], "binning": binning,
            "dark_frames": str(dark_file) if dark is not None else None,
            "gain_map": str(gain_map) if gain_map is not None else None,
            "files": [p.name for p in signal_files],
            "size_on_disk_bytes": sum(p.stat().st_size for p in
                                      [*signal_files, *([dark_file] if dark_file else []), *base.parent.glob(base.name + ".hdr")])}
    return Movie(frames, times, None, None, path, "frms6", meta, problems, source,
                 reopen=functools.partial(read_frms6, str(path), dark_correction=dark_correction,
                                          gain_map=None if gain_map is None else str(gain_map)))


def _mean_unfolded(path: Path, n: int, h: int, w: int, binning: int, chunk: int = 256) -> np.ndarray:
    mm = np.memmap(path, mode="r", offset=FILE_HEADER_BYTES, dtype=_frame_dtype(h, w), shape=(n,))
    acc = np.zeros((h, w), np.float64)
    for i in range(0, n, chunk):
        acc += mm["pixels"][i:i + chunk].sum(axis=0, dtype=np.float64)
    del mm
    return unfold((acc / n).astype(np.float32), binning)


def _frame_times(files: list[Path], counts: list[int], h: int, w: int) -> np.ndarray | None:
    # One small pread per frame header: mapping the file instead would pull a page per frame into
    # this process's resident set (60 MB for a 2 GB recording).
    frame_bytes = FRAME_HEADER_BYTES + 2 * h * w
    secs, usecs = [], []
    for p, n in zip(files, counts):
        s = np.empty(n, np.int64)
        us = np.empty(n, np.int64)
        fd = os.open(p, os.O_RDONLY)
        try:
            for i in range(n):
                raw = os.pread(fd, 8, FILE_HEADER_BYTES + i * frame_bytes + 4)
                s[i], us[i] = struct.unpack("<II", raw)
        finally:
            os.close(fd)
        secs.append(s)
        usecs.append(us)
    s, us = np.concatenate(secs), np.concatenate(usecs)
    # Integer differences first: Unix seconds (~1.7e9) in float64 would lose sub-us precision.
    t = (s - s[0]).astype(np.float64) + (us - us[0]).astype(np.float64) * 1e-6
    if t.size > 1 and np.all(t == 0):
        return None
    return t


def write_frms6(base_path: str | os.PathLike, signal_frames_raw: np.ndarray,
                dark_frames_raw: np.ndarray | None = None, *, dwell_time_us: int = 1000,
                binning: int = 1, frames_per_file: int | None = None, gain: int = 1,
                start_time_s: float = 1.7e9, header_frame_count: bool = True,
                stem_image_size: tuple[int, int] | None = None) -> Path:
    """Write a pnCCD-like frms6 recording in the raw folded layout (the inverse of the reader).

    Parameters
    ----------
    base_path : path-like
        ``<base>``: writes ``<base>.hdr``, ``<base>_000.frms6`` (dark), ``<base>_001.frms6`` ...
    signal_frames_raw, dark_frames_raw : ndarray of uint16, shape (n, h, w)
        Raw folded frames (use :func:`fold` to make them from images). ``dark_frames_raw`` may be
        None (an empty dark file is not written then).
    dwell_time_us : int
        Frame period; frame ``i`` is stamped ``start_time_s + i * dwell_time_us`` (s + us fields).
    binning : {1, 2, 4}
        Written to ReadoutMode; the raw frames are already binned.
    frames_per_file : int, optional
        Split the signal frames into several files of this many frames.
    header_frame_count : bool
        Write the frame count at byte 1020 (False imitates old files: count from the file size).
    stem_image_size : (int, int), optional
        Scan size for the .hdr (default: n x 1).

    Returns
    -------
    Path
        The ``.hdr`` path.
    """
    base = Path(base_path)
    sig = np.asarray(signal_frames_raw)
    if sig.ndim != 3:
        raise ParameterError(f"signal frames must be (n, h, w), got {sig.shape}")
    if binning not in (1, 2, 4):
        raise ParameterError(f"binning must be 1, 2 or 4, got {binning}")
    n, h, w = sig.shape
    dark = None if dark_frames_raw is None else np.asarray(dark_frames_raw)
    stem = stem_image_size or (n, 1)
    base.parent.mkdir(parents=True, exist_ok=True)
    hdr = base.with_name(base.name + ".hdr")
    hdr.write_text(
        "[measurementInfo]\n"
        f"DarkFrames={0 if dark is None else len(dark)}\n"
        f"SignalFrames={n}\n"
        f"DwellTimeMicroseconds={int(dwell_time_us)}\n"
        f"Gain={int(gain)}\n"
        f"StemImageSize={stem[0]}x{stem[1]}\n"
        f'ReadoutMode="bin: {binning}, windowing: {2 * h * binning} x {w // 2}"\n')
    if dark is not None:
        _write_one(base.with_name(f"{base.name}_000.frms6"), dark, start_time_s, dwell_time_us, 0,
                   header_frame_count)
    per = frames_per_file or max(n, 1)
    for k, i0 in enumerate(range(0, n, per), start=1):
        _write_one(base.with_name(f"{base.name}_{k:03d}.frms6"), sig[i0:i0 + per],
                   start_time_s + i0 * dwell_time_us * 1e-6, dwell_time_us, i0, header_frame_count)
    return hdr


def _write_one(path: Path, frames: np.ndarray, t0_s: float, dwell_us: int, index0: int,
               header_frame_count: bool) -> None:
    n, h, w = frames.shape
    header = np.zeros(FILE_HEADER_BYTES, np.uint8)
    header[0:2] = np.frombuffer(np.uint16(FILE_HEADER_BYTES).tobytes(), np.uint8)
    header[2:4] = np.frombuffer(np.uint16(FRAME_HEADER_BYTES).tobytes(), np.uint8)
    header[7] = VERSION
    header[88:90] = np.frombuffer(np.uint16(w).tobytes(), np.uint8)
    header[90:92] = np.frombuffer(np.uint16(h).tobytes(), np.uint8)
    if header_frame_count:
        header[1020:1024] = np.frombuffer(np.uint32(n).tobytes(), np.uint8)
    rec = np.zeros(n, _frame_dtype(h, w))
    t_us = np.round(t0_s * 1e6).astype(np.int64) + np.arange(n, dtype=np.int64) * int(dwell_us)
    rec["s"] = t_us // 1_000_000
    rec["us"] = t_us % 1_000_000
    rec["index"] = index0 + np.arange(n)
    rec["temperature"] = -20.0
    rec["pixels"] = frames.astype("<u2")
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(rec.tobytes())
