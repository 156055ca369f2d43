"""W&B through Lightning's WandbLogger: offline (files only) unless the user has set W&B up."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


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
    from hydra.utils import instantiate  # here: the package imports this module, the sandboxed child needs no Hydra

    Path(cfg.logger.save_dir).mkdir(parents=True, exist_ok=True)
    return instantiate(cfg.logger, **overrides)


def finish(logger: Any) -> None:
    """Close the W&B run so its offline files are complete before the process moves on."""
    experiment = getattr(logger, "_experiment", None)
    if experiment is not None:
        experiment.finish()
