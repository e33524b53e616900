"""The ``fft`` pipeline: lattice fringes of an HRTEM ROI tracked over a movie.

Steps: the mean power spectrum of the first frames gives the fringe sets (spots); every frame's
windowed ROI is then Fourier transformed (batched ``scipy.fft`` in picklable chunk functions run by
an executor), each set's lattice vector refined to a small fraction of an FFT bin and its Bragg
power integrated; :mod:`temtrack.series.fringes` turns these into spacing, lattice expansion and a
crystalline fraction over time. See :mod:`temtrack.frame.spectrum` for the method and conventions.
"""
from __future__ import annotations

import dataclasses
import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import fft as sfft

from temtrack.errors import AnalysisError, ParameterError
from temtrack.frame.spectrum import (WINDOWS, central_square_roi, check_roi, find_spots,
                                     measure_fringes, power_spectrum, spot_power, window_2d,
                                     windowed_roi)
from temtrack.io.movie import Movie, finite_frames
from temtrack.pipeline.executor import chunk_frames_for, map_frames
from temtrack.pipeline.recipe import Recipe
from temtrack.series.fringes import FringeSeries, track_fringes

CRYSTALLINE_FRACTION_DEFINITION = (
    "background-subtracted Bragg power (unwindowed ROI, discs of spot_radius_bins) of all tracked "
    "fringe sets relative to the reference frames; proportional to the crystalline area of the ROI "
    "for a constant fringe contrast")


@dataclasses.dataclass
class FFTRecipe(Recipe):
    """Parameters of ``temtrack fft``.

    Attributes
    ----------
    roi : [x, y, w, h] or None
        ROI in pixels; None = the largest centred square.
    window : {'hann', 'tukey', 'none'}
        Apodisation; Hann gives the sub-pm accuracy, Tukey keeps more area but leaks more.
    tukey_alpha : float
    normalize : bool
        Divide each frame's ROI by its mean (spot powers in units of fringe contrast).
    n_sets : int
        Maximum number of fringe sets tracked (strongest spots of the reference spectrum).
    d_min_nm, d_max_nm : float
        Range of spacings searched.
    min_snr : float
        Detection threshold for a set in the reference spectrum (peak over the median power at
        the same |g|; 25 keeps random speckle maxima out).
    track_min_snr : float
        Per-frame detection threshold; below it d and the expansion are NaN.
    reference_frames : int
        First frames defining the fringe sets, d_ref and the crystalline reference.
    search_radius_bins : float
        How far (FFT bins) a spot may move from its reference position.
    spot_radius_bins : float
        Disc integrated for the spot power.
    matched : bool
        Second refinement pass weighted by each set's amplitude map.
    envelope_sigma_bins : float
        Band-pass of those amplitude maps.
    chunk_frames : int or None
        Frames per chunk (default from the frame size and memory budget, independent of the
        executor so that every executor gives identical numbers).
    memory_budget_mb : float or None
        Memory for frames in flight (default 1 GiB), as ``temtrack --memory-budget-mb``.
    """

    kind = "fft"

    roi: list | None = None
    window: str = "hann"
    tukey_alpha: float = 0.25
    normalize: bool = True
    n_sets: int = 4
    d_min_nm: float = 0.1
    d_max_nm: float = 1.0
    min_snr: float = 25.0
    track_min_snr: float = 10.0
    reference_frames: int = 3
    search_radius_bins: float = 3.0
    spot_radius_bins: float = 3.0
    matched: bool = True
    envelope_sigma_bins: float = 2.0
    chunk_frames: int | None = None
    memory_budget_mb: float | None = None

    def validate(self) -> None:
        if self.roi is not None:
            ok = isinstance(self.roi, (list, tuple)) and len(self.roi) == 4
            try:
                ok = ok and all(float(v) == int(v) for v in self.roi)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ParameterError(f"roi must be [x, y, w, h] in whole pixels or null, got {self.roi!r}")
            self.roi = [int(v) for v in self.roi]
        if self.window not in WINDOWS:
            raise ParameterError(f"window must be one of {WINDOWS}, got {self.window!r}")
        if not (0.0 <= self.tukey_alpha <= 1.0):
            raise ParameterError(f"tukey_alpha must be within [0, 1], got {self.tukey_alpha}")
        if int(self.n_sets) < 1:
            raise ParameterError(f"n_sets must be >= 1, got {self.n_sets}")
        if not (0 < self.d_min_nm < self.d_max_nm):
            raise ParameterError(f"need 0 < d_min_nm < d_max_nm, got {self.d_min_nm}, {self.d_max_nm}")
        for name in ("min_snr", "track_min_snr", "search_radius_bins", "spot_radius_bins",
                     "envelope_sigma_bins"):
            if not getattr(self, name) > 0:
                raise ParameterError(f"{name} must be positive, got {getattr(self, name)}")
        if int(self.reference_frames) < 1:
            raise ParameterError(f"reference_frames must be >= 1, got {self.reference_frames}")
        if self.chunk_frames is not None and int(self.chunk_frames) < 1:
            raise ParameterError(f"chunk_frames must be >= 1 or null, got {self.chunk_frames}")
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            raise ParameterError(f"memory_budget_mb must be positive or null, got {self.memory_budget_mb}")


