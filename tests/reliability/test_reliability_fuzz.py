"""Fuzzing every reader: mutated, truncated and random files made from valid ones.

The cases come from ``scripts/fuzz_readers.py`` (the long campaign uses the same generator): each
case is a seeded mutation of a valid recording, run in a worker subprocess with an address-space
cap and a per-case timeout, so a hang, a segfault or a memory blow-up is caught and counted rather
than taking pytest down. The contract is in :func:`fuzz_readers.check_file`.

Every reader bug the campaign found is pinned by a minimal reproducer below (a file built here, or a
campaign case replayed). A bug still open is marked ``xfail(strict=True)``, so it turns into a
failure the day the reader is fixed, and the broad per-reader test tolerates its signature; a fixed
bug (in ``FIXED``) is an ordinary test and its signature is no longer tolerated anywhere.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CASES_PER_READER = 24


def _load_fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_readers", REPO / "scripts" / "fuzz_readers.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fuzz_readers", mod)
    spec.loader.exec_module(mod)
    return mod


fz = _load_fuzzer()

# (reader, outcome, regex on the detail) of every bug reported, each pinned by a reproducer below;
# only those not in FIXED are tolerated by test_reader_survives_fuzzing.
KNOWN_BUGS = {
    # tiff.py reads frames without turning tifffile's errors into MovieReadError: DeflateError,
    # TiffFileError, ValueError (frames of shape (0,)), TypeError all seen
    "tiff-frame-decode": ("tiff", "raw-exception-frame", r""),
    "frms6-hdr-multiline": ("frms6", "multi-line-message", r"unreadable \.hdr file"),
    "frms6-hdr-interpolation": ("frms6", "raw-exception", r"Interpolation\w*Error"),
    "npy-header-tokenerror": ("npy", "raw-exception", r"TokenError|SyntaxError"),
    "dm-negative-dimension": ("dm3|dm4", "raw-exception", r"OverflowError"),
    "tiff-huge-allocation": ("tiff", "memory", r"Unable to allocate"),
    "tiff-hang": ("tiff", "hang", r""),
    "ser-empty-frame": ("ser", "raw-exception-frame", r"IndexError"),
    "emd-hdf5-hang": ("emd", "hang", r""),
    "emd-hdf5-segfault": ("emd", "crash", r""),
    "emd-frame-read": ("emd", "raw-exception-frame", r"OSError"),
    "dm-tag-hang": ("dm3|dm4", "hang", r""),
}


def _known(failure: dict) -> str | None:
    for name, (readers, outcome, pattern) in KNOWN_BUGS.items():
        if (re.fullmatch(readers, failure["reader"]) and failure["outcome"] == outcome
                and re.search(pattern, failure["detail"])):
            return name
    return None


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-seeds")
    return fz.run_campaign(fz.READERS, CASES_PER_READER, seed=0, workers=2, timeout_s=20,
                           memory_mb=fz.DEFAULT_MEMORY_MB, seeds_root=str(root))


@pytest.mark.parametrize("reader", fz.READERS)
def test_reader_survives_fuzzing(campaign, reader):
    counts = campaign["counts"].get(reader)
    if counts is None:
        pytest.skip(f"no seed file for {reader} (real files in ../shared/real_data absent)")
    n = sum(counts.values())
    print(f"{reader}: {n} cases {counts}")
    assert n == CASES_PER_READER
    # a fuzzer that only ever produces rejected files tests nothing beyond the header check
    assert counts.get("loaded", 0) + counts.get("loaded-frame-error", 0) > 0, counts
    assert counts.get("rejected", 0) > 0, counts
    failures = [f for f in campaign["failures"] if f["reader"] == reader]
    new = [f for f in failures if _known(f) is None or _known(f) in FIXED]
    for f in failures:
        label = _known(f) or "NEW"
        label += " (fixed: a regression)" if label in FIXED else ""
        print(f"  {f['outcome']} [{label}] case {f['index']}: {f['what']} -> {f['detail'][:160]}")
    assert not new, f"{len(new)} new contract violations or regressions, first: {new[0]}"


def test_fuzzer_is_deterministic(tmp_path):
    seeds = fz.make_seeds(tmp_path / "s", ["npy"])
    a = fz.build_case(seeds["npy"], "npy", 7, tmp_path / "a", seed=3)
    b = fz.build_case(seeds["npy"], "npy", 7, tmp_path / "b", seed=3)
    assert a[2] == b[2]
    rel = a[0].relative_to(tmp_path / "a")
    target = rel.parent / a[2].split(": ")[0].split("/", 1)[1]
    if (tmp_path / "a" / target).exists():
        assert (tmp_path / "a" / target).read_bytes() == (tmp_path / "b" / target).read_bytes()


def test_worker_death_is_detected():
    """The campaign machinery itself: a worker that dies is counted as a crash and replaced."""
    w = fz._Worker.__new__(fz._Worker)
    import subprocess
    w.proc = subprocess.Popen([sys.executable, "-c", "import sys; print('ready', flush=True); "
                               "sys.stdin.readline(); import os; os.abort()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                              start_new_session=True)
    w.timeout_s = 1
    assert w._readline(30) == "ready"
    assert w.run("npy", 0) is None          # died: the caller records a crash
    w.kill()
    assert w.proc.returncode != 0


# -- minimal reproducers of the bugs found (reader fixes belong to the io owner) -----------------
def _contract(path: Path, names=()):
    outcome, detail = fz.check_file(path, names)
    assert outcome in fz.GOOD, f"{outcome}: {detail}"


def test_tiff_corrupt_compressed_strip(tmp_path):
    import tifffile
    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, np.arange(3 * 16 * 16, dtype=np.uint8).reshape(3, 16, 16), compression="zlib",
                     photometric="minisblack")
    with tifffile.TiffFile(p) as tif:
        off, n = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    data = bytearray(p.read_bytes())
    data[off:off + n] = bytes(n)          # the compressed strip of frame 0 zeroed
    p.write_bytes(bytes(data))
    _contract(p)


def _frms6(tmp_path) -> Path:
    from temtrack.io.frms6 import write_frms6
    rng = np.random.default_rng(1)
    return write_frms6(tmp_path / "rec", rng.integers(100, 300, (3, 8, 16)).astype(np.uint16), None)


def test_frms6_truncated_hdr_message_is_one_line(tmp_path):
    hdr = _frms6(tmp_path)
    hdr.write_text("[measurementInfo]\nDarkFrames=0\nSignalFrames=3\nDwell")
    _contract(hdr)


def test_frms6_percent_in_hdr(tmp_path):
    hdr = _frms6(tmp_path)
    hdr.write_text(hdr.read_text() + "Comment=50% binning\n")
    _contract(hdr)


def test_npy_truncated_header_dict(tmp_path):
    p = tmp_path / "frames.npy"
    np.save(p, np.zeros((2, 8, 8)))
    data = bytearray(p.read_bytes())
    hlen = int.from_bytes(data[8:10], "little")
    header = data[10:10 + hlen].decode("latin-1")
    cut = header.index("(") + 2                       # "... 'shape': (2" then spaces
    data[10:10 + hlen] = (header[:cut] + " " * (hlen - cut - 1) + "\n").encode("latin-1")
    p.write_bytes(bytes(data))
    _contract(p)


def test_dm4_negative_dimension(tmp_path):
    from temtrack.io.dm_write import write_dm
    p = tmp_path / "stack.dm4"
    write_dm(p, np.ones((3, 16, 20), np.uint16), version=4, pixel_size_nm=0.5)
    data = bytearray(p.read_bytes())
    # The image's Dimensions group (the last tag group) holds int32 (type 3) 20, 16, 3; make the
    # 20 negative.
    i = data.rindex(b"\x00\x00\x00\x03\x14\x00\x00\x00")
    data[i + 7] |= 0x80
    p.write_bytes(bytes(data))
    _contract(p)


def _contract_in_children(paths, *, timeout_s=60, env=None) -> list[tuple[str, str]]:
    """``fz.check_file`` of each path in its own child process, all at once: a crash or a hang of
    the reader is an outcome ('crash', 'hang') instead of the end of pytest."""
    import json
    import os
    import subprocess
    import time

    code = ("import json, sys\nsys.path.insert(0, sys.argv[1])\nimport fuzz_readers as fz\n"
            "print(json.dumps(fz.check_file(sys.argv[2])))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(REPO / "scripts"), str(p)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, **(env or {})))
             for p in paths]
    deadline = time.monotonic() + timeout_s
    out = []
    for proc in procs:
        try:
            stdout, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out.append(("hang", f"no answer within {timeout_s} s"))
            continue
        if proc.returncode < 0:
            out.append(("crash", f"killed by signal {-proc.returncode}"))
        else:
            out.append(tuple(json.loads(stdout.strip().splitlines()[-1])) if stdout.strip() else
                       ("raw-exception", f"exit code {proc.returncode}, no answer"))
    return out


# One changed byte of the real emd_example_image.emd (an NCEM EMD, 3 x 3 int32), from the campaign
# cases by bisection: (offset, new value, what the HDF5 library did in-process before the probe).
# The last item is what the message must now say.
EMD_DAMAGE = [(2208, 0, "hang (case 513): endless loop reading an attribute", "library hung"),
              (857, 198, "SIGSEGV (case 3916) reading a root attribute during detection", "crashed with SIGSEGV"),
              (6441, 9, "SIGSEGV (case 722) reading attributes in rosettasciio", "crashed with SIGSEGV"),
              (11066, 16, "OSError 'addr overflow' reading frame 0 (case 6936)", "past the end of the file"),
              (10801, 128, "shape (32771, 3): 4 s to open, 27 s per frame (case 3839)", "bytes of uncompressed data")]


def test_damaged_hdf5_is_refused_not_fatal(tmp_path):
    """Each damaged EMD gives a one-line MovieReadError naming the file (the crash and hang now
    happen in the probe's child process)."""
    real = fz.REAL_DATA / "emd_example_image.emd"
    if not real.is_file():
        pytest.skip("needs the real emd_example_image.emd in ../shared/real_data")
    paths = []
    for offset, value, *_ in EMD_DAMAGE:
        data = bytearray(real.read_bytes())
        data[offset] = value
        paths.append(tmp_path / f"damaged-{offset}.emd")
        paths[-1].write_bytes(bytes(data))
    # the hang costs the probe's whole timeout: keep it short (the files are tiny)
    results = _contract_in_children(paths, env={"TEMTRACK_HDF5_PROBE_TIMEOUT_S": "3"})
    for (offset, value, what, _), (outcome, detail) in zip(EMD_DAMAGE, results):
        print(f"byte {offset} -> {value} ({what}): {outcome}: {detail}")
    for (*_, says), (outcome, detail) in zip(EMD_DAMAGE, results):
        assert outcome == "rejected" and "damaged HDF5 file" in detail and says in detail, detail


def test_tiff_ifd_chain_loop(tmp_path):
    """Campaign tiff case 423: an IFD offset pointing back to an earlier IFD made tifffile's series
    walk the loop for ever (it checks for loops once, at page 100, and only when counting pages)."""
    import struct

    import tifffile
    p = tmp_path / "loop.tif"
    tifffile.imwrite(p, np.zeros((4, 8, 8), np.uint8), photometric="minisblack", metadata=None)
    with tifffile.TiffFile(p) as tif:
        offsets = [page.offset for page in tif.pages]
    data = bytearray(p.read_bytes())
    last = offsets[-1]
    ntags = struct.unpack_from("<H", data, last)[0]
    struct.pack_into("<I", data, last + 2 + 12 * ntags, offsets[1])   # page 3 -> page 1
    p.write_bytes(bytes(data))
    [(outcome, detail)] = _contract_in_children([p], timeout_s=60)
    print(outcome, detail)
    assert outcome == "rejected" and "loops: page 4 points back to page 1" in detail


def test_plain_garbage_is_rejected_with_file_name(tmp_path):
    rng = np.random.default_rng(0)
    for ext in (".dm4", ".tif", ".mrc", ".emd", ".ser", ".npy", ".mp4", ".frms6", ".bin"):
        p = tmp_path / f"garbage{ext}"
        p.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        outcome, detail = fz.check_file(p)
        assert outcome == "rejected", (ext, outcome, detail)


# Cases of the long campaign (seed 0) that broke the contract, replayed through the same worker
# machinery (timeout, memory cap). They need the seeds the campaign had, real files included.
CAMPAIGN_BUGS = [
    ("emd", 513, "emd-hdf5-hang", "rsciio_generic.py / h5py: emd_example_image.emd with a 4-byte field "
                                  "zeroed at offset 2206 hangs inside the HDF5 C library (no Python "
                                  "interrupt; the reader needs a subprocess or a header sanity check)"),
    ("emd", 3916, "emd-hdf5-segfault", "rsciio_generic.py / h5py: emd_example_image.emd with a few header "
                                       "bytes overwritten (campaign emd case 3916) kills the process with "
                                       "SIGSEGV inside the HDF5 C library"),
    ("emd", 6936, "emd-frame-read", "rsciio_generic.py: a bit-flipped emd_example_image.emd opens, then "
                                    "reading frame 0 raises h5py's raw OSError ('addr overflow')"),
    ("dm4", 1299, "dm-tag-hang", "dm.py (rsciio tag parser): 3D_test-23.dm4 with 8 bytes at 833 set to "
                                 "0x65657153 (an array length) makes rsciio's read_array unpack 1.7e9 "
                                 "structs in Python on a 27 kB file (check lengths against the file "
                                 "size before parsing)"),
    ("tiff", 423, "tiff-hang", "tiff.py: a bit-flipped OME-TIFF (ome.ome.tif seed) keeps tifffile's "
                               "_series_generic busy > 3 s inside read_tiff's tif.series"),
    ("tiff", 1087, "tiff-huge-allocation", "tiff.py: a bit flip in ImageLength makes reading frame 0 "
                                           "allocate 4 GiB for a 1 kB file (check strip sizes against "
                                           "the file size)"),
    ("tiff", 257, "tiff-empty-frame", "tiff.py: a damaged OME-TIFF header gives frames of shape (0,): "
                                      "raw ValueError when the frame is read"),
    ("ser", 793, "ser-empty-frame", "rsciio_generic.py: a damaged SER header gives an empty data "
                                    "array: raw IndexError when the last frame is read"),
]


# Fixed since the campaign: a damaged file that fails only when its frames are read gives
# MovieReadError from Movie.read, whatever the library raised (emd-frame-read, tiff-*); frms6 .hdr
# files are parsed without interpolation and errors cut to one line; npy header and DM dimension
# errors are read errors; HDF5 files (EMD, hspy) are probed in a child process first, so a crash or
# hang of the HDF5 library is a MovieReadError (temtrack/io/hdf5_probe.py); DM tag trees are
# walked with every length checked against the file size before rosettasciio parses them;
# TIFF IFD chains that loop are refused before tifffile follows them; SER series announce the
# frames they store.
FIXED = {"tiff-frame-decode", "frms6-hdr-multiline", "frms6-hdr-interpolation", "npy-header-tokenerror",
         "dm-negative-dimension", "tiff-huge-allocation", "tiff-hang", "ser-empty-frame", "emd-hdf5-hang",
         "emd-hdf5-segfault", "emd-frame-read", "dm-tag-hang", "tiff-empty-frame"}


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    if not fz.REAL_DATA.is_dir():
        pytest.skip("the campaign's seeds include the real files in ../shared/real_data")
    root = tmp_path_factory.mktemp("replay-seeds")
    readers = sorted({r for r, *_ in CAMPAIGN_BUGS})
    # 6 s per case: the worker gives the HDF5 probe a third of it (emd-513 hangs the HDF5 library
    # until the probe's timeout), and a healthy probe takes up to ~1 s on a loaded machine.
    return fz.run_campaign(readers, 0, seed=0, workers=2, timeout_s=6, memory_mb=2000,
                           seeds_root=str(root), cases=[(r, i) for r, i, *_ in CAMPAIGN_BUGS])


@pytest.mark.slow
@pytest.mark.parametrize("reader,index,bug,reason", [
    pytest.param(*case, marks=() if case[2] in FIXED else pytest.mark.xfail(strict=True, reason=case[3]),
                 id=f"{case[0]}-{case[1]}")
    for case in CAMPAIGN_BUGS])
def test_campaign_reproducer(replayed, reader, index, bug, reason):
    assert sum(replayed["counts"][reader].values()) >= 1
    mine = [f for f in replayed["failures"] if (f["reader"], f["index"]) == (reader, index)]
    for f in mine:
        print(f"{reader} case {index}: {f['outcome']} ({_known(f)}): {f['what']} -> {f['detail'][:200]}")
    assert not mine
