"""`challenge score <file.py>`: run a submission N times in the sandbox and score it against the pool.

The scoring program of Codabench's split. It stages only what a participant may see (retain,
forget and val data, the original weights), runs challenge.ingestion in the sandbox, and does
everything that needs hidden data itself: it loads each returned state dict strictly into the
architecture, evaluates forget, retain and test images, and calls the metric. A participant's
fault ends in a verdict (a `status` in result.json, one line, exit status 1); the user's own
faults (no pool, a bad setting) raise ChallengeError. Finished runs are kept under
paths.cache_dir/scores, so a killed scorer resumes where it stopped, and a finished result is
reused whole.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import challenge
from challenge.budget import Budget, read_calibration, retrain_plan
from challenge.checks import check_values
from challenge.data.datamodule import FaceDataModule
from challenge.errors import ChallengeError, Verdict
from challenge.ingestion import run_name
from challenge.judge import RunEval, evaluate, judge_budget, judge_end, kit_failure, load_weights, read_failure, read_record, reference_tensors, run_budget
from challenge.judge import score as judge_score
from challenge.net import NetSpec, load_net, save_net
from challenge.pool import Pool, PoolEntry
from challenge.sandbox import Sandbox
from challenge.settings import Settings
from challenge.supervisor import spec_plan, supervise
from challenge.training import set_threads

PARTS = ("retain", "forget", "val")  # all the child ever gets; test images never leave the scorer
RUN_TIMES = ("seconds", "reset_seconds", "save_seconds", "check_seconds")  # the child's own account of a run, for overhead figures
KIT_BASELINES = Path(challenge.__file__).resolve().parent.parent / "baselines"
N_CONFIDENCE_SAMPLES = 4  # forget images whose every-model confidences go into the result, for plots


# -- settings and context ------------------------------------------------------------------------
@dataclass
class Context:
    """The hidden side of scoring: data with test images, the pool, the architecture, the recipe to price."""

    dm: FaceDataModule
    pool: Pool
    entries: list[PoolEntry]
    spec: NetSpec
    settings: Settings
    plan: dict[str, Any]  # how the child prices a retrain (challenge.budget.retrain_plan)


def prepare(cfg: DictConfig) -> Context:
    """Everything the user must have set up; their faults end here as ChallengeError."""
    check_values(cfg)  # the CLI checks before any import; callers of score_submission get the same lines
    settings = Settings.from_config(cfg)
    set_threads(settings.threads)  # the judge's evaluation too: thread count changes a model's output bits
    dm: FaceDataModule = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    entries = pool.require(settings.n_runs)
    _, spec, _ = load_net(pool.original_path)
    plan = retrain_plan(cfg, len(dm.dataset("retain")), dm.split.class_weights, settings.calibration_steps)
    return Context(dm, pool, entries, spec, settings, plan)


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


def _short_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# -- the work folder -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Work:
    """One submission's runs against one pool, kept across scorer runs.

    runs/ holds what the scorer accepted from the child, ledger/ what the meter charged each run
    (written by the scorer, out of the child's reach), evals/ the judge's evaluation of each run,
    attempt/ the child's world for the current attempt (rebuilt each time), results/ finished
    results per settings. Runs depend only on the submission, the pool, the seeds, the batch sizes
    and the thread count, so a later scoring with more runs or another budget reuses them.
    """

    root: Path

    @classmethod
    def for_submission(cls, ctx: Context, sha: str, cache_dir: Path) -> "Work":
        s = ctx.settings
        key = _short_hash({"pool": ctx.pool.fingerprint, "first_seed": s.first_seed, "batch_size": s.batch_size,
                           "eval_batch_size": s.eval_batch_size, "threads": s.threads})
        return cls(cache_dir / "scores" / f"{sha[:16]}-{key}")

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def evals(self) -> Path:
        return self.root / "evals"

    @property
    def attempt(self) -> Path:
        return self.root / "attempt"

    def result_path(self, settings: Settings) -> Path:
        return self.root / "results" / f"{_short_hash(settings.to_dict())}.json"

    def ledger_path(self, index: int) -> Path:
        return self.root / "ledger" / f"{run_name(index)}.json"

    def write_ledger(self, index: int, record: dict[str, Any]) -> None:
        path = self.ledger_path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))

    def ledger(self, index: int) -> dict[str, Any] | None:
        try:
            return json.loads(self.ledger_path(index).read_text())
        except (OSError, ValueError):
            return None

    def has_run(self, index: int) -> bool:
        return all((self.runs / f"{run_name(index)}{ext}").is_file() for ext in (".pt", ".json"))

    def usable(self, index: int, settings: Settings) -> bool:
        """Done, charged, and priced in a way these settings can judge (a fixed budget, or a calibration)."""
        record = self.ledger(index)
        return self.has_run(index) and record is not None and run_budget(record, settings) is not None

    def new_attempt(self) -> None:
        """Fresh inputs/outputs/scratch, after keeping what the last child finished."""
        self.salvage()
        shutil.rmtree(self.attempt, ignore_errors=True)
        for d in ("inputs", "outputs", "scratch"):
            (self.attempt / d).mkdir(parents=True)

    def salvage(self) -> None:
        """Move complete runs out of the child's reach; a symlink or a malformed record is not a run."""
        outputs = self.attempt / "outputs"
        if not outputs.is_dir():
            return
        self.runs.mkdir(parents=True, exist_ok=True)
        for record in sorted(outputs.glob("run-[0-9][0-9][0-9][0-9].json")):
            weights = record.with_suffix(".pt")
            index = int(record.stem[4:])
            if not _regular(record) or not _regular(weights) or read_record(record, index, RUN_TIMES) is None:
                continue
            shutil.move(weights, self.runs / weights.name)
            shutil.move(record, self.runs / record.name)


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


# -- running the child -----------------------------------------------------------------------------
def stage(ctx: Context, submission: Path, inputs: Path, todo: list[int]) -> None:
    """The child's whole world: the file, the original weights, retain/forget/val, and the run plan."""
    shutil.copyfile(submission, inputs / "submission.py")
    write_child_inputs(ctx, inputs, todo, "submission.py")


def write_child_inputs(ctx: Context, folder: Path, todo: list[int], submission: str) -> None:
    """original.pt, data.pt and spec.json: the same files for `challenge score` and the Codabench bundle."""
    net, spec, data_config = load_net(ctx.pool.original_path)
    save_net(net, spec, data_config, folder / "original.pt")  # without the original's test metrics
    torch.save(staged_data(ctx.dm), folder / "data.pt")
    (folder / "spec.json").write_text(json.dumps(spec_plan(ctx.settings, todo, submission, ctx.plan)))


def staged_data(dm: FaceDataModule) -> dict[str, torch.Tensor]:
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
def evaluate_run(ctx: Context, work: Work, index: int, data: dict[str, torch.Tensor]) -> RunEval:
    """Strict load into the architecture, finite outputs, then forget/retain/test; cached per run."""
    cache = work.evals / f"{run_name(index)}.npz"
    if cache.is_file():
        return _read_eval(cache)
    net = load_weights(ctx.spec, work.runs / f"{run_name(index)}.pt", index)
    result = evaluate(net, data, index, ctx.settings.seed(index), ctx.settings.eval_batch_size)
    _write_eval(cache, result)
    return result


def _write_eval(path: Path, e: RunEval) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **{k: np.asarray(getattr(e, k)) for k in RunEval.__dataclass_fields__})
    tmp.replace(path)


