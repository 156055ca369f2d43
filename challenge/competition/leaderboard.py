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
from typing import Any, Sequence, Union

from challenge.competition.store import Store, Submission
from challenge.reports.leaderboard import rank
from challenge.reports.over_splits import over_splits
from challenge.reports.stability import final_se
from challenge.scoring.result import Result
from challenge.scoring.row import LeaderboardRow

Parts = Union[str, Sequence[str]]  # a phase as the store holds it: its name, or its splits' part names


def standings(
    store: Store, public: Parts, phase: str | None = None, root: Path | None = None
) -> tuple[list[LeaderboardRow], dict[str, Result]]:
    """(rows, results by row name) for `phase` (one part), the public one by default.

    ``root`` is the competition's folder: the worker scored submission i's phase p in
    root/submissions/i/p, where the scorer kept its per-model confidences, so that neighbouring
    rows are compared paired; without it, rows fall back to their F intervals.
    """
    phase = phase or _parts(public)[0]
    subs = store.submissions()
    shown = store.results(phase)
    best = _best(subs, selection(store, public), shown)
    latest = {s.team: s for s in subs if s.team not in best}
    rows = [_row(s, LeaderboardRow.from_result(_name(s), shown[s.id], _folder(root, s, phase))) for s in best.values()]
    rows += [_row(s, LeaderboardRow(_name(s), s.verdict or s.status, s.message or "")) for s in latest.values()]
    results = {_name(s): shown[s.id] for s in best.values()}
    return rank(rows), results


def ranked_submissions(store: Store, public: Parts, phase: str) -> list[Submission]:
    """Each team's ranked submission that `phase` scored, best `phase` score first (ties: the earlier file)."""
    shown = store.results(phase)
    best = [s for s in _best(store.submissions(), selection(store, public), shown).values() if shown[s.id].score]
    return sorted(best, key=lambda s: (-_final(shown, s), s.id))


def over_split_standings(store: Store, public: Parts, parts: Sequence[str]) -> list[dict[str, Any]]:
    """A phase over several splits (challenge.competition.phases): each team's ranked submission, by its mean final
    score over the parts with an interval over splits, ranks shared where the splits do not separate teams."""
    per_part = [store.results(part) for part in parts]
    in_all = {sid for sid in per_part[0] if all(sid in r for r in per_part[1:])}
    best = _best(store.submissions(), selection(store, public), {sid: per_part[0][sid] for sid in in_all})
    finals, noise = {}, {}
    for sub in best.values():
        rows = [_score_row(results[sub.id]) for results in per_part]
        name = f"{_name(sub)} ({sub.team})"
        finals[name], noise[name] = [r["final_score"] for r in rows], [final_se(r) for r in rows]
    return over_splits(finals, noise)


def selection(store: Store, public: Parts) -> dict[int, float]:
    """What picks each team's ranked submission: its public final score (the mean over the public phase's splits,
    scored on all of them); the only score anyone sees before finalize."""
    per_part = [store.results(part) for part in _parts(public)]
    out = {}
    for sid in per_part[0]:
        finals = [r[sid].score.final_score if sid in r and r[sid].score else None for r in per_part]
        if all(f is not None for f in finals):
            out[sid] = sum(finals) / len(finals)
    return out


def _parts(public: Parts) -> list[str]:
    return [public] if isinstance(public, str) else list(public)


def _score_row(result: Result) -> dict[str, Any]:
    score = result.score
    if score is None:
        return {"final_score": None}
    return {"final_score": score.final_score, "forget_quality": score.forget_quality, "f_ci": score.forget_quality_ci}


def _best(subs: list[Submission], chosen: dict[int, float], shown: dict[int, Result]) -> dict[str, Submission]:
    """Each team's best public submission among those `shown` has a result for."""
    best: dict[str, Submission] = {}
    for sub in subs:  # in submission order, so that a tie goes to the earlier file
        if sub.status == "scored" and sub.id in shown and sub.id in chosen:
            if sub.team not in best or chosen[sub.id] > chosen[best[sub.team].id]:
                best[sub.team] = sub
    return best


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


def final_standings(
    store: Store, public: str, last: str, rescored: str, root: Path | None = None
) -> tuple[list[LeaderboardRow], dict[str, Result]]:
    """The final ranking after a re-scoring of the leaders (challenge.competition.rescoring): the re-scored teams
    first, ranked by their `rescored` results, then every other team as the `last` phase ranks it."""
    top, top_results = standings(store, public, rescored, root)
    teams = {row.team for row in top if row.name in top_results}
    rest, rest_results = standings(store, public, last, root)
    rows = rank(row for row in top if row.team in teams) + [row for row in rest if row.team not in teams]
    return rows, {**{k: v for k, v in rest_results.items() if k not in top_results}, **top_results}
