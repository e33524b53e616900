"""The phase library: reference rings (d, relative intensity, hkl) and ring profiles per phase.

The built-in phases live in ``phases/data/phases.yaml`` with the source of every lattice; their
rings are computed from the structure (:mod:`temtrack.phases.lattice`) the first time they are
needed. Users extend the library with a YAML file (same schema), a CSV of reference lines
(``name,d_A,intensity[,hkl][,fwhm_q_nm_inv]``) or a CIF when gemmi, ase or pymatgen is installed.

Profiles: a phase's rings become an azimuthally averaged profile I(q) made of Gaussians of a given
FWHM (finite crystallite size); each ring's area in that profile is its integrated ring intensity
divided by the ring circumference 2*pi*q, and the profile of a phase is normalised so that the
rings with d >= 1 A carry a total integrated intensity of 1. The synthetic SAED movies and the
phase-fraction fit use the same function, so "phase fraction" means fraction of diffracted intensity.
"""
from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from temtrack.errors import ParameterError
from temtrack.phases import lattice as _lat

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: Rings with d >= this carry the unit total intensity of a phase profile.
NORMALISATION_D_MIN_A = 1.0


@dataclass
class Phase:
    """One reference phase.

    Attributes
    ----------
    name : str
    kind : {'crystalline', 'amorphous'}
    d_A, intensity : ndarray
        Ring d-spacings (A, decreasing) and relative integrated intensities (strongest = 100).
    hkl : list of str
        Ring labels ('' when unknown; 'halo' for amorphous halos).
    fwhm_q_nm_inv : ndarray
        Intrinsic FWHM per ring in 1/nm (halos); NaN for Bragg rings (width set by the caller).
    source : str
        Literature/database reference of the lattice or lines.
    notes : str
    """

    name: str
    kind: str
    d_A: np.ndarray
    intensity: np.ndarray
    hkl: list
    fwhm_q_nm_inv: np.ndarray
    formula: str = ""
    source: str = ""
    notes: str = ""
    multiplicity: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    @property
    def q_nm_inv(self) -> np.ndarray:
        return 10.0 / self.d_A

    @property
    def is_amorphous(self) -> bool:
        return self.kind == "amorphous"

    def rings_in(self, q_min_nm_inv: float, q_max_nm_inv: float, *, min_intensity: float = 0.0):
        """Indices of rings inside a q range and at least ``min_intensity`` (percent) strong."""
        q = self.q_nm_inv
        return np.flatnonzero((q >= q_min_nm_inv) & (q <= q_max_nm_inv) & (self.intensity >= min_intensity))

    def profile(self, q_nm_inv: np.ndarray, *, fwhm_q_nm_inv: float | None = None) -> np.ndarray:
        """Azimuthally averaged profile of one unit of this phase on a q grid (1/nm).

        Parameters
        ----------
        q_nm_inv : ndarray
            Grid of q = 1/d values in 1/nm.
        fwhm_q_nm_inv : float, optional
            FWHM of the Bragg rings in 1/nm (required for crystalline phases; halos keep their
            own width, broadened in quadrature by this one when given).
        """
        q = np.asarray(q_nm_inv, dtype=np.float64)
        widths = np.array(self.fwhm_q_nm_inv, dtype=np.float64)
        if fwhm_q_nm_inv is not None:
            if not (np.isfinite(fwhm_q_nm_inv) and fwhm_q_nm_inv > 0):
                raise ParameterError(f"ring FWHM must be a positive number of 1/nm, got {fwhm_q_nm_inv}")
            widths = np.where(np.isfinite(widths), np.sqrt(np.nan_to_num(widths) ** 2 + fwhm_q_nm_inv ** 2),
                              fwhm_q_nm_inv)
        if np.any(~np.isfinite(widths)):
            raise ParameterError(f"phase {self.name!r}: give fwhm_q_nm_inv for its Bragg rings")
        norm = self.intensity[self.d_A >= NORMALISATION_D_MIN_A].sum()
        if norm <= 0:
            norm = self.intensity.sum()
        out = np.zeros_like(q)
        sig = widths * FWHM_TO_SIGMA
        for qr, inten, s in zip(self.q_nm_inv, self.intensity, sig):
            lo, hi = np.searchsorted(q, [qr - 6 * s, qr + 6 * s])
            if hi <= lo:
                continue
            area = inten / norm / (2.0 * np.pi * qr)
            out[lo:hi] += area / (s * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((q[lo:hi] - qr) / s) ** 2)
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "formula": self.formula, "source": self.source,
                "notes": self.notes,
                "rings": [{"d_A": float(d), "q_nm_inv": float(10 / d), "intensity": float(i), "hkl": h}
                          for d, i, h in zip(self.d_A, self.intensity, self.hkl)]}


