"""GUI tests run offscreen; they skip cleanly without PySide6/pyqtgraph/pytest-qt."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# Must be set before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

REPO = Path(__file__).resolve().parents[2]

if importlib.util.find_spec("PySide6") is None or importlib.util.find_spec("pyqtgraph") is None:
    pytest.skip("PySide6 and pyqtgraph are needed for the GUI tests", allow_module_level=True)
if importlib.util.find_spec("pytestqt") is None:
    pytest.skip("pytest-qt is needed for the GUI tests", allow_module_level=True)





from temtrack_gui.app import qt_version_problem

if qt_version_problem():
    pytest.skip(qt_version_problem(), allow_module_level=True)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/gui" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.gui)


@pytest.fixture(scope="session")
def qapp_args():
    return ["temtrack-gui-tests"]


@pytest.fixture
def settings(tmp_path):
    """A throw-away QSettings file, so tests never touch the user's recent files."""
    from PySide6.QtCore import QSettings
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings):
    from temtrack_gui.app import make_app
    from temtrack_gui.main_window import MainWindow

    make_app()
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.cancel()
    w.wait_for_task(10)
    w.viewer.close_movie()


@pytest.fixture(scope="session")
def nanowire_movie(tmp_path_factory):
    """(path, truth) of a small synthetic sodiation movie written as a calibrated ImageJ TIFF."""
    from temtrack.synthetic import save_movie_tiff, save_truth
    from temtrack.synthetic.nanowire import make_nanowire_movie

    frames, truth = make_nanowire_movie(n_frames=60, shape=(256, 256), pixel_size_nm=0.8,
                                        frame_interval_s=0.5, angle_deg=20.0, drift_px=6.0,
                                        n_jumps=1, jump_px=(3.0, 5.0), dose=40.0, t0_s=2.0,
                                        seed=3)
    path = tmp_path_factory.mktemp("movie") / "wire.tif"
    save_movie_tiff(path, frames, pixel_size=0.8, pixel_unit="nm", frame_interval_s=0.5)
    save_truth(path, truth)
    return path, truth


def _write_stimulus_log(path, *, step_log_s: float = 12.0, duration_s: float = 40.0):
    """A potentiostat-style CSV: current switched on (-0.5 mA) at log time ``step_log_s``, a
    voltage ramp, one sample every 0.1 s."""
    import numpy as np

    t = np.arange(0.0, duration_s, 0.1)
    current_mA = np.where(t >= step_log_s, -0.5, 0.0) + 0.002 * np.random.default_rng(0).normal(size=t.size)
    voltage_V = 1.0 - 0.01 * t
    rows = "\n".join(f"{a:.3f},{b:.5f},{c:.6f}" for a, b, c in zip(t, voltage_V, current_mA))
    path = Path(path)
    path.write_text("# exported by a potentiostat\ntime/s,Ewe/V,<I>/mA\n" + rows + "\n")
    return path


@pytest.fixture
def write_stimulus_log():
    """``write_stimulus_log(path, step_log_s=12.0)`` writes a small potentiostat CSV log."""
    return _write_stimulus_log
