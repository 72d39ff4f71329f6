"""Pixel size of an image from its own Bragg spots and the material's known lattice.

A hypothesis a = p·e^{iφ} (pixel size p in Å/px, in-plane rotation φ) puts every reciprocal-lattice
vector g of the material (1/Å) at q = a·g in the image's power spectrum (cycles/px, complex
numbers x + iy). Hypotheses come from pairing each strong observed spot with each strong reflection
of the material, are refined by a least-squares fit of all the spots they explain, and are scored
by :func:`vdwstack.structures.bragg.match_score`: how well the observed and expected spot
strengths agree over the union of observed spots and predicted reflections. The multiples and
sub-multiples of the true scale (a sub- or super-lattice of the spots) lose there — a too-coarse
scale leaves strong spots unexplained, a too-fine one predicts strong spots that are absent — and
the estimate is refused (ValueError, saying why) rather than guessed when no lattice stands out,
when another scale fits nearly as well, or when the spots are too few or too close to the centre
to fix the scale to :data:`MAX_SIGMA`.

:func:`resolve_pixel_size` is the one place where an image's pixel size is decided, for every
stage (style references, inference and its closed loop, the CLI), with one precedence: a value the
user gave (sample sheet, ``--pixel-size``, the API's ``pixel_size_A``) > the file's calibration >
the estimate from the Bragg spots. A user value that disagrees with the file's calibration by more
than :data:`MAX_DISAGREEMENT` is used, with a warning naming both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vdwstack.core.images import LoadedImage, load_image
from vdwstack.structures.bragg import (
    R_MAX,
    R_MIN_PX,
    BraggSpots,
    find_spots,
    inside,
    match,
    match_score,
    refine,
    reflections,
    relative_strengths,
)
from vdwstack.structures.materials import get_material

__all__ = ["PixelSize", "PixelSizeEstimate", "estimate_pixel_size", "load_calibrated_image", "read_calibrated_image",
           "reflections", "resolve_pixel_size"]

log = logging.getLogger(__name__)

MIN_SCORE = 0.3          # best match score (0–1) below which no lattice stands out
MARGIN = 0.1             # a different scale scoring within this of the best makes the estimate ambiguous
EQUIVALENT = 0.01        # relative difference of two scales that are the same answer
MAX_SIGMA = 0.01 / 3     # relative standard error of the fitted scale above which it is refused (3σ = 1 %)
MIN_SPOTS = 10           # spots a fit must explain: 5 independent ones and their centrosymmetric mates
KEY_STRENGTH = 0.5       # the material's strongest reflections (relative strength) …
KEY_SEEN = 0.75          # … of which this fraction (by strength) must lie in the searched annulus
N_SEED_SPOTS = 8         # strongest observed spots, each paired with …
N_SEED_G = 30            # … the lowest strong reflections, give the hypotheses
MAX_DISAGREEMENT = 0.02  # relative difference of two given pixel sizes above which a warning is raised


@dataclass(frozen=True)
class PixelSizeEstimate:
    """Pixel size (Å/px), lattice rotation in the image (degrees, modulo the lattice's symmetry),
    the match score (0–1), the number of spots fitted and the spot contrast (median power over
    background at the material's strongest reflections; pure noise ≈ 1)."""

    pixel_size_A: float
    rotation_deg: float
    score: float
    n_spots: int
    spot_contrast: float


def _half(z: np.ndarray) -> np.ndarray:
    """Mask of one of each ±z pair (the spectrum of a real image is centrosymmetric)."""
    return (z.imag > 0) | ((z.imag == 0) & (z.real > 0))


def _hypotheses(spots: BraggSpots, zg: np.ndarray, w_rel: np.ndarray, search: tuple[float, float]
                ) -> np.ndarray:
    """Hypotheses a = q / g (Å per spectrum pixel, complex) from the strongest spots and reflections
    that put KEY_SEEN of the material's strongest reflections (by strength) in the annulus (else
    the hypothesis is untestable: a too-fine scale would hide its strongest spots in the image's
    envelope near the centre, where their absence cannot count against it)."""
    h = _half(spots.z)
    zs = spots.z[h][np.argsort(-spots.power[h])][:N_SEED_SPOTS]
    strong = _half(zg) & (w_rel >= 0.05)
    gs = zg[strong][np.argsort(np.abs(zg[strong]))][:N_SEED_G]
    a = (zs[:, None] / gs[None, :]).ravel()
    p = np.abs(a) / spots.binning
    key = w_rel >= KEY_STRENGTH
    r_key = np.abs(a)[:, None] * np.abs(zg[key])[None] * spots.n
    seen = (r_key >= R_MIN_PX) & (r_key <= R_MAX * spots.n)
    testable = seen @ w_rel[key] >= KEY_SEEN * w_rel[key].sum()
    return a[(p >= search[0]) & (p <= search[1]) & testable]


def _contrast(spots: BraggSpots, zg: np.ndarray, w_rel: np.ndarray, a: complex) -> float:
    """Median power / background over the strongest reflections (unseen ones count as 1)."""
    zq = a * zg[w_rel >= KEY_STRENGTH]
    zq = zq[inside(spots, zq)]
    if not len(zq):
        return 0.0
    j = match(spots, zq)
    ratio = np.where(j >= 0, spots.power[np.maximum(j, 0)] / spots.background_at(zq), 1.0)
    return float(np.median(ratio))


def _same_lattice(a: complex, b: complex, period_rad: float, tol_rad: float) -> bool:
    """Whether hypotheses a and b have the same scale (0.2 %) and rotation (modulo the lattice's)."""
    d = (np.angle(a) - np.angle(b)) % period_rad
    return abs(abs(a) / abs(b) - 1) < 0.002 and min(d, period_rad - d) < tol_rad


def _fits(spots: BraggSpots, zg: np.ndarray, w_rel: np.ndarray, period_rad: float,
          search: tuple[float, float]) -> list[list]:
    """Distinct refined hypotheses [score, a, σ_rel, matched spots], best first.

    A hypothesis' score is the better of its own and that of it together with another of the same
    scale at another rotation: the two layers of a twisted bilayer are each half of the spots."""
    fits: list[list] = []
    for a0 in _hypotheses(spots, zg, w_rel, search):
        a, sigma, _ = refine(spots, zg, a0)
        if not any(_same_lattice(a, f[1], period_rad, np.deg2rad(0.5)) for f in fits):
            score, m = match_score(spots, zg, w_rel, [a])
            fits.append([score, a, sigma, m])
    fits = sorted(fits, key=lambda f: -f[0])[:24]
    single = [f[0] for f in fits]
    for i, fi in enumerate(fits):
        for k, fk in enumerate(fits):
            if (k != i and abs(abs(fk[1]) / abs(fi[1]) - 1) <= EQUIVALENT and single[k] > 0.5 * single[i]
                    and not _same_lattice(fi[1], fk[1], period_rad, np.deg2rad(2.0))):
                fi[0] = max(fi[0], match_score(spots, zg, w_rel, [fi[1], fk[1]])[0])
    return sorted(fits, key=lambda f: -f[0])


def estimate_pixel_size(image: np.ndarray, material: str, search_A: tuple[float, float] = (0.01, 0.5)
                        ) -> PixelSizeEstimate:
    """Estimate the pixel size (Å/px) of an ADF-STEM image of `material` from its Bragg spots.

    search_A: the range of pixel sizes considered (Å/px). Raises ValueError, saying why, when no
    spots stand out of the noise, no lattice of the material explains them (match score <
    :data:`MIN_SCORE`), a scale more than :data:`EQUIVALENT` away explains them nearly as well
    (within :data:`MARGIN`), fewer than :data:`MIN_SPOTS` spots fit, or the fit cannot fix the
    scale to :data:`MAX_SIGMA`.
    """
    zg, w_rel = relative_strengths(material)
    mat = get_material(material)
    period = np.pi / 3 if mat.is_hexagonal else np.pi
    spots = find_spots(image)
    why = f"no {material} lattice found in the image's Fourier transform"
    if _half(spots.z).sum() < MIN_SPOTS // 2:
        raise ValueError(f"{why}: fewer than {MIN_SPOTS // 2} Bragg spots (and their centrosymmetric mates) stand "
                         f"out of the noise; give the pixel size instead")
    fits = _fits(spots, zg, w_rel, period, search_A)
    if not fits:
        raise ValueError(f"{why}: no pairing of its spots with {material}'s reflections gives a pixel size in "
                         f"{search_A} Å/px with the strongest reflections resolved; give the pixel size instead")
    score, a, sigma, m = fits[0]
    p = abs(a) / spots.binning
    if score < MIN_SCORE:
        raise ValueError(f"{why}: no lattice of {material} stands out (best match {score:.2f} < {MIN_SCORE}, "
                         f"at {p:.4g} Å/px); give the pixel size instead")
    alt = [f for f in fits if abs(abs(f[1]) / abs(a) - 1) > EQUIVALENT]
    if alt and alt[0][0] > score - MARGIN:
        raise ValueError(f"the {material} lattice's scale is ambiguous: two scales fit equally well: {p:.4g} and "
                         f"{abs(alt[0][1]) / spots.binning:.4g} Å/px (match {score:.2f} and {alt[0][0]:.2f}); "
                         f"give the pixel size instead")
    if m < MIN_SPOTS:
        raise ValueError(f"too few {material} spots to test a lattice: {m} fit {p:.4g} Å/px, at least {MIN_SPOTS} "
                         f"({MIN_SPOTS // 2} and their centrosymmetric mates) are needed; give the pixel size instead")
    if not sigma <= MAX_SIGMA:
        raise ValueError(f"the {material} spots cannot fix the pixel size to 1 %: {m} spots fitted, standard error "
                         f"{100 * sigma:.2g} % of {p:.4g} Å/px (too small a field, spots too faint or too close to "
                         f"the centre, or scattered about one lattice: a distorted image, a second lattice); "
                         f"give the pixel size instead")
    return PixelSizeEstimate(pixel_size_A=float(p), rotation_deg=float(np.rad2deg(np.angle(a) % period)),
                             score=float(score), n_spots=m, spot_contrast=_contrast(spots, zg, w_rel, a))


@dataclass(frozen=True)
class PixelSize:
    """An image's resolved pixel size (Å/px), where it came from and what disagreed.

    source: the user's label for a given value ("sheet", "user"), "metadata" (the file's
    calibration) or "estimated" (Bragg spots); warnings: sentences naming both values when the
    given and recorded pixel sizes differ by more than :data:`MAX_DISAGREEMENT`.
    """

    pixel_size_A: float
    source: str
    warnings: tuple[str, ...] = field(default_factory=tuple)


def resolve_pixel_size(image: np.ndarray, material: str, user_A: float | None = None,
                       file_A: float | None = None, user_source: str = "user", where: str = "image") -> PixelSize:
    """The pixel size of `image` (Å/px): `user_A` (labelled `user_source`) > `file_A` (the file's
    calibration, "metadata") > :func:`estimate_pixel_size` ("estimated").

    Raises ValueError naming `where` for a given value that is not a positive number, or when no
    value is given and none can be estimated.
    """
    for name, value in ((user_source, user_A), ("metadata", file_A)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"{where}: pixel size from the {name} must be a positive number of Å, got {value!r}")
    warnings: tuple[str, ...] = ()
    if user_A is not None and file_A is not None and abs(user_A / file_A - 1) > MAX_DISAGREEMENT:
        message = (f"{where}: the {user_source} gives {user_A:.4g} Å/px but the file's calibration says "
                   f"{file_A:.4g} Å/px ({100 * abs(user_A / file_A - 1):.0f} % apart); using the {user_source}'s")
        warnings = (message,)
        log.warning("%s", warnings[0])
    if user_A is not None:
        return PixelSize(float(user_A), user_source, warnings)
    if file_A is not None:
        return PixelSize(float(file_A), "metadata")
    try:
        est = estimate_pixel_size(image, material)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    log.info("%s: pixel size estimated from the Bragg spots: %.4f Å/px (match %.2f, %d spots)",
             where, est.pixel_size_A, est.score, est.n_spots)
    return PixelSize(est.pixel_size_A, "estimated")


def load_calibrated_image(path: str | Path, material: str, user_A: float | None = None, user_source: str = "user",
                          signal: str | None = None) -> tuple[LoadedImage, PixelSize]:
    """Read an image (:func:`vdwstack.core.images.load_image`: the grey float32 [H, W] data, the
    file's calibration and which signal was read), check the material and resolve its pixel size
    (:func:`resolve_pixel_size`); every error names the file.

    signal: which signal of a multi-signal file to read (title or index as a string; None: the
    HAADF/ADF image)."""
    try:
        get_material(material)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    loaded = load_image(path, signal=signal)
    return loaded, resolve_pixel_size(loaded.data, material, user_A, loaded.pixel_size_A, user_source,
                                      where=str(path))


def read_calibrated_image(path: str | Path, material: str, user_A: float | None = None,
                          user_source: str = "user", signal: str | None = None) -> tuple[np.ndarray, PixelSize]:
    """Read an image (:func:`vdwstack.core.images.read_image`), check the material and resolve its
    pixel size (:func:`resolve_pixel_size`); every error names the file.

    Returns the grey float32 [H, W] image and its :class:`PixelSize` (Å/px). signal: as for
    :func:`load_calibrated_image`, which also says which signal was read."""
    loaded, px = load_calibrated_image(path, material, user_A, user_source, signal)
    return loaded.data, px
