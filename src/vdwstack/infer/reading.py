"""Reading one image with one trained regressor: whole-image estimate with its spread, sliding-window
maps of Da, Db (or θ) and their stacking domains.

The image is rescaled once (anti-aliased, :func:`vdwstack.core.resample.resample`) to the model's pixel size; every prediction is a model-sized crop,
normalised like the training crops. Test-time augmentation rotates crops by multiples of 90°
(labels live in the lattice frame, so image rotations leave them unchanged) and predictions are
averaged in the model's periodic feature space, so averaging never crosses a cell edge wrongly.

Chiral lattices (ReX2) are read in both hands: a mirrored image (specimen upside down, flipped or
transposed scan) shows the mirror-image lattice, which the networks never saw in training (the
slips in lattice coordinates do not change, so the crops can simply be flipped back). The hand kept
is the one whose mean features lie clearly closer to the model's encoding manifold (the features of
some stacking; :data:`HAND_MARGIN`), else the image as imaged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from vdwstack.core.images import normalize_unit
from vdwstack.core.resample import resample
from vdwstack.infer.domains import domain_boundaries, locate_boundaries, segment_domains
from vdwstack.infer.settings import InferenceSettings
from vdwstack.infer.slip_gradient import twist_from_slip_map
from vdwstack.regress.model import Regressor
from vdwstack.structures.names import name_stacking
from vdwstack.structures.symmetry import StackingSymmetry, projection_is_chiral, symmetry_for

log = logging.getLogger(__name__)

# The mirror hand is kept only when its manifold residual is this many times smaller than the
# image's as imaged (else: as imaged, "decided" false). On the independent calibration images (20
# ReS2 bilayers, half mirrored, 8 trilayers) the right hand's residual was the smaller in all 28, the
# other's 1.04–23× larger (≥ 2.2× for the mirrored bilayers): any margin in 1.0–2.2 separates them;
# 1.25 keeps a weaker model (the trilayers') from mirroring an image on a small difference.
HAND_MARGIN = 1.25


# --- predictions ---------------------------------------------------------------------------------
class CropPredictor:
    """Features of model-sized crops of one image (already at the model's pixel size)."""

    def __init__(self, reg: Regressor, image_model_px: np.ndarray, tta_rotations: int, batch_size: int,
                 tta_fields: int = 1, mirrored: bool = False, mirror_views: bool = False):
        # mirrored: every crop is flipped left-right before the network sees it (the image read as
        # the mirror image of a chiral lattice); centres stay in the image's own coordinates.
        # mirror_views: a lattice with a mirror line also reads each crop flipped, as a second view
        # of the same stacking (its features mapped back: TargetCodec.mirror_permutation).
        self.reg, self.img, self.mirrored = reg, image_model_px, mirrored
        self.mirror_views = mirror_views and reg.codec.has_mirror
        self.k = {1: [0], 2: [0, 2], 4: [0, 1, 2, 3]}[tta_rotations]
        self.batch = batch_size
        # The full field (or the largest that fits) first, then the smaller fields averaged with it.
        self.fields = reg.tta_fields_px(image_model_px.shape, tta_fields)
        self.c = self.fields[0]

    def features(self, centres_px: np.ndarray) -> np.ndarray:
        """Mean TTA features at crop centres (row, col) in model pixels, shape (n, dim): the
        quarter turns of each field, every field centred where the full one is."""
        h = self.c // 2
        out = []
        starts = range(0, len(centres_px), self.batch)
        # A large map is thousands of windows: a progress bar when it takes more than a few batches.
        for i in tqdm(starts, desc="windows", unit="batch", leave=False, disable=len(starts) < 8):
            acc = 0.0
            for side in self.fields:
                crops = []
                for r, c in centres_px[i:i + self.batch]:
                    r0, c0 = r - h + (self.c - side) // 2, c - h + (self.c - side) // 2
                    crop = normalize_unit(self.img[r0:r0 + side, c0:c0 + side])
                    crops.append(np.fliplr(crop) if self.mirrored else crop)
                acc = acc + self.reg.view_features(np.stack(crops), self.k, self.mirror_views)
            out.append(acc / len(self.fields))
        return np.concatenate(out)


def _decode(reg: Regressor, feats: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in reg.codec.decode(feats).items()}


def _distance(reg: Regressor, sym: StackingSymmetry, a: Mapping, b: Mapping) -> np.ndarray:
    """ΔD (Å, slip) or |Δθ| (degrees, twist) between two sets of decoded predictions."""
    if reg.codec.task == "twist":
        return sym.twist_error_deg(a["theta_deg"], b["theta_deg"])
    if "Da2_A" in a:  # trilayers: the network reads the layers' positions, not their order
        keys = ("Da_A", "Db_A", "Da2_A", "Db2_A")
        return sym.trilayer_slip_error_A([a[k] for k in keys], [b[k] for k in keys], any_order=True)
    return sym.slip_error_A(a["Da_A"], a["Db_A"], b["Da_A"], b["Db_A"])


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


def manifold_residual(reg: Regressor, feats: np.ndarray) -> float:
    """Distance of the mean of crop features [n, dim] from the model's encoding of the stacking it
    decodes to (dimensionless; 0: the features of exactly one stacking). An image the network
    reads as it was trained (the right hand) lies close; a mirror-image lattice does not."""
    mean = feats.mean(axis=0, keepdims=True)
    return float(np.linalg.norm(mean - reg.codec.encode(_decode(reg, mean))))


def _grid_centres(n_rows: int, n_cols: int, crop: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    h = crop // 2
    rows = np.arange(h, n_rows - crop + h + 1, max(stride, 1))
    cols = np.arange(h, n_cols - crop + h + 1, max(stride, 1))
    return rows, cols



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
    """Run one trained regressor over an image (any orientation, any pixel size in Å/px)."""
    image = np.asarray(image, np.float32)
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{image_id}: image contains NaN or infinite values")
    if image.std() == 0:
        raise ValueError(f"{image_id}: image is constant")
    H_A, W_A = image.shape[0] * pixel_size_A, image.shape[1] * pixel_size_A
    if min(H_A, W_A) < reg.min_crop_px * reg.pixel_size_A:
        raise ValueError(f"{image_id}: image of {W_A:.1f}×{H_A:.1f} Å is smaller than one window "
                         f"({reg.min_crop_px * reg.pixel_size_A:.1f} Å: the model sees at least {reg.min_crop_px} px "
                         f"at {reg.pixel_size_A:g} Å/px)")
    sym = symmetry_for(reg.codec.material)
    image_model = resample(image, pixel_size_A, reg.pixel_size_A)
    chiral = settings.decide_hand and projection_is_chiral(reg.codec.material)
    hands = []  # (mirrored, predictor, features of the whole-image crops, manifold residual)
    for mirrored in (False, True) if chiral else (False,):
        pred = CropPredictor(reg, image_model, settings.tta_rotations, settings.batch_size, settings.tta_fields,
                             mirrored=mirrored, mirror_views=settings.tta_mirror)
        centres = Regressor.crop_centres(pred.img.shape, pred.c, settings.whole_image_crops)
        feats = pred.features(centres)
        hands.append((mirrored, pred, feats, manifold_residual(reg, feats) if chiral else None))
    hand = _hand_record(hands)
    mirrored, pred, feats, _ = hands[1] if hand is not None and hand["mirrored"] else hands[0]
    field_A = pred.c * reg.pixel_size_A
    unit = "deg" if reg.codec.task == "twist" else "A"
    est, spread = robust_aggregate(reg, sym, feats)
    spread_rms = float(np.sqrt(np.mean(spread ** 2)))
    window_map = _window_map(pred, sym, settings, max(settings.window_A, field_A))
    record = {
        "image_id": image_id,
        "material": reg.codec.material,
        "layers": reg.codec.layers,
        "task": reg.codec.task,
        "image_shape_px": list(image.shape),
        "pixel_size_A": float(pixel_size_A),
        "pixel_size_source": pixel_size_source,
        "model": {"architecture": reg.card["architecture"], "pixel_size_A": reg.pixel_size_A, "crop_px": pred.c,
                  "field_of_view_A": field_A,
                  "training_set": reg.card.get("training", {}).get("dataset")},
        "n_crops": int(len(centres)),
        "tta_rotations": settings.tta_rotations,
        "tta_fields_A": [round(side * reg.pixel_size_A, 2) for side in pred.fields],
        "tta_mirror": pred.mirror_views,
        **est,
        "mirrored": bool(mirrored),
        **({"hand": hand} if hand is not None else {}),  # chiral lattices only, as in final readings
        f"spread_{unit}": spread_rms,
        f"uncertainty_{unit}": spread_rms / np.sqrt(len(centres)),
        "map": window_map.pop("map"),
        "domains": window_map["domains"],
        "n_domains": len(window_map["domains"]),
        "boundaries": window_map["boundaries"],
        "settings": asdict(settings),
    }
    if reg.codec.task == "slip":
        record["stacking"] = name_stacking(reg.codec.material, est["Da_A"], est["Db_A"])
    else:  # small twists: AA-like or AA′-like (θ or θ_max − θ) may be undecided
        record["alignment"] = _alignment_record(reg, feats, est["theta_deg"])
    if reg.codec.task == "slip" and reg.codec.layers == 2:
        m = record["map"]
        record["twist_from_slip_map"] = twist_from_slip_map(
            window_map["maps"]["Da_A"], window_map["maps"]["Db_A"], sym, m["stride_A"], m["window_A"])
    return InferenceResult(record, window_map["maps"], window_map["labels"], domain_boundaries(window_map["labels"]),
                           image, window_map["extent"])


def _alignment_record(reg: Regressor, feats: np.ndarray, theta_deg: float) -> dict:
    """The twist's partner θ_max − θ, the features' evidence for θ over it and whether that decides
    (:meth:`TwistEncoding.alignment_decided`). Near θ_max / 2 the partner is the same twist: always decided."""
    tw = reg.codec.twist
    ev = float(tw.alignment_evidence(feats.mean(axis=0), theta_deg))
    finite = bool(np.isfinite(ev))
    return {"theta_partner_deg": round(float(tw.partner_deg(theta_deg)), 3),
            "evidence": round(ev, 3) if finite else None, "decided": bool(tw.alignment_decided(ev))}


def _hand_record(hands: list) -> dict | None:
    """Both hands' manifold residuals, whether they tell the hand apart by :data:`HAND_MARGIN`,
    and the hand kept (mirrored only when decided). None: an achiral lattice, or not asked for."""
    if len(hands) < 2:
        return None
    r = {m: res for m, _, _, res in hands}
    decided = max(r.values()) >= HAND_MARGIN * min(r.values())
    return {"residual_as_is": round(r[False], 4), "residual_mirrored": round(r[True], 4),
            "decided": bool(decided), "mirrored": bool(decided and r[True] < r[False])}


def _window_map(pred: CropPredictor, sym: StackingSymmetry, settings: InferenceSettings, window_A: float) -> dict:
    """Sliding-window maps (window ≥ the model's field; centre crop of each window), their domains
    and the maps' extent (x0, x1, y1, y0) in Å for imshow."""
    reg = pred.reg
    p = reg.pixel_size_A
    stride_px = max(1, int(round(settings.stride_A / p)))
    rows, cols = _grid_centres(pred.img.shape[0], pred.img.shape[1], int(round(window_A / p)), stride_px)
    if len(rows) == 0 or len(cols) == 0:
        rows, cols = np.array([pred.img.shape[0] // 2]), np.array([pred.img.shape[1] // 2])
    feats = pred.features(np.array([(r, q) for r in rows for q in cols]))
    maps = {k: v.reshape(len(rows), len(cols)) for k, v in _decode(reg, feats).items()}
    tol = settings.domain_tol_deg if reg.codec.task == "twist" else settings.domain_tol_A
    unit = "deg" if reg.codec.task == "twist" else "A"
    step_A = stride_px * p
    grid = feats.reshape(len(rows), len(cols), -1)
    min_windows = max(1, int(np.ceil(settings.min_domain_area_nm2 * 100 / step_A ** 2)))
    labels, masks = segment_domains(grid, lambda f: _decode(reg, f), lambda a, b: _distance(reg, sym, a, b), tol,
                                    settings.domain_coupling, settings.domain_smoothing_A / step_A, min_windows,
                                    window_A / step_A)
    domains = []
    for i, mask in enumerate(masks):
        dest, dspread = robust_aggregate(reg, sym, feats[mask.ravel()])
        entry = {"id": i, "n_windows": int(mask.sum()), "area_nm2": float(mask.sum() * step_A ** 2 / 100),
                 **dest, f"spread_{unit}": float(np.sqrt(np.mean(dspread ** 2)))}
        if reg.codec.task == "slip":
            entry["stacking"] = name_stacking(reg.codec.material, dest["Da_A"], dest["Db_A"])
        domains.append(entry)
    xy_A = np.stack(np.meshgrid(cols * p, rows * p), axis=-1)  # window centres (x, y) in Å
    boundaries = locate_boundaries(grid, labels, xy_A, window_A, step_A)
    y0, x0 = rows[0] * p - step_A / 2, cols[0] * p - step_A / 2
    return {"maps": maps, "labels": labels, "domains": domains, "boundaries": boundaries,
            "extent": (x0, x0 + len(cols) * step_A, y0 + len(rows) * step_A, y0),
            "map": {"rows": int(len(rows)), "cols": int(len(cols)), "window_A": float(window_A),
                    "stride_A": float(step_A)}}
