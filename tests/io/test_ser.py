"""The streaming TIA SER reader (temtrack.io.ser): identical to rosettasciio on real and written
files, every layout TIA writes, damaged files refused naming the file, memory flat on long series."""
from __future__ import annotations

import pickle
import re
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from temtrack.errors import MovieReadError
from temtrack.io import detect_format, open_movie
from temtrack.io.ser import parse_ser, read_ser
from temtrack.io.ser_write import write_emi, write_ser

try:
    from ._real_files_b import TIA_EMI, TIA_SER, real_path
except ImportError:
    from _real_files_b import TIA_EMI, TIA_SER, real_path


def _frames(n=4, rows=5, cols=7, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    if info is None:
        return rng.normal(0, 100, (n, rows, cols)).astype(dtype)
    return rng.integers(info.min, info.max, (n, rows, cols), endpoint=True).astype(dtype)


def _rsciio(path):
    from rsciio.tia import file_reader

    return file_reader(str(path))[0]


# -- against rosettasciio ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", [TIA_SER, TIA_EMI])
def test_real_file_identical_to_rosettasciio(name):
    path = real_path(name)
    movie = open_movie(path)
    ref = _rsciio(path)
    ours = movie.frames[:]
    diff = np.abs(ours.astype(np.float64) - np.asarray(ref["data"], np.float64)).max()
    print(f"{name}: {movie.frames.shape} {movie.dtype}, max abs diff {diff}, pixel {movie.pixel_size!r} "
          f"{movie.pixel_unit} vs rsciio {ref['axes'][-1]['scale']!r} {ref['axes'][-1]['units']}")
    assert movie.format == "ser" and ours.dtype == ref["data"].dtype and ours.shape == ref["data"].shape
    assert diff == 0
    assert movie.pixel_size == ref["axes"][-1]["scale"] and movie.pixel_unit == "nm"
    stamps = ref["original_metadata"]["ser_header_parameters"]["Time"]
    assert movie.original_metadata["ser_time"] == [int(t) for t in stamps]
    # the 5 stamps share one second: the .emi exposure stands in for the interval, flagged
    assert movie.original_metadata["exposure_s"] == pytest.approx(0.0625)
    np.testing.assert_allclose(movie.times_s, np.arange(5) * 0.0625)
    assert movie.time_source == "axis"
    assert any("do not resolve" in p for p in movie.problems)
    assert any("from the exposure" in p for p in movie.problems)
    assert movie.original_metadata["ObjectInfo"]["AcquireInfo"]["CameraNamePath"] == "WA-Orius"


def test_real_ser_without_emi(tmp_path):
    lone = tmp_path / "lonely_1.ser"
    shutil.copy(real_path(TIA_SER), lone)
    movie = read_ser(lone)
    assert movie.frames.shape == (5, 64, 64) and movie.pixel_unit == "nm"  # 6.3e-9 can only be metres
    assert any("no .emi beside the .ser" in p for p in movie.problems)
    assert movie.times_s is None and any(p.startswith("no frame timing") for p in movie.problems)


@pytest.mark.parametrize("version", [0x0210, 0x0220])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])
def test_written_series_identical_to_rosettasciio(tmp_path, version, dtype):
    frames = _frames(4, 6, 9, dtype)
    path = write_ser(tmp_path / "s_1.ser", frames, version=version, calibration_delta=2.5e-10,
                     time_stamps=[100, 102, 104, 106])
    movie = read_ser(path)
    ref = _rsciio(path)
    assert movie.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(movie.frames[:], frames)
    np.testing.assert_array_equal(movie.frames[:], np.asarray(ref["data"]))
    assert movie.pixel_size == ref["axes"][-1]["scale"] == pytest.approx(0.25)
    np.testing.assert_array_equal(movie.times_s, [0, 2, 4, 6])
    assert movie.time_source == "timestamps"
    assert movie.original_metadata["ser_header"]["SeriesVersion"] == f"{version:#06x}"


