"""The judge's evaluation of each run while the child goes on with the next one.

On a CPU the scorer's own work per run (a strict load, then forward passes over forget, retain and
test) is a third or more of a one-epoch fine-tune: done after the child, it adds that much to every
scoring. Done on a core the child does not use while the child runs, the scoring waits only for the
last run's evaluation. Nothing about a verdict or a number changes:

- the evaluation is the judge's own (`evaluation.judge_run`, the same thread count),
  so its bits are those of an evaluation afterwards (tests/test_score.py checks it);
- it reads a run's weights where the supervisor moved them as the run ended, out of the child's reach
  (challenge.scoring.supervisor.take), so they are the bytes the judge accepts; anything it raised is left
  for the judge to raise again, in the judge's order (the child's end and the budget come first);
- only on the CPU clock, with a core to spare: the child is charged its own CPU time, which work on
  another core does not take from it. On a GPU a run is charged wall time on a device an evaluation
  would share, so there the scorer waits as before (and evaluates at the GPU's speed).
"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from challenge.files import read_regular
from challenge.scoring.evaluation import RunEval, judge_run
from challenge.scoring.protocol import RECORD, WEIGHTS, run_name
from challenge.training.recipe import set_threads

if TYPE_CHECKING:
    from challenge.scoring.settings import Settings

_POLL = 0.05  # seconds between looks for the next finished run


def spare_core(settings: Settings) -> bool:
    """Evaluate alongside only on the CPU clock and where the child's threads leave a core free."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return settings.device == "cpu" and cores >= 2 * settings.threads


class Alongside:
    """A thread that evaluates run i as soon as the supervisor has taken its record (after its weights)."""

    def __init__(self, ctx: Any, taken: Path, todo: list[int], data: dict[str, torch.Tensor], max_bytes: int):
        self.ctx, self.taken, self.todo, self.data, self.max_bytes = ctx, taken, todo, data, max_bytes
        self.done: dict[int, RunEval] = {}
        self.seconds = 0.0  # the thread's own time evaluating, beside the child
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="evaluate-alongside", daemon=True)

    def __enter__(self) -> "Alongside":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """The child has ended: the evaluation under way finishes, no other starts (the judge does the rest)."""
        self._stop.set()
        self._thread.join()

    def result(self, index: int) -> RunEval | None:
        """Run `index`'s evaluation, if it was done."""
        return self.done.get(index)

    def _loop(self) -> None:
        # A thread's own count: the bits depend on it. No lower priority for this thread: descheduled while it
        # holds the GIL, it would stall the meter's polling in the main thread (a run's markers seen together, charged
        # 0).
        set_threads(self.ctx.settings.threads)
        for index in self.todo:
            name = run_name(index)
            while not (self.taken / f"{name}{RECORD}").exists():
                if self._stop.wait(_POLL):
                    return
            self._evaluate(index, self.taken / f"{name}{WEIGHTS}")
            if self._stop.is_set():
                return

    def _evaluate(self, index: int, weights: Path) -> None:
        blob = read_regular(weights, self.max_bytes)
        if blob is None:
            return
        t = time.perf_counter()
        try:
            result = judge_run(self.ctx.spec, io.BytesIO(blob), self.data, index, self.ctx.settings)
        except Exception:  # noqa: BLE001 - a Verdict or worse: the judge meets it again, in its order
            return
        finally:
            self.seconds += time.perf_counter() - t
        self.done[index] = result
