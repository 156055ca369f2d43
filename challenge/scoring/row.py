"""A leaderboard's row, made of a Result in one place: `LeaderboardRow.from_result` is where every leaderboard's
numbers come from: the terminal table and the HTML page (challenge.reports.leaderboard), W&B, the Codabench
scoring program's scores.json and the bundle's leaderboard columns (SCORE_COLUMNS) all read a row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from challenge.scoring.result import Ceiling, Result, Score


class Column(NamedTuple):
    key: str  # a LeaderboardRow attribute, and the scores.json key
    title: str
    sorting: str  # "desc": higher is better


# Codabench's leaderboard columns (scores.json keys), in order; the first decides the ranking.
SCORE_COLUMNS = (
    Column("final_score", "Final score", "desc"),
    Column("forget_quality", "Forget quality F", "desc"),
    Column("f_ci_low", "F 95% CI low", "desc"),
    Column("f_ci_high", "F 95% CI high", "desc"),
    Column("retain_ratio", "Retain accuracy ratio", "desc"),
    Column("test_ratio", "Test accuracy ratio", "desc"),
    Column("seconds_per_run", "Seconds per run", "asc"),
    # the attacks' headlines (challenge.scoring.attacks; docs/metrics.md): lower is better, NaN where not computed
    Column("ulira_accuracy", "U-LiRA balanced accuracy", "asc"),
    Column("klom", "KLoM", "asc"),
    Column("auc_fold", "Per-example AUC", "asc"),
    # collateral damage (challenge.scoring.collateral): F on the retain and test samples, higher is better
    Column("retain_f", "F on retain (collateral)", "desc"),
    Column("test_f", "F on test (collateral)", "desc"),
)


@dataclass(frozen=True)
class LeaderboardRow:
    """One method on a leaderboard: its numbers (None unless scored), where its kept confidences are,
    and, once ranked (challenge.reports.leaderboard.rank), how it compares with the row below.

    seconds_per_run: the mean charged cost in the budget's clock; budget_seconds: a run's budget (None:
    exempt); budget_used: the runs' cost as a fraction of what the budget allows them in all;
    f_of_ceiling: F over the pool's ceiling's F. p_next: paired P(F > next row's F), or None;
    compared: "paired", "intervals" (a kept file missing) or None (no scored row below); overlap: the
    F intervals overlap; close: not told apart from the next row. ulira_accuracy, klom, auc_fold: the
    attacks' headlines (mean over examples; None where scorer.attacks left one out). retain_f, test_f: F on the
    collateral samples of retain and test (None where the pool kept none).
    """

    name: str
    status: str
    message: str = ""
    final_score: float | None = None
    forget_quality: float | None = None
    f_ci: list[float] | None = None
    retain_ratio: float | None = None
    test_ratio: float | None = None
    seconds_per_run: float | None = None
    budget_seconds: float | None = None
    budget_used: float | None = None
    confidences: str | None = None
    n_bootstrap: int | None = None
    seed: int | None = None
    ceiling: Ceiling | None = None
    f_of_ceiling: float | None = None
    team: str | None = None
    submitted: str | None = None
    p_next: float | None = None
    compared: str | None = None
    overlap: bool = False
    close: bool = False
    ulira_accuracy: float | None = None
    klom: float | None = None
    auc_fold: float | None = None
    retain_f: float | None = None
    test_f: float | None = None
    kept_ceiling: list[float | None] | None = None  # retraining's own F on the retain and test samples

    @classmethod
    def from_score(cls, name: str, score: Score, run_cost: list[float], **more: Any) -> "LeaderboardRow":
        """The numbers of a scored submission: all that the Codabench scoring program has (no budget, no files)."""
        top = score.ceiling.forget_quality if score.ceiling else None
        a, kept = score.attacks, {c.part: c for c in score.collateral or []}
        return cls(
            name,
            "scored",
            final_score=score.final_score,
            forget_quality=score.forget_quality,
            f_ci=score.forget_quality_ci,
            retain_ratio=score.retain_ratio,
            test_ratio=score.test_ratio,
            seconds_per_run=float(np.mean(run_cost)) if run_cost else None,
            n_bootstrap=score.n_bootstrap,
            seed=score.seed,
            ceiling=score.ceiling,
            f_of_ceiling=score.forget_quality / top if top else None,
            ulira_accuracy=a.ulira.balanced_accuracy if a and a.ulira else None,
            klom=a.klom.mean if a and a.klom else None,
            auc_fold=a.auc.mean_fold if a and a.auc else None,
            retain_f=kept["retain"].forget_quality if "retain" in kept else None,
            test_f=kept["test"].forget_quality if "test" in kept else None,
            kept_ceiling=[kept[p].ceiling if p in kept else None for p in ("retain", "test")] if kept else None,
            **more,
        )

    @classmethod
    def from_result(cls, name: str, result: Result, folder: Path | None = None) -> "LeaderboardRow":
        """A rejected result keeps its status and message, no numbers. ``folder`` is where its result.json
        lies: the per-model confidences kept beside it let `rank` compare neighbours paired."""
        if result.score is None or result.budget is None:
            return cls(name, result.status, result.message)
        b, kept = result.budget, result.forget_confidences
        return cls.from_score(
            name,
            result.score,
            b.run_cost,
            message=result.message,
            budget_seconds=None if result.settings.budget_exempt else b.per_run,
            budget_used=b.used_budgets / len(b.run_cost) if b.run_cost and b.used_budgets is not None else None,
            confidences=str(folder / kept) if folder is not None and kept and (folder / kept).is_file() else None,
        )

    @property
    def f_ci_low(self) -> float | None:
        return self.f_ci[0] if self.f_ci else None

    @property
    def f_ci_high(self) -> float | None:
        return self.f_ci[1] if self.f_ci else None

    def scores(self) -> dict[str, float]:
        """scores.json: SCORE_COLUMNS' values; Codabench wants a number in every column, so NaN for none."""
        return {c.key: math.nan if (v := getattr(self, c.key)) is None else float(v) for c in SCORE_COLUMNS}
