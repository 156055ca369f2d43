"""What the scorer and the sandboxed child say to each other: file names, run names, statuses, environment.

Both sides import this module and nothing else of each other, so that a name changed here changes on
both sides. It imports nothing heavy: the child reads it before torch, the Codabench programs too.

The child's inputs folder holds SPEC, SUBMISSION, ORIGINAL and DATA (read-only); it answers only
through files in its outputs folder, which the scorer treats as hostile:

  CALIBRATION        the price of a retrain, taken away by the scorer before the file is imported
  READY              the inputs are loaded, with wall-clock stamps (for the overhead figures)
  run-XXXX.start     run XXXX begins: written by the child's warm parent before it forks the run
  run-XXXX.pt/.json  the run's state dict (written by the run's own process) and its record
  run-XXXX.end       the run's process has ended: written by the warm parent once it has reaped it
  FAILURE            {status, message, traceback} when the submission broke the contract
"""

from __future__ import annotations

import re
from enum import StrEnum

SPEC = "spec.json"
SUBMISSION = "submission.py"
ORIGINAL = "original.pt"  # original 0; with pool.originals = S > 1 also original-1.pt ... (original_name)
DATA = "data.pt"
INPUTS = (SUBMISSION, ORIGINAL, DATA, SPEC)

CALIBRATION = "calibration.json"
READY = "ready.json"
FAILURE = "failure.json"

START, END, WEIGHTS, RECORD = ".start", ".end", ".pt", ".json"
RUN_TIMES = ("seconds", "import_seconds", "unlearning_seconds", "save_seconds")  # a run's record, for overhead figures

PIDNS_ENV = "CHALLENGE_SANDBOX_PIDNS"  # "1": the child owns its pid namespace (and its /tmp and /dev/shm)

_RUN = re.compile(r"run-(\d{4,})")


def original_name(s: int) -> str:
    """The file of original model s: run i of every submission starts from original i mod S (pool.originals)."""
    return ORIGINAL if s == 0 else f"original-{s}.pt"


def run_name(index: int) -> str:
    """`run-0007`: the stem of every file of run 7."""
    return f"run-{index:04d}"


def run_index(stem: str) -> int | None:
    """The inverse of run_name, None for any other name (the child may leave anything in its outputs)."""
    m = _RUN.fullmatch(stem)
    return int(m.group(1)) if m else None


class Status(StrEnum):
    """Every verdict a submission can get: `status` in result.json. The child may report only CHILD_STATUSES."""

    SCORED = "scored"
    NOT_FOUND = "not_found"
    SYNTAX_ERROR = "syntax_error"
    NO_FUNCTION = "no_function"
    BAD_SIGNATURE = "bad_signature"
    RAISED = "raised"
    NOT_A_MODEL = "not_a_model"
    WRONG_ARCHITECTURE = "wrong_architecture"
    NON_FINITE = "non_finite"
    MEMORY = "memory"
    FILE_TOO_LARGE = "file_too_large"
    PROCESSES = "processes"
    DISK = "disk"
    CPU = "cpu"
    FLOODED = "flooded"
    CRASHED = "crashed"
    LEFT_PROCESSES = "left_processes"
    TIMEOUT = "timeout"


CHILD_STATUSES = frozenset(
    {
        Status.SYNTAX_ERROR,
        Status.NO_FUNCTION,
        Status.BAD_SIGNATURE,
        Status.RAISED,
        Status.NOT_A_MODEL,
        Status.MEMORY,
        Status.FILE_TOO_LARGE,
        Status.CRASHED,
        Status.LEFT_PROCESSES,
        Status.PROCESSES,
        Status.DISK,
    }
)
