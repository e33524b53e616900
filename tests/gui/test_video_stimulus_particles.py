"""The window's annotated-video export, stimulus-log plots and particles mode, driven end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def dialogs(monkeypatch):
    """Capture QMessageBox.critical calls instead of showing modal dialogs."""
    from PySide6.QtWidgets import QMessageBox

    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "critical",
                        staticmethod(lambda parent, title, text, *a, **k: shown.append((title, text))))
    return shown


def decoded_frames(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    if path.suffix == ".mp4":
        return iio.imread(path, plugin="FFMPEG", index=None)
    return iio.imread(path, index=None)


# -- stimulus log ----------------------------------------------------------------------------------
def test_stimulus_log_is_plotted_on_the_movie_time_axis(window, nanowire_movie, dialogs, tmp_path,
                                                         write_stimulus_log):
    from temtrack.series.stimulus import align_to_frames, read_stimulus_log

    path, _ = nanowire_movie
    log_path = write_stimulus_log(tmp_path / "potentiostat.csv")
    window.open_movie(path)
    assert window.load_stimulus_log(log_path) and not dialogs
    window.controls.offset_box.setValue(5.0)  # as typed by the user
    assert window.stimulus_offset_s == 5.0
    assert {"current", "voltage"} <= set(window.plots.plots)

    # The plotted traces are the core's values at the frame times, on the movie's time axis.
    expected = align_to_frames(read_stimulus_log(log_path), window.raw_movie.times_s, offset_s=5.0)
    x, current = window.plots.curve_data("current", "current")
    np.testing.assert_allclose(x, window.raw_movie.times_s)
    # 0.5 mA at most: drawn in µA (500).
    np.testing.assert_allclose(current, 1e6 * np.asarray(expected["current_A"]), equal_nan=True)
    assert window.plots.plots["current"].getAxis("left").labelText == "current (µA)"
    _, voltage = window.plots.curve_data("voltage", "voltage")
    np.testing.assert_allclose(voltage, expected["voltage_V"], equal_nan=True)
    # Changing the offset re-aligns through the core (in place: the plot keeps its cell).
    window.controls.offset_box.setValue(-2.0)
    expected = align_to_frames(read_stimulus_log(log_path), window.raw_movie.times_s, offset_s=-2.0)
    np.testing.assert_allclose(window.plots.curve_data("current", "current")[1],
                               1e6 * np.asarray(expected["current_A"]), equal_nan=True)
    assert np.isnan(window.plots.curve_data("current", "current")[1][0])  # before the log starts

    # Linked x axes and a cursor at the current frame.
    window.set_frame(30)
    assert window.plots.cursors["current"].value() == pytest.approx(15.0)
    assert window.plots.cursors["voltage"].value() == pytest.approx(15.0)
    first = next(iter(window.plots.plots.values()))
    assert window.plots.plots["voltage"].getViewBox().linkedView(0) is first.getViewBox()

    # The recipe carries the log and the offset; a typed offset is a given one.
    window.set_line(20, 128, 230, 128, 20)
    recipe = window.current_recipe()
    assert recipe.stimulus_log == str(log_path.resolve()) and recipe.stimulus_offset_s == -2.0
    assert recipe.stimulus_event_s is None
    window.controls.stimulus_clear_button.click()
    assert window.stimulus is None and "current" not in window.plots.plots
    assert window.current_recipe().stimulus_log is None
    assert not dialogs


def test_clock_offset_estimated_from_a_marked_event(window, nanowire_movie, dialogs, tmp_path,
                                                     write_stimulus_log):
    from temtrack_gui.panels.analysis import stimulus_event_estimator

    if stimulus_event_estimator() is None:
        pytest.skip("this core has no estimate_clock_offset_from_event")
    from temtrack.series.stimulus import estimate_clock_offset_from_event, read_stimulus_log

    path, _ = nanowire_movie
    log_path = write_stimulus_log(tmp_path / "bias.csv", step_log_s=12.0)
    window.open_movie(path)
    assert window.controls.estimate_offset_button is not None
    window.load_stimulus_log(log_path)
    window.set_frame(14)  # t = 7 s: the frame where the user sees the bias switched on
    clock = window.estimate_stimulus_offset(window._frame_x(14))
    core = estimate_clock_offset_from_event(read_stimulus_log(log_path), 7.0,
                                            movie_event_uncertainty_s=0.5 / np.sqrt(12))
    print(f"offset from the event: {clock.offset_s:.3f} s (core {core.offset_s:.3f} s, true 5.000 s)")
    assert clock.offset_s == core.offset_s == window.stimulus_offset_s
    assert window.controls.offset_box.value() == pytest.approx(core.offset_s, abs=1e-3)  # shown to the ms
    assert abs(clock.offset_s - 5.0) < 0.1
    # The recipe records the event, so the CLI derives the same offset from the log.
    window.set_line(20, 128, 230, 128, 20)
    recipe = window.current_recipe()
    assert (recipe.stimulus_event_s, recipe.stimulus_channel, recipe.stimulus_offset_s) == (7.0, "auto", 0.0)
    # Typing an offset afterwards replaces the event.
    window.controls.offset_box.setValue(4.0)
    recipe = window.current_recipe()
    assert recipe.stimulus_event_s is None and recipe.stimulus_offset_s == 4.0
    # A movie time with no step in the log near it -> a dialog, offset unchanged.
    flat = tmp_path / "flat.csv"
    flat.write_text("time/s,<I>/mA\n" + "\n".join(f"{0.1 * k:.1f},0.0" for k in range(100)) + "\n")
    window.load_stimulus_log(flat)
    assert window.estimate_stimulus_offset(3.0) is None and dialogs and "step" in dialogs[-1][1]
    assert window.stimulus_offset_s == 4.0


def test_bad_log_and_bad_video_paths_give_dialogs(window, nanowire_movie, dialogs, tmp_path):
    path, _ = nanowire_movie
    assert window.export_video(tmp_path / "x.gif") is None and "open a movie" in dialogs[-1][1]
    window.open_movie(path)
    bad = tmp_path / "not_a_log.csv"
    bad.write_text("this is,not\na potentiostat,log\nat all,really\n")
    assert window.load_stimulus_log(bad) is False
    assert dialogs[-1][0] == "Cannot read the stimulus log" and "not_a_log.csv" in dialogs[-1][1]
    assert window.load_stimulus_log(tmp_path / "missing.csv") is False and "missing.csv" in dialogs[-1][1]
    assert window.stimulus is None and "\n" not in dialogs[-1][1]

    n = len(dialogs)
    assert window.export_video(tmp_path / "movie.avi") is None and ".mp4 or .gif" in dialogs[-1][1]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert window.export_video(a_file / "movie.gif") is None and "a_file" in dialogs[-1][1]
    # A frame range outside the movie is refused by the core, in the worker: a dialog as well.
    assert window.export_video(tmp_path / "range.gif", frames=range(50, 70), wait=True, timeout_s=60) is None
    assert len(dialogs) == n + 3 and "frame range" in dialogs[-1][1]
    assert not window.busy and not (tmp_path / "range.gif").exists()
    assert not list(tmp_path.glob(".range.*"))  # no temporary file left behind
    assert window.controls.run_button.isEnabled()


# -- annotated video ---------------------------------------------------------------------------------
def test_export_video_gif_and_mp4(window, nanowire_movie, dialogs, tmp_path, qtbot, write_stimulus_log):
    path, _ = nanowire_movie
    window.open_movie(path)
    window.set_fft_roi(40, 60, 120, 100)  # the drawn rectangle is the crop
    gif = window.export_video(tmp_path / "clip.gif", frames=range(5, 13), crop=window.viewer.fft_rect(),
                              wait=True, timeout_s=60)
    assert gif == tmp_path / "clip.gif" and not dialogs, dialogs
    frames = decoded_frames(gif)
    print(f"GIF: {frames.shape}")
    assert frames.shape[0] == 8
    zoom = int(np.ceil(480 / 120))
    assert frames.shape[1:3] == (100 * zoom, 120 * zoom)
    assert f"video written to {gif}" in window.statusBar().currentMessage()

    # Aligned without a drift estimate in the session: the worker estimates it first, and the
    # session keeps it for the aligned view.
    assert window.drift is None
    progress = []
    window.controls.progress.valueChanged.connect(progress.append)
    mp4 = window.export_video(tmp_path / "aligned.mp4", aligned=True, frames=range(0, 20), fps=10,
                              wait=True, timeout_s=120)
    assert mp4 is not None and not dialogs, dialogs
    frames = decoded_frames(mp4)
    print(f"MP4: {frames.shape}")
    assert frames.shape[0] == 20 and progress and progress[-1] == 100
    assert window.drift is not None and window.controls.aligned_box.isEnabled()

    # With a stimulus log: a strip chart of the current under the frames (when the core draws one).
    from temtrack.export import annotated_video

    if getattr(annotated_video, "Trace", None) is None:
        return
    window.load_stimulus_log(write_stimulus_log(tmp_path / "log.csv"))
    assert window._chartable_channels() == ["current", "voltage"]
    plain = window.export_video(tmp_path / "plain.gif", frames=range(0, 3), wait=True, timeout_s=60)
    charted = window.export_video(tmp_path / "charted.gif", frames=range(0, 3), stimulus_chart="current",
                                  wait=True, timeout_s=60)
    assert plain is not None and charted is not None and not dialogs, dialogs
    a, b = decoded_frames(plain), decoded_frames(charted)
    assert b.shape[0] == 3 and b.shape[2] == a.shape[2] and b.shape[1] > a.shape[1]


def test_export_video_menu_action_and_cancel(window, nanowire_movie, dialogs, tmp_path, qtbot, monkeypatch):
    from PySide6.QtWidgets import QDialog
    from temtrack_gui.dialogs import ExportVideoDialog

    path, _ = nanowire_movie
    window.open_movie(path)
    out = tmp_path / "from_menu.gif"
    seen = {}

    def accept(self):
        seen["aligned_enabled"] = self.aligned_box.isEnabled()
        seen["speed"] = self.speed_box.value()
        self.path_edit.setText(str(out))
        self.first_box.setValue(3)
        self.last_box.setValue(8)
        self.speed_box.setValue(4.0)  # x4 real time = 8 fps for 0.5 s frames
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(ExportVideoDialog, "exec", accept)
    action = next(a for a in window.menuBar().actions()[0].menu().actions() if a.text() == "Export &video…")
    with qtbot.waitSignal(window.video_exported, timeout=60_000) as written:
        action.trigger()
    assert written.args == [str(out)] and not dialogs
    assert seen["speed"] == pytest.approx(min(30, max(2, 2.0)) / 2.0)  # default: real time
    assert decoded_frames(out).shape[0] == 6
    from PIL import Image
    with Image.open(out) as im:
        assert im.info["duration"] == pytest.approx(125, abs=10)  # 8 fps (GIF stores centiseconds)

    # Cancel: a GIF of the whole movie stopped early leaves no file and no temporary file.
    outcomes = []
    window.task_ended.connect(lambda name, outcome: outcomes.append(outcome))
    window.export_video(tmp_path / "cancelled.gif")
    window.cancel()
    assert window.wait_for_task(60)
    assert outcomes[-1] in ("cancelled", "ok") and not dialogs
    if outcomes[-1] == "cancelled":
        assert not (tmp_path / "cancelled.gif").exists()
    assert not list(tmp_path.glob(".cancelled.*"))


# -- particles -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def particles_movie(tmp_path_factory):
    from temtrack.synthetic import save_movie_tiff
    from temtrack.synthetic.particles import make_particles_movie

    frames, truth = make_particles_movie(n_frames=10, shape=(192, 192), n_particles=5, touching_pairs=1,
                                         dose=40.0, seed=4, drift_px=3.0, radius_nm=(8.0, 14.0),
                                         onset_s=(1.0, 4.0), reaction_time_s=4.0)
    path = tmp_path_factory.mktemp("particles") / "particles.tif"
    save_movie_tiff(path, frames, pixel_size=truth["pixel_size_nm"], pixel_unit="nm", frame_interval_s=1.0)
    return path, truth


def test_particles_session(window, particles_movie, dialogs, qtbot, tmp_path):
    from temtrack_gui import session

    import temtrack
    from temtrack.pipeline.particles import ParticlesRecipe, run_particles

    path, truth = particles_movie
    window.open_movie(path)
    window.controls.kind_tabs.setCurrentIndex(1)
    window.controls.with_core_box.setChecked(False)  # faster; the core fit is tested in tests/particles
    window.controls.detect_frames_box.setValue(4)
    with qtbot.waitSignal(window.task_ended, timeout=120_000) as ended:
        window.controls.particles_button.click()
    assert ended.args == ["particles", "ok"] and not dialogs, dialogs
    res = window.particles_result
    assert window.controls.aligned_box.isEnabled()  # the drift the particles were followed with

    # The same recipe through the core directly: the same particles.
    recipe = ParticlesRecipe(with_core=False, detect_frames=4)
    core = run_particles(temtrack.open_movie(path), recipe)
    print(f"particles: GUI {res.n_particles}, core {core.n_particles}, truth {len(truth['particles'])}")
    assert res.n_particles == core.n_particles >= 1
    np.testing.assert_allclose(res.area_nm2, core.area_nm2, equal_nan=True)

    # Table: the count and one row per particle.
    assert window.results.value("particles") == core.n_particles
    rows = [label for label in window.results.labels() if label.startswith("particle ")]
    assert rows == [f"particle {int(i)}" for i in core.ids]
    # Area vs time per particle, on the shared time axis.
    assert set(window.plots.curves["particle_area"]) == {f"#{int(i)}" for i in core.ids}
    x, y = window.plots.curve_data("particle_area", f"#{int(core.ids[0])}")
    np.testing.assert_allclose(x, core.time_s)
    np.testing.assert_allclose(y, core.area_nm2[:, 0], equal_nan=True)

    # Outlines and labels for the frame shown, from the stored fits.
    window.set_frame(7)
    shown = sorted(window.viewer.particle_labels_shown(), key=int)
    fitted = [int(i) for i, ok in zip(core.ids, np.isfinite(core.x_px[7])) if ok]
    assert shown == [str(i) for i in sorted(fitted)]
    xs, ys = window.viewer.particle_curve.getData()
    outline = session.particle_outlines(res, 7, aligned=False)
    # The first outline: a closed circle (48 points + the closing one) of the fitted equivalent
    # diameter around the fitted centre of the first particle fitted in this frame.
    k = int(np.flatnonzero(np.isfinite(res.x_px[7]))[0])
    cx, cy = np.mean(outline["x"][:48]), np.mean(outline["y"][:48])
    assert (cx, cy) == (pytest.approx(res.x_px[7, k], abs=1e-9), pytest.approx(res.y_px[7, k], abs=1e-9))
    r_px = np.hypot(outline["x"][:48] - cx, outline["y"][:48] - cy)
    np.testing.assert_allclose(r_px, res.equivalent_diameter_nm[7, k] / 2 / res.pixel_size_nm)
    assert np.isnan(outline["x"][49]) and outline["x"][48] == pytest.approx(outline["x"][0])
    assert np.isfinite(xs).sum() + np.isfinite(window.viewer.cracked_curve.getData()[0]).sum() \
        == np.isfinite(outline["x"]).sum()

    # Export as the CLI writes it, and the recipe round trip.
    out = window.export_results(tmp_path / "particles_out")
    assert out is not None and not dialogs, dialogs
    data = json.loads((out / "results.json").read_text())
    assert data["kind"] == "particles" and data["summary"]["n_particles"] == core.n_particles
    assert (out / "particles.csv").is_file() and (out / "particles_summary.csv").is_file()
    recipe_path = window.export_recipe(tmp_path / "particles_recipe.json")
    saved = json.loads(recipe_path.read_text())
    assert saved["kind"] == "particles" and saved["with_core"] is False and saved["detect_frames"] == 4
    window.controls.detect_frames_box.setValue(7)
    window.controls.kind_tabs.setCurrentIndex(0)
    window.load_recipe(recipe_path)
    assert window.controls.detect_frames_box.value() == 4 and window.controls.selected_kind == "particles"
    assert not dialogs
