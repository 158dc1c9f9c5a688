"""Writing an experiment's outputs: the files of its output directory, their copy in the store
under the config's hash, its rows in the results store, and a sweep's `sweep.json`."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from incriminate.plan.experiment import collect
from incriminate.plan.sweep import SCHEMA as SWEEP_SCHEMA
from incriminate.plan.sweep import Point
from incriminate.report.results import assemble
from incriminate.store import write_atomic


def write_outputs(cfg: Any, results: dict, out_dir: Path, store: Any) -> dict[str, str]:
    """Write an experiment's outputs into `out_dir` (each file replaced in one step), keep a copy
    in `STORE/experiment/<config_hash>/` and append its rows to the results store."""
    from incriminate.plan.config import to_yaml
    from incriminate.report import results_store
    from incriminate.report.markdown import render
    from incriminate.store import write_atomic

    files = {
        "config.yaml": to_yaml(cfg),
        "results.json": json.dumps(results, indent=1) + "\n",
        "report.md": render(results),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        write_atomic(out_dir / name, text)
    keep(store.root / "experiment" / cfg.config_hash(), files)
    results_store.write(store.root, results)
    return files


def keep(path: Path, files: dict[str, str]) -> None:
    """A copy of the outputs in the store under the config's hash, replaced in one step (a
    failed write, e.g. on a full disk, leaves the old copy and no temporary directory)."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, text in files.items():
            (tmp / name).write_text(text)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".old-{path.name}-{os.getpid()}")
    if path.exists():
        os.rename(path, old)  # two renames: a reader sees the old copy or the new one
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def write_bench_outputs(cfg: Any, bench: dict[str, Any], out_dir: Path, store: Any) -> None:
    """A bench's output files in `out_dir` (bench.yaml, zoo.json, bench.json, bench.md,
    double_bind.png; each replaced in one step), their copy in `STORE/bench/<config_hash>/`
    and its rows in the results store."""
    import yaml

    from incriminate.organisms.zoo import entries
    from incriminate.report import results_store
    from incriminate.report.bench import plot_double_bind, render_markdown

    files = {
        "bench.yaml": yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
        "zoo.json": json.dumps([e.as_dict() for e in entries(cfg.zoo)], indent=1) + "\n",
        "bench.json": json.dumps(bench, indent=1) + "\n",
        "bench.md": render_markdown(bench),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        write_atomic(out_dir / name, text)
    tmp = out_dir / f".tmp-{os.getpid()}-double_bind.png"  # savefig takes the format from it
    plot_double_bind(bench, tmp)
    os.replace(tmp, out_dir / "double_bind.png")
    keep(store.root / "bench" / cfg.config_hash(), files)
    results_store.write(store.root, bench)


def write_sweep(
    points: list[Point],
    exps: list[Any],
    plan: Any,
    outcome: Any,
    store: Any,
    name: str,
    grid: dict[str, list[Any]],
    out_dir: Path,
    logs: dict[str, Path],
) -> dict[str, Any]:
    """Assemble and write every finished point, the results store rows and `sweep.json`."""

    entries = []
    for p, exp in zip(points, exps, strict=True):
        entry: dict[str, Any] = {
            "id": p.id,
            "overrides": p.overrides,
            "config_hash": p.cfg.config_hash(),
            "results": f"points/{p.cfg.config_hash()}/results.json",
        }
        missing = [i for i in exp.all() if i not in outcome.results]
        if missing:
            failed = next(
                outcome.blocked.get(i, i)
                for i in missing
                if i in outcome.failures or i in outcome.blocked
            )
            node = plan.nodes[failed]
            entry |= {
                "status": "failed",
                "error": f"stage {node.kind} {node.id}: {outcome.failures[failed]}",
                "verdict": None,
            }
        else:
            results = assemble(p.cfg, collect(exp, outcome.results, store))
            write_outputs(p.cfg, results, out_dir / "points" / p.cfg.config_hash(), store)
            v = results["verdict"]
            entry |= {
                "status": "done",
                "error": None,
                "verdict": {"decision": v["decision"], "p_value": v["p_value"]},
            }
        entries.append(entry)
    failures = [
        {
            "stage": f"{plan.nodes[i].kind}/{i}",
            "error": err,
            "log": str(logs[i].relative_to(out_dir)) if i in logs else None,
        }
        for i, err in sorted(outcome.failures.items())
    ]
    doc = {
        "schema": SWEEP_SCHEMA,
        "name": name,
        "grid": grid,
        "stages": dict(sorted(Counter(n.kind for n in plan.nodes.values()).items())),
        "points": entries,
        "failures": failures,
    }
    write_atomic(out_dir / "sweep.json", json.dumps(doc, indent=1) + "\n")
    return doc


__all__ = ["keep", "write_bench_outputs", "write_outputs", "write_sweep"]
