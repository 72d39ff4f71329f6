"""The final reading of one crop: every candidate stacking fitted to the image, the best one kept.

Candidates, each fitted in pose (rotation, scale, translation) and optics (defocus, source size):
- ``network``: the network's proposal (when a model exists) as it is, ``refined``: its local
  refinement (Nelder–Mead on the reading);
- ``search``: the best distinct stackings of the global scan (slip grid, both slips of a trilayer,
  or θ over the material's range; on a coarse crop, layers moved by Fourier shifts), each refined.
For projections without a mirror line (ReX2) every candidate is fitted in both hands: the image as
given and its mirror (a flipped or transposed scan, a specimen upside down shows the mirror
lattice). The answer is the candidate with the highest agreement, with the runner-up (the best
candidate that is a different stacking, or the other hand) and the margin between them — the winner
and the runner-up (near an aligned twist also the other alignment's best) each with its own pose and
optics fitted, so that the margin compares like with like —, and a
calibrated 95 % interval (:mod:`vdwstack.closed_loop.uncertainty`). When even the best agreement
stays below ``min_agreement`` the image is not reproduced by any stacking of the material: the
estimate says so and gives no value.

A twist read within ``aligned_twist_warning_deg`` of an aligned stacking (0°, or 60° for MX2) is
read again at other ADF Z-contrasts (``z_contrast_shifts``) with the other alignment θ_max − θ
proposed, and the best of those fits is the answer: there the two alignments differ only in the
metal/chalcogen contrast, which no setting gives. Such a reading always carries a warning.

Readings of a mirrored image are given in the frame of the image as supplied: the slip (Da, Db)
of the mirror lattice along its own â, b̂, and the atomic model is the mirror image (x → −x) of
the stack, which reproduces the supplied image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm.auto import tqdm

from vdwstack.closed_loop.comparator import Comparator
from vdwstack.closed_loop.contenders import Candidate, HandFit, other_alignment, polish, rivals
from vdwstack.closed_loop.crop import Crop, extract_crop
from vdwstack.closed_loop.fit import (
    best_on_nuisance_grid,
    fit_layer_translation,
    fit_optics,
    fit_rotation_scale,
    gauss_newton,
    refine_stacking,
)
from vdwstack.closed_loop.orientation import initial_poses
from vdwstack.closed_loop.search import (
    distinct_peaks,
    scan_slip,
    scan_trilayer,
    scan_twist,
)
from vdwstack.closed_loop.settings import ClosedLoopSettings
from vdwstack.closed_loop.stacking import (
    Match,
    Pose,
    Stacking,
    layer_orderings,
    stacking_change,
    symmetry_orbit,
)
from vdwstack.closed_loop.uncertainty import (
    Interval,
    pose_for_theta,
    reading_interval,
)
from vdwstack.core.microscope import fixed_microscope
from vdwstack.structures.symmetry import projection_is_chiral, symmetry_for


@dataclass
class Estimate:
    """The final reading of one crop and how it was reached (see the module docstring)."""

    material: str
    layers: int
    twist: bool
    status: str  # ok | no_match
    final: Candidate
    hands: list[HandFit]
    runner_up: Candidate | None
    interval: Interval | None
    settings: ClosedLoopSettings
    warnings: list[str] = field(default_factory=list)
    # The ADF Z-contrast exponent shift of the simulations (see Optics), where it was fitted (twists
    # near an aligned stacking; None: the configured microscope's).
    z_exponent_shift: float | None = None

    @property
    def comparator(self) -> Comparator:
        return next(h.comp for h in self.hands if h.mirrored == self.final.mirrored)

    @property
    def margin(self) -> float | None:
        return None if self.runner_up is None else self.final.match.agreement - self.runner_up.match.agreement

    def candidate(self, source: str) -> Candidate | None:
        cands = [c for h in self.hands for c in h.candidates if c.source == source]
        return max(cands, key=lambda c: c.match.agreement) if cands else None


def _mirrored(crop: Crop) -> Crop:
    return replace(crop, raw=np.ascontiguousarray(np.fliplr(crop.raw)))


def _slip_of(reading: Mapping | None) -> Stacking | None:
    if not reading:
        return None
    return Stacking(**{k: float(v) for k, v in reading.items() if k in Stacking.__dataclass_fields__})


def _scan(coarse: Comparator, starts: list[Pose], twist: bool, s: ClosedLoopSettings) -> list[Match]:
    """The global scan's best distinct stackings (on the coarse crop), best first."""
    if twist:
        scan = scan_twist(coarse, starts, s.search_step_deg)
        return distinct_peaks(scan, coarse.material, True, 2, s.search_peaks, 2 * s.search_step_deg)
    if coarse.layers == 3:
        step = 3 * s.search_step_A
        scan = scan_trilayer(coarse, starts, step)
        return distinct_peaks(scan, coarse.material, False, 3, s.search_peaks + 2, 1.5 * step)
    scan = scan_slip(coarse, starts, s.search_step_A)
    return distinct_peaks(scan, coarse.material, False, 2, s.search_peaks, 2 * s.search_step_A)


