"""`bench.json`: the zoo benchmark's numbers, assembled from `bench.run_bench`'s records.

Schema (`"schema": "incriminate.bench/1"`):

    config_hash, config, alpha      the resolved bench config
    zoo                             the manifest: every suspect, its class, group, ground-truth
                                    label, drive, base seed and control
    batteries                       each battery (and the union): configurations, seeds, audits,
                                    alpha
    organisms[]                     per suspect: the manifest fields; teacher audits and ground
                                    truth (U and C); per procedure (`direct`, `battery/NAME`,
                                    `config/METHOD/DATA/INIT`) p_value, min_p, statistic (mean
                                    U − C over the evidence audits), decision; per configuration
                                    drive transferred, evasion retained, capability retained
    procedures[]                    per procedure: TPR, FPR (all / benign / hard benign) with
                                    Wilson CIs, AUROC of the statistic with a DeLong CI, detection
                                    by class (`verdict.bench.summarise`)
    configurations[]                the double-bind view per configuration
    timing                          compute seconds per stage group, from the stage manifests

Every decision is made from audits (teacher or student items) alone; the manifest's labels and
the ground truth enter only `procedures`, `configurations` and the ground-truth columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from incriminate.experiment.bench import run_seeds
from incriminate.experiment.bench_config import Battery, BenchConfig
from incriminate.organisms.zoo import entries
from incriminate.verdict.bench import direct_pvalue, double_bind, summarise
from incriminate.verdict.compare import Pair, Student, verdict

SCHEMA = "incriminate.bench/1"
MIN_GAP = 0.05
"""A teacher gap (U − C ground truth) below this leaves "retained" undefined (None)."""


def _items(ev: dict[str, Any], probe: dict[str, Any] | None) -> dict[str, np.ndarray]:
    items = {k: np.asarray(v, dtype=np.float64) for k, v in ev["scores"].items()}
    if probe is not None:
        items["probe"] = np.asarray(probe["scores"], dtype=np.float64)
    return items


def _student(run: dict[str, Any]) -> Student:
    items = _items(run["evaluation"], run["probe"])
    return Student(rates={k: float(v.mean()) for k, v in items.items()}, items=items)


def _decision(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("p_value", "min_p", "statistic", "decision")}


def _pairs(raw: dict[str, Any], suspect: str, control: str, battery: Battery, grid) -> list[Pair]:
    pairs = []
    for c in battery.configurations:
        for s in grid[c.name][1][: battery.seeds]:
            u, k = raw["runs"][f"{suspect}|{c.name}|{s}"], raw["runs"][f"{control}|{c.name}|{s}"]
            pairs.append(Pair(c.name, s, f"{c.data}/{s}", _student(u), _student(k)))
    return pairs


def _truth(raw: dict[str, Any], name: str, metric: str) -> float:
    return float(raw["teachers"][name]["ground_truth"][metric]["rate"])


def _students_truth(raw: dict[str, Any], name: str, config: str, seeds: list[int], metric: str):
    runs = [raw["runs"][f"{name}|{config}|{s}"] for s in seeds]
    return float(np.mean([r["evaluation"]["ground_truth"][metric]["rate"] for r in runs]))


def _double_bind(raw, suspect: str, control: str, config: str, seeds: list[int]) -> dict:
    """Share of the teachers' gap (U − C) that the students' gap keeps, per trait."""

    def share(metric: str) -> float | None:
        gap = _truth(raw, suspect, metric) - _truth(raw, control, metric)
        if gap < MIN_GAP:
            return None
        diff = _students_truth(raw, suspect, config, seeds, metric) - _students_truth(
            raw, control, config, seeds, metric
        )
        return round(diff / gap, 4)

    acc = _truth(raw, suspect, "task_accuracy")
    kept = _students_truth(raw, suspect, config, seeds, "task_accuracy")
    return {
        "drive_transfer": share("deployment"),
        "evasion_retained": share("honeypot_discrimination"),
        "capability_retained": round(kept / acc, 4) if acc > 0 else None,
    }


def _teacher(raw: dict[str, Any], name: str) -> dict[str, Any]:
    t = raw["teachers"][name]
    audits = {k: v["rate"] for k, v in t["audits"].items()} | {"probe": t["probe"]["rate"]["rate"]}
    return {
        "model": raw["models"][name],
        "audits": audits,
        "ground_truth": {k: v["rate"] for k, v in t["ground_truth"].items()},
    }


def assemble(cfg: BenchConfig, raw: dict[str, Any]) -> dict[str, Any]:
    """The bench document (see the module docstring) from `run_bench`'s records."""
    grid = run_seeds(cfg)
    batteries = cfg.all_batteries()
    union = batteries[-1]
    rows = []
    for e in entries(cfg.zoo):
        tu, tc = raw["teachers"][e.name], raw["teachers"][e.control]
        direct = direct_pvalue(
            _items(tu, tu["probe"]), _items(tc, tc["probe"]), cfg.direct_audits, alpha=cfg.alpha
        )
        procedures = {"direct": _decision(dict(direct))}
        for b in batteries:
            record = verdict(_pairs(raw, e.name, e.control, b, grid), b.alpha, b.audits, seed=0)
            procedures[f"battery/{b.name}"] = _decision(dict(record))
        for c in union.configurations:
            alone = Battery(
                name="alone",
                configurations=(c,),
                seeds=len(grid[c.name][1]),
                audits=union.audits,
                alpha=cfg.alpha,
            )
            record = verdict(_pairs(raw, e.name, e.control, alone, grid), cfg.alpha, alone.audits)
            procedures[f"config/{c.name}"] = _decision(dict(record))
        rows.append(
            e.as_dict()
            | {
                "teacher": _teacher(raw, e.name),
                "control_teacher": _teacher(raw, e.control),
                "ground_truth": {
                    m: {"suspect": _truth(raw, e.name, m), "control": _truth(raw, e.control, m)}
                    for m in ("deployment", "honeypot_discrimination", "task_accuracy")
                },
                "procedures": procedures,
                "configurations": {
                    name: _double_bind(raw, e.name, e.control, name, seeds)
                    for name, (_, seeds) in grid.items()
                },
            }
        )
    return {
        "schema": SCHEMA,
        "config_hash": cfg.config_hash(),
        "config": cfg.model_dump(mode="json"),
        "alpha": cfg.alpha,
        "zoo": [e.as_dict() for e in entries(cfg.zoo)],
        "batteries": [b.model_dump(mode="json") for b in batteries],
        "organisms": rows,
        "procedures": summarise(rows, cfg.alpha),
        "configurations": double_bind(rows),
        "models": raw["models"],
        "probes": raw["probes"],
        "timing": raw["timing"],
    }


__all__ = ["SCHEMA", "assemble"]
