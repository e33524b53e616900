"""Which reader a file or folder needs, decided by its content.

Extensions lie (``.hspy`` and Velox ``.emd`` are both HDF5; a ``.tif`` can be a renamed DM file;
GMS In-Situ recordings and image sequences are folders), and no library does this dispatch for our
set of readers, so the first bytes (and for HDF5 the top-level groups and attributes) are checked
here; the extension decides only when the content is ambiguous.

Format names: ``'dm'``, ``'gms-insitu'``, ``'frms6'``, ``'tiff'``, ``'emd'``, ``'ser'``, ``'mrc'``,
``'hspy'``, ``'zspy'``, ``'npy'``, ``'video'``, ``'image-folder'``.
"""
from __future__ import annotations

import os
import re
import struct
from pathlib import Path

from temtrack.errors import MovieReadError

FORMATS = ("dm", "gms-insitu", "frms6", "tiff", "emd", "ser", "mrc", "hspy", "zspy", "npy",
           "video", "image-folder")

_EXTENSIONS = {
    ".dm3": "dm", ".dm4": "dm", ".frms6": "frms6", ".hdr": "frms6", ".tif": "tiff", ".tiff": "tiff",
    ".emd": "emd", ".ser": "ser", ".emi": "ser", ".mrc": "mrc", ".mrcs": "mrc", ".hspy": "hspy",
    ".hdf5": "hspy", ".zspy": "zspy", ".npy": "npy", ".avi": "video", ".mp4": "video",
    ".mov": "video", ".mkv": "video", ".m4v": "video",
}
_FRAME_EXTS = {".tif", ".tiff", ".png"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_KNOWN_MAGIC = [  # for the error message only: what an unreadable file looks like
    (b"\x89PNG", "a single PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"PK\x03\x04", "a ZIP archive"), (b"\x1f\x8b", "a gzip archive"), (b"%PDF", "a PDF document"),
    (b"BM", "a BMP image"), (b"GIF8", "a GIF image"), (b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
]


def detect_format(path: str | os.PathLike) -> str:
    """The reader name for ``path``, from its content (extension only when content is ambiguous).

    Parameters
    ----------
    path : path-like
        A file, or a folder (GMS In-Situ recording, zarr ``.zspy`` store, numbered TIFF/PNG frames).

    Returns
    -------
    str
        One of :data:`FORMATS`.

    Raises
    ------
    MovieReadError
        Missing path, empty file, or content that matches no supported format (the message says
        what the file looked like).
    """
    path = Path(path)
    if not path.exists():
        raise MovieReadError(path, "no such file or folder")
    if path.is_dir():
        return _detect_folder(path)
    size = path.stat().st_size
    if size == 0:
        raise MovieReadError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError as exc:
        raise MovieReadError(path, f"cannot open file ({exc.strerror or exc})") from None
    ext = path.suffix.lower()

    fmt = _detect_bytes(head, size)
    if fmt == "hdf5":
        return _detect_hdf5(path, ext)
    if fmt is not None:
        return fmt
    # Content ambiguous: trust a known extension (e.g. an MRC without its MAP word).
    if ext in _EXTENSIONS and ext not in (".hdr",):
        return _EXTENSIONS[ext]
    raise MovieReadError(path, f"unknown movie format: {_describe(head, ext)}")


def _detect_bytes(head: bytes, size: int) -> str | None:
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if len(head) >= 4 and head[:2] == b"II" and struct.unpack("<H", head[2:4])[0] == 0x0197:
        return "ser"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "video"
    if head[4:8] == b"ftyp" or head[:4] == b"\x1aE\xdf\xa3":
        return "video"
    if _is_frms6_header(head):
        return "frms6"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[") and b"[measurementinfo]" in head.lower():
        return "frms6"  # the INI sidecar of a pnCCD recording
    if _is_dm_header(head, size):
        return "dm"
    if len(head) >= 212 and head[208:212] == b"MAP ":
        return "mrc"
    return None


def _is_frms6_header(head: bytes) -> bool:
    return (len(head) >= 1024 and struct.unpack("<H", head[:2])[0] == 1024
            and struct.unpack("<H", head[2:4])[0] == 64 and head[7] == 6)


def _is_dm_header(head: bytes, size: int) -> bool:
    if len(head) < 24:
        return False
    version = struct.unpack(">L", head[:4])[0]
    if version == 4:
        stated = struct.unpack(">Q", head[4:12])[0]
        order = struct.unpack(">L", head[12:16])[0]
        flags = head[16:18]
    elif version == 3:
        stated = struct.unpack(">L", head[4:8])[0]
        order = struct.unpack(">L", head[8:12])[0]
        flags = head[12:14]
    else:
        return False
    # Byte-order flag 0/1, root group sorted/open flags 0/1, and a plausible stated size (a cut
    # file states more than it has: still DM, so the DM reader can say it is truncated).
    return order in (0, 1) and all(b in (0, 1) for b in flags) and 0 < stated < 2**48


def _detect_hdf5(path: Path, ext: str) -> str:
    if ext == ".dm5":
        # GMS 3.6+ writes DM5 as HDF5; rosettasciio cannot read it, and it is neither EMD nor hspy
        raise MovieReadError(path, "DM5 files (GMS 3.6 and later, HDF5-based) cannot be read yet: "
                                   "save the data as DM4 in DigitalMicrograph")
    try:
        import h5py
    except ImportError:
        return _EXTENSIONS.get(ext, "emd") if ext in (".emd", ".hspy", ".hdf5") else "emd"
    from temtrack.io.hdf5_probe import check_hdf5

    check_hdf5(path)  # a damaged file can crash or hang the HDF5 library: try it in a child first
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: f.attrs[k] for k in f.attrs}
            keys = set(f.keys())
    except Exception as exc:
        raise MovieReadError(path, f"HDF5 file that cannot be opened ({exc})") from None
    file_format = attrs.get("file_format", b"")
    if isinstance(file_format, bytes):
        file_format = file_format.decode("latin-1", "replace")
    if str(file_format).lower() == "hyperspy" or "Experiments" in keys:
        return "hspy"
    # Velox EMD: Data / Operations / Presentation / Version; Berkeley EMD: version_major attr.
    if {"Data", "Version"} & keys or "version_major" in attrs or "Data" in keys:
        return "emd"
    if ext in (".emd", ".hspy", ".hdf5"):
        return _EXTENSIONS[ext]
    raise MovieReadError(path, f"unknown movie format: an HDF5 file with top-level groups "
                               f"{sorted(keys)[:8]} (neither Velox EMD nor HyperSpy)")


def _detect_folder(path: Path) -> str:
    from temtrack.io.gms_insitu import find_recording_root

    if find_recording_root(path) is not None:
        return "gms-insitu"
    names = {p.name for p in path.iterdir()}
    if path.suffix.lower() == ".zspy" or ".zgroup" in names or "zarr.json" in names:
        return "zspy"
    frames = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _FRAME_EXTS
              and re.search(r"\d", p.stem)]
    if frames:
        return "image-folder"
    dm_files = [n for n in names if n.lower().endswith((".dm4", ".dm3"))]
    what = (f"{len(dm_files)} DM files outside a GMS Hour_*/Minute_*/Second_* tree" if dm_files
            else f"{len(names)} entries, no numbered .tif/.png frames, no Hour_* folders")
    raise MovieReadError(path, f"unknown movie format: a folder with {what}")


def _describe(head: bytes, ext: str) -> str:
    for magic, what in _KNOWN_MAGIC:
        if head.startswith(magic):
            return f"looks like {what}"
    sample = head[:64]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    if sample and printable == len(sample):
        text = sample.decode("ascii", "replace").splitlines()[0][:40] if sample.strip() else ""
        return f"looks like a text file (starts {text!r})"
    ext_note = f" with extension {ext!r}" if ext else ""
    return f"a binary file{ext_note} starting with bytes {head[:8].hex(' ')}"
