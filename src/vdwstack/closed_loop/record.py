"""An estimate as the record users read: final values first, then how they were reached.

Flat keys, as ``vdwstack infer --json`` prints them: ``Da_A``, ``Db_A`` (``Da2_A``, ``Db2_A``) or
``theta_deg``, ``uncertainty_A`` / ``uncertainty_deg`` (the calibrated 95 % interval: a radius for
slips), ``agreement``, ``source`` (network | refined | search), ``mirrored``; beside them the
candidates, the runner-up, the hands, the fitted pose and optics and a one-line verdict.
"""

from __future__ import annotations

import numpy as np

from vdwstack.closed_loop.estimate import Candidate, Estimate
from vdwstack.closed_loop.stacking import (
    canonical_stacking,
    lattice_to_image,
    stacking_change,
)
from vdwstack.structures.geometry import slip_keys
from vdwstack.structures.symmetry import symmetry_for


def reading_keys(twist: bool, layers: int) -> list[str]:
    if twist:
        return ["theta_deg"]
    return list(slip_keys(layers))


def values(est: Estimate, c: Candidate) -> dict[str, float]:
    """The candidate's reading in canonical form (slips in the symmetry-reduced cell, θ folded)."""
    s = canonical_stacking(est.material, c.match.stacking, est.twist)
    return {k: round(getattr(s, k), 4) for k in reading_keys(est.twist, est.layers)}


def fit_record(est: Estimate, c: Candidate) -> dict:
    """Pose and optics of a fit: rotation of the model in the (mirrored) image, pixel size the fit
    implies, defocus, source size, translation of the crop, layer translation of twists."""
    m, comp = c.match, est.comparator
    crop = comp.crop
    out = {"rotation_deg": round(m.pose.rotation_deg % 360.0, 3),
           "pixel_size_A": round(crop.image_pixel_size_A * m.pose.scale, 6), "scale": round(m.pose.scale, 5),
           "defocus_A": round(m.pose.defocus_A, 2), "source_fwhm_A": round(m.pose.source_fwhm_A, 3),
           "frame": "mirrored image" if c.mirrored else "image"}
    # The scan distortion: how the lattice appears at the given pixel size (drift and shear).
    L = lattice_to_image(m.pose) @ symmetry_for(est.material).lattice.T
    la, lb = np.linalg.norm(L, axis=0)
    c12, phi12 = m.pose.astigmatism
    out.update(C12_A=round(c12, 2), phi12_deg=round(phi12, 1),
               strain_aniso=round(m.pose.strain_aniso, 5), strain_shear=round(m.pose.strain_shear, 5),
               lattice_a_A=round(float(la), 4), lattice_b_A=round(float(lb), 4),
               lattice_gamma_deg=round(float(np.degrees(np.arccos(L[:, 0] @ L[:, 1] / (la * lb)))), 3))
    if est.twist:
        out["layer_translation_A"] = [round(m.stacking.Da_A, 3), round(m.stacking.Db_A, 3)]
    if est.z_exponent_shift is not None:  # fitted: a twist near an aligned stacking
        out["adf_z_exponent_shift"] = round(est.z_exponent_shift, 3)
    return out


def verdict(est: Estimate) -> str:
    """One line: does the reading reproduce the image, and how far behind is the next best stacking."""
    r = est.final.match.agreement
    if est.status != "ok":
        return f"no stacking reproduces the image: best r = {r:.2f} < {est.settings.min_agreement:.2f}"
    text = f"reproduces the image: r = {r:.3f}"
    if est.runner_up is not None:
        other = "mirror image" if est.runner_up.mirrored != est.final.mirrored else "stacking"
        text += f"; next best {other} r = {est.runner_up.match.agreement:.3f}"
    return text


def estimate_record(est: Estimate) -> dict:
    """The record of one estimate (see the module docstring)."""
    unit = "deg" if est.twist else "A"
    f = est.final
    rec: dict = {"status": est.status}
    if est.status == "ok":
        rec.update(values(est, f))
        rec[f"uncertainty_{unit}"] = round(est.interval.radius, 4)
    rec.update(agreement=round(f.match.agreement, 4), source=f.source, mirrored=bool(f.mirrored),
               verdict=verdict(est))
    if len(est.hands) == 2:
        rs = {h.mirrored: round(h.best.match.agreement, 4) for h in est.hands}
        rec["hand"] = {"agreement_as_is": rs[False], "agreement_mirrored": rs[True],
                       "decided": abs(rs[True] - rs[False]) > est.settings.hand_margin}
    cands = {}
    for source in ("network", "refined", "search"):
        c = est.candidate(source)
        if c is not None:
            cands[source] = {**values(est, c), "agreement": round(c.match.agreement, 4), "mirrored": c.mirrored,
                             f"distance_{unit}": round(stacking_change(est.material, c.match.stacking,
                                                                       f.match.stacking, est.twist, est.layers), 4)}
    rec["candidates"] = cands
    if est.runner_up is not None:
        ru = est.runner_up
        rec["runner_up"] = {**values(est, ru), "agreement": round(ru.match.agreement, 4), "source": ru.source,
                            "mirrored": ru.mirrored}
        rec["margin"] = round(est.margin, 4)
    rec["fit"] = fit_record(est, f)
    if est.interval is not None:
        rec["fit"]["standard_errors"] = {k: round(v, 5) for k, v in est.interval.sigma.items()}
        rec["fit"]["relative_residual"] = round(est.interval.residual, 4)
    crop = est.comparator.crop
    rec["crop"] = {"x0_A": round(crop.x0_A, 2), "y0_A": round(crop.y0_A, 2), "size_A": round(crop.size_A, 2),
                   "pixel_size_A": crop.pixel_size_A, "size_px": crop.raw.shape[0]}
    rec["simulations"] = sum(h.comp.evaluations + h.coarse.evaluations for h in est.hands)
    rec["warnings"] = list(est.warnings)
    return rec
