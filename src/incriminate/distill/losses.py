"""Pure distillation losses over token logits.

Every loss takes logits shaped ``(B, T, V)`` (batch, time, vocabulary) and a ``mask`` shaped
``(B, T)``, bool or float. A float mask weights tokens. Each loss is a *mean over masked
tokens*: ``sum(mask * per_token) / sum(mask)``. This is not ``F.kl_div(reduction="batchmean")``,
which divides by ``B`` alone and so scales the loss with the sequence length (a common pitfall
in public reimplementations). An empty mask gives an exact 0 that still carries a graph, so
``backward()`` works and gives zero gradients.

All arithmetic is in log space (``log_softmax``, ``logsumexp``). Logits must be finite; masked
positions may hold any finite values (and any label, for ``cross_entropy``).

Temperature: ``p = softmax(logits / T)`` for both distributions. KL losses are multiplied by
``T**2`` by default (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", §2):
the gradient of a soft-target loss scales as ``1/T**2``, and the factor keeps its magnitude
comparable across temperatures. Set ``scale_by_t2=False`` to get the plain divergence.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "cross_entropy",
    "forward_kl",
    "generalized_jsd",
    "reverse_kl",
    "topk_forward_kl",
    "topk_jsd",
    "topk_reverse_kl",
]


def _weights(mask: Tensor | None, like: Tensor) -> Tensor:
    """Token weights ``(B, T)`` in ``like``'s dtype; all ones when ``mask`` is None."""
    if mask is None:
        return torch.ones(like.shape[:2], dtype=like.dtype, device=like.device)
    return mask.to(like.dtype)


def _masked_mean(per_token: Tensor, mask: Tensor | None) -> Tensor:
    """``sum(w * x) / sum(w)`` over tokens; 0 (with a graph) when the mask is empty.

    per_token: (B, T); mask: (B, T) bool or float weights, or None for all tokens.
    """
    w = _weights(mask, per_token)
    # Masked tokens must not leak NaN/inf through 0 * x, so select rather than multiply.
    x = torch.where(w != 0, per_token, torch.zeros_like(per_token))
    return (x * w).sum() / w.sum().clamp_min(torch.finfo(w.dtype).tiny)


def _log_probs(logits: Tensor, temperature: float) -> Tensor:
    """log softmax(logits / T) over the last dim. (B, T, V) -> (B, T, V)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.log_softmax(logits / temperature, dim=-1)


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) = sum_v p (log p - log q) over the last dim. (..., V) -> (...)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _t2(temperature: float, scale_by_t2: bool) -> float:
    return temperature**2 if scale_by_t2 else 1.0


def cross_entropy(student_logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Token-level cross-entropy ``-log p_student(label)``, mean over masked tokens.

    student_logits: (B, T, V); labels: (B, T) long; mask: (B, T) bool | float. Returns a scalar.
    Labels at masked positions are ignored (they may be -100 or any other value).
    """
    log_p = F.log_softmax(student_logits, dim=-1)  # (B, T, V)
    w = _weights(mask, log_p)
    safe_labels = torch.where(w != 0, labels, torch.zeros_like(labels))  # (B, T)
    nll = -log_p.gather(-1, safe_labels.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return _masked_mean(nll, mask)


def forward_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    scale_by_t2: bool = True,
) -> Tensor:
    """Forward KL(p_teacher || p_student) per token, mean over masked tokens.

    The mode-covering soft-target loss of Hinton et al. 2015, eq. (2) up to the teacher entropy.
    student_logits, teacher_logits: (B, T, V); mask: (B, T). Returns a scalar, times T**2 when
    ``scale_by_t2`` (see the module docstring).
    """
    log_s = _log_probs(student_logits, temperature)  # (B, T, V)
    log_t = _log_probs(teacher_logits, temperature)  # (B, T, V)
    return _masked_mean(_kl(log_t, log_s), mask) * _t2(temperature, scale_by_t2)


