"""A child process that sees only what it is given: the mechanism under the scorer.

Participant code runs as the same user as the scorer, so "don't read the pool" has to be enforced
by the kernel, not asked for. On Linux, bubblewrap builds a mount namespace holding only the
interpreter, the `challenge` package and the three folders of one run (inputs read-only, outputs
and scratch writable), with fresh pid, network, IPC and UTS namespaces and no capabilities. Where
bubblewrap is missing or refused, the child is a plain process and `Protections` says so, so that
the scorer can print it. Resource limits, the capped logs and the kill of the whole process group
work either way. This module knows nothing about scoring: what to run and when to stop it is the
caller's business (`watchdog`), which gets the child's `ProcessTree` to read its CPU time from.

Every resource one child could take from the others on a shared host is capped: its processes and
threads (a delegated cgroup v2 pids.max, else RLIMIT_NPROC of a uid that only this child has), the
RAM behind its writable folders (tmpfs of `scratch_mb` each), the disk beside its answers (polled),
and the CPU of anything that escaped the watchdog (RLIMIT_CPU). When the scorer runs as root, the
child runs as a host uid dedicated to it (a user namespace of its own maps it to uid 1000), since
the kernel exempts root from RLIMIT_NPROC; as any other user, bubblewrap's own user namespace does.
A cap the machine cannot give is said in `Protections`, never silently dropped.
"""

from __future__ import annotations

import ctypes
import fcntl
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
from typing import IO, Callable, Iterator

import challenge
from challenge.errors import ChallengeError
from challenge.scoring import gpu as gpus
from challenge.scoring.processes import ProcessTree, kill_group, kill_session, kill_uid

ISOLATION_MODES = ("auto", "bwrap", "none")
INSIDE = Path("/sandbox")  # where inputs, outputs and scratch appear inside the mount namespace
PIDNS_ENV = "CHALLENGE_SANDBOX_PIDNS"  # "1" tells the child it owns its pid namespace
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What the dynamic loader and Python's stdlib read from /etc; nothing secret (no shadow, no ssh).
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group", "hosts", "fonts")
_NAMESPACES = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
_PR_SET_PDEATHSIG = 1
# Kaggle notebooks of 2023 wrote scratch files here; inside bubblewrap both are folders of the scratch.
KAGGLE_SCRATCH = {"/kaggle/working": ".kaggle/working", "/kaggle/tmp": ".kaggle/tmp"}
INNER_ID = 1000  # the child's uid and gid inside its user namespace
# Host uids for children of a root scorer: far above any real account, one per running child (a file lock each).
UID_BASE, UID_SLOTS = 2_000_000_000, 4096
UID_LOCKS = Path("/run/challenge-sandbox-uids") if os.path.isdir("/run") and os.access("/run", os.W_OK) else Path("/tmp/challenge-sandbox-uids")
_CHECK_EVERY = 0.5  # seconds between the polled caps (process count, full scratch, folder sizes)
_MAX_ENTRIES = 20_000  # files a folder may hold before its size is no longer worth reading: capped as disk
# Inside the sandbox, without util-linux: the process cap set in the child's own user namespace, then the child.
_NPROC_SHIM = "import os, resource, sys; n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_NPROC, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"


@dataclass(frozen=True)
class Limits:
    """What one child may use; None switches a limit off."""

    memory_mb: int | None = 8192
    file_size_mb: int | None = 1024
    log_cap_bytes: int = 1 << 20
    max_processes: int | None = 64  # processes and threads at once, bubblewrap's own two included
    scratch_mb: int | None = 2048  # each RAM-backed folder (/tmp, /dev/shm, the working folder); also the disk beside the outputs
    cpu_seconds: int | None = None  # RLIMIT_CPU per process from the start (the supervisor sets it once the budget is known)


