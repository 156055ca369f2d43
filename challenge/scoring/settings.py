"""`scorer.*` resolved and checked once: everything that can change a result, and nothing else.

A frozen dataclass, so that its hash keys the result cache, and plain values only, so that the
Codabench bundle can ship it to the ingestion and scoring programs in a JSON file.

It is also the scorer's schema, the one place where each value's default, type and range are written:
a field's metadata holds its config key and its rule (challenge.checks.Rule). conf/scorer/default.yaml
holds the same defaults, with their documentation (tests/test_checks.py holds the two equal); the
sandbox's Limits take theirs from here; challenge.checks checks the command line with these rules, and
`from_config` reads a config through them, so each bad value is refused in one line, in the same words.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable

from challenge.checks import ABSENT, Rule, checked
from challenge.errors import ChallengeError
from challenge.scoring.gpu import DEVICES, resolve_device
from challenge.scoring.sandbox.types import ISOLATION_MODES, Limits

if TYPE_CHECKING:
    from omegaconf import DictConfig

# The per-example attacks the judge reports beside F (challenge.scoring.attacks, docs/metrics.md): U-LiRA's
# Gaussian likelihood ratio, KLoM (KL divergence of the confidences' histograms), and each example's AUC.
ATTACKS = ("ulira", "klom", "auc")
_LIMITS = ("memory_mb", "file_size_mb", "log_cap_bytes", "max_processes", "scratch_mb")  # the fields the sandbox takes


def setting(
    rule: Rule,
    default: Any = MISSING,
    key: str | None = None,
    follows: str | None = None,
    resolve: Callable[[Any], Any] | None = None,
) -> Any:
    """A field read from the config: `key` (scorer.<name> unless given) under `rule`, `default` when the config
    lacks the key; `follows`: the key that conf/scorer/default.yaml interpolates instead of a default of its own;
    `resolve`: what turns the checked value into the field's."""
    meta = {"key": key, "rule": rule, "follows": follows, "resolve": resolve}
    return field(default=default, metadata=meta)


