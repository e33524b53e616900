"""Azimuthal integration of diffraction frames into I(q), with pixel splitting and ellipse correction.

pyFAI is the field's reference integrator, but it models a full detector geometry (distance, tilts,
solid angle) that a TEM diffraction pattern does not need, is an optional heavy dependency, and
costs more per frame than a sparse matrix product. Here the map from pixels to q bins is a sparse
matrix built once per pattern centre: each pixel is split into ``oversample**2`` sub-pixels whose
(ellipse-corrected) radii pick their bin, so a pixel contributes to neighbouring bins in proportion
to its area in each, like pyFAI's pixel splitting (the tests compare both to better than 1%).
The mean over azimuth is then ``(M @ frame) / (M @ valid)``; a median uses whole pixels.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from temtrack.errors import ParameterError


def ellipse_inverse(ellipticity: float, angle_deg: float) -> np.ndarray:
    """Matrix mapping detector offsets (x right, y up) to circular ("true") offsets.

    The detector shows a ring of radius r as an ellipse with axes r(1 +- e/2), the major axis at
    ``angle_deg`` counter-clockwise from +x.
    """
    if not (0 <= abs(ellipticity) < 0.5):
        raise ParameterError(f"ellipticity must be between 0 and 0.5, got {ellipticity}")
    phi = np.radians(angle_deg)
    R = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    A = R @ np.diag([1 + ellipticity / 2, 1 - ellipticity / 2]) @ R.T
    return np.linalg.inv(A)


def polar_coordinates(shape, *, center_yx, ellipticity: float = 0.0, ellipticity_angle_deg: float = 0.0,
                      offsets=(0.0,), angle: bool = True, dtype=np.float64):
    """Ellipse-corrected radius (px) and angle (rad, counter-clockwise from +x) of (sub-)pixels.

    Returns arrays of shape (rows, cols, len(offsets), len(offsets)) sampled at pixel centre +
    offset (in px) along each axis; only the radius when ``angle`` is False.
    """
    rows, cols = shape
    cy, cx = center_yx
    o = np.asarray(offsets, dtype=np.float64)
    u = ((np.arange(cols, dtype=np.float64)[None, :, None, None] + o[None, None, None, :]) - cx).astype(dtype)
    v = (-((np.arange(rows, dtype=np.float64)[:, None, None, None] + o[None, None, :, None]) - cy)).astype(dtype)
    if not angle:
        # |M (u, v)|^2 as a quadratic form: three broadcast products, no rotated copies.
        M = ellipse_inverse(ellipticity, ellipticity_angle_deg) if ellipticity else np.eye(2)
        Q = M.T @ M
        r2 = (Q[0, 0] * u * u).astype(dtype) + (2 * Q[0, 1] * u) * v + (Q[1, 1] * v * v)
        return np.sqrt(r2, out=r2)
    if ellipticity:
        M = ellipse_inverse(ellipticity, ellipticity_angle_deg)
        tu = M[0, 0] * u + M[0, 1] * v
        tv = M[1, 0] * u + M[1, 1] * v
    else:
        tu, tv = u, v
    r = np.hypot(tu, tv)
    return r, np.arctan2(tv, tu) + np.zeros_like(r)


@dataclass(frozen=True)
class RadialBins:
    """Precomputed pixel -> q-bin map for one pattern centre, ellipticity and mask.

    Attributes
    ----------
    sub_bin : ndarray of int32
        q bin of every valid sub-pixel sample.
    sub_pixel : ndarray of int32
        Flat index of the pixel each sample belongs to.
    q_edges_nm_inv, q_nm_inv : ndarray
        Bin edges and centres (1/nm, q = 1/d).
    coverage : ndarray (n_bins,)
        Valid pixel area per bin (0 where the bin is fully masked).
    oversample : int
        Samples per pixel along each axis (each sample weighs 1/oversample**2 of its pixel).
    """

    sub_bin: np.ndarray
    sub_pixel: np.ndarray
    q_edges_nm_inv: np.ndarray
    q_nm_inv: np.ndarray
    coverage: np.ndarray
    shape: tuple
    center_yx: tuple
    pixel_size_inv_nm: float
    ellipticity: float
    ellipticity_angle_deg: float
    oversample: int
    mask: np.ndarray | None = None

    @functools.cached_property
    def pixel_bin(self) -> np.ndarray:
        """Bin of each pixel centre (-1 outside or masked); used by the median."""
        rc = polar_coordinates(self.shape, center_yx=self.center_yx, ellipticity=self.ellipticity,
                               ellipticity_angle_deg=self.ellipticity_angle_deg, angle=False)
        pb = _bin_index(rc.ravel() * self.pixel_size_inv_nm, self.q_edges_nm_inv)
        if self.mask is not None:
            pb[~self.mask.ravel()] = -1
        return pb.astype(np.int32)

    @property
    def d_A(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return 10.0 / self.q_nm_inv

    @functools.cached_property
    def matrix(self) -> sp.csr_matrix:
        """The same map as a sparse (n_bins, rows*cols) matrix of pixel area fractions.

        Built once per :class:`RadialBins` (on first use) and shared: do not modify it.
        """
        n_bins = self.q_nm_inv.size
        w = np.full(self.sub_bin.size, 1.0 / self.oversample ** 2)
        m = sp.csr_matrix((w, (self.sub_bin, self.sub_pixel)), shape=(n_bins, self.shape[0] * self.shape[1]))
        m.sum_duplicates()
        return m


def default_q_edges(shape, *, center_yx, pixel_size_inv_nm: float, bin_px: float = 0.5,
                    r_min_px: float = 0.0) -> np.ndarray:
    """Bin edges from ``r_min_px`` to the largest full circle inside the frame, ``bin_px`` wide."""
    rows, cols = shape
    cy, cx = center_yx
    r_max = min(cy, cx, rows - 1 - cy, cols - 1 - cx)
    if r_max <= r_min_px + 2 * bin_px:
        raise ParameterError(f"pattern centre {center_yx} leaves no full ring inside a {shape} frame")
    return np.arange(r_min_px, r_max + 1e-9, bin_px) * pixel_size_inv_nm


def _bin_index(q, edges):
    n_bins = edges.size - 1
    step = np.diff(edges)
    if np.allclose(step, step[0], rtol=1e-9, atol=0):
        b = np.floor((q - edges[0]) * (1.0 / step[0])).astype(np.int64)
    else:
        b = np.searchsorted(edges, q, side="right") - 1
    b[(b < 0) | (b >= n_bins)] = -1
    return b


def radial_bins(shape, *, center_yx, pixel_size_inv_nm: float = 1.0, q_edges_nm_inv=None,
                ellipticity: float = 0.0, ellipticity_angle_deg: float = 0.0, mask=None,
                oversample: int = 2) -> RadialBins:
    """Build the integration map for one geometry (reuse it for every frame that shares it).

    Parameters
    ----------
    shape : (rows, cols)
    center_yx : (float, float)
        Pattern centre in pixel coordinates (row, col) of pixel centres.
    pixel_size_inv_nm : float
        Calibration (1/nm per px along the mean ellipse axis); 1 gives radii in px.
    q_edges_nm_inv : array, optional
        Increasing bin edges; default :func:`default_q_edges` with 0.5 px bins.
    ellipticity, ellipticity_angle_deg : float
        Ellipse correction (see :func:`ellipse_inverse`).
    mask : bool array, optional
        True for valid pixels (False: beam stop, saturated, dead, edge).
    oversample : int
        Sub-pixels per axis for pixel splitting (1 = whole pixels).
    """
    rows, cols = (int(shape[0]), int(shape[1]))
    if pixel_size_inv_nm <= 0 or not np.isfinite(pixel_size_inv_nm):
        raise ParameterError(f"pixel_size_inv_nm must be a positive number, got {pixel_size_inv_nm}")
    if oversample < 1 or oversample > 8:
        raise ParameterError(f"oversample must be between 1 and 8, got {oversample}")
    if q_edges_nm_inv is None:
        q_edges_nm_inv = default_q_edges((rows, cols), center_yx=center_yx, pixel_size_inv_nm=pixel_size_inv_nm)
    edges = np.asarray(q_edges_nm_inv, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ParameterError("q_edges_nm_inv must be a strictly increasing 1D array of at least 2 edges")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (rows, cols):
            raise ParameterError(f"mask shape {mask.shape} differs from the frame shape {(rows, cols)}")
    n_bins = edges.size - 1
    valid_px = np.ones(rows * cols, bool) if mask is None else mask.ravel()
    offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
    r = polar_coordinates((rows, cols), center_yx=center_yx, ellipticity=ellipticity,
                          ellipticity_angle_deg=ellipticity_angle_deg, offsets=offsets, angle=False,
                          dtype=np.float32)
    b = _bin_index(r.reshape(rows * cols, oversample * oversample) * np.float32(pixel_size_inv_nm), edges)
    b[~valid_px] = -1
    keep = b >= 0
    sub_bin = b[keep].astype(np.int32)
    sub_pixel = np.nonzero(keep)[0].astype(np.int32)
    coverage = np.bincount(sub_bin, minlength=n_bins)[:n_bins] / oversample ** 2
    return RadialBins(sub_bin, sub_pixel, edges, 0.5 * (edges[1:] + edges[:-1]), coverage,
                      (rows, cols), (float(center_yx[0]), float(center_yx[1])),
                      float(pixel_size_inv_nm), float(ellipticity), float(ellipticity_angle_deg), int(oversample),
                      None if mask is None else mask.copy())


def azimuthal_average(frames, bins: RadialBins, *, statistic: str = "mean",
                      min_coverage: float = 0.5) -> np.ndarray:
    """Azimuthal mean (or median) I(q) of one frame or a stack.

    Parameters
    ----------
    frames : array (rows, cols) or (n, rows, cols)
    bins : RadialBins
    statistic : {'mean', 'median'}
    min_coverage : float
        Bins with less valid pixel area than this are NaN.

    Returns
    -------
    ndarray (n_bins,) or (n, n_bins), float64
    """
    a = np.asarray(frames)
    single = a.ndim == 2
    if single:
        a = a[None]
    if a.shape[1:] != bins.shape:
        raise ParameterError(f"frame shape {a.shape[1:]} differs from the integration map's {bins.shape}")
    n_bins = bins.q_nm_inv.size
    flat = a.reshape(a.shape[0], -1)
    out = np.empty((a.shape[0], n_bins))
    if statistic == "mean":
        # One sparse matrix-vector product per frame (the CSR map is built once per bins): 4-5x
        # faster than gathering sub-pixels and np.bincount, and faster than one product with
        # the whole stack (which needs a transposed float64 copy of it).
        m = bins.matrix
        for i, f in enumerate(flat):
            with np.errstate(invalid="ignore", divide="ignore"):
                out[i] = (m @ f) / bins.coverage
    elif statistic == "median":
        from scipy import ndimage
        labels = bins.pixel_bin + 1
        idx = np.arange(1, n_bins + 1)
        for i, f in enumerate(flat):
            out[i] = ndimage.median(f, labels=labels, index=idx)
    else:
        raise ParameterError(f"statistic must be 'mean' or 'median', got {statistic!r}")
    out[:, bins.coverage < min_coverage] = np.nan
    return out[0] if single else out


def radial_profile(frame, *, center_yx, pixel_size_inv_nm: float = 1.0, q_edges_nm_inv=None,
                   ellipticity: float = 0.0, ellipticity_angle_deg: float = 0.0, mask=None,
                   oversample: int = 2, statistic: str = "mean"):
    """One-call azimuthal integration of a frame: returns ``(q_nm_inv, I)``."""
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ParameterError(f"expected a 2D frame, got shape {frame.shape}")
    bins = radial_bins(frame.shape, center_yx=center_yx, pixel_size_inv_nm=pixel_size_inv_nm,
                       q_edges_nm_inv=q_edges_nm_inv, ellipticity=ellipticity,
                       ellipticity_angle_deg=ellipticity_angle_deg, mask=mask, oversample=oversample)
    return bins.q_nm_inv, azimuthal_average(frame, bins, statistic=statistic)


def detect_mask(frame, *, saturation: float | None = None, edge_px: int = 2, dilate_px: int = 2,
                dark_fraction: float = 0.25, center_yx=None) -> np.ndarray:
    """Valid-pixel mask of a diffraction frame: drops saturated pixels, the beam stop and the edges.

    Parameters
    ----------
    frame : 2D array
    saturation : float, optional
        Full-scale value; default: the frame maximum when at least 10 pixels sit at it (a clipped
        central beam), else no saturation mask.
    edge_px : int
        Detector border rows/columns to drop.
    dilate_px : int
        Grow the saturated and beam-stop regions by this many pixels (blooming, penumbra).
    dark_fraction : float
        A pixel darker than this fraction of the mean at its radius (computed without such dark
        pixels) belongs to the beam stop; only dark regions of 50 pixels or more count.
    center_yx : (float, float), optional
        Pattern centre for the radial median (default: the frame centre).

    Returns
    -------
    bool array, True = valid.
    """
    from scipy import ndimage

    f = np.asarray(frame, dtype=np.float32)
    if f.ndim != 2:
        raise ParameterError(f"expected a 2D frame, got shape {f.shape}")
    bad = ~np.isfinite(f)
    fmax = np.nanmax(f)
    if saturation is None and np.count_nonzero(f >= fmax) >= 10:
        saturation = fmax
    if saturation is not None:
        bad |= f >= saturation
    rows, cols = f.shape
    cy, cx = center_yx if center_yx is not None else ((rows - 1) / 2, (cols - 1) / 2)
    yy, xx = np.ogrid[:rows, :cols]
    r = np.hypot(yy - cy, xx - cx).astype(np.int32).ravel()
    ok = ~bad.ravel()
    fv = np.where(ok, f.ravel(), 0.0)
    # Radial mean, then again without the pixels far below it: the beam stop covers a minority
    # of each circle, so the second mean is the unobstructed level.
    nr = int(r.max()) + 1
    for _ in range(2):
        cnt = np.bincount(r, weights=ok, minlength=nr)
        ref = np.bincount(r, weights=fv * ok, minlength=nr) / np.maximum(cnt, 1)
        ok = ok & ~(fv < dark_fraction * ref[r])
    dark = (f.ravel() < dark_fraction * ref[r]).reshape(f.shape) & ~bad
    # Keep only large dark regions (a beam stop), not Poisson zeros at high q.
    lab, n = ndimage.label(dark)
    if n:
        sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        big = np.zeros(n + 1, bool)
        big[1:] = sizes >= 50
        dark = big[lab]
    bad = bad | dark
    if dilate_px > 0:
        bad = ndimage.binary_dilation(bad, iterations=int(dilate_px))
    if edge_px > 0:
        bad[:edge_px] = bad[-edge_px:] = True
        bad[:, :edge_px] = bad[:, -edge_px:] = True
    return ~bad
