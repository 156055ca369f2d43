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
import math
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import challenge
from challenge.data.datamodule import FaceDataModule
from challenge.errors import ChallengeError
from challenge.ingestion import CHILD_STATUSES, run_name
from challenge.metric import cross_entropy_losses, evaluate_forgetting, logit_scaled_confidence, membership_inference_audit
from challenge.net import NetSpec, accuracy, load_net, predict_logits, save_net
from challenge.pool import Pool, PoolEntry
from challenge.sandbox import Limits, Outcome, Sandbox
from challenge.training import set_threads

PARTS = ("retain", "forget", "val")  # all the child ever gets; test images never leave the scorer
RUN_TIMES = ("seconds", "reset_seconds", "save_seconds", "check_seconds")  # a run record, in seconds
KIT_BASELINES = Path(challenge.__file__).resolve().parent.parent / "baselines"
N_CONFIDENCE_SAMPLES = 4  # forget images whose every-model confidences go into the result, for plots


class Verdict(Exception):
    """A participant's fault: a status and a one-line reason in result.json, never a traceback."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# -- settings and context ------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """`scorer.*` resolved and checked; everything that can change a result."""

    n_runs: int
    first_seed: int
    budget_seconds: float
    budget_rule: str
    startup_seconds: float
    memory_mb: int | None
    file_size_mb: int | None
    log_cap_bytes: int
    n_bootstrap: int
    isolation: str
    threads: int
    batch_size: int
    budget_exempt: bool = False  # see budget_exempt()

    @property
    def limits(self) -> Limits:
        return Limits(self.memory_mb, self.file_size_mb, self.log_cap_bytes)

    def seed(self, index: int) -> int:
        return self.first_seed + index


@dataclass
class Context:
    """The hidden side of scoring: data with test images, the pool, the architecture."""

    dm: FaceDataModule
    pool: Pool
    entries: list[PoolEntry]
    spec: NetSpec
    settings: Settings


def prepare(cfg: DictConfig) -> Context:
    """Everything the user must have set up; their faults end here as ChallengeError."""
    s = cfg.scorer
    n = int(s.n_runs)
    if n < 3:
        raise ChallengeError(f"scorer.n_runs={n}: the metric compares distributions and needs at least 3 runs")
    dm: FaceDataModule = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    entries = pool.require(n)
    _, spec, _ = load_net(pool.original_path)
    if s.budget_seconds is not None:
        budget, rule = float(s.budget_seconds), "scorer.budget_seconds"
    else:
        mean = pool.mean_retrain_seconds(n)
        budget, rule = float(s.budget_fraction) * mean, f"{s.budget_fraction} × mean retrain time {mean:.1f} s"
    if not budget > 0:
        raise ChallengeError(f"the per-run budget is {budget} s: set scorer.budget_seconds or scorer.budget_fraction above 0")
    settings = Settings(
        n_runs=n, first_seed=int(s.first_seed), budget_seconds=budget, budget_rule=rule, startup_seconds=float(s.startup_seconds),
        memory_mb=s.memory_mb, file_size_mb=s.file_size_mb, log_cap_bytes=int(s.log_cap_bytes), n_bootstrap=int(s.n_bootstrap),
        isolation=str(s.isolation), threads=set_threads(s.threads), batch_size=int(cfg.data.batch_size),
    )
    return Context(dm, pool, entries, spec, settings)


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

    runs/ holds what the scorer accepted from the child, evals/ its own evaluation of each run,
    attempt/ the child's world for the current attempt (rebuilt each time), results/ finished
    results per settings. Runs depend only on the submission, the pool, the seeds, the batch size
    and the thread count, so a later scoring with more runs or another budget reuses them.
    """

    root: Path

    @classmethod
    def for_submission(cls, ctx: Context, sha: str, cache_dir: Path) -> "Work":
        s = ctx.settings
        key = _short_hash({"pool": ctx.pool.fingerprint, "first_seed": s.first_seed, "batch_size": s.batch_size, "threads": s.threads})
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
        return self.root / "results" / f"{_short_hash(asdict(settings))}.json"

    def has_run(self, index: int) -> bool:
        return all((self.runs / f"{run_name(index)}{ext}").is_file() for ext in (".pt", ".json"))

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
            if self.has_run(index) or not _regular(record) or not _regular(weights) or _read_record(record, index) is None:
                continue
            shutil.move(weights, self.runs / weights.name)
            shutil.move(record, self.runs / record.name)


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _read_record(path: Path, index: int) -> dict[str, float] | None:
    """A run's times as the child reported them, or None if the record is not one."""
    try:
        raw = json.loads(path.read_text()[:10_000])
        record = {k: float(raw[k]) for k in RUN_TIMES}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = raw.get("index") == index and all(math.isfinite(v) and v >= 0 for v in record.values())
    return record if ok else None


