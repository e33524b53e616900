"""Gatan GMS 3 In-Situ recordings: one DM3/DM4 file per frame in an Hour/Minute/Second tree.

``<Name>/Hour_HH/Minute_MM/Second_SS/<Name>_Hour_HH_Minute_MM_Second_SS_Frame_FFFF.dm4``, the
frame counter restarting in every second. Neither rosettasciio nor HyperSpy reads these as one
movie, and loading 10^4-10^5 files through them costs 8-60 ms per file, hence this reader: the tags
of the first file are parsed once (rosettasciio), the data offset is cached, and each frame is read
by seeking to that offset (GMS writes its files alike). Each read checks the bytes of the data
tag's header just before the pixels, so a file whose tags differ in length is detected and parsed
on its own instead of being read at a wrong offset.

Frames are ordered by the parsed (hour, minute, second, frame) numbers, not by a name sort. Frame
times come from per-file tags when every file has them (``Acquisition.Frame.Sequence`` start time +
frame start, else ``DataBar.Acquisition Time (OS)``), found by a byte search rather than a full
parse; otherwise from the folder clock plus the frame number over the nominal frame rate. Missing
frames and seconds are reported in ``problems``; times keep the gap.
"""
from __future__ import annotations

import functools
import os
import re
import struct
from collections import defaultdict
from pathlib import Path

import numpy as np

from temtrack.errors import MovieReadError
from temtrack.io.dm import (LUMINANCE_PROBLEM, RGBLuminance, calibration_from_axes,
                            check_dm_header, find_simple_tags, jsonable, parse_dm)
from temtrack.io.movie import Movie

_NAME_RE = re.compile(r"Hour_(\d+)_Minute_(\d+)_Second_(\d+)_Frame_(\d+)\.dm[34]$", re.IGNORECASE)
_FRAME_RE = re.compile(r"Frame_(\d+)\.dm[34]$", re.IGNORECASE)
_DIR_RE = {"h": re.compile(r"^Hour_(\d+)$", re.I), "m": re.compile(r"^Minute_(\d+)$", re.I),
           "s": re.compile(r"^Second_(\d+)$", re.I)}
_EPOCH_NAMES = ("Acquisition Start Time (epoch)", "Acquisition Start Time (epoch) [ms]")
_FRAME_START = "Frame Start (ns)"
_FILETIME = "Acquisition Time (OS)"
_FILETIME_TO_UNIX_S = 11644473600.0


