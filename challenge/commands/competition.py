"""The competition's commands, as `challenge.cli` runs them: each takes the composed config and
its own parsed flags. Heavy imports stay inside the functions so that `--help` is instant."""

from __future__ import annotations

import argparse
import hashlib
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, open_dict

from challenge.competition.phases import Phase, check_open, part_configs, phases
from challenge.competition.rules import (
    Limits,
    check_team,
    in_transaction_checks,
    read_file,
)
from challenge.competition.store import Store
from challenge.competition.worker import competition_root, store_location
from challenge.errors import ChallengeError

if TYPE_CHECKING:
    from challenge.scoring.row import LeaderboardRow


# -- flags -------------------------------------------------------------------------------------------
def submit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--team", required=True, help="your team's name (letters, digits, _ . -)")
    p.add_argument(
        "file", type=Path, help="the .py file defining unlearning(net, retain_loader, forget_loader, val_loader)"
    )


def worker_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--follow",
        action="store_true",
        help="keep waiting for new submissions instead of exiting when the queue is empty",
    )


def leaderboard_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--html", type=Path, metavar="PATH", help="also write a static HTML page (table and plots) to PATH")


def bundle_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        metavar="ZIP",
        help="where to write the Codabench bundle (default: <name>_codabench.zip here)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="then run every task's ingestion and scoring programs on the sample submission, as Codabench would",
    )


def no_flags(p: argparse.ArgumentParser) -> None:
    """init and finalize take only overrides, but parsing them here gives them `--help`."""


# -- commands -----------------------------------------------------------------------------------------
def init(cfg: DictConfig, args: argparse.Namespace) -> None:
    """The database first (a store that cannot be reached or is of another version stops init before
    any pool is built, and before the heavy imports), then each phase's original model and pool, reused when they
    exist."""
    all_phases = phases(cfg)
    if int(cfg.scorer.n_runs) > int(cfg.pool.size):
        raise ChallengeError(
            f"scorer.n_runs={cfg.scorer.n_runs} needs a pool of at least as many models, but pool.size={cfg.pool.size}"
        )
    store = Store(store_location(cfg), create=True)
    from challenge.commands.pool import run as build_pool
    from challenge.scoring.context import prepare

    lines = []
    for phase in all_phases:
        for part, pcfg in part_configs(cfg, phase):
            print(f"== phase {part}: building (or reusing) its original model and reference pool")
            with open_dict(pcfg):
                pcfg.paths.output_dir = str(Path(cfg.paths.output_dir) / part)
            build_pool(pcfg)
            ctx = prepare(pcfg)
            s = ctx.settings
            lines.append(
                f"  {part:<10} {_dates(phase)}  pool {ctx.pool.fingerprint}, {s.n_runs} runs, budget {s.rule_text()}"
            )
    store.record("init", {"phases": [p.name for p in all_phases]})
    counts = store.counts()
    print(
        f"competition {cfg.competition.name}: database {store.where} (schema v{store.version}, {sum(counts.values())} "
        "submissions)"
    )
    print("\n".join(lines))
    print("next: challenge submit --team NAME FILE.py, then challenge worker")


def submit(cfg: DictConfig, args: argparse.Namespace) -> None:
    """Checks that need no database first, the rest inside the insert's transaction."""
    limits = Limits.from_config(cfg)
    team = check_team(args.team)
    check_open(phases(cfg), datetime.now(timezone.utc))
    path = args.file.expanduser().resolve()
    content = read_file(path, limits)
    sha = hashlib.sha256(content).hexdigest()
    store = Store(store_location(cfg))
    sid = store.add(team, path.name, content, sha, time.time(), in_transaction_checks(limits))
    print(
        f"submission {sid} queued for team {team}: {path.name} (sha256 {sha[:12]}); `challenge worker` scores the queue"
    )


def worker(cfg: DictConfig, args: argparse.Namespace) -> None:
    from challenge.competition.worker import run

    run(cfg, follow=args.follow)


