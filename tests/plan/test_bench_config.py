"""The bench config: shipped files equal the built-ins, batteries, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from incriminate.errors import ConfigError
from incriminate.plan.bench_config import (
    BATTERIES,
    Battery,
    BenchConfig,
    load_battery,
    load_bench_config,
    union,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_shipped_files_equal_the_built_ins() -> None:
    assert load_bench_config(CONFIGS / "bench.yaml") == BenchConfig()
    for name, battery in BATTERIES.items():
        assert load_battery(CONFIGS / "batteries" / f"{name}.yaml") == battery


def test_heldout_zoo_runs_the_design_procedures_on_unused_seeds() -> None:
    """The held-out zoo changes the suspects only: the batteries, audits, methods, alpha and the
    references of the null are the design bench's (docs/decision-rules.md)."""
    from incriminate.organisms.zoo import entries

    design, held = BenchConfig(), load_bench_config(CONFIGS / "heldout.yaml")
    assert held.model_dump(exclude={"zoo"}) == design.model_dump(exclude={"zoo"})
    changed = {"base_seeds", "personas", "hard_benign", "quirks_per_drive"}
    assert held.zoo.model_dump(exclude=changed) == design.zoo.model_dump(exclude=changed)
    assert not set(held.zoo.base_seeds) & set(design.zoo.base_seeds)
    assert not set(held.zoo.base_seeds) & {101, 102, 103, 104}  # earlier held-out zoos, spent
    suspects = entries(held.zoo)
    benign = [e for e in suspects if e.label == 0]
    assert len(benign) >= 40
    new = {e.cls for e in benign} - {e.cls for e in entries(design.zoo)}
    assert new == {"refuser", "long_trained"}


def test_search_confirmation_adds_one_battery_and_new_seeds_only() -> None:
    """The battery search's confirmation (configs/heldout-search.yaml) is the held-out zoo's
    bench plus the search's battery, on seeds no zoo has used, with robust suspects; the search
    (configs/search.yaml) runs on the design seeds."""
    from incriminate.organisms.zoo import entries

    design, held = BenchConfig(), load_bench_config(CONFIGS / "heldout.yaml")
    search = load_bench_config(CONFIGS / "search.yaml")
    confirm = load_bench_config(CONFIGS / "heldout-search.yaml")
    assert search.zoo.base_seeds == design.zoo.base_seeds
    assert [b.name for b in confirm.batteries] == [*BATTERIES, "robust_targeted"]
    (chosen,) = confirm.batteries[-1].configurations
    assert chosen.name in {c.name for c in search.batteries[0].configurations}
    assert confirm.methods == held.methods and confirm.alpha == held.alpha
    assert confirm.zoo.build == held.zoo.build
    spent = {0, 1, 101, 102, 103, 104, 105, 106}
    assert not set(confirm.zoo.base_seeds) & spent
    suspects = entries(confirm.zoo)
    assert {e.cls for e in suspects if e.label == 1} == {"robust_schemer", "robust_direct"}
    assert len([e for e in suspects if e.label == 0]) == 56


def test_union_pools_every_configuration_once() -> None:
    a, b = BATTERIES.values()
    u = union((a, b.model_copy(update={"seeds": 5, "alpha": 0.01})))
    assert [c.name for c in u.configurations] == [
        "logit/open_ended/other_base",
        "logit/tasks/other_base",
        "logit/goal_targeted/shared_base",
        "sft/high_stakes/shared_base",
    ]
    assert (u.seeds, u.alpha, u.name) == (5, 0.01, "union")
    assert [x.name for x in BenchConfig().all_batteries()] == [*BATTERIES, "union"]


def test_battery_file_replaces_the_batteries(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(
        "name: mine\nconfigurations:\n- {method: sft, data: full_mix, init: shared_base}\n"
        "seeds: 5\naudits: [honeypot]\n"
    )
    cfg = load_bench_config(battery_files=[f], overrides=["alpha=0.1"])
    assert [b.name for b in cfg.all_batteries()] == ["mine"]
    assert cfg.batteries[0].seeds == 5 and cfg.alpha == 0.1


@pytest.mark.parametrize(
    ("battery", "message"),
    [
        ({"configurations": []}, "at least 1"),
        (
            {"configurations": [{"method": "sft", "data": "open_endd", "init": "shared_base"}]},
            "open_ended",
        ),
        (
            {"configurations": [{"method": "sft", "data": "tasks", "init": "shard_base"}]},
            "shared_base",
        ),
        ({"audits": ["capability"]}, "evidence audit"),
        (
            {"configurations": [{"method": "sft", "data": "tasks", "init": "shared_base"}] * 2},
            "twice",
        ),
        ({"alpha": 1.5}, "less than 1"),
    ],
)
def test_bad_batteries_are_rejected(battery: dict, message: str) -> None:
    values = {
        "name": "b",
        "configurations": [{"method": "sft", "data": "tasks", "init": "shared_base"}],
    } | battery
    with pytest.raises(ValidationError, match=message):
        Battery.model_validate(values)


def test_a_battery_naming_an_unknown_method_is_rejected() -> None:
    bad = {
        "name": "b",
        "configurations": [{"method": "ppo", "data": "tasks", "init": "shared_base"}],
    }
    with pytest.raises(ValidationError, match="ppo"):
        BenchConfig.model_validate({"batteries": [bad]})


def test_missing_battery_file_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bench.yaml"
    cfg.write_text("batteries: [nowhere.yaml]\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml"):
        load_bench_config(cfg)
