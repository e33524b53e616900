"""Every publication figure: a unit on every labelled axis, one style, and PNG + SVG + PDF that open."""
import re
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from temtrack.plots import analyze as pa
from temtrack.plots import fft as pf
from temtrack.plots import particles as pp
from temtrack.plots import rings as pr
from temtrack.plots import stats as ps
from temtrack.plots._style import STYLE

_UNIT = re.compile(r"\([^()]*\S[^()]*\)")   # "time (s)", "d (Å)", "phase fraction (of diffracted intensity)"

T = np.arange(20) * 0.5


def _rings_result():
    q = np.linspace(2, 8, 60)
    ring = SimpleNamespace(q_nm_inv=3.4, d_A=2.94, frames=np.arange(20), q_frames_nm_inv=np.full(20, 3.4))
    return SimpleNamespace(profiles=np.random.default_rng(0).uniform(1, 10, (20, 60)), q_nm_inv=q, time_s=T,
                           rings=[ring], ring_matches=[{"phase": "beta-Sn"}],
                           fractions={"beta-Sn": np.linspace(1, 0, 20), "Na15Sn4": np.linspace(0, 1, 20)},
                           onsets_s={"beta-Sn": None, "Na15Sn4": 3.0})


def _particles_result():
    area = np.column_stack([np.linspace(100, 200, 20), np.linspace(300, 500, 20)])
    return SimpleNamespace(time_s=T, n_particles=2, area_nm2=area, onset_s=np.array([1.0, np.nan]),
                           A0_nm2=np.array([100.0, 300.0]), cracked=np.array([False, True]),
                           crack_time_s=np.array([np.nan, 6.0]), ids=np.array([1, 2]),
                           final_volume_expansion=lambda: np.array([1.8, 0.9]),
                           core_radius_nm=np.column_stack([np.linspace(5, 0, 20), np.full(20, np.nan)]),
                           shrinking_core=[None, None])


def _stats_table():
    rows = [{"source": "a/results.json", "object": "wire 1", "kind": "wire", "D_nm2_per_s": 90.0,
             "D_ci95_lo": 80.0, "D_ci95_hi": 100.0, "size_nm": 40.0, "volume_expansion": 1.5, "cracked": False},
            {"source": "b/results.json", "object": "particle 3", "kind": "particle", "D_nm2_per_s": None,
             "D_ci95_lo": None, "D_ci95_hi": None, "size_nm": 25.0, "volume_expansion": 2.1, "cracked": True}]
    return SimpleNamespace(rows=rows)


def _stimulus():
    return {"time_s": T, "current_A": np.where(T > 2, -2e-6, 0.0), "voltage_V": np.where(T > 2, -0.5, 0.0),
            "temperature_C": None, "charge_C": -2e-6 * np.clip(T - 2, 0, None), "offset_s": 3.0,
            "offset": {"offset_s": 3.0, "uncertainty_s": 0.1, "method": "event"}, "notes": [[2.0, "bias on"]],
            "reacted_volume_nm3": np.pi / 4 * 60 ** 2 * 10 * np.sqrt(np.clip(T - 2, 0, None))}


FIGURES = {
    "kymograph": lambda: pa.kymograph_figure(np.random.default_rng(1).random((20, 50)), np.arange(50) * 0.8, T,
                                              front_time_s=T[4:], front_nm=10 * np.sqrt(T[4:] - 1.5),
                                              fit_time_s=T, fit_nm=10 * np.sqrt(np.clip(T - 1.5, 0, None))),
    "front": lambda: pa.front_figure(T, np.sqrt(T), np.full(20, 0.1), curves={"parabolic": np.sqrt(T)},
                                     best="parabolic"),
    "diameter": lambda: pa.diameter_figure(T, {"40": np.linspace(40, 64, 20)}, pristine_nm=40, sodiated_nm=64),
    "diameter_map": lambda: pa.diameter_map_figure(np.full((20, 30), 50.0), np.arange(30.0), T),
    "shifts": lambda: pa.shifts_figure(T, np.zeros(20), np.ones(20)),
    "stimulus": lambda: pa.stimulus_figure(T, _stimulus(), front_nm=np.sqrt(T), fit_nm=np.sqrt(T),
                                           probes={"40": np.linspace(40, 64, 20)}, pristine_nm=40.0,
                                           sodiated_nm=64.0),
    "charge_volume": lambda: pa.charge_volume_figure(_stimulus()["charge_C"], _stimulus()["reacted_volume_nm3"],
                                                     time_s=T),
    "qt_map": lambda: pr.qt_map_figure(_rings_result()),
    "phase_fractions": lambda: pr.phase_fractions_figure(_rings_result()),
    "ring_d": lambda: pr.ring_d_figure(_rings_result()),
    "fringe_spacing": lambda: pf.fringe_spacing_figure(T, np.full((20, 2), 0.29)),
    "expansion": lambda: pf.expansion_figure(T, np.zeros((20, 2)), np.zeros(20)),
    "crystalline_fraction": lambda: pf.crystalline_fraction_figure(T, np.linspace(1, 0.2, 20)),
    "power_spectrum": lambda: pf.power_spectrum_figure(np.random.default_rng(2).random((64, 64)),
                                                       pixel_size_nm=0.05, spots_g_px=np.array([[0.0, 10.0]])),
    "particle_area": lambda: pp.area_vs_time_figure(_particles_result()),
    "particle_expansion": lambda: pp.expansion_vs_size_figure(_particles_result()),
    "core_radius": lambda: pp.core_radius_figure(_particles_result()),
    "stats_D": lambda: ps.d_per_object_figure(_stats_table()),
    "stats_expansion": lambda: ps.expansion_vs_size_figure(_stats_table()),
}
# Axes whose ticks are names, not numbers: no unit to give.
CATEGORICAL = {("stats_D", "y")}


