"""Linked result plots: every plot shares the time axis, shows a cursor at the current frame, and
a click in any of them asks the main window to jump to that time."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


class PlotsPanel(QWidget):
    """A grid of time-linked plots, rebuilt for each result.

    Signals
    -------
    time_clicked(float)
        The x coordinate (s, or frame number for untimed movies) of a click in a plot.
    """

    time_clicked = Signal(float)

    def __init__(self, parent=None, *, columns: int = 2):
        super().__init__(parent)
        self.columns = columns  # one more once the plots would need more than two rows
        self._layout_columns = columns
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        self.graphics.setAcceptDrops(False)
        self.graphics.scene().sigMouseClicked.connect(self._on_click)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.plots: dict[str, pg.PlotItem] = {}
        self.cursors: dict[str, pg.InfiniteLine] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self.curves: dict[str, dict[str, pg.PlotDataItem]] = {}
        self.x_label = "time (s)"
        self._cursor_x: float | None = None

    # -- building ---------------------------------------------------------------------------------
    def clear(self, names=None) -> None:
        """Remove all plots, or only the named ones (the grid is re-flowed)."""
        keep = {} if names is None else {k: v for k, v in self.plots.items() if k not in set(names)}
        self.graphics.clear()
        self._layout_columns = self.columns
        self.plots, self.cursors = {}, {k: c for k, c in self.cursors.items() if k in keep}
        self.images = {k: v for k, v in self.images.items() if k in keep}
        self.curves = {k: v for k, v in self.curves.items() if k in keep}
        for name, plot in keep.items():
            self._place(name, plot)

    def _columns_for(self, n_plots: int) -> int:
        return self.columns if n_plots <= 2 * self.columns else self.columns + 1

    def _place(self, name: str, plot: pg.PlotItem) -> None:
        n = len(self.plots)
        cols = self._columns_for(n + 1)
        if cols != self._layout_columns:
            # Re-flow: a third row would leave each plot too short to read.
            self._layout_columns = cols
            self.graphics.clear()
            for k, item in enumerate(self.plots.values()):
                self.graphics.addItem(item, row=k // cols, col=k % cols)
        self.graphics.addItem(plot, row=n // cols, col=n % cols)
        first = next(iter(self.plots.values()), None)
        if first is not None and first is not plot:
            plot.setXLink(first)
        self.plots[name] = plot

    def _new_plot(self, name: str, title: str, y_label: str) -> pg.PlotItem:
        if name in self.plots:
            self.clear([name])
        plot = pg.PlotItem(title=title)
        plot.setLabel("bottom", self.x_label)
        plot.setLabel("left", y_label)
        plot.getAxis("left").enableAutoSIPrefix(False)  # the label carries the unit
        plot.showGrid(x=True, y=True, alpha=0.25)
        plot.setMenuEnabled(False)
        cursor = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#ff1744", width=1.5))
        cursor.setZValue(50)
        plot.addItem(cursor, ignoreBounds=True)
        if self._cursor_x is not None:
            cursor.setValue(self._cursor_x)
        self.cursors[name] = cursor
        self._place(name, plot)
        return plot

    def add_curves(self, name: str, title: str, x, series: dict, *, y_label: str = "",
                   points: tuple[str, ...] = (), dashed: tuple[str, ...] = (), fits: dict | None = None,
                   best: str | None = None, legend_offset: tuple[int, int] = (-5, -5),
                   legend: bool = True) -> pg.PlotItem:
        """A plot of ``series`` {label: y} against ``x``; labels in ``points`` drawn as markers,
        ``fits`` {label: y} as lines (the ``best`` one thicker). The legend sits bottom-right by
        default (``legend_offset`` as in pyqtgraph: negative = from the right/bottom); ``legend``
        False leaves it out (many curves)."""
        plot = self._new_plot(name, title, y_label)
        if legend:
            box = plot.addLegend(offset=legend_offset, labelTextSize="8pt", verSpacing=-6)
            box.setBrush(pg.mkBrush(255, 255, 255, 200))
        x = np.asarray(x, dtype=float)
        items = self.curves.setdefault(name, {})
        for k, (label, y) in enumerate(series.items()):
            colour = _COLOURS[k % len(_COLOURS)]
            y = np.asarray(y, dtype=float)
            if label in points:
                items[label] = plot.plot(x, y, pen=None, symbol="o", symbolSize=5, symbolBrush=colour,
                                         symbolPen=None, name=label)
            else:
                style = Qt.PenStyle.DashLine if label in dashed else Qt.PenStyle.SolidLine
                items[label] = plot.plot(x, y, pen=pg.mkPen(colour, width=1.5, style=style), name=label,
                                         connect="finite")
        for k, (label, y) in enumerate((fits or {}).items()):
            width = 3 if label == best else 1.2
            style = Qt.PenStyle.SolidLine if label == best else Qt.PenStyle.DashLine
            plot.plot(x, np.asarray(y, dtype=float), name=f"{label} fit" + (" (chosen)" if label == best else ""),
                      pen=pg.mkPen(_COLOURS[(k + 3) % len(_COLOURS)], width=width, style=style))
        return plot

    def update_curves(self, name: str, x, series: dict) -> bool:
        """Replace the data of plot ``name``'s curves in place (it keeps its place in the grid).

        Returns False (nothing changed) when the plot does not exist or has other curves.
        """
        items = self.curves.get(name)
        if not items or set(items) != set(series):
            return False
        x = np.asarray(x, dtype=float)
        for label, y in series.items():
            items[label].setData(x, np.asarray(y, dtype=float), connect="finite")
        return True

    def curve_data(self, name: str, label: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(x, y) of one curve as drawn (tests, scripting)."""
        item = self.curves.get(name, {}).get(label)
        if item is None:
            return None
        return np.asarray(item.xData, dtype=float), np.asarray(item.yData, dtype=float)

    def add_image(self, name: str, title: str, image, *, x_range, y_range, y_label: str = "",
                  colormap: str | None = "viridis") -> pg.PlotItem:
        """An image with time along x: ``image`` has shape (n_times, n_y)."""
        plot = self._new_plot(name, title, y_label)
        data = np.asarray(image, dtype=np.float32).T  # row-major: rows -> y, columns -> time
        item = pg.ImageItem(axisOrder="row-major")
        finite = data[np.isfinite(data)]
        levels = np.percentile(finite, [1, 99]) if finite.size else (0, 1)
        item.setImage(np.nan_to_num(data, nan=float(levels[0])), levels=levels)
        if colormap:
            item.setColorMap(pg.colormap.get(colormap))
        x0, x1 = map(float, x_range)
        y0, y1 = map(float, y_range)
        item.setRect(QRectF(x0, y0, (x1 - x0) or 1.0, (y1 - y0) or 1.0))
        plot.addItem(item)
        self.images[name] = item
        return plot

    # -- cursor and clicks ------------------------------------------------------------------------
    def set_cursor(self, x: float) -> None:
        self._cursor_x = float(x)
        for c in self.cursors.values():
            c.setValue(self._cursor_x)

    def _on_click(self, event) -> None:
        pos = event.scenePos()
        for plot in self.plots.values():
            vb = plot.getViewBox()
            if vb.sceneBoundingRect().contains(pos):
                self.time_clicked.emit(float(vb.mapSceneToView(pos).x()))
                event.accept()
                return

    def click_plot(self, name: str, x: float) -> None:
        """Act as if the user clicked plot ``name`` at time ``x`` (tests, scripting)."""
        if name in self.plots:
            self.time_clicked.emit(float(x))
