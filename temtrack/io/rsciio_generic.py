"""Velox EMD, MRC, HyperSpy ``.hspy``/``.zspy``: lazy readers built on rosettasciio.

TIA SER/EMI series are read by :mod:`temtrack.io.ser` (rosettasciio's TIA reader loads the whole
series at open and for every frame read); ``read_rsciio(format="ser")`` delegates to it.

rosettasciio (and mrcfile) parse the files; the code here exists for what they leave to the
caller and what a movie needs:

* finding the time axis among the axes a reader returns (by the ``navigate`` flag, then by name or
  unit) and putting it first, whatever the storage order (Velox stores TEM stacks as (y, x, t));
* real per-frame times: Velox's time axis scale is the exposure, not the interval, so the frame
  times come from each frame's metadata JSON (``CustomProperties["Detectors[<camera>].TimeStamp"]``,
  in microseconds); MRC has no time at all, a Direct Electron ``*_info.txt`` may give fps;
* MRC calibration straight from the header (rosettasciio reports 1 nm/px for a header with no cell
  size, which would look calibrated), with the frames memory-mapped directly;
* units normalised to nm or 1/nm (pm, Å, m ... ) and one-line errors naming the file.
"""
from __future__ import annotations

import functools
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np

from temtrack.errors import MovieReadError
from temtrack.io.movie import Movie, metadata_to_json, normalise_length_unit, time_unit_to_s
from temtrack.io.ser import _ser_times  # noqa: F401  (TIA moved to temtrack.io.ser; kept importable here)

FORMATS = ("emd", "ser", "mrc", "hspy", "zspy")
NO_CALIBRATION = "no spatial calibration: pixel size unknown (give --pixel-size)"
NO_TIMING = "no frame timing (give --frame-interval)"

_TIME_AXIS_NAMES = {"time", "t", "frame", "frames", "frame number", "image series", "z", "number",
                    "stack", "slice", "index"}
_TIME_ALIASES = {"sec": "s", "second": "s", "seconds": "s", "msec": "ms"}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unit_str(unit) -> str | None:
    """Axis units as a plain string; HyperSpy's ``<undefined>``/traits Undefined count as None."""
    if unit is None:
        return None
    u = str(unit).strip()
    if not u or u.lower() in ("<undefined>", "undefined", "none", "px", "pixel", "pixels"):
        return None
    return u


def _time_factor(unit) -> float | None:
    u = _unit_str(unit)
    if u is None:
        return None
    return time_unit_to_s(_TIME_ALIASES.get(u.lower(), u))




# -- axes ------------------------------------------------------------------------------------------
def _normalise_axes(path: Path, data, axes: list[dict]):
    """Put the frame axis first: returns (frames (n, rows, cols), time axis or None, y axis, x axis).

    ``axes`` are rosettasciio axis dicts; when they carry ``index_in_array`` that gives the array
    order, otherwise the list is in array order.
    """
    axes = [dict(a) for a in axes]
    if len(axes) != data.ndim:
        raise MovieReadError(path, f"{len(axes)} axes described for data of shape {tuple(data.shape)}")
    if all("index_in_array" in a for a in axes):
        axes.sort(key=lambda a: int(a["index_in_array"]))
    for i, a in enumerate(axes):
        a["_pos"] = i
    keep = [a for a in axes if int(data.shape[a["_pos"]]) != 1]
    if len(keep) < data.ndim:
        squeeze = tuple(a["_pos"] for a in axes if int(data.shape[a["_pos"]]) == 1)
        if len(keep) >= 2:
            data = data.squeeze(axis=squeeze)
            for i, a in enumerate(keep):
                a["_pos"] = i
            axes = keep
    if data.ndim == 2:
        y, x = axes
        return data[None], None, y, x
    if data.ndim != 3:
        raise MovieReadError(path, f"data of shape {tuple(data.shape)} has {data.ndim} dimensions: temtrack "
                                   f"reads stacks of 2D frames (a 4D-STEM or spectrum dataset is not a movie)")
    signal = [a for a in axes if a.get("navigate") is False]
    nav = [a for a in axes if a.get("navigate") is True]
    if len(signal) == 2 and len(nav) == 1:
        t = nav[0]
    else:
        named = [a for a in axes if str(a.get("name", "")).strip().lower() in _TIME_AXIS_NAMES
                 or _time_factor(a.get("units"))]
        t = named[0] if len(named) == 1 else axes[0]
        signal = [a for a in axes if a is not t]
        if len([a for a in axes if a.get("navigate") is False]) == 1:
            raise MovieReadError(path, "the data are 1D signals (spectra or profiles), not a stack of images")
    y, x = sorted(signal, key=lambda a: a["_pos"])
    order = (t["_pos"], y["_pos"], x["_pos"])
    if order != (0, 1, 2):
        data = data.transpose(order)
    return data, t, y, x


