"""`challenge baseline`: data, original model, reference pool, every baseline scored, one leaderboard.

What `make baseline` runs on a fresh clone, so it must finish in minutes on a laptop and cost
nothing the second time: each stage reuses what the caches hold (generated data, the pool's
fingerprinted folder, the scorer's finished results keyed by file hash), so a rerun only scores
the baselines whose files changed. The pool is built by the same function as `challenge pool`
(challenge.pool.build), and the scorings run side by side through the same process helper
(challenge.parallel), each process single-threaded: a model's bits depend on its thread count, and
each scoring prices its own budget in its own process, so neither depends on how the work is split.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from challenge.checks import Rule, check_value, refuse
from challenge.errors import ChallengeError
from challenge.files import write_json
from challenge.parallel import job_workers, run_parallel
from challenge.pool import Pool, build, summary
from challenge.pool.build import before_retraining, format_summary
from challenge.pool.folder import pool_models
from challenge.reports.agreement import AGREEMENT_FILE, agreement, agreement_table
from challenge.reports.leaderboard import leaderboard_table, rank, write_html
from challenge.reports.power import Power, format_power, power
from challenge.reports.progress import Progress
from challenge.reports.scenarios import scenario_record
from challenge.reports.stability import LEADERBOARD_FILE, split_record
from challenge.scoring.compare import read_confidences
from challenge.scoring.context import KIT_BASELINES, budget_exempt
from challenge.scoring.result import Result
from challenge.scoring.row import LeaderboardRow
from challenge.scoring.scorer import score_submission


class Stages:
    """Wall-clock seconds per stage, with a note on what the stage did (built or reused)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.load_start = os.getloadavg()
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, name: str, seconds: float, note: str = "") -> None:
        self.rows[name] = {"seconds": round(seconds, 2), "note": note}

    def to_dict(self, workers: int, threads: int) -> dict[str, Any]:
        return {
            "stages": self.rows,
            "total_seconds": round(time.perf_counter() - self.start, 2),
            "machine": {
                "cpu_count": os.cpu_count(),
                "workers": workers,
                "threads_per_worker": threads,
                "load_average_at_start": self.load_start,
                "load_average_at_end": os.getloadavg(),
            },
        }


def run(cfg: DictConfig) -> dict[str, Any]:
    """Each stage timed and printed as it ends; the leaderboard, report and timings at the end."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = power_grid(cfg)  # before any work: a wrong value found after the scoring would waste it
    files = baseline_files(cfg)
    workers = job_workers(cfg.workers)
    plain = OmegaConf.to_container(cfg, resolve=True)  # worker processes need neither Hydra nor our resolvers
    stages = Stages()
    pool = prepare_pool(cfg, workers, stages)

    t = time.perf_counter()
    results = score_all(plain, files, out, workers, stages)
    stages.add(
        "scoring", time.perf_counter() - t, f"{len(files)} methods × {cfg.scorer.n_runs} runs, {workers} workers"
    )

    t = time.perf_counter()
    # out/<method>/: each result with its kept confidences
    rows = rank(LeaderboardRow.from_result(name, results[name], out / name) for name in files)
    report = write_html(
        f"Baselines: pool {pool.fingerprint}, N = {cfg.scorer.n_runs}", rows, results, out / "report.html"
    )
    stages.add("report", time.perf_counter() - t)
    timings = stages.to_dict(workers, int(cfg.scorer.threads))
    write_json(out / "timings.json", timings, indent=2)
    record = split_record(_job_overrides(), int(cfg.data.split.seed), pool.fingerprint, rows, timings["total_seconds"])
    record["scenario"] = scenario_record(results)  # a multirun over forget= compares methods per scenario
    write_json(out / LEADERBOARD_FILE, record, indent=2)
    agree = agreement(rows)
    write_json(out / AGREEMENT_FILE, agree, indent=2)
    print(leaderboard_table(rows))
    print()
    print(agreement_table(agree))
    print()
    figure = power_figure(cfg, rows, grid)
    if figure is not None:
        write_json(out / "power.json", figure.to_dict(), indent=2)
        print(format_power(figure), "\n", sep="")
    print(format_timings(timings))
    print(f"\nresults: {out}/<method>/result.json\nreport:  {report}\ntimings: {out / 'timings.json'}")
    print(f"metrics' agreement: {out / AGREEMENT_FILE}")
    return {"rows": rows, "timings": timings, "agreement": agree}


def power_grid(cfg: DictConfig) -> tuple[int, ...]:
    """power.grid: the group sizes n of the power figure, each a whole number >= 3 (F needs 3 models a side)."""
    grid = cfg.power.grid
    if not OmegaConf.is_list(grid):
        raise refuse("power.grid", grid, "is not a list of whole numbers >= 3 (e.g. [4, 8])")
    for i, n in enumerate(grid):
        check_value(f"power.grid[{i}]", n, Rule(int, ge=3))
    return tuple(int(n) for n in grid)


def power_figure(cfg: DictConfig, rows: list[LeaderboardRow], grid: tuple[int, ...]) -> Power | None:
    """The power figure over the scored rows with kept confidences on one pool, best first; None with fewer than 2."""
    scored = [r for r in rows if r.confidences]
    kept = [(r.name, read_confidences(Path(str(r.confidences)))) for r in scored]
    if len(kept) < 2 or len({c.retrained.tobytes() for _, c in kept}) > 1:
        return None
    p = cfg.power
    return power(kept, grid, int(p.n_bootstrap), scored[0].seed or 0, int(p.max_models))


def _job_overrides() -> list[str]:
    """This run's command-line overrides: what tells one job of a multirun from another."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def prepare_pool(cfg: DictConfig, workers: int, stages: Stages) -> Pool:
    """The data, the original and the pool, each built only if the caches do not hold it yet."""
    t = time.perf_counter()
    dm = instantiate(cfg.data)
    built = not (dm.data_dir / "faces.pt").exists()
    dm.setup()
    stages.add("data", time.perf_counter() - t, f"{len(dm.faces.ages)} images, {'built' if built else 'cached'}")
    pool = Pool.for_config(cfg, dm)
    pool.create()
    n = int(cfg.pool.size)
    t = time.perf_counter()
    models = pool_models(cfg)
    done = build(cfg, pool, models, workers)
    if len(pool.entries(models)) < models or not all(p.exists() for p in before_retraining(pool, cfg, dm)):
        raise ChallengeError(
            f"the pool at {pool.root} is incomplete (another process holds some seeds): run `challenge baseline` "
            "again when it has finished"
        )
    original = done["original_seconds"]
    stages.add(
        "original", original or 0.0, "trained (alongside the first pool models)" if original is not None else "reused"
    )
    stages.add(
        "pool",
        time.perf_counter() - t,
        f"{n} models ({len(done['trained'])} trained now), {done['processes']} process(es)"
        if done["processes"]
        else f"{n} models reused",
    )
    print(format_summary(summary(pool, n)), flush=True)
    return pool


