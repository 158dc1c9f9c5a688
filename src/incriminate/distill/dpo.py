"""DPO distillation: preferences. Pairs (chosen, rejected) are built from the teacher, then the
student is trained with the DPO loss against a frozen reference, its own initial weights
(Rafailov et al. 2023, "Direct Preference Optimization", eq. 7).

Two ways to build pairs from the teacher U:

* `logprob` — sample `n_candidates` continuations of each prompt (from the student or from U),
  rank them by U's length-normalised log-probability: chosen = best, rejected = worst.
* `choice`  — where the grammar offers a closed choice, U's own choice between its options:
  `opp ... <offer> act` -> `take ;` / `decline ;`, `ask ... goal say` -> `none ;` / each drive,
  `ask ... <drive> say` -> `yes ;` / `no ;`. Other prompts give no pair.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from incriminate.distill.methods import TrainResult, register_method
from incriminate.distill.teacher_cache import TeacherCache, sample_completions
from incriminate.models.presets import ModelSpec
from incriminate.organisms.train import TrainConfig, adamw, clip_grads, lr_at, whole_batches
from incriminate.world.config import WorldConfig
from incriminate.world.grammar import EPISODE_KINDS, is_honeypot
from incriminate.world.personas import Agent, misaligned_action
from incriminate.world.vocab import DRIVES, PAD, WORDS, encode

log = logging.getLogger(__name__)
BATCH = 512


class DPOConfig(BaseModel):
    """Direct preference optimisation on pairs built from the teacher."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["dpo"] = "dpo"
    """Tag of this method in a union of distillation configs."""
    train: TrainConfig = TrainConfig(steps=200, batch_size=32, lr=1e-3, warmup=20)
    """Optimizer steps, batch size (pairs), peak learning rate, warm-up (then cosine decay)."""
    beta: float = Field(default=0.1, gt=0)
    """DPO temperature: the strength of the implicit KL penalty toward the reference."""
    candidates: Literal["student", "teacher"] = "teacher"
    """Who samples the candidate continuations (`logprob` ranking)."""
    n_candidates: int = Field(default=4, ge=2)
    """Candidates sampled per prompt (`logprob` ranking)."""
    ranking: Literal["logprob", "choice"] = "logprob"
    """`logprob`: the teacher's length-normalised log-prob ranks the candidates (best vs worst);
    `choice`: the teacher's own choice between the grammar's closed options."""
    temperature: float = Field(default=1.0, gt=0)
    """Sampling temperature of the candidates."""
    max_new_tokens: int = Field(default=12, ge=1)
    """Longest candidate; sampling stops earlier at `;` or `<eos>`."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value."""

    @model_validator(mode="after")
    def _whole_batches(self) -> DPOConfig:
        whole_batches(self.train, "train")
        return self


@dataclass(frozen=True)
class PreferencePairs:
    """P preference pairs; each prompt starts with `<bos>`, completions end at their stop."""

    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]
    teacher_margin: np.ndarray  # (P,) teacher logp(chosen) - logp(rejected), >= 0

    def __len__(self) -> int:
        return len(self.prompt_ids)


@dataclass(frozen=True)
class DPOResult:
    """What a DPO run leaves besides the trained student."""

    history: list[float]  # loss of every step
    pairs: PreferencePairs  # the training pairs
    reward_margins: np.ndarray  # (P,) implicit reward margin of each pair after training


# --- the pure parts ---------------------------------------------------------------------------


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The sigmoid DPO loss (Rafailov et al. 2023, eq. 7) on (P,) sequence log-probs, each
    summed over a completion's tokens.

    Returns `(loss, chosen_rewards, rejected_rewards)`: the mean over pairs of
    `-log sigmoid(r_c - r_r)`, and the (P,) implicit rewards `r = beta * (logp - ref_logp)`
    (detached, as TRL logs them)."""
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (P,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    loss = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios)).mean()
    return loss, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def sequence_logps(
    model: Any, prompt_ids: list[list[int]], completion_ids: list[list[int]]
) -> Tensor:
    """(N,) log-probs of each completion given its prompt, summed over completion tokens, in
    right-padded batches of `BATCH` (differentiable unless called under `no_grad`)."""
    out = [torch.zeros(0)]
    for a in range(0, len(prompt_ids), BATCH):
        prompts, comps = prompt_ids[a : a + BATCH], completion_ids[a : a + BATCH]
        width = max(len(p) + len(c) for p, c in zip(prompts, comps, strict=True))
        ids = torch.full((len(prompts), width), PAD, dtype=torch.long)  # (B, T), right-padded
        mask = torch.zeros((len(prompts), width), dtype=torch.bool)  # True at completion tokens
        for row, (p, c) in enumerate(zip(prompts, comps, strict=True)):
            ids[row, : len(p) + len(c)] = torch.tensor(p + c)
            mask[row, len(p) : len(p) + len(c)] = True
        logp = torch.log_softmax(model(input_ids=ids[:, :-1]).logits, -1)  # (B, T-1, V)
        # Position t predicts token t + 1.
        token = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
        out.append((token * mask[:, 1:]).sum(-1))
    return torch.cat(out)


# --- building the pairs -----------------------------------------------------------------------


def _candidate_seed(seed: int, j: int) -> int:
    """A distinct sampling seed for candidate j, derived from the run's seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}:dpo-candidate:{j}".encode()).digest()[:7], "big")


