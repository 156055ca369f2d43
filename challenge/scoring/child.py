"""The child side of scoring (Codabench's "ingestion program"): run a participant's `unlearning` N times, each fresh.

`python -m challenge.scoring.child <inputs_dir> <outputs_dir> <scratch_dir> [wake_fd answer_fd]`, started by the
scorer's supervisor inside the sandbox. It sees only its inputs and answers only through files
(challenge.scoring.protocol), which the scorer validates.

The process that starts is a *warm parent*: it imports torch, loads the original weights and the data,
has a retrain priced, and then never runs a line of the participant's code. Each run is a process of its
own, forked from it: the run's process imports the file, seeds itself with the run's seed (after the import,
so a file that seeds at import still gives N different runs), calls `unlearning()` once, writes its weights
and exits. So nothing of run i (memory, module globals, threads, open files) reaches run i + 1, and the
parent empties every scratch folder (/tmp, /dev/shm, the working folder, /kaggle/working, /kaggle/tmp) and
its outputs folder between runs; it forks run i + 1 only once the scorer has taken run i's files out of the
sandbox. The 2023 rules asked for "512 completely independent unlearning algorithms ... without caching work
between each run": here that holds by construction. The parent marks each run's start before the fork and
its end once it has reaped the process, with its own clocks (children's CPU included), so the import and
everything the run does are charged to the run.

The parent touches no CUDA (a forked process cannot use a CUDA context it inherits): the price of a retrain
is measured in a forked process too, and each run's process moves the original to the GPU itself. It also
makes itself non-dumpable, so that a run cannot ptrace it or open its file descriptors through /proc.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from pathlib import Path
from typing import Any

from challenge.files import write_json
from challenge.scoring.protocol import (
    CALIBRATION,
    DATA,
    END,
    FAILURE,
    PIDNS_ENV,
    READY,
    RECORD,
    SPEC,
    START,
    WEIGHTS,
    original_name,
    run_name,
)
from challenge.scoring.run import (
    HUGE_PAGES_FROM,
    Run,
    check_leftovers,
    clocks,
    dumpable,
    end_like,
    exit_now,
    in_own_process,
    leftover_processes,
    load_parts,
    report_rejection,
    warm,
)
from challenge.scoring.submission import Rejected, compile_submission

_TAKEN_POLL = 0.01  # seconds between looks for the scorer having taken files, where it does not answer


# -- the warm parent ---------------------------------------------------------------------------------
class Scratch:
    """The folders a run may write besides its weights, emptied between runs: what a run leaves there
    would otherwise reach the next one. /tmp and /dev/shm only in the sandbox's own namespace (a tmpfs of
    its own); without it /tmp is the host's, and the child's TMPDIR is the working folder. The folders the
    sandbox made (the Kaggle ones inside the working folder) stay, emptied."""

    def __init__(self, outputs: Path, scratch: Path):
        self.outputs = outputs
        self.folders = [str(scratch)] + (["/tmp", "/dev/shm"] if os.environ.get(PIDNS_ENV) == "1" else [])
        self.made = {str(p) for p in scratch.rglob("*") if p.is_dir() and not p.is_symlink()}
        self.kept: dict[str, bytes] = {}  # the parent's own files in the outputs, written again as they were

    def keep(self, name: str, obj: Any) -> None:
        self.kept[name] = json.dumps(obj).encode()
        write_json(self.outputs / name, obj)

    def empty(self) -> None:
        for folder in [*self.folders, str(self.outputs)]:
            _empty(folder, self.made)
        for name, blob in self.kept.items():
            (self.outputs / name).write_bytes(blob)


def _empty(folder: str, made: set[str]) -> None:
    """Everything under `folder` but the folders in `made` (emptied in turn)."""
    try:
        entries = [e.path for e in os.scandir(folder)]
    except OSError:
        return
    for path in entries:
        if path in made:
            _empty(path, made)
        else:
            _remove(path)


def _remove(path: str) -> None:
    """Also what a run made hard to remove: a folder it left without permissions is given them back first."""
    if os.path.isdir(path) and not os.path.islink(path):
        try:
            os.chmod(path, 0o700)
        except OSError:
            pass
        _empty(path, set())
        try:
            os.rmdir(path)
        except OSError:
            pass
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def wait_taken(paths: list[Path], answer: int | None = None, timeout: float = float("inf")) -> None:
    """Until the scorer has moved these files out of the sandbox (it does so as soon as it sees them): a
    run's weights must not be found by the next run's process, and the price of a retrain must be gone
    before any participant code runs. A scorer that never takes a run's files stops the child.

    `answer`: a pipe the scorer writes to once it has taken a run's files: the wait blocks on it and uses no
    CPU (a loaded machine can delay the scorer by seconds, and every second of polling would be charged)."""
    deadline = time.monotonic() + timeout
    while any(os.path.lexists(p) for p in paths) and time.monotonic() < deadline:
        if answer is None:
            time.sleep(_TAKEN_POLL)
        elif select.select([answer], [], [], min(1.0, max(0.0, deadline - time.monotonic())))[0]:
            os.read(answer, 4096)


def ingest(inputs: Path, outputs: Path, scratch_dir: Path, wake: int | None = None, answer: int | None = None) -> None:
    """`wake`: an fd to write a byte to when a run has ended (the supervisor looks at once); `answer`: one the
    supervisor writes to once it has taken the run's files. No run's process holds either."""
    dumpable(False)
    spec = json.loads((inputs / SPEC).read_text())
    stamps = {"started": time.time()}
    source = inputs / spec["submission"]
    code = compile_submission(source)
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # torch.cuda.is_available() without a CUDA context here
    import torch

    from challenge.training.net import load_net

    torch.set_num_threads(1)  # the parent computes nothing; each run's process sets the runs' thread count
    settings = spec.get("settings", {})
    device = str(settings.get("device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"scorer.device={device} but the sandbox holds no usable CUDA device: set scorer.device=cpu, or see "
            "result.json's sandbox.device"
        )
    originals = [load_net(inputs / original_name(s))[0] for s in range(int(settings.get("originals", 1)))]
    original = originals[0]  # the one the warm-up, the kit's own run and the price of a retrain use
    parts = load_parts(inputs / DATA)
    threads, batch_size = int(spec["threads"]), int(spec["batch_size"])
    warm(original, parts, batch_size, device, huge=len(spec["runs"]) >= HUGE_PAGES_FROM)
    stamps["inputs_loaded"] = time.time()
    closing = tuple(fd for fd in (wake, answer) if fd is not None)
    run = Run(source, code, spec.get("params") or {}, originals, parts, batch_size, threads, outputs, device)
    price_of_run = {"kit_run": kit_run_price(run, closing)}
    plan = spec.get("calibration")
    if plan:  # a price taken by a process forked like the runs, with their threads, before any file is imported
        status, report = in_own_process(
            lambda fd: price(original, parts, batch_size, threads, plan, device, fd), outputs / FAILURE, closing
        )
        if status != 0:
            end_like(status)
        # Written once that process is reaped: the meter starts the charge at the poll that sees this file, and a
        # process ended but not yet reaped is in no CPU count, so its seconds would land on the submission later.
        write_json(outputs / CALIBRATION, {**json.loads(report), **price_of_run})
    else:  # a fixed budget: the scorer still waits for this to know that the kit's own start-up is over
        write_json(outputs / CALIBRATION, {"clock": "cpu", "skipped": True, **price_of_run})
    wait_taken([outputs / CALIBRATION], timeout=float(spec.get("handshake_seconds", 60)))  # before any import: polled
    stamps["calibrated"] = time.time()
    scratch = Scratch(outputs, scratch_dir)
    scratch.keep(READY, stamps)
    for index, seed in spec["runs"]:
        run_once(run, int(index), int(seed), scratch, (wake, answer), closing)


def kit_run_price(run: Run, closing: tuple[int, ...], repeats: int = 3) -> dict[str, float]:
    """What a fresh run costs the kit alone, on both clocks: fork, seed, the original moved to the device,
    loaders, weights out, exit, the leftover checks; measured as the meter measures a run (from the parent's
    clocks before the fork to after the checks). The least of a few: load only ever adds to it, and the meter
    credits each run with it, so that starting every run fresh costs a submission next to nothing."""
    weights = run.outputs / ".kit-run.pt"
    least = {"cpu": float("inf"), "wall": float("inf")}
    for _ in range(repeats):
        before = clocks()
        status, _ = in_own_process(lambda fd: run.kit_part(weights, fd), run.outputs / FAILURE, closing)
        if status != 0:
            end_like(status)
        check_leftovers(0, leftover_processes)
        after = clocks()
        least = {
            "cpu": min(least["cpu"], after["cpu"] - before["cpu"]),
            "wall": min(least["wall"], after["monotonic"] - before["monotonic"]),
        }
    weights.unlink(missing_ok=True)
    return least


def price(
    original: Any,
    parts: dict[str, Any],
    batch_size: int,
    threads: int,
    plan: dict[str, Any],
    device: str,
    report_fd: int,
) -> None:
    """The calibration's process: the price of a retrain, before any participant code exists in this sandbox."""
    import torch

    from challenge.scoring.calibration import calibrate

    torch.set_num_threads(threads)
    os.write(report_fd, json.dumps(calibrate(original, parts["retain"], batch_size, plan, device)).encode())