def _scale(axis: dict) -> float | None:
    """The step of a uniform axis; None for a non-uniform one (HyperSpy DataAxis with ``axis``)."""
    try:
        return float(axis["scale"]) if axis.get("scale") is not None else None
    except (TypeError, ValueError):
        return None


def _pixel_calibration(y: dict, x: dict, problems: list, meta: dict):
    px, pu = normalise_length_unit(_scale(x), _unit_str(x.get("units")))
    py, pyu = normalise_length_unit(_scale(y), _unit_str(y.get("units")))
    meta["pixel_size_x"], meta["pixel_size_y"] = px, py
    if px is None:
        problems.insert(0, NO_CALIBRATION)
        return None, None
    if py is not None and (pyu != pu or not math.isclose(px, py, rel_tol=1e-3)):
        problems.append(f"unequal pixel sizes in the file: x {px:.6g} {pu}/px, y {py:.6g} {pyu}/px; using x for both")
    return px, pu


def _axis_times(t: dict | None, n: int):
    """(times_s, source) from a calibrated time axis: uniform (``scale``) or, for HyperSpy's
    non-uniform axes, the stored ``axis`` values; (None, 'none') otherwise."""
    if t is None or n < 1:
        return None, "none"
    factor = _time_factor(t.get("units"))
    if factor is None:
        return None, "none"
    values = t.get("axis")
    if values is not None and t.get("scale") is None:
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.shape == (n,) and np.all(np.isfinite(values)) and np.all(np.diff(values) > 0):
            return (values - values[0]) * factor, "timestamps"
        return None, "none"
    scale = _scale(t)
    if scale is None or not (math.isfinite(scale) and scale > 0):
        return None, "none"
    return np.arange(n, dtype=np.float64) * scale * factor, "axis"


def _check_dtype(path: Path, data):
    dtype = np.dtype(data.dtype)
    if dtype.names:
        names = {n.upper() for n in dtype.names}
        if {"R", "G", "B"} <= names:
            from temtrack.io.lazy import LUMA_WEIGHTS

            f = {n.upper(): n for n in dtype.names}
            lum = sum(w * data[f[c]].astype(np.float32) for w, c in zip(LUMA_WEIGHTS, "RGB"))
            return lum, "RGB pixels converted to luminance 0.2125 R + 0.7154 G + 0.0721 B (float32)"
        raise MovieReadError(path, f"record pixels {dtype} are not an image type")
    if dtype.kind == "c":
        raise MovieReadError(path, f"complex pixels ({dtype}) are not supported; save the modulus or phase")
    if dtype.kind not in "uifb":
        raise MovieReadError(path, f"pixel type {dtype} is not an image type")
    return data, None


def _movie_from_signal(path: Path, fmt: str, sig: dict, problems: list, meta: dict, reopen, *,
                       times_s=None, time_source: str | None = None) -> Movie:
    data, t, y, x = _normalise_axes(path, sig["data"], sig["axes"])
    data, conversion = _check_dtype(path, data)
    if conversion:
        problems.append(conversion)
    if 0 in tuple(data.shape):
        raise MovieReadError(path, f"empty stack (shape {tuple(data.shape)})")
    n = int(data.shape[0])
    pixel_size, pixel_unit = _pixel_calibration(y, x, problems, meta)
    meta["axes"] = [metadata_to_json({k: v for k, v in a.items() if not k.startswith("_")}) for a in (t, y, x) if a]
    if times_s is None:
        times_s, time_source = _axis_times(t, n)
    if times_s is None:
        problems.append(NO_TIMING)
    return Movie(data, times_s, pixel_size, pixel_unit, path, fmt, meta, problems, time_source or "none",
                 reopen=reopen)


