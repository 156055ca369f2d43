"""A child process that sees only what it is given: the mechanism under the scorer.

Participant code runs as the same user as the scorer, so "don't read the pool" has to be enforced
by the kernel, not asked for. On Linux, bubblewrap builds a mount namespace holding only the
interpreter, the `challenge` package and the three folders of one run (inputs read-only, outputs
and scratch writable), with fresh pid, network, IPC and UTS namespaces and no capabilities. Where
bubblewrap is missing or refused, the child is a plain process and `Protections` says so, so that
the scorer can print it. Resource limits, the capped logs and the kill of the whole process group
work either way. This package knows nothing about scoring: what to run and when to stop it is the
caller's business (`watchdog`), which gets the child's `ProcessTree` to read its CPU time from.

Every resource one child could take from the others on a shared host is capped: its processes and
threads (a delegated cgroup v2 pids.max, else RLIMIT_NPROC of a uid that only this child has), the
RAM behind its writable folders (tmpfs of `scratch_mb` each), the disk beside its answers (polled),
and the CPU of anything that escaped the watchdog (RLIMIT_CPU). When the scorer runs as root, the
child runs as a host uid dedicated to it (a user namespace of its own maps it to uid 1000), since
the kernel exempts root from RLIMIT_NPROC; as any other user, bubblewrap's own user namespace does.
A cap the machine cannot give is said in `Protections`, never silently dropped.

The modules, one job each: `types` (the plain data both sides share; the child imports only it),
`probe` (what this machine allows), `identity` (the child's own host uid), `cgroup`, `command` (the
command line and environment), `protections` (what is enforced, said), `caps` (rlimits, logs, polled
caps); here, `Sandbox` decides from the probes and runs the child.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path
from typing import Callable

from challenge.errors import ChallengeError
from challenge.scoring import gpu as gpus
from challenge.scoring.processes import ProcessTree, kill_group, kill_session, kill_uid
from challenge.scoring.sandbox import probe
from challenge.scoring.sandbox.caps import CappedLog, Caps, preexec, reclaim
from challenge.scoring.sandbox.cgroup import Cgroup
from challenge.scoring.sandbox.command import Setup
from challenge.scoring.sandbox.identity import HostUid, NoUid, make_userns
from challenge.scoring.sandbox.protections import protections
from challenge.scoring.sandbox.types import ISOLATION_MODES, Limits, Outcome, Protections

__all__ = ["Limits", "Outcome", "Protections", "Sandbox"]


class Sandbox(Setup):
    """Runs one command with `inputs` read-only, `outputs` writable and a capped scratch as cwd and HOME."""

    def __init__(
        self,
        inputs: Path,
        outputs: Path,
        scratch: Path,
        limits: Limits,
        isolation: str = "auto",
        gpu: gpus.Gpu | None = None,
    ):
        """`gpu`: the one device the child may use (challenge.scoring.gpu.gpu_for), None for the CPU."""
        if isolation not in ISOLATION_MODES:
            raise ChallengeError(f"scorer.isolation={isolation!r} is not one of {', '.join(ISOLATION_MODES)}")
        problem = "scorer.isolation=none" if isolation == "none" else probe.bwrap_problem()
        if isolation == "bwrap" and problem:
            raise ChallengeError(
                f"scorer.isolation=bwrap but {problem}: install bubblewrap (`make system-deps`) or set "
                "scorer.isolation=auto"
            )
        bwrap, root = problem is None, os.geteuid() == 0
        parent = probe.cgroup_parent() if limits.memory_mb or limits.max_processes else None
        controllers = probe.cgroup_controllers(parent) if parent else frozenset()
        super().__init__(
            inputs.resolve(),
            outputs.resolve(),
            scratch.resolve(),
            limits,
            gpu,
            bwrap,
            net_prefix=None if bwrap else probe.unshare_net_prefix(),
            cgroup_parent=parent,
            cgroup_memory=bool(limits.memory_mb) and "memory" in controllers,
            cgroup_pids=bool(limits.max_processes) and "pids" in controllers,
            root=root,
            own_uid=bwrap and root and probe.userns_problem() is None,
            options=probe.bwrap_options() if bwrap else frozenset(),
        )
        self.protections = protections(self, problem)
        if isolation == "bwrap" and self.protections.missing:
            raise ChallengeError(
                f"scorer.isolation=bwrap but this machine cannot cap {'; '.join(self.protections.missing)}: "
                "fix that (see submissions/README.md, Isolation) or set scorer.isolation=auto"
            )

    def run(
        self,
        argv: list[str],
        stdout: Path,
        stderr: Path,
        watchdog: Callable[[ProcessTree], str | None],
        poll: float = 0.05,
        outputs_mb: int | None = None,
        pass_fds: tuple[int, ...] = (),
        wake_fd: int | None = None,
    ) -> Outcome:
        """Run to the end, until `watchdog` names a reason to stop, or until a cap is reached; then nothing of the
        child survives.

        The watchdog is polled with the child's process tree, so that a budget can be charged in
        CPU seconds that the child's own code cannot forge and other processes' load does not inflate.
        `outputs_mb` is what the outputs folder may hold (default: scratch_mb). `pass_fds`: our fds that the
        child keeps under the same numbers (a pipe to it, say; bubblewrap passes them on). `wake_fd`: the read
        end of a pipe whose write end the child holds; a byte written there has the watchdog look at once rather
        than after up to `poll` seconds (what was written is drained and otherwise ignored).
        """
        with HostUid() if self.own_uid else NoUid() as uid:
            fd = make_userns(uid) if uid is not None else None
            try:
                return self._run(argv, stdout, stderr, watchdog, poll, uid, fd, outputs_mb, pass_fds, wake_fd)
            finally:
                if fd is not None:
                    os.close(fd)

    def _run(
        self,
        argv: list[str],
        stdout: Path,
        stderr: Path,
        watchdog: Callable[[ProcessTree], str | None],
        poll: float,
        uid: int | None,
        userns_fd: int | None,
        outputs_mb: int | None,
        pass_fds: tuple[int, ...],
        wake_fd: int | None,
    ) -> Outcome:
        cgroup = (
            Cgroup(
                self.cgroup_parent,
                self.limits.memory_mb if self.cgroup_memory else None,
                self.limits.max_processes if self.cgroup_pids else None,
            )
            if self.cgroup_memory or self.cgroup_pids
            else None
        )
        if uid is not None:
            os.chown(self.outputs, uid, uid)  # the one host folder the child may write
        caps = Caps(self, outputs_mb)
        start = time.monotonic()
        proc = subprocess.Popen(
            self.command(argv, userns_fd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(),
            cwd=self.scratch,
            start_new_session=True,
            preexec_fn=preexec(self.limits, cgroup, nproc=uid is not None),
            pass_fds=(*pass_fds, *(() if userns_fd is None else (userns_fd,))),
        )
        logs = {
            name: CappedLog(pipe, path, self.limits.log_cap_bytes)
            for name, pipe, path in (("stdout", proc.stdout, stdout), ("stderr", proc.stderr, stderr))
        }
        tree = ProcessTree(proc.pid)
        stopped = flooded = None
        try:
            while proc.poll() is None:
                flooded = next((name for name, log in logs.items() if log.flooded), None)
                caps.check(tree, cgroup)
                stopped = None if flooded or caps.hit else watchdog(tree)
                if flooded or stopped or caps.hit:
                    kill_group(proc.pid)
                    break
                wake_fd = _pause(poll, wake_fd)
            proc.wait()
        finally:
            if proc.poll() is None:  # the caller was interrupted (Ctrl-C): the child goes too
                kill_group(proc.pid)
                proc.wait()
            leftovers = kill_session(proc.pid)
            if cgroup:
                cgroup.kill()
            if uid is not None:
                leftovers += [p for p in kill_uid(uid) if p not in leftovers]
                reclaim(self.outputs)
            for log in logs.values():
                log.join(timeout=10)
            oom = bool(cgroup and cgroup.oom_killed())
            if cgroup and cgroup.pids_refused() and not caps.hit:
                caps.hit = ("processes", f"reached {self.limits.max_processes} processes and threads at once")
            if cgroup:
                cgroup.remove()
        flooded = flooded or next((name for name, log in logs.items() if log.flooded), None)
        capped, detail = caps.hit or (None, None)
        return Outcome(
            proc.returncode,
            self._signal(proc.returncode),
            stopped,
            flooded,
            leftovers,
            oom,
            time.monotonic() - start,
            capped,
            detail,
        )

    def _signal(self, returncode: int) -> int | None:
        """bwrap reports a child killed by signal N as exit status 128 + N; Popen as -N."""
        if returncode < 0:
            return -returncode
        if self.bwrap and returncode > 128:
            return returncode - 128
        return None


def _pause(poll: float, wake_fd: int | None) -> int | None:
    """Wait `poll` seconds between two looks of the watchdog, or until the child writes to `wake_fd`.

    Returns the fd to wait on next time: None once every writer has closed it, since an fd at its end is
    always readable and waiting on it would turn the poll loop into a busy loop.
    """
    if wake_fd is None:
        time.sleep(poll)
        return None
    ready, _, _ = select.select([wake_fd], [], [], poll)
    if ready and not os.read(wake_fd, 1 << 16):
        time.sleep(poll)
        return None
    return wake_fd
