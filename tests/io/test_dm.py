"""Gatan DM3/DM4 reader: round trips on written files, every real DM file, bad input, laziness."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from _real_data import real_file
from temtrack.errors import MovieReadError
from temtrack.io import open_movie
from temtrack.io.dm import read_dm, round_float32
from temtrack.io.dm_write import write_dm, write_dm4


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("dtype", ["uint16", "float32", "int16", "uint8"])
def test_round_trip_stack(tmp_path, version, dtype):
    rng = np.random.default_rng(3)
    frames = (rng.random((5, 12, 17)) * 200).astype(dtype)
    p = write_dm(tmp_path / f"s.dm{version}", frames, version=version, pixel_size_nm=0.25,
                 frame_interval_s=0.1)
    m = open_movie(p)
    assert m.format == "dm"
    assert m.frames.shape == (5, 12, 17)
    assert np.dtype(m.dtype).name == dtype
    np.testing.assert_array_equal(m.read(), frames.astype(np.float32))
    assert m.pixel_size == 0.25 and m.pixel_unit == "nm"
    # 0.1 s is stored as float32 (0.10000000149): the reader recovers 0.1 exactly.
    np.testing.assert_allclose(m.times_s, np.arange(5) * 0.1, rtol=0, atol=1e-15)
    assert m.time_source == "axis"
    assert m.problems == []
    assert isinstance(m.frames, np.memmap) and m.frames.mode == "r"


@pytest.mark.parametrize("size, unit, expected, expected_unit", [
    (0.06, "µm", 60.0, "nm"), (1.5, "Å", 0.15, "nm"), (250.0, "pm", 0.25, "nm"),
    (0.02, "1/nm", 0.02, "1/nm"), (0.5, "1/Å", 5.0, "1/nm"),
])
def test_units_normalised(tmp_path, size, unit, expected, expected_unit):
    p = write_dm4(tmp_path / "u.dm4", np.ones((2, 8, 8), np.float32), pixel_size_nm=size,
                  pixel_unit=unit)
    m = read_dm(p)
    assert m.pixel_unit == expected_unit
    assert m.pixel_size == pytest.approx(expected, rel=1e-7)


def test_time_axis_in_ms(tmp_path):
    p = write_dm(tmp_path / "ms.dm3", np.zeros((4, 4, 4), np.uint16), version=3,
                 frame_interval_s=40.0, time_unit="ms")
    m = read_dm(p)
    np.testing.assert_allclose(m.times_s, [0.0, 0.04, 0.08, 0.12], rtol=0, atol=1e-15)
    assert m.time_source == "axis"


def test_uncalibrated_and_overrides(tmp_path):
    p = write_dm(tmp_path / "t.dm4", np.zeros((4, 4, 4), np.uint16), frame_interval_s=None)
    m = read_dm(p)
    assert m.times_s is None and any("no frame timing" in q for q in m.problems)
    assert any("no spatial calibration" in q for q in m.problems)
    m2 = open_movie(p, pixel_size=0.3, frame_interval_s=0.05)
    assert m2.pixel_size == 0.3 and m2.frame_interval_s == pytest.approx(0.05)
    assert not any("no frame timing" in q or "no spatial calibration" in q for q in m2.problems)


def test_2d_image_is_one_frame(tmp_path):
    img = np.arange(30, dtype=np.int32).reshape(5, 6)
    m = open_movie(write_dm4(tmp_path / "i.dm4", img, pixel_size_nm=1.2))
    assert m.n_frames == 1 and m.frame_shape == (5, 6)
    np.testing.assert_array_equal(m.frame(0), img)
    assert m.pixel_size == pytest.approx(1.2)


def test_rgba_read_as_luminance(tmp_path):
    rng = np.random.default_rng(5)
    rgba = np.zeros((3, 6, 7), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")])
    for c in "RGBA":
        rgba[c] = rng.integers(0, 256, rgba.shape)
    m = open_movie(write_dm4(tmp_path / "rgb.dm4", rgba, pixel_size_nm=0.4))
    expected = 0.2125 * rgba["R"] + 0.7154 * rgba["G"] + 0.0721 * rgba["B"]
    np.testing.assert_allclose(m.read(), expected, rtol=1e-5)
    np.testing.assert_allclose(m.frames[1], expected[1], rtol=1e-5)
    assert "RGB pixels converted to luminance 0.2125 R + 0.7154 G + 0.0721 B (float32)" in m.problems
    assert m.pixel_size == pytest.approx(0.4)


def test_round_float32():
    assert round_float32(np.float32(0.1)) == 0.1
    assert round_float32(0.10000000149011612) == 0.1
    assert round_float32(0.24853801727294922) == 0.24853802


def test_pickle_reopens_by_path(tmp_path):
    frames = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    m = open_movie(write_dm4(tmp_path / "p.dm4", frames, pixel_size_nm=0.5), frame_interval_s=2.0)
    blob = pickle.dumps(m)
    assert len(blob) < 2000  # pixels are not in the pickle
    m2 = pickle.loads(blob)
    np.testing.assert_array_equal(m2.read(), m.read())
    assert m2.frame_interval_s == 2.0 and m2.pixel_size == 0.5


# -- real files --------------------------------------------------------------------------------
REAL = {
    # name: (shape, dtype, pixel_size, unit)
    "digitalmicrograph_2D_test-1.dm4": ((1, 2, 2), "int16", None, None),
    "digitalmicrograph_2D_test_STEM_image.dm3": ((1, 68, 68), "uint32", 0.24853802, "nm"),
    "digitalmicrograph_3D_test-1.dm3": ((2, 2, 2), "int16", None, None),
    "digitalmicrograph_3D_test-1.dm4": ((2, 2, 2), "int16", None, None),
    "digitalmicrograph_test_stackbuilder_imagestack.dm3": ((3, 2, 16), "uint32", 59.982903, "nm"),
    "digitalmicrograph_3D_test-23.dm4": ((2, 2, 2), "float32", None, None),  # RGBA -> luminance
}


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_dm_files(name):
    from rsciio.digitalmicrograph import file_reader

    p = real_file(name)
    shape, dtype, size, unit = REAL[name]
    m = open_movie(p)
    assert m.format == "dm"
    assert m.frames.shape == shape
    assert np.dtype(m.dtype).name == dtype
    assert m.pixel_unit == unit
    if size is None:
        assert m.pixel_size is None and any("no spatial calibration" in q for q in m.problems)
    else:
        assert m.pixel_size == pytest.approx(size, rel=1e-7)
    # Pixels agree with rosettasciio's own (eager) read.
    ref = file_reader(str(p), lazy=False)[0]["data"]
    if ref.dtype.names:
        ref = 0.2125 * ref["R"] + 0.7154 * ref["G"] + 0.0721 * ref["B"]
        assert any("luminance" in q for q in m.problems)
    np.testing.assert_allclose(m.read(), np.asarray(ref, np.float64).reshape(shape), rtol=1e-6)


@pytest.mark.real_data
def test_real_stackbuilder_times():
    m = open_movie(real_file("digitalmicrograph_test_stackbuilder_imagestack.dm3"))
    # 'added @ tick' 951112745, 951114882, 951117020 (ms), 'added @ time' 5:00:27/29/32 PM
    np.testing.assert_allclose(m.times_s, [0.0, 2.137, 4.275], atol=1e-9)
    assert m.time_source == "timestamps"


@pytest.mark.real_data
def test_real_complex_is_refused():
    p = real_file("digitalmicrograph_3D_test-13.dm4")
    with pytest.raises(MovieReadError) as e:
        open_movie(p)
    assert str(e.value) == f"{p}: complex pixels (complex128) are not an intensity movie"


# -- bad input ---------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(MovieReadError, match="no such file or folder"):
        open_movie(tmp_path / "nope.dm4")
    with pytest.raises(MovieReadError, match="no such file or folder"):
        read_dm(tmp_path / "nope.dm4")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.dm4"
    p.write_bytes(b"")
    with pytest.raises(MovieReadError, match=r"empty\.dm4: empty file \(0 bytes\)"):
        open_movie(p)


def test_not_dm(tmp_path):
    p = tmp_path / "junk.dm4"
    p.write_bytes(b"\x00\x00\x00\x09" + bytes(range(200)))
    with pytest.raises(MovieReadError, match=r"junk\.dm4: not a DM3/DM4 file"):
        open_movie(p)


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.97, 0.9995])
def test_cut_file(tmp_path, version, fraction):
    frames = np.random.default_rng(0).integers(0, 999, (4, 32, 32)).astype(np.uint16)
    p = write_dm(tmp_path / f"cut.dm{version}", frames, version=version, pixel_size_nm=0.5)
    data = p.read_bytes()
    p.write_bytes(data[:max(30, int(len(data) * fraction))])
    with pytest.raises(MovieReadError) as e:
        open_movie(p)
    msg = str(e.value)
    assert msg.startswith(str(p) + ": ")
    assert "truncated" in msg or "corrupt" in msg
    assert "\n" not in msg


def test_cut_file_with_fixed_header(tmp_path):
    # A cut whose header size was "repaired": the tag parser or the data bounds must catch it.
    frames = np.zeros((4, 64, 64), np.uint16)
    p = write_dm4(tmp_path / "c.dm4", frames)
    data = bytearray(p.read_bytes())
    cut = data[:len(data) // 2]
    cut[4:12] = (len(cut) - 24).to_bytes(8, "big")
    p.write_bytes(bytes(cut))
    with pytest.raises(MovieReadError, match=r"c\.dm4: (truncated|corrupt)"):
        open_movie(p)


def test_stack_is_memory_mapped_not_dask(tmp_path):
    """Frames come from a read-only memmap at the data offset (speed is measured in benchmarks/)."""
    frames = np.random.default_rng(0).integers(0, 999, (20, 64, 64)).astype(np.uint16)
    m = open_movie(write_dm4(tmp_path / "speed.dm4", frames))
    assert isinstance(m.frames, np.memmap) and m.frames.mode == "r"
    np.testing.assert_array_equal(m.read(5, 9), frames[5:9])


@pytest.mark.parametrize("version", [3, 4])
def test_absurd_array_length_is_refused_before_parsing(tmp_path, version):
    """Every declared tag length is checked against the file size before rosettasciio parses the
    tag tree (it would otherwise loop over each declared element)."""
    import struct

    p = write_dm(tmp_path / f"s.dm{version}", np.ones((3, 16, 20), np.uint16), version=version,
                 pixel_size_nm=0.5)
    data = bytearray(p.read_bytes())
    lq, fmt = (8, ">Q") if version == 4 else (4, ">L")
    # the last array tag (a string of 2-byte characters: info 20, 4, length) gets length 0x65657153
    i = data.rindex(b"%%%%" + struct.pack(fmt, 3) + struct.pack(fmt, 20) + struct.pack(fmt, 4))
    data[i + 4 + 3 * lq:i + 4 + 4 * lq] = struct.pack(fmt, 0x65657153)
    p.write_bytes(bytes(data))
    with pytest.raises(MovieReadError) as e:
        open_movie(p)
    print(e.value)
    assert str(e.value).startswith(f"{p}: corrupt or truncated DM{version} file")
    assert "declares 1701146963 elements" in str(e.value)


def test_real_dm4_with_absurd_struct_array_length(tmp_path):
    """Campaign dm4 case 1299: an array-of-structs length of 0x65657153 in a 27 kB file made
    rosettasciio unpack 1.7e9 empty structs (minutes, gigabytes). Run in a child with a timeout so
    that a regression fails instead of hanging the suite."""
    import json
    import subprocess
    import sys

    p = tmp_path / "d.dm4"
    data = bytearray(real_file("digitalmicrograph_3D_test-23.dm4").read_bytes())
    data[833:841] = (0x65657153).to_bytes(8, "big")
    p.write_bytes(bytes(data))
    code = ("import json, sys\nfrom temtrack.io import open_movie\nfrom temtrack.errors import MovieReadError\n"
            "try:\n    open_movie(sys.argv[1]); print(json.dumps('opened'))\n"
            "except MovieReadError as e:\n    print(json.dumps(str(e)))\n")
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=120)
    msg = json.loads(out.stdout.strip().splitlines()[-1])
    print(msg)
    assert msg.startswith(f"{p}: corrupt or truncated DM4 file") and "declares" in msg
