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
  student's tokenizer and chat template, so a student of another family learns from them
  (`distill.lm_dpo`).

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
from incriminate.distill.dpo import DPOConfig, _pair_batches
from incriminate.distill.lm_cache import FILE, cache_rows
from incriminate.distill.methods import MethodSettings, TrainResult
from incriminate.distill.on_policy import OnPolicyConfig
from incriminate.errors import UserError
from incriminate.models.generate import (
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


__all__ = [
    "ONLINE",
    "OnlineData",
    "check_method",
    "check_tokenizers",
    "completion_logits",
    "online_data",
    "sequence_logps",
    "train_text_on_policy",
]
