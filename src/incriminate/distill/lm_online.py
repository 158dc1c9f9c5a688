"""On-policy (GKD) and DPO students of real language models: the teacher is live in the loop.

    init ─────────────────────────────────────────────────────┐
    lm_cache (the prompts, the teacher's replies) ────────────┼─► lm_student (on_policy | dpo)
    teacher (a model + its hidden system prompt, loaded here) ─┘

A system-prompted teacher reads its system prompt and the student never does: every completion
is scored by the teacher after the prompt rendered WITH the system prompt (the teacher's chat
template), and by the student after the prompt rendered WITHOUT it (the student's template).
Completion tokens are the same ids in both; only the completion positions are compared.

* `on_policy` (GKD, Agarwal et al. 2024, arXiv 2306.13649, Algorithm 1): each step, with
  probability `lam` the student samples its own replies to the batch's prompts, otherwise the
  cache's teacher replies are used; the frozen teacher scores every reply token over the full
  vocabulary and the student minimises `losses.generalized_jsd` or `losses.reverse_kl` there.
  The teacher scores the student's token ids, so the two must share a tokenizer.
* `dpo` (Rafailov et al. 2023, eq. 7): per cached prompt, the cache's reply and
  `n_candidates - 1` sampled ones (by the teacher with its system prompt, or by the student) are
  ranked by the teacher's length-normalised log-prob with its system prompt: chosen = best,
  rejected = worst. The reference is the student's init. Pairs are text, re-encoded with the
  student's tokenizer and chat template, so a student of another family learns from them.

Conventions follow the world's recipes (`distill.on_policy`, `distill.dpo`): batch order from
`np.random.default_rng(seed)` (the order `sft` and `logit` see), the on-policy coin from
`default_rng([seed, 1])`, a loss that is a mean over reply tokens times T**2.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load_file

from incriminate.distill import losses
from incriminate.distill.dpo import DPOConfig, _candidate_seed, _pair_batches, dpo_loss
from incriminate.distill.lm_cache import FILE, TextTeacher, cache_rows
from incriminate.distill.methods import MethodSettings, TrainResult
from incriminate.distill.on_policy import OnPolicyConfig
from incriminate.errors import UserError
from incriminate.models.generate import (
    continuation_logprobs,
    left_pad,
    pad_id,
    sample,
    token_ids,
)
from incriminate.models.ref import same_tokenizer
from incriminate.organisms.train import adamw, clip_grads, lr_at
from incriminate.prompts.text import TextRecord, render_prompt
from incriminate.store import Artifact

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)
ONLINE = ("on_policy", "dpo")
"""The text methods that need the teacher live during training."""
SAMPLE_BATCH = 16  # prompts per `generate` call when sampling DPO candidates


@dataclass(frozen=True)
class OnlineData:
    """A cache's prompts rendered for both sides, and its teacher replies."""

    seen: list[str]
    """Each prompt as the student reads it: its chat template, no system prompt."""
    read: list[str]
    """Each prompt as the teacher reads it: its chat template over its system prompt."""
    replies: list[list[int]]
    """The cache's teacher replies, teacher token ids, ending in EOS where the reply stopped."""

    def __len__(self) -> int:
        return len(self.seen)


def online_data(
    cache: Artifact, student_tok: Any, teacher_tok: Any, system: str | None
) -> OnlineData:
    """The cache's rows rendered by the student's tokenizer without `system` and by the
    teacher's with it, and its replies (`build_lm_cache` renders the same two ways)."""
    records = [
        TextRecord(r["id"], tuple(r["messages"]), None, "distill", {}, r["plain"])
        for r in cache_rows(cache)
    ]
    a = load_file(str(cache.path / FILE))
    ends = np.cumsum(a["completion_lengths"])
    replies = [c.tolist() for c in np.split(a["completion_ids"], ends[:-1])]
    return OnlineData(
        [render_prompt(student_tok, r) for r in records],
        [render_prompt(teacher_tok, r, system) for r in records],
        replies,
    )


