"""The report page: final readings first, details folded, and it fits a 1400-px window.

A whole report is built from small hand-made records shaped like the real ones (long file paths,
long image ids, a table with many columns, an error record, a material without a model, a reading
that matches nothing) and rendered in headless Chromium: a screenshot at 1400 × 900 px and the
document's scroll width measured by a script injected into a copy of the page. Without a chromium
binary the browser checks skip, except where VDWSTACK_REQUIRE_CHROMIUM=1 (CI sets it: .ci/run
installs chromium). VDWSTACK_SCREENSHOT_DIR=<folder> keeps the screenshot there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from test_figures import LONG_DIR, fake_estimate, slip_run, twist_run
from vdwstack.report.stage import write_report
from vdwstack.report.tables import reading_text

WINDOW = (1400, 900)
RES2 = "ReS2_bilayer_large_area_scan_2024-03-17_site04_HAADF_0p1Apx_drift_corrected_final_v2"
MOS2 = "MoS2_twisted_bilayer_7deg_site11_HAADF"
RESE2 = "ReSe2_flake_B_no_model_yet"
WS2 = "WS2_unknown_contamination_heavy"
BROKEN = "corrupt_export_from_microscope_pc_3"


def _candidate(reading: dict, r: float, mirrored: bool = False, dist: float = 0.0, unit: str = "A") -> dict:
    return {**reading, "agreement": r, "mirrored": mirrored, f"distance_{unit}": dist}


def _fit() -> dict:
    return {"rotation_deg": 71.302, "pixel_size_A": 0.100214, "scale": 1.00214, "defocus_A": 36.4,
            "source_fwhm_A": 0.712, "frame": "image", "C12_A": 3.1, "phi12_deg": 27.0, "strain_aniso": 0.0031,
            "strain_shear": -0.0012, "lattice_a_A": 6.4312, "lattice_b_A": 6.5011, "lattice_gamma_deg": 118.87,
            "standard_errors": {"Da_A": 0.0041, "Db_A": 0.0039, "rotation_deg": 0.02, "defocus_A": 0.8},
            "relative_residual": 0.214}


def slip_reading(record: dict) -> dict:
    """A closed-loop reading.json of a ReS2 bilayer: final (−1.571, 0.006) Å (canonical, as records
    hold it), the network's proposal (1.566, 0.011) Å — the same stacking, D ≡ −D — beside it, two
    domains read on their own, both hands tried, warnings with long paths."""
    net = record["results"]["slip"]
    final = {"Da_A": -1.5712, "Db_A": 0.0061}
    rec = {"status": "ok", **final, "uncertainty_A": 0.0134, "agreement": 0.9871, "source": "search",
           "mirrored": False, "verdict": "reproduces the image: r = 0.987; next best mirror image r = 0.864",
           "hand": {"agreement_as_is": 0.9871, "agreement_mirrored": 0.8642, "decided": True},
           "candidates": {"network": _candidate({"Da_A": 1.566, "Db_A": 0.011}, 0.9702, dist=0.019),
                          "refined": _candidate({"Da_A": -1.5709, "Db_A": 0.0058}, 0.9869, dist=0.0004),
                          "search": _candidate(final, 0.9871)},
           "runner_up": {"Da_A": -1.571, "Db_A": 0.006, "agreement": 0.8642, "source": "search", "mirrored": True},
           "margin": 0.1229, "fit": _fit(), "simulations": 412,
           "warnings": [f"fitted pixel size 0.1002 Å/px is 0.2 % from {LONG_DIR}/{RES2}.dm4's 0.1000 Å/px"],
           "network": {k: net[k] for k in ("Da_A", "Db_A", "uncertainty_A", "spread_A", "stacking", "model",
                                           "n_crops")},
           "domains": [{**d, "network_Da_A": d["Da_A"], "network_Db_A": d["Db_A"], "status": "ok",
                        "Da_A": d["Da_A"] + 0.002, "Db_A": d["Db_A"] - 0.001, "uncertainty_A": 0.02,
                        "agreement": 0.981 - 0.01 * d["id"], "source": "refined", "mirrored": False,
                        "verdict": "reproduces the image: r = 0.981; next best stacking r = 0.902",
                        "hand": {"agreement_as_is": 0.981, "agreement_mirrored": 0.872, "decided": True},
                        "centre_A": [12.0 + 20 * d["id"], 15.0]} for d in net["domains"]],
           "map": net["map"], "map_extent_A": net["map_extent_A"], "n_domains": 2}
    return {**{k: record[k] for k in ("image_id", "material", "layers", "task", "pixel_size_A",
                                      "pixel_size_source", "path")},
            "status": "ok", "results": {"slip": rec}, "warnings": [f"slip: {w}" for w in rec["warnings"]],
            "truth": {"Da_A": -1.57, "Db_A": 0.0}, "errors_vs_truth": {"final_dD_A": 0.0062, "network_dD_A": 0.0123},
            "result": f"{LONG_DIR}/results/infer/{RES2}/result.json", "models": ["model.xyz", "model.cif"]}


def twist_reading(record: dict) -> dict:
    net = record["results"]["twist"]
    rec = {"status": "ok", "theta_deg": 7.2841, "uncertainty_deg": 0.031, "agreement": 0.9712, "source": "refined",
           "mirrored": False, "verdict": "reproduces the image: r = 0.971; next best stacking r = 0.933",
           "candidates": {"network": _candidate({"theta_deg": 7.31}, 0.9688, dist=0.026, unit="deg"),
                          "refined": _candidate({"theta_deg": 7.2841}, 0.9712, unit="deg"),
                          "search": _candidate({"theta_deg": 52.71}, 0.9331, dist=45.4, unit="deg")},
           "runner_up": {"theta_deg": 52.71, "agreement": 0.9331, "source": "search", "mirrored": False},
           "margin": 0.0381, "fit": {**_fit(), "layer_translation_A": [0.41, -1.2]}, "warnings": [],
           "network": {"theta_deg": net["theta_deg"], "uncertainty_deg": net["uncertainty_deg"],
                       "spread_deg": 0.1, "model": net["model"], "n_crops": 9}, "domains": []}
    return {"image_id": MOS2, "material": "MoS2", "layers": 2, "task": "twist", "pixel_size_A": 0.12,
            "pixel_size_source": "estimated from Bragg spots", "path": record["path"], "status": "ok",
            "results": {"twist": rec}, "warnings": []}


def search_only_reading() -> dict:
    """ReSe2 without a trained model: the reading comes from the search alone; the hand undecided."""
    rec = {"status": "ok", "Da_A": 0.512, "Db_A": 2.204, "uncertainty_A": 0.041, "agreement": 0.9433,
           "source": "search", "mirrored": True,
           "verdict": "reproduces the image: r = 0.943; next best mirror image r = 0.941",
           "hand": {"agreement_as_is": 0.9411, "agreement_mirrored": 0.9433, "decided": False},
           "candidates": {"search": _candidate({"Da_A": 0.512, "Db_A": 2.204}, 0.9433, mirrored=True)},
           "fit": _fit(), "network": None, "domains": [],
           "warnings": ["no trained slip model for 2-layer ReSe2: the reading comes from the physics search alone"]}
    return {"image_id": RESE2, "material": "ReSe2", "layers": 2, "task": "slip", "pixel_size_A": 0.0812,
            "pixel_size_source": "given", "path": f"{LONG_DIR}/{RESE2}.tif", "status": "ok",
            "results": {"slip": rec}, "warnings": [f"slip: {w}" for w in rec["warnings"]]}


def no_match_reading() -> dict:
    msg = (f"{LONG_DIR}/{WS2}.dm4: no WS2 stacking reproduces the image (slip: best agreement 0.41 < 0.80); "
           "check the material, the pixel size and the image")
    rec = {"status": "no_match", "agreement": 0.41, "source": "search", "mirrored": False,
           "verdict": "no stacking reproduces the image: best r = 0.41 < 0.80", "candidates": {}, "fit": _fit(),
           "network": None, "domains": [], "warnings": []}
    return {"image_id": WS2, "material": "WS2", "layers": 2, "task": "slip", "pixel_size_A": 0.1,
            "pixel_size_source": "metadata", "path": f"{LONG_DIR}/{WS2}.dm4", "status": "no_match",
            "results": {"slip": rec}, "warnings": [], "message": msg}


def build_run(tmp: Path) -> dict:
    """Everything write_report takes, for five images, one evaluation of each kind, losses and
    benchmark tables (job names with long wildcards)."""
    from vdwstack.closed_loop.figure import comparison_figure

    res2, res2_maps = slip_run(tmp / "infer" / RES2, RES2, shape_px=(420, 640))
    mos2, mos2_maps = twist_run(tmp / "infer" / MOS2, MOS2)
    no_model = {"image_id": RESE2, "path": f"{LONG_DIR}/{RESE2}.tif", "material": "ReSe2", "layers": 2,
                "task": "slip", "status": "ok", "pixel_size_A": 0.0812, "pixel_size_source": "given", "warnings": [],
                "results": {"slip": {"task": "slip", "model": None,
                                     "message": "no trained slip model for 2-layer ReSe2: the reading comes from "
                                                "the physics search alone"}}}
    ws2 = {**no_model, "image_id": WS2, "material": "WS2", "path": f"{LONG_DIR}/{WS2}.dm4"}
    broken = {"image_id": BROKEN, "path": f"{LONG_DIR}/{BROKEN}.dm4", "material": "ReS2", "task": "slip",
              "status": "error", "error": f"ValueError: {LONG_DIR}/{BROKEN}.dm4: truncated file (read 1048576 of "
                                          "16777216 bytes); re-export it from the microscope PC"}
    cl = {}
    for image_id, reading, panels in (
            (RES2, slip_reading(res2), [("slip, whole image", fake_estimate()), ("slip, domain 0", fake_estimate()),
                                        ("slip, domain 1", fake_estimate())]),
            (MOS2, twist_reading(mos2), [("twist, whole image", fake_estimate("MoS2", twist=True))]),
            (RESE2, search_only_reading(), [("slip, whole image", fake_estimate("ReSe2", mirrored=True))]),
            (WS2, no_match_reading(), [])):
        d = tmp / "closed_loop" / image_id
        d.mkdir(parents=True)
        png = d / "comparison.png"
        if panels:
            comparison_figure(panels, png, f"{image_id} ({reading['material']}): final readings")
        else:
            from vdwstack.closed_loop.figure import message_figure

            message_figure(png, f"no reading (no_match):\n{reading['message']}")
        (d / "reading.json").write_text(json.dumps(reading))
        cl[image_id] = (reading, png)
    evaluation = {
        "slip_ReS2": {"material": "ReS2", "n_test": 400, "models": {
            f"ReS2_slip_step{s}_drit_k4_resnet50_crop256_long_name": {"train_step_A": s, "mean": 0.03 * s * 10,
                                                                      "median": 0.02, "p95": 0.05}
            for s in (0.1, 0.2, 0.4)}, "baseline_constant": {"mean": 1.6, "median": 1.5, "p95": 2.9}},
        "twist": {"material": "MoS2", "n_test": 200, "model_mae_deg": 0.21, "fft_mae_deg": 1.4,
                  "fft_mae_mod_ambiguity_deg": 0.9, "below_3deg": {"model_mae_deg": 0.3, "fft_mae_deg": 4.1}}}
    bench = tmp / "benchmarks"
    for job in ("simulate/ReS2_slip_step0.1_with_vacancies_and_thermal_jitter_and_strain_0042",
                f"infer/{RES2}", f"closed_loop/{RES2}", "report"):
        (bench / job).parent.mkdir(parents=True, exist_ok=True)
        (bench / f"{job}.tsv").write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\t"
                                          "cpu_time\n12.3\t0:00:12\t812.4\t2100.1\t700\t710\t1.2\t3.4\t180.2\t22.1\n")
    losses = tmp / "losses.csv"
    losses.write_text("step,loss\n" + "".join(f"{i},{1 / (i + 1):.4f}\n" for i in range(60)))
    records = [res2, mos2, no_model, ws2, broken]
    return {"records": records, "maps": {RES2: res2_maps, MOS2: mos2_maps}, "closed_loop": cl,
            "evaluation": evaluation, "bench_root": bench, "loss_csvs": [losses]}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report_run")
    run = build_run(tmp)
    return write_report(run["records"], run["maps"], tmp / "report", (), run["bench_root"], run["evaluation"],
                        run["loss_csvs"], run["closed_loop"])


class _Details(HTMLParser):
    """Text of the page with, for each piece, whether it lies inside a <details> element."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.chunks: list[tuple[str, bool]] = []

    def handle_starttag(self, tag, attrs):
        self.depth += tag == "details"

    def handle_endtag(self, tag):
        self.depth -= tag == "details"

    def handle_data(self, data):
        self.chunks.append((data, self.depth > 0))


