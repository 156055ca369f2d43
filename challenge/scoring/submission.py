"""The participant's file as the child loads it: compiled, run as a module, its `unlearning` checked, and
every way it can fail turned into a Rejected with the line a participant looks for.

Used by the run processes only (challenge.scoring.run); it imports nothing heavy.
"""

from __future__ import annotations

import errno
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from challenge.scoring.protocol import Status

CONTRACT = "unlearning(net, retain_loader, forget_loader, val_loader)"


class Rejected(Exception):
    """The submission broke the contract; `status` is the verdict's name."""

    def __init__(self, status: Status, message: str, tb: str = ""):
        super().__init__(message)
        self.status, self.message, self.tb = status, message, tb


# -- loading the submission ------------------------------------------------------------------------
def compile_submission(path: Path) -> Any:
    """Compiled, not run: a syntax error costs no torch import, and nothing of the file runs yet."""
    try:
        return compile(path.read_bytes(), str(path), "exec")
    except (SyntaxError, ValueError) as e:
        line = f" at line {e.lineno}" if getattr(e, "lineno", None) else ""
        raise Rejected(Status.SYNTAX_ERROR, f"syntax error{line}: {getattr(e, 'msg', e)}") from None


def load_submission(
    path: Path, code: Any, params: dict[str, Any] | None = None, device: str = "cpu"
) -> Callable[..., Any]:
    """The module as `submission`, its `unlearning` checked against the contract before any run.

    `params` update the module's PARAMS dict in place once it has run (the scorer checked the names
    against the source), so `unlearning()` reads them when it is called. `device` is the net's, given
    to the file as DEVICE (Kaggle notebooks defined it at the top; a copied function may use it)."""
    spec = importlib.util.spec_from_file_location("submission", path)
    module = importlib.util.module_from_spec(spec)
    module.DEVICE = device
    sys.modules["submission"] = module
    try:
        exec(code, module.__dict__)
    except BaseException as e:  # noqa: BLE001 - any failure at import is the submission's
        raise rejection(e, "while loading the file", path) from None
    if params:
        declared = module.__dict__.get("PARAMS")
        if not isinstance(declared, dict):
            raise Rejected(
                Status.RAISED,
                f"PARAMS is a {type(declared).__name__} once the file has run, not the dict its source declares, so "
                "the given parameters cannot be set",
            )
        declared.update(params)
    fn = getattr(module, "unlearning", None)
    if fn is None:
        raise Rejected(Status.NO_FUNCTION, f"the file defines no `unlearning` function; the contract is {CONTRACT}")
    check_signature(fn)
    return fn


def check_signature(fn: Any) -> None:
    if not callable(fn):
        raise Rejected(
            Status.NO_FUNCTION, f"`unlearning` is a {type(fn).__name__}, not a function; the contract is {CONTRACT}"
        )
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # C callables carry no signature: calling it will tell
    try:
        sig.bind(*range(4))
    except TypeError as e:
        raise Rejected(Status.BAD_SIGNATURE, f"unlearning{sig} cannot be called as {CONTRACT} ({e})") from None


def rejection(e: BaseException, when: str, path: Path) -> Rejected:
    """Name what went wrong the way a participant would look for it: type, message, their line."""
    tb = "".join(traceback.format_exception(e))
    if isinstance(e, SystemExit):
        return Rejected(Status.CRASHED, f"the submission called exit({e.code!r}) {when}", tb)
    if _out_of_memory(e):
        return Rejected(
            Status.MEMORY,
            f"the submission ran out of memory {when} ({type(e).__name__}): stay within scorer.memory_mb",
            tb,
        )
    if isinstance(e, OSError) and e.errno == errno.EFBIG:  # Python ignores SIGXFSZ, so the limit surfaces here
        return Rejected(
            Status.FILE_TOO_LARGE,
            f"the submission wrote a file over the size limit {when}: stay within scorer.file_size_mb",
            tb,
        )
    if _out_of_processes(e, tb):
        return Rejected(
            Status.PROCESSES,
            f"the submission could not start another process or thread {when} ({type(e).__name__}): stay within "
            "scorer.max_processes",
            tb,
        )
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return Rejected(
            Status.DISK,
            f"the submission filled its scratch space {when} ({type(e).__name__}): stay within scorer.scratch_mb",
            tb,
        )
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
    where = f" at line {frames[-1].lineno} of the submission" if frames else ""
    text = str(e).splitlines()[0][:300] if str(e) else ""
    hint = BATCH_HINT if frames and _unpacked_a_batch(e) else ""
    return Rejected(
        Status.RAISED, f"the submission raised {type(e).__name__}{': ' + text if text else ''}{where} {when}{hint}", tb
    )


BATCH_HINT = (
    "; batches are dicts with `image` and `age_group` (also `age`, `person_id`, `image_id`), not (inputs, targets) "
    "tuples: write `x, y = batch['image'], batch['age_group']` (see submissions/README.md)"
)


def _unpacked_a_batch(e: BaseException) -> bool:
    """`for x, y in loader` over dict batches: too many keys to unpack, or the keys (str) used as tensors."""
    text = str(e)
    return (isinstance(e, ValueError) and "values to unpack" in text) or (
        isinstance(e, AttributeError) and text.startswith("'str' object")
    )


def _out_of_processes(e: BaseException, tb: str) -> bool:
    """A fork or a thread refused by the process cap (EAGAIN from fork, not from a non-blocking socket)."""
    forked = (
        isinstance(e, OSError) and e.errno == errno.EAGAIN and any(w in tb for w in ("fork", "_execute_child", "spawn"))
    )
    return forked or (isinstance(e, RuntimeError) and "can't start new thread" in str(e))


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e))
