"""Qt-free helpers of the GUI: recipes from the widgets' state, overlay geometry, result tables.

Nothing here measures anything: the numbers come from the core's result objects (``to_json()``);
this module only turns them into what the widgets draw (points along the drawn line, the wire's
edge lines, fitted curves evaluated with :func:`temtrack.series.kinetics.model_curve`) and into
text. Keeping it free of Qt lets the geometry be tested without a display.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from temtrack.errors import TemtrackError


def file_dialog_filter() -> str:
    """The Open dialog's filter string, from the readers' own list of formats."""
    from temtrack.io import file_dialog_filter as core_filter
    return core_filter()


def recipe_fields(recipe_cls) -> set[str]:
    """Names of the fields of a recipe dataclass."""
    return {f.name for f in dataclasses.fields(recipe_cls)}


def build_recipe(recipe_cls, base=None, **params):
    """A recipe of ``recipe_cls`` from ``base`` (or the defaults) with the given fields changed.

    Parameters the recipe class does not have are ignored (the widgets offer a superset); ``None``
    is a value like any other (e.g. ``width_px=None``: measured by the analysis). The recipe's own
    ``validate`` runs, so a bad value raises the core's ``ParameterError`` with its message.
    """
    names = recipe_fields(recipe_cls)
    changes = {k: v for k, v in params.items() if k in names}
    if base is None:
        recipe = recipe_cls(**changes)
        recipe.validate()
        return recipe
    return base.replace(**changes)


def nearest_frame(times_s: np.ndarray | None, t: float, n_frames: int) -> int:
    """Index of the frame closest in time to ``t`` (frame numbers when there is no timing)."""
    if times_s is None:
        return int(np.clip(round(t), 0, n_frames - 1))
    return int(np.argmin(np.abs(np.asarray(times_s) - t)))


def frame_axis(times_s: np.ndarray | None, n_frames: int) -> tuple[np.ndarray, str]:
    """The x axis the result plots share: times in s, or frame numbers for untimed movies."""
    if times_s is None:
        return np.arange(n_frames, dtype=float), "frame"
    return np.asarray(times_s, dtype=float), "time (s)"


def point_along(line: Sequence[float], distance_px: float) -> tuple[float, float]:
    """(x, y) at ``distance_px`` from the start of ``line`` = [x0, y0, x1, y1] along it."""
    x0, y0, x1, y1 = map(float, line)
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0:
        return x0, y0
    return x0 + (x1 - x0) * distance_px / length, y0 + (y1 - y0) * distance_px / length


def edge_polylines(line: Sequence[float], s_px: np.ndarray, diameter_px: np.ndarray
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two wire edges as polylines: the axis offset by ± half the measured diameter.

    ``s_px`` are distances from the start of ``line`` where ``diameter_px`` was measured (NaN where
    not measured: the polylines have gaps there, drawn with ``connect='finite'``).
    """
    x0, y0, x1, y1 = map(float, line)
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0 or len(s_px) == 0:
        return []
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    nx, ny = -uy, ux
    s = np.asarray(s_px, dtype=float)
    half = 0.5 * np.asarray(diameter_px, dtype=float)
    cx, cy = x0 + ux * s, y0 + uy * s
    return [(cx + side * half * nx, cy + side * half * ny) for side in (-1.0, 1.0)]


def shift_line(line: Sequence[float], dy_px: float, dx_px: float) -> list[float]:
    """The line moved with the specimen: frame-0 coordinates to those of a drifted frame."""
    x0, y0, x1, y1 = map(float, line)
    return [x0 + dx_px, y0 + dy_px, x1 + dx_px, y1 + dy_px]


def fitted_curves(kinetics: dict | None, time_s: np.ndarray) -> dict[str, np.ndarray]:
    """Every fitted kinetics model of a ``kinetics`` result block evaluated at ``time_s``.

    Uses the core's :func:`temtrack.series.kinetics.model_curve`, so the curves are exactly the
    models the fit reported. Models that were not fitted are skipped.
    """
    if not kinetics:
        return {}
    from temtrack.series.kinetics import model_curve

    prefactor = float(kinetics.get("prefactor") or 2.0)
    out = {}
    for name, fit in (kinetics.get("comparison") or {}).items():
        if not fit or not fit.get("fittable", True) or not fit.get("params"):
            continue
        try:
            out[name] = model_curve(name, time_s, fit["params"], prefactor=prefactor)
        except (KeyError, ValueError, TemtrackError):  # a model or parameter this core does not know
            continue
    return out


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "∞" if v > 0 else ("–∞" if v < 0 else "nan")
    return f"{v:.{digits}g}"


