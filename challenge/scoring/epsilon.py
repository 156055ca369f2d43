"""Per-example epsilon of the NeurIPS 2023 Machine Unlearning Challenge, reproduced exactly and fast.

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

An example where every rule is discarded (e.g. all 2N confidences identical) gets epsilon 0
instead of crashing the scorer (the published code's one failure), and inputs are validated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided

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


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


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