@pytest.mark.parametrize("version", [0x0210, 0x0220])
def test_frames_out_of_order_with_gaps_and_tags_apart(tmp_path, version):
    """Offsets decreasing, 13 bytes between elements, the tags after all the data: each frame and
    time comes from its own offset (rosettasciio reads the times right after each element: 0 here)."""
    frames = _frames(5, 4, 3)
    path = write_ser(tmp_path / "s_1.ser", frames, version=version, reverse=True, gap_bytes=13,
                     tags_at_end=True, time_stamps=[50, 51, 53, 54, 56])
    series = parse_ser(path)
    assert np.all(np.diff(series.data_offsets) < 0) and not series.contiguous
    movie = read_ser(path)
    np.testing.assert_array_equal(movie.frames[:], frames)
    np.testing.assert_array_equal(movie.frames[[4, 0, 2]], frames[[4, 0, 2]])
    np.testing.assert_array_equal(movie.frame(-1), frames[-1].astype(np.float32))
    np.testing.assert_array_equal(movie.times_s, [0, 1, 3, 4, 6])
    np.testing.assert_array_equal(np.asarray(_rsciio(path)["data"]), frames)


def test_time_and_position_tags(tmp_path):
    path = write_ser(tmp_path / "s_1.ser", _frames(3), tag_type=0x4142, time_stamps=[7, 9, 11])
    movie = read_ser(path)
    np.testing.assert_array_equal(movie.times_s, [0, 2, 4])
    assert movie.original_metadata["ser_header"]["TagTypeID"] == "0x4142"


def test_recorded_frames_only(tmp_path):
    frames = _frames(6)
    path = write_ser(tmp_path / "stopped_1.ser", frames, valid=4)
    movie = open_movie(path)
    print(movie.problems[0])
    assert movie.n_frames == 4
    np.testing.assert_array_equal(movie.frames[:], frames[:4])
    assert "announces 6 frames, 4 recorded" in movie.problems[0]
    np.testing.assert_array_equal(np.asarray(_rsciio(path)["data"]), frames[:4])


def test_one_image(tmp_path):
    movie = read_ser(write_ser(tmp_path / "one_1.ser", _frames(1)))
    assert movie.frames.shape == (1, 5, 7) and movie.times_s is None


# -- calibration and time from the .emi -------------------------------------------------------------
@pytest.mark.parametrize("mode, delta, unit, size, note", [
    (" TEM uP SA Zoom Image", 2e-10, "nm", 0.2, None),
    (" TEM uP SA Zoom Diffraction", 5e6, "1/nm", 0.005, None),
    (None, 5e6, "1/nm", 0.005, None),                      # no .emi: the magnitude decides
    (" TEM uP SA Zoom Image", 5e6, "1/nm", 0.005, "suggests m per pixel"),
    (None, 0.05, None, None, "neither a real-space"),
])
def test_pixel_unit(tmp_path, mode, delta, unit, size, note):
    path = write_ser(tmp_path / "c_1.ser", _frames(2), calibration_delta=delta)
    if mode is not None:
        write_emi(tmp_path / "c.emi", mode=mode)
    movie = read_ser(path)
    print(mode, delta, "->", movie.pixel_size, movie.pixel_unit, movie.original_metadata.get("pixel_unit_from"))
    assert movie.pixel_unit == unit
    if size is None:
        assert movie.pixel_size is None and movie.problems[0].startswith("no spatial calibration")
    else:
        assert movie.pixel_size == pytest.approx(size, rel=1e-12)
    if note:
        assert any(note in p for p in movie.problems)


def test_diffraction_unit_as_rosettasciio(tmp_path):
    write_ser(tmp_path / "d_1.ser", _frames(2), calibration_delta=3e7)
    write_emi(tmp_path / "d.emi", mode=" TEM uP SA Zoom Diffraction")
    from rsciio.tia import file_reader

    ref = file_reader(str(tmp_path / "d.emi"))[0]
    movie = read_ser(tmp_path / "d.emi")
    assert ref["axes"][-1]["units"] == "1 / nm" and movie.pixel_unit == "1/nm"
    assert movie.pixel_size == ref["axes"][-1]["scale"]