# -- running the child -----------------------------------------------------------------------------
class RunClock:
    """The per-run budget, timed by the scorer from the child's files, so the child cannot fake it.

    A run lasts from its .start marker to its weights file; everything else the child does
    (imports, loading, resetting weights, saving records) counts against scorer.startup_seconds.
    """

    def __init__(self, outputs: Path, todo: list[int], settings: Settings):
        self.outputs, self.todo, self.s = outputs, todo, settings
        self.pos, self.running, self.since = 0, False, time.monotonic()

    def __call__(self) -> str | None:
        now = time.monotonic()
        while self.pos < len(self.todo):
            name = run_name(self.todo[self.pos])
            if not self.running:
                if not (self.outputs / f"{name}.start").exists():
                    break
                self.running, self.since = True, now
            if not (self.outputs / f"{name}.pt").exists():
                break
            self.running, self.since, self.pos = False, now, self.pos + 1
        if self.running and not self.s.budget_exempt and now - self.since > self.s.budget_seconds:
            return f"run {self.todo[self.pos]} took longer than its budget of {self.s.budget_seconds:.1f} s ({self.s.budget_rule}) and was stopped"
        if not self.running and now - self.since > self.s.startup_seconds:
            return f"the submission spent more than scorer.startup_seconds={self.s.startup_seconds:g} s outside unlearning() (loading or saving) and was stopped"
        return None


def stage(ctx: Context, submission: Path, inputs: Path, todo: list[int]) -> None:
    """The child's whole world: the file, the original weights, retain/forget/val, and the run plan."""
    shutil.copyfile(submission, inputs / "submission.py")
    net, spec, data_config = load_net(ctx.pool.original_path)
    save_net(net, spec, data_config, inputs / "original.pt")  # without the original's test metrics
    torch.save(staged_data(ctx.dm), inputs / "data.pt")
    s = ctx.settings
    plan = {"submission": "submission.py", "runs": [[i, s.seed(i)] for i in todo], "batch_size": s.batch_size, "threads": s.threads}
    (inputs / "spec.json").write_text(json.dumps(plan))


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


def run_child(ctx: Context, work: Work, box: Sandbox, submission: Path, todo: list[int], logs: dict[str, Path]) -> tuple[Outcome, dict[str, float]]:
    inputs, outputs, _ = (work.attempt / d for d in ("inputs", "outputs", "scratch"))
    t = time.perf_counter()
    stage(ctx, submission, inputs, todo)
    staged = time.perf_counter() - t
    argv = [sys.executable, "-m", "challenge.ingestion", box.inside(inputs), box.inside(outputs)]
    spawned = time.time()
    outcome = box.run(argv, logs["stdout"], logs["stderr"], RunClock(outputs, todo, ctx.settings))
    return outcome, {"stage_inputs": staged, **_startup_times(outputs / "ready.json", spawned)}


