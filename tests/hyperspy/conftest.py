"""Synthetic movies for the HyperSpy plugin tests, rendered once per session; skips without HyperSpy."""
from __future__ import annotations

import pytest

pytest.importorskip("hyperspy.api")

from temtrack.io.movie import movie_from_array

# 60 frames of 256 px with a few px of smooth drift: the front covers ~70% of the wire.
WIRE = {"n_frames": 60, "shape": (256, 256), "dose": 40.0, "drift_px": 4.0, "n_jumps": 0, "seed": 5}


@pytest.fixture(scope="session")
def wire():
    """(Movie, truth, frames) of a sodiating nanowire; frames are uint16 in memory."""
    from temtrack.synthetic.nanowire import make_nanowire_movie

    frames, truth = make_nanowire_movie(**WIRE)
    movie = movie_from_array(frames, pixel_size=truth["pixel_size_nm"], frame_interval_s=truth["frame_interval_s"],
                             path="<synthetic wire>")
    return movie, truth, frames


@pytest.fixture(scope="session")
def wire_width_px(wire):
    _, truth, _ = wire
    return truth["d0_nm"] / truth["pixel_size_nm"]
