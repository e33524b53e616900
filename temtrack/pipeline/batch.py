"""Batch runs: one recipe over many movies, past bad files, resumable.

Each movie gets its own results folder ``<out>/<movie name>``, written atomically by its pipeline.
A movie whose folder already holds ``results.json`` is skipped, so a batch killed at file 37
resumes at file 37. The summary table (``summary.csv`` and ``summary.json``, one row per movie with
its status and key numbers) is rewritten atomically after every movie.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from temtrack.errors import Cancelled, ParameterError, TemtrackError
from temtrack.io.results import write_csv_atomic, write_json_atomic

SUMMARY_COLUMNS = ("movie", "status", "message", "results_dir", "seconds", "model", "D_nm2_per_s",
                   "D_cm2_per_s", "k_nm_per_s", "n", "t0_s", "pristine_nm", "sodiated_nm", "onsets_s")


@dataclass
class BatchSummary:
    rows: list[dict] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.rows)


def _folder_names(movies: list[Path]) -> list[str]:
    """Unique, file-system-safe folder names from movie names (``a.dm4`` -> ``a``)."""
    names, seen = [], {}
    for m in movies:
        base = re.sub(r"[^\w.-]+", "_", m.name.split(".")[0] or m.name) or "movie"
        k = seen.get(base, 0)
        seen[base] = k + 1
        names.append(base if k == 0 else f"{base}_{k + 1}")
    return names


def _key_numbers(results: dict) -> dict:
    k = results.get("kinetics") or {}
    d = results.get("diameter") or {}
    onsets = results.get("onsets_s")
    return {"model": k.get("model"), "D_nm2_per_s": k.get("D_nm2_per_s"), "D_cm2_per_s": k.get("D_cm2_per_s"),
            "k_nm_per_s": k.get("k_nm_per_s"), "n": k.get("n"), "t0_s": k.get("t0_s"),
            "pristine_nm": d.get("pristine_nm"), "sodiated_nm": d.get("sodiated_nm"),
            "onsets_s": ";".join(f"{p}={'' if t is None else f'{t:.4g}'}" for p, t in onsets.items())
            if isinstance(onsets, dict) else None}


def run_batch(recipe, movies, out_dir, *, open_movie: Callable | None = None, executor=None,
              progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
              on_movie: Callable[[dict], None] | None = None) -> BatchSummary:
    """Run ``recipe`` over ``movies``, writing ``<out_dir>/<name>/`` per movie and a summary table.

    Parameters
    ----------
    recipe : Recipe
        Any pipeline's recipe (its ``kind`` picks the pipeline).
    movies : sequence of path-like
    out_dir : path-like
    open_movie : callable, optional
        ``open_movie(path) -> Movie`` (default :func:`temtrack.io.open_movie`).
    executor, progress, cancel
        As for the pipelines; ``progress`` counts movies.
    on_movie : callable, optional
        Called with each summary row as soon as that movie is done (the CLI prints it).

    Returns
    -------
    BatchSummary
    """
    from temtrack.pipeline.registry import get_pipeline
    if open_movie is None:
        from temtrack.io import open_movie
    movies = [Path(m) for m in movies]
    if not movies:
        raise ParameterError("batch needs at least one movie")
    _, run, write = get_pipeline(recipe.kind)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary()
    for i, (movie_path, name) in enumerate(zip(movies, _folder_names(movies))):
        if cancel is not None and cancel.is_set():
            raise Cancelled("batch cancelled")
        target = out_dir / name
        row = {c: None for c in SUMMARY_COLUMNS}
        row.update(movie=str(movie_path), results_dir=str(target))
        started = time.perf_counter()
        if (target / "results.json").is_file():
            row.update(status="skipped", message="results already present (resumed batch)")
            row.update(_key_numbers(_read_json(target / "results.json")))
        else:
            try:
                movie = open_movie(movie_path)
                result = run(movie, recipe, executor=executor, cancel=cancel)
                write(result, target, overwrite=True)
                problems = list(getattr(result, "warnings", None) or getattr(result, "problems", None) or [])
                row.update(status="ok" if not problems else "ok-with-warnings", message="; ".join(problems)[:500])
                row.update(_key_numbers(result.to_json()))
            except (KeyboardInterrupt, Cancelled):
                raise
            except TemtrackError as exc:
                row.update(status="failed", message=str(exc))
            except Exception as exc:  # noqa: BLE001 - a night-long batch must not die on one movie
                row.update(status="failed", message=f"internal error {type(exc).__name__}: {exc}")
        row["seconds"] = round(time.perf_counter() - started, 3)
        summary.rows.append(row)
        _write_summary(out_dir, summary)
        if on_movie is not None:
            on_movie(row)
        if progress is not None:
            progress(i + 1, len(movies))
    return summary


def _read_json(path: Path) -> dict:
    import json
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_summary(out_dir: Path, summary: BatchSummary) -> None:
    write_csv_atomic(out_dir / "summary.csv", {c: ["" if r[c] is None else r[c] for r in summary.rows]
                                               for c in SUMMARY_COLUMNS})
    write_json_atomic(out_dir / "summary.json", {"movies": summary.rows})
