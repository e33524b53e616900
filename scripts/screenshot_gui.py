"""Regenerate ``docs/gui_screenshot.png``: the desktop application with a sample movie analysed.

    xvfb-run -a -s "-screen 0 1920x1200x24" python scripts/screenshot_gui.py

Without a display the script re-runs itself under ``xvfb-run`` when that is installed (else it
falls back to Qt's offscreen platform, which renders the same widgets without a window manager).
It opens ``sample_movies/nanowire_sodiation.tif`` (or renders the same synthetic movie into a
temporary folder when the sample is absent), draws the wire line from the movie's ground truth,
loads a potentiostat log written for the screenshot (a constant current switched on when the
reaction starts, on a clock 3 s ahead of the movie's; the offset is found from that event), runs
the analysis in the window's worker thread, switches to the drift-corrected view, moves to a frame
70% through the movie and grabs the window.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_movies" / "nanowire_sodiation.tif"




def sample_movie(folder: Path) -> tuple[Path, dict]:
    """The bundled nanowire sample and its truth, or the same movie rendered into ``folder``."""
    from temtrack.synthetic import save_movie_tiff, save_truth, truth_path_for

    if SAMPLE.is_file() and truth_path_for(SAMPLE).is_file():
        return SAMPLE, json.loads(truth_path_for(SAMPLE).read_text())
    from temtrack.synthetic.nanowire import make_nanowire_movie

    frames, truth = make_nanowire_movie(n_frames=120, shape=(256, 256), pixel_size_nm=0.8, frame_interval_s=0.5,
                                        angle_deg=35.0, dose=30.0, drift_px=12.0, n_jumps=1, seed=7,
                                        probes_nm=(40.0, 80.0))
    path = save_movie_tiff(folder / "nanowire_sodiation.tif", frames, pixel_size=truth["pixel_size_nm"],
                           pixel_unit="nm", frame_interval_s=truth["frame_interval_s"])
    save_truth(path, truth)
    return path, json.loads(json.dumps(truth, default=float))


def demo_log(folder: Path, truth: dict, offset_s: float = 3.0) -> Path:
    """A potentiostat CSV for the screenshot: -20 nA from the front's onset (truth t0) on, the
    potential relaxing towards 0.1 V after it, sampled at 10 Hz on a clock ``offset_s`` ahead."""
    import numpy as np

    t0 = float((truth.get("kinetics") or {}).get("t0_s") or truth.get("t0_s") or 5.0)
    duration = float(truth.get("n_frames", 120)) * float(truth.get("frame_interval_s", 0.5))
    t_log = np.arange(0.0, duration + offset_s + 5.0, 0.1)
    t_movie = t_log - offset_s
    on = t_movie >= t0
    rng = np.random.default_rng(1)
    current_nA = np.where(on, -20.0, 0.0) + 0.3 * rng.normal(size=t_log.size)
    voltage = np.where(on, 0.1 + 0.5 * np.exp(-np.clip(t_movie - t0, 0, None) / 15.0), 0.6)
    voltage = voltage + 0.002 * rng.normal(size=t_log.size)
    path = folder / "potentiostat.csv"
    path.write_text("time/s,Ewe/V,<I>/nA\n" + "\n".join(f"{a:.2f},{b:.4f},{c:.3f}" for a, b, c in
                                                        zip(t_log, voltage, current_nA)) + "\n")
    return path, t0


def take_screenshot(out: Path, *, size=(1600, 1100)) -> Path:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QSettings
    from temtrack_gui.app import make_app
    from temtrack_gui.main_window import MainWindow

    from temtrack.io.results import write_bytes_atomic

    app = make_app()
    with tempfile.TemporaryDirectory() as tmp:
        movie, truth = sample_movie(Path(tmp))
        window = MainWindow(settings=QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat))
        window.resize(*size)
        window.show()
        app.processEvents()
        if not window.open_movie(movie):
            raise SystemExit(f"cannot open {movie}")
        window.set_line(*truth["line_px"], truth["d0_nm"] / truth["pixel_size_nm"])
        window.set_probes([40.0, 80.0])
        log, t0 = demo_log(Path(tmp), truth)
        if window.load_stimulus_log(log):
            from temtrack_gui.panels.analysis import stimulus_event_estimator
            if stimulus_event_estimator() is not None:
                window.estimate_stimulus_offset(t0)  # the current switched on when the front started
            else:
                window.set_stimulus_offset(3.0)
        window.controls.drift_box.setChecked(importlib.util.find_spec("temtrack.series.drift") is not None)
        result = window.run_analysis(wait=True, timeout_s=600)
        if result is None:
            raise SystemExit(f"analysis failed: {window.task.error if window.task else 'not started'}")
        if window.drift is not None:
            window.set_aligned(True)  # the drawn line and the overlays share frame-0 coordinates
        window.set_frame(int(0.7 * window.raw_movie.n_frames))
        for _ in range(5):
            app.processEvents()
        image = window.grab().toImage()
        data = QByteArray()
        buf = QBuffer(data)
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buf, "PNG")
        buf.close()
        path = write_bytes_atomic(out, bytes(data.data()))
        kin = window.result_json.get("kinetics") or {}
        print(f"{path}: {image.width()}x{image.height()} px on '{app.platformName()}'; "
              f"D = {kin.get('D_nm2_per_s')} nm^2/s ({kin.get('model')})")
        window.close()
        window.deleteLater()
        app.processEvents()
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "gui_screenshot.png")
    p.add_argument("--offscreen", action="store_true", help="use Qt's offscreen platform, not X11")
    args = p.parse_args(argv)
    if args.offscreen:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    elif not os.environ.get("DISPLAY") and not os.environ.get("QT_QPA_PLATFORM"):
        xvfb = shutil.which("xvfb-run")
        if xvfb and not os.environ.get("TEMTRACK_SCREENSHOT_CHILD"):
            env = dict(os.environ, TEMTRACK_SCREENSHOT_CHILD="1")
            cmd = [xvfb, "-a", "-s", "-screen 0 1920x1200x24", sys.executable, str(Path(__file__).resolve()),
                   "--out", str(args.out)]
            return subprocess.run(cmd, env=env, check=False).returncode
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    take_screenshot(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
