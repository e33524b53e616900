"""The synthetic particle movie renders what its truth says."""
from __future__ import annotations

import numpy as np

from temtrack.synthetic.particles import make_particles_movie


def test_noise_free_render_matches_truth():
    kw = dict(n_frames=12, shape=(200, 200), n_particles=4, touching_pairs=1, n_cracking=1, dose=30000.0,
              flicker=0.0, psf_px=0.0, film_contrast=0.0, drift_px=0.0, n_jumps=0, onset_s=(2.0, 4.0),
              reaction_time_s=6.0, seed=2)
    frames, truth = make_particles_movie(**kw)
    px = truth["pixel_size_nm"]
    bg = float(np.median(frames[0]))
    yy, xx = np.mgrid[0:200, 0:200]
    for p in truth["particles"]:
        cy, cx = p["centre_yx_px"]
        assert p["centre_px"] == [cx, cy]
        for i in (0, 11):
            r = np.sqrt(p["area_nm2"][i] / np.pi) / px
            # Pixels clearly darker than the background inside the truth disk, none outside it
            # (apart from the touching partner).
            rho = np.hypot(yy - cy, xx - cx)
            dark = frames[i] < 0.97 * bg
            inner = rho < r - 1.5
            ring = (rho > r + 1.5) & (rho < r + 4)
            others = [q for q in truth["particles"] if q is not p]
            for q in others:
                rq = np.sqrt(q["area_nm2"][i] / np.pi) / px
                ring &= np.hypot(yy - q["centre_yx_px"][0], xx - q["centre_yx_px"][1]) > rq + 2
            if p["crack_frame"] is None or i < p["crack_frame"]:
                assert dark[inner].mean() > 0.99
            assert dark[ring].mean() < 0.01
            # Area: pixels with any attenuation match pi R^2 within the pixelation.
            near = rho < r + 3
            n_att = np.sum((frames[i] < 0.98 * bg) & near)  # 3 sigma of the shot noise
            if p["crack_frame"] is None:
                assert abs(n_att * px ** 2 / p["area_nm2"][i] - 1) < 0.04
        # Volume ratio and shrinking core as stated.
        a = np.asarray(p["area_nm2"])
        assert abs((a[-1] / a[0]) ** 1.5 - truth["volume_ratio"]) < 1e-6
        core = np.asarray(p["core_radius_nm"])
        assert core[0] == p["radius0_nm"] and core[-1] == 0.0
    cracked = [p for p in truth["particles"] if p["crack_frame"] is not None]
    assert len(cracked) == 1 and not cracked[0]["touching"]
