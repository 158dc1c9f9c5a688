"""The incrimination experiment end to end, as stages of the artifact store.

    organisms: corpus ─► two bases (shared, other) ─► instruct ─► teacher side ‖ control side
    teachers:  direct evaluation of U and C; teacher caches per (teacher, data, seed)
    runs:      for every (method, data, init, seed): a teacher run and its paired control run,
               each a student distilled and evaluated

`run_experiment` plans the stages (`plan.experiment`) and runs them on an executor
(`plan.executors`): by default `workers` processes (2: one per core, one torch thread each;
tiny models gain ~1.5x from two processes over two threads). Every stage is content-keyed and
bit-deterministic, so results do not depend on the number of workers or on which stages were
already in the store. The zoo benchmark runs the same way (`plan.bench.run_bench`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from incriminate.errors import DAMAGED, DamagedStageError, StageError
from incriminate.plan.config import ExperimentConfig
from incriminate.plan.executors import Executor, InlineExecutor, PoolExecutor, execute
from incriminate.plan.experiment import collect, plan_experiment
from incriminate.plan.graph import Plan
from incriminate.store import Store

Progress = Callable[[str, int, int], None]  # (stage kind, done, total)


def make_executor(workers: int, threads: int | None = None) -> Executor:
    """The local executor: `workers` processes (one: this process) of `threads` torch threads
    each (default 1). The default does not follow `workers`: a stage's floats depend on its
    thread count (a reduction split over two threads rounds differently), so one thread per
    stage keeps results identical whatever the number of workers; tiny models gain more from
    processes than from threads anyway."""
    threads = threads or 1
    return InlineExecutor(threads) if workers == 1 else PoolExecutor(workers, threads)


def run_experiment(
    cfg: ExperimentConfig,
    store: Store,
    workers: int = 2,
    progress: Progress | None = None,
    executor: Executor | None = None,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Build or reuse every stage of the experiment and return its raw records: the models by
    role, the teachers' direct evaluations and every run (`results.assemble` makes the report).
    Raises `StageError` if a stage fails (its log is in `log_dir`)."""
    plan = Plan()
    exp = plan_experiment(plan, cfg)
    results = run_plan(plan, store, workers, progress, executor, log_dir)
    return collect(exp, results, store)


def run_plan(
    plan: Plan,
    store: Store,
    workers: int = 2,
    progress: Progress | None = None,
    executor: Executor | None = None,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Run every node of `plan` (on `executor`, else a local one of `workers` processes) and
    return the results by node id; the first failed stage raises `StageError`, or
    `DamagedStageError` (a user error: exit code 2) when a stage met a damaged artifact."""
    own = executor is None
    executor = executor or make_executor(workers)
    try:
        outcome = execute(plan, executor, store.root, log_dir=log_dir, progress=progress)
    finally:
        if own:
            executor.close()
    if outcome.failures:
        damaged = [e for e in outcome.failures.values() if e.startswith(DAMAGED)]
        if damaged:  # the message names the stage, the file and the repair command
            raise DamagedStageError(damaged[0])
        node_id, error = next(iter(outcome.failures.items()))
        kind = plan.nodes[node_id].kind
        where = "" if log_dir is None else f" (log: {Path(log_dir) / f'{kind}-{node_id}.log'})"
        more = len(outcome.failures) - 1
        others = f"; {more} more stage{'s' * (more > 1)} failed" if more else ""
        raise StageError(f"stage {kind} {node_id} failed: {error}{where}{others}")
    return outcome.results


__all__ = ["Progress", "make_executor", "run_experiment", "run_plan"]
