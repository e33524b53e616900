"""Specimen drift over a movie: robust sub-pixel shifts per frame, and an aligned view of the movie.

Why hand-written: the usual recipes (register every frame to frame 0 with skimage or
``cv2.phaseCorrelate``, or accumulate neighbour shifts) each fail on in situ movies. A fixed
reference decorrelates as the specimen reacts, cumulative neighbour shifts random-walk away (error
growing like the square root of the number of frames), and at 8-40 e-/px/frame a single frame pair
carries a 0.1-0.3 px error. Here three passes over the movie, each one :func:`map_frames` call:

1. *coarse*: every frame, binned 2x (more from 1024 px up, keeping at least 400 px), is
   registered to its predecessor and every 4th frame to the reference (partially whitened,
   band-passed cross-correlation, :mod:`temtrack.frame.registration`). The pairwise shifts form
   a graph; a robust (iteratively reweighted, Huber) least-squares solve reconciles them, so
   neither a failed reference registration nor the random walk of the chain survives, while
   sudden jumps of the stage, which the neighbour pairs measure directly, are kept. Result: about 0.2-0.3 px.
2. *templates*: every frame is cropped at its rounded coarse shift (an exact integer shift, no
   interpolation) to the field of view all frames share, binned when the specimen has no detail at
   the finest scales (decided from the signal and noise spectra of the first frames), and summed
   per block of about 64 frames into two half templates (even and odd frames), and per run of 16
   frames.
3. *fine*: every frame is registered to the half template of the *other* parity of its block, so
   its own noise is never part of its reference (a frame correlating with its own noise is pulled
   back to where it was cropped), by weighted least squares on a Taylor expansion of the
   Wiener-filtered template (:func:`temtrack.frame.registration.register_to_template`: no FFT
   per frame). The half templates are registered to each other, all pairs, and a second robust
   least-squares solve places them: long-range links with no random walk. When the fine shifts
   moved a frame by most of a (binned) pixel from its coarse shift, or a fit failed, passes 2
   and 3 run once more from the fine shifts (better crops, sharper templates).

The weights of the fine fit come from the templates: the difference of the even and odd half
templates of a block is noise (its local power, fitted as a linear function of the intensity, is
the noise variance; its spectrum the noise spectrum), and variance of the runs' means beyond noise
is change of the specimen (the reacting part of a wire: its moving front and swelling edges would
pull a registration along with them). Weight = taper / (noise variance + 100 x change variance).
The weights live in specimen coordinates, so they follow the specimen, not the frame's edge.

Accuracy on synthetic 300-frame nanowire movies at 40 e-/px/frame (tests/drift, tests/imaging):
about 0.05-0.06 px RMS per frame, 0.06-0.09 px RMS relative to frame 0 (whose own error, common to
every shift, is the largest single term).

Convention (shared with the synthetic truth and every consumer): ``dy_px[i], dx_px[i]`` is the
displacement of the specimen in frame ``i`` relative to frame 0: a feature at (y, x) in frame 0
appears at (y + dy, x + dx) in frame ``i``. ``dy_px[0] = dx_px[0] = 0``.
"""
from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft

from temtrack.errors import AnalysisError, ParameterError
from temtrack.frame import registration as reg
from temtrack.io.movie import Movie
from temtrack.pipeline.executor import chunk_frames_for, map_frames

__all__ = ["AlignedFrames", "DriftResult", "aligned_movie", "estimate_drift"]

# Registration settings measured on synthetic nanowire movies at 8-40 e-/px/frame (see tests/drift).
_COARSE = {"whiten": 0.5, "smooth_px": 1.5, "highpass_px": 40.0, "subpixel": "gaussian"}
_COARSE_TUKEY = 0.5
_REFERENCE_EVERY = 4          # frames registered to the reference (all to their predecessor)
_COARSE_MIN_PX = 400          # coarse pass: bin while the binned frame stays at least this large
_FINE_TAPER = 0.2             # Tukey fraction of the fine weights over the common field of view
_CHANGE_PENALTY = 100.0       # weight = taper / (noise variance + penalty * change variance)
_CHANGE_RUN = 16              # frames per run whose means show how the specimen changes
_CHANGE_RUNS_MAX = 48         # at most this many runs (longer runs in long movies)
_FINE_MAX_PX = 640            # the fine grid is binned to at most this size
_BINNING_FRAMES = 8           # first frames whose spectra decide the fine binning
_MIN_HALF_TEMPLATE = 16       # frames per half template at least (blocks are merged up to it)
_BIN_INFO_LOSS = 0.03         # bin the fine pass if it loses at most this share of shift information
_DEFAULT_CHUNK = 64
_MIN_FOV_PX = 24


