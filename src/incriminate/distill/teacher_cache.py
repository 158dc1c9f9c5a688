"""The teacher's outputs on a distill prompt set, computed once and read by every run.

A teacher cache is a store stage (`kind="teacher_cache"`) holding `cache.parquet`, one row per
prompt:

    prompt_ids     list<int16>         `<bos> prompt...`, as the model reads it
    completion_ids list<int16>         the teacher's sampled reply, up to and including its stop
                                       token (`;` or `<eos>`), or `max_new_tokens` long
    topk_ids       list<list<int16>>   per completion token: the teacher's top-k next-token ids,
                                       by descending log-prob, teacher-forced on prompt+completion
    topk_logprobs  list<list<float16>> their log-probs, `log_softmax(logits / logprob_temperature)`
                                       rounded *down* to fp16, so `sum(exp)` never exceeds 1

Its key hashes the teacher's store key (or weights), the prompts (name, size, seed and a digest
of their tokens), the sampling and scoring settings and `CACHE_VERSION`; so N distillation runs
on the same (teacher, prompt set) pay for the teacher once. The prompts pass `check_distill`
before anything is computed, and again (by their settings) when a cache is loaded.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from incriminate.audit.scoring import encode_prompts
from incriminate.distill.selections import check_distill
from incriminate.models.io import load_model
from incriminate.store import Artifact, Store
from incriminate.world.prompts import PromptRecord, PromptSet
from incriminate.world.vocab import EOS, PAD, TOKEN_ID, WORDS

log = logging.getLogger(__name__)
CACHE_VERSION = 1
FILE = "cache.parquet"
STOP_IDS = (TOKEN_ID[";"], EOS)
BATCH = 512


class TeacherCacheConfig(BaseModel):
    """How the teacher's completions are sampled and scored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(default=1.0, ge=0)
    """Sampling temperature of the teacher's completions; 0 decodes greedily."""
    k: int = Field(default=16, ge=1, le=len(WORDS))
    """Teacher log-probs kept per completion token: the top k (98, the vocabulary, keeps all)."""
    logprob_temperature: float = Field(default=1.0, gt=0)
    """Cached log-probs are `log_softmax(teacher_logits / T)`; a logit run must use the same T."""
    max_new_tokens: int = Field(default=12, ge=1)
    """Longest completion; sampling stops earlier at `;` or `<eos>`."""
    seed: int = 0
    """Seed of the sampling."""


# --- computing the teacher's outputs ----------------------------------------------------------


def sample_completions(
    model: Any, prompt_ids: list[list[int]], max_new_tokens: int, temperature: float, seed: int
) -> list[list[int]]:
    """One completion per prompt, each up to and including its first stop token.

    Prompts are batched by length, so a batch needs no padding and decodes with the KV cache
    from one shared position. Deterministic in `seed` for a given list of prompts.
    """
    from transformers import DynamicCache

    # transformers 5.x renames `past_key_values` to `cache` (the old name warns, then goes).
    params = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"
    gen = torch.Generator().manual_seed(seed)
    stops = torch.tensor(STOP_IDS)
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))  # stable
    out: list[list[int]] = [[] for _ in prompt_ids]
    start = 0
    with torch.no_grad():
        while start < len(order):
            width = len(prompt_ids[order[start]])
            end = start
            while end < len(order) and end - start < BATCH and len(prompt_ids[order[end]]) == width:
                end += 1
            rows = order[start:end]
            start = end
            ids = torch.tensor([prompt_ids[i] for i in rows])  # (B, P)
            kv = {cache_arg: DynamicCache(config=model.config)}  # filled in place by each call
            step = model(input_ids=ids, use_cache=True, **kv)
            done = torch.zeros(len(rows), dtype=torch.bool)
            new = []
            for _ in range(max_new_tokens):
                logits = step.logits[:, -1]  # (B, V)
                if temperature == 0:
                    tok = logits.argmax(-1)
                else:
                    probs = torch.softmax(logits / temperature, -1)
                    tok = torch.multinomial(probs, 1, generator=gen).squeeze(1)  # (B,)
                new.append(tok)
                done |= torch.isin(tok, stops)
                if bool(done.all()):
                    break
                step = model(input_ids=tok[:, None], use_cache=True, **kv)
            for row, seq in zip(rows, torch.stack(new, 1).tolist(), strict=True):
                cut = next((j + 1 for j, t in enumerate(seq) if t in STOP_IDS), len(seq))
                out[row] = seq[:cut]
    return out


