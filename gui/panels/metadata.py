"""Metadata panel: what the reader found in the file, its problems, and calibration overrides."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)
from temtrack_gui.session import flat_rows


class MetadataPanel(QWidget):
    """Movie summary (``Movie.summary()``) as a tree, plus pixel size / frame interval overrides.

    Signals
    -------
    calibration_requested(object, object, object)
        ``(pixel_size or None, pixel_unit, frame_interval_s or None)`` when Apply is pressed.
    """

    calibration_requested = Signal(object, object, object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["property", "value"])
        self.tree.setColumnWidth(0, 150)
        box = QGroupBox("Calibration override")
        form = QFormLayout(box)
        self.pixel_size = QDoubleSpinBox()
        self.pixel_size.setDecimals(5)
        self.pixel_size.setRange(0, 1e6)
        self.pixel_size.setSpecialValueText("from file")
        self.pixel_unit = QComboBox()
        self.pixel_unit.addItems(["nm", "1/nm"])
        self.frame_interval = QDoubleSpinBox()
        self.frame_interval.setDecimals(5)
        self.frame_interval.setRange(0, 1e5)
        self.frame_interval.setSuffix(" s")
        self.frame_interval.setSpecialValueText("from file")
        self.apply_button = QPushButton("Apply calibration")
        self.apply_button.clicked.connect(self._apply)
        form.addRow("pixel size", self.pixel_size)
        form.addRow("unit", self.pixel_unit)
        form.addRow("frame interval", self.frame_interval)
        form.addRow(self.apply_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree, 1)
        layout.addWidget(box)

    def set_movie(self, movie) -> None:
        self.tree.clear()
        if movie is None:
            return
        summary = movie.summary()
        problems = summary.pop("problems", [])
        for key, text in flat_rows(summary, max_list=3):
            QTreeWidgetItem(self.tree, [key, text])
        if problems:
            node = QTreeWidgetItem(self.tree, ["problems", str(len(problems))])
            for p in problems:
                QTreeWidgetItem(node, ["", str(p)]).setToolTip(1, str(p))
            node.setExpanded(True)
        if movie.original_metadata:
            node = QTreeWidgetItem(self.tree, ["original metadata", ""])
            for key, text in flat_rows(movie.original_metadata, max_list=4)[:500]:
                QTreeWidgetItem(node, [key, text])
        self.tree.resizeColumnToContents(0)

    def value(self, key: str) -> str | None:
        """Text shown for a top-level ``key`` (tests)."""
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item.text(0) == key:
                return item.text(1)
        return None

    def _apply(self) -> None:
        px = self.pixel_size.value() or None
        dt = self.frame_interval.value() or None
        self.calibration_requested.emit(px, self.pixel_unit.currentText(), dt)
