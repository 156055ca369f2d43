"""The parent side of the ingestion child: run it in the sandbox under the meter, return the ledger.

Shared by `challenge score` and the Codabench ingestion program, so that a submission is run,
watched and charged the same way in both; whoever calls it judges the ledger with challenge.scoring.judge.
It imports no torch: the Codabench ingestion program stays light, and a file that cannot even be
loaded is turned away in a fraction of a second.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from challenge.files import write_json
from challenge.scoring.budget import Meter
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


def supervise(box: Sandbox, todo: list[int], settings: Settings, logs: dict[str, Path], charged_before: float = 0.0,
              on_run: Callable[[int, dict[str, Any]], None] | None = None) -> tuple[Outcome, Ledger]:
    """Run `python -m challenge.scoring.child inputs outputs` in `box`; charge it as it goes."""
    meter = Meter(box.outputs, todo, settings, charged_before, on_run=on_run)
    argv = [sys.executable, "-m", "challenge.scoring.child", box.inside(box.inputs), box.inside(box.outputs)]
    outcome = box.run(argv, logs["stdout"], logs["stderr"], meter)
    meter.settle()
    ledger = Ledger(outcome=asdict(outcome), calibration=meter.calibration, runs=meter.records,
                    outside_budgets=meter.outside_budgets(), imported=meter.cpu_at_import is not None)
    return outcome, ledger


def spec_plan(settings: Settings, todo: list[int], submission: str, calibration: dict[str, Any] | None) -> dict[str, Any]:
    """The child's spec.json: which runs with which seeds, the loaders' batch size, threads, how to price a retrain."""
    plan = {"submission": submission, "runs": [[i, settings.seed(i)] for i in todo], "batch_size": settings.batch_size,
            "threads": settings.threads, "settings": settings.to_dict()}
    if settings.budget_seconds is None and calibration is not None:
        plan["calibration"] = calibration
    return plan