@dataclass
class DriftResult:
    """Drift of the specimen per frame.

    Attributes
    ----------
    dy_px, dx_px : ndarray of float64, shape (n_frames,)
        Displacement of the specimen in frame i relative to frame 0 (a feature at (y, x) in frame 0
        is at (y + dy, x + dx) in frame i).
    quality : ndarray of float64, shape (n_frames,)
        Correlation peak height over the surface's standard deviation of the coarse registration
        of each frame (to the reference for every 4th frame, to the previous frame otherwise; NaN
        where neither was measured); below about 5 the coarse shift is unreliable.
    jump_frames : list of int
        Frames ``i`` where the specimen jumped between frame ``i - 1`` and frame ``i``.
    method : str
        How the shifts were obtained.
    reference : str or int
        The reference option used.
    roi : tuple or None
        ``(x, y, w, h)`` anchor region in frame-0 pixels, if any.
    graph_residual_px : float
        RMS disagreement between the pairwise measurements and the solved shifts (coarse pass).
    """

    dy_px: np.ndarray
    dx_px: np.ndarray
    quality: np.ndarray
    jump_frames: list = field(default_factory=list)
    method: str = ""
    reference: str | int = "first"
    roi: tuple | None = None
    graph_residual_px: float = float("nan")

    def __post_init__(self):
        self.dy_px = np.asarray(self.dy_px, dtype=np.float64)
        self.dx_px = np.asarray(self.dx_px, dtype=np.float64)
        self.quality = np.asarray(self.quality, dtype=np.float64)
        if not (self.dy_px.shape == self.dx_px.shape == self.quality.shape) or self.dy_px.ndim != 1:
            raise ParameterError("dy_px, dx_px and quality must be 1D arrays of the same length")
        self.jump_frames = [int(j) for j in self.jump_frames]

    @property
    def n_frames(self) -> int:
        return int(self.dy_px.size)

    @property
    def shifts_px(self) -> np.ndarray:
        """(n_frames, 2) array of (dy, dx)."""
        return np.stack([self.dy_px, self.dx_px], axis=1)

    def to_json(self) -> dict:
        """JSON-serialisable dict (lists of floats; NaN quality becomes null)."""
        return {
            "dy_px": [float(v) for v in self.dy_px],
            "dx_px": [float(v) for v in self.dx_px],
            "quality": [None if not math.isfinite(v) else float(v) for v in self.quality],
            "jump_frames": list(self.jump_frames),
            "method": self.method,
            "reference": self.reference,
            "roi": None if self.roi is None else [int(v) for v in self.roi],
            "graph_residual_px": None if not math.isfinite(self.graph_residual_px) else float(self.graph_residual_px),
            "convention": "a feature at (y, x) in frame 0 appears at (y + dy_px, x + dx_px) in frame i",
        }

    @classmethod
    def from_json(cls, d: dict) -> DriftResult:
        n = len(d["dy_px"])
        q = d.get("quality") or [None] * n
        return cls(np.asarray(d["dy_px"], float), np.asarray(d["dx_px"], float),
                   np.asarray([np.nan if v is None else v for v in q], float),
                   list(d.get("jump_frames", [])), d.get("method", ""), d.get("reference", "first"),
                   None if d.get("roi") is None else tuple(d["roi"]),
                   float("nan") if d.get("graph_residual_px") is None else d["graph_residual_px"])

    def common_fov(self, frame_shape) -> tuple[int, int, int, int]:
        """Region seen in every frame, in frame-0 pixel coordinates.

        Parameters
        ----------
        frame_shape : (rows, cols)

        Returns
        -------
        (y0, y1, x0, x1) : int
            Rows ``y0:y1`` and columns ``x0:x1`` of frame 0 whose content lies inside every frame
            (so can be interpolated without extrapolation).

        Raises
        ------
        AnalysisError
            When the drift leaves no region common to all frames.
        """
        y0, y1, x0, x1 = _common_fov(self.dy_px, self.dx_px, frame_shape)
        if y1 - y0 < 1 or x1 - x0 < 1:
            raise AnalysisError(f"the drift ({np.ptp(self.dy_px):.0f} x {np.ptp(self.dx_px):.0f} px) leaves no "
                                f"field of view common to all frames of shape {tuple(frame_shape)}")
        return y0, y1, x0, x1


def _common_fov(dy, dx, frame_shape):
    rows, cols = int(frame_shape[0]), int(frame_shape[1])
    eps = 1e-6
    y0 = max(0, math.ceil(float(np.max(-dy)) - eps))
    y1 = min(rows, math.floor(float(np.min(rows - 1 - dy)) + eps) + 1)
    x0 = max(0, math.ceil(float(np.max(-dx)) - eps))
    x1 = min(cols, math.floor(float(np.min(cols - 1 - dx)) + eps) + 1)
    return int(y0), int(y1), int(x0), int(x1)


