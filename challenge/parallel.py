"""Worker processes for the kit's own parallel stages (the pool's shards, the baselines' scorings).

One mechanism for every command that parallelises by itself (`challenge pool`, `challenge baseline`,
`challenge competition init`): spawned processes of one torch thread each, because a model's bits
depend on its thread count, so parallelism must come from processes, never from threads. Hydra's
launchers (joblib, submitit) run the same shard function as separate jobs for multi-node builds.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable


def job_workers(configured: Any) -> int:
    """`configured` (a `workers` key) when set; null: this job's share of the machine's cores.

    The share depends on how many jobs the Hydra launcher runs at once, read from the job's own
    HydraConfig: a plain run, or a multirun on Hydra's basic launcher (jobs one after another),
    has every core; joblib's jobs share them (the cores divided by n_jobs, counted as joblib
    does: -1 all cores, -2 all but one); a submitit job is its own allocation (its
    cpus_per_task, or 1); an unknown launcher gets 1 per job. The bits never depend on it: each
    process trains or scores single-threaded and claims its seeds.
    """
    if configured is not None:
        return int(configured)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    launcher = _multirun_launcher()
    if launcher is None:
        return cores
    target = str(launcher.get("_target_", ""))
    if target.endswith(".BasicLauncher"):
        return cores
    if target.startswith("hydra_plugins.hydra_joblib_launcher."):
        n_jobs = int(launcher.get("n_jobs") or 1)
        return max(1, cores // max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs))
    if target.startswith("hydra_plugins.hydra_submitit_launcher."):
        return int(launcher.get("cpus_per_task") or 1)
    return 1


def _multirun_launcher() -> Any:
    """hydra.launcher of this job when it is one job of a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    return hydra.launcher if hydra.mode is not None and hydra.mode.name == "MULTIRUN" else None


def run_parallel(
    fn: Callable[..., Any],
    jobs: list[tuple],
    workers: int,
    progress: Callable[[], str | None] | None = None,
    on_result: Callable[[Any], str | None] | None = None,
) -> list[Any]:
    """fn(*job) for every job, in `workers` spawned processes (in this one when workers is 1).

    Spawned, not forked: forking a process that has started torch's thread pools can hang the child.
    Results come back in completion order; `on_result` turns each into a progress line (or prints
    its own and returns None), and `progress`, polled every two seconds, may return one too.
    """
    if workers <= 1:
        results = []
        for job in jobs:
            results.append(fn(*job))
            _say(on_result, results[-1])
        return results
    results = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        pending: set[Future] = {ex.submit(fn, *job) for job in jobs}
        while pending:
            finished, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
            for future in finished:
                results.append(future.result())
                _say(on_result, results[-1])
            line = progress() if progress else None
            if line:
                print(line, flush=True)
    return results


def _say(on_result: Callable[[Any], str | None] | None, result: Any) -> None:
    line = on_result(result) if on_result else None
    if line is not None:
        print(line, flush=True)
