"""The one judge: what the local scorer and the Codabench scoring program decide about a submission.

Both get the same things: how the sandboxed child ended and what the meter charged it (the
supervisor's `Ledger`, written by the process that watched the child, never by the child), the child's own
failure report (trusted only for a known status and a short message), and the returned state
dicts. Both then apply these functions, in this order: the child's end, the budget, a strict load
into the architecture, finite outputs, the evaluation, the metric. So one file gets one verdict
and one set of numbers whichever way it is scored.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np

from challenge.errors import ChallengeError, Verdict
from challenge.files import read_regular
from challenge.scoring.attacks import attacks, memorisation_groups, strata
from challenge.scoring.budget import per_run_seconds
from challenge.scoring.budget import verdict as budget_verdict
from challenge.scoring.collateral import collateral_f
from challenge.scoring.evaluation import RunEval
from challenge.scoring.metric import (
    ForgettingResult,
    evaluate_forgetting,
    membership_inference_audit,
)
from challenge.scoring.protocol import CHILD_STATUSES, RECORD, RUN_TIMES, WEIGHTS, Status, run_name
from challenge.scoring.sandbox.types import Outcome

if TYPE_CHECKING:
    from challenge.scoring.settings import Settings


# -- the child's end -------------------------------------------------------------------------------
def read_failure(path: Path) -> tuple[str, str] | None:
    """The child's own report, trusted only for a known status and a short message."""
    if not path.exists():
        return None
    try:
        raw = json.loads(read_regular(path, 100_000) or b"{}")  # a link, FIFO or giant: malformed, never read whole
        status, message = raw.get("status"), raw.get("message")
    except (OSError, ValueError, AttributeError):
        status = message = None
    if status not in CHILD_STATUSES or not isinstance(message, str) or not message:
        return "crashed", "the submission's process wrote a malformed failure report"
    return status, message.splitlines()[0][:500]


def judge_end(
    outcome: Outcome,
    imported: bool,
    failure: tuple[str, str] | None,
    missing: list[int],
    settings: Settings,
    logs: dict[str, str],
) -> None:
    """The verdict on a child that ended before finishing, or silence if it finished cleanly.

    A child that died before the submission was imported, without reporting a failure of the file,
    is no verdict at all: the organiser's limits do not fit the kit (ChallengeError, see kit_failure).
    """
    if not imported and failure is None:
        raise kit_failure(outcome, settings, Path(logs["stderr"]))
    if outcome.capped:
        raise Verdict(outcome.capped, cap_message(outcome.capped, outcome.capped_detail or "", settings))
    if outcome.stopped:
        raise Verdict("timeout", outcome.stopped)
    if outcome.flooded:
        raise Verdict(
            "flooded",
            f"the submission wrote more than {settings.log_cap_bytes} bytes to {outcome.flooded} and was stopped "
            f"(scorer.log_cap_bytes; the start is in {logs[outcome.flooded]})",
        )
    if failure:
        status, message = failure
        raise Verdict(status, f"{message} (traceback in {logs['stderr']})" if status == "raised" else message)
    if outcome.oom_killed:
        raise Verdict("memory", f"the submission went over scorer.memory_mb={settings.memory_mb} MB and was killed")
    if outcome.signal == signal.SIGXCPU:
        raise Verdict(
            "cpu", "the submission's process went over its CPU backstop (RLIMIT_CPU, above the budget) and was killed"
        )
    if outcome.signal == signal.SIGXFSZ:
        raise Verdict(
            "file_too_large",
            f"the submission wrote a file over scorer.file_size_mb={settings.file_size_mb} MB and was killed",
        )
    if outcome.leftovers:
        raise Verdict(
            "left_processes",
            f"the submission left {len(outcome.leftovers)} process(es) running after it exited "
            f"({', '.join(outcome.leftovers[:3])}); they were killed",
        )
    if outcome.returncode != 0 or missing:
        how = (
            f"was killed by {signal.Signals(outcome.signal).name}"
            if outcome.signal
            else f"exited with status {outcome.returncode}"
        )
        where = f" during run {missing[0]}" if missing else ""
        raise Verdict(
            "crashed", f"the submission's process {how}{where} without reporting an error (see {logs['stderr']})"
        )


