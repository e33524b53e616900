"""Drive the real window offscreen: open, draw, run, read the results, export, replay headless."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

pytestmark = pytest.mark.gui

REPO = Path(__file__).resolve().parents[2]
HAS_DRIFT = importlib.util.find_spec("temtrack.series.drift") is not None


@pytest.fixture
def dialogs(monkeypatch):
    """Capture QMessageBox.critical calls instead of showing modal dialogs."""
    from PySide6.QtWidgets import QMessageBox

    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda parent, title, text, *a, **k: shown.append((title, text))))
    return shown


def test_open_scrub_and_metadata(window, nanowire_movie, dialogs, qtbot):
    path, _ = nanowire_movie
    with qtbot.waitSignal(window.movie_opened, timeout=5000):
        assert window.open_movie(path)
    assert not dialogs
    m = window.raw_movie
    assert (m.n_frames, m.frame_shape) == (60, (256, 256))
    assert float(window.metadata.value("pixel_size")) == pytest.approx(0.8)
    assert window.viewer.scale_bar is not None and "nm" in window.viewer.scale_bar.text.toPlainText()
    window.set_frame(41)
    assert window.current_frame == 41
    assert window.viewer.frame_label.text() == "frame 42 / 60   t = 20.500 s"
    # The displayed pixels are the file's pixels of that frame.
    np.testing.assert_array_equal(window.viewer.image.image, np.asarray(m.frames[41]))
    assert window.viewer.slider.value() == 41
    # Recent files remember it, and the menu offers it.
    assert window.recent_files()[0] == str(Path(path).resolve())
    assert [a.text() for a in window.recent_menu.actions()] == [str(Path(path).resolve())]
    # Play advances frames on the timer.
    window.viewer.fps_box.setValue(100)
    window.viewer.set_playing(True)
    qtbot.waitUntil(lambda: window.current_frame != 41, timeout=3000)
    window.viewer.set_playing(False)


def test_unreadable_file_shows_an_error_dialog(window, tmp_path, dialogs):
    bad = tmp_path / "broken.dm4"
    bad.write_bytes(b"this is not a DigitalMicrograph file" * 10)
    assert window.open_movie(bad) is False
    assert len(dialogs) == 1
    _, text = dialogs[0]
    assert "broken.dm4" in text and "\n" not in text
    assert window.raw_movie is None
    assert window.open_movie(tmp_path / "missing.tif") is False
    assert len(dialogs) == 2 and "missing.tif" in dialogs[1][1]
    # Actions that need a movie say so instead of failing.
    assert window.run_analysis() is None and "open a movie" in dialogs[2][1]


def test_drop_a_file_opens_it(window, nanowire_movie, dialogs):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    path, _ = nanowire_movie
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.raw_movie is not None and window.raw_movie.path == Path(path)
    assert not dialogs


def test_bad_parameters_are_reported(window, nanowire_movie, dialogs, qtbot, tmp_path):
    path, _ = nanowire_movie
    window.open_movie(path)
    assert window.run_analysis() is None  # no line drawn, no auto
    assert "line" in dialogs[-1][1]
    assert window.export_results(tmp_path / "nothing") is None and "nothing to export" in dialogs[-1][1]
    # Draw line: two clicks on the image place it (contact end first).
    window.controls.draw_line_button.click()
    assert window.viewer.drawing
    window.viewer.click_image(20.0, 30.0)
    window.viewer.click_image(120.0, 80.0)
    assert not window.viewer.drawing and window.viewer.line() == pytest.approx([20, 30, 120, 80])
    window.set_frame(3)
    qtbot.keyClick(window, Qt.Key.Key_Right)
    assert window.current_frame == 4
    window.controls.probes_edit.setText("10, ten")
    window.controls.probes_edit.editingFinished.emit()
    assert "probe" in dialogs[-1][1]
    window.set_line(10, 10, 15, 12)  # too short for the core
    assert window.run_analysis() is None and "16 px" in dialogs[-1][1]
    # Auto-detection replaces the drawn line in the recipe (the core refuses both).
    window.set_auto(True)
    assert window.controls.auto_box.isChecked()
    recipe = window.current_recipe()
    assert recipe.auto and recipe.line is None
    # A calibration typed in the metadata panel reaches the recipe, so a replay uses it too.
    window.metadata.pixel_size.setValue(0.5)
    window.metadata.frame_interval.setValue(0.25)
    window.metadata.apply_button.click()
    assert window.raw_movie.pixel_size == 0.5 and window.raw_movie.frame_interval_s == pytest.approx(0.25)
    recipe = window.current_recipe()
    assert (recipe.pixel_size_nm, recipe.frame_interval_s) == (0.5, 0.25)


def test_task_thread_reports_progress_and_honours_cancel(qtbot):
    from temtrack_gui.worker import TaskThread

    from temtrack.errors import Cancelled

    def slow(progress, cancel):
        for i in range(200):
            if cancel.is_set():
                raise Cancelled("cancelled")
            progress(i, 200)
            time.sleep(0.005)
        return "finished"

    task = TaskThread(slow, "test")
    seen = []
    task.progressed.connect(lambda d, t: seen.append(d))
    with qtbot.waitSignal(task.was_cancelled, timeout=5000):
        task.start()
        qtbot.waitUntil(lambda: len(seen) > 3, timeout=3000)
        task.cancel()
    task.wait(2000)
    assert task.error == "cancelled" and task.result is None
    assert seen == sorted(seen)

    def broken(progress, cancel):
        raise RuntimeError("boom\nsecond line")

    task = TaskThread(broken, "test")
    with qtbot.waitSignal(task.failed, timeout=5000) as blocker:
        task.start()
    task.wait(2000)
    assert blocker.args[0] == "test failed with an internal error: RuntimeError: boom"


def _results_kinetics(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())["kinetics"]


def test_full_session_open_draw_run_export_replay(window, nanowire_movie, dialogs, qtbot, tmp_path,
                                                  write_stimulus_log):
    """The issue's acceptance test: the numbers in the window are those the CLI replays."""
    pytest.importorskip("temtrack.pipeline.analyze")
    from temtrack_gui.panels.analysis import stimulus_event_estimator

    path, truth = nanowire_movie
    assert window.open_movie(path)
    # A potentiostat log whose clock runs 5 s ahead of the movie's: the offset comes from the
    # event (current switched on, seen at movie time 7 s) when the core can find it, else typed.
    assert window.load_stimulus_log(write_stimulus_log(tmp_path / "potentiostat.csv", step_log_s=12.0))
    if stimulus_event_estimator() is not None:
        assert window.estimate_stimulus_offset(7.0) is not None
    else:
        window.controls.offset_box.setValue(5.0)
    x0, y0, x1, y1 = truth["line_px"]
    width_px = truth["d0_nm"] / truth["pixel_size_nm"]
    window.set_line(x0, y0, x1, y1, width_px)
    window.set_probes([40.0])
    window.controls.drift_box.setChecked(HAS_DRIFT)
    assert window.viewer.line() == pytest.approx([x0, y0, x1, y1])

    progress = []
    window.controls.progress.valueChanged.connect(progress.append)
    with qtbot.waitSignal(window.task_ended, timeout=120_000) as ended:
        task = window.run_analysis(wait=False)
        assert task is not None and window.busy
        assert window.controls.cancel_button.isEnabled() and not window.controls.run_button.isEnabled()
    assert ended.args == ["analysis", "ok"] and not dialogs, dialogs
    qtbot.waitUntil(lambda: not window.busy, timeout=5000)
    assert progress and progress[-1] == 100 and window.controls.cancel_button.isEnabled() is False

    # The results panel shows D with its interval; it is the core's number.
    D_panel = window.results.value("D")
    kin = window.result.to_json()["kinetics"]
    assert D_panel == kin["D_nm2_per_s"]
    assert "[" in window.results.text("D") and window.results.text("model") == kin["model"]
    D_true = truth["kinetics"]["D_nm2_per_s"]
    print(f"GUI session: D = {D_panel:.1f} nm^2/s (truth {D_true:.1f}), model {kin['model']}, "
          f"error {100 * (D_panel / D_true - 1):+.1f}%")
    assert 0.7 * D_true < D_panel < 1.3 * D_true

    # Linked plots: cursor follows the frame; a click jumps to the nearest frame.
    assert {"front", "kymograph", "drift", "current", "voltage"} <= set(window.plots.plots)
    # Current and voltage beside the front: the analysis' own values at the frame times.
    stim = window.result.stimulus
    assert stim["offset_s"] == pytest.approx(window.stimulus_offset_s, abs=1e-12)
    x, current = window.plots.curve_data("current", "current")
    np.testing.assert_allclose(x, window.result.time_s)
    assert window.plots.plots["current"].getAxis("left").labelText == "current (µA)"
    np.testing.assert_allclose(current, 1e6 * np.asarray(stim["current_A"], float), equal_nan=True)
    np.testing.assert_allclose(window.plots.curve_data("voltage", "voltage")[1], stim["voltage_V"], equal_nan=True)
    assert window.plots.plots["current"].getViewBox().linkedView(0) is window.plots.plots["front"].getViewBox()
    window.set_frame(30)
    assert window.plots.cursors["front"].value() == pytest.approx(15.0)
    window.plots.click_plot("front", 20.2)
    assert window.current_frame == 40
    # Overlays: the front marker sits on the line at the measured position.
    k = 40
    pos_nm = window.result.front.position_nm[k]
    if np.isfinite(pos_nm):
        fx, fy = window.viewer.front_marker.getData()
        dy, dx = window.result.drift_dy_px[k], window.result.drift_dx_px[k]
        a0, b0, a1, b1 = window.result.wire["line_px"]
        frac = pos_nm / truth["pixel_size_nm"] / np.hypot(a1 - a0, b1 - b0)
        assert fx[0] == pytest.approx(a0 + frac * (a1 - a0) + dx, abs=1e-6)
        assert fy[0] == pytest.approx(b0 + frac * (b1 - b0) + dy, abs=1e-6)
    assert window.viewer.edge_curves[0].isVisible()

    # Export the results folder and the recipe.
    out = window.export_results(tmp_path / "gui_results")
    assert out is not None and (out / "results.json").is_file() and (out / "front.csv").is_file()
    assert _results_kinetics(out)["D_nm2_per_s"] == pytest.approx(D_panel, rel=1e-12)
    recipe_path = window.export_recipe(tmp_path / "recipe.json")
    recipe = json.loads(recipe_path.read_text())
    assert recipe["kind"] == "analyze" and recipe["probes_nm"] == [40.0]
    assert recipe["stimulus_log"] == str((tmp_path / "potentiostat.csv").resolve())
    assert recipe["line"] == pytest.approx([x0, y0, x1, y1], abs=1e-3)

    # Replay headless with the CLI: the same numbers.
    cli_out = tmp_path / "cli_results"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "temtrack", "-q", "analyze", str(path), "--recipe", str(recipe_path),
           "--out", str(cli_out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=str(tmp_path),
                          check=False)
    assert proc.returncode == 0, proc.stderr
    cli_kin = _results_kinetics(cli_out)
    print(f"CLI replay: D = {cli_kin['D_nm2_per_s']:.6f} nm^2/s, GUI: {D_panel:.6f} nm^2/s")
    assert cli_kin["model"] == kin["model"]
    for key in ("D_nm2_per_s", "t0_s", "n"):
        assert cli_kin[key] == pytest.approx(kin[key], rel=1e-9), key
    assert cli_kin["ci95"]["D_nm2_per_s"] == pytest.approx(kin["ci95"]["D_nm2_per_s"], rel=1e-9)
    # ... and the same stimulus: offset and current at the frame times.
    cli_stim = json.loads((cli_out / "results.json").read_text())["stimulus"]
    print(f"CLI replay: log offset {cli_stim['offset_s']:.6f} s, GUI: {stim['offset_s']:.6f} s")
    assert cli_stim["offset_s"] == pytest.approx(stim["offset_s"], abs=1e-9)
    np.testing.assert_allclose(np.array([np.nan if v is None else v for v in cli_stim["current_A"]], float),
                               np.asarray(stim["current_A"], float), rtol=1e-9, equal_nan=True)

    # An annotated GIF with the analysis' overlays: the wire edges are drawn (green), and only there.
    import imageio.v3 as iio

    def green_pixels(gif):
        rgb = iio.imread(gif, index=None)[..., :3].astype(int)
        return int(np.sum((rgb[..., 1] > 200) & (rgb[..., 0] < 180) & (rgb[..., 2] < 100)))

    with_overlays = window.export_video(tmp_path / "overlays.gif", frames=range(36, 40), overlays=True,
                                        wait=True, timeout_s=60)
    without = window.export_video(tmp_path / "plain.gif", frames=range(36, 40), overlays=False, wait=True,
                                  timeout_s=60)
    assert with_overlays is not None and without is not None and not dialogs, dialogs
    assert iio.imread(with_overlays, index=None).shape[0] == 4
    assert green_pixels(with_overlays) > 100 and green_pixels(without) == 0

    # Loading the recipe back restores the widgets.
    window.viewer.clear_line()
    window.set_probes([])
    window.load_recipe(recipe_path)
    assert window.viewer.line() == pytest.approx([x0, y0, x1, y1], abs=1e-3)
    assert window.probes_nm == [40.0] and window.controls.width_box.value() == pytest.approx(width_px, abs=0.1)
    assert window.stimulus is not None and window.stimulus_offset_s == pytest.approx(stim["offset_s"], abs=1e-9)


