"""How far the numbers move under other numerical settings of the same machine (issue: numbers
that survive another machine).

Runs the quick demo (`incriminate demo --quick --workers 1`; `--full`: the full demo) once per
setting, each in a fresh subprocess with its own empty store, from one snapshot of the committed
code (`git archive HEAD`, so edits in the working tree during the run cannot leak in), and
compares every run with the baseline: the headline numbers of `results.json` (max |difference|,
equal or not), the decisions (verdict, direct baseline, per configuration), and the stage
artifacts of the store (SHA-256 of every file but the manifest) to say at which stage the runs
part. A small kernel probe per setting says whether the switch reaches the float results of the
ops the models use.

    python benchmarks/spread.py [--out DIR] [--setting NAME ...] [--full] [--format markdown|json]
    python benchmarks/spread.py --report DIR     # the tables again, from a finished --out DIR

A setting is environment variables for the subprocess plus, through a small launcher, the torch
threads of every stage (what `--threads` sets for `sweep`/`bench`) and `mkldnn.enabled`.
Rates are rounded to 6 decimals in results.json, so "equal" numbers are equal as written; the
artifact hashes are the bit-level check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Setting:
    name: str
    help: str
    env: dict[str, str] = field(default_factory=dict)
    torch: dict[str, Any] = field(default_factory=dict)  # threads (per stage), mkldnn
    workers: int = 1


SETTINGS = [
    Setting("baseline", "1 torch thread per stage (the default), 1 worker"),
    Setting("baseline-repeat", "the baseline again, in a new process and store"),
    Setting("workers-2", "2 worker processes (the CLI's default)", workers=2),
    Setting(
        "env-threads-1",
        "OMP_NUM_THREADS=MKL_NUM_THREADS=1",
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    ),
    Setting("threads-2", "2 torch threads per stage (`--threads 2`)", torch={"threads": 2}),
    Setting("onednn-off", "torch.backends.mkldnn.enabled = False", torch={"mkldnn": False}),
    Setting(
        "onednn-bf16",
        "ONEDNN_DEFAULT_FPMATH_MODE=BF16",
        env={"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"},
    ),
    Setting("onednn-sse41", "DNNL_MAX_CPU_ISA=SSE41", env={"DNNL_MAX_CPU_ISA": "SSE41"}),
    Setting("mkl-cbwr", "MKL_CBWR=COMPATIBLE", env={"MKL_CBWR": "COMPATIBLE"}),
    Setting(
        "aten-default",
        "ATEN_CPU_CAPABILITY=default (no AVX2 kernels)",
        env={"ATEN_CPU_CAPABILITY": "default"},
    ),
]

# Runs the CLI in this process with the setting's torch switches; `--workers 1` keeps every
# stage here, so `mkldnn.enabled` (a per-process flag) reaches them all.
LAUNCHER = """
import json, os, sys
opts = json.loads(os.environ.pop("SPREAD_TORCH", "{}"))
import torch
if "mkldnn" in opts:
    torch.backends.mkldnn.enabled = opts["mkldnn"]
if "threads" in opts:
    import incriminate.plan.engine as engine
    make = engine.make_executor
    engine.make_executor = lambda workers, threads=None: make(workers, opts["threads"])
if sys.argv[1] == "probe":
    import hashlib
    torch.set_num_threads(opts.get("threads", 1))
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(16, 64, 128, generator=g), torch.randn(256, 128, generator=g)
    x.requires_grad_()
    logits = torch.nn.functional.linear(x, w)  # (B, T, V) as a nano model's head
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), torch.zeros(1024).long())
    loss.backward()
    h = hashlib.sha256()
    for t in (logits, loss, x.grad, torch.softmax(logits, -1).sum()):
        h.update(t.detach().numpy().tobytes())
    print(h.hexdigest()[:16])
else:
    from incriminate.cli.main import app
    app(args=sys.argv[1:], prog_name="incriminate")
"""


def snapshot(dest: Path) -> str:
    """Unpack HEAD's `src/` into `dest`; return the commit."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "HEAD", "src"], capture_output=True, check=True
    ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit


def run_setting(s: Setting, out: Path, src: Path, full: bool) -> dict[str, Any]:
    """The demo (`--quick` unless `full`) under `s` into `out/<name>/`; writes and returns its
    `run.json`."""
    d = out / s.name
    d.mkdir(parents=True, exist_ok=True)
    env = os.environ | s.env | {"PYTHONPATH": str(src), "SPREAD_TORCH": json.dumps(s.torch)}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    py = [sys.executable, "-c", LAUNCHER]
    probe = subprocess.run([*py, "probe"], env=env, capture_output=True, text=True, check=True)
    args = ["demo", *([] if full else ["--quick"]), "--store", str(d / "store")]
    args += ["--out", str(d / "out")]
    t0 = time.perf_counter()
    r = subprocess.run(
        [*py, *args, "--workers", str(s.workers)], env=env, capture_output=True, text=True
    )
    (d / "log.txt").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"error: setting {s.name} failed (exit {r.returncode}): see {d}/log.txt")
    run = {"setting": s.name, "help": s.help, "env": s.env, "torch": s.torch}
    run |= {"workers": s.workers, "kernels": probe.stdout.strip()}
    run["wall_s"] = round(time.perf_counter() - t0, 1)
    (d / "run.json").write_text(json.dumps(run, indent=1))
    return run