def _pick_image_signal(path: Path, signals: list[dict], problems: list) -> dict:
    def is_image(s):
        axes = s["axes"]
        if any("navigate" in a for a in axes):
            n_signal = sum(1 for a in axes if a.get("navigate") is False)
        else:
            n_signal = min(2, len(axes))
        return n_signal == 2

    images = [s for s in signals if is_image(s)]
    if not images:
        shapes = ", ".join(str(tuple(s["data"].shape)) for s in signals) or "none"
        raise MovieReadError(path, f"no image or image stack in the file (datasets of shape: {shapes})")
    if len(images) > 1:
        titles = [str(s.get("metadata", {}).get("General", {}).get("title", "?")) for s in images]
        problems.append(f"the file holds {len(images)} image datasets ({', '.join(titles)}); read the first")
    return images[0]


# -- Velox EMD -------------------------------------------------------------------------------------
_TIMESTAMP = re.compile(rb'"Detectors\[([^\]]*)\]\.TimeStamp"\s*:\s*\{[^{}]*?"value"\s*:\s*"?(-?\d+)')


def velox_frame_timestamps(path: str | os.PathLike, shape_yxt: tuple[int, int, int]):
    """Per-frame time stamps (s, from frame 0) of a Velox image stack, read from the metadata JSON.

    Parameters
    ----------
    path : path-like
        The ``.emd`` file.
    shape_yxt : (rows, cols, n_frames)
        Shape of the ``Data`` dataset to look for under ``/Data/Image``.

    Returns
    -------
    times_s : ndarray or None
        None when the file has no such stack or a frame lacks a time stamp.
    camera : str or None
    """
    import h5py

    with h5py.File(path, "r") as f:
        group = f.get("Data/Image")
        if group is None:
            return None, None
        for name in group:
            g = group[name]
            if "Data" not in g or "Metadata" not in g or tuple(g["Data"].shape) != tuple(shape_yxt):
                continue
            meta = g["Metadata"]
            n = shape_yxt[2]
            if meta.ndim != 2 or meta.shape[1] != n:
                continue
            stamps = np.empty(n, dtype=np.int64)
            camera = None
            block = 64  # columns per read: the JSON of one frame is tens of kB
            for start in range(0, n, block):
                cols = meta[:, start:start + block]
                for j in range(cols.shape[1]):
                    text = cols[:, j].tobytes()
                    m = _TIMESTAMP.search(text)
                    if m is None:
                        return None, None
                    camera = m.group(1).decode("utf-8", "replace")
                    stamps[start + j] = int(m.group(2))
            return (stamps - stamps[0]) * 1e-6, camera
    return None, None


def _read_emd(path: Path, reopen) -> Movie:
    from rsciio.emd import file_reader

    problems: list[str] = []
    try:
        signals = file_reader(str(path), lazy=True, select_type="images", sum_frames=False)
    except TypeError:
        signals = file_reader(str(path), lazy=True)
    sig = _pick_image_signal(path, signals, problems)
    meta = {"rsciio_metadata": metadata_to_json(sig.get("metadata", {}))}
    om = sig.get("original_metadata", {}) or {}
    for key in ("Instrument", "Acquisition", "Detectors", "BinaryResult", "Optics"):
        if key in om:
            meta[key] = metadata_to_json(om[key])
    data, t, y, x = _normalise_axes(path, sig["data"], sig["axes"])
    n = int(data.shape[0])
    times_s, source = None, None
    if n > 1:
        try:
            times_s, camera = velox_frame_timestamps(path, (int(data.shape[1]), int(data.shape[2]), n))
        except (OSError, ValueError) as exc:
            times_s, camera = None, None
            problems.append(f"per-frame time stamps unreadable ({_one_line(exc)})")
        if times_s is not None:
            source = "timestamps"
            meta["timestamp_camera"] = camera
            if t is not None:
                meta["time_axis_scale_s_is_exposure"] = metadata_to_json(t.get("scale"))
            if np.any(np.diff(times_s) <= 0):
                problems.append("time stamps not increasing")
        else:
            problems.append("no per-frame time stamps; frame times from the time axis (the exposure, "
                            "which can differ from the real interval)")
    movie = _movie_from_signal(path, "emd", sig, problems, meta, reopen, times_s=times_s, time_source=source)
    if movie.times_s is not None and source == "timestamps" and not movie.times_uniform:
        movie.problems.append("time stamps not uniform")
    return movie


