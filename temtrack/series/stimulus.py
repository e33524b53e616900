"""Electrochemistry, biasing and heating logs read against the movie's time axis.

A potentiostat or biasing-holder log (CSV/TSV with a time column and current and/or voltage
columns) is read with its units (A, mA, uA, nA; V, mV; s, ms, min, h) normalised to SI, shifted by
the clock offset between the log and the movie (given, estimated from one event marked in the
movie and found in the log, or from the onset of the reaction front), and interpolated at the frame
times. Where a current is logged, the charge passed ``Q(t) = integral I dt`` is set beside the
reacted volume of the wire measured from the movie.

Holder logs that rosettasciio reads are read through it, recognised by their content:

* Protochips (Fusion/Atmosphere/Poseidon) ``.csv`` logs, first row ``Time, Notes, <channel>
  <quantity>, ...`` (:mod:`rsciio.protochips`): every channel's current (A), voltage (V) and
  temperature (deg C) are available (resistance and pressure are not used); the log's notes
  (e.g. "bias on") are kept with their times.
* DENSsolutions DigiHeater 3.1 heater logs (:mod:`rsciio.dens`): the measured temperature (deg C)
  only; rosettasciio does not return the heater's own voltage and current, which in any case are
  not a stimulus applied to the specimen.

Other text tables go through the generic reader here, because potentiostat exports have
instrument-specific headers: ``csv.Sniffer`` finds the delimiter and a small table of column-name
patterns maps the headers.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from temtrack.errors import AnalysisError, MovieReadError, ParameterError

ELEMENTARY_CHARGE_C = 1.602176634e-19

_TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0, "h": 3600.0, "hr": 3600.0}
_CURRENT_UNITS = {"a": 1.0, "ma": 1e-3, "ua": 1e-6, "µa": 1e-6, "μa": 1e-6, "na": 1e-9, "pa": 1e-12}
_VOLTAGE_UNITS = {"v": 1.0, "mv": 1e-3, "kv": 1e3}
_TEMPERATURE_UNITS = {"c": 1.0, "°c": 1.0, "degc": 1.0, "deg c": 1.0, "degrees c": 1.0}
_END = r"(?=$|[\s(\[/_])"  # a name ends at a unit bracket, a slash or a space
_KINDS = {
    "time": (re.compile(r"^(time|t|elapsed|elapsed ?time|time ?stamp|relative ?time|seconds)" + _END, re.I),
             _TIME_UNITS, "s"),
    "current": (re.compile(r"^(current|i|<i>|iwe|i_we|cur)" + _END, re.I), _CURRENT_UNITS, "a"),
    "voltage": (re.compile(r"^(voltage|potential|ewe|e|bias|v|u|we ?potential)" + _END, re.I), _VOLTAGE_UNITS, "v"),
    "temperature": (re.compile(r"^(temperature|temp|tmeas|t_?meas)" + _END, re.I), _TEMPERATURE_UNITS, "c"),
}
#: Log channels that an event can be found in, in the order ``channel='auto'`` tries them.
CHANNELS = ("current", "voltage", "temperature")
_CHANNEL_UNITS = {"current": "A", "voltage": "V", "temperature": "degC"}

# Protochips logs spell their units out ("Current Units = Amps").
_PROTOCHIPS_UNITS = {
    "current": {"amps": 1.0, "amp": 1.0, "a": 1.0, "milliamps": 1e-3, "ma": 1e-3, "microamps": 1e-6,
                "ua": 1e-6, "nanoamps": 1e-9, "na": 1e-9, "picoamps": 1e-12, "pa": 1e-12},
    "voltage": {"volts": 1.0, "volt": 1.0, "v": 1.0, "millivolts": 1e-3, "mv": 1e-3},
    "temperature": {"degrees c": 1.0, "degree c": 1.0, "c": 1.0, "celsius": 1.0},
}
_PROTOCHIPS_TIME_UNITS = {"milliseconds": 1e-3, "ms": 1e-3, "seconds": 1.0, "s": 1.0}


@dataclass
class StimulusLog:
    """A log on its own clock, in SI units (temperature in deg C).

    Attributes
    ----------
    time_s : ndarray
        Log time in s (increasing; seconds since the log's first sample for holder logs).
    current_A, voltage_V : ndarray or None
    path : Path
    columns : dict
        Which column each quantity came from (header, with its unit).
    temperature_C : ndarray or None
        Holder or heater temperature.
    source : str
        ``'csv'`` (generic reader), ``'protochips'`` or ``'dens'`` (read through rosettasciio).
    start_datetime : str or None
        ISO date and time of the log's ``time_s = 0`` when the log records it.
    notes : list of (float, str)
        Events written into the log (Protochips ``Notes`` column), at log times in s.
    """

    time_s: np.ndarray
    current_A: np.ndarray | None
    voltage_V: np.ndarray | None
    path: Path
    columns: dict = field(default_factory=dict)
    temperature_C: np.ndarray | None = None
    source: str = "csv"
    start_datetime: str | None = None
    notes: list = field(default_factory=list)

    def channel(self, name: str) -> np.ndarray | None:
        """The values of ``'current'`` (A), ``'voltage'`` (V) or ``'temperature'`` (deg C), or None."""
        return {"current": self.current_A, "voltage": self.voltage_V,
                "temperature": self.temperature_C}.get(name)

    @property
    def channels(self) -> list[str]:
        """The quantities this log holds, among :data:`CHANNELS`."""
        return [c for c in CHANNELS if self.channel(c) is not None]


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


def _log_kind(path: Path) -> str:
    """``'protochips'``, ``'dens'`` or ``'csv'`` from the first non-empty line of the file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("latin-1")
    except OSError as exc:
        raise MovieReadError(path, f"cannot read log ({exc.strerror or exc})") from None
    first = next((ln for ln in head.splitlines() if ln.strip()), "")
    if "\t" in first and first.split("\t")[-1].strip().lower().startswith("digiheater"):
        return "dens"
    names = [c.strip().strip('"') for c in first.lstrip("\ufeff").split(",")]
    if len(names) >= 3 and names[0] == "Time" and "Notes" in names:
        return "protochips"
    return "csv"


@contextlib.contextmanager
def _quiet_rsciio():
    """Silence rosettasciio's log messages (e.g. 'time axis is not uniform'): the reader here keeps
    the true sample times, so the message is about a uniform axis this module does not use."""
    logger = logging.getLogger("rsciio")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _read_protochips(path: Path, channel: str | None) -> StimulusLog:
    try:
        from rsciio.protochips import file_reader
    except ImportError:  # pragma: no cover - rosettasciio is a core dependency
        raise MovieReadError(path, "a Protochips log needs rosettasciio (pip install rosettasciio)") from None
    try:
        with _quiet_rsciio():
            signals = file_reader(str(path))
    except Exception as exc:  # noqa: BLE001 - rsciio raises IOError, ValueError, KeyError... on a bad log
        raise MovieReadError(path, f"not a readable Protochips log ({type(exc).__name__}: {exc})") from None
    if not signals:
        raise MovieReadError(path, "Protochips log has no logged quantity")
    header = signals[0]["original_metadata"]["Protochips_header"]
    axis = header.get("Time axis") or {}
    time_unit = str(axis.get("units", header.get("Time units", "Milliseconds"))).strip().lower()
    scale = _PROTOCHIPS_TIME_UNITS.get(time_unit)
    if scale is None:
        raise MovieReadError(path, f"Protochips log: unknown time unit {time_unit!r}")
    t = np.asarray(axis.get("value"), dtype=np.float64) * scale
    # Quantity columns are "<channel> <Quantity>" ("Channel A Current", "Holder Temperature").
    found: dict[str, list[tuple[str, str, np.ndarray]]] = {k: [] for k in CHANNELS}
    for sig in signals:
        title = sig["metadata"]["General"]["title"]          # "Channel A Current (Amps)"
        name, _, unit = title.rpartition(" (")
        unit = unit.rstrip(")").strip()
        prefix, _, quantity = name.rpartition(" ")
        kind = quantity.lower()
        if kind not in found:
            continue  # resistance, pressure
        factor = _PROTOCHIPS_UNITS[kind].get(unit.lower())
        if factor is None:
            raise MovieReadError(path, f"Protochips log: unknown unit {unit!r} of {name!r}")
        values = np.asarray(sig["data"], dtype=np.float64) * factor
        if values.shape != t.shape:
            raise MovieReadError(path, f"Protochips log: {name!r} has {values.size} values for {t.size} times")
        found[kind].append((prefix, title, values))
    if not any(found.values()):
        names = [s["metadata"]["General"]["title"] for s in signals]
        raise MovieReadError(path, f"Protochips log has no current, voltage or temperature channel among {names}")

    def pick(kind, prefer=None):
        cands = found[kind]
        if channel is not None:
            want = channel.strip().lower()
            cands = [c for c in cands if c[0].lower() in (want, f"channel {want}")]
        if prefer is not None and any(c[0] == prefer for c in cands):
            return next(c for c in cands if c[0] == prefer)
        # A biasing chip logs both channels; the one that carried no current was not connected.
        live = [c for c in cands if np.nanmax(np.abs(c[2]), initial=0.0) > 0]
        return (live or cands or [None])[0]

    if channel is not None and not any(
            c[0].lower() in (channel.strip().lower(), f"channel {channel.strip().lower()}")
            for kind in found for c in found[kind]):
        prefixes = sorted({c[0] for kind in found for c in found[kind]})
        raise ParameterError(f"{path}: no log channel {channel!r}; the log has {prefixes}")
    cur = pick("current")
    vol = pick("voltage", prefer=cur[0] if cur else None)
    tem = pick("temperature")
    order = np.argsort(t, kind="stable")
    columns = {k: c[1] for k, c in (("current", cur), ("voltage", vol), ("temperature", tem)) if c is not None}
    notes = []
    raw_notes = header.get("Original notes")
    if raw_notes is not None and np.size(raw_notes):
        arr = np.asarray(raw_notes)
        for tn, text in zip(arr[0], arr[1]):
            with contextlib.suppress(ValueError):
                notes.append((float(tn) * scale, str(text).strip()))
    start = header.get("Start time")
    return StimulusLog(time_s=t[order], current_A=cur[2][order] if cur else None,
                       voltage_V=vol[2][order] if vol else None, path=path, columns=columns,
                       temperature_C=tem[2][order] if tem else None, source="protochips",
                       start_datetime=None if start is None else str(np.datetime_as_string(start)),
                       notes=[n for n in notes if n[1]])


def _read_dens(path: Path) -> StimulusLog:
    try:
        from rsciio.dens import file_reader
    except ImportError:  # pragma: no cover
        raise MovieReadError(path, "a DENSsolutions log needs rosettasciio (pip install rosettasciio)") from None
    try:
        with _quiet_rsciio():
            sig = file_reader(str(path))[0]
    except Exception as exc:  # noqa: BLE001 - rsciio raises AssertionError on a log it does not know
        raise MovieReadError(path, f"not a DENSsolutions DigiHeater 3.1 log that rosettasciio reads "
                                   f"({type(exc).__name__}: {exc})") from None
    ax = sig["axes"][0]
    # rsciio gives time of day (s) on a uniform grid fitted to the samples; keep seconds since the
    # first sample and the start as a date and time.
    t_day = float(ax["offset"]) + float(ax["scale"]) * np.arange(int(ax["size"]))
    date = (sig.get("metadata") or {}).get("General", {}).get("date")
    h, rem = divmod(t_day[0], 3600.0)
    m, sec = divmod(rem, 60.0)
    start = f"{date}T{int(h) % 24:02d}:{int(m):02d}:{sec:06.3f}" if date else None
    return StimulusLog(time_s=t_day - t_day[0], current_A=None, voltage_V=None, path=path,
                       columns={"temperature": "Tmeas[C]"}, temperature_C=np.asarray(sig["data"], np.float64),
                       source="dens", start_datetime=start)


def read_stimulus_log(path: str | os.PathLike, *, channel: str | None = None) -> StimulusLog:
    """Read a potentiostat, biasing-holder or heating-holder log.

    Parameters
    ----------
    path : path-like
        A Protochips ``.csv`` log or a DENSsolutions DigiHeater log (recognised by content and
        read through rosettasciio), or any text table with a header row naming the columns, e.g.
        ``time/s, Ewe/V, <I>/mA`` or ``Time (s);Current (uA);Voltage (V)``. Comment lines starting
        with ``#`` are skipped.
    channel : str, optional
        Protochips logs: the holder channel to take current and voltage from (``'A'``,
        ``'Channel B'``); default the first channel that carried a current.

    Returns
    -------
    StimulusLog

    Raises
    ------
    MovieReadError
        Unreadable file, no time column, no current, voltage or temperature column.
    """
    path = Path(path)
    kind = _log_kind(path)
    if kind == "protochips":
        return _read_protochips(path, channel)
    if kind == "dens":
        return _read_dens(path)
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
    if not any(k in found for k in CHANNELS):
        raise MovieReadError(path, f"no current or voltage (or temperature) column among {header}")
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
    if not np.all(np.isfinite(t)) or len(np.unique(t)) < 2:
        raise MovieReadError(path, "log time column is not usable")
    return StimulusLog(time_s=t[order], current_A=cols["current"][order] if "current" in cols else None,
                       voltage_V=cols["voltage"][order] if "voltage" in cols else None, path=path,
                       columns={k: found[k][2] for k in found},
                       temperature_C=cols["temperature"][order] if "temperature" in cols else None)


def estimate_clock_offset(*, log_event_s: float, movie_event_s: float) -> float:
    """Offset ``log_time - movie_time`` from one event seen in both (e.g. bias switched on)."""
    if not (math.isfinite(log_event_s) and math.isfinite(movie_event_s)):
        raise ParameterError("event times must be finite numbers of seconds")
    return float(log_event_s - movie_event_s)


@dataclass
class LogEvent:
    """A step (switch-on, switch-off, contact) found in one channel of a log.

    Attributes
    ----------
    time_s : float
        Log time of the half-height crossing of the step.
    uncertainty_s : float
        Standard uncertainty of ``time_s``: sampling interval, rise time and noise.
    channel : str
        ``'current'``, ``'voltage'``, ``'temperature'`` or ``'note'``.
    step : float or None
        Level after minus level before (A, V or deg C).
    significance : float or None
        ``|step|`` over the noise of the two window means (sigma).
    rise_s : float or None
        10-90 % time of the step (for a step between two samples, 0.8 sample interval).
    note : str or None
        The log's note when ``channel == 'note'``.
    """

    time_s: float
    uncertainty_s: float
    channel: str
    step: float | None = None
    significance: float | None = None
    rise_s: float | None = None
    note: str | None = None


def _noise_sigma(x: np.ndarray) -> float:
    """Sample noise from the median absolute successive difference (steps barely move it)."""
    d = np.diff(x)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0)) if d.size else 0.0


