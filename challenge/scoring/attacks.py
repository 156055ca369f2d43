"""Per-example attacks beside F, from the same [N models, K examples] confidences, and F per memorisation stratum.

F asks, per forget example, how well the best threshold rule tells the N unlearned from the N retrained
models' confidences. Other papers ask it other ways; each is computed here from the same arrays, per
example, and reported as a mean over examples with F's own interval (the two-way bootstrap of
challenge.scoring.resampling.replicate_means: the same draws of models and examples, median-shifted):

* ``ulira``: U-LiRA (Hayes et al. 2024, "Inexact unlearning needs more careful evaluations"). Per example,
  a Gaussian is fitted to N - 1 unlearned and to N - 1 retrained confidences; the held-out model of each side
  is scored by the log-likelihood ratio, rotating over all N held-out pairs. Reported: the balanced accuracy
  of the sign of the ratio, averaged over examples (0.5 at chance), and, pooled over every example's N + N
  held-out scores, the AUC and the TPR at FPR 1% and 5%.
* ``klom``: KLoM (Georgiev et al. 2025, "Attribute-to-Delete"): per example, KL(unlearned || retrained) between
  histograms of the two sides' confidences (the scorer's logit-scaled confidences stand in for margins) on
  ceil(sqrt(N)) equal bins over the example's joint range, each count plus 0.5 (Jeffreys), so that empty bins
  stay finite. Mean and median over examples; 0 when the two sides are identical.
* ``auc``: per example, the Mann-Whitney AUC of unlearned against retrained confidences, folded as
  max(AUC, 1 - AUC) (0.5 at chance, 1 when separated); mean over examples. Its expected value when the sides
  are identically distributed is above 0.5 at small N (``chance``).

Strata: forget examples split into terciles of memorisation, the original model's confidence minus the
retrained models' mean confidence, with F (and its interval) within each.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from challenge.scoring.epsilon import _check_confidences, _epsilons
from challenge.scoring.metric import CI_METHOD, ForgettingResult, _points
from challenge.scoring.resampling import Resamples, replicate_means, shifted_interval
from challenge.scoring.result import Attacks, ExampleAUC, KLoM, Strata, Stratum, ULiRA
from challenge.scoring.settings import ATTACKS

LOW_FPR = (0.01, 0.05)  # U-LiRA's TPR is reported at these false-positive rates
VARIANCE_FLOOR = 1e-6  # a Gaussian fitted to identical confidences (saturated ones) gets this variance
SMOOTHING = 0.5  # KLoM: added to every bin's count (Jeffreys), so that KL stays finite
STRATA = ("low", "mid", "high")  # memorisation terciles
MEMORISATION = "original's forget confidence minus the retrained models' mean confidence"


def check_attacks(names: Any) -> tuple[str, ...]:
    """The attack names as given, or ValueError naming the unknown one and the valid ones."""
    for name in names:
        if name not in ATTACKS:
            raise ValueError(f"unknown attack {name!r}: the attacks are {', '.join(ATTACKS)}")
    return tuple(names)


# -- the per-example statistics ----------------------------------------------------------------------
def _held_out_gaussians(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of each column without row i, for every i: [N, C] each (centred first, so that
    confidences near the +-103.6 saturation keep their small spreads)."""
    n = x.shape[0]
    xc = x - x.mean(axis=0)
    total, squares = xc.sum(axis=0), (xc * xc).sum(axis=0)
    mean = (total - xc) / (n - 1)
    var = (squares - xc * xc - (n - 1) * mean * mean) / (n - 2)
    return mean + x.mean(axis=0), np.maximum(var, VARIANCE_FLOOR)


