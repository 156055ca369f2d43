"""The watchdog that charges a child's runs to the budget, polled with the child's process tree.

On a CPU a run is charged CPU seconds of the child's process tree, read by the scorer from /proc:
another process keeping a core busy does not count against the participant, and the participant's
code cannot forge the scorer's reading. On a GPU (scorer.device resolved to cuda) the clock is
synchronised wall time: the run's process synchronises before it ends, so queued GPU work is charged
to the run that queued it. As on Kaggle the budget holds for the whole submission, N runs within N
budgets; one run over `cap` budgets is stopped at once, and a run that idles (sleeps, waits) is stopped
by the wall clock at `wall_slack` times that cap.

A run is its own process, from the fork to the reap (the import, `unlearning()`, the weights out, the exit),
and that is what is charged. The warm parent never runs a line of the participant's file, and a run that
leaves a process behind is rejected, so what the child does between the runs (marking them, emptying the
scratch folders, its own exit) is the kit's: it is measured and reported (`outside_budgets`), not charged.
Charging it made a verdict depend on machine load: under a full test suite with a busy core, about a CPU
second landed there, and a template within its budget at every run was rejected (issue 27).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from challenge.files import read_regular
from challenge.scoring.budget import Budget, read_calibration, read_kit_run
from challenge.scoring.protocol import CALIBRATION, END, START, run_name

if TYPE_CHECKING:
    from challenge.scoring.settings import Settings


_LOOKAHEAD = 4  # runs whose markers one poll looks for: a poll rarely sees more than one run end, never four


class Reading(NamedTuple):
    """One poll: the tree's CPU seconds, the wall clock less its waits for a CPU, and those waits."""

    cpu: float
    now: float
    starved: float


@dataclass
class Mark:
    """A marker as the meter saw it: written after the poll `before`, seen at `after`, with the child's clocks then."""

    before: Reading
    after: Reading
    claim: dict[str, float] | None

    def seen(self, key: str) -> float:
        """The reading at the poll that saw the marker (the last one, for a marker seen after the child's end)."""
        value = getattr(self.after, key)
        return value if math.isfinite(value) else getattr(self.before, key)

    def span(self, end: Mark, key: str) -> float:
        """From this marker to `end` on one clock: the child's claim, kept within what the four polls allow."""
        least = max(0.0, getattr(end.before, key) - getattr(self.after, key))
        most = getattr(end.after, key) - getattr(self.before, key)
        if self.claim is None or end.claim is None:  # nothing to go by but the polls that saw the markers
            claim = end.seen(key) - self.seen(key)
        elif key == "cpu":
            claim = end.claim["cpu"] - self.claim["cpu"]
        else:  # the child's monotonic clock, less its waits for a CPU between the polls that saw the markers
            claim = end.claim["monotonic"] - self.claim["monotonic"] - max(0.0, end.after.starved - self.after.starved)
        return min(max(claim, least), most)


def _claimed(path: Path) -> dict[str, float] | None:
    """The clocks the child wrote in a marker (see child.clocks), or None for anything else it may have left."""
    blob = read_regular(path, 1_000)
    try:
        raw = json.loads(blob or b"")
        claim = {k: float(raw[k]) for k in ("cpu", "monotonic")}
    except (ValueError, KeyError, TypeError):
        return None
    return claim if all(math.isfinite(v) for v in claim.values()) else None


