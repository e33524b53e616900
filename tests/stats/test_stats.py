"""Pooling results.json files of analyze (one wire or several) and particles runs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from temtrack.errors import ParameterError
from temtrack.stats import pool_results, run_stats, summarize


def _wire_block(D, k, n, ve, d0, d1):
    return {
        "kinetics": {"model": "parabolic", "D_nm2_per_s": D, "k_nm_per_s": k, "n": n, "t0_s": 1.0,
                     "ci95": {"D_nm2_per_s": [0.8 * D, 1.2 * D], "k_nm_per_s": None, "n": None, "t0_s": [0.5, 1.5]}},
        "expansion": {"volume_expansion_no_axial_strain": ve, "volume_expansion_with_axial_strain": None,
                      "radial_expansion_rate_nm_per_s": 0.5, "d0_nm": d0, "d1_nm": d1,
                      "ci95": {"volume_expansion_no_axial_strain": [ve - 0.05, ve + 0.05]}},
        "diameter": {"pristine_nm": d0, "sodiated_nm": d1},
    }


def _particle(i, d0, ve, cracked):
    return {"id": i, "time_s": [0, 1, 2], "area_nm2": [1, 1, 1], "equivalent_diameter_nm": [d0, d0, d0],
            "volume_expansion": [0, ve / 2, ve], "onset_s": 0.5, "final_volume_expansion": ve,
            "initial_equivalent_diameter_nm": d0, "cracked": cracked, "expansion_rate_nm_per_s": 0.1}


@pytest.fixture
def files(tmp_path):
    single = {**_wire_block(100.0, None, 0.5, 1.5, 40.0, 63.2), "provenance": {"file": "a.dm4"}}
    multi = {"kinetics": {"model": None}, "wires": [{"id": 1, **_wire_block(200.0, None, 0.5, 1.7, 50.0, 82.0)},
                                                    {"id": 2, **_wire_block(400.0, 2.0, 0.62, 1.9, 60.0, 101.0)}]}
    parts = {"kind": "particles", "particles": [_particle(0, 20.0, 1.2, False), _particle(1, 60.0, 1.4, True)]}
    paths = []
    for name, obj in (("single", single), ("multi", multi), ("parts", parts)):
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_text(json.dumps(obj))
        paths.append(d / "results.json" if name != "multi" else d)  # folders are accepted too
    return paths


def test_pool_rows_and_summary(files, tmp_path):
    table = pool_results(files)
    objs = [(r["kind"], r["object"]) for r in table.rows]
    print(objs)
    assert objs == [("wire", "wire"), ("wire", "wire 1"), ("wire", "wire 2"), ("particle", "particle 0"),
                    ("particle", "particle 1")]
    assert table.rows[0]["D_ci95_lo"] == pytest.approx(80.0) and table.rows[0]["size_nm"] == 40.0
    assert table.rows[2]["k_nm_per_s"] == 2.0 and table.rows[2]["n"] == 0.62
    assert table.rows[4]["cracked"] is True and table.rows[4]["size_nm"] == 60.0
    s = summarize(table)
    D = np.array([100.0, 200.0, 400.0])
    assert s["all"]["D_nm2_per_s"]["count"] == 3
    assert s["all"]["D_nm2_per_s"]["mean"] == pytest.approx(D.mean())
    assert s["all"]["D_nm2_per_s"]["std"] == pytest.approx(D.std(ddof=1))
    assert s["all"]["D_nm2_per_s"]["median"] == 200.0
    assert s["all"]["D_nm2_per_s"]["iqr"] == pytest.approx(np.percentile(D, 75) - np.percentile(D, 25))
    ve = np.array([1.5, 1.7, 1.9, 1.2, 1.4])
    assert s["all"]["volume_expansion"]["mean"] == pytest.approx(ve.mean())
    assert s["particle"]["volume_expansion"]["median"] == pytest.approx(1.3)
    assert s["wire"]["n"]["mean"] == pytest.approx(np.mean([0.5, 0.5, 0.62]))
    assert s["particle_cracked_fraction"] == 0.5
    print("summary D:", s["all"]["D_nm2_per_s"])


def test_run_stats_writes_files(files, tmp_path):
    out = tmp_path / "stats"
    table = run_stats(files, out)
    assert len(table.rows) == 5
    lines = (out / "stats.csv").read_text().splitlines()
    assert len(lines) == 6 and lines[0].startswith("source,kind,object,id")
    data = json.loads((out / "stats.json").read_text())
    assert data["summary"]["n_objects"] == 5 and len(data["objects"]) == 5
    for name in ("D_per_object.png", "expansion_vs_size.png"):
        assert (out / name).stat().st_size > 1000
    with pytest.raises(Exception):
        run_stats(files, out)  # exists and overwrite not given
    run_stats(files, out, overwrite=True)


def test_bad_inputs(tmp_path):
    with pytest.raises(ParameterError):
        pool_results([])
    with pytest.raises(ParameterError):
        pool_results([tmp_path / "missing.json"])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"kind": "rings", "rings": {}}))
    with pytest.raises(ParameterError):
        pool_results([other])
