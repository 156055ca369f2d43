"""The numeric config keys the kit reads, checked before a run starts.

A wrong type or an out-of-range value (`pool.size=abc`, `scorer.threads=0`) would otherwise surface
minutes later as a raw traceback, or not at all: each is refused here in one line that names the
key, the value and what is allowed. `check_values` only looks at keys this command's config has.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, UnsupportedInterpolationType

from challenge.errors import ChallengeError
from challenge.scoring.gpu import resolve_device


class Rule(NamedTuple):
    kind: type  # int or float (an int is fine for a float key; a bool is neither)
    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    nullable: bool = False  # null is allowed (and means a default the code picks)


# In order: a key that others interpolate (pool.size, read by scorer.n_runs) is checked first, so
# its own name is the one reported.
RULES: dict[str, Rule] = {
    "pool.size": Rule(int, ge=1),
    "pool.first_seed": Rule(int, ge=0),  # seeds are non-negative (numpy's generators refuse others)
    "pool.threads": Rule(int, ge=1),  # fixed: the thread count changes a model's bits
    "pool.workers": Rule(int, ge=1, nullable=True),
    "scorer.n_runs": Rule(int, ge=3),  # the metric compares distributions: it needs at least 3 runs
    "scorer.first_seed": Rule(int, ge=0),
    "scorer.budget_fraction": Rule(float, gt=0, le=10),  # 0 lets no run finish; over 10x retraining is surely a typo
    "scorer.budget_seconds": Rule(float, gt=0, nullable=True),  # null: budget_fraction decides
    "scorer.budget_cap": Rule(float, ge=1),  # a multiplier: 1 already means no headroom
    "scorer.wall_slack": Rule(float, ge=1),  # a multiplier: 1 already means no slack
    "scorer.calibration_steps": Rule(int, ge=1),
    "scorer.startup_seconds": Rule(float, gt=0),
    "scorer.memory_mb": Rule(int, ge=1, nullable=True),  # null: no limit
    "scorer.file_size_mb": Rule(int, ge=1, nullable=True),  # null: no limit
    "scorer.log_cap_bytes": Rule(int, ge=1),
    "scorer.max_processes": Rule(int, ge=4, nullable=True),  # null: no cap; below 4 not even bubblewrap and the interpreter start
    "scorer.scratch_mb": Rule(int, ge=1, nullable=True),  # null: no cap
    "scorer.n_bootstrap": Rule(int, ge=0),  # 0: no confidence interval
    "scorer.threads": Rule(int, ge=1),  # fixed, for the same reason
    "trainer.max_epochs": Rule(int, ge=1),
    "data.batch_size": Rule(int, ge=1),
    "data.eval_batch_size": Rule(int, ge=1),
    "data.num_workers": Rule(int, ge=0),  # 0: load in the main process
    "workers": Rule(int, ge=1),
    "tune.trials": Rule(int, ge=1),
    "tune.split_seed": Rule(int, ge=0),
    "tune.evaluation_seed": Rule(int, ge=0),
    "tune.seed": Rule(int, ge=0),
    "tune.budget_share": Rule(float, gt=0, le=1),
    "seed": Rule(int, ge=0),
}

_ABSENT = object()


def check_values(cfg: DictConfig) -> None:
    """Raise ChallengeError for the first key in RULES whose value has the wrong type or range.

    A key absent from this config, or left at ???, is skipped (the missing-key check reports those);
    so is one whose interpolation needs Hydra's runtime (`${hydra:...}`), which only a run has.
    """
    for key, rule in RULES.items():
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        except InterpolationResolutionError as e:
            if _needs_hydra(e):
                continue
            reason = str(e).splitlines()[0]
            raise ChallengeError(f"{key}={_raw(cfg, key)} cannot be resolved ({reason}): fix the interpolation") from None
        if value is _ABSENT:
            continue
        problem = _problem(value, rule)
        if problem:
            raise ChallengeError(f"{key}={_show(value)}{_origin(cfg, key)} {problem}")
    _check_device(cfg)


def _check_device(cfg: DictConfig) -> None:
    """`device` drives trainer.accelerator and scorer.device: a wrong one is said as `device`, not as either.
    `auto` is left to the commands, so that checking a config never imports torch to ask for CUDA."""
    value = OmegaConf.select(cfg, "device", default=_ABSENT, throw_on_missing=False)
    if value is not _ABSENT and value != "auto":
        resolve_device(value, "device", f"{_show(value)}{_origin(cfg, 'device')}")


def _problem(value: Any, rule: Rule) -> str | None:
    """What is wrong with `value` under `rule`, said as the fix; None when it is fine."""
    if value is None and rule.nullable:
        return None
    whole = rule.kind is int
    allowed = f"{'a whole number' if whole else 'a number'} {_bounds(rule)}{' or null' if rule.nullable else ''}"
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        return f"is not {'an integer' if whole else 'a number'}: set it to {allowed}"
    if not math.isfinite(value):
        return f"is not a finite number: set it to {allowed}"
    if (rule.ge is not None and not value >= rule.ge) or (rule.gt is not None and not value > rule.gt) or (rule.le is not None and not value <= rule.le):
        return f"is out of range: it must be {_bounds(rule)}"
    return None


def _bounds(rule: Rule) -> str:
    parts = [f"{op} {_num(b)}" for op, b in ((">=", rule.ge), (">", rule.gt), ("<=", rule.le)) if b is not None]
    return " and ".join(parts)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _show(value: Any) -> str:
    """The value as the user would type it: true/null, not True/None; a string that looks like a number quoted."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, str) and (not value.strip() or _looks_numeric(value)):
        return repr(value)
    if isinstance(value, (DictConfig, ListConfig)):
        return str(OmegaConf.to_container(value, resolve=False))
    return str(value)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _raw(cfg: DictConfig, key: str) -> str:
    """The key's value before interpolation (e.g. `${pool.size}`)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return str(OmegaConf.to_container(node, resolve=False)[leaf])


def _origin(cfg: DictConfig, key: str) -> str:
    """` (from ${pool.size})` when the value came through an interpolation, so the user knows what to change."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return f" (from {_raw(cfg, key)})" if OmegaConf.is_interpolation(node, leaf) else ""


def _needs_hydra(err: Exception) -> bool:
    """`${hydra:...}` outside a Hydra run: the resolver says HydraConfig is unset (or is not registered)."""
    text = str(err)
    return "HydraConfig was not set" in text or (isinstance(err, UnsupportedInterpolationType) and "type hydra" in text)
