"""Atomic writing of results: a run leaves either the previous state or complete results.

Every file is written to a temporary name in the same folder and renamed into place
(``os.replace`` is atomic on POSIX and Windows). A whole output folder is staged as
``<out>.partial-<pid>`` and renamed to ``<out>`` when every file is in it, so an interrupted
``temtrack analyze`` never leaves a folder that looks finished.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from temtrack.errors import TemtrackError


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def to_jsonable(obj):
    """Replace NaN/Inf by None (JSON has neither) and numpy types by Python ones."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_mode(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Give a file made by ``mkstemp``/``mkdtemp`` (0600/0700) the permissions of an ordinary one."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    publish_mode(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON (NaN -> null) atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, default=_json_default, allow_nan=False)
    return write_bytes_atomic(path, (text + "\n").encode("utf-8"))


def write_csv_atomic(path: str | os.PathLike, columns: Mapping[str, Sequence]) -> Path:
    """Write equal-length columns as a CSV table with a header row; NaN is written empty."""
    names = list(columns)
    arrays = [list(columns[n]) for n in names]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"CSV columns of different lengths: {dict(zip(names, map(len, arrays)))}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for row in zip(*arrays):
        w.writerow(["" if (isinstance(v, float) and not math.isfinite(v)) else
                    (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for v in row])
    return write_bytes_atomic(path, buf.getvalue().encode("utf-8"))


#: Formats written beside every PNG figure (see :func:`figure_formats`).
FIGURE_VECTOR_FORMATS = ("svg", "pdf", "eps")
_vector_formats = ["svg"]


@contextlib.contextmanager
def figure_formats(vector_formats: Sequence[str] | None):
    """Within the block, :func:`save_figure_atomic` writes ``vector_formats`` beside each PNG.

    ``None`` leaves the current choice (SVG by default); ``()`` writes PNG only. The choice is
    process-wide (results are written by one thread at a time), so a front end can set it around
    a pipeline's ``write_*_results`` call.
    """
    if vector_formats is None:
        yield
        return
    formats = [str(f).lower().lstrip(".") for f in vector_formats]
    bad = [f for f in formats if f not in FIGURE_VECTOR_FORMATS]
    if bad:
        raise TemtrackError(f"figure formats {bad} not supported (choose among {list(FIGURE_VECTOR_FORMATS)})")
    previous = list(_vector_formats)
    _vector_formats[:] = formats
    try:
        yield
    finally:
        _vector_formats[:] = previous


def save_figure_atomic(fig, path: str | os.PathLike, *, vector_formats: Sequence[str] | None = None,
                       **kwargs) -> Path:
    """Save a matplotlib figure atomically (format from the suffix).

    A raster figure (``.png``) is also written in each of ``vector_formats`` beside it (same stem),
    because papers want vector figures and reports want PNG; default SVG, or what
    :func:`figure_formats` chose (e.g. SVG and PDF); pass ``vector_formats=()`` to skip.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **kwargs)
    out = write_bytes_atomic(path, buf.getvalue())
    if fmt == "png":
        for vec in (_vector_formats if vector_formats is None else vector_formats):
            vbuf = io.BytesIO()
            # Fixed metadata dates keep vector files byte-identical between runs of the same data.
            meta = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(vec)
            import matplotlib
            with matplotlib.rc_context({"svg.hashsalt": "temtrack"}):  # element ids stable too
                fig.savefig(vbuf, format=vec, **({"metadata": meta} if meta else {}),
                            **{k: v for k, v in kwargs.items() if k != "dpi"})
            write_bytes_atomic(path.with_suffix("." + vec), vbuf.getvalue())
    return out


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return write_bytes_atomic(path, buf.getvalue())


class OutputFolder:
    """Stage a results folder and publish it with one rename.

    Use as a context manager::

        with OutputFolder(out, overwrite=False) as staging:
            write_json_atomic(staging / "results.json", ...)
        # here ``out`` holds the complete results

    On an exception (including KeyboardInterrupt) the staging folder is removed and ``out`` is
    left as it was.

    Parameters
    ----------
    path : path-like
        The final folder.
    overwrite : bool
        Replace an existing non-empty ``path``; without it that is an error.
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        if self.path.exists() and not self.path.is_dir():
            raise TemtrackError(f"{self.path}: output path exists and is not a folder")
        if self.path.is_dir() and any(self.path.iterdir()) and not overwrite:
            raise TemtrackError(f"{self.path}: output folder exists and is not empty (use --overwrite)")
        self.staging: Path | None = None

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The name is known before the folder exists, so an interrupt at any point can clean it up.
        self.staging = self.path.parent / f".{self.path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.staging.mkdir(mode=0o777)
        except BaseException:
            shutil.rmtree(self.staging, ignore_errors=True)
            raise
        return self.staging

    def __exit__(self, exc_type, exc, tb):
        assert self.staging is not None
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return False
        self.publish()
        return False

    def publish(self):
        old = None
        # Ctrl-C or SIGTERM between the two renames would leave no results folder at all.
        with _signals_deferred():
            if self.path.exists():
                old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
                os.replace(self.path, old)
            try:
                os.replace(self.staging, self.path)
            except BaseException:
                if old is not None:
                    os.replace(old, self.path)
                shutil.rmtree(self.staging, ignore_errors=True)
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM for the few system calls inside (delivered right after)."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def iter_rows(table: Mapping[str, Iterable]):
    """Rows of a column table as dicts (for tests and summaries)."""
    names = list(table)
    for row in zip(*(table[n] for n in names)):
        yield dict(zip(names, row))