@dataclass(frozen=True)
class Protections:
    """What the kernel really enforces for the child on this machine, said plainly."""

    isolation: str  # "bubblewrap", or "none (why)"
    filesystem: str
    network: str
    processes: str
    memory: str
    file_size: str
    identity: str = ""
    scratch: str = ""
    disk: str = ""
    cpu: str = ""
    missing: tuple[str, ...] = ()  # the caps this machine cannot give (scorer.isolation=bwrap refuses to run then)
    device: str = gpus.CPU_LINE  # the device the child runs on, and what of the host it takes (challenge.scoring.gpu)

    def to_dict(self) -> dict[str, str]:
        d = asdict(self)
        d["missing"] = "; ".join(self.missing) or "none"
        return d


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
    capped: str | None = None  # the resource whose cap stopped the child: "processes" or "disk"
    capped_detail: str | None = None  # what was seen, as the end of a sentence ("ran 64 processes and threads at once")


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


def bwrap_exe() -> str:
    """bubblewrap as found on our PATH: the child's clean PATH may not hold it (an unpacked copy, say)."""
    return shutil.which("bwrap") or "bwrap"


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
    """A cgroup v2 directory where we may create children with a memory or pids limit, else None.

    That needs the unified hierarchy, the controller enabled for our cgroup's children, and write
    access (a delegated cgroup, or root of a container's cgroup namespace).
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
        if cgroup_controllers(own) & {"memory", "pids"} and os.access(own, os.W_OK):
            return own
    return None


def cgroup_controllers(parent: Path) -> frozenset[str]:
    """The controllers a cgroup hands to its children (what our child cgroup can limit)."""
    try:
        return frozenset((parent / "cgroup.subtree_control").read_text().split())
    except OSError:
        return frozenset()


@functools.lru_cache(maxsize=None)
def bwrap_options() -> frozenset[str]:
    """The options this bubblewrap knows (`--size` came in 0.7, `--disable-userns` in 0.8)."""
    try:
        text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(word for word in text.split() if word.startswith("--"))


@functools.lru_cache(maxsize=None)
def userns_problem() -> str | None:
    """None when, as root, we can run a child as a dedicated uid in a user namespace of its own; else why not.

    Probed once with the real thing: a namespace of our making, bubblewrap joining it, setpriv dropping to the uid.
    """
    if os.geteuid() != 0:
        return "the scorer is not root"
    missing = [tool for tool in ("unshare", "setpriv") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (util-linux)"
    try:
        with HostUid() as uid:
            fd = make_userns(uid)
            try:
                probe = ["bwrap", "--userns", str(fd), *_system_binds(), "--proc", "/proc", "--dev", "/dev", *_NAMESPACES[:-2],
                         "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--", *_drop_to(INNER_ID), "true"]
                r = subprocess.run(probe, pass_fds=[fd], capture_output=True, text=True, timeout=60)
            finally:
                os.close(fd)
    except (OSError, ChallengeError, subprocess.TimeoutExpired) as e:
        return f"no user namespace of our own ({e})"
    if r.returncode != 0:
        return f"no user namespace of our own ({(r.stderr.strip().splitlines() or [f'exit status {r.returncode}'])[-1]})"
    return None


def _drop_to(inner: int) -> list[str]:
    """setpriv: the uid and gid `inner` of the child's namespace, no groups, no capabilities left to regain."""
    return [shutil.which("setpriv") or "setpriv", f"--reuid={inner}", f"--regid={inner}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"]


