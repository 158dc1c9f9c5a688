"""Subliminal learning's auxiliary-logit experiment (Cloud et al. 2025, arXiv 2507.14805, §6),
on scikit-learn's bundled 8x8 digits instead of MNIST.

An MLP 64-256-256-(10+m) starts from init W0. The teacher is trained with cross-entropy on the 10
class logits only. A student is then distilled, with ``losses.forward_kl``, on the teacher's m
auxiliary logits only (softmax over the m aux logits, as in the paper), on uniform-noise inputs:
it never sees a digit or a class logit. Its test accuracy on real digits measures what passed
through outputs that say nothing about digits.

All seeds of one arm train at once as a stack of independent MLPs (batched matmuls). The loss is
the *sum* over the stack of each model's own mean loss, so each model's gradient, and so its
Adam trajectory, is exactly what it would be trained alone.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

from incriminate.distill import losses

log = logging.getLogger(__name__)

N_CLASSES = 10
CHANCE = 1.0 / N_CLASSES


class Arm(BaseModel):
    """One experimental condition: which teacher, which student init, which logits are distilled."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    name: str
    """Label used in the table and the plot."""
    m: int = Field(ge=1)
    """Number of auxiliary logits of teacher and student."""
    teacher: Literal["trained", "untrained"]
    """`trained`: W0 trained on class logits. `untrained`: W0 itself, never trained."""
    student_init: Literal["same", "different"]
    """`same`: the student starts from the teacher's init W0. `different`: from another seed."""
    distill_on: Literal["aux", "all"] = "aux"
    """`aux`: the m auxiliary logits only (the experiment). `all`: all 10 + m logits."""


DEFAULT_ARMS: tuple[Arm, ...] = (
    Arm(name="same init, m=3", m=3, teacher="trained", student_init="same"),
    Arm(name="different init, m=3", m=3, teacher="trained", student_init="different"),
    Arm(name="untrained teacher, m=3", m=3, teacher="untrained", student_init="same"),
    Arm(name="same init, m=1", m=1, teacher="trained", student_init="same"),
    Arm(name="same init, m=10", m=10, teacher="trained", student_init="same"),
    Arm(name="different init, m=10", m=10, teacher="trained", student_init="different"),
    Arm(name="all logits, same init, m=3", m=3, teacher="trained", student_init="same",
        distill_on="all"),
)  # fmt: skip


