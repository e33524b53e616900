"""TIFF reader: ImageJ/OME/DM calibration, lazy pixels, colour conversion and bad files."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import tifffile

from temtrack.errors import MovieReadError
from temtrack.io.lazy import LazyFrames
from temtrack.io.tiff import read_tiff
from temtrack.synthetic import save_movie_tiff

try:
    from ._real_files_b import DM_TIFF, real_path
except ImportError:
    from _real_files_b import DM_TIFF, real_path


def _stack(n=5, rows=24, cols=31, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, rows, cols)) * 4000).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("pixel_size, unit", [(0.37, "nm"), (0.0125, "1/nm")])
def test_synthetic_writer_round_trip(tmp_path, dtype, pixel_size, unit):
    frames = _stack(dtype=dtype)
    path = tmp_path / "m.tif"
    save_movie_tiff(path, frames, pixel_size=pixel_size, pixel_unit=unit, frame_interval_s=0.04)
    movie = read_tiff(path)
    assert movie.format == "tiff"
    assert isinstance(movie.frames, np.memmap)  # uncompressed contiguous: memory-mapped, not read
    assert movie.frames.dtype == dtype and movie.frame_shape == (24, 31) and movie.n_frames == 5
    np.testing.assert_array_equal(movie.frames[:], frames)
    assert movie.pixel_unit == unit
    assert movie.pixel_size == pytest.approx(pixel_size, rel=1e-6)
    np.testing.assert_allclose(movie.times_s, np.arange(5) * 0.04)
    assert movie.time_source == "axis"
    assert movie.problems == []
    again = pickle.loads(pickle.dumps(movie))
    np.testing.assert_array_equal(again.read(), frames.astype(np.float32))
    assert again.pixel_size == movie.pixel_size


@pytest.mark.parametrize("unit, factor_nm", [("nm", 1.0), ("\\u00B5m", 1e3), ("micron", 1e3), ("um", 1e3),
                                             ("A", 0.1), ("pm", 1e-3)])
def test_imagej_units(tmp_path, unit, factor_nm):
    path = tmp_path / "u.tif"
    tifffile.imwrite(path, _stack(n=3), imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "TYX", "unit": unit, "finterval": 2.0, "tunit": "ms"})
    movie = read_tiff(path)
    assert movie.pixel_unit == "nm"
    assert movie.pixel_size == pytest.approx(0.25 * factor_nm, rel=1e-6)
    np.testing.assert_allclose(movie.times_s, [0, 0.002, 0.004])


def test_imagej_without_calibration_and_slice_spacing(tmp_path):
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, _stack(n=4), imagej=True, metadata={"axes": "ZYX", "spacing": 0.5, "unit": "pixel"})
    movie = read_tiff(path)
    assert movie.pixel_size is None and movie.pixel_unit is None and movie.times_s is None
    assert movie.time_source == "none"
    assert any(p.startswith("no spatial calibration") for p in movie.problems)
    assert any(p.startswith("no frame timing") for p in movie.problems)
    assert any("spacing" in p and "not a frame interval" in p for p in movie.problems)


def test_ome_per_plane_delta_t_and_physical_size(tmp_path):
    frames = _stack(n=4)
    delta_t = [0.0, 0.1, 0.25, 0.45]  # not uniform: must be kept frame by frame
    path = tmp_path / "o.ome.tif"
    tifffile.imwrite(path, frames, ome=True, photometric="minisblack",
                     metadata={"axes": "TYX", "PhysicalSizeX": 2.5, "PhysicalSizeXUnit": "Å",
                               "PhysicalSizeY": 2.5, "PhysicalSizeYUnit": "Å",
                               "Plane": {"DeltaT": delta_t, "DeltaTUnit": ["s"] * 4}})
    movie = read_tiff(path)
    np.testing.assert_array_equal(movie.read(), frames.astype(np.float32))
    assert movie.pixel_size == pytest.approx(0.25) and movie.pixel_unit == "nm"
    np.testing.assert_allclose(movie.times_s, delta_t)
    assert movie.time_source == "timestamps" and movie.times_uniform is False


def test_ome_time_increment(tmp_path):
    path = tmp_path / "o2.ome.tif"
    tifffile.imwrite(path, _stack(n=3), ome=True, photometric="minisblack",
                     metadata={"axes": "TYX", "PhysicalSizeX": 0.002, "PhysicalSizeXUnit": "µm",
                               "TimeIncrement": 50, "TimeIncrementUnit": "ms"})
    movie = read_tiff(path)
    assert movie.pixel_size == pytest.approx(2.0)
    np.testing.assert_allclose(movie.times_s, [0, 0.05, 0.1])
    assert movie.time_source == "axis"


def test_compressed_pages_are_read_on_demand(tmp_path):
    frames = _stack(n=6)
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, frames, compression="zlib", photometric="minisblack")
    movie = read_tiff(path)
    assert isinstance(movie.frames, LazyFrames)
    np.testing.assert_array_equal(movie.frames[4], frames[4])
    np.testing.assert_array_equal(movie.frames[1:5:2], frames[1:5:2])
    np.testing.assert_array_equal(movie.read(), frames.astype(np.float32))
    assert movie.pixel_size is None and movie.times_s is None


def test_resolution_tags_in_centimetres(tmp_path):
    path = tmp_path / "cm.tif"
    # 1e6 pixels per cm = 10 nm per pixel
    tifffile.imwrite(path, _stack(n=2), photometric="minisblack", resolution=(1e6, 1e6), resolutionunit="CENTIMETER")
    movie = read_tiff(path)
    assert movie.pixel_size == pytest.approx(10.0) and movie.pixel_unit == "nm"


def test_rgb_converted_to_luminance(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, size=(3, 10, 12, 3), dtype=np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    movie = read_tiff(path)
    expected = 0.2125 * rgb[..., 0] + 0.7154 * rgb[..., 1] + 0.0721 * rgb[..., 2]
    assert movie.dtype == np.float32 and movie.frame_shape == (10, 12)
    np.testing.assert_allclose(movie.read(), expected, rtol=1e-5)
    assert any("luminance" in p for p in movie.problems)


def test_multichannel_refused(tmp_path):
    path = tmp_path / "ch.tif"
    tifffile.imwrite(path, np.zeros((3, 2, 8, 8), np.uint16), imagej=True, metadata={"axes": "TCYX"})
    with pytest.raises(MovieReadError, match="2 channels"):
        read_tiff(path)


def test_complex_refused(tmp_path):
    path = tmp_path / "cx.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.complex64))
    with pytest.raises(MovieReadError, match="complex pixels"):
        read_tiff(path)


@pytest.mark.parametrize("keep", [0.5, 0.015])
def test_truncated_tiff(tmp_path, keep):
    full = tmp_path / "full.tif"
    save_movie_tiff(full, _stack(n=6, rows=32, cols=32), pixel_size=0.5, frame_interval_s=0.1)
    data = full.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MovieReadError, match=r"cut\.tif: truncated"):
        read_tiff(cut)


def test_truncated_compressed_tiff(tmp_path):
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, _stack(n=6, rows=32, cols=32), compression="zlib", photometric="minisblack")
    cut = tmp_path / "cut.tif"
    cut.write_bytes(full.read_bytes()[:-40])
    with pytest.raises(MovieReadError, match=r"cut\.tif: truncated or corrupt"):
        read_tiff(cut)


def test_random_bytes_and_missing_and_empty(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(MovieReadError, match=r"junk\.tif: not a readable TIFF file"):
        read_tiff(junk)
    with pytest.raises(MovieReadError, match="file not found"):
        read_tiff(tmp_path / "nope.tif")
    empty = tmp_path / "empty.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(empty, np.zeros((0, 4, 5), np.uint8))
    with pytest.raises(MovieReadError, match=r"empty\.tif: empty stack"):
        read_tiff(empty)


def test_real_dm_exported_tiff():
    path = real_path(DM_TIFF)
    movie = read_tiff(path)
    assert movie.n_frames == 2 and movie.frame_shape == (68, 68) and movie.dtype == np.float32
    np.testing.assert_array_equal(movie.read(), tifffile.imread(path))
    # DM's tags: x (width) 0.1687 um/px, y (height) 1.687 um/px: x is kept, both recorded, reported
    assert movie.pixel_unit == "nm"
    assert movie.pixel_size == pytest.approx(168.674, rel=1e-4)
    assert movie.original_metadata["pixel_size_y"] == pytest.approx(1686.74, rel=1e-4)
    assert any("unequal pixel sizes" in p for p in movie.problems)
    np.testing.assert_allclose(movie.times_s, [0.0, 2.5])
    assert movie.time_source == "axis"
    json.dumps(movie.original_metadata, allow_nan=False)


def test_imagej_hyperstack_axes_flattened_and_reported(tmp_path):
    data = _stack(n=6).reshape(2, 3, 24, 31)
    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    movie = read_tiff(path)
    assert movie.n_frames == 6
    np.testing.assert_array_equal(movie.frames[4], data[1, 1])
    assert any("T x Z read as one frame axis" in p for p in movie.problems)


def test_hyperspy_written_tiff_space_from_imagej_time_from_dm_tags(tmp_path):
    from rsciio.tiff import file_writer

    frames = _stack(n=3, rows=4, cols=5).astype(np.float32)
    axes = [{"name": "time", "size": 3, "scale": 0.5, "offset": 0, "units": "s", "navigate": True},
            {"name": "y", "size": 4, "scale": 2.0, "offset": 0, "units": "Å", "navigate": False},
            {"name": "x", "size": 5, "scale": 2.0, "offset": 0, "units": "Å", "navigate": False}]
    path = tmp_path / "hs.tif"
    # what HyperSpy's Signal2D.save('x.tif') calls: ImageJ 'unit'/'spacing' + DM tags 65003-65011
    file_writer(str(path), {"data": frames, "axes": axes, "metadata": {"General": {"title": "t"}, "Signal": {}},
                            "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False}})
    movie = read_tiff(path)
    np.testing.assert_array_equal(movie.read(), frames)
    assert movie.pixel_size == pytest.approx(0.2) and movie.pixel_unit == "nm"
    np.testing.assert_allclose(movie.times_s, [0, 0.5, 1.0])
    assert movie.problems == []


def _set_tags(path, values: dict) -> None:
    """Overwrite tags of the first IFD of a little-endian classic TIFF with LONG values."""
    import struct

    data = bytearray(path.read_bytes())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * k
        tag = struct.unpack_from("<H", data, entry)[0]
        if tag in values:
            struct.pack_into("<HHII", data, entry, tag, 4, 1, values[tag])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("tags, says", [
    ({257: 67108880}, "needs 4194305 strips or tiles, the file gives 1"),           # ImageLength only
    ({257: 67108880, 278: 0xFFFFFFFF}, "cannot come from the"),                      # and RowsPerStrip
])
def test_frame_size_impossible_for_its_strips(tmp_path, tags, says):
    """Campaign tiff case 1087: a bit flip in ImageLength of a 1 kB zlib TIFF announced 67108880
    rows; reading frame 0 then took 150 s and 5.4 GB before the decoder failed. Now the strip count
    and the codec's largest decoded/stored ratio are checked at open."""
    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, np.arange(3 * 16 * 16, dtype=np.uint8).reshape(3, 16, 16), compression="zlib",
                     photometric="minisblack", rowsperstrip=16)
    _set_tags(p, tags)
    with pytest.raises(MovieReadError) as e:
        read_tiff(p)
    print(e.value)
    assert str(e.value).startswith(f"{p}: corrupt TIFF: frame 0 of 67108880x16 pixels") and says in str(e.value)


def test_ifd_chain_loop_refused(tmp_path):
    """Campaign tiff case 423: a next-IFD offset pointing back to an earlier page made tifffile
    list pages for ever (it looks for loops once, at page 100, and only when counting)."""
    import struct

    from temtrack.io.tiff import ifd_chain_loop

    p = tmp_path / "loop.tif"
    tifffile.imwrite(p, np.zeros((150, 4, 4), np.uint8), photometric="minisblack", metadata=None)
    with tifffile.TiffFile(p) as tif:
        offsets = [page.offset for page in tif.pages]
    assert ifd_chain_loop(p) is None
    data = bytearray(p.read_bytes())
    last = offsets[-1]
    struct.pack_into("<I", data, last + 2 + 12 * struct.unpack_from("<H", data, last)[0], offsets[120])
    p.write_bytes(bytes(data))
    with pytest.raises(MovieReadError, match=r"loop\.tif: corrupt TIFF \(its chain of image directories "
                                             r"loops: page 150 points back to page 120"):
        read_tiff(p)
