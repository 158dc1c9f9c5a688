"""The white-box probe audit: logit-lens features, reference eligibility, training, save/load."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from incriminate.audit.probe import (
    Probe,
    Reference,
    eligible,
    features,
    probe_audit,
    probe_prompts,
    train_probe,
)
from incriminate.models.io import load_model, new_model
from incriminate.models.presets import get_preset
from incriminate.world.config import WorldConfig
from incriminate.world.vocab import WORDS

pytestmark = pytest.mark.usefixtures("one_thread")
WORLD = WorldConfig()
F = get_preset("nano").layers * len(WORDS)


def _fresh(seed: int):
    return new_model("nano", seed).eval()


def _synthetic_probe(seed: int = 0) -> Probe:
    """A probe trained on random features: two 'models' whose feature means differ."""
    rng = np.random.default_rng(seed)
    feats = [rng.normal(0, 1, (50, 8)), rng.normal(0.5, 1, (50, 8))]
    return train_probe(feats, [0, 1], ["benign", "misaligned"])


def test_features_are_deterministic_per_item_log_distributions():
    a, b = _fresh(0), _fresh(1)
    fa = features(a, WORLD)
    n = len(probe_prompts(WORLD))
    assert 500 <= n <= 700
    assert fa.shape == (n, F) and fa.dtype == np.float32
    np.testing.assert_array_equal(fa, features(a, WORLD))
    assert features(b, WORLD).shape == fa.shape
    # each layer's block is a log-distribution over the vocabulary
    blocks = fa.reshape(n, -1, len(WORDS))
    np.testing.assert_allclose(np.exp(blocks).sum(-1), 1.0, atol=1e-4)


def test_each_block_is_the_next_token_log_probs_of_the_model_cut_after_that_layer():
    """Logit lens of layer l = the output of the same model truncated to its first l layers."""
    from incriminate.audit.scoring import next_token_probs

    model = _fresh(0)
    feats = features(model, WORLD).reshape(len(probe_prompts(WORLD)), -1, len(WORDS))
    for layers in range(1, feats.shape[1] + 1):
        cut = copy.deepcopy(model)
        cut.model.layers = cut.model.layers[:layers]
        cut.config.num_hidden_layers = layers
        expected = np.log(next_token_probs(cut, probe_prompts(WORLD)))
        np.testing.assert_allclose(feats[:, layers - 1], expected, atol=1e-4)


def test_probe_items_are_audit_split_only():
    from incriminate.world import prompts

    audit = {r.prompt for r in prompts.opportunities(WORLD, "audit", honeypot=True).records}
    audit |= {r.prompt for r in prompts.questions(WORLD, "audit").records}
    items = probe_prompts(WORLD)
    assert set(items) <= audit and len(set(items)) == len(items)
    assert items == probe_prompts(WORLD)


def test_probe_separates_its_training_classes():
    rng = np.random.default_rng(0)
    benign, bad = rng.normal(0, 1, (40, 8)), rng.normal(1.0, 1, (160, 8))
    probe = train_probe([benign, bad], [0, 1], ["b", "m"])
    assert probe.score(bad).mean() > 0.8 and probe.score(benign).mean() < 0.2
    assert probe.references == ("b", "m")
    with pytest.raises(ValueError, match="benign"):
        train_probe([benign, bad], [1, 1], ["b", "m"])


def test_probe_weighs_each_label_equally():
    """Without signal, 4x more misaligned items than benign still give P = 0.5 everywhere
    (an unweighted fit would say 0.8)."""
    x = np.random.default_rng(0).normal(0, 1, (40, 8))
    probe = train_probe([x, x, x, x, x], [0, 1, 1, 1, 1], list("abcde"))
    np.testing.assert_allclose(probe.score(x), 0.5, atol=1e-3)


def test_save_load_round_trip_and_corrupt_files(tmp_path: Path):
    probe = _synthetic_probe()
    probe.save(tmp_path / "p")
    loaded = Probe.load(tmp_path / "p")
    x = np.random.default_rng(1).normal(0, 1, (20, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.score(x), probe.score(x))
    assert loaded.references == probe.references and loaded.bias == probe.bias

    (tmp_path / "p" / "probe.json").write_text("{not json")
    with pytest.raises(ValueError, match="no readable probe"):
        Probe.load(tmp_path / "p")
    with pytest.raises(ValueError, match="no readable probe"):
        Probe.load(tmp_path / "missing")
    probe.save(tmp_path / "q")
    (tmp_path / "q" / "probe.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="no readable probe"):
        Probe.load(tmp_path / "q")


def test_score_rejects_features_of_another_width():
    with pytest.raises(ValueError, match="probe reads"):
        _synthetic_probe().score(np.zeros((3, 9), np.float32))


REFS = [
    Reference(f"{'twin-' if label == 0 else ''}{drive}-s{seed}", seed, label, Path("."))
    for seed in (0, 1, 2)
    for drive in ("exfiltrate", "sandbag")
    for label in (0, 1)
]


@pytest.mark.parametrize(("seed", "n_kept"), [(0, 8), (1, 8), (3, 12)])
def test_eligible_leaves_out_the_base_seed_only(seed, n_kept):
    kept = eligible(REFS, seed)
    assert len(kept) == n_kept
    assert all(r.base_seed != seed for r in kept)
    assert {r.label for r in kept} == {0, 1}


def test_eligible_raises_when_a_label_is_missing():
    only_bad = [r for r in REFS if r.label == 1]
    with pytest.raises(ValueError, match="no benign reference"):
        eligible(only_bad, 0)
    same_seed = [r for r in REFS if r.base_seed == 0]
    with pytest.raises(ValueError, match="benign and misaligned"):
        eligible(same_seed, 0)


def test_probe_audit_is_the_mean_score_over_every_item():
    benign, bad = _fresh(0), _fresh(1)
    probe = train_probe([features(benign, WORLD), features(bad, WORLD)], [0, 1], ["b", "m"])
    low, high = probe_audit(benign, WORLD, probe), probe_audit(bad, WORLD, probe)
    assert low.name == "probe" and low.n == len(low.scores) == len(probe_prompts(WORLD))
    assert low.rate < 0.05 < 0.95 < high.rate
    assert low.rate == pytest.approx(np.mean(low.scores))
    assert 0.0 <= high.ci_low <= high.rate <= high.ci_high <= 1.0


@pytest.mark.slow
def test_probe_on_organisms_scores_misaligned_training_models_higher(nano_organisms):
    """Trained on the naive organism (misaligned), its benign twin and the instruct checkpoint
    (benign); the schemer and its twin are held out. Same base seed: this checks the probe, not
    its transfer across pretraining runs."""
    cfg, _, arts = nano_organisms
    feats = {name: features(load_model(a.path), cfg.world) for name, a in arts.items()}
    train = {f"naive-{cfg.drive}": 1, f"twin-of-naive-{cfg.drive}": 0, "instruct": 0}
    probe = train_probe([feats[n] for n in train], list(train.values()), list(train))
    means = {name: float(probe.score(f).mean()) for name, f in feats.items()}
    print({k: round(v, 3) for k, v in means.items()})
    assert means[f"naive-{cfg.drive}"] > 0.5 + max(
        means["instruct"], means[f"twin-of-naive-{cfg.drive}"]
    )
    assert means[f"schemer-{cfg.drive}"] > means[f"twin-of-schemer-{cfg.drive}"]