# -- MRC -------------------------------------------------------------------------------------------
def _de_info_file(path: Path) -> Path | None:
    """The Direct Electron ``*_info.txt`` written beside a movie, if any."""
    stem = path.stem
    candidates = [path.with_name(stem + "_info.txt"), path.with_name(stem + ".info.txt")]
    if stem.endswith("_movie"):
        candidates.append(path.with_name(stem[: -len("_movie")] + "_info.txt"))
    m = re.match(r"^(\d{8}_\d+)_", path.name)
    if m:
        candidates.extend(sorted(path.parent.glob(m.group(1) + "_*info.txt")))
    return next((c for c in candidates if c.is_file()), None)


def _read_de_info(info: Path) -> dict:
    out = {}
    for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _read_mrc(path: Path, reopen) -> Movie:
    import mrcfile
    from mrcfile.utils import data_dtype_from_header

    problems: list[str] = []
    with mrcfile.open(path, mode="r", header_only=True, permissive=False) as mrc:
        header = mrc.header
        nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
        dtype = data_dtype_from_header(header)
        offset = int(header.nbytes) + int(header.nsymbt)
        voxel = mrc.voxel_size
        vx, vy = float(voxel.x), float(voxel.y)
        exttype = bytes(header.exttyp).decode("latin-1", "replace").strip("\x00 ")
        meta = {"mrc_header": {"nx": nx, "ny": ny, "nz": nz, "mode": int(header.mode), "exttyp": exttype,
                               "voxel_size_A": [vx, vy, float(voxel.z)]}}
    if dtype.kind == "c":
        raise MovieReadError(path, f"complex pixels ({dtype}) are not supported")
    if dtype.names:
        raise MovieReadError(path, f"record pixels ({dtype}, e.g. RGB MRC) are not supported")
    if min(nx, ny, nz) <= 0:
        raise MovieReadError(path, f"empty stack (nx={nx}, ny={ny}, nz={nz})")
    need = offset + nx * ny * nz * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        raise MovieReadError(path, f"truncated: {nz} frames of {ny}x{nx} {dtype} need {need} bytes, "
                                   f"the file has {size}")
    frames = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(nz, ny, nx))
    pixel_size = pixel_unit = None
    if vx > 0:
        pixel_size, pixel_unit = normalise_length_unit(vx, "A")
        if vy > 0 and not math.isclose(vx, vy, rel_tol=1e-3):
            problems.append(f"unequal pixel sizes in the file: x {vx / 10:.6g} nm/px, y {vy / 10:.6g} nm/px; using x")
    times_s, time_source = None, "none"
    info = _de_info_file(path)
    if info is not None:
        de = _read_de_info(info)
        meta["de_info_file"] = info.name
        meta["de_info"] = de
        try:
            fps = float(de.get("Frames Per Second", "nan"))
            summed = float(de.get("Autosave Movie Sum Count", "1") or 1)
        except ValueError:
            fps, summed = float("nan"), 1.0
        if math.isfinite(fps) and fps > 0 and nz > 0:
            times_s, time_source = np.arange(nz) * (max(summed, 1.0) / fps), "axis"
        if pixel_size is None:
            for key, unit in (("Specimen Pixel Size X (nanometers)", "nm"), ("Diffraction Pixel Size X", "1/nm")):
                try:
                    pixel_size, pixel_unit = normalise_length_unit(float(de.get(key, "nan")), unit)
                except ValueError:
                    continue
                if pixel_size is not None:
                    break
    if pixel_size is None:
        problems.insert(0, NO_CALIBRATION)
    if times_s is None:
        problems.append(NO_TIMING)
    return Movie(frames, times_s, pixel_size, pixel_unit, path, "mrc", meta, problems, time_source, reopen=reopen)