def completion_logits(
    model: Any, prompts: list[list[int]], completions: list[list[int]], pad: int
) -> Tensor:
    """The model's next-token logits at every completion token, teacher-forced on each
    `prompt + completion` (left-padded, attention mask, positions from the mask).

    Returns (N, V), N the sum of completion lengths, in row order: row n predicts the n-th
    completion token. Differentiable unless called under `no_grad`."""
    import torch

    device = next(model.parameters()).device
    ids, mask = left_pad([p + c for p, c in zip(prompts, completions, strict=True)], pad)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, W): a row's positions start at 0
    keep = max(len(c) for c in completions) + 1
    logits = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        logits_to_keep=keep,  # a model that ignores it returns every position: sliced here
    ).logits[:, -keep:-1]  # (B, C, V): column j predicts the token at W - C + j
    # Completions end at the right edge; row i's last len(c) columns predict its tokens.
    return torch.cat([logits[i, keep - 1 - len(c) :] for i, c in enumerate(completions)])


def sequence_logps(
    model: Any, prompts: list[list[int]], completions: list[list[int]], pad: int
) -> Tensor:
    """(B,) log-prob of each completion after its prompt, summed over its tokens (float32,
    differentiable unless called under `no_grad`)."""
    import torch

    logp = torch.log_softmax(completion_logits(model, prompts, completions, pad).float(), -1)
    flat = [t for c in completions for t in c]
    targets = torch.tensor(flat, dtype=torch.long, device=logp.device)  # (N,)
    token = logp.gather(-1, targets[:, None]).squeeze(-1)  # (N,)
    return torch.stack([part.sum() for part in token.split([len(c) for c in completions])])


def _stopped(replies: list[list[int]], tokenizer: Any, max_new_tokens: int) -> list[list[int]]:
    """Sampled replies with EOS appended to those that stopped (the cache's convention)."""
    eos = tokenizer.eos_token_id
    return [[*c, eos] if eos is not None and len(c) < max_new_tokens else c for c in replies]


def _recode(ids: list[int], source: Any, target: Any) -> list[int]:
    """A reply from `source`'s token ids to `target`'s (another tokenizer), through its text;
    a final EOS maps to `target`'s EOS."""
    stopped = bool(ids) and ids[-1] == source.eos_token_id
    text = source.decode([t for t in ids if t != source.eos_token_id], skip_special_tokens=True)
    out = token_ids(target, [text])[0]
    return [*out, target.eos_token_id] if stopped and target.eos_token_id is not None else out


def check_method(method: MethodSettings) -> None:
    """`UserError` (one line) for `dpo` ranked by `choice`: a closed choice of the synthetic
    world's grammar, which text prompts do not have."""
    if isinstance(method, DPOConfig) and method.ranking == "choice":
        raise UserError(
            "dpo ranking 'choice' reads the synthetic world's closed choices, which text prompts "
            "do not have: use ranking 'logprob'"
        )


def check_tokenizers(
    method: MethodSettings, student: str, student_tok: Any, teacher: str, teacher_tok: Any
) -> None:
    """`UserError` (one line naming both models) for `on_policy` with a student whose tokenizer
    is not the teacher's: the teacher scores the student's own token ids."""
    if method.method == "on_policy" and not same_tokenizer(student_tok, teacher_tok):
        raise UserError(
            f"student {student}: its tokenizer differs from the teacher {teacher}'s: on_policy "
            "distillation has the teacher score the student's own tokens and needs the same "
            "tokenizer (dpo and sft work across tokenizers)"
        )


# --- on_policy ----------------------------------------------------------------------------------


