"""Leaderboards: one table for the terminal, one static HTML page with its plots inside.

The single renderer for every leaderboard of the kit (`challenge baseline`, the competition's
`challenge leaderboard --html`), so that a method looks the same wherever it is ranked. A row is a
plain dict:

  name, status, final_score, forget_quality, f_ci ([lo, hi] or None), retain_ratio, test_ratio,
  seconds_per_run (mean charged cost, in the budget's clock), budget_seconds (None: exempt from the budget),
  budget_used (the runs' cost as a fraction of what the budget allows them in all)
  optional: team, submitted (text), overlap (True: this row's CI for F overlaps the next row's)

Numbers are None for a row that was not scored. `results` (name -> a scorer result.json) feed
the plots; a row without one, or a result without samples, is simply shown without plots. The
page is one file (plots are base64 PNGs), so it can be mailed, archived or served as is.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from matplotlib.ticker import MaxNLocator

from challenge.files import write_atomic

_UNLEARNED, _RETRAINED = "#d95f02", "#1b9e77"


# -- rows ------------------------------------------------------------------------------------------
def row_from_result(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """A row from a scorer result (result.json); a rejected submission keeps its status, no numbers."""
    row: dict[str, Any] = {"name": name, "status": result.get("status", "missing"), "message": result.get("message", "")}
    score = result.get("score") or {}
    budget = result.get("budget") or {}
    settings = result.get("settings") or {}
    costs = budget.get("run_cost") or []
    row |= {
        "final_score": score.get("final_score"),
        "forget_quality": score.get("forget_quality"),
        "f_ci": score.get("forget_quality_ci"),
        "retain_ratio": score.get("retain_ratio"),
        "test_ratio": score.get("test_ratio"),
        "seconds_per_run": float(np.mean(costs)) if costs else None,
        "budget_seconds": None if settings.get("budget_exempt") else budget.get("per_run"),
        "budget_used": budget["used_budgets"] / len(costs) if costs else None,
    }
    return row


def rank(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best final score first, unscored rows last; marks rows whose F interval overlaps the next one's,
    because such neighbours are not told apart by the evaluation (a rerun could swap them)."""
    ordered = sorted(rows, key=lambda r: (r.get("final_score") is None, -(r.get("final_score") or 0.0)))
    out = [dict(r) for r in ordered]
    for row, below in zip(out, out[1:] + [None]):
        a, b = row.get("f_ci"), below.get("f_ci") if below else None
        row["overlap"] = bool(a and b and a[0] <= b[1] and b[0] <= a[1])
    return out


# -- text --------------------------------------------------------------------------------------------
_COLUMNS = ("#", "method", "status", "final", "F [95% CI]", "RA ratio", "TA ratio", "s/run / budget")


def _num(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _f_text(row: dict[str, Any]) -> str:
    if row.get("forget_quality") is None:
        return "—"
    ci = row.get("f_ci")
    mark = " ≈" if row.get("overlap") else ""
    return f"{row['forget_quality']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]{mark}" if ci else f"{row['forget_quality']:.3f}{mark}"


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
    return [str(i), name, str(row.get("status", "")), _num(row.get("final_score")), _f_text(row),
            _num(row.get("retain_ratio")), _num(row.get("test_ratio")), _seconds_text(row)]


def leaderboard_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width table, rows in the given order; ≈ marks an F interval overlapping the next row's."""
    body = [_cells(i, r) for i, r in enumerate(rows, 1)]
    widths = [max(len(c) for c in col) for col in zip(_COLUMNS, *body)]
    line = lambda cells: "  ".join(c.rjust(w) if k in (0, 3, 5, 6) else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths))).rstrip()  # noqa: E731
    out = [line(_COLUMNS), "  ".join("-" * w for w in widths)] + [line(c) for c in body]
    if any(r.get("overlap") for r in rows):
        out.append("≈: the F interval overlaps the next row's, so the evaluation does not separate them")
    return "\n".join(out)


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
"""


def _img(b64: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'


def _html_row(i: int, row: dict[str, Any], with_submitted: bool) -> str:
    cells = _cells(i, row)
    klass = "" if row.get("status") == "scored" else ' class="rejected"'
    tds = "".join(f'<td class="num">{html.escape(c)}</td>' if k in (0, 3, 5, 6) else f"<td>{html.escape(c)}</td>" for k, c in enumerate(cells))
    title = f' title="{html.escape(str(row.get("message", "")))}"' if row.get("message") else ""
    submitted = f"<td>{html.escape(str(row.get('submitted', '')))}</td>" if with_submitted else ""
    return f'<tr data-name="{html.escape(str(row["name"]))}"{klass}{title}>{tds}{submitted}</tr>'


def write_html(title: str, rows: list[dict[str, Any]], results: dict[str, dict[str, Any]], out: Path) -> Path:
    """The leaderboard table, a summary plot and each scored method's plots, in one HTML file."""
    with_submitted = any("submitted" in r for r in rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS) + ("<th>submitted</th>" if with_submitted else "")
    parts = [
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. Final score = F × RA ratio × TA ratio; '
        "RA/TA ratio: retain/test accuracy of the unlearned models over the retrained ones. ≈: the F interval overlaps the next row's.</p>",
        f'<table id="leaderboard"><thead><tr>{head}</tr></thead><tbody>',
        *(_html_row(i, r, with_submitted) for i, r in enumerate(rows, 1)),
        "</tbody></table>",
    ]
    summary = summary_plot(rows)
    if summary:
        parts.append(_img(summary, "forget quality and final score per method"))
    for row in rows:
        plot = method_plot(str(row["name"]), results.get(row["name"]) or {})
        if plot:
            parts += [f'<h2 id="{html.escape(str(row["name"]))}">{html.escape(str(row["name"]))}</h2>', _img(plot, f"epsilon histogram and confidence distributions of {row['name']}")]
    parts.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "\n".join(parts))
    return out
