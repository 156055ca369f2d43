"""The command line that starts one child and the environment it gets, built from what a sandbox is made of.

`Setup` holds the three folders, the limits, the device and what probing found on this machine (the Sandbox
decides those); everything here only turns them into bubblewrap arguments, so that it runs nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import challenge
from challenge.scoring import gpu as gpus
from challenge.scoring.sandbox.identity import drop_to
from challenge.scoring.sandbox.probe import ETC_FILES, NAMESPACES, SYSTEM_DIRS, system_binds
from challenge.scoring.sandbox.types import INNER_ID, INSIDE, KAGGLE_SCRATCH, PIDNS_ENV, Limits

# Inside the sandbox, without util-linux: the process cap set in the child's own user namespace, then the child.
_NPROC_SHIM = (
    "import os, resource, sys; n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_NPROC, (n, n)); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def bwrap_exe() -> str:
    """bubblewrap as found on our PATH: the child's clean PATH may not hold it (an unpacked copy, say)."""
    return shutil.which("bwrap") or "bwrap"


@dataclass(eq=False)
class Setup:
    """What one sandbox is made of on this machine, and the command and environment that follow from it."""

    inputs: Path  # resolved, like the two below
    outputs: Path
    scratch: Path
    limits: Limits
    gpu: gpus.Gpu | None  # the one device the child may use, None for the CPU
    bwrap: bool  # under bubblewrap, else a plain process
    net_prefix: tuple[str, ...] | None  # without bubblewrap: what starts the child in an empty network namespace
    cgroup_parent: Path | None
    cgroup_memory: bool  # memory.max of a cgroup of its own, else RLIMIT_DATA
    cgroup_pids: bool  # pids.max of a cgroup of its own
    root: bool  # the scorer runs as root
    own_uid: bool  # a dedicated host uid per child (challenge.scoring.sandbox.identity)
    options: frozenset[str]  # what this bubblewrap knows

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
        gpu = gpus.bwrap_args(self.gpu.facts, SYSTEM_DIRS) if self.gpu else []
        dests = [
            *_python_dirs(),
            *(f"/etc/{name}" for name in ETC_FILES),
            str(INSIDE / "inputs"),
            *KAGGLE_SCRATCH,
            *(gpus.new_folders(self.gpu.facts) if self.gpu else []),
        ]
        return [
            bwrap_exe(),
            *self._user_args(userns_fd),
            *self._tmpfs("1777", "/tmp"),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            *self._tmpfs("1777", "/dev/shm"),
            *_open_parents(dests),
            *system_binds(),
            *binds,
            *gpu,
            "--ro-bind",
            str(self.inputs),
            self.inside(self.inputs),
            "--bind",
            str(self.outputs),
            self.inside(self.outputs),
            *self._scratch_args(),
            "--remount-ro",
            "/dev",
            "--remount-ro",
            "/",
            "--chdir",
            self.inside(self.scratch),
            *NAMESPACES,
            *self._cap_args(),
            "--",
            *self._inner(argv),
        ]

    def _tmpfs(self, perms: str, dest: str) -> list[str]:
        size = (
            ["--size", str(self.limits.scratch_mb << 20)] if self.limits.scratch_mb and "--size" in self.options else []
        )
        return ["--perms", perms, *size, "--tmpfs", dest]

    def _scratch_args(self) -> list[str]:
        """The working folder, a tmpfs of its own, with the Kaggle folders in it (symlinks: bind sources are host
        paths)."""
        args = self._tmpfs("1777", self.inside(self.scratch))
        for outside, rel in KAGGLE_SCRATCH.items():
            args += [
                "--perms",
                "0777",
                "--dir",
                f"{self.inside(self.scratch)}/{rel}",
                "--symlink",
                f"{self.inside(self.scratch)}/{rel}",
                outside,
            ]
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
            return [*drop_to(INNER_ID), *argv]
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
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "TMPDIR": "/tmp" if self.bwrap else home,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "PYTHONHASHSEED": "0",
            # The child imports the very `challenge` the parent runs (a checkout, a wheel, a bundle's copy).
            "PYTHONPATH": str(Path(challenge.__file__).resolve().parent.parent),
        }
        if self.bwrap:
            env[PIDNS_ENV] = "1"
        env["CUDA_VISIBLE_DEVICES"] = (
            self.gpu.visible if self.gpu else ""
        )  # empty: a plain process on a GPU machine sees none either
        libraries = gpus.library_path(self.gpu.facts) if self.gpu else ""
        if libraries:
            env["LD_LIBRARY_PATH"] = libraries
        return env


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
            if q not in dirs and not any(q == s or q.startswith(s + "/") for s in SYSTEM_DIRS):
                dirs.append(q)
    return dirs
