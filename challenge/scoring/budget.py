"""The time budget: what retraining costs on this machine now, and the meter that charges runs to it.

The competition's rule is that a submission may spend a fraction (20%) of what retraining from
scratch costs. A pool's wall-clock retrain times were measured at build time, under another load,
another thread count, maybe on another machine, so they cannot price a run now. Instead the
ingestion child, before the participant's file is even imported, times a few training steps of
the architecture with the pool's recipe, batch size and data loader, in the same process, with
the same threads, as the runs that follow; a full retrain costs steps-per-retrain times that.

On a CPU both sides are counted in CPU seconds of the child's process tree, read by the scorer
from /proc: another process keeping a core busy does not count against the participant, and the
participant's code cannot forge the scorer's reading. On a GPU (scorer.device resolved to cuda)
the clock is synchronised wall time: the calibration's timed steps are bracketed by
torch.cuda.synchronize(), and the child synchronises before it writes a run's end marker, so
queued GPU work is charged to the run that queued it, not to the next one (only a GPU can
exercise this: benchmarks/gpu_check.sh). As on Kaggle the budget holds for the whole submission,
N runs within N budgets; one run over `cap` budgets is stopped at once, and a run that idles (sleeps, waits) is stopped by the wall
clock at `wall_slack` times that cap. Everything the child does after the import counts, also
between runs, so a file that writes its own end-of-run markers hides nothing.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from challenge.data.batches import batches_per_epoch
from challenge.files import read_regular

CALIBRATION_FILE = "calibration.json"  # the child's answer, taken away by the meter before the import


# -- the plan, made by the scorer --------------------------------------------------------------------
def retrain_plan(cfg: Any, n_retain: int, class_weights: list[float] | None, steps: int) -> dict[str, Any]:
    """How the child prices a retrain: the pool's optimiser and step count, `steps` steps timed.

    Steps per retrain follow the trainer's epochs, `max_steps` and `limit_train_batches`, as
    Lightning counts them; the pool's loader drops the last short batch when `data.drop_last` says so.
    """
    batches = batches_per_epoch(n_retain, int(cfg.data.batch_size), bool(cfg.data.get("drop_last", False)))
    limit = cfg.trainer.get("limit_train_batches")
    if isinstance(limit, float) and limit <= 1.0:
        batches = math.ceil(batches * limit)
    elif limit is not None:
        batches = min(batches, int(limit))
    total = int(cfg.trainer.max_epochs) * batches
    max_steps = cfg.trainer.get("max_steps")
    if max_steps is not None and int(max_steps) > 0:
        total = min(total, int(max_steps))
    opt = {k: v for k, v in _plain(cfg.model.optimizer).items() if not k.startswith("_")}
    return {"steps": int(steps), "warmup": max(2, int(steps) // 5), "steps_per_retrain": total,
            "optimizer": {"target": str(cfg.model.optimizer._target_), "kwargs": opt}, "class_weights": class_weights}


def _plain(node: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


# -- the calibration, run by the child ---------------------------------------------------------------
def calibrate(net: Any, dataset: Any, batch_size: int, plan: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Seconds per training step of `net` (a fresh copy is trained, the original stays as it is).

    Warm-up steps first, so the first-use costs of the kernels and the allocator are not charged to
    the runs (they would fall on run 0) nor counted into the price of a step.
    """
    import copy
    import importlib

    import torch
    from torch.utils.data import DataLoader

    model = copy.deepcopy(net).to(device).train()
    module, _, name = plan["optimizer"]["target"].rpartition(".")
    optimizer = getattr(importlib.import_module(module), name)(model.parameters(), **plan["optimizer"]["kwargs"])
    weights = torch.tensor(plan["class_weights"], dtype=torch.float32, device=device) if plan.get("class_weights") else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    cuda = device.startswith("cuda")

    def clock() -> float:
        if cuda:
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()

    def steps(n: int) -> None:
        done = 0
        while done < n:
            for batch in loader:
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(batch["image"].to(device)), batch["age_group"].to(device)).backward()
                optimizer.step()
                done += 1
                if done == n:
                    return

    with torch.enable_grad():
        steps(plan["warmup"])
        start = clock()
        steps(plan["steps"])
        per_step = (clock() - start) / plan["steps"]
    return {"clock": "wall" if cuda else "cpu", "per_step_seconds": per_step, "steps_timed": plan["steps"],
            "steps_per_retrain": plan["steps_per_retrain"], "retrain_seconds": per_step * plan["steps_per_retrain"]}


