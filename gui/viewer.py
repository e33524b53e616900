"""The image view: frames with fixed levels, a levels histogram, scale bar, time slider, drawing.

Frames go into a pyqtgraph ``ImageItem`` (row-major, pixel (r, c) centred on (x=c, y=r) so that
the drawn coordinates are the core's pixel coordinates) inside a ``GraphicsLayoutWidget``; the
``ImageView`` widget is avoided on purpose (it has crashed with some PySide6 releases). Levels stay
fixed while scrubbing (set once from percentiles, then by the user on the histogram), which keeps
every frame on pyqtgraph's fast lookup-table path.

Drawing: the wire axis is a ``LineSegmentROI`` with its half-width shown as two dashed lines, the
probe points are markers along it, the FFT region is a ``RectROI``. Overlays (front position, wire
edges, diffraction centre and rings) are plain plot items the main window updates per frame.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QStyle,
    QVBoxLayout,
    QWidget,
)
from temtrack_gui.frame_cache import FrameCache
from temtrack_gui.session import nice_length, point_along


class ImageViewer(QWidget):
    """Frame display with slider, play/pause, levels, scale bar and the drawing tools.

    Signals
    -------
    frame_changed(int)
        The displayed frame changed (slider, play, :meth:`set_frame`).
    line_changed(object)
        The wire line moved: ``[x0, y0, x1, y1]`` in pixels.
    roi_changed(object)
        The FFT rectangle moved: ``[x, y, width, height]`` in pixels.
    """

    frame_changed = Signal(int)
    line_changed = Signal(object)
    roi_changed = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.movie = None
        self.cache: FrameCache | None = None
        self.current = 0
        self.pixel_size: float | None = None
        self.pixel_unit: str | None = None
        self.line_width_px = 0.0
        self.log_display = False
        self.probes_nm: list[float] = []

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setAcceptDrops(False)  # let file drops reach the main window
        self.plot = self.graphics.addPlot()
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMenuEnabled(False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setAutoDownsample(True)
        self.plot.addItem(self.image)
        self.histogram = pg.HistogramLUTItem()
        self.histogram.setImageItem(self.image)
        # The histogram would be recomputed and repainted for every frame (a third of the frame
        # time at 1024x1024); refresh it at most a few times a second instead.
        self.image.sigImageChanged.disconnect(self.histogram.imageChanged)
        self._histogram_timer = QTimer(self)
        self._histogram_timer.setSingleShot(True)
        self._histogram_timer.setInterval(300)
        self._histogram_timer.timeout.connect(lambda: self.histogram.imageChanged(autoLevel=False))
        self.graphics.addItem(self.histogram)

        self.scale_bar: pg.ScaleBar | None = None
        self._build_overlays()
        self._build_controls()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(self._controls)

        self.timer = QTimer(self)
        self.timer.timeout.connect(self._advance)
        self._draw_points: list[tuple[float, float]] | None = None
        self.graphics.scene().sigMouseClicked.connect(self._on_scene_click)

    # -- construction ---------------------------------------------------------------------------
    def _build_overlays(self):
        self.line_roi = pg.LineSegmentROI([[0, 0], [1, 1]], pen=pg.mkPen("#00e5ff", width=2))
        self.line_roi.setZValue(20)
        self.line_roi.setVisible(False)
        self.line_roi.sigRegionChanged.connect(self._on_line_moved)
        self.plot.addItem(self.line_roi)
        self.width_curves = [pg.PlotCurveItem(pen=pg.mkPen("#00e5ff", width=1, style=Qt.PenStyle.DashLine))
                             for _ in range(2)]
        self.probe_points = pg.ScatterPlotItem(size=9, symbol="o", pen=pg.mkPen("k"),
                                               brush=pg.mkBrush("#ffd600"))
        self.front_marker = pg.ScatterPlotItem(size=16, symbol="t1", pen=pg.mkPen("k"),
                                               brush=pg.mkBrush("#ff1744"))
        self.edge_curves = [pg.PlotCurveItem(pen=pg.mkPen("#76ff03", width=1.5)) for _ in range(4)]
        self.centre_marker = pg.ScatterPlotItem(size=18, symbol="+", pen=pg.mkPen("#ff1744", width=2))
        self.ring_curves: list[pg.PlotCurveItem] = []
        # Particles: every outline in one polyline (NaN-separated), cracked ones in a second.
        self.particle_curve = pg.PlotCurveItem(pen=pg.mkPen("#00e5ff", width=1.5), connect="finite")
        self.cracked_curve = pg.PlotCurveItem(pen=pg.mkPen("#ff1744", width=1.5), connect="finite")
        self.particle_labels: list[pg.TextItem] = []
        for item in (*self.width_curves, self.probe_points, self.front_marker, *self.edge_curves,
                     self.centre_marker, self.particle_curve, self.cracked_curve):
            item.setZValue(15)
            item.setVisible(False)
            self.plot.addItem(item)
        self.fft_roi = pg.RectROI([0, 0], [64, 64], pen=pg.mkPen("#ff9100", width=2))
        self.fft_roi.setZValue(20)
        self.fft_roi.setVisible(False)
        self.fft_roi.sigRegionChangeFinished.connect(lambda *_: self.roi_changed.emit(self.fft_rect()))
        self.plot.addItem(self.fft_roi)

    def _build_controls(self):
        self.play_button = QPushButton()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play / pause")
        self.play_button.toggled.connect(self.set_playing)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self._on_slider)
        self.fps_box = QDoubleSpinBox()
        self.fps_box.setRange(1, 120)
        self.fps_box.setValue(25)
        self.fps_box.setSuffix(" fps")
        self.fps_box.setToolTip("Playback speed")
        self.fps_box.valueChanged.connect(self._update_timer)
        self.frame_label = QLabel("no movie")
        self.frame_label.setMinimumWidth(220)
        self.log_box = QCheckBox("log")
        self.log_box.setToolTip("Show log(1 + intensity): for diffraction patterns")
        self.log_box.toggled.connect(self.set_log)
        self.auto_levels_button = QPushButton("Auto levels")
        self.auto_levels_button.setToolTip("Levels from the 0.5-99.5 percentiles of this frame")
        self.auto_levels_button.clicked.connect(self.auto_levels)
        self._controls = QHBoxLayout()
        for w in (self.play_button, self.slider, self.fps_box, self.frame_label, self.log_box,
                  self.auto_levels_button):
            self._controls.addWidget(w, 1 if w is self.slider else 0)

    # -- movie ------------------------------------------------------------------------------------
    def set_movie(self, movie, *, keep_levels: bool = False, frame: int | None = None) -> None:
        """Show ``movie`` (a temtrack Movie); keep the current frame and levels when asked."""
        old_levels = self.image.getLevels() if keep_levels and self.image.image is not None else None
        self.set_playing(False)
        if self.cache is not None:
            self.cache.close()
        self.movie = movie
        self.cache = FrameCache(movie)
        self.pixel_size, self.pixel_unit = movie.pixel_size, movie.pixel_unit
        rows, cols = movie.frame_shape
        index = min(self.current if frame is None else frame, movie.n_frames - 1)
        if not keep_levels:
            self.log_box.blockSignals(True)
            self.log_box.setChecked(bool(movie.is_diffraction))
            self.log_box.blockSignals(False)
            self.log_display = bool(movie.is_diffraction)
        first = self._display(self.cache.get(index))
        self.image.setImage(first, autoLevels=False)
        self.image.setRect(QRectF(-0.5, -0.5, cols, rows))
        if old_levels is not None:
            self.set_levels(*old_levels)
        else:
            self.auto_levels()
            self.plot.getViewBox().autoRange(padding=0.02)
        # Auto-ranging would re-examine the bounds of every item on every frame.
        self.plot.getViewBox().disableAutoRange()
        self.histogram.imageChanged(autoLevel=False)
        self.slider.blockSignals(True)
        self.slider.setRange(0, movie.n_frames - 1)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.current = index
        self._update_scale_bar()
        self._update_label()
        self.frame_changed.emit(index)

    def close_movie(self) -> None:
        self.set_playing(False)
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def _display(self, frame: np.ndarray) -> np.ndarray:
        if not self.log_display:
            return frame
        return np.log1p(np.clip(frame, 0, None, dtype=np.float32))

    def set_log(self, on: bool) -> None:
        """Display log(1 + I) (diffraction) or I; levels are re-derived."""
        self.log_display = bool(on)
        if self.cache is not None:
            self.image.setImage(self._display(self.cache.get(self.current)), autoLevels=False)
            self.auto_levels()

    def set_levels(self, low: float, high: float) -> None:
        if not high > low:
            high = low + 1.0
        self.image.setLevels((float(low), float(high)))
        self.histogram.setLevels(float(low), float(high))

    def auto_levels(self) -> None:
        img = self.image.image
        if img is None:
            return
        sample = np.asarray(img[::4, ::4], dtype=np.float32)
        finite = sample[np.isfinite(sample)]
        if finite.size == 0:
            return
        lo, hi = np.percentile(finite, [0.5, 99.5])
        self.set_levels(lo, hi)

    # -- frames -----------------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return 0 if self.movie is None else self.movie.n_frames

    def set_frame(self, index: int) -> None:
        """Display frame ``index`` (clipped to the movie)."""
        if self.movie is None:
            return
        index = int(np.clip(index, 0, self.n_frames - 1))
        if self.slider.value() != index:
            self.slider.setValue(index)  # -> _on_slider -> _show
        else:
            self._show(index)

    def _on_slider(self, value: int) -> None:
        self._show(int(value))

    def _show(self, index: int) -> None:
        if self.cache is None:
            return
        frame = self._display(self.cache.get(index))
        self.image.setImage(frame, autoLevels=False)
        if not self._histogram_timer.isActive():
            self._histogram_timer.start()
        self.current = index
        self._update_label()
        self.frame_changed.emit(index)

    def _update_label(self) -> None:
        m = self.movie
        if m is None:
            self.frame_label.setText("no movie")
            return
        text = f"frame {self.current + 1} / {m.n_frames}"
        if m.times_s is not None:
            text += f"   t = {m.times_s[self.current]:.3f} s"
        self.frame_label.setText(text)

    def set_playing(self, playing: bool) -> None:
        if self.play_button.isChecked() != playing:
            self.play_button.setChecked(playing)  # re-enters through toggled
            return
        icon = QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        self.play_button.setIcon(self.style().standardIcon(icon))
        if playing and self.movie is not None:
            self._update_timer()
            self.timer.start()
        else:
            self.timer.stop()

    def _update_timer(self) -> None:
        self.timer.setInterval(max(1, round(1000.0 / self.fps_box.value())))

    def _advance(self) -> None:
        if self.movie is None:
            return
        self.set_frame((self.current + 1) % self.n_frames)

    # -- scale bar --------------------------------------------------------------------------------
    def _update_scale_bar(self) -> None:
        if self.scale_bar is not None:
            # ScaleBar.setParentItem(None) raises (it re-anchors); leaving the scene detaches it.
            if self.scale_bar.scene() is not None:
                self.scale_bar.scene().removeItem(self.scale_bar)
            self.scale_bar = None
        if self.movie is None or not self.pixel_size:
            return
        cols = self.movie.frame_shape[1]
        length = nice_length(0.2 * cols * self.pixel_size)
        unit = "nm" if self.pixel_unit == "nm" else "1/nm"
        bar = pg.ScaleBar(size=length / self.pixel_size, width=6, brush="w", pen="k",
                          suffix="", offset=(-20, -20))
        bar.setParentItem(self.plot.getViewBox())
        bar.text.setText(f"{length:g} {unit}")
        self.scale_bar = bar

    # -- wire line, width and probes --------------------------------------------------------------
    def set_line(self, line, width_px: float | None = None) -> None:
        """Place the wire line ``[x0, y0, x1, y1]`` (pixels) and its width."""
        x0, y0, x1, y1 = map(float, line)
        handles = self.line_roi.getHandles()
        self.line_roi.blockSignals(True)
        self.line_roi.setPos(QPointF(0, 0))
        self.line_roi.movePoint(handles[0], QPointF(x0, y0), finish=False)
        self.line_roi.movePoint(handles[1], QPointF(x1, y1))
        self.line_roi.blockSignals(False)
        self.line_roi.setVisible(True)
        if width_px is not None:
            self.line_width_px = float(width_px)
        self._on_line_moved()

    def start_line_drawing(self) -> None:
        """The next two clicks on the image place the line: contact end first, then the far end."""
        self._draw_points = []
        self.graphics.setCursor(Qt.CursorShape.CrossCursor)

    @property
    def drawing(self) -> bool:
        return self._draw_points is not None

    def click_image(self, x: float, y: float) -> None:
        """A click on the image at pixel (x, y) (also used by tests)."""
        if self._draw_points is None:
            return
        self._draw_points.append((float(x), float(y)))
        if len(self._draw_points) == 2:
            (x0, y0), (x1, y1) = self._draw_points
            self._draw_points = None
            self.graphics.unsetCursor()
            self.set_line([x0, y0, x1, y1])

    def _on_scene_click(self, event) -> None:
        if self._draw_points is None or event.button() != Qt.MouseButton.LeftButton:
            return
        vb = self.plot.getViewBox()
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        p = vb.mapSceneToView(event.scenePos())
        event.accept()
        self.click_image(p.x(), p.y())

    def default_line(self) -> list[float]:
        """A horizontal line across the middle 60% of the frame, for the user to drag."""
        rows, cols = self.movie.frame_shape if self.movie is not None else (100, 100)
        return [0.2 * cols, rows / 2, 0.8 * cols, rows / 2]

    def line(self) -> list[float] | None:
        if not self.line_roi.isVisible():
            return None
        pts = [self.line_roi.mapToParent(p) for p in self.line_roi.listPoints()]
        return [float(pts[0].x()), float(pts[0].y()), float(pts[1].x()), float(pts[1].y())]

    def clear_line(self) -> None:
        self.line_roi.setVisible(False)
        for c in self.width_curves:
            c.setData([], [])
            c.setVisible(False)
        self.probe_points.setData([], [])
        self.probe_points.setVisible(False)
        self.line_changed.emit(None)

    def set_line_width(self, width_px: float) -> None:
        self.line_width_px = float(width_px)
        self._draw_line_decorations()

    def set_probes(self, probes_nm) -> None:
        self.probes_nm = [float(p) for p in probes_nm]
        self._draw_line_decorations()

    def _on_line_moved(self, *_):
        self._draw_line_decorations()
        self.line_changed.emit(self.line())

    def _draw_line_decorations(self) -> None:
        line = self.line()
        if line is None:
            return
        x0, y0, x1, y1 = line
        length = math.hypot(x1 - x0, y1 - y0) or 1.0
        nx, ny = -(y1 - y0) / length, (x1 - x0) / length
        half = self.line_width_px / 2
        for side, curve in zip((-1, 1), self.width_curves):
            curve.setVisible(half > 0)
            curve.setData([x0 + side * half * nx, x1 + side * half * nx],
                          [y0 + side * half * ny, y1 + side * half * ny])
        if self.probes_nm and self.pixel_size:
            pts = [point_along(line, p / self.pixel_size) for p in self.probes_nm]
            self.probe_points.setData([p[0] for p in pts], [p[1] for p in pts])
        else:
            self.probe_points.setData([], [])
        self.probe_points.setVisible(bool(self.probes_nm and self.pixel_size))

    # -- FFT rectangle ----------------------------------------------------------------------------
    def show_fft_roi(self, visible: bool, rect=None) -> None:
        if rect is not None:
            x, y, w, h = map(float, rect)
            self.fft_roi.setPos(QPointF(x, y), finish=False)
            self.fft_roi.setSize(QPointF(w, h))
        elif visible and self.movie is not None and not self.fft_roi.isVisible():
            rows, cols = self.movie.frame_shape
            side = max(16, min(rows, cols) // 4)
            self.fft_roi.setPos(QPointF((cols - side) / 2, (rows - side) / 2), finish=False)
            self.fft_roi.setSize(QPointF(side, side))
        self.fft_roi.setVisible(visible)
        self.roi_changed.emit(self.fft_rect())

    def fft_rect(self) -> list[int] | None:
        """The FFT region as ``[x, y, width, height]`` in whole pixels, or None when hidden."""
        if not self.fft_roi.isVisible():
            return None
        pos, size = self.fft_roi.pos(), self.fft_roi.size()
        return [round(pos.x() + 0.5), round(pos.y() + 0.5), round(size.x()), round(size.y())]

    # -- overlays ---------------------------------------------------------------------------------
    def set_front(self, xy) -> None:
        if xy is None:
            self.front_marker.setData([], [])
        else:
            self.front_marker.setData([xy[0]], [xy[1]])
        self.front_marker.setVisible(xy is not None)

    def set_edges(self, segments) -> None:
        # Empty items are hidden: even an empty item costs a paint call per frame.
        for i, curve in enumerate(self.edge_curves):
            if i < len(segments):
                curve.setData(*segments[i], connect="finite")
            else:
                curve.setData([], [])
            curve.setVisible(i < len(segments))

    def set_particles(self, outlines: dict | None) -> None:
        """Draw particle outlines and id labels (``session.particle_outlines``); None clears them.

        Label items are kept and re-used from frame to frame (creating text items per frame
        would dominate the frame time).
        """
        if outlines is None or len(outlines.get("ids", ())) == 0:
            for c in (self.particle_curve, self.cracked_curve):
                c.setData([], [])
                c.setVisible(False)
            for t in self.particle_labels:
                t.setVisible(False)
            return
        x, y = np.asarray(outlines["x"], float), np.asarray(outlines["y"], float)
        cracked = np.asarray(outlines["cracked"], bool)
        per = x.size // max(1, cracked.size)  # points per outline, NaN separator included
        mask = np.repeat(cracked, per)
        for curve, sel in ((self.particle_curve, ~mask), (self.cracked_curve, mask)):
            curve.setData(x[sel], y[sel], connect="finite")
            curve.setVisible(bool(sel.any()))
        ids, xy = outlines["ids"], np.asarray(outlines["label_xy"], float)
        while len(self.particle_labels) < len(ids):
            label = pg.TextItem(color="#ffd600", anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 140))
            font = label.textItem.font()
            font.setBold(True)
            label.setFont(font)
            label.setZValue(16)
            self.plot.addItem(label)
            self.particle_labels.append(label)
        for j, label in enumerate(self.particle_labels):
            if j < len(ids):
                label.setText(str(ids[j]))
                label.setPos(float(xy[j, 0]), float(xy[j, 1]))
            label.setVisible(j < len(ids))

    def particle_labels_shown(self) -> list[str]:
        """Texts of the visible particle labels (tests)."""
        return [t.toPlainText() for t in self.particle_labels if t.isVisible()]

    def set_diffraction(self, centre_xy, radii_px=(), labels=()) -> None:
        """Mark the pattern centre and overlay rings of the given radii (pixels)."""
        for c in self.ring_curves:
            self.plot.removeItem(c)
        self.ring_curves = []
        self.centre_marker.setVisible(centre_xy is not None)
        if centre_xy is None:
            self.centre_marker.setData([], [])
            return
        cx, cy = map(float, centre_xy)
        self.centre_marker.setData([cx], [cy])
        phi = np.linspace(0, 2 * np.pi, 181)
        colours = ["#ff1744", "#ffd600", "#00e5ff", "#76ff03", "#d500f9", "#ff9100"]
        for k, r in enumerate(radii_px):
            if not (r and np.isfinite(r)):
                continue
            curve = pg.PlotCurveItem(cx + r * np.cos(phi), cy + r * np.sin(phi),
                                     pen=pg.mkPen(colours[k % len(colours)], width=1.2))
            curve.setZValue(14)
            self.plot.addItem(curve)
            self.ring_curves.append(curve)
