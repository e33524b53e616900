# %% [markdown]
# # temtrack inside HyperSpy
#
# A sodiation movie of a nanowire, analysed without leaving a HyperSpy session: load, mark the
# signal as an in situ movie, correct drift, look at the kymograph, track the reaction front,
# measure the diameters and fit the kinetics; then a field of swelling particles, each followed
# over time. Every method calls the same code as `temtrack analyze` / `temtrack particles`, so the
# numbers are those the command line would write to `results.json`.
#
# The movie is synthetic (known truth) so this script can check itself; with your own data start
# at step 1 with `hs.load("movie.dm4", lazy=True)`. Run it as `python hyperspy_workflow.py [OUT]`
# or cell by cell (`# %%`) in Jupyter / VS Code.

# %%
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def main(out_dir: str | Path | None = None, *, show_progressbar: bool = False) -> dict:
    import hyperspy.api as hs

    from temtrack.synthetic import save_movie_tiff
    from temtrack.synthetic.nanowire import make_nanowire_movie

    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="temtrack_hs_"))
    out.mkdir(parents=True, exist_ok=True)

    # %% 0. A synthetic movie on disk: 40 frames, 0.8 nm/px, 0.5 s/frame, a little drift.
    frames, truth = make_nanowire_movie(n_frames=40, shape=(224, 224), dose=40, angle_deg=200, seed=5,
                                        drift_px=3.0, n_jumps=0, d0_nm=32.0, d1_nm=51.0)
    path = save_movie_tiff(out / "wire.tif", frames, pixel_size=truth["pixel_size_nm"], pixel_unit="nm",
                           frame_interval_s=truth["frame_interval_s"])

    # %% 1. Load lazily and turn the signal into an in situ movie.
    s = hs.load(path, lazy=True)
    s.set_signal_type("in_situ_movie")
    print(s)                                   # <LazyInSituMovie, title: , dimensions: (40|224, 224)>
    # `temtrack.hyperspy.load(path)` does the same through temtrack's own readers (full calibration).

    # %% 2. Drift: shifts per frame (px) against time (s); then a lazily aligned movie.
    drift = s.estimate_drift(show_progressbar=show_progressbar)
    aligned = s.align(drift)                   # still lazy; aligned.plot() to look at it
    print(f"drift range: dy {np.ptp(drift.data[0]):.1f} px, dx {np.ptp(drift.data[1]):.1f} px; "
          f"aligned frames {aligned.axes_manager.signal_shape}")

    # %% 3. Kymograph along the wire (contact end first): s in nm across, time in s down.
    line = truth["line_px"]                    # in practice: read it off s.plot() or a ROI
    width_px = truth["d0_nm"] / truth["pixel_size_nm"]
    kymo = s.kymograph(line, width=width_px, drift=drift, show_progressbar=show_progressbar)
    kymo.save(out / "kymograph.hspy", overwrite=True)

    # %% 4. Reaction front, diameters and kinetics in one call (`temtrack analyze`).
    res = s.track_front(line, width=width_px, probes_nm=(40.0,), drift=drift, kinetics_models=["parabolic"],
                        show_progressbar=show_progressbar)
    print(res)
    res.front.save(out / "front.hspy", overwrite=True)   # position (nm) vs time (s), with its variance
    print(f"diameters: pristine {res.pristine_nm:.1f} nm (truth {truth['d0_nm']}), "
          f"sodiated {res.sodiated_nm:.1f} nm (truth {truth['d1_nm']})")

    # %% 5. Fit and compare kinetics models (here parabolic against mixed Deal-Grove); the fitted
    # curves are signals too.
    fit = s.fit_kinetics(res, models=["parabolic", "mixed"])
    print(fit)
    curve = fit.best_curve                     # hs.plot.plot_spectra([res.front, curve]) overlays them
    D_true = truth["kinetics"]["D_nm2_per_s"]
    lo, hi = fit.ci95["D_nm2_per_s"]
    print(f"D = {fit.D_nm2_per_s:.0f} nm^2/s (95% CI {lo:.0f}-{hi:.0f}); truth {D_true:.0f} nm^2/s")

    # %% 6. Keep the numbers: res.to_json() is the results.json of `temtrack analyze`;
    # res.write("results") writes that whole folder (CSV tables and figures too).
    summary = res.to_json()["kinetics"]

    # %% 7. Many particles (`temtrack particles`): every particle segmented once, then followed
    # through drift and swelling; areas, volume expansion (A/A0)^1.5 - 1, onsets, cracking, cores.
    from temtrack.synthetic.particles import make_particles_movie

    pframes, ptruth = make_particles_movie(n_frames=16, shape=(192, 192), n_particles=4, touching_pairs=1,
                                           onset_s=(3.0, 7.0), reaction_time_s=6.0, radius_nm=(10.0, 14.0),
                                           drift_px=3.0, seed=3)
    ppath = save_movie_tiff(out / "particles.tif", pframes, pixel_size=ptruth["pixel_size_nm"], pixel_unit="nm",
                            frame_interval_s=ptruth["frame_interval_s"])
    field = hs.load(ppath, lazy=True)
    field.set_signal_type("in_situ_movie")
    parts = field.track_particles(show_progressbar=show_progressbar)
    print(parts)                               # <ParticleTracking particles=4 frames=16 ...>
    # parts.area: Signal1D (particle | time in s); parts.area.plot() steps through the particles.
    parts.area.save(out / "particle_areas.hspy", overwrite=True)
    for row in zip(*(parts.summary()[k] for k in ("id", "initial_equivalent_diameter_nm", "onset_s",
                                                 "final_volume_expansion"))):
        print("particle {}: d0 {:.1f} nm, onset {:.1f} s, final volume expansion {:+.2f}".format(*row))
    # parts.to_dataframe() (with pandas), parts.to_json() = results.json, parts.write("results").
    return {"signal": s, "drift": drift, "aligned": aligned, "kymograph": kymo, "front": res, "fit": fit,
            "curve": curve, "truth": truth, "summary": summary, "particles": parts, "particles_truth": ptruth}


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None, show_progressbar=True)
