"""The time budget: what a run may cost, priced from what retraining costs on this machine now.

The competition's rule is that a submission may spend a fraction (20%) of what retraining from
scratch costs. A pool's wall-clock retrain times were measured at build time, under another load,
another thread count, maybe on another machine, so they cannot price a run now. Instead the scorer
plans a price (`retrain_plan`: the pool's recipe and step count), the child measures it before the
participant's file is imported (challenge.scoring.calibration), and `Budget.priced` turns it into
seconds per run; the meter (challenge.scoring.meter) charges the runs against it, and `verdict`
applies Kaggle's rule to the whole submission: N runs within N budgets.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from challenge.data.batches import batches_per_epoch
from challenge.files import read_regular

if TYPE_CHECKING:
    from challenge.scoring.settings import Settings


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
    return {
        "steps": int(steps),
        "warmup": max(2, int(steps) // 5),
        "steps_per_retrain": total,
        "optimizer": {"target": str(cfg.model.optimizer._target_), "kwargs": opt},
        "class_weights": class_weights,
    }


def _plain(node: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


# -- the budget --------------------------------------------------------------------------------------
def per_run_seconds(settings: Settings, retrain_seconds: float | None) -> float | None:
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
    def priced(cls, settings: Settings, calibration: dict[str, Any] | None) -> "Budget":
        """From scorer.budget_seconds, or from the child's calibration and scorer.budget_fraction."""
        common = {"cap": settings.budget_cap, "wall_slack": settings.wall_slack, "exempt": settings.budget_exempt}
        if settings.budget_seconds is not None:
            clock = "wall" if settings.device == "cuda" else "cpu"  # the clock of the device the runs are on
            return cls(
                per_run_seconds(settings, None),
                f"scorer.budget_seconds={settings.budget_seconds:g}",
                clock=clock,
                **common,
            )
        r = float(calibration["retrain_seconds"])
        rule = (
            f"{settings.budget_fraction:g} × retraining's cost {r:.2f} s here "
            f"({calibration['steps_per_retrain']} steps × {calibration['per_step_seconds'] * 1000:.1f} ms, timed "
            "before the file was imported)"
        )
        return cls(per_run_seconds(settings, r), rule, clock=calibration["clock"], retrain_seconds=r, **common)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_calibration(path: Path) -> dict[str, Any] | None:
    """The child's calibration, if it is a whole, sane one (it was written before any participant code ran)."""
    try:
        raw = json.loads(read_regular(path, 10_000) or b"")  # none (a link, FIFO or giant): ValueError
        cal = {
            "clock": str(raw["clock"]),
            "per_step_seconds": float(raw["per_step_seconds"]),
            "steps_timed": int(raw["steps_timed"]),
            "steps_per_retrain": int(raw["steps_per_retrain"]),
            "retrain_seconds": float(raw["retrain_seconds"]),
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = cal["clock"] in ("cpu", "wall") and math.isfinite(cal["retrain_seconds"]) and cal["retrain_seconds"] > 0
    return cal if ok else None


def read_kit_run(path: Path) -> dict[str, float]:
    """The kit's own part of a fresh run on each clock, as the child measured it beside the price of a retrain
    (challenge.scoring.child.kit_run_price); none (0) where the file holds no sane one."""
    try:
        raw = json.loads(read_regular(path, 10_000) or b"")["kit_run"]
        kit = {clock: float(raw[clock]) for clock in ("cpu", "wall")}
    except (OSError, ValueError, KeyError, TypeError):
        return {"cpu": 0.0, "wall": 0.0}
    return {k: v if math.isfinite(v) and v > 0 else 0.0 for k, v in kit.items()}


def verdict(runs: list[dict[str, float]], n_runs: int, exempt: bool) -> str | None:
    """Kaggle's rule on the whole submission: the N runs within N budgets."""
    if exempt:
        return None
    fractions = [r["cost"] / r["budget"] for r in runs]
    used = sum(fractions)
    if used <= n_runs:
        return None
    worst = max(range(len(runs)), key=fractions.__getitem__)
    return (
        f"the {n_runs} runs used {used:.2f} budgets, {used / n_runs:.2f} × the {n_runs} allowed "
        f"(a run's budget: {runs[0]['budget']:.2f} s; the costliest, run {worst}, took {fractions[worst]:.2f} × it)"
    )