# -- identity --------------------------------------------------------------------------------------
class HostUid:
    """A host uid that no other running child has, held by a file lock: a crashed scorer frees it.

    RLIMIT_NPROC counts a uid's processes, so the cap is per child only if the uid is. What an earlier
    holder left running under it is killed on the way in, and all of it again on the way out.
    """

    def __init__(self) -> None:
        self.uid, self._fd = -1, -1

    def __enter__(self) -> int:
        UID_LOCKS.mkdir(mode=0o700, parents=True, exist_ok=True)
        start = (os.getpid() * 7919 + time.monotonic_ns()) % UID_SLOTS  # spread parallel scorers over the range
        for slot in ((start + i) % UID_SLOTS for i in range(UID_SLOTS)):
            fd = os.open(UID_LOCKS / str(slot), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self._fd = UID_BASE + slot, fd
            kill_uid(self.uid)
            return self.uid
        raise ChallengeError(f"all {UID_SLOTS} sandbox uids from {UID_BASE} are in use: fewer scorers at once")

    def leftovers(self) -> list[str]:
        return kill_uid(self.uid) if self.uid >= 0 else []

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            kill_uid(self.uid)
            os.close(self._fd)
            self._fd = -1


def make_userns(uid: int) -> int:
    """An fd of a new user namespace mapping INNER_ID to host `uid` (and 0 to 0, so that bubblewrap, still
    root in there, can bind what root can read), in which no further user namespace can be made."""
    # sh is exec'ed again once the map is written: capabilities in the namespace come with an exec as its uid 0.
    script = "echo; read _ && exec sh -c 'echo 0 > /proc/sys/user/max_user_namespaces && echo ok && read _'"
    helper = subprocess.Popen(["unshare", "--user", "--", "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        helper.stdout.readline()  # the namespace exists
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{helper.pid}/{name}").write_text(f"0 0 1\n{INNER_ID} {uid} 1\n")
        helper.stdin.write(b"\n")
        helper.stdin.flush()
        if helper.stdout.readline().strip() != b"ok":
            raise OSError("cannot forbid nested user namespaces in it")
        return os.open(f"/proc/{helper.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        helper.kill()
        helper.wait()


# -- cgroup --------------------------------------------------------------------------------------
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


MemoryCgroup = Cgroup  # the name before it also held pids.max


# -- the sandbox -------------------------------------------------------------------------------
class Sandbox:
    """Runs one command with `inputs` read-only, `outputs` writable and a capped scratch as cwd and HOME."""

    def __init__(self, inputs: Path, outputs: Path, scratch: Path, limits: Limits, isolation: str = "auto", gpu: gpus.Gpu | None = None):
        """`gpu`: the one device the child may use (challenge.scoring.gpu.gpu_for), None for the CPU."""
        if isolation not in ISOLATION_MODES:
            raise ChallengeError(f"scorer.isolation={isolation!r} is not one of {', '.join(ISOLATION_MODES)}")
        self.inputs, self.outputs, self.scratch = inputs.resolve(), outputs.resolve(), scratch.resolve()
        self.limits, self.gpu = limits, gpu
        problem = "scorer.isolation=none" if isolation == "none" else bwrap_problem()
        if isolation == "bwrap" and problem:
            raise ChallengeError(f"scorer.isolation=bwrap but {problem}: install bubblewrap (`make system-deps`) or set scorer.isolation=auto")
        self.bwrap = problem is None
        self.net_prefix = None if self.bwrap else unshare_net_prefix()
        self.cgroup_parent = cgroup_parent() if limits.memory_mb or limits.max_processes else None
        controllers = cgroup_controllers(self.cgroup_parent) if self.cgroup_parent else frozenset()
        self.cgroup_memory = bool(limits.memory_mb) and "memory" in controllers
        self.cgroup_pids = bool(limits.max_processes) and "pids" in controllers
        self.root = os.geteuid() == 0
        self.own_uid = self.bwrap and self.root and userns_problem() is None  # a dedicated host uid per child
        self.options = bwrap_options() if self.bwrap else frozenset()
        self.protections = self._protections(problem)
        if isolation == "bwrap" and self.protections.missing:
            raise ChallengeError(f"scorer.isolation=bwrap but this machine cannot cap {'; '.join(self.protections.missing)}: "
                                 "fix that (see submissions/README.md, Isolation) or set scorer.isolation=auto")

    # -- what is enforced ------------------------------------------------------------------------
    def _protections(self, problem: str | None) -> Protections:
        device = gpus.CPU_LINE if self.gpu is None else self.gpu.line(self.bwrap)
        mb, fs = self.limits.memory_mb, self.limits.file_size_mb
        if mb is None:
            memory = "unlimited"
        else:
            memory = f"cgroup v2 memory.max {mb} MB" if self.cgroup_memory else f"RLIMIT_DATA {mb} MB per process (no cgroup v2 memory controller to delegate)"
        file_size = f"RLIMIT_FSIZE {fs} MB per file" if fs else "unlimited"
        processes, missing = self._process_cap()
        identity, id_missing = self._identity()
        scratch, scratch_missing = self._scratch_cap()
        missing = [*missing, *id_missing, *scratch_missing]
        disk = (f"the outputs folder may hold {self.limits.scratch_mb} MB besides the runs' weights (polled every {_CHECK_EVERY:g} s); "
                "nothing else of the host's disk is writable" if self.limits.scratch_mb else "unlimited")
        cpu = (f"RLIMIT_CPU {self.limits.cpu_seconds} s per process" if self.limits.cpu_seconds else
               "RLIMIT_CPU per process, set above the run's budget once it is known: a process that escapes the watchdog is killed")
        if self.bwrap:
            return Protections(
                "bubblewrap", "mount namespace: sees only the interpreter, the challenge package, its inputs (read-only), outputs and scratch "
                "(also at /kaggle/working and /kaggle/tmp); everything else read-only",
                "none (empty network namespace)", processes, memory, file_size, identity, scratch, disk, cpu, tuple(missing), device,
            )
        network = "none (empty network namespace via unshare)" if self.net_prefix else "open (unshare unavailable)"
        return Protections(
            f"none ({problem})", "participant code can read your files (every file you can read)", network,
            processes, memory, file_size, identity, scratch, disk, cpu, tuple(missing), device,
        )

    def _process_cap(self) -> tuple[str, list[str]]:
        n = self.limits.max_processes
        group = "own pid namespace, no capabilities, killed as a group" if self.bwrap else "own session, killed as a group"
        if not n:
            return f"unlimited; {group}", []
        if self.cgroup_pids:
            return f"at most {n} processes and threads (cgroup v2 pids.max); {group}", []
        if self.bwrap and self.own_uid:
            return f"at most {n} processes and threads (RLIMIT_NPROC of a host uid only this child has); {group}", []
        if self.bwrap and not self.root:
            return f"at most {n} processes and threads (RLIMIT_NPROC, counted in the child's own user namespace); {group}", []
        why = "the child runs as root, which RLIMIT_NPROC does not bind" if self.bwrap else "no user namespace of its own to count them in"
        return f"not capped by the kernel ({why}, and no cgroup v2 pids controller is delegated): the watchdog stops the child at {n}; {group}", [f"processes ({why})"]

    def _identity(self) -> tuple[str, list[str]]:
        nested = "--disable-userns" in self.options or self.own_uid
        no_more = "may create no further user namespaces" if nested else "may create further user namespaces (bubblewrap < 0.8)"
        if self.own_uid:
            return (f"uid {INNER_ID} in its own user namespace (a host uid from {UID_BASE} up that no other running child has), no capabilities, "
                    f"{no_more}; sees only its own processes in /proc, cannot signal the scorer", [])
        if self.bwrap and not self.root:
            return (f"uid {INNER_ID} in its own user namespace (your uid {os.getuid()} outside), no capabilities, {no_more}; "
                    "sees only its own processes in /proc, cannot signal the scorer", [] if nested else ["nested user namespaces (bubblewrap < 0.8)"])
        if self.bwrap:
            return f"root without capabilities, in no user namespace of its own ({userns_problem()}); sees only its own processes", [f"identity ({userns_problem()})"]
        return f"your own uid {os.getuid()}: it can see and signal your processes", ["identity (no sandbox)"]

    def _scratch_cap(self) -> tuple[str, list[str]]:
        mb = self.limits.scratch_mb
        if not mb:
            return "unlimited", []
        if self.bwrap and "--size" in self.options:
            return f"/tmp, /dev/shm and the working folder (cwd, HOME, /kaggle/working, /kaggle/tmp) are tmpfs of {mb} MB each, freed with the sandbox", []
        if self.bwrap:
            return f"tmpfs without a size (bubblewrap < 0.7 has no --size): the watchdog stops the child past {mb} MB", ["scratch (bubblewrap < 0.7 has no --size)"]
        return f"the working folder is on your disk: the watchdog stops the child past {mb} MB; /tmp is yours", []

    # -- the command -------------------------------------------------------------------------------
    def inside(self, host: Path) -> str:
        """The child's name for one of our three folders."""
        if not self.bwrap:
            return str(host)
        return str(INSIDE / {self.inputs: "inputs", self.outputs: "outputs", self.scratch: "scratch"}[host.resolve()])

    def command(self, argv: list[str], userns_fd: int | None = None) -> list[str]:
        if not self.bwrap:
            return [*(self.net_prefix or ()), *argv]
        binds: list[str] = []
        for path in _python_dirs():
            binds += ["--ro-bind", path, path]
        # The private /tmp comes first: a later mount would hide a venv or checkout that lives under /tmp.
        gpu = gpus.bwrap_args(self.gpu.facts, _SYSTEM_DIRS) if self.gpu else []
        dests = [*_python_dirs(), *(f"/etc/{name}" for name in _ETC_FILES), str(INSIDE / "inputs"), *KAGGLE_SCRATCH, *(gpus.new_folders(self.gpu.facts) if self.gpu else [])]
        return [
            bwrap_exe(), *self._user_args(userns_fd), *self._tmpfs("1777", "/tmp"), "--proc", "/proc", "--dev", "/dev", *self._tmpfs("1777", "/dev/shm"),
            *_open_parents(dests), *_system_binds(), *binds, *gpu,
            "--ro-bind", str(self.inputs), self.inside(self.inputs),
            "--bind", str(self.outputs), self.inside(self.outputs),
            *self._scratch_args(), "--remount-ro", "/dev", "--remount-ro", "/",
            "--chdir", self.inside(self.scratch), *_NAMESPACES, *self._cap_args(), "--", *self._inner(argv),
        ]

    def _tmpfs(self, perms: str, dest: str) -> list[str]:
        size = ["--size", str(self.limits.scratch_mb << 20)] if self.limits.scratch_mb and "--size" in self.options else []
        return ["--perms", perms, *size, "--tmpfs", dest]

    def _scratch_args(self) -> list[str]:
        """The working folder, a tmpfs of its own, with the Kaggle folders in it (symlinks: bind sources are host paths)."""
        args = self._tmpfs("1777", self.inside(self.scratch))
        for outside, rel in KAGGLE_SCRATCH.items():
            args += ["--perms", "0777", "--dir", f"{self.inside(self.scratch)}/{rel}", "--symlink", f"{self.inside(self.scratch)}/{rel}", outside]
        return args

    def _user_args(self, userns_fd: int | None) -> list[str]:
        if userns_fd is not None:
            return ["--userns", str(userns_fd)]
        if self.root:
            return []
        nested = ["--disable-userns"] if "--disable-userns" in self.options else []
        return ["--unshare-user", "--uid", str(INNER_ID), "--gid", str(INNER_ID), *nested]

    def _cap_args(self) -> list[str]:
        return ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if self.own_uid else []

    def _inner(self, argv: list[str]) -> list[str]:
        """What runs inside: as root, setpriv drops to the child's uid; else the process cap is set inside
        the child's own user namespace (set before bubblewrap, it would count every process of yours)."""
        if self.own_uid:
            return [*_drop_to(INNER_ID), *argv]
        if self.root or not self.limits.max_processes or self.cgroup_pids:
            return argv
        n = str(self.limits.max_processes)
        if shutil.which("prlimit"):
            return [shutil.which("prlimit"), f"--nproc={n}:{n}", "--", *argv]
        return [sys.executable, "-S", "-c", _NPROC_SHIM, n, *argv]

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
        env["CUDA_VISIBLE_DEVICES"] = self.gpu.visible if self.gpu else ""  # empty: a plain process on a GPU machine sees none either
        libraries = gpus.library_path(self.gpu.facts) if self.gpu else ""
        if libraries:
            env["LD_LIBRARY_PATH"] = libraries
        return env

    # -- running -----------------------------------------------------------------------------------
    def run(self, argv: list[str], stdout: Path, stderr: Path, watchdog: Callable[["ProcessTree"], str | None], poll: float = 0.05,
            outputs_mb: int | None = None) -> Outcome:
        """Run to the end, until `watchdog` names a reason to stop, or until a cap is reached; then nothing of the child survives.

        The watchdog is polled with the child's process tree, so that a budget can be charged in
        CPU seconds that the child's own code cannot forge and other processes' load does not inflate.
        `outputs_mb` is what the outputs folder may hold (default: scratch_mb).
        """
        with HostUid() if self.own_uid else _no_uid() as uid:
            fd = make_userns(uid) if uid is not None else None
            try:
                return self._run(argv, stdout, stderr, watchdog, poll, uid, fd, outputs_mb)
            finally:
                if fd is not None:
                    os.close(fd)

    def _run(self, argv: list[str], stdout: Path, stderr: Path, watchdog: Callable[["ProcessTree"], str | None], poll: float,
             uid: int | None, userns_fd: int | None, outputs_mb: int | None) -> Outcome:
        cgroup = Cgroup(self.cgroup_parent, self.limits.memory_mb if self.cgroup_memory else None,
                        self.limits.max_processes if self.cgroup_pids else None) if self.cgroup_memory or self.cgroup_pids else None
        if uid is not None:
            os.chown(self.outputs, uid, uid)  # the one host folder the child may write
        caps = _Caps(self, outputs_mb)
        start = time.monotonic()
        proc = subprocess.Popen(
            self.command(argv, userns_fd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env(), cwd=self.scratch, start_new_session=True, preexec_fn=_preexec(self.limits, cgroup, nproc=uid is not None),
            pass_fds=() if userns_fd is None else (userns_fd,),
        )
        logs = {name: _CappedLog(pipe, path, self.limits.log_cap_bytes) for name, pipe, path in (("stdout", proc.stdout, stdout), ("stderr", proc.stderr, stderr))}
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
                time.sleep(poll)
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
                _reclaim(self.outputs)
            for log in logs.values():
                log.join(timeout=10)
            oom = bool(cgroup and cgroup.oom_killed())
            if cgroup and cgroup.pids_refused() and not caps.hit:
                caps.hit = ("processes", f"reached {self.limits.max_processes} processes and threads at once")
            if cgroup:
                cgroup.remove()
        flooded = flooded or next((name for name, log in logs.items() if log.flooded), None)
        capped, detail = caps.hit or (None, None)
        return Outcome(proc.returncode, self._signal(proc.returncode), stopped, flooded, leftovers, oom, time.monotonic() - start, capped, detail)

    def _signal(self, returncode: int) -> int | None:
        """bwrap reports a child killed by signal N as exit status 128 + N; Popen as -N."""
        if returncode < 0:
            return -returncode
        if self.bwrap and returncode > 128:
            return returncode - 128
        return None


class _no_uid:
    """HostUid's stand-in where the child keeps the scorer's uid."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _Caps:
    """The caps the kernel cannot turn into an error for us, polled: the process count, a full scratch, folder sizes."""

    def __init__(self, box: Sandbox, outputs_mb: int | None):
        self.box, self.limits = box, box.limits
        mb = outputs_mb if outputs_mb is not None else self.limits.scratch_mb
        self.folders = {box.outputs: mb} if mb else {}
        if not box.bwrap and self.limits.scratch_mb:
            self.folders[box.scratch] = self.limits.scratch_mb  # without bubblewrap the working folder is on the host's disk
        self.hit: tuple[str, str] | None = None
        self.checked = -float("inf")

    def check(self, tree: ProcessTree, cgroup: Cgroup | None) -> None:
        if self.hit or time.monotonic() - self.checked < _CHECK_EVERY:
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


def _reclaim(folder: Path) -> None:
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


def _open_parents(dests: list[str]) -> list[str]:
    """The folders bubblewrap creates above its mount points, made first as 0755: bubblewrap 0.8 makes them
    0700 and root's, which a child with a uid of its own could not pass. Not those inside a mount."""
    parents: set[str] = set()
    for dest in dests:
        parents.update(str(p) for p in Path(dest).parents if str(p) != "/")
    inside_a_mount = {p for p in parents if any(p == d or p.startswith(d + "/") for d in dests)}
    args: list[str] = []
    for p in sorted(parents - inside_a_mount, key=lambda p: p.count("/")):
        args += ["--perms", "0755", "--dir", p]
    return args


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


def _preexec(limits: Limits, cgroup: Cgroup | None, nproc: bool = False) -> Callable[[], None]:
    """Limits applied in the forked child before exec, so they bind everything the child starts.

    `nproc`: the child will run as a uid of its own, so RLIMIT_NPROC set here counts only its processes
    (bubblewrap, still root, is exempt); otherwise it is set inside the sandbox, or not at all.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None  # resolved before fork
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
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 2))  # SIGXCPU, then SIGKILL
        if nproc and limits.max_processes:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes,) * 2)
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


