"""Analysis controls: the wire line, probes, drift, FFT ROI, diffraction, run/cancel, export.

This panel only collects choices and emits signals; the main window turns them into recipes and
runs the core.
"""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class AnalysisPanel(QWidget):
    """Buttons and fields that drive an analysis session."""

    draw_line_requested = Signal()
    clear_line_requested = Signal()
    width_changed = Signal(float)
    probes_edited = Signal(str)
    run_requested = Signal()
    drift_requested = Signal()
    aligned_toggled = Signal(bool)
    fft_roi_toggled = Signal(bool)
    fft_requested = Signal()
    rings_requested = Signal()
    cancel_requested = Signal()
    export_results_requested = Signal()
    export_recipe_requested = Signal()
    load_recipe_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)

        wire = QGroupBox("Wire (analyze)")
        self.wire_group = wire
        form = QFormLayout(wire)
        row = QHBoxLayout()
        self.draw_line_button = QPushButton("Draw line")
        self.draw_line_button.setToolTip("Click the contact end of the wire, then its far end; drag the handles to adjust")
        self.clear_line_button = QPushButton("Clear")
        row.addWidget(self.draw_line_button)
        row.addWidget(self.clear_line_button)
        form.addRow(row)
        self.auto_box = QCheckBox("Auto-detect the wire")
        self.auto_box.setToolTip("Let the analysis find the wire axis (the drawn line is ignored)")
        form.addRow(self.auto_box)
        self.width_box = QDoubleSpinBox()
        self.width_box.setRange(0, 2000)
        self.width_box.setDecimals(1)
        self.width_box.setValue(0)
        self.width_box.setSuffix(" px")
        self.width_box.setSpecialValueText("measured")
        self.width_box.setToolTip("Wire width in px (about the pristine diameter); 0 = measured by the analysis")
        form.addRow("wire width", self.width_box)
        self.probes_edit = QLineEdit()
        self.probes_edit.setPlaceholderText("e.g. 20, 60, 100 (nm from the contact)")
        form.addRow("probes (nm)", self.probes_edit)
        self.drift_box = QCheckBox("Correct drift")
        self.drift_box.setChecked(True)
        form.addRow(self.drift_box)
        self.run_button = QPushButton("Run analysis")
        self.run_button.setDefault(True)
        form.addRow(self.run_button)
        layout.addWidget(wire)

        drift = QGroupBox("Drift")
        self.drift_group = drift
        dl = QHBoxLayout(drift)
        self.drift_button = QPushButton("Estimate drift")
        self.aligned_box = QCheckBox("Show aligned")
        self.aligned_box.setEnabled(False)
        dl.addWidget(self.drift_button)
        dl.addWidget(self.aligned_box)
        layout.addWidget(drift)

        other = QGroupBox("Lattice fringes / diffraction")
        ol = QFormLayout(other)
        self.fft_roi_box = QCheckBox("FFT region")
        self.fft_button = QPushButton("Run FFT")
        row = QHBoxLayout()
        row.addWidget(self.fft_roi_box)
        row.addWidget(self.fft_button)
        ol.addRow(row)
        self.rings_button = QPushButton("Run rings (SAED)")
        ol.addRow(self.rings_button)
        layout.addWidget(other)

        run = QGroupBox("Progress")
        rl = QVBoxLayout(run)
        self.status_label = QLabel("idle")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        rl.addWidget(self.status_label)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        rl.addLayout(row)
        layout.addWidget(run)

        export = QGroupBox("Export")
        el = QHBoxLayout(export)
        self.export_results_button = QPushButton("Results folder…")
        self.export_recipe_button = QPushButton("Recipe…")
        self.load_recipe_button = QPushButton("Load recipe…")
        for b in (self.export_results_button, self.export_recipe_button, self.load_recipe_button):
            el.addWidget(b)
        layout.addWidget(export)
        layout.addStretch(1)

        self.draw_line_button.clicked.connect(self.draw_line_requested)
        self.clear_line_button.clicked.connect(self.clear_line_requested)
        self.width_box.valueChanged.connect(self.width_changed)
        self.probes_edit.editingFinished.connect(lambda: self.probes_edited.emit(self.probes_edit.text()))
        self.run_button.clicked.connect(self.run_requested)
        self.drift_button.clicked.connect(self.drift_requested)
        self.aligned_box.toggled.connect(self.aligned_toggled)
        self.fft_roi_box.toggled.connect(self.fft_roi_toggled)
        self.fft_button.clicked.connect(self.fft_requested)
        self.rings_button.clicked.connect(self.rings_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.export_results_button.clicked.connect(self.export_results_requested)
        self.export_recipe_button.clicked.connect(self.export_recipe_requested)
        self.load_recipe_button.clicked.connect(self.load_recipe_requested)
        self._run_buttons = (self.run_button, self.drift_button, self.fft_button, self.rings_button,
                             self.load_recipe_button)

    def set_mode(self, diffraction: bool) -> None:
        """Offer what fits the movie: rings for diffraction, wire/drift/FFT for images."""
        for w in (self.wire_group, self.drift_group, self.fft_roi_box, self.fft_button):
            w.setEnabled(not diffraction)
        self.rings_button.setEnabled(diffraction)
        self._run_buttons = tuple(b for b in (self.run_button, self.drift_button, self.fft_button,
                                              self.rings_button, self.load_recipe_button)
                                  if (b is self.rings_button) == diffraction or b is self.load_recipe_button)

    def set_busy(self, busy: bool, text: str = "") -> None:
        """Disable the run buttons and enable Cancel while a task runs."""
        for b in self._run_buttons:
            b.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if busy:
            self.progress.setRange(0, 0)  # busy indicator until the first progress report
        else:
            self.progress.setRange(0, 100)
        if text:
            self.status_label.setText(text)

    def set_progress(self, done: int, total: int) -> None:
        if total <= 0:
            return
        self.progress.setRange(0, 100)
        self.progress.setValue(round(100 * done / total))
