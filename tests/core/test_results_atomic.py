import json

import numpy as np
import pytest

from temtrack.errors import TemtrackError
from temtrack.io.results import OutputFolder, write_csv_atomic, write_json_atomic


def test_json_nan_becomes_null_and_numpy_is_converted(tmp_path):
    p = write_json_atomic(tmp_path / "r.json", {"a": np.float32(1.5), "b": float("nan"), "c": np.arange(3),
                                                "d": {"e": np.int64(2), "f": [np.inf]}})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": None, "c": [0, 1, 2], "d": {"e": 2, "f": [None]}}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]  # no temp file left


def test_csv_columns(tmp_path):
    p = write_csv_atomic(tmp_path / "t.csv", {"time_s": [0.0, 0.5], "position_nm": [1.25, float("nan")]})
    assert p.read_text().splitlines() == ["time_s,position_nm", "0.0,1.25", "0.5,"]
    with pytest.raises(ValueError, match="different lengths"):
        write_csv_atomic(tmp_path / "u.csv", {"a": [1], "b": [1, 2]})


def test_output_folder_is_all_or_nothing(tmp_path):
    out = tmp_path / "res"
    with OutputFolder(out) as stage:
        write_json_atomic(stage / "results.json", {"v": 1})
        assert not out.exists()
    assert json.loads((out / "results.json").read_text()) == {"v": 1}

    with pytest.raises(TemtrackError, match="--overwrite"):
        OutputFolder(out)
    with pytest.raises(KeyboardInterrupt):
        with OutputFolder(out, overwrite=True) as stage:
            write_json_atomic(stage / "results.json", {"v": 2})
            raise KeyboardInterrupt
    # interrupted: the previous complete results are still there, no staging debris
    assert json.loads((out / "results.json").read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]

    with OutputFolder(out, overwrite=True) as stage:
        write_json_atomic(stage / "results.json", {"v": 3})
    assert json.loads((out / "results.json").read_text()) == {"v": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]
