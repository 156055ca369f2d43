"""The child side of scoring (Codabench's "ingestion program"): run a participant's `unlearning` N times.

`python -m challenge.scoring.child <inputs_dir> <outputs_dir>`, started by challenge.scoring.scorer inside the
sandbox. It sees only its inputs (spec.json, the participant file, the original net file and the
retain/forget/val tensors) and answers only through files, which the scorer validates:

  calibration.json        the price of a retrain here (challenge.scoring.budget), timed before the import;
                          the child waits until the scorer has taken it away, then imports the file
  ready.json              the inputs and the submission are loaded (with wall-clock stamps)
  run-XXXX.start, .end    run XXXX began / unlearning() returned, with the child's clocks: the scorer charges the run between them
  run-XXXX.pt, .json      the run's state dict (tensors only) and its times, each written atomically
  failure.json            {status, message, traceback} when the submission broke the contract

The file is compiled before torch is imported, so a syntax error is turned away in a fraction of a
second; it is executed only after the calibration, so that nothing it starts at import (a busy
thread, say) can inflate the price of a retrain. This module only runs and reports; the scorer judges.
"""

from __future__ import annotations

import errno
import importlib.util
import inspect
import json
import os
import random
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from challenge.files import write_json, write_with
from challenge.scoring.budget import CALIBRATION_FILE, calibrate
from challenge.scoring.processes import processes
from challenge.scoring.sandbox import PIDNS_ENV

CONTRACT = "unlearning(net, retain_loader, forget_loader, val_loader)"
# Statuses the child may report; anything else in failure.json is itself a malformed answer.
CHILD_STATUSES = frozenset({"syntax_error", "no_function", "bad_signature", "raised", "not_a_model", "memory", "file_too_large", "crashed", "left_processes",
                            "processes", "disk"})


class Rejected(Exception):
    """The submission broke the contract; `status` is the verdict's name."""

    def __init__(self, status: str, message: str, tb: str = ""):
        super().__init__(message)
        self.status, self.message, self.tb = status, message, tb


# -- files ---------------------------------------------------------------------------------------
def run_name(index: int) -> str:
    return f"run-{index:04d}"


# -- loading the submission ------------------------------------------------------------------------
def compile_submission(path: Path) -> Any:
    """Compiled, not run: a syntax error costs no torch import, and nothing of the file runs yet."""
    try:
        return compile(path.read_bytes(), str(path), "exec")
    except (SyntaxError, ValueError) as e:
        line = f" at line {e.lineno}" if getattr(e, "lineno", None) else ""
        raise Rejected("syntax_error", f"syntax error{line}: {getattr(e, 'msg', e)}") from None


def load_submission(path: Path, code: Any, params: dict[str, Any] | None = None, device: str = "cpu") -> Callable[..., Any]:
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
        raise _rejection(e, "while loading the file", path) from None
    if params:
        declared = module.__dict__.get("PARAMS")
        if not isinstance(declared, dict):
            raise Rejected("raised", f"PARAMS is a {type(declared).__name__} once the file has run, not the dict its source declares, so the given parameters cannot be set")
        declared.update(params)
    fn = getattr(module, "unlearning", None)
    if fn is None:
        raise Rejected("no_function", f"the file defines no `unlearning` function; the contract is {CONTRACT}")
    check_signature(fn)
    return fn


