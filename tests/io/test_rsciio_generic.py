"""Velox EMD, TIA SER/EMI, MRC, .hspy/.zspy readers: axes order, calibration, frame times, errors."""
from __future__ import annotations

import json
import pickle
import shutil

import h5py
import numpy as np
import pytest

from temtrack.errors import MovieReadError
from temtrack.io.rsciio_generic import _ser_times, read_rsciio

try:
    from ._real_files_b import TIA_EMI, TIA_SER, VELOX_IMAGE, VELOX_STACK, real_path
except ImportError:
    from _real_files_b import TIA_EMI, TIA_SER, VELOX_IMAGE, VELOX_STACK, real_path


def _frames(n=4, rows=6, cols=7, dtype=np.int16):
    return (np.arange(n * rows * cols) % 300).astype(dtype).reshape(n, rows, cols)


# -- Velox EMD -------------------------------------------------------------------------------------
def write_velox(path, frames, *, pixel_size_m, timestamps_us, exposure_s=0.5, camera="BM-Ceta"):
    """A minimal Velox EMD image stack laid out as Velox writes it: Data is (y, x, t) and each
    frame has a JSON metadata column with its camera time stamp in us."""
    n, rows, cols = frames.shape
    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=np.array([json.dumps({"version": "8", "format": "Velox"}).encode()],
                                                  dtype=object))
        g = f.create_group("Data/Image/0123456789abcdef0123456789abcdef")
        g.create_dataset("Data", data=np.ascontiguousarray(np.moveaxis(frames, 0, -1)), chunks=(rows, cols, 1))
        blobs = []
        for i in range(n):
            md = {"Core": {"MetadataDefinitionVersion": "7.9"},
                  "Acquisition": {"AcquisitionStartDatetime": {"DateTime": str(int(timestamps_us[0] // 1e6))}},
                  "Scan": {}, "Optics": {"AccelerationVoltage": "300000"},
                  "Detectors": {"Detector-0": {"DetectorName": camera, "DetectorType": "ImagingDetector",
                                               "ExposureTime": str(exposure_s)}},
                  "BinaryResult": {"AcquisitionUnit": "CameraImage", "Detector": camera, "DetectorIndex": "0",
                                   "PixelSize": {"width": str(pixel_size_m), "height": str(pixel_size_m)},
                                   "PixelUnitX": "m", "PixelUnitY": "m", "Offset": {"x": "0", "y": "0"},
                                   "Encoding": "Signed", "BitsPerPixel": "16"},
                  "CustomProperties": {f"Detectors[{camera}].TimeStamp": {"type": "int64",
                                                                           "value": str(int(timestamps_us[i]))}}}
            blobs.append(json.dumps(md).encode())
        width = max(len(b) for b in blobs) + 16
        meta = np.zeros((width, n), np.uint8)
        for i, b in enumerate(blobs):
            meta[: len(b), i] = np.frombuffer(b, np.uint8)
        g.create_dataset("Metadata", data=meta, chunks=(width, 1))
        g.create_dataset("FrameLookupTable", data=np.arange(n, dtype=np.uint32))


def test_velox_stack_uses_per_frame_time_stamps(tmp_path):
    frames = _frames()
    stamps_us = 1575540226238991 + np.array([0, 200_000, 450_000, 600_000])
    path = tmp_path / "stack.emd"
    write_velox(path, frames, pixel_size_m=2.5e-10, timestamps_us=stamps_us, exposure_s=0.5)
    movie = read_rsciio(path, format="emd")
    assert movie.format == "emd" and movie.frames.shape == (4, 6, 7)
    np.testing.assert_array_equal(movie.read(), frames.astype(np.float32))  # (y, x, t) put back to (t, y, x)
    assert movie.pixel_size == pytest.approx(0.25) and movie.pixel_unit == "nm"
    np.testing.assert_allclose(movie.times_s, [0, 0.2, 0.45, 0.6], atol=1e-9)  # not the 0.5 s exposure
    assert movie.time_source == "timestamps"
    assert "time stamps not uniform" in movie.problems
    again = pickle.loads(pickle.dumps(movie))
    np.testing.assert_array_equal(again.frame(2), frames[2])


def test_real_velox_stack():
    path = real_path(VELOX_STACK)
    movie = read_rsciio(path, format="emd")
    assert movie.frames.shape == (2, 3, 3) and movie.dtype == np.int16
    with h5py.File(path, "r") as f:
        raw = next(iter(f["Data/Image"].values()))["Data"][()]  # stored (y, x, t)
    for i in range(2):
        np.testing.assert_array_equal(movie.frame(i), raw[:, :, i])
    assert movie.pixel_unit == "nm" and movie.pixel_size == pytest.approx(8.1728832e-3, rel=1e-6)
    np.testing.assert_allclose(movie.times_s, [0.0, 0.799976], atol=1e-9)
    assert movie.time_source == "timestamps"
    assert movie.original_metadata["time_axis_scale_s_is_exposure"] == pytest.approx(0.8)
    assert movie.problems == []
    json.dumps(movie.original_metadata, allow_nan=False)  # metadata go into results JSON as they are


def test_real_velox_single_image_uncalibrated():
    movie = read_rsciio(real_path(VELOX_IMAGE), format="emd")
    assert movie.frames.shape == (1, 3, 3) and movie.dtype == np.int32
    assert movie.pixel_size is None and movie.times_s is None
    assert any(p.startswith("no spatial calibration") for p in movie.problems)


# -- TIA -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [TIA_SER, TIA_EMI])
def test_real_tia_series(name):
    movie = read_rsciio(real_path(name), format="ser")
    assert movie.format == "ser" and movie.frames.shape == (5, 64, 64) and movie.dtype == np.float32
    assert movie.pixel_unit == "nm" and movie.pixel_size == pytest.approx(6.2818336, rel=1e-6)
    # the .emi beside the .ser supplies the exposure; the 5 frames share one 1-s time stamp
    assert movie.original_metadata["exposure_s"] == pytest.approx(0.0625)
    # (read by temtrack.io.ser since issue 7: the exposure stands in for the interval, flagged)
    np.testing.assert_allclose(movie.times_s, np.arange(5) * 0.0625)
    assert movie.time_source == "axis" and any("from the exposure" in p for p in movie.problems)
    assert any("do not resolve" in p for p in movie.problems)
    frames = movie.read()
    assert np.all(np.isfinite(frames)) and frames.std() > 0
    json.dumps(movie.original_metadata, allow_nan=False)


def test_tia_ser_without_emi(tmp_path):
    lone = tmp_path / "lonely_1.ser"
    shutil.copy(real_path(TIA_SER), lone)
    movie = read_rsciio(lone, format="ser")
    assert movie.frames.shape == (5, 64, 64)
    assert any("no .emi beside the .ser" in p for p in movie.problems)


def test_ser_time_stamps_rules():
    problems = []
    t, src = _ser_times({"Time": [100, 102, 104, 106]}, 4, problems)
    np.testing.assert_allclose(t, [0, 2, 4, 6])
    assert src == "timestamps"
    # 4 frames per second truncated to whole seconds: spread uniformly over the span
    stamps = np.floor(100 + np.arange(9) * 0.25)
    t, _ = _ser_times({"Time": stamps}, 9, problems)
    np.testing.assert_allclose(t, np.arange(9) * 0.25)
    t, _ = _ser_times({"Time": [5, 5, 5]}, 3, problems)
    assert t is None and any("do not resolve" in p for p in problems)


# -- MRC -------------------------------------------------------------------------------------------
def _write_mrc(path, data, voxel_A=None):
    import mrcfile

    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        if voxel_A is not None:
            mrc.voxel_size = (voxel_A, voxel_A, 1.0)


def test_mrc_round_trip_and_de_info(tmp_path):
    frames = _frames(n=3, rows=8, cols=9, dtype=np.float32)
    path = tmp_path / "20240101_00001_movie.mrc"
    _write_mrc(path, frames, voxel_A=2.5)
    movie = read_rsciio(path, format="mrc")
    assert isinstance(movie.frames, np.memmap)
    np.testing.assert_array_equal(movie.read(), frames)
    assert movie.pixel_size == pytest.approx(0.25) and movie.pixel_unit == "nm"
    assert movie.times_s is None and any(p.startswith("no frame timing") for p in movie.problems)
    (tmp_path / "20240101_00001_info.txt").write_text("Camera Model = DE-16\nFrames Per Second = 40\n"
                                                      "Autosave Movie Sum Count = 2\n")
    movie = read_rsciio(path, format="mrc")
    np.testing.assert_allclose(movie.times_s, [0, 0.05, 0.1])  # 2 summed frames at 40 fps
    assert movie.time_source == "axis" and movie.original_metadata["de_info"]["Camera Model"] == "DE-16"


def test_mrc_uncalibrated_and_bad_files(tmp_path):
    path = tmp_path / "u.mrc"
    _write_mrc(path, _frames(n=2, dtype=np.int16))
    movie = read_rsciio(path, format="mrc")
    assert movie.pixel_size is None and any(p.startswith("no spatial calibration") for p in movie.problems)
    cut = tmp_path / "cut.mrc"
    cut.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(MovieReadError, match=r"cut\.mrc: truncated"):
        read_rsciio(cut, format="mrc")
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(MovieReadError, match=r"junk\.mrc: not a readable MRC file"):
        read_rsciio(junk, format="mrc")


# -- HyperSpy files --------------------------------------------------------------------------------
def _write_hyperspy(path, data, axes, fmt="hspy"):
    """Write through rosettasciio's HyperSpy writer (what ``Signal.save`` calls)."""
    if fmt == "zspy":
        from rsciio.zspy import file_writer
    else:
        from rsciio.hspy import file_writer
    sig = {"data": data, "axes": axes, "metadata": {"General": {"title": "t"}, "Signal": {"signal_type": ""}},
           "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False}, "models": {},
           "learning_results": {}, "package_info": {"name": "hyperspy", "version": "2.5"}}
    file_writer(str(path), sig)


def _ax(name, size, scale, units, navigate):
    return {"name": name, "size": size, "scale": scale, "offset": 0.0, "units": units, "navigate": navigate}


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("fmt", ["hspy", "zspy"])
def test_hyperspy_round_trip(tmp_path, fmt):
    if fmt == "zspy":
        pytest.importorskip("zarr")
    frames = _frames(n=3, rows=4, cols=5, dtype=np.float32)
    path = tmp_path / f"m.{fmt}"
    _write_hyperspy(path, frames, [_ax("time", 3, 250.0, "ms", True), _ax("y", 4, 2.0, "Å", False),
                                   _ax("x", 5, 2.0, "Å", False)], fmt)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    before = {f: f.stat().st_mtime_ns for f in files}
    movie = read_rsciio(path, format=fmt)
    assert movie.format == fmt and not isinstance(movie.frames, np.ndarray)  # lazy (dask)
    np.testing.assert_array_equal(movie.read(), frames)
    assert movie.pixel_size == pytest.approx(0.2) and movie.pixel_unit == "nm"
    np.testing.assert_allclose(movie.times_s, [0, 0.25, 0.5])
    assert movie.time_source == "axis" and movie.problems == []
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(movie)).frame(1), frames[1])
    del movie
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    assert all(f.stat().st_mtime_ns == before[f] for f in files)  # opened read-only: nothing rewritten


def test_hyperspy_time_axis_last_and_reciprocal_units(tmp_path):
    frames = _frames(n=3, rows=4, cols=5, dtype=np.float32)
    stored = np.ascontiguousarray(np.moveaxis(frames, 0, -1))  # (y, x, t) as Velox stores it
    path = tmp_path / "yxt.hspy"
    _write_hyperspy(path, stored, [_ax("ky", 4, 0.05, "1/Å", False), _ax("kx", 5, 0.05, "1/Å", False),
                                   _ax("time", 3, 2.0, "s", True)])
    movie = read_rsciio(path, format="hspy")
    np.testing.assert_array_equal(movie.read(), frames)
    assert movie.pixel_unit == "1/nm" and movie.pixel_size == pytest.approx(0.5)
    np.testing.assert_allclose(movie.times_s, [0, 2, 4])


def test_hyperspy_uncalibrated_and_refused(tmp_path):
    path = tmp_path / "plain.hspy"
    _write_hyperspy(path, _frames(n=2, dtype=np.float32),
                    [_ax("", 2, 1.0, "<undefined>", True), _ax("", 6, 1.0, "<undefined>", False),
                     _ax("", 7, 1.0, "<undefined>", False)])
    movie = read_rsciio(path, format="hspy")
    assert movie.pixel_size is None and movie.times_s is None
    assert any(p.startswith("no spatial calibration") for p in movie.problems)
    assert any(p.startswith("no frame timing") for p in movie.problems)

    four_d = tmp_path / "4d.hspy"
    _write_hyperspy(four_d, np.zeros((2, 3, 4, 5), np.float32),
                    [_ax("y", 2, 1.0, "nm", True), _ax("x", 3, 1.0, "nm", True),
                     _ax("ky", 4, 1.0, "1/nm", False), _ax("kx", 5, 1.0, "1/nm", False)])
    with pytest.raises(MovieReadError, match=r"4d\.hspy: .*4 dimensions"):
        read_rsciio(four_d, format="hspy")

    complex_ = tmp_path / "cx.hspy"
    _write_hyperspy(complex_, np.zeros((2, 4, 5), np.complex64),
                    [_ax("t", 2, 1.0, "s", True), _ax("y", 4, 1.0, "nm", False), _ax("x", 5, 1.0, "nm", False)])
    with pytest.raises(MovieReadError, match="complex pixels"):
        read_rsciio(complex_, format="hspy")


@pytest.mark.parametrize("fmt, name, what", [("hspy", "junk.hspy", "HyperSpy .hspy"),
                                             ("emd", "junk.emd", "Velox/NCEM EMD"),
                                             ("ser", "junk_1.ser", "TIA SER/EMI")])
def test_random_bytes(tmp_path, fmt, name, what):
    junk = tmp_path / name
    junk.write_bytes(np.random.default_rng(1).bytes(4000))
    with pytest.raises(MovieReadError, match=rf"{name.replace('.', '[.]')}: not a readable {what} file"):
        read_rsciio(junk, format=fmt)


def test_missing_file(tmp_path):
    with pytest.raises(MovieReadError, match="file not found"):
        read_rsciio(tmp_path / "gone.emd", format="emd")


def test_hspy_with_zero_frames(tmp_path):
    path = tmp_path / "zero.hspy"
    _write_hyperspy(path, _frames(n=2, dtype=np.float32),
                    [_ax("t", 2, 1.0, "s", True), _ax("y", 6, 1.0, "nm", False), _ax("x", 7, 1.0, "nm", False)])
    with h5py.File(path, "a") as f:  # rosettasciio cannot write a zero-length dataset: make one
        group = next(iter(f["Experiments"].values()))
        del group["data"]
        group.create_dataset("data", shape=(0, 6, 7), dtype="f4")
        group["axis-0"].attrs["size"] = 0
    with pytest.raises(MovieReadError, match=r"zero\.hspy: empty stack"):
        read_rsciio(path, format="hspy")


def test_hyperspy_non_uniform_time_axis_gives_time_stamps(tmp_path):
    frames = _frames(n=3, rows=4, cols=5, dtype=np.float32)
    path = tmp_path / "nonuniform.hspy"
    t_axis = {"name": "time", "size": 3, "axis": np.array([10.0, 10.1, 10.35]), "units": "s", "navigate": True}
    _write_hyperspy(path, frames, [t_axis, _ax("y", 4, 0.5, "nm", False), _ax("x", 5, 0.5, "nm", False)])
    movie = read_rsciio(path, format="hspy")
    np.testing.assert_allclose(movie.times_s, [0.0, 0.1, 0.35])
    assert movie.time_source == "timestamps" and movie.times_uniform is False


# -- damaged files ---------------------------------------------------------------------------------
def test_ser_header_announcing_more_frames_than_recorded(tmp_path):
    """Campaign ser case 793: Dim-1_DimensionSize 5 -> 32517 (the byte at 31) while 5 frames are
    recorded. rosettasciio's lazy array announced 32517 frames and the last one raised IndexError;
    now the movie has the recorded frames and says why."""
    shutil.copy(real_path(TIA_EMI), tmp_path)
    ser = tmp_path / real_path(TIA_SER).name
    data = bytearray(real_path(TIA_SER).read_bytes())
    data[31] = 127
    ser.write_bytes(bytes(data))
    movie = read_rsciio(ser, format="ser")
    print(movie.problems[0])
    assert movie.n_frames == 5
    assert movie.frame(-1).shape == (64, 64)
    assert "announces 32517 frames, 5 recorded" in movie.problems[0]


def _count_probes(monkeypatch):
    from temtrack.io import hdf5_probe

    calls = []
    real_run = hdf5_probe._run_child

    def counting_run(path, *args, **kwargs):
        calls.append(path)
        return real_run(path, *args, **kwargs)

    monkeypatch.setattr(hdf5_probe, "_run_child", counting_run)
    monkeypatch.setattr(hdf5_probe, "_passed", {})
    monkeypatch.delenv("TEMTRACK_HDF5_PROBE", raising=False)
    return calls


def test_hdf5_probe_once_per_file_and_not_again_after_pickling(tmp_path, monkeypatch):
    from temtrack.io import hdf5_probe, open_movie

    calls = _count_probes(monkeypatch)
    path = tmp_path / "stack.emd"
    write_velox(path, _frames(), pixel_size_m=1e-10, timestamps_us=[0, 1e5, 2e5, 3e5])
    movie = open_movie(path)             # detection and the reader share one probe
    assert len(calls) == 1
    monkeypatch.setattr(hdf5_probe, "_passed", {})   # as in a fresh worker process
    again = pickle.loads(pickle.dumps(movie))
    assert len(calls) == 1 and again.n_frames == 4
    path.touch()                          # a changed file is probed again
    open_movie(path)
    assert len(calls) == 2
    monkeypatch.setenv("TEMTRACK_HDF5_PROBE", "0")
    monkeypatch.setattr(hdf5_probe, "_passed", {})
    open_movie(path)
    read_rsciio(path, format="emd", hdf5_probe=False)
    assert len(calls) == 2


@pytest.mark.parametrize("child, expected", [
    ("import os, signal; print('started', flush=True); os.kill(os.getpid(), signal.SIGSEGV)",
     "the HDF5 library crashed with SIGSEGV"),
    ("import time; print('started', flush=True); time.sleep(60)", "the HDF5 library hung"),
    ("print('started', flush=True); raise SystemExit(3)", "failed while reading it, exit code 3"),
    ("import json; print('started'); print(json.dumps({'damaged': 'dataset x lies past the end'}))",
     "damaged HDF5 file (dataset x lies past the end)"),
])
def test_hdf5_probe_verdicts(tmp_path, monkeypatch, child, expected):
    """What the parent makes of a child that crashes, hangs, fails or finds damage (the probe code
    replaced by stand-ins; the real crashes are replayed in tests/reliability)."""
    from temtrack.io import hdf5_probe

    _count_probes(monkeypatch)
    monkeypatch.setattr(hdf5_probe, "_PROBE", child)
    path = tmp_path / "x.emd"
    write_velox(path, _frames(), pixel_size_m=1e-10, timestamps_us=[0, 1e5, 2e5, 3e5])
    with pytest.raises(MovieReadError) as e:
        hdf5_probe.check_hdf5(path, timeout_s=1.0)
    print(e.value)
    assert str(e.value).startswith(f"{path}: damaged HDF5 file") and expected in str(e.value)


def test_hdf5_probe_that_cannot_start_python_reads_in_process(tmp_path, monkeypatch):
    from temtrack.io import hdf5_probe

    _count_probes(monkeypatch)
    monkeypatch.setattr(hdf5_probe, "_PROBE", "raise SystemExit(1)")   # no 'started': e.g. frozen app
    path = tmp_path / "x.emd"
    write_velox(path, _frames(), pixel_size_m=1e-10, timestamps_us=[0, 1e5, 2e5, 3e5])
    assert hdf5_probe.check_hdf5(path) is None
    assert read_rsciio(path, format="emd").n_frames == 4


def test_hdf5_probe_finds_uncompressed_data_larger_than_the_file(tmp_path, monkeypatch):
    """Campaign emd case 3839: a bit flip made a 3 x 3 image (32771, 3) with chunks (3, 3):
    opening took 4 s and a frame 27 s through 10,924 dask chunks of missing data."""
    from temtrack.io import hdf5_probe

    _count_probes(monkeypatch)
    path = tmp_path / "big.emd"
    with h5py.File(path, "w") as f:
        f.create_dataset("Data/Image/0/Data", shape=(3000, 3000, 1), dtype="int32", chunks=(3, 3, 1))
        f["Data/Image/0/Data"][:3, :3, 0] = 1
    with pytest.raises(MovieReadError, match=r"big\.emd: damaged HDF5 file \(dataset 'Data/Image/0/Data' "
                                             r"declares \(3000, 3000, 1\) int32 = 36000000 bytes"):
        hdf5_probe.check_hdf5(path)
