"""Phase library: lattice d-spacings, structure-factor intensities, user extension, onsets, NNLS."""
from __future__ import annotations

import numpy as np
import pytest

from temtrack.errors import ParameterError
from temtrack.phases import default_library
from temtrack.phases.lattice import d_spacings, expand_orbit, parse_symop, space_group_operations
from temtrack.phases.library import PhaseLibrary, phase_from_entry
from temtrack.series.phase_fractions import fit_phase_fractions, match_rings, onset_times

REQUIRED = ["beta-Sn", "amorphous-NaxSn", "Na15Sn4", "NaSn", "Sb", "Na3Sb", "SnSb", "Na2O", "ZnO", "Zn",
            "NaZn13", "alpha-MoO3", "Mo", "Na2S", "FeS2", "alpha-Fe", "NaF", "Na2CO3", "graphite"]


@pytest.fixture(scope="module")
def lib():
    return default_library()


def test_all_required_phases_with_sources(lib):
    for name in REQUIRED:
        ph = lib[name]
        assert ph.source, name
        assert ph.d_A.size >= 1 and np.all(np.diff(ph.d_A) < 0), name
        assert ph.intensity.max() == pytest.approx(100.0)
    assert lib["amorphous-NaxSn"].is_amorphous
    assert lib["amorphous-NaxSn"].d_A[np.argmax(lib["amorphous-NaxSn"].intensity)] == pytest.approx(2.9, abs=0.05)


def test_d_spacings_from_lattice_match_hand_formulas(lib):
    a, c = 5.8318, 3.1818
    sn = lib["beta-Sn"]
    expect = {"200": a / 2, "101": 1 / np.sqrt(1 / a ** 2 + 1 / c ** 2), "220": a / np.sqrt(8),
              "211": 1 / np.sqrt(5 / a ** 2 + 1 / c ** 2)}
    for hkl, d in expect.items():
        assert sn.d_A[sn.hkl.index(hkl)] == pytest.approx(d, abs=1e-4), hkl
    na = lib["Na15Sn4"]
    assert na.d_A[na.hkl.index("332")] == pytest.approx(13.14 / np.sqrt(22), abs=1e-4)
    # Hexagonal metric: Zn 100 = a*sqrt(3)/2; monoclinic: Na2CO3 d(001) = c sin(beta).
    zn = lib["Zn"]
    assert zn.d_A[zn.hkl.index("100")] == pytest.approx(2.6649 * np.sqrt(3) / 2, abs=1e-4)
    d001 = d_spacings(np.array([[0, 0, 1]]), (8.920, 5.245, 6.050, 90, 101.35, 90))[0]
    assert d001 == pytest.approx(6.050 * np.sin(np.radians(101.35)), abs=1e-6)


def test_structure_factor_extinctions_and_strongest_rings(lib):
    # Body centring: no h+k+l odd ring in alpha-Fe; fcc NaF: no mixed-parity ring.
    assert "100" not in lib["alpha-Fe"].hkl and "110" in lib["alpha-Fe"].hkl
    assert "210" not in lib["NaF"].hkl and "100" not in lib["NaF"].hkl
    # Diamond-glide extinction of beta-Sn (I41/amd): 200 present, 002 absent, 004 present.
    assert "200" in lib["beta-Sn"].hkl and "002" not in lib["beta-Sn"].hkl
    # Known strongest lines (ICDD): beta-Sn 200 then 101; Sb 012; graphite 002; Mo 110.
    top = lambda name: lib[name].hkl[int(np.argmax(lib[name].intensity))]  # noqa: E731
    assert top("beta-Sn") == "200" and top("Sb") == "012" and top("graphite") == "002" and top("Mo") == "110"
    sn = lib["beta-Sn"]
    assert sn.intensity[sn.hkl.index("101")] > 70


def test_space_group_orbits_and_symop_parser():
    rot, tr = parse_symop("-y+1/2, x, z+3/4")
    np.testing.assert_allclose(rot @ [0.1, 0.2, 0.3] + tr, [0.3, 0.1, 1.05])
    ops, cen = space_group_operations("I -4 3 d")
    assert len(expand_orbit([0.375, 0, 0.25], ops, cen)) == 12
    assert len(expand_orbit([0.1, 0.2, 0.3], ops, cen)) == 48
    with pytest.raises(ParameterError, match="space group"):
        space_group_operations("X 9 9 9")
    with pytest.raises(ParameterError, match="multiplicity"):
        phase_from_entry({"name": "bad", "space_group": "F m -3 m", "lattice": {"a": 4},
                          "atoms": [{"el": "Na", "xyz": [0, 0, 0], "mult": 8}]})


def test_space_group_table_matches_gemmi():
    gemmi = pytest.importorskip("gemmi")
    for sym in ("I -4 3 d", "F m -3 c", "P b n m", "R -3 m:H"):
        ours, cen = space_group_operations(sym)
        ref = gemmi.find_spacegroup_by_name(sym).operations()
        assert len(ours) * len(cen) == len(list(ref))