def _startup_times(ready: Path, spawned: float) -> dict[str, float]:
    """Where the child's start-up went (for the overhead figures); empty if it never got ready."""
    try:
        stamps = json.loads(ready.read_text())
        return {
            "interpreter_start": stamps["started"] - spawned,
            "load_submission": stamps["submission_loaded"] - stamps["started"],
            "load_inputs": stamps["inputs_loaded"] - stamps["submission_loaded"],
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def judge(ctx: Context, work: Work, outcome: Outcome, todo: list[int], logs: dict[str, Path]) -> None:
    """The verdict on a child that ended before finishing, or silence if it finished cleanly."""
    s = ctx.settings
    if outcome.stopped:
        raise Verdict("timeout", outcome.stopped)
    if outcome.flooded:
        raise Verdict("flooded", f"the submission wrote more than {s.log_cap_bytes} bytes to {outcome.flooded} and was stopped (scorer.log_cap_bytes; the start is in {logs[outcome.flooded]})")
    failure = read_failure(work.attempt / "outputs" / "failure.json")
    if failure:
        status, message = failure
        raise Verdict(status, f"{message} (traceback in {logs['stderr']})" if status == "raised" else message)
    if outcome.oom_killed:
        raise Verdict("memory", f"the submission went over scorer.memory_mb={s.memory_mb} MB and was killed")
    if outcome.signal == signal.SIGXFSZ:
        raise Verdict("file_too_large", f"the submission wrote a file over scorer.file_size_mb={s.file_size_mb} MB and was killed")
    if outcome.leftovers:
        raise Verdict("left_processes", f"the submission left {len(outcome.leftovers)} process(es) running after it exited ({', '.join(outcome.leftovers[:3])}); they were killed")
    missing = [i for i in todo if not work.has_run(i)]
    if outcome.returncode != 0 or missing:
        how = f"was killed by {signal.Signals(outcome.signal).name}" if outcome.signal else f"exited with status {outcome.returncode}"
        where = f" during run {missing[0]}" if missing else ""
        raise Verdict("crashed", f"the submission's process {how}{where} without reporting an error (see {logs['stderr']})")


def read_failure(path: Path) -> tuple[str, str] | None:
    """The child's own report, trusted only for a known status and a short message."""
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text()[:100_000]) if _regular(path) else {}
        status, message = raw.get("status"), raw.get("message")
    except (OSError, ValueError, AttributeError):
        status = message = None
    if status not in CHILD_STATUSES or not isinstance(message, str) or not message:
        return "crashed", "the submission's process wrote a malformed failure report"
    return status, message.splitlines()[0][:500]


# -- evaluating the runs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RunEval:
    """The scorer's own measurements of one returned model."""

    index: int
    seed: int
    retain_acc: float
    forget_acc: float
    test_acc: float
    forget_conf: np.ndarray
    forget_loss: np.ndarray
    test_loss: np.ndarray


def evaluate_run(ctx: Context, work: Work, index: int) -> RunEval:
    """Strict load into the architecture, finite outputs, then forget/retain/test; cached per run."""
    cache = work.evals / f"{run_name(index)}.npz"
    if cache.is_file():
        return _read_eval(cache)
    net = load_weights(ctx.spec, work.runs / f"{run_name(index)}.pt", index)
    out: dict[str, Any] = {}
    for part in ("forget", "retain", "test"):
        logits, targets = predict_logits(net, ctx.dm.loader(part))
        if not torch.isfinite(logits).all():
            raise Verdict("non_finite", f"run {index} returned a model whose outputs on {part} images contain NaN or infinity")
        out[f"{part}_acc"] = accuracy(logits, targets)
        if part == "forget":
            out["forget_conf"] = logit_scaled_confidence(logits.numpy(), targets.numpy())
        if part in ("forget", "test"):
            out[f"{part}_loss"] = cross_entropy_losses(logits.numpy(), targets.numpy())
    result = RunEval(index=index, seed=ctx.settings.seed(index), **out)
    _write_eval(cache, result)
    return result


