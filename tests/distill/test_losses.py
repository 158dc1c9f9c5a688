"""Distillation losses against direct loop-based formulas on small random tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from incriminate.distill import losses

B, T, V = 2, 3, 5


def _logits(seed: int, shape: tuple[int, ...] = (B, T, V)) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64) * 2.0


def _mask() -> Tensor:
    return torch.tensor([[True, False, True], [True, True, False]])


def _softmax_row(row: list[float], temperature: float) -> list[float]:
    z = [x / temperature for x in row]
    top = max(z)
    e = [math.exp(x - top) for x in z]
    return [x / sum(e) for x in e]


def _kl_row(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True) if pi > 0)


def _loop_mean(per_token, mask: Tensor) -> float:
    """Mean of per_token(b, t) over the positions where mask is set, by explicit loops."""
    total, count = 0.0, 0
    for b in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if mask[b, t]:
                total += per_token(b, t)
                count += 1
    return total / count


def _rows(s: Tensor, t: Tensor, b: int, i: int, temp: float) -> tuple[list[float], list[float]]:
    return _softmax_row(s[b, i].tolist(), temp), _softmax_row(t[b, i].tolist(), temp)


def test_cross_entropy_matches_loop() -> None:
    s = _logits(0)
    labels = torch.tensor([[1, -100, 4], [0, 2, -100]])
    got = losses.cross_entropy(s, labels, _mask())
    want = _loop_mean(
        lambda b, t: -math.log(_softmax_row(s[b, t].tolist(), 1.0)[int(labels[b, t])]), _mask()
    )
    assert got.item() == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("temp", [1.0, 2.5])
def test_forward_and_reverse_kl_match_loop(temp: float) -> None:
    s, t, mask = _logits(0), _logits(1), _mask()

    def fwd(b: int, i: int) -> float:
        ps, pt = _rows(s, t, b, i, temp)
        return _kl_row(pt, ps)

    def rev(b: int, i: int) -> float:
        ps, pt = _rows(s, t, b, i, temp)
        return _kl_row(ps, pt)

    got_f = losses.forward_kl(s, t, mask, temperature=temp)
    got_r = losses.reverse_kl(s, t, mask, temperature=temp, scale_by_t2=False)
    assert got_f.item() == pytest.approx(temp**2 * _loop_mean(fwd, mask), rel=1e-10)
    assert got_r.item() == pytest.approx(_loop_mean(rev, mask), rel=1e-10)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_generalized_jsd_matches_loop(beta: float) -> None:
    s, t, mask = _logits(2), _logits(3), _mask()

    def jsd(b: int, i: int) -> float:
        ps, pt = _rows(s, t, b, i, 1.0)
        m = [beta * a + (1 - beta) * c for a, c in zip(pt, ps, strict=True)]
        return beta * _kl_row(pt, m) + (1 - beta) * _kl_row(ps, m)

    got = losses.generalized_jsd(s, t, mask, beta=beta)
    assert got.item() == pytest.approx(_loop_mean(jsd, mask), rel=1e-10)


def test_kl_of_identical_distributions_is_zero_and_kl_is_asymmetric() -> None:
    s, t = _logits(4), _logits(5)
    assert losses.forward_kl(s, s.clone()).item() == pytest.approx(0.0, abs=1e-12)
    # Shifting all logits of a token leaves its softmax unchanged.
    assert losses.forward_kl(s, s + 3.0).item() == pytest.approx(0.0, abs=1e-12)
    fwd, rev = losses.forward_kl(s, t).item(), losses.reverse_kl(s, t).item()
    assert fwd > 0 and rev > 0
    assert abs(fwd - rev) > 1e-3
    assert losses.reverse_kl(s, t).item() == pytest.approx(losses.forward_kl(t, s).item())


def test_jsd_endpoints_follow_trl_convention() -> None:
    s, t, mask = _logits(6), _logits(7), _mask()
    for temp in (1.0, 2.0):
        fwd = losses.forward_kl(s, t, mask, temperature=temp)
        rev = losses.reverse_kl(s, t, mask, temperature=temp)
        assert losses.generalized_jsd(s, t, mask, 0.0, temp).item() == pytest.approx(fwd.item())
        assert losses.generalized_jsd(s, t, mask, 1.0, temp).item() == pytest.approx(rev.item())
    # Just inside the endpoints the formula itself goes to 0, and JSD/beta to forward KL.
    small = losses.generalized_jsd(s, t, mask, 1e-6).item()
    assert small < 1e-5
    assert small / 1e-6 == pytest.approx(losses.forward_kl(s, t, mask).item(), rel=1e-4)
    with pytest.raises(ValueError):
        losses.generalized_jsd(s, t, mask, 1.5)


def test_jsd_half_is_symmetric_and_bounded_by_log2() -> None:
    s, t = _logits(8), _logits(9)
    ab = losses.generalized_jsd(s, t, beta=0.5, scale_by_t2=False).item()
    ba = losses.generalized_jsd(t, s, beta=0.5, scale_by_t2=False).item()
    assert ab == pytest.approx(ba, rel=1e-12)
    assert 0 < ab < math.log(2)
    # Near-disjoint distributions approach the bound.
    one_hot_a = torch.tensor([[[50.0, 0.0]]], dtype=torch.float64)
    one_hot_b = torch.tensor([[[0.0, 50.0]]], dtype=torch.float64)
    far = losses.generalized_jsd(one_hot_a, one_hot_b, beta=0.5).item()
    assert far == pytest.approx(math.log(2), rel=1e-9)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_topk_with_k_equal_v_is_full_kl(dtype: torch.dtype, tol: float) -> None:
    s, t = _logits(10).to(dtype), _logits(11).to(dtype)
    temp = 1.7
    t_logprobs = F.log_softmax(t / temp, dim=-1)
    ids = torch.argsort(t_logprobs, dim=-1, descending=True)  # (B, T, V), all ids
    mask = _mask()
    full_f = losses.forward_kl(s, t, mask, temperature=temp)
    full_r = losses.reverse_kl(s, t, mask, temperature=temp)
    top_f = losses.topk_forward_kl(s, t_logprobs.gather(-1, ids), ids, mask, temperature=temp)
    top_r = losses.topk_reverse_kl(s, t_logprobs.gather(-1, ids), ids, mask, temperature=temp)
    assert top_f.item() == pytest.approx(full_f.item(), abs=tol)
    assert top_r.item() == pytest.approx(full_r.item(), abs=tol)


def test_topk_tail_bucket_on_hand_made_example() -> None:
    # Teacher keeps ids 0 and 2 with p = 0.5, 0.3: its tail is 0.2.
    # Student probs over V = 4: [0.1, 0.2, 0.3, 0.4]: on ids (0, 2) -> 0.1, 0.3, tail 0.6.
    student = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64).log().view(1, 1, 4)
    t_logprobs = torch.tensor([0.5, 0.3], dtype=torch.float64).log().view(1, 1, 2)
    ids = torch.tensor([0, 2]).view(1, 1, 2)
    p_t, p_s = [0.5, 0.3, 0.2], [0.1, 0.3, 0.6]
    got_f = losses.topk_forward_kl(student, t_logprobs, ids)
    got_r = losses.topk_reverse_kl(student, t_logprobs, ids)
    assert got_f.item() == pytest.approx(_kl_row(p_t, p_s), rel=1e-12)
    assert got_r.item() == pytest.approx(_kl_row(p_s, p_t), rel=1e-12)
    # The top-k KL lower-bounds the full KL (data-processing inequality).
    teacher_full = torch.tensor([0.5, 0.1, 0.3, 0.1], dtype=torch.float64).log().view(1, 1, 4)
    assert got_f.item() <= losses.forward_kl(student, teacher_full).item()


def test_masked_positions_do_not_affect_value() -> None:
    s, t, mask = _logits(12), _logits(13), _mask()
    s2, t2 = s.clone(), t.clone()
    s2[~mask] = 1e3 * torch.randn_like(s2[~mask])
    t2[~mask] = -7.0
    labels = torch.tensor([[1, 0, 4], [0, 2, 3]])
    labels2 = torch.where(mask, labels, torch.full_like(labels, -100))
    t_lp = F.log_softmax(t, -1).topk(2, dim=-1)
    t_lp2 = F.log_softmax(t2, -1).topk(2, dim=-1)
    pairs = [
        (losses.cross_entropy(s, labels, mask), losses.cross_entropy(s2, labels2, mask)),
        (losses.forward_kl(s, t, mask), losses.forward_kl(s2, t2, mask)),
        (losses.reverse_kl(s, t, mask), losses.reverse_kl(s2, t2, mask)),
        (losses.generalized_jsd(s, t, mask, 0.3), losses.generalized_jsd(s2, t2, mask, 0.3)),
        (
            losses.topk_forward_kl(s, t_lp.values, t_lp.indices, mask),
            losses.topk_forward_kl(s2, t_lp2.values, t_lp2.indices, mask),
        ),
    ]
    for a, b in pairs:
        assert a.item() == pytest.approx(b.item(), rel=1e-12)


def test_float_mask_weights_tokens() -> None:
    s, t = _logits(14), _logits(15)
    w = torch.tensor([[0.5, 0.0, 2.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    want = (
        sum(
            w[b, i].item()
            * losses.forward_kl(s[b : b + 1, i : i + 1], t[b : b + 1, i : i + 1]).item()
            for b in range(B)
            for i in range(T)
        )
        / w.sum().item()
    )
    assert losses.forward_kl(s, t, w).item() == pytest.approx(want, rel=1e-12)


def _all_losses(s: Tensor, t: Tensor, mask: Tensor) -> list[Tensor]:
    labels = torch.zeros(s.shape[:2], dtype=torch.long)
    t_lp = F.log_softmax(t, -1).topk(3, dim=-1)
    return [
        losses.cross_entropy(s, labels, mask),
        losses.forward_kl(s, t, mask, temperature=2.0),
        losses.reverse_kl(s, t, mask),
        losses.generalized_jsd(s, t, mask, 0.5),
        losses.topk_forward_kl(s, t_lp.values, t_lp.indices, mask),
        losses.topk_reverse_kl(s, t_lp.values, t_lp.indices, mask),
    ]


@pytest.mark.parametrize("mask_kind", ["partial", "whole_row", "empty"])
def test_gradients_finite_with_masks(mask_kind: str) -> None:
    s = (_logits(16) * 20).float().requires_grad_(True)  # extreme logits, float32
    t = (_logits(17) * 20).float()
    mask = {
        "partial": _mask(),
        "whole_row": torch.tensor([[False, False, False], [True, True, False]]),
        "empty": torch.zeros(B, T, dtype=torch.bool),
    }[mask_kind]
    for loss in _all_losses(s, t, mask):
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
        assert (grad[~mask] == 0).all()
        if mask_kind == "empty":
            assert loss.item() == 0.0


def test_mean_over_tokens_not_batchmean() -> None:
    # B = 2 sequences of T = 3 tokens, 6 tokens in all: batchmean divides the sum by 2.
    s, t = _logits(18), _logits(19)
    ours = losses.forward_kl(s, t)
    batchmean = F.kl_div(
        F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True
    )
    per_token = F.kl_div(
        F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="none", log_target=True
    )
    assert ours.item() == pytest.approx(per_token.sum(-1).mean().item(), rel=1e-12)
    assert batchmean.item() == pytest.approx(T * ours.item(), rel=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_topk_jsd_with_k_equal_v_is_full_jsd_and_keeps_the_endpoints(beta: float) -> None:
    s, t = _logits(12).to(torch.float64), _logits(13).to(torch.float64)
    temp = 1.3
    t_logprobs = F.log_softmax(t / temp, dim=-1)
    ids = torch.argsort(t_logprobs, dim=-1, descending=True)
    mask = _mask()
    full = losses.generalized_jsd(s, t, mask, beta=beta, temperature=temp)
    top = losses.topk_jsd(s, t_logprobs.gather(-1, ids), ids, mask, beta=beta, temperature=temp)
    assert top.item() == pytest.approx(full.item(), abs=1e-10)


def test_topk_jsd_on_hand_made_buckets_and_rejects_bad_beta() -> None:
    student = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64).log().view(1, 1, 4)
    t_logprobs = torch.tensor([0.5, 0.3], dtype=torch.float64).log().view(1, 1, 2)
    ids = torch.tensor([0, 2]).view(1, 1, 2)
    p_t, p_s = [0.5, 0.3, 0.2], [0.1, 0.3, 0.6]  # buckets: ids 0, 2 and the tail
    beta = 0.25
    m = [beta * a + (1 - beta) * b for a, b in zip(p_t, p_s, strict=True)]
    expected = beta * _kl_row(p_t, m) + (1 - beta) * _kl_row(p_s, m)
    got = losses.topk_jsd(student, t_logprobs, ids, beta=beta)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="beta"):
        losses.topk_jsd(student, t_logprobs, ids, beta=1.5)


def test_topk_with_all_ids_has_no_floor_from_fp16_rounding() -> None:
    """A cache stores log-probs rounded down to fp16; with K = V there is no tail to absorb the
    rounding error, so a student equal to the teacher has (near) zero loss."""
    from incriminate.distill.teacher_cache import fp16_down

    t = _logits(21).to(torch.float32)
    logp = F.log_softmax(t, dim=-1)
    ids = torch.argsort(logp, dim=-1, descending=True)
    stored = torch.from_numpy(fp16_down(logp.gather(-1, ids).numpy()).astype("float32"))
    assert float(stored.exp().sum(-1).min()) < 1 - 1e-4  # the rounding does lose mass
    for loss in (losses.topk_forward_kl, losses.topk_reverse_kl):
        assert loss(t, stored, ids).item() < 1e-5
    assert losses.topk_jsd(t, stored, ids, beta=0.5).item() < 1e-5