def cap_message(resource: str, detail: str, settings: Settings) -> str:
    """One line for a cap the sandbox stopped the child at, naming the setting."""
    if resource == "processes":
        return (
            f"the submission {detail} and was stopped (scorer.max_processes={settings.max_processes}); every one "
            "of them was killed"
        )
    return (
        f"the submission {detail} and was stopped (scorer.scratch_mb={settings.scratch_mb}: each of /tmp, /dev/shm "
        "and the "
        "working folder, and what the outputs may hold besides the runs' weights); its files were removed"
    )


def kit_failure(outcome: Outcome, settings: Settings, stderr: Path) -> ChallengeError:
    """The child died before any participant code ran: the organiser's limits do not fit the kit itself."""
    try:
        last = (stderr.read_text(errors="replace").strip().splitlines() or ["no output"])[-1][:200]
    except OSError:
        last = "no output"
    how = outcome.stopped or (
        f"killed by signal {outcome.signal}" if outcome.signal else f"exit status {outcome.returncode}"
    )
    if settings.memory_mb and (outcome.oom_killed or any(w in last.lower() for w in _MEMORY_WORDS)):
        limit = (
            f"scorer.memory_mb={settings.memory_mb} is too small for the kit itself (torch and the inputs need "
            "about 1 GB): raise it"
        )
    elif settings.file_size_mb and outcome.signal == signal.SIGXFSZ:
        limit = f"scorer.file_size_mb={settings.file_size_mb} is too small for the kit's own files: raise it"
    elif outcome.capped == "processes":
        limit = f"scorer.max_processes={settings.max_processes} is too small for the kit itself: raise it"
    elif outcome.capped == "disk":
        limit = f"scorer.scratch_mb={settings.scratch_mb} is too small for the kit's own files: raise it"
    elif outcome.stopped:
        limit = (
            f"scorer.startup_seconds={settings.startup_seconds:g} is too short for the kit to load its inputs: raise it"
        )
    else:
        limit = "the kit's own start-up failed: see the stderr log"
    return ChallengeError(
        f"the scoring child failed before running any participant code ({how}; its stderr ends {last!r}): {limit}"
    )


_MEMORY_WORDS = ("memory", "cannot map", "cannot allocate", "mmap", "failed to map")