def load_weights(spec: NetSpec, path: Path, index: int) -> torch.nn.Module:
    """weights_only: a hostile file can describe tensors, never run code in the scorer."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever is in the file, it is not a state dict
        raise Verdict("not_a_model", f"run {index}'s weights cannot be read as a state dict ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise Verdict("not_a_model", f"run {index}'s weights are not a state dict of tensors")
    net = spec.create()
    mismatch = _mismatch(net.state_dict(), state)
    if mismatch:
        raise Verdict("wrong_architecture", f"run {index} returned a model that does not fit {spec.name}: {mismatch}; return `net` (changed) or a model of the same architecture")
    net.load_state_dict(state, strict=True)
    return net


def _mismatch(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str:
    """What differs, counted and with one example each, so that the verdict stays one line."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    reshaped = [k for k in expected if k in got and got[k].shape != expected[k].shape]
    parts = [f"{len(missing)} missing tensors (e.g. {missing[0]})"] if missing else []
    parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
    if reshaped:
        k = reshaped[0]
        parts.append(f"{len(reshaped)} of another shape (e.g. {k}: {list(got[k].shape)} instead of {list(expected[k].shape)})")
    return ", ".join(parts)


def _write_eval(path: Path, e: RunEval) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in asdict(e).items()})
    tmp.replace(path)


def _read_eval(path: Path) -> RunEval:
    with np.load(path) as z:
        raw = {k: z[k] for k in z.files}
    scalars = {k: int(raw[k]) if k in ("index", "seed") else float(raw[k]) for k in ("index", "seed", "retain_acc", "forget_acc", "test_acc")}
    return RunEval(**scalars, forget_conf=raw["forget_conf"], forget_loss=raw["forget_loss"], test_loss=raw["test_loss"])


# -- scoring ---------------------------------------------------------------------------------------
def collect_runs(ctx: Context, work: Work, box: Sandbox, submission: Path, logs: dict[str, Path], timing: dict[str, Any]) -> None:
    """Every run done and accepted (reusing finished ones), or a Verdict; times go into `timing`."""
    s = ctx.settings
    work.salvage()
    todo = [i for i in range(s.n_runs) if not work.has_run(i)]
    timing["reused_runs"] = s.n_runs - len(todo)
    if todo:
        work.new_attempt()
        outcome, timing["child"] = run_child(ctx, work, box, submission, todo, logs)
        timing["child_seconds"] = outcome.seconds
        work.salvage()
        try:
            judge(ctx, work, outcome, todo, logs)
        finally:
            shutil.rmtree(work.attempt, ignore_errors=True)  # a copy of the data: no use once judged
    records = [_read_record(work.runs / f"{run_name(i)}.json", i) for i in range(s.n_runs)]
    unreadable = next((i for i, r in enumerate(records) if r is None), None)
    if unreadable is not None:
        raise Verdict("crashed", f"run {unreadable}'s record is unreadable")
    for key in RUN_TIMES:
        timing[f"run_{key}"] = [r[key] for r in records]
    for i, record in enumerate(records):
        if not s.budget_exempt and record["seconds"] > s.budget_seconds:
            raise Verdict("timeout", f"run {i} took {record['seconds']:.1f} s, over its budget of {s.budget_seconds:.1f} s ({s.budget_rule})")


