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

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import scipy.fft
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.ndimage import shift as nd_shift
from scipy.optimize import minimize, minimize_scalar

from vdwstack.simulate.incoherent import job_from_atoms, padding_px, render_incoherent
from vdwstack.structures.materials import get_material
from vdwstack.simulate.optics import Optics
from vdwstack.structures.enumeration import MICROSCOPE_DEFAULTS
from vdwstack.structures.geometry import StackGeometry, build_stack, layer_heights_A
from vdwstack.structures.symmetry import symmetry_for

log = logging.getLogger(__name__)

_FWHM_PER_SIGMA = 2 * np.sqrt(2 * np.log(2))


@dataclass(frozen=True)
class ClosedLoopSettings:
    """How the check is done (lengths in Å, angles in degrees).

    crop_A: side of the square crop compared with the simulation.
    work_pixel_size_A: images with finer pixels are resampled to this (never up-sampled).
    max_crop_px: upper bound on the crop side in pixels (keeps one evaluation at ~10–40 ms).
    refine: also optimise the reading itself (slip, or θ with the layers' relative translation).
    min_agreement: below this agreement (Pearson r) the reading is flagged.
    max_evaluations: simulations per Nelder–Mead optimisation.
    defocus_A: defocus values tried (abTEM sign: positive = underfocus).
    source_fwhm_range_A: bounds of the fitted source size (FWHM).
    denoise_A: σ of the Gaussian low-pass applied to both crop and simulation.
    background_A: σ of the smooth background removed from the crop.
    min_tolerance_A, min_tolerance_deg: floors of the tolerance on the refinement's change
        (the reading's own uncertainty is used when larger).
    max_domains: slip domains checked per image (largest first), besides the whole image.
    search_alternatives: when to search globally for a better-fitting reading: "flagged" (the
        reading's agreement is below min_agreement), "always" or "never".
    alternative_margin: the alternative is reported as fitting better (a warning) when its agreement
        exceeds the reading's (and the refined reading's) by more than this (Pearson r) and it lies
        farther from the reading than the tolerance.
    alternative_step_A: step of the slip grid over the symmetry-reduced slip cell (Å).
    alternative_step_deg: step of the twist scan over the material's range (degrees).
    """

    crop_A: float = 24.0
    work_pixel_size_A: float = 0.1
    max_crop_px: int = 256
    refine: bool = True
    min_agreement: float = 0.5
    max_evaluations: int = 80
    defocus_A: tuple[float, ...] = (15.0, 35.0, 55.0)
    source_fwhm_range_A: tuple[float, float] = (0.3, 1.6)
    denoise_A: float = 0.25
    background_A: float = 4.0
    min_tolerance_A: float = 0.1
    min_tolerance_deg: float = 0.5
    max_domains: int = 4
    search_alternatives: str = "flagged"
    alternative_margin: float = 0.05
    alternative_step_A: float = 0.3
    alternative_step_deg: float = 1.5

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> ClosedLoopSettings:
        m = dict(m or {})
        m.pop("enabled", None)  # a workflow switch, not a setting of the check
        unknown = set(m) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"closed_loop: unknown setting(s) {sorted(unknown)}")
        for k in ("defocus_A", "source_fwhm_range_A"):
            if k in m:
                m[k] = tuple(float(v) for v in m[k])
        if isinstance(m.get("search_alternatives"), bool):  # YAML true/false
            m["search_alternatives"] = "always" if m["search_alternatives"] else "never"
        s = cls(**m)
        if s.search_alternatives not in ("flagged", "always", "never"):
            raise ValueError(f"closed_loop.search_alternatives must be 'flagged', 'always' or 'never', "
                             f"got {s.search_alternatives!r}")
        if not 0 <= s.alternative_margin <= 1:
            raise ValueError(f"closed_loop.alternative_margin must be in [0, 1], got {s.alternative_margin!r}")
        for name in ("crop_A", "work_pixel_size_A", "denoise_A", "background_A", "alternative_step_A",
                     "alternative_step_deg"):
            v = getattr(s, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"closed_loop.{name} must be > 0, got {v!r}")
        if s.max_crop_px < 32 or s.max_evaluations < 1 or s.max_domains < 0:
            raise ValueError("closed_loop: max_crop_px ≥ 32, max_evaluations ≥ 1, max_domains ≥ 0 required")
        lo, hi = s.source_fwhm_range_A
        if not 0 <= lo < hi or not s.defocus_A:
            raise ValueError("closed_loop: source_fwhm_range_A must be [min, max] with 0 ≤ min < max, "
                             "defocus_A a non-empty list")
        return s


@dataclass(frozen=True)
class Stacking:
    """A stacking to simulate: slips (Å, lattice frame) and twist (degrees).

    For twists Da_A, Db_A are the layers' relative translation (a nuisance that moves the moiré).
    """

    Da_A: float = 0.0
    Db_A: float = 0.0
    Da2_A: float = 0.0
    Db2_A: float = 0.0
    theta_deg: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Pose:
    """How the model sits in the crop: rotation (degrees), scale (true / nominal pixel size), optics."""

    rotation_deg: float = 0.0
    scale: float = 1.0
    defocus_A: float = 35.0
    source_fwhm_A: float = 0.7


