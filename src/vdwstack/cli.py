"""The ``vdwstack`` command: single images and structures without Snakemake."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from vdwstack.core.errors import ConfigError
from vdwstack.core.microscope import MICROSCOPE_DEFAULTS
from vdwstack.infer.settings import InferenceSettings
from vdwstack.simulate.multislice import MultisliceSettings
from vdwstack.simulate.render import METHODS, SimulationSettings
from vdwstack.structures.enumeration import sample_seed
from vdwstack.structures.materials import MATERIALS


def _add_stack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--material", choices=sorted(MATERIALS), help="monolayer material")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--slip", nargs=2, type=float, metavar=("DA", "DB"), help="slip (Da, Db) in Å along â, b̂")
    g.add_argument("--twist", type=float, metavar="DEG", help="twist of layer 2 in degrees")
    p.add_argument("--slip2", nargs=2, type=float, metavar=("DA2", "DB2"), default=(0.0, 0.0),
                   help="slip of layer 3 relative to layer 2 (Å), trilayers")
    p.add_argument("--layers", type=int, default=2, choices=(1, 2, 3))
    p.add_argument("--rotation", type=float, default=0.0, metavar="DEG", help="in-plane rotation of the stack")
    p.add_argument("--pixel-size", type=float, default=0.1, metavar="A", help="pixel size in Å/px")
    p.add_argument("--size", type=int, default=256, metavar="N", help="image size in pixels (N×N)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table", type=Path, help="stackings table (TSV) to take the sample from")
    p.add_argument("--sample", help="sample_id of the row in --table")
    for k, v in MICROSCOPE_DEFAULTS.items():
        p.add_argument("--" + k.replace("_", "-"), type=float, default=v, dest=k, help=f"(default {v:g})")


def _row_from_args(args) -> dict:
    if args.table is not None:
        from vdwstack.structures.enumeration import read_table

        table = read_table(args.table)
        if args.sample is None:
            raise SystemExit("--table needs --sample SAMPLE_ID")
        hit = table[table["sample_id"] == args.sample]
        if hit.empty:
            raise SystemExit(f"{args.table}: no sample {args.sample!r}")
        return hit.iloc[0].to_dict()
    if args.material is None:
        raise SystemExit("give --material (or --table and --sample)")
    if args.pixel_size <= 0:
        raise SystemExit(f"--pixel-size must be > 0 Å, got {args.pixel_size}")
    if args.size < 16:
        raise SystemExit(f"--size must be ≥ 16 pixels, got {args.size}")
    da, db = args.slip if args.slip else (0.0, 0.0)
    extent = args.size * args.pixel_size
    return {
        "sample_id": "cli", "material": args.material, "layers": args.layers,
        "Da_A": da, "Db_A": db, "Da2_A": args.slip2[0], "Db2_A": args.slip2[1],
        "theta_deg": args.twist or 0.0, "rotation_deg": args.rotation,
        "origin_x_A": extent / 2, "origin_y_A": extent / 2,
        "pixel_size_A": args.pixel_size, "height_px": args.size, "width_px": args.size,
        "seed": sample_seed(args.seed, "cli", 0),
        **{k: getattr(args, k) for k in MICROSCOPE_DEFAULTS},
    }


def cmd_simulate(args) -> None:
    from vdwstack.core.io import write_tiff
    from vdwstack.simulate.render import simulate_row

    row = _row_from_args(args)
    settings = SimulationSettings(method=args.method, multislice=MultisliceSettings(
        potential_sampling_A=args.potential_sampling, frozen_phonons=args.frozen_phonons))
    image = simulate_row(row, settings, workers=args.threads)
    meta = {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v) for k, v in row.items()}
    meta["method"] = args.method
    write_tiff(args.out, image, float(row["pixel_size_A"]), meta)
    print(f"wrote {args.out} ({image.shape[0]}x{image.shape[1]} px, {row['pixel_size_A']} Å/px)")


def cmd_structure(args) -> None:
    from ase.io import write

    from vdwstack.simulate.render import sample_atoms

    row = _row_from_args(args)
    atoms = sample_atoms(row)
    suffix = args.out.suffix.lower()
    if suffix not in (".cif", ".xyz", ".extxyz"):
        raise SystemExit(f"--out must end in .cif or .xyz, got {args.out}")
    atoms.info.pop("region_A", None)
    write(args.out, atoms, format="extxyz" if suffix in (".xyz", ".extxyz") else "cif")
    print(f"wrote {args.out} ({len(atoms)} atoms)")


def cmd_structures(args) -> None:
    import yaml

    from vdwstack.structures.enumeration import enumerate_from_config, write_table

    config = yaml.safe_load(args.config.read_text())
    table = enumerate_from_config(config, args.dataset)
    write_table(table, args.out)
    print(f"wrote {args.out} ({len(table)} samples)")


def _find_model(models: Path, task: str, material: str, layers: int) -> Path | None:
    """The model folder under `models` (results/models or one model folder) for task + material;
    None when there is none (the reading then comes from the physics search alone).

    Among several slip models of the material, the one trained on the finest grid wins.
    """
    import json

    if (models / "card.json").exists():
        return models
    cands = []
    for card_path in sorted((models / task).glob("*/card.json")) + sorted(models.glob("*/card.json")):
        card = json.loads(card_path.read_text())
        enc = card.get("encoding", {})
        if enc.get("task") == task and enc.get("material") == material and (task == "twist" or enc.get("layers") == layers):
            step = (card.get("training") or {}).get("slip_step_A") or 0.0
            cands.append((step, str(card_path.parent)))
    return Path(min(cands)[1]) if cands else None


def brief_record(reading: dict, output: Path) -> dict:
    """The flat summary ``vdwstack infer --json`` prints: the final values under the keys of the
    per-task record (Da_A, Db_A, theta_deg, uncertainty_A/_deg, agreement, source, mirrored), the
    network's values as network_*; with two tasks the twist's agreement, source and hand get a
    ``twist_`` prefix."""
    brief = {"image": reading["path"], "status": reading["status"], "pixel_size_A": reading.get("pixel_size_A"),
             "pixel_size_source": reading.get("pixel_size_source"), "output": str(output)}
    if reading["status"] in ("error", "skipped"):
        brief["error"] = reading.get("error") or reading.get("message")
        return brief
    for t, r in reading["results"].items():
        pre = "twist_" if t == "twist" and len(reading["results"]) > 1 else ""
        brief.update({k: r[k] for k in ("Da_A", "Db_A", "Da2_A", "Db2_A", "theta_deg", "uncertainty_A",
                                        "uncertainty_deg") if k in r})
        brief.update({f"{pre}{k}": r[k] for k in ("agreement", "source", "mirrored", "verdict")})
        net = r.get("network") or {}
        brief.update({f"network_{k}": net[k] for k in ("Da_A", "Db_A", "Da2_A", "Db2_A", "theta_deg") if k in net})
        if t == "slip":
            brief["n_domains"] = len(r.get("domains", []))
    if reading.get("message"):
        brief["message"] = reading["message"]
    return brief


def cmd_infer(args) -> None:
    import json

    import torch

    from vdwstack.closed_loop.stage import closed_loop_to_files
    from vdwstack.infer.stage import infer_to_files, tasks_of

    torch.set_num_threads(args.threads)
    models = {t: _find_model(args.models, t, args.material, args.layers) for t in tasks_of(args.task)}
    out = args.out or Path(args.image).with_suffix("").with_name(Path(args.image).stem + "_vdwstack")
    # Unset options keep InferenceSettings' defaults: the workflow's (config/config.yaml's infer block).
    settings = {k: v for k, v in (("window_A", args.window), ("stride_A", args.stride)) if v is not None}
    infer_to_files(args.image, Path(args.image).stem, args.material, args.layers, args.task, args.pixel_size,
                   models, settings, out, on_error="raise", pixel_size_source="user")
    reading = closed_loop_to_files(args.image, out / "result.json", out / "maps.npz", None, out)
    if args.json:
        print(json.dumps(brief_record(reading, out), indent=1))
    elif reading["status"] in ("error", "skipped"):
        raise ValueError(reading.get("error") or reading.get("message"))
    else:
        from vdwstack.report.tables import reading_text

        for t, r in reading["results"].items():
            net = r.get("network")
            print(f"{args.image}: {t}: {reading_text(r, t) or 'no reading'} — {r['verdict']}; source {r['source']}"
                  f"{', mirror lattice' if r.get('mirrored') else ''}; network: "
                  f"{reading_text(net, t) if net else 'no model'}")
            for w in r["warnings"]:
                print(f"  warning: {w}")
        print(f"pixel size {reading['pixel_size_A']:.4f} Å/px ({reading['pixel_size_source']}); results in {out}/")
    if reading["status"] != "ok":
        raise ValueError(reading.get("message") or reading.get("error"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vdwstack", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="render one clean ADF-STEM image to a TIFF")
    _add_stack_args(p)
    p.add_argument("--method", choices=METHODS, default=SimulationSettings.method)
    p.add_argument("--potential-sampling", type=float, default=MultisliceSettings.potential_sampling_A, metavar="A",
                   help="multislice/PRISM potential sampling in Å")
    p.add_argument("--frozen-phonons", type=int, default=MultisliceSettings.frozen_phonons)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True, help="output .tif")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("structure", help="write the atoms of one stacking to .cif or .xyz")
    _add_stack_args(p)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_structure)

    p = sub.add_parser("structures", help="enumerate one dataset of a config into a table")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_structures)

    p = sub.add_parser("infer", help="slip / twist of one experimental image: the stacking that reproduces it best")
    p.add_argument("image", type=Path, help="TIFF, PNG/JPEG, DM3/DM4, EMD, SER or MRC")
    p.add_argument("--material", required=True)
    p.add_argument("--task", choices=("slip", "twist", "both"), required=True)
    p.add_argument("--layers", type=int, default=2, choices=(2, 3))
    p.add_argument("--pixel-size", type=float, default=None, metavar="A",
                   help="Å/px; wins over the file's calibration (a warning when they differ by > 2 %%); "
                        "without either, estimated from the Bragg spots")
    p.add_argument("--models", type=Path, default=Path("results/models"),
                   help="results/models of a workflow run, or one model folder")
    p.add_argument("--window", type=float, default=None, metavar="A",
                   help=f"map window in Å (default {InferenceSettings.window_A:g}, as the workflow)")
    p.add_argument("--stride", type=float, default=None, metavar="A",
                   help=f"map stride in Å (default {InferenceSettings.stride_A:g}, as the workflow)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: next to the image)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_infer)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        args.func(args)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"vdwstack {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
