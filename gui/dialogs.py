"""Dialogs: File > Export video… (the options of ``temtrack export-video``) and the event marked
to estimate a stimulus log's clock offset.

The dialogs only collect choices; the main window's
:meth:`~temtrack_gui.main_window.MainWindow.export_video` runs
:func:`temtrack.export.annotated_video.export_video` in the worker thread, and
:meth:`~temtrack_gui.main_window.MainWindow.estimate_stimulus_offset` calls the core's estimator.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)


@dataclass
class VideoOptions:
    """What the dialog asks for, in the terms of :meth:`MainWindow.export_video`.

    ``frames`` is a 0-based ``range`` (stop exclusive); ``crop`` is ``[x, y, w, h]`` in px or None;
    ``fps`` None means real time (capped to 2-30 fps by the core).
    """

    path: Path
    aligned: bool
    fps: float | None
    frames: range
    crop: list | None
    viewer_contrast: bool
    scale_bar: bool
    timestamp: bool
    overlays: bool
    stimulus_chart: str | None = None


class ExportVideoDialog(QDialog):
    """Options of an annotated MP4/GIF export.

    Parameters
    ----------
    movie : temtrack Movie
        The raw movie (frame count and timing).
    default_path : path-like
    aligned, has_drift, has_overlays : bool
        The view shown, whether a drift estimate exists, whether analysis overlays exist.
    roi : [x, y, w, h] or None
        The rectangle drawn on the image (offered as the crop).
    charts : sequence of str
        Stimulus channels that can be charted under the frames ('current', 'voltage', ...).
    """

    def __init__(self, movie, default_path, *, aligned: bool = False, has_drift: bool = False,
                 has_overlays: bool = False, roi=None, charts=(), parent=None):
        super().__init__(parent)
        self.setWindowTitle("Export video")
        self.movie = movie
        self.roi = list(roi) if roi is not None else None
        self.real_fps = 1.0 / movie.frame_interval_s if movie.frame_interval_s else None
        form = QFormLayout()

        self.path_edit = QLineEdit(str(default_path))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        form.addRow("file (.mp4 / .gif)", row)

        self.aligned_box = QCheckBox("Drift-corrected (aligned)")
        self.aligned_box.setChecked(aligned)
        self.aligned_box.setToolTip("Uses the session's drift estimate" if has_drift
                                    else "The drift is estimated first (no estimate in this session yet)")
        form.addRow(self.aligned_box)
        self.scale_bar_box = QCheckBox("Scale bar")
        self.scale_bar_box.setChecked(bool(movie.pixel_size))
        self.scale_bar_box.setEnabled(bool(movie.pixel_size))
        self.timestamp_box = QCheckBox("Time stamp (with the speed-up)")
        self.timestamp_box.setChecked(movie.times_s is not None)
        self.timestamp_box.setEnabled(movie.times_s is not None)
        row = QHBoxLayout()
        row.addWidget(self.scale_bar_box)
        row.addWidget(self.timestamp_box)
        form.addRow(row)
        self.overlays_box = QCheckBox("Analysis overlays (front, wire edges, probes)")
        self.overlays_box.setChecked(has_overlays)
        self.overlays_box.setEnabled(has_overlays)
        form.addRow(self.overlays_box)
        self.contrast_box = QCheckBox("Contrast from the viewer's levels")
        self.contrast_box.setChecked(True)
        self.contrast_box.setToolTip("Off: 0.5-99.5 percentiles of a few frames")
        form.addRow(self.contrast_box)

        self.fps_box = QDoubleSpinBox()
        self.fps_box.setRange(0.1, 120.0)
        self.fps_box.setDecimals(2)
        self.fps_box.setSuffix(" fps")
        self.speed_box = QDoubleSpinBox()
        self.speed_box.setRange(0.001, 1e6)
        self.speed_box.setDecimals(3)
        self.speed_box.setPrefix("×")
        self.speed_box.setToolTip("Speed-up against real time")
        self.speed_box.setEnabled(self.real_fps is not None)
        self.fps_box.setValue(min(30.0, max(2.0, self.real_fps or 10.0)))
        self._sync_speed()
        self.fps_box.valueChanged.connect(self._sync_speed)
        self.speed_box.valueChanged.connect(self._sync_fps)
        row = QHBoxLayout()
        row.addWidget(self.fps_box)
        row.addWidget(QLabel("speed-up"))
        row.addWidget(self.speed_box)
        form.addRow("frame rate", row)

        n = movie.n_frames
        self.first_box = QSpinBox()
        self.last_box = QSpinBox()
        for box in (self.first_box, self.last_box):
            box.setRange(1, n)
        self.first_box.setValue(1)
        self.last_box.setValue(n)
        row = QHBoxLayout()
        row.addWidget(self.first_box)
        row.addWidget(QLabel("to"))
        row.addWidget(self.last_box)
        form.addRow("frames", row)

        self.crop_box = QCheckBox("Crop to the drawn rectangle" + (f" {self.roi}" if self.roi else ""))
        self.crop_box.setChecked(self.roi is not None)
        self.crop_box.setEnabled(self.roi is not None)
        form.addRow(self.crop_box)

        self.chart_box = QComboBox()
        self.chart_box.addItems(["none", *charts])
        self.chart_box.setEnabled(bool(charts))
        self.chart_box.setToolTip("Strip chart of the stimulus log under the frames, with a cursor at each frame")
        form.addRow("log chart", self.chart_box)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export video", self.path_edit.text(),
                                              "MP4 video (*.mp4);;Animated GIF (*.gif)")
        if path:
            self.path_edit.setText(path)

    def _sync_speed(self) -> None:
        if self.real_fps:
            self.speed_box.blockSignals(True)
            self.speed_box.setValue(self.fps_box.value() / self.real_fps)
            self.speed_box.blockSignals(False)

    def _sync_fps(self) -> None:
        if self.real_fps:
            self.fps_box.blockSignals(True)
            self.fps_box.setValue(self.speed_box.value() * self.real_fps)
            self.fps_box.blockSignals(False)

    def options(self) -> VideoOptions:
        """The choices made, as arguments of :meth:`MainWindow.export_video`."""
        first, last = self.first_box.value(), self.last_box.value()
        if last < first:
            first, last = last, first
        return VideoOptions(path=Path(self.path_edit.text().strip()), aligned=self.aligned_box.isChecked(),
                            fps=float(self.fps_box.value()), frames=range(first - 1, last),
                            crop=self.roi if self.crop_box.isChecked() else None,
                            viewer_contrast=self.contrast_box.isChecked(),
                            scale_bar=self.scale_bar_box.isChecked(), timestamp=self.timestamp_box.isChecked(),
                            overlays=self.overlays_box.isChecked(),
                            stimulus_chart=None if self.chart_box.currentText() == "none"
                            else self.chart_box.currentText())


class EventDialog(QDialog):
    """The movie time of an event (bias switched on, contact made) and the log channel to find it in.

    Parameters
    ----------
    movie_time_s : float
        Default time: the frame shown.
    channels : sequence of str
        Channels offered ('auto' first).
    """

    def __init__(self, movie_time_s: float, channels=("auto",), parent=None):
        super().__init__(parent)
        self.setWindowTitle("Clock offset from an event")
        form = QFormLayout()
        info = QLabel("Show the frame where the event is seen (or type its time); the step in the log "
                      "that matches it gives the offset.")
        info.setWordWrap(True)
        form.addRow(info)
        self.time_box = QDoubleSpinBox()
        self.time_box.setRange(-1e7, 1e7)
        self.time_box.setDecimals(3)
        self.time_box.setSuffix(" s")
        self.time_box.setValue(float(movie_time_s))
        form.addRow("movie time of the event", self.time_box)
        self.channel_box = QComboBox()
        self.channel_box.addItems(list(dict.fromkeys(channels)))
        form.addRow("log channel", self.channel_box)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
