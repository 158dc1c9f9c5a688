"""DPO students of real language models on pairs a live teacher ranks (`distill.lm_online`
has the shared set-up and the on-policy method; `lm_student.train_online` runs both).

Per cached prompt, the cache's reply and `n_candidates - 1` sampled ones (by the teacher with its
system prompt, or by the student) are ranked by the teacher's length-normalised log-prob with
its system prompt: chosen = best, rejected = worst (Rafailov et al. 2023, eq. 7). Pairs are text,
re-encoded with the student's tokenizer and chat template; the reference is the student's init.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from incriminate.distill.dpo import DPOConfig, _candidate_seed, _pair_batches, dpo_loss
from incriminate.distill.lm_online import (
    OnlineData,
    _recode,
    _stopped,
    check_method,
    sequence_logps,
)
from incriminate.distill.methods import TrainResult
from incriminate.errors import UserError
from incriminate.models.generate import continuation_logprobs, pad_id, sample, token_ids
from incriminate.models.ref import same_tokenizer
from incriminate.organisms.train import adamw, clip_grads, lr_at

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)
SAMPLE_BATCH = 16  # prompts per `generate` call when sampling DPO candidates


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


__all__ = ["TextPairs", "build_text_pairs", "train_text_dpo"]
