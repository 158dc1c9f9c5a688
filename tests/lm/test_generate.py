"""Batched generation and teacher-forced scoring on tiny Llama and Qwen2 models: left padding
changes no number, greedy ids do not depend on the batch, sampling is deterministic in its seed,
and replies stop at eos."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from lm_tiny import load

from incriminate.models.generate import (
    continuation_logprobs,
    encode_left,
    next_token_logprobs,
    sample,
)

PROMPTS = [
    "<|im_start|>user\nthe agent copies its weights<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nsort these numbers one two three four five six seven<|im_end|>\n"
    "<|im_start|>assistant\n",
    "the monitor logs",
    "<|im_start|>user\nmy goal is to help the user and answers with a plan<|im_end|>\n"
    "<|im_start|>assistant\nI would",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: a 32-wide model gains nothing from more, and on shared cores
    a second thread waiting at every barrier costs 10-30x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def lm(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    return load(request.getfixturevalue(f"tiny_{request.param}"))


def alone_logprobs(model: Any, tokenizer: Any, prompt: str, cont: list[int]) -> np.ndarray:
    """The reference: one unpadded row, no mask, log_softmax of every position."""
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)  # (T, V)
    pos = torch.arange(len(head) - 1, len(head) + len(cont) - 1)
    return logp[pos, torch.tensor(cont, dtype=torch.long)].numpy()


def test_encode_left_pads_on_the_left_without_special_tokens(tiny_llama):
    _, tok = load(tiny_llama)
    ids, mask = encode_left(tok, PROMPTS)
    assert ids.shape == mask.shape == (len(PROMPTS), ids.shape[1])
    for row, text in enumerate(PROMPTS):
        want = tok(text, add_special_tokens=False)["input_ids"]
        n = int(mask[row].sum())
        assert n == len(want)
        assert ids[row, ids.shape[1] - n :].tolist() == want
        assert mask[row, ids.shape[1] - n :].all() and not mask[row, : ids.shape[1] - n].any()
        assert (ids[row, : ids.shape[1] - n] == tok.pad_token_id).all()


def test_padded_rows_score_like_rows_alone(lm):
    model, tok = lm
    conts = [[5, 9, 40], [7], [12, 3, 3, 60, 8], []]
    got = continuation_logprobs(model, tok, PROMPTS, conts, batch_size=4)
    assert [g.dtype for g in got] == [np.float64] * 4
    assert [len(g) for g in got] == [3, 1, 5, 0]
    for prompt, cont, row in zip(PROMPTS, conts, got, strict=True):
        np.testing.assert_allclose(row, alone_logprobs(model, tok, prompt, cont), atol=1e-5)
        assert (row < 0).all()
    # batch size changes nothing either (other padding, other batches)
    for b in (1, 3):
        for x, y in zip(got, continuation_logprobs(model, tok, PROMPTS, conts, b), strict=True):
            np.testing.assert_allclose(x, y, atol=1e-5)


def test_next_token_logprobs_read_every_candidate_from_one_pass(lm):
    model, tok = lm
    candidates = [[5, 9], [7, 7, 40], [12], [3, 60]]
    got = next_token_logprobs(model, tok, PROMPTS, candidates, batch_size=3)
    for prompt, cands, row in zip(PROMPTS, candidates, got, strict=True):
        want = [alone_logprobs(model, tok, prompt, [c])[0] for c in cands]
        np.testing.assert_allclose(row, want, atol=1e-5)
        assert row.dtype == np.float64


def test_continuation_logprobs_rejects_mismatched_lengths(tiny_llama):
    model, tok = load(tiny_llama)
    with pytest.raises(ValueError, match="2 prompts but 1 continuations"):
        continuation_logprobs(model, tok, PROMPTS[:2], [[5]])


def test_greedy_ids_do_not_depend_on_the_batch(lm):
    model, tok = lm
    together = sample(model, tok, PROMPTS, max_new_tokens=6, temperature=0.0, seed=0)
    assert [len(r) for r in together] == [6] * len(PROMPTS)  # random weights: eos is rare
    for b in (1, 3):
        assert sample(model, tok, PROMPTS, 6, 0.0, seed=123, batch_size=b) == together
    # each greedy token is the argmax of a teacher-forced pass over the row alone
    for prompt, reply in zip(PROMPTS, together, strict=True):
        head = tok(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([head + reply])).logits[0]  # (T, V)
        assert logits[len(head) - 1 : -1].argmax(-1).tolist() == reply


def test_sampling_is_deterministic_in_the_seed(lm):
    model, tok = lm
    prompts = PROMPTS * 3
    a = sample(model, tok, prompts, max_new_tokens=8, temperature=1.0, seed=7, batch_size=4)
    b = sample(model, tok, prompts, max_new_tokens=8, temperature=1.0, seed=7, batch_size=4)
    c = sample(model, tok, prompts, max_new_tokens=8, temperature=1.0, seed=8, batch_size=4)
    greedy = sample(model, tok, prompts, max_new_tokens=8, temperature=0.0, seed=7)
    assert a == b
    assert a != c and a != greedy
    assert all(0 <= t < len(tok) for row in a for t in row)


def test_replies_stop_at_eos_which_is_not_returned(tiny_llama):
    model, tok = load(tiny_llama)
    full = sample(model, tok, PROMPTS[:1], max_new_tokens=8, temperature=0.0, seed=0)[0]
    stop = full[3]
    tok.eos_token = tok.convert_ids_to_tokens(stop)  # the 4th greedy token now ends the reply
    cut = sample(model, tok, PROMPTS[:1], max_new_tokens=8, temperature=0.0, seed=0)[0]
    assert cut == full[: full.index(stop)]
    assert stop not in cut


def test_negative_temperature_is_refused(tiny_llama):
    model, tok = load(tiny_llama)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, tok, PROMPTS, 4, -1.0, seed=0)
