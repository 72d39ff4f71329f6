"""Global scans for the stackings that reproduce a crop best: a slip grid over the slip cell
(bilayers), a grid over both slips (trilayers), a twist scan over the material's range. Layers are
rendered once per pose and moved by Fourier shifts, so a scan costs one cross-correlation per point."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from vdwstack.closed_loop.comparator import Comparator
from vdwstack.closed_loop.stacking import Match, Pose, Stacking, stacking_change
from vdwstack.structures.symmetry import symmetry_for


def scan_slip(comp: Comparator, starts: Sequence[Pose], step_A: float) -> list[Match]:
    """Agreement of every slip of a grid over the symmetry-reduced slip cell
    (``symmetry_for(material).slip_grid(step_A)``), bilayers, in every start pose; translation
    fitted, optics those of the poses. Each layer is rendered once per pose; a slip D moves layer 2
    by a Fourier phase shift (exact up to a strip of |D| at the canvas edges, outside the crop's
    search range). Returns one Match per grid point (its best pose; agreement from
    :meth:`Comparator.score_fft`, translation not fitted), best first."""
    if comp.layers != 2:
        raise ValueError("the slip scan is for bilayers")
    sym = symmetry_for(comp.material)
    da, db = sym.slip_grid(step_A)
    grid = [Stacking(Da_A=float(a), Db_A=float(b)) for a, b in zip(da, db)]
    best: dict[int, Match] = {}
    for pose in starts:
        F1, F2 = comp.layer_spectra(Stacking(), pose)
        for j, st in enumerate(grid):
            (r1, c1), (r2, c2) = comp.layer_offsets_px(st, pose)
            r = comp.score_fft(comp.shifted(F1, r1, c1) + comp.shifted(F2, r2, c2), pose)
            if j not in best or r > best[j].agreement:
                best[j] = Match(r, st, pose, (np.nan, np.nan))
    return sorted(best.values(), key=lambda m: -m.agreement)


def scan_twist(comp: Comparator, starts: Sequence[Pose], step_deg: float) -> list[Match]:
    """Agreement of twists θ on a grid over the material's range (both signs) in every start pose
    (whose rotation is layer 1's orientation, from the Bragg spots). Layer 1 is rendered once per
    pose, layer 2 once per θ; the layers' relative translation is where each layer alone
    correlates best with the crop (the image is the sum of the layers' images), applied to layer 2
    as a Fourier phase shift. Returns one Match per (pose, θ, sign; agreement from
    :meth:`Comparator.score_fft`), best first."""
    sym = symmetry_for(comp.material)
    lo, hi = sym.twist_range_deg
    thetas = np.linspace(lo, hi, max(1, int(np.ceil((hi - lo) / step_deg))) + 1)
    out = []
    for pose in starts:
        F1 = comp.layer_fft(Stacking(), pose, 1)
        r1, c1 = comp.best_translation(F1, pose)
        for th in thetas:
            for sign in (1.0, -1.0):
                if sign < 0 and (th < lo + 1e-9 or th > hi - 1e-9):
                    continue  # 0 and the range's end are their own mirror images
                theta = float(sign * th)
                p = replace(pose, rotation_deg=pose.rotation_deg + theta / 2)  # the layers' mean orientation
                F2 = comp.layer_fft(Stacking(theta_deg=theta), p, 2)
                r2, c2 = comp.best_translation(F2, p)
                da, db = comp.image_shift_to_slip(r1 - r2, c1 - c2, p, theta)
                r = comp.score_fft(F1 + comp.shifted(F2, r1 - r2, c1 - c2), p)
                out.append(Match(r, Stacking(theta_deg=theta, Da_A=da, Db_A=db), p, (np.nan, np.nan)))
    return sorted(out, key=lambda m: -m.agreement)


def scan_trilayer(comp: Comparator, starts: Sequence[Pose], step_A: float) -> list[Match]:
    """Agreement of every pair of slips (D1 over the symmetry-reduced cell, D2 over the whole cell,
    both on a grid of `step_A`) in every start pose: the three layers rendered once per pose and
    moved by Fourier shifts. (D1, D2) ≡ (−D2, −D1) (the stack read from the other side) is kept
    once. Returns one Match per pair (its best pose), best first."""
    if comp.layers != 3:
        raise ValueError("the trilayer scan is for trilayers")
    sym = symmetry_for(comp.material)
    d1a, d1b = sym.slip_grid(step_A)
    k = max(2, int(np.ceil(float(np.max(np.linalg.norm(sym.lattice, axis=1))) / step_A)))
    frac = np.stack(np.meshgrid(np.arange(k) / k, np.arange(k) / k, indexing="ij"), -1).reshape(-1, 2)
    d2a, d2b = sym.cartesian_to_slip(sym.wigner_seitz(frac @ sym.lattice))
    pairs, seen = [], set()
    for a1, b1 in zip(d1a, d1b):
        for a2, b2 in zip(d2a, d2b):
            key = _pair_key(sym, (a1, b1), (a2, b2))
            if key not in seen:
                seen.add(key)
                pairs.append(Stacking(Da_A=float(a1), Db_A=float(b1), Da2_A=float(a2), Db2_A=float(b2)))
    best: dict[int, Match] = {}
    for pose in starts:
        spectra = comp.layer_spectra(Stacking(), pose)
        for j, st in enumerate(pairs):
            offs = comp.layer_offsets_px(st, pose)
            F = sum(comp.shifted(S, d[0], d[1]) for S, d in zip(spectra, offs))
            r = comp.score_fft(F, pose)
            if j not in best or r > best[j].agreement:
                best[j] = Match(r, st, pose, (np.nan, np.nan))
    return sorted(best.values(), key=lambda m: -m.agreement)


def _pair_key(sym, d1, d2) -> tuple:
    """One key for (D1, D2) and its relabelled twin (−D2, −D1), both in canonical-slip form."""
    def canon(a, b):
        ca, cb = sym.canonical_slip(a, b)
        return round(float(ca), 3), round(float(cb), 3)

    def ws(a, b):
        x, y = sym.cartesian_to_slip(sym.wigner_seitz(sym.slip_to_cartesian(a, b)))
        return round(float(x), 3), round(float(y), 3)

    one = (canon(*d1), ws(*d2))
    two = (canon(-d2[0], -d2[1]), ws(-d1[0], -d1[1]))
    return min(one, two)


def distinct_peaks(matches: Sequence[Match], material: str, twist: bool, layers: int, n: int,
                   min_distance: float) -> list[Match]:
    """The best `n` matches of a scan (best first) that are pairwise farther apart than
    `min_distance` (Å or degrees, symmetry-aware)."""
    out: list[Match] = []
    for m in matches:
        if all(stacking_change(material, m.stacking, o.stacking, twist, layers) > min_distance for o in out):
            out.append(m)
            if len(out) == n:
                break
    return out