@dataclass
class Match:
    """One evaluated model: agreement and what the fit found.

    agreement: Pearson r of the band-passed crop and simulation.
    translation_px: (row, col) of the crop's corner in the simulation canvas (sub-pixel).
    window: band-passed simulation under the crop (for figures); None until requested.
    """

    agreement: float
    stacking: Stacking
    pose: Pose
    translation_px: tuple[float, float]
    window: np.ndarray | None = None


# --- the experimental crop ------------------------------------------------------------------------
@dataclass
class Crop:
    """A square crop of an image resampled to the working pixel size.

    raw: crop (float64, n×n) at `pixel_size_A`; x0_A, y0_A: its corner in the image frame (Å).
    """

    raw: np.ndarray
    pixel_size_A: float
    x0_A: float
    y0_A: float
    image_pixel_size_A: float

    @property
    def size_A(self) -> float:
        return self.raw.shape[0] * self.pixel_size_A


def extract_crop(image: np.ndarray, pixel_size_A: float, centre_A: tuple[float, float] | None,
                 settings: ClosedLoopSettings) -> Crop:
    """Square crop around centre_A = (x, y) in Å (None: the image centre), resampled (anti-aliased)
    to max(pixel_size_A, settings.work_pixel_size_A) and shifted inside the image when needed."""
    img = np.asarray(image, np.float64)
    H, W = img.shape
    p = float(pixel_size_A)
    pw = max(p, settings.work_pixel_size_A)
    n = int(min(settings.max_crop_px, np.floor(settings.crop_A / pw), np.floor((min(H, W) - 1) * p / pw)))
    if n < 32:
        raise ValueError(f"image of {W * p:.1f}×{H * p:.1f} Å is too small for a closed-loop crop (need ≥ "
                         f"{32 * pw:.1f} Å at {pw:g} Å/px)")
    step = pw / p  # input pixels per crop pixel
    span = (n - 1) * step
    cx, cy = ((W - 1) / 2, (H - 1) / 2) if centre_A is None else (centre_A[0] / p, centre_A[1] / p)
    c0 = float(np.clip(cx - span / 2, 0, W - 1 - span))
    r0 = float(np.clip(cy - span / 2, 0, H - 1 - span))
    # Low-pass before down-sampling (anti-aliasing), only on the region that is sampled.
    pad = int(np.ceil(4 * step)) + 2
    rs, cs = max(int(r0) - pad, 0), max(int(c0) - pad, 0)
    region = img[rs:int(np.ceil(r0 + span)) + pad + 1, cs:int(np.ceil(c0 + span)) + pad + 1]
    if step > 1.01:
        region = gaussian_filter(region, 0.45 * step)
    rr, cc = np.meshgrid(r0 - rs + np.arange(n) * step, c0 - cs + np.arange(n) * step, indexing="ij")
    raw = map_coordinates(region, [rr, cc], order=3, mode="nearest")
    return Crop(raw=raw, pixel_size_A=pw, x0_A=c0 * p, y0_A=r0 * p, image_pixel_size_A=p)


# --- rotation candidates --------------------------------------------------------------------------
def rotation_period_deg(material: str, twist: bool = False) -> float:
    """Period of the in-plane rotations that leave the model's image unchanged (up to a shift).

    With a fixed slip D only the identity and, when the monolayer has it, the 180° rotation do
    (it maps D to −D, a layer relabelling): any other rotation g of the monolayer turns the model
    of D into that of g·D, a different reading of the same symmetry class. A reading is reported as
    the canonical representative of its class, so the other orientations must be tried, not folded
    away: 180° for even-order monolayers (ReX2), 360° for 3-fold ones (2H MX2). For twists the
    layers' relative translation is fitted anyway, so the monolayer's own period suffices.
    """
    order = get_material(material).rotation_order
    if twist:
        return 360.0 / order
    return 180.0 if order % 2 == 0 else 360.0


def rotation_candidates_deg(material: str, rotation_deg: float, tol: float = 0.05,
                            twist: bool = False) -> list[float]:
    """In-plane rotations the Bragg-spot positions cannot tell apart, starting from `rotation_deg`.

    Rotations by 60°·k that map the lattice onto itself within `tol` (relative; ReX2 is nearly
    hexagonal), taken modulo :func:`rotation_period_deg` (180° for ReX2; 360° for 2H MX2 slips,
    whose 120° rotations change the reading D to an equivalent g·D; 120° for 2H MX2 twists).
    """
    lat = get_material(material).lattice_2d
    period = rotation_period_deg(material, twist)
    out = []
    for k in range(6):
        ang = 60.0 * k
        if ang >= period - 1e-9:
            break
        t = np.deg2rad(ang)
        R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        frac = np.linalg.solve(lat.T, (lat @ R.T).T).T
        err = np.linalg.norm((frac - np.round(frac)) @ lat, axis=1) / np.linalg.norm(lat, axis=1)
        if np.all(err < tol):
            out.append(float(rotation_deg + ang))
    return out


