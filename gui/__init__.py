"""temtrack_gui: the desktop application of temtrack (PySide6 + pyqtgraph).

The GUI is a front end only: it opens movies with :func:`temtrack.open_movie`, runs the pipelines
of :mod:`temtrack.pipeline` (``analyze``, ``rings``, ``fft``, ``particles``),
:mod:`temtrack.series.drift` and :func:`temtrack.export.annotated_video.export_video` in a
background thread, reads stimulus logs with :mod:`temtrack.series.stimulus`, and shows and exports
the results. It holds no analysis code, so a session in the window and ``temtrack analyze MOVIE
--recipe FILE`` (or ``temtrack particles``) give the same numbers.

Modules
-------
``app``          entry point (``temtrack-gui``, ``temtrack gui [MOVIE]``)
``main_window``  :class:`~temtrack_gui.main_window.MainWindow`, the scriptable session
``viewer``       image view: frames, levels, scale bar, line/ROI/probe drawing, overlays
``frame_cache``  LRU frame cache filled ahead of the slider by a background thread
``worker``       QThread running a pipeline call with progress and cancellation
``session``      Qt-free helpers: recipe building, overlay geometry, result tables
``dialogs``      Export video… options, the event marked for a stimulus log's clock offset
``panels/``      metadata, analysis controls (wire + stimulus log, particles, fringes / SAED tabs),
                 results numbers, linked result plots

Tested versions
---------------
PySide6-Essentials 6.11.3 (shiboken6 6.11.3), pyqtgraph 0.14.0, pytest-qt 4.5.0, numpy 2.4, Python
3.11, offscreen (``QT_QPA_PLATFORM=offscreen``) and under Xvfb (xcb). **Not PySide6 6.12.0 on
Python < 3.12**: it loses a reference to ``None`` on every call of a Python override of a Qt
virtual method (every ``paint`` of a pyqtgraph item), and the interpreter aborts with
"deallocating None" after a few hundred redraws (:func:`temtrack_gui.app.qt_version_problem`
detects it; the GUI tests skip). 6.11.3 and 6.9.3 were checked free of it.

pyqtgraph's ``ImageView`` has crashed with some PySide6 releases, so it is not used: frames go into
an ``ImageItem`` inside a ``GraphicsLayoutWidget`` with fixed levels, next to a
``HistogramLUTItem`` for the levels (its histogram is refreshed a few times a second rather than
per frame).
"""
from __future__ import annotations

__all__ = ["main"]


def main(argv=None) -> int:
    """Start the application; see :func:`temtrack_gui.app.main`."""
    from temtrack_gui.app import main as _main
    return _main(argv)
