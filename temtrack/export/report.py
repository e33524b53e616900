"""``temtrack report DIR``: one self-contained HTML page from a results folder.

The page embeds every figure of the folder (PNG as base64, SVG inline), the headline numbers with
their 95% intervals, warnings, the recipe and the provenance, so it can be attached to a lab
notebook and opened years later without the folder. Plain string templating (``html.escape``)
is enough here; a template engine would be a dependency for one page.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path

from temtrack.errors import ParameterError
from temtrack.io.results import write_bytes_atomic

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4} .num{font-variant-numeric:tabular-nums;text-align:right}
figure{display:inline-block;margin:.5em;max-width:48%} figure img,figure svg{max-width:100%;height:auto}
figcaption{font-size:.85em;color:#555;text-align:center} .warn{color:#a40} pre{background:#f7f7f7;padding:.6em;overflow:auto}
"""


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.4g}"
    return html.escape(str(v))


def _ci(ci) -> str:
    if not ci or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return ""
    return f"[{_fmt(float(ci[0]))}, {_fmt(float(ci[1]))}]"


def _kv_table(rows) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td class='num'>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _kinetics_section(k: dict) -> str:
    ci = k.get("ci95") or {}
    rows = [("best model", _fmt(k.get("model")))]
    for key, label in (("D_nm2_per_s", "D (nm²/s)"), ("D_cm2_per_s", "D (cm²/s)"), ("k_nm_per_s", "k (nm/s)"),
                       ("n", "n (x ~ tⁿ)"), ("t0_s", "t₀ (s)")):
        if key in k:
            rows.append((label, f"{_fmt(k.get(key))} <small>{_ci(ci.get(key))}</small>"))
    rows.append(("convention", _fmt(k.get("convention") or f"x² = {k.get('prefactor', 2)}·D·(t − t₀)")))
    out = "<h2>Kinetics</h2>" + _kv_table(rows) + "<p><small>95% intervals in brackets.</small></p>"
    comparison = k.get("comparison") or {}
    if comparison:
        head = "<tr><th>model</th><th>AICc</th><th>BIC</th><th>RSS</th><th>parameters</th></tr>"
        body = ""
        for name, c in comparison.items():
            params = ", ".join(f"{p}={_fmt(v)}" for p, v in (c.get("params") or {}).items())
            body += (f"<tr><td>{html.escape(name)}</td><td class='num'>{_fmt(c.get('aicc'))}</td>"
                     f"<td class='num'>{_fmt(c.get('bic'))}</td><td class='num'>{_fmt(c.get('rss'))}</td>"
                     f"<td>{params or html.escape(str(c.get('reason', '')))}</td></tr>")
        out += f"<table>{head}{body}</table>"
    return out


def _dict_section(title: str, d: dict) -> str:
    rows = [(k, _fmt(v)) for k, v in d.items() if not isinstance(v, (list, dict))]
    return f"<h2>{html.escape(title)}</h2>" + _kv_table(rows) if rows else ""


def _last_finite(values):
    for v in reversed(values or []):
        if isinstance(v, (int, float)) and math.isfinite(v):
            return float(v)
    return None


def _stimulus_section(st: dict) -> str:
    """The log beside the movie: which file, how its clock was aligned, the charge at the end."""
    off = st.get("offset") or {"offset_s": st.get("offset_s"), "method": "given"}
    u = off.get("uncertainty_s")
    how = html.escape(str(off.get("method", "given")))
    if off.get("channel"):
        how += f", {html.escape(str(off['channel']))} step at log time {_fmt(off.get('log_event_s'))} s"
        if off.get("movie_event_s") is not None:
            how += f" matched to movie time {_fmt(off.get('movie_event_s'))} s"
    rows = [("log file", _fmt(Path(str(st.get("log_file", ""))).name)),
            ("log kind", _fmt(st.get("source", "csv"))),
            ("clock offset (s)", f"{_fmt(off.get('offset_s'))}" + (f" ± {_fmt(u)}" if u else "")
             + " <small>(log time = movie time + offset)</small>"),
            ("offset from", how),
            ("frames covered by the log", _fmt(100.0 * st["fraction_of_frames_covered"]) + " %"
             if isinstance(st.get("fraction_of_frames_covered"), (int, float)) else "–")]
    for key, label in (("charge_C", "charge passed by the last frame (C)"),
                       ("reacted_volume_nm3", "reacted volume at the last frame (nm³)"),
                       ("na_per_nm3", "Na per nm³ implied at the last frame")):
        v = _last_finite(st.get(key))
        if v is not None:
            rows.append((label, _fmt(v)))
    return "<h2>Stimulus log</h2>" + _kv_table(rows)


