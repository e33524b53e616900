"""Regenerate the bundled sample movies (deterministic: fixed seeds).

    python sample_movies/make_samples.py

Each movie is written beside this script with its ``<name>.truth.json``. They are kept small (a few MB
in total): 8-bit counts (the doses used never exceed 255 counts per pixel) and deflate-compressed TIFF.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from temtrack.synthetic import save_movie_tiff, save_truth
from temtrack.synthetic.nanowire import make_nanowire_movie

HERE = Path(__file__).resolve().parent


def _save(name, frames, truth, *, pixel_size, pixel_unit, frame_interval_s):
    if frames.max() > 255:
        raise SystemExit(f"{name}: counts exceed 8 bits ({frames.max()}); lower the dose")
    path = save_movie_tiff(HERE / name, frames.astype(np.uint8), pixel_size=pixel_size, pixel_unit=pixel_unit,
                           frame_interval_s=frame_interval_s, compression="zlib")
    save_truth(path, truth)
    print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB")


def nanowire():
    frames, truth = make_nanowire_movie(n_frames=120, shape=(256, 256), pixel_size_nm=0.8, frame_interval_s=0.5,
                                        angle_deg=35.0, dose=30.0, drift_px=12.0, n_jumps=1, seed=7,
                                        probes_nm=(40.0, 80.0))
    _save("nanowire_sodiation.tif", frames, truth, pixel_size=truth["pixel_size_nm"], pixel_unit="nm",
          frame_interval_s=truth["frame_interval_s"])


def saed():
    from temtrack.synthetic.saed import make_saed_movie
    frames, truth = make_saed_movie(n_frames=40, shape=(256, 256), dose=60, seed=3)
    _save("saed_sn_sodiation.tif", np.clip(frames, 0, 255), truth, pixel_size=truth["pixel_size_inv_nm"],
          pixel_unit="1/nm", frame_interval_s=truth["frame_interval_s"])


def hrtem():
    from temtrack.synthetic.hrtem import make_hrtem_movie
    frames, truth = make_hrtem_movie(n_frames=30, shape=(192, 192), seed=2)
    _save("hrtem_sn_fringes.tif", np.clip(frames, 0, 255), truth, pixel_size=truth["pixel_size_nm"],
          pixel_unit="nm", frame_interval_s=truth["frame_interval_s"])


if __name__ == "__main__":
    nanowire()
    saed()
    hrtem()
