"""Phases as in 2023: the same competition drawn twice (public and private), told apart only by
config overrides such as `data.split.seed`, so each phase has its own forget identities, original
model and reference pool (the pool folder is keyed by the fingerprint of the phase's config).

A phase may also name several forget sets (`splits: [1, 2, 3]`, data.split.seed values): one split's
order among the leaders is mostly that forget set's luck, so such a phase scores every submission on
each split (each its own original and pool) and ranks by the mean over them, with an interval that
holds the split-to-split variation (challenge.reports.over_splits). Each split is a *part* of the
phase, stored under its own name (`private/split=2`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from challenge.checks import refuse
from challenge.errors import ChallengeError


@dataclass(frozen=True)
class Phase:
    name: str
    description: str
    start: datetime
    end: datetime | None
    overrides: dict[str, Any]
    splits: tuple[int, ...] = ()  # data.split.seed of each forget set the phase ranks over; (): the phase's own

    @property
    def parts(self) -> list[str]:
        """What is scored and stored: the phase itself, or each of its splits (`private/split=2`)."""
        return [f"{self.name}/split={s}" for s in self.splits] or [self.name]


def phases(cfg: DictConfig) -> list[Phase]:
    """In config order; the first is the public phase (the one shown before finalize)."""
    out = []
    for name, p in cfg.competition.phases.items():
        overrides = OmegaConf.to_container(p.overrides, resolve=False) if p.get("overrides") else {}
        out.append(
            Phase(
                str(name),
                str(p.get("description") or ""),
                parse_date(p.start, f"{name}.start"),
                parse_date(p.get("end"), f"{name}.end"),
                overrides,
                parse_splits(p.get("splits"), str(name)),
            )
        )
    if len(out) < 1:
        raise ChallengeError("competition.phases is empty: a competition needs at least a public phase")
    for a, b in zip(out, out[1:]):
        if a.end is None or b.start < a.end:
            raise ChallengeError(
                f"phase {b.name} must start after phase {a.name} ends (Codabench requires sequential phases)"
            )
    return out


def parse_splits(value: Any, name: str) -> tuple[int, ...]:
    """Two or more distinct split seeds, or none (null: the phase's own split)."""
    if value is None:
        return ()
    seeds = list(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else None
    if (
        seeds is None
        or len(seeds) < 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds)
        or len(set(seeds)) < len(seeds)
    ):
        problem = (
            "is not a list of two or more distinct split seeds (data.split.seed values), e.g. [1, 2, 3]; null scores "
            "the phase on its own split"
        )
        raise refuse(f"competition.phases.{name}.splits", value, problem)
    return tuple(int(x) for x in seeds)


def parse_date(value: Any, key: str) -> datetime | None:
    """ISO dates or date-times; without a zone they are UTC."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise ChallengeError(
            f'competition.phases.{key}={value!r} is not a date: write it as "YYYY-MM-DD" or "YYYY-MM-DD HH:MM"'
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def phase_config(cfg: DictConfig, phase: Phase) -> DictConfig:
    """The composed config with the phase's overrides merged in; an unknown key is refused."""
    try:
        return OmegaConf.merge(cfg, phase.overrides)
    except OmegaConfBaseException as e:
        raise ChallengeError(
            f"competition.phases.{phase.name}.overrides does not fit the config: {' '.join(str(e).split())}"
        ) from None


def part_configs(cfg: DictConfig, phase: Phase) -> list[tuple[str, DictConfig]]:
    """(part name, config) for each part of the phase: its own config, or one per split seed."""
    pcfg = phase_config(cfg, phase)
    if not phase.splits:
        return [(phase.name, pcfg)]
    out = []
    for part, seed in zip(phase.parts, phase.splits):
        one = pcfg.copy()
        with open_dict(one):
            one.data.split.seed = seed
        out.append((part, one))
    return out


def check_open(all_phases: list[Phase], now: datetime) -> None:
    """Submissions are taken while the public phase runs; later phases only re-score them."""
    public = all_phases[0]
    if now < public.start:
        raise ChallengeError(
            f"the {public.name} phase opens on {public.start:%Y-%m-%d %H:%M %Z}; submissions are not taken yet"
        )
    if public.end is not None and now >= public.end:
        raise ChallengeError(
            f"the {public.name} phase closed on {public.end:%Y-%m-%d %H:%M %Z}; no more submissions are taken"
        )
