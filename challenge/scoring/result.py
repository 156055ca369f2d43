"""result.json as types: what a scoring found, written and read here only.

Every reader of a result (the terminal table, reports, W&B, the competition's store and leaderboard,
`challenge compare`, tune) takes a `Result`; none reads result.json by string keys. The JSON keys are
the field names, in field order, so the file reads as before (docs name its sections), with a
`schema_version` first: a file of another version (or of none: written before the kit had one) is
refused with one line naming it and the fix, never half-read. Bump SCHEMA_VERSION with any change of
shape, and challenge.__version__ with it, so that the caches (keyed by the pool's fingerprint, which
holds the kit's version) are not reused.

A rejected submission is a Result too: its status, message and what was known before the verdict (submission,
pool, settings, params; the sandbox and the price of a retrain once the child ran), None for what was measured.
A leaderboard's row is made of a Result in one place: challenge.scoring.row."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import challenge
from challenge.errors import ChallengeError
from challenge.files import write_atomic
from challenge.scoring.collateral import CollateralF
from challenge.scoring.params import Params
from challenge.scoring.settings import Settings

SCHEMA_VERSION = 5  # 3: the attacks, the strata, the `scenario` section; 4: score.collateral; 5: the clean model
RESULT_FILE = "result.json"
RESCORE = "re-score it with `challenge score FILE.py scorer.fresh=true` to rewrite it"


class ResultError(ChallengeError):
    """A result.json (or a stored result) this kit cannot read: one line naming it and the fix."""


# -- the sections ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Submission:
    path: str
    sha256: str | None  # None when there was no file to hash


@dataclass(frozen=True)
class PoolInfo:
    """The pool the submission was judged against (challenge.pool.Pool): its fingerprint, folder and size."""

    fingerprint: str
    root: str
    models: int


@dataclass(frozen=True)
class ULiRA:
    """U-LiRA (challenge.scoring.attacks): held-out Gaussian likelihood ratios, 0.5 balanced accuracy at chance."""

    balanced_accuracy: float  # per example, over its N held-out pairs; mean over examples
    balanced_accuracy_ci: list[float] | None
    auc: float  # pooled over every example's held-out scores
    tpr_at_fpr: dict[str, float]  # pooled, at each low false-positive rate ("0.01", "0.05")


@dataclass(frozen=True)
class KLoM:
    """KL(unlearned || retrained) of each example's confidence histograms; 0 when the two sides are identical."""

    mean: float
    mean_ci: list[float] | None
    median: float
    bins: int  # ceil(sqrt(N)) equal bins over each example's joint range
    smoothing: float  # added to every bin's count


@dataclass(frozen=True)
class ExampleAUC:
    """Each example's AUC, unlearned against retrained, folded as max(AUC, 1 - AUC); mean over examples."""

    mean_fold: float
    mean_fold_ci: list[float] | None
    chance: float  # the fold's expected value for identically distributed sides at this N


@dataclass(frozen=True)
class Attacks:
    """The per-example attacks of scorer.attacks, each None unless asked for, with F's interval method."""

    ulira: ULiRA | None = None
    klom: KLoM | None = None
    auc: ExampleAUC | None = None
    ci_method: str | None = None


@dataclass(frozen=True)
class Ceiling:
    """What retraining scores against the reference (challenge.scoring.sections.ceiling): F's ceiling, the attacks'."""

    forget_quality: float
    forget_quality_ci: list[float] | None
    final_score: float
    n_models: int
    n_examples: int
    source: str
    attacks: Attacks | None = None


@dataclass(frozen=True)
class Stratum:
    name: str  # low, mid, high
    n_examples: int
    memorisation: list[float]  # its examples' lowest and highest memorisation
    forget_quality: float
    forget_quality_ci: list[float] | None


@dataclass(frozen=True)
class Strata:
    """F within terciles of memorisation (challenge.scoring.attacks.strata)."""

    measure: str
    strata: list[Stratum]


