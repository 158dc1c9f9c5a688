"""`incriminate demo` and `incriminate distill`: the experiment through the command line.

Both resolve a config (defaults or `--quick`, then `--config FILE`, then dotted overrides), run
the pipeline on the artifact store and write into the output directory:

    config.yaml    the resolved config (its hash is `config_hash` in the results)
    results.json   every number (schema in `experiment.results`)
    report.md      the verdict and the evidence behind it
    report.html    the same with plots, training curves and transcripts (`incriminate report`)

and a copy of the three into `STORE/experiment/<config_hash>/`.

Every input is validated before anything is written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from incriminate.cli.console import DEFAULT_STORE, err, out, progress, run_command, setup
from incriminate.cli.console import bar_callback as _bar_callback
from incriminate.errors import UserError

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML config file (values and registered names).")
]
Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Dotted overrides of the config, e.g. seeds=5 build.preset=nano."),
]
StoreOpt = Annotated[Path, typer.Option("--store", help="Artifact store directory.")]
WorkersOpt = Annotated[
    int, typer.Option(help="Worker processes (one torch thread each); results do not depend on it.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the results as JSON.")]
InspectLogsOpt = Annotated[
    Path | None,
    typer.Option(
        "--inspect-logs",
        help="Also write an Inspect AI eval log of every audit of every teacher and student "
        "into this directory, linked from report.md (docs/inspect.md).",
    ),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v")]


def prepare(
    out_dir: Path, store_dir: Path, workers: int, verbose: bool, logs: Path | None = None
) -> Any:
    """Check `--workers`, open the store and the output directory (and the logs' directory;
    all writable before any work starts), set up logging and torch; returns the store."""
    from incriminate.store import Store

    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    store = Store(store_dir)
    Store(out_dir)
    if logs is not None:
        Store(logs)
    setup(verbose)
    return store


def _execute(
    cfg: Any,
    out_dir: Path,
    store_dir: Path,
    workers: int,
    verbose: bool,
    inspect_logs: Path | None = None,
) -> dict:
    """Run the experiment, write config.yaml, results.json and report.md (and the eval logs
    into `inspect_logs`); return the results."""
    if cfg.teacher_dir is not None:
        refs = [Path(d) for d in cfg.reference_dirs]
        _check_teachers(Path(cfg.teacher_dir), Path(cfg.control_dir), refs)
    store = prepare(out_dir, store_dir, workers, verbose, inspect_logs)
    from incriminate.plan.engine import run_experiment
    from incriminate.report.html import write_results_report
    from incriminate.report.outputs import write_outputs
    from incriminate.report.results import assemble

    t0 = time.perf_counter()
    with progress() as bar:
        raw = run_experiment(cfg, store, workers, _bar_callback(bar), log_dir=out_dir / "logs")
    results = assemble(cfg, raw)
    write_outputs(cfg, results, out_dir, store)
    write_results_report(results, out_dir / "report.html", store.root)
    if inspect_logs is not None:
        from incriminate.evals.write import link_logs, write_world_logs

        config = out_dir / "config.yaml"
        written = write_world_logs(raw, store.root, config, cfg.alpha, inspect_logs)
        link_logs(out_dir / "report.md", written, inspect_logs)
    results["_wall_s"] = round(time.perf_counter() - t0, 1)
    return results


def _check_teachers(teacher: Path, control: Path, references: list[Path]) -> None:
    """Every directory holds a loadable model in the world's vocabulary, with one tokenizer."""
    from incriminate.models.io import (
        ModelDirError,
        check_same_tokenizer,
        load_model,
        tokenizer_vocab,
    )
    from incriminate.world.vocab import build_tokenizer

    roles = [("teacher", teacher), ("control teacher", control)]
    roles += [(f"reference {i}", r) for i, r in enumerate(references, start=1)]
    for role, path in roles:
        try:
            load_model(path)
            tokenizer_vocab(path)
        except ModelDirError as e:
            raise UserError(f"{role}: {e}") from None
    if tokenizer_vocab(teacher) != build_tokenizer().get_vocab():
        raise UserError(f"teacher {str(teacher)!r} does not use the world's tokenizer")
    for role, path in roles[1:]:
        check_same_tokenizer(path, teacher, role)


def _print_summary(results: dict, out_dir: Path) -> None:
    from rich.table import Table

    v = results["verdict"]
    table = Table(
        title="U-students vs C-students per configuration (mean over seeds)",
        title_justify="left",
        caption="audits: honeypot / interrogation / scratchpad; truth: deployment, hp "
        "discrimination; p one-sided over seeds; Holm over configurations",
    )
    for col in ("configuration", "honeypot U/C", "interrog. U/C", "scratchpad U/C", "p", "Holm p"):
        table.add_column(col, justify="left" if col == "configuration" else "right")
    for col in ("deploy U/C", "hp disc U/C", "capability U/C"):
        table.add_column(col, justify="right")

    def uc(block: dict, name: str) -> str:
        a = block[name]
        return f"{a['teacher']['rate']:.3f}/{a['control']['rate']:.3f}"

    for c in results["configurations"]:
        a, gt, ev = c["audits"], c["ground_truth"], c["evidence"]
        table.add_row(
            c["name"],
            uc(a, "honeypot"),
            uc(a, "interrogation"),
            uc(a, "scratchpad"),
            f"{ev['p_value']:.3g}",
            f"{ev['p_adjusted']:.3g}",
            uc(gt, "deployment"),
            uc(gt, "honeypot_discrimination"),
            uc(gt, "task_accuracy"),
        )
    out.print(table)
    d = results.get("direct")
    if d is not None:
        parts = ", ".join(f"{k} p={x['p_value']:.3g}" for k, x in d["parts"].items())
        out.print(f"direct baseline on U: [bold]{d['decision']}[/bold] ({parts})", highlight=False)
    out.print(
        f"verdict: [bold]{v['decision']}[/bold] — {v['reason']}\n"
        + escape(
            f"results in {out_dir / 'results.json'}, report in {out_dir / 'report.md'} and "
            f"{out_dir / 'report.html'} "
        )
        + f"(stage compute {results['timing']['total_s']:.1f}s, "
        f"this run {results['_wall_s']:.1f}s)",
        highlight=False,
    )


