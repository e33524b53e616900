"""Open an HDF5 file (Velox EMD, HyperSpy ``.hspy``) in a short-lived child process first.

A damaged HDF5 file can hang the HDF5 C library in an endless loop (the GIL held, no Python signal
delivered) or crash it with a segmentation fault while it reads object headers, attributes or a
chunk B-tree (the reader fuzz campaign found both on the real ``emd_example_image.emd`` with a few
bytes changed; see ``docs/reliability.md``). No Python code can recover from either in-process, and
one such file would end a night-long batch. So, before temtrack touches an HDF5 file with h5py in
its own process, a child process (the same Python, h5py and numpy only) walks the whole file:

* opens it, visits every group and dataset and reads every attribute (where the crashes and hangs
  were found);
* for each dataset checks that its stored bytes lie inside the file (contiguous offset + size;
  every allocated chunk's address from the chunk index, which walks the whole B-tree), and that
  uncompressed data do not declare more bytes than the file has (a bit flip in a dimension);
* reads every small dataset (< 1 MiB: the metadata rosettasciio parses) and the first and last
  allocated chunk of every chunked one (through the filters, as reading frames will).

Only when the child answers is the file opened in-process. A child killed by a signal, one that
does not answer within the timeout, or a structural inconsistency becomes a
:class:`~temtrack.errors.MovieReadError` naming the file. Python-level errors inside the child are
not judged here: the in-process reader meets them again and reports them with its own message.

The timeout counts from the moment the child has imported h5py, so a machine too busy to start
Python quickly does not make a healthy file look hung (a child that cannot start at all, e.g. in a
frozen application, leaves the file to be read in-process, unprotected, as before).

Cost: one Python start + ``import numpy, h5py`` (0.3-0.45 s of CPU time on the project's test
machine; see ``docs/reliability.md``), once per file and process: a file that passed is remembered by path, size, mtime and inode, and
the ``reopen`` of a movie carries that signature so worker processes do not probe again.

Environment
-----------
``TEMTRACK_HDF5_PROBE=0``
    Skip the probe (trusted files, e.g. re-reading one's own recordings in a tight loop).
``TEMTRACK_HDF5_PROBE_TIMEOUT_S``
    Seconds the child may take once started (default 20; raise it for files on a very slow
    network disk).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from temtrack.errors import MovieReadError

DEFAULT_TIMEOUT_S = 20.0
#: address-space cap of the child: a damaged size field must not make it eat the machine
CHILD_MEMORY_BYTES = 4 * 2**30

_lock = threading.Lock()
_passed: dict[str, tuple] = {}

# Runs as ``python -c _PROBE path memory_bytes``; prints "started", then one JSON line.
_PROBE = r"""
import json, os, sys
path, cap = sys.argv[1], int(sys.argv[2])
try:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if cap > 0 and (soft == resource.RLIM_INFINITY or soft > cap):
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
except (ImportError, ValueError, OSError):
    pass
import numpy as np
import h5py
print("started", flush=True)
size = os.path.getsize(path)
errors = []
SMALL = 1 << 20
BIG_CHUNK = 256 << 20

class Damaged(Exception):
    pass

def err(where, exc):
    if isinstance(exc, (Damaged, MemoryError)):
        raise exc
    if len(errors) < 20:
        errors.append(f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

def check_dataset(name, ds):
    dsid = ds.id
    shape = ds.shape
    if shape is None:
        return
    dtype = ds.dtype
    n = 1
    for s in shape:
        n *= int(s)
    plist = dsid.get_create_plist()
    layout = plist.get_layout()
    nfilters = plist.get_nfilters()
    external = plist.get_external_count() > 0
    declared = n * dtype.itemsize
    plain = dtype.kind not in "OV" or (dtype.kind == "V" and dtype.names is not None
                                       and all(dtype[k].kind not in "O" for k in dtype.names))
    if (not external and nfilters == 0 and layout in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED)
            and plain and declared > size):
        raise Damaged(f"dataset {name!r} declares {tuple(shape)} {dtype} = {declared} bytes of "
                      f"uncompressed data, the file has {size}")
    if layout == h5py.h5d.CONTIGUOUS and not external:
        offset = dsid.get_offset()
        stored = dsid.get_storage_size()
        if offset is not None and offset + stored > size:
            raise Damaged(f"dataset {name!r} is stored at bytes {offset}-{offset + stored}, "
                          f"past the end of the file ({size})")
    chunks = []
    if layout == h5py.h5d.CHUNKED:
        def visit(info):
            if info.byte_offset is not None and info.byte_offset + info.size > size:
                raise Damaged(f"a chunk of dataset {name!r} is stored at bytes {info.byte_offset}-"
                              f"{info.byte_offset + info.size}, past the end of the file ({size})")
            if len(chunks) < 1:
                chunks.append(info.chunk_offset)
            else:
                chunks[1:] = [info.chunk_offset]
        try:
            if hasattr(dsid, "chunk_iter"):
                dsid.chunk_iter(visit)
            else:
                k = dsid.get_num_chunks()
                for i in sorted({0, k - 1}) if k else ():
                    visit(dsid.get_chunk_info(i))
        except Exception as exc:
            err(f"chunk index of {name}", exc)
    if n == 0:
        return
    try:
        if declared <= SMALL:
            ds[()]
        elif chunks and ds.chunks is not None:
            per_chunk = dtype.itemsize
            for c in ds.chunks:
                per_chunk *= int(c)
            if per_chunk <= BIG_CHUNK:
                for start in chunks:
                    ds[tuple(slice(o, min(o + c, s)) for o, c, s in zip(start, ds.chunks, shape))]
    except Exception as exc:
        err(f"data of {name}", exc)

