"""Sweep files: the grid's expansion into points and the one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from incriminate.errors import ConfigError
from incriminate.plan.config import load_config
from incriminate.plan.experiment import plan_experiment
from incriminate.plan.graph import Plan
from incriminate.plan.sweep import load_sweep, plan_sweep


def _write(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_grid_is_the_product_of_its_fields_in_order(tmp_path: Path):
    (tmp_path / "base.yaml").write_text("seeds: 2\nprompts: 64\n")
    path = _write(
        tmp_path,
        "base: base.yaml\nquick: true\nconfig: {alpha: 0.1}\n"
        "grid:\n  teacher: [schemer, naive]\n  data: [open_ended, full_mix, goal_targeted]\n"
        "  transforms.filtered: [false, true]\n",
    )
    spec, name, points = load_sweep(path)
    assert name == "grid" and spec.quick
    assert len(points) == 2 * 3 * 2
    assert [p.id for p in points[:3]] == ["p000", "p001", "p002"]
    first, last = points[0], points[-1]
    assert first.overrides == {
        "teacher": "schemer",
        "data": "open_ended",
        "transforms.filtered": False,
    }
    assert last.overrides == {
        "teacher": "naive",
        "data": "goal_targeted",
        "transforms.filtered": True,
    }
    # A scalar for a list field is a one-element list; the base file and `config` apply under it.
    assert last.cfg.data == ("goal_targeted",) and last.cfg.transforms.filtered
    assert last.cfg.teacher == "naive" and last.cfg.seeds == 2 and last.cfg.alpha == 0.1
    quick = load_config(quick=True)
    assert last.cfg.build == quick.build and last.cfg.methods == quick.methods
    assert len({p.cfg.config_hash() for p in points}) == len(points)


def test_points_share_their_common_stages_in_one_plan(tmp_path: Path):
    path = _write(tmp_path, "quick: true\ngrid:\n  seeds: [1, 2]\n")
    _, _, points = load_sweep(path)
    plan, exps = plan_sweep(points)
    alone = [Plan() for _ in points]
    for p, pl in zip(points, alone, strict=True):
        plan_experiment(pl, p.cfg)
    # seeds=2 contains every stage of seeds=1: the merged plan is the larger one.
    assert set(alone[0].nodes) < set(alone[1].nodes)
    assert set(plan.nodes) == set(alone[1].nodes)
    assert set(exps[0].all()) <= set(exps[1].all())
    kinds = [n.kind for n in plan.nodes.values()]
    # quick grid, 2 seeds: 2 methods x 2 data x 2 inits x 2 seeds x 2 roles students.
    assert kinds.count("student") == 32 and kinds.count("evaluation") == 32 + 2
    assert kinds.count("teacher_cache") == 2 * 2 * 2 and kinds.count("instruct") == 2
    assert kinds.count("organism") == 2 and kinds.count("corpus") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grid: {}\n", "the grid is empty"),
        ("grid:\n  seeds: []\n", "field 'seeds' has no values"),
        ("quick: true\n", "'grid' must map config fields to lists"),
        ("grid:\n  seeds: 3\n", "grid field 'seeds' must list its values"),
        (
            "grid:\n  teachr: [naive]\n",
            "'teachr' is not a field of the config (did you mean 'teacher'?)",
        ),
        ("grid:\n  build.presett: [nano]\n", "'presett' is not a field of build"),
        ("grid:\n  methods.5.train.steps: [3]\n", "'5' is not an index below 2 in methods"),
        ("grid:\n  seeds.x: [3]\n", "seeds is a value, not a section"),
        (
            "grid:\n  teacher: [schemer, villain]\n",
            "grid point p001 (teacher=villain): invalid teacher",
        ),
        ("grid:\n  seeds: [2, 2]\n", "grid points p000 and p001 (seeds=2) are the same config"),
        ("base: missing.yaml\ngrid:\n  seeds: [1]\n", "does not exist"),
        (
            "config: {seeds: 0}\ngrid:\n  teacher: [naive]\n",
            "the sweep's base config: invalid seeds",
        ),
        ("- a\n- b\n", "must hold a mapping"),
    ],
)
def test_bad_sweep_files_are_one_line_config_errors(tmp_path: Path, text: str, message: str):
    with pytest.raises(ConfigError) as e:
        load_sweep(_write(tmp_path, text))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_keys_and_bad_names_are_rejected(tmp_path: Path):
    with pytest.raises(ValidationError, match="extra"):
        load_sweep(_write(tmp_path, "gird: {}\ngrid:\n  seeds: [1]\n"))
    with pytest.raises(ValidationError, match="may hold only"):
        load_sweep(_write(tmp_path, "name: ../x\ngrid:\n  seeds: [1]\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "nope.yaml")


def test_the_shipped_sweeps_expand(tmp_path: Path):
    shipped = sorted(Path(__file__).parents[2].joinpath("configs", "sweeps").glob("*.yaml"))
    assert shipped, "configs/sweeps/ ships at least one sweep"
    for path in shipped:
        _, _, points = load_sweep(path)
        assert points
