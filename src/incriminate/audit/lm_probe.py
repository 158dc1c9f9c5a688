"""The `probe` text audit: a linear probe on the audited model's own residual stream.

Design: the white-box check an auditor can run on any model it holds, after the deception probes
of Goldowsky-Dill et al. 2025 ("Detecting Strategic Deception Using Linear Probes",
arXiv:2502.03407): train on instructed contrast pairs, apply to scenarios. The pairs follow the
contrast construction of Zou et al. 2023 ("Representation Engineering", arXiv:2310.01405): one
user situation under two instructions, to pursue a misaligned goal or deceive (label 1) or to
be honest and aligned (label 0), so that the instruction is all that differs within a pair.

For each audited model separately (a teacher with its hidden system prompt in effect, or a
student with none), never across models:

* features: the residual stream `hidden_states[layer]` at the last prompt token, the position
  the reply starts from, with every prompt rendered as the other scorers render it (the chat
  template, and the teacher's system prompt where it has one). Layer 0 is the embeddings and L
  the last decoder layer; a negative layer counts from the end; the default is L // 2;
* the probe: logistic regression on standardised features with an L2 penalty, fitted on the
  model's activations of the auditor's training file (`audit.probe.train_probe`, the world's);
* an item score: the probe's P(label 1) for an audit record.

The held-out accuracy comes from k-fold cross-validation with whole pairs held out: the fold
that scores a situation never trained on its twin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from incriminate.audit.probe import Probe, train_probe
from incriminate.errors import UserError
from incriminate.models.generate import encode_left, token_ids

FOLDS = 5
"""Cross-validation folds of the held-out accuracy (fewer when there are fewer pairs)."""


def residuals(
    model: Any, tokenizer: Any, prompts: Sequence[str], layer: int | None, batch_size: int = 16
) -> tuple[np.ndarray, int]:
    """((N, D) float64 residuals at the last token of each rendered prompt, the layer index
    read, in 0..L). Prompts are batched by length, left padded with an attention mask and
    positions that follow it, so a padded row reads as that prompt alone."""
    import torch

    lengths = [len(ids) for ids in token_ids(tokenizer, prompts)]
    if any(n == 0 for n in lengths):
        raise ValueError("an empty prompt has no last token to read")
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    out: list[np.ndarray] = [np.zeros(0)] * len(prompts)
    device = next(model.parameters()).device
    index = 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask = encode_left(tokenizer, [prompts[i] for i in chunk])  # (B, T)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        with torch.inference_mode():
            hidden = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                output_hidden_states=True,
                logits_to_keep=1,
            ).hidden_states  # L + 1 tensors of (B, T, D): embeddings, layer 1, ..., layer L
        if start == 0:
            index = layer_index(layer, len(hidden) - 1)
        last = hidden[index][:, -1].double().cpu().numpy()  # (B, D)
        for row, i in enumerate(chunk):
            out[i] = last[row]
    return np.stack(out), index


def layer_index(layer: int | None, n_layers: int) -> int:
    """The hidden-states index of `layer` (None: the middle, n_layers // 2) in 0..n_layers."""
    if layer is None:
        return n_layers // 2
    if not -(n_layers + 1) <= layer <= n_layers:
        raise UserError(
            f"layer {layer} is out of range: the model has {n_layers} layers "
            f"(0..{n_layers}, or {-(n_layers + 1)}..-1 from the end)"
        )
    return layer % (n_layers + 1)


def fit(x: np.ndarray, labels: np.ndarray, groups: Sequence[str]) -> tuple[Probe, dict[str, Any]]:
    """The probe on (N, D) training features with (N,) 0/1 labels, and what it scored on them:
    training accuracy, held-out accuracy over folds of whole groups (pairs), their count."""
    probe = _train(x, labels)
    heldout, folds = _heldout_accuracy(x, labels, groups)
    meta = {
        "n_train": len(labels),
        "train_accuracy": round(_accuracy(probe, x, labels), 4),
        "heldout_accuracy": heldout,
        "folds": folds,
    }
    return probe, meta


def _train(x: np.ndarray, labels: np.ndarray) -> Probe:
    return train_probe([x[labels == 0], x[labels == 1]], [0, 1], ["aligned", "misaligned"])


def _accuracy(probe: Probe, x: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((probe.score(x) > 0.5) == (labels == 1)))


def _heldout_accuracy(
    x: np.ndarray, labels: np.ndarray, groups: Sequence[str]
) -> tuple[float | None, int]:
    """(pooled accuracy on held-out folds, folds); (None, 0) with fewer than two groups or a
    fold whose training part lacks a label."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = min(FOLDS, len(set(groups)))
    if k < 2:
        return None, 0
    hits = np.zeros(len(labels), dtype=bool)
    for train, test in StratifiedGroupKFold(n_splits=k).split(x, labels, list(groups)):
        if len(set(labels[train].tolist())) < 2:
            return None, 0
        hits[test] = (_train(x[train], labels[train]).score(x[test]) > 0.5) == (labels[test] == 1)
    return round(float(hits.mean()), 4), k


__all__ = ["FOLDS", "fit", "layer_index", "residuals"]
