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
threshold (seconds per example at N = 512). Here each example's confidences are sorted once; a
rule's epsilon is one lookup in a table indexed by (false-positive count, true-positive count),
cached per (N, delta); each datum is placed among the single thresholds once, all examples
together; and the double thresholds (challenge.scoring.intervals) are searched by bounding blocks
of rules, scoring only the few that can beat the best rule known. Rates are float32 ``count / N``
and the logs run in float32, as in the published code, so the fixtures' epsilons are matched bit
for bit. Data that sit on a threshold up to rounding (the peaky minimum always does) are settled
by comparing with that threshold exactly as torch or numpy computes it. Examples are handled in
cache-sized chunks, on the process's torch threads: N = 512, K = 1,000 takes about 0.14 CPU
seconds, half the previous implementation's (benchmarks/bench_metric.py times both in one run).

An example where every rule is discarded (e.g. all 2N confidences identical) gets epsilon 0
instead of crashing the scorer (the published code's one failure), and inputs are validated.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from challenge.scoring.intervals import double_grid

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
THRESHOLD_MODES = ("grid", "exact")
_PEAKY_RATIO = 0.01
_LOG_FLOOR = 1e-45  # the scorer's floor inside both logs: saturates confidences at about +-103.6
_MAX_ABS_CONFIDENCE = 1e4  # far above the +-103.6 saturation; keeps the grids' float arithmetic exact
_DISCARDED = np.float32(-1.0)  # table value of rules the scorer discards (below every real epsilon)
_VALUES_PER_CHUNK = 1 << 15  # confidences per side in one chunk of examples: 256 kB of float64
_EXAMPLES_PER_CHUNK = 128  # and at most this many examples (their blocks of rules fit in cache too)
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
            f"unlearned has {u.shape[1]} examples but retrained has {r.shape[1]}; both must score the same forget "
            "examples"
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


def per_example_epsilon(unlearned: Any, retrained: Any, delta: float = DELTA, thresholds: str = "grid") -> np.ndarray:
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
    """Epsilon of each example, in chunks of examples whose data fit in a core's cache.

    Examples are independent, and the work is a few dozen passes over each example's 2N values:
    passes over a cache-sized chunk run several times faster than over all K examples at once.
    Chunks run on torch.get_num_threads() threads (numpy and torch release the GIL in their
    loops): the kit's settings for a process's threads hold for the metric too, and the chunks,
    hence the bits, are the same for any thread count.
    """
    n, k = unlearned.shape
    step = max(1, min(_EXAMPLES_PER_CHUNK, _VALUES_PER_CHUNK // n))
    starts = range(0, k, step)
    tables = _epsilon_table(n, delta), _bound_table(n, delta) if thresholds == "grid" else None

    def chunk(s: int) -> np.ndarray:
        return _epsilons_chunk(unlearned[:, s : s + step], retrained[:, s : s + step], thresholds, *tables)

    threads = min(torch.get_num_threads(), len(starts))
    if threads <= 1:
        return np.concatenate([chunk(s) for s in starts])
    with ThreadPoolExecutor(threads) as pool:
        return np.concatenate(list(pool.map(chunk, starts)))


def _sorted_median(rows: np.ndarray) -> np.ndarray:
    """np.median of each sorted row, read off the middle (the same bits, without a partition)."""
    h = rows.shape[1] // 2
    return rows[:, h] if rows.shape[1] % 2 else (rows[:, h - 1] + rows[:, h]) / 2


def _epsilons_chunk(
    unlearned: np.ndarray, retrained: np.ndarray, thresholds: str, table: np.ndarray, bound_table: np.ndarray | None
) -> np.ndarray:
    """Orient each example as the scorer does, then take the best rule of both families."""
    us, rs = np.sort(unlearned.T, axis=1), np.sort(retrained.T, axis=1)  # [K, N], each example sorted once
    retrained_is_pos = (_sorted_median(rs) > _sorted_median(us))[:, None]  # ties: unlearned
    pos, neg = np.where(retrained_is_pos, rs, us), np.where(retrained_is_pos, us, rs)
    pos_range, neg_range = pos[:, -1] - pos[:, 0], neg[:, -1] - neg[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 is NaN and, as in the scorer, not capped
        capped = np.minimum(pos_range, neg_range) / np.maximum(pos_range, neg_range) < _PEAKY_RATIO
    # the double-threshold rule calls the smaller spread positive; equal spreads pick `neg`
    peaky_is_neg = (pos_range >= neg_range)[:, None]
    live = ~capped
    pos, neg, peaky_is_neg = pos[live], neg[live], peaky_is_neg[live]
    peaky, other = np.where(peaky_is_neg, neg, pos), np.where(peaky_is_neg, pos, neg)

    if bound_table is not None:
        single = _single_grid(pos, neg, table)
        double = double_grid(peaky, other, table, bound_table, single)
    else:
        single, double = _single_exact(pos, neg, table), _double_exact(peaky, other, table)
    eps = np.full(len(live), EPSILON_CAP)
    # -1 (every rule discarded; the published code fails there) becomes 0, infinity becomes the cap
    eps[live] = np.clip(np.maximum(single, double), 0.0, EPSILON_CAP)
    return eps


@functools.lru_cache(maxsize=4)
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
    eps = eps.astype(np.float32).ravel()
    eps.flags.writeable = False  # shared by every call with this (n, delta)
    return eps


@functools.lru_cache(maxsize=4)
def _bound_table(n: int, delta: float) -> np.ndarray:
    """The most epsilon a rule can have given a lower bound on its false positives and an upper
    bound on its true positives, flattened like the epsilon table (bounds clipped to [0, n]).

    Epsilon never rises with false positives nor falls with true positives among kept rules
    (false positives >= 1, true positives <= n - 1: the float32 rates of N <= 4096 models are
    far apart next to the logs' rounding), so the bound is one entry; a rule with none of one
    and all of the other may be perfect separation, infinity.
    """
    eps = _epsilon_table(n, delta).reshape(n + 1, n + 1)
    kept = eps[1:, :n]
    if (np.diff(kept, axis=1) < 0).any() or (np.diff(kept, axis=0) > 0).any():
        raise RuntimeError(f"the epsilon table of N = {n} is not monotone: this numpy's float32 log is unusable")
    counts = np.arange(n + 1)
    out = eps[np.maximum(counts, 1)[:, None], np.minimum(counts, n - 1)[None, :]]
    out[0, n] = np.inf
    out = out.ravel()
    out.flags.writeable = False
    return out


def _count_at_least(sorted_values: np.ndarray, t: np.ndarray) -> np.ndarray:
    return len(sorted_values) - np.searchsorted(sorted_values, t, side="left")


def _single_grid(pos: np.ndarray, neg: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Best single-threshold rule on the scorer's grid, every example at once.

    The grid comes from torch.linspace as in the scorer: its thresholds are float32 (torch's
    default dtype), so the extreme ones sit slightly inside or outside the data, and that decides
    some rates. It is pinned to float32 so a changed default dtype cannot alter the metric. A
    threshold's counts are those of the data at or above it: each datum is placed among its
    example's thresholds once, and the counts follow from one cumulative sum.
    """
    n1 = pos.shape[1] + 1
    lo, hi = np.minimum(pos[:, 0], neg[:, 0]), np.maximum(pos[:, -1], neg[:, -1])
    sizes = np.ceil((hi - lo) * THRESHOLDS_PER_UNIT).astype(np.int64)
    best = np.full(len(pos), _DISCARDED)
    rows = np.flatnonzero(sizes)  # identical confidences everywhere leave an empty grid
    if len(rows) == 0:
        return best
    sizes, lo, hi = sizes[rows], lo[rows], hi[rows]
    starts = np.cumsum(sizes) - sizes
    grid = _torch_grids(lo, hi, sizes)
    # bins: per example, the data by how many of its thresholds they reach (0..size)
    first_bin = starts + np.arange(len(rows))
    n_bins = int(sizes.sum()) + len(rows)
    counts = [
        np.bincount(
            (first_bin[:, None] + _thresholds_at_or_below(x[rows], grid, starts, sizes, lo, hi)).ravel(),
            minlength=n_bins,
        )
        for x in (neg, pos)
    ]
    # a threshold's key (negatives at or above it * (n + 1) + positives) is all data, weighing
    # n1 * n1 - 1, but those below it; each example's last bin takes its total back out, so one
    # cumulative sum over all bins gives every example's weights below each of its thresholds
    weights = counts[0] * n1 + counts[1]
    weights[first_bin + sizes] -= n1 * n1 - 1
    thresholds = np.ones(n_bins, bool)
    thresholds[first_bin + sizes] = False
    keys = (n1 * n1 - 1) - np.cumsum(weights)[thresholds]
    best[rows] = np.maximum.reduceat(np.take(table, keys), starts)
    return best


def _torch_grids(lo: np.ndarray, hi: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Every example's torch.linspace(lo, hi, size) in float32, one after another."""
    grid = torch.empty(int(sizes.sum()), dtype=torch.float32)
    for start, stop, size, at in zip(lo.tolist(), hi.tolist(), sizes.tolist(), (np.cumsum(sizes) - sizes).tolist()):
        torch.linspace(start, stop, size, out=grid[at : at + size])
    return grid.numpy()


def _thresholds_at_or_below(
    values: np.ndarray, grid: np.ndarray, starts: np.ndarray, sizes: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """[E, data]: how many of its example's thresholds lie at or below each datum.

    float32 rounding moves a threshold from ``lo + i * spacing`` by less than 2^-20 of the
    largest magnitude (a few ulps, plus the rounded step times i), so the spacing places every
    datum farther than that from its nearest threshold; the others are placed by comparing with
    the thresholds themselves.
    """
    spacing = (hi - lo) / np.maximum(sizes - 1, 1)
    coord = (values - lo[:, None]) / spacing[:, None]
    placed = np.clip(np.floor(coord) + 1, 0, sizes[:, None]).astype(np.int64)
    margin = 2.0**-19 * np.maximum(np.abs(lo), np.abs(hi)) / spacing
    rows, cols = np.nonzero(np.abs(coord - np.rint(coord)) <= margin[:, None])
    k, x, first, size = placed[rows, cols], values[rows, cols], starts[rows], sizes[rows]
    while True:
        up = (k < size) & (grid[first + np.minimum(k, size - 1)] <= x)
        down = (k > 0) & (grid[first + np.maximum(k - 1, 0)] > x)
        if not (up.any() or down.any()):
            placed[rows, cols] = k
            return placed
        k += up.astype(np.int64) - down


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