@dataclass(frozen=True)
class Score:
    """The metric's terms (challenge.scoring.metric.ForgettingResult without its per-example epsilons), the
    membership-inference audit (challenge.scoring.judge.score), the pool's ceiling, the per-example attacks, F per
    memorisation stratum (challenge.scoring.attacks) and F on retain and test (challenge.scoring.collateral)."""

    forget_quality: float
    final_score: float
    retain_acc_unlearned: float
    retain_acc_retrained: float
    test_acc_unlearned: float
    test_acc_retrained: float
    retain_ratio: float
    test_ratio: float
    n_models: int
    n_examples: int
    delta: float
    thresholds: str
    forget_quality_ci: list[float] | None
    ci_level: float
    ci_method: str | None
    n_bootstrap: int
    seed: int
    mia: float | None
    mia_per_run: list[float]
    mia_note: str
    ceiling: Ceiling | None = None
    attacks: Attacks | None = None
    strata: Strata | None = None
    collateral: list[CollateralF] | None = None  # None where the pool kept no sample


@dataclass(frozen=True)
class Calibration:
    """The child's price of a retrain, timed before the submission was imported (challenge.scoring.budget)."""

    clock: str
    per_step_seconds: float
    steps_timed: int
    steps_per_retrain: int
    retrain_seconds: float


@dataclass(frozen=True)
class Budget:
    """The price of a retrain, the rule, and each run's cost against it, in the clock's seconds.

    A rejected submission's budget holds only the calibration its child made before the verdict
    (None where it made none); everything else is then None or empty."""

    per_run: float | None = None
    rule: str | None = None
    clock: str | None = None
    cap: float | None = None
    wall_slack: float | None = None
    retrain_seconds: float | None = None
    exempt: bool | None = None
    fraction: float | None = None
    total: float | None = None
    calibration: Calibration | None = None
    run_cost: list[float] = field(default_factory=list)
    run_wall: list[float] = field(default_factory=list)
    run_kit: list[float] = field(default_factory=list)  # the kit's own part of each run, not in run_cost
    run_budget: list[float] = field(default_factory=list)
    run_fraction: list[float] = field(default_factory=list)
    outside_budgets: float | None = None  # what the child used between the runs: the kit's own, not charged
    used_budgets: float | None = None
    enforced: str | None = None


@dataclass(frozen=True)
class RunRow:
    """One unlearning run as the judge measured it, with its charge."""

    index: int
    seed: int
    retain_acc: float
    forget_acc: float
    test_acc: float
    mia: float | None
    cost: float
    cost_fraction: float


@dataclass(frozen=True)
class Examples:
    """One entry per forget image, in forget-split order: who it is and how well it was forgotten."""

    image_id: list[int]
    person_id: list[int]
    epsilon: list[float]
    unlearned_confidence: list[float]
    retrained_confidence: list[float]


@dataclass(frozen=True)
class ConfidenceSamples:
    """Every model's confidence on a few forget images ([image][model]), to draw unlearned against retrained."""

    forget_index: list[int]
    image_id: list[int]
    epsilon: list[float]
    unlearned: list[list[float]]
    retrained: list[list[float]]


@dataclass(frozen=True)
class Reference:
    """The original's and the retrained models' accuracy and confidence per part (challenge.pool.reference)."""

    original: dict[str, dict[str, float | None]]
    retrained: dict[str, dict[str, float | None]]
    models: int
    missing: str | None


@dataclass(frozen=True)
class ScenarioFigure:
    """One figure of the scenario's own: the originals', the retrained pool's and the unlearned runs' means, and a
    corrective scenario's clean model's (None where a file lacks it, or the scenario has no clean model)."""

    original: float | None
    retrained: float | None
    unlearned: float | None
    clean: float | None = None


@dataclass(frozen=True)
class Scenario:
    """The forget scenario (challenge.data.scenarios) and its own figures (challenge.scoring.scenario)."""

    name: str
    settings: dict[str, Any]  # the scenario's fields, as the split manifest records them
    sizes: dict[str, int]  # images per part: train, forget, retain, test, focus
    focus: str  # what the focus images are (the forgotten class's test images, …); "" without any
    headline: str  # the figure the result table shows: focus_acc where there are focus images, else forget_acc
    figures: dict[str, ScenarioFigure]  # forget_acc, test_acc, and focus_acc where there are focus images


