"""The reading of one image as the Python API returns it (:func:`vdwstack.api.read_stacking`): the
final values with their 95 % intervals, hand and agreement per task, the domains and maps, and
``to_dict()``, ``plot()`` and ``atoms()``. It wraps the closed loop's ``reading.json`` and the
files of its folder, so a result can also be opened later from a folder (:meth:`StackingResult.open`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vdwstack.core.io import jsonable

__all__ = ["StackingResult", "TaskReading"]


@dataclass(frozen=True)
class TaskReading:
    """The final reading of one task (slip or twist) of one image.

    Attributes:
        task: "slip" or "twist".
        status: "ok", or "no_match" (no stacking reproduces the image: no values).
        values: the final values: {"Da_A", "Db_A"} (+ {"Da2_A", "Db2_A"} for trilayers) in Å, in
            the symmetry-reduced slip cell, or {"theta_deg"} in degrees.
        uncertainty: the calibrated 95 % interval: a radius in Å around the slip (for trilayers,
            of each slip), or ± degrees for the twist; None when there is no reading.
        unit: "Å" or "degree".
        agreement: Pearson r of the image crop and the re-simulated reading (1 = identical).
        mirrored: the reading reproduces the mirror image (a chiral lattice seen from below).
        hand: "as imaged", "mirrored", "undecided" (both hands fit equally well) or None (an
            achiral lattice, where the hand is not a question).
        source: which candidate won: "network", "refined" or "search".
        verdict: one line on how well the reading reproduces the image.
        network: the network's own proposal (values, spread) or None when no model was used.
        domains: the slip domains, each with its own final reading, area (nm²) and centre (Å).
        record: the task's whole record (candidates, fitted optics, warnings).
    """

    task: str
    status: str
    values: dict[str, float]
    uncertainty: float | None
    unit: str
    agreement: float | None
    mirrored: bool
    hand: str | None
    source: str | None
    verdict: str
    network: dict | None
    domains: list[dict]
    record: dict = field(repr=False)

    @classmethod
    def from_record(cls, task: str, rec: Mapping) -> TaskReading:
        unit = "degree" if task == "twist" else "Å"
        keys = ["theta_deg"] if task == "twist" else ["Da_A", "Db_A", "Da2_A", "Db2_A"]
        hand = None
        if rec.get("hand"):
            hand = ("mirrored" if rec.get("mirrored") else "as imaged") if rec["hand"].get("decided") else "undecided"
        return cls(task=task, status=rec.get("status", "error"),
                   values={k: float(rec[k]) for k in keys if k in rec},
                   uncertainty=rec.get("uncertainty_deg" if task == "twist" else "uncertainty_A"), unit=unit,
                   agreement=rec.get("agreement"), mirrored=bool(rec.get("mirrored", False)), hand=hand,
                   source=rec.get("source"), verdict=rec.get("verdict", ""), network=rec.get("network"),
                   domains=list(rec.get("domains", [])), record=dict(rec))

    def text(self) -> str:
        """One line: 'Da = 1.234, Db = 0.456 Å ± 0.050 Å (95 %)' or 'θ = 7.12° ± 0.05°'."""
        if not self.values:
            return f"{self.task}: no reading ({self.verdict})"
        if self.task == "twist":
            s = f"θ = {self.values['theta_deg']:.3f}°"
            if self.uncertainty is not None:
                s += f" ± {self.uncertainty:.3f}° (95 %)"
        else:
            s = ", ".join(f"{k[:-2]} = {v:.3f}" for k, v in self.values.items()) + " Å"
            if self.uncertainty is not None:
                s += f" within {self.uncertainty:.3f} Å (95 %)"
        if self.hand is not None:
            s += f"; hand {self.hand}"
        return s + (f"; r = {self.agreement:.3f}" if self.agreement is not None else "")


@dataclass
class StackingResult:
    """The reading of one image, as :func:`read_stacking` returns it.

    Attributes:
        record: the final record (``reading.json``: per task the values, interval, hand,
            agreement, candidates, fitted optics, domains).
        folder: where the reading, maps, comparison figure and atomic models were written.
        image: the image as read, float32 [H, W].
        readings: task → :class:`TaskReading`.
    """

    record: dict
    folder: Path
    image: np.ndarray = field(repr=False)
    readings: dict[str, TaskReading] = field(init=False)

    def __post_init__(self) -> None:
        self.readings = {t: TaskReading.from_record(t, r) for t, r in self.record.get("results", {}).items()}

    @classmethod
    def open(cls, folder: str | Path) -> StackingResult:
        """The result written to `folder` by :func:`vdwstack.api.read_stacking`, ``vdwstack infer``
        or the workflow's closed_loop rule (its ``reading.json``; the image is read again from its path)."""
        from vdwstack.core.images import read_image

        folder = Path(folder)
        try:
            record = json.loads((folder / "reading.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{folder}: no readable reading.json ({e})") from None
        image, _ = read_image(record["path"], signal=record.get("signal_requested"))
        return cls(record, folder, image)

    # --- the final reading --------------------------------------------------------------------
    @property
    def status(self) -> str:
        """"ok", "no_match" (no stacking reproduces the image), "skipped" or "error"."""
        return self.record["status"]

    @property
    def message(self) -> str | None:
        """Why there is no reading (None when there is one)."""
        return self.record.get("message") or self.record.get("error")

    @property
    def material(self) -> str | None:
        return self.record.get("material")

    @property
    def pixel_size_A(self) -> float | None:
        """Pixel size used (Å/px); where it came from is ``pixel_size_source``."""
        return self.record.get("pixel_size_A")

    @property
    def pixel_size_source(self) -> str | None:
        """"user", "metadata" (the file's or the Signal2D's calibration) or "estimated"."""
        return self.record.get("pixel_size_source")

    @property
    def values(self) -> dict[str, float]:
        """The final values of every task, flat: Da_A, Db_A (Å) and/or theta_deg (degrees)."""
        return {k: v for r in self.readings.values() for k, v in r.values.items()}

    @property
    def uncertainty(self) -> dict[str, float]:
        """The calibrated 95 % intervals: {"slip_A": radius in Å, "twist_deg": ± degrees}."""
        keys = {"slip": "slip_A", "twist": "twist_deg"}
        return {keys[t]: r.uncertainty for t, r in self.readings.items() if r.uncertainty is not None}

    @property
    def agreement(self) -> dict[str, float]:
        """Task → Pearson r of the image and the simulation of its final reading."""
        return {t: r.agreement for t, r in self.readings.items() if r.agreement is not None}

    @property
    def hand(self) -> str | None:
        """"as imaged", "mirrored" or "undecided" for chiral lattices (ReX2); None otherwise."""
        return next((r.hand for r in self.readings.values() if r.hand is not None), None)

    @property
    def domains(self) -> list[dict]:
        """Slip domains with their own final readings (empty for a twist-only reading)."""
        return self.readings["slip"].domains if "slip" in self.readings else []

    @property
    def maps(self) -> dict[str, np.ndarray]:
        """The networks' sliding-window maps: "<task>_<name>" → array (rows, cols), e.g.
        slip_Da_A, slip_Db_A, slip_domains, twist_theta_deg; empty without a model."""
        path = self.folder / "maps.npz"
        if not path.exists():
            return {}
        with np.load(path) as arr:
            return {k: arr[k] for k in arr.files if k != "image"}

    @property
    def map_extent_A(self) -> dict[str, list[float]]:
        """Task → (x0, x1, y1, y0) of its maps in Å (image frame), for ``imshow(extent=...)``."""
        return {t: r.record["map_extent_A"] for t, r in self.readings.items() if "map_extent_A" in r.record}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: image, status, pixel size, the final values with their intervals,
        hand, agreement and source per task, the domains, and the folder; ``record`` holds all."""
        out: dict[str, Any] = {k: self.record.get(k) for k in ("path", "image_id", "material", "layers", "task",
                                                                "status", "pixel_size_A", "pixel_size_source")}
        out["signal"] = self.record.get("signal")
        if self.message:
            out["message"] = self.message
        out["readings"] = {
            t: {"status": r.status, **r.values, "uncertainty": r.uncertainty, "unit": r.unit,
                "agreement": r.agreement, "mirrored": r.mirrored, "hand": r.hand, "source": r.source,
                "verdict": r.verdict,
                "network": {k: v for k, v in (r.network or {}).items() if isinstance(v, (int, float, str))} or None,
                "domains": [{k: v for k, v in d.items() if isinstance(v, (int, float, str, bool, list))}
                            for d in r.domains]}
            for t, r in self.readings.items()}
        out["folder"] = str(self.folder)
        out["record"] = self.record
        return json.loads(json.dumps(out, default=jsonable))

    def __str__(self) -> str:
        head = f"{self.material}, {Path(str(self.record.get('path', ''))).name}"
        if self.status not in ("ok", "no_match"):
            return f"{head}: {self.status}: {self.message}"
        lines = [f"{head} ({self.pixel_size_A:.4f} Å/px, {self.pixel_size_source}):"]
        lines += [f"  {r.task}: {r.text()}" for r in self.readings.values()]
        return "\n".join(lines)

    # --- figures and models -------------------------------------------------------------------
    def plot(self, figsize: tuple[float, float] | None = None):
        """A matplotlib Figure (no pyplot state: it shows in a notebook and saves anywhere): the
        image in Å with a scale bar, titled with the final reading, and each task's network map
        (slips in the symmetry-invariant colours of the report, one stacking one colour; θ on a
        cyclic map over its full period), with scale bars."""
        from matplotlib.figure import Figure

        from vdwstack.core.scalebar import add_scale_bar
        from vdwstack.report.colours import slip_colours
        from vdwstack.structures.symmetry import symmetry_for

        maps, extents = self.maps, self.map_extent_A
        panels = [t for t in self.readings if t in extents and (f"{t}_Da_A" in maps or f"{t}_theta_deg" in maps)]
        fig = Figure(figsize=figsize or (4.4 * (1 + len(panels)), 4.6), layout="constrained")
        axes = fig.subplots(1, 1 + len(panels), squeeze=False)[0]
        p = float(self.pixel_size_A or 1.0)
        h, w = self.image.shape
        axes[0].imshow(self.image, cmap="gray", extent=(0, w * p, h * p, 0))
        axes[0].set_title("\n".join(r.text() for r in self.readings.values()) or self.status, fontsize=8)
        for ax, t in zip(axes[1:], panels):
            if t == "twist":
                period = symmetry_for(self.material).twist_period_deg
                im = ax.imshow(maps["twist_theta_deg"], cmap="twilight", vmin=0.0, vmax=period, extent=extents[t])
                fig.colorbar(im, ax=ax, label="θ (degrees)", shrink=0.8)
                ax.set_title("θ map (network)", fontsize=9)
            else:
                rgb = slip_colours(self.material, maps["slip_Da_A"], maps["slip_Db_A"])
                ax.imshow(rgb, extent=extents[t], interpolation="nearest")
                ax.set_title("slip map (network): one colour per stacking", fontsize=9)
        for ax in axes:
            ax.set(xlabel="x (Å)", ylabel="y (Å)")
            add_scale_bar(ax)
        return fig

    def atoms(self, domain: int | None = None, size_A: float = 30.0):
        """ASE Atoms of the final reading (the mirror-image model when the reading is mirrored),
        over a size_A × size_A patch; `domain`: the reading of that slip domain instead."""
        from vdwstack.structures.geometry import reading_atoms

        ok = [r for r in self.readings.values() if r.status == "ok"]
        if not ok:
            raise ValueError(f"{self.record.get('path')}: no final reading to build a model of ({self.message})")
        reading = {k: v for r in ok for k, v in r.values.items()}
        mirrored = ok[0].mirrored
        if domain is not None:
            doms = {d["id"]: d for d in self.domains}
            if domain not in doms or doms[domain].get("status") != "ok":
                raise ValueError(f"no final reading for domain {domain} (domains with one: "
                                 f"{[i for i, d in doms.items() if d.get('status') == 'ok']})")
            reading.update({k: doms[domain][k] for k in ("Da_A", "Db_A", "Da2_A", "Db2_A") if k in doms[domain]})
            mirrored = bool(doms[domain].get("mirrored", mirrored))
        return reading_atoms(self.material, int(self.record.get("layers", 2)), reading, size_A=size_A,
                             mirrored=mirrored)
