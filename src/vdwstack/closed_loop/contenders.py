"""The contenders of a final reading: each candidate stacking with its fit, the fits of one hand,
and the polish that gives every contender its own pose and optics, so that the winner and its
rivals are compared like with like (a rival judged with the winner's defocus and source size looks
worse than it is, and the margin the reading reports would be overstated)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vdwstack.closed_loop.comparator import Comparator
from vdwstack.closed_loop.fit import fit_optics, gauss_newton
from vdwstack.closed_loop.settings import ClosedLoopSettings
from vdwstack.closed_loop.stacking import Match
from vdwstack.closed_loop.uncertainty import fitted_pose_params
from vdwstack.structures.symmetry import symmetry_for


@dataclass
class Candidate:
    """One fitted stacking: where it came from, the hand it was fitted in, the fit."""

    source: str  # network | refined | search
    match: Match
    mirrored: bool


@dataclass
class HandFit:
    """The fits in one hand: comparators of the (mirrored) crop — full resolution and the coarse
    one of the search —, and the candidates (coarse fits, then their full-resolution refits)."""

    mirrored: bool
    comp: Comparator
    coarse: Comparator
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def best(self) -> Candidate:
        return max(self.candidates, key=lambda c: c.match.agreement)


def polish(hand: HandFit, c: Candidate, twist: bool, s: ClosedLoopSettings) -> Candidate:
    """A contender with its pose (rotation, scale, scan distortion, astigmatism) and optics (defocus,
    source size) fitted at its own stacking: Gauss–Newton, the optics grid, Gauss–Newton again. It
    replaces `c` among its hand's candidates. Never worse than `c`."""
    pose_params = fitted_pose_params(s)
    m = gauss_newton(hand.comp, c.match, twist, iterations=4, pose_params=pose_params)
    m = fit_optics(hand.comp, m.stacking, m.pose)
    m = gauss_newton(hand.comp, m, twist, iterations=4, pose_params=pose_params)
    out = Candidate(c.source, m if m.agreement >= c.match.agreement else c.match, c.mirrored)
    hand.candidates[hand.candidates.index(c)] = out
    return out


def rivals(material: str, twist: bool, fits: list[HandFit], final: Candidate,
           distinct: Callable[[Candidate, Candidate], bool], s: ClosedLoopSettings) -> list[Candidate]:
    """The candidates to fit as carefully as the winner `final`: the best one of another stacking
    (or the other hand) and, for a twist within ``aligned_twist_warning_deg`` of an aligned
    stacking, the best one of the other alignment θ_max − θ."""
    others = [c for h in fits for c in h.candidates if distinct(c, final)]
    if not others:
        return []
    out = [max(others, key=lambda c: c.match.agreement)]
    if twist:
        sym = symmetry_for(material)
        theta = float(sym.fold_twist(final.match.stacking.theta_deg))
        if sym.near_aligned_twist(theta, s.aligned_twist_warning_deg):
            other = other_alignment(material, others, theta, s.aligned_twist_warning_deg)
            best = max(other, key=lambda c: c.match.agreement) if other else None
            if best is not None and best is not out[0]:
                out.append(best)
    return out


def other_alignment(material: str, candidates: Iterable[Candidate], theta_deg: float,
                    band_deg: float) -> list[Candidate]:
    """The candidates read within `band_deg` (degrees) of the other alignment θ_max − θ of the twist
    `theta_deg` (degrees, folded into the material's range)."""
    sym = symmetry_for(material)
    partner = float(sym.twist_partner_deg(theta_deg))
    return [c for c in candidates if sym.twist_error_deg(c.match.stacking.theta_deg, partner) < band_deg]
