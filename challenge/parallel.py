"""Worker processes for the kit's own parallel stages (the pool's shards, the baselines' scorings).

One mechanism for every command that parallelises by itself (`challenge pool`, `challenge baseline`,
`challenge competition init`): spawned processes of one torch thread each, because a model's bits
depend on its thread count, so parallelism must come from processes, never from threads. Hydra's
launchers (joblib, submitit) run the same shard function as separate jobs for multi-node builds.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable


def run_parallel(fn: Callable[..., Any], jobs: list[tuple], workers: int, progress: Callable[[], str | None] | None = None,
                 on_result: Callable[[Any], str | None] | None = None) -> list[Any]:
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