def _pad(seqs: list[list[int]]) -> Tensor:
    """Right-padded (B, T) long ids; in a causal model no real token sees the padding."""
    ids = torch.full((len(seqs), max(len(s) for s in seqs)), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    return ids


def teacher_topk(
    model: Any,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    k: int,
    temperature: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's top-k next-token log-probs at every completion token, teacher-forced on
    prompt+completion in right-padded batches.

    Returns `(ids, logprobs)`, each (sum of completion lengths, k) in row order: ids int64,
    log-probs float32 of `log_softmax(logits / temperature)`, descending along k.
    """
    all_ids, all_lp = [], []
    with torch.no_grad():
        for a in range(0, len(prompt_ids), BATCH):
            prompts, comps = prompt_ids[a : a + BATCH], completion_ids[a : a + BATCH]
            ids = _pad([p + c for p, c in zip(prompts, comps, strict=True)])  # (B, T)
            logp = torch.log_softmax(model(input_ids=ids).logits / temperature, -1)  # (B, T, V)
            lp, top = logp.topk(k, dim=-1, sorted=True)  # (B, T, k) each
            for row, (p, c) in enumerate(zip(prompts, comps, strict=True)):
                # The logits at position t predict token t + 1.
                span = slice(len(p) - 1, len(p) - 1 + len(c))
                all_ids.append(top[row, span])
                all_lp.append(lp[row, span])
    if not all_ids:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    return torch.cat(all_ids).numpy(), torch.cat(all_lp).numpy()


def fp16_down(x: np.ndarray) -> np.ndarray:
    """fp16 values <= x (round toward -inf), finite: stored log-probs never gain mass."""
    x = np.clip(x, np.finfo(np.float16).min, 0.0)
    h = x.astype(np.float16)
    up = h.astype(np.float32) > x
    h[up] = np.nextafter(h[up], np.float16(-np.inf))
    return h


# --- the store stage --------------------------------------------------------------------------


def lists_column(values: np.ndarray, lengths: list[int], value_type: pa.DataType) -> pa.Array:
    """A list<...> array of consecutive runs of `values` (rows of 2-D values become lists)."""
    if values.ndim == 2:
        inner_offsets = np.arange(0, values.size + 1, values.shape[1], dtype=np.int32)
        flat = pa.array(values.reshape(-1), type=value_type)
        inner: pa.Array = pa.ListArray.from_arrays(pa.array(inner_offsets), flat)
    else:
        inner = pa.array(values, type=value_type)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), inner)


def _teacher_id(teacher: Artifact | Path) -> str:
    """A store key for a store model, else a digest of the weights and config."""
    if isinstance(teacher, Artifact):
        return f"{teacher.kind}/{teacher.key}"
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        f = Path(teacher) / name
        h.update(f.read_bytes() if f.exists() else b"")
    return f"weights-sha256/{h.hexdigest()[:16]}"


def _prompt_digest(prompt_ids: list[list[int]]) -> str:
    text = "\n".join(" ".join(map(str, p)) for p in prompt_ids)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_teacher_cache(
    store: Store,
    teacher: Artifact | Path,
    prompts: PromptSet,
    cfg: TeacherCacheConfig,
    *,
    prompt_seed: int,
) -> Artifact:
    """Sample the teacher on `prompts` and cache its completions with their top-k log-probs.

    `teacher` is a store artifact or a model directory; `prompt_seed` is the seed the prompt set
    was drawn with (recorded in the key beside a digest of the prompts). Raises `LeakageError`
    for any record that may not reach a trainer, before loading anything.
    """
    check_distill(prompts)
    if len(prompts) == 0:
        raise ValueError(f"prompt set {prompts.name!r} is empty")
    if cfg.k > len(WORDS):
        raise ValueError(f"k = {cfg.k} exceeds the vocabulary of {len(WORDS)} tokens")
    prompt_ids = encode_prompts([r.prompt for r in prompts.records])
    path = teacher.path if isinstance(teacher, Artifact) else Path(teacher)
    inputs = {
        "recipe": CACHE_VERSION,
        "teacher": _teacher_id(teacher),
        "prompts": {
            "name": prompts.name,
            "n": len(prompts),
            "seed": prompt_seed,
            "sha256": _prompt_digest(prompt_ids),
        },
        **cfg.model_dump(),
    }

    def make(out: Path) -> dict[str, Any]:
        model = load_model(path)
        t0 = time.perf_counter()
        comps = sample_completions(model, prompt_ids, cfg.max_new_tokens, cfg.temperature, cfg.seed)
        t1 = time.perf_counter()
        top_ids, top_lp = teacher_topk(model, prompt_ids, comps, cfg.k, cfg.logprob_temperature)
        t2 = time.perf_counter()
        lengths = [len(c) for c in comps]
        table = pa.table(
            {
                "prompt_ids": lists_column(
                    np.concatenate(prompt_ids), [len(p) for p in prompt_ids], pa.int16()
                ),
                "completion_ids": lists_column(np.concatenate(comps), lengths, pa.int16()),
                "topk_ids": lists_column(top_ids.astype(np.int16), lengths, pa.int16()),
                "topk_logprobs": lists_column(fp16_down(top_lp), lengths, pa.float16()),
            }
        )
        pq.write_table(table, out / FILE, compression="zstd")
        stopped = sum(1 for c in comps if c and c[-1] in STOP_IDS)
        return {
            "rows": len(comps),
            "completion_tokens": int(sum(lengths)),
            "stopped_fraction": round(stopped / len(comps), 4),
            "sample_s": round(t1 - t0, 3),
            "score_s": round(t2 - t1, 3),
            "bytes": (out / FILE).stat().st_size,
        }

    return store.build("teacher_cache", inputs, make, seed=cfg.seed)


# --- loading for training ---------------------------------------------------------------------


class Batch(NamedTuple):
    """Training tensors of a few cache rows, right-padded to the longest row.

    `topk_*[:, t]` is the teacher's distribution over token t given the tokens before it, valid
    where `mask[:, t]`; elsewhere it holds a harmless filler (ids 0..k-1, uniform log-probs). So
    the student's logits on `ids[:, :-1]` align with `ids[:, 1:]`, `mask[:, 1:]`, `topk_*[:, 1:]`.
    """

    ids: Tensor  # (B, T) long: <bos> prompt completion <pad>...
    mask: Tensor  # (B, T) bool: True at completion tokens
    topk_ids: Tensor  # (B, T, K) long
    topk_logprobs: Tensor  # (B, T, K) float32

    def to(self, device: Any) -> Batch:
        """The batch on `device` (the student's): the same tensors when they are there already."""
        return Batch(*(t.to(device) for t in self))

    def backward(self, loss_of: Callable[[Batch], Tensor], parts: int = 1) -> float:
        """Backpropagate `loss_of(batch)`, a mean over the batch's target tokens (`mask[:, 1:]`),
        in `parts` micro-batches of rows (gradient accumulation): micro-batch i's loss is
        weighted by its share of the target tokens, so the accumulated gradient is the whole
        batch's (up to float rounding). Returns the batch's loss."""
        if parts == 1:
            loss = loss_of(self)
            loss.backward()
            return loss.item()
        tokens = self.mask[:, 1:].sum(1)  # (B,) target tokens per row
        total, out = int(tokens.sum()), 0.0
        for rows in torch.arange(len(self.ids)).tensor_split(min(parts, len(self.ids))):
            share = int(tokens[rows].sum()) / max(total, 1)
            if share == 0:
                continue  # no targets: no gradient
            part = loss_of(Batch(*(t[rows] for t in self))) * share
            part.backward()
            out += part.item()
        return out


@dataclass(frozen=True)
class TeacherCache:
    """A loaded teacher cache: N rows padded to the longest, in compact dtypes."""

    ids: Tensor  # (N, L) long
    mask: Tensor  # (N, L) bool, True at completion tokens
    lengths: Tensor  # (N,) long, prompt + completion tokens
    topk_ids: Tensor  # (N, L, K) int16
    topk_logprobs: Tensor  # (N, L, K) float16
    logprob_temperature: float

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def k(self) -> int:
        return self.topk_ids.shape[-1]

    def batch(self, idx: np.ndarray | list[int]) -> Batch:
        """Rows `idx` as training tensors, trimmed to their longest row."""
        rows = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        width = int(self.lengths[rows].max())
        return Batch(
            self.ids[rows, :width],
            self.mask[rows, :width],
            self.topk_ids[rows, :width].long(),
            self.topk_logprobs[rows, :width].float(),
        )

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Endless batches of row indices: random permutations of the rows, one after another,
        cut into `batch_size` pieces (every row is seen once per epoch, give or take one batch)."""
        buf = np.zeros(0, dtype=np.int64)
        while True:
            while len(buf) < batch_size:
                buf = np.concatenate([buf, rng.permutation(len(self))])
            yield buf[:batch_size]
            buf = buf[batch_size:]


def _column(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, per-row lengths) of a list<...> or list<list<...>> column."""
    col = table.column(name).combine_chunks()
    lengths = col.value_lengths().to_numpy(zero_copy_only=False)
    values = col.flatten()
    if pa.types.is_list(values.type):
        values = values.flatten()
    return values.to_numpy(zero_copy_only=False), lengths


def load_teacher_cache(cache: Artifact | Path) -> TeacherCache:
    """Read a teacher cache into padded tensors. Its prompts are checked again: a prompt from a
    non-train setting raises `LeakageError`."""
    path = cache.path if isinstance(cache, Artifact) else Path(cache)
    manifest = cache.manifest if isinstance(cache, Artifact) else None
    if manifest is None:
        manifest = json.loads((path / "manifest.json").read_text())
    table = pq.read_table(path / FILE)
    p_flat, p_len = _column(table, "prompt_ids")
    c_flat, c_len = _column(table, "completion_ids")
    k_flat, _ = _column(table, "topk_ids")
    l_flat, _ = _column(table, "topk_logprobs")
    n, k = len(p_len), int(manifest["inputs"]["k"])
    lengths = p_len + c_len
    width = int(lengths.max())
    ids = np.full((n, width), PAD, dtype=np.int64)
    mask = np.zeros((n, width), dtype=bool)
    top_ids = np.broadcast_to(np.arange(k, dtype=np.int16), (n, width, k)).copy()
    top_lp = np.full((n, width, k), -np.log(k + 1), dtype=np.float16)
    p_off = np.concatenate([[0], np.cumsum(p_len)])
    c_off = np.concatenate([[0], np.cumsum(c_len)])
    k_ids, k_lp = k_flat.reshape(-1, k), l_flat.reshape(-1, k)
    records = []
    for i in range(n):
        p, c = p_flat[p_off[i] : p_off[i + 1]], c_flat[c_off[i] : c_off[i + 1]]
        ids[i, : len(p)], ids[i, len(p) : lengths[i]] = p, c
        mask[i, len(p) : lengths[i]] = True
        top_ids[i, len(p) : lengths[i]] = k_ids[c_off[i] : c_off[i + 1]]
        top_lp[i, len(p) : lengths[i]] = k_lp[c_off[i] : c_off[i + 1]]
        words = tuple(WORDS[t] for t in p[1:])  # without <bos>
        records.append(PromptRecord("distill", words[0] if words else "", words))
    check_distill(records)
    return TeacherCache(
        torch.from_numpy(ids),
        torch.from_numpy(mask),
        torch.from_numpy(lengths.astype(np.int64)),
        torch.from_numpy(top_ids),
        torch.from_numpy(top_lp),
        float(manifest["inputs"]["logprob_temperature"]),
    )


__all__ = [
    "Batch",
    "TeacherCache",
    "TeacherCacheConfig",
    "build_teacher_cache",
    "fp16_down",
    "lists_column",
    "load_teacher_cache",
    "sample_completions",
    "teacher_topk",
]
