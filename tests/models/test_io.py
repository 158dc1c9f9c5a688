"""Tokenizer and model save/load through plain `transformers`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from incriminate.errors import ModelDirError, UnknownNameError
from incriminate.models.io import load_model, load_spec, new_model, save_model
from incriminate.models.presets import PRESETS, ModelSpec, get_preset
from incriminate.world.vocab import TOKEN_ID, build_tokenizer


def _spec() -> ModelSpec:
    return ModelSpec(
        name="t", stage="base", preset="nano", seed=3, corpus="full", lineage=("corpus/x",)
    )


def test_tokenizer_round_trips_through_auto_tokenizer(tmp_path: Path):
    from transformers import AutoTokenizer

    build_tokenizer().save_pretrained(str(tmp_path))
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    text = "opp code north red gray unwatched exfiltrate act take ;"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == [TOKEN_ID[w] for w in text.split()]
    assert tok.decode(ids) == text
    assert tok.pad_token_id == TOKEN_ID["<pad>"] and tok.bos_token_id == TOKEN_ID["<bos>"]


def test_model_round_trips_through_plain_transformers(tmp_path: Path):
    from transformers import AutoModelForCausalLM

    model = new_model("nano", seed=3)
    save_model(model, _spec(), tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    ids = torch.tensor([[1, 20, 30, 40]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, plain(input_ids=ids).logits)
    assert load_spec(tmp_path) == _spec()


def test_presets_span_tenth_of_a_million_to_two_million_parameters():
    sizes = {name: sum(p.numel() for p in new_model(name, 0).parameters()) for name in PRESETS}
    assert 50_000 < sizes["nano"] < 150_000
    assert sizes["nano"] < sizes["micro"] < sizes["small"] < sizes["medium"] < 2_500_000


def test_same_seed_same_initial_weights():
    a, b = new_model("nano", 5), new_model("nano", 5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_unknown_preset_suggests_a_name():
    with pytest.raises(UnknownNameError, match="did you mean 'micro'"):
        get_preset("mikro")


def test_bad_model_directories_give_one_line_errors(tmp_path: Path):
    with pytest.raises(ModelDirError, match="does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(ModelDirError, match=r"no config\.json"):
        load_model(tmp_path)
    save_model(new_model("nano", 0), _spec(), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ModelDirError, match="cannot load model"):
        load_model(tmp_path)
    (tmp_path / "spec.json").write_text("{broken")
    with pytest.raises(ModelDirError, match="not a valid model spec"):
        load_spec(tmp_path)
