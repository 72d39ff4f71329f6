"""Independent test images with exact truth, rendered unlike vdwstack's training simulations.

The atoms come from vdwstack's own geometry (``StackGeometry``/``build_stack``), so the truth
(Da, Db, Da2, Db2 in Å; θ and rotation in degrees) follows the project's convention exactly. The
imaging does not: an incoherent ADF model written here from scratch

    image(R) = Σ_j w_j · (G_j ⊛ I_probe)(r_j − R),   w_j = c · Z_j^1.7 (Å²)

evaluated in Fourier space by an exact non-uniform transform (a matrix product of per-atom phase
factors, no pixel deposition), with Z^1.7 weights (the training's cross-sections: ~Z^1.5–Z^2), an
abTEM probe at 200 or 300 kV (training: 300 kV) with 18–30 mrad (training: 18–25), aberrations
wider than the training's draws (two-fold astigmatism C12 ≤ 10 Å vs 8, axial coma C21 ≤ 300 Å vs
250) and a residual Cs it never sees, defocus 0–60 Å (training: 10–60), a 0.4–1.0 Å source, scan drift as a shear/stretch of the atom positions, scan-line jitter as a per-row probe
offset, patchy amorphous carbon and smooth blobs, chalcogen vacancies, Poisson dose, read noise and
a detector offset. Optionally a few images per task are rendered by vdwstack's abTEM multislice
(``--multislice N``; 0 by default: a 6×6 px image, 576 probe positions × 2 frozen phonons, took
31 min on 2 shared CPU cores, so a 176 px one would take over a day) and degraded by the same noise.
Both full sets take about 1 min on 2 CPU cores. The twists of ``MoS2_twist`` are AA-like (0.5–30°);
``MoS2_twist_AAprime`` holds the AA′-like side (60° − those draws: 30–59.5°, small twists of 60°
first), the alignment that Fourier methods cannot tell apart. The calibration set's twist tasks get 16
more small twists and 12 more larger ones each after their regular draws (``--extra-small``,
``--extra-far``): the interval of a twist read near an aligned stacking is calibrated apart from the
others, and each group needs a few dozen readings.

    .venv/bin/python benchmarks/independent_images.py [--sets calibration test validation] [--tasks ...]
        [--n N] [--extra-small K] [--extra-far K] [--quick] [--multislice N] [--check] [--out benchmarks/data/independent]

Writes ``<out>/<set>/<task>/<image_id>.tif`` (float32, fraction of the beam on the detector plus an
offset; JSON description with "truth", "optics", "renderer") and ``<out>/<set>/<task>/manifest.tsv``
(paths relative to that folder). ``--check`` compares a few images with vdwstack's own simulation of
their truth (Pearson r after a mild low-pass) and writes ``<out>/truth_check.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.fft
from ase.data import atomic_numbers
from scipy.ndimage import gaussian_filter, map_coordinates

from metrics import SMALL_TWIST_DEG, is_small_twist  # benchmarks/ is the script's folder

from vdwstack.core.io import write_tiff
from vdwstack.infer.stage import read_truth
from vdwstack.structures.geometry import StackGeometry, build_stack, layer_heights_A
from vdwstack.structures.materials import get_material
from vdwstack.structures.symmetry import symmetry_for

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "benchmarks" / "data" / "independent"
SEEDS = {"calibration": 1, "test": 2, "validation": 3}  # disjoint root seeds, same recipe; validation: a
# third set for checking a change made after looking at the test set
TASKS = {  # id: (material, layers, kind)
    "ReS2_slip": ("ReS2", 2, "slip"),
    "MoS2_slip": ("MoS2", 2, "slip"),
    "MoS2_twist": ("MoS2", 2, "twist"),
    "ReS2_trilayer": ("ReS2", 3, "slip"),
    # The AA′-like alignment (θ ∈ [30°, 59.5°]: 60° − the MoS2_twist draws), which Fourier methods
    # cannot tell from MoS2_twist's AA-like one; last, so the other tasks' streams are unchanged.
    "MoS2_twist_AAprime": ("MoS2", 2, "twist"),
}
COUNTS = {"test": (32, 10), "calibration": (20, 8), "validation": (20, 8), "quick": (3, 2)}  # (bilayer, trilayer) per task
# Twists added to each twist task after its regular draws, small ones (within 3° of 0° or 60°) then
# larger ones (own streams: the regular images stay the same): the twist read near an aligned stacking
# has its own interval factor, and the regular draws hold only 8 small and 12 larger twists per task —
# too few to fit a 95 % quantile on.
EXTRA_TWISTS = {"calibration": (16, 12)}  # set: (small, larger) per twist task
# Scale of the Z^1.7 weights (Å²): close to the ADF cross-section of Mo at 300 kV, so that the
# image is about the fraction of the beam on the detector and the dose gives realistic counts.
WEIGHT_SCALE_A2 = 1.6e-5
MARGIN_A = 8.0  # atoms this far outside the field still reach it through the probe's tails
MIN_SMALL_TWISTS = 8


# --- drawing one image's parameters -----------------------------------------------------------

@dataclass(frozen=True)
class ImageSpec:
    """Everything that fixes one image: geometry, pixel grid, optics and degradation values."""

    image_id: str
    task: str
    geom: StackGeometry
    pixel_size_A: float
    size_px: int
    mirrored: bool
    optics: dict
    degradation: dict
    renderer: str = "independent-incoherent"


def image_rng(set_name: str, task: str, index: int) -> np.random.Generator:
    """One independent stream per (set, task, image): subsets and reruns draw the same values."""
    task_code = list(TASKS).index(task)
    return np.random.default_rng(np.random.SeedSequence([SEEDS[set_name], task_code, index]))


def draw_optics(rng: np.random.Generator) -> dict:
    """Probe and source: energy (eV), semiangle (mrad), defocus/aberrations (Å, rad), source FWHM (Å)."""
    return {
        "energy_eV": float(rng.choice([200e3, 300e3])),
        "semiangle_mrad": float(rng.uniform(18.0, 30.0)),
        "defocus_A": float(rng.uniform(0.0, 60.0)),
        "C12_A": float(rng.uniform(0.0, 10.0)), "phi12_rad": float(rng.uniform(0, 2 * np.pi)),
        "C21_A": float(rng.uniform(0.0, 300.0)), "phi21_rad": float(rng.uniform(0, 2 * np.pi)),
        "Cs_A": float(rng.uniform(-1e4, 1e4)),  # ±1 µm residual of a corrected probe
        "source_fwhm_A": float(rng.uniform(0.4, 1.0)),
        "thermal_scale": float(rng.uniform(0.8, 1.3)),  # × 0.05 Å (metal) / 0.075 Å (chalcogen) RMS
    }


def draw_degradation(rng: np.random.Generator) -> dict:
    """Scan distortions (Å, px), contamination (C/Å², Å), noise (e/Å², fractions) of one image."""
    return {
        "drift_A": float(rng.uniform(0.0, 0.8)), "drift_angle_deg": float(rng.uniform(0, 360)),
        "jitter_rms_px": float(rng.uniform(0.05, 0.4)),
        "carbon_coverage": float(rng.uniform(0.0, 0.6)),
        "carbon_density_per_A2": float(rng.uniform(0.1, 0.6)),
        "carbon_side": str(rng.choice(["entrance", "exit"])),
        "blobs": int(rng.integers(0, 4)), "blob_radius_A": float(rng.uniform(4.0, 12.0)),
        "blob_density_per_A2": float(rng.uniform(0.5, 2.0)),  # carbon-equivalent at the centre
        "dose_e_per_A2": float(np.exp(rng.uniform(np.log(2e5), np.log(1e7)))),
        "read_noise": float(rng.uniform(0.01, 0.1)),  # × the noiseless image's std
        "offset": float(rng.uniform(0.0, 0.2)),  # × the image mean (detector dark level)
        "noise_seed": int(rng.integers(2**31)),
    }


def draw_stacking(task: str, index: int, n: int, rng: np.random.Generator, small: bool | None = None) -> dict:
    """Slips (Å) and twist (degrees) of one image; twists below 3° (of the aligned stacking: of 0°, or
    of 60° for the AA′-like task) on the first images, or wherever `small` says so."""
    material, layers, kind = TASKS[task]
    mat = get_material(material)
    sym = symmetry_for(material)
    # Uniform over the lattice cell: D = u·a + v·b, i.e. Da = u·|a|, Db = v·|b|.
    da, db = rng.uniform(0, 1) * mat.a_A, rng.uniform(0, 1) * mat.b_A
    out = {"Da_A": float(da), "Db_A": float(db), "Da2_A": 0.0, "Db2_A": 0.0, "theta_deg": 0.0}
    if kind == "twist":
        # Uniform draws would put only 2.5/29.5 of the images below 3°: that stratum is filled first.
        n_small = max(MIN_SMALL_TWISTS, round(n * 2.5 / 29.5)) if n >= 2 * MIN_SMALL_TWISTS else (n + 1) // 2
        if small is None:
            small = index < n_small
        lo, hi = (0.5, SMALL_TWIST_DEG) if small else (SMALL_TWIST_DEG, 30.0)
        out["theta_deg"] = float(rng.uniform(lo, hi))
        if task.endswith("AAprime"):
            out["theta_deg"] = sym.twist_range_deg[1] - out["theta_deg"]
    elif layers == 3:
        out["Da2_A"], out["Db2_A"] = float(rng.uniform(0, 1) * mat.a_A), float(rng.uniform(0, 1) * mat.b_A)
    else:  # bilayer slips are stored canonical: the truth is the representative the project reports
        cda, cdb = sym.canonical_slip(da, db)
        out["Da_A"], out["Db_A"] = float(cda), float(cdb)
    return out


def draw_grid(task: str, theta_deg: float, rng: np.random.Generator) -> tuple[float, int]:
    """Pixel size (Å/px) and image size (px); small twists get the largest field (46 Å)."""
    p, size = float(rng.uniform(0.08, 0.12)), int(rng.integers(256, 385) // 16 * 16)
    if TASKS[task][2] == "twist" and is_small_twist({"material": TASKS[task][0], "theta_deg": theta_deg}):
        p, size = 0.12, 384
    return p, size


def draw_spec(set_name: str, task: str, index: int, n: int, small: bool | None = None) -> ImageSpec:
    """All random values of one incoherent image of a set (`small`: force a twist within 3° of an
    aligned stacking, for the extra small twists)."""
    rng = image_rng(set_name, task, index)
    material, layers, _ = TASKS[task]
    stack = draw_stacking(task, index, n, rng, small)
    p, size = draw_grid(task, stack["theta_deg"], rng)
    optics, deg = draw_optics(rng), draw_degradation(rng)
    field = size * p
    geom = StackGeometry(material, layers, **stack, rotation_deg=float(rng.uniform(0, 360)),
                         origin_x_A=float(rng.uniform(0, field)), origin_y_A=float(rng.uniform(0, field)),
                         vacancy_fraction=float(rng.uniform(0, 0.03)), seed=int(rng.integers(2**31)))
    # Half the ReS2 bilayers are mirrored (alternating, so every set holds both hands).
    mirrored = task == "ReS2_slip" and index % 2 == 1
    return ImageSpec(f"{task}_{index:03d}", task, geom, p, size, mirrored, optics, deg)


# --- atoms of the sample ----------------------------------------------------------------------

@dataclass
class AtomGroup:
    """Atoms sharing one focus: positions (N, 2) Å, weights (N,) Å², Gaussian RMS (N,) Å, depth z (Å)."""

    xy: np.ndarray
    weight: np.ndarray
    rms: np.ndarray
    z_A: float


def crystal_groups(spec: ImageSpec) -> list[AtomGroup]:
    """One group per layer (each layer is focused at its own depth)."""
    field = spec.size_px * spec.pixel_size_A
    reach = MARGIN_A + spec.degradation["drift_A"] + 1.0
    atoms = build_stack(spec.geom, (-reach, field + reach, -reach, field + reach))
    mat = get_material(spec.geom.material)
    symbols = np.array(atoms.get_chemical_symbols())
    z_num = np.array([atomic_numbers[s] for s in symbols], float)
    rms = np.where(symbols == mat.metal, 0.05, 0.075) * spec.optics["thermal_scale"]
    tags, heights = atoms.get_tags(), layer_heights_A(spec.geom)
    return [AtomGroup(atoms.positions[tags == k, :2], WEIGHT_SCALE_A2 * z_num[tags == k] ** 1.7,
                      rms[tags == k], float(heights[k - 1])) for k in range(1, spec.geom.layers + 1)]


def patch_mask(rng: np.random.Generator, box_A: float, coverage: float) -> np.ndarray:
    """Boolean map on a 1 Å grid of the patches that carry amorphous carbon: a smooth random field
    (correlation length ~6 Å) above its (1 − coverage) quantile."""
    n = int(np.ceil(box_A))
    field = gaussian_filter(rng.normal(size=(n, n)), 6.0, mode="wrap")
    return field > np.quantile(field, 1.0 - coverage)


def contamination_group(spec: ImageSpec, rng: np.random.Generator, z_A: float) -> AtomGroup:
    """Random C atoms in patches (moderate density) plus a few smooth blobs (wide Gaussians)."""
    d = spec.degradation
    reach = MARGIN_A + d["drift_A"] + 1.0
    box = spec.size_px * spec.pixel_size_A + 2 * reach
    mask = patch_mask(rng, box, d["carbon_coverage"])
    n_try = rng.poisson(d["carbon_density_per_A2"] * box**2)
    xy = rng.uniform(0, box, (n_try, 2))
    ij = np.minimum(xy.astype(int), mask.shape[0] - 1)  # the mask's 1 Å cells
    xy = xy[mask[ij[:, 1], ij[:, 0]]] - reach
    w_c = WEIGHT_SCALE_A2 * atomic_numbers["C"] ** 1.7
    centres = rng.uniform(0, box, (d["blobs"], 2)) - reach
    r = d["blob_radius_A"] * rng.uniform(0.6, 1.4, d["blobs"])
    # A blob of peak areal density ρ and RMS r holds ρ·2πr² carbon atoms.
    w_blob = d["blob_density_per_A2"] * 2 * np.pi * r**2 * w_c
    return AtomGroup(np.vstack([xy, centres]), np.concatenate([np.full(len(xy), w_c), w_blob]),
                     np.concatenate([np.full(len(xy), 0.1), r]), z_A)


def sample_groups(spec: ImageSpec, with_contamination: bool = True) -> list[AtomGroup]:
    """Crystal layers and (optionally) the contamination layer on the entrance or exit side."""
    groups = crystal_groups(spec)
    if with_contamination:
        rng = np.random.default_rng(spec.geom.seed + 1)
        side = spec.degradation["carbon_side"]
        z = -4.0 if side == "entrance" else groups[-1].z_A + 4.0
        groups.append(contamination_group(spec, rng, z))
    return groups


def drifted(xy_A: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """Image-frame positions (Å) of sample points under a drift growing linearly with the row.

    Row y is scanned at time t = y / (H·p); the sample has then moved by t·d, so a point at (X, Y)
    is imaged at y = Y / (1 − d_y/(H·p)), x = X + d_x·y/(H·p): a stretch along y and a shear.
    """
    d = spec.degradation
    ang = np.deg2rad(d["drift_angle_deg"])
    dx, dy = d["drift_A"] * np.cos(ang), d["drift_A"] * np.sin(ang)
    frame = spec.size_px * spec.pixel_size_A
    y = xy_A[:, 1] / (1.0 - dy / frame)
    return np.column_stack([xy_A[:, 0] + dx * y / frame, y])


# --- imaging ----------------------------------------------------------------------------------

def wavelength_A(energy_eV: float) -> float:
    """Relativistic electron wavelength (Å)."""
    from abtem.core.energy import energy2wavelength

    return float(energy2wavelength(energy_eV))


def probe_otf(optics: dict, box_A: float, defocus_A: float) -> np.ndarray:
    """FT of the abTEM probe intensity on the box's frequency grid k = m/box (OTF(0) = 1), [kx, ky].

    The probe is built on a grid of extent `box_A` so that its FFT lands exactly on the Fourier
    series' frequencies; 4.5·k_aperture·box points hold |ψ|²'s band (2·k_aperture) unaliased.
    """
    import abtem

    k_ap = optics["semiangle_mrad"] * 1e-3 / wavelength_A(optics["energy_eV"])
    n = scipy.fft.next_fast_len(int(np.ceil(4.5 * k_ap * box_A)))
    probe = abtem.Probe(energy=optics["energy_eV"], semiangle_cutoff=optics["semiangle_mrad"], defocus=defocus_A,
                        sampling=box_A / n, gpts=(n, n), C12=optics["C12_A"], phi12=optics["phi12_rad"],
                        C21=optics["C21_A"], phi21=optics["phi21_rad"], Cs=optics["Cs_A"], device="cpu")
    # NumPy's FFT: abTEM's default FFTW plans are chosen by timing and change the bits run to run.
    with abtem.config.set({"fft": "numpy", "diagnostics.progress_bar": False}):
        wave = np.asarray(probe.build(scan=(0.0, 0.0), lazy=False).array)
    intensity = np.abs(wave) ** 2
    return np.fft.fft2(intensity / intensity.sum())


def structure_factor(group: AtomGroup, k: np.ndarray, origin_A: float) -> np.ndarray:
    """S(kx, ky) = Σ_j w_j exp(−2πi k·r_j − 2π²u_j²k²) on the square grid k × k (1/Å), [kx, ky].

    Exact at every atom's position: the sum factorises per atom into x and y parts, so it is one
    matrix product (N atoms × n frequencies on each side).
    """
    x, y = group.xy[:, 0] - origin_A, group.xy[:, 1] - origin_A
    damp = np.exp(-2 * np.pi**2 * group.rms[:, None] ** 2 * k[None] ** 2)
    ex = (group.weight[:, None] * damp) * np.exp(-2j * np.pi * x[:, None] * k[None])
    ey = damp * np.exp(-2j * np.pi * y[:, None] * k[None])
    return ex.T @ ey


def render_clean(spec: ImageSpec, groups: list[AtomGroup], jitter_px: np.ndarray | None = None) -> np.ndarray:
    """Noise-free image [row, col] (fraction of the beam) of drift-transformed atom groups.

    image(x, y) = (1/L²) Re Σ_k Σ_g S_g(k) · conj(OTF_g(k)) · source(k) · exp(2πi k·(x + δ_row, y)),
    with L the periodic box (field + margins), OTF_g the probe focused at group g's depth and δ_row
    the scan-line jitter (a probe offset, applied exactly as a phase per row).
    """
    p, n_px, optics = spec.pixel_size_A, spec.size_px, spec.optics
    reach = MARGIN_A + spec.degradation["drift_A"] + 1.0
    box = n_px * p + 2 * reach
    k_max = 2 * optics["semiangle_mrad"] * 1e-3 / wavelength_A(optics["energy_eV"])
    m = np.arange(-int(np.ceil(k_max * box)) - 1, int(np.ceil(k_max * box)) + 2)
    k = m / box
    source = np.exp(-2 * np.pi**2 * (optics["source_fwhm_A"] / 2.3548) ** 2 * (k[:, None] ** 2 + k[None] ** 2))
    spectrum = np.zeros((len(k), len(k)), complex)
    for g in groups:
        otf = probe_otf(optics, box, optics["defocus_A"] - g.z_A)
        otf = otf[np.ix_(m % otf.shape[0], m % otf.shape[1])]
        shifted = replace(g, xy=drifted(g.xy, spec))
        spectrum += structure_factor(shifted, k, -reach) * np.conj(otf)
    spectrum *= source / box**2
    coords = np.arange(n_px) * p + reach  # pixel positions in the box frame (Å)
    rows = np.exp(2j * np.pi * coords[:, None] * k[None]) @ spectrum.T  # [row, kx]
    if jitter_px is not None:
        rows *= np.exp(2j * np.pi * (jitter_px * p)[:, None] * k[None])
    return (rows @ np.exp(2j * np.pi * k[:, None] * coords[None])).real


def add_noise(clean: np.ndarray, pixel_size_A: float, deg: dict) -> np.ndarray:
    """Poisson dose, Gaussian read noise (× std) and a detector offset (× mean); fraction units."""
    rng = np.random.default_rng(deg["noise_seed"])
    clean = np.clip(clean, 0.0, None)
    electrons = deg["dose_e_per_A2"] * pixel_size_A**2
    counts = rng.poisson(clean * electrons).astype(float)
    counts += rng.normal(0.0, deg["read_noise"] * clean.std() * electrons, clean.shape)
    return (counts / electrons + deg["offset"] * clean.mean()).astype(np.float32)


def render_independent(spec: ImageSpec) -> np.ndarray:
    """The final image of an incoherent spec (degraded, mirrored when the spec says so)."""
    jitter = np.random.default_rng(spec.degradation["noise_seed"] + 1).normal(
        0.0, spec.degradation["jitter_rms_px"], spec.size_px)
    image = add_noise(render_clean(spec, sample_groups(spec), jitter), spec.pixel_size_A, spec.degradation)
    return np.fliplr(image) if spec.mirrored else image


# --- vdwstack multislice images ----------------------------------------------------------------

def multislice_spec(set_name: str, task: str, index: int, n: int, size_px: int) -> ImageSpec:
    """A small image for vdwstack's abTEM multislice: own stacking, moderate aberrations, no drift."""
    spec = draw_spec(set_name, task, 1000 + index, n)
    # vdwstack's multislice scans a regular grid of atoms it builds itself: no drift, jitter or carbon.
    deg = dict(spec.degradation, drift_A=0.0, jitter_rms_px=0.0, carbon_coverage=0.0, blobs=0)
    return replace(spec, image_id=f"{task}_ms{index:02d}", size_px=size_px, degradation=deg,
                   renderer="multislice")


