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
    # The options' own names in the errors (stacking_row checks the same in its keywords' names).
    if args.pixel_size <= 0:
        raise SystemExit(f"--pixel-size must be > 0 Å, got {args.pixel_size}")
    if args.size < 16:
        raise SystemExit(f"--size must be ≥ 16 pixels, got {args.size}")
    from vdwstack.simulate.render import stacking_row

    row = stacking_row(args.material, layers=args.layers, slip_A=args.slip or (0.0, 0.0), slip2_A=args.slip2,
                       twist_deg=args.twist or 0.0, rotation_deg=args.rotation, pixel_size_A=args.pixel_size,
                       size_px=args.size, seed=args.seed,
                       microscope={k: getattr(args, k) for k in MICROSCOPE_DEFAULTS})
    row["sample_id"] = "cli"
    return row


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


def brief_record(reading: dict, output: Path) -> dict:
    """The flat summary ``vdwstack infer --json`` prints: the final values under the keys of the
    per-task record (Da_A, Db_A, theta_deg, uncertainty_A/_deg, agreement, source, mirrored), the
    network's values as network_*; with two tasks the twist's agreement, source and hand get a
    ``twist_`` prefix."""
    brief = {"image": reading["path"], "status": reading["status"], "pixel_size_A": reading.get("pixel_size_A"),
             "pixel_size_source": reading.get("pixel_size_source"), "signal": reading.get("signal"),
             "output": str(output)}
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
            drift = r.get("twist_from_slip_map")
            if drift:  # a bilayer's small twist, from its slip map's drift
                brief.update(slip_map_twist_deg=drift["theta_deg"], slip_map_twist_sigma_deg=drift["sigma_deg"],
                             slip_map_twist_lower_bound=drift["lower_bound"])
    if reading.get("message"):
        brief["message"] = reading["message"]
    return brief


def _expand_inputs(items: list[str]) -> list[Path]:
    """Image paths from the command line: files, folders (their images, sorted) and quoted glob
    patterns (expanded here, as a shell would)."""
    import glob

    from vdwstack.core.images import FORMATS

    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in FORMATS or p.suffix.lower() == ".zspy")
        elif not path.exists() and glob.has_magic(item):
            hits = sorted(glob.glob(item))
            if not hits:
                raise FileNotFoundError(f"{item}: no file matches this pattern")
            out += [Path(h) for h in hits]
        else:
            out.append(path)  # a missing file is reported as that image's failure
    return list(dict.fromkeys(out))


def _output_folders(images: list[Path], out: Path) -> dict[Path, Path]:
    """One folder per image under `out`, named after the file (a.dm4 → out/a); further inputs with
    the same name (dir2/a.tif, a.emd) get a number (out/a_2, out/a_3) in the order given."""
    folders: dict[Path, Path] = {}
    taken: set[str] = set()
    for img in images:
        name = img.stem if img.suffix.lower() != ".zspy" else img.name[:-5]
        for cand in (name, *(f"{name}_{i}" for i in range(2, 10**6))):
            if cand not in taken:
                taken.add(cand)
                folders[img] = out / cand
                break
    return folders


def _write_summary(rows: list[dict], path: Path) -> None:
    import os

    import pandas as pd

    tmp = path.with_suffix(".tsv.partial")
    pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    os.replace(tmp, path)


def _print_reading(reading: dict) -> None:
    from tqdm import tqdm

    from vdwstack.report.tables import reading_text

    for t, r in reading.get("results", {}).items():
        net = r.get("network")
        tqdm.write(f"{reading['path']}: {t}: {reading_text(r, t) or 'no reading'} — {r['verdict']}; source "
                   f"{r['source']}{', mirror lattice' if r.get('mirrored') else ''}; network: "
                   f"{reading_text(net, t) if net else 'no model'}")
        for w in r.get("warnings", []):
            tqdm.write(f"  warning: {w}")
    if reading["status"] != "ok":
        tqdm.write(f"{reading['path']}: {reading['status']}: {reading.get('message') or reading.get('error')}")


