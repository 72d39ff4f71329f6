"""The evaluate stage: the paper's protocol for slip, twist MAE vs θ with the FFT baseline,
robustness curves. Results as JSON + PNG figures."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vdwstack.core.io import open_image_dataset
from vdwstack.regress.encoding import ALIGNMENT_EVIDENCE_MIN, TwistEncoding
from vdwstack.regress.model import Regressor
from vdwstack.simulate.degrade import Degradation, degrade
from vdwstack.structures.geometry import slip_keys
from vdwstack.structures.reciprocal import fft_twist_deg
from vdwstack.structures.symmetry import symmetry_for

log = logging.getLogger(__name__)


def _stats(err: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(err)), "median": float(np.median(err)), "p95": float(np.percentile(err, 95)),
            "max": float(np.max(err)), "n": int(len(err))}


def _load_test_set(test_zarr: str | Path):
    """(labels, material, symmetry, pixel size in Å, images) of a test dataset."""
    root, labels = open_image_dataset(test_zarr)
    material = root.attrs["material"][0]
    return labels, material, symmetry_for(material), float(root.attrs["pixel_size_A"]), root["images"][:]


def slip_errors_A(sym, pred: Mapping, truth: Sequence[np.ndarray]) -> np.ndarray:
    """ΔD (Å) of predictions {Da_A, Db_A[, Da2_A, Db2_A]} against true arrays in the same order;
    trilayers: the larger slip error, over the pair's equivalences (joint rotation, any order of the
    layers along the beam: the networks' targets do not hold the order, the closed loop fits it)."""
    if len(truth) == 4:
        return sym.trilayer_slip_error_A([pred[k] for k in slip_keys(3)], truth, any_order=True)
    return sym.slip_error_A(pred["Da_A"], pred["Db_A"], *truth)


def constant_slip_baseline(sym, *truth: np.ndarray) -> np.ndarray:
    """ΔD of the best constant prediction (the 'predict the mean' baseline under the ΔD metric)."""
    cand_a, cand_b = sym.slip_grid(0.05 if len(truth) == 2 else 0.5)
    cands = [(a, b) for a, b in zip(cand_a, cand_b)]
    if len(truth) == 4:  # pairs of slips on a coarse grid
        cands = [(a, b, c, d) for a, b in cands for c, d in cands]
    best = np.inf
    for c in cands:
        e = slip_errors_A(sym, dict(zip(slip_keys(3 if len(truth) == 4 else 2), c)), truth)
        if e.mean() < best:
            best, keep = e.mean(), e
    return keep