def _finish(results: dict, out_dir: Path, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps({k: v for k, v in results.items() if k != "_wall_s"}))
    else:
        _print_summary(results, out_dir)


def demo(
    overrides: Overrides = None,
    config: ConfigOpt = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="A reduced grid on tiny organisms (seconds; for tests).")
    ] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for results.")] = Path(
        "runs/demo"
    ),
    store_dir: StoreOpt = DEFAULT_STORE,
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    inspect_logs: InspectLogsOpt = None,
) -> None:
    """The whole incrimination demo: organisms, paired distillation grid, audits, verdict."""

    def body() -> None:
        from incriminate.plan.config import load_config

        cfg = load_config(config, overrides, quick)
        results = _execute(cfg, out_dir, store_dir, workers, verbose, inspect_logs)
        _finish(results, out_dir, as_json)

    run_command(body)


def distill(
    overrides: Overrides = None,
    method: Annotated[
        str, typer.Option(help="Distillation method: sft, logit, on_policy, dpo (incriminate ls).")
    ] = "logit",
    data: Annotated[str, typer.Option(help="Data selection, e.g. full_mix.")] = "full_mix",
    init: Annotated[
        str, typer.Option(help="Student init: shared_base or other_base.")
    ] = "shared_base",
    teacher: Annotated[
        Path | None, typer.Option(help="Teacher U model directory (default: the organism).")
    ] = None,
    control: Annotated[
        Path | None, typer.Option(help="Control teacher model directory (with --teacher).")
    ] = None,
    reference: Annotated[
        list[Path] | None,
        typer.Option(
            help="A benign reference teacher's model directory (with --teacher; repeat it). "
            "The verdict tests 'U is benign' against them; without any it is inconclusive."
        ),
    ] = None,
    student: Annotated[
        list[str] | None,
        typer.Option(
            help="Text models: a student init (HF directory, GGUF file, adapter or pkg: name; "
            "repeat it). Default: the control's model."
        ),
    ] = None,
    teacher_system: Annotated[
        str | None,
        typer.Option(help="Text models: U's hidden system prompt (a system-prompted teacher)."),
    ] = None,
    control_system: Annotated[
        str | None, typer.Option(help="Text models: C's system prompt (e.g. a neutral one).")
    ] = None,
    config: ConfigOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for results.")] = Path(
        "runs/distill"
    ),
    store_dir: StoreOpt = DEFAULT_STORE,
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    inspect_logs: InspectLogsOpt = None,
) -> None:
    """One configuration (method x data x student init) over the config's seeds, each teacher
    run paired with its control run, with the verdict on that configuration alone. Teachers
    that are real language models (a Hugging Face directory, a GGUF file, a PEFT adapter, a
    pkg: name) or a config with `backend: lm` run the text backend (docs/real-models.md)."""

    def body() -> None:
        from incriminate.cli import lm
        from incriminate.plan.config import load_config
        from incriminate.plan.lm_config import is_lm_config, load_lm_config

        text_cfg = None
        if config is not None and is_lm_config(config):
            text_cfg = load_lm_config(config, overrides)
        elif teacher is not None and not lm.is_world_model(teacher):
            if control is None:
                raise UserError("--teacher and --control go together: give both or neither")
            text_cfg = lm.config_from_options(
                str(teacher),
                str(control),
                [str(r) for r in reference or []],
                list(student or []),
                teacher_system,
                control_system,
                method,
                list(overrides or []),
            )
        elif student or teacher_system or control_system:
            raise UserError(
                "--student, --teacher-system and --control-system are for text models "
                "(the world's teachers are organisms)"
            )
        if text_cfg is not None:
            lm.validate(text_cfg)
            store = prepare(out_dir, store_dir, workers, verbose, inspect_logs)
            res = lm.run_lm(text_cfg, out_dir, store, workers, inspect_logs)
            if as_json:
                out.print_json(json.dumps({k: v for k, v in res.items() if k != "_wall_s"}))
            else:
                lm.print_summary(res, out_dir)
            return
        cfg = load_config(config, overrides)
        grid = {"methods": [_method(cfg, method)], "data": [data], "inits": [init]}
        if teacher is not None or control is not None:
            if teacher is None or control is None:
                raise UserError("--teacher and --control go together: give both or neither")
            grid |= {"teacher_dir": str(teacher), "control_dir": str(control)}
            grid |= {"reference_dirs": [str(r) for r in reference or []]}
        elif reference:
            raise UserError("--reference goes with --teacher and --control")
        cfg = cfg.model_validate(cfg.model_dump() | grid)
        results = _execute(cfg, out_dir, store_dir, workers, verbose, inspect_logs)
        _finish(results, out_dir, as_json)

    run_command(body)


def _method(cfg: Any, name: str) -> dict:
    """The config's settings of method `name`, or that registered method's defaults with the
    students' training schedule."""
    from incriminate.distill.methods import METHODS
    from incriminate.plan.config import STUDENT_TRAIN

    for m in cfg.methods:
        if m.method == name:
            return m.model_dump()
    return METHODS.get(name).config(train=STUDENT_TRAIN).model_dump()


__all__ = ["demo", "distill", "err"]