# -- the budget --------------------------------------------------------------------------------------
def per_run_seconds(settings: Any, retrain_seconds: float | None) -> float | None:
    """The fixed budget, or the fraction of a retrain's price; None when neither is known."""
    if settings.budget_seconds is not None:
        return float(settings.budget_seconds)
    return None if retrain_seconds is None else float(settings.budget_fraction) * float(retrain_seconds)


@dataclass(frozen=True)
class Budget:
    """One attempt's budget, in the clock's seconds; `retrain_seconds` None when it was set by hand."""

    per_run: float
    rule: str
    clock: str = "cpu"
    cap: float = 3.0
    wall_slack: float = 3.0
    retrain_seconds: float | None = None
    exempt: bool = False

    @classmethod
    def priced(cls, settings: Any, calibration: dict[str, Any] | None) -> "Budget":
        """From scorer.budget_seconds, or from the child's calibration and scorer.budget_fraction."""
        common = {"cap": settings.budget_cap, "wall_slack": settings.wall_slack, "exempt": settings.budget_exempt}
        if settings.budget_seconds is not None:
            clock = "wall" if settings.device == "cuda" else "cpu"  # the clock of the device the runs are on
            return cls(per_run_seconds(settings, None), f"scorer.budget_seconds={settings.budget_seconds:g}", clock=clock, **common)
        r = float(calibration["retrain_seconds"])
        rule = (f"{settings.budget_fraction:g} × retraining's cost {r:.2f} s here "
                f"({calibration['steps_per_retrain']} steps × {calibration['per_step_seconds'] * 1000:.1f} ms, timed before the file was imported)")
        return cls(per_run_seconds(settings, r), rule, clock=calibration["clock"], retrain_seconds=r, **common)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_calibration(path: Path) -> dict[str, Any] | None:
    """The child's calibration, if it is a whole, sane one (it was written before any participant code ran)."""
    try:
        raw = json.loads(path.read_text()[:10_000])
        cal = {"clock": str(raw["clock"]), "per_step_seconds": float(raw["per_step_seconds"]), "steps_timed": int(raw["steps_timed"]),
               "steps_per_retrain": int(raw["steps_per_retrain"]), "retrain_seconds": float(raw["retrain_seconds"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = cal["clock"] in ("cpu", "wall") and math.isfinite(cal["retrain_seconds"]) and cal["retrain_seconds"] > 0
    return cal if ok else None


# -- the meter ---------------------------------------------------------------------------------------
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
    the charge since the import is also kept, so that work done outside the markers still counts.
    A marker is seen only at the next poll, which a loaded machine can delay by a second: a run is
    then charged the child's own clocks written in its markers, held within what the polls on either
    side of each marker allow (a forged claim moves a run's charge no further than that, and the
    whole submission's charge not at all).
    `on_run(index, record)` is called when a run ends. When the child has priced a retrain, the
    meter takes the file away: the child waits for that before importing the submission, so
    participant code never sees the file it could rewrite, and the charge starts there.
    """

    def __init__(self, outputs: Path, todo: list[int], settings: Any, charged_before: float = 0.0, on_run: Any = None):
        from challenge.scoring.child import run_name

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

    def __call__(self, tree: Any) -> str | None:
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

    def _take_calibration(self, cpu: float) -> None:
        path = self.outputs / CALIBRATION_FILE
        if self.cpu_at_import is not None or not path.exists():
            return
        self.calibration = read_calibration(path)
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
                if not (self.outputs / f"{name}.start").exists():
                    return None
                if self.budget is None:
                    return "the submission's runs began before the kit had priced a retrain (it wrote the kit's own markers)"
                self.started = Mark(before, after, _claimed(self.outputs / f"{name}.start"))
                self.running, self.run_cpu, self.run_wall, self.since = True, self._clock(cpu, now), now, now
            if not (self.outputs / f"{name}.end").exists():
                return None
            start, end = self.started, Mark(before, after, _claimed(self.outputs / f"{name}.end"))
            wall = start.span(end, "now")
            record = {"cost": start.span(end, "cpu") if self.budget.clock == "cpu" else wall, "wall": wall, "budget": self.budget.per_run,
                      "retrain_seconds": self.budget.retrain_seconds, "clock": self.budget.clock}
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
        if b.clock == "cpu":
            spent = self.last.cpu - self.cpu_at_import
        else:  # wall clock: time between runs is the kit's loading and saving, charged to nobody
            spent = sum(r["cost"] for r in self.records.values()) + (now - self.run_wall if self.running else 0.0)
        return self.charged_before + spent / b.per_run

    def _over(self, cpu: float, now: float) -> str | None:
        b = self.budget
        if self.running and b is not None and not b.exempt:
            index, cost, wall = self.todo[self.pos], self._clock(cpu, now) - self.run_cpu, now - self.run_wall
            if cost > b.cap * b.per_run:
                return f"run {index} was stopped after {cost:.1f} s, over the cap of {b.cap:g} × its budget of {b.per_run:.2f} s ({b.rule})"
            if wall > b.cap * b.wall_slack * b.per_run and cost < b.per_run:
                return (f"run {index} was stopped after {wall:.1f} s of wall-clock time (not counting waits for a busy CPU) using only "
                        f"{cost:.1f} s of CPU: a run may idle (sleep, I/O) at most {b.wall_slack:g} × {b.cap:g} × its budget of {b.per_run:.2f} s ({b.rule})")
            used = self.charged(now)
            if used > self.s.n_runs:
                done = len(self.records)
                return (f"the submission used {used:.1f} budgets by run {index}, more than its {self.s.n_runs} runs may "
                        f"({self.s.n_runs} × {b.per_run:.2f} s, {b.rule}), and was stopped{_mean_text(self.records, done)}")
        if not self.running and now - self.since > self.s.startup_seconds:  # also net of the waits for a CPU
            return f"the submission spent more than scorer.startup_seconds={self.s.startup_seconds:g} s outside unlearning() (loading or saving) and was stopped"
        return None

    def settle(self) -> None:
        """After the child's end: the markers written since the last poll, at the last reading."""
        self._advance(final=True)

    def outside_budgets(self) -> float:
        """What this child charged outside its runs (import, the kit's loading and saving), in budgets."""
        if self.budget is None or self.cpu_at_import is None or self.budget.clock != "cpu":
            return 0.0
        in_runs = sum(r["cost"] for r in self.records.values())
        return max(0.0, self.last.cpu - self.cpu_at_import - in_runs) / self.budget.per_run


def _mean_text(records: dict[int, dict[str, float]], done: int) -> str:
    if not done:
        return ""
    mean = sum(r["cost"] / r["budget"] for r in records.values()) / done
    return f"; its {done} finished run(s) cost {mean:.2f} × the budget on average"


def verdict(runs: list[dict[str, float]], outside: float, n_runs: int, exempt: bool) -> str | None:
    """Kaggle's rule on the whole submission: the runs (and what was done between them) within N budgets."""
    if exempt:
        return None
    fractions = [r["cost"] / r["budget"] for r in runs]
    used = sum(fractions) + outside
    if used <= n_runs:
        return None
    worst = max(range(len(runs)), key=fractions.__getitem__)
    return (f"the {n_runs} runs used {used:.2f} budgets, {used / n_runs:.2f} × the {n_runs} allowed "
            f"(a run's budget: {runs[0]['budget']:.2f} s; the costliest, run {worst}, took {fractions[worst]:.2f} × it)")