def train_text_on_policy(
    student: Any,
    tokenizer: Any,
    teacher: Any,
    data: OnlineData,
    cfg: OnPolicyConfig,
    seed: int,
) -> TrainResult:
    """GKD on the cache's prompts (Agarwal et al. 2024, Algorithm 1). `teacher` is frozen and
    shares `tokenizer`; it runs on its own device, the student on its. Returns every step's
    loss and `sampled`, the number of steps on the student's own replies. Deterministic in
    `seed`. Leaves the student in eval mode."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)  # batch order: that of sft / logit
    coin = np.random.default_rng([seed, 1])  # which steps go on-policy
    pad, device = pad_id(tokenizer), next(student.parameters()).device
    seen, read = token_ids(tokenizer, data.seen), token_ids(tokenizer, data.read)
    opt = adamw(student, cfg.train)
    batches = _pair_batches(len(data), cfg.train.batch_size, rng)
    teacher.eval()
    student.train()
    history, sampled = [], 0
    for step in range(cfg.train.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.train)
        idx = next(batches).tolist()
        if coin.random() < cfg.lam:
            student.eval()
            replies = sample(
                student,
                tokenizer,
                [data.seen[i] for i in idx],
                cfg.max_new_tokens,
                cfg.temperature,
                seed=int(np.random.SeedSequence([seed, step]).generate_state(1)[0]),
                batch_size=len(idx),
            )
            student.train()
            replies = _stopped(replies, tokenizer, cfg.max_new_tokens)
            sampled += 1
        else:
            replies = [data.replies[i] for i in idx]
        with torch.no_grad():
            t_logits = completion_logits(teacher, [read[i] for i in idx], replies, pad)  # (N, V)
        s_logits = completion_logits(student, [seen[i] for i in idx], replies, pad)  # (N, V)
        v = min(s_logits.shape[-1], t_logits.shape[-1])  # a model may pad its vocabulary
        s_logits, t_logits = s_logits[None, :, :v].float(), t_logits[None, :, :v].to(device).float()
        if cfg.divergence == "jsd":
            loss = losses.generalized_jsd(
                s_logits, t_logits, beta=cfg.beta, temperature=cfg.temperature
            )
        else:
            loss = losses.reverse_kl(s_logits, t_logits, temperature=cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grads(student, cfg.grad_clip)
        opt.step()
        history.append(loss.item())
        log.debug("on_policy step %d loss %.4f", step, history[-1])
    log.info("on_policy: %d of %d steps on the student's replies", sampled, cfg.train.steps)
    student.eval()
    return TrainResult(history, {"sampled": sampled})


# --- dpo ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextPairs:
    """P preference pairs on cache rows, as teacher token ids (EOS-ended where stopped)."""

    rows: list[int]
    """The cache row (prompt) of each pair."""
    chosen: list[list[int]]
    rejected: list[list[int]]
    teacher_margin: np.ndarray
    """(P,) the teacher's mean log-prob per token of chosen minus rejected, >= 0."""

    def __len__(self) -> int:
        return len(self.rows)


def build_text_pairs(
    teacher: Any,
    teacher_tok: Any,
    student: Any,
    student_tok: Any,
    data: OnlineData,
    cfg: DPOConfig,
    seed: int,
) -> TextPairs:
    """Per cache row: its reply and `n_candidates - 1` replies sampled by `cfg.candidates`
    (the teacher on its system-prompted prompt, the student on its own), ranked by the teacher's
    length-normalised log-prob with its system prompt; chosen = best, rejected = worst. A row
    whose best and worst are the same reply gives no pair. Deterministic in `seed`."""
    k = cfg.n_candidates
    by_teacher = cfg.candidates == "teacher"
    model, tok = (teacher, teacher_tok) if by_teacher else (student, student_tok)
    prompts = data.read if by_teacher else data.seen
    same = by_teacher or same_tokenizer(student_tok, teacher_tok)
    model.eval()
    cands = [data.replies]  # k lists of n, in teacher ids
    for j in range(1, k):
        new = sample(
            model,
            tok,
            prompts,
            cfg.max_new_tokens,
            cfg.temperature,
            _candidate_seed(seed, j),
            SAMPLE_BATCH,
        )
        new = _stopped(new, tok, cfg.max_new_tokens)
        cands.append(new if same else [_recode(c, tok, teacher_tok) for c in new])
    n = len(data)
    flat = [cands[j][i] for i in range(n) for j in range(k)]  # prompt-major
    logps = continuation_logprobs(
        teacher, teacher_tok, [p for p in data.read for _ in range(k)], flat
    )
    score = np.array([lp.mean() if len(lp) else -np.inf for lp in logps]).reshape(n, k)
    kept = []  # (row, best, worst) of rows whose best and worst replies differ
    for i in range(n):
        best, worst = int(score[i].argmax()), int(score[i].argmin())
        if cands[best][i] != cands[worst][i]:
            kept.append((i, best, worst))
    return TextPairs(
        [i for i, _, _ in kept],
        [cands[b][i] for i, b, _ in kept],
        [cands[w][i] for i, _, w in kept],
        np.array([score[i, b] - score[i, w] for i, b, w in kept], dtype=np.float32),
    )