def score_runs(ctx: Context, evals: list[RunEval]) -> tuple[dict[str, Any], np.ndarray]:
    """The metric on the scorer's own measurements, plus the membership-inference audit."""
    u = np.stack([e.forget_conf for e in evals])
    r = np.stack([e.confidences for e in ctx.entries])
    try:
        res = evaluate_forgetting(
            u, r,
            retain_acc_unlearned=[e.retain_acc for e in evals], retain_acc_retrained=[e.retain_acc for e in ctx.entries],
            test_acc_unlearned=[e.test_acc for e in evals], test_acc_retrained=[e.test_acc for e in ctx.entries],
            n_bootstrap=ctx.settings.n_bootstrap, seed=ctx.settings.first_seed,
        )
    except ValueError as e:  # e.g. retrained models with zero accuracy: the pool cannot normalise a score
        raise ChallengeError(f"cannot score against the pool at {ctx.pool.root}: {e}") from None
    score = res.to_dict()
    score.pop("epsilons")
    try:
        mia = [membership_inference_audit(e.forget_loss, e.test_loss) for e in evals]
        score["mia"], score["mia_per_run"], score["mia_note"] = float(np.mean(mia)), mia, ""
    except ValueError as e:  # too few forget images for a cross-validated attack
        score["mia"], score["mia_per_run"], score["mia_note"] = None, [], str(e)
    return score, res.epsilons


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


def score_submission(cfg: DictConfig, submission: Path, out_dir: Path) -> dict[str, Any]:
    """Score one file; the result is also written to out_dir/result.json.

    Never raises for the participant's faults (they become `status`); raises ChallengeError for
    the user's (no pool, bad settings). Called by `challenge score`, the competition worker and
    `make baseline`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = prepare(cfg)
    ctx.settings = replace(ctx.settings, budget_exempt=budget_exempt(submission))
    base = {"submission": {"path": str(submission), "sha256": None}, "pool": {"fingerprint": ctx.pool.fingerprint, "root": str(ctx.pool.root), "models": ctx.settings.n_runs},
            "settings": asdict(ctx.settings)}
    if not submission.is_file():
        return _finish(out_dir, None, {"status": "not_found", "message": f"no submission file at {submission}: give the path of a .py file defining unlearning(...)", **base})
    sha = hashlib.sha256(submission.read_bytes()).hexdigest()
    base["submission"]["sha256"] = sha
    work = Work.for_submission(ctx, sha, Path(cfg.paths.cache_dir))
    work.root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(work.root / "lock")):
        if cfg.scorer.fresh:
            for d in ("runs", "evals", "attempt", "results"):
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
    timing: dict[str, Any] = {"budget_seconds": ctx.settings.budget_seconds}
    try:
        collect_runs(ctx, work, box, submission, logs, timing)
        t = time.perf_counter()
        evals = [evaluate_run(ctx, work, i) for i in range(ctx.settings.n_runs)]
        timing["evaluation_seconds"] = time.perf_counter() - t
    except Verdict as v:
        timing["total_seconds"] = time.perf_counter() - start
        return {"status": v.status, "message": v.message, **base, "score": None, "runs": [], "examples": None, "timing": timing}
    score, eps = score_runs(ctx, evals)
    timing["total_seconds"] = time.perf_counter() - start
    mia = score["mia_per_run"] or [None] * len(evals)
    runs = [{"index": e.index, "seed": e.seed, "retain_acc": e.retain_acc, "forget_acc": e.forget_acc, "test_acc": e.test_acc, "mia": m} for e, m in zip(evals, mia)]
    message = f"final score {score['final_score']:.4f}, forget quality F {score['forget_quality']:.4f}"
    return {"status": "scored", "message": message, **base, "score": score, "runs": runs, "examples": examples(ctx, evals, eps),
            "confidence_samples": confidence_samples(ctx, evals, eps), "timing": timing}


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
    seconds = t["run_seconds"]
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
        f"{'seconds per run':<22}{np.mean(seconds):>9.2f}   max {max(seconds):.2f}" + (" (exempt from the budget: BUDGET_EXEMPT in a kit baseline)" if s.get("budget_exempt") else f" of a {t['budget_seconds']:.2f} s budget ({s['budget_rule']})"),
        f"{'membership inference':<22}{mia_text}",
    ]
    if t.get("reused_runs"):
        lines.append(f"(reused {t['reused_runs']} finished runs from an earlier scoring)")
    return "\n".join(lines)


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
