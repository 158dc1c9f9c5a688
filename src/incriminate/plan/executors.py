"""Executors and the scheduler that runs a plan on them.

* `InlineExecutor`: this process (`workers=1`).
* `PoolExecutor`: a pool of spawned worker processes (one torch thread each by default).
* `RayExecutor`: each stage a Ray task with its CPU (and GPU) request, on a local Ray instance or
  a cluster (`address`); the store must be a path every node sees.

`execute` submits every node whose dependencies have finished, as soon as they finish (no phase
barriers), records each finished node in `STORE/nodes/<id>.json` (its result and wall time, which
`--dry-run` reads), and goes on past a failure with everything that does not depend on it. A
worker process that dies (`kill -9`, out of memory) takes its in-flight stages with it: the pool
is restarted and they run again (the store's locks and atomic renames make that safe).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from incriminate.plan.graph import Node, Plan, resolve
from incriminate.plan.stages import STAGES, run_stage
from incriminate.store import write_atomic

log = logging.getLogger(__name__)
MAX_RETRIES = 2  # reruns of a stage whose worker died
NODES = "nodes"  # STORE/nodes/<id>.json: finished plan nodes


class Executor(Protocol):
    threads: int

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    def wait(self, handles: list[Any]) -> list[Any]: ...
    def outcome(self, handle: Any) -> tuple[str, Any]: ...
    def recover(self, handle: Any) -> None: ...
    def close(self) -> None: ...


class InlineExecutor:
    """Runs each stage at once in this process."""

    def __init__(self, threads: int):
        self.threads = threads

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        f: Future = Future()
        try:
            f.set_result(fn(*args))
        except Exception as e:
            f.set_exception(e)
        return f

    def wait(self, handles: list[Any]) -> list[Any]:
        return handles

    def outcome(self, handle: Future) -> tuple[str, Any]:
        e = handle.exception()
        return ("ok", handle.result()) if e is None else ("failed", str(e))

    def recover(self, handle: Any) -> None:
        pass

    def close(self) -> None:
        pass


class PoolExecutor:
    """A pool of `workers` spawned processes (no fork of a process holding torch threads)."""

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads = workers, threads
        self.generation = 0
        self.pool = self._new_pool()
        self._gen: dict[Future, int] = {}

    def _new_pool(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_exit_with_parent, initargs=(os.getpid(),)
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        f = self.pool.submit(fn, *args)
        self._gen[f] = self.generation
        return f

    def wait(self, handles: list[Any]) -> list[Any]:
        return list(wait(handles, return_when=FIRST_COMPLETED).done)

    def outcome(self, handle: Future) -> tuple[str, Any]:
        e = handle.exception()
        if isinstance(e, BrokenProcessPool):
            return "lost", str(e)  # `recover` forgets the handle
        self._gen.pop(handle, None)
        return ("ok", handle.result()) if e is None else ("failed", str(e))

    def recover(self, handle: Future) -> None:
        """A worker died: start a new pool (once per broken pool)."""
        if self._gen.pop(handle, None) == self.generation:
            log.warning("a worker process died; restarting the pool")
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool()
            self.generation += 1

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def _exit_with_parent(parent: int) -> None:
    """In a pool worker: exit when the sweep that started it is gone (`kill -9` of the sweep
    alone would otherwise leave its workers waiting for work forever). A stage cut short leaves
    only a temporary directory, which the next build of that stage removes."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class RayExecutor:
    """Stages as Ray tasks: `num_cpus=threads`, `num_gpus=gpus` each. `address` None starts a
    local Ray instance (temporary files under `temp_dir`); else it joins that cluster."""

    def __init__(
        self, address: str | None, threads: int, gpus: float = 0, temp_dir: str | None = None
    ):
        import ray
        import ray.exceptions

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        self.threads = threads
        kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        if address is None:
            kwargs |= {"num_cpus": os.cpu_count(), "include_dashboard": False}
            if temp_dir is not None:
                kwargs["_temp_dir"] = temp_dir
        ray.init(address=address, **kwargs)
        self.ray, self.errors = ray, ray.exceptions
        self.remote = ray.remote(run_stage).options(
            num_cpus=threads, num_gpus=gpus, max_retries=MAX_RETRIES
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert fn is run_stage, "the Ray executor runs experiment stages"
        return self.remote.remote(*args)

    def wait(self, handles: list[Any]) -> list[Any]:
        ready, _ = self.ray.wait(handles, num_returns=1)
        return ready

    def outcome(self, handle: Any) -> tuple[str, Any]:
        try:
            return "ok", self.ray.get(handle)
        except self.errors.RayTaskError as e:
            cause = getattr(e, "cause", None)
            return "failed", str(cause) if cause is not None else str(e).splitlines()[0]
        except self.errors.RayError as e:  # a worker or node lost beyond Ray's retries
            return "failed", f"{type(e).__name__}: {str(e).splitlines()[0]}"

    def recover(self, handle: Any) -> None:
        pass

    def close(self) -> None:
        self.ray.shutdown()


def check_ray_address(address: str) -> None:
    """Raise ValueError (one line) unless `host:port` accepts a TCP connection within 5 s."""
    host, sep, port = address.rpartition(":")
    if address.startswith("ray://"):
        host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r} is not of the form HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ValueError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


