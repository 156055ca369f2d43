"""Finalize's re-scoring of the leaders at a larger N, as 2023 did (its top entries were run again with 512 models).

F's interval at a competition's N is wide, so the private ranking's leaders are scored again with
`competition.finalize.n_runs` runs against as many retrained models, and the final ranking orders them
by that. Only the last phase is re-scored, and only each team's ranked submission; the extra retrained
models extend the phase's pool (the same fingerprint: the first N are the models it already has), and
the scorer's run cache keeps the runs already done, so run i is the same run at either N. Each result is
stored as soon as it is ready, so a finalize that was interrupted picks up where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf, open_dict

from challenge.checks import refuse
from challenge.competition.leaderboard import ranked_submissions
from challenge.competition.phases import Phase, phase_config
from challenge.competition.store import Store
from challenge.competition.worker import competition_root, write_submission


@dataclass(frozen=True)
class Rescoring:
    """`competition.finalize`: the private ranking's `top_k` teams scored again with `n_runs` runs (0: not at all)."""

    top_k: int
    n_runs: int | None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "Rescoring":
        raw = OmegaConf.select(cfg, "competition.finalize", default=None) or {}
        top_k, n_runs = raw.get("top_k") or 0, raw.get("n_runs")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            problem = "is not a count: give how many leading teams finalize scores again (0: none)"
            raise refuse("competition.finalize.top_k", top_k, problem)
        if top_k and (isinstance(n_runs, bool) or not isinstance(n_runs, int)):
            problem = (
                f"is not a number of runs: give the N finalize re-scores the top {top_k} at (more than "
                f"scorer.n_runs={cfg.scorer.n_runs}), or set competition.finalize.top_k=0"
            )
            raise refuse("competition.finalize.n_runs", n_runs, problem)
        if top_k and n_runs <= int(cfg.scorer.n_runs):
            problem = (
                f"is not more than scorer.n_runs={cfg.scorer.n_runs}: re-scoring at the same N would only repeat "
                "the ranking; raise it or set competition.finalize.top_k=0"
            )
            raise refuse("competition.finalize.n_runs", n_runs, problem)
        return cls(top_k, n_runs if top_k else None)


def rescored_phase(last: Phase, rescoring: Rescoring) -> str:
    """The store's phase name for the re-scored results: the last phase's, at N."""
    return f"{last.name}@{rescoring.n_runs}"


def config_at(cfg: DictConfig, last: Phase, rescoring: Rescoring) -> DictConfig:
    """The last phase's config with N runs against a pool of N retrained models."""
    pcfg = phase_config(cfg, last)
    with open_dict(pcfg):
        pcfg.pool.size = rescoring.n_runs
        pcfg.scorer.n_runs = rescoring.n_runs
    return pcfg


def rescore(
    cfg: DictConfig, store: Store, all_phases: list[Phase], rescoring: Rescoring, say: Callable[[str], None] = print
) -> list[int]:
    """Score the private ranking's first k teams' ranked submissions again at the larger N; returns their ids,
    best first (by the old rank)."""
    if not rescoring.top_k:
        return []
    last = all_phases[-1]
    name = rescored_phase(last, rescoring)
    chosen = ranked_submissions(store, all_phases[0].parts, last.name)[: rescoring.top_k]
    done = store.results(name)
    todo = [s for s in chosen if s.id not in done]
    say(
        f"re-scoring the {last.name} phase's top {len(chosen)} at N={rescoring.n_runs} "
        f"({len(chosen) - len(todo)} already done)"
    )
    if todo:
        pcfg = config_at(cfg, last, rescoring)
        with open_dict(pcfg):
            pcfg.paths.output_dir = str(Path(cfg.paths.output_dir) / name)
        from challenge.commands.pool import run as build_pool
        from challenge.scoring.scorer import score_submission

        build_pool(pcfg)  # the models past the phase's own N, trained once
        for sub in todo:
            folder = competition_root(cfg) / "submissions" / str(sub.id)
            path = write_submission(folder, sub.filename, store.content(sub.id))
            result = score_submission(pcfg, path, folder / name)
            store.store_result(sub.id, name, result)
            score = f"final score {result.score.final_score:.4f}" if result.score else result.message
            say(f"  #{sub.id} {sub.team}: {result.status} at N={rescoring.n_runs}: {score}")
    return [s.id for s in chosen]