def format_with_ci(value: float | None, ci: Sequence[float | None] | None, unit: str = "",
                   digits: int = 4) -> str:
    """``'12.3 [11.8, 12.9] nm²/s'``: a value with its 95% interval; unbounded sides as '∞'."""
    text = _fmt(value, digits)
    if ci is not None and len(ci) == 2:
        lo = "–∞" if ci[0] is None else _fmt(ci[0], digits)
        hi = "∞" if ci[1] is None else _fmt(ci[1], digits)
        text += f"  [{lo}, {hi}]"
    if unit and value is not None:
        text += f" {unit}"
    return text


def kinetics_rows(kinetics: dict | None) -> list[tuple[str, str, float | None]]:
    """(label, text, value) rows for the results panel from a ``kinetics`` block."""
    if not kinetics:
        return []
    ci = kinetics.get("ci95") or {}
    rows = [
        ("model", str(kinetics.get("model")), None),
        ("D", format_with_ci(kinetics.get("D_nm2_per_s"), ci.get("D_nm2_per_s"), "nm²/s"),
         kinetics.get("D_nm2_per_s")),
        ("D (cm²/s)", format_with_ci(kinetics.get("D_cm2_per_s"), ci.get("D_cm2_per_s"), "cm²/s"),
         kinetics.get("D_cm2_per_s")),
        ("k", format_with_ci(kinetics.get("k_nm_per_s"), ci.get("k_nm_per_s"), "nm/s"),
         kinetics.get("k_nm_per_s")),
        ("n", format_with_ci(kinetics.get("n"), ci.get("n")), kinetics.get("n")),
        ("t0", format_with_ci(kinetics.get("t0_s"), ci.get("t0_s"), "s"), kinetics.get("t0_s")),
    ]
    if kinetics.get("prefactor") is not None:
        convention = f"{kinetics.get('convention', 'x^2 = P*D*(t - t0)')}, P = {_fmt(kinetics['prefactor'])}"
        rows.append(("convention", convention, kinetics["prefactor"]))
    comparison = kinetics.get("comparison") or {}
    if comparison:
        parts = []
        for name, fit in comparison.items():
            d = fit.get("delta_aicc") if isinstance(fit, dict) else None
            parts.append(f"{name} ΔAICc={_fmt(d, 3)}" if d is not None else f"{name}: not fitted")
        rows.append(("models", "; ".join(parts), None))
    return rows


def expansion_rows(expansion: dict | None) -> list[tuple[str, str, float | None]]:
    """(label, text, value) rows for the expansion block: each figure with its 95% interval."""
    if not isinstance(expansion, dict) or not expansion:
        return []
    if expansion.get("error"):
        return [("expansion", f"not measured: {expansion['error']}", None)]
    ci = expansion.get("ci95") or {}
    rows = []
    units = {"d0_nm": "nm", "d1_nm": "nm", "radial_expansion_rate_nm_per_s": "nm/s"}
    for key in ("d0_nm", "d1_nm", "diameter_ratio", "areal_expansion", "volume_expansion_no_axial_strain",
                "volume_expansion_with_axial_strain", "axial_strain", "radial_expansion_rate_nm_per_s"):
        if key in expansion and not isinstance(expansion[key], (dict, list)):
            rows.append((key, format_with_ci(expansion[key], ci.get(key), units.get(key, "")), expansion[key]))
    if expansion.get("rate_probe_nm") is not None:
        rows.append(("rate_probe_nm", _fmt(expansion["rate_probe_nm"]) + " nm", expansion["rate_probe_nm"]))
    return rows


def flat_rows(block: Any, prefix: str = "", *, max_list: int = 6) -> list[tuple[str, str]]:
    """(key, text) rows for a nested result block (expansion figures, rings summary ...).

    Scalars are formatted; long lists (time series) are summarised by their length, since the plots
    show them.
    """
    rows: list[tuple[str, str]] = []
    if isinstance(block, dict):
        for k, v in block.items():
            rows.extend(flat_rows(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}",
                                  max_list=max_list))
        return rows
    if isinstance(block, (list, tuple)):
        if len(block) <= max_list and all(not isinstance(v, (list, dict)) for v in block):
            return [(prefix.rstrip("."), "[" + ", ".join(_fmt(v) for v in block) + "]")]
        return [(prefix.rstrip("."), f"{len(block)} values")]
    if isinstance(block, (bool, np.bool_)):
        return [(prefix.rstrip("."), "yes" if block else "no")]
    if isinstance(block, (int, float)) or block is None:
        return [(prefix.rstrip("."), _fmt(block))]
    return [(prefix.rstrip("."), str(block))]