def phase_from_entry(entry: dict, *, d_min_A: float = 1.0) -> Phase:
    """Build a :class:`Phase` from one YAML/dict entry (schema of ``phases/data/phases.yaml``)."""
    if not isinstance(entry, dict) or "name" not in entry:
        raise ParameterError(f"phase entry {entry!r}: expected a mapping with at least 'name'")
    name = str(entry["name"])
    kind = entry.get("kind", "crystalline")
    notes = []
    if kind == "amorphous":
        halos = entry.get("halos") or []
        if not halos:
            raise ParameterError(f"amorphous phase {name!r}: expected 'halos' with d_A, fwhm_q_nm_inv, intensity")
        halos = sorted(halos, key=lambda h: -float(h["d_A"]))
        inten = np.array([float(h["intensity"]) for h in halos])
        return Phase(name, "amorphous", np.array([float(h["d_A"]) for h in halos]),
                     100 * inten / inten.max(), ["halo"] * len(halos),
                     np.array([float(h["fwhm_q_nm_inv"]) for h in halos]),
                     formula=str(entry.get("formula", "")), source=str(entry.get("source", "")))
    if "lines" in entry:  # reference lines given directly
        lines = sorted(entry["lines"], key=lambda r: -float(r["d_A"]))
        inten = np.array([float(r.get("intensity", 100)) for r in lines])
        return Phase(name, kind, np.array([float(r["d_A"]) for r in lines]), 100 * inten / inten.max(),
                     [str(r.get("hkl", "")) for r in lines],
                     np.array([float(r.get("fwhm_q_nm_inv", np.nan)) for r in lines]),
                     formula=str(entry.get("formula", "")), source=str(entry.get("source", "")))
    cell = _lat.cell_from_lattice(entry.get("lattice") or {})
    if "symops" in entry:
        ops = [_lat.parse_symop(t) for t in entry["symops"]]
        cen = np.asarray(entry.get("centering", [[0, 0, 0]]), dtype=np.float64)
    else:
        if "space_group" not in entry:
            raise ParameterError(f"phase {name!r}: expected 'space_group' or 'symops'")
        ops, cen = _lat.space_group_operations(str(entry["space_group"]))
    B = float(entry.get("B_A2", 1.0))
    if entry.get("intensity_model") == "lattice-only":
        avg = entry.get("average_atom") or {"el": ["C"], "weights": [1.0]}
        rng = np.random.default_rng(12345)
        generic = [("X", _lat.expand_orbit(rng.uniform(0.05, 0.45, 3), ops, cen), 1.0) for _ in range(2)]
        rings = _lattice_only_rings(cell, generic, avg, B, d_min_A)
        notes.append("lattice-only intensities (atom positions not tabulated)")
    else:
        atoms = []
        for a in entry.get("atoms") or []:
            orbit = _lat.expand_orbit(a["xyz"], ops, cen)
            if "mult" in a and len(orbit) != int(a["mult"]):
                raise ParameterError(f"phase {name!r}: atom {a['el']} at {a['xyz']} generates {len(orbit)} "
                                     f"positions, expected multiplicity {a['mult']}")
            atoms.append((str(a["el"]), orbit, float(a.get("occ", 1.0))))
        if not atoms:
            raise ParameterError(f"phase {name!r}: expected 'atoms' (el, xyz) or 'lines' (d_A, intensity)")
        rings = _lat.structure_rings(cell, atoms, B_A2=B, d_min_A=d_min_A)
    if entry.get("positions") == "approximate":
        notes.append("approximate atom positions: relative intensities indicative")
    return Phase(name, kind, np.array([r.d_A for r in rings]), np.array([r.intensity for r in rings]),
                 [r.hkl for r in rings], np.full(len(rings), np.nan),
                 formula=str(entry.get("formula", "")), source=str(entry.get("source", "")),
                 notes="; ".join(notes), multiplicity=np.array([r.multiplicity for r in rings]))


