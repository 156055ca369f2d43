"""Scoring a file: run it N times in the sandbox and judge it against the pool (`challenge score`).

The local counterpart of Codabench's two programs, with the same supervisor and the same judge. It stages only what a participant may see (retain,
forget and val data, the original weights), runs challenge.scoring.child in the sandbox, and does
everything that needs hidden data itself: it loads each returned state dict strictly into the
architecture, evaluates forget, retain and test images, and calls the metric. A participant's
fault ends in a verdict (a `status` in result.json, one line, exit status 1); the user's own
faults (no pool, a bad setting) raise ChallengeError. Finished runs are kept under
paths.cache_dir/scores, so a killed scorer resumes where it stopped, and a finished result is
reused whole.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig

from challenge.checks import check_values
from challenge.data.dataset import FaceData
from challenge.errors import ChallengeError, Verdict
from challenge.files import write_atomic, write_with
from challenge.kit import kit_path
from challenge.pool import Pool, PoolEntry
from challenge.pool.reference import original_metrics
from challenge.pool.reference import reference as pool_reference
from challenge.reports.leaks import leaks
from challenge.reports.progress import Progress
from challenge.scoring.alongside import Alongside, spare_core
from challenge.scoring.budget import Budget, read_calibration, retrain_plan
from challenge.scoring.child import run_name
from challenge.scoring.compare import CONFIDENCES_FILE, Confidences, draw_key, write_confidences
from challenge.scoring.gpu import gpu_for
from challenge.scoring.judge import (
    RunEval,
    judge_budget,
    judge_end,
    judge_run,
    read_failure,
    read_record,
    reference_tensors,
    run_budget,
)
from challenge.scoring.judge import score as judge_score
from challenge.scoring.metric import ForgettingResult, evaluate_forgetting
from challenge.scoring.params import Params
from challenge.scoring.params import resolve as resolve_params
from challenge.scoring.sandbox import Sandbox
from challenge.scoring.settings import Settings
from challenge.scoring.supervisor import spec_plan, supervise
from challenge.scoring.work import RUN_TIMES, Work, read_eval, write_eval
from challenge.training.net import NetSpec, load_net, save_net
from challenge.training.recipe import set_threads

PARTS = ("retain", "forget", "val")  # all the child ever gets; test images never leave the scorer
KIT_BASELINES = kit_path("baselines")
N_CONFIDENCE_SAMPLES = 4  # forget images whose every-model confidences go into the result, for plots


# -- settings and context ------------------------------------------------------------------------
@dataclass
class Context:
    """The hidden side of scoring: data with test images, the pool, the architecture, the recipe to price."""

    dm: FaceData
    pool: Pool
    entries: list[PoolEntry]
    spec: NetSpec
    settings: Settings
    plan: dict[str, Any]  # how the child prices a retrain (challenge.scoring.budget.retrain_plan)
    held_out: list[PoolEntry]  # retrained models outside the reference (pool.ceiling), or none


def prepare(cfg: DictConfig) -> Context:
    """Everything the user must have set up; their faults end here as ChallengeError."""
    check_values(cfg)  # the CLI checks before any import; callers of score_submission get the same lines
    settings = Settings.from_config(cfg)
    set_threads(settings.threads)  # the judge's evaluation too: thread count changes a model's output bits
    dm: FaceData = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    entries = pool.require(settings.n_runs)
    _, spec, _ = load_net(pool.original_path)
    plan = retrain_plan(cfg, len(dm.dataset("retain")), dm.split.class_weights, settings.calibration_steps)
    held_out = pool.entries(settings.n_runs, start=settings.n_runs) if cfg.pool.get("ceiling", False) else []
    return Context(dm, pool, entries, spec, settings, plan, held_out if len(held_out) == settings.n_runs else [])


def budget_exempt(submission: Path) -> bool:
    """True for a file of the kit's own baselines/ folder that sets `BUDGET_EXEMPT = True` at module level.

    Retraining from scratch is the leaderboard's ceiling and costs five budgets by definition; it is
    run and timed like any method, but not stopped. Read from the source (never by running it), and
    only in the kit's folder, so that a participant's file cannot claim it.
    """
    try:
        if not submission.resolve().is_relative_to(KIT_BASELINES) or not submission.is_file():
            return False
        tree = ast.parse(submission.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return False
    return any(
        isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "BUDGET_EXEMPT" for t in node.targets)
        and isinstance(node.value, ast.Constant) and node.value.value is True
        for node in tree.body
    )




# -- running the child -----------------------------------------------------------------------------
def stage(ctx: Context, submission: Path, inputs: Path, todo: list[int], params: dict[str, Any]) -> None:
    """The child's whole world: the file, the original weights, retain/forget/val, and the run plan."""
    shutil.copyfile(submission, inputs / "submission.py")
    write_child_inputs(ctx, inputs, todo, "submission.py", params)