@dataclass(frozen=True)
class Leak:
    """A forget image of highest ε, with a thumbnail (challenge.reports.leaks)."""

    image_id: int
    person_id: int
    epsilon: float
    unlearned_confidence: float
    retrained_confidence: float
    png: str  # base64


@dataclass(frozen=True)
class Result:
    """What `challenge score` found about one file; result.json is `to_json()` of it."""

    status: str  # "scored", or the verdict (challenge.errors.Verdict)
    message: str
    submission: Submission
    pool: PoolInfo
    settings: Settings
    params: Params
    sandbox: dict[str, str] | None = None  # the protections in force (challenge.scoring.sandbox.Protections)
    logs: dict[str, str] | None = None  # the child's stdout and stderr files
    score: Score | None = None
    budget: Budget | None = None
    runs: list[RunRow] = field(default_factory=list)
    examples: Examples | None = None
    confidence_samples: ConfidenceSamples | None = None
    reference: Reference | None = None
    leaks: list[Leak] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)  # seconds per stage, for the overhead figures
    forget_confidences: str | None = None  # the file beside result.json with every model's forget confidences
    scenario: Scenario | None = None  # which images were forgotten, and the scenario's own figures
    schema_version: int = SCHEMA_VERSION

    @property
    def scored(self) -> bool:
        return self.status == "scored"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; schema_version first, so a reader of any version finds it at once."""
        out = _encode(self)
        return {"schema_version": out.pop("schema_version"), **out}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def write(self, path: Path) -> None:
        write_atomic(path, self.to_json())

    @classmethod
    def from_json(cls, text: str, where: str, fix: str = RESCORE) -> "Result":
        """The Result in `text`; ResultError naming `where` and `fix` for anything else."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ResultError(f"{where} is not JSON ({e}): {fix}") from None
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != SCHEMA_VERSION:
            found = "no schema version (an earlier kit's)" if version is None else f"schema version {version}"
            raise ResultError(
                f"{where} is a result of {found}, and kit {challenge.__version__} reads schema version "
                f"{SCHEMA_VERSION}: {fix}"
            )
        try:
            return _decode(cls, data, "")
        except _Mismatch as e:
            problem = f"does not hold a result of schema version {SCHEMA_VERSION} ({e})"
            raise ResultError(f"{where} {problem}: {fix}") from None

    @classmethod
    def read(cls, path: Path) -> "Result":
        try:
            text = path.read_text()
        except OSError as e:
            fix = "give the result.json that `challenge score` wrote"
            raise ResultError(f"cannot read {path} ({e.strerror or e}): {fix}") from None
        return cls.from_json(text, str(path))


# -- one encoder, one decoder -------------------------------------------------------------------------
class _Mismatch(Exception):
    """Where the data and the types part, e.g. `score.ceiling: missing key 'source'`."""


def _encode(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def decode(kind: Any, data: Any) -> Any:
    """Parsed JSON as `kind` (a section's dataclass), e.g. a cached Ceiling; ValueError where they part."""
    try:
        return _decode(kind, data, "")
    except _Mismatch as e:
        raise ValueError(str(e)) from None


def _decode(kind: Any, data: Any, where: str) -> Any:
    """`data` (parsed JSON) as `kind`: dataclasses key for key, lists and dicts item for item."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(inner, data, where)
    if is_dataclass(kind):
        return _decode_dataclass(kind, data, where)
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise _Mismatch(f"{where or 'the result'}: a list was expected, not {type(data).__name__}")
        items = [_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(data)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(data, dict):
            raise _Mismatch(f"{where or 'the result'}: an object was expected, not {type(data).__name__}")
        return {k: _decode(args[1], v, f"{where}.{k}") for k, v in data.items()}
    return data


def _decode_dataclass(kind: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise _Mismatch(f"{where or 'the result'}: an object was expected, not {type(data).__name__}")
    hints = typing.get_type_hints(kind)
    names = [f.name for f in fields(kind)]
    missing, unknown = [n for n in names if n not in data], [k for k in data if k not in names]
    if missing or unknown:
        what = f"missing key {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
        raise _Mismatch(f"{where}: {what}" if where else what)
    return kind(**{n: _decode(hints[n], data[n], f"{where}.{n}" if where else n) for n in names})