def run_once(
    run: Run, index: int, seed: int, scratch: Scratch, bell: tuple[int | None, int | None], closing: tuple[int, ...]
) -> None:
    """Fork run `index`, reap it, mark its end, and wait until the scorer has taken its files."""
    name = run_name(index)
    write_json(run.outputs / f"{name}{START}", {"seed": seed, **clocks()})  # the scorer charges the run from here
    t0 = time.perf_counter()
    status, report = in_own_process(lambda fd: run(index, seed, fd), run.outputs / FAILURE, closing)
    seconds = time.perf_counter() - t0
    times = _times(report)
    if status != 0 or times is None:
        end_like(status)  # a rejection (failure.json), a crash, or an exit before the run's end: the scorer judges it
    try:
        check_leftovers(index, leftover_processes)
    except Rejected as r:
        report_rejection(r, run.outputs / FAILURE)
        exit_now(1)
    write_json(run.outputs / f"{name}{RECORD}", {"index": index, "seed": seed, "seconds": seconds, **times})
    write_json(run.outputs / f"{name}{END}", clocks())  # ... to here
    wake, answer = bell
    if wake is not None:
        os.write(wake, b".")
    wait_taken([run.outputs / f"{name}{ext}" for ext in (WEIGHTS, RECORD)], answer)
    scratch.empty()


def _times(report: bytes) -> dict[str, float] | None:
    """The run's own account of its phases (for the overhead figures only), None if it never got to the end."""
    try:
        raw = json.loads(report)
        return {k: float(raw[k]) for k in ("import_seconds", "unlearning_seconds", "save_seconds")}
    except (ValueError, KeyError, TypeError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = argv or sys.argv[1:]
    inputs, outputs, scratch = (Path(a) for a in args[:3])
    wake, answer = (int(a) for a in args[3:5]) if len(args) >= 5 else (None, None)
    try:
        ingest(inputs, outputs, scratch, wake, answer)
    except Rejected as r:
        report_rejection(r, outputs / FAILURE)
        return 1
    return 0


if __name__ == "__main__":
    exit_now(main())
