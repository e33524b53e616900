"""Format detection by content, and open_movie's dispatch, overrides and errors."""
from __future__ import annotations

import importlib.util
import struct

import numpy as np
import pytest

from _real_data import real_file
from temtrack.errors import MovieReadError, ParameterError
from temtrack.io import (FORMATS, SUPPORTED_FORMATS, detect_format, file_dialog_filter,
                         open_movie)
from temtrack.io.dm_write import write_dm, write_gms_insitu
from temtrack.io.frms6 import fold, write_frms6


def _tiff(p):
    import tifffile

    tifffile.imwrite(p, np.zeros((2, 4, 4), np.uint16))
    return p


def _h5(p, attrs=None, groups=()):
    h5py = pytest.importorskip("h5py")
    with h5py.File(p, "w") as f:
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        for g in groups:
            f.create_group(g)
    return p


def _ser(p):
    p.write_bytes(struct.pack("<HHH", 0x4949, 0x0197, 0x0210) + bytes(100))
    return p


def _mrc(p, with_map=True):
    head = bytearray(1024)
    head[0:12] = struct.pack("<3i", 4, 4, 2)
    if with_map:
        head[208:212] = b"MAP "
    p.write_bytes(bytes(head) + bytes(64))
    return p


MAKERS = {
    "dm4.dm4": (lambda p: write_dm(p, np.zeros((3, 3), np.uint16), version=4), "dm"),
    "dm3.dm3": (lambda p: write_dm(p, np.zeros((3, 3), np.uint16), version=3), "dm"),
    "dm_named.tif": (lambda p: write_dm(p, np.zeros((3, 3), np.uint16)), "dm"),
    "tiff.tif": (_tiff, "tiff"),
    "tiff_named.dm4": (_tiff, "tiff"),
    "npy.npy": (lambda p: np.save(p, np.zeros((2, 3, 3))), "npy"),
    "npy_noext": (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00" + bytes(60)), "npy"),
    "ser.ser": (_ser, "ser"),
    "mrc.mrc": (_mrc, "mrc"),
    "mrc_nomap.mrc": (lambda p: _mrc(p, with_map=False), "mrc"),
    "mrc_named.dat": (_mrc, "mrc"),
    "avi.avi": (lambda p: p.write_bytes(b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(50)), "video"),
    "mp4.bin": (lambda p: p.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(50)), "video"),
    "hspy.hspy": (lambda p: _h5(p, {"file_format": "HyperSpy"}, ["Experiments"]), "hspy"),
    "hspy_named.emd": (lambda p: _h5(p, {"file_format": "HyperSpy"}, ["Experiments"]), "hspy"),
    "velox.emd": (lambda p: _h5(p, {}, ["Data", "Operations", "Presentation"]), "emd"),
    "velox_named.h5": (lambda p: _h5(p, {}, ["Data", "Operations"]), "emd"),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_detect_by_content(tmp_path, name):
    make, expected = MAKERS[name]
    p = tmp_path / name
    make(p)
    assert detect_format(p) == expected


def test_folders(tmp_path):
    write_gms_insitu(tmp_path / "Rec", np.zeros((3, 4, 4), np.uint16), frame_interval_s=0.5,
                     pixel_size_nm=1.0)
    assert detect_format(tmp_path / "Rec") == "gms-insitu"
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    import imageio.v3 as iio

    for i in range(3):
        iio.imwrite(imgs / f"frame_{i:03d}.png", np.zeros((4, 4), np.uint8))
    assert detect_format(imgs) == "image-folder"
    z = tmp_path / "s.zspy"
    z.mkdir()
    (z / ".zgroup").write_text('{"zarr_format": 2}')
    assert detect_format(z) == "zspy"
    frms = tmp_path / "f"
    hdr = write_frms6(frms / "scan", fold(np.zeros((1, 8, 6), np.uint16)), None)
    assert detect_format(hdr) == "frms6"
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(MovieReadError, match=r"empty_dir: unknown movie format: a folder with 0 entries"):
        detect_format(empty)
    loose = tmp_path / "loose"
    loose.mkdir()
    write_dm(loose / "a.dm4", np.zeros((2, 2), np.uint16))
    with pytest.raises(MovieReadError, match="1 DM files outside a GMS"):
        open_movie(loose)


@pytest.mark.parametrize("content, expected", [
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "looks like a single PNG image"),
    (b"hello, this is a text file\nsecond line\n",
     "looks like a text file (starts 'hello, this is a text file')"),
    (b"\x01\x02\x03\x04\x05\x06\x07\x08" + bytes(30),
     "a binary file with extension '.xyz' starting with bytes 01 02 03 04 05 06 07 08"),
])
def test_unknown_format_says_what_it_looked_like(tmp_path, content, expected):
    p = tmp_path / "thing.xyz"
    p.write_bytes(content)
    with pytest.raises(MovieReadError) as e:
        open_movie(p)
    assert str(e.value) == f"{p}: unknown movie format: {expected}"


