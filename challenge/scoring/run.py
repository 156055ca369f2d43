"""One run of a participant's file, in a process of its own forked from the child's warm parent.

What a run gets (its loaders, seeded from the run's seed alone), how the warm parent readies the state every run
inherits (`warm`), the run itself (`Run`: import the file, seed, `unlearning()`, save the weights), and the
fork that holds it (`in_own_process`): a Rejected in there becomes the failure report, the process ends without
an interpreter teardown, and the parent ends as the run ended (`end_like`) so that the scorer judges what the
run did. Used by challenge.scoring.child, and by bench_fresh_runs to measure what a fresh process costs.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NoReturn

from challenge.files import write_json
from challenge.scoring.processes import children, describe, processes
from challenge.scoring.protocol import PIDNS_ENV, WEIGHTS, Status, run_name
from challenge.scoring.submission import Rejected, load_submission, rejection

_PR_SET_DUMPABLE = 4


# -- what a run gets ---------------------------------------------------------------------------------
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
        return DataLoader(
            ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(stream_seed(seed, stream))
        )

    return [shuffled(parts["retain"], 0), shuffled(parts["forget"], 1), DataLoader(parts["val"], batch_size=batch_size)]


_HUGE = 2 << 20  # bytes of an x86-64 / arm64 transparent huge page
HUGE_PAGES_FROM = 64  # runs in one child from which huge pages save more than they cost (huge_pages)
_MADV_HUGEPAGE, _MADV_COLLAPSE = 14, 25  # linux/mman.h; MADV_COLLAPSE since Linux 6.1


def huge_pages() -> None:
    """Back the parent's anonymous memory (torch's and timm's half a gigabyte) with huge pages, where Linux can.

    A fork copies the page tables of everything the parent maps, and the run's process unmaps it all when it
    ends: per run, about 0.017 + 0.020 CPU seconds with 4 KB pages, 0.006 + 0.008 with 2 MB ones, of a
    template run of 0.45 s at the default preset (bench_fresh_runs). A page a run writes to is still copied
    at 4 KB, and the bits of every result are the same. Collapsing the memory once costs about a CPU second
    (MADV_COLLAPSE copies it), so warm() asks for it only when the runs repay that (HUGE_PAGES_FROM). Older
    kernels and other systems refuse the advice, which changes nothing."""
    import ctypes

    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as maps:
            regions = [line.split() for line in maps]
    except (OSError, AttributeError):
        return
    for fields in regions:
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        start, end = -(-lo // _HUGE) * _HUGE, hi // _HUGE * _HUGE
        if fields[1].startswith("rw") and (len(fields) < 6 or fields[5] == "[heap]") and end > start:
            madvise(start, end - start, _MADV_HUGEPAGE)
            madvise(start, end - start, _MADV_COLLAPSE)


def warm(original: Any, parts: dict[str, Any], batch_size: int, device: str, huge: bool = False) -> None:
    """Make the parent's state the runs inherit as cheap to fork as it can be (bench_fresh_runs measures it).

    On the CPU a few training steps of a copy, single-threaded: torch's kernels and autograd initialise
    themselves lazily, and each run's process would pay that again; done here once, every run inherits it.
    So do the kit's own steps of a run (seeding, saving a state dict), on any device. Then every object is
    moved out of the garbage collector's reach (gc.freeze): a collection in a run's process would otherwise
    write to every object's header, and so copy every page of the parent. `huge`: and onto huge pages."""
    import gc
    import io

    import torch

    seed_everything(0)
    torch.save({k: v.clone() for k, v in original.state_dict().items()}, io.BytesIO())
    if device == "cpu":
        model = copy.deepcopy(original).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        for _, batch in zip(range(2), loaders(parts, batch_size, 0)[0]):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(batch["image"]), batch["age_group"]).backward()
            optimizer.step()
        del model, optimizer
    gc.collect()
    gc.freeze()
    if huge:
        huge_pages()


