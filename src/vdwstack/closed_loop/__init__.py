"""Closed-loop check: re-simulate an inferred stacking and measure how well it reproduces the image.

A reading (slip Da, Db in Å — two slips for trilayers — or twist θ in degrees) becomes an atomic
model that the incoherent simulator renders on a crop of the experimental image. The nuisance
parameters are fitted: in-plane rotation and scale (the pixel size), started from the lattice
orientation in the image's power spectrum (:func:`spectral_orientation`), every rotation the spot
pattern cannot tell apart tried — for a fixed slip of a 3-fold monolayer (2H MX2) that is all six
60° turns, since a 120° turn changes the model of D into that of an equivalent R·D —, translation (FFT cross-correlation against a simulation one unit cell larger than the
crop), defocus (a few values), source size (a Gaussian blur, cheap to vary), and for twists the
relative translation of the layers (it moves the moiré). Intensity scale and offset come from least
squares; the agreement is the normalised cross-correlation (Pearson r, invariant to them) of the
band-passed crop and simulation: both are low-passed by the same Gaussian (``denoise_A``) so shot
noise does not dominate, and the crop loses its slowly varying background (contamination,
thickness), which the simulation does not have.

Optionally the reading itself is refined (Nelder–Mead from the reading) to maximise the agreement;
the change is reported with the material's symmetry-aware ΔD / Δθ. The refinement is local: a
reading far from the truth stays wrong. A global search (:func:`search_alternative`: a coarse grid
over the slip cell, or a scan of θ over the material's range, then the local fit of the best) looks
for the stacking that reproduces the image best; it is reported beside the reading, never instead
of it. The scans are cheap because the incoherent image is linear in the atoms: each layer is
rendered once and every slip (or relative layer translation) is a Fourier phase shift of layer 2.

Images are [row, col] = [y, x]; x = col·p, y = row·p (Å); angles in degrees.
"""

from vdwstack.closed_loop.comparator import Comparator
from vdwstack.closed_loop.crop import Crop, extract_crop
from vdwstack.closed_loop.estimate import Candidate, Estimate, estimate_reading
from vdwstack.closed_loop.fit import refine_stacking
from vdwstack.closed_loop.orientation import (
    initial_poses,
    rotation_candidates_deg,
    spectral_orientation,
)
from vdwstack.closed_loop.search import scan_slip, scan_trilayer, scan_twist
from vdwstack.closed_loop.settings import ClosedLoopSettings
from vdwstack.closed_loop.stacking import (
    Match,
    Pose,
    Stacking,
    canonical_stacking,
    stacking_change,
)
from vdwstack.closed_loop.uncertainty import Interval, reading_interval

__all__ = [
    "Candidate", "ClosedLoopSettings", "Comparator", "Crop", "Estimate", "Interval", "Match", "Pose", "Stacking",
    "canonical_stacking", "estimate_reading", "extract_crop", "initial_poses", "reading_interval",
    "refine_stacking", "rotation_candidates_deg", "scan_slip", "scan_trilayer", "scan_twist",
    "spectral_orientation", "stacking_change",
]