@pytest.mark.skipif(not HAS_DRIFT, reason="temtrack.series.drift not available yet")
def test_drift_plot_and_aligned_view(window, nanowire_movie, dialogs, qtbot):
    path, truth = nanowire_movie
    window.open_movie(path)
    with qtbot.waitSignal(window.task_ended, timeout=60_000) as ended:
        window.estimate_drift()
    assert ended.args == ["drift", "ok"] and not dialogs, dialogs
    drift = window.drift
    err = np.hypot(np.asarray(drift.dy_px) - truth["drift_dy_px"], np.asarray(drift.dx_px) - truth["drift_dx_px"])
    print(f"drift from the GUI: RMS error {np.sqrt(np.mean(err ** 2)):.3f} px")
    assert np.sqrt(np.mean(err ** 2)) < 1.0
    assert "drift" in window.plots.plots and window.controls.aligned_box.isEnabled()
    window.set_frame(50)
    raw = np.array(window.viewer.image.image, dtype=np.float32)
    window.controls.aligned_box.setChecked(True)
    assert window.aligned and window.current_frame == 50
    aligned = np.array(window.viewer.image.image, dtype=np.float32)
    first = window.movie.frame(0)
    # The aligned frame matches frame 0 better than the raw one does.
    inner = (slice(40, -40), slice(40, -40))
    assert np.corrcoef(aligned[inner].ravel(), first[inner].ravel())[0, 1] > \
        np.corrcoef(raw[inner].ravel(), first[inner].ravel())[0, 1]
    window.set_aligned(False)
    assert not window.aligned and not window.controls.aligned_box.isChecked()