def check_signature(fn: Any) -> None:
    if not callable(fn):
        raise Rejected("no_function", f"`unlearning` is a {type(fn).__name__}, not a function; the contract is {CONTRACT}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # C callables carry no signature: calling it will tell
    try:
        sig.bind(*range(4))
    except TypeError as e:
        raise Rejected("bad_signature", f"unlearning{sig} cannot be called as {CONTRACT} ({e})") from None


def _rejection(e: BaseException, when: str, path: Path) -> Rejected:
    """Name what went wrong the way a participant would look for it: type, message, their line."""
    tb = "".join(traceback.format_exception(e))
    if isinstance(e, SystemExit):
        return Rejected("crashed", f"the submission called exit({e.code!r}) {when}", tb)
    if _out_of_memory(e):
        return Rejected("memory", f"the submission ran out of memory {when} ({type(e).__name__}): stay within scorer.memory_mb", tb)
    if isinstance(e, OSError) and e.errno == errno.EFBIG:  # Python ignores SIGXFSZ, so the limit surfaces here
        return Rejected("file_too_large", f"the submission wrote a file over the size limit {when}: stay within scorer.file_size_mb", tb)
    if _out_of_processes(e, tb):
        return Rejected("processes", f"the submission could not start another process or thread {when} ({type(e).__name__}): stay within scorer.max_processes", tb)
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return Rejected("disk", f"the submission filled its scratch space {when} ({type(e).__name__}): stay within scorer.scratch_mb", tb)
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
    where = f" at line {frames[-1].lineno} of the submission" if frames else ""
    text = str(e).splitlines()[0][:300] if str(e) else ""
    hint = BATCH_HINT if frames and _unpacked_a_batch(e) else ""
    return Rejected("raised", f"the submission raised {type(e).__name__}{': ' + text if text else ''}{where} {when}{hint}", tb)


BATCH_HINT = ("; batches are dicts with `image` and `age_group` (also `age`, `person_id`, `image_id`), not (inputs, targets) "
              "tuples: write `x, y = batch['image'], batch['age_group']` (see submissions/README.md)")


def _unpacked_a_batch(e: BaseException) -> bool:
    """`for x, y in loader` over dict batches: too many keys to unpack, or the keys (str) used as tensors."""
    text = str(e)
    return (isinstance(e, ValueError) and "values to unpack" in text) or (isinstance(e, AttributeError) and text.startswith("'str' object"))


def _out_of_processes(e: BaseException, tb: str) -> bool:
    """A fork or a thread refused by the process cap (EAGAIN from fork, not from a non-blocking socket)."""
    forked = isinstance(e, OSError) and e.errno == errno.EAGAIN and any(w in tb for w in ("fork", "_execute_child", "spawn"))
    return forked or (isinstance(e, RuntimeError) and "can't start new thread" in str(e))


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


# -- the runs --------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stream_seed(seed: int, stream: int) -> int:
    """Independent seeds per loader of one run, reproducible from the run seed alone."""
    import numpy as np

    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def load_parts(path: Path) -> dict[str, Any]:
    """Retain/forget/val datasets with the Kaggle batch layout, from the tensors the scorer staged."""
    import torch

    from challenge.data.faces import FaceDataset

    blob = torch.load(path, map_location="cpu", weights_only=True)
    arrays = (blob["images"], blob["ages"], blob["groups"], blob["person_ids"])
    return {part: FaceDataset(*arrays, blob[part].numpy()) for part in ("retain", "forget", "val")}


def loaders(parts: dict[str, Any], batch_size: int, seed: int) -> list[Any]:
    """Retain and forget shuffled with the run's seed, val in a fixed order, as in the 2023 kit."""
    import torch
    from torch.utils.data import DataLoader

    def shuffled(ds: Any, stream: int) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(stream_seed(seed, stream)))

    return [shuffled(parts["retain"], 0), shuffled(parts["forget"], 1), DataLoader(parts["val"], batch_size=batch_size)]


@dataclass
class Runner:
    """Everything a run needs; each run starts from `original` again."""

    unlearning: Callable[..., Any]
    source: Path  # the participant file, to point at their line in a traceback
    original: Any
    parts: dict[str, Any]
    batch_size: int
    outputs: Path
    device: str = "cpu"  # where `original` is, so where each run's net arrives

    def run(self, index: int, seed: int) -> None:
        """One sample of the algorithm's output: fresh weights, own seed, state dict out."""
        import copy

        import torch

        name = run_name(index)
        t0 = time.perf_counter()
        seed_everything(seed)
        net = copy.deepcopy(self.original)
        args = loaders(self.parts, self.batch_size, seed)
        torch.set_grad_enabled(True)
        write_json(self.outputs / f"{name}.start", {"seed": seed, **clocks()})  # the scorer charges the run from here
        t1 = time.perf_counter()
        try:
            returned = self.unlearning(net, *args)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()  # the run ends when its GPU work does: the meter's wall clock stops at .end
        except BaseException as e:  # noqa: BLE001 - the participant's fault, whatever it is
            raise _rejection(e, f"in run {index}", self.source) from None
        t2 = time.perf_counter()
        write_json(self.outputs / f"{name}.end", clocks())  # ... to here
        self.save(returned, net, index)
        t3 = time.perf_counter()
        check_leftovers(index)
        times = {"seconds": t2 - t1, "reset_seconds": t1 - t0, "save_seconds": t3 - t2, "check_seconds": time.perf_counter() - t3}
        write_json(self.outputs / f"{name}.json", {"index": index, "seed": seed, **times})

    def save(self, returned: Any, net: Any, index: int) -> None:
        """Tensors only, so that the scorer can load them with weights_only and run nothing of ours."""
        import torch

        model = net if returned is None else returned
        if not isinstance(model, torch.nn.Module):
            raise Rejected("not_a_model", f"run {index}: unlearning returned {type(returned).__name__}, not a torch.nn.Module; return the model, or None after changing `net` in place")
        try:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
        except Exception as e:  # noqa: BLE001 - a returned module whose state cannot even be read
            raise Rejected("not_a_model", f"run {index}: the returned model's state_dict() failed ({type(e).__name__}: {e})") from None
        write_with(self.outputs / f"{run_name(index)}.pt", lambda tmp: torch.save(state, tmp))