# ---- what a run produced: numbers, decisions, artifacts ------------------------------------


def numbers(res: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of a results.json; `[...]` in a name marks one of a group."""
    v, d = res["verdict"], res.get("direct", {})
    n = {"verdict p": v["p_value"], "verdict statistic": v["statistic"]}
    if d:
        n["direct p"] = d["p_value"]
        n |= {f"direct {k} p": part["p_value"] for k, part in d["parts"].items()}
    for role, who in (("teacher", "U"), ("control", "C")):
        t = res["teachers"][role]
        n |= {f"{who} {k}": r["rate"] for k, r in t["ground_truth"].items()}
        n |= {f"{who} audit {k}": r["rate"] for k, r in t["audits"].items()}
    for c in res["configurations"]:
        n[f"config[{c['name']}] evidence U-C"] = c["evidence"]["difference"]
        n[f"config[{c['name']}] evidence p"] = c["evidence"]["p_value"]
        n[f"config[{c['name']}] U-students deployment"] = c["ground_truth"]["deployment"][
            "teacher"
        ]["rate"]
    for r in res["runs"]:
        run = f"run[{r['method']}/{r['data']}/{r['init']}/{r['seed']}/{r['role']}]"
        n[f"{run} final loss"] = r["final_loss"]
        n[f"{run} audit honeypot"] = r["audits"]["honeypot"]["rate"]
    return {k: float(x) for k, x in n.items() if isinstance(x, int | float)}


def decisions(res: dict[str, Any]) -> dict[str, str]:
    out = {"verdict": res["verdict"]["decision"]}
    if "direct" in res:
        out["direct"] = res["direct"]["decision"]
        out |= {f"direct {k}": p["decision"] for k, p in res["direct"]["parts"].items()}
    for c in res["configurations"]:
        out[f"config[{c['name']}] significant"] = str(c["evidence"].get("significant"))
        out[f"config[{c['name']}] drive transferred"] = c["transfer"]["drive"]
    return out


STAGE_ORDER = ["corpus", "base", "instruct", "organism", "transcripts", "text_sample"]
STAGE_ORDER += ["text_test", "teacher_cache", "cache_read", "student", "evaluation"]
NOT_STAGES = {"nodes", "results", "experiment", ".locks"}


def artifacts(store: Path) -> dict[str, str]:
    """`kind/key` -> SHA-256 over the artifact's files (its manifest, which holds times, aside)."""
    out = {}
    for folder in sorted(p for p in store.glob("*/*") if p.is_dir()):
        if folder.parent.name in NOT_STAGES:
            continue
        h = hashlib.sha256()
        for f in sorted(folder.rglob("*")):
            if f.is_file() and f.name != "manifest.json":
                h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes())
        out[f"{folder.parent.name}/{folder.name}"] = h.hexdigest()
    return out


def _group(name: str) -> str:
    return re.sub(r"\[[^]]*\]", "[*]", name)


def _stage_key(kind: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(kind) if kind in STAGE_ORDER else len(STAGE_ORDER), kind)


def same_artifacts(art: dict[str, str], base: dict[str, str]) -> dict[str, list[int]]:
    """Per stage kind, in pipeline order: [artifacts bit-identical to the baseline's, total]."""
    counts: dict[str, list[int]] = {}
    for a, h in base.items():
        c = counts.setdefault(a.split("/")[0], [0, 0])
        c[0] += art.get(a) == h
        c[1] += 1
    return {k: counts[k] for k in sorted(counts, key=_stage_key)}


def compare(out: Path, names: list[str]) -> dict[str, Any]:
    """Every setting against the first (the baseline): the document `--format json` prints."""
    loaded = {}
    for name in names:
        d = out / name
        res = json.loads((d / "out" / "results.json").read_text())
        run = json.loads((d / "run.json").read_text())
        loaded[name] = (run, numbers(res), decisions(res), artifacts(d / "store"))
    _, base_n, base_d, base_a = loaded[names[0]]
    settings = []
    for run, n, dec, art in loaded.values():
        diff = {k: abs(n[k] - base_n[k]) for k in base_n if k in n}
        stages = same_artifacts(art, base_a)
        first = next((k for k, (same, total) in stages.items() if same < total), None)
        settings.append(
            run
            | {
                "kernels_same": run["kernels"] == loaded[names[0]][0]["kernels"],
                "numbers": n,
                "max_abs_diff": diff,
                "numbers_equal": sum(v == 0 for v in diff.values()),
                "numbers_total": len(diff),
                "decisions": dec,
                "decisions_changed": [k for k in base_d if dec.get(k) != base_d[k]],
                "stages": stages,
                "first_differing_stage": first,
            }
        )
    groups: dict[str, dict[str, Any]] = {}
    for k in base_n:
        g = groups.setdefault(_group(k), {"baseline": base_n[k], "count": 0, "max_abs_diff": 0.0})
        g["count"] += 1
        for s in settings[1:]:
            g["max_abs_diff"] = max(g["max_abs_diff"], s["max_abs_diff"].get(k, 0.0))
    for g_name, g in groups.items():
        g["settings_equal"] = sum(
            all(v == 0 for k, v in s["max_abs_diff"].items() if _group(k) == g_name)
            for s in settings[1:]
        )
        if g["count"] > 1:
            del g["baseline"]
    return {"settings": settings, "groups": groups}


