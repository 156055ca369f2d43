"""Leaderboards: one table for the terminal, one static HTML page with its plots inside.

The single renderer for every leaderboard of the kit (`challenge baseline`, the competition's
`challenge leaderboard --html`), so that a method looks the same wherever it is ranked. A row is a
plain dict:

  name, status, final_score, forget_quality, f_ci ([lo, hi] or None), retain_ratio, test_ratio,
  seconds_per_run (mean charged cost, in the budget's clock), budget_seconds (None: exempt from the budget),
  budget_used (the runs' cost as a fraction of what the budget allows them in all)
  confidences (path of the kept forget_confidences.npz or None), n_bootstrap and seed of F's interval, ceiling (the pool's
  ceiling dict or None), f_of_ceiling (F / the ceiling's F)
  optional: team, submitted (text); `rank` adds p_next (paired P(F > next row's F) or None),
  compared ("paired", "intervals" when a kept file is missing, None for the last scored row),
  overlap (this row's CI for F overlaps the next row's) and close (not told apart from the next row)

Numbers are None for a row that was not scored. `results` (name -> a scorer result.json) feed
the plots; a row without one, or a result without samples, is simply shown without plots. The
page is one file (plots are base64 PNGs), so it can be mailed, archived or served as is.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from challenge.files import write_atomic
from challenge.reports.leaks import THUMB_PX

_UNLEARNED, _RETRAINED = "#d95f02", "#1b9e77"


# -- rows ------------------------------------------------------------------------------------------
def row_from_result(name: str, result: dict[str, Any], folder: Path | None = None) -> dict[str, Any]:
    """A row from a scorer result (result.json); a rejected submission keeps its status, no numbers.

    ``folder`` is where that result.json lies: the per-model confidences the scorer keeps beside
    it let `rank` compare neighbours paired; without them it falls back to their F intervals.
    """
    row: dict[str, Any] = {"name": name, "status": result.get("status", "missing"), "message": result.get("message", "")}
    score = result.get("score") or {}
    budget = result.get("budget") or {}
    settings = result.get("settings") or {}
    costs = budget.get("run_cost") or []
    kept = result.get("forget_confidences")
    row |= {
        "final_score": score.get("final_score"),
        "forget_quality": score.get("forget_quality"),
        "f_ci": score.get("forget_quality_ci"),
        "retain_ratio": score.get("retain_ratio"),
        "test_ratio": score.get("test_ratio"),
        "seconds_per_run": float(np.mean(costs)) if costs else None,
        "budget_seconds": None if settings.get("budget_exempt") else budget.get("per_run"),
        "budget_used": budget["used_budgets"] / len(costs) if costs else None,
        "confidences": str(folder / kept) if folder is not None and kept and (folder / kept).is_file() else None,
        "n_bootstrap": score.get("n_bootstrap"),
        "seed": score.get("seed"),
        **_ceiling(score),
    }
    return row


def _ceiling(score: dict[str, Any]) -> dict[str, Any]:
    """The pool's ceiling (retrained models against retrained ones) and F as a share of its F."""
    ceiling = score.get("ceiling") or None
    f, top = score.get("forget_quality"), (ceiling or {}).get("forget_quality")
    return {"ceiling": ceiling, "f_of_ceiling": f / top if f is not None and top else None}


SEPARATED_P = 0.95  # neighbours where neither F beats the other with this paired P are marked as not told apart
_KEPT = "forget_confidences.npz"  # challenge.scoring.compare.CONFIDENCES_FILE, named here without importing torch


