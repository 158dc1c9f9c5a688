"""The experiment config: shipped YAML files, overrides, validation with one-line messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from incriminate.plan.config import (
    ConfigError,
    ExperimentConfig,
    load_config,
    to_yaml,
)

CONFIGS = Path(__file__).parents[2] / "configs"


BENCHES = sorted(p for p in CONFIGS.glob("*.yaml") if "zoo" in yaml.safe_load(p.read_text()))
EXPERIMENTS = sorted(set(CONFIGS.glob("*.yaml")) - set(BENCHES))


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.name)
def test_every_shipped_bench_config_loads(path: Path):
    from incriminate.plan.bench_config import load_bench_config

    assert load_bench_config(path).zoo.base_seeds


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_shipped_config_validates_and_holds_values_only(path: Path):
    values = yaml.safe_load(path.read_text())
    cfg = ExperimentConfig.model_validate(values)
    assert to_yaml(cfg) == yaml.safe_dump(values, sort_keys=False)  # fully resolved, no code


def test_demo_yaml_is_the_default_and_quick_yaml_is_quick():
    assert load_config(CONFIGS / "demo.yaml") == ExperimentConfig() == load_config()
    quick = load_config(quick=True)
    assert load_config(CONFIGS / "quick.yaml") == quick
    assert quick.build.preset == "nano" and quick.seeds == 2 and len(quick.configurations()) == 8


def test_default_grid_is_the_issue_grid():
    cfg = ExperimentConfig()
    assert [m.method for m in cfg.methods] == ["sft", "logit"]
    assert cfg.data == ("open_ended", "goal_targeted", "full_mix")
    assert cfg.inits == ("shared_base", "other_base")
    assert cfg.seeds == 3 and cfg.run_seeds() == [0, 1, 2]
    assert len(cfg.configurations()) == 12
    assert cfg.configurations()[0] == ("sft", "open_ended", "shared_base")


def test_dotted_overrides_and_hash(tmp_path: Path):
    base = load_config()
    cfg = load_config(
        overrides=["seeds=5", "build.preset=nano", "methods.1.train.steps=7", "alpha=0.01"]
    )
    assert cfg.seeds == 5 and cfg.build.preset == "nano" and cfg.alpha == 0.01
    assert cfg.methods[1].train.steps == 7 and cfg.methods[0].train.steps == 80
    assert cfg.config_hash() != base.config_hash()
    assert load_config(overrides=["seeds=3"]).config_hash() == base.config_hash()
    # A file, then overrides on top of it; the saved YAML reloads to the same config.
    f = tmp_path / "c.yaml"
    f.write_text("seeds: 4\ndata: [tasks]\nbuild: {drive: sandbag}\n")
    cfg = load_config(f, ["first_seed=10"])
    assert cfg.seeds == 4 and cfg.data == ("tasks",) and cfg.build.drive == "sandbag"
    assert cfg.build.preset == "nano"  # the rest of `build` keeps its defaults
    assert cfg.run_seeds() == [10, 11, 12, 13]
    (tmp_path / "saved.yaml").write_text(to_yaml(cfg))
    assert load_config(tmp_path / "saved.yaml") == cfg


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["data=[open_ended, ful_mix]"], ValidationError, "did you mean 'full_mix'"),
        (["inits=[shared]"], ValidationError, "unknown student init 'shared'"),
        (["teacher=shemer"], ValidationError, "did you mean 'schemer'"),
        (["control=benign"], ValidationError, "unknown control 'benign'"),
        (["methods.0.method=ppo"], ValidationError, "ppo"),
        (["speed=3"], ValidationError, "Extra inputs are not permitted"),
        (["seeds=0"], ValidationError, "greater than or equal to 1"),
        (["data=[tasks, tasks]"], ValidationError, "more than once"),
        (["methods.5.train.steps=3"], ConfigError, "not an index below 2"),
        (["seeds"], ConfigError, "key=value"),
    ],
)
def test_bad_values_are_rejected_with_the_name(overrides, error, message):
    with pytest.raises(error, match=message):
        load_config(overrides=overrides)


def test_bad_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "code.yaml").write_text("seeds: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not readable YAML"):
        load_config(tmp_path / "code.yaml")


def test_field_docstrings_are_the_help():
    fields = ExperimentConfig.model_fields
    assert fields["seeds"].description and "Seeds per configuration" in fields["seeds"].description
    assert all(f.description for f in fields.values()), [
        k for k, f in fields.items() if not f.description
    ]