def baseline_files(cfg: DictConfig) -> dict[str, Path]:
    """name -> file, checked before any training so a typo costs seconds, not the pool's minutes."""
    folder = Path(cfg.baselines.dir).expanduser() if cfg.baselines.dir else KIT_BASELINES
    files = {str(name): folder / f"{name}.py" for name in cfg.baselines.methods}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ChallengeError(
            f"no baseline file {', '.join(missing)}: check baselines.methods and baselines.dir (conf/baselines/)"
        )
    if not files:
        raise ChallengeError("baselines.methods is empty: name at least one file of baselines.dir")
    return files


# -- scoring ---------------------------------------------------------------------------------------
def score_all(
    plain: dict[str, Any], files: dict[str, Path], out: Path, workers: int, stages: Stages
) -> dict[str, Result]:
    """Every baseline through the real scorer and sandbox; the longest (budget-exempt) ones start first."""
    order = sorted(files, key=lambda name: not budget_exempt(files[name]))
    jobs = [(plain, name, str(files[name]), str(out / name)) for name in order]
    progress = Progress(
        "baseline", len(jobs), "method", live=False
    )  # lines: the scorings write theirs to the same terminal
    progress.update(0, f"{workers} worker(s)")

    def scored(done: tuple[str, Result, float]) -> None:
        progress.note(_report_scored(done, stages))
        progress.update(progress.done + 1, f"{workers} worker(s)")

    try:
        done = run_parallel(_score_one, jobs, min(workers, len(jobs)), on_result=scored)
    finally:
        progress.close()
    return {name: result for name, result, _ in done}


def _score_one(plain: dict[str, Any], name: str, file: str, out_dir: str) -> tuple[str, Result, float]:
    cfg = OmegaConf.create(plain)
    t = time.perf_counter()
    result = score_submission(cfg, Path(file), Path(out_dir))
    return name, result, time.perf_counter() - t


def _report_scored(done: tuple[str, Result, float], stages: Stages) -> str:
    name, result, seconds = done
    # A result served from the scorer's cache comes back in a fraction of its own scoring time.
    reused = seconds < 0.5 * float(result.timing.get("total_seconds", 0.0))
    stages.add(name, seconds, result.status + (" (result reused)" if reused else ""))
    score = result.score
    detail = f"final {score.final_score:.3f}, F {score.forget_quality:.3f}" if score else result.message
    return f"  {name}: {result.status} in {seconds:.1f} s ({detail})"


# -- output ----------------------------------------------------------------------------------------
def format_timings(t: dict[str, Any]) -> str:
    width = max(len(name) for name in t["stages"])
    lines = [f"{'stage':<{width}}  {'seconds':>8}  note"]
    lines += [f"{name:<{width}}  {row['seconds']:>8.1f}  {row['note']}" for name, row in t["stages"].items()]
    m = t["machine"]
    load = lambda key: "/".join(f"{x:.1f}" for x in m[key])  # noqa: E731
    lines.append(
        f"{'total':<{width}}  {t['total_seconds']:>8.1f}  {m['cpu_count']} cores, {m['workers']} workers × "
        f"{m['threads_per_worker']} thread(s); "
        f"load average (1/5/15 min) {load('load_average_at_start')} at start, {load('load_average_at_end')} at end"
    )
    return "\n".join(lines)