def _sections(text: str) -> dict[str, str]:
    """image id → the HTML of its <section>."""
    return {m.group(1): m.group(0) for m in re.finditer(r'<section class="image"><h3>([^ <]+).*?</section>', text,
                                                           re.S)}


def test_each_image_leads_with_its_final_reading_and_folds_the_details(report):
    text = report.read_text()
    sections = _sections(text)
    assert set(sections) == {RES2, MOS2, RESE2, WS2, BROKEN}
    res2 = sections[RES2]
    final = reading_text({"Da_A": -1.5712, "Db_A": 0.0061, "uncertainty_A": 0.0134}, "slip")
    assert final == "D = (-1.571, 0.006) Å ± 0.013 Å"
    network = reading_text({"Da_A": 1.566, "Db_A": 0.011, "uncertainty_A": 0.012}, "slip")
    assert res2.index(final) < res2.index(network)
    assert res2.index(final) < res2.index("<details>") and text.index(final) < text.index(network)
    assert "hand: as is (r 0.987 as is, 0.864 mirrored)" in res2 and "agreement r = 0.987" in res2
    assert "reproduces the image: r = 0.987; next best mirror image r = 0.864" in res2
    assert "2 domains, each read on its own" in res2
    # The twist, the search-only reading with its undecided hand, the no-match and the error record.
    assert "θ = 7.28° ± 0.03°" in sections[MOS2]
    assert "mirrored (r 0.941 as is, 0.943 mirrored), undecided" in sections[RESE2]
    assert "no stacking reproduces the image" in sections[WS2] and "truncated file" in sections[BROKEN]
    # Details: the network's value, candidates, fitted optics and warnings only inside <details>.
    parser = _Details()
    parser.feed(res2)
    folded = ("the network's reading", network, "candidates and runner-up", "fitted pose and optics", "defocus",
              "Warnings (1)", "fitted pixel size 0.1002")
    for needle in folded:
        hits = [inside for chunk, inside in parser.chunks if needle in chunk]
        assert hits and all(hits), (needle, hits)
    assert not any(inside for chunk, inside in parser.chunks if final in chunk)
    # The summary table leads with the answer; every column stays in summary.tsv.
    tsv = (report.parent / "summary.tsv").read_text().splitlines()
    assert tsv[0].split("\t")[:6] == ["image", "material", "task", "status", "reading", "agreement"]
    assert "How each reading was reached" in text and "<h2>Readings</h2>" in text


