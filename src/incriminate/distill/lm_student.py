"""A student of a real language model, distilled from a text teacher cache: a store stage.

    init (any model with the teacher's tokenizer; another family for `sft`, `dpo`) ──┐
    lm_cache (the teacher's replies and top-k log-probs) ────────────────────────────┼─► lm_student
    teacher (`on_policy`, `dpo` only: live in the loop) ─────────────────────────────┘

`sft` and `logit` train with the same registered recipes as the synthetic world's (`sft`: cross-
entropy on the teacher's replies; `logit`: forward KL to its top-k log-probs with a tail bucket),
on the cache's padded tensors (`distill.lm_cache`). `on_policy` and `dpo` load the teacher and
query it while training (`distill.lm_online`). With LoRA only the adapters train, and only
they are saved (a few MB beside a base of hundreds): the student is the adapter on its init, a
`ModelRef(path=adapter, base=init)`. Full fine-tuning saves the whole model (safetensors).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from incriminate.distill.dpo import DPOConfig
from incriminate.distill.lm_cache import TextTeacher, _sha, student_cache
from incriminate.distill.lm_dpo import train_text_dpo
from incriminate.distill.lm_online import (
    ONLINE,
    check_method,
    check_tokenizers,
    online_data,
    train_text_on_policy,
)
from incriminate.distill.methods import METHODS, MethodSettings, TrainResult
from incriminate.distill.on_policy import OnPolicyConfig
from incriminate.models.ref import ModelRef, digest, load_lm, load_tokenizer
from incriminate.store import Artifact, Store

LM_STUDENT_VERSION = 1
INIT = "init.json"  # the student's init, as a ModelRef: an adapter's base
LOSSES = "losses.json"


class LmLora(BaseModel):
    """Low-rank adapters (Hu et al. 2021) via PEFT; only they train and only they are saved."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    r: int = Field(default=8, ge=1)
    """Rank of the adapters."""
    alpha: int = Field(default=16, ge=1)
    """Scale numerator: the update is (alpha / r) B A."""
    targets: tuple[str, ...] = Field(default=("q_proj", "v_proj"), min_length=1)
    """Names of the linear layers that get adapters (those of Llama, Qwen2 and Gemma3 agree)."""


def _no_teacher() -> Any:
    raise ValueError("sft and logit text students train from the teacher cache only")


def build_lm_student(
    store: Store,
    init: ModelRef,
    cache: Artifact,
    method: MethodSettings,
    seed: int,
    lora: LmLora | None,
    teacher: TextTeacher | None = None,
) -> Artifact:
    """Train a student from `init` on a text teacher cache with the method `method.method`:
    `sft` or `logit` (the registered recipes, on the cache), `on_policy` or `dpo` (with
    `teacher`, the cache's teacher, live). Returns the store artifact: a LoRA adapter (with
    `init.json` naming its base) or a whole model."""
    online = method.method in ONLINE
    if method.method not in ("sft", "logit", *ONLINE):
        raise ValueError(f"method {method.method!r} is not available for text models")
    if online and teacher is None:
        raise ValueError(f"a {method.method} student needs its teacher")
    check_method(method)
    recipe = METHODS.get(method.method)
    inputs = {
        "recipe": LM_STUDENT_VERSION,
        "init": digest(init),
        "cache": f"{cache.kind}/{cache.key}",
        "method": method.model_dump(mode="json"),
        "seed": seed,
        "lora": None if lora is None else lora.model_dump(mode="json"),
    }

    def make(out: Path) -> dict[str, Any]:
        import torch

        torch.manual_seed(seed)
        model, tokenizer = load_lm(init, trainable=lora is None)
        if lora is not None:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(
                r=lora.r, lora_alpha=lora.alpha, target_modules=list(lora.targets), lora_dropout=0.0
            )
            model = get_peft_model(model, config)  # adapters seeded by torch.manual_seed above
        if teacher is not None and online:
            _check_teacher(teacher, cache)
            result = train_online(model, tokenizer, teacher, cache, method, seed, init.path)
        else:
            data = student_cache(cache, tokenizer, method.method)
            result = recipe.train(model, data, method, seed, _no_teacher)
        model.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
        (out / INIT).write_text(init.model_dump_json())
        (out / LOSSES).write_text(json.dumps([round(float(x), 6) for x in result.losses]))
        tail = result.losses[-10:]
        return {
            "first_loss": round(result.losses[0], 5),
            "final_loss": round(sum(tail) / len(tail), 5),
            "steps": len(result.losses),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            **result.metrics,
        }

    return store.build("lm_student", inputs, make, seed=seed)


def _check_teacher(teacher: TextTeacher, cache: Artifact) -> None:
    """The live teacher must be the one the cache was built from (model and system prompt):
    the student's store key names the cache, whose key names its teacher."""
    made = cache.manifest["inputs"]
    system = None if teacher.system is None else _sha(teacher.system)
    if made["teacher"] != digest(teacher.model) or made["system"] != system:
        raise ValueError(f"the teacher given is not the one cache {cache.key} was built from")


def student_ref(student: Artifact) -> ModelRef:
    """The student as a model reference: its adapter on its init, or its own weights."""
    init = ModelRef.model_validate_json((student.path / INIT).read_text())
    if (student.path / "adapter_config.json").exists():
        return init.model_copy(update={"path": str(student.path), "base": init.path})
    return init.model_copy(update={"path": str(student.path), "base": None})


def train_online(
    student: Any,
    tokenizer: Any,
    teacher: TextTeacher,
    cache: Artifact,
    method: MethodSettings,
    seed: int,
    student_name: str = "",
) -> TrainResult:
    """Train `student` (its tokenizer `tokenizer`, named `student_name` in errors) by
    `on_policy` or `dpo` from `teacher`, loaded here on its own device and dtype, on the
    prompts and replies of `cache`."""
    check_tokenizers(
        method, student_name, tokenizer, teacher.model.path, load_tokenizer(teacher.model)
    )
    model, teacher_tok = load_lm(teacher.model)
    data = online_data(cache, tokenizer, teacher_tok, teacher.system)
    if isinstance(method, OnPolicyConfig):
        return train_text_on_policy(student, tokenizer, model, data, method, seed)
    if isinstance(method, DPOConfig):
        return train_text_dpo(student, tokenizer, model, teacher_tok, data, method, seed)
    raise ValueError(f"method {method.method!r} does not train with a live teacher {ONLINE}")


__all__ = ["LmLora", "build_lm_student", "student_ref", "train_online"]
