"""The child's processes as the scorer sees them in /proc: who they are, what CPU they used, how to end them.

Everything here reads or signals from the outside, so the child's own code can neither hide a
process nor forge its CPU time.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path
from typing import NamedTuple

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc counts CPU time in these ticks


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_session(sid: int) -> list[str]:
    """Kill what the child left in its session or process group; name what was still running."""
    found = []
    for p in processes():
        if sid in (p.pgrp, p.session) and p.pid != os.getpid():
            if p.state != "Z":
                found.append(f"{p.comm} (pid {p.pid})")
            try:
                os.kill(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return found


class Proc(NamedTuple):
    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    comm: str
    cpu_ticks: int  # user + system time of the process and of its waited-for children
    threads: int = 1  # tasks in the process: what RLIMIT_NPROC and pids.max count


def _read_proc(entry: Path) -> Proc | None:
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return None
    comm, f = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
    return Proc(int(entry.name), f[0], int(f[1]), int(f[2]), int(f[3]), comm, sum(int(x) for x in f[11:15]), int(f[17]))


def real_uid(pid: int) -> int | None:
    """The real uid of a process (the one RLIMIT_NPROC charges), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def kill_uid(uid: int) -> list[str]:
    """Kill every process of a uid dedicated to one child, wherever it hid (setsid, double fork); name them."""
    found = []
    for p in processes():
        if p.pid != os.getpid() and real_uid(p.pid) == uid:
            if p.state != "Z":
                found.append(f"{p.comm} (pid {p.pid})")
            try:
                os.kill(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return found


def processes() -> list[Proc]:
    """Every process we can see, from /proc."""
    return [p for entry in Path("/proc").glob("[0-9]*") if (p := _read_proc(entry)) is not None]


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
        self.known: set[int] = {root}
        self.scanned, self.used, self.starved = -float("inf"), 0.0, 0.0
        self.tasks = 1  # processes and threads of the tree at the last reading

    def starved_seconds(self) -> float:
        waits = 0
        for pid in self.known:
            try:
                waits += int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
            except (OSError, ValueError, IndexError):
                continue
        self.starved = max(self.starved, waits / 1e9)
        return self.starved

    def cpu_seconds(self) -> float:
        if time.monotonic() - self.scanned >= self.rescan:
            self._scan()
        procs = [p for pid in self.known if (p := _read_proc(Path(f"/proc/{pid}"))) is not None and p.state != "Z"]
        self.tasks = sum(p.threads for p in procs)
        self.used = max(self.used, sum(p.cpu_ticks for p in procs) / _CLK_TCK)
        return self.used

    def limit_cpu(self, seconds: float) -> None:
        """RLIMIT_CPU on every process of the tree, `seconds` more than each has used: what they start inherits it.

        A backstop, set from the outside once the budget is known: a process that escaped the
        watchdog (a detached one, without a pid namespace) is killed by the kernel (SIGXCPU, then SIGKILL).
        """
        for pid in list(self.known):
            proc = _read_proc(Path(f"/proc/{pid}"))
            if proc is None:
                continue
            limit = int(proc.cpu_ticks / _CLK_TCK + seconds) + 1
            try:
                soft, hard = resource.prlimit(pid, resource.RLIMIT_CPU)
                hard = limit + 2 if hard == resource.RLIM_INFINITY else min(hard, limit + 2)
                resource.prlimit(pid, resource.RLIMIT_CPU, (min(limit, hard), hard))
            except (OSError, ValueError):
                continue

    def _scan(self) -> None:
        children: dict[int, list[int]] = {}
        for p in processes():
            children.setdefault(p.ppid, []).append(p.pid)
        tree, todo = set(), [self.root]
        while todo:
            pid = todo.pop()
            tree.add(pid)
            todo += [c for c in children.get(pid, []) if c not in tree]
        self.known, self.scanned = tree, time.monotonic()


