"""Standings from the store: each team's best submission, ranked, in `challenge.reports.leaderboard`'s rows.

A team's best submission is its best on the public phase, the only score anyone sees before
finalize; the private ranking then ranks those same submissions by their private score (Kaggle's
default when a team selects nothing), so the private split can never be used to pick a submission.
Teams with nothing scored yet are listed after the ranked ones with their latest verdict, so that
every team appears.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from challenge.competition.store import Store, Submission
from challenge.reports.leaderboard import rank
from challenge.scoring.result import Result
from challenge.scoring.row import LeaderboardRow


def standings(
    store: Store, public: str, phase: str | None = None, root: Path | None = None
) -> tuple[list[LeaderboardRow], dict[str, Result]]:
    """(rows, results by row name) for `phase`, the public one by default.

    ``root`` is the competition's folder: the worker scored submission i's phase p in
    root/submissions/i/p, where the scorer kept its per-model confidences, so that neighbouring
    rows are compared paired; without it, rows fall back to their F intervals.
    """
    phase = phase or public
    subs = store.submissions()
    chosen, shown = store.results(public), store.results(phase)
    best: dict[str, Submission] = {}
    for sub in subs:  # in submission order, so that a tie goes to the earlier file
        if sub.status == "scored" and sub.id in shown and _final(chosen, sub) > _final(chosen, best.get(sub.team)):
            best[sub.team] = sub
    latest = {s.team: s for s in subs if s.team not in best}
    rows = [_row(s, LeaderboardRow.from_result(_name(s), shown[s.id], _folder(root, s, phase))) for s in best.values()]
    rows += [_row(s, LeaderboardRow(_name(s), s.verdict or s.status, s.message or "")) for s in latest.values()]
    results = {_name(s): shown[s.id] for s in best.values()}
    return rank(rows), results


def _final(results: dict[int, Result], sub: Submission | None) -> float:
    score = results[sub.id].score if sub is not None else None
    return float("-inf") if score is None else score.final_score


def _name(sub: Submission) -> str:
    return f"#{sub.id} {sub.filename}"


def _folder(root: Path | None, sub: Submission, phase: str) -> Path | None:
    """Where challenge.competition.worker had the scorer write this submission's phase result."""
    return None if root is None else root / "submissions" / str(sub.id) / phase


def _row(sub: Submission, row: LeaderboardRow) -> LeaderboardRow:
    submitted = datetime.fromtimestamp(sub.submitted_at, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return replace(row, team=sub.team, submitted=submitted)
