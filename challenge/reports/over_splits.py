"""One leaderboard over several forget sets: each method's mean final score, and which places the splits support.

A single split's order among the leaders is mostly that forget set's luck (issue 30: Kendall's τ among the
top five 0.20 over three splits), so the ranking a benchmark can stand behind is the one over splits. The
unit of replication is the split (its forget identities, its original, its pool): a method's interval is
the t interval of its per-split final scores, and two neighbours are separated only when the paired
difference over the splits they share has a t interval above 0. The per-split scores already carry
each split's own measurement noise, so the split-to-split spread holds both sources.

A method that is not separated from the one above it shares its rank ("=2"): ties are shown as ties,
never as an order the sort happened to pick. Sharing is chained down the table (A ~ B and B ~ C puts all
three at one rank even if A and C differ): the conservative reading, which can only merge places. A method
that some split did not score (it crashed there) is listed below the others, unranked.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LEVEL = 0.95  # of the intervals and of the separation


def _t(df: int) -> float:
    from scipy.stats import t  # scikit-learn's own dependency

    return float(t.ppf(0.5 + LEVEL / 2, df))


def mean_interval(xs: list[float]) -> tuple[float, float, float] | None:
    """Mean and its t interval over splits; None with fewer than two (no spread to measure)."""
    if len(xs) < 2:
        return None
    mean, half = float(np.mean(xs)), _t(len(xs) - 1) * float(np.std(xs, ddof=1)) / math.sqrt(len(xs))
    return mean, mean - half, mean + half


def separated(a: list[float | None], b: list[float | None]) -> tuple[bool, list[float] | None]:
    """Whether `a` beats `b` over the splits both scored: the paired difference's interval lies above 0."""
    diffs = [x - y for x, y in zip(a, b) if x is not None and y is not None]
    interval = mean_interval(diffs)
    if interval is None:
        return False, None
    return interval[1] > 0, [interval[1], interval[2]]


def over_splits(finals: dict[str, list[float | None]]) -> list[dict[str, Any]]:
    """Rows in order of mean final score (methods scored on every split first), with shared ranks.

    `finals`: method -> its final score on each split (None where that split did not score it)."""
    rows = []
    for name, xs in finals.items():
        scored = [x for x in xs if x is not None]
        interval = mean_interval(scored)
        rows.append(
            {
                "name": name,
                "splits": len(scored),
                "final_mean": interval[0] if interval else (scored[0] if scored else None),
                "final_ci": [interval[1], interval[2]] if interval else None,
            }
        )
    n = max((r["splits"] for r in rows), default=0)
    rows.sort(key=lambda r: (r["splits"] < n or r["final_ci"] is None, -(r["final_mean"] or 0.0), r["name"]))
    ranked = [r for r in rows if r["splits"] == n and r["final_ci"] is not None]
    for i, row in enumerate(ranked):
        above = ranked[i - 1] if i else None
        apart, diff = separated(finals[above["name"]], finals[row["name"]]) if above else (True, None)
        row["diff_ci_to_above"] = diff  # above − this, over the splits
        row["tied_with_above"] = not apart
        row["rank"] = above["rank"] if above and not apart else i + 1
    shared = {r["rank"] for r in ranked if r["tied_with_above"]}
    for row in rows:  # a method some split did not score (it crashed there) is listed, not ranked
        row.setdefault("rank", None)
        row.setdefault("diff_ci_to_above", None)
        row.setdefault("tied_with_above", False)
        row["rank_text"] = _rank_text(row["rank"], shared)
    return rows


def _rank_text(rank: int | None, shared: set[int]) -> str:
    if rank is None:
        return "—"
    return f"={rank}" if rank in shared else str(rank)


def format_over_splits(rows: list[dict[str, Any]], n_splits: int) -> str:
    width = max([len(r["name"]) for r in rows] + [6])
    lines = [
        f"Over {n_splits} splits: mean final score with its {LEVEL:.0%} interval over splits; '=k': not separated "
        "from the method above (the paired difference over splits includes 0)",
        f"{'rank':>4}  {'method':<{width}}  {'mean':>6}  {'interval':>17}  {'above − this':>17}",
    ]
    for r in rows:
        ci = f"[{r['final_ci'][0]:.3f}, {r['final_ci'][1]:.3f}]" if r["final_ci"] else "—"
        diff = f"[{r['diff_ci_to_above'][0]:+.3f}, {r['diff_ci_to_above'][1]:+.3f}]" if r["diff_ci_to_above"] else "—"
        mean = "—" if r["final_mean"] is None else f"{r['final_mean']:.3f}"
        lines.append(f"{r['rank_text']:>4}  {r['name']:<{width}}  {mean:>6}  {ci:>17}  {diff:>17}")
    return "\n".join(lines)
