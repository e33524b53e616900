"""Where the wire is: checking a user's line and width, or finding them (``--auto``).

Automatic detection, from the mean of the first frames (before the reaction changes anything):

1. *Attenuation image*: ``-ln(I / median)``, 2x binned and lightly smoothed; a white top-hat with a
   disk about a quarter of the frame keeps thin objects (the wire) and removes large ones (the
   Na source particle, thickness gradients of the film). No threshold is involved.
2. *Axis angle*: inside a soft-edged disc (so that the background projects alike at every angle;
   the square frame's diagonal once won over a wire) the top-hat image minus its background level is
   projected across each angle (a Radon transform done with ``np.bincount`` over precomputed
   coordinates); the wire, the longest straight dark feature, concentrates its projection into a
   narrow peak only at its own angle. The angle maximising the projection's energy is refined on
   a 0.1 degree grid; the peak's position gives the axis offset and its width a first diameter.
3. *Refinement*: projected-cylinder fits of perpendicular profiles along that first line
   (:mod:`temtrack.frame.edges`), with profiles sized from that first diameter (a fixed sixth of
   the frame was too narrow for a 50 px wire in a 256 px frame), give the wire centre every few
   pixels; a straight-line fit of centre vs distance corrects angle and offset (typically to
   < 0.3 degree), and the fitted diameters give the width.
4. *Ends and contact*: the wire is the longest run of positions whose fitted diameter agrees with
   the median; beyond the contact end lies the large dark Na source (the attenuation there is far
   above the wire's), beyond the free end vacuum/film. The contact point is put where the wire
   meets the source's boundary: the visible contact, what a microscopist would mark. Where Na
   enters the wire lies under the source's projection, an unknown distance behind it (9-14 nm on
   the synthetic movies, whose front starts inside the source), so ``analyze --auto`` fits that
   origin offset in the kinetics (``origin='free'``, ``x0_nm`` in the results) rather than guess
   it here. When the source is outside the field of view the image cannot tell, and
   :func:`choose_contact_end` picks the end near which the wire changes first.

Why hand-written: skimage's ``radon`` rotates the whole image per angle (slow for a fine angle
grid) and its Hough transforms need an edge threshold; ridge filters (sato/meijering) respond to
the source's outline as much as to the wire.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from temtrack.errors import AnalysisError, ParameterError
from temtrack.frame.edges import (
    cylinder_templates,
    fit_cylinder_profiles,
    profile_attenuation,
)
from temtrack.frame.profiles import sample_strip, strip_grid
from temtrack.series.front import _nanmean_quiet, longest_true_run

__all__ = [
    "WireLine",
    "choose_contact_end",
    "detect_wire_line",
    "line_angle_deg",
    "measure_width",
    "validate_line",
    "validate_width",
]


def line_angle_deg(line_px) -> float:
    """Direction of a line (x0, y0, x1, y1) from its first point, degrees CCW from +x (y down)."""
    x0, y0, x1, y1 = (float(v) for v in line_px)
    return math.degrees(math.atan2(-(y1 - y0), x1 - x0)) % 360.0


def validate_line(line_px, frame_shape, *, min_length_px: float = 16.0) -> tuple[float, float, float, float]:
    """Check a user line ``(x0, y0, x1, y1)`` (contact end first) against the frame.

    Raises
    ------
    ParameterError
        Not four finite numbers, an end outside the frame, or shorter than ``min_length_px``.
    """
    if line_px is None or isinstance(line_px, (str, bytes)):
        raise ParameterError(f"line must be four numbers x0,y0,x1,y1 in px (contact end first), got {line_px!r}")
    try:
        vals = [float(v) for v in line_px]
    except (TypeError, ValueError):
        raise ParameterError(f"line must be four numbers x0,y0,x1,y1 in px (contact end first), got {line_px!r}") from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ParameterError(f"line must be four finite numbers x0,y0,x1,y1 in px (contact end first), got {line_px!r}")
    rows, cols = frame_shape
    for name, (x, y) in (("start (contact end)", vals[:2]), ("end", vals[2:])):
        if not (0 <= x <= cols - 1 and 0 <= y <= rows - 1):
            raise ParameterError(f"line {name} ({x:g}, {y:g}) lies outside the frame: x must be in "
                                 f"0..{cols - 1} and y in 0..{rows - 1} px")
    length = math.hypot(vals[2] - vals[0], vals[3] - vals[1])
    if length < min_length_px:
        raise ParameterError(f"line is {length:.1f} px long; expected at least {min_length_px:g} px along the wire")
    return tuple(vals)  # type: ignore[return-value]


def validate_width(width_px, frame_shape) -> float:
    """Check a wire width in px: positive, finite, smaller than the frame."""
    try:
        w = float(width_px)
    except (TypeError, ValueError):
        raise ParameterError(f"width must be a positive number of pixels, got {width_px!r}") from None
    if not (math.isfinite(w) and w > 0):
        raise ParameterError(f"width must be a positive number of pixels (about the wire diameter), got {width_px!r}")
    if w < 3:
        raise ParameterError(f"width {w:g} px is too narrow to measure a wire; expected at least 3 px")
    if w > 0.5 * min(frame_shape):
        raise ParameterError(f"width {w:g} px is more than half the frame ({frame_shape[0]}x{frame_shape[1]} px)")
    return w


@dataclass
class WireLine:
    """A wire found in the image.

    Attributes
    ----------
    line_px : tuple
        ``(x0, y0, x1, y1)`` frame-0 px, contact end first.
    width_px : float
        Median fitted diameter (px).
    angle_deg : float
        Direction contact -> far end, degrees CCW from +x (y down).
    contact_evidence : dict
        Attenuation beyond each end (the contact end borders the Na source).
    contact_certain : bool
        False when the image alone cannot tell the contact end (e.g. the source lies outside the
        field of view); then :func:`choose_contact_end` decides from where the wire changes first.
    reversed_line_px : tuple
        The same wire with the other end taken as the contact.
    """

    line_px: tuple
    width_px: float
    angle_deg: float
    contact_evidence: dict
    contact_certain: bool = True
    reversed_line_px: tuple | None = None


def _window_projections(img: np.ndarray, window: np.ndarray, angles_deg: np.ndarray, bin_px: float):
    """Projections of ``img * window`` across each angle, minus the window's own projection times
    the background level (the window's median), and the projection energies.

    The circular window makes the projection of a uniform background the same at every angle (a
    square frame's is a triangle, sharpest along the diagonals, which once won over the wire).
    """
    h, w = img.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    ys, xs = ys.ravel(), xs.ravel()
    level = float(np.median(img[window > 0.5]))
    weights = (img * window).ravel()
    wwin = window.ravel()
    rmax = math.hypot(h, w)
    nb = int(2 * rmax / bin_px) + 3
    energy = np.empty(angles_deg.size)
    profiles = []
    for k, a in enumerate(np.radians(angles_deg)):
        # Distance across a line at angle a (direction (cos a, -sin a) on screen, y down).
        idx = ((xs * math.sin(a) + ys * math.cos(a) + rmax) / bin_px).astype(np.int64)
        p = np.bincount(idx, weights=weights, minlength=nb) - level * np.bincount(idx, weights=wwin, minlength=nb)
        energy[k] = float(p @ p)
        profiles.append(p)
    return energy, profiles, rmax


def detect_wire_line(frames: np.ndarray) -> WireLine:
    """Find the wire axis, its width and its contact end in the first frames of a movie.

    Parameters
    ----------
    frames : ndarray, shape (n, rows, cols) or (rows, cols)
        A few early frames (averaged; the wire must not have reacted much yet).

    Returns
    -------
    WireLine

    Raises
    ------
    AnalysisError
        No elongated dark object found.
    """
    import cv2

    img = np.asarray(frames, dtype=np.float64)
    if img.ndim == 3:
        img = img.mean(axis=0)
    if img.ndim != 2 or min(img.shape) < 32:
        raise ParameterError(f"wire detection needs frames of at least 32x32 px, got {img.shape}")
    med = float(np.median(img))
    if not (med > 0):
        raise AnalysisError("wire detection: the image has no positive intensity (median <= 0)")
    rows, cols = img.shape
    # 2x binning (noise, speed), attenuation, light smoothing.
    r2, c2 = rows // 2 * 2, cols // 2 * 2
    small = img[:r2, :c2].reshape(r2 // 2, 2, c2 // 2, 2).mean(axis=(1, 3))
    att = -np.log(np.clip(ndimage.gaussian_filter(small, 1.5) / med, 1e-3, None))
    k = max(5, int(min(small.shape) / 4) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    top = cv2.morphologyEx(att.astype(np.float32), cv2.MORPH_TOPHAT, kernel).astype(np.float64)
    # Soft-edged disc: background projects the same way at every angle (see _window_projections).
    h2, w2 = top.shape
    yy, xx = np.mgrid[0:h2, 0:w2].astype(np.float64)
    rad = np.hypot(yy - (h2 - 1) / 2, xx - (w2 - 1) / 2)
    window = np.clip((0.5 * min(h2, w2) - 1 - rad) / 4 + 0.5, 0.0, 1.0)
    coarse = np.arange(0.0, 180.0, 1.0)
    e, _, _ = _window_projections(top, window, coarse, 1.0)
    a0 = coarse[int(np.argmax(e))]
    fine = a0 + np.arange(-1.5, 1.51, 0.1)
    e2, profs, rmax = _window_projections(top, window, fine, 0.5)
    kbest = int(np.argmax(e2))
    angle = float(fine[kbest])
    # Offset of the wire across that direction: peak of the projection; its width at half
    # maximum (a half-ellipse's is 0.87 of the diameter) sizes the profiles of the fits below.
    prof = ndimage.gaussian_filter1d(profs[kbest], 2.0)
    ipk = int(np.argmax(prof))
    r_peak = ipk * 0.5 - rmax + 0.25
    above = prof >= 0.5 * prof[ipk]
    lo_i = ipk
    while lo_i > 0 and above[lo_i - 1]:
        lo_i -= 1
    hi_i = ipk
    while hi_i < prof.size - 1 and above[hi_i + 1]:
        hi_i += 1
    width_guess = 2 * (hi_i - lo_i + 1) * 0.5 / 0.87          # full-resolution px
    half_fit = _fit_half_width(width_guess, (rows, cols))
    a = math.radians(angle)
    # Back to full-resolution pixels: a small-image pixel (i, j) covers full pixels 2i..2i+1.
    ux, uy = math.cos(a), -math.sin(a)
    vx, vy = math.sin(a), math.cos(a)         # r = x*vx + y*vy
    r_full = 2 * r_peak + 0.5 * (vx + vy)
    cx, cy = (cols - 1) / 2, (rows - 1) / 2
    rc = cx * vx + cy * vy
    px0, py0 = cx + (r_full - rc) * vx, cy + (r_full - rc) * vy   # a point on the axis
    line = _clip_line_to_frame(px0, py0, ux, uy, rows, cols, margin=2.0)
    if line is None:
        raise AnalysisError("wire detection: no elongated dark object found in the first frames")

    # Refine with cylinder fits along the provisional line.
    for _ in range(2):
        fit_s, fit_c, fit_d = _fits_along(img, line, half_width=half_fit)
        good = np.isfinite(fit_c) & np.isfinite(fit_d)
        if good.sum() < 8:
            raise AnalysisError("wire detection: no wire profile found along the strongest straight feature")
        med_d = np.median(fit_d[good])
        good &= np.abs(fit_d - med_d) < 0.3 * med_d
        lo, hi = longest_true_run(good)
        sel = np.zeros_like(good)
        sel[lo:hi + 1] = True
        sel &= good
        if sel.sum() < 8:
            raise AnalysisError("wire detection: the wire profile is not consistent along the line")
        slope, icpt = _robust_line(fit_s[sel], fit_c[sel])
        x0, y0, x1, y1 = line
        L = math.hypot(x1 - x0, y1 - y0)
        ux, uy = (x1 - x0) / L, (y1 - y0) / L
        vx, vy = -uy, ux
        # New axis: points at s with centre offset icpt + slope*s.
        s_a, s_b = fit_s[sel][0], fit_s[sel][-1]
        pa = (x0 + s_a * ux + (icpt + slope * s_a) * vx, y0 + s_a * uy + (icpt + slope * s_a) * vy)
        pb = (x0 + s_b * ux + (icpt + slope * s_b) * vx, y0 + s_b * uy + (icpt + slope * s_b) * vy)
        L2 = math.hypot(pb[0] - pa[0], pb[1] - pa[1])
        nux, nuy = (pb[0] - pa[0]) / L2, (pb[1] - pa[1]) / L2
        line = _clip_line_to_frame(pa[0], pa[1], nux, nuy, rows, cols, margin=2.0)
        width = float(np.median(fit_d[sel]))
        run_s = (fit_s[sel][0], fit_s[sel][-1])
    # Ends of the wire on the refined line, and which end touches the Na source.
    fit_s, fit_c, fit_d = _fits_along(img, line, half_width=half_fit)
    good = np.isfinite(fit_d) & (np.abs(fit_d - width) < 0.3 * width)
    lo, hi = longest_true_run(good)
    s_lo, s_hi = float(fit_s[lo]), float(fit_s[hi])
    x0, y0, x1, y1 = line
    L = math.hypot(x1 - x0, y1 - y0)
    ux, uy = (x1 - x0) / L, (y1 - y0) / L
    core = _core_attenuation(img, line, width, med)
    s_axis = np.arange(core.size, dtype=np.float64)
    wire_att = float(np.nanmedian(core[(s_axis >= s_lo) & (s_axis <= s_hi)]))

    def beyond(s_from, direction):
        sel = (direction * (s_axis - s_from) > 0.5 * width) & (direction * (s_axis - s_from) < 1.5 * width)
        v = core[sel]
        v = v[np.isfinite(v)]
        return float(np.median(v)) if v.size else float("nan")

    before, after = beyond(s_lo, -1), beyond(s_hi, +1)
    ev = {"attenuation_beyond_start": before, "attenuation_beyond_end": after, "wire_attenuation": wire_att}
    # The source is darker than the wire; vacuum/film is lighter. An end running off the frame
    # (NaN) cannot be the contact unless the other end is clearly free.
    b = before if np.isfinite(before) else -np.inf
    c = after if np.isfinite(after) else -np.inf
    contact_at_start = b >= c
    # Contact point: where the wire meets the source (first fitted wire position). Free end: a
    # hemispherical cap's projected width falls to 0.7 of the wire's 0.71 radii past the
    # cylinder's end, and 0.7 is the consistency limit used above.
    # The source must be clearly darker than the wire itself beyond one end and not the other.
    certain = bool(np.isfinite(before) and np.isfinite(after) and abs(before - after) > 0.5 * abs(wire_att))

    # The contact point sets the origin of every front position, so it is located finer than the
    # 4 px grid above: fits every pixel (4 px bins) and a stricter diameter match (15%), the
    # first (last) of 8 consecutive matching positions. On 13 small synthetic movies (50 px wire,
    # source at a frame edge) the contact then lay 7.7-10.7 nm past the synthetic contact (which
    # lies inside the source; its outline crosses the axis at ~11 nm), against 6-15 nm before.
    fs, _, fd = _fits_along(img, line, half_width=half_fit, bin_px=4, stride=1)
    match = np.isfinite(fd) & (np.abs(fd - width) < 0.15 * width)
    runs = np.flatnonzero(np.convolve(match.astype(int), np.ones(8, int), mode="valid") == 8)
    s_lo_c, s_hi_c = s_lo, s_hi
    if runs.size:
        lo_f, hi_f = float(fs[runs[0]]), float(fs[runs[-1] + 7])
        # Only a refinement: kept when within a diameter of the coarse ends.
        s_lo_c = lo_f if abs(lo_f - s_lo) <= width else s_lo
        s_hi_c = hi_f if abs(hi_f - s_hi) <= width else s_hi

    def endpoints(at_start):
        if at_start:
            s_contact, s_far = s_lo_c, min(s_hi - 0.35 * width, L)
        else:
            s_contact, s_far = s_hi_c, max(s_lo + 0.35 * width, 0.0)
        pts = (x0 + s_contact * ux, y0 + s_contact * uy, x0 + s_far * ux, y0 + s_far * uy)
        return tuple(float(np.clip(v, 0, (cols - 1) if i % 2 == 0 else (rows - 1))) for i, v in enumerate(pts))

    out = endpoints(contact_at_start)
    other = endpoints(not contact_at_start)
    ev["run_s_px"] = [float(run_s[0]), float(run_s[1])]
    return WireLine(line_px=out, width_px=width, angle_deg=line_angle_deg(out), contact_evidence=ev,
                    contact_certain=certain, reversed_line_px=other)


def choose_contact_end(early: np.ndarray, late: np.ndarray, line_px, width_px: float, *,
                       early_shifts=None, late_shifts=None) -> tuple[bool, dict]:
    """Decide which end of a wire touches the Na source from where the wire changed most.

    Sodiation starts at the contact, so by the late frames the third of the wire next to the
    contact has changed more (mean absolute change of the core attenuation) than the far third.

    Parameters
    ----------
    early, late : ndarray (n, rows, cols)
        A few early and a few late frames.
    line_px : sequence of 4 floats
        The wire axis (frame-0 px) with a provisional contact end first.
    width_px : float
    early_shifts, late_shifts : sequence of (dy, dx), optional
        Drift of each of those frames.

    Returns
    -------
    first_is_contact : bool
    evidence : dict
        Mean change near each end.
    """
    grid = strip_grid(line_px, half_width_px=max(1.0, 0.25 * width_px))

    def mean_core(frames, shifts):
        acc = np.zeros(grid.shape[0])
        cnt = np.zeros(grid.shape[0])
        for j, f in enumerate(np.asarray(frames, dtype=np.float32)):
            sh = (0.0, 0.0) if shifts is None else shifts[j]
            v = _nanmean_quiet(sample_strip(f, grid, shift_px=sh), axis=1)
            ok = np.isfinite(v)
            acc[ok] += v[ok]
            cnt[ok] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return acc / cnt

    with np.errstate(invalid="ignore", divide="ignore"):
        a, b = mean_core(early, early_shifts), mean_core(late, late_shifts)
        change = np.abs(np.log(b / a))
    n = change.size
    near = float(np.nanmean(change[: n // 3])) if np.isfinite(change[: n // 3]).any() else float("nan")
    far = float(np.nanmean(change[-(n // 3):])) if np.isfinite(change[-(n // 3):]).any() else float("nan")
    first = not (np.isfinite(near) and np.isfinite(far) and far > near)
    return first, {"change_near_first_end": near, "change_near_second_end": far}


def measure_width(frames: np.ndarray, line_px) -> float:
    """Median projected-cylinder diameter (px) along a given line in the mean of ``frames``.

    The profiles must be wide enough for the wire plus background on both sides, and the wire's
    width is what is being measured: profiles start at a sixth of the frame and widen until
    the fits find the wire, then are sized from that first diameter and fitted again.

    Raises
    ------
    AnalysisError
        No wire profile found along the line.
    """
    img = np.asarray(frames, dtype=np.float64)
    if img.ndim == 3:
        img = img.mean(axis=0)
    shape = img.shape
    d = np.empty(0)
    half = min(shape) / 6
    while True:
        _, _, d = _fits_along(img, line_px, half_width=half)
        d = d[np.isfinite(d)]
        if d.size >= 3 or half >= _MAX_HALF_FRACTION * min(shape):
            break
        half = min(1.4 * half, _MAX_HALF_FRACTION * min(shape))
    if d.size < 3:
        raise AnalysisError("no wire profile found along the line: give the wire width (--width)")
    half2 = _fit_half_width(float(np.median(d)), shape)
    if abs(half2 - half) > 2:
        _, _, d2 = _fits_along(img, line_px, half_width=half2)
        d2 = d2[np.isfinite(d2)]
        if d2.size >= 3:
            d = d2
    return float(np.median(d))


#: Largest half-width of the fitted profiles, as a fraction of the frame's smaller side.
_MAX_HALF_FRACTION = 0.4


def _fit_half_width(diameter_px: float, frame_shape) -> float:
    """Half-width of the profiles fitted by :func:`_fits_along` for a wire of that diameter.

    Those fits allow the wire centre 30% of the half-width off the line and radii up to 0.85 of
    the rest (0.6 of the half-width), so the half-width must exceed about 1.2 diameters (a
    fixed sixth of the frame failed for a 50 px wire in a 256 px frame). At least a sixth of
    the frame, at most ``_MAX_HALF_FRACTION`` of it.
    """
    lo = min(frame_shape) / 6
    hi = _MAX_HALF_FRACTION * min(frame_shape)
    d = float(diameter_px) if np.isfinite(diameter_px) and diameter_px > 0 else 0.0
    return float(np.clip(1.2 * d + 6, lo, max(lo, hi)))


def _clip_line_to_frame(px, py, ux, uy, rows, cols, margin):
    """The longest segment of the infinite line through (px, py) along (ux, uy) inside the frame."""
    ts = []
    for p, u, size in ((px, ux, cols), (py, uy, rows)):
        if abs(u) > 1e-12:
            ts.append(sorted(((margin - p) / u, (size - 1 - margin - p) / u)))
        elif not (margin <= p <= size - 1 - margin):
            return None
    t0 = max(t[0] for t in ts)
    t1 = min(t[1] for t in ts)
    if t1 - t0 < 16:
        return None
    return (px + t0 * ux, py + t0 * uy, px + t1 * ux, py + t1 * uy)


def _fits_along(img, line, half_width, bin_px=8, stride=4):
    hw = max(12.0, float(half_width))
    grid = strip_grid(line, half_width_px=hw)
    strip = sample_strip(img.astype(np.float32), grid)
    n = grid.shape[0]
    starts = np.arange(0, n - bin_px + 1, stride)
    binned = np.stack([strip[a:a + bin_px].mean(axis=0) for a in starts])
    tp = cylinder_templates(grid.shape[1], max_shift_fraction=0.3)
    fit = fit_cylinder_profiles(profile_attenuation(binned), tp)
    s = starts + (bin_px - 1) / 2
    return s, fit["center_px"], fit["diameter_px"]


def _core_attenuation(img, line, width, med):
    grid = strip_grid(line, half_width_px=max(1.0, 0.25 * width))
    strip = sample_strip(img.astype(np.float32), grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Rows entirely off the frame give NaN (without nanmean's warning).
        return -np.log(np.clip(_nanmean_quiet(strip, axis=1) / med, 1e-3, None))


def _robust_line(x, y):
    """Straight-line fit y = a x + b with one round of 3-sigma (MAD) rejection."""
    a, b = np.polyfit(x, y, 1)
    res = y - (a * x + b)
    s = 1.4826 * np.median(np.abs(res - np.median(res))) or 1e-9
    keep = np.abs(res) < 3 * s + 1e-9
    if keep.sum() >= 4:
        a, b = np.polyfit(x[keep], y[keep], 1)
    return float(a), float(b)
