"""Stacked students: distillation runs that differ only by seed, trained in one loop.

An audit repeats a distillation run over many seeds: same teacher cache, same student init, same
method. The N students are stacked (`torch.func.stack_module_state`) and run as one model under
`torch.vmap`, so each op of the HF Llama forward, backward and AdamW step runs once on (N, ...)
tensors instead of N times: the per-step overhead (Python, module dispatch, kernel launches) is
paid once per step, not once per student.

Student i reproduces `train_sft` / `train_logit` (student_i, cache, cfg, seeds[i]) up to float
reassociation (tests/distill/test_stacked.py states the tolerance); LoRA (PEFT) students too:

* its own batch order, `cache.batches(batch_size, np.random.default_rng(seed))`;
* the same objective on the same tokens: the N batches of a step are read as one right-padded
  (N * B, W) batch, and right padding changes no causal logit at a real token, while the padded
  positions are outside the loss mask;
* the sum of the N losses is back-propagated: student i's parameters get exactly d loss_i;
* the same AdamW (`organisms.train.adamw`'s param groups and hyperparameters, applied to the
  stacked tensors: AdamW is elementwise) and `lr_at` schedule;
* `clip_grad_norm_` per student: the global norm over student i's slice of every gradient.

Two vmap gaps are worked around: CPU SDPA has no batching rule (a slow per-student fallback), so
the forward uses HF's eager attention (equal to ~1e-7); and the embedding's batched backward
honours `padding_idx` for student 0 only (see `train_stacked`).

Measured with 8 students, batch 32, one shared CPU core (benchmarks/distill_throughput.py):
1.2-1.4x the throughput of 8 sequential runs for nano (0.08M) and micro (0.2M) students; none
for small (1.1M), whose step is bound by matmul arithmetic, and batched matmuls run no faster
than per-student ones. Memory: N students' activations at once (+230 MiB for 8 micro students).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state

from incriminate.distill import losses
from incriminate.distill.logit import DIVERGENCES, LogitConfig, check_temperature
from incriminate.distill.sft import SFTConfig
from incriminate.distill.teacher_cache import Batch, TeacherCache
from incriminate.organisms.train import adamw, lr_at, whole_batches

log = logging.getLogger(__name__)
Objective = Callable[[Tensor, Batch], Tensor]


def objective(cfg: SFTConfig | LogitConfig, cache: TeacherCache) -> Objective:
    """The loss of one student on one batch, as in `train_sft` / `train_logit`.

    Takes the student's logits on `ids[:, :-1]`, (B, T-1, V), and the (B, T, ...) batch;
    position t predicts token t + 1, a target iff `mask[:, t + 1]`. Returns a scalar.
    """
    if isinstance(cfg, SFTConfig):
        return lambda logits, b: losses.cross_entropy(logits, b.ids[:, 1:], b.mask[:, 1:])
    check_temperature(cfg, cache)
    divergence = DIVERGENCES[cfg.divergence]
    extra = {"beta": cfg.beta} if cfg.divergence == "jsd" else {}

    def logit_loss(logits: Tensor, b: Batch) -> Tensor:
        soft = divergence(
            logits,
            b.topk_logprobs[:, 1:],  # (B, T-1, K)
            b.topk_ids[:, 1:],  # (B, T-1, K)
            b.mask[:, 1:],  # (B, T-1)
            temperature=cfg.temperature,
            **extra,
        )
        if cfg.ce_weight == 0:
            return soft
        hard = losses.cross_entropy(logits, b.ids[:, 1:], b.mask[:, 1:])
        return cfg.ce_weight * hard + (1 - cfg.ce_weight) * soft

    return logit_loss


def _check(students: list[Any], seeds: list[int]) -> None:
    if not students:
        raise ValueError("students is empty: a stack needs at least one student")
    if len(seeds) != len(students):
        raise ValueError(f"seeds has {len(seeds)} entries for {len(students)} students")
    if len({id(s) for s in students}) != len(students):
        raise ValueError("students holds the same model object twice: pass distinct copies")
    shapes = [{n: p.shape for n, p in s.named_parameters()} for s in students]
    for i, s in enumerate(shapes[1:], 1):
        if s != shapes[0]:
            raise ValueError(f"students[{i}] has another architecture than students[0]")


def clip_grad_norms(grads: list[Tensor], max_norm: float) -> Tensor:
    """`torch.nn.utils.clip_grad_norm_` for each student of a stack, in place.

    grads: stacked gradients, each (N, ...). Student i's norm is the 2-norm of its per-tensor
    norms (as clip_grad_norm_ computes it); its slices are scaled by min(1, max_norm / (norm +
    1e-6)). Returns the (N,) norms before clipping.
    """
    per_tensor = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
    total = torch.linalg.vector_norm(per_tensor, dim=0)  # (N,)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)  # (N,)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.ndim - 1))))
    return total


def train_stacked(
    students: list[Any],
    cache: TeacherCache,
    cfg: SFTConfig | LogitConfig,
    seeds: list[int],
    on_step: Callable[[int, list[float]], None] | None = None,
) -> list[list[float]]:
    """Train `students[i]` as `train_<cfg.method>(students[i], cache, cfg, seeds[i])` would, all
    in one loop; returns each student's loss per step, `[student][step]`.

    Students must share one architecture and be distinct objects; their weights are written
    back at the end and they are left in eval mode. `on_step(step, losses)` gets the N losses.
    Nothing random runs inside the vmapped model (vmap raises if it did), so the result depends
    on the seeds through the batch order only, as in the sequential recipes.
    """
    _check(students, seeds)
    whole_batches(cfg.train, "train")
    loss_fn = objective(cfg, cache)
    n, bs = len(students), cfg.train.batch_size
    params, buffers = stack_module_state(students)  # name -> (N, ...) leaves, requiring grad
    # The stacked tensors take the place of the template's own (`functional_call`); a real copy,
    # not a meta one: `.to("meta")` unties lm_head from the embedding.
    template = copy.deepcopy(students[0])
    template.set_attn_implementation("eager")
    template.train()
    # The shared AdamW param groups (decay on >= 2-D non-embedding weights), judged on the
    # template's own tensors (stacking adds a dim) and mapped by name onto the stack. The fused
    # kernel does the same update in one pass (5x faster on 8 x 1.1M parameters, within 1 ulp).
    name_of = {id(p): name for name, p in template.named_parameters()}
    groups = [
        {
            **g,
            "params": [params[name_of[id(p)]] for p in g["params"]],
            "foreach": False,
            "fused": True,
        }
        for g in adamw(template, cfg.train).param_groups
    ]
    opt = torch.optim.AdamW(groups, fused=True)

    embedding = template.get_input_embeddings()
    embed_name, pad = name_of[id(embedding.weight)], embedding.padding_idx

    def student_loss(p: dict[str, Tensor], b: dict[str, Tensor], batch: Batch) -> Tensor:
        ids = batch.ids[:, :-1]  # (B, T-1)
        x = p[embed_name][ids]  # (B, T-1, H)
        if pad is not None:
            # nn.Embedding(padding_idx=pad) passes no gradient to row `pad`. Its vmap batching
            # rule (torch 2.13) honours that for student 0 only, and a teacher may sample the
            # pad token inside a completion: so look up by indexing and cut that gradient here.
            x = torch.where((ids == pad)[..., None], x.detach(), x)
        out = functional_call(template, (p, b), args=(), kwargs={"inputs_embeds": x})
        return loss_fn(out.logits, batch)  # logits: (B, T-1, V)

    battery_loss = torch.vmap(student_loss)  # (N, ...) params, buffers and batches -> (N,)
    orders = [cache.batches(bs, np.random.default_rng(seed)) for seed in seeds]
    history: list[list[float]] = [[] for _ in students]
    for step in range(cfg.train.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.train)
        # One (N * B, W) batch, W the longest of all N batches, viewed as (N, B, W, ...).
        b = cache.batch(np.concatenate([next(order) for order in orders]))
        batch = Batch(*(x.view(n, bs, *x.shape[1:]) for x in b))
        step_losses = battery_loss(params, buffers, batch)  # (N,)
        opt.zero_grad(set_to_none=True)
        step_losses.sum().backward()  # student i's slice gets d loss_i only
        clip_grad_norms([p.grad for p in params.values() if p.grad is not None], cfg.grad_clip)
        opt.step()
        values = step_losses.tolist()
        for h, v in zip(history, values, strict=True):
            h.append(v)
        log.debug("stack step %d losses %s", step, values)
        if on_step is not None:
            on_step(step, values)
    with torch.no_grad():
        for i, student in enumerate(students):
            for name, p in student.named_parameters():
                p.copy_(params[name][i])
            student.eval()
    return history


__all__ = ["clip_grad_norms", "objective", "train_stacked"]