def write_child_inputs(ctx: Context, folder: Path, todo: list[int], submission: str, params: dict[str, Any] | None = None) -> None:
    """original.pt, data.pt and spec.json: the same files for `challenge score` and the Codabench bundle.
    `params`: the submission's PARAMS values that differ from its own (challenge.scoring.params)."""
    net, spec, data_config = load_net(ctx.pool.original_path)
    save_net(net, spec, data_config, folder / "original.pt")  # without the original's test metrics
    write_with(folder / "data.pt", lambda tmp: torch.save(staged_data(ctx.dm), tmp))
    write_atomic(folder / "spec.json", json.dumps({**spec_plan(ctx.settings, todo, submission, ctx.plan), "params": params or {}}))


def staged_data(dm: FaceData) -> dict[str, torch.Tensor]:
    """Retain, forget and val images, numbered from 0 in that order (image_id is this number)."""
    ds = {p: dm.dataset(p) for p in PARTS}
    base = ds["retain"]  # every part indexes the same normalised arrays
    order = torch.cat([ds[p].indices for p in PARTS])
    blob = {"images": base.images[order], "ages": base.ages[order], "groups": base.groups[order], "person_ids": base.person_ids[order]}
    start = 0
    for p in PARTS:
        blob[p] = torch.arange(start, start + len(ds[p]))
        start += len(ds[p])
    return blob