def judge_budget(charges: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """Each run's charge with its budget under these settings; a timeout Verdict if they do not fit."""
    runs = [{**c, "budget": run_budget(c, settings)} for c in charges]
    message = budget_verdict(runs, settings.n_runs, settings.budget_exempt)
    if message:
        raise Verdict("timeout", message)
    return runs


def run_budget(record: dict[str, Any], settings: Settings) -> float | None:
    """A run's budget under these settings: the fixed one, or the fraction of its own attempt's price."""
    return per_run_seconds(settings, record.get("retrain_seconds"))


def read_record(path: Path, index: int, keys: tuple[str, ...]) -> dict[str, float] | None:
    """A run's times as the child reported them (for the overhead figures only), or None if malformed."""
    try:
        raw = json.loads(read_regular(path, 10_000) or b"")  # none (a link, FIFO or giant): ValueError
        record = {k: float(raw[k]) for k in keys}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = raw.get("index") == index and all(math.isfinite(v) and v >= 0 for v in record.values())
    return record if ok else None


def score(evals: list[RunEval], pool: PoolSide, settings: Settings) -> tuple[dict[str, Any], ForgettingResult]:
    """The metric on the judge's own measurements, the attacks and strata beside it (challenge.scoring.attacks),
    and the membership-inference audit; the metric's result comes back too, for its per-example epsilons and
    its interval's replicates.

    Raises ValueError when the pool cannot normalise a score (e.g. retrained test accuracy 0).
    """
    unlearned = np.stack([e.forget_conf for e in evals])
    res = evaluate_forgetting(
        unlearned,
        pool.confidences,
        retain_acc_unlearned=[e.retain_acc for e in evals],
        retain_acc_retrained=pool.retain_acc,
        test_acc_unlearned=[e.test_acc for e in evals],
        test_acc_retrained=pool.test_acc,
        n_bootstrap=settings.n_bootstrap,
        seed=settings.first_seed,
        groups=memorisation_groups(pool.original, pool.confidences),  # the strata's intervals: F's own pass
    )
    out = {k: v for k, v in res.to_dict().items() if k != "epsilons"}
    out["attacks"] = attacks(unlearned, pool.confidences, settings.attacks, res)
    out["strata"] = strata(unlearned, pool.confidences, pool.original, res)
    runs = {
        p: np.stack([e.collateral[p] for e in evals]) for p in pool.collateral if all(p in e.collateral for e in evals)
    }
    out["collateral"] = collateral_f(runs, pool.collateral, res)
    try:
        mia = [membership_inference_audit(e.forget_loss, e.test_loss) for e in evals]
        out["mia"], out["mia_per_run"], out["mia_note"] = float(np.mean(mia)), mia, ""
    except ValueError as e:  # too few forget images for a cross-validated attack
        out["mia"], out["mia_per_run"], out["mia_note"] = None, [], str(e)
    return out, res


# -- the whole submission ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    """What one child left to judge: how it ended and what it was charged (the supervisor's Ledger), its own
    failure report, the runs it was to do, and its logs."""

    outcome: Outcome
    imported: bool
    failure: tuple[str, str] | None
    todo: list[int]
    logs: dict[str, str]


@dataclass(frozen=True)
class Judgement:
    records: list[dict[str, float]]  # each run's own account of its phases (challenge.scoring.protocol.RUN_TIMES)
    charges: list[dict[str, Any]]  # each run's charge, with its budget under these settings
    evals: list[RunEval]
    score: dict[str, Any]
    metric: ForgettingResult
    evaluation_seconds: float


class PoolSide(NamedTuple):
    """The retrained models as the metric takes them, and where they are (for a message); the original's forget
    confidences, when known, split the examples into memorisation strata."""

    confidences: np.ndarray  # [N, K] on the forget images
    retain_acc: Any
    test_acc: Any
    where: str
    original: np.ndarray | None = None  # [K]
    collateral: dict[str, np.ndarray] = {}  # noqa: RUF012 - [N, k] on the collateral samples (never mutated)


def judge_submission(
    attempt: Attempt | None,
    runs: Path,
    charges: list[dict[str, Any] | None],
    settings: Settings,
    pool: PoolSide,
    evaluate: Callable[[int, Path], RunEval],
) -> Judgement:
    """The one order in which a submission is judged, by `challenge score` (and so the competition worker) and by the
    Codabench scoring program alike: the child's end, every run's record and charge, the budget, each run's strict
    load and evaluation (`evaluate(index, weights)`: judge_run, or a cached or earlier evaluation of the same bytes),
    the metric against the retrained models.

    `runs` holds run-XXXX.pt/.json of every run (the attempt's and any reused); `attempt` is None when every run
    was reused. Raises a Verdict for the participant's fault, ChallengeError when the pool cannot normalise a
    score (retrained models with zero test accuracy, say): that is the organiser's to fix.
    """

    def done(i: int) -> bool:
        kept = (runs / f"{run_name(i)}{WEIGHTS}").is_file() and (runs / f"{run_name(i)}{RECORD}").is_file()
        return kept and charges[i] is not None

    if attempt is not None:
        judge_end(
            attempt.outcome,
            attempt.imported,
            attempt.failure,
            [i for i in attempt.todo if not done(i)],
            settings,
            attempt.logs,
        )
    records = [read_record(runs / f"{run_name(i)}{RECORD}", i, RUN_TIMES) for i in range(settings.n_runs)]
    broken = next((i for i in range(settings.n_runs) if records[i] is None or not done(i)), None)
    if broken is not None:
        raise Verdict(Status.CRASHED, f"run {broken}'s record is unreadable")
    charged = judge_budget(charges, settings)
    start = time.perf_counter()
    evals = [evaluate(i, runs / f"{run_name(i)}{WEIGHTS}") for i in range(settings.n_runs)]
    seconds = time.perf_counter() - start
    try:
        result, metric = score(evals, pool, settings)
    except ValueError as e:
        raise ChallengeError(f"cannot score against {pool.where}: {e}") from None
    return Judgement(records, charged, evals, result, metric, seconds)