def _read_eval(path: Path) -> RunEval:
    with np.load(path) as z:
        raw = {k: z[k] for k in z.files}
    scalars = {k: int(raw[k]) if k in ("index", "seed") else float(raw[k]) for k in ("index", "seed", "retain_acc", "forget_acc", "test_acc")}
    return RunEval(**scalars, forget_conf=raw["forget_conf"], forget_loss=raw["forget_loss"], test_loss=raw["test_loss"])


# -- scoring ---------------------------------------------------------------------------------------
def collect_runs(ctx: Context, work: Work, box: Sandbox, submission: Path, logs: dict[str, Path], timing: dict[str, Any]) -> dict[str, Any]:
    """Every run done, accepted and within the budget (reusing finished ones), or a Verdict.

    Returns the budget section of the result; the child's own times go into `timing`.
    """
    s = ctx.settings
    work.salvage()
    todo = [i for i in range(s.n_runs) if not work.usable(i, s)]
    timing["reused_runs"] = s.n_runs - len(todo)
    outside = 0.0
    if todo:
        work.new_attempt()
        inputs, outputs = work.attempt / "inputs", work.attempt / "outputs"
        t = time.perf_counter()
        stage(ctx, submission, inputs, todo)
        staged, spawned = time.perf_counter() - t, time.time()
        before = sum(r["cost"] / run_budget(r, s) for i in range(s.n_runs) if i not in todo and (r := work.ledger(i)))
        (work.root / "calibration.json").unlink(missing_ok=True)  # this attempt prices its own runs
        outcome, ledger = supervise(box, todo, s, logs, before, on_run=work.write_ledger)
        timing["child"], timing["child_seconds"] = {"stage_inputs": staged, **startup_times(outputs / "ready.json", spawned)}, outcome.seconds
        if ledger.calibration:
            (work.root / "calibration.json").write_text(json.dumps(ledger.calibration))
        work.salvage()
        try:
            failure = read_failure(outputs / "failure.json")
            if not ledger.imported and failure is None:
                raise kit_failure(outcome, s, logs["stderr"])
            judge_end(outcome, failure, [i for i in todo if not work.has_run(i)], s.limits, {k: str(v) for k, v in logs.items()})
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
    runs = [{**c, "budget": run_budget(c, s)} for c in charges]
    section = budget_section(work, s, runs, outside)
    judge_budget(runs, outside, s.n_runs, s.budget_exempt)
    return section


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
    ctx = prepare(cfg)
    ctx.settings = replace(ctx.settings, budget_exempt=budget_exempt(submission))
    base = {"submission": {"path": str(submission), "sha256": None}, "pool": {"fingerprint": ctx.pool.fingerprint, "root": str(ctx.pool.root), "models": ctx.settings.n_runs},
            "settings": ctx.settings.to_dict()}
    if not submission.is_file():
        return _finish(out_dir, None, {"status": "not_found", "message": f"no submission file at {submission}: give the path of a .py file defining unlearning(...)", **base})
    sha = hashlib.sha256(submission.read_bytes()).hexdigest()
    base["submission"]["sha256"] = sha
    work = Work.for_submission(ctx, sha, Path(cfg.paths.cache_dir))
    work.root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(work.root / "lock")):
        if cfg.scorer.fresh:
            for d in ("runs", "ledger", "evals", "attempt", "results"):
                shutil.rmtree(work.root / d, ignore_errors=True)
        cached = work.result_path(ctx.settings)
        if cached.is_file():
            result = json.loads(cached.read_text())
            result["submission"]["path"] = str(submission)
            return _finish(out_dir, None, result)
        return _finish(out_dir, cached, _score(ctx, work, submission, out_dir, base))


