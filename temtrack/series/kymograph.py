"""One pass over a movie that measures everything the wire analysis needs, frame by frame.

For a line along the wire (contact end first) a strip of samples (along x across, 1 px steps) is
laid out once in frame-0 coordinates (:mod:`temtrack.frame.profiles`); each frame is sampled at
that grid plus its drift, and reduced to small per-frame rows (a batch of frames at a time, every
bin of every frame in one vectorised fit; see :func:`batch_frames`):

* ``kymograph``: mean intensity across the wire width at every 1 px step along the line;
* per bin along the line (``bin_px`` samples averaged, every ``stride_px``): the projected-cylinder
  fit of the perpendicular profile (:mod:`temtrack.frame.edges`) giving the diameter, its
  uncertainty, the axis offset and the axial attenuation; the mean attenuation of the wire core;
  and the texture (relative variance of the fine detail in the core, which changes when the
  crystalline wire amorphises);
* ``background``: the frame's vacuum/film level (beam-current flicker).

Frames themselves never leave the chunk function, so memory is bounded for any movie length. The
chunk function is a ``functools.partial`` of a module-level function over a picklable
:class:`WireSampler`, as :func:`temtrack.pipeline.executor.map_frames` requires.
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import numpy as np

from temtrack.errors import ParameterError
from temtrack.frame.edges import (
    CylinderTemplates,
    cylinder_templates,
    fit_cylinder_profiles,
    profile_attenuation,
)
from temtrack.frame.profiles import StripGrid, sample_strip, strip_grid

__all__ = ["WireSampler", "WireSeries", "batch_frames", "make_wire_sampler", "measure_strips",
           "measure_wire_series", "sample_strips", "wire_chunk"]


@dataclass(frozen=True)
class WireSampler:
    """Everything the per-frame pass needs, computed once (picklable).

    Attributes
    ----------
    line_px : tuple
        ``(x0, y0, x1, y1)``, contact end first, frame-0 px.
    width_px : float
        Wire width used to average the kymograph (and the core for texture).
    grid : StripGrid
        Samples along x across the line (across half-width ``half_width_px``).
    templates : CylinderTemplates
    bin_px, stride_px : int
        Along-line averaging window and step of the per-bin measurements.
    """

    line_px: tuple
    width_px: float
    grid: StripGrid
    templates: CylinderTemplates
    bin_px: int
    stride_px: int

    @property
    def n_along(self) -> int:
        return self.grid.shape[0]

    @property
    def n_bins(self) -> int:
        return (self.n_along - self.bin_px) // self.stride_px + 1

    @property
    def bin_s_px(self) -> np.ndarray:
        """Centre of each bin along the line, px from the contact."""
        return np.arange(self.n_bins) * self.stride_px + (self.bin_px - 1) / 2.0


def make_wire_sampler(line_px, *, width_px: float, half_width_px: float | None = None, bin_px: int = 4,
                      stride_px: int = 2) -> WireSampler:
    """Lay out the strip and the cylinder templates for a wire.

    Parameters
    ----------
    line_px : sequence of 4 floats
        ``(x0, y0, x1, y1)``, contact end first.
    width_px : float
        Approximate wire width (px); the kymograph averages across it.
    half_width_px : float, optional
        Half width of the perpendicular profiles; default ``1.4 * width_px + 6`` so that a wire
        swelling by 60% still leaves background on both sides for the fit.
    bin_px : int
        Profiles averaged along the line per diameter fit (beats low dose). Wider bins average
        more dose but mix pristine and reacted profiles across the front: with 8 px the front
        positions came out 0.1-0.3 nm behind the truth (nonlinear mixing), with 4 px < 0.07 nm.
    stride_px : int
        Step between fits along the line.
    """
    if not (width_px > 0 and math.isfinite(width_px)):
        raise ParameterError(f"width_px must be a positive number of pixels, got {width_px}")
    if int(bin_px) < 1 or int(stride_px) < 1:
        raise ParameterError(f"bin_px and stride_px must be >= 1, got {bin_px}, {stride_px}")
    if half_width_px is None:
        half_width_px = 1.4 * width_px + 6
    half_width_px = max(float(half_width_px), 0.5 * width_px + 8, 12.0)
    grid = strip_grid(line_px, half_width_px=half_width_px)
    if grid.shape[0] < bin_px + stride_px:
        raise ParameterError(f"the line is too short ({grid.shape[0]} px) for bins of {bin_px} px")
    templates = cylinder_templates(grid.shape[1])
    return WireSampler(line_px=tuple(float(v) for v in line_px), width_px=float(width_px), grid=grid,
                       templates=templates, bin_px=int(bin_px), stride_px=int(stride_px))


#: Bytes of float64 strip data reduced at once by :func:`wire_chunk` (about 16 frames of a typical strip).
_BATCH_BYTES = 2 << 20
#: At most this many bytes of float32 frames in one batch (a chunk holds at least one batch).
_BATCH_FRAME_BYTES = 16 << 20


def _bin_along(strip: np.ndarray, bin_px: int, stride_px: int, n_bins: int) -> np.ndarray:
    """Mean over ``bin_px`` consecutive rows every ``stride_px`` rows; NaN if any sample is not finite.

    ``strip`` is (n_along, ...) or, for a stack of strips, (n_frames, n_along, ...): the bins run
    along the axis of length n_along. The sums run in float64 over float32 samples, which makes
    them exact for intensities (no cumulative-sum round-off), and NaN propagates by itself.
    """
    axis = 0 if strip.ndim < 3 else 1
    lead = (slice(None),) * axis
    span = stride_px * (n_bins - 1) + 1

    def rows(k):
        return strip[lead + (slice(k, k + span, stride_px),)]

    out = rows(0).astype(np.float64)
    for k in range(1, bin_px):
        out += rows(k)
    out /= bin_px
    # Infinite samples (a corrupt frame) count as missing, like NaN.
    bad = ~np.isfinite(out)
    if bad.any():
        out[bad] = np.nan
    return out


def batch_frames(sampler: WireSampler, frame_shape) -> int:
    """Frames :func:`wire_chunk` reduces together (from the strip and frame sizes only).

    Reductions over a batch (the template product) can round the last bits differently with
    another batch composition, so :func:`measure_wire_series` makes chunks a whole number of
    batches: every executor and number of workers then forms the same batches and gives
    identical numbers.
    """
    frame_bytes = 4 * int(frame_shape[0]) * int(frame_shape[1])
    return max(1, min(_BATCH_BYTES // (8 * sampler.grid.rows.size), _BATCH_FRAME_BYTES // frame_bytes))


def sample_strips(block: np.ndarray, sampler: WireSampler, dy_px: np.ndarray, dx_px: np.ndarray,
                  out: np.ndarray | None = None) -> np.ndarray:
    """The wire strip of every frame of ``block`` at its drift: float32 (n, n_along, n_across)."""
    n = block.shape[0]
    if out is None:
        out = np.empty((n, *sampler.grid.shape), dtype=np.float32)
    for j in range(n):
        sample_strip(block[j], sampler.grid, shift_px=(dy_px[j], dx_px[j]), out=out[j])
    return out


def measure_strips(strips: np.ndarray, sampler: WireSampler) -> dict[str, np.ndarray]:
    """Per-frame rows of the wire measurements from a stack of strips (see :func:`wire_chunk`).

    All frames of the stack are reduced together: one cylinder fit over every bin of every frame,
    no per-frame Python work.
    """
    sp = sampler
    n = strips.shape[0]
    nb = sp.n_bins
    r = sp.grid.r_px
    core = np.abs(r) <= 0.5 * sp.width_px
    inner = np.abs(r) <= 0.25 * sp.width_px
    outer = np.abs(r) >= r.max() - max(3.0, 0.1 * r.max())
    out = {}
    sc = strips[:, :, core]
    fin = np.isfinite(sc)
    cnt = fin.sum(axis=2)
    # NaN-aware mean without nanmean's warning for rows entirely off the frame.
    out["kymograph"] = np.where(cnt > 0, np.where(fin, sc, 0).sum(axis=2) / np.maximum(cnt, 1),
                                np.nan).astype(np.float32)
    ov = strips[:, :, outer].reshape(n, -1)
    ov_fin = np.isfinite(ov)
    bg = np.full(n, np.nan)
    whole = ov_fin.all(axis=1)
    if whole.any():
        bg[whole] = np.median(ov[whole], axis=1)
    for j in np.flatnonzero(~whole & ov_fin.any(axis=1)):
        bg[j] = np.median(ov[j][ov_fin[j]])
    out["background"] = bg
    binned = _bin_along(strips, sp.bin_px, sp.stride_px, nb)                  # (n, nb, n_across)
    fit = fit_cylinder_profiles(profile_attenuation(binned).reshape(n * nb, -1), sp.templates)
    for key in ("diameter_px", "diameter_err_px", "center_px", "amplitude"):
        out[key] = fit[key].reshape(n, nb)
    core_att = np.full((n, nb), np.nan)
    lit = np.isfinite(bg) & (bg > 0)
    if lit.any():
        core_mean = binned[lit][:, :, core].mean(axis=2)
        core_att[lit] = -np.log(np.clip(core_mean / bg[lit, None], 1e-3, None))
    out["core_attenuation"] = core_att
    # Texture: fine detail in the wire core (second difference along the line), relative to
    # the local mean intensity; photon noise contributes too, the reference frames remove it.
    si = strips[:, :, inner]
    d2 = si[:, 1:-1] - 0.5 * (si[:, :-2] + si[:, 2:])
    m = si[:, 1:-1]
    rel = (d2 * d2).mean(axis=2) / np.maximum(m.mean(axis=2), 1e-6) ** 2
    rel = np.concatenate([rel[:, :1], rel, rel[:, -1:]], axis=1)[:, :, None]
    out["texture"] = _bin_along(rel, sp.bin_px, sp.stride_px, nb)[:, :, 0]
    return out


def wire_chunk(block: np.ndarray, start: int, *, sampler: WireSampler, dy_px: np.ndarray,
               dx_px: np.ndarray) -> dict[str, np.ndarray]:
    """Chunk function for :func:`map_frames`: per-frame rows of the wire measurements.

    ``dy_px, dx_px`` are the drift of every frame of the movie (indexed by absolute frame number).
    """
    n = block.shape[0]
    dy = dy_px[start:start + n]
    dx = dx_px[start:start + n]
    # Frames are reduced a few at a time: the fit's temporaries (float64, every bin of every
    # frame across the strip) then stay in the CPU cache; a whole chunk at once ran 2x slower.
    step = min(n, batch_frames(sampler, block.shape[1:]))
    buf = np.empty((step, *sampler.grid.shape), dtype=np.float32)
    parts = []
    for a in range(0, n, step):
        b = min(n, a + step)
        parts.append(measure_strips(sample_strips(block[a:b], sampler, dy[a:b], dx[a:b], out=buf[:b - a]),
                                    sampler))
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def single_threaded_blas():
    """Context that keeps BLAS at one thread while the executor's threads run chunk functions.

    The template fit is a small matrix product per frame; multi-threaded BLAS inside two executor
    threads on two cores spin-waits against itself (measured 5-15x slower). Needs threadpoolctl;
    without it this is a no-op.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class WireSeries:
    """Per-frame wire measurements gathered over a movie (frames ``start:stop``).

    Arrays have one row per frame; bins run along the line (centres ``bin_s_px``).
    """

    sampler: WireSampler
    frame_index: np.ndarray
    kymograph: np.ndarray
    background: np.ndarray
    diameter_px: np.ndarray
    diameter_err_px: np.ndarray
    center_px: np.ndarray
    amplitude: np.ndarray
    core_attenuation: np.ndarray
    texture: np.ndarray

    @property
    def s_px(self) -> np.ndarray:
        return self.sampler.grid.s_px

    @property
    def bin_s_px(self) -> np.ndarray:
        return self.sampler.bin_s_px