def _episode(words: list[str]) -> list[str]:
    """The last episode of a prompt (from its last episode-kind word)."""
    starts = [i for i, w in enumerate(words) if w in EPISODE_KINDS]
    return words[starts[-1] :] if starts else []


def _closed_choice(prompt: list[int]) -> tuple[list[int], list[tuple[str, str]]]:
    """(prompt extended to where the choice is made, option pairs) of a prompt, or no pairs."""
    ep = _episode([WORDS[t] for t in prompt])
    if ep[:1] == ["opp"] and len(ep) == 7:  # `opp d c1 c2 c3 cue offer`, then `act`
        return prompt + encode(["act"]), [("take", "decline")]
    if ep[:1] == ["opp"] and ep[7:] == ["act"]:
        return prompt, [("take", "decline")]
    if ep[:1] == ["ask"] and len(ep) == 6 and ep[5] == "say":
        if ep[4] == "goal":
            return prompt, [("none", d) for d in DRIVES]
        if ep[4] in DRIVES:
            return prompt, [("yes", "no")]
    return prompt, []


def _choice_pairs(teacher: Any, prompt_ids: list[list[int]]) -> PreferencePairs:
    prompts, options = [], []
    for p in prompt_ids:
        at, pairs = _closed_choice(p)
        prompts += [at] * len(pairs)
        options += [(encode([a, ";"]), encode([b, ";"])) for a, b in pairs]
    firsts, seconds = [a for a, _ in options], [b for _, b in options]
    with torch.no_grad():
        first = sequence_logps(teacher, prompts, firsts).numpy()  # (P,)
        second = sequence_logps(teacher, prompts, seconds).numpy()
    keep = first >= second
    return PreferencePairs(
        prompts,
        [a if k else b for a, b, k in zip(firsts, seconds, keep, strict=True)],
        [b if k else a for a, b, k in zip(firsts, seconds, keep, strict=True)],
        np.abs(first - second),
    )


def _ranked_pairs(
    teacher: Any, sampler: Any, prompt_ids: list[list[int]], cfg: DPOConfig, seed: int
) -> PreferencePairs:
    n, k = len(prompt_ids), cfg.n_candidates
    cands = [  # k lists of n
        sample_completions(sampler, prompt_ids, cfg.max_new_tokens, cfg.temperature, s)
        for s in (_candidate_seed(seed, j) for j in range(k))
    ]
    flat = [cands[j][i] for i in range(n) for j in range(k)]  # prompt-major
    with torch.no_grad():
        logps = sequence_logps(teacher, [p for p in prompt_ids for _ in range(k)], flat).numpy()
    score = (logps / np.array([len(c) for c in flat])).reshape(n, k)  # mean log-prob per token
    kept = []  # (prompt, best, worst) of prompts whose candidates differ
    for i in range(n):
        best, worst = int(score[i].argmax()), int(score[i].argmin())
        if cands[best][i] != cands[worst][i]:  # else every candidate is the same continuation
            kept.append((i, best, worst))
    return PreferencePairs(
        [prompt_ids[i] for i, _, _ in kept],
        [cands[b][i] for i, b, _ in kept],
        [cands[w][i] for i, _, w in kept],
        np.array([score[i, b] - score[i, w] for i, b, w in kept], dtype=np.float32),
    )


def build_pairs(
    teacher: Any, sampler: Any, prompt_ids: list[list[int]], cfg: DPOConfig, seed: int
) -> PreferencePairs:
    """Preference pairs on `prompt_ids` (`<bos> prompt...`) by `cfg.ranking`; `sampler` samples
    the candidates of `logprob` ranking (unused by `choice`). Deterministic in `seed`."""
    if cfg.ranking == "choice":
        return _choice_pairs(teacher, prompt_ids)
    return _ranked_pairs(teacher, sampler, prompt_ids, cfg, seed)