# ---- tables ---------------------------------------------------------------------------------

HEADLINE = ["verdict p", "direct p", "U deployment", "U audit honeypot", "U audit interrogation"]


def _num(x: float) -> str:
    return f"{x:.4g}"


def markdown(doc: dict[str, Any]) -> str:
    settings, base = doc["settings"], doc["settings"][0]
    lines = [
        "| setting | verdict | " + " | ".join(HEADLINE) + " | numbers equal | decisions changed "
        "| kernels | first differing stage | wall s |",
        "|---" * (len(HEADLINE) + 7) + "|",
    ]
    for s in settings:
        n = s["numbers"]
        cells = [s["setting"], s["decisions"]["verdict"]]
        cells += [_num(n[h]) if h in n else "-" for h in HEADLINE]
        cells.append(f"{s['numbers_equal']}/{s['numbers_total']}")
        cells.append(", ".join(s["decisions_changed"]) or "none")
        cells.append("same" if s["kernels_same"] else "differ")
        cells.append(s["first_differing_stage"] or "none (all identical)")
        cells.append(f"{s['wall_s']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    n_other = len(settings) - 1
    lines += ["", f"| number | baseline | max abs difference | settings equal (of {n_other}) |"]
    lines.append("|---|---|---|---|")
    for name, g in doc["groups"].items():
        label = f"{name} ({g['count']})" if g["count"] > 1 else name
        baseline = _num(g["baseline"]) if "baseline" in g else "-"
        row = [label, baseline, _num(g["max_abs_diff"]), str(g["settings_equal"])]
        lines.append("| " + " | ".join(row) + " |")
    kinds = list(base["stages"])
    lines += ["", "| setting | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for s in settings:
        cells = [f"{same}/{total}" for same, total in s["stages"].values()]
        lines.append(f"| {s['setting']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("stage cells: artifacts bit-identical to the baseline's / artifacts")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", cpu)
    flags = re.search(r"flags\s*:\s*(.*)", cpu)
    import torch

    return {
        "date": time.strftime("%Y-%m-%d"),
        "nproc": os.cpu_count(),
        "cpu": model.group(1) if model else platform.processor(),
        "isa": sorted(f for f in (flags.group(1).split() if flags else []) if "avx" in f),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description="How far the demo's numbers move under numerical settings."
    )
    ap.add_argument("--out", type=Path, help="keep every run here (default: a temporary dir)")
    names = [s.name for s in SETTINGS]
    ap.add_argument("--setting", action="append", choices=names, help="(repeat) default: all")
    ap.add_argument("--full", action="store_true", help="the full demo (~2 min a setting)")
    ap.add_argument("--format", choices=("markdown", "json"), default="markdown")
    ap.add_argument("--report", type=Path, help="only the tables, from a finished --out DIR")
    args = ap.parse_args()
    if args.report is not None:
        if not (args.report / "spread.json").is_file():
            print(f"error: no spread.json in {args.report}", file=sys.stderr)
            return 2
        meta = json.loads((args.report / "spread.json").read_text())
        doc = meta | compare(args.report, [s["setting"] for s in meta["settings"]])
    else:
        chosen = [s for s in SETTINGS if s.name in (args.setting or names)]
        if chosen[0].name != "baseline":
            chosen.insert(0, SETTINGS[0])
        with tempfile.TemporaryDirectory(prefix="spread-") as tmp:
            out = args.out or Path(tmp)
            meta: dict[str, Any] = {"machine": machine(), "commit": snapshot(out / "snapshot")}
            meta["demo"] = "incriminate demo" + ("" if args.full else " --quick")
            t0 = time.perf_counter()
            for s in chosen:
                print(f"{s.name}: {s.help} ...", file=sys.stderr, flush=True)
                run_setting(s, out, out / "snapshot" / "src", args.full)
            meta["wall_s"] = round(time.perf_counter() - t0, 1)
            doc = meta | compare(out, [s.name for s in chosen])
            (out / "spread.json").write_text(json.dumps(doc, indent=1))
    if args.format == "json":
        print(json.dumps(doc, indent=1))
    else:
        m = doc["machine"]
        print(
            f"{doc.get('demo', 'incriminate demo --quick')}: {m['date']}, "
            f"commit {doc['commit'][:7]}, {m['nproc']} CPUs ({m['cpu']}; "
            f"{' '.join(m['isa'])}), torch {m['torch']}, {doc['wall_s']:.0f} s in all\n"
        )
        print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
