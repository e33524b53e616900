"""Annotated movies for talks and supplementary material: MP4 (H.264) or GIF.

Frames are drawn with OpenCV (already a core dependency; its Hershey fonts need no font files) and
piped straight into ffmpeg through ``imageio-ffmpeg`` — no PNG per frame on disk. The file is
written under a temporary name and renamed when complete, so an interrupted export leaves nothing.

Annotations: a scale bar of a round length (1, 2 or 5 x 10^k nm), the time stamp, the speed-up
factor against real time, and optional overlays from an ``analyze`` result: the wire axis, the
reaction-front position, the wire's edges and the probe points, moved with the drift when the raw
movie is shown; and a strip chart of the logged current, voltage or temperature under the image
with a cursor at each frame's time (:class:`Trace`).
"""
from __future__ import annotations

import math
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from temtrack.errors import Cancelled, ParameterError
from temtrack.io.movie import Movie

_WHITE = (255, 255, 255)
_FRONT = (255, 80, 40)     # RGB
_AXIS = (80, 200, 255)
_PROBE = (255, 220, 0)
_EDGE = (120, 255, 0)


def round_scale_bar_nm(field_width_nm: float, fraction: float = 0.2) -> float:
    """A round length (1, 2 or 5 x 10^k) close to ``fraction`` of the field width."""
    if not (field_width_nm > 0 and math.isfinite(field_width_nm)):
        raise ParameterError(f"field width must be a positive length, got {field_width_nm}")
    target = fraction * field_width_nm
    exponent = math.floor(math.log10(target))
    candidates = [m * 10 ** e for e in (exponent - 1, exponent, exponent + 1) for m in (1, 2, 5)]
    return min(candidates, key=lambda c: (abs(math.log(c / target)), c))


def _format_length(nm: float, unit: str) -> str:
    if unit == "1/nm":
        return f"{nm:g} 1/nm"
    if nm >= 1000:
        return f"{nm / 1000:g} um"
    return f"{nm:g} nm"


def _format_time(t: float) -> str:
    if t < 60:
        return f"{t:7.2f} s"
    m, s = divmod(t, 60)
    return f"{int(m):d}:{s:05.2f}"


@dataclass
class Overlay:
    """Positions to draw, per frame, in the coordinates of frame 0 (px).

    ``line_px`` = [x0, y0, x1, y1] from the contact; ``front_nm`` per frame (NaN = none);
    ``probes_nm`` positions along the wire; ``pixel_size_nm`` converts nm along the wire to px;
    ``dy_px``/``dx_px`` the drift, applied when drawing on raw frames; ``edge_s_nm`` (positions
    along the wire) and ``edge_diameter_nm`` (per frame x position, NaN = not measured) draw the
    wire's two edges, the axis offset by half the measured diameter on each side.
    """

    line_px: list
    pixel_size_nm: float
    front_nm: np.ndarray | None = None
    probes_nm: tuple = ()
    dy_px: np.ndarray | None = None
    dx_px: np.ndarray | None = None
    edge_s_nm: np.ndarray | None = None
    edge_diameter_nm: np.ndarray | None = None

    @classmethod
    def from_results(cls, results: dict) -> "Overlay":
        """Build from an ``analyze`` ``results.json`` mapping."""
        prov = results.get("provenance") or {}
        recipe = prov.get("recipe") or {}
        line = results.get("line_px") or recipe.get("line") or (results.get("geometry") or {}).get("line_px")
        px = prov.get("pixel_size_nm")
        if line is None or px is None:
            raise ParameterError("results have no wire line or pixel size to draw an overlay from")
        front = results.get("front") or {}
        drift = results.get("drift") or {}
        probes = tuple(float(p) for p in ((results.get("diameter") or {}).get("probes") or {}))
        return cls(line_px=list(line), pixel_size_nm=float(px),
                   front_nm=np.asarray(front.get("position_nm", []), dtype=float) if front else None,
                   probes_nm=probes,
                   dy_px=np.asarray(drift["dy_px"], float) if drift.get("dy_px") else None,
                   dx_px=np.asarray(drift["dx_px"], float) if drift.get("dx_px") else None)

    def point(self, s_nm: float, i: int, raw: bool) -> tuple[float, float]:
        x0, y0, x1, y1 = self.line_px
        length = math.hypot(x1 - x0, y1 - y0)
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        s_px = s_nm / self.pixel_size_nm
        x, y = x0 + s_px * ux, y0 + s_px * uy
        if raw and self.dx_px is not None and i < len(self.dx_px):
            x, y = x + self.dx_px[i], y + self.dy_px[i]
        return x, y


