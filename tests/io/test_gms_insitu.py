"""GMS 3 In-Situ folder recordings: order, times (tags and folder clock), gaps, bad frames."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from temtrack.errors import MovieReadError
from temtrack.io import detect_format, open_movie
from temtrack.io.dm_write import write_dm, write_gms_insitu
from temtrack.io.gms_insitu import list_frames, read_gms_insitu


def _frames(n, shape=(12, 10), seed=0):
    return np.random.default_rng(seed).integers(0, 4000, (n, *shape)).astype(np.uint16)


@pytest.mark.parametrize("version", [3, 4])
def test_round_trip_with_time_tags(tmp_path, version):
    frames = _frames(23)
    # Starts two seconds before an hour boundary: Hour_00/Minute_59 -> Hour_01/Minute_00.
    rec = write_gms_insitu(tmp_path / "Rec", frames, frame_interval_s=0.2, pixel_size_nm=0.8,
                           start=(0, 59, 58), version=version, time_tags=True)
    m = open_movie(rec)
    assert m.format == "gms-insitu"
    assert m.frames.shape == (23, 12, 10)
    np.testing.assert_array_equal(m.read(), frames.astype(np.float32))
    np.testing.assert_array_equal(m.frames[[5, 2]], frames[[5, 2]])
    np.testing.assert_array_equal(m.frames[-1], frames[-1])
    assert m.pixel_size == pytest.approx(0.8) and m.pixel_unit == "nm"
    assert m.time_source == "timestamps"
    np.testing.assert_allclose(m.times_s, np.arange(23) * 0.2, atol=1e-9)
    assert m.problems == []
    assert m.frames.offsets == {}  # every file checked by its bytes, none needed a full parse


def test_databar_filetime_tags(tmp_path):
    frames = _frames(12)
    rec = write_gms_insitu(tmp_path / "Rec", frames, frame_interval_s=0.3, pixel_size_nm=0.8,
                           start=(2, 3, 4), time_tags="databar")
    m = read_gms_insitu(rec)
    assert m.time_source == "timestamps" and m.problems == []
    # FILETIME is a float64 count of 100 ns ticks (~1.3e17): 16 ticks = 1.6 us resolution.
    np.testing.assert_allclose(m.times_s, np.arange(12) * 0.3, atol=5e-6)


def test_time_tags_missing_from_one_file(tmp_path):
    frames = _frames(10)
    rec = write_gms_insitu(tmp_path / "Rec", frames, frame_interval_s=0.2, pixel_size_nm=0.8,
                           time_tags=True)
    odd = sorted(rec.rglob("*Second_01_Frame_0002.dm4"))[0]
    write_dm(odd, frames[7], pixel_size_nm=0.8)
    m = read_gms_insitu(rec)
    assert f"time tags missing from {odd.name}; using folder clock" in m.problems
    assert m.time_source == "axis"
    np.testing.assert_allclose(m.times_s, np.arange(10) * 0.2, atol=1e-9)
    np.testing.assert_array_equal(m.read(), frames.astype(np.float32))


def test_order_is_parsed_not_name_sorted(tmp_path):
    frames = _frames(30)
    rec = write_gms_insitu(tmp_path / "Rec", frames, frame_interval_s=1 / 12, pixel_size_nm=1.0)
    # Unpadded frame numbers: a name sort would put Frame_10 before Frame_2.
    for f in rec.rglob("*.dm4"):
        k = int(f.stem.rsplit("_", 1)[1])
        f.rename(f.with_name(f.name.replace(f"Frame_{k:04d}", f"Frame_{k}")))
    names = sorted(p.name for p in rec.rglob("*.dm4"))
    assert names[2].endswith("Frame_10.dm4")  # the trap is set
    keys, files, ignored = list_frames(rec)
    assert ignored == 0 and [k[3] for k in keys[:13]] == list(range(12)) + [0]
    m = read_gms_insitu(rec)
    np.testing.assert_array_equal(m.read(), frames.astype(np.float32))
    np.testing.assert_allclose(m.times_s, np.arange(30) / 12, atol=1e-9)
    assert m.time_source == "axis"
    assert any("folder clock" in q for q in m.problems)


def test_gap_within_a_second(tmp_path):
    frames = _frames(25)
    rec = write_gms_insitu(tmp_path / "Rec", frames, frame_interval_s=0.1, pixel_size_nm=0.5,
                           start=(0, 0, 5), drop=(13,))
    m = read_gms_insitu(rec)
    assert m.n_frames == 24
    gap = [q for q in m.problems if q.startswith("gap")]
    assert gap == ["gap: 1 frame(s) missing within the recorded seconds (first: "
                   "Hour_00/Minute_00/Second_06 frame 0003); times keep the gap"]
    np.testing.assert_allclose(np.diff(m.times_s)[12], 0.2, atol=1e-9)
    np.testing.assert_array_equal(m.read(12, 14), np.delete(frames, 13, axis=0)[12:14])


def test_gap_with_time_tags(tmp_path):
    frames = _frames(25)
    rec = write_gms_insitu(tmp_path / "Rec", frames, frame_interval_s=0.1, pixel_size_nm=0.5,
                           drop=(21,), time_tags=True)
    m = read_gms_insitu(rec)
    assert m.time_source == "timestamps"
    assert any(q.startswith("gap: 1 frame(s) missing") for q in m.problems)
    np.testing.assert_allclose(m.times_s, np.delete(np.arange(25) * 0.1, 21), atol=1e-6)
    assert m.times_uniform is False


def test_missing_second(tmp_path):
    frames = _frames(24)
    rec = write_gms_insitu(tmp_path / "Rec", frames, frame_interval_s=0.25, pixel_size_nm=0.5,
                           drop=range(4, 8))
    m = read_gms_insitu(rec)
    assert m.n_frames == 20
    assert any("1 second folder(s) missing (first: Hour_00/Minute_00/Second_01)" in q for q in m.problems)
    np.testing.assert_allclose(m.times_s[3:5], [0.75, 2.0])


def test_frame_of_other_size_is_an_error(tmp_path):
    rec = write_gms_insitu(tmp_path / "Rec", _frames(12), frame_interval_s=0.25, pixel_size_nm=0.5)
    bad = sorted(rec.rglob("*Second_01_Frame_0002.dm4"))[0]
    write_dm(bad, _frames(1, (12, 11))[0], pixel_size_nm=0.5)
    with pytest.raises(MovieReadError) as e:
        open_movie(rec)
    assert str(e.value).startswith(f"{bad}: frame of shape (12, 11)")
    assert "differs from the first frame" in str(e.value)


def test_frame_of_same_bytes_but_other_shape_is_an_error(tmp_path):
    rec = write_gms_insitu(tmp_path / "Rec", _frames(6, (12, 10)), frame_interval_s=0.25,
                           pixel_size_nm=0.5)
    bad = sorted(rec.rglob("*Second_01_Frame_0001.dm4"))[0]
    size = bad.stat().st_size
    write_dm(bad, _frames(1, (10, 12))[0], pixel_size_nm=0.5)
    assert bad.stat().st_size == size  # only the Dimensions tag tells them apart
    with pytest.raises(MovieReadError, match=r"Frame_0001\.dm4: frame of shape \(10, 12\)"):
        open_movie(rec)


def test_files_with_other_tag_lengths(tmp_path):
    frames = _frames(8)
    rec = write_gms_insitu(tmp_path / "Rec", frames, frame_interval_s=0.25, pixel_size_nm=0.5)
    # Longer tags after the pixels: same data offset, other file size.
    after = sorted(rec.rglob("*Second_00_Frame_0003.dm4"))[0]
    write_dm(after, frames[3], pixel_size_nm=0.5, tags={"Note": "x" * 37, "More": {"A": 1.5}})
    # A shorter unit string before the pixels (5 Å = 0.5 nm), on the x and y calibrations: the
    # data move by 2 x 2 bytes.
    before = sorted(rec.rglob("*Second_01_Frame_0001.dm4"))[0]
    write_dm(before, frames[5], pixel_size_nm=5.0, pixel_unit="Å")
    m = read_gms_insitu(rec)
    first_offset = m.frames.offset
    assert m.frames.offsets == {5: first_offset - 4}
    np.testing.assert_array_equal(m.read(), frames.astype(np.float32))


def test_truncated_frame_file(tmp_path):
    rec = write_gms_insitu(tmp_path / "Rec", _frames(8), frame_interval_s=0.25, pixel_size_nm=0.5)
    last = sorted(rec.rglob("*Second_01_Frame_0003.dm4"))[0]
    last.write_bytes(last.read_bytes()[:-300])
    with pytest.raises(MovieReadError, match=r"Frame_0003\.dm4: (truncated|corrupt)"):
        read_gms_insitu(rec)


def test_parent_folder_and_detection(tmp_path):
    rec = write_gms_insitu(tmp_path / "outer" / "Rec", _frames(5), frame_interval_s=0.5,
                           pixel_size_nm=None)
    assert detect_format(rec) == "gms-insitu"
    assert detect_format(tmp_path / "outer") == "gms-insitu"
    m = open_movie(tmp_path / "outer")
    assert m.n_frames == 5 and m.path == rec
    assert m.pixel_size is None and any("no spatial calibration" in q for q in m.problems)


def test_single_frame_file_points_to_the_folder(tmp_path):
    rec = write_gms_insitu(tmp_path / "Rec", _frames(3), frame_interval_s=0.5, pixel_size_nm=0.5)
    one = sorted(rec.rglob("*.dm4"))[0]
    m = open_movie(one)
    assert m.format == "dm" and m.n_frames == 1
    assert any("one frame of a GMS In-Situ recording" in q and str(rec) in q for q in m.problems)


def test_empty_tree(tmp_path):
    (tmp_path / "Rec" / "Hour_00" / "Minute_00" / "Second_00").mkdir(parents=True)
    with pytest.raises(MovieReadError, match="without any"):
        open_movie(tmp_path / "Rec")


def test_pickle(tmp_path):
    frames = _frames(6)
    rec = write_gms_insitu(tmp_path / "Rec", frames, frame_interval_s=0.5, pixel_size_nm=0.5,
                           time_tags=True)
    m = pickle.loads(pickle.dumps(open_movie(rec)))
    np.testing.assert_array_equal(m.read(), frames.astype(np.float32))
    np.testing.assert_allclose(m.times_s, np.arange(6) * 0.5, atol=1e-6)