def find_recording_root(path: str | os.PathLike) -> Path | None:
    """The folder holding ``Hour_*`` folders: ``path`` itself or its only subfolder; else None."""
    path = Path(path)
    if not path.is_dir():
        return None
    if any(_DIR_RE["h"].match(p.name) and p.is_dir() for p in path.iterdir()):
        return path
    subdirs = [p for p in path.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and any(_DIR_RE["h"].match(p.name) and p.is_dir()
                                 for p in subdirs[0].iterdir()):
        return subdirs[0]
    return None


def list_frames(root: Path) -> tuple[list[tuple[int, int, int, int]], list[Path], int]:
    """Frame files in time order: keys (H, M, S, F), paths, and the number of files ignored."""
    entries = []
    ignored = 0
    for hour in root.iterdir():
        mh = _DIR_RE["h"].match(hour.name)
        if not (mh and hour.is_dir()):
            continue
        for minute in hour.iterdir():
            mm = _DIR_RE["m"].match(minute.name)
            if not (mm and minute.is_dir()):
                continue
            for second in minute.iterdir():
                ms = _DIR_RE["s"].match(second.name)
                if not (ms and second.is_dir()):
                    continue
                for f in second.iterdir():
                    m = _NAME_RE.search(f.name)
                    if m:
                        key = tuple(int(g) for g in m.groups())
                    else:
                        mf = _FRAME_RE.search(f.name)
                        if not mf:
                            ignored += 1
                            continue
                        # The folders are authoritative when the file name lacks the clock.
                        key = (int(mh.group(1)), int(mm.group(1)), int(ms.group(1)),
                               int(mf.group(1)))
                    entries.append((key, f))
    entries.sort(key=lambda e: e[0])
    return [e[0] for e in entries], [e[1] for e in entries], ignored


class FileFrames:
    """Lazy (n, rows, cols) stack over one single-frame DM file per frame.

    Indexing with an int, a slice, a sequence of ints, or a tuple starting with one of these reads
    only those files (seek + readinto at the data offset) and returns a numpy array. ``offsets``
    maps frame indices whose files have their data elsewhere (longer tags before the data) to their
    own offset; all other files use ``offset``.
    """

    def __init__(self, paths: list[str], shape: tuple[int, int], dtype: np.dtype, offset: int,
                 signature: bytes, version: int, offsets: dict[int, int] | None = None):
        self.paths = list(paths)
        self.frame_shape = tuple(shape)
        self.raw_dtype = np.dtype(dtype)
        self.offset = int(offset)
        self.signature = bytes(signature)
        self.version = version
        self.offsets = dict(offsets or {})
        self.shape = (len(self.paths), *self.frame_shape)
        self.dtype = self.raw_dtype
        self._nbytes = int(np.prod(self.frame_shape)) * self.raw_dtype.itemsize

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            k = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= k < self.shape[0]:
                raise IndexError(f"frame {key} outside 0:{self.shape[0]}")
            out = np.empty(self.frame_shape, self.raw_dtype)
            self._read_into(k, out)
            return out
        if isinstance(key, slice):
            idx = range(*key.indices(self.shape[0]))
        elif isinstance(key, tuple):
            # (frames, rows, cols): read the frames, then index within them.
            block = self[key[0]]
            rest = key[1:]
            return block[rest] if isinstance(key[0], (int, np.integer)) else block[(slice(None), *rest)]
        else:
            idx = [int(i) + (self.shape[0] if i < 0 else 0) for i in np.asarray(key).ravel()]
        out = np.empty((len(idx), *self.frame_shape), self.raw_dtype)
        for j, k in enumerate(idx):
            self._read_into(k, out[j])
        return out

    def _read_into(self, k: int, out: np.ndarray) -> None:
        path = self.paths[k]
        offset = self.offsets.get(k, self.offset)
        sig = len(self.signature)
        with open(path, "rb") as f:
            f.seek(offset - sig)
            head = f.read(sig)
            if head == self.signature:
                n = f.readinto(memoryview(out.reshape(-1).view(np.uint8)))
                if n == self._nbytes:
                    return
                raise MovieReadError(path, f"truncated frame file: {n} of {self._nbytes} pixel bytes")
        # The file changed since it was opened, or its layout differs: parse it on its own.
        info = parse_dm(path)
        if tuple(info.shape) != self.frame_shape or info.dtype != self.raw_dtype:
            raise MovieReadError(path, f"frame of shape {info.shape} ({info.dtype}) differs from "
                                       f"the first frame {self.frame_shape} ({self.raw_dtype})")
        with open(path, "rb") as f:
            f.seek(info.offset)
            n = f.readinto(memoryview(out.reshape(-1).view(np.uint8)))
        if n != self._nbytes:
            raise MovieReadError(path, f"truncated frame file: {n} of {self._nbytes} pixel bytes")


def _signature_length(version: int) -> int:
    # "%%%%" + info-array length + (20, element type, element count): the Data tag's header.
    return 4 + 4 * (8 if version == 4 else 4)


def _layout_after_data(buf: bytes, version: int, little: bool) -> tuple[int | None, tuple | None]:
    """(DataType, shape) from the tags that follow the pixels (``DataType``, ``Dimensions``).

    DM sorts tags by name, so in ``ImageData`` these two come right after ``Data``: reading a few
    hundred bytes after the pixels checks a frame's layout without parsing the file.
    """
    dtype_code = find_simple_tags(buf[:256], ("DataType",), version=version,
                                  little_endian=little).get("DataType")
    name = b"Dimensions"
    i = buf.find(b"\x14" + struct.pack(">H", len(name)) + name, 0, 512)
    if i < 0:
        return None, None
    lsize, lfmt = (8, ">Q") if version == 4 else (4, ">L")
    endian = "<" if little else ">"
    j = i + 3 + len(name) + (8 if version == 4 else 0) + 2
    try:
        ntags = struct.unpack(lfmt, buf[j:j + lsize])[0]
        j += lsize
        dims = []
        for _ in range(min(ntags, 8)):
            if buf[j:j + 3] != b"\x15\x00\x00":
                return dtype_code, None
            j += 3 + (8 if version == 4 else 0)
            if buf[j:j + 4] != b"%%%%":
                return dtype_code, None
            j += 4
            ninfo, etype = struct.unpack(">" + lfmt[1] * 2, buf[j:j + 2 * lsize])
            j += 2 * lsize
            fmt = {2: "h", 3: "i", 4: "H", 5: "I", 11: "q", 12: "Q"}.get(etype)
            if ninfo != 1 or fmt is None:
                return dtype_code, None
            dims.append(int(struct.unpack(endian + fmt, buf[j:j + struct.calcsize(fmt)])[0]))
            j += struct.calcsize(fmt)
    except struct.error:
        return dtype_code, None
    return dtype_code, tuple(dims[::-1])


def read_gms_insitu(path: str | os.PathLike, *, time_tags: bool = True) -> Movie:
    """Read a GMS 3 In-Situ recording folder as one lazy movie in time order.

    Parameters
    ----------
    path : path-like
        The recording folder (holding ``Hour_*``), or a folder whose only subfolder is it.
    time_tags : bool
        Read per-frame time tags from every file (found in the bytes after the pixels, ~0.15 ms per
        file). False uses the folder clock and frame numbers only.

    Returns
    -------
    Movie
        ``format='gms-insitu'``.

    Raises
    ------
    MovieReadError
        No frame files, a frame whose size or type differs from the first (names that file), a
        truncated or corrupt frame file (names it).
    """
    path = Path(path)
    if not path.exists():
        raise MovieReadError(path, "no such file or folder")
    root = find_recording_root(path)
    if root is None:
        raise MovieReadError(path, "not a GMS In-Situ recording (no Hour_*/Minute_*/Second_* folders)")
    keys, files, ignored = list_frames(root)
    if not files:
        raise MovieReadError(path, "GMS In-Situ recording without any *_Frame_NNNN.dm4/.dm3 file")
    problems: list[str] = []
    if ignored:
        problems.append(f"{ignored} file(s) in the Second_* folders do not look like frames and were ignored")

    first = parse_dm(files[0])
    if len(first.shape) != 2:
        raise MovieReadError(files[0], f"expected a single 2D frame per file, got shape {first.shape}")
    scan = _scan_files(files, first, time_tags)
    frames = FileFrames([str(f) for f in files], first.shape, first.dtype, first.offset,
                        scan["signature"], first.version, scan["offsets"])
    if first.data_type in (8, 23):
        frames = RGBLuminance(frames)
        problems.append(LUMINANCE_PROBLEM)
    pixel_size, pixel_unit = calibration_from_axes(first, problems)

    gap_notes, name_times = _clock_times(keys)
    problems.extend(gap_notes)
    times, source = None, "none"
    if time_tags:
        times, note = _tag_times(scan["tags"], files, name_times)
        if note:
            problems.append(note)
        if times is not None:
            source = "timestamps"
    if times is None:
        times, source = name_times, "axis"
        problems.append("frame times from the folder clock (1 s resolution) with the frames of each "
                        "second spread uniformly; no per-frame time tags used")
    meta = {"recording": root.name, "n_files": len(files), "first_file": files[0].name,
            "dm_version": first.version, "first_frame_ImageTags": jsonable(first.image_tags)}
    return Movie(frames, times, pixel_size, pixel_unit, root, "gms-insitu", meta, problems, source,
                 reopen=functools.partial(read_gms_insitu, str(root), time_tags=time_tags))


_TIME_NAMES = (*_EPOCH_NAMES, _FRAME_START, _FILETIME)


def _scan_files(files: list[Path], first, want_tags: bool) -> dict:
    """One pass over the frame files: check each one's layout, collect its time tags.

    A file is read at the first file's data offset: the Data tag header just before it and the
    ``DataType``/``Dimensions`` tags just after the pixels must match. Only files that do not match
    are parsed in full (rosettasciio, ~10 ms): if their frame differs, that is an error naming the
    file; if only their tags are longer, their own offset is remembered.
    """
    little = first.dtype.byteorder in ("<", "|", "=")
    sig_len = _signature_length(first.version)
    end = first.offset + first.nbytes
    with open(files[0], "rb") as fh:
        fh.seek(first.offset - sig_len)
        signature = fh.read(sig_len)
        fh.seek(end)
        tail0 = fh.read(512)
    expected = _layout_after_data(tail0, first.version, little)
    if expected[1] is None:
        expected = (first.data_type, first.shape)  # unusual tag order: rely on the parse
    offsets: dict[int, int] = {}
    tags: list[dict] = []
    for i, f in enumerate(files):
        with open(f, "rb") as fh:
            check_dm_header(f, fh.read(16), os.fstat(fh.fileno()).st_size)
            fh.seek(first.offset - sig_len)
            sig = fh.read(sig_len)
            fh.seek(end)
            tail = fh.read() if want_tags else fh.read(512)
        ok = sig == signature and _layout_after_data(tail, first.version, little) == expected
        if not ok and i > 0:
            info = parse_dm(f)
            if info.shape != first.shape or info.dtype != first.dtype:
                raise MovieReadError(f, f"frame of shape {info.shape} ({info.dtype}) differs from the "
                                        f"first frame {files[0].name} {first.shape} ({first.dtype})")
            offsets[i] = info.offset
            if want_tags:
                with open(f, "rb") as fh:
                    fh.seek(info.offset + info.nbytes)
                    tail = fh.read()
        if want_tags:
            found = find_simple_tags(tail, _TIME_NAMES, version=first.version, little_endian=little)
            if not found:
                # Tags stored before the pixels (unusual order): search the head too.
                with open(f, "rb") as fh:
                    head = fh.read(offsets.get(i, first.offset))
                found = find_simple_tags(head, _TIME_NAMES, version=first.version, little_endian=little)
            tags.append(found)
    return {"signature": signature, "offsets": offsets, "tags": tags}


def _clock_times(keys: list[tuple[int, int, int, int]]) -> tuple[list[str], np.ndarray]:
    """Gap notes and frame times from (H, M, S, F): second + F / nominal frames per second."""
    notes = []
    seconds = np.array([h * 3600 + m * 60 + s for h, m, s, _ in keys], dtype=np.int64)
    numbers = np.array([k[3] for k in keys], dtype=np.int64)
    per_second: dict[int, list[int]] = defaultdict(list)
    for s, f in zip(seconds, numbers):
        per_second[int(s)].append(int(f))
    secs = sorted(per_second)
    counts = {s: max(per_second[s]) + 1 for s in secs}  # frames the numbering implies
    interior = [counts[s] for s in secs[1:-1]]
    if interior:
        fps = float(np.median(interior))
    else:
        fps = float(max(counts.values()))
    fps = max(fps, 1.0)

    dup = [s for s in secs if len(set(per_second[s])) != len(per_second[s])]
    if dup:
        notes.append(f"duplicate frame numbers in {len(dup)} second folder(s) (first: {_hms(dup[0])})")
    missing_frames = []
    for s in secs:
        present = set(per_second[s])
        top = max(present)
        holes = [f for f in range(top + 1) if f not in present]
        # A short interior second (its last frames missing) is a gap too; tolerate the +-1 of
        # frame rates that are not whole numbers.
        if s not in (secs[0], secs[-1]) and top + 1 < np.floor(fps) - 1:
            holes += list(range(top + 1, int(np.floor(fps))))
        missing_frames.extend((s, f) for f in holes)
    missing_seconds = [s for s in range(secs[0], secs[-1] + 1) if s not in per_second]
    if missing_frames:
        s, f = missing_frames[0]
        notes.append(f"gap: {len(missing_frames)} frame(s) missing within the recorded seconds "
                     f"(first: {_hms(s)} frame {f:04d}); times keep the gap")
    if missing_seconds:
        notes.append(f"gap: {len(missing_seconds)} second folder(s) missing (first: "
                     f"{_hms(missing_seconds[0])}); times keep the gap")
    t = seconds + numbers / fps
    return notes, t - t[0]


def _hms(s: int) -> str:
    return f"Hour_{s // 3600:02d}/Minute_{(s // 60) % 60:02d}/Second_{s % 60:02d}"


def _tag_times(tags: list[dict], files: list[Path],
               name_times: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Per-file time tags (s, from the first frame), or None with a note when absent/inconsistent."""
    # (coarse, fine) per file, differenced separately: epoch ms (~1.7e12) plus ns in one float64
    # would keep only ~0.2 us.
    coarse = np.zeros(len(files))
    fine = np.zeros(len(files))
    kind = None
    for i, (found, f) in enumerate(zip(tags, files)):
        epoch = next((found[n] for n in _EPOCH_NAMES if n in found), None)
        if _FRAME_START in found and epoch is not None and found[_FRAME_START] >= 0:
            k, c, fi = "sequence", epoch * 1e-3, found[_FRAME_START] * 1e-9
        elif _FILETIME in found and found[_FILETIME] > 0:
            k, c, fi = "filetime", found[_FILETIME] * 1e-7 - _FILETIME_TO_UNIX_S, 0.0
        else:
            return None, None if i == 0 else f"time tags missing from {f.name}; using folder clock"
        if kind is None:
            kind = k
        elif k != kind:
            return None, f"time tags of different kinds ({kind}, {k} in {f.name}); using folder clock"
        coarse[i], fine[i] = c, fi
    rel = (coarse - coarse[0]) + (fine - fine[0])
    d = np.diff(rel)
    if np.any(d < 0):
        bad = files[int(np.argmax(d < 0)) + 1].name
        return None, f"time tags go backwards at {bad}; using folder clock"
    # The folder clock has 1 s resolution: tags more than 2 s away from it are not to be trusted.
    if np.max(np.abs(rel - name_times)) > 2.0:
        return None, "time tags disagree with the folder clock by more than 2 s; using folder clock"
    return rel, None
