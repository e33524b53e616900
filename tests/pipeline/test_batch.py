"""`temtrack batch`: continues past a bad movie, writes a summary, resumes."""
import csv
import json
import subprocess
import sys

import pytest

from temtrack.synthetic.hrtem import write_hrtem_movie


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    good = [write_hrtem_movie(d / f"grain{i}.tif", n_frames=8, shape=(96, 96), seed=i)[0] for i in range(2)]
    bad = d / "broken.dm4"
    bad.write_bytes(b"not a dm file at all")
    recipe = d / "recipe.json"
    recipe.write_text(json.dumps({"kind": "fft"}))
    return recipe, [good[0], bad, good[1]]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "temtrack", "-q", "batch", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def test_batch_continues_and_resumes(tmp_path, movies):
    recipe, paths = movies
    out = tmp_path / "runs"
    first = _run(recipe, *paths, "--out", out)
    assert first.returncode == 1, first.stderr          # one movie failed
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "broken.dm4" in rows[1]["message"]
    for name in ("grain0", "grain1"):
        assert (out / name / "results.json").is_file()
    second = _run(recipe, *paths, "--out", out)
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["skipped", "failed", "skipped"], second.stderr


def test_batch_rejects_recipe_without_kind(tmp_path, movies):
    _, paths = movies
    bad = tmp_path / "r.json"
    bad.write_text("{}")
    out = _run(bad, paths[0], "--out", tmp_path / "o")
    assert out.returncode == 2 and "'kind'" in out.stderr
