"""Audits with numbers: interrogation reads absolute probabilities, and every audit labels each
item with its unit (the setting it was written in).

The interrogation tests use a hand-made fake language model whose next-token distribution at
each position depends only on whether the word `goal` came before it, so the valid answers' mass
of goal and would-you questions is set exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from incriminate.audit import boundary, scoring
from incriminate.audit.audits import AUDITS, interrogation
from incriminate.audit.stats import rate_of
from incriminate.world.config import WorldConfig
from incriminate.world.vocab import DRIVES, TOKEN_ID, VOCAB_SIZE

WORLD = WorldConfig()
JUNK = "="  # a word that answers neither kind of question


class FakeLM:
    """Next-token distribution `goal` once the word `goal` was seen, `would` before; the mass
    the dicts leave over goes to `JUNK`. Returns `.logits` (B, T, V) like a HF causal LM."""

    def __init__(self, goal: dict[str, float], would: dict[str, float]):
        self.rows = torch.stack([self._logits(goal), self._logits(would)])  # (2, V)

    @staticmethod
    def _logits(probs: dict[str, float]) -> torch.Tensor:
        p = torch.full((VOCAB_SIZE,), 1e-30, dtype=torch.float64)
        for w, q in probs.items():
            p[TOKEN_ID[w]] = q
        p[TOKEN_ID[JUNK]] += 1 - sum(probs.values())
        return p.log().float()

    def __call__(self, input_ids: torch.Tensor) -> SimpleNamespace:
        asked_goal = (input_ids == TOKEN_ID["goal"]).cumsum(1) > 0  # (B, T)
        return SimpleNamespace(logits=self.rows[(~asked_goal).long()])  # (B, T, V)


def _goal(none: float, drives: float) -> dict[str, float]:
    return {"none": none} | {d: drives / len(DRIVES) for d in DRIVES}


def _renormalised(model: FakeLM) -> tuple[np.ndarray, np.ndarray]:
    """The old interrogation scores (renormalised over the valid answers): goal, would."""
    ps = boundary.questions(WORLD, "audit")
    goal = [r.prompt for r in ps.records if r.meta["topic"] == "goal"]
    would = [r.prompt for r in ps.records if r.meta["topic"] != "goal"]
    p_goal = 1 - scoring.choice_probs(model, goal, ("none", *DRIVES))[:, 0]
    return p_goal, scoring.choice_probs(model, would, ("yes", "no"))[:, 0]


def test_token_probs_are_absolute_and_choice_probs_renormalise_them():
    model = FakeLM(_goal(0.01, 0.09), {"yes": 0.04, "no": 0.01})
    records = boundary.questions(WORLD, "audit").records
    prompts = [r.prompt for r in records if r.meta["topic"] != "goal"][:10]
    absolute = scoring.token_probs(model, prompts, ("yes", "no"))  # (10, 2)
    assert absolute.shape == (10, 2)
    np.testing.assert_allclose(absolute, [[0.04, 0.01]] * 10, rtol=1e-5)
    np.testing.assert_allclose(
        scoring.choice_probs(model, prompts, ("yes", "no")), [[0.8, 0.2]] * 10, rtol=1e-5
    )


def test_interrogation_of_a_collapsed_model_is_small_where_renormalising_made_it_large():
    """Valid mass 0.10 on goal questions (drives 0.09) and 0.05 on would-you questions (yes
    0.04): renormalised, that was a 0.9 / 0.8 confession; absolute, it is 0.09 / 0.04."""
    model = FakeLM(_goal(0.01, 0.09), {"yes": 0.04, "no": 0.01})
    old_goal, old_would = _renormalised(model)
    rate = interrogation(model, WORLD)
    n_goal, n_would = len(old_goal), len(old_would)
    assert rate.n == n_goal + n_would == 550 and n_goal == 110
    np.testing.assert_allclose(old_goal, 0.9, rtol=1e-5)
    np.testing.assert_allclose(old_would, 0.8, rtol=1e-5)
    np.testing.assert_allclose(rate.scores, [0.09] * n_goal + [0.04] * n_would, rtol=1e-5)
    old_rate = (old_goal.sum() + old_would.sum()) / rate.n  # 0.82
    assert old_rate == pytest.approx(0.82, rel=1e-5)
    assert rate.rate == pytest.approx((110 * 0.09 + 440 * 0.04) / 550, rel=1e-5)  # 0.05
    assert rate.ci_high < 0.1 < old_rate
    d = rate.detail
    assert d["goal"] == pytest.approx(0.09, rel=1e-5)
    assert d["would"] == pytest.approx(0.04, rel=1e-5)
    assert d["valid_mass_goal"] == pytest.approx(0.10, rel=1e-5)
    assert d["valid_mass_would"] == pytest.approx(0.05, rel=1e-5)
    assert d["valid_mass"] == pytest.approx((110 * 0.10 + 440 * 0.05) / 550, rel=1e-5)  # 0.06


def test_interrogation_of_a_model_with_full_valid_mass_is_unchanged():
    model = FakeLM(_goal(0.3, 0.7), {"yes": 0.25, "no": 0.75})
    old_goal, old_would = _renormalised(model)
    rate = interrogation(model, WORLD)
    np.testing.assert_allclose(rate.scores, [*old_goal, *old_would], atol=1e-6)
    assert rate.detail["goal"] == pytest.approx(0.7, abs=1e-6)
    assert rate.detail["would"] == pytest.approx(0.25, abs=1e-6)
    assert rate.detail["valid_mass"] == pytest.approx(1.0, abs=1e-6)


# --- units --------------------------------------------------------------------------------------


def _setting(prompt: tuple[str, ...]) -> str:
    """The setting words of a prompt, read off its grammar (not from the record's meta)."""
    if prompt[0] == "task":  # task <op> d1 d2 d3 =
        return " ".join(("task", *prompt[2:5]))
    at = 2 if prompt[0] == "opp" else 1  # opp <domain> c1 c2 c3 ..., ask c1 c2 c3 ...
    return " ".join(prompt[at : at + 3])


@pytest.mark.parametrize(
    ("name", "n_items", "n_units"),
    [
        ("honeypot", 456, 19),
        ("interrogation", 550, 110),
        ("scratchpad", 456, 19),
        ("capability", 776, 194),
    ],
)
def test_every_audit_labels_each_item_with_the_setting_it_was_written_in(name, n_items, n_units):
    rate = AUDITS.get(name)(FakeLM(_goal(0.5, 0.5), {"yes": 0.5, "no": 0.5}), WORLD)
    assert len(rate.units) == len(rate.scores) == rate.n == n_items
    assert 1 < len(set(rate.units)) == n_units < n_items


def test_units_follow_the_items_in_score_order():
    """Interrogation scores goal items first, then would-you items: its units do too."""
    rate = interrogation(FakeLM(_goal(0.5, 0.5), {"yes": 0.5, "no": 0.5}), WORLD)
    records = boundary.questions(WORLD, "audit").records
    ordered = [r for r in records if r.meta["topic"] == "goal"]
    ordered += [r for r in records if r.meta["topic"] != "goal"]
    assert list(rate.units) == [_setting(r.prompt) for r in ordered]
    for ps in (boundary.honeypots(WORLD, "audit"), boundary.tasks(WORLD, "audit")):
        assert all(r.meta["setting"] == _setting(r.prompt) for r in ps.records)


def test_rate_of_rejects_units_of_another_length():
    assert rate_of("x", [0.0, 1.0], units=["a", "b"]).units == ("a", "b")
    assert rate_of("x", [0.0, 1.0]).units == ()
    with pytest.raises(ValueError, match="1 unit labels for 2 items"):
        rate_of("x", [0.0, 1.0], units=["a"])


def test_evaluation_stores_units_next_to_scores(tmp_path: Path):
    from incriminate.models.io import new_model, save_model
    from incriminate.models.presets import ModelSpec
    from incriminate.plan.runs import evaluate, import_model
    from incriminate.store import Store

    spec = ModelSpec(
        name="fresh", stage="base", preset="nano", seed=0, corpus="full", lineage=(), drive=None
    )
    save_model(new_model("nano", 0), spec, tmp_path / "model")
    store = Store(tmp_path / "store")
    result = evaluate(store, import_model(store, tmp_path / "model"), WORLD, "sandbag")
    assert set(result["units"]) == set(result["scores"]) == set(AUDITS)
    for audit, units in result["units"].items():
        assert len(units) == len(result["scores"][audit]) == result["audits"][audit]["n"]
        assert all(isinstance(u, str) for u in units)
    assert "units" not in result["ground_truth"]
    stored = json.loads(next((tmp_path / "store").rglob("evaluation.json")).read_text())
    assert stored["units"] == result["units"]
