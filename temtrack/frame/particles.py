"""Per-frame particle measurement: segmentation and a projected-sphere fit.

Thresholding alone biases particle areas at low dose: a sphere's projected thickness falls to zero
at its rim, so any threshold cuts the rim off (a half-maximum contour encloses only 75% of the true
area). Areas here come from fitting the image of each particle with the projection of a sphere,
optionally with an unreacted core of different contrast (the shrinking-core picture):

    I(rho) = B exp(-(c_shell * 2 sqrt(R^2 - rho^2) + c_core * 2 sqrt(Rc^2 - rho^2)))

fitted to the raw counts with Poisson weights, so the outer radius R (hence the area) is unbiased
and the core radius Rc comes with it. The fit is done on the azimuthally averaged profile about a
centre found by a symmetrised centroid, with the image blur (point spread + pixel integration) in
the model: a 1D fit of a few hundred radial bins takes a few milliseconds (about 25 ms of CPU per
particle and frame with the core-shell model, measured on 2 vCPUs), where a 2D fit of the same
pixels with ``scipy.optimize.least_squares`` took 0.5-1 s, and a movie needs one fit per particle
per frame. The small Levenberg-Marquardt solver below exists for the same reason. Segmentation (smoothing, flat field, Otsu threshold,
watershed split of touching particles) only seeds the fits; :func:`count_fragments` flags cracking.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from temtrack.errors import ParameterError


def segment_particles(frame: np.ndarray, *, sigma_px: float = 1.5, polarity: str = "dark",
                      min_area_px: int = 12, split_touching: bool = True,
                      min_separation_px: float = 4.0) -> np.ndarray:
    """Label the particles of one frame.

    Parameters
    ----------
    frame : ndarray (rows, cols)
    sigma_px : float
        Gaussian smoothing against shot noise.
    polarity : {'dark', 'bright'}
        Particles darker (bright field) or brighter (dark field) than the background.
    min_area_px : int
        Smaller objects are noise.
    split_touching : bool
        Separate touching particles by a watershed on the distance transform.
    min_separation_px : float
        Smallest distance between the centres of two touching particles.

    Returns
    -------
    labels : ndarray of int32
        0 = background, 1..N particles.
    """
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    frame = np.asarray(frame, dtype=np.float32)
    if frame.ndim != 2:
        raise ParameterError(f"segment_particles expects a 2D frame, got shape {frame.shape}")
    if polarity not in ("dark", "bright"):
        raise ParameterError(f"polarity must be 'dark' or 'bright', got {polarity!r}")
    img = np.nan_to_num(frame, nan=float(np.nanmedian(frame)))
    # Divide out slow illumination variation so one threshold fits the whole field.
    background = ndimage.gaussian_filter(img, max(img.shape) / 6)
    img = ndimage.gaussian_filter(img, sigma_px) / np.maximum(background, 1e-6)
    if polarity == "bright":
        img = -img
    if np.ptp(img) == 0:
        return np.zeros(img.shape, np.int32)
    mask = img < threshold_otsu(img)
    mask = ndimage.binary_opening(mask, iterations=1)
    labels, n = ndimage.label(mask)
    if n == 0:
        return labels.astype(np.int32)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= min_area_px
    mask = keep[labels]
    if not split_touching:
        return ndimage.label(mask)[0].astype(np.int32)
    dist = ndimage.distance_transform_edt(ndimage.binary_fill_holes(mask))
    peaks = peak_local_max(dist, min_distance=max(1, int(min_separation_px)), labels=ndimage.label(mask)[0],
                           exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=mask).astype(np.int32)


@dataclass
class SphereFit:
    """Result of :func:`fit_projected_sphere` (lengths in patch pixels).

    ``core_radius_px`` is NaN when the data do not support a core of distinct contrast (the core
    model does not lower chi^2 by ``core_min_delta_chi2``): a pristine or a fully reacted particle.
    ``model_core_radius_px`` and ``core_att_per_px`` are the fitted model's core (for rendering the
    particle, e.g. as a neighbour's known attenuation), significant or not.
    """

    y: float
    x: float
    radius_px: float
    core_radius_px: float
    background: float
    shell_att_per_px: float
    core_att_per_px: float
    radius_err_px: float
    ok: bool
    core_delta_chi2: float = 0.0
    blur_px: float = 0.0
    model_core_radius_px: float = 0.0


def _att(rho, r, cs, rc=0.0, cc=0.0):
    a = cs * 2 * np.sqrt(np.clip(r * r - rho * rho, 0, None))
    if cc != 0.0 and rc > 0:
        a = a + cc * 2 * np.sqrt(np.clip(rc * rc - rho * rho, 0, None))
    return a


def sphere_attenuation(shape, *, y: float, x: float, radius_px: float, shell_att_per_px: float,
                       core_radius_px: float = 0.0, core_att_per_px: float = 0.0) -> np.ndarray:
    """Attenuation ``-ln(I/B)`` of a projected core-shell sphere on a pixel grid of ``shape``."""
    yy, xx = np.ogrid[0:shape[0], 0:shape[1]]
    rho = np.sqrt((yy - y) ** 2 + (xx - x) ** 2)
    cr = 0.0 if not np.isfinite(core_radius_px) else core_radius_px
    return _att(rho, radius_px, shell_att_per_px, cr, core_att_per_px)


def symmetric_centroid(att: np.ndarray, valid: np.ndarray, *, y0: float, x0: float, radius_px: float,
                       iterations: int = 8) -> tuple[float, float]:
    """Centroid of the attenuation inside ``radius_px`` using only pixels whose mirror image
    through the current centre is valid too, so a masked-out sector cannot pull it sideways."""
    h, w = att.shape
    yy, xx = np.mgrid[0:h, 0:w]
    y, x = float(y0), float(x0)
    # Not clipped at zero: background noise is zero-mean and must stay so, or it pulls the
    # centroid towards the middle of the selection disk.
    a = np.nan_to_num(att)
    for _ in range(iterations):
        my = np.rint(2 * y - yy).astype(int)
        mx = np.rint(2 * x - xx).astype(int)
        inside = (my >= 0) & (my < h) & (mx >= 0) & (mx < w)
        mirror_ok = np.zeros_like(valid)
        mirror_ok[inside] = valid[my[inside], mx[inside]]
        sel = valid & mirror_ok & ((yy - y) ** 2 + (xx - x) ** 2 <= radius_px ** 2)
        wsum = a[sel].sum()
        if not wsum > 0:
            break
        ny, nx = float((a[sel] * yy[sel]).sum() / wsum), float((a[sel] * xx[sel]).sum() / wsum)
        if abs(ny - y) < 0.003 and abs(nx - x) < 0.003:
            y, x = ny, nx
            break
        y, x = ny, nx
    return y, x


_GRID_PX = 0.2


class _ProfileModel:
    """Radial intensity profile of a blurred projected core-shell sphere, batched over parameter sets.

    The 2D point spread (and pixel integration) is applied as a 1D Gaussian along rho, exact for
    radii much larger than the blur, which is the regime where the blur matters for the area. The
    profile is computed on a fine grid at (k + 1/2) * step (so the symmetric extension about
    rho = 0 is a half-sample reflection); with a fixed blur, the blur and the interpolation to
    the data radii are one precomputed matrix, and all parameter sets of a finite-difference
    Jacobian go through it in one matrix product: a model evaluation is a few numpy calls.
    """

    def __init__(self, rho, *, with_core, blur_px):
        self.with_core = with_core
        self.blur = float(blur_px) if blur_px is not None else None
        self.fit_blur = blur_px is None
        top = float(rho.max()) + 4 * (self.blur if self.blur else 3.0) + 1
        self.g = (np.arange(int(top / _GRID_PX) + 1) + 0.5) * _GRID_PX
        self.g2 = (self.g * self.g)[None, :]
        n = self.g.size
        pos = np.clip((rho - self.g[0]) / _GRID_PX, 0, n - 1.000001)
        self.i0 = pos.astype(np.int64)
        self.frac = pos - self.i0
        self.matrix = None
        if not self.fit_blur:
            from scipy import sparse

            # Banded and small: sparse products stay single-threaded (dense ones would wake the
            # BLAS thread pool for every evaluation, which costs more than the product itself).
            rows = np.repeat(np.arange(rho.size), 2)
            cols = np.stack([self.i0, self.i0 + 1], axis=1).ravel()
            vals = np.stack([1 - self.frac, self.frac], axis=1).ravel()
            W = sparse.csr_matrix((vals, (rows, cols)), shape=(rho.size, n))
            k = self._kernel(self.blur)
            self.matrix = W if k is None else (W @ self._conv_matrix(k, n)).tocsr()

    @staticmethod
    def _kernel(s):
        if s <= 0.05:
            return None
        sg = s / _GRID_PX
        half = int(np.ceil(3.5 * sg))
        x = np.arange(-half, half + 1)
        k = np.exp(-0.5 * (x / sg) ** 2)
        return k / k.sum()

    @staticmethod
    def _conv_matrix(k, n):
        """Sparse (n, n) convolution with ``k``: reflected about rho = 0, constant at the end."""
        from scipy import sparse

        half = k.size // 2
        out = np.arange(n)[:, None]
        src = out + np.arange(-half, half + 1)[None, :]
        src = np.where(src < 0, -src - 1, src)
        src = np.minimum(src, n - 1)
        # Duplicate (row, col) entries are summed by the COO -> CSR conversion.
        return sparse.coo_matrix((np.broadcast_to(k, src.shape).ravel(),
                                  (np.broadcast_to(out, src.shape).ravel(), src.ravel())), shape=(n, n)).tocsr()

    def __call__(self, P):
        P = np.atleast_2d(P)
        lb, r, cs = P[:, 0:1], P[:, 1:2], P[:, 2:3]
        att = (2 * cs) * np.sqrt(np.maximum(r * r - self.g2, 0))
        if self.with_core:
            # The core's extra attenuation is a multiple q of the shell's, so a faint halo around
            # a dark disk (shell attenuation near zero) cannot pose as a core-shell particle.
            rc, q = P[:, 3:4], P[:, 4:5]
            att += (2 * q * cs) * np.sqrt(np.maximum(rc * rc - self.g2, 0))
        f = np.exp(-att)
        if self.matrix is not None:
            return np.exp(lb) * (self.matrix @ f.T).T
        n = self.g.size
        out = np.empty((P.shape[0], self.i0.size))
        for m in range(P.shape[0]):
            k = self._kernel(P[m, -1])
            fm = f[m] if k is None else self._conv_matrix(k, n) @ f[m]
            out[m] = fm[self.i0] * (1 - self.frac) + fm[self.i0 + 1] * self.frac
        return np.exp(lb) * out


class _Solution:
    def __init__(self, x, cost, jac, success):
        self.x, self.cost, self.jac, self.success = x, cost, jac, success


def _levenberg_marquardt(resid, jac, p0, lo, hi, max_iter=40, xtol=1e-5, ftol=1e-7):
    """Bounded Levenberg-Marquardt for a handful of parameters (bounds by projection).

    ``scipy.optimize.least_squares`` spends about half a millisecond of Python per iteration,
    which dominates a five-parameter fit of a hundred points run once per particle per frame.
    """
    p = np.clip(np.asarray(p0, float), lo, hi)
    r = resid(p)
    J = jac(p, r)
    cost = 0.5 * float(r @ r)
    lam = 1e-3
    success = False
    scale = np.maximum(np.abs(hi - lo), 1e-12)
    for _ in range(max_iter):
        A = J.T @ J
        gvec = J.T @ r
        d = np.diag(A).copy()
        d[d <= 0] = 1e-12
        accepted = False
        for _inner in range(8):
            try:
                step = -np.linalg.solve(A + lam * np.diag(d), gvec)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            p_new = np.clip(p + step, lo, hi)
            r_new = resid(p_new)
            c_new = 0.5 * float(r_new @ r_new)
            if c_new <= cost:
                small = np.all(np.abs(p_new - p) < xtol * scale) or (cost - c_new) < ftol * max(cost, 1e-300)
                p, r, cost = p_new, r_new, c_new
                lam = max(lam / 3, 1e-9)
                accepted = True
                break
            lam *= 4
        if not accepted or small:
            success = True
            break
        J = jac(p, r)
    return _Solution(p, cost, J, success)


def _fit_profile(rho, data, n, p0, lo, hi, with_core, fit_blur, blur_px):
    sigma = np.sqrt(np.maximum(data, 1.0) / n)
    model = _ProfileModel(rho, with_core=with_core, blur_px=None if fit_blur else blur_px)
    lo_a, hi_a = np.asarray(lo, float), np.asarray(hi, float)
    steps = 1e-5 * np.maximum(hi_a - lo_a, 1e-6)

    def resid(p):
        return (model(p)[0] - data) / sigma

    def jac(p, r):
        # Forward differences, stepping away from the nearer bound; one batched model call.
        h = np.where(p + steps > hi_a, -steps, steps)
        m = model(p[None, :] + np.diag(h))
        return ((m - data) / sigma - r) / h[:, None]

    sol = _levenberg_marquardt(resid, lambda p, r: jac(p, r).T, p0, lo_a, hi_a)
    chi2 = float(2 * sol.cost)
    err = np.inf
    try:
        jtj = sol.jac.T @ sol.jac
        dof = max(1, data.size - len(p0))
        cov = np.linalg.pinv(jtj) * max(1.0, chi2 / dof)
        err = float(np.sqrt(max(cov[1, 1], 0)))
    except np.linalg.LinAlgError:
        pass
    return sol, chi2, err


def fit_projected_sphere(patch: np.ndarray, *, y0: float, x0: float, r0: float, weight: np.ndarray | None = None,
                         with_core: bool = True, extra_attenuation: np.ndarray | None = None,
                         refine_centre: bool = True, blur_px: float | None = None, bin_px: float = 0.25,
                         max_radius_factor: float = 1.7, core_min_delta_chi2: float = 10.0,
                         max_core_contrast: float = 2.5) -> SphereFit:
    """Fit one particle's image with the projection of a (core-shell) sphere.

    Parameters
    ----------
    patch : ndarray (h, w)
        Raw counts around the particle (not smoothed).
    y0, x0, r0 : float
        Starting centre and radius in patch pixels (from segmentation or an earlier frame).
    weight : ndarray (h, w) of bool, optional
        False for pixels to ignore (a neighbouring particle).
    with_core : bool
        Also fit an inner core of higher attenuation; kept only when it lowers chi^2 by
        ``core_min_delta_chi2`` times the reduced chi^2 of the fit without core (so model
        imperfections at high dose do not invent cores); otherwise ``core_radius_px`` is NaN.
    extra_attenuation : ndarray (h, w), optional
        Known attenuation of neighbours (e.g. from :func:`sphere_attenuation` of their fits) that
        is divided out of the counts before fitting.
    refine_centre : bool
        Move the centre to the symmetrised attenuation centroid before the radial fit.
    blur_px : float, optional
        Gaussian blur (point spread and pixel integration, px); fitted when None.
    bin_px : float
        Width of the radial bins.
    max_radius_factor : float
        The profile extends to ``max_radius_factor * r0 + 4`` px (the particle may have grown).
    core_min_delta_chi2 : float
        Chi^2 improvement (in units of the reduced chi^2) needed to report a core.
    max_core_contrast : float
        Largest ratio of the core's extra attenuation per length to the shell's (the core is
        assumed at least as attenuating as the shell: an unreacted core in a swollen shell).

    Returns
    -------
    SphereFit
    """
    patch = np.asarray(patch, dtype=np.float64)
    if patch.ndim != 2 or min(patch.shape) < 5:
        raise ParameterError(f"patch must be 2D and at least 5x5 px, got {patch.shape}")
    if not (np.isfinite(r0) and r0 > 0):
        raise ParameterError(f"starting radius must be a positive number of px, got {r0}")
    if not (bin_px > 0 and max_radius_factor >= 1):
        raise ParameterError("bin_px must be > 0 and max_radius_factor >= 1")
    if blur_px is not None and not (np.isfinite(blur_px) and blur_px >= 0):
        raise ParameterError(f"blur_px must be None or a number >= 0, got {blur_px}")
    w = np.ones(patch.shape, bool) if weight is None else np.asarray(weight, bool).copy()
    if w.shape != patch.shape:
        raise ParameterError(f"weight must have the patch's shape {patch.shape}, got {w.shape}")
    w &= np.isfinite(patch)
    data2d = patch
    if extra_attenuation is not None:
        data2d = patch * np.exp(np.asarray(extra_attenuation, dtype=np.float64))
    yy, xx = np.mgrid[0:patch.shape[0], 0:patch.shape[1]].astype(np.float64)
    rho = np.hypot(yy - y0, xx - x0)
    ring = w & (rho > r0 * 1.3 + 2)
    bg = float(np.median(data2d[ring])) if ring.sum() > 10 else float(np.percentile(data2d[w], 90))
    bg = max(bg, 1e-3)
    y, x = float(y0), float(x0)
    if refine_centre:
        att = -np.log(np.maximum(data2d, 0.5) / bg)
        y, x = symmetric_centroid(att, w, y0=y0, x0=x0, radius_px=1.2 * r0 + 2)
        rho = np.hypot(yy - y, xx - x)
    rmax = max_radius_factor * r0 + 4
    sel = w & (rho < rmax)
    if sel.sum() < 20:
        return SphereFit(y, x, r0, np.nan, bg, 0.0, 0.0, np.inf, False)
    idx = (rho[sel] / bin_px).astype(np.int64)
    n = np.bincount(idx)
    keep = n > 0
    rho_b = (np.bincount(idx, rho[sel]))[keep] / n[keep]
    dat_b = (np.bincount(idx, data2d[sel]))[keep] / n[keep]
    n = n[keep].astype(np.float64)
    centre = rho_b < max(1.0, 0.4 * r0)
    i_c = float(np.average(dat_b[centre], weights=n[centre])) if centre.any() else bg * 0.6
    att0 = max(0.05, -np.log(max(i_c, 1e-3) / bg))
    cs0 = att0 / (2 * r0)
    fit_blur = blur_px is None
    blur = 0.0 if blur_px is None else float(blur_px)
    p0 = [np.log(bg), r0, cs0]
    lo = [np.log(bg) - 1, 0.3 * r0, 0.0]
    hi = [np.log(bg) + 1, rmax, 20 * cs0 + 1]
    if fit_blur:
        p0, lo, hi = p0 + [0.7], lo + [0.0], hi + [max(3.0, 0.3 * r0)]
    try:
        sol1, chi1, err1 = _fit_profile(rho_b, dat_b, n, p0, lo, hi, False, fit_blur, blur)
    except ValueError:
        return SphereFit(y, x, r0, np.nan, bg, cs0, 0.0, np.inf, False)
    lb, r1, c1 = sol1.x[:3]
    best, err, core_r, core_c, dchi, model_rc = sol1.x, err1, np.nan, 0.0, 0.0, 0.0
    ok = bool(sol1.success)
    if with_core:
        lo2 = [lb - 1, 0.3 * r0, 0.0, 0.0, 0.0]
        hi2 = [lb + 1, rmax, 20 * cs0 + 1, rmax, max_core_contrast]
        if fit_blur:
            lo2, hi2 = lo2 + [lo[-1]], hi2 + [hi[-1]]
        best2 = None
        # Two starts (a large and a small core): the chi^2 surface in Rc is not convex.
        red = max(1.0, chi1 / max(1, rho_b.size - len(sol1.x)))
        for frac in (0.93, 0.6, 0.3):
            start = [lb, r1, c1 * 0.7, frac * r1, 0.8] + ([sol1.x[-1]] if fit_blur else [])
            try:
                sol2, chi2, err2 = _fit_profile(rho_b, dat_b, n, start, lo2, hi2, True, fit_blur, blur)
            except ValueError:
                continue
            if best2 is None or chi2 < best2[1]:
                best2 = (sol2, chi2, err2)
            # A clearly significant core from this start: the other starts would only refine it.
            if (chi1 - best2[1]) / red >= 4 * core_min_delta_chi2:
                break
        if best2 is not None:
            sol2, chi2, err2 = best2
            dchi = (chi1 - chi2) / max(1.0, chi2 / max(1, rho_b.size - len(sol2.x)))
            rc, cc = float(sol2.x[3]), float(sol2.x[4] * sol2.x[2])
            # The core model nests the plain sphere, so its outer radius is used whenever it fits
            # at least as well (a thin reacted shell otherwise pulls R inward); the core itself is
            # reported only when significant.
            if dchi >= core_min_delta_chi2 and 0.5 < rc < sol2.x[1] and cc > 1e-6:
                best, err, ok = sol2.x, err2, bool(sol2.success)
                model_rc, core_c, core_r = rc, cc, rc
    return SphereFit(y, x, float(best[1]), core_r, float(np.exp(best[0])), float(best[2]), core_c,
                     float(err), ok, float(dchi), float(best[-1]) if fit_blur else blur, float(model_rc))


def count_fragments(patch: np.ndarray, *, sigma_px: float = 1.5, threshold: float, min_area_px: int = 6) -> tuple[int, int]:
    """Number of separate pieces and of enclosed holes of a particle in its patch.

    A particle that cracks shows up as several pieces or a new hole.

    Parameters
    ----------
    patch : ndarray (h, w)
        The particle's pixels (neighbours already replaced by background).
    sigma_px : float
        Gaussian smoothing against shot noise before thresholding.
    threshold : float
        Intensity below which a (smoothed) pixel belongs to the particle (bright field).
    min_area_px : int
        Pieces and holes smaller than this are noise.

    Returns
    -------
    n_pieces, n_holes : int
    """
    patch = np.asarray(patch)
    if patch.ndim != 2:
        raise ParameterError(f"count_fragments expects a 2D patch, got shape {patch.shape}")
    if not (sigma_px >= 0 and min_area_px >= 1 and np.isfinite(threshold)):
        raise ParameterError("count_fragments: sigma_px must be >= 0, min_area_px >= 1, threshold finite")
    smooth = ndimage.gaussian_filter(np.asarray(patch, np.float32), sigma_px)
    mask = smooth < threshold
    labels, n = ndimage.label(mask)
    if n:
        sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
        n = int(np.sum(sizes >= min_area_px))
    filled = ndimage.binary_fill_holes(mask)
    holes, n_holes = ndimage.label(filled & ~mask)
    if n_holes:
        hs = ndimage.sum_labels(np.ones_like(holes), holes, index=np.arange(1, n_holes + 1))
        n_holes = int(np.sum(hs >= min_area_px))
    return n, n_holes
