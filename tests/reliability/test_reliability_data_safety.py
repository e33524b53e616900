"""Data safety: inputs never touched, outputs staged and renamed, no overwrite without --overwrite,
and SIGINT / SIGTERM mid-run leave either the previous state or complete results.

Every command runs as ``python -m temtrack`` (or the same ``main`` under an audit hook that logs any
Python-level open of an input with a write mode), on small synthetic movies.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from _reliability_helpers import cli_command, run_cli


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def debris(parent: Path, name: str) -> list[str]:
    """Staging folders, old-folder backups and temporary files a run may leave behind."""
    left = [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]
    left += [str(p) for p in parent.rglob("*.tmp")]
    return left


def assert_complete(out: Path, reference: set[str] | None = None):
    assert (out / "results.json").is_file(), sorted(p.name for p in out.iterdir())
    json.loads((out / "results.json").read_text())
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert all((out / f).stat().st_size > 0 for f in files), "an empty file in a published folder"
    if reference is not None:
        assert files == reference, files ^ reference


@pytest.fixture(scope="module")
def inputs(rel_movies, tmp_path_factory):
    """Copies of the movies in a folder made read-only (files 0444, folder 0555)."""
    d = tmp_path_factory.mktemp("inputs")
    out = {}
    for k in ("nanowire", "saed", "hrtem"):
        out[k] = Path(shutil.copy(rel_movies[k], d / Path(rel_movies[k]).name))
        out[k].chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    out["line"] = rel_movies["line"]
    d.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    yield out
    d.chmod(stat.S_IRWXU)


@pytest.fixture(scope="module")
def full_runs(inputs, tmp_path_factory):
    """info, analyze, rings, fft and a batch on the read-only inputs, all at once, under the audit."""
    work = tmp_path_factory.mktemp("runs")
    line = ",".join(map(str, inputs["line"]))
    recipe = work / "batch.json"
    recipe.write_text(json.dumps({"kind": "analyze", "line": inputs["line"]}))
    commands = {
        "info": ["info", inputs["hrtem"], "--json"],
        "analyze": ["analyze", inputs["nanowire"], "--line", line, "--out", work / "analyze", "-q"],
        "rings": ["rings", inputs["saed"], "--out", work / "rings", "-q"],
        "fft": ["fft", inputs["hrtem"], "--out", work / "fft", "-q"],
        "batch": ["-q", "batch", recipe, inputs["nanowire"], inputs["hrtem"], "--out", work / "batch"],
    }
    watched = [inputs[k] for k in ("nanowire", "saed", "hrtem")]
    before = {str(p): (sha256(p), p.stat().st_mtime_ns) for p in watched}
    procs = {}
    for name, args in commands.items():
        argv, env = cli_command(*args, watch=[Path(inputs["hrtem"]).parent], audit_log=work / f"{name}.audit")
        procs[name] = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=600)
        audit = (work / f"{name}.audit").read_text() if (work / f"{name}.audit").exists() else ""
        results[name] = {"rc": p.returncode, "stdout": stdout, "stderr": stderr, "audit": audit}
    after = {str(p): (sha256(p), p.stat().st_mtime_ns) for p in watched}
    return {"work": work, "results": results, "before": before, "after": after, "commands": commands}


def test_inputs_unchanged_and_opened_read_only(full_runs):
    for name, r in full_runs["results"].items():
        print(f"{name}: rc={r['rc']} {r['stderr'].strip().splitlines()[-1:]}")
        assert "Traceback" not in r["stderr"], r["stderr"]
        assert r["audit"] == "", f"{name} opened an input for writing: {r['audit']}"
    assert full_runs["before"] == full_runs["after"]
    res = full_runs["results"]
    assert res["info"]["rc"] == 0 and json.loads(res["info"]["stdout"])["n_frames"] == 8
    for name in ("analyze", "rings", "fft"):
        assert res[name]["rc"] == 0, res[name]["stderr"]
        assert_complete(full_runs["work"] / name)
        assert debris(full_runs["work"], name) == []
    # batch: the nanowire movie analyses, the HRTEM movie may fail (no wire) but must not stop it
    assert res["batch"]["rc"] in (0, 1)
    rows = list(csv.DictReader(open(full_runs["work"] / "batch" / "summary.csv")))
    assert [Path(r["movie"]).name for r in rows] == ["nanowire.tif", "hrtem.tif"]
    assert rows[0]["status"].startswith("ok")
    assert rows[1]["status"] in ("ok", "ok-with-warnings", "failed")
    assert_complete(full_runs["work"] / "batch" / "nanowire")


def test_existing_output_not_overwritten_without_flag(full_runs, inputs):
    out = full_runs["work"] / "fft"
    before = tree_digest(out)
    r = run_cli("fft", inputs["hrtem"], "--out", out, "-q")
    assert r.returncode == 2, r.stderr
    assert "--overwrite" in r.stderr and str(out.name) in r.stderr and "Traceback" not in r.stderr
    assert tree_digest(out) == before
    r = run_cli("fft", inputs["hrtem"], "--out", out, "-q", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert_complete(out, set(before))
    assert debris(out.parent, out.name) == []


def test_existing_output_refused_before_computing(full_runs, inputs):
    out = full_runs["work"] / "rings"
    r = run_cli("rings", inputs["saed"], "--out", out)
    assert r.returncode == 2
    assert "%|" not in r.stderr, "the movie was processed before the refusal"


# -- signals ---------------------------------------------------------------------------------------
class _Run:
    """A CLI subprocess whose stderr is collected as it comes (tqdm writes \\r, not lines)."""

    def __init__(self, *args):
        argv, env = cli_command(*args)
        self.p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err = bytearray()
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def _pump(self):
        while chunk := self.p.stderr.read1(4096):
            self.err += chunk

    def stderr(self) -> str:
        return self.err.decode("utf-8", "replace")

    def wait_for(self, predicate, timeout=240) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.p.poll() is None:
            if predicate():
                return True
            time.sleep(0.002)
        return False

    def finish(self, timeout=120) -> int:
        rc = self.p.wait(timeout)
        self.t.join(5)
        return rc


def _interrupt(args, out: Path, sig, when: str):
    run = _Run(*args)
    if when == "progress":
        caught = run.wait_for(lambda: "%|" in run.stderr())
    else:  # the staging folder holds a first file: the results are being written
        # (signalling the instant the folder appears hits OutputFolder.__enter__ itself: see
        # test_interrupt_right_after_staging_folder_is_made)
        caught = run.wait_for(lambda: any(p.is_dir() and any(p.iterdir())
                                          for p in out.parent.glob(f".{out.name}.partial-*")))
    if caught:
        run.p.send_signal(sig)
    rc = run.finish()
    return rc, run.stderr(), caught


@pytest.mark.parametrize("verb,sig,when", [
    ("analyze", signal.SIGINT, "progress"),
    ("analyze", signal.SIGTERM, "staging"),
    ("rings", signal.SIGTERM, "progress"),
])
def test_signal_leaves_no_partial_results(rel_movies, tmp_path, verb, sig, when):
    if verb == "analyze":
        args = ["analyze", rel_movies["nanowire"], "--line", ",".join(map(str, rel_movies["line"]))]
    else:
        args = ["rings", rel_movies["saed"]]
    out = tmp_path / "out"
    rc, stderr, caught = _interrupt([*args, "--out", out, "--memory-budget-mb", "1"], out, sig, when)
    print(f"{verb} {sig.name} at {when}: caught={caught} rc={rc} exists={out.exists()}")
    assert "Traceback" not in stderr, stderr
    assert caught, f"the run ended before the {when} point"
    assert rc in (0, 130), stderr[-500:]
    if rc == 130:
        assert "interrupted" in stderr
        assert not out.exists(), "an interrupted run left a results folder"
    else:  # the signal came after the rename: complete results
        assert_complete(out)
    assert debris(tmp_path, "out") == []


def test_signal_during_overwrite_keeps_previous_results(rel_movies, tmp_path):
    """With --overwrite, an interrupted run leaves the old folder exactly as it was."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"previous": true}\n')
    (out / "notes.txt").write_text("earlier run\n")
    before = tree_digest(out)
    args = ["rings", rel_movies["saed"], "--out", out, "--overwrite", "--memory-budget-mb", "1"]
    rc, stderr, caught = _interrupt(args, out, signal.SIGINT, "staging")
    print(f"overwrite + SIGINT at staging: caught={caught} rc={rc}")
    assert caught and "Traceback" not in stderr
    if rc == 130:
        assert tree_digest(out) == before
    else:
        assert rc == 0
        assert_complete(out)
    assert debris(tmp_path, "out") == []