def _log_ratio(x: np.ndarray, fit_u: tuple[np.ndarray, np.ndarray], fit_r: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """log N(x; unlearned fit) - log N(x; retrained fit): positive says 'unlearned'."""
    (mu_u, var_u), (mu_r, var_r) = fit_u, fit_r
    return 0.5 * (np.log(var_r / var_u) + (x - mu_r) ** 2 / var_r - (x - mu_u) ** 2 / var_u)


def ulira_scores(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every held-out model's log-likelihood ratio, [N, C] per side: pair i is scored by the fits without
    unlearned model i and retrained model i."""
    fit_u, fit_r = _held_out_gaussians(unlearned), _held_out_gaussians(retrained)
    return _log_ratio(unlearned, fit_u, fit_r), _log_ratio(retrained, fit_u, fit_r)


def ulira_accuracy(unlearned: np.ndarray, retrained: np.ndarray) -> np.ndarray:
    """Per example, the balanced accuracy of 'ratio > 0 means unlearned' on the held-out pairs (a tie counts half)."""
    su, sr = ulira_scores(unlearned, retrained)
    hit_u = np.mean((su > 0) + 0.5 * (su == 0), axis=0)
    hit_r = np.mean((sr < 0) + 0.5 * (sr == 0), axis=0)
    return 0.5 * (hit_u + hit_r)


def auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Per column, the Mann-Whitney AUC P(pos > neg) + P(pos = neg) / 2, from mid-ranks: [C]. Each column is
    sorted as a contiguous row (1.3x faster than sorting down the columns of [2N, C] at N = 512)."""
    n, m = len(pos), len(neg)
    both = np.ascontiguousarray(np.concatenate([pos, neg]).T)  # [C, n + m]
    order = np.argsort(both, axis=1, kind="stable")
    v = np.take_along_axis(both, order, axis=1)
    places, edge = np.arange(n + m)[None, :], np.ones((len(v), 1), bool)
    differs = v[:, 1:] != v[:, :-1]
    first = np.maximum.accumulate(np.where(np.hstack([edge, differs]), places, 0), axis=1)
    last = np.minimum.accumulate(np.where(np.hstack([differs, edge]), places, n + m - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = (first + last) / 2.0 + 1.0  # ties share the mean of their ranks
    rank_sum = np.where(order < n, ranks, 0.0).sum(axis=1)
    return (rank_sum - n * (n + 1) / 2.0) / (n * m)


def auc_fold(unlearned: np.ndarray, retrained: np.ndarray) -> np.ndarray:
    """Per example, max(AUC, 1 - AUC) of unlearned against retrained confidences."""
    a = auc(unlearned, retrained)
    return np.maximum(a, 1.0 - a)


def auc_fold_chance(n: int) -> float:
    """The fold's expected value when both sides are identically distributed (normal approximation of the
    AUC, no ties): 0.5 + sqrt(2 / pi) * its standard deviation, sqrt((2N + 1) / (12 N^2))."""
    return 0.5 + math.sqrt(2.0 / math.pi) * math.sqrt((2 * n + 1) / (12.0 * n * n))


def klom_bins(n: int) -> int:
    return max(2, math.ceil(math.sqrt(n)))


def klom(unlearned: np.ndarray, retrained: np.ndarray) -> np.ndarray:
    """Per example, KL(unlearned || retrained) of the two sides' smoothed histograms on shared bins."""
    n, c = unlearned.shape
    bins = klom_bins(n)
    lo = np.minimum(unlearned.min(axis=0), retrained.min(axis=0))
    width = np.maximum(unlearned.max(axis=0), retrained.max(axis=0)) - lo
    width = np.where(width > 0, width, 1.0)  # all 2N equal: one bin holds both sides, KL 0

    def histogram(x: np.ndarray) -> np.ndarray:
        b = np.clip(np.floor((x - lo) / width * bins), 0, bins - 1).astype(np.int64)
        counts = np.bincount((b + bins * np.arange(c)).ravel(), minlength=bins * c).reshape(c, bins)
        return (counts + SMOOTHING) / (n + SMOOTHING * bins)

    p, q = histogram(unlearned), histogram(retrained)
    return (p * np.log(p / q)).sum(axis=1)


STATISTICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "ulira": ulira_accuracy,
    "klom": klom,
    "auc": auc_fold,
}
BOUNDS = {"ulira": (0.0, 1.0), "klom": (0.0, math.inf), "auc": (0.5, 1.0)}


# -- the sections ------------------------------------------------------------------------------------
def _pooled(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[float, dict[str, float]]:
    """U-LiRA's pooled AUC and TPR at each LOW_FPR over every example's held-out scores. The threshold
    for a rate a lets at most floor(a * count) retrained scores above it, ties counted against the attack."""
    su, sr = (s.ravel() for s in ulira_scores(unlearned, retrained))
    pooled_auc = float(auc(su[:, None], sr[:, None])[0])
    negatives = np.sort(sr)[::-1]
    tpr = {}
    for rate in LOW_FPR:
        threshold = negatives[min(int(math.floor(rate * len(sr))), len(sr) - 1)]
        tpr[f"{rate:g}"] = float(np.mean(su > threshold))
    return pooled_auc, tpr


def attacks(
    unlearned: np.ndarray, retrained: np.ndarray, names: tuple[str, ...], metric: ForgettingResult
) -> Attacks | None:
    """The named attacks on the [N, K] confidences that gave `metric` (checked again: one line), each with F's interval:
    the same draws (Resamples.seeded with F's seed and count), so that one replicate resamples every number alike."""
    names = check_attacks(names)
    if not names:
        return None
    unlearned, retrained = _check_confidences(unlearned, retrained)
    n_bootstrap, ci_level, seed = metric.n_bootstrap, metric.ci_level, metric.seed
    values = np.stack([STATISTICS[a](unlearned, retrained) for a in names])  # [A, K]
    means = values.mean(axis=1)
    cis: list[list[float] | None] = [None] * len(names)
    if n_bootstrap:
        draws = Resamples.seeded(seed, *unlearned.shape, n_bootstrap)
        reps = replicate_means(unlearned, retrained, draws, lambda u, r: np.stack([STATISTICS[a](u, r) for a in names]))
        cis = [list(shifted_interval(reps[:, i], means[i], ci_level, BOUNDS[a])) for i, a in enumerate(names)]
    got = {a: (float(m), ci, values[i]) for i, (a, m, ci) in enumerate(zip(names, means, cis))}
    out: dict[str, Any] = {}
    if "ulira" in got:
        pooled_auc, tpr = _pooled(unlearned, retrained)
        mean, ci, _ = got["ulira"]
        out["ulira"] = ULiRA(mean, ci, pooled_auc, tpr)
    if "klom" in got:
        mean, ci, per = got["klom"]
        out["klom"] = KLoM(mean, ci, float(np.median(per)), klom_bins(len(unlearned)), SMOOTHING)
    if "auc" in got:
        mean, ci, _ = got["auc"]
        out["auc"] = ExampleAUC(mean, ci, auc_fold_chance(len(unlearned)))
    return Attacks(**out, ci_method=CI_METHOD if n_bootstrap else None)


def memorisation_groups(original: np.ndarray | None, retrained: np.ndarray) -> np.ndarray | None:
    """Each forget example's tercile (0 low, 1 mid, 2 high) of the original's confidence minus the retrained
    models' mean: equal thirds by rank, ties broken by forget-split order. None without the original's
    confidences or with fewer than 3 examples."""
    k = retrained.shape[1]
    if original is None or k < len(STRATA):
        return None
    original = np.asarray(original, dtype=np.float64)
    if original.shape != (k,):
        raise ValueError(f"original has forget confidences of shape {original.shape}; the models score {k} examples")
    groups = np.empty(k, np.int64)
    groups[np.argsort(original - retrained.mean(axis=0), kind="stable")] = np.arange(k) * len(STRATA) // k
    return groups


def strata(
    unlearned: np.ndarray, retrained: np.ndarray, original: np.ndarray | None, metric: ForgettingResult
) -> Strata | None:
    """F within each memorisation tercile (None where ``memorisation_groups`` is). The intervals resample as
    F's does (its draws), each tercile's examples among the drawn ones: from F's own pass where the metric
    was given these groups (``evaluate_forgetting(groups=...)``), else from one more pass."""
    unlearned, retrained = _check_confidences(unlearned, retrained)
    groups = memorisation_groups(original, retrained)
    if groups is None:
        return None
    memo = np.asarray(original, dtype=np.float64) - retrained.mean(axis=0)
    points = _points(metric.epsilons, len(unlearned))
    cis: list[list[float] | None] = [None] * len(STRATA)
    if metric.n_bootstrap:
        if metric.group_replicates is not None and np.array_equal(metric.groups, groups):
            reps = metric.group_replicates
        else:
            n = len(unlearned)
            draws = Resamples.seeded(metric.seed, *unlearned.shape, metric.n_bootstrap)
            per = lambda u, r: _points(_epsilons(u, r, metric.delta, metric.thresholds), n)  # noqa: E731
            reps = replicate_means(unlearned, retrained, draws, per, groups)[:, 0, :]  # [B, G]
        cis = [
            _group_interval(reps[:, g], float(points[groups == g].mean()), metric.ci_level) for g in range(len(STRATA))
        ]
    rows = [
        Stratum(
            name,
            int(np.count_nonzero(groups == g)),
            [float(memo[groups == g].min()), float(memo[groups == g].max())],
            float(points[groups == g].mean()),
            cis[g],
        )
        for g, name in enumerate(STRATA)
    ]
    return Strata(MEMORISATION, rows)


def _group_interval(reps: np.ndarray, centre: float, ci_level: float) -> list[float]:
    """F's interval within a group, over the replicates that drew any of its examples."""
    return list(shifted_interval(reps[~np.isnan(reps)], centre, ci_level))
