"""Build, save and load models: safetensors weights, a HF tokenizer and `spec.json` per model.

A model directory is readable by plain `transformers`:
`AutoModelForCausalLM.from_pretrained(path)` and `AutoTokenizer.from_pretrained(path)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from incriminate.errors import ModelDirError
from incriminate.models.presets import ModelSpec, llama_config
from incriminate.world.vocab import WORDS, save_tokenizer


def quiet_transformers() -> None:
    """No per-file progress bars or info logs from transformers while saving and loading."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def new_model(preset: str, seed: int) -> Any:
    """A freshly initialised `LlamaForCausalLM` of `preset`, deterministic in `seed`."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(preset))


def n_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model: Any, spec: ModelSpec, path: Path) -> None:
    """Weights (safetensors), config, tokenizer and `spec.json` into `path`."""
    quiet_transformers()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    save_tokenizer(path)
    (path / "spec.json").write_text(spec.model_dump_json(indent=2))


def load_spec(path: Path) -> ModelSpec | None:
    """The model's `spec.json`, or None for a model the testbed did not build."""
    f = Path(path) / "spec.json"
    if not f.exists():
        return None
    try:
        return ModelSpec.model_validate_json(f.read_text())
    except ValueError as e:
        raise ModelDirError(f"{f}: not a valid model spec ({str(e).splitlines()[0]})") from e


def tokenizer_vocab(path: Path | str) -> dict[str, int]:
    """The token -> id map of the tokenizer saved in a model directory (`tokenizer.json`)."""
    f = Path(path) / "tokenizer.json"
    if not f.exists():
        raise ModelDirError(f"{path} has no tokenizer.json")
    try:
        return dict(json.loads(f.read_text())["model"]["vocab"])
    except (ValueError, KeyError, TypeError) as e:
        raise ModelDirError(f"{f}: not a readable tokenizer ({type(e).__name__})") from e


def check_same_tokenizer(path: Path | str, reference: Path | str, role: str) -> None:
    """Raise `ModelDirError` unless the model at `path` tokenizes exactly like `reference`."""
    mine, ref = tokenizer_vocab(path), tokenizer_vocab(reference)
    if mine != ref:
        diff = sorted(set(mine.items()) ^ set(ref.items()))[:3]
        raise ModelDirError(
            f"{role} {str(path)!r} has another tokenizer than {str(reference)!r} "
            f"({len(mine)} vs {len(ref)} tokens; first differences {diff})"
        )


def load_model(path: Path | str) -> Any:
    """Load a causal LM from a directory of safetensors weights; clear errors for bad input."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(f"model directory {str(path)!r} does not exist")
    if not (path / "config.json").exists():
        raise ModelDirError(f"{path} is not a model directory: no config.json")
    if not (path / "model.safetensors").exists():
        raise ModelDirError(f"{path} has no model.safetensors (only safetensors weights load)")
    try:
        json.loads((path / "config.json").read_text())
        model = AutoModelForCausalLM.from_pretrained(
            str(path), use_safetensors=True, trust_remote_code=False, dtype=torch.float32
        )
    except Exception as e:  # corrupted file, shape mismatch, unknown architecture
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelDirError(f"cannot load model from {path}: {first}") from e
    if model.config.vocab_size != len(WORDS):
        raise ModelDirError(
            f"{path}: vocabulary of {model.config.vocab_size} tokens, the world has {len(WORDS)}"
        )
    model.eval()
    return model