def evaluate_slip(models: Mapping[str, str | Path], test_zarr: str | Path, out_dir: str | Path,
                  noise_levels: Sequence[float] = (0.0, 0.1, 0.3, 0.6),
                  contamination_blobs: Sequence[float] = (0, 1, 3, 6), seed: int = 0,
                  name: str = "slip", tta_rotations: int = 4, tta_fields: int = 4, tta_positions: int = 4,
                  tta_mirror: bool = False) -> dict:
    """ΔD statistics of each slip model on a held-out generated test set, box plot, robustness.

    The headline statistics read each image as inference reads a whole image: crops at
    `tta_positions` places spanning it, each in `tta_rotations` quarter turns and, for a model
    trained on variable fields, `tta_fields` fields; features averaged (see
    :meth:`Regressor.predict_features`), each crop also mirrored with `tta_mirror` (lattices with a
    mirror line; the workflow passes ``infer.tta_mirror``, so the headline is the reading inference
    gives). ``centre_crop`` gives the centre crop in its quarter turns (and mirror),
    ``single_crop`` one unrotated crop; the robustness curves use single crops (they compare
    conditions, not reading procedures).

    Writes `<name>.json`, `<name>_boxplot.png` and `<name>_robustness.png` into `out_dir`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels, material, sym, p, imgs = _load_test_set(test_zarr)
    layers = int(labels["layers"].iloc[0]) if "layers" in labels else 2
    truth = [labels[k].to_numpy() for k in slip_keys(layers)]
    result = {"material": material, "layers": layers, "test_set": str(test_zarr), "n_test": int(len(imgs)),
              "models": {}}
    result["baseline_constant"] = _stats(constant_slip_baseline(sym, *truth))
    errors = {}
    rng = np.random.default_rng(seed)
    for label, model_dir in models.items():
        reg = Regressor(model_dir)
        err = slip_errors_A(sym, reg.predict(imgs, p, tta_rotations=tta_rotations, tta_fields=tta_fields,
                                             tta_positions=tta_positions, tta_mirror=tta_mirror), truth)
        centre = slip_errors_A(sym, reg.predict(imgs, p, tta_rotations=tta_rotations, tta_fields=tta_fields,
                                                tta_mirror=tta_mirror), truth)
        single_pred = reg.predict(imgs, p)
        single = slip_errors_A(sym, single_pred, truth)
        errors[label] = err
        entry = {"train_step_A": reg.card.get("training", {}).get("slip_step_A"), "tta_rotations": tta_rotations,
                 "tta_fields": tta_fields, "tta_positions": tta_positions,
                 "tta_mirror": bool(tta_mirror and reg.codec.has_mirror),
                 **_stats(err), "within_0.05_A": float(np.mean(err <= 0.05)), "centre_crop": _stats(centre),
                 "single_crop": _stats(single)}
        # Robustness: added noise (SNR) and contamination on the test images; vacancy bins.
        rob = {"noise": [], "contamination": [], "vacancy": []}
        def read_degraded(params: Degradation | None) -> dict:
            """Single-crop readings of the test images degraded by `params` (None: as they are)."""
            if params is None:
                return single_pred
            return reg.predict(np.stack([degrade(i - i.min() + 1e-3, p, params, rng) for i in imgs]), p)

        for lvl in noise_levels:
            pr = read_degraded(Degradation(gaussian_noise=lvl) if lvl else None)
            snr = float("inf") if lvl == 0 else 1.0 / lvl
            rob["noise"].append({"noise_fraction_of_std": lvl, "snr": snr,
                                 "mean_dD_A": float(slip_errors_A(sym, pr, truth).mean())})
        for nb in contamination_blobs:
            pr = read_degraded(Degradation(contamination_blobs=nb, contamination_radius_A=3.0,
                                           contamination_strength=0.6) if nb else None)
            rob["contamination"].append({"blobs_per_image": nb,
                                         "mean_dD_A": float(slip_errors_A(sym, pr, truth).mean())})
        if "vacancy_fraction" in labels:
            v = labels["vacancy_fraction"].to_numpy()
            edges = np.unique(np.quantile(v, [0, 0.33, 0.67, 1.0]))
            for lo, hi in zip(edges[:-1], edges[1:]):
                m = (v >= lo) & (v <= hi)
                if m.any():
                    rob["vacancy"].append({"vacancy_fraction": [float(lo), float(hi)], "mean_dD_A": float(err[m].mean()),
                                           "n": int(m.sum())})
        entry["robustness"] = rob
        result["models"][label] = entry
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    _plot_slip(errors, result, out, name)
    return result


def _grid_label(entry: Mapping) -> str:
    step = entry.get("train_step_A")
    return "?" if step is None else f"{step:.2g} Å"


def _plot_slip(errors: Mapping[str, np.ndarray], result: Mapping, out: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4 + len(errors), 4))
    labels = list(errors)
    ax.boxplot([errors[n] for n in labels], showfliers=True)
    ax.set_xticks(range(1, len(labels) + 1), [_grid_label(result['models'][n]) for n in labels])
    ax.axhline(result["baseline_constant"]["mean"], color="gray", ls="--", label="constant prediction (mean ΔD)")
    ax.axhline(0.05, color="C3", ls=":", label="0.05 Å")
    ax.set_xlabel("training grid step")
    ax.set_ylabel("ΔD (Å)")
    ax.set_yscale("log")
    ax.set_title(f"{result['material']} slip, {result['n_test']} held-out images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{name}_boxplot.png", dpi=150)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for label, entry in result["models"].items():
        rob = entry["robustness"]
        axes[0].plot([r["noise_fraction_of_std"] for r in rob["noise"]], [r["mean_dD_A"] for r in rob["noise"]], "o-",
                     label=f"{label} ({_grid_label(entry)} grid)")
        axes[1].plot([r["blobs_per_image"] for r in rob["contamination"]], [r["mean_dD_A"] for r in rob["contamination"]], "o-")
        axes[2].plot([np.mean(r["vacancy_fraction"]) for r in rob["vacancy"]], [r["mean_dD_A"] for r in rob["vacancy"]], "o-")
    for ax, xl in zip(axes, ("added noise (fraction of image std)", "contamination blobs per image", "vacancy fraction")):
        ax.set_xlabel(xl)
        ax.set_ylabel("mean ΔD (Å)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{name}_robustness.png", dpi=150)
    plt.close(fig)


def alignment_scores(enc: TwistEncoding, theta_deg: np.ndarray, pred_deg: np.ndarray, evidence: np.ndarray) -> dict:
    """How often the reading took the wrong alignment (nearer the truth's partner θ_max − θ than the
    truth, where the two are > 5° apart), and how many readings the alignment evidence leaves
    undecided (< :data:`ALIGNMENT_EVIDENCE_MIN`), right and wrong ones apart."""
    sym = enc.sym
    partner = enc.partner_deg(theta_deg)
    err = sym.twist_error_deg(pred_deg, theta_deg)
    wrong = (sym.twist_error_deg(pred_deg, partner) < err) & (np.abs(partner - theta_deg) > 5.0)
    undecided = ~enc.alignment_decided(evidence)
    return {"evidence_min": ALIGNMENT_EVIDENCE_MIN, "n_wrong_alignment": int(wrong.sum()),
            "n_undecided": int(undecided.sum()), "n_wrong_undecided": int((wrong & undecided).sum()),
            "n_right_undecided": int((~wrong & undecided).sum()),
            "decided_mae_deg": float(err[~undecided].mean()) if (~undecided).any() else None}


def evaluate_twist(model_dir: str | Path, test_zarr: str | Path, out_dir: str | Path, tta_rotations: int = 4,
                   tta_fields: int = 4, tta_positions: int = 4, tta_mirror: bool = False) -> dict:
    """Twist MAE vs θ of the model (read as inference reads a whole image: crops at `tta_positions`
    places spanning it, in `tta_rotations` quarter turns and `tta_fields` fields, each also mirrored
    with `tta_mirror`, see :meth:`Regressor.predict_features`) and of the classical FFT baseline on the
    same images; ``centre_crop_mae_deg`` reads the centre crop only, ``full_field_mae_deg`` that crop's
    full field only.

    The FFT baseline only sees [0°, 30°] (θ and 60° − θ look alike); its error is reported both
    against the true θ and modulo that ambiguity.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels, material, sym, p, imgs = _load_test_set(test_zarr)
    theta = sym.fold_twist(labels["theta_deg"].to_numpy())
    reg = Regressor(model_dir)
    feats = reg.predict_features(imgs, p, tta_rotations=tta_rotations, tta_fields=tta_fields,
                                 tta_positions=tta_positions, tta_mirror=tta_mirror)
    pred = reg.codec.twist.decode(feats)
    err = sym.twist_error_deg(pred, theta)
    alignment = alignment_scores(reg.codec.twist, theta, pred, reg.codec.twist.alignment_evidence(feats, pred))
    centre = sym.twist_error_deg(reg.predict(imgs, p, tta_rotations=tta_rotations, tta_fields=tta_fields,
                                             tta_mirror=tta_mirror)["theta_deg"], theta)
    full = sym.twist_error_deg(reg.predict(imgs, p, tta_rotations=tta_rotations, tta_mirror=tta_mirror)["theta_deg"],
                               theta)
    single = sym.twist_error_deg(reg.predict(imgs, p)["theta_deg"], theta)
    fft = np.array([fft_twist_deg(i, p, material) for i in imgs])
    half = sym.twist_period_deg / 4  # 30° for hexagonal
    fft_err = np.abs(fft - theta)
    fft_err_ambig = np.minimum(fft_err, np.abs(fft - (2 * half - theta)))
    bins = np.unique(theta)
    per_theta = [{"theta_deg": float(t), "model_mae_deg": float(err[theta == t].mean()),
                  "fft_mae_deg": float(fft_err[theta == t].mean()),
                  "fft_mae_mod_ambiguity_deg": float(fft_err_ambig[theta == t].mean())} for t in bins]
    small = theta < 3.0
    # The AA′-like side's small twists (within 3° of 60° for hexagonal MX2): as long a moiré period.
    near_max = sym.near_aligned_twist(theta) & ~small
    result = {"material": material, "n_test": int(len(imgs)), "tta_rotations": tta_rotations,
              "tta_positions": tta_positions,
              "tta_mirror": bool(tta_mirror and reg.codec.has_mirror),
              "tta_fields_px": reg.tta_fields_px(tuple(int(round(n * p / reg.pixel_size_A)) for n in imgs.shape[1:]),
                                                 tta_fields),
              "model_mae_deg": float(err.mean()), "model_median_deg": float(np.median(err)),
              "centre_crop_mae_deg": float(centre.mean()), "full_field_mae_deg": float(full.mean()),
              "single_crop_mae_deg": float(single.mean()),
              "fft_mae_deg": float(fft_err.mean()), "fft_mae_mod_ambiguity_deg": float(fft_err_ambig.mean()),
              "alignment": alignment,
              "below_3deg": {"n": int(small.sum()),
                             "model_mae_deg": float(err[small].mean()) if small.any() else None,
                             "fft_mae_deg": float(fft_err_ambig[small].mean()) if small.any() else None},
              "within_3deg_of_max": {"n": int(near_max.sum()), "twist_max_deg": float(sym.twist_range_deg[1]),
                                     "model_mae_deg": float(err[near_max].mean()) if near_max.any() else None,
                                     "fft_mae_deg": float(fft_err_ambig[near_max].mean()) if near_max.any() else None},
              "per_theta": per_theta}
    (out / "twist.json").write_text(json.dumps(result, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(bins, [r["model_mae_deg"] for r in per_theta], "o-", label="ResNet")
    ax.plot(bins, [r["fft_mae_deg"] for r in per_theta], "s--", label="FFT spots")
    ax.plot(bins, [r["fft_mae_mod_ambiguity_deg"] for r in per_theta], "^:", label="FFT spots, mod θ↔60°−θ")
    ax.set_xlabel("twist θ (°)")
    ax.set_ylabel("mean absolute error (°)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"{material} twist, {len(imgs)} held-out images")
    fig.tight_layout()
    fig.savefig(out / "twist_mae.png", dpi=150)
    plt.close(fig)
    return result