def test_exposure_only_when_the_stamps_allow_it(tmp_path):
    # 20 frames of 0.5 s cannot fit in one second: the exposure is not the interval
    path = write_ser(tmp_path / "e_1.ser", _frames(20), time_stamps=[1000] * 20)
    write_emi(tmp_path / "e.emi", exposure_s=0.5)
    movie = read_ser(path)
    assert movie.times_s is None and movie.time_source == "none"
    assert any(p.startswith("no frame timing") for p in movie.problems)
    write_emi(tmp_path / "e.emi", exposure_s=0.04)
    movie = read_ser(path)
    np.testing.assert_allclose(movie.times_s, np.arange(20) * 0.04)
    # 4 frames per second over 4 s: the stamps give the rate, the exposure is not used
    stamps = np.floor(1000 + np.arange(17) * 0.25).astype(int)
    path = write_ser(tmp_path / "e_1.ser", _frames(17), time_stamps=stamps)
    movie = read_ser(path)
    np.testing.assert_allclose(movie.times_s, np.arange(17) * 0.25)
    assert movie.time_source == "timestamps"


def test_emi_picks_its_image_series(tmp_path):
    write_ser(tmp_path / "m_1.ser", np.arange(24, dtype=np.float32).reshape(3, 8))  # spectra
    frames = _frames(3)
    write_ser(tmp_path / "m_2.ser", frames, calibration_delta=1e-9)
    write_emi(tmp_path / "m.emi", n_objects=2, exposure_s=0.25)
    assert detect_format(tmp_path / "m.emi") == "ser"
    movie = open_movie(tmp_path / "m.emi")
    assert movie.path.name == "m.emi" and movie.original_metadata["ser"].endswith("m_2.ser")
    np.testing.assert_array_equal(movie.frames[:], frames)
    assert movie.original_metadata["exposure_s"] == 0.25
    (tmp_path / "m_2.ser").unlink()
    with pytest.raises(MovieReadError, match=r"m_1\.ser: the SER file holds 1D data .*not a movie"):
        open_movie(tmp_path / "m.emi")
    (tmp_path / "m_1.ser").unlink()
    with pytest.raises(MovieReadError, match=r"m\.emi: no m_<n>\.ser series beside the \.emi"):
        open_movie(tmp_path / "m.emi")


def test_pickle_reopens_by_path(tmp_path):
    frames = _frames(3)
    movie = open_movie(write_ser(tmp_path / "p_1.ser", frames), frame_interval_s=0.5)
    back = pickle.loads(pickle.dumps(movie))
    np.testing.assert_array_equal(back.frames[:], frames)
    np.testing.assert_allclose(back.times_s, [0, 0.5, 1.0])


# -- not a movie, damaged -----------------------------------------------------------------------------
def test_1d_data_is_not_a_movie(tmp_path):
    path = write_ser(tmp_path / "spectra_1.ser", np.ones((4, 100), np.float32))
    with pytest.raises(MovieReadError, match=r"spectra_1\.ser: the SER file holds 1D data \(spectra or "
                                             r"profiles, DataTypeID 0x4120\), not images: not a movie"):
        open_movie(path)


def test_scan_of_images_is_not_a_movie(tmp_path):
    path = write_ser(tmp_path / "scan_1.ser", _frames(6), dimension_sizes=(2, 3))
    with pytest.raises(MovieReadError, match=r"scan_1\.ser: the SER file is a 2 x 3 scan of images"):
        read_ser(path)


def test_complex_pixels_refused(tmp_path):
    path = write_ser(tmp_path / "cx_1.ser", np.ones((2, 3, 3), np.complex64))
    with pytest.raises(MovieReadError, match=r"cx_1\.ser: complex pixels \(complex64\)"):
        read_ser(path)


def _damage(tmp_path, frames, edit, version=0x0220, **kw):
    path = write_ser(tmp_path / "bad_1.ser", frames, version=version, **kw)
    data = bytearray(path.read_bytes())
    data = edit(data, parse_ser(path))
    path.write_bytes(bytes(data))
    return path


