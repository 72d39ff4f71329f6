"""Config validation: every violation is reported at once, naming the key and what is allowed."""

import copy
from pathlib import Path

import pytest
import yaml

from vdwstack.config import validate_config
from vdwstack.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture()
def config():
    return yaml.safe_load((ROOT / ".test" / "config" / "config.yaml").read_text())


def _merged(base: dict, overlay: dict) -> dict:
    """What `--configfile config/config.yaml OVERLAY` gives (Snakemake merges nested mappings)."""
    out = copy.deepcopy(base)
    for k, v in overlay.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _shipped(name: str) -> dict:
    """The config a run of shipped file `name` gets: an overlay in config/ merged over the demo config, as
    `--configfile config/config.yaml NAME` gives; the demo config or the test config alone as they are."""
    config = yaml.safe_load((ROOT / name).read_text())
    if name.startswith("config/") and name != "config/config.yaml":
        config = _merged(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), config)
    return config


@pytest.mark.parametrize("name", [".test/config/config.yaml", "config/config.yaml", "config/cpu_hour.yaml",
                                  "config/paper.yaml", "config/mos2_slip.yaml",
                                  "config/trilayer.yaml"])
def test_shipped_configs_are_valid(name):
    validate_config(_shipped(name), SCHEMA)


@pytest.mark.parametrize("name", ["config/config.yaml", "config/cpu_hour.yaml", "config/paper.yaml",
                                  "config/mos2_slip.yaml", "config/trilayer.yaml"])
def test_every_shipped_model_trains_past_its_warmup(name):
    """Each model's merged settings (regress.settings under its study's or the twist block's) leave the warm-up:
    config/paper.yaml once inherited the demo twist block's 600 steps under its own 1000 warm-up steps."""
    from vdwstack.config import regressor_settings
    from vdwstack.regress.training import RegressorConfig

    reg = _shipped(name)["regress"]
    models = [("twist", reg["twist"]["train_dataset"])]
    models += [("slip", d) for spec in reg["slip"].values() for d in spec["train_datasets"]]
    for task, dataset in models:
        cfg = RegressorConfig.from_mapping(regressor_settings(reg, task, dataset))
        assert cfg.steps >= 5 * cfg.warmup_steps, (name, task, dataset, cfg.steps, cfg.warmup_steps)


def test_warmup_as_long_as_the_training_is_logged_naming_both(caplog):
    from vdwstack.regress.training import RegressorConfig

    with caplog.at_level("WARNING", logger="vdwstack.regress.training"):
        RegressorConfig.from_mapping({"steps": 600, "warmup_steps": 1000})
    assert "warmup_steps (1000) is not fewer than steps (600)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="vdwstack.regress.training"):
        RegressorConfig.from_mapping({"steps": 600, "warmup_steps": 50})
    assert "warmup_steps" not in caplog.text


@pytest.mark.parametrize("path,value,expected", [
    (("datasets", "ReS2_slip", "slip_step_A"), -1, "datasets.ReS2_slip.slip_step_A: -1 is not allowed (allowed: number > 0)"),
    (("datasets", "ReS2_slip", "pixel_size_A"), 0.5, "datasets.ReS2_slip.pixel_size_A: 0.5 is not allowed (allowed: number > 0, ≤ 0.4)"),
    (("datasets", "ReS2_slip", "pixel_size_A"), "big", "pixel_size_A: 'big' is not allowed (allowed: number"),
    (("simulation", "method"), "raytrace", "simulation.method: 'raytrace' is not allowed (allowed: one of incoherent, multislice, prism)"),
    (("drit", "crop_px"), 30, "drit.crop_px: 30 is not allowed (allowed: integer ≥ 32, multiple of 4)"),
    (("microscope", "defocus_A"), [1, 2, 3], "microscope.defocus_A: [1, 2, 3] is not allowed (allowed: a fixed value or a uniform range [min, max])"),
    (("datasets", "MoS2_twist", "twist_deg"), {"start": 0, "stop": 3, "step": 0}, "datasets.MoS2_twist.twist_deg.step: 0 is not allowed (allowed: number > 0)"),
    (("regress", "settings", "architecture"), "vgg16", "regress.settings.architecture: 'vgg16' is not allowed (allowed: one of resnet18, resnet34, resnet50)"),
    (("infer", "tta_rotations"), 3, "infer.tta_rotations: 3"),
    (("drit", "weights", "self_recon"), -1, "drit.weights.self_recon: -1 is not allowed (allowed: number ≥ 0)"),
    (("closed_loop", "try_mirror"), "sometimes", "closed_loop.try_mirror: 'sometimes' is not allowed"),
    (("closed_loop", "hand_margin"), 1.5, "closed_loop.hand_margin: 1.5 is not allowed (allowed: number ≥ 0, ≤ 1)"),
    (("closed_loop", "search_step_deg"), 0, "closed_loop.search_step_deg: 0 is not allowed (allowed: number > 0, ≤ 10)"),
])
def test_bad_value_names_key_and_allowed_range(config, path, value, expected):
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(ConfigError) as e:
        validate_config(config, SCHEMA)
    assert expected in str(e.value)


