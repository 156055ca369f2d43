"""Do the metrics agree? Kendall's τ-b between the rankings of the scored methods by each metric.

F, the final score and the per-example attacks (challenge.scoring.attacks) all ask whether the unlearned
models look like retrained ones, in other ways; where two rank the baselines alike, τ is near 1. A low τ
says the choice of metric decides the leaderboard (docs/metrics.md says when they part). `challenge
baseline` prints the matrix and writes it to agreement.json beside leaderboard.json.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from challenge.reports.stability import kendall_tau

if TYPE_CHECKING:
    from challenge.scoring.row import LeaderboardRow

AGREEMENT_FILE = "agreement.json"
# (LeaderboardRow attribute, label, +1 when higher is better, -1 when lower is): the attacks detect, so lower wins
METRICS = (
    ("final_score", "final", 1),
    ("forget_quality", "F", 1),
    ("ulira_accuracy", "U-LiRA", -1),
    ("klom", "KLoM", -1),
    ("auc_fold", "AUC", -1),
)


def agreement(rows: list[LeaderboardRow]) -> dict[str, Any]:
    """τ-b for every two metrics over the methods scored by both (None with fewer than two such methods)."""
    shown = [(key, label, sign) for key, label, sign in METRICS if any(getattr(r, key) is not None for r in rows)]
    taus: dict[str, dict[str, float | None]] = {label: {} for _, label, _ in shown}
    for (ka, la, sa), (kb, lb, sb) in itertools.combinations(shown, 2):
        both = [r for r in rows if getattr(r, ka) is not None and getattr(r, kb) is not None]
        tau = kendall_tau([sa * getattr(r, ka) for r in both], [sb * getattr(r, kb) for r in both])
        taus[la][lb] = taus[lb][la] = tau
    for _, label, _ in shown:
        taus[label][label] = 1.0
    return {
        "metrics": [label for _, label, _ in shown],
        "methods": [r.name for r in rows if r.final_score is not None],
        "tau_b": taus,
        "note": "Kendall's tau-b between the rankings each metric gives (higher F and final score are better; "
        "lower U-LiRA balanced accuracy, KLoM and per-example AUC are)",
    }


def agreement_table(agree: dict[str, Any]) -> str:
    """The τ matrix, one row and column per metric."""
    labels = agree["metrics"]
    width = max([len(label) for label in labels] + [6])
    lines = [f"Kendall's τ-b between rankings of {len(agree['methods'])} methods"]
    lines.append(" " * width + "".join(f"  {label:>{width}}" for label in labels))
    for a in labels:
        cells = "".join(f"  {_tau(agree['tau_b'][a].get(b)):>{width}}" for b in labels)
        lines.append(f"{a:<{width}}{cells}")
    return "\n".join(lines)


def _tau(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