def _shares_labelled_x(ax, fig):
    return any(other is not ax and ax.get_shared_x_axes().joined(ax, other) and _UNIT.search(other.get_xlabel())
               for other in fig.axes)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_axis_has_a_unit_and_the_common_style(name):
    fig = FIGURES[name]()
    for ax in fig.axes:
        is_colorbar = hasattr(ax, "_colorbar")
        for axis in ("x", "y"):
            label = ax.get_xlabel() if axis == "x" else ax.get_ylabel()
            if (name, axis) in CATEGORICAL or (is_colorbar and not label):
                continue
            if axis == "x" and not label and _shares_labelled_x(ax, fig):
                continue   # stacked panels: the time axis is labelled once, at the bottom
            assert _UNIT.search(label), f"{name}: {axis} axis label {label!r} has no unit"
        ticks = ax.get_xticklabels() + ax.get_yticklabels()
        assert all(t.get_fontsize() == STYLE["xtick.labelsize"] for t in ticks), name
        if ax.get_ylabel():
            assert ax.yaxis.label.get_fontsize() == STYLE["axes.labelsize"], name


@pytest.mark.parametrize("name", ["stimulus", "charge_volume", "kymograph", "qt_map"])
def test_png_svg_and_pdf_open(name, tmp_path):
    from temtrack.io.results import figure_formats, save_figure_atomic
    with figure_formats(["svg", "pdf"]):
        save_figure_atomic(FIGURES[name](), tmp_path / f"{name}.png", dpi=80)
    with Image.open(tmp_path / f"{name}.png") as im:
        im.load()
        assert im.size[0] >= 300
    assert ET.parse(tmp_path / f"{name}.svg").getroot().tag.endswith("svg")
    pdf = (tmp_path / f"{name}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")


def test_vector_files_are_reproducible_and_formats_are_checked(tmp_path):
    from temtrack.errors import TemtrackError
    from temtrack.io.results import figure_formats, save_figure_atomic
    for k in (1, 2):
        with figure_formats(["svg", "pdf"]):
            save_figure_atomic(FIGURES["shifts"](), tmp_path / f"f{k}.png", dpi=50)
    assert (tmp_path / "f1.svg").read_bytes() == (tmp_path / "f2.svg").read_bytes()   # no date inside
    assert (tmp_path / "f1.pdf").read_bytes() == (tmp_path / "f2.pdf").read_bytes()
    save_figure_atomic(FIGURES["shifts"](), tmp_path / "g.png", dpi=50)                 # default: SVG only
    assert (tmp_path / "g.svg").exists() and not (tmp_path / "g.pdf").exists()
    with pytest.raises(TemtrackError, match="not supported"):
        with figure_formats(["docx"]):
            pass


def test_kymograph_draws_the_fitted_front_over_the_points():
    fig = FIGURES["kymograph"]()
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"front (measured)", "fit"}
    fit_x, fit_t = (np.asarray(v, float) for v in lines["fit"].get_data())
    ok = np.isfinite(fit_x)
    # The fitted curve: x = 10 sqrt(t - 1.5) from its start (x > 0) to the end of the movie.
    np.testing.assert_allclose(fit_x[ok], 10 * np.sqrt(fit_t[ok] - 1.5))
    assert fit_t[ok].min() == pytest.approx(2.0) and fit_t[ok].max() == pytest.approx(T[-1])