def _score(ctx: Context, work: Work, submission: Path, out_dir: Path, base: dict[str, Any]) -> dict[str, Any]:
    logs = {"stdout": out_dir / "submission.stdout.log", "stderr": out_dir / "submission.stderr.log"}
    box = Sandbox(*(work.attempt / d for d in ("inputs", "outputs", "scratch")), ctx.settings.limits, ctx.settings.isolation)
    base = {**base, "sandbox": box.protections.to_dict(), "logs": {k: str(v) for k, v in logs.items()}}
    start = time.perf_counter()
    timing: dict[str, Any] = {}
    try:
        budget = collect_runs(ctx, work, box, submission, logs, timing)
        t = time.perf_counter()
        data = reference_tensors(ctx.dm)
        evals = [evaluate_run(ctx, work, i, data) for i in range(ctx.settings.n_runs)]
        timing["evaluation_seconds"] = time.perf_counter() - t
    except Verdict as v:
        timing["total_seconds"] = time.perf_counter() - start
        calibration = read_calibration(work.root / "calibration.json")
        return {"status": v.status, "message": v.message, **base, "score": None, "budget": {"calibration": calibration}, "runs": [], "examples": None, "timing": timing}
    score, eps = score_runs(ctx, evals)
    timing["total_seconds"] = time.perf_counter() - start
    mia = score["mia_per_run"] or [None] * len(evals)
    runs = [{"index": e.index, "seed": e.seed, "retain_acc": e.retain_acc, "forget_acc": e.forget_acc, "test_acc": e.test_acc, "mia": m,
             "cost": c, "cost_fraction": f} for e, m, c, f in zip(evals, mia, budget["run_cost"], budget["run_fraction"])]
    message = f"final score {score['final_score']:.4f}, forget quality F {score['forget_quality']:.4f}"
    return {"status": "scored", "message": message, **base, "score": score, "budget": budget, "runs": runs, "examples": examples(ctx, evals, eps),
            "confidence_samples": confidence_samples(ctx, evals, eps), "timing": timing}


