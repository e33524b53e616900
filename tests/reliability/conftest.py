"""Small synthetic movies (nanowire, SAED, HRTEM) for the reliability tests."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def rel_movies(tmp_path_factory):
    """Small analysable movies: ``{'nanowire': tif, 'saed': tif, 'hrtem': tif, 'line': [x0,y0,x1,y1]}``
    (the nanowire's axis from its ground truth, contact end first)."""
    from temtrack.synthetic import save_movie_tiff, save_truth
    from temtrack.synthetic.hrtem import make_hrtem_movie
    from temtrack.synthetic.nanowire import make_nanowire_movie
    from temtrack.synthetic.saed import make_saed_movie

    root = tmp_path_factory.mktemp("rel-movies")
    out = {}
    frames, truth = make_nanowire_movie(n_frames=16, shape=(192, 192), drift_px=3.0, n_jumps=0, seed=1)
    out["nanowire"] = save_movie_tiff(root / "nanowire.tif", frames, pixel_size=truth["pixel_size_nm"],
                                      frame_interval_s=truth["frame_interval_s"])
    save_truth(out["nanowire"], truth)
    out["line"] = [round(float(v), 1) for v in truth["line_px"]]
    frames, truth = make_saed_movie(n_frames=10, shape=(192, 192), seed=1)
    out["saed"] = save_movie_tiff(root / "saed.tif", frames, pixel_size=truth["pixel_size_inv_nm"],
                                  pixel_unit="1/nm", frame_interval_s=truth["frame_interval_s"])
    frames, truth = make_hrtem_movie(n_frames=8, shape=(128, 128), seed=1)
    out["hrtem"] = save_movie_tiff(root / "hrtem.tif", np.asarray(frames, np.float32),
                                   pixel_size=truth["pixel_size_nm"], frame_interval_s=truth["frame_interval_s"])
    return out