def _lattice_only_rings(cell, generic, avg, B, d_min_A):
    # Systematic absences come from two generic general-position orbits (F vanishes exactly for
    # forbidden reflections); allowed reflections get the average atom's |f|^2 each.
    a, b, c = cell[:3]
    hmax = [int(np.floor(x / d_min_A)) for x in (a, b, c)]
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in hmax], indexing="ij")
    hkl = np.stack([g.ravel() for g in grids], axis=1)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    d = _lat.d_spacings(hkl, cell)
    hkl, d = hkl[d >= d_min_A], d[d >= d_min_A]
    n = len(generic[0][1])
    allowed = np.zeros(len(hkl), bool)
    for _, pos, _ in generic:
        F = np.exp(2j * np.pi * (hkl @ pos.T)).sum(axis=1)
        allowed |= np.abs(F) ** 2 > 1e-6 * n * n
    s = 0.5 / d
    f2 = sum(w * _lat.electron_form_factor(el, s) ** 2 for el, w in zip(avg["el"], avg["weights"]))
    I_refl = np.where(allowed, f2 * np.exp(-2 * B * s * s), 0.0)
    return _lat._group_rings(hkl, d, I_refl, 0.05)


class PhaseLibrary:
    """A named collection of :class:`Phase` objects (use :func:`default_library` for the built-ins).

    Parameters
    ----------
    phases : iterable of Phase
    """

    def __init__(self, phases=()):
        self._phases: dict[str, Phase] = {}
        for p in phases:
            self.add(p)

    def add(self, phase: Phase) -> None:
        self._phases[phase.name] = phase

    def __contains__(self, name) -> bool:
        return name in self._phases

    def __getitem__(self, name: str) -> Phase:
        try:
            return self._phases[name]
        except KeyError:
            raise ParameterError(f"unknown phase {name!r}; known phases: {', '.join(self.names)}") from None

    def __iter__(self):
        return iter(self._phases.values())

    def __len__(self):
        return len(self._phases)

    @property
    def names(self) -> list[str]:
        return list(self._phases)

    def subset(self, names) -> "PhaseLibrary":
        return PhaseLibrary([self[n] for n in names])

    def copy(self) -> "PhaseLibrary":
        return PhaseLibrary(self._phases.values())

    # -- extension ----------------------------------------------------------------------------
    def add_file(self, path: str | os.PathLike) -> list[str]:
        """Add the phases of a YAML, CSV or CIF file; returns their names."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".cif":
            return [self.add_cif(path)]
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ParameterError(f"{path}: cannot read phase file ({exc.strerror or exc})") from None
        if suffix == ".csv":
            phases = _phases_from_csv(text, path)
        elif suffix in (".yaml", ".yml", ".json"):
            import yaml
            try:
                data = yaml.safe_load(text)
            except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
                raise ParameterError(f"{path}: not a valid YAML/JSON phase file ({exc})".splitlines()[0]) from None
            entries = data.get("phases") if isinstance(data, dict) else data
            if not isinstance(entries, list):
                raise ParameterError(f"{path}: expected a list of phases (or a mapping with key 'phases')")
            phases = [phase_from_entry(e) for e in entries]
        else:
            raise ParameterError(f"{path}: phase files must be .yaml, .yml, .json, .csv or .cif")
        for p in phases:
            self.add(p)
        return [p.name for p in phases]

    def add_cif(self, path: str | os.PathLike, *, name: str | None = None, B_A2: float = 1.0,
                d_min_A: float = 1.0) -> str:
        """Add a phase from a CIF, read with gemmi (preferred), ase or pymatgen if installed."""
        path = Path(path)
        cell, atoms, formula = _read_cif(path)
        rings = _lat.structure_rings(cell, atoms, B_A2=B_A2, d_min_A=d_min_A)
        name = name or path.stem
        self.add(Phase(name, "crystalline", np.array([r.d_A for r in rings]),
                       np.array([r.intensity for r in rings]), [r.hkl for r in rings],
                       np.full(len(rings), np.nan), formula=formula, source=f"CIF {path.name}",
                       multiplicity=np.array([r.multiplicity for r in rings])))
        return name


def _phases_from_csv(text: str, path: Path) -> list[Phase]:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or not {"name", "d_A"} <= set(rows[0]):
        raise ParameterError(f"{path}: a phase CSV needs a header with at least name,d_A[,intensity,hkl,fwhm_q_nm_inv]")
    by_name: dict[str, list] = {}
    for i, r in enumerate(rows, start=2):
        try:
            line = {"d_A": float(r["d_A"]), "intensity": float(r.get("intensity") or 100),
                    "hkl": r.get("hkl") or ""}
            if r.get("fwhm_q_nm_inv"):
                line["fwhm_q_nm_inv"] = float(r["fwhm_q_nm_inv"])
        except ValueError:
            raise ParameterError(f"{path}:{i}: d_A and intensity must be numbers") from None
        by_name.setdefault(r["name"].strip(), []).append(line)
    out = []
    for name, lines in by_name.items():
        kind = "amorphous" if all("fwhm_q_nm_inv" in ln for ln in lines) else "crystalline"
        if kind == "amorphous":
            out.append(phase_from_entry({"name": name, "kind": "amorphous", "halos": lines,
                                         "source": f"user file {path.name}"}))
        else:
            out.append(phase_from_entry({"name": name, "lines": lines, "source": f"user file {path.name}"}))
    return out


def _read_cif(path: Path):
    try:
        import gemmi
    except ImportError:
        gemmi = None
    if gemmi is not None:
        try:
            st = gemmi.read_small_structure(str(path))
        except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
            raise ParameterError(f"{path}: cannot read CIF ({exc})") from None
        c = st.cell
        cell = (c.a, c.b, c.c, c.alpha, c.beta, c.gamma)
        atoms = [(site.element.name, np.array([[site.fract.x, site.fract.y, site.fract.z]]), site.occ)
                 for site in st.get_all_unit_cell_sites()]
        return cell, atoms, st.name
    try:
        import ase.io
    except ImportError:
        raise ParameterError(f"{path}: reading a CIF needs gemmi, ase or pymatgen (pip install gemmi)") from None
    at = ase.io.read(str(path))
    cp = at.cell.cellpar()
    frac = at.get_scaled_positions()
    atoms = [(sym, frac[i:i + 1], 1.0) for i, sym in enumerate(at.get_chemical_symbols())]
    return tuple(cp), atoms, at.get_chemical_formula()


@functools.lru_cache(maxsize=1)
def _builtin_entries() -> tuple:
    import yaml
    with resources.files("temtrack.phases").joinpath("data", "phases.yaml").open("r", encoding="utf-8") as fh:
        return tuple(yaml.safe_load(fh)["phases"])


@functools.lru_cache(maxsize=1)
def _builtin_library() -> PhaseLibrary:
    return PhaseLibrary(phase_from_entry(e) for e in _builtin_entries())


def default_library() -> PhaseLibrary:
    """The built-in library (a fresh copy the caller may extend)."""
    return _builtin_library().copy()


def load_library(extra_files=()) -> PhaseLibrary:
    """The built-in library extended with user files (YAML, CSV or CIF)."""
    lib = default_library()
    for f in extra_files or ():
        lib.add_file(f)
    return lib
