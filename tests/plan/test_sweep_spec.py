"""Sweep files: the grid's expansion and the listed points, and the one-line errors for bad
input."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from incriminate.distill.dpo import DPOConfig
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

    # seeds=2 contains every stage of seeds=1 but the cache read, which pools every cache of
    # its experiment: the merged plan is the larger one plus the smaller one's cache read.
    def nodes(pl: Plan, read: bool = False) -> set[str]:
        return {i for i, n in pl.nodes.items() if (n.kind == "cache_read") == read}

    assert nodes(alone[0]) < nodes(alone[1])
    assert set(plan.nodes) == set(alone[1].nodes) | nodes(alone[0], read=True)
    # one cache read per teacher tested against C: U and the quick grid's 2 references
    assert len(nodes(alone[0], read=True)) == len(nodes(alone[1], read=True)) == 3
    assert set(exps[0].all()) - nodes(alone[0], read=True) <= set(exps[1].all())
    kinds = [n.kind for n in plan.nodes.values()]
    # quick grid, 2 seeds: 2 methods x 2 data x 2 inits x 2 seeds x 4 roles (U, C and the 2
    # references) students.
    assert kinds.count("student") == 64 and kinds.count("evaluation") == 64 + 4
    assert kinds.count("teacher_cache") == 2 * 2 * 4 and kinds.count("instruct") == 2
    assert kinds.count("organism") == 2 and kinds.count("reference") == 2
    assert kinds.count("corpus") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grid: {}\n", "the grid is empty"),
        ("grid:\n  seeds: []\n", "field 'seeds' has no values"),
        ("quick: true\n", "needs 'grid' (config fields -> lists of values), 'points'"),
        ("grid: [seeds]\n", "'grid' must map config fields to lists"),
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
        # listed points
        ("points: []\n", "the points list is empty"),
        ("points: {seeds: 2}\n", "'points' must list mappings of config fields to values"),
        ("points:\n  - seeds=2\n", "points[0] must map config fields to values, got 'seeds=2'"),
        (
            "points:\n  - {seeds: 2}\n  - {teachr: naive}\n",
            "points[1] field 'teachr': 'teachr' is not a field of the config "
            "(did you mean 'teacher'?)",
        ),
        (
            "points:\n  - {name: lo, methods.0.divergnce: jsd}\n",
            "point 'lo' field 'methods.0.divergnce': 'divergnce' is not a field of methods.0",
        ),
        ("points:\n  - {name: a/b, seeds: 2}\n", "points[0]: name 'a/b' may hold only letters"),
        ("points:\n  - {name: 7, seeds: 2}\n", "points[0]: name 7 may hold only letters"),
        (
            "points:\n  - {name: x, seeds: 2}\n  - {name: x, seeds: 1}\n",
            "points[1]: id 'x' is taken by point 'x'",
        ),
        (
            "grid:\n  seeds: [1, 2]\npoints:\n  - {name: p001, seeds: 4}\n",
            "points[0]: id 'p001' is taken by grid point p001",
        ),
        ("points:\n  - {seeds: 0}\n", "points[0] (seeds=0): invalid seeds"),
        (
            "points:\n  - {name: two, seeds: 2}\n  - {seeds: 2}\n",
            "point 'two' and points[1] (seeds=2) are the same config",
        ),
        (
            "config: {seeds: 2}\ngrid:\n  seeds: [1, 2]\npoints:\n  - {name: base}\n",
            "grid point p001 and point 'base' (the base) are the same config",
        ),
    ],
)
def test_bad_sweep_files_are_one_line_config_errors(tmp_path: Path, text: str, message: str):
    with pytest.raises(ConfigError) as e:
        load_sweep(_write(tmp_path, text))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_listed_points_follow_the_grid(tmp_path: Path):
    path = _write(
        tmp_path,
        "quick: true\nconfig: {seeds: 1}\ngrid:\n  seeds: [2, 3]\n"
        "points:\n"
        "  - {name: base}\n"  # no fields: the base itself
        "  - {data: full_mix, transforms.filtered: true}\n"
        "  - name: lora-8\n    lora.r: 8\n    inits: [shared_base]\n"
        "  - {name: dpo-choice, methods.0.ranking: choice, data: full_mix,\n"
        "     methods: [{method: dpo, train: {steps: 5}}]}\n",
    )
    spec, name, points = load_sweep(path)
    assert name == "grid" and spec.points is not None and len(spec.points) == 4
    assert [p.id for p in points] == ["p000", "p001", "base", "p003", "lora-8", "dpo-choice"]
    base = load_config(overrides=["seeds=1"], quick=True)
    assert [p.cfg.seeds for p in points[:2]] == [2, 3]
    assert points[2].cfg == base and points[2].overrides == {}
    # A scalar for a list field is a one-element list, as in the grid.
    assert points[3].overrides == {"data": "full_mix", "transforms.filtered": True}
    # Each point is the config that the same dotted overrides of the same base give.
    assert points[3].cfg == load_config(
        overrides=["seeds=1", "data=[full_mix]", "transforms.filtered=true"], quick=True
    )
    assert points[4].cfg == load_config(
        overrides=["seeds=1", "lora.r=8", "inits=[shared_base]"], quick=True
    )
    # `methods` is set first, then the field inside it (in whatever order the file gives them).
    (dpo,) = points[5].cfg.methods
    assert isinstance(dpo, DPOConfig) and dpo.ranking == "choice" and dpo.train.steps == 5
    assert len({p.cfg.config_hash() for p in points}) == len(points)


def test_a_list_of_points_alone_is_a_sweep(tmp_path: Path):
    path = _write(tmp_path, "points:\n  - {seeds: 1}\n  - {seeds: 2, name: two}\n")
    spec, _, points = load_sweep(path)
    assert spec.grid == {} and [p.id for p in points] == ["p000", "two"]
    assert [p.cfg.seeds for p in points] == [1, 2]
    assert points[1].overrides == {"seeds": 2}  # the name is the id, not an override


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
