"""Powder-ring d-spacings and kinematic ring intensities computed from a crystal structure.

Written by hand because the libraries that do this (pymatgen's ``XRDCalculator``/``TEMCalculator``,
gemmi, ase, diffpy) are heavy optional dependencies; what a ring library needs is small: the metric
tensor for d(hkl), the space group's orbit of each atom, structure factors with tabulated electron
scattering factors, and the grouping of reflections into rings. Space-group operations and
scattering-factor coefficients are data (``phases/data/*.json``, exported from International Tables
via gemmi), so no crystallographic table is typed into code.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources

import numpy as np

from temtrack.errors import ParameterError

#: Reflections whose d differ by less than this (A) belong to one powder ring.
RING_MERGE_TOL_A = 1e-4


@functools.lru_cache(maxsize=None)
def _data_json(name: str) -> dict:
    with resources.files("temtrack.phases").joinpath("data", name).open("r", encoding="utf-8") as fh:
        return json.load(fh)


def electron_form_factor(element: str, s_inv_A: np.ndarray) -> np.ndarray:
    """Electron scattering factor f_e(s) in A (International Tables C, Table 4.3.2.2).

    Parameters
    ----------
    element : str
        Chemical symbol, e.g. ``'Sn'``.
    s_inv_A : ndarray
        s = sin(theta)/lambda = 1/(2d) in 1/A.
    """
    table = _data_json("electron_form_factors.json")["elements"]
    key = element.strip().capitalize()
    if key not in table:
        raise ParameterError(f"unknown element {element!r}: expected a chemical symbol such as 'Sn' or 'Na'")
    a = np.asarray(table[key]["a"])[:, None]
    b = np.asarray(table[key]["b"])[:, None]
    s2 = np.square(np.asarray(s_inv_A, dtype=np.float64)).ravel()[None, :]
    return np.sum(a * np.exp(-b * s2), axis=0).reshape(np.shape(s_inv_A))


def reciprocal_metric(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """Reciprocal metric tensor G* (1/A^2) from cell lengths (A) and angles (degrees)."""
    al, be, ga = np.radians([alpha, beta, gamma])
    g = np.array([[a * a, a * b * np.cos(ga), a * c * np.cos(be)],
                  [a * b * np.cos(ga), b * b, b * c * np.cos(al)],
                  [a * c * np.cos(be), b * c * np.cos(al), c * c]])
    if np.linalg.det(g) <= 0:
        raise ParameterError(f"cell {a, b, c, alpha, beta, gamma} has no positive volume")
    return np.linalg.inv(g)


def d_spacings(hkl: np.ndarray, cell: tuple) -> np.ndarray:
    """d(hkl) in A for an (n, 3) integer array and a cell (a, b, c, alpha, beta, gamma)."""
    gs = reciprocal_metric(*cell)
    hkl = np.asarray(hkl, dtype=np.float64)
    inv_d2 = np.einsum("ni,ij,nj->n", hkl, gs, hkl)
    with np.errstate(divide="ignore"):
        return 1.0 / np.sqrt(inv_d2)


_TERM = re.compile(r"([+-]?)(\d*/?\d*)\*?([xyz]?)")


def parse_symop(triplet: str) -> tuple[np.ndarray, np.ndarray]:
    """'-y+1/2,x,z+1/4' -> (3x3 rotation, translation) acting on fractional coordinates."""
    parts = triplet.replace(" ", "").lower().split(",")
    if len(parts) != 3:
        raise ParameterError(f"symmetry operation {triplet!r}: expected three comma-separated terms like 'x,-y,z+1/2'")
    rot = np.zeros((3, 3))
    trans = np.zeros(3)
    for i, expr in enumerate(parts):
        pos = 0
        for m in _TERM.finditer(expr):
            if m.end() == m.start():
                continue
            if m.start() != pos:
                break
            pos = m.end()
            sign = -1.0 if m.group(1) == "-" else 1.0
            num, var = m.group(2), m.group(3)
            if var:
                coef = float(Fraction(num)) if num else 1.0
                rot[i, "xyz".index(var)] += sign * coef
            elif num:
                trans[i] += sign * float(Fraction(num))
        if pos != len(expr):
            raise ParameterError(f"symmetry operation {triplet!r}: cannot read term {expr!r}")
    return rot, trans


def space_group_operations(symbol: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Symmetry operations and centring vectors of a tabulated space group.

    Parameters
    ----------
    symbol : str
        Extended Hermann-Mauguin symbol as in ``phases/data/spacegroups.json`` (``'I -4 3 d'``,
        ``'R -3 m:H'``, ``'I 41/a m d:1'``).
    """
    groups = _data_json("spacegroups.json")["groups"]
    key = symbol if symbol in groups else None
    if key is None:  # accept spacing variants and the short H-M symbol
        norm = symbol.replace(" ", "").lower()
        for k, v in groups.items():
            if k.replace(" ", "").lower() == norm or v["hm"].replace(" ", "").lower() == norm:
                key = k
                break
    if key is None:
        raise ParameterError(f"space group {symbol!r} is not in the built-in table; give the phase's "
                             f"'symops' explicitly or load it from a CIF (known: {sorted(groups)})")
    g = groups[key]
    return [parse_symop(t) for t in g["symops"]], np.asarray(g["centering"], dtype=np.float64)


