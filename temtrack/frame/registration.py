"""Sub-pixel translation between frames by (whitened) cross-correlation, batched over frames.

Why hand-written rather than ``skimage.registration.phase_cross_correlation`` or
``cv2.phaseCorrelate``: both register one pair at a time, recompute the reference FFT on every call
and whiten fully (plain phase correlation), which at 8-40 e-/px/frame hands the same weight to the
noise-only high frequencies as to the signal. Here

* spectra are computed once per frame in a batch (``scipy.fft.rfft2`` over (n, rows, cols) with
  ``workers=1``: the executor owns the parallelism) and reused for every pair a frame is part of
  (to the reference and to its neighbour);
* the cross-power spectrum is *partially* whitened (``|R|**whiten``, 1 = phase correlation,
  0 = plain cross-correlation) and multiplied by a Gaussian band-pass, because Poisson noise is white
  and only the low and middle frequencies carry the specimen;
* the sub-pixel peak is the exact maximum of the band-limited interpolated correlation surface,
  found by Newton steps whose gradient and Hessian are evaluated directly from the half spectrum
  (a matrix product per frame, like skimage's local upsampled DFT but with no grid to choose), or by
  skimage's local upsampled DFT (``subpixel='dft'``), or by a 3-point Gaussian fit.

For the last, sub-pixel step against a low-noise template (:func:`template_basis`,
:func:`register_to_template`) there is no FFT per frame at all: the template, Wiener-filtered and
shifted by ``delta``, is written as its Taylor series to 4th order, so the weighted least-squares
misfit of a frame at any ``delta`` follows from the frame's projections on 15 derivative images
(one matrix product for a whole batch of frames). The weights live on the template's grid, so a
frame is weighted by where the specimen is, not by where the frame's edge is: a window that moves
with the frame biases a correlation peak wherever strong features cross the window's edge.

Sign convention (shared with :mod:`temtrack.series.drift` and the synthetic truth): the shift of a
frame relative to a reference is ``(dy, dx)`` such that a feature at (y, x) in the reference appears
at (y + dy, x + dx) in the frame.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import fft as sfft

from temtrack.errors import ParameterError

__all__ = [
    "bandpass_weights",
    "frame_spectra",
    "radial_power",
    "reference_spectrum",
    "register_pairs",
    "register_spectra",
    "register_to_reference",
    "register_to_template",
    "shift_frames",
    "template_basis",
    "window_2d",
    "TemplateBasis",
]

_WINDOWS = ("hann", "tukey", "none")
_SUBPIXEL = ("newton", "dft", "gaussian", "none")


# -- windows and filters -----------------------------------------------------------------------
@lru_cache(maxsize=16)
def _window_cached(shape: tuple[int, int], kind: str, alpha: float) -> np.ndarray:
    def one(n):
        # Periodic (sym=False) windows, as scipy.signal.windows defines them; written out to avoid
        # importing scipy.signal (seconds) in every worker.
        x = np.arange(n) / n
        if kind == "hann" or (kind == "tukey" and alpha >= 1.0):
            return 0.5 - 0.5 * np.cos(2 * np.pi * x)
        if kind == "tukey" and alpha > 0 and n > 1:
            w = np.ones(n)
            edge = alpha / 2
            lo = x < edge
            hi = x > 1 - edge
            w[lo] = 0.5 * (1 - np.cos(np.pi * x[lo] / edge))
            w[hi] = 0.5 * (1 - np.cos(np.pi * (1 - x[hi]) / edge))
            return w
        return np.ones(n)

    w = np.outer(one(shape[0]), one(shape[1])).astype(np.float32)
    w.flags.writeable = False
    return w


def window_2d(shape, *, kind: str = "hann", alpha: float = 0.5) -> np.ndarray:
    """Separable apodisation window against the edge discontinuities of the periodic FFT.

    Parameters
    ----------
    shape : (rows, cols)
    kind : {'hann', 'tukey', 'none'}
    alpha : float
        Tapered fraction of the Tukey window (0 = box, 1 = Hann).

    Returns
    -------
    ndarray of float32, shape ``shape`` (read-only, cached)
    """
    shape = _check_shape(shape)
    if kind not in _WINDOWS:
        raise ParameterError(f"window must be one of {_WINDOWS}, got {kind!r}")
    if not (0.0 <= float(alpha) <= 1.0):
        raise ParameterError(f"Tukey alpha must be within [0, 1], got {alpha}")
    return _window_cached(shape, kind, float(alpha) if kind == "tukey" else 0.0)


@lru_cache(maxsize=16)
def _bandpass_cached(shape, smooth_px, highpass_px) -> np.ndarray:
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.rfftfreq(shape[1])[None, :]
    f2 = fy * fy + fx * fx
    w = np.ones((shape[0], shape[1] // 2 + 1))
    if smooth_px > 0:
        # Fourier transform of a Gaussian blur of sigma smooth_px: damps the white Poisson noise.
        w *= np.exp(-2.0 * (math.pi * smooth_px) ** 2 * f2)
    if highpass_px > 0:
        # Removes illumination gradients and the window's own footprint (scales >> highpass_px).
        w *= 1.0 - np.exp(-2.0 * (math.pi * highpass_px) ** 2 * f2)
    else:
        w[0, 0] = 0.0
    w = w.astype(np.float32)
    w.flags.writeable = False
    return w


def bandpass_weights(shape, *, smooth_px: float = 1.0, highpass_px: float = 40.0) -> np.ndarray:
    """Gaussian band-pass weights on the ``rfft2`` grid of a frame of ``shape``.

    Parameters
    ----------
    shape : (rows, cols)
    smooth_px : float
        Real-space sigma (px) of the Gaussian low-pass; 0 disables it.
    highpass_px : float
        Real-space sigma (px) of the Gaussian whose removal makes the high-pass; 0 only removes DC.

    Returns
    -------
    ndarray of float32, shape (rows, cols // 2 + 1) (read-only, cached)
    """
    shape = _check_shape(shape)
    for name, v in (("smooth_px", smooth_px), ("highpass_px", highpass_px)):
        if not (math.isfinite(v) and v >= 0):
            raise ParameterError(f"{name} must be a finite number >= 0, got {v}")
    return _bandpass_cached(shape, float(smooth_px), float(highpass_px))


# -- spectra -----------------------------------------------------------------------------------
def frame_spectra(frames, *, window: str | np.ndarray = "hann", fft_shape=None) -> np.ndarray:
    """Windowed, mean-free ``rfft2`` of a batch of frames.

    Parameters
    ----------
    frames : array_like, shape (n, rows, cols) or (rows, cols)
    window : {'hann', 'tukey', 'none'} or ndarray of shape (rows, cols)
    fft_shape : (rows, cols), optional
        Zero-pad the windowed frames to this shape (e.g. ``scipy.fft.next_fast_len`` sizes: sizes
        with large prime factors are many times slower); pass the same shape to
        :func:`register_spectra`.

    Returns
    -------
    ndarray of complex64, shape (n, fft_rows, fft_cols // 2 + 1) (without the first axis for one
    frame)
    """
    arr = np.asarray(frames, dtype=np.float32)
    single = arr.ndim == 2
    if single:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] < 4 or arr.shape[2] < 4:
        raise ParameterError(f"frames must be (n, rows, cols) with rows, cols >= 4, got shape {arr.shape}")
    w = _resolve_window(window, arr.shape[1:])
    buf = np.empty(arr.shape, dtype=np.float32)
    np.multiply(arr, w, out=buf)
    # Remove the window-weighted mean so the window's own spectrum does not pin the peak at zero.
    mean = buf.sum(axis=(1, 2), dtype=np.float64) / float(w.sum(dtype=np.float64))
    buf -= mean.astype(np.float32)[:, None, None] * w
    if not np.all(np.isfinite(mean)):
        np.nan_to_num(buf, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if fft_shape is not None:
        fft_shape = _check_shape(fft_shape)
        if fft_shape[0] < arr.shape[1] or fft_shape[1] < arr.shape[2]:
            raise ParameterError(f"fft_shape {fft_shape} is smaller than the frames {arr.shape[1:]}")
    spec = sfft.rfft2(buf, s=fft_shape, workers=1, overwrite_x=True)
    spec = spec.astype(np.complex64, copy=False)
    return spec[0] if single else spec


def reference_spectrum(frame, *, window: str | np.ndarray = "hann") -> np.ndarray:
    """Spectrum of the reference frame, computed once and reused for every frame of a movie.

    Parameters
    ----------
    frame : array_like, shape (rows, cols)
    window : {'hann', 'tukey', 'none'} or ndarray

    Returns
    -------
    ndarray of complex64, shape (rows, cols // 2 + 1)
    """
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ParameterError(f"reference frame must be 2D, got shape {frame.shape}")
    return frame_spectra(frame, window=window)


# -- registration ------------------------------------------------------------------------------
def register_spectra(spectra, ref_spectra, *, shape, whiten: float = 0.6, smooth_px: float = 1.0,
                     highpass_px: float = 40.0, subpixel: str = "newton", upsample: int = 20,
                     max_shift_px: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Shift of each frame relative to its reference, from precomputed spectra.

    Parameters
    ----------
    spectra : ndarray of complex, shape (n, rows, cols // 2 + 1)
        :func:`frame_spectra` of the moving frames.
    ref_spectra : ndarray of complex, shape (rows, cols // 2 + 1) or (n, rows, cols // 2 + 1)
        Spectrum of one reference for all frames, or one reference per frame.
    shape : (rows, cols)
        Frame shape (the last axis of an rfft spectrum does not determine it).
    whiten : float
        Exponent ``p`` of the normalisation ``R / |R|**p`` of the cross-power spectrum ``R``:
        1 is phase correlation, 0 plain cross-correlation.
    smooth_px, highpass_px : float
        Band-pass, see :func:`bandpass_weights`.
    subpixel : {'newton', 'dft', 'gaussian', 'none'}
        Peak refinement: exact maximum of the interpolated correlation (``'newton'``), local
        upsampled DFT on a 1/``upsample`` px grid (``'dft'``), 3-point Gaussian fit, or integer.
    upsample : int
        Grid factor of ``subpixel='dft'``.
    max_shift_px : float, optional
        Largest shift searched (default: anything up to half the frame).

    Returns
    -------
    shifts : ndarray of float64, shape (n, 2)
        (dy, dx) per frame.
    quality : ndarray of float64, shape (n,)
        Peak height over the standard deviation of the correlation surface (about 4 or less means
        the peak is not distinguishable from noise).
    """
    shape = _check_shape(shape)
    spectra = np.asarray(spectra)
    if spectra.ndim == 2:
        spectra = spectra[None]
    half = (shape[0], shape[1] // 2 + 1)
    if spectra.shape[1:] != half:
        raise ParameterError(f"spectra of shape {spectra.shape[1:]} do not belong to frames of shape {shape}")
    ref = np.asarray(ref_spectra)
    if ref.shape[-2:] != half or ref.ndim not in (2, 3) or (ref.ndim == 3 and ref.shape[0] != spectra.shape[0]):
        raise ParameterError(f"reference spectrum of shape {ref.shape} does not match spectra {spectra.shape}")
    if not (0.0 <= float(whiten) <= 1.0):
        raise ParameterError(f"whiten must be within [0, 1], got {whiten}")
    if subpixel not in _SUBPIXEL:
        raise ParameterError(f"subpixel must be one of {_SUBPIXEL}, got {subpixel!r}")
    if int(upsample) < 1:
        raise ParameterError(f"upsample must be >= 1, got {upsample}")
    if max_shift_px is not None and not (max_shift_px > 0):
        raise ParameterError(f"max_shift_px must be positive, got {max_shift_px}")
    n = spectra.shape[0]
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0)

    cross = np.multiply(spectra, np.conj(ref), dtype=np.complex64)
    if whiten > 0:
        mag = np.abs(cross)
        # A floor relative to the mean magnitude keeps empty frequencies from blowing up.
        floor = 1e-6 * mag.mean(axis=(1, 2), keepdims=True) + np.float32(1e-30)
        mag += floor
        if whiten == 0.5:
            np.sqrt(mag, out=mag)
        elif whiten != 1.0:
            np.power(mag, np.float32(whiten), out=mag)
        # One pass: cross *= bandpass / |cross|**whiten.
        np.divide(bandpass_weights(shape, smooth_px=smooth_px, highpass_px=highpass_px), mag, out=mag)
        cross *= mag
    else:
        cross *= bandpass_weights(shape, smooth_px=smooth_px, highpass_px=highpass_px)
    corr = sfft.irfft2(cross, s=shape, workers=1)
    corr = corr.astype(np.float32, copy=False)

    flat = corr.reshape(n, -1)
    # The quality score only needs the surface's spread: a fixed 1-in-7 subsample is plenty.
    sample = flat[:, ::7]
    mean = sample.mean(axis=1, dtype=np.float64)
    std = sample.std(axis=1, dtype=np.float64)
    if max_shift_px is not None:
        flat[:, ~_shift_mask(shape, float(max_shift_px)).ravel()] = -np.inf
    idx = flat.argmax(axis=1)
    py, px = np.divmod(idx, shape[1])
    peak = flat[np.arange(n), idx].astype(np.float64)
    quality = np.where(std > 0, (peak - mean) / np.where(std > 0, std, 1.0), 0.0)

    # Integer peak to signed shift.
    iy = np.where(py > shape[0] // 2, py - shape[0], py).astype(np.float64)
    ix = np.where(px > shape[1] // 2, px - shape[1], px).astype(np.float64)
    shifts = np.stack([iy, ix], axis=1)
    if subpixel == "none":
        return shifts, quality
    shifts += _gaussian_offsets(corr, py, px)
    if subpixel == "newton":
        shifts = _newton_refine(cross, shape, shifts)
    elif subpixel == "dft":
        shifts = _dft_refine(cross, shape, shifts, int(upsample))
    return shifts, quality


def register_to_reference(frames, ref_spectrum, *, window: str | np.ndarray = "hann",
                          whiten: float = 0.6, smooth_px: float = 1.0, highpass_px: float = 40.0,
                          subpixel: str = "newton", upsample: int = 20,
                          max_shift_px: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Shift (dy, dx) of each frame relative to a reference given by its spectrum.

    Parameters
    ----------
    frames : array_like, shape (n, rows, cols) or (rows, cols)
    ref_spectrum : ndarray
        From :func:`reference_spectrum` with the same ``window``.
    window, whiten, smooth_px, highpass_px, subpixel, upsample, max_shift_px
        See :func:`frame_spectra` and :func:`register_spectra`.

    Returns
    -------
    shifts : ndarray of float64, shape (n, 2)
        A feature at (y, x) in the reference is at (y + dy, x + dx) in frame i.
    peak_quality : ndarray of float64, shape (n,)

    Examples
    --------
    >>> ref = reference_spectrum(movie[0])                              # doctest: +SKIP
    >>> shifts, quality = register_to_reference(movie[1:50], ref)       # doctest: +SKIP
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3:
        raise ParameterError(f"frames must be (n, rows, cols), got shape {frames.shape}")
    spec = frame_spectra(frames, window=window)
    return register_spectra(spec, ref_spectrum, shape=frames.shape[1:], whiten=whiten,
                            smooth_px=smooth_px, highpass_px=highpass_px, subpixel=subpixel,
                            upsample=upsample, max_shift_px=max_shift_px)


def register_pairs(frames, *, window: str | np.ndarray = "hann", whiten: float = 0.6,
                   smooth_px: float = 1.0, highpass_px: float = 40.0, subpixel: str = "newton",
                   upsample: int = 20, max_shift_px: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Shift of each frame relative to the frame before it.

    Parameters
    ----------
    frames : array_like, shape (n, rows, cols), n >= 2
    window, whiten, smooth_px, highpass_px, subpixel, upsample, max_shift_px
        See :func:`register_spectra`.

    Returns
    -------
    shifts : ndarray of float64, shape (n - 1, 2)
        Row ``j`` is the shift of frame ``j + 1`` relative to frame ``j``.
    peak_quality : ndarray of float64, shape (n - 1,)
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ParameterError(f"register_pairs needs at least two frames (n, rows, cols), got shape {frames.shape}")
    spec = frame_spectra(frames, window=window)
    return register_spectra(spec[1:], spec[:-1], shape=frames.shape[1:], whiten=whiten,
                            smooth_px=smooth_px, highpass_px=highpass_px, subpixel=subpixel,
                            upsample=upsample, max_shift_px=max_shift_px)


# -- Taylor-expanded template (least-squares fine registration) -----------------------------
_TAYLOR_ORDER = 4
# Multi-indices (ay, ax) of the derivative images, all orders 0..4.
_ALPHAS = tuple((ay, order - ay) for order in range(_TAYLOR_ORDER + 1) for ay in range(order + 1))
_RADIAL_BINS = 48


class TemplateBasis:
    """A template prepared for :func:`register_to_template` (see :func:`template_basis`).

    Attributes
    ----------
    shape : (rows, cols)
        Grid of the template and of the frames registered to it.
    weighted : ndarray of float32, shape (15, rows * cols)
        ``weights * (d^a T - weighted mean)`` for the derivative orders ``a`` of the Taylor series.
    gram : ndarray of float64, shape (15, 15)
        Weighted inner products of the mean-free derivative images.
    """

    __slots__ = ("shape", "weighted", "gram")

    def __init__(self, shape, weighted, gram):
        self.shape = (int(shape[0]), int(shape[1]))
        self.weighted = weighted
        self.gram = gram


def radial_power(spectra, shape) -> np.ndarray:
    """Mean ``|spectrum|**2`` per pixel of the frame, in radial frequency bins.

    Parameters
    ----------
    spectra : ndarray of complex, shape (..., rows, cols // 2 + 1)
        ``rfft2`` of frames of ``shape`` (averaged over the leading axes).
    shape : (rows, cols)

    Returns
    -------
    ndarray of float64, shape (48,)
        Power spectral density per pixel (``sigma**2`` for white noise of variance ``sigma**2``)
        in bins of 1/96 cycle/px from 0 to 0.5 cycle/px (the corners beyond go to the last bin).
    """
    shape = _check_shape(shape)
    spectra = np.asarray(spectra)
    power = (spectra.real ** 2 + spectra.imag ** 2).reshape(-1, *spectra.shape[-2:]).mean(axis=0)
    bins, counts = _radial_bins(shape)
    return np.bincount(bins.ravel(), (power * _half_weights(shape[1])[None]).ravel(), _RADIAL_BINS) \
        / counts / (shape[0] * shape[1])


@lru_cache(maxsize=8)
def _radial_bins(shape):
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.rfftfreq(shape[1])[None, :]
    bins = np.minimum((np.sqrt(fy * fy + fx * fx) * (2 * _RADIAL_BINS)).astype(np.intp), _RADIAL_BINS - 1)
    counts = np.bincount(bins.ravel(), np.broadcast_to(_half_weights(shape[1])[None], bins.shape).ravel(),
                         _RADIAL_BINS)
    bins.flags.writeable = False
    return bins, np.maximum(counts, 1.0)


def template_basis(template, weights, *, noise_psd, n_frames: int) -> TemplateBasis:
    """Prepare a template (the mean of ``n_frames`` aligned frames) for least-squares registration.

    The template is extended by mirroring (so its FFT sees no edge discontinuity), Wiener-filtered
    against the noise it keeps from its frames (``noise_psd / n_frames``), and differentiated to
    4th order in Fourier space.

    Parameters
    ----------
    template : array_like, shape (rows, cols)
    weights : array_like, shape (rows, cols)
        Non-negative weight of each template pixel in the misfit (e.g. a taper times the inverse
        noise variance, zero on parts of the specimen that change).
    noise_psd : array_like, shape (48,)
        Noise power per pixel of *one* frame in radial frequency bins (:func:`radial_power` of
        noise-only frames).
    n_frames : int
        Frames averaged into the template.

    Returns
    -------
    TemplateBasis
    """
    t = np.asarray(template, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if t.ndim != 2 or t.shape != w.shape:
        raise ParameterError(f"template {t.shape} and weights {w.shape} must be 2D arrays of the same shape")
    rows, cols = _check_shape(t.shape)
    noise = np.asarray(noise_psd, dtype=np.float64)
    if noise.shape != (_RADIAL_BINS,):
        raise ParameterError(f"noise_psd must have {_RADIAL_BINS} radial bins, got shape {noise.shape}")
    if int(n_frames) < 1:
        raise ParameterError(f"n_frames must be >= 1, got {n_frames}")
    wsum = float(w.sum())
    if not (wsum > 0) or np.any(w < 0):
        raise ParameterError("weights must be non-negative with a positive sum")
    # The cosine transform is the FFT of the mirror-extended template: no edge discontinuity, so the
    # derivatives carry no ringing from the frame's border, at the cost of one rows x cols transform.
    # Sizes with large prime factors transform up to 5x slower: extend by mirroring (what the
    # cosine transform assumes anyway) to a 5-smooth size, and crop the derivatives back.
    out_rows, out_cols = rows, cols
    rows, cols = _smooth_up(rows), _smooth_up(cols)
    t = np.pad(t, ((0, rows - out_rows), (0, cols - out_cols)), mode="symmetric")
    coef = sfft.dctn(t.astype(np.float32), type=2, workers=1)
    fy = np.arange(rows) / (2.0 * rows)
    fx = np.arange(cols) / (2.0 * cols)
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    bins = np.minimum((f * (2 * _RADIAL_BINS)).astype(np.intp), _RADIAL_BINS - 1)
    counts = np.maximum(np.bincount(bins.ravel(), minlength=_RADIAL_BINS), 1)
    power = np.bincount(bins.ravel(), np.square(coef).ravel(), _RADIAL_BINS) / counts / (4.0 * rows * cols)
    noise_t = np.maximum(noise, 0.0) / int(n_frames)
    signal = np.maximum(power - noise_t, 0.0)
    wiener = signal / np.maximum(signal + noise_t, 1e-300)
    coef *= wiener[bins].astype(np.float32)
    # d^m/dx^m cos(th (x + 1/2)) = (-1)^(m/2) th^m cos(...) for even m, (-1)^((m+1)/2) th^m sin(...)
    # for odd m: a cosine series (inverse DCT) or a sine series shifted by one index (inverse DST).
    thy = (math.pi * np.arange(rows) / rows).astype(np.float32)
    thx = (math.pi * np.arange(cols) / cols).astype(np.float32)
    stack = np.empty((len(_ALPHAS), rows, cols), dtype=np.float32)
    for a, (ay, ax) in enumerate(_ALPHAS):
        gy = thy ** ay * np.float32((-1) ** ((ay + 1) // 2))
        gx = thx ** ax * np.float32((-1) ** ((ax + 1) // 2))
        stack[a] = coef * gy[:, None] * gx[None, :]
    odd_y = np.array([ay % 2 == 1 for ay, _ in _ALPHAS])
    odd_x = np.array([ax % 2 == 1 for _, ax in _ALPHAS])
    for axis, odd in ((1, odd_y), (2, odd_x)):
        if (~odd).any():
            stack[~odd] = sfft.idct(stack[~odd], type=2, axis=axis, workers=1)
        if odd.any():
            part = np.roll(stack[odd], -1, axis=axis)
            idx = [slice(None)] * 3
            idx[axis] = -1
            part[tuple(idx)] = 0.0
            stack[odd] = sfft.idst(part, type=2, axis=axis, workers=1)
    deriv = np.ascontiguousarray(stack[:, :out_rows, :out_cols]).reshape(len(_ALPHAS), -1)
    rows, cols = out_rows, out_cols
    wf = w.ravel().astype(np.float32)
    deriv -= ((deriv @ wf) / np.float32(wsum))[:, None]
    weighted = deriv * wf[None]
    gram = (weighted @ deriv.T).astype(np.float64)
    return TemplateBasis((rows, cols), weighted, gram)


_AY = np.array([ay for ay, _ in _ALPHAS])
_AX = np.array([ax for _, ax in _ALPHAS])
_FACT = np.array([math.factorial(ay) * math.factorial(ax) for ay, ax in _ALPHAS], dtype=np.float64)


def _smooth_up(n: int) -> int:
    """Smallest size >= n with no prime factor above 5."""
    m = int(n)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _taylor_coeffs(d: np.ndarray) -> np.ndarray:
    """Coefficients of ``T(x - d) = sum_a c_a(d) d^a T(x)``, shape (m, 15)."""
    return (-d[:, 0:1]) ** _AY * (-d[:, 1:2]) ** _AX / _FACT


def _taylor_score(d, proj, gram):
    """Weighted normalised correlation of each frame with the template shifted by d (up to a factor).

    ``d`` is (k, m, 2): k trial shifts for each of the m frames.
    """
    k, m = d.shape[:2]
    c = _taylor_coeffs(d.reshape(-1, 2)).reshape(k, m, -1)
    u = np.einsum("kma,ma->km", c, proj)
    v = np.einsum("kma,ab,kmb->km", c, gram, c)
    return u / np.sqrt(np.maximum(v, 1e-300))


def register_to_template(frames, basis: TemplateBasis, *, iterations: int = 8,
                         max_shift_px: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel shift of frames against a template prepared by :func:`template_basis`.

    Each frame ``A`` is fitted as ``gain * T(x - d) + offset`` by weighted least squares
    (equivalently, ``d`` maximises the weighted normalised correlation); gain and offset absorb
    beam-current flicker. The frames must already be aligned with the template to better than
    about a pixel (integer pre-alignment: crop each frame at its rounded shift).

    Parameters
    ----------
    frames : array_like, shape (m, rows, cols) on the template's grid
    basis : TemplateBasis
    iterations : int
        Newton steps (each at most a quarter pixel).
    max_shift_px : float
        Shifts beyond this are reported as failures.

    Returns
    -------
    shifts : ndarray of float64, shape (m, 2)
        (dy, dx): a feature at (y, x) in the template is at (y + dy, x + dx) in the frame.
    ok : ndarray of bool, shape (m,)
        False where the fit did not converge to a maximum within ``max_shift_px``.
    """
    if not isinstance(basis, TemplateBasis):
        raise ParameterError(f"basis must be a TemplateBasis, got {type(basis).__name__}")
    arr = np.asarray(frames, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != basis.shape:
        raise ParameterError(f"frames of shape {arr.shape} do not match the template grid {basis.shape}")
    m = arr.shape[0]
    if m == 0:
        return np.zeros((0, 2)), np.zeros(0, bool)
    flat = arr.reshape(m, -1)
    if not np.isfinite(flat.sum(dtype=np.float64)):
        flat = np.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0)
    proj = (flat @ basis.weighted.T).astype(np.float64)
    d = np.zeros((m, 2))
    ok = np.ones(m, dtype=bool)
    h = 0.01
    # Finite-difference stencil for the gradient and Hessian of the score at d.
    stencil = np.array([(0, 0), (h, 0), (-h, 0), (0, h), (0, -h), (h, h), (-h, -h)], dtype=np.float64)
    for _ in range(int(iterations)):
        f0, fpy, fmy, fpx, fmx, fpp, fmm = _taylor_score(d[None] + stencil[:, None], proj, basis.gram)
        gy, gx = (fpy - fmy) / (2 * h), (fpx - fmx) / (2 * h)
        hyy = (fpy - 2 * f0 + fmy) / h ** 2
        hxx = (fpx - 2 * f0 + fmx) / h ** 2
        hxy = (fpp - fpy - fpx + 2 * f0 - fmy - fmx + fmm) / (2 * h ** 2)
        det = hyy * hxx - hxy * hxy
        ok = (hyy < 0) & (hxx < 0) & (det > 0)
        safe = np.where(ok, det, 1.0)
        sy = np.where(ok, -(hxx * gy - hxy * gx) / safe, 0.25 * np.sign(gy))
        sx = np.where(ok, -(hyy * gx - hxy * gy) / safe, 0.25 * np.sign(gx))
        d[:, 0] += np.clip(sy, -0.25, 0.25)
        d[:, 1] += np.clip(sx, -0.25, 0.25)
    ok &= np.all(np.isfinite(d), axis=1) & (np.hypot(d[:, 0], d[:, 1]) <= max_shift_px)
    return d, ok


# -- applying shifts ---------------------------------------------------------------------------
def shift_frames(frames, shifts, *, order: int | str = 1, fill_value: float = 0.0,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Translate each frame by a sub-pixel shift: ``out[i](p) = frames[i](p - shifts[i])``.

    To bring frame i back onto frame 0 given a drift ``(dy, dx)``, pass ``-drift``.

    Parameters
    ----------
    frames : array_like, shape (n, rows, cols) or (rows, cols)
    shifts : array_like, shape (n, 2) or (2,)
        (dy, dx) per frame in px.
    order : {1, 3, 'fourier'}
        Bilinear or bicubic interpolation (OpenCV ``warpAffine``; its coordinates are quantised to
        1/32 px), or an exact Fourier shift (treats the frame as periodic: edges wrap).
    fill_value : float
        Value of pixels shifted in from outside (orders 1 and 3).
    out : ndarray of float32, optional
        Output buffer of the frames' shape.

    Returns
    -------
    ndarray of float32
    """
    import cv2

    arr = np.asarray(frames, dtype=np.float32)
    single = arr.ndim == 2
    if single:
        arr = arr[None]
    if arr.ndim != 3:
        raise ParameterError(f"frames must be (n, rows, cols), got shape {arr.shape}")
    sh = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    if sh.shape[0] != arr.shape[0]:
        raise ParameterError(f"{sh.shape[0]} shifts for {arr.shape[0]} frames")
    if not np.all(np.isfinite(sh)):
        raise ParameterError("shifts must be finite numbers")
    if order not in (1, 3, "fourier"):
        raise ParameterError(f"order must be 1, 3 or 'fourier', got {order!r}")
    if out is None:
        out = np.empty(arr.shape, dtype=np.float32)
    elif out.shape != arr.shape or out.dtype != np.float32:
        raise ParameterError(f"out must be float32 of shape {arr.shape}")
    out3 = out if out.ndim == 3 else out[None]
    rows, cols = arr.shape[1:]
    if order == "fourier":
        fy = sfft.fftfreq(rows)[:, None]
        fx = sfft.rfftfreq(cols)[None, :]
        spec = sfft.rfft2(arr, workers=1)
        for i, (dy, dx) in enumerate(sh):
            spec[i] *= np.exp(-2j * np.pi * (fy * dy + fx * dx))
        out3[:] = sfft.irfft2(spec, s=(rows, cols), workers=1)
    else:
        flag = cv2.INTER_LINEAR if order == 1 else cv2.INTER_CUBIC
        m = np.zeros((2, 3), dtype=np.float64)
        m[0, 0] = m[1, 1] = 1.0
        for i, (dy, dx) in enumerate(sh):
            m[0, 2], m[1, 2] = dx, dy
            cv2.warpAffine(arr[i], m, (cols, rows), dst=out3[i], flags=flag,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=float(fill_value))
    return out3[0] if single else out3


# -- internals ---------------------------------------------------------------------------------
def _check_shape(shape) -> tuple[int, int]:
    try:
        rows, cols = (int(shape[0]), int(shape[1]))
    except (TypeError, IndexError, ValueError):
        raise ParameterError(f"shape must be (rows, cols), got {shape!r}") from None
    if len(tuple(shape)) != 2 or rows < 4 or cols < 4:
        raise ParameterError(f"frames must be 2D and at least 4x4 px, got shape {tuple(shape)}")
    return rows, cols


def _resolve_window(window, shape) -> np.ndarray:
    if isinstance(window, str):
        return window_2d(shape, kind=window)
    w = np.asarray(window, dtype=np.float32)
    if w.shape != tuple(shape):
        raise ParameterError(f"window of shape {w.shape} does not match frames of shape {tuple(shape)}")
    return w


@lru_cache(maxsize=8)
def _shift_mask_cached(shape, max_shift):
    dy = np.minimum(np.arange(shape[0]), shape[0] - np.arange(shape[0]))[:, None]
    dx = np.minimum(np.arange(shape[1]), shape[1] - np.arange(shape[1]))[None, :]
    m = (dy * dy + dx * dx) <= max_shift * max_shift
    m.flags.writeable = False
    return m


def _shift_mask(shape, max_shift: float) -> np.ndarray:
    return _shift_mask_cached(tuple(shape), float(max_shift))


def _gaussian_offsets(corr: np.ndarray, py: np.ndarray, px: np.ndarray) -> np.ndarray:
    """3-point Gaussian (log-parabola) fit per axis around the integer peak, parabolic fallback."""
    n, rows, cols = corr.shape
    k = np.arange(n)
    c0 = corr[k, py, px].astype(np.float64)
    out = np.zeros((n, 2))
    for axis, (lo, hi) in enumerate((
            (corr[k, (py - 1) % rows, px], corr[k, (py + 1) % rows, px]),
            (corr[k, py, (px - 1) % cols], corr[k, py, (px + 1) % cols]))):
        lo = lo.astype(np.float64)
        hi = hi.astype(np.float64)
        ok = (lo > 0) & (hi > 0) & (c0 > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            l0, ll, lh = np.log(np.where(ok, c0, 1)), np.log(np.where(ok, lo, 1)), np.log(np.where(ok, hi, 1))
            den_g = ll - 2 * l0 + lh
            off_g = 0.5 * (ll - lh) / den_g
            den_p = lo - 2 * c0 + hi
            off_p = 0.5 * (lo - hi) / den_p
        off = np.where(ok & (den_g < 0), off_g, np.where(den_p < 0, off_p, 0.0))
        out[:, axis] = np.clip(np.nan_to_num(off), -0.5, 0.5)
    return out


def _half_weights(cols: int) -> np.ndarray:
    """Multiplicity of each rfft column in the full spectrum (Hermitian symmetry)."""
    w = np.full(cols // 2 + 1, 2.0)
    w[0] = 1.0
    if cols % 2 == 0:
        w[-1] = 1.0
    return w


def _newton_refine(cross: np.ndarray, shape, shifts: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Maximise c(y, x) = sum_k Re(R_k exp(2 pi i k.r)) by Newton steps on the exact surface."""
    rows, cols = shape
    fy = sfft.fftfreq(rows)                         # cycles per px
    fx = sfft.rfftfreq(cols)
    wx = _half_weights(cols)
    two_pi = 2.0 * math.pi
    s = shifts.copy()
    fxc = (1j * two_pi * fx).astype(np.complex64)
    fyc = (1j * two_pi * fy)
    basis = np.empty((fx.size, 3), dtype=np.complex64)
    a = np.empty((rows, 3), dtype=np.complex64)
    for _ in range(iterations):
        for i in range(s.shape[0]):
            ex = (np.exp(1j * two_pi * fx * s[i, 1]) * wx).astype(np.complex64)
            basis[:, 0] = ex
            basis[:, 1] = ex * fxc
            basis[:, 2] = ex * fxc * fxc
            np.dot(cross[i], basis, out=a)
            ey = np.exp(1j * two_pi * fy * s[i, 0])
            dy1 = ey * fyc
            gx = (ey @ a[:, 1]).real
            gy = (dy1 @ a[:, 0]).real
            hxx = (ey @ a[:, 2]).real
            hyy = ((dy1 * fyc) @ a[:, 0]).real
            hxy = (dy1 @ a[:, 1]).real
            det = hxx * hyy - hxy * hxy
            if hxx < 0 and hyy < 0 and det > 0:
                step_y = -(hxx * gy - hxy * gx) / det
                step_x = -(hyy * gx - hxy * gy) / det
                s[i, 0] += min(0.5, max(-0.5, step_y))
                s[i, 1] += min(0.5, max(-0.5, step_x))
    return s


def _dft_refine(cross: np.ndarray, shape, shifts: np.ndarray, upsample: int) -> np.ndarray:
    """skimage's local upsampled DFT: the surface on a 1/upsample grid over +-1 px, then its argmax."""
    rows, cols = shape
    fy = sfft.fftfreq(rows)
    fx = sfft.rfftfreq(cols)
    wx = _half_weights(cols)
    m = upsample
    grid = np.arange(-m, m + 1) / m                                       # +-1 px
    out = shifts.copy()
    for i in range(shifts.shape[0]):
        ys = shifts[i, 0] + grid
        xs = shifts[i, 1] + grid
        ey = np.exp(2j * np.pi * np.outer(ys, fy))                        # (G, H)
        ex = np.exp(2j * np.pi * np.outer(fx, xs)) * wx[:, None]          # (Wr, G)
        surf = (ey @ cross[i].astype(np.complex128) @ ex).real
        j = int(surf.argmax())
        out[i] = ys[j // grid.size], xs[j % grid.size]
    return out