def leaderboard(cfg: DictConfig, args: argparse.Namespace) -> None:
    """Public standings; after finalize the private (final) ones too, and the page shows those. A phase over
    several splits is ranked by the mean over them (challenge.competition.leaderboard.over_split_standings)."""
    store, all_phases = (
        Store(store_location(cfg)),
        phases(cfg),
    )  # a store that cannot be opened is said before the heavy imports
    from challenge.competition.leaderboard import final_standings, over_split_standings, standings
    from challenge.reports.leaderboard import leaderboard_table, write_html
    from challenge.reports.over_splits import format_over_splits, write_over_splits_html

    public = all_phases[0].parts
    finalized = store.last_event("finalize")
    shown = all_phases if finalized else all_phases[:1]
    root = competition_root(cfg)  # the kept confidences
    rescored = finalized[1].get("rescored") if finalized else None
    tables, over = {}, {}
    for p in shown:
        label = "final ranking" if finalized and p is all_phases[-1] and not rescored else "leaderboard"
        print(f"{cfg.competition.title}: {p.name} phase, {label}")
        if p.splits:
            over[p.name] = over_split_standings(store, public, p.parts)
            print(format_over_splits(over[p.name], len(p.splits)))
        else:
            tables[p.name] = standings(store, public, p.name, root)
            print(leaderboard_table(tables[p.name][0]))
        print()
    if rescored:
        last = all_phases[-1].name
        tables[rescored] = final_standings(store, public, last, rescored, root)
        k, runs = len(finalized[1].get("ids", [])), rescored.rsplit("@", 1)[1]
        print(f"{cfg.competition.title}: final ranking (the {last} phase's top {k} scored again with N={runs} runs)")
        print(leaderboard_table(tables[rescored][0]))
        print(f"rows 1-{k}: scored again with N={runs}, ranked first; the rows below keep their {last} phase score\n")
    counts = store.counts()
    state = (
        f"finalized {datetime.fromtimestamp(finalized[0], timezone.utc):%Y-%m-%d %H:%M UTC}"
        if finalized
        else "private scores hidden until `challenge competition finalize`"
    )
    print(f"{sum(counts.values())} submissions: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"; {state}")
    last = rescored or shown[-1].name
    if args.html:
        title = f"{cfg.competition.title}: " + (f"final ranking ({last})" if rescored else f"{last} phase")
        title += " (final ranking)" if finalized and not rescored else ""
        if last in over:
            page = write_over_splits_html(title, over[last], len(shown[-1].splits), args.html)
        else:
            page = write_html(title, tables[last][0], tables[last][1], args.html)
        print(f"page: {page}")
    log_to_wandb(cfg, {name: rows for name, (rows, _) in tables.items()}, over)


def wandb_columns() -> tuple[str, ...]:
    """A W&B table's columns (LeaderboardRow attributes after the rank): flat scalars, the leaderboard's own
    columns (the Codabench scores.json keys) in the middle, so F's interval is two columns."""
    from challenge.scoring.row import SCORE_COLUMNS

    return (
        "rank",
        "team",
        "name",
        "status",
        *(c.key for c in SCORE_COLUMNS),
        "f_of_ceiling",
        "overlap",
        "p_next",
        "close",
        "submitted",
    )


def log_to_wandb(
    cfg: DictConfig, tables: dict[str, list[LeaderboardRow]], over: dict[str, list[dict]] | None = None
) -> None:
    """One W&B table per shown phase, when W&B is on (a phase over splits: its mean, interval and shared rank)."""
    from challenge.reports.tracking import finish, make_logger

    logger = make_logger(cfg, name=f"leaderboard-{cfg.competition.name}", group=f"competition-{cfg.competition.name}")
    if not logger:
        return
    import wandb

    columns = wandb_columns()
    for phase, rows in tables.items():
        data = [[i, *(getattr(r, c) for c in columns[1:])] for i, r in enumerate(rows, 1)]
        logger.experiment.log({f"leaderboard/{phase}": wandb.Table(columns=list(columns), data=data)})
    for phase, rows in (over or {}).items():
        data = [
            [r["rank_text"], r["name"], r["splits"], r["final_mean"], *(r["final_ci"] or [None, None])] for r in rows
        ]
        split_columns = ["rank", "name", "splits", "final_mean", "final_lo", "final_hi"]
        logger.experiment.log({f"leaderboard/{phase}": wandb.Table(columns=split_columns, data=data)})
    finish(logger)


def finalize(cfg: DictConfig, args: argparse.Namespace) -> None:
    """With competition.finalize.top_k, the leaders are scored again at the larger N first (resumable: what was
    stored is kept), and the finalization is recorded only once they all are."""
    from challenge.competition.rescoring import Rescoring, rescore, rescored_phase

    store, all_phases = Store(store_location(cfg)), phases(cfg)
    rescoring = Rescoring.from_config(cfg)
    if rescoring.top_k and all_phases[-1].splits:
        raise ChallengeError(
            f"competition.finalize.top_k={rescoring.top_k}: the {all_phases[-1].name} phase ranks over several splits, "
            "and finalize re-scores one split's leaders; set competition.finalize.top_k=0"
        )
    done = store.last_event("finalize")
    if done is None:
        store.check_settled()
        ids = rescore(cfg, store, all_phases, rescoring)
        detail = {"rescored": rescored_phase(all_phases[-1], rescoring), "ids": ids} if rescoring.top_k else {}
        store.finalize(detail)
        print(f"competition {cfg.competition.name} finalized: the private ranking is now shown")
    else:
        print(
            f"competition {cfg.competition.name} was already finalized on "
            f"{datetime.fromtimestamp(done[0], timezone.utc):%Y-%m-%d %H:%M UTC}"
        )
    leaderboard(cfg, argparse.Namespace(html=None))


def bundle(cfg: DictConfig, args: argparse.Namespace) -> None:
    import tempfile

    from challenge.competition.bundle import build, try_sample, validate

    out = (args.out or Path(f"{cfg.competition.name}_codabench.zip")).expanduser().resolve()
    build(cfg, out)
    summary = validate(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {summary}")
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            for phase, scores in zip(phases(cfg), try_sample(out, Path(tmp))):
                print(
                    f"  {phase.name}: the sample submission scores "
                    + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
                )


def _dates(phase: Phase) -> str:
    end = f"{phase.end:%Y-%m-%d}" if phase.end else "open-ended"
    return f"{phase.start:%Y-%m-%d} .. {end}"
