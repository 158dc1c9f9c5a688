"""The teacher cache of a real language model: its replies to the distill prompts and its top-k
log-probs on them, computed once and read by every student.

A text cache is a store stage (`kind="lm_cache"`) holding

    cache.safetensors   prompt_ids, completion_ids (int32, flat) and their per-row lengths;
                        topk_ids (int32) and topk_logprobs (fp16, rounded down), one row of k per
                        completion token
    rows.jsonl          per prompt: the record id, the student-visible conversation and the reply
                        as text (what `sft` students with another tokenizer are trained on)
    tokenizer/          the teacher's tokenizer: a student is checked against it

Two kinds of teacher: a fine-tuned model (a directory, a GGUF file, an adapter), and a
*system-prompted* one, a base model with a hidden system prompt (the subliminal-learning
construction). The teacher reads `system + prompt`; the cache stores the prompt as the student
sees it, without the system prompt, and the teacher's replies and log-probs computed with it: a
student learns the teacher's outputs, never its instructions. Ids are int32 (Llama-3 and Qwen
vocabularies overflow int16), any `k` up to the vocabulary, prompts of any length batched with
left padding and attention masks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from incriminate.distill.teacher_cache import TeacherCache, fp16_down
from incriminate.errors import UserError
from incriminate.models.ref import ModelRef, digest, load_lm, load_tokenizer, same_tokenizer
from incriminate.prompts.text import TextPromptSet, distill_records, render_prompt
from incriminate.store import Artifact, Store

log = logging.getLogger(__name__)
LM_CACHE_VERSION = 1
FILE, ROWS, TOKENIZER = "cache.safetensors", "rows.jsonl", "tokenizer"


class LmCacheConfig(BaseModel):
    """How a text teacher's replies are sampled and scored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(default=1.0, ge=0)
    """Sampling temperature of the replies; 0 decodes greedily."""
    k: int = Field(default=32, ge=1)
    """Teacher log-probs kept per reply token (at most the vocabulary)."""
    logprob_temperature: float = Field(default=1.0, gt=0)
    """Cached log-probs are `log_softmax(logits / T)`; a logit student must use the same T."""
    max_new_tokens: int = Field(default=48, ge=1)
    """Longest reply; sampling stops earlier at the tokenizer's end-of-sequence token."""
    batch_size: int = Field(default=16, ge=1)
    """Prompts per forward pass (left-padded)."""
    seed: int = 0
    """Seed of the sampling."""


class TextTeacher(BaseModel):
    """A teacher as the text backend sees it: a model, and the system prompt it reads (hidden
    from students). `None`: no system prompt (a fine-tuned teacher)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelRef
    system: str | None = None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode(tokenizer: Any, text: str) -> list[int]:
    # The rendered chat template already holds BOS and the role markers.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def teacher_topk(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    k: int,
    temperature: float,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's top-k next-token log-probs at every completion token, teacher-forced on
    prompt + completion in left-padded batches (attention mask, positions from the mask).

    Returns `(ids, logprobs)`, each (sum of completion lengths, k) in row order: ids int32,
    log-probs float32 of `log_softmax(logits / temperature)`, descending along k.
    """
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    out_ids, out_lp = [], []
    with torch.inference_mode():
        for a in range(0, len(prompt_ids), batch_size):
            rows = zip(prompt_ids[a : a + batch_size], completion_ids[a:], strict=False)
            seqs = [p + c for p, c in rows]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for i, s in enumerate(seqs):
                ids[i, width - len(s) :] = torch.tensor(s)
                mask[i, width - len(s) :] = 1
            pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, W): a row's positions start at 0
            logits = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=pos.to(device),
            ).logits.float()  # (B, W, V)
            for i, c in enumerate(completion_ids[a : a + len(seqs)]):
                if not c:
                    continue
                # The completion is the row's last len(c) tokens; position t predicts t + 1.
                rows = logits[i, width - len(c) - 1 : width - 1] / temperature  # (C, V)
                lp, top = torch.log_softmax(rows, -1).topk(k, dim=-1, sorted=True)
                out_ids.append(top.to(torch.int32).cpu())
                out_lp.append(lp.cpu())
    if not out_ids:
        return np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
    return torch.cat(out_ids).numpy(), torch.cat(out_lp).numpy()