@dataclass
class FFTResult:
    """Everything ``temtrack fft`` reports; :meth:`to_json` is ``results.json``."""

    path: Path
    format: str
    recipe: FFTRecipe
    roi: tuple[int, int, int, int]
    pixel_size_nm: float
    time_source: str
    series: FringeSeries
    mean_power: np.ndarray          # fftshift-ed mean power spectrum of the ROI over the movie
    reference_spots: dict
    problems: list = field(default_factory=list)

    @property
    def time_s(self) -> np.ndarray:
        return self.series.time_s

    def to_json(self) -> dict:
        import temtrack

        s = self.series
        sets = []
        for j in range(s.n_sets):
            sets.append({
                "d_nm": s.d_nm[:, j],
                "angle_deg": float(s.reference_angle_deg[j]),
                "angle_deg_per_frame": s.angle_deg[:, j],
                "reference_d_nm": float(s.reference_d_nm[j]),
                "expansion_pct": s.expansion_pct[:, j],
                "intensity": s.intensity[:, j],
                "amplitude": s.amplitude[:, j],
                "snr": s.snr[:, j],
                "detected": s.detected[:, j].tolist(),
                "reference_frames": s.reference_frames[j],
            })
        return {
            "kind": "fft",
            "temtrack_version": temtrack.__version__,
            "provenance": {"temtrack_version": temtrack.__version__, "file": str(self.path),
                           "format": self.format, "recipe": self.recipe.to_dict()},
            "roi": list(self.roi),
            "pixel_size_nm": self.pixel_size_nm,
            "n_frames": int(s.time_s.size),
            "time_source": self.time_source,
            "fringes": {
                "time_s": s.time_s,
                "sets": sets,
                "crystalline_fraction": s.crystalline_fraction,
                "crystalline_fraction_definition": CRYSTALLINE_FRACTION_DEFINITION,
                "expansion_pct_mean": s.expansion_pct_mean,
            },
            "problems": list(self.problems),
        }


