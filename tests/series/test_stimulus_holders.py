"""Holder logs read through rosettasciio, and the clock offset found from an event.

The Protochips and DENSsolutions files are written here in the layout rosettasciio's readers parse
(``rsciio/protochips/_api.py``: a column row ``Time, Notes, <channel> <quantity>...``, then
``, <Name> = <value>`` header rows ending with ``User``; ``rsciio/dens/_api.py``: a DigiHeater 3.1
header and a tab-separated table of which it returns the measured temperature).
"""
import math

import numpy as np
import pytest

from temtrack.errors import AnalysisError, MovieReadError, ParameterError
from temtrack.series.stimulus import (align_to_frames, estimate_clock_offset_from_event, find_log_event,
                                      read_stimulus_log, stimulus_for_analysis, validate_stimulus_options)

pytest.importorskip("rsciio")


def _protochips(path, columns, rows, *, units=None, notes=None, time_ms=None):
    """A Protochips log: ``columns`` e.g. ['Channel A Current', ...], ``rows`` (n, len(columns))."""
    units = units or {"Current": "Amps", "Voltage": "Volts", "Temperature": "Degrees C", "Resistance": "Ohms"}
    n_extra = len(columns)
    tail = "," * n_extra
    lines = ["Time, Notes, " + ", ".join(columns), f", Time Units = Milliseconds{tail}"]
    lines += [f", {q} Units = {u}{tail}" for q, u in units.items()]
    lines += [f", Date (yyyy.mm.dd) = 2014.10.08{tail}", f", Time (hh:mm:ss.ms) = 16:26:51.738{tail}",
              f", User = eric{tail}"]
    time_ms = np.arange(len(rows)) * 250 if time_ms is None else time_ms
    for k, (tm, row) in enumerate(zip(time_ms, rows)):
        note = (notes or {}).get(k, "")
        lines.append(f"{int(tm)}, {note}, " + ", ".join(repr(float(v)) for v in row))
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


def test_protochips_electrical_log_channels_units_and_notes(tmp_path):
    n = 80
    on = np.arange(n) >= 20                              # bias switched on at 5.000 s (sample 20)
    rows = np.column_stack([np.where(on, 0.0, 0.0), np.zeros(n), np.full(n, 1e9),        # channel A: idle
                            np.where(on, 2.5e-6, 0.0), np.where(on, 0.8, 0.0), np.full(n, 3.2e5)])
    path = _protochips(tmp_path / "biasing.csv",
                       ["Channel A Current", "Channel A Voltage", "Channel A Resistance",
                        "Channel B Current", "Channel B Voltage", "Channel B Resistance"], rows,
                       notes={20: "bias on"})
    log = read_stimulus_log(path)
    print("protochips electrical:", log.source, log.columns, log.notes, log.start_datetime)
    assert log.source == "protochips" and log.channels == ["current", "voltage"]
    # The channel that carried a current is chosen, and its own voltage with it.
    assert log.columns == {"current": "Channel B Current (Amps)", "voltage": "Channel B Voltage (Volts)"}
    np.testing.assert_allclose(log.time_s, np.arange(n) * 0.25)            # ms in the file
    np.testing.assert_allclose(log.current_A, rows[:, 3])
    np.testing.assert_allclose(log.voltage_V, rows[:, 4])
    assert log.notes == [(5.0, "bias on")] and log.start_datetime.startswith("2014-10-08T16:26:51.738")
    a = read_stimulus_log(path, channel="A")
    assert a.columns["current"].startswith("Channel A") and not np.any(a.current_A)
    with pytest.raises(ParameterError, match="no log channel 'C'"):
        read_stimulus_log(path, channel="C")


def test_protochips_milliamps_and_thermal_logs(tmp_path):
    rows = np.column_stack([np.linspace(0, 3, 12), np.full(12, 1.5)])
    path = _protochips(tmp_path / "ma.csv", ["Channel B Current", "Channel B Voltage"], rows,
                       units={"Current": "Milliamps", "Voltage": "Millivolts"})
    log = read_stimulus_log(path)
    np.testing.assert_allclose(log.current_A, rows[:, 0] * 1e-3)
    np.testing.assert_allclose(log.voltage_V, 1.5e-3)
    thermal = _protochips(tmp_path / "thermal.csv", ["Channel A Temperature"],
                          np.linspace(25, 400, 30)[:, None])
    log = read_stimulus_log(thermal)
    print("protochips thermal:", log.columns, log.channels)
    assert log.channels == ["temperature"] and log.current_A is None and log.voltage_V is None
    al = align_to_frames(log, [0.0, 1.0, 100.0])
    assert al["charge_C"] is None and al["temperature_C"][0] == pytest.approx(25.0)
    assert math.isnan(al["temperature_C"][2])            # past the end of the log