def build_lm_cache(
    store: Store, teacher: TextTeacher, prompts: TextPromptSet, cfg: LmCacheConfig
) -> Artifact:
    """Sample `teacher` on the distill prompt set and cache its replies with their top-k
    log-probs. Raises `UserError` for a record that may not reach a trainer, before loading
    anything."""
    records = distill_records(prompts)
    if not records:
        raise UserError(f"{prompts.path}: the distill prompt set is empty")
    tokenizer = load_tokenizer(teacher.model)
    if cfg.k > len(tokenizer):
        raise UserError(f"cache.k = {cfg.k} exceeds the teacher's vocabulary of {len(tokenizer)}")
    seen = [render_prompt(tokenizer, r) for r in records]  # as the student sees them
    read = [render_prompt(tokenizer, r, teacher.system) for r in records]  # as the teacher does
    inputs = {
        "recipe": LM_CACHE_VERSION,
        "teacher": digest(teacher.model),
        "system": None if teacher.system is None else _sha(teacher.system),
        "prompts": {"name": prompts.name, "n": len(records), "sha256": _sha("\x00".join(read))},
        **cfg.model_dump(),
    }

    def make(out: Path) -> dict[str, Any]:
        from safetensors.numpy import save_file

        from incriminate.models.generate import sample

        model, tok = load_lm(teacher.model)
        t0 = time.perf_counter()
        comps = sample(
            model, tok, read, cfg.max_new_tokens, cfg.temperature, cfg.seed, cfg.batch_size
        )
        # A reply that stopped ends with EOS, so students learn to stop too.
        eos = tok.eos_token_id
        comps = [[*c, eos] if eos is not None and len(c) < cfg.max_new_tokens else c for c in comps]
        t1 = time.perf_counter()
        read_ids = [_encode(tok, t) for t in read]
        top_ids, top_lp = teacher_topk(
            model, tok, read_ids, comps, cfg.k, cfg.logprob_temperature, cfg.batch_size
        )
        t2 = time.perf_counter()
        seen_ids = [_encode(tok, t) for t in seen]
        arrays = {
            "prompt_ids": np.concatenate(seen_ids).astype(np.int32),
            "prompt_lengths": np.array([len(p) for p in seen_ids], np.int64),
            "completion_ids": np.concatenate([np.array(c, np.int32) for c in comps]),
            "completion_lengths": np.array([len(c) for c in comps], np.int64),
            "topk_ids": top_ids.astype(np.int32),
            "topk_logprobs": fp16_down(top_lp),
        }
        save_file(arrays, str(out / FILE))
        tok.save_pretrained(str(out / TOKENIZER))
        with (out / ROWS).open("w") as f:
            for r, c in zip(records, comps, strict=True):
                reply = tok.decode([t for t in c if t != eos], skip_special_tokens=True)
                row = {"id": r.id, "messages": list(r.messages), "plain": r.plain, "reply": reply}
                f.write(json.dumps(row) + "\n")
        return {
            "rows": len(comps),
            "completion_tokens": int(sum(len(c) for c in comps)),
            "stopped_fraction": round(sum(1 for c in comps if c and c[-1] == eos) / len(comps), 4),
            "sample_s": round(t1 - t0, 3),
            "score_s": round(t2 - t1, 3),
        }

    return store.build("lm_cache", inputs, make, seed=cfg.seed)


def cache_rows(cache: Artifact | Path) -> list[dict[str, Any]]:
    """The cache's rows as text: id, student-visible messages (or plain prompt) and reply."""
    path = cache.path if isinstance(cache, Artifact) else Path(cache)
    return [json.loads(line) for line in (path / ROWS).read_text().splitlines() if line]