def startup_times(ready: Path, spawned: float) -> dict[str, float]:
    """Where the child's start-up went (for the overhead figures); empty if it never got ready."""
    try:
        stamps = json.loads(ready.read_text())
        return {
            "interpreter_start": stamps["started"] - spawned,
            "load_inputs": stamps["inputs_loaded"] - stamps["started"],
            "calibrate": stamps["calibrated"] - stamps["inputs_loaded"],
            "load_submission": stamps["submission_loaded"] - stamps["calibrated"],
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


# -- evaluating the runs ---------------------------------------------------------------------------
def evaluate_run(ctx: Context, work: Work, index: int, data: dict[str, torch.Tensor], early: Alongside | None = None) -> RunEval:
    """Strict load into the architecture, finite outputs, then forget/retain/test; cached per run. An
    evaluation done alongside the child counts when it was of the accepted weights' very bytes."""
    cache = work.evals / f"{run_name(index)}.npz"
    if cache.is_file():
        return read_eval(cache)
    weights = work.runs / f"{run_name(index)}.pt"
    result = early.result(index, weights) if early else None
    if result is None:
        result = judge_run(ctx.spec, weights, data, index, ctx.settings)
    write_eval(cache, result)
    return result


# -- scoring ---------------------------------------------------------------------------------------
def collect_runs(ctx: Context, work: Work, box: Sandbox, submission: Path, params: Params, logs: dict[str, Path], timing: dict[str, Any],
                 data: dict[str, torch.Tensor]) -> tuple[dict[str, Any], Alongside | None]:
    """Every run done, accepted and within the budget (reusing finished ones), or a Verdict.

    Returns the budget section of the result and the evaluations done alongside the child (challenge.scoring.alongside);
    the child's own times go into `timing`.
    """
    s = ctx.settings
    work.salvage()
    todo = [i for i in range(s.n_runs) if not work.usable(i, s)]
    timing["reused_runs"] = s.n_runs - len(todo)
    outside, early = 0.0, None
    if todo:
        work.new_attempt()
        inputs, outputs = work.attempt / "inputs", work.attempt / "outputs"
        t = time.perf_counter()
        stage(ctx, submission, inputs, todo, params.changed)
        staged, spawned = time.perf_counter() - t, time.time()
        before = sum(r["cost"] / run_budget(r, s) for i in range(s.n_runs) if i not in todo and (r := work.ledger(i)))
        (work.root / "calibration.json").unlink(missing_ok=True)  # this attempt prices its own runs
        on_run, progress = run_progress(work, submission, s, len(todo), before)
        early = Alongside(ctx, outputs, todo, data, max_weights_bytes(ctx)) if spare_core(s) else None
        try:
            with early or contextlib.nullcontext():
                outcome, ledger = supervise(box, todo, s, logs, before, on_run=on_run)
        finally:
            progress.close()
        if early:
            timing["evaluation_alongside"] = {"runs": len(early.done), "seconds": early.seconds}
        timing["child"], timing["child_seconds"] = {"stage_inputs": staged, **startup_times(outputs / "ready.json", spawned)}, outcome.seconds
        if ledger.calibration:
            write_atomic(work.root / "calibration.json", json.dumps(ledger.calibration))
        work.salvage()
        try:
            missing = [i for i in todo if not work.has_run(i)]
            judge_end(outcome, ledger.imported, read_failure(outputs / "failure.json"), missing, s, {k: str(v) for k, v in logs.items()})
        finally:
            shutil.rmtree(work.attempt, ignore_errors=True)  # a copy of the data: no use once judged
        outside = ledger.outside_budgets
    records = [read_record(work.runs / f"{run_name(i)}.json", i, RUN_TIMES) for i in range(s.n_runs)]
    charges = [work.ledger(i) for i in range(s.n_runs)]
    broken = next((i for i in range(s.n_runs) if records[i] is None or charges[i] is None), None)
    if broken is not None:
        raise Verdict("crashed", f"run {broken}'s record is unreadable")
    for key in RUN_TIMES:
        timing[f"run_{key}"] = [r[key] for r in records]
    return budget_section(work, s, judge_budget(charges, outside, s), outside), early


def max_weights_bytes(ctx: Context) -> int:
    """The most a run's weights file may hold to be read alongside: a state dict of the architecture is
    about the size of the original's file (its metadata aside), so anything far larger is not one."""
    return 4 * ctx.pool.original_path.stat().st_size + 2**20


def run_progress(work: Work, submission: Path, s: Settings, todo: int, before: float) -> tuple[Callable[[int, dict[str, Any]], None], Progress]:
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


def budget_section(work: Work, s: Settings, runs: list[dict[str, Any]], outside: float) -> dict[str, Any]:
    """What result.json says of the budget: the price of a retrain, the rule, each run's cost against it."""
    calibration = read_calibration(work.root / "calibration.json")
    fractions = [r["cost"] / r["budget"] for r in runs]
    if s.budget_seconds is not None or calibration is not None:
        budget = Budget.priced(s, calibration).to_dict()
    else:  # every run was reused and the last price is gone: each run keeps its own attempt's
        budget = {"per_run": float(np.mean([r["budget"] for r in runs])), "rule": f"{s.budget_fraction:g} × retraining's cost, priced by earlier attempts"}
    return {
        **budget, "fraction": s.budget_fraction if s.budget_seconds is None else None,
        "total": s.n_runs * budget["per_run"], "calibration": calibration,
        "run_cost": [r["cost"] for r in runs], "run_wall": [r["wall"] for r in runs], "run_budget": [r["budget"] for r in runs],
        "run_fraction": fractions, "outside_budgets": outside, "used_budgets": sum(fractions) + outside,
        "enforced": "exempt (BUDGET_EXEMPT in a kit baseline)" if s.budget_exempt else
                    f"the {s.n_runs} runs within {s.n_runs} budgets (Kaggle's rule); one run stopped past {s.budget_cap:g} budgets",
    }


def score_submission(cfg: DictConfig, submission: Path, out_dir: Path) -> dict[str, Any]:
    """Score one file; the result is also written to out_dir/result.json.

    Never raises for the participant's faults (they become `status`); raises ChallengeError for
    the user's (no pool, bad settings, limits the kit itself cannot start in). Called by
    `challenge score`, the competition worker and `make baseline`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    params = resolve_params(submission, cfg.get("params"), cfg.get("params_file")) if submission.is_file() else Params()
    ctx = prepare(cfg)
    ctx.settings = replace(ctx.settings, budget_exempt=budget_exempt(submission))
    base = {"submission": {"path": str(submission), "sha256": None}, "pool": {"fingerprint": ctx.pool.fingerprint, "root": str(ctx.pool.root), "models": ctx.settings.n_runs},
            "settings": ctx.settings.to_dict(), "params": params.to_dict()}
    if not submission.is_file():
        return _finish(out_dir, None, {"status": "not_found", "message": f"no submission file at {submission}: give the path of a .py file defining unlearning(...)", **base})
    sha = hashlib.sha256(submission.read_bytes()).hexdigest()
    base["submission"]["sha256"] = sha
    work = Work.for_submission(ctx, sha, Path(cfg.paths.cache_dir), params.changed)
    work.root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(work.root / "lock")):
        if cfg.scorer.fresh:
            for d in ("runs", "ledger", "evals", "attempt", "results"):
                shutil.rmtree(work.root / d, ignore_errors=True)
        cached = work.result_path(ctx.settings)
        if cached.is_file():
            result = json.loads(cached.read_text())
            result["submission"]["path"] = str(submission)
            result["params"] = params.to_dict()  # the same values, maybe given another way (params_file)
            return _finish(out_dir, None, keep_confidences(ctx, work, cached, result), cached.with_suffix(".npz"))
        result, metric = _score(ctx, work, submission, params, out_dir, base)
        return _finish(out_dir, cached, keep_confidences(ctx, work, cached, result, metric), cached.with_suffix(".npz"))


def _score(ctx: Context, work: Work, submission: Path, params: Params, out_dir: Path, base: dict[str, Any]) -> tuple[dict[str, Any], ForgettingResult | None]:
    logs = {"stdout": out_dir / "submission.stdout.log", "stderr": out_dir / "submission.stderr.log"}
    box = Sandbox(*(work.attempt / d for d in ("inputs", "outputs", "scratch")), ctx.settings.limits, ctx.settings.isolation, gpu_for(ctx.settings.device))
    base = {**base, "sandbox": box.protections.to_dict(), "logs": {k: str(v) for k, v in logs.items()}}
    start = time.perf_counter()
    timing: dict[str, Any] = {}
    try:
        data = reference_tensors(ctx.dm, ctx.settings.device)
        budget, early = collect_runs(ctx, work, box, submission, params, logs, timing, data)
        t = time.perf_counter()
        evals = [evaluate_run(ctx, work, i, data, early) for i in range(ctx.settings.n_runs)]
        timing["evaluation_seconds"] = time.perf_counter() - t  # what the scoring waited for after the child
    except Verdict as v:
        timing["total_seconds"] = time.perf_counter() - start
        calibration = read_calibration(work.root / "calibration.json")
        return {"status": v.status, "message": v.message, **base, "score": None, "budget": {"calibration": calibration}, "runs": [], "examples": None, "timing": timing}, None
    score, metric = score_runs(ctx, evals)
    eps = metric.epsilons
    timing["total_seconds"] = time.perf_counter() - start
    mia = score["mia_per_run"] or [None] * len(evals)
    runs = [{"index": e.index, "seed": e.seed, "retain_acc": e.retain_acc, "forget_acc": e.forget_acc, "test_acc": e.test_acc, "mia": m,
             "cost": c, "cost_fraction": f} for e, m, c, f in zip(evals, mia, budget["run_cost"], budget["run_fraction"])]
    message = f"final score {score['final_score']:.4f}, forget quality F {score['forget_quality']:.4f}"
    per_example = examples(ctx, evals, eps)
    reference = pool_reference(original_metrics(ctx.pool.original_path), ctx.entries, ctx.pool.root)
    return {"status": "scored", "message": message, **base, "score": score, "budget": budget, "runs": runs, "examples": per_example,
            "confidence_samples": confidence_samples(ctx, evals, eps), "reference": reference, "leaks": leaks(ctx.dm.faces.images, per_example),
            "timing": timing}, metric


def score_runs(ctx: Context, evals: list[RunEval]) -> tuple[dict[str, Any], ForgettingResult]:
    try:
        score, metric = judge_score(evals, *_pool_side(ctx.entries), ctx.settings.n_bootstrap, ctx.settings.first_seed)
    except ValueError as e:  # e.g. retrained models with zero accuracy: the pool cannot normalise a score
        raise ChallengeError(f"cannot score against the pool at {ctx.pool.root}: {e}") from None
    score["ceiling"] = ceiling(ctx)
    return score, metric


def ceiling(ctx: Context) -> dict[str, Any] | None:
    """What retraining itself scores against the reference, at the same N and K: the held-out half of
    the pool scored as if it were a submission. F cannot reach 1 at small N (at N = 16 retraining
    scores about 0.15), so a method's F means little until it is read as a fraction of this."""
    held, ref, s = ctx.held_out, ctx.entries, ctx.settings
    if not held:
        return None
    # The same for every submission on this pool: computed once (its bootstrap is a minute at N = 512).
    cache = ctx.pool.root / f"ceiling-n{s.n_runs}-b{s.n_bootstrap}-s{s.first_seed}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    (conf, retain, test), (ref_conf, ref_retain, ref_test) = _pool_side(held), _pool_side(ref)
    res = evaluate_forgetting(conf, ref_conf, retain_acc_unlearned=retain, retain_acc_retrained=ref_retain,
                              test_acc_unlearned=test, test_acc_retrained=ref_test, n_bootstrap=s.n_bootstrap, seed=s.first_seed)
    out = {"forget_quality": res.forget_quality, "forget_quality_ci": list(res.forget_quality_ci) if res.forget_quality_ci else None,
           "final_score": res.final_score, "n_models": res.n_models, "n_examples": res.n_examples,
           "source": f"{len(held)} held-out retrained models of the pool (seeds {held[0].seed}-{held[-1].seed}) against the {len(ref)} reference ones"}
    write_atomic(cache, json.dumps(out))
    return out


def _pool_side(entries: list[PoolEntry]) -> tuple[np.ndarray, list[float], list[float]]:
    """Retrained models as the metric takes them: [N, K] forget confidences, retain and test accuracies."""
    return np.stack([e.confidences for e in entries]), [e.retain_acc for e in entries], [e.test_acc for e in entries]


def examples(ctx: Context, evals: list[RunEval], eps: np.ndarray) -> dict[str, list]:
    """One row per forget image, in forget-split order: who it is and how well it was forgotten."""
    idx = ctx.dm.split.indices("forget")
    return {
        "image_id": [int(i) for i in idx],
        "person_id": [int(ctx.dm.faces.person_ids[i]) for i in idx],
        "epsilon": [float(x) for x in eps],
        "unlearned_confidence": np.mean([e.forget_conf for e in evals], axis=0).tolist(),
        "retrained_confidence": np.mean([e.confidences for e in ctx.entries], axis=0).tolist(),
    }


def confidence_samples(ctx: Context, evals: list[RunEval], eps: np.ndarray) -> dict[str, list]:
    """Every model's confidence on a few forget images, to draw unlearned against retrained.

    The images are spread evenly over the forget split, the same for every submission on a pool,
    so that reports can set methods side by side; the full [N, K] arrays would be too large to keep.
    """
    picks = np.unique(np.linspace(0, len(eps) - 1, min(N_CONFIDENCE_SAMPLES, len(eps))).round().astype(int))
    ids = ctx.dm.split.indices("forget")
    return {
        "forget_index": picks.tolist(),
        "image_id": [int(ids[i]) for i in picks],
        "epsilon": [float(eps[i]) for i in picks],
        "unlearned": [[float(e.forget_conf[i]) for e in evals] for i in picks],
        "retrained": [[float(e.confidences[i]) for e in ctx.entries] for i in picks],
    }


def keep_confidences(ctx: Context, work: Work, cached: Path, result: dict[str, Any], metric: ForgettingResult | None = None) -> dict[str, Any]:
    """A scored result's per-model forget confidences, kept beside its cached result.

    result.json has room for a few examples only (`confidence_samples`); a paired comparison of two
    results (challenge.scoring.compare) needs all [N, K] of them. They are read from the runs'
    cached evaluations, so a result cached before the kit kept them gets them too; the result
    names the file (`forget_confidences`), which `_finish` puts beside result.json. The metric of a
    scoring just done adds its interval's replicates, so that comparisons need not recompute them.
    """
    kept = cached.with_suffix(".npz")
    if result.get("status") == "scored" and not kept.is_file():
        try:
            unlearned = np.stack([read_eval(work.evals / f"{run_name(i)}.npz").forget_conf for i in range(ctx.settings.n_runs)])
        except (OSError, ValueError, KeyError):  # the evaluations are gone: nothing to keep, and nothing named
            result.pop("forget_confidences", None)
            return result
        reps = metric.replicates if metric is not None else None
        draw = draw_key(metric.seed, metric.n_bootstrap, metric.delta, metric.thresholds) if reps is not None else ""
        write_confidences(kept, Confidences(unlearned, _pool_side(ctx.entries)[0], ctx.pool.fingerprint, reps, draw))
    if result.get("status") == "scored":
        result["forget_confidences"] = CONFIDENCES_FILE
    return result


def _finish(out_dir: Path, cache: Path | None, result: dict[str, Any], kept: Path | None = None) -> dict[str, Any]:
    """result.json in out_dir (and in the cache), with the kept confidences it names copied beside it
    first, so a reader that finds result.json finds them; a stale copy from an earlier result goes."""
    mine = out_dir / CONFIDENCES_FILE
    if kept is not None and result.get("forget_confidences"):
        write_with(mine, lambda tmp: shutil.copyfile(kept, tmp))
    else:
        mine.unlink(missing_ok=True)
    text = json.dumps(result, indent=1)
    write_atomic(out_dir / "result.json", text)
    if cache is not None:
        write_atomic(cache, text)
    return result
