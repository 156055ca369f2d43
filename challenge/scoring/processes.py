"""The child's processes as the scorer sees them: who they are, what CPU they used, how to end them.

Everything here reads or signals from the outside (psutil reads /proc), so the child's own code can
neither hide a process nor forge its CPU time.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path
from typing import Callable, NamedTuple

import psutil

# The one-letter states of ps(1) and /proc/PID/stat, which callers compare against ("Z": a zombie).
_STATE = {
    psutil.STATUS_RUNNING: "R",
    psutil.STATUS_SLEEPING: "S",
    psutil.STATUS_DISK_SLEEP: "D",
    psutil.STATUS_STOPPED: "T",
    psutil.STATUS_TRACING_STOP: "t",
    psutil.STATUS_ZOMBIE: "Z",
    psutil.STATUS_DEAD: "X",
    psutil.STATUS_IDLE: "I",
    psutil.STATUS_PARKED: "P",
    psutil.STATUS_WAKING: "W",
}


# A process that has ended: a zombie (its times not yet its parent's), or one being reaped ("X": its parent's wait has
# claimed it and adds, or has added, its times to its own children's counters before the pid is gone). Counting an
# "X" as well as the parent read just before it counts that process's CPU twice, and the tree's total is kept monotone,
# so one reading inside that window (which a loaded machine widens: the wait copies its results to the reaper's
# memory, and can be descheduled there) would charge the submission that process's CPU a second time.
_ENDED = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


class Proc(NamedTuple):
    pid: int
    state: str  # one letter, as ps shows it
    ppid: int
    pgrp: int
    session: int
    comm: str
    cpu: float  # user + system seconds of the process and of its waited-for children
    threads: int = 1  # tasks in the process: what RLIMIT_NPROC and pids.max count


def _describe(p: psutil.Process) -> Proc | None:
    """A process's identity and clocks in one /proc reading, None when it is gone."""
    try:
        with p.oneshot():
            return Proc(
                p.pid,
                _STATE.get(p.status(), "?"),
                p.ppid(),
                os.getpgid(p.pid),
                os.getsid(p.pid),
                p.name(),
                _cpu(p),
                p.num_threads(),
            )
    except (psutil.Error, OSError):  # psutil has no process group or session: os's calls raise ProcessLookupError
        return None


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def describe(pid: int) -> Proc | None:
    """One process by its pid, None when it is gone."""
    try:
        return _describe(psutil.Process(pid))
    except psutil.Error:
        return None


def children(pid: int, every_thread: bool = False) -> list[int]:
    """A process's children from the kernel's own lists (/proc/PID/task/TID/children), without a scan of /proc:
    its main thread's only, or every thread's (a child forked from another thread is listed under that one)."""
    tasks = [p.name for p in Path(f"/proc/{pid}/task").iterdir()] if every_thread else [str(pid)]
    found: list[int] = []
    for tid in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def processes() -> list[Proc]:
    """Every process we can see."""
    return [proc for p in psutil.process_iter() if (proc := _describe(p)) is not None]


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_session(sid: int) -> list[str]:
    """Kill what the child left in its session or process group; name what was still running."""
    return _kill_where(lambda p: sid in (p.pgrp, p.session))


def real_uid(pid: int) -> int | None:
    """The real uid of a process (the one RLIMIT_NPROC charges), None when it is gone."""
    try:
        return psutil.Process(pid).uids().real
    except psutil.Error:
        return None


def kill_uid(uid: int) -> list[str]:
    """Kill every process of a uid dedicated to one child, wherever it hid (setsid, double fork); name them."""
    return _kill_where(lambda p: real_uid(p.pid) == uid)


def _kill_where(match: Callable[[Proc], bool]) -> list[str]:
    """SIGKILL every other process that `match`es; name those that were still running (not zombies)."""
    found = []
    for p in processes():
        if p.pid != os.getpid() and match(p):
            if p.state != "Z":
                found.append(f"{p.comm} (pid {p.pid})")
            try:
                os.kill(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return found


class ProcessTree:
    """CPU seconds used so far by a process and every process it started, read by the parent.

    A descendant's time reaches its parent's counters when it is reaped, so summing the live tree
    loses nothing that the tree waited for; the total is kept monotone across that hand-over.
    The full /proc scan that finds new descendants runs every `rescan` seconds; in between only
    the known processes are read, which keeps a 20 Hz watchdog cheap on a busy host.

    `starved_seconds` is the time the tree's processes were ready to run but waited for a CPU
    (the scheduler's run-queue wait): machine load, never the participant's doing, so the
    wall-clock caps discount it.
    """

    def __init__(self, root: int, rescan: float = 0.5):
        self.root, self.rescan = root, rescan
        self.procs: dict[int, psutil.Process] = {}  # the tree at the last scan, and the children adopted since
        self.scanned, self.used = -float("inf"), 0.0
        self.waits: dict[int, int] = {}  # ns each process of the tree waited for a CPU, kept after it has ended
        self.tasks = 1  # processes and threads of the tree at the last reading

    @property
    def known(self) -> set[int]:
        """The tree's pids at the last scan (the root alone before the first, or once it is gone)."""
        return set(self.procs) or {self.root}

    def starved_seconds(self) -> float:
        """psutil does not read /proc/PID/schedstat (the run-queue wait), so it is read here. Unlike CPU time, a
        process's waits do not reach its parent when it is reaped: each one's last reading is kept, so that a
        run's process that has ended still counts."""
        self._adopt()
        for pid in self.known:
            try:
                self.waits[pid] = max(
                    self.waits.get(pid, 0), int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
                )
            except (OSError, ValueError, IndexError):
                continue
        return sum(self.waits.values()) / 1e9

    def _adopt(self) -> None:
        """New children of the known processes' main threads at every poll (their own lists: cheap), not only
        at the rescans: a child that forks each run from its main thread is seen from the run's first poll on."""
        for pid in list(self.known):
            for c in children(pid):
                if c not in self.procs:
                    try:
                        self.procs[c] = psutil.Process(c)
                    except psutil.Error:
                        continue

    def cpu_seconds(self) -> float:
        if time.monotonic() - self.scanned >= self.rescan:
            self._scan()
        used, tasks = 0.0, 0
        for p in self.procs.values():
            try:
                with p.oneshot():
                    if p.status() not in _ENDED:
                        used, tasks = used + _cpu(p), tasks + p.num_threads()
            except psutil.Error:
                continue
        self.tasks = tasks
        self.used = max(self.used, used)
        return self.used

    def limit_cpu(self, seconds: float) -> None:
        """RLIMIT_CPU on every process of the tree, `seconds` more than each has used: what they start inherits it.

        A backstop, set from the outside once the budget is known: a process that escaped the
        watchdog (a detached one, without a pid namespace) is killed by the kernel (SIGXCPU, then SIGKILL).
        """
        for pid, p in list(self.procs.items()):
            try:
                limit = int(_cpu(p) + seconds) + 1
                soft, hard = p.rlimit(psutil.RLIMIT_CPU)
                hard = limit + 2 if hard == resource.RLIM_INFINITY else min(hard, limit + 2)
                p.rlimit(psutil.RLIMIT_CPU, (min(limit, hard), hard))
            except (psutil.Error, OSError, ValueError):
                continue

    def _scan(self) -> None:
        try:
            root = psutil.Process(self.root)
            tree = [root, *root.children(recursive=True)]  # psutil skips a pid reused by a newer process
        except psutil.Error:
            tree = []
        self.procs, self.scanned = {p.pid: p for p in tree}, time.monotonic()