def test_batch_interrupted_then_resumed(rel_movies, tmp_path):
    movies = tmp_path / "movies"
    movies.mkdir()
    paths = [Path(shutil.copy(rel_movies["nanowire"], movies / f"{n}.tif")) for n in ("first", "second")]
    digests = {p: sha256(p) for p in paths}
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"kind": "analyze", "line": rel_movies["line"], "memory_budget_mb": 4}))
    out = tmp_path / "batch"
    run = _Run("batch", recipe, *paths, "--out", out)
    caught = run.wait_for(lambda: "first.tif" in run.stderr())   # first movie's status line
    assert caught, run.stderr()
    run.p.send_signal(signal.SIGINT)
    rc = run.finish()
    stderr = run.stderr()
    print(f"batch SIGINT after the first movie: rc={rc}")
    assert "Traceback" not in stderr
    assert rc in (0, 130)
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert rows[0]["status"].startswith("ok") and Path(rows[0]["movie"]).name == "first.tif"
    assert_complete(out / "first")
    if rc == 130:
        assert len(rows) == 1
        assert not (out / "second").exists()
    assert debris(out, "first") == [] and debris(out, "second") == [] and debris(out, "summary.csv") == []
    first_digest = tree_digest(out / "first")

    r = run_cli("batch", recipe, *paths, "--out", out)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [Path(r["movie"]).name for r in rows] == ["first.tif", "second.tif"]
    assert rows[0]["status"] == "skipped"
    assert rows[1]["status"].startswith("ok") or (rc == 0 and rows[1]["status"] == "skipped")
    assert tree_digest(out / "first") == first_digest      # a resumed batch does not redo or touch it
    assert_complete(out / "second")
    assert {p: sha256(p) for p in paths} == digests
    summary = json.loads((out / "summary.json").read_text())
    assert [Path(m["movie"]).name for m in summary["movies"]] == ["first.tif", "second.tif"]


# -- the two narrow windows of OutputFolder, made deterministic ---------------------------------------
def test_interrupt_right_after_staging_folder_is_made(tmp_path, monkeypatch):
    import pathlib

    import temtrack.io.results as results
    real = pathlib.Path.mkdir

    def mkdir_then_interrupt(self, *a, **k):
        real(self, *a, **k)
        if ".partial-" in self.name:
            raise KeyboardInterrupt
    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        with results.OutputFolder(tmp_path / "out") as stage:
            (stage / "results.json").write_text("{}")
    assert debris(tmp_path, "out") == []


def test_interrupt_between_the_publish_renames(tmp_path, monkeypatch):
    import temtrack.io.results as results
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"previous": true}')
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, dst)
    with pytest.raises(KeyboardInterrupt):
        with results.OutputFolder(out, overwrite=True) as stage:
            monkeypatch.setattr(results.os, "replace", replace)
            (stage / "results.json").write_text('{"new": true}')
    monkeypatch.undo()
    assert (out / "results.json").is_file(), "neither the previous nor the new results are at <out>"
    assert debris(tmp_path, "out") == []
