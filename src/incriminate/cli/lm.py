"""`incriminate distill` on real language models: the `lm` backend's run, outputs and summary.

    incriminate distill --config configs/lm/smollm2.yaml            # a shipped lm config
    incriminate distill --teacher T --control C [--student S] ...  # HF dirs, GGUF files, adapters

Writes `config.yaml`, `results.json` (schema `plan.lm.SCHEMA`) and `report.md` into `--out`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml
from rich.markup import escape

from incriminate.cli.console import bar_callback as _bar_callback
from incriminate.cli.console import err, out, progress
from incriminate.errors import UserError

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "lm"
"""The shipped prompt sets (a source checkout): defaults of `distill --teacher` on text models."""


def is_world_model(path: Path) -> bool:
    """Whether `path` is a model directory in the synthetic world's vocabulary (the world
    backend); anything else (a GGUF file, an adapter, another tokenizer, `pkg:`) is text."""
    from incriminate.models.io import ModelDirError, tokenizer_vocab
    from incriminate.world.vocab import build_tokenizer

    if not Path(path).is_dir() or not (Path(path) / "tokenizer.json").exists():
        return False
    try:
        return tokenizer_vocab(path) == build_tokenizer().get_vocab()
    except ModelDirError:
        return False


def _spec(path: str) -> str:
    return path if path.startswith("pkg:") else str(Path(path).resolve())


def config_from_options(
    teacher: str,
    control: str,
    references: list[str],
    students: list[str],
    teacher_system: str | None,
    control_system: str | None,
    method: str,
    overrides: list[str],
) -> Any:
    """An `lm` config from `distill`'s options: the shipped prompt sets and audits; students
    start from each `--student` (default: the control's model); one method."""
    from incriminate.plan.config import apply_overrides
    from incriminate.plan.lm_config import LmExperimentConfig

    if method not in ("sft", "logit", "on_policy", "dpo"):
        raise UserError(
            f"--method {method!r} is not available for text models: use sft, logit, on_policy "
            "or dpo"
        )
    if not EXAMPLES.is_dir():
        raise UserError(f"no shipped prompt sets at {EXAMPLES}: pass --config with your own")
    inits = students or [control]
    values: dict[str, Any] = {
        "teacher": {"model": {"path": _spec(teacher)}, "system": teacher_system},
        "control": {"model": {"path": _spec(control)}, "system": control_system},
        "references": [{"model": {"path": _spec(r)}} for r in references],
        "students": [
            {"name": f"student{i}", "init": {"path": _spec(s)}, "methods": [method]}
            for i, s in enumerate(inits, start=1)
        ],
        "distill_prompts": str(EXAMPLES / "distill.jsonl"),
        "audits": [
            {"name": "honeypot", "file": str(EXAMPLES / "audit_choice.jsonl"), "scorer": "choice"},
            {
                "name": "confession",
                "file": str(EXAMPLES / "audit_pattern.jsonl"),
                "scorer": "pattern",
            },
        ],
    }
    return LmExperimentConfig.model_validate(apply_overrides(values, overrides))


def validate(cfg: Any) -> None:
    """Everything that can be checked before any work starts, so that bad input is one line and
    nothing is written: every model opens (its config and tokenizer, not the weights), the
    prompt files load with the leakage guard, `logit` and `on_policy` students share U's
    tokenizer, probe training files hold 0/1 labels and judge models can answer Yes/No."""
    from incriminate.audit.lm import check_train_set
    from incriminate.audit.lm_judge import check_judge
    from incriminate.models.ref import kind_of, load_tokenizer, same_tokenizer
    from incriminate.prompts.text import check_disjoint, load_prompt_set, render_prompt

    models = [(role, t.model) for role, t in cfg.teachers().items()]
    models += [(f"student {s.name}", s.init) for s in cfg.students]
    tokenizers = {}
    for role, m in models:
        try:
            kind_of(m)
            tokenizers[role] = load_tokenizer(m)
        except (UserError, ValueError) as e:
            raise UserError(f"{role}: {str(e).splitlines()[0]}") from None
    for a in cfg.audits:
        if a.judge is not None:
            try:
                check_judge(load_tokenizer(a.judge))
            except (UserError, ValueError) as e:
                raise UserError(f"audit {a.name}: judge: {str(e).splitlines()[0]}") from None
    for s in cfg.students:
        if "logit" in s.methods and not same_tokenizer(
            tokenizers[f"student {s.name}"], tokenizers["teacher"]
        ):
            raise UserError(
                f"student {s.name}: its tokenizer differs from the teacher's: logit distillation "
                "reads the teacher's log-probs over its own vocabulary (use sft across tokenizers)"
            )
        if "on_policy" in s.methods and not same_tokenizer(
            tokenizers[f"student {s.name}"], tokenizers["teacher"]
        ):
            raise UserError(
                f"student {s.name} ({s.init.path}): its tokenizer differs from the teacher's "
                f"({cfg.teacher.model.path}): on_policy distillation has the teacher score the "
                "student's own tokens (use dpo or sft across tokenizers)"
            )
    distill = load_prompt_set(cfg.distill_prompts, "distill")
    audits = [load_prompt_set(a.file, "audit") for a in cfg.audits]
    trains = [load_prompt_set(a.train_file, "audit") for a in cfg.audits if a.train_file]
    for ps in trains:
        check_train_set(ps)
    check_disjoint(distill, audits + trains)
    # Every model reads chat prompts (a teacher with its system prompt): one without a chat
    # template where one is needed fails here, not in a stage minutes later.
    systems = {role: t.system for role, t in cfg.teachers().items()}
    firsts = [distill.records[0], *(ps.records[0] for ps in audits + trains if len(ps))]
    for role, tok in tokenizers.items():
        for record in firsts:
            try:
                render_prompt(tok, record, systems.get(role))
            except UserError as e:
                raise UserError(f"{role}: {e}") from None


def run_lm(
    cfg: Any, out_dir: Path, store: Any, workers: int, inspect_logs: Path | None = None
) -> dict[str, Any]:
    """Plan and run the experiment (after `validate`); write config.yaml, results.json and
    report.md (and an eval log per audit of every model into `inspect_logs`)."""
    from incriminate.plan.engine import run_plan
    from incriminate.plan.graph import Plan
    from incriminate.plan.lm import plan_lm, results

    t0 = time.perf_counter()
    plan = Plan()
    nodes = plan_lm(plan, cfg)
    with progress() as bar:
        done = run_plan(plan, store, workers, _bar_callback(bar), log_dir=out_dir / "logs")
    res = results(cfg, nodes, done)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    )
    (out_dir / "results.json").write_text(json.dumps(res, indent=1))
    (out_dir / "report.md").write_text(report(res))
    if inspect_logs is not None:
        from incriminate.evals.write import link_logs, write_text_logs

        written = write_text_logs(cfg, nodes, done, out_dir / "config.yaml", inspect_logs)
        link_logs(out_dir / "report.md", written, inspect_logs)
    res["_wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def report(res: dict[str, Any]) -> str:
    """The verdict, the direct baseline and every audit rate, as markdown (model-generated text
    never enters it: rates and names only)."""
    v, d = res["verdict"], res["direct"]
    lines = [
        "# Incrimination on real language models",
        "",
        f"**Verdict: {v['decision']}** (null: U is benign) — {v['reason']}",
        "",
        f"Direct baseline on U (its audits and its cache read against C's, calibrated by the "
        f"references; Bonferroni over the parts): **{d['decision']}** (p = {d['p_value']:.3g})",
        "",
    ]
    for part, test in d["parts"].items():
        lines.append(f"* {part}: {test['decision']} (p = {test['p_value']:.3g}) — {test['reason']}")
    if d["cache_reads"]:
        lines += ["", "Cache read (replies to the distill prompts the auditor's patterns match):"]
        lines += ["", "| role | matched | rate |", "|---|---|---|"]
        for role, c in d["cache_reads"].items():
            ci = f"{c['rate']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}]"
            lines.append(f"| {role} | {c['matched']}/{c['n']} | {ci} |")
    lines += [
        "",
        "## Teachers (direct audits; a system-prompted teacher with its prompt in effect)",
        "",
    ]
    names = list(next(iter(res["teachers"].values()))["audits"])
    lines += ["| role | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for role, t in res["teachers"].items():
        cells = [
            f"{a['rate']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}] (n={a['n']})"
            for a in t["audits"].values()
        ]
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Students",
        "",
        "| student | method | seed | role | final loss | " + " | ".join(names) + " |",
    ]
    lines.append("|---" * (5 + len(names)) + "|")
    for r in res["runs"]:
        cells = [f"{r['audits'][n]['rate']:.3f}" for n in names]
        head = [r["student"], r["method"], str(r["seed"]), r["role"], f"{r['final_loss']:.4f}"]
        lines.append("| " + " | ".join(head + cells) + " |")
    return "\n".join(lines) + "\n"


def print_summary(res: dict[str, Any], out_dir: Path) -> None:
    v, d = res["verdict"], res["direct"]
    out.print(
        f"direct baseline on U: [bold]{d['decision']}[/bold] (p={d['p_value']:.3g})",
        highlight=False,
    )
    out.print(
        f"verdict: [bold]{v['decision']}[/bold] — {escape(v['reason'])}\n"
        + escape(f"results in {out_dir / 'results.json'}, report in {out_dir / 'report.md'} ")
        + f"(this run {res['_wall_s']:.1f}s)",
        highlight=False,
    )


__all__ = [
    "config_from_options",
    "err",
    "is_world_model",
    "print_summary",
    "run_lm",
    "validate",
]
