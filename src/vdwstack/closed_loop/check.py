"""One closed-loop check: fit the reading, refine it, search globally, and say what is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from vdwstack.closed_loop.comparator import Comparator
from vdwstack.closed_loop.crop import extract_crop
from vdwstack.closed_loop.fit import fit_pose, refine_stacking
from vdwstack.closed_loop.orientation import initial_poses
from vdwstack.closed_loop.search import search_alternative
from vdwstack.closed_loop.settings import ClosedLoopSettings
from vdwstack.closed_loop.stacking import Match, Stacking, canonical_stacking, stacking_change


@dataclass
class CheckResult:
    """Outcome of one closed-loop check (one crop, one reading)."""

    reading: Match
    refined: Match | None
    comparator: Comparator
    twist: bool
    tolerance: float
    warnings: list[str] = field(default_factory=list)
    alternative: Match | None = None  # the global search's best stacking (None: not searched)
    fits_better: bool = False  # the alternative beats the reading by the margin, farther than the tolerance

    def to_record(self) -> dict:
        comp = self.comparator
        crop = comp.crop
        unit = "deg" if self.twist else "A"
        keys = ["theta_deg"] if self.twist else (["Da_A", "Db_A"] + (["Da2_A", "Db2_A"] if comp.layers == 3 else []))

        def values(m: Match) -> dict:
            s = canonical_stacking(comp.material, m.stacking, self.twist)
            return {k: round(getattr(s, k), 4) for k in keys}

        def fit(m: Match) -> dict:
            _, a, b = comp.simulated_crop(m)
            return {"rotation_deg": round(m.pose.rotation_deg % 360.0, 3),
                    "pixel_size_A": round(crop.image_pixel_size_A * m.pose.scale, 6),
                    "scale": round(m.pose.scale, 5), "defocus_A": m.pose.defocus_A,
                    "source_fwhm_A": round(m.pose.source_fwhm_A, 3),
                    "translation_A": [round(v * crop.pixel_size_A, 3) for v in m.translation_px[::-1]],
                    "intensity_scale": a, "intensity_offset": b,
                    **({"layer_translation_A": [round(m.stacking.Da_A, 3), round(m.stacking.Db_A, 3)]}
                       if self.twist else {})}

        rec = {"reading": values(self.reading), "agreement": round(self.reading.agreement, 4),
               "fit": fit(self.reading),
               "crop": {"x0_A": round(crop.x0_A, 2), "y0_A": round(crop.y0_A, 2), "size_A": round(crop.size_A, 2),
                        "pixel_size_A": crop.pixel_size_A, "size_px": crop.raw.shape[0]},
               f"tolerance_{unit}": round(self.tolerance, 4), "simulations": comp.evaluations,
               "warnings": list(self.warnings)}
        if self.refined is not None:
            rec["refined"] = values(self.refined)
            rec["refined_agreement"] = round(self.refined.agreement, 4)
            rec["refined_fit"] = fit(self.refined)
            rec[f"change_{unit}"] = round(stacking_change(comp.material, self.reading.stacking,
                                                          self.refined.stacking, self.twist, comp.layers), 4)
        if self.alternative is not None:
            rec["alternative"] = {**values(self.alternative), "agreement": round(self.alternative.agreement, 4),
                                  f"distance_{unit}": round(stacking_change(
                                      comp.material, self.reading.stacking, self.alternative.stacking,
                                      self.twist, comp.layers), 4),
                                  "fits_better": bool(self.fits_better), "fit": fit(self.alternative)}
        return rec


def check_reading(image: np.ndarray, pixel_size_A: float, material: str, layers: int, reading: Mapping,
                  task: str, settings: ClosedLoopSettings = ClosedLoopSettings(),
                  centre_A: tuple[float, float] | None = None, uncertainty: float = 0.0,
                  region: str = "whole image", microscope: Mapping | None = None) -> CheckResult:
    """Closed-loop check of one reading on one crop.

    Args:
        image: grey image [H, W]; pixel_size_A: its pixel size (Å/px).
        reading: {"Da_A", "Db_A"[, "Da2_A", "Db2_A"]} for task "slip", {"theta_deg"} for "twist".
        centre_A: crop centre (x, y) in Å; None: the image centre.
        uncertainty: the reading's uncertainty (Å or degrees); the refinement tolerance is the
            larger of it and the settings' floor.
        region: a name for messages ("whole image", "domain 2").
    """
    if task not in ("slip", "twist"):
        raise ValueError(f"task must be 'slip' or 'twist', got {task!r}")
    twist = task == "twist"
    crop = extract_crop(image, pixel_size_A, centre_A, settings)
    comp = Comparator(crop, material, layers, settings, microscope)
    stacking = Stacking(**{k: float(v) for k, v in reading.items() if k in Stacking.__dataclass_fields__})
    starts = initial_poses(comp, image, pixel_size_A, stacking, twist)
    match = fit_pose(comp, stacking, starts, twist)
    refined = refine_stacking(comp, match, twist) if settings.refine else None
    search = settings.search_alternatives == "always" or (
        settings.search_alternatives == "flagged" and match.agreement < settings.min_agreement)
    alternative = search_alternative(comp, starts, twist, match.pose) if search else None
    tol = max(float(uncertainty or 0.0), settings.min_tolerance_deg if twist else settings.min_tolerance_A)
    warnings = []
    what = "θ" if twist else "slip"
    if match.agreement < settings.min_agreement:
        warnings.append(f"{region}: poor agreement {match.agreement:.2f} < {settings.min_agreement:.2f}: the "
                        f"{what} reading does not reproduce the image")
    if refined is not None:
        change = stacking_change(material, match.stacking, refined.stacking, twist, layers)
        unit = "°" if twist else " Å"
        if change > tol:
            warnings.append(f"{region}: refinement moved the {what} by {change:.3f}{unit}, more than its "
                            f"uncertainty ({tol:.3f}{unit}); agreement {match.agreement:.2f} → {refined.agreement:.2f}")
        if refined.agreement < settings.min_agreement:
            warnings.append(f"{region}: even the refined {what} agrees poorly ({refined.agreement:.2f})")
    better = False
    if alternative is not None:
        local = max(match.agreement, refined.agreement if refined is not None else -1.0)
        dist = stacking_change(material, match.stacking, alternative.stacking, twist, layers)
        better = alternative.agreement > local + settings.alternative_margin and dist > tol
        if better:
            a = canonical_stacking(material, alternative.stacking, twist)
            value = f"θ = {a.theta_deg:.1f}°" if twist else f"D = ({a.Da_A:.2f}, {a.Db_A:.2f}) Å"
            warnings.append(f"{region}: a different reading fits better: {value} (r = {alternative.agreement:.2f} "
                            f"vs {match.agreement:.2f}; {'Δθ' if twist else 'ΔD'} = {dist:.2f}"
                            f"{'°' if twist else ' Å'} from the reading)")
    return CheckResult(match, refined, comp, twist, tol, warnings, alternative, better)