def read_one(image: Path, args, out: Path) -> dict:
    """infer + closed_loop of one image into `out`; the final record (status "error" when it failed:
    the message names the file)."""
    from vdwstack.closed_loop.stage import closed_loop_to_files
    from vdwstack.infer.stage import infer_to_files, tasks_of
    from vdwstack.regress.model import find_model

    try:
        models = {t: find_model(args.models, t, args.material, args.layers) if args.models else None
                  for t in tasks_of(args.task)}
    except (ValueError, OSError) as e:
        return {"path": str(image), "status": "error", "error": f"{type(e).__name__}: {e}"}
    # Unset options keep the --config file's blocks, else the settings' defaults (the workflow's).
    blocks = args.settings_blocks
    settings = {**(blocks.get("infer") or {}),
                **{k: v for k, v in (("window_A", args.window), ("stride_A", args.stride)) if v is not None}}
    rec = infer_to_files(image, image.stem, args.material, args.layers, args.task, args.pixel_size, models,
                         settings, out, on_error="record", pixel_size_source="user", signal=args.signal)
    reading = closed_loop_to_files(image, out / "result.json", out / "maps.npz", blocks.get("closed_loop"), out,
                                   blocks.get("microscope"))
    if rec["status"] == "error":  # the image could not be read: the closed loop only says it skipped it
        reading = {**reading, "status": "error", "error": rec["error"]}
    return reading


def cmd_infer(args) -> int:
    """Every image in turn (a progress bar over images): one folder each under --out and one
    summary.tsv; a failing image is listed there and the others go on; exit status 1 if any
    image has no final reading."""
    import json

    import torch
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from vdwstack.structures.materials import get_material

    get_material(args.material)  # before any image: an unknown material fails once, naming it
    if args.models is None:
        default = Path("results/models")
        args.models = default if default.is_dir() else None
        if args.models is None:
            logging.getLogger("vdwstack").warning("no results/models here and no --models: the readings come "
                                                  "from the physics search alone")
    elif not args.models.exists():
        raise FileNotFoundError(f"--models: {args.models}: no such folder (results/models of a workflow run "
                                f"or one model folder)")
    from vdwstack.config import inference_blocks

    args.settings_blocks = inference_blocks(args.config) if args.config is not None else {}
    torch.set_num_threads(args.threads)
    images = _expand_inputs(args.images)
    if not images:
        raise ValueError("no images given")
    out_root = args.out if args.out is not None else Path.cwd() / "vdwstack_results"
    out_root.mkdir(parents=True, exist_ok=True)
    folders = _output_folders(images, out_root)
    summary, failed = [], 0
    with logging_redirect_tqdm():
        for image in tqdm(images, desc="images", unit="image", disable=len(images) < 2):
            reading = read_one(image, args, folders[image])
            brief = brief_record(reading, folders[image])
            summary.append(brief)
            _write_summary(summary, out_root / "summary.tsv")  # after every image: a crash loses nothing done
            failed += reading["status"] != "ok"
            if args.json:
                print(json.dumps(brief), flush=True)
            else:
                _print_reading(reading)
    if not args.json:
        print(f"{len(images) - failed} of {len(images)} image(s) read; results in {out_root}/ "
              f"(summary.tsv){'; failed: ' + ', '.join(str(s['image']) for s in summary if s['status'] != 'ok') if failed else ''}")
    return 1 if failed else 0


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

    p = sub.add_parser("infer", help="slip / twist of experimental images: the stacking that reproduces each best")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (TIFF, PNG/JPEG, DM3/DM4, EMD, SER, MRC, .hspy, .zspy), folders of them "
                        "or quoted glob patterns")
    p.add_argument("--material", required=True)
    p.add_argument("--task", choices=("slip", "twist", "both"), required=True)
    p.add_argument("--layers", type=int, default=2, choices=(2, 3))
    p.add_argument("--pixel-size", type=float, default=None, metavar="A",
                   help="Å/px; wins over the file's calibration (a warning when they differ by > 2 %%); "
                        "without either, estimated from the Bragg spots")
    p.add_argument("--models", type=Path, default=None,
                   help="results/models of a workflow run, or one model folder (default: results/models when "
                        "it exists; without models the readings come from the physics search alone)")
    p.add_argument("--window", type=float, default=None, metavar="A",
                   help=f"map window in Å (default {InferenceSettings.window_A:g}, as the workflow)")
    p.add_argument("--stride", type=float, default=None, metavar="A",
                   help=f"map stride in Å (default {InferenceSettings.stride_A:g}, as the workflow)")
    p.add_argument("--config", type=Path, default=None, metavar="YAML",
                   help="a workflow config whose infer, closed_loop and microscope blocks to use (e.g. "
                        "config/config.yaml of the run that trained the models)")
    p.add_argument("--signal", default=None,
                   help="files with several signals (e.g. HAADF, DF, BF): the title or index of the one to "
                        "read (default: the HAADF/ADF signal)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder: one subfolder per image and summary.tsv (default: ./vdwstack_results; "
                        "never the images' own folder)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print each image's result as one line of JSON")
    p.set_defaults(func=cmd_infer)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"vdwstack {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