def test_protochips_gas_cell_without_electrical_channels(tmp_path):
    rows = np.column_stack([np.full(10, 500.0), np.full(10, 760.0)])
    path = _protochips(tmp_path / "gas.csv", ["Holder Temperature", "Holder Pressure"], rows,
                       units={"Temperature": "Degrees C", "Pressure": "Torr"})
    log = read_stimulus_log(path)
    assert log.channels == ["temperature"] and log.columns == {"temperature": "Holder Temperature (Degrees C)"}
    bad = _protochips(tmp_path / "p.csv", ["Holder Pressure"], rows[:, 1:], units={"Pressure": "Torr"})
    with pytest.raises(MovieReadError, match="no current, voltage or temperature"):
        read_stimulus_log(bad)


def _dens(path, temperature_C, *, version="Digiheater 3.1", start_s=50077.68, dt=0.33):
    lines = [f"16/04/'15 13:53\t{version}", "R0=108.5\ta=3.9e-3\tb=-5.8e-7\tc=0", "delta_t=0.33",
             "sample\ttime\tTset[C]\tTmeas[C]\tRheat[ohm]\tVheat[V]\tIheat[mA]\tPheat [mW]\tc"]
    for k, T in enumerate(temperature_C):
        t = start_s + dt * k
        h, rem = divmod(t, 3600)
        m, s = divmod(rem, 60)
        lines.append(f"{k}\t{int(h):02d}:{int(m):02d}:{s:06.3f}\t{T:.1f}\t{T:.3f}\t120\t0.5\t4\t2\t0")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dens_heater_log_gives_temperature_only(tmp_path):
    T = np.where(np.arange(60) < 20, 25.0, 350.0)
    log = read_stimulus_log(_dens(tmp_path / "heat.dens", T))
    print("dens:", log.source, log.columns, log.start_datetime, log.channels)
    assert log.source == "dens" and log.channels == ["temperature"]
    np.testing.assert_allclose(log.temperature_C, T)
    np.testing.assert_allclose(log.time_s, np.arange(60) * 0.33, atol=1e-6)    # seconds since the first sample
    assert log.start_datetime == "2015-04-16T13:54:37.680"
    # Heating switched on between samples 19 and 20 (log time 6.27-6.60 s), seen at movie time 2.0 s.
    clock = estimate_clock_offset_from_event(log, 2.0)
    print("dens heating step:", clock.to_json())
    assert clock.event.channel == "temperature"
    assert abs(clock.offset_s - (6.435 - 2.0)) < 0.17 and clock.uncertainty_s < 0.33
    with pytest.raises(MovieReadError, match="DigiHeater 3.1"):
        read_stimulus_log(_dens(tmp_path / "old.dens", T, version="Digiheater 2.0"))


def _step_log(tmp_path, t_on_s, *, dt=0.25, noise_uA=0.05, level_uA=-2.0, seed=0, name="s.csv", extra_steps=()):
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 120.0, dt)
    i = np.where(t >= t_on_s, level_uA, 0.0)
    for t_x, lvl in extra_steps:
        i = np.where(t >= t_x, lvl, i)
    i = i + rng.normal(0, noise_uA, t.size)
    p = tmp_path / name
    p.write_text("time/s,<I>/uA\n" + "\n".join(f"{a:.4f},{b:.5f}" for a, b in zip(t, i)))
    return read_stimulus_log(p)


def test_clock_offset_from_a_marked_event_is_accurate(tmp_path):
    """The user marks the movie time of the bias switch-on; the log's step gives the offset."""
    rng = np.random.default_rng(5)
    errors, uncertainties = [], []
    for seed in range(12):
        t_on = float(rng.uniform(20, 90))
        movie_event = float(rng.uniform(0, 15))
        log = _step_log(tmp_path, t_on, seed=seed)
        clock = estimate_clock_offset_from_event(log, movie_event, movie_event_uncertainty_s=0.5 / math.sqrt(12))
        errors.append(clock.offset_s - (t_on - movie_event))
        uncertainties.append(clock.uncertainty_s)
        assert clock.method == "event" and clock.event.channel == "current"
        assert clock.event.step == pytest.approx(-2e-6, rel=0.05)
    errors, uncertainties = np.array(errors), np.array(uncertainties)
    print(f"offset error: rms {np.sqrt(np.mean(errors ** 2)):.3f} s, max {np.max(np.abs(errors)):.3f} s; "
          f"stated uncertainty median {np.median(uncertainties):.3f} s (log sampled every 0.25 s)")
    # The switch-on lies somewhere between two samples 0.25 s apart: errors up to half of that.
    assert np.max(np.abs(errors)) <= 0.126
    assert np.all(np.abs(errors) <= 3 * uncertainties)
    assert np.median(uncertainties) < 0.25