def _figures(folder: Path) -> str:
    parts = []
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() == ".png":
            data = base64.b64encode(f.read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(f.stem)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(f.name)}</figcaption></figure>")
        elif f.suffix.lower() == ".svg" and not (folder / (f.stem + ".png")).exists():
            parts.append(f"<figure>{f.read_text(encoding='utf-8')}<figcaption>{html.escape(f.name)}</figcaption></figure>")
    return "<h2>Figures</h2>" + "".join(parts) if parts else ""


def render_report(results_dir: str | os.PathLike) -> str:
    """The HTML text of the report for a results folder (``analyze``, ``rings`` or ``fft``)."""
    folder = Path(results_dir)
    path = folder / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ParameterError(f"{folder}: not a results folder (no readable results.json)") from None
    except ValueError as exc:
        raise ParameterError(f"{path}: not valid JSON ({exc})") from None
    prov = results.get("provenance") or {}
    title = f"temtrack report: {Path(str(prov.get('file', folder.name))).name}"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>temtrack {html.escape(str(prov.get('temtrack_version', '?')))} · "
             f"{html.escape(str(prov.get('finished') or prov.get('started') or ''))}</p>"]
    warnings = results.get("warnings") or []
    if warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li class='warn'>{html.escape(str(w))}</li>"
                                                         for w in warnings) + "</ul>")
    if isinstance(results.get("kinetics"), dict):
        parts.append(_kinetics_section(results["kinetics"]))
    diameter = results.get("diameter")
    if isinstance(diameter, dict):
        parts.append(_dict_section("Diameters", diameter))
    if isinstance(results.get("expansion"), dict):
        parts.append(_dict_section("Expansion", results["expansion"]))
    if isinstance(results.get("stimulus"), dict):
        parts.append(_stimulus_section(results["stimulus"]))
    if isinstance(results.get("onsets_s"), dict):
        parts.append("<h2>Phase onsets</h2>" + _kv_table([(k, f"{_fmt(v)} s") for k, v in results["onsets_s"].items()]))
    rings = results.get("rings")
    if isinstance(rings, dict) and rings.get("peaks"):
        rows = [(f"ring {i + 1}", f"d = {_fmt(p.get('d_A'))} Å, q = {_fmt(p.get('q_nm_inv'))} 1/nm"
                 + (f", {html.escape(str(p.get('phase')))}" if p.get("phase") else ""))
                for i, p in enumerate(rings["peaks"])]
        parts.append("<h2>Rings</h2>" + _kv_table(rows))
    fringes = results.get("fringes")
    if isinstance(fringes, dict) and fringes.get("sets"):
        rows = []
        for i, s in enumerate(fringes["sets"]):
            d = [v for v in s.get("d_nm", []) if v is not None]
            rows.append((f"set {i + 1}", f"d = {_fmt(d[0] if d else None)} → {_fmt(d[-1] if d else None)} nm, "
                                         f"angle {_fmt(s.get('angle_deg'))}°"))
        parts.append("<h2>Lattice fringes</h2>" + _kv_table(rows))
    parts.append(_figures(folder))
    recipe = prov.get("recipe")
    parts.append("<h2>Provenance</h2>" + _kv_table([(k, _fmt(v)) for k, v in prov.items() if k != "recipe"]))
    if recipe:
        parts.append("<h3>Recipe</h3><pre>" + html.escape(json.dumps(recipe, indent=2)) + "</pre>")
    files = ", ".join(html.escape(f.name) for f in sorted(folder.iterdir()) if f.is_file())
    parts.append(f"<p><small>Files in the folder: {files}</small></p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            + "\n".join(p for p in parts if p) + "</body></html>\n")


def write_report(results_dir: str | os.PathLike, out_path: str | os.PathLike | None = None) -> Path:
    """Write ``report.html`` (or ``out_path``) for a results folder, atomically."""
    out = Path(out_path) if out_path else Path(results_dir) / "report.html"
    return write_bytes_atomic(out, render_report(results_dir).encode("utf-8"))
