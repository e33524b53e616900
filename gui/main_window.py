"""The main window: one analysis session (movie, drawn geometry, results), scriptable from tests.

Everything a user does with the mouse has a method here (``open_movie``, ``set_line``,
``run_analysis``, ``export_results`` ...), so tests and the screenshot script drive the same code
paths as the buttons. Long work runs in a :class:`~temtrack_gui.worker.TaskThread`; its results come
back through Qt signals and are shown by ``_show_*`` methods. The window computes nothing itself:
numbers come from the core's result objects.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QTabWidget,
)
from temtrack_gui import session
from temtrack_gui.dialogs import ExportVideoDialog
from temtrack_gui.panels.analysis import AnalysisPanel
from temtrack_gui.panels.metadata import MetadataPanel
from temtrack_gui.panels.plots import PlotsPanel
from temtrack_gui.panels.results import ResultsPanel
from temtrack_gui.viewer import ImageViewer
from temtrack_gui.worker import TaskThread

import temtrack
from temtrack.errors import ParameterError, TemtrackError

MAX_RECENT = 10
# Plots of a stimulus log: name -> (key of align_to_frames' block, title).
_STIMULUS_PLOTS = {"current": ("current_A", "Current"), "voltage": ("voltage_V", "Voltage"),
                   "temperature": ("temperature_C", "Temperature")}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class MainWindow(QMainWindow):
    """temtrack's desktop window.

    Signals
    -------
    movie_opened(object)
        A movie was opened (the Movie).
    analysis_finished(object)
        The wire analysis finished (the AnalyzeResult).
    drift_finished(object), rings_finished(object), fft_finished(object), particles_finished(object)
        The other tasks finished (their result objects).
    video_exported(str)
        An annotated video was written (its path).
    task_ended(str, str)
        Any task ended: ``(name, outcome)`` with outcome 'ok', 'cancelled' or 'failed'.
    error_shown(str)
        An error dialog was shown with this message.
    """

    movie_opened = Signal(object)
    analysis_finished = Signal(object)
    drift_finished = Signal(object)
    rings_finished = Signal(object)
    fft_finished = Signal(object)
    particles_finished = Signal(object)
    video_exported = Signal(str)
    task_ended = Signal(str, str)
    error_shown = Signal(str)

    def __init__(self, settings: QSettings | None = None, parent=None):
        super().__init__(parent)
        self.settings = settings if settings is not None else QSettings("temtrack", "temtrack-gui")
        self.setWindowTitle("temtrack")
        self.resize(1500, 950)
        self.setAcceptDrops(True)

        self.raw_movie = None          # as opened (with calibration overrides)
        self.movie = None              # what the analyses and the viewer use (raw or aligned)
        self.drift = None              # DriftResult of the last drift estimate
        self.aligned = False
        self.result = None             # AnalyzeResult
        self.result_json: dict | None = None
        self.rings_result = None
        self.rings_json: dict | None = None
        self.fft_result = None
        self.fft_json: dict | None = None
        self.last_video: Path | None = None
        self.particles_result = None   # ParticlesResult
        self.particles_json: dict | None = None
        self.stimulus = None           # StimulusLog (temtrack.series.stimulus) beside the movie
        self.stimulus_offset_s = 0.0   # log time = movie time + offset
        # How the offset was set: None (typed in), ('event', movie_event_s, channel) (the core found
        # the log's step matching a marked movie time) or ('auto',) (the analysis matches the
        # front's onset): the recipe records the same, so the CLI derives the offset the same way.
        self.stimulus_clock: tuple | None = None
        self.particles_recipe_base = None  # ParticlesRecipe loaded from a file
        self.recipe_base = None        # AnalyzeRecipe loaded from a file, edited by the widgets
        self.last_recipe = None        # the recipe of the last analysis started
        self.last_kind: str | None = None  # 'analyze', 'rings', 'fft' or 'particles': what Export writes
        self.calibration_override: dict[str, float] = {}
        self.auto = False
        self.probes_nm: list[float] = []
        self.task: TaskThread | None = None
        self._task_name = ""
        self._running = False          # set in _start, cleared when the task's last signal arrives
        self._generation = 0           # bumped per opened movie: late results of an old one are dropped

        self.viewer = ImageViewer()
        self.setCentralWidget(self.viewer)
        self.metadata = MetadataPanel()
        self.controls = AnalysisPanel()
        self.results = ResultsPanel()
        self.plots = PlotsPanel()
        self._dock(self.metadata, "Movie", Qt.DockWidgetArea.LeftDockWidgetArea)
        right = QTabWidget()
        right.addTab(self.controls, "Analysis")
        right.addTab(self.results, "Results")
        self.right_tabs = right
        self._dock(right, "Session", Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock(self.plots, "Plots", Qt.DockWidgetArea.BottomDockWidgetArea)
        self._build_menus()
        self._connect()
        self.statusBar().showMessage("Open a movie (File > Open, or drop a file here)")

    # -- construction ---------------------------------------------------------------------------
    def _dock(self, widget, title: str, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        act = QAction("&Open movie…", self)
        act.setShortcut(QKeySequence.StandardKey.Open)
        act.triggered.connect(self._open_dialog)
        file_menu.addAction(act)
        act = QAction("Open &folder…", self)
        act.triggered.connect(self._open_folder_dialog)
        file_menu.addAction(act)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._refresh_recent()
        file_menu.addSeparator()
        for text, slot in (("Export &results folder…", self._export_results_dialog),
                           ("Export &video…", self._export_video_dialog),
                           ("Export re&cipe…", self._export_recipe_dialog),
                           ("&Load recipe…", self._load_recipe_dialog),
                           ("Load &stimulus log…", self._load_stimulus_dialog)):
            act = QAction(text, self)
            act.triggered.connect(slot)
            file_menu.addAction(act)
        file_menu.addSeparator()
        act = QAction("&Quit", self)
        act.setShortcut(QKeySequence.StandardKey.Quit)
        act.triggered.connect(self.close)
        file_menu.addAction(act)
        view_menu = self.menuBar().addMenu("&View")
        act = QAction("Reset &zoom", self)
        act.triggered.connect(lambda: self.viewer.plot.getViewBox().autoRange(padding=0.02))
        view_menu.addAction(act)
        for key, step in ((Qt.Key.Key_Right, 1), (Qt.Key.Key_Left, -1), (Qt.Key.Key_PageDown, 10),
                          (Qt.Key.Key_PageUp, -10)):
            act = QAction(f"Step {step:+d} frame{'s' if abs(step) > 1 else ''}", self)
            act.setShortcut(QKeySequence(key))
            act.triggered.connect(lambda checked=False, s=step: self.set_frame(self.current_frame + s))
            view_menu.addAction(act)
        act = QAction("&Play / pause", self)
        act.setShortcut(QKeySequence(Qt.Key.Key_Space))
        act.triggered.connect(lambda: self.viewer.set_playing(not self.viewer.timer.isActive()))
        view_menu.addAction(act)

    def _connect(self) -> None:
        c = self.controls
        c.draw_line_requested.connect(self._draw_line)
        c.clear_line_requested.connect(self.viewer.clear_line)
        c.width_changed.connect(self.viewer.set_line_width)
        c.probes_edited.connect(self._on_probes_text)
        c.run_requested.connect(lambda: self.run_analysis())
        c.drift_requested.connect(lambda: self.estimate_drift())
        c.aligned_toggled.connect(self.set_aligned)
        c.fft_roi_toggled.connect(lambda on: self.viewer.show_fft_roi(on))
        c.fft_requested.connect(lambda: self.run_fft())
        c.rings_requested.connect(lambda: self.run_rings())
        c.particles_requested.connect(lambda: self.run_particles())
        c.export_video_requested.connect(self._export_video_dialog)
        c.stimulus_load_requested.connect(self._load_stimulus_dialog)
        c.stimulus_clear_requested.connect(lambda: self.set_stimulus_log(None))
        c.stimulus_offset_changed.connect(self.set_stimulus_offset)
        c.stimulus_estimate_requested.connect(self._estimate_offset_dialog)
        c.cancel_requested.connect(self.cancel)
        c.export_results_requested.connect(self._export_results_dialog)
        c.export_recipe_requested.connect(self._export_recipe_dialog)
        c.load_recipe_requested.connect(self._load_recipe_dialog)
        c.auto_box.toggled.connect(self.set_auto)
        self.viewer.frame_changed.connect(self._on_frame)
        self.plots.time_clicked.connect(self.jump_to_time)
        self.metadata.calibration_requested.connect(self._on_calibration)

    # -- errors -----------------------------------------------------------------------------------
    def show_error(self, message: str, title: str = "temtrack") -> None:
        """Show a one-line error in a dialog (never raises)."""
        self.statusBar().showMessage(message, 10000)
        self.error_shown.emit(message)
        QMessageBox.critical(self, title, message)

    # -- opening ----------------------------------------------------------------------------------
    def open_movie(self, path: str | os.PathLike, *, pixel_size: float | None = None,
                   pixel_unit: str | None = None, frame_interval_s: float | None = None) -> bool:
        """Open a movie; errors go to a dialog. Returns True on success."""
        path = Path(path)
        given = {"pixel_size": pixel_size, "pixel_unit": pixel_unit, "frame_interval_s": frame_interval_s}
        kwargs = {k: v for k, v in given.items() if v is not None}
        try:
            movie = temtrack.open_movie(path, **kwargs)
        except TemtrackError as exc:
            self.show_error(_one_line(exc), "Cannot open movie")
            return False
        except Exception as exc:  # noqa: BLE001 - a reader bug must not close the window
            self.show_error(f"{path}: cannot open ({type(exc).__name__}: {_one_line(exc)})", "Cannot open movie")
            return False
        self.stimulus = None  # a log belongs to the movie it was recorded with
        self.stimulus_clock = None
        self.controls.set_stimulus(None)
        self._set_raw_movie(movie)
        self._add_recent(path)
        self.movie_opened.emit(movie)
        return True

    def _set_raw_movie(self, movie) -> None:
        self.cancel()
        self._generation += 1
        self.calibration_override = {}
        self.raw_movie = self.movie = movie
        self.drift = None
        self.aligned = False
        self.result = self.result_json = None
        self.rings_result = self.rings_json = self.fft_result = self.fft_json = None
        self.particles_result = self.particles_json = None
        self.last_kind = None
        self.controls.aligned_box.blockSignals(True)
        self.controls.aligned_box.setChecked(False)
        self.controls.aligned_box.setEnabled(False)
        self.controls.aligned_box.blockSignals(False)
        self.viewer.set_movie(movie, frame=0)
        self.metadata.set_movie(movie)
        self.controls.set_mode(movie.is_diffraction)
        self.results.clear()
        self.plots.clear()
        self.plots.x_label = session.frame_axis(movie.times_s, movie.n_frames)[1]
        self._clear_overlays()
        self._plot_stimulus()
        self.setWindowTitle(f"temtrack — {movie.path.name}")
        kind = "diffraction" if movie.is_diffraction else "image"
        self.statusBar().showMessage(f"{movie.path.name}: {movie.n_frames} frames "
                                     f"{movie.frame_shape[1]}x{movie.frame_shape[0]} ({movie.format}, {kind})")
        if movie.problems:
            self.statusBar().showMessage("; ".join(movie.problems), 15000)

    def _on_calibration(self, pixel_size, pixel_unit, frame_interval_s) -> None:
        if self.raw_movie is None:
            return
        try:
            movie = self.raw_movie.with_calibration(pixel_size=pixel_size, pixel_unit=pixel_unit,
                                                    frame_interval_s=frame_interval_s)
        except TemtrackError as exc:
            self.show_error(_one_line(exc), "Bad calibration")
            return
        override = dict(self.calibration_override)
        self._set_raw_movie(movie)
        if pixel_size is not None and pixel_unit == "nm":
            override["pixel_size_nm"] = float(pixel_size)
        if frame_interval_s is not None:
            override["frame_interval_s"] = float(frame_interval_s)
        self.calibration_override = override

    def _open_dialog(self) -> None:
        start = self.settings.value("last_dir", "")
        path, _ = QFileDialog.getOpenFileName(self, "Open movie", str(start), session.file_dialog_filter())
        if path:
            self.settings.setValue("last_dir", str(Path(path).parent))
            self.open_movie(path)

    def _open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder movie", str(self.settings.value("last_dir", "")))
        if path:
            self.open_movie(path)

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent_files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, path: Path) -> None:
        p = str(Path(path).resolve())
        files = [p] + [f for f in self.recent_files() if f != p]
        self.settings.setValue("recent_files", files[:MAX_RECENT])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for f in self.recent_files():
            act = QAction(f, self)
            act.triggered.connect(lambda checked=False, f=f: self.open_movie(f))
            self.recent_menu.addAction(act)
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            event.acceptProposedAction()
            self.open_movie(urls[0])

    # -- geometry ---------------------------------------------------------------------------------
    def set_line(self, x0: float, y0: float, x1: float, y1: float, width: float | None = None) -> None:
        """Draw the wire line (pixels, contact end first) and optionally its width in pixels."""
        if width is not None:
            self.controls.width_box.blockSignals(True)
            self.controls.width_box.setValue(float(width))
            self.controls.width_box.blockSignals(False)
        self.viewer.set_line([x0, y0, x1, y1], self.controls.width_box.value())

    def _draw_line(self) -> None:
        if self.raw_movie is None:
            return
        if not self.aligned:
            self.set_frame(0)  # the recipe's line is in frame-0 coordinates
        self.viewer.start_line_drawing()
        self.statusBar().showMessage("Click the contact end of the wire, then its far end "
                                     "(then drag the handles to adjust)", 15000)

    def set_probes(self, probes_nm) -> None:
        """Probe positions along the wire (nm from the contact)."""
        self.probes_nm = [float(p) for p in probes_nm]
        self.controls.probes_edit.setText(", ".join(f"{p:g}" for p in self.probes_nm))
        self.viewer.set_probes(self.probes_nm)

    def _on_probes_text(self, text: str) -> None:
        try:
            self.set_probes(session.parse_probes(text))
        except TemtrackError as exc:
            self.show_error(_one_line(exc), "Bad probe positions")

    def set_auto(self, auto: bool) -> None:
        """Let the analysis find the wire itself (the drawn line is then only a display)."""
        self.auto = bool(auto)
        if self.controls.auto_box.isChecked() != self.auto:
            self.controls.auto_box.setChecked(self.auto)

    def set_fft_roi(self, x: int, y: int, w: int, h: int) -> None:
        self.controls.fft_roi_box.blockSignals(True)
        self.controls.fft_roi_box.setChecked(True)
        self.controls.fft_roi_box.blockSignals(False)
        self.viewer.show_fft_roi(True, [x - 0.5, y - 0.5, w, h])

    # -- recipe -----------------------------------------------------------------------------------
    def current_recipe(self):
        """The AnalyzeRecipe the widgets describe (a loaded recipe with the widgets' changes).

        The calibration typed into the metadata panel goes into the recipe (``pixel_size_nm``,
        ``frame_interval_s``), and so do the stimulus log and its clock offset (``stimulus_log``,
        ``stimulus_offset_s``, or ``stimulus_event_s`` + ``stimulus_channel`` when the offset was
        estimated from a marked event), so that ``temtrack analyze --recipe`` replays them.
        """
        from temtrack.pipeline.analyze import AnalyzeRecipe

        width = float(self.controls.width_box.value())
        params: dict[str, Any] = {"auto": self.auto, "width_px": width if width > 0 else None,
                                  "probes_nm": list(self.probes_nm),
                                  "drift": bool(self.controls.drift_box.isChecked()),
                                  "stimulus_log": None if self.stimulus is None else str(self.stimulus.path),
                                  **self._stimulus_clock_fields()}
        params.update(self.calibration_override)
        line = self.viewer.line()
        if self.auto:
            params["line"] = None
        elif line is not None:
            params["line"] = [round(v, 3) for v in line]
        elif self.recipe_base is None or getattr(self.recipe_base, "line", None) is None:
            raise ParameterError("draw the wire line (Draw line) or tick 'Auto-detect the wire' first")
        return session.build_recipe(AnalyzeRecipe, self.recipe_base, **params)

    def current_particles_recipe(self):
        """The ParticlesRecipe the Particles tab describes (with the calibration typed in)."""
        from temtrack.pipeline.particles import ParticlesRecipe

        params = dict(self.controls.particles_params())
        params.update(self.calibration_override)
        return session.build_recipe(ParticlesRecipe, self.particles_recipe_base, **params)

    def export_recipe(self, path: str | os.PathLike, kind: str | None = None) -> Path:
        """Write the current recipe as JSON or YAML, replayable by the CLI (``temtrack analyze
        --recipe`` or ``temtrack particles --recipe``; ``kind`` 'analyze' or 'particles', default
        the analysis tab shown)."""
        from temtrack.io.results import write_json_atomic

        kind = kind or ("particles" if self.controls.selected_kind == "particles" else "analyze")
        recipe = self.current_particles_recipe() if kind == "particles" else self.current_recipe()
        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            from temtrack.io.results import to_jsonable, write_bytes_atomic
            write_bytes_atomic(path, yaml.safe_dump(to_jsonable(recipe.to_dict()), sort_keys=False).encode())
        else:
            write_json_atomic(path, recipe.to_dict())
        self.statusBar().showMessage(f"recipe written to {path}", 8000)
        return path

    def load_recipe(self, path: str | os.PathLike) -> None:
        """Load an ``analyze`` or ``particles`` recipe file into the widgets.

        A stimulus log named by the recipe is read at once; if it cannot be, the recipe is still
        loaded and the error is shown.
        """
        from temtrack.pipeline.analyze import AnalyzeRecipe
        from temtrack.pipeline.recipe import read_recipe_mapping

        kind = read_recipe_mapping(path).get("kind", "analyze")
        if kind == "particles":
            from temtrack.pipeline.particles import ParticlesRecipe

            recipe = ParticlesRecipe.from_file(path)
            self.particles_recipe_base = recipe
            self.controls.set_particles_params(recipe)
            self.controls.kind_tabs.setCurrentIndex(1)
            return
        if kind != "analyze":
            raise ParameterError(f"{path}: a {kind!r} recipe; the window loads 'analyze' and 'particles' recipes")
        recipe = AnalyzeRecipe.from_file(path)
        self.recipe_base = recipe
        self.controls.kind_tabs.setCurrentIndex(0)
        line = getattr(recipe, "line", None)
        width = getattr(recipe, "width_px", None)
        self.controls.width_box.setValue(float(width) if width else 0.0)
        if line is not None:
            self.set_line(*line)
        self.set_auto(bool(getattr(recipe, "auto", False)))
        self.set_probes(getattr(recipe, "probes_nm", None) or [])
        self.controls.drift_box.setChecked(bool(getattr(recipe, "drift", True)))
        offset = getattr(recipe, "stimulus_offset_s", 0.0)
        event_s = getattr(recipe, "stimulus_event_s", None)
        if event_s is not None:
            self.stimulus_clock = ("event", float(event_s), str(getattr(recipe, "stimulus_channel", "auto")))
        elif offset == "auto":
            self.stimulus_clock = ("auto",)
        else:
            self.stimulus_clock = None
        self.stimulus_offset_s = float(offset) if isinstance(offset, (int, float)) else 0.0
        self.controls.set_stimulus(None, self.stimulus_offset_s)
        log = getattr(recipe, "stimulus_log", None)
        if not log:
            self.set_stimulus_log(None)
        elif self.load_stimulus_log(log) and self.stimulus_clock and self.stimulus_clock[0] == "event":
            self.estimate_stimulus_offset(self.stimulus_clock[1], channel=self.stimulus_clock[2])

    # -- tasks ------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A task was started and its outcome has not been handled yet."""
        return self._running

    def _start(self, name: str, func: Callable, on_success: Callable[[Any], None], wait: bool,
               timeout_s: float | None) -> TaskThread | None:
        if self.raw_movie is None:
            self.show_error("open a movie first")
            return None
        if self.busy:
            self.show_error(f"{self._task_name} is still running (Cancel it first)")
            return None
        task = TaskThread(func, name, self)
        self.task, self._task_name, self._running = task, name, True
        generation = self._generation
        task.progressed.connect(self.controls.set_progress)
        task.succeeded.connect(lambda result: self._task_ok(name, result, on_success, generation))
        task.failed.connect(lambda msg: self._task_failed(name, msg))
        task.was_cancelled.connect(lambda: self._task_cancelled(name))
        self.controls.set_busy(True, f"{name}…")
        self.statusBar().showMessage(f"{name}…")
        if wait:
            loop = QEventLoop()
            self.task_ended.connect(loop.quit)
            if timeout_s:
                QTimer.singleShot(int(timeout_s * 1000), loop.quit)
            task.start()
            loop.exec()
            self.task_ended.disconnect(loop.quit)
        else:
            task.start()
        return task

    def _task_ok(self, name: str, result, on_success, generation: int) -> None:
        self._running = False
        self.controls.set_busy(False, f"{name}: done")
        self.controls.progress.setValue(100)
        if generation != self._generation:  # another movie was opened meanwhile
            self.task_ended.emit(name, "cancelled")
            return
        self.statusBar().showMessage(f"{name}: done", 8000)  # on_success may say more
        try:
            on_success(result)
        except Exception as exc:  # noqa: BLE001 - a display problem must not lose the session
            self.show_error(f"{name} finished but its results could not be shown: "
                            f"{type(exc).__name__}: {_one_line(exc)}")
            self.task_ended.emit(name, "failed")
            return
        self.task_ended.emit(name, "ok")

    def _task_failed(self, name: str, message: str) -> None:
        self._running = False
        self.controls.set_busy(False, f"{name}: failed")
        self.controls.progress.setValue(0)
        self.show_error(message, f"{name} failed")
        self.task_ended.emit(name, "failed")

    def _task_cancelled(self, name: str) -> None:
        self._running = False
        self.controls.set_busy(False, f"{name}: cancelled")
        self.controls.progress.setValue(0)
        self.statusBar().showMessage(f"{name}: cancelled", 8000)
        self.task_ended.emit(name, "cancelled")

    def cancel(self) -> None:
        """Ask the running task to stop (the core checks the event between chunks)."""
        if self.busy:
            self.task.cancel()
            self.controls.status_label.setText(f"{self._task_name}: cancelling…")

    def wait_for_task(self, timeout_s: float = 60.0) -> bool:
        """Block (processing events) until the running task has ended."""
        if not self.busy:
            return True
        loop = QEventLoop()
        self.task_ended.connect(loop.quit)
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        loop.exec()
        self.task_ended.disconnect(loop.quit)
        return not self.busy

    # -- the wire analysis ------------------------------------------------------------------------
    def run_analysis(self, wait: bool = False, timeout_s: float | None = None):
        """Run ``temtrack.pipeline.analyze.analyze`` on the raw movie with the current recipe.

        Returns the result when ``wait`` (None if it failed), else the running TaskThread.
        """
        from temtrack.pipeline.analyze import analyze

        if self.raw_movie is None:
            self.show_error("open a movie first")
            return None
        try:
            recipe = self.current_recipe()
        except TemtrackError as exc:
            self.show_error(_one_line(exc), "Bad analysis parameters")
            return None
        movie = self.raw_movie
        self.last_recipe = recipe

        def func(progress, cancel):
            return analyze(movie, recipe, progress=progress, cancel=cancel)

        task = self._start("analysis", func, self._show_analysis, wait, timeout_s)
        if wait:
            return self.result if task is not None and task.error is None else None
        return task

    def _show_analysis(self, result) -> None:
        self.result, self.last_kind = result, "analyze"
        self.result_json = json.loads(json.dumps(result.to_json(), default=_json_default))
        used = ((getattr(result, "stimulus", None) or {}).get("offset") or {}).get("offset_s")
        if used is not None and self.stimulus is not None and math.isfinite(float(used)):
            # The offset the analysis used (given, from the event, or matched to the front's onset):
            # the plots show the log with it, and the recipe keeps how it was obtained.
            self.stimulus_offset_s = float(used)
            self.controls.set_stimulus(self.controls.stimulus_edit.text() or None, self.stimulus_offset_s)
        self.results.show_analyze(self.result_json)
        self.right_tabs.setCurrentWidget(self.results)
        drift = self._drift_from_analysis(result)
        if drift is not None:
            self.drift = drift
            self.controls.aligned_box.setEnabled(True)
        width = (result.wire or {}).get("width_px")
        if width and self.controls.width_box.value() <= 0:
            self.viewer.set_line_width(float(width))  # show the measured width; the recipe keeps 'measured'
        self._plot_analysis()
        self._on_frame(self.viewer.current)
        self.analysis_finished.emit(result)

    def _drift_from_analysis(self, result):
        """The analysis' drift estimate as a DriftResult (for the aligned view), if it made one."""
        if getattr(result, "drift_source", "") != "estimated" or self.raw_movie is None:
            return None
        from temtrack.series.drift import DriftResult

        data = (self.result_json or {}).get("drift") or {}
        if len(data.get("dy_px") or []) != self.raw_movie.n_frames:
            return None  # a frame range was analysed: the full-movie view needs Estimate drift
        try:
            return DriftResult.from_json(data)
        except (KeyError, TypeError, ValueError):
            return None

    def _analysis_line(self) -> list[float] | None:
        line = ((self.result_json or {}).get("wire") or {}).get("line_px")
        if line is not None and len(line) == 4:
            return [float(v) for v in line]
        return self.viewer.line()

    def _plot_analysis(self) -> None:
        r = self.result
        data = self.result_json or {}
        self.plots.clear()
        t = np.asarray(r.time_s, dtype=float)
        front = r.front
        pos = np.asarray(front.position_nm, dtype=float)
        used = np.asarray(front.used_for_fit, dtype=bool)
        kin = data.get("kinetics") or {}
        fits = session.fitted_curves(kin, t) if kin.get("model") else {}
        series = {"front": np.where(used, pos, np.nan)}
        points = ["front"]
        if np.any(np.isfinite(pos) & ~used):
            series["not fitted"] = np.where(~used, pos, np.nan)
            points.append("not fitted")
        self.plots.add_curves("front", "Reaction front", t, series, y_label="position (nm)",
                              points=tuple(points), fits=fits, best=kin.get("model"), legend_offset=(5, 5))
        diam = r.diameter
        dseries = {f"at {k} nm": np.asarray(v, float) for k, v in (diam.probes or {}).items()}
        for key in ("pristine_nm", "sodiated_nm"):
            v = getattr(diam, key, None)
            if v is not None and np.isfinite(v):
                dseries[key.replace("_nm", "")] = np.full(t.size, float(v))
        if dseries:
            self.plots.add_curves("diameter", "Diameters", t, dseries, y_label="diameter (nm)",
                                  dashed=("pristine", "sodiated"), legend_offset=(-5, -5))
        self._plot_stimulus()
        kymo = np.asarray(r.series.kymograph, dtype=float)
        s_nm = np.asarray(r.kymograph_s_nm, dtype=float)
        if kymo.ndim == 2 and kymo.size:
            plot = self.plots.add_image("kymograph", "Kymograph", kymo,
                                        x_range=(t[0], t[-1] if t.size > 1 else t[0] + 1),
                                        y_range=(s_nm[0], s_nm[-1] if s_nm.size > 1 else s_nm[0] + 1),
                                        y_label="s along the line (nm)", colormap=None)
            plot.plot(t[used], pos[used], pen=None, symbol="o", symbolSize=4, symbolBrush="#ff1744",
                      symbolPen=None)
        self._plot_drift(_Shifts(np.asarray(r.drift_dy_px, float), np.asarray(r.drift_dx_px, float), t))
        self.plots.set_cursor(self._frame_x(self.viewer.current))

    def _plot_drift(self, drift) -> None:
        if drift is None:
            return
        dy = getattr(drift, "dy_px", None)
        dx = getattr(drift, "dx_px", None)
        if dy is None and isinstance(drift, dict):
            dy, dx = drift.get("dy_px"), drift.get("dx_px")
        if dy is None or dx is None:
            return
        m = self.raw_movie
        t = getattr(drift, "time_s", None)
        if t is None:
            t, _ = session.frame_axis(m.times_s, m.n_frames)
        t = np.asarray(t, dtype=float)
        dy, dx = np.asarray(dy, dtype=float), np.asarray(dx, dtype=float)
        if dy.size != t.size:
            t = np.arange(dy.size, dtype=float)
        self.plots.add_curves("drift", "Drift", t, {"dy (px)": dy, "dx (px)": dx}, y_label="shift (px)")

    # -- drift ------------------------------------------------------------------------------------
    def estimate_drift(self, wait: bool = False, timeout_s: float | None = None):
        """Estimate the drift of the raw movie (for the plot and the aligned view)."""
        from temtrack.series.drift import estimate_drift

        movie = self.raw_movie

        def func(progress, cancel):
            return _call_with_supported(estimate_drift, movie, progress=progress, cancel=cancel)

        task = self._start("drift", func, self._show_drift, wait, timeout_s)
        return self.drift if wait and task is not None and task.error is None else task

    def _show_drift(self, drift) -> None:
        self.drift = drift
        self.controls.aligned_box.setEnabled(True)
        self.plots.clear(["drift"])
        self._plot_drift(drift)
        self.plots.set_cursor(self._frame_x(self.viewer.current))
        self.drift_finished.emit(drift)

    def set_aligned(self, aligned: bool) -> None:
        """Show the drift-corrected movie (True) or the raw one."""
        aligned = bool(aligned)
        if aligned and self.drift is None:
            self.show_error("estimate the drift first (Estimate drift)")
            aligned = False
        if aligned == self.aligned and self.movie is not None:
            self._sync_aligned_box()
            return
        try:
            if aligned:
                from temtrack.series.drift import aligned_movie

                # Uncropped, so the aligned view keeps frame-0 pixel coordinates (those of the
                # recipe's line and of the overlays).
                movie = aligned_movie(self.raw_movie, self.drift, crop=False)
            else:
                movie = self.raw_movie
        except TemtrackError as exc:
            self.show_error(_one_line(exc))
            return
        self.aligned = aligned
        self.movie = movie
        self.viewer.set_movie(movie, keep_levels=True, frame=self.viewer.current)
        self._sync_aligned_box()

    def _sync_aligned_box(self) -> None:
        box = self.controls.aligned_box
        box.blockSignals(True)
        box.setChecked(self.aligned)
        box.blockSignals(False)

    # -- rings (SAED) and FFT ---------------------------------------------------------------------
    def run_rings(self, wait: bool = False, timeout_s: float | None = None, recipe=None):
        """Run the diffraction-ring pipeline on the raw movie."""
        from temtrack.pipeline.rings import RingsRecipe, run_rings

        recipe = recipe if recipe is not None else RingsRecipe()
        movie = self.raw_movie

        def func(progress, cancel):
            return run_rings(movie, recipe, progress=progress, cancel=cancel)

        task = self._start("rings", func, self._show_rings, wait, timeout_s)
        return self.rings_result if wait and task is not None and task.error is None else task

    def _show_rings(self, result) -> None:
        self.rings_result, self.last_kind = result, "rings"
        data = json.loads(json.dumps(result.to_json(), default=_json_default))
        self.rings_json = data
        self.results.show_rings(data)
        self.right_tabs.setCurrentWidget(self.results)
        self.plots.clear()
        self._plot_stimulus()
        t = np.asarray(getattr(result, "time_s", None) if getattr(result, "time_s", None) is not None
                       else session.frame_axis(self.raw_movie.times_s, self.raw_movie.n_frames)[0], dtype=float)
        qmap, q = getattr(result, "profiles", None), getattr(result, "q_nm_inv", None)
        if qmap is not None and q is not None and np.ndim(qmap) == 2 and len(q) > 1:
            q = np.asarray(q, dtype=float)
            self.plots.add_image("qt", "q–t map (log)", np.log1p(np.clip(np.asarray(qmap, float), 0, None)),
                                 x_range=(t[0], t[-1] if t.size > 1 else t[0] + 1), y_range=(q[0], q[-1]),
                                 y_label="q (1/nm)", colormap="inferno")
        fractions = getattr(result, "fractions", None) or {}
        series = {str(k): np.asarray(v, dtype=float) for k, v in fractions.items()
                  if np.ndim(v) == 1 and len(v) == t.size}
        if series:
            self.plots.add_curves("phases", "Phase fractions", t, series, y_label="fraction")
        rings = getattr(result, "rings", None) or []
        series = {}
        for j, tr in enumerate(rings):
            inten = getattr(tr, "intensity", None)
            if inten is not None and np.ndim(inten) == 1 and len(inten) == t.size:
                q_ring = float(getattr(tr, "q_nm_inv", np.nan))
                series[f"d = {10.0 / q_ring:.3f} Å" if q_ring > 0 else f"ring {j}"] = np.asarray(inten, float)
        if series:
            self.plots.add_curves("ring_intensity", "Ring intensities", t, series, y_label="area")
        self.plots.set_cursor(self._frame_x(self.viewer.current))
        self._on_frame(self.viewer.current)
        self.rings_finished.emit(result)

    def run_fft(self, wait: bool = False, timeout_s: float | None = None, recipe=None):
        """Run the lattice-fringe pipeline on the FFT rectangle (or the central square)."""
        from temtrack.pipeline.fft import FFTRecipe, run_fft

        if recipe is None:
            try:
                recipe = FFTRecipe(roi=self.viewer.fft_rect())
                recipe.validate()
            except TemtrackError as exc:
                self.show_error(_one_line(exc), "Bad FFT parameters")
                return None
        movie = self.raw_movie

        def func(progress, cancel):
            return run_fft(movie, recipe, progress=progress, cancel=cancel)

        task = self._start("fft", func, self._show_fft, wait, timeout_s)
        return self.fft_result if wait and task is not None and task.error is None else task

    def _show_fft(self, result) -> None:
        self.fft_result, self.last_kind = result, "fft"
        data = json.loads(json.dumps(result.to_json(), default=_json_default))
        self.fft_json = data
        self.results.show_fft(data)
        self.right_tabs.setCurrentWidget(self.results)
        fr = data.get("fringes") or {}
        t = fr.get("time_s") or []
        self.plots.clear()
        self._plot_stimulus()
        sets = fr.get("sets") or []
        if sets:
            self.plots.add_curves("fringe_d", "Fringe spacing", t,
                                  {f"set {j}": s["d_nm"] for j, s in enumerate(sets)}, y_label="d (nm)")
        if fr.get("expansion_pct_mean") is not None:
            self.plots.add_curves("lattice_expansion", "Lattice expansion", t,
                                  {"mean": fr["expansion_pct_mean"]}, y_label="expansion (%)")
        if fr.get("crystalline_fraction") is not None:
            self.plots.add_curves("crystalline", "Crystalline fraction", t,
                                  {"crystalline": fr["crystalline_fraction"]}, y_label="fraction")
        self.plots.set_cursor(self._frame_x(self.viewer.current))
        self.fft_finished.emit(result)

    # -- particles --------------------------------------------------------------------------------
    def run_particles(self, wait: bool = False, timeout_s: float | None = None, recipe=None):
        """Run ``temtrack.pipeline.particles.run_particles`` on the raw movie with the Particles tab's
        recipe (or ``recipe``). Returns the result when ``wait`` (None if it failed), else the task."""
        from temtrack.pipeline.particles import run_particles

        if self.raw_movie is None:
            self.show_error("open a movie first")
            return None
        if recipe is None:
            try:
                recipe = self.current_particles_recipe()
            except TemtrackError as exc:
                self.show_error(_one_line(exc), "Bad particles parameters")
                return None
        movie = self.raw_movie

        def func(progress, cancel):
            return run_particles(movie, recipe, progress=progress, cancel=cancel)

        task = self._start("particles", func, self._show_particles, wait, timeout_s)
        if wait:
            return self.particles_result if task is not None and task.error is None else None
        return task

    def _show_particles(self, result) -> None:
        from temtrack.pipeline.particles import particles_results_json

        self.particles_result, self.last_kind = result, "particles"
        data = json.loads(json.dumps(particles_results_json(result), default=_json_default))
        self.particles_json = data
        if self.drift is None and getattr(result, "drift_source", "") == "estimated":
            from temtrack.series.drift import DriftResult

            # The drift the particles were followed with: the aligned view can use it.
            self.drift = DriftResult.from_json(data["drift"])
            self.controls.aligned_box.setEnabled(True)
        self.results.show_particles(data)
        self.right_tabs.setCurrentWidget(self.results)
        self.plots.clear()
        t = np.asarray(result.time_s, dtype=float)
        ids = [int(i) for i in result.ids]
        many = len(ids) > 12  # a legend of dozens of ids hides the curves
        if ids:
            self.plots.add_curves("particle_area", "Particle areas", t,
                                  {f"#{i}": result.area_nm2[:, k] for k, i in enumerate(ids)},
                                  y_label="area (nm²)", legend=not many, legend_offset=(5, 5))
            self.plots.add_curves("particle_expansion", "Volume expansion", t,
                                  {f"#{i}": 100 * np.asarray(result.volume_expansion[:, k], float)
                                   for k, i in enumerate(ids)},
                                  y_label="volume expansion (%)", legend=False)
        self._plot_stimulus()
        self._plot_drift(_Shifts(np.asarray(result.drift_dy_px, float), np.asarray(result.drift_dx_px, float), t))
        self.plots.set_cursor(self._frame_x(self.viewer.current))
        self._on_frame(self.viewer.current)
        self.statusBar().showMessage(f"particles: {result.n_particles} tracked, "
                                     f"{int(np.sum(result.cracked))} cracked", 8000)
        self.particles_finished.emit(result)

    # -- stimulus log (current / voltage) -----------------------------------------------------------
    def load_stimulus_log(self, path: str | os.PathLike) -> bool:
        """Read a potentiostat / biasing-holder log and plot it on the movie's time axis.

        Errors go to a dialog. Returns True when the log was read.
        """
        from temtrack.series.stimulus import read_stimulus_log

        path = Path(path)
        channel = getattr(self.recipe_base, "stimulus_log_channel", None)
        try:
            log = read_stimulus_log(path.resolve(), **({"channel": channel} if channel else {}))
        except TemtrackError as exc:
            self.show_error(_one_line(exc), "Cannot read the stimulus log")
            return False
        except Exception as exc:  # noqa: BLE001 - a reader bug must not close the window
            self.show_error(f"{path}: cannot read the log ({type(exc).__name__}: {_one_line(exc)})",
                            "Cannot read the stimulus log")
            return False
        self.set_stimulus_log(log)
        return True

    def set_stimulus_log(self, log) -> None:
        """Use ``log`` (a StimulusLog) as the session's stimulus, or drop it with None."""
        self.stimulus = log
        self.controls.set_stimulus(None if log is None else str(log.path))
        if log is None:
            self.plots.clear(list(_STIMULUS_PLOTS))
            return
        self._plot_stimulus()
        trace = self.stimulus_trace()
        if trace is not None and trace["fraction_of_frames_covered"] == 0:
            self.statusBar().showMessage(f"{log.path.name}: the log covers none of the frames at an offset of "
                                         f"{self.stimulus_offset_s:g} s (log time = movie time + offset)", 15000)

    def set_stimulus_offset(self, offset_s: float) -> None:
        """Type in the clock offset between log and movie: log time = movie time + ``offset_s``."""
        self.stimulus_clock = None
        self._set_offset(offset_s)

    def _set_offset(self, offset_s: float) -> None:
        self.stimulus_offset_s = float(offset_s)
        if abs(self.controls.offset_box.value() - self.stimulus_offset_s) > 1e-9:
            self.controls.set_stimulus(self.controls.stimulus_edit.text() or None, self.stimulus_offset_s)
        self._plot_stimulus()

    def _stimulus_clock_fields(self) -> dict:
        """The recipe's clock-offset fields for the way the offset was set."""
        clock = self.stimulus_clock
        if clock and clock[0] == "event":
            return {"stimulus_offset_s": 0.0, "stimulus_event_s": float(clock[1]), "stimulus_channel": clock[2]}
        if clock and clock[0] == "auto":
            return {"stimulus_offset_s": "auto", "stimulus_event_s": None}
        return {"stimulus_offset_s": float(self.stimulus_offset_s), "stimulus_event_s": None}

    def estimate_stimulus_offset(self, movie_event_s: float, *, channel: str = "auto"):
        """Set the offset from an event seen at movie time ``movie_event_s`` (s): the core finds the
        matching step in the log (:func:`temtrack.series.stimulus.estimate_clock_offset_from_event`).

        Returns the core's ClockOffset, or None (error dialog) when no step is found.
        """
        from temtrack_gui.panels.analysis import stimulus_event_estimator

        estimator = stimulus_event_estimator()
        if estimator is None:
            self.show_error("this temtrack cannot estimate the clock offset from an event")
            return None
        if self.stimulus is None:
            self.show_error("load a stimulus log first")
            return None
        dt = self.raw_movie.frame_interval_s if self.raw_movie is not None else None
        try:
            clock = estimator(self.stimulus, float(movie_event_s), channel=channel,
                              movie_event_uncertainty_s=(dt or 0.0) / math.sqrt(12.0))
        except TemtrackError as exc:
            self.show_error(_one_line(exc), "Cannot estimate the clock offset")
            return None
        self.stimulus_clock = ("event", float(movie_event_s), channel)
        self._set_offset(clock.offset_s)
        self.statusBar().showMessage(
            f"clock offset {clock.offset_s:.4g} ± {clock.uncertainty_s:.2g} s: log step at "
            f"{clock.log_event_s:.4g} s ({clock.event.channel if clock.event else channel}) matched to movie "
            f"time {float(movie_event_s):.4g} s", 15000)
        return clock

    def stimulus_trace(self) -> dict | None:
        """The log at the movie's frame times (``align_to_frames``), or None without a log or timing."""
        if self.stimulus is None or self.raw_movie is None or self.raw_movie.times_s is None:
            return None
        from temtrack.series.stimulus import align_to_frames

        return align_to_frames(self.stimulus, np.asarray(self.raw_movie.times_s, dtype=float),
                               offset_s=self.stimulus_offset_s)

    def _plot_stimulus(self) -> None:
        """Current, voltage (and temperature) plots beside the others: same time axis, same cursor."""
        if self.stimulus is None or self.raw_movie is None:
            return
        trace = self.stimulus_trace()
        if trace is None:
            self.statusBar().showMessage("the movie has no frame timing: set the frame interval to place the "
                                         "stimulus log on its time axis", 15000)
            return
        t = trace["time_s"]
        for name, (key, title) in _STIMULUS_PLOTS.items():
            values = trace.get(key)
            if values is None:
                if name in self.plots.plots:
                    self.plots.clear([name])
                continue
            values = np.asarray(values, dtype=float)
            if name == "current":
                factor, unit = session.current_scale(values)
                values, label = factor * values, f"current ({unit})"
            else:
                label = {"voltage": "voltage (V)", "temperature": "temperature (°C)"}[name]
            plot = self.plots.plots.get(name)
            same_axis = plot is not None and plot.getAxis("left").labelText == label
            if not (same_axis and self.plots.update_curves(name, t, {name: values})):
                self.plots.add_curves(name, title, t, {name: values}, y_label=label, legend=False)
        self.plots.set_cursor(self._frame_x(self.viewer.current))

    def _load_stimulus_dialog(self) -> None:
        if self.raw_movie is None:
            self.show_error("open a movie first")
            return
        path, _ = QFileDialog.getOpenFileName(self, "Load stimulus log", str(self.settings.value("last_dir", "")),
                                              "Logs (*.csv *.txt *.tsv *.dat *.log);;All files (*)")
        if path:
            self.load_stimulus_log(path)

    def _estimate_offset_dialog(self) -> None:
        """Ask for the movie time of an event (default: the frame shown) and the log channel."""
        from temtrack_gui.dialogs import EventDialog

        if self.stimulus is None or self.raw_movie is None:
            self.show_error("load a stimulus log first")
            return
        dialog = EventDialog(self._frame_x(self.viewer.current), channels=("auto", *self.stimulus.channels, "note"),
                             parent=self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.estimate_stimulus_offset(dialog.time_box.value(), channel=dialog.channel_box.currentText())

    # -- annotated video --------------------------------------------------------------------------
    def export_video(self, path: str | os.PathLike, *, aligned: bool | None = None, fps: float | None = None,
                     frames: range | None = None, crop=None, contrast="viewer", scale_bar: bool = True,
                     timestamp: bool = True, overlays: bool = True, stimulus_chart: str | None = None,
                     wait: bool = False, timeout_s: float | None = None):
        """Write an annotated MP4 or GIF with :func:`temtrack.export.annotated_video.export_video`.

        Parameters
        ----------
        path : path-like
            ``.mp4`` or ``.gif``.
        aligned : bool, optional
            Drift-corrected frames (default: as the viewer shows). The session's drift estimate is
            used; without one the drift is estimated first (in the worker).
        fps : float, optional
            Output frame rate (default real time, 2-30 fps); the speed-up is printed beside the time.
        frames : range, optional
            0-based frame range (default all).
        crop : [x, y, w, h] or None
            Region in px (clipped to the frame).
        contrast : 'viewer', (lo, hi) or None
            The viewer's current levels, fixed limits, or percentiles of a few frames.
        scale_bar, timestamp, overlays : bool
            Overlays are those of the last wire analysis (front, wire edges, probes), if any.
        stimulus_chart : {'current', 'voltage', 'temperature', 'auto'} or None
            A strip chart of the stimulus log under the frames (the log at the frame times).

        Returns the written path when ``wait`` (None if it failed), else the running task.
        """
        from temtrack.export.annotated_video import export_video

        if self.raw_movie is None:
            self.show_error("open a movie first")
            return None
        title = "Cannot export the video"
        out = Path(path)
        if out.suffix.lower() not in (".mp4", ".gif"):
            self.show_error(f"{out}: the video must be a .mp4 or .gif file", title)
            return None
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.show_error(f"{out.parent}: cannot create the folder ({exc.strerror or exc})", title)
            return None
        if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
            self.show_error(f"{out}: not writable", title)
            return None
        raw = self.raw_movie
        aligned = self.aligned if aligned is None else bool(aligned)
        if isinstance(contrast, str) and contrast == "viewer":
            contrast = session.contrast_from_levels(self.viewer.image.getLevels(), self.viewer.log_display)
        overlay = None
        if overlays and self.result is not None and not raw.is_diffraction:
            try:
                overlay = session.video_overlay(self.result, raw.n_frames, self.drift)
            except TemtrackError as exc:
                self.show_error(_one_line(exc), title)
                return None
        if crop is not None:
            crop = session.clip_rect(crop, raw.frame_shape)
            if crop is None:
                self.show_error("the crop rectangle lies outside the frame", title)
                return None
        extra = {}
        if stimulus_chart:
            from temtrack.export import annotated_video

            trace = self.stimulus_trace()
            if trace is None or getattr(annotated_video, "Trace", None) is None:
                self.show_error("no stimulus log on the movie's time axis to chart", title)
                return None
            try:
                extra["trace"] = annotated_video.Trace.from_results({"stimulus": trace}, stimulus_chart)
            except TemtrackError as exc:
                self.show_error(_one_line(exc), title)
                return None
        drift = self.drift

        def func(progress, cancel):
            used = drift
            movie = raw
            if aligned:
                from temtrack.series.drift import aligned_movie, estimate_drift

                if used is None:
                    used = _call_with_supported(estimate_drift, raw, progress=progress, cancel=cancel)
                movie = aligned_movie(raw, used, crop=False)
            try:
                written = export_video(movie, out, fps=fps, frames=frames, crop=crop, contrast=contrast,
                                       scale_bar=scale_bar, timestamp=timestamp, overlay=overlay,
                                       overlay_on_raw=not aligned, progress=progress, cancel=cancel, **extra)
            except OSError as exc:
                raise ParameterError(f"{out}: cannot write the video ({exc.strerror or exc})") from None
            return written, used

        task = self._start("export video", func, self._video_written, wait, timeout_s)
        if wait:
            return self.last_video if task is not None and task.error is None else None
        return task

    def _video_written(self, outcome) -> None:
        path, drift = outcome
        self.last_video = Path(path)
        if self.drift is None and drift is not None:
            self.drift = drift  # estimated for the export: the aligned view can use it too
            self.controls.aligned_box.setEnabled(True)
        self.statusBar().showMessage(f"video written to {path}", 15000)
        self.video_exported.emit(str(path))

    def _export_video_dialog(self) -> None:
        if self.raw_movie is None:
            self.show_error("open a movie first")
            return
        m = self.raw_movie
        start = Path(str(self.settings.value("last_dir", "") or m.path.parent))
        dialog = ExportVideoDialog(m, start / f"{m.path.stem}_annotated.mp4", aligned=self.aligned,
                                   has_drift=self.drift is not None,
                                   has_overlays=self.result is not None and not m.is_diffraction,
                                   roi=self.viewer.fft_rect(), parent=self,
                                   charts=self._chartable_channels())
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        o = dialog.options()
        self.export_video(o.path, aligned=o.aligned, fps=o.fps, frames=o.frames, crop=o.crop,
                          contrast="viewer" if o.viewer_contrast else None, scale_bar=o.scale_bar,
                          timestamp=o.timestamp, overlays=o.overlays, stimulus_chart=o.stimulus_chart)

    def _chartable_channels(self) -> list[str]:
        """Stimulus channels the video can chart (none when this core cannot draw a strip chart)."""
        from temtrack.export import annotated_video

        trace = self.stimulus_trace()
        if trace is None or getattr(annotated_video, "Trace", None) is None:
            return []
        keys = {"current": "current_A", "voltage": "voltage_V", "temperature": "temperature_C"}
        return [name for name, key in keys.items() if trace.get(key) is not None]

    # -- export -----------------------------------------------------------------------------------
    def export_results(self, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path | None:
        """Write the results folder of the last finished analysis, as the CLI does (``temtrack
        analyze``, ``rings``, ``fft`` or ``particles``: results.json, CSV tables, figures)."""
        out = Path(out_dir)
        try:
            if self.last_kind == "analyze":
                from temtrack.pipeline.analyze import write_analyze_results
                path = write_analyze_results(self.result, out, overwrite=overwrite)
            elif self.last_kind == "rings":
                from temtrack.pipeline.rings import write_rings_results
                path = write_rings_results(self.rings_result, out, overwrite=overwrite)
            elif self.last_kind == "fft":
                from temtrack.pipeline.fft import write_fft_results
                path = write_fft_results(self.fft_result, out, overwrite=overwrite)
            elif self.last_kind == "particles":
                from temtrack.pipeline.particles import write_particles_results
                path = write_particles_results(self.particles_result, out, overwrite=overwrite)
            else:
                raise ParameterError("nothing to export yet: run an analysis first")
        except TemtrackError as exc:
            self.show_error(_one_line(exc), "Export failed")
            return None
        except OSError as exc:
            self.show_error(f"{out}: cannot write results ({exc.strerror or exc})", "Export failed")
            return None
        self.statusBar().showMessage(f"results written to {path}", 8000)
        return Path(path)

    def _export_results_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export results into a new folder",
                                                str(self.settings.value("last_dir", "")))
        if path:
            target = Path(path)
            if target.exists() and any(target.iterdir()):
                target = target / f"{self.raw_movie.path.stem if self.raw_movie else 'temtrack'}_results"
            self.export_results(target)

    def _export_recipe_dialog(self) -> None:
        try:
            if self.controls.selected_kind == "particles":
                self.current_particles_recipe()
            else:
                self.current_recipe()
        except TemtrackError as exc:
            self.show_error(_one_line(exc), "Cannot export the recipe")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export recipe", "recipe.json",
                                              "Recipe (*.json *.yaml *.yml)")
        if path:
            try:
                self.export_recipe(path)
            except (TemtrackError, OSError) as exc:
                self.show_error(_one_line(exc), "Cannot export the recipe")

    def _load_recipe_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load recipe", "", "Recipe (*.json *.yaml *.yml)")
        if path:
            try:
                self.load_recipe(path)
            except TemtrackError as exc:
                self.show_error(_one_line(exc), "Cannot load the recipe")

    # -- frame-linked display ---------------------------------------------------------------------
    def set_frame(self, index: int) -> None:
        self.viewer.set_frame(index)

    @property
    def current_frame(self) -> int:
        return self.viewer.current

    def jump_to_time(self, t: float) -> None:
        """Show the frame closest to time ``t`` (s; frame number for untimed movies)."""
        if self.raw_movie is None:
            return
        self.set_frame(session.nearest_frame(self.raw_movie.times_s, t, self.raw_movie.n_frames))

    def _frame_x(self, index: int) -> float:
        m = self.raw_movie
        if m is None:
            return 0.0
        return float(m.times_s[index]) if m.times_s is not None else float(index)

    def _clear_overlays(self) -> None:
        self.viewer.set_front(None)
        self.viewer.set_edges([])
        self.viewer.set_diffraction(None)
        self.viewer.set_particles(None)

    def _on_frame(self, index: int) -> None:
        if self.plots.plots:
            self.plots.set_cursor(self._frame_x(index))
        if self.result_json is not None:
            self._update_wire_overlay(index)
        if self.rings_result is not None:
            self._update_diffraction_overlay(index)
        if self.particles_result is not None:
            # Drawn from the stored fits: nothing is measured while scrubbing.
            self.viewer.set_particles(session.particle_outlines(self.particles_result, index,
                                                                aligned=self.aligned))

    def _shift_for(self, index: int) -> tuple[float, float]:
        """Where frame-0 coordinates are in the displayed frame: shifted by the drift when the raw
        movie is shown, unchanged in the aligned view."""
        if self.aligned or self.drift is None:
            return 0.0, 0.0
        dy, dx = getattr(self.drift, "dy_px", None), getattr(self.drift, "dx_px", None)
        if dy is None or index >= len(dy) or not (np.isfinite(dy[index]) and np.isfinite(dx[index])):
            return 0.0, 0.0
        return float(dy[index]), float(dx[index])

    def _update_wire_overlay(self, index: int) -> None:
        r = self.result
        line = self._analysis_line()
        frames = np.asarray(r.frame_index)
        k = np.flatnonzero(frames == index)
        if line is None or k.size == 0:
            self.viewer.set_front(None)
            self.viewer.set_edges([])
            return
        k = int(k[0])
        line = session.shift_line(line, *self._shift_for(index))
        px = float(r.pixel_size_nm)
        pos = float(r.front.position_nm[k])
        self.viewer.set_front(session.point_along(line, pos / px) if np.isfinite(pos) else None)
        dmap = getattr(r.diameter, "map_nm", None)
        s_nm = getattr(r.diameter, "s_nm", None)
        if dmap is None or s_nm is None:
            self.viewer.set_edges([])
            return
        self.viewer.set_edges(session.edge_polylines(line, np.asarray(s_nm, float) / px,
                                                     np.asarray(dmap[k], float) / px))

    def _update_diffraction_overlay(self, index: int) -> None:
        r = self.rings_result
        if r is None:
            return
        centres = getattr(r, "centers_yx", None)
        if centres is None:
            self.viewer.set_diffraction(None)
            return
        centres = np.asarray(centres, dtype=float)
        cy, cx = centres[min(index, len(centres) - 1)] if centres.ndim == 2 else centres
        if not (np.isfinite(cy) and np.isfinite(cx)):
            self.viewer.set_diffraction(None)
            return
        px_inv = float((getattr(r, "calibration", None) or {}).get("pixel_size_inv_nm") or 0.0)
        radii = []
        if px_inv > 0:
            for tr in getattr(r, "rings", None) or []:
                frames = getattr(tr, "frames", None)
                if frames is not None and not np.any(np.asarray(frames) == index):
                    continue
                radii.append(float(tr.q_nm_inv) / px_inv)
        self.viewer.set_diffraction((cx, cy), radii)

    # -- closing ----------------------------------------------------------------------------------
    def closeEvent(self, event):
        if self.task is not None and self.task.isRunning():
            self.task.cancel()
            self.task.wait(5000)
        self.viewer.close_movie()
        super().closeEvent(event)


class _Shifts:
    """Drift shifts from an analysis result, shaped like a DriftResult for plotting and aligning."""

    def __init__(self, dy_px, dx_px, time_s=None):
        self.dy_px, self.dx_px, self.time_s = dy_px, dx_px, time_s


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _call_with_supported(func, *args, **kwargs):
    """Call ``func`` passing only the keyword arguments its signature accepts."""
    import inspect

    params = inspect.signature(func).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return func(*args, **kwargs)
