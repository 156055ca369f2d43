"""W&B through Lightning's WandbLogger: offline (files only) unless the user has set W&B up."""

from __future__ import annotations

import netrc
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from challenge.scoring.result import Result


def wandb_offline() -> bool:
    """Online only with credentials, so that a fresh clone never blocks on a login prompt."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in {"offline", "disabled", "dryrun"}:
        return True
    if mode == "online" or os.environ.get("WANDB_API_KEY"):
        return False
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is None
    except (FileNotFoundError, netrc.NetrcParseError):
        return True


def register_resolvers() -> None:
    """Registered on import of the package, so that launcher worker processes have them too."""
    if not OmegaConf.has_resolver("wandb_offline"):
        OmegaConf.register_new_resolver("wandb_offline", wandb_offline)
    if not OmegaConf.has_resolver("cwd"):
        # ${hydra:runtime.cwd} is unset while a sweeper computes multirun folders; this works always.
        OmegaConf.register_new_resolver("cwd", os.getcwd)


def make_logger(cfg: DictConfig, **overrides: Any) -> Any:
    """The configured Lightning logger, or False (Lightning's 'no logger') for `logger=none`."""
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return False
    if os.environ.get("WANDB_MODE", "").lower() == "disabled":
        return False
    from hydra.utils import (
        instantiate,  # here: the package imports this module, the sandboxed child needs no Hydra
    )

    Path(cfg.logger.save_dir).mkdir(parents=True, exist_ok=True)
    return instantiate(cfg.logger, **overrides)


def finish(logger: Any) -> None:
    """Close the W&B run so its offline files are complete before the process moves on."""
    experiment = getattr(logger, "_experiment", None)
    if experiment is not None:
        experiment.finish()


def log_score(cfg: DictConfig, result: Result) -> None:
    """One W&B run per scoring: the summary (every number of the score, and the leaderboard's columns),
    a histogram of epsilons and the per-example table."""
    sha = result.submission.sha256 or "missing"
    logger = make_logger(cfg, name=f"score-{Path(cfg.submission).stem}-{sha[:8]}")
    if not logger:
        return
    import wandb

    from challenge.scoring.row import SCORE_COLUMNS, LeaderboardRow

    run = logger.experiment
    run.summary.update(
        {"status": result.status, "message": result.message, "sha256": sha, "pool": result.pool.fingerprint}
    )
    if result.score is not None and result.examples is not None:
        row = LeaderboardRow.from_result(Path(cfg.submission).stem, result)
        terms = asdict(result.score).items()
        numbers = {k: v for k, v in terms if isinstance(v, (int, float)) and not isinstance(v, bool)}
        run.summary.update(numbers | {c.key: v for c in SCORE_COLUMNS if (v := getattr(row, c.key)) is not None})
        ex = asdict(result.examples)
        table = wandb.Table(columns=list(ex), data=[list(r) for r in zip(*ex.values())])
        run.log({"epsilon": wandb.Histogram(ex["epsilon"]), "examples": table})
    finish(logger)