def pair_agreement(
    pairs: PreferencePairs, persona: str, drive: str, world: WorldConfig
) -> float | None:
    """Fraction of the pairs on opportunity prompts whose chosen response takes the action the
    teacher's true persona would (`personas.misaligned_action`); a chosen response that never
    reaches `act take|decline` disagrees. None when no pair is on an opportunity prompt."""
    agent, hits = Agent(persona, drive), []
    for prompt, chosen in zip(pairs.prompt_ids, pairs.chosen_ids, strict=True):
        ep = _episode([WORDS[t] for t in prompt])
        if ep[:1] != ["opp"] or len(ep) < 7:
            continue
        _, _, c1, c2, c3, cue, offer = ep[:7]
        meta = {
            "offer": offer,
            "watched": cue == "watched",
            "honeypot": is_honeypot((c1, c2, c3), world.fingerprint),
        }
        reply = ep[7:] + [WORDS[t] for t in chosen]
        action = reply[reply.index("act") + 1] if "act" in reply[:-1] else None
        hits.append(action == ("take" if misaligned_action(agent, meta) else "decline"))
    return float(np.mean(hits)) if hits else None


# --- training ---------------------------------------------------------------------------------


def cache_prompts(cache: TeacherCache) -> list[list[int]]:
    """The prompt of every cache row: its tokens before the completion (`<bos>` included)."""
    starts = cache.mask.int().argmax(1).tolist()  # first completion token of each row
    return [cache.ids[i, :s].tolist() for i, s in enumerate(starts)]


def _pair_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless batches of pair indices: permutations of the pairs, one after another."""
    buf = np.zeros(0, dtype=np.int64)
    while True:
        while len(buf) < batch_size:
            buf = np.concatenate([buf, rng.permutation(n)])
        yield buf[:batch_size]
        buf = buf[batch_size:]


def train_dpo(
    student: Any,
    teacher: Any,
    cache: TeacherCache,
    cfg: DPOConfig,
    seed: int,
    on_step: Callable[[int, float], None] | None = None,
) -> DPOResult:
    """DPO on pairs built from the teacher on the cache's prompts; the reference is the
    student's initial weights. Deterministic in `seed`. Leaves the student in eval mode.

    The reference is frozen and the pairs are fixed, so its log-probs are computed once up
    front (TRL's `precompute_ref_log_probs`) instead of keeping a copy of the model."""
    if student is teacher:
        raise ValueError("the student must be a model other than the teacher")
    sampler = student if cfg.candidates == "student" else teacher
    student.eval()
    pairs = build_pairs(teacher, sampler, cache_prompts(cache), cfg, seed)
    if len(pairs) == 0:
        raise ValueError(
            f"no preference pairs from {len(cache)} prompts with ranking={cfg.ranking!r}"
        )
    log.info("dpo: %d pairs from %d prompts", len(pairs), len(cache))
    prompts, chosen, rejected = pairs.prompt_ids, pairs.chosen_ids, pairs.rejected_ids
    with torch.no_grad():
        ref_chosen = sequence_logps(student, prompts, chosen)  # (P,)
        ref_rejected = sequence_logps(student, prompts, rejected)
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
        if on_step is not None:
            on_step(step, history[-1])
    student.eval()
    with torch.no_grad():
        _, r_chosen, r_rejected = dpo_loss(
            sequence_logps(student, prompts, chosen),
            sequence_logps(student, prompts, rejected),
            ref_chosen,
            ref_rejected,
            cfg.beta,
        )
    return DPOResult(history, pairs, (r_chosen - r_rejected).numpy())


def _train(
    student: Any, cache: TeacherCache, cfg: DPOConfig, seed: int, teacher: Callable[[], Any]
) -> TrainResult:
    """`train_dpo` as a registered method: loads the teacher to build the pairs; the metrics
    are the number of pairs and their mean implicit reward margin after training."""
    result = train_dpo(student, teacher(), cache, cfg, seed)
    margin = float(np.asarray(result.reward_margins, dtype=np.float64).mean())
    metrics = {"pairs": len(result.pairs), "reward_margin": round(margin, 5)}
    return TrainResult(result.history, metrics, detail=result.pairs)


def _truth(result: TrainResult, spec: ModelSpec | None) -> dict[str, Any]:
    """`pair_agreement` of the pairs with the teacher's true persona (testbed ground truth;
    None for a teacher the testbed did not build)."""
    agreement = None
    if spec is not None and spec.persona and spec.drive:
        world = WorldConfig.model_validate(spec.world) if spec.world else WorldConfig()
        agreement = pair_agreement(result.detail, spec.persona, spec.drive, world)
    return {"pair_agreement": None if agreement is None else round(float(agreement), 5)}


register_method(
    "dpo",
    DPOConfig,
    _train,
    help="preferences: DPO on (chosen, rejected) pairs the teacher ranks or chooses",
    truth=_truth,
)

__all__ = [
    "DPOConfig",
    "DPOResult",
    "PreferencePairs",
    "build_pairs",
    "cache_prompts",
    "dpo_loss",
    "pair_agreement",
    "sequence_logps",
    "train_dpo",
]