def clocks() -> dict[str, float]:
    """This process's clocks, its reaped children's CPU included (as /proc's stat counts), for the scorer's
    meter: it sees a marker only at its next poll, which machine load can delay, and takes these readings
    where they lie between the polls around the marker."""
    import resource

    used = sum(sum(resource.getrusage(who)[:2]) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return {"cpu": used, "monotonic": time.monotonic()}


# -- one run, in a process of its own ------------------------------------------------------------------
@dataclass
class Run:
    """Everything a run's process needs; the warm parent holds it and forks one process per run."""

    source: Path  # the participant file, to point at their line in a traceback
    code: Any  # the file compiled once by the parent (a syntax error never reaches a run)
    params: dict[str, Any]
    originals: list[Any]  # run i starts from originals[i mod S]; on the CPU: each run's process moves its own copy
    parts: dict[str, Any]
    batch_size: int
    threads: int
    outputs: Path
    device: str

    def __call__(self, index: int, seed: int, report: int) -> None:
        """The run's process: import, seed, unlearn, save; its times to the parent through `report`."""
        weights = self.outputs / f"{run_name(index)}{WEIGHTS}"
        self._go(
            index, seed, report, lambda: load_submission(self.source, self.code, self.params, self.device), weights
        )

    def kit_part(self, weights: Path, report: int) -> None:
        """The kit's own part of a run, timed before any file is imported: everything a run's process does
        but the import of the file and its `unlearning()` (the meter credits each run with it)."""
        self._go(0, 0, report, lambda: _nothing, weights)

    def _go(self, index: int, seed: int, report: int, submission: Callable[[], Any], weights: Path) -> None:
        import torch

        torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        unlearning = submission()
        seed_everything(seed)
        net = self.originals[index % len(self.originals)].to(self.device)  # the parent's copy stays as it was
        args = loaders(self.parts, self.batch_size, seed)
        torch.set_grad_enabled(True)
        t1 = time.perf_counter()
        try:
            returned = unlearning(net, *args)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()  # the run ends when its GPU work does
        except BaseException as e:  # noqa: BLE001 - the participant's fault, whatever it is
            raise rejection(e, f"in run {index}", self.source) from None
        t2 = time.perf_counter()
        save(returned, net, index, weights)
        check_leftovers(index, own_children)
        times = {"import_seconds": t1 - t0, "unlearning_seconds": t2 - t1, "save_seconds": time.perf_counter() - t2}
        os.write(report, json.dumps(times).encode())


def _nothing(*args: Any) -> None:
    return None


def save(returned: Any, net: Any, index: int, path: Path) -> None:
    """Tensors only, so that the scorer can load them with weights_only and run nothing of ours."""
    import torch

    model = net if returned is None else returned
    if not isinstance(model, torch.nn.Module):
        raise Rejected(
            Status.NOT_A_MODEL,
            f"run {index}: unlearning returned {type(returned).__name__}, not a torch.nn.Module; "
            "return the model, or None after changing `net` in place",
        )
    try:
        state = {k: _own(v.detach().cpu()) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    except Exception as e:  # noqa: BLE001 - a returned module whose state cannot even be read
        raise Rejected(
            Status.NOT_A_MODEL, f"run {index}: the returned model's state_dict() failed ({type(e).__name__}: {e})"
        ) from None
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)  # no fsync: a lost machine loses the attempt, not a result
    os.replace(tmp, path)


def _own(t: Any) -> Any:
    """The tensor alone: a view of a larger storage would save all of it (the scorer reads a capped size)."""
    return t if t.untyped_storage().nbytes() == t.numel() * t.element_size() and t.storage_offset() == 0 else t.clone()


def check_leftovers(index: int, find: Callable[[], list[tuple[int, str]]], grace: float = 2.0) -> None:
    """Processes the submission started and left running (they would run on into the next run): the run's
    process looks at its own children (cheap), the warm parent at everything else once it has reaped the run."""
    import gc

    if not find():
        return
    gc.collect()  # a DataLoader with workers shuts them down when it is collected (costly: only now)
    deadline = time.monotonic() + grace
    while (left := find()) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not left:
        return
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    names = ", ".join(f"{comm} (pid {pid})" for pid, comm in left[:5])
    raise Rejected(
        Status.LEFT_PROCESSES,
        f"run {index} left {len(left)} process(es) running: {names}; they were killed; wait for every process you "
        "start",
    )


def own_children() -> list[tuple[int, str]]:
    """This process's live children, from each of its threads' own list (no scan of /proc)."""
    found = (describe(pid) for pid in children(os.getpid(), every_thread=True))
    return [(p.pid, p.comm) for p in found if p is not None and p.state != "Z"]


def leftover_processes() -> list[tuple[int, str]]:
    """Other live processes of ours: in our own pid namespace all but its init, else those of the session the
    sandbox started us in (led by the warm parent); none outside both, so that nothing else is ever killed."""
    me, own_ns, sid = os.getpid(), os.environ.get(PIDNS_ENV) == "1", os.getsid(0)
    if not own_ns and sid != me:
        return []
    return [
        (p.pid, p.comm)
        for p in processes()
        if p.pid != me and p.state != "Z" and (p.pid != 1 if own_ns else p.session == sid)
    ]


def in_own_process(job: Callable[[int], None], failure: Path, closing: tuple[int, ...] = ()) -> tuple[int, bytes]:
    """`job(report_fd)` in a forked process; its wait status and what it wrote to the report pipe.

    A Rejected in there becomes `failure` (the participant's fault, said in one line); any other exception
    is the kit's and ends the process with its traceback on stderr, as an uncaught one would."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked process; coverage cannot follow it
        code = 1
        try:
            dumpable(True)
            os.close(read)
            for fd in closing:
                os.close(fd)
            job(write)
            code = 0
        except Rejected as r:
            report_rejection(r, failure)
        except BaseException:  # noqa: BLE001 - the kit's own failure: its traceback, as an uncaught one
            import traceback

            traceback.print_exc()
        finally:
            exit_now(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as f:
        return status, f.read(10_000)


def report_rejection(r: Rejected, failure: Path) -> None:
    if r.tb:
        print(r.tb, file=sys.stderr)
    print(f"rejected ({r.status}): {r.message}", file=sys.stderr)
    write_json(failure, {"status": str(r.status), "message": r.message, "traceback": r.tb})


def end_like(status: int) -> NoReturn:
    """End this process as a run's process ended (wait status `status`): the scorer judges what the run did."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), sig)
    exit_now(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def exit_now(code: int) -> NoReturn:
    """Every output is written and closed; tearing down an interpreter that holds torch costs about a CPU
    second, which the meter would charge to the participant."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def dumpable(flag: bool) -> None:
    """The warm parent is not: no ptrace of it, no /proc/PID/mem or /proc/PID/fd for a run's process of the same
    uid. A run's process is again (it inherits the flag), so that it can read its own /proc/self/fd and the
    scorer can look into its mount namespace."""
    import ctypes

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, int(flag), 0, 0, 0)
