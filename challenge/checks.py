"""The config values the kit reads, checked before a run starts, and the one line that refuses one.

A wrong type or an out-of-range value (`pool.size=abc`, `scorer.threads=0`) would otherwise surface
minutes later as a raw traceback, or not at all: each is refused here in one line that names the
key, the value and what is allowed. `check_values` only looks at keys this command's config has.
The scorer's keys are not listed here: their rules are fields of challenge.scoring.settings.Settings,
which reads them with `checked`, so the command line and the scorer refuse a value in the same words.
Other modules' domain checks (tune, the split) raise theirs with `refuse` and `check_value`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, UnsupportedInterpolationType

from challenge.errors import ChallengeError
from challenge.scoring.gpu import resolve_device


class Rule(NamedTuple):
    kind: type  # int, float (an int is fine for a float key), bool, str, or list (of `choices`, each at most once)
    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    lt: float | None = None  # value < lt
    nullable: bool = False  # null is allowed (and means a default the code picks)
    choices: tuple[str, ...] = ()  # the only values allowed (for a str; for a list, of its items)
    fix: str = ""  # said after a value outside `choices`, when the choices alone do not say what to pick


# The keys outside the scorer, in order: a key that others interpolate (pool.size, read by scorer.n_runs) is
# checked first, so its own name is the one reported. The scorer's (and data.batch_size's) are Settings' fields.
RULES: dict[str, Rule] = {
    "pool.size": Rule(int, ge=1),
    "pool.first_seed": Rule(int, ge=0),  # seeds are non-negative (numpy's generators refuse others)
    "pool.threads": Rule(int, ge=1),  # fixed: the thread count changes a model's bits
    "pool.workers": Rule(int, ge=1, nullable=True),
    "pool.pack": Rule(int, ge=1),  # models trained at once in one process (in the fingerprint when > 1)
    "pool.collateral": Rule(int, ge=0, nullable=True),  # retain and test images with kept outputs; null: |forget|
    "trainer.max_epochs": Rule(int, ge=1),
    "data.num_workers": Rule(int, ge=0),  # 0: load in the main process
    "workers": Rule(int, ge=1, nullable=True),
    "power.n_bootstrap": Rule(int, ge=1),
    "power.max_models": Rule(int, ge=2),
    "tune.trials": Rule(int, ge=1),
    "tune.split_seed": Rule(int, ge=0),
    "tune.evaluation_seed": Rule(int, ge=0),
    "tune.seed": Rule(int, ge=0),
    "tune.budget_share": Rule(float, gt=0, le=1),
    "seed": Rule(int, ge=0),
}

ABSENT = object()  # what `checked` gives for a key this config lacks, leaves at ???, or cannot know yet


def check_values(cfg: DictConfig) -> None:
    """Raise ChallengeError for the first key whose value has the wrong type or range: the keys of RULES, then
    `device`, then the scorer's (Settings' fields; `device` first, so that a wrong one is said as `device` and not
    as the scorer.device that follows it)."""
    from challenge.scoring.settings import Settings  # imports this module: its rules are read when a check runs

    for key, rule in RULES.items():
        checked(cfg, key, rule)
    _check_device(cfg)
    for key, rule in Settings.rules().items():
        checked(cfg, key, rule)


def checked(cfg: DictConfig, key: str, rule: Rule) -> Any:
    """The key's value once it fits `rule`, else a ChallengeError naming the key, the value and the fix.

    ABSENT for a key absent from this config or left at ??? (the missing-key check reports those), and for one
    whose interpolation needs Hydra's runtime (`${hydra:...}`), which only a run has.
    """
    try:
        value = OmegaConf.select(cfg, key, default=ABSENT, throw_on_missing=False)
    except InterpolationResolutionError as e:
        if _needs_hydra(e):
            return ABSENT
        reason = str(e).splitlines()[0]
        raise ChallengeError(f"{key}={_raw(cfg, key)} cannot be resolved ({reason}): fix the interpolation") from None
    if value is not ABSENT:
        problem = _problem(value, rule)
        if problem:
            raise refuse(key, value, problem, _origin(cfg, key))
    return value


def check_value(key: str, value: Any, rule: Rule) -> None:
    """A plain value (not read from a config) against `rule`, refused in the same words as a config's."""
    problem = _problem(value, rule)
    if problem:
        raise refuse(key, value, problem)


def refuse(key: str, value: Any, problem: str, origin: str = "") -> ChallengeError:
    """The one line that refuses a value: `key=value problem: fix`, the value shown as the user would type it."""
    return ChallengeError(f"{key}={_show(value)}{origin} {problem}")


def _check_device(cfg: DictConfig) -> None:
    """`device` drives trainer.accelerator and scorer.device: a wrong one is said as `device`, not as either.
    `auto` is left to the commands, so that checking a config never imports torch to ask for CUDA."""
    value = OmegaConf.select(cfg, "device", default=ABSENT, throw_on_missing=False)
    if value is not ABSENT and value != "auto":
        resolve_device(value, "device", f"{_show(value)}{_origin(cfg, 'device')}")


def _problem(value: Any, rule: Rule) -> str | None:
    """What is wrong with `value` under `rule`, said as the fix; None when it is fine."""
    if value is None and rule.nullable:
        return None
    if rule.kind is list:
        return _list_problem(value, rule.choices)
    if rule.choices:
        listed = ", ".join(rule.choices) + (" or null" if rule.nullable else "")
        return None if value in rule.choices else f"is not one of {listed}" + (f": {rule.fix}" if rule.fix else "")
    if rule.kind in (bool, str):
        word = "true or false" if rule.kind is bool else "a string"
        return None if isinstance(value, rule.kind) else f"is not {word}{' or null' if rule.nullable else ''}"
    whole = rule.kind is int
    allowed = f"{'a whole number' if whole else 'a number'} {_bounds(rule)}{' or null' if rule.nullable else ''}"
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        return f"is not {'an integer' if whole else 'a number'}: set it to {allowed}"
    if not math.isfinite(value):
        return f"is not a finite number: set it to {allowed}"
    if not _in_range(value, rule):
        return f"is out of range: it must be {_bounds(rule)}"
    return None


def _list_problem(value: Any, choices: tuple[str, ...]) -> str | None:
    """What is wrong with a list of names: not a list, an unknown name, or one named twice."""
    listed = ", ".join(choices)
    if not isinstance(value, (list, tuple, ListConfig)):
        return f"is not a list: set it to a list of {listed} (e.g. [{choices[0]}]), or [] for none"
    unknown = [v for v in value if v not in choices]
    if unknown:
        return f"names {_show(unknown[0])}, which is not one of {listed}: pick among those, or [] for none"
    twice = next((v for i, v in enumerate(value) if v in list(value)[:i]), None)
    return None if twice is None else f"names {twice} twice: list each once"


def _in_range(value: float, rule: Rule) -> bool:
    return (
        (rule.ge is None or value >= rule.ge)
        and (rule.gt is None or value > rule.gt)
        and (rule.le is None or value <= rule.le)
        and (rule.lt is None or value < rule.lt)
    )


def _bounds(rule: Rule) -> str:
    pairs = ((">=", rule.ge), (">", rule.gt), ("<=", rule.le), ("<", rule.lt))
    parts = [f"{op} {_num(b)}" for op, b in pairs if b is not None]
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
        value = OmegaConf.to_container(value, resolve=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_show, value)) + "]"
    if isinstance(value, dict):
        return str(value)
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
