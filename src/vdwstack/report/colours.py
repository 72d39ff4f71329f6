"""Colours of slips that respect the stacking symmetry: one stacking, one colour.

A slip D (Å) and every slip equivalent to it — lattice translations D + m·a + n·b, the layer
relabelling −D and the monolayer's rotations g·D (``vdwstack.structures.symmetry``) — give one
stacking, so they must get one colour. Colouring a component (Da alone) fails: a ReS2 domain at
D = (±1.57, 0) Å is one stacking, yet +1.57 and −1.57 fall at opposite ends of any colour scale,
and its canonical representative itself jumps between (1.57, −0.01) and (−1.57, 0.01) with noise.

The colour is built from three functions of D that are invariant under the whole group and smooth:
orbit means of plane waves, f_j(D) = mean_g cos(2π G_j·g·D), for the three shortest orbits of
reciprocal-lattice vectors G_j. They are periodic over the lattice, even (±D) and unchanged by the
group's rotations, so equivalent slips share them exactly and the colour has no seam at cell edges
or symmetry boundaries. The point f in [−1, 1]³ is read in spherical terms around the axis through
AA (f = (1, 1, 1)): its height sets the CIELAB lightness (AA lightest), its direction around the axis
the hue, its distance from the axis the chroma (grey on the axis, where the direction is undefined).
Lightness carries one of the key's two dimensions, so it reads also with red–green colour blindness;
figures show the key (:func:`slip_key`) beside every slip-coloured map.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# CIELAB lightness of the lowest and highest invariant height, and the largest chroma: chosen so
# that most of the key stays inside the sRGB gamut (the rest is clipped).
_L_RANGE = (32.0, 92.0)
_CHROMA = 48.0


@lru_cache(maxsize=None)
def _orbits(material: str, n_orbits: int = 3) -> np.ndarray:
    """The n shortest orbits of reciprocal-lattice vectors (1/Å) under the material's slip group:
    array (n_orbits, group_order, 2), each row one orbit's vectors (repeats allowed)."""
    from vdwstack.structures.symmetry import symmetry_for

    sym = symmetry_for(material)
    recip = np.linalg.inv(sym.lattice).T  # rows b1, b2 with a_i · b_j = δ_ij
    hk = np.array([(h, k) for h in range(-3, 4) for k in range(-3, 4) if (h, k) != (0, 0)], float)
    gs = hk @ recip
    gs = gs[np.argsort(np.linalg.norm(gs, axis=1), kind="stable")]
    orbits: list[np.ndarray] = []
    for g in gs:
        if any(np.min(np.linalg.norm(o - g, axis=1)) < 1e-6 for o in orbits):
            continue  # already in a chosen orbit
        orbits.append(np.einsum("rij,j->ri", sym.rotations, g))
        if len(orbits) == n_orbits:
            break
    return np.stack(orbits)


def slip_invariants(material: str, da_A, db_A) -> np.ndarray:
    """Three smooth functions of the slip, identical for symmetry-equivalent slips.

    da_A, db_A: slips along â, b̂ in Å, broadcastable arrays of shape S. Returns (*S, 3) in
    [−1, 1]; (1, 1, 1) for AA. The slip is canonicalised first (the functions do not need it,
    but the colour then follows the reported canonical value by construction)."""
    from vdwstack.structures.symmetry import symmetry_for

    sym = symmetry_for(material)
    da_A, db_A = np.broadcast_arrays(np.asarray(da_A, float), np.asarray(db_A, float))
    xy = sym.canonical_cartesian(sym.slip_to_cartesian(da_A, db_A).reshape(-1, 2))
    phase = np.einsum("ogc,nc->nog", _orbits(material), xy)  # (N, orbits, group members)
    return np.cos(2 * np.pi * phase).mean(axis=-1).reshape(*da_A.shape, 3)


def _lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) → sRGB in [0, 1] (clipped), shape (..., 3)."""
    L, a, b = np.moveaxis(lab, -1, 0)
    fy = (L + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200])
    xyz = np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29))
    xyz = xyz * np.array([0.95047, 1.0, 1.08883]).reshape(3, *([1] * (xyz.ndim - 1)))  # D65 white
    m = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
    rgb = np.moveaxis(np.tensordot(m, xyz, axes=1), 0, -1)
    rgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.clip(rgb, 0.0031308, None) ** (1 / 2.4) - 0.055)
    return np.clip(rgb, 0.0, 1.0)


def slip_colours(material: str, da_A, db_A) -> np.ndarray:
    """RGB colour (in [0, 1]) of every slip: (*S, 3) for slips (Da, Db) in Å of shape S.

    Symmetry-equivalent slips (e.g. ReS2 (1.57, 0) and (−1.57, 0) Å) get the same colour, and the
    colour changes smoothly with the slip everywhere (see the module docstring)."""
    f = slip_invariants(material, da_A, db_A)
    axis = np.ones(3) / np.sqrt(3)
    e1, e2 = np.array([2.0, -1.0, -1.0]) / np.sqrt(6), np.array([0.0, 1.0, -1.0]) / np.sqrt(2)
    height = f @ axis / np.sqrt(3)  # 1 at AA, ≥ −1 everywhere
    x, y = f @ e1, f @ e2
    # Distance from the axis, relative to its largest value on a face of the cube (√(2/3)): chroma
    # fades to grey where the hue (the direction around the axis) is undefined.
    radial = np.clip(np.hypot(x, y) / np.sqrt(2 / 3), 0.0, 1.0)
    L = _L_RANGE[0] + (_L_RANGE[1] - _L_RANGE[0]) * (height + 1) / 2
    C = _CHROMA * radial
    hue = np.arctan2(y, x)
    return _lab_to_srgb(np.stack([L, C * np.cos(hue), C * np.sin(hue)], axis=-1))


def slip_key(material: str, half_width_A: float, n: int = 161) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The colour key over Cartesian slips: an (n, n, 3) RGB image of slip_colours on the square
    |Dx|, |Dy| ≤ half_width_A (Å) and its imshow extent (x0, x1, y0, y1) with y upwards."""
    from vdwstack.structures.symmetry import symmetry_for

    sym = symmetry_for(material)
    v = np.linspace(-half_width_A, half_width_A, n)
    xx, yy = np.meshgrid(v, v)
    da, db = sym.cartesian_to_slip(np.stack([xx, yy], axis=-1))
    return slip_colours(material, da, db), (-half_width_A, half_width_A, -half_width_A, half_width_A)


# Okabe–Ito: eight colours that stay distinct with every common colour-vision deficiency; used for
# domain labels where no slip colouring exists (trilayers: a pair of slips).
DOMAIN_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
