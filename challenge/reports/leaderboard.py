"""Leaderboards: one table for the terminal, one static HTML page with its plots inside.

The single renderer for every leaderboard of the kit (`challenge baseline`, the competition's
`challenge leaderboard --html`), so that a method looks the same wherever it is ranked. A row is a
challenge.scoring.row.LeaderboardRow (made by `LeaderboardRow.from_result`, the one place a
leaderboard's numbers come from); `rank` orders rows and adds how each compares with the next.

`results` (name -> its scorer Result) feed the plots; a row without one, or a rejected result, is
simply shown without plots. The page is one file (plots are base64 PNGs), so it can be mailed,
archived or served as is.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from challenge.files import write_atomic
from challenge.reports.leaks import THUMB_PX
from challenge.scoring.result import ConfidenceSamples, Leak, Result
from challenge.scoring.row import LeaderboardRow

_UNLEARNED, _RETRAINED = "#d95f02", "#1b9e77"


# -- ranking ---------------------------------------------------------------------------------------
SEPARATED_P = 0.95  # neighbours where neither F beats the other with this paired P are marked as not told apart
_KEPT = "forget_confidences.npz"  # challenge.scoring.compare.CONFIDENCES_FILE, named here without importing torch


def rank(rows: Iterable[LeaderboardRow]) -> list[LeaderboardRow]:
    """Best final score first, unscored rows last; each scored row gets P(its F > the next row's F)
    from a paired bootstrap of their kept confidences (`p_next`), and `close` when neither F beats the
    other with SEPARATED_P: such neighbours are not told apart by the evaluation (a rerun could swap them).
    Where either row has no kept confidences, `close` falls back to their F intervals overlapping."""
    out = sorted(rows, key=lambda r: (r.final_score is None, -(r.final_score or 0.0)))
    scored = [r.final_score is not None for r in out]
    p_next = {i: _paired_p(out[i], out[i + 1]) for i in range(len(out) - 1) if scored[i] and scored[i + 1]}
    ranked = []
    for i, (row, below) in enumerate(zip(out, [*out[1:], None])):
        a, b = row.f_ci, below.f_ci if below else None
        overlap, p = bool(a and b and a[0] <= b[1] and b[0] <= a[1]), p_next.get(i)
        compared = None if i not in p_next else "paired" if p is not None else "intervals"
        close = _undecided(p) if p is not None else overlap
        ranked.append(replace(row, overlap=overlap, p_next=p, compared=compared, close=close))
    return ranked


def _undecided(p: float) -> bool:
    """Neither F beats the other with SEPARATED_P: rows ranked by final score can be separated in F
    the other way round (P near 0), which is a clear difference, not a tie."""
    return max(p, 1.0 - p) < SEPARATED_P


def _paired_p(row: LeaderboardRow, below: LeaderboardRow) -> float | None:
    """P(row's F > below's F) on shared retrained models and examples, or None if it cannot be had.
    With the results' own bootstrap count and seed, their kept replicates make it instant."""
    if not (row.confidences and below.confidences):
        return None
    from challenge.errors import (
        ChallengeError,  # the comparison imports the metric (and torch): only when needed
    )
    from challenge.scoring.compare import compare_kept, read_confidences

    n_bootstrap = max(row.n_bootstrap or 0, below.n_bootstrap or 0) or 200
    try:
        kept = [read_confidences(Path(str(r.confidences))) for r in (row, below)]
        return compare_kept(*kept, n_bootstrap, row.seed or 0).p_a_above
    except ChallengeError:  # two pools, or other retrained models: intervals are all that is left
        return None


# -- text --------------------------------------------------------------------------------------------
_COLUMNS = (
    "#",
    "method",
    "status",
    "final",
    "F [95% CI]",
    "P(F > next)",
    "F/ceiling",
    "RA ratio",
    "TA ratio",
    "s/run / budget",
    "U-LiRA / KLoM / AUC",
    "F retain / test",
)
_NUMERIC = (0, 3, 5, 6, 7, 8, 10, 11)  # right-aligned columns


def _num(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _f_text(row: LeaderboardRow) -> str:
    if row.forget_quality is None:
        return "—"
    ci = row.f_ci
    return f"{row.forget_quality:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{row.forget_quality:.3f}"


def _p_text(row: LeaderboardRow) -> str:
    """P with a mark when it separates neither way; without P, what the interval fallback found."""
    if row.compared == "paired" and row.p_next is not None:
        return f"{row.p_next:.3f}" + (" ≈" if row.close else "")
    if row.compared == "intervals":
        return "CI overlap ≈" if row.close else "CI apart"
    return "—"


def _seconds_text(row: LeaderboardRow) -> str:
    s, budget = row.seconds_per_run, row.budget_seconds
    if s is None:
        return "—"
    if budget is None:
        return f"{s:.2f} (exempt)"
    used = row.budget_used
    return f"{s:.2f} / {budget:.2f}" + (f" ({used:.0%})" if used is not None else "")


def _cells(i: int, row: LeaderboardRow) -> list[str]:
    name = f"{row.name} ({row.team})" if row.team else row.name
    return [
        str(i),
        name,
        row.status,
        _num(row.final_score),
        _f_text(row),
        _p_text(row),
        _num(row.f_of_ceiling),
        _num(row.retain_ratio),
        _num(row.test_ratio),
        _seconds_text(row),
        _attacks_text(row),
        "—" if row.retain_f is None and row.test_f is None else f"{_num(row.retain_f)} / {_num(row.test_f)}",
    ]


def _attacks_text(row: LeaderboardRow) -> str:
    """The attacks' headlines in one cell (U-LiRA balanced accuracy, KLoM, per-example AUC), "—" for one not run."""
    return _attack_cells(row.ulira_accuracy, row.klom, row.auc_fold)


def _attack_cells(*values: float | None) -> str:
    return "—" if all(v is None for v in values) else " / ".join(_num(v, 2) for v in values)


def ceiling_line(rows: list[LeaderboardRow]) -> str | None:
    """One line for the pool's ceiling, when every scored row was scored against the same one."""
    ceilings = [r.ceiling for r in rows if r.final_score is not None]
    c = ceilings[0] if ceilings else None
    if not c or any(other != c for other in ceilings):
        return None
    ci = c.forget_quality_ci
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    line = f"ceiling: F = {c.forget_quality:.3f}{interval} (retrained vs retrained, N={c.n_models}, K={c.n_examples})"
    kept = next((r.kept_ceiling for r in rows if r.kept_ceiling), None)
    if kept:
        line += f"; F on retain / test there: {_num(kept[0])} / {_num(kept[1])}"
    a = c.attacks
    if a is None:
        return line
    chance = (a.ulira.balanced_accuracy if a.ulira else None, a.klom.mean if a.klom else None)
    return f"{line}; U-LiRA / KLoM / AUC there (chance): {_attack_cells(*chance, a.auc.mean_fold if a.auc else None)}"


def footnotes(rows: list[LeaderboardRow]) -> list[str]:
    """What the ≈ mark means here, and when some pairs could only be compared by their intervals."""
    notes = []
    if any(r.close and r.compared == "paired" for r in rows):
        notes.append(
            f"≈: P(F > next row's F) lies between {1 - SEPARATED_P:.0%} and {SEPARATED_P:.0%} in a paired bootstrap "
            "(same retrained models and forget examples), "
            "so the evaluation does not separate the two rows' F"
        )
    if any(r.compared == "intervals" for r in rows):
        notes.append(
            f"CI overlap ≈ / CI apart: a pair where a row lacks its kept confidences ({_KEPT}) is compared by whether "
            "their F intervals overlap"
        )
    return notes


def leaderboard_table(rows: list[LeaderboardRow]) -> str:
    """Fixed-width table, rows in the given order; the ceiling above it, the marks explained below."""
    body = [_cells(i, r) for i, r in enumerate(rows, 1)]
    widths = [max(len(c) for c in col) for col in zip(_COLUMNS, *body)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if k in _NUMERIC else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

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


def summary_plot(rows: list[LeaderboardRow]) -> str | None:
    """F with its interval and the final score, per scored row, in ranking order."""
    scored = [r for r in rows if r.final_score is not None and r.forget_quality is not None]
    if not scored:
        return None
    fig = _figure(max(5.0, 0.7 * len(scored) + 2), 3.2)
    ax = fig.subplots()
    x = np.arange(len(scored))
    f = np.array([r.forget_quality for r in scored])
    lo = np.array([r.f_ci_low if r.f_ci else v for r, v in zip(scored, f)])
    hi = np.array([r.f_ci_high if r.f_ci else v for r, v in zip(scored, f)])
    final = [float(r.final_score or 0.0) for r in scored]
    ax.bar(x - 0.2, f, 0.4, yerr=[f - lo, hi - f], capsize=3, color="#7570b3", label="forget quality F (95% CI)")
    ax.bar(x + 0.2, final, 0.4, color="#e7298a", label="final score")
    ax.set_xticks(x, [r.name for r in scored], rotation=30, ha="right")
    # F's reachable range shrinks with N (about 0.15 at N = 16), so the axis follows the data.
    ax.set_ylim(0, min(1.05, max(0.05, 1.25 * float(max(hi.max(), max(final))))))
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Forget quality and final score")
    return _png(fig)


def method_plot(name: str, result: Result | None) -> str | None:
    """Epsilon histogram, then the forget examples the scorer kept samples of (`confidence_samples`):
    their confidences over the N unlearned and the N retrained models.

    The histogram shows where F comes from (an example earns points only below log(N) or so);
    the examples show why: how the two distributions of one image's confidence sit against each other.
    """
    if result is None or result.score is None or result.examples is None or not result.examples.epsilon:
        return None
    samples = result.confidence_samples
    n_examples = len(samples.unlearned) if samples else 0
    fig = _figure(3.0 * (1 + n_examples), 2.6)
    axes = np.atleast_1d(fig.subplots(1, 1 + n_examples))
    _epsilon_hist(axes[0], np.asarray(result.examples.epsilon, dtype=float), result.settings.n_runs)
    for k, ax in enumerate(axes[1:]):
        _confidence_panel(ax, samples, k)
    score = result.score
    fig.suptitle(f"{name}: F = {score.forget_quality:.3f}, final score = {score.final_score:.3f}", fontsize=10)
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


def _confidence_panel(ax: Any, samples: ConfidenceSamples, k: int) -> None:
    u = np.asarray(samples.unlearned[k], dtype=float)
    r = np.asarray(samples.retrained[k], dtype=float)
    both = np.concatenate([u, r])
    lo, hi = float(both.min()), float(both.max())
    bins = np.linspace(lo - 0.5, hi + 0.5, 13) if hi - lo < 1e-9 else np.linspace(lo, hi, 13)
    ax.hist(r, bins=bins, alpha=0.6, color=_RETRAINED, label="retrained")
    ax.hist(u, bins=bins, alpha=0.6, color=_UNLEARNED, label="unlearned")
    ax.set_title(f"image {samples.image_id[k]}, ε = {samples.epsilon[k]:.2f}", fontsize=9)
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


def _html_row(i: int, row: LeaderboardRow, with_submitted: bool) -> str:
    cells = _cells(i, row)
    klass = "" if row.status == "scored" else ' class="rejected"'
    tds = "".join(
        f'<td class="num">{html.escape(c)}</td>' if k in _NUMERIC else f"<td>{html.escape(c)}</td>"
        for k, c in enumerate(cells)
    )
    title = f' title="{html.escape(row.message)}"' if row.message else ""
    submitted = f"<td>{html.escape(row.submitted or '')}</td>" if with_submitted else ""
    return f'<tr data-name="{html.escape(row.name)}"{klass}{title}>{tds}{submitted}</tr>'


def _measures_html(result: Result) -> list[str]:
    """The attacks and F per memorisation stratum, as the result table says them (challenge.reports.result)."""
    from challenge.reports.result import attack_lines, strata_lines

    score = result.score
    lines = [*attack_lines(score.attacks), *strata_lines(score.strata)] if score else []
    return [f'<p class="note measure">{html.escape(" ".join(line.split()))}</p>' for line in lines]


def _leaks_html(result: Result) -> str:
    """The forget images this method forgot worst (result.json `leaks`), as a captioned row."""
    figures = [_leak_figure(leak) for leak in result.leaks]
    if not figures:
        return ""
    note = (
        '<p class="note">Forget images with the highest ε: whose faces the unlearned models still tell apart from '
        "retrained ones.</p>"
    )
    return f'{note}<div class="leaks">{"".join(figures)}</div>'


def _leak_figure(leak: Leak) -> str:
    """One thumbnail, shown THUMB_PX wide (a 32 px face twice its size, pixelated: the result keeps only
    its real pixels); the alt text names the image, so the page says which face it is without the picture."""
    eps, person = float(leak.epsilon), leak.person_id
    alt = html.escape(f"forget image {leak.image_id} (person {person}), ε = {eps:.2f}")
    img = f'<img src="data:image/png;base64,{leak.png}" alt="{alt}" width="{THUMB_PX}">'
    return f"<figure>{img}<figcaption>ε {eps:.1f} · person {person}</figcaption></figure>"


def write_html(title: str, rows: list[LeaderboardRow], results: dict[str, Result], out: Path) -> Path:
    """The leaderboard table, a summary plot and each scored method's plots, in one HTML file."""
    with_submitted = any(r.submitted is not None for r in rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS) + ("<th>submitted</th>" if with_submitted else "")
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta '
        f'charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>',
        f"<h1>{html.escape(title)}</h1>",
        (
            f'<p class="note">Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. Final score = F × RA ratio × '
            "TA ratio; "
            "RA/TA ratio: retain/test accuracy of the unlearned models over the retrained ones. "
            "F/ceiling: F over the F of retrained models scored against other retrained ones (what retraining itself "
            "reaches on this pool). U-LiRA / KLoM / AUC: the per-example attacks (docs/metrics.md; lower is better: "
            "0.5 / 0 / about 0.5 at chance). F retain / test: F on samples of retain and test images, which the "
            "models should keep (collateral damage: near the ceiling's, unlearning left no trace there).</p>"
        ),
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
        result = results.get(row.name)
        plot = method_plot(row.name, result)
        if plot and result is not None:
            name = html.escape(row.name)
            alt = f"epsilon histogram and confidence distributions of {row.name}"
            parts += [f'<h2 id="{name}">{name}</h2>', _img(plot, alt), *_measures_html(result), _leaks_html(result)]
    parts.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "\n".join(parts))
    return out