def _set(data, offset, fmt, value):
    data[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return data


@pytest.mark.parametrize("what, edit, message", [
    ("cut in the last frame", lambda d, s: d[:-20], r"frame 3 .* runs past the end of the file"),
    ("cut in the offset arrays", lambda d, s: d[:100], r"offset arrays .* run past the end"),
    ("cut in the header", lambda d, s: d[:20], r"shorter than a SER header"),
    ("version 0x0230", lambda d, s: _set(d, 4, "<H", 0x0230), r"unknown SER version 0x0230"),
    ("byte order", lambda d, s: _set(d, 0, "<H", 0x4D4D), r"not a readable TIA SER/EMI file: no SER header"),
    ("valid > total", lambda d, s: _set(d, 18, "<I", 9), r"ValidNumberElements 9 > TotalNumberElements 4"),
    ("data offset 2**63", lambda d, s: _set(d, 34 + 32 + 6 + 8 * 2, "<Q", 2**63 + 5),
     r"frame 2 offset 9223372036854775813 lies past the end of the file"),
    ("frame 1 wider", lambda d, s: _set(d, int(s.data_offsets[1]) + 42, "<I", 8),
     r"frame 1 is 5 x 8 pixels .* not one image series"),
    ("huge frame", lambda d, s: _set(d, int(s.data_offsets[0]) + 42, "<I", 2**32 - 1),
     r"frame 0 \(5 x 4294967295 uint16, 42949672950 bytes at byte \d+\) runs past the end"),
    ("unknown pixel type", lambda d, s: _set(d, int(s.data_offsets[0]) + 40, "<H", 77),
     r"unknown SER pixel type \(DataType 77"),
    ("dimension count", lambda d, s: _set(d, 30, "<I", 2**31), r"2147483648 dimensions do not fit"),
    ("description length", lambda d, s: _set(d, 34 + 24, "<I", 2**32 - 1), r"dimension 1 description"),
])
def test_damaged_files_name_the_file(tmp_path, what, edit, message):
    path = _damage(tmp_path, _frames(4), edit)
    with pytest.raises(MovieReadError, match=r"bad_1\.ser: ") as exc:
        open_movie(path, format="ser")
    print(what, "->", exc.value)
    assert "\n" not in str(exc.value)
    assert re.search(message, str(exc.value)), str(exc.value)


def test_damaged_tags_lose_the_times_not_the_frames(tmp_path):
    def edit(d, s):
        tag_array = 34 + 32 + 6 + 8 * 4  # header, one "Number" dimension, 4 data offsets
        return _set(d, tag_array + 8, "<Q", len(d) + 100)

    frames = _frames(4)
    movie = read_ser(_damage(tmp_path, frames, edit, time_stamps=[1, 2, 3, 4]))
    np.testing.assert_array_equal(movie.frames[:], frames)
    assert movie.times_s is None and any("time tag of frame 1 lies past the end" in p for p in movie.problems)


def test_file_cut_after_open_is_a_read_error(tmp_path):
    path = write_ser(tmp_path / "shrinks_1.ser", _frames(3))
    movie = read_ser(path)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(MovieReadError, match=r"shrinks_1\.ser: frame 2 cut short"):
        movie.frame(2)


# -- memory ---------------------------------------------------------------------------------------------
_STREAM_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from temtrack.io import open_movie
    from temtrack.io.ser_write import write_ser

    class Synthetic:  # frames made on demand: the writer never holds the series either
        def __len__(self):
            return 2000
        def __getitem__(self, i):
            return ((np.arange(256 * 256, dtype=np.uint32) + 7 * i) % 65536).astype(np.uint16).reshape(256, 256)

    path = sys.argv[1]
    write_ser(path, Synthetic(), version=0x0220, calibration_delta=1e-10)
    kb = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before = kb()
    movie = open_movie(path)
    total = 0
    for i in range(movie.n_frames):
        f = movie.frame(i)
        total += int(f[0, 0]) + int(f[-1, -1])
    expect = sum((7 * i) % 65536 + (7 * i + 65535) % 65536 for i in range(2000))
    print(before, kb(), movie.n_frames, total == expect)
""")


def test_streaming_a_long_series_keeps_memory_flat(tmp_path):
    """2,000 frames of 256 x 256 uint16 (262 MB, 250 MiB): open + read every frame in a fresh process; the
    peak RSS may not grow by more than a small fraction of the file (rosettasciio's reader holds
    the whole series at open and again for each frame read)."""
    path = tmp_path / "long_1.ser"
    out = subprocess.run([sys.executable, "-c", _STREAM_SCRIPT, str(path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    before_kb, after_kb, n, ok = out.stdout.split()
    size_mb = path.stat().st_size / 2**20
    grow_mb = (int(after_kb) - int(before_kb)) / 1024
    print(f"{n} frames, file {size_mb:.0f} MB: peak RSS {int(before_kb) / 1024:.0f} MB before open, "
          f"{int(after_kb) / 1024:.0f} MB after reading every frame (+{grow_mb:.1f} MB)")
    assert n == "2000" and ok == "True" and size_mb > 240
    assert grow_mb < 32
