"""How many models are enough: F's interval and the neighbours' separation against N, from the kept runs.

A leaderboard of N runs per method tells some neighbours apart and not others; whether more runs would
is the question before a larger (and costlier) scoring. The kept confidences answer it without scoring
anything again:

- *measured*: the N kept models of each side are cut into disjoint groups of n (runs 0..n-1, n..2n-1, ...:
  runs are independent, and disjoint groups are honest repeats), and each group is scored as a
  leaderboard of n runs would be: F's bootstrap interval per method, and the paired interval of each
  neighbour pair's difference (challenge.scoring.compare: the same run indices and retrained models on
  both sides). Widths and separated pairs are averaged over the groups;
- *projected*: past the kept N, the difference of a pair's F is a mean over independent models, so its
  interval shrinks as 1/sqrt(N); a pair whose difference d lies h from its interval's end towards 0 at N
  is separated from about N (h / |d|)^2 on. The measured widths at n < N show whether that holds here.

The recommended N separates every neighbour pair whose projection stays within `max_models` (2023 scored
the top five again at N = 512); a pair beyond it is a tie in practice, whatever the order printed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from challenge.scoring.compare import Comparison, Confidences, compare_forgetting
from challenge.scoring.epsilon import DELTA, per_example_epsilon
from challenge.scoring.metric import forget_score, replicate_scores
from challenge.scoring.resampling import Resamples, shifted_interval

CI_LEVEL = 0.95


@dataclass(frozen=True)
class Point:
    """One N: F's mean interval width over the methods, and how many neighbour pairs it separates."""

    n: int
    groups: int  # disjoint groups of n kept runs it is averaged over (1 at the kept N)
    width: float
    separated: float  # neighbour pairs whose paired interval excludes 0, mean over the groups
    pairs: int


@dataclass(frozen=True)
class Pair:
    """Two neighbours of the ranking at the kept N, and the N from which they would be told apart."""

    above: str
    below: str
    difference: float  # F above - F below
    half_width: float  # of the difference's paired interval at the kept N, on the side towards 0
    separated: bool  # at the kept N: the interval excludes 0
    needed: int | None  # None: no difference at all (a tie at any N)


@dataclass(frozen=True)
class Power:
    kept: int
    points: list[Point]
    pairs: list[Pair]
    recommended: int | None  # None: every pair is separated already, or none can be within max_models
    max_models: int
    beyond: list[str] = field(default_factory=list)  # pairs that need more than max_models: ties in practice

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def power(
    ranked: list[tuple[str, Confidences]],
    grid: tuple[int, ...] = (4, 8),
    n_bootstrap: int = 100,
    seed: int = 0,
    max_models: int = 512,
) -> Power:
    """`ranked`: the scored methods best first, each with its kept confidences on one pool. Sizes in `grid` from
    the kept N on are left out: a group of the kept runs cannot be larger than they are."""
    if len(ranked) < 2:
        raise ValueError("the power figure compares neighbours: it needs at least two scored methods")
    retrained = ranked[0][1].retrained
    kept = retrained.shape[0]
    sizes = sorted({int(n) for n in grid if 3 <= int(n) < kept})  # F needs 3 models a side
    points = [_point(ranked, n, n_bootstrap, seed) for n in sizes]
    full, pairs = _at_kept(ranked, n_bootstrap, seed)
    points.append(full)
    open_pairs = [p for p in pairs if not p.separated]
    within = [p.needed for p in open_pairs if p.needed is not None and p.needed <= max_models]
    beyond = [f"{p.above} > {p.below}" for p in open_pairs if p.needed is None or p.needed > max_models]
    return Power(
        kept=kept,
        points=points,
        pairs=pairs,
        recommended=max(within) if within else None,
        max_models=max_models,
        beyond=beyond,
    )


def _at_kept(ranked: list[tuple[str, Confidences]], n_bootstrap: int, seed: int) -> tuple[Point, list[Pair]]:
    kept = ranked[0][1].retrained.shape[0]
    width, comparisons = _leaderboard(ranked, n_bootstrap, seed)
    pairs = []
    for (a, _), (b, _), c in zip(ranked, ranked[1:], comparisons):
        low, high = c.difference_ci
        half = c.difference - low if c.difference > 0 else high - c.difference  # towards 0: the side that decides
        needed = None if c.difference == 0 else math.ceil(kept * (half / abs(c.difference)) ** 2)
        needed = needed if needed is None or not c.separated else min(max(needed, 3), kept)  # F needs 3 a side
        pairs.append(Pair(a, b, c.difference, half, c.separated, needed))
    separated = sum(p.separated for p in pairs)
    return Point(kept, 1, width, float(separated), len(pairs)), pairs