def score_runs(ctx: Context, evals: list[RunEval]) -> tuple[dict[str, Any], np.ndarray]:
    try:
        return judge_score(evals, np.stack([e.confidences for e in ctx.entries]), [e.retain_acc for e in ctx.entries],
                           [e.test_acc for e in ctx.entries], ctx.settings.n_bootstrap, ctx.settings.first_seed)
    except ValueError as e:  # e.g. retrained models with zero accuracy: the pool cannot normalise a score
        raise ChallengeError(f"cannot score against the pool at {ctx.pool.root}: {e}") from None


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


def _finish(out_dir: Path, cache: Path | None, result: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(result, indent=1)
    (out_dir / "result.json").write_text(text)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.tmp")
        tmp.write_text(text)
        tmp.replace(cache)
    return result


# -- the command -----------------------------------------------------------------------------------
def run(cfg: DictConfig) -> dict[str, Any]:
    """`challenge score <file.py>`: one table on stdout, result.json in the run folder, exit 1 on a verdict."""
    if OmegaConf.is_missing(cfg, "submission"):
        raise ChallengeError("name the submission file: challenge score path/to/submission.py")
    out = Path(cfg.paths.output_dir)
    result = score_submission(cfg, Path(cfg.submission), out)
    log_to_wandb(cfg, result)
    sandbox = result.get("sandbox")
    if sandbox and sandbox["isolation"].startswith("none"):
        print(f"warning: isolation: {sandbox['isolation']} — {sandbox['filesystem']}", file=sys.stderr)
    if result["status"] != "scored":
        print(f"rejected ({result['status']}): {result['message']}", file=sys.stderr)
        print(f"result: {out / 'result.json'}", file=sys.stderr)
        sys.exit(1)
    print(format_result(result))
    print(f"result: {out / 'result.json'}")
    return result


def format_result(r: dict[str, Any]) -> str:
    s, t, sc = r["settings"], r["timing"], r["score"]
    ci = sc["forget_quality_ci"]
    ci_text = f"{sc['ci_level']:.0%} CI [{ci[0]:.3f}, {ci[1]:.3f}] over {sc['n_bootstrap']} bootstrap resamples" if ci else "no CI (scorer.n_bootstrap=0)"
    mia_text = f"{sc['mia']:>9.3f}   attack accuracy, forget vs test losses (0.5 = no leak)" if sc["mia"] is not None else f"{'n/a':>9}   {sc['mia_note']}"
    lines = [
        f"submission  {r['submission']['path']} (sha256 {r['submission']['sha256'][:12]})",
        f"pool        {r['pool']['fingerprint']}: {r['pool']['models']} retrained models vs {s['n_runs']} unlearning runs (seeds {s['first_seed']}..{s['first_seed'] + s['n_runs'] - 1})",
        *_protection_lines(r["sandbox"]),
        "",
        f"{'':<22}{'unlearned':>9}  {'retrained':>9}  {'ratio':>6}",
        f"{'retain accuracy':<22}{sc['retain_acc_unlearned']:>9.3f}  {sc['retain_acc_retrained']:>9.3f}  {sc['retain_ratio']:>6.3f}",
        f"{'test accuracy':<22}{sc['test_acc_unlearned']:>9.3f}  {sc['test_acc_retrained']:>9.3f}  {sc['test_ratio']:>6.3f}",
        f"{'forget quality F':<22}{sc['forget_quality']:>9.3f}   {ci_text}",
        f"{'final score':<22}{sc['final_score']:>9.3f}   F × retain ratio × test ratio",
        f"{'membership inference':<22}{mia_text}",
        *budget_lines(r["budget"]),
    ]
    if t.get("reused_runs"):
        lines.append(f"(reused {t['reused_runs']} finished runs from an earlier scoring)")
    return "\n".join(lines)


def budget_lines(b: dict[str, Any]) -> list[str]:
    """The price of a retrain, the rule, and what the runs cost against it (in the clock's seconds)."""
    clock = "CPU s" if b["clock"] == "cpu" else "s"
    fractions = b["run_fraction"]
    cal = b.get("calibration")
    lines = [f"{'budget per run':<22}{b['per_run']:>9.2f}   {clock}: {b['rule']}"]
    if cal:
        lines.append(f"{'retrain, calibrated':<22}{cal['retrain_seconds']:>9.2f}   {clock}: {cal['steps_per_retrain']} steps × {cal['per_step_seconds'] * 1000:.1f} ms ({cal['steps_timed']} timed)")
    lines += [
        f"{'cost per run':<22}{np.mean(b['run_cost']):>9.2f}   {clock}, {np.mean(fractions):.0%} of the budget on average, max {max(fractions):.0%} (run {int(np.argmax(fractions))})",
        f"{'budgets used':<22}{b['used_budgets']:>9.2f}   of {len(fractions)}: {b['enforced']}",
        f"{'':<22}{'':>9}   per run (% of budget): " + " ".join(f"{f:.0%}" for f in fractions),
    ]
    return lines


def _protection_lines(p: dict[str, str]) -> list[str]:
    return [
        f"sandbox     {p['isolation']}: {p['filesystem']}",
        f"            network: {p['network']}; processes: {p['processes']}",
        f"            memory: {p['memory']}; file size: {p['file_size']}",
    ]


def log_to_wandb(cfg: DictConfig, result: dict[str, Any]) -> None:
    """One W&B run per scoring: the summary, a histogram of epsilons and the per-example table."""
    from challenge.tracking import finish, make_logger

    sha = result["submission"]["sha256"] or "missing"
    logger = make_logger(cfg, name=f"score-{Path(cfg.submission).stem}-{sha[:8]}")
    if not logger:
        return
    import wandb

    run = logger.experiment
    run.summary.update({"status": result["status"], "message": result["message"], "sha256": sha, "pool": result["pool"]["fingerprint"]})
    if result["status"] == "scored":
        run.summary.update({k: v for k, v in result["score"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        ex = result["examples"]
        columns = list(ex)
        run.log({"epsilon": wandb.Histogram(ex["epsilon"]), "examples": wandb.Table(columns=columns, data=[list(row) for row in zip(*ex.values())])})
    finish(logger)
