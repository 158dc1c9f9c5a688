"""The digits auxiliary-logit repro: reduced runs through the CLI and the parts it is built on."""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from incriminate.cli.repro import app
from incriminate.distill import losses
from incriminate.repro import subliminal
from incriminate.repro.subliminal import Arm, StackedMLP, SubliminalConfig

TINY_ARMS = (
    Arm(name="same init, m=3", m=3, teacher="trained", student_init="same"),
    Arm(name="same init, m=1", m=1, teacher="trained", student_init="same"),
)


def _tiny(**overrides: object) -> SubliminalConfig:
    base: dict[str, object] = {
        "seeds": 2,
        "hidden": 32,
        "arms": TINY_ARMS,
        "teacher_epochs": 2,
        "student_epochs": 1,
        "noise_samples": 256,
    }
    return SubliminalConfig.model_validate({**base, **overrides})


def _means(result: dict) -> dict[str, float]:
    return {r["name"]: r["mean"] for r in result["arms"]}


@pytest.mark.slow
def test_quick_cli_run_shows_same_init_above_different_init(tmp_path: Path) -> None:
    start = time.perf_counter()
    res = CliRunner().invoke(
        app, ["subliminal-digits", "--quick", "--out", str(tmp_path), "--json"]
    )
    elapsed = time.perf_counter() - start
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    means = _means(result)
    assert elapsed < 30
    assert result["chance"] == 0.1
    assert means["teacher"] > 0.9
    assert means["same init, m=3"] > means["different init, m=3"]
    assert means["same init, m=10"] > means["different init, m=10"] + 0.05
    assert means["same init, m=10"] > 0.15
    assert all(r["n"] == 4 for r in result["arms"])
    assert json.loads((tmp_path / "repro.json").read_text())["arms"] == result["arms"]
    assert "| same init, m=10 |" in (tmp_path / "repro.md").read_text()
    if importlib.util.find_spec("matplotlib") is not None:  # an optional dependency for now
        assert (tmp_path / "repro.png").read_bytes()[:4] == b"\x89PNG"


def test_run_is_deterministic_given_seeds() -> None:
    a, b = subliminal.run(_tiny()), subliminal.run(_tiny())
    assert a["arms"] == b["arms"]


def test_m1_student_never_moves() -> None:
    # A softmax over one logit is identically 1: the KL and its gradient are exactly 0,
    # so Adam never moves the student and it keeps the accuracy of its init W0.
    result = subliminal.run(_tiny())
    rows = {r["name"]: r for r in result["arms"]}
    assert rows["same init, m=1"]["final_kl"] == 0.0
    assert rows["same init, m=1"]["per_seed"] == rows["init W0"]["per_seed"]
    assert rows["same init, m=3"]["final_kl"] > 0.0


def test_stacked_loss_gives_each_model_its_solo_gradient() -> None:
    sizes = [64, 16, 16, 13]
    inits = [subliminal.init_params(s, sizes) for s in (0, 1)]
    x = torch.rand(2, 8, 64) * 2 - 1  # (S, b, 64)
    y = torch.randint(0, 10, (2, 8))

    def grads(stack: StackedMLP, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        n = len(stack.weights[0])
        (losses.cross_entropy(stack(xs)[..., :10], ys) * n).backward()
        grad = stack.weights[0].grad
        assert grad is not None
        return grad

    together = grads(StackedMLP(inits), x, y)
    alone = grads(StackedMLP(inits[1:]), x[1:], y[1:])
    torch.testing.assert_close(together[1:], alone, rtol=1e-5, atol=1e-7)


def test_t_interval_matches_hand_computation() -> None:
    mean, low, high = subliminal.t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert mean == pytest.approx(2.0)
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half))


def test_unwritable_out_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = CliRunner().invoke(app, ["subliminal-digits", "--out", str(blocker / "sub")])
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0
    assert "cannot write to --out" in res.stderr


def test_too_few_seeds_is_a_one_line_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["subliminal-digits", "--seeds", "1", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "--seeds must be at least 2" in res.stderr


def test_quick_and_paper_scale_exclude_each_other(tmp_path: Path) -> None:
    args = ["subliminal-digits", "--quick", "--paper-scale", "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "exclude each other" in res.output
    assert not (tmp_path / "o").exists()


def test_paper_scale_has_ten_times_the_noise() -> None:
    paper, default = SubliminalConfig.paper_scale(), SubliminalConfig()
    assert paper.noise_samples == 60_000 == 10 * default.noise_samples
    assert paper.arms == default.arms and paper.seeds == default.seeds
