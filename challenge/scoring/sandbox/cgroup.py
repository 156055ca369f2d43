"""One child's cgroup v2, where one is delegated to us (challenge.scoring.sandbox.probe.cgroup_parent)."""

from __future__ import annotations

import os
import time
from pathlib import Path


class Cgroup:
    """One child's cgroup: memory.max with no swap (going over means the OOM killer, not thrashing)
    and pids.max (a process bomb stops at the cap), whichever of the two is delegated to us."""

    def __init__(self, parent: Path, memory_mb: int | None, pids_max: int | None):
        self.path = parent / f"challenge-sandbox-{os.getpid()}-{time.monotonic_ns()}"
        self.path.mkdir()
        if memory_mb:
            (self.path / "memory.max").write_text(str(memory_mb << 20))
            if (self.path / "memory.swap.max").exists():
                (self.path / "memory.swap.max").write_text("0")
        if pids_max:
            (self.path / "pids.max").write_text(str(pids_max))

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def _events(self, name: str) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in (line.split() for line in (self.path / name).read_text().splitlines())}
        except (OSError, ValueError):
            return {}

    def oom_killed(self) -> bool:
        return self._events("memory.events").get("oom_kill", 0) > 0

    def pids_refused(self) -> bool:
        """pids.max turned a fork away at least once."""
        return self._events("pids.events").get("max", 0) > 0

    def kill(self) -> None:
        """Everything in the cgroup, at once (cgroup.kill, Linux 5.14+)."""
        try:
            (self.path / "cgroup.kill").write_text("1")
        except OSError:
            pass

    def remove(self) -> None:
        for _ in range(20):  # the kernel frees a cgroup a moment after its last process is reaped
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)
