"""One submission's folder under the cache: accepted runs, their charges and evaluations, results.

The scorer's side of resuming: a killed scorer finds here what is done, a rescoring with other
settings reuses what it can, and nothing in it is ever written by the child.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from challenge.files import content_hash, write_json, write_with
from challenge.scoring.evaluation import RunEval
from challenge.scoring.judge import read_record, run_budget
from challenge.scoring.protocol import RECORD, RUN_TIMES, WEIGHTS, run_index, run_name
from challenge.scoring.result import SCHEMA_VERSION
from challenge.scoring.settings import Settings


@dataclass(frozen=True)
class Work:
    """One submission's runs against one pool, kept across scorer runs.

    runs/ holds what the scorer accepted from the child, ledger/ what the meter charged each run
    (written by the scorer, out of the child's reach), evals/ the judge's evaluation of each run,
    attempt/ the child's world for the current attempt (rebuilt each time) and, in attempt/taken, the
    runs the supervisor took out of it as they ended, results/ finished
    results per settings. Runs depend only on the submission, the pool, the seeds, the batch sizes,
    the thread count and the device (a CPU key is the one from before there was a choice), so a later scoring with more
    runs or another budget reuses them.
    """

    root: Path

    @classmethod
    def for_submission(cls, ctx: Any, sha: str, cache_dir: Path, params: dict[str, Any] | None = None) -> "Work":
        """`params`: the PARAMS values that differ from the file's own; none keeps the file's old key."""
        s = ctx.settings
        inputs = {
            "pool": ctx.pool.fingerprint,
            "first_seed": s.first_seed,
            "batch_size": s.batch_size,
            "eval_batch_size": s.eval_batch_size,
            "threads": s.threads,
            **({"device": s.device} if s.device != "cpu" else {}),
            **({"originals": s.originals} if s.originals != 1 else {}),  # runs start from other models
        }
        key = content_hash({**inputs, "params": params} if params else inputs, 12)
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
        """Keyed by the schema too: a result cached in another shape is judged again from the kept runs."""
        key = settings.to_dict() | {"schema_version": SCHEMA_VERSION}
        return self.root / "results" / f"{content_hash(key, 12)}.json"

    def ledger_path(self, index: int) -> Path:
        return self.root / "ledger" / f"{run_name(index)}.json"

    def write_ledger(self, index: int, record: dict[str, Any]) -> None:
        write_json(self.ledger_path(index), record)

    def ledger(self, index: int) -> dict[str, Any] | None:
        try:
            return json.loads(self.ledger_path(index).read_text())
        except (OSError, ValueError):
            return None

    def has_run(self, index: int) -> bool:
        return all((self.runs / f"{run_name(index)}{ext}").is_file() for ext in (WEIGHTS, RECORD))

    def usable(self, index: int, settings: Settings) -> bool:
        """Done, charged, and priced in a way these settings can judge (a fixed budget, or a calibration)."""
        record = self.ledger(index)
        return self.has_run(index) and record is not None and run_budget(record, settings) is not None

    @property
    def taken(self) -> Path:
        """Where the supervisor moves each run's files as it ends, out of the child's reach."""
        return self.attempt / "taken"

    def new_attempt(self) -> None:
        """Fresh inputs/outputs/scratch, after keeping what the last child finished."""
        self.salvage()
        shutil.rmtree(self.attempt, ignore_errors=True)
        for d in ("inputs", "outputs", "scratch", "taken"):
            (self.attempt / d).mkdir(parents=True)

    def salvage(self) -> None:
        """Keep the complete runs the supervisor took; a symlink or a malformed record is not a run."""
        if not self.taken.is_dir():
            return
        self.runs.mkdir(parents=True, exist_ok=True)
        for record in sorted(self.taken.glob(f"run-*{RECORD}")):
            weights, index = record.with_suffix(WEIGHTS), run_index(record.stem)
            if (
                index is None
                or not _regular(record)
                or not _regular(weights)
                or read_record(record, index, RUN_TIMES) is None
            ):
                continue
            shutil.move(weights, self.runs / weights.name)
            shutil.move(record, self.runs / record.name)


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def write_eval(path: Path, e: RunEval) -> None:
    """Arrays only (the collateral samples' confidences one array per part), read back without pickle."""
    fields = {k: np.asarray(v) for k, v in asdict(e).items() if k != "collateral"}
    kept = {f"collateral_{part}": conf for part, conf in e.collateral.items()}
    write_with(path, lambda tmp: np.savez(tmp, **fields, **kept))


def read_eval(path: Path) -> RunEval:
    with np.load(path) as z:
        raw = {k: z[k] for k in z.files}
    scalars = {
        k: int(raw[k]) if k in ("index", "seed") else float(raw[k])
        for k in ("index", "seed", "retain_acc", "forget_acc", "test_acc")
    }
    arrays = {k: raw[k] for k in ("forget_conf", "forget_loss", "test_loss", "test_correct")}
    kept = {k.removeprefix("collateral_"): v for k, v in raw.items() if k.startswith("collateral_")}
    return RunEval(**scalars, **arrays, collateral=kept, focus_correct=raw["focus_correct"])