def test_cancel_keeps_the_window_usable(window, nanowire_movie, dialogs, qtbot):
    pytest.importorskip("temtrack.pipeline.analyze")
    path, truth = nanowire_movie
    window.open_movie(path)
    window.set_line(*truth["line_px"], truth["d0_nm"] / truth["pixel_size_nm"])
    window.controls.drift_box.setChecked(False)
    outcomes = []
    window.task_ended.connect(lambda name, outcome: outcomes.append(outcome))
    task = window.run_analysis()
    window.cancel()
    window.set_frame(5)  # the GUI thread is free while the worker runs
    assert window.current_frame == 5
    assert window.wait_for_task(60)
    # Cancel is checked between chunks: a tiny movie may finish first; either way no dialog.
    assert outcomes and outcomes[-1] in ("cancelled", "ok")
    assert task.cancel_event.is_set() and not dialogs
    assert window.controls.run_button.isEnabled()


def test_rings_session_on_a_saed_movie(window, tmp_path, dialogs, qtbot):
    pytest.importorskip("temtrack.pipeline.rings")
    from temtrack.synthetic import save_movie_tiff
    from temtrack.synthetic.saed import make_saed_movie

    frames, truth = make_saed_movie(n_frames=8, shape=(256, 256), seed=1)[:2]
    path = save_movie_tiff(tmp_path / "saed.tif", frames, pixel_size=truth["pixel_size_inv_nm"],
                           pixel_unit="1/nm", frame_interval_s=1.0)
    window.open_movie(path)
    assert window.viewer.log_box.isChecked()  # diffraction shown on a log scale
    with qtbot.waitSignal(window.task_ended, timeout=60_000) as ended:
        window.run_rings()
    assert ended.args == ["rings", "ok"] and not dialogs, dialogs
    assert "qt" in window.plots.plots
    window.set_frame(7)
    cx, cy = (float(v[0]) for v in window.viewer.centre_marker.getData())
    ty, tx = np.asarray(truth["center_yx"], dtype=float).reshape(-1, 2)[-1] if np.ndim(truth["center_yx"]) > 1 \
        else truth["center_yx"]
    print(f"diffraction centre shown at ({cx:.2f}, {cy:.2f}), truth about ({tx:.2f}, {ty:.2f})")
    assert abs(cx - tx) < 5 and abs(cy - ty) < 5
    assert len(window.viewer.ring_curves) >= 1
    out = window.export_results(tmp_path / "rings_out")
    assert out is not None and (out / "results.json").is_file()


