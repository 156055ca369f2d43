"""Scoring a file: run it N times in the sandbox and judge it against the pool (`challenge score`).

The local counterpart of Codabench's two programs, with the same supervisor and the same judge. It stages only what a
participant may see (retain, forget and val data, the original weights), runs challenge.scoring.child in the sandbox,
and does everything that needs hidden data itself: it loads each returned state dict strictly into the
architecture, evaluates forget, retain and test images, and calls the metric. A participant's
fault ends in a verdict (a `status` in result.json, one line, exit status 1); the user's own
faults (no pool, a bad setting) raise ChallengeError. Finished runs are kept under
paths.cache_dir/scores, so a killed scorer resumes where it stopped, and a finished result is
reused whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig

from challenge.errors import Verdict
from challenge.files import locked, read_regular, write_atomic, write_with
from challenge.pool.reference import original_metrics
from challenge.pool.reference import reference as pool_reference
from challenge.reports.leaks import leaks
from challenge.reports.progress import Progress
from challenge.scoring.alongside import Alongside, spare_core
from challenge.scoring.compare import (
    CONFIDENCES_FILE,
)
from challenge.scoring.context import Context, budget_exempt, prepare
from challenge.scoring.evaluation import RunEval, judge_run, reference_tensors
from challenge.scoring.gpu import gpu_for
from challenge.scoring.judge import Attempt, judge_submission, read_failure, run_budget
from challenge.scoring.params import Params
from challenge.scoring.params import resolve as resolve_params
from challenge.scoring.protocol import (
    CALIBRATION,
    FAILURE,
    READY,
    RUN_TIMES,
    run_name,
)
from challenge.scoring.result import (
    RESULT_FILE,
    PoolInfo,
    Reference,
    Result,
    RunRow,
    Score,
    Submission,
)
from challenge.scoring.result import Budget as BudgetSection
from challenge.scoring.sandbox import Sandbox
from challenge.scoring.scenario import scenario_section
from challenge.scoring.sections import (
    budget_section,
    calibration_of,
    ceiling,
    collateral_sizes,
    confidence_samples,
    examples,
    keep_confidences,
    original_confidences,
    pool_side,
    with_collateral_ceiling,
)
from challenge.scoring.settings import Settings
from challenge.scoring.stage import stage
from challenge.scoring.supervisor import supervise
from challenge.scoring.work import Work, read_eval, write_eval

# -- settings and context ------------------------------------------------------------------------


# -- running the child -----------------------------------------------------------------------------


def startup_times(ready: Path, spawned: float) -> dict[str, float]:
    """Where the child's start-up went (for the overhead figures); empty if it never got ready. Importing
    the submission is each run's own (`run_import_seconds`)."""
    try:
        stamps = json.loads(read_regular(ready, 10_000) or b"")
        return {
            "interpreter_start": stamps["started"] - spawned,
            "load_inputs": stamps["inputs_loaded"] - stamps["started"],
            "calibrate": stamps["calibrated"] - stamps["inputs_loaded"],
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


# -- evaluating the runs ---------------------------------------------------------------------------
def evaluate_run(
    ctx: Context, work: Work, index: int, weights: Path, data: dict[str, torch.Tensor], early: Alongside | None
) -> RunEval:
    """The judge's evaluation of a run's weights (judge_run), cached per run; one done alongside the child, of
    the same weights (taken out of the sandbox as the run ended), is used as it is."""
    cache = work.evals / f"{run_name(index)}.npz"
    if cache.is_file():
        return read_eval(cache)
    result = early.result(index) if early else None
    if result is None:
        result = judge_run(ctx.spec, weights, data, index, ctx.settings)
    write_eval(cache, result)
    return result


# -- scoring ---------------------------------------------------------------------------------------
def run_child(
    ctx: Context,
    work: Work,
    box: Sandbox,
    submission: Path,
    params: Params,
    logs: dict[str, Path],
    timing: dict[str, Any],
    data: dict[str, torch.Tensor],
) -> tuple[Attempt | None, float, Alongside | None]:
    """The runs still to do, in the sandbox (finished ones are reused): how the child ended, what it used outside
    its runs (in budgets: the kit's, not charged), and the evaluations done alongside it (challenge.scoring.alongside).
    The child's start-up times go into `timing`; its accepted runs into work.runs."""
    s = ctx.settings
    work.salvage()
    todo = [i for i in range(s.n_runs) if not work.usable(i, s)]
    timing["reused_runs"] = s.n_runs - len(todo)
    if not todo:
        return None, 0.0, None
    work.new_attempt()
    inputs, outputs = work.attempt / "inputs", work.attempt / "outputs"
    t = time.perf_counter()
    stage(ctx, submission, inputs, todo, params.changed)
    staged, spawned = time.perf_counter() - t, time.time()
    before = sum(r["cost"] / run_budget(r, s) for i in range(s.n_runs) if i not in todo and (r := work.ledger(i)))
    (work.root / CALIBRATION).unlink(missing_ok=True)  # this attempt prices its own runs
    on_run, progress = run_progress(work, submission, s, len(todo), before)
    early = Alongside(ctx, work.taken, todo, data, max_weights_bytes(ctx)) if spare_core(s) else None
    try:
        with early or contextlib.nullcontext():
            outcome, ledger = supervise(box, todo, s, logs, work.taken, before, on_run=on_run)
    finally:
        progress.close()
    if early:
        timing["evaluation_alongside"] = {"runs": len(early.done), "seconds": early.seconds}
    timing["child"], timing["child_seconds"] = (
        {"stage_inputs": staged, **startup_times(outputs / READY, spawned)},
        outcome.seconds,
    )
    if ledger.calibration:
        write_atomic(work.root / CALIBRATION, json.dumps(ledger.calibration))
    work.salvage()
    failure = read_failure(outputs / FAILURE)
    shutil.rmtree(work.attempt, ignore_errors=True)  # a copy of the data: no use once the child has ended
    return (
        Attempt(outcome, ledger.imported, failure, todo, {k: str(v) for k, v in logs.items()}),
        ledger.outside_budgets,
        early,
    )


def max_weights_bytes(ctx: Context) -> int:
    """The most a run's weights file may hold to be read alongside: a state dict of the architecture is
    about the size of the original's file (its metadata aside), so anything far larger is not one."""
    return 4 * ctx.pool.original_path.stat().st_size + 2**20


def run_progress(
    work: Work, submission: Path, s: Settings, todo: int, before: float
) -> tuple[Callable[[int, dict[str, Any]], None], Progress]:
    """What the meter calls as each run ends: the run's charge into the ledger, and a step of the progress
    shown (run i/N, budgets used so far of the N allowed, ETA), so that hours of runs are never silent."""
    progress = Progress(f"scoring {submission.name}", s.n_runs)
    used = [before]
    progress.update(s.n_runs - todo, f"{before:.2f} of {s.n_runs} budgets used")

    def on_run(index: int, record: dict[str, Any]) -> None:
        work.write_ledger(index, record)
        used[0] += record["cost"] / record["budget"]
        progress.update(progress.done + 1, f"{used[0]:.2f} of {s.n_runs} budgets used")

    return on_run, progress


def score_submission(cfg: DictConfig, submission: Path, out_dir: Path) -> Result:
    """Score one file; the result is also written to out_dir/result.json.

    Never raises for the participant's faults (they become `status`); raises ChallengeError for
    the user's (no pool, bad settings, limits the kit itself cannot start in; a result cached in another
    schema is judged again, Work.result_path). Called by `challenge score`, the competition worker and `make baseline`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    params = resolve_params(submission, cfg.get("params"), cfg.get("params_file")) if submission.is_file() else Params()
    ctx = prepare(cfg)
    ctx.settings = replace(ctx.settings, budget_exempt=budget_exempt(submission))
    pool = PoolInfo(ctx.pool.fingerprint, str(ctx.pool.root), ctx.settings.n_runs)
    base = Result("", "", Submission(str(submission), None), pool, ctx.settings, params, scenario=scenario_section(ctx))
    if not submission.is_file():
        message = f"no submission file at {submission}: give the path of a .py file defining unlearning(...)"
        return _finish(out_dir, None, replace(base, status="not_found", message=message))
    base = replace(base, submission=Submission(str(submission), hashlib.sha256(submission.read_bytes()).hexdigest()))
    work = Work.for_submission(ctx, base.submission.sha256, Path(cfg.paths.cache_dir), params.changed)
    work.root.mkdir(parents=True, exist_ok=True)
    with locked(work.root / "lock"):
        if cfg.scorer.fresh:
            for d in ("runs", "ledger", "evals", "attempt", "results"):
                shutil.rmtree(work.root / d, ignore_errors=True)
        cached = work.result_path(ctx.settings)
        kept = cached.with_suffix(".npz")
        if cached.is_file():  # the same values, maybe given another way (params_file), from another path
            return _finish(out_dir, None, replace(Result.read(cached), submission=base.submission, params=params), kept)
        return _finish(out_dir, cached, _score(ctx, work, submission, out_dir, base, kept), kept)


def _score(ctx: Context, work: Work, submission: Path, out_dir: Path, base: Result, kept: Path) -> Result:
    """Run, judge and measure the file; a Verdict ends in a rejected Result with what was known by then."""
    logs = {"stdout": out_dir / "submission.stdout.log", "stderr": out_dir / "submission.stderr.log"}
    box = Sandbox(
        *(work.attempt / d for d in ("inputs", "outputs", "scratch")),
        ctx.settings.limits,
        ctx.settings.isolation,
        gpu_for(ctx.settings.device),
    )
    base = replace(base, sandbox=box.protections.to_dict(), logs={k: str(v) for k, v in logs.items()})
    start = time.perf_counter()
    timing: dict[str, Any] = {}
    try:
        data = reference_tensors(ctx.dm, ctx.settings.device, collateral_sizes(ctx.entries))
        attempt, outside, early = run_child(ctx, work, box, submission, base.params, logs, timing, data)
        charges = [work.ledger(i) for i in range(ctx.settings.n_runs)]
        judged = judge_submission(
            attempt,
            work.runs,
            charges,
            ctx.settings,
            pool_side(ctx.entries, f"the pool at {ctx.pool.root}", original_confidences(ctx, data)),
            lambda i, weights: evaluate_run(ctx, work, i, weights, data, early),
        )
    except Verdict as v:
        timing["total_seconds"] = time.perf_counter() - start
        priced = BudgetSection(calibration=calibration_of(work))  # what the child had priced before the verdict
        return replace(base, status=v.status, message=v.message, budget=priced, timing=timing)
    for key in RUN_TIMES:
        timing[f"run_{key}"] = [r[key] for r in judged.records]
    timing["evaluation_seconds"] = judged.evaluation_seconds  # what the scoring waited for after the child
    budget = budget_section(work, ctx.settings, judged.charges, outside)
    evals, metric, eps = judged.evals, judged.metric, judged.metric.epsilons
    collateral = with_collateral_ceiling(ctx, judged.score["collateral"])
    score = Score(**judged.score | {"collateral": collateral}, ceiling=ceiling(ctx))
    timing["total_seconds"] = time.perf_counter() - start
    mia = score.mia_per_run or [None] * len(evals)
    runs = [
        RunRow(e.index, e.seed, e.retain_acc, e.forget_acc, e.test_acc, m, c, f)
        for e, m, c, f in zip(evals, mia, budget.run_cost, budget.run_fraction)
    ]
    per_example = examples(ctx, evals, eps)
    keep_confidences(ctx, kept, evals, metric)
    reference = Reference(**pool_reference(original_metrics(ctx.pool.original_path), ctx.entries, ctx.pool.root))
    message = f"final score {score.final_score:.4f}, forget quality F {score.forget_quality:.4f}"
    return replace(
        base,
        status="scored",
        message=message,
        score=score,
        budget=budget,
        runs=runs,
        examples=per_example,
        confidence_samples=confidence_samples(ctx, evals, eps),
        reference=reference,
        leaks=leaks(ctx.dm.faces.images, per_example),
        timing=timing,
        forget_confidences=CONFIDENCES_FILE,
        scenario=scenario_section(ctx, evals),
    )


def _finish(out_dir: Path, cache: Path | None, result: Result, kept: Path | None = None) -> Result:
    """result.json in out_dir (and in the cache), with the kept confidences it names copied beside it
    first, so a reader that finds result.json finds them; a stale copy from an earlier result goes,
    and a result whose kept file is gone no longer names one."""
    mine = out_dir / CONFIDENCES_FILE
    if result.forget_confidences and kept is not None and kept.is_file():
        write_with(mine, lambda tmp: shutil.copyfile(kept, tmp))
    else:
        mine.unlink(missing_ok=True)
        result = replace(result, forget_confidences=None)
    result.write(out_dir / RESULT_FILE)
    if cache is not None:
        result.write(cache)
    return result
