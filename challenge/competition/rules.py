"""What a submission must satisfy before it is stored: the competition's limits, from its config.

Every refusal is a ChallengeError naming the rule and the way out; the quota and duplicate checks
run inside the store's insert transaction, so a refused submission leaves no trace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from omegaconf import DictConfig

from challenge.errors import ChallengeError

if TYPE_CHECKING:
    from challenge.competition.store import Store

TEAM_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Limits:
    per_team_per_day: int | None
    max_file_bytes: int | None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "Limits":
        lim = cfg.competition.limits
        return cls(_optional_int(lim.per_team_per_day), _optional_int(lim.max_file_bytes))


def _optional_int(value: object) -> int | None:
    return None if value is None else int(value)


def check_team(team: str) -> str:
    if not TEAM_PATTERN.fullmatch(team):
        raise ChallengeError(
            f"team name {team!r} is not allowed: use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter "
            "or digit"
        )
    return team


def read_file(path: Path, limits: Limits) -> bytes:
    """The file's bytes, after the checks that need no database; the size is checked before reading."""
    if not path.is_file():
        raise ChallengeError(f"no file at {path}: give the path of the .py file that defines unlearning(...)")
    if path.suffix != ".py":
        raise ChallengeError(f"{path.name} is not a .py file: a submission is one Python file defining unlearning(...)")
    size = path.stat().st_size
    if limits.max_file_bytes is not None and size > limits.max_file_bytes:
        raise ChallengeError(
            f"{path.name} is {size} bytes, over this competition's limit of {limits.max_file_bytes} bytes "
            "(competition.limits.max_file_bytes)"
        )
    if size == 0:
        raise ChallengeError(f"{path.name} is empty")
    return path.read_bytes()


def utc_day_start(now: float) -> float:
    """Quotas reset at midnight UTC, as on Kaggle."""
    day = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


def in_transaction_checks(limits: Limits) -> Callable[["Store", str, str, float], None]:
    """Finalization, duplicate and quota checks for Store.add, evaluated under the write lock."""

    def check(store: "Store", team: str, sha256: str, now: float) -> None:
        finalized = store.last_event("finalize")
        if finalized is not None:
            raise ChallengeError(
                f"the competition was finalized on {_when(finalized[0])}; no more submissions are taken"
            )
        earlier = store.find_sha256(sha256)
        if earlier is not None:
            who = f"by team {team}" if earlier.team == team else "by another team"
            raise ChallengeError(
                f"this file was already submitted {who} (submission {earlier.id}, {_when(earlier.submitted_at)}); "
                "change it before submitting again"
            )
        if limits.per_team_per_day is not None:
            used = store.count_since(team, utc_day_start(now))
            if used >= limits.per_team_per_day:
                reset = _when(utc_day_start(now) + timedelta(days=1).total_seconds())
                raise ChallengeError(
                    f"team {team} has used its {limits.per_team_per_day} submissions for today "
                    f"(competition.limits.per_team_per_day); the count resets at {reset}"
                )

    return check


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