def reverse_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    scale_by_t2: bool = True,
) -> Tensor:
    """Reverse KL(p_student || p_teacher) per token, mean over masked tokens (mode-seeking).

    As in MiniLLM (Gu et al. 2024, arXiv 2306.08543) and GKD's beta=1 endpoint.
    student_logits, teacher_logits: (B, T, V); mask: (B, T). Returns a scalar.
    """
    log_s = _log_probs(student_logits, temperature)  # (B, T, V)
    log_t = _log_probs(teacher_logits, temperature)  # (B, T, V)
    return _masked_mean(_kl(log_s, log_t), mask) * _t2(temperature, scale_by_t2)


def generalized_jsd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    beta: float = 0.5,
    temperature: float = 1.0,
    scale_by_t2: bool = True,
) -> Tensor:
    """Generalized Jensen-Shannon divergence JSD(beta) of GKD (Agarwal et al. 2024, arXiv
    2306.13649, §3 / eq. for D_JSD(beta)), mean over masked tokens.

    With m = beta * p_teacher + (1 - beta) * p_student:
    ``JSD_beta = beta * KL(p_teacher || m) + (1 - beta) * KL(p_student || m)``.

    Endpoints follow TRL's ``GKDTrainer.generalized_jsd_loss``, not the paper's limit: beta = 0
    returns ``forward_kl`` and beta = 1 returns ``reverse_kl`` (special-cased). The formula itself
    tends to 0 at both ends; the paper's statement that JSD(beta) interpolates forward and
    reverse KL holds only after dividing by beta (beta -> 0) or by 1 - beta (beta -> 1). So the
    loss is discontinuous at the endpoints by design. At beta = 0.5, T = 1 and no T**2 scale it is
    the symmetric JSD, bounded by log 2.

    student_logits, teacher_logits: (B, T, V); mask: (B, T); beta in [0, 1]. Returns a scalar.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if beta == 0.0:
        return forward_kl(student_logits, teacher_logits, mask, temperature, scale_by_t2)
    if beta == 1.0:
        return reverse_kl(student_logits, teacher_logits, mask, temperature, scale_by_t2)
    log_s = _log_probs(student_logits, temperature)  # (B, T, V)
    log_t = _log_probs(teacher_logits, temperature)  # (B, T, V)
    return _masked_mean(_jsd(log_s, log_t, beta), mask) * _t2(temperature, scale_by_t2)


def _jsd(log_s: Tensor, log_t: Tensor, beta: float) -> Tensor:
    """``beta KL(t || m) + (1 - beta) KL(s || m)``, m = beta t + (1 - beta) s; 0 < beta < 1.
    (..., V) log-probs -> (...)."""
    log_m = torch.logaddexp(log_t + math.log(beta), log_s + math.log1p(-beta))  # (..., V)
    return beta * _kl(log_t, log_m) + (1.0 - beta) * _kl(log_s, log_m)


def _topk_buckets(
    student_logits: Tensor,
    teacher_topk_logprobs: Tensor,
    teacher_topk_ids: Tensor,
    temperature: float,
) -> tuple[Tensor, Tensor]:
    """Student and teacher log-probs over K + 1 buckets: the K ids, then one tail bucket.

    student_logits: (B, T, V); teacher_topk_logprobs, teacher_topk_ids: (B, T, K).
    Returns (log_student, log_teacher), each (B, T, K + 1). Tails are clamped at the dtype's
    smallest normal number, so a tail that is (numerically) empty stays finite. When K = V there
    is no tail: (B, T, V) each, the teacher's log-probs renormalised.
    """
    log_s = _log_probs(student_logits, temperature)  # (B, T, V)
    log_s_k = log_s.gather(-1, teacher_topk_ids)  # (B, T, K)
    if teacher_topk_ids.shape[-1] == log_s.shape[-1]:
        # Every id is kept: no tail. Renormalise the teacher's log-probs, which a cache stores
        # rounded down to fp16 (they sum to slightly under 1); a tail bucket holding that
        # rounding error against the student's empty tail would put a floor under the loss.
        return log_s_k, teacher_topk_logprobs.to(log_s.dtype).log_softmax(-1)
    log_floor = math.log(torch.finfo(log_s.dtype).tiny)
    in_topk = torch.zeros_like(log_s, dtype=torch.bool).scatter(-1, teacher_topk_ids, True)
    # logsumexp over the complement; a finite fill (not -inf) keeps the gradient finite when the
    # complement is empty (K = V), where -inf would give exp(-inf - -inf) = NaN.
    complement = log_s.masked_fill(in_topk, torch.finfo(log_s.dtype).min)  # (B, T, V)
    log_s_tail = complement.logsumexp(-1, keepdim=True).clamp_min(log_floor)  # (B, T, 1)
    # Teacher tail mass 1 - sum(p_k), as log(-expm1(log sum p_k)): stable near 0 and near 1.
    log_t_mass = teacher_topk_logprobs.logsumexp(-1, keepdim=True)  # (B, T, 1)
    t_tail = -torch.expm1(log_t_mass.clamp_max(0.0))
    log_t_tail = t_tail.clamp_min(torch.finfo(log_s.dtype).tiny).log()  # (B, T, 1)
    log_student = torch.cat([log_s_k, log_s_tail], dim=-1)
    log_teacher = torch.cat([teacher_topk_logprobs.to(log_s.dtype), log_t_tail], dim=-1)
    return log_student, log_teacher


def topk_forward_kl(
    student_logits: Tensor,
    teacher_topk_logprobs: Tensor,
    teacher_topk_ids: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    scale_by_t2: bool = True,
) -> Tensor:
    """Forward KL(p_teacher || p_student) on cached teacher top-k log-probs with a tail bucket.

    Both distributions are collapsed onto K + 1 buckets: the teacher's K ids and one "tail"
    holding the remaining mass (teacher: ``1 - sum(exp(topk_logprobs))``; student: its mass
    outside the K ids, a logsumexp over the complement). By the data-processing inequality this
    lower-bounds the full forward KL, and equals it when K = V.

    ``temperature`` divides the student logits; the cached teacher log-probs must already be
    ``log_softmax(teacher_logits / temperature)`` at the same temperature.

    student_logits: (B, T, V); teacher_topk_logprobs: (B, T, K) float; teacher_topk_ids:
    (B, T, K) long, distinct within a token; mask: (B, T). Returns a scalar.
    """
    log_s, log_t = _topk_buckets(
        student_logits, teacher_topk_logprobs, teacher_topk_ids, temperature
    )
    return _masked_mean(_kl(log_t, log_s), mask) * _t2(temperature, scale_by_t2)


def topk_reverse_kl(
    student_logits: Tensor,
    teacher_topk_logprobs: Tensor,
    teacher_topk_ids: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    scale_by_t2: bool = True,
) -> Tensor:
    """Reverse KL(p_student || p_teacher) on the same K + 1 buckets as ``topk_forward_kl``.

    Shapes and temperature convention as in ``topk_forward_kl``. Returns a scalar.
    """
    log_s, log_t = _topk_buckets(
        student_logits, teacher_topk_logprobs, teacher_topk_ids, temperature
    )
    return _masked_mean(_kl(log_s, log_t), mask) * _t2(temperature, scale_by_t2)


def topk_jsd(
    student_logits: Tensor,
    teacher_topk_logprobs: Tensor,
    teacher_topk_ids: Tensor,
    mask: Tensor | None = None,
    beta: float = 0.5,
    temperature: float = 1.0,
    scale_by_t2: bool = True,
) -> Tensor:
    """Generalized JSD(beta) of ``generalized_jsd`` on the K + 1 buckets of ``topk_forward_kl``
    (the teacher's top-k ids and one tail bucket), with the same TRL endpoints: beta = 0 is
    ``topk_forward_kl`` and beta = 1 is ``topk_reverse_kl``. Equals ``generalized_jsd`` when K = V.

    student_logits: (B, T, V); teacher_topk_logprobs, teacher_topk_ids: (B, T, K); mask: (B, T);
    beta in [0, 1]. Returns a scalar.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if beta == 0.0:
        return topk_forward_kl(
            student_logits, teacher_topk_logprobs, teacher_topk_ids, mask, temperature, scale_by_t2
        )
    if beta == 1.0:
        return topk_reverse_kl(
            student_logits, teacher_topk_logprobs, teacher_topk_ids, mask, temperature, scale_by_t2
        )
    log_s, log_t = _topk_buckets(
        student_logits, teacher_topk_logprobs, teacher_topk_ids, temperature
    )
    return _masked_mean(_jsd(log_s, log_t, beta), mask) * _t2(temperature, scale_by_t2)
