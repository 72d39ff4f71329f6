"""DRIT ablation: train with each enhancement switched off in turn; metrics side by side.

Run:  .venv/bin/python benchmarks/drit_ablation.py [--iterations 300] [--out benchmarks/drit_ablation.json]
Needs the demo's simulations and style reference (`make run` first). Writes JSON and prints a
Markdown table. Each variant trains from scratch in its own folder under results/ablation/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from vdwstack.drit.stage import train_drit

VARIANTS = {
    "all enhancements": {},
    "no content preservation": {"content_preservation": False},
    "no lattice consistency": {"lattice_consistency": False},
    "no few-image augmentation": {"few_image_augmentation": False},
    "plain DRIT (none)": {"content_preservation": False, "lattice_consistency": False, "few_image_augmentation": False},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--out", default="benchmarks/drit_ablation.json")
    args = ap.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    drit = {k: v for k, v in config["drit"].items() if k not in ("dataset", "eval_images")}
    if args.iterations:
        drit["iterations"] = args.iterations
        drit["lr_decay_start"] = args.iterations // 2
    sims = f"results/simulations/{config['drit']['dataset']}.zarr"
    results = {}
    for name in args.variants:
        t0 = time.perf_counter()
        out = Path("results/ablation") / name.replace(" ", "_").replace("(", "").replace(")", "")
        metrics = train_drit(sims, config["style_references"], {**drit, **VARIANTS[name]}, out,
                             eval_images=config["drit"].get("eval_images", 12), progress=False)
        metrics["train_seconds"] = time.perf_counter() - t0
        results[name] = metrics
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"done: {name} ({metrics['train_seconds']:.0f} s)", flush=True)
    print("| variant | PS dist. sim→exp | PS dist. trans→exp | hist. sim→exp | hist. trans→exp | column disp. mean (Å) | slip change mean (Å) | ≤0.05 Å |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m in results.items():
        sd = m["style_distance"]
        bs = m.get("bragg_slip", {})
        print(f"| {name} | {sd['simulation_to_experiment']['power_spectrum']:.3f} | {sd['translation_to_experiment']['power_spectrum']:.3f} "
              f"| {sd['simulation_to_experiment']['histogram']:.3f} | {sd['translation_to_experiment']['histogram']:.3f} "
              f"| {m['content_fidelity']['column_displacement_mean_A']:.3f} | {bs.get('change_mean_A', float('nan')):.3f} "
              f"| {100 * bs.get('within_0.05_A', float('nan')):.0f} % |")


if __name__ == "__main__":
    main()
