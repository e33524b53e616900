"""Results panel: the numbers of the last analysis (D, k, n, t0 with 95% intervals, expansion,
model choice), as a read-only table the user can copy from."""
from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from temtrack_gui.session import (
    expansion_rows,
    flat_rows,
    format_with_ci,
    kinetics_rows,
    particle_rows,
    particle_text,
)


class ResultsPanel(QWidget):
    """Table of result rows; :meth:`value` returns the number behind a row (tests, scripting)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel("No results yet")
        self.title.setWordWrap(True)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["quantity", "value [95% interval]"])
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.table, 1)
        self._values: dict[str, float | None] = {}

    def clear(self) -> None:
        self.table.setRowCount(0)
        self._values.clear()
        self.title.setText("No results yet")

    def _add(self, label: str, text: str, value=None, *, bold: bool = False) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        a, b = QTableWidgetItem(label), QTableWidgetItem(text)
        b.setToolTip(text)
        if bold:
            f = a.font()
            f.setBold(True)
            a.setFont(f)
            b.setFont(f)
        self.table.setItem(r, 0, a)
        self.table.setItem(r, 1, b)
        self._values[label] = value

    def _section(self, title: str) -> None:
        self._add(f"— {title} —", "", None, bold=True)

    def show_analyze(self, data: dict) -> None:
        """Fill the table from an ``analyze`` result's ``to_json()``."""
        self.clear()
        self.title.setText(f"analyze: {data.get('provenance', {}).get('file', '')}")
        kin = data.get("kinetics")
        if kin and kin.get("model"):
            self._section("kinetics")
            for label, text, value in kinetics_rows(kin):
                self._add(label, text, value, bold=label in ("D", "model"))
        elif kin is not None:
            self._add("kinetics", f"not fitted: {kin.get('error') or 'no front'}")
        diam = data.get("diameter") or {}
        if diam:
            self._section("diameters")
            for key in ("pristine", "sodiated"):
                v, e = diam.get(f"{key}_nm"), diam.get(f"{key}_err_nm")
                ci = None if v is None or e is None else [v - 1.96 * e, v + 1.96 * e]
                self._add(f"{key} diameter", format_with_ci(v, ci, "nm"), v)
        rows = expansion_rows(data.get("expansion"))
        if rows:
            self._section("expansion")
            for label, text, value in rows:
                self._add(label, text, value)
        wire = data.get("wire") or {}
        if wire:
            self._section("wire")
            for key in ("line_px", "width_px", "length_nm", "angle_deg", "auto"):
                if key in wire:
                    self._add(f"wire.{key}", flat_rows({key: wire[key]})[0][1], _number(wire, key))
        problems = data.get("problems") or []
        if problems:
            self._section("problems")
            for p in problems:
                self._add("problem", str(p))
        warnings = [w for w in (data.get("warnings") or []) if w not in problems]
        if warnings:
            self._section("warnings")
            for w in warnings:
                self._add("warning", str(w))

    def show_rings(self, data: dict) -> None:
        """Fill the table from a ``rings`` result's ``to_json()``: calibration, rings, phases."""
        self.clear()
        self.title.setText(f"rings: {(data.get('source') or {}).get('path', '')}")
        cal = data.get("calibration") or {}
        self._section("calibration")
        for key, text in flat_rows(cal):
            self._add(f"calibration.{key}", text, _number(cal, key))
        geo = data.get("geometry") or {}
        for key in ("ellipticity", "ellipticity_angle_deg"):
            if key in geo:
                self._add(key, flat_rows({key: geo[key]})[0][1], _number(geo, key))
        peaks = (data.get("rings") or {}).get("peaks") or []
        if peaks:
            self._section("rings")
        for j, pk in enumerate(peaks):
            label = " ".join(str(x) for x in (pk.get("phase"), pk.get("hkl")) if x) or "unassigned"
            size = pk.get("scherrer_size_nm")
            text = (f"d = {pk.get('d_A', float('nan')):.4f} ± {pk.get('d_err_A') or 0:.4f} Å, {label}"
                    + (f", L = {size:.1f} nm" if isinstance(size, (int, float)) else ""))
            self._add(f"ring {j}", text, pk.get("d_A"))
        onsets = data.get("onsets_s") or {}
        if onsets:
            self._section("phase onsets (s)")
            for phase, t in onsets.items():
                self._add(f"onset {phase}", flat_rows({phase: t})[0][1], t if isinstance(t, (int, float)) else None)
        problems = data.get("problems") or []
        if problems:
            self._section("problems")
            for p in problems:
                self._add("problem", str(p))

    def show_fft(self, data: dict) -> None:
        """Fill the table from an ``fft`` result's ``to_json()``: ROI and the fringe sets."""
        self.clear()
        self.title.setText(f"fft: {(data.get('provenance') or {}).get('file', '')}")
        self._add("roi [x, y, w, h] px", flat_rows({"roi": data.get("roi")})[0][1])
        self._add("pixel size", f"{data.get('pixel_size_nm')} nm", data.get("pixel_size_nm"))
        fr = data.get("fringes") or {}
        for j, st in enumerate(fr.get("sets") or []):
            exp = [v for v in (st.get("expansion_pct") or []) if v is not None]
            text = (f"d = {st.get('reference_d_nm', float('nan')):.4f} nm at {st.get('angle_deg', float('nan')):.1f}°"
                    + (f", last expansion {exp[-1]:+.2f} %" if exp else ""))
            self._add(f"set {j}", text, st.get("reference_d_nm"))
        cf = [v for v in (fr.get("crystalline_fraction") or []) if v is not None]
        if cf:
            self._add("crystalline fraction (last frame)", f"{cf[-1]:.3f}", cf[-1])
        for p in data.get("problems") or []:
            self._add("problem", str(p))

    def show_particles(self, data: dict) -> None:
        """Fill the table from a particles ``results.json`` mapping: counts, then one row per particle."""
        self.clear()
        self.title.setText(f"particles: {(data.get('provenance') or {}).get('file', '')}")
        self._section("summary")
        for label, text, value in particle_rows(data):
            self._add(label, text, value, bold=label == "particles")
        particles = data.get("particles") or []
        if particles:
            self._section("particles (id)")
        for p in particles:
            self._add(f"particle {p.get('id')}", particle_text(p), p.get("initial_equivalent_diameter_nm"))
        problems = data.get("problems") or []
        if problems:
            self._section("problems")
            for text in problems:
                self._add("problem", str(text))

    def value(self, label: str):
        """The number behind row ``label`` (e.g. ``'D'``), or None."""
        return self._values.get(label)

    def text(self, label: str) -> str | None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() == label:
                return self.table.item(r, 1).text()
        return None

    def labels(self) -> list[str]:
        return [self.table.item(r, 0).text() for r in range(self.table.rowCount())]

    def keyPressEvent(self, event):
        if event.matches(QKeySequence.StandardKey.Copy):
            rows = sorted({i.row() for i in self.table.selectedItems()})
            lines = [f"{self.table.item(r, 0).text()}\t{self.table.item(r, 1).text()}" for r in rows]
            QApplication.clipboard().setText("\n".join(lines))
            return
        super().keyPressEvent(event)


def _number(block: dict, dotted: str):
    """The scalar at ``a.b.c`` in a nested dict, if it is a number."""
    node = block
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool):
        return None
    if isinstance(node, (int, float)):
        return float(node)
    return None