def expand_orbit(xyz, ops, centering, *, tol: float = 1e-4) -> np.ndarray:
    """All distinct positions (mod 1) generated from one fractional position."""
    p = np.asarray(xyz, dtype=np.float64)
    pts = []
    for rot, trans in ops:
        q = rot @ p + trans
        for cen in centering:
            pts.append(np.mod(q + cen, 1.0))
    pts = np.asarray(pts)
    # Snap to a grid finer than any coordinate difference that matters, wrap, de-duplicate.
    keys = np.mod(np.round(pts / tol).astype(np.int64), int(round(1.0 / tol)))
    _, first = np.unique(keys, axis=0, return_index=True)
    return np.mod(pts[np.sort(first)], 1.0)


@dataclass(frozen=True)
class Ring:
    """One powder ring: d (A), relative integrated intensity (strongest = 100), hkl label, multiplicity."""

    d_A: float
    intensity: float
    hkl: str
    multiplicity: int


def _hkl_label(hkls: np.ndarray) -> str:
    best = max((tuple(int(v) for v in h) for h in hkls), key=lambda h: (min(h) >= 0, h))
    return "".join(str(v) if v >= 0 else f"-{-v}" for v in best)


def structure_rings(cell: tuple, atoms: list[tuple[str, np.ndarray, float]], *, B_A2: float = 1.0,
                    d_min_A: float = 1.0, d_max_A: float = 20.0,
                    min_relative_intensity: float = 0.05) -> list[Ring]:
    """Powder rings of a structure given as fully expanded atoms.

    Parameters
    ----------
    cell : tuple
        (a, b, c, alpha, beta, gamma) in A and degrees.
    atoms : list of (element, (n, 3) fractional positions, occupancy)
    B_A2 : float
        Isotropic Debye-Waller factor in A^2.
    d_min_A, d_max_A : float
        d range of the rings returned.
    min_relative_intensity : float
        Rings weaker than this (percent of the strongest) are dropped.

    Returns
    -------
    list of Ring, sorted by decreasing d. Intensities are kinematic:
    ``sum over the ring's reflections of |F_e(hkl)|^2 * d`` (electron powder-ring factor),
    normalised to 100 for the strongest ring.
    """
    if not (0 < d_min_A < d_max_A):
        raise ParameterError(f"d range must satisfy 0 < d_min_A < d_max_A, got {d_min_A}, {d_max_A}")
    a, b, c = cell[:3]
    hmax = [int(np.floor(x / d_min_A)) for x in (a, b, c)]
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in hmax], indexing="ij")
    hkl = np.stack([g.ravel() for g in grids], axis=1)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    d = d_spacings(hkl, cell)
    keep = (d >= d_min_A - 1e-9) & (d <= d_max_A)
    hkl, d = hkl[keep], d[keep]
    s = 0.5 / d
    F = np.zeros(len(hkl), dtype=np.complex128)
    for el, pos, occ in atoms:
        f = electron_form_factor(el, s) * occ
        phase = np.exp(2j * np.pi * (hkl.astype(np.float64) @ np.asarray(pos, dtype=np.float64).T))
        F += f * phase.sum(axis=1)
    I_refl = np.abs(F) ** 2 * np.exp(-2.0 * B_A2 * s * s)
    return _group_rings(hkl, d, I_refl, min_relative_intensity)


def _group_rings(hkl, d, I_refl, min_relative_intensity) -> list[Ring]:
    if I_refl.size == 0 or I_refl.max() <= 0:
        return []
    present = I_refl > 1e-8 * I_refl.max()
    hkl, d, I_refl = hkl[present], d[present], I_refl[present]
    order = np.argsort(-d, kind="stable")
    hkl, d, I_refl = hkl[order], d[order], I_refl[order]
    breaks = np.flatnonzero(np.diff(d) < -RING_MERGE_TOL_A) + 1
    rings = []
    for idx in np.split(np.arange(d.size), breaks):
        rings.append((float(np.mean(d[idx])), float(I_refl[idx].sum() * d[idx].mean()),
                      _hkl_label(hkl[idx]), int(idx.size)))
    top = max(r[1] for r in rings)
    return [Ring(dd, 100.0 * ii / top, lab, m) for dd, ii, lab, m in rings
            if 100.0 * ii / top >= min_relative_intensity]


def cell_from_lattice(lattice: dict) -> tuple:
    """(a, b, c, alpha, beta, gamma) from a mapping where missing lengths default to a, angles to 90."""
    try:
        a = float(lattice["a"])
    except (KeyError, TypeError, ValueError):
        raise ParameterError(f"lattice {lattice!r}: expected at least 'a' in A") from None
    b = float(lattice.get("b", a))
    c = float(lattice.get("c", a))
    return (a, b, c, float(lattice.get("alpha", 90.0)), float(lattice.get("beta", 90.0)),
            float(lattice.get("gamma", 90.0)))