def _fft_chunk(block: np.ndarray, start: int, *, roi, window: str, alpha: float, normalize: bool,
               g_ref: np.ndarray, search_radius_bins: float, spot_radius_bins: float,
               matched: bool, sigma_bins: float, batch: int = 8) -> dict:
    """Per-frame work: windowed FFT, refined lattice vectors, spot power, power-spectrum sum."""
    x, y, w, h = roi
    block, n_nonfinite = finite_frames(block)
    win = window_2d((h, w), kind=window, alpha=alpha)
    ones = np.ones_like(win)
    wsum, norm = float(win.sum()), float(win.size * np.sum(win * win))
    n, s = block.shape[0], g_ref.shape[0]
    g_out = np.empty((n, s, 2))
    amp = np.empty((n, s))
    snr = np.empty((n, s))
    inten = np.empty((n, s))
    psum = np.zeros((h, w))
    # Sub-batches bound the memory of the spectra and amplitude maps whatever the chunk size.
    buf = np.empty((min(batch, n), h, w))
    for a in range(0, n, batch):
        b = min(a + batch, n)
        wr = windowed_roi(block[a:b], roi=roi, window=win, normalize=normalize, out=buf[:b - a])
        f = sfft.fft2(wr, workers=1)
        p = (f.real ** 2 + f.imag ** 2) / norm
        psum += p.sum(axis=0)
        m = measure_fringes(wr, g_ref, window_sum=wsum, search_radius_bins=search_radius_bins,
                            matched=matched, sigma_bins=sigma_bins, spectrum=f)
        sp = spot_power(p, m["g_px"], radius_bins=spot_radius_bins)
        # Bragg power of the unwindowed ROI weighs every pixel alike: proportional to the
        # crystalline area, where the windowed power would favour the ROI centre.
        raw = windowed_roi(block[a:b], roi=roi, window=ones, normalize=normalize)
        fr = sfft.fft2(raw, workers=1)
        pr = (fr.real ** 2 + fr.imag ** 2) / float(raw[0].size) ** 2
        inten[a:b] = spot_power(pr, m["g_px"], radius_bins=spot_radius_bins,
                                exclude_axes_bins=2.0)["intensity"]
        g_out[a:b] = m["g_px"]
        amp[a:b] = m["amplitude"]
        with np.errstate(divide="ignore", invalid="ignore"):
            snr[a:b] = (m["peak_power"] / norm) / sp["background"]
    return {"g_px": g_out, "amplitude": amp, "snr": snr, "intensity": inten,
            "power_sum": psum[None], "n_nonfinite": n_nonfinite}


def run_fft(movie: Movie, recipe: FFTRecipe | None = None, *, executor=None,
            progress: Callable[[int, int], None] | None = None,
            cancel: threading.Event | None = None) -> FFTResult:
    """Track the lattice fringes of an ROI through an HRTEM movie.

    Parameters
    ----------
    movie : Movie
        A real-space movie calibrated in nm.
    recipe : FFTRecipe, optional
    executor : LocalExecutor or DaskExecutor, optional
    progress : callable, optional
        ``progress(frames_done, frames_total)``.
    cancel : threading.Event, optional

    Returns
    -------
    FFTResult

    Raises
    ------
    ParameterError
        Uncalibrated or diffraction movie, ROI outside the frame, bad recipe.
    AnalysisError
        No lattice spot in the reference frames.
    """
    recipe = FFTRecipe() if recipe is None else recipe
    recipe.validate()
    if movie.pixel_unit != "nm" or not movie.pixel_size:
        what = "a diffraction movie (1/nm)" if movie.pixel_unit == "1/nm" else "an uncalibrated movie"
        raise ParameterError(f"{movie.path}: fringe analysis needs an image movie calibrated in nm, "
                             f"got {what} (give --pixel-size in nm)")
    px = float(movie.pixel_size)
    roi = central_square_roi(movie.frame_shape) if recipe.roi is None else check_roi(recipe.roi, movie.frame_shape)
    n_ref = min(int(recipe.reference_frames), movie.n_frames)
    ref_power = power_spectrum(finite_frames(movie.read(0, n_ref))[0], roi=roi, window=recipe.window,
                               alpha=recipe.tukey_alpha, normalize=recipe.normalize).mean(axis=0)
    spots = find_spots(ref_power, pixel_size_nm=px, d_min_nm=recipe.d_min_nm,
                       d_max_nm=recipe.d_max_nm, max_spots=int(recipe.n_sets),
                       min_snr=recipe.min_snr)
    if spots["g_px"].shape[0] == 0:
        raise AnalysisError(f"{movie.path}: no lattice fringes with d between {recipe.d_min_nm} and "
                            f"{recipe.d_max_nm} nm in ROI {list(roi)} of the first {n_ref} frames "
                            f"(spots must exceed {recipe.min_snr}x the background)")
    func = functools.partial(
        _fft_chunk, roi=tuple(int(v) for v in roi), window=recipe.window, alpha=recipe.tukey_alpha,
        normalize=recipe.normalize, g_ref=np.asarray(spots["g_px"], dtype=np.float64),
        search_radius_bins=recipe.search_radius_bins, spot_radius_bins=recipe.spot_radius_bins,
        matched=recipe.matched, sigma_bins=recipe.envelope_sigma_bins)
    budget = None if recipe.memory_budget_mb is None else int(recipe.memory_budget_mb * 2 ** 20)
    chunk = (int(recipe.chunk_frames) if recipe.chunk_frames
             else chunk_frames_for(movie, budget, in_flight=4, max_frames=16))
    out = map_frames(movie, func, executor=executor, chunk_frames=chunk, progress=progress, cancel=cancel)
    problems = []
    if movie.times_s is None:
        time_s = np.arange(movie.n_frames, dtype=np.float64)
        problems.append("no frame timing: time_s holds frame indices")
    else:
        time_s = np.asarray(movie.times_s, dtype=np.float64)
    bad_frames = np.nonzero(out["n_nonfinite"])[0]
    if bad_frames.size:
        problems.append(f"{int(out['n_nonfinite'].sum())} NaN/Inf pixels in {bad_frames.size} frame(s) (first: "
                        f"{int(bad_frames[0])}) replaced by their frame's median")
    series = track_fringes(out["g_px"], pixel_size_nm=px, time_s=time_s, intensity=out["intensity"],
                           amplitude=out["amplitude"], snr=out["snr"],
                           reference_frames=int(recipe.reference_frames),
                           min_snr=recipe.track_min_snr)
    lost = [j for j in range(series.n_sets) if not series.detected[:, j].all()]
    if lost:
        problems.append(f"fringe sets {lost} fall below the detection threshold in some frames (d is NaN there)")
    mean_power = sfft.fftshift(out["power_sum"].sum(axis=0) / movie.n_frames)
    return FFTResult(path=movie.path, format=movie.format, recipe=recipe, roi=tuple(int(v) for v in roi),
                     pixel_size_nm=px, time_source=movie.time_source if movie.times_s is not None else "frame index",
                     series=series, mean_power=mean_power, reference_spots=spots,
                     problems=list(movie.problems) + problems)


