"""`temtrack info` and `temtrack synth` through the real entry point (subprocess) and main()."""
import json
import subprocess
import sys

import numpy as np
import pytest

from temtrack.cli import main
from temtrack.synthetic import save_movie_tiff


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "temtrack", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def tiff_movie(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "movie.tif"
    frames = np.random.default_rng(0).poisson(20, (7, 40, 48)).astype(np.uint16)
    save_movie_tiff(path, frames, pixel_size=0.8, pixel_unit="nm", frame_interval_s=0.25)
    return path


def test_info_json_contract(tiff_movie):
    out = run_cli("info", tiff_movie, "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    for key in ("n_frames", "frame_shape", "dtype", "pixel_size", "pixel_unit", "frame_interval_s", "duration_s",
                "format"):
        assert key in info
    assert info["n_frames"] == 7 and info["frame_shape"] == [40, 48] and info["dtype"] == "uint16"
    assert info["pixel_size"] == pytest.approx(0.8) and info["pixel_unit"] == "nm"
    assert info["frame_interval_s"] == pytest.approx(0.25) and info["duration_s"] == pytest.approx(1.5)
    assert info["format"] == "tiff"


def test_info_text_and_overrides(tiff_movie, capsys):
    assert main(["info", str(tiff_movie), "--pixel-size", "2", "--frame-interval", "1"]) == 0
    text = capsys.readouterr().out
    assert "2 nm" in text and "1 s" in text and "7" in text


def test_info_on_real_velox_stack(real_file):
    out = run_cli("info", real_file("emd_fei_example_tem_stack.emd"), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["n_frames"] == 2 and info["frame_shape"] == [3, 3]
    assert info["pixel_unit"] == "nm" and info["pixel_size"] == pytest.approx(0.00817, rel=1e-3)
    assert info["frame_interval_s"] == pytest.approx(0.799976, rel=1e-4)


@pytest.mark.parametrize("name,content,expected", [
    ("missing.dm4", None, "no such file"),
    ("junk.dm4", b"\x00\x01garbage" * 10, "junk.dm4"),
    ("empty.tif", b"", "empty.tif"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    out = run_cli("info", path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert expected in lines[0] and lines[0].startswith("temtrack: error:")


def test_bad_option_is_exit_2():
    out = run_cli("analyze", "x.tif", "--out", "o", "--line", "1,2,3")
    assert out.returncode == 2 and "X0,Y0,X1,Y1" in out.stderr and "Traceback" not in out.stderr


def test_synth_nanowire_round_trip(tmp_path):
    target = tmp_path / "wire.tif"
    out = run_cli("synth", "nanowire", target, "--frames", "5", "--size", "96", "--seed", "3",
                  "--set", "drift_px=3", "--set", "n_jumps=0")
    assert out.returncode == 0, out.stderr
    truth = json.loads((tmp_path / "wire.truth.json").read_text())
    assert truth["n_frames"] == 5 and truth["seed"] == 3
    info = json.loads(run_cli("info", target, "--json").stdout)
    assert info["n_frames"] == 5 and info["frame_shape"] == [96, 96]
    assert info["pixel_size"] == pytest.approx(truth["pixel_size_nm"])
    assert info["frame_interval_s"] == pytest.approx(truth["frame_interval_s"])


def test_synth_rejects_unknown_parameter(tmp_path):
    out = run_cli("synth", "nanowire", tmp_path / "w.tif", "--set", "wobble=3")
    assert out.returncode == 2 and "wobble" in out.stderr
