"""Forgetting quality of the NeurIPS 2023 Machine Unlearning Challenge, reproduced exactly and fast.

The definition is the competition's published scorer (``metric.py`` of
google-deepmind/unlearning_evaluation). For every forget example it treats the N unlearned and
the N retrained models' logit-scaled confidences as samples of two distributions and asks how
well any decision rule from two families tells them apart:

* single thresholds ("confidence >= t is the distribution with the larger median") on a grid of
  100 thresholds per unit over the joint range;
* double thresholds ("confidence in [l, r] is the peakier distribution"): 400 right ends within
  2.0 of the peaky maximum, each with 400 left ends within 2.0 of ``r - width``.

A rule's (FPR, FNR) gives ``max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)``;
rules with exactly one zero rate are discarded, perfect separation counts as infinity, and the
example's epsilon is the best rule's, clipped to [0, 50]. An example whose two spreads differ by
more than 100x gets 50 outright. Points per example halve every 0.5 of epsilon, and F is their mean.

The published code scores the 160,000 double-threshold rules by comparing every model with every
threshold (seconds per example at N = 512). Here each example's confidences are sorted once; the
left ends are recognised as points of a regular lattice, so data counts below all of them are one
pass; right ends with equal counts share their rules, so each distinct rule is scored once; and a
rule's epsilon is one lookup in a table indexed by (false-positive count, true-positive count).
Rates are float32 ``count / N`` and the logs run in float32, as in the published code, so the
fixtures' epsilons are matched bit for bit. Data that sit on a threshold up to rounding (the peaky
minimum always does) are settled by recomputing those thresholds exactly as numpy does.

Where this module departs from the published code: an example where every rule is discarded
(e.g. all 2N confidences identical) gets epsilon 0 instead of crashing the scorer, and inputs are
validated (at least 3 models, equal model counts, finite values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
THRESHOLD_MODES = ("grid", "exact")

_BUFFER = 2.0  # how far the double-threshold grid reaches beyond the peaky distribution
_LEFT = int(math.ceil(2 * _BUFFER * THRESHOLDS_PER_UNIT))  # left ends per right end: 400
_PEAKY_RATIO = 0.01
_LOG_FLOOR = 1e-45  # the scorer's floor inside both logs: saturates confidences at about +-103.6
_MAX_ABS_CONFIDENCE = 1e4  # far above the +-103.6 saturation; keeps the grids' float arithmetic exact
_DISCARDED = np.float32(-1.0)  # table value of rules the scorer discards (below every real epsilon)
_CELLS_PER_CHUNK = 1 << 21  # lattice points or rules held at once: bounds memory to ~50 MB
_MAX_MODELS = 4096  # the epsilon table has (N + 1)^2 float32 entries: 67 MB at this N


# --------------------------------------------------------------------------- confidences


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _logits_and_targets(logits: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """float64 copy of the logits (the published code shifts its input in place; we must not)."""
    z = np.array(_to_numpy(logits), dtype=np.float64)
    y = _to_numpy(targets)
    if z.ndim != 2:
        raise ValueError(f"logits must be a 2-D array [examples, classes]; got {z.ndim}-D with shape {z.shape}")
    if y.ndim != 1 or len(y) != len(z):
        raise ValueError(f"targets must be a 1-D array with one label per row of logits ({len(z)}); got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"targets must be integer class labels; got dtype {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"targets must lie in [0, {z.shape[1] - 1}] for {z.shape[1]} classes; got {y.min()}..{y.max()}")
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


# --------------------------------------------------------------------------- validation


def _check_confidences(unlearned: Any, retrained: Any) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, value in (("unlearned", unlearned), ("retrained", retrained)):
        a = np.asarray(_to_numpy(value), dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array [models, examples]; got {a.ndim}-D with shape {a.shape}")
        if a.shape[0] < 3:
            raise ValueError(f"{name} has {a.shape[0]} models; the metric needs at least 3")
        if a.shape[0] > _MAX_MODELS:
            raise ValueError(f"{name} has {a.shape[0]} models; the metric supports at most {_MAX_MODELS}")
        if a.shape[1] == 0:
            raise ValueError(f"{name} has no examples; give at least one forget example")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains {np.count_nonzero(~np.isfinite(a))} NaN or infinite values")
        if np.abs(a).max() > _MAX_ABS_CONFIDENCE:
            raise ValueError(
                f"{name} has values up to {np.abs(a).max():.3g} in magnitude; logit-scaled confidences lie "
                f"within +-103.7 and the metric accepts at most +-{_MAX_ABS_CONFIDENCE:g}"
            )
        arrays.append(a)
    u, r = arrays
    if u.shape[1] != r.shape[1]:
        raise ValueError(
            f"unlearned has {u.shape[1]} examples but retrained has {r.shape[1]}; both must score the same forget examples"
        )
    if u.shape[0] != r.shape[0]:
        raise ValueError(
            f"unlearned has {u.shape[0]} models but retrained has {r.shape[0]}; the published scorer assumes "
            "the same number of models for both, so give equal counts"
        )
    return u, r


def _check_options(delta: float, thresholds: str) -> None:
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must lie in (0, 1); got {delta}")
    if thresholds not in THRESHOLD_MODES:
        raise ValueError(f"thresholds must be one of {THRESHOLD_MODES}; got {thresholds!r}")


# --------------------------------------------------------------------------- per-example epsilon


def per_example_epsilon(
    unlearned: Any, retrained: Any, delta: float = DELTA, thresholds: str = "grid"
) -> np.ndarray:
    """The scorer's epsilon of each example from [N models, K examples] confidences, float64 [K].

    ``thresholds="grid"`` (default) is the published definition. ``"exact"`` is a variant that
    takes the supremum over every threshold instead of the grid (every cut between observed
    values, every interval between observed values): it searches a superset of the grid's rules
    with the same scoring, so it is never below the grid's epsilon, and it is O(N^2) per example.
    """
    _check_options(delta, thresholds)
    u, r = _check_confidences(unlearned, retrained)
    return _epsilons(u, r, delta, thresholds)


def _epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float, thresholds: str) -> np.ndarray:
    """Orient each example as the scorer does, then take the best rule of both families."""
    n = unlearned.shape[0]
    us = np.ascontiguousarray(np.sort(unlearned, axis=0).T)  # [K, N], each example sorted once
    rs = np.ascontiguousarray(np.sort(retrained, axis=0).T)
    retrained_is_pos = (np.median(rs, axis=1) > np.median(us, axis=1))[:, None]  # ties: unlearned
    pos, neg = np.where(retrained_is_pos, rs, us), np.where(retrained_is_pos, us, rs)
    pos_range, neg_range = pos[:, -1] - pos[:, 0], neg[:, -1] - neg[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 is NaN and, as in the scorer, not capped
        capped = np.minimum(pos_range, neg_range) / np.maximum(pos_range, neg_range) < _PEAKY_RATIO
    # the double-threshold rule calls the smaller spread positive; equal spreads pick `neg`
    peaky_is_neg = (pos_range >= neg_range)[:, None]
    peaky, other = np.where(peaky_is_neg, neg, pos), np.where(peaky_is_neg, pos, neg)

    live = ~capped
    table = _epsilon_table(n, delta)
    if thresholds == "grid":
        single, double = _single_grid(pos[live], neg[live], table), _double_grid(peaky[live], other[live], table)
    else:
        single, double = _single_exact(pos[live], neg[live], table), _double_exact(peaky[live], other[live], table)
    eps = np.full(len(pos), EPSILON_CAP)
    # -1 (every rule discarded; the published code fails there) becomes 0, infinity becomes the cap
    eps[live] = np.clip(np.maximum(single, double), 0.0, EPSILON_CAP)
    return eps


def _epsilon_table(n: int, delta: float) -> np.ndarray:
    """Epsilon of a rule from its counts, flattened at ``false_pos * (n + 1) + true_pos``.

    Counts take only (n + 1)^2 values, so scoring a rule becomes one lookup. The rates are float32
    ``count / n`` and the logs run in float32, exactly like the scorer's float32 means and numpy
    logs, which is what makes bucket edges (multiples of 0.5) fall the same way.
    """
    rate = np.arange(n + 1, dtype=np.float32) / np.float32(n)
    fpr, fnr = rate[:, None], rate[::-1][None, :]  # true_pos = k means fnr = (n - k) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
    eps = np.maximum(eps, np.float32(0.0))  # NaN (both logs undefined) stays NaN
    no_fp, no_fn = fpr == 0, fnr == 0
    eps = np.where(no_fp & no_fn, np.float32(np.inf), eps)
    eps = np.where((no_fp ^ no_fn) | np.isnan(eps), _DISCARDED, eps)
    return eps.astype(np.float32).ravel()


def _count_at_least(sorted_values: np.ndarray, t: np.ndarray) -> np.ndarray:
    return len(sorted_values) - np.searchsorted(sorted_values, t, side="left")


def _single_grid(pos: np.ndarray, neg: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Best single-threshold rule on the scorer's grid.

    The grid comes from torch.linspace as in the scorer: its thresholds are float32 (torch's
    default dtype), so the extreme ones sit slightly inside or outside the data, and that decides
    some rates. It is pinned to float32 so a changed default dtype cannot alter the metric.
    """
    n = pos.shape[1]
    lo, hi = np.minimum(pos[:, 0], neg[:, 0]), np.maximum(pos[:, -1], neg[:, -1])
    counts = np.ceil((hi - lo) * THRESHOLDS_PER_UNIT).astype(np.int64)
    best = np.full(len(pos), _DISCARDED)
    for e in np.flatnonzero(counts):  # identical confidences everywhere leave an empty grid
        t = torch.linspace(float(lo[e]), float(hi[e]), int(counts[e]), dtype=torch.float32).numpy()
        best[e] = table[_count_at_least(neg[e], t) * (n + 1) + _count_at_least(pos[e], t)].max()
    return best