def _contrast_limits(movie: Movie, frames: range, percentiles: tuple[float, float]) -> tuple[float, float]:
    sample = np.linspace(frames.start, frames.stop - 1, num=min(8, len(frames))).astype(int)
    values = np.concatenate([movie.frame(int(i)).ravel() for i in sample])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, percentiles)
    return float(lo), float(hi if hi > lo else lo + 1)


def annotated_frames(movie: Movie, *, frames: range | None = None, crop: tuple | None = None,
                     contrast: tuple[float, float] | None = None, percentiles=(0.5, 99.5),
                     scale_bar: bool = True, timestamp: bool = True, speed_up: float | None = None,
                     overlay: Overlay | None = None, overlay_on_raw: bool = True,
                     upscale: int | None = None, trace: "Trace | None" = None) -> Iterator[np.ndarray]:
    """Yield annotated RGB uint8 frames.

    Parameters
    ----------
    movie : Movie
        Raw or aligned movie (see ``temtrack.series.drift.aligned_movie``).
    frames : range, optional
        Frames to render (default all).
    crop : (x, y, w, h), optional
        Region in px.
    contrast : (lo, hi), optional
        Fixed display limits; default from ``percentiles`` of a few frames (fixed for the movie so
        that brightness changes stay visible).
    scale_bar, timestamp : bool
    speed_up : float, optional
        Printed as "x N" beside the time.
    overlay : Overlay, optional
    overlay_on_raw : bool
        Add the drift to overlay positions (True for raw frames, False for aligned ones).
    upscale : int, optional
        Integer zoom (nearest) so small frames get readable text; default makes them >= 480 px.
    trace : Trace, optional
        A logged current / voltage / temperature drawn as a strip chart below the image, with a
        cursor at each frame's time (the frames grow by the strip's height).
    """
    import cv2

    frames = frames or range(movie.n_frames)
    if len(frames) == 0 or frames.start < 0 or frames.stop > movie.n_frames:
        raise ParameterError(f"frame range {frames.start}:{frames.stop} outside 0:{movie.n_frames}")
    rows, cols = movie.frame_shape
    x0c, y0c, wc, hc = (0, 0, cols, rows) if crop is None else (int(v) for v in crop)
    if wc <= 0 or hc <= 0 or x0c < 0 or y0c < 0 or x0c + wc > cols or y0c + hc > rows:
        raise ParameterError(f"crop {crop} outside the {cols}x{rows} frame")
    lo, hi = contrast or _contrast_limits(movie, frames, percentiles)
    zoom = upscale or max(1, int(math.ceil(480 / max(wc, hc))))
    out_w, out_h = wc * zoom, hc * zoom
    font_scale = max(0.4, out_w / 900)
    thick = max(1, int(round(font_scale * 2)))
    bar = None
    if scale_bar and movie.pixel_size:
        bar_len = round_scale_bar_nm(wc * movie.pixel_size)
        bar = (bar_len, bar_len / movie.pixel_size * zoom, _format_length(bar_len, movie.pixel_unit))
    for i in frames:
        img = movie.frame(i)[y0c:y0c + hc, x0c:x0c + wc]
        img = np.nan_to_num(img, nan=lo)
        g = np.clip((img - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        if zoom > 1:
            g = cv2.resize(g, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
        rgb = np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
        margin = int(12 * font_scale + 6)
        if bar is not None:
            _, bar_px, label = bar
            x1 = out_w - margin
            x0 = int(round(x1 - bar_px))
            y = out_h - margin
            cv2.rectangle(rgb, (x0, y - max(3, thick * 2)), (x1, y), _WHITE, -1)
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
            cv2.putText(rgb, label, (int((x0 + x1 - tw) / 2), y - max(3, thick * 2) - 6),
                        cv2.FONT_HERSHEY_SIMPLEX, font_scale, _WHITE, thick, cv2.LINE_AA)
        if timestamp and movie.times_s is not None:
            text = _format_time(movie.times_s[i] - movie.times_s[frames.start])
            if speed_up:
                text += f"  x{speed_up:.3g}"
            cv2.putText(rgb, text, (margin, margin + int(20 * font_scale)), cv2.FONT_HERSHEY_SIMPLEX,
                        font_scale, _WHITE, thick, cv2.LINE_AA)
        if overlay is not None:
            _draw_overlay(rgb, overlay, i, overlay_on_raw, x0c, y0c, zoom, thick)
        if trace is not None and movie.times_s is not None:
            span = (float(movie.times_s[frames.start]), float(movie.times_s[frames.stop - 1]))
            rgb = np.vstack([rgb, trace.strip(out_w, float(movie.times_s[i]), span, font_scale, thick)])
        yield rgb


def _draw_overlay(rgb, ov: Overlay, i: int, raw: bool, x0c: int, y0c: int, zoom: int, thick: int):
    import cv2

    def to_px(p):
        return int(round((p[0] - x0c + 0.5) * zoom)), int(round((p[1] - y0c + 0.5) * zoom))

    x0, y0, x1, y1 = ov.line_px
    length_nm = math.hypot(x1 - x0, y1 - y0) * ov.pixel_size_nm
    cv2.line(rgb, to_px(ov.point(0, i, raw)), to_px(ov.point(length_nm, i, raw)), _AXIS, max(1, thick // 2),
             cv2.LINE_AA)
    if ov.edge_s_nm is not None and ov.edge_diameter_nm is not None and i < len(ov.edge_diameter_nm):
        _draw_edges(rgb, ov, i, raw, to_px, thick)
    for p in ov.probes_nm:
        cv2.circle(rgb, to_px(ov.point(p, i, raw)), 4 * thick, _PROBE, thick, cv2.LINE_AA)
    if ov.front_nm is not None and i < len(ov.front_nm) and np.isfinite(ov.front_nm[i]):
        cx, cy = ov.point(float(ov.front_nm[i]), i, raw)
        ux, uy = (x1 - x0) / (length_nm / ov.pixel_size_nm), (y1 - y0) / (length_nm / ov.pixel_size_nm)
        half = 12.0
        a = (cx - uy * half, cy + ux * half)
        b = (cx + uy * half, cy - ux * half)
        cv2.line(rgb, to_px(a), to_px(b), _FRONT, thick + 1, cv2.LINE_AA)


def _draw_edges(rgb, ov: Overlay, i: int, raw: bool, to_px, thick: int):
    import cv2

    x0, y0, x1, y1 = ov.line_px
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0:
        return
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    s_px = np.asarray(ov.edge_s_nm, float) / ov.pixel_size_nm
    half = 0.5 * np.asarray(ov.edge_diameter_nm[i], float) / ov.pixel_size_nm
    if half.shape != s_px.shape:
        return
    cx, cy = x0 + ux * s_px, y0 + uy * s_px
    if raw and ov.dx_px is not None and i < len(ov.dx_px):
        cx, cy = cx + ov.dx_px[i], cy + ov.dy_px[i]
    ok = np.isfinite(half) & np.isfinite(cx) & np.isfinite(cy)
    for side in (-1.0, 1.0):
        ex, ey = cx - side * half * uy, cy + side * half * ux
        # One polyline per run of measured positions: gaps stay gaps.
        for run in np.split(np.flatnonzero(ok), np.flatnonzero(np.diff(np.flatnonzero(ok)) > 1) + 1):
            if run.size >= 2:
                pts = np.array([to_px((ex[j], ey[j])) for j in run], dtype=np.int32)
                cv2.polylines(rgb, [pts], False, _EDGE, max(1, thick // 2), cv2.LINE_AA)


_TRACE_COLORS = {"current": (255, 90, 90), "voltage": (110, 170, 255), "temperature": (255, 170, 60)}
_TRACE_UNITS = {"current": ("current_A", "A"), "voltage": ("voltage_V", "V"), "temperature": ("temperature_C", "C")}


@dataclass
class Trace:
    """A logged quantity for the strip chart under the frames, on the movie's clock.

    ``time_s`` movie times, ``values`` in ``unit`` (already scaled, e.g. uA), ``quantity`` one of
    'current', 'voltage', 'temperature'.
    """

    time_s: np.ndarray
    values: np.ndarray
    quantity: str
    unit: str

    @classmethod
    def from_results(cls, results: dict, quantity: str = "auto") -> "Trace | None":
        """The ``stimulus`` block of an ``analyze`` ``results.json`` (None when there is none).

        ``quantity``: 'current', 'voltage', 'temperature' or 'auto' (the first of them logged).
        """
        st = results.get("stimulus") or {}
        names = list(_TRACE_UNITS) if quantity == "auto" else [quantity]
        if quantity != "auto" and quantity not in _TRACE_UNITS:
            raise ParameterError(f"trace must be 'auto', 'current', 'voltage' or 'temperature', got {quantity!r}")
        for name in names:
            key, unit = _TRACE_UNITS[name]
            raw = st.get(key)
            if raw is None or st.get("time_s") is None:
                continue
            v = np.asarray([np.nan if x is None else x for x in raw], dtype=float)
            if not np.isfinite(v).any():
                continue
            factor, prefix = 1.0, ""
            if unit != "C":
                top = float(np.nanmax(np.abs(v)))
                for factor, prefix in ((1.0, ""), (1e3, "m"), (1e6, "u"), (1e9, "n"), (1e12, "p")):
                    if top == 0 or top * factor >= 1.0:
                        break
            return cls(time_s=np.asarray(st["time_s"], float), values=v * factor, quantity=name,
                       unit=prefix + unit)
        if quantity != "auto":
            raise ParameterError(f"the results have no logged {quantity} to draw")
        return None

    def strip(self, width: int, now_s: float, span_s: tuple[float, float], font_scale: float,
              thick: int) -> np.ndarray:
        """An RGB strip ``width`` px wide: the trace over ``span_s``, a cursor and the value at ``now_s``."""
        import cv2

        height = max(48, int(round(width * 0.18)))
        img = np.zeros((height, width, 3), np.uint8)
        fs = 0.8 * font_scale
        pad = int(6 + 10 * fs)
        x_left, x_right = pad, width - pad
        y_top, y_bot = pad + int(14 * fs), height - pad // 2
        t0, t1 = span_s
        if not t1 > t0:
            t1 = t0 + 1.0
        sel = (self.time_s >= t0) & (self.time_s <= t1)
        v = self.values[sel]
        finite = v[np.isfinite(v)]
        v_lo, v_hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if v_hi - v_lo < 1e-12 * max(1.0, abs(v_hi)):
            v_lo, v_hi = v_lo - 1.0, v_hi + 1.0

        def xy(t, val):
            x = x_left + (t - t0) / (t1 - t0) * (x_right - x_left)
            y = y_bot - (val - v_lo) / (v_hi - v_lo) * (y_bot - y_top)
            return x, y

        cv2.rectangle(img, (x_left, y_top), (x_right, y_bot), (70, 70, 70), 1)
        color = _TRACE_COLORS.get(self.quantity, _WHITE)
        xs, ys = xy(self.time_s[sel], v)
        ok = np.isfinite(ys)
        idx = np.flatnonzero(ok)
        for run in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1):
            if run.size >= 2:
                pts = np.round(np.column_stack([xs[run], ys[run]])).astype(np.int32)
                cv2.polylines(img, [pts], False, color, max(1, thick), cv2.LINE_AA)
        cx = int(round(xy(min(max(now_s, t0), t1), 0.0)[0]))
        cv2.line(img, (cx, y_top), (cx, y_bot), _WHITE, 1, cv2.LINE_8)
        now = np.interp(now_s, self.time_s, self.values, left=np.nan, right=np.nan) if self.time_s.size else np.nan
        text = f"{self.quantity} ({self.unit})" + (f": {now:.3g}" if np.isfinite(now) else "")
        cv2.putText(img, text, (x_left, y_top - 4), cv2.FONT_HERSHEY_SIMPLEX, fs, _WHITE, max(1, thick - 1),
                    cv2.LINE_AA)
        rng = f"{v_lo:.3g} .. {v_hi:.3g}"
        (tw, _), _ = cv2.getTextSize(rng, cv2.FONT_HERSHEY_SIMPLEX, fs, max(1, thick - 1))
        cv2.putText(img, rng, (x_right - tw, y_top - 4), cv2.FONT_HERSHEY_SIMPLEX, fs, (170, 170, 170),
                    max(1, thick - 1), cv2.LINE_AA)
        return img


def export_video(movie: Movie, out_path: str | os.PathLike, *, fps: float | None = None,
                 frames: range | None = None, quality: int = 8,
                 progress: Callable[[int, int], None] | None = None,
                 cancel: threading.Event | None = None, **annotate) -> Path:
    """Write an annotated MP4 (H.264) or GIF, atomically.

    Parameters
    ----------
    movie : Movie
    out_path : path-like
        ``.mp4`` or ``.gif``.
    fps : float, optional
        Output frame rate (default: real time when the movie has timing, capped to 2-30 fps).
    frames : range, optional
    quality : int
        ffmpeg quality 0-10 for MP4.
    progress, cancel
        As for the pipelines.
    **annotate
        Passed to :func:`annotated_frames` (crop, contrast, overlay, scale_bar, timestamp, ...).
    """
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ParameterError(f"{out_path}: the movie format must be .mp4 or .gif")
    frames = frames or range(movie.n_frames)
    real_fps = 1.0 / movie.frame_interval_s if movie.frame_interval_s else None
    if fps is None:
        fps = min(30.0, max(2.0, real_fps or 10.0))
    if not (fps > 0):
        raise ParameterError(f"fps must be positive, got {fps}")
    speed_up = fps / real_fps if real_fps else None
    gen = annotated_frames(movie, frames=frames, speed_up=speed_up, **annotate)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.stem}.", suffix=suffix, dir=out_path.parent)
    os.close(fd)
    from temtrack.io.results import publish_mode
    publish_mode(tmp)
    try:
        first = next(gen)
        h, w = first.shape[:2]
        total = len(frames)
        if suffix == ".mp4":
            import imageio_ffmpeg
            # yuv420p needs even sizes.
            pad_w, pad_h = w + (w % 2), h + (h % 2)
            writer = imageio_ffmpeg.write_frames(tmp, (pad_w, pad_h), fps=fps, codec="libx264", quality=quality,
                                                 pix_fmt_in="rgb24", pix_fmt_out="yuv420p", macro_block_size=1,
                                                 ffmpeg_log_level="error", output_params=["-preset", "veryfast"])
            writer.send(None)
            try:
                for k, frame in enumerate(_chain(first, gen)):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("export cancelled")
                    if (pad_w, pad_h) != (w, h):
                        frame = np.pad(frame, ((0, pad_h - h), (0, pad_w - w), (0, 0)))
                    writer.send(np.ascontiguousarray(frame))
                    if progress:
                        progress(k + 1, total)
            finally:
                writer.close()
        else:
            from PIL import Image
            images = []
            for k, frame in enumerate(_chain(first, gen)):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("export cancelled")
                images.append(Image.fromarray(frame).convert("P", palette=Image.ADAPTIVE, colors=255))
                if progress:
                    progress(k + 1, total)
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=int(round(1000 / fps)), loop=0)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def _chain(first, rest):
    yield first
    yield from rest