def test_user_yaml_csv_and_cif_extension(tmp_path, lib):
    y = tmp_path / "mine.yaml"
    y.write_text("phases:\n  - name: NaCl\n    space_group: F m -3 m\n    lattice: {a: 5.64}\n"
                 "    atoms:\n      - {el: Na, xyz: [0, 0, 0], mult: 4}\n      - {el: Cl, xyz: [0.5, 0.5, 0.5], mult: 4}\n"
                 "    source: test\n", encoding="utf-8")
    c = tmp_path / "lines.csv"
    c.write_text("name,d_A,intensity,hkl\nX1,3.0,100,111\nX1,2.5,40,200\n", encoding="utf-8")
    mine = lib.copy()
    assert mine.add_file(y) == ["NaCl"] and mine.add_file(c) == ["X1"]
    assert mine["NaCl"].d_A[mine["NaCl"].hkl.index("200")] == pytest.approx(2.82, abs=1e-6)
    assert list(mine["X1"].d_A) == [3.0, 2.5] and mine["X1"].intensity[1] == pytest.approx(40)
    assert "NaCl" not in lib  # the built-in library is not modified
    bad = tmp_path / "bad.csv"
    bad.write_text("d,intensity\n1,2\n", encoding="utf-8")
    with pytest.raises(ParameterError, match="name,d_A"):
        mine.add_file(bad)
    pytest.importorskip("gemmi")
    cif = tmp_path / "nacl.cif"
    cif.write_text("data_NaCl\n_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n"
                   "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
                   "_symmetry_space_group_name_H-M 'F m -3 m'\n"
                   "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
                   "_atom_site_fract_z\nNa1 Na 0 0 0\nCl1 Cl 0.5 0.5 0.5\n", encoding="utf-8")
    name = mine.add_file(cif)[0]
    np.testing.assert_allclose(mine[name].d_A, mine["NaCl"].d_A, atol=1e-6)
    np.testing.assert_allclose(mine[name].intensity, mine["NaCl"].intensity, rtol=0.02, atol=0.05)


def test_profile_normalisation_and_width(lib):
    q = np.arange(0.5, 12.0, 0.001)
    ph = lib["beta-Sn"]
    p1 = ph.profile(q, fwhm_q_nm_inv=0.03)
    p2 = ph.profile(q, fwhm_q_nm_inv=0.06)
    expect = np.sum(ph.intensity[ph.d_A >= 1.0] / (2 * np.pi * ph.q_nm_inv[ph.d_A >= 1.0])) / ph.intensity[ph.d_A >= 1.0].sum()
    assert np.trapezoid(p1, q) == pytest.approx(expect, rel=1e-3)
    assert np.trapezoid(p2, q) == pytest.approx(expect, rel=1e-3)
    assert p1.max() > 1.8 * p2.max()
    with pytest.raises(ParameterError, match="fwhm_q_nm_inv"):
        ph.profile(q)


def test_onset_definition():
    t = np.arange(20) * 2.0
    f = np.zeros(20)
    f[5] = 0.5          # one-frame spike: not an onset
    f[9:] = 0.4
    out = onset_times(t, {"a": f, "b": np.ones(20), "c": np.zeros(20)}, threshold=0.1, persist_frames=3)
    assert out == {"a": 18.0, "b": 0.0, "c": None}
    with pytest.raises(ParameterError):
        onset_times(t, {"a": f}, threshold=1.5)


def test_nnls_recovers_known_mixture_and_matching(lib):
    q = np.arange(1.0, 5.5, 0.01)
    names = ["beta-Sn", "amorphous-NaxSn", "Na15Sn4"]
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 1, (12, 3))
    truth /= truth.sum(axis=1, keepdims=True)
    comps = np.stack([lib[n].profile(q, fwhm_q_nm_inv=None if lib[n].is_amorphous else 0.04) for n in names])
    bg = 0.5 * np.exp(-q / 1.5) + 0.05
    Y = 100 * (truth @ comps + bg)
    Y = rng.poisson(Y * 50) / 50.0
    fit = fit_phase_fractions(q, Y, lib, names, fwhm_q_nm_inv=0.04)
    for j, n in enumerate(names):
        err = np.max(np.abs(fit["fractions"][n] - truth[:, j]))
        print(f"{n}: max fraction error {err:.4f}")
        assert err < 0.05  # the broad halo trades a little with the smooth background
    m = match_rings([2.7935, 2.8013, 9.9], lib, phases=["beta-Sn", "Na15Sn4"], tol_A=0.005)
    assert m[0][0]["phase"] == "beta-Sn" and m[0][0]["hkl"] == "101"
    assert m[1][0]["phase"] == "Na15Sn4" and m[1][0]["hkl"] == "332"
    assert m[2] == []
    assert isinstance(PhaseLibrary([lib["Mo"]]).subset(["Mo"]), PhaseLibrary)
