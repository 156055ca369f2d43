"""The competition's scores from per-example epsilons: F, the final score, its interval, and the MIA audit.

The per-example epsilon itself (the 2023 scorer's threshold search, reproduced bit for bit and
vectorised) is challenge.scoring.epsilon; this module turns model outputs into the confidences it
compares, and epsilons into the leaderboard's numbers. Where the kit departs from the published
code: an example where every rule is discarded gets epsilon 0 instead of crashing the scorer, and
inputs are validated (at least 3 models, equal model counts, finite values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from challenge.scoring.epsilon import (
    _LOG_FLOOR,
    DELTA,
    EPSILON_CAP,
    THRESHOLD_MODES,
    _check_confidences,
    _check_options,
    _epsilons,
    _to_numpy,
    per_example_epsilon,
)
from challenge.scoring.resampling import (
    PerExample,
    Resamples,
    replicate_means,
    replicate_means_by_group,
    shifted_interval,
)

__all__ = [
    "CI_METHOD",
    "DELTA",
    "EPSILON_CAP",
    "THRESHOLD_MODES",
    "ForgettingResult",
    "cross_entropy_losses",
    "evaluate_forgetting",
    "final_score",
    "forget_score",
    "logit_scaled_confidence",
    "membership_inference_audit",
    "per_example_epsilon",
    "replicate_scores",
]


# --------------------------------------------------------------------------- confidences


def _logits_and_targets(logits: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """float64 copy of the logits (the published code shifts its input in place; we must not)."""
    z = np.array(_to_numpy(logits), dtype=np.float64)
    y = _to_numpy(targets)
    if z.ndim != 2:
        raise ValueError(f"logits must be a 2-D array [examples, classes]; got {z.ndim}-D with shape {z.shape}")
    if y.ndim != 1 or len(y) != len(z):
        raise ValueError(
            f"targets must be a 1-D array with one label per row of logits ({len(z)}); got shape {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"targets must be integer class labels; got dtype {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(
            f"targets must lie in [0, {z.shape[1] - 1}] for {z.shape[1]} classes; got {y.min()}..{y.max()}"
        )
    if not np.isfinite(z).all():
        raise ValueError(f"logits contain {np.count_nonzero(~np.isfinite(z))} NaN or infinite values")
    return z, y.astype(np.intp)


def logit_scaled_confidence(logits: Any, targets: Any) -> np.ndarray:
    """log p(y) - log(1 - p(y)) exactly as the scorer computes it (LiRA's stable form), float64.

    1 - p(y) is summed from the other classes rather than subtracted from 1, so very confident
    examples keep their resolution. The 1e-45 floor inside both logs is what makes the scale
    saturate at about +-103.6; it is kept so that scores stay comparable with the competition's.
    """
    z, y = _logits_and_targets(logits, targets)
    rows = np.arange(len(y))
    with np.errstate(over="ignore"):  # a gap beyond the float range becomes exp(-inf) = 0, not NaN
        z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)  # the largest logit contributes exp(0) = 1: never 0 / 0
    correct = p[rows, y]
    p[rows, y] = 0.0
    return np.log(correct + _LOG_FLOOR) - np.log(p.sum(axis=1) + _LOG_FLOOR)


def cross_entropy_losses(logits: Any, targets: Any) -> np.ndarray:
    """Per-example cross-entropy in float64 (log-sum-exp form), the MIA's input."""
    z, y = _logits_and_targets(logits, targets)
    with np.errstate(over="ignore"):
        z -= z.max(axis=1, keepdims=True)
    return np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]


# --------------------------------------------------------------------------- scores


def forget_score(eps: Any, n_models: int) -> float:
    """F: mean points over examples, 1 for epsilon < 0.5, halving every 0.5 of epsilon.

    There are 2 * ceil(log(N - 1)) buckets because about log(N - 1) is the largest finite epsilon
    that N models can show (rates of 1/N); an epsilon beyond the last bucket earns nothing.
    """
    e = np.asarray(_to_numpy(eps), dtype=np.float64)
    if e.ndim != 1 or len(e) == 0:
        raise ValueError(f"eps must be a non-empty 1-D array of per-example epsilons; got shape {e.shape}")
    if not np.isfinite(e).all() or (e < 0).any():
        raise ValueError("eps must be finite and non-negative")
    if int(n_models) != n_models or n_models < 3:
        raise ValueError(f"n_models must be an integer of at least 3; got {n_models}")
    points = _points(e, n_models)
    return float(points.sum() / len(e))