def test_app_main_accepts_a_list(monkeypatch, nanowire_movie, qapp):
    from temtrack_gui import app as app_mod

    args = app_mod.build_parser().parse_args([str(nanowire_movie[0]), "--pixel-size", "0.5"])
    assert args.movie == str(nanowire_movie[0]) and args.pixel_size == 0.5
    opened = []
    monkeypatch.setattr(type(qapp), "exec", lambda self: 0)
    from temtrack_gui import main_window

    monkeypatch.setattr(main_window.MainWindow, "open_movie",
                        lambda self, p, **kw: opened.append((p, kw)) or True)
    assert app_mod.main([str(nanowire_movie[0])]) == 0
    assert opened == [(str(nanowire_movie[0]), {"pixel_size": None, "frame_interval_s": None})]
    for w in qapp.topLevelWidgets():
        w.close()


def test_fft_roi_session_on_an_hrtem_movie(window, tmp_path, dialogs, qtbot):
    pytest.importorskip("temtrack.pipeline.fft")
    from temtrack.synthetic import save_movie_tiff
    from temtrack.synthetic.hrtem import make_hrtem_movie

    frames, truth = make_hrtem_movie(n_frames=12, shape=(192, 192), seed=2)[:2]
    path = save_movie_tiff(tmp_path / "hrtem.tif", frames, pixel_size=truth["pixel_size_nm"], pixel_unit="nm",
                           frame_interval_s=truth["frame_interval_s"])
    window.open_movie(path)
    window.set_fft_roi(32, 40, 128, 120)
    assert window.viewer.fft_rect() == [32, 40, 128, 120]
    with qtbot.waitSignal(window.task_ended, timeout=60_000) as ended:
        window.run_fft()
    assert ended.args == ["fft", "ok"] and not dialogs, dialogs
    assert tuple(window.fft_result.roi) == (32, 40, 128, 120)  # the drawn rectangle reached the core
    assert {"fringe_d", "crystalline"} <= set(window.plots.plots)
    assert window.results.value("set 0") == pytest.approx(window.fft_result.series.reference_d_nm[0])
