"""The parent side of the ingestion child: run it in the sandbox under the meter, return the ledger.

Shared by `challenge score` and the Codabench ingestion program, so that a submission is run,
watched and charged the same way in both; whoever calls it judges the ledger with challenge.scoring.judge.
It imports no torch: the Codabench ingestion program stays light, and a file that cannot even be
loaded is turned away in a fraction of a second.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from challenge.files import write_json
from challenge.scoring.meter import Meter
from challenge.scoring.processes import ProcessTree
from challenge.scoring.protocol import RECORD, WEIGHTS, run_name
from challenge.scoring.sandbox import Outcome, Sandbox
from challenge.scoring.settings import Settings


@dataclass
class Ledger:
    """What the watching process saw: the child's end, the price of a retrain, each run's charge."""

    outcome: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    runs: dict[int, dict[str, float]] = field(default_factory=dict)
    outside_budgets: float = 0.0
    imported: bool = False  # the child reached the import of the submission (past the kit's own start-up)

    def write(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def read(cls, path: Path) -> "Ledger":
        raw = json.loads(path.read_text())
        raw["runs"] = {int(k): v for k, v in raw["runs"].items()}
        return cls(**raw)


def supervise(
    box: Sandbox,
    todo: list[int],
    settings: Settings,
    logs: dict[str, Path],
    keep: Path,
    charged_before: float = 0.0,
    on_run: Callable[[int, dict[str, Any]], None] | None = None,
) -> tuple[Outcome, Ledger]:
    """Run `python -m challenge.scoring.child inputs outputs scratch` in `box`; charge it as it goes.

    Each run's files are moved to `keep` (out of the sandbox) as soon as the meter has seen the run's end:
    the child forks the next run only after that, so no run can read another's weights."""
    keep.mkdir(parents=True, exist_ok=True)
    child_gone = False

    def ended(index: int, record: dict[str, Any]) -> None:
        take(box.outputs, keep, index)
        # The child may fork the next run. Once it has ended, the pipes are closed and their numbers may already be
        # another thread's files: a run end the meter settles after the child's exit is told to nobody.
        if not child_gone:
            os.write(taken, b".")
        if on_run:
            on_run(index, record)

    meter = Meter(box.outputs, todo, settings, charged_before, on_run=ended)
    wake, bell = os.pipe()  # the child rings when a run has ended: its files are taken at once, not at the next poll
    answer, taken = os.pipe()  # ... and waits, using no CPU, until they have been
    argv = [
        sys.executable,
        "-m",
        "challenge.scoring.child",
        *(box.inside(d) for d in (box.inputs, box.outputs, box.scratch)),
        str(bell),
        str(answer),
    ]
    try:
        outcome = box.run(
            argv,
            logs["stdout"],
            logs["stderr"],
            CpuBackstop(meter, settings),
            outputs_mb=outputs_allowance(box, todo, settings),
            pass_fds=(bell, answer),
            wake_fd=wake,
        )
    finally:
        child_gone = True
        for fd in (wake, bell, answer, taken):
            os.close(fd)
    meter.settle()
    ledger = Ledger(
        outcome=asdict(outcome),
        calibration=meter.calibration,
        runs=meter.records,
        outside_budgets=meter.outside_budgets(),
        imported=meter.cpu_at_import is not None,
    )
    return outcome, ledger


def take(outputs: Path, keep: Path, index: int) -> None:
    """A run's weights and record out of the child's reach (regular files only: anything else is dropped)."""
    for ext in (WEIGHTS, RECORD):
        path = outputs / f"{run_name(index)}{ext}"
        try:
            if path.is_file() and not path.is_symlink():
                shutil.move(path, keep / path.name)
            elif path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            continue


def outputs_allowance(box: Sandbox, todo: list[int], settings: Settings) -> int | None:
    """MB the outputs folder may hold: each run's weights and record (twice the original's size, for
    the one being written) plus scorer.scratch_mb, so that the cap is the same whatever N is."""
    if settings.scratch_mb is None:
        return None
    try:
        weights = (box.inputs / "original.pt").stat().st_size
    except OSError:
        weights = 0
    return settings.scratch_mb + math.ceil((len(todo) + 1) * 2 * (weights + 4096) / 2**20)


class CpuBackstop:
    """The meter, plus RLIMIT_CPU on the child's processes once the budget is known and before any participant
    code runs (the child waits for the meter to take its calibration): what it starts later inherits it,
    so a process that escapes the watchdog is killed by the kernel past the most the whole child may use."""

    def __init__(self, meter: Meter, settings: Settings):
        self.meter, self.s, self.set = meter, settings, False

    def __call__(self, tree: ProcessTree) -> str | None:
        stopped = self.meter(tree)
        if not self.set and self.meter.budget is not None and self.meter.cpu_at_import is not None:
            tree.limit_cpu(self.seconds(self.meter.budget.per_run))
            self.set = True
        return stopped

    def seconds(self, per_run: float) -> float:
        """Twice the most the watchdog lets the child spend from here. On the CPU clock everything after the
        import is charged, so that is N budgets and one run's cap over; on the wall clock (a GPU) the CPU is not
        charged, so each run's wall-clock cap and the start-up allowance once per run, on every core."""
        s = self.s
        if self.meter.budget.clock == "cpu":
            return 2 * (s.n_runs + s.budget_cap) * per_run
        return (
            2
            * (os.cpu_count() or 1)
            * (s.n_runs * s.budget_cap * s.wall_slack * per_run + (s.n_runs + 1) * s.startup_seconds)
        )


def spec_plan(
    settings: Settings, todo: list[int], submission: str, calibration: dict[str, Any] | None
) -> dict[str, Any]:
    """The child's spec.json: which runs with which seeds, the loaders' batch size, threads, how to price a retrain."""
    plan = {
        "submission": submission,
        "runs": [[i, settings.seed(i)] for i in todo],
        "batch_size": settings.batch_size,
        "threads": settings.threads,
        "settings": settings.to_dict(),
    }
    if settings.budget_seconds is None and calibration is not None:
        plan["calibration"] = calibration
    return plan
