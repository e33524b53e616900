"""Entry point of the desktop application: ``temtrack-gui [MOVIE]`` and ``temtrack gui [MOVIE]``."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="temtrack-gui", description="temtrack desktop application")
    p.add_argument("movie", nargs="?", help="movie file or folder to open")
    p.add_argument("--pixel-size", type=float, default=None, help="pixel size (nm, or 1/nm for diffraction)")
    p.add_argument("--frame-interval", type=float, default=None, help="frame interval in s")
    return p


def qt_version_problem() -> str | None:
    """Why the installed Qt binding must not be used, or None when it is fine.

    PySide6 6.12.0 on Python < 3.12 loses a reference to ``None`` on every call of a Python
    override of a Qt virtual method (``paint``, ``eventFilter`` ...): pyqtgraph paints through such
    overrides, so the interpreter aborts ("deallocating None") after a few hundred frames. Python
    3.12 made ``None`` immortal, which hides the bug. 6.11.3 and 6.9.3 were checked and are fine.
    """
    import PySide6

    version = tuple(int(v) for v in PySide6.__version__.split(".")[:3] if v.isdigit())
    if version[:2] == (6, 12) and sys.version_info < (3, 12):
        return (f"PySide6 {PySide6.__version__} on Python {sys.version_info.major}.{sys.version_info.minor} "
                "crashes pyqtgraph after a few hundred redraws (refcount bug); install "
                "'PySide6-Essentials==6.11.3'")
    return None


def make_app(argv: list[str] | None = None):
    """The QApplication (created once) with pyqtgraph configured for row-major images."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QApplication.instance()
    if app is None:
        app = QApplication(["temtrack-gui", *(argv or [])])
        app.setApplicationName("temtrack-gui")
        app.setOrganizationName("temtrack")
    return app


def main(argv: list[str] | None = None) -> int:
    """Start the window; ``argv`` is a list such as ``['movie.dm4']`` (default: ``sys.argv[1:]``)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else [str(a) for a in argv])
    try:
        import pyqtgraph  # noqa: F401
        import PySide6  # noqa: F401
    except ImportError as exc:
        print(f"temtrack-gui needs PySide6 and pyqtgraph (pip install 'temtrack[gui]'): {exc}", file=sys.stderr)
        return 2
    problem = qt_version_problem()
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    app = make_app()
    from temtrack_gui.main_window import MainWindow

    window = MainWindow()
    window.show()
    if args.movie:
        window.open_movie(args.movie, pixel_size=args.pixel_size, frame_interval_s=args.frame_interval)
    return int(app.exec())


if __name__ == "__main__":
    raise SystemExit(main())