def clocks() -> dict[str, float]:
    """This process's own clocks, for the scorer's meter: it sees a marker only at its next poll, which
    machine load can delay, and takes these readings where they lie between the polls around the marker."""
    import resource

    used = sum(sum(resource.getrusage(who)[:2]) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))  # as /proc's stat counts
    return {"cpu": used, "monotonic": time.monotonic()}


def check_leftovers(index: int, grace: float = 2.0) -> None:
    """Processes the submission started and left running (they would run on into the next run)."""
    import gc

    if not leftover_processes():
        return
    gc.collect()  # a DataLoader with workers shuts them down when it is collected (costly: only now)
    deadline = time.monotonic() + grace
    while (left := leftover_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not left:
        return
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    names = ", ".join(f"{comm} (pid {pid})" for pid, comm in left[:5])
    raise Rejected("left_processes", f"run {index} left {len(left)} process(es) running: {names}; they were killed; wait for every process you start")


def leftover_processes() -> list[tuple[int, str]]:
    """Other live processes of ours: in our own pid namespace all but its init, else our session's."""
    me, own_ns, sid = os.getpid(), os.environ.get(PIDNS_ENV) == "1", os.getsid(0)
    return [(p.pid, p.comm) for p in processes() if p.pid != me and p.state != "Z" and (p.pid != 1 if own_ns else p.session == sid)]


# -- main ----------------------------------------------------------------------------------------
def ingest(inputs: Path, outputs: Path) -> None:
    spec = json.loads((inputs / "spec.json").read_text())
    stamps = {"started": time.time()}
    source = inputs / spec["submission"]
    code = compile_submission(source)
    import torch

    from challenge.training.net import load_net

    torch.set_num_threads(int(spec["threads"]))
    device = str(spec.get("settings", {}).get("device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"scorer.device={device} but the sandbox holds no usable CUDA device: set scorer.device=cpu, or see result.json's sandbox.device")
    original, _, _ = load_net(inputs / "original.pt")
    original.to(device)
    parts = load_parts(inputs / "data.pt")
    stamps["inputs_loaded"] = time.time()
    plan = spec.get("calibration")
    price = calibrate(original, parts["retain"], int(spec["batch_size"]), plan, device) if plan else {"clock": "cpu", "skipped": True}
    hand_over(outputs / CALIBRATION_FILE, price, float(spec.get("handshake_seconds", 60)))
    stamps["calibrated"] = time.time()
    unlearning = load_submission(source, code, spec.get("params"), device)
    stamps["submission_loaded"] = time.time()
    write_json(outputs / "ready.json", stamps)
    runner = Runner(unlearning, source, original, parts, int(spec["batch_size"]), outputs, device)
    for index, seed in spec["runs"]:
        runner.run(int(index), int(seed))


def hand_over(path: Path, price: dict[str, Any], timeout: float) -> None:
    """Write the price and wait for the scorer to take it: after that nothing here can change it."""
    write_json(path, price)
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    inputs, outputs = (Path(a) for a in (argv or sys.argv[1:]))
    try:
        ingest(inputs, outputs)
    except Rejected as r:
        if r.tb:
            print(r.tb, file=sys.stderr)
        print(f"rejected ({r.status}): {r.message}", file=sys.stderr)
        write_json(outputs / "failure.json", {"status": r.status, "message": r.message, "traceback": r.tb})
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Every output is already written and closed; tearing down an interpreter that holds torch costs
    # about a CPU second here, which the meter would charge to the participant.
    os._exit(code)
