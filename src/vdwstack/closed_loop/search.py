"""Global search for the stacking that reproduces the crop best: a slip grid over the cell or a
twist scan over the material's range (layers rendered once, slips as Fourier shifts), then the local fit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from vdwstack.closed_loop.comparator import Comparator
from vdwstack.closed_loop.fit import fit_layer_translation, fit_optics, fit_rotation_scale, refine_stacking
from vdwstack.closed_loop.stacking import Match, Pose, Stacking, lattice_to_image, stacking_change
from vdwstack.structures.symmetry import symmetry_for

log = logging.getLogger(__name__)


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
    D = sym.slip_to_cartesian(da, db)
    ps = comp.crop.pixel_size_A
    best: dict[int, Match] = {}
    for pose in starts:
        F1 = comp.render_fft(Stacking(), pose.rotation_deg, pose.scale, pose.defocus_A, layer=1)
        F2 = comp.render_fft(Stacking(), pose.rotation_deg, pose.scale, pose.defocus_A, layer=2)
        shift_xy = D @ lattice_to_image(pose).T / ps  # (x, y) in canvas pixels
        for j in range(len(da)):
            r = comp.score_fft(F1 + comp.shifted(F2, shift_xy[j, 1], shift_xy[j, 0]), pose)
            if j not in best or r > best[j].agreement:
                best[j] = Match(r, Stacking(Da_A=float(da[j]), Db_A=float(db[j])), pose, (np.nan, np.nan))
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
        F1 = comp.render_fft(Stacking(), pose.rotation_deg, pose.scale, pose.defocus_A, layer=1)
        r1, c1 = comp.best_translation(F1, pose)
        for th in thetas:
            for sign in (1.0, -1.0):
                if sign < 0 and (th < lo + 1e-9 or th > hi - 1e-9):
                    continue  # 0 and the range's end are their own mirror images
                theta = float(sign * th)
                p = replace(pose, rotation_deg=pose.rotation_deg + theta / 2)  # the layers' mean orientation
                F2 = comp.render_fft(Stacking(theta_deg=theta), p.rotation_deg, p.scale, p.defocus_A, layer=2)
                r2, c2 = comp.best_translation(F2, p)
                da, db = comp.image_shift_to_slip(r1 - r2, c1 - c2, p, theta)
                r = comp.score_fft(F1 + comp.shifted(F2, r1 - r2, c1 - c2), p)
                out.append(Match(r, Stacking(theta_deg=theta, Da_A=da, Db_A=db), p, (np.nan, np.nan)))
    return sorted(out, key=lambda m: -m.agreement)


def search_alternative(comp: Comparator, starts: Sequence[Pose], twist: bool, optics_from: Pose | None = None
                       ) -> Match | None:
    """The stacking that reproduces the crop best, found globally: a coarse scan (:func:`scan_twist`
    with ``alternative_step_deg``, or :func:`scan_slip` with ``alternative_step_A``), then the
    local fit (layer translation, rotation, scale, optics) and refinement of the best point (and of
    the runner-up when it is as good and a different stacking). Start poses: rotation and scale
    from the Bragg spots; defocus and source size from `optics_from` (the reading's fit) if given.
    None for trilayers (a grid over two slips is too large)."""
    if comp.layers != 2:
        log.info("no alternative search for trilayers")
        return None
    s = comp.settings
    if optics_from is not None:
        starts = [replace(p, defocus_A=optics_from.defocus_A, source_fwhm_A=optics_from.source_fwhm_A) for p in starts]
    step = s.alternative_step_deg if twist else s.alternative_step_A
    coarse = scan_twist(comp, starts, step) if twist else scan_slip(comp, starts, step)
    picks = [coarse[0]]
    for m in coarse[1:]:
        if m.agreement < coarse[0].agreement - 0.03:
            break
        if stacking_change(comp.material, m.stacking, coarse[0].stacking, twist) > 2 * step:
            picks.append(m)
            break
    budget = s.max_evaluations
    best = None
    for m in picks:
        m = comp.evaluate(m.stacking, m.pose)
        if twist:
            m = fit_layer_translation(comp, m.stacking, m.pose, maxfev=max(12, budget // 3))
        m = fit_rotation_scale(comp, m.stacking, m.pose, maxfev=max(12, budget // 3))
        m = fit_optics(comp, m.stacking, m.pose)
        m = refine_stacking(comp, m, twist)
        if best is None or m.agreement > best.agreement:
            best = m
    return best