def series_in(block: dict | None, n: int | None = None) -> dict[str, np.ndarray]:
    """The numeric lists of a result block that run over time (same length as ``time_s``)."""
    if not isinstance(block, dict):
        return {}
    t = block.get("time_s")
    n = len(t) if t is not None and n is None else n
    out = {}

    def visit(d: dict, prefix: str):
        for k, v in d.items():
            if k == "time_s":
                continue
            if isinstance(v, dict):
                visit(v, f"{prefix}{k}.")
            elif isinstance(v, (list, tuple, np.ndarray)) and len(v) == n and n:
                try:
                    arr = np.array([np.nan if x is None else x for x in v], dtype=float)
                except (TypeError, ValueError):
                    continue
                if arr.ndim == 1:
                    out[prefix + k] = arr

    visit(block, "")
    return out


def parse_probes(text: str) -> list[float]:
    """'20, 60 100' -> [20.0, 60.0, 100.0] (positions along the wire in nm)."""
    from temtrack.errors import ParameterError

    values = []
    for tok in text.replace(";", ",").replace(",", " ").split():
        try:
            v = float(tok)
        except ValueError:
            raise ParameterError(f"probe positions: expected numbers in nm, got {tok!r}") from None
        if not math.isfinite(v) or v < 0:
            raise ParameterError(f"probe positions must be distances >= 0 nm along the wire, got {tok}")
        values.append(v)
    return values


def nice_length(target: float) -> float:
    """The 1-2-5 number closest below ``target`` (for the scale bar)."""
    if not (target > 0 and math.isfinite(target)):
        return 1.0
    exp = math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * 10 ** exp <= target:
            return m * 10 ** exp
    return 10 ** exp


def as_list(values: Iterable | None) -> list | None:
    return None if values is None else [float(v) for v in values]


# -- annotated video ---------------------------------------------------------------------------------
def per_movie_frame(values, frame_index, n_frames: int) -> np.ndarray:
    """Values measured at ``frame_index`` (an analysed frame range) spread onto every movie frame.

    Row ``k`` of ``values`` goes to movie frame ``frame_index[k]``; frames outside the analysed
    range are NaN. Works for 1-D series and for (frames, positions) maps.
    """
    values = np.asarray(values, dtype=float)
    out = np.full((int(n_frames), *values.shape[1:]), np.nan)
    idx = np.asarray(frame_index, dtype=int)
    ok = (idx >= 0) & (idx < n_frames)
    out[idx[ok]] = values[: idx.size][ok]
    return out


def video_overlay(result, n_frames: int, drift=None):
    """The :class:`temtrack.export.annotated_video.Overlay` of an ``analyze`` result for a movie of
    ``n_frames``: wire axis, front, edges and probes, with the drift of the result (or ``drift``,
    a DriftResult of the whole movie, outside the analysed range)."""
    from temtrack.export.annotated_video import Overlay

    line = (getattr(result, "wire", None) or {}).get("line_px")
    px = getattr(result, "pixel_size_nm", None)
    if line is None or not px:
        raise TemtrackError("the analysis has no wire line or pixel size to draw")
    frames = np.asarray(result.frame_index)
    dy = dx = None
    if drift is not None and len(getattr(drift, "dy_px", [])) == n_frames:
        dy, dx = np.asarray(drift.dy_px, float).copy(), np.asarray(drift.dx_px, float).copy()
    if getattr(result, "drift_dy_px", None) is not None:
        ady = per_movie_frame(result.drift_dy_px, frames, n_frames)
        adx = per_movie_frame(result.drift_dx_px, frames, n_frames)
        dy = ady if dy is None else np.where(np.isfinite(ady), ady, dy)
        dx = adx if dx is None else np.where(np.isfinite(adx), adx, dx)
    if dy is not None:
        # Outside the known drift the overlay stays where frame 0 put it.
        dy, dx = np.nan_to_num(dy, nan=0.0), np.nan_to_num(dx, nan=0.0)
    diameter = getattr(result, "diameter", None)
    dmap, s_nm = getattr(diameter, "map_nm", None), getattr(diameter, "s_nm", None)
    probes = tuple(float(p) for p in (getattr(diameter, "probes", None) or {}))
    return Overlay(line_px=[float(v) for v in line], pixel_size_nm=float(px),
                   front_nm=per_movie_frame(result.front.position_nm, frames, n_frames),
                   probes_nm=probes, dy_px=dy, dx_px=dx,
                   edge_s_nm=None if dmap is None or s_nm is None else np.asarray(s_nm, float),
                   edge_diameter_nm=None if dmap is None or s_nm is None else per_movie_frame(dmap, frames, n_frames))


def clip_rect(rect: Sequence[float], frame_shape: Sequence[int]) -> list[int] | None:
    """``[x, y, w, h]`` (px) clipped to a frame of ``(rows, cols)``; None when nothing is left."""
    x, y, w, h = (int(round(float(v))) for v in rect)
    rows, cols = (int(v) for v in frame_shape)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(cols, x + w), min(rows, y + h)
    if x1 <= x0 or y1 <= y0:
        return None
    return [x0, y0, x1 - x0, y1 - y0]


