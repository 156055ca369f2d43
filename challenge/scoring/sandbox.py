"""A child process that sees only what it is given: the mechanism under the scorer.

Participant code runs as the same user as the scorer, so "don't read the pool" has to be enforced
by the kernel, not asked for. On Linux, bubblewrap builds a mount namespace holding only the
interpreter, the `challenge` package and the three folders of one run (inputs read-only, outputs
and scratch writable), with fresh pid, network, IPC and UTS namespaces and no capabilities. Where
bubblewrap is missing or refused, the child is a plain process and `Protections` says so, so that
the scorer can print it. Resource limits, the capped logs and the kill of the whole process group
work either way. This module knows nothing about scoring: what to run and when to stop it is the
caller's business (`watchdog`), which gets the child's `ProcessTree` to read its CPU time from.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Callable

import challenge
from challenge.errors import ChallengeError
from challenge.scoring.processes import ProcessTree, kill_group, kill_session

ISOLATION_MODES = ("auto", "bwrap", "none")
INSIDE = Path("/sandbox")  # where inputs, outputs and scratch appear inside the mount namespace
PIDNS_ENV = "CHALLENGE_SANDBOX_PIDNS"  # "1" tells the child it owns its pid namespace
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What the dynamic loader and Python's stdlib read from /etc; nothing secret (no shadow, no ssh).
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group", "hosts", "fonts")
_NAMESPACES = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
_PR_SET_PDEATHSIG = 1
# Kaggle notebooks of 2023 wrote scratch files here; inside bubblewrap both are folders of the scratch.
KAGGLE_SCRATCH = {"/kaggle/working": ".kaggle/working", "/kaggle/tmp": ".kaggle/tmp"}


@dataclass(frozen=True)
class Limits:
    """What one child may use; None switches a limit off."""

    memory_mb: int | None = 8192
    file_size_mb: int | None = 1024
    log_cap_bytes: int = 1 << 20


@dataclass(frozen=True)
class Protections:
    """What the kernel really enforces for the child on this machine, said plainly."""

    isolation: str  # "bubblewrap", or "none (why)"
    filesystem: str
    network: str
    processes: str
    memory: str
    file_size: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Outcome:
    """How the child ended. `stopped` is the watchdog's reason when it had the child killed."""

    returncode: int
    signal: int | None  # the signal that ended the child's main process, if any
    stopped: str | None
    flooded: str | None  # "stdout" or "stderr" when that stream went over the cap
    leftovers: list[str]  # processes still running after the child exited (killed)
    oom_killed: bool
    seconds: float


# -- probing ---------------------------------------------------------------------------------
def _system_binds() -> list[str]:
    """The OS directories as on the host: symlinks stay symlinks (merged /usr), dirs are bound read-only."""
    args: list[str] = []
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    for name in _ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


@functools.lru_cache(maxsize=None)
def bwrap_problem() -> str | None:
    """None when bubblewrap can build our namespaces here, else why not (one line)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap is not installed"
    probe = [exe, *_system_binds(), "--proc", "/proc", "--dev", "/dev", *_NAMESPACES, "true"]
    try:
        r = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap did not start ({e})"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        return f"bubblewrap cannot create namespaces here ({last})"
    return None


@functools.lru_cache(maxsize=None)
def unshare_net_prefix() -> tuple[str, ...] | None:
    """A command prefix that starts the child in an empty network namespace, if the OS lets us."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    for flags in (("--net",), ("--user", "--map-root-user", "--net")):
        try:
            if subprocess.run([exe, *flags, "true"], capture_output=True, timeout=30).returncode == 0:
                return (exe, *flags, "--")
        except (OSError, subprocess.TimeoutExpired):
            return None
    return None


@functools.lru_cache(maxsize=None)
def cgroup_parent() -> Path | None:
    """A cgroup v2 directory where we may create children with a memory limit, else None.

    That needs the unified hierarchy, the memory controller enabled for our cgroup's children,
    and write access (a delegated cgroup, or root of a container's cgroup namespace).
    """
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    rel = next((line[3:] for line in lines if line.startswith("0::")), None)
    if rel is None:
        return None
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        own = root / rel.lstrip("/")
        try:
            enabled = (own / "cgroup.subtree_control").read_text().split()
        except OSError:
            continue
        if "memory" in enabled and os.access(own, os.W_OK):
            return own
    return None


