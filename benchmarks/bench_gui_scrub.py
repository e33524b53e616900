"""Scrubbing rate of the desktop application: frames/s shown while the slider moves.

A 1000-frame 1024x1024 uint16 movie is written as a memory-mapped ``.npy`` (2 GB, calibration in
the JSON sidecar), opened in the real :class:`temtrack_gui.main_window.MainWindow`, and the frame
slider is moved one frame at a time; after each move the event loop runs once, which paints the
updated image, so the time per frame includes reading (or the read-ahead cache),
converting to the display lookup table, and painting (an event filter checks that every frame
was painted). Three patterns: forward, backward, and
random seeks (cache misses on every frame: the worst case). Target: >= 60 frames/s forward.

Runs offscreen unless a display is set (``xvfb-run python benchmarks/bench_gui_scrub.py`` for the
X11 path). The page cache is warm (the file was just written): the number measures the GUI, not
the disk.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]




def write_movie(path: Path, n_frames: int, shape: tuple[int, int], seed: int = 0) -> Path:
    """A memmap .npy of drifting noisy texture (each frame different, like a real recording)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(2000, 300, size=(shape[0] * 2, shape[1] * 2)).astype(np.float32)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(n_frames, *shape))
    noise = rng.integers(0, 200, size=(8, *shape), dtype=np.uint16)
    for i in range(n_frames):
        dy, dx = (i * 3) % shape[0], (i * 5) % shape[1]
        frame = base[dy:dy + shape[0], dx:dx + shape[1]]
        mm[i] = np.clip(frame, 0, 65535).astype(np.uint16) + noise[i % 8]
    mm.flush()
    del mm
    path.with_suffix(".json").write_text(json.dumps({"pixel_size": 0.5, "pixel_unit": "nm",
                                                     "frame_interval_s": 0.04}))
    return path


def _paint_counter(viewport):
    """An event filter counting the paint events of the image view (each frame must be painted)."""
    from PySide6.QtCore import QEvent, QObject

    class Counter(QObject):
        paints = 0

        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Paint:
                Counter.paints += 1
            return False

    counter = Counter()
    viewport.installEventFilter(counter)
    return counter


def _scrub(app, window, order, counter) -> tuple[float, float]:
    """Move the slider through ``order`` as a user would (the event loop paints the update)."""
    before = counter.paints
    t0 = time.perf_counter()
    for i in order:
        window.set_frame(int(i))
        app.processEvents()
    fps = len(order) / (time.perf_counter() - t0)
    return fps, (counter.paints - before) / len(order)


def run(n_frames: int = 1000, shape: tuple[int, int] = (1024, 1024), workdir: str | None = None) -> dict:
    """Measure scrubbing frames/s; returns a dict of the numbers and the conditions."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    import PySide6
    from PySide6.QtCore import QSettings
    from temtrack_gui.app import make_app
    from temtrack_gui.main_window import MainWindow

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        path = write_movie(tmp / "scrub.npy", n_frames, shape)
        write_s = time.perf_counter() - t0
        app = make_app()
        window = MainWindow(settings=QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
        window.resize(1500, 950)
        window.show()
        app.processEvents()
        if not window.open_movie(path):
            raise RuntimeError("could not open the benchmark movie")
        app.processEvents()
        rng = np.random.default_rng(1)
        n = window.viewer.n_frames
        counter = _paint_counter(window.viewer.graphics.viewport())
        _scrub(app, window, range(min(20, n)), counter)  # warm-up: first paint, lookup tables
        cache = window.viewer.cache
        cache.hits = cache.misses = 0
        forward, paints = _scrub(app, window, range(n), counter)
        fwd_hits, fwd_misses = cache.hits, cache.misses
        backward, _ = _scrub(app, window, range(n - 1, -1, -1), counter)
        random_fps, _ = _scrub(app, window, rng.integers(0, n, size=min(200, n)), counter)
        view_px = window.viewer.graphics.viewport().size()
        result = {
            "benchmark": "gui_scrub",
            "movie": f"{n_frames} frames {shape[1]}x{shape[0]} uint16, memmap .npy (warm page cache)",
            "forward_fps": round(forward, 1),
            "backward_fps": round(backward, 1),
            "random_seek_fps": round(random_fps, 1),
            "forward_cache_hit_ratio": round(fwd_hits / max(1, fwd_hits + fwd_misses), 3),
            "paints_per_frame": round(paints, 2),
            "target_fps": 60,
            "meets_target": bool(forward >= 60),
            "view_size_px": [view_px.width(), view_px.height()],
            "qt_platform": app.platformName(),
            "pyside6": PySide6.__version__,
            "pyqtgraph": pg.__version__,
            "cpu_count": os.cpu_count(),
            "write_movie_s": round(write_s, 1),
        }
        window.close()
        window.deleteLater()
        app.processEvents()
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
