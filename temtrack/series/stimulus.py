"""Electrochemistry and biasing logs read against the movie's time axis.

A potentiostat or biasing-holder log (CSV/TSV with a time column and current and/or voltage
columns) is read with its units (A, mA, uA, nA; V, mV; s, ms, min, h) normalised to SI, shifted by
the clock offset between the log and the movie (given, or estimated from one event marked in
both), and interpolated at the frame times. Where a current is logged, the charge passed
``Q(t) = integral I dt`` is set beside the reacted volume of the wire measured from the movie.

Hand-written because the logs are plain text tables with instrument-specific headers: ``csv.Sniffer``
finds the delimiter, and a small table of column-name patterns maps the headers. (rosettasciio's
Protochips and DENSsolutions readers give signals for their own holders' logs, not arbitrary
potentiostat exports; this reader handles both kinds of CSV.)
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from temtrack.errors import MovieReadError, ParameterError

ELEMENTARY_CHARGE_C = 1.602176634e-19

_TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0, "h": 3600.0, "hr": 3600.0}
_CURRENT_UNITS = {"a": 1.0, "ma": 1e-3, "ua": 1e-6, "µa": 1e-6, "μa": 1e-6, "na": 1e-9, "pa": 1e-12}
_VOLTAGE_UNITS = {"v": 1.0, "mv": 1e-3, "kv": 1e3}
_END = r"(?=$|[\s(\[/_])"  # a name ends at a unit bracket, a slash or a space
_KINDS = {
    "time": (re.compile(r"^(time|t|elapsed|elapsed ?time|time ?stamp|relative ?time|seconds)" + _END, re.I),
             _TIME_UNITS, "s"),
    "current": (re.compile(r"^(current|i|<i>|iwe|i_we|cur)" + _END, re.I), _CURRENT_UNITS, "a"),
    "voltage": (re.compile(r"^(voltage|potential|ewe|e|bias|v|u|we ?potential)" + _END, re.I), _VOLTAGE_UNITS, "v"),
}


@dataclass
class StimulusLog:
    """A log on its own clock, in SI units.

    Attributes
    ----------
    time_s : ndarray
        Log time in s (increasing).
    current_A, voltage_V : ndarray or None
    path : Path
    columns : dict
        Which header each quantity came from, with its unit.
    """

    time_s: np.ndarray
    current_A: np.ndarray | None
    voltage_V: np.ndarray | None
    path: Path
    columns: dict = field(default_factory=dict)


def _unit_of(header: str) -> str | None:
    m = re.search(r"[\(\[/]\s*([^\)\]/]+?)\s*[\)\]]?\s*$", header)
    return m.group(1).strip().lower() if m else None


def _classify(header: str):
    name = header.strip().strip('"').strip()
    for kind, (pattern, units, default) in _KINDS.items():
        if pattern.search(name):
            unit = _unit_of(name)
            if unit is None:
                return kind, units[default], default
            if unit in units:
                return kind, units[unit], unit
    return None


def read_stimulus_log(path: str | os.PathLike) -> StimulusLog:
    """Read a potentiostat or biasing-holder CSV/TSV log.

    Parameters
    ----------
    path : path-like
        Text table with a header row naming the columns, e.g. ``time/s, Ewe/V, <I>/mA`` or
        ``Time (s);Current (uA);Voltage (V)``. Comment lines starting with ``#`` are skipped.

    Returns
    -------
    StimulusLog
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise MovieReadError(path, f"cannot read log ({exc.strerror or exc})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) < 3:
        raise MovieReadError(path, "log has fewer than two data rows")
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t ")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO("\n".join(lines)), dialect))
    header_index = next((i for i, r in enumerate(rows[:50]) if any(_classify(c) and _classify(c)[0] == "time"
                                                                  for c in r)), None)
    if header_index is None:
        raise MovieReadError(path, "no time column found (expected a header such as 'time/s' or 'Time (s)')")
    header = rows[header_index]
    found: dict[str, tuple[int, float, str]] = {}
    for j, name in enumerate(header):
        c = _classify(name)
        if c and c[0] not in found:
            found[c[0]] = (j, c[1], name.strip())
    if "current" not in found and "voltage" not in found:
        raise MovieReadError(path, f"no current or voltage column among {header}")
    data = []
    for r in rows[header_index + 1:]:
        try:
            data.append([float(r[found[k][0]]) for k in found])
        except (ValueError, IndexError):
            continue  # unit rows, footers
    if len(data) < 2:
        raise MovieReadError(path, "log has fewer than two numeric rows")
    arr = np.asarray(data, dtype=np.float64)
    cols = {k: arr[:, i] * found[k][1] for i, k in enumerate(found)}
    t = cols["time"]
    order = np.argsort(t, kind="stable")
    if not np.all(np.isfinite(t)) or np.any(np.diff(t[order]) == 0) and len(np.unique(t)) < 2:
        raise MovieReadError(path, "log time column is not usable")
    return StimulusLog(time_s=t[order] - 0.0, current_A=cols["current"][order] if "current" in cols else None,
                       voltage_V=cols["voltage"][order] if "voltage" in cols else None, path=path,
                       columns={k: found[k][2] for k in found})


def estimate_clock_offset(*, log_event_s: float, movie_event_s: float) -> float:
    """Offset ``log_time - movie_time`` from one event seen in both (e.g. bias switched on)."""
    if not (math.isfinite(log_event_s) and math.isfinite(movie_event_s)):
        raise ParameterError("event times must be finite numbers of seconds")
    return float(log_event_s - movie_event_s)


def cumulative_charge_C(time_s, current_A) -> np.ndarray:
    """Charge passed since the first sample, ``Q(t) = integral_0^t I dt`` (trapezoids), in C."""
    t = np.asarray(time_s, float)
    i = np.asarray(current_A, float)
    q = np.concatenate([[0.0], np.cumsum(0.5 * (i[1:] + i[:-1]) * np.diff(t))])
    return q


def align_to_frames(log: StimulusLog, frame_times_s, *, offset_s: float = 0.0) -> dict:
    """Log quantities at the movie's frame times.

    Parameters
    ----------
    log : StimulusLog
    frame_times_s : array_like
        Movie times (s from the first frame).
    offset_s : float
        ``log_time = movie_time + offset_s``.

    Returns
    -------
    dict
        ``time_s`` (movie clock), ``current_A``, ``voltage_V``, ``charge_C`` (charge since the
        first frame) as lists; NaN outside the span of the log; ``offset_s``.
    """
    t_movie = np.asarray(frame_times_s, float)
    t_log = t_movie + float(offset_s)
    inside = (t_log >= log.time_s[0]) & (t_log <= log.time_s[-1])
    out = {"time_s": t_movie, "offset_s": float(offset_s), "columns": dict(log.columns),
           "fraction_of_frames_covered": float(inside.mean())}
    for name, values in (("current_A", log.current_A), ("voltage_V", log.voltage_V)):
        if values is None:
            out[name] = None
            continue
        v = np.interp(t_log, log.time_s, values)
        v[~inside] = np.nan
        out[name] = v
    if log.current_A is not None:
        q_log = cumulative_charge_C(log.time_s, log.current_A)
        q = np.interp(t_log, log.time_s, q_log)
        q -= q[np.argmax(inside)] if inside.any() else 0.0
        q[~inside] = np.nan
        out["charge_C"] = q
    else:
        out["charge_C"] = None
    return out


def charge_vs_reacted_volume(charge_C, front_nm, *, sodiated_diameter_nm: float) -> dict:
    """Set the charge passed beside the volume of wire that has reacted.

    The reacted volume is a cylinder of the sodiated diameter over the front length,
    ``V = pi/4 d1^2 x``; ``na_per_nm3`` = (Q/e)/V is the Na density the charge would deliver if all
    of it went into this wire (compare with the product phase, e.g. Na15Sn4 ~ 25 Na/nm^3).
    """
    q = np.asarray(charge_C, float)
    x = np.asarray(front_nm, float)
    if not sodiated_diameter_nm > 0:
        raise ParameterError(f"sodiated diameter must be positive, got {sodiated_diameter_nm}")
    volume = math.pi / 4 * sodiated_diameter_nm ** 2 * x
    with np.errstate(divide="ignore", invalid="ignore"):
        na_per_nm3 = np.where(volume > 0, q / ELEMENTARY_CHARGE_C / volume, np.nan)
    return {"charge_C": q, "reacted_volume_nm3": volume, "na_per_nm3": na_per_nm3}
