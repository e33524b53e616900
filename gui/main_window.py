"""The main window: one analysis session (movie, drawn geometry, results), scriptable from tests.

Everything a user does with the mouse has a method here (``open_movie``, ``set_line``,
``run_analysis``, ``export_results`` ...), so tests and the screenshot script drive the same code
paths as the buttons. Long work runs in a :class:`~temtrack_gui.worker.TaskThread`; its results come
back through Qt signals and are shown by ``_show_*`` methods. The window computes nothing itself:
numbers come from the core's result objects.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QTabWidget,
)
from temtrack_gui import session
from temtrack_gui.panels.analysis import AnalysisPanel
from temtrack_gui.panels.metadata import MetadataPanel
from temtrack_gui.panels.plots import PlotsPanel
from temtrack_gui.panels.results import ResultsPanel
from temtrack_gui.viewer import ImageViewer
from temtrack_gui.worker import TaskThread

import temtrack
from temtrack.errors import ParameterError, TemtrackError

MAX_RECENT = 10


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
    drift_finished(object), rings_finished(object), fft_finished(object)
        The other tasks finished (their result objects).
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
        self.recipe_base = None        # AnalyzeRecipe loaded from a file, edited by the widgets
        self.last_recipe = None        # the recipe of the last analysis started
        self.last_kind: str | None = None  # 'analyze', 'rings' or 'fft': what Export writes
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
                           ("Export re&cipe…", self._export_recipe_dialog),
                           ("&Load recipe…", self._load_recipe_dialog)):
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
        ``frame_interval_s``) so that ``temtrack analyze --recipe`` replays it.
        """
        from temtrack.pipeline.analyze import AnalyzeRecipe

        width = float(self.controls.width_box.value())
        params: dict[str, Any] = {"auto": self.auto, "width_px": width if width > 0 else None,
                                  "probes_nm": list(self.probes_nm),
                                  "drift": bool(self.controls.drift_box.isChecked())}
        params.update(self.calibration_override)
        line = self.viewer.line()
        if self.auto:
            params["line"] = None
        elif line is not None:
            params["line"] = [round(v, 3) for v in line]
        elif self.recipe_base is None or getattr(self.recipe_base, "line", None) is None:
            raise ParameterError("draw the wire line (Draw line) or tick 'Auto-detect the wire' first")
        return session.build_recipe(AnalyzeRecipe, self.recipe_base, **params)

    def export_recipe(self, path: str | os.PathLike) -> Path:
        """Write the current recipe as JSON (replayable by ``temtrack analyze --recipe``)."""
        from temtrack.io.results import write_json_atomic

        recipe = self.current_recipe()
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
        """Load an AnalyzeRecipe file into the widgets."""
        from temtrack.pipeline.analyze import AnalyzeRecipe

        recipe = AnalyzeRecipe.from_file(path)
        self.recipe_base = recipe
        line = getattr(recipe, "line", None)
        width = getattr(recipe, "width_px", None)
        self.controls.width_box.setValue(float(width) if width else 0.0)
        if line is not None:
            self.set_line(*line)
        self.set_auto(bool(getattr(recipe, "auto", False)))
        self.set_probes(getattr(recipe, "probes_nm", None) or [])
        self.controls.drift_box.setChecked(bool(getattr(recipe, "drift", True)))

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
        try:
            on_success(result)
        except Exception as exc:  # noqa: BLE001 - a display problem must not lose the session
            self.show_error(f"{name} finished but its results could not be shown: "
                            f"{type(exc).__name__}: {_one_line(exc)}")
            self.task_ended.emit(name, "failed")
            return
        self.statusBar().showMessage(f"{name}: done", 8000)
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

    # -- export -----------------------------------------------------------------------------------
    def export_results(self, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path | None:
        """Write the results folder of the last finished analysis, as the CLI does (``temtrack
        analyze``, ``rings`` or ``fft``: results.json, CSV tables, figures)."""
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

    def _on_frame(self, index: int) -> None:
        if self.plots.plots:
            self.plots.set_cursor(self._frame_x(index))
        if self.result_json is not None:
            self._update_wire_overlay(index)
        if self.rings_result is not None:
            self._update_diffraction_overlay(index)

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