def vdwstack_row(spec: ImageSpec, optics: dict | None = None) -> dict:
    """A vdwstack structures-table row for the spec's geometry (default optics unless given)."""
    from vdwstack.core.microscope import MICROSCOPE_DEFAULTS

    g = spec.geom
    row = dict(sample_id=spec.image_id, material=g.material, layers=g.layers, Da_A=g.Da_A, Db_A=g.Db_A,
               Da2_A=g.Da2_A, Db2_A=g.Db2_A, theta_deg=g.theta_deg, rotation_deg=g.rotation_deg,
               origin_x_A=g.origin_x_A, origin_y_A=g.origin_y_A, vacancy_fraction=g.vacancy_fraction,
               pixel_size_A=spec.pixel_size_A, height_px=spec.size_px, width_px=spec.size_px, seed=g.seed,
               **MICROSCOPE_DEFAULTS)
    if optics:
        row.update(energy_eV=optics["energy_eV"], semiangle_mrad=optics["semiangle_mrad"],
                   defocus_A=optics["defocus_A"], source_fwhm_A=optics["source_fwhm_A"], Cs_A=optics["Cs_A"],
                   aberrations={"C12": optics["C12_A"], "phi12": optics["phi12_rad"],
                                "C21": optics["C21_A"], "phi21": optics["phi21_rad"]})
    return row