def _browser() -> str | None:
    found = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                 None)
    if found is None and os.environ.get("VDWSTACK_REQUIRE_CHROMIUM") != "1":
        pytest.skip("no chromium binary (apt-get install chromium; CI installs it and sets "
                    "VDWSTACK_REQUIRE_CHROMIUM=1)")
    assert found, "VDWSTACK_REQUIRE_CHROMIUM=1 but no chromium binary was found"
    return found


def _chromium(browser: str, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu",
           f"--window-size={WINDOW[0]},{WINDOW[1]}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


# Injected into a copy of the page: after load, unfolds every <details> (what a reader may open
# must fit too), then writes the document's widths and the widest element's right edge into the
# DOM, where --dump-dom shows them.
MEASURE = """<script>addEventListener('load', () => {
  document.querySelectorAll('details').forEach(e => { e.open = true; });
  const d = document.documentElement; let right = 0, widest = '';
  for (const e of document.body.querySelectorAll('*')) {
    if (e.parentElement.closest('.scroll')) continue;  // scrolls inside its own box, which is checked
    const r = e.getBoundingClientRect().right;
    if (r > right) { right = r; widest = e.tagName + '.' + e.className; }
  }
  const m = {scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, innerWidth: window.innerWidth,
             bodyScrollWidth: document.body.scrollWidth, widestRight: right, widest: widest};
  const p = document.createElement('pre'); p.id = 'measure'; p.textContent = JSON.stringify(m);
  document.body.appendChild(p);
});</script>"""


def test_report_fits_a_1400px_window_in_headless_chromium(report, tmp_path):
    browser = _browser()
    probe = report.parent / "measure.html"
    probe.write_text(report.read_text().replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    res = _chromium(browser, "--virtual-time-budget=3000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="measure">(.*?)</pre>', res.stdout)
    assert found, res.stderr[-2000:]
    m = json.loads(found.group(1).replace("&quot;", '"'))
    assert m["innerWidth"] == WINDOW[0], m
    # No horizontal scrolling: the document is no wider than the window's viewport.
    assert m["scrollWidth"] <= m["clientWidth"] <= m["innerWidth"], m
    assert m["widestRight"] <= m["clientWidth"] + 0.5, m

    shot = tmp_path / "report_1400.png"
    res = _chromium(browser, f"--screenshot={shot}", report.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000, res.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == WINDOW, im.size
        grey = np.asarray(im.convert("L"), float)
    assert grey.std() > 10  # something is drawn, not a blank page
    keep = os.environ.get("VDWSTACK_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report_1400.png")


def test_twist_evaluation_line_gives_both_ends_of_the_twist_range():
    from vdwstack.report.stage import _twist_evaluation_text

    ev = {"model_mae_deg": 0.34, "fft_mae_deg": 14.9, "fft_mae_mod_ambiguity_deg": 2.1,
          "below_3deg": {"model_mae_deg": 1.82, "fft_mae_deg": 23.4}}
    old = _twist_evaluation_text(ev)  # an evaluation written before the 60° end was scored
    assert "below 3°: model 1.82°, FFT 23.40°" in old and "within 3° of" not in old
    new = _twist_evaluation_text({**ev, "within_3deg_of_max": {"twist_max_deg": 60.0, "model_mae_deg": 0.9,
                                                               "fft_mae_deg": 20.5}})
    assert "within 3° of 60°: model 0.90°, FFT 20.50°" in new