# -- HyperSpy --------------------------------------------------------------------------------------
def _read_hyperspy(path: Path, fmt: str, reopen) -> Movie:
    if fmt == "zspy":
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise MovieReadError(path, "reading .zspy needs the 'zarr' package (pip install 'zarr<3')") from None
        from rsciio.zspy import file_reader
    else:
        from rsciio.hspy import file_reader

        _check_hspy_not_empty(path)
    problems: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # zarr 2 deprecation notes inside rosettasciio
        # rosettasciio opens a lazy .zspy read-write unless told otherwise; inputs stay read-only
        signals = file_reader(str(path), lazy=True, mode="r")
    sig = _pick_image_signal(path, signals, problems)
    meta = {"rsciio_metadata": metadata_to_json(sig.get("metadata", {})),
            "original_metadata": metadata_to_json(sig.get("original_metadata", {}))}
    return _movie_from_signal(path, fmt, sig, problems, meta, reopen)


def _check_hspy_not_empty(path: Path) -> None:
    """rosettasciio fails on a zero-length dataset with a dask chunking error; say what it is."""
    import h5py

    with h5py.File(path, "r") as f:
        experiments = f.get("Experiments")
        if experiments is None:
            raise MovieReadError(path, "not a HyperSpy file (no 'Experiments' group)")
        for name in experiments:
            data = experiments[name].get("data")
            if data is not None and 0 in data.shape:
                raise MovieReadError(path, f"empty stack (dataset {name!r} has shape {tuple(data.shape)})")


# -- entry point -----------------------------------------------------------------------------------
def read_rsciio(path: str | os.PathLike, *, format: str, hdf5_probe: bool = True,
                _trusted_signature: tuple | None = None) -> Movie:
    """Read a Velox EMD, TIA SER/EMI, MRC, ``.hspy`` or ``.zspy`` movie lazily.

    Parameters
    ----------
    path : path-like
        The file (for TIA, the ``.ser`` or the ``.emi``, read by :func:`temtrack.io.ser.read_ser`;
        a ``.zspy`` is a folder).
    format : {'emd', 'ser', 'mrc', 'hspy', 'zspy'}
    hdf5_probe : bool
        Open an HDF5 file (EMD, ``.hspy``) in a child process first, so that a damaged file that
        crashes or hangs the HDF5 library gives a MovieReadError instead of killing or freezing
        this process (:mod:`temtrack.io.hdf5_probe`; costs a Python start, about 0.2-0.5 s). False
        for trusted files; ``TEMTRACK_HDF5_PROBE=0`` turns it off everywhere.

    Returns
    -------
    Movie
        Frames first, (rows, cols) last, whatever the storage order. ``time_source`` is
        ``'timestamps'`` for Velox per-frame time stamps and TIA per-frame times, ``'axis'`` for a
        calibrated time axis (or a DE ``_info.txt`` frame rate), else ``'none'``.

    Raises
    ------
    MovieReadError
        Anything wrong with the file: unreadable, truncated, not a stack of 2D frames (4D-STEM,
        spectra), complex pixels, no image dataset.
    """
    from temtrack.errors import ParameterError

    if format not in FORMATS:
        raise ParameterError(f"format must be one of {FORMATS}, got {format!r}")
    path = Path(path)
    if not path.exists():
        raise MovieReadError(path, "file not found")
    signature = None
    if hdf5_probe and format in ("emd", "hspy"):
        from temtrack.io.hdf5_probe import check_hdf5

        signature = check_hdf5(path, trusted_signature=_trusted_signature)
    # A movie pickled to a worker process reopens without a second probe while the file is unchanged.
    reopen = functools.partial(read_rsciio, path, format=format, hdf5_probe=hdf5_probe,
                               _trusted_signature=signature)
    try:
        if format == "emd":
            return _read_emd(path, reopen)
        if format == "ser":
            from temtrack.io.ser import read_ser

            return read_ser(path)
        if format == "mrc":
            return _read_mrc(path, reopen)
        return _read_hyperspy(path, format, reopen)
    except MovieReadError:
        raise
    except Exception as exc:  # h5py, zarr, struct and rosettasciio errors on bad files
        names = {"emd": "Velox/NCEM EMD", "ser": "TIA SER/EMI", "mrc": "MRC", "hspy": "HyperSpy .hspy",
                 "zspy": "HyperSpy .zspy"}
        raise MovieReadError(path, f"not a readable {names[format]} file "
                                   f"({type(exc).__name__}: {_one_line(exc)})") from exc