class Meter:
    """The watchdog that charges a child's runs: polled by Sandbox.run with the child's process tree.

    Run i lasts from its `.start` to its `.end` marker (the child writes them around the call);
    what the child uses between the runs is kept too, for the record (it is the kit's, not charged).
    A marker is seen only at the next poll, which a loaded machine can delay by a second: a run is
    then charged the child's own clocks written in its markers, held within what the polls on either
    side of each marker allow (a forged claim moves a run's charge no further than that, and the
    whole submission's charge not at all).
    `on_run(index, record)` is called when a run ends. When the child has priced a retrain, the
    meter takes the file away: the child waits for that before importing the submission, so
    participant code never sees the file it could rewrite, and the charge starts there.
    """

    def __init__(
        self,
        outputs: Path,
        todo: list[int],
        settings: Settings,
        charged_before: float = 0.0,
        on_run: Callable[[int, dict[str, float]], None] | None = None,
    ):
        self.outputs, self.todo, self.s = outputs, todo, settings
        self.names = [run_name(i) for i in todo]
        self.on_run = on_run
        self.budget: Budget | None = None if settings.budget_seconds is None else Budget.priced(settings, None)
        self.charged_before = charged_before  # budgets already used by earlier attempts' runs
        self.pos, self.running = 0, False
        self.cpu_at_import: float | None = None
        self.run_cpu = self.run_wall = 0.0
        self.since = time.monotonic()
        self.last = self.prev = Reading(0.0, self.since, 0.0)  # this poll's reading, and the one before
        self.started: Mark | None = None
        self.records: dict[int, dict[str, float]] = {}
        self.calibration: dict[str, Any] | None = None
        self.kit_run = {"cpu": 0.0, "wall": 0.0}  # the kit's own part of a fresh run, credited to each run
        self.present: set[str] | None = None  # the markers seen before this poll's reading (None: look now)

    def __call__(self, tree: Any) -> str | None:
        # The markers first, the clocks after: a marker is written once the process it ends has been reaped, so a
        # reading taken after the marker was seen holds all of that process's CPU. Read the other way round, a
        # process that had exited but was not reaped yet (a zombie: in no count) could be missed by the reading
        # the marker is then charged against; under load (a starved parent, a late poll) that lost whole runs,
        # and charged them to the work outside the runs.
        self.present = self._markers_present()
        # The wall clock, less the time the child waited for a CPU (load it did not cause).
        starved = tree.starved_seconds()
        now = time.monotonic() - starved
        cpu = tree.cpu_seconds()
        self.prev, self.last = self.last, Reading(cpu, now, starved)
        self._take_calibration(cpu)
        stopped = self._advance()
        if stopped:
            return stopped
        return self._over(cpu, now)

    def _markers_present(self) -> set[str] | None:
        """The kit's files this poll may act on that exist now: the calibration, the next runs' markers."""
        names = [CALIBRATION] + [
            f"{n}{ext}" for n in self.names[self.pos : self.pos + _LOOKAHEAD] for ext in (START, END)
        ]
        return {name for name in names if (self.outputs / name).exists()}

    def _exists(self, name: str) -> bool:
        """Whether the marker counts at this poll: it existed before the clocks were read (at the end: now)."""
        return name in self.present if self.present is not None else (self.outputs / name).exists()

    def _take_calibration(self, cpu: float) -> None:
        path = self.outputs / CALIBRATION
        if self.cpu_at_import is not None or not self._exists(CALIBRATION):
            return
        self.calibration = read_calibration(path)
        self.kit_run = read_kit_run(path)
        path.unlink(missing_ok=True)  # the child's signal to import the submission
        self.cpu_at_import = cpu
        if self.calibration is not None and self.s.budget_seconds is None:
            self.budget = Budget.priced(self.s, self.calibration)

    def _clock(self, cpu: float, now: float) -> float:
        return cpu if self.budget is None or self.budget.clock == "cpu" else now

    def _advance(self, final: bool = False) -> str | None:
        cpu, now, starved = here = self.last
        # A marker seen now was written after the previous poll; one seen after the child's end, after the last.
        before, after = (here, Reading(math.inf, math.inf, starved)) if final else (self.prev, here)
        while self.pos < len(self.todo):
            name = self.names[self.pos]
            if not self.running:
                if not self._exists(f"{name}{START}"):
                    return None
                if self.budget is None:
                    return (
                        "the submission's runs began before the kit had priced a retrain (it wrote the kit's own "
                        "markers)"
                    )
                self.started = Mark(before, after, _claimed(self.outputs / f"{name}{START}"))
                self.running, self.run_cpu, self.run_wall, self.since = True, self._clock(cpu, now), now, now
            if not self._exists(f"{name}{END}"):
                return None
            start, end = self.started, Mark(before, after, _claimed(self.outputs / f"{name}{END}"))
            wall = start.span(end, "now")
            span = start.span(end, "cpu") if self.budget.clock == "cpu" else wall
            kit = min(span, self.kit_run[self.budget.clock])
            record = {
                "cost": span - kit,
                "kit": kit,  # the kit's own part of the run (a fresh process, the weights out): not the submission's
                "wall": wall,
                "budget": self.budget.per_run,
                "retrain_seconds": self.budget.retrain_seconds,
                "clock": self.budget.clock,
            }
            self.records[self.todo[self.pos]] = record
            if self.on_run:
                self.on_run(self.todo[self.pos], record)
            self.running, self.since, self.pos = False, now, self.pos + 1
        return None

    def charged(self, now: float) -> float:
        """Budgets used so far: earlier attempts' runs, and everything this child did since the import."""
        b = self.budget
        if b is None or self.cpu_at_import is None:
            return self.charged_before
        spent = sum(r["cost"] for r in self.records.values()) + (self._running_cost(now) if self.running else 0.0)
        return self.charged_before + spent / b.per_run

    def _running_cost(self, now: float) -> float:
        """The running run's charge so far, from the poll that saw its start, less the kit's own part."""
        return max(0.0, self._clock(self.last.cpu, now) - self.run_cpu - self.kit_run[self.budget.clock])

    def _over(self, cpu: float, now: float) -> str | None:
        b = self.budget
        if self.running and b is not None and not b.exempt:
            index, wall, cost = self.todo[self.pos], now - self.run_wall, self._running_cost(now)
            if cost > b.cap * b.per_run:
                return (
                    f"run {index} was stopped after {cost:.1f} s, over the cap of {b.cap:g} × its budget of "
                    f"{b.per_run:.2f} s ({b.rule})"
                )
            if wall > b.cap * b.wall_slack * b.per_run and cost < b.per_run:
                return (
                    f"run {index} was stopped after {wall:.1f} s of wall-clock time (not counting waits for a busy "
                    "CPU) using only "
                    f"{cost:.1f} s of CPU: a run may idle (sleep, I/O) at most {b.wall_slack:g} × {b.cap:g} × its "
                    f"budget of {b.per_run:.2f} s ({b.rule})"
                )
            used = self.charged(now)
            if used > self.s.n_runs:
                done = len(self.records)
                return (
                    f"the submission used {used:.1f} budgets by run {index}, more than its {self.s.n_runs} runs may "
                    f"({self.s.n_runs} × {b.per_run:.2f} s, {b.rule}), and was stopped{_mean_text(self.records, done)}"
                )
        if not self.running and now - self.since > self.s.startup_seconds:  # also net of the waits for a CPU
            return (
                f"the submission spent more than scorer.startup_seconds={self.s.startup_seconds:g} s outside "
                "unlearning() (loading or saving) and was stopped"
            )
        return None

    def settle(self) -> None:
        """After the child's end: the markers written since the last poll, at the last reading."""
        self.present = None
        self._advance(final=True)

    def outside_budgets(self) -> float:
        """What the child used outside its runs (the kit's marking, emptying and exit; not charged), in budgets."""
        if self.budget is None or self.cpu_at_import is None or self.budget.clock != "cpu":
            return 0.0
        in_runs = sum(r["cost"] + r.get("kit", 0.0) for r in self.records.values())
        return max(0.0, self.last.cpu - self.cpu_at_import - in_runs) / self.budget.per_run


def _mean_text(records: dict[int, dict[str, float]], done: int) -> str:
    if not done:
        return ""
    mean = sum(r["cost"] / r["budget"] for r in records.values()) / done
    return f"; its {done} finished run(s) cost {mean:.2f} × the budget on average"
