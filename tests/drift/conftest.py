"""Session-scoped synthetic nanowire movies for the drift tests (each takes ~9 s to render)."""
from __future__ import annotations

import numpy as np
import pytest

from temtrack.io.movie import movie_from_array
from temtrack.synthetic.nanowire import make_nanowire_movie


def _truth_shifts(truth) -> np.ndarray:
    return np.stack([truth["drift_dy_px"], truth["drift_dx_px"]], axis=1)


@pytest.fixture(scope="session")
def wire_dose40():
    """300 frames, 384x384, 0.8 nm/px, dose 40, random angle, ~25 px drift with 2 jumps."""
    frames, truth = make_nanowire_movie(n_frames=300, shape=(384, 384), pixel_size_nm=0.8, dose=40.0,
                                        drift_px=25.0, n_jumps=2, seed=11)
    return movie_from_array(frames, pixel_size=0.8, frame_interval_s=0.5), _truth_shifts(truth), truth


@pytest.fixture(scope="session")
def wire_dose8():
    """Dose 8 e-/px/frame, mixed kinetics, 60 px drift with 2 jumps."""
    frames, truth = make_nanowire_movie(n_frames=300, shape=(384, 384), pixel_size_nm=0.8, dose=8.0,
                                        drift_px=60.0, n_jumps=2, D_nm2_per_s=800.0, k_nm_per_s=15.0,
                                        seed=12)
    return movie_from_array(frames, pixel_size=0.8, frame_interval_s=0.5), _truth_shifts(truth), truth