def render_multislice(spec: ImageSpec) -> np.ndarray:
    """vdwstack's multislice (2 frozen phonons) of the spec, then this module's dose and noise."""
    from vdwstack.simulate.multislice import MultisliceSettings
    from vdwstack.simulate.render import SimulationSettings, simulate_row

    settings = SimulationSettings(method="multislice", multislice=MultisliceSettings(frozen_phonons=2))
    clean = simulate_row(vdwstack_row(spec, spec.optics), settings)
    image = add_noise(clean, spec.pixel_size_A, spec.degradation)
    return np.fliplr(image) if spec.mirrored else image


# --- files ------------------------------------------------------------------------------------

TRUTH_COLUMNS = ("Da_A", "Db_A", "Da2_A", "Db2_A", "theta_deg", "mirrored", "rotation_deg")


def truth_of(spec: ImageSpec) -> dict:
    """The stored truth: stacking (Å, degrees), hand, pose (degrees, Å) and pixel size (Å/px)."""
    g = spec.geom
    truth = {"material": g.material, "layers": g.layers, "task": TASKS[spec.task][2],
             "Da_A": g.Da_A, "Db_A": g.Db_A, "theta_deg": g.theta_deg, "mirrored": spec.mirrored,
             "rotation_deg": g.rotation_deg, "pixel_size_A": spec.pixel_size_A,
             "origin_x_A": g.origin_x_A, "origin_y_A": g.origin_y_A, "vacancy_fraction": g.vacancy_fraction,
             "geometry_seed": g.seed, "size_px": spec.size_px}
    if g.layers == 3:
        truth.update(Da2_A=g.Da2_A, Db2_A=g.Db2_A)
    if spec.mirrored:
        truth["mirror"] = "np.fliplr of the image of this geometry (columns reversed after rendering)"
    return truth