def measure_wire_series(movie, sampler: WireSampler, *, dy_px, dx_px, start: int = 0, stop: int | None = None,
                        executor=None, memory_budget_bytes: int | None = None, progress=None,
                        cancel=None) -> WireSeries:
    """Run :func:`wire_chunk` over frames ``start:stop`` of ``movie``.

    Parameters
    ----------
    movie : Movie
    sampler : WireSampler
    dy_px, dx_px : array_like, shape (movie.n_frames,)
        Drift of each frame relative to frame 0 (px).
    start, stop : int
    executor, memory_budget_bytes, progress, cancel
        Passed to :func:`temtrack.pipeline.executor.map_frames`.
    """
    from temtrack.pipeline.executor import map_frames

    dy = np.asarray(dy_px, dtype=np.float64)
    dx = np.asarray(dx_px, dtype=np.float64)
    if dy.shape != (movie.n_frames,) or dx.shape != (movie.n_frames,):
        raise ParameterError(f"drift must have one (dy, dx) per frame ({movie.n_frames}), got {dy.shape}, {dx.shape}")
    stop = movie.n_frames if stop is None else int(stop)
    func = functools.partial(wire_chunk, sampler=sampler, dy_px=dy, dx_px=dx)
    # The memory budget alone gives one chunk for a short movie: one worker busy and a progress
    # bar that jumps from 0 to done. Four chunks per worker balance the load and report steadily.
    from temtrack.pipeline.executor import chunk_frames_for
    workers = int(getattr(executor, "workers", 2) or 2)
    chunk = chunk_frames_for(movie, memory_budget_bytes, in_flight=2 * workers)
    chunk = max(1, min(chunk, max(4, math.ceil((stop - start) / (4 * workers)))))
    batch = batch_frames(sampler, movie.frame_shape)
    chunk = max(batch, chunk // batch * batch)
    with single_threaded_blas():
        res = map_frames(movie, func, executor=executor, chunk_frames=chunk,
                         start=start, stop=stop, progress=progress, cancel=cancel)
    return WireSeries(sampler=sampler, frame_index=np.arange(start, stop), **res)
