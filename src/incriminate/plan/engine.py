"""The incrimination experiment end to end, as stages of the artifact store.

    organisms: corpus ─► two bases (shared, other) ─► instruct ─► suspect side ‖ control side
    teachers:  direct evaluation of U and C; teacher caches per (teacher, data, seed)
    runs:      for every (method, data, init, seed): a suspect run and its paired control run,
               each a student distilled and evaluated

`run_experiment` plans the stages (`experiment.graph`) and runs them on an executor
(`experiment.executors`): by default `workers` processes (2: one per core, one torch thread each;
tiny models gain ~1.5x from two processes over two threads). Every stage is content-keyed and
bit-deterministic, so results do not depend on the number of workers or on which stages were
already in the store. `Runner` runs the zoo benchmark's phases.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from incriminate.errors import StageError
from incriminate.plan.config import ExperimentConfig
from incriminate.plan.executors import Executor, InlineExecutor, PoolExecutor, execute
from incriminate.plan.experiment import collect, plan_experiment
from incriminate.plan.graph import Plan
from incriminate.store import Store

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (phase, done, total)
Task = tuple[str, dict[str, Any]]


def _init_worker() -> None:
    import torch

    from incriminate.models.io import quiet_transformers

    torch.set_num_threads(1)
    quiet_transformers()
    logging.basicConfig(level=logging.WARNING)


# --- running tasks ----------------------------------------------------------------------------


class Runner:
    """Runs batches of tasks inline (`workers=1`) or in a pool of worker processes, one batch
    after the other (the benchmark's phases). `task_fn(store_root, cfg_json, name, args)` runs
    one task (a module-level function, so a worker process can import it)."""

    def __init__(
        self,
        store: Store,
        cfg: Any,
        workers: int,
        progress: Progress,
        task_fn: Callable[[str, str, str, dict[str, Any]], Any],
    ):
        self.store, self.cfg, self.progress = store, cfg, progress
        self.cfg_json = cfg.model_dump_json()
        self.task_fn = task_fn
        self.pool: ProcessPoolExecutor | None = None
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
            self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)
        else:
            _init_worker()

    def map(self, phase: str, tasks: Sequence[Task]) -> list[Any]:
        """Results of `tasks` in their order; progress counts them as they finish."""
        self.progress(phase, 0, len(tasks))
        root = str(self.store.root)
        if self.pool is None:
            results = []
            for name, args in tasks:
                results.append(self.task_fn(root, self.cfg_json, name, args))
                self.progress(phase, len(results), len(tasks))
            return results
        futures: list[Future] = [
            self.pool.submit(self.task_fn, root, self.cfg_json, name, args) for name, args in tasks
        ]
        done = 0

        def tick(_: Future) -> None:
            nonlocal done
            done += 1
            self.progress(phase, done, len(tasks))

        for f in futures:
            f.add_done_callback(tick)
        return [f.result() for f in futures]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


# --- the experiment ---------------------------------------------------------------------------


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
    return the results by node id; the first failed stage raises `StageError`."""
    own = executor is None
    executor = executor or make_executor(workers)
    try:
        outcome = execute(plan, executor, store.root, log_dir=log_dir, progress=progress)
    finally:
        if own:
            executor.close()
    if outcome.failures:
        node_id, error = next(iter(outcome.failures.items()))
        raise StageError(f"stage {plan.nodes[node_id].kind} {node_id} failed: {error}")
    return outcome.results


__all__ = ["Runner", "make_executor", "run_experiment", "run_plan"]
