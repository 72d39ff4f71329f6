"""Small builders shared by the tests."""

import re
from pathlib import Path

from vdwstack.core.microscope import MICROSCOPE_DEFAULTS

RULES_DIR = Path(__file__).resolve().parents[1] / "workflow" / "rules"


def rule_blocks() -> list[tuple[Path, str, str]]:
    """(rule file, rule name, the rule's text up to the next rule) for every rule of the workflow."""
    out = []
    for smk in sorted(RULES_DIR.glob("*.smk")):
        for block in re.split(r"^(?=rule )", smk.read_text(), flags=re.M)[1:]:
            out.append((smk, re.match(r"rule (\w+):", block).group(1), block))
    return out


def make_row(material="MoS2", size=128, pixel_size_A=0.1, **kw):
    row = dict(
        sample_id="t", material=material, layers=2, Da_A=0.0, Db_A=0.0, Da2_A=0.0, Db2_A=0.0,
        theta_deg=0.0, rotation_deg=0.0, origin_x_A=size * pixel_size_A / 2, origin_y_A=size * pixel_size_A / 2,
        pixel_size_A=pixel_size_A, height_px=size, width_px=size, seed=7, **MICROSCOPE_DEFAULTS,
    )
    row.update(kw)
    return row


def untrained_model(folder, task, material, crop=48, pixel_size_A=0.12, layers=2):
    """An untrained but complete model folder under `folder` (inference plumbing does not need a
    good model)."""
    import torch

    from vdwstack.regress.model import TargetCodec, build_resnet, export_regressor

    torch.manual_seed(0)
    codec = TargetCodec(task, material, layers)
    net = build_resnet("resnet18", codec.dim)
    out = folder / f"{task}_{material}"
    out.mkdir(parents=True)
    card = {"architecture": "resnet18", "task": task, "encoding": codec.to_dict(),
            "input": {"channels": 1, "crop_px": crop, "pixel_size_A": pixel_size_A},
            "training": {"dataset": "none", "slip_step_A": 0.5 if task == "slip" else None}}
    export_regressor(net.eval(), out, card)
    return out