# -- cgroup --------------------------------------------------------------------------------------
class MemoryCgroup:
    """One child's cgroup: memory.max and no swap, so going over means the OOM killer, not thrashing."""

    def __init__(self, parent: Path, limit_mb: int):
        self.path = parent / f"challenge-sandbox-{os.getpid()}-{time.monotonic_ns()}"
        self.path.mkdir()
        (self.path / "memory.max").write_text(str(limit_mb << 20))
        if (self.path / "memory.swap.max").exists():
            (self.path / "memory.swap.max").write_text("0")

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def oom_killed(self) -> bool:
        try:
            events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
        except (OSError, ValueError):
            return False
        return int(events.get("oom_kill", 0)) > 0

    def remove(self) -> None:
        for _ in range(20):  # the kernel frees a cgroup a moment after its last process is reaped
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)


# -- the sandbox -------------------------------------------------------------------------------
class Sandbox:
    """Runs one command with `inputs` read-only, `outputs` and `scratch` writable, scratch as cwd and HOME."""

    def __init__(self, inputs: Path, outputs: Path, scratch: Path, limits: Limits, isolation: str = "auto"):
        if isolation not in ISOLATION_MODES:
            raise ChallengeError(f"scorer.isolation={isolation!r} is not one of {', '.join(ISOLATION_MODES)}")
        self.inputs, self.outputs, self.scratch = inputs.resolve(), outputs.resolve(), scratch.resolve()
        self.limits = limits
        problem = "scorer.isolation=none" if isolation == "none" else bwrap_problem()
        if isolation == "bwrap" and problem:
            raise ChallengeError(f"scorer.isolation=bwrap but {problem}: install bubblewrap (`make system-deps`) or set scorer.isolation=auto")
        self.bwrap = problem is None
        self.net_prefix = None if self.bwrap else unshare_net_prefix()
        self.cgroup_parent = cgroup_parent() if limits.memory_mb else None
        self.protections = self._protections(problem)

    def _protections(self, problem: str | None) -> Protections:
        mb, fs = self.limits.memory_mb, self.limits.file_size_mb
        if mb is None:
            memory = "unlimited"
        else:
            memory = f"cgroup v2 memory.max {mb} MB" if self.cgroup_parent else f"RLIMIT_DATA {mb} MB per process (no cgroup v2 memory controller to delegate)"
        file_size = f"RLIMIT_FSIZE {fs} MB per file" if fs else "unlimited"
        if self.bwrap:
            return Protections(
                "bubblewrap", "mount namespace: sees only the interpreter, the challenge package, its inputs (read-only), outputs and scratch "
                "(also at /kaggle/working and /kaggle/tmp)",
                "none (empty network namespace)", "own pid namespace, no capabilities, killed as a group", memory, file_size,
            )
        network = "none (empty network namespace via unshare)" if self.net_prefix else "open (unshare unavailable)"
        return Protections(
            f"none ({problem})", "participant code can read your files (every file you can read)", network,
            "own session, killed as a group", memory, file_size,
        )

    def inside(self, host: Path) -> str:
        """The child's name for one of our three folders."""
        if not self.bwrap:
            return str(host)
        return str(INSIDE / {self.inputs: "inputs", self.outputs: "outputs", self.scratch: "scratch"}[host.resolve()])

    def command(self, argv: list[str]) -> list[str]:
        if not self.bwrap:
            return [*(self.net_prefix or ()), *argv]
        binds: list[str] = []
        for path in _python_dirs():
            binds += ["--ro-bind", path, path]
        for inside, rel in KAGGLE_SCRATCH.items():
            (self.scratch / rel).mkdir(parents=True, exist_ok=True)
            binds += ["--bind", str(self.scratch / rel), inside]
        # The private /tmp comes first: a later mount would hide a venv or checkout that lives under /tmp.
        return [
            "bwrap", "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev", *_system_binds(), *binds,
            "--ro-bind", str(self.inputs), self.inside(self.inputs),
            "--bind", str(self.outputs), self.inside(self.outputs),
            "--bind", str(self.scratch), self.inside(self.scratch),
            "--chdir", self.inside(self.scratch), *_NAMESPACES, "--", *argv,
        ]

    def env(self) -> dict[str, str]:
        """A clean environment: nothing of ours (tokens, W&B keys, paths) reaches participant code."""
        home = self.inside(self.scratch)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": "/tmp" if self.bwrap else home,
            "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "PYTHONHASHSEED": "0",
            # The child imports the very `challenge` the parent runs (a checkout, a wheel, a bundle's copy).
            "PYTHONPATH": str(Path(challenge.__file__).resolve().parent.parent),
        }
        if self.bwrap:
            env[PIDNS_ENV] = "1"
        return env

    def run(self, argv: list[str], stdout: Path, stderr: Path, watchdog: Callable[["ProcessTree"], str | None], poll: float = 0.05) -> Outcome:
        """Run to the end or until `watchdog` names a reason to stop; then nothing of the child survives.

        The watchdog is polled with the child's process tree, so that a budget can be charged in
        CPU seconds that the child's own code cannot forge and other processes' load does not inflate.
        """
        cgroup = MemoryCgroup(self.cgroup_parent, self.limits.memory_mb) if self.cgroup_parent and self.limits.memory_mb else None
        start = time.monotonic()
        proc = subprocess.Popen(
            self.command(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env(), cwd=self.scratch, start_new_session=True, preexec_fn=_preexec(self.limits, cgroup),
        )
        logs = {name: _CappedLog(pipe, path, self.limits.log_cap_bytes) for name, pipe, path in (("stdout", proc.stdout, stdout), ("stderr", proc.stderr, stderr))}
        tree = ProcessTree(proc.pid)
        stopped = flooded = None
        try:
            while proc.poll() is None:
                flooded = next((name for name, log in logs.items() if log.flooded), None)
                stopped = None if flooded else watchdog(tree)
                if flooded or stopped:
                    kill_group(proc.pid)
                    break
                time.sleep(poll)
            proc.wait()
        finally:
            if proc.poll() is None:  # the caller was interrupted (Ctrl-C): the child goes too
                kill_group(proc.pid)
                proc.wait()
            leftovers = kill_session(proc.pid)
            for log in logs.values():
                log.join(timeout=10)
            oom = bool(cgroup and cgroup.oom_killed())
            if cgroup:
                cgroup.remove()
        flooded = flooded or next((name for name, log in logs.items() if log.flooded), None)
        return Outcome(proc.returncode, self._signal(proc.returncode), stopped, flooded, leftovers, oom, time.monotonic() - start)

    def _signal(self, returncode: int) -> int | None:
        """bwrap reports a child killed by signal N as exit status 128 + N; Popen as -N."""
        if returncode < 0:
            return -returncode
        if self.bwrap and returncode > 128:
            return returncode - 128
        return None


def _python_dirs() -> list[str]:
    """The interpreter, the venv, the challenge package (not the repo: it holds caches and outputs),
    and any other site-packages on our path (a venv with system site-packages, or one chained by a .pth)."""
    package = Path(challenge.__file__).resolve().parent
    sites = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    dirs: list[str] = []
    for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix, str(package), *sites):
        for q in (os.path.abspath(p), os.path.realpath(p)):
            if q not in dirs and not any(q == s or q.startswith(s + "/") for s in _SYSTEM_DIRS):
                dirs.append(q)
    return dirs


def _preexec(limits: Limits, cgroup: MemoryCgroup | None) -> Callable[[], None]:
    """Limits applied in the forked child before exec, so they bind everything the child starts."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None  # resolved before fork
    procs = str(cgroup.procs) if cgroup else None

    def apply() -> None:
        if procs:
            with open(procs, "w") as f:
                f.write("0")  # "0" moves the writing process itself
        elif limits.memory_mb:
            # RLIMIT_DATA, not RLIMIT_AS: torch maps GBs of shared libraries it never touches
            resource.setrlimit(resource.RLIMIT_DATA, (limits.memory_mb << 20,) * 2)
        if limits.file_size_mb:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb << 20,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not dump a GB-sized core file
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # scorer killed -> child killed, even without bwrap

    return apply


class _CappedLog:
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