@dataclass
class Outcome:
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Node id -> one-line error of a stage that failed."""
    blocked: dict[str, str] = field(default_factory=dict)
    """Node id -> the failed node it depends on (never run)."""


Progress = Callable[[str, int, int], None]
OnFailure = Callable[[Node, str, Path | None], None]


def execute(
    plan: Plan,
    executor: Executor,
    store_root: Path,
    *,
    log_dir: Path | None = None,
    progress: Progress | None = None,
    on_failure: OnFailure | None = None,
) -> Outcome:
    """Run every node of `plan` in dependency order; see the module docstring."""
    # Workers may run elsewhere (a Ray worker's directory is not ours): absolute paths only.
    store_root = Path(store_root).resolve()
    log_dir = Path(log_dir).resolve() if log_dir is not None else None
    nodes, children = plan.nodes, plan.children()
    waiting = {i: len(n.deps) for i, n in nodes.items()}
    ready = deque(i for i in nodes if waiting[i] == 0)
    total = Counter(n.kind for n in nodes.values())
    done: Counter[str] = Counter()
    tick = progress or (lambda *_: None)
    for kind in total:
        tick(kind, 0, total[kind])
    out, in_flight, attempts = Outcome(), {}, Counter()

    def log_path(node: Node) -> Path | None:
        return None if log_dir is None else log_dir / f"{node.kind}-{node.id}.log"

    while ready or in_flight:
        while ready:
            node = nodes[ready.popleft()]
            args = {k: v for k, v in resolve(node.args, out.results).items() if k != "after"}
            path = log_path(node)
            handle = executor.submit(
                run_stage,
                str(store_root),
                STAGES.get(node.task),
                args,
                executor.threads,
                path and str(path),
            )
            in_flight[handle] = node.id
        for handle in executor.wait(list(in_flight)):
            node = nodes[in_flight.pop(handle)]
            status, value = executor.outcome(handle)
            if status == "ok":
                result, wall = value
                out.results[node.id] = result
                _remember(store_root, node, result, wall)
                done[node.kind] += 1
                tick(node.kind, done[node.kind], total[node.kind])
                for c in children[node.id]:
                    waiting[c] -= 1
                    if waiting[c] == 0 and c not in out.blocked:
                        ready.append(c)
            elif status == "lost" and attempts[node.id] < MAX_RETRIES:
                attempts[node.id] += 1
                executor.recover(handle)
                ready.appendleft(node.id)
            else:
                out.failures[node.id] = value
                if on_failure is not None:
                    on_failure(node, value, log_path(node))
                _block(node.id, children, out.blocked)
    return out


def _block(failed: str, children: dict[str, list[str]], blocked: dict[str, str]) -> None:
    stack = list(children[failed])
    while stack:
        c = stack.pop()
        if c not in blocked:
            blocked[c] = failed
            stack.extend(children[c])


def _remember(store_root: Path, node: Node, result: Any, wall: float) -> None:
    """Record a finished node (atomically: a reader never sees half a file)."""
    folder = store_root / NODES
    folder.mkdir(exist_ok=True)
    # A rerun that reuses the stage takes far less than computing it: keep the larger time, so
    # the record estimates what computing the stage costs.
    old = recorded(store_root, node.id)
    wall = max(wall, old["wall_s"]) if old is not None else wall
    record = {"task": node.task, "kind": node.kind, "result": result, "wall_s": wall}
    write_atomic(folder / f"{node.id}.json", json.dumps(record, sort_keys=True))


def recorded(store_root: Path, node_id: str) -> dict[str, Any] | None:
    path = store_root / NODES / f"{node_id}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


__all__ = [
    "Executor",
    "InlineExecutor",
    "Outcome",
    "PoolExecutor",
    "RayExecutor",
    "check_ray_address",
    "execute",
    "recorded",
]
