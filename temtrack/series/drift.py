"""Specimen drift over a movie: robust sub-pixel shifts per frame, and an aligned view of the movie.

Why hand-written: the usual recipes (register every frame to frame 0 with skimage or
``cv2.phaseCorrelate``, or accumulate neighbour shifts) each fail on in situ movies. A fixed
reference decorrelates as the specimen reacts, cumulative neighbour shifts random-walk away (error
growing like the square root of the number of frames), and at 8-40 e-/px/frame a single frame pair
carries a 0.1-0.3 px error. Here two passes over the movie, each one :func:`map_frames` call:

1. *coarse*: every frame is registered to the reference and to its predecessor (partially whitened,
   band-passed cross-correlation, :mod:`temtrack.frame.registration`). The pairwise shifts form a
   graph; a robust (iteratively reweighted, Huber) least-squares solve reconciles them, so neither a
   failed reference registration nor the random walk of the chain survives, while sudden jumps of the
   stage, which the neighbour pairs measure directly, are kept.
2. *fine*: the frames are aligned with the coarse shifts, each chunk of frames is averaged into a
   template of high signal-to-noise ratio (each frame is compared with the template *without itself*,
   so its own noise cannot pull the estimate), the residual shift of every frame is measured against
   that template, and the chunk templates are chained to each other by a second small least-squares
   solve. Templates follow the slow contrast change of the reaction; their average over tens of frames
   removes the noise that limits pairwise registration.

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

from temtrack.errors import AnalysisError, ParameterError
from temtrack.frame import registration as reg
from temtrack.io.movie import Movie
from temtrack.pipeline.executor import chunk_frames_for, map_frames

__all__ = ["AlignedFrames", "DriftResult", "aligned_movie", "estimate_drift"]

# Registration settings measured on synthetic nanowire movies at 8-40 e-/px/frame (see tests/drift).
_COARSE = {"whiten": 0.6, "smooth_px": 1.5, "highpass_px": 40.0, "subpixel": "gaussian"}
_COARSE_TUKEY = 0.5
_FINE = {"whiten": 0.3, "smooth_px": 1.0, "highpass_px": 40.0, "subpixel": "gaussian"}
_FINE_TUKEY = 0.1
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
        Correlation peak height over the surface's standard deviation for the final measurement of
        each frame (NaN for frames measured only through the graph); below about 5 the frame's shift
        is unreliable.
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
    """Sum ``factor`` x ``factor`` pixel blocks (the coarse pass needs ~0.3 px, not full resolution)."""
    if factor == 1:
        return frames
    n, rows, cols = frames.shape
    h, w = rows // factor, cols // factor
    out = np.zeros((n, h, w), dtype=np.float32)
    for a in range(factor):
        for b in range(factor):
            out += frames[:, a:h * factor:factor, b:w * factor:factor]
    return out


def _coarse_chunk(block: np.ndarray, start: int, *, ref_spectrum: np.ndarray, window: np.ndarray,
                  max_shift_px: float | None, bin_factor: int = 1) -> dict:
    """Shift of each owned frame to the reference and to its predecessor (``overlap=1``)."""
    lead = 1 if start > 0 else 0
    block = _bin(block, bin_factor)
    if max_shift_px is not None:
        max_shift_px = max_shift_px / bin_factor
    shape = block.shape[1:]
    spec = reg.frame_spectra(block, window=window)
    own = spec[lead:]
    n = own.shape[0]
    r, rq = reg.register_spectra(own, ref_spectrum, shape=shape, max_shift_px=max_shift_px, **_COARSE)
    nb = np.full((n, 2), np.nan)
    nq = np.full(n, np.nan)
    if spec.shape[0] >= 2:
        s, q = reg.register_spectra(spec[1:], spec[:-1], shape=shape, max_shift_px=max_shift_px, **_COARSE)
        nb[n - s.shape[0]:] = s
        nq[n - s.shape[0]:] = q
    return {"ref_shift": r * bin_factor, "ref_quality": rq, "nb_shift": nb * bin_factor, "nb_quality": nq}


def _fine_chunk(block: np.ndarray, start: int, *, coarse: np.ndarray, crop: tuple, alpha: float) -> dict:
    """Align the chunk with the coarse shifts, average it, and measure each frame against the rest."""
    n = block.shape[0]
    y0, y1, x0, x1 = crop
    aligned = reg.shift_frames(block, -coarse[start:start + n], order=1, fill_value=0.0)
    aligned = np.ascontiguousarray(aligned[:, y0:y1, x0:x1])
    template = aligned.mean(axis=0, dtype=np.float64).astype(np.float32)[None]
    if n < 2:
        return {"residual": np.zeros((n, 2)), "quality": np.full(n, np.nan), "template": template}
    shape = _fast_shape(aligned.shape[1:])
    spec = reg.frame_spectra(aligned, window=reg.window_2d(aligned.shape[1:], kind="tukey", alpha=alpha),
                             fft_shape=shape)
    total = spec.sum(axis=0)
    # Leave-one-out templates: the frame's own noise must not correlate with its reference.
    refs = (total[None] - spec) / np.float32(n - 1)
    res, q = reg.register_spectra(spec, refs, shape=shape, **_FINE)
    return {"residual": res, "quality": q, "template": template}


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
    out = []
    for k in range(steps.shape[0]):
        lo, hi = max(0, k - half_window), min(steps.shape[0], k + half_window + 1)
        local = np.median(steps[lo:hi], axis=0)
        if np.hypot(*(steps[k] - local)) > threshold_px:
            out.append(k + 1)
    return out


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
        Kept for API compatibility with upsampled-DFT registration; the sub-pixel peak is located
        exactly (Newton steps on the interpolated correlation), so any value >= 1 gives the same
        result.
    max_shift_px : float, optional
        Largest shift between any two frames searched (default: half the frame).
    executor : LocalExecutor or DaskExecutor, optional
    progress : callable, optional
        ``progress(done, total)``; ``total`` is twice the number of frames (two passes).
    cancel : threading.Event, optional
    chunk_frames : int, optional
        Frames per chunk (default about 64). Results depend on it (it sets the template length of
        the fine pass) but never on the executor or its number of workers.
    refine : bool
        Run the fine (template) pass; without it the coarse graph solution is returned.
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

    def prog(offset):
        if progress is None:
            return None
        return lambda done, _t: progress(offset + done, total)

    # -- pass 1: coarse, reference + neighbours ------------------------------------------------
    bin_factor = 2 if min(rows, cols) >= 128 else 1
    window = _coarse_window((rows // bin_factor, cols // bin_factor), roi_box, bin_factor)
    if reference == "mean":
        ref_frame = _mean_reference(movie, min(n, 16))
    else:
        k = 0 if reference == "first" else reference
        ref_frame = movie.frame(k)
    ref_spec = reg.frame_spectra(_bin(ref_frame[None], bin_factor)[0], window=window)
    func = functools.partial(_coarse_chunk, ref_spectrum=ref_spec, window=window, max_shift_px=max_shift_px,
                             bin_factor=bin_factor)
    out = map_frames(movie, func, executor=executor, chunk_frames=chunk, overlap=1, progress=prog(0),
                     cancel=cancel)

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
    coarse = pos[:n]
    graph_rms = float(np.sqrt(np.mean(np.sum(resid ** 2, axis=1)))) if resid.size else 0.0
    quality = np.full(n, np.nan)
    quality[ref_ok] = out["ref_quality"][ref_ok]
    method = f"graph of neighbour and reference ({reference}) registrations, robust least squares"

    # -- pass 2: fine, leave-one-out chunk templates --------------------------------------------
    final = coarse
    if refine:
        y0, y1, x0, x1 = _common_fov(coarse[:, 0], coarse[:, 1], (rows, cols))
        # One pixel of margin against bilinear reads of the border.
        y0, y1, x0, x1 = y0 + 1, y1 - 1, x0 + 1, x1 - 1
        if roi_box is not None:
            ry0, ry1, rx0, rx1 = roi_box
            y0, y1, x0, x1 = max(y0, ry0), min(y1, ry1), max(x0, rx0), min(x1, rx1)
        if y1 - y0 >= _MIN_FOV_PX and x1 - x0 >= _MIN_FOV_PX:
            func = functools.partial(_fine_chunk, coarse=coarse, crop=(y0, y1, x0, x1), alpha=_FINE_TUKEY)
            fine = map_frames(movie, func, executor=executor, chunk_frames=chunk, progress=prog(n),
                              cancel=cancel)
            tau = _chain_templates(fine["template"])
            chunk_of = np.minimum(idx // chunk, tau.shape[0] - 1)
            final = coarse + fine["residual"] + tau[chunk_of]
            final = final - final[0]
            quality = fine["quality"]
            method = ("coarse: " + method + "; fine: leave-one-out templates of "
                      f"{chunk} frames chained by least squares")
            if roi_box is not None:
                method += " on the ROI"
        else:
            where = "the ROI within the common field of view" if roi_box is not None else "the common field of view"
            method += f"; fine pass skipped ({where} is smaller than {_MIN_FOV_PX} px)"
            if progress is not None:
                progress(total, total)
    jumps = _detect_jumps(final, jump_threshold_px)
    return DriftResult(final[:, 0].copy(), final[:, 1].copy(), quality, jumps, method, reference,
                       None if roi is None else tuple(int(v) for v in roi), graph_rms)


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


def _fast_shape(shape) -> tuple[int, int]:
    """Zero-padded FFT shape: sizes with large prime factors are many times slower."""
    from scipy.fft import next_fast_len
    return next_fast_len(int(shape[0]), real=True), next_fast_len(int(shape[1]), real=True)


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


def _chain_templates(templates: np.ndarray) -> np.ndarray:
    """Positions of the chunk templates relative to the first, from pairs up to two chunks apart."""
    c = templates.shape[0]
    if c < 2:
        return np.zeros((c, 2))
    shape = _fast_shape(templates.shape[1:])
    spec = reg.frame_spectra(templates, window=reg.window_2d(templates.shape[1:], kind="tukey", alpha=_FINE_TUKEY),
                             fft_shape=shape)
    ei, ej, meas = [], [], []
    for lag in (1, 2):
        if c > lag:
            s, _ = reg.register_spectra(spec[lag:], spec[:-lag], shape=shape, **_FINE)
            ei.append(np.arange(c - lag))
            ej.append(np.arange(lag, c))
            meas.append(s)
    ei, ej, meas = np.concatenate(ei), np.concatenate(ej), np.concatenate(meas)
    pos, _, _ = _solve_graph(c, ei, ej, meas, np.zeros(ei.size, int))
    return pos


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