def visit(name, obj):
    try:
        for key in obj.attrs:
            obj.attrs[key]
    except Exception as exc:
        err(f"attributes of {name}", exc)
    if isinstance(obj, h5py.Dataset):
        try:
            check_dataset(name, obj)
        except Exception as exc:
            err(f"dataset {name}", exc)

result = {"damaged": None, "errors": errors}
try:
    with h5py.File(path, "r") as f:
        visit("/", f)
        try:
            f.visititems(visit)
        except Exception as exc:
            err("structure", exc)
except Damaged as exc:
    result["damaged"] = str(exc)
except MemoryError:
    result["damaged"] = f"reading its structure needs more than {cap >> 30} GiB of memory"
except Exception as exc:
    errors.append(f"open: {type(exc).__name__}: {exc}")
print(json.dumps(result), flush=True)
"""


def probe_enabled() -> bool:
    """False when ``TEMTRACK_HDF5_PROBE`` is set to 0/no/off/false."""
    return os.environ.get("TEMTRACK_HDF5_PROBE", "1").strip().lower() not in ("0", "no", "off", "false")


def probe_timeout_s() -> float:
    try:
        t = float(os.environ.get("TEMTRACK_HDF5_PROBE_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return t if t > 0 else DEFAULT_TIMEOUT_S


def file_signature(path: str | os.PathLike) -> tuple | None:
    """(size, mtime_ns, inode) of a file, or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def check_hdf5(path: str | os.PathLike, *, timeout_s: float | None = None,
               trusted_signature: tuple | None = None) -> tuple | None:
    """Probe an HDF5 file in a child process; raise if reading it crashes or hangs the library.

    Parameters
    ----------
    path : path-like
        The HDF5 file.
    timeout_s : float, optional
        Seconds the child may take (default ``TEMTRACK_HDF5_PROBE_TIMEOUT_S`` or 20).
    trusted_signature : tuple, optional
        A :func:`file_signature` that already passed (e.g. in the process that pickled a movie):
        when the file still has it, no child is started.

    Returns
    -------
    tuple or None
        The file's signature (pass it back as ``trusted_signature``), None when not probed
        (disabled, or the child could not start at all, e.g. in a frozen application).

    Raises
    ------
    MovieReadError
        The child was killed by a signal (the HDF5 library crashed), did not answer in time (it
        hung), or found data stored outside the file.
    """
    path = Path(path)
    sig = file_signature(path)
    if not probe_enabled() or sig is None:
        return None
    key = os.path.realpath(path)
    with _lock:
        if _passed.get(key) == sig:
            return sig
    if trusted_signature is not None and tuple(trusted_signature) == sig:
        with _lock:
            _passed[key] = sig
        return sig
    timeout_s = probe_timeout_s() if timeout_s is None else float(timeout_s)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        returncode, lines = _run_child(path, timeout_s, env)
    except OSError:
        return None  # no usable interpreter to run the child: read in-process, unprotected
    except subprocess.TimeoutExpired:
        raise MovieReadError(path, f"damaged HDF5 file (the HDF5 library hung while reading it: no "
                                   f"answer within {timeout_s:g} s; on a very slow disk raise "
                                   f"TEMTRACK_HDF5_PROBE_TIMEOUT_S)") from None
    if not lines or lines[0] != "started":
        # the child died or was too slow before it even had h5py imported: nothing learnt about
        # the file, which is then read in-process as before the probe existed
        return None
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        raise MovieReadError(path, f"damaged HDF5 file (the HDF5 library crashed with {name} while "
                                   f"reading it)")
    try:
        result = json.loads(lines[-1])
    except (ValueError, IndexError):
        result = None
    if not isinstance(result, dict):
        # started, then died without a signal and without an answer: e.g. the memory cap hit
        # inside the C library (it aborts rather than raising)
        raise MovieReadError(path, f"damaged HDF5 file (the HDF5 library failed while reading it, "
                                   f"exit code {returncode})")
    if result.get("damaged"):
        raise MovieReadError(path, f"damaged HDF5 file ({result['damaged']})")
    with _lock:
        _passed[key] = sig
    return sig


def _run_child(path: Path, timeout_s: float, env: dict) -> tuple[int, list[str]]:
    """Run the probe; the timeout counts from the child's "started" (h5py imported), so a machine
    busy enough to take seconds to start Python does not make a healthy file look hung.

    Returns (return code, output lines); raises ``subprocess.TimeoutExpired`` for a hang. The child
    is killed whatever happens here (an interrupt included).
    """
    cmd = [sys.executable, "-c", _PROBE, str(path), str(CHILD_MEMORY_BYTES)]
    startup_s = max(60.0, 3 * timeout_s)
    if os.name == "nt":  # no select() on pipes: one deadline for start and probe
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, timeout=startup_s + timeout_s, env=env)
        return proc.returncode, proc.stdout.splitlines()
    import select

    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        fd = proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + startup_s
        started = False
        while True:
            if not started and b"\n" in buf:
                started = True
                if buf.split(b"\n", 1)[0] != b"started":
                    break
                deadline = time.monotonic() + timeout_s
            left = deadline - time.monotonic()
            if left <= 0:
                if started:
                    raise subprocess.TimeoutExpired(cmd, timeout_s)
                proc.kill()  # Python did not even start in time: not the file's fault
                proc.wait()
                return 0, []
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
    return returncode, buf.decode("utf-8", "replace").splitlines()