def test_first_and_largest_step_and_search_window(tmp_path):
    log = _step_log(tmp_path, 30.0, level_uA=-1.0, extra_steps=[(70.0, -4.0)])
    largest = find_log_event(log)
    first = find_log_event(log, which="first")
    windowed = find_log_event(log, log_window_s=(10.0, 50.0))
    print("largest", largest.time_s, "first", first.time_s, "windowed", windowed.time_s)
    assert abs(largest.time_s - 70.0) < 0.25 and largest.step == pytest.approx(-3e-6, rel=0.1)
    assert abs(first.time_s - 30.0) < 0.25 and abs(windowed.time_s - 30.0) < 0.25


def test_no_step_is_an_error_and_channels_are_checked(tmp_path):
    flat = _step_log(tmp_path, 1e9)                        # never switched on: noise only
    with pytest.raises(AnalysisError, match="no step in current stands out"):
        estimate_clock_offset_from_event(flat, 3.0)
    with pytest.raises(ParameterError, match="has no voltage"):
        find_log_event(flat, channel="voltage")
    with pytest.raises(ParameterError, match="log channel must be"):
        find_log_event(flat, channel="power")
    with pytest.raises(AnalysisError, match="no note"):
        find_log_event(flat, channel="note")
    with pytest.raises(ParameterError, match="finite"):
        estimate_clock_offset_from_event(flat, float("nan"))


def test_note_in_a_protochips_log_as_the_event(tmp_path):
    rows = np.column_stack([np.where(np.arange(40) >= 12, 1e-6, 0.0), np.zeros(40)])
    path = _protochips(tmp_path / "n.csv", ["Channel A Current", "Channel A Voltage"], rows,
                       notes={12: "bias on", 30: "bias off"})
    log = read_stimulus_log(path)
    clock = estimate_clock_offset_from_event(log, 1.0, channel="note", note_contains="off")
    assert clock.offset_s == pytest.approx(30 * 0.25 - 1.0) and clock.to_json()["note"] == "bias off"
    block = align_to_frames(log, np.arange(10.0), offset_s=clock.offset_s)
    assert block["notes"][0] == [pytest.approx(3.0 - 6.5), "bias on"]      # notes on the movie clock


def test_analysis_block_given_event_and_auto_offsets(tmp_path):
    t_on_log, t0_movie = 27.0, 5.0
    log = _step_log(tmp_path, t_on_log, seed=3)
    times = np.arange(0, 40, 0.5)
    front = np.where(times > t0_movie, 10 * np.sqrt(np.clip(times - t0_movie, 0, None)), np.nan)
    given = stimulus_for_analysis(log.path, times, offset_s=22.0, front_position_nm=front, sodiated_diameter_nm=60.0)
    assert given["offset"]["method"] == "given" and given["offset_s"] == 22.0 and not given["warnings"]
    assert given["reacted_volume_nm3"][-1] == pytest.approx(math.pi / 4 * 60 ** 2 * front[-1])
    event = stimulus_for_analysis(log.path, times, event_s=t0_movie, frame_interval_s=0.5)
    auto = stimulus_for_analysis(log.path, times, offset_s="auto",
                                 kinetics={"t0_s": 5.1, "ci95": {"t0_s": [4.9, 5.3]}})
    for block in (event, auto):
        off = block["offset"]
        print(off["method"], f"offset {off['offset_s']:.3f} +- {off['uncertainty_s']:.3f} s (true 22.000)")
        assert abs(off["offset_s"] - 22.0) < 3 * off["uncertainty_s"] + 1e-9
        assert off["channel"] == "current" and off["movie_event_s"] in (5.0, 5.1)
    assert auto["offset"]["method"] == "auto" and auto["offset"]["uncertainty_s"] > 0.1 / 1.96 * 0.99
    failed = stimulus_for_analysis(log.path, times, offset_s="auto", kinetics={"t0_s": None})
    assert failed["offset"]["method"] == "auto failed" and "kinetics t0" in failed["warnings"][0]


@pytest.mark.parametrize("offset,event,channel,msg", [("soon", None, "auto", "seconds or 'auto'"),
                                                      (3.0, 1.0, "auto", "not both"),
                                                      ("auto", 1.0, "auto", "not both"),
                                                      (0.0, None, "power", "stimulus_channel")])
def test_recipe_offset_options_are_validated(offset, event, channel, msg):
    with pytest.raises(ParameterError, match=msg):
        validate_stimulus_options(offset, event, channel)
    assert validate_stimulus_options(" AUTO ", None, "note") == ("auto", None)
    assert validate_stimulus_options("2.5", None, "auto") == (2.5, None)
