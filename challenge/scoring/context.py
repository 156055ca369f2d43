"""The hidden side of scoring, set up once per scoring: data with the test images, the pool, the architecture,
the settings and the recipe a retrain is priced with. The user's faults end here as ChallengeError (no pool,
a bad setting), before anything is run.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from challenge.checks import check_values
from challenge.data.dataset import FaceData
from challenge.kit import kit_path
from challenge.pool import Pool, PoolEntry
from challenge.scoring.budget import retrain_plan
from challenge.scoring.settings import Settings
from challenge.training.net import NetSpec, load_net
from challenge.training.recipe import set_threads

KIT_BASELINES = kit_path("baselines")


@dataclass
class Context:
    """The hidden side of scoring: data with test images, the pool, the architecture, the recipe to price."""

    dm: FaceData
    pool: Pool
    entries: list[PoolEntry]
    spec: NetSpec
    settings: Settings
    plan: dict[str, Any]  # how the child prices a retrain (challenge.scoring.budget.retrain_plan)
    held_out: list[PoolEntry]  # retrained models outside the reference (pool.ceiling), or none


def prepare(cfg: DictConfig) -> Context:
    """Everything the user must have set up; their faults end here as ChallengeError."""
    check_values(cfg)  # the CLI checks before any import; callers of score_submission get the same lines
    settings = Settings.from_config(cfg)
    set_threads(settings.threads)  # the judge's evaluation too: thread count changes a model's output bits
    dm: FaceData = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    entries = pool.require(settings.n_runs, settings.originals)
    _, spec, _ = load_net(pool.original_path)
    plan = retrain_plan(cfg, len(dm.dataset("retain")), dm.split.class_weights, settings.calibration_steps)
    held_out = pool.entries(settings.n_runs, start=settings.n_runs) if cfg.pool.get("ceiling", False) else []
    return Context(dm, pool, entries, spec, settings, plan, held_out if len(held_out) == settings.n_runs else [])


def budget_exempt(submission: Path) -> bool:
    """True for a file of the kit's own baselines/ folder that sets `BUDGET_EXEMPT = True` at module level.

    Retraining from scratch is the leaderboard's ceiling and costs five budgets by definition; it is
    run and timed like any method, but not stopped. Read from the source (never by running it), and
    only in the kit's folder, so that a participant's file cannot claim it.
    """
    try:
        if not submission.resolve().is_relative_to(KIT_BASELINES) or not submission.is_file():
            return False
        tree = ast.parse(submission.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return False
    return any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "BUDGET_EXEMPT" for t in node.targets)
        and isinstance(node.value, ast.Constant)
        and node.value.value is True
        for node in tree.body
    )