# -- chunk functions (module level: picklable for dask) ------------------------------------------
def _bin(frames: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor`` x ``factor`` pixel blocks (OpenCV's area resampling: 3-4x faster than numpy
    strided sums; the scale does not matter to any registration here)."""
    if factor == 1:
        return frames
    import cv2

    n, rows, cols = frames.shape
    h, w = rows // factor, cols // factor
    out = np.empty((n, h, w), dtype=np.float32)
    for i in range(n):
        cv2.resize(frames[i, :h * factor, :w * factor], (w, h), dst=out[i], interpolation=cv2.INTER_AREA)
    return out


def _coarse_chunk(block: np.ndarray, start: int, *, ref_spectrum: np.ndarray, window: np.ndarray,
                  max_shift_px: float | None, bin_factor: int = 1) -> dict:
    """Shift of each owned frame to its predecessor (``overlap=1``) and, for every
    ``_REFERENCE_EVERY``-th frame of the movie, to the reference (NaN for the others)."""
    lead = 1 if start > 0 else 0
    block = _bin(block, bin_factor)
    if max_shift_px is not None:
        max_shift_px = max_shift_px / bin_factor
    shape = block.shape[1:]
    spec = reg.frame_spectra(block, window=window)
    own = spec[lead:]
    n = own.shape[0]
    rsel = np.flatnonzero((start + np.arange(n)) % _REFERENCE_EVERY == 0)
    ref = np.full((n, 2), np.nan)
    rq = np.full(n, np.nan)
    if rsel.size:
        ref[rsel], rq[rsel] = reg.register_spectra(own[rsel], ref_spectrum, shape=shape, max_shift_px=max_shift_px,
                                                   **_COARSE)
    nb = np.full((n, 2), np.nan)
    nq = np.full(n, np.nan)
    if spec.shape[0] >= 2:
        s, q = reg.register_spectra(spec[1:], spec[:-1], shape=shape, max_shift_px=max_shift_px, **_COARSE)
        nb[n - s.shape[0]:] = s
        nq[n - s.shape[0]:] = q
    return {"ref_shift": ref * bin_factor, "ref_quality": rq, "nb_shift": nb * bin_factor, "nb_quality": nq}


def _crops(block: np.ndarray, shifts_px: np.ndarray, box: tuple, bin_factor: int) -> np.ndarray:
    """Each frame cut at its integer shift to the shared box (frame-0 coordinates), then binned.

    Frame ``i`` pixel ``(y + ky, x + kx)`` shows what frame 0 shows at ``(y, x)`` up to the
    sub-pixel rest, so the crops of all frames lie on one specimen grid with no interpolation.
    """
    y0, y1, x0, x1 = box
    out = np.empty((block.shape[0], y1 - y0, x1 - x0), dtype=np.float32)
    for i, (ky, kx) in enumerate(shifts_px):
        out[i] = block[i, y0 + ky:y1 + ky, x0 + kx:x1 + kx]
    out = _bin(out, bin_factor)
    if not np.isfinite(out.sum()):
        # NaN/Inf pixels (dead or hot) get the mean of the finite ones: no signal, no shift.
        finite = np.isfinite(out)
        out[~finite] = float(out[finite].mean()) if finite.any() else 0.0
    return out


def _template_chunk(block: np.ndarray, start: int, *, shifts_px: np.ndarray, box: tuple, bin_factor: int,
                    sub_frames: int) -> dict:
    """Sums of the even and of the odd frames of the chunk (their parity in the movie), and sums
    over runs of ``sub_frames`` frames (numbered from the movie's start, so the same whatever the
    chunks) that measure how the specimen changes."""
    n = block.shape[0]
    crops = _crops(block, shifts_px[start:start + n], box, bin_factor)
    first = start % 2   # parity of the chunk's first frame: crops[first::2] are even frames
    even = crops[first::2].sum(axis=0)
    odd = crops[1 - first::2].sum(axis=0)
    run = (start + np.arange(n)) // sub_frames
    ids = np.unique(run)
    sub = np.stack([crops[run == r].sum(axis=0) for r in ids])
    return {"even": even[None], "odd": odd[None],
            "n_even": np.array([crops[first::2].shape[0]]), "n_odd": np.array([crops[1 - first::2].shape[0]]),
            "sub_id": ids, "sub_sum": sub, "sub_n": np.array([int((run == r).sum()) for r in ids])}


def _fine_chunk(block: np.ndarray, start: int, *, shifts_px: np.ndarray, box: tuple, bin_factor: int,
                template_of: np.ndarray, templates: list, n_in: list, weights: np.ndarray, noise_psd: np.ndarray,
                block_start: np.ndarray, pairs: np.ndarray) -> dict:
    """Sub-pixel rest of each frame against the half template it is assigned (not containing it).

    The chunk holding the first frame of a block also registers the other half templates against
    that block's two (the pairs of ``pairs`` starting at them), which places the templates: so each
    template is prepared once, in parallel, and the main thread only solves.
    """
    n = block.shape[0]
    crops = _crops(block, shifts_px[start:start + n], box, bin_factor)
    node = template_of[start:start + n]
    owned = [int(2 * j + h) for j in np.flatnonzero((block_start >= start) & (block_start < start + n))
             for h in (0, 1)]
    bases = {t: reg.template_basis(templates[t], weights, noise_psd=noise_psd, n_frames=n_in[t])
             for t in sorted(set(np.unique(node).tolist()) | set(owned))}
    delta = np.zeros((n, 2))
    ok = np.zeros(n, dtype=bool)
    for t in np.unique(node):
        sel = np.flatnonzero(node == t)
        delta[sel], ok[sel] = reg.register_to_template(crops[sel], bases[int(t)])
    rows = [np.flatnonzero(pairs[:, 0] == a) for a in owned]
    rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    pair_d = np.zeros((rows.size, 2))
    pair_ok = np.zeros(rows.size, dtype=bool)
    for a in owned:
        sel = np.flatnonzero(pairs[rows, 0] == a)
        if sel.size:
            others = np.stack([templates[b] for b in pairs[rows[sel], 1]]).astype(np.float32)
            pair_d[sel], pair_ok[sel] = reg.register_to_template(others, bases[a])
    return {"delta": delta, "ok": ok, "pair": rows, "pair_d": pair_d, "pair_ok": pair_ok}


# -- graph solve -------------------------------------------------------------------------------
def _solve_graph(n_nodes: int, edges_i: np.ndarray, edges_j: np.ndarray, meas: np.ndarray,
                 group: np.ndarray, *, fixed: int = 0, iterations: int = 6,
                 huber: float = 2.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust least squares for node positions p with p[j] - p[i] = meas per edge, p[fixed] = 0.

    ``group`` labels edges whose noise level is alike (neighbour pairs, reference pairs); each
    group's scale is re-estimated from its residuals (MAD) at every iteration and edges are
    down-weighted by a Huber function of their 2D residual.

    Returns positions (n_nodes, 2), final weights per edge, residuals per edge (E, 2).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    m = edges_i.size
    rows = np.concatenate([np.arange(m), np.arange(m)])
    cols = np.concatenate([edges_j, edges_i])
    vals = np.concatenate([np.ones(m), -np.ones(m)])
    keep = cols != fixed
    a = coo_matrix((vals[keep], (rows[keep], np.where(cols[keep] > fixed, cols[keep] - 1, cols[keep]))),
                   shape=(m, n_nodes - 1)).tocsr()
    w = np.ones(m)
    groups = np.unique(group)
    pos = np.zeros((n_nodes, 2))
    resid = np.zeros_like(meas)
    for it in range(iterations):
        aw = a.multiply(w[:, None]).tocsr()
        normal = (a.T @ aw).tocsc()
        normal = normal + 1e-9 * _eye(n_nodes - 1)
        sol = spsolve(normal, a.T @ (w[:, None] * meas))
        sol = np.asarray(sol).reshape(n_nodes - 1, 2)
        pos = np.insert(sol, fixed, 0.0, axis=0)
        resid = meas - (pos[edges_j] - pos[edges_i])
        r = np.hypot(resid[:, 0], resid[:, 1])
        w = np.empty(m)
        for g in groups:
            sel = group == g
            sigma = max(1.4826 * float(np.median(r[sel])) / 1.1774, 0.01)  # Rayleigh median -> sigma
            u = r[sel] / sigma
            w[sel] = np.minimum(1.0, huber / np.maximum(u, 1e-12)) / sigma ** 2
    return pos, w, resid


def _eye(n):
    from scipy.sparse import identity
    return identity(n, format="csc")


def _detect_jumps(d: np.ndarray, threshold_px: float, half_window: int = 5) -> list[int]:
    """Frames whose step from the previous frame departs from the local drift velocity."""
    n = d.shape[0]
    if n < 3:
        return []
    steps = np.diff(d, axis=0)
    m = steps.shape[0]
    pad = np.pad(steps, ((half_window, half_window), (0, 0)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(pad, 2 * half_window + 1, axis=0)
    local = np.nanmedian(windows, axis=2)[:m]
    dev = np.hypot(*(steps - local).T)
    return [int(k) + 1 for k in np.flatnonzero(dev > threshold_px)]


# -- public API --------------------------------------------------------------------------------
def estimate_drift(movie: Movie, *, reference: str | int = "first", roi=None, upsample: int = 20,
                   max_shift_px: float | None = None, executor=None,
                   progress: Callable[[int, int], None] | None = None,
                   cancel: threading.Event | None = None, chunk_frames: int | None = None,
                   refine: bool = True, jump_threshold_px: float = 3.0,
                   memory_budget_bytes: int | None = None) -> DriftResult:
    """Sub-pixel drift of the specimen in every frame relative to frame 0.

    Parameters
    ----------
    movie : Movie
    reference : {'first', 'mean'} or int
        Reference of the coarse pass: frame 0, the aligned mean of the first (up to) 16 frames, or
        frame ``reference``. Shifts are always relative to frame 0.
    roi : (x, y, w, h), optional
        Anchor region in frame-0 pixels (e.g. a static particle): the coarse pass registers the ROI
        grown by a quarter of its size on each side, the fine pass the ROI alone (in aligned, i.e.
        frame-0, coordinates), so moving parts of the specimen elsewhere cannot drag the estimate.
        At least 24x24 px.
    upsample : int
        Kept for API compatibility with upsampled-DFT registration; the sub-pixel shift is the
        exact optimum of the fine fit, so any value >= 1 gives the same result.
    max_shift_px : float, optional
        Largest shift between any two frames searched (default: half the frame).
    executor : LocalExecutor or DaskExecutor, optional
    progress : callable, optional
        ``progress(done, total)``; ``total`` is twice the number of frames (the coarse pass counts
        one per frame, the template and fine passes half each).
    cancel : threading.Event, optional
    chunk_frames : int, optional
        Frames per chunk (default about 64). Results depend on it (blocks of whole chunks of at
        least 32 frames make the templates of the fine pass) but never on the executor or its
        number of workers.
    refine : bool
        Run the template and fine passes; without them the coarse graph solution is returned.
    memory_budget_bytes : int, optional
        Bound on frames and temporaries in flight (default: the executor's 1 GiB); smaller
        budgets mean smaller template chunks.
    jump_threshold_px : float
        A step between neighbouring frames departing from the local drift velocity by more than
        this is reported in ``jump_frames``.

    Returns
    -------
    DriftResult

    Raises
    ------
    ParameterError
        For an invalid option.
    Cancelled
        When ``cancel`` is set.
    """
    if not isinstance(movie, Movie):
        raise ParameterError(f"estimate_drift needs a temtrack Movie, got {type(movie).__name__}")
    n = movie.n_frames
    rows, cols = movie.frame_shape
    if rows < 16 or cols < 16:
        raise ParameterError(f"drift estimation needs frames of at least 16x16 px, got {rows}x{cols}")
    if isinstance(reference, (bool, np.bool_)) or not (
            reference in ("first", "mean") or isinstance(reference, (int, np.integer))):
        raise ParameterError(f"reference must be 'first', 'mean' or a frame index, got {reference!r}")
    if isinstance(reference, (int, np.integer)):
        reference = int(reference) + (n if reference < 0 else 0)
        if not 0 <= reference < n:
            raise ParameterError(f"reference frame {reference} outside the movie's 0:{n}")
    if int(upsample) < 1:
        raise ParameterError(f"upsample must be >= 1, got {upsample}")
    if max_shift_px is not None and not (math.isfinite(max_shift_px) and max_shift_px > 0):
        raise ParameterError(f"max_shift_px must be a positive number, got {max_shift_px}")
    if not (math.isfinite(jump_threshold_px) and jump_threshold_px > 0):
        raise ParameterError(f"jump_threshold_px must be positive, got {jump_threshold_px}")
    roi_box = _check_roi(roi, rows, cols)
    if n == 1:
        return DriftResult(np.zeros(1), np.zeros(1), np.full(1, np.nan), [], "single frame",
                           reference, roi, 0.0)
    chunk = _chunk_size(movie, n, chunk_frames, memory_budget_bytes)
    total = (2 if refine else 1) * n

    def prog(offset, scale=1.0):
        if progress is None:
            return None
        return lambda done, _t: progress(offset + int(done * scale), total)

    # -- pass 1: coarse, reference + neighbours ------------------------------------------------
    bin_factor = _coarse_binning(rows, cols)
    window = _coarse_window((rows // bin_factor, cols // bin_factor), roi_box, bin_factor)
    if reference == "mean":
        ref_frame = _mean_reference(movie, min(n, 16))
    else:
        k = 0 if reference == "first" else reference
        ref_frame = movie.frame(k)
    ref_spec = reg.frame_spectra(_bin(ref_frame[None], bin_factor)[0], window=window)
    func = functools.partial(_coarse_chunk, ref_spectrum=ref_spec, window=window, max_shift_px=max_shift_px,
                             bin_factor=bin_factor)
    out = map_frames(movie, func, executor=executor, chunk_frames=chunk, overlap=1,
                     progress=prog(0), cancel=cancel)

    # Graph: nodes 0..n-1 are frames; node n is the 'mean' reference when used.
    idx = np.arange(n)
    nb_ok = np.isfinite(out["nb_shift"][:, 0])
    ref_ok = np.isfinite(out["ref_shift"][:, 0])
    if reference == "mean":
        ref_node, n_nodes = n, n + 1
    else:
        ref_node, n_nodes = (0 if reference == "first" else reference), n
    ei = np.concatenate([idx[nb_ok] - 1, np.full(int(ref_ok.sum()), ref_node)])
    ej = np.concatenate([idx[nb_ok], idx[ref_ok]])
    meas = np.concatenate([out["nb_shift"][nb_ok], out["ref_shift"][ref_ok]])
    group = np.concatenate([np.zeros(int(nb_ok.sum()), int), np.ones(int(ref_ok.sum()), int)])
    self_edge = ei == ej
    ei, ej, meas, group = ei[~self_edge], ej[~self_edge], meas[~self_edge], group[~self_edge]
    pos, _, resid = _solve_graph(n_nodes, ei, ej, meas, group)
    coarse = pos[:n] - pos[0]
    graph_rms = float(np.sqrt(np.mean(np.sum(resid ** 2, axis=1)))) if resid.size else 0.0
    quality = np.where(ref_ok, out["ref_quality"], out["nb_quality"])
    method = f"graph of neighbour and reference ({reference}) registrations, robust least squares"

    # -- passes 2 and 3: templates, fine least-squares registration ------------------------------
    final = coarse
    if refine:
        fine = None
        shifts_int = np.rint(coarse).astype(np.int64)
        box = _fine_box(shifts_int, rows, cols, roi_box)
        if box is not None and n >= 4:
            fine = _refine(movie, coarse, shifts_int, box, chunk, executor, cancel,
                           prog(n, 0.5), prog(n + n // 2, 0.5))
            # Where the coarse shifts were off by a binned pixel or more (a reaction dragging the
            # coarse correlation, a failed fit), the crops and templates were not the best: once
            # more from the fine shifts.
            if fine is not None and (np.abs(fine[0] - coarse).max() > 0.75 * fine[1] or not fine[2].all()):
                again_int = np.rint(fine[0]).astype(np.int64)
                again_box = _fine_box(again_int, rows, cols, roi_box)
                if again_box is not None:
                    again = _refine(movie, fine[0], again_int, again_box, chunk, executor, cancel, None, None)
                    if again is not None:
                        fine = again
        if fine is not None:
            final, fine_bin = fine[0], fine[1]
            method = (f"coarse: {method} on {bin_factor}x binned frames; fine: least squares against "
                      f"Wiener-filtered half templates (the other parity of each block of about {chunk} "
                      f"frames) on {fine_bin}x binned frames, templates placed by a robust solve over "
                      "all pairs; weights down-weight pixels that change over the movie")
            if roi_box is not None:
                method += "; on the ROI"
        else:
            where = "the ROI within the common field of view" if roi_box is not None else "the common field of view"
            method += f"; fine pass skipped ({where} is smaller than {_MIN_FOV_PX} px or fewer than 4 frames)"
        if progress is not None:
            progress(total, total)
    jumps = _detect_jumps(final, jump_threshold_px)
    return DriftResult(final[:, 0].copy(), final[:, 1].copy(), quality, jumps, method, reference,
                       None if roi is None else tuple(int(v) for v in roi), graph_rms)


def _coarse_binning(rows: int, cols: int) -> int:
    """Largest power of two keeping the coarse frame at least ``_COARSE_MIN_PX`` (2 from 128 px)."""
    side = min(rows, cols)
    if side < 128:
        return 1
    b = 2
    while side // (2 * b) >= _COARSE_MIN_PX:
        b *= 2
    return b


def _fine_box(shifts_int: np.ndarray, rows: int, cols: int, roi_box) -> tuple | None:
    """Frame-0 region every frame shows at its integer shift (intersected with the ROI)."""
    y0 = int(max(0, -shifts_int[:, 0].min()))
    y1 = int(min(rows, rows - shifts_int[:, 0].max()))
    x0 = int(max(0, -shifts_int[:, 1].min()))
    x1 = int(min(cols, cols - shifts_int[:, 1].max()))
    if roi_box is not None:
        ry0, ry1, rx0, rx1 = roi_box
        y0, y1, x0, x1 = max(y0, ry0), min(y1, ry1), max(x0, rx0), min(x1, rx1)
    if y1 - y0 < _MIN_FOV_PX or x1 - x0 < _MIN_FOV_PX:
        return None
    return y0, y1, x0, x1


def _refine(movie, coarse, shifts_int, box, chunk, executor, cancel, prog_templates, prog_fine):
    """Passes 2 and 3; returns (shifts relative to frame 0, fine binning, fit converged per frame)
    or None."""
    n = movie.n_frames
    y0, y1, x0, x1 = box
    k = min(n, _BINNING_FRAMES)
    side = min(y1 - y0, x1 - x0)
    b = _choose_fine_binning(_crops(movie.read(0, k), shifts_int[:k], box, 1), side)
    # Bound the fine grid: beyond ~640 px the templates' 15 derivative images cost more memory
    # and time than the 0.1% of the field they would resolve is worth.
    while side // b > _FINE_MAX_PX:
        b *= 2
    box = (y0, y0 + (y1 - y0) // b * b, x0, x0 + (x1 - x0) // b * b)     # whole bins

    # Runs of 16 frames (4 in short movies, so that there are several), at most 48 runs.
    sub_frames = max(min(_CHANGE_RUN, max(4, n // 6)), -(-n // _CHANGE_RUNS_MAX))
    func = functools.partial(_template_chunk, shifts_px=shifts_int, box=box, bin_factor=b, sub_frames=sub_frames)
    folded = _fold_template_sums(movie, func, chunk, executor, prog_templates, cancel)
    if folded is None:
        return None
    templates, n_in, template_of, block_start, run_means, run_n = folded
    weights, noise_psd = _fine_weights(templates, n_in, run_means, run_n)
    pairs = _template_pairs(len(templates))
    templates = [t.astype(np.float32) for t in templates]
    func = functools.partial(_fine_chunk, shifts_px=shifts_int, box=box, bin_factor=b, template_of=template_of,
                             templates=templates, n_in=n_in, weights=weights, noise_psd=noise_psd,
                             block_start=block_start, pairs=pairs)
    res = map_frames(movie, func, executor=executor, chunk_frames=chunk, progress=prog_fine, cancel=cancel)
    meas = np.zeros((len(pairs), 2))
    good = np.zeros(len(pairs), dtype=bool)
    meas[res["pair"]], good[res["pair"]] = res["pair_d"], res["pair_ok"]
    offsets = _place_templates(len(templates), pairs, meas, good)
    fine = shifts_int + b * (res["delta"] + offsets[template_of])
    ok = res["ok"]
    # A frame whose fit failed keeps its coarse shift, corrected like its nearest fitted neighbours.
    if not ok.all():
        if ok.any():
            good = np.flatnonzero(ok)
            for i in np.flatnonzero(~ok):
                near = good[np.argsort(np.abs(good - i), kind="stable")[:2]]
                fine[i] = coarse[i] + np.mean(fine[near] - coarse[near], axis=0)
        else:
            fine = coarse.copy()
    return fine - fine[0], b, ok


def _fold_template_sums(movie, func, chunk, executor, progress, cancel):
    """Run the template pass and fold its chunk sums into blocks and runs as they arrive.

    Blocks are whole chunks with at least ``_MIN_HALF_TEMPLATE`` frames per half (a short last
    block joins the one before). The pass runs in slices of whole chunks, so the chunks, and hence
    the results, are those of one pass over the movie; folding slice by slice keeps only the
    block and run sums: gathering every chunk's full-size sums first held one image per chunk,
    1.3 GiB for 512 frames of 1024 x 1024 px under a 128 MiB budget.

    Returns (half templates, frames in each, half template of each frame, first frame of each
    block, run means, frames in each run), or None if a block has no frame of one parity.
    """
    n = movie.n_frames
    per_slice = chunk * max(4, -(-4 * _MIN_HALF_TEMPLATE // chunk))
    blocks: list[list] = []          # [even sum, odd sum, n even, n odd, first frame, end frame]
    cur: list | None = None
    runs: dict[int, list] = {}
    frame = 0
    for a in range(0, n, per_slice):
        b = min(n, a + per_slice)
        prog = None if progress is None else (lambda done, _total, a=a: progress(a + done, n))
        part = map_frames(movie, func, executor=executor, chunk_frames=chunk, start=a, stop=b,
                          progress=prog, cancel=cancel)
        for c in range(part["n_even"].size):
            ne, no = int(part["n_even"][c]), int(part["n_odd"][c])
            if cur is None:
                cur = [part["even"][c].copy(), part["odd"][c].copy(), ne, no, frame, frame + ne + no]
            else:
                cur[0] += part["even"][c]
                cur[1] += part["odd"][c]
                cur[2] += ne
                cur[3] += no
                cur[5] += ne + no
            frame += ne + no
            if cur[2] + cur[3] >= 2 * _MIN_HALF_TEMPLATE:
                blocks.append(cur)
                cur = None
        for r, ssum, sn in zip(part["sub_id"], part["sub_sum"], part["sub_n"]):
            if int(r) in runs:
                runs[int(r)][0] += ssum
                runs[int(r)][1] += int(sn)
            else:
                runs[int(r)] = [ssum.copy(), int(sn)]
        del part
    if cur is not None:
        if blocks:
            last = blocks[-1]
            last[0] += cur[0]
            last[1] += cur[1]
            last[2] += cur[2]
            last[3] += cur[3]
            last[5] = cur[5]
        else:
            blocks.append(cur)
    templates, n_in, template_of = [], [], np.empty(n, dtype=np.int64)
    for j, (even, odd, ne, no, f0, f1) in enumerate(blocks):
        if min(ne, no) < 1:
            return None
        templates += [even / ne, odd / no]
        n_in += [ne, no]
        frames = np.arange(f0, f1)
        # Even frames are measured against the odd half template (node 2j + 1) and vice versa.
        template_of[frames] = 2 * j + 1 - (frames % 2)
    block_start = np.array([blk[4] for blk in blocks])
    run_ids = sorted(runs)
    run_means = [runs[r][0] / runs[r][1] for r in run_ids]
    run_n = [runs[r][1] for r in run_ids]
    return templates, n_in, template_of, block_start, run_means, run_n


def _template_pairs(m: int) -> np.ndarray:
    """Ordered pairs (a, b) of half templates registered to each other: all pairs, or for long
    movies (more than 12 blocks) pairs up to two blocks apart plus every template and the first block's."""
    out = [(a, b) for a in range(m) for b in range(m)
           if a != b and (m <= 24 or abs(a // 2 - b // 2) <= 2 or a < 2 or b < 2)]
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def _place_templates(m: int, pairs: np.ndarray, meas: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Offset of each half template's content relative to the first, from pairwise registrations.

    A half template is the mean of frames cropped at integer shifts, so it sits at the mean
    sub-pixel rest of its frames; ``meas[k]`` is the shift of template ``pairs[k, 1]`` relative to
    template ``pairs[k, 0]``. A robust least-squares solve over all pairs places them without the
    random walk a chain of neighbours would have.
    """
    if m < 2 or not good.any():
        return np.zeros((m, 2))
    pos, _, _ = _solve_graph(m, pairs[good, 0], pairs[good, 1], meas[good], np.zeros(int(good.sum()), int))
    return pos


def _flicker_free_residuals(crops: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Crops minus the group mean fitted with a gain and an offset per frame (beam-current flicker)."""
    m = mean - mean.mean()
    mm = float((m * m).sum()) or 1.0
    out = np.empty(crops.shape, dtype=np.float64)
    for i, c in enumerate(crops):
        c = c.astype(np.float64)
        gain = float(((c - c.mean()) * m).sum()) / mm
        out[i] = c - c.mean() - gain * m
    return out


def _choose_fine_binning(crops: np.ndarray, side: int) -> int:
    """Largest binning (1, 2, 4 or 8) whose Nyquist frequency keeps nearly all shift information.

    Shift information per frequency is ``k^2 S(k) / N(k)`` (signal and noise power per frame);
    the signal is the cross-power of the means of the first and second half of the group (their
    noise is independent, so it averages out instead of leaving a bias), the noise the power of
    the flicker-free residuals.
    """
    m = crops.shape[0]
    if m < 4:
        return 1
    mean = crops.mean(axis=0, dtype=np.float64)
    resid = _flicker_free_residuals(crops, mean)
    shape = crops.shape[1:]
    noise = reg.radial_power(sfft.rfft2(resid.astype(np.float32), workers=1), shape) * m / (m - 1)
    h = m // 2
    fa = sfft.rfft2(crops[:h].mean(axis=0, dtype=np.float64) - mean.mean(), workers=1)
    fb = sfft.rfft2(crops[h:2 * h].mean(axis=0, dtype=np.float64) - mean.mean(), workers=1)
    bins, counts = reg._radial_bins(shape)
    cross = (fa * np.conj(fb)).real * reg._half_weights(shape[1])[None]
    signal = np.bincount(bins.ravel(), cross.ravel(), noise.size) / counts / (shape[0] * shape[1])
    # Only significant signal counts: the k^3 weight would otherwise turn the scatter of the many
    # high-frequency bins into information (standard error of a bin: N / h / sqrt(modes)).
    signal[signal < 4.0 * noise / h / np.sqrt(counts)] = 0.0
    nb = noise.size
    f = (np.arange(nb) + 0.5) * (0.5 / nb)
    info = f ** 3 * signal / np.maximum(noise, 1e-12 * max(noise.max(), 1e-300))   # f dk ring area
    total = info.sum()
    if not total > 0:
        return 1
    best = 1
    for b in (2, 4, 8):
        if side // b < 48:
            break
        lost = max(0.0, info[f > 0.5 / b].sum()) / total
        if lost <= _BIN_INFO_LOSS:
            best = b
    return best


def _fine_weights(templates: list, n_in: list, run_means: list, run_n: list) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the fine fit and the noise spectrum of one frame, from the half templates.

    Within a block the even and odd half templates show the same specimen, so their difference
    (after matching their mean beam current) is noise: its power spectrum gives the noise
    spectrum, its local power the noise variance, fitted as a linear function of the intensity
    (counting noise) and smoothed. Across blocks, variance beyond that noise is change of the
    spectrum, its local power the noise variance, fitted as a linear function of the intensity
    (counting noise) and smoothed. Across the runs of frames (``run_means`` of ``run_n`` frames),
    variance beyond that noise is change of the specimen.
    Weight = taper / (noise variance + ``_CHANGE_PENALTY`` * change variance).
    """
    from scipy import ndimage

    shape = templates[0].shape
    n_blocks = len(templates) // 2
    diffs, scale, means = [], [], []
    for j in range(n_blocks):
        e, o = templates[2 * j].astype(np.float64), templates[2 * j + 1].astype(np.float64)
        oc = o - o.mean()
        gain = float(((e - e.mean()) * oc).sum()) / (float((oc * oc).sum()) or 1.0)
        diffs.append(e - e.mean() - gain * oc)
        scale.append(1.0 / n_in[2 * j] + 1.0 / n_in[2 * j + 1])
        means.append((n_in[2 * j] * e + n_in[2 * j + 1] * o) / (n_in[2 * j] + n_in[2 * j + 1]))
    diffs, scale = np.asarray(diffs), np.asarray(scale)
    spec = sfft.rfft2(diffs, workers=1)
    noise_psd = np.mean([reg.radial_power(sp, shape) / sc for sp, sc in zip(spec, scale)], axis=0)
    within = np.mean(diffs ** 2 / scale[:, None, None], axis=0)            # one frame's noise variance
    mu = np.mean(means, axis=0)
    # Counting noise: variance linear in the intensity; fitted on intensity quantiles, robustly.
    qs = np.quantile(mu, np.linspace(0.0, 1.0, 21))
    xb, yb = [], []
    for lo, hi in zip(qs[:-1], qs[1:]):
        sel = (mu >= lo) & (mu <= hi)
        if sel.any():
            xb.append(float(np.median(mu[sel])))
            yb.append(float(np.mean(within[sel])))
    smooth = ndimage.gaussian_filter(within, 3.0)
    var = smooth
    if len(xb) >= 2 and np.ptp(xb) > 0:
        slope, icpt = np.polyfit(xb, yb, 1)
        if slope > 0:
            var = slope * ndimage.gaussian_filter(mu, 2.0) + icpt
    var = np.maximum(var, 0.05 * float(np.median(smooth)) + 1e-12)
    if len(run_means) >= 3:
        change = np.var(run_means, axis=0, ddof=1) - var * float(np.mean(1.0 / np.asarray(run_n, float)))
        change = np.maximum(ndimage.gaussian_filter(change, 3.0), 0.0)
    else:
        change = np.zeros(shape)
    taper = np.outer(_tukey(shape[0], _FINE_TAPER), _tukey(shape[1], _FINE_TAPER))
    w = np.nan_to_num(taper / (var + _CHANGE_PENALTY * change), nan=0.0, posinf=0.0, neginf=0.0)
    if not w.max() > 0:
        w = taper
    return w / w.max(), np.nan_to_num(noise_psd, nan=0.0, posinf=0.0)


def _tukey(n: int, alpha: float) -> np.ndarray:
    x = (np.arange(n) + 0.5) / n
    w = np.ones(n)
    edge = alpha / 2
    lo, hi = x < edge, x > 1 - edge
    w[lo] = 0.5 * (1 - np.cos(np.pi * x[lo] / edge))
    w[hi] = 0.5 * (1 - np.cos(np.pi * (1 - x[hi]) / edge))
    return w


def _coarse_window(shape, roi_box, bin_factor):
    """Tukey window over the frame, or over the ROI grown by a quarter of its size on each side."""
    if roi_box is None:
        return reg.window_2d(shape, kind="tukey", alpha=_COARSE_TUKEY)
    y0, y1, x0, x1 = (v // bin_factor for v in roi_box)
    gy, gx = (y1 - y0) // 4, (x1 - x0) // 4
    y0, y1 = max(0, y0 - gy), min(shape[0], y1 + gy)
    x0, x1 = max(0, x0 - gx), min(shape[1], x1 + gx)
    w = np.zeros(shape, dtype=np.float32)
    w[y0:y1, x0:x1] = reg.window_2d((y1 - y0, x1 - x0), kind="tukey", alpha=_COARSE_TUKEY)
    return w


def _check_roi(roi, rows, cols):
    if roi is None:
        return None
    try:
        x, y, w, h = (round(float(v)) for v in roi)
    except (TypeError, ValueError):
        raise ParameterError(f"roi must be (x, y, w, h) in pixels, got {roi!r}") from None
    if w < _MIN_FOV_PX or h < _MIN_FOV_PX:
        raise ParameterError(f"roi must be at least {_MIN_FOV_PX}x{_MIN_FOV_PX} px, got {w}x{h}")
    if x < 0 or y < 0 or x + w > cols or y + h > rows:
        raise ParameterError(f"roi (x={x}, y={y}, w={w}, h={h}) lies outside the {cols}x{rows} px frame")
    return y, y + h, x, x + w


def _chunk_size(movie: Movie, n: int, chunk_frames: int | None, memory_budget_bytes: int | None = None) -> int:
    if chunk_frames is not None:
        if int(chunk_frames) < 1:
            raise ParameterError(f"chunk_frames must be >= 1, got {chunk_frames}")
        return int(chunk_frames)
    # Independent of the executor so that results never depend on the number of workers.
    # The registration's temporaries (spectra, cross-power, windowed copies) are about 3x what
    # chunk_frames_for allows per frame, hence the budget divided by 3.
    budget = None if memory_budget_bytes is None else max(1, int(memory_budget_bytes) // 3)
    target = min(_DEFAULT_CHUNK, chunk_frames_for(movie, budget, in_flight=4, max_frames=_DEFAULT_CHUNK))
    n_chunks = max(1, math.ceil(n / max(target, 2)))
    return max(2, math.ceil(n / n_chunks))


def _mean_reference(movie: Movie, k: int):
    """Aligned mean of the first ``k`` frames (lower noise than frame 0), in frame-0 coordinates."""
    frames = movie.read(0, k)
    if k < 2:
        return frames[0]
    w = reg.window_2d(frames.shape[1:], kind="tukey", alpha=_COARSE_TUKEY)
    spec = reg.frame_spectra(frames, window=w)
    s, _ = reg.register_spectra(spec[1:], spec[:-1], shape=frames.shape[1:], **_COARSE)
    cum = np.vstack([np.zeros((1, 2)), np.cumsum(s, axis=0)])
    aligned = reg.shift_frames(frames, -cum, order=1, fill_value=np.nan)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(aligned, axis=0)
    return np.nan_to_num(mean, nan=float(np.nanmean(frames[0]))).astype(np.float32)


# -- aligned view ------------------------------------------------------------------------------
class AlignedFrames:
    """Lazy frames of a movie shifted onto frame 0 and cropped; shifts on read.

    Indexing along the first axis (int or slice) returns float32 arrays. Picklable (the source
    movie pickles by path).
    """

    def __init__(self, movie: Movie, dy_px, dx_px, crop: tuple[int, int, int, int], order: int | str = 1):
        self.movie = movie
        self.dy_px = np.asarray(dy_px, dtype=np.float64)
        self.dx_px = np.asarray(dx_px, dtype=np.float64)
        self.crop = tuple(int(v) for v in crop)
        self.order = order
        y0, y1, x0, x1 = self.crop
        self.shape = (movie.n_frames, y1 - y0, x1 - x0)
        self.dtype = np.dtype(np.float32)
        self.ndim = 3

    def __len__(self):
        return self.shape[0]

    def _read(self, a: int, b: int) -> np.ndarray:
        block = self.movie.read(a, b)
        sh = -np.stack([self.dy_px[a:b], self.dx_px[a:b]], axis=1)
        out = reg.shift_frames(block, sh, order=self.order, fill_value=0.0, out=block.copy())
        y0, y1, x0, x1 = self.crop
        return np.ascontiguousarray(out[:, y0:y1, x0:x1])

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"frame {key} outside 0:{n}")
            out = self._read(i, i + 1)[0]
        elif isinstance(key, slice):
            a, b, step = key.indices(n)
            if step == 1:
                out = self._read(a, b) if b > a else np.empty((0,) + self.shape[1:], np.float32)
            else:
                idx = range(a, b, step)
                out = np.stack([self._read(i, i + 1)[0] for i in idx]) if len(idx) else \
                    np.empty((0,) + self.shape[1:], np.float32)
        else:
            idx = np.arange(n)[key]
            out = np.stack([self._read(int(i), int(i) + 1)[0] for i in np.atleast_1d(idx)])
        return out[(slice(None),) + rest] if rest and out.ndim == 3 else (out[rest] if rest else out)

    def __array__(self, dtype=None, copy=None):
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)


class _ReopenAligned:
    def __init__(self, movie, dy, dx, crop, order):
        self.args = (movie, dy, dx, crop, order)

    def __call__(self):
        movie, dy, dx, crop, order = self.args
        return _make_aligned(movie, dy, dx, crop, order)


def _make_aligned(movie, dy, dx, crop, order):
    frames = AlignedFrames(movie, dy, dx, crop, order)
    meta = dict(movie.original_metadata)
    y0, y1, x0, x1 = crop
    meta["temtrack_alignment"] = {"crop_y0_y1_x0_x1": [y0, y1, x0, x1], "interpolation": str(order),
                                  "source_format": movie.format}
    return Movie(frames, None if movie.times_s is None else movie.times_s.copy(), movie.pixel_size,
                 movie.pixel_unit, movie.path, movie.format, meta, list(movie.problems), movie.time_source,
                 reopen=_ReopenAligned(movie, dy, dx, crop, order))


def aligned_movie(movie: Movie, drift: DriftResult, *, crop: bool = True, order: int | str = 1) -> Movie:
    """A lazy view of ``movie`` with every frame shifted back onto frame 0.

    Parameters
    ----------
    movie : Movie
    drift : DriftResult
        From :func:`estimate_drift` on this movie.
    crop : bool
        Crop to the field of view common to all frames (:meth:`DriftResult.common_fov`); otherwise
        keep the full frame with zeros where a frame has no data.
    order : {1, 3, 'fourier'}
        Interpolation, see :func:`temtrack.frame.registration.shift_frames`.

    Returns
    -------
    Movie
        Same times, calibration and path; frame (y, x) of the view shows what frame 0 shows at
        (y + y0, x + x0) where (y0, x0) is the crop origin (recorded in
        ``original_metadata['temtrack_alignment']``).
    """
    if not isinstance(movie, Movie):
        raise ParameterError(f"aligned_movie needs a temtrack Movie, got {type(movie).__name__}")
    if not isinstance(drift, DriftResult):
        raise ParameterError(f"aligned_movie needs a DriftResult, got {type(drift).__name__}")
    if drift.n_frames != movie.n_frames:
        raise ParameterError(f"drift has {drift.n_frames} frames, the movie {movie.n_frames}")
    if order not in (1, 3, "fourier"):
        raise ParameterError(f"order must be 1, 3 or 'fourier', got {order!r}")
    rows, cols = movie.frame_shape
    box = drift.common_fov((rows, cols)) if crop else (0, rows, 0, cols)
    return _make_aligned(movie, drift.dy_px.copy(), drift.dx_px.copy(), box, order)
