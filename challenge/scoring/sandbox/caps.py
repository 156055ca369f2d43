"""The caps on one child besides its namespaces: the rlimits and cgroup it starts under, its capped logs, the caps
polled while it runs (process count, full tmpfs, folder sizes), and its files handed back to us afterwards.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Callable, Iterator

from challenge.scoring.processes import ProcessTree
from challenge.scoring.sandbox.cgroup import Cgroup
from challenge.scoring.sandbox.command import Setup
from challenge.scoring.sandbox.types import INSIDE, Limits

CHECK_EVERY = 0.5  # seconds between the polled caps (process count, full scratch, folder sizes)
_MAX_ENTRIES = 20_000  # files a folder may hold before its size is no longer worth reading: capped as disk
_PR_SET_PDEATHSIG = 1


class Caps:
    """The caps the kernel cannot turn into an error for us, polled: the process count, a full scratch, folder sizes."""

    def __init__(self, box: Setup, outputs_mb: int | None):
        self.box, self.limits = box, box.limits
        mb = outputs_mb if outputs_mb is not None else self.limits.scratch_mb
        self.folders = {box.outputs: mb} if mb else {}
        if not box.bwrap and self.limits.scratch_mb:
            self.folders[box.scratch] = (
                self.limits.scratch_mb
            )  # without bubblewrap the working folder is on the host's disk
        self.hit: tuple[str, str] | None = None
        self.checked = -float("inf")

    def check(self, tree: ProcessTree, cgroup: Cgroup | None) -> None:
        if self.hit or time.monotonic() - self.checked < CHECK_EVERY:
            return
        self.checked = time.monotonic()
        tree.cpu_seconds()  # refreshes the tree and its task count
        n = self.limits.max_processes
        if n and (tree.tasks >= n or (cgroup is not None and cgroup.pids_refused())):
            self.hit = ("processes", f"reached {n} processes and threads at once")
            return
        for folder, mb in self.folders.items():
            used, entries = _folder_bytes(folder)
            if used > mb << 20 or entries > _MAX_ENTRIES:
                what = f"{entries} files" if entries > _MAX_ENTRIES else f"{used / 2**20:.0f} MB"
                self.hit = ("disk", f"wrote {what} to {self.box.inside(folder)}, more than the {mb} MB it may hold")
                return
        if self.box.bwrap and self.limits.scratch_mb and "--size" in self.box.options:
            full = _full_tmpfs(tree, [str(INSIDE / "scratch"), "/tmp", "/dev/shm"])
            if full:
                self.hit = ("disk", f"filled {full} ({self.limits.scratch_mb} MB)")


def _folder_bytes(folder: Path) -> tuple[int, int]:
    """Bytes on disk under `folder` (symlinks not followed) and the number of entries, stopping past _MAX_ENTRIES."""
    used = entries = 0
    todo = [str(folder)]
    while todo and entries <= _MAX_ENTRIES:
        try:
            with os.scandir(todo.pop()) as it:
                for e in it:
                    entries += 1
                    st = e.stat(follow_symlinks=False)
                    used += max(st.st_blocks * 512, 4096)
                    if e.is_dir(follow_symlinks=False):
                        todo.append(e.path)
        except OSError:
            continue
    return used, entries


def _full_tmpfs(tree: ProcessTree, paths: list[str]) -> str | None:
    """The first of the child's tmpfs folders with no room left, seen through /proc/PID/root of a process inside."""
    for pid in sorted(tree.known, reverse=True):
        try:
            seen = {path: os.statvfs(f"/proc/{pid}/root{path}") for path in paths}
        except OSError:
            continue  # not inside the sandbox's mount namespace (bwrap's own monitor), or gone
        return next((path for path, st in seen.items() if st.f_blocks and st.f_bavail * st.f_frsize < 1 << 20), None)
    return None


def reclaim(folder: Path) -> None:
    """The child's files back to us, every folder writable by us: the child owns nothing once it is gone."""
    me, group = os.getuid(), os.getgid()
    for path in _walk(folder):
        try:
            os.lchown(path, me, group)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o755)
        except OSError:
            continue


def _walk(folder: Path) -> Iterator[str]:
    yield str(folder)
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in (*dirs, *files):
            yield os.path.join(root, name)


def preexec(limits: Limits, cgroup: Cgroup | None, nproc: bool = False) -> Callable[[], None]:
    """Limits applied in the forked child before exec, so they bind everything the child starts.

    `nproc`: the child will run as a uid of its own, so RLIMIT_NPROC set here counts only its processes
    (bubblewrap, still root, is exempt); otherwise it is set inside the sandbox, or not at all.
    """
    prctl = (
        ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
    )  # resolved before fork
    procs = str(cgroup.procs) if cgroup else None
    memory_in_cgroup = cgroup is not None and (cgroup.path / "memory.max").exists()

    def apply() -> None:
        if procs:
            with open(procs, "w") as f:
                f.write("0")  # "0" moves the writing process itself
        if limits.memory_mb and not memory_in_cgroup:
            # RLIMIT_DATA, not RLIMIT_AS: torch maps GBs of shared libraries it never touches
            resource.setrlimit(resource.RLIMIT_DATA, (limits.memory_mb << 20,) * 2)
        if limits.file_size_mb:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb << 20,) * 2)
        if limits.cpu_seconds:
            resource.setrlimit(
                resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 2)
            )  # SIGXCPU, then SIGKILL
        if nproc and limits.max_processes:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not dump a GB-sized core file
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # scorer killed -> child killed, even without bwrap

    return apply


class CappedLog:
    """Copies a pipe into a file up to `cap` bytes; past that it only drains and notes the flood."""

    def __init__(self, pipe: IO[bytes], path: Path, cap: int):
        self.pipe, self.path, self.cap = pipe, path, cap
        self.flooded = False
        self.thread = threading.Thread(target=self._copy, daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        written = 0
        with open(self.path, "wb") as out:
            while chunk := self.pipe.read1(1 << 16):
                room = self.cap - written
                if room > 0:
                    out.write(chunk[:room])
                    out.flush()
                    written += min(room, len(chunk))
                if len(chunk) > room:
                    self.flooded = True
            if self.flooded:
                out.write(f"\n[output cut at {self.cap} bytes]\n".encode())
        self.pipe.close()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