# Scorer keys that change no result, so no field (the result cache is keyed by the fields): key -> (default, rule).
APART: dict[str, tuple[Any, Rule]] = {"scorer.fresh": (False, Rule(bool))}  # true: forget the file's runs, score anew


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The scorer's values; keyword-only, so that a field with a default may come before one without."""

    n_runs: int = setting(Rule(int, ge=3), follows="pool.size")  # the metric compares distributions: it needs >= 3
    first_seed: int = setting(Rule(int, ge=0), 0)
    # run i starts from original i mod this many (conf/pool/default.yaml); at most n_runs, checked in from_config
    originals: int = setting(Rule(int, ge=1), 1, key="pool.originals")
    budget_fraction: float = setting(Rule(float, gt=0, le=10), 0.2)  # 0 lets no run finish; over 10x is a typo
    # a fixed budget in the clock's seconds instead of a priced one; null: budget_fraction decides
    budget_seconds: float | None = setting(Rule(float, gt=0, nullable=True), None)
    budget_cap: float = setting(Rule(float, ge=1), 3.0)  # one run is stopped at once past this many budgets
    wall_slack: float = setting(Rule(float, ge=1), 3.0)  # ... and, when it idles, past this many caps by the wall clock
    calibration_steps: int = setting(Rule(int, ge=1), 30)
    startup_seconds: float = setting(Rule(float, gt=0), 600.0)
    memory_mb: int | None = setting(Rule(int, ge=1, nullable=True), 8192)  # null: no limit
    file_size_mb: int | None = setting(Rule(int, ge=1, nullable=True), 1024)  # null: no limit
    log_cap_bytes: int = setting(Rule(int, ge=1), 1 << 20)
    n_bootstrap: int = setting(Rule(int, ge=0), 200)  # 0: no confidence interval
    # the attacks computed beside F, each with F's interval (a tuple, so that Settings stays hashable); (): none
    attacks: tuple[str, ...] = setting(Rule(list, choices=ATTACKS), ATTACKS, resolve=tuple)
    isolation: str = setting(Rule(str, choices=ISOLATION_MODES), "auto")
    threads: int = setting(Rule(int, ge=1), 1)  # fixed: the thread count changes a model's output bits
    batch_size: int = setting(Rule(int, ge=1), key="data.batch_size")
    eval_batch_size: int = setting(Rule(int, ge=1), key="data.eval_batch_size")
    budget_exempt: bool = False  # not a config key: see challenge.scoring.context.budget_exempt
    # processes and threads of the child at once (see challenge.scoring.sandbox); null: no cap; below 4 not even
    # bubblewrap and the interpreter start
    max_processes: int | None = setting(Rule(int, ge=4, nullable=True), 64)
    # each of the child's RAM-backed folders, and the disk beside its runs' weights; null: no cap
    scratch_mb: int | None = setting(Rule(int, ge=1, nullable=True), 2048)
    # "cpu" or "cuda", resolved once from scorer.device (challenge.scoring.gpu): the runs and the evaluation
    device: str = setting(
        Rule(str, choices=DEVICES, fix="set it to auto (CUDA when present) or cpu"),
        "cpu",
        follows="device",
        resolve=resolve_device,
    )

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        """Every key the scorer reads, with its rule, in the fields' order."""
        return {**{_key(f): f.metadata["rule"] for f in _read(cls)}, **{k: rule for k, (_, rule) in APART.items()}}

    @classmethod
    def default(cls, name: str) -> Any:
        """A field's default (the sandbox's Limits are made with the scorer's)."""
        return cls.__dataclass_fields__[name].default

    @classmethod
    def default_limits(cls, **changes: Any) -> Limits:
        """The sandbox's limits at the scorer's defaults, with `changes` (e.g. max_processes=None)."""
        return Limits(**{**{name: cls.default(name) for name in _LIMITS}, **changes})

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Settings:
        """Each value checked (type, range) and turned into its field's; a key the config lacks takes the default."""
        settings = cls(**{f.name: _value(cfg, f) for f in _read(cls)})
        if settings.originals > settings.n_runs:
            raise ChallengeError(
                f"pool.originals={settings.originals} is more than scorer.n_runs={settings.n_runs}: run i starts from "
                f"original i mod {settings.originals}, so some would never be used; set pool.originals to at most "
                f"{settings.n_runs}"
            )
        return settings

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Settings":
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def limits(self) -> Limits:
        return Limits(**{name: getattr(self, name) for name in _LIMITS})

    def rule_text(self) -> str:
        if self.budget_seconds is not None:
            return f"{self.budget_seconds:g} s per run (scorer.budget_seconds)"
        return (
            f"{self.budget_fraction:.0%} of what retraining from scratch costs, priced on the scoring machine "
            "before the file is imported"
        )

    def wall_estimate(self, mean_retrain_seconds: float) -> float:
        """Seconds of wall clock the runs may take at most, from the pool's own build times (for time limits)."""
        per_run = (
            self.budget_seconds if self.budget_seconds is not None else self.budget_fraction * mean_retrain_seconds
        )
        return self.n_runs * per_run * self.wall_slack

    def seed(self, index: int) -> int:
        return self.first_seed + index


def _read(cls: type) -> list[Field]:
    """The fields read from the config (all but budget_exempt)."""
    return [f for f in fields(cls) if "rule" in f.metadata]


def _key(f: Field) -> str:
    return f.metadata["key"] or f"scorer.{f.name}"


def _value(cfg: DictConfig, f: Field) -> Any:
    """One field's value from the config: checked by its rule, then resolved (a float key's int made a float)."""
    key, rule, resolve = _key(f), f.metadata["rule"], f.metadata["resolve"]
    value = checked(cfg, key, rule)
    if value is ABSENT:
        if f.default is MISSING:
            raise ChallengeError(f"{key} is required: add {key}=... to the command")
        return f.default
    if resolve is not None:
        return resolve(value)
    return float(value) if rule.kind is float and value is not None else value