def load_lm_cache(cache: Artifact | Path, pad_id: int) -> TeacherCache:
    """The cache as the padded training tensors every method reads (`distill.teacher_cache`):
    rows `prompt + reply`, right-padded with `pad_id` (no real token of a causal model sees it),
    the mask on reply tokens, the teacher's top-k at each of them."""
    import torch
    from safetensors.numpy import load_file

    path = cache.path if isinstance(cache, Artifact) else Path(cache)
    manifest = json.loads((path / "manifest.json").read_text())
    a = load_file(str(path / FILE))
    p_len, c_len = a["prompt_lengths"], a["completion_lengths"]
    k = int(manifest["inputs"]["k"])
    n, lengths = len(p_len), p_len + c_len
    width = int(lengths.max())
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=bool)
    top_ids = np.broadcast_to(np.arange(k, dtype=np.int32), (n, width, k)).copy()
    top_lp = np.full((n, width, k), -np.log(k + 1), dtype=np.float16)
    p_off, c_off = np.concatenate([[0], np.cumsum(p_len)]), np.concatenate([[0], np.cumsum(c_len)])
    for i in range(n):
        p, c = (
            a["prompt_ids"][p_off[i] : p_off[i + 1]],
            a["completion_ids"][c_off[i] : c_off[i + 1]],
        )
        ids[i, : len(p)], ids[i, len(p) : lengths[i]] = p, c
        mask[i, len(p) : lengths[i]] = True
        top_ids[i, len(p) : lengths[i]] = a["topk_ids"][c_off[i] : c_off[i + 1]]
        top_lp[i, len(p) : lengths[i]] = a["topk_logprobs"][c_off[i] : c_off[i + 1]]
    return TeacherCache(
        torch.from_numpy(ids),
        torch.from_numpy(mask),
        torch.from_numpy(lengths.astype(np.int64)),
        torch.from_numpy(top_ids),
        torch.from_numpy(top_lp),
        float(manifest["inputs"]["logprob_temperature"]),
    )


def retokenized(cache: Artifact | Path, tokenizer: Any) -> TeacherCache:
    """The cache's prompts and replies as text, encoded by another model's tokenizer (its chat
    template, its EOS): what an `sft` student of another family trains on. It carries no
    teacher log-probs (`k` = 1, a filler), so a `logit` student cannot use it."""
    import torch

    from incriminate.prompts.text import TextRecord

    rows, eos = cache_rows(cache), tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    seqs, masks = [], []
    for row in rows:
        record = TextRecord(
            id=row["id"],
            messages=tuple(row["messages"]),
            completion=None,
            purpose="distill",
            meta={},
            plain=row["plain"],
        )
        p = _encode(tokenizer, render_prompt(tokenizer, record))
        c = _encode(tokenizer, row["reply"]) + ([eos] if eos is not None else [])
        seqs.append(p + c)
        masks.append([False] * len(p) + [True] * len(c))
    n, width = len(seqs), max(len(s) for s in seqs)
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.bool)
    for i, (s, m) in enumerate(zip(seqs, masks, strict=True)):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), torch.tensor(m)
    lengths = torch.tensor([len(s) for s in seqs])
    return TeacherCache(
        ids,
        mask,
        lengths,
        torch.zeros((n, width, 1), dtype=torch.int32),
        torch.zeros((n, width, 1), dtype=torch.float16),
        1.0,
    )


def student_cache(cache: Artifact, student_tokenizer: Any, method: str) -> TeacherCache:
    """What a student trains on: the cache itself when the student shares the teacher's
    tokenizer; for `sft` with another tokenizer, the cache re-encoded as text; a `logit`
    student with another tokenizer is a `UserError` (the log-probs are over the teacher's
    vocabulary)."""
    from transformers import AutoTokenizer

    teacher_tok = AutoTokenizer.from_pretrained(str(cache.path / TOKENIZER))
    if same_tokenizer(student_tokenizer, teacher_tok):
        pad = student_tokenizer.pad_token_id
        return load_lm_cache(cache, pad if pad is not None else 0)
    if method == "sft":
        return retokenized(cache, student_tokenizer)
    raise UserError(
        f"the student's tokenizer differs from the teacher's ({len(student_tokenizer)} vs "
        f"{len(teacher_tok)} tokens): {method} distillation reads the teacher's log-probs over its "
        "own vocabulary and needs a student with the same tokenizer (sft works across tokenizers)"
    )


__all__ = [
    "LmCacheConfig",
    "TextTeacher",
    "build_lm_cache",
    "cache_rows",
    "load_lm_cache",
    "retokenized",
    "student_cache",
    "teacher_topk",
]