def contrast_from_levels(levels, log_display: bool) -> tuple[float, float]:
    """The viewer's display levels as counts: undo the log(1 + I) of the log display."""
    lo, hi = (float(v) for v in levels)
    if log_display:
        lo, hi = math.expm1(lo), math.expm1(hi)
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


# -- stimulus log ------------------------------------------------------------------------------------
def current_scale(current_A) -> tuple[float, str]:
    """(factor, unit) so that ``factor * current_A`` reads in A, mA, µA, nA or pA."""
    values = np.abs(np.asarray(current_A, dtype=float))
    values = values[np.isfinite(values) & (values > 0)]
    top = float(np.max(values)) if values.size else 1.0
    for factor, unit in ((1.0, "A"), (1e3, "mA"), (1e6, "µA"), (1e9, "nA")):
        if top * factor >= 1.0:
            return factor, unit
    return 1e12, "pA"


# -- particles ---------------------------------------------------------------------------------------
_UNIT_CIRCLE = np.exp(1j * np.linspace(0.0, 2.0 * np.pi, 49))


def particle_outlines(result, index: int, *, aligned: bool) -> dict:
    """Outlines and labels of the tracked particles in frame ``index``, from a ParticlesResult.

    Each particle is drawn as the circle of its fitted equivalent diameter around its fitted
    centre. ``aligned`` gives frame-0 coordinates (the drift-corrected view), else the frame's own
    pixel coordinates. Returns ``x``, ``y`` (all circles in one polyline, NaN between circles),
    and per particle ``label_xy`` (N, 2), ``ids`` and ``cracked``; particles without a fit in this
    frame are left out.
    """
    n_frames = len(result.time_s)
    if not 0 <= index < n_frames:
        return {"x": np.array([]), "y": np.array([]), "label_xy": np.zeros((0, 2)), "ids": [], "cracked": []}
    cy = np.asarray(result.y_px[index], float).copy()
    cx = np.asarray(result.x_px[index], float).copy()
    if aligned:
        cy -= float(result.drift_dy_px[index])
        cx -= float(result.drift_dx_px[index])
    r_px = 0.5 * np.asarray(result.equivalent_diameter_nm[index], float) / float(result.pixel_size_nm)
    ok = np.isfinite(cx) & np.isfinite(cy) & np.isfinite(r_px) & (r_px > 0)
    k = np.flatnonzero(ok)
    ring = np.concatenate([_UNIT_CIRCLE, [np.nan]])
    circles = (cx[k, None] + 1j * cy[k, None]) + r_px[k, None] * ring[None, :]
    xs = np.where(np.isnan(ring)[None, :], np.nan, circles.real).ravel()
    ys = np.where(np.isnan(ring)[None, :], np.nan, circles.imag).ravel()
    # Labels sit on the upper-right of each outline, clear of the particle.
    label_xy = np.column_stack([cx[k] + 0.7 * r_px[k], cy[k] - 0.7 * r_px[k]])
    return {"x": xs, "y": ys, "label_xy": label_xy, "ids": [int(result.ids[j]) for j in k],
            "cracked": [bool(result.cracked[j]) for j in k]}


def particle_rows(data: dict) -> list[tuple[str, str, float | None]]:
    """(label, text, value) rows for the results panel from a particles ``results.json`` mapping."""
    summary = data.get("summary") or {}
    rows = [("particles", str(summary.get("n_particles", 0)), summary.get("n_particles")),
            ("cracked", str(summary.get("n_cracked", 0)), summary.get("n_cracked")),
            ("with onset", str(summary.get("n_with_onset", 0)), summary.get("n_with_onset"))]
    for key, label in (("final_volume_expansion_mean", "volume expansion (mean)"),
                       ("final_volume_expansion_median", "volume expansion (median)")):
        v = summary.get(key)
        rows.append((label, "–" if v is None else f"{100 * float(v):.1f} %", v))
    return rows


def particle_text(p: dict) -> str:
    """One line per particle: initial size, final expansion, onset, cracking."""
    parts = [f"d0 = {_fmt(p.get('initial_equivalent_diameter_nm'), 3)} nm"]
    ve = p.get("final_volume_expansion")
    if ve is not None and math.isfinite(float(ve)):
        parts.append(f"ΔV = {100 * float(ve):.0f} %")
    onset = p.get("onset_s")
    if onset is not None and math.isfinite(float(onset)):
        parts.append(f"onset {_fmt(onset, 3)} s")
    if p.get("cracked"):
        parts.append("cracked")
    return ", ".join(parts)