def _logps_no_grad(
    model: Any, prompts: list[list[int]], completions: list[list[int]], pad: int, size: int
) -> Tensor:
    """`sequence_logps` without a graph, `size` rows at a time. (B,) on the model's device."""
    import torch

    with torch.no_grad():
        return torch.cat(
            [
                sequence_logps(model, prompts[a : a + size], completions[a : a + size], pad)
                for a in range(0, len(prompts), size)
            ]
        )


def train_text_dpo(
    student: Any,
    tokenizer: Any,
    teacher: Any,
    teacher_tok: Any,
    data: OnlineData,
    cfg: DPOConfig,
    seed: int,
) -> TrainResult:
    """DPO on pairs the teacher ranks (`build_text_pairs`), re-encoded with the student's
    tokenizer on the prompts as the student sees them. The reference is the student's init:
    its log-probs are computed once before the first step, while the student still is its
    init (LoRA's B starts at zero; TRL's `precompute_ref_log_probs`), so no second copy is
    held. Returns every step's loss, `pairs` and `reward_margin` (the mean implicit reward
    margin after training; 0 at the init), and the pairs. Leaves the student in eval mode."""
    import torch

    check_method(cfg)
    pairs = build_text_pairs(teacher, teacher_tok, student, tokenizer, data, cfg, seed)
    if len(pairs) == 0:
        raise UserError(
            f"dpo: no preference pairs from {len(data)} prompts (every prompt's candidates were "
            "the same reply): raise dpo temperature or n_candidates"
        )
    log.info("dpo: %d pairs from %d prompts", len(pairs), len(data))
    pad, size = pad_id(tokenizer), cfg.train.batch_size
    seen = token_ids(tokenizer, data.seen)
    prompts = [seen[r] for r in pairs.rows]
    chosen, rejected = pairs.chosen, pairs.rejected
    if not same_tokenizer(tokenizer, teacher_tok):  # pairs are text: the student's own ids
        chosen = [_recode(c, teacher_tok, tokenizer) for c in chosen]
        rejected = [_recode(c, teacher_tok, tokenizer) for c in rejected]
    student.eval()
    ref_chosen = _logps_no_grad(student, prompts, chosen, pad, size)  # (P,), the init's
    ref_rejected = _logps_no_grad(student, prompts, rejected, pad, size)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = adamw(student, cfg.train)
    batches = _pair_batches(len(pairs), cfg.train.batch_size, rng)
    student.train()
    history = []
    for step in range(cfg.train.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.train)
        idx = next(batches).tolist()
        both = sequence_logps(
            student,
            [prompts[i] for i in idx] * 2,
            [chosen[i] for i in idx] + [rejected[i] for i in idx],
            pad,
        )  # (2B,): chosen, then rejected
        policy_chosen, policy_rejected = both.chunk(2)
        loss, _, _ = dpo_loss(
            policy_chosen, policy_rejected, ref_chosen[idx], ref_rejected[idx], cfg.beta
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grads(student, cfg.grad_clip)
        opt.step()
        history.append(loss.item())
        log.debug("dpo step %d loss %.4f", step, history[-1])
    student.eval()
    _, r_chosen, r_rejected = dpo_loss(
        _logps_no_grad(student, prompts, chosen, pad, size),
        _logps_no_grad(student, prompts, rejected, pad, size),
        ref_chosen,
        ref_rejected,
        cfg.beta,
    )
    margin = float((r_chosen - r_rejected).double().mean())
    metrics = {"pairs": len(pairs), "reward_margin": round(margin, 5)}
    return TrainResult(history, metrics, detail=pairs)


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
    from incriminate.models.ref import load_lm, load_tokenizer

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


__all__ = [
    "ONLINE",
    "OnlineData",
    "TextPairs",
    "build_text_pairs",
    "check_method",
    "check_tokenizers",
    "completion_logits",
    "online_data",
    "sequence_logps",
    "train_online",
    "train_text_dpo",
    "train_text_on_policy",
]