class SubliminalConfig(BaseModel):
    """Settings of the digits auxiliary-logit experiment."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    seeds: int = Field(default=10, ge=2, le=1000)
    """Independent repetitions per arm (seeds 0..n-1): init, teacher, noise and batch order. Each
    seed s draws from disjoint generator seeds: W0 s, teacher batches 1000+s, student batches
    2000+s, noise 3000+s, different-init students 10000+s."""
    hidden: int = Field(default=256, ge=1)
    """Width of both hidden layers (the paper's MNIST MLP uses 256)."""
    arms: tuple[Arm, ...] = DEFAULT_ARMS
    """Conditions to run; every arm uses the same seeds, so arms are paired by seed."""
    teacher_epochs: int = Field(default=20, ge=1)
    """Epochs of cross-entropy on the class logits over the training digits."""
    student_epochs: int = Field(default=5, ge=1)
    """Epochs of distillation over the fixed noise set."""
    noise_samples: int = Field(default=6000, ge=1)
    """Uniform-noise inputs in [-1, 1]^64 per seed, drawn once and shared by that seed's arms."""
    batch_size: int = Field(default=128, ge=1)
    """Minibatch size for teacher training and distillation."""
    lr: float = Field(default=3e-4, gt=0)
    """Adam learning rate for teacher and students."""
    temperature: float = Field(default=1.0, gt=0)
    """Softmax temperature of the distillation KL (1: the plain softmax over the aux logits)."""
    test_fraction: float = Field(default=0.25, gt=0, lt=1)
    """Held-out share of the 1,797 digits, stratified; accuracy is measured there."""
    split_seed: int = 0
    """Seed of the train/test split, fixed across seeds."""
    threads: int = Field(default=1, ge=1)
    """torch intra-op threads. One: the matmuls are small, and two threads on a 2-core machine
    shared with any other process slow down several-fold (OpenMP spin-waits)."""

    @classmethod
    def paper_scale(cls) -> SubliminalConfig:
        """Students see 60,000 noise inputs (as many as MNIST's training images, the size of
        the published run) instead of 6,000: ten times the distillation steps."""
        return cls(noise_samples=60_000)

    @classmethod
    def quick(cls, seeds: int = 4) -> SubliminalConfig:
        """A reduced setting for tests and smoke runs: fewer seeds, arms and steps."""
        names = ("same init, m=3", "different init, m=3", "same init, m=10", "different init, m=10")
        arms = tuple(a for a in DEFAULT_ARMS if a.name in names)
        return cls(seeds=seeds, arms=arms, noise_samples=3000, teacher_epochs=15)


def load_data(test_fraction: float, split_seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Digits scaled to [-1, 1]: x_train (N, 64), y_train (N,), x_test (M, 64), y_test (M,)."""
    data, target = load_digits(return_X_y=True)
    x = np.asarray(data, dtype=np.float32) / 8.0 - 1.0  # pixel values 0..16
    y = np.asarray(target, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=split_seed, stratify=y
    )
    return (
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr),
        torch.from_numpy(x_te),
        torch.from_numpy(y_te),
    )


def init_params(seed: int, sizes: list[int]) -> list[tuple[Tensor, Tensor]]:
    """One MLP's init W0: weights N(0, 1/fan_in) shaped (out, in), zero biases."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(d_out, d_in, generator=g) / d_in**0.5, torch.zeros(d_out))
        for d_in, d_out in itertools.pairwise(sizes)
    ]


class StackedMLP(torch.nn.Module):
    """S independent ReLU MLPs evaluated together: (S, N, d_in) -> (S, N, d_out)."""

    def __init__(self, inits: list[list[tuple[Tensor, Tensor]]]) -> None:
        super().__init__()
        n_layers = len(inits[0])
        self.weights = torch.nn.ParameterList(
            torch.stack([p[i][0] for p in inits]).clone() for i in range(n_layers)
        )  # each (S, out, in)
        self.biases = torch.nn.ParameterList(
            torch.stack([p[i][1] for p in inits]).clone() for i in range(n_layers)
        )  # each (S, out)

    def forward(self, x: Tensor) -> Tensor:
        h = x  # (S, N, d_in)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # (S, N, out)
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h


def _batches(n: int, batch_size: int, gens: list[torch.Generator]) -> list[Tensor]:
    """Per-model shuffled minibatch indices for one epoch: a list of (S, b) long tensors."""
    perms = torch.stack([torch.randperm(n, generator=g) for g in gens])  # (S, n)
    return list(perms.split(batch_size, dim=1))


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """Per-model rows: x (S, n, d), idx (S, b) long -> (S, b, d)."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def train_teacher(model: StackedMLP, x: Tensor, y: Tensor, cfg: SubliminalConfig) -> None:
    """Cross-entropy on the class logits only; aux rows of the last layer get zero gradient."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gens = [torch.Generator().manual_seed(1_000 + s) for s in range(cfg.seeds)]
    for _ in range(cfg.teacher_epochs):
        for idx in _batches(len(x), cfg.batch_size, gens):
            logits = model(x[idx])[..., :N_CLASSES]  # (S, b, 10)
            loss = losses.cross_entropy(logits, y[idx]) * cfg.seeds  # sum of per-model means
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def distill(
    student: StackedMLP, teacher_logits: Tensor, noise: Tensor, arm: Arm, cfg: SubliminalConfig
) -> float:
    """Forward KL to the teacher's soft targets on noise; returns the last batch's loss.

    teacher_logits: (S, n, 10 + m) precomputed on noise (S, n, 64).
    """
    cols = slice(N_CLASSES, None) if arm.distill_on == "aux" else slice(None)
    targets = teacher_logits[..., cols]  # (S, n, m) or (S, n, 10 + m)
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    gens = [torch.Generator().manual_seed(2_000 + s) for s in range(cfg.seeds)]
    loss = torch.zeros(())
    for _ in range(cfg.student_epochs):
        for idx in _batches(noise.shape[1], cfg.batch_size, gens):
            out = student(_gather(noise, idx))[..., cols]  # (S, b, m)
            loss = losses.forward_kl(out, _gather(targets, idx), temperature=cfg.temperature)
            opt.zero_grad(set_to_none=True)
            (loss * cfg.seeds).backward()  # sum of per-model means
            opt.step()
    return loss.item()


@torch.no_grad()
def accuracy(model: StackedMLP, x: Tensor, y: Tensor) -> list[float]:
    """Test accuracy of each stacked model from its class logits: S floats."""
    pred = model(x.expand(len(model.weights[0]), -1, -1))[..., :N_CLASSES].argmax(-1)  # (S, M)
    return (pred == y).float().mean(-1).tolist()


def _slice_head(
    inits: list[list[tuple[Tensor, Tensor]]], m: int
) -> list[list[tuple[Tensor, Tensor]]]:
    """Keep the first 10 + m rows of each init's output layer (the hidden layers are unchanged)."""
    k = N_CLASSES + m
    return [[*p[:-1], (p[-1][0][:k], p[-1][1][:k])] for p in inits]


def run(
    config: SubliminalConfig,
    out_dir: Path | None = None,
    on_arm_done: Callable[[str], None] | None = None,
) -> dict:
    """Run every arm over ``config.seeds`` seeds; write results to ``out_dir`` when given.

    ``on_arm_done`` is called with "teacher", then with each arm's name, as each finishes.
    Returns the summary dict written to ``repro.json`` (per-arm accuracies, means, 95% CIs).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    start = time.perf_counter()
    try:
        accs, final_kl = _train_and_evaluate(config, on_arm_done)
    finally:
        torch.set_num_threads(threads)
    result = summarise(accs, final_kl, paired_arms(config.arms))
    result["config"] = config.model_dump(mode="json")
    result["wall_s"] = round(time.perf_counter() - start, 2)
    if out_dir is not None:
        write_results(result, out_dir)
    return result


def paired_arms(arms: tuple[Arm, ...]) -> list[tuple[str, str]]:
    """(same-init arm, control arm) name pairs with the same m: each control against the
    trained-teacher, same-init, aux-only arm it differs from in one respect."""
    pairs = []
    for a in arms:
        if (a.teacher, a.student_init, a.distill_on) != ("trained", "same", "aux"):
            continue
        for b in arms:
            if b is not a and b.m == a.m and b.distill_on == "aux":
                pairs.append((a.name, b.name))
    return pairs


def _train_and_evaluate(
    config: SubliminalConfig, on_arm_done: Callable[[str], None] | None
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Train the teachers and every arm's students; per-seed test accuracies and final KLs."""
    x_tr, y_tr, x_te, y_te = load_data(config.test_fraction, config.split_seed)
    m_max = max(a.m for a in config.arms)
    sizes = [x_tr.shape[1], config.hidden, config.hidden, N_CLASSES + m_max]
    seeds = range(config.seeds)
    w0 = [init_params(s, sizes) for s in seeds]
    w_other = [init_params(10_000 + s, sizes) for s in seeds]  # the different-init students
    noise_gen = [torch.Generator().manual_seed(3_000 + s) for s in seeds]
    noise = torch.stack(
        [torch.rand(config.noise_samples, sizes[0], generator=g) * 2 - 1 for g in noise_gen]
    )

    # One teacher per seed serves every m: class-logit training never touches the aux rows.
    teacher = StackedMLP(w0)
    train_teacher(teacher, x_tr, y_tr, config)
    untrained = StackedMLP(w0)
    with torch.no_grad():
        teacher_logits = {"trained": teacher(noise), "untrained": untrained(noise)}
    accs: dict[str, list[float]] = {
        "teacher": accuracy(teacher, x_te, y_te),
        "init W0": accuracy(untrained, x_te, y_te),
    }
    log.info(
        "teacher accuracy %.3f, W0 accuracy %.3f",
        np.mean(accs["teacher"]),
        np.mean(accs["init W0"]),
    )
    if on_arm_done is not None:
        on_arm_done("teacher")

    final_loss: dict[str, float] = {}
    for arm in config.arms:
        init = w0 if arm.student_init == "same" else w_other
        student = StackedMLP(_slice_head(init, arm.m))
        targets = teacher_logits[arm.teacher][..., : N_CLASSES + arm.m]
        final_loss[arm.name] = distill(student, targets, noise, arm, config)
        accs[arm.name] = accuracy(student, x_te, y_te)
        log.info(
            "%s: accuracy %.3f (final KL %.2e)",
            arm.name,
            np.mean(accs[arm.name]),
            final_loss[arm.name],
        )
        if on_arm_done is not None:
            on_arm_done(arm.name)

    return accs, final_loss


CI_METHOD = "95% Student t-interval over seeds: mean ± t(0.975, n-1) · sd / sqrt(n)"


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and two-sided 95% Student t-interval of ``values`` (n >= 2): (mean, low, high)."""
    from scipy.stats import t as student_t  # scipy ships with scikit-learn

    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    half = float(student_t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
    return mean, mean - half, mean + half


def summarise(
    accs: dict[str, list[float]], final_kl: dict[str, float], pairs: list[tuple[str, str]]
) -> dict:
    """Per-arm mean accuracy with a t-interval, plus seed-paired differences for ``pairs``."""
    rows = []
    for name, values in accs.items():
        mean, low, high = t_interval(values)
        rows.append(
            {
                "name": name,
                "kind": "student" if name in final_kl else "reference",
                "mean": mean,
                "ci95": [low, high],
                "n": len(values),
                "per_seed": values,
                "final_kl": final_kl.get(name),
            }
        )
    contrasts = []
    for a, b in pairs:
        mean, low, high = t_interval([x - y for x, y in zip(accs[a], accs[b], strict=True)])
        contrasts.append({"a": a, "b": b, "mean": mean, "ci95": [low, high]})
    return {"chance": CHANCE, "ci_method": CI_METHOD, "arms": rows, "paired_differences": contrasts}


def markdown_table(result: dict) -> str:
    """The arms as a Markdown table, with chance level and the CI method."""
    lines = [
        "| arm | test accuracy (mean) | 95% CI | seeds |",
        "| --- | ---: | --- | ---: |",
    ]
    for r in result["arms"]:
        low, high = r["ci95"]
        lines.append(f"| {r['name']} | {r['mean']:.3f} | [{low:.3f}, {high:.3f}] | {r['n']} |")
    lines += ["", f"Chance level: {result['chance']:.2f}. CI: {result['ci_method']}."]
    for c in result["paired_differences"]:
        low, high = c["ci95"]
        lines.append(
            f"Paired difference ({c['a']}) − ({c['b']}): "
            f"{c['mean']:+.3f} [{low:+.3f}, {high:+.3f}]."
        )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> bool:
    """Bar plot of mean accuracy per arm with CI whiskers and the chance line; False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed; skipping %s", path)
        return False
    rows = result["arms"]
    means = [r["mean"] for r in rows]
    err = [[r["mean"] - r["ci95"][0] for r in rows], [r["ci95"][1] - r["mean"] for r in rows]]
    colors = ["0.6" if r["kind"] == "reference" else "tab:blue" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(range(len(rows)), means, yerr=err, capsize=4, color=colors)
    ax.axhline(result["chance"], color="tab:red", linestyle="--", label="chance")
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("test accuracy on real digits")
    ax.set_ylim(0, 1)
    ax.set_title("Subliminal learning on 8x8 digits: students distilled on uniform noise")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


NOTES = """
Notes: with m=1 the softmax over a single auxiliary logit is identically 1, so the KL and its
gradient are exactly 0 and the student never leaves W0 (its row equals "init W0"). The
untrained-teacher student starts at its own teacher, so its KL is 0 up to float rounding and it
keeps W0's accuracy. "all logits" distils all 10 + m logits on the same noise: a reference for
what noise inputs can carry when the class logits are not withheld.
"""


def write_results(result: dict, out_dir: Path) -> None:
    """Write repro.json, repro.md and repro.png into ``out_dir`` (created if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "repro.json").write_text(json.dumps(result, indent=2) + "\n")
    c = result["config"]
    settings = (
        f"Settings: {c['seeds']} seeds per arm; MLP 64-{c['hidden']}-{c['hidden']}-(10+m); "
        f"teacher {c['teacher_epochs']} epochs of class-logit cross-entropy; students "
        f"{c['student_epochs']} epochs of forward KL (T={c['temperature']}) on "
        f"{c['noise_samples']} uniform-noise inputs; Adam lr {c['lr']}, batch {c['batch_size']}; "
        f"{result['wall_s']:.0f} s wall.\n"
    )
    (out_dir / "repro.md").write_text(
        "# Subliminal learning, auxiliary-logit experiment on 8x8 digits\n\n"
        + markdown_table(result)
        + "\n"
        + settings
        + NOTES
    )
    plot(result, out_dir / "repro.png")
