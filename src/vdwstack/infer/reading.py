"""The infer stage: one experimental image → whole-image estimate with uncertainty, sliding-window
maps of Da, Db (or θ), stacking domains and their boundaries, and an atomic model.

The image is rescaled once to the model's pixel size; every prediction is a model-sized crop,
normalised like the training crops. Test-time augmentation rotates crops by multiples of 90°
(labels live in the lattice frame, so image rotations leave them unchanged) and predictions are
averaged in the model's periodic feature space, so averaging never crosses a cell edge wrongly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import label as connected_components
from scipy.ndimage import zoom

from vdwstack.core.images import normalize_unit, read_image
from vdwstack.structures.materials import get_material
from vdwstack.structures.names import name_stacking
from vdwstack.regress.model import Regressor
from vdwstack.structures.symmetry import StackingSymmetry, symmetry_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceSettings:
    """Sliding-window geometry (Å), test-time augmentation and domain segmentation tolerances."""

    window_A: float = 12.0          # window side; at least the model's field of view is used
    stride_A: float = 6.0
    whole_image_crops: int = 16
    tta_rotations: int = 4          # 1, 2 or 4 quarter turns
    batch_size: int = 32
    domain_tol_A: float = 0.35      # windows closer than this (ΔD) belong to one stacking
    domain_tol_deg: float = 2.0
    min_domain_windows: int = 2

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> InferenceSettings:
        m = dict(m or {})
        unknown = set(m) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"infer: unknown setting(s) {sorted(unknown)}")
        s = cls(**m)
        for name in ("window_A", "stride_A", "domain_tol_A", "domain_tol_deg"):
            v = getattr(s, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"infer.{name} must be a positive number, got {v!r}")
        if s.tta_rotations not in (1, 2, 4):
            raise ValueError(f"infer.tta_rotations must be 1, 2 or 4, got {s.tta_rotations!r}")
        if s.whole_image_crops < 1 or s.batch_size < 1 or s.min_domain_windows < 1:
            raise ValueError("infer.whole_image_crops, batch_size and min_domain_windows must be ≥ 1")
        return s


# --- pixel size ----------------------------------------------------------------------------------
def resolve_pixel_size(image: np.ndarray, material: str, from_file_A: float | None,
                       from_sheet_A: float | None) -> tuple[float, str]:
    """Pixel size (Å/px) and how it was obtained: file metadata, else the sheet, else estimated."""
    if from_file_A:
        return float(from_file_A), "metadata"
    if from_sheet_A:
        return float(from_sheet_A), "sheet"
    from vdwstack.structures.pixel_size import estimate_pixel_size

    est = estimate_pixel_size(image, material)
    log.info("pixel size estimated from the Bragg spots: %.4f Å/px (match %.2f, %d spots)",
             est.pixel_size_A, est.score, est.n_spots)
    return est.pixel_size_A, "estimated"


# --- predictions ---------------------------------------------------------------------------------
class CropPredictor:
    """Features of model-sized crops of one image (already at the model's pixel size)."""

    def __init__(self, reg: Regressor, image_model_px: np.ndarray, tta_rotations: int, batch_size: int):
        self.reg, self.img = reg, image_model_px
        self.k = {1: [0], 2: [0, 2], 4: [0, 1, 2, 3]}[tta_rotations]
        self.batch = batch_size
        self.c = reg.crop_px

    def features(self, centres_px: np.ndarray) -> np.ndarray:
        """Mean TTA features at crop centres (row, col) in model pixels, shape (n, dim)."""
        import torch

        h = self.c // 2
        out = []
        for i in range(0, len(centres_px), self.batch):
            crops = []
            for r, c in centres_px[i:i + self.batch]:
                crop = normalize_unit(self.img[r - h:r - h + self.c, c - h:c - h + self.c])
                crops += [np.rot90(crop, k) for k in self.k]
            x = torch.from_numpy(np.ascontiguousarray(np.stack(crops))[:, None]).to(self.reg.device)
            with torch.no_grad():
                f = self.reg.model(x).float().cpu().numpy()
            out.append(f.reshape(-1, len(self.k), f.shape[-1]).mean(axis=1))
        return np.concatenate(out)


def _decode(reg: Regressor, feats: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in reg.codec.decode(feats).items()}


def _distance(reg: Regressor, sym: StackingSymmetry, a: Mapping, b: Mapping) -> np.ndarray:
    """ΔD (Å, slip) or |Δθ| (degrees, twist) between two sets of decoded predictions."""
    if reg.codec.task == "twist":
        return sym.twist_error_deg(a["theta_deg"], b["theta_deg"])
    d = sym.slip_error_A(a["Da_A"], a["Db_A"], b["Da_A"], b["Db_A"])
    if "Da2_A" in a:
        d = np.maximum(d, sym.slip_error_A(a["Da2_A"], a["Db2_A"], b["Da2_A"], b["Db2_A"]))
    return d


def robust_aggregate(reg: Regressor, sym: StackingSymmetry, feats: np.ndarray) -> tuple[dict, np.ndarray]:
    """Aggregate crop features: mean, then the mean of the closest 80 % (outlier crops dropped).

    Returns (decoded estimate as floats, distance of every crop from it).
    """
    est = _decode(reg, feats.mean(axis=0, keepdims=True))
    per = _decode(reg, feats)
    dist = _distance(reg, sym, per, est)
    keep = dist <= np.quantile(dist, 0.8) if len(dist) >= 5 else np.ones(len(dist), bool)
    est = _decode(reg, feats[keep].mean(axis=0, keepdims=True))
    dist = _distance(reg, sym, per, est)
    return {k: float(v[0]) for k, v in est.items()}, dist


def _grid_centres(n_rows: int, n_cols: int, crop: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    h = crop // 2
    rows = np.arange(h, n_rows - crop + h + 1, max(stride, 1))
    cols = np.arange(h, n_cols - crop + h + 1, max(stride, 1))
    return rows, cols



def segment_domains(values: Mapping[str, np.ndarray], distance, tol: float, min_windows: int
                    ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Label map (−1 = unassigned) of the windows and the member mask of each cluster.

    Windows are clustered by value (greedy: the window with the most neighbours within `tol`
    seeds a cluster of those neighbours), then split into spatially connected domains; domains
    with fewer than `min_windows` windows stay unassigned.
    """
    shape = next(iter(values.values())).shape
    flat = {k: v.ravel() for k, v in values.items()}
    n = int(np.prod(shape))
    pair = np.stack([distance({k: v[i:i + 1] for k, v in flat.items()}, flat) for i in range(n)])
    near = pair <= tol
    free = np.ones(n, bool)
    cluster = np.full(n, -1)
    c = 0
    while free.any():
        counts = (near & free[None]).sum(axis=1) * free
        seed = int(np.argmax(counts))
        members = near[seed] & free
        cluster[members] = c
        free &= ~members
        c += 1
    labels = np.full(shape, -1)
    next_id = 0
    masks = []
    for k in range(c):
        comp, m = connected_components((cluster == k).reshape(shape))
        for j in range(1, m + 1):
            mask = comp == j
            if mask.sum() >= min_windows:
                labels[mask] = next_id
                masks.append(mask)
                next_id += 1
    return labels, masks


def domain_boundaries(labels: np.ndarray) -> np.ndarray:
    """Boolean map: windows whose right or lower neighbour belongs to another domain."""
    b = np.zeros(labels.shape, bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return b


# --- the stage -----------------------------------------------------------------------------------
@dataclass
class InferenceResult:
    record: dict
    maps: dict[str, np.ndarray]        # name → (rows, cols) map
    domain_labels: np.ndarray
    boundaries: np.ndarray
    image: np.ndarray                  # input image (grey, as read)
    map_extent_A: tuple[float, float, float, float]  # (x0, x1, y1, y0) of the maps in Å, for imshow


def infer_image(image: np.ndarray, pixel_size_A: float, reg: Regressor,
                settings: InferenceSettings = InferenceSettings(), image_id: str = "image",
                pixel_size_source: str = "given") -> InferenceResult:
    """Run one trained regressor over an image (any orientation, any pixel size)."""
    image = np.asarray(image, np.float32)
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{image_id}: image contains NaN or infinite values")
    if image.std() == 0:
        raise ValueError(f"{image_id}: image is constant")
    material = reg.codec.material
    sym = symmetry_for(material)
    scale = pixel_size_A / reg.pixel_size_A
    field_A = reg.crop_px * reg.pixel_size_A
    H_A, W_A = image.shape[0] * pixel_size_A, image.shape[1] * pixel_size_A
    if min(H_A, W_A) < field_A:
        raise ValueError(f"{image_id}: image of {W_A:.1f}×{H_A:.1f} Å is smaller than one window "
                         f"({field_A:.1f} Å: the model sees {reg.crop_px} px at {reg.pixel_size_A:g} Å/px)")
    img = zoom(image, scale, order=3) if abs(scale - 1) > 1e-6 else image
    pred = CropPredictor(reg, img, settings.tta_rotations, settings.batch_size)
    c = reg.crop_px

    # Whole image: crops on an even grid spanning the image.
    n_side = int(np.ceil(np.sqrt(settings.whole_image_crops)))
    if n_side == 1:
        rs, cs = np.array([img.shape[0] // 2]), np.array([img.shape[1] // 2])
    else:
        rs = np.linspace(c // 2, img.shape[0] - c + c // 2, n_side).astype(int)
        cs = np.linspace(c // 2, img.shape[1] - c + c // 2, n_side).astype(int)
    centres = np.array([(r, q) for r in rs for q in cs])[: max(settings.whole_image_crops, 1)]
    centres = np.unique(centres, axis=0)
    est, spread = robust_aggregate(reg, sym, pred.features(centres))
    unit = "deg" if reg.codec.task == "twist" else "A"
    spread_rms = float(np.sqrt(np.mean(spread ** 2)))

    # Sliding windows (window ≥ the model's field; centre crop of each window).
    window_A = max(settings.window_A, field_A)
    stride_px = max(1, int(round(settings.stride_A / reg.pixel_size_A)))
    win_px = int(round(window_A / reg.pixel_size_A))
    rows, cols = _grid_centres(img.shape[0], img.shape[1], win_px, stride_px)
    if len(rows) == 0 or len(cols) == 0:
        rows, cols = np.array([img.shape[0] // 2]), np.array([img.shape[1] // 2])
    grid = np.array([(r, q) for r in rows for q in cols])
    feats = pred.features(grid)
    dec = _decode(reg, feats)
    maps = {k: v.reshape(len(rows), len(cols)) for k, v in dec.items()}
    tol = settings.domain_tol_deg if reg.codec.task == "twist" else settings.domain_tol_A
    labels, masks = segment_domains(maps, lambda a, b: _distance(reg, sym, a, b), tol, settings.min_domain_windows)
    domains = []
    for i, mask in enumerate(masks):
        dest, dspread = robust_aggregate(reg, sym, feats[mask.ravel()])
        entry = {"id": i, "n_windows": int(mask.sum()), "area_A2": float(mask.sum() * (stride_px * reg.pixel_size_A) ** 2),
                 **dest, f"spread_{unit}": float(np.sqrt(np.mean(dspread ** 2)))}
        if reg.codec.task == "slip":
            entry["stacking"] = name_stacking(material, dest["Da_A"], dest["Db_A"])
        domains.append(entry)
    step_A = stride_px * reg.pixel_size_A
    y0 = rows[0] * reg.pixel_size_A - step_A / 2
    x0 = cols[0] * reg.pixel_size_A - step_A / 2
    extent = (x0, x0 + len(cols) * step_A, y0 + len(rows) * step_A, y0)

    record = {
        "image_id": image_id,
        "material": material,
        "layers": reg.codec.layers,
        "task": reg.codec.task,
        "image_shape_px": list(image.shape),
        "pixel_size_A": float(pixel_size_A),
        "pixel_size_source": pixel_size_source,
        "model": {"architecture": reg.card["architecture"], "pixel_size_A": reg.pixel_size_A, "crop_px": c,
                  "training_set": reg.card.get("training", {}).get("dataset")},
        "n_crops": int(len(centres)),
        "tta_rotations": settings.tta_rotations,
        **est,
        f"spread_{unit}": spread_rms,
        f"uncertainty_{unit}": spread_rms / np.sqrt(len(centres)),
        "map": {"rows": int(len(rows)), "cols": int(len(cols)), "window_A": float(window_A), "stride_A": float(step_A)},
        "domains": domains,
        "n_domains": len(domains),
        "settings": asdict(settings),
    }
    if reg.codec.task == "slip":
        record["stacking"] = name_stacking(material, est["Da_A"], est["Db_A"])
    return InferenceResult(record, maps, labels, domain_boundaries(labels), image, extent)


def atomic_model(material: str, layers: int, estimate: Mapping, size_A: float = 30.0):
    """ASE Atoms of the inferred stacking over a size_A × size_A patch (lattice frame)."""
    from vdwstack.structures.geometry import StackGeometry, build_stack

    row = {"material": material, "layers": layers, "Da_A": estimate.get("Da_A", 0.0), "Db_A": estimate.get("Db_A", 0.0),
           "Da2_A": estimate.get("Da2_A", 0.0), "Db2_A": estimate.get("Db2_A", 0.0),
           "theta_deg": estimate.get("theta_deg", 0.0), "rotation_deg": 0.0}
    return build_stack(StackGeometry.from_row(row), (0.0, size_A, 0.0, size_A))


def read_truth(path: str | Path) -> dict | None:
    """The known truth stored by the pipeline in a pseudo-experimental TIFF (None otherwise)."""
    import json

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    with tifffile.TiffFile(path) as tf:
        desc = tf.pages[0].description or ""
    try:
        meta = json.loads(desc)
    except json.JSONDecodeError:
        return None
    return meta.get("truth") if isinstance(meta, dict) else None


def load_image(path: str | Path, material: str, sheet_pixel_size_A: float | None) -> tuple[np.ndarray, float, str]:
    """Read an image, check the material, resolve the pixel size: (image, Å/px, source)."""
    try:
        get_material(material)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    image, p_file = read_image(path)
    try:
        p, source = resolve_pixel_size(image, material, p_file, sheet_pixel_size_A)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return image, p, source