@pytest.mark.parametrize("where", [(), ("drit",), ("drit", "weights"), ("regress", "settings"), ("microscope",),
                                   ("datasets", "ReS2_slip"), ("infer",), ("simulation",), ("closed_loop",)])
def test_unknown_keys_are_reported_with_the_allowed_ones(config, where):
    node = config
    for key in where:
        node = node.setdefault(key, {})
    node["defocous_A"] = 30
    with pytest.raises(ConfigError) as e:
        validate_config(config, SCHEMA)
    line = next(ln.strip() for ln in str(e.value).splitlines() if "defocous_A" in ln)
    assert line.startswith(f"{'.'.join(where) or 'config'}: unknown key(s) 'defocous_A' (allowed: ")


def test_every_violation_is_listed_once(config):
    bad = copy.deepcopy(config)
    bad["seed"] = -3
    bad["datasets"]["extra"] = {"material": "MoTe3", "pixel_size_A": 0.1, "image_size_px": 8}
    del bad["regress"]["twist"]["test_dataset"]
    with pytest.raises(ConfigError) as e:
        validate_config(bad, SCHEMA)
    lines = str(e.value).splitlines()[1:]
    assert len(lines) == len(set(lines)) == 5, lines
    text = str(e.value)
    assert "seed: -3 is not allowed (allowed: integer ≥ 0)" in text
    assert "datasets.extra.material: 'MoTe3'" in text and "datasets.extra.image_size_px: 8" in text
    assert "datasets.extra: needs 'slip_step_A' or 'twist_deg'" in text
    assert "regress.twist: missing required key(s) 'test_dataset'" in text


def test_schema_file_is_generated_from_the_settings_dataclasses():
    """One owner per setting: the committed schema is exactly what the dataclasses generate
    (regenerate with `python -m vdwstack.schema workflow/schemas/config.schema.yaml`)."""
    from vdwstack.schema import schema_yaml

    assert SCHEMA.read_text() == schema_yaml()


def _settings_blocks():
    from vdwstack.closed_loop.settings import ClosedLoopSettings
    from vdwstack.drit.networks import DritArchitecture
    from vdwstack.drit.training import DritConfig, LossWeights
    from vdwstack.infer.settings import InferenceSettings
    from vdwstack.simulate.multislice import MultisliceSettings
    from vdwstack.simulate.render import SimulationSettings
    from vdwstack.synthesize.stage import SynthesizeSettings

    # (path in the schema, dataclass, routing keys of the block that are not settings)
    return [(("simulation",), SimulationSettings, set()), (("simulation", "multislice"), MultisliceSettings, set()),
            (("infer",), InferenceSettings, {"on_error"}), (("closed_loop",), ClosedLoopSettings, {"enabled"}),
            (("drit",), DritConfig, {"dataset", "eval_images"}), (("drit", "architecture"), DritArchitecture, set()),
            (("drit", "weights"), LossWeights, set()), (("synthesize",), SynthesizeSettings, set())]


@pytest.mark.parametrize("path,cls,routing", _settings_blocks(), ids=lambda v: ".".join(v) if isinstance(v, tuple) else "")
def test_every_block_has_the_keys_types_and_defaults_of_its_dataclass(path, cls, routing):
    import dataclasses

    node = yaml.safe_load(SCHEMA.read_text())
    for key in path:
        node = node["properties"][key]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(node["properties"]) - routing == set(fields)
    py = {"number": (int, float), "integer": int, "boolean": bool, "string": str, "array": (list, tuple), "null": type(None)}
    for name, f in fields.items():
        prop = node["properties"][name]
        if dataclasses.is_dataclass(f.type) or "properties" in prop:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert prop["default"] == (list(default) if isinstance(default, tuple) else default), name
        kinds = prop.get("type", [])
        kinds = kinds if isinstance(kinds, list) else [kinds]
        assert not kinds or any(isinstance(default, py[k]) for k in kinds), (name, kinds, default)
        if "enum" in prop:
            assert default in prop["enum"], name


