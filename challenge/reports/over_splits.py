"""One leaderboard over several forget sets: each method's mean final score, and which places the splits support.

A single split's order among the leaders is mostly that forget set's luck (issue 30: Kendall's τ among the
top five 0.20 over three splits), so the ranking a benchmark can stand behind is the one over splits. The
unit of replication is the split (its forget identities, its original, its pool): a method's interval is
the t interval of its per-split final scores, and two methods are separated only when the paired
difference over the splits they share has a t interval above 0. The per-split scores already carry
each split's own measurement noise, so the split-to-split spread holds both sources; but three
differences can agree by chance far more closely than that noise allows (0.0119, 0.0109, 0.0131 for two
methods whose final scores each have a standard error of about 0.005 on one split), and such a pair
reversed on three other splits. So the spread used is never below what the splits' own intervals say
(`noise`: each score's standard error from its F interval): of 187 pairs separated on three splits of
the default set (every way to cut six splits into two groups of three), 6 reversed on the other three
without this floor, and none with it.

A method's rank is 1 + the number of methods separated above it, so methods that nothing separates share a
rank ("=2"): ties are shown as ties, never as an order the sort happened to pick, and a separation the
splits do support still shows where neighbours are tied (A ~ B, B ~ C and A > C rank A 1, B =1 and C 2).
Chaining ties down the table instead (one rank for A, B and C) merged seven methods into one place on
six splits of the default set, where several pairs across the chain were separated. A method that some
split did not score (it crashed there) is listed below the others, unranked.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
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


def separated(
    a: list[float | None],
    b: list[float | None],
    noise_a: list[float | None] | None = None,
    noise_b: list[float | None] | None = None,
) -> tuple[bool, list[float] | None]:
    """Whether `a` beats `b` over the splits both scored: the paired difference's t interval lies above 0, its
    spread no smaller than the two scores' own standard errors on each split (`noise_*`) allow."""
    both = [i for i, (x, y) in enumerate(zip(a, b)) if x is not None and y is not None]
    if len(both) < 2:
        return False, None
    diffs = [a[i] - b[i] for i in both]
    floor = math.sqrt(float(np.mean([_at(noise_a, i) ** 2 + _at(noise_b, i) ** 2 for i in both])))
    sd = max(float(np.std(diffs, ddof=1)), floor)
    mean, half = float(np.mean(diffs)), _t(len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return mean - half > 0, [mean - half, mean + half]


def _at(xs: list[float | None] | None, i: int) -> float:
    return (xs[i] or 0.0) if xs is not None and i < len(xs) else 0.0


def over_splits(
    finals: dict[str, list[float | None]], noise: dict[str, list[float | None]] | None = None
) -> list[dict[str, Any]]:
    """Rows in order of mean final score (methods scored on every split first), with shared ranks.

    `finals`: method -> its final score on each split (None where that split did not score it); `noise`: the
    same, each score's standard error on its split (None or missing: no floor)."""
    noise = noise or {}

    def apart(a: str, b: str) -> tuple[bool, list[float] | None]:
        return separated(finals[a], finals[b], noise.get(a), noise.get(b))

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
        tests = [(a["name"], *apart(a["name"], row["name"])) for a in ranked[:i]]  # each method above against it
        beaten_by = [name for name, won, _ in tests if won]
        row["separated_below"] = beaten_by  # the methods that beat this one over the splits
        row["rank"] = 1 + len(beaten_by)
        row["diff_ci_to_above"] = tests[-1][2] if tests else None  # the neighbour above: the last tested
        row["tied_with_above"] = bool(tests) and not tests[-1][1]
    counts = [r["rank"] for r in ranked]
    shared = {k for k in counts if counts.count(k) > 1}
    for row in rows:  # a method some split did not score (it crashed there) is listed, not ranked
        row.setdefault("rank", None)
        row.setdefault("diff_ci_to_above", None)
        row.setdefault("tied_with_above", False)
        row.setdefault("separated_below", [])
        row["rank_text"] = _rank_text(row["rank"], shared)
    return rows


def _rank_text(rank: int | None, shared: set[int]) -> str:
    if rank is None:
        return "—"
    return f"={rank}" if rank in shared else str(rank)


def format_over_splits(rows: list[dict[str, Any]], n_splits: int) -> str:
    width = max([len(r["name"]) for r in rows] + [6])
    lines = [
        f"Over {n_splits} splits: mean final score with its {LEVEL:.0%} interval over splits; rank: 1 + the methods "
        "separated above it (their paired difference over the splits excludes 0); '=k': a shared rank",
        f"{'rank':>4}  {'method':<{width}}  {'mean':>6}  {'interval':>17}  {'above − this':>17}",
    ]
    for r in rows:
        rank, name, mean, ci, diff = _cells(r)
        lines.append(f"{rank:>4}  {name:<{width}}  {mean:>6}  {ci:>17}  {diff:>17}")
    return "\n".join(lines)


def _cells(r: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """A row's rank, name, mean, interval and difference to the row above, as the table and the page show them."""
    ci = f"[{r['final_ci'][0]:.3f}, {r['final_ci'][1]:.3f}]" if r["final_ci"] else "—"
    diff = f"[{r['diff_ci_to_above'][0]:+.3f}, {r['diff_ci_to_above'][1]:+.3f}]" if r["diff_ci_to_above"] else "—"
    mean = "—" if r["final_mean"] is None else f"{r['final_mean']:.3f}"
    return r["rank_text"], r["name"], mean, ci, diff


def write_over_splits_html(title: str, rows: list[dict[str, Any]], n_splits: int, out: Path) -> Path:
    """The over-splits table as a static page (no scripts, no server)."""
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in _cells(r)) + "</tr>" for r in rows)
    head = "".join(
        f"<th>{h}</th>" for h in ("rank", "submission", "mean final", f"{LEVEL:.0%} interval", "above − this")
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Over {n_splits} splits: mean final score with its interval over splits; "
        "rank: 1 + the submissions separated above it (their paired difference over the splits excludes 0); "
        f"'=k': a shared rank.</p><table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table></body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