def write_image(spec: ImageSpec, folder: Path) -> dict:
    """Render, write the TIFF, check that read_truth returns the truth; returns the manifest row."""
    image = render_multislice(spec) if spec.renderer == "multislice" else render_independent(spec)
    path = folder / f"{spec.image_id}.tif"
    truth = truth_of(spec)
    meta = {"truth": truth, "optics": {**spec.optics, **spec.degradation}, "renderer": spec.renderer}
    write_tiff(path, image, spec.pixel_size_A, meta)
    if read_truth(path) != json.loads(json.dumps(truth)):
        raise RuntimeError(f"{path}: read_truth does not return the written truth")
    row = {"image_id": spec.image_id, "path": path.name, "material": truth["material"], "layers": truth["layers"],
           "task": truth["task"], "pixel_size_A": spec.pixel_size_A}
    row.update({c: truth.get(c, "") for c in TRUTH_COLUMNS})
    row["renderer"] = spec.renderer
    return row


def write_manifest(folder: Path, rows: list[dict]) -> None:
    with open(folder / "manifest.tsv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)


def task_count(set_name: str, task: str, n: int | None, quick: bool) -> int:
    bilayer, trilayer = COUNTS["quick" if quick else set_name]
    base = trilayer if TASKS[task][1] == 3 else bilayer
    if n is None:
        return base
    return max(1, round(n * trilayer / bilayer)) if TASKS[task][1] == 3 else n


def generate_task(set_name: str, task: str, n: int, out: Path, multislice: int = 0,
                  multislice_px: int = 176, extra_small: int = 0, extra_far: int = 0) -> list[dict]:
    """All images of one task of one set (the folder is emptied first); returns the manifest rows.
    `extra_small` small twists, then `extra_far` larger ones, follow a twist task's `n` regular draws
    (indices n, n+1, …)."""
    folder = out / set_name / task
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    specs = [draw_spec(set_name, task, i, n) for i in range(n)]
    if TASKS[task][2] == "twist":
        specs += [draw_spec(set_name, task, n + j, n, small=True) for j in range(extra_small)]
        specs += [draw_spec(set_name, task, n + extra_small + j, n, small=False) for j in range(extra_far)]
    n_ms = max(1, multislice // 2) if (multislice and TASKS[task][1] == 3) else multislice
    specs += [multislice_spec(set_name, task, i, n, multislice_px) for i in range(n_ms)]
    rows = [write_image(s, folder) for s in specs]
    write_manifest(folder, rows)
    return rows


# --- truth check against vdwstack's own simulation -------------------------------------------

def pearson_lowpass(a: np.ndarray, b: np.ndarray, sigma_px: float) -> float:
    """Pearson r of two images after a Gaussian low-pass of `sigma_px` pixels."""
    a, b = gaussian_filter(a.astype(float), sigma_px), gaussian_filter(b.astype(float), sigma_px)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def undrift_pixels(image: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """vdwstack's (drift-free) image resampled as the drifting scan saw it (for the check only)."""
    n, p = spec.size_px, spec.pixel_size_A
    yy, xx = np.mgrid[0:n, 0:n].astype(float) * p
    d = spec.degradation
    ang = np.deg2rad(d["drift_angle_deg"])
    t = yy / (n * p)
    src_x, src_y = xx - d["drift_A"] * np.cos(ang) * t, yy - d["drift_A"] * np.sin(ang) * t
    return map_coordinates(image, [src_y / p, src_x / p], order=3, mode="nearest")


def check_truth(spec: ImageSpec, path: Path | None = None, sigma_A: float = 0.3) -> dict:
    """Pearson r between vdwstack's simulate_row of the spec's truth (default optics, no aberrations)
    and (a) this renderer without aberrations, drift, contamination or noise, (b) the set's image
    (read from `path` when given, after checking that its stored truth is the spec's).

    For a mirrored spec (b) compares the stored, mirrored image with vdwstack's un-mirrored
    simulation flipped by np.fliplr.
    """
    from vdwstack.core.microscope import MICROSCOPE_DEFAULTS
    from vdwstack.simulate.render import simulate_row

    ref = simulate_row(vdwstack_row(spec))
    plain_optics = dict(spec.optics, energy_eV=MICROSCOPE_DEFAULTS["energy_eV"],
                        semiangle_mrad=MICROSCOPE_DEFAULTS["semiangle_mrad"],
                        defocus_A=MICROSCOPE_DEFAULTS["defocus_A"], source_fwhm_A=MICROSCOPE_DEFAULTS["source_fwhm_A"],
                        C12_A=0.0, C21_A=0.0, Cs_A=0.0)
    plain = replace(spec, optics=plain_optics, degradation=dict(spec.degradation, drift_A=0.0))
    mine = render_clean(plain, sample_groups(plain, with_contamination=False))
    final = render_independent(spec) if path is None else stored_image(path, spec)
    seen = undrift_pixels(ref, spec)
    seen = np.fliplr(seen) if spec.mirrored else seen
    s = sigma_A / spec.pixel_size_A
    return {"image_id": spec.image_id, "mirrored": spec.mirrored, "lowpass_sigma_A": sigma_A,
            "r_clean_renderer_vs_vdwstack": pearson_lowpass(mine, ref, s),
            "r_final_image_vs_vdwstack": pearson_lowpass(final, seen, s),
            "r_final_image_vs_vdwstack_unflipped": pearson_lowpass(final, undrift_pixels(ref, spec), s),
            "r_final_image_vs_wrong_stacking": pearson_lowpass(final, wrong_stacking(spec), s),
            "drift_A": spec.degradation["drift_A"]}


def stored_image(path: Path, spec: ImageSpec) -> np.ndarray:
    """The image of a written TIFF, after checking that its truth is the spec's."""
    import tifffile

    if read_truth(path) != json.loads(json.dumps(truth_of(spec))):
        raise RuntimeError(f"{path}: its stored truth is not the one drawn for {spec.image_id}")
    return tifffile.imread(path)


def wrong_stacking(spec: ImageSpec) -> np.ndarray:
    """Negative control: vdwstack's image of the spec with slip 2 (layer 2 for bilayers) moved by
    half a lattice vector a, or the twist changed by 2°, seen through the same drift and mirror."""
    from vdwstack.simulate.render import simulate_row

    g = spec.geom
    half_a = get_material(g.material).a_A / 2
    if TASKS[spec.task][2] == "twist":
        geom = replace(g, theta_deg=g.theta_deg + 2.0)
    elif g.layers == 3:
        geom = replace(g, Da2_A=g.Da2_A + half_a)
    else:
        geom = replace(g, Da_A=g.Da_A + half_a)
    seen = undrift_pixels(simulate_row(vdwstack_row(replace(spec, geom=geom))), spec)
    return np.fliplr(seen) if spec.mirrored else seen


def run_checks(out: Path) -> list[dict]:
    """The truth check on one image of each task of the test set (both hands for ReS2)."""
    picks = [("ReS2_slip", 0), ("ReS2_slip", 1), ("MoS2_slip", 0), ("MoS2_twist", 0), ("MoS2_twist", 20),
             ("ReS2_trilayer", 0), ("MoS2_twist_AAprime", 0)]
    results = []
    for task, i in picks:
        n = task_count("test", task, None, False)
        spec = draw_spec("test", task, i, n)
        path = out / "test" / task / f"{spec.image_id}.tif"
        results.append(check_truth(spec, path if path.exists() else None))
        results[-1]["image_file"] = str(path) if path.exists() else None
        print(json.dumps(results[-1]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "truth_check.json").write_text(json.dumps(results, indent=1))
    return results


# --- command line ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["calibration", "test"], choices=list(SEEDS))
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--n", type=int, help="images per bilayer task (trilayers get n·8/20 or n·10/32)")
    ap.add_argument("--quick", action="store_true",
                    help="a tiny set (3 images per bilayer task, 2 trilayer) in benchmarks/data/independent_quick")
    ap.add_argument("--multislice", type=int, default=0,
                    help="vdwstack multislice images per task (half for the trilayer); ~3 s per probe "
                         "position (2 frozen phonons) on 2 shared CPU cores, i.e. over a day per image: use a GPU")
    ap.add_argument("--multislice-px", type=int, default=176, help="size of the multislice images (px)")
    ap.add_argument("--extra-small", type=int, default=None,
                    help="small twists (within 3° of 0° or 60°) added to each twist task after its regular draws "
                         f"(default per set: {({k: v[0] for k, v in EXTRA_TWISTS.items()})}, 0 elsewhere)")
    ap.add_argument("--extra-far", type=int, default=None,
                    help="larger twists (3–30° from 0° or 60°) added after those "
                         f"(default per set: {({k: v[1] for k, v in EXTRA_TWISTS.items()})}, 0 elsewhere)")
    ap.add_argument("--check", action="store_true", help="only run the truth check against vdwstack")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.quick and args.out == OUT:  # a tiny set must not replace the full ones
        args.out = OUT.with_name("independent_quick")
    if args.check:
        run_checks(args.out)
        return
    t_all = time.perf_counter()
    for set_name in args.sets:
        for task in args.tasks:
            t0 = time.perf_counter()
            n = task_count(set_name, task, args.n, args.quick)
            small, far = (0, 0) if args.quick else EXTRA_TWISTS.get(set_name, (0, 0))
            small = small if args.extra_small is None else args.extra_small
            far = far if args.extra_far is None else args.extra_far
            rows = generate_task(set_name, task, n, args.out, args.multislice, args.multislice_px, small, far)
            print(f"{set_name}/{task}: {len(rows)} images in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"total {time.perf_counter() - t_all:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