def test_merged_blocks_carry_no_schema_defaults():
    """Snakemake fills schema defaults into every block it validates: a default on a dataset's own
    microscope/realism or a study's settings would silently override the global block."""
    schema = yaml.safe_load(SCHEMA.read_text())
    for name in ("microscope", "realism", "regress_settings"):
        assert all("default" not in p for p in schema["definitions"][name]["properties"].values()), name


def test_cli_and_workflow_share_the_defaults():
    """The demo config's infer and closed_loop blocks are the dataclasses' defaults: `vdwstack infer`
    and the closed loop outside the workflow read images exactly as the workflow does."""
    from vdwstack.closed_loop.settings import ClosedLoopSettings
    from vdwstack.infer.settings import InferenceSettings

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert InferenceSettings.from_mapping(config["infer"]) == InferenceSettings()
    assert ClosedLoopSettings.from_mapping(config["closed_loop"]) == ClosedLoopSettings()
    # Each bound is enforced the same way outside the workflow.
    with pytest.raises(ValueError, match=r"infer\.stride_A must be > 0"):
        InferenceSettings.from_mapping({"stride_A": 0})
    with pytest.raises(ValueError, match=r"closed_loop\.max_crop_px must be ≥ 32"):
        ClosedLoopSettings.from_mapping({"max_crop_px": 8})


@pytest.mark.parametrize("init_from,expected", [
    ("nowhere", "regress.slip.Tri.init_from: 'nowhere' is not trained by any slip study (trained: ReS2_slip, MoS2_twist)"),
    ("MoS2_twist", "regress.slip.Tri.init_from: 'MoS2_twist' is trained by this study itself"),
    ("ReS2_slip", None),
])
def test_init_from_names_a_model_of_another_slip_study(config, init_from, expected):
    from vdwstack.config import check_config, init_dataset

    # A second slip study (on the twist set, to keep the test config's datasets) starting from the first.
    config["regress"]["slip"]["Tri"] = {"train_datasets": ["MoS2_twist"], "test_dataset": "MoS2_twist",
                                        "init_from": init_from}
    validate_config(config, SCHEMA)
    if expected is None:
        check_config(config)
        assert init_dataset(config["regress"], "MoS2_twist") == "ReS2_slip"
        assert init_dataset(config["regress"], "ReS2_slip") is None
        return
    with pytest.raises(ConfigError) as e:
        check_config(config)
    assert expected in str(e.value)


def test_init_from_cycles_are_refused(config):
    from vdwstack.config import check_config

    config["regress"]["slip"]["ReS2"]["init_from"] = "MoS2_twist"
    config["regress"]["slip"]["Tri"] = {"train_datasets": ["MoS2_twist"], "test_dataset": "MoS2_twist",
                                        "init_from": "ReS2_slip"}
    with pytest.raises(ConfigError, match="initialise each other in a cycle"):
        check_config(config)


def test_evaluation_reads_with_the_inference_mirrored_views():
    """The networks' evaluation adds the views inference adds (infer.tta_mirror), with its default."""
    from vdwstack.config import evaluation_views
    from vdwstack.infer.settings import InferenceSettings

    assert evaluation_views({}) == {"tta_mirror": InferenceSettings().tta_mirror}
    assert evaluation_views({"infer": {"tta_mirror": True, "on_error": "record"}}) == {"tta_mirror": True}
    cpu_hour = yaml.safe_load((ROOT / "config" / "cpu_hour.yaml").read_text())
    assert evaluation_views(cpu_hour) == {"tta_mirror": True}


def test_inference_blocks_of_a_config_file_are_checked_and_name_the_file(tmp_path):
    """vdwstack.config.inference_blocks: the blocks a reading outside the workflow takes from a run's config
    file (the shipped demo config's as they are, absent ones empty); a bad value names its field, a file
    that cannot be read or holds no mapping names the file."""
    from vdwstack.config import inference_blocks

    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    blocks = inference_blocks(ROOT / "config" / "config.yaml")
    assert set(blocks) == {"infer", "closed_loop", "microscope"}
    assert blocks["infer"] == shipped["infer"] and blocks["closed_loop"] == (shipped.get("closed_loop") or {})
    only = tmp_path / "only.yaml"
    only.write_text("infer: {tta_mirror: true}\n")
    assert inference_blocks(only) == {"infer": {"tta_mirror": True}, "closed_loop": {}, "microscope": {}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("closed_loop: {min_agreement: 7}\n")
    with pytest.raises(ValueError, match="closed_loop.min_agreement"):
        inference_blocks(bad)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="list.yaml"):
        inference_blocks(tmp_path / "list.yaml")
    with pytest.raises(ValueError, match="missing.yaml: cannot read it"):
        inference_blocks(tmp_path / "missing.yaml")