def _points(eps: np.ndarray, n_models: int) -> np.ndarray:
    """Each example's points; F is their mean (kept apart so the bootstrap can weight examples)."""
    n_buckets = 2 * int(np.ceil(np.log(n_models - 1)))
    bucket = np.floor(2.0 * eps)  # epsilon < (b + 1) / 2 first holds for b = floor(2 epsilon)
    return np.where(bucket < n_buckets, np.exp2(-np.minimum(bucket, n_buckets)), 0.0)


def final_score(forget_quality: float, ra_u: float, ra_r: float, ta_u: float, ta_r: float) -> float:
    """F x (RA_u / RA_r) x (TA_u / TA_r): forgetting only counts if utility is kept."""
    for name, value in (
        ("retain accuracy of the retrained models", ra_r),
        ("test accuracy of the retrained models", ta_r),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be positive to normalise by; got {value}")
    return float(forget_quality * (ra_u / ra_r) * (ta_u / ta_r))


@dataclass(frozen=True)
class ForgettingResult:
    """Every term of the final score, the per-example epsilons, and a bootstrap interval for F.

    ``forget_quality_ci`` (see ``_bootstrap_ci``) is None when no bootstrap was asked for
    (``n_bootstrap=0``), and ``ci_method`` then too; to tell two submissions on one pool apart,
    compare them paired (challenge.scoring.compare) rather than by whether their intervals overlap.
    """

    forget_quality: float
    final_score: float
    retain_acc_unlearned: float
    retain_acc_retrained: float
    test_acc_unlearned: float
    test_acc_retrained: float
    retain_ratio: float
    test_ratio: float
    epsilons: np.ndarray
    n_models: int
    n_examples: int
    delta: float
    thresholds: str
    forget_quality_ci: tuple[float, float] | None
    ci_level: float
    ci_method: str | None
    n_bootstrap: int
    seed: int
    replicates: np.ndarray | None = None  # F of each bootstrap replicate [B], for paired comparisons
    groups: np.ndarray | None = None  # the example groups of group_replicates
    group_replicates: np.ndarray | None = None  # F within each group of each replicate [B, G], from the same pass

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only, ready for json.dumps; the replicates are kept beside, not in, result.json."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name in ("replicates", "groups", "group_replicates"):
                continue
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = [float(v) for v in value]
            out[name] = value
        return out


def _mean_accuracy(name: str, value: Any) -> float:
    a = np.asarray(_to_numpy(value), dtype=np.float64).ravel()
    if len(a) == 0 or not np.isfinite(a).all() or (a < 0).any() or (a > 1).any():
        raise ValueError(f"{name} must be a non-empty array of per-model accuracies in [0, 1]")
    return float(a.mean())


CI_METHOD = "two-way bootstrap (models and examples), median-shifted"


def replicate_scores(
    unlearned: np.ndarray, retrained: np.ndarray, draws: Resamples, delta: float, thresholds: str
) -> np.ndarray:
    """F of every replicate, [B]: the mean of each drawn example's points (``replicate_means``)."""
    return replicate_means(unlearned, retrained, draws, _points_of(unlearned.shape[0], delta, thresholds))[:, 0]


def _points_of(n: int, delta: float, thresholds: str) -> PerExample:
    return lambda u, r: _points(_epsilons(u, r, delta, thresholds), n)


def _bootstrap_ci(
    unlearned: np.ndarray,
    retrained: np.ndarray,
    forget_quality: float,
    delta: float,
    thresholds: str,
    n_bootstrap: int,
    ci_level: float,
    seed: int,
    groups: np.ndarray | None = None,
) -> tuple[tuple[float, float], np.ndarray, np.ndarray | None]:
    """Interval for F from replicates that resample the unlearned models, the retrained models
    and the forget examples, each with replacement (CI_METHOD); with ``groups``, F within each group of
    examples from the same pass ([B, G]).

    F varies with all three: the submission's runs and the reference runs are random, and the K
    forget examples are a sample of the people one might be asked to forget, so an interval from
    models alone is too narrow whenever examples differ in how well they are forgotten. Resampling
    examples is unbiased for a mean over examples, but a model resample repeats models, repeated
    confidences make the two sides look more separable, and resampled F runs low (by 0.03 or so):
    a plain percentile interval can miss F altogether. The interval therefore keeps the
    replicates' spread and is moved so that their median sits on F. tests/test_metric_coverage.py
    checks that it covers the expected F of known distributions in at least 90% of trials (95.5%
    and 94% in 200), where the models-only interval covers 91% and 78%.
    """
    draws = Resamples.seeded(seed, *unlearned.shape, n_bootstrap)
    points = _points_of(unlearned.shape[0], delta, thresholds)
    if groups is None:
        reps, by_group = replicate_means(unlearned, retrained, draws, points)[:, 0], None
    else:
        overall, grouped = replicate_means_by_group(unlearned, retrained, draws, points, groups)
        reps, by_group = overall[:, 0], grouped[:, 0, :]
    return shifted_interval(reps, forget_quality, ci_level), reps, by_group


def evaluate_forgetting(
    unlearned_conf: Any,
    retrained_conf: Any,
    *,
    retain_acc_unlearned: Any,
    retain_acc_retrained: Any,
    test_acc_unlearned: Any,
    test_acc_retrained: Any,
    delta: float = DELTA,
    n_bootstrap: int = 200,
    ci_level: float = 0.95,
    seed: int = 0,
    thresholds: str = "grid",
    groups: np.ndarray | None = None,
) -> ForgettingResult:
    """The scorer's entry point: F, the final score, and a seeded bootstrap interval for F.

    ``groups`` (an int label per example, e.g. memorisation strata): the same bootstrap pass also gives F
    within each group of every replicate (``group_replicates``), so that their intervals cost no second pass.

    Confidences are [N models, K forget examples] (see ``logit_scaled_confidence``); accuracies
    are per-model arrays whose means enter the score. Each bootstrap replicate costs about 0.6 of
    a full epsilon computation (its distinct examples; 0.14 CPU s for N = 512, K = 1,000); pass
    ``n_bootstrap=0`` to skip it.
    """
    _check_options(delta, thresholds)
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer; got {n_bootstrap}")
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must lie in (0, 1); got {ci_level}")
    u, r = _check_confidences(unlearned_conf, retrained_conf)
    accs = {
        name: _mean_accuracy(name, value)
        for name, value in (
            ("retain_acc_unlearned", retain_acc_unlearned),
            ("retain_acc_retrained", retain_acc_retrained),
            ("test_acc_unlearned", test_acc_unlearned),
            ("test_acc_retrained", test_acc_retrained),
        )
    }
    eps = _epsilons(u, r, delta, thresholds)
    eps.setflags(write=False)
    f = forget_score(eps, u.shape[0])
    total = final_score(f, *accs.values())
    ci, reps, by_group = (
        _bootstrap_ci(u, r, f, delta, thresholds, int(n_bootstrap), ci_level, seed, groups)
        if n_bootstrap
        else (None, None, None)
    )
    return ForgettingResult(
        forget_quality=f,
        final_score=total,
        **accs,
        retain_ratio=accs["retain_acc_unlearned"] / accs["retain_acc_retrained"],
        test_ratio=accs["test_acc_unlearned"] / accs["test_acc_retrained"],
        epsilons=eps,
        n_models=u.shape[0],
        n_examples=u.shape[1],
        delta=float(delta),
        thresholds=thresholds,
        forget_quality_ci=ci,
        ci_level=float(ci_level),
        ci_method=CI_METHOD if n_bootstrap else None,
        n_bootstrap=int(n_bootstrap),
        seed=int(seed),
        replicates=reps,
        groups=groups if by_group is not None else None,
        group_replicates=by_group,
    )


# --------------------------------------------------------------------------- membership inference


def _check_losses(name: str, value: Any) -> np.ndarray:
    a = np.asarray(_to_numpy(value), dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-example losses; got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains {np.count_nonzero(~np.isfinite(a))} NaN or infinite values")
    return a


def membership_inference_audit(forget_losses: Any, test_losses: Any, n_splits: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a logistic-regression attack telling forget from test losses.

    As in the 2023 starting kit: balanced classes (the larger set is subsampled) so that 0.5
    means the losses leak nothing about membership and 1.0 means they give it away.
    """
    forget, test = _check_losses("forget_losses", forget_losses), _check_losses("test_losses", test_losses)
    m = min(len(forget), len(test))
    if m < n_splits or n_splits < 2:
        raise ValueError(
            f"the audit needs n_splits >= 2 and at least n_splits ({n_splits}) losses per set; "
            f"got {len(forget)} forget and {len(test)} test losses"
        )
    rng = np.random.default_rng(seed)
    forget, test = rng.choice(forget, m, replace=False), rng.choice(test, m, replace=False)
    x = np.concatenate([forget, test])[:, None]
    y = np.concatenate([np.ones(m, np.int64), np.zeros(m, np.int64)])
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())
