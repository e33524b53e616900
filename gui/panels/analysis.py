"""Analysis controls: one tab per kind of analysis (wire + stimulus log, particles, lattice fringes /
diffraction), then drift, run/cancel and export.

This panel only collects choices and emits signals; the main window turns them into recipes and
runs the core.
"""
from __future__ import annotations

import dataclasses

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)


def stimulus_event_estimator():
    """The core's clock-offset-from-a-marked-event function, or None when this core has none."""
    from temtrack.series import stimulus

    return getattr(stimulus, "estimate_clock_offset_from_event", None)


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
    particles_requested = Signal()
    cancel_requested = Signal()
    export_results_requested = Signal()
    export_recipe_requested = Signal()
    export_video_requested = Signal()
    load_recipe_requested = Signal()
    stimulus_load_requested = Signal()
    stimulus_clear_requested = Signal()
    stimulus_offset_changed = Signal(float)
    stimulus_estimate_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.kind_tabs = QTabWidget()
        self.kind_tabs.addTab(self._wire_page(), "Wire")
        self.kind_tabs.addTab(self._particles_page(), "Particles")
        self.kind_tabs.addTab(self._lattice_page(), "Fringes / SAED")
        layout.addWidget(self.kind_tabs)

        drift = QGroupBox("Drift")
        self.drift_group = drift
        dl = QHBoxLayout(drift)
        self.drift_button = QPushButton("Estimate drift")
        self.aligned_box = QCheckBox("Show aligned")
        self.aligned_box.setEnabled(False)
        dl.addWidget(self.drift_button)
        dl.addWidget(self.aligned_box)
        layout.addWidget(drift)

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
        self.export_results_button = QPushButton("Results…")
        self.export_results_button.setToolTip("Write the results folder of the last analysis, as the CLI does")
        self.export_video_button = QPushButton("Video…")
        self.export_video_button.setToolTip("Annotated MP4 or GIF: scale bar, time stamp, overlays")
        self.export_recipe_button = QPushButton("Recipe…")
        self.load_recipe_button = QPushButton("Load recipe…")
        for b in (self.export_results_button, self.export_video_button, self.export_recipe_button,
                  self.load_recipe_button):
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
        self.particles_button.clicked.connect(self.particles_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.export_results_button.clicked.connect(self.export_results_requested)
        self.export_recipe_button.clicked.connect(self.export_recipe_requested)
        self.export_video_button.clicked.connect(self.export_video_requested)
        self.load_recipe_button.clicked.connect(self.load_recipe_requested)
        self.stimulus_load_button.clicked.connect(self.stimulus_load_requested)
        self.stimulus_clear_button.clicked.connect(self.stimulus_clear_requested)
        self.offset_box.valueChanged.connect(self.stimulus_offset_changed)
        if self.estimate_offset_button is not None:
            self.estimate_offset_button.clicked.connect(self.stimulus_estimate_requested)
        self._diffraction = False
        self._run_buttons = self._mode_buttons()

    # -- pages ------------------------------------------------------------------------------------
    def _wire_page(self) -> QWidget:
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.setContentsMargins(4, 4, 4, 4)
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
        pl.addWidget(wire)

        stim = QGroupBox("Stimulus log (current / voltage)")
        self.stimulus_group = stim
        sf = QFormLayout(stim)
        self.stimulus_edit = QLineEdit()
        self.stimulus_edit.setReadOnly(True)
        self.stimulus_edit.setPlaceholderText("potentiostat / biasing-holder CSV")
        self.stimulus_load_button = QPushButton("Load log…")
        self.stimulus_clear_button = QPushButton("Clear")
        row = QHBoxLayout()
        row.addWidget(self.stimulus_edit, 1)
        row.addWidget(self.stimulus_load_button)
        row.addWidget(self.stimulus_clear_button)
        sf.addRow(row)
        self.offset_box = QDoubleSpinBox()
        self.offset_box.setRange(-1e7, 1e7)
        self.offset_box.setDecimals(3)
        self.offset_box.setSingleStep(0.1)
        self.offset_box.setSuffix(" s")
        self.offset_box.setToolTip("Clock offset between the log and the movie: log time = movie time + offset")
        self.estimate_offset_button = None
        if stimulus_event_estimator() is not None:
            self.estimate_offset_button = QPushButton("Estimate from event…")
            self.estimate_offset_button.setToolTip("Offset from one event marked in both the log and the movie")
            row = QHBoxLayout()
            row.addWidget(self.offset_box, 1)
            row.addWidget(self.estimate_offset_button)
            sf.addRow("clock offset", row)
        else:
            sf.addRow("clock offset", self.offset_box)
        pl.addWidget(stim)
        pl.addStretch(1)
        return page

    def _particles_page(self) -> QWidget:
        from temtrack.pipeline.particles import ParticlesRecipe

        defaults = ParticlesRecipe()
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.setContentsMargins(4, 4, 4, 4)
        group = QGroupBox("Particles")
        self.particles_group = group
        form = QFormLayout(group)
        self.polarity_box = QComboBox()
        self.polarity_box.addItems(["dark", "bright"])
        self.polarity_box.setToolTip("Particles darker (bright field) or brighter (dark field) than the background")
        form.addRow("particles are", self.polarity_box)
        self.detect_frames_box = QSpinBox()
        self.detect_frames_box.setRange(1, 100000)
        self.detect_frames_box.setToolTip("Particles are detected on the drift-aligned mean of this many first frames")
        form.addRow("detect on first", self.detect_frames_box)
        self.min_radius_box = QDoubleSpinBox()
        self.min_radius_box.setRange(0.1, 10000)
        self.min_radius_box.setDecimals(1)
        self.min_radius_box.setSuffix(" px")
        self.min_radius_box.setToolTip("Smaller objects are ignored")
        form.addRow("min radius", self.min_radius_box)
        self.max_radius_factor_box = QDoubleSpinBox()
        self.max_radius_factor_box.setRange(1.0, 100.0)
        self.max_radius_factor_box.setDecimals(2)
        self.max_radius_factor_box.setSingleStep(0.1)
        self.max_radius_factor_box.setToolTip("Largest expected growth of a particle's radius (sets the fit region)")
        form.addRow("max growth ×", self.max_radius_factor_box)
        self.crack_frames_box = QSpinBox()
        self.crack_frames_box.setRange(1, 100000)
        self.crack_frames_box.setToolTip("Frames a split or a new hole must persist to flag a particle as cracked")
        form.addRow("crack persists", self.crack_frames_box)
        self.with_core_box = QCheckBox("Fit an unreacted core")
        self.particles_drift_box = QCheckBox("Follow the drift")
        form.addRow(self.with_core_box)
        form.addRow(self.particles_drift_box)
        self.particles_button = QPushButton("Run particles")
        form.addRow(self.particles_button)
        pl.addWidget(group)
        pl.addStretch(1)
        self.set_particles_params(defaults)
        return page

    def _lattice_page(self) -> QWidget:
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.setContentsMargins(4, 4, 4, 4)
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
        pl.addWidget(other)
        pl.addStretch(1)
        return page

    # -- particles parameters -----------------------------------------------------------------------
    def particles_params(self) -> dict:
        """The ParticlesRecipe fields the widgets set."""
        return {"polarity": self.polarity_box.currentText(),
                "detect_frames": int(self.detect_frames_box.value()),
                "with_core": bool(self.with_core_box.isChecked()),
                "drift_correction": bool(self.particles_drift_box.isChecked()),
                "min_radius_px": float(self.min_radius_box.value()),
                "max_radius_factor": float(self.max_radius_factor_box.value()),
                "crack_persist_frames": int(self.crack_frames_box.value())}

    def set_particles_params(self, recipe) -> None:
        """Show the fields of a ParticlesRecipe."""
        values = dataclasses.asdict(recipe) if dataclasses.is_dataclass(recipe) else dict(recipe)
        self.polarity_box.setCurrentText(str(values.get("polarity", "dark")))
        self.detect_frames_box.setValue(int(values.get("detect_frames", 5)))
        self.with_core_box.setChecked(bool(values.get("with_core", True)))
        self.particles_drift_box.setChecked(bool(values.get("drift_correction", True)))
        self.min_radius_box.setValue(float(values.get("min_radius_px", 3.0)))
        self.max_radius_factor_box.setValue(float(values.get("max_radius_factor", 1.7)))
        self.crack_frames_box.setValue(int(values.get("crack_persist_frames", 3)))

    # -- stimulus -----------------------------------------------------------------------------------
    def set_stimulus(self, path: str | None, offset_s: float | None = None) -> None:
        """Show the loaded log's path (None: no log) and optionally the offset (no signal)."""
        self.stimulus_edit.setText("" if path is None else str(path))
        self.stimulus_edit.setToolTip("" if path is None else str(path))
        if offset_s is not None:
            self.offset_box.blockSignals(True)
            self.offset_box.setValue(float(offset_s))
            self.offset_box.blockSignals(False)

    # -- modes --------------------------------------------------------------------------------------
    def _mode_buttons(self) -> tuple:
        image_only = (self.run_button, self.drift_button, self.fft_button, self.particles_button)
        wanted = (self.rings_button,) if self._diffraction else image_only
        return (*wanted, self.load_recipe_button, self.export_video_button)

    def set_mode(self, diffraction: bool) -> None:
        """Offer what fits the movie: rings for diffraction, wire/particles/drift/FFT for images."""
        self._diffraction = bool(diffraction)
        for w in (self.wire_group, self.stimulus_group, self.particles_group, self.drift_group,
                  self.fft_roi_box, self.fft_button):
            w.setEnabled(not diffraction)
        self.rings_button.setEnabled(diffraction)
        if diffraction:
            self.kind_tabs.setCurrentIndex(2)
        elif self.kind_tabs.currentIndex() == 2:
            self.kind_tabs.setCurrentIndex(0)
        self._run_buttons = self._mode_buttons()

    @property
    def selected_kind(self) -> str:
        """'analyze', 'particles' or 'lattice': the tab shown."""
        return ("analyze", "particles", "lattice")[max(0, self.kind_tabs.currentIndex())]

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