def _point(ranked: list[tuple[str, Confidences]], n: int, n_bootstrap: int, seed: int) -> Point:
    """Disjoint groups of n kept runs, each scored as a leaderboard of n runs would be."""
    kept = ranked[0][1].retrained.shape[0]
    widths, separated = [], []
    for g in range(kept // n):
        rows = slice(g * n, (g + 1) * n)
        group = [(name, Confidences(c.unlearned[rows], c.retrained[rows], c.pool_fingerprint)) for name, c in ranked]
        width, comparisons = _leaderboard(group, n_bootstrap, seed)
        widths.append(width)
        separated.append(sum(c.separated for c in comparisons))
    return Point(n, kept // n, float(np.mean(widths)), float(np.mean(separated)), len(ranked) - 1)


def _leaderboard(ranked: list[tuple[str, Confidences]], n_bootstrap: int, seed: int) -> tuple[float, list[Comparison]]:
    """One leaderboard of these runs: the methods' mean F interval width, and each neighbour pair's paired
    comparison on the shared draws (each method's replicates computed once)."""
    retrained = ranked[0][1].retrained
    reps, widths = _replicates(ranked, retrained, n_bootstrap, seed)
    comparisons = [
        compare_forgetting(
            ca.unlearned,
            cb.unlearned,
            retrained,
            n_bootstrap=n_bootstrap,
            seed=seed,
            replicates_a=reps[a],
            replicates_b=reps[b],
        )
        for (a, ca), (b, cb) in zip(ranked, ranked[1:])
    ]
    return float(np.mean(widths)), comparisons


def _replicates(
    ranked: list[tuple[str, Confidences]], retrained: np.ndarray, n_bootstrap: int, seed: int
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Each method's F replicates on the shared draws, and its interval's width."""
    draws = Resamples.seeded(seed, *retrained.shape, n_bootstrap)
    reps, widths = {}, []
    for name, c in ranked:
        f = forget_score(per_example_epsilon(c.unlearned, retrained), retrained.shape[0])
        reps[name] = replicate_scores(c.unlearned, retrained, draws, DELTA, "grid")
        low, high = shifted_interval(reps[name], f, CI_LEVEL)
        widths.append(high - low)
    return reps, widths


def format_power(p: Power) -> str:
    """The figure as text: what `challenge baseline` prints under the leaderboard."""
    lines = [
        f"how many models are enough (from the {p.kept} kept runs; challenge/reports/power.py):",
        f"  {'N':>5} {'groups':>7} {'F CI width':>11} {'neighbours separated':>21}",
    ]
    for pt in p.points:
        lines.append(f"  {pt.n:>5} {pt.groups:>7} {pt.width:>11.3f} {pt.separated:>14.1f} of {pt.pairs}")
    if p.points:
        full = p.points[-1]
        shown = ", ".join(f"{n}: {full.width * math.sqrt(full.n / n):.3f}" for n in (64, 128, 512) if n > full.n)
        lines.append(f"  width projected as 1/sqrt(N) from N = {full.n}: {shown}")
    for pair in p.pairs:
        if pair.separated:
            when = f"separated at N = {p.kept} (from N ≈ {pair.needed})"
        else:
            when = "never separated (same F)" if pair.needed is None else f"separated from N ≈ {pair.needed}"
        lines.append(
            f"  {pair.above} > {pair.below}: ΔF {pair.difference:+.3f}, {pair.half_width:.3f} from its interval's "
            f"end towards 0 at N = {p.kept}; {when}"
        )
    if p.recommended is not None:
        lines.append(f"  recommended N: {p.recommended} (separates every neighbour pair that {p.max_models} can)")
    else:
        lines.append(f"  recommended N: {p.kept} is enough for every pair that N ≤ {p.max_models} can separate")
    if p.beyond:
        lines.append(f"  ties in practice (beyond N = {p.max_models}): {'; '.join(p.beyond)}")
    return "\n".join(lines)
