"""ResNet regressors of slip (Da, Db) and twist θ with symmetry-invariant periodic targets.

The network sees 1-channel images at the model's pixel size (inputs at other pixel sizes are
rescaled) and predicts the features of :mod:`vdwstack.regress.encoding`; decoding gives canonical
slips in Å or folded twists in degrees. Trilayers predict the features of both slips side by side.
This module holds what a trained model is (targets, network, files); training is in
:mod:`vdwstack.regress.training`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vdwstack.core.images import normalize_unit
from vdwstack.core.resample import resample
from vdwstack.regress.encoding import SlipEncoding, TwistEncoding

ARCHITECTURES = ("resnet18", "resnet34", "resnet50")


class TargetCodec:
    """Labels ↔ network targets for one task, material and number of layers."""

    def __init__(self, task: str, material: str, layers: int = 2):
        self.task, self.material, self.layers = task, material, layers
        if task == "slip":
            self.slip = SlipEncoding(material)
            self.dim = self.slip.dim * (2 if layers == 3 else 1)
        else:
            self.twist = TwistEncoding(material)
            self.dim = self.twist.dim

    def encode(self, labels: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.task == "twist":
            return self.twist.encode(np.asarray(labels["theta_deg"]))
        f = self.slip.encode(np.asarray(labels["Da_A"]), np.asarray(labels["Db_A"]))
        if self.layers == 3:
            f = np.concatenate([f, self.slip.encode(np.asarray(labels["Da2_A"]), np.asarray(labels["Db2_A"]))], -1)
        return f

    def decode(self, features: np.ndarray) -> dict[str, np.ndarray]:
        if self.task == "twist":
            return {"theta_deg": self.twist.decode(features)}
        d = self.slip.dim
        da, db = self.slip.decode(features[..., :d])
        out = {"Da_A": da, "Db_A": db}
        if self.layers == 3:
            out["Da2_A"], out["Db2_A"] = self.slip.decode(features[..., d:])
        return out

    def to_dict(self) -> dict:
        enc = {"type": "cos(2π (R g)·D) averaged over the slip group", "g_vectors_per_A": self.slip.g_vectors.tolist()} \
            if self.task == "slip" else {"type": "cos(2π n θ / P)", "harmonics": self.twist.harmonics,
                                         "period_deg": self.twist.sym.twist_period_deg}
        return {"task": self.task, "material": self.material, "layers": self.layers, "dim": self.dim, **enc}


def build_resnet(architecture: str, out_dim: int) -> nn.Module:
    """torchvision ResNet for 1-channel input with a linear head of `out_dim` outputs."""
    import torchvision

    net = getattr(torchvision.models, architecture)(weights=None)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Linear(net.fc.in_features, out_dim)
    return net



def export_regressor(model: nn.Module, out_dir: str | Path, card: Mapping) -> None:
    from safetensors.torch import save_file

    out = Path(out_dir)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "card.json").write_text(json.dumps(dict(card), indent=2, default=str))


class Regressor:
    """A trained model with its card: predicts labels from images at any pixel size."""

    def __init__(self, model_dir: str | Path, device: str = "cpu"):
        from safetensors.torch import load_file

        model_dir = Path(model_dir)
        self.card = json.loads((model_dir / "card.json").read_text())
        enc = self.card["encoding"]
        self.codec = TargetCodec(enc["task"], enc["material"], enc["layers"])
        self.model = build_resnet(self.card["architecture"], self.codec.dim)
        self.model.load_state_dict(load_file(str(model_dir / "model.safetensors")))
        self.model.eval().to(device)
        self.device = device
        self.pixel_size_A = float(self.card["input"]["pixel_size_A"])
        self.crop_px = int(self.card["input"]["crop_px"])

    @torch.no_grad()
    def predict_features(self, images: np.ndarray, pixel_size_A: float, batch: int = 32) -> np.ndarray:
        """Features for images [N, H, W] (any size ≥ the crop after rescaling): centre crop."""
        out = []
        for i in range(0, len(images), batch):
            xs = []
            for img in images[i:i + batch]:
                img = np.asarray(img, np.float32)
                img = resample(img, pixel_size_A, self.pixel_size_A)
                H, W = img.shape
                if min(H, W) < self.crop_px:
                    raise ValueError(f"image of {H}x{W} px at the model's pixel size is smaller than {self.crop_px} px")
                r0, c0 = (H - self.crop_px) // 2, (W - self.crop_px) // 2
                xs.append(normalize_unit(img[r0:r0 + self.crop_px, c0:c0 + self.crop_px]))
            x = torch.from_numpy(np.stack(xs)[:, None]).to(self.device)
            out.append(self.model(x).float().cpu().numpy())
        return np.concatenate(out)

    def predict(self, images: np.ndarray, pixel_size_A: float) -> dict[str, np.ndarray]:
        return self.codec.decode(self.predict_features(images, pixel_size_A))
