"""`challenge worker`: take the oldest free submission, score it on every phase, store the outcome.

One worker is one process; run as many as the machine allows, or, with a PostgreSQL store, as many
as a cluster allows (one SLURM job each, through Hydra's submitit launcher). The store hands each
submission to one worker at a time; the worker's heartbeat keeps its lease; the verdict and all
phase results are written in one transaction, and only while the lease is still this worker's. So
a worker killed at any point leaves its submission running-with-an-expiring-lease, which another
worker then claims, and the scorer's run cache lets it resume the runs the dead one finished.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from omegaconf import DictConfig, OmegaConf
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from challenge.competition.phases import Phase, part_configs, phases
from challenge.competition.store import Heartbeat, Store, StoreLost, Submission, worker_id
from challenge.errors import ChallengeError
from challenge.files import write_atomic

if TYPE_CHECKING:
    from challenge.scoring.result import Result


@dataclass(frozen=True)
class WorkerSettings:
    lease_seconds: float
    poll_seconds: float
    max_attempts: int

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "WorkerSettings":
        w = cfg.competition.worker
        return cls(float(w.lease_seconds), float(w.poll_seconds), int(w.max_attempts))


def competition_root(cfg: DictConfig) -> Path:
    return Path(cfg.competition.root)


def store_location(cfg: DictConfig) -> str:
    """`competition.store`: a SQLite file's path or a postgresql:// URL; a competition config written
    before the key existed keeps its database where it was, competition.db in the root."""
    return str(OmegaConf.select(cfg, "competition.store", default=None) or competition_root(cfg) / "competition.db")


def claim_gpu(cfg: DictConfig) -> str:
    """Give this worker its own GPU when `competition.worker.gpu` names one (several workers on one
    machine); under SLURM the job's allocation has set CUDA_VISIBLE_DEVICES already. Before torch
    starts CUDA, so the scorer and its sandboxed runs see only that device."""
    gpu = OmegaConf.select(cfg, "competition.worker.gpu", default=None)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


def run(cfg: DictConfig, follow: bool, say: Callable[[str], None] = print) -> Counter:
    """Score until the queue is empty (or forever with `follow`); returns the outcomes' counts."""
    settings, all_phases = WorkerSettings.from_config(cfg), phases(cfg)
    gpus = claim_gpu(cfg)
    store, me = Store(store_location(cfg)), worker_id()
    outcomes: Counter = Counter()
    say(
        f"worker {me} (index {OmegaConf.select(cfg, 'competition.worker.index', default=0)}, "
        f"CUDA_VISIBLE_DEVICES={gpus or 'unset'}) on {store.where}"
    )
    while True:
        try:
            sub = store.claim(me, settings.lease_seconds, settings.max_attempts)
            if sub is None:
                if not follow:
                    break
                time.sleep(settings.poll_seconds)
                continue
            outcome = process(cfg, store, sub, me, all_phases, settings)
            outcomes[outcome] += 1
            say(describe(store.get(sub.id), outcome))
        except StoreLost as e:
            say(f"worker {me}: {e}")
            store = reconnect(store, settings.lease_seconds, say)
    done = ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) or "nothing to do"
    say(f"worker {me}: queue empty; {done}")
    store.close()
    return outcomes


def reconnect(lost: Store, patience: float, say: Callable[[str], None]) -> Store:
    """A new connection to a store that stopped answering, tried for up to a lease (by then the claims of
    the worker are free again anyway). A submission it was scoring is claimed again once its lease ends,
    and the scorer's cache gives its result back at once."""
    with contextlib.suppress(Exception):
        lost.close()
    try:
        store = Retrying(
            retry=retry_if_exception_type(ChallengeError),
            wait=_backoff_within(patience),
            stop=stop_after_delay(patience),
            reraise=True,
        )(Store, lost.location)
    except ChallengeError as e:
        gave_up = f"gave up after reconnecting for {patience:g} s, competition.worker.lease_seconds"
        raise ChallengeError(f"{e} ({gave_up})") from None
    say(f"reconnected to {store.where}")
    return store


def _backoff_within(patience: float) -> Callable[[RetryCallState], float]:
    """1, 2, 4, 8, then every 10 s, but never past `patience`: the last try is made at the deadline, not after it."""
    backoff = wait_exponential(multiplier=1, max=10)
    return lambda state: max(0.0, min(backoff(state), patience - state.seconds_since_start))


def process(
    cfg: DictConfig, store: Store, sub: Submission, me: str, all_phases: list[Phase], settings: WorkerSettings
) -> str:
    """'scored', 'failed', or 'lost' when another worker took the submission over meanwhile."""
    folder = competition_root(cfg) / "submissions" / str(sub.id)
    path = write_submission(folder, sub.filename, store.content(sub.id))
    with Heartbeat(store.location, sub.id, me, settings.lease_seconds) as beat:
        try:
            results = score_phases(cfg, path, folder, all_phases)
        except BaseException:
            store.release(sub.id, me)  # the scorer's fault or the organizer's (no pool), not the file's
            raise
    status, verdict, message = judge(results)
    if beat.lost or not store.finish(sub.id, me, status, verdict, message, results):
        return "lost"
    return status


def write_submission(folder: Path, filename: str, content: bytes) -> Path:
    """The stored bytes back on disk under a safe name (the scorer reads a file)."""
    name = re.sub(r"[^\w.-]", "_", Path(filename).name) or "submission.py"
    write_atomic(folder / name, content)
    return folder / name


def score_phases(cfg: DictConfig, path: Path, folder: Path, all_phases: list[Phase]) -> dict[str, Result]:
    """Every phase in order (each split of a phase over several), stopping at the first verdict: a file that
    fails one fails the competition."""
    from challenge.scoring.scorer import score_submission

    results: dict[str, Result] = {}
    for phase in all_phases:
        for part, pcfg in part_configs(cfg, phase):
            result = score_submission(pcfg, path, folder / part)
            results[part] = result
            if not result.scored:
                return results
    return results


def judge(results: dict[str, Result]) -> tuple[str, str, str]:
    """(status, verdict, one line) for the whole submission from its phase results."""
    for phase, result in results.items():
        if not result.scored:
            return "failed", result.status, f"{phase} phase: {result.message}"
    return "scored", "scored", "scored on " + ", ".join(results)


def describe(sub: Submission, outcome: str) -> str:
    if outcome == "lost":
        return f"#{sub.id} {sub.team}: lease lost to another worker; its result was not stored"
    return f"#{sub.id} {sub.team} {sub.filename}: {sub.status} ({sub.verdict}) {sub.message}"