def _crossing(t, x, level, lo, hi, center):
    """Time where ``x`` crosses ``level`` between samples ``lo..hi``, the crossing nearest sample
    ``center`` (linear interpolation between the two samples around it)."""
    above = x[lo:hi + 1] > level
    j = np.flatnonzero(above[1:] != above[:-1]) + lo + 1    # crossing between j-1 and j
    if j.size == 0:
        return float(t[center])
    j = int(j[np.argmin(np.abs(j - center))])
    x0, x1 = x[j - 1] - level, x[j] - level
    frac = x0 / (x0 - x1) if x1 != x0 else 0.5
    return float(t[j - 1] + frac * (t[j] - t[j - 1]))


def find_log_event(log: StimulusLog, *, channel: str = "auto", which: str = "largest",
                   log_window_s: tuple[float, float] | None = None, window_s: float | None = None,
                   min_significance: float = 5.0, note_contains: str | None = None) -> LogEvent:
    """Find the step in a log channel that marks an event (bias on, contact, heating started).

    The step statistic at each sample is the difference of the means of ``w`` samples after and
    before it; its largest value (``which='largest'``) or the first significant one
    (``which='first'``) locates the step, and the time where the channel crosses half-way between
    the two levels is the event.

    Parameters
    ----------
    log : StimulusLog
    channel : str
        ``'current'``, ``'voltage'``, ``'temperature'``, ``'note'`` (a note written in the log, e.g.
        Protochips' "bias on"), or ``'auto'``: the first of current, voltage, temperature with a
        significant step.
    which : {'largest', 'first'}
    log_window_s : (start, stop), optional
        Log times to search in.
    window_s : float, optional
        Averaging window on each side of a candidate step (default about 1/20 of the searched
        span, at least 3 samples).
    min_significance : float
        Smallest step, in units of the noise of the window means, that counts as an event.
    note_contains : str, optional
        With ``channel='note'``: the first note containing this text (case-insensitive).

    Returns
    -------
    LogEvent

    Raises
    ------
    AnalysisError
        No significant step (or no matching note) in the channel.
    ParameterError
        Unknown channel or ``which``, or the channel is not in the log.
    """
    if which not in ("largest", "first"):
        raise ParameterError(f"which must be 'largest' or 'first', got {which!r}")
    if channel == "note":
        notes = [n for n in log.notes if note_contains is None or note_contains.lower() in n[1].lower()]
        if log_window_s is not None:
            notes = [n for n in notes if log_window_s[0] <= n[0] <= log_window_s[1]]
        if not notes:
            raise AnalysisError(f"{log.path}: no note{' containing ' + repr(note_contains) if note_contains else ''} "
                                "in the log")
        dt = float(np.median(np.diff(log.time_s))) if log.time_s.size > 1 else 0.0
        tn, text = notes[0]
        return LogEvent(time_s=float(tn), uncertainty_s=dt / math.sqrt(12.0), channel="note", note=text)
    if channel == "auto":
        errors = []
        for name in log.channels:
            try:
                return find_log_event(log, channel=name, which=which, log_window_s=log_window_s,
                                      window_s=window_s, min_significance=min_significance)
            except AnalysisError as exc:
                errors.append(str(exc))
        raise AnalysisError("; ".join(errors) or f"{log.path}: the log has no current, voltage or temperature")
    if channel not in CHANNELS:
        raise ParameterError(f"log channel must be 'auto', 'note' or one of {list(CHANNELS)}, got {channel!r}")
    values = log.channel(channel)
    if values is None:
        raise ParameterError(f"{log.path}: the log has no {channel} (it has {log.channels or 'no channel'})")
    t = np.asarray(log.time_s, float)
    x = np.asarray(values, float)
    keep = np.isfinite(t) & np.isfinite(x)
    if log_window_s is not None:
        lo_s, hi_s = (float(v) for v in log_window_s)
        keep &= (t >= lo_s) & (t <= hi_s)
    t, x = t[keep], x[keep]
    n = t.size
    if n < 6:
        raise AnalysisError(f"{log.path}: too few {channel} samples ({n}) to find a step")
    dt = float(np.median(np.diff(t)))
    w = int(round(window_s / dt)) if window_s else n // 20
    w = int(min(max(w, 3), n // 2))
    c = np.concatenate([[0.0], np.cumsum(x)])
    k = np.arange(w, n - w + 1)                     # step between samples k-1 and k
    d = (c[k + w] - c[k]) / w - (c[k] - c[k - w]) / w
    sigma = _noise_sigma(x)
    scale = np.max(np.abs(x)) if np.max(np.abs(x)) > 0 else 1.0
    sigma_mean = max(sigma, 1e-12 * scale) * math.sqrt(2.0 / w)
    sig = np.abs(d) / sigma_mean
    if which == "largest":
        best = int(np.argmax(sig))
    else:
        over = np.flatnonzero(sig >= min_significance)
        if over.size == 0:
            best = int(np.argmax(sig))
        else:
            run_end = over[0]
            while run_end + 1 < sig.size and sig[run_end + 1] >= min_significance:
                run_end += 1
            best = over[0] + int(np.argmax(sig[over[0]:run_end + 1]))
    if not sig[best] >= min_significance:
        raise AnalysisError(f"{log.path}: no step in {channel} stands out of the noise "
                            f"(largest {float(sig[best]):.1f} sigma < {min_significance:g})")
    kk = int(k[best])
    lo, hi = max(0, kk - w), min(n - 1, kk + w - 1)
    before = float(np.median(x[lo:kk]))
    after = float(np.median(x[kk:hi + 1]))
    step = after - before
    t_half = _crossing(t, x, before + 0.5 * step, lo, hi, kk)
    rise = abs(_crossing(t, x, before + 0.9 * step, lo, hi, kk) - _crossing(t, x, before + 0.1 * step, lo, hi, kk))
    slope_time = max(rise, dt)
    u = math.sqrt((dt ** 2 + rise ** 2) / 12.0 + (sigma * slope_time / abs(step)) ** 2)
    return LogEvent(time_s=t_half, uncertainty_s=u, channel=channel, step=step,
                    significance=float(sig[best]), rise_s=rise)


@dataclass
class ClockOffset:
    """The clock offset between a log and a movie, and how it was obtained.

    ``log_time = movie_time + offset_s``.

    Attributes
    ----------
    offset_s, uncertainty_s : float
        Offset and its standard uncertainty (0 when given).
    method : str
        ``'given'``, ``'event'`` (a movie time marked by the user matched to the log's step) or
        ``'auto'`` (the front's onset matched to the log's step).
    movie_event_s, log_event_s : float or None
        The two times matched.
    event : LogEvent or None
        The step found in the log.
    """

    offset_s: float
    uncertainty_s: float = 0.0
    method: str = "given"
    movie_event_s: float | None = None
    log_event_s: float | None = None
    event: LogEvent | None = None

    def to_json(self) -> dict:
        out = {"offset_s": self.offset_s, "uncertainty_s": self.uncertainty_s, "method": self.method,
               "movie_event_s": self.movie_event_s, "log_event_s": self.log_event_s}
        if self.event is not None:
            out.update(channel=self.event.channel, step=self.event.step, significance=self.event.significance,
                       rise_s=self.event.rise_s, log_event_uncertainty_s=self.event.uncertainty_s)
            if self.event.note is not None:
                out["note"] = self.event.note
        return out


def estimate_clock_offset_from_event(log: StimulusLog, movie_event_s: float, *, channel: str = "auto",
                                     which: str = "largest", movie_event_uncertainty_s: float = 0.0,
                                     log_window_s: tuple[float, float] | None = None,
                                     window_s: float | None = None, min_significance: float = 5.0,
                                     note_contains: str | None = None, method: str = "event") -> ClockOffset:
    """Clock offset from an event marked in the movie and found automatically in the log.

    The user marks the movie time when something is seen to happen (bias switched on, contact
    made, the front starts); the log's corresponding step is found by :func:`find_log_event`;
    ``offset = log_event - movie_event``.

    Parameters
    ----------
    log : StimulusLog
    movie_event_s : float
        Movie time of the event (s, the movie's clock as in ``Movie.times_s``).
    channel, which, log_window_s, window_s, min_significance, note_contains
        Passed to :func:`find_log_event`: which channel ('auto', 'current', 'voltage',
        'temperature', 'note') and step ('largest' or 'first').
    movie_event_uncertainty_s : float
        Standard uncertainty of the marked time (a marked frame: frame interval / sqrt(12)).
    method : str
        Recorded in the result: ``'event'`` for a user's mark, ``'auto'`` for the front's onset.

    Returns
    -------
    ClockOffset
        ``offset_s`` with ``uncertainty_s`` (log step and movie mark in quadrature).

    Examples
    --------
    >>> log = read_stimulus_log("bias.csv")                          # doctest: +SKIP
    >>> estimate_clock_offset_from_event(log, 12.4).offset_s          # doctest: +SKIP
    25.3
    """
    movie_event_s = float(movie_event_s)
    if not math.isfinite(movie_event_s):
        raise ParameterError(f"movie event time must be a finite number of seconds, got {movie_event_s}")
    if not (movie_event_uncertainty_s >= 0 and math.isfinite(movie_event_uncertainty_s)):
        raise ParameterError(f"movie event uncertainty must be >= 0 s, got {movie_event_uncertainty_s}")
    ev = find_log_event(log, channel=channel, which=which, log_window_s=log_window_s, window_s=window_s,
                        min_significance=min_significance, note_contains=note_contains)
    return ClockOffset(offset_s=ev.time_s - movie_event_s,
                       uncertainty_s=math.hypot(ev.uncertainty_s, movie_event_uncertainty_s),
                       method=method, movie_event_s=movie_event_s, log_event_s=ev.time_s, event=ev)


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
        ``time_s`` (movie clock), ``current_A``, ``voltage_V``, ``temperature_C``, ``charge_C``
        (charge since the first frame) as arrays or None; NaN outside the span of the log;
        ``offset_s``; ``notes`` (movie time, text) of the log's notes.
    """
    t_movie = np.asarray(frame_times_s, float)
    t_log = t_movie + float(offset_s)
    inside = (t_log >= log.time_s[0]) & (t_log <= log.time_s[-1])
    out = {"time_s": t_movie, "offset_s": float(offset_s), "columns": dict(log.columns),
           "fraction_of_frames_covered": float(inside.mean()), "source": log.source,
           "log_start": log.start_datetime,
           "notes": [[float(tn) - float(offset_s), text] for tn, text in log.notes]}
    for name, values in (("current_A", log.current_A), ("voltage_V", log.voltage_V),
                         ("temperature_C", log.temperature_C)):
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


def validate_stimulus_options(offset_s, event_s, channel) -> tuple[float | str, float | None]:
    """Check a recipe's clock-offset options; returns ``(offset_s, event_s)`` normalised.

    ``offset_s`` is a number of seconds or ``'auto'``; ``event_s`` (a marked movie time) replaces a
    given offset, so giving both a non-zero offset and an event is an error.
    """
    if isinstance(offset_s, str):
        text = offset_s.strip().lower()
        if text == "auto":
            offset_s = "auto"
        else:
            try:
                offset_s = float(text)
            except ValueError:
                raise ParameterError(f"recipe: stimulus_offset_s must be seconds or 'auto', got {offset_s!r}") from None
    if not isinstance(offset_s, str):
        if isinstance(offset_s, bool) or not isinstance(offset_s, (int, float)) or not math.isfinite(offset_s):
            raise ParameterError(f"recipe: stimulus_offset_s must be seconds or 'auto', got {offset_s!r}")
        offset_s = float(offset_s)
    if event_s is not None:
        if isinstance(event_s, bool) or not isinstance(event_s, (int, float)) or not math.isfinite(event_s):
            raise ParameterError(f"recipe: stimulus_event_s must be a movie time in s, got {event_s!r}")
        if offset_s == "auto" or offset_s != 0.0:
            raise ParameterError("recipe: give the log's clock offset (stimulus_offset_s) or a marked event "
                                 "(stimulus_event_s), not both")
        event_s = float(event_s)
    if channel not in ("auto", "note", *CHANNELS):
        raise ParameterError(f"recipe: stimulus_channel must be 'auto', 'note' or one of {list(CHANNELS)}, "
                             f"got {channel!r}")
    return offset_s, event_s


def stimulus_for_analysis(log_path, time_s, *, offset_s: float | str = 0.0, event_s: float | None = None,
                          channel: str = "auto", log_channel: str | None = None,
                          frame_interval_s: float | None = None, kinetics: dict | None = None,
                          front_position_nm=None, sodiated_diameter_nm: float | None = None) -> dict:
    """The ``stimulus`` block of ``analyze``: the log at the frame times, the offset and the charge.

    Parameters
    ----------
    log_path : path-like
    time_s : array_like
        The analysed frames' movie times.
    offset_s : float or 'auto'
        A given offset (``log_time = movie_time + offset_s``), or ``'auto'``: the front's onset
        (the kinetics fit's ``t0_s``, with its 95 % interval) matched to the log's step.
    event_s : float, optional
        Movie time of an event the user marked; the log's step in ``channel`` gives the offset.
    channel : str
        Channel the event is found in (:func:`find_log_event`).
    log_channel : str, optional
        Protochips holder channel (:func:`read_stimulus_log`).
    frame_interval_s : float, optional
        Sets the uncertainty of a marked movie time (frame interval / sqrt(12)).
    kinetics : dict, optional
        ``results.json``'s kinetics block (``t0_s``, ``ci95.t0_s``) for ``offset_s='auto'``.
    front_position_nm : array_like, optional
        Front position per frame (NaN where none) for the charge vs reacted volume.
    sodiated_diameter_nm : float, optional

    Returns
    -------
    dict
        :func:`align_to_frames`'s block plus ``offset`` (:meth:`ClockOffset.to_json`),
        ``log_file``, ``reacted_volume_nm3`` and ``na_per_nm3`` when a current was logged, and
        ``warnings``.
    """
    log = read_stimulus_log(log_path, channel=log_channel)
    warns: list[str] = []
    if event_s is not None:
        u_mark = (frame_interval_s or 0.0) / math.sqrt(12.0)
        clock = estimate_clock_offset_from_event(log, float(event_s), channel=channel,
                                                 movie_event_uncertainty_s=u_mark, method="event")
    elif isinstance(offset_s, str):
        if offset_s != "auto":
            raise ParameterError(f"log offset must be a number of seconds or 'auto', got {offset_s!r}")
        t0 = (kinetics or {}).get("t0_s")
        if t0 is None or not math.isfinite(float(t0)):
            warns.append("stimulus: automatic clock offset needs the front's onset (kinetics t0), which "
                         "was not fitted; the log is shown with offset 0")
            clock = ClockOffset(offset_s=0.0, method="auto failed")
        else:
            ci = ((kinetics or {}).get("ci95") or {}).get("t0_s") or [None, None]
            u_t0 = ((float(ci[1]) - float(ci[0])) / (2 * 1.96)) if None not in ci else 0.0
            try:
                clock = estimate_clock_offset_from_event(log, float(t0), channel=channel, which="first",
                                                         movie_event_uncertainty_s=max(u_t0, 0.0), method="auto")
            except AnalysisError as exc:
                warns.append(f"stimulus: automatic clock offset failed ({exc}); the log is shown with offset 0")
                clock = ClockOffset(offset_s=0.0, method="auto failed")
    else:
        clock = ClockOffset(offset_s=float(offset_s), method="given")
    block = align_to_frames(log, time_s, offset_s=clock.offset_s)
    block["offset"] = clock.to_json()
    block["log_file"] = str(log.path)
    if block["fraction_of_frames_covered"] < 1.0:
        warns.append(f"stimulus: the log covers {100 * block['fraction_of_frames_covered']:.0f}% of the analysed "
                     f"frames at offset {clock.offset_s:.4g} s")
    if (block["charge_C"] is not None and front_position_nm is not None and sodiated_diameter_nm is not None
            and math.isfinite(float(sodiated_diameter_nm)) and sodiated_diameter_nm > 0):
        position = np.asarray(front_position_nm, float)
        block.update({k: v for k, v in charge_vs_reacted_volume(block["charge_C"], position,
                                                                   sodiated_diameter_nm=float(sodiated_diameter_nm)
                                                                   ).items() if k != "charge_C"})
    block["warnings"] = warns
    return block
