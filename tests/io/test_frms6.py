"""pnCCD frms6 reader: unfolding, binning, dark and gain corrections, times, bad files, laziness,
and agreement with LiberTEM's FRMS6 dataset when LiberTEM is installed."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from temtrack.errors import MovieReadError
from temtrack.io import detect_format, open_movie
from temtrack.io.frms6 import (FILE_HEADER_BYTES, FRAME_HEADER_BYTES, fold, read_frms6, unfold,
                               write_frms6)


def _images(n, rows, cols, binning=1, seed=0, lo=100, hi=3000):
    img = np.random.default_rng(seed).integers(lo, hi, (n, rows // binning, cols)).astype(np.uint16)
    return np.repeat(img, binning, axis=1)


@pytest.mark.parametrize("binning", [1, 2, 4])
def test_fold_unfold_inverse(binning):
    img = _images(3, 16, 6, binning)
    raw = fold(img, binning)
    assert raw.shape == (3, 16 // binning // 2, 12)
    np.testing.assert_array_equal(unfold(raw, binning), img)
    # Layout: top half = left raw half; bottom half = right raw half flipped in both axes.
    h = raw.shape[1]
    np.testing.assert_array_equal(unfold(raw, binning)[:, ::binning][:, :h], raw[:, :, :6])
    np.testing.assert_array_equal(unfold(raw, binning)[:, ::binning][:, h:], raw[:, ::-1, 6:][:, :, ::-1])


@pytest.mark.parametrize("binning", [1, 2])
def test_round_trip_with_dark(tmp_path, binning):
    img = _images(9, 24, 16, binning, seed=1)
    dark = _images(5, 24, 16, binning, seed=2, lo=0, hi=60)
    hdr = write_frms6(tmp_path / "scan", fold(img, binning), fold(dark, binning), binning=binning,
                      dwell_time_us=2500, frames_per_file=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "scan.hdr", "scan_000.frms6", "scan_001.frms6", "scan_002.frms6", "scan_003.frms6"]
    expected = img.astype(np.float32) - dark.astype(np.float64).mean(0).astype(np.float32)
    for opener in (hdr, tmp_path / "scan_002.frms6", tmp_path / "scan_000.frms6"):
        m = open_movie(opener)
        assert m.format == "frms6"
        assert m.frames.shape == (9, 24, 16) and m.dtype == np.float32
        np.testing.assert_allclose(m.read(), expected, atol=1e-3)
        np.testing.assert_allclose(m.frames[[8, 3]], expected[[8, 3]], atol=1e-3)
        np.testing.assert_allclose(m.times_s, np.arange(9) * 2.5e-3, atol=1e-12)
        assert m.time_source == "timestamps"


def test_no_dark_no_header_count(tmp_path):
    img = _images(4, 8, 6)
    hdr = write_frms6(tmp_path / "old", fold(img), None, header_frame_count=False)
    m = read_frms6(hdr)
    np.testing.assert_array_equal(m.read(), img.astype(np.float32))
    assert any("no dark frames" in q for q in m.problems)
    raw_dark = read_frms6(hdr, dark_correction=False)
    np.testing.assert_array_equal(raw_dark.read(), img.astype(np.float32))


@pytest.mark.parametrize("kind", ["mat", "csv"])
def test_gain_map(tmp_path, kind):
    import scipy.io

    img = _images(3, 8, 6, seed=4)
    dark = _images(2, 8, 6, seed=5, lo=0, hi=20)
    hdr = write_frms6(tmp_path / "g", fold(img), fold(dark))
    gain = np.random.default_rng(6).uniform(0.8, 1.2, (8, 6)).astype(np.float32)
    if kind == "mat":
        gpath = tmp_path / "gain.mat"
        scipy.io.savemat(gpath, {"GainMap": gain})
    else:
        gpath = tmp_path / "gain.csv"
        # The CSV holds the map transposed, ';'-separated (with a trailing ';' as LiberTEM allows).
        gpath.write_text("\n".join(";".join(f"{v:.9g}" for v in row) + ";" for row in gain.T))
    m = open_movie(hdr, gain_map=gpath)
    expected = (img.astype(np.float32) - dark.astype(np.float64).mean(0).astype(np.float32)) * gain
    np.testing.assert_allclose(m.read(), expected, rtol=1e-5)
    # A worker gets the movie by path and re-applies dark and gain.
    np.testing.assert_allclose(pickle.loads(pickle.dumps(m)).read(), expected, rtol=1e-5)
    with pytest.raises(MovieReadError, match="does not match frames"):
        bad = tmp_path / "bad.csv"
        bad.write_text("1;2\n3;4\n")
        open_movie(hdr, gain_map=bad)


def test_shorter_than_header(tmp_path):
    hdr = write_frms6(tmp_path / "cut", fold(_images(5, 8, 6)), fold(_images(2, 8, 6)))
    f = tmp_path / "cut_001.frms6"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(MovieReadError) as e:
        open_movie(hdr)
    frame = FRAME_HEADER_BYTES + 2 * 4 * 12
    assert str(e.value) == (f"{f}: file shorter than its header says: 5 frames need "
                            f"{FILE_HEADER_BYTES + 5 * frame} bytes, the file has "
                            f"{FILE_HEADER_BYTES + 5 * frame - 100}")


def test_empty_and_missing(tmp_path):
    hdr = write_frms6(tmp_path / "e", fold(_images(2, 8, 6)), None)
    (tmp_path / "e_001.frms6").write_bytes(b"")
    with pytest.raises(MovieReadError, match=r"e_001\.frms6: empty file"):
        read_frms6(hdr)
    with pytest.raises(MovieReadError, match="no such file or folder"):
        open_movie(tmp_path / "nothing.hdr")
    (tmp_path / "e_001.frms6").write_bytes(b"\x00" * 2000)
    with pytest.raises(MovieReadError, match="not a frms6 version 6 file"):
        read_frms6(hdr)


def test_detected_by_content(tmp_path):
    hdr = write_frms6(tmp_path / "d", fold(_images(2, 8, 6)), fold(_images(1, 8, 6)))
    renamed = tmp_path / "d_001.bin"
    os.link(tmp_path / "d_001.frms6", renamed)
    assert detect_format(renamed) == "frms6"
    assert detect_format(hdr) == "frms6"


def test_large_sparse_file_stays_lazy(tmp_path):
    """A 2.1 GB recording (sparse file of zeros) opens and reads with little memory.

    Measured with /proc/self/status in a fresh process (``ru_maxrss`` is inherited across exec
    from the pytest process, so it cannot be used here).
    """
    n = 15_500
    h, w = 132, 528  # a full 264 x 264 pnCCD frame, folded
    hdr = write_frms6(tmp_path / "big", np.zeros((1, h, w), np.uint16),
                      np.full((2, h, w), 3, np.uint16))
    sig = tmp_path / "big_001.frms6"
    with open(sig, "r+b") as f:
        f.seek(1020)
        f.write(np.uint32(n).tobytes())
        f.truncate(FILE_HEADER_BYTES + n * (FRAME_HEADER_BYTES + 2 * h * w))
    size = sig.stat().st_size
    assert size > 2 * 1024**3
    code = textwrap.dedent(f"""
        import json
        import numpy as np
        from temtrack.io import open_movie
        import temtrack.io.frms6

        def status(key):  # kB; VmHWM is per address space, so it starts fresh after exec
            for line in open("/proc/self/status"):
                if line.startswith(key + ":"):
                    return int(line.split()[1])

        try:  # reset the high-water mark to the current RSS (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        before, peak_before = status("VmRSS"), status("VmHWM")
        m = open_movie({str(hdr)!r})
        a = m.read(0, 4); b = m.read({n // 2}, {n // 2} + 4); c = m.frame(-1)
        after = status("VmHWM")
        print(json.dumps({{"growth_kb": after - before, "peak_kb": after,
                          "peak_before_kb": peak_before, "shape": list(m.frames.shape),
                          "mean": float(a.mean() + b.mean() + c.mean())}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    growth_mb = res["growth_kb"] / 1024
    peak_mb = res["peak_kb"] / 1024
    current_mb = (res["peak_kb"] - res["growth_kb"]) / 1024
    print(f"frms6 of {size / 1024**3:.2f} GiB: peak RSS {peak_mb:.0f} MB (before opening: current "
          f"{current_mb:.0f} MB, peak {res['peak_before_kb'] / 1024:.0f} MB); "
          f"growth bound {growth_mb:.1f} MB on open + 9 frames")
    assert res["shape"] == [n, 264, 264]
    assert res["mean"] == pytest.approx(-9.0)  # zeros minus a dark level of 3, three blocks
    assert growth_mb < 150
    assert peak_mb < 400  # the whole process, against a 2 GB file


@pytest.mark.slow
def test_agrees_with_libertem(tmp_path):
    """Same corrected frames as LiberTEM's FRMS6DataSet (dark subtraction on, binning 2)."""
    pytest.importorskip("libertem")
    import libertem.api as lt
    from libertem.udf.raw import PickUDF

    b, n = 2, 6
    img = _images(n, 264, 264, b, seed=8)
    dark = _images(4, 264, 264, b, seed=9, lo=0, hi=50)
    hdr = write_frms6(tmp_path / "scan", fold(img, b), fold(dark, b), binning=b,
                      frames_per_file=4, stem_image_size=(3, 2))
    ctx = lt.Context.make_with("inline")
    ds = ctx.load("frms6", path=str(hdr))
    assert tuple(ds.shape.sig) == (264, 264)
    res = ctx.run_udf(dataset=ds, udf=PickUDF(), roi=np.ones(tuple(ds.shape.nav), bool))
    theirs = np.asarray(res["intensity"].raw_data).reshape(n, 264, 264)
    ours = read_frms6(hdr).read()
    err = np.abs(theirs - ours).max()
    print(f"max |temtrack - LiberTEM| over {n} corrected 264x264 frames: {err}")
    assert err < 1e-3