def rank(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best final score first, unscored rows last; each scored row gets P(its F > the next row's F)
    from a paired bootstrap of their kept confidences (`p_next`), and `close` when neither F beats the
    other with SEPARATED_P: such neighbours are not told apart by the evaluation (a rerun could swap them).
    Where either row has no kept confidences, `close` falls back to their F intervals overlapping."""
    ordered = sorted(rows, key=lambda r: (r.get("final_score") is None, -(r.get("final_score") or 0.0)))
    out = [dict(r) for r in ordered]
    scored = [r.get("final_score") is not None for r in out]
    p_next = {i: _paired_p(out[i], out[i + 1]) for i in range(len(out) - 1) if scored[i] and scored[i + 1]}
    for i, (row, below) in enumerate(zip(out, out[1:] + [None])):
        a, b = row.get("f_ci"), below.get("f_ci") if below else None
        row["overlap"] = bool(a and b and a[0] <= b[1] and b[0] <= a[1])
        row["p_next"] = p_next.get(i)
        row["compared"] = None if i not in p_next else "paired" if row["p_next"] is not None else "intervals"
        row["close"] = _undecided(row["p_next"]) if row["p_next"] is not None else row["overlap"]
    return out


def _undecided(p: float) -> bool:
    """Neither F beats the other with SEPARATED_P: rows ranked by final score can be separated in F
    the other way round (P near 0), which is a clear difference, not a tie."""
    return max(p, 1.0 - p) < SEPARATED_P


def _paired_p(row: dict[str, Any], below: dict[str, Any]) -> float | None:
    """P(row's F > below's F) on shared retrained models and examples, or None if it cannot be had.
    With the results' own bootstrap count and seed, their kept replicates make it instant."""
    if not (row.get("confidences") and below.get("confidences")):
        return None
    from challenge.errors import (
        ChallengeError,  # the comparison imports the metric (and torch): only when needed
    )
    from challenge.scoring.compare import compare_kept, read_confidences

    n_bootstrap = max(int(row.get("n_bootstrap") or 0), int(below.get("n_bootstrap") or 0)) or 200
    try:
        kept = [read_confidences(Path(r["confidences"])) for r in (row, below)]
        return compare_kept(*kept, n_bootstrap, int(row.get("seed") or 0)).p_a_above
    except ChallengeError:  # two pools, or other retrained models: intervals are all that is left
        return None


# -- text --------------------------------------------------------------------------------------------
_COLUMNS = ("#", "method", "status", "final", "F [95% CI]", "P(F > next)", "F/ceiling", "RA ratio", "TA ratio", "s/run / budget")
_NUMERIC = (0, 3, 5, 6, 7, 8)  # right-aligned columns


def _num(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _f_text(row: dict[str, Any]) -> str:
    if row.get("forget_quality") is None:
        return "—"
    ci = row.get("f_ci")
    return f"{row['forget_quality']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{row['forget_quality']:.3f}"


def _p_text(row: dict[str, Any]) -> str:
    """P with a mark when it separates neither way; without P, what the interval fallback found."""
    if row.get("compared") == "paired":
        return f"{row['p_next']:.3f}" + (" ≈" if row["close"] else "")
    if row.get("compared") == "intervals":
        return "CI overlap ≈" if row["close"] else "CI apart"
    return "—"


def _seconds_text(row: dict[str, Any]) -> str:
    s, budget = row.get("seconds_per_run"), row.get("budget_seconds")
    if s is None:
        return "—"
    if budget is None:
        return f"{s:.2f} (exempt)"
    used = row.get("budget_used")
    return f"{s:.2f} / {budget:.2f}" + (f" ({used:.0%})" if used is not None else "")


def _cells(i: int, row: dict[str, Any]) -> list[str]:
    name = f"{row['name']} ({row['team']})" if row.get("team") else str(row["name"])
    return [str(i), name, str(row.get("status", "")), _num(row.get("final_score")), _f_text(row), _p_text(row),
            _num(row.get("f_of_ceiling")), _num(row.get("retain_ratio")), _num(row.get("test_ratio")), _seconds_text(row)]


def ceiling_line(rows: list[dict[str, Any]]) -> str | None:
    """One line for the pool's ceiling, when every scored row was scored against the same one."""
    ceilings = [r.get("ceiling") for r in rows if r.get("final_score") is not None]
    c = ceilings[0] if ceilings else None
    if not c or any(other != c for other in ceilings):
        return None
    ci = c.get("forget_quality_ci")
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return f"ceiling: F = {c['forget_quality']:.3f}{interval} (retrained vs retrained, N={c.get('n_models', '?')}, K={c.get('n_examples', '?')})"


def footnotes(rows: list[dict[str, Any]]) -> list[str]:
    """What the ≈ mark means here, and when some pairs could only be compared by their intervals."""
    notes = []
    if any(r.get("close") and r.get("compared") == "paired" for r in rows):
        notes.append(f"≈: P(F > next row's F) lies between {1 - SEPARATED_P:.0%} and {SEPARATED_P:.0%} in a paired bootstrap (same retrained models and forget examples), "
                     "so the evaluation does not separate the two rows' F")
    if any(r.get("compared") == "intervals" for r in rows):
        notes.append(f"CI overlap ≈ / CI apart: a pair where a row lacks its kept confidences ({_KEPT}) is compared by whether their F intervals overlap")
    return notes


def leaderboard_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width table, rows in the given order; the ceiling above it, the marks explained below."""
    body = [_cells(i, r) for i, r in enumerate(rows, 1)]
    widths = [max(len(c) for c in col) for col in zip(_COLUMNS, *body)]
    line = lambda cells: "  ".join(c.rjust(w) if k in _NUMERIC else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths))).rstrip()
    top = ceiling_line(rows)
    out = ([top] if top else []) + [line(_COLUMNS), "  ".join("-" * w for w in widths)] + [line(c) for c in body]
    return "\n".join(out + footnotes(rows))


# -- plots -------------------------------------------------------------------------------------------
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float, height: float) -> Any:
    """A figure without pyplot: no global state, no display backend, safe in any process."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def summary_plot(rows: list[dict[str, Any]]) -> str | None:
    """F with its interval and the final score, per scored row, in ranking order."""
    scored = [r for r in rows if r.get("final_score") is not None]
    if not scored:
        return None
    fig = _figure(max(5.0, 0.7 * len(scored) + 2), 3.2)
    ax = fig.subplots()
    x = np.arange(len(scored))
    f = np.array([r["forget_quality"] for r in scored])
    lo = np.array([r["f_ci"][0] if r.get("f_ci") else v for r, v in zip(scored, f)])
    hi = np.array([r["f_ci"][1] if r.get("f_ci") else v for r, v in zip(scored, f)])
    ax.bar(x - 0.2, f, 0.4, yerr=[f - lo, hi - f], capsize=3, color="#7570b3", label="forget quality F (95% CI)")
    ax.bar(x + 0.2, [r["final_score"] for r in scored], 0.4, color="#e7298a", label="final score")
    ax.set_xticks(x, [str(r["name"]) for r in scored], rotation=30, ha="right")
    # F's reachable range shrinks with N (about 0.15 at N = 16), so the axis follows the data.
    ax.set_ylim(0, min(1.05, max(0.05, 1.25 * float(max(hi.max(), max(r["final_score"] for r in scored))))))
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Forget quality and final score")
    return _png(fig)


def method_plot(name: str, result: dict[str, Any]) -> str | None:
    """Epsilon histogram, then the forget examples the scorer kept samples of (`confidence_samples`):
    their confidences over the N unlearned and the N retrained models.

    The histogram shows where F comes from (an example earns points only below log(N) or so);
    the examples show why: how the two distributions of one image's confidence sit against each other.
    """
    epsilons = (result.get("examples") or {}).get("epsilon")
    if not epsilons:
        return None
    samples = result.get("confidence_samples") or {}
    n_examples = len(samples.get("unlearned") or [])
    fig = _figure(3.0 * (1 + n_examples), 2.6)
    axes = np.atleast_1d(fig.subplots(1, 1 + n_examples))
    _epsilon_hist(axes[0], np.asarray(epsilons, dtype=float), int((result.get("settings") or {}).get("n_runs", 0)))
    for k, ax in enumerate(axes[1:]):
        _confidence_panel(ax, samples, k)
    score = result.get("score") or {}
    fig.suptitle(f"{name}: F = {score.get('forget_quality', float('nan')):.3f}, final score = {score.get('final_score', float('nan')):.3f}", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _epsilon_hist(ax: Any, eps: np.ndarray, n_models: int) -> None:
    """0.5-wide bins, as the points halve every 0.5 of epsilon; the last bin collects everything
    that earns no points at all (beyond 2·ceil(log(N-1)) half-units, including the cap of 50)."""
    top = math.ceil(math.log(n_models - 1)) if n_models >= 3 else math.ceil(float(eps.max()) + 0.5)
    edges = np.arange(0.0, top + 1.0, 0.5)
    ax.hist(np.clip(eps, 0.0, top + 0.25), bins=edges, color="#7570b3", edgecolor="white")
    ax.set_xticks(edges[::2], [f"{e:g}" for e in edges[::2][:-1]] + [f"≥{top}"])
    ax.set_xlabel("per-example ε")
    ax.set_ylabel("forget examples")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("ε histogram", fontsize=9)


def _confidence_panel(ax: Any, samples: dict[str, Any], k: int) -> None:
    u = np.asarray(samples["unlearned"][k], dtype=float)
    r = np.asarray(samples["retrained"][k], dtype=float)
    both = np.concatenate([u, r])
    lo, hi = float(both.min()), float(both.max())
    bins = np.linspace(lo - 0.5, hi + 0.5, 13) if hi - lo < 1e-9 else np.linspace(lo, hi, 13)
    ax.hist(r, bins=bins, alpha=0.6, color=_RETRAINED, label="retrained")
    ax.hist(u, bins=bins, alpha=0.6, color=_UNLEARNED, label="unlearned")
    eps = samples.get("epsilon")
    label = f"image {samples['image_id'][k]}" if samples.get("image_id") else f"example {k}"
    ax.set_title(f"{label}" + (f", ε = {eps[k]:.2f}" if eps else ""), fontsize=9)
    ax.set_xlabel("logit-scaled confidence")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if k == 0:
        ax.legend(fontsize=7)


# -- HTML ----------------------------------------------------------------------------------------------
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.rejected td { color: #999; }
img { max-width: 100%; }
.note { color: #666; font-size: 0.9em; }
.leaks { display: flex; flex-wrap: wrap; gap: 0.6em; margin: 0.5em 0 1.5em; }
.leaks figure { margin: 0; text-align: center; font-size: 0.8em; color: #444; }
.leaks img { image-rendering: pixelated; display: block; }
"""


def _img(b64: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'


def _html_row(i: int, row: dict[str, Any], with_submitted: bool) -> str:
    cells = _cells(i, row)
    klass = "" if row.get("status") == "scored" else ' class="rejected"'
    tds = "".join(f'<td class="num">{html.escape(c)}</td>' if k in _NUMERIC else f"<td>{html.escape(c)}</td>" for k, c in enumerate(cells))
    title = f' title="{html.escape(str(row.get("message", "")))}"' if row.get("message") else ""
    submitted = f"<td>{html.escape(str(row.get('submitted', '')))}</td>" if with_submitted else ""
    return f'<tr data-name="{html.escape(str(row["name"]))}"{klass}{title}>{tds}{submitted}</tr>'


def _leaks_html(result: dict[str, Any]) -> str:
    """The forget images this method forgot worst (result.json `leaks`), as a captioned row; a
    result scored before the kit kept them has none, and gets no row."""
    figures = [_leak_figure(leak) for leak in result.get("leaks") or []]
    if not figures:
        return ""
    note = '<p class="note">Forget images with the highest ε: whose faces the unlearned models still tell apart from retrained ones.</p>'
    return f'{note}<div class="leaks">{"".join(figures)}</div>'


def _leak_figure(leak: dict[str, Any]) -> str:
    """One thumbnail, shown THUMB_PX wide (a 32 px face twice its size, pixelated: the result keeps only
    its real pixels); the alt text names the image, so the page says which face it is without the picture."""
    eps, person = float(leak["epsilon"]), leak["person_id"]
    alt = html.escape(f"forget image {leak['image_id']} (person {person}), ε = {eps:.2f}")
    img = f'<img src="data:image/png;base64,{leak["png"]}" alt="{alt}" width="{THUMB_PX}">'
    return f"<figure>{img}<figcaption>ε {eps:.1f} · person {html.escape(str(person))}</figcaption></figure>"


def write_html(title: str, rows: list[dict[str, Any]], results: dict[str, dict[str, Any]], out: Path) -> Path:
    """The leaderboard table, a summary plot and each scored method's plots, in one HTML file."""
    with_submitted = any("submitted" in r for r in rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS) + ("<th>submitted</th>" if with_submitted else "")
    parts = [
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        (f'<p class="note">Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. Final score = F × RA ratio × TA ratio; '
        "RA/TA ratio: retain/test accuracy of the unlearned models over the retrained ones. "
        "F/ceiling: F over the F of retrained models scored against other retrained ones (what retraining itself reaches on this pool).</p>"),
        *(f'<p class="note" id="ceiling">{html.escape(c)}</p>' for c in filter(None, [ceiling_line(rows)])),
        f'<table id="leaderboard"><thead><tr>{head}</tr></thead><tbody>',
        *(_html_row(i, r, with_submitted) for i, r in enumerate(rows, 1)),
        "</tbody></table>",
        *(f'<p class="note footnote">{html.escape(n)}</p>' for n in footnotes(rows)),
    ]
    summary = summary_plot(rows)
    if summary:
        parts.append(_img(summary, "forget quality and final score per method"))
    for row in rows:
        plot = method_plot(str(row["name"]), results.get(row["name"]) or {})
        if plot:
            parts += [f'<h2 id="{html.escape(str(row["name"]))}">{html.escape(str(row["name"]))}</h2>', _img(plot, f"epsilon histogram and confidence distributions of {row['name']}")]
            parts.append(_leaks_html(results.get(row["name"]) or {}))
    parts.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "\n".join(parts))
    return out
