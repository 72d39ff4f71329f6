"""Settings of the closed-loop check (lengths in Å, angles in degrees): one owner, the dataclass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vdwstack.core.settings import setting, settings_from_mapping


@dataclass(frozen=True)
class ClosedLoopSettings:
    """How every reading is re-simulated and fitted to its image (config block ``closed_loop``):
    the final reading is the candidate stacking (network proposal, its refinement, the global
    search's best, in both hands for chiral projections) that reproduces the image best."""

    crop_A: float = setting(24.0, "side of the compared crop (Å)", exclusiveMinimum=0)
    work_pixel_size_A: float = setting(0.1, "finer images are resampled to this (Å/px; never up-sampled)",
                                       exclusiveMinimum=0, maximum=0.3)
    max_crop_px: int = setting(256, "largest crop side (px; keeps one evaluation at ~10–40 ms)",
                               minimum=32, maximum=1024)
    min_agreement: float = setting(0.6, "below this agreement (Pearson r) no stacking reproduces the image: "
                                        "the record says so and gives no reading", minimum=-1, maximum=1)
    max_evaluations: int = setting(80, "simulations per Nelder–Mead optimisation", minimum=1, maximum=2000)
    defocus_A: tuple[float, ...] = setting(factory=lambda: (15.0, 35.0, 55.0),
                                           doc="defocus values tried (Å; positive = underfocus)", minItems=1)
    source_fwhm_range_A: tuple[float, float] = setting((0.3, 1.6), "bounds of the fitted source size, FWHM (Å)",
                                                       items={"type": "number", "minimum": 0})
    denoise_A: float = setting(0.25, "σ of the Gaussian low-pass on crop and simulation (Å; shot noise)",
                               exclusiveMinimum=0)
    background_A: float = setting(4.0, "σ of the smooth background removed from the crop (Å; contamination)",
                                  exclusiveMinimum=0)
    max_domains: int = setting(3, "slip domains read besides the whole image (largest first)", minimum=0)
    search_pixel_size_A: float = setting(0.2, "pixel size of the global search's coarse crop (Å/px)",
                                         exclusiveMinimum=0, maximum=0.4)
    search_step_A: float = setting(0.3, "step of the global search's slip grid over the slip cell (Å; "
                                        "twice this for a trilayer's two slips)", exclusiveMinimum=0, maximum=2)
    search_step_deg: float = setting(1.5, "step of the global twist scan over the material's range (°)",
                                     exclusiveMinimum=0, maximum=10)
    search_peaks: int = setting(3, "best distinct stackings of the global search fitted locally, per hand",
                                minimum=1, maximum=10)
    distinct_A: float = setting(0.15, "readings closer than this are one stacking (Å; the runner-up is farther)",
                                exclusiveMinimum=0)
    distinct_deg: float = setting(0.5, "twists closer than this are one stacking (°)", exclusiveMinimum=0)
    fit_distortion: bool = setting(True, "fit an affine scan distortion with the final reading: the lattice "
                                         "vectors' lengths and angle free within ±5 % (drift, shear)")
    fit_astigmatism: bool = setting(True, "fit two-fold astigmatism (C12 magnitude and angle, ≤ 20 Å) and the "
                                          "defocus (continuous) with the final reading")
    try_mirror: bool = setting(True, "for chiral projections (ReX2) also fit the mirror image: the hand")
    # 5°, not 3°: small twists read in the wrong alignment land up to ~1° beyond the partner θ_max − θ
    # (independent 2.2–2.7° images read at 56.3° and 56.9°), out of a 3° band's Z-contrast fit and warning.
    aligned_twist_warning_deg: float = setting(5.0, "a twist read within this of an aligned stacking (0°, or θ_max: "
                                                     "60° for MX2) is read again at other Z-contrasts with the other "
                                                     "alignment proposed, takes its own interval calibration and is "
                                                     "warned about: its alignment, θ vs θ_max − θ, is the readings' "
                                                     "most frequent error (°)", minimum=0)
    z_contrast_shifts: tuple[float, ...] = setting(
        factory=lambda: (-0.35, 0.3),
        doc="a twist read near an aligned stacking is read again with the ADF Z-contrast exponent shifted by each "
            "of these (microscope adf_z_exponent_shift), the other alignment proposed; the best fit wins ([]: never)")
    z_contrast_min_agreement: float = setting(0.9, "only when its reading reproduces the image at least this well "
                                                   "(r): below, what the simulation misses is not the contrast, and "
                                                   "a contrast fitted to it decides nothing", minimum=-1, maximum=1)
    hand_margin: float = setting(0.01, "a hand is decided when its agreement beats the other's by more (r)",
                                 minimum=0, maximum=1)
    # Calibrated on benchmarks/data/independent/calibration (2026-12-06; CPU-hour networks proposing): 48
    # slip readings (3 in a wrong basin left out), 96 twists — 44 read away from the aligned stackings,
    # 52 within aligned_twist_warning_deg of one (20 regular draws per alignment, then 16 extra small and
    # 12 extra larger twists each; 3 in the other alignment left out) —, each group covering
    # ⌈(n + 1)·95 %⌉ of its n readings (values rounded up); see the README.
    interval_scale_slip: float = setting(2.45, "calibration factor k of a slip's standard errors (Σ = k²·Σ_fit + f²; "
                                              "re-measured by benchmarks/final_readings.py --calibrate)",
                                         exclusiveMinimum=0)
    interval_scale_twist: float = setting(0.48, "calibration factor k of a twist's standard error", exclusiveMinimum=0)
    interval_scale_twist_aligned: float = setting(1.83, "calibration factor k of a twist read within "
                                                        "aligned_twist_warning_deg of an aligned stacking (those "
                                                        "readings are less certain than their fit says)",
                                                  exclusiveMinimum=0)
    interval_floor_A: float = setting(0.0, "calibration floor f of a slip's standard error (Å)", minimum=0)
    interval_floor_deg: float = setting(0.01, "calibration floor f of a twist's standard error (°)", minimum=0)

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> ClosedLoopSettings:
        """From the config block (``enabled``, a workflow switch, is not a setting of the check)."""
        m = dict(m or {})
        s = settings_from_mapping(cls, m, "closed_loop", ignore=("enabled",))
        lo, hi = s.source_fwhm_range_A
        if not lo < hi:
            raise ValueError(f"closed_loop.source_fwhm_range_A must be [min, max] with min < max, got {[lo, hi]}")
        return s