def _double_grid(peaky: np.ndarray, other: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Best double-threshold rule on the scorer's grid, in chunks of examples sharing a grid size."""
    width = peaky[:, -1] - peaky[:, 0]
    lo = (peaky[:, 0] + width) - _BUFFER  # same operations, hence same rounding, as the scorer
    hi = peaky[:, -1] + _BUFFER
    n_right = np.ceil((hi - lo) * THRESHOLDS_PER_UNIT).astype(np.int64)  # 400, or 401 by rounding
    best = np.empty(len(peaky), np.float32)
    for nr in map(int, np.unique(n_right)):
        rows = np.flatnonzero(n_right == nr)
        a, c = _lattice(nr)
        step = max(1, _CELLS_PER_CHUNK // max(a * (nr - 1) + c * _LEFT, nr * _LEFT))
        for s in range(0, len(rows), step):
            sel = rows[s : s + step]
            best[sel] = _double_grid_chunk(peaky[sel], other[sel], width[sel], lo[sel], hi[sel], nr, table)
    return best


def _lattice(n_right: int) -> tuple[int, int]:
    """(a, c) such that left end i of right end j sits at lattice point a*j + c*i, up to rounding.

    Right ends step by 4/(n_right - 1) and left ends by 4/399, so with g = gcd(399, n_right - 1)
    both are whole multiples of (4/399)/c with c = (n_right - 1)/g: one lattice holds all
    160,000 left ends, and the data counts below all of them come from one pass.
    """
    g = math.gcd(_LEFT - 1, n_right - 1)
    return (_LEFT - 1) // g, (n_right - 1) // g


def _left_threshold(start: np.ndarray, stop: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Element i of np.linspace(start, stop, 400), with numpy's own arithmetic (bit-exact)."""
    return np.where(i == _LEFT - 1, stop, i * ((stop - start) / (_LEFT - 1)) + start)


def _pairs_at(m: np.ndarray, a: int, c: int, n_right: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All rules (j, i) whose left end is lattice point m[p]: a*j + c*i = m[p]; returns (p, j, i)."""
    j = (m * pow(a, -1, c)) % c  # the solutions mod c, then every c-th right end
    j = j[:, None] + c * np.arange(-(-n_right // c))[None, :]
    i = (m[:, None] - a * j) // c
    ok = (j < n_right) & (i >= 0) & (i < _LEFT)
    return np.broadcast_to(np.arange(len(m))[:, None], ok.shape)[ok], j[ok], i[ok]


def _double_grid_chunk(
    peaky: np.ndarray, other: np.ndarray, width: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_right: int, table: np.ndarray
) -> np.ndarray:
    """Best of the n_right x 400 interval rules of a few examples, visiting each distinct rule once.

    A rule's key is ``inside_other * (n + 1) + inside_peaky``, i.e. a right-end term (counts at or
    below r_j) minus a left-end term (counts below l_ji, read off the lattice). Keys of empty
    intervals (l > r) are <= 0, and the clipped lookup maps them to the discarded entry.
    """
    a, c = _lattice(n_right)
    size = a * (n_right - 1) + c * (_LEFT - 1) + 1
    right = np.linspace(lo, hi, n_right, axis=1)  # [E, n_right], bit-identical to per-example calls
    centre = right - width[:, None]
    start, stop = centre - _BUFFER, centre + _BUFFER  # row j of left ends spans [start_j, stop_j]
    right_key = _right_keys(peaky, other, right)

    n = peaky.shape[1]
    values = np.concatenate([other, peaky], axis=1)
    weight = np.concatenate([np.full(n, n + 1), np.ones(n, np.int64)])
    entry, unsure = _entry_points(values, start[:, 0], (stop[:, 0] - start[:, 0]) / (_LEFT - 1) / c, size)
    below = _counts_below(entry, weight, size)
    ue, ud = np.nonzero(unsure)
    um = entry[ue, ud] - 1
    below_unsure = below[ue, um]
    below[ue, um] = np.iinfo(np.int32).max  # keys at unsure points turn negative: discarded here

    best = _score_runs(right_key, below, a, c, table)
    if a != c:  # entry points of all data, and unsure points (whose data enter one point later)
        ex = np.concatenate([np.repeat(np.arange(len(entry)), entry.shape[1]), ue])
        _score_entry_points(best, right_key, below, ex, np.concatenate([entry.ravel(), um]), a, c, table)
    _score_unsure(best, ue, um, values[ue, ud], weight[ud], below_unsure, right_key, start, stop, a, c, table)
    return best


def _right_keys(peaky: np.ndarray, other: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per right end, ``other_at_or_below * (n + 1) + peaky_at_or_below`` (exact comparisons)."""
    n = peaky.shape[1]
    keys = np.empty(right.shape, np.int64)
    for e in range(len(right)):
        keys[e] = np.searchsorted(other[e], right[e], "right") * (n + 1) + np.searchsorted(peaky[e], right[e], "right")
    return keys


def _entry_points(values: np.ndarray, origin: np.ndarray, unit: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """First lattice point whose left end lies above each datum, and whether that is unsure.

    Real left ends differ from ``origin + m * unit`` by a few ulps; a datum farther than 1e-10
    (relative) from every lattice point is therefore classified exactly, and one closer is
    'unsure': counted from the next point on, and settled exactly at its own point later.
    """
    coord = (values - origin[:, None]) / unit[:, None]
    nearest = np.rint(coord)
    unsure = np.abs(coord - nearest) <= 1e-10 * (8.0 + np.abs(values).max()) / unit[:, None]
    entry = np.clip(np.where(unsure, nearest, np.floor(coord)) + 1, 0, size).astype(np.int64)
    return entry, unsure & (nearest >= 0) & (nearest < size)


def _score_runs(right_key: np.ndarray, below: np.ndarray, a: int, c: int, table: np.ndarray) -> np.ndarray:
    """Best rule over each run's first right end and every right end's last left end.

    Right ends with equal counts form runs. Within a run, rule (j, i) has the counts of rule
    (j - 1, i + 1), which sits on the same lattice point when a == c and on the next one
    otherwise; so these rules reach every distinct rule, except (when a != c) those just below a
    point where a datum enters the count, which ``_score_entry_points`` adds.
    """
    n_ex, n_right = right_key.shape
    isz = below.itemsize
    left_key = as_strided(below, shape=(n_ex, n_right, _LEFT), strides=(below.strides[0], a * isz, c * isz), writeable=False)
    best = np.take(table, right_key - left_key[:, :, -1], mode="clip").max(axis=1)
    run_e, run_j = np.nonzero(np.diff(right_key, axis=1, prepend=-1) != 0)
    run_best = np.take(table, right_key[run_e, run_j][:, None] - left_key[run_e, run_j], mode="clip").max(axis=1)
    np.maximum.at(best, run_e, run_best)
    return best


def _score_entry_points(
    best: np.ndarray, right_key: np.ndarray, below: np.ndarray, ex: np.ndarray, entry: np.ndarray, a: int, c: int,
    table: np.ndarray,
) -> None:
    """Add the rules on the lattice point just below each entry point (example ex, point entry)."""
    size = below.shape[1] - 1
    inside = (entry >= 1) & (entry <= size)
    pe, pm = np.divmod(np.unique(ex[inside] * size + entry[inside] - 1), size)
    p, j, i = _pairs_at(pm, a, c, right_key.shape[1])
    np.maximum.at(best, pe[p], np.take(table, right_key[pe[p], j] - below[pe[p], pm[p]], mode="clip"))


def _counts_below(entry: np.ndarray, weight: np.ndarray, size: int) -> np.ndarray:
    """[E, size + 1] int32: weighted count of data whose entry point is <= each lattice point.

    Written run by run with np.repeat, which is many times faster than a cumulative sum over a
    lattice that (at 401 right ends) has 320,000 points for about 2N data.
    """
    order = np.argsort(entry, axis=1, kind="stable")
    edges = np.take_along_axis(entry, order, axis=1)
    level = np.cumsum(np.broadcast_to(weight, entry.shape)[np.arange(len(entry))[:, None], order], axis=1)
    level = np.concatenate([np.zeros((len(entry), 1), np.int64), level], axis=1)
    runs = np.diff(edges, axis=1, prepend=0, append=size + 1)
    return np.repeat(level.astype(np.int32).ravel(), runs.ravel()).reshape(len(entry), size + 1)


def _score_unsure(
    best: np.ndarray, ue: np.ndarray, um: np.ndarray, x: np.ndarray, w: np.ndarray, below_at: np.ndarray,
    right_key: np.ndarray, start: np.ndarray, stop: np.ndarray, a: int, c: int, table: np.ndarray,
) -> None:
    """Score one by one the rules whose left end a datum (x, w) sits on up to rounding.

    Such data were counted as not below their lattice point um (where ``below_at`` was read);
    each rule's exact left end, as np.linspace computes it, decides whether they are.
    """
    n_right = right_key.shape[1]
    d, j, i = _pairs_at(um, a, c, n_right)  # every rule on each unsure datum's point
    e = ue[d]
    outside = x[d] < _left_threshold(start[e, j], stop[e, j], i)
    rules, first, inverse = np.unique((e * n_right + j) * _LEFT + i, return_index=True, return_inverse=True)
    moved = np.bincount(inverse, weights=np.where(outside, w[d], 0), minlength=len(rules)).astype(np.int64)
    e, j, d = e[first], j[first], d[first]
    np.maximum.at(best, e, np.take(table, right_key[e, j] - below_at[d] - moved, mode="clip"))


def _single_exact(pos: np.ndarray, neg: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Supremum over every single threshold: a cut at each observed value reaches every rate pair."""
    n = pos.shape[1]
    best = np.empty(len(pos), np.float32)
    for e in range(len(pos)):
        t = np.concatenate([pos[e], neg[e]])
        best[e] = table[_count_at_least(neg[e], t) * (n + 1) + _count_at_least(pos[e], t)].max()
    return best


def _double_exact(peaky: np.ndarray, other: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Supremum over every interval: intervals between observed values reach every count pair."""
    n = peaky.shape[1]
    best = np.empty(len(peaky), np.float32)
    for e in range(len(peaky)):
        v = np.concatenate([peaky[e], other[e]])
        ends = np.searchsorted(other[e], v, "right") * (n + 1) + np.searchsorted(peaky[e], v, "right")
        starts = np.searchsorted(other[e], v, "left") * (n + 1) + np.searchsorted(peaky[e], v, "left")
        best[e] = np.take(table, ends[None, :] - starts[:, None], mode="clip").max()
    return best


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
    n_buckets = 2 * int(np.ceil(np.log(n_models - 1)))
    bucket = np.floor(2.0 * e)  # epsilon < (b + 1) / 2 first holds for b = floor(2 epsilon)
    points = np.where(bucket < n_buckets, np.exp2(-np.minimum(bucket, n_buckets)), 0.0)
    return float(points.sum() / len(e))


def final_score(forget_quality: float, ra_u: float, ra_r: float, ta_u: float, ta_r: float) -> float:
    """F x (RA_u / RA_r) x (TA_u / TA_r): forgetting only counts if utility is kept."""
    for name, value in (("retain accuracy of the retrained models", ra_r), ("test accuracy of the retrained models", ta_r)):
        if not value > 0:
            raise ValueError(f"{name} must be positive to normalise by; got {value}")
    return float(forget_quality * (ra_u / ra_r) * (ta_u / ta_r))


@dataclass(frozen=True)
class ForgettingResult:
    """Every term of the final score, the per-example epsilons, and a bootstrap interval for F.

    ``forget_quality_ci`` (see ``_bootstrap_ci``) is None when no bootstrap was asked for
    (``n_bootstrap=0``); two submissions whose intervals overlap are not told apart by F.
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
    n_bootstrap: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only, ready for json.dumps."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
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


def _bootstrap_ci(
    unlearned: np.ndarray, retrained: np.ndarray, forget_quality: float, delta: float, thresholds: str,
    n_bootstrap: int, ci_level: float, seed: int,
) -> tuple[float, float]:
    """Interval for F from models resampled with replacement, each side independently.

    The models are the random part of a score (the submission's runs and the reference runs), so
    their resampling tells whether two submissions' F differ by more than reruns would. But a
    resample repeats models, and repeated confidences make the two sides look more separable, so
    resampled F runs low (by 0.03 or so): a plain percentile interval can miss F altogether. The
    interval therefore keeps the resampled spread and is moved so that its median sits on F.
    """
    rng = np.random.default_rng(seed)
    n = unlearned.shape[0]
    scores = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        u, r = unlearned[rng.integers(0, n, n)], retrained[rng.integers(0, n, n)]
        scores[b] = forget_score(_epsilons(u, r, delta, thresholds), n)
    alpha = (1.0 - ci_level) / 2.0
    low, high = np.quantile(scores, [alpha, 1.0 - alpha]) + (forget_quality - np.median(scores))
    return float(max(low, 0.0)), float(min(high, 1.0))


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
) -> ForgettingResult:
    """The scorer's entry point: F, the final score, and a seeded bootstrap interval for F.

    Confidences are [N models, K forget examples] (see ``logit_scaled_confidence``); accuracies
    are per-model arrays whose means enter the score. Each bootstrap resample costs one full
    epsilon computation (about a second for N = 512, K = 1,000); pass ``n_bootstrap=0`` to skip it.
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
    ci = _bootstrap_ci(u, r, f, delta, thresholds, int(n_bootstrap), ci_level, seed) if n_bootstrap else None
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
        n_bootstrap=int(n_bootstrap),
        seed=int(seed),
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