def test_unknown_hdf5(tmp_path):
    p = _h5(tmp_path / "other.h5", {}, ["entry"])
    with pytest.raises(MovieReadError, match=r"HDF5 file with top-level groups \['entry'\]"):
        open_movie(p)


def test_dm5_is_named(tmp_path):
    """GMS 3.6+ DM5 files are HDF5 that no reader here understands: say so, not 'unknown HDF5'."""
    p = _h5(tmp_path / "image.dm5", {}, ["ImageList", "DocumentObjectList"])
    with pytest.raises(MovieReadError, match=r"image\.dm5: DM5 files .* save the data as DM4"):
        open_movie(p)


def test_missing_and_empty(tmp_path):
    with pytest.raises(MovieReadError) as e:
        open_movie(tmp_path / "gone.emd")
    assert str(e.value) == f"{tmp_path / 'gone.emd'}: no such file or folder"
    (tmp_path / "zero.tif").write_bytes(b"")
    with pytest.raises(MovieReadError, match=r"zero\.tif: empty file \(0 bytes\)"):
        open_movie(tmp_path / "zero.tif")


def test_open_movie_options(tmp_path):
    p = write_dm(tmp_path / "a.dm4", np.ones((3, 4, 4), np.uint16))
    m = open_movie(p, pixel_size=0.02, pixel_unit="1/nm", frame_interval_s=0.5, format="dm4")
    assert (m.pixel_size, m.pixel_unit, m.frame_interval_s) == (0.02, "1/nm", 0.5)
    assert m.time_source == "user"
    with pytest.raises(ParameterError, match="unknown format 'xyz'"):
        open_movie(p, format="xyz")
    with pytest.raises(ParameterError, match="gain map applies to frms6"):
        open_movie(p, gain_map=p)
    with pytest.raises(ParameterError, match="pixel unit needs a pixel size"):
        open_movie(p, pixel_unit="nm")
    with pytest.raises(ParameterError, match="pixel unit must be"):
        open_movie(p, pixel_size=1.0, pixel_unit="px")
    with pytest.raises(ParameterError, match="positive"):
        open_movie(p, frame_interval_s=-1.0)


def test_supported_formats_cover_readers():
    assert {name for name, _, _ in SUPPORTED_FORMATS} == set(FORMATS)
    flt = file_dialog_filter()
    for ext in ("*.dm4", "*.dm3", "*.frms6", "*.hdr", "*.emd", "*.tif", "*.npy", "*.mp4"):
        assert ext in flt.split(";;")[0]


REAL = {
    "digitalmicrograph_2D_test-1.dm4": "dm",
    "digitalmicrograph_2D_test_STEM_image.dm3": "dm",
    "digitalmicrograph_3D_test-13.dm4": "dm",
    "digitalmicrograph_3D_test-23.dm4": "dm",
    "digitalmicrograph_test_stackbuilder_imagestack.dm3": "dm",
    "emd_example_image.emd": "emd",
    "emd_fei_example_tem_stack.emd": "emd",
    "tia/64x64x5_TEM_preview_1.ser": "ser",
    "tiff_test_loading_image_saved_with_DM_stack.tif": "tiff",
}


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_detected(name):
    assert detect_format(real_file(name)) == REAL[name]


@pytest.mark.real_data
@pytest.mark.parametrize("name, module", [
    ("emd_fei_example_tem_stack.emd", "temtrack.io.rsciio_generic"),
    ("tiff_test_loading_image_saved_with_DM_stack.tif", "temtrack.io.tiff"),
])
def test_real_files_dispatched(name, module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not written yet")
    m = open_movie(real_file(name))
    assert m.format == REAL[name]
    assert m.n_frames == 2