def write_fft_results(result: FFTResult, out_dir, *, overwrite: bool = False) -> Path:
    """Write ``results.json``, ``fringes.csv``, the mean spectrum (``.npy``) and PNG plots.

    The folder is staged and published in one rename (:class:`temtrack.io.results.OutputFolder`).
    """
    from temtrack.io.results import (OutputFolder, save_figure_atomic, save_npy_atomic,
                                     write_csv_atomic, write_json_atomic)
    from temtrack.plots import fft as fplots

    s = result.series
    cols: dict = {"frame": list(range(s.time_s.size)), "time_s": s.time_s.tolist()}
    for j in range(s.n_sets):
        cols[f"set{j}_d_nm"] = s.d_nm[:, j].tolist()
        cols[f"set{j}_angle_deg"] = s.angle_deg[:, j].tolist()
        cols[f"set{j}_expansion_pct"] = s.expansion_pct[:, j].tolist()
        cols[f"set{j}_intensity"] = s.intensity[:, j].tolist()
        cols[f"set{j}_amplitude"] = s.amplitude[:, j].tolist()
    cols["expansion_pct_mean"] = s.expansion_pct_mean.tolist()
    cols["crystalline_fraction"] = s.crystalline_fraction.tolist()
    labels = [f"set {j}: d = {s.reference_d_nm[j]:.4f} nm, {s.reference_angle_deg[j]:.1f} deg"
              for j in range(s.n_sets)]
    out = Path(out_dir)
    with OutputFolder(out, overwrite=overwrite) as stage:
        write_json_atomic(stage / "results.json", result.to_json())
        write_csv_atomic(stage / "fringes.csv", cols)
        save_npy_atomic(stage / "mean_power_spectrum.npy", result.mean_power)
        figs = {
            "fringe_d.png": fplots.fringe_spacing_figure(s.time_s, s.d_nm, labels=labels),
            "lattice_expansion.png": fplots.expansion_figure(s.time_s, s.expansion_pct,
                                                             s.expansion_pct_mean, labels=labels),
            "crystalline_fraction.png": fplots.crystalline_fraction_figure(s.time_s, s.crystalline_fraction),
            "power_spectrum.png": fplots.power_spectrum_figure(
                result.mean_power, pixel_size_nm=result.pixel_size_nm,
                spots_g_px=result.reference_spots["g_px"]),
        }
        for name, fig in figs.items():
            save_figure_atomic(fig, stage / name, dpi=110)
    return out
