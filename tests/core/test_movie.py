import pickle

import numpy as np
import pytest

from temtrack.errors import MovieReadError, ParameterError
from temtrack.io.movie import Movie, movie_from_array, normalise_length_unit, time_unit_to_s


@pytest.mark.parametrize("scale,unit,expected", [
    (8.17, "pm", (0.00817, "nm")), (2.0, "Å", (0.2, "nm")), (0.06, "µm", (60.0, "nm")),
    (1.5, "nm", (1.5, "nm")), (0.01, "1/nm", (0.01, "1/nm")), (0.1, "1/Å", (1.0, "1/nm")),
    (0.3, "nm^-1", (0.3, "1/nm")), (1.0, "px", (None, None)), (1.0, None, (None, None)),
    (-1.0, "nm", (None, None)),
])
def test_units_normalised_to_nm(scale, unit, expected):
    got = normalise_length_unit(scale, unit)
    assert got[1] == expected[1]
    if expected[0] is None:
        assert got[0] is None
    else:
        assert got[0] == pytest.approx(expected[0])


def test_time_units():
    assert time_unit_to_s("ms") == 1e-3 and time_unit_to_s("s") == 1 and time_unit_to_s("px") is None


def test_movie_reads_float32_blocks_and_reports_timing():
    data = np.arange(5 * 4 * 3, dtype=np.uint16).reshape(5, 4, 3)
    m = movie_from_array(data, pixel_size=0.5, frame_interval_s=0.2)
    assert m.n_frames == 5 and m.frame_shape == (4, 3) and m.dtype == np.uint16
    block = m.read(1, 3)
    assert block.dtype == np.float32 and np.array_equal(block, data[1:3])
    assert np.array_equal(m.frame(-1), data[-1])
    assert m.frame_interval_s == pytest.approx(0.2) and m.duration_s == pytest.approx(0.8)
    assert m.times_uniform is True
    s = m.summary()
    assert s["n_frames"] == 5 and s["frame_shape"] == [4, 3] and s["pixel_unit"] == "nm"


def test_uncalibrated_movie_loads_and_says_so():
    m = movie_from_array(np.zeros((3, 8, 8)))
    assert m.pixel_size is None and m.pixel_unit is None and m.times_s is None
    assert any("no spatial calibration" in p for p in m.problems)
    assert any("no frame timing" in p for p in m.problems)
    m2 = m.with_calibration(pixel_size=0.8, frame_interval_s=0.5)
    assert m2.pixel_size == 0.8 and m2.pixel_unit == "nm" and m2.frame_interval_s == 0.5
    assert not m2.problems and m.pixel_size is None  # the original is untouched


def test_non_uniform_times_detected():
    m = movie_from_array(np.zeros((4, 8, 8)), pixel_size=1, times_s=[0, 1, 2, 4])
    assert m.times_uniform is False


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_bad_calibration_override_rejected(bad):
    m = movie_from_array(np.zeros((3, 8, 8)))
    with pytest.raises(ParameterError, match="positive"):
        m.with_calibration(pixel_size=bad)
    with pytest.raises(ParameterError, match="positive"):
        m.with_calibration(frame_interval_s=bad)


def test_empty_or_wrong_rank_stack_is_a_read_error():
    with pytest.raises(MovieReadError, match="empty stack"):
        Movie(np.zeros((0, 4, 4)), None, None, None, "x.npy", "npy")
    with pytest.raises(MovieReadError, match="2D frames"):
        Movie(np.zeros((2, 4, 4, 3)), None, None, None, "x.npy", "npy")
    with pytest.raises(MovieReadError, match="3 time stamps for 2 frames"):
        Movie(np.zeros((2, 4, 4)), [0, 1, 2], None, None, "x.npy", "npy")


def test_movie_pickles_by_reopen_not_by_pixels():
    calls = []

    def reopen():
        calls.append(1)
        return movie_from_array(np.ones((2, 4, 4)), pixel_size=1.0, frame_interval_s=1.0)

    m = movie_from_array(np.ones((2, 4, 4)), pixel_size=1.0, frame_interval_s=1.0)
    m.reopen = _Reopener()
    blob = pickle.dumps(m)
    assert len(blob) < 2000  # no pixels travel
    m2 = pickle.loads(blob)
    assert m2.n_frames == 2 and m2.pixel_size == 1.0
    m3 = pickle.loads(pickle.dumps(m.with_calibration(pixel_size=3.0)))
    assert m3.pixel_size == 3.0


class _Reopener:
    def __call__(self):
        return movie_from_array(np.ones((2, 4, 4)), pixel_size=1.0, frame_interval_s=1.0)