def spectral_orientation(image: np.ndarray, pixel_size_A: float, material: str,
                         scale_range: tuple[float, float] = (0.85, 1.15), max_px: int = 512
                         ) -> tuple[float, float, float] | None:
    """(rotation_deg, scale = true / nominal pixel size, contrast) of the lattice, from the image's
    power spectrum; None when no lattice stands out.

    Every hypothesis (rotation φ, scale s) predicts where each reciprocal-lattice vector g of the
    material lands (q = p·s·R(φ)·g); its score is the mean of the log power above the smooth
    background there (bilinear, on a 2× zero-padded spectrum), weighted by the reflection's
    expected strength. Unlike a spot-strength correlation this does not depend on the slip (which
    modulates the bilayer's spot strengths) and it uses every resolved reflection, so it also works
    on small fields where the first-order spots are only a few pixels from the centre. Coarse grid
    (0.5°, 1 %) over 180° and `scale_range`, then a fine one (0.1°, 0.2 %) around the best.
    contrast: best score over the median score of all hypotheses (pure noise ≈ 1).
    """
    from vdwstack.structures.pixel_size import _reflections

    img = np.asarray(image, np.float64)
    H, W = img.shape
    n = min(H, W, max_px)
    n -= n % 2
    img = img[(H - n) // 2:(H - n) // 2 + n, (W - n) // 2:(W - n) // 2 + n]
    N = 2 * n
    pad = np.zeros((N, N))
    pad[:n, :n] = (img - img.mean()) * np.outer(np.hanning(n), np.hanning(n))
    ps = np.log(np.abs(np.fft.fftshift(scipy.fft.fft2(pad))) ** 2 + 1e-30)
    rel = np.clip(ps - gaussian_filter(ps, N / 24), 0, None)
    g, e = _reflections(material)
    c = N // 2
    p = float(pixel_size_A)

    def scores(scales, phis):
        S, PH = (a.ravel() for a in np.meshgrid(scales, phis, indexing="ij"))
        cos, sin = np.cos(PH)[:, None], np.sin(PH)[:, None]
        qx = p * S[:, None] * (cos * g[None, :, 0] - sin * g[None, :, 1])
        qy = p * S[:, None] * (sin * g[None, :, 0] + cos * g[None, :, 1])
        r = np.hypot(qx, qy)
        w = np.where((r < 0.45) & (r * n > 1.5), e[None], 0.0)
        o = map_coordinates(rel, [qy.ravel() * N + c, qx.ravel() * N + c], order=1, mode="constant")
        return S, PH, (o.reshape(qx.shape) * w).sum(1) / np.maximum(w.sum(1), 1e-12)

    lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
    S, PH, sc = scores(np.exp(np.arange(lo, hi + 1e-9, 0.01)), np.deg2rad(np.arange(0.0, 180.0, 0.5)))
    i = int(np.argmax(sc))
    contrast = float(sc[i] / max(np.median(sc), 1e-12))
    if not np.isfinite(contrast) or contrast < 1.5:
        return None
    s0, phi0 = S[i], PH[i]
    S, PH, sc = scores(s0 * np.exp(np.arange(-0.012, 0.0121, 0.002)), phi0 + np.deg2rad(np.arange(-0.6, 0.61, 0.1)))
    i = int(np.argmax(sc))
    return float(np.rad2deg(PH[i])), float(S[i]), contrast


# --- model vs crop --------------------------------------------------------------------------------
class Comparator:
    """Simulates stackings of one material on a canvas one unit cell larger than a crop and scores
    them against it. Renders are cached by (stacking, rotation, scale, defocus)."""

    def __init__(self, crop: Crop, material: str, layers: int, settings: ClosedLoopSettings,
                 microscope: Mapping | None = None):
        self.crop, self.material, self.layers, self.settings = crop, material, int(layers), settings
        if self.layers not in (2, 3):
            raise ValueError(f"closed-loop check supports bilayers and trilayers, got layers={layers}")
        self.microscope = {**MICROSCOPE_DEFAULTS, **dict(microscope or {})}
        pw = crop.pixel_size_A
        self.n = crop.raw.shape[0]
        lat = get_material(material).lattice_2d
        # The crop matches the periodic model at some translation inside the Wigner–Seitz cell, whose
        # radius is below max(|a|, |b|): search that far, plus 5 px for the sub-pixel interpolation.
        reach_A = float(np.max(np.linalg.norm(lat, axis=1)))
        self.margin = int(np.ceil(reach_A / pw)) + 5
        self.N = scipy.fft.next_fast_len(self.n + 2 * self.margin, real=True)
        self.target = self._bandpass_crop(crop.raw)
        Tp = np.zeros((self.N, self.N))
        Tp[:self.n, :self.n] = self.target
        self._T_conj = np.conj(scipy.fft.rfft2(Tp))
        self._ky = np.fft.fftfreq(self.N)[:, None]
        self._kx = np.fft.rfftfreq(self.N)[None, :]
        self._cache: OrderedDict = OrderedDict()
        self.evaluations = 0

    # band-pass: background removed from the crop; the same low-pass on crop and simulation
    def _bandpass_crop(self, raw: np.ndarray) -> np.ndarray:
        pw = self.crop.pixel_size_A
        x = raw - gaussian_filter(raw, self.settings.background_A / pw, mode="reflect")
        x = gaussian_filter(x, self.settings.denoise_A / pw, mode="reflect")
        x = x - x.mean()
        norm = np.linalg.norm(x)
        if norm == 0:
            raise ValueError("the crop is constant after background removal")
        return x / norm

    def _render_fft(self, stacking: Stacking, rotation_deg: float, scale: float, defocus_A: float,
                    layer: int | None = None) -> np.ndarray:
        """rfft2 of the canvas simulated without source blur (the blur is applied in Fourier space).

        layer: only this layer's atoms (1-based; the image of the stack is the sum of its layers'
        images, the incoherent model being linear in the atoms); None: the whole stack.
        """
        if layer == 1:
            # Layer 1 depends neither on the slips nor on θ (it sits at the pose's rotation − θ/2).
            rotation_deg, stacking = rotation_deg - stacking.theta_deg / 2, Stacking()
        key = (tuple(np.round(list(stacking.as_dict().values()), 6)), round(rotation_deg, 6), round(scale, 8),
               round(defocus_A, 4), layer)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        # The scale enters as an isotropic strain of the model at the nominal pixel size: the probe
        # (cached per pixel size) is then reused; a ~1 % error in its size is immaterial.
        ps = self.crop.pixel_size_A
        N = self.N
        row = {**self.microscope, "defocus_A": defocus_A, "source_fwhm_A": 0.0}
        optics = Optics.from_mapping(row)
        geom = StackGeometry(material=self.material, layers=self.layers, theta_deg=stacking.theta_deg,
                             Da_A=stacking.Da_A, Db_A=stacking.Db_A,
                             Da2_A=stacking.Da2_A if self.layers == 3 else 0.0,
                             Db2_A=stacking.Db2_A if self.layers == 3 else 0.0,
                             strain_xx=1.0 / scale - 1.0, strain_yy=1.0 / scale - 1.0,
                             # The pose's rotation is the layers' mean orientation: a change of θ then
                             # turns both layers by ∓θ/2 and barely couples to the rotation.
                             rotation_deg=rotation_deg - stacking.theta_deg / 2,
                             origin_x_A=N * ps / 2, origin_y_A=N * ps / 2)
        heights = layer_heights_A(geom)
        m = (padding_px(optics, ps, heights) + 8) * ps
        atoms = build_stack(geom, (-m, N * ps + m, -m, N * ps + m))
        if layer is not None:
            atoms = atoms[atoms.get_tags() == layer]
        img = render_incoherent([job_from_atoms(atoms, optics, self.material, heights)], ps, (N, N), True)[0]
        F = scipy.fft.rfft2(img.astype(np.float64))
        self.evaluations += 1
        self._cache[key] = F
        if len(self._cache) > 64:
            self._cache.popitem(last=False)
        return F

    def _blurred(self, F: np.ndarray, scale: float, source_fwhm_A: float, denoise: bool) -> np.ndarray:
        ps = self.crop.pixel_size_A * scale
        s_src_px = source_fwhm_A / _FWHM_PER_SIGMA / ps
        s_lp_px = self.settings.denoise_A / self.crop.pixel_size_A if denoise else 0.0
        g = np.exp(-2 * np.pi ** 2 * (s_src_px ** 2 + s_lp_px ** 2) * (self._kx ** 2 + self._ky ** 2))
        return F * g

    def shifted(self, F: np.ndarray, d_row: float, d_col: float) -> np.ndarray:
        """Spectrum of the canvas whose content is moved by (d_row, d_col) pixels (periodic)."""
        return F * np.exp(-2j * np.pi * (self._ky * d_row + self._kx * d_col))

    def image_shift_to_slip(self, d_row: float, d_col: float, pose: Pose, theta_deg: float = 0.0
                            ) -> tuple[float, float]:
        """The change of (Da, Db) in Å that moves layer 2 by (d_row, d_col) canvas pixels (inverse
        of the geometry's lattice→image map: rotation pose.rotation − θ/2, strain 1/scale − 1)."""
        ps = self.crop.pixel_size_A
        d = np.linalg.solve(_lattice_to_image(pose, theta_deg), np.array([d_col * ps, d_row * ps]))
        da, db = symmetry_for(self.material).cartesian_to_slip(d)
        return float(da), float(db)

    def score_fft(self, F: np.ndarray, pose: Pose) -> float:
        """Quick agreement of a canvas spectrum: the best Pearson r over whole-pixel translations
        (no sub-pixel window; for scans, a little below :meth:`evaluate_fft`'s)."""
        _, ncc = self._ncc(self._blurred(F, pose.scale, pose.source_fwhm_A, denoise=True))
        nv = ncc.shape[0]
        return float(ncc[4:nv - 4, 4:nv - 4].max())

    def best_translation(self, F: np.ndarray, pose: Pose) -> tuple[float, float]:
        """(row, col) of the crop's corner in the canvas (sub-pixel) that correlates best with F."""
        _, r, c, dr, dc = self._peak(self._blurred(F, pose.scale, pose.source_fwhm_A, denoise=True))
        return r + dr, c + dc

    def _ncc(self, Fs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(canvas, Pearson r of the crop with the canvas window at every whole-pixel translation)."""
        S = scipy.fft.irfft2(Fs, s=(self.N, self.N))
        n, N = self.n, self.N
        C = scipy.fft.irfft2(Fs * self._T_conj, s=(N, N))
        nv = N - n + 1
        ii = np.zeros((N + 1, N + 1))
        ii[1:, 1:] = np.cumsum(np.cumsum(S, 0), 1)
        ii2 = np.zeros((N + 1, N + 1))
        ii2[1:, 1:] = np.cumsum(np.cumsum(S * S, 0), 1)

        def wsum(a):
            return a[n:n + nv, n:n + nv] - a[:nv, n:n + nv] - a[n:n + nv, :nv] + a[:nv, :nv]

        var = wsum(ii2) - wsum(ii) ** 2 / n ** 2
        return S, C[:nv, :nv] / np.sqrt(np.maximum(var, 1e-30))

    def _peak(self, Fs: np.ndarray) -> tuple[float, int, int, float, float]:
        """Best translation of the crop in the canvas: (canvas, row, col, sub-pixel d_row, d_col)."""
        S, ncc = self._ncc(Fs)
        nv = ncc.shape[0]
        lo, hi = 4, nv - 5  # room for the sub-pixel window
        sub = ncc[lo:hi + 1, lo:hi + 1]
        r, c = np.unravel_index(int(np.argmax(sub)), sub.shape)
        r, c = r + lo, c + lo

        def para(fm, f0, fp):
            d = fm - 2 * f0 + fp
            return float(np.clip(0.5 * (fm - fp) / d, -0.5, 0.5)) if d < 0 else 0.0

        dr = para(ncc[r - 1, c], ncc[r, c], ncc[r + 1, c])
        dc = para(ncc[r, c - 1], ncc[r, c], ncc[r, c + 1])
        return S, int(r), int(c), dr, dc

    def _window(self, S: np.ndarray, r: int, c: int, dr: float, dc: float) -> np.ndarray:
        """The canvas under the crop at the sub-pixel translation (cubic-spline shift)."""
        n = self.n
        region = S[r - 3:r + n + 3, c - 3:c + n + 3]
        return nd_shift(region, (-dr, -dc), order=3, mode="nearest")[3:3 + n, 3:3 + n]

    def evaluate(self, stacking: Stacking, pose: Pose, keep_window: bool = False) -> Match:
        """Agreement of one model with the crop (translation fitted)."""
        F = self._render_fft(stacking, pose.rotation_deg, pose.scale, pose.defocus_A)
        return self.evaluate_fft(F, stacking, pose, keep_window)

    def evaluate_fft(self, F: np.ndarray, stacking: Stacking, pose: Pose, keep_window: bool = False) -> Match:
        """Agreement of a canvas given by its spectrum (the model `stacking` it stands for)."""
        S, r, c, dr, dc = self._peak(self._blurred(F, pose.scale, pose.source_fwhm_A, denoise=True))
        w = self._window(S, r, c, dr, dc)
        w = w - w.mean()
        nrm = np.linalg.norm(w)
        agreement = float(np.sum(w * self.target) / nrm) if nrm > 0 else 0.0
        return Match(agreement, stacking, pose, (r + dr - self.margin, c + dc - self.margin),
                     w if keep_window else None)

    def simulated_crop(self, match: Match) -> tuple[np.ndarray, float, float]:
        """Simulation under the crop with the source blur only, scaled to the crop's intensities:
        (a·sim + b, a, b) with (a, b) from least squares."""
        pose = match.pose
        F = self._render_fft(match.stacking, pose.rotation_deg, pose.scale, pose.defocus_A)
        S = scipy.fft.irfft2(self._blurred(F, pose.scale, pose.source_fwhm_A, denoise=False), s=(self.N, self.N))
        tr, tc = match.translation_px
        r, c = int(np.floor(tr)) + self.margin, int(np.floor(tc)) + self.margin
        w = self._window(S, r, c, tr + self.margin - r, tc + self.margin - c)
        A = np.column_stack([w.ravel(), np.ones(w.size)])
        (a, b), *_ = np.linalg.lstsq(A, self.crop.raw.ravel(), rcond=None)
        return a * w + b, float(a), float(b)


# --- fitting --------------------------------------------------------------------------------------
def _nelder_mead(fun, x0: np.ndarray, steps: np.ndarray, maxfev: int, xatol: float = 1e-3) -> tuple[np.ndarray, float]:
    x0 = np.asarray(x0, float)
    simplex = np.vstack([x0, x0 + np.diag(steps)])
    res = minimize(fun, x0, method="Nelder-Mead",
                   options={"initial_simplex": simplex, "maxfev": int(maxfev), "xatol": xatol, "fatol": 1e-5})
    return np.asarray(res.x, float), float(res.fun)


def fit_source(comp: Comparator, stacking: Stacking, pose: Pose) -> Match:
    """Best source size (FWHM, Å) within the configured range: only a Fourier-space blur changes."""
    lo, hi = comp.settings.source_fwhm_range_A
    res = minimize_scalar(lambda f: -comp.evaluate(stacking, replace(pose, source_fwhm_A=float(f))).agreement,
                          bounds=(lo, hi), method="bounded", options={"xatol": 0.02})
    return comp.evaluate(stacking, replace(pose, source_fwhm_A=float(res.x)))


def fit_optics(comp: Comparator, stacking: Stacking, pose: Pose) -> Match:
    """Defocus over the configured values, source size continuous."""
    best = None
    for df in comp.settings.defocus_A:
        m = fit_source(comp, stacking, replace(pose, defocus_A=float(df)))
        if best is None or m.agreement > best.agreement:
            best = m
    return best


def fit_rotation_scale(comp: Comparator, stacking: Stacking, pose: Pose, maxfev: int,
                       step_deg: float = 0.5, step_scale: float = 0.01) -> Match:
    """Local Nelder–Mead over (rotation, scale), translation re-fitted at every step."""
    def f(x):
        return -comp.evaluate(stacking, replace(pose, rotation_deg=float(x[0]), scale=float(x[1]))).agreement

    x, _ = _nelder_mead(f, [pose.rotation_deg, pose.scale], np.array([step_deg, step_scale]), maxfev, 1e-4)
    return comp.evaluate(stacking, replace(pose, rotation_deg=float(x[0]), scale=float(x[1])))


def _twist_nuisance_grid(material: str, theta_deg: float, n: int = 4) -> list[tuple[float, float]]:
    """Relative layer translations (Da, Db in Å) on an n×n grid of layer 2's (twisted) cell: with the
    global translation (searched over layer 1's cell) they cover every registry of the two layers."""
    sym = symmetry_for(material)
    t = np.deg2rad(theta_deg)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    lat2 = sym.lattice @ R.T
    out = []
    for i in range(n):
        for j in range(n):
            da, db = sym.cartesian_to_slip(np.array([i / n, j / n]) @ lat2)
            out.append((float(da), float(db)))
    return out


def fit_layer_translation(comp: Comparator, stacking: Stacking, pose: Pose, maxfev: int) -> Match:
    """Twists: Nelder–Mead on the layers' relative translation (Da, Db), θ and pose fixed."""
    def f(x):
        return -comp.evaluate(replace(stacking, Da_A=float(x[0]), Db_A=float(x[1])), pose).agreement

    x, _ = _nelder_mead(f, [stacking.Da_A, stacking.Db_A], np.array([0.3, 0.3]), maxfev, 5e-3)
    return comp.evaluate(replace(stacking, Da_A=float(x[0]), Db_A=float(x[1])), pose)


def initial_poses(comp: Comparator, image: np.ndarray | None, image_pixel_size_A: float,
                  stacking: Stacking, twist: bool = False) -> list[Pose]:
    """Starting poses: every rotation the Bragg spots cannot tell apart (or, without spots, the best
    few of a 2.5° rotation scan), scale from the spots (:func:`spectral_orientation`, within ±15 %
    of the given pixel size: :mod:`vdwstack.structures.pixel_size`'s ±25 % search picks wrong scales on small
    ReX2 fields whose first-order spots lie within a few pixels of the spectrum's centre)."""
    orient = spectral_orientation(image, image_pixel_size_A, comp.material) if image is not None else None
    df0 = float(np.median(comp.settings.defocus_A))
    fwhm0 = float(np.mean(comp.settings.source_fwhm_range_A))
    if orient is not None:
        rot, scale, _ = orient
        if not 0.85 < scale < 1.15:
            scale = 1.0
        return [Pose(r, scale, df0, fwhm0) for r in rotation_candidates_deg(comp.material, rot, twist=twist)]
    period = rotation_period_deg(comp.material, twist)
    scan = [Pose(float(r), 1.0, df0, fwhm0) for r in np.arange(0.0, period, 2.5)]
    scored = sorted(scan, key=lambda p: -comp.evaluate(stacking, p).agreement)
    return scored[:3]


def fit_pose(comp: Comparator, stacking: Stacking, starts: Sequence[Pose], twist: bool = False) -> Match:
    """Fit rotation, scale, translation and optics for one reading; the best start wins.

    For twists θ is tried with both signs (the spots do not say which layer they belong to, nor the
    handedness) and the layers' relative translation on a coarse grid, then refined.
    """
    budget = comp.settings.max_evaluations
    cands: list[tuple[Stacking, Pose]] = []
    for pose in starts:
        if twist:
            for sign in (1.0, -1.0):
                # The spots give one layer's orientation; the pose holds the mean of both.
                theta = sign * abs(stacking.theta_deg)
                p = replace(pose, rotation_deg=pose.rotation_deg + theta / 2)
                best = None
                for da, db in _twist_nuisance_grid(comp.material, theta):
                    m = comp.evaluate(replace(stacking, theta_deg=theta, Da_A=da, Db_A=db), p)
                    if best is None or m.agreement > best.agreement:
                        best = m
                cands.append((best.stacking, p))
        else:
            cands.append((stacking, pose))
    # A quick look at every start (one render each), then the full fit of the most promising.
    quick = sorted((fit_source(comp, s, pose) for s, pose in cands), key=lambda m: -m.agreement)
    keep = [m for m in quick[:2] if m.agreement > quick[0].agreement - 0.05]
    best = None
    for m in keep:
        if twist:
            m = fit_layer_translation(comp, m.stacking, m.pose, maxfev=max(12, budget // 3))
        m = fit_rotation_scale(comp, m.stacking, m.pose, maxfev=max(12, budget // 3))
        m = fit_optics(comp, m.stacking, m.pose)
        m = fit_rotation_scale(comp, m.stacking, m.pose, maxfev=max(8, budget // 5), step_deg=0.15, step_scale=0.003)
        m = fit_source(comp, m.stacking, m.pose)
        if best is None or m.agreement > best.agreement:
            best = m
    return best


def refine_stacking(comp: Comparator, match: Match, twist: bool = False, step_A: float = 0.2,
                    step_deg: float = 0.3) -> Match:
    """Nelder–Mead on the reading (slips; or θ and the layers' translation) from a fitted match,
    pose fixed during the search, then pose and optics re-fitted at the result."""
    s0, pose = match.stacking, match.pose
    if twist:
        names = ["theta_deg", "Da_A", "Db_A"]
        steps = np.array([step_deg, step_A, step_A])
    else:
        names = ["Da_A", "Db_A"] + (["Da2_A", "Db2_A"] if comp.layers == 3 else [])
        steps = np.full(len(names), step_A)
    x0 = np.array([getattr(s0, k) for k in names])

    def f(x):
        return -comp.evaluate(replace(s0, **dict(zip(names, map(float, x)))), pose).agreement

    x, _ = _nelder_mead(f, x0, steps, comp.settings.max_evaluations, 2e-3)
    s = replace(s0, **dict(zip(names, map(float, x))))
    m = fit_rotation_scale(comp, s, pose, maxfev=max(8, comp.settings.max_evaluations // 5), step_deg=0.15,
                           step_scale=0.003)
    m = fit_source(comp, m.stacking, m.pose)
    return m if m.agreement >= match.agreement else match


def canonical_stacking(material: str, s: Stacking, twist: bool) -> Stacking:
    """Report slips as the canonical representative and twists folded into the material's range."""
    sym = symmetry_for(material)
    if twist:
        return replace(s, theta_deg=float(sym.fold_twist(s.theta_deg)))
    da, db = sym.canonical_slip(s.Da_A, s.Db_A)
    da2, db2 = sym.cartesian_to_slip(sym.wigner_seitz(sym.slip_to_cartesian(s.Da2_A, s.Db2_A)))
    return replace(s, Da_A=float(da), Db_A=float(db), Da2_A=float(da2), Db2_A=float(db2))


def stacking_change(material: str, a: Stacking, b: Stacking, twist: bool, layers: int = 2) -> float:
    """ΔD (Å; the larger of the two slips for trilayers) or Δθ (degrees) between two readings."""
    sym = symmetry_for(material)
    if twist:
        return float(sym.twist_error_deg(a.theta_deg, b.theta_deg))
    d = float(sym.slip_error_A(a.Da_A, a.Db_A, b.Da_A, b.Db_A))
    if layers == 3:
        d = max(d, float(sym.slip_error_A(a.Da2_A, a.Db2_A, b.Da2_A, b.Db2_A)))
    return d


# --- global search for an alternative reading -------------------------------------------------------
def _lattice_to_image(pose: Pose, theta_deg: float = 0.0) -> np.ndarray:
    """The geometry's map of a slip (Cartesian, lattice frame, Å) to layer 2's image shift (Å)."""
    t = np.deg2rad(pose.rotation_deg - theta_deg / 2)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) / pose.scale


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
        F1 = comp._render_fft(Stacking(), pose.rotation_deg, pose.scale, pose.defocus_A, layer=1)
        F2 = comp._render_fft(Stacking(), pose.rotation_deg, pose.scale, pose.defocus_A, layer=2)
        shift_xy = D @ _lattice_to_image(pose).T / ps  # (x, y) in canvas pixels
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
        F1 = comp._render_fft(Stacking(), pose.rotation_deg, pose.scale, pose.defocus_A, layer=1)
        r1, c1 = comp.best_translation(F1, pose)
        for th in thetas:
            for sign in (1.0, -1.0):
                if sign < 0 and (th < lo + 1e-9 or th > hi - 1e-9):
                    continue  # 0 and the range's end are their own mirror images
                theta = float(sign * th)
                p = replace(pose, rotation_deg=pose.rotation_deg + theta / 2)  # the layers' mean orientation
                F2 = comp._render_fft(Stacking(theta_deg=theta), p.rotation_deg, p.scale, p.defocus_A, layer=2)
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


# --- one check ------------------------------------------------------------------------------------
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


def grid_search_slip(image: np.ndarray, pixel_size_A: float, material: str, layers: int,
                     settings: ClosedLoopSettings = ClosedLoopSettings(), step_A: float = 0.5,
                     centre_A: tuple[float, float] | None = None) -> dict:
    """A network-free reading: the canonical slip (two for trilayers) of a grid over the slip cell
    that agrees best with the image, pose from the Bragg spots, default optics. Bilayers use
    :func:`scan_slip` (the alternative search's grid; each grid point in its best pose, agreement
    at whole-pixel translations), trilayers every pair of slips in every pose.

    Returns {"best": {Da_A, Db_A[, Da2_A, Db2_A], agreement}, "worst": {...}, "n_points": int}.
    """
    sym = symmetry_for(material)
    crop = extract_crop(image, pixel_size_A, centre_A, settings)
    comp = Comparator(crop, material, layers, settings)
    keys = ["Da_A", "Db_A"] + (["Da2_A", "Db2_A"] if layers == 3 else [])

    def entry(s: Stacking, a: float) -> dict:
        return {**{k: round(getattr(s, k), 4) for k in keys}, "agreement": round(float(a), 4)}

    if layers == 2:
        scan = scan_slip(comp, initial_poses(comp, image, pixel_size_A, Stacking()), step_A)
        return {"best": entry(scan[0].stacking, scan[0].agreement), "worst": entry(scan[-1].stacking, scan[-1].agreement),
                "n_points": len(scan), "rotation_deg": scan[0].pose.rotation_deg, "simulations": comp.evaluations}
    # Trilayers: the second slip over the whole cell (only the pair is defined up to ±), first canonical.
    da, db = sym.slip_grid(step_A)
    k = max(2, int(np.ceil(max(get_material(material).a_A, get_material(material).b_A) / step_A)))
    frac = np.stack(np.meshgrid(np.arange(k) / k, np.arange(k) / k, indexing="ij"), -1).reshape(-1, 2)
    d2a, d2b = sym.cartesian_to_slip(sym.wigner_seitz(frac @ sym.lattice))
    grid = [Stacking(Da_A=float(a), Db_A=float(b), Da2_A=float(a2), Db2_A=float(b2))
            for a, b in zip(da, db) for a2, b2 in zip(d2a, d2b)]
    starts = initial_poses(comp, image, pixel_size_A, grid[0])
    scores = np.full((len(starts), len(grid)), -np.inf)
    for i, pose in enumerate(starts):
        for j, s in enumerate(grid):
            scores[i, j] = comp.evaluate(s, pose).agreement
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    best_pose_scores = scores[i]
    jw = int(np.argmin(best_pose_scores))
    return {"best": entry(grid[j], scores[i, j]), "worst": entry(grid[jw], best_pose_scores[jw]),
            "n_points": len(grid), "rotation_deg": starts[i].rotation_deg, "simulations": comp.evaluations}


# --- figure ---------------------------------------------------------------------------------------
def comparison_figure(panels: Sequence[tuple[str, CheckResult]], out_png, title: str = "") -> None:
    """One row per check: experimental crop | re-simulated crop | difference, axes in Å."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(panels))
    fig, axes = plt.subplots(rows, 3, figsize=(11.5, 3.7 * rows), squeeze=False)
    for ax_row, (label, res) in zip(axes, panels):
        comp = res.comparator
        best = res.refined if res.refined is not None else res.reading
        sim, _, _ = comp.simulated_crop(best)
        exp = comp.crop.raw
        L = comp.crop.size_A
        ext = (0, L, L, 0)
        lo, hi = np.percentile(exp, [0.5, 99.5])
        ax_row[0].imshow(exp, cmap="gray", vmin=lo, vmax=hi, extent=ext)
        ax_row[1].imshow(sim, cmap="gray", vmin=lo, vmax=hi, extent=ext)
        diff = exp - sim
        lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
        im = ax_row[2].imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext)
        fig.colorbar(im, ax=ax_row[2], shrink=0.8, label="experiment − simulation")
        s = canonical_stacking(comp.material, best.stacking, res.twist)
        what = (f"θ = {s.theta_deg:.2f}°" if res.twist else f"D = ({s.Da_A:.2f}, {s.Db_A:.2f}) Å"
                + (f", D2 = ({s.Da2_A:.2f}, {s.Db2_A:.2f}) Å" if comp.layers == 3 else ""))
        ax_row[0].set_title(f"{label}: experiment", fontsize=9)
        ax_row[1].set_title(f"simulation {what}\nr = {best.agreement:.3f} (reading r = {res.reading.agreement:.3f})",
                            fontsize=9)
        ax_row[2].set_title(f"difference; defocus {best.pose.defocus_A:.0f} Å, source {best.pose.source_fwhm_A:.2f} Å",
                            fontsize=9)
        for ax in ax_row:
            ax.set_xlabel("x (Å)")
            ax.set_ylabel("y (Å)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
