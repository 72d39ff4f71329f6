"""ResNet regressors of slip (Da, Db) and twist θ with symmetry-invariant periodic targets.

The network sees 1-channel images at the model's pixel size (inputs at other pixel sizes are
rescaled) and predicts the features of :mod:`vdwstack.regress.encoding`; decoding gives canonical
slips in Å or folded twists in degrees. Trilayers predict the features of both slips side by side.
This module holds what a trained model is (targets, network, files); training is in
:mod:`vdwstack.regress.training`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from vdwstack.core.images import normalize_unit
from vdwstack.core.resample import resample
from vdwstack.core.torch_utils import autocast_dtype
from vdwstack.regress.decoding import sqrt_weights
from vdwstack.regress.encoding import SlipEncoding, TrilayerSlipEncoding, TwistEncoding
from vdwstack.structures.geometry import slip_keys
from vdwstack.structures.symmetry import projection_mirror

ARCHITECTURES = ("resnet18", "resnet34", "resnet50")
TRILAYER_MAX_ORDERS = 4


class TargetCodec:
    """Labels ↔ network targets for one task, material and number of layers."""

    def __init__(self, task: str, material: str, layers: int = 2, feature_weights: Sequence[float] | None = None,
                 orders: int | None = None, harmonics: int | None = None):
        """`feature_weights`: per-feature weights of the slip decoding (dim,; see
        :func:`decoding_weights`), None for equal weights. `orders`: the slip targets' highest
        |h|, |k| (None: the encoding's default; twist: unused). `harmonics`: the twist targets'
        cos(2πnθ/P), n = 1…harmonics (None: the encoding's default, 3; slip: unused)."""
        self.task, self.material, self.layers = task, material, layers
        if task == "slip":
            if layers == 2:
                self.slip = SlipEncoding(material, orders=orders)
            elif orders is not None and orders > TRILAYER_MAX_ORDERS:
                raise ValueError(f"slip_orders {orders}: trilayer targets take orders up to {TRILAYER_MAX_ORDERS} "
                                 f"(their number grows as orders⁴: 1060 at 4, with a decoding table of 0.3 GB)")
            else:
                self.slip = TrilayerSlipEncoding(material) if orders is None else TrilayerSlipEncoding(material, orders)
            self.dim = self.slip.dim
        else:
            self.twist = TwistEncoding(material) if harmonics is None else TwistEncoding(material, harmonics)
            self.dim = self.twist.dim
        self.feature_weights = None
        if feature_weights is not None:
            self.set_feature_weights(feature_weights)

    def set_feature_weights(self, feature_weights: Sequence[float]) -> None:
        """Weights (dim,) of the slip decoding; ValueError for the wrong count or values."""
        if self.task != "slip":
            raise ValueError("feature_weights: only slip decodings are weighted")
        sqrt_weights(feature_weights, self.dim)  # checks length and values
        self.feature_weights = np.asarray(feature_weights, np.float64)

    def _cartesian_features(self, xy: list[np.ndarray]) -> np.ndarray:
        """Slip features (n, dim), float64, of Cartesian slips: one (n, 2) array (Å) per slip."""
        sym = self.slip.sym
        return self.slip.encode(*(c for v in xy for c in sym.cartesian_to_slip(v))).astype(np.float64)

    def feature_slopes(self, n: int = 4096, seed: int = 0) -> np.ndarray:
        """Mean squared slope E|∇φ_j|² (dim,) of each feature: for slip targets over slips drawn uniformly
        in the cell (1/Å²; central differences of 1e-3 Å along Cartesian x and y of each slip), for twist
        targets over twists drawn uniformly in the folded range (1/degree²; harmonic n: ∝ n²)."""
        rng = np.random.default_rng(seed)
        h = 1e-3
        if self.task == "twist":
            lo, hi = self.twist.sym.twist_range_deg
            theta = lo + h + rng.random(n) * (hi - lo - 2 * h)
            return (((self.twist.encode(theta + h).astype(np.float64)
                      - self.twist.encode(theta - h)) / (2 * h)) ** 2).mean(axis=0)
        sym = self.slip.sym
        slips = [rng.random((n, 2)) @ sym.lattice for _ in range(self.layers - 1)]  # Cartesian Å, (n, 2) each
        g2 = np.zeros(self.dim)
        for i in range(len(slips)):
            for e in np.eye(2):
                up = [v + h * e if j == i else v for j, v in enumerate(slips)]
                down = [v - h * e if j == i else v for j, v in enumerate(slips)]
                g2 += (((self._cartesian_features(up) - self._cartesian_features(down)) / (2 * h)) ** 2).mean(axis=0)
        return g2

    @cached_property
    def mirror_permutation(self) -> np.ndarray | None:
        """Indices p (dim,) with φ(mirrored stack)_j = φ(stack)_p[j], or None when the material's
        projection has no mirror line (ReX2: a mirrored image shows another lattice).

        A mirrored image of a 2H-MX2 stack is an image of the same material with slip(s) M·D
        (:func:`~vdwstack.structures.symmetry.projection_mirror`; whichever mirror line: they differ by
        rotations the features are invariant under) and twist −θ (the twist features are even:
        p is the identity). Found by matching the features of mirrored and unmirrored slips."""
        mirror = projection_mirror(self.material)
        if mirror is None:
            return None
        if self.task == "twist":
            return np.arange(self.dim)
        # One stream for all slips: a trilayer's D1 and D2 must be drawn apart, or features that tell them
        # apart tie on the samples and the match can pair the wrong ones.
        rng = np.random.default_rng(1)
        xy = [rng.random((256, 2)) @ self.slip.sym.lattice for _ in range(self.layers - 1)]
        plain, mirrored = self._cartesian_features(xy), self._cartesian_features([v @ mirror.T for v in xy])
        gap = np.abs(plain[:, :, None] - mirrored[:, None, :]).max(axis=0)  # (plain j, mirrored i)
        # A one-to-one match: two features that happen to agree closely on the samples cannot take one.
        p = np.empty(self.dim, int)
        p[linear_sum_assignment(gap)[1]] = np.arange(self.dim)
        if np.any(gap[p, np.arange(self.dim)] > 1e-4) or np.any(p[p] != np.arange(self.dim)):
            raise ValueError(f"{self.material}: the slip features do not map onto each other under its mirror")
        return p

    @property
    def has_mirror(self) -> bool:
        """Whether a mirrored view of an image shows the same material (2H MX2), so that flips can serve as
        extra views or training samples with their features mapped (:attr:`mirror_permutation`)."""
        return self.mirror_permutation is not None

    def mirrored_features(self, features: np.ndarray) -> np.ndarray:
        """Features [..., dim] of the mirrored stacks of `features` [..., dim] (a mirror is its own
        inverse: this also maps a flipped view's features back); ValueError without a mirror line."""
        p = self.mirror_permutation
        if p is None:
            raise ValueError(f"{self.material}: its projection has no mirror line")
        return np.asarray(features)[..., p]

    def loss_weights(self, power: float) -> np.ndarray:
        """Training loss weights (dim,) ∝ feature_slopes()**power, mean 1."""
        w = self.feature_slopes() ** float(power)
        return (w / w.mean()).astype(np.float32)

    def encode(self, labels: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.task == "twist":
            return self.twist.encode(np.asarray(labels["theta_deg"]))
        return self.slip.encode(*(np.asarray(labels[k]) for k in slip_keys(self.layers)))

    def decode(self, features: np.ndarray) -> dict[str, np.ndarray]:
        if self.task == "twist":
            return {"theta_deg": self.twist.decode(features)}
        return dict(zip(slip_keys(self.layers), self.slip.decode(features, self.feature_weights)))

    def to_dict(self) -> dict:
        if self.task == "slip" and self.layers == 3:
            enc = {"type": "cos(2π (R g1·D1 + R g2·D2)) averaged over the slip group and (D1, D2) ≡ (−D2, −D1)",
                   "g_pairs_per_A": self.slip.pairs.tolist()}
        else:
            enc = {"type": "cos(2π (R g)·D) averaged over the slip group", "g_vectors_per_A": self.slip.g_vectors.tolist()} \
                if self.task == "slip" else {"type": "cos(2π n θ / P)", "harmonics": self.twist.harmonics,
                                             "period_deg": self.twist.sym.twist_period_deg}
        orders = {"orders": self.slip.max_order} if self.task == "slip" else {}
        return {"task": self.task, "material": self.material, "layers": self.layers, "dim": self.dim, **orders, **enc}


def build_resnet(architecture: str, out_dim: int) -> nn.Module:
    """torchvision ResNet for 1-channel input with a linear head of `out_dim` outputs."""
    import torchvision

    net = getattr(torchvision.models, architecture)(weights=None)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Linear(net.fc.in_features, out_dim)
    return net



def load_backbone(model: nn.Module, path: str | Path) -> None:
    """Start `model` from the weights in `path` (another regressor's model.safetensors) except its
    linear head, whose size is the other task's. Raises ValueError naming the file when the two
    networks are not the same architecture."""
    from safetensors.torch import load_file

    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("fc.")}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    bad = sorted(set(own) ^ set(state)) + [k for k in own if k in state and own[k].shape != state[k].shape]
    if bad:
        raise ValueError(f"{path}: not the same network as the one being trained (e.g. {bad[0]}); "
                         f"init_from needs a model of the same architecture")
    model.load_state_dict(state, strict=False)


def export_regressor(model: nn.Module, out_dir: str | Path, card: Mapping) -> None:
    from safetensors.torch import save_file

    out = Path(out_dir)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    write_card(out, card)


def write_card(out_dir: str | Path, card: Mapping) -> None:
    (Path(out_dir) / "card.json").write_text(json.dumps(dict(card), indent=2, default=str))


class Regressor:
    """A trained model with its card: predicts labels from images at any pixel size."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", mixed_precision: bool = True):
        """`mixed_precision`: the convolutions under autocast (bf16 on a CPU with native bf16, fp16
        on CUDA; the precision the networks train in), channels-last; the pooled features and the
        linear head stay fp32. ~3× the tiles/s of fp32 on these CPUs, readings within ~0.01 Å."""
        from safetensors.torch import load_file

        model_dir = Path(model_dir)
        self.card = json.loads((model_dir / "card.json").read_text())
        enc = self.card["encoding"]
        weights = (self.card.get("decoding") or {}).get("feature_weights")
        # Cards written before `orders` / `harmonics` were recorded used the default orders / harmonics.
        self.codec = TargetCodec(enc["task"], enc["material"], enc["layers"], orders=enc.get("orders"),
                                 harmonics=enc.get("harmonics"))
        if "dim" in enc and int(enc["dim"]) != self.codec.dim:
            key = "orders" if enc["task"] == "slip" else "harmonics"
            raise ValueError(f"{model_dir / 'card.json'}: encoding: the model reads {enc['dim']} features, the "
                             f"encoding it names has {self.codec.dim} (its `{key}` missing or changed?)")
        if weights is not None:
            try:
                self.codec.set_feature_weights(weights)
            except ValueError as e:
                raise ValueError(f"{model_dir / 'card.json'}: decoding: {e}") from None
        self.model = build_resnet(self.card["architecture"], self.codec.dim)
        self.model.load_state_dict(load_file(str(model_dir / "model.safetensors")))
        self.model.eval().to(device)
        self.device = device
        self.autocast = autocast_dtype(torch.device(device), mixed_precision)
        if self.autocast is not None:
            self.model.to(memory_format=torch.channels_last)
        self.pixel_size_A = float(self.card["input"]["pixel_size_A"])
        self.crop_px = int(self.card["input"]["crop_px"])
        self.min_crop_px = int(self.card["input"].get("min_crop_px") or self.crop_px)

    def crop_for(self, shape_px: tuple[int, int]) -> int:
        """Crop side (px, at the model's pixel size) for an image of `shape_px` there: the full field,
        or the largest side that fits when the model was trained on smaller crops too (a multiple of 8)."""
        side = min(shape_px)
        if side >= self.crop_px:
            return self.crop_px
        if side < self.min_crop_px:
            raise ValueError(f"image of {shape_px[1]}x{shape_px[0]} px at the model's {self.pixel_size_A:g} Å/px "
                             f"is smaller than its smallest field ({self.min_crop_px} px = "
                             f"{self.min_crop_px * self.pixel_size_A:.1f} Å)")
        return side // 8 * 8 if side // 8 * 8 >= self.min_crop_px else side

    def tta_fields_px(self, shape_px: tuple[int, int], n: int) -> list[int]:
        """Crop sides (px, at the model's pixel size) averaged for one reading of an image of
        `shape_px` there: the field :meth:`crop_for` gives and, for a model trained on variable
        fields (``min_crop_px`` < ``crop_px``) reading an image that holds its full field, up to
        n − 1 smaller ones spaced evenly down to ⅔ of it, each floored to a multiple of 8
        (≥ ``min_crop_px``): 128 px → 128, 112, 96, 80. Two twist models read their own test sets
        (57 Å images) at MAE 0.67° and 0.73° from the full 51 Å field, 0.43° from the mean features of
        51, 46, 40 and 34 Å fields. Images smaller than the full field are read in the largest field
        only: on 20–46 Å independent images the smaller fields, holding fewer moiré periods, turned
        more 5–15° twists into 60° − θ (MAE 17.8° → 24.0°)."""
        c = self.crop_for(shape_px)
        lo = max(self.min_crop_px, int(round(c * 2 / 3)))
        out = [c]
        if n > 1 and lo < c and c == self.crop_px:
            for side in np.linspace(c, lo, n)[1:]:
                s = int(side) // 8 * 8
                if s >= self.min_crop_px and s not in out:
                    out.append(s)
        return out

    @staticmethod
    def crop_centres(shape_px: tuple[int, int], crop: int, n: int) -> np.ndarray:
        """(row, col) centres [M, 2], M ≤ n, of `crop`-px crops on an even grid spanning an image of
        `shape_px` (1: the image centre; 4: crops in the corners; 9: corners, edge midpoints and
        centre), sorted; positions that coincide (an image barely larger than the crop) are kept once.
        Inference's whole-image reading and :meth:`predict_features`' `tta_positions` both use it."""
        k = int(np.ceil(np.sqrt(n)))
        if k == 1:
            rs, cs = np.array([shape_px[0] // 2]), np.array([shape_px[1] // 2])
        else:
            rs = np.linspace(crop // 2, shape_px[0] - crop + crop // 2, k).astype(int)
            cs = np.linspace(crop // 2, shape_px[1] - crop + crop // 2, k).astype(int)
        centres = np.array([(r, q) for r in rs for q in cs])[: max(n, 1)]
        return np.unique(centres, axis=0)

    @staticmethod
    def crop_origins(shape_px: tuple[int, int], side: int, n: int) -> list[tuple[int, int]]:
        """Top-left corners (row, col) of the crops of :meth:`crop_centres`."""
        return [(int(r) - side // 2, int(c) - side // 2) for r, c in Regressor.crop_centres(shape_px, side, n)]

    @torch.no_grad()
    def predict_features(self, images: np.ndarray, pixel_size_A: float, batch: int = 32,
                         tta_rotations: int = 1, tta_fields: int = 1, tta_positions: int = 1,
                         tta_mirror: bool = False) -> np.ndarray:
        """Features [N, dim] for images [N, H, W] at `pixel_size_A` (Å/px): centre crops, the
        model's full field or the largest that fits (see :meth:`crop_for`); with `tta_rotations`
        (1, 2, 4) the features of that many quarter turns of each crop are averaged (labels do not
        change under rotation; the features are periodic, so the mean never crosses a cell edge),
        with `tta_fields` > 1 also those of smaller centred fields (:meth:`tta_fields_px`), with
        `tta_positions` > 1 those of crops at that many positions spanning the image
        (:meth:`crop_origins`; a uniform stacking's labels do not change under translation, like the
        whole-image reading of inference, which averages crops over the image). With `tta_mirror`,
        for a material whose projection has a mirror line (2H MX2; ignored for ReX2), each view is
        also read upside down, its features mapped back (:meth:`view_features`)."""
        turns = {1: [0], 2: [0, 2], 4: [0, 1, 2, 3]}[tta_rotations]
        crops: list[tuple[int, np.ndarray]] = []  # (image index, normalised crop)
        for i, img in enumerate(images):
            img = resample(np.asarray(img, np.float32), pixel_size_A, self.pixel_size_A)
            H, W = img.shape
            for c in self.tta_fields_px((H, W), tta_fields):
                for r0, c0 in self.crop_origins((H, W), c, tta_positions):
                    crops.append((i, normalize_unit(img[r0:r0 + c, c0:c0 + c])))
        total = np.zeros((len(images), self.codec.dim), np.float64)
        count = np.zeros(len(images))
        for side in {c.shape[0] for _, c in crops}:  # a batch holds one crop size
            idx = [j for j, (_, c) in enumerate(crops) if c.shape[0] == side]
            for j in range(0, len(idx), batch):
                part = idx[j:j + batch]
                f = self.view_features(np.stack([crops[q][1] for q in part]), turns, tta_mirror)
                owners = [crops[q][0] for q in part]
                np.add.at(total, owners, f)
                np.add.at(count, owners, 1)
        return (total / count[:, None]).astype(np.float32)

    @torch.no_grad()
    def view_features(self, crops: np.ndarray, turns: Sequence[int], mirror: bool = False) -> np.ndarray:
        """Features [B, dim] of normalised crops [B, H, W], each the mean over its quarter turns
        `turns` and, with `mirror` for a material whose projection has a mirror line, over its
        upside-down flip's turns as well, mapped back (:meth:`TargetCodec.mirrored_features`)."""
        views = [crops, crops[:, ::-1]] if mirror and self.codec.has_mirror else [crops]
        x = np.stack([np.rot90(v, k, axes=(1, 2)) for v in views for k in turns], axis=1)  # [B, V, H, W]
        x = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 1, *crops.shape[1:]))).to(self.device)
        f = self.batch_features(x).cpu().numpy().reshape(len(crops), len(views), len(turns), -1).mean(axis=2)
        if len(views) == 2:  # the flipped views read the mirrored stack
            f[:, 1] = self.codec.mirrored_features(f[:, 1])
        return f.mean(axis=1)

    @torch.no_grad()
    def batch_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features [N, dim] (fp32) of a batch [N, 1, H, W]."""
        if self.autocast is None:
            return self.model(x).float()
        m = self.model
        with torch.autocast(x.device.type, dtype=self.autocast):
            h = m.maxpool(m.relu(m.bn1(m.conv1(x.contiguous(memory_format=torch.channels_last)))))
            h = m.layer4(m.layer3(m.layer2(m.layer1(h))))
        # fp32 pooling and head: a bf16 head would round the features to ~0.4 %.
        return m.fc(torch.flatten(m.avgpool(h.float()), 1))

    def predict(self, images: np.ndarray, pixel_size_A: float, tta_rotations: int = 1,
                tta_fields: int = 1, tta_positions: int = 1, tta_mirror: bool = False) -> dict[str, np.ndarray]:
        """Decoded labels (arrays [N]) of images [N, H, W]; see :meth:`predict_features`."""
        return self.codec.decode(self.predict_features(images, pixel_size_A, tta_rotations=tta_rotations,
                                                       tta_fields=tta_fields, tta_positions=tta_positions,
                                                       tta_mirror=tta_mirror))


def decoding_weights(reg: Regressor, images: np.ndarray, pixel_size_A: float, labels: Mapping[str, np.ndarray],
                     n_max: int = 256, seed: int = 0) -> dict:
    """The `decoding` block of a slip model's card: per-feature weights 1 / (mean squared residual)
    of the network's features on up to `n_max` of the labelled `images` [N, H, W] (Å/px
    `pixel_size_A`; the centre crop in 4 quarter turns), normalised to mean 1.

    A network reads the encoding's high-order features with 2-5x the error of the low ones (the
    CPU-hour models' residual r.m.s.: MoS2 0.13-0.31 over 42 features, ReS2 0.03-0.15 over 24, the
    trilayer 0.05-0.23 over 108); weighting each by its inverse variance is the maximum-likelihood
    decoding for independent Gaussian errors (that MoS2 model's test grid: 0.094 -> 0.088 Å). The
    weights barely depend on how the images are read (log-variance correlation 0.997 between a
    single crop and 64 views)."""
    if reg.codec.task != "slip":
        raise ValueError("decoding weights are for slip models")
    n = len(images)
    idx = np.sort(np.random.default_rng(seed).choice(n, min(n, n_max), replace=False))
    targets = reg.codec.encode({k: np.asarray(labels[k])[idx] for k in slip_keys(reg.codec.layers)})
    feats = reg.predict_features(np.asarray(images)[idx], pixel_size_A, tta_rotations=4)
    var = np.maximum(((feats - targets) ** 2).mean(axis=0), 1e-8)
    w = 1 / var
    return {"feature_weights": (w / w.mean()).tolist(), "residual_rms": np.sqrt(var).tolist(),
            "method": "1 / mean squared feature residual on training images (centre crop, 4 quarter turns)",
            "n_images": int(len(idx))}


def find_model(models: str | Path, task: str, material: str, layers: int = 2) -> Path | None:
    """The model folder for `task` and `material` under `models` (``results/models`` of a run, or
    one model folder); None when none was trained for them (the reading then comes from the
    physics search alone). Among several slip models of the material, the finest training grid wins.
    A single model folder for another task or material is an error naming it."""
    models = Path(models)
    if (models / "card.json").exists():
        enc = json.loads((models / "card.json").read_text()).get("encoding", {})
        if enc.get("task") != task or enc.get("material") != material:
            raise ValueError(f"{models}: this model reads {enc.get('task')} of {enc.get('material')}, "
                             f"not {task} of {material}")
        return models
    cands = []
    for card_path in sorted((models / task).glob("*/card.json")) + sorted(models.glob("*/card.json")):
        card = json.loads(card_path.read_text())
        enc = card.get("encoding", {})
        if enc.get("task") == task and enc.get("material") == material and (task == "twist" or enc.get("layers") == layers):
            step = (card.get("training") or {}).get("slip_step_A") or 0.0
            cands.append((step, str(card_path.parent)))
    return Path(min(cands)[1]) if cands else None