def _fit_pose(comp: Comparator, m: Match, twist: bool) -> Match:
    """Pose and optics of the image, fitted at one stacking (the scan's best): a property of the
    image that every candidate of the hand then shares."""
    budget = comp.settings.max_evaluations
    m = comp.evaluate(m.stacking, m.pose)
    if twist:
        m = fit_layer_translation(comp, m.stacking, m.pose, maxfev=max(12, budget // 3))
    m = fit_rotation_scale(comp, m.stacking, m.pose, maxfev=max(12, budget // 3))
    m = fit_optics(comp, m.stacking, m.pose)
    return fit_rotation_scale(comp, m.stacking, m.pose, maxfev=max(8, budget // 5), step_deg=0.15,
                              step_scale=0.003)


def _network_candidates(comp: Comparator, pose: Pose, base_theta: float, proposal: Stacking, mirrored: bool,
                        twist: bool) -> list[Candidate]:
    """The proposal as it is (layer translation fitted for twists, both signs of θ) and refined."""
    if twist:
        best = max((best_on_nuisance_grid(comp, proposal, th, pose_for_theta(pose, base_theta, th))
                    for th in (abs(proposal.theta_deg), -abs(proposal.theta_deg))), key=lambda m: m.agreement)
        m0 = fit_layer_translation(comp, best.stacking, best.pose, maxfev=24)
    else:
        m0 = max((comp.evaluate(g, pose) for g in symmetry_orbit(comp.material, proposal)),
                 key=lambda m: m.agreement)
    return [Candidate("network", m0, mirrored),
            Candidate("refined", refine_stacking(comp, m0, twist), mirrored)]


def _fit_hand(crop: Crop, coarse_crop: Crop, image: np.ndarray, pixel_size_A: float, material: str, layers: int,
              twist: bool, s: ClosedLoopSettings, microscope: Mapping | None, mirrored: bool,
              proposal: Stacking | None, start: Pose | None) -> HandFit:
    """On the coarse crop: scan, fit the pose at the scan's best, refine every peak (and the
    network's proposal)."""
    flip = _mirrored if mirrored else (lambda c: c)
    comp = Comparator(flip(crop), material, layers, s, microscope)
    coarse = Comparator(flip(coarse_crop), material, layers, s, microscope)
    starts = [start] if start is not None else initial_poses(
        coarse, np.fliplr(image) if mirrored else image, pixel_size_A, Stacking(), twist)
    peaks = _scan(coarse, starts, twist, s)
    fitted = _fit_pose(coarse, peaks[0], twist)
    hand = HandFit(mirrored, comp, coarse)
    base_theta = fitted.stacking.theta_deg
    hand.candidates.append(Candidate("search", refine_stacking(coarse, fitted, twist), mirrored))
    for pk in peaks[1:]:
        m = coarse.evaluate(pk.stacking, pose_for_theta(fitted.pose, base_theta, pk.stacking.theta_deg))
        if twist:
            m = fit_layer_translation(coarse, m.stacking, m.pose, maxfev=24)
        hand.candidates.append(Candidate("search", refine_stacking(coarse, m, twist), mirrored))
    if proposal is not None:
        hand.candidates += _network_candidates(coarse, fitted.pose, base_theta, proposal, mirrored, twist)
    return hand


def _layers_swapped(comp: Comparator, m: Match) -> Match:
    """The same two lattices with the other layer at the bottom (θ → −θ about the same mean
    orientation; only the layers' depths, through the per-layer defocus, tell them apart), the
    layers' translation searched on a grid and refined."""
    best = best_on_nuisance_grid(comp, m.stacking, -m.stacking.theta_deg, m.pose)
    return fit_layer_translation(comp, best.stacking, best.pose, maxfev=24)


def _lift(hand: HandFit, c: Candidate, twist: bool) -> Candidate:
    """A coarse candidate fitted again on the full-resolution crop (the network's unrefined
    proposal only evaluated; the others refined from their coarse fit)."""
    m = hand.comp.evaluate(c.match.stacking, c.match.pose)
    if twist:
        m = max(m, _layers_swapped(hand.comp, m), key=lambda x: x.agreement)
    else:
        # The layers at the same positions in another order project alike; only their depths
        # (per-layer defocus) tell the orders apart, a little: take the best.
        for other in layer_orderings(c.match.stacking, hand.comp.layers)[1:]:
            m = max(m, hand.comp.evaluate(other, c.match.pose), key=lambda x: x.agreement)
    if c.source != "network":
        m = gauss_newton(hand.comp, m, twist)
    return Candidate(c.source, m, c.mirrored)


def estimate_reading(image: np.ndarray, pixel_size_A: float, material: str, layers: int, task: str,
                     proposal: Mapping | None = None, settings: ClosedLoopSettings | None = None,
                     microscope: Mapping | None = None, centre_A: tuple[float, float] | None = None,
                     context: Estimate | None = None) -> Estimate:
    """The final reading of the crop of `image` (grey, [H, W], `pixel_size_A` Å/px) centred on
    `centre_A` (x, y in Å; None: the image centre).

    proposal: the network's reading ({"Da_A", "Db_A"[, "Da2_A", "Db2_A"]} or {"theta_deg"}, and
        "mirrored": the hand it was read in, False if absent); None when no model exists (the
        reading then comes from the global search alone).
    context: the whole image's estimate, for a domain of it: its hand, pose and (where fitted) its
        Z-contrast are reused.
    microscope: the configured microscope block (ranges: their midpoint); defocus, source size and
        astigmatism are fitted, the Z-contrast too for twists near an aligned stacking.
    """
    if task not in ("slip", "twist"):
        raise ValueError(f"task must be 'slip' or 'twist', got {task!r}")
    s = settings or ClosedLoopSettings()
    if context is not None and context.z_exponent_shift is not None:  # a domain: the whole image's contrast
        microscope = {**dict(microscope or {}), "adf_z_exponent_shift": context.z_exponent_shift}
    est = _estimate(image, pixel_size_A, material, layers, task, proposal, s, microscope, centre_A, context)
    if task != "twist" or context is not None or est.status != "ok" or not s.z_contrast_shifts:
        return est
    sym = symmetry_for(material)
    theta = float(sym.fold_twist(est.final.match.stacking.theta_deg))
    if not sym.near_aligned_twist(theta, s.aligned_twist_warning_deg) or \
            est.final.match.agreement < s.z_contrast_min_agreement:
        return est
    # Near an aligned stacking, θ and the other alignment θ_max − θ differ only in the local
    # stackings' contrast: how bright a metal column is beside a chalcogen pair, i.e. the ADF
    # Z-contrast, which the detector's angles and the probe set and nobody gives. With the wrong
    # contrast the wrong alignment can fit better (independent 1.3° images: r 0.96 at 58.7° against
    # 0.86 at 1.1°; with the contrast right 0.985 at 1.2°), so the contrast is fitted as a nuisance
    # here: the reading is redone at each shift, the other alignment proposed, and the best fit kept.
    # Not for an image no simulation reproduces well (r < z_contrast_min_agreement: aberrations or
    # contamination the fit does not model): there the contrast's freedom only fits what is missing
    # (an independent 59.1° image read at r 0.79 went to 0.62° at r 0.84).
    base = fixed_microscope(microscope)["adf_z_exponent_shift"]
    partner = {**dict(proposal or {}), "theta_deg": float(sym.twist_partner_deg(theta))}
    est.z_exponent_shift = base
    for dz in s.z_contrast_shifts:
        z = base + dz
        alt = _estimate(image, pixel_size_A, material, layers, task, partner, s,
                        {**dict(microscope or {}), "adf_z_exponent_shift": z}, centre_A, None)
        if alt.status == "ok" and alt.final.match.agreement > est.final.match.agreement:
            alt.z_exponent_shift, est = z, alt
    return est


def _estimate(image: np.ndarray, pixel_size_A: float, material: str, layers: int, task: str,
              proposal: Mapping | None, s: ClosedLoopSettings, microscope: Mapping | None,
              centre_A: tuple[float, float] | None, context: Estimate | None) -> Estimate:
    """One reading at one microscope (:func:`estimate_reading` without the Z-contrast fit)."""
    twist = task == "twist"
    crop = extract_crop(image, pixel_size_A, centre_A, s)
    # The search's coarse crop: search_pixel_size_A, but never fewer than 48 px across.
    coarse_px = max(s.work_pixel_size_A, min(s.search_pixel_size_A, s.crop_A / 48))
    coarse_crop = extract_crop(image, pixel_size_A, centre_A,
                               replace(s, work_pixel_size_A=coarse_px, max_crop_px=max(48, s.max_crop_px // 2)))
    if context is not None:
        hands = [(context.final.mirrored, context.final.match.pose)]
    else:
        chiral = s.try_mirror and projection_is_chiral(material)
        hands = [(False, None)] + ([(True, None)] if chiral else [])
    # Each hand is a global search and local fits (seconds to a minute on a CPU): a progress bar.
    where = "domain" if context is not None else "whole image"
    # The network's proposal joins the hand it was read in (chiral lattices: the network reads
    # both hands and keeps one), or the only hand searched.
    proposal_hand = bool((proposal or {}).get("mirrored", False))
    if proposal_hand not in [m for m, _ in hands]:
        proposal_hand = hands[0][0]
    fits = [_fit_hand(crop, coarse_crop, image, pixel_size_A, material, layers, twist, s, microscope, m,
                      _slip_of(proposal) if m == proposal_hand else None, start)
            for m, start in tqdm(hands, desc=f"fitting {task}, {where}", unit="hand", leave=False)]
    return _conclude(material, layers, twist, fits, s)


def _conclude(material: str, layers: int, twist: bool, fits: list[HandFit], s: ClosedLoopSettings) -> Estimate:
    """Lift the contenders to full resolution (each hand's best, the best distinct stacking, the
    network's), polish the winner and its rivals (pose and optics re-fitted; a rival that then fits
    better wins), pick the runner-up, the interval, the warnings."""
    tol = s.distinct_deg if twist else s.distinct_A

    def distinct(a: Candidate, b: Candidate) -> bool:
        return a.mirrored != b.mirrored or stacking_change(material, a.match.stacking, b.match.stacking,
                                                           twist, layers) > tol

    for h in fits:
        ranked = sorted(h.candidates, key=lambda c: -c.match.agreement)
        keep = [ranked[0]] + [c for c in ranked[1:] if c.source != "search"]
        second = next((c for c in ranked[1:] if c.source == "search" and distinct(c, ranked[0])), None)
        h.candidates = [_lift(h, c, twist) for c in keep + ([second] if second else [])]
    best_hand = max(fits, key=lambda h: h.best.match.agreement)
    final = polish(best_hand, best_hand.best, twist, s)
    # The contenders are judged alike: the runner-up (and, near an aligned twist, the other
    # alignment's best) gets its own pose and optics too, not the winner's. With the winner's optics
    # it looked worse than it is (independent ~1–3° twists: the other alignment r 0.88 → 0.92 once
    # its own defocus and source size were fitted), which overstated the margin the reading reports.
    # A rival that its own fit walks into the winner's stacking is none: the next one is fitted.
    polished = [final]
    for _ in range(3):
        todo = [c for c in rivals(material, twist, fits, final, distinct, s) if not any(c is p for p in polished)]
        if not todo:
            break
        for rival in todo:
            rival = polish(next(h for h in fits if h.mirrored == rival.mirrored), rival, twist, s)
            polished.append(rival)
            if rival.match.agreement > final.match.agreement:
                final = rival
    others = [c for h in fits for c in h.candidates if distinct(c, final)]
    runner = max(others, key=lambda c: c.match.agreement) if others else None
    comp = next(h for h in fits if h.mirrored == final.mirrored).comp
    ok = final.match.agreement >= s.min_agreement
    est = Estimate(material, layers, twist, "ok" if ok else "no_match", final, fits, runner,
                   reading_interval(comp, final.match, twist, s) if ok else None, s)
    est.warnings += _warnings(est)
    return est


def _warnings(est: Estimate) -> list[str]:
    s, out = est.settings, []
    r = est.final.match.agreement
    if est.status != "ok":
        return [(f"no {est.material} stacking reproduces the image: best agreement r = {r:.2f} < "
                 f"{s.min_agreement:.2f} (no lattice, another material, or a scale far off)")]
    if len(est.hands) == 2:
        rs = {h.mirrored: h.best.match.agreement for h in est.hands}
        if abs(rs[True] - rs[False]) <= s.hand_margin:
            out.append(f"hand undecided: the image and its mirror fit equally well (r = {rs[False]:.3f} vs "
                       f"{rs[True]:.3f}, margin ≤ {s.hand_margin:.2f})")
    if est.margin is not None and est.margin <= s.hand_margin and est.runner_up.mirrored == est.final.mirrored:
        out.append(f"ambiguous: another stacking fits almost as well (r = {est.runner_up.match.agreement:.3f} "
                   f"vs {r:.3f})")
    if est.twist:
        sym = symmetry_for(est.material)
        theta = float(sym.fold_twist(est.final.match.stacking.theta_deg))
        if sym.near_aligned_twist(theta, s.aligned_twist_warning_deg):
            partner = float(sym.twist_partner_deg(theta))
            other = other_alignment(est.material, (c for h in est.hands for c in h.candidates), theta,
                                    s.aligned_twist_warning_deg)
            seen = (f"; its best fit here: r = {max(c.match.agreement for c in other):.3f}" if other else "")
            out.append(f"θ = {theta:.2f}° lies within {s.aligned_twist_warning_deg:g}° of an aligned stacking: it "
                       f"and the other alignment, θ = {partner:.2f}°, differ only in the local stackings' "
                       f"contrast (a field shorter than the moiré), which the simulation may not match as "
                       f"closely as the interval assumes{seen} — the alignment is the least certain part of "
                       f"this reading")
    scale = est.final.match.pose.scale
    if abs(scale - 1) > 0.02:
        out.append(f"the fitted scale is {scale:.3f}× the given pixel size: the pixel size is likely "
                   f"{100 * (scale - 1):+.1f} % off")
    return out
