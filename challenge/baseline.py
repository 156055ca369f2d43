"""`challenge baseline`: data, original model, reference pool, every baseline scored, one leaderboard.

What `make baseline` runs on a fresh clone, so it must finish in minutes on a laptop and cost
nothing the second time: each stage reuses what the caches hold (generated data, the pool's
fingerprinted folder, the scorer's finished results keyed by file hash), so a rerun only scores
the baselines whose files changed. Small models on a CPU use one core poorly, so the pool and the
scoring run in `workers` processes of cores/workers threads each; the pool's retrain times, which
set the per-run budget, are then measured under the same sharing as the unlearning runs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from challenge.errors import ChallengeError
from challenge.pool import Pool, build_original, claims, format_summary, summary, train_member
from challenge.report import leaderboard_table, rank, row_from_result, write_html
from challenge.score import KIT_BASELINES, budget_exempt, score_submission
from challenge.training import quiet_lightning, set_threads


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
            "stages": self.rows, "total_seconds": round(time.perf_counter() - self.start, 2),
            "machine": {"cpu_count": os.cpu_count(), "workers": workers, "threads_per_worker": threads,
                        "load_average_at_start": self.load_start, "load_average_at_end": os.getloadavg()},
        }


def run(cfg: DictConfig) -> dict[str, Any]:
    """Each stage timed and printed as it ends; the leaderboard, report and timings at the end."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = baseline_files(cfg)
    workers = max(1, int(cfg.workers))
    threads = max(1, (os.cpu_count() or 1) // workers)
    plain = plain_config(cfg, threads)
    stages = Stages()
    pool = prepare_pool(cfg, plain, workers, stages)

    t = time.perf_counter()
    results = score_all(plain, files, out, workers, stages)
    stages.add("scoring", time.perf_counter() - t, f"{len(files)} methods × {cfg.scorer.n_runs} runs, {workers} workers")

    t = time.perf_counter()
    rows = rank(row_from_result(name, results[name]) for name in files)
    report = write_html(f"Baselines: pool {pool.fingerprint}, N = {cfg.scorer.n_runs}", rows, results, out / "report.html")
    stages.add("report", time.perf_counter() - t)
    timings = stages.to_dict(workers, threads)
    write_json(out / "timings.json", timings)
    print(leaderboard_table(rows))
    print()
    print(format_timings(timings))
    print(f"\nresults: {out}/<method>/result.json\nreport:  {report}\ntimings: {out / 'timings.json'}")
    return {"rows": rows, "timings": timings}


def prepare_pool(cfg: DictConfig, plain: dict[str, Any], workers: int, stages: Stages) -> Pool:
    """The data, the original and the pool, each built only if the caches do not hold it yet."""
    t = time.perf_counter()
    dm = instantiate(cfg.data)
    built = not (dm.data_dir / "faces.pt").exists()
    dm.setup()
    stages.add("data", time.perf_counter() - t, f"{len(dm.faces.ages)} images, {'built' if built else 'cached'}")
    pool = Pool.for_config(cfg, dm)
    pool.create()
    n = int(cfg.pool.size)
    build_pool(plain, pool, n, workers, stages)
    print(format_summary(summary(pool, n)), flush=True)
    return pool


def baseline_files(cfg: DictConfig) -> dict[str, Path]:
    """name -> file, checked before any training so a typo costs seconds, not the pool's minutes."""
    folder = Path(cfg.baselines_dir).expanduser() if cfg.baselines_dir else KIT_BASELINES
    files = {str(name): folder / f"{name}.py" for name in cfg.baselines}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ChallengeError(f"no baseline file {', '.join(missing)}: check `baselines` and `baselines_dir` in conf/baseline.yaml")
    if not files:
        raise ChallengeError("`baselines` is empty: name at least one file of baselines_dir")
    return files


def plain_config(cfg: DictConfig, threads: int) -> dict[str, Any]:
    """The config resolved to plain values, so worker processes need neither Hydra nor our resolvers;
    threads pinned, because the scorer keys finished runs by thread count."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for group in ("pool", "scorer"):
        if plain[group].get("threads") is None:
            plain[group]["threads"] = threads
    return plain


# -- the pool --------------------------------------------------------------------------------------
def build_pool(plain: dict[str, Any], pool: Pool, n: int, workers: int, stages: Stages) -> None:
    """The original and n retrained models, in parallel processes that claim seeds from the pool's folder."""
    todo = (0 if pool.original_path.exists() else 1) + n - len(pool.entries(n))
    if todo == 0:
        stages.add("original", 0.0, "reused")
        stages.add("pool", 0.0, f"{n} models reused")
        return
    n_procs = min(workers, todo)
    print(f"pool {pool.fingerprint}: training {todo} model(s) in {n_procs} process(es)", flush=True)
    t = time.perf_counter()
    shards = run_parallel(_pool_shard, [(plain, shard) for shard in range(n_procs)], n_procs, progress=_pool_progress(pool, n))
    original = next((s["original_seconds"] for s in shards if s["original_seconds"] is not None), None)
    trained = sum(len(s["trained"]) for s in shards)
    if len(pool.entries(n)) < n or not pool.original_path.exists():
        raise ChallengeError(f"the pool at {pool.root} is incomplete (another process holds some seeds): run `challenge baseline` again when it has finished")
    stages.add("original", original or 0.0, "trained (alongside the first pool models)" if original is not None else "reused")
    stages.add("pool", time.perf_counter() - t, f"{n} models ({trained} trained now), {n_procs} process(es)")


def _pool_shard(plain: dict[str, Any], shard: int) -> dict[str, Any]:
    """One worker: shard 0 trains the original first; every shard then claims seeds until none are left."""
    cfg = OmegaConf.create(plain)
    set_threads(cfg.pool.threads)
    quiet_lightning()
    dm = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    stale = float(cfg.pool.claim_stale_seconds)
    original = None
    if shard == 0 and not pool.original_path.exists():
        t = time.perf_counter()
        build_original(pool, cfg, dm, stale)
        original = time.perf_counter() - t
    trained = [train_member(pool, cfg, dm, seed).seed for seed in claims(pool, int(cfg.pool.size), stale)]
    return {"original_seconds": original, "trained": trained}


def _pool_progress(pool: Pool, n: int) -> Callable[[], str | None]:
    seen = {"count": -1}

    def check() -> str | None:
        count = len(pool.entries(n))
        if count == seen["count"]:
            return None
        seen["count"] = count
        return f"  pool: {count}/{n} retrained models"

    return check


# -- scoring ---------------------------------------------------------------------------------------
def score_all(plain: dict[str, Any], files: dict[str, Path], out: Path, workers: int, stages: Stages) -> dict[str, dict[str, Any]]:
    """Every baseline through the real scorer and sandbox; the longest (budget-exempt) ones start first."""
    order = sorted(files, key=lambda name: not budget_exempt(files[name]))
    jobs = [(plain, name, str(files[name]), str(out / name)) for name in order]
    done = run_parallel(_score_one, jobs, min(workers, len(jobs)), on_result=lambda r: _report_scored(r, stages))
    return {name: result for name, result, _ in done}


def _score_one(plain: dict[str, Any], name: str, file: str, out_dir: str) -> tuple[str, dict[str, Any], float]:
    cfg = OmegaConf.create(plain)
    t = time.perf_counter()
    result = score_submission(cfg, Path(file), Path(out_dir))
    return name, result, time.perf_counter() - t


def _report_scored(done: tuple[str, dict[str, Any], float], stages: Stages) -> str:
    name, result, seconds = done
    # A result served from the scorer's cache comes back in a fraction of its own scoring time.
    reused = seconds < 0.5 * float((result.get("timing") or {}).get("total_seconds", 0.0))
    stages.add(name, seconds, result["status"] + (" (result reused)" if reused else ""))
    score = result.get("score") or {}
    detail = f"final {score['final_score']:.3f}, F {score['forget_quality']:.3f}" if score else result.get("message", "")
    return f"  {name}: {result['status']} in {seconds:.1f} s ({detail})"


# -- processes -------------------------------------------------------------------------------------
def run_parallel(fn: Callable[..., Any], jobs: list[tuple], workers: int, progress: Callable[[], str | None] | None = None,
                 on_result: Callable[[Any], str] | None = None) -> list[Any]:
    """fn(*job) for every job, in `workers` spawned processes (in this one when workers is 1).

    Spawned, not forked: forking a process that has started torch's thread pools can hang the child.
    Results come back in completion order; `on_result` turns each into a progress line, and
    `progress`, polled every two seconds, may return one too.
    """
    if workers <= 1:
        results = []
        for job in jobs:
            results.append(fn(*job))
            if on_result:
                print(on_result(results[-1]), flush=True)
        return results
    results = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        pending: set[Future] = {ex.submit(fn, *job) for job in jobs}
        while pending:
            finished, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
            for future in finished:
                results.append(future.result())
                if on_result:
                    print(on_result(results[-1]), flush=True)
            line = progress() if progress else None
            if line:
                print(line, flush=True)
    return results


# -- output ----------------------------------------------------------------------------------------
def format_timings(t: dict[str, Any]) -> str:
    width = max(len(name) for name in t["stages"])
    lines = [f"{'stage':<{width}}  {'seconds':>8}  note"]
    lines += [f"{name:<{width}}  {row['seconds']:>8.1f}  {row['note']}" for name, row in t["stages"].items()]
    m = t["machine"]
    load = lambda key: "/".join(f"{x:.1f}" for x in m[key])  # noqa: E731
    lines.append(f"{'total':<{width}}  {t['total_seconds']:>8.1f}  {m['cpu_count']} cores, {m['workers']} workers × {m['threads_per_worker']} thread(s); "
                 f"load average (1/5/15 min) {load('load_average_at_start')} at start, {load('load_average_at_end')} at end")
    return "\n".join(lines)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2))
